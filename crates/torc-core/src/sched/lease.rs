//! Leases: a runner holds its pending and running jobs only while it is heard from.
//!
//! Every claim, report and heartbeat from a runner renews the lease on all the jobs it holds
//! (one timestamp per runner, not per job). When a runner has not been heard from for the lease
//! length, its jobs are lost: each goes back to ready with a new attempt number, or, once lost
//! more often than the policy allows, ends terminated (and the failure cascade applies). A late
//! report from a lost attempt is then stale and refused. Jobs restored pending or running after
//! a restart are held by the `ORPHANS` slot until a runner that still has them says so.
//!
//! Checking costs one comparison per known runner while nobody's lease has run out; only a
//! lapsed runner that holds jobs makes it look at the jobs.

use super::{WorkflowSched, NO_HOLDER, ORPHANS};
use crate::api::HeldJob;
use crate::changes::{Changes, Event, EventKind, WorkflowState};
use crate::ids::{RunnerId, Timestamp};
use crate::model::JobStatus;
use crate::units::format_duration;
use std::time::Duration;

/// How long a runner's silence is tolerated, and how often a job may be lost with its runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// A runner not heard from for this long loses its jobs.
    pub lease: Duration,
    /// A job lost more often than this in one run is terminated instead of run again.
    pub max_losses: u32,
}

impl LeasePolicy {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_LOSSES: u32 = 3;

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Default for LeasePolicy {
    fn default() -> LeasePolicy {
        LeasePolicy {
            lease: Self::DEFAULT_LEASE,
            max_losses: Self::DEFAULT_MAX_LOSSES,
        }
    }
}

impl WorkflowSched {
    /// A heartbeat from `runner`, which says it holds `held` (claimed, running, or finished with
    /// the report not yet acknowledged). Renews its lease; takes over jobs it lists that were
    /// restored without a known holder. Returns the listed jobs that are no longer its to run
    /// (lost with a lapsed lease, canceled, reset, or unknown): the runner should stop them.
    ///
    /// A job the coordinator gave the runner but that the runner does not list is one whose
    /// claim answer never reached it (the connection or the coordinator died after the commit).
    /// The first heartbeat that misses it only marks it, since the answer may still be on its
    /// way; the next one that misses it loses the job (see [`Self::expire_leases`]).
    pub fn heartbeat(
        &mut self,
        runner: &RunnerId,
        held: &[HeldJob],
        now: Timestamp,
        policy: &LeasePolicy,
    ) -> (Vec<HeldJob>, Changes) {
        self.last_now = now;
        let slot = self.heard_from(runner, now);
        let mut revoked = Vec::new();
        let mut listed = 0u32;
        for h in held {
            let i = h.job_id.index();
            let Some(job) = self.jobs.get(i).copied() else {
                revoked.push(*h);
                continue;
            };
            let current = h.run_id == self.run_id && h.attempt_id == job.attempt;
            let in_flight = matches!(job.status, JobStatus::Pending | JobStatus::Running);
            if current && in_flight {
                if job.holder != slot {
                    self.hold(i, slot);
                }
                self.jobs[i].unlisted = false;
                listed += 1;
            } else if !(h.run_id == self.run_id && h.attempt_id == job.done_attempt) {
                // Not its report waiting for an acknowledgement either.
                revoked.push(*h);
            }
        }
        let mut changes = Changes::default();
        if self.runners[slot as usize].held > listed {
            let listed: std::collections::HashSet<usize> =
                held.iter().map(|h| h.job_id.index()).collect();
            for i in 0..self.jobs.len() {
                if self.jobs[i].holder != slot || listed.contains(&i) {
                    continue;
                }
                if self.jobs[i].unlisted {
                    let why =
                        format!("runner {runner} does not have it (its claim answer was lost)");
                    self.lose(i, now, policy, &why, &mut changes);
                } else {
                    self.jobs[i].unlisted = true;
                }
            }
            self.check_complete(now, &mut changes);
        }
        (revoked, changes)
    }

    /// Gives every runner `by` more time: the coordinator itself could not hear anyone for that
    /// long (a stalled disk, a paused process), which must not count against the runners.
    pub fn extend_leases(&mut self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        for r in &mut self.runners {
            r.heard = Timestamp(r.heard.0.saturating_add(ms));
        }
    }

    /// When the next lease runs out, if any runner holds jobs.
    pub fn next_lease_expiry(&self, policy: &LeasePolicy) -> Option<Timestamp> {
        self.runners
            .iter()
            .filter(|r| r.held > 0)
            .map(|r| Timestamp(r.heard.0.saturating_add(policy.lease_ms())))
            .min()
    }

    /// Takes the jobs of every runner whose lease ran out by `now` away from it: back to ready
    /// with a new attempt, or terminated when lost more than `policy.max_losses` times. Each
    /// loss is recorded as an event.
    pub fn expire_leases(&mut self, now: Timestamp, policy: &LeasePolicy) -> Changes {
        self.last_now = now;
        let mut changes = Changes::default();
        let lapsed: Vec<bool> = self
            .runners
            .iter()
            .map(|r| r.held > 0 && r.heard.0.saturating_add(policy.lease_ms()) <= now.0)
            .collect();
        if !lapsed.contains(&true) {
            return changes;
        }
        for i in 0..self.jobs.len() {
            let holder = self.jobs[i].holder;
            if holder != NO_HOLDER && lapsed[holder as usize] {
                let why = if holder == ORPHANS {
                    "no runner has claimed it since the server restarted".to_string()
                } else {
                    format!(
                        "runner {} was not heard from for {}",
                        self.runners[holder as usize].id,
                        format_duration(policy.lease)
                    )
                };
                self.lose(i, now, policy, &why, &mut changes);
            }
        }
        self.check_complete(now, &mut changes);
        changes
    }

    /// Job `i`, pending or running, is lost for the reason `why`.
    fn lose(
        &mut self,
        i: usize,
        now: Timestamp,
        policy: &LeasePolicy,
        why: &str,
        changes: &mut Changes,
    ) {
        let lost_attempt = self.jobs[i].attempt;
        self.jobs[i].attempt += 1;
        self.jobs[i].losses += 1;
        self.jobs[i].unlisted = false;
        let losses = self.jobs[i].losses;
        let name = &self.def.jobs[i].name;
        let job = crate::ids::JobId::from_index(i);
        let (status, fate) = if self.state != WorkflowState::Active {
            (
                JobStatus::Terminated,
                "terminated (the workflow is no longer active)".to_string(),
            )
        } else if losses > policy.max_losses {
            (
                JobStatus::Terminated,
                format!(
                    "terminated after {losses} losses (at most {} allowed)",
                    policy.max_losses
                ),
            )
        } else {
            (
                JobStatus::Ready,
                format!("ready again as attempt {}", lost_attempt + 1),
            )
        };
        changes.events.push(Event {
            time: now,
            kind: EventKind::JobLost,
            job: Some(job),
            message: format!("job {name} ({job}) attempt {lost_attempt} lost: {why}; {fate}"),
        });
        self.set(i, status, changes);
        if status == JobStatus::Terminated {
            self.release_dependents(i, changes);
        }
    }
}
