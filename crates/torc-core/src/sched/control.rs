//! A workflow's life: evaluating fresh jobs, cancel, reset and resume.

use super::*;

impl WorkflowSched {
    /// Evaluates every uninitialized job: ready when all its dependencies finished, canceled
    /// when one of them failed and it asks for that, blocked otherwise. Also marks the workflow
    /// complete when nothing is left to run.
    pub fn initialize(&mut self, now: Timestamp) -> Changes {
        self.last_now = now;
        let mut changes = Changes::default();
        self.fire_start(now, &mut changes);
        let fresh: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].status == JobStatus::Uninitialized)
            .collect();
        // First give every fresh job its exact count, counting fresh jobs as unfinished...
        let mut cancel_now = Vec::new();
        for &i in &fresh {
            let unfinished = self.count_unfinished_deps(i);
            self.jobs[i].unfinished = unfinished;
            self.set_raw(i, JobStatus::Blocked);
            let failed_dep = self.def.jobs[i]
                .depends_on
                .iter()
                .any(|d| self.jobs[d.index()].status.is_blocking_failure());
            if failed_dep && self.def.jobs[i].cancel_on_blocking_job_failure {
                cancel_now.push(i);
            }
        }
        // ...then release what can go. A cascade can only lower counts of still-blocked jobs.
        for &i in &cancel_now {
            if self.jobs[i].status == JobStatus::Blocked {
                self.finish_blocked_as_canceled(i, &mut changes);
            }
        }
        for &i in &fresh {
            match self.jobs[i].status {
                JobStatus::Blocked if self.jobs[i].unfinished == 0 => {
                    self.set(i, JobStatus::Ready, &mut changes)
                }
                JobStatus::Blocked => self.record_state(i, &mut changes),
                _ => {}
            }
        }
        self.check_complete(now, &mut changes);
        changes
    }

    /// Cancels the workflow: nothing more is claimed; uninitialized, blocked, ready and pending
    /// jobs are canceled; running jobs are left to their runners, which terminate them.
    pub fn cancel(&mut self, now: Timestamp) -> Changes {
        self.last_now = now;
        let mut changes = Changes::default();
        if self.state == WorkflowState::Canceled {
            return changes;
        }
        self.ready.clear();
        for i in 0..self.jobs.len() {
            if matches!(
                self.jobs[i].status,
                JobStatus::Uninitialized
                    | JobStatus::Blocked
                    | JobStatus::Ready
                    | JobStatus::Pending
            ) {
                self.set(i, JobStatus::Canceled, &mut changes);
            }
        }
        self.state = WorkflowState::Canceled;
        changes.workflow = Some(WorkflowChange {
            state: self.state,
            run_id: self.run_id,
        });
        changes.events.push(Event {
            time: now,
            kind: EventKind::WorkflowCanceled,
            job: None,
            message: "workflow canceled".into(),
        });
        changes
    }

    /// Resets jobs for a new run (`run_id` + 1): with `failed_only`, the failed, canceled,
    /// terminated and pending-failed jobs and everything downstream of them; else every job.
    /// Completed jobs outside that set keep their state. Refused while jobs are in flight.
    pub fn reset(&mut self, failed_only: bool, now: Timestamp) -> Result<Changes, SchedError> {
        self.last_now = now;
        let in_flight = self.count(JobStatus::Pending) + self.count(JobStatus::Running);
        if in_flight > 0 {
            return Err(SchedError::JobsInFlight {
                workflow: self.id,
                running: in_flight,
            });
        }
        let seeds: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| {
                !failed_only
                    || matches!(
                        self.jobs[i].status,
                        JobStatus::Failed
                            | JobStatus::Canceled
                            | JobStatus::Terminated
                            | JobStatus::PendingFailed
                    )
            })
            .collect();
        let affected = self.downstream_closure(&seeds);
        self.run_id += 1;
        self.rearm_complete();
        let mut changes = Changes::default();
        self.ready.clear();
        for (i, &hit) in affected.iter().enumerate() {
            self.jobs[i].done_attempt = 0;
            if hit {
                self.jobs[i].attempt = 1;
                self.jobs[i].losses = 0;
                self.set_raw(i, JobStatus::Uninitialized);
            } else if self.jobs[i].status == JobStatus::Ready {
                self.ready.push(i as u32);
            }
        }
        self.state = WorkflowState::Active;
        changes.workflow = Some(WorkflowChange {
            state: self.state,
            run_id: self.run_id,
        });
        changes.events.push(Event {
            time: now,
            kind: EventKind::WorkflowReset,
            job: None,
            message: format!(
                "{} reset of {} job(s); run {} begins",
                if failed_only { "failed-only" } else { "full" },
                affected.iter().filter(|&&a| a).count(),
                self.run_id
            ),
        });
        changes.extend(self.initialize(now));
        Ok(changes)
    }

    /// Puts jobs interrupted by a stop (terminated, or left pending or running by a crash) and
    /// everything downstream of them back in play, each interrupted job with a new attempt.
    /// This is how a stopped workflow resumes; completed and failed jobs are kept.
    pub fn resume(&mut self, now: Timestamp) -> Changes {
        self.last_now = now;
        let seeds: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| {
                matches!(
                    self.jobs[i].status,
                    JobStatus::Terminated | JobStatus::Pending | JobStatus::Running
                )
            })
            .collect();
        let affected = self.downstream_closure(&seeds);
        for (i, &hit) in affected.iter().enumerate() {
            if !hit {
                continue;
            }
            let status = self.jobs[i].status;
            if matches!(
                status,
                JobStatus::Terminated | JobStatus::Pending | JobStatus::Running
            ) {
                self.jobs[i].attempt += 1;
            }
            if status == JobStatus::Ready {
                continue; // already in the queue
            }
            if status == JobStatus::Completed || status == JobStatus::Failed {
                continue; // ran to an end under its own steam: keep it
            }
            self.unhold(i);
            self.jobs[i].done_attempt = 0;
            self.set_raw(i, JobStatus::Uninitialized);
        }
        let mut changes = Changes::default();
        if self.state == WorkflowState::Complete && self.unfinished_total() > 0 {
            self.state = WorkflowState::Active;
            changes.workflow = Some(WorkflowChange {
                state: self.state,
                run_id: self.run_id,
            });
        }
        changes.extend(self.initialize(now));
        changes
    }

    /// Marks `seeds` and every job downstream of them.
    pub(super) fn downstream_closure(&self, seeds: &[usize]) -> Vec<bool> {
        let mut marked = vec![false; self.jobs.len()];
        let mut stack: Vec<usize> = Vec::new();
        for &s in seeds {
            if !marked[s] {
                marked[s] = true;
                stack.push(s);
            }
        }
        while let Some(i) = stack.pop() {
            for &d in self.dependents_of(i) {
                if !marked[d as usize] {
                    marked[d as usize] = true;
                    stack.push(d as usize);
                }
            }
        }
        marked
    }
}
