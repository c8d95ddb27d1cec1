//! Asking a runner to stop: a cloneable [`Shutdown`] handle, and the SIGINT/SIGTERM wiring that
//! binaries opt into with [`install_signal_handlers`].

use crate::error::RunnerError;
use futures::StreamExt;
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A handle to stop a running [`crate::run`]. Clones share the same state.
///
/// The first [`trigger`](Shutdown::trigger) is graceful: no more claims, SIGTERM to jobs that
/// support termination (SIGKILL to the others), SIGKILL after the grace period, then the
/// reports are flushed. The second kills everything at once.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<u32>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _rx) = watch::channel(0);
        Shutdown { tx: Arc::new(tx) }
    }

    /// Asks for a shutdown; the second call escalates to killing everything now.
    pub fn trigger(&self) {
        self.tx.send_modify(|n| *n = n.saturating_add(1));
    }

    /// How many times [`trigger`](Shutdown::trigger) was called.
    pub fn triggered(&self) -> u32 {
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u32> {
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

/// Routes SIGINT and SIGTERM to `shutdown`: the first signal stops gracefully, the second kills
/// every job, a third one terminates the process with the signal's default action.
///
/// For binaries only; the library never installs handlers by itself. Must be called from
/// within a tokio runtime.
pub fn install_signal_handlers(shutdown: Shutdown) -> Result<SignalGuard, RunnerError> {
    let signals = signal_hook_tokio::Signals::new([SIGINT, SIGTERM])
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
        assert_eq!(*rx.borrow_and_update(), 1);
        shutdown.trigger();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(clone.triggered(), 2);
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
