//! Stopping: timeouts, shutdown, transient errors, cancels, revoked jobs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_terminated_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let child = dir.path().join("child");
    let mut slow = job(
        0,
        "slow",
        &format!(
            "sleep 30 & echo $! > {}; echo $$ > {}; wait",
            child.display(),
            pid.display()
        ),
    );
    slow.timeout = Some(Duration::from_millis(300));
    let fake = Fake::new(vec![(slow, vec![])]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(1)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(summary.terminated, 1);
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(
        c.return_code, 152,
        "stopped for time: its timeout_exit_code"
    );
    assert_eq!(fake.status(0), JobStatus::Terminated);
    assert_gone(read_pid(&pid)).await;
    assert_gone(read_pid(&child)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_terminates_every_job_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // Traps SIGTERM, notes it, exits 3.
    let mut polite = job(
        0,
        "polite",
        &format!(
            "trap 'touch {}; exit 3' TERM; echo $$ > {}; while true; do sleep 0.05; done",
            p("polite.term").display(),
            p("polite.pid").display()
        ),
    );
    polite.supports_termination = true;
    // Does not support termination: killed at once, with its child.
    let rude = job(
        1,
        "rude",
        &format!(
            "sleep 30 & echo $! > {}; echo $$ > {}; wait",
            p("rude.child").display(),
            p("rude.pid").display()
        ),
    );
    let fake = Fake::new(vec![(polite, vec![]), (rude, vec![])]);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(
        Arc::clone(&fake),
        config(dir.path(), Capacity::MaxParallelJobs(3)),
        shutdown.clone(),
    ));
    for f in ["polite.pid", "rude.pid", "rude.child"] {
        wait_for_file(&p(f)).await;
    }
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert_eq!(summary.terminated, 2);

    let polite = fake.completion(0, 1);
    assert!(polite.terminated);
    assert_eq!(polite.return_code, 3, "the job ran its SIGTERM trap");
    assert!(p("polite.term").exists());
    let rude = fake.completion(1, 1);
    assert!(rude.terminated);
    assert_eq!(rude.return_code, -libc::SIGKILL);
    for f in ["polite.pid", "rude.pid", "rude.child"] {
        assert_gone(read_pid(&p(f))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shutdown_request_kills_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    // Ignores SIGTERM; only SIGKILL stops it, and the grace period is far away.
    let mut stubborn = job(
        0,
        "stubborn",
        &format!(
            "trap '' TERM; echo $$ > {}; while true; do sleep 0.05; done",
            pid.display()
        ),
    );
    stubborn.supports_termination = true;
    let fake = Fake::new(vec![(stubborn, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.grace_period = Some(Duration::from_secs(3600));
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    wait_for_file(&pid).await;
    shutdown.trigger();
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(c.return_code, -libc::SIGKILL);
    assert_gone(read_pid(&pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_and_no_completion_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = (0..6)
        .map(|i| (job(i, &format!("j{i}"), &format!("exit {}", i % 2)), vec![]))
        .collect();
    let fake = Fake::new(jobs);
    fake.update(|s| {
        s.claim_faults = 2;
        s.report_faults = VecDeque::from([
            Some(Fault::Before),
            Some(Fault::After),
            None,
            Some(Fault::After),
            Some(Fault::Before),
        ]);
    });
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(
        (summary.completed, summary.failed, summary.refused),
        (3, 3, 0)
    );
    let s = fake.lock();
    let mut done: Vec<u32> = s.applied.iter().map(|c| c.job_id.0).collect();
    done.sort();
    assert_eq!(done, [1, 2, 3, 4, 5, 6]);
    // A failed batch was sent again as it was.
    assert_eq!(s.batches[0], s.batches[1]);
    assert!(s.claims.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_claim_does_not_delay_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let first = job(
        0,
        "first",
        &format!("while [ ! -e {} ]; do sleep 0.01; done", go.display()),
    );
    let fake = Fake::new(vec![(first, vec![]), (job(1, "second", "true"), vec![0])]);
    // The first claim gets the first job; the next one is held until released.
    fake.update(|s| s.hold_claims_from = Some(1));
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.claim_wait = Duration::from_secs(3600);
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("the second claim is parked", |s| s.parked == 1)
        .await;
    std::fs::write(&go, b"").unwrap();
    fake.wait_until("the first completion is reported", |s| {
        !s.applied.is_empty()
    })
    .await;
    {
        let s = fake.lock();
        assert_eq!(s.parked, 1, "the second claim is still parked");
        assert_eq!(s.claims.len(), 2);
        let report = s
            .batches
            .iter()
            .position(|b| !b.completions.is_empty())
            .unwrap();
        assert_eq!(s.parked_at_report[report], 1);
    }
    fake.update(|s| s.hold_claims_from = None);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_handed_over_while_stopping_are_reported_terminated_unrun() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![(job(0, "late", "true"), vec![])]);
    // The claim is held with a ready job, the runner is asked to stop, then the claim answers.
    fake.update(|s| s.hold_claims_from = Some(0));
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.claim_wait = Duration::from_secs(3600);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    fake.wait_until("the claim is parked", |s| s.parked == 1)
        .await;
    shutdown.trigger();
    fake.update(|s| s.hold_claims_from = None);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert_eq!((summary.completed, summary.terminated), (0, 1));
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(fake.status(0), JobStatus::Terminated);
    assert!(!stdio(dir.path(), 0, 1, "o").exists(), "the job never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_workflow_terminates_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let long = job(0, "long", &format!("echo $$ > {}; sleep 30", pid.display()));
    let fake = Fake::new(vec![(long, vec![]), (job(1, "next", "true"), vec![0])]);
    let runner = tokio::spawn(run(
        Arc::clone(&fake),
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    ));
    wait_for_file(&pid).await;
    fake.update(|s| s.canceled = true);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 1);
    // The fake accepts nothing once canceled, but the report was sent.
    let sent = fake
        .lock()
        .batches
        .iter()
        .flat_map(|b| &b.completions)
        .find(|c| c.job_id == JobId(1))
        .cloned()
        .expect("the terminated job was reported");
    assert!(sent.terminated);
    assert_gone(read_pid(&pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_stops_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![(job(0, "only", "true"), vec![])]);
    fake.update(|s| s.keep_active = true);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.claim_wait = Duration::from_millis(50);
    cfg.idle_timeout = Some(Duration::from_millis(200));
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.end, RunEnd::IdleTimeout);
    assert_eq!(summary.completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_claim_ends_the_run_with_an_error() {
    struct Rejecting;
    impl Coordinator for Rejecting {
        async fn claim(&self, _: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
            Err(CoordinatorError::Rejected {
                code: torc_core::api::ErrorCode::Forbidden,
                message: "not yours".into(),
            })
        }
        async fn report(&self, _: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
            unreachable!("nothing to report")
        }
        async fn heartbeat(
            &self,
            _: HeartbeatRequest,
        ) -> Result<HeartbeatResponse, CoordinatorError> {
            Err(CoordinatorError::Unavailable {
                message: "down".into(),
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let err = tokio::time::timeout(
        SAFETY,
        run(
            Arc::new(Rejecting),
            config(dir.path(), Capacity::MaxParallelJobs(1)),
            Shutdown::new(),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, RunnerError::ClaimRejected { .. }), "{err}");
    let zero = run(
        Arc::new(Rejecting),
        config(dir.path(), Capacity::MaxParallelJobs(0)),
        Shutdown::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(zero, RunnerError::ZeroCapacity));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_cpu_are_sampled_for_jobs_that_run_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "sampled", "sleep 1"), vec![]),
        (job(1, "after", "true"), vec![0]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.sample_interval = Some(Duration::from_millis(20));
    run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    let c = fake.completion(0, 1);
    let peak = c.peak_memory_bytes.expect("sampled");
    let avg = c.avg_memory_bytes.expect("sampled");
    assert!(peak > 0 && avg > 0 && avg <= peak);
    assert!(c.peak_cpu_percent.unwrap() >= c.avg_cpu_percent.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_a_busy_runner_through_its_waiting_heartbeat() {
    // Both slots hold long jobs, so no claim is out and no report is due: only the heartbeat,
    // waiting at the coordinator, can bring the news.
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "long-a", "sleep 60"), vec![]),
        (job(1, "long-b", "sleep 60"), vec![]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.heartbeat_interval = Some(Duration::from_secs(3600));
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("both jobs run and their starts are reported", |s| {
        s.jobs.iter().all(|j| j.status == JobStatus::Running)
    })
    .await;
    fake.wait_until("a heartbeat waits at the coordinator", |s| {
        !s.beats.is_empty()
    })
    .await;
    fake.update(|s| s.canceled = true);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner heard of the cancel")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 2);
    for idx in 0..2 {
        let c = fake.completion(idx, 1);
        assert!(c.terminated, "job {idx} reported terminated");
        assert_eq!(c.return_code, -libc::SIGKILL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_back_by_the_coordinator_is_killed_and_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "taken", "sleep 60"), vec![]),
        (job(1, "kept", "sleep 0.2"), vec![]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.heartbeat_interval = Some(Duration::from_millis(50));
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("a heartbeat lists the long job", |s| {
        s.beats
            .iter()
            .any(|b| b.held.iter().any(|h| h.job_id == JobId(1)))
    })
    .await;
    // Another runner has it now (as far as the coordinator knows) and finishes it.
    fake.update(|s| {
        s.revoke.push(HeldJob {
            job_id: JobId(1),
            run_id: 1,
            attempt_id: 1,
        });
        s.jobs[0].status = JobStatus::Completed;
        s.in_flight -= 1;
    });
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(summary.revoked, 1);
    assert_eq!(summary.completed, 1);
    let s = fake.lock();
    assert!(
        s.batches
            .iter()
            .flat_map(|b| &b.completions)
            .all(|c| c.job_id != JobId(1)),
        "the taken-back job was reported"
    );
}
