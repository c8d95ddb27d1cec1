//! A workflow inside one Slurm allocation against `xargs -P` inside another, on the same
//! cluster, in one run: the makespan from the first job's start to the last job's end, and the
//! time from `torc submit` to the first job's start, split into Slurm's part (submit to the
//! allocation's start) and ours (the allocation's start to the first job's).
//!
//!     bash .ci/slurm.sh   # a one-node cluster, if there is none
//!     cargo build --release -p torc -p torc-server -p torc-runner-cli -p torc-benches
//!     SLURM_CONF=/var/tmp/torc-slurm/slurm.conf target/release/slurm-alloc
//!
//! The spec (default `examples/pipeline3001.yaml`) gets one scheduler (`--partition`, the
//! allocation's CPUs with `--cpus`) and an `on_workflow_start` action; its jobs carry no
//! scheduler, so the allocation's runner takes them all.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "examples/pipeline3001.yaml")]
    spec: PathBuf,
    /// The partition both allocations go to.
    #[arg(long, default_value = "debug")]
    partition: String,
    /// CPUs of each allocation (and `xargs -P`).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Jobs for xargs [default: 3001].
    #[arg(long, default_value_t = 3001)]
    jobs: u64,
    /// Directory of the torc binaries [default: this one's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(cmd: &mut Command) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&run(cmd)?)?)
}

/// `xargs -P CPUS` of `bash -c true` inside an allocation: its own timing of the run.
fn xargs_in_allocation(dir: &Path, args: &Args) -> Result<Duration> {
    let out = dir.join("xargs.out");
    let script = dir.join("xargs.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n#SBATCH --partition={p}\n#SBATCH --cpus-per-task={c}\n#SBATCH --time=00:30:00\n\
             #SBATCH --output={o}\nstart=$(date +%s%N)\nseq {n} | xargs -P {c} -I{{}} bash -c true\n\
             end=$(date +%s%N)\necho $(( (end - start) / 1000 ))\n",
            p = args.partition,
            c = args.cpus,
            o = out.display(),
            n = args.jobs
        ),
    )?;
    run(Command::new("sbatch")
        .args(["--wait", "--parsable"])
        .arg(&script))?;
    let micros: u64 = std::fs::read_to_string(&out)?
        .trim()
        .parse()
        .context("xargs allocation printed no time")?;
    Ok(Duration::from_micros(micros))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory")?
            .to_path_buf(),
    };
    let (torc, server_bin) = (bin.join("torc"), bin.join("torc-server"));
    for b in [&torc, &server_bin, &bin.join("torc-runner")] {
        if !b.exists() {
            bail!(
                "{} not found: build the release binaries first",
                b.display()
            );
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("slurm-alloc")
        .tempdir_in(".")?;
    let spec_text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("cannot read {}", args.spec.display()))?;
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "{spec_text}\nslurm_schedulers:\n  - {{name: bench, account: torc, partition: {p}, nodes: 1, walltime: \"00:30:00\", extra: \"--cpus-per-task={c}\"}}\n\
             actions:\n  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: bench, scheduler_type: slurm}}\n\
             compute_node_wait_for_new_jobs_seconds: 5\n",
            p = args.partition,
            c = args.cpus
        ),
    )?;
    let mut server = Command::new(&server_bin)
        .current_dir(dir.path())
        .args(["--database", "server.db", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("no server stdout")?).read_line(&mut line)?;
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .context("server printed no URL")?
        .to_string();
    let torc_cmd = |a: &[&str]| {
        let mut c = Command::new(&torc);
        c.current_dir(dir.path()).arg("--url").arg(&url).args(a);
        c
    };
    let submitted_at = now_ms();
    let t0 = Instant::now();
    let said = run(&mut torc_cmd(&[
        "submit",
        spec.to_str().unwrap(),
        "--watch",
    ]))?;
    let makespan_wall = t0.elapsed();
    let id = said
        .lines()
        .find_map(|l| l.strip_prefix("workflow "))
        .context("no workflow id")?
        .trim()
        .to_string();
    let results = json(&mut torc_cmd(&["results", "list", &id, "--json"]))?;
    let rows = results.as_array().context("results")?;
    let first_start = rows.iter().filter_map(|r| r["start_time"].as_i64()).min();
    let last_end = rows.iter().filter_map(|r| r["end_time"].as_i64()).max();
    let allocs = json(&mut torc_cmd(&["slurm", "allocations", &id, "--json"]))?;
    let started = allocs
        .as_array()
        .and_then(|a| a.first())
        .and_then(|a| a["started_at"].as_i64());
    server.kill().ok();
    server.wait().ok();
    let (Some(first_start), Some(last_end), Some(started)) = (first_start, last_end, started)
    else {
        bail!("the run left no results or allocation times: {said}");
    };
    let torc_span = Duration::from_millis((last_end - first_start).max(0) as u64);
    let xargs = xargs_in_allocation(dir.path(), &args)?;
    println!(
        "jobs: {} (torc), {} (xargs -P {})",
        rows.len(),
        args.jobs,
        args.cpus
    );
    println!(
        "inside one allocation, first start to last end: torc {:.2} s, xargs {:.2} s, ratio {:.2} (target <= 1.3)",
        torc_span.as_secs_f64(),
        xargs.as_secs_f64(),
        torc_span.as_secs_f64() / xargs.as_secs_f64()
    );
    println!(
        "submit to first job start: {:.2} s = Slurm {:.2} s (sbatch to the allocation's runner reporting in) + torc {:.2} s (to the first job's start)",
        (first_start - submitted_at) as f64 / 1e3,
        (started - submitted_at) as f64 / 1e3,
        (first_start - started) as f64 / 1e3
    );
    println!(
        "torc submit --watch wall time: {:.2} s",
        makespan_wall.as_secs_f64()
    );
    Ok(())
}
