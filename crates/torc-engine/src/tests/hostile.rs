//! One caller's request never hurts another's: a request the store refuses fails alone, a slow
//! batch costs no runner its jobs, a claim whose caller went away takes nothing.

use super::*;
use crate::request::Request;
use crate::EngineConfig;
use std::time::Instant;
use tokio::sync::oneshot;
use torc_core::api::{HeartbeatRequest, HeldJob};
use torc_core::changes::EventKind;
use torc_core::sched::LeasePolicy;

/// Holds the writer inside a batch until the returned sender is used (or dropped).
async fn stall(engine: &EngineHandle) -> std::sync::mpsc::Sender<()> {
    let (started, is_started) = oneshot::channel();
    let (release, until) = std::sync::mpsc::channel();
    engine.send(Request::Stall {
        started,
        release: until,
    });
    is_started.await.unwrap();
    release
}

/// Queues a report without waiting for its answer.
fn queue_report(
    engine: &EngineHandle,
    batch: ReportBatch,
) -> oneshot::Receiver<Result<torc_core::api::ReportResponse, EngineError>> {
    let (reply, answer) = oneshot::channel();
    engine.send(Request::Report { batch, reply });
    answer
}

fn held(job: &ClaimedJob) -> HeldJob {
    HeldJob {
        job_id: job.job_id,
        run_id: job.run_id,
        attempt_id: job.attempt_id,
    }
}

#[tokio::test]
async fn a_report_the_store_refuses_fails_alone_and_the_rest_of_its_batch_commits() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store.clone()).unwrap();
    let a = engine.create_workflow(flat(3), None).await.unwrap();
    let b = engine.create_workflow(flat(1), None).await.unwrap();
    let ja = engine.claim(claim_req(a, "ra", 3, 0)).await.unwrap().jobs;
    let jb = engine.claim(claim_req(b, "rb", 1, 0)).await.unwrap().jobs;

    // Three reports in one batch: the first holds a peak memory no column can hold (the HTTP
    // layer refuses it; the engine must not count on that).
    let release = stall(&engine).await;
    let mut bad = batch(a, "ra", &ja[..1]);
    bad.completions[0].peak_memory_bytes = Some(u64::MAX);
    let bad = queue_report(&engine, bad);
    let good_a = queue_report(&engine, batch(a, "ra", &ja[1..]));
    let good_b = queue_report(&engine, batch(b, "rb", &jb));
    release.send(()).unwrap();

    let err = bad.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, EngineError::Unstorable { detail } if detail.contains("peak_memory_bytes")),
        "{err:?}"
    );
    assert!(!err.to_coordinator_error().is_transient(), "final: {err}");
    for answer in [good_a.await.unwrap(), good_b.await.unwrap()] {
        let answer = answer.expect("an innocent report of the batch commits");
        assert!(answer.outcomes.iter().all(|o| matches!(
            o,
            CompletionOutcome::Accepted {
                status: JobStatus::Completed
            }
        )));
    }
    // Durable as answered; the refused job is still its runner's, and the live state agrees
    // with the database (the workflow was reloaded).
    let loaded = store.load_workflow(a).unwrap();
    let states: Vec<_> = loaded.jobs.iter().map(|j| j.status).collect();
    assert_eq!(
        states,
        [
            JobStatus::Pending,
            JobStatus::Completed,
            JobStatus::Completed
        ]
    );
    assert_eq!(
        store.load_workflow(b).unwrap().state,
        WorkflowState::Complete
    );
    let status = engine.status(a).await.unwrap();
    assert!(
        status.counts.contains(&(JobStatus::Completed, 2)),
        "{status:?}"
    );
    let fixed = engine.report(batch(a, "ra", &ja[..1])).await.unwrap();
    assert_eq!(fixed.workflow_state, WorkflowState::Complete);
}

#[tokio::test]
async fn a_slow_batch_counts_as_a_stall_and_costs_no_runner_its_jobs() {
    let (_dir, store) = temp_store();
    let lease = Duration::from_millis(600);
    let engine = EngineHandle::start_with(
        store.clone(),
        EngineConfig {
            leases: Some(LeasePolicy {
                lease,
                max_losses: 3,
            }),
        },
    )
    .unwrap();
    let id = engine.create_workflow(flat(1), None).await.unwrap();
    let job = engine.claim(claim_req(id, "r1", 1, 0)).await.unwrap().jobs;
    let beat = |wait_ms| HeartbeatRequest {
        workflow_id: id,
        runner_id: RunnerId("r1".into()),
        held: vec![held(&job[0])],
        wait_ms,
    };
    // The runner's heartbeat parks (as a runner's does), then the writer spends three leases
    // in one batch: the runner cannot send another until its parked one is answered.
    let (reply, parked) = oneshot::channel();
    engine.send(Request::Heartbeat {
        req: beat(60_000),
        deadline: Instant::now() + Duration::from_secs(60),
        reply,
    });
    let release = stall(&engine).await;
    // Stands for the stalled disk, not for synchronisation.
    tokio::time::sleep(lease * 3).await;
    release.send(()).unwrap();

    let answer = parked.await.unwrap().unwrap();
    assert_eq!(answer.workflow_state, WorkflowState::Active);
    let next = engine.heartbeat(beat(0)).await.unwrap();
    assert!(
        next.revoked.is_empty(),
        "the runner lost its job to the writer's own stall: {next:?}"
    );
    let events = store.list_events(id, 0, 100).unwrap();
    assert!(
        events.iter().all(|e| e.kind != EventKind::JobLost),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_parked_claim_whose_caller_went_away_takes_no_job() {
    let (_dir, store) = temp_store();
    let engine = EngineHandle::start(store).unwrap();
    let id = engine.create_workflow(chain(2), None).await.unwrap();
    let first = engine.claim(claim_req(id, "a", 1, 0)).await.unwrap().jobs;
    // Runner b parks a long claim, then goes away (its connection closed).
    let (reply, answer) = oneshot::channel();
    engine.send(Request::Claim {
        req: claim_req(id, "b", 1, 60_000),
        deadline: Instant::now() + Duration::from_secs(60),
        reply,
    });
    engine.status(id).await.unwrap(); // the claim has been handled (and parked)
    drop(answer);
    engine.report(batch(id, "a", &first)).await.unwrap();
    // The job that became ready is still there for the next runner.
    let got = engine.claim(claim_req(id, "c", 1, 0)).await.unwrap();
    assert_eq!(
        got.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["j2"]
    );
}

#[tokio::test]
async fn a_delete_cut_short_by_a_crash_goes_on_at_the_next_start() {
    let (_dir, store) = temp_store();
    let gone = store.create_workflow(&flat(20_000), None, now()).unwrap();
    let kept = store.create_workflow(&flat(1), None, now()).unwrap();
    // The crash came after the mark and one chunk.
    store.mark_deleting(gone).unwrap();
    assert!(!store.purge_step(gone, 100).unwrap());
    let engine = EngineHandle::start(store.clone()).unwrap();
    // The engine serves while it deletes, and finishes the job.
    let got = engine.claim(claim_req(kept, "r", 1, 0)).await.unwrap();
    assert_eq!(got.jobs.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.deleting_workflows().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the delete never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine.status(gone).await.is_err());
    assert!(matches!(
        engine.delete(gone).await,
        Err(EngineError::WorkflowNotFound(_))
    ));
}
