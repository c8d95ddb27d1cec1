//! What travels to the writer thread, and the answers it holds back until their batch commits.

use crate::EngineError;
use std::time::Instant;
use tokio::sync::oneshot;
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, HeartbeatRequest,
    HeartbeatResponse, ReportBatch, ReportResponse, SharedClaimRequest,
};
use torc_core::sched::{RequirementChange, ResourceScale, StatusSummary};
use torc_core::JobId;
use torc_core::{WorkflowDef, WorkflowId};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

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
    ClaimActions {
        req: ActionClaimRequest,
        reply: Reply<ActionClaimResponse>,
    },
}

/// An answer held back until the batch that produced it is committed.
pub(crate) enum Pending {
    Id(Reply<WorkflowId>, Result<WorkflowId, EngineError>),
    Status(Reply<StatusSummary>, Result<StatusSummary, EngineError>),
    Claim(Reply<ClaimResponse>, Result<ClaimResponse, EngineError>),
    Report(Reply<ReportResponse>, Result<ReportResponse, EngineError>),
    Heartbeat(
        Reply<HeartbeatResponse>,
        Result<HeartbeatResponse, EngineError>,
    ),
    Unit(Reply<()>, Result<(), EngineError>),
    Requirement(
        Reply<RequirementChange>,
        Result<RequirementChange, EngineError>,
    ),
    Actions(
        Reply<ActionClaimResponse>,
        Result<ActionClaimResponse, EngineError>,
    ),
}

impl Pending {
    pub(crate) fn send(self, commit_failed: Option<&str>) {
        match self {
            Pending::Id(tx, r) => deliver(tx, r, commit_failed),
            Pending::Status(tx, r) => deliver(tx, r, commit_failed),
            Pending::Claim(tx, r) => deliver(tx, r, commit_failed),
            Pending::Report(tx, r) => deliver(tx, r, commit_failed),
            Pending::Heartbeat(tx, r) => deliver(tx, r, commit_failed),
            Pending::Unit(tx, r) => deliver(tx, r, commit_failed),
            Pending::Requirement(tx, r) => deliver(tx, r, commit_failed),
            Pending::Actions(tx, r) => deliver(tx, r, commit_failed),
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
