//! Memory limits the kernel enforces: one cgroup v2 per limited job, with `memory.max` set to
//! the job's limit, under a tree the runner makes inside its own (delegated) cgroup.
//!
//! Set up once per process ([`tree`]): the cgroup2 mount is found in `/proc/self/mountinfo`,
//! the runner's own cgroup `D` in `/proc/self/cgroup`. `D` must offer the memory controller.
//! Controllers can only be handed to children of a cgroup without processes of its own (the
//! root excepted), so when `D` holds the runner alone, the runner first moves itself into a
//! leaf `D/torc-<pid>-runner`; then `memory` is enabled for `D`'s children and for the jobs'
//! parent `D/torc-<pid>-jobs`. A `D` that holds other processes too is left alone (and the
//! sampler enforces limits instead): moving someone else's processes is not the runner's call.
//!
//! Each job's process enters its cgroup before it executes anything (a write to
//! `cgroup.procs` between fork and exec), so no allocation escapes the limit. `memory.oom.group`
//! makes the kernel kill the whole job, and `memory.events` (`oom_kill`) tells afterwards
//! that it did.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why the runner cannot limit jobs' memory with cgroups here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CgroupUnavailable {
    #[error("no cgroup2 file system is mounted (/proc/self/mountinfo lists none)")]
    NoCgroup2Mount,
    #[error("this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no `0::` line)")]
    NotInCgroup2,
    #[error("the memory controller is not available in {} (cgroup.controllers: {controllers:?}); it may be bound to a cgroup v1 hierarchy or not delegated", dir.display())]
    NoMemoryController { dir: PathBuf, controllers: String },
    #[error("the runner's cgroup {} holds {processes} other process(es); the runner moves only itself", dir.display())]
    SharedCgroup { dir: PathBuf, processes: usize },
    #[error("cannot {action} {}: {message}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupUnavailable {
    let path = path.to_path_buf();
    move |e| CgroupUnavailable::Io {
        action,
        path,
        message: e.to_string(),
    }
}

/// The parent of the jobs' cgroups, with the memory controller enabled for its children.
#[derive(Debug)]
pub struct CgroupTree {
    jobs: PathBuf,
}

impl CgroupTree {
    /// Where the jobs' cgroups are made.
    pub fn jobs_dir(&self) -> &Path {
        &self.jobs
    }

    /// Makes the cgroup `name` for one job, limited to `limit_bytes` of memory (no swap), the
    /// whole job killed together when it passes the limit.
    pub(crate) fn job(&self, name: &str, limit_bytes: u64) -> io::Result<JobCgroup> {
        let dir = self.jobs.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Left by an earlier attempt of the same name that could not be removed yet.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        std::fs::write(dir.join("memory.max"), limit_bytes.to_string())?;
        // Without swap the limit is the limit; absent when the kernel has no swap accounting.
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        let _ = std::fs::write(dir.join("memory.oom.group"), "1");
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(JobCgroup { dir, procs })
    }
}

/// One job's cgroup. The job's process joins it through [`JobCgroup::enter_fd`] before exec.
#[derive(Debug)]
pub(crate) struct JobCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened by the runner (close-on-exec): the child writes `0` to it, which
    /// moves the writing process.
    procs: File,
}

/// How a job's cgroup saw its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CgroupEnd {
    /// The kernel's OOM killer killed a process of the job.
    pub oom_killed: bool,
    /// `memory.peak`, where the kernel has it.
    pub peak_bytes: Option<u64>,
}

impl JobCgroup {
    /// The descriptor the child writes to between fork and exec.
    pub(crate) fn enter_fd(&self) -> i32 {
        self.procs.as_raw_fd()
    }

    /// Reads what happened, kills what is left of the job and removes its cgroup (a cgroup
    /// whose last processes are still exiting is retried at the next end, or left empty).
    pub(crate) fn finish(self) -> CgroupEnd {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        let end = CgroupEnd {
            oom_killed: parse_oom_kills(&events) > 0,
            peak_bytes: std::fs::read_to_string(self.dir.join("memory.peak"))
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        };
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        drop(self.procs);
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot remove a job's cgroup yet");
        }
        end
    }
}

/// The `oom_kill` count of a `memory.events` file.
fn parse_oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The mount point of the cgroup2 file system, from `/proc/self/mountinfo` text: field 5 is
/// the mount point, the field after ` - ` the file system type.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The cgroup v2 path of this process, from `/proc/self/cgroup` text (`0::/path`).
fn own_cgroup(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/'))
}

fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

fn write_file(path: &Path, text: &str) -> Result<(), io::Error> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(text.as_bytes())
}

fn make_dir(path: &Path) -> Result<(), CgroupUnavailable> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create", path)(e)),
    }
}

fn set_up() -> Result<CgroupTree, CgroupUnavailable> {
    let read = |p: &'static str| std::fs::read_to_string(p).map_err(io_err("read", Path::new(p)));
    let mount =
        cgroup2_mount(&read("/proc/self/mountinfo")?).ok_or(CgroupUnavailable::NoCgroup2Mount)?;
    let cgroup_text = read("/proc/self/cgroup")?;
    let own = own_cgroup(&cgroup_text).ok_or(CgroupUnavailable::NotInCgroup2)?;
    let dir = mount.join(own);
    let controllers_path = dir.join("cgroup.controllers");
    let controllers =
        std::fs::read_to_string(&controllers_path).map_err(io_err("read", &controllers_path))?;
    if !has_word(&controllers, "memory") {
        return Err(CgroupUnavailable::NoMemoryController {
            dir,
            controllers: controllers.trim().to_string(),
        });
    }
    let pid = std::process::id();
    let subtree = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree).map_err(io_err("read", &subtree))?;
    if !has_word(&enabled, "memory") && write_file(&subtree, "+memory").is_err() {
        // Refused while the cgroup has processes of its own: if they are only this one, it
        // moves into a leaf of its own and tries again.
        let procs_path = dir.join("cgroup.procs");
        let procs = std::fs::read_to_string(&procs_path).map_err(io_err("read", &procs_path))?;
        let others = procs
            .split_whitespace()
            .filter(|p| p.parse::<u32>().ok() != Some(pid))
            .count();
        if others > 0 {
            return Err(CgroupUnavailable::SharedCgroup {
                dir,
                processes: others,
            });
        }
        let leaf = dir.join(format!("torc-{pid}-runner"));
        make_dir(&leaf)?;
        let leaf_procs = leaf.join("cgroup.procs");
        write_file(&leaf_procs, &pid.to_string()).map_err(io_err("move into", &leaf_procs))?;
        write_file(&subtree, "+memory").map_err(io_err("enable memory in", &subtree))?;
    }
    let jobs = dir.join(format!("torc-{pid}-jobs"));
    make_dir(&jobs)?;
    let jobs_subtree = jobs.join("cgroup.subtree_control");
    write_file(&jobs_subtree, "+memory").map_err(io_err("enable memory in", &jobs_subtree))?;
    // A trial child proves the limit can be written before any job relies on it.
    let trial = jobs.join("probe");
    make_dir(&trial)?;
    let max = trial.join("memory.max");
    let written = write_file(&max, "max").map_err(io_err("write", &max));
    let _ = std::fs::remove_dir(&trial);
    written?;
    Ok(CgroupTree { jobs })
}

/// This process's cgroup tree for job limits, set up on first use; the error says why there
/// is none (and the sampler enforces limits instead).
pub fn tree() -> Result<&'static CgroupTree, &'static CgroupUnavailable> {
    static TREE: OnceLock<Result<CgroupTree, CgroupUnavailable>> = OnceLock::new();
    TREE.get_or_init(set_up).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "\
35 24 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
44 35 0:39 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let none = "36 35 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount(none), None);
        assert_eq!(cgroup2_mount("garbage\n"), None);
    }

    #[test]
    fn reads_the_own_cgroup_and_oom_kills() {
        let text = "4:memory:/x\n0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            own_cgroup(text),
            Some("user.slice/user-1000.slice/session-2.scope")
        );
        assert_eq!(own_cgroup("0::/\n"), Some(""));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(parse_oom_kills(events), 1);
        assert_eq!(parse_oom_kills("low 0\n"), 0);
        assert!(has_word("cpuset cpu io memory pids", "memory"));
        assert!(!has_word("cpuset cpu io memory_x", "memory"));
    }
}
