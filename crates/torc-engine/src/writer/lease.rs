//! The lease clock: runners silent past their lease lose their jobs, and time the writer could
//! not hear anyone is added to every lease.

use super::Writer;
use crate::{now, LEASE_TICK};
use std::time::{Duration, Instant};
use torc_core::sched::LeasePolicy;

/// A batch or commit this slow, or a wake-up this late, means the writer could not hear
/// runners for that long: their leases are extended by as much. A shorter lease counts a
/// shorter time (its check interval) as a stall.
const STALL: Duration = Duration::from_secs(1);

pub(super) fn lease_tick(policy: &LeasePolicy) -> Duration {
    (policy.lease / 20).clamp(Duration::from_millis(10), LEASE_TICK)
}

impl Writer {
    /// The writer could not hear anyone for `deaf` (a slow commit, a late wake-up): when that is
    /// a stall, runners get as much more time on their leases.
    pub(super) fn stalled(&mut self, deaf: Duration) {
        let Some(policy) = self.config.leases else {
            return;
        };
        if deaf < STALL.min(lease_tick(&policy)) {
            return;
        }
        tracing::warn!(
            ?deaf,
            "the writer stalled; extending every runner's lease by as much"
        );
        for sched in self.workflows.values_mut() {
            sched.extend_leases(deaf);
        }
    }

    /// Takes jobs away from runners whose lease ran out, when it is time to look.
    pub(super) fn expire_leases(&mut self) {
        let (Some(policy), Some(due)) = (self.config.leases, self.next_lease_check) else {
            return;
        };
        let t = Instant::now();
        if t < due {
            return;
        }
        self.next_lease_check = Some(t + lease_tick(&policy));
        let stamp = now();
        let mut lost = Vec::new();
        for (id, sched) in &mut self.workflows {
            let changes = sched.expire_leases(stamp, &policy);
            if !changes.is_empty() {
                lost.push((*id, changes));
            }
        }
        for (id, changes) in lost {
            tracing::warn!(workflow = %id, events = changes.events.len(), "runner leases ran out");
            self.record(id, changes);
        }
    }
}
