//! Execution limits end to end: memory kills through `torc run`, and `torc recover` giving the
//! jobs that ran out of memory or time more of it.

use super::*;

fn results(dir: &Path) -> Vec<Value> {
    json(dir, &["results", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

fn result_of(results: &[Value], job: u64) -> &Value {
    results
        .iter()
        .rfind(|r| r["job_id"] == job)
        .unwrap_or_else(|| panic!("no result of job {job} in {results:?}"))
}

#[test]
fn a_job_over_its_memory_is_killed_with_137_and_its_result_says_memory() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "oom.yaml",
        "name: oom
resource_requirements:
  - {name: small, num_cpus: 1, memory: 50m, runtime: PT1M}
jobs:
  - {name: hog, command: 'python3 -c \"b=bytearray(300*1024*1024); import time; time.sleep(2)\" || (head -c 300M /dev/zero; sleep 2) | tail', resource_requirements: small}
  - {name: fine, command: 'true'}
",
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("memory"), "the failure says why: {stderr}");
    let results = results(dir.path());
    let hog = result_of(&results, 1);
    assert_eq!(hog["return_code"], 137, "{hog}");
    assert_eq!(hog["status"], "failed");
    assert_eq!(hog["end_reason"], "memory");
    let message = hog["message"].as_str().unwrap();
    assert!(message.contains("memory"), "{message}");
    assert_eq!(result_of(&results, 2)["return_code"], 0);
    // The table says it too.
    let table = text(&torc_in(dir.path(), &["results", "list"]).stdout);
    assert!(table.contains("memory"), "{table}");
}

#[test]
fn recover_gives_a_memory_killed_job_more_and_completes_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    // `grow` needs about 60 MB: killed under 50 MB, fine under 75 MB. It shares `small` with
    // `other`, which must keep its 50 MB.
    let spec = write_spec(
        dir.path(),
        "grow.yaml",
        "name: grow
resource_requirements:
  - {name: small, num_cpus: 1, memory: 50m, runtime: PT1M}
jobs:
  - {name: grow, command: '(head -c 60M /dev/zero; sleep 2) | tail', resource_requirements: small}
  - {name: other, command: 'true', resource_requirements: small}
  - {name: after, command: 'echo done', depends_on: [grow]}
",
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = states(dir.path());
    assert_eq!(state_of(&s, "grow"), "failed");
    assert_eq!(state_of(&s, "after"), "canceled");
    assert_eq!(result_of(&results(dir.path()), 1)["end_reason"], "memory");

    let out = torc_in(dir.path(), &["recover", "1", "--quiet"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("grow"), "{stdout}");
    assert!(
        stdout.contains("75.0 MiB") || stdout.contains("75 MiB"),
        "{stdout}"
    );
    assert!(stdout.contains("complete"), "{stdout}");
    let s = states(dir.path());
    assert!(s.iter().all(|(_, st)| st == "completed"), "{s:?}");
    let show = |job: &str| json(dir.path(), &["jobs", "show", "1", job, "--json"]);
    assert_eq!(
        show("grow")["definition"]["resource_requirement"],
        "small_grow"
    );
    assert_eq!(
        show("grow")["definition"]["resources"]["memory_bytes"],
        75u64 << 20
    );
    assert_eq!(show("other")["definition"]["resource_requirement"], "small");
    assert_eq!(
        show("other")["definition"]["resources"]["memory_bytes"],
        50u64 << 20
    );
    // Nothing more to recover now.
    let out = torc_in(dir.path(), &["recover", "1"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("nothing to recover"));
}

#[test]
fn recover_gives_a_timed_out_job_more_time() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "slow.yaml",
        "name: slow
jobs:
  - {name: slow, command: 'sleep 1.5', timeout: PT1S}
",
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let r = results(dir.path());
    assert_eq!(result_of(&r, 1)["return_code"], 152);
    assert_eq!(result_of(&r, 1)["end_reason"], "timeout");
    let out = torc_in(
        dir.path(),
        &["recover", "1", "--runtime-factor", "3", "--quiet"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("timeout 1s -> 3s"), "{stdout}");
    assert_eq!(state_of(&states(dir.path()), "slow"), "completed");
}

#[test]
fn recover_refuses_factors_below_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = torc_in(dir.path(), &["recover", "1", "--memory-factor", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--memory-factor"));
}

#[test]
fn logs_and_failure_tails_read_the_combined_log_and_say_when_nothing_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "modes.yaml",
        "name: modes
jobs:
  - {name: both, command: 'echo to-out; echo to-err >&2; exit 3', stdio: {mode: combined}}
  - {name: quiet, command: 'echo lost', stdio: {mode: none}}
",
    );
    let out = torc_in(dir.path(), &["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("job_wf1_j1_r1_a1.log") && stderr.contains("to-err"),
        "the failure tail reads the .log: {stderr}"
    );
    for extra in [&[][..], &["--stderr"][..]] {
        let mut args = vec!["jobs", "logs", "1", "both"];
        args.extend_from_slice(extra);
        let out = torc_in(dir.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("to-out") && stdout.contains("to-err"),
            "{stdout}"
        );
    }
    let out = torc_in(dir.path(), &["jobs", "logs", "1", "quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("stdio mode is `none`"), "{stderr}");
}
