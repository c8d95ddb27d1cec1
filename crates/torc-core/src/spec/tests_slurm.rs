//! `slurm_schedulers`, `slurm_defaults` and `actions`.

use super::tests::yaml;
use super::tests_torc1x::{errors, has};
use crate::ids::JobId;
use crate::model::{ActionKind, SchedulerType, Trigger};
use crate::spec::SpecErrors;
use std::time::Duration;

#[test]
fn slurm_schedulers_and_defaults() {
    let def = yaml(
        r#"
name: s
slurm_defaults: {account: team, qos: high, mail-type: "END,FAIL", ntasks: 4}
slurm_schedulers:
  - {name: short, partition: debug, walltime: "30:00", mem: 64G, gres: "gpu:2", ntasks_per_node: 8}
  - {name: long, account: own, nodes: 4, walltime: "2-00:00:00", tmp: 100G, extra: "--exclusive", serialize_allocations: true}
  - {name: default}
jobs:
  - {name: a, command: x, scheduler: long}
"#,
    )
    .def;
    let [short, long, default] = &def.slurm_schedulers[..] else {
        panic!("{:?}", def.slurm_schedulers)
    };
    assert_eq!(short.account, "team");
    assert_eq!(short.partition.as_deref(), Some("debug"));
    assert_eq!(
        (short.walltime.as_str(), short.walltime_duration),
        ("30:00", Duration::from_secs(1800))
    );
    assert_eq!(short.mem.as_deref(), Some("64G"));
    assert_eq!(short.gres.as_deref(), Some("gpu:2"));
    assert_eq!(short.ntasks_per_node, Some(8));
    assert_eq!((long.account.as_str(), long.nodes), ("own", 4));
    assert_eq!(long.walltime_duration, Duration::from_secs(2 * 86_400));
    assert!(long.serialize_allocations);
    assert_eq!(long.extra.as_deref(), Some("--exclusive"));
    assert_eq!((default.nodes, default.walltime.as_str()), (1, "01:00:00"));
    assert_eq!(default.walltime_duration, Duration::from_secs(3600));
    assert_eq!(def.slurm_defaults["ntasks"], "4");
    assert_eq!(def.slurm_defaults["mail-type"], "END,FAIL");
    let errs = errors(
        r#"
name: s
slurm_defaults: {partition: x, job_name: y, "--qos": z, constraint: [a]}
slurm_schedulers:
  - {name: a, walltime: "1h", nodes: 0, mem: lots}
  - {account: x}
  - {name: b, account: x, wall_time: "01:00:00"}
  - {name: b, account: x}
jobs:
  - {name: j, command: x, scheduler: c}
"#,
    );
    has(
        &errs,
        "slurm_defaults.partition",
        "set by each slurm scheduler",
    );
    has(
        &errs,
        "slurm_defaults.job_name",
        "set by each slurm scheduler",
    );
    has(&errs, "slurm_defaults.--qos", "without the leading dashes");
    has(
        &errs,
        "slurm_defaults.constraint",
        "expected a string or a number",
    );
    has(
        &errs,
        r#"slurm_schedulers[0] ("a")"#,
        "missing required key `account`",
    );
    has(
        &errs,
        r#"slurm_schedulers[0] ("a").walltime"#,
        "invalid Slurm time limit `1h`",
    );
    has(&errs, r#"slurm_schedulers[0] ("a").nodes"#, "at least 1");
    has(
        &errs,
        r#"slurm_schedulers[0] ("a").mem"#,
        "invalid memory size `lots`",
    );
    has(&errs, "slurm_schedulers[1]", "missing required key `name`");
    has(
        &errs,
        r#"slurm_schedulers[2] ("b").wall_time"#,
        "did you mean `walltime`",
    );
    has(
        &errs,
        r#"slurm_schedulers[3] ("b").name"#,
        "duplicate slurm scheduler name `b`",
    );
    has(
        &errs,
        r#"jobs[0] ("j").scheduler"#,
        "unknown slurm scheduler `c`",
    );
    assert_eq!(errs.len(), 12, "{}", SpecErrors(errs.clone()));
}

#[test]
fn actions_resolve_their_jobs_after_expansion() {
    let def = yaml(
        r#"
name: a
slurm_schedulers: [{name: gpu, account: x}]
jobs:
  - {name: prep, command: x}
  - {name: "train_{i}", command: x, parameters: {i: "1:3"}, depends_on: [prep]}
  - {name: report, command: x, depends_on_regexes: ["^train_"]}
actions:
  - {trigger_type: on_workflow_start, action_type: run_commands, commands: ["mkdir -p out"]}
  - trigger_type: on_jobs_ready
    action_type: schedule_nodes
    jobs: [train_3, train_1]
    job_name_regexes: ["^train_[12]$"]
    scheduler: gpu
    num_allocations: 2
    start_one_worker_per_node: true
    max_parallel_jobs: 4
  - {trigger_type: on_jobs_complete, action_type: schedule_nodes, jobs: [report], scheduler_type: local, persistent: true}
  - {trigger_type: on_workflow_complete, action_type: run_commands, commands: [echo done]}
"#,
    )
    .def;
    let a = &def.actions;
    assert_eq!(a.len(), 4);
    assert_eq!(a[0].trigger, Trigger::OnWorkflowStart);
    assert!(a[0].jobs.is_empty() && !a[0].persistent);
    assert_eq!(a[1].trigger, Trigger::OnJobsReady);
    assert_eq!(a[1].jobs, [1, 2, 3].map(JobId::from_index));
    assert_eq!(
        a[1].kind,
        ActionKind::ScheduleNodes {
            scheduler: Some("gpu".into()),
            scheduler_type: SchedulerType::Slurm,
            num_allocations: 2,
            start_one_worker_per_node: true,
            max_parallel_jobs: Some(4),
        }
    );
    assert_eq!(a[2].jobs, [JobId::from_index(4)]);
    assert!(a[2].persistent);
    assert!(matches!(
        a[2].kind,
        ActionKind::ScheduleNodes {
            scheduler: None,
            scheduler_type: SchedulerType::Local,
            num_allocations: 1,
            ..
        }
    ));
    assert_eq!(a[3].trigger, Trigger::OnWorkflowComplete);
    let errs = errors(
        r#"
name: a
slurm_schedulers: [{name: gpu, account: x}]
jobs:
  - {name: "t_{i}", command: x, parameters: {i: "1:2"}}
actions:
  - {trigger_type: on_jobs_ready, action_type: schedule_nodes, jobs: [t_3], job_name_regexes: ["^x", "("], scheduler: gpu}
  - {trigger_type: on_jobs_ready, action_type: schedule_nodes, scheduler: gpux}
  - {trigger_type: at_noon, action_type: run_commands, commands: [x]}
  - {trigger_type: on_workflow_start, action_type: run_commands, scheduler: gpu}
  - {trigger_type: on_workflow_start, action_type: schedule_nodes}
  - {action_type: sleep}
"#,
    );
    has(
        &errs,
        "actions[0].jobs[0]",
        "unknown job `t_3`; did you mean `t_1`?",
    );
    has(
        &errs,
        "actions[0].job_name_regexes[0]",
        "regex `^x` matches no job",
    );
    has(&errs, "actions[0].job_name_regexes[1]", "invalid regex `(`");
    has(&errs, "actions[1]", "needs the jobs it watches");
    has(
        &errs,
        "actions[1].scheduler",
        "unknown slurm scheduler `gpux`; did you mean `gpu`?",
    );
    has(
        &errs,
        "actions[2].trigger_type",
        "unknown trigger_type `at_noon`",
    );
    has(
        &errs,
        "actions[3].scheduler",
        "applies to `schedule_nodes` actions",
    );
    has(&errs, "actions[3]", "needs `commands`");
    has(&errs, "actions[4]", "needs `scheduler`");
    has(&errs, "actions[5]", "missing required key `trigger_type`");
    has(
        &errs,
        "actions[5].action_type",
        "unknown action_type `sleep`",
    );
    assert_eq!(errs.len(), 11, "{}", SpecErrors(errs.clone()));
}
