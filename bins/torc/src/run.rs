//! `torc run`: a runner on this machine, against the embedded engine (SQLite file, one process)
//! or against a server (`--url`).

use crate::cli::{Global, RunArgs};
use crate::out::{errln, outln};
use crate::progress::{Display, Local, Mode, Watched};
use crate::Exit;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use torc_core::api::Coordinator;
use torc_core::changes::WorkflowState;
use torc_core::sched::StatusSummary;
use torc_core::spec::{self, SpecFormat};
use torc_core::{JobStatus, RunnerId, WorkflowId};
use torc_engine::EngineHandle;
use torc_runner::{Capacity, Progress, RunEnd, RunnerConfig, Shutdown};
use torc_store::Store;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(global: &Global, args: &RunArgs) -> Result<ExitCode> {
    torc_runner::runtime()
        .context("cannot start the async runtime")?
        .block_on(run_async(global, args))
}

/// Reads and expands a spec file (and the tables and lists it names); bad specs become exit
/// code 2 with every problem listed. Also returns the text to store or send, and its format:
/// the file as written, or, when it names files, itself with their contents written in.
pub fn load_spec(path: &Path) -> Result<(spec::Expanded, String, SpecFormat)> {
    let text = std::fs::read_to_string(path).map_err(|e| Exit {
        code: 2,
        message: format!("cannot read spec {}: {e}", path.display()),
    })?;
    let expanded =
        spec::load_with(&text, spec_format(path), &crate::tables::SpecFiles).map_err(|errors| {
            Exit {
                code: 2,
                message: format!("{}: {errors}", path.display()),
            }
        })?;
    for w in &expanded.warnings {
        errln!("warning: {w}");
    }
    Ok(match &expanded.self_contained {
        Some(v) => {
            let json = v.to_string();
            (expanded, json, SpecFormat::Json)
        }
        None => (expanded, text, spec_format(path)),
    })
}

fn spec_format(path: &Path) -> SpecFormat {
    SpecFormat::from_path(&path.to_string_lossy())
}

/// Opens the database for reading; a missing file is an error, not a new empty database.
pub fn open_existing_store(global: &Global) -> Result<Store> {
    let db = global.db_path();
    if !db.exists() {
        return Err(Exit {
            code: 2,
            message: format!(
                "no database at {}; run a workflow with `torc run SPEC` first, or pass --db",
                db.display()
            ),
        }
        .into());
    }
    open_store(global)
}

pub fn open_store(global: &Global) -> Result<Store> {
    open_store_with(global, torc_store::Durability::Full)
}

fn open_store_with(global: &Global, durability: torc_store::Durability) -> Result<Store> {
    let db = global.db_path();
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    Store::open_sqlite_with(&db, durability)
        .with_context(|| format!("cannot open database {}", db.display()))
}

async fn run_async(global: &Global, args: &RunArgs) -> Result<ExitCode> {
    let capacity = capacity(args)?;
    // Validate before writing anything: a bad spec leaves no trace.
    let as_path = Path::new(&args.spec_or_id);
    let target = match args.spec_or_id.parse::<i64>() {
        Ok(id) if !as_path.exists() => Err(WorkflowId(id)),
        _ => Ok(load_spec(as_path)?),
    };
    std::fs::create_dir_all(&global.output_dir).with_context(|| {
        format!(
            "cannot create output directory {}",
            global.output_dir.display()
        )
    })?;
    if let Some(url) = &global.url {
        if args.relaxed_durability {
            return Err(Exit {
                code: 2,
                message: "--relaxed-durability is for the embedded database; with --url the \
                          server decides (torc-server --relaxed-durability)"
                    .into(),
            }
            .into());
        }
        let client = global.client(url)?;
        let id = match target {
            Err(id) => id,
            Ok((_, text, format)) => client.create_workflow(text, format).await?.id,
        };
        client.resume(id).await?;
        let watched = client.clone();
        return drive(
            client,
            watched,
            id,
            capacity,
            global,
            args,
            Some(url.clone()),
        )
        .await;
    }
    let durability = if args.relaxed_durability {
        torc_store::Durability::Relaxed
    } else {
        torc_store::Durability::Full
    };
    let store = open_store_with(global, durability)?;
    let engine = EngineHandle::start(store.clone())?;
    let id = match target {
        Err(id) => {
            engine.resume(id).await?;
            id
        }
        Ok((expanded, text, _)) => engine.create_workflow(expanded.def, Some(text)).await?,
    };
    let watched = Local {
        engine: engine.clone(),
        store,
    };
    drive(engine, watched, id, capacity, global, args, None).await
}

/// Runs a local runner on workflow `id` to its end, with progress and a summary.
async fn drive<C: Coordinator, W: Watched>(
    coord: C,
    watched: W,
    id: WorkflowId,
    capacity: Capacity,
    global: &Global,
    args: &RunArgs,
    api_url: Option<String>,
) -> Result<ExitCode> {
    let before = watched.status(id).await?;
    let shutdown = Shutdown::new();
    let _signals = torc_runner::install_signal_handlers(shutdown.clone())
        .context("cannot install signal handlers")?;
    let host = torc_runner::hostname().unwrap_or_default();
    let config = RunnerConfig {
        grace_period: args.grace_period.map(Duration::from_secs),
        api_url,
        ..RunnerConfig::new(
            id,
            RunnerId(format!("{}:{}", host, std::process::id())),
            capacity,
            global.output_dir.clone(),
        )
    };
    let started = Instant::now();
    let (progress, runner_progress) = tokio::sync::watch::channel(Progress::default());
    let display = match args.quiet {
        true => None,
        false => {
            let mode = match std::io::stderr().is_terminal() {
                true => Mode::Bar,
                false => Mode::Lines,
            };
            let stdio_dir = crate::stdio::dir(&global.output_dir);
            Some(Display::start(watched.clone(), id, mode, stdio_dir, runner_progress).await?)
        }
    };
    let outcome = torc_runner::run_with_progress(Arc::new(coord), config, shutdown, progress).await;
    if let Some(display) = display {
        display.finish().await;
    }
    let summary = outcome.context("the runner failed")?;
    let after = watched.status(id).await?;
    print_summary(id, &before, &after, started.elapsed())?;
    if summary.end == RunEnd::Shutdown || after.state == WorkflowState::Active {
        let place = match &global.url {
            Some(url) => format!("--url {url}"),
            None => format!("--output-dir {}", global.output_dir.display()),
        };
        errln!(
            "stopped before the end: {} job(s) terminated; resume with: torc run {id} {place}",
            summary.terminated
        );
        return Ok(ExitCode::from(130));
    }
    let failed: u64 = [
        JobStatus::Failed,
        JobStatus::Canceled,
        JobStatus::Terminated,
    ]
    .iter()
    .map(|&s| count(&after, s))
    .sum();
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn capacity(args: &RunArgs) -> Result<Capacity> {
    if let Some(n) = args.max_parallel_jobs {
        if n == 0 {
            return Err(Exit {
                code: 2,
                message: "--max-parallel-jobs must be at least 1".into(),
            }
            .into());
        }
        return Ok(Capacity::MaxParallelJobs(n));
    }
    let detected = torc_runner::detect_resources();
    let memory_bytes = match &args.memory {
        Some(m) => torc_core::units::parse_memory(m).map_err(|e| Exit {
            code: 2,
            message: format!("--memory {m}: {e}"),
        })?,
        None => detected.memory_bytes,
    };
    Ok(Capacity::Resources {
        num_cpus: args.num_cpus.unwrap_or(detected.num_cpus),
        memory_bytes,
        num_gpus: args.num_gpus.unwrap_or(detected.num_gpus),
    })
}

fn count(s: &StatusSummary, status: JobStatus) -> u64 {
    s.counts
        .iter()
        .find(|(st, _)| *st == status)
        .map_or(0, |(_, n)| *n)
}

pub(crate) fn counts_line(s: &StatusSummary) -> String {
    s.counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| format!("{n} {st}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(
    id: WorkflowId,
    before: &StatusSummary,
    after: &StatusSummary,
    took: Duration,
) -> std::io::Result<()> {
    let finished = |s| count(s, JobStatus::Completed) + count(s, JobStatus::Failed);
    let ran = finished(after).saturating_sub(finished(before));
    let secs = took.as_secs_f64();
    outln!(
        "workflow {id} {}: {} ({} jobs in {:.2} s, {:.1} jobs/s)",
        crate::out::state(after.state.name()),
        counts_line(after),
        ran,
        secs,
        ran as f64 / secs.max(1e-6)
    );
    Ok(())
}
