//! Runners among hostile jobs and a hostile machine: jobs that look for the token, workflows
//! deleted under a shared runner, machines where jobs cannot start, runners killed or hung up on.
//!
//! Run as root, the runners run as `nobody`: a job can then do exactly what a job of an
//! unprivileged runner user can (root reads every process's `/proc` entries).

use super::{all_results, assert_success, start};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use torc_core::changes::{EndReason, WorkflowState};
use torc_core::spec::SpecFormat;
use torc_core::{JobStatus, WorkflowId};
use torc_http::{HttpClient, Server, ServerConfig};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A directory the runner (and its jobs) may write.
fn writable_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    if is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    path.to_path_buf()
}

/// `torc-runner --url URL ARGS…`, as `nobody` when the tests run as root.
fn runner(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_torc-runner"));
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .env_remove("TORC_API_URL")
        .env_remove("TORC_API_TOKEN")
        .stdin(Stdio::null());
    if is_root() {
        std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
        std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
    }
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("torc-runner starts"))
        .await
        .unwrap()
}

/// Polls `cond` until it holds; panics with `what` after a minute.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a job wrote to `path`, once it is there.
async fn pid_in(path: &Path) -> i32 {
    let mut pid = None;
    wait_until(&format!("{} is written", path.display()), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .await;
    pid.unwrap()
}

/// Whether `pid` is still a live process (a zombie waiting for a reaper is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'),
        Err(_) => false,
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// Waits for `child` to exit, killing it after a minute.
async fn exit_of(mut child: Child) -> ExitStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if tokio::time::Instant::now() >= deadline {
            child.kill().ok();
            panic!("the runner did not exit");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(client: &HttpClient, spec: String) -> WorkflowId {
    client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id
}

/// What a job that hunts for its runner's token looks at: its own environment, and the
/// environment, command line and memory of its parent and every ancestor.
const PEEK: &str = r#"
{
echo "== own environment"; env
p=$PPID
while [ "$p" -gt 1 ]; do
  echo "== $p environ"; tr '\0' '\n' < /proc/$p/environ
  echo "== $p cmdline"; tr '\0' ' ' < /proc/$p/cmdline; echo
  p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
done
echo "== $PPID memory"
while read -r range perms rest; do
  case $perms in
    r*) s=$((16#${range%-*})); e=$((16#${range#*-}))
        dd if=/proc/$PPID/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) status=none ;;
  esac
done < /proc/$PPID/maps | tr -c 'a-z0-9_' '\n' | grep -a '^tok_' | sort -u
echo "== done"
} > "$1" 2>&1
"#;

/// 11: jobs never see the runner's token, however the runner was given it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_never_see_the_runners_token() {
    const TOKEN: &str = "tok_runner_secret_5f3a9c";
    let dir = TempDir::new().unwrap();
    let auth = torc_http::AuthConfig::from_yaml(&format!(
        "users: [{{name: ana}}]\ntokens: [{{name: t, user: ana, sha256: {}}}]\n",
        torc_http::auth::hash_token(TOKEN)
    ))
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("torc.db").display().to_string());
    config.port = 0;
    config.workers = Some(2);
    config.auth = Some(auth);
    let server = Server::start(config).await.unwrap();
    let client = HttpClient::new(&server.url())
        .unwrap()
        .with_token(TOKEN)
        .unwrap();
    let seen = writable_dir(&dir.path().join("seen"));
    let peek = dir.path().join("peek.sh");
    std::fs::write(&peek, PEEK).unwrap();
    let token_file = seen.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&token_file, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    for how in ["environment", "command-line", "file"] {
        let report = seen.join(format!("{how}.txt"));
        let spec = format!(
            "name: peek\njobs:\n  - name: peek\n    command: bash {} {}\n",
            peek.display(),
            report.display()
        );
        let id = create(&client, spec).await;
        let out = writable_dir(&dir.path().join(format!("out-{how}")));
        let mut cmd = runner(&server.url(), &["--workflow", &id.to_string()]);
        cmd.arg("--output-dir").arg(&out);
        match how {
            "environment" => cmd.env("TORC_API_TOKEN", TOKEN),
            "command-line" => cmd.args(["--token", TOKEN]),
            _ => cmd.arg("--token-file").arg(&token_file),
        };
        let run = output(cmd).await;
        assert_success(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            how == "command-line",
            stderr.contains("--token-file"),
            "{stderr}"
        );
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(
            text.contains("== own environment") && text.contains("== done"),
            "{text}"
        );
        assert!(
            text.contains(&format!("TORC_WORKFLOW_ID={id}")),
            "the job ran under its runner: {text}"
        );
        assert!(
            !text.contains(TOKEN),
            "a job given its runner's token through the {how} found it:\n{text}"
        );
    }
    server.stop(true).await.unwrap();
}

/// 12: a workflow deleted under a shared runner takes its own jobs with it, and only those:
/// the runner serves the others to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_refused_to_a_shared_runner_stops_only_its_own_jobs() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let marks = writable_dir(&dir.path().join("marks"));
    let go = marks.join("go");
    let gate = |name: &str| {
        format!(
            "echo $$ > {}/{name}.pid; while [ ! -e {} ]; do sleep 0.05; done",
            marks.display(),
            go.display()
        )
    };
    let doomed = create(
        &client,
        format!(
            "name: doomed\njobs:\n  - name: d1\n    command: {}\n  - name: d2\n    command: {}\n",
            gate("d1"),
            gate("d2")
        ),
    )
    .await;
    let kept = create(
        &client,
        format!(
            "name: kept\njobs:\n  - name: k1\n    command: {}\n  - name: k2\n    command: \"true\"\n    depends_on: [k1]\n",
            gate("k1")
        ),
    )
    .await;
    let out = writable_dir(&dir.path().join("out"));
    let mut cmd = runner(
        &server.url(),
        &[
            "--shared",
            "--max-parallel-jobs",
            "4",
            "--idle-timeout",
            "2",
        ],
    );
    cmd.args(["--heartbeat-secs", "0.2"])
        .arg("--output-dir")
        .arg(&out);
    let run = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    let d1 = pid_in(&marks.join("d1.pid")).await;
    let d2 = pid_in(&marks.join("d2.pid")).await;
    pid_in(&marks.join("k1.pid")).await;

    client.delete_workflow(doomed).await.unwrap();
    std::fs::write(&go, "").unwrap();
    let run = run.await.unwrap();
    assert_success(&run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("IdleTimeout"), "{stdout}");
    let status = client.status(kept).await.unwrap();
    assert_eq!(status.state, WorkflowState::Complete);
    assert_eq!(status.count(JobStatus::Completed), 2);
    assert!(
        !alive(d1) && !alive(d2),
        "the deleted workflow's jobs are gone"
    );
    server.stop(true).await.unwrap();
}

/// `n` independent jobs running `command`.
fn jobs(n: u32, command: &str) -> String {
    format!("name: n\njobs:\n  - name: j{{i}}\n    command: {command}\n    parameters:\n      i: \"1:{n}\"\n")
}

/// 13: where jobs cannot start (an output directory the runner may not write, no `bash` on
/// its PATH), each failure says why, and the runner stops claiming after a few in a row instead
/// of failing every job of the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_cannot_start_here_say_why_and_stop_the_runner() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    // An output directory whose job_stdio the runner may not write.
    let locked = writable_dir(&dir.path().join("locked"));
    let stdio = locked.join("job_stdio");
    std::fs::create_dir(&stdio).unwrap();
    std::fs::set_permissions(&stdio, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&stdio, Some(0), Some(0)).unwrap();
    }
    let cases: [(&str, PathBuf, Option<&str>); 2] = [
        ("the output directory is not writable", locked, None),
        (
            "it is not on the runner's PATH",
            writable_dir(&dir.path().join("nobash")),
            Some("/nonexistent"),
        ),
    ];
    for (why, out, path) in cases {
        let id = create(&client, jobs(20, "\"true\"")).await;
        let mut cmd = runner(&server.url(), &["--workflow", &id.to_string()]);
        cmd.args(["--max-parallel-jobs", "2", "--max-local-failures", "3"])
            .arg("--output-dir")
            .arg(&out);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        let run = output(cmd).await;
        assert_eq!(run.status.code(), Some(1), "{run:?}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("3 jobs in a row could not start on this machine")
                && stderr.contains(why),
            "{stderr}"
        );
        let results = all_results(&client, id).await;
        let failed: Vec<_> = results
            .iter()
            .filter(|r| r.status == JobStatus::Failed)
            .collect();
        assert!(failed.len() >= 3, "{results:?}");
        for r in &failed {
            assert_eq!(r.end_reason, Some(EndReason::RunnerError), "{r:?}");
            let message = r.message.as_deref().unwrap_or("");
            assert!(message.contains(why), "{message}");
        }
        let status = client.status(id).await.unwrap();
        assert!(
            status.count(JobStatus::Ready) >= 10,
            "the runner stopped taking jobs: {status:?}"
        );
    }
    server.stop(true).await.unwrap();
}

/// 13: a command longer than exec takes fails with that reason; it is the job's fault, not the
/// machine's, so the runner goes on with the other jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_argument_limit_fails_with_that_reason_alone() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let long = format!(": {}", "x".repeat(200_000));
    let spec = format!(
        "name: long\njobs:\n  - name: long\n    command: \"{long}\"\n  - name: short\n    command: \"true\"\n"
    );
    let id = create(&client, spec).await;
    let out = writable_dir(&dir.path().join("out"));
    let mut cmd = runner(&server.url(), &["--workflow", &id.to_string()]);
    cmd.args(["--max-local-failures", "1"])
        .arg("--output-dir")
        .arg(&out);
    assert_success(&output(cmd).await);
    let results = all_results(&client, id).await;
    assert_eq!(results.len(), 2, "{results:?}");
    let long = results.iter().find(|r| r.job_id.0 == 1).unwrap();
    assert_eq!(long.status, JobStatus::Failed);
    assert_eq!(long.end_reason, Some(EndReason::RunnerError));
    let message = long.message.as_deref().unwrap_or("");
    assert!(
        message.contains("the command is 200002 bytes") && message.contains("put it in a script"),
        "{message}"
    );
    let short = results.iter().find(|r| r.job_id.0 == 2).unwrap();
    assert_eq!(short.status, JobStatus::Completed);
    server.stop(true).await.unwrap();
}

/// 14: a runner killed outright takes its jobs with it: the jobs' shells, and what they
/// started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_takes_its_jobs_with_it() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let marks = writable_dir(&dir.path().join("marks"));
    let m = marks.display();
    let command =
        format!("\"sleep 300 & echo $! > {m}/j{{i}}.child; echo $$ > {m}/j{{i}}.pid; wait\"");
    let id = create(&client, jobs(2, &command)).await;
    let out = writable_dir(&dir.path().join("out"));
    let mut cmd = runner(&server.url(), &["--workflow", &id.to_string()]);
    cmd.args(["--max-parallel-jobs", "2"])
        .arg("--output-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let runner_pid = child.id() as i32;
    let pids = [
        pid_in(&marks.join("j1.pid")).await,
        pid_in(&marks.join("j2.pid")).await,
        pid_in(&marks.join("j1.child")).await,
        pid_in(&marks.join("j2.child")).await,
    ];
    // The runner lists a job's group with the reaper right after spawning it, and reports it
    // running after that: once the server has both running, the reaper knows both groups. (A
    // runner killed between a spawn and that line, a window of microseconds, leaves that job.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.status(id).await.unwrap();
        if status.counts.get(&JobStatus::Running) == Some(&2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs not running: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(runner_pid, libc::SIGKILL);
    exit_of(child).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<i32> = pids.into_iter().filter(|&p| alive(p)).collect();
    for &p in &left {
        kill(p, libc::SIGKILL);
    }
    assert!(
        left.is_empty(),
        "jobs outlived their killed runner: {left:?}"
    );
    server.stop(true).await.unwrap();
}

/// 14: SIGHUP stops a runner as SIGTERM does: its jobs are stopped and reported, and it exits
/// 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_a_runner_as_sigterm_does() {
    let dir = TempDir::new().unwrap();
    let (server, client) = start(dir.path()).await;
    let marks = writable_dir(&dir.path().join("marks"));
    let id = create(
        &client,
        jobs(
            1,
            &format!(
                "\"echo $$ > {}/j{{i}}.pid; exec sleep 300\"",
                marks.display()
            ),
        ),
    )
    .await;
    let out = writable_dir(&dir.path().join("out"));
    let mut cmd = runner(&server.url(), &["--workflow", &id.to_string()]);
    cmd.arg("--output-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let job = pid_in(&marks.join("j1.pid")).await;
    kill(child.id() as i32, libc::SIGHUP);
    let status = exit_of(child).await;
    if alive(job) {
        kill(job, libc::SIGKILL);
    }
    assert_eq!(status.code(), Some(130), "{status:?}");
    let status = client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Terminated), 1, "{status:?}");
    let results = all_results(&client, id).await;
    assert_eq!(results[0].end_reason, Some(EndReason::Shutdown));
    server.stop(true).await.unwrap();
}
