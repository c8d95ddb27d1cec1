use super::*;
use std::collections::HashSet;
use std::time::Duration;
use torc_core::api::{
    ClaimRequest, ClaimedJob, CompletionOutcome, CompletionReport, Coordinator, FreeResources,
    ReportBatch, SharedClaimRequest, StartReport,
};
use torc_core::changes::WorkflowState;
use torc_core::model::JobDef;
use torc_core::{JobId, JobStatus, RunnerId};
use torc_core::{WorkflowDef, WorkflowId};
use torc_store::Store;

fn chain(n: usize) -> WorkflowDef {
    let mut jobs: Vec<JobDef> = (1..=n)
        .map(|i| JobDef::new(format!("j{i}"), "true"))
        .collect();
    for (i, job) in jobs.iter_mut().enumerate().skip(1) {
        job.depends_on = vec![JobId(i as u32)];
    }
    WorkflowDef {
        name: "chain".into(),
        jobs,
        ..WorkflowDef::default()
    }
}

fn flat(n: usize) -> WorkflowDef {
    WorkflowDef {
        name: "flat".into(),
        jobs: (1..=n)
            .map(|i| JobDef::new(format!("j{i}"), "true"))
            .collect(),
        ..WorkflowDef::default()
    }
}

fn claim_req(id: WorkflowId, runner: &str, limit: u32, wait_ms: u64) -> ClaimRequest {
    ClaimRequest {
        workflow_id: id,
        runner_id: RunnerId(runner.into()),
        limit,
        resources: None,
        wait_ms,
        tags: None,
    }
}

fn done(job: &ClaimedJob, rc: i32) -> CompletionReport {
    CompletionReport {
        job_id: job.job_id,
        run_id: job.run_id,
        attempt_id: job.attempt_id,
        return_code: rc,
        terminated: false,
        recovery_failed: false,
        start_time: now(),
        end_time: now(),
        peak_memory_bytes: None,
        avg_memory_bytes: None,
        peak_cpu_percent: None,
        avg_cpu_percent: None,
        end_reason: None,
        message: None,
    }
}

fn batch(id: WorkflowId, runner: &str, jobs: &[ClaimedJob]) -> ReportBatch {
    ReportBatch {
        workflow_id: id,
        runner_id: RunnerId(runner.into()),
        starts: jobs
            .iter()
            .map(|j| StartReport {
                job_id: j.job_id,
                attempt_id: j.attempt_id,
                start_time: now(),
            })
            .collect(),
        completions: jobs.iter().map(|j| done(j, 0)).collect(),
        samples: Vec::new(),
    }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn runs_a_chain_and_persists_every_step() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store.clone()).unwrap();
    let id = engine.create_workflow(chain(3), None).await.unwrap();
    for _ in 0..3 {
        let got = engine.claim(claim_req(id, "r", 10, 0)).await.unwrap();
        assert_eq!(got.jobs.len(), 1, "a chain has one ready job at a time");
        // Answered only after commit: the store already shows the job pending.
        let loaded = store.load_workflow(id).unwrap();
        assert_eq!(
            loaded.jobs[got.jobs[0].job_id.index()].status,
            JobStatus::Pending
        );
        let resp = engine.report(batch(id, "r", &got.jobs)).await.unwrap();
        assert_eq!(
            resp.outcomes,
            [CompletionOutcome::Accepted {
                status: JobStatus::Completed
            }]
        );
    }
    let loaded = store.load_workflow(id).unwrap();
    assert_eq!(loaded.state, WorkflowState::Complete);
    assert!(loaded.jobs.iter().all(|j| j.status == JobStatus::Completed));
    assert_eq!(store.list_results(id, None, 0, 100).unwrap().len(), 3);
}

#[tokio::test]
async fn a_created_workflow_is_stored_with_its_first_statuses() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store.clone()).unwrap();
    let id = engine.create_workflow(chain(3), None).await.unwrap();
    let statuses = |store: &Store| -> Vec<JobStatus> {
        let loaded = store.load_workflow(id).unwrap();
        loaded.jobs.iter().map(|j| j.status).collect()
    };
    assert_eq!(
        statuses(&store),
        [JobStatus::Ready, JobStatus::Blocked, JobStatus::Blocked]
    );
    // A new engine takes the stored states as they are.
    drop(engine);
    let engine = EngineHandle::start(store.clone()).unwrap();
    let got = engine.claim(claim_req(id, "r", 10, 0)).await.unwrap();
    assert_eq!(
        got.jobs
            .iter()
            .map(|j| j.job_id.index())
            .collect::<Vec<_>>(),
        [0]
    );
}

#[tokio::test]
async fn parked_claim_is_answered_when_a_completion_unblocks_a_job() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let id = engine.create_workflow(chain(2), None).await.unwrap();
    let first = engine.claim(claim_req(id, "a", 1, 0)).await.unwrap().jobs;
    // A second runner parks a claim for a minute; the report must wake it, not the deadline.
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.claim(claim_req(id, "b", 1, 60_000)).await })
    };
    // Let the claim reach the writer and park (no timing assertion: if it has not parked yet
    // it simply finds the job ready).
    tokio::task::yield_now().await;
    engine.report(batch(id, "a", &first)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the parked claim was not woken by the completion")
        .unwrap()
        .unwrap();
    assert_eq!(got.jobs.len(), 1);
    assert_eq!(got.jobs[0].name, "j2");
}

#[tokio::test]
async fn parked_claim_expires_empty_at_its_deadline() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let id = engine.create_workflow(chain(2), None).await.unwrap();
    engine.claim(claim_req(id, "a", 1, 0)).await.unwrap();
    let got = engine.claim(claim_req(id, "b", 1, 20)).await.unwrap();
    assert!(got.jobs.is_empty());
    assert_eq!(got.workflow_state, WorkflowState::Active);
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store.clone()).unwrap();
    let id = engine.create_workflow(flat(2000), None).await.unwrap();
    let mut tasks = Vec::new();
    for r in 0..8 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let runner = format!("r{r}");
            let mut mine = Vec::new();
            loop {
                let resp = engine.claim(claim_req(id, &runner, 7, 0)).await.unwrap();
                if resp.jobs.is_empty() {
                    return mine;
                }
                engine.report(batch(id, &runner, &resp.jobs)).await.unwrap();
                mine.extend(resp.jobs.iter().map(|j| j.job_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for job in t.await.unwrap() {
            assert!(seen.insert(job), "job {job} handed to two runners");
        }
    }
    assert_eq!(seen.len(), 2000);
    assert_eq!(
        engine.status(id).await.unwrap().state,
        WorkflowState::Complete
    );
    let stats = engine.stats();
    assert!(stats.commits > 0 && stats.completions == 2000);
    assert_eq!(store.list_results(id, None, 0, 10_000).unwrap().len(), 2000);
}

#[tokio::test]
async fn a_new_engine_resumes_from_the_database() {
    let (_dir, store) = temp_store();
    let id = {
        let engine = EngineHandle::start(store.clone()).unwrap();
        let id = engine.create_workflow(chain(3), None).await.unwrap();
        let got = engine.claim(claim_req(id, "r", 1, 0)).await.unwrap().jobs;
        engine.report(batch(id, "r", &got)).await.unwrap();
        // j2 is claimed and left running when this engine goes away.
        engine.claim(claim_req(id, "r", 1, 0)).await.unwrap();
        id
    };
    let engine = EngineHandle::start(store.clone()).unwrap();
    let summary = engine.resume(id).await.unwrap();
    assert_eq!(summary.state, WorkflowState::Active);
    let got = engine.claim(claim_req(id, "r", 5, 0)).await.unwrap().jobs;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].name.as_str(), got[0].attempt_id), ("j2", 2));
}

#[tokio::test]
async fn resource_claims_and_unknown_workflows() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let id = engine.create_workflow(flat(10), None).await.unwrap();
    let mut req = claim_req(id, "r", 100, 0);
    req.resources = Some(FreeResources {
        num_cpus: 3,
        memory_bytes: 1 << 30,
        num_gpus: 0,
        time_left: None,
    });
    assert_eq!(engine.claim(req).await.unwrap().jobs.len(), 3);
    let err = engine
        .claim(claim_req(WorkflowId(999), "r", 1, 0))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CoordinatorError::Rejected {
            code: ErrorCode::NotFound,
            ..
        }
    ));
}

#[tokio::test]
async fn cancel_ends_parked_claims() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let id = engine.create_workflow(chain(2), None).await.unwrap();
    engine.claim(claim_req(id, "a", 1, 0)).await.unwrap();
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.claim(claim_req(id, "b", 1, 60_000)).await })
    };
    tokio::task::yield_now().await;
    engine.cancel(id).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("cancel did not end the parked claim")
        .unwrap()
        .unwrap();
    assert_eq!(got.workflow_state, WorkflowState::Canceled);
}

fn shared_req(runner: &str, limit: u32, wait_ms: u64) -> SharedClaimRequest {
    SharedClaimRequest {
        runner_id: RunnerId(runner.into()),
        limit,
        resources: None,
        tags: Default::default(),
        wait_ms,
    }
}

fn owned(def: WorkflowDef, owner: &str) -> WorkflowDef {
    WorkflowDef {
        user: Some(owner.into()),
        ..def
    }
}

#[tokio::test]
async fn shared_claims_see_workflows_stored_before_the_engine_started() {
    let (_dir, store) = temp_store();
    // Two workflows created by an earlier engine, then a restart.
    let (a, b) = {
        let engine = EngineHandle::start(store.clone()).unwrap();
        let a = engine
            .create_workflow(owned(flat(4), "ann"), None)
            .await
            .unwrap();
        let b = engine
            .create_workflow(owned(flat(4), "bob"), None)
            .await
            .unwrap();
        (a, b)
    };
    let engine = EngineHandle::start(store.clone()).unwrap();
    let got = engine
        .claim_shared_for(shared_req("s", 4, 0), None)
        .await
        .unwrap();
    let from = |w: WorkflowId| got.jobs.iter().filter(|j| j.workflow_id == w).count();
    assert_eq!((from(a), from(b)), (2, 2), "shared out evenly");
    // A runner limited to bob's workflows gets only those.
    let bobs = engine
        .claim_shared_for(shared_req("s", 10, 0), Some(vec!["bob".into()]))
        .await
        .unwrap();
    assert!(bobs.jobs.iter().all(|j| j.workflow_id == b));
    assert_eq!(bobs.jobs.len(), 2);
    // Handed out durably.
    let loaded = store.load_workflow(b).unwrap();
    assert!(loaded.jobs.iter().all(|j| j.status == JobStatus::Pending));
}

#[tokio::test]
async fn a_parked_shared_claim_is_answered_when_any_workflow_gets_work() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let a = engine.create_workflow(chain(2), None).await.unwrap();
    let first = engine.claim(claim_req(a, "own", 1, 0)).await.unwrap().jobs;
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .claim_shared_for(shared_req("s", 5, 60_000), None)
                .await
        })
    };
    tokio::task::yield_now().await;
    engine.report(batch(a, "own", &first)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the parked shared claim was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(got.jobs.len(), 1);
    assert_eq!(
        (got.jobs[0].workflow_id, got.jobs[0].name.as_str()),
        (a, "j2")
    );
}

#[tokio::test]
async fn raising_a_cap_wakes_a_parked_shared_claim() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store.clone()).unwrap();
    let def = WorkflowDef {
        max_concurrent_jobs: Some(1),
        ..flat(3)
    };
    let id = engine.create_workflow(def, None).await.unwrap();
    let got = engine
        .claim_shared_for(shared_req("s", 5, 0), None)
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 1, "capped at one in flight");
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .claim_shared_for(shared_req("s", 5, 60_000), None)
                .await
        })
    };
    tokio::task::yield_now().await;
    engine.set_max_concurrent_jobs(id, Some(3)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the parked shared claim was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(got.jobs.len(), 2);
    assert_eq!(
        store.load_workflow(id).unwrap().def.max_concurrent_jobs,
        Some(3)
    );
}

#[tokio::test]
async fn a_completion_under_a_cap_wakes_a_parked_claim() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let def = WorkflowDef {
        max_concurrent_jobs: Some(1),
        ..flat(2)
    };
    let id = engine.create_workflow(def, None).await.unwrap();
    let first = engine.claim(claim_req(id, "a", 5, 0)).await.unwrap().jobs;
    assert_eq!(first.len(), 1, "capped at one in flight");
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.claim(claim_req(id, "b", 5, 60_000)).await })
    };
    tokio::task::yield_now().await;
    // No job becomes ready, but the cap has room again.
    engine.report(batch(id, "a", &first)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the parked claim was not woken by room under the cap")
        .unwrap()
        .unwrap();
    assert_eq!(got.jobs.len(), 1);
}

#[tokio::test]
async fn a_report_sent_again_after_a_restart_gets_the_first_answer() {
    use torc_core::model::{FailureHandler, FailureRule};
    let (_dir, store) = temp_store();
    let mut def = flat(2);
    def.failure_handlers.push(FailureHandler {
        name: "retry3".into(),
        rules: vec![FailureRule {
            exit_codes: vec![3],
            match_all_exit_codes: false,
            recovery_script: None,
            max_retries: 2,
        }],
    });
    def.jobs[0].failure_handler = Some(0);
    let (id, jobs, first) = {
        let engine = EngineHandle::start(store.clone()).unwrap();
        let id = engine.create_workflow(def, None).await.unwrap();
        let jobs = engine.claim(claim_req(id, "r", 2, 0)).await.unwrap().jobs;
        let mut report = batch(id, "r", &jobs);
        report.completions[0].return_code = 3; // retried
        let first = engine.report(report).await.unwrap();
        (id, jobs, first)
    };
    assert_eq!(
        first.outcomes,
        [
            CompletionOutcome::Accepted {
                status: JobStatus::Ready
            },
            CompletionOutcome::Accepted {
                status: JobStatus::Completed
            }
        ]
    );
    // The runner never saw that answer; after the restart it sends the same report again.
    let engine = EngineHandle::start(store.clone()).unwrap();
    let mut report = batch(id, "r", &jobs);
    report.completions[0].return_code = 3;
    let again = engine.report(report).await.unwrap();
    assert_eq!(again.outcomes, first.outcomes);
    assert_eq!(
        store.list_results(id, None, 0, 100).unwrap().len(),
        2,
        "applied once"
    );
}

mod hostile;
#[tokio::test]
async fn a_scaled_job_keeps_its_new_needs_across_a_restart() {
    use torc_core::model::{ResourceRequirement, Resources};
    use torc_core::sched::ResourceScale;
    let (_dir, store) = temp_store();
    let mut def = flat(2);
    def.resource_requirements = vec![ResourceRequirement {
        name: "small".into(),
        resources: Resources {
            memory_bytes: 50 << 20,
            ..Resources::DEFAULT_JOB
        },
    }];
    for j in &mut def.jobs {
        j.resource_requirement = Some(0);
    }
    let engine = EngineHandle::start(store.clone()).unwrap();
    let id = engine.create_workflow(def, None).await.unwrap();
    let scale = ResourceScale {
        memory_factor: Some(2.0),
        runtime_factor: Some(3.0),
    };
    let change = engine
        .scale_job_resources(id, JobId(2), scale)
        .await
        .unwrap();
    assert!(change.created, "the requirement was shared");
    // j1 is alone on `small` now: changed in place.
    let memory = ResourceScale {
        memory_factor: Some(1.5),
        runtime_factor: None,
    };
    let change = engine
        .scale_job_resources(id, JobId(1), memory)
        .await
        .unwrap();
    assert!(!change.created);
    let missing = engine.scale_job_resources(id, JobId(9), scale).await;
    assert!(
        matches!(missing, Err(EngineError::Adjust(_))),
        "{missing:?}"
    );
    drop(engine);
    let loaded = store.load_workflow(id).unwrap().def;
    assert_eq!(loaded.resource_requirements.len(), 2);
    let needs = |j: usize| loaded.resources_of(&loaded.jobs[j]);
    assert_eq!(needs(0).memory_bytes, 75 << 20);
    assert_eq!(needs(1).memory_bytes, 100 << 20);
    assert_eq!(needs(1).runtime, Duration::from_secs(180));
    assert_eq!(loaded.resource_requirements[1].name, "small_j2");
    // A new engine hands the job out with its new needs.
    let engine = EngineHandle::start(store).unwrap();
    engine.resume(id).await.unwrap();
    let got = engine.claim(claim_req(id, "r", 5, 0)).await.unwrap().jobs;
    let j2 = got.iter().find(|j| j.name == "j2").unwrap();
    assert_eq!(j2.limits.memory_bytes, Some(100 << 20));
}
