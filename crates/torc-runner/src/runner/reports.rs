//! Reports: flushing starts and completions, and what the acknowledgement says.

use super::{
    backoff, EventLoop, ERROR_BACKOFF, HARD_STOP_REPORT_ATTEMPTS, REPORT_COALESCE,
    START_REPORT_DELAY, STOPPING_REPORT_ATTEMPTS,
};
use crate::error::RunnerError;
use std::sync::Arc;
use tokio::time::Instant;
use torc_core::api::{
    CompletionOutcome, Coordinator, CoordinatorError, ReportBatch, ReportResponse,
};
use torc_core::WorkflowId;
use tracing::{debug, error, warn};

/// The answer to each batch of a round of reports, in order. A transient error ends the round
/// (every batch is sent again: reports are idempotent); a refusal concerns its batch alone.
pub(super) type Answers = Vec<Result<ReportResponse, CoordinatorError>>;

/// Whether completions queued since `first` go now. They wait (up to [`REPORT_COALESCE`]) for
/// company only while the runner has prefetched jobs in hand and nothing asks for haste
/// (`urgent`: nothing queued here, so this runner waits for what the completions unblock; a
/// claim goes out now, and the report shares its commit; it is stopping, or the workflow is
/// done).
fn completions_due(now: Instant, first: Option<Instant>, urgent: bool) -> bool {
    urgent || first.is_none_or(|t| now >= t + REPORT_COALESCE)
}

impl<C: Coordinator> EventLoop<C> {
    /// Sends the report due now, if one is; whether it did.
    pub(super) fn pump_reports(&mut self, now: Instant, claiming: bool) -> bool {
        if self.report.is_some() || self.reports_closed {
            return false;
        }
        let batches = match &self.unacked {
            Some(batches) => {
                if self.report_not_before.is_some_and(|t| t > now) {
                    return false;
                }
                batches.clone()
            }
            None => {
                let flush_all = self.stopping.is_some() || self.workflow_state.is_done();
                let starts_due = flush_all
                    || self
                        .first_start_at
                        .is_some_and(|t| now >= t + START_REPORT_DELAY);
                let completions_due = !self.completions.is_empty()
                    && completions_due(
                        now,
                        self.first_completion_at,
                        flush_all || claiming || self.queued.is_empty(),
                    );
                if !completions_due && (self.starts.is_empty() || !starts_due) {
                    return false;
                }
                let batches = self.take_batches();
                self.first_start_at = None;
                self.first_completion_at = None;
                self.unacked = Some(batches.clone());
                batches
            }
        };
        debug!(
            batches = batches.len(),
            completions = batches.iter().map(|b| b.completions.len()).sum::<usize>(),
            "reporting"
        );
        let coord = Arc::clone(&self.coord);
        // One batch per workflow (a shared runner may hold several), sent one after the other.
        // A transient failure sends them all again: reports are idempotent.
        self.report = Some(Box::pin(async move {
            let mut answers = Vec::with_capacity(batches.len());
            for batch in batches {
                match coord.report(batch).await {
                    Err(e) if e.is_transient() => return Err(e),
                    answer => answers.push(answer),
                }
            }
            Ok(answers)
        }));
        true
    }

    /// The starts and completions waiting, as one batch per workflow.
    fn take_batches(&mut self) -> Vec<ReportBatch> {
        let mut batches: Vec<ReportBatch> = Vec::new();
        let runner = &self.cfg.runner_id;
        let batch_of = |batches: &mut Vec<ReportBatch>, id: WorkflowId| -> usize {
            match batches.iter().position(|b| b.workflow_id == id) {
                Some(i) => i,
                None => {
                    batches.push(ReportBatch {
                        workflow_id: id,
                        runner_id: runner.clone(),
                        starts: Vec::new(),
                        completions: Vec::new(),
                        samples: Vec::new(),
                    });
                    batches.len() - 1
                }
            }
        };
        for (id, start) in std::mem::take(&mut self.starts) {
            let i = batch_of(&mut batches, id);
            batches[i].starts.push(start);
        }
        for (id, completion) in std::mem::take(&mut self.completions) {
            let i = batch_of(&mut batches, id);
            batches[i].completions.push(completion);
        }
        // Samples ride along with the reports that go anyway; they never start one.
        for (id, sample) in self.samples.take() {
            let i = batch_of(&mut batches, id);
            batches[i].samples.push(sample);
        }
        batches
    }

    pub(super) fn on_report(&mut self, res: Result<Answers, CoordinatorError>) {
        let Some(batches) = self.unacked.take() else {
            return;
        };
        match res {
            Ok(answers) => {
                self.report_failures = 0;
                self.report_not_before = None;
                for (batch, answer) in batches.iter().zip(answers) {
                    let resp = match answer {
                        Ok(resp) => resp,
                        Err(source) => {
                            self.refused_batch(batch, source);
                            continue;
                        }
                    };
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
                    self.observe_workflow(batch.workflow_id, resp.workflow_state);
                }
                // The commit may have unblocked jobs: skip any idle back-off.
                if self.claim_failures == 0 {
                    self.claim_not_before = None;
                    self.empty_claims = 0;
                }
            }
            // Only a transient error ends a round (see `Answers`).
            Err(e) => {
                self.report_failures += 1;
                let limit = if self.hard_stop {
                    HARD_STOP_REPORT_ATTEMPTS
                } else if self.stopping.is_some() {
                    STOPPING_REPORT_ATTEMPTS
                } else {
                    u32::MAX
                };
                let sent: usize = batches.iter().map(|b| b.completions.len()).sum();
                if self.report_failures >= limit {
                    let completions = sent + self.completions.len();
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
                self.unacked = Some(batches);
            }
        }
    }

    /// The coordinator refused a whole batch. A runner dedicated to the workflow stops; a
    /// shared runner drops that workflow's jobs and serves the others.
    fn refused_batch(&mut self, batch: &ReportBatch, source: CoordinatorError) {
        let completions = batch.completions.len();
        if self.cfg.shared {
            self.counts.refused += completions as u64;
            self.drop_workflow(batch.workflow_id, &source);
            return;
        }
        self.reports_closed = true;
        self.fail(RunnerError::ReportRejected {
            completions,
            source,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_wait_for_company_only_with_work_in_hand_and_never_long() {
        let t = Instant::now();
        let soon = t + REPORT_COALESCE / 2;
        let late = t + REPORT_COALESCE;
        // Work in hand: the first completion waits, until the coalescing delay is over.
        assert!(!completions_due(soon, Some(t), false));
        assert!(completions_due(late, Some(t), false));
        // Nothing queued (or stopping, or done): at once.
        assert!(completions_due(t, Some(t), true));
        // Queued without a time (a job that could not start, or was abandoned unstarted):
        // never held.
        assert!(completions_due(t, None, false));
    }
}
