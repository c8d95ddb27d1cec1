//! `torc-server`: the torc server. It opens the database, starts the engine and serves the REST
//! API of `torc-http` until SIGTERM or SIGINT, then stops gracefully: no new connections,
//! requests in flight are answered, the last group commit is written, then it exits.
//!
//! `hash-token` and `new-token` help write its auth configuration.
//!
//! Wiring only: it must never hold logic of its own (that is `torc-http`'s and the engine's).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};
use torc_core::api::ActionCapabilities;
use torc_core::changes::WorkflowState;
use torc_core::WorkflowId;
use torc_engine::EngineHandle;
use torc_http::auth::{hash_token, new_token};
use torc_http::{AuthConfig, Server, ServerConfig};
use torc_runner::executor::{self, ExecutorPool, LaunchSettings};
use torc_store::Store;
use tracing_subscriber::EnvFilter;

/// The torc server: workflows' state, served over HTTP under /torc-service/v1.
///
/// Without --auth-config it listens on 127.0.0.1 only and trusts every local caller. With it,
/// every request needs a bearer token of the file (or one an admin created with
/// `torc tokens create`); see "Authentication" in the README.
#[derive(Debug, Parser)]
#[command(name = "torc-server", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Users, groups and tokens (YAML): turns authentication on. Required to listen on
    /// anything but a loopback address.
    #[arg(long, env = "TORC_AUTH_CONFIG", value_name = "FILE")]
    auth_config: Option<PathBuf>,
    /// Database: `sqlite:PATH` or a path (created if missing).
    #[arg(long, env = "TORC_DATABASE_URL", default_value = "torc.db")]
    database: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Without --auth-config: a further name that requests may give in Host (and Origin)
    /// besides 127.0.0.1, localhost and [::1] with the port listened on, as NAME (any port) or
    /// NAME:PORT; repeat for more. Other requests a browser could send from another web site
    /// (a foreign Host or Origin, a POST whose body is not declared JSON or YAML) are refused.
    #[arg(long = "allowed-host", value_name = "NAME[:PORT]")]
    allowed_hosts: Vec<String>,
    /// Port to listen on (0 picks a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long)]
    workers: Option<usize>,
    /// Answer requests once the database has their changes, before its disk does (SQLite:
    /// synchronous=NORMAL; PostgreSQL: synchronous_commit=off). Faster on slow disks, but a
    /// machine crash (SQLite) or database crash (PostgreSQL) may lose the last commits: a job
    /// reported done may then run again, and one already handed out may be handed out again.
    /// The database itself stays consistent. Default: nothing is answered before it is on disk.
    #[arg(long)]
    relaxed_durability: bool,
    /// Seconds a runner may stay silent before its jobs are taken back and run again elsewhere.
    /// Runners heartbeat well within it.
    #[arg(long, default_value_t = 60.0, value_parser = positive_secs)]
    lease_secs: f64,
    /// Times a job may be lost with its runner in one run before it is terminated instead.
    #[arg(long, default_value_t = 3)]
    max_job_losses: u32,
    /// Carry out every workflow's actions from here (run this server where `sbatch` works,
    /// on a login node): Slurm allocations when they trigger, re-requests for ready work whose
    /// allocation died, cancellation of allocations with no work left, `run_commands` in this
    /// directory. Allocations' runners get the token from TORC_API_TOKEN in this server's
    /// environment (sbatch passes it on), if the server requires one.
    #[arg(long)]
    execute_actions: bool,
    /// Specs read at once by `POST /workflows` [default: half the cores, 1 to 8]; a creation
    /// past it waits its turn for up to --spec-parse-secs, then gets 503 (clients retry).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    spec_parses: Option<u32>,
    /// Seconds a spec may take to be read, validated and expanded before its creation is
    /// refused (422). The spec budgets bound the work; this bounds the time.
    #[arg(long, default_value_t = 60.0, value_parser = positive_secs)]
    spec_parse_secs: f64,
    /// With --execute-actions: seconds between looks.
    #[arg(long, default_value_t = 5.0, value_parser = positive_secs)]
    actions_secs: f64,
    /// With --execute-actions: the torc-runner allocations start [default: the one beside this
    /// program].
    #[arg(long, value_name = "PATH")]
    runner_bin: Option<PathBuf>,
    /// With --execute-actions: the workflows' output directory, for allocations' runners.
    #[arg(long, default_value = "torc_output", env = "TORC_OUTPUT_DIR")]
    output_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the sha256 line for a token read from standard input (one line), for the auth
    /// configuration: `tokens: [{name, user, sha256: <this>}]`.
    HashToken,
    /// Make a new random token: prints the token (give it to its holder) and its sha256 (for
    /// the auth configuration).
    NewToken,
}

/// `hash-token` and `new-token`.
fn token_command(command: &Command) -> Result<()> {
    match command {
        Command::HashToken => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("token (then Enter):");
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the token")?;
            let token = line.trim();
            if token.is_empty() {
                bail!("no token on standard input");
            }
            println!("{}", hash_token(token));
        }
        Command::NewToken => {
            let token = new_token()?;
            println!("token: {token}");
            println!("sha256: {}", hash_token(&token));
        }
    }
    Ok(())
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=1e9).contains(&v) => Ok(v),
        Ok(_) => Err("must be a number of seconds from 0.05 to 1e9".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(command) = &args.command {
        return token_command(command);
    }
    let mut config = ServerConfig::new(&args.database);
    if let Some(path) = &args.auth_config {
        config.auth = Some(AuthConfig::load(path)?);
    }
    config.host = args.host;
    config.allowed_hosts = args.allowed_hosts;
    config.port = args.port;
    config.workers = args.workers;
    if args.relaxed_durability {
        config.durability = torc_http::Durability::Relaxed;
        tracing::warn!(
            "relaxed durability: the last commits may be lost if the machine or database crashes"
        );
    }
    if let Some(n) = args.spec_parses {
        config.limits.spec_parses = n as usize;
    }
    config.limits.spec_parse_time = std::time::Duration::from_secs_f64(args.spec_parse_secs);
    config.leases = torc_engine::LeasePolicy {
        lease: torc_core::units::duration_from_secs_f64(args.lease_secs),
        max_losses: args.max_job_losses,
    };
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let server = Server::start(config)
        .await
        .with_context(|| format!("cannot start the server on database {}", args.database))?;
    println!("torc-server listening on {}", server.url());
    let actions = if args.execute_actions {
        let launch = LaunchSettings {
            runner_bin: executor::runner_bin(args.runner_bin.as_deref())
                .map_err(anyhow::Error::msg)?,
            api_url: server.url(),
            output_dir: std::path::absolute(&args.output_dir)
                .with_context(|| format!("--output-dir {}", args.output_dir.display()))?,
        };
        let can = ActionCapabilities {
            slurm: executor::on_path("sbatch"),
            local_runners: true,
            run_commands: true,
        };
        if !can.slurm {
            tracing::warn!(
                "--execute-actions: no sbatch on PATH; Slurm actions are left to others"
            );
        }
        let name = format!(
            "server:{}:{}",
            torc_runner::hostname().unwrap_or_else(|| "localhost".into()),
            std::process::id()
        );
        let engine = std::sync::Arc::new(server.engine().clone());
        let pool = ExecutorPool::new(engine, name, can, launch);
        let every = torc_core::units::duration_from_secs_f64(args.actions_secs);
        Some(tokio::spawn(execute_actions(
            pool,
            server.store().clone(),
            every,
        )))
    } else {
        None
    };
    let stop = server.stop_handle();
    let stopper = tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully"),
            _ = int.recv() => tracing::info!("SIGINT: stopping gracefully"),
        }
        stop.stop(true).await;
    });
    server.wait().await.context("the server failed")?;
    stopper.abort();
    if let Some(task) = actions {
        task.abort();
    }
    Ok(())
}

/// Steps the executors of every active workflow, for ever.
async fn execute_actions(
    mut pool: ExecutorPool<EngineHandle>,
    store: Store,
    every: std::time::Duration,
) {
    loop {
        let reader = store.clone();
        match tokio::task::spawn_blocking(move || reader.list_workflows()).await {
            Ok(Ok(list)) => {
                let active: Vec<WorkflowId> = list
                    .iter()
                    .filter(|w| w.state == WorkflowState::Active)
                    .map(|w| w.id)
                    .collect();
                for (id, line) in pool.step_all(&active).await {
                    tracing::info!(workflow = %id, "{line}");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot list workflows for their actions"),
            Err(e) => tracing::warn!(error = %e, "cannot list workflows for their actions"),
        }
        tokio::time::sleep(every).await;
    }
}
