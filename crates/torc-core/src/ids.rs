//! Identifier newtypes and the timestamp type used across the workspace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A workflow's identifier, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub i64);

/// A job's identifier inside its workflow: 1-based, dense, in expansion order.
///
/// Job ids are local to a workflow, so that a workflow's jobs can be created without a round
/// trip per job and so that the core can index its arrays with them directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u32);

impl JobId {
    /// The job at position `index` (0-based) of the workflow's job list.
    pub fn from_index(index: usize) -> JobId {
        JobId(u32::try_from(index + 1).expect("more than u32::MAX jobs in one workflow"))
    }

    /// The 0-based position of this job in the workflow's job list.
    pub fn index(self) -> usize {
        (self.0 as usize).wrapping_sub(1)
    }
}

/// Identifies a runner for leases and results (a free-form name chosen by the runner,
/// typically `hostname:pid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunnerId(pub String);

/// Milliseconds since the Unix epoch. The core never reads the clock: callers pass `now`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for RunnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
