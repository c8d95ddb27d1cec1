//! Issue 15, "see what is happening": closed pipes, progress and failures of `torc run`, the
//! dependency graph, job details and logs, the timeline plot.

use super::{example, text, torc, torc_in};
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
