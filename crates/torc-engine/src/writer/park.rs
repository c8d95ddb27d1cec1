//! Long polls: claims and heartbeats that park until work comes, their workflow ends, or their
//! deadline.

use super::Writer;
use crate::now;
use crate::request::{Pending, Redo, Reply};
use std::time::Instant;
use torc_core::api::{
    ClaimRequest, ClaimResponse, ClaimedJob, HeartbeatRequest, HeartbeatResponse,
    SharedClaimRequest,
};
use torc_core::changes::{Changes, WorkflowState};
use torc_core::sched::{claim_fair, WorkflowSched};
use torc_core::WorkflowId;

pub(super) struct Parked {
    pub(super) req: ClaimRequest,
    pub(super) deadline: Instant,
    pub(super) reply: Reply<ClaimResponse>,
    /// The workflow's ready generation when last tried.
    pub(super) seen: u64,
}

/// Runs a runner's claim against its workflow.
fn claim_for(sched: &mut WorkflowSched, req: &ClaimRequest) -> (Vec<ClaimedJob>, Changes) {
    sched.claim_tagged(
        &req.runner_id,
        req.limit,
        req.resources.as_ref(),
        req.tags.as_ref(),
        now(),
    )
}

/// A shared runner's claim that found nothing, waiting for any workflow to gain work.
pub(super) struct ParkedShared {
    pub(super) req: SharedClaimRequest,
    pub(super) owners: Option<Vec<String>>,
    pub(super) deadline: Instant,
    pub(super) reply: Reply<ClaimResponse>,
}

impl ParkedShared {
    /// The claim made again from scratch.
    fn redo(&self) -> Redo {
        Redo::ClaimShared {
            req: self.req.clone(),
            owners: self.owners.clone(),
            deadline: self.deadline,
        }
    }
}

/// A heartbeat held until its workflow stops being active or its deadline.
pub(super) struct ParkedBeat {
    pub(super) workflow_id: WorkflowId,
    pub(super) deadline: Instant,
    pub(super) reply: Reply<HeartbeatResponse>,
}

impl Writer {
    /// Answers a claim (once the batch commits) with what it got, recording what it changed in
    /// each workflow it took jobs from.
    pub(super) fn answer_claim(
        &mut self,
        reply: Reply<ClaimResponse>,
        jobs: Vec<ClaimedJob>,
        changes: impl IntoIterator<Item = (WorkflowId, Changes)>,
        workflow_state: WorkflowState,
        open_jobs: Option<u64>,
        redo: Redo,
    ) {
        self.stats.claimed(jobs.len());
        for (id, c) in changes {
            self.record(id, c);
        }
        let response = ClaimResponse {
            jobs,
            workflow_state,
            open_jobs,
        };
        self.answers.push(Pending::Claim(reply, Ok(response), redo));
    }

    pub(super) fn claim(
        &mut self,
        req: ClaimRequest,
        deadline: Instant,
        reply: Reply<ClaimResponse>,
    ) {
        if reply.is_closed() {
            // The caller went away before it was heard: it takes nothing.
            return;
        }
        let id = req.workflow_id;
        let sched = match self.workflow(id) {
            Ok(s) => s,
            Err(e) => {
                let redo = Redo::Claim { req, deadline };
                return self.answers.push(Pending::Claim(reply, Err(e), redo));
            }
        };
        let (jobs, changes) = claim_for(sched, &req);
        let state = sched.state();
        let seen = sched.ready_generation();
        let open = sched.open_jobs_for(req.tags.as_ref());
        // An allocation's runner for which nothing can come is answered at once: it may go.
        if jobs.is_empty() && !state.is_done() && open != Some(0) && deadline > Instant::now() {
            self.parked.push(Parked {
                req,
                deadline,
                reply,
                seen,
            });
            return;
        }
        let redo = Redo::Claim { req, deadline };
        self.answer_claim(reply, jobs, [(id, changes)], state, open, redo);
    }

    pub(super) fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        deadline: Instant,
        reply: Reply<HeartbeatResponse>,
    ) {
        let id = req.workflow_id;
        let policy = self.config.leases;
        let sched = match self.workflow(id) {
            Ok(s) => s,
            Err(e) => {
                let redo = Redo::Heartbeat { req, deadline };
                return self.answers.push(Pending::Heartbeat(reply, Err(e), redo));
            }
        };
        let (revoked, changes) = sched.heartbeat(
            &req.runner_id,
            &req.held,
            now(),
            &policy.unwrap_or_default(),
        );
        let workflow_state = sched.state();
        self.record(id, changes);
        // Parked past a third of the lease, a live runner could lose its jobs.
        let asked = deadline;
        let deadline = match policy {
            Some(p) => deadline.min(Instant::now() + p.lease / 3),
            None => deadline,
        };
        if revoked.is_empty() && !workflow_state.is_done() && deadline > Instant::now() {
            self.beats.push(ParkedBeat {
                workflow_id: id,
                deadline,
                reply,
            });
            return;
        }
        let response = self.beat_response(workflow_state, revoked);
        let redo = Redo::Heartbeat {
            req,
            deadline: asked,
        };
        self.answers
            .push(Pending::Heartbeat(reply, Ok(response), redo));
    }

    fn beat_response(
        &self,
        workflow_state: WorkflowState,
        revoked: Vec<torc_core::api::HeldJob>,
    ) -> HeartbeatResponse {
        HeartbeatResponse {
            workflow_state,
            revoked,
            lease_ms: (self.config.leases)
                .map(|p| u64::try_from(p.lease.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Answers parked heartbeats whose workflow stopped being active (or was unloaded), or whose
    /// deadline came.
    pub(super) fn answer_beats(&mut self) {
        if self.beats.is_empty() {
            return;
        }
        let t = Instant::now();
        for b in std::mem::take(&mut self.beats) {
            if b.reply.is_closed() {
                continue;
            }
            let state = self.workflows.get(&b.workflow_id).map(|s| s.state());
            match state {
                Some(state) if state.is_done() || b.deadline <= t => {
                    let response = self.beat_response(state, Vec::new());
                    let redo = Redo::Beat(b.workflow_id);
                    self.answers
                        .push(Pending::Heartbeat(b.reply, Ok(response), redo));
                }
                Some(_) => self.beats.push(b),
                // Dropped from memory (unloaded, or a failed commit): answer with what the
                // database says.
                None => {
                    let r = self
                        .workflow(b.workflow_id)
                        .map(|s| s.state())
                        .map(|state| self.beat_response(state, Vec::new()));
                    let redo = Redo::Beat(b.workflow_id);
                    self.answers.push(Pending::Heartbeat(b.reply, r, redo));
                }
            }
        }
    }

    /// A shared runner's claim: jobs picked fairly across the workflows `owners` allows (all
    /// when `None`). Answered (once the batch commits) when it got jobs, on error, or at its
    /// deadline; otherwise handed back to be parked.
    pub(super) fn claim_shared(&mut self, p: ParkedShared) -> Option<ParkedShared> {
        if p.reply.is_closed() {
            // The caller went away (its connection closed): it takes nothing.
            return None;
        }
        if let Err(e) = self.load_all_active() {
            let redo = p.redo();
            self.answers.push(Pending::Claim(p.reply, Err(e), redo));
            return None;
        }
        self.refresh_pool();
        let owners = p.owners.as_deref();
        let allowed = |s: &WorkflowSched| match owners {
            None => true,
            Some(owners) => s.owner().is_some_and(|o| owners.iter().any(|x| x == o)),
        };
        let (jobs, changes) =
            claim_fair(&mut self.pool, &mut self.workflows, &p.req, allowed, now());
        if jobs.is_empty() && p.deadline > Instant::now() {
            return Some(p);
        }
        let redo = p.redo();
        self.answer_claim(p.reply, jobs, changes, WorkflowState::Active, None, redo);
        None
    }

    /// Tries parked shared claims again after a batch that gave any workflow new work (a job
    /// ready, room under a cap); answers those whose deadline came. Without new work nothing
    /// they were refused could have become theirs, so they are not tried: an idle pool of
    /// shared runners costs nothing per batch.
    pub(super) fn retry_parked_shared(&mut self) {
        if self.parked_shared.is_empty() {
            return;
        }
        let t = Instant::now();
        self.refresh_pool();
        let changed = std::mem::take(&mut self.new_work);
        for p in std::mem::take(&mut self.parked_shared) {
            if p.reply.is_closed() {
                continue;
            }
            if !changed && p.deadline > t {
                self.parked_shared.push(p);
                continue;
            }
            if let Some(p) = self.claim_shared(p) {
                self.parked_shared.push(p);
            }
        }
    }

    /// Tries parked claims whose workflow gained ready jobs (or ended); expires the rest.
    pub(super) fn retry_parked(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let t = Instant::now();
        let parked = std::mem::take(&mut self.parked);
        for mut p in parked {
            if p.reply.is_closed() {
                // The caller went away (its connection closed): it takes nothing, and the jobs
                // it would have got stay ready for others.
                continue;
            }
            let id = p.req.workflow_id;
            // Reloaded from the database if a failed commit dropped it from memory.
            let sched = match self.workflow(id) {
                Ok(s) => s,
                Err(e) => {
                    let redo = Redo::Claim {
                        req: p.req,
                        deadline: p.deadline,
                    };
                    self.answers.push(Pending::Claim(p.reply, Err(e), redo));
                    continue;
                }
            };
            let changed = sched.ready_generation() != p.seen || sched.state().is_done();
            let (jobs, changes) = if changed {
                claim_for(sched, &p.req)
            } else {
                (Vec::new(), Changes::default())
            };
            p.seen = sched.ready_generation();
            let state = sched.state();
            // O(1): counts kept per scheduler. The last job an allocation could get may have
            // finished elsewhere, which makes no job ready but leaves it nothing to wait for.
            let open = sched.open_jobs_for(p.req.tags.as_ref());
            if jobs.is_empty() && !state.is_done() && open != Some(0) && p.deadline > t {
                self.parked.push(p);
                continue;
            }
            let redo = Redo::Claim {
                req: p.req,
                deadline: p.deadline,
            };
            self.answer_claim(p.reply, jobs, [(id, changes)], state, open, redo);
        }
    }
}
