//! Running jobs: starting them, their exits, recovery scripts, and their completion records.

use super::{key_of, BoxFut, EventLoop, JobKey, MAX_PREFETCH_WINDOWS, PREFETCH_BELOW};
use crate::config::Capacity;
use crate::monitor::Usage;
use crate::process::{self, signal_group, RC_RUNNER_ERROR};
use std::io;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::Instant;
use torc_core::api::{ClaimedJob, CompletionReport, Coordinator, StartReport};
use torc_core::{Timestamp, WorkflowId};
use tracing::{debug, error, info, warn};

/// What a running job is doing.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// The job's own command runs.
    Job,
    /// The command exited with `job_rc`; the failure handler's recovery script runs.
    Recovery {
        job_rc: i32,
        end_time: Timestamp,
        usage: Usage,
    },
}

pub(super) struct Running {
    pub(super) job: ClaimedJob,
    /// The process group of what runs now (the job, then its recovery script).
    pub(super) pgid: i32,
    pub(super) phase: Phase,
    pub(super) start_time: Timestamp,
    /// When the job's `timeout` runs out.
    pub(super) deadline: Option<Instant>,
    /// When a SIGTERM'ed group gets SIGKILL.
    pub(super) kill_at: Option<Instant>,
    /// The runner stopped it (timeout, shutdown, cancellation).
    pub(super) terminated: bool,
    /// It ran past its `timeout`: recorded with its `timeout_exit_code`.
    pub(super) timed_out: bool,
    /// The runner's GPUs (indexes into its device list) given to it.
    pub(super) gpus: Vec<usize>,
    /// The coordinator took it back (this runner's lease had lapsed): not to be reported.
    pub(super) revoked: bool,
}

impl Running {
    /// Stops the job: SIGTERM and a grace period if it supports termination, else SIGKILL.
    pub(super) fn terminate(&mut self, now: Instant, grace: Duration, hard: bool) {
        let first = !self.terminated;
        self.terminated = true;
        let gentle = self.job.supports_termination && matches!(self.phase, Phase::Job);
        if hard || !gentle {
            signal_group(self.pgid, libc::SIGKILL);
            self.kill_at = None;
        } else if first {
            signal_group(self.pgid, libc::SIGTERM);
            self.kill_at = Some(now + grace);
        }
    }
}

pub(super) struct Exit {
    pub(super) key: JobKey,
    pub(super) attempt_id: u32,
    pub(super) recovery: bool,
    pub(super) status: io::Result<ExitStatus>,
}

pub(super) fn wait_for(
    mut child: Child,
    key: JobKey,
    attempt_id: u32,
    recovery: bool,
) -> BoxFut<Exit> {
    Box::pin(async move {
        let status = child.wait().await;
        Exit {
            key,
            attempt_id,
            recovery,
            status,
        }
    })
}

pub(super) fn pgid_of(child: &Child) -> i32 {
    child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0)
}

impl<C: Coordinator> EventLoop<C> {
    /// How many capacities' worth of jobs to hold (running and queued): 1 means no prefetch.
    /// Prefetching is only for short jobs; the window covers one claim round trip at the rate
    /// jobs finish.
    pub(super) fn windows(&self) -> u32 {
        match self.mean_runtime {
            Some(runtime) if runtime < PREFETCH_BELOW => {
                let latency = self.claim_latency.unwrap_or_default().as_secs_f64();
                let per_job = runtime.as_secs_f64().max(1e-4);
                let ahead = (latency / per_job)
                    .ceil()
                    .clamp(1.0, f64::from(MAX_PREFETCH_WINDOWS));
                (1 + ahead as u32).min(MAX_PREFETCH_WINDOWS)
            }
            _ => 1,
        }
    }

    /// Starts queued jobs, in claim order, that fit in what the running jobs leave free.
    pub(super) fn start_queued(&mut self) {
        if self.queued.is_empty() || self.stopping.is_some() {
            return;
        }
        if let Capacity::MaxParallelJobs(n) = self.cfg.capacity {
            let n = (n as usize).saturating_sub(self.running.len());
            for _ in 0..n.min(self.queued.len()) {
                let job = self.queued.pop_front().expect("counted above");
                self.start_job(job);
            }
            return;
        }
        let running = self.running.values().map(|r| &r.job);
        let Some(mut free) = self.free_resources(1, running) else {
            return;
        };
        let mut i = 0;
        while i < self.queued.len() {
            let need = self.queued[i].resources;
            if need.num_cpus <= free.num_cpus
                && need.memory_bytes <= free.memory_bytes
                && need.num_gpus <= free.num_gpus
            {
                free.num_cpus -= need.num_cpus;
                free.memory_bytes -= need.memory_bytes;
                free.num_gpus -= need.num_gpus;
                let job = self.queued.remove(i).expect("index checked");
                self.start_job(job);
            } else {
                i += 1;
            }
        }
    }

    /// GPUs for a job that needs `n`: the lowest of this runner's devices that no running job
    /// holds, as indexes, and the `CUDA_VISIBLE_DEVICES` value naming them. `None` when the
    /// runner does not count GPUs (count-based capacity, or none offered).
    fn assign_gpus(&self, n: u32) -> Option<(Vec<usize>, String)> {
        let Capacity::Resources { num_gpus, .. } = self.cfg.capacity else {
            return None;
        };
        if num_gpus == 0 {
            return None;
        }
        // The devices this runner was given (an allocation's, or the machine's), by name.
        let names: Vec<String> = match std::env::var("CUDA_VISIBLE_DEVICES") {
            Ok(v) if !v.trim().is_empty() => v.split(',').map(|d| d.trim().to_string()).collect(),
            _ => (0..num_gpus).map(|i| i.to_string()).collect(),
        };
        let held: std::collections::HashSet<usize> = self
            .running
            .values()
            .flat_map(|r| r.gpus.iter().copied())
            .collect();
        let mine: Vec<usize> = (0..names.len().min(num_gpus as usize))
            .filter(|i| !held.contains(i))
            .take(n as usize)
            .collect();
        let value = mine
            .iter()
            .map(|&i| names[i].as_str())
            .collect::<Vec<_>>()
            .join(",");
        Some((mine, value))
    }

    pub(super) fn start_job(&mut self, mut job: ClaimedJob) {
        let start_time = process::now_timestamp();
        let gpus = match self.assign_gpus(job.resources.num_gpus) {
            Some((gpus, value)) => {
                job.env.insert("CUDA_VISIBLE_DEVICES".into(), value);
                gpus
            }
            None => Vec::new(),
        };
        if self.running.contains_key(&key_of(&job)) {
            error!(
                job = job.job_id.0,
                "claimed a job that is already running here"
            );
            self.abandon(job);
            return;
        }
        self.push_start(&job, start_time);
        match process::spawn_job(&job, &self.ctx) {
            Ok(child) => {
                let pgid = pgid_of(&child);
                let now = Instant::now();
                self.monitor.track(pgid);
                self.samples.track(pgid, &job);
                self.exits
                    .push(wait_for(child, key_of(&job), job.attempt_id, false));
                debug!(job = job.job_id.0, name = %job.name, attempt = job.attempt_id, pgid, "job started");
                self.running.insert(
                    key_of(&job),
                    Running {
                        // Its timeout, or the end of the allocation (less its headroom),
                        // whichever comes first: either way it is stopped for time.
                        deadline: match (
                            job.timeout.map(|t| now + t),
                            self.cfg.time_left.map(|t| self.started + t),
                        ) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        },
                        job,
                        pgid,
                        phase: Phase::Job,
                        start_time,
                        kill_at: None,
                        terminated: false,
                        timed_out: false,
                        gpus,
                        revoked: false,
                    },
                );
                self.idle_since = None;
            }
            Err(e) => {
                error!(job = job.job_id.0, name = %job.name, error = %e, "cannot start job");
                self.counts.failed += 1;
                self.completions.push(completion(
                    &job,
                    RC_RUNNER_ERROR,
                    false,
                    false,
                    start_time,
                    process::now_timestamp(),
                    Usage::default(),
                ));
            }
        }
    }

    /// A job handed over while stopping: never run, reported terminated.
    pub(super) fn abandon(&mut self, job: ClaimedJob) {
        let now = process::now_timestamp();
        warn!(job = job.job_id.0, name = %job.name, "claimed while stopping: reporting it terminated");
        self.push_start(&job, now);
        self.counts.terminated += 1;
        self.completions.push(completion(
            &job,
            -libc::SIGTERM,
            true,
            false,
            now,
            now,
            Usage::default(),
        ));
    }

    pub(super) fn push_start(&mut self, job: &ClaimedJob, start_time: Timestamp) {
        self.starts.push((
            job.workflow_id,
            StartReport {
                job_id: job.job_id,
                attempt_id: job.attempt_id,
                start_time,
            },
        ));
        self.first_start_at.get_or_insert_with(Instant::now);
    }

    pub(super) fn on_exit(&mut self, exit: Exit) {
        let Some(r) = self.running.get_mut(&exit.key) else {
            warn!(
                job = exit.key.1 .0,
                "exit of a job that is not running here"
            );
            return;
        };
        if r.job.attempt_id != exit.attempt_id
            || matches!(r.phase, Phase::Recovery { .. }) != exit.recovery
        {
            warn!(job = exit.key.1 .0, "exit of a stale process ignored");
            return;
        }
        let rc = match exit.status {
            Ok(status) => process::return_code(status),
            Err(e) => {
                error!(job = exit.key.1 .0, error = %e, "cannot wait for a job's process");
                RC_RUNNER_ERROR
            }
        };
        if r.terminated {
            // Whatever the group leader left behind goes too.
            signal_group(r.pgid, libc::SIGKILL);
        }
        let end_time = process::now_timestamp();
        match r.phase {
            Phase::Job => {
                let usage = self.monitor.untrack(r.pgid);
                self.samples.untrack(r.pgid);
                let recovery = if !r.terminated && rc != 0 && self.stopping.is_none() {
                    process::recovery_script_for(&r.job, rc)
                } else {
                    None
                };
                if let Some(script) = recovery {
                    info!(job = exit.key.1 .0, name = %r.job.name, rc, "running the recovery script");
                    match process::spawn_recovery(script, &r.job, &self.ctx) {
                        Ok(child) => {
                            r.pgid = pgid_of(&child);
                            r.phase = Phase::Recovery {
                                job_rc: rc,
                                end_time,
                                usage,
                            };
                            r.kill_at = None;
                            self.exits
                                .push(wait_for(child, exit.key, exit.attempt_id, true));
                        }
                        Err(e) => {
                            warn!(job = exit.key.1 .0, error = %e, "cannot start the recovery script");
                            self.finish(exit.key, rc, end_time, usage, true);
                        }
                    }
                    return;
                }
                self.finish(exit.key, rc, end_time, usage, false);
            }
            Phase::Recovery {
                job_rc,
                end_time,
                usage,
            } => {
                let failed = rc != 0 || r.terminated;
                if failed {
                    warn!(job = exit.key.1 .0, rc, "the recovery script failed");
                }
                self.finish(exit.key, job_rc, end_time, usage, failed);
            }
        }
    }

    pub(super) fn finish(
        &mut self,
        key: JobKey,
        rc: i32,
        end_time: Timestamp,
        usage: Usage,
        recovery_failed: bool,
    ) {
        let Some(r) = self.running.remove(&key) else {
            return;
        };
        if self.running.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        if r.revoked {
            debug!(job = key.1 .0, "revoked job ended; not reported");
            self.counts.revoked += 1;
            return;
        }
        let rc = if r.timed_out {
            r.job.timeout_exit_code
        } else {
            rc
        };
        if rc == 0 && !r.terminated && !recovery_failed && r.job.stdio.delete_on_success {
            for f in process::output_files(&self.ctx.stdio_dir, &r.job).files() {
                if let Err(e) = std::fs::remove_file(f) {
                    debug!(file = %f.display(), error = %e, "cannot remove a completed job's output");
                }
            }
        }
        if r.terminated {
            self.counts.terminated += 1;
        } else if rc == 0 {
            self.counts.completed += 1;
        } else {
            self.counts.failed += 1;
        }
        debug!(job = key.1 .0, rc, terminated = r.terminated, "job ended");
        let wall = Duration::from_millis(end_time.0.saturating_sub(r.start_time.0).max(0) as u64);
        self.mean_runtime = Some(match self.mean_runtime {
            Some(mean) => mean.mul_f64(0.8) + wall.mul_f64(0.2),
            None => wall,
        });
        self.completions.push(completion(
            &r.job,
            rc,
            r.terminated,
            recovery_failed,
            r.start_time,
            end_time,
            usage,
        ));
    }
}

pub(super) fn completion(
    job: &ClaimedJob,
    return_code: i32,
    terminated: bool,
    recovery_failed: bool,
    start_time: Timestamp,
    end_time: Timestamp,
    usage: Usage,
) -> (WorkflowId, CompletionReport) {
    let report = CompletionReport {
        job_id: job.job_id,
        run_id: job.run_id,
        attempt_id: job.attempt_id,
        return_code,
        terminated,
        recovery_failed,
        start_time,
        end_time,
        peak_memory_bytes: usage.peak_memory_bytes,
        avg_memory_bytes: usage.avg_memory_bytes,
        peak_cpu_percent: usage.peak_cpu_percent,
        avg_cpu_percent: usage.avg_cpu_percent,
    };
    (job.workflow_id, report)
}
