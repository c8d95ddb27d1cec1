//! `torc tui` in a real terminal: a tmux session on its own server socket, keys sent with
//! `send-keys`, the screen read with `capture-pane`, polled until it shows what is expected.

use super::super::{text, torc_in, write_spec};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached 150×45 session running `torc ARGS` in `dir`.
    fn start(dir: &Path, args: &[&str]) -> Tmux {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmux = Tmux {
            socket: format!("torc-test-{}-{n}", std::process::id()),
        };
        let mut cmd = vec![env!("CARGO_BIN_EXE_torc").to_string()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        let out = tmux
            .cmd()
            .env_remove("TORC_OUTPUT_DIR")
            .env_remove("TORC_DB")
            .env_remove("TORC_API_URL")
            .env_remove("TORC_API_TOKEN")
            .args(["new-session", "-d", "-x", "150", "-y", "45", "-c"])
            .arg(dir)
            .args(cmd)
            .output()
            .expect("tmux is installed");
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn send(&self, keys: &[&str]) {
        let out = self.cmd().arg("send-keys").args(keys).output().unwrap();
        assert!(out.status.success(), "send-keys: {}", text(&out.stderr));
    }

    fn screen(&self) -> Option<String> {
        let out = self.cmd().args(["capture-pane", "-p"]).output().ok()?;
        out.status.success().then(|| text(&out.stdout))
    }

    /// Polls the screen until `pred` holds (60 s at most); returns that screen.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        loop {
            if let Some(s) = self.screen() {
                if pred(&s) {
                    return s;
                }
                last = s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{last}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&self) -> bool {
        self.cmd()
            .arg("has-session")
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn the_tui_in_a_real_terminal_runs_filters_shows_logs_resets_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "tui.yaml",
        r#"
name: tuishow
jobs:
  - name: ok_{i}
    command: "echo hello-{i} >&2"
    parameters:
      i: "1:3"
  - name: broken
    command: "echo broken-stderr-line >&2; exit 3"
"#,
    );
    let out = torc_in(dir.path(), &["workflows", "create", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = Tmux::start(dir.path(), &["tui"]);
    t.wait_for("the workflow list", |s| {
        s.contains("torc: workflows") && s.contains("tuishow") && s.contains("active")
    });
    t.send(&["Enter"]);
    t.wait_for("four ready jobs", |s| {
        s.contains("4 ready") && s.contains("jobs: 4 of 4")
    });
    // s: a runner starts; the live refresh shows the end without a key pressed.
    t.send(&["s"]);
    let s = t.wait_for("the run's end", |s| {
        s.contains("3 completed") && s.contains("1 failed") && s.contains("complete, run 1")
    });
    // Said when it started, then when it ended (1: a job failed).
    assert!(
        s.contains("started `torc run 1`") || s.contains("the runner of workflow 1 ended"),
        "{s}"
    );
    let log = dir.path().join("torc_output/tui_runner_wf1.log");
    assert!(
        log.is_file(),
        "the runner's output goes to {}",
        log.display()
    );
    // f twice: completed, then failed.
    t.send(&["f"]);
    t.wait_for("the completed filter", |s| s.contains("jobs: 3 of 4"));
    t.send(&["f"]);
    t.wait_for("the failed filter", |s| {
        s.contains("jobs: 1 of 4") && s.contains("state failed")
    });
    t.send(&["Enter"]);
    let s = t.wait_for("the failed job's detail", |s| {
        s.contains("job 4 (broken)") && s.contains("broken-stderr-line")
    });
    assert!(s.contains("return code 3"), "{s}");
    // r: reset the failed job; it is ready again in run 2.
    t.send(&["r"]);
    t.wait_for("the reset", |s| {
        s.contains("reset (failed jobs") && s.contains("state: ready") && s.contains("run 2")
    });
    // c: cancel the workflow.
    // Back to the jobs; seen there before the next key (an escape followed at once by a key
    // reads as Alt and that key).
    t.send(&["Escape"]);
    t.wait_for("the jobs again", |s| {
        s.contains("jobs: ") && s.contains("of 4")
    });
    t.send(&["c"]);
    t.wait_for("the cancel", |s| {
        s.contains("canceled, run 2") && s.contains("1 canceled")
    });
    t.send(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.alive() {
        assert!(Instant::now() < deadline, "q did not end the UI");
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the UI did is in the database.
    let out = torc_in(dir.path(), &["workflows", "status", "1"]);
    let status = text(&out.stdout);
    assert!(status.contains("canceled, run 2"), "{status}");
}
