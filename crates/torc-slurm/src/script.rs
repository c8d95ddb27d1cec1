//! Batch scripts for allocations: `#SBATCH` lines from a `slurm_schedulers` entry and
//! `slurm_defaults`, and a body that starts `torc-runner` (one per node, through `srun`, with
//! `start_one_worker_per_node`).
//!
//! Every value that lands in the script is quoted for the reader that reads it (sbatch for
//! `#SBATCH` lines, bash for the body), and values holding a line break or a NUL are refused:
//! a newline in, say, a partition name would start a line of its own (another `#SBATCH`
//! directive, or a command).

use crate::quote::{sbatch_quote, shell_quote};
use crate::time::{parse_time_limit, TimeError, TimeLimit};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use torc_core::WorkflowId;

/// One `slurm_schedulers` entry: a kind of allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerParams {
    pub name: String,
    /// `--account`; may come from `slurm_defaults` instead.
    pub account: Option<String>,
    pub partition: Option<String>,
    /// `--nodes`, at least 1.
    pub nodes: u32,
    /// `--time`, as Slurm writes it: `HH:MM:SS`, `D-HH:MM:SS`, `MM`, ….
    pub walltime: String,
    /// `--mem`, as Slurm writes it (`180G`, `4000`: MB).
    pub mem: Option<String>,
    /// `--gres` (`gpu:2`).
    pub gres: Option<String>,
    pub qos: Option<String>,
    pub ntasks_per_node: Option<u32>,
    /// `--tmp` (`100G`).
    pub tmp: Option<String>,
    /// Raw extra sbatch arguments for one `#SBATCH` line, written as given
    /// (`--exclusive --constraint=skylake`).
    pub extra: Option<String>,
}

impl SchedulerParams {
    /// A scheduler with the spec's defaults: one node for an hour, nothing else set.
    pub fn new(name: impl Into<String>) -> SchedulerParams {
        SchedulerParams {
            name: name.into(),
            account: None,
            partition: None,
            nodes: 1,
            walltime: "01:00:00".to_string(),
            mem: None,
            gres: None,
            qos: None,
            ntasks_per_node: None,
            tmp: None,
            extra: None,
        }
    }
}

/// How the allocation starts its runner. The runner serves the jobs of the scheduler the
/// script is made for (`--scheduler NAME`); it reads its token from `TORC_API_TOKEN`, which
/// sbatch passes on from the submitter's environment: a token never appears in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerLaunch {
    /// The `torc-runner` binary: an absolute path, since the script runs on another node, in
    /// another directory.
    pub runner_bin: PathBuf,
    pub api_url: String,
    pub workflow_id: WorkflowId,
    /// One runner per node (`srun --ntasks-per-node=1`) rather than one on the first node.
    pub start_one_worker_per_node: bool,
    /// The workflow's output directory: Slurm's own output goes to `OUTPUT_DIR/slurm/`.
    pub output_dir: PathBuf,
    /// More arguments for the runner, after the ones the script sets.
    pub extra_args: Vec<String>,
}

/// Why a batch script could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{field} `{value}` holds a line break or NUL, which cannot go into a batch script")]
    BadChar { field: String, value: String },
    #[error("{field} is not valid UTF-8: `{}`", .path.display())]
    NotUtf8 { field: String, path: PathBuf },
    #[error("scheduler `{scheduler}`: nodes must be at least 1")]
    ZeroNodes { scheduler: String },
    #[error("scheduler `{scheduler}`: ntasks_per_node must be at least 1")]
    ZeroTasks { scheduler: String },
    #[error("scheduler `{scheduler}`: walltime: {source}")]
    Walltime {
        scheduler: String,
        source: TimeError,
    },
    #[error("scheduler `{scheduler}`: walltime `{walltime}` must be a finite, non-zero time")]
    UnlimitedWalltime { scheduler: String, walltime: String },
    #[error("the runner binary must be an absolute path, not `{}`", .path.display())]
    RelativeRunner { path: PathBuf },
    #[error(
        "output directory `{}` holds a backslash, which would stop Slurm from filling in %j \
         in its output file names", .path.display()
    )]
    BackslashInOutputDir { path: PathBuf },
    #[error("slurm_defaults: `{key}` is not an sbatch long option name")]
    DefaultKey { key: String },
}

/// A rendered batch script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchScript {
    text: String,
    job_name: String,
    slurm_output_dir: PathBuf,
}

/// Options torc always sets; `slurm_defaults` cannot replace them.
const OWN_OPTIONS: &[&str] = &["job-name", "nodes", "time", "output", "error"];

impl BatchScript {
    /// Renders the script for one allocation of `sched`. `defaults` are `slurm_defaults`: long
    /// sbatch options (`account`, `--constraint`, `cpus_per_task`: a leading `--` is optional
    /// and `_` stands for `-`) given to every allocation, except those the scheduler sets itself
    /// (the scheduler wins) and those torc sets (job name, nodes, time, output files). An empty
    /// value gives a flag (`exclusive: ""` → `--exclusive`).
    pub fn new(
        sched: &SchedulerParams,
        defaults: &BTreeMap<String, String>,
        launch: &RunnerLaunch,
    ) -> Result<BatchScript, ScriptError> {
        let sname = &sched.name;
        let field = |what: &str| format!("scheduler `{sname}`: {what}");
        check(&field("name"), sname)?;
        if sched.nodes == 0 {
            return Err(ScriptError::ZeroNodes {
                scheduler: sname.clone(),
            });
        }
        if sched.ntasks_per_node == Some(0) {
            return Err(ScriptError::ZeroTasks {
                scheduler: sname.clone(),
            });
        }
        check(&field("walltime"), &sched.walltime)?;
        match parse_time_limit(&sched.walltime) {
            Ok(TimeLimit::Limited(_)) => {}
            Ok(TimeLimit::Unlimited) => {
                return Err(ScriptError::UnlimitedWalltime {
                    scheduler: sname.clone(),
                    walltime: sched.walltime.clone(),
                })
            }
            Err(source) => {
                return Err(ScriptError::Walltime {
                    scheduler: sname.clone(),
                    source,
                })
            }
        }
        if !launch.runner_bin.is_absolute() {
            return Err(ScriptError::RelativeRunner {
                path: launch.runner_bin.clone(),
            });
        }
        let runner_bin = path_str("runner binary", &launch.runner_bin)?;
        check("runner binary", runner_bin)?;
        check("API URL", &launch.api_url)?;
        for arg in &launch.extra_args {
            check("runner argument", arg)?;
        }
        let output_dir = path_str("output directory", &launch.output_dir)?;
        check("output directory", output_dir)?;
        if output_dir.contains('\\') {
            return Err(ScriptError::BackslashInOutputDir {
                path: launch.output_dir.clone(),
            });
        }
        let slurm_output_dir = launch.output_dir.join("slurm");
        // Slurm reads `%` in file names as a pattern: `%%` is a `%`.
        let slurm_dir = path_str("output directory", &slurm_output_dir)?.replace('%', "%%");

        let job_name = format!("torc_wf{}_{}", launch.workflow_id, sname);

        // (option, value); `None`: a flag.
        let mut options: Vec<(String, Option<String>)> = Vec::new();
        let mut set = |key: &str, value: Option<String>| options.push((key.to_string(), value));
        set("job-name", Some(job_name.clone()));
        let optional = [("account", &sched.account), ("partition", &sched.partition)];
        for (key, value) in optional {
            if let Some(v) = value {
                check(&field(key), v)?;
                set(key, Some(v.clone()));
            }
        }
        set("nodes", Some(sched.nodes.to_string()));
        set("time", Some(sched.walltime.clone()));
        let optional = [
            ("mem", &sched.mem),
            ("gres", &sched.gres),
            ("qos", &sched.qos),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                check(&field(key), v)?;
                set(key, Some(v.clone()));
            }
        }
        if let Some(n) = sched.ntasks_per_node {
            set("ntasks-per-node", Some(n.to_string()));
        }
        if let Some(v) = &sched.tmp {
            check(&field("tmp"), v)?;
            set("tmp", Some(v.clone()));
        }
        set("output", Some(format!("{slurm_dir}/slurm_%j.out")));
        set("error", Some(format!("{slurm_dir}/slurm_%j.err")));
        let taken: Vec<String> = options.iter().map(|(k, _)| k.clone()).collect();
        for (raw_key, value) in defaults {
            let key = default_key(raw_key)?;
            check(&format!("slurm_defaults: {raw_key}"), value)?;
            if taken.contains(&key) || OWN_OPTIONS.contains(&key.as_str()) {
                continue;
            }
            options.push((key, (!value.is_empty()).then(|| value.clone())));
        }

        let mut text = String::from("#!/bin/bash\n");
        for (key, value) in &options {
            match value {
                Some(v) => text.push_str(&format!("#SBATCH --{key}={}\n", sbatch_quote(v))),
                None => text.push_str(&format!("#SBATCH --{key}\n")),
            }
        }
        if let Some(extra) = &sched.extra {
            check(&field("extra"), extra)?;
            if !extra.trim().is_empty() {
                text.push_str("#SBATCH ");
                text.push_str(extra.trim());
                text.push('\n');
            }
        }

        text.push_str(
            "\n# A torc allocation: the runner serves the jobs of this workflow's scheduler and\n",
        );
        text.push_str("# exits when no job for it can come.\n");
        let mut argv: Vec<String> = vec!["exec".into()];
        if launch.start_one_worker_per_node {
            // `--overlap`: the runners' step must not hold the CPUs and memory their jobs use.
            argv.extend(
                [
                    "srun",
                    "--ntasks-per-node=1",
                    "--nodes=\"$SLURM_JOB_NUM_NODES\"",
                    "--overlap",
                ]
                .map(String::from),
            );
        }
        argv.push(shell_quote(runner_bin).into_owned());
        let workflow = launch.workflow_id.to_string();
        for (flag, value) in [
            ("--url", launch.api_url.as_str()),
            ("--workflow", &workflow),
            ("--scheduler", sname),
            ("--output-dir", output_dir),
        ] {
            argv.push(flag.into());
            argv.push(shell_quote(value).into_owned());
        }
        argv.extend(
            launch
                .extra_args
                .iter()
                .map(|a| shell_quote(a).into_owned()),
        );
        text.push_str(&argv.join(" "));
        text.push('\n');

        Ok(BatchScript {
            text,
            job_name,
            slurm_output_dir,
        })
    }

    /// The script.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The allocation's job name: `torc_wf<WORKFLOW>_<SCHEDULER>`.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// The directory Slurm writes the allocation's stdout and stderr to: it must exist when the
    /// allocation starts ([`BatchScript::write`] creates it).
    pub fn slurm_output_dir(&self) -> &Path {
        &self.slurm_output_dir
    }

    /// Writes the script to `path` (executable) and creates [`Self::slurm_output_dir`].
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(&self.slurm_output_dir)?;
        std::fs::write(path, &self.text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }
}

/// Refuses a value that would break out of its line.
fn check(field: &str, value: &str) -> Result<(), ScriptError> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(ScriptError::BadChar {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

fn path_str<'a>(field: &str, path: &'a Path) -> Result<&'a str, ScriptError> {
    path.to_str().ok_or_else(|| ScriptError::NotUtf8 {
        field: field.to_string(),
        path: path.to_path_buf(),
    })
}

/// A `slurm_defaults` key as an sbatch long option name: `--` dropped, `_` as `-`.
fn default_key(raw: &str) -> Result<String, ScriptError> {
    let key = raw.strip_prefix("--").unwrap_or(raw).replace('_', "-");
    let ok = key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(ScriptError::DefaultKey {
            key: raw.to_string(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
