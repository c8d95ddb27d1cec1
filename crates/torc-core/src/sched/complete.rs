//! Starts and completions: a finished job's result, its retry, and the jobs it unblocks or
//! cancels, in the same operation.

use super::*;

impl WorkflowSched {
    /// Records that claimed jobs started. Starts for another attempt, or for a job that is not
    /// pending, are ignored (a late start after a completion in the same batch is harmless).
    pub fn start(&mut self, starts: &[StartReport]) -> Changes {
        let mut changes = Changes::default();
        for s in starts {
            let i = s.job_id.index();
            match self.jobs.get(i) {
                Some(job) if job.status == JobStatus::Pending && job.attempt == s.attempt_id => {
                    self.set(i, JobStatus::Running, &mut changes);
                }
                _ => {}
            }
        }
        changes
    }

    /// Applies completion reports in order; returns one outcome per report. Unblocks
    /// dependents at once, applies failure handlers and the failure cascade, and marks the
    /// workflow complete when nothing is left.
    pub fn complete(
        &mut self,
        runner: &RunnerId,
        reports: &[CompletionReport],
        now: Timestamp,
    ) -> (Vec<CompletionOutcome>, Changes) {
        self.last_now = now;
        let mut changes = Changes::default();
        let slot = self.heard_from(runner, now);
        let outcomes = reports
            .iter()
            .map(|r| self.complete_one(slot, r, now, &mut changes))
            .collect();
        self.check_complete(now, &mut changes);
        (outcomes, changes)
    }

    pub(super) fn complete_one(
        &mut self,
        reporter: u32,
        r: &CompletionReport,
        now: Timestamp,
        changes: &mut Changes,
    ) -> CompletionOutcome {
        let i = r.job_id.index();
        let Some(job) = self.jobs.get(i).copied() else {
            return self.refuse(r, now, changes, format!("job {} does not exist", r.job_id));
        };
        if r.run_id == self.run_id && r.attempt_id == job.done_attempt && job.done_attempt > 0 {
            return CompletionOutcome::Accepted {
                status: job.done_status,
            };
        }
        if r.run_id != self.run_id || r.attempt_id != job.attempt {
            let reason = format!(
                "job {} run {} attempt {} is stale: the job is at run {} attempt {}",
                r.job_id, r.run_id, r.attempt_id, self.run_id, job.attempt
            );
            return self.refuse(r, now, changes, reason);
        }
        if !matches!(job.status, JobStatus::Pending | JobStatus::Running) {
            let reason = format!("job {} is {}, not running", r.job_id, job.status);
            return self.refuse(r, now, changes, reason);
        }
        let wdef = Arc::clone(&self.def);
        let def = &wdef.jobs[i];
        let attempt_status = if r.terminated {
            JobStatus::Terminated
        } else if r.return_code == 0 {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        // A job stopped for time (its timeout, or its allocation's end) is retried as a failure
        // with `timeout_exit_code` would be: Torc's handlers match 152 for that. One stopped
        // for any other reason (cancel, shutdown) is not.
        let stopped_for_time = attempt_status == JobStatus::Terminated
            && r.return_code == wdef.execution.timeout_exit_code;
        let retry_rule = (attempt_status == JobStatus::Failed || stopped_for_time)
            .then(|| {
                def.failure_handler
                    .and_then(|h| wdef.failure_handlers.get(h as usize))
                    .and_then(|h| h.rule_for(r.return_code))
            })
            .flatten();
        let retry = retry_rule.is_some_and(|rule| r.attempt_id <= rule.max_retries);
        // The result names the runner that ran the job: its holder, unless nobody known held
        // it (restored after a restart), in which case the reporter ran it.
        let ran_it = if job.holder == ORPHANS || job.holder == NO_HOLDER {
            reporter
        } else {
            job.holder
        };
        let runner_name = self.runners[ran_it as usize].id.clone();
        changes.results.push(JobResult {
            job: r.job_id,
            run_id: r.run_id,
            attempt_id: r.attempt_id,
            runner: Some(runner_name),
            return_code: r.return_code,
            status: attempt_status,
            start_time: r.start_time,
            end_time: r.end_time,
            peak_memory_bytes: r.peak_memory_bytes,
            avg_memory_bytes: r.avg_memory_bytes,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
            end_reason: r.end_reason,
            message: r.message.clone(),
        });
        let new_status = if retry && !r.recovery_failed {
            self.jobs[i].attempt += 1;
            changes.events.push(Event {
                time: now,
                kind: EventKind::JobRetried,
                job: Some(r.job_id),
                message: format!(
                    "{} exited with {}; retrying as attempt {}",
                    def.name,
                    r.return_code,
                    r.attempt_id + 1
                ),
            });
            self.set(i, JobStatus::Ready, changes);
            JobStatus::Ready
        } else {
            if retry {
                changes.events.push(Event {
                    time: now,
                    kind: EventKind::JobRecoveryFailed,
                    job: Some(r.job_id),
                    message: format!("{}: recovery script failed; not retried", def.name),
                });
            }
            self.set(i, attempt_status, changes);
            self.release_dependents(i, changes);
            attempt_status
        };
        self.jobs[i].done_attempt = r.attempt_id;
        self.jobs[i].done_status = new_status;
        CompletionOutcome::Accepted { status: new_status }
    }

    pub(super) fn refuse(
        &self,
        r: &CompletionReport,
        now: Timestamp,
        changes: &mut Changes,
        reason: String,
    ) -> CompletionOutcome {
        changes.events.push(Event {
            time: now,
            kind: EventKind::ReportRefused,
            job: self.jobs.get(r.job_id.index()).map(|_| r.job_id),
            message: reason.clone(),
        });
        CompletionOutcome::Refused { reason }
    }

    /// Job `i` just finished: lower its dependents' counts, readying or canceling them, and
    /// cascade through cancellations (iteratively: chains can be very long).
    pub(super) fn release_dependents(&mut self, i: usize, changes: &mut Changes) {
        let mut stack = vec![i];
        while let Some(done) = stack.pop() {
            let failed = self.jobs[done].status.is_blocking_failure();
            let start = self.dependents_start[done] as usize;
            let end = self.dependents_start[done + 1] as usize;
            for k in start..end {
                let d = self.dependents[k] as usize;
                if self.jobs[d].status != JobStatus::Blocked {
                    continue;
                }
                self.jobs[d].unfinished -= 1;
                if failed && self.def.jobs[d].cancel_on_blocking_job_failure {
                    self.set(d, JobStatus::Canceled, changes);
                    stack.push(d);
                } else if self.jobs[d].unfinished == 0 {
                    self.set(d, JobStatus::Ready, changes);
                }
            }
        }
    }

    pub(super) fn finish_blocked_as_canceled(&mut self, i: usize, changes: &mut Changes) {
        self.set(i, JobStatus::Canceled, changes);
        self.release_dependents(i, changes);
    }

    pub(super) fn check_complete(&mut self, now: Timestamp, changes: &mut Changes) {
        if self.state == WorkflowState::Active && self.unfinished_total() == 0 {
            self.state = WorkflowState::Complete;
            changes.workflow = Some(WorkflowChange {
                state: self.state,
                run_id: self.run_id,
            });
            changes.events.push(Event {
                time: now,
                kind: EventKind::WorkflowCompleted,
                job: None,
                message: self.completion_message(),
            });
            self.fire_complete(now, changes);
        }
    }

    pub(super) fn completion_message(&self) -> String {
        let parts: Vec<String> = JobStatus::ALL
            .into_iter()
            .filter(|&s| self.counts[s as usize] > 0)
            .map(|s| format!("{} {}", self.counts[s as usize], s))
            .collect();
        format!("workflow complete: {}", parts.join(", "))
    }
}
