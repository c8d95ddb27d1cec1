//! Job processes: how a claimed job becomes `bash -c` in its own process group, with its
//! environment and output files, and how the runner signals and reads back that group.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};
use torc_core::api::ClaimedJob;
use torc_core::model::StdioMode;
use torc_core::Timestamp;

use crate::launcher::Launcher;
use crate::output::{Relays, Stream};

/// The return code reported when the runner could not start or wait for a job's process.
pub const RC_RUNNER_ERROR: i32 = 127;

/// What every job of a run shares: where output goes and what jobs are told about the run.
#[derive(Clone)]
pub(crate) struct JobContext {
    pub output_dir: PathBuf,
    pub stdio_dir: PathBuf,
    pub api_url: Option<String>,
    /// Run each job as a Slurm step (`srun`) with its CPUs, memory and GPUs.
    pub srun: bool,
    /// How jobs die with the runner (see [`crate::launcher`]).
    pub launcher: Arc<Launcher>,
    /// Where job output is copied into its files (see [`crate::output`]).
    pub relays: Arc<Relays>,
}

/// The `.o` and `.e` paths of one attempt of a job.
pub fn stdio_paths(stdio_dir: &Path, job: &ClaimedJob) -> (PathBuf, PathBuf) {
    let stem = format!(
        "job_wf{}_j{}_r{}_a{}",
        job.workflow_id, job.job_id, job.run_id, job.attempt_id
    );
    (
        stdio_dir.join(format!("{stem}.o")),
        stdio_dir.join(format!("{stem}.e")),
    )
}

/// Where one attempt's output goes, as its `stdio` mode says; no file is made that the mode does
/// not ask for, nor one the job does not write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Separate {
        out: PathBuf,
        err: PathBuf,
    },
    /// Both streams in one `.log`.
    Combined(PathBuf),
    OnlyStdout(PathBuf),
    OnlyStderr(PathBuf),
    None,
}

impl Output {
    /// The files this output writes.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Output::Separate { out, err } => vec![out, err],
            Output::Combined(p) | Output::OnlyStdout(p) | Output::OnlyStderr(p) => vec![p],
            Output::None => Vec::new(),
        }
    }
}

/// The output files of one attempt of `job` under `stdio_dir`.
pub fn output_files(stdio_dir: &Path, job: &ClaimedJob) -> Output {
    let (out, err) = stdio_paths(stdio_dir, job);
    match job.stdio.mode {
        StdioMode::Separate => Output::Separate { out, err },
        StdioMode::Combined => Output::Combined(out.with_extension("log")),
        StdioMode::NoStdout => Output::OnlyStderr(err),
        StdioMode::NoStderr => Output::OnlyStdout(out),
        StdioMode::None => Output::None,
    }
}

/// Why a job's process could not be started here. Each says what happened in words a result
/// can carry; [`StartError::is_local`] tells this machine's faults from the job's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot create its output file {}: {}", path.display(), output_cause(source))]
    Output { path: PathBuf, source: io::Error },
    #[error("cannot start `{}`: {}", program.to_string_lossy(), spawn_cause(*command_bytes, source))]
    Spawn {
        program: std::ffi::OsString,
        /// The length of the command handed to the shell as one argument.
        command_bytes: usize,
        source: io::Error,
    },
}

impl StartError {
    /// Whether the fault lies with this machine (its disk, its shell, its process limits)
    /// rather than with the job (a command too long to exec): only those stop a runner that
    /// meets them again and again.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            StartError::Output { .. } => true,
            StartError::Spawn { source, .. } => source.raw_os_error() != Some(libc::E2BIG),
        }
    }
}

pub(crate) fn output_cause(e: &io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => "the output directory is not writable by the runner",
        Some(libc::EROFS) => "the output directory is on a read-only file system",
        Some(libc::ENOSPC) => "the disk is full (no space or no inodes left)",
        Some(libc::EDQUOT) => "the runner's disk quota is used up",
        Some(libc::ENOENT | libc::ENOTDIR) => "the output directory is gone",
        _ => return e.to_string(),
    };
    format!("{why} ({e})")
}

fn spawn_cause(command_bytes: usize, e: &io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "it is not on the runner's PATH ({})",
            std::env::var("PATH").unwrap_or_default()
        ),
        Some(libc::EACCES) => "it is not executable by the runner".into(),
        Some(libc::E2BIG) => format!(
            "the command is {command_bytes} bytes, over what the kernel lets exec take (one \
             argument at most 128 KiB, arguments and environment together ARG_MAX): put it in a \
             script and run that"
        ),
        Some(libc::EAGAIN) => "the runner may start no more processes (its process limit)".into(),
        Some(libc::ENOMEM) => "there is not enough memory to start a process".into(),
        _ => return e.to_string(),
    };
    format!("{why} ({e})")
}

/// A job's process and the streams of its output.
pub(crate) type Started = (Child, Vec<Stream>);

/// Starts the job's shell command in a new process group; with `cgroup_fd` (an open
/// `cgroup.procs` of the job's cgroup), the child moves itself into that cgroup before exec.
pub(crate) fn spawn_job(
    job: &ClaimedJob,
    ctx: &JobContext,
    cgroup_fd: Option<i32>,
) -> Result<Started, StartError> {
    spawn_shell(&job.shell_command(), job, ctx, false, cgroup_fd)
}

/// Starts a failure handler's recovery script with the job's environment, in a new process
/// group, appending to the job's output files.
pub(crate) fn spawn_recovery(
    script: &str,
    job: &ClaimedJob,
    ctx: &JobContext,
) -> Result<Started, StartError> {
    spawn_shell(script, job, ctx, true, None)
}

fn spawn_shell(
    script: &str,
    job: &ClaimedJob,
    ctx: &JobContext,
    append: bool,
    cgroup_fd: Option<i32>,
) -> Result<Started, StartError> {
    let output = output_files(&ctx.stdio_dir, job);
    // Files are made at the first byte, later; a directory that refuses them is this machine's
    // fault, known now, before the job runs with nowhere for its output to go.
    if let Some(first) = output.files().first() {
        writable_dir(&ctx.stdio_dir).map_err(|source| StartError::Output {
            path: first.to_path_buf(),
            source,
        })?;
    }
    let mut streams = Vec::new();
    let mut pipe = |path: &Path| -> Result<std::os::fd::OwnedFd, StartError> {
        let (write, stream) =
            ctx.relays
                .stream(path, append)
                .map_err(|source| StartError::Output {
                    path: path.to_path_buf(),
                    source,
                })?;
        streams.push(stream);
        Ok(write)
    };
    let (stdout, stderr): (Stdio, Stdio) = match output {
        Output::Separate { out, err } => (pipe(&out)?.into(), pipe(&err)?.into()),
        Output::Combined(log) => {
            let write = pipe(&log)?;
            let copy = write.try_clone().map_err(|source| StartError::Output {
                path: log.clone(),
                source,
            })?;
            (copy.into(), write.into())
        }
        Output::OnlyStderr(err) => (Stdio::null(), pipe(&err)?.into()),
        Output::OnlyStdout(out) => (pipe(&out)?.into(), Stdio::null()),
        Output::None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = if ctx.srun && !append {
        // A job as a step of the allocation: Slurm places it and holds it to what it asked for.
        // (Its recovery script runs directly: it repairs, it does not compute.)
        let r = &job.resources;
        let mut step = torc_slurm::SrunStep::new(r.num_cpus.max(1), r.memory_bytes);
        step.gpus = r.num_gpus;
        step.nodes = (r.num_nodes > 1).then_some(r.num_nodes);
        step.job_name = Some(job.name.clone());
        let argv = torc_slurm::srun_argv(&step, script).map_err(|e| StartError::Spawn {
            program: "srun".into(),
            command_bytes: script.len(),
            source: io::Error::other(e),
        })?;
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = Command::new(shell_for(job));
        c.arg("-c").arg(script);
        c
    };
    let program = cmd.as_std().get_program().to_os_string();
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Own group: a terminal's Ctrl-C does not reach the job, and the runner can signal the
        // whole tree at once.
        .process_group(0)
        .kill_on_drop(true)
        // The runner's token stays the runner's: a shared runner token handed to one user's job
        // would let it claim and report the jobs of every workflow in the token's scope.
        .env_remove("TORC_API_TOKEN")
        .envs(&job.env)
        .env("TORC_WORKFLOW_ID", job.workflow_id.to_string())
        .env("TORC_JOB_ID", job.job_id.to_string())
        .env("TORC_JOB_NAME", &job.name)
        .env("TORC_ATTEMPT_ID", job.attempt_id.to_string())
        .env("TORC_RUN_ID", job.run_id.to_string())
        .env("TORC_OUTPUT_DIR", &ctx.output_dir);
    match &ctx.api_url {
        Some(url) => cmd.env("TORC_API_URL", url),
        None => cmd.env_remove("TORC_API_URL"),
    };
    if let Some(fd) = cgroup_fd {
        // SAFETY: between fork and exec the closure only calls write(2), which is
        // async-signal-safe, on a descriptor the parent holds open for the spawn; it allocates
        // nothing and touches no lock.
        unsafe {
            cmd.pre_exec(move || {
                // "0" moves the writing process: the job runs in its cgroup from its first
                // instruction.
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
    }
    let forks = cgroup_fd.is_some();
    let child = ctx
        .launcher
        .spawn(cmd, forks)
        .map_err(|source| StartError::Spawn {
            program,
            command_bytes: script.len(),
            source,
        })?;
    ctx.relays.watch(&streams);
    Ok((child, streams))
}

/// `bash` as the runner's `PATH` finds it, looked up once: handed a bare name, every spawn
/// has the child try each `PATH` directory in turn (an `execve` that fails for each directory
/// before bash's), and the runner waits for that child to exec before it goes on. A job whose
/// environment sets `PATH` gets the bare name, so that its own `PATH` finds its shell.
fn shell_for(job: &ClaimedJob) -> &'static std::ffi::OsStr {
    static BASH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let found = BASH.get_or_init(|| find_on_path("bash", std::env::var_os("PATH").as_deref()));
    match found {
        Some(path) if !job.env.contains_key("PATH") => path.as_os_str(),
        _ => std::ffi::OsStr::new("bash"),
    }
}

/// The first executable `program` in the directories of `path`, as `execvp` would find it; `None`
/// when there is none, or when a relative directory comes first (it names a different place
/// from the job's working directory).
fn find_on_path(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in std::env::split_paths(path?) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Some(candidate),
            _ => {}
        }
    }
    None
}

/// Whether this process may create files in `dir` (as its effective user: permissions, a
/// read-only mount, a directory that is gone).
fn writable_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: faccessat reads the NUL-terminated path it is given and nothing else.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The recovery script to run before a retry of `job` that exited with `return_code`: only when
/// its handler has a rule for that code, with retries left and a non-empty script.
pub(crate) fn recovery_script_for(job: &ClaimedJob, return_code: i32) -> Option<&str> {
    let rule = job.failure_handler.as_ref()?.rule_for(return_code)?;
    if job.attempt_id > rule.max_retries {
        return None;
    }
    rule.recovery_script
        .as_deref()
        .filter(|s| !s.trim().is_empty())
}

/// Exit code, or the negated signal number when the process was killed by a signal.
pub fn return_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => -signal,
        (None, None) => RC_RUNNER_ERROR,
    }
}

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is fine.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // Never 0 or 1: kill(0) and kill(-1) would hit the runner's own group or every process.
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, error = %err, "cannot signal a job's process group");
        }
    }
}

/// Now, as the core's timestamp (milliseconds since the Unix epoch).
pub(crate) fn now_timestamp() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use torc_core::model::{FailureHandler, FailureRule, Resources};
    use torc_core::{JobId, WorkflowId};

    fn job() -> ClaimedJob {
        ClaimedJob {
            workflow_id: WorkflowId(3),
            job_id: JobId(7),
            run_id: 1,
            attempt_id: 2,
            name: "j".into(),
            command: "true".into(),
            invocation_script: None,
            resources: Resources::DEFAULT_JOB,
            supports_termination: false,
            timeout: None,
            env: BTreeMap::new(),
            stdio: Default::default(),
            timeout_exit_code: 152,
            failure_handler: None,
            time_series: None,
            limits: Default::default(),
        }
    }

    #[test]
    fn stdio_names_follow_the_spec() {
        let (o, e) = stdio_paths(Path::new("/out/job_stdio"), &job());
        assert_eq!(o, PathBuf::from("/out/job_stdio/job_wf3_j7_r1_a2.o"));
        assert_eq!(e, PathBuf::from("/out/job_stdio/job_wf3_j7_r1_a2.e"));
    }

    #[test]
    fn return_codes() {
        assert_eq!(return_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(return_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(return_code(ExitStatus::from_raw(libc::SIGKILL)), -9);
        assert_eq!(return_code(ExitStatus::from_raw(libc::SIGTERM)), -15);
    }

    #[test]
    fn recovery_needs_a_rule_retries_left_and_a_script() {
        let mut j = job();
        assert_eq!(recovery_script_for(&j, 1), None);
        j.failure_handler = Some(FailureHandler {
            name: "h".into(),
            rules: vec![
                FailureRule {
                    exit_codes: vec![1],
                    match_all_exit_codes: false,
                    recovery_script: Some("fix.sh".into()),
                    max_retries: 2,
                },
                FailureRule {
                    exit_codes: vec![2],
                    match_all_exit_codes: false,
                    recovery_script: Some("  ".into()),
                    max_retries: 5,
                },
            ],
        });
        assert_eq!(recovery_script_for(&j, 1), Some("fix.sh"));
        assert_eq!(recovery_script_for(&j, 2), None);
        assert_eq!(recovery_script_for(&j, 3), None);
        j.attempt_id = 3;
        assert_eq!(recovery_script_for(&j, 1), None);
    }

    #[test]
    fn start_failures_say_why_and_whose_fault() {
        let os = io::Error::from_raw_os_error;
        let output = |errno| StartError::Output {
            path: "/out/job_stdio/a.o".into(),
            source: os(errno),
        };
        let spawn = |errno| StartError::Spawn {
            program: "bash".into(),
            command_bytes: 200_000,
            source: os(errno),
        };
        for (e, says) in [
            (output(libc::EACCES), "not writable by the runner"),
            (output(libc::ENOSPC), "the disk is full"),
            (output(libc::EDQUOT), "quota"),
            (output(libc::EROFS), "read-only"),
            (spawn(libc::ENOENT), "not on the runner's PATH"),
            (spawn(libc::EAGAIN), "process limit"),
        ] {
            assert!(e.to_string().contains(says), "{e}");
            assert!(e.is_local(), "{e}");
        }
        let long = spawn(libc::E2BIG);
        assert!(
            long.to_string().contains("the command is 200000 bytes"),
            "{long}"
        );
        assert!(!long.is_local(), "a command too long is the job's fault");
    }

    #[test]
    fn never_signals_own_group() {
        // Would kill the test process if the guard were missing.
        signal_group(0, libc::SIGKILL);
        signal_group(1, libc::SIGKILL);
    }

    #[test]
    fn the_shell_is_found_once_on_path_unless_the_job_sets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, exe) = (dir.path().join("plain"), dir.path().join("exe"));
        for d in [&plain, &exe] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("bash"), "#!/bin/sh\n").unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(exe.join("bash"), mode).unwrap();
        let path = std::env::join_paths([&plain, &exe]).unwrap();
        // Not executable: skipped, as exec would.
        assert_eq!(find_on_path("bash", Some(&path)), Some(exe.join("bash")));
        assert_eq!(find_on_path("bash", Some(plain.as_os_str())), None);
        assert_eq!(find_on_path("bash", None), None);
        let relative_first = std::env::join_paths([Path::new("bin"), &exe]).unwrap();
        assert_eq!(find_on_path("bash", Some(&relative_first)), None);

        let mut own = job();
        own.env.insert("PATH".into(), exe.display().to_string());
        assert_eq!(shell_for(&own), "bash");
        // This test process has bash on its PATH (every job of the suite needs it).
        let found = Path::new(shell_for(&job()));
        assert!(found.is_absolute() && found.ends_with("bash"), "{found:?}");
    }
}
