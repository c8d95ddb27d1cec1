//! What the store hands back: a workflow as loaded for the engine, and the listings that the CLI
//! and the server print. Listings derive `Serialize` so that they can be shown as JSON as-is.

use serde::Serialize;
use torc_core::changes::{EndReason, EventKind, JobResult, WorkflowState};
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use torc_core::model::{JobStatus, WorkflowDef};
use torc_core::sched::SavedJob;

/// A workflow as stored: its definition and the durable state of each of its jobs, from which
/// the engine rebuilds its live state.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedWorkflow {
    pub id: WorkflowId,
    pub def: WorkflowDef,
    pub state: WorkflowState,
    pub run_id: u32,
    /// The saved state of every job; index `i` is `JobId::from_index(i)`.
    pub jobs: Vec<SavedJob>,
    pub created_at: Timestamp,
}

/// One line of a workflow listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowSummary {
    pub id: WorkflowId,
    pub name: String,
    pub user: Option<String>,
    pub state: WorkflowState,
    pub run_id: u32,
    pub created_at: Timestamp,
    pub num_jobs: u64,
}

/// One line of a job listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub name: String,
    pub status: JobStatus,
    pub attempt_id: u32,
    pub command: String,
    pub invocation_script: Option<String>,
    pub priority: i64,
    pub tags: Vec<String>,
}

/// One attempt of a job, as recorded: core's [`JobResult`] plus its row id and wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRecord {
    pub id: i64,
    pub job_id: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
    pub runner: Option<RunnerId>,
    pub return_code: i32,
    pub status: JobStatus,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub exec_time_secs: f64,
    pub peak_memory_bytes: Option<u64>,
    pub avg_memory_bytes: Option<u64>,
    pub peak_cpu_percent: Option<f64>,
    pub avg_cpu_percent: Option<f64>,
    /// Why the runner ended the attempt itself, when it did.
    pub end_reason: Option<EndReason>,
    /// What happened, for people.
    pub message: Option<String>,
}

impl ResultRecord {
    /// The result as the core knows it.
    pub fn to_job_result(&self) -> JobResult {
        JobResult {
            job: self.job_id,
            run_id: self.run_id,
            attempt_id: self.attempt_id,
            runner: self.runner.clone(),
            return_code: self.return_code,
            status: self.status,
            start_time: self.start_time,
            end_time: self.end_time,
            peak_memory_bytes: self.peak_memory_bytes,
            avg_memory_bytes: self.avg_memory_bytes,
            peak_cpu_percent: self.peak_cpu_percent,
            avg_cpu_percent: self.avg_cpu_percent,
            end_reason: self.end_reason,
            message: self.message.clone(),
        }
    }
}

/// One entry of a workflow's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub time: Timestamp,
    pub kind: EventKind,
    pub job_id: Option<JobId>,
    pub message: String,
}

/// What a bearer token reaches besides acting as its user: nothing else (`None` on a
/// [`TokenRecord`]), or, for a runner, one workflow, one user's workflows or a group's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    Workflow(WorkflowId),
    User(String),
    Group(String),
}

/// A bearer token created through the API: only the SHA-256 of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    pub user: String,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
    /// `None`: the token acts as `user`; otherwise a runner token of this reach.
    pub scope: Option<TokenScope>,
    pub created_at: Timestamp,
}
