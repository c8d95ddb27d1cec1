//! The one thread that forks every job process of a run.
//!
//! Each job's process-group leader asks the kernel to SIGKILL it when its parent dies
//! (`PR_SET_PDEATHSIG`), so a runner that is killed takes its jobs with it. Linux sends that
//! signal when the *thread* that forked the child ends, not when its process does: forked from a
//! worker of tokio's blocking pool (which ends its idle threads), a job would be killed while
//! its runner lives on. Forks therefore happen on this thread, which lives as long as the run.
//!
//! The kernel signals only the leader. What the leader started (a job's background processes,
//! or the commands a `bash -c` waits for) is in the same process group, and the run's *reaper*
//! kills those groups: a small shell, in a group of its own and deaf to SIGINT, SIGTERM and
//! SIGHUP, told each job's group as it starts and ends on a pipe only the runner writes. When
//! the runner dies the pipe closes, and the reaper kills every group still listed, then exits.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use tokio::process::{Child, Command};
use tracing::warn;

/// The reaper: `+ PGID` and `- PGID` lines until end of input, then SIGKILL to the groups left.
const REAPER: &str = r#"trap '' INT TERM HUP
declare -A held
while read -r op pgid; do
  case $op in
    +) held[$pgid]=1 ;;
    -) unset "held[$pgid]" ;;
  esac
done
for pgid in "${!held[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null; done"#;

type Reply = mpsc::SyncSender<io::Result<Child>>;

/// A handle to the run's forking thread; dropping it ends the thread (after the run, when no
/// job is left to kill).
pub(crate) struct Launcher {
    tx: Option<mpsc::Sender<(Command, Reply)>>,
    thread: Option<JoinHandle<()>>,
    reaper: Mutex<Option<Reaper>>,
}

struct Reaper {
    child: std::process::Child,
    /// Non-blocking: a reaper that stops reading costs a record, never a stalled runner.
    tell: std::process::ChildStdin,
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(REAPER)
            .arg("torc-runner-reaper")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
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
        Ok(Reaper { child, tell })
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
                warn!(error = %e, "cannot start the reaper: what a job's group leader started may outlive a killed runner");
            })
            .ok();
        Ok(Launcher {
            tx: Some(tx),
            thread: Some(thread),
            reaper: Mutex::new(reaper),
        })
    }

    /// Tells the reaper that the group `pgid` has ended (its leader was reaped).
    pub(crate) fn ended(&self, pgid: u32) {
        self.tell('-', pgid);
    }

    fn tell(&self, op: char, pgid: u32) {
        let Ok(mut reaper) = self.reaper.lock() else {
            return;
        };
        let Some(r) = reaper.as_mut() else {
            return;
        };
        if let Err(e) = r.tell.write_all(format!("{op} {pgid}\n").as_bytes()) {
            warn!(error = %e, "the reaper does not listen: what a job's group leader started may outlive a killed runner");
            *reaper = None;
        }
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
        let child = answer.recv().map_err(|_| gone())??;
        if let Some(pgid) = child.id() {
            self.tell('+', pgid);
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
