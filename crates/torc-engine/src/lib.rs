//! torc's engine: every active workflow's live state in memory, one writer thread, group commit.
//!
//! Callers (the embedded CLI, HTTP handlers, the in-process runner) hold an [`EngineHandle`] and
//! send it requests. The writer thread takes every request waiting, applies each to the core
//! ([`torc_core::sched::WorkflowSched`]), writes all their [`Changes`] in ONE transaction, and
//! only after the commit answers each caller. A failed commit drops the affected workflows from
//! memory (they are reloaded from the database on next use), then commits the batch's requests
//! again one by one, so that only a request whose own changes cannot be written gets an error:
//! nothing is acknowledged that is not durable, and one bad request never fails its batch.
//!
//! Claims that find nothing may park until their deadline (long poll): after every batch that
//! made a job ready in their workflow, parked claims are tried again. Heartbeats park the same
//! way and are answered early when their workflow stops being active, so that a cancel reaches
//! every runner at once.
//!
//! With leases on ([`EngineConfig::leases`], what a server uses), the writer also wakes every
//! [`LEASE_TICK`] or so to take jobs away from runners that went silent. In-process use (the
//! embedded CLI) runs without: its runner cannot be lost without the engine going too.
//!
//! The crate holds no storage code of its own (it writes through `torc_store::Store`) and makes
//! no scheduling decision (that is `torc_core::sched`): it only orders requests, batches their
//! changes into commits and decides when a parked caller is answered. Layout: `handle` (the
//! public [`EngineHandle`]), `stats` (its counters), `request` (what travels to the writer and the
//! answers held back until a commit), `writer` (the writer thread's loop, with `writer::park`
//! for long polls, `writer::lease` for the lease clock, `writer::replay` for group commit and
//! its failures, `writer::purge` for deletes a chunk at a time, and, in debug builds only,
//! `writer::fault` for a writer that panics on purpose).

mod handle;
mod request;
mod stats;
mod writer;

pub use handle::EngineHandle;
pub use stats::StatsSnapshot;
pub use torc_core::sched::LeasePolicy;

use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use torc_core::api::{CoordinatorError, ErrorCode};
use torc_core::sched::{AdjustError, SchedError};
use torc_core::{Timestamp, WorkflowId};
use torc_store::StoreError;

/// Why an engine request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("workflow {0} not found")]
    WorkflowNotFound(WorkflowId),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error(transparent)]
    Adjust(#[from] AdjustError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
    /// The batch holding this request could not be committed; nothing of it took effect.
    #[error("commit failed, nothing was changed: {detail}")]
    CommitFailed { detail: String },
    /// The store cannot hold a value of this request (committed alone, it failed again):
    /// nothing of it took effect, and the same request would fail the same way.
    #[error("the request holds a value the database cannot store: {detail}")]
    Unstorable { detail: String },
    /// The writer thread could not be started.
    #[error("cannot start the engine's writer thread: {0}")]
    Spawn(std::io::Error),
    /// A creation's idempotency key was used before for a different request.
    #[error("idempotency key {key:?} was used before for a different request")]
    KeyReused { key: String },
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
            EngineError::Unstorable { .. } | EngineError::KeyReused { .. } => {
                CoordinatorError::Rejected {
                    code: ErrorCode::InvalidInput,
                    message: self.to_string(),
                }
            }
            EngineError::Adjust(AdjustError::NoSuchJob { .. }) => CoordinatorError::Rejected {
                code: ErrorCode::NotFound,
                message: self.to_string(),
            },
            EngineError::Adjust(AdjustError::InFlight { .. }) => CoordinatorError::Rejected {
                code: ErrorCode::Conflict,
                message: self.to_string(),
            },
            EngineError::Adjust(_) => CoordinatorError::Rejected {
                code: ErrorCode::InvalidInput,
                message: self.to_string(),
            },
            EngineError::Sched(SchedError::Inconsistent { .. }) => CoordinatorError::Rejected {
                code: ErrorCode::Internal,
                message: self.to_string(),
            },
            EngineError::Store(_)
            | EngineError::Stopped
            | EngineError::Spawn(_)
            | EngineError::CommitFailed { .. } => CoordinatorError::Unavailable {
                message: self.to_string(),
            },
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

#[cfg(test)]
mod tests;
