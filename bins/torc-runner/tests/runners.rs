//! Real `torc-runner` processes against a server started in-process on 127.0.0.1:0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use torc_core::changes::{EventKind, WorkflowState};
use torc_core::spec::SpecFormat;
use torc_core::{JobStatus, WorkflowId};
use torc_http::{HttpClient, JobResult, Server, ServerConfig};

mod hostile;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parallel jobs per runner: the cores shared out among `runners`, at least 1.
fn per_runner(runners: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores / runners).max(1)
}

async fn start(dir: &Path) -> (Server, HttpClient) {
    start_on(dir.join("torc.db").display().to_string()).await
}

async fn start_on(database: String) -> (Server, HttpClient) {
    let mut config = ServerConfig::new(database);
    config.port = 0;
    config.workers = Some(2);
    let server = Server::start(config).await.unwrap();
    let client = HttpClient::new(&server.url()).unwrap();
    (server, client)
}

/// Runs `torc-runner` for `id` to its end (on a blocking thread: the server shares this
/// runtime).
async fn run_runner(url: String, id: WorkflowId, parallel: usize, out: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_torc-runner"))
            .args(["--url", &url, "--workflow", &id.to_string()])
            .args(["--max-parallel-jobs", &parallel.to_string()])
            .arg("--output-dir")
            .arg(&out)
            .env_remove("TORC_API_URL")
            .stdin(Stdio::null())
            .output()
            .expect("torc-runner starts")
    })
    .await
    .unwrap()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "torc-runner failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn all_results(client: &HttpClient, id: WorkflowId) -> Vec<JobResult> {
    let mut all = Vec::new();
    loop {
        let page = client
            .results(id, None, all.len() as u64, 10_000)
            .await
            .unwrap();
        if page.items.is_empty() {
            return all;
        }
        all.extend(page.items);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_runner_processes_share_flat10000() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let created = client
        .create_workflow(example("flat10000.yaml"), SpecFormat::Yaml)
        .await
        .unwrap();
    assert_eq!(created.num_jobs, 10_000);
    let id = created.id;

    let runners = (0..4).map(|i| {
        run_runner(
            server.url(),
            id,
            per_runner(4),
            dir.path().join(format!("out{i}")),
        )
    });
    for out in futures_join_all(runners).await {
        assert_success(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("WorkflowComplete"));
    }

    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, WorkflowState::Complete);
    assert_eq!(status.count(JobStatus::Completed), 10_000);
    let results = all_results(&client, id).await;
    assert_eq!(results.len(), 10_000, "one result per job, none run twice");
    let mut per_job: HashMap<u32, usize> = HashMap::new();
    for r in &results {
        assert_eq!((r.return_code, r.attempt_id), (0, 1), "{r:?}");
        *per_job.entry(r.job_id.0).or_default() += 1;
    }
    assert_eq!(per_job.len(), 10_000);
    assert!(per_job.values().all(|&n| n == 1));
    server.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_process_completes_pipeline3001() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    pipeline3001_through(server, client, dir.path()).await;
}

/// The same through a server whose database is PostgreSQL: `TORC_TEST_POSTGRES_URL` (set by
/// `.ci/run`). Without it the test says so and passes, except in CI, where it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_process_completes_pipeline3001_on_postgres() {
    let Ok(url) = std::env::var("TORC_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "TORC_TEST_POSTGRES_URL is not set in CI: run the tests through .ci/run"
        );
        eprintln!("skipped: TORC_TEST_POSTGRES_URL is not set (see .ci/run)");
        return;
    };
    let dir = TempDir::new().unwrap();
    let (server, client) = start_on(url).await;
    pipeline3001_through(server, client, dir.path()).await;
}

async fn pipeline3001_through(server: Server, client: HttpClient, dir: &Path) {
    let id = client
        .create_workflow(example("pipeline3001.yaml"), SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let out = run_runner(server.url(), id, per_runner(1), dir.join("out")).await;
    assert_success(&out);
    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, WorkflowState::Complete);
    assert_eq!(status.count(JobStatus::Completed), 3001);
    assert_eq!(all_results(&client, id).await.len(), 3001);
    server.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_has_its_jobs_run_by_another_after_its_lease() {
    let dir = TempDir::new().unwrap();
    let mut config = ServerConfig::new(dir.path().join("torc.db").display().to_string());
    config.port = 0;
    config.workers = Some(2);
    config.leases.lease = Duration::from_millis(1500);
    let server = Server::start(config).await.unwrap();
    let client = HttpClient::new(&server.url()).unwrap();
    let spec = "name: twelve\njobs:\n  - name: j{i}\n    command: sleep 1\n    parameters:\n      i: \"1:12\"\n";
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;

    let mut a = Command::new(env!("CARGO_BIN_EXE_torc-runner"))
        .args(["--url", &server.url(), "--workflow", &id.to_string()])
        .args(["--max-parallel-jobs", "4", "--runner-id", "a"])
        .args(["--heartbeat-secs", "0.2"])
        .arg("--output-dir")
        .arg(dir.path().join("out-a"))
        .env_remove("TORC_API_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until runner a holds four jobs, then kill it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        let page = client.jobs(id, None, 0, 100).await.unwrap();
        let held: Vec<_> = page
            .items
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Pending | JobStatus::Running))
            .map(|j| j.id)
            .collect();
        if held.len() == 4 {
            break held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runner a never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.kill().unwrap();
    a.wait().unwrap();

    let out = tokio::task::spawn_blocking({
        let url = server.url();
        let out_dir = dir.path().join("out-b");
        move || {
            Command::new(env!("CARGO_BIN_EXE_torc-runner"))
                .args(["--url", &url, "--workflow", &id.to_string()])
                .args(["--max-parallel-jobs", "4", "--runner-id", "b"])
                .arg("--output-dir")
                .arg(out_dir)
                .env_remove("TORC_API_URL")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_success(&out);

    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, WorkflowState::Complete);
    assert_eq!(status.count(JobStatus::Completed), 12);
    let results = all_results(&client, id).await;
    assert_eq!(results.len(), 12, "one result per job: {results:?}");
    for r in &results {
        // What runner a held when it died ran again on b, as attempt 2; anything a finished
        // before (on a slow machine) keeps its attempt 1.
        if held.contains(&r.job_id) {
            assert_eq!(r.runner.as_ref().map(|r| r.0.as_str()), Some("b"));
            assert_eq!(r.attempt_id, 2, "{r:?}");
        } else {
            assert_eq!(r.attempt_id, 1, "{r:?}");
        }
    }
    let events = client.events(id, 0, 1000).await.unwrap().items;
    let lost: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::JobLost)
        .collect();
    assert_eq!(lost.len(), 4, "{events:?}");
    for e in lost {
        assert!(held.contains(&e.job_id.unwrap()));
        assert!(
            e.message.contains("runner a was not heard from"),
            "{}",
            e.message
        );
    }
    server.stop(true).await.unwrap();
}

/// A `torc-runner --shared` process with `args`, run to its end (idle timeout).
async fn shared_runner(url: String, name: &str, args: &[&str], out: PathBuf) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_torc-runner"));
    cmd.args(["--url", &url, "--shared", "--runner-id", name])
        .args(["--idle-timeout", "3"])
        .args(args)
        .arg("--output-dir")
        .arg(out)
        .env_remove("TORC_API_URL")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_runners_share_out_three_workflows_fairly_and_respect_tags() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let spec = |name: &str, n: u32, tags: &str| {
        format!(
            "name: {name}\njobs:\n  - name: j{{i}}\n    command: sleep 0.02\n{tags}    parameters:\n      i: \"1:{n}\"\n"
        )
    };
    let mut ids = Vec::new();
    for name in ["w1", "w2", "w3"] {
        let created = client
            .create_workflow(spec(name, 2000, ""), SpecFormat::Yaml)
            .await
            .unwrap();
        ids.push(created.id);
    }
    let gpu = client
        .create_workflow(spec("gpu", 40, "    tags: [gpu]\n"), SpecFormat::Yaml)
        .await
        .unwrap()
        .id;

    let url = server.url();
    let runners = vec![
        tokio::spawn(shared_runner(
            url.clone(),
            "s1",
            &["--max-parallel-jobs", "4"],
            dir.path().join("s1"),
        )),
        tokio::spawn(shared_runner(
            url.clone(),
            "s2",
            &["--max-parallel-jobs", "4"],
            dir.path().join("s2"),
        )),
        tokio::spawn(shared_runner(
            url.clone(),
            "tagged",
            &["--max-parallel-jobs", "2", "--tags", "gpu"],
            dir.path().join("t"),
        )),
    ];

    for r in runners {
        let out = r.await.unwrap();
        assert_success(&out);
    }

    // From the results' start and end times (one consistent record, free of the skew of
    // polling three statuses one after the other while jobs come and go): every 20 ms of the run,
    // how many jobs of each workflow were running, averaged over windows of half a second. A
    // single instant says little with eight slots for three workflows: which queued job starts
    // next on a runner is a matter of microseconds.
    let mut spans: Vec<Vec<(i64, i64)>> = Vec::new();
    for id in &ids {
        let results = all_results(&client, *id).await;
        assert_eq!(results.len(), 2000, "workflow {id}");
        spans.push(
            results
                .iter()
                .map(|r| (r.start_time.0, r.end_time.0))
                .collect(),
        );
    }
    let first_start = spans.iter().flatten().map(|s| s.0).min().unwrap();
    let finished: Vec<i64> = spans
        .iter()
        .map(|s| s.iter().map(|r| r.1).max().unwrap())
        .collect();
    let all_busy_until = *finished.iter().min().unwrap();
    let mut samples = Vec::new();
    let mut t = first_start + 100;
    while t < all_busy_until - 100 {
        let running: Vec<usize> = spans
            .iter()
            .map(|s| s.iter().filter(|&&(a, b)| a <= t && t < b).count())
            .collect();
        samples.push(running);
        t += 20;
    }
    assert!(
        samples.len() >= 50,
        "too short a run to judge: {} samples",
        samples.len()
    );
    let windows: Vec<Vec<f64>> = samples
        .chunks(25)
        .filter(|w| w.len() == 25)
        .map(|w| {
            (0..3)
                .map(|k| w.iter().map(|r| r[k] as f64).sum::<f64>() / w.len() as f64)
                .collect()
        })
        .collect();
    // Fairness is judged while the pool is saturated: a window where the machine starved every
    // runner (a loaded host) says nothing about how the slots were shared.
    let saturated: Vec<Vec<f64>> = windows
        .iter()
        .filter(|w| w.iter().sum::<f64>() >= 0.85 * 8.0)
        .cloned()
        .collect();
    assert!(
        saturated.len() * 2 >= windows.len(),
        "the pool was saturated in only {} of {} half seconds: {windows:?}",
        saturated.len(),
        windows.len()
    );
    let windows = saturated;
    let spread = |r: &Vec<f64>| {
        let max = r.iter().cloned().fold(f64::MIN, f64::max);
        let min = r.iter().cloned().fold(f64::MAX, f64::min);
        max - min
    };
    let worst = windows.iter().map(spread).fold(0.0, f64::max);
    let mean = windows.iter().map(spread).sum::<f64>() / windows.len() as f64;
    // Eight slots over three workflows: a fair share is 2.7 each.
    assert!(
        worst <= 1.5,
        "mean running jobs {worst:.2} apart in a half second: {windows:?}"
    );
    let (first, last) = (
        *finished.iter().min().unwrap(),
        *finished.iter().max().unwrap(),
    );
    let run = last - first_start;
    assert!(
        last - first <= run / 10 + 200,
        "finished {} ms apart in a run of {run} ms",
        last - first
    );
    eprintln!(
        "{} half seconds: mean running jobs per workflow at most {worst:.2} apart (on average \
         {mean:.2}); finished within {} ms of each other in a {run} ms run",
        windows.len(),
        last - first
    );

    // Every workflow complete; tagged jobs ran only on the tagged runner, which ran nothing else.
    for id in ids.iter().chain([&gpu]) {
        let status = client.status(*id).await.unwrap();
        assert_eq!(status.state, WorkflowState::Complete, "workflow {id}");
        for r in all_results(&client, *id).await {
            let on_tagged = r.runner.as_ref().is_some_and(|n| n.0 == "tagged");
            assert_eq!(
                on_tagged,
                *id == gpu,
                "workflow {id} job {} ran on {:?}",
                r.job_id,
                r.runner
            );
        }
    }
    server.stop(true).await.unwrap();
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut outs = Vec::with_capacity(handles.len());
    for h in handles {
        outs.push(h.await.unwrap());
    }
    outs
}

/// With authentication on: the runner sends `TORC_API_TOKEN`, its jobs never see it, and
/// without a token it stops at once with the server's refusal instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_environment_and_stays_out_of_jobs() {
    let dir = TempDir::new().unwrap();
    let auth = torc_http::AuthConfig::from_yaml(&format!(
        "users: [{{name: ana}}]\ntokens: [{{name: t, user: ana, sha256: {}}}]\n",
        torc_http::auth::hash_token("ana-token")
    ))
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("torc.db").display().to_string());
    config.port = 0;
    config.workers = Some(2);
    config.auth = Some(auth);
    let server = Server::start(config).await.unwrap();
    let client = HttpClient::new(&server.url())
        .unwrap()
        .with_token("ana-token")
        .unwrap();
    let seen = dir.path().join("seen.txt");
    let spec = format!(
        "name: secret\njobs:\n  - name: a\n    command: echo \"${{TORC_API_TOKEN-unset}}\" > {}\n",
        seen.display()
    );
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let runner = |token: Option<&'static str>| {
        let (url, out) = (server.url(), dir.path().join("out"));
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_torc-runner"));
            cmd.args(["--url", &url, "--workflow", &id.to_string()])
                .arg("--output-dir")
                .arg(&out)
                .env_remove("TORC_API_URL")
                .env_remove("TORC_API_TOKEN")
                .stdin(Stdio::null());
            if let Some(token) = token {
                cmd.env("TORC_API_TOKEN", token);
            }
            cmd.output().expect("torc-runner starts")
        })
    };
    let refused = runner(None).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401") && err.contains("token"), "{err}");

    assert_success(&runner(Some("ana-token")).await.unwrap());
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "unset");
    let status = client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Completed), 1);
    server.stop(true).await.unwrap();
}
