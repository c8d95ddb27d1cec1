//! Claims: what to ask for, and what to do with the answer.

use super::jobs::Prefetch;
use super::{backoff, EventLoop, ERROR_BACKOFF, IDLE_BACKOFF};
use crate::config::Capacity;
use crate::error::RunnerError;
use std::sync::Arc;
use tokio::time::Instant;
use torc_core::api::{
    ClaimRequest, ClaimResponse, ClaimedJob, Coordinator, CoordinatorError, FreeResources,
    SharedClaimRequest,
};
use tracing::{debug, info, warn};

impl<C: Coordinator> EventLoop<C> {
    /// The claim to send now, if one is due: nothing in flight, not stopping, room to fill.
    pub(super) fn claim_due(&self, now: Instant) -> Option<ClaimRequest> {
        self.claim_when(now, false)
    }

    /// The claim to send with a report that goes now: due as [`EventLoop::claim_due`] would
    /// have it, except that any room counts, not only a whole refill step. It shares the
    /// report's commit at the coordinator, so topping the queue up costs no commit of its own.
    pub(super) fn claim_with_report(&self, now: Instant) -> Option<ClaimRequest> {
        self.claim_when(now, true)
    }

    fn claim_when(&self, now: Instant, with_report: bool) -> Option<ClaimRequest> {
        if self.claim.is_some()
            || self.stopping.is_some()
            || self.idle_expired
            || self.workflow_state.is_done()
            || self.claim_not_before.is_some_and(|t| t > now)
        {
            return None;
        }
        self.claim_request(now, with_report)
    }

    pub(super) fn claim_request(&self, now: Instant, with_report: bool) -> Option<ClaimRequest> {
        let wait_ms = u64::try_from(self.cfg.claim_wait.as_millis()).unwrap_or(u64::MAX);
        // Ask for `windows` capacities' worth (more than one while prefetching) minus what is held.
        let Prefetch { windows, refill } = self.prefetching();
        // While prefetching with jobs still queued, the queue is topped up `refill` capacities
        // at a time rather than a job at a time: each claim is a commit at the coordinator. (The
        // window has room for the step: see `prefetch`.)
        let refill_only = windows > 1 && !self.queued.is_empty() && !with_report;
        let (limit, resources) = match self.cfg.capacity {
            Capacity::MaxParallelJobs(n) => {
                let held = self.running.len() + self.queued.len();
                let held = u32::try_from(held).unwrap_or(u32::MAX);
                let limit = n.saturating_mul(windows).saturating_sub(held);
                if refill_only && limit < n.saturating_mul(refill) {
                    return None;
                }
                (limit, None)
            }
            Capacity::Resources {
                num_cpus,
                memory_bytes,
                num_gpus,
            } => {
                let held = self.running.values().map(|r| &r.job).chain(&self.queued);
                let mut free = self.free_resources(windows, held);
                if let (true, Some(f)) = (refill_only, &free) {
                    // The step has drained when there is room for it in every resource: the
                    // one the jobs fill first decides. (Room in memory alone, which CPU-bound
                    // jobs never fill, would send a claim per CPU freed.)
                    let drained = f.num_cpus >= num_cpus.max(1).saturating_mul(refill)
                        && f.memory_bytes >= memory_bytes.max(1).saturating_mul(u64::from(refill))
                        && (num_gpus == 0 || f.num_gpus >= num_gpus.saturating_mul(refill));
                    if !drained {
                        return None;
                    }
                }
                if let Some(free) = &mut free {
                    free.time_left = self
                        .cfg
                        .time_left
                        .map(|t| t.saturating_sub(now.saturating_duration_since(self.started)));
                    // Before an allocation's end, only jobs that can finish before their stop.
                    if let Some(end) = self.claims_end() {
                        let left = end.saturating_duration_since(now);
                        free.time_left = Some(free.time_left.map_or(left, |t| t.min(left)));
                    }
                }
                (free.map_or(0, |f| f.num_cpus), free)
            }
        };
        (limit > 0).then(|| ClaimRequest {
            workflow_id: self.cfg.workflow_id,
            runner_id: self.cfg.runner_id.clone(),
            limit,
            resources,
            wait_ms,
            tags: self.cfg.tags.clone(),
        })
    }

    /// `windows` times the resource capacity, less what the `held` jobs need; `None` when the
    /// capacity is a job count. `time_left` is left unbounded.
    pub(super) fn free_resources<'a>(
        &self,
        windows: u32,
        held: impl Iterator<Item = &'a ClaimedJob>,
    ) -> Option<FreeResources> {
        let Capacity::Resources {
            num_cpus,
            memory_bytes,
            num_gpus,
        } = self.cfg.capacity
        else {
            return None;
        };
        let mut free = FreeResources {
            num_cpus: num_cpus.saturating_mul(windows),
            memory_bytes: memory_bytes.saturating_mul(u64::from(windows)),
            num_gpus: num_gpus.saturating_mul(windows),
            time_left: None,
        };
        for job in held {
            let need = &job.resources;
            free.num_cpus = free.num_cpus.saturating_sub(need.num_cpus);
            free.memory_bytes = free.memory_bytes.saturating_sub(need.memory_bytes);
            free.num_gpus = free.num_gpus.saturating_sub(need.num_gpus);
        }
        Some(free)
    }

    /// Sends `due` (from [`EventLoop::claim_due`], taken this round).
    pub(super) fn pump_claims(&mut self, now: Instant, due: Option<ClaimRequest>) {
        let Some(req) = due else {
            return;
        };
        debug!(limit = req.limit, free = ?req.resources, "claiming");
        self.claim_not_before = None;
        self.claim_sent = now;
        let coord = Arc::clone(&self.coord);
        if self.cfg.shared {
            let req = SharedClaimRequest {
                runner_id: req.runner_id,
                limit: req.limit,
                resources: req.resources,
                tags: req.tags.unwrap_or_default(),
                wait_ms: req.wait_ms,
            };
            self.claim = Some(Box::pin(async move { coord.claim_shared(req).await }));
        } else {
            self.claim = Some(Box::pin(async move { coord.claim(req).await }));
        }
    }

    pub(super) fn on_claim(&mut self, res: Result<ClaimResponse, CoordinatorError>) {
        let now = Instant::now();
        // A shutdown requested while the claim was out must win over starting its jobs.
        self.check_shutdown();
        match res {
            Ok(resp) => {
                self.claim_failures = 0;
                self.observe_state(resp.workflow_state);
                debug!(
                    jobs = resp.jobs.len(),
                    state = resp.workflow_state.name(),
                    "claim answered"
                );
                if resp.jobs.is_empty() && resp.open_jobs == Some(0) && self.running.is_empty() {
                    // An allocation's runner for whose scheduler no job can come: holding the
                    // allocation would only waste it.
                    if !self.idle_expired {
                        info!("no job left that this allocation could run: stopping");
                    }
                    self.idle_expired = true;
                    return;
                }
                if resp.jobs.is_empty() {
                    // An empty answer that came back early means the coordinator did not wait
                    // (or was told not to): back off rather than spin.
                    let waited = now.saturating_duration_since(self.claim_sent);
                    if self.cfg.claim_wait.is_zero() || waited < self.cfg.claim_wait / 2 {
                        self.empty_claims += 1;
                        self.claim_not_before =
                            Some(now + backoff(self.empty_claims, IDLE_BACKOFF));
                    }
                    return;
                }
                self.empty_claims = 0;
                self.idle_expired = false;
                let took = now.saturating_duration_since(self.claim_sent);
                self.claim_latency = Some(match self.claim_latency {
                    Some(mean) => mean.mul_f64(0.8) + took.mul_f64(0.2),
                    None => took,
                });
                self.counts.claimed += resp.jobs.len() as u64;
                for job in resp.jobs {
                    if let Some(reason) = self.stopping {
                        self.abandon(job, reason.end_reason());
                    } else {
                        self.queued.push_back(job);
                    }
                }
                self.start_queued();
            }
            Err(e) if e.is_transient() => {
                self.claim_failures += 1;
                let delay = backoff(self.claim_failures, ERROR_BACKOFF);
                warn!(error = %e, attempt = self.claim_failures, ?delay, "claim failed; retrying");
                self.claim_not_before = Some(now + delay);
            }
            Err(source) => self.fail(RunnerError::ClaimRejected { source }),
        }
    }
}
