//! Runs a workflow spec of no-op jobs with `torc run` (embedded, SQLite, durable) and the same
//! number of `bash -c true` processes with `xargs -P`, at the same parallelism, in one run, and
//! prints both wall times and their ratio.
//!
//!     cargo build --release -p torc -p torc-benches
//!     target/release/pipeline-vs-xargs --spec examples/pipeline3001.yaml
//!
//! Rounds alternate between the two so that machine noise hits both alike; the medians are
//! compared.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The workflow spec to run (its jobs should be no-ops).
    #[arg(long, default_value = "examples/pipeline3001.yaml")]
    spec: PathBuf,
    /// Number of jobs to run with xargs [default: the spec's job count].
    #[arg(long)]
    jobs: Option<u64>,
    /// Parallelism of both [default: the number of CPUs].
    #[arg(long)]
    parallel: Option<usize>,
    /// Rounds of each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The torc binary [default: next to this one].
    #[arg(long)]
    torc: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let torc = match args.torc.clone() {
        Some(t) => t,
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory")?
            .join("torc"),
    };
    if !torc.exists() {
        bail!(
            "{} not found; build it with cargo build --release -p torc",
            torc.display()
        );
    }
    let parallel = args
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let jobs = match args.jobs {
        Some(n) => n,
        None => count_jobs(&torc, &args.spec)?,
    };
    println!(
        "spec {} ({jobs} jobs), parallelism {parallel}, {} rounds",
        args.spec.display(),
        args.rounds
    );
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 1..=args.rounds {
        let t = run_torc(&torc, &args.spec, parallel)?;
        let x = run_xargs(jobs, parallel)?;
        println!(
            "round {round}: torc {:.3} s, xargs {:.3} s, ratio {:.3}",
            t.as_secs_f64(),
            x.as_secs_f64(),
            t.as_secs_f64() / x.as_secs_f64()
        );
        ours.push(t);
        theirs.push(x);
    }
    let (t, x) = (median(&mut ours), median(&mut theirs));
    println!(
        "median: torc {:.3} s ({:.0} jobs/s), xargs -P {parallel} {:.3} s ({:.0} jobs/s), ratio {:.3}",
        t.as_secs_f64(),
        jobs as f64 / t.as_secs_f64(),
        x.as_secs_f64(),
        jobs as f64 / x.as_secs_f64(),
        t.as_secs_f64() / x.as_secs_f64()
    );
    Ok(())
}

fn count_jobs(torc: &PathBuf, spec: &PathBuf) -> Result<u64> {
    let out = Command::new(torc)
        .args(["workflows", "create", "--dry-run", "--json"])
        .arg(spec)
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let n = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"num_jobs\":"))
        .context("no num_jobs in dry-run output")?;
    Ok(n.trim().trim_end_matches(',').parse()?)
}

fn run_torc(torc: &PathBuf, spec: &PathBuf, parallel: usize) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let status = Command::new(torc)
        .arg("run")
        .arg(spec)
        .arg("--quiet")
        .arg("--output-dir")
        .arg(dir.path())
        .arg("--max-parallel-jobs")
        .arg(parallel.to_string())
        .stdout(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("torc run failed: {status}");
    }
    Ok(took)
}

fn run_xargs(jobs: u64, parallel: usize) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "seq {jobs} | xargs -P {parallel} -I{{}} bash -c true"
        ))
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("xargs failed: {status}");
    }
    Ok(took)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
