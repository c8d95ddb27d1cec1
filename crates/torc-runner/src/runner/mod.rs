//! The event loop: one task owns the running set and reacts to child exits, claim answers,
//! report acknowledgements, timers and shutdown requests.
//!
//! At most one claim and one report are in flight at a time, each as its own future polled by
//! the loop, so a parked (long-poll) claim never holds back a report. A child's exit queues its
//! completion and refills the free slots at once; completions are flushed whenever no report is
//! in flight, so batches grow under load and add no latency when idle. While the runner still
//! holds prefetched jobs (it has work in hand and nobody here waits for the completions'
//! dependents), a completion waits up to [`REPORT_COALESCE`] for the next ones: every report is
//! one commit, one disk flush, at the coordinator, and short jobs ending every few milliseconds
//! would otherwise each pay for one.
//!
//! While recent jobs are short (see [`PREFETCH_BELOW`]), the runner claims jobs ahead of its
//! free slots and keeps them queued, so that a slot freed by an exit is refilled from the queue
//! with no round trip to the coordinator; the claim that tops the queue up overlaps with the jobs
//! already running. The queue holds enough to cover one claim's round trip at the current job
//! rate (at least one capacity, at most [`MAX_PREFETCH_WINDOWS`] capacities): a coordinator
//! whose commits wait for the disk answers more slowly, and the runner looks further ahead. The
//! queue is topped up a step at a time, not a job at a time: a capacity, or for jobs of a few
//! milliseconds what finishes in [`REFILL_WORK`] (see [`jobs::prefetch`]). Long jobs are never
//! prefetched: a job waiting in one runner's queue for an hour would be a job another runner
//! could have run.

use crate::cgroup::CgroupTree;
use crate::config::{stagger_delay, RunnerConfig};
use crate::error::{Progress, RunEnd, RunSummary, RunnerError};
use crate::launcher::Launcher;
use crate::monitor::Monitor;
use crate::output::Relays;
use crate::process::{signal_group, JobContext};
use crate::samples::Samples;
use crate::shutdown::Shutdown;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use torc_core::api::JobLimits;
use torc_core::api::{
    ClaimResponse, ClaimedJob, CompletionReport, Coordinator, CoordinatorError, ReportBatch,
    StartReport,
};
use torc_core::changes::{EndReason, WorkflowState};
use torc_core::{JobId, WorkflowId};
use tracing::{error, info, warn, Instrument};

mod beats;
mod claims;
mod jobs;
mod reports;

use jobs::{Exit, Running};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A job as the runner tracks it: job ids are local to their workflow, and a shared runner
/// runs jobs of many.
pub(crate) type JobKey = (WorkflowId, JobId);

pub(crate) fn key_of(job: &ClaimedJob) -> JobKey {
    (job.workflow_id, job.job_id)
}

/// Jobs are prefetched while the moving average of their wall time is below this.
pub(crate) const PREFETCH_BELOW: Duration = Duration::from_secs(1);
/// At most this many capacities' worth of jobs are held (running and queued) at once.
pub(crate) const MAX_PREFETCH_WINDOWS: u32 = 16;
/// While prefetching, the queue is topped up no more often than the jobs that finish in this
/// long: each claim is a commit at the coordinator.
pub(crate) const REFILL_WORK: Duration = Duration::from_millis(10);

/// Back-off after a transient coordinator error: doubles from the minimum up to the cap.
const ERROR_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));
/// Back-off after an empty claim that came back early (a coordinator that does not long-poll).
const IDLE_BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));
/// Starts ride along with completions; alone, they wait at most this long.
const START_REPORT_DELAY: Duration = Duration::from_secs(1);
/// While prefetched jobs wait in the runner, a completion waits at most this long for others
/// to share its report (and the coordinator's commit).
const REPORT_COALESCE: Duration = Duration::from_millis(10);
/// Attempts for one report batch while stopping, before giving up.
const STOPPING_REPORT_ATTEMPTS: u32 = 8;
/// The same after a second shutdown request.
const HARD_STOP_REPORT_ATTEMPTS: u32 = 2;
/// While stopping, how long the claim in flight is waited for (without a grace period set).
const STOP_CLAIM_WAIT: Duration = Duration::from_secs(10);

/// The runtime to drive [`run`] on. One thread polls both the runner's event loop and the I/O
/// driver: a child's exit (its pidfd becoming readable) wakes the thread that starts the next
/// job directly, with no hand-off from a worker thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs jobs of `config.workflow_id` (of every workflow it may serve, for a shared runner) until
/// the workflow is done, the idle timeout passes, or `shutdown` is triggered.
pub async fn run<C: Coordinator>(
    coord: Arc<C>,
    config: RunnerConfig,
    shutdown: Shutdown,
) -> Result<RunSummary, RunnerError> {
    let (progress, _rx) = watch::channel(Progress::default());
    run_with_progress(coord, config, shutdown, progress).await
}

/// [`run`], publishing live counters to `progress` as they change.
pub async fn run_with_progress<C: Coordinator>(
    coord: Arc<C>,
    config: RunnerConfig,
    shutdown: Shutdown,
    progress: watch::Sender<Progress>,
) -> Result<RunSummary, RunnerError> {
    if config.capacity.is_zero() {
        return Err(RunnerError::ZeroCapacity);
    }
    let stdio_dir = config.stdio_dir();
    std::fs::create_dir_all(&stdio_dir).map_err(|source| RunnerError::OutputDir {
        path: stdio_dir.clone(),
        source,
    })?;
    let output_dir =
        std::fs::canonicalize(&config.output_dir).unwrap_or_else(|_| config.output_dir.clone());
    // Before the launcher starts its reaper: the cgroup tree moves the runner only when it is
    // alone in its cgroup.
    let cgroups = memory_limits(&config);
    let ctx = JobContext {
        output_dir,
        stdio_dir,
        api_url: config.api_url.clone(),
        srun: config.srun_jobs,
        launcher: Arc::new(
            Launcher::start(tokio::runtime::Handle::current())
                .map_err(|source| RunnerError::Launcher { source })?,
        ),
        relays: Arc::new(Relays::start().map_err(|source| RunnerError::Output { source })?),
    };
    let span = tracing::info_span!(
        "runner",
        workflow = %config.workflow_id,
        runner = %config.runner_id
    );
    let monitor = Monitor::default();
    let _sampler = AbortOnDrop(tokio::spawn(
        monitor.clone().sample_forever(config.sample_interval),
    ));
    let samples = Samples::default();
    let _series = AbortOnDrop(tokio::spawn(samples.clone().sample_forever()));
    let mut event_loop = EventLoop::new(coord, config, ctx, (monitor, samples), progress);
    event_loop.cgroups = cgroups;
    event_loop.run(shutdown).instrument(span).await
}

/// How jobs' memory limits are enforced in this run, logged once: by a cgroup per job where
/// the runner may make them, else by the sampler.
fn memory_limits(config: &RunnerConfig) -> Option<&'static CgroupTree> {
    if !config.cgroup_limits {
        info!("memory limits: enforced by the /proc sampler (cgroup limits turned off)");
        return None;
    }
    match crate::cgroup::tree() {
        Ok(tree) => {
            info!(cgroups = %tree.jobs_dir().display(), "memory limits: a cgroup v2 per job (memory.max), enforced by the kernel");
            Some(tree)
        }
        Err(why) => {
            info!(reason = %why, "memory limits: enforced by the /proc sampler (no cgroup v2 memory limits here)");
            None
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Shutdown,
    Canceled,
    Failed,
    /// Jobs cannot start here: no more claims, running jobs finish and are reported, then the
    /// run ends with the error.
    Broken,
    /// The allocation's end is near: no more claims, running jobs stop at their deadlines.
    AllocationEnd,
}

impl StopReason {
    fn end_reason(self) -> EndReason {
        match self {
            StopReason::Shutdown | StopReason::Failed => EndReason::Shutdown,
            StopReason::Broken => EndReason::RunnerError,
            StopReason::Canceled => EndReason::Canceled,
            StopReason::AllocationEnd => EndReason::AllocationEnd,
        }
    }
}

fn backoff(failures: u32, (min, max): (Duration, Duration)) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
}

/// Keeps in `acc` the earliest of the deadlines seen that lie after `now`.
fn earliest(acc: &mut Option<Instant>, now: Instant, t: Option<Instant>) {
    if let Some(t) = t.filter(|&t| t > now) {
        *acc = Some(acc.map_or(t, |a| a.min(t)));
    }
}

/// Polls the future in `slot`, or never completes when the slot is empty.
fn poll_slot<T>(slot: &mut Option<BoxFut<T>>) -> impl Future<Output = T> + '_ {
    std::future::poll_fn(move |cx| match slot {
        Some(fut) => fut.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct EventLoop<C: Coordinator> {
    coord: Arc<C>,
    cfg: RunnerConfig,
    ctx: JobContext,
    monitor: Monitor,
    /// Time series the workflow's `resource_monitor` asks for.
    samples: Samples,
    /// Where limited jobs get their cgroups; `None`: the sampler enforces limits.
    cgroups: Option<&'static CgroupTree>,
    started: Instant,
    /// Until then, jobs of workflows with `staggered_start` wait (see `RunnerConfig::stagger_window`).
    stagger_until: Option<Instant>,
    /// The allocation's end, once [`Shutdown::end_at`] gave it.
    alloc_end: Option<Instant>,
    /// The longest `sigkill_headroom + sigterm_lead` of the jobs started (`None` before the
    /// first: the defaults apply); claims stop this long before the allocation's end.
    max_end_lead: Option<Duration>,

    running: HashMap<JobKey, Running>,
    /// Jobs claimed ahead of free slots (prefetched), started as soon as they fit.
    queued: VecDeque<ClaimedJob>,
    /// Moving average of recent jobs' wall time: prefetching is for short jobs only.
    mean_runtime: Option<Duration>,
    /// Moving average of how long a claim that returned jobs took to answer.
    claim_latency: Option<Duration>,
    exits: FuturesUnordered<BoxFut<Exit>>,

    claim: Option<BoxFut<Result<ClaimResponse, CoordinatorError>>>,
    claim_sent: Instant,
    claim_not_before: Option<Instant>,
    claim_failures: u32,
    empty_claims: u32,
    /// While stopping: when to stop waiting for the claim in flight.
    claim_deadline: Option<Instant>,

    beat: Option<BoxFut<beats::BeatAnswers>>,
    /// Workflows whose cancel this (shared) runner has acted on.
    canceled: std::collections::HashSet<WorkflowId>,
    beat_sent: Instant,
    /// When to send the next heartbeat (none while one is in flight).
    next_beat: Option<Instant>,
    beat_failures: u32,
    /// The coordinator's lease, as its last heartbeat answer said.
    lease: Option<Duration>,

    report: Option<BoxFut<Result<reports::Answers, CoordinatorError>>>,
    /// The batches in flight (one per workflow), or waiting to be sent again after a transient
    /// error.
    unacked: Option<Vec<ReportBatch>>,
    report_not_before: Option<Instant>,
    report_failures: u32,
    /// No more reports will be sent (rejected, or given up on while stopping).
    reports_closed: bool,
    starts: Vec<(WorkflowId, StartReport)>,
    first_start_at: Option<Instant>,
    completions: Vec<(WorkflowId, CompletionReport)>,
    /// When the oldest completion not yet sent was queued.
    first_completion_at: Option<Instant>,

    workflow_state: WorkflowState,
    idle_since: Option<Instant>,
    idle_expired: bool,
    shutdown: Option<Shutdown>,
    shutdowns_seen: u32,
    stopping: Option<StopReason>,
    hard_stop: bool,
    /// Jobs in a row that could not start for this machine's reasons (see
    /// `RunnerConfig::max_local_failures`).
    local_failures: u32,
    error: Option<RunnerError>,

    counts: Progress,
    progress: watch::Sender<Progress>,
}

impl<C: Coordinator> Drop for EventLoop<C> {
    fn drop(&mut self) {
        // Reached with jobs running only if the run future itself was dropped: leave nothing.
        for r in self.running.values() {
            signal_group(r.pgid, libc::SIGKILL);
        }
    }
}

impl<C: Coordinator> EventLoop<C> {
    fn new(
        coord: Arc<C>,
        cfg: RunnerConfig,
        ctx: JobContext,
        (monitor, samples): (Monitor, Samples),
        progress: watch::Sender<Progress>,
    ) -> Self {
        let now = Instant::now();
        EventLoop {
            stagger_until: cfg
                .stagger_window
                .map(|w| now + stagger_delay(&cfg.runner_id, w)),
            coord,
            cfg,
            ctx,
            monitor,
            samples,
            cgroups: None,
            alloc_end: None,
            max_end_lead: None,
            started: now,
            running: HashMap::new(),
            queued: VecDeque::new(),
            mean_runtime: None,
            claim_latency: None,
            exits: FuturesUnordered::new(),
            claim: None,
            claim_sent: now,
            claim_not_before: None,
            claim_failures: 0,
            empty_claims: 0,
            claim_deadline: None,
            beat: None,
            canceled: std::collections::HashSet::new(),
            beat_sent: now,
            next_beat: Some(now),
            beat_failures: 0,
            lease: None,
            report: None,
            unacked: None,
            report_not_before: None,
            report_failures: 0,
            reports_closed: false,
            starts: Vec::new(),
            first_start_at: None,
            completions: Vec::new(),
            first_completion_at: None,
            workflow_state: WorkflowState::Active,
            idle_since: Some(now),
            idle_expired: false,
            shutdown: None,
            shutdowns_seen: 0,
            stopping: None,
            hard_stop: false,
            local_failures: 0,
            error: None,
            counts: Progress::default(),
            progress,
        }
    }

    async fn run(mut self, shutdown: Shutdown) -> Result<RunSummary, RunnerError> {
        let mut shutdown_rx = shutdown.subscribe();
        self.shutdown = Some(shutdown);
        info!(capacity = ?self.cfg.capacity, "runner started");
        loop {
            shutdown_rx.borrow_and_update();
            self.check_shutdown();
            let now = Instant::now();
            self.on_timers(now);
            self.start_queued();
            if self.claim_not_before.is_some_and(|t| t <= now) {
                self.claim_not_before = None;
            }
            // A claim and the report that goes with it reach the coordinator together (the
            // report first, so that the claim can take what it unblocked): one commit for both.
            let mut claim = self.claim_due(now);
            if self.pump_reports(now, claim.is_some()) && claim.is_none() {
                // And the other way round: a report that goes alone takes a claim with it.
                claim = self.claim_with_report(now);
            }
            self.pump_claims(now, claim);
            self.pump_beats(now);
            self.publish();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            // The output pipes due on the output thread.
            self.ctx.relays.flush(now.into_std());
            let wake = self.next_wake(now);
            tokio::select! {
                Some(exit) = self.exits.next(), if !self.exits.is_empty() => {
                    self.on_exit(exit);
                    // Take every exit that is already there, so one claim refills them all.
                    while let Some(Some(exit)) = self.exits.next().now_or_never() {
                        self.on_exit(exit);
                    }
                }
                res = poll_slot(&mut self.report) => {
                    self.report = None;
                    self.on_report(res);
                }
                res = poll_slot(&mut self.claim) => {
                    self.claim = None;
                    self.on_claim(res);
                }
                res = poll_slot(&mut self.beat) => {
                    self.beat = None;
                    self.on_beat(res);
                }
                _ = shutdown_rx.changed() => {}
                () = sleep_until_opt(wake) => {}
            }
        }
    }

    fn publish(&mut self) {
        self.counts.running = self.running.len();
        let counts = self.counts;
        self.progress.send_if_modified(|p| {
            let changed = *p != counts;
            *p = counts;
            changed
        });
    }

    /// The run's result once there is nothing left to wait for.
    fn outcome(&mut self) -> Option<Result<RunSummary, RunnerError>> {
        let reports_done = self.reports_closed
            || (self.report.is_none()
                && self.unacked.is_none()
                && self.starts.is_empty()
                && self.completions.is_empty());
        let quiet = self.running.is_empty() && self.queued.is_empty() && reports_done;
        let end = match self.stopping {
            Some(_) if !(quiet && self.claim.is_none()) => return None,
            Some(StopReason::Canceled) => RunEnd::WorkflowCanceled,
            Some(StopReason::Shutdown | StopReason::Failed | StopReason::Broken) => {
                RunEnd::Shutdown
            }
            Some(StopReason::AllocationEnd) => RunEnd::AllocationEnd,
            None if quiet && self.workflow_state == WorkflowState::Complete => {
                RunEnd::WorkflowComplete
            }
            None if quiet && self.idle_expired && self.claim.is_none() => RunEnd::IdleTimeout,
            None => return None,
        };
        let summary = RunSummary {
            completed: self.counts.completed,
            failed: self.counts.failed,
            terminated: self.counts.terminated,
            refused: self.counts.refused,
            revoked: self.counts.revoked,
            end,
        };
        if let Some(err) = self.error.take() {
            error!(error = %err, "runner stopped with an error");
            return Some(Err(err));
        }
        info!(
            completed = summary.completed,
            failed = summary.failed,
            terminated = summary.terminated,
            refused = summary.refused,
            end = ?summary.end,
            "runner finished"
        );
        Some(Ok(summary))
    }

    /// The next deadline that may call for action. Deadlines already past were acted on (or
    /// wait for an event) this round; waking for them would only spin.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake = None;
        for r in self.running.values() {
            for t in r.deadlines() {
                earliest(&mut wake, now, Some(t));
            }
        }
        if !self.queued.is_empty() {
            earliest(&mut wake, now, self.stagger_until);
        }
        if self.stopping.is_none() {
            earliest(&mut wake, now, self.claims_end());
        }
        if self.claim.is_none() {
            earliest(&mut wake, now, self.claim_not_before);
        } else {
            earliest(&mut wake, now, self.claim_deadline);
        }
        if self.beat.is_none() {
            earliest(&mut wake, now, self.next_beat);
        }
        if self.report.is_none() {
            if self.unacked.is_some() {
                earliest(&mut wake, now, self.report_not_before);
            } else {
                earliest(
                    &mut wake,
                    now,
                    self.first_start_at.map(|t| t + START_REPORT_DELAY),
                );
                earliest(
                    &mut wake,
                    now,
                    self.first_completion_at.map(|t| t + REPORT_COALESCE),
                );
            }
        }
        if let (Some(timeout), Some(since), false) =
            (self.cfg.idle_timeout, self.idle_since, self.idle_expired)
        {
            earliest(&mut wake, now, Some(after(since, timeout)));
        }
        if let (Some(left), false) = (self.cfg.time_left, self.idle_expired) {
            earliest(&mut wake, now, Some(after(self.started, left)));
        }
        earliest(&mut wake, now, self.ctx.relays.due().map(Instant::from_std));
        wake
    }

    /// When claims stop before the allocation's end: no job claimed later would have time for
    /// its termination signal.
    fn claims_end(&self) -> Option<Instant> {
        let end = self.alloc_end?;
        let lead = self.max_end_lead.unwrap_or_else(|| {
            let defaults = JobLimits::default();
            defaults.sigkill_headroom + defaults.sigterm_lead
        });
        Some(end.checked_sub(lead).unwrap_or(self.started))
    }

    fn on_timers(&mut self, now: Instant) {
        let grace = self.cfg.grace_period;
        for r in self.running.values_mut() {
            r.on_timers(now, grace);
        }
        if self.stopping.is_none() && self.claims_end().is_some_and(|t| t <= now) {
            info!("the allocation's end is near: no more claims");
            self.begin_stop(StopReason::AllocationEnd);
        }
        if let Some(left) = self.cfg.time_left {
            if !self.idle_expired && self.running.is_empty() && now >= after(self.started, left) {
                info!("the allocation's end is near: stopping");
                self.idle_expired = true;
            }
        }
        if let (Some(timeout), Some(since)) = (self.cfg.idle_timeout, self.idle_since) {
            if !self.idle_expired && self.running.is_empty() && now >= after(since, timeout) {
                info!(?timeout, "nothing to run for the idle timeout: stopping");
                self.idle_expired = true;
            }
        }
        if self.claim.is_some() && self.claim_deadline.is_some_and(|t| t <= now) {
            warn!("giving up on the claim in flight");
            self.claim = None;
        }
    }

    /// Acts on shutdown requests and allocation ends not seen yet.
    fn check_shutdown(&mut self) {
        let requests = self
            .shutdown
            .as_ref()
            .map(Shutdown::requests)
            .unwrap_or_default();
        if requests.triggered > self.shutdowns_seen {
            self.shutdowns_seen = requests.triggered;
            self.on_shutdown(requests.triggered);
        }
        if let Some(end) = requests.end.map(Instant::from_std) {
            if self.alloc_end.is_none_or(|old| end < old) {
                info!(
                    in_secs = end.saturating_duration_since(Instant::now()).as_secs(),
                    "the allocation ends: jobs will be stopped before it"
                );
                self.alloc_end = Some(end);
                let now = Instant::now();
                for r in self.running.values_mut() {
                    r.set_end(now, end);
                }
            }
        }
    }

    fn on_shutdown(&mut self, requests: u32) {
        if requests >= 1 {
            self.begin_stop(StopReason::Shutdown);
        }
        if requests >= 2 && !self.hard_stop {
            warn!("second shutdown request: killing every job now");
            self.hard_stop = true;
            let now = Instant::now();
            for r in self.running.values_mut() {
                r.terminate(now, None, EndReason::Shutdown);
            }
            self.claim = None;
        }
    }

    /// Stops claiming and terminates every running job.
    fn begin_stop(&mut self, reason: StopReason) {
        if self.stopping.is_some() {
            return;
        }
        info!(?reason, running = self.running.len(), "stopping");
        self.stopping = Some(reason);
        // Prefetched jobs never start: reported terminated, unless the workflow was canceled
        // (the coordinator canceled them already).
        for job in std::mem::take(&mut self.queued) {
            if reason != StopReason::Canceled {
                self.abandon(job, reason.end_reason());
            }
        }
        let now = Instant::now();
        let grace = self.cfg.grace_period;
        // At an allocation's end, running jobs keep their deadlines (see `Running::set_end`);
        // on a machine where jobs cannot start, those that did run to their end.
        if !matches!(reason, StopReason::AllocationEnd | StopReason::Broken) {
            for r in self.running.values_mut() {
                let kill = r.kill_after(now, grace);
                r.terminate(now, Some(kill), reason.end_reason());
            }
        }
        self.claim_not_before = None;
        self.claim_deadline = Some(now + grace.unwrap_or(STOP_CLAIM_WAIT));
    }

    fn fail(&mut self, err: RunnerError) {
        error!(error = %err, "fatal runner error");
        let reason = match err {
            RunnerError::LocalFailures { .. } => StopReason::Broken,
            _ => StopReason::Failed,
        };
        if self.error.is_none() {
            self.error = Some(err);
        }
        self.begin_stop(reason);
    }

    /// What the coordinator says of one workflow. A dedicated runner follows its workflow; a
    /// shared runner serves many, so one of them completing means nothing to it, and one being
    /// canceled stops that workflow's jobs only.
    fn observe_workflow(&mut self, workflow: WorkflowId, state: WorkflowState) {
        if !self.cfg.shared {
            return self.observe_state(state);
        }
        if state != WorkflowState::Canceled || !self.canceled.insert(workflow) {
            return;
        }
        warn!(%workflow, "workflow canceled: terminating its jobs");
        let now = Instant::now();
        let grace = self.cfg.grace_period;
        for r in self.running.values_mut() {
            if r.job.workflow_id == workflow {
                let kill = r.kill_after(now, grace);
                r.terminate(now, Some(kill), EndReason::Canceled);
            }
        }
        // The coordinator canceled its queued jobs already.
        self.queued.retain(|j| j.workflow_id != workflow);
    }

    /// A shared runner's answer to a refusal that concerns one workflow (its report or its
    /// heartbeat refused: deleted, out of the token's reach): that workflow's jobs are killed and
    /// dropped, unreported, and the runner serves the others. What it still holds of the
    /// workflow after this was handed out later, and is judged on its own.
    fn drop_workflow(&mut self, workflow: WorkflowId, why: &CoordinatorError) {
        let now = Instant::now();
        let mut killed = 0;
        for r in self.running.values_mut() {
            if r.job.workflow_id == workflow && !r.revoked {
                r.revoked = true;
                r.terminate(now, None, EndReason::Canceled);
                killed += 1;
            }
        }
        let before = self.queued.len() + self.completions.len();
        self.queued.retain(|j| j.workflow_id != workflow);
        self.completions.retain(|(w, _)| *w != workflow);
        self.starts.retain(|(w, _)| *w != workflow);
        let dropped = before - self.queued.len() - self.completions.len();
        self.counts.revoked += dropped as u64;
        warn!(%workflow, error = %why, killed, dropped,
              "the coordinator refused this workflow's report or heartbeat: its jobs are dropped, the others go on");
    }

    fn observe_state(&mut self, state: WorkflowState) {
        // Done is final for this runner: a stale "active" answer cannot undo it.
        if self.workflow_state.is_done() || !state.is_done() {
            return;
        }
        self.workflow_state = state;
        // Nothing can be handed out any more: the claim in flight may go.
        self.claim = None;
        if state == WorkflowState::Canceled {
            warn!("workflow canceled: terminating running jobs");
            self.begin_stop(StopReason::Canceled);
        } else {
            info!("workflow complete");
        }
    }
}

/// `at + d`, saturating (a timeout from a spec or a command line may be too long for the
/// clock: `Instant + Duration` would panic).
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    Instant::from_std(torc_core::units::instant_after(at.into_std(), d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_from_huge_durations_do_not_panic() {
        let now = Instant::now();
        let far = after(now, Duration::from_secs(u64::MAX));
        assert!(far > now + Duration::from_secs(86_400 * 365 * 99));
        assert_eq!(
            after(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        let mut wake = None;
        earliest(&mut wake, now, Some(after(now, Duration::MAX)));
        assert!(wake.is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let range = (Duration::from_millis(50), Duration::from_secs(1));
        assert_eq!(backoff(1, range), Duration::from_millis(50));
        assert_eq!(backoff(2, range), Duration::from_millis(100));
        assert_eq!(backoff(3, range), Duration::from_millis(200));
        assert_eq!(backoff(10, range), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, range), Duration::from_secs(1));
    }

    #[test]
    fn earliest_keeps_the_minimum() {
        let now = Instant::now();
        let mut acc = None;
        earliest(&mut acc, now, None);
        earliest(&mut acc, now, Some(now));
        assert_eq!(acc, None, "a deadline that is not in the future is ignored");
        earliest(&mut acc, now, Some(now + Duration::from_secs(2)));
        earliest(&mut acc, now, Some(now + Duration::from_secs(1)));
        earliest(&mut acc, now, Some(now + Duration::from_secs(3)));
        assert_eq!(acc, Some(now + Duration::from_secs(1)));
    }
}
