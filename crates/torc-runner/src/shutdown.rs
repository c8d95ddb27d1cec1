//! Asking a runner to stop: a cloneable [`Shutdown`] handle (now, or at an allocation's end), and
//! the SIGINT/SIGTERM/SIGHUP wiring that binaries opt into with [`install_signal_handlers`].

use crate::error::RunnerError;
use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A handle to stop a running [`crate::run`]. Clones share the same state.
///
/// The first [`trigger`](Shutdown::trigger) is graceful: no more claims, each job that supports
/// termination gets its workflow's `termination_signal` and SIGKILL `sigterm_lead_seconds`
/// later (or after the runner's `grace_period`, when one is set), the others SIGKILL at once;
/// then the reports are flushed. The second kills everything at once.
///
/// [`end_at`](Shutdown::end_at) stops the runner at a known time instead (an allocation's end).
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<StopRequests>>,
}

/// What has been asked of a runner so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StopRequests {
    /// Calls to [`Shutdown::trigger`].
    pub triggered: u32,
    /// The earliest end given to [`Shutdown::end_at`].
    pub end: Option<Instant>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _rx) = watch::channel(StopRequests::default());
        Shutdown { tx: Arc::new(tx) }
    }

    /// Asks for a shutdown; the second call escalates to killing everything now.
    pub fn trigger(&self) {
        self.tx
            .send_modify(|r| r.triggered = r.triggered.saturating_add(1));
    }

    /// How many times [`trigger`](Shutdown::trigger) was called.
    pub fn triggered(&self) -> u32 {
        self.tx.borrow().triggered
    }

    /// Stops the runner by `end` (an allocation's end), as the workflow's `execution_config`
    /// says, per job:
    ///
    /// - SIGKILL at `end - sigkill_headroom_seconds`; a job that supports termination gets its
    ///   `termination_signal` `sigterm_lead_seconds` before that;
    /// - each job so stopped is recorded terminated, with the workflow's `timeout_exit_code`
    ///   and the end reason `allocation_end`;
    /// - jobs that start later get the same deadlines; the runner stops claiming once a job
    ///   would have no time left before its signal (`end - headroom - lead`, by the largest
    ///   headroom and lead of the jobs it has seen, the defaults before it has seen any), and
    ///   ends with [`crate::RunEnd::AllocationEnd`] when its jobs are done and reported.
    ///
    /// Calling it again moves the end earlier, never later. A [`trigger`](Shutdown::trigger)
    /// still stops everything at once.
    pub fn end_at(&self, end: Instant) {
        self.tx.send_if_modified(|r| match r.end {
            Some(old) if old <= end => false,
            _ => {
                r.end = Some(end);
                true
            }
        });
    }

    /// The end given to [`end_at`](Shutdown::end_at), if any.
    pub fn end(&self) -> Option<Instant> {
        self.tx.borrow().end
    }

    pub(crate) fn requests(&self) -> StopRequests {
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<StopRequests> {
        self.tx.subscribe()
    }
}

/// Keeps the signal handlers of [`install_signal_handlers`] active; dropping it stops
/// forwarding signals to the [`Shutdown`] handle.
#[derive(Debug)]
pub struct SignalGuard {
    handle: signal_hook_tokio::Handle,
    task: JoinHandle<()>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.handle.close();
        self.task.abort();
    }
}

/// Routes SIGINT, SIGTERM and SIGHUP to `shutdown`: the first signal stops gracefully, the
/// second kills every job, a third one terminates the process with the signal's default action.
/// SIGHUP (a closed terminal or session, a supervisor's stop) is a stop like the others: its
/// default action would kill the runner and leave its jobs unreported.
///
/// For binaries only; the library never installs handlers by itself. Must be called from
/// within a tokio runtime.
pub fn install_signal_handlers(shutdown: Shutdown) -> Result<SignalGuard, RunnerError> {
    let signals = signal_hook_tokio::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|source| RunnerError::Signals { source })?;
    let handle = signals.handle();
    let task = tokio::spawn(async move {
        let mut signals = signals;
        while let Some(signal) = signals.next().await {
            if shutdown.triggered() >= 2 {
                tracing::warn!(signal, "third signal: exiting at once");
                // Best effort: if emulating the default action fails, keep going.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                continue;
            }
            shutdown.trigger();
            match shutdown.triggered() {
                1 => tracing::warn!(signal, "shutdown requested: stopping jobs gracefully"),
                _ => tracing::warn!(signal, "second shutdown request: killing every job now"),
            }
        }
    });
    Ok(SignalGuard { handle, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn triggers_are_counted_and_seen_by_subscribers() {
        let shutdown = Shutdown::new();
        let mut rx = shutdown.subscribe();
        assert_eq!(shutdown.triggered(), 0);
        let clone = shutdown.clone();
        clone.trigger();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow_and_update().triggered, 1);
        shutdown.trigger();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow_and_update().triggered, 2);
        assert_eq!(clone.triggered(), 2);
    }

    #[tokio::test]
    async fn an_end_only_moves_earlier() {
        let shutdown = Shutdown::new();
        let mut rx = shutdown.subscribe();
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(60);
        shutdown.end_at(later);
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow_and_update().end, Some(later));
        shutdown.end_at(later + std::time::Duration::from_secs(1));
        assert!(!rx.has_changed().unwrap(), "a later end changes nothing");
        shutdown.end_at(now);
        assert!(rx.has_changed().unwrap());
        assert_eq!(shutdown.end(), Some(now));
        assert_eq!(shutdown.triggered(), 0);
    }

    #[tokio::test]
    async fn sigterm_triggers_the_handle() {
        let shutdown = Shutdown::new();
        let mut rx = shutdown.subscribe();
        let guard = install_signal_handlers(shutdown.clone()).unwrap();
        // SAFETY: raise has no preconditions; the handler above replaced the default action.
        assert_eq!(unsafe { libc::raise(SIGTERM) }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.changed())
            .await
            .expect("the signal reached the handle")
            .unwrap();
        assert_eq!(shutdown.triggered(), 1);
        drop(guard);
    }
}
