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
    /// Time between SIGTERM and SIGKILL for jobs that support termination.
    pub grace_period: Duration,
    /// Time left in the runner's allocation, counted from the start of [`crate::run`]; sent
    /// with resource-based claims. `None`: unbounded.
    pub time_left: Option<Duration>,
    /// Run each job as a step of the Slurm allocation the runner is in (`srun` with the job's
    /// CPUs, memory and GPUs; `execution_config.mode: slurm`).
    pub srun_jobs: bool,
    /// How often running jobs' memory and CPU are sampled; `None` disables the sampler.
    pub sample_interval: Option<Duration>,
    /// How often the runner renews its lease (shortened to a third of the coordinator's lease
    /// when that is shorter); each heartbeat may wait at the coordinator this long, so that a
    /// cancel reaches the runner at once. `None`: no heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// A shared runner: it claims jobs of every workflow the coordinator lets it serve, picked
    /// fairly, and runs until stopped (or idle past `idle_timeout`); `workflow_id` is unused.
    pub shared: bool,
    /// The tags this runner offers. A shared runner always filters by them (none given: only
    /// untagged jobs); a runner dedicated to one workflow takes every job when `None`.
    pub tags: Option<RunnerTags>,
}

impl RunnerConfig {
    pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(2);
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
    pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

    /// A configuration with the defaults: 2 s long polls, no idle timeout, 10 s grace period,
    /// no allocation limit, one resource sample a second, a heartbeat every 10 s.
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
            grace_period: Self::DEFAULT_GRACE_PERIOD,
            time_left: None,
            srun_jobs: false,
            sample_interval: Some(Self::DEFAULT_SAMPLE_INTERVAL),
            heartbeat_interval: Some(Self::DEFAULT_HEARTBEAT_INTERVAL),
            shared: false,
            tags: None,
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
        assert_eq!(cfg.grace_period, Duration::from_secs(10));
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
}
