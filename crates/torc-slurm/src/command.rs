//! Slurm's commands: the only place that runs them. Each call builds its `Command`, runs it and
//! hands what it printed to a pure `parse_*` function (unit-tested with captured output).
//!
//! - submit: `sbatch --parsable SCRIPT` → job id (`ID` or `ID;CLUSTER`);
//! - query: `squeue -h -t all -j IDS -o '%i|%T|%e|%r'`, then, for ids squeue no longer lists,
//!   `sacct -n -P -X -j IDS -o JobID,State,ExitCode,Start,End` where accounting is kept;
//! - cancel: `scancel IDS`;
//! - partitions: `sinfo -h -o '%P|%l|%c|%m|%G|%D'`;
//! - an allocation's end time: `squeue -h -t all -j ID -o %e`.
//!
//! These calls block until the command exits (Slurm's commands give up on an unreachable
//! controller by themselves, after their `MessageTimeout`).

use crate::state::{AllocationState, EndReason, SlurmJobId};
use crate::time::{parse_local_timestamp, parse_time_limit, TimeError, TimeLimit};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// The `squeue` fields a query asks for, in this order.
const SQUEUE_FORMAT: &str = "%i|%T|%e|%r";
/// The `sacct` fields a query asks for, in this order.
const SACCT_FORMAT: &str = "JobID,State,ExitCode,Start,End";
/// The `sinfo` fields `partitions` asks for, in this order.
const SINFO_FORMAT: &str = "%P|%l|%c|%m|%G|%D";
/// Job ids per `squeue`/`sacct`/`scancel` call: keeps command lines short.
const IDS_PER_CALL: usize = 500;

/// A Slurm command that could not be run, failed, or printed something we cannot read.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} not found {}", where_(.bin_dir))]
    NotFound {
        program: &'static str,
        /// The directory it was looked for in; `None`: `PATH`.
        bin_dir: Option<PathBuf>,
    },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("{program} failed ({}): {}", status_(.code), stderr_(.stderr))]
    Failed {
        program: &'static str,
        /// Its exit code; `None` when a signal ended it.
        code: Option<i32>,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    #[error("unexpected output from {program}: {problem} (in `{line}`)")]
    Output {
        program: &'static str,
        line: String,
        problem: OutputProblem,
    },
}

fn where_(bin_dir: &Option<PathBuf>) -> String {
    match bin_dir {
        Some(dir) => format!("in {}", dir.display()),
        None => "on PATH".to_string(),
    }
}

fn status_(code: &Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    }
}

fn stderr_(stderr: &str) -> &str {
    if stderr.is_empty() {
        "it printed nothing on stderr"
    } else {
        stderr
    }
}

/// What is wrong with a line a Slurm command printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputProblem {
    #[error("no output")]
    Empty,
    #[error("expected {expected} `|`-separated fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error(transparent)]
    JobId(#[from] crate::state::BadJobId),
    #[error(transparent)]
    State(#[from] crate::state::UnknownState),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("field `{field}` is not a number: `{value}`")]
    Number { field: &'static str, value: String },
    #[error("exit code `{0}` is not CODE:SIGNAL")]
    ExitCode(String),
}

/// What Slurm says about one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub id: SlurmJobId,
    pub state: AllocationState,
    /// When it ended or, while it is running, when its time limit ends it; `None` when there is
    /// no such time (pending, or no time limit).
    pub end_time: Option<SystemTime>,
    /// Slurm's reason (why it is pending, or why it ended): `Priority`, `Resources`,
    /// `NonZeroExitCode`, `TimeLimit`, …; `None` when Slurm gives none.
    pub reason: Option<String>,
    /// The batch script's exit, when accounting (`sacct`) reported it.
    pub exit: Option<SlurmExit>,
}

/// An exit as `sacct` reports it: `CODE:SIGNAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlurmExit {
    pub code: u32,
    pub signal: u32,
}

/// One partition (one line of `sinfo`: a partition whose nodes differ in CPUs or memory is
/// listed once per kind of node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// Whether it is the default partition (`*` after its name in `sinfo`).
    pub default: bool,
    pub max_time: TimeLimit,
    /// CPUs per node (the smallest, when Slurm prints `N+`).
    pub cpus_per_node: u32,
    /// Memory per node in MB (the smallest, when Slurm prints `N+`).
    pub memory_per_node_mb: u64,
    /// Generic resources per node (`gpu:4`), `None` when there are none.
    pub gres: Option<String>,
    pub nodes: u32,
}

/// Runs Slurm's commands, found on `PATH` or in one directory.
#[derive(Clone, Default)]
pub struct Slurm {
    bin_dir: Option<PathBuf>,
    /// Variables set for every command, beside the inherited environment.
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Slurm {
    /// Names the variables set, never their values (one may be a token).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slurm")
            .field("bin_dir", &self.bin_dir)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl Slurm {
    /// Slurm's commands from `PATH`.
    pub fn new() -> Slurm {
        Slurm::default()
    }

    /// Slurm's commands from `dir`.
    pub fn with_bin_dir(dir: impl Into<PathBuf>) -> Slurm {
        Slurm {
            bin_dir: Some(dir.into()),
            env: Vec::new(),
        }
    }

    /// The same, with `key=value` in every command's environment (`sbatch` hands its
    /// environment on to the batch script).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Slurm {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self, program: &'static str) -> Command {
        let mut cmd = match &self.bin_dir {
            Some(dir) => Command::new(dir.join(program)),
            None => Command::new(program),
        };
        cmd.stdin(Stdio::null())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `program args`; its stdout when it exits 0.
    fn run<S: AsRef<OsStr>>(
        &self,
        program: &'static str,
        args: &[S],
    ) -> Result<String, CommandError> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => CommandError::NotFound {
                    program,
                    bin_dir: self.bin_dir.clone(),
                },
                _ => CommandError::Spawn { program, source: e },
            })?;
        if !out.status.success() {
            return Err(CommandError::Failed {
                program,
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether Slurm's command `program` is there to run (in the directory given, or on
    /// `PATH`).
    pub fn has(&self, program: &str) -> bool {
        match &self.bin_dir {
            Some(dir) => dir.join(program).is_file(),
            None => std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            }),
        }
    }

    /// Submits a batch script: `sbatch --parsable SCRIPT`.
    pub fn submit(&self, script: &Path) -> Result<SlurmJobId, CommandError> {
        parse_submit(&self.run("sbatch", &[OsStr::new("--parsable"), script.as_os_str()])?)
    }

    /// The status of each of `ids`, in the order given. An id that neither `squeue` nor `sacct`
    /// knows is [`EndReason::Forgotten`].
    pub fn query(&self, ids: &[SlurmJobId]) -> Result<Vec<JobStatus>, CommandError> {
        let mut found: BTreeMap<SlurmJobId, JobStatus> = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            for status in self.squeue(chunk)? {
                found.insert(status.id, status);
            }
        }
        let missing: Vec<SlurmJobId> = ids
            .iter()
            .copied()
            .filter(|id| !found.contains_key(id))
            .collect();
        for chunk in missing.chunks(IDS_PER_CALL) {
            let list = id_list(chunk);
            match self.run(
                "sacct",
                &["-n", "-P", "-X", "-j", &list, "-o", SACCT_FORMAT],
            ) {
                Ok(out) => {
                    for status in parse_sacct(&out)? {
                        if chunk.contains(&status.id) {
                            found.insert(status.id, status);
                        }
                    }
                }
                // No accounting here: what left squeue is forgotten.
                Err(CommandError::NotFound { .. }) => {}
                Err(CommandError::Failed { stderr, .. })
                    if stderr.contains("accounting storage is disabled") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                found.get(id).cloned().unwrap_or(JobStatus {
                    id: *id,
                    state: AllocationState::Ended(EndReason::Forgotten),
                    end_time: None,
                    reason: None,
                    exit: None,
                })
            })
            .collect())
    }

    /// `squeue` about `ids`. squeue fails with "Invalid job id" when the one id it is given is
    /// unknown, or when one id is out of Slurm's range (several unknown ids give an empty answer
    /// instead): then each id is asked alone, so that the others are still answered.
    fn squeue(&self, ids: &[SlurmJobId]) -> Result<Vec<JobStatus>, CommandError> {
        let list = id_list(ids);
        match self.run(
            "squeue",
            &["-h", "-t", "all", "-j", &list, "-o", SQUEUE_FORMAT],
        ) {
            Ok(out) => parse_squeue(&out),
            Err(CommandError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
                if ids.len() == 1 {
                    return Ok(Vec::new());
                }
                let mut all = Vec::new();
                for id in ids {
                    all.extend(self.squeue(std::slice::from_ref(id))?);
                }
                Ok(all)
            }
            Err(e) => Err(e),
        }
    }

    /// Cancels `ids`: `scancel IDS`. Cancelling a job that has ended is not an error.
    pub fn cancel(&self, ids: &[SlurmJobId]) -> Result<(), CommandError> {
        for chunk in ids.chunks(IDS_PER_CALL) {
            let args: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
            self.run("scancel", &args)?;
        }
        Ok(())
    }

    /// The partitions this user may submit to: `sinfo -h -o '%P|%l|%c|%m|%G|%D'`.
    pub fn partitions(&self) -> Result<Vec<Partition>, CommandError> {
        parse_sinfo(&self.run("sinfo", &["-h", "-o", SINFO_FORMAT])?)
    }

    /// When allocation `id` ends (its time limit), from `squeue -h -t all -j ID -o %e`; `None`
    /// when it has no time limit or is not running yet.
    pub fn end_time(&self, id: SlurmJobId) -> Result<Option<SystemTime>, CommandError> {
        let out = self.run(
            "squeue",
            &["-h", "-t", "all", "-j", &id.to_string(), "-o", "%e"],
        )?;
        parse_end_time(&out)
    }
}

fn id_list(ids: &[SlurmJobId]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn output_error(
    program: &'static str,
    line: &str,
    problem: impl Into<OutputProblem>,
) -> CommandError {
    CommandError::Output {
        program,
        line: line.to_string(),
        problem: problem.into(),
    }
}

/// Splits `line` into exactly `n` `|`-separated fields (the last keeps any further `|`).
fn fields<'a>(
    program: &'static str,
    line: &'a str,
    n: usize,
) -> Result<Vec<&'a str>, CommandError> {
    let parts: Vec<&str> = line.splitn(n, '|').collect();
    if parts.len() != n {
        return Err(output_error(
            program,
            line,
            OutputProblem::FieldCount {
                expected: n,
                found: parts.len(),
            },
        ));
    }
    Ok(parts)
}

fn lines(out: &str) -> impl Iterator<Item = &str> {
    out.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Reads `sbatch --parsable`: `ID` or `ID;CLUSTER`.
pub fn parse_submit(out: &str) -> Result<SlurmJobId, CommandError> {
    let line = lines(out)
        .next()
        .ok_or_else(|| output_error("sbatch", out, OutputProblem::Empty))?;
    let id = line.split(';').next().unwrap_or(line);
    id.parse()
        .map_err(|e| output_error("sbatch", line, OutputProblem::JobId(e)))
}

fn reason(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "None" && s != "(null)").then(|| s.to_string())
}

/// Reads `squeue -h -o '%i|%T|%e|%r'`.
pub fn parse_squeue(out: &str) -> Result<Vec<JobStatus>, CommandError> {
    let p = "squeue";
    lines(out)
        .map(|line| {
            let f = fields(p, line, 4)?;
            Ok(JobStatus {
                id: f[0]
                    .parse()
                    .map_err(|e| output_error(p, line, OutputProblem::JobId(e)))?,
                state: f[1]
                    .parse()
                    .map_err(|e| output_error(p, line, OutputProblem::State(e)))?,
                end_time: parse_local_timestamp(f[2]).map_err(|e| output_error(p, line, e))?,
                reason: reason(f[3]),
                exit: None,
            })
        })
        .collect()
}

/// Reads `sacct -n -P -j IDS -o JobID,State,ExitCode,Start,End`, keeping allocations only
/// (a job step's line, `ID.batch` or `ID.0`, is skipped).
pub fn parse_sacct(out: &str) -> Result<Vec<JobStatus>, CommandError> {
    let p = "sacct";
    lines(out)
        .filter(|line| !line.split('|').next().unwrap_or("").contains('.'))
        .map(|line| {
            let f = fields(p, line, 5)?;
            let exit = match f[2].split_once(':') {
                Some((c, s)) => match (c.parse(), s.parse()) {
                    (Ok(code), Ok(signal)) => SlurmExit { code, signal },
                    _ => return Err(output_error(p, line, OutputProblem::ExitCode(f[2].into()))),
                },
                None => return Err(output_error(p, line, OutputProblem::ExitCode(f[2].into()))),
            };
            Ok(JobStatus {
                id: f[0]
                    .parse()
                    .map_err(|e| output_error(p, line, OutputProblem::JobId(e)))?,
                state: f[1]
                    .parse()
                    .map_err(|e| output_error(p, line, OutputProblem::State(e)))?,
                end_time: parse_local_timestamp(f[4]).map_err(|e| output_error(p, line, e))?,
                reason: None,
                exit: Some(exit),
            })
        })
        .collect()
}

/// A count as `sinfo` prints it: `N`, or `N+` (nodes differ; the smallest).
fn count<T: std::str::FromStr>(
    field: &'static str,
    line: &str,
    s: &str,
) -> Result<T, CommandError> {
    let digits = s.trim().trim_end_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(number_error(field, line, s));
    }
    digits.parse().map_err(|_| number_error(field, line, s))
}

fn number_error(field: &'static str, line: &str, value: &str) -> CommandError {
    output_error(
        "sinfo",
        line,
        OutputProblem::Number {
            field,
            value: value.to_string(),
        },
    )
}

/// Reads `sinfo -h -o '%P|%l|%c|%m|%G|%D'`.
pub fn parse_sinfo(out: &str) -> Result<Vec<Partition>, CommandError> {
    let p = "sinfo";
    lines(out)
        .map(|line| {
            let f = fields(p, line, 6)?;
            let (name, default) = match f[0].strip_suffix('*') {
                Some(name) => (name, true),
                None => (f[0], false),
            };
            let gres = f[4].trim();
            Ok(Partition {
                name: name.to_string(),
                default,
                max_time: parse_time_limit(f[1]).map_err(|e| output_error(p, line, e))?,
                cpus_per_node: count("CPUs", line, f[2])?,
                memory_per_node_mb: count("memory", line, f[3])?,
                gres: (!gres.is_empty() && gres != "(null)").then(|| gres.to_string()),
                nodes: count("nodes", line, f[5])?,
            })
        })
        .collect()
}

/// Reads `squeue -h -j ID -o %e`: a local time, or `NONE`/`N/A`/`Unknown` for none.
pub fn parse_end_time(out: &str) -> Result<Option<SystemTime>, CommandError> {
    let line = lines(out)
        .next()
        .ok_or_else(|| output_error("squeue", out, OutputProblem::Empty))?;
    parse_local_timestamp(line).map_err(|e| output_error("squeue", line, e))
}

#[cfg(test)]
mod tests;
