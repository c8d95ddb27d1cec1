//! Issue 15, "see what is happening": closed pipes, progress and failures of `torc run`, the
//! dependency graph, job details and logs, the timeline plot.

mod follow;
mod tui;

use super::{example, start_server, text, torc, torc_in, wait_for, write_spec};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Runs `torc ARGS` in `dir` with stdout into a pipe whose reading end is closed after the first
/// line (or at once with `read_first = false`); returns the exit status and stderr.
fn with_closed_stdout(
    dir: &std::path::Path,
    args: &[&str],
    read_first: bool,
) -> (std::process::ExitStatus, String) {
    let mut child = torc()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    if read_first {
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "{args:?} printed nothing");
    } else {
        drop(stdout);
    }
    let out = child.wait_with_output().unwrap();
    (out.status, text(&out.stderr))
}

#[test]
fn every_command_exits_quietly_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // 10,000 jobs: far more output than a pipe buffers, so the writes after the first line
    // meet the closed pipe whatever the timing.
    let spec = example("flat10000.yaml");
    let out = torc_in(dir.path(), &["workflows", "create", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [&["jobs", "list"][..], &["jobs", "list", "--json"]] {
        let (status, stderr) = with_closed_stdout(dir.path(), args, true);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} said: {stderr}");
    }
    // A reader gone before the first write: short output fails just the same.
    for args in [
        &["workflows", "list"][..],
        &["workflows", "status", "1"],
        &["--help"],
    ] {
        let (status, stderr) = with_closed_stdout(dir.path(), args, false);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} said: {stderr}");
        assert!(stderr.is_empty(), "{args:?} said: {stderr}");
    }
}

#[test]
fn run_without_a_terminal_prints_progress_lines_and_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "fails.yaml",
        r#"
name: fails
jobs:
  - name: fine_{i}
    command: "echo fine"
    parameters:
      i: "1:3"
  - name: broken
    command: "echo to stdout; echo first complaint >&2; echo the real trouble >&2; exit 3"
  - name: after
    command: "true"
    depends_on: [broken]
"#,
    );
    let out = colour_env(&[])
        .current_dir(dir.path())
        .args(["run", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("workflow 1: "), "no progress line: {err}");
    let failure = err
        .lines()
        .position(|l| l.contains("job 4 (broken)"))
        .unwrap_or_else(|| panic!("the failure is not shown: {err}"));
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[failure].contains("return code 3"), "{err}");
    assert!(lines[failure].contains("job_wf1_j4_r1_a1.e"), "{err}");
    assert_eq!(lines[failure + 2].trim(), "the real trouble", "{err}");
    assert!(!err.contains("to stdout"), "stdout shown as stderr: {err}");
    // Not a terminal: no colour, no bar.
    let out_text = text(&out.stdout);
    assert!(
        !err.contains('\x1b') && !out_text.contains('\x1b'),
        "{err}{out_text}"
    );
    assert!(out_text.contains("1 failed"), "{out_text}");
}

/// `torc` with the colour variables unset, then `vars` set.
fn colour_env(vars: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = torc();
    cmd.env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn colour_only_when_asked_for_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "one.yaml",
        "name: one\njobs:\n  - name: bad\n    command: exit 2\n",
    );
    let run = |vars: &[(&str, &str)]| {
        let out = colour_env(vars)
            .current_dir(dir.path())
            .args(["run", spec.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        text(&out.stdout) + &text(&out.stderr)
    };
    // A pipe is not a terminal: plain, unless forced.
    assert!(!run(&[]).contains('\x1b'));
    assert!(run(&[("CLICOLOR_FORCE", "1")]).contains("\x1b["));
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains('\x1b'));
}

#[test]
fn graph_of_the_diamond_spec_in_dot_and_mermaid() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example("diamond.yaml");
    let out = torc_in(dir.path(), &["workflows", "graph", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"diamond\" {"), "{dot}");
    for name in ["preprocess", "work_left", "work_right", "postprocess"] {
        assert!(dot.contains(&format!("[label=\"{name}\"]")), "{dot}");
    }
    assert_eq!(dot.matches(" -> ").count(), 4, "{dot}");
    assert!(
        dot.contains("n0 -> n1;") && dot.contains("n2 -> n3;"),
        "{dot}"
    );
    // A spec needs no database: nothing was written.
    assert!(!dir.path().join("torc_output").exists());

    let mmd = dir.path().join("diamond.mmd");
    let out = torc_in(
        dir.path(),
        &[
            "workflows",
            "graph",
            spec.to_str().unwrap(),
            "-o",
            mmd.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mermaid = std::fs::read_to_string(&mmd).unwrap();
    assert!(mermaid.contains("flowchart TD"), "{mermaid}");
    assert!(mermaid.contains("n0[\"preprocess\"]"), "{mermaid}");
    assert_eq!(mermaid.matches(" --> ").count(), 4, "{mermaid}");
}

#[test]
fn graph_collapses_a_sweep_and_shows_states_of_a_stored_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "sweep.yaml",
        r#"
name: sweep
jobs:
  - name: prep
    command: "true"
  - name: sim_{i:03d}
    command: "echo {i}"
    depends_on: [prep]
    parameters:
      i: "1:12"
  - name: check_{i}
    command: "[ {i} != 2 ]"
    depends_on: [prep]
    parameters:
      i: "1:3"
  - name: report
    command: "true"
    depends_on_regexes: ["^sim_"]
"#,
    );
    let spec = spec.to_str().unwrap();
    let out = torc_in(
        dir.path(),
        &["workflows", "graph", spec, "--format", "mermaid"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mermaid = text(&out.stdout);
    assert!(
        mermaid.contains("[[\"sim_001 … sim_012 (12 jobs)\"]]"),
        "{mermaid}"
    );
    // Three checks are under the threshold: drawn one by one.
    for i in 1..=3 {
        assert!(mermaid.contains(&format!("[\"check_{i}\"]")), "{mermaid}");
    }
    assert!(
        mermaid.contains("-->|12| "),
        "the fan-in is one edge: {mermaid}"
    );
    assert_eq!(mermaid.matches("-->").count(), 5, "{mermaid}");
    let all = torc_in(dir.path(), &["workflows", "graph", spec, "--all-jobs"]);
    assert_eq!(
        text(&all.stdout).matches(" -> ").count(),
        12 + 3 + 12,
        "{}",
        text(&all.stdout)
    );

    // A stored workflow, after a run: nodes carry their jobs' states.
    let out = torc_in(dir.path(), &["run", spec, "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["workflows", "graph", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(
        dot.contains("sim_001 … sim_012 (12 jobs)\\n12 completed"),
        "{dot}"
    );
    assert!(dot.contains("check_2\\nfailed"), "{dot}");
    // Unknown workflows and bad specs are clear errors.
    let out = torc_in(dir.path(), &["workflows", "graph", "7"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains('7'), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["workflows", "graph", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn graph_svg_needs_graphviz_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example("diamond.yaml");
    let empty = tempfile::tempdir().unwrap();
    let out = torc()
        .current_dir(dir.path())
        .env("PATH", empty.path())
        .args([
            "workflows",
            "graph",
            spec.to_str().unwrap(),
            "--format",
            "svg",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("`dot`") && err.contains("Graphviz"), "{err}");
    // Where Graphviz is installed, the SVG is drawn (`.ci/run` installs it).
    let has_dot = std::process::Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_dot {
        let svg = dir.path().join("g.svg");
        let out = torc_in(
            dir.path(),
            &[
                "workflows",
                "graph",
                spec.to_str().unwrap(),
                "-o",
                svg.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("postprocess"), "{svg}");
    }
}

#[test]
fn jobs_show_and_logs_after_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "show.yaml",
        r#"
name: show
failure_handlers:
  - name: twice
    rules:
      - exit_codes: [4]
        max_retries: 1
jobs:
  - name: prep
    command: "echo prepared"
  - name: flaky
    command: "echo try >> tries; echo out $(wc -l < tries); echo err $(wc -l < tries) >&2; [ $(wc -l < tries) -ge 2 ] || exit 4"
    depends_on: [prep]
    failure_handler: twice
  - name: after
    command: "true"
    depends_on: [flaky]
"#,
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = torc_in(dir.path(), &["jobs", "show", "1", "flaky"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("job 2 (flaky) of workflow 1: completed, attempt 2"),
        "{shown}"
    );
    assert!(shown.contains("depends on: prep (1)"), "{shown}");
    assert!(shown.contains("needed by:  after (3)"), "{shown}");
    assert!(shown.contains("on failure: handler twice"), "{shown}");
    assert!(shown.contains("job_wf1_j2_r1_a1.{o,e}"), "{shown}");
    let by_id: Value =
        serde_json::from_slice(&torc_in(dir.path(), &["jobs", "show", "1", "2", "--json"]).stdout)
            .unwrap();
    assert_eq!(by_id["job"]["name"], "flaky");
    assert_eq!(by_id["depends_on"][0]["name"], "prep");
    assert_eq!(by_id["needed_by"][0]["name"], "after");
    let codes: Vec<i64> = by_id["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["return_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [4, 0]);

    // Logs: the latest attempt by default, another with --attempt, stderr with --stderr.
    let logs = |args: &[&str]| {
        let mut all = vec!["jobs", "logs", "1"];
        all.extend_from_slice(args);
        torc_in(dir.path(), &all)
    };
    assert_eq!(text(&logs(&["flaky"]).stdout), "out 2\n");
    assert_eq!(text(&logs(&["flaky", "--attempt", "1"]).stdout), "out 1\n");
    assert_eq!(
        text(&logs(&["2", "--attempt", "1", "--stderr"]).stdout),
        "err 1\n"
    );
    let out = logs(&["flaky", "--attempt", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no attempt 3"),
        "{}",
        text(&out.stderr)
    );
    // Files that are not here: the message says where they are.
    let out = torc_in(
        dir.path(),
        &[
            "--db",
            "torc_output/torc.db",
            "--output-dir",
            "elsewhere",
            "jobs",
            "logs",
            "1",
            "prep",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not here") && err.contains("job_wf1_j1_r1_a1.o"),
        "{err}"
    );
    // A name that is not there is bad input, with a suggestion.
    let out = logs(&["flakey"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `flaky`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn jobs_logs_follow_waits_for_the_job_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "follow.yaml",
        r#"
name: follow
jobs:
  - name: slow
    command: "echo started; while [ ! -f release ]; do sleep 0.05; done; echo finished"
  - name: after
    command: "echo after ran"
    depends_on: [slow]
"#,
    );
    let mut run = torc()
        .current_dir(dir.path())
        .args(["run", spec.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out_file = dir.path().join("torc_output/job_stdio/job_wf1_j1_r1_a1.o");
    wait_for("the job to start", || {
        std::fs::read_to_string(&out_file).is_ok_and(|s| s.contains("started"))
    });
    let follow = |job: &str| {
        torc()
            .current_dir(dir.path())
            .args(["jobs", "logs", "1", job, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut slow = follow("slow");
    // `after` has not started: following it waits for it.
    let after = follow("after");
    let mut lines = BufReader::new(slow.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "started\n");
    std::fs::write(dir.path().join("release"), "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert_eq!(rest, "finished\n");
    let status = slow.wait().unwrap();
    assert!(status.success());
    let after = after.wait_with_output().unwrap();
    assert!(after.status.success(), "{}", text(&after.stderr));
    assert_eq!(text(&after.stdout), "after ran\n");
    assert!(run.wait().unwrap().success());
}

#[test]
fn jobs_show_and_logs_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_server(&dir.path().join("server.db"));
    let with_url = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        torc_in(dir.path(), &all)
    };
    let spec = example("diamond.yaml");
    let out = with_url(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_url(&["jobs", "show", "1", "work_left"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("work_left") && shown.contains("completed"),
        "{shown}"
    );
    assert!(shown.contains("not served over --url"), "{shown}");
    // This runner wrote its files under this directory's torc_output: they are reachable.
    let out = with_url(&["jobs", "logs", "1", "postprocess", "--stderr"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // It wrote nothing to stderr, so it has no file: said so, not an error.
    assert!(
        text(&out.stderr).contains("wrote nothing to its stderr"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = with_url(&["jobs", "show", "1", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn plot_timeline_of_a_real_run_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "tl.yaml",
        r#"
name: tl
jobs:
  - name: prep
    command: "true"
  - name: w_{i}
    command: "true"
    depends_on: [prep]
    parameters:
      i: "1:6"
  - name: bad
    command: "exit 2"
    depends_on: [prep]
"#,
    );
    // Nothing run yet: nothing to plot, said plainly.
    let out = torc_in(dir.path(), &["workflows", "create", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["plot", "timeline", "1", "-o", "t.png"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no results"),
        "{}",
        text(&out.stderr)
    );

    let out = torc_in(
        dir.path(),
        &["run", "1", "--max-parallel-jobs", "2", "--quiet"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = torc_in(dir.path(), &["plot", "timeline", "1", "-o", "t.png"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let png = std::fs::read(dir.path().join("t.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let out = torc_in(dir.path(), &["plot", "timeline", "1", "-o", "t.svg"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(dir.path().join("t.svg")).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    // One row per slot of the one runner (at most two at once), a legend with each outcome.
    assert!(svg.contains("slot 1"), "{svg}");
    assert!(
        !svg.contains("slot 3"),
        "more slots than jobs ran at once: {svg}"
    );
    assert!(
        svg.contains("completed (7)") && svg.contains("failed (1)"),
        "{svg}"
    );
    assert!(svg.contains("seconds since the first start"), "{svg}");

    let out = torc_in(dir.path(), &["plot", "timeline", "1", "-o", "t.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(".svg or .png"),
        "{}",
        text(&out.stderr)
    );
    let not_a_font = write_spec(dir.path(), "font.ttf", "not a font");
    let out = torc()
        .current_dir(dir.path())
        .env("TORC_FONT", &not_a_font)
        .args(["plot", "timeline", "1", "-o", "t.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("font.ttf"),
        "{}",
        text(&out.stderr)
    );
}
