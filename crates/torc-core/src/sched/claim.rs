//! Claims: handing ready jobs to a runner, each with its lease, never to two runners.

use super::*;
use crate::api::JobLimits;

impl WorkflowSched {
    /// Claims up to `limit` ready jobs for `runner`: with `free`, only jobs that fit together in
    /// those resources; without, any. Claimed jobs go from ready to pending, held by `runner`
    /// (which counts as hearing from it at `now`).
    pub fn claim(
        &mut self,
        runner: &RunnerId,
        limit: u32,
        free: Option<&FreeResources>,
        now: Timestamp,
    ) -> (Vec<ClaimedJob>, Changes) {
        self.claim_tagged(runner, limit, free, None, now)
    }

    /// [`Self::claim`], taking only jobs that `tags` allow (all jobs when `None`), and never more
    /// than the workflow's cap on jobs in flight lets out.
    pub fn claim_tagged(
        &mut self,
        runner: &RunnerId,
        limit: u32,
        free: Option<&FreeResources>,
        tags: Option<&RunnerTags>,
        now: Timestamp,
    ) -> (Vec<ClaimedJob>, Changes) {
        self.last_now = now;
        let mut changes = Changes::default();
        let holder = self.heard_from(runner, now);
        let limit = u64::from(limit).min(self.room());
        if self.state != WorkflowState::Active || limit == 0 || self.ready.len() == 0 {
            return (Vec::new(), changes);
        }
        let eligible = tags.map(|t| self.ready.eligible(&t.tags, t.run_untagged));
        let mut fit = free.map(|f| Fit {
            cpus: f.num_cpus,
            memory_bytes: f.memory_bytes,
            gpus: f.num_gpus,
            time_left: f.time_left,
        });
        let taken = self
            .ready
            .take(limit as usize, fit.as_mut(), eligible.as_ref());
        if taken.is_empty() {
            return (Vec::new(), changes);
        }
        let mut claimed = Vec::with_capacity(taken.len());
        for i in taken {
            let i = i as usize;
            self.set(i, JobStatus::Pending, &mut changes);
            self.hold(i, holder);
            claimed.push(self.claimed_job(i));
        }
        (claimed, changes)
    }

    /// The slot of `runner`, added if new, marked as heard from at `now`.
    pub(super) fn heard_from(&mut self, runner: &RunnerId, now: Timestamp) -> u32 {
        let slot = match self.runner_index.get(runner) {
            Some(&slot) => slot,
            None => {
                let slot = self.runners.len() as u32;
                self.runners.push(RunnerRt {
                    id: runner.clone(),
                    heard: now,
                    held: 0,
                });
                self.runner_index.insert(runner.clone(), slot);
                slot
            }
        };
        let rt = &mut self.runners[slot as usize];
        rt.heard = rt.heard.max(now);
        slot
    }

    /// Makes `slot` the holder of job `i` (which must be pending or running).
    pub(super) fn hold(&mut self, i: usize, slot: u32) {
        self.unhold(i);
        self.jobs[i].holder = slot;
        self.runners[slot as usize].held += 1;
    }

    /// Job `i` is no longer held by anyone.
    pub(super) fn unhold(&mut self, i: usize) {
        let holder = std::mem::replace(&mut self.jobs[i].holder, NO_HOLDER);
        self.jobs[i].unlisted = false;
        if let Some(rt) = self.runners.get_mut(holder as usize) {
            rt.held -= 1;
        }
    }

    pub(super) fn claimed_job(&self, i: usize) -> ClaimedJob {
        let job = &self.def.jobs[i];
        ClaimedJob {
            workflow_id: self.id,
            job_id: JobId::from_index(i),
            run_id: self.run_id,
            attempt_id: self.jobs[i].attempt,
            name: job.name.clone(),
            command: job.command.clone(),
            invocation_script: job.invocation_script.clone(),
            resources: self.def.resources_of(job),
            supports_termination: job.supports_termination,
            timeout: job.timeout,
            env: job.env.clone(),
            stdio: *job.stdio_in(&self.def),
            timeout_exit_code: self.def.execution.timeout_exit_code,
            failure_handler: job
                .failure_handler
                .and_then(|h| self.def.failure_handlers.get(h as usize))
                .cloned(),
            time_series: self.def.time_series(),
            limits: JobLimits::from_config(
                &self.def.execution,
                job.resource_requirement
                    .and_then(|r| self.def.resource_requirements.get(r as usize))
                    .map(|r| r.resources.memory_bytes),
            ),
        }
    }
}
