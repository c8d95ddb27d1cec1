//! Fair sharing of one pool of runners among many workflows.
//!
//! [`FairPool`] keeps every workflow that has something to hand out in pick order: fewest jobs
//! in flight first, then the highest priority among its ready jobs, then the one that has waited
//! longest (a ticket taken when it became claimable, and taken again each time it is served, so
//! that equals take turns). [`claim_fair`] hands out one job at a time from the head of that
//! order, re-ranking the workflow it served, so a claim of `n` jobs spreads them the way `n`
//! claims of one would. A claim costs `O(n log w)` plus one step per workflow it skips because
//! none of its ready jobs suits the runner (tags, resources, owner): it never scans ready jobs.

use super::WorkflowSched;
use crate::api::{ClaimedJob, SharedClaimRequest};
use crate::changes::Changes;
use crate::ids::{Timestamp, WorkflowId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Where a workflow stands in the pick: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairKey {
    /// Its jobs pending or running.
    pub in_flight: u64,
    /// The priority of the first job a claim would take from it.
    pub top_priority: i64,
}

type Rank = (u64, Reverse<i64>, u64, WorkflowId);

/// The workflows that have something to hand out, in pick order.
#[derive(Debug, Default, Clone)]
pub struct FairPool {
    order: BTreeSet<Rank>,
    entries: HashMap<WorkflowId, (FairKey, u64)>,
    next_ticket: u64,
}

fn rank(id: WorkflowId, key: FairKey, ticket: u64) -> Rank {
    (key.in_flight, Reverse(key.top_priority), ticket, id)
}

impl FairPool {
    pub fn new() -> FairPool {
        FairPool::default()
    }

    /// Workflows in the pick.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Records where workflow `id` stands now (`None`: nothing to hand out). A workflow keeps
    /// its place in line while it stays in the pick; one that enters goes to the back.
    pub fn update(&mut self, id: WorkflowId, key: Option<FairKey>) {
        match (self.entries.get(&id).copied(), key) {
            (Some((old, _)), Some(new)) if old == new => {}
            (Some((old, ticket)), Some(new)) => {
                self.order.remove(&rank(id, old, ticket));
                self.order.insert(rank(id, new, ticket));
                self.entries.insert(id, (new, ticket));
            }
            (Some((old, ticket)), None) => {
                self.order.remove(&rank(id, old, ticket));
                self.entries.remove(&id);
            }
            (None, Some(new)) => {
                let ticket = self.ticket();
                self.order.insert(rank(id, new, ticket));
                self.entries.insert(id, (new, ticket));
            }
            (None, None) => {}
        }
    }

    /// Workflow `id` was just served: behind its equals in line.
    fn served(&mut self, id: WorkflowId) {
        if let Some((key, ticket)) = self.entries.get(&id).copied() {
            self.order.remove(&rank(id, key, ticket));
            let ticket = self.ticket();
            self.order.insert(rank(id, key, ticket));
            self.entries.insert(id, (key, ticket));
        }
    }

    /// The workflows in pick order.
    pub fn in_order(&self) -> impl Iterator<Item = WorkflowId> + '_ {
        self.order.iter().map(|r| r.3)
    }
}

/// Claims up to `req.limit` jobs across the workflows of `pool` that `allowed` accepts, one at
/// a time from the head of the pick order. Returns the jobs, in the order handed out, and the
/// changes made to each workflow. `pool` must be up to date with `scheds` on entry; it is on
/// return.
pub fn claim_fair(
    pool: &mut FairPool,
    scheds: &mut HashMap<WorkflowId, WorkflowSched>,
    req: &SharedClaimRequest,
    allowed: impl Fn(&WorkflowSched) -> bool,
    now: Timestamp,
) -> (Vec<ClaimedJob>, Vec<(WorkflowId, Changes)>) {
    let mut jobs: Vec<ClaimedJob> = Vec::new();
    let mut changes: Vec<(WorkflowId, Changes)> = Vec::new();
    // Where each served workflow's changes are in `changes`.
    let mut changed_at: HashMap<WorkflowId, usize> = HashMap::new();
    let mut free = req.resources;
    let mut skipped: HashSet<WorkflowId> = HashSet::new();
    while jobs.len() < req.limit as usize {
        let Some(id) = pool.in_order().find(|id| !skipped.contains(id)) else {
            break;
        };
        let Some(sched) = scheds.get_mut(&id) else {
            pool.update(id, None);
            continue;
        };
        if !allowed(sched) {
            skipped.insert(id);
            continue;
        }
        let (got, ch) = sched.claim_tagged(&req.runner_id, 1, free.as_ref(), Some(&req.tags), now);
        pool.update(id, sched.fair_key());
        if got.is_empty() {
            skipped.insert(id);
            continue;
        }
        pool.served(id);
        if let Some(f) = &mut free {
            for job in &got {
                f.num_cpus = f.num_cpus.saturating_sub(job.resources.num_cpus);
                f.memory_bytes = f.memory_bytes.saturating_sub(job.resources.memory_bytes);
                f.num_gpus = f.num_gpus.saturating_sub(job.resources.num_gpus);
            }
        }
        match changed_at.get(&id) {
            Some(&at) => changes[at].1.extend(ch),
            None => {
                changed_at.insert(id, changes.len());
                changes.push((id, ch));
            }
        }
        jobs.extend(got);
    }
    (jobs, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FreeResources, RunnerTags};
    use crate::ids::{JobId, RunnerId};
    use crate::model::{JobDef, JobStatus, WorkflowDef};
    use crate::sched::tests::{report, T0};
    use std::sync::Arc;

    fn def(name: &str, n: usize, priority: i64) -> WorkflowDef {
        WorkflowDef {
            name: name.into(),
            user: Some(format!("owner-of-{name}")),
            jobs: (0..n)
                .map(|i| {
                    let mut j = JobDef::new(format!("{name}{i}"), "true");
                    j.priority = priority;
                    j
                })
                .collect(),
            ..WorkflowDef::default()
        }
    }

    fn sched(id: i64, def: WorkflowDef) -> WorkflowSched {
        let mut s = WorkflowSched::new(WorkflowId(id), Arc::new(def));
        s.initialize(T0);
        s
    }

    struct Site {
        pool: FairPool,
        scheds: HashMap<WorkflowId, WorkflowSched>,
    }

    impl Site {
        fn new(workflows: Vec<WorkflowSched>) -> Site {
            let mut site = Site {
                pool: FairPool::new(),
                scheds: HashMap::new(),
            };
            for s in workflows {
                site.pool.update(s.id(), s.fair_key());
                site.scheds.insert(s.id(), s);
            }
            site
        }

        fn claim(&mut self, limit: u32, tags: RunnerTags) -> Vec<ClaimedJob> {
            self.claim_if(limit, tags, |_| true)
        }

        fn claim_if(
            &mut self,
            limit: u32,
            tags: RunnerTags,
            allowed: impl Fn(&WorkflowSched) -> bool,
        ) -> Vec<ClaimedJob> {
            let req = SharedClaimRequest {
                runner_id: RunnerId("shared".into()),
                limit,
                resources: None,
                tags,
                wait_ms: 0,
            };
            claim_fair(&mut self.pool, &mut self.scheds, &req, allowed, T0).0
        }

        fn complete(&mut self, job: &ClaimedJob) {
            let s = self.scheds.get_mut(&job.workflow_id).unwrap();
            s.complete(&RunnerId("shared".into()), &[report(job, 0)], T0);
            self.pool.update(s.id(), s.fair_key());
        }

        fn in_flight(&self, id: i64) -> u64 {
            self.scheds[&WorkflowId(id)].in_flight()
        }
    }

    fn per_workflow(jobs: &[ClaimedJob]) -> Vec<i64> {
        let mut ids: Vec<i64> = jobs.iter().map(|j| j.workflow_id.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_claim_spreads_over_workflows_with_the_fewest_jobs_in_flight() {
        let mut busy = sched(1, def("a", 10, 0));
        busy.claim(&RunnerId("own".into()), 3, None, T0);
        let mut site = Site::new(vec![
            busy,
            sched(2, def("b", 10, 0)),
            sched(3, def("c", 10, 0)),
        ]);
        // b and c catch up with a first, then all three take turns.
        let got = site.claim(6, RunnerTags::default());
        assert_eq!(per_workflow(&got), [2, 2, 2, 3, 3, 3]);
        let got = site.claim(6, RunnerTags::default());
        assert_eq!(per_workflow(&got), [1, 1, 2, 2, 3, 3]);
        assert_eq!(
            (site.in_flight(1), site.in_flight(2), site.in_flight(3)),
            (5, 5, 5)
        );
    }

    #[test]
    fn equals_are_ordered_by_priority_then_by_turns() {
        let mut site = Site::new(vec![
            sched(1, def("low", 4, 0)),
            sched(2, def("high", 4, 5)),
            sched(3, def("other", 4, 0)),
        ]);
        let order: Vec<i64> = (0..6)
            .map(|_| site.claim(1, RunnerTags::default())[0].workflow_id.0)
            .collect();
        // `high` wins each tie on in-flight counts; the other two alternate.
        assert_eq!(order[0], 2);
        assert_eq!(order[3], 2);
        let mut rest = vec![order[1], order[2]];
        rest.sort_unstable();
        assert_eq!(rest, [1, 3]);
        assert_ne!(order[4], order[5]);
    }

    #[test]
    fn completions_let_the_starved_workflow_through_first() {
        let mut site = Site::new(vec![sched(1, def("a", 10, 0)), sched(2, def("b", 10, 0))]);
        let got = site.claim(4, RunnerTags::default());
        assert_eq!(per_workflow(&got), [1, 1, 2, 2]);
        for j in got.iter().filter(|j| j.workflow_id == WorkflowId(2)) {
            site.complete(j);
        }
        assert_eq!(per_workflow(&site.claim(2, RunnerTags::default())), [2, 2]);
    }

    #[test]
    fn tags_decide_which_runner_takes_which_job() {
        let mut d = def("t", 4, 0);
        d.jobs[1].tags = vec!["gpu".into()];
        d.jobs[2].tags = vec!["gpu".into(), "big".into()];
        d.jobs[3].tags = vec!["big".into(), "gpu".into(), "gpu".into()];
        let fresh = || sched(1, d.clone());
        let names = |jobs: Vec<ClaimedJob>| -> Vec<String> {
            let mut n: Vec<String> = jobs.into_iter().map(|j| j.name).collect();
            n.sort();
            n
        };
        let tags = |t: &[&str], run_untagged: bool| RunnerTags {
            tags: t.iter().map(|s| s.to_string()).collect(),
            run_untagged,
        };
        let claim = |s: &mut WorkflowSched, t: RunnerTags| {
            names(
                s.claim_tagged(&RunnerId("r".into()), 10, None, Some(&t), T0)
                    .0,
            )
        };
        assert_eq!(claim(&mut fresh(), tags(&[], false)), ["t0"]);
        assert_eq!(claim(&mut fresh(), tags(&["gpu"], false)), ["t1"]);
        assert_eq!(claim(&mut fresh(), tags(&["gpu"], true)), ["t0", "t1"]);
        assert_eq!(
            claim(&mut fresh(), tags(&["big", "gpu"], false)),
            ["t1", "t2", "t3"]
        );
        // A runner dedicated to the workflow, with no tag filter, takes everything.
        let all = fresh().claim(&RunnerId("r".into()), 10, None, T0).0;
        assert_eq!(names(all), ["t0", "t1", "t2", "t3"]);
    }

    #[test]
    fn a_cap_limits_jobs_in_flight_and_can_change() {
        let mut d = def("c", 6, 0);
        d.max_concurrent_jobs = Some(2);
        let mut site = Site::new(vec![sched(1, d), sched(2, def("free", 6, 0))]);
        let got = site.claim(10, RunnerTags::default());
        assert_eq!(per_workflow(&got), [1, 1, 2, 2, 2, 2, 2, 2]);
        let s = site.scheds.get_mut(&WorkflowId(1)).unwrap();
        assert_eq!(s.claim(&RunnerId("own".into()), 10, None, T0).0.len(), 0);
        s.set_max_concurrent_jobs(Some(3));
        let key = s.fair_key();
        site.pool.update(WorkflowId(1), key);
        assert_eq!(per_workflow(&site.claim(10, RunnerTags::default())), [1]);
        let done = got[0].clone();
        site.complete(&done);
        assert_eq!(per_workflow(&site.claim(10, RunnerTags::default())), [1]);
    }

    #[test]
    fn only_allowed_workflows_are_served_and_resources_are_shared_out() {
        let mut site = Site::new(vec![sched(1, def("a", 4, 0)), sched(2, def("b", 4, 0))]);
        let only_b = site.claim_if(10, RunnerTags::default(), |s| {
            s.owner() == Some("owner-of-b")
        });
        assert_eq!(per_workflow(&only_b), [2, 2, 2, 2]);
        let req = SharedClaimRequest {
            runner_id: RunnerId("r".into()),
            limit: 10,
            resources: Some(FreeResources {
                num_cpus: 3,
                memory_bytes: u64::MAX,
                num_gpus: 0,
                time_left: None,
            }),
            tags: RunnerTags::default(),
            wait_ms: 0,
        };
        let (got, changes) = claim_fair(&mut site.pool, &mut site.scheds, &req, |_| true, T0);
        assert_eq!(got.len(), 3, "one CPU each, three CPUs free");
        assert_eq!(changes.len(), 1);
        assert!(changes[0]
            .1
            .jobs
            .iter()
            .all(|c| c.status == JobStatus::Pending));
        assert_eq!(site.pool.len(), 1, "b has nothing left to hand out");
        assert_eq!(
            site.scheds[&WorkflowId(1)].job_status(JobId(4)).unwrap().0,
            JobStatus::Ready
        );
    }
}
