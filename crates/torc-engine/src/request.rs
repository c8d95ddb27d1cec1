//! What travels to the writer thread, and the answers it holds back until their batch commits.

use crate::EngineError;
use std::time::Instant;
use tokio::sync::oneshot;
use torc_core::alloc::Allocation;
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, HeartbeatRequest,
    HeartbeatResponse, ReportBatch, ReportResponse, SharedClaimRequest,
};
use torc_core::sched::{RequirementChange, ResourceScale, StatusSummary};
use torc_core::JobId;
use torc_core::{WorkflowDef, WorkflowId};
use torc_store::IdempotencyKey;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A request to the writer thread.
pub(crate) enum Request {
    Create {
        def: Box<WorkflowDef>,
        spec: Option<String>,
        key: Option<IdempotencyKey>,
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
    ScaleJobResources {
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
        reply: Reply<RequirementChange>,
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
    Delete {
        id: WorkflowId,
        reply: Reply<()>,
    },
    ClaimActions {
        req: ActionClaimRequest,
        reply: Reply<ActionClaimResponse>,
    },
    Allocations {
        id: WorkflowId,
        reply: Reply<Vec<Allocation>>,
    },
    /// Tests only: the writer says it `started`, then stays inside its batch until `release`,
    /// as it would on a stalled disk or a huge creation.
    #[cfg(test)]
    Stall {
        started: oneshot::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    },
}

/// What a caller's request does again, alone, when the batch that held its answer could not
/// be committed (see `writer::replay`).
pub(crate) enum Redo {
    /// Nothing: what it changed was durable before the batch (a creation, a cap, an unload).
    Keep,
    Resume(WorkflowId),
    Cancel(WorkflowId),
    Reset(WorkflowId, bool),
    Status(WorkflowId),
    Claim {
        req: ClaimRequest,
        deadline: Instant,
    },
    ClaimShared {
        req: SharedClaimRequest,
        owners: Option<Vec<String>>,
        deadline: Instant,
    },
    Report(ReportBatch),
    Heartbeat {
        req: HeartbeatRequest,
        deadline: Instant,
    },
    /// A parked heartbeat's answer: given again from the state as reloaded.
    Beat(WorkflowId),
    Actions(ActionClaimRequest),
}

/// An answer held back until the batch that produced it is committed, with how to redo it.
pub(crate) enum Pending {
    Id(Reply<WorkflowId>, Result<WorkflowId, EngineError>),
    Status(
        Reply<StatusSummary>,
        Result<StatusSummary, EngineError>,
        Redo,
    ),
    Claim(
        Reply<ClaimResponse>,
        Result<ClaimResponse, EngineError>,
        Redo,
    ),
    Report(
        Reply<ReportResponse>,
        Result<ReportResponse, EngineError>,
        Redo,
    ),
    Heartbeat(
        Reply<HeartbeatResponse>,
        Result<HeartbeatResponse, EngineError>,
        Redo,
    ),
    Unit(Reply<()>, Result<(), EngineError>),
    Requirement(
        Reply<RequirementChange>,
        Result<RequirementChange, EngineError>,
    ),
    Actions(
        Reply<ActionClaimResponse>,
        Result<ActionClaimResponse, EngineError>,
        Redo,
    ),
    Allocations(Reply<Vec<Allocation>>, Result<Vec<Allocation>, EngineError>),
}

/// Why the commit of an answer's batch failed, as its caller is told.
#[derive(Debug, Clone)]
pub(crate) struct CommitFailure {
    pub(crate) detail: String,
    /// The store refused a value of this request itself (out of range, unencodable): the same
    /// request would fail again, so it is refused rather than called unavailable.
    pub(crate) refused: bool,
}

impl CommitFailure {
    fn error(&self) -> EngineError {
        let detail = self.detail.clone();
        if self.refused {
            EngineError::Unstorable { detail }
        } else {
            EngineError::CommitFailed { detail }
        }
    }
}

impl Pending {
    /// Answers the caller: its result, or the failure of its batch's commit (unless what it
    /// changed was durable before the batch).
    pub(crate) fn send(self, failed: Option<&CommitFailure>) {
        match self {
            Pending::Id(tx, r) => deliver(tx, r, None),
            Pending::Unit(tx, r) => deliver(tx, r, None),
            Pending::Status(tx, r, Redo::Keep) => deliver(tx, r, None),
            Pending::Status(tx, r, _) => deliver(tx, r, failed),
            Pending::Claim(tx, r, _) => deliver(tx, r, failed),
            Pending::Report(tx, r, _) => deliver(tx, r, failed),
            Pending::Heartbeat(tx, r, _) => deliver(tx, r, failed),
            Pending::Actions(tx, r, _) => deliver(tx, r, failed),
            Pending::Allocations(tx, r) => deliver(tx, r, None),
            Pending::Requirement(tx, r) => deliver(tx, r, failed),
        }
    }
}

/// Answers a caller: its result, or the commit's failure when the batch was not committed.
fn deliver<T>(tx: Reply<T>, result: Result<T, EngineError>, failed: Option<&CommitFailure>) {
    let answer = match failed {
        None => result,
        Some(f) => Err(f.error()),
    };
    // A send error means the caller went away; nothing to do about it.
    drop(tx.send(answer));
}
