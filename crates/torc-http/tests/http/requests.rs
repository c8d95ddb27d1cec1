//! Bad requests, long polls, graceful stop.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_documented_json_errors() {
    let t = TestServer::start().await;
    let id = t.create(FLAT5).await;
    let claim_url = t.url(&format!("/workflows/{id}/claim"));

    // Malformed JSON: 400; valid JSON of the wrong shape: 422.
    t.expect_error(
        t.raw
            .post(&claim_url)
            .header(JSON.0, JSON.1)
            .body("{not json"),
        400,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(&claim_url).json(&json!({"limit": "x"})),
        422,
        "invalid_input",
    )
    .await;
    // The path and the body disagree on the workflow: 400.
    let other = claim_req(WorkflowId(id.0 + 100), "r", 1, 0);
    t.expect_error(t.raw.post(&claim_url).json(&other), 400, "invalid_input")
        .await;
    // Out-of-range values: 422.
    t.expect_error(
        t.raw.post(&claim_url).json(&claim_req(id, "r", 0, 0)),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(&claim_url).json(&claim_req(id, "", 1, 0)),
        422,
        "invalid_input",
    )
    .await;

    // Unknown workflow: 404 everywhere.
    let ghost = WorkflowId(9999);
    for path in ["", "/status", "/jobs", "/results", "/events"] {
        t.expect_error(
            t.raw.get(t.url(&format!("/workflows/9999{path}"))),
            404,
            "not_found",
        )
        .await;
    }
    t.expect_error(
        t.raw
            .post(t.url("/workflows/9999/claim"))
            .json(&claim_req(ghost, "r", 1, 0)),
        404,
        "not_found",
    )
    .await;
    t.expect_error(t.raw.delete(t.url("/workflows/9999")), 404, "not_found")
        .await;
    let err = Coordinator::claim(&t.client, claim_req(ghost, "r", 1, 0))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "a 404 is final: {err:?}");

    // Invalid spec: 422 with every problem and where it is.
    let body = t
        .expect_error(
            t.raw
                .post(t.url("/workflows"))
                .header(YAML.0, YAML.1)
                .body("name: bad\njobs:\n  - name: a\n    command: x\n    depends_on: [nope]\n    colour: red\n"),
            422,
            "invalid_input",
        )
        .await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(errors
        .iter()
        .all(|e| e["location"].as_str().unwrap().starts_with("jobs[0]")));
    let err = t
        .client
        .create_workflow("name: [", SpecFormat::Yaml)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    t.expect_error(
        t.raw
            .post(t.url("/workflows?format=toml"))
            .header(YAML.0, YAML.1)
            .body(FLAT5),
        400,
        "invalid_input",
    )
    .await;

    // Bodies over their limits: 413 (spec 64 KiB, report 16 KiB in this server).
    let big_spec = format!("{FLAT5}#{}\n", "x".repeat(100 << 10));
    t.expect_error(
        t.raw
            .post(t.url("/workflows"))
            .header(YAML.0, YAML.1)
            .body(big_spec),
        413,
        "payload_too_large",
    )
    .await;
    let mut batch = done(
        id,
        "r",
        &ClaimResponse {
            jobs: vec![],
            workflow_state: WorkflowState::Active,
            open_jobs: None,
        },
    );
    batch.starts = (0..2000)
        .map(|i| StartReport {
            job_id: JobId(i),
            attempt_id: 1,
            start_time: Timestamp(0),
        })
        .collect();
    t.expect_error(
        t.raw
            .post(t.url(&format!("/workflows/{id}/report")))
            .json(&batch),
        413,
        "payload_too_large",
    )
    .await;

    // Bad query and path parameters: 400.
    for q in ["limit=abc", "offset=-1", "status=bogus", "colour=red"] {
        t.expect_error(
            t.raw.get(t.url(&format!("/workflows/{id}/jobs?{q}"))),
            400,
            "invalid_input",
        )
        .await;
    }
    t.expect_error(
        t.raw.get(t.url(&format!("/workflows/{id}/results?job=0"))),
        400,
        "invalid_input",
    )
    .await;
    t.expect_error(t.raw.get(t.url("/workflows/abc")), 400, "invalid_input")
        .await;
    t.expect_error(
        t.raw
            .post(t.url(&format!("/workflows/{id}/reset")))
            .header(JSON.0, JSON.1)
            .body("{\"failed_only\": 3}"),
        422,
        "invalid_input",
    )
    .await;

    // Reset while jobs are pending: 409.
    let got = Coordinator::claim(&t.client, claim_req(id, "r", 1, 0))
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 1);
    let err = t.client.reset(id, false).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(matches!(
        err,
        torc_http::ClientError::Api {
            code: torc_core::api::ErrorCode::Conflict,
            ..
        }
    ));

    // No such route, wrong method: still JSON.
    t.expect_error(t.raw.get(t.url("/nowhere")), 404, "not_found")
        .await;
    t.expect_error(
        t.raw.put(t.url("/workflows")).header(JSON.0, JSON.1),
        405,
        "invalid_input",
    )
    .await;
    t.stop().await;
}

/// Waits (polling the server, bounded by [`SAFETY`]) until `ready` holds for the metrics text.
async fn until_metrics(client: &HttpClient, ready: impl Fn(&str) -> bool) {
    tokio::time::timeout(SAFETY, async {
        loop {
            if ready(&client.metrics().await.unwrap()) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server never reached the expected state");
}

fn claims_in_flight(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("torc_http_requests_in_flight{method=\"POST\",route=\"/torc-service/v1/workflows/{id}/claim\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_claim_is_answered_when_a_job_becomes_ready() {
    let t = TestServer::start().await;
    let id = t
        .create("name: chain\njobs:\n  - name: a\n    command: \"true\"\n  - name: b\n    command: \"true\"\n    depends_on: [a]\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "r1", 5, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs.len(), 1);

    // Nothing is ready: this claim parks on the server for up to a minute (capped at 30 s).
    let idle = t.client.clone();
    let parked =
        tokio::spawn(
            async move { Coordinator::claim(&idle, claim_req(id, "r2", 5, 60_000)).await },
        );
    until_metrics(&t.client, |m| claims_in_flight(m) == 1).await;

    // The report that makes `b` ready answers the parked claim with it.
    Coordinator::report(&t.client, done(id, "r1", &first))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .expect("the parked claim was not answered when b became ready")
        .unwrap()
        .unwrap();
    assert_eq!(answer.jobs.len(), 1);
    assert_eq!(answer.jobs[0].name, "b");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_with_a_parked_claim_still_reports() {
    let t = TestServer::start().await;
    // `gate` (claimed first: highest priority) is held by this test; `b` waits for it, so once
    // the runner has run `a` its only claim is a parked one.
    let id = t
        .create(concat!(
            "name: gated\njobs:\n",
            "  - name: gate\n    command: \"true\"\n    priority: 10\n",
            "  - name: a\n    command: \"true\"\n",
            "  - name: b\n    command: \"true\"\n    depends_on: [gate]\n",
        ))
        .await;
    let gate = Coordinator::claim(&t.client, claim_req(id, "test", 1, 0))
        .await
        .unwrap();
    assert_eq!(gate.jobs[0].name, "gate");

    let out = t.dir.path().join("out");
    let mut config = RunnerConfig::new(
        id,
        RunnerId("lib-runner".into()),
        Capacity::MaxParallelJobs(2),
        &out,
    );
    config.claim_wait = Duration::from_secs(60);
    config.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        Shutdown::new(),
    ));

    // `a` is reported complete while the runner's next claim waits on the server.
    tokio::time::timeout(SAFETY, async {
        loop {
            let s = t.client.status(id).await.unwrap();
            if s.count(JobStatus::Completed) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the runner's completion of `a` never arrived");
    let a = t
        .client
        .jobs(id, Some(JobStatus::Completed), 0, 10)
        .await
        .unwrap();
    assert_eq!(a.items[0].name, "a");
    until_metrics(&t.client, |m| claims_in_flight(m) >= 1).await;

    // Releasing the gate hands `b` to the parked claim; the runner runs it and ends.
    Coordinator::report(&t.client, done(id, "test", &gate))
        .await
        .unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!((summary.completed, summary.failed), (2, 0));
    let status = t.client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Completed), 3);
    assert_eq!(status.state, WorkflowState::Complete);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_answers_requests_in_flight() {
    let t = TestServer::start().await;
    let id = t
        .create("name: chain\njobs:\n  - name: a\n    command: \"true\"\n  - name: b\n    command: \"true\"\n    depends_on: [a]\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "r1", 5, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs.len(), 1);
    let idle = t.client.clone();
    let parked =
        tokio::spawn(async move { Coordinator::claim(&idle, claim_req(id, "r2", 5, 1_500)).await });
    until_metrics(&t.client, |m| claims_in_flight(m) == 1).await;

    // The stop waits for the parked claim, which is answered at its deadline, empty.
    let TestServer { dir, server, .. } = t;
    let stopping = tokio::spawn(server.stop(true));
    let answer = tokio::time::timeout(SAFETY, parked)
        .await
        .expect("the parked claim was never answered")
        .unwrap()
        .expect("a graceful stop answers requests in flight");
    assert!(answer.jobs.is_empty());
    tokio::time::timeout(SAFETY, stopping)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_jobs_resources_answers_what_changed_or_why_not() {
    let t = TestServer::start().await;
    let id = t.create(FLAT5).await;
    let url = |job: u32| t.url(&format!("/workflows/{id}/jobs/{job}/scale_resources"));
    // FLAT5's jobs name no requirement: their memory is not theirs to change (422).
    t.expect_error(
        t.raw.post(url(1)).json(&json!({"memory_factor": 1.5})),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(url(1)).json(&json!({"runtime_factor": -1.0})),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(url(99)).json(&json!({"runtime_factor": 2.0})),
        404,
        "not_found",
    )
    .await;
    // A claimed job is in flight: 409.
    let claimed = t
        .client
        .claim_jobs(&claim_req(id, "r", 1, 0))
        .await
        .unwrap()
        .jobs;
    let job = claimed[0].job_id.0;
    t.expect_error(
        t.raw.post(url(job)).json(&json!({"runtime_factor": 2.0})),
        409,
        "conflict",
    )
    .await;
    // Accepted: what changed (nothing to raise for a job without requirement or timeout).
    let other = if job == 1 { 2 } else { 1 };
    let req = torc_http::ScaleRequest {
        memory_factor: None,
        runtime_factor: Some(2.0),
    };
    let changed = t
        .client
        .scale_job_resources(id, torc_core::JobId(other), req)
        .await
        .unwrap();
    assert_eq!(changed.requirement, None);
    assert_eq!(changed.runtime_secs, changed.runtime_secs_before);
    t.stop().await;
}
