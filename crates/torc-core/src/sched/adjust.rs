//! Changing what one job needs: its memory and runtime (and its `timeout`), scaled by factors,
//! as recovery does for jobs killed for memory or stopped for time.
//!
//! A requirement named by other jobs too is never changed for them: the job gets a copy of its
//! own. The ready queue's classes come from the definition, so they are rebuilt (ready jobs
//! keep their places, class by class).

use super::*;
use crate::model::{ResourceRequirement, Resources};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// By how much to raise a job's needs; `None` leaves that need as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceScale {
    /// Memory × this, rounded up to a whole MiB.
    #[serde(default)]
    pub memory_factor: Option<f64>,
    /// Runtime (and the job's `timeout`, if it has one) × this, rounded up to a whole second.
    #[serde(default)]
    pub runtime_factor: Option<f64>,
}

/// What [`WorkflowSched::scale_job_resources`] changed, for the store to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementChange {
    pub job: JobId,
    /// The job's resources before and after.
    pub before: Resources,
    pub after: Resources,
    /// The requirement the job names now (index into the definition's list), as it is now;
    /// `None` when the job names none (only its timeout could change).
    pub requirement: Option<(u32, ResourceRequirement)>,
    /// The requirement is a new one, a copy for this job alone (its old one was shared).
    pub created: bool,
    /// The job's `timeout`, before and after.
    #[serde(with = "crate::model::opt_duration_secs")]
    pub timeout_before: Option<Duration>,
    #[serde(with = "crate::model::opt_duration_secs")]
    pub timeout: Option<Duration>,
}

/// Why a job's needs cannot be changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdjustError {
    #[error("workflow {workflow} has no job {job}")]
    NoSuchJob { workflow: WorkflowId, job: JobId },
    #[error(
        "job {job} of workflow {workflow} is {status}: change its resources once it has ended"
    )]
    InFlight {
        workflow: WorkflowId,
        job: JobId,
        status: JobStatus,
    },
    #[error("the {what} factor must be a finite number above 0, not {factor}")]
    BadFactor { what: &'static str, factor: f64 },
    #[error(
        "job {job} names no resource requirement, so its memory is neither limited nor changeable"
    )]
    NoRequirement { job: JobId },
    #[error("job {job}'s {what} would overflow when scaled by {factor}")]
    Overflow {
        job: JobId,
        what: &'static str,
        factor: f64,
    },
}

const MIB: u64 = 1 << 20;

fn check(what: &'static str, factor: Option<f64>) -> Result<(), AdjustError> {
    match factor {
        Some(f) if !(f.is_finite() && f > 0.0) => Err(AdjustError::BadFactor { what, factor: f }),
        _ => Ok(()),
    }
}

fn scale_memory(bytes: u64, factor: f64) -> Option<u64> {
    let mib = (bytes as f64 * factor / MIB as f64).ceil();
    (mib.is_finite() && mib < (u64::MAX / MIB) as f64).then(|| (mib as u64).max(1) * MIB)
}

fn scale_duration(d: Duration, factor: f64) -> Option<Duration> {
    let secs = (d.as_secs_f64() * factor).ceil().max(1.0);
    Duration::try_from_secs_f64(secs).ok()
}

impl WorkflowSched {
    /// Scales job `job`'s memory and runtime (and timeout), as `scale` says. Refused for a job
    /// pending or running (it runs with what it was given).
    pub fn scale_job_resources(
        &mut self,
        job: JobId,
        scale: ResourceScale,
    ) -> Result<RequirementChange, AdjustError> {
        check("memory", scale.memory_factor)?;
        check("runtime", scale.runtime_factor)?;
        let i = job.index();
        let Some(rt) = self.jobs.get(i) else {
            return Err(AdjustError::NoSuchJob {
                workflow: self.id,
                job,
            });
        };
        if matches!(rt.status, JobStatus::Pending | JobStatus::Running) {
            return Err(AdjustError::InFlight {
                workflow: self.id,
                job,
                status: rt.status,
            });
        }
        let jdef = &self.def.jobs[i];
        let current = jdef.resource_requirement;
        if current.is_none() && scale.memory_factor.is_some() {
            return Err(AdjustError::NoRequirement { job });
        }
        let before = self.def.resources_of(jdef);
        let overflow = |what, factor| AdjustError::Overflow { job, what, factor };
        let mut after = before;
        if let Some(f) = scale.memory_factor {
            after.memory_bytes =
                scale_memory(before.memory_bytes, f).ok_or(overflow("memory", f))?;
        }
        let timeout_before = jdef.timeout;
        let mut timeout = timeout_before;
        if let Some(f) = scale.runtime_factor {
            if current.is_some() {
                after.runtime = scale_duration(before.runtime, f).ok_or(overflow("runtime", f))?;
            }
            if let Some(t) = timeout_before {
                timeout = Some(scale_duration(t, f).ok_or(overflow("timeout", f))?);
            }
        }
        let shared = current.is_some_and(|r| {
            self.def
                .jobs
                .iter()
                .enumerate()
                .any(|(k, j)| k != i && j.resource_requirement == Some(r))
        });
        let job_name = jdef.name.clone();
        let def = Arc::make_mut(&mut self.def);
        let requirement = match current {
            None => None,
            Some(r) if !shared => {
                let req = &mut def.resource_requirements[r as usize];
                req.resources = after;
                Some((r, req.clone()))
            }
            Some(r) => {
                let base = format!(
                    "{}_{}",
                    def.resource_requirements[r as usize].name, job_name
                );
                let taken = |n: &str| def.resource_requirements.iter().any(|q| q.name == n);
                let mut name = base.clone();
                let mut k = 2;
                while taken(&name) {
                    name = format!("{base}_{k}");
                    k += 1;
                }
                let req = ResourceRequirement {
                    name,
                    resources: after,
                };
                let index = def.resource_requirements.len() as u32;
                def.resource_requirements.push(req.clone());
                def.jobs[i].resource_requirement = Some(index);
                Some((index, req))
            }
        };
        def.jobs[i].timeout = timeout;
        self.rebuild_ready_queue();
        Ok(RequirementChange {
            job,
            before,
            after,
            requirement,
            created: shared,
            timeout_before,
            timeout,
        })
    }

    /// Rebuilds the ready queue from the definition, with the ready jobs in it again.
    fn rebuild_ready_queue(&mut self) {
        self.ready = ReadyQueue::new(&self.def);
        for i in 0..self.jobs.len() {
            if self.jobs[i].status == JobStatus::Ready {
                self.ready.push(i as u32);
            }
        }
        self.ready_generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rounds_up() {
        assert_eq!(scale_memory(50 * MIB, 1.5), Some(75 * MIB));
        assert_eq!(scale_memory(1, 1.5), Some(MIB));
        assert_eq!(scale_memory(u64::MAX, 2.0), None);
        assert_eq!(
            scale_duration(Duration::from_secs(10), 1.25),
            Some(Duration::from_secs(13))
        );
        assert_eq!(
            scale_duration(Duration::from_millis(10), 1.5),
            Some(Duration::from_secs(1))
        );
        assert!(check("memory", Some(0.0)).is_err());
        assert!(check("memory", Some(f64::NAN)).is_err());
        assert!(check("memory", Some(1.5)).is_ok());
        assert!(check("memory", None).is_ok());
    }
}
