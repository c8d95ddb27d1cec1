//! `torc submit` and `torc slurm script`: carrying out a workflow's actions from where the user
//! is (a login node): Slurm allocations through `sbatch`, local runners, commands.

use crate::cli::{Global, SlurmScriptArgs, SubmitArgs};
use crate::out::{errln, outln};
use crate::run::{load_spec, runtime};
use crate::Exit;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use torc_core::api::{ActionCapabilities, Coordinator};
use torc_core::WorkflowId;
use torc_runner::executor::{
    self, batch_script, on_path, AllocationRunner, Executor, LaunchSettings,
};

/// The `torc-runner` beside this `torc`, or the one given (a missing one is a usage error).
fn runner_bin(given: Option<&Path>) -> Result<PathBuf> {
    executor::runner_bin(given).map_err(|message| Exit { code: 2, message }.into())
}

fn launch(global: &Global, url: &str, runner: PathBuf) -> Result<LaunchSettings> {
    let output_dir = std::path::absolute(&global.output_dir)
        .with_context(|| format!("output directory {}", global.output_dir.display()))?;
    Ok(LaunchSettings {
        runner_bin: runner,
        api_url: url.to_string(),
        output_dir,
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
    let s = batch_script(
        WorkflowId(args.workflow.unwrap_or(0)),
        scheduler,
        &def.slurm_defaults,
        &launch(global, &url, runner)?,
        AllocationRunner {
            one_per_node: args.one_worker_per_node,
            wait_for_new_jobs_seconds: def.compute_node.wait_for_new_jobs_seconds,
            headroom_seconds: def.execution.sigkill_headroom_seconds,
            srun_jobs: def.execution.mode == torc_core::model::ExecutionMode::Slurm,
        },
    )
    .with_context(|| {
        format!(
            "cannot write the batch script of scheduler {}",
            scheduler.name
        )
    })?;
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
        slurm: on_path("sbatch"),
        local_runners: true,
        run_commands: true,
    };
    let executor = format!(
        "submit:{}:{}",
        torc_runner::hostname().unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    let mut exec = Executor::new(
        Arc::new(client),
        id,
        executor,
        can,
        Some(launch(global, &url, runner)?),
    )
    .elastic(args.watch);
    let poll = torc_core::units::duration_from_secs_f64(args.poll_secs.max(0.1));
    let mut failures = 0u32;
    loop {
        match rt.block_on(exec.step()) {
            Ok(step) => {
                failures = 0;
                for line in &step.lines {
                    outln!("{line}");
                }
                if !args.watch {
                    // What was submitted must reach the server before we go.
                    rt.block_on(exec.step())?;
                    return Ok(());
                }
                if step.workflow_state.is_done() {
                    // Once more: the cancellations a finished workflow calls for.
                    for line in rt.block_on(exec.step())?.lines {
                        outln!("{line}");
                    }
                    outln!("workflow {id} is {}", step.workflow_state.name());
                    return Ok(());
                }
            }
            // The server may restart under a long watch: carry on, but not for ever.
            Err(e) if e.is_transient() && args.watch && failures < 30 => {
                failures += 1;
                errln!("server unavailable ({e}); trying again");
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(poll);
    }
}

/// After `torc workflows cancel`: cancels the workflow's live allocations (queued and running)
/// with `scancel`, when there are any and Slurm is here. Returns what it did, for the user.
pub fn cancel_allocations<C: Coordinator>(
    rt: &tokio::runtime::Runtime,
    coord: Arc<C>,
    id: WorkflowId,
) -> Result<Vec<String>> {
    let name = format!(
        "cancel:{}:{}",
        torc_runner::hostname().unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    let mut exec =
        Executor::new(coord, id, name, ActionCapabilities::default(), None).elastic(true);
    let step = rt.block_on(exec.step())?;
    // The queue's last word on the ones it cancelled.
    rt.block_on(exec.step())?;
    Ok(step.lines)
}
