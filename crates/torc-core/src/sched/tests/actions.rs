//! Workflow actions: triggers fire with the state change that completes them, once per arming;
//! records go to one executor (persistent ones to each); nothing fires twice or is lost across
//! restores; a reset re-arms.

use super::*;
use crate::api::{ActionCapabilities, ClaimedAction};
use crate::changes::ActionChange;
use crate::model::{ActionDef, ActionKind, SchedulerType, Trigger};
use std::collections::BTreeMap;

fn action(trigger: Trigger, jobs: &[u32], persistent: bool) -> ActionDef {
    ActionDef {
        trigger,
        kind: ActionKind::ScheduleNodes {
            scheduler: Some("s".into()),
            scheduler_type: SchedulerType::Slurm,
            num_allocations: 1,
            start_one_worker_per_node: false,
            max_parallel_jobs: None,
        },
        jobs: jobs.iter().map(|&j| JobId(j)).collect(),
        persistent,
    }
}

const ALL: ActionCapabilities = ActionCapabilities {
    slurm: true,
    local_runners: true,
    run_commands: true,
};

/// Actions fired by `changes`, as indexes into the definition's actions.
fn fired(changes: &Changes) -> Vec<u32> {
    changes
        .actions
        .iter()
        .filter_map(|c| match c {
            ActionChange::Triggered { action, .. } => Some(*action),
            ActionChange::Claimed { .. } => None,
        })
        .collect()
}

fn indexes(claimed: &[ClaimedAction]) -> Vec<u32> {
    claimed.iter().map(|a| a.action_index).collect()
}

/// j1 → (j2, j3) → j4, with one action of each trigger.
fn diamond_with_actions() -> WorkflowDef {
    let mut def = def_with_edges(4, &[(2, 1), (3, 1), (4, 2), (4, 3)]);
    def.actions = vec![
        action(Trigger::OnWorkflowStart, &[], false),
        action(Trigger::OnJobsReady, &[4], false),
        action(Trigger::OnJobsComplete, &[2, 3], false),
        action(Trigger::OnWorkflowComplete, &[], true),
    ];
    def
}

fn finish(s: &mut WorkflowSched, rc: i32) -> Changes {
    let jobs = claim_all(s);
    let reports: Vec<_> = jobs.iter().map(|j| report(j, rc)).collect();
    s.complete(&runner("r"), &reports, T0).1
}

#[test]
fn each_trigger_fires_with_the_change_that_completes_it() {
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(diamond_with_actions()));
    assert_eq!(
        fired(&s.initialize(T0)),
        [0],
        "start fires at the first evaluation"
    );
    assert_eq!(
        fired(&finish(&mut s, 0)),
        Vec::<u32>::new(),
        "j1 done: j2, j3 ready"
    );
    // j2 and j3 finish together: j4 becomes ready in the same change.
    // j2 and j3 finish in one report: their completion fires, then j4's readiness.
    assert_eq!(fired(&finish(&mut s, 0)), [2, 1]);
    assert_eq!(fired(&finish(&mut s, 0)), [3], "the workflow completed");
    assert_eq!(s.state(), WorkflowState::Complete);
    assert_eq!(
        fired(&s.initialize(T0)),
        Vec::<u32>::new(),
        "nothing fires twice"
    );
}

#[test]
fn a_record_goes_to_one_executor_and_a_persistent_one_to_each() {
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(diamond_with_actions()));
    s.initialize(T0);
    let none = ActionCapabilities::default();
    assert!(
        s.claim_actions("x", &none, T0).0.is_empty(),
        "x cannot do it"
    );
    let (got, changes) = s.claim_actions("a", &ALL, T0);
    assert_eq!(indexes(&got), [0]);
    assert_eq!(changes.actions.len(), 1);
    assert!(s.claim_actions("b", &ALL, T0).0.is_empty(), "taken by a");
    drain(&mut s, |_| 0);
    // Records in the order they fired: j2 and j3 complete (2) before j4 is ready (1).
    assert_eq!(indexes(&s.claim_actions("a", &ALL, T0).0), [2, 1, 3]);
    // The persistent completion action goes to b as well, and to each only once.
    assert_eq!(indexes(&s.claim_actions("b", &ALL, T0).0), [3]);
    assert!(s.claim_actions("b", &ALL, T0).0.is_empty());
    let only_commands = ActionCapabilities {
        run_commands: true,
        ..ActionCapabilities::default()
    };
    assert!(s.claim_actions("c", &only_commands, T0).0.is_empty());
}

#[test]
fn a_reset_re_arms_the_triggers_of_what_it_resets() {
    let mut s = WorkflowSched::new(WorkflowId(1), Arc::new(diamond_with_actions()));
    s.initialize(T0);
    finish(&mut s, 0);
    finish(&mut s, 0);
    // j4 fails: the workflow ends (failed jobs are finished).
    assert_eq!(fired(&finish(&mut s, 1)), [3]);
    let changes = s.reset(true, T0).unwrap();
    // j4 ready again in run 2: its on_jobs_ready fires again; j2 and j3 kept their results.
    assert_eq!(fired(&changes), [1]);
    assert_eq!(fired(&finish(&mut s, 0)), [3], "completion fires again");
    let records: Vec<(u32, u32)> = s
        .pending_actions()
        .iter()
        .map(|r| (r.action, r.run_id))
        .collect();
    assert_eq!(records, [(0, 1), (2, 1), (1, 1), (3, 1), (1, 2), (3, 2)]);
}

/// Saves what a store would keep of a workflow: job states and every record with its claims.
#[derive(Default, Clone)]
struct Saved {
    records: BTreeMap<u32, (u32, u32, Vec<String>)>,
}

impl Saved {
    fn apply(&mut self, changes: &Changes) {
        for c in &changes.actions {
            match c {
                ActionChange::Triggered {
                    record,
                    action,
                    run_id,
                    ..
                } => {
                    assert!(
                        self.records
                            .insert(*record, (*action, *run_id, Vec::new()))
                            .is_none(),
                        "record {record} created twice"
                    );
                }
                ActionChange::Claimed {
                    record, executor, ..
                } => self
                    .records
                    .get_mut(record)
                    .expect("a claimed record exists")
                    .2
                    .push(executor.clone()),
            }
        }
    }

    fn restore(&self, s: &WorkflowSched, def: &Arc<WorkflowDef>) -> WorkflowSched {
        let jobs: Vec<SavedJob> = (0..def.jobs.len())
            .map(|i| s.saved_job(JobId::from_index(i)).unwrap())
            .collect();
        let mut r =
            WorkflowSched::restore(s.id(), def.clone(), s.state(), s.run_id(), &jobs, T0).unwrap();
        let open: Vec<ActionRecord> = self
            .records
            .iter()
            .filter(|(_, (a, _, by))| by.is_empty() || def.actions[*a as usize].persistent)
            .map(|(&id, (a, run, by))| ActionRecord {
                id,
                action: *a,
                run_id: *run,
                claimed_by: by.clone(),
            })
            .collect();
        let next = self.records.keys().max().map_or(1, |m| m + 1);
        r.restore_actions(open, next);
        r
    }
}

fn arb_actions(n: usize) -> impl Strategy<Value = Vec<ActionDef>> {
    let trigger = prop_oneof![
        Just(Trigger::OnWorkflowStart),
        Just(Trigger::OnWorkflowComplete),
        Just(Trigger::OnJobsReady),
        Just(Trigger::OnJobsComplete),
    ];
    let one = (
        trigger,
        proptest::collection::btree_set(1..=n as u32, 1..=n.min(4)),
        any::<bool>(),
    )
        .prop_map(|(t, jobs, p)| {
            let jobs: Vec<u32> = if t.watches_jobs() {
                jobs.into_iter().collect()
            } else {
                Vec::new()
            };
            action(t, &jobs, p)
        });
    proptest::collection::vec(one, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Run to the end with restores at random points and two executors claiming: every action
    /// whose condition holds at the end fired exactly once, none whose condition never held
    /// fired, and every non-persistent record went to exactly one executor.
    #[test]
    fn no_action_runs_twice_and_none_is_lost_across_restores(
        (n, edges, codes) in (1usize..12).prop_flat_map(|n| (
            Just(n),
            proptest::collection::vec((1..=n as u32, 1..=n as u32), 0..n * 2),
            proptest::collection::vec(prop_oneof![3 => Just(0), 1 => Just(1)], n),
        )),
        actions in (1usize..12).prop_flat_map(arb_actions),
        choices in proptest::collection::vec(any::<u8>(), 64),
    ) {
        let edges: Vec<(u32, u32)> = edges
            .into_iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.max(b), a.min(b)))
            .collect();
        let mut def = def_with_edges(n, &edges);
        def.actions = actions
            .into_iter()
            .filter(|a| a.jobs.iter().all(|j| j.index() < n))
            .collect();
        let def = Arc::new(def);
        let mut saved = Saved::default();
        let mut s = WorkflowSched::new(WorkflowId(1), def.clone());
        saved.apply(&s.initialize(T0));
        let mut claims: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (step, &c) in choices.iter().enumerate() {
            match c % 4 {
                0 => s = saved.restore(&s, &def),
                1 => {
                    let executor = if c % 8 == 1 { "a" } else { "b" };
                    let (got, changes) = s.claim_actions(executor, &ALL, T0);
                    saved.apply(&changes);
                    for g in got {
                        claims.entry(g.record).or_default().push(executor.to_string());
                    }
                }
                _ => {
                    let jobs = s.claim(&runner("r"), 1 + (c as u32 % 3), None, T0).0;
                    let reports: Vec<_> = jobs
                        .iter()
                        .map(|j| report(j, codes[j.job_id.index()]))
                        .collect();
                    saved.apply(&s.complete(&runner("r"), &reports, T0).1);
                }
            }
            if step % 16 == 15 {
                // Restored right after a restore: nothing fires from it.
                let before = saved.records.len();
                s = saved.restore(&s, &def);
                saved.apply(&s.initialize(T0));
                prop_assert_eq!(saved.records.len(), before, "a restore fired something");
            }
        }
        drain(&mut s, |j| codes[j.job_id.index()]);
        saved.apply(&Changes::default());
        // Whatever the drain fired is not in `saved` yet: read the live records too.
        let mut fired_per_action: BTreeMap<u32, usize> = BTreeMap::new();
        for (a, _, _) in saved.records.values() {
            *fired_per_action.entry(*a).or_default() += 1;
        }
        for r in s.pending_actions() {
            if !saved.records.contains_key(&r.id) {
                *fired_per_action.entry(r.action).or_default() += 1;
            }
        }
        prop_assert_eq!(s.state(), WorkflowState::Complete);
        for (a, action) in def.actions.iter().enumerate() {
            let holds = match action.trigger {
                Trigger::OnWorkflowStart | Trigger::OnWorkflowComplete => true,
                Trigger::OnJobsReady => action.jobs.iter().all(|j| {
                    !matches!(status(&s, j.0), JobStatus::Canceled)
                }),
                Trigger::OnJobsComplete => true,
            };
            let count = fired_per_action.get(&(a as u32)).copied().unwrap_or(0);
            if holds {
                prop_assert_eq!(count, 1, "action {} ({:?}) fired {} times", a, action.trigger, count);
            } else {
                prop_assert_eq!(count, 0, "action {} fired without its condition", a);
            }
        }
        for (record, by) in &claims {
            let (a, _, _) = &saved.records[record];
            let persistent = def.actions[*a as usize].persistent;
            let mut unique = by.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), by.len(), "record {} claimed twice by one executor", record);
            if !persistent {
                prop_assert_eq!(by.len(), 1, "record {} went to {:?}", record, by);
            }
        }
    }
}
