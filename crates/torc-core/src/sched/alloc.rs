//! Allocations of a workflow's schedulers: counting each scheduler's jobs by status, recording
//! what executors submitted, and deciding when an allocation is wanted or should go.
//!
//! The rules (each evaluated when an elastic executor asks, see [`WorkflowSched::exchange_actions`]):
//! - a workflow that is no longer active cancels every live allocation;
//! - a queued allocation of a scheduler with no job left to start (none uninitialized, blocked
//!   or ready) is cancelled: its work was done elsewhere or is gone;
//! - a scheduler with ready jobs and no live allocation (requested, queued or running) gets a
//!   new one, from the first `schedule_nodes` action of that scheduler that has fired in this
//!   run: ready work never waits on an allocation that died;
//! - an allocation requested but never reported submitted is given up after
//!   [`REQUEST_EXPIRY_MS`], so a dead executor cannot block re-requests for ever;
//! - re-requests for one scheduler are at least [`REREQUEST_SPACING_MS`] apart, and stop once it
//!   has had [`MAX_ALLOCATIONS_PER_SCHEDULER`] allocations: allocations that die at once (a
//!   runner that cannot start, a broken node) must not turn into a storm of submissions.

use super::WorkflowSched;
use crate::alloc::{Allocation, AllocationOrders, AllocationState, AllocationUpdate};
use crate::api::{ActionClaimRequest, ActionClaimResponse, ClaimedAction, RunnerTags};
use crate::changes::{ActionChange, Changes, WorkflowState};
use crate::ids::Timestamp;
use crate::model::{ActionKind, JobStatus, SchedulerType, WorkflowDef};

/// How long a requested allocation may wait for its executor to report it submitted.
pub const REQUEST_EXPIRY_MS: i64 = 10 * 60 * 1000;
/// The least time between two allocations requested for one scheduler by the elastic rules.
pub const REREQUEST_SPACING_MS: i64 = 15 * 1000;
/// No more re-requests for a scheduler that has had this many allocations.
pub const MAX_ALLOCATIONS_PER_SCHEDULER: usize = 64;

/// Job counts by status for each scheduler; index 0 is "no scheduler". Empty (and free) for a
/// workflow none of whose jobs names a scheduler.
#[derive(Debug, Clone, Default)]
pub(super) struct SchedulerCounts {
    /// Per job: its scheduler's index (see above). Empty when no job has a scheduler.
    of_job: Vec<u16>,
    counts: Vec<[u32; 11]>,
}

impl SchedulerCounts {
    pub(super) fn new(def: &WorkflowDef, status_of: impl Fn(usize) -> JobStatus) -> Self {
        if def.jobs.iter().all(|j| j.scheduler.is_none()) {
            return SchedulerCounts::default();
        }
        let index = |name: &str| {
            def.slurm_schedulers
                .iter()
                .position(|s| s.name == name)
                .map_or(0, |p| (p + 1).min(u16::MAX as usize) as u16)
        };
        let of_job: Vec<u16> = def
            .jobs
            .iter()
            .map(|j| j.scheduler.as_deref().map_or(0, index))
            .collect();
        let mut counts = vec![[0u32; 11]; def.slurm_schedulers.len() + 1];
        for (i, s) in of_job.iter().enumerate() {
            counts[*s as usize][status_of(i) as usize] += 1;
        }
        SchedulerCounts { of_job, counts }
    }

    #[inline]
    pub(super) fn moved(&mut self, job: usize, old: JobStatus, new: JobStatus) {
        if let Some(&s) = self.of_job.get(job) {
            let c = &mut self.counts[s as usize];
            c[old as usize] -= 1;
            c[new as usize] += 1;
        }
    }

    /// Jobs of scheduler index `s` in any of `statuses`.
    fn count(&self, s: usize, statuses: &[JobStatus]) -> u64 {
        self.counts.get(s).map_or(0, |c| {
            statuses.iter().map(|st| u64::from(c[*st as usize])).sum()
        })
    }
}

/// Not started yet: a job in one of these may still be handed to a runner.
const WAITING: [JobStatus; 3] = [
    JobStatus::Uninitialized,
    JobStatus::Blocked,
    JobStatus::Ready,
];
/// Not finished.
const OPEN: [JobStatus; 5] = [
    JobStatus::Uninitialized,
    JobStatus::Blocked,
    JobStatus::Ready,
    JobStatus::Pending,
    JobStatus::Running,
];

impl WorkflowSched {
    fn scheduler_index(&self, name: &str) -> Option<usize> {
        self.def
            .slurm_schedulers
            .iter()
            .position(|s| s.name == name)
            .map(|p| p + 1)
    }

    /// Jobs of scheduler `name` (or of none) in any of `statuses`.
    fn scheduler_count(&self, name: Option<&str>, statuses: &[JobStatus]) -> u64 {
        if self.sched_counts.of_job.is_empty() {
            // No job names a scheduler: every job is unscheduled.
            return match name {
                None => statuses.iter().map(|s| self.counts[*s as usize]).sum(),
                Some(_) => 0,
            };
        }
        match name {
            None => self.sched_counts.count(0, statuses),
            Some(n) => self
                .scheduler_index(n)
                .map_or(0, |s| self.sched_counts.count(s, statuses)),
        }
    }

    /// For a runner of an allocation (tags naming a scheduler): the jobs it could still be
    /// given, now or later (those of its scheduler and, if it runs untagged jobs, those of no
    /// scheduler, that are not finished). `None` for other runners.
    pub fn open_jobs_for(&self, tags: Option<&RunnerTags>) -> Option<u64> {
        let tags = tags?;
        let prefix = RunnerTags::scheduler_tag("");
        let name = tags.tags.iter().find_map(|t| t.strip_prefix(&prefix))?;
        let mut n = self.scheduler_count(Some(name), &OPEN);
        if tags.run_untagged {
            n += self.scheduler_count(None, &OPEN);
        }
        Some(n)
    }

    /// Every allocation recorded for this workflow, oldest first.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// Takes back the allocations a store kept. Call before the first operation.
    pub fn restore_allocations(&mut self, mut list: Vec<Allocation>) {
        list.sort_by_key(|a| a.id);
        self.allocations = list;
    }

    fn put_allocation(&mut self, a: Allocation, changes: &mut Changes) {
        changes.allocations.push(a.clone());
        match self.allocations.iter_mut().find(|x| x.id == a.id) {
            Some(slot) => *slot = a,
            None => self.allocations.push(a),
        }
    }

    fn new_allocation(
        &self,
        record: u32,
        scheduler: &str,
        executor: &str,
        now: Timestamp,
    ) -> Allocation {
        Allocation {
            id: self.allocations.iter().map(|a| a.id).max().unwrap_or(0) + 1,
            record,
            scheduler: scheduler.to_string(),
            batch_id: None,
            state: AllocationState::Requested,
            executor: executor.to_string(),
            requested_at: now,
            started_at: None,
            ended_at: None,
            note: String::new(),
        }
    }

    /// Records `n` allocations requested of `executor` for `record`.
    fn request_allocations(
        &mut self,
        record: u32,
        scheduler: &str,
        n: u32,
        executor: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) {
        for _ in 0..n {
            let a = self.new_allocation(record, scheduler, executor, now);
            self.put_allocation(a, changes);
        }
    }

    fn end_allocation(
        &mut self,
        mut a: Allocation,
        note: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) {
        a.state = AllocationState::Ended;
        a.ended_at = Some(now);
        if a.note.is_empty() {
            a.note = note.to_string();
        }
        self.put_allocation(a, changes);
    }

    /// Applies what an executor or runner reports.
    fn apply_allocation_updates(
        &mut self,
        executor: &str,
        updates: &[AllocationUpdate],
        now: Timestamp,
        changes: &mut Changes,
    ) {
        for u in updates {
            match u {
                AllocationUpdate::Submitted {
                    record,
                    scheduler,
                    batch_id,
                } => {
                    if self
                        .allocations
                        .iter()
                        .any(|a| a.batch_id == Some(*batch_id))
                    {
                        continue; // reported twice (a retried request)
                    }
                    let placeholder = self.allocations.iter().find(|a| {
                        a.record == *record
                            && a.state == AllocationState::Requested
                            && a.batch_id.is_none()
                    });
                    let mut a = match placeholder {
                        Some(p) => p.clone(),
                        None => self.new_allocation(*record, scheduler, executor, now),
                    };
                    a.batch_id = Some(*batch_id);
                    a.state = AllocationState::Queued;
                    a.scheduler = scheduler.clone();
                    self.put_allocation(a, changes);
                }
                AllocationUpdate::SubmitFailed { record, message } => {
                    let waiting: Vec<Allocation> = self
                        .allocations
                        .iter()
                        .filter(|a| a.record == *record && a.state == AllocationState::Requested)
                        .cloned()
                        .collect();
                    for mut a in waiting {
                        a.note = format!("submit failed: {message}");
                        self.end_allocation(a, "", now, changes);
                    }
                }
                AllocationUpdate::Seen {
                    batch_id,
                    state,
                    note,
                } => {
                    let Some(a) = self
                        .allocations
                        .iter()
                        .find(|a| a.batch_id == Some(*batch_id))
                        .cloned()
                    else {
                        continue; // not one of ours
                    };
                    // States only move forward; a late "queued" never revives a running one.
                    let rank = |s: AllocationState| s as u8;
                    if rank(*state) <= rank(a.state) {
                        continue;
                    }
                    let mut a = a;
                    if *state == AllocationState::Running {
                        a.started_at = Some(now);
                    }
                    if *state == AllocationState::Ended {
                        a.note = note.clone();
                        self.end_allocation(a, "", now, changes);
                    } else {
                        a.state = *state;
                        self.put_allocation(a, changes);
                    }
                }
            }
        }
    }

    /// The elastic rules (see the module documentation): cancel orders, and re-requests handed
    /// to `executor` as claimed actions.
    fn elastic(
        &mut self,
        executor: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) -> (Vec<ClaimedAction>, AllocationOrders) {
        let mut orders = AllocationOrders::default();
        let mut ended: Vec<(Allocation, String)> = Vec::new();
        for a in self.allocations.iter().filter(|a| a.state.is_live()) {
            if a.state == AllocationState::Queued
                && self.state == WorkflowState::Active
                && self.scheduler_count(Some(&a.scheduler), &WAITING) == 0
            {
                if let Some(id) = a.batch_id {
                    orders.cancel_if_queued.push(id);
                }
                continue;
            }
            let why = if self.state != WorkflowState::Active {
                Some(format!("workflow {}", self.state.name()))
            } else if a.state == AllocationState::Requested
                && now.0.saturating_sub(a.requested_at.0) > REQUEST_EXPIRY_MS
            {
                Some("never reported submitted".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                if let Some(id) = a.batch_id {
                    orders.cancel.push(id);
                }
                ended.push((a.clone(), format!("cancelled: {why}")));
            }
        }
        for (a, why) in ended {
            self.end_allocation(a, &why, now, changes);
        }
        let mut claimed = Vec::new();
        if self.state != WorkflowState::Active {
            return (claimed, orders);
        }
        let def = self.def.clone();
        let mut served: Vec<&str> = Vec::new();
        for (index, action) in def.actions.iter().enumerate() {
            let ActionKind::ScheduleNodes {
                scheduler: Some(name),
                scheduler_type: SchedulerType::Slurm,
                num_allocations,
                ..
            } = &action.kind
            else {
                continue;
            };
            if served.contains(&name.as_str()) || !self.triggers.has_fired(index) {
                continue;
            }
            served.push(name);
            let mine = || self.allocations.iter().filter(|a| a.scheduler == *name);
            let live = mine().any(|a| a.state.is_live());
            let recent =
                mine().any(|a| now.0.saturating_sub(a.requested_at.0) < REREQUEST_SPACING_MS);
            let exhausted = mine().count() >= MAX_ALLOCATIONS_PER_SCHEDULER;
            if live
                || recent
                || exhausted
                || self.scheduler_count(Some(name), &[JobStatus::Ready]) == 0
            {
                continue;
            }
            let record = self
                .triggers
                .new_record(index as u32, self.run_id, now, changes);
            changes.actions.push(ActionChange::Claimed {
                record,
                executor: executor.to_string(),
                time: now,
            });
            self.request_allocations(
                record,
                name,
                (*num_allocations).max(1),
                executor,
                now,
                changes,
            );
            claimed.push(self.claimed_action(record, index as u32, self.run_id));
        }
        (claimed, orders)
    }

    /// An executor's exchange with the workflow: apply what it reports about allocations, hand
    /// it the triggered actions it can carry out (recording the allocations a `schedule_nodes`
    /// of Slurm asks it for), and, for an elastic executor, the re-requests and cancellations
    /// the rules above call for.
    pub fn exchange_actions(
        &mut self,
        req: &ActionClaimRequest,
        now: Timestamp,
    ) -> (ActionClaimResponse, Changes) {
        let mut changes = Changes::default();
        self.apply_allocation_updates(&req.executor, &req.allocations, now, &mut changes);
        let (mut actions, claimed) = self.claim_actions(&req.executor, &req.can, now);
        changes.extend(claimed);
        for a in &actions {
            if let ActionKind::ScheduleNodes {
                scheduler: Some(name),
                scheduler_type: SchedulerType::Slurm,
                num_allocations,
                ..
            } = &a.kind
            {
                let name = name.clone();
                self.request_allocations(
                    a.record,
                    &name,
                    *num_allocations,
                    &req.executor,
                    now,
                    &mut changes,
                );
            }
        }
        let mut orders = AllocationOrders::default();
        if req.elastic {
            let (more, o) = self.elastic(&req.executor, now, &mut changes);
            actions.extend(more);
            orders = o;
        }
        let allocations = if req.elastic {
            self.allocations
                .iter()
                .filter(|a| a.state.is_live())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let response = ActionClaimResponse {
            actions,
            workflow_state: self.state,
            orders,
            allocations,
        };
        (response, changes)
    }
}
