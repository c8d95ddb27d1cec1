//! How job processes die with their runner, and the thread that forks those that must.
//!
//! A runner killed outright (SIGKILL, the OOM killer, a crash) takes its jobs with it in two
//! ways. The run's *reaper*, an `awk` in a process group of its own that ignores SIGINT,
//! SIGTERM and SIGHUP, is told on a pipe that only the runner writes each job's process group as
//! it starts (`+ PGID`) and as its leader is reaped (`- PGID`); when the runner dies the pipe
//! closes and the reaper SIGKILLs every group still listed: leaders and what they started.
//!
//! A job whose spawn forks anyway (its child moves itself into its cgroup before exec) also asks
//! the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), which holds even if the
//! reaper is gone. Linux sends that signal when the *thread* that forked the child ends, not its
//! process, so such jobs are forked on the launcher's own thread, which lives as long as the
//! run (a pool thread that retires would kill a job its runner still runs). Other jobs are not
//! given it: it needs a hook between fork and exec, which forces `fork` over `posix_spawn`, and
//! copying the runner's page tables for every job made the 3,001-job pipeline a third slower.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use tokio::process::{Child, Command};
use tracing::warn;

/// The reaper's program: `+ PGID` and `- PGID` lines until end of input, then SIGKILL to the
/// groups left.
const REAPER: &str = r#"$1 == "+" { held[$2] = 1 }
$1 == "-" { delete held[$2] }
END { groups = ""; for (g in held) groups = groups " -" g
      if (groups != "") system("kill -9" groups " 2>/dev/null") }"#;

type Reply = mpsc::SyncSender<io::Result<Child>>;

/// A handle to the run's forking thread and reaper; dropping it ends both (after the run, when
/// no job is left to kill).
pub(crate) struct Launcher {
    tx: Option<mpsc::Sender<(Command, Reply)>>,
    thread: Option<JoinHandle<()>>,
    reaper: Mutex<Option<Reaper>>,
}

struct Reaper {
    child: std::process::Child,
    /// Non-blocking: a reaper that stops reading costs a record, never a stalled runner.
    tell: std::process::ChildStdin,
    /// Lines not written yet: ended groups wait for the next start, or the end of the event
    /// loop's turn (see [`Launcher::flush`]), and go in the same write. Each write wakes the
    /// reaper, and an exit is usually followed by a start at once.
    pending: String,
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        let mut cmd = std::process::Command::new("awk");
        cmd.arg(REAPER)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec the closure only calls signal(2), which is
        // async-signal-safe. Ignored signals stay ignored across exec.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let tell = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no pipe"))?;
        // SAFETY: fcntl on a descriptor this process owns; it only changes its flags.
        unsafe {
            let fd = tell.as_raw_fd();
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        Ok(Reaper {
            child,
            tell,
            pending: String::new(),
        })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The run is over and its jobs reaped: nothing is left for the reaper to kill.
        self.child.kill().ok();
        self.child.wait().ok();
    }
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
        let reaper = Reaper::start()
            .inspect_err(|e| {
                warn!(error = %e, "cannot start the reaper (awk): jobs may outlive a killed runner");
            })
            .ok();
        Ok(Launcher {
            tx: Some(tx),
            thread: Some(thread),
            reaper: Mutex::new(reaper),
        })
    }

    /// Tells the reaper that the group `pgid` has ended (its leader was reaped). The line goes
    /// with the next start or [`Launcher::flush`], whichever comes first: until then the reaper
    /// would only kill a group that is gone (group ids are not reused within a turn).
    pub(crate) fn ended(&self, pgid: u32) {
        self.tell('-', pgid, false);
    }

    /// Writes what [`Launcher::ended`] left pending; the event loop calls it once a turn.
    pub(crate) fn flush(&self) {
        let Ok(mut reaper) = self.reaper.lock() else {
            return;
        };
        if reaper.as_ref().is_some_and(|r| !r.pending.is_empty()) {
            Self::write(&mut reaper);
        }
    }

    fn tell(&self, op: char, pgid: u32, now: bool) {
        let Ok(mut reaper) = self.reaper.lock() else {
            return;
        };
        let Some(r) = reaper.as_mut() else {
            return;
        };
        use std::fmt::Write as _;
        let _ = writeln!(r.pending, "{op} {pgid}");
        if now {
            Self::write(&mut reaper);
        }
    }

    fn write(reaper: &mut Option<Reaper>) {
        let Some(r) = reaper.as_mut() else {
            return;
        };
        let result = r.tell.write_all(r.pending.as_bytes());
        r.pending.clear();
        if let Err(e) = result {
            warn!(error = %e, "the reaper does not listen: jobs may outlive a killed runner");
            *reaper = None;
        }
    }

    /// Spawns `cmd`, a job's process-group leader, and lists its group with the reaper. With
    /// `forks` (the command has a hook between fork and exec already), it is forked on the
    /// launcher's thread and also told to die with this process.
    pub(crate) fn spawn(&self, mut cmd: Command, forks: bool) -> io::Result<Child> {
        let child = if forks {
            die_with_parent(&mut cmd);
            let (reply, answer) = mpsc::sync_channel(1);
            let gone = || io::Error::other("the job launcher thread is gone");
            self.tx
                .as_ref()
                .ok_or_else(gone)?
                .send((cmd, reply))
                .map_err(|_| gone())?;
            answer.recv().map_err(|_| gone())??
        } else {
            cmd.spawn()?
        };
        if let Some(pgid) = child.id() {
            self.tell('+', pgid, true);
        }
        Ok(child)
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
