//! Workflow actions: trigger counting as part of the state changes that move jobs, and the
//! durable records that executors claim.
//!
//! Every action of the definition is armed or fired. A job-watching action
//! (`on_jobs_ready`, `on_jobs_complete`) counts how many of its jobs have reached its condition;
//! the count moves in the same call that changes a job's status (`WorkflowSched::set_raw`), so
//! it is exact at every commit. When the count reaches the number of jobs the action fires: a
//! record is created in the same [`Changes`] as the state change that fired it, so a trigger and
//! its cause are durable together. When a reset takes the count back down, the action is armed
//! again (a new run fires it again). `on_workflow_start` fires when a new workflow is first
//! evaluated, `on_workflow_complete` when the workflow completes (and is re-armed by a reset).
//!
//! Armed or fired is never stored: on restore it is derived from the jobs' states (an action
//! whose condition holds has fired, since its record was committed with the change that made it
//! hold). Records are stored; a record is claimed by one executor, or, for a persistent action,
//! once by each executor that asks.

use super::WorkflowSched;
use crate::api::{ActionCapabilities, ClaimedAction};
use crate::changes::{ActionChange, Changes};
use crate::ids::Timestamp;
use crate::model::{ActionDef, ActionKind, JobStatus, SchedulerType, Trigger};
use std::collections::HashMap;

/// One action's trigger state.
#[derive(Debug, Clone)]
struct Armed {
    /// Jobs of the action that meet its condition now.
    reached: u32,
    /// Jobs the action watches.
    total: u32,
    fired: bool,
}

/// A triggered action, waiting for (more) executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    /// Local to the workflow, from 1, never reused.
    pub id: u32,
    /// Index into the definition's `actions`.
    pub action: u32,
    pub run_id: u32,
    /// Executors that claimed it (at most one unless the action is persistent).
    pub claimed_by: Vec<String>,
}

/// The trigger state of a workflow's actions.
#[derive(Debug, Clone, Default)]
pub(super) struct Triggers {
    armed: Vec<Armed>,
    /// Job index → the job-watching actions that name it. Only named jobs have an entry.
    watchers: HashMap<u32, Vec<u32>>,
    records: Vec<ActionRecord>,
    next_record: u32,
}

/// Whether a job in `status` meets `trigger`'s condition.
fn meets(trigger: Trigger, status: JobStatus) -> bool {
    match trigger {
        // Ready, or past it: a job that is running or ran was ready.
        Trigger::OnJobsReady => matches!(
            status,
            JobStatus::Ready
                | JobStatus::Pending
                | JobStatus::Running
                | JobStatus::Completed
                | JobStatus::Failed
                | JobStatus::Terminated
        ),
        Trigger::OnJobsComplete => status.is_finished(),
        Trigger::OnWorkflowStart | Trigger::OnWorkflowComplete => false,
    }
}

impl Triggers {
    /// Trigger state for `actions`, given every job's status now. `fresh`: a new workflow, whose
    /// `on_workflow_start` has not fired yet. `complete`: the workflow is complete.
    pub(super) fn new(
        actions: &[ActionDef],
        status_of: impl Fn(usize) -> JobStatus,
        fresh: bool,
        complete: bool,
    ) -> Triggers {
        let mut watchers: HashMap<u32, Vec<u32>> = HashMap::new();
        let armed = actions
            .iter()
            .enumerate()
            .map(|(a, def)| {
                let mut reached = 0;
                if def.trigger.watches_jobs() {
                    for job in &def.jobs {
                        watchers
                            .entry(job.index() as u32)
                            .or_default()
                            .push(a as u32);
                        if meets(def.trigger, status_of(job.index())) {
                            reached += 1;
                        }
                    }
                }
                let total = def.jobs.len() as u32;
                let fired = match def.trigger {
                    Trigger::OnWorkflowStart => !fresh,
                    Trigger::OnWorkflowComplete => complete,
                    // An action naming no job never fires (the spec reader refuses one).
                    _ => total > 0 && reached == total,
                };
                Armed {
                    reached,
                    total,
                    fired,
                }
            })
            .collect();
        Triggers {
            armed,
            watchers,
            records: Vec::new(),
            next_record: 1,
        }
    }

    /// Takes back the records a store kept (those not claimed yet, and persistent ones).
    /// `on_workflow_start` fires in the first commit after creation, before anything else can
    /// fire: a workflow restored without a record ever made missed it (a crash between its
    /// creation and that commit) and gets it now.
    pub(super) fn restore_records(
        &mut self,
        records: Vec<ActionRecord>,
        next_record: u32,
        actions: &[ActionDef],
    ) {
        self.next_record = next_record.max(records.iter().map(|r| r.id + 1).max().unwrap_or(1));
        // A claimed record of a non-persistent action is done with.
        self.records = records
            .into_iter()
            .filter(|r| {
                r.claimed_by.is_empty()
                    || actions.get(r.action as usize).is_some_and(|a| a.persistent)
            })
            .collect();
        if self.next_record <= 1 {
            for (a, def) in actions.iter().enumerate() {
                if def.trigger == Trigger::OnWorkflowStart {
                    self.armed[a].fired = false;
                }
            }
        }
    }

    /// Counts a job's move from `old` to `new`; fires what it completes, re-arms what it undoes.
    pub(super) fn job_moved(
        &mut self,
        job: usize,
        old: JobStatus,
        new: JobStatus,
        actions: &[ActionDef],
        fire: &mut Vec<u32>,
    ) {
        let Some(watching) = self.watchers.get(&(job as u32)) else {
            return;
        };
        for &a in watching {
            let trigger = actions[a as usize].trigger;
            let armed = &mut self.armed[a as usize];
            match (meets(trigger, old), meets(trigger, new)) {
                (false, true) => {
                    armed.reached += 1;
                    if armed.reached == armed.total && !armed.fired {
                        armed.fired = true;
                        fire.push(a);
                    }
                }
                (true, false) => {
                    armed.reached -= 1;
                    armed.fired = false;
                }
                _ => {}
            }
        }
    }

    /// Fires every armed action with `trigger` (the workflow-level ones).
    fn fire_workflow(&mut self, trigger: Trigger, actions: &[ActionDef], fire: &mut Vec<u32>) {
        for (a, def) in actions.iter().enumerate() {
            if def.trigger == trigger && !self.armed[a].fired {
                self.armed[a].fired = true;
                fire.push(a as u32);
            }
        }
    }

    /// Arms `on_workflow_complete` again (a reset starts a new run that will complete again).
    fn rearm_complete(&mut self, actions: &[ActionDef]) {
        for (a, def) in actions.iter().enumerate() {
            if def.trigger == Trigger::OnWorkflowComplete {
                self.armed[a].fired = false;
            }
        }
    }

    /// Whether action `index` has fired (and not been re-armed since).
    pub(super) fn has_fired(&self, index: usize) -> bool {
        self.armed.get(index).is_some_and(|a| a.fired)
    }

    /// A record of action `action`, already handed out (so not kept waiting): returns its id.
    pub(super) fn new_record(
        &mut self,
        action: u32,
        run_id: u32,
        now: Timestamp,
        changes: &mut Changes,
    ) -> u32 {
        let id = self.next_record;
        self.next_record += 1;
        changes.actions.push(ActionChange::Triggered {
            record: id,
            action,
            run_id,
            time: now,
        });
        id
    }

    fn record(&mut self, action: u32, run_id: u32, now: Timestamp, changes: &mut Changes) {
        let id = self.next_record;
        self.next_record += 1;
        self.records.push(ActionRecord {
            id,
            action,
            run_id,
            claimed_by: Vec::new(),
        });
        changes.actions.push(ActionChange::Triggered {
            record: id,
            action,
            run_id,
            time: now,
        });
    }
}

/// Whether an executor that can do `can` carries out `kind`.
fn can_do(kind: &ActionKind, can: &ActionCapabilities) -> bool {
    match kind {
        ActionKind::RunCommands { .. } => can.run_commands,
        ActionKind::ScheduleNodes { scheduler_type, .. } => match scheduler_type {
            SchedulerType::Slurm => can.slurm,
            SchedulerType::Local => can.local_runners,
        },
    }
}

impl WorkflowSched {
    /// Creates records for `fired` actions (indexes into the definition's actions).
    pub(super) fn record_fired(&mut self, fired: Vec<u32>, now: Timestamp, changes: &mut Changes) {
        for a in fired {
            self.triggers.record(a, self.run_id, now, changes);
        }
    }

    /// Fires `on_workflow_start` if it has not fired.
    pub(super) fn fire_start(&mut self, now: Timestamp, changes: &mut Changes) {
        let mut fired = Vec::new();
        let def = self.def.clone();
        self.triggers
            .fire_workflow(Trigger::OnWorkflowStart, &def.actions, &mut fired);
        self.record_fired(fired, now, changes);
    }

    /// Fires `on_workflow_complete` if it has not fired.
    pub(super) fn fire_complete(&mut self, now: Timestamp, changes: &mut Changes) {
        let mut fired = Vec::new();
        let def = self.def.clone();
        self.triggers
            .fire_workflow(Trigger::OnWorkflowComplete, &def.actions, &mut fired);
        self.record_fired(fired, now, changes);
    }

    /// Arms `on_workflow_complete` again after a reset.
    pub(super) fn rearm_complete(&mut self) {
        let def = self.def.clone();
        self.triggers.rearm_complete(&def.actions);
    }

    /// Takes back the action records a store kept for this workflow (see
    /// [`ActionRecord`]); `next_record` is the id the next one gets.
    /// Call it before [`Self::initialize`], which fires what a crash made it miss.
    pub fn restore_actions(&mut self, records: Vec<ActionRecord>, next_record: u32) {
        let def = self.def.clone();
        self.triggers
            .restore_records(records, next_record, &def.actions);
    }

    /// Records waiting for an executor (or, persistent ones, for more).
    pub fn pending_actions(&self) -> &[ActionRecord] {
        &self.triggers.records
    }

    /// Hands `executor` every triggered action it can carry out and has not claimed yet: a
    /// non-persistent action goes to the first executor that asks, and only to it.
    pub fn claim_actions(
        &mut self,
        executor: &str,
        can: &ActionCapabilities,
        now: Timestamp,
    ) -> (Vec<ClaimedAction>, Changes) {
        let mut changes = Changes::default();
        let mut out = Vec::new();
        let def = self.def.clone();
        for rec in &mut self.triggers.records {
            let Some(action) = def.actions.get(rec.action as usize) else {
                continue;
            };
            let taken = if action.persistent {
                rec.claimed_by.iter().any(|e| e == executor)
            } else {
                !rec.claimed_by.is_empty()
            };
            if taken || !can_do(&action.kind, can) {
                continue;
            }
            rec.claimed_by.push(executor.to_string());
            changes.actions.push(ActionChange::Claimed {
                record: rec.id,
                executor: executor.to_string(),
                time: now,
            });
            out.push((rec.id, rec.action, rec.run_id));
        }
        // Claimed non-persistent records are done with.
        self.triggers.records.retain(|r| {
            let persistent = def
                .actions
                .get(r.action as usize)
                .is_some_and(|a| a.persistent);
            persistent || r.claimed_by.is_empty()
        });
        let out = out
            .into_iter()
            .map(|(record, action, run_id)| self.claimed_action(record, action, run_id))
            .collect();
        (out, changes)
    }

    /// Record `record` of action `action`, with what an executor needs to carry it out.
    pub(super) fn claimed_action(&self, record: u32, action: u32, run_id: u32) -> ClaimedAction {
        let def = &self.def;
        let a = &def.actions[action as usize];
        let scheduler = match &a.kind {
            ActionKind::ScheduleNodes {
                scheduler: Some(name),
                ..
            } => def
                .slurm_schedulers
                .iter()
                .find(|s| &s.name == name)
                .cloned(),
            _ => None,
        };
        ClaimedAction {
            record,
            action_index: action,
            run_id,
            trigger: a.trigger,
            kind: a.kind.clone(),
            jobs: a.jobs.clone(),
            scheduler,
            slurm_defaults: def.slurm_defaults.clone(),
            wait_for_new_jobs_seconds: def.compute_node.wait_for_new_jobs_seconds,
            sigkill_headroom_seconds: def.execution.sigkill_headroom_seconds,
            srun_jobs: def.execution.mode == crate::model::ExecutionMode::Slurm,
        }
    }
}
