//! Carrying out a workflow's actions where this process runs: Slurm allocations through
//! `sbatch`, local runner processes, commands; and, for an elastic executor, keeping the
//! workflow's allocations in line with its work (cancelling the ones the core says are not
//! needed, reporting what the batch queue says of the live ones).
//!
//! The same [`Executor`] serves `torc submit` (over HTTP), a runner (beside its jobs) and a
//! server started with `--execute-actions` (in-process): it talks to a
//! [`Coordinator`] and cannot tell which. It decides nothing: the core decides what is wanted,
//! the executor does it and reports back what happened, including failures (an `sbatch` that
//! refuses is a record with Slurm's words, never a silent loss).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use torc_core::alloc::{Allocation, AllocationState, AllocationUpdate};
use torc_core::api::{
    ActionCapabilities, ActionClaimRequest, ClaimedAction, Coordinator, CoordinatorError,
};
use torc_core::changes::WorkflowState;
use torc_core::model::{ActionKind, SchedulerType, SlurmScheduler};
use torc_core::WorkflowId;
use torc_slurm::{
    AllocationState as SlurmState, BatchScript, RunnerLaunch, SchedulerParams, ScriptError, Slurm,
    SlurmJobId,
};

/// How runners this executor starts (in allocations, or locally) reach the coordinator.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// The `torc-runner` to start (absolute: an allocation runs elsewhere).
    pub runner_bin: PathBuf,
    pub api_url: String,
    /// The workflow's output directory (absolute).
    pub output_dir: PathBuf,
}

/// The `sbatch` parameters of a `slurm_schedulers` entry.
pub fn scheduler_params(s: &SlurmScheduler) -> SchedulerParams {
    let mut p = SchedulerParams::new(&s.name);
    p.account = Some(s.account.clone()).filter(|a| !a.is_empty());
    p.partition = s.partition.clone();
    p.nodes = s.nodes;
    p.walltime = s.walltime.clone();
    p.mem = s.mem.clone();
    p.gres = s.gres.clone();
    p.qos = s.qos.clone();
    p.tmp = s.tmp.clone();
    p.extra = s.extra.clone();
    p.ntasks_per_node = s.ntasks_per_node;
    p
}

/// How an allocation's runner behaves, from the action and the workflow's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationRunner {
    /// One runner per node (through `srun`) rather than one on the first node.
    pub one_per_node: bool,
    /// `compute_node_wait_for_new_jobs_seconds`.
    pub wait_for_new_jobs_seconds: u32,
    /// `execution_config.sigkill_headroom_seconds`.
    pub headroom_seconds: u32,
    /// `execution_config.mode: slurm`: each job as a Slurm step.
    pub srun_jobs: bool,
}

impl AllocationRunner {
    /// What a claimed `schedule_nodes` action asks of its allocations' runners.
    pub fn of(action: &ClaimedAction, one_per_node: bool) -> AllocationRunner {
        AllocationRunner {
            one_per_node,
            wait_for_new_jobs_seconds: action.wait_for_new_jobs_seconds,
            headroom_seconds: action.sigkill_headroom_seconds,
            srun_jobs: action.srun_jobs,
        }
    }
}

/// The batch script of one allocation of `scheduler` for workflow `id`.
pub fn batch_script(
    id: WorkflowId,
    scheduler: &SlurmScheduler,
    defaults: &BTreeMap<String, String>,
    launch: &LaunchSettings,
    runner: AllocationRunner,
) -> Result<BatchScript, ScriptError> {
    let mut extra_args = vec![
        "--idle-timeout".into(),
        runner.wait_for_new_jobs_seconds.to_string(),
        "--end-headroom-secs".into(),
        runner.headroom_seconds.to_string(),
    ];
    if runner.srun_jobs {
        extra_args.push("--srun-jobs".into());
    }
    let l = RunnerLaunch {
        runner_bin: launch.runner_bin.clone(),
        api_url: launch.api_url.clone(),
        workflow_id: id,
        start_one_worker_per_node: runner.one_per_node,
        output_dir: launch.output_dir.clone(),
        extra_args,
    };
    BatchScript::new(&scheduler_params(scheduler), defaults, &l)
}

/// Whether Slurm's command `program` (`sbatch`, …) is on `PATH`.
pub fn on_path(program: &str) -> bool {
    Slurm::new().has(program)
}

/// The `torc-runner` to launch: `given` (made absolute), else the one beside this program.
/// The error says what is missing and how to name it.
pub fn runner_bin(given: Option<&std::path::Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return std::fs::canonicalize(p).map_err(|e| format!("--runner-bin {}: {e}", p.display()));
    }
    let me =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let beside = me.with_file_name("torc-runner");
    if !beside.exists() {
        return Err(format!(
            "no torc-runner beside {} (pass --runner-bin PATH)",
            me.display()
        ));
    }
    Ok(beside)
}

/// A batch job's state as the queue reports it, as the record keeps it, with the end's reason.
fn recorded_state(state: &SlurmState) -> (AllocationState, String) {
    match state {
        SlurmState::Queued => (AllocationState::Queued, String::new()),
        SlurmState::Running => (AllocationState::Running, String::new()),
        SlurmState::Ended(why) => (AllocationState::Ended, format!("{why:?}")),
    }
}

/// What one [`Executor::step`] did.
#[derive(Debug, Clone)]
pub struct Step {
    pub workflow_state: WorkflowState,
    /// One line per thing done or failed, for the user.
    pub lines: Vec<String>,
    /// Actions handed to this executor in this step.
    pub actions: usize,
}

/// Carries out a workflow's actions for one executor identity.
pub struct Executor<C: Coordinator> {
    coord: Arc<C>,
    workflow: WorkflowId,
    name: String,
    can: ActionCapabilities,
    elastic: bool,
    launch: Option<LaunchSettings>,
    slurm: Slurm,
    /// The token the runners it starts get as `TORC_API_TOKEN`; `None`: they inherit this
    /// process's environment.
    token: Option<String>,
    /// Reports not yet acknowledged by the coordinator.
    updates: Vec<AllocationUpdate>,
    /// What the batch queue last said of each live allocation, so only changes are reported.
    seen: BTreeMap<u64, AllocationState>,
    /// Local runners started, reaped as they end.
    children: Vec<Child>,
}

impl<C: Coordinator> Executor<C> {
    /// An executor named `name` (a persistent action is carried out once per name) that does
    /// what `can` says. Without `launch` it cannot start runners, so `schedule_nodes` is left
    /// to others whatever `can` says.
    pub fn new(
        coord: Arc<C>,
        workflow: WorkflowId,
        name: impl Into<String>,
        mut can: ActionCapabilities,
        launch: Option<LaunchSettings>,
    ) -> Executor<C> {
        if launch.is_none() {
            can.slurm = false;
            can.local_runners = false;
        }
        Executor {
            coord,
            workflow,
            name: name.into(),
            can,
            elastic: false,
            launch,
            slurm: Slurm::new(),
            token: None,
            updates: Vec::new(),
            seen: BTreeMap::new(),
            children: Vec::new(),
        }
    }

    /// Also keep the workflow's allocations in line with its work (see `torc_core::sched`).
    pub fn elastic(mut self, yes: bool) -> Self {
        self.elastic = yes;
        self
    }

    /// Slurm's commands from this directory instead of `PATH`.
    pub fn with_slurm(mut self, slurm: Slurm) -> Self {
        self.slurm = slurm;
        self
    }

    /// Gives the runners it starts (locally, and through `sbatch` in allocations) this token,
    /// which this process no longer has in its environment (see [`crate::secret`]).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Queues a report for the next exchange (a runner saying its allocation runs, or ended).
    pub fn report(&mut self, update: AllocationUpdate) {
        self.updates.push(update);
    }

    /// One exchange with the coordinator: send what is queued, carry out what comes back.
    /// On an error nothing queued is lost: it is sent again next time.
    pub async fn step(&mut self) -> Result<Step, CoordinatorError> {
        self.reap();
        let updates = std::mem::take(&mut self.updates);
        let req = ActionClaimRequest {
            workflow_id: self.workflow,
            executor: self.name.clone(),
            can: self.can,
            allocations: updates.clone(),
            elastic: self.elastic,
        };
        let answer = match self.coord.claim_actions(req).await {
            Ok(a) => a,
            Err(e) => {
                self.updates = updates;
                return Err(e);
            }
        };
        let mut lines = Vec::new();
        for action in &answer.actions {
            self.carry_out(action, &mut lines).await;
        }
        if !answer.actions.is_empty() {
            // Say at once what was submitted: the new allocation's runner may report in before
            // the next step, naming a batch id the record must already hold.
            self.send_updates().await;
        }
        if !answer.orders.cancel.is_empty() {
            let ids: Vec<SlurmJobId> = answer
                .orders
                .cancel
                .iter()
                .map(|&i| SlurmJobId(i))
                .collect();
            let slurm = self.slurm.clone();
            let result = blocking(move || slurm.cancel(&ids)).await;
            match result {
                Ok(()) => lines.push(format!(
                    "cancelled allocation(s) {}",
                    join(&answer.orders.cancel)
                )),
                Err(e) => lines.push(format!(
                    "cannot cancel allocation(s) {}: {e}",
                    join(&answer.orders.cancel)
                )),
            }
        }
        if !answer.orders.cancel_if_queued.is_empty() {
            self.cancel_if_queued(&answer.orders.cancel_if_queued, &mut lines)
                .await;
        }
        if self.elastic {
            self.watch_queue(&answer.allocations, &mut lines).await;
        }
        Ok(Step {
            workflow_state: answer.workflow_state,
            lines,
            actions: answer.actions.len(),
        })
    }

    /// Sends what is queued, asking for nothing; on an error it stays queued for the next step.
    async fn send_updates(&mut self) {
        if self.updates.is_empty() {
            return;
        }
        let updates = std::mem::take(&mut self.updates);
        let req = ActionClaimRequest {
            workflow_id: self.workflow,
            executor: self.name.clone(),
            can: ActionCapabilities::default(),
            allocations: updates.clone(),
            elastic: false,
        };
        if self.coord.claim_actions(req).await.is_err() {
            self.updates = updates;
        }
    }

    /// Cancels those of `ids` that still wait in the queue; reports what it saw of each.
    async fn cancel_if_queued(&mut self, ids: &[u64], lines: &mut Vec<String>) {
        let asked: Vec<SlurmJobId> = ids.iter().map(|&i| SlurmJobId(i)).collect();
        let slurm = self.slurm.clone();
        let statuses = match blocking(move || slurm.query(&asked)).await {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("cannot read the batch queue: {e}"));
                return;
            }
        };
        let waiting: Vec<SlurmJobId> = statuses
            .iter()
            .filter(|s| s.state == SlurmState::Queued)
            .map(|s| s.id)
            .collect();
        if !waiting.is_empty() {
            let slurm = self.slurm.clone();
            let cancel = waiting.clone();
            match blocking(move || slurm.cancel(&cancel)).await {
                Ok(()) => {
                    let list: Vec<u64> = waiting.iter().map(|i| i.0).collect();
                    lines.push(format!(
                        "cancelled queued allocation(s) {}: no work left for them",
                        join(&list)
                    ));
                    for id in list {
                        self.seen.insert(id, AllocationState::Ended);
                        self.updates.push(AllocationUpdate::Seen {
                            batch_id: id,
                            state: AllocationState::Ended,
                            note: "cancelled: no work left for its scheduler".into(),
                        });
                    }
                }
                Err(e) => lines.push(format!("cannot cancel queued allocations: {e}")),
            }
        }
        for st in statuses.iter().filter(|s| s.state != SlurmState::Queued) {
            let (state, note) = recorded_state(&st.state);
            self.seen.insert(st.id.0, state);
            self.updates.push(AllocationUpdate::Seen {
                batch_id: st.id.0,
                state,
                note,
            });
        }
    }

    /// Reads the batch queue's state of the live allocations and queues what changed.
    async fn watch_queue(&mut self, live: &[Allocation], lines: &mut Vec<String>) {
        let ids: Vec<SlurmJobId> = live
            .iter()
            .filter_map(|a| a.batch_id)
            .map(SlurmJobId)
            .collect();
        self.seen.retain(|id, _| ids.iter().any(|i| i.0 == *id));
        if ids.is_empty() || !self.slurm.has("squeue") {
            return;
        }
        let slurm = self.slurm.clone();
        let statuses = match blocking(move || slurm.query(&ids)).await {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("cannot read the batch queue: {e}"));
                return;
            }
        };
        for st in statuses {
            let (state, note) = recorded_state(&st.state);
            let recorded = live
                .iter()
                .find(|a| a.batch_id == Some(st.id.0))
                .map(|a| a.state);
            if self.seen.get(&st.id.0) == Some(&state) || recorded == Some(state) {
                continue;
            }
            self.seen.insert(st.id.0, state);
            self.updates.push(AllocationUpdate::Seen {
                batch_id: st.id.0,
                state,
                note,
            });
        }
    }

    async fn carry_out(&mut self, action: &ClaimedAction, lines: &mut Vec<String>) {
        match &action.kind {
            ActionKind::RunCommands { commands } => {
                for c in commands {
                    let cmd = c.clone();
                    let status = blocking(move || {
                        Command::new("bash")
                            .arg("-c")
                            .arg(&cmd)
                            .stdin(Stdio::null())
                            .status()
                    })
                    .await;
                    match status {
                        Ok(s) if s.success() => lines.push(format!("ran `{c}`")),
                        Ok(s) => lines.push(format!("action command `{c}` failed: {s}")),
                        Err(e) => lines.push(format!("cannot run `{c}`: {e}")),
                    }
                }
            }
            ActionKind::ScheduleNodes {
                scheduler_type: SchedulerType::Local,
                num_allocations,
                max_parallel_jobs,
                ..
            } => {
                for _ in 0..*num_allocations {
                    match self.start_local_runner(*max_parallel_jobs) {
                        Ok(line) => lines.push(line),
                        Err(e) => lines.push(format!("cannot start a local runner: {e}")),
                    }
                }
            }
            ActionKind::ScheduleNodes {
                scheduler_type: SchedulerType::Slurm,
                num_allocations,
                start_one_worker_per_node,
                ..
            } => {
                let Some(scheduler) = &action.scheduler else {
                    lines.push(format!(
                        "action {} names no known slurm scheduler; skipped",
                        action.action_index
                    ));
                    return;
                };
                for n in 0..*num_allocations {
                    let update = match self
                        .submit(action, scheduler, *start_one_worker_per_node, n)
                        .await
                    {
                        Ok(batch_id) => {
                            lines.push(format!(
                                "allocation {batch_id} (scheduler {}) submitted",
                                scheduler.name
                            ));
                            AllocationUpdate::Submitted {
                                record: action.record,
                                scheduler: scheduler.name.clone(),
                                batch_id,
                            }
                        }
                        Err(message) => {
                            lines.push(format!(
                                "cannot submit an allocation of scheduler {}: {message}",
                                scheduler.name
                            ));
                            AllocationUpdate::SubmitFailed {
                                record: action.record,
                                message,
                            }
                        }
                    };
                    self.updates.push(update);
                }
            }
        }
    }

    async fn submit(
        &self,
        action: &ClaimedAction,
        scheduler: &SlurmScheduler,
        one_per_node: bool,
        n: u32,
    ) -> Result<u64, String> {
        let launch = self.launch.as_ref().ok_or("no runner to launch")?;
        let script = batch_script(
            self.workflow,
            scheduler,
            &action.slurm_defaults,
            launch,
            AllocationRunner::of(action, one_per_node),
        )
        .map_err(|e| format!("cannot write the batch script: {e}"))?;
        let path = script.slurm_output_dir().join(format!(
            "wf{}_{}_r{}_{}.sh",
            self.workflow, scheduler.name, action.record, n
        ));
        script
            .write(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut slurm = self.slurm.clone();
        if let Some(token) = &self.token {
            // sbatch passes its environment on to the batch script, whose runner reads it.
            slurm = slurm.with_env("TORC_API_TOKEN", token);
        }
        blocking(move || slurm.submit(&path))
            .await
            .map(|id| id.0)
            .map_err(|e| e.to_string())
    }

    /// A runner on this machine for the workflow, detached: its output goes to a log file.
    fn start_local_runner(&mut self, max_parallel_jobs: Option<u32>) -> Result<String, String> {
        let launch = self.launch.as_ref().ok_or("no runner to launch")?;
        std::fs::create_dir_all(&launch.output_dir).map_err(|e| e.to_string())?;
        let log_path = launch.output_dir.join(format!(
            "runner_wf{}_{}_{}.log",
            self.workflow,
            std::process::id(),
            self.children.len()
        ));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&launch.runner_bin);
        cmd.arg("--url")
            .arg(&launch.api_url)
            .arg("--workflow")
            .arg(self.workflow.0.to_string())
            .arg("--output-dir")
            .arg(&launch.output_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if let Some(n) = max_parallel_jobs {
            cmd.arg("--max-parallel-jobs").arg(n.to_string());
        }
        if let Some(token) = &self.token {
            cmd.env("TORC_API_TOKEN", token);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.runner_bin.display()))?;
        let line = format!(
            "local runner {} started (log: {})",
            child.id(),
            log_path.display()
        );
        self.children.push(child);
        Ok(line)
    }

    /// Reaps local runners that ended, so none is left a zombie.
    fn reap(&mut self) {
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// Local runners started and still running.
    pub fn local_runners(&mut self) -> usize {
        self.reap();
        self.children.len()
    }
}

/// Steps `exec` every `interval` until the workflow is no longer active or `stop` resolves,
/// then once more (to send what is queued). Errors are logged and retried at the next step.
pub async fn run_until<C: Coordinator>(
    exec: &mut Executor<C>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match exec.step().await {
            Ok(step) => {
                for l in &step.lines {
                    tracing::info!(workflow = %exec.workflow, "{l}");
                }
                if step.workflow_state.is_done() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(workflow = %exec.workflow, error = %e, "action exchange failed")
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    if let Err(e) = exec.step().await {
        tracing::warn!(workflow = %exec.workflow, error = %e, "last action exchange failed");
    }
}

fn join(ids: &[u64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs a blocking command off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl<C: Coordinator> Drop for Executor<C> {
    fn drop(&mut self) {
        // Local runners outlive their starter on purpose (they serve the workflow); only reap
        // what already ended.
        self.reap();
    }
}

/// Executors for many workflows under one name (a server carrying out every workflow's
/// actions): one elastic [`Executor`] per active workflow, made when first seen and dropped
/// when its workflow is done.
pub struct ExecutorPool<C: Coordinator> {
    coord: Arc<C>,
    name: String,
    can: ActionCapabilities,
    launch: LaunchSettings,
    executors: BTreeMap<WorkflowId, Executor<C>>,
}

impl<C: Coordinator> ExecutorPool<C> {
    pub fn new(
        coord: Arc<C>,
        name: impl Into<String>,
        can: ActionCapabilities,
        launch: LaunchSettings,
    ) -> ExecutorPool<C> {
        ExecutorPool {
            coord,
            name: name.into(),
            can,
            launch,
            executors: BTreeMap::new(),
        }
    }

    /// One step for each of `active` (and one last for workflows that just stopped being
    /// active, so their allocations are cancelled). Returns what was done, per workflow.
    pub async fn step_all(&mut self, active: &[WorkflowId]) -> Vec<(WorkflowId, String)> {
        for id in active {
            if !self.executors.contains_key(id) {
                let exec = Executor::new(
                    Arc::clone(&self.coord),
                    *id,
                    self.name.clone(),
                    self.can,
                    Some(self.launch.clone()),
                )
                .elastic(true);
                self.executors.insert(*id, exec);
            }
        }
        let mut lines = Vec::new();
        let mut done = Vec::new();
        for (id, exec) in &mut self.executors {
            match exec.step().await {
                Ok(step) => {
                    lines.extend(step.lines.into_iter().map(|l| (*id, l)));
                    if step.workflow_state.is_done() && !active.contains(id) {
                        done.push(*id);
                    }
                }
                Err(e) => lines.push((*id, format!("action exchange failed: {e}"))),
            }
        }
        for id in done {
            self.executors.remove(&id);
        }
        lines
    }
}
