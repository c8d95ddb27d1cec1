//! The torc runner: claims jobs that fit its free resources from a [`Coordinator`], runs each as
//! `bash -c` in its own process group, measures it, enforces its memory limit (a cgroup v2 per
//! job where the runner may make them, else its sampler), stops it as the workflow's
//! `execution_config` says (at a timeout, a shutdown, or an allocation's end given to
//! [`Shutdown::end_at`]), and reports starts and completions back, each with why the runner
//! ended it when it did.
//!
//! The runner is generic over [`torc_core::api::Coordinator`]: the same code talks to the
//! in-process engine (embedded mode) and to a server over HTTP, and it cannot tell which. One
//! event loop owns the running set; a child's exit, a claim's answer and a report's
//! acknowledgement are all events, so a waiting (long-poll) claim never delays a report.
//!
//! What this crate must never do:
//! - decide a job's fate: retries, cancellation and unblocking are the coordinator's; the runner
//!   only reports what happened (exit code, terminated, recovery failed);
//! - drop a completion: unacknowledged reports are retried until acknowledged (bounded only
//!   while stopping, and then the run ends with an error that says how many were lost);
//! - leave a job's process behind: stopped jobs are killed as a whole process group and reaped,
//!   and a runner killed outright takes its jobs with it (see `launcher`);
//! - hand its token to a job (see [`secret`]);
//! - install signal handlers or a tracing subscriber by itself: binaries opt in with
//!   [`install_signal_handlers`] and their own subscriber.
//!
//! [`Coordinator`]: torc_core::api::Coordinator

mod cgroup;
mod config;
mod error;
pub mod executor;
mod launcher;
mod monitor;
mod output;
mod process;
mod resources;
mod runner;
mod samples;
pub mod secret;
mod shutdown;

pub use cgroup::{tree as cgroup_tree, CgroupTree, CgroupUnavailable};
pub use config::{stagger_delay, Capacity, RunnerConfig};
pub use error::{Progress, RunEnd, RunSummary, RunnerError};
pub use process::{output_files, return_code, stdio_paths, Output, RC_RUNNER_ERROR};
pub use resources::{detect_resources, hostname, DetectedResources};
pub use runner::{run, run_with_progress, runtime};
pub use shutdown::{install_signal_handlers, Shutdown, SignalGuard};
