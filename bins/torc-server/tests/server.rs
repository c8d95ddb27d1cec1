//! The `torc-server` binary: it listens where it says, serves, and on SIGTERM stops gracefully
//! with everything acknowledged on disk; killed with SIGKILL and restarted, it carries on where
//! it was, and a runner killed with SIGKILL has its jobs run elsewhere once its lease lapses.
//! Without an auth configuration it will not listen beyond loopback; with one, every request
//! needs a token, and `hash-token`/`new-token` write the configuration's lines.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use torc_core::api::{
    ClaimRequest, ClaimResponse, CompletionOutcome, Coordinator, CoordinatorError,
    HeartbeatRequest, HeartbeatResponse, ReportBatch, ReportResponse,
};
use torc_core::changes::{EventKind, WorkflowState};
use torc_core::spec::SpecFormat;
use torc_core::{JobId, JobStatus, RunnerId, WorkflowId};
use torc_http::{HttpClient, JobResult, Server, ServerConfig};
use torc_runner::{Capacity, RunnerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_then_stops_on_sigterm_keeping_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let server = ServerProcess::start(&db, 0, "60");
    let url = server.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = HttpClient::new(&url).unwrap();
    let spec = "name: kept\njobs:\n  - name: a\n    command: \"true\"\n";
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // A new server over the same file has the workflow.
    let mut config = ServerConfig::new(db.display().to_string());
    config.port = 0;
    let again = Server::start(config).await.unwrap();
    let client = HttpClient::new(&again.url()).unwrap();
    let w = client.workflow(id).await.unwrap();
    assert_eq!((w.name.as_str(), w.num_jobs), ("kept", 1));
    again.stop(true).await.unwrap();
}

// ---- crash recovery: the server killed with SIGKILL, a runner killed with SIGKILL ----

/// Longest any wait may take before the test fails instead of hanging.
const SAFETY: Duration = Duration::from_secs(240);

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `torc-server` process on 127.0.0.1.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    /// On `port` over `db`, with a lease of `lease_secs`.
    fn start(db: &Path, port: u16, lease_secs: &str) -> ServerProcess {
        Self::start_with(db, port, &["--lease-secs", lease_secs])
    }

    /// On `port` over `db`, with `args` besides.
    fn start_with(db: &Path, port: u16, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_torc-server"))
            .arg("--database")
            .arg(format!("sqlite:{}", db.display()))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("torc-server listening on ")
            .unwrap_or_else(|| panic!("the server did not start: {line:?}"))
            .to_string();
        ServerProcess { child, url }
    }

    /// SIGKILL, and wait until it is gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and its exit status once it is gone.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: a plain signal to our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP client as the runner's coordinator, recording every completion the server
/// acknowledged (accepted), so that the test can check none of them is lost.
struct Recording {
    client: HttpClient,
    acked: Mutex<Vec<(JobId, u32, JobStatus)>>,
    count: watch::Sender<usize>,
}

impl Coordinator for Recording {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        self.client.claim(req).await
    }

    async fn report(&self, batch: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
        let resp = self.client.report(batch.clone()).await?;
        let mut acked = self.acked.lock().unwrap();
        for (c, outcome) in batch.completions.iter().zip(&resp.outcomes) {
            if let CompletionOutcome::Accepted { status } = outcome {
                acked.push((c.job_id, c.attempt_id, *status));
            }
        }
        self.count.send_replace(acked.len());
        Ok(resp)
    }

    async fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        self.client.heartbeat(req).await
    }
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
async fn the_server_killed_five_times_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("torc.db");
    let port = free_port();
    let mut server = ServerProcess::start(&db, port, "2");
    let client = HttpClient::new(&server.url).unwrap();
    // pipeline3001 with jobs that sleep a few milliseconds.
    let spec = example("pipeline3001.yaml").replace("\"true\"", "\"sleep 0.003\"");
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;

    let (count, mut seen) = watch::channel(0usize);
    let coord = Arc::new(Recording {
        client: client.clone(),
        acked: Mutex::new(Vec::new()),
        count,
    });
    let mut cfg = RunnerConfig::new(
        id,
        RunnerId("survivor".into()),
        Capacity::MaxParallelJobs(4),
        dir.path().join("out"),
    );
    cfg.claim_wait = Duration::from_millis(500);
    cfg.heartbeat_interval = Some(Duration::from_millis(300));
    cfg.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::clone(&coord),
        cfg,
        torc_runner::Shutdown::new(),
    ));

    // Kill at five points spread over the run, each chosen at random within its fifth.
    let seed = std::process::id() as usize;
    let mut kills_at: Vec<usize> = (0..5)
        .map(|k| 100 + k * 550 + (seed.wrapping_mul(2_654_435_761).rotate_left(k as u32 * 7)) % 450)
        .collect();
    kills_at.sort_unstable();
    let mut acked_at_kill = Vec::new();
    for at in kills_at {
        tokio::time::timeout(SAFETY, seen.wait_for(|&n| n >= at))
            .await
            .expect("the run makes progress")
            .unwrap();
        server.kill();
        acked_at_kill.push(coord.acked.lock().unwrap().clone());
        server = ServerProcess::start(&db, port, "2");
    }
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, torc_runner::RunEnd::WorkflowComplete);

    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, WorkflowState::Complete);
    assert_eq!(status.counts.get(&JobStatus::Completed), Some(&3001));
    let results = all_results(&client, id).await;
    let mut successes: HashMap<JobId, Vec<u32>> = HashMap::new();
    for r in &results {
        if r.status == JobStatus::Completed {
            successes.entry(r.job_id).or_default().push(r.attempt_id);
        }
    }
    assert_eq!(successes.len(), 3001, "every job has a successful result");
    for (job, attempts) in &successes {
        assert_eq!(attempts.len(), 1, "job {job} succeeded {attempts:?} times");
    }
    let stored: HashSet<(JobId, u32, JobStatus)> = results
        .iter()
        .map(|r| (r.job_id, r.attempt_id, r.status))
        .collect();
    for acked in &acked_at_kill {
        for a in acked {
            assert!(stored.contains(a), "acknowledged {a:?} was lost");
        }
    }
    assert_eq!(acked_at_kill.len(), 5);
    assert!(acked_at_kill.windows(2).all(|w| w[0].len() < w[1].len()));
}

/// Runs `torc-server ARGS` with `stdin`, to its end: (success, stdout, stderr).
fn server_once(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_torc-server"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn refuses_to_listen_beyond_loopback_without_auth_and_reads_its_auth_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db").display().to_string();
    // Refused before anything is opened or bound.
    let (ok, _, err) = server_once(&["--database", &db, "--host", "0.0.0.0", "--port", "0"], "");
    assert!(!ok);
    assert!(
        err.contains("--auth-config") && err.contains("0.0.0.0"),
        "{err}"
    );
    assert!(!Path::new(&db).exists());

    let config = dir.path().join("auth.yaml");
    std::fs::write(&config, "users: [{name: ana, colour: red}]\n").unwrap();
    let config_arg = config.display().to_string();
    let (ok, _, err) = server_once(&["--database", &db, "--auth-config", &config_arg], "");
    assert!(!ok);
    assert!(err.contains("auth.yaml") && err.contains("colour"), "{err}");
    let (ok, _, err) = server_once(&["--auth-config", "/nonexistent/auth.yaml"], "");
    assert!(!ok);
    assert!(err.contains("/nonexistent/auth.yaml"), "{err}");
}

#[test]
fn hash_token_and_new_token_write_the_config_lines() {
    let (ok, out, err) = server_once(&["hash-token"], "s3cret\n");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), torc_http::auth::hash_token("s3cret"));
    let (ok, _, err) = server_once(&["hash-token"], "");
    assert!(!ok);
    assert!(err.contains("no token"), "{err}");

    let (ok, out, err) = server_once(&["new-token"], "");
    assert!(ok, "{err}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    let token = field("token: ");
    assert!(token.starts_with(torc_http::auth::TOKEN_PREFIX), "{token}");
    assert_eq!(field("sha256: "), torc_http::auth::hash_token(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_auth_config_every_request_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth.yaml");
    std::fs::write(
        &config,
        format!(
            "users: [{{name: ana}}]\ntokens: [{{name: t, user: ana, sha256: {}}}]\n",
            torc_http::auth::hash_token("ana-token")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let server =
        ServerProcess::start_with(&dir.path().join("server.db"), 0, &["--auth-config", config]);
    let url = server.url.clone();
    let anonymous = HttpClient::new(&url).unwrap();
    assert_eq!(
        anonymous.list_workflows().await.unwrap_err().status(),
        Some(401)
    );
    let ana = HttpClient::new(&url)
        .unwrap()
        .with_token("ana-token")
        .unwrap();
    let spec = "name: mine\njobs:\n  - name: a\n    command: \"true\"\n";
    let id = ana
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    assert_eq!(ana.workflow(id).await.unwrap().user.as_deref(), Some("ana"));
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_does_not_take_jobs_from_runners_it_could_not_hear() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("torc.db"), 0, "2");
    let client = HttpClient::new(&server.url).unwrap();
    let spec = "name: paused\njobs:\n  - name: long\n    command: sleep 4\n";
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let mut cfg = RunnerConfig::new(
        id,
        RunnerId("patient".into()),
        Capacity::MaxParallelJobs(1),
        dir.path().join("out"),
    );
    cfg.heartbeat_interval = Some(Duration::from_millis(300));
    cfg.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(client.clone()),
        cfg,
        torc_runner::Shutdown::new(),
    ));
    tokio::time::timeout(SAFETY, async {
        while client.status(id).await.unwrap().count(JobStatus::Running) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the job never ran");

    // The server is paused for longer than the lease: nobody could reach it, the runner
    // included, and that must not cost the runner its job.
    let pid = i32::try_from(server.child.id()).unwrap();
    // SAFETY: plain signals to our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);

    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!((summary.completed, summary.revoked), (1, 0));
    let results = all_results(&client, id).await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].attempt_id, results[0].status),
        (1, JobStatus::Completed)
    );
    let events = client.events(id, 0, 100).await.unwrap().items;
    assert!(
        events.iter().all(|e| e.kind != EventKind::JobLost),
        "{events:?}"
    );
    server.kill();
}

/// A writer thread that dies (made to panic through a variable only debug builds read) ends the
/// process with a line that says so, instead of leaving a server that answers 503 forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_dies_ends_the_server_with_a_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_torc-server"))
        .arg("--database")
        .arg(format!("sqlite:{}", dir.path().join("t.db").display()))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("TORC_DEBUG_WRITER_PANIC_AT", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("torc-server listening on ")
        .unwrap_or_else(|| panic!("the server did not start: {line:?}"))
        .to_string();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());

    let client = HttpClient::new(&url).unwrap();
    let spec = "name: w\njobs:\n  - name: a\n    command: \"true\"\n";
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .expect("the first request is served")
        .id;
    // The second request makes the writer panic: the caller gets an error, not an answer.
    assert!(client.status(id).await.is_err());

    let pid = i32::try_from(child.id()).unwrap();
    let exited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await;
    let Ok(status) = exited else {
        // SAFETY: a plain signal to our own child, not reaped (its wait has not returned).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the server outlived its writer thread");
    };
    let status = status.unwrap();
    assert!(!status.success(), "exit status {status}");
    let log = log.join().unwrap();
    assert!(
        log.contains("writer thread died") && log.contains("panics on purpose"),
        "{log}"
    );
}

/// A second server on the database of a running one refuses to start, naming the first.
#[test]
fn a_second_server_on_one_database_refuses_to_start_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let first = ServerProcess::start(&db, 0, "60");
    let second = Command::new(env!("CARGO_BIN_EXE_torc-server"))
        .arg("--database")
        .arg(format!("sqlite:{}", db.display()))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another engine runs over")
            && err.contains(&format!("pid={}", first.child.id())),
        "{err}"
    );
    // The first is unaffected and stops cleanly; once it is gone, the database is free again.
    assert!(first.terminate().success());
    let again = ServerProcess::start(&db, 0, "60");
    again.kill();
}
