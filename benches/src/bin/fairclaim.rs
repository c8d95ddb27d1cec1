//! Cost of a shared runner's claim as the number of workflows and of ready jobs grows.
//!
//! Builds `W` active workflows of `J` ready jobs each in the scheduling core (no I/O), brings a
//! fair pool up to date with them, then times shared claims of one job and of 64 jobs. The claim
//! picks the workflow with the fewest jobs in flight each time, so its cost should stay flat in
//! both `W` and `J`.
//!
//! `cargo run --release -p torc-benches --bin fairclaim`

use clap::Parser;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use torc_core::api::{RunnerTags, SharedClaimRequest};
use torc_core::model::JobDef;
use torc_core::sched::{claim_fair, FairPool, WorkflowSched};
use torc_core::{RunnerId, Timestamp, WorkflowDef, WorkflowId};

#[derive(Parser)]
struct Args {
    /// Jobs handed out per measurement.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Only this many workflows, with this many ready jobs each (`W,J`), e.g. to profile one.
    #[arg(long, value_parser = parse_pair)]
    only: Option<(usize, usize)>,
}

fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (w, j) = s.split_once(',').ok_or("expected W,J")?;
    Ok((
        w.trim().parse().map_err(|e| format!("{e}"))?,
        j.trim().parse().map_err(|e| format!("{e}"))?,
    ))
}

fn site(workflows: usize, jobs_each: usize) -> (FairPool, HashMap<WorkflowId, WorkflowSched>) {
    let mut pool = FairPool::new();
    let mut scheds = HashMap::with_capacity(workflows);
    for w in 0..workflows {
        let def = WorkflowDef {
            name: format!("w{w}"),
            jobs: (0..jobs_each)
                .map(|i| JobDef::new(format!("j{i}"), "true"))
                .collect(),
            ..WorkflowDef::default()
        };
        let id = WorkflowId(w as i64 + 1);
        let mut s = WorkflowSched::new(id, Arc::new(def));
        s.initialize(Timestamp(0));
        pool.update(id, s.fair_key());
        scheds.insert(id, s);
    }
    (pool, scheds)
}

/// Nanoseconds per job handed out, claiming `per_claim` at a time until `total` are out. With
/// `warm`, the runner first takes one job of every workflow, untimed: what is left is the cost
/// once each workflow knows the runner.
fn measure(workflows: usize, jobs_each: usize, per_claim: u32, total: usize, warm: bool) -> f64 {
    let (mut pool, mut scheds) = site(workflows, jobs_each);
    let req = SharedClaimRequest {
        runner_id: RunnerId("bench".into()),
        limit: per_claim,
        resources: None,
        tags: RunnerTags::default(),
        wait_ms: 0,
    };
    if warm {
        let once = SharedClaimRequest {
            limit: u32::try_from(workflows).unwrap_or(u32::MAX),
            ..req.clone()
        };
        claim_fair(&mut pool, &mut scheds, &once, |_| true, Timestamp(1));
    }
    let left = workflows * jobs_each - if warm { workflows } else { 0 };
    let total = total.min(left);
    let started = Instant::now();
    let mut out = 0;
    while out < total {
        let (jobs, _) = claim_fair(&mut pool, &mut scheds, &req, |_| true, Timestamp(1));
        assert!(!jobs.is_empty(), "ran dry after {out}");
        out += jobs.len();
    }
    started.elapsed().as_nanos() as f64 / out as f64
}

fn main() {
    let args = Args::parse();
    println!(
        "shared claims, nanoseconds per job handed out ({} jobs per figure)",
        args.jobs
    );
    println!(
        "{:>10} {:>12} {:>14} {:>14} {:>20}",
        "workflows", "ready each", "claims of 1", "claims of 64", "of 1, runner known"
    );
    let all = [
        (1, 100_000),
        (10, 10_000),
        (100, 1_000),
        (1_000, 100),
        (10_000, 20),
        (100, 100),
        (100, 10_000),
    ];
    let configs: Vec<(usize, usize)> = match args.only {
        Some(one) => vec![one],
        None => all.to_vec(),
    };
    for (w, j) in configs {
        let one = measure(w, j, 1, args.jobs, false);
        let many = measure(w, j, 64, args.jobs, false);
        let known = measure(w, j, 1, args.jobs, true);
        println!("{w:>10} {j:>12} {one:>14.0} {many:>14.0} {known:>20.0}");
    }
}
