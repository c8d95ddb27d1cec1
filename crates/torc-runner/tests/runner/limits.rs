//! Execution control: memory limits (cgroup v2 and the sampler), the termination signal and its
//! lead at a shutdown and at an allocation's end, and the stagger of a runner's first jobs.

use super::*;
use torc_core::api::JobLimits;
use torc_core::changes::EndReason;
use torc_core::Timestamp;

/// Allocates 300 MB and keeps it for a while (no newline: `tail` holds it all).
const HOG: &str = "head -c 300M /dev/zero | tail; sleep 5";

fn limited(idx: usize, command: &str, memory_bytes: u64) -> ClaimedJob {
    let mut j = job(idx, "hog", command);
    j.limits = JobLimits {
        memory_bytes: Some(memory_bytes),
        ..JobLimits::default()
    };
    j
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn run_hog(cgroup_limits: bool) -> CompletionReport {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![(limited(0, HOG, 50 << 20), vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.cgroup_limits = cgroup_limits;
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!((summary.failed, summary.terminated), (1, 0));
    assert_eq!(fake.status(0), JobStatus::Failed);
    fake.completion(0, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_kills_a_job_over_its_memory() {
    let c = run_hog(false).await;
    assert_eq!(c.return_code, 137, "{c:?}");
    assert!(
        !c.terminated,
        "a memory kill is the job's failure, not a stop"
    );
    assert_eq!(c.end_reason, Some(EndReason::Memory));
    let message = c.message.unwrap();
    assert!(message.contains("memory"), "{message}");
    assert!(message.contains("sampler"), "{message}");
    assert!(
        message.contains("50.0 MiB") || message.contains("50 MiB"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_memory_limits_where_the_machine_allows_them() {
    match torc_runner::cgroup_tree() {
        Ok(tree) => {
            println!(
                "testing the cgroup v2 path: job cgroups under {}",
                tree.jobs_dir().display()
            );
            let c = run_hog(true).await;
            assert_eq!(c.return_code, 137, "{c:?}");
            assert_eq!(c.end_reason, Some(EndReason::Memory));
            let message = c.message.unwrap();
            assert!(message.contains("memory"), "{message}");
            assert!(
                message.contains("cgroup"),
                "killed by the kernel: {message}"
            );
            let left: Vec<_> = std::fs::read_dir(tree.jobs_dir())
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "job cgroups left behind: {left:?}");
        }
        Err(why) => {
            println!("testing the sampler path only: cgroup v2 memory limits are unavailable on this machine: {why}");
            // With cgroups asked for and unavailable, the sampler still enforces the limit.
            let c = run_hog(true).await;
            assert_eq!(c.return_code, 137, "{c:?}");
            let message = c.message.unwrap();
            assert!(
                message.contains("memory") && message.contains("sampler"),
                "{message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_under_its_limit_and_an_unlimited_one_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // 20 MB under a 200 MB limit; 100 MB with no limit (a job without a named requirement).
    let small = limited(0, "head -c 20M /dev/zero | tail; sleep 0.5", 200 << 20);
    let free = job(1, "free", "head -c 100M /dev/zero | tail; sleep 0.5");
    let fake = Fake::new(vec![(small, vec![]), (free, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.cgroup_limits = false;
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.completed, 2, "{summary:?}");
    for i in 0..2 {
        let c = fake.completion(i, 1);
        assert_eq!((c.return_code, c.end_reason, c.message), (0, None, None));
    }
}

/// A job that supports termination and notes the signal it gets in `note`: it exits 3 on
/// SIGUSR1, or with `ignore` keeps running until killed.
fn trapping(dir: &Path, ignore: bool) -> ClaimedJob {
    let note = dir.join("usr1");
    let started = dir.join("started");
    let on_usr1 = match ignore {
        true => format!("echo usr1 > {}", note.display()),
        false => format!("echo usr1 > {}; exit 3", note.display()),
    };
    let mut j = job(
        0,
        "trap",
        &format!(
            "trap '{on_usr1}' USR1; trap 'echo term > {}' TERM; touch {}; while true; do sleep 0.05; done",
            dir.join("term").display(),
            started.display()
        ),
    );
    j.supports_termination = true;
    j.limits.termination_signal = libc::SIGUSR1;
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_workflows_termination_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = trapping(dir.path(), false);
    // The lead is long: the job must end by itself, on the signal.
    j.limits.sigterm_lead = Duration::from_secs(3600);
    let fake = Fake::new(vec![(j, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.grace_period = None;
    let shutdown = Shutdown::new();
    let run = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    wait_for_file(&dir.path().join("started")).await;
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, run)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert_eq!(read(&dir.path().join("usr1")).trim(), "usr1");
    assert!(!dir.path().join("term").exists(), "SIGTERM was not sent");
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(c.return_code, 3, "the job's own exit on the signal");
    assert_eq!(c.end_reason, Some(EndReason::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_follows_the_termination_signal_after_the_lead() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = trapping(dir.path(), true);
    j.limits.sigterm_lead = Duration::from_millis(500);
    let fake = Fake::new(vec![(j, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.grace_period = None;
    let shutdown = Shutdown::new();
    let run = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    wait_for_file(&dir.path().join("started")).await;
    let asked = Instant::now();
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, run)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "killed before the lead"
    );
    assert_eq!(read(&dir.path().join("usr1")).trim(), "usr1");
    let c = fake.completion(0, 1);
    assert_eq!(c.return_code, -libc::SIGKILL, "ignored the signal: killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_end_stops_jobs_before_it_with_the_timeout_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut signalled = trapping(dir.path(), true);
    signalled.limits.sigkill_headroom = Duration::from_millis(500);
    signalled.limits.sigterm_lead = Duration::from_millis(500);
    // Does not support termination: SIGKILL at end - headroom, no signal before.
    let mut plain = job(1, "plain", "sleep 30");
    plain.limits.sigkill_headroom = Duration::from_millis(500);
    // Never claimed: the end is too near for it.
    let late = job(2, "late", "true");
    let fake = Fake::new(vec![(signalled, vec![]), (plain, vec![]), (late, vec![0])]);
    let cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    let shutdown = Shutdown::new();
    let run = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    wait_for_file(&dir.path().join("started")).await;
    fake.wait_until("both jobs run", |s| s.in_flight == 2).await;
    let end = std::time::Instant::now() + Duration::from_millis(1500);
    shutdown.end_at(end);
    let summary = tokio::time::timeout(SAFETY, run)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::AllocationEnd);
    let killed_by = end - Duration::from_millis(500);
    assert!(
        std::time::Instant::now() >= killed_by,
        "stopped before end - headroom"
    );
    assert_eq!(
        read(&dir.path().join("usr1")).trim(),
        "usr1",
        "the signal came first"
    );
    for i in 0..2 {
        let c = fake.completion(i, 1);
        assert!(c.terminated, "{c:?}");
        assert_eq!(c.return_code, 152, "stopped for time: timeout_exit_code");
        assert_eq!(c.end_reason, Some(EndReason::AllocationEnd));
    }
    assert_eq!(
        fake.status(2),
        JobStatus::Ready,
        "ready, but never claimed so near the end"
    );
}

/// The start time the runner reported for job `idx`.
fn start_of(fake: &Fake, idx: usize) -> Timestamp {
    fake.lock()
        .batches
        .iter()
        .flat_map(|b| &b.starts)
        .find(|s| s.job_id == JobId::from_index(idx))
        .map(|s| s.start_time)
        .unwrap_or_else(|| panic!("no start of job {idx}"))
}

/// A runner id whose stagger delay is at least half of `window`.
fn late_runner(window: Duration) -> RunnerId {
    (0..)
        .map(|i| RunnerId(format!("node{i}:1")))
        .find(|id| torc_runner::stagger_delay(id, window) >= window / 2)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staggered_start_delays_the_first_jobs_by_the_runners_share_of_the_window() {
    let window = Duration::from_secs(4);
    let id = late_runner(window);
    let delay = torc_runner::stagger_delay(&id, window);
    for staggered in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut jobs = vec![job(0, "a", "true"), job(1, "b", "true")];
        for j in &mut jobs {
            j.limits.staggered_start = staggered;
        }
        let fake = Fake::new(jobs.into_iter().map(|j| (j, vec![])).collect());
        let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
        cfg.runner_id = id.clone();
        cfg.stagger_window = Some(window);
        let before = now_ms();
        let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
        assert_eq!(summary.completed, 2);
        let delay_ms = delay.as_millis() as i64;
        for i in 0..2 {
            let waited = start_of(&fake, i).0 - before;
            if staggered {
                assert!(
                    waited >= delay_ms,
                    "job {i} started after {waited} ms, before its {delay_ms} ms"
                );
            } else {
                assert!(
                    waited < delay_ms,
                    "job {i} waited {waited} ms though staggered_start is off"
                );
            }
        }
    }
}
