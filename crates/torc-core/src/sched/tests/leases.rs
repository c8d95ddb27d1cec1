//! Leases: silent runners lose their jobs; heartbeats and reports renew them.

use super::*;

const LEASE: LeasePolicy = LeasePolicy {
    lease: Duration::from_secs(10),
    max_losses: 2,
};

fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

pub(super) fn held(jobs: &[ClaimedJob]) -> Vec<HeldJob> {
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
