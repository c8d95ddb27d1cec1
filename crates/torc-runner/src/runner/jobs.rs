//! Running jobs: starting them, their exits, recovery scripts, and their completion records.

use super::{key_of, BoxFut, EventLoop, JobKey, MAX_PREFETCH_WINDOWS, PREFETCH_BELOW, REFILL_WORK};
use crate::cgroup::{CgroupEnd, JobCgroup};
use crate::config::Capacity;
use crate::monitor::{Usage, LIMIT_CHECK};
use crate::output::Stream;
use crate::process::{self, signal_group, RC_RUNNER_ERROR};
use std::io;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::Instant;
use torc_core::api::{ClaimedJob, CompletionReport, Coordinator, StartReport};
use torc_core::changes::EndReason;
use torc_core::units::{format_duration, format_memory};
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
    /// When a signalled group gets SIGKILL.
    pub(super) kill_at: Option<Instant>,
    /// The runner's allocation ends: when the job gets its termination signal, and when
    /// SIGKILL (see [`crate::Shutdown::end_at`]).
    pub(super) end_signal_at: Option<Instant>,
    pub(super) end_kill_at: Option<Instant>,
    /// The runner stopped it (timeout, allocation end, shutdown, cancellation).
    pub(super) terminated: bool,
    /// Why the runner stopped it (the first reason, when there were several).
    pub(super) cause: Option<EndReason>,
    /// Its cgroup, when the kernel enforces its memory limit.
    pub(super) cgroup: Option<JobCgroup>,
    /// It was killed for its memory: what the result says.
    pub(super) memory_kill: Option<String>,
    /// The runner's GPUs (indexes into its device list) given to it.
    pub(super) gpus: Vec<usize>,
    /// The coordinator took it back (this runner's lease had lapsed): not to be reported.
    pub(super) revoked: bool,
    /// The output streams of what runs now (see [`crate::output`]).
    pub(super) output: Vec<Stream>,
}

impl Running {
    fn gentle(&self) -> bool {
        self.job.supports_termination && matches!(self.phase, Phase::Job)
    }

    /// Stops the job for `cause`: if it supports termination, its termination signal now and
    /// SIGKILL at `kill_at`; else (or with no `kill_at`, or one already past) SIGKILL now.
    pub(super) fn terminate(&mut self, now: Instant, kill_at: Option<Instant>, cause: EndReason) {
        let first = !self.terminated;
        self.terminated = true;
        self.cause.get_or_insert(cause);
        match kill_at.filter(|&t| t > now && self.gentle()) {
            Some(at) if first => {
                signal_group(self.pgid, self.job.limits.termination_signal);
                self.kill_at = Some(at);
            }
            Some(at) => {
                // Signalled already: a nearer kill wins.
                self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
            }
            None => {
                signal_group(self.pgid, libc::SIGKILL);
                self.kill_at = None;
            }
        }
    }

    /// When a stop now would kill the job: after the runner's grace period if it has one,
    /// else after the workflow's `sigterm_lead_seconds`.
    pub(super) fn kill_after(&self, now: Instant, grace: Option<Duration>) -> Instant {
        now + grace.unwrap_or(self.job.limits.sigterm_lead)
    }

    /// The runner's allocation ends at `end`: SIGKILL at `end - sigkill_headroom`, the
    /// termination signal `sigterm_lead` before that for a job that supports termination.
    pub(super) fn set_end(&mut self, now: Instant, end: Instant) {
        let limits = &self.job.limits;
        let kill = end.checked_sub(limits.sigkill_headroom).unwrap_or(now);
        let signal = match self.job.supports_termination {
            true => kill.checked_sub(limits.sigterm_lead).unwrap_or(now),
            false => kill,
        };
        self.end_kill_at = Some(kill);
        self.end_signal_at = Some(signal);
    }

    /// Acts on the job's own deadlines: its timeout, its allocation's end, its SIGKILL.
    pub(super) fn on_timers(&mut self, now: Instant, grace: Option<Duration>) {
        let job_phase = matches!(self.phase, Phase::Job);
        if self.deadline.is_some_and(|d| d <= now) && !self.terminated && job_phase {
            warn!(job = self.job.job_id.0, name = %self.job.name, "job ran past its timeout: terminating");
            let kill = self.kill_after(now, grace);
            self.terminate(now, Some(kill), EndReason::Timeout);
        }
        if self.end_signal_at.is_some_and(|t| t <= now) && !self.terminated {
            warn!(job = self.job.job_id.0, name = %self.job.name, "allocation ending: terminating the job");
            self.end_signal_at = None;
            self.terminate(now, self.end_kill_at, EndReason::AllocationEnd);
        }
        if self.end_kill_at.is_some_and(|t| t <= now) {
            self.end_kill_at = None;
            self.terminate(now, None, EndReason::AllocationEnd);
        }
        if self.kill_at.is_some_and(|t| t <= now) {
            debug!(
                job = self.job.job_id.0,
                "grace period over: killing the job's process group"
            );
            signal_group(self.pgid, libc::SIGKILL);
            self.kill_at = None;
        }
    }

    /// The deadlines [`Self::on_timers`] waits for.
    pub(super) fn deadlines(&self) -> impl Iterator<Item = Instant> {
        let live = !self.terminated;
        let timeout = self
            .deadline
            .filter(|_| live && matches!(self.phase, Phase::Job));
        let end_signal = self.end_signal_at.filter(|_| live);
        [timeout, end_signal, self.end_kill_at, self.kill_at]
            .into_iter()
            .flatten()
    }
}

/// What the result of a job killed for its memory says; `None` when it was not.
fn memory_verdict(job: &ClaimedJob, usage: &Usage, cgroup: Option<CgroupEnd>) -> Option<String> {
    let limit = format_memory(job.limits.memory_bytes.unwrap_or(0));
    if let Some(end) = cgroup.filter(|e| e.oom_killed) {
        let peak = end
            .peak_bytes
            .map_or_else(String::new, |p| format!(", peak {}", format_memory(p)));
        return Some(format!(
            "killed by the kernel for exceeding its memory limit of {limit} \
             (cgroup v2 memory.max{peak})"
        ));
    }
    usage.over_limit.map(|rss| {
        format!(
            "killed for using more memory than its limit: {} sampled, limit {limit} \
             (the runner's /proc sampler, every {} ms)",
            format_memory(rss),
            LIMIT_CHECK.as_millis()
        )
    })
}

/// What the result of a job the runner stopped says.
fn stop_message(job: &ClaimedJob, cause: EndReason) -> String {
    match cause {
        EndReason::Timeout => match job.timeout {
            Some(t) => format!(
                "stopped for running past its timeout of {}",
                format_duration(t)
            ),
            None => "stopped for running past its timeout".into(),
        },
        EndReason::AllocationEnd => "stopped at its allocation's end".into(),
        EndReason::Shutdown => "stopped by the runner's shutdown".into(),
        EndReason::Canceled => "stopped because its workflow was canceled".into(),
        EndReason::Memory => "killed for its memory".into(),
        EndReason::RunnerError => "the runner lost its process".into(),
    }
}

pub(super) struct Exit {
    pub(super) key: JobKey,
    /// The process group of the process that exited (it leads it).
    pub(super) pgid: Option<u32>,
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
    let pgid = child.id();
    Box::pin(async move {
        let status = child.wait().await;
        Exit {
            key,
            pgid,
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
    /// How many capacities' worth of jobs to hold (running and queued), and by how many the
    /// queue must have drained before it is topped up: see [`prefetch`].
    pub(super) fn prefetching(&self) -> Prefetch {
        prefetch(self.mean_runtime, self.claim_latency)
    }

    /// Starts queued jobs, in claim order, that fit in what the running jobs leave free (and
    /// are not held back by the stagger of the runner's first jobs).
    pub(super) fn start_queued(&mut self) {
        if self.queued.is_empty() || self.stopping.is_some() {
            return;
        }
        let now = Instant::now();
        if self.stagger_until.is_some_and(|t| t <= now) {
            self.stagger_until = None;
        }
        let staggering = self.stagger_until.is_some();
        let held = |job: &ClaimedJob| staggering && job.limits.staggered_start;
        if let Capacity::MaxParallelJobs(n) = self.cfg.capacity {
            let mut room = (n as usize).saturating_sub(self.running.len());
            let mut i = 0;
            while room > 0 && i < self.queued.len() {
                if held(&self.queued[i]) {
                    i += 1;
                    continue;
                }
                let job = self.queued.remove(i).expect("index checked");
                self.start_job(job);
                room -= 1;
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
            if held(&self.queued[i]) {
                i += 1;
            } else if need.num_cpus <= free.num_cpus
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
            self.abandon(job, EndReason::RunnerError);
            return;
        }
        self.push_start(&job, start_time);
        let limit = job.limits.memory_bytes;
        let cgroup = match (limit, self.cgroups) {
            (Some(limit), Some(tree)) => {
                let name = format!(
                    "wf{}_j{}_r{}_a{}",
                    job.workflow_id, job.job_id, job.run_id, job.attempt_id
                );
                match tree.job(&name, limit) {
                    Ok(cg) => Some(cg),
                    Err(e) => {
                        warn!(job = job.job_id.0, error = %e, "cannot make the job's cgroup: the sampler enforces its memory limit");
                        None
                    }
                }
            }
            _ => None,
        };
        let sampler_limit = limit.filter(|_| cgroup.is_none());
        match process::spawn_job(&job, &self.ctx, cgroup.as_ref().map(JobCgroup::enter_fd)) {
            Ok((child, output)) => {
                self.local_failures = 0;
                let pgid = pgid_of(&child);
                let now = Instant::now();
                self.monitor.track(pgid, sampler_limit);
                self.samples.track(pgid, &job);
                self.exits
                    .push(wait_for(child, key_of(&job), job.attempt_id, false));
                debug!(job = job.job_id.0, name = %job.name, attempt = job.attempt_id, pgid, "job started");
                let lead = job.limits.sigkill_headroom + job.limits.sigterm_lead;
                self.max_end_lead = Some(self.max_end_lead.map_or(lead, |l| l.max(lead)));
                let mut r = Running {
                    // Its timeout, or the end of the allocation (less its headroom),
                    // whichever comes first: either way it is stopped for time.
                    deadline: match (
                        job.timeout.map(|t| super::after(now, t)),
                        self.cfg.time_left.map(|t| super::after(self.started, t)),
                    ) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    job,
                    pgid,
                    phase: Phase::Job,
                    start_time,
                    kill_at: None,
                    end_signal_at: None,
                    end_kill_at: None,
                    terminated: false,
                    cause: None,
                    cgroup,
                    memory_kill: None,
                    gpus,
                    revoked: false,
                    output,
                };
                if let Some(end) = self.alloc_end {
                    r.set_end(now, end);
                }
                self.running.insert(key_of(&r.job), r);
                self.idle_since = None;
            }
            Err(e) => {
                error!(job = job.job_id.0, name = %job.name, error = %e, "cannot start job");
                if let Some(cg) = cgroup {
                    cg.finish();
                }
                self.note_start_failure(&e);
                self.counts.failed += 1;
                let mut done = completion(
                    &job,
                    RC_RUNNER_ERROR,
                    false,
                    false,
                    start_time,
                    process::now_timestamp(),
                    Usage::default(),
                );
                done.1.end_reason = Some(EndReason::RunnerError);
                done.1.message = Some(format!("the job could not start here: {e}"));
                self.completions.push(done);
            }
        }
    }

    /// Counts a start that failed for this machine's reasons; so many in a row, and the runner
    /// stops claiming (every job it took would fail the same way) and ends with an error.
    fn note_start_failure(&mut self, e: &process::StartError) {
        if !e.is_local() {
            return;
        }
        self.local_failures += 1;
        let limit = self.cfg.max_local_failures;
        if limit > 0 && self.local_failures >= limit && self.stopping.is_none() {
            self.fail(crate::RunnerError::LocalFailures {
                count: self.local_failures,
                last: e.to_string(),
            });
        }
    }

    /// A job handed over while stopping: never run, reported terminated.
    pub(super) fn abandon(&mut self, job: ClaimedJob, cause: EndReason) {
        let now = process::now_timestamp();
        warn!(job = job.job_id.0, name = %job.name, "claimed while stopping: reporting it terminated");
        self.push_start(&job, now);
        self.counts.terminated += 1;
        let mut done = completion(
            &job,
            -libc::SIGTERM,
            true,
            false,
            now,
            now,
            Usage::default(),
        );
        done.1.end_reason = Some(cause);
        done.1.message = Some(format!("never started: {}", stop_message(&job, cause)));
        self.completions.push(done);
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
        if let Some(pgid) = exit.pgid {
            self.ctx.launcher.ended(pgid);
        }
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
        // All the leader wrote is in its pipes now: into the files before anything is reported.
        for stream in &r.output {
            stream.drain();
        }
        let end_time = process::now_timestamp();
        match r.phase {
            Phase::Job => {
                let usage = self.monitor.untrack(r.pgid);
                self.samples.untrack(r.pgid);
                let cgroup_end = r.cgroup.take().map(JobCgroup::finish);
                let mut rc = rc;
                if let Some(message) = memory_verdict(&r.job, &usage, cgroup_end) {
                    warn!(job = exit.key.1 .0, name = %r.job.name, "{message}");
                    rc = r.job.limits.oom_exit_code;
                    r.memory_kill = Some(message);
                }
                let recovery = if !r.terminated && rc != 0 && self.stopping.is_none() {
                    process::recovery_script_for(&r.job, rc)
                } else {
                    None
                };
                if let Some(script) = recovery {
                    info!(job = exit.key.1 .0, name = %r.job.name, rc, "running the recovery script");
                    match process::spawn_recovery(script, &r.job, &self.ctx) {
                        Ok((child, output)) => {
                            r.pgid = pgid_of(&child);
                            r.output.extend(output);
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
        // Killed for memory: a failure of the job (its handler may retry it), not a stop.
        let memory = r.memory_kill.is_some();
        let stopped = r.terminated && !memory;
        let (rc, end_reason, message) = match (r.memory_kill, r.cause) {
            (Some(message), _) => (rc, Some(EndReason::Memory), Some(message)),
            (None, Some(cause)) if r.terminated => {
                let rc = match cause.is_time() {
                    true => r.job.timeout_exit_code,
                    false => rc,
                };
                (rc, Some(cause), Some(stop_message(&r.job, cause)))
            }
            (None, _) => (rc, None, None),
        };
        let faults: Vec<String> = r.output.iter().filter_map(Stream::fault).collect();
        let message = match (message, faults.is_empty()) {
            (message, true) => message,
            (Some(m), false) => Some(format!("{m}; {}", faults.join("; "))),
            (None, false) => Some(faults.join("; ")),
        };
        if rc == 0 && !r.terminated && !recovery_failed && r.job.stdio.delete_on_success {
            for stream in &r.output {
                stream.discard();
            }
            for f in process::output_files(&self.ctx.stdio_dir, &r.job).files() {
                if let Err(e) = std::fs::remove_file(f) {
                    debug!(file = %f.display(), error = %e, "cannot remove a completed job's output");
                }
            }
        }
        if stopped {
            self.counts.terminated += 1;
        } else if rc == 0 {
            self.counts.completed += 1;
        } else {
            self.counts.failed += 1;
        }
        debug!(job = key.1 .0, rc, terminated = stopped, "job ended");
        let wall = Duration::from_millis(end_time.0.saturating_sub(r.start_time.0).max(0) as u64);
        self.mean_runtime = Some(match self.mean_runtime {
            Some(mean) => mean.mul_f64(0.8) + wall.mul_f64(0.2),
            None => wall,
        });
        let mut done = completion(
            &r.job,
            rc,
            stopped,
            recovery_failed,
            r.start_time,
            end_time,
            usage,
        );
        done.1.end_reason = end_reason;
        done.1.message = message;
        self.completions.push(done);
        self.first_completion_at.get_or_insert_with(Instant::now);
    }
}

/// How many of a runner's capacities it holds in jobs, running and queued, and in how large a
/// step its queue is topped up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefetch {
    /// Capacities' worth held: 1 means no prefetch.
    pub windows: u32,
    /// Capacities' worth that must have drained from the queue before a claim tops it up.
    pub refill: u32,
}

/// The prefetch for jobs that take `runtime` on average and claims that take `latency`.
///
/// Only short jobs are prefetched. The window holds the running capacity, enough to cover one
/// claim's round trip at the rate jobs finish, and the refill step: the queue is topped up when
/// a capacity has drained from it, or, for jobs of a few milliseconds, the jobs that finish in
/// [`REFILL_WORK`]. Each claim is a commit (a disk flush) at the coordinator; jobs that end every
/// millisecond would otherwise send one every other job.
pub(super) fn prefetch(runtime: Option<Duration>, latency: Option<Duration>) -> Prefetch {
    match runtime {
        Some(runtime) if runtime < PREFETCH_BELOW => {
            // Under the cap, the round trip's worth comes first (a queue that runs dry idles
            // the runner), then the step, at least one capacity of each.
            let room = MAX_PREFETCH_WINDOWS - 1;
            let per_job = runtime.as_secs_f64().max(1e-4);
            let ahead = (latency.unwrap_or_default().as_secs_f64() / per_job)
                .ceil()
                .clamp(1.0, f64::from(room - 1)) as u32;
            let refill = (REFILL_WORK.as_secs_f64() / per_job)
                .ceil()
                .clamp(1.0, f64::from(room - ahead)) as u32;
            Prefetch {
                windows: 1 + ahead + refill,
                refill,
            }
        }
        _ => Prefetch {
            windows: 1,
            refill: 1,
        },
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
        end_reason: None,
        message: None,
    };
    (job.workflow_id, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn only_short_jobs_are_prefetched() {
        let none = Prefetch {
            windows: 1,
            refill: 1,
        };
        assert_eq!(prefetch(None, ms(1)), none);
        assert_eq!(prefetch(Some(PREFETCH_BELOW), ms(1)), none);
        assert_eq!(prefetch(Some(Duration::from_secs(60)), ms(1)), none);
    }

    #[test]
    fn the_queue_is_topped_up_by_a_capacity_or_by_refill_work_whichever_is_more() {
        // Jobs of 50 ms, claims of 1 ms: the running capacity, one round trip's, one step.
        assert_eq!(
            prefetch(ms(50), ms(1)),
            Prefetch {
                windows: 3,
                refill: 1
            }
        );
        // Jobs of 2 ms: the step is what finishes in REFILL_WORK, five capacities.
        assert_eq!(
            prefetch(ms(2), ms(1)),
            Prefetch {
                windows: 7,
                refill: 5
            }
        );
        // A slow coordinator: more ahead for the round trip.
        assert_eq!(prefetch(ms(2), ms(6)).windows, 9);
        // At the cap the step gives way: jobs of 1 ms, claims of 6 ms keep six capacities
        // ahead, and the step is what is left (nine, not ten).
        let p = prefetch(ms(1), ms(6));
        assert_eq!(p.windows, MAX_PREFETCH_WINDOWS);
        assert_eq!((p.windows - 1 - p.refill, p.refill), (6, 9));
    }

    #[test]
    fn the_window_is_capped_and_always_leaves_room_for_its_step() {
        for (runtime, latency) in [(0, 0), (0, 1_000), (1, 100), (1, 0), (999, 100_000)] {
            let p = prefetch(ms(runtime), ms(latency));
            assert!(p.windows <= MAX_PREFETCH_WINDOWS, "{p:?}");
            assert!(p.refill >= 1 && p.refill < p.windows, "{p:?}");
        }
    }
}
