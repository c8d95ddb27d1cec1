//! The writer thread: takes every request waiting, applies each to the core, commits their
//! changes in one transaction, then answers. Long polls live in `park`, the lease clock in
//! `lease`.

#[cfg(debug_assertions)]
mod fault;
mod lease;
mod park;
mod purge;
mod replay;

use crate::request::{Pending, Redo, Request};
use crate::stats::Stats;
use crate::{now, EngineConfig, EngineError};
use lease::lease_tick;
use park::{Parked, ParkedBeat, ParkedShared};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;
use torc_core::api::{ActionClaimRequest, ActionClaimResponse, ReportBatch, ReportResponse};
use torc_core::changes::{Changes, Event, EventKind, RunnerSamples, WorkflowState};
use torc_core::sched::{
    FairPool, RequirementChange, ResourceScale, SchedError, StatusSummary, WorkflowSched,
};
use torc_core::{JobId, JobStatus, WorkflowDef, WorkflowId};
use torc_store::{EngineLock, IdempotencyKey, Store, StoreError};

/// Most requests taken into one batch (one transaction).
const MAX_BATCH: usize = 4096;

/// The state owned by the writer thread.
pub(crate) struct Writer {
    store: Store,
    /// The database's engine lock, released when the writer ends.
    _lock: EngineLock,
    workflows: HashMap<WorkflowId, WorkflowSched>,
    parked: Vec<Parked>,
    parked_shared: Vec<ParkedShared>,
    beats: Vec<ParkedBeat>,
    config: EngineConfig,
    /// Every workflow with something to hand out, in the order shared runners are served.
    pool: FairPool,
    /// Workflows changed since the pool was last brought up to date.
    touched: HashSet<WorkflowId>,
    /// Each workflow's ready generation when the pool last looked, and whether any moved since
    /// parked shared claims were last tried: only new work can give them something.
    ready_seen: HashMap<WorkflowId, u64>,
    new_work: bool,
    /// Every active workflow of the database is in memory (done once, for shared runners).
    all_loaded: bool,
    /// When leases are next checked.
    next_lease_check: Option<Instant>,
    /// Changes of the batch being built, per workflow.
    changes: HashMap<WorkflowId, Changes>,
    answers: Vec<Pending>,
    stats: Arc<Stats>,
    /// Bumped after each commit that wrote something.
    committed: tokio::sync::watch::Sender<u64>,
    /// Workflows being deleted, a chunk of rows between batches.
    purging: VecDeque<purge::Purge>,
    /// Debug builds: a fault to inject, for tests of what happens when the writer dies.
    #[cfg(debug_assertions)]
    fault: fault::Fault,
}

impl Writer {
    pub(crate) fn new(
        store: Store,
        lock: EngineLock,
        config: EngineConfig,
        stats: Arc<Stats>,
        committed: tokio::sync::watch::Sender<u64>,
    ) -> Writer {
        Writer {
            store,
            _lock: lock,
            workflows: HashMap::new(),
            parked: Vec::new(),
            parked_shared: Vec::new(),
            beats: Vec::new(),
            config,
            pool: FairPool::new(),
            touched: HashSet::new(),
            ready_seen: HashMap::new(),
            new_work: false,
            all_loaded: false,
            next_lease_check: config
                .leases
                .map(|policy| Instant::now() + lease_tick(&policy)),
            changes: HashMap::new(),
            answers: Vec::new(),
            stats,
            committed,
            purging: VecDeque::new(),
            #[cfg(debug_assertions)]
            fault: fault::Fault::from_env(),
        }
    }

    /// Runs until every handle is dropped.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        self.resume_purges();
        loop {
            // With a deletion under way the writer never sleeps: it deletes a chunk whenever
            // no request is waiting.
            let now = (!self.purging.is_empty()).then(Instant::now);
            let wake = (self.parked.iter().map(|p| p.deadline))
                .chain(self.parked_shared.iter().map(|p| p.deadline))
                .chain(self.beats.iter().map(|b| b.deadline))
                .chain(self.next_lease_check)
                .chain(now)
                .min();
            let first = match wake {
                Some(deadline) => {
                    let got = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                    // Woken long after the deadline: the process was paused or starved.
                    self.stalled(Instant::now().saturating_duration_since(deadline));
                    match got {
                        Ok(req) => Some(req),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match rx.recv() {
                    Ok(req) => Some(req),
                    Err(_) => break,
                },
            };
            let mut n = 0;
            let busy = Instant::now();
            if let Some(req) = first {
                self.handle(req);
                n += 1;
                while n < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(req) => {
                            self.handle(req);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            // Time spent on the batch (a big creation or load, a stalled disk) is time nobody
            // was heard: the heartbeats that queued meanwhile come in the next batch, so
            // leases grow by as much before any of them is checked.
            self.stalled(busy.elapsed());
            self.expire_leases();
            self.retry_parked();
            self.retry_parked_shared();
            self.answer_beats();
            self.commit();
            self.stats
                .set_waiting(self.parked.len() + self.parked_shared.len() + self.beats.len());
            self.purge_step();
        }
        // Handles are gone: answer parked calls so no task waits forever.
        for p in self.parked.drain(..) {
            drop(p.reply.send(Err(EngineError::Stopped)));
        }
        for b in self.beats.drain(..) {
            drop(b.reply.send(Err(EngineError::Stopped)));
        }
        for p in self.parked_shared.drain(..) {
            drop(p.reply.send(Err(EngineError::Stopped)));
        }
    }

    pub(super) fn record(&mut self, id: WorkflowId, changes: Changes) {
        if !changes.is_empty() {
            self.touched.insert(id);
            self.changes.entry(id).or_default().extend(changes);
        }
    }

    /// Brings the fair pool up to date with the workflows changed since last time.
    pub(super) fn refresh_pool(&mut self) {
        for id in self.touched.drain() {
            let sched = self.workflows.get(&id);
            self.pool
                .update(id, sched.and_then(WorkflowSched::fair_key));
            match sched {
                Some(s) => {
                    let generation = s.ready_generation();
                    if self.ready_seen.insert(id, generation) != Some(generation) {
                        self.new_work = true;
                    }
                }
                None => {
                    self.ready_seen.remove(&id);
                }
            }
        }
    }

    /// Loads every active workflow not in memory yet, so that shared runners see them all.
    pub(super) fn load_all_active(&mut self) -> Result<(), EngineError> {
        if self.all_loaded {
            return Ok(());
        }
        for w in self.store.list_workflows()? {
            if w.state == WorkflowState::Active {
                // One workflow that cannot be loaded must not keep the pool from the others.
                if let Err(e) = self.workflow(w.id) {
                    tracing::error!(workflow = %w.id, error = %e, "cannot load for shared runners");
                }
            }
        }
        self.all_loaded = true;
        Ok(())
    }

    /// The workflow's live state, loaded from the database when not in memory.
    pub(super) fn workflow(&mut self, id: WorkflowId) -> Result<&mut WorkflowSched, EngineError> {
        if !self.workflows.contains_key(&id) {
            let loaded = match self.store.load_workflow(id) {
                Ok(l) => l,
                Err(StoreError::NotFound { .. }) => return Err(EngineError::WorkflowNotFound(id)),
                Err(e) => return Err(e.into()),
            };
            let mut sched = WorkflowSched::restore(
                id,
                Arc::new(loaded.def),
                loaded.state,
                loaded.run_id,
                &loaded.jobs,
                now(),
            )?;
            let (records, next) = self.store.load_actions(id)?;
            sched.restore_actions(records, next);
            sched.restore_allocations(self.store.load_allocations(id)?);
            let changes = sched.initialize(now());
            self.workflows.insert(id, sched);
            self.touched.insert(id);
            self.record(id, changes);
        }
        Ok(self.workflows.get_mut(&id).expect("inserted above"))
    }

    /// Applies `op` to a workflow, records its changes, and returns the state after it.
    pub(super) fn change_workflow(
        &mut self,
        id: WorkflowId,
        op: impl FnOnce(&mut WorkflowSched) -> Result<Changes, SchedError>,
    ) -> Result<StatusSummary, EngineError> {
        let sched = self.workflow(id)?;
        let changes = op(sched)?;
        let summary = sched.summary();
        self.record(id, changes);
        Ok(summary)
    }

    fn handle(&mut self, req: Request) {
        #[cfg(debug_assertions)]
        self.fault.count_request();
        match req {
            Request::Create {
                def,
                spec,
                key,
                reply,
            } => {
                let r = self.create(*def, spec, key);
                self.answers.push(Pending::Id(reply, r));
            }
            Request::Resume { id, reply } => {
                let r = self.change_workflow(id, |s| Ok(s.resume(now())));
                self.answers
                    .push(Pending::Status(reply, r, Redo::Resume(id)));
            }
            Request::Claim {
                req,
                deadline,
                reply,
            } => self.claim(req, deadline, reply),
            Request::ClaimShared {
                req,
                owners,
                deadline,
                reply,
            } => {
                let p = ParkedShared {
                    req,
                    owners,
                    deadline,
                    reply,
                };
                if let Some(p) = self.claim_shared(p) {
                    self.parked_shared.push(p);
                }
            }
            Request::SetMaxConcurrentJobs { id, cap, reply } => {
                let r = self.set_max_concurrent_jobs(id, cap);
                self.answers.push(Pending::Status(reply, r, Redo::Keep));
            }
            Request::ScaleJobResources {
                id,
                job,
                scale,
                reply,
            } => {
                let r = self.scale_job_resources(id, job, scale);
                self.answers.push(Pending::Requirement(reply, r));
            }
            Request::Report { batch, reply } => {
                let r = self.report(&batch);
                self.answers
                    .push(Pending::Report(reply, r, Redo::Report(batch)));
            }
            Request::Heartbeat {
                req,
                deadline,
                reply,
            } => self.heartbeat(req, deadline, reply),
            Request::Cancel { id, reply } => {
                let r = self.change_workflow(id, |s| Ok(s.cancel(now())));
                self.answers
                    .push(Pending::Status(reply, r, Redo::Cancel(id)));
            }
            Request::Reset {
                id,
                failed_only,
                reply,
            } => {
                let r = self.change_workflow(id, |s| s.reset(failed_only, now()));
                let redo = Redo::Reset(id, failed_only);
                self.answers.push(Pending::Status(reply, r, redo));
            }
            Request::Status { id, reply } => {
                let r = self.workflow(id).map(|s| s.summary());
                self.answers
                    .push(Pending::Status(reply, r, Redo::Status(id)));
            }
            Request::ClaimActions { req, reply } => {
                let r = self.claim_actions(&req);
                self.answers
                    .push(Pending::Actions(reply, r, Redo::Actions(req)));
            }
            Request::Allocations { id, reply } => {
                let r = self.workflow(id).map(|s| s.allocations().to_vec());
                self.answers.push(Pending::Allocations(reply, r));
            }
            #[cfg(test)]
            Request::Stall { started, release } => {
                let _ = started.send(());
                let _ = release.recv();
            }
            Request::Delete { id, reply } => self.delete(id, reply),
            Request::Unload { id, reply } => {
                self.workflows.remove(&id);
                self.touched.insert(id);
                self.answers.push(Pending::Unit(reply, Ok(())));
            }
        }
    }

    fn create(
        &mut self,
        def: WorkflowDef,
        spec: Option<String>,
        key: Option<IdempotencyKey>,
    ) -> Result<WorkflowId, EngineError> {
        if let Some(key) = &key {
            // Only the writer creates workflows, so nothing can slip in between this look-up
            // and the creation that records the key.
            match self.store.find_idempotency_key(&key.user, &key.key)? {
                Some((sha, id)) if sha == key.request_sha256 => return Ok(id),
                Some(_) => {
                    return Err(EngineError::KeyReused {
                        key: key.key.clone(),
                    })
                }
                None => {}
            }
        }
        let t = now();
        let def = Arc::new(def);
        // Creation is its own transaction (bulk inserts). The fresh workflow is evaluated
        // inside it, once its id is known, so that each job's row goes in with its first
        // status; what else the evaluation changed (events, actions) follows in the batch.
        let mut made = None;
        let id =
            self.store
                .create_workflow_keyed(&def, spec.as_deref(), t, key.as_ref(), |id| {
                    let mut sched = WorkflowSched::new(id, def.clone());
                    let mut changes = Changes::default();
                    changes.events.push(Event {
                        time: t,
                        kind: EventKind::WorkflowCreated,
                        job: None,
                        message: format!("workflow created with {} jobs", def.jobs.len()),
                    });
                    changes.extend(sched.initialize(t));
                    let initial = take_first_states(&mut changes, def.jobs.len());
                    made = Some((sched, changes));
                    initial
                })?;
        let (sched, changes) = made.expect("the store evaluates the workflow it creates");
        self.workflows.insert(id, sched);
        self.record(id, changes);
        Ok(id)
    }

    fn report(&mut self, batch: &ReportBatch) -> Result<ReportResponse, EngineError> {
        let id = batch.workflow_id;
        let sched = self.workflow(id)?;
        let t = now();
        let mut changes = sched.start(&batch.starts);
        let (outcomes, done) = sched.complete(&batch.runner_id, &batch.completions, t);
        changes.extend(done);
        // Samples are kept when their report changed something: a report sent again (its
        // answer lost) changes nothing, and its samples are already stored.
        if !batch.samples.is_empty() && !changes.is_empty() {
            changes.samples.push(RunnerSamples {
                runner: batch.runner_id.clone(),
                samples: batch.samples.clone(),
            });
        }
        let state = sched.state();
        self.stats.completed(batch.completions.len());
        self.record(id, changes);
        Ok(ReportResponse {
            outcomes,
            workflow_state: state,
        })
    }

    fn set_max_concurrent_jobs(
        &mut self,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<StatusSummary, EngineError> {
        self.workflow(id)?;
        self.store.set_max_concurrent_jobs(id, cap)?;
        let sched = self.workflows.get_mut(&id).expect("loaded above");
        sched.set_max_concurrent_jobs(cap);
        let summary = sched.summary();
        self.touched.insert(id);
        Ok(summary)
    }

    /// Changes the job in memory, then writes the change in a transaction of its own; if that
    /// fails, the workflow is reloaded from the database, where nothing changed.
    fn scale_job_resources(
        &mut self,
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
    ) -> Result<RequirementChange, EngineError> {
        let change = self.workflow(id)?.scale_job_resources(job, scale)?;
        self.touched.insert(id);
        if let Err(e) = self.store.apply_requirement_change(id, &change) {
            self.workflows.remove(&id);
            self.all_loaded = false;
            return Err(e.into());
        }
        Ok(change)
    }

    fn claim_actions(
        &mut self,
        req: &ActionClaimRequest,
    ) -> Result<ActionClaimResponse, EngineError> {
        let id = req.workflow_id;
        let sched = self.workflow(id)?;
        let (response, changes) = sched.exchange_actions(req, now());
        self.record(id, changes);
        Ok(response)
    }
}

/// Takes out of a fresh workflow's `changes` the job states that its rows can be inserted with
/// (every change at the first attempt), as statuses by job index; other job changes stay.
fn take_first_states(changes: &mut Changes, jobs: usize) -> Vec<JobStatus> {
    let mut initial = vec![JobStatus::Uninitialized; jobs];
    changes.jobs.retain(|c| {
        let first = c.attempt_id == 1 && c.job.index() < jobs;
        if first {
            initial[c.job.index()] = c.status;
        }
        !first
    });
    initial
}

#[cfg(test)]
mod tests {
    use super::*;
    use torc_core::changes::JobChange;

    #[test]
    fn first_states_are_taken_by_index_and_later_attempts_stay() {
        let change = |job: u32, status, attempt_id| JobChange {
            job: JobId(job),
            status,
            attempt_id,
        };
        let mut changes = Changes {
            jobs: vec![
                change(1, JobStatus::Blocked, 1),
                change(3, JobStatus::Blocked, 1),
                change(1, JobStatus::Ready, 1),
                change(2, JobStatus::Ready, 2),
            ],
            ..Changes::default()
        };
        let initial = take_first_states(&mut changes, 4);
        assert_eq!(
            initial,
            [
                JobStatus::Ready,
                JobStatus::Uninitialized,
                JobStatus::Blocked,
                JobStatus::Uninitialized
            ]
        );
        assert_eq!(changes.jobs, [change(2, JobStatus::Ready, 2)]);
    }
}
