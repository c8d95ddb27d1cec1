//! `torc submit` and `torc slurm script`: carrying out a workflow's actions from where the user
//! is (a login node): Slurm allocations through `sbatch`, local runners, commands.

use crate::cli::{Global, SlurmScriptArgs, SubmitArgs};
use crate::out::{errln, outln};
use crate::run::{load_spec, runtime};
use crate::Exit;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use torc_core::api::{ActionCapabilities, ActionClaimRequest, ClaimedAction};
use torc_core::model::{ActionKind, SchedulerType, SlurmScheduler};
use torc_core::WorkflowId;
use torc_slurm::{BatchScript, RunnerLaunch, SchedulerParams, Slurm};

/// The `torc-runner` beside this `torc`, or the one given.
fn runner_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return std::fs::canonicalize(p).with_context(|| format!("--runner-bin {}", p.display()));
    }
    let me = std::env::current_exe().context("cannot find this program's path")?;
    let beside = me.with_file_name("torc-runner");
    if !beside.exists() {
        return Err(Exit {
            code: 2,
            message: format!(
                "no torc-runner beside {} (pass --runner-bin PATH)",
                me.display()
            ),
        }
        .into());
    }
    Ok(beside)
}

fn params_of(s: &SlurmScheduler) -> SchedulerParams {
    let mut p = SchedulerParams::new(&s.name);
    p.account = Some(s.account.clone()).filter(|a| !a.is_empty());
    p.partition = s.partition.clone();
    p.nodes = s.nodes;
    p.walltime = s.walltime.clone();
    p.mem = s.mem.clone();
    p.gres = s.gres.clone();
    p.qos = s.qos.clone();
    p.tmp = s.tmp.clone();
    p.extra = s.extra.clone();
    p.ntasks_per_node = s.ntasks_per_node;
    p
}

/// The batch script of one allocation of `scheduler` for workflow `id`.
fn script(
    scheduler: &SlurmScheduler,
    defaults: &std::collections::BTreeMap<String, String>,
    launch: RunnerLaunch,
) -> Result<BatchScript> {
    BatchScript::new(&params_of(scheduler), defaults, &launch).with_context(|| {
        format!(
            "cannot write the batch script of scheduler {}",
            scheduler.name
        )
    })
}

fn launch(
    global: &Global,
    url: &str,
    id: WorkflowId,
    runner: PathBuf,
    one_per_node: bool,
    wait_secs: u32,
) -> Result<RunnerLaunch> {
    let output_dir = std::path::absolute(&global.output_dir)
        .with_context(|| format!("output directory {}", global.output_dir.display()))?;
    Ok(RunnerLaunch {
        runner_bin: runner,
        api_url: url.to_string(),
        workflow_id: id,
        start_one_worker_per_node: one_per_node,
        output_dir,
        extra_args: vec!["--idle-timeout".into(), wait_secs.to_string()],
    })
}

/// `torc slurm script SPEC --scheduler S`: the batch script an allocation would get.
pub fn slurm_script(global: &Global, args: &SlurmScriptArgs) -> Result<()> {
    let (expanded, _, _) = load_spec(&args.spec)?;
    let def = &expanded.def;
    let Some(scheduler) = def
        .slurm_schedulers
        .iter()
        .find(|s| s.name == args.scheduler)
    else {
        let known: Vec<&str> = def
            .slurm_schedulers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(Exit {
            code: 2,
            message: format!(
                "no slurm scheduler `{}` in {} (it has: {})",
                args.scheduler,
                args.spec.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }
        .into());
    };
    let url = global
        .url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let runner = runner_bin(args.runner_bin.as_deref())?;
    let l = launch(
        global,
        &url,
        WorkflowId(args.workflow.unwrap_or(0)),
        runner,
        args.one_worker_per_node,
        def.compute_node.wait_for_new_jobs_seconds,
    )?;
    let s = script(scheduler, &def.slurm_defaults, l)?;
    outln!("{}", s.text());
    Ok(())
}

/// `torc submit SPEC|ID [--watch]`.
pub fn submit(global: &Global, args: &SubmitArgs) -> Result<()> {
    let Some(url) = global.url.clone() else {
        return Err(Exit {
            code: 2,
            message: "torc submit needs a server: pass --url URL (or set TORC_API_URL)".into(),
        }
        .into());
    };
    let client = global.client(&url)?;
    let rt = runtime()?;
    let id = match args.target.parse::<i64>() {
        Ok(n) => WorkflowId(n),
        Err(_) => {
            let (_, text, format) = load_spec(Path::new(&args.target))?;
            rt.block_on(client.create_workflow(text, format))?.id
        }
    };
    outln!("workflow {id}");
    let runner = runner_bin(args.runner_bin.as_deref())?;
    let can = ActionCapabilities {
        slurm: which("sbatch"),
        local_runners: true,
        run_commands: true,
    };
    let executor = format!(
        "submit:{}:{}",
        torc_runner::hostname().unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    loop {
        let answer = rt.block_on(client.claim_actions(&ActionClaimRequest {
            workflow_id: id,
            executor: executor.clone(),
            can,
        }))?;
        for action in &answer.actions {
            carry_out(global, &url, id, &runner, action)?;
        }
        if !args.watch || answer.workflow_state.is_done() {
            if args.watch {
                outln!("workflow {id} is {}", answer.workflow_state.name());
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(args.poll_secs.max(0.1)));
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn carry_out(
    global: &Global,
    url: &str,
    id: WorkflowId,
    runner: &Path,
    action: &ClaimedAction,
) -> Result<()> {
    match &action.kind {
        ActionKind::RunCommands { commands } => {
            for c in commands {
                let status = Command::new("bash")
                    .arg("-c")
                    .arg(c)
                    .status()
                    .with_context(|| format!("cannot run `{c}`"))?;
                if !status.success() {
                    errln!("action command `{c}` failed: {status}");
                }
            }
        }
        ActionKind::ScheduleNodes {
            scheduler_type: SchedulerType::Local,
            num_allocations,
            max_parallel_jobs,
            ..
        } => {
            for _ in 0..*num_allocations {
                start_local_runner(global, url, id, runner, *max_parallel_jobs)?;
            }
        }
        ActionKind::ScheduleNodes {
            scheduler_type: SchedulerType::Slurm,
            num_allocations,
            start_one_worker_per_node,
            ..
        } => {
            let Some(scheduler) = &action.scheduler else {
                errln!(
                    "action {} names no known slurm scheduler; skipped",
                    action.action_index
                );
                return Ok(());
            };
            let slurm = Slurm::new();
            for n in 0..*num_allocations {
                let l = launch(
                    global,
                    url,
                    id,
                    runner.to_path_buf(),
                    *start_one_worker_per_node,
                    action.wait_for_new_jobs_seconds,
                )?;
                let s = script(scheduler, &action.slurm_defaults, l)?;
                let path = s.slurm_output_dir().join(format!(
                    "wf{}_{}_a{}_{}.sh",
                    id, scheduler.name, action.record, n
                ));
                s.write(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let job = slurm.submit(&path)?;
                outln!("allocation {job} (scheduler {}) submitted", scheduler.name);
            }
        }
    }
    Ok(())
}

/// A runner on this machine for the workflow, detached: its output goes to a log file.
fn start_local_runner(
    global: &Global,
    url: &str,
    id: WorkflowId,
    runner: &Path,
    max_parallel_jobs: Option<u32>,
) -> Result<()> {
    std::fs::create_dir_all(&global.output_dir)?;
    let log_path = global
        .output_dir
        .join(format!("runner_wf{id}_{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(runner);
    cmd.arg("--url")
        .arg(url)
        .arg("--workflow")
        .arg(id.0.to_string())
        .arg("--output-dir")
        .arg(&global.output_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(n) = max_parallel_jobs {
        cmd.arg("--max-parallel-jobs").arg(n.to_string());
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", runner.display()))?;
    outln!(
        "local runner {} started (log: {})",
        child.id(),
        log_path.display()
    );
    Ok(())
}
