use super::*;
use crate::api::{CompletionReport, HeldJob};
use crate::model::{FailureHandler, FailureRule, JobDef, ResourceRequirement, Resources};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Duration;

pub(super) const T0: Timestamp = Timestamp(1_000);

fn runner(name: &str) -> RunnerId {
    RunnerId(name.to_string())
}

/// A workflow of `n` jobs named j1..jn with the given (dependent, dependency) edges (1-based).
fn def_with_edges(n: usize, edges: &[(u32, u32)]) -> WorkflowDef {
    let mut jobs: Vec<JobDef> = (1..=n)
        .map(|i| JobDef::new(format!("j{i}"), "true"))
        .collect();
    for &(job, dep) in edges {
        jobs[job as usize - 1].depends_on.push(JobId(dep));
    }
    for j in &mut jobs {
        j.depends_on.sort();
        j.depends_on.dedup();
    }
    WorkflowDef {
        name: "t".into(),
        jobs,
        ..WorkflowDef::default()
    }
}

fn sched(def: WorkflowDef) -> WorkflowSched {
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(def));
    s.initialize(T0);
    s
}

/// A completion of `job` with return code `rc`, at `T0`.
pub(super) fn report(job: &ClaimedJob, rc: i32) -> CompletionReport {
    CompletionReport {
        job_id: job.job_id,
        run_id: job.run_id,
        attempt_id: job.attempt_id,
        return_code: rc,
        terminated: false,
        recovery_failed: false,
        start_time: T0,
        end_time: T0,
        peak_memory_bytes: None,
        avg_memory_bytes: None,
        peak_cpu_percent: None,
        avg_cpu_percent: None,
    }
}

fn claim_all(s: &mut WorkflowSched) -> Vec<ClaimedJob> {
    s.claim(&runner("r"), u32::MAX, None, T0).0
}

fn names(jobs: &[ClaimedJob]) -> Vec<String> {
    let mut v: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    v.sort();
    v
}

fn status(s: &WorkflowSched, id: u32) -> JobStatus {
    s.job_status(JobId(id)).unwrap().0
}

/// Runs every claimable job to the given exit code until nothing is claimable.
fn drain(s: &mut WorkflowSched, rc_of: impl Fn(&ClaimedJob) -> i32) {
    loop {
        let jobs = claim_all(s);
        if jobs.is_empty() {
            return;
        }
        let reports: Vec<_> = jobs.iter().map(|j| report(j, rc_of(j))).collect();
        s.complete(&runner("r"), &reports, T0);
    }
}

#[test]
fn diamond_runs_in_dependency_order() {
    // 1 -> {2, 3} -> 4
    let mut s = sched(def_with_edges(4, &[(2, 1), (3, 1), (4, 2), (4, 3)]));
    let first = claim_all(&mut s);
    assert_eq!(names(&first), ["j1"]);
    assert!(claim_all(&mut s).is_empty(), "nothing else is ready yet");
    let (outcomes, changes) = s.complete(&runner("r"), &[report(&first[0], 0)], T0);
    assert_eq!(
        outcomes,
        [CompletionOutcome::Accepted {
            status: JobStatus::Completed
        }]
    );
    // The same operation unblocked both middle jobs.
    let readied: Vec<_> = changes
        .jobs
        .iter()
        .filter(|c| c.status == JobStatus::Ready)
        .map(|c| c.job)
        .collect();
    assert_eq!(readied, [JobId(2), JobId(3)]);
    let middle = claim_all(&mut s);
    assert_eq!(names(&middle), ["j2", "j3"]);
    s.complete(&runner("r"), &[report(&middle[0], 0)], T0);
    assert_eq!(status(&s, 4), JobStatus::Blocked);
    s.complete(&runner("r"), &[report(&middle[1], 0)], T0);
    let last = claim_all(&mut s);
    assert_eq!(names(&last), ["j4"]);
    let (_, changes) = s.complete(&runner("r"), &[report(&last[0], 0)], T0);
    assert_eq!(s.state(), WorkflowState::Complete);
    assert_eq!(
        changes.workflow,
        Some(WorkflowChange {
            state: WorkflowState::Complete,
            run_id: 1
        })
    );
    assert_eq!(s.count(JobStatus::Completed), 4);
}

#[test]
fn failure_cancels_downstream_by_default() {
    // 1 -> 2 -> 3, and 4 independent
    let mut s = sched(def_with_edges(4, &[(2, 1), (3, 2)]));
    drain(&mut s, |j| if j.name == "j1" { 1 } else { 0 });
    assert_eq!(status(&s, 1), JobStatus::Failed);
    assert_eq!(status(&s, 2), JobStatus::Canceled);
    assert_eq!(status(&s, 3), JobStatus::Canceled);
    assert_eq!(status(&s, 4), JobStatus::Completed);
    assert_eq!(s.state(), WorkflowState::Complete);
}

#[test]
fn downstream_runs_when_it_does_not_cancel_on_failure() {
    let mut def = def_with_edges(3, &[(2, 1), (3, 2)]);
    def.jobs[1].cancel_on_blocking_job_failure = false;
    let mut s = sched(def);
    drain(&mut s, |j| if j.name == "j1" { 1 } else { 0 });
    assert_eq!(status(&s, 1), JobStatus::Failed);
    assert_eq!(status(&s, 2), JobStatus::Completed);
    assert_eq!(status(&s, 3), JobStatus::Completed);
}

#[test]
fn cancel_waits_for_nothing_when_another_dependency_is_still_running() {
    // 3 depends on 1 and 2; 1 fails while 2 still runs: 3 is canceled at once.
    let mut s = sched(def_with_edges(3, &[(3, 1), (3, 2)]));
    let jobs = claim_all(&mut s);
    let j1 = jobs.iter().find(|j| j.name == "j1").unwrap();
    s.complete(&runner("r"), &[report(j1, 2)], T0);
    assert_eq!(status(&s, 3), JobStatus::Canceled);
    assert_eq!(s.state(), WorkflowState::Active, "job 2 still runs");
    let j2 = jobs.iter().find(|j| j.name == "j2").unwrap();
    s.complete(&runner("r"), &[report(j2, 0)], T0);
    assert_eq!(status(&s, 3), JobStatus::Canceled);
    assert_eq!(s.state(), WorkflowState::Complete);
}

fn with_handler(max_retries: u32, codes: Vec<i32>) -> WorkflowDef {
    let mut def = def_with_edges(2, &[(2, 1)]);
    def.failure_handlers.push(FailureHandler {
        name: "h".into(),
        rules: vec![FailureRule {
            exit_codes: codes,
            match_all_exit_codes: false,
            recovery_script: None,
            max_retries,
        }],
    });
    def.jobs[0].failure_handler = Some(0);
    def
}

#[test]
fn failure_handler_retries_matching_exit_codes_up_to_max_retries() {
    let mut s = sched(with_handler(2, vec![3]));
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let jobs = claim_all(&mut s);
        assert_eq!(names(&jobs), ["j1"]);
        attempts.push(jobs[0].attempt_id);
        let (outcomes, changes) = s.complete(&runner("r"), &[report(&jobs[0], 3)], T0);
        assert_eq!(changes.results.len(), 1, "one result row per attempt");
        assert_eq!(changes.results[0].status, JobStatus::Failed);
        let expected = if attempts.len() < 3 {
            JobStatus::Ready
        } else {
            JobStatus::Failed
        };
        assert_eq!(outcomes, [CompletionOutcome::Accepted { status: expected }]);
    }
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(status(&s, 2), JobStatus::Canceled);
}

#[test]
fn failure_handler_ignores_other_exit_codes_and_failed_recovery() {
    let mut s = sched(with_handler(5, vec![3]));
    let jobs = claim_all(&mut s);
    s.complete(&runner("r"), &[report(&jobs[0], 4)], T0);
    assert_eq!(status(&s, 1), JobStatus::Failed);

    let mut s = sched(with_handler(5, vec![3]));
    let jobs = claim_all(&mut s);
    let mut r = report(&jobs[0], 3);
    r.recovery_failed = true;
    let (_, changes) = s.complete(&runner("r"), &[r], T0);
    assert_eq!(status(&s, 1), JobStatus::Failed);
    assert!(changes
        .events
        .iter()
        .any(|e| e.kind == EventKind::JobRecoveryFailed));
}

#[test]
fn duplicate_report_gets_the_same_answer_and_changes_nothing() {
    let mut s = sched(def_with_edges(2, &[(2, 1)]));
    let jobs = claim_all(&mut s);
    let r = report(&jobs[0], 0);
    let (first, _) = s.complete(&runner("r"), std::slice::from_ref(&r), T0);
    let (second, changes) = s.complete(&runner("r"), &[r], T0);
    assert_eq!(first, second);
    assert!(changes.results.is_empty() && changes.jobs.is_empty());
    assert_eq!(s.count(JobStatus::Ready), 1);
}

#[test]
fn stale_attempt_and_unknown_job_are_refused_and_recorded() {
    let mut s = sched(with_handler(1, vec![1]));
    let jobs = claim_all(&mut s);
    s.complete(&runner("r"), &[report(&jobs[0], 1)], T0); // retried: attempt 2
    let retry = claim_all(&mut s);
    let mut stale = report(&retry[0], 0);
    stale.attempt_id = 7;
    let mut unknown = report(&retry[0], 0);
    unknown.job_id = JobId(99);
    let (outcomes, changes) = s.complete(&runner("r"), &[stale, unknown], T0);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, CompletionOutcome::Refused { .. })));
    assert_eq!(changes.events.len(), 2);
    assert!(changes.jobs.is_empty());
    assert_eq!(status(&s, 1), JobStatus::Pending);
}

#[test]
fn resource_claims_fit_and_respect_priority_and_sort_order() {
    let mut def = def_with_edges(6, &[]);
    let big = Resources {
        num_cpus: 2,
        memory_bytes: 4 << 30,
        num_gpus: 0,
        num_nodes: 1,
        runtime: Duration::from_secs(3600),
    };
    let gpu = Resources {
        num_gpus: 1,
        runtime: Duration::from_secs(60),
        ..big
    };
    def.resource_requirements = vec![
        ResourceRequirement {
            name: "big".into(),
            resources: big,
        },
        ResourceRequirement {
            name: "gpu".into(),
            resources: gpu,
        },
    ];
    for j in &mut def.jobs[0..2] {
        j.resource_requirement = Some(0);
    }
    def.jobs[2].resource_requirement = Some(1);
    def.jobs[5].priority = 10;
    let mut s = sched(def);
    let free = FreeResources {
        num_cpus: 3,
        memory_bytes: 16 << 30,
        num_gpus: 0,
        time_left: None,
    };
    // Priority first (j6), then the biggest class that fits (one 2-CPU job): 3 CPUs used.
    let (jobs, _) = s.claim(&runner("r"), 10, Some(&free), T0);
    assert_eq!(names(&jobs), ["j1", "j6"]);
    // With a GPU, the GPU job comes first; time left excludes the hour-long jobs.
    let free = FreeResources {
        num_gpus: 1,
        num_cpus: 8,
        time_left: Some(Duration::from_secs(120)),
        ..free
    };
    let (jobs, _) = s.claim(&runner("r"), 10, Some(&free), T0);
    assert_eq!(names(&jobs), ["j3", "j4", "j5"]);
    assert_eq!(s.ready_len(), 1, "j2 is left: it needs an hour");
}

#[test]
fn count_based_claims_honour_the_limit_and_never_hand_out_a_job_twice() {
    let mut s = sched(def_with_edges(10, &[]));
    let a = s.claim(&runner("a"), 4, None, T0).0;
    let b = s.claim(&runner("b"), 4, None, T0).0;
    let c = s.claim(&runner("c"), 4, None, T0).0;
    assert_eq!((a.len(), b.len(), c.len()), (4, 4, 2));
    let all: HashSet<JobId> = a.iter().chain(&b).chain(&c).map(|j| j.job_id).collect();
    assert_eq!(all.len(), 10);
}

#[test]
fn cancel_stops_claims_and_lets_running_jobs_report() {
    let mut s = sched(def_with_edges(3, &[(3, 1)]));
    let running = s.claim(&runner("r"), 1, None, T0).0;
    s.start(&[StartReport {
        job_id: running[0].job_id,
        attempt_id: 1,
        start_time: T0,
    }]);
    s.cancel(T0);
    assert_eq!(s.state(), WorkflowState::Canceled);
    assert!(claim_all(&mut s).is_empty());
    assert_eq!(s.count(JobStatus::Running), 1);
    let mut r = report(&running[0], -15);
    r.terminated = true;
    let (outcomes, _) = s.complete(&runner("r"), &[r], T0);
    assert_eq!(
        outcomes,
        [CompletionOutcome::Accepted {
            status: JobStatus::Terminated
        }]
    );
    assert_eq!(s.count(JobStatus::Canceled), 2);
}

#[test]
fn reset_failed_only_reruns_failures_and_their_downstream() {
    // 1 -> 2 -> 3; 4 -> 5; job 1 fails the first time.
    let mut s = sched(def_with_edges(5, &[(2, 1), (3, 2), (5, 4)]));
    drain(&mut s, |j| if j.name == "j1" { 1 } else { 0 });
    assert_eq!(s.count(JobStatus::Completed), 2);
    assert!(s.reset(true, T0).is_ok());
    assert_eq!(s.run_id(), 2);
    assert_eq!(s.state(), WorkflowState::Active);
    assert_eq!(status(&s, 4), JobStatus::Completed);
    assert_eq!(status(&s, 1), JobStatus::Ready);
    assert_eq!(status(&s, 2), JobStatus::Blocked);
    let mut ran = Vec::new();
    loop {
        let jobs = claim_all(&mut s);
        if jobs.is_empty() {
            break;
        }
        assert!(jobs.iter().all(|j| j.run_id == 2 && j.attempt_id == 1));
        ran.extend(names(&jobs));
        let reports: Vec<_> = jobs.iter().map(|j| report(j, 0)).collect();
        s.complete(&runner("r"), &reports, T0);
    }
    assert_eq!(ran, ["j1", "j2", "j3"]);
    assert_eq!(s.count(JobStatus::Completed), 5);
}

#[test]
fn reset_is_refused_while_jobs_run() {
    let mut s = sched(def_with_edges(2, &[]));
    claim_all(&mut s);
    assert!(matches!(
        s.reset(false, T0),
        Err(SchedError::JobsInFlight { running: 2, .. })
    ));
}

#[test]
fn resume_requeues_interrupted_jobs_with_a_new_attempt() {
    // 1 -> 2; 3 independent. 1 is terminated by a stop, 3 completed.
    let mut s = sched(def_with_edges(3, &[(2, 1)]));
    let jobs = claim_all(&mut s);
    let mut r1 = report(&jobs[0], -9);
    r1.terminated = true;
    let r3 = report(&jobs[1], 0);
    s.complete(&runner("r"), &[r1, r3], T0);
    assert_eq!(status(&s, 2), JobStatus::Canceled);
    assert_eq!(s.state(), WorkflowState::Complete);
    s.resume(T0);
    assert_eq!(s.state(), WorkflowState::Active);
    assert_eq!(s.job_status(JobId(1)), Some((JobStatus::Ready, 2)));
    assert_eq!(s.job_status(JobId(2)), Some((JobStatus::Blocked, 1)));
    assert_eq!(s.job_status(JobId(3)), Some((JobStatus::Completed, 1)));
    drain(&mut s, |_| 0);
    assert_eq!(s.count(JobStatus::Completed), 3);
}

#[test]
fn a_resumed_workflow_restored_from_storage_accepts_completions_of_canceled_jobs() {
    // Job 2 was canceled at attempt 1 (it never ran); after a restore and a resume it runs as
    // attempt 1 and its completion must be applied, not taken for a duplicate.
    let def = def_with_edges(2, &[(2, 1)]);
    let saved = [
        SavedJob::new(JobStatus::Terminated, 1),
        SavedJob::new(JobStatus::Canceled, 1),
    ];
    let mut s = WorkflowSched::restore(
        WorkflowId(1),
        Arc::new(def),
        WorkflowState::Complete,
        1,
        &saved,
        T0,
    )
    .unwrap();
    s.resume(T0);
    drain(&mut s, |_| 0);
    assert_eq!(s.count(JobStatus::Completed), 2);
    assert_eq!(s.state(), WorkflowState::Complete);
}

#[test]
fn restore_rebuilds_counts_and_ready_queue() {
    let def = def_with_edges(4, &[(2, 1), (3, 1), (4, 3)]);
    let mut s = sched(def.clone());
    let jobs = claim_all(&mut s);
    s.complete(&runner("r"), &[report(&jobs[0], 0)], T0);
    let saved: Vec<SavedJob> = (1..=4).map(|i| s.saved_job(JobId(i)).unwrap()).collect();
    let mut back = WorkflowSched::restore(
        WorkflowId(1),
        Arc::new(def),
        s.state(),
        s.run_id(),
        &saved,
        T0,
    )
    .unwrap();
    back.initialize(T0);
    assert_eq!(back.summary(), s.summary());
    assert_eq!(names(&claim_all(&mut back)), names(&claim_all(&mut s)));
}

#[test]
fn empty_workflow_is_complete_at_once() {
    let s = sched(def_with_edges(0, &[]));
    assert_eq!(s.state(), WorkflowState::Complete);
}

// ---- leases ----

const LEASE: LeasePolicy = LeasePolicy {
    lease: Duration::from_secs(10),
    max_losses: 2,
};

fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn held(jobs: &[ClaimedJob]) -> Vec<HeldJob> {
    jobs.iter()
        .map(|j| HeldJob {
            job_id: j.job_id,
            run_id: j.run_id,
            attempt_id: j.attempt_id,
        })
        .collect()
}

fn events_of(changes: &Changes, kind: EventKind) -> usize {
    changes.events.iter().filter(|e| e.kind == kind).count()
}

#[test]
fn a_silent_runner_loses_its_jobs_and_its_late_report_is_refused() {
    let mut s = sched(def_with_edges(3, &[(3, 1)]));
    let jobs = s.claim(&runner("a"), 2, None, T0).0;
    assert_eq!(jobs.len(), 2);
    assert!(
        s.expire_leases(at(9_999), &LEASE).is_empty(),
        "within the lease"
    );
    assert_eq!(s.next_lease_expiry(&LEASE), Some(at(10_000)));
    let changes = s.expire_leases(at(10_000), &LEASE);
    assert_eq!(events_of(&changes, EventKind::JobLost), 2);
    assert_eq!(s.job_status(JobId(1)), Some((JobStatus::Ready, 2)));
    assert_eq!(s.job_status(JobId(2)), Some((JobStatus::Ready, 2)));
    assert_eq!(s.saved_job(JobId(1)).map(|j| j.losses), Some(1));
    assert_eq!(s.next_lease_expiry(&LEASE), None, "nobody holds anything");

    // The lost attempt reports late: refused, recorded, not applied.
    let (outcomes, changes) = s.complete(&runner("a"), &[report(&jobs[0], 0)], at(10_001));
    assert!(matches!(outcomes[0], CompletionOutcome::Refused { .. }));
    assert_eq!(events_of(&changes, EventKind::ReportRefused), 1);
    assert!(changes.results.is_empty() && changes.jobs.is_empty());
    assert_eq!(s.job_status(JobId(1)), Some((JobStatus::Ready, 2)));

    // Another runner runs them as attempt 2; job 3 follows.
    let again = s.claim(&runner("b"), 10, None, at(10_002)).0;
    assert_eq!(names(&again), ["j1", "j2"]);
    assert!(again.iter().all(|j| j.attempt_id == 2));
    let (_, changes) = s.complete(&runner("b"), &[report(&again[0], 0)], at(10_003));
    assert_eq!(changes.results[0].runner, Some(runner("b")));
    assert_eq!(status(&s, 3), JobStatus::Ready);
}

#[test]
fn heartbeats_and_reports_renew_the_lease() {
    let mut s = sched(def_with_edges(2, &[]));
    let jobs = s.claim(&runner("a"), 2, None, T0).0;
    assert!(s
        .heartbeat(&runner("a"), &held(&jobs), at(6_000), &LEASE)
        .0
        .is_empty());
    assert!(s.expire_leases(at(15_000), &LEASE).is_empty());
    s.complete(&runner("a"), &[report(&jobs[0], 0)], at(12_000));
    assert!(s.expire_leases(at(21_999), &LEASE).is_empty());
    let changes = s.expire_leases(at(22_000), &LEASE);
    assert_eq!(events_of(&changes, EventKind::JobLost), 1);
    assert_eq!(s.job_status(JobId(2)), Some((JobStatus::Ready, 2)));
    assert_eq!(status(&s, 1), JobStatus::Completed);
}

#[test]
fn time_the_coordinator_could_not_listen_does_not_count_against_runners() {
    let mut s = sched(def_with_edges(1, &[]));
    s.claim(&runner("a"), 1, None, T0);
    s.extend_leases(Duration::from_secs(5));
    assert!(s.expire_leases(at(14_999), &LEASE).is_empty());
    let changes = s.expire_leases(at(15_000), &LEASE);
    assert_eq!(events_of(&changes, EventKind::JobLost), 1);
}

#[test]
fn a_job_lost_too_often_is_terminated_and_its_dependents_canceled() {
    let mut def = def_with_edges(2, &[(2, 1)]);
    def.jobs[1].cancel_on_blocking_job_failure = true;
    let mut s = sched(def);
    let mut t = 0;
    for attempt in 1..=3 {
        let jobs = s.claim(&runner("a"), 1, None, at(t)).0;
        assert_eq!(jobs[0].attempt_id, attempt);
        t += 10_000;
        let changes = s.expire_leases(at(t), &LEASE);
        let lost = changes
            .events
            .iter()
            .find(|e| e.kind == EventKind::JobLost)
            .unwrap();
        if attempt <= 2 {
            assert!(lost.message.contains("ready again"), "{}", lost.message);
        } else {
            assert!(
                lost.message.contains("terminated after 3 losses"),
                "{}",
                lost.message
            );
        }
    }
    assert_eq!(s.job_status(JobId(1)), Some((JobStatus::Terminated, 4)));
    assert_eq!(status(&s, 2), JobStatus::Canceled);
    assert_eq!(s.state(), WorkflowState::Complete);
}

#[test]
fn losses_survive_a_restore_and_reset_forgets_them() {
    let def = def_with_edges(1, &[]);
    let mut s = sched(def.clone());
    s.claim(&runner("a"), 1, None, T0);
    s.expire_leases(at(10_000), &LEASE);
    let saved = [s.saved_job(JobId(1)).unwrap()];
    assert_eq!(saved[0].losses, 1);
    let mut s =
        WorkflowSched::restore(WorkflowId(1), Arc::new(def), s.state(), 1, &saved, T0).unwrap();
    for _ in 0..2 {
        s.claim(&runner("a"), 1, None, at(20_000));
        s.expire_leases(at(30_000), &LEASE);
    }
    assert_eq!(status(&s, 1), JobStatus::Terminated, "third loss overall");
    s.reset(true, at(30_001)).unwrap();
    assert_eq!(s.saved_job(JobId(1)).unwrap().losses, 0);
}

#[test]
fn after_a_restore_runners_that_still_hold_jobs_keep_them() {
    let def = def_with_edges(3, &[]);
    let mut s = sched(def.clone());
    let a = s.claim(&runner("a"), 1, None, T0).0;
    let b = s.claim(&runner("b"), 2, None, T0).0;
    s.start(&[StartReport {
        job_id: a[0].job_id,
        attempt_id: 1,
        start_time: T0,
    }]);
    let saved: Vec<SavedJob> = (1..=3).map(|i| s.saved_job(JobId(i)).unwrap()).collect();
    let restart = at(50_000);
    let mut s = WorkflowSched::restore(WorkflowId(1), Arc::new(def), s.state(), 1, &saved, restart)
        .unwrap();
    s.initialize(restart);
    // Runner a comes back and says what it holds; runner b never does.
    assert!(s
        .heartbeat(&runner("a"), &held(&a), at(55_000), &LEASE)
        .0
        .is_empty());
    assert!(
        s.expire_leases(at(59_999), &LEASE).is_empty(),
        "orphans get a full lease"
    );
    let changes = s.expire_leases(at(60_000), &LEASE);
    assert_eq!(events_of(&changes, EventKind::JobLost), 2);
    assert!(changes.events[0]
        .message
        .contains("since the server restarted"));
    assert_eq!(s.job_status(b[0].job_id), Some((JobStatus::Ready, 2)));
    assert_eq!(s.job_status(a[0].job_id), Some((JobStatus::Running, 1)));
    // Its completion names it as the runner that ran the job.
    let (_, changes) = s.complete(&runner("a"), &[report(&a[0], 0)], at(60_001));
    assert_eq!(changes.results[0].runner, Some(runner("a")));
}

#[test]
fn a_heartbeat_revokes_what_is_no_longer_the_runners() {
    let mut s = sched(def_with_edges(3, &[]));
    let jobs = s.claim(&runner("a"), 3, None, T0).0;
    // Job 1's report was applied (its acknowledgement may still be on the way): not revoked.
    s.complete(&runner("a"), &[report(&jobs[0], 0)], T0);
    // Jobs 2 and 3 were lost while runner a was cut off.
    s.expire_leases(at(10_000), &LEASE);
    let mut listed = held(&jobs);
    listed.push(HeldJob {
        job_id: JobId(99),
        run_id: 1,
        attempt_id: 1,
    });
    let (revoked, changes) = s.heartbeat(&runner("a"), &listed, at(10_001), &LEASE);
    assert_eq!(revoked, vec![listed[1], listed[2], listed[3]]);
    assert!(changes.is_empty());
}

#[test]
fn a_job_whose_claim_answer_never_arrived_is_lost_at_the_second_heartbeat_that_misses_it() {
    let mut s = sched(def_with_edges(3, &[]));
    let jobs = s.claim(&runner("a"), 3, None, T0).0;
    // The runner only ever got jobs 1 and 2.
    let (revoked, changes) = s.heartbeat(&runner("a"), &held(&jobs[..2]), at(1_000), &LEASE);
    assert!(
        revoked.is_empty() && changes.is_empty(),
        "the answer may be on its way"
    );
    let (_, changes) = s.heartbeat(&runner("a"), &held(&jobs[..2]), at(2_000), &LEASE);
    assert_eq!(events_of(&changes, EventKind::JobLost), 1);
    assert!(changes.events[0].message.contains("claim answer was lost"));
    assert_eq!(s.job_status(JobId(3)), Some((JobStatus::Ready, 2)));
    // A heartbeat that lists everything it holds marks nothing.
    let (_, changes) = s.heartbeat(&runner("a"), &held(&jobs[..2]), at(3_000), &LEASE);
    assert!(changes.is_empty());
    assert_eq!(s.job_status(JobId(1)), Some((JobStatus::Pending, 1)));
}

#[test]
fn jobs_lost_after_a_cancel_end_terminated() {
    let mut s = sched(def_with_edges(2, &[]));
    let jobs = s.claim(&runner("a"), 2, None, T0).0;
    s.start(&[StartReport {
        job_id: jobs[0].job_id,
        attempt_id: 1,
        start_time: T0,
    }]);
    s.cancel(T0);
    assert_eq!(status(&s, 1), JobStatus::Running, "left to its runner");
    s.expire_leases(at(10_000), &LEASE);
    assert_eq!(status(&s, 1), JobStatus::Terminated);
    assert_eq!(s.count(JobStatus::Running), 0);
}

// ---- properties on random DAGs ----

/// A random DAG (edges only from later to earlier jobs), per-job cancel flags, and per-job exit
/// codes for successive attempts.
fn arb_workflow() -> impl Strategy<Value = (WorkflowDef, Vec<Vec<i32>>)> {
    (1usize..40).prop_flat_map(|n| {
        let edges = proptest::collection::vec((1..=n as u32, 1..=n as u32), 0..n * 2);
        let flags = proptest::collection::vec(any::<bool>(), n);
        let codes = proptest::collection::vec(
            proptest::collection::vec(prop_oneof![4 => Just(0), 1 => Just(1), 1 => Just(3)], 3),
            n,
        );
        let handler = proptest::collection::vec(any::<bool>(), n);
        (Just(n), edges, flags, codes, handler).prop_map(|(n, edges, flags, codes, handler)| {
            let edges: Vec<(u32, u32)> = edges
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.max(b), a.min(b)))
                .collect();
            let mut def = def_with_edges(n, &edges);
            def.failure_handlers.push(FailureHandler {
                name: "h".into(),
                rules: vec![FailureRule {
                    exit_codes: vec![3],
                    match_all_exit_codes: false,
                    recovery_script: None,
                    max_retries: 1,
                }],
            });
            for (i, j) in def.jobs.iter_mut().enumerate() {
                j.cancel_on_blocking_job_failure = flags[i];
                j.failure_handler = handler[i].then_some(0);
            }
            (def, codes)
        })
    })
}

fn exit_code(codes: &[Vec<i32>], job: &ClaimedJob) -> i32 {
    codes[job.job_id.index()][(job.attempt_id as usize - 1).min(2)]
}

/// Drives a workflow to its end, claiming with random limits and completing in random
/// groups; checks the invariants after every step. Returns the final job statuses.
fn simulate(
    def: &WorkflowDef,
    codes: &[Vec<i32>],
    choices: &[u8],
    one_by_one: bool,
) -> Vec<JobStatus> {
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(def.clone()));
    s.initialize(T0);
    let mut in_flight: Vec<ClaimedJob> = Vec::new();
    let mut handed_out: HashSet<(JobId, u32)> = HashSet::new();
    let mut step = 0usize;
    let mut next = || {
        step += 1;
        choices[step % choices.len()]
    };
    for _ in 0..10_000 {
        let limit = u32::from(next() % 4 + 1);
        let (jobs, _) = s.claim(&runner("r"), limit, None, T0);
        for j in &jobs {
            assert!(
                handed_out.insert((j.job_id, j.attempt_id)),
                "job {} attempt {} handed out twice",
                j.job_id,
                j.attempt_id
            );
            for dep in &def.jobs[j.job_id.index()].depends_on {
                assert!(
                    status(&s, dep.0).is_finished(),
                    "job {} claimed before its dependency {} finished",
                    j.job_id,
                    dep
                );
            }
        }
        in_flight.extend(jobs);
        if in_flight.is_empty() {
            break;
        }
        let take = (usize::from(next()) % in_flight.len()) + 1;
        let done: Vec<ClaimedJob> = in_flight.drain(..take).collect();
        let reports: Vec<_> = done
            .iter()
            .map(|j| report(j, exit_code(codes, j)))
            .collect();
        if one_by_one {
            for r in &reports {
                s.complete(&runner("r"), std::slice::from_ref(r), T0);
            }
        } else {
            s.complete(&runner("r"), &reports, T0);
        }
        check_invariants(&s, def);
    }
    assert!(in_flight.is_empty());
    assert_eq!(s.state(), WorkflowState::Complete, "the workflow must end");
    (1..=def.jobs.len() as u32).map(|i| status(&s, i)).collect()
}

/// Two runners claim and complete; at random one of them dies (its jobs are lost once its lease
/// runs out, and its reports come late), or the coordinator restarts from its saved state (the
/// runners then say what they hold). Every job must still end, no attempt be handed out twice,
/// no late report be applied, and no job complete twice.
fn simulate_with_failures(def: &WorkflowDef, codes: &[Vec<i32>], choices: &[u8]) {
    let policy = LeasePolicy {
        lease: Duration::from_secs(10),
        max_losses: u32::MAX,
    };
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(def.clone()));
    s.initialize(T0);
    let mut now = T0;
    let mut generation = [0u32; 2];
    let name = |r: usize, g: u32| runner(&format!("{}{g}", ["a", "b"][r]));
    let mut holding: [Vec<ClaimedJob>; 2] = Default::default();
    let mut late: Vec<ClaimedJob> = Vec::new();
    let mut handed_out: HashSet<(JobId, u32, u32)> = HashSet::new();
    let mut completed: HashSet<JobId> = HashSet::new();
    let mut step = 0usize;
    let mut next = || {
        step += 1;
        choices[step % choices.len()]
    };
    for _ in 0..2_000 {
        now = Timestamp(now.0 + 1);
        let r = usize::from(next() % 2);
        match next() % 12 {
            0 => {
                // Runner r dies; the other one keeps beating.
                late.append(&mut holding[r]);
                generation[r] += 1;
                now = Timestamp(now.0 + 10_000);
                let other = 1 - r;
                let (revoked, _) = s.heartbeat(
                    &name(other, generation[other]),
                    &held(&holding[other]),
                    now,
                    &policy,
                );
                assert!(revoked.is_empty(), "a live runner lost {revoked:?}");
                s.expire_leases(now, &policy);
            }
            1 => {
                for j in late.drain(..) {
                    let (outcomes, changes) = s.complete(&runner("dead"), &[report(&j, 0)], now);
                    assert!(
                        matches!(outcomes[0], CompletionOutcome::Refused { .. }),
                        "late report of job {} attempt {} applied",
                        j.job_id,
                        j.attempt_id
                    );
                    assert!(changes.results.is_empty());
                }
            }
            2 => {
                let saved: Vec<SavedJob> = (1..=def.jobs.len() as u32)
                    .map(|i| s.saved_job(JobId(i)).unwrap())
                    .collect();
                s = WorkflowSched::restore(
                    WorkflowId(1),
                    Arc::new(def.clone()),
                    s.state(),
                    s.run_id(),
                    &saved,
                    now,
                )
                .unwrap();
                s.initialize(now);
                for (r, jobs) in holding.iter().enumerate() {
                    let (revoked, _) =
                        s.heartbeat(&name(r, generation[r]), &held(jobs), now, &policy);
                    assert!(revoked.is_empty(), "a restart took {revoked:?}");
                }
            }
            _ => {
                let limit = u32::from(next() % 4 + 1);
                let (jobs, _) = s.claim(&name(r, generation[r]), limit, None, now);
                for j in &jobs {
                    assert!(
                        handed_out.insert((j.job_id, j.run_id, j.attempt_id)),
                        "job {} attempt {} handed out twice",
                        j.job_id,
                        j.attempt_id
                    );
                }
                holding[r].extend(jobs);
                if holding[r].is_empty() {
                    continue;
                }
                let take = usize::from(next()) % holding[r].len() + 1;
                let done: Vec<ClaimedJob> = holding[r].drain(..take).collect();
                let reports: Vec<_> = done
                    .iter()
                    .map(|j| report(j, exit_code(codes, j)))
                    .collect();
                let (outcomes, _) = s.complete(&name(r, generation[r]), &reports, now);
                for (j, o) in done.iter().zip(outcomes) {
                    match o {
                        CompletionOutcome::Accepted { status } => {
                            if status == JobStatus::Completed {
                                assert!(
                                    completed.insert(j.job_id),
                                    "job {} completed twice",
                                    j.job_id
                                );
                            }
                        }
                        CompletionOutcome::Refused { reason } => {
                            panic!("a live runner's report was refused: {reason}")
                        }
                    }
                }
            }
        }
        check_invariants(&s, def);
    }
    // Whatever happened, one healthy runner brings the workflow to its end.
    now = Timestamp(now.0 + 10_000);
    s.expire_leases(now, &policy);
    for _ in 0..1_000 {
        let (jobs, _) = s.claim(&runner("last"), u32::MAX, None, now);
        if jobs.is_empty() {
            break;
        }
        let reports: Vec<_> = jobs
            .iter()
            .map(|j| report(j, exit_code(codes, j)))
            .collect();
        let (outcomes, _) = s.complete(&runner("last"), &reports, now);
        for (j, o) in jobs.iter().zip(outcomes) {
            if o == (CompletionOutcome::Accepted {
                status: JobStatus::Completed,
            }) {
                assert!(
                    completed.insert(j.job_id),
                    "job {} completed twice",
                    j.job_id
                );
            }
        }
        check_invariants(&s, def);
    }
    assert_eq!(s.state(), WorkflowState::Complete, "the workflow must end");
}

fn check_invariants(s: &WorkflowSched, def: &WorkflowDef) {
    let mut counts = [0u64; 11];
    for (i, job) in def.jobs.iter().enumerate() {
        let st = status(s, i as u32 + 1);
        counts[st as usize] += 1;
        let unfinished = job
            .depends_on
            .iter()
            .filter(|d| !status(s, d.0).is_finished())
            .count();
        match st {
            JobStatus::Ready | JobStatus::Pending | JobStatus::Running => {
                assert_eq!(
                    unfinished,
                    0,
                    "job {} active before its dependencies",
                    i + 1
                )
            }
            JobStatus::Blocked => assert!(unfinished > 0, "job {} blocked for nothing", i + 1),
            _ => {}
        }
    }
    for st in JobStatus::ALL {
        assert_eq!(s.count(st), counts[st as usize], "count of {st}");
    }
    assert_eq!(s.ready_len() as u64, counts[JobStatus::Ready as usize]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_workflows_end_with_no_double_claims((def, codes) in arb_workflow(),
                                                  choices in proptest::collection::vec(any::<u8>(), 1..50)) {
        simulate(&def, &codes, &choices, false);
    }

    #[test]
    fn batches_end_in_the_same_state_as_one_by_one((def, codes) in arb_workflow(),
                                                   choices in proptest::collection::vec(any::<u8>(), 1..50),
                                                   other in proptest::collection::vec(any::<u8>(), 1..50)) {
        let batched = simulate(&def, &codes, &choices, false);
        let single = simulate(&def, &codes, &other, true);
        prop_assert_eq!(batched, single);
    }

    #[test]
    fn lost_runners_and_restarts_lose_nothing((def, codes) in arb_workflow(),
                                              choices in proptest::collection::vec(any::<u8>(), 1..50)) {
        simulate_with_failures(&def, &codes, &choices);
    }
}
