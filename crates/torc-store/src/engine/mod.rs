//! The engine: every active workflow's live state in memory, one writer thread, group commit.
//!
//! Callers (the embedded CLI, HTTP handlers, the in-process runner) hold an [`EngineHandle`] and
//! send it requests. The writer thread takes every request waiting, applies each to the core
//! ([`torc_core::sched::WorkflowSched`]), writes all their [`Changes`] in ONE transaction, and
//! only after the commit answers each caller. A failed commit drops the affected workflows from
//! memory (they are reloaded from the database on next use) and answers every caller of the
//! batch with an error: nothing is acknowledged that is not durable.
//!
//! Claims that find nothing may park until their deadline (long poll): after every batch that
//! made a job ready in their workflow, parked claims are tried again. Heartbeats park the same
//! way and are answered early when their workflow stops being active, so that a cancel reaches
//! every runner at once.
//!
//! With leases on ([`EngineConfig::leases`], what a server uses), the writer also wakes every
//! [`LEASE_TICK`] or so to take jobs away from runners that went silent. In-process use (the
//! embedded CLI) runs without: its runner cannot be lost without the engine going too.

mod handle;

pub use handle::{EngineHandle, StatsSnapshot};
pub use torc_core::sched::LeasePolicy;

use crate::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use torc_core::api::{
    ClaimRequest, ClaimResponse, ClaimedJob, CoordinatorError, ErrorCode, HeartbeatRequest,
    HeartbeatResponse, ReportBatch, ReportResponse, SharedClaimRequest,
};
use torc_core::changes::{Changes, Event, EventKind, WorkflowState};
use torc_core::sched::{claim_fair, FairPool, SchedError, StatusSummary, WorkflowSched};
use torc_core::{Timestamp, WorkflowDef, WorkflowId};

/// Why an engine request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("workflow {0} not found")]
    WorkflowNotFound(WorkflowId),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
    /// The batch holding this request could not be committed; nothing of it took effect.
    #[error("commit failed, nothing was changed: {detail}")]
    CommitFailed { detail: String },
}

impl EngineError {
    /// The same error as a runner sees it.
    pub fn to_coordinator_error(&self) -> CoordinatorError {
        match self {
            EngineError::WorkflowNotFound(_) => CoordinatorError::Rejected {
                code: ErrorCode::NotFound,
                message: self.to_string(),
            },
            EngineError::Sched(SchedError::JobsInFlight { .. }) => CoordinatorError::Rejected {
                code: ErrorCode::Conflict,
                message: self.to_string(),
            },
            EngineError::Sched(SchedError::Inconsistent { .. }) => CoordinatorError::Rejected {
                code: ErrorCode::Internal,
                message: self.to_string(),
            },
            EngineError::Store(_) | EngineError::Stopped | EngineError::CommitFailed { .. } => {
                CoordinatorError::Unavailable {
                    message: self.to_string(),
                }
            }
        }
    }
}

/// The current wall-clock time as the core's [`Timestamp`].
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp(ms)
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// How an engine runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// Runner leases: a runner not heard from for the lease loses its jobs. `None`: no leases
    /// (in-process use, where the runner lives and dies with the engine).
    pub leases: Option<LeasePolicy>,
}

/// How often, at most, the writer looks for lapsed leases (a twentieth of the lease, at least
/// 10 ms).
pub const LEASE_TICK: Duration = Duration::from_secs(1);

/// A commit this slow, or a wake-up this late, means the writer could not hear runners for that
/// long: their leases are extended by as much.
const STALL: Duration = Duration::from_secs(1);

fn lease_tick(policy: &LeasePolicy) -> Duration {
    (policy.lease / 20).clamp(Duration::from_millis(10), LEASE_TICK)
}

/// A request to the writer thread.
pub(crate) enum Request {
    Create {
        def: Box<WorkflowDef>,
        spec: Option<String>,
        reply: Reply<WorkflowId>,
    },
    Resume {
        id: WorkflowId,
        reply: Reply<StatusSummary>,
    },
    Claim {
        req: ClaimRequest,
        deadline: Instant,
        reply: Reply<ClaimResponse>,
    },
    ClaimShared {
        req: SharedClaimRequest,
        owners: Option<Vec<String>>,
        deadline: Instant,
        reply: Reply<ClaimResponse>,
    },
    SetMaxConcurrentJobs {
        id: WorkflowId,
        cap: Option<u32>,
        reply: Reply<StatusSummary>,
    },
    Report {
        batch: ReportBatch,
        reply: Reply<ReportResponse>,
    },
    Heartbeat {
        req: HeartbeatRequest,
        deadline: Instant,
        reply: Reply<HeartbeatResponse>,
    },
    Cancel {
        id: WorkflowId,
        reply: Reply<StatusSummary>,
    },
    Reset {
        id: WorkflowId,
        failed_only: bool,
        reply: Reply<StatusSummary>,
    },
    Status {
        id: WorkflowId,
        reply: Reply<StatusSummary>,
    },
    Unload {
        id: WorkflowId,
        reply: Reply<()>,
    },
}

/// An answer held back until the batch that produced it is committed.
enum Pending {
    Id(Reply<WorkflowId>, Result<WorkflowId, EngineError>),
    Status(Reply<StatusSummary>, Result<StatusSummary, EngineError>),
    Claim(Reply<ClaimResponse>, Result<ClaimResponse, EngineError>),
    Report(Reply<ReportResponse>, Result<ReportResponse, EngineError>),
    Heartbeat(
        Reply<HeartbeatResponse>,
        Result<HeartbeatResponse, EngineError>,
    ),
    Unit(Reply<()>, Result<(), EngineError>),
}

impl Pending {
    fn send(self, commit_failed: Option<&str>) {
        match self {
            Pending::Id(tx, r) => deliver(tx, r, commit_failed),
            Pending::Status(tx, r) => deliver(tx, r, commit_failed),
            Pending::Claim(tx, r) => deliver(tx, r, commit_failed),
            Pending::Report(tx, r) => deliver(tx, r, commit_failed),
            Pending::Heartbeat(tx, r) => deliver(tx, r, commit_failed),
            Pending::Unit(tx, r) => deliver(tx, r, commit_failed),
        }
    }
}

/// Answers a caller: its result, or the commit's failure when the batch was not committed.
fn deliver<T>(tx: Reply<T>, result: Result<T, EngineError>, commit_failed: Option<&str>) {
    let answer = match commit_failed {
        None => result,
        Some(detail) => Err(EngineError::CommitFailed {
            detail: detail.to_string(),
        }),
    };
    // A send error means the caller went away; nothing to do about it.
    drop(tx.send(answer));
}

struct Parked {
    req: ClaimRequest,
    deadline: Instant,
    reply: Reply<ClaimResponse>,
    /// The workflow's ready generation when last tried.
    seen: u64,
}

/// Runs a runner's claim against its workflow.
fn claim_for(sched: &mut WorkflowSched, req: &ClaimRequest) -> (Vec<ClaimedJob>, Changes) {
    sched.claim_tagged(
        &req.runner_id,
        req.limit,
        req.resources.as_ref(),
        req.tags.as_ref(),
        now(),
    )
}

/// A shared runner's claim that found nothing, waiting for any workflow to gain work.
struct ParkedShared {
    req: SharedClaimRequest,
    owners: Option<Vec<String>>,
    deadline: Instant,
    reply: Reply<ClaimResponse>,
}

/// A heartbeat held until its workflow stops being active or its deadline.
struct ParkedBeat {
    workflow_id: WorkflowId,
    deadline: Instant,
    reply: Reply<HeartbeatResponse>,
}

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
    stats: Arc<handle::Stats>,
}

impl Writer {
    pub(crate) fn new(store: Store, config: EngineConfig, stats: Arc<handle::Stats>) -> Writer {
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

    fn record(&mut self, id: WorkflowId, changes: Changes) {
        if !changes.is_empty() {
            self.touched.insert(id);
            self.changes.entry(id).or_default().extend(changes);
        }
    }

    /// Brings the fair pool up to date with the workflows changed since last time.
    fn refresh_pool(&mut self) {
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
    fn load_all_active(&mut self) -> Result<(), EngineError> {
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
    fn workflow(&mut self, id: WorkflowId) -> Result<&mut WorkflowSched, EngineError> {
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
            let changes = sched.initialize(now());
            self.workflows.insert(id, sched);
            self.touched.insert(id);
            self.record(id, changes);
        }
        Ok(self.workflows.get_mut(&id).expect("inserted above"))
    }

    /// Applies `op` to a workflow, records its changes, and returns the state after it.
    fn change_workflow(
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

    /// Answers a claim (once the batch commits) with what it got, recording what it changed in
    /// each workflow it took jobs from.
    fn answer_claim(
        &mut self,
        reply: Reply<ClaimResponse>,
        jobs: Vec<ClaimedJob>,
        changes: impl IntoIterator<Item = (WorkflowId, Changes)>,
        workflow_state: WorkflowState,
    ) {
        self.stats.claimed(jobs.len());
        for (id, c) in changes {
            self.record(id, c);
        }
        let response = ClaimResponse {
            jobs,
            workflow_state,
        };
        self.answers.push(Pending::Claim(reply, Ok(response)));
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

    fn claim(&mut self, req: ClaimRequest, deadline: Instant, reply: Reply<ClaimResponse>) {
        let id = req.workflow_id;
        let sched = match self.workflow(id) {
            Ok(s) => s,
            Err(e) => return self.answers.push(Pending::Claim(reply, Err(e))),
        };
        let (jobs, changes) = claim_for(sched, &req);
        let state = sched.state();
        let seen = sched.ready_generation();
        if jobs.is_empty() && !state.is_done() && deadline > Instant::now() {
            self.parked.push(Parked {
                req,
                deadline,
                reply,
                seen,
            });
            return;
        }
        self.answer_claim(reply, jobs, [(id, changes)], state);
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

    fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        deadline: Instant,
        reply: Reply<HeartbeatResponse>,
    ) {
        let id = req.workflow_id;
        let policy = self.config.leases;
        let sched = match self.workflow(id) {
            Ok(s) => s,
            Err(e) => return self.answers.push(Pending::Heartbeat(reply, Err(e))),
        };
        let (revoked, changes) = sched.heartbeat(
            &req.runner_id,
            &req.held,
            now(),
            &policy.unwrap_or_default(),
        );
        let workflow_state = sched.state();
        self.record(id, changes);
        // Parked past a third of the lease, a live runner could lose its jobs.
        let deadline = match policy {
            Some(p) => deadline.min(Instant::now() + p.lease / 3),
            None => deadline,
        };
        if revoked.is_empty() && !workflow_state.is_done() && deadline > Instant::now() {
            self.beats.push(ParkedBeat {
                workflow_id: id,
                deadline,
                reply,
            });
            return;
        }
        let response = self.beat_response(workflow_state, revoked);
        self.answers.push(Pending::Heartbeat(reply, Ok(response)));
    }

    fn beat_response(
        &self,
        workflow_state: WorkflowState,
        revoked: Vec<torc_core::api::HeldJob>,
    ) -> HeartbeatResponse {
        HeartbeatResponse {
            workflow_state,
            revoked,
            lease_ms: (self.config.leases)
                .map(|p| u64::try_from(p.lease.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Answers parked heartbeats whose workflow stopped being active (or was unloaded), or whose
    /// deadline came.
    fn answer_beats(&mut self) {
        if self.beats.is_empty() {
            return;
        }
        let t = Instant::now();
        for b in std::mem::take(&mut self.beats) {
            let state = self.workflows.get(&b.workflow_id).map(|s| s.state());
            match state {
                Some(state) if state.is_done() || b.deadline <= t => {
                    let response = self.beat_response(state, Vec::new());
                    self.answers.push(Pending::Heartbeat(b.reply, Ok(response)));
                }
                Some(_) => self.beats.push(b),
                // Dropped from memory (unloaded, or a failed commit): answer with what the
                // database says.
                None => {
                    let r = self
                        .workflow(b.workflow_id)
                        .map(|s| s.state())
                        .map(|state| self.beat_response(state, Vec::new()));
                    self.answers.push(Pending::Heartbeat(b.reply, r));
                }
            }
        }
    }

    /// The writer could not hear anyone for `deaf` (a slow commit, a late wake-up): when that is
    /// a stall, runners get as much more time on their leases.
    fn stalled(&mut self, deaf: Duration) {
        if deaf < STALL || self.config.leases.is_none() {
            return;
        }
        tracing::warn!(
            ?deaf,
            "the writer stalled; extending every runner's lease by as much"
        );
        for sched in self.workflows.values_mut() {
            sched.extend_leases(deaf);
        }
    }

    /// Takes jobs away from runners whose lease ran out, when it is time to look.
    fn expire_leases(&mut self) {
        let (Some(policy), Some(due)) = (self.config.leases, self.next_lease_check) else {
            return;
        };
        let t = Instant::now();
        if t < due {
            return;
        }
        self.next_lease_check = Some(t + lease_tick(&policy));
        let stamp = now();
        let mut lost = Vec::new();
        for (id, sched) in &mut self.workflows {
            let changes = sched.expire_leases(stamp, &policy);
            if !changes.is_empty() {
                lost.push((*id, changes));
            }
        }
        for (id, changes) in lost {
            tracing::warn!(workflow = %id, events = changes.events.len(), "runner leases ran out");
            self.record(id, changes);
        }
    }

    /// A shared runner's claim: jobs picked fairly across the workflows `owners` allows (all
    /// when `None`). Answered (once the batch commits) when it got jobs, on error, or at its
    /// deadline; otherwise handed back to be parked.
    fn claim_shared(&mut self, p: ParkedShared) -> Option<ParkedShared> {
        if let Err(e) = self.load_all_active() {
            self.answers.push(Pending::Claim(p.reply, Err(e)));
            return None;
        }
        self.refresh_pool();
        let owners = p.owners.as_deref();
        let allowed = |s: &WorkflowSched| match owners {
            None => true,
            Some(owners) => s.owner().is_some_and(|o| owners.iter().any(|x| x == o)),
        };
        let (jobs, changes) =
            claim_fair(&mut self.pool, &mut self.workflows, &p.req, allowed, now());
        if jobs.is_empty() && p.deadline > Instant::now() {
            return Some(p);
        }
        self.answer_claim(p.reply, jobs, changes, WorkflowState::Active);
        None
    }

    /// Tries parked shared claims again after a batch that gave any workflow new work (a job
    /// ready, room under a cap); answers those whose deadline came. Without new work nothing
    /// they were refused could have become theirs, so they are not tried: an idle pool of
    /// shared runners costs nothing per batch.
    fn retry_parked_shared(&mut self) {
        if self.parked_shared.is_empty() {
            return;
        }
        let t = Instant::now();
        self.refresh_pool();
        let changed = std::mem::take(&mut self.new_work);
        for p in std::mem::take(&mut self.parked_shared) {
            if !changed && p.deadline > t {
                self.parked_shared.push(p);
                continue;
            }
            if let Some(p) = self.claim_shared(p) {
                self.parked_shared.push(p);
            }
        }
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

    /// Tries parked claims whose workflow gained ready jobs (or ended); expires the rest.
    fn retry_parked(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let t = Instant::now();
        let parked = std::mem::take(&mut self.parked);
        for mut p in parked {
            let id = p.req.workflow_id;
            // Reloaded from the database if a failed commit dropped it from memory.
            let sched = match self.workflow(id) {
                Ok(s) => s,
                Err(e) => {
                    self.answers.push(Pending::Claim(p.reply, Err(e)));
                    continue;
                }
            };
            let changed = sched.ready_generation() != p.seen || sched.state().is_done();
            let (jobs, changes) = if changed {
                claim_for(sched, &p.req)
            } else {
                (Vec::new(), Changes::default())
            };
            p.seen = sched.ready_generation();
            let state = sched.state();
            if jobs.is_empty() && !state.is_done() && p.deadline > t {
                self.parked.push(p);
                continue;
            }
            self.answer_claim(p.reply, jobs, [(id, changes)], state);
        }
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

#[cfg(test)]
mod tests;
