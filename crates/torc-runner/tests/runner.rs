//! The runner against an in-memory fake coordinator, with real subprocesses.
//!
//! Tests never sleep to synchronise: they wait on the fake's bookkeeping (through a `Notify`)
//! or on files, with a generous timeout as a safety net only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use torc_core::api::{
    ClaimRequest, ClaimResponse, ClaimedJob, CompletionOutcome, CompletionReport, Coordinator,
    CoordinatorError, HeartbeatRequest, HeartbeatResponse, HeldJob, ReportBatch, ReportResponse,
};
use torc_core::changes::WorkflowState;
use torc_core::model::{FailureHandler, FailureRule, Resources};
use torc_core::{JobId, JobStatus, RunnerId, WorkflowId};
use torc_runner::{run, Capacity, RunEnd, RunSummary, RunnerConfig, RunnerError, Shutdown};

/// Safety net for every wait; never reached when things work.
const SAFETY: Duration = Duration::from_secs(30);
const WF: WorkflowId = WorkflowId(7);

// ---- the fake coordinator ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fails without applying anything.
    Before,
    /// Applies the batch, then loses the answer.
    After,
}

struct FakeJob {
    job: ClaimedJob,
    deps: Vec<usize>,
    status: JobStatus,
    /// The answer given to each attempt's completion, so that duplicates get the same one.
    answers: HashMap<u32, CompletionOutcome>,
}

#[derive(Default)]
struct State {
    jobs: Vec<FakeJob>,
    claims: Vec<ClaimRequest>,
    batches: Vec<ReportBatch>,
    /// Completions that changed a job, in the order applied.
    applied: Vec<CompletionReport>,
    /// Claimed and not yet completed, now and at most.
    in_flight: usize,
    max_in_flight: usize,
    /// Claims parked right now, and how many were parked when each report batch arrived.
    parked: usize,
    parked_at_report: Vec<usize>,
    claim_faults: u32,
    report_faults: VecDeque<Option<Fault>>,
    /// Claims from this index on are held, whatever is ready, until released.
    hold_claims_from: Option<usize>,
    canceled: bool,
    /// Never report the workflow complete (for idle tests).
    keep_active: bool,
    /// Heartbeats received, and jobs to take back at the next one.
    beats: Vec<HeartbeatRequest>,
    revoke: Vec<HeldJob>,
}

impl State {
    fn workflow_state(&self) -> WorkflowState {
        if self.canceled {
            WorkflowState::Canceled
        } else if !self.keep_active && self.jobs.iter().all(|j| j.status.is_finished()) {
            WorkflowState::Complete
        } else {
            WorkflowState::Active
        }
    }

    fn take_fitting(&mut self, req: &ClaimRequest) -> Vec<ClaimedJob> {
        let mut free = req.resources;
        let mut out = Vec::new();
        for j in &mut self.jobs {
            if out.len() >= req.limit as usize {
                break;
            }
            if j.status != JobStatus::Ready {
                continue;
            }
            if let Some(free) = free.as_mut() {
                let need = j.job.resources;
                if need.num_cpus > free.num_cpus
                    || need.memory_bytes > free.memory_bytes
                    || need.num_gpus > free.num_gpus
                {
                    continue;
                }
                free.num_cpus -= need.num_cpus;
                free.memory_bytes -= need.memory_bytes;
                free.num_gpus -= need.num_gpus;
            }
            j.status = JobStatus::Pending;
            out.push(j.job.clone());
        }
        self.in_flight += out.len();
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        out
    }

    fn apply(&mut self, c: &CompletionReport) -> CompletionOutcome {
        let idx = c.job_id.index();
        let j = &mut self.jobs[idx];
        if let Some(answer) = j.answers.get(&c.attempt_id) {
            return answer.clone();
        }
        if j.job.attempt_id != c.attempt_id
            || !matches!(j.status, JobStatus::Pending | JobStatus::Running)
        {
            return CompletionOutcome::Refused {
                reason: "not running".into(),
            };
        }
        let retry = j
            .job
            .failure_handler
            .as_ref()
            .and_then(|h| h.rule_for(c.return_code))
            .is_some_and(|r| c.attempt_id <= r.max_retries && !c.recovery_failed);
        let status = if c.terminated {
            JobStatus::Terminated
        } else if c.return_code == 0 {
            JobStatus::Completed
        } else if retry {
            JobStatus::Ready
        } else {
            JobStatus::Failed
        };
        let answer = CompletionOutcome::Accepted { status };
        j.answers.insert(c.attempt_id, answer.clone());
        j.status = status;
        if status == JobStatus::Ready {
            j.job.attempt_id += 1;
        }
        self.in_flight -= 1;
        self.applied.push(c.clone());
        if status.is_finished() {
            let finished: Vec<bool> = self.jobs.iter().map(|j| j.status.is_finished()).collect();
            for j in &mut self.jobs {
                if j.status == JobStatus::Blocked && j.deps.iter().all(|&d| finished[d]) {
                    j.status = JobStatus::Ready;
                }
            }
        }
        answer
    }
}

struct Fake {
    state: Mutex<State>,
    changed: Notify,
}

impl Fake {
    /// Jobs with the 0-based indexes of the jobs they depend on.
    fn new(jobs: Vec<(ClaimedJob, Vec<usize>)>) -> Arc<Fake> {
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(i, (job, deps))| {
                assert_eq!(job.job_id, JobId::from_index(i));
                FakeJob {
                    status: if deps.is_empty() {
                        JobStatus::Ready
                    } else {
                        JobStatus::Blocked
                    },
                    job,
                    deps,
                    answers: HashMap::new(),
                }
            })
            .collect();
        Arc::new(Fake {
            state: Mutex::new(State {
                jobs,
                ..State::default()
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes everyone waiting on it.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Waits until `cond` holds (panics after the safety timeout).
    async fn wait_until(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + SAFETY;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting until {what}");
            }
        }
    }

    fn status(&self, idx: usize) -> JobStatus {
        self.lock().jobs[idx].status
    }

    /// The applied completion of job `idx`, attempt `attempt`.
    fn completion(&self, idx: usize, attempt: u32) -> CompletionReport {
        self.lock()
            .applied
            .iter()
            .find(|c| c.job_id == JobId::from_index(idx) && c.attempt_id == attempt)
            .cloned()
            .unwrap_or_else(|| panic!("no completion for job {idx} attempt {attempt}"))
    }
}

impl Coordinator for Fake {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
        let (index, failed) = self.update(|s| {
            s.claims.push(req.clone());
            let failed = s.claim_faults > 0;
            s.claim_faults = s.claim_faults.saturating_sub(1);
            (s.claims.len() - 1, failed)
        });
        if failed {
            return Err(CoordinatorError::Unavailable {
                message: "fake claim fault".into(),
            });
        }
        let mut parked = false;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let held = {
                let mut s = self.lock();
                let held = s.hold_claims_from.is_some_and(|from| index >= from);
                let state = s.workflow_state();
                let jobs = if held || state.is_done() {
                    Vec::new()
                } else {
                    s.take_fitting(&req)
                };
                if !held && (!jobs.is_empty() || state.is_done() || Instant::now() >= deadline) {
                    if parked {
                        s.parked -= 1;
                    }
                    drop(s);
                    self.changed.notify_waiters();
                    return Ok(ClaimResponse {
                        jobs,
                        workflow_state: state,
                    });
                }
                if !parked {
                    parked = true;
                    s.parked += 1;
                    drop(s);
                    self.changed.notify_waiters();
                    continue;
                }
                held
            };
            if held {
                notified.await;
            } else {
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
    }

    async fn report(&self, batch: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
        let fault = Some(()).and_then(|_| self.lock().report_faults.pop_front().flatten());
        let result = self.update(|s| {
            let parked = s.parked;
            s.parked_at_report.push(parked);
            s.batches.push(batch.clone());
            if fault == Some(Fault::Before) {
                return None;
            }
            for st in &batch.starts {
                let j = &mut s.jobs[st.job_id.index()];
                if j.job.attempt_id == st.attempt_id && j.status == JobStatus::Pending {
                    j.status = JobStatus::Running;
                }
            }
            let outcomes = batch.completions.iter().map(|c| s.apply(c)).collect();
            Some(ReportResponse {
                outcomes,
                workflow_state: s.workflow_state(),
            })
        });
        match (result, fault) {
            (Some(resp), None) => Ok(resp),
            _ => Err(CoordinatorError::Unavailable {
                message: "fake report fault".into(),
            }),
        }
    }

    async fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        Ok(self.beat(req).await)
    }
}

impl Fake {
    /// A heartbeat: recorded; answered at once with the jobs to take back, else when the
    /// workflow is done or after `wait_ms`.
    async fn beat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
        self.update(|s| s.beats.push(req));
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                let state = s.workflow_state();
                if !s.revoke.is_empty() || state.is_done() || Instant::now() >= deadline {
                    return HeartbeatResponse {
                        workflow_state: state,
                        revoked: std::mem::take(&mut s.revoke),
                        lease_ms: Some(60_000),
                    };
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

// ---- helpers ----

fn job(idx: usize, name: &str, command: &str) -> ClaimedJob {
    ClaimedJob {
        workflow_id: WF,
        job_id: JobId::from_index(idx),
        run_id: 1,
        attempt_id: 1,
        name: name.into(),
        command: command.into(),
        invocation_script: None,
        resources: Resources::DEFAULT_JOB,
        supports_termination: false,
        timeout: None,
        env: BTreeMap::new(),
        failure_handler: None,
    }
}

fn config(dir: &Path, capacity: Capacity) -> RunnerConfig {
    let mut cfg = RunnerConfig::new(WF, RunnerId("test-runner".into()), capacity, dir);
    cfg.claim_wait = Duration::from_millis(200);
    cfg.grace_period = Duration::from_secs(20);
    cfg.sample_interval = None;
    cfg
}

async fn run_to_end(
    fake: &Arc<Fake>,
    cfg: RunnerConfig,
    shutdown: Shutdown,
) -> Result<RunSummary, RunnerError> {
    tokio::time::timeout(SAFETY, run(Arc::clone(fake), cfg, shutdown))
        .await
        .expect("the run ended")
}

fn stdio(dir: &Path, idx: usize, attempt: u32, ext: &str) -> PathBuf {
    dir.join("job_stdio")
        .join(format!("job_wf{}_j{}_r1_a{attempt}.{ext}", WF.0, idx + 1))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until `path` exists (a job writes it), polling with a safety timeout.
async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + SAFETY;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_pid(path: &Path) -> i32 {
    read(path).trim().parse().expect("a pid")
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // A zombie is dead but waits for its parent (here, init) to reap it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Waits for `pid` to die: a SIGKILL is delivered asynchronously, so give it a moment.
async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + SAFETY;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_get_their_environment_and_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        0,
        "hello",
        "echo \"wf=$TORC_WORKFLOW_ID job=$TORC_JOB_ID name=$TORC_JOB_NAME \
         attempt=$TORC_ATTEMPT_ID run=$TORC_RUN_ID api=$TORC_API_URL extra=$EXTRA\"; \
         echo \"out=$TORC_OUTPUT_DIR\"; echo \"cwd=$(pwd)\"; echo oops >&2",
    );
    j.env.insert("EXTRA".into(), "yes".into());
    let mut with_prefix = job(1, "prefixed", "echo world");
    with_prefix.invocation_script = Some("echo hello;".into());
    let fake = Fake::new(vec![(j, vec![]), (with_prefix, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(4));
    cfg.api_url = Some("http://localhost:1234/torc".into());
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!((summary.completed, summary.failed), (2, 0));

    let out = read(&stdio(dir.path(), 0, 1, "o"));
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("wf=7 job=1 name=hello attempt=1 run=1 api=http://localhost:1234/torc extra=yes")
    );
    let out_dir = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        lines.next(),
        Some(format!("out={}", out_dir.display()).as_str())
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        lines.next(),
        Some(format!("cwd={}", cwd.display()).as_str())
    );
    assert_eq!(read(&stdio(dir.path(), 0, 1, "e")), "oops\n");
    assert_eq!(read(&stdio(dir.path(), 1, 1, "o")), "hello\nworld\n");

    let c = fake.completion(0, 1);
    assert_eq!(c.return_code, 0);
    assert!(!c.terminated && !c.recovery_failed);
    assert!(c.end_time >= c.start_time);
    // Every start was reported, and every report was answered.
    let s = fake.lock();
    let starts: usize = s.batches.iter().map(|b| b.starts.len()).sum();
    assert_eq!(starts, 2);
    assert!(s.batches.iter().all(|b| b.workflow_id == WF));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_signals_become_return_codes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "ok", "true"), vec![]),
        (job(1, "three", "exit 3"), vec![]),
        (job(2, "killed", "kill -KILL $$"), vec![]),
        (job(3, "termed", "kill -TERM $$"), vec![]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(
        (summary.completed, summary.failed, summary.terminated),
        (1, 3, 0)
    );
    let rcs: Vec<i32> = (0..4).map(|i| fake.completion(i, 1).return_code).collect();
    assert_eq!(rcs, [0, 3, -9, -15]);
    assert_eq!(fake.status(1), JobStatus::Failed);
    assert!((0..4).all(|i| !fake.completion(i, 1).terminated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let step = |idx, name: &str| job(idx, name, &format!("echo {name} >> {}", log.display()));
    let fake = Fake::new(vec![
        (step(0, "a"), vec![]),
        (step(1, "b"), vec![0]),
        (step(2, "c"), vec![1]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.completed, 3);
    assert_eq!(read(&log), "a\nb\nc\n");
    let order: Vec<u32> = fake.lock().applied.iter().map(|c| c.job_id.0).collect();
    assert_eq!(order, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_jobs_is_never_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    // Each job marks itself live, records how many are live, and unmarks itself before exiting:
    // a count is never more than the number of job processes alive at that moment.
    let cmd = format!(
        "touch {live}/$TORC_JOB_ID; ls {live} | wc -l > {out}/count_$TORC_JOB_ID; \
         sleep 0.05; rm {live}/$TORC_JOB_ID",
        live = live.display(),
        out = dir.path().display()
    );
    let jobs = (0..8)
        .map(|i| (job(i, &format!("j{i}"), &cmd), vec![]))
        .collect();
    let fake = Fake::new(jobs);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.completed, 8);
    for id in 1..=8 {
        let count: u32 = read(&dir.path().join(format!("count_{id}")))
            .trim()
            .parse()
            .unwrap();
        assert!(
            (1..=2).contains(&count),
            "job {id} saw {count} jobs running"
        );
    }
    let s = fake.lock();
    // Short jobs are prefetched: claims may ask for up to two capacities' worth, but no more,
    // and the counts above show that never more than two ran at once.
    assert!(s
        .claims
        .iter()
        .all(|c| c.resources.is_none() && c.limit <= 4));
    // The first claim, before any job has run, asks for exactly the free slots.
    assert_eq!(s.claims[0].limit, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_claimed_only_when_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let small = job(
        0,
        "small",
        &format!("while [ ! -e {} ]; do sleep 0.01; done", go.display()),
    );
    let mut big = job(1, "big", "true");
    big.resources.num_cpus = 2;
    let fake = Fake::new(vec![(small, vec![]), (big, vec![])]);
    let cfg = config(
        dir.path(),
        Capacity::Resources {
            num_cpus: 2,
            memory_bytes: 1 << 30,
            num_gpus: 0,
        },
    );
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    // The small job runs; the runner asks with 1 CPU free and the big job stays ready.
    fake.wait_until("a claim offers 1 free CPU", |s| {
        s.claims
            .iter()
            .any(|c| c.resources.is_some_and(|r| r.num_cpus == 1))
    })
    .await;
    {
        let s = fake.lock();
        let free = s.claims.last().unwrap().resources.unwrap();
        assert_eq!(
            free.memory_bytes,
            (1 << 30) - Resources::DEFAULT_JOB.memory_bytes
        );
        assert_eq!(s.jobs[1].status, JobStatus::Ready);
    }
    std::fs::write(&go, b"").unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2);
    let s = fake.lock();
    assert_eq!(
        s.max_in_flight, 1,
        "the big job never ran beside the small one"
    );
    let big_claim = s
        .claims
        .iter()
        .find(|c| c.resources.is_some_and(|r| r.num_cpus == 2) && c.limit == 2);
    assert!(big_claim.is_some());
}

fn handler(script: &str, exit_code: i32, max_retries: u32) -> Option<FailureHandler> {
    Some(FailureHandler {
        name: "h".into(),
        rules: vec![FailureRule {
            exit_codes: vec![exit_code],
            match_all_exit_codes: false,
            recovery_script: Some(script.into()),
            max_retries,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_scripts_run_before_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mark = "touch \"$TORC_OUTPUT_DIR/rec_${TORC_JOB_NAME}_$TORC_ATTEMPT_ID\"";
    // Fails once, recovers, passes on the second attempt.
    let mut flaky = job(0, "flaky", "[ \"$TORC_ATTEMPT_ID\" = 2 ] || exit 1");
    flaky.failure_handler = handler(mark, 1, 2);
    // Its recovery script fails: not retried.
    let mut broken = job(1, "broken", "exit 1");
    broken.failure_handler = handler(&format!("{mark}; exit 5"), 1, 2);
    // Always fails: recovers before attempt 2, not after it (no retries left).
    let mut hopeless = job(2, "hopeless", "exit 1");
    hopeless.failure_handler = handler(mark, 1, 1);
    // A code without a rule: no recovery.
    let mut other = job(3, "other", "exit 4");
    other.failure_handler = handler(mark, 1, 1);
    let fake = Fake::new(vec![
        (flaky, vec![]),
        (broken, vec![]),
        (hopeless, vec![]),
        (other, vec![]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    let rec = |name: &str, attempt: u32| dir.path().join(format!("rec_{name}_{attempt}")).exists();

    assert!(rec("flaky", 1) && !rec("flaky", 2));
    let first = fake.completion(0, 1);
    assert_eq!((first.return_code, first.recovery_failed), (1, false));
    assert_eq!(fake.completion(0, 2).return_code, 0);
    assert_eq!(fake.status(0), JobStatus::Completed);

    assert!(rec("broken", 1));
    let c = fake.completion(1, 1);
    assert_eq!((c.return_code, c.recovery_failed), (1, true));
    assert_eq!(fake.status(1), JobStatus::Failed);

    assert!(rec("hopeless", 1) && !rec("hopeless", 2));
    assert!(!fake.completion(2, 1).recovery_failed);
    assert!(!fake.completion(2, 2).recovery_failed);
    assert_eq!(fake.status(2), JobStatus::Failed);

    assert!(!rec("other", 1));
    assert_eq!(fake.status(3), JobStatus::Failed);
    // Each attempt has its own output file.
    assert!(stdio(dir.path(), 0, 2, "o").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_terminated_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let child = dir.path().join("child");
    let mut slow = job(
        0,
        "slow",
        &format!(
            "sleep 30 & echo $! > {}; echo $$ > {}; wait",
            child.display(),
            pid.display()
        ),
    );
    slow.timeout = Some(Duration::from_millis(300));
    let fake = Fake::new(vec![(slow, vec![])]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(1)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(summary.terminated, 1);
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(c.return_code, -libc::SIGKILL);
    assert_eq!(fake.status(0), JobStatus::Terminated);
    assert_gone(read_pid(&pid)).await;
    assert_gone(read_pid(&child)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_terminates_every_job_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // Traps SIGTERM, notes it, exits 3.
    let mut polite = job(
        0,
        "polite",
        &format!(
            "trap 'touch {}; exit 3' TERM; echo $$ > {}; while true; do sleep 0.05; done",
            p("polite.term").display(),
            p("polite.pid").display()
        ),
    );
    polite.supports_termination = true;
    // Does not support termination: killed at once, with its child.
    let rude = job(
        1,
        "rude",
        &format!(
            "sleep 30 & echo $! > {}; echo $$ > {}; wait",
            p("rude.child").display(),
            p("rude.pid").display()
        ),
    );
    let fake = Fake::new(vec![(polite, vec![]), (rude, vec![])]);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(
        Arc::clone(&fake),
        config(dir.path(), Capacity::MaxParallelJobs(3)),
        shutdown.clone(),
    ));
    for f in ["polite.pid", "rude.pid", "rude.child"] {
        wait_for_file(&p(f)).await;
    }
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert_eq!(summary.terminated, 2);

    let polite = fake.completion(0, 1);
    assert!(polite.terminated);
    assert_eq!(polite.return_code, 3, "the job ran its SIGTERM trap");
    assert!(p("polite.term").exists());
    let rude = fake.completion(1, 1);
    assert!(rude.terminated);
    assert_eq!(rude.return_code, -libc::SIGKILL);
    for f in ["polite.pid", "rude.pid", "rude.child"] {
        assert_gone(read_pid(&p(f))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shutdown_request_kills_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    // Ignores SIGTERM; only SIGKILL stops it, and the grace period is far away.
    let mut stubborn = job(
        0,
        "stubborn",
        &format!(
            "trap '' TERM; echo $$ > {}; while true; do sleep 0.05; done",
            pid.display()
        ),
    );
    stubborn.supports_termination = true;
    let fake = Fake::new(vec![(stubborn, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.grace_period = Duration::from_secs(3600);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    wait_for_file(&pid).await;
    shutdown.trigger();
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(c.return_code, -libc::SIGKILL);
    assert_gone(read_pid(&pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_and_no_completion_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = (0..6)
        .map(|i| (job(i, &format!("j{i}"), &format!("exit {}", i % 2)), vec![]))
        .collect();
    let fake = Fake::new(jobs);
    fake.update(|s| {
        s.claim_faults = 2;
        s.report_faults = VecDeque::from([
            Some(Fault::Before),
            Some(Fault::After),
            None,
            Some(Fault::After),
            Some(Fault::Before),
        ]);
    });
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(
        (summary.completed, summary.failed, summary.refused),
        (3, 3, 0)
    );
    let s = fake.lock();
    let mut done: Vec<u32> = s.applied.iter().map(|c| c.job_id.0).collect();
    done.sort();
    assert_eq!(done, [1, 2, 3, 4, 5, 6]);
    // A failed batch was sent again as it was.
    assert_eq!(s.batches[0], s.batches[1]);
    assert!(s.claims.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_claim_does_not_delay_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let first = job(
        0,
        "first",
        &format!("while [ ! -e {} ]; do sleep 0.01; done", go.display()),
    );
    let fake = Fake::new(vec![(first, vec![]), (job(1, "second", "true"), vec![0])]);
    // The first claim gets the first job; the next one is held until released.
    fake.update(|s| s.hold_claims_from = Some(1));
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.claim_wait = Duration::from_secs(3600);
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("the second claim is parked", |s| s.parked == 1)
        .await;
    std::fs::write(&go, b"").unwrap();
    fake.wait_until("the first completion is reported", |s| {
        !s.applied.is_empty()
    })
    .await;
    {
        let s = fake.lock();
        assert_eq!(s.parked, 1, "the second claim is still parked");
        assert_eq!(s.claims.len(), 2);
        let report = s
            .batches
            .iter()
            .position(|b| !b.completions.is_empty())
            .unwrap();
        assert_eq!(s.parked_at_report[report], 1);
    }
    fake.update(|s| s.hold_claims_from = None);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_handed_over_while_stopping_are_reported_terminated_unrun() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![(job(0, "late", "true"), vec![])]);
    // The claim is held with a ready job, the runner is asked to stop, then the claim answers.
    fake.update(|s| s.hold_claims_from = Some(0));
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.claim_wait = Duration::from_secs(3600);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, shutdown.clone()));
    fake.wait_until("the claim is parked", |s| s.parked == 1)
        .await;
    shutdown.trigger();
    fake.update(|s| s.hold_claims_from = None);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::Shutdown);
    assert_eq!((summary.completed, summary.terminated), (0, 1));
    let c = fake.completion(0, 1);
    assert!(c.terminated);
    assert_eq!(fake.status(0), JobStatus::Terminated);
    assert!(!stdio(dir.path(), 0, 1, "o").exists(), "the job never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_workflow_terminates_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let long = job(0, "long", &format!("echo $$ > {}; sleep 30", pid.display()));
    let fake = Fake::new(vec![(long, vec![]), (job(1, "next", "true"), vec![0])]);
    let runner = tokio::spawn(run(
        Arc::clone(&fake),
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    ));
    wait_for_file(&pid).await;
    fake.update(|s| s.canceled = true);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 1);
    // The fake accepts nothing once canceled, but the report was sent.
    let sent = fake
        .lock()
        .batches
        .iter()
        .flat_map(|b| &b.completions)
        .find(|c| c.job_id == JobId(1))
        .cloned()
        .expect("the terminated job was reported");
    assert!(sent.terminated);
    assert_gone(read_pid(&pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_stops_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![(job(0, "only", "true"), vec![])]);
    fake.update(|s| s.keep_active = true);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.claim_wait = Duration::from_millis(50);
    cfg.idle_timeout = Some(Duration::from_millis(200));
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.end, RunEnd::IdleTimeout);
    assert_eq!(summary.completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_claim_ends_the_run_with_an_error() {
    struct Rejecting;
    impl Coordinator for Rejecting {
        async fn claim(&self, _: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
            Err(CoordinatorError::Rejected {
                code: torc_core::api::ErrorCode::Forbidden,
                message: "not yours".into(),
            })
        }
        async fn report(&self, _: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
            unreachable!("nothing to report")
        }
        async fn heartbeat(
            &self,
            _: HeartbeatRequest,
        ) -> Result<HeartbeatResponse, CoordinatorError> {
            Err(CoordinatorError::Unavailable {
                message: "down".into(),
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let err = tokio::time::timeout(
        SAFETY,
        run(
            Arc::new(Rejecting),
            config(dir.path(), Capacity::MaxParallelJobs(1)),
            Shutdown::new(),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, RunnerError::ClaimRejected { .. }), "{err}");
    let zero = run(
        Arc::new(Rejecting),
        config(dir.path(), Capacity::MaxParallelJobs(0)),
        Shutdown::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(zero, RunnerError::ZeroCapacity));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_cpu_are_sampled_for_jobs_that_run_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "sampled", "sleep 1"), vec![]),
        (job(1, "after", "true"), vec![0]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(1));
    cfg.sample_interval = Some(Duration::from_millis(20));
    run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    let c = fake.completion(0, 1);
    let peak = c.peak_memory_bytes.expect("sampled");
    let avg = c.avg_memory_bytes.expect("sampled");
    assert!(peak > 0 && avg > 0 && avg <= peak);
    assert!(c.peak_cpu_percent.unwrap() >= c.avg_cpu_percent.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_a_busy_runner_through_its_waiting_heartbeat() {
    // Both slots hold long jobs, so no claim is out and no report is due: only the heartbeat,
    // waiting at the coordinator, can bring the news.
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "long-a", "sleep 60"), vec![]),
        (job(1, "long-b", "sleep 60"), vec![]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.heartbeat_interval = Some(Duration::from_secs(3600));
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("both jobs run and their starts are reported", |s| {
        s.jobs.iter().all(|j| j.status == JobStatus::Running)
    })
    .await;
    fake.wait_until("a heartbeat waits at the coordinator", |s| {
        !s.beats.is_empty()
    })
    .await;
    fake.update(|s| s.canceled = true);
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner heard of the cancel")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 2);
    for idx in 0..2 {
        let c = fake.completion(idx, 1);
        assert!(c.terminated, "job {idx} reported terminated");
        assert_eq!(c.return_code, -libc::SIGKILL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_back_by_the_coordinator_is_killed_and_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "taken", "sleep 60"), vec![]),
        (job(1, "kept", "sleep 0.2"), vec![]),
    ]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(2));
    cfg.heartbeat_interval = Some(Duration::from_millis(50));
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    fake.wait_until("a heartbeat lists the long job", |s| {
        s.beats
            .iter()
            .any(|b| b.held.iter().any(|h| h.job_id == JobId(1)))
    })
    .await;
    // Another runner has it now (as far as the coordinator knows) and finishes it.
    fake.update(|s| {
        s.revoke.push(HeldJob {
            job_id: JobId(1),
            run_id: 1,
            attempt_id: 1,
        });
        s.jobs[0].status = JobStatus::Completed;
        s.in_flight -= 1;
    });
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the run ended")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(summary.revoked, 1);
    assert_eq!(summary.completed, 1);
    let s = fake.lock();
    assert!(
        s.batches
            .iter()
            .flat_map(|b| &b.completions)
            .all(|c| c.job_id != JobId(1)),
        "the taken-back job was reported"
    );
}
