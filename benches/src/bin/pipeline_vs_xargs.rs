//! Runs a workflow spec of no-op jobs with `torc run` (embedded, SQLite, durable) and the same
//! number of `bash -c true` processes with `xargs -P`, at the same parallelism, in one run, and
//! prints both wall times and their ratio; also (unless `--no-server`) the same workflow through
//! `torc-server` and one `torc-runner` on loopback.
//!
//!     cargo build --release -p torc -p torc-server -p torc-runner-cli -p torc-benches
//!     target/release/pipeline-vs-xargs --spec examples/pipeline3001.yaml
//!
//! Rounds alternate between the two so that machine noise hits both alike; the medians are
//! compared.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use torc_benches::{median, sibling_binary};

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
    /// Directory in which each round's output directory (database and job output) is made
    /// [default: the system's temporary directory]. Use a tmpfs such as /dev/shm to take the
    /// disk out of the comparison.
    #[arg(long)]
    tmp: Option<PathBuf>,
    /// Run torc with --relaxed-durability (commits synced at checkpoints only).
    #[arg(long)]
    relaxed: bool,
    /// Skip the round through torc-server and one torc-runner (on loopback, SQLite), run by
    /// default when both binaries are beside this one.
    #[arg(long)]
    no_server: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let torc = sibling_binary(args.torc.clone(), "torc", "torc")?;
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
    let tmp = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    // Every round's directories stay until the end: on a file system without a journal, ext4
    // skips inodes freed in the last seconds when it creates files, so a side that ran right
    // after a deletion of thousands of files would pay for it.
    let root = tempfile::tempdir_in(&tmp)?;
    let tmp = root.path().to_path_buf();
    println!("output directories under {}", tmp.display());
    let server = if args.no_server {
        None
    } else {
        let server = sibling_binary(None, "torc-server", "torc-server")?;
        let runner = sibling_binary(None, "torc-runner", "torc-runner-cli")?;
        Some((server, runner))
    };
    let (mut ours, mut plain, mut files, mut absolute, mut served) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // CPU time (user and system, the jobs' included) of each round's torc run and xargs.
    let (mut torc_cpu, mut xargs_cpu) = (Vec::new(), Vec::new());
    // torc looks bash up once; xargs has every job's exec search PATH. Both baselines are shown.
    let abs_bash = String::from_utf8(
        Command::new("bash")
            .args(["-c", "command -v bash"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    for round in 1..=args.rounds {
        if let Some((server, runner)) = &server {
            let s = run_served(&torc, server, runner, &args.spec, parallel, &tmp)?;
            served.push(s);
        }
        let c0 = children_cpu();
        let t = run_torc(&torc, &args.spec, parallel, &tmp, args.relaxed)?;
        let c1 = children_cpu();
        let x = run_xargs(jobs, parallel, "bash", None)?;
        let c2 = children_cpu();
        torc_cpu.push(c1 - c0);
        xargs_cpu.push(c2 - c1);
        let f = run_xargs(jobs, parallel, "bash", Some(&tmp))?;
        let a = run_xargs(jobs, parallel, &abs_bash, None)?;
        println!(
            "round {round}: torc {:.3} s | xargs {:.3} s (ratio {:.3}) | xargs writing .o/.e files {:.3} s (ratio {:.3}) | xargs running {abs_bash} {:.3} s (ratio {:.3})",
            t.as_secs_f64(),
            x.as_secs_f64(),
            t.as_secs_f64() / x.as_secs_f64(),
            f.as_secs_f64(),
            t.as_secs_f64() / f.as_secs_f64(),
            a.as_secs_f64(),
            t.as_secs_f64() / a.as_secs_f64()
        );
        if let Some(s) = served.last() {
            println!(
                "round {round}: torc-server + one torc-runner {:.3} s (ratio to xargs {:.3})",
                s.as_secs_f64(),
                s.as_secs_f64() / x.as_secs_f64()
            );
        }
        ours.push(t);
        plain.push(x);
        files.push(f);
        absolute.push(a);
    }
    if !served.is_empty() {
        let mut ratios: Vec<Duration> = served
            .iter()
            .zip(&plain)
            .map(|(s, x)| Duration::from_secs_f64(s.as_secs_f64() / x.as_secs_f64()))
            .collect();
        let s = median(&mut served);
        println!(
            "median: torc-server + one torc-runner {:.3} s ({:.0} jobs/s), median ratio to the same round's xargs {:.3} (target ≤ 1.3)",
            s.as_secs_f64(),
            jobs as f64 / s.as_secs_f64(),
            median(&mut ratios).as_secs_f64()
        );
    }
    let (t, x, f, a) = (
        median(&mut ours),
        median(&mut plain),
        median(&mut files),
        median(&mut absolute),
    );
    let rate = |d: Duration| jobs as f64 / d.as_secs_f64();
    println!(
        "median: torc {:.3} s ({:.0} jobs/s); xargs -P {parallel} bash -c true {:.3} s ({:.0} jobs/s), ratio {:.3}; \
         xargs writing the same output files {:.3} s ({:.0} jobs/s), ratio {:.3}; \
         xargs running {abs_bash} {:.3} s ({:.0} jobs/s), ratio {:.3}",
        t.as_secs_f64(),
        rate(t),
        x.as_secs_f64(),
        rate(x),
        t.as_secs_f64() / x.as_secs_f64(),
        f.as_secs_f64(),
        rate(f),
        t.as_secs_f64() / f.as_secs_f64(),
        a.as_secs_f64(),
        rate(a),
        t.as_secs_f64() / a.as_secs_f64()
    );
    let (tc, xc) = (
        median(&mut torc_cpu).as_secs_f64(),
        median(&mut xargs_cpu).as_secs_f64(),
    );
    println!(
        "median CPU (jobs included): torc {tc:.2} s ({:.0} µs per job), xargs {xc:.2} s ({:.0} µs per job): torc's own {:.0} µs per job",
        tc * 1e6 / jobs as f64,
        xc * 1e6 / jobs as f64,
        (tc - xc) * 1e6 / jobs as f64
    );
    Ok(())
}

/// CPU time used by the children this process has waited for (from `/proc/self/stat`, in
/// clock ticks of 10 ms).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: cutime and cstime are the 14th
    // and 15th of them.
    let after = stat.rsplit(')').next().unwrap_or("");
    let ticks: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    ticks
        .get(13)
        .zip(ticks.get(14))
        .map_or(Duration::ZERO, |(u, s)| {
            Duration::from_secs_f64((u + s) / 100.0)
        })
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

fn run_torc(
    torc: &PathBuf,
    spec: &PathBuf,
    parallel: usize,
    tmp: &Path,
    relaxed: bool,
) -> Result<Duration> {
    let dir = tempfile::tempdir_in(tmp)?.keep();
    let started = Instant::now();
    let status = Command::new(torc)
        .arg("run")
        .arg(spec)
        .arg("--quiet")
        .arg("--output-dir")
        .arg(dir)
        .arg("--max-parallel-jobs")
        .arg(parallel.to_string())
        .args(relaxed.then_some("--relaxed-durability"))
        .stdout(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("torc run failed: {status}");
    }
    Ok(took)
}

/// The workflow created on a fresh `torc-server` (loopback, SQLite in a fresh directory) and run
/// by one `torc-runner`: the time from the runner's start to its exit.
fn run_served(
    torc: &Path,
    server: &Path,
    runner: &Path,
    spec: &Path,
    parallel: usize,
    tmp: &Path,
) -> Result<Duration> {
    let dir = tempfile::tempdir_in(tmp)?.keep();
    let mut child = Command::new(server)
        .current_dir(&dir)
        .args(["--database", "server.db", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Stopped on every path out, errors included.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
    let stdout = child.stdout.take().context("no server stdout")?;
    let _server = Stop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .with_context(|| format!("the server printed no URL: {line:?}"))?
        .to_string();
    let out = Command::new(torc)
        .args(["--url", &url, "workflows", "create", "--json"])
        .arg(spec)
        .output()?;
    if !out.status.success() {
        bail!(
            "creating the workflow failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = created["workflow_id"]
        .as_u64()
        .context("no workflow_id in the creation's output")?;
    let started = Instant::now();
    let status = Command::new(runner)
        .args(["--url", &url, "--workflow", &id.to_string()])
        .args(["--max-parallel-jobs", &parallel.to_string()])
        .arg("--output-dir")
        .arg(dir.join("runner"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("torc-runner failed: {status}");
    }
    Ok(took)
}

/// `bash -c true` per job (`bash` as given: a bare name has each job's exec search `PATH`); with
/// `files_in`, each job also writes the two output files that a torc job gets, in a fresh
/// directory there (the same filesystem work).
fn run_xargs(jobs: u64, parallel: usize, bash: &str, files_in: Option<&Path>) -> Result<Duration> {
    let dir = files_in
        .map(|d| tempfile::tempdir_in(d).map(tempfile::TempDir::keep))
        .transpose()?;
    let job = match &dir {
        Some(d) => format!("{bash} -c true > {0}/{{}}.o 2> {0}/{{}}.e", d.display()),
        None => format!("{bash} -c true"),
    };
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("seq {jobs} | xargs -P {parallel} -I{{}} {job}"))
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("xargs failed: {status}");
    }
    Ok(took)
}
