//! The callers' side of the engine: a cheap, cloneable handle that sends requests to the writer
//! thread and awaits their answers. It implements the runner's [`Coordinator`] trait.

use crate::request::Request;
use crate::stats::{Stats, StatsSnapshot};
use crate::writer::Writer;
use crate::{EngineConfig, EngineError};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, Coordinator,
    CoordinatorError, HeartbeatRequest, HeartbeatResponse, ReportBatch, ReportResponse,
    SharedClaimRequest,
};
use torc_core::sched::{RequirementChange, ResourceScale, StatusSummary};
use torc_core::{JobId, WorkflowDef, WorkflowId};
use torc_store::Store;

/// A handle to a running engine. Cloning is cheap; the writer thread stops when the last
/// handle is dropped (after answering what it holds).
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Request>,
    stats: Arc<Stats>,
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

impl EngineHandle {
    /// Starts the writer thread over `store`, without leases (in-process use).
    pub fn start(store: Store) -> EngineHandle {
        Self::start_with(store, EngineConfig::default())
    }

    /// Starts the writer thread over `store` with `config`.
    pub fn start_with(store: Store, config: EngineConfig) -> EngineHandle {
        let (tx, rx) = channel();
        let stats = Arc::new(Stats::default());
        let writer = Writer::new(store, config, Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("torc-writer".into())
            .spawn(move || writer.run(rx))
            .expect("failed to spawn the writer thread");
        EngineHandle {
            tx,
            stats,
            _thread: Arc::new(ThreadGuard(Some(thread))),
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
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
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
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
    /// `torc_core::sched::WorkflowSched::claim_actions`); answered after the claim is committed.
    pub async fn claim_actions(
        &self,
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, EngineError> {
        self.call(|reply| Request::ClaimActions { req, reply })
            .await
    }

    /// Drops a workflow's live state (it stays in the database).
    pub async fn unload(&self, id: WorkflowId) -> Result<(), EngineError> {
        self.call(|reply| Request::Unload { id, reply }).await
    }
}

impl Coordinator for EngineHandle {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
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
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
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
}
