//! The per-workflow scheduler: live state of every job, the dependency graph and the ready
//! queue, and the operations that move jobs through their states.
//!
//! [`WorkflowSched`] is a plain synchronous state machine. Every operation takes `now`, changes
//! memory, and returns the [`Changes`] it made; the caller persists them (in one transaction per
//! batch) before it answers anyone. Invariants, checked by the tests:
//!
//! - a job is in the ready queue exactly when its status is `Ready`;
//! - a `Blocked` job's count of unfinished dependencies is exact, and it becomes `Ready` (or
//!   `Canceled`, by the failure cascade) in the same operation that finishes its last dependency;
//! - a job is handed out by a claim only from `Ready`, so never to two runners at once;
//! - the per-status counts always match the jobs' statuses.

mod actions;
mod adjust;
mod alloc;
mod claim;
mod complete;
mod control;
mod fair;
mod lease;
mod ready;

pub use actions::ActionRecord;
pub use adjust::{AdjustError, RequirementChange, ResourceScale};
pub use alloc::{MAX_ALLOCATIONS_PER_SCHEDULER, REQUEST_EXPIRY_MS, REREQUEST_SPACING_MS};
pub use fair::{claim_fair, FairKey, FairPool};
pub use lease::LeasePolicy;

use crate::api::{
    ClaimedJob, CompletionOutcome, CompletionReport, FreeResources, RunnerTags, StartReport,
};
use crate::changes::{
    Changes, Event, EventKind, JobChange, JobResult, WorkflowChange, WorkflowState,
};
use crate::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use crate::model::{JobStatus, WorkflowDef};
use ready::{Fit, ReadyQueue};
use std::collections::HashMap;
use std::sync::Arc;

/// Why an operation on a workflow was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("workflow {workflow} has {running} job(s) pending or running; cancel it or wait for them before a reset")]
    JobsInFlight { workflow: WorkflowId, running: u64 },
    #[error("the saved state of workflow {workflow} does not match its definition: {detail}")]
    Inconsistent {
        workflow: WorkflowId,
        detail: String,
    },
}

/// Live state of one job.
#[derive(Debug, Clone, Copy)]
struct JobRt {
    status: JobStatus,
    attempt: u32,
    /// Unfinished dependencies; meaningful while `Blocked`.
    unfinished: u32,
    /// Index into `runners` of the runner holding it while pending or running.
    holder: u32,
    /// Times a runner holding it was lost (its lease ran out) in this run.
    losses: u32,
    /// Its holder's last heartbeat did not list it (see [`WorkflowSched::heartbeat`]).
    unlisted: bool,
    /// The last completion applied in this run: its attempt (0: none) and the answer given.
    done_attempt: u32,
    done_status: JobStatus,
}

const NO_HOLDER: u32 = u32::MAX;
/// The `runners` slot of "held before a restart, by a runner not heard from since": jobs
/// restored pending or running. A runner that lists such a job in a heartbeat, or reports it,
/// takes it over; otherwise the slot's lease runs out like any runner's.
const ORPHANS: u32 = 0;

/// A runner known to a workflow: who, when last heard from, how many jobs it holds.
#[derive(Debug, Clone)]
struct RunnerRt {
    id: RunnerId,
    heard: Timestamp,
    held: u32,
}

/// A job's saved state, as a store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedJob {
    pub status: JobStatus,
    pub attempt: u32,
    /// Times the job was lost with its runner in the current run.
    pub losses: u32,
    /// The attempt of its latest result in the current run, if any: a report of that attempt
    /// sent again after a restart is answered as it was the first time, not refused.
    pub last_result: Option<u32>,
}

impl SavedJob {
    pub fn new(status: JobStatus, attempt: u32) -> SavedJob {
        SavedJob {
            status,
            attempt,
            losses: 0,
            last_result: None,
        }
    }
}

/// The live state of one workflow. See the module documentation.
#[derive(Debug, Clone)]
pub struct WorkflowSched {
    id: WorkflowId,
    def: Arc<WorkflowDef>,
    jobs: Vec<JobRt>,
    /// Reverse edges in compressed form: the dependents of job `i` are
    /// `dependents[dependents_start[i]..dependents_start[i + 1]]`.
    dependents_start: Vec<u32>,
    dependents: Vec<u32>,
    ready: ReadyQueue,
    counts: [u64; 11],
    state: WorkflowState,
    run_id: u32,
    /// Runners that claimed jobs of this workflow; slot [`ORPHANS`] is no real runner.
    runners: Vec<RunnerRt>,
    runner_index: HashMap<RunnerId, u32>,
    /// Bumped whenever a job becomes ready: lets a caller with parked claims skip retrying them.
    ready_generation: u64,
    /// At most this many jobs pending or running at once.
    max_concurrent: Option<u32>,
    /// Workflow actions: what is armed, what fired and waits for an executor.
    triggers: actions::Triggers,
    /// The `now` of the latest operation that gave one (stamps the records of fired actions).
    last_now: Timestamp,
    /// Job counts by status per scheduler (empty when no job names one).
    sched_counts: alloc::SchedulerCounts,
    /// Allocations requested for this workflow's schedulers.
    allocations: Vec<crate::alloc::Allocation>,
}

/// Job counts by status, with the workflow's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSummary {
    pub state: WorkflowState,
    pub run_id: u32,
    pub counts: Vec<(JobStatus, u64)>,
    pub total: u64,
}

impl WorkflowSched {
    /// A new workflow: every job uninitialized, attempt 1, run 1. Call [`Self::initialize`].
    pub fn new(id: WorkflowId, def: Arc<WorkflowDef>) -> WorkflowSched {
        let states = vec![SavedJob::new(JobStatus::Uninitialized, 1); def.jobs.len()];
        Self::build(id, def, WorkflowState::Active, 1, &states, true)
    }

    /// Rebuilds live state from what a store saved: each job's status, attempt and losses (by
    /// index). Jobs saved pending or running are held by no known runner: their lease starts at
    /// `now`, and a runner that still has them takes them over by saying so (see
    /// [`Self::heartbeat`]).
    pub fn restore(
        id: WorkflowId,
        def: Arc<WorkflowDef>,
        state: WorkflowState,
        run_id: u32,
        jobs: &[SavedJob],
        now: Timestamp,
    ) -> Result<WorkflowSched, SchedError> {
        if jobs.len() != def.jobs.len() {
            return Err(SchedError::Inconsistent {
                workflow: id,
                detail: format!("{} job states for {} jobs", jobs.len(), def.jobs.len()),
            });
        }
        let mut s = Self::build(id, def, state, run_id, jobs, false);
        s.runners[ORPHANS as usize].heard = now;
        // Blocked counts are derived, never stored; a blocked job whose dependencies all
        // finished (a crash between two writes cannot cause it, but a hand-edited database can)
        // is re-evaluated by `initialize`.
        for (i, saved) in jobs.iter().enumerate() {
            match s.jobs[i].status {
                JobStatus::Blocked => {
                    s.jobs[i].unfinished = s.count_unfinished_deps(i);
                    if s.jobs[i].unfinished == 0 {
                        s.set_raw(i, JobStatus::Uninitialized);
                    }
                }
                JobStatus::Ready => s.ready.push(i as u32),
                JobStatus::Pending | JobStatus::Running => s.hold(i, ORPHANS),
                _ => {}
            }
            // The answer given to the last completion applied: the job's end when it ended
            // with that attempt, or ready again when it was retried.
            let job = &mut s.jobs[i];
            let ended = matches!(
                job.status,
                JobStatus::Completed | JobStatus::Failed | JobStatus::Terminated
            );
            match saved.last_result {
                Some(a) if a == job.attempt && ended => {
                    (job.done_attempt, job.done_status) = (a, job.status);
                }
                Some(a) if a < job.attempt => {
                    (job.done_attempt, job.done_status) = (a, JobStatus::Ready)
                }
                // Without results to go by, a job that ended did so by a report.
                None if ended => (job.done_attempt, job.done_status) = (job.attempt, job.status),
                _ => {}
            }
        }
        Ok(s)
    }

    fn build(
        id: WorkflowId,
        def: Arc<WorkflowDef>,
        state: WorkflowState,
        run_id: u32,
        jobs: &[SavedJob],
        fresh: bool,
    ) -> WorkflowSched {
        let n = def.jobs.len();
        let mut degree = vec![0u32; n + 1];
        for job in &def.jobs {
            for dep in &job.depends_on {
                degree[dep.index()] += 1;
            }
        }
        let mut dependents_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for d in &degree[..n] {
            dependents_start.push(acc);
            acc += d;
        }
        dependents_start.push(acc);
        let mut fill = dependents_start.clone();
        let mut dependents = vec![0u32; acc as usize];
        for (i, job) in def.jobs.iter().enumerate() {
            for dep in &job.depends_on {
                let slot = &mut fill[dep.index()];
                dependents[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        let mut counts = [0u64; 11];
        let rt = jobs
            .iter()
            .map(|saved| {
                counts[saved.status as usize] += 1;
                JobRt {
                    status: saved.status,
                    attempt: saved.attempt,
                    unfinished: 0,
                    holder: NO_HOLDER,
                    losses: saved.losses,
                    unlisted: false,
                    done_attempt: 0,
                    done_status: JobStatus::Uninitialized,
                }
            })
            .collect();
        let max_concurrent = def.max_concurrent_jobs;
        let triggers = actions::Triggers::new(
            &def.actions,
            |i| jobs[i].status,
            fresh,
            state == WorkflowState::Complete,
        );
        let sched_counts = alloc::SchedulerCounts::new(&def, |i| jobs[i].status);
        WorkflowSched {
            id,
            ready: ReadyQueue::new(&def),
            def,
            jobs: rt,
            dependents_start,
            dependents,
            counts,
            state,
            run_id,
            runners: vec![RunnerRt {
                id: RunnerId(String::new()),
                heard: Timestamp(0),
                held: 0,
            }],
            runner_index: HashMap::new(),
            ready_generation: 0,
            max_concurrent,
            triggers,
            last_now: Timestamp(0),
            sched_counts,
            allocations: Vec::new(),
        }
    }

    pub fn id(&self) -> WorkflowId {
        self.id
    }

    pub fn def(&self) -> &Arc<WorkflowDef> {
        &self.def
    }

    pub fn state(&self) -> WorkflowState {
        self.state
    }

    pub fn run_id(&self) -> u32 {
        self.run_id
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn ready_generation(&self) -> u64 {
        self.ready_generation
    }

    /// A job's status and current attempt.
    pub fn job_status(&self, job: JobId) -> Option<(JobStatus, u32)> {
        self.jobs.get(job.index()).map(|j| (j.status, j.attempt))
    }

    /// A job's state as a store saves it.
    pub fn saved_job(&self, job: JobId) -> Option<SavedJob> {
        self.jobs.get(job.index()).map(|j| SavedJob {
            status: j.status,
            attempt: j.attempt,
            losses: j.losses,
            last_result: (j.done_attempt > 0).then_some(j.done_attempt),
        })
    }

    pub fn count(&self, status: JobStatus) -> u64 {
        self.counts[status as usize]
    }

    /// Jobs handed out and not finished: pending or running.
    pub fn in_flight(&self) -> u64 {
        self.count(JobStatus::Pending) + self.count(JobStatus::Running)
    }

    /// Changes the cap on jobs in flight (`None`: no cap). Jobs already out keep running.
    pub fn set_max_concurrent_jobs(&mut self, cap: Option<u32>) {
        self.max_concurrent = cap;
        self.ready_generation += 1; // a higher cap may let parked claims through
    }

    /// How many more jobs the cap lets out now.
    fn room(&self) -> u64 {
        self.max_concurrent.map_or(u64::MAX, |cap| {
            u64::from(cap).saturating_sub(self.in_flight())
        })
    }

    /// Where this workflow stands for a shared runner's fair pick: `None` when it has nothing
    /// to hand out (not active, no ready job, or at its cap).
    pub fn fair_key(&self) -> Option<FairKey> {
        if self.state != WorkflowState::Active || self.room() == 0 {
            return None;
        }
        Some(FairKey {
            in_flight: self.in_flight(),
            top_priority: self.ready.top_priority()?,
        })
    }

    /// The owner recorded in the workflow's definition.
    pub fn owner(&self) -> Option<&str> {
        self.def.user.as_deref()
    }

    pub fn summary(&self) -> StatusSummary {
        StatusSummary {
            state: self.state,
            run_id: self.run_id,
            counts: JobStatus::ALL
                .into_iter()
                .map(|s| (s, self.counts[s as usize]))
                .filter(|&(_, n)| n > 0)
                .collect(),
            total: self.jobs.len() as u64,
        }
    }

    fn dependents_of(&self, i: usize) -> &[u32] {
        &self.dependents[self.dependents_start[i] as usize..self.dependents_start[i + 1] as usize]
    }

    fn count_unfinished_deps(&self, i: usize) -> u32 {
        self.def.jobs[i]
            .depends_on
            .iter()
            .filter(|d| !self.jobs[d.index()].status.is_finished())
            .count() as u32
    }

    fn unfinished_total(&self) -> u64 {
        JobStatus::ALL
            .into_iter()
            .filter(|s| !s.is_finished())
            .map(|s| self.counts[s as usize])
            .sum()
    }

    /// Sets a status in memory only (counts kept), without recording a change.
    /// Moves job `i` to `status`, keeping the counts and the actions' triggers; returns the
    /// actions the move fired (recorded by [`Self::set`]).
    fn set_raw(&mut self, i: usize, status: JobStatus) -> Vec<u32> {
        let job = &mut self.jobs[i];
        let old = job.status;
        self.counts[old as usize] -= 1;
        self.counts[status as usize] += 1;
        job.status = status;
        self.sched_counts.moved(i, old, status);
        let mut fired = Vec::new();
        self.triggers
            .job_moved(i, old, status, &self.def.actions, &mut fired);
        fired
    }

    fn set(&mut self, i: usize, status: JobStatus, changes: &mut Changes) {
        let in_flight = |s: JobStatus| matches!(s, JobStatus::Pending | JobStatus::Running);
        let was_in_flight = in_flight(self.jobs[i].status);
        let fired = self.set_raw(i, status);
        if !fired.is_empty() {
            self.record_fired(fired, self.last_now, changes);
        }
        if status == JobStatus::Ready {
            self.ready.push(i as u32);
            self.ready_generation += 1;
        }
        if !in_flight(status) {
            self.unhold(i);
            if was_in_flight && self.max_concurrent.is_some() {
                // Room under the cap: a claim parked on it may go now.
                self.ready_generation += 1;
            }
        }
        self.record_state(i, changes);
    }

    /// Records job `i`'s current status and attempt as a change to persist.
    fn record_state(&self, i: usize, changes: &mut Changes) {
        changes.jobs.push(JobChange {
            job: JobId::from_index(i),
            status: self.jobs[i].status,
            attempt_id: self.jobs[i].attempt,
        });
    }
}

#[cfg(test)]
mod tests;
