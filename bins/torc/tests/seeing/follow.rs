//! Following a workflow that runs elsewhere (`torc watch`, `torc events list --follow`), its
//! resource samples and their plot, and moving workflows (`workflows delete`, `export`,
//! `import`).

use super::super::{start_server, text, torc, torc_in, wait_for, write_spec};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};

/// A job held until the test writes `release`, a failure after it, and a job after both.
const HELD: &str = r#"
name: held
jobs:
  - name: held
    command: "touch started; while [ ! -f release ]; do sleep 0.05; done; echo released"
  - name: broken
    command: "echo the-broken-reason >&2; exit 3"
    depends_on: [held]
"#;

fn spawn(dir: &Path, args: &[&str]) -> Child {
    torc()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn with_url<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    all
}

/// Waits until `held` runs (its state as the server at `url` tells it).
fn wait_until_held_runs(dir: &Path, url: &str) {
    wait_for("the held job to run", || {
        let out = torc_in(dir, &with_url(url, &["jobs", "list", "1", "--json"]));
        serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|j| j["status"] == "running"))
        })
    });
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let out: Output = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A follower whose output is read as it comes, so that the test can wait until it follows.
struct Follower {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn spawn(dir: &Path, args: &[&str]) -> Follower {
        let mut child = spawn(dir, args);
        let (out, err) = (Arc::default(), Arc::default());
        let read = |stream: Box<dyn Read + Send>, into: &Arc<Mutex<String>>| {
            let into = Arc::clone(into);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut s = into.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        let readers = vec![
            read(Box::new(child.stdout.take().unwrap()), &out),
            read(Box::new(child.stderr.take().unwrap()), &err),
        ];
        Follower {
            child,
            out,
            err,
            readers,
        }
    }

    /// Waits until it printed something on stdout or stderr: it is following.
    fn wait_until_following(&self) {
        wait_for("the follower's first output", || {
            !self.out.lock().unwrap().is_empty() || !self.err.lock().unwrap().is_empty()
        });
    }

    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (status.code(), out, err)
    }
}

#[test]
fn watch_follows_a_run_of_another_process_and_exits_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "held.yaml", HELD);
    let run = spawn(dir.path(), &["run", spec.to_str().unwrap(), "--quiet"]);
    // The job's own mark, not the database: the run is still creating it.
    wait_for("the held job to run", || {
        dir.path().join("started").exists()
    });
    let watch = Follower::spawn(dir.path(), &["watch", "1"]);
    let events = Follower::spawn(dir.path(), &["events", "list", "1", "--follow"]);
    watch.wait_until_following();
    events.wait_until_following();
    std::fs::write(dir.path().join("release"), "").unwrap();
    let (code, stdout, stderr) = watch.finish();
    assert_eq!(code, Some(1), "a failed job: exit 1; {stderr}");
    assert!(
        stdout.contains("workflow 1 complete: 1 completed, 1 failed"),
        "{stdout}"
    );
    // The failure as it happened, with the last lines of its stderr file.
    assert!(
        stderr.contains("job 2 (broken), attempt 1: return code 3")
            && stderr.contains("the-broken-reason"),
        "{stderr}"
    );
    assert!(
        stderr.contains("workflow 1: 2/2 done"),
        "the progress lines: {stderr}"
    );
    let (code, stdout, _) = events.finish();
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("workflow_created") && stdout.contains("workflow_completed"),
        "{stdout}"
    );
    assert_eq!(finish(run).0, Some(1));
    // A finished workflow: at once, with the same verdict.
    let out = torc_in(dir.path(), &["watch", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["watch", "7"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("workflow 7"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn watch_and_events_follow_a_workflow_on_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let spec = write_spec(dir.path(), "held.yaml", HELD);
    let run = spawn(
        dir.path(),
        &with_url(&url, &["run", spec.to_str().unwrap(), "--quiet"]),
    );
    wait_until_held_runs(dir.path(), &url);
    let watch = Follower::spawn(dir.path(), &with_url(&url, &["watch", "1"]));
    let events = Follower::spawn(
        dir.path(),
        &with_url(&url, &["events", "list", "1", "--follow", "--json"]),
    );
    watch.wait_until_following();
    events.wait_until_following();
    std::fs::write(dir.path().join("release"), "").unwrap();
    let (code, stdout, stderr) = watch.finish();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.contains("1 completed, 1 failed"), "{stdout}");
    assert!(stderr.contains("the-broken-reason"), "{stderr}");
    let (code, stdout, stderr) = events.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let kinds: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("workflow_created"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("workflow_completed"),
        "{kinds:?}"
    );
    finish(run);
    // --tail: only the last events.
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["events", "list", "1", "--tail", "1"]),
    );
    let last = text(&out.stdout);
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(last.contains("workflow_completed"), "{last}");
    // The long poll answers at once for a finished workflow, and is in the document.
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["events", "list", "1", "--follow"]),
    );
    assert!(out.status.success());
    let doc: Value = reqwest_get(&format!("{url}/torc-service/v1/openapi.json"));
    assert!(doc["paths"]["/torc-service/v1/workflows/{id}/events/wait"].is_object());
    assert!(doc["paths"]["/torc-service/v1/workflows/{id}/samples"].is_object());
}

fn reqwest_get(url: &str) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = torc_http::HttpClient::new(url.split("/torc-service").next().unwrap()).unwrap();
    rt.block_on(client.openapi()).unwrap()
}

const SAMPLED: &str = r#"
name: sampled
resource_monitor:
  sample_interval_seconds: 1
  jobs: {enabled: true, granularity: time_series}
  compute_node: {enabled: true, granularity: time_series}
jobs:
  - name: busy
    command: "end=$((SECONDS+3)); while [ $SECONDS -lt $end ]; do :; done"
  - name: quiet
    command: "true"
    depends_on: [busy]
"#;

#[test]
fn time_series_samples_are_recorded_served_and_plotted() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let spec = write_spec(dir.path(), "sampled.yaml", SAMPLED);
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["run", spec.to_str().unwrap(), "--quiet"]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = torc_http::HttpClient::new(&url).unwrap();
    let id = torc_core::WorkflowId(1);
    let job = rt
        .block_on(client.samples(id, Some(torc_core::JobId(1)), false, 0, 1000))
        .unwrap()
        .items;
    // Three seconds sampled every second (the first after 0.2 s).
    assert!((2..=5).contains(&job.len()), "{job:?}");
    assert!(job
        .iter()
        .all(|s| s.job_id == Some(torc_core::JobId(1)) && s.attempt_id == Some(1)));
    assert!(
        job.iter()
            .all(|s| s.memory_bytes > 0 && s.num_processes >= 1),
        "{job:?}"
    );
    assert!(
        job.iter().any(|s| s.cpu_percent > 5.0),
        "a busy loop uses CPU: {job:?}"
    );
    assert!(job.windows(2).all(|w| w[0].time <= w[1].time));
    let nodes = rt
        .block_on(client.samples(id, None, true, 0, 1000))
        .unwrap()
        .items;
    assert!(
        !nodes.is_empty() && nodes.iter().all(|s| s.job_id.is_none()),
        "{nodes:?}"
    );
    assert!(
        nodes
            .iter()
            .all(|s| s.memory_bytes > 0 && s.num_processes > 1),
        "{nodes:?}"
    );
    let err = rt.block_on(client.samples(id, Some(torc_core::JobId(1)), true, 0, 10));
    assert_eq!(err.unwrap_err().status(), Some(400));

    let out = torc_in(
        dir.path(),
        &with_url(&url, &["plot", "resources", "1", "-o", "r.svg"]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(dir.path().join("r.svg")).unwrap();
    assert!(
        svg.contains("job 1 (busy)") && svg.contains("node of"),
        "{svg}"
    );
    assert!(
        svg.contains("CPU (% of one CPU)") && svg.contains("node memory in use"),
        "{svg}"
    );
    let out = torc_in(
        dir.path(),
        &with_url(
            &url,
            &["plot", "resources", "1", "--job", "busy", "-o", "j.png"],
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let png = std::fs::read(dir.path().join("j.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // No samples: said so, with how to get them.
    let plain = write_spec(
        dir.path(),
        "plain.yaml",
        "name: p\njobs:\n  - name: a\n    command: \"true\"\n",
    );
    let out = torc_in(dir.path(), &["run", plain.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success());
    let out = torc_in(dir.path(), &["plot", "resources", "1", "-o", "n.svg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("granularity: time_series"),
        "{}",
        text(&out.stderr)
    );
}

/// `jobs list --json` and `results list --json` of workflow `id`, without row ids.
fn states_and_results(dir: &Path, id: &str) -> (Value, Value) {
    let jobs: Value =
        serde_json::from_slice(&torc_in(dir, &["jobs", "list", id, "--json"]).stdout).unwrap();
    let mut results: Value =
        serde_json::from_slice(&torc_in(dir, &["results", "list", id, "--json"]).stdout).unwrap();
    for r in results.as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("id");
    }
    (jobs, results)
}

#[test]
fn export_import_round_trips_states_and_results_and_delete_asks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "rt.yaml",
        "name: rt\njobs:\n  - name: ok_{i}\n    command: \"true\"\n    parameters:\n      i: \"1:3\"\n  - name: bad\n    command: \"exit 2\"\n  - name: after\n    command: \"true\"\n    depends_on: [bad]\n",
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let out = torc_in(dir.path(), &["workflows", "export", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format"], "torc-workflow");
    assert_eq!(doc["version"], 1);
    std::fs::write(dir.path().join("wf.json"), &out.stdout).unwrap();
    let out = torc_in(dir.path(), &["workflows", "import", "wf.json", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["workflow_id"], 2);
    assert_eq!(
        states_and_results(dir.path(), "1"),
        states_and_results(dir.path(), "2")
    );
    // Exported again, the document is the same apart from where it came from.
    let again: Value =
        serde_json::from_slice(&torc_in(dir.path(), &["workflows", "export", "2"]).stdout).unwrap();
    for key in ["definition", "spec", "jobs", "results", "events"] {
        assert_eq!(doc[key], again[key], "{key} differs");
    }
    assert_eq!(
        doc["exported_from"]["state"],
        again["exported_from"]["state"]
    );
    // The import carries on like the original: a failed-only reset reruns bad and after.
    let out = torc_in(dir.path(), &["workflows", "reset", "2", "--failed-only"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["run", "2", "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "bad fails again");
    // Bad input is refused with the reason, and nothing is created.
    std::fs::write(dir.path().join("bad.json"), r#"{"format":"other"}"#).unwrap();
    let out = torc_in(dir.path(), &["workflows", "import", "bad.json"]);
    assert_eq!(out.status.code(), Some(2));
    let mut wrong = doc.clone();
    wrong["version"] = 99.into();
    std::fs::write(dir.path().join("v99.json"), wrong.to_string()).unwrap();
    let out = torc_in(dir.path(), &["workflows", "import", "v99.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("version 99"),
        "{}",
        text(&out.stderr)
    );
    let listed: Value =
        serde_json::from_slice(&torc_in(dir.path(), &["workflows", "list", "--json"]).stdout)
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // Delete: refused without --yes when nobody can be asked; done with it.
    let out = torc()
        .current_dir(dir.path())
        .args(["workflows", "delete", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["workflows", "delete", "2", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["jobs", "list", "2"]);
    assert_ne!(out.status.code(), Some(0), "deleted");
    let out = torc_in(dir.path(), &["workflows", "delete", "9", "--yes"]);
    assert_ne!(out.status.code(), Some(0));
    // And through a server.
    let url = start_server(&dir.path().join("server.db"));
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["run", spec.to_str().unwrap(), "--quiet"]),
    );
    assert_eq!(out.status.code(), Some(1));
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["workflows", "delete", "1", "-y"]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(
        dir.path(),
        &with_url(&url, &["workflows", "list", "--json"]),
    );
    assert_eq!(text(&out.stdout).trim(), "[]");
}
