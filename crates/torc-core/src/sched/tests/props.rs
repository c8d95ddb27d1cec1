//! Properties on random DAGs.

use super::leases::held;
use super::*;

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
