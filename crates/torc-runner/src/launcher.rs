//! The one thread that forks every job process of a run.
//!
//! Each job's process-group leader asks the kernel to SIGKILL it when its parent dies
//! (`PR_SET_PDEATHSIG`), so a runner that is killed takes its jobs with it. Linux sends that
//! signal when the *thread* that forked the child ends, not when its process does: forked from a
//! worker of tokio's blocking pool (which ends its idle threads), a job would be killed while
//! its runner lives on. Forks therefore happen on this thread, which lives as long as the run.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::process::{Child, Command};

type Reply = mpsc::SyncSender<io::Result<Child>>;

/// A handle to the run's forking thread; dropping it ends the thread (after the run, when no
/// job is left to kill).
pub(crate) struct Launcher {
    tx: Option<mpsc::Sender<(Command, Reply)>>,
    thread: Option<JoinHandle<()>>,
}

impl Launcher {
    /// Starts the thread; it enters `runtime` for each spawn, so the child is reaped by it.
    pub(crate) fn start(runtime: tokio::runtime::Handle) -> io::Result<Launcher> {
        let (tx, rx) = mpsc::channel::<(Command, Reply)>();
        let thread = std::thread::Builder::new()
            .name("torc-launcher".into())
            .spawn(move || {
                let _enter = runtime.enter();
                for (mut cmd, reply) in rx {
                    // The caller may have stopped waiting; the child then goes with `kill_on_drop`.
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Launcher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Spawns `cmd` on the launcher thread, told to die with this process.
    pub(crate) fn spawn(&self, mut cmd: Command) -> io::Result<Child> {
        die_with_parent(&mut cmd);
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || io::Error::other("the job launcher thread is gone");
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send((cmd, reply))
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Makes the child SIGKILL itself when the thread that forks it (the launcher) ends. If the
/// runner died between the fork and the `prctl`, the child is an orphan already: it does not
/// start.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: between fork and exec the closure calls only prctl(2) and getppid(2), both
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
