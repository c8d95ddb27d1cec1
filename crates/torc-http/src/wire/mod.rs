//! The wire types of the REST API that are not the coordinator's own (those are
//! `torc_core::api`'s, sent as they are): what the server answers for workflows, status, jobs,
//! results and events, and the small request bodies and query strings. Each mapping from a store
//! record or a core value is written once, here.
//!
//! Every type is both `Serialize` and `Deserialize`: the server writes them and [`crate::HttpClient`]
//! reads them back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use torc_core::api::ErrorCode;
use torc_core::changes::{EndReason, EventKind, WorkflowState};
use torc_core::sched::{RequirementChange, StatusSummary};
use torc_core::{JobId, JobStatus, RunnerId, Timestamp, WorkflowId};
use torc_store::{EventRecord, JobRecord, ResultRecord, TokenScope, WorkflowSummary};
use utoipa::{IntoParams, ToSchema};

mod observe;
pub mod schema;

pub use observe::{EventBatch, EventsWaitQuery, Sample, SamplePage, SamplesQuery};

/// One problem of an invalid spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecProblem {
    /// Where: `jobs[3] ("b_{i}").depends_on[0]`, `top level`, `line 4, column 7`.
    pub location: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `not_found`, `invalid_input`, `conflict`, `payload_too_large`, `internal`, ...
    #[schema(value_type = String, example = "not_found")]
    pub code: ErrorCode,
    pub message: String,
    /// Every problem of an invalid spec (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SpecProblem>,
}

/// The answer to creating a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWorkflow {
    #[schema(value_type = i64)]
    pub id: WorkflowId,
    pub name: String,
    pub num_jobs: u64,
    /// Keys accepted but not acted on.
    pub warnings: Vec<String>,
}

/// A workflow as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    #[schema(value_type = i64)]
    pub id: WorkflowId,
    pub name: String,
    pub user: Option<String>,
    /// `active`, `complete` or `canceled`.
    #[schema(value_type = schema::WorkflowState)]
    pub state: WorkflowState,
    pub run_id: u32,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
    pub num_jobs: u64,
}

impl From<WorkflowSummary> for Workflow {
    fn from(w: WorkflowSummary) -> Workflow {
        Workflow {
            id: w.id,
            name: w.name,
            user: w.user,
            state: w.state,
            run_id: w.run_id,
            created_at: w.created_at,
            num_jobs: w.num_jobs,
        }
    }
}

/// A workflow's live status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStatus {
    #[schema(value_type = i64)]
    pub workflow_id: WorkflowId,
    #[schema(value_type = schema::WorkflowState)]
    pub state: WorkflowState,
    pub run_id: u32,
    pub total: u64,
    /// Jobs per status name (`ready`, `running`, `completed`, ...); statuses with no job are
    /// absent.
    #[schema(value_type = BTreeMap<schema::JobStatus, u64>)]
    pub counts: BTreeMap<JobStatus, u64>,
}

impl WorkflowStatus {
    pub fn new(workflow_id: WorkflowId, s: StatusSummary) -> WorkflowStatus {
        WorkflowStatus {
            workflow_id,
            state: s.state,
            run_id: s.run_id,
            total: s.total,
            counts: s.counts.into_iter().collect(),
        }
    }

    /// The inverse of [`WorkflowStatus::new`]: states with no jobs are left out, as the engine
    /// leaves them out.
    pub fn into_summary(self) -> StatusSummary {
        StatusSummary {
            state: self.state,
            run_id: self.run_id,
            counts: self.counts.into_iter().filter(|&(_, n)| n > 0).collect(),
            total: self.total,
        }
    }

    /// Jobs in `status`.
    pub fn count(&self, status: JobStatus) -> u64 {
        self.counts.get(&status).copied().unwrap_or(0)
    }
}

/// One job, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    #[schema(value_type = u32)]
    pub id: JobId,
    pub name: String,
    #[schema(value_type = schema::JobStatus)]
    pub status: JobStatus,
    pub attempt_id: u32,
    pub command: String,
    pub invocation_script: Option<String>,
    pub priority: i64,
    pub tags: Vec<String>,
}

impl From<JobRecord> for Job {
    fn from(j: JobRecord) -> Job {
        Job {
            id: j.id,
            name: j.name,
            status: j.status,
            attempt_id: j.attempt_id,
            command: j.command,
            invocation_script: j.invocation_script,
            priority: j.priority,
            tags: j.tags,
        }
    }
}

/// One attempt of a job, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    pub id: i64,
    #[schema(value_type = u32)]
    pub job_id: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
    #[schema(value_type = Option<String>)]
    pub runner: Option<RunnerId>,
    pub return_code: i32,
    #[schema(value_type = schema::JobStatus)]
    pub status: JobStatus,
    #[schema(value_type = i64)]
    pub start_time: Timestamp,
    #[schema(value_type = i64)]
    pub end_time: Timestamp,
    pub exec_time_secs: f64,
    pub peak_memory_bytes: Option<u64>,
    pub avg_memory_bytes: Option<u64>,
    pub peak_cpu_percent: Option<f64>,
    pub avg_cpu_percent: Option<f64>,
    /// Why the runner ended the attempt itself: `memory`, `timeout`, `allocation_end`,
    /// `shutdown`, `canceled` or `runner_error`; absent when it ended on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::EndReason>)]
    pub end_reason: Option<EndReason>,
    /// What happened, for people (e.g. the memory used against the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<ResultRecord> for JobResult {
    fn from(r: ResultRecord) -> JobResult {
        JobResult {
            id: r.id,
            job_id: r.job_id,
            run_id: r.run_id,
            attempt_id: r.attempt_id,
            runner: r.runner,
            return_code: r.return_code,
            status: r.status,
            start_time: r.start_time,
            end_time: r.end_time,
            exec_time_secs: r.exec_time_secs,
            peak_memory_bytes: r.peak_memory_bytes,
            avg_memory_bytes: r.avg_memory_bytes,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
            end_reason: r.end_reason,
            message: r.message,
        }
    }
}

impl From<Job> for JobRecord {
    fn from(j: Job) -> JobRecord {
        JobRecord {
            id: j.id,
            name: j.name,
            status: j.status,
            attempt_id: j.attempt_id,
            command: j.command,
            invocation_script: j.invocation_script,
            priority: j.priority,
            tags: j.tags,
        }
    }
}

impl From<JobResult> for ResultRecord {
    fn from(r: JobResult) -> ResultRecord {
        ResultRecord {
            id: r.id,
            job_id: r.job_id,
            run_id: r.run_id,
            attempt_id: r.attempt_id,
            runner: r.runner,
            return_code: r.return_code,
            status: r.status,
            start_time: r.start_time,
            end_time: r.end_time,
            exec_time_secs: r.exec_time_secs,
            peak_memory_bytes: r.peak_memory_bytes,
            avg_memory_bytes: r.avg_memory_bytes,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
            end_reason: r.end_reason,
            message: r.message,
        }
    }
}

impl From<Workflow> for WorkflowSummary {
    fn from(w: Workflow) -> WorkflowSummary {
        WorkflowSummary {
            id: w.id,
            name: w.name,
            user: w.user,
            state: w.state,
            run_id: w.run_id,
            created_at: w.created_at,
            num_jobs: w.num_jobs,
        }
    }
}

/// One entry of a workflow's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowEvent {
    pub id: i64,
    #[schema(value_type = i64)]
    pub time: Timestamp,
    /// `workflow_created`, `job_retried`, `report_refused`, ...
    #[schema(value_type = String, example = "workflow_created")]
    pub kind: EventKind,
    #[schema(value_type = Option<u32>)]
    pub job_id: Option<JobId>,
    pub message: String,
}

impl From<WorkflowEvent> for EventRecord {
    fn from(e: WorkflowEvent) -> EventRecord {
        EventRecord {
            id: e.id,
            time: e.time,
            kind: e.kind,
            job_id: e.job_id,
            message: e.message,
        }
    }
}

impl From<EventRecord> for WorkflowEvent {
    fn from(e: EventRecord) -> WorkflowEvent {
        WorkflowEvent {
            id: e.id,
            time: e.time,
            kind: e.kind,
            job_id: e.job_id,
            message: e.message,
        }
    }
}

/// A page of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub offset: u64,
    pub limit: u64,
    pub items: Vec<Job>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultPage {
    pub offset: u64,
    pub limit: u64,
    pub items: Vec<JobResult>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub offset: u64,
    pub limit: u64,
    pub items: Vec<WorkflowEvent>,
}

/// The body of a change of a workflow's cap on jobs in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapRequest {
    /// At most this many jobs pending or running at once (at least 1); null: no cap.
    pub max_concurrent_jobs: Option<u32>,
}

/// The body of a change of one job's needs: factors for its memory and its runtime (and
/// timeout); an absent factor leaves that need as it is.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// Memory × this (above 0), rounded up to a whole MiB.
    #[serde(default)]
    pub memory_factor: Option<f64>,
    /// Runtime and timeout × this (above 0), rounded up to a whole second.
    #[serde(default)]
    pub runtime_factor: Option<f64>,
}

/// A job's needs after a change: a requirement shared with other jobs was copied for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesChanged {
    #[schema(value_type = u32)]
    pub job_id: JobId,
    pub memory_bytes_before: u64,
    pub memory_bytes: u64,
    pub runtime_secs_before: f64,
    pub runtime_secs: f64,
    pub timeout_secs_before: Option<f64>,
    pub timeout_secs: Option<f64>,
    /// The name of the requirement the job names now; null: none (the default resources).
    pub requirement: Option<String>,
    /// The requirement is a new copy for this job alone.
    pub created: bool,
}

impl From<RequirementChange> for ResourcesChanged {
    fn from(c: RequirementChange) -> ResourcesChanged {
        ResourcesChanged {
            job_id: c.job,
            memory_bytes_before: c.before.memory_bytes,
            memory_bytes: c.after.memory_bytes,
            runtime_secs_before: c.before.runtime.as_secs_f64(),
            runtime_secs: c.after.runtime.as_secs_f64(),
            timeout_secs_before: c.timeout_before.map(|t| t.as_secs_f64()),
            timeout_secs: c.timeout.map(|t| t.as_secs_f64()),
            requirement: c.requirement.map(|(_, r)| r.name),
            created: c.created,
        }
    }
}

/// The body of a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Only failed, canceled and terminated jobs (and their downstream); else every job.
    #[serde(default)]
    pub failed_only: bool,
}

impl ResetRequest {
    /// Reads a reset body; an empty body is a full reset.
    pub fn from_body(body: &[u8]) -> Result<ResetRequest, crate::ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ResetRequest::default());
        }
        Ok(serde_json::from_slice(body)?)
    }
}

/// What a token reaches besides acting as its user, as written in the auth configuration and in
/// `POST /tokens`: exactly one key. `{workflow: ID}` is a runner token of one workflow;
/// `{user: NAME}` and `{group: NAME}` are shared runner tokens for that user's workflows or those
/// of the group's members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenScopeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl From<&TokenScope> for TokenScopeSpec {
    fn from(scope: &TokenScope) -> TokenScopeSpec {
        match scope {
            TokenScope::Workflow(w) => TokenScopeSpec {
                workflow: Some(w.0),
                ..TokenScopeSpec::default()
            },
            TokenScope::User(u) => TokenScopeSpec {
                user: Some(u.clone()),
                ..TokenScopeSpec::default()
            },
            TokenScope::Group(g) => TokenScopeSpec {
                group: Some(g.clone()),
                ..TokenScopeSpec::default()
            },
        }
    }
}

/// `POST /tokens`: a token for `user`, acting as them (no scope) or a runner token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A user of the server's auth configuration.
    pub user: String,
    /// A name to recognize the token by [default: USER-RANDOM].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScopeSpec>,
}

/// The answer to `POST /tokens`. The token is shown this once: the server keeps its hash only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScopeSpec>,
    /// Send as `Authorization: Bearer TOKEN`.
    pub token: String,
}

/// A token as listed (`GET /tokens`): never the token, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScopeSpec>,
    /// `config` (the server's auth file: change it there) or `api` (made by an admin).
    pub source: String,
    /// When an admin made it (milliseconds since the Unix epoch); absent for the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub created_at: Option<Timestamp>,
}

/// `?offset=&limit=`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Rows to skip (default 0).
    pub offset: Option<u64>,
    /// Rows to return (default and maximum set by the server).
    pub limit: Option<u64>,
}

/// `?status=&offset=&limit=`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only jobs in this status: a name (`ready`) or its numeric code (`2`).
    pub status: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

/// `?job=&offset=&limit=`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    /// Only this job's results.
    pub job: Option<u32>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

/// `?format=` of a spec upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SpecQuery {
    /// `yaml`, `json` or `json5`; without it the body's Content-Type decides (YAML when unsure).
    pub format: Option<String>,
}
