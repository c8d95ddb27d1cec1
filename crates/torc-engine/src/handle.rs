//! The callers' side of the engine: a cheap, cloneable handle that sends requests to the writer
//! thread and awaits their answers. It implements the runner's [`Coordinator`] trait.

use crate::request::Request;
use crate::stats::{Stats, StatsSnapshot};
use crate::writer::Writer;
use crate::{EngineConfig, EngineError};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, Coordinator,
    CoordinatorError, HeartbeatRequest, HeartbeatResponse, ReportBatch, ReportResponse,
    SharedClaimRequest,
};
use torc_core::sched::{RequirementChange, ResourceScale, StatusSummary};
use torc_core::{JobId, WorkflowDef, WorkflowId};
use torc_store::{IdempotencyKey, Store};

/// A handle to a running engine. Cloning is cheap; the writer thread stops when the last
/// handle is dropped (after answering what it holds).
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Request>,
    stats: Arc<Stats>,
    /// Counts the commits that wrote something (see [`EngineHandle::commits`]).
    commits: tokio::sync::watch::Receiver<u64>,
    /// Why the writer thread died (it panicked), once it has.
    died: watch::Receiver<Option<String>>,
    /// Held for its `Drop`: the last handle joins the writer thread.
    _thread: Arc<ThreadGuard>,
}

struct ThreadGuard(Option<JoinHandle<()>>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        // The last handle is gone; the sender drops with it, so the thread ends after its
        // current batch. Joining here makes "dropped" mean "everything committed".
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl EngineHandle {
    /// Starts the writer thread over `store`, without leases (in-process use).
    pub fn start(store: Store) -> Result<EngineHandle, EngineError> {
        Self::start_with(store, EngineConfig::default())
    }

    /// Starts the writer thread over `store` with `config`, after taking the database's engine
    /// lock (held until the writer ends): another engine over the same database is refused
    /// with [`torc_store::StoreError::Locked`], which names it.
    pub fn start_with(store: Store, config: EngineConfig) -> Result<EngineHandle, EngineError> {
        let lock = store.lock_engine()?;
        let (tx, rx) = channel();
        let stats = Arc::new(Stats::default());
        let (committed, commits) = tokio::sync::watch::channel(0);
        let writer = Writer::new(store, lock, config, Arc::clone(&stats), committed);
        let (died_tx, died) = watch::channel(None);
        let thread = std::thread::Builder::new()
            .name("torc-writer".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(AssertUnwindSafe(|| writer.run(rx)));
                if let Err(panic) = run {
                    let reason = panic_message(panic.as_ref());
                    tracing::error!(%reason, "the engine's writer thread panicked");
                    // Unwinding dropped every parked caller's reply: they are told the engine
                    // stopped. Whoever watches `died` stops the process.
                    died_tx.send_replace(Some(reason));
                }
            })
            .map_err(EngineError::Spawn)?;
        Ok(EngineHandle {
            tx,
            stats,
            commits,
            died,
            _thread: Arc::new(ThreadGuard(Some(thread))),
        })
    }

    /// Resolves when the writer thread has died (it panicked), with why: the engine then
    /// answers nothing but [`EngineError::Stopped`], so its owner should end (a server exits,
    /// for its supervisor to restart it). Never resolves while the writer runs.
    pub async fn died(&self) -> String {
        let mut died = self.died.clone();
        let reason = died
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The writer ended without panicking: only after the last handle, so not while
            // `self` lives.
            Err(_) => std::future::pending().await,
        }
    }

    /// Tests only: hands the writer a request as it is.
    #[cfg(test)]
    pub(crate) fn send(&self, req: Request) {
        self.tx.send(req).expect("the writer runs");
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// A receiver that changes after every commit that wrote something (states, results,
    /// events): a reader of the database waits on it instead of polling. Take it before the
    /// read whose staleness it guards against.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut rx = self.commits.clone();
        rx.mark_unchanged();
        rx
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Request,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Creates a workflow (bulk insert) and evaluates its jobs.
    pub async fn create_workflow(
        &self,
        def: WorkflowDef,
        spec: Option<String>,
    ) -> Result<WorkflowId, EngineError> {
        self.call(|reply| Request::Create {
            def: Box::new(def),
            spec,
            key: None,
            reply,
        })
        .await
    }

    /// Creates a workflow once per `key`: a creation sent again with the key its user used
    /// before gets the workflow the first one made ([`EngineError::KeyReused`] when the request
    /// differs). The key is stored with the workflow, in the same transaction.
    pub async fn create_workflow_once(
        &self,
        def: WorkflowDef,
        spec: Option<String>,
        key: IdempotencyKey,
    ) -> Result<WorkflowId, EngineError> {
        self.call(|reply| Request::Create {
            def: Box::new(def),
            spec,
            key: Some(key),
            reply,
        })
        .await
    }

    /// Loads a stored workflow and puts its interrupted jobs back in play.
    pub async fn resume(&self, id: WorkflowId) -> Result<StatusSummary, EngineError> {
        self.call(|reply| Request::Resume { id, reply }).await
    }

    pub async fn cancel(&self, id: WorkflowId) -> Result<StatusSummary, EngineError> {
        self.call(|reply| Request::Cancel { id, reply }).await
    }

    pub async fn reset(
        &self,
        id: WorkflowId,
        failed_only: bool,
    ) -> Result<StatusSummary, EngineError> {
        self.call(|reply| Request::Reset {
            id,
            failed_only,
            reply,
        })
        .await
    }

    /// Changes a workflow's cap on jobs in flight (`None`: no cap), in memory and on disk.
    pub async fn set_max_concurrent_jobs(
        &self,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<StatusSummary, EngineError> {
        self.call(|reply| Request::SetMaxConcurrentJobs { id, cap, reply })
            .await
    }

    /// Scales one job's memory and runtime (and timeout), in memory and on disk; a
    /// requirement it shares with other jobs is copied for it, not changed for them.
    pub async fn scale_job_resources(
        &self,
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
    ) -> Result<RequirementChange, EngineError> {
        self.call(|reply| Request::ScaleJobResources {
            id,
            job,
            scale,
            reply,
        })
        .await
    }

    /// A shared runner's claim, limited to the workflows of `owners` (any when `None`).
    pub async fn claim_shared_for(
        &self,
        req: SharedClaimRequest,
        owners: Option<Vec<String>>,
    ) -> Result<ClaimResponse, EngineError> {
        let deadline =
            torc_core::units::instant_after(Instant::now(), Duration::from_millis(req.wait_ms));
        self.call(|reply| Request::ClaimShared {
            req,
            owners,
            deadline,
            reply,
        })
        .await
    }

    pub async fn status(&self, id: WorkflowId) -> Result<StatusSummary, EngineError> {
        self.call(|reply| Request::Status { id, reply }).await
    }

    /// Hands an executor the triggered actions it can carry out (see
    /// `torc_core::sched::WorkflowSched::exchange_actions`), records what it reports about
    /// allocations, and passes on the orders of an elastic one; answered after the commit.
    pub async fn claim_actions(
        &self,
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, EngineError> {
        self.call(|reply| Request::ClaimActions { req, reply })
            .await
    }

    /// Every allocation recorded for workflow `id`, oldest first.
    pub async fn allocations(
        &self,
        id: WorkflowId,
    ) -> Result<Vec<torc_core::alloc::Allocation>, EngineError> {
        self.call(|reply| Request::Allocations { id, reply }).await
    }

    /// Deletes a workflow and everything stored of it. It is gone from every read at once;
    /// its rows are deleted a chunk at a time between group commits (other workflows' requests
    /// wait at most for one chunk), and this answers when the last one is gone.
    pub async fn delete(&self, id: WorkflowId) -> Result<(), EngineError> {
        self.call(|reply| Request::Delete { id, reply }).await
    }

    /// Drops a workflow's live state (it stays in the database).
    pub async fn unload(&self, id: WorkflowId) -> Result<(), EngineError> {
        self.call(|reply| Request::Unload { id, reply }).await
    }
}

impl Coordinator for EngineHandle {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        let deadline =
            torc_core::units::instant_after(Instant::now(), Duration::from_millis(req.wait_ms));
        self.call(|reply| Request::Claim {
            req,
            deadline,
            reply,
        })
        .await
        .map_err(|e| e.to_coordinator_error())
    }

    async fn report(&self, batch: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
        self.call(|reply| Request::Report { batch, reply })
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        let deadline =
            torc_core::units::instant_after(Instant::now(), Duration::from_millis(req.wait_ms));
        self.call(|reply| Request::Heartbeat {
            req,
            deadline,
            reply,
        })
        .await
        .map_err(|e| e.to_coordinator_error())
    }

    async fn claim_shared(
        &self,
        req: SharedClaimRequest,
    ) -> Result<ClaimResponse, CoordinatorError> {
        self.claim_shared_for(req, None)
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn claim_actions(
        &self,
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, CoordinatorError> {
        EngineHandle::claim_actions(self, req)
            .await
            .map_err(|e| e.to_coordinator_error())
    }
}
