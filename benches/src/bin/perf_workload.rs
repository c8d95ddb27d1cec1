//! The upstream project's 3,001-job performance workload (`benches/perf3001.yaml`): `torc run`
//! of the spec (embedded, durable SQLite) against the same commands run stage by stage with
//! `xargs -P`, at the same parallelism, in one run, rounds alternating.
//!
//!     cargo build --release -p torc -p torc-benches
//!     target/release/perf-workload
//!
//! Each round of each side starts in a fresh directory (the jobs write `output/...` there); at
//! the end of a round the benchmark checks that the final report counts 1,000 files, so a side
//! that skipped work would fail rather than look fast.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use torc_benches::{median, sibling_binary};

#[derive(Parser)]
struct Args {
    /// The workload's spec.
    #[arg(long, default_value = "benches/perf3001.yaml")]
    spec: PathBuf,
    /// Parallelism of both [default: the number of CPUs].
    #[arg(long)]
    parallel: Option<usize>,
    /// Rounds of each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The torc binary [default: next to this one].
    #[arg(long)]
    torc: Option<PathBuf>,
    /// Where each round's directory is made [default: the system's temporary directory].
    #[arg(long)]
    tmp: Option<PathBuf>,
    /// Run torc with --relaxed-durability (commits synced at checkpoints only).
    #[arg(long)]
    relaxed: bool,
}

/// The stages as xargs runs them: each `{}` is a zero-padded index, as `{i:04d}` in the spec.
const STAGES: [&str; 3] = [
    r#"mkdir -p output/setup && echo "setup {}" > output/setup/setup_out_{}.txt"#,
    "mkdir -p output/work && cp output/setup/setup_out_{}.txt output/work/work_out_{}.txt \
     && rm output/setup/setup_out_{}.txt",
    "mkdir -p output/post && cp output/work/work_out_{}.txt output/post/post_out_{}.txt \
     && rm output/work/work_out_{}.txt",
];
const AGGREGATE: &str = "ls output/post | wc -l > output/final_report.txt";
const INSTANCES: u32 = 1000;

fn main() -> Result<()> {
    let args = Args::parse();
    let torc = sibling_binary(args.torc.clone(), "torc", "torc")?;
    let spec =
        std::fs::canonicalize(&args.spec).with_context(|| args.spec.display().to_string())?;
    let parallel = args
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let tmp = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    // Every round's directories stay until the end: on a file system without a journal, ext4
    // skips inodes freed in the last seconds when it creates files, so a side that ran right
    // after a deletion of thousands of files would pay for it.
    let root = tempfile::tempdir_in(&tmp)?;
    let tmp = root.path().to_path_buf();
    println!(
        "spec {} (3,001 jobs), parallelism {parallel}, {} rounds, directories under {}",
        spec.display(),
        args.rounds,
        tmp.display()
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let t = run_torc(&torc, &spec, parallel, &tmp, args.relaxed)?;
        let x = run_xargs(parallel, &tmp)?;
        println!(
            "round {round}: torc {:.3} s | xargs by stage {:.3} s | ratio {:.3}",
            t.as_secs_f64(),
            x.as_secs_f64(),
            t.as_secs_f64() / x.as_secs_f64()
        );
        ours.push(t);
        theirs.push(x);
    }
    let (t, x) = (median(&mut ours), median(&mut theirs));
    println!(
        "median: torc run {:.3} s, xargs -P {parallel} stage by stage {:.3} s, ratio {:.3} (target ≤ 1.1)",
        t.as_secs_f64(),
        x.as_secs_f64(),
        t.as_secs_f64() / x.as_secs_f64()
    );
    Ok(())
}

fn run_torc(
    torc: &Path,
    spec: &Path,
    parallel: usize,
    tmp: &Path,
    relaxed: bool,
) -> Result<Duration> {
    let dir = tempfile::tempdir_in(tmp)?.keep();
    let started = Instant::now();
    let status = Command::new(torc)
        .current_dir(&dir)
        .arg("run")
        .arg(spec)
        .arg("--quiet")
        .arg("--output-dir")
        .arg(dir.join("torc"))
        .arg("--max-parallel-jobs")
        .arg(parallel.to_string())
        .args(relaxed.then_some("--relaxed-durability"))
        .stdout(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("torc run failed: {status}");
    }
    check_report(&dir)?;
    Ok(took)
}

fn run_xargs(parallel: usize, tmp: &Path) -> Result<Duration> {
    let dir = tempfile::tempdir_in(tmp)?.keep();
    let started = Instant::now();
    for stage in STAGES {
        let status = Command::new("bash")
            .current_dir(&dir)
            .arg("-c")
            .arg(format!(
                "seq -f %04g 0 {} | xargs -P {parallel} -I{{}} bash -c '{}'",
                INSTANCES - 1,
                stage.replace('\'', r"'\''")
            ))
            .status()?;
        if !status.success() {
            bail!("xargs failed: {status}");
        }
    }
    let status = Command::new("bash")
        .current_dir(&dir)
        .arg("-c")
        .arg(AGGREGATE)
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("the aggregate failed: {status}");
    }
    check_report(&dir)?;
    Ok(took)
}

/// The final report must count every post file.
fn check_report(dir: &Path) -> Result<()> {
    let path = dir.join("output/final_report.txt");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    if text.trim() != INSTANCES.to_string() {
        bail!("{} says {:?}, not {INSTANCES}", path.display(), text.trim());
    }
    Ok(())
}
