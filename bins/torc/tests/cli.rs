//! End to end: the real `torc` binary, real subprocesses, real signals.

mod limits;
mod seeing;
mod slurm;
mod specs;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn torc() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_torc"));
    cmd.env_remove("TORC_OUTPUT_DIR")
        .env_remove("TORC_DB")
        .env_remove("TORC_API_TOKEN");
    cmd
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Runs `torc ARGS` in `dir` and returns its output.
fn torc_in(dir: &Path, args: &[&str]) -> Output {
    torc().current_dir(dir).args(args).output().unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let out = torc_in(dir, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn states(dir: &Path) -> Vec<(String, String)> {
    json(dir, &["jobs", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn state_of(states: &[(String, String)], name: &str) -> String {
    states.iter().find(|(n, _)| n == name).unwrap().1.clone()
}

#[test]
fn diamond_runs_end_to_end_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = torc_in(
        dir.path(),
        &["run", example("diamond.yaml").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result = std::fs::read_to_string(dir.path().join("data/result.txt")).unwrap();
    assert_eq!(result, "HELLO\ndlrow\n");
    let s = states(dir.path());
    assert_eq!(s.len(), 4);
    assert!(s.iter().all(|(_, st)| st == "completed"), "{s:?}");
    let stdio = dir.path().join("torc_output/job_stdio");
    // A stream's file is made at its first byte: these jobs write only their data files.
    assert!(stdio.is_dir());
    assert_eq!(std::fs::read_dir(&stdio).unwrap().count(), 0);
}

#[test]
fn pipeline3001_completes_with_one_result_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example("pipeline3001.yaml");
    let out = torc_in(
        dir.path(),
        &["run", spec.to_str().unwrap(), "--max-parallel-jobs", "4"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = json(dir.path(), &["results", "list", "--json"]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 3001);
    let mut ids: Vec<u64> = results
        .iter()
        .map(|r| {
            assert_eq!(r["return_code"], 0);
            r["job_id"].as_u64().unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3001);
}

/// The benchmark's 3,001-job workload (dependencies through files only, a fan-in by regex) runs
/// as written, here with relaxed durability; the flag is refused where it cannot apply.
#[test]
fn the_perf_workload_runs_through_its_files_with_relaxed_durability() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/perf3001.yaml");
    let spec = spec.to_str().unwrap();
    let out = torc_in(dir.path(), &["run", spec, "--relaxed-durability"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(dir.path().join("output/final_report.txt")).unwrap();
    assert_eq!(report.trim(), "1000");
    // Each stage deleted what it consumed.
    for stage in ["setup", "work"] {
        let left = std::fs::read_dir(dir.path().join("output").join(stage)).unwrap();
        assert_eq!(left.count(), 0, "{stage} files left");
    }
    let s = states(dir.path());
    assert_eq!(s.len(), 3001);
    assert!(s.iter().all(|(_, st)| st == "completed"));

    let out = torc_in(
        dir.path(),
        &[
            "--url",
            "http://127.0.0.1:9",
            "run",
            spec,
            "--relaxed-durability",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("torc-server --relaxed-durability"));
}

#[test]
fn a_failure_cancels_downstream_unless_the_job_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "fail.yaml",
        r#"
name: fail
jobs:
  - name: a
    command: "exit 1"
  - name: b
    command: "true"
    depends_on: [a]
  - name: c
    command: "true"
    depends_on: [b]
  - name: d
    command: "echo still ran > d.txt"
    depends_on: [a]
    cancel_on_blocking_job_failure: false
"#,
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert_eq!(state_of(&s, "a"), "failed");
    assert_eq!(state_of(&s, "b"), "canceled");
    assert_eq!(state_of(&s, "c"), "canceled");
    assert_eq!(state_of(&s, "d"), "completed");
    assert!(dir.path().join("d.txt").exists());
}

#[test]
fn a_failure_handler_retries_by_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "retry.yaml",
        r#"
name: retry
failure_handlers:
  - name: flaky
    rules:
      - exit_codes: [3]
        max_retries: 2
jobs:
  - name: flaky_job
    command: "echo x >> attempts.txt; [ $(wc -l < attempts.txt) -ge 2 ] || exit 3"
    failure_handler: flaky
  - name: other
    command: "exit 4"
    failure_handler: flaky
"#,
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert_eq!(state_of(&s, "flaky_job"), "completed");
    assert_eq!(state_of(&s, "other"), "failed", "exit 4 has no rule");
    let results = json(dir.path(), &["results", "list", "--job", "1", "--json"]);
    let codes: Vec<(i64, i64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["attempt_id"].as_i64().unwrap(),
                r["return_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(codes, [(1, 3), (2, 0)]);
}

#[test]
fn parameter_tables_are_read_relative_to_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/runs.csv"),
        "n,name\n1,a\n2,\"b, c\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data/runs.jsonl"),
        "{\"k\": 10}\n{\"k\": 20}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("seeds.txt"), "7\n\n8\n").unwrap();
    write_spec(
        dir.path(),
        "t.yaml",
        r#"
name: tables
jobs:
  - {name: "csv_{n}", command: "echo {name}", parameters_file: data/runs.csv}
  - {name: "jsonl_{k}", command: "echo {k}", parameters_file: data/runs.jsonl}
  - {name: "seed_{s}", command: "echo {s}", parameters: {s: "@seeds.txt"}}
"#,
    );
    let out = json(dir.path(), &["workflows", "create", "--json", "t.yaml"]);
    assert_eq!(out["num_jobs"], 6, "{out}");
    let jobs = json(dir.path(), &["jobs", "list", "--json"]);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["csv_1", "csv_2", "jsonl_10", "jsonl_20", "seed_7", "seed_8"]
    );
    // A table that cannot be read is a bad spec (exit 2) naming the entry and the file.
    write_spec(
        dir.path(),
        "missing.yaml",
        "name: m\njobs:\n  - {name: \"x_{a}\", command: x, parameters_file: nope.csv}\n",
    );
    let out = torc_in(
        dir.path(),
        &["workflows", "create", "--dry-run", "missing.yaml"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"jobs[0] ("x_{a}").parameters_file"#) && err.contains("`nope.csv`"),
        "{err}"
    );
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 && !zombie(pid)
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
        .unwrap_or(false)
}

fn interrupt(child: &Child) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

#[test]
fn ctrl_c_leaves_no_orphan_and_the_workflow_resumes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pids")).unwrap();
    let spec = write_spec(
        dir.path(),
        "long.yaml",
        r#"
name: long
jobs:
  - name: first
    command: "echo ran >> first.txt"
  - name: polite_{i}
    command: "[ -f release ] && exit 0; echo $$ > pids/$TORC_JOB_NAME; trap 'exit 143' TERM; sleep 60 & wait"
    depends_on: [first]
    supports_termination: true
    parameters:
      i: "1:2"
  - name: stubborn
    command: "[ -f release ] && exit 0; echo $$ > pids/$TORC_JOB_NAME; exec sleep 60"
    depends_on: [first]
  - name: after
    command: "echo done > after.txt"
    depends_on: [polite_1, polite_2, stubborn]
"#,
    );
    let child = torc()
        .current_dir(dir.path())
        .args(["run", spec.to_str().unwrap(), "--num-cpus", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids_dir = dir.path().join("pids");
    wait_for("three running jobs", || {
        std::fs::read_dir(&pids_dir).map_or(0, |d| d.count()) == 3
    });
    // Wait until each job wrote its pid completely.
    let mut pids = Vec::new();
    for name in ["polite_1", "polite_2", "stubborn"] {
        wait_for("a pid file", || {
            std::fs::read_to_string(pids_dir.join(name)).is_ok_and(|s| s.ends_with('\n'))
        });
        pids.push(
            std::fs::read_to_string(pids_dir.join(name))
                .unwrap()
                .trim()
                .parse::<i32>()
                .unwrap(),
        );
    }
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    for pid in pids {
        assert!(!alive(pid), "job process {pid} outlived the runner");
    }
    let s = states(dir.path());
    assert_eq!(state_of(&s, "first"), "completed");
    for name in ["polite_1", "polite_2", "stubborn"] {
        assert_eq!(state_of(&s, name), "terminated", "{s:?}");
    }
    // Resume: the interrupted jobs run again (now quickly), the completed one does not.
    std::fs::write(dir.path().join("release"), "").unwrap();
    let out = torc_in(dir.path(), &["run", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert!(s.iter().all(|(_, st)| st == "completed"), "{s:?}");
    let first = std::fs::read_to_string(dir.path().join("first.txt")).unwrap();
    assert_eq!(first.lines().count(), 1, "a completed job ran again");
    assert!(dir.path().join("after.txt").exists());
}

/// A real server on an ephemeral loopback port, on its own thread, for the test's lifetime.
fn start_server(db: &Path) -> String {
    start_server_with(db, None)
}

fn start_server_with(db: &Path, auth: Option<torc_http::AuthConfig>) -> String {
    let config = torc_http::ServerConfig {
        port: 0,
        auth,
        ..torc_http::ServerConfig::new(db.to_string_lossy().into_owned())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let server = torc_http::Server::start(config).await.unwrap();
            tx.send(server.url()).unwrap();
            server.wait().await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap()
}

#[test]
fn every_command_works_against_a_server_with_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let with_url = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        torc_in(dir.path(), &all)
    };
    let spec = example("diamond.yaml");
    let out = with_url(&["workflows", "create", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("created workflow 1"),
        "{}",
        text(&out.stdout)
    );
    let out = with_url(&["run", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/result.txt")).unwrap(),
        "HELLO\ndlrow\n"
    );
    let jobs: Value =
        serde_json::from_slice(&with_url(&["jobs", "list", "--json"]).stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 4);
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "completed"));
    let results: Value =
        serde_json::from_slice(&with_url(&["results", "list", "1", "--json"]).stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 4);
    let status: Value =
        serde_json::from_slice(&with_url(&["workflows", "status", "1", "--json"]).stdout).unwrap();
    assert_eq!(status["workflow"]["state"], "complete");
    assert_eq!(status["job_counts"]["completed"], 4);
    let listed = text(&with_url(&["workflows", "list"]).stdout);
    assert!(listed.contains("diamond"), "{listed}");
    // A full reset starts run 2 with every job ready or blocked again; cancel then ends it.
    let reset: Value =
        serde_json::from_slice(&with_url(&["workflows", "reset", "1", "--json"]).stdout).unwrap();
    assert_eq!(reset["workflow"]["run_id"], 2);
    assert_eq!(reset["job_counts"]["ready"], 1);
    let canceled: Value =
        serde_json::from_slice(&with_url(&["workflows", "cancel", "1", "--json"]).stdout).unwrap();
    assert_eq!(canceled["workflow"]["state"], "canceled");
    assert_eq!(canceled["job_counts"]["canceled"], 4);
    // Unknown workflows are a clear error.
    let out = with_url(&["jobs", "list", "99"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("99"), "{}", text(&out.stderr));
}

#[test]
fn a_server_gets_tables_written_in_and_takes_kdl() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    std::fs::write(dir.path().join("rows.csv"), "n\n1\n2\n").unwrap();
    write_spec(
        dir.path(),
        "t.yaml",
        "name: t\njobs:\n  - {name: \"a_{n}\", command: \"echo {n}\", parameters_file: rows.csv}\n",
    );
    write_spec(
        dir.path(),
        "k.kdl",
        "name \"k\"\njob \"a\" {\n    command \"true\"\n}\njob \"b\" {\n    command \"true\"\n    depends_on_job \"a\"\n}\n",
    );
    for (spec, jobs) in [("t.yaml", 2), ("k.kdl", 2)] {
        let out = json(
            dir.path(),
            &["--url", url.as_str(), "workflows", "create", "--json", spec],
        );
        assert_eq!(out["num_jobs"], jobs, "{spec}: {out}");
    }
    let jobs = json(
        dir.path(),
        &["--url", url.as_str(), "jobs", "list", "1", "--json"],
    );
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a_1", "a_2"]);
}

#[test]
fn reset_failed_only_reruns_failures_and_keeps_completed_results() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "flaky.yaml",
        r#"
name: flaky
jobs:
  - name: ok
    command: "echo ok >> ok.txt"
  - name: flaky
    command: "[ -f fixed ] || exit 5"
  - name: after
    command: "true"
    depends_on: [flaky]
"#,
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let out = torc_in(dir.path(), &["workflows", "reset", "1", "--failed-only"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["run", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert!(s.iter().all(|(_, st)| st == "completed"), "{s:?}");
    let ok_runs = std::fs::read_to_string(dir.path().join("ok.txt")).unwrap();
    assert_eq!(ok_runs.lines().count(), 1, "a completed job ran again");
    let results = json(dir.path(), &["results", "list", "--json"]);
    // Run 1's two jobs run in parallel: their results may be recorded in either order.
    let mut runs: Vec<(u64, i64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_u64().unwrap(),
                r["return_code"].as_i64().unwrap(),
            )
        })
        .collect();
    runs.sort();
    assert_eq!(runs, [(1, 0), (1, 5), (2, 0), (2, 0)]);
}

#[test]
fn a_timeout_terminates_the_job_cascades_and_a_failed_only_reset_reruns_just_that() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "slow.yaml",
        r#"
name: slow
jobs:
  - name: fast
    command: "echo fast >> fast.txt"
  - name: slow
    command: "[ -f fixed ] || sleep 60"
    timeout: PT1S
  - name: after
    command: "echo after >> after.txt"
    depends_on: [slow]
"#,
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert_eq!(state_of(&s, "fast"), "completed");
    assert_eq!(state_of(&s, "slow"), "terminated");
    assert_eq!(state_of(&s, "after"), "canceled");
    assert!(!dir.path().join("after.txt").exists());

    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let out = torc_in(dir.path(), &["workflows", "reset", "1", "--failed-only"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["run", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert!(s.iter().all(|(_, st)| st == "completed"), "{s:?}");
    let once = |f: &str| {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(once("fast.txt"), 1, "a completed job ran again");
    assert_eq!(once("after.txt"), 1);
}

#[test]
fn max_concurrent_jobs_caps_a_run_and_can_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "capped.yaml",
        r#"
name: capped
max_concurrent_jobs: 1
jobs:
  - name: j{i}
    command: "echo s >> log; sleep 0.2; echo e >> log"
    parameters:
      i: "1:3"
"#,
    );
    let out = torc_in(
        dir.path(),
        &["run", spec.to_str().unwrap(), "--max-parallel-jobs", "3"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(
        log, "s\ne\ns\ne\ns\ne\n",
        "jobs overlapped under a cap of 1"
    );

    let out = torc_in(
        dir.path(),
        &["workflows", "set-max-concurrent-jobs", "1", "2"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(
        dir.path(),
        &["workflows", "set-max-concurrent-jobs", "1", "none"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(
        dir.path(),
        &["workflows", "set-max-concurrent-jobs", "1", "0"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("at least 1"),
        "{}",
        text(&out.stderr)
    );
    let out = torc_in(
        dir.path(),
        &["workflows", "set-max-concurrent-jobs", "9", "2"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}

/// `torc run --url` runs jobs from its own process: they find its token neither in their
/// environment nor in its `/proc` environ and cmdline, however it was given.
#[test]
fn jobs_of_torc_run_never_see_its_token() {
    const TOKEN: &str = "tok_cli_secret_93b1e7";
    let dir = tempfile::tempdir().unwrap();
    let auth = torc_http::AuthConfig::from_yaml(&format!(
        "users: [{{name: ana}}]\ntokens: [{{name: ana, user: ana, sha256: {}}}]\n",
        torc_http::auth::hash_token(TOKEN)
    ))
    .unwrap();
    let url = start_server_with(&dir.path().join("server.db"), Some(auth));
    for how in ["environment", "command-line"] {
        let seen = dir.path().join(format!("seen-{how}.txt"));
        let spec = dir.path().join(format!("{how}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "name: peek\njobs:\n  - name: peek\n    command: \"{{ env; tr '\\\\0' '\\\\n' < /proc/$PPID/environ; tr '\\\\0' ' ' < /proc/$PPID/cmdline; echo; echo done; }} > {} 2>&1\"\n",
                seen.display()
            ),
        )
        .unwrap();
        let mut cmd = torc();
        cmd.current_dir(dir.path()).args(["--url", &url]);
        match how {
            "environment" => cmd.env("TORC_API_TOKEN", TOKEN),
            _ => cmd.args(["--token", TOKEN]),
        };
        let out = cmd.arg("run").arg(&spec).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let seen = std::fs::read_to_string(&seen).unwrap();
        assert!(seen.contains("done") && seen.contains("run"), "{seen}");
        assert!(
            !seen.contains(TOKEN),
            "the job found the token ({how}):\n{seen}"
        );
    }
}

#[test]
fn tokens_from_the_environment_and_tokens_create() {
    let dir = tempfile::tempdir().unwrap();
    let auth = torc_http::AuthConfig::from_yaml(&format!(
        "users: [{{name: ana}}, {{name: root, admin: true}}]
tokens: [{{name: ana, user: ana, sha256: {}}}, {{name: root, user: root, sha256: {}}}]
",
        torc_http::auth::hash_token("ana-token"),
        torc_http::auth::hash_token("root-token"),
    ))
    .unwrap();
    let url = start_server_with(&dir.path().join("server.db"), Some(auth));
    let as_token = |token: Option<&str>, args: &[&str]| {
        let mut cmd = torc();
        cmd.current_dir(dir.path()).args(["--url", &url]).args(args);
        if let Some(t) = token {
            cmd.env("TORC_API_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let spec = example("diamond.yaml");
    let out = as_token(None, &["workflows", "create", spec.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = as_token(
        Some("ana-token"),
        &["workflows", "create", spec.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An admin makes a runner token for workflow 1 and a plain one for ana.
    let out = as_token(
        Some("root-token"),
        &[
            "tokens",
            "create",
            "--user",
            "ana",
            "--workflow",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["scope"]["workflow"], 1);
    let runner_token = created["token"].as_str().unwrap().to_string();
    let out = as_token(Some(&runner_token), &["workflows", "status", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));

    let out = as_token(Some("root-token"), &["tokens", "create", "--user", "ana"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = text(&out.stdout).trim().to_string();
    let out = torc()
        .current_dir(dir.path())
        .args(["--url", &url, "--token", &plain, "run", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/result.txt")).unwrap(),
        "HELLO\ndlrow\n"
    );

    // Listed, then revoked: it stops working.
    let out = as_token(Some("root-token"), &["tokens", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("workflow 1") && listed.contains("config"),
        "{listed}"
    );
    assert!(!listed.contains(&plain), "{listed}");
    let listed: Value =
        serde_json::from_slice(&as_token(Some("root-token"), &["tokens", "list", "--json"]).stdout)
            .unwrap();
    let runner_name = created["name"].as_str().unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == runner_name));
    let out = as_token(Some("root-token"), &["tokens", "revoke", runner_name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = as_token(Some(&runner_token), &["workflows", "status", "1"]);
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // Only an admin makes tokens, and only on a server.
    let out = as_token(Some("ana-token"), &["tokens", "create", "--user", "ana"]);
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["tokens", "create", "--user", "ana"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
