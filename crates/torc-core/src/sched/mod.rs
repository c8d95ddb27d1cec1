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

mod fair;
mod lease;
mod ready;

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
        Self::build(id, def, WorkflowState::Active, 1, &states)
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
        let mut s = Self::build(id, def, state, run_id, jobs);
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
    fn set_raw(&mut self, i: usize, status: JobStatus) {
        let job = &mut self.jobs[i];
        self.counts[job.status as usize] -= 1;
        self.counts[status as usize] += 1;
        job.status = status;
    }

    fn set(&mut self, i: usize, status: JobStatus, changes: &mut Changes) {
        let in_flight = |s: JobStatus| matches!(s, JobStatus::Pending | JobStatus::Running);
        let was_in_flight = in_flight(self.jobs[i].status);
        self.set_raw(i, status);
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

    /// Evaluates every uninitialized job: ready when all its dependencies finished, canceled
    /// when one of them failed and it asks for that, blocked otherwise. Also marks the workflow
    /// complete when nothing is left to run.
    pub fn initialize(&mut self, now: Timestamp) -> Changes {
        let mut changes = Changes::default();
        let fresh: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].status == JobStatus::Uninitialized)
            .collect();
        // First give every fresh job its exact count, counting fresh jobs as unfinished...
        let mut cancel_now = Vec::new();
        for &i in &fresh {
            let unfinished = self.count_unfinished_deps(i);
            self.jobs[i].unfinished = unfinished;
            self.set_raw(i, JobStatus::Blocked);
            let failed_dep = self.def.jobs[i]
                .depends_on
                .iter()
                .any(|d| self.jobs[d.index()].status.is_blocking_failure());
            if failed_dep && self.def.jobs[i].cancel_on_blocking_job_failure {
                cancel_now.push(i);
            }
        }
        // ...then release what can go. A cascade can only lower counts of still-blocked jobs.
        for &i in &cancel_now {
            if self.jobs[i].status == JobStatus::Blocked {
                self.finish_blocked_as_canceled(i, &mut changes);
            }
        }
        for &i in &fresh {
            match self.jobs[i].status {
                JobStatus::Blocked if self.jobs[i].unfinished == 0 => {
                    self.set(i, JobStatus::Ready, &mut changes)
                }
                JobStatus::Blocked => self.record_state(i, &mut changes),
                _ => {}
            }
        }
        self.check_complete(now, &mut changes);
        changes
    }

    /// Claims up to `limit` ready jobs for `runner`: with `free`, only jobs that fit together in
    /// those resources; without, any. Claimed jobs go from ready to pending, held by `runner`
    /// (which counts as hearing from it at `now`).
    pub fn claim(
        &mut self,
        runner: &RunnerId,
        limit: u32,
        free: Option<&FreeResources>,
        now: Timestamp,
    ) -> (Vec<ClaimedJob>, Changes) {
        self.claim_tagged(runner, limit, free, None, now)
    }

    /// [`Self::claim`], taking only jobs that `tags` allow (all jobs when `None`), and never more
    /// than the workflow's cap on jobs in flight lets out.
    pub fn claim_tagged(
        &mut self,
        runner: &RunnerId,
        limit: u32,
        free: Option<&FreeResources>,
        tags: Option<&RunnerTags>,
        now: Timestamp,
    ) -> (Vec<ClaimedJob>, Changes) {
        let mut changes = Changes::default();
        let holder = self.heard_from(runner, now);
        let limit = u64::from(limit).min(self.room());
        if self.state != WorkflowState::Active || limit == 0 || self.ready.len() == 0 {
            return (Vec::new(), changes);
        }
        let eligible = tags.map(|t| self.ready.eligible(&t.tags, t.run_untagged));
        let mut fit = free.map(|f| Fit {
            cpus: f.num_cpus,
            memory_bytes: f.memory_bytes,
            gpus: f.num_gpus,
            time_left: f.time_left,
        });
        let taken = self
            .ready
            .take(limit as usize, fit.as_mut(), eligible.as_ref());
        if taken.is_empty() {
            return (Vec::new(), changes);
        }
        let mut claimed = Vec::with_capacity(taken.len());
        for i in taken {
            let i = i as usize;
            self.set(i, JobStatus::Pending, &mut changes);
            self.hold(i, holder);
            claimed.push(self.claimed_job(i));
        }
        (claimed, changes)
    }

    /// The slot of `runner`, added if new, marked as heard from at `now`.
    fn heard_from(&mut self, runner: &RunnerId, now: Timestamp) -> u32 {
        let slot = match self.runner_index.get(runner) {
            Some(&slot) => slot,
            None => {
                let slot = self.runners.len() as u32;
                self.runners.push(RunnerRt {
                    id: runner.clone(),
                    heard: now,
                    held: 0,
                });
                self.runner_index.insert(runner.clone(), slot);
                slot
            }
        };
        let rt = &mut self.runners[slot as usize];
        rt.heard = rt.heard.max(now);
        slot
    }

    /// Makes `slot` the holder of job `i` (which must be pending or running).
    fn hold(&mut self, i: usize, slot: u32) {
        self.unhold(i);
        self.jobs[i].holder = slot;
        self.runners[slot as usize].held += 1;
    }

    /// Job `i` is no longer held by anyone.
    fn unhold(&mut self, i: usize) {
        let holder = std::mem::replace(&mut self.jobs[i].holder, NO_HOLDER);
        self.jobs[i].unlisted = false;
        if let Some(rt) = self.runners.get_mut(holder as usize) {
            rt.held -= 1;
        }
    }

    fn claimed_job(&self, i: usize) -> ClaimedJob {
        let job = &self.def.jobs[i];
        ClaimedJob {
            workflow_id: self.id,
            job_id: JobId::from_index(i),
            run_id: self.run_id,
            attempt_id: self.jobs[i].attempt,
            name: job.name.clone(),
            command: job.command.clone(),
            invocation_script: job.invocation_script.clone(),
            resources: self.def.resources_of(job),
            supports_termination: job.supports_termination,
            timeout: job.timeout,
            env: job.env.clone(),
            failure_handler: job
                .failure_handler
                .and_then(|h| self.def.failure_handlers.get(h as usize))
                .cloned(),
        }
    }

    /// Records that claimed jobs started. Starts for another attempt, or for a job that is not
    /// pending, are ignored (a late start after a completion in the same batch is harmless).
    pub fn start(&mut self, starts: &[StartReport]) -> Changes {
        let mut changes = Changes::default();
        for s in starts {
            let i = s.job_id.index();
            match self.jobs.get(i) {
                Some(job) if job.status == JobStatus::Pending && job.attempt == s.attempt_id => {
                    self.set(i, JobStatus::Running, &mut changes);
                }
                _ => {}
            }
        }
        changes
    }

    /// Applies completion reports in order; returns one outcome per report. Unblocks
    /// dependents at once, applies failure handlers and the failure cascade, and marks the
    /// workflow complete when nothing is left.
    pub fn complete(
        &mut self,
        runner: &RunnerId,
        reports: &[CompletionReport],
        now: Timestamp,
    ) -> (Vec<CompletionOutcome>, Changes) {
        let mut changes = Changes::default();
        let slot = self.heard_from(runner, now);
        let outcomes = reports
            .iter()
            .map(|r| self.complete_one(slot, r, now, &mut changes))
            .collect();
        self.check_complete(now, &mut changes);
        (outcomes, changes)
    }

    fn complete_one(
        &mut self,
        reporter: u32,
        r: &CompletionReport,
        now: Timestamp,
        changes: &mut Changes,
    ) -> CompletionOutcome {
        let i = r.job_id.index();
        let Some(job) = self.jobs.get(i).copied() else {
            return self.refuse(r, now, changes, format!("job {} does not exist", r.job_id));
        };
        if r.run_id == self.run_id && r.attempt_id == job.done_attempt && job.done_attempt > 0 {
            return CompletionOutcome::Accepted {
                status: job.done_status,
            };
        }
        if r.run_id != self.run_id || r.attempt_id != job.attempt {
            let reason = format!(
                "job {} run {} attempt {} is stale: the job is at run {} attempt {}",
                r.job_id, r.run_id, r.attempt_id, self.run_id, job.attempt
            );
            return self.refuse(r, now, changes, reason);
        }
        if !matches!(job.status, JobStatus::Pending | JobStatus::Running) {
            let reason = format!("job {} is {}, not running", r.job_id, job.status);
            return self.refuse(r, now, changes, reason);
        }
        let wdef = Arc::clone(&self.def);
        let def = &wdef.jobs[i];
        let attempt_status = if r.terminated {
            JobStatus::Terminated
        } else if r.return_code == 0 {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        let retry_rule = (attempt_status == JobStatus::Failed)
            .then(|| {
                def.failure_handler
                    .and_then(|h| wdef.failure_handlers.get(h as usize))
                    .and_then(|h| h.rule_for(r.return_code))
            })
            .flatten();
        let retry = retry_rule.is_some_and(|rule| r.attempt_id <= rule.max_retries);
        // The result names the runner that ran the job: its holder, unless nobody known held
        // it (restored after a restart), in which case the reporter ran it.
        let ran_it = if job.holder == ORPHANS || job.holder == NO_HOLDER {
            reporter
        } else {
            job.holder
        };
        let runner_name = self.runners[ran_it as usize].id.clone();
        changes.results.push(JobResult {
            job: r.job_id,
            run_id: r.run_id,
            attempt_id: r.attempt_id,
            runner: Some(runner_name),
            return_code: r.return_code,
            status: attempt_status,
            start_time: r.start_time,
            end_time: r.end_time,
            peak_memory_bytes: r.peak_memory_bytes,
            avg_memory_bytes: r.avg_memory_bytes,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
        });
        let new_status = if retry && !r.recovery_failed {
            self.jobs[i].attempt += 1;
            changes.events.push(Event {
                time: now,
                kind: EventKind::JobRetried,
                job: Some(r.job_id),
                message: format!(
                    "{} exited with {}; retrying as attempt {}",
                    def.name,
                    r.return_code,
                    r.attempt_id + 1
                ),
            });
            self.set(i, JobStatus::Ready, changes);
            JobStatus::Ready
        } else {
            if retry {
                changes.events.push(Event {
                    time: now,
                    kind: EventKind::JobRecoveryFailed,
                    job: Some(r.job_id),
                    message: format!("{}: recovery script failed; not retried", def.name),
                });
            }
            self.set(i, attempt_status, changes);
            self.release_dependents(i, changes);
            attempt_status
        };
        self.jobs[i].done_attempt = r.attempt_id;
        self.jobs[i].done_status = new_status;
        CompletionOutcome::Accepted { status: new_status }
    }

    fn refuse(
        &self,
        r: &CompletionReport,
        now: Timestamp,
        changes: &mut Changes,
        reason: String,
    ) -> CompletionOutcome {
        changes.events.push(Event {
            time: now,
            kind: EventKind::ReportRefused,
            job: self.jobs.get(r.job_id.index()).map(|_| r.job_id),
            message: reason.clone(),
        });
        CompletionOutcome::Refused { reason }
    }

    /// Job `i` just finished: lower its dependents' counts, readying or canceling them, and
    /// cascade through cancellations (iteratively: chains can be very long).
    fn release_dependents(&mut self, i: usize, changes: &mut Changes) {
        let mut stack = vec![i];
        while let Some(done) = stack.pop() {
            let failed = self.jobs[done].status.is_blocking_failure();
            let start = self.dependents_start[done] as usize;
            let end = self.dependents_start[done + 1] as usize;
            for k in start..end {
                let d = self.dependents[k] as usize;
                if self.jobs[d].status != JobStatus::Blocked {
                    continue;
                }
                self.jobs[d].unfinished -= 1;
                if failed && self.def.jobs[d].cancel_on_blocking_job_failure {
                    self.set(d, JobStatus::Canceled, changes);
                    stack.push(d);
                } else if self.jobs[d].unfinished == 0 {
                    self.set(d, JobStatus::Ready, changes);
                }
            }
        }
    }

    fn finish_blocked_as_canceled(&mut self, i: usize, changes: &mut Changes) {
        self.set(i, JobStatus::Canceled, changes);
        self.release_dependents(i, changes);
    }

    fn check_complete(&mut self, now: Timestamp, changes: &mut Changes) {
        if self.state == WorkflowState::Active && self.unfinished_total() == 0 {
            self.state = WorkflowState::Complete;
            changes.workflow = Some(WorkflowChange {
                state: self.state,
                run_id: self.run_id,
            });
            changes.events.push(Event {
                time: now,
                kind: EventKind::WorkflowCompleted,
                job: None,
                message: self.completion_message(),
            });
        }
    }

    fn completion_message(&self) -> String {
        let parts: Vec<String> = JobStatus::ALL
            .into_iter()
            .filter(|&s| self.counts[s as usize] > 0)
            .map(|s| format!("{} {}", self.counts[s as usize], s))
            .collect();
        format!("workflow complete: {}", parts.join(", "))
    }

    /// Cancels the workflow: nothing more is claimed; uninitialized, blocked, ready and pending
    /// jobs are canceled; running jobs are left to their runners, which terminate them.
    pub fn cancel(&mut self, now: Timestamp) -> Changes {
        let mut changes = Changes::default();
        if self.state == WorkflowState::Canceled {
            return changes;
        }
        self.ready.clear();
        for i in 0..self.jobs.len() {
            if matches!(
                self.jobs[i].status,
                JobStatus::Uninitialized
                    | JobStatus::Blocked
                    | JobStatus::Ready
                    | JobStatus::Pending
            ) {
                self.set(i, JobStatus::Canceled, &mut changes);
            }
        }
        self.state = WorkflowState::Canceled;
        changes.workflow = Some(WorkflowChange {
            state: self.state,
            run_id: self.run_id,
        });
        changes.events.push(Event {
            time: now,
            kind: EventKind::WorkflowCanceled,
            job: None,
            message: "workflow canceled".into(),
        });
        changes
    }

    /// Resets jobs for a new run (`run_id` + 1): with `failed_only`, the failed, canceled,
    /// terminated and pending-failed jobs and everything downstream of them; else every job.
    /// Completed jobs outside that set keep their state. Refused while jobs are in flight.
    pub fn reset(&mut self, failed_only: bool, now: Timestamp) -> Result<Changes, SchedError> {
        let in_flight = self.count(JobStatus::Pending) + self.count(JobStatus::Running);
        if in_flight > 0 {
            return Err(SchedError::JobsInFlight {
                workflow: self.id,
                running: in_flight,
            });
        }
        let seeds: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| {
                !failed_only
                    || matches!(
                        self.jobs[i].status,
                        JobStatus::Failed
                            | JobStatus::Canceled
                            | JobStatus::Terminated
                            | JobStatus::PendingFailed
                    )
            })
            .collect();
        let affected = self.downstream_closure(&seeds);
        self.run_id += 1;
        let mut changes = Changes::default();
        self.ready.clear();
        for (i, &hit) in affected.iter().enumerate() {
            self.jobs[i].done_attempt = 0;
            if hit {
                self.jobs[i].attempt = 1;
                self.jobs[i].losses = 0;
                self.set_raw(i, JobStatus::Uninitialized);
            } else if self.jobs[i].status == JobStatus::Ready {
                self.ready.push(i as u32);
            }
        }
        self.state = WorkflowState::Active;
        changes.workflow = Some(WorkflowChange {
            state: self.state,
            run_id: self.run_id,
        });
        changes.events.push(Event {
            time: now,
            kind: EventKind::WorkflowReset,
            job: None,
            message: format!(
                "{} reset of {} job(s); run {} begins",
                if failed_only { "failed-only" } else { "full" },
                affected.iter().filter(|&&a| a).count(),
                self.run_id
            ),
        });
        changes.extend(self.initialize(now));
        Ok(changes)
    }

    /// Puts jobs interrupted by a stop (terminated, or left pending or running by a crash) and
    /// everything downstream of them back in play, each interrupted job with a new attempt.
    /// This is how a stopped workflow resumes; completed and failed jobs are kept.
    pub fn resume(&mut self, now: Timestamp) -> Changes {
        let seeds: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| {
                matches!(
                    self.jobs[i].status,
                    JobStatus::Terminated | JobStatus::Pending | JobStatus::Running
                )
            })
            .collect();
        let affected = self.downstream_closure(&seeds);
        for (i, &hit) in affected.iter().enumerate() {
            if !hit {
                continue;
            }
            let status = self.jobs[i].status;
            if matches!(
                status,
                JobStatus::Terminated | JobStatus::Pending | JobStatus::Running
            ) {
                self.jobs[i].attempt += 1;
            }
            if status == JobStatus::Ready {
                continue; // already in the queue
            }
            if status == JobStatus::Completed || status == JobStatus::Failed {
                continue; // ran to an end under its own steam: keep it
            }
            self.unhold(i);
            self.jobs[i].done_attempt = 0;
            self.set_raw(i, JobStatus::Uninitialized);
        }
        let mut changes = Changes::default();
        if self.state == WorkflowState::Complete && self.unfinished_total() > 0 {
            self.state = WorkflowState::Active;
            changes.workflow = Some(WorkflowChange {
                state: self.state,
                run_id: self.run_id,
            });
        }
        changes.extend(self.initialize(now));
        changes
    }

    /// Marks `seeds` and every job downstream of them.
    fn downstream_closure(&self, seeds: &[usize]) -> Vec<bool> {
        let mut marked = vec![false; self.jobs.len()];
        let mut stack: Vec<usize> = Vec::new();
        for &s in seeds {
            if !marked[s] {
                marked[s] = true;
                stack.push(s);
            }
        }
        while let Some(i) = stack.pop() {
            for &d in self.dependents_of(i) {
                if !marked[d as usize] {
                    marked[d as usize] = true;
                    stack.push(d as usize);
                }
            }
        }
        marked
    }
}

#[cfg(test)]
mod tests;
