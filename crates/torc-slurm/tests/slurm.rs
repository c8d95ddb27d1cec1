//! Against a real Slurm: `.ci/slurm.sh` starts a one-node cluster and sets `TORC_TEST_SLURM=1`
//! (and `SLURM_CONF`). Without it these tests fail under CI (`CI` set) and otherwise print that
//! they were skipped.
//!
//! Waiting is polling Slurm's own state with a deadline: no test sleeps for a fixed time to let
//! Slurm catch up.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use torc_core::WorkflowId;
use torc_slurm::{
    srun_argv, AllocationState, BatchScript, CommandError, EndReason, JobStatus, RunnerLaunch,
    SchedulerParams, Slurm, SlurmJobId, SrunStep,
};

/// How long any one wait for Slurm may take (jobs may queue behind one another on two CPUs).
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

/// The cluster, or `None` (after saying so) when there is none and this is not CI.
fn slurm() -> Option<Slurm> {
    if std::env::var_os("TORC_TEST_SLURM").is_some() {
        return Some(Slurm::new());
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set but TORC_TEST_SLURM is not: .ci/run must start the Slurm cluster \
             (.ci/slurm.sh) before the tests"
        );
    }
    // Straight to stderr: the test harness would hide `println!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: set TORC_TEST_SLURM=1 (and SLURM_CONF) to run this test against a Slurm \
         cluster; `bash .ci/slurm.sh` starts one on this machine"
    );
    None
}

/// Cancels the job when dropped, so that a failing test leaves nothing running.
struct Job<'a> {
    slurm: &'a Slurm,
    id: SlurmJobId,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        let _ = self.slurm.cancel(&[self.id]);
    }
}

fn submit<'a>(slurm: &'a Slurm, dir: &Path, name: &str, text: &str) -> Job<'a> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let id = slurm.submit(&path).unwrap();
    Job { slurm, id }
}

fn status(slurm: &Slurm, id: SlurmJobId) -> JobStatus {
    let mut all = slurm.query(&[id]).unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// Polls the job's state until `done` holds; the last status.
fn wait_for(
    slurm: &Slurm,
    id: SlurmJobId,
    what: &str,
    done: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let start = Instant::now();
    loop {
        let s = status(slurm, id);
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "job {id} not {what} after {DEADLINE:?}: {s:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn wait_ended(slurm: &Slurm, id: SlurmJobId) -> JobStatus {
    wait_for(slurm, id, "ended", |s| s.state.is_ended())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn a_batch_job_runs_and_completes() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let job = submit(
        &slurm,
        dir.path(),
        "echo.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --job-name=torc_test_echo\n#SBATCH --output={d}/slurm_%j.out\n\
             #SBATCH --time=5\necho \"$SLURM_JOB_ID\" > {d}/id\n"
        ),
    );
    let s = wait_ended(&slurm, job.id);
    assert_eq!(
        s.state,
        AllocationState::Ended(EndReason::Completed),
        "{s:?}"
    );
    assert!(s.end_time.is_some(), "{s:?}");
    assert_eq!(read(&dir.path().join("id")).trim(), job.id.to_string());
    assert!(dir.path().join(format!("slurm_{}.out", job.id)).exists());
}

#[test]
fn a_failing_batch_job_ends_failed() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let job = submit(
        &slurm,
        dir.path(),
        "fail.sh",
        &format!("#!/bin/bash\n#SBATCH --output={d}/slurm_%j.out\n#SBATCH --time=5\nexit 3\n"),
    );
    let s = wait_ended(&slurm, job.id);
    assert_eq!(s.state, AllocationState::Ended(EndReason::Failed), "{s:?}");
    assert_eq!(s.reason.as_deref(), Some("NonZeroExitCode"));
}

#[test]
fn a_running_job_is_cancelled() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let job = submit(
        &slurm,
        dir.path(),
        "long.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --output={d}/slurm_%j.out\n#SBATCH --time=5\n\
             echo started > {d}/started\nsleep 300\n"
        ),
    );
    let s = wait_for(&slurm, job.id, "running", |s| {
        s.state != AllocationState::Queued
    });
    assert_eq!(s.state, AllocationState::Running, "{s:?}");
    assert!(
        s.end_time.is_some(),
        "a running job with a time limit has an end: {s:?}"
    );
    slurm.cancel(&[job.id]).unwrap();
    let s = wait_ended(&slurm, job.id);
    assert!(
        matches!(s.state, AllocationState::Ended(EndReason::Cancelled { .. })),
        "{s:?}"
    );
    // Cancelling again is not an error.
    slurm.cancel(&[job.id]).unwrap();
}

#[test]
fn unknown_jobs_are_forgotten() {
    let Some(slurm) = slurm() else { return };
    // Ids far above anything the test cluster hands out, within Slurm's range (squeue answers
    // nothing for them) and beyond it (squeue refuses them).
    let id = SlurmJobId;
    for ids in [
        vec![id(67_000_001)],
        vec![id(67_000_002), id(67_000_003)],
        vec![id(4_000_000_001)],
        vec![id(4_000_000_002), id(67_000_004)],
    ] {
        let all = slurm.query(&ids).unwrap();
        assert_eq!(all.len(), ids.len());
        for (s, id) in all.iter().zip(&ids) {
            assert_eq!(s.id, *id);
            assert_eq!(s.state, AllocationState::Ended(EndReason::Forgotten));
        }
    }
    assert_eq!(slurm.query(&[]).unwrap(), vec![]);
}

#[test]
fn sbatch_errors_quote_slurm() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sh");
    std::fs::write(
        &path,
        "#!/bin/bash\n#SBATCH --partition=no_such_partition\ntrue\n",
    )
    .unwrap();
    let err = slurm.submit(&path).unwrap_err();
    let CommandError::Failed {
        program, stderr, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*program, "sbatch");
    assert!(stderr.contains("invalid partition"), "{err}");
    assert!(err.to_string().contains("invalid partition"), "{err}");
}

#[test]
fn sinfo_lists_the_debug_partition() {
    let Some(slurm) = slurm() else { return };
    let parts = slurm.partitions().unwrap();
    let debug = parts
        .iter()
        .find(|p| p.name == "debug")
        .unwrap_or_else(|| panic!("no debug partition in {parts:?}"));
    assert!(debug.default);
    assert_eq!(debug.max_time, torc_slurm::TimeLimit::Unlimited);
    assert!(debug.cpus_per_node > 0);
    assert!(debug.memory_per_node_mb > 0);
    assert!(debug.nodes >= 1);
}

/// The `alloc_info` example, which `cargo test` builds beside the test binaries.
fn alloc_info_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/slurm-HASH → target/<profile>/examples/alloc_info
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("examples").join("alloc_info"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test -p torc-slurm` (it builds the examples)",
        bin.display()
    );
    bin
}

#[test]
fn an_allocation_reads_itself() {
    let Some(slurm) = slurm() else { return };
    let bin = alloc_info_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let submitted = SystemTime::now();
    let job = submit(
        &slurm,
        dir.path(),
        "alloc.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --output={d}/slurm_%j.out\n#SBATCH --time=10\n\
             #SBATCH --cpus-per-task=1\n{} > {d}/alloc.json\n",
            bin.display()
        ),
    );
    let s = wait_ended(&slurm, job.id);
    let out = read(&dir.path().join(format!("slurm_{}.out", job.id)));
    assert_eq!(
        s.state,
        AllocationState::Ended(EndReason::Completed),
        "{s:?}: {out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("alloc.json"))).unwrap();
    assert_eq!(json["job_id"], job.id.0, "{json}");
    assert_eq!(json["num_nodes"], 1, "{json}");
    assert!(json["cpus_on_node"].as_u64().unwrap() > 0, "{json}");
    assert!(!json["node_list"].as_str().unwrap().is_empty(), "{json}");
    // DefMemPerCPU on the test cluster gives every job memory.
    assert!(json["memory_per_node_mb"].as_u64().unwrap() > 0, "{json}");
    let end = UNIX_EPOCH + Duration::from_secs(json["end_time"].as_u64().unwrap());
    // Ten minutes from its start, which came after the submission.
    assert!(end > submitted + Duration::from_secs(9 * 60), "{json}");
    assert!(end > SystemTime::now(), "{json}");
}

#[test]
fn a_rendered_batch_script_starts_one_runner_per_node() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A stand-in runner that records its arguments, one per line, and its step, then runs a
    // job as a step of its own with all the allocation's CPUs, as a runner in slurm mode does:
    // the runners' step must leave them free (`--overlap`), or this one would wait forever.
    let runner = dir.path().join("fake runner");
    let record = dir.path().join("args");
    let r = record.display();
    let job_step = srun_argv(
        &SrunStep::new(1, 100 * 1024 * 1024),
        &format!("echo \"job step $SLURM_STEP_ID\" >> '{r}'"),
    )
    .unwrap();
    let job_step: Vec<String> = job_step
        .iter()
        .map(|a| torc_slurm::shell_quote(a).into_owned())
        .collect();
    std::fs::write(
        &runner,
        format!(
            "#!/bin/bash\nprintf '%s\\n' \"$@\" > '{r}'\necho \"runner step $SLURM_STEP_ID\" >> '{r}'\n{}\n",
            job_step.join(" ")
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut sched = SchedulerParams::new("it's #1");
    sched.partition = Some("debug".into());
    sched.walltime = "00:05:00".into();
    let launch = RunnerLaunch {
        runner_bin: runner,
        api_url: "http://127.0.0.1:1/x?a=1&b=$(id)".into(),
        workflow_id: WorkflowId(7),
        start_one_worker_per_node: true,
        output_dir: dir.path().join("out 100%"),
        extra_args: vec!["--idle-timeout".into(), "it's \"quoted\"".into()],
    };
    let defaults = BTreeMap::from([("comment".to_string(), "x#y \"z\"".to_string())]);
    let script = BatchScript::new(&sched, &defaults, &launch).unwrap();
    let path = dir.path().join("alloc.sh");
    script.write(&path).unwrap();
    let job = Job {
        slurm: &slurm,
        id: slurm.submit(&path).unwrap(),
    };
    let s = wait_ended(&slurm, job.id);
    let slurm_out = script
        .slurm_output_dir()
        .join(format!("slurm_{}.out", job.id));
    let slurm_err = script
        .slurm_output_dir()
        .join(format!("slurm_{}.err", job.id));
    assert_eq!(
        s.state,
        AllocationState::Ended(EndReason::Completed),
        "{s:?}: {}",
        read(&slurm_err)
    );
    assert!(slurm_out.exists());
    let output_dir = launch.output_dir.to_str().unwrap();
    assert_eq!(
        read(&record),
        format!(
            "--url\nhttp://127.0.0.1:1/x?a=1&b=$(id)\n--workflow\n7\n--scheduler\nit's #1\n\
             --output-dir\n{output_dir}\n--idle-timeout\nit's \"quoted\"\nrunner step 0\n\
             job step 1\n"
        )
    );
}

#[test]
fn an_srun_step_runs_inside_an_allocation() {
    let Some(slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut step = SrunStep::new(1, 100 * 1024 * 1024);
    step.time_limit = Some(Duration::from_secs(150));
    step.signal = Some("TERM@30".into());
    step.cpu_bind = false;
    step.job_name = Some("torc step".into());
    let argv = srun_argv(
        &step,
        &format!(
            "echo \"step $SLURM_STEP_ID of $SLURM_JOB_ID: $SLURM_CPUS_PER_TASK\" > '{d}/step'"
        ),
    )
    .unwrap();
    let line: Vec<String> = argv
        .iter()
        .map(|a| torc_slurm::shell_quote(a).into_owned())
        .collect();
    let job = submit(
        &slurm,
        dir.path(),
        "step.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --output={d}/slurm_%j.out\n#SBATCH --time=5\n{}\n",
            line.join(" ")
        ),
    );
    let s = wait_ended(&slurm, job.id);
    let out = read(&dir.path().join(format!("slurm_{}.out", job.id)));
    assert_eq!(
        s.state,
        AllocationState::Ended(EndReason::Completed),
        "{s:?}: {out}"
    );
    assert_eq!(
        read(&dir.path().join("step")),
        format!("step 0 of {}: 1\n", job.id)
    );
}
