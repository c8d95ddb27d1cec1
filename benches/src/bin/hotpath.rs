//! The server's hot path over loopback HTTP, and a real runner process against it.
//!
//!     cargo build --release -p torc-benches -p torc-runner-cli
//!     target/release/hotpath claims               # simulated runners, no processes
//!     target/release/hotpath pipeline             # server + torc-runner vs xargs -P
//!
//! `claims`: a server in-process on 127.0.0.1:0 over a durable SQLite file in a temporary
//! directory, one flat workflow of `--jobs` jobs, and `--runners` simulated runners (tokio
//! tasks, each with its own `HttpClient`) that claim up to `--limit` jobs (count-based) and
//! report them complete at once, spawning nothing. Prints jobs/s, claim and report latency
//! percentiles and the mean group-commit size.
//!
//! `pipeline`: the same server; each round creates the spec's workflow and runs one
//! `torc-runner` process on it, then runs as many `bash -c true` with `xargs -P` at the same
//! parallelism. Rounds alternate; the medians and their ratio are printed.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use torc_benches::{median, sibling_binary};
use torc_core::api::{ClaimRequest, CompletionReport, Coordinator, ReportBatch, StartReport};
use torc_core::changes::WorkflowState;
use torc_core::spec::SpecFormat;
use torc_core::{RunnerId, Timestamp, WorkflowId};
use torc_http::{parse_sample, HttpClient, Server, ServerConfig};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Server HTTP worker threads [default: one per core].
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// The server's database, e.g. postgres://USER@127.0.0.1:PORT/DB [default: a durable
    /// SQLite file in a temporary directory].
    #[arg(long, global = true)]
    database: Option<String>,
    /// The server's relaxed durability (torc-server --relaxed-durability): commits answered
    /// before they are on disk.
    #[arg(long, global = true)]
    relaxed: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Simulated runners claim and complete a flat workflow over HTTP.
    Claims {
        #[arg(long, default_value_t = 100_000)]
        jobs: u32,
        #[arg(long, default_value_t = 16)]
        runners: usize,
        /// Jobs per claim.
        #[arg(long, default_value_t = 128)]
        limit: u32,
        /// Also run the same on this PostgreSQL database, right after, and print the ratio of
        /// the two rates (e.g. postgres://USER@127.0.0.1:PORT/DB).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// A flat workflow of `--jobs` jobs: creation time, the process's peak memory, and claim
    /// latency on it against a workflow of 1,000 jobs on the same server.
    Scale {
        #[arg(long, default_value_t = 10_000_000)]
        jobs: u32,
        /// Jobs claimed and completed on each workflow for the latency comparison.
        #[arg(long, default_value_t = 20_000)]
        sample: u32,
        #[arg(long, default_value_t = 4)]
        runners: usize,
        #[arg(long, default_value_t = 16)]
        limit: u32,
    },
    /// A spec run by one torc-runner process through the server, against xargs -P.
    Pipeline {
        #[arg(long, default_value = "examples/pipeline3001.yaml")]
        spec: PathBuf,
        /// Parallelism of both [default: the number of CPUs].
        #[arg(long)]
        parallel: Option<usize>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The torc-runner binary [default: next to this one].
        #[arg(long)]
        runner: Option<PathBuf>,
        /// Where the runner writes job output [default: the temporary directory of the
        /// database]. Job output files cost an inode each; on a busy ext4 that is not free.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
}

/// Set once from the command line: whether servers start with relaxed durability.
static RELAXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn start_server(
    dir: &std::path::Path,
    workers: Option<usize>,
    database: Option<&str>,
) -> Result<Server> {
    let db = database.map_or_else(|| dir.join("torc.db").display().to_string(), str::to_string);
    println!("database: {}", redact(&db));
    let mut config = ServerConfig::new(db);
    config.port = 0;
    config.workers = workers;
    if RELAXED.load(std::sync::atomic::Ordering::Relaxed) {
        println!("relaxed durability: commits are answered before they are on disk");
        config.durability = torc_http::Durability::Relaxed;
    }
    Ok(Server::start(config).await?)
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn print_latencies(what: &str, mut d: Vec<Duration>) {
    d.sort_unstable();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    println!(
        "{what:>7} latency over {:>6} calls: p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        d.len(),
        ms(percentile(&d, 0.50)),
        ms(percentile(&d, 0.90)),
        ms(percentile(&d, 0.99)),
        ms(*d.last().unwrap_or(&Duration::ZERO)),
    );
}

/// One simulated runner: claim, report everything claimed as done, until the workflow ends.
async fn sim_runner(
    client: HttpClient,
    id: WorkflowId,
    name: String,
    limit: u32,
    stop_after: Option<u64>,
) -> Result<(u64, Vec<Duration>, Vec<Duration>)> {
    let runner = RunnerId(name);
    let (mut done, mut claims, mut reports) = (0u64, Vec::new(), Vec::new());
    loop {
        if stop_after.is_some_and(|n| done >= n) {
            return Ok((done, claims, reports));
        }
        let req = ClaimRequest {
            workflow_id: id,
            runner_id: runner.clone(),
            limit,
            resources: None,
            wait_ms: 1_000,
            tags: None,
        };
        let t = Instant::now();
        let got = Coordinator::claim(&client, req).await?;
        claims.push(t.elapsed());
        if got.jobs.is_empty() {
            if got.workflow_state != WorkflowState::Active {
                return Ok((done, claims, reports));
            }
            continue;
        }
        let now = Timestamp(torc_store_now());
        let batch = ReportBatch {
            workflow_id: id,
            runner_id: runner.clone(),
            starts: got
                .jobs
                .iter()
                .map(|j| StartReport {
                    job_id: j.job_id,
                    attempt_id: j.attempt_id,
                    start_time: now,
                })
                .collect(),
            completions: got
                .jobs
                .iter()
                .map(|j| CompletionReport {
                    job_id: j.job_id,
                    run_id: j.run_id,
                    attempt_id: j.attempt_id,
                    return_code: 0,
                    terminated: false,
                    recovery_failed: false,
                    start_time: now,
                    end_time: now,
                    peak_memory_bytes: None,
                    avg_memory_bytes: None,
                    peak_cpu_percent: None,
                    avg_cpu_percent: None,
                    end_reason: None,
                    message: None,
                })
                .collect(),
            samples: Vec::new(),
        };
        let t = Instant::now();
        let answer = Coordinator::report(&client, batch).await?;
        reports.push(t.elapsed());
        done += got.jobs.len() as u64;
        if answer.workflow_state != WorkflowState::Active {
            return Ok((done, claims, reports));
        }
    }
}

fn torc_store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn claims(
    jobs: u32,
    runners: usize,
    limit: u32,
    workers: Option<usize>,
    database: Option<String>,
) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path(), workers, database.as_deref()).await?;
    let client = HttpClient::new(&server.url())?;
    let spec = format!(
        "name: hot{jobs}\njobs:\n  - name: j{{i}}\n    command: \"true\"\n    parameters:\n      i: \"1:{jobs}\"\n"
    );
    let t = Instant::now();
    let id = client.create_workflow(spec, SpecFormat::Yaml).await?.id;
    println!(
        "created a flat workflow of {jobs} jobs in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let before = client.metrics().await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..runners)
        .map(|i| {
            let c = HttpClient::new(&server.url()).expect("valid URL");
            tokio::spawn(sim_runner(c, id, format!("sim-{i}"), limit, None))
        })
        .collect();
    let (mut done, mut claim_lat, mut report_lat) = (0, Vec::new(), Vec::new());
    for task in tasks {
        let (n, c, r) = task.await??;
        done += n;
        claim_lat.extend(c);
        report_lat.extend(r);
    }
    let elapsed = started.elapsed();
    let after = client.metrics().await?;
    let delta = |name: &str| {
        parse_sample(&after, name).unwrap_or(0.0) - parse_sample(&before, name).unwrap_or(0.0)
    };
    let status = client.status(id).await?;
    if status.state != WorkflowState::Complete || done != u64::from(jobs) {
        bail!("the workflow did not complete: {done} jobs done, {status:?}");
    }
    println!(
        "{runners} simulated runners, {limit} jobs per claim, {} server workers",
        workers.map_or_else(|| "default".to_string(), |w| w.to_string())
    );
    let rate = done as f64 / elapsed.as_secs_f64();
    println!(
        "completed {done} jobs in {:.3} s: {rate:.0} jobs/s (target ≥ 200000 on SQLite)",
        elapsed.as_secs_f64(),
    );
    print_latencies("claim", claim_lat);
    print_latencies("report", report_lat);
    let commits = delta("torc_commits_total");
    println!(
        "group commits: {commits:.0}, mean {:.1} requests per commit, {:.1} ms per commit",
        delta("torc_committed_requests_total") / commits.max(1.0),
        delta("torc_commit_seconds_total") * 1e3 / commits.max(1.0),
    );
    server.stop(true).await?;
    Ok(rate)
}

/// The peak resident set of this process (server and simulated runners), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Claim latencies of `runners` simulated runners over `sample` jobs of workflow `id`.
async fn claim_sample(
    url: &str,
    id: WorkflowId,
    sample: u32,
    runners: usize,
    limit: u32,
) -> Result<Vec<Duration>> {
    let each = u64::from(sample).div_ceil(runners as u64);
    let tasks: Vec<_> = (0..runners)
        .map(|i| {
            let c = HttpClient::new(url).expect("valid URL");
            tokio::spawn(sim_runner(
                c,
                id,
                format!("scale-{id}-{i}"),
                limit,
                Some(each),
            ))
        })
        .collect();
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await??.1);
    }
    lat.sort_unstable();
    Ok(lat)
}

async fn scale(
    jobs: u32,
    sample: u32,
    runners: usize,
    limit: u32,
    workers: Option<usize>,
    database: Option<String>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path(), workers, database.as_deref()).await?;
    let client = HttpClient::new(&server.url())?;
    let flat = |n: u32| {
        format!("name: flat{n}\njobs:\n  - name: j{{i}}\n    command: \"true\"\n    parameters:\n      i: \"1:{n}\"\n")
    };
    let small = client
        .create_workflow(flat(1000), SpecFormat::Yaml)
        .await?
        .id;
    let rss_before = peak_rss();
    let t = Instant::now();
    let big = client.create_workflow(flat(jobs), SpecFormat::Yaml).await?;
    let created = t.elapsed();
    let rss = peak_rss();
    println!(
        "created a flat workflow of {} jobs in {:.2} s (target ≤ 60 s for 10 M); peak RSS of the process {:.2} GB (before: {:.2} GB; target ≤ 8 GB)",
        big.num_jobs,
        created.as_secs_f64(),
        rss as f64 / 1e9,
        rss_before as f64 / 1e9
    );
    let few = sample.min(1000);
    let small_lat = claim_sample(&server.url(), small, few, runners, limit).await?;
    let big_lat = claim_sample(&server.url(), big.id, sample, runners, limit).await?;
    let (p_small, p_big) = (percentile(&small_lat, 0.5), percentile(&big_lat, 0.5));
    println!(
        "claim p50: {:.3} ms on the {}-job workflow ({} claims), {:.3} ms on 1,000 jobs ({} claims): ratio {:.2} (target ≤ 1.5)",
        p_big.as_secs_f64() * 1e3,
        big.num_jobs,
        big_lat.len(),
        p_small.as_secs_f64() * 1e3,
        small_lat.len(),
        p_big.as_secs_f64() / p_small.as_secs_f64().max(1e-9)
    );
    println!("peak RSS at the end: {:.2} GB", peak_rss() as f64 / 1e9);
    server.stop(true).await?;
    Ok(())
}

async fn pipeline(
    spec: PathBuf,
    parallel: Option<usize>,
    rounds: usize,
    runner: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    workers: Option<usize>,
    database: Option<String>,
) -> Result<()> {
    let runner = sibling_binary(runner, "torc-runner", "torc-runner-cli")?;
    let text = std::fs::read_to_string(&spec).with_context(|| spec.display().to_string())?;
    let parallel =
        parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path(), workers, database.as_deref()).await?;
    let client = HttpClient::new(&server.url())?;
    let (mut ours, mut with_create, mut xargs) = (Vec::new(), Vec::new(), Vec::new());
    let mut jobs = 0;
    for round in 1..=rounds {
        let t0 = Instant::now();
        let created = client
            .create_workflow(text.clone(), SpecFormat::Yaml)
            .await?;
        jobs = created.num_jobs;
        let t1 = Instant::now();
        let out = output_dir
            .as_deref()
            .unwrap_or(dir.path())
            .join(format!("torc-hotpath-out{round}"));
        let out_dir = out.clone();
        let (url, id, exe) = (server.url(), created.id, runner.clone());
        let status = tokio::task::spawn_blocking(move || {
            Command::new(exe)
                .args(["--url", &url, "--workflow", &id.to_string()])
                .args(["--max-parallel-jobs", &parallel.to_string()])
                .arg("--output-dir")
                .arg(out)
                .stdout(Stdio::null())
                .status()
        })
        .await??;
        let run = t1.elapsed();
        if !status.success() {
            bail!("torc-runner failed: {status}");
        }
        let s = client.status(created.id).await?;
        if s.state != WorkflowState::Complete {
            bail!("workflow {} did not complete: {s:?}", created.id);
        }
        std::fs::remove_dir_all(&out_dir).with_context(|| out_dir.display().to_string())?;
        ours.push(run);
        with_create.push(t0.elapsed());

        let t = Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "seq {jobs} | xargs -P {parallel} -I{{}} bash -c true"
                ))
                .status()
        })
        .await??;
        if !status.success() {
            bail!("xargs failed: {status}");
        }
        xargs.push(t.elapsed());
        println!(
            "round {round}: server + torc-runner {:.3} s (with creation {:.3} s), xargs {:.3} s",
            run.as_secs_f64(),
            with_create.last().map_or(0.0, |d| d.as_secs_f64()),
            xargs.last().map_or(0.0, |d| d.as_secs_f64()),
        );
    }
    let (o, c, x) = (
        median(&mut ours),
        median(&mut with_create),
        median(&mut xargs),
    );
    println!(
        "{} ({jobs} jobs), parallelism {parallel}: medians server + runner {:.3} s, with creation {:.3} s, xargs {:.3} s; ratio {:.2} ({:.2} with creation)",
        spec.display(),
        o.as_secs_f64(),
        c.as_secs_f64(),
        x.as_secs_f64(),
        o.as_secs_f64() / x.as_secs_f64(),
        c.as_secs_f64() / x.as_secs_f64(),
    );
    server.stop(true).await?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    RELAXED.store(args.relaxed, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.mode {
            Mode::Claims {
                jobs,
                runners,
                limit,
                postgres,
            } => {
                let sqlite = claims(jobs, runners, limit, args.workers, args.database).await?;
                if let Some(url) = postgres {
                    let pg = claims(jobs, runners, limit, args.workers, Some(url)).await?;
                    println!(
                        "PostgreSQL {pg:.0} jobs/s against {sqlite:.0} jobs/s first: ratio {:.2} (target ≥ 0.5)",
                        pg / sqlite
                    );
                }
                Ok(())
            }
            Mode::Scale {
                jobs,
                sample,
                runners,
                limit,
            } => scale(jobs, sample, runners, limit, args.workers, args.database).await,
            Mode::Pipeline {
                spec,
                parallel,
                rounds,
                runner,
                output_dir,
            } => {
                pipeline(
                    spec,
                    parallel,
                    rounds,
                    runner,
                    output_dir,
                    args.workers,
                    args.database,
                )
                .await
            }
        }
    })
}
