//! `torc-server`: the torc server. It opens the database, starts the engine and serves the REST
//! API of `torc-http` until SIGTERM or SIGINT, then stops gracefully: no new connections,
//! requests in flight are answered, the last group commit is written, then it exits.
//!
//! Wiring only: it must never hold logic of its own (that is `torc-http`'s and the engine's).

use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use torc_http::{Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// The torc server: workflows' state, served over HTTP under /torc-service/v1.
#[derive(Debug, Parser)]
#[command(name = "torc-server", version)]
struct Args {
    /// Database: `sqlite:PATH` or a path (created if missing).
    #[arg(long, env = "TORC_DATABASE_URL", default_value = "torc.db")]
    database: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long)]
    workers: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = ServerConfig::new(&args.database);
    config.host = args.host;
    config.port = args.port;
    config.workers = args.workers;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let server = Server::start(config)
        .await
        .with_context(|| format!("cannot start the server on database {}", args.database))?;
    println!("torc-server listening on {}", server.url());
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
    Ok(())
}
