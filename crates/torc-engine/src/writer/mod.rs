//! The writer thread: takes every request waiting, applies each to the core, commits their
//! changes in one transaction, then answers. Long polls live in `park`, the lease clock in
//! `lease`.

mod lease;
mod park;

use crate::request::{Pending, Request};
use crate::stats::Stats;
use crate::{now, EngineConfig, EngineError};
use lease::lease_tick;
use park::{Parked, ParkedBeat, ParkedShared};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;
use torc_core::api::{ActionClaimRequest, ActionClaimResponse, ReportBatch, ReportResponse};
use torc_core::changes::{Changes, Event, EventKind, WorkflowState};
use torc_core::sched::{
    FairPool, RequirementChange, ResourceScale, SchedError, StatusSummary, WorkflowSched,
};
use torc_core::{JobId, WorkflowDef, WorkflowId};
use torc_store::{Store, StoreError};

/// Most requests taken into one batch (one transaction).
const MAX_BATCH: usize = 4096;

/// The state owned by the writer thread.
pub(crate) struct Writer {
    store: Store,
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
}

impl Writer {
    pub(crate) fn new(store: Store, config: EngineConfig, stats: Arc<Stats>) -> Writer {
        Writer {
            store,
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
        }
    }

    /// Runs until every handle is dropped.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        loop {
            let wake = (self.parked.iter().map(|p| p.deadline))
                .chain(self.parked_shared.iter().map(|p| p.deadline))
                .chain(self.beats.iter().map(|b| b.deadline))
                .chain(self.next_lease_check)
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
            self.expire_leases();
            self.retry_parked();
            self.retry_parked_shared();
            self.answer_beats();
            self.commit();
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
        match req {
            Request::Create { def, spec, reply } => {
                let r = self.create(*def, spec);
                self.answers.push(Pending::Id(reply, r));
            }
            Request::Resume { id, reply } => {
                let r = self.change_workflow(id, |s| Ok(s.resume(now())));
                self.answers.push(Pending::Status(reply, r));
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
                self.answers.push(Pending::Status(reply, r));
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
                let r = self.report(batch);
                self.answers.push(Pending::Report(reply, r));
            }
            Request::Heartbeat {
                req,
                deadline,
                reply,
            } => self.heartbeat(req, deadline, reply),
            Request::Cancel { id, reply } => {
                let r = self.change_workflow(id, |s| Ok(s.cancel(now())));
                self.answers.push(Pending::Status(reply, r));
            }
            Request::Reset {
                id,
                failed_only,
                reply,
            } => {
                let r = self.change_workflow(id, |s| s.reset(failed_only, now()));
                self.answers.push(Pending::Status(reply, r));
            }
            Request::Status { id, reply } => {
                let r = self.workflow(id).map(|s| s.summary());
                self.answers.push(Pending::Status(reply, r));
            }
            Request::ClaimActions { req, reply } => {
                let r = self.claim_actions(req);
                self.answers.push(Pending::Actions(reply, r));
            }
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
    ) -> Result<WorkflowId, EngineError> {
        let t = now();
        // Creation is its own transaction (bulk inserts); initial states follow in the batch.
        let id = self.store.create_workflow(&def, spec.as_deref(), t)?;
        let mut sched = WorkflowSched::new(id, Arc::new(def));
        let mut changes = Changes::default();
        changes.events.push(Event {
            time: t,
            kind: EventKind::WorkflowCreated,
            job: None,
            message: format!("workflow created with {} jobs", sched.def().jobs.len()),
        });
        changes.extend(sched.initialize(t));
        self.workflows.insert(id, sched);
        self.record(id, changes);
        Ok(id)
    }

    fn report(&mut self, batch: ReportBatch) -> Result<ReportResponse, EngineError> {
        let id = batch.workflow_id;
        let sched = self.workflow(id)?;
        let t = now();
        let mut changes = sched.start(&batch.starts);
        let (outcomes, done) = sched.complete(&batch.runner_id, &batch.completions, t);
        changes.extend(done);
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
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, EngineError> {
        let id = req.workflow_id;
        let sched = self.workflow(id)?;
        let (actions, changes) = sched.claim_actions(&req.executor, &req.can, now());
        let response = ActionClaimResponse {
            actions,
            workflow_state: sched.state(),
        };
        self.record(id, changes);
        Ok(response)
    }

    /// Writes the batch in one transaction, then answers its callers.
    fn commit(&mut self) {
        let changes = std::mem::take(&mut self.changes);
        let answers = std::mem::take(&mut self.answers);
        let mut failure = None;
        if !changes.is_empty() {
            let batch: Vec<(WorkflowId, &Changes)> =
                changes.iter().map(|(id, c)| (*id, c)).collect();
            let started = Instant::now();
            let result = self.store.apply(&batch);
            self.stalled(started.elapsed());
            match result {
                Ok(()) => self.stats.committed(answers.len(), started.elapsed()),
                Err(e) => {
                    tracing::error!(error = %e, "commit failed; reloading affected workflows");
                    for id in changes.keys() {
                        self.workflows.remove(id);
                        self.touched.insert(*id);
                    }
                    self.all_loaded = false;
                    failure = Some(e.to_string());
                }
            }
        }
        for a in answers {
            a.send(failure.as_deref());
        }
    }
}
