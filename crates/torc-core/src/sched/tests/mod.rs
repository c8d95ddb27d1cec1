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
        end_reason: None,
        message: None,
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
fn a_job_stopped_for_time_is_retried_when_its_handler_matches_the_timeout_code() {
    // Handlers match 152 (`timeout_exit_code`): a job stopped for time runs again; one stopped
    // by a shutdown (another code) or matching no rule ends terminated.
    let mut s = sched(with_handler(1, vec![152]));
    let jobs = claim_all(&mut s);
    let stopped = CompletionReport {
        terminated: true,
        ..report(&jobs[0], 152)
    };
    let (outcomes, changes) = s.complete(&runner("r"), &[stopped], T0);
    assert_eq!(changes.results[0].status, JobStatus::Terminated);
    assert_eq!(
        outcomes,
        [CompletionOutcome::Accepted {
            status: JobStatus::Ready
        }]
    );
    let jobs = claim_all(&mut s);
    assert_eq!(jobs[0].attempt_id, 2);
    let again = CompletionReport {
        terminated: true,
        ..report(&jobs[0], 152)
    };
    let (outcomes, _) = s.complete(&runner("r"), &[again], T0);
    assert_eq!(
        outcomes,
        [CompletionOutcome::Accepted {
            status: JobStatus::Terminated
        }],
        "max_retries reached"
    );
    let mut s = sched(with_handler(3, vec![152]));
    let jobs = claim_all(&mut s);
    let shut_down = CompletionReport {
        terminated: true,
        ..report(&jobs[0], -15)
    };
    let (outcomes, _) = s.complete(&runner("r"), &[shut_down], T0);
    assert_eq!(
        outcomes,
        [CompletionOutcome::Accepted {
            status: JobStatus::Terminated
        }]
    );
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

mod actions;
mod adjust;
mod allocations;
mod leases;
mod props;
