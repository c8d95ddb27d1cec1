//! Allocations: the batch jobs (Slurm allocations) that executors requested for a workflow's
//! schedulers, as the server records them.
//!
//! The core decides when one is wanted and when one should go (see `sched::alloc`); executors
//! carry that out with the scheduler's own commands and report back what they did and saw. These
//! are the types of that exchange; they know nothing of Slurm beyond "a batch job with an id".

use crate::ids::Timestamp;
use serde::{Deserialize, Serialize};

/// Where an allocation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationState {
    /// Handed to an executor to submit; no batch job id yet.
    Requested,
    /// Submitted, waiting in the batch queue.
    Queued,
    /// Its runner is running.
    Running,
    /// Finished, failed to submit, or cancelled: nothing more happens to it.
    Ended,
}

impl AllocationState {
    pub fn name(self) -> &'static str {
        match self {
            AllocationState::Requested => "requested",
            AllocationState::Queued => "queued",
            AllocationState::Running => "running",
            AllocationState::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<AllocationState> {
        [
            AllocationState::Requested,
            AllocationState::Queued,
            AllocationState::Running,
            AllocationState::Ended,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }

    /// Requested, queued or running: it may still run jobs.
    pub fn is_live(self) -> bool {
        self != AllocationState::Ended
    }
}

/// One allocation of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Local to the workflow, from 1, never reused.
    pub id: u32,
    /// The action record it was requested for.
    pub record: u32,
    /// The scheduler (a `slurm_schedulers` name) whose jobs it runs.
    pub scheduler: String,
    /// The batch job's id, once submitted.
    pub batch_id: Option<u64>,
    pub state: AllocationState,
    /// Who submitted it (or was asked to).
    pub executor: String,
    pub requested_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Why it ended, or what went wrong; empty when there is nothing to say.
    #[serde(default)]
    pub note: String,
}

/// What an executor reports about allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "update")]
pub enum AllocationUpdate {
    /// It submitted a batch job for action record `record` (one update per job submitted).
    Submitted {
        record: u32,
        scheduler: String,
        batch_id: u64,
    },
    /// Submitting for `record` failed; `message` says what the batch system said.
    SubmitFailed { record: u32, message: String },
    /// The batch job is now in `state` (queued, running or ended), as seen by the executor
    /// (the batch system's queue) or by the runner inside it.
    Seen {
        batch_id: u64,
        state: AllocationState,
        #[serde(default)]
        note: String,
    },
}

/// What the core asks an executor to do about allocations, beside the actions it hands out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationOrders {
    /// Batch jobs to cancel: every live one of a workflow that is no longer active.
    #[serde(default)]
    pub cancel: Vec<u64>,
    /// Batch jobs to cancel if they are still waiting in the queue: those recorded queued whose
    /// scheduler has no job left to start. The record may be behind (the allocation may have
    /// just started, and its runner taken the last job): the executor looks at the queue first,
    /// cancels only what still waits, and reports what it saw.
    #[serde(default)]
    pub cancel_if_queued: Vec<u64>,
}
