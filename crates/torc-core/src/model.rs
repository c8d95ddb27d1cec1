//! The expanded workflow model: what a spec becomes after parsing, parameter expansion and
//! dependency resolution. Every reference is resolved to an index; nothing here is textual.
//! Workflow-level settings (execution, Slurm, actions, monitoring) are in [`config`].

pub mod config;

pub use config::{
    ActionDef, ActionKind, ComputeNodeConfig, ComputeNodeMonitorConfig, ExecutionConfig,
    ExecutionMode, JobMonitorConfig, MonitorGranularity, ResourceMonitorConfig, SchedulerType,
    SlurmScheduler, StdioConfig, StdioMode, Trigger, DEFAULT_TIMEOUT_EXIT_CODE,
};

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A job's state, with the numeric codes of the public Torc format (stored and sent as codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum JobStatus {
    Uninitialized = 0,
    Blocked = 1,
    Ready = 2,
    Pending = 3,
    Running = 4,
    Completed = 5,
    Failed = 6,
    Canceled = 7,
    Terminated = 8,
    Disabled = 9,
    PendingFailed = 10,
}

impl JobStatus {
    pub const ALL: [JobStatus; 11] = [
        JobStatus::Uninitialized,
        JobStatus::Blocked,
        JobStatus::Ready,
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Canceled,
        JobStatus::Terminated,
        JobStatus::Disabled,
        JobStatus::PendingFailed,
    ];

    pub fn code(self) -> i16 {
        self as u8 as i16
    }

    pub fn from_code(code: i16) -> Option<JobStatus> {
        usize::try_from(code)
            .ok()
            .and_then(|i| JobStatus::ALL.get(i).copied())
    }

    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Uninitialized => "uninitialized",
            JobStatus::Blocked => "blocked",
            JobStatus::Ready => "ready",
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Terminated => "terminated",
            JobStatus::Disabled => "disabled",
            JobStatus::PendingFailed => "pending_failed",
        }
    }

    pub fn from_name(name: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.name() == name)
    }

    /// A dependency in this state no longer holds its dependents back.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed
                | JobStatus::Failed
                | JobStatus::Canceled
                | JobStatus::Terminated
                | JobStatus::Disabled
        )
    }

    /// A finished dependency in this state cancels dependents that ask for it.
    pub fn is_blocking_failure(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::Canceled | JobStatus::Terminated
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Resources that a job needs or that a runner offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub num_gpus: u32,
    pub num_nodes: u32,
    /// Expected runtime (for a job) or time left in the allocation (for a runner).
    #[serde(with = "duration_secs")]
    pub runtime: Duration,
}

impl Resources {
    /// What a job without `resource_requirements` needs: 1 CPU, 1 MiB, no GPU, 1 node, 1 minute.
    pub const DEFAULT_JOB: Resources = Resources {
        num_cpus: 1,
        memory_bytes: 1 << 20,
        num_gpus: 0,
        num_nodes: 1,
        runtime: Duration::from_secs(60),
    };
}

/// A named resource requirement from the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequirement {
    pub name: String,
    pub resources: Resources,
}

/// How a runner's claim orders the jobs that fit (after priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortMethod {
    /// Most GPUs first, then longest runtime, then most memory.
    #[default]
    GpusRuntimeMemory,
    /// Most GPUs first, then most memory, then longest runtime.
    GpusMemoryRuntime,
    /// No resource ordering: requirement classes in spec order.
    None,
}

impl SortMethod {
    pub fn name(self) -> &'static str {
        match self {
            SortMethod::GpusRuntimeMemory => "gpus_runtime_memory",
            SortMethod::GpusMemoryRuntime => "gpus_memory_runtime",
            SortMethod::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<SortMethod> {
        [
            SortMethod::GpusRuntimeMemory,
            SortMethod::GpusMemoryRuntime,
            SortMethod::None,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// One rule of a failure handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRule {
    pub exit_codes: Vec<i32>,
    pub match_all_exit_codes: bool,
    pub recovery_script: Option<String>,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

/// A named set of retry rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureHandler {
    pub name: String,
    pub rules: Vec<FailureRule>,
}

impl FailureHandler {
    /// The rule that applies to `exit_code`: the first listing it, else the first catch-all.
    pub fn rule_for(&self, exit_code: i32) -> Option<&FailureRule> {
        self.rules
            .iter()
            .find(|r| r.exit_codes.contains(&exit_code))
            .or_else(|| self.rules.iter().find(|r| r.match_all_exit_codes))
    }
}

/// A file known to the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDef {
    pub name: String,
    pub path: String,
    /// A stable identifier for provenance records (a DOI, a URN), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// The modification time the spec gives (seconds since the epoch), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub st_mtime: Option<f64>,
}

impl FileDef {
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> FileDef {
        FileDef {
            name: name.into(),
            path: path.into(),
            identifier: None,
            st_mtime: None,
        }
    }
}

/// A piece of user data known to the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDataDef {
    pub name: String,
    /// `None`: no data yet; `Some(Null)`: an explicit `null` (absent and `null` in JSON).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "present_value"
    )]
    pub data: Option<serde_json::Value>,
    pub is_ephemeral: bool,
}

/// A value that may be missing, where a present `null` is a value (serde reads `null` into
/// `None` otherwise).
mod present_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<serde_json::Value>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(d).map(Some)
    }
}

/// A job after expansion, with every reference resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDef {
    pub name: String,
    /// The command with `${files.*}` and `${user_data.*}` placeholders substituted.
    pub command: String,
    pub invocation_script: Option<String>,
    /// Index into [`WorkflowDef::resource_requirements`]; `None` means [`Resources::DEFAULT_JOB`].
    pub resource_requirement: Option<u32>,
    /// Every job this one waits for (explicit, by regex, and through files and user data),
    /// sorted and without duplicates.
    pub depends_on: Vec<JobId>,
    /// Indexes into [`WorkflowDef::files`].
    pub input_files: Vec<u32>,
    pub output_files: Vec<u32>,
    /// Indexes into [`WorkflowDef::user_data`].
    pub input_user_data: Vec<u32>,
    pub output_user_data: Vec<u32>,
    pub cancel_on_blocking_job_failure: bool,
    pub supports_termination: bool,
    /// Index into [`WorkflowDef::failure_handlers`].
    pub failure_handler: Option<u32>,
    /// Higher runs first.
    pub priority: i64,
    /// Labels a runner must all offer (`tags` and Torc's `labels`, merged).
    pub tags: Vec<String>,
    /// The workflow's `env` with the job's own over it.
    pub env: BTreeMap<String, String>,
    #[serde(with = "opt_duration_secs")]
    pub timeout: Option<Duration>,
    pub scheduler: Option<String>,
    /// The job's own `stdio`; `None`: [`ExecutionConfig::stdio`] applies.
    #[serde(default)]
    pub stdio: Option<StdioConfig>,
}

impl JobDef {
    /// A job with defaults for everything but its name and command (handy in tests and builders).
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> JobDef {
        JobDef {
            name: name.into(),
            command: command.into(),
            invocation_script: None,
            resource_requirement: None,
            depends_on: Vec::new(),
            input_files: Vec::new(),
            output_files: Vec::new(),
            input_user_data: Vec::new(),
            output_user_data: Vec::new(),
            cancel_on_blocking_job_failure: true,
            supports_termination: false,
            failure_handler: None,
            priority: 0,
            tags: Vec::new(),
            env: BTreeMap::new(),
            timeout: None,
            scheduler: None,
            stdio: None,
        }
    }

    /// How this job's output is captured: its own `stdio`, else the workflow's.
    pub fn stdio_in<'a>(&'a self, workflow: &'a WorkflowDef) -> &'a StdioConfig {
        self.stdio.as_ref().unwrap_or(&workflow.execution.stdio)
    }
}

/// A workflow after expansion: what the scheduler runs and the store persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkflowDef {
    pub name: String,
    pub description: Option<String>,
    pub user: Option<String>,
    pub project: Option<String>,
    pub metadata: Option<String>,
    pub jobs_sort_method: SortMethod,
    pub resource_requirements: Vec<ResourceRequirement>,
    pub failure_handlers: Vec<FailureHandler>,
    pub files: Vec<FileDef>,
    pub user_data: Vec<UserDataDef>,
    /// Jobs in expansion order; the job at index `i` has id `JobId::from_index(i)`.
    pub jobs: Vec<JobDef>,
    /// At most this many of its jobs pending or running at once; `None`: no cap.
    #[serde(default)]
    pub max_concurrent_jobs: Option<u32>,
    /// `execution_config`, with SPEC.md's defaults for what it leaves out.
    #[serde(default)]
    pub execution: ExecutionConfig,
    /// `resource_monitor`; `None` when the spec has none (nothing is monitored).
    #[serde(default)]
    pub resource_monitor: Option<ResourceMonitorConfig>,
    #[serde(default)]
    pub slurm_schedulers: Vec<SlurmScheduler>,
    /// Extra `sbatch` long options (without `--`) for every scheduler.
    #[serde(default)]
    pub slurm_defaults: BTreeMap<String, String>,
    #[serde(default)]
    pub actions: Vec<ActionDef>,
    /// `compute_node_wait_for_new_jobs_seconds` and `compute_node_expiration_buffer_seconds`.
    #[serde(default)]
    pub compute_node: ComputeNodeConfig,
}

impl WorkflowDef {
    /// The resources that job `job` needs.
    pub fn resources_of(&self, job: &JobDef) -> Resources {
        job.resource_requirement
            .and_then(|i| self.resource_requirements.get(i as usize))
            .map(|r| r.resources)
            .unwrap_or(Resources::DEFAULT_JOB)
    }

    pub fn job(&self, id: JobId) -> Option<&JobDef> {
        self.jobs.get(id.index())
    }

    /// The time-series sampling `resource_monitor` asks runners for: of jobs and of nodes whose
    /// monitor is enabled with `granularity: time_series`; `None` when neither is.
    pub fn time_series(&self) -> Option<crate::api::TimeSeries> {
        use config::MonitorGranularity::TimeSeries;
        let m = self.resource_monitor?;
        let jobs = m.jobs.enabled && m.jobs.granularity == TimeSeries;
        let node = m.compute_node.enabled && m.compute_node.granularity == TimeSeries;
        (jobs || node).then_some(crate::api::TimeSeries {
            interval_seconds: m.sample_interval_seconds.max(1),
            jobs,
            node,
        })
    }
}

/// Serialises a `Duration` as (fractional) seconds.
pub mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Serialises an `Option<Duration>` as (fractional) seconds or null.
pub mod opt_duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}
