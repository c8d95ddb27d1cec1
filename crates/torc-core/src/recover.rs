//! Recovery: which jobs of a run to give more memory or more time, read from their results.
//!
//! A job whose last attempt of the run was killed for its memory gets its memory raised; one
//! stopped for time (its `timeout`, or its allocation's end) gets its runtime (and timeout)
//! raised. Nothing else is touched: jobs that failed on their own are the user's to look at.
//! Applying the plan (a [`crate::sched::WorkflowSched::scale_job_resources`] per job, then a
//! failed-only reset) is the caller's.

use crate::changes::{EndReason, JobResult};
use crate::ids::JobId;
use crate::model::{JobStatus, WorkflowDef};
use crate::sched::ResourceScale;
use std::collections::BTreeMap;

/// One job to raise, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Raise {
    pub job: JobId,
    /// [`EndReason::Memory`], or one of time ([`EndReason::is_time`]).
    pub reason: EndReason,
    pub scale: ResourceScale,
}

/// The jobs of run `run_id` to raise, in job order: each job's last attempt of the run, when
/// it ended failed or terminated for memory or for time.
pub fn plan(
    results: &[JobResult],
    run_id: u32,
    memory_factor: f64,
    runtime_factor: f64,
) -> Vec<Raise> {
    let mut last: BTreeMap<JobId, &JobResult> = BTreeMap::new();
    for r in results.iter().filter(|r| r.run_id == run_id) {
        let slot = last.entry(r.job).or_insert(r);
        if r.attempt_id >= slot.attempt_id {
            *slot = r;
        }
    }
    last.into_values()
        .filter(|r| matches!(r.status, JobStatus::Failed | JobStatus::Terminated))
        .filter_map(|r| {
            let reason = r.end_reason?;
            let scale = match reason {
                EndReason::Memory => ResourceScale {
                    memory_factor: Some(memory_factor),
                    runtime_factor: None,
                },
                _ if reason.is_time() => ResourceScale {
                    memory_factor: None,
                    runtime_factor: Some(runtime_factor),
                },
                _ => return None,
            };
            Some(Raise {
                job: r.job,
                reason,
                scale,
            })
        })
        .collect()
}

/// The Slurm schedulers whose allocations the raised jobs need, with those jobs: where a
/// recovery would submit allocations again.
pub fn schedulers_of(def: &WorkflowDef, raised: &[Raise]) -> BTreeMap<String, Vec<JobId>> {
    let mut out: BTreeMap<String, Vec<JobId>> = BTreeMap::new();
    for r in raised {
        if let Some(s) = def.job(r.job).and_then(|j| j.scheduler.as_ref()) {
            out.entry(s.clone()).or_default().push(r.job);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Timestamp;
    use crate::model::JobDef;

    fn result(job: u32, run_id: u32, attempt_id: u32, status: JobStatus) -> JobResult {
        JobResult {
            job: JobId(job),
            run_id,
            attempt_id,
            runner: None,
            return_code: 1,
            status,
            start_time: Timestamp(0),
            end_time: Timestamp(1),
            peak_memory_bytes: None,
            avg_memory_bytes: None,
            peak_cpu_percent: None,
            avg_cpu_percent: None,
            end_reason: None,
            message: None,
        }
    }

    fn ended(mut r: JobResult, reason: EndReason) -> JobResult {
        r.end_reason = Some(reason);
        r
    }

    #[test]
    fn raises_memory_kills_and_time_stops_of_the_run_only() {
        let results = vec![
            ended(result(1, 2, 1, JobStatus::Failed), EndReason::Memory),
            ended(result(2, 2, 1, JobStatus::Terminated), EndReason::Timeout),
            ended(
                result(3, 2, 1, JobStatus::Terminated),
                EndReason::AllocationEnd,
            ),
            // Failed on its own: left alone.
            result(4, 2, 1, JobStatus::Failed),
            // Stopped by a shutdown: not for lack of anything.
            ended(result(5, 2, 1, JobStatus::Terminated), EndReason::Shutdown),
            // Killed for memory, then retried and completed: nothing to do.
            ended(result(6, 2, 1, JobStatus::Failed), EndReason::Memory),
            result(6, 2, 2, JobStatus::Completed),
            // An earlier run's.
            ended(result(7, 1, 1, JobStatus::Failed), EndReason::Memory),
        ];
        let raised = plan(&results, 2, 1.5, 2.0);
        let got: Vec<(u32, EndReason, Option<f64>, Option<f64>)> = raised
            .iter()
            .map(|r| {
                (
                    r.job.0,
                    r.reason,
                    r.scale.memory_factor,
                    r.scale.runtime_factor,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, EndReason::Memory, Some(1.5), None),
                (2, EndReason::Timeout, None, Some(2.0)),
                (3, EndReason::AllocationEnd, None, Some(2.0)),
            ]
        );
        let mut def = WorkflowDef {
            jobs: (1..=3).map(|i| JobDef::new(format!("j{i}"), "x")).collect(),
            ..WorkflowDef::default()
        };
        def.jobs[0].scheduler = Some("big".into());
        def.jobs[2].scheduler = Some("big".into());
        let s = schedulers_of(&def, &raised);
        assert_eq!(s.get("big"), Some(&vec![JobId(1), JobId(3)]));
        assert_eq!(s.len(), 1);
    }
}
