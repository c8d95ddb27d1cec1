//! What a runner is told before it starts: which workflow, how much it may run at once, where
//! job output goes, and how patient it is.

use crate::resources::DetectedResources;
use std::path::PathBuf;
use std::time::Duration;
use torc_core::api::RunnerTags;
use torc_core::{RunnerId, WorkflowId};

/// How much a runner may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Resource-based: claims send the free resources (total minus what running jobs need) and
    /// the coordinator hands out only jobs that fit.
    Resources {
        num_cpus: u32,
        memory_bytes: u64,
        num_gpus: u32,
    },
    /// Count-based: at most this many jobs at once, whatever they need.
    MaxParallelJobs(u32),
}

impl Capacity {
    /// A resource-based capacity covering everything that was detected on this machine.
    pub fn from_detected(detected: DetectedResources) -> Capacity {
        Capacity::Resources {
            num_cpus: detected.num_cpus,
            memory_bytes: detected.memory_bytes,
            num_gpus: detected.num_gpus,
        }
    }

    /// True when this capacity can never run a job.
    pub fn is_zero(&self) -> bool {
        match *self {
            Capacity::Resources { num_cpus, .. } => num_cpus == 0,
            Capacity::MaxParallelJobs(n) => n == 0,
        }
    }
}

/// Everything [`crate::run`] needs besides the coordinator and the shutdown handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    pub workflow_id: WorkflowId,
    pub runner_id: RunnerId,
    pub capacity: Capacity,
    /// Job output goes to `<output_dir>/job_stdio/`; jobs see it as `TORC_OUTPUT_DIR`.
    pub output_dir: PathBuf,
    /// Given to jobs as `TORC_API_URL` when set.
    pub api_url: Option<String>,
    /// How long one claim may wait for work when nothing fits now (the long poll).
    pub claim_wait: Duration,
    /// Exit once nothing has run and nothing was claimable for this long. `None`: wait until
    /// the workflow is done.
    pub idle_timeout: Option<Duration>,
    /// Time between the termination signal and SIGKILL for jobs that support termination, at
    /// a shutdown or a timeout. `None`: each workflow's `sigterm_lead_seconds`.
    pub grace_period: Option<Duration>,
    /// Time left in the runner's allocation, counted from the start of [`crate::run`]; sent
    /// with resource-based claims. `None`: unbounded.
    pub time_left: Option<Duration>,
    /// Run each job as a step of the Slurm allocation the runner is in (`srun` with the job's
    /// CPUs, memory and GPUs; `execution_config.mode: slurm`).
    pub srun_jobs: bool,
    /// How often running jobs' memory and CPU are sampled; `None` disables the sampler.
    /// How often running jobs' memory and CPU are sampled; `None` disables the sampler (except
    /// for the memory limits it enforces when cgroups cannot, see `cgroup_limits`).
    pub sample_interval: Option<Duration>,
    /// Enforce jobs' memory limits with a cgroup v2 per job where the runner may create them
    /// (the kernel kills at the limit); otherwise, or when false, the sampler kills a job whose
    /// sampled memory passes its limit.
    pub cgroup_limits: bool,
    /// Spread the start of this runner's first jobs (those of workflows with
    /// `staggered_start`) over this window: they wait a delay within it that depends on the
    /// runner's id (see [`crate::stagger_delay`]), so that runners starting together on many
    /// nodes do not start their jobs at the same instant. `None`: no delay (a lone runner).
    pub stagger_window: Option<Duration>,
    /// How often the runner renews its lease (shortened to a third of the coordinator's lease
    /// when that is shorter); each heartbeat may wait at the coordinator this long, so that a
    /// cancel reaches the runner at once. `None`: no heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// A shared runner: it claims jobs of every workflow the coordinator lets it serve, picked
    /// fairly, and runs until stopped (or idle past `idle_timeout`); `workflow_id` is unused.
    pub shared: bool,
    /// After this many jobs in a row could not start for this machine's reasons (output
    /// directory not writable, disk full, no shell, process limits), stop claiming, let running
    /// jobs finish and end with an error, rather than fail every job handed out. 0: never.
    pub max_local_failures: u32,
    /// The tags this runner offers. A shared runner always filters by them (none given: only
    /// untagged jobs); a runner dedicated to one workflow takes every job when `None`.
    pub tags: Option<RunnerTags>,
}

/// How long a runner whose id is `runner_id` waits before starting its first jobs, within a
/// stagger `window`: a fixed fraction of it derived from the id (FNV-1a), so that runners with
/// different ids (host names) spread over the window, and the same runner always waits the
/// same time.
pub fn stagger_delay(runner_id: &RunnerId, window: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in runner_id.0.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    match window_ms {
        0 => Duration::ZERO,
        w => Duration::from_millis(hash % w),
    }
}

impl RunnerConfig {
    pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(2);
    pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_LOCAL_FAILURES: u32 = 5;

    /// A configuration with the defaults: 2 s long polls, no idle timeout, the workflows' own
    /// grace periods, no allocation limit, one resource sample a second, a heartbeat every
    /// 10 s, cgroup memory limits where possible, no staggering.
    pub fn new(
        workflow_id: WorkflowId,
        runner_id: RunnerId,
        capacity: Capacity,
        output_dir: impl Into<PathBuf>,
    ) -> RunnerConfig {
        RunnerConfig {
            workflow_id,
            runner_id,
            capacity,
            output_dir: output_dir.into(),
            api_url: None,
            claim_wait: Self::DEFAULT_CLAIM_WAIT,
            idle_timeout: None,
            grace_period: None,
            time_left: None,
            srun_jobs: false,
            sample_interval: Some(Self::DEFAULT_SAMPLE_INTERVAL),
            cgroup_limits: true,
            stagger_window: None,
            heartbeat_interval: Some(Self::DEFAULT_HEARTBEAT_INTERVAL),
            shared: false,
            tags: None,
            max_local_failures: Self::DEFAULT_MAX_LOCAL_FAILURES,
        }
    }

    /// The directory that holds the jobs' `.o` and `.e` files.
    pub fn stdio_dir(&self) -> PathBuf {
        self.output_dir.join("job_stdio")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_zero_capacity() {
        let cfg = RunnerConfig::new(
            WorkflowId(1),
            RunnerId("r".into()),
            Capacity::MaxParallelJobs(4),
            "/tmp/out",
        );
        assert_eq!(cfg.claim_wait, Duration::from_secs(2));
        assert_eq!(cfg.grace_period, None);
        assert!(cfg.cgroup_limits);
        assert_eq!(cfg.stagger_window, None);
        assert_eq!(cfg.idle_timeout, None);
        assert_eq!(cfg.stdio_dir(), PathBuf::from("/tmp/out/job_stdio"));
        assert!(!cfg.capacity.is_zero());
        assert!(Capacity::MaxParallelJobs(0).is_zero());
        let detected = DetectedResources {
            num_cpus: 0,
            memory_bytes: 1,
            num_gpus: 0,
        };
        assert!(Capacity::from_detected(detected).is_zero());
    }

    #[test]
    fn stagger_delays_spread_within_the_window() {
        let window = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..20)
            .map(|i| stagger_delay(&RunnerId(format!("node{i}:1234")), window))
            .collect();
        assert!(delays.iter().all(|d| *d < window));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 10, "{delays:?}");
        let id = RunnerId("node3:1".into());
        assert_eq!(stagger_delay(&id, window), stagger_delay(&id, window));
        assert_eq!(stagger_delay(&id, Duration::ZERO), Duration::ZERO);
    }
}
