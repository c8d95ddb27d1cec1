//! Heartbeats: renewing the lease on what the runner holds, and acting on the answer.
//!
//! One round of heartbeats is in flight at a time, beside the claim and the report: one per
//! workflow the runner holds jobs of (a dedicated runner's one workflow always). Each lists every
//! job of its workflow the runner holds (running, queued, or finished with the report not yet
//! acknowledged) and asks the coordinator to hold the answer for one interval, so that a cancel
//! comes back at once. Jobs an answer revokes (the lease had lapsed and another runner may have
//! them now) are killed and never reported.

use super::{backoff, EventLoop, ERROR_BACKOFF};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use torc_core::api::{Coordinator, CoordinatorError, HeartbeatRequest, HeartbeatResponse, HeldJob};
use torc_core::{JobId, WorkflowId};
use tracing::{debug, warn};

fn held(job_id: JobId, run_id: u32, attempt_id: u32) -> HeldJob {
    HeldJob {
        job_id,
        run_id,
        attempt_id,
    }
}

/// The answers to one round of heartbeats: one per workflow the runner holds jobs of.
pub(super) type BeatAnswers = Vec<(WorkflowId, Result<HeartbeatResponse, CoordinatorError>)>;

impl<C: Coordinator> EventLoop<C> {
    /// The time between heartbeats: the configured interval, or a third of the lease if that
    /// is shorter.
    fn beat_interval(&self) -> Option<Duration> {
        let every = self.cfg.heartbeat_interval?;
        Some(match self.lease {
            Some(lease) => every.min(lease / 3),
            None => every,
        })
    }

    /// Everything this runner holds, as the coordinator knows it, by workflow. A runner
    /// dedicated to one workflow always has an entry for it, held jobs or not.
    fn held_jobs(&self) -> Vec<(WorkflowId, Vec<HeldJob>)> {
        let mut out: Vec<(WorkflowId, Vec<HeldJob>)> = Vec::new();
        if !self.cfg.shared {
            out.push((self.cfg.workflow_id, Vec::new()));
        }
        let mut add = |id: WorkflowId, h: HeldJob| match out.iter_mut().find(|(w, _)| *w == id) {
            Some((_, list)) => list.push(h),
            None => out.push((id, vec![h])),
        };
        let running = self.running.values().map(|r| &r.job);
        for j in running.chain(&self.queued) {
            add(j.workflow_id, held(j.job_id, j.run_id, j.attempt_id));
        }
        let unacked = self
            .unacked
            .iter()
            .flatten()
            .flat_map(|b| b.completions.iter().map(move |c| (b.workflow_id, c)));
        let waiting = self.completions.iter().map(|(w, c)| (*w, c));
        for (w, c) in waiting.chain(unacked) {
            add(w, held(c.job_id, c.run_id, c.attempt_id));
        }
        out
    }

    pub(super) fn pump_beats(&mut self, now: Instant) {
        let Some(interval) = self.beat_interval() else {
            return;
        };
        if self.beat.is_some() || self.next_beat.is_some_and(|t| t > now) {
            return;
        }
        let held = self.held_jobs();
        if held.is_empty() {
            // A shared runner holding nothing has no lease to renew: it beats as soon as it
            // holds something (the beat stays due; being due wakes nothing by itself).
            return;
        }
        self.beat_sent = now;
        self.next_beat = None;
        // One heartbeat per workflow held, all sent at once, each waiting at the coordinator
        // for an interval so that a cancel or a revocation comes back at once. The first answer
        // ends the round: those already in are taken too, the rest are dropped (their leases
        // were renewed when they arrived) and sent again next round.
        let wait_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        debug!(workflows = held.len(), "heartbeat");
        let mut round: FuturesUnordered<_> = held
            .into_iter()
            .map(|(workflow_id, held)| {
                let coord = Arc::clone(&self.coord);
                let req = HeartbeatRequest {
                    workflow_id,
                    runner_id: self.cfg.runner_id.clone(),
                    held,
                    wait_ms,
                };
                async move { (workflow_id, coord.heartbeat(req).await) }
            })
            .collect();
        self.beat = Some(Box::pin(async move {
            let mut answers = Vec::new();
            if let Some(first) = round.next().await {
                answers.push(first);
            }
            while let Some(Some(answer)) = round.next().now_or_never() {
                answers.push(answer);
            }
            answers
        }));
    }

    pub(super) fn on_beat(&mut self, answers: BeatAnswers) {
        let now = Instant::now();
        let mut failure = None;
        for (workflow, answer) in answers {
            match answer {
                Ok(resp) => {
                    self.lease = resp.lease_ms.map(Duration::from_millis);
                    if !resp.revoked.is_empty() {
                        self.revoke(workflow, &resp.revoked);
                    }
                    self.observe_workflow(workflow, resp.workflow_state);
                }
                // A shared runner serves the others: see `drop_workflow`.
                Err(e) if self.cfg.shared && !e.is_transient() => self.drop_workflow(workflow, &e),
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            None => {
                self.beat_failures = 0;
                let interval = self.beat_interval().unwrap_or_default();
                self.next_beat = Some((self.beat_sent + interval).max(now));
            }
            Some(e) => {
                // Rejections too are retried: the claim and report paths decide whether the
                // runner can go on; a beat only keeps the lease.
                self.beat_failures += 1;
                let delay = backoff(self.beat_failures, ERROR_BACKOFF);
                let delay = match (e.is_transient(), self.beat_interval()) {
                    (false, Some(interval)) => interval,
                    _ => delay,
                };
                warn!(error = %e, attempt = self.beat_failures, ?delay, "heartbeat failed");
                self.next_beat = Some(now + delay);
            }
        }
    }

    /// The coordinator took these jobs of `workflow` back: kill what runs, drop what waits,
    /// report nothing.
    fn revoke(&mut self, workflow: WorkflowId, revoked: &[HeldJob]) {
        let gone: HashSet<(JobId, u32, u32)> = revoked
            .iter()
            .map(|h| (h.job_id, h.run_id, h.attempt_id))
            .collect();
        let is_gone = |w: WorkflowId, job: JobId, run: u32, attempt: u32| {
            w == workflow && gone.contains(&(job, run, attempt))
        };
        let now = Instant::now();
        for r in self.running.values_mut() {
            let j = &r.job;
            if is_gone(j.workflow_id, j.job_id, j.run_id, j.attempt_id) && !r.revoked {
                warn!(job = r.job.job_id.0, name = %r.job.name, attempt = r.job.attempt_id,
                      "the coordinator took this job back (lease lapsed): killing it");
                r.revoked = true;
                r.terminate(now, None, torc_core::changes::EndReason::Canceled);
            }
        }
        let before = self.queued.len() + self.completions.len();
        self.queued
            .retain(|j| !is_gone(j.workflow_id, j.job_id, j.run_id, j.attempt_id));
        self.completions
            .retain(|(w, c)| !is_gone(*w, c.job_id, c.run_id, c.attempt_id));
        let dropped = before - self.queued.len() - self.completions.len();
        self.counts.revoked += dropped as u64;
        if dropped > 0 {
            warn!(dropped, "dropped jobs the coordinator took back");
        }
    }
}
