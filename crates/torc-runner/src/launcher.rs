//! How job processes die with their runner, and the thread that forks those that must.
//!
//! A runner killed outright (SIGKILL, the OOM killer, a crash) takes its jobs with it in two
//! ways. The run's *reaper*, a shell in a process group of its own that ignores SIGINT, SIGTERM
//! and SIGHUP, holds the read end of a pipe that only the runner holds open for writing and
//! never writes; when the runner dies the pipe closes, and the reaper reads the runner's record
//! of process groups (a file in a private directory: `+ PGID` as a job starts, `- PGID` as its
//! leader is reaped) and SIGKILLs every group still listed: leaders and what they started. The
//! record is a file, not the pipe, so that keeping it wakes nobody: a write to a pipe wakes its
//! blocked reader, a switch to another core on every job's start and end. It is rewritten with
//! only the live groups as it grows, under a new name and renamed over the old one, so it always
//! names every live group and stays small.
//!
//! A job whose spawn forks anyway (its child moves itself into its cgroup before exec) also asks
//! the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), which holds even if the
//! reaper is gone. Linux sends that signal when the *thread* that forked the child ends, not its
//! process, so such jobs are forked on the launcher's own thread, which lives as long as the
//! run (a pool thread that retires would kill a job its runner still runs). Other jobs are not
//! given it: it needs a hook between fork and exec, which forces `fork` over `posix_spawn`, and
//! copying the runner's page tables for every job made the 3,001-job pipeline a third slower.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::CommandExt as _;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use tokio::process::{Child, Command};
use tracing::warn;

/// The record's program: `+ PGID` and `- PGID` lines, then SIGKILL to the groups left.
const KILL_LISTED: &str = r#"$1 == "+" { held[$2] = 1 }
$1 == "-" { delete held[$2] }
END { groups = ""; for (g in held) groups = groups " -" g
      if (groups != "") system("kill -9" groups " 2>/dev/null") }"#;

/// The reaper: wait for the pipe to close (the runner gone), then act on the record, then
/// remove its directory. `$0` is the record's program, `$1` the record, `$2` the directory.
const REAPER: &str = r#"cat >/dev/null; awk "$0" "$1"; rm -rf "$2""#;

/// The record's name in the reaper's directory.
const RECORD: &str = "groups";

/// The record is rewritten once this much has been appended since it last was.
const COMPACT_AFTER: u64 = 1 << 20;

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
    /// Held open, never written: its closing is what tells the reaper the runner is gone.
    alive: Option<std::process::ChildStdin>,
    /// Removed when the reaper is dropped; a reaper that outlives its runner removes it itself.
    dir: tempfile::TempDir,
    /// The record, appended to.
    record: File,
    /// Bytes appended since the record was last rewritten.
    appended: u64,
    /// The groups listed now: what a rewrite writes.
    live: HashSet<u32>,
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        // On an error below, dropping `dir` removes it.
        let dir = tempfile::Builder::new().prefix("torc-reaper-").tempdir()?;
        let path = dir.path().join(RECORD);
        let record = File::create(&path)?;
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(REAPER)
            .arg(KILL_LISTED)
            .arg(&path)
            .arg(dir.path())
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
        let alive = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no pipe"))?;
        Ok(Reaper {
            child,
            alive: Some(alive),
            dir,
            record,
            appended: 0,
            live: HashSet::new(),
        })
    }

    /// Records that the group `pgid` started (`+`) or ended (`-`); once the record has grown
    /// by [`COMPACT_AFTER`], writes the live groups to a new file and renames it over the
    /// record.
    fn tell(&mut self, op: char, pgid: u32) -> io::Result<()> {
        if op == '+' {
            self.live.insert(pgid);
        } else {
            self.live.remove(&pgid);
        }
        if self.appended >= COMPACT_AFTER {
            let path = self.dir.path().join(RECORD);
            let next = self.dir.path().join("groups.next");
            let mut text = String::with_capacity(self.live.len() * 12);
            for g in &self.live {
                let _ = writeln!(text, "+ {g}");
            }
            let mut file = File::create(&next)?;
            file.write_all(text.as_bytes())?;
            std::fs::rename(&next, &path)?;
            self.record = file;
            self.appended = 0;
            return Ok(());
        }
        let line = format!("{op} {pgid}\n");
        self.record.write_all(line.as_bytes())?;
        self.appended += line.len() as u64;
        Ok(())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The run is over and its jobs reaped: nothing is left for the reaper to kill. Its
        // whole group goes (the shell and the `cat` it waits on).
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        self.child.wait().ok();
        // Only now may the pipe close (and the directory go, as the fields drop): a reaper
        // still alive would act on the record.
        drop(self.alive.take());
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
                warn!(error = %e, "cannot start the reaper (sh, awk, a temporary directory): jobs may outlive a killed runner");
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
        if let Err(e) = r.tell(op, pgid) {
            warn!(error = %e, "cannot keep the reaper's record: jobs may outlive a killed runner");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The groups the record lists, read as the reaper reads it.
    fn listed(reaper: &Reaper) -> HashSet<u32> {
        let text = std::fs::read_to_string(reaper.dir.path().join(RECORD)).unwrap();
        let mut held = HashSet::new();
        for line in text.lines() {
            let (op, g) = line.split_once(' ').unwrap();
            let g: u32 = g.parse().unwrap();
            if op == "+" {
                held.insert(g);
            } else {
                held.remove(&g);
            }
        }
        held
    }

    #[test]
    fn the_record_lists_the_live_groups_and_is_rewritten_as_it_grows() {
        let mut r = Reaper::start().unwrap();
        // Ten groups stay; two hundred thousand come and go, well past a rewrite.
        for g in 1..=10 {
            r.tell('+', g).unwrap();
        }
        for g in 1_000..201_000 {
            r.tell('+', g).unwrap();
            r.tell('-', g).unwrap();
        }
        assert_eq!(listed(&r), (1..=10).collect());
        let size = std::fs::metadata(r.dir.path().join(RECORD)).unwrap().len();
        assert!(size < COMPACT_AFTER + 4096, "the record is {size} bytes");
        let dir = r.dir.path().to_path_buf();
        drop(r);
        assert!(!dir.exists(), "the record's directory outlived the run");
    }

    #[test]
    fn when_the_runner_is_gone_the_reaper_kills_the_listed_groups() {
        let mut r = Reaper::start().unwrap();
        let mut job = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        r.tell('+', job.id()).unwrap();
        // What a runner's death does to the reaper: its end of the pipe closes.
        drop(r.alive.take());
        let status = job.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        // And it cleans up after itself.
        let dir = r.dir.path().to_path_buf();
        r.child.wait().unwrap();
        assert!(!dir.exists());
    }
}
