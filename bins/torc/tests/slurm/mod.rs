//! Against the real one-node Slurm cluster that `.ci/slurm.sh` starts: `torc submit` turns an
//! `on_workflow_start` `schedule_nodes` action into an allocation whose runner does every job
//! and then leaves, so the queue ends empty.
//!
//! Needs `TORC_TEST_SLURM=1` (and `SLURM_CONF`); without it the test fails under CI and says it
//! was skipped elsewhere.

use super::{start_server, text, torc_in, write_spec};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn slurm_available() -> bool {
    if std::env::var_os("TORC_TEST_SLURM").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the Slurm tests: start the cluster with .ci/slurm.sh (TORC_TEST_SLURM unset)"
    );
    eprintln!("skipped: set TORC_TEST_SLURM=1 after starting a cluster with .ci/slurm.sh");
    false
}

/// Slurm job ids still in the queue, of those given.
fn queued(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i", "-j", &ids.join(",")])
        .output()
        .expect("squeue runs");
    text(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Polls `cond` until it holds or `limit` passes (the state of other processes is what is
/// awaited; each look is a real query).
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(dir: &Path, url: &str, id: &str) -> Value {
    let out = torc_in(dir, &["--url", url, "workflows", "status", id, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn submit_runs_every_job_inside_one_allocation_that_then_ends() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let spec = write_spec(
        dir.path(),
        "slurm.yaml",
        &format!(
            r#"
name: slurm_e2e
resource_requirements:
  - {{name: small, num_cpus: 1, memory: 64m, runtime: PT1M}}
slurm_schedulers:
  - {{name: debug_node, account: torc, partition: debug, nodes: 1, walltime: "00:10:00", mem: 512M}}
actions:
  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: debug_node, scheduler_type: slurm, num_allocations: 1}}
compute_node_wait_for_new_jobs_seconds: 5
jobs:
  - name: job_{{i}}
    command: echo "$SLURM_JOB_ID" > {out}/job_{{i}}.txt
    resource_requirements: small
    scheduler: debug_node
    parameters:
      i: "1:50"
"#,
            out = out_dir.display()
        ),
    );
    let submitted = torc_in(
        dir.path(),
        &["--url", &url, "submit", spec.to_str().unwrap()],
    );
    let said = text(&submitted.stdout);
    assert!(
        submitted.status.success(),
        "{said}{}",
        text(&submitted.stderr)
    );
    let id = said
        .lines()
        .find_map(|l| l.strip_prefix("workflow "))
        .expect("prints `workflow N`")
        .trim()
        .to_string();
    let allocations: Vec<String> = said
        .lines()
        .filter_map(|l| l.strip_prefix("allocation "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(allocations.len(), 1, "one allocation: {said}");

    wait_until("the workflow to complete", Duration::from_secs(180), || {
        status(dir.path(), &url, &id)["workflow"]["state"] != "active"
    });
    let st = status(dir.path(), &url, &id);
    assert_eq!(st["workflow"]["state"], "complete", "{st}");
    assert_eq!(st["job_counts"]["completed"], 50, "{st}");
    for i in 1..=50 {
        let got = std::fs::read_to_string(out_dir.join(format!("job_{i}.txt"))).unwrap();
        assert_eq!(
            got.trim(),
            allocations[0],
            "job_{i} ran outside the allocation"
        );
    }
    // With nothing left for it, the allocation's runner exits and the allocation ends.
    wait_until(
        "the allocation to leave the queue",
        Duration::from_secs(60),
        || queued(&allocations).is_empty(),
    );
}

#[test]
fn slurm_script_prints_the_batch_script_of_a_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "s.yaml",
        r#"
name: script
slurm_schedulers:
  - {name: gpu, account: proj, partition: gpu, nodes: 2, walltime: "04:00:00", gres: "gpu:2", qos: high}
jobs:
  - {name: a, command: "true", scheduler: gpu}
"#,
    );
    let out = torc_in(
        dir.path(),
        &[
            "slurm",
            "script",
            spec.to_str().unwrap(),
            "--scheduler",
            "gpu",
            "--workflow",
            "7",
            "--one-worker-per-node",
        ],
    );
    let script = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "#SBATCH --account=",
        "#SBATCH --partition=",
        "#SBATCH --nodes=",
        "#SBATCH --time=",
        "#SBATCH --gres=",
        "#SBATCH --qos=",
        "srun --ntasks-per-node=1",
        "--scheduler",
        "--workflow",
    ] {
        assert!(script.contains(line), "no {line:?} in:\n{script}");
    }
    let unknown = torc_in(
        dir.path(),
        &[
            "slurm",
            "script",
            spec.to_str().unwrap(),
            "--scheduler",
            "cpu",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("gpu"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn submit_watch_starts_a_local_runner_and_runs_the_completion_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let done = dir.path().join("done.txt");
    let spec = write_spec(
        dir.path(),
        "local.yaml",
        &format!(
            r#"
name: local_actions
actions:
  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler_type: local, max_parallel_jobs: 2}}
  - {{trigger_type: on_workflow_complete, action_type: run_commands, commands: ["ls {dir} | grep -c '^j_' > {done}"]}}
jobs:
  - name: j_{{i}}
    command: touch {dir}/j_{{i}}
    parameters:
      i: "1:5"
"#,
            dir = dir.path().display(),
            done = done.display()
        ),
    );
    let out = torc_in(
        dir.path(),
        &[
            "--url",
            &url,
            "submit",
            spec.to_str().unwrap(),
            "--watch",
            "--poll-secs",
            "0.2",
        ],
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("local runner"), "{said}");
    assert!(said.contains("is complete"), "{said}");
    // The completion command ran after every job, once.
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), "5");
}
mod elastic;
