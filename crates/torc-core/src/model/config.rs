//! Workflow-level settings from the spec: how jobs run and stop ([`ExecutionConfig`]), what is
//! monitored ([`ResourceMonitorConfig`]), the Slurm allocations ([`SlurmScheduler`]) and the
//! actions that request them ([`ActionDef`]), and the runners' waiting rules
//! ([`ComputeNodeConfig`]). Every default here is the one SPEC.md states, so a workflow stored
//! before these settings existed reads back with them.

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a job's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// The runner starts the job and enforces its limits itself.
    #[default]
    Direct,
    /// Each job runs inside `srun`; Slurm enforces the limits.
    Slurm,
    /// `Slurm` inside a Slurm allocation (`SLURM_JOB_ID` set), else `Direct`.
    Auto,
}

impl ExecutionMode {
    pub const ALL: [ExecutionMode; 3] = [
        ExecutionMode::Direct,
        ExecutionMode::Slurm,
        ExecutionMode::Auto,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExecutionMode::Direct => "direct",
            ExecutionMode::Slurm => "slurm",
            ExecutionMode::Auto => "auto",
        }
    }

    pub fn from_name(name: &str) -> Option<ExecutionMode> {
        ExecutionMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Which of a job's output streams are kept, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioMode {
    /// `<stem>.o` and `<stem>.e`.
    #[default]
    Separate,
    /// Both streams into one `<stem>.log`.
    Combined,
    /// Standard output discarded; standard error kept in `<stem>.e`.
    NoStdout,
    /// Standard error discarded; standard output kept in `<stem>.o`.
    NoStderr,
    /// Both discarded.
    None,
}

impl StdioMode {
    pub const ALL: [StdioMode; 5] = [
        StdioMode::Separate,
        StdioMode::Combined,
        StdioMode::NoStdout,
        StdioMode::NoStderr,
        StdioMode::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StdioMode::Separate => "separate",
            StdioMode::Combined => "combined",
            StdioMode::NoStdout => "no_stdout",
            StdioMode::NoStderr => "no_stderr",
            StdioMode::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<StdioMode> {
        StdioMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How a job's standard output and error are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StdioConfig {
    pub mode: StdioMode,
    /// Remove the captured files of a job that completed (exit code 0).
    #[serde(default)]
    pub delete_on_success: bool,
}

/// `execution_config`: how jobs run and how they are stopped.
///
/// The runner reads it as follows. In direct mode it kills a job that exceeds the memory of its
/// named resource requirement (when `limit_resources`) and records `oom_exit_code`. At an
/// allocation's end or a shutdown it sends `termination_signal` `sigterm_lead_seconds` before
/// SIGKILL, which comes `sigkill_headroom_seconds` before the end; jobs killed for time are
/// recorded with `timeout_exit_code`. In slurm mode `srun --time` is shortened by
/// `sigkill_headroom_seconds` and the `srun_*` / `enable_cpu_bind` settings go to `srun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutionConfig {
    pub mode: ExecutionMode,
    pub limit_resources: bool,
    pub termination_signal: String,
    pub sigterm_lead_seconds: u32,
    pub sigkill_headroom_seconds: u32,
    pub timeout_exit_code: i32,
    pub oom_exit_code: i32,
    /// The workflow's default; a job's own `stdio` ([`super::JobDef::stdio`]) wins.
    pub stdio: StdioConfig,
    pub staggered_start: bool,
    /// `srun --signal=<value>` (e.g. `TERM@120`).
    pub srun_termination_signal: Option<String>,
    /// Let Slurm bind CPUs (else `srun --cpu-bind=none`).
    pub enable_cpu_bind: bool,
    /// `srun --mpi=<value>`, also for the outer `srun` that starts one runner per node.
    pub srun_mpi: Option<String>,
}

impl ExecutionConfig {
    /// The number of [`Self::termination_signal`] (SIGTERM if the name is unknown, which
    /// validation refuses).
    pub fn termination_signal_number(&self) -> i32 {
        signal_number(&self.termination_signal).unwrap_or(SIGTERM)
    }
}

/// SIGTERM's number.
pub const SIGTERM: i32 = 15;

/// Linux's signal numbers by name, as `kill -l` lists them.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", SIGTERM),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The Linux number of a signal named `SIGTERM`, `TERM`, `SIGRTMIN+3` or `RTMAX-1`; `None` for
/// a name that is none of these.
pub fn signal_number(name: &str) -> Option<i32> {
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    let body = name.strip_prefix("SIG").unwrap_or(name);
    if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == body) {
        return Some(*n);
    }
    let offset = |rest: &str| -> Option<i32> {
        match rest {
            "" => Some(0),
            _ => rest
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=RTMAX - RTMIN).contains(n)),
        }
    };
    if let Some(rest) = body.strip_prefix("RTMIN") {
        let rest = rest.strip_prefix('+').unwrap_or(rest);
        return offset(rest).map(|n| RTMIN + n);
    }
    if let Some(rest) = body.strip_prefix("RTMAX") {
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        return offset(rest).map(|n| RTMAX - n);
    }
    None
}

/// The return code recorded for a job stopped for its timeout, unless `execution_config` says
/// otherwise.
pub const DEFAULT_TIMEOUT_EXIT_CODE: i32 = 152;

impl Default for ExecutionConfig {
    fn default() -> ExecutionConfig {
        ExecutionConfig {
            mode: ExecutionMode::Direct,
            limit_resources: true,
            termination_signal: "SIGTERM".to_string(),
            sigterm_lead_seconds: 30,
            sigkill_headroom_seconds: 60,
            timeout_exit_code: DEFAULT_TIMEOUT_EXIT_CODE,
            oom_exit_code: 137,
            stdio: StdioConfig::default(),
            staggered_start: true,
            srun_termination_signal: None,
            enable_cpu_bind: false,
            srun_mpi: None,
        }
    }
}

/// How much detail a monitor keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorGranularity {
    /// Peak and average per job (or per node).
    #[default]
    Summary,
    /// Every sample.
    TimeSeries,
}

/// Monitoring of each job's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobMonitorConfig {
    pub enabled: bool,
    pub granularity: MonitorGranularity,
}

/// Monitoring of the whole node a runner is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeNodeMonitorConfig {
    pub enabled: bool,
    pub granularity: MonitorGranularity,
    pub cpu: bool,
    pub memory: bool,
}

impl Default for ComputeNodeMonitorConfig {
    fn default() -> ComputeNodeMonitorConfig {
        ComputeNodeMonitorConfig {
            enabled: false,
            granularity: MonitorGranularity::Summary,
            cpu: true,
            memory: true,
        }
    }
}

/// `resource_monitor` (the older flat `{enabled, granularity}` form is read into `jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceMonitorConfig {
    pub sample_interval_seconds: u32,
    /// How often buffered time-series samples are written.
    pub flush_interval_seconds: u32,
    pub generate_plots: bool,
    pub jobs: JobMonitorConfig,
    pub compute_node: ComputeNodeMonitorConfig,
}

impl Default for ResourceMonitorConfig {
    fn default() -> ResourceMonitorConfig {
        ResourceMonitorConfig {
            sample_interval_seconds: 10,
            flush_interval_seconds: 300,
            generate_plots: false,
            jobs: JobMonitorConfig::default(),
            compute_node: ComputeNodeMonitorConfig::default(),
        }
    }
}

/// One kind of Slurm allocation (`slurm_schedulers` entry). `sbatch` options are the fields
/// plus [`super::WorkflowDef::slurm_defaults`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmScheduler {
    pub name: String,
    /// The scheduler's own, else `slurm_defaults.account`.
    pub account: String,
    pub partition: Option<String>,
    pub nodes: u32,
    /// As written (`01:00:00`, `2-00:00:00`, `30:00`), for `sbatch --time`.
    pub walltime: String,
    /// The same, parsed.
    #[serde(with = "super::duration_secs")]
    pub walltime_duration: Duration,
    pub mem: Option<String>,
    pub gres: Option<String>,
    pub qos: Option<String>,
    pub ntasks_per_node: Option<u32>,
    pub tmp: Option<String>,
    /// Further `sbatch` arguments, as written.
    pub extra: Option<String>,
    /// At most one allocation of this scheduler at a time.
    pub serialize_allocations: bool,
}

/// When an action fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    OnWorkflowStart,
    OnWorkflowComplete,
    /// When all of [`ActionDef::jobs`] are ready.
    OnJobsReady,
    /// When all of [`ActionDef::jobs`] are finished.
    OnJobsComplete,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::OnWorkflowStart,
        Trigger::OnWorkflowComplete,
        Trigger::OnJobsReady,
        Trigger::OnJobsComplete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Trigger::OnWorkflowStart => "on_workflow_start",
            Trigger::OnWorkflowComplete => "on_workflow_complete",
            Trigger::OnJobsReady => "on_jobs_ready",
            Trigger::OnJobsComplete => "on_jobs_complete",
        }
    }

    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the trigger watches [`ActionDef::jobs`].
    pub fn watches_jobs(self) -> bool {
        matches!(self, Trigger::OnJobsReady | Trigger::OnJobsComplete)
    }
}

/// What kind of runner a `schedule_nodes` action starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    /// `sbatch` allocations of a `slurm_schedulers` entry.
    #[default]
    Slurm,
    /// A runner on the machine that carries out the action.
    Local,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    ScheduleNodes {
        /// A [`SlurmScheduler::name`] (always set for `scheduler_type: slurm`).
        scheduler: Option<String>,
        scheduler_type: SchedulerType,
        num_allocations: u32,
        start_one_worker_per_node: bool,
        max_parallel_jobs: Option<u32>,
    },
    RunCommands {
        commands: Vec<String>,
    },
}

/// One entry of `actions`, with its jobs resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionDef {
    pub trigger: Trigger,
    pub kind: ActionKind,
    /// The jobs named in `jobs` and matched by `job_name_regexes`, sorted, without duplicates.
    pub jobs: Vec<JobId>,
    /// Carried out by every runner that asks, not once.
    pub persistent: bool,
}

/// The `compute_node_*` settings a runner in an allocation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeNodeConfig {
    /// How long a runner with nothing to do waits for new jobs before it exits.
    pub wait_for_new_jobs_seconds: u32,
    /// Stop claiming this long before the allocation ends (`None`: the runner's default).
    pub expiration_buffer_seconds: Option<u32>,
}

impl Default for ComputeNodeConfig {
    fn default() -> ComputeNodeConfig {
        ComputeNodeConfig {
            wait_for_new_jobs_seconds: 90,
            expiration_buffer_seconds: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_resolve_to_linux_numbers() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGUSR1"), Some(10));
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("SIGRTMIN"), Some(34));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(37));
        assert_eq!(signal_number("SIGRTMAX-1"), Some(63));
        assert_eq!(signal_number("SIGRTMIN+31"), None);
        assert_eq!(signal_number("SIGFOO"), None);
        assert_eq!(signal_number("sigterm"), None);
        assert_eq!(signal_number(""), None);
        let c = ExecutionConfig {
            termination_signal: "SIGUSR2".into(),
            ..ExecutionConfig::default()
        };
        assert_eq!(c.termination_signal_number(), 12);
        assert_eq!(
            ExecutionConfig::default().termination_signal_number(),
            SIGTERM
        );
    }
}
