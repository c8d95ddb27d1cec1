//! Lost attempts, cancels and shared runners over HTTP.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempt_is_refused_and_a_duplicate_report_answered_alike() {
    let t = TestServer::start_with(|c| c.leases.lease = Duration::from_millis(300)).await;
    let id = t
        .create("name: one\njobs:\n  - name: only\n    command: \"true\"\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "a", 1, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs[0].attempt_id, 1);
    // Runner a goes silent; once its lease lapses the job is ready again.
    tokio::time::timeout(SAFETY, async {
        while t.client.status(id).await.unwrap().count(JobStatus::Ready) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the lease never lapsed");

    let late = Coordinator::report(&t.client, done(id, "a", &first))
        .await
        .unwrap();
    match &late.outcomes[0] {
        CompletionOutcome::Refused { reason } => assert!(reason.contains("stale"), "{reason}"),
        other => panic!("a lost attempt's report was {other:?}"),
    }

    let second = Coordinator::claim(&t.client, claim_req(id, "b", 1, 0))
        .await
        .unwrap();
    assert_eq!(second.jobs[0].attempt_id, 2);
    let batch = done(id, "b", &second);
    let once = Coordinator::report(&t.client, batch.clone()).await.unwrap();
    let twice = Coordinator::report(&t.client, batch).await.unwrap();
    assert_eq!(once, twice, "the same report answered differently");
    assert_eq!(
        once.outcomes[0],
        CompletionOutcome::Accepted {
            status: JobStatus::Completed
        }
    );
    assert_eq!(once.workflow_state, WorkflowState::Complete);

    let results = t.client.results(id, None, 0, 10).await.unwrap().items;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        (results[0].attempt_id, results[0].runner.clone()),
        (2, Some(RunnerId("b".into())))
    );
    let kinds: Vec<_> = t
        .client
        .events(id, 0, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::JobLost), "{kinds:?}");
    assert!(kinds.contains(&EventKind::ReportRefused), "{kinds:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_a_busy_runner_through_its_waiting_heartbeat() {
    // Long leases and waits: without the early answer the runner would hear of the cancel only
    // after the safety timeout.
    let t = TestServer::start_with(|c| {
        c.leases.lease = Duration::from_secs(3600);
        c.limits.max_wait = Duration::from_secs(3600);
    })
    .await;
    let id = t
        .create("name: long\njobs:\n  - name: j{i}\n    command: sleep 600\n    parameters:\n      i: \"1:2\"\n")
        .await;
    let mut config = RunnerConfig::new(
        id,
        RunnerId("busy".into()),
        Capacity::MaxParallelJobs(2),
        t.dir.path().join("out"),
    );
    config.heartbeat_interval = Some(Duration::from_secs(3600));
    config.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        Shutdown::new(),
    ));
    tokio::time::timeout(SAFETY, async {
        while t.client.status(id).await.unwrap().count(JobStatus::Running) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs never ran");
    t.client.cancel(id).await.unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the cancel did not reach the runner")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 2);
    let status = t.client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Terminated), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_and_caps_over_http() {
    let t = TestServer::start().await;
    let a = t.create(FLAT5).await;
    let b = t.create(FLAT5).await;
    let c = &t.client;
    let status = c.set_max_concurrent_jobs(b, Some(1)).await.unwrap();
    assert_eq!(status.workflow_id, b);
    let req = SharedClaimRequest {
        runner_id: RunnerId("shared".into()),
        limit: 4,
        resources: None,
        tags: Default::default(),
        wait_ms: 0,
    };
    let got = Coordinator::claim_shared(c, req.clone()).await.unwrap();
    let from = |w: WorkflowId| got.jobs.iter().filter(|j| j.workflow_id == w).count();
    assert_eq!(
        (from(a), from(b)),
        (3, 1),
        "b is capped at one job in flight"
    );
    c.set_max_concurrent_jobs(b, None).await.unwrap();
    let more = Coordinator::claim_shared(c, req).await.unwrap();
    assert!(more.jobs.iter().any(|j| j.workflow_id == b));

    let cap = |id: i64| {
        t.raw
            .put(t.url(&format!("/workflows/{id}/max_concurrent_jobs")))
    };
    t.expect_error(
        cap(a.0).json(&serde_json::json!({"max_concurrent_jobs": 0})),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        cap(999).json(&serde_json::json!({"max_concurrent_jobs": 2})),
        404,
        "not_found",
    )
    .await;
    t.expect_error(
        cap(a.0).json(&serde_json::json!({"max": 2})),
        422,
        "invalid_input",
    )
    .await;
    let shared = t.raw.post(t.url("/runners/claim"));
    t.expect_error(
        shared.json(&serde_json::json!({"runner_id": "s", "limit": 0})),
        422,
        "invalid_input",
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_one_workflow_stops_only_its_jobs_on_a_shared_runner() {
    // Long leases and waits: only the early answer of a waiting heartbeat can bring the news
    // before the safety timeout.
    let t = TestServer::start_with(|c| {
        c.leases.lease = Duration::from_secs(3600);
        c.limits.max_wait = Duration::from_secs(3600);
    })
    .await;
    let long = "name: long\njobs:\n  - name: j{i}\n    command: sleep 600\n    parameters:\n      i: \"1:2\"\n";
    let short = "name: short\njobs:\n  - name: gate\n    command: sleep 600\n  - name: after\n    command: \"true\"\n    depends_on: [gate]\n";
    let a = t.create(long).await;
    let b = t.create(short).await;
    let mut config = RunnerConfig::new(
        WorkflowId(0),
        RunnerId("pool".into()),
        Capacity::MaxParallelJobs(3),
        t.dir.path().join("out"),
    );
    config.shared = true;
    config.tags = Some(Default::default());
    config.heartbeat_interval = Some(Duration::from_secs(3600));
    config.idle_timeout = Some(Duration::from_millis(500));
    config.sample_interval = None;
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        shutdown.clone(),
    ));
    let running = |id| {
        let c = t.client.clone();
        async move { c.status(id).await.unwrap().count(JobStatus::Running) }
    };
    tokio::time::timeout(SAFETY, async {
        while running(a).await < 2 || running(b).await < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs never ran");
    t.client.cancel(a).await.unwrap();
    // a's two jobs end terminated; b's gate keeps running.
    tokio::time::timeout(SAFETY, async {
        while t
            .client
            .status(a)
            .await
            .unwrap()
            .count(JobStatus::Terminated)
            < 2
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the cancel never reached the shared runner");
    assert_eq!(
        running(b).await,
        1,
        "the other workflow's job was stopped too"
    );
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(summary.terminated, 3);
    t.stop().await;
}
