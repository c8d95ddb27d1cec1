//! The ready queue: ready jobs bucketed by scheduling class, so that a claim costs in proportion
//! to what it returns (plus the non-empty classes it looks at), never to the queue's length.
//!
//! A class is a (priority, resource requirement, tag set) triple. The classes of a workflow are
//! known when it is loaded, so their claim order is computed once: priority first (higher
//! first), then the workflow's sort method over the requirement's resources, then spec order.
//! Each class holds its ready jobs first-in first-out; a set of non-empty class ranks lets a
//! claim skip empty classes, and a claim by a runner whose tags rule out a class skips it whole.

use crate::model::{Resources, SortMethod, WorkflowDef};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The bucketed ready queue of one workflow.
#[derive(Debug, Clone)]
pub(crate) struct ReadyQueue {
    /// Per class, in claim order (index = rank): the resources its jobs need and its ready jobs.
    classes: Vec<Class>,
    /// Ranks of classes that hold at least one job.
    non_empty: BTreeSet<u32>,
    /// Class rank of each job (by job index).
    rank_of_job: Vec<u32>,
    /// The distinct tag sets of the workflow's jobs, each sorted; index 0 is the empty set.
    tag_sets: Vec<Vec<String>>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Class {
    priority: i64,
    resources: Resources,
    /// Index into `tag_sets`.
    tag_set: u32,
    jobs: VecDeque<u32>,
}

/// Which of a workflow's tag sets a runner may take, by tag-set index.
pub(crate) type Eligible = Vec<bool>;

impl ReadyQueue {
    pub(crate) fn new(def: &WorkflowDef) -> ReadyQueue {
        let mut tag_sets: Vec<Vec<String>> = vec![Vec::new()];
        let mut tag_index: HashMap<Vec<String>, u32> = HashMap::from([(Vec::new(), 0)]);
        let tag_set_of_job: Vec<u32> = def
            .jobs
            .iter()
            .map(|j| {
                let mut tags = j.tags.clone();
                // A job of a Slurm scheduler goes only to that scheduler's allocations (or to a
                // runner that takes every job): its scheduler is one more tag it requires.
                if let Some(s) = &j.scheduler {
                    tags.push(crate::api::RunnerTags::scheduler_tag(s));
                }
                tags.sort_unstable();
                tags.dedup();
                *tag_index.entry(tags).or_insert_with_key(|tags| {
                    tag_sets.push(tags.clone());
                    tag_sets.len() as u32 - 1
                })
            })
            .collect();
        // Distinct (priority, requirement, tag set) triples; `None` requirement is the default
        // resources.
        let mut keys: Vec<(i64, Option<u32>, u32)> = def
            .jobs
            .iter()
            .zip(&tag_set_of_job)
            .map(|(j, &t)| (j.priority, j.resource_requirement, t))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let resources_of = |req: Option<u32>| {
            req.and_then(|i| def.resource_requirements.get(i as usize))
                .map(|r| r.resources)
                .unwrap_or(Resources::DEFAULT_JOB)
        };
        let spec_pos = |req: Option<u32>| req.map_or(0, |i| i as u64 + 1);
        keys.sort_by_key(|&(priority, req, tag_set)| {
            let r = resources_of(req);
            let (a, b) = match def.jobs_sort_method {
                SortMethod::GpusRuntimeMemory => (r.runtime.as_millis(), r.memory_bytes as u128),
                SortMethod::GpusMemoryRuntime => (r.memory_bytes as u128, r.runtime.as_millis()),
                SortMethod::None => (0, 0),
            };
            let gpus = if def.jobs_sort_method == SortMethod::None {
                0
            } else {
                r.num_gpus
            };
            (
                Reverse(priority),
                Reverse(gpus),
                Reverse(a),
                Reverse(b),
                spec_pos(req),
                tag_set,
            )
        });
        let rank: HashMap<(i64, Option<u32>, u32), u32> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u32))
            .collect();
        let rank_of_job = def
            .jobs
            .iter()
            .zip(&tag_set_of_job)
            .map(|(j, &t)| rank[&(j.priority, j.resource_requirement, t)])
            .collect();
        let classes = keys
            .iter()
            .map(|&(priority, req, tag_set)| Class {
                priority,
                resources: resources_of(req),
                tag_set,
                jobs: VecDeque::new(),
            })
            .collect();
        ReadyQueue {
            classes,
            non_empty: BTreeSet::new(),
            rank_of_job,
            tag_sets,
            len: 0,
        }
    }

    /// Which tag sets a runner with `tags` may take: a tagged job only if the runner has all of
    /// its tags; an untagged job if the runner has no tags, or has and runs untagged jobs too.
    pub(crate) fn eligible(&self, tags: &[String], run_untagged: bool) -> Eligible {
        self.tag_sets
            .iter()
            .map(|set| {
                if set.is_empty() {
                    tags.is_empty() || run_untagged
                } else {
                    set.iter().all(|t| tags.contains(t))
                }
            })
            .collect()
    }

    /// The priority of the first job a claim would take (ignoring what fits), if any.
    pub(crate) fn top_priority(&self) -> Option<i64> {
        let rank = self.non_empty.first()?;
        Some(self.classes[*rank as usize].priority)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, job: u32) {
        let rank = self.rank_of_job[job as usize];
        let class = &mut self.classes[rank as usize];
        if class.jobs.is_empty() {
            self.non_empty.insert(rank);
        }
        class.jobs.push_back(job);
        self.len += 1;
    }

    pub(crate) fn clear(&mut self) {
        for rank in std::mem::take(&mut self.non_empty) {
            self.classes[rank as usize].jobs.clear();
        }
        self.len = 0;
    }

    /// Removes and returns up to `limit` jobs in claim order. With `free`, only jobs that fit
    /// together in it (it is decreased by what they take); without, any jobs (count-based).
    /// With `eligible`, only jobs of the tag sets it allows.
    pub(crate) fn take(
        &mut self,
        limit: usize,
        mut free: Option<&mut Fit>,
        eligible: Option<&Eligible>,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        for &rank in &self.non_empty {
            if out.len() >= limit {
                break;
            }
            let class = &mut self.classes[rank as usize];
            if eligible.is_some_and(|e| !e[class.tag_set as usize]) {
                continue;
            }
            let want = limit - out.len();
            let n = match free.as_deref_mut() {
                Some(fit) => fit.take_up_to(&class.resources, want.min(class.jobs.len())),
                None => want.min(class.jobs.len()),
            };
            out.extend(class.jobs.drain(..n));
            if class.jobs.is_empty() {
                emptied.push(rank);
            }
        }
        for rank in emptied {
            self.non_empty.remove(&rank);
        }
        self.len -= out.len();
        out
    }
}

/// Free resources being filled by a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fit {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub gpus: u32,
    pub time_left: Option<std::time::Duration>,
}

impl Fit {
    /// How many (at most `want`) jobs needing `need` fit; takes their resources.
    fn take_up_to(&mut self, need: &Resources, want: usize) -> usize {
        if need.num_nodes > 1 || self.time_left.is_some_and(|t| need.runtime > t) {
            return 0;
        }
        let per = |free: u64, each: u64| free.checked_div(each).unwrap_or(u64::MAX);
        let n = (want as u64)
            .min(per(self.cpus as u64, need.num_cpus as u64))
            .min(per(self.memory_bytes, need.memory_bytes))
            .min(per(self.gpus as u64, need.num_gpus as u64));
        // n ≤ the free amount divided by each need, so these cannot underflow.
        self.cpus -= (n * need.num_cpus as u64) as u32;
        self.memory_bytes -= n * need.memory_bytes;
        self.gpus -= (n * need.num_gpus as u64) as u32;
        n as usize
    }
}
