//! Allocations kept in line with the work, against the real one-node cluster: cancelling a
//! workflow leaves nothing in the queue, a queued allocation whose work was done elsewhere is
//! cancelled, a second stage's allocation is asked for only when its jobs are ready, a job
//! stopped at its allocation's end runs again in a new one, and a spec written by
//! `torc slurm generate` runs as it is.
//!
//! The node has 2 CPUs: allocations with `--exclusive` take all of it, so a second one waits in
//! the queue while the first runs.

use super::{queued, slurm_available, status, wait_until};
use crate::{start_server, text, torc_in, write_spec};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `torc slurm allocations ID --json`.
fn allocations(dir: &Path, url: &str, id: &str) -> Vec<Value> {
    let out = torc_in(dir, &["--url", url, "slurm", "allocations", id, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Slurm's state of each job id (`PENDING`, `RUNNING`, …).
fn slurm_states(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%T", "-j", &ids.join(",")])
        .output()
        .expect("squeue runs");
    let mut v: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn workflow_id(said: &str) -> String {
    said.lines()
        .find_map(|l| l.strip_prefix("workflow "))
        .expect("prints `workflow N`")
        .trim()
        .to_string()
}

fn submitted_ids(said: &str) -> Vec<String> {
    said.lines()
        .filter_map(|l| l.strip_prefix("allocation "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// `torc submit SPEC --watch` in the background (its output to files in `dir`).
fn watch(dir: &Path, url: &str, spec: &Path) -> Child {
    let log = std::fs::File::create(dir.join("watch.out")).unwrap();
    let err = std::fs::File::create(dir.join("watch.err")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_torc"))
        .current_dir(dir)
        .args(["--url", url, "submit", spec.to_str().unwrap(), "--watch"])
        .args(["--poll-secs", "0.5"])
        .stdout(log)
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(dir: &Path, mut child: Child) -> String {
    let st = child.wait().unwrap();
    let said = std::fs::read_to_string(dir.join("watch.out")).unwrap();
    let err = std::fs::read_to_string(dir.join("watch.err")).unwrap();
    assert!(st.success(), "{said}{err}");
    said
}

#[test]
fn cancel_leaves_no_allocation_running_or_queued() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let spec = write_spec(
        dir.path(),
        "cancel.yaml",
        r#"
name: cancel_both
slurm_schedulers:
  - {name: whole, account: torc, partition: debug, nodes: 1, walltime: "00:10:00", extra: "--exclusive"}
actions:
  - {trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: whole, scheduler_type: slurm, num_allocations: 2}
jobs:
  - {name: "long_{i}", command: "sleep 600", scheduler: whole, parameters: {i: "1:4"}}
"#,
    );
    let out = torc_in(
        dir.path(),
        &["--url", &url, "submit", spec.to_str().unwrap()],
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    let id = workflow_id(&said);
    let ids = submitted_ids(&said);
    assert_eq!(ids.len(), 2, "{said}");
    wait_until(
        "one allocation running and one queued",
        Duration::from_secs(60),
        || slurm_states(&ids) == ["PENDING", "RUNNING"],
    );
    // Jobs run in the running one.
    wait_until("jobs to run", Duration::from_secs(60), || {
        status(dir.path(), &url, &id)["job_counts"]["running"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let out = torc_in(dir.path(), &["--url", &url, "workflows", "cancel", &id]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cancelled allocation(s)"), "{err}");
    wait_until("the queue to empty", Duration::from_secs(60), || {
        queued(&ids).is_empty()
    });
    let recorded = allocations(dir.path(), &url, &id);
    assert_eq!(recorded.len(), 2);
    for a in &recorded {
        assert_eq!(a["state"], "ended", "{a}");
    }
}

#[test]
fn a_queued_allocation_whose_work_was_done_is_cancelled_and_stage_two_waits_for_its_jobs() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let out_file = dir.path().join("final.txt");
    let spec = write_spec(
        dir.path(),
        "stages.yaml",
        &format!(
            r#"
name: stages
slurm_schedulers:
  - {{name: whole, account: torc, partition: debug, nodes: 1, walltime: "00:10:00", extra: "--exclusive"}}
  - {{name: after, account: torc, partition: debug, nodes: 1, walltime: "00:10:00", mem: 256M}}
actions:
  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: whole, scheduler_type: slurm, num_allocations: 2}}
  - {{trigger_type: on_jobs_ready, action_type: schedule_nodes, scheduler: after, scheduler_type: slurm, jobs: [final]}}
compute_node_wait_for_new_jobs_seconds: 5
jobs:
  - {{name: "a_{{i}}", command: "sleep 3", scheduler: whole, parameters: {{i: "1:4"}}}}
  - {{name: final, command: "echo $SLURM_JOB_ID > {out}", scheduler: after, depends_on: [a_1, a_2, a_3, a_4]}}
"#,
            out = out_file.display()
        ),
    );
    let child = watch(dir.path(), &url, &spec);
    let said = finish(dir.path(), child);
    assert!(said.contains("is complete"), "{said}");
    let id = workflow_id(&said);
    let recorded = allocations(dir.path(), &url, &id);
    let of = |s: &str| -> Vec<&Value> { recorded.iter().filter(|a| a["scheduler"] == s).collect() };
    let whole = of("whole");
    assert_eq!(whole.len(), 2, "{recorded:?}");
    // One ran every a_*; the other waited behind it and was cancelled, never started.
    let cancelled: Vec<&&Value> = whole
        .iter()
        .filter(|a| a["note"].as_str().unwrap_or("").contains("no work left"))
        .collect();
    assert_eq!(cancelled.len(), 1, "{recorded:?}");
    assert!(cancelled[0]["started_at"].is_null(), "{recorded:?}");
    // Stage two's allocation was asked for once `final` was ready: after every a_* ended.
    let after = of("after");
    assert_eq!(after.len(), 1, "{recorded:?}");
    let requested = after[0]["requested_at"].as_i64().unwrap();
    let results = torc_in(
        dir.path(),
        &["--url", &url, "results", "list", &id, "--json"],
    );
    let results: Value = serde_json::from_slice(&results.stdout).unwrap();
    let last_a_end = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "completed")
        .filter_map(|r| r["end_time"].as_i64())
        .collect::<Vec<_>>();
    assert_eq!(last_a_end.len(), 5, "{results}");
    let stage_one_end = {
        let mut v = last_a_end.clone();
        v.sort();
        v[3]
    };
    assert!(
        requested >= stage_one_end,
        "stage two requested at {requested}, before stage one ended at {stage_one_end}"
    );
    let ran_in = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        ran_in.trim(),
        after[0]["batch_id"].to_string(),
        "final ran in its own allocation"
    );
    let ids: Vec<String> = recorded.iter().map(|a| a["batch_id"].to_string()).collect();
    wait_until("the queue to empty", Duration::from_secs(60), || {
        queued(&ids).is_empty()
    });
}

#[test]
fn a_job_stopped_at_its_allocations_end_runs_again_in_a_new_one() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let marker = dir.path().join("first_attempt");
    let spec = write_spec(
        dir.path(),
        "walltime.yaml",
        &format!(
            r#"
name: walltime
execution_config: {{sigkill_headroom_seconds: 25}}
failure_handlers:
  - {{name: again, rules: [{{exit_codes: [152], max_retries: 1}}]}}
resource_requirements:
  - {{name: short, num_cpus: 1, memory: 64m, runtime: PT10S}}
slurm_schedulers:
  - {{name: brief, account: torc, partition: debug, nodes: 1, walltime: "00:01:00", mem: 512M}}
actions:
  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: brief, scheduler_type: slurm, num_allocations: 1}}
compute_node_wait_for_new_jobs_seconds: 5
jobs:
  - name: overrun
    command: "if [ -e {m} ]; then echo second; else touch {m}; sleep 300; fi"
    resource_requirements: short
    failure_handler: again
    scheduler: brief
"#,
            m = marker.display()
        ),
    );
    let child = watch(dir.path(), &url, &spec);
    let said = finish(dir.path(), child);
    assert!(said.contains("is complete"), "{said}");
    let id = workflow_id(&said);
    let results = torc_in(
        dir.path(),
        &["--url", &url, "results", "list", &id, "--json"],
    );
    let results: Value = serde_json::from_slice(&results.stdout).unwrap();
    let rows = results.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{results}");
    assert_eq!(rows[0]["return_code"], 152, "stopped for time: {results}");
    assert_eq!(rows[0]["status"], "terminated", "{results}");
    assert_eq!(rows[1]["return_code"], 0, "{results}");
    let recorded = allocations(dir.path(), &url, &id);
    assert_eq!(recorded.len(), 2, "a second allocation: {recorded:?}");
    assert_ne!(rows[0]["runner"], rows[1]["runner"], "{results}");
}

#[test]
fn a_generated_spec_runs_as_it_is() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let spec = write_spec(
        dir.path(),
        "plain.yaml",
        r#"
name: plain
resource_requirements:
  - {name: small, num_cpus: 1, memory: 64m, runtime: PT2M}
compute_node_wait_for_new_jobs_seconds: 5
jobs:
  - {name: "prep_{i}", command: "echo $SLURM_JOB_ID", resource_requirements: small, parameters: {i: "1:3"}}
  - {name: sum, command: "echo $SLURM_JOB_ID", resource_requirements: small, depends_on: [prep_1, prep_2, prep_3]}
"#,
    );
    let generated = dir.path().join("slurm.yaml");
    let out = torc_in(
        dir.path(),
        &[
            "slurm",
            "generate",
            spec.to_str().unwrap(),
            "--account",
            "torc",
            "-o",
            generated.to_str().unwrap(),
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("partition debug"), "{err}");
    let written = std::fs::read_to_string(&generated).unwrap();
    for want in [
        "slurm_schedulers",
        "on_workflow_start",
        "on_jobs_ready",
        "scheduler: small",
    ] {
        assert!(written.contains(want), "no {want:?} in:\n{written}");
    }
    let child = watch(dir.path(), &url, &generated);
    let said = finish(dir.path(), child);
    assert!(said.contains("is complete"), "{said}");
    let id = workflow_id(&said);
    let recorded = allocations(dir.path(), &url, &id);
    assert_eq!(recorded.len(), 2, "one allocation per stage: {recorded:?}");
    // A partition that cannot hold the jobs is refused with the reason.
    let out = torc_in(
        dir.path(),
        &[
            "slurm",
            "generate",
            spec.to_str().unwrap(),
            "--account",
            "torc",
            "--partition",
            "nope",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no partition nope"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn mode_slurm_runs_each_job_as_a_step_of_its_allocation() {
    if !slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let out = dir.path().join("steps");
    std::fs::create_dir_all(&out).unwrap();
    let spec = write_spec(
        dir.path(),
        "steps.yaml",
        &format!(
            r#"
name: steps
execution_config: {{mode: slurm}}
resource_requirements:
  - {{name: one, num_cpus: 1, memory: 100m, runtime: PT1M}}
slurm_schedulers:
  - {{name: s, account: torc, partition: debug, nodes: 1, walltime: "00:05:00", mem: 1G}}
actions:
  - {{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: s, scheduler_type: slurm}}
compute_node_wait_for_new_jobs_seconds: 5
jobs:
  - name: "step_{{i}}"
    command: echo "${{SLURM_STEP_ID:-none}} ${{SLURM_JOB_ID}}" > {out}/step_{{i}}
    resource_requirements: one
    scheduler: s
    parameters: {{i: "1:4"}}
"#,
            out = out.display()
        ),
    );
    let child = watch(dir.path(), &url, &spec);
    let said = finish(dir.path(), child);
    assert!(said.contains("is complete"), "{said}");
    let mut steps = Vec::new();
    for i in 1..=4 {
        let got = std::fs::read_to_string(out.join(format!("step_{i}"))).unwrap();
        let mut parts = got.split_whitespace();
        let step = parts.next().unwrap().to_string();
        assert!(
            step.parse::<u64>().is_ok(),
            "step_{i} did not run as a Slurm step: {got:?}"
        );
        steps.push(step);
    }
    steps.sort();
    steps.dedup();
    assert_eq!(steps.len(), 4, "one step per job: {steps:?}");
}
