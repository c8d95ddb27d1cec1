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
                        open_jobs: None,
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
        stdio: Default::default(),
        timeout_exit_code: 152,
        failure_handler: None,
        time_series: None,
        limits: Default::default(),
    }
}

fn config(dir: &Path, capacity: Capacity) -> RunnerConfig {
    let mut cfg = RunnerConfig::new(WF, RunnerId("test-runner".into()), capacity, dir);
    cfg.claim_wait = Duration::from_millis(200);
    cfg.grace_period = Some(Duration::from_secs(20));
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

#[path = "runner/limits.rs"]
mod limits;
#[path = "runner/running.rs"]
mod running;
#[path = "runner/stopping.rs"]
mod stopping;
