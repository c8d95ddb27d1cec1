//! Allocations: what executors submit is recorded, an elastic executor is asked for one when a
//! scheduler's ready work has none live, and told to cancel the ones no longer needed.

use super::*;
use crate::alloc::{AllocationState, AllocationUpdate};
use crate::api::{ActionCapabilities, ActionClaimRequest, ActionClaimResponse, RunnerTags};
use crate::model::{ActionDef, ActionKind, SchedulerType, SlurmScheduler, Trigger};

fn scheduler(name: &str) -> SlurmScheduler {
    SlurmScheduler {
        name: name.into(),
        account: "acct".into(),
        partition: None,
        nodes: 1,
        walltime: "00:10:00".into(),
        walltime_duration: Duration::from_secs(600),
        mem: None,
        gres: None,
        qos: None,
        ntasks_per_node: None,
        tmp: None,
        extra: None,
        serialize_allocations: false,
    }
}

fn schedule(trigger: Trigger, scheduler: &str, jobs: &[u32]) -> ActionDef {
    ActionDef {
        trigger,
        kind: ActionKind::ScheduleNodes {
            scheduler: Some(scheduler.into()),
            scheduler_type: SchedulerType::Slurm,
            num_allocations: 1,
            start_one_worker_per_node: false,
            max_parallel_jobs: None,
        },
        jobs: jobs.iter().map(|&j| JobId(j)).collect(),
        persistent: false,
    }
}

/// j1, j2 on scheduler `a` (started at workflow start); j3 after them on scheduler `b`, whose
/// allocation is requested when j3 is ready.
fn two_stages() -> WorkflowDef {
    let mut def = def_with_edges(3, &[(3, 1), (3, 2)]);
    for (i, s) in ["a", "a", "b"].iter().enumerate() {
        def.jobs[i].scheduler = Some(s.to_string());
    }
    def.slurm_schedulers = vec![scheduler("a"), scheduler("b")];
    def.actions = vec![
        schedule(Trigger::OnWorkflowStart, "a", &[]),
        schedule(Trigger::OnJobsReady, "b", &[3]),
    ];
    def
}

fn exchange(
    s: &mut WorkflowSched,
    updates: Vec<AllocationUpdate>,
    elastic: bool,
    now: i64,
) -> ActionClaimResponse {
    let req = ActionClaimRequest {
        workflow_id: WorkflowId(1),
        executor: "x".into(),
        can: ActionCapabilities {
            slurm: true,
            local_runners: true,
            run_commands: true,
        },
        allocations: updates,
        elastic,
    };
    let (response, changes) = s.exchange_actions(&req, Timestamp(now));
    // Every allocation the response implies was put in the changes, whole.
    for a in &changes.allocations {
        assert!(s.allocations().iter().any(|x| x.id == a.id));
    }
    response
}

fn submitted(record: u32, scheduler: &str, batch_id: u64) -> AllocationUpdate {
    AllocationUpdate::Submitted {
        record,
        scheduler: scheduler.into(),
        batch_id,
    }
}

fn seen(batch_id: u64, state: AllocationState) -> AllocationUpdate {
    AllocationUpdate::Seen {
        batch_id,
        state,
        note: String::new(),
    }
}

fn states(s: &WorkflowSched) -> Vec<(String, Option<u64>, AllocationState)> {
    s.allocations()
        .iter()
        .map(|a| (a.scheduler.clone(), a.batch_id, a.state))
        .collect()
}

#[test]
fn a_claimed_allocation_is_recorded_from_request_to_end() {
    let mut s = sched(two_stages());
    let r = exchange(&mut s, vec![], false, 1_000);
    assert_eq!(r.actions.len(), 1, "workflow start fired");
    let record = r.actions[0].record;
    assert_eq!(states(&s), [("a".into(), None, AllocationState::Requested)]);
    exchange(&mut s, vec![submitted(record, "a", 77)], false, 2_000);
    assert_eq!(
        states(&s),
        [("a".into(), Some(77), AllocationState::Queued)]
    );
    exchange(
        &mut s,
        vec![seen(77, AllocationState::Running)],
        false,
        3_000,
    );
    // A late "queued" from the batch queue never takes it back.
    exchange(
        &mut s,
        vec![seen(77, AllocationState::Queued)],
        false,
        3_500,
    );
    assert_eq!(s.allocations()[0].state, AllocationState::Running);
    assert_eq!(s.allocations()[0].started_at, Some(Timestamp(3_000)));
    exchange(&mut s, vec![seen(77, AllocationState::Ended)], false, 4_000);
    assert_eq!(s.allocations()[0].state, AllocationState::Ended);
    assert_eq!(s.allocations()[0].ended_at, Some(Timestamp(4_000)));
    // A submission reported twice (a retried request) is recorded once.
    exchange(&mut s, vec![submitted(record, "a", 77)], false, 5_000);
    assert_eq!(s.allocations().len(), 1);
}

#[test]
fn ready_work_without_a_live_allocation_gets_one_once() {
    let mut s = sched(two_stages());
    let r = exchange(&mut s, vec![], true, 1_000);
    let record = r.actions[0].record;
    // The start's allocation is requested: no second one while it is live.
    assert_eq!(r.actions.len(), 1);
    let r = exchange(&mut s, vec![submitted(record, "a", 1)], true, 2_000);
    assert!(r.actions.is_empty(), "a queued allocation serves a");
    // It dies without running anything: not asked again at once (a storm of allocations that
    // die is worse than a short wait)...
    let r = exchange(&mut s, vec![seen(1, AllocationState::Ended)], true, 3_000);
    assert!(r.actions.is_empty(), "too soon after the last request");
    // ...but once the spacing has passed, the ready jobs of a get a new one, once.
    let r = exchange(&mut s, vec![], true, 1_000 + REREQUEST_SPACING_MS);
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].scheduler.as_ref().unwrap().name, "a");
    assert_ne!(r.actions[0].record, record, "a new record");
    let r = exchange(&mut s, vec![], true, 100_000);
    assert!(r.actions.is_empty(), "requested counts as live");
    // b's action has not fired (j3 is blocked): no allocation for b, though it has work.
    assert!(s.allocations().iter().all(|a| a.scheduler == "a"));
}

#[test]
fn a_request_never_reported_submitted_expires() {
    let mut s = sched(two_stages());
    exchange(&mut s, vec![], true, 1_000);
    let r = exchange(&mut s, vec![], true, 1_000 + REQUEST_EXPIRY_MS);
    assert!(r.actions.is_empty(), "not expired yet");
    let r = exchange(&mut s, vec![], true, 2_000 + REQUEST_EXPIRY_MS);
    assert_eq!(r.actions.len(), 1, "given up on, and requested again");
    assert_eq!(s.allocations()[0].state, AllocationState::Ended);
    assert!(s.allocations()[0].note.contains("never reported"));
}

#[test]
fn a_queued_allocation_whose_work_was_done_elsewhere_is_cancelled() {
    let mut s = sched(two_stages());
    let r = exchange(&mut s, vec![], true, 1_000);
    let record = r.actions[0].record;
    exchange(
        &mut s,
        vec![
            submitted(record, "a", 10),
            seen(10, AllocationState::Running),
        ],
        true,
        1_000,
    );
    // A second allocation of a, queued (reported by an executor that submitted two).
    let r = exchange(&mut s, vec![submitted(record, "a", 11)], true, 1_000);
    assert!(r.orders.cancel.is_empty(), "a's jobs are still ready");
    // The running one does j1 and j2.
    let tags = RunnerTags::for_scheduler("a", &[]);
    let jobs = s
        .claim_tagged(&runner("alloc10"), 10, None, Some(&tags), T0)
        .0;
    assert_eq!(jobs.len(), 2);
    let r = exchange(&mut s, vec![], true, 2_000);
    assert_eq!(
        r.orders.cancel_if_queued,
        [11],
        "queued with nothing left to start"
    );
    assert!(r.orders.cancel.is_empty());
    assert!(r.actions.is_empty(), "j3 is not ready yet");
    // The executor found it still queued, cancelled it and says so.
    let gone = AllocationUpdate::Seen {
        batch_id: 11,
        state: AllocationState::Ended,
        note: "cancelled: no work left for its scheduler".into(),
    };
    let reports: Vec<_> = jobs.iter().map(|j| report(j, 0)).collect();
    s.complete(&runner("alloc10"), &reports, T0);
    let r = exchange(&mut s, vec![gone], true, 3_000);
    assert!(r.orders.cancel_if_queued.is_empty(), "once");
    let a11 = s
        .allocations()
        .iter()
        .find(|a| a.batch_id == Some(11))
        .unwrap();
    assert_eq!(a11.state, AllocationState::Ended);
    assert!(a11.note.contains("no work left"), "{}", a11.note);
    // The running one is left alone: its runner exits by itself.
    let a10 = s
        .allocations()
        .iter()
        .find(|a| a.batch_id == Some(10))
        .unwrap();
    assert_eq!(a10.state, AllocationState::Running);
    // j3 became ready: b's action fires and is handed out (with its allocation recorded).
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].scheduler.as_ref().unwrap().name, "b");
}

#[test]
fn a_canceled_workflow_cancels_every_live_allocation() {
    let mut s = sched(two_stages());
    let r = exchange(&mut s, vec![], false, 1_000);
    let record = r.actions[0].record;
    exchange(
        &mut s,
        vec![
            submitted(record, "a", 20),
            submitted(record, "a", 21),
            seen(20, AllocationState::Running),
        ],
        false,
        1_000,
    );
    s.cancel(T0);
    // A non-elastic executor is not given orders.
    assert!(exchange(&mut s, vec![], false, 2_000)
        .orders
        .cancel
        .is_empty());
    let mut cancel = exchange(&mut s, vec![], true, 2_000).orders.cancel;
    cancel.sort();
    assert_eq!(cancel, [20, 21]);
    assert!(s.allocations().iter().all(|a| !a.state.is_live()));
    assert!(
        exchange(&mut s, vec![], true, 3_000)
            .orders
            .cancel
            .is_empty(),
        "once"
    );
}

#[test]
fn a_failed_submission_ends_its_request() {
    let mut s = sched(two_stages());
    let r = exchange(&mut s, vec![], true, 1_000);
    let record = r.actions[0].record;
    let fail = AllocationUpdate::SubmitFailed {
        record,
        message: "sbatch: error: invalid account".into(),
    };
    let r = exchange(&mut s, vec![fail], true, 2_000);
    assert_eq!(s.allocations()[0].state, AllocationState::Ended);
    assert!(s.allocations()[0].note.contains("invalid account"));
    assert!(r.actions.is_empty(), "too soon");
    // The work is still ready: a later elastic exchange asks again.
    let r = exchange(&mut s, vec![], true, 2_000 + REREQUEST_SPACING_MS);
    assert_eq!(r.actions.len(), 1);
}

#[test]
fn re_requests_stop_after_a_bound() {
    let mut s = sched(two_stages());
    let mut now = 1_000;
    let mut batch = 100;
    let mut asked = 0;
    for _ in 0..(MAX_ALLOCATIONS_PER_SCHEDULER + 10) {
        let r = exchange(&mut s, vec![], true, now);
        for a in &r.actions {
            asked += 1;
            batch += 1;
            // Submitted, then dies at once.
            exchange(
                &mut s,
                vec![
                    submitted(a.record, "a", batch),
                    seen(batch, AllocationState::Ended),
                ],
                true,
                now,
            );
        }
        now += REREQUEST_SPACING_MS;
    }
    assert_eq!(asked, MAX_ALLOCATIONS_PER_SCHEDULER);
}

#[test]
fn open_jobs_count_what_an_allocation_runner_could_still_get() {
    let mut s = sched(two_stages());
    let a = RunnerTags::for_scheduler("a", &[]);
    let b = RunnerTags::for_scheduler("b", &[]);
    assert_eq!(s.open_jobs_for(None), None, "not an allocation's runner");
    assert_eq!(s.open_jobs_for(Some(&a)), Some(2));
    assert_eq!(s.open_jobs_for(Some(&b)), Some(1));
    let jobs = s.claim_tagged(&runner("r"), 10, None, Some(&a), T0).0;
    assert_eq!(s.open_jobs_for(Some(&a)), Some(2), "running is still open");
    let reports: Vec<_> = jobs.iter().map(|j| report(j, 0)).collect();
    s.complete(&runner("r"), &reports, T0);
    assert_eq!(s.open_jobs_for(Some(&a)), Some(0), "nothing can come for a");
    assert_eq!(s.open_jobs_for(Some(&b)), Some(1));
    // Restored from what a store saved, the counts are the same.
    let saved: Vec<SavedJob> = (1..=3).map(|j| s.saved_job(JobId(j)).unwrap()).collect();
    let r =
        WorkflowSched::restore(WorkflowId(1), s.def().clone(), s.state(), 1, &saved, T0).unwrap();
    assert_eq!(r.open_jobs_for(Some(&a)), Some(0));
    assert_eq!(r.open_jobs_for(Some(&b)), Some(1));
}
