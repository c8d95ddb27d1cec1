//! `torc recover ID`: more memory for jobs killed for memory, more time for jobs stopped for
//! time, a failed-only reset, and (locally) a run.
//!
//! Which jobs to raise is decided by `torc_core::recover::plan`; [`recover_once`] applies one
//! round of it through a [`Recoverable`] (the embedded engine or a server), so that a loop
//! watching a workflow can call it as failures happen.

use crate::cli::{Global, RecoverArgs, RunArgs};
use crate::out::{errln, outln};
use crate::progress::{Local, Watched};
use crate::Exit;
use anyhow::Result;
use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use torc_core::changes::{EndReason, JobResult};
use torc_core::recover::{plan, schedulers_of};
use torc_core::sched::{ResourceScale, StatusSummary};
use torc_core::units::{format_duration, format_memory};
use torc_core::{JobId, WorkflowDef, WorkflowId};
use torc_engine::EngineHandle;
use torc_http::{HttpClient, ResourcesChanged};

/// What [`recover_once`] needs of wherever the workflow lives.
pub trait Recoverable: Watched {
    fn scale(
        &self,
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
    ) -> impl Future<Output = Result<ResourcesChanged>> + Send;
    fn reset_failed(&self, id: WorkflowId) -> impl Future<Output = Result<StatusSummary>> + Send;
    /// The definition, where it can be read (not over a server's API).
    fn def(&self, id: WorkflowId) -> impl Future<Output = Result<Option<WorkflowDef>>> + Send;
}

impl Recoverable for Local {
    async fn scale(
        &self,
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
    ) -> Result<ResourcesChanged> {
        Ok(self
            .engine
            .scale_job_resources(id, job, scale)
            .await?
            .into())
    }

    async fn reset_failed(&self, id: WorkflowId) -> Result<StatusSummary> {
        Ok(self.engine.reset(id, true).await?)
    }

    async fn def(&self, id: WorkflowId) -> Result<Option<WorkflowDef>> {
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load_workflow(id)).await??;
        Ok(Some(loaded.def))
    }
}

impl Recoverable for HttpClient {
    async fn scale(
        &self,
        id: WorkflowId,
        job: JobId,
        scale: ResourceScale,
    ) -> Result<ResourcesChanged> {
        let req = torc_http::ScaleRequest {
            memory_factor: scale.memory_factor,
            runtime_factor: scale.runtime_factor,
        };
        Ok(self.scale_job_resources(id, job, req).await?)
    }

    async fn reset_failed(&self, id: WorkflowId) -> Result<StatusSummary> {
        Ok(self.reset(id, true).await?.into_summary())
    }

    async fn def(&self, _id: WorkflowId) -> Result<Option<WorkflowDef>> {
        Ok(None)
    }
}

/// One job given more.
#[derive(Debug, Clone)]
pub struct Raised {
    pub name: String,
    pub reason: EndReason,
    pub change: ResourcesChanged,
}

/// What one round of recovery did.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub raised: Vec<Raised>,
    /// The workflow after its reset; `None` when nothing was raised (and nothing reset).
    pub after: Option<StatusSummary>,
    /// Slurm schedulers whose allocations the raised jobs need, with those jobs' names; `None`
    /// when the definition could not be read (over a server's API).
    pub schedulers: Option<BTreeMap<String, Vec<String>>>,
}

/// Every result of the workflow, page by page.
async fn all_results<R: Recoverable>(r: &R, id: WorkflowId) -> Result<Vec<JobResult>> {
    let mut all = Vec::new();
    loop {
        let page = r.results(id, all.len() as u64).await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page.iter().map(|r| r.to_job_result()));
    }
}

/// One round: raises the memory of the current run's jobs killed for memory and the runtime of
/// those stopped for time (by the factors), then resets the failed jobs and their downstream.
/// Resets nothing when there is nothing to raise. Refused while jobs of the workflow are
/// pending or running (the reset would be).
pub async fn recover_once<R: Recoverable>(
    r: &R,
    id: WorkflowId,
    memory_factor: f64,
    runtime_factor: f64,
) -> Result<Recovery> {
    let run_id = r.status(id).await?.run_id;
    let results = all_results(r, id).await?;
    let raises = plan(&results, run_id, memory_factor, runtime_factor);
    if raises.is_empty() {
        return Ok(Recovery::default());
    }
    let mut raised = Vec::with_capacity(raises.len());
    for x in &raises {
        let change = r.scale(id, x.job, x.scale).await?;
        raised.push(Raised {
            name: r.job_name(id, x.job).await?,
            reason: x.reason,
            change,
        });
    }
    let schedulers = r.def(id).await?.map(|def| {
        schedulers_of(&def, &raises)
            .into_iter()
            .map(|(s, jobs)| {
                let names = jobs
                    .iter()
                    .filter_map(|j| def.job(*j).map(|d| d.name.clone()))
                    .collect();
                (s, names)
            })
            .collect()
    });
    let after = r.reset_failed(id).await?;
    Ok(Recovery {
        raised,
        after: Some(after),
        schedulers,
    })
}

/// Where allocations for the recovered jobs of Slurm schedulers would be submitted again. Not
/// done yet: the allocations are asked for by `torc submit ID` (its actions), and this says
/// so for each scheduler.
pub fn resubmit_allocations(id: WorkflowId, schedulers: &BTreeMap<String, Vec<String>>) {
    for (scheduler, jobs) in schedulers {
        errln!(
            "note: {} job(s) of scheduler {scheduler} ({}) need its allocations: they are not \
             submitted again by recover yet; run `torc --url URL submit {id}` for them",
            jobs.len(),
            jobs.join(", ")
        );
    }
}

fn describe(r: &Raised) -> String {
    let c = &r.change;
    let what = match r.reason {
        EndReason::Memory => format!(
            "memory {} -> {}",
            format_memory(c.memory_bytes_before),
            format_memory(c.memory_bytes)
        ),
        _ => {
            let secs = |s: f64| format_duration(torc_core::units::duration_from_secs_f64(s));
            let mut parts = Vec::new();
            if c.requirement.is_some() {
                parts.push(format!(
                    "runtime {} -> {}",
                    secs(c.runtime_secs_before),
                    secs(c.runtime_secs)
                ));
            }
            if let (Some(a), Some(b)) = (c.timeout_secs_before, c.timeout_secs) {
                parts.push(format!("timeout {} -> {}", secs(a), secs(b)));
            }
            if parts.is_empty() {
                parts.push("no runtime to raise (no resource requirement, no timeout)".into());
            }
            parts.join(", ")
        }
    };
    let req = match (&c.requirement, c.created) {
        (Some(name), true) => format!(" (new requirement {name}, a copy of a shared one)"),
        (Some(name), false) => format!(" (requirement {name})"),
        (None, _) => String::new(),
    };
    let why = match r.reason {
        EndReason::Memory => "killed for memory",
        EndReason::AllocationEnd => "stopped at its allocation's end",
        _ => "stopped for time",
    };
    format!("job {} ({}), {why}: {what}{req}", c.job_id, r.name)
}

fn check_factor(name: &str, f: f64) -> Result<()> {
    if f.is_finite() && f >= 1.0 {
        return Ok(());
    }
    Err(Exit {
        code: 2,
        message: format!("{name} must be a number of at least 1 (it raises), not {f}"),
    }
    .into())
}

/// `torc recover ID`.
pub fn recover(global: &Global, args: &RecoverArgs) -> Result<ExitCode> {
    check_factor("--memory-factor", args.memory_factor)?;
    check_factor("--runtime-factor", args.runtime_factor)?;
    let id = WorkflowId(args.workflow_id);
    let factors = (args.memory_factor, args.runtime_factor);
    let rt = crate::run::runtime()?;
    let recovery = match &global.url {
        Some(url) => {
            let client = global.client(url)?;
            rt.block_on(recover_once(&client, id, factors.0, factors.1))?
        }
        None => {
            let store = crate::run::open_existing_store(global)?;
            let local = Local {
                engine: EngineHandle::start(store.clone())?,
                store,
            };
            rt.block_on(recover_once(&local, id, factors.0, factors.1))?
            // The engine stops here: the run below starts its own on the same database.
        }
    };
    drop(rt);
    for r in &recovery.raised {
        outln!("{}", describe(r));
    }
    let Some(after) = &recovery.after else {
        outln!("workflow {id}: no job of the current run was killed for memory or stopped for time; nothing to recover");
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(schedulers) = &recovery.schedulers {
        resubmit_allocations(id, schedulers);
    }
    outln!(
        "workflow {id}: {} job(s) raised; reset for run {}",
        recovery.raised.len(),
        after.run_id
    );
    if global.url.is_some() || args.no_run {
        if global.url.is_some() {
            outln!("the server's runners take them from here");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let run = RunArgs {
        spec_or_id: id.0.to_string(),
        max_parallel_jobs: None,
        num_cpus: None,
        memory: None,
        num_gpus: None,
        grace_period: None,
        quiet: args.quiet,
        relaxed_durability: false,
    };
    crate::run::run(global, &run)
}
