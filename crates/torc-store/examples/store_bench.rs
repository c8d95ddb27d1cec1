//! Measures the store's two bulk paths: creating a large workflow, and `apply` with batches of
//! job changes and results. Runs on a temporary SQLite database, or on each database named with
//! `--url` (`sqlite://PATH`, `postgres://USER@HOST:PORT/DB`), then prints the figures side by
//! side. The workflow it creates is deleted at the end.
//!
//! `cargo run --release -p torc-store --example store_bench -- [JOBS] [BATCHES] [--url URL]...`

use std::time::Instant;
use torc_core::changes::{Changes, Event, EventKind, JobChange, JobResult};
use torc_core::ids::{JobId, RunnerId, Timestamp};
use torc_core::model::{JobDef, JobStatus, WorkflowDef};
use torc_store::Store;

const BATCH: u32 = 1_000;

/// What one run measured.
struct Figures {
    target: String,
    create_secs: f64,
    load_secs: f64,
    apply_median_ms: f64,
    completions_per_sec: f64,
    single_commits_per_sec: Option<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut urls = Vec::new();
    let mut numbers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--url" {
            urls.push(args.next().ok_or("--url needs a value")?);
        } else {
            numbers.push(arg.parse::<u32>()?);
        }
    }
    let jobs = numbers.first().copied().unwrap_or(100_000);
    let batches = numbers.get(1).copied().unwrap_or(50);

    let dir = tempfile::tempdir()?;
    if urls.is_empty() {
        urls.push(format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        ));
    }
    let mut all = Vec::new();
    for url in &urls {
        let store = Store::open(url)?;
        println!("== {}", store.target());
        all.push(bench(&store, jobs, batches)?);
    }
    if all.len() > 1 {
        println!();
        println!(
            "{:<48} {:>10} {:>10} {:>14} {:>16} {:>14}",
            "database", "create s", "load s", "apply ms/batch", "completions/s", "1-change tx/s"
        );
        for f in &all {
            println!(
                "{:<48} {:>10.3} {:>10.3} {:>14.2} {:>16.0} {:>14}",
                f.target,
                f.create_secs,
                f.load_secs,
                f.apply_median_ms,
                f.completions_per_sec,
                f.single_commits_per_sec
                    .map_or("-".to_string(), |c| format!("{c:.0}")),
            );
        }
    }
    Ok(())
}

fn bench(store: &Store, jobs: u32, batches: u32) -> Result<Figures, Box<dyn std::error::Error>> {
    // A realistic shape: every job after the first 100 depends on one earlier job.
    let def = WorkflowDef {
        name: "bench".into(),
        jobs: (0..jobs)
            .map(|i| {
                let mut job =
                    JobDef::new(format!("job_{i:06}"), format!("python work.py --item {i}"));
                if i >= 100 {
                    job.depends_on = vec![JobId::from_index((i % 100) as usize)];
                }
                job
            })
            .collect(),
        ..WorkflowDef::default()
    };
    let started = Instant::now();
    let id = store.create_workflow(&def, None, Timestamp(0))?;
    let create = started.elapsed();
    println!(
        "create_workflow: {jobs} jobs in {:.3} s ({:.0} jobs/s)",
        create.as_secs_f64(),
        f64::from(jobs) / create.as_secs_f64()
    );

    let started = Instant::now();
    let loaded = store.load_workflow(id)?;
    let load = started.elapsed();
    assert_eq!(loaded.def.jobs.len(), jobs as usize);
    println!(
        "load_workflow:   {jobs} jobs in {:.3} s",
        load.as_secs_f64()
    );

    // Each batch: BATCH jobs complete (one state change and one result each) plus one event,
    // as a group commit of many runners' reports would write.
    let batches = batches.min(jobs / BATCH).max(1);
    let mut times = Vec::with_capacity(batches as usize);
    for b in 0..batches {
        let first = b * BATCH;
        let changes = Changes {
            jobs: (first..first + BATCH)
                .map(|i| JobChange {
                    job: JobId::from_index(i as usize),
                    status: JobStatus::Completed,
                    attempt_id: 1,
                })
                .collect(),
            results: (first..first + BATCH)
                .map(|i| JobResult {
                    job: JobId::from_index(i as usize),
                    run_id: 1,
                    attempt_id: 1,
                    runner: Some(RunnerId("node1:1234".into())),
                    return_code: 0,
                    status: JobStatus::Completed,
                    start_time: Timestamp(1_000),
                    end_time: Timestamp(2_000),
                    peak_memory_bytes: Some(100 << 20),
                    avg_memory_bytes: Some(50 << 20),
                    peak_cpu_percent: Some(99.0),
                    avg_cpu_percent: Some(80.0),
                    end_reason: None,
                    message: None,
                })
                .collect(),
            events: vec![Event {
                time: Timestamp(2_000),
                kind: EventKind::JobRetried,
                job: None,
                message: format!("batch {b}"),
            }],
            workflow: None,
            actions: Vec::new(),
            allocations: Vec::new(),
            samples: Vec::new(),
        };
        let started = Instant::now();
        store.apply(&[(id, &changes)])?;
        times.push(started.elapsed().as_secs_f64());
    }
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let rows = f64::from(batches * BATCH * 2);
    println!(
        "apply: {batches} batches of {BATCH} job changes + {BATCH} results: \
         median {:.2} ms, max {:.2} ms per batch; {:.0} rows/s ({:.0} completions/s)",
        times[times.len() / 2] * 1e3,
        times[times.len() - 1] * 1e3,
        rows / total,
        rows / 2.0 / total,
    );

    // The same, one completion per transaction (no group commit), for contrast.
    let single = 200.min(jobs - batches * BATCH);
    let started = Instant::now();
    for i in batches * BATCH..batches * BATCH + single {
        let changes = Changes {
            jobs: vec![JobChange {
                job: JobId::from_index(i as usize),
                status: JobStatus::Completed,
                attempt_id: 1,
            }],
            ..Changes::default()
        };
        store.apply(&[(id, &changes)])?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let single_commits_per_sec = (single > 0).then(|| f64::from(single) / elapsed);
    if let Some(rate) = single_commits_per_sec {
        println!("apply: 1 job change per transaction: {rate:.0} commits/s");
    }
    store.delete_workflow(id)?;
    Ok(Figures {
        target: store.target().to_string(),
        create_secs: create.as_secs_f64(),
        load_secs: load.as_secs_f64(),
        apply_median_ms: times[times.len() / 2] * 1e3,
        completions_per_sec: rows / 2.0 / total,
        single_commits_per_sec,
    })
}
