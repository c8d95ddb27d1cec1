//! `torc-runner`: runs one workflow's jobs (`--workflow ID`), or as a shared runner the jobs of
//! every workflow it may serve (`--shared`), on this machine for a torc server. It builds an
//! `HttpClient` for the server and hands it to `torc_runner::run`, which claims jobs that fit,
//! runs them and reports back; it exits 0 when the workflow is complete (failed jobs included:
//! the counts are printed), canceled, or idle past `--idle-timeout`; 130 when stopped by a
//! signal; 1 on error; 2 on bad arguments.
//!
//! Wiring only: it must never decide anything about jobs (the server does) nor run them itself
//! (the runner library does).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use torc_core::alloc::{AllocationState, AllocationUpdate};
use torc_core::api::{ActionCapabilities, RunnerTags};
use torc_core::{RunnerId, WorkflowId};
use torc_http::HttpClient;
use torc_runner::executor::{self, Executor, LaunchSettings};
use torc_runner::secret::{self, SealError, SealedToken, TokenOrigin};
use torc_runner::{Capacity, RunEnd, RunnerConfig, Shutdown};
use tracing_subscriber::EnvFilter;

/// What `--help` says of who can reach what.
const TRUST_MODEL: &str = "\
Trust model: jobs run as this runner's Unix user. They never get its token: it is not in their
environment, nor in /proc/<runner>/environ, cmdline or mem (the runner starts itself again
without it in its environment or command line, and is not dumpable). But a job can do whatever
that user can: read a token file the user can read (`--token-file /dev/stdin` leaves none),
the environment of the user's other processes (a shell that exported TORC_API_TOKEN), and all
the user's files. A runner shared by several people's workflows is therefore only as isolated
as its user: give each tenant a runner user of its own with a token scoped to that tenant's
workflows, and never run a runner as root (its jobs could read anything).";

/// Runs a workflow's jobs (or, with --shared, those of every workflow it may serve) on this
/// machine for a torc server.
#[derive(Debug, Parser)]
#[command(name = "torc-runner", version, after_help = TRUST_MODEL)]
struct Args {
    /// The server, `http://HOST:PORT`.
    #[arg(long, env = "TORC_API_URL")]
    url: String,
    /// The bearer token, for a server that requires one: a user's, a runner token for this
    /// workflow, or (with --shared) one scoped to a user's or a group's workflows (prefer
    /// --token-file or the environment variable: a command line is visible to other users
    /// until the runner has started again without it).
    #[arg(long, env = "TORC_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from this file (its first line), e.g. `/dev/stdin` for a pipe.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The workflow whose jobs to run.
    #[arg(long, required_unless_present = "shared", conflicts_with = "shared")]
    workflow: Option<i64>,
    /// Serve every active workflow the server lets this runner serve, picking fairly among them
    /// (the workflow with the fewest jobs running first); runs until stopped or idle past
    /// `--idle-timeout`.
    #[arg(long)]
    shared: bool,
    /// Labels (tags) this runner offers, comma-separated: it takes a tagged job only if it has all of the
    /// job's tags, and untagged jobs only with `--run-untagged`. A shared runner without tags
    /// takes untagged jobs only; a `--workflow` runner without tags takes every job.
    /// (`--label` is Torc's name for them; `--labels` and `--tags` are the same option.)
    #[arg(long = "label", visible_aliases = ["labels", "tags"], value_delimiter = ',')]
    tags: Vec<String>,
    /// With `--label`: take unlabelled jobs too.
    #[arg(long)]
    run_untagged: bool,
    /// Serve the jobs of this Slurm scheduler (the `slurm_schedulers` entry named in the
    /// spec), plus jobs without a scheduler: what an allocation's batch script passes. Inside
    /// an allocation the runner offers only jobs that fit in the time left (its end, from
    /// Slurm, less `--end-headroom-secs`), and exits after `--idle-timeout` (default 90 s)
    /// with nothing to run.
    #[arg(long)]
    scheduler: Option<String>,
    /// Inside an allocation: stop claiming this many seconds before its end, and stop what
    /// still runs then (recorded as stopped for time, with the job's timeout exit code).
    #[arg(long, default_value_t = 60)]
    end_headroom_secs: u64,
    /// Inside an allocation: run each job as a Slurm step (`srun --exact` with the job's CPUs,
    /// memory and GPUs), so Slurm places it and enforces its limits
    /// (`execution_config.mode: slurm` passes it).
    #[arg(long)]
    srun_jobs: bool,
    /// CPUs to offer [default: detected].
    #[arg(long)]
    num_cpus: Option<u32>,
    /// Memory to offer, e.g. `16g` [default: detected].
    #[arg(long)]
    memory: Option<String>,
    /// GPUs to offer [default: detected].
    #[arg(long)]
    num_gpus: Option<u32>,
    /// Count-based: at most N jobs at once whatever they need (instead of resources).
    #[arg(long)]
    max_parallel_jobs: Option<u32>,
    /// Directory for job output (job_stdio/).
    #[arg(long, default_value = "torc_output", env = "TORC_OUTPUT_DIR")]
    output_dir: PathBuf,
    /// Exit after this many seconds with nothing to run.
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// This runner's name [default: HOSTNAME:PID].
    #[arg(long)]
    runner_id: Option<String>,
    /// Seconds between heartbeats, which keep this runner's lease on its jobs (a third of the
    /// server's lease at most, whatever is given here).
    #[arg(long, default_value_t = 10.0)]
    heartbeat_secs: f64,
    /// Do not carry out the workflow's actions. By default a `--workflow` runner also takes
    /// the triggered actions it can do here: `run_commands` (in its directory) and, when
    /// `sbatch` is on its PATH, `schedule_nodes` of Slurm schedulers.
    #[arg(long)]
    no_actions: bool,
    /// After this many jobs in a row could not start on this machine (output directory not
    /// writable, disk full, no `bash`, process limits), stop claiming, let running jobs
    /// finish, and exit 1 (0: never).
    #[arg(long, default_value_t = RunnerConfig::DEFAULT_MAX_LOCAL_FAILURES, value_name = "N")]
    max_local_failures: u32,
    /// Seconds between looks for triggered actions.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    actions_secs: f64,
}

fn capacity(args: &Args) -> Result<Capacity> {
    if let Some(n) = args.max_parallel_jobs {
        if n == 0 {
            bail!("--max-parallel-jobs must be at least 1");
        }
        return Ok(Capacity::MaxParallelJobs(n));
    }
    let detected = torc_runner::detect_resources();
    let memory_bytes = match &args.memory {
        Some(m) => torc_core::units::parse_memory(m).with_context(|| format!("--memory {m}"))?,
        None => detected.memory_bytes,
    };
    Ok(Capacity::Resources {
        num_cpus: args.num_cpus.unwrap_or(detected.num_cpus),
        memory_bytes,
        num_gpus: args.num_gpus.unwrap_or(detected.num_gpus),
    })
}

fn config(args: &Args, client: &HttpClient) -> Result<RunnerConfig> {
    let host = torc_runner::hostname().unwrap_or_else(|| "localhost".into());
    let runner_id =
        (args.runner_id.clone()).unwrap_or_else(|| format!("{host}:{}", std::process::id()));
    let mut config = RunnerConfig::new(
        WorkflowId(args.workflow.unwrap_or(0)),
        RunnerId(runner_id),
        capacity(args)?,
        args.output_dir.clone(),
    );
    config.api_url = Some(client.api_url().to_string());
    config.shared = args.shared;
    config.max_local_failures = args.max_local_failures;
    let tags: Vec<String> = args
        .tags
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if args.run_untagged && tags.is_empty() {
        bail!("--run-untagged needs --label (a runner without labels runs unlabelled jobs anyway)");
    }
    if args.srun_jobs {
        if std::env::var_os("SLURM_JOB_ID").is_none() {
            bail!("--srun-jobs runs jobs as steps of a Slurm allocation: there is none here (no SLURM_JOB_ID)");
        }
        config.srun_jobs = true;
    }
    if let Some(scheduler) = &args.scheduler {
        config.tags = Some(RunnerTags::for_scheduler(scheduler, &tags));
        config.idle_timeout = Some(Duration::from_secs(90));
        allocation_limits(args, &mut config);
    } else if args.shared || !tags.is_empty() {
        config.tags = Some(RunnerTags {
            tags,
            run_untagged: args.run_untagged,
        });
    }
    config.heartbeat_interval = Some(
        Duration::try_from_secs_f64(args.heartbeat_secs)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--heartbeat-secs must be > 0")?,
    );
    if let Some(secs) = args.idle_timeout {
        let t = Duration::try_from_secs_f64(secs).context("--idle-timeout must be >= 0")?;
        config.idle_timeout = Some(t);
    }
    Ok(config)
}

/// Inside a Slurm allocation: claims fit in the time left before its end (less the headroom),
/// and without `--num-cpus`/`--memory` the allocation's CPUs and memory are what is offered.
fn allocation_limits(args: &Args, config: &mut RunnerConfig) {
    let alloc = match torc_slurm::Allocation::discover(&torc_slurm::Slurm::new()) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Slurm allocation; running without its limits");
            return;
        }
    };
    let headroom = Duration::from_secs(args.end_headroom_secs);
    if let Some(left) = alloc.time_left(std::time::SystemTime::now()) {
        config.time_left = Some(left.saturating_sub(headroom));
    }
    if let Capacity::Resources {
        num_cpus,
        memory_bytes,
        ..
    } = &mut config.capacity
    {
        if args.num_cpus.is_none() && alloc.cpus_on_node > 0 {
            *num_cpus = alloc.cpus_on_node;
        }
        if let (None, Some(mb)) = (&args.memory, alloc.memory_per_node_mb) {
            *memory_bytes = mb.saturating_mul(1 << 20);
        }
    }
    // Runners of a many-node allocation start together: their first jobs spread over about a
    // second per node (at most 30 s), for workflows with `staggered_start`.
    if alloc.num_nodes > 1 {
        config.stagger_window = Some(Duration::from_secs(u64::from(alloc.num_nodes.min(30))));
    }
    tracing::info!(job = %alloc.job_id, time_left = ?config.time_left, "serving a Slurm allocation");
}

/// The Slurm job this runner serves, when it was started by an allocation's script.
fn slurm_job_id(args: &Args) -> Option<u64> {
    args.scheduler.as_ref()?;
    std::env::var("SLURM_JOB_ID").ok()?.trim().parse().ok()
}

/// The executor of the workflow's actions beside the runner (none for a shared runner or with
/// `--no-actions`). Inside an allocation it first says the allocation runs.
fn executor(
    args: &Args,
    config: &RunnerConfig,
    client: &Arc<HttpClient>,
    token: Option<String>,
) -> Result<Option<Executor<HttpClient>>> {
    if config.shared || args.no_actions {
        return Ok(None);
    }
    let can = ActionCapabilities {
        slurm: executor::on_path("sbatch"),
        local_runners: false,
        run_commands: true,
    };
    let launch = LaunchSettings {
        runner_bin: std::env::current_exe().context("cannot find this program's path")?,
        api_url: client.api_url().to_string(),
        output_dir: std::path::absolute(&args.output_dir)
            .with_context(|| format!("--output-dir {}", args.output_dir.display()))?,
    };
    let mut exec = Executor::new(
        Arc::clone(client),
        config.workflow_id,
        config.runner_id.0.clone(),
        can,
        Some(launch),
    )
    .with_token(token);
    if let Some(id) = slurm_job_id(args) {
        exec.report(AllocationUpdate::Seen {
            batch_id: id,
            state: AllocationState::Running,
            note: String::new(),
        });
    }
    Ok(Some(exec))
}

/// The token: from --token-file, or as [`secret::seal_token`] took it out of the command line
/// or the environment.
fn token(args: &Args, sealed: Result<Option<SealedToken>, SealError>) -> Result<Option<String>> {
    let sealed = sealed.context("--token or TORC_API_TOKEN")?;
    if let Some(s) = &sealed {
        if s.origin == TokenOrigin::CommandLine {
            tracing::warn!("--token on the command line is visible to every user here while the runner starts: prefer --token-file or TORC_API_TOKEN");
        }
        if let Some(e) = &s.still_exposed {
            tracing::warn!(error = %e, "cannot start again without the token: it stays in this process's /proc environ or cmdline");
        }
    }
    match (&args.token_file, sealed) {
        (Some(_), Some(s)) if s.origin == TokenOrigin::CommandLine => {
            bail!("give --token or --token-file, not both")
        }
        (Some(path), _) => {
            let t = secret::read_token_file(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            Ok(Some(t))
        }
        (None, Some(s)) => Ok(Some(s.token)),
        (None, None) => Ok(args.token.clone()),
    }
}

fn main() -> ExitCode {
    // First, while this is the only thread: the token leaves this process's environment and
    // command line (see `torc_runner::secret`).
    let sealed = secret::seal_token("--token", "TORC_API_TOKEN");
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let token = match token(&args, sealed) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match torc_runner::runtime() {
        Ok(runtime) => runtime.block_on(serve(args, token)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args, token: Option<String>) -> ExitCode {
    let setup = HttpClient::new(&args.url)
        .and_then(|client| match &token {
            Some(token) => client.with_token(token),
            None => Ok(client),
        })
        .map_err(anyhow::Error::from)
        .and_then(|client| Ok((config(&args, &client)?, client)));
    let (config, client) = match setup {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let shutdown = Shutdown::new();
    let _signals = match torc_runner::install_signal_handlers(shutdown.clone()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let what = if config.shared {
        "shared runner".to_string()
    } else {
        format!("workflow {}", config.workflow_id)
    };
    let client = Arc::new(client);
    let executor = match executor(&args, &config, &client, token) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let interval = torc_core::units::duration_from_secs_f64(args.actions_secs.max(0.5));
    let actions = executor.map(|mut exec| {
        tokio::spawn(async move {
            executor::run_until(&mut exec, interval, async {
                drop(stop_rx.await);
            })
            .await;
            exec
        })
    });
    let outcome = torc_runner::run(Arc::clone(&client), config, shutdown).await;
    stop_tx.send(()).ok();
    if let Some(task) = actions {
        if let Ok(mut exec) = task.await {
            if let Some(id) = slurm_job_id(&args) {
                exec.report(AllocationUpdate::Seen {
                    batch_id: id,
                    state: AllocationState::Ended,
                    note: "its runner exited".into(),
                });
            }
            if let Err(e) = exec.step().await {
                tracing::warn!(error = %e, "cannot report the end of this allocation");
            }
        }
    }
    match outcome {
        Ok(s) => {
            println!(
                "{what}: {:?}; this runner: {} completed, {} failed, {} terminated, {} refused, {} taken back",
                s.end, s.completed, s.failed, s.terminated, s.refused, s.revoked
            );
            match s.end {
                RunEnd::Shutdown => ExitCode::from(130),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("error: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
