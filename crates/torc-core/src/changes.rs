//! What a core operation changed: the exact set of rows a store must write, in one transaction,
//! before anyone is told the operation happened.

use crate::ids::{JobId, RunnerId, Timestamp};
use crate::model::JobStatus;
use serde::{Deserialize, Serialize};

/// A workflow's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Has jobs that are not finished yet.
    Active,
    /// Every job is finished (completed, failed, canceled, terminated or disabled).
    Complete,
    /// Canceled by a user: nothing more is claimed.
    Canceled,
}

impl WorkflowState {
    pub fn name(self) -> &'static str {
        match self {
            WorkflowState::Active => "active",
            WorkflowState::Complete => "complete",
            WorkflowState::Canceled => "canceled",
        }
    }

    pub fn from_name(name: &str) -> Option<WorkflowState> {
        [
            WorkflowState::Active,
            WorkflowState::Complete,
            WorkflowState::Canceled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    pub fn is_done(self) -> bool {
        !matches!(self, WorkflowState::Active)
    }
}

/// A job's new state (and attempt) after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChange {
    pub job: JobId,
    pub status: JobStatus,
    pub attempt_id: u32,
}

/// The record of one attempt of a job: one row per attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub job: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
    pub runner: Option<RunnerId>,
    /// Exit code; the negated signal number when the process was killed by a signal.
    pub return_code: i32,
    /// Completed, failed or terminated.
    pub status: JobStatus,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub peak_memory_bytes: Option<u64>,
    pub avg_memory_bytes: Option<u64>,
    pub peak_cpu_percent: Option<f64>,
    pub avg_cpu_percent: Option<f64>,
    /// Why the runner ended the attempt itself, when it did.
    #[serde(default)]
    pub end_reason: Option<EndReason>,
    /// What happened, for people.
    #[serde(default)]
    pub message: Option<String>,
}

/// Why a runner ended an attempt itself (stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It used more memory than its resource requirement allows (`oom_exit_code`).
    Memory,
    /// It ran past its `timeout` (`timeout_exit_code`).
    Timeout,
    /// Its runner's allocation was ending (`timeout_exit_code`).
    AllocationEnd,
    /// Its runner was shut down.
    Shutdown,
    /// Its workflow was canceled.
    Canceled,
    /// The runner could not start or wait for its process.
    RunnerError,
}

impl EndReason {
    pub const ALL: [EndReason; 6] = [
        EndReason::Memory,
        EndReason::Timeout,
        EndReason::AllocationEnd,
        EndReason::Shutdown,
        EndReason::Canceled,
        EndReason::RunnerError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndReason::Memory => "memory",
            EndReason::Timeout => "timeout",
            EndReason::AllocationEnd => "allocation_end",
            EndReason::Shutdown => "shutdown",
            EndReason::Canceled => "canceled",
            EndReason::RunnerError => "runner_error",
        }
    }

    pub fn from_name(name: &str) -> Option<EndReason> {
        EndReason::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Stopped for running out of time: its own timeout, or its allocation's end.
    pub fn is_time(self) -> bool {
        matches!(self, EndReason::Timeout | EndReason::AllocationEnd)
    }
}

/// Something worth recording in a workflow's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    WorkflowCreated,
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowCanceled,
    WorkflowReset,
    JobRetried,
    JobRecoveryFailed,
    JobLost,
    ReportRefused,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::WorkflowCreated => "workflow_created",
            EventKind::WorkflowStarted => "workflow_started",
            EventKind::WorkflowCompleted => "workflow_completed",
            EventKind::WorkflowCanceled => "workflow_canceled",
            EventKind::WorkflowReset => "workflow_reset",
            EventKind::JobRetried => "job_retried",
            EventKind::JobRecoveryFailed => "job_recovery_failed",
            EventKind::JobLost => "job_lost",
            EventKind::ReportRefused => "report_refused",
        }
    }
}

/// An entry of a workflow's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    pub kind: EventKind,
    pub job: Option<JobId>,
    pub message: String,
}

/// A change to the workflow row itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowChange {
    pub state: WorkflowState,
    pub run_id: u32,
}

/// Everything one operation (or a batch of them) changed in one workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// Job state changes in the order they happened; a job may appear more than once, the last
    /// entry wins.
    pub jobs: Vec<JobChange>,
    pub results: Vec<JobResult>,
    pub events: Vec<Event>,
    pub workflow: Option<WorkflowChange>,
    /// Actions triggered and claimed (see `sched::actions`).
    #[serde(default)]
    pub actions: Vec<ActionChange>,
    /// Allocations recorded or changed, whole; a later entry for the same id wins.
    #[serde(default)]
    pub allocations: Vec<crate::alloc::Allocation>,
    /// Time-series samples that came with reports, by the runner that took them: recorded,
    /// never looked at by the scheduler.
    #[serde(default)]
    pub samples: Vec<RunnerSamples>,
}

/// Samples sent by one runner in one report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerSamples {
    pub runner: RunnerId,
    pub samples: Vec<crate::api::ResourceSample>,
}

/// A workflow action's record was created or claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum ActionChange {
    /// Action `action` (an index into the definition's actions) fired in run `run_id`; its
    /// record is `record` (local to the workflow, from 1).
    Triggered {
        record: u32,
        action: u32,
        run_id: u32,
        time: Timestamp,
    },
    /// `executor` took the record to carry it out.
    Claimed {
        record: u32,
        executor: String,
        time: Timestamp,
    },
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.results.is_empty()
            && self.events.is_empty()
            && self.workflow.is_none()
            && self.actions.is_empty()
            && self.allocations.is_empty()
            && self.samples.is_empty()
    }

    /// Appends `other` after `self`, keeping order.
    pub fn extend(&mut self, other: Changes) {
        self.jobs.extend(other.jobs);
        self.results.extend(other.results);
        self.events.extend(other.events);
        self.actions.extend(other.actions);
        self.allocations.extend(other.allocations);
        self.samples.extend(other.samples);
        if other.workflow.is_some() {
            self.workflow = other.workflow;
        }
    }

    /// The last state of each job that changed, in job order: what a store needs to write.
    pub fn final_job_states(&self) -> Vec<JobChange> {
        let mut last: Vec<JobChange> = self.jobs.clone();
        // Stable sort keeps the order of entries for the same job, so the last one wins.
        last.sort_by_key(|c| c.job);
        let mut out: Vec<JobChange> = Vec::with_capacity(last.len());
        for c in last {
            match out.last_mut() {
                Some(prev) if prev.job == c.job => *prev = c,
                _ => out.push(c),
            }
        }
        out
    }
}
