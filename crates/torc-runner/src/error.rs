//! Why a run could not go on, and how it ended when it could.

use std::path::PathBuf;
use torc_core::api::CoordinatorError;

/// A run that could not start or had to stop early.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The capacity allows no job at all (0 CPUs or 0 parallel jobs).
    #[error("the runner's capacity is zero: it could never run a job")]
    ZeroCapacity,
    /// The job output directory could not be created.
    #[error("cannot create the job output directory {}: {source}", path.display())]
    OutputDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The coordinator refused a claim; retrying would not help.
    #[error("the coordinator rejected a claim: {source}")]
    ClaimRejected { source: CoordinatorError },
    /// The coordinator refused a report batch; its completions are lost to it.
    #[error("the coordinator rejected a report of {completions} completion(s): {source}")]
    ReportRejected {
        completions: usize,
        source: CoordinatorError,
    },
    /// While stopping, reports could not be delivered within the bounded retries.
    #[error("{completions} completion(s) could not be reported before stopping: {source}")]
    ReportsUndelivered {
        completions: usize,
        source: CoordinatorError,
    },
    /// Jobs in a row could not start for this machine's reasons (output directory, disk,
    /// shell, process limits): the runner stopped claiming rather than fail every job it took.
    #[error("{count} jobs in a row could not start on this machine, so it stopped claiming; the last: {last}")]
    LocalFailures { count: u32, last: String },
    /// The thread that forks jobs could not be started.
    #[error("cannot start the job launcher thread: {source}")]
    Launcher { source: std::io::Error },
    /// The thread that copies job output into files could not be started.
    #[error("cannot start the job output thread: {source}")]
    Output { source: std::io::Error },
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {source}")]
    Signals { source: std::io::Error },
}

/// Why a run ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every job of the workflow is finished.
    WorkflowComplete,
    /// The workflow was canceled; running jobs were terminated.
    WorkflowCanceled,
    /// Nothing ran and nothing was claimable for the configured idle timeout.
    IdleTimeout,
    /// A [`crate::Shutdown`] was triggered; running jobs were terminated.
    Shutdown,
    /// The allocation's end given to [`crate::Shutdown::end_at`] came: claims stopped, and
    /// jobs still running were stopped before it.
    AllocationEnd,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs that exited with code 0.
    pub completed: u64,
    /// Jobs that exited otherwise on their own (each attempt counts).
    pub failed: u64,
    /// Jobs the runner stopped (timeout, shutdown, cancellation).
    pub terminated: u64,
    /// Completion reports the coordinator refused (stale attempt, job no longer running).
    pub refused: u64,
    /// Jobs the coordinator took back before they were reported (this runner's lease had
    /// lapsed): killed or dropped, never reported.
    pub revoked: u64,
    pub end: RunEnd,
}

/// Live counters of a run, published through [`crate::run_with_progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Jobs running now (including those whose recovery script runs).
    pub running: usize,
    /// Jobs claimed so far.
    pub claimed: u64,
    pub completed: u64,
    pub failed: u64,
    pub terminated: u64,
    pub refused: u64,
    /// Jobs taken back by the coordinator (see [`RunSummary::revoked`]).
    pub revoked: u64,
    /// Completions sent and acknowledged by the coordinator.
    pub reported: u64,
}
