//! Reports: flushing starts and completions, and what the acknowledgement says.

use super::{
    backoff, EventLoop, ERROR_BACKOFF, HARD_STOP_REPORT_ATTEMPTS, START_REPORT_DELAY,
    STOPPING_REPORT_ATTEMPTS,
};
use crate::error::RunnerError;
use std::sync::Arc;
use tokio::time::Instant;
use torc_core::api::{
    CompletionOutcome, Coordinator, CoordinatorError, ReportBatch, ReportResponse,
};
use tracing::{debug, error, warn};

impl<C: Coordinator> EventLoop<C> {
    pub(super) fn pump_reports(&mut self, now: Instant) {
        if self.report.is_some() || self.reports_closed {
            return;
        }
        let batch = match &self.unacked {
            Some(batch) => {
                if self.report_not_before.is_some_and(|t| t > now) {
                    return;
                }
                batch.clone()
            }
            None => {
                let starts_due = self
                    .first_start_at
                    .is_some_and(|t| now >= t + START_REPORT_DELAY)
                    || self.stopping.is_some()
                    || self.workflow_state.is_done();
                if self.completions.is_empty() && (self.starts.is_empty() || !starts_due) {
                    return;
                }
                let batch = ReportBatch {
                    workflow_id: self.cfg.workflow_id,
                    runner_id: self.cfg.runner_id.clone(),
                    starts: std::mem::take(&mut self.starts),
                    completions: std::mem::take(&mut self.completions),
                };
                self.first_start_at = None;
                self.unacked = Some(batch.clone());
                batch
            }
        };
        debug!(
            starts = batch.starts.len(),
            completions = batch.completions.len(),
            "reporting"
        );
        let coord = Arc::clone(&self.coord);
        self.report = Some(Box::pin(async move { coord.report(batch).await }));
    }

    pub(super) fn on_report(&mut self, res: Result<ReportResponse, CoordinatorError>) {
        let Some(batch) = self.unacked.take() else {
            return;
        };
        match res {
            Ok(resp) => {
                self.report_failures = 0;
                self.report_not_before = None;
                if resp.outcomes.len() != batch.completions.len() {
                    warn!(
                        sent = batch.completions.len(),
                        answered = resp.outcomes.len(),
                        "report answered with a different number of outcomes"
                    );
                }
                for (c, outcome) in batch.completions.iter().zip(&resp.outcomes) {
                    if let CompletionOutcome::Refused { reason } = outcome {
                        warn!(job = c.job_id.0, attempt = c.attempt_id, %reason, "completion refused");
                        self.counts.refused += 1;
                    }
                }
                self.counts.reported += batch.completions.len() as u64;
                // The commit may have unblocked jobs: skip any idle back-off.
                if self.claim_failures == 0 {
                    self.claim_not_before = None;
                    self.empty_claims = 0;
                }
                self.observe_state(resp.workflow_state);
            }
            Err(e) if e.is_transient() => {
                self.report_failures += 1;
                let limit = if self.hard_stop {
                    HARD_STOP_REPORT_ATTEMPTS
                } else if self.stopping.is_some() {
                    STOPPING_REPORT_ATTEMPTS
                } else {
                    u32::MAX
                };
                if self.report_failures >= limit {
                    let completions = batch.completions.len() + self.completions.len();
                    error!(error = %e, completions, "giving up on reports while stopping");
                    self.reports_closed = true;
                    if self.error.is_none() {
                        self.error = Some(RunnerError::ReportsUndelivered {
                            completions,
                            source: e,
                        });
                    }
                    return;
                }
                let delay = backoff(self.report_failures, ERROR_BACKOFF);
                warn!(error = %e, attempt = self.report_failures, ?delay, "report failed; sending it again");
                self.report_not_before = Some(Instant::now() + delay);
                self.unacked = Some(batch);
            }
            Err(source) => {
                self.reports_closed = true;
                let completions = batch.completions.len();
                self.fail(RunnerError::ReportRejected {
                    completions,
                    source,
                });
            }
        }
    }
}
