//! Changing one job's needs, and the limits a claimed job carries.

use super::*;
use crate::model::{ExecutionConfig, ExecutionMode};
use crate::sched::{AdjustError, ResourceScale};

const MIB: u64 = 1 << 20;

/// j1 and j2 share `shared` (50 MiB, 10 s); j3 alone names `own` (100 MiB); j4 names none but
/// has a 20 s timeout; j5 depends on j1.
fn def() -> WorkflowDef {
    let mut def = def_with_edges(5, &[(5, 1)]);
    let res = |memory_bytes, secs| Resources {
        memory_bytes,
        runtime: Duration::from_secs(secs),
        ..Resources::DEFAULT_JOB
    };
    def.resource_requirements = vec![
        ResourceRequirement {
            name: "shared".into(),
            resources: res(50 * MIB, 10),
        },
        ResourceRequirement {
            name: "own".into(),
            resources: res(100 * MIB, 10),
        },
    ];
    def.jobs[0].resource_requirement = Some(0);
    def.jobs[1].resource_requirement = Some(0);
    def.jobs[2].resource_requirement = Some(1);
    def.jobs[3].timeout = Some(Duration::from_secs(20));
    def
}

fn memory(f: f64) -> ResourceScale {
    ResourceScale {
        memory_factor: Some(f),
        runtime_factor: None,
    }
}

#[test]
fn a_shared_requirement_is_copied_for_the_one_job() {
    let mut s = sched(def());
    let change = s.scale_job_resources(JobId(1), memory(1.5)).unwrap();
    assert!(change.created);
    let (index, req) = change.requirement.clone().unwrap();
    assert_eq!((index, req.name.as_str()), (2, "shared_j1"));
    assert_eq!(change.before.memory_bytes, 50 * MIB);
    assert_eq!(change.after.memory_bytes, 75 * MIB);
    let d = s.def();
    assert_eq!(d.jobs[0].resource_requirement, Some(2));
    assert_eq!(d.resources_of(&d.jobs[0]).memory_bytes, 75 * MIB);
    assert_eq!(
        d.resources_of(&d.jobs[1]).memory_bytes,
        50 * MIB,
        "the other job keeps the shared requirement"
    );
    // Claims see the new needs and the new limit; j2 still the old.
    let jobs = claim_all(&mut s);
    let limit = |name: &str| {
        let j = jobs.iter().find(|j| j.name == name).unwrap();
        (j.resources.memory_bytes, j.limits.memory_bytes)
    };
    assert_eq!(limit("j1"), (75 * MIB, Some(75 * MIB)));
    assert_eq!(limit("j2"), (50 * MIB, Some(50 * MIB)));
    assert_eq!(limit("j4").1, None, "no named requirement: not limited");
}

#[test]
fn a_requirement_of_one_job_is_changed_in_place_with_its_runtime() {
    let mut s = sched(def());
    let scale = ResourceScale {
        memory_factor: Some(2.0),
        runtime_factor: Some(1.5),
    };
    let change = s.scale_job_resources(JobId(3), scale).unwrap();
    assert!(!change.created);
    assert_eq!(change.requirement.as_ref().unwrap().0, 1);
    assert_eq!(s.def().resource_requirements.len(), 2);
    let r = s.def().resource_requirements[1].resources;
    assert_eq!(
        (r.memory_bytes, r.runtime),
        (200 * MIB, Duration::from_secs(15))
    );
    assert_eq!(
        s.ready_len(),
        4,
        "ready jobs are still ready after the rebuild"
    );
    assert_eq!(claim_all(&mut s).len(), 4);
}

#[test]
fn a_job_without_a_requirement_gets_only_a_longer_timeout() {
    let mut s = sched(def());
    let time = ResourceScale {
        memory_factor: None,
        runtime_factor: Some(1.5),
    };
    let change = s.scale_job_resources(JobId(4), time).unwrap();
    assert_eq!(change.requirement, None);
    assert_eq!(change.timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.def().jobs[3].timeout, Some(Duration::from_secs(30)));
    assert_eq!(change.after, Resources::DEFAULT_JOB);
    assert!(matches!(
        s.scale_job_resources(JobId(4), memory(1.5)),
        Err(AdjustError::NoRequirement { .. })
    ));
}

#[test]
fn refused_for_jobs_in_flight_missing_jobs_and_bad_factors() {
    let mut s = sched(def());
    let claimed = s.claim(&runner("r"), 1, None, T0).0[0].job_id;
    let before = (**s.def()).clone();
    assert!(matches!(
        s.scale_job_resources(claimed, memory(1.5)),
        Err(AdjustError::InFlight {
            status: JobStatus::Pending,
            ..
        })
    ));
    assert!(matches!(
        s.scale_job_resources(JobId(99), memory(1.5)),
        Err(AdjustError::NoSuchJob { .. })
    ));
    for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        assert!(matches!(
            s.scale_job_resources(JobId(3), memory(bad)),
            Err(AdjustError::BadFactor { .. })
        ));
    }
    assert_eq!(**s.def(), before, "nothing changed");
}

#[test]
fn claimed_jobs_carry_the_workflows_execution_limits() {
    let mut d = def();
    d.execution = ExecutionConfig {
        termination_signal: "SIGUSR1".into(),
        sigterm_lead_seconds: 5,
        oom_exit_code: 99,
        ..ExecutionConfig::default()
    };
    let jobs = claim_all(&mut sched(d.clone()));
    let j1 = jobs.iter().find(|j| j.name == "j1").unwrap();
    assert_eq!(j1.limits.memory_bytes, Some(50 * MIB));
    assert_eq!(j1.limits.termination_signal, 10);
    assert_eq!(j1.limits.sigterm_lead, Duration::from_secs(5));
    assert_eq!(j1.limits.oom_exit_code, 99);
    assert!(j1.limits.staggered_start);
    // No memory limits without limit_resources, nor in slurm mode (Slurm enforces them).
    for execution in [
        ExecutionConfig {
            limit_resources: false,
            ..ExecutionConfig::default()
        },
        ExecutionConfig {
            mode: ExecutionMode::Slurm,
            ..ExecutionConfig::default()
        },
    ] {
        d.execution = execution;
        let jobs = claim_all(&mut sched(d.clone()));
        assert!(jobs.iter().all(|j| j.limits.memory_bytes.is_none()));
    }
}
