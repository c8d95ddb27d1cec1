//! The boundary between a runner and whoever coordinates it.
//!
//! [`Coordinator`] is implemented in-process (the embedded engine in `torc-store`) and over HTTP
//! (the client in `torc-http`); the runner is generic over it and cannot tell which it talks to.

use crate::changes::{EndReason, WorkflowState};
use crate::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use crate::model::{opt_duration_secs, FailureHandler, JobStatus, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// What a runner has free right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeResources {
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub num_gpus: u32,
    /// Time left in the runner's allocation; `None` means unbounded.
    #[serde(default, with = "opt_duration_secs")]
    pub time_left: Option<Duration>,
}

/// The tags a runner offers. A job with tags goes only to a runner that has all of them; an
/// untagged job goes to a runner with no tags, or to a tagged one that runs untagged jobs too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunnerTags {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub run_untagged: bool,
}

impl RunnerTags {
    /// The tag by which a job with `scheduler` set requires an allocation of that scheduler.
    pub fn scheduler_tag(scheduler: &str) -> String {
        format!("scheduler:{scheduler}")
    }

    /// What a runner in an allocation of `scheduler` offers: that scheduler's jobs, untagged
    /// jobs, and jobs needing only `labels` (plus the scheduler).
    pub fn for_scheduler(scheduler: &str, labels: &[String]) -> RunnerTags {
        let mut tags = labels.to_vec();
        tags.push(RunnerTags::scheduler_tag(scheduler));
        RunnerTags {
            tags,
            run_untagged: true,
        }
    }
}

/// A request for ready jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub workflow_id: WorkflowId,
    pub runner_id: RunnerId,
    /// At most this many jobs.
    pub limit: u32,
    /// Resource-based claim: only jobs that fit, together, in these. `None`: count-based claim.
    pub resources: Option<FreeResources>,
    /// When nothing fits now, wait up to this long for a job that does (long poll).
    #[serde(default)]
    pub wait_ms: u64,
    /// Only jobs these tags allow; `None`: any job (a runner dedicated to its workflow).
    #[serde(default)]
    pub tags: Option<RunnerTags>,
}

/// A shared runner's request for ready jobs of any workflow it may serve, picked fairly: the
/// workflow with the fewest jobs in flight first, then job priority, then the workflow that has
/// waited longest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedClaimRequest {
    pub runner_id: RunnerId,
    /// At most this many jobs.
    pub limit: u32,
    /// Only jobs that fit, together, in these. `None`: count-based claim.
    pub resources: Option<FreeResources>,
    #[serde(default)]
    pub tags: RunnerTags,
    /// When nothing fits now, wait up to this long for a job that does (long poll).
    #[serde(default)]
    pub wait_ms: u64,
}

/// A job handed to a runner: everything it needs to run it.
///
/// Fields at their defaults are left out of the JSON (a claim of many short jobs is mostly
/// this struct, sent, parsed and read on every claim): no invocation script, no timeout, the
/// default `stdio`, exit code and limits, no failure handler. `env` and
/// `supports_termination` are always sent: runners built before defaults were left out
/// require them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    pub workflow_id: WorkflowId,
    pub job_id: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
    pub name: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_script: Option<String>,
    pub resources: Resources,
    #[serde(default)]
    pub supports_termination: bool,
    #[serde(
        default,
        with = "opt_duration_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How the job's output is kept (the job's own `stdio`, else the workflow's).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stdio: crate::model::StdioConfig,
    /// The return code recorded when the runner stops the job for time (its `timeout`).
    #[serde(
        default = "default_timeout_exit_code",
        skip_serializing_if = "is_default_timeout_exit_code"
    )]
    pub timeout_exit_code: i32,
    /// The job's failure handler, so that the runner can run a recovery script before a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handler: Option<FailureHandler>,
    /// What the runner samples over time while the job runs (`resource_monitor` with
    /// `granularity: time_series`); `None`: summaries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeries>,
    /// How the runner limits and stops the job (from the workflow's `execution_config`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: JobLimits,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn is_default_timeout_exit_code(code: &i32) -> bool {
    *code == default_timeout_exit_code()
}

/// Time-series sampling asked for by a workflow's `resource_monitor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// Seconds between samples (at least 1).
    pub interval_seconds: u32,
    /// Sample each job's process tree.
    pub jobs: bool,
    /// Sample the runner's whole node.
    pub node: bool,
}

/// One time-series sample: CPU, resident memory and processes at one moment, of one job's
/// process tree (its attempt named) or of the runner's whole node (no job).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// The job measured; `None`: the runner's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<u32>,
    pub time: Timestamp,
    /// Percent of one CPU (200: two CPUs busy); for a node, of all its CPUs together.
    pub cpu_percent: f64,
    /// Resident memory (of a node: memory in use, total less available).
    pub memory_bytes: u64,
    pub num_processes: u32,
}

/// What a runner enforces on one job and how it stops it, from the workflow's
/// `execution_config` (see SPEC.md, Execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobLimits {
    /// Kill the job when its process tree uses more memory than this: its named resource
    /// requirement's memory, in direct mode with `limit_resources`; `None`: not limited.
    pub memory_bytes: Option<u64>,
    /// The return code recorded for a job killed for its memory.
    pub oom_exit_code: i32,
    /// The signal (Linux number) a job that supports termination gets before SIGKILL.
    pub termination_signal: i32,
    /// Time between the termination signal and SIGKILL.
    #[serde(with = "crate::model::duration_secs")]
    pub sigterm_lead: Duration,
    /// At an allocation's end, SIGKILL comes this long before the end.
    #[serde(with = "crate::model::duration_secs")]
    pub sigkill_headroom: Duration,
    /// Runners of many nodes spread the start of their first jobs.
    pub staggered_start: bool,
}

/// The limits of the default `execution_config`, worked out once: every claimed job at its
/// defaults is compared with them when sent and given them when read, and building an
/// `ExecutionConfig` costs an allocation.
static DEFAULT_LIMITS: std::sync::LazyLock<JobLimits> = std::sync::LazyLock::new(|| {
    JobLimits::from_config(&crate::model::ExecutionConfig::default(), None)
});

impl Default for JobLimits {
    fn default() -> JobLimits {
        *DEFAULT_LIMITS
    }
}

impl JobLimits {
    /// The limits `config` sets for a job whose named requirement asks for `memory_bytes`
    /// (`None`: the job names no requirement, and its memory is not limited).
    pub fn from_config(
        config: &crate::model::ExecutionConfig,
        memory_bytes: Option<u64>,
    ) -> JobLimits {
        let direct = config.mode != crate::model::ExecutionMode::Slurm;
        JobLimits {
            memory_bytes: memory_bytes.filter(|_| direct && config.limit_resources),
            oom_exit_code: config.oom_exit_code,
            termination_signal: config.termination_signal_number(),
            sigterm_lead: Duration::from_secs(u64::from(config.sigterm_lead_seconds)),
            sigkill_headroom: Duration::from_secs(u64::from(config.sigkill_headroom_seconds)),
            staggered_start: config.staggered_start,
        }
    }
}

fn default_timeout_exit_code() -> i32 {
    crate::model::DEFAULT_TIMEOUT_EXIT_CODE
}

impl ClaimedJob {
    /// The full shell command: the invocation script, if any, then the command.
    pub fn shell_command(&self) -> String {
        match &self.invocation_script {
            Some(script) if !script.trim().is_empty() => format!("{script} {}", self.command),
            _ => self.command.clone(),
        }
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub jobs: Vec<ClaimedJob>,
    /// When not active, the runner has nothing more to wait for in this workflow.
    pub workflow_state: WorkflowState,
    /// For a runner of an allocation (its tags name a scheduler): the unfinished jobs it could
    /// still be given. Zero means nothing for it can ever come (until a reset): it may exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_jobs: Option<u64>,
}

/// A job started running on the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReport {
    pub job_id: JobId,
    pub attempt_id: u32,
    pub start_time: Timestamp,
}

/// A job's process ended (or was ended by the runner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionReport {
    pub job_id: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
    /// Exit code; the negated signal number when killed by a signal.
    pub return_code: i32,
    /// The runner stopped the job (timeout, shutdown, cancel): recorded as terminated.
    #[serde(default, skip_serializing_if = "is_false")]
    pub terminated: bool,
    /// The failure handler's recovery script ran before this report and failed: do not retry.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recovery_failed: bool,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_cpu_percent: Option<f64>,
    /// Why the runner ended the job itself, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// What happened, for people (e.g. the memory it used against its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Starts and completions sent together; either list may be empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub workflow_id: WorkflowId,
    pub runner_id: RunnerId,
    #[serde(default)]
    pub starts: Vec<StartReport>,
    #[serde(default)]
    pub completions: Vec<CompletionReport>,
    /// Time-series samples taken since the last report (of the jobs completed here, and of the
    /// node); stored in the same commit as the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<ResourceSample>,
}

/// What became of one completion report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CompletionOutcome {
    /// Applied: the job is now in `status` (ready again when it will be retried). A report sent
    /// again after it was applied gets the same answer and changes nothing.
    Accepted { status: JobStatus },
    /// Not applied (a stale attempt, a job not running), with the reason.
    Refused { reason: String },
}

/// The answer to a report batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportResponse {
    /// One outcome per completion, in the order sent.
    pub outcomes: Vec<CompletionOutcome>,
    pub workflow_state: WorkflowState,
}

/// A job a runner holds: claimed, running, or finished with its report not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldJob {
    pub job_id: JobId,
    pub run_id: u32,
    pub attempt_id: u32,
}

/// A runner saying it is alive, and what it holds. Renews its lease on those jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub workflow_id: WorkflowId,
    pub runner_id: RunnerId,
    #[serde(default)]
    pub held: Vec<HeldJob>,
    /// The coordinator may hold the answer up to this long, answering at once when the workflow
    /// stops being active (a cancel reaches the runner without waiting for the next beat).
    #[serde(default)]
    pub wait_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub workflow_state: WorkflowState,
    /// Jobs the runner listed that are no longer its to run (lost with a lapsed lease,
    /// canceled, reset): it should stop them and not report them.
    #[serde(default)]
    pub revoked: Vec<HeldJob>,
    /// The lease length: a runner silent this long loses its jobs. `None`: no leases (an
    /// in-process coordinator that dies with its runner).
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    InvalidInput,
    Conflict,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    /// The caller holds as much of the coordinator as one caller may; retry later.
    TooManyRequests,
    Internal,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Why a coordinator call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// The coordinator could not be reached or did not answer; the call may be retried.
    #[error("coordinator unavailable: {message}")]
    Unavailable { message: String },
    /// The coordinator refused the call; retrying the same call will not help.
    #[error("{}: {message}", code.name())]
    Rejected { code: ErrorCode, message: String },
}

impl CoordinatorError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CoordinatorError::Unavailable { .. })
    }
}

/// The hot path as a runner sees it.
pub trait Coordinator: Send + Sync + 'static {
    /// Claims ready jobs; may wait up to `req.wait_ms` when none fits now.
    fn claim(
        &self,
        req: ClaimRequest,
    ) -> impl Future<Output = Result<ClaimResponse, CoordinatorError>> + Send;

    /// Reports starts and completions. Answered only once they are durable.
    fn report(
        &self,
        batch: ReportBatch,
    ) -> impl Future<Output = Result<ReportResponse, CoordinatorError>> + Send;

    /// Renews the runner's lease on the jobs it holds; may wait up to `req.wait_ms` for the
    /// workflow to stop being active.
    fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> impl Future<Output = Result<HeartbeatResponse, CoordinatorError>> + Send;

    /// Claims ready jobs of any workflow this runner may serve (a shared runner). A coordinator
    /// that serves one workflow refuses.
    fn claim_shared(
        &self,
        req: SharedClaimRequest,
    ) -> impl Future<Output = Result<ClaimResponse, CoordinatorError>> + Send {
        let _ = req;
        std::future::ready(Err(CoordinatorError::Rejected {
            code: ErrorCode::InvalidInput,
            message: "this coordinator does not serve shared runners".into(),
        }))
    }

    /// An executor's exchange: takes the triggered actions it can carry out and passes on what
    /// it reports about allocations (see [`ActionClaimRequest`]). A coordinator without actions
    /// refuses.
    fn claim_actions(
        &self,
        req: ActionClaimRequest,
    ) -> impl Future<Output = Result<ActionClaimResponse, CoordinatorError>> + Send {
        let _ = req;
        std::future::ready(Err(CoordinatorError::Rejected {
            code: ErrorCode::InvalidInput,
            message: "this coordinator does not hand out workflow actions".into(),
        }))
    }
}

/// What an executor of workflow actions can carry out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCapabilities {
    /// `schedule_nodes` with Slurm: `sbatch` works where the executor runs.
    #[serde(default)]
    pub slurm: bool,
    /// `schedule_nodes` with `scheduler_type: local`: it can start runner processes here.
    #[serde(default)]
    pub local_runners: bool,
    /// `run_commands`.
    #[serde(default)]
    pub run_commands: bool,
}

/// An executor asks for the triggered actions it can carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionClaimRequest {
    pub workflow_id: WorkflowId,
    /// Who carries them out (a persistent action is handed once to each executor).
    pub executor: String,
    pub can: ActionCapabilities,
    /// What the executor did and saw about allocations since it last asked.
    #[serde(default)]
    pub allocations: Vec<crate::alloc::AllocationUpdate>,
    /// The executor keeps the workflow's allocations in line with its work (`torc submit
    /// --watch`, a server executing actions): it is also handed re-requests for schedulers whose
    /// ready work has no live allocation, and orders to cancel allocations that are not needed.
    #[serde(default)]
    pub elastic: bool,
}

/// A triggered action handed to an executor, with what it needs to carry it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedAction {
    /// The action's record, local to the workflow.
    pub record: u32,
    /// Index into the workflow's actions.
    pub action_index: u32,
    pub run_id: u32,
    pub trigger: crate::model::Trigger,
    pub kind: crate::model::ActionKind,
    pub jobs: Vec<JobId>,
    /// For `schedule_nodes` of a Slurm scheduler: its definition, the workflow's
    /// `slurm_defaults` and how long its runners wait for new jobs, so that the executor needs
    /// nothing else to write the batch script.
    #[serde(default)]
    pub scheduler: Option<crate::model::SlurmScheduler>,
    #[serde(default)]
    pub slurm_defaults: BTreeMap<String, String>,
    #[serde(default)]
    pub wait_for_new_jobs_seconds: u32,
    /// The workflow's `execution_config.sigkill_headroom_seconds`: its allocations' runners stop
    /// claiming, and stop what still runs, this long before the allocation's end.
    #[serde(default = "default_headroom")]
    pub sigkill_headroom_seconds: u32,
    /// `execution_config.mode: slurm`: its runners run each job as a Slurm step (`srun`).
    #[serde(default)]
    pub srun_jobs: bool,
}

fn default_headroom() -> u32 {
    60
}

/// The answer to an [`ActionClaimRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionClaimResponse {
    pub actions: Vec<ClaimedAction>,
    pub workflow_state: WorkflowState,
    /// For an elastic executor: allocations to cancel.
    #[serde(default)]
    pub orders: crate::alloc::AllocationOrders,
    /// For an elastic executor: the workflow's live allocations, whose state it keeps up to date
    /// from the batch system's queue.
    #[serde(default)]
    pub allocations: Vec<crate::alloc::Allocation>,
}
