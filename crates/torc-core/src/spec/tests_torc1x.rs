//! The keys of Torc 1.x specs: variables, env, labels, tables, execution, monitoring, Slurm,
//! actions, and the keys that are only accepted.

use super::tests::{deps, job, names, yaml};
use super::*;
use crate::model::{ActionKind, ExecutionMode, MonitorGranularity, StdioConfig, StdioMode};
use serde_json::json;
use std::collections::HashMap;

pub(super) fn errors(text: &str) -> Vec<SpecError> {
    match load(text, SpecFormat::Yaml) {
        Ok(e) => panic!("expected errors, got {} jobs", e.def.jobs.len()),
        Err(SpecErrors(v)) => v,
    }
}

#[track_caller]
pub(super) fn has(errs: &[SpecError], location: &str, fragment: &str) {
    assert!(
        errs.iter()
            .any(|e| e.location == location && e.message.contains(fragment)),
        "no error at `{location}` containing `{fragment}` in:\n{}",
        SpecErrors(errs.to_vec())
    );
}

/// Tables and lists from memory.
#[derive(Default)]
pub(super) struct Files {
    pub tables: HashMap<String, Vec<Map<String, Value>>>,
    pub lists: HashMap<String, Vec<String>>,
}

impl TableSource for Files {
    fn table(&self, path: &str) -> Result<Vec<Map<String, Value>>, String> {
        self.tables
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }

    fn lines(&self, path: &str) -> Result<Vec<String>, String> {
        self.lists
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }
}

fn rows(v: Value) -> Vec<Map<String, Value>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

#[test]
fn labels_are_tags_and_take_templates() {
    let def = yaml(
        r#"
name: l
jobs:
  - name: a_{i}
    command: x
    tags: [cpu]
    labels: [gpu_{i}, cpu]
    parameters: {i: "1:2"}
  - {name: b, command: x, labels: [big]}
"#,
    )
    .def;
    assert_eq!(job(&def, "a_2").tags, ["cpu", "gpu_2"]);
    assert_eq!(job(&def, "b").tags, ["big"]);
}

#[test]
fn workflow_env_is_merged_under_each_job() {
    let def = yaml(
        r#"
name: e
env: {ROOT: /scratch, LOG_LEVEL: info, N: 3}
jobs:
  - {name: a, command: x}
  - name: b_{i}
    command: x
    env: {LOG_LEVEL: debug, SHARD: "s{i}"}
    parameters: {i: "1:1"}
"#,
    )
    .def;
    let env = |name: &str| -> Vec<(String, String)> {
        job(&def, name)
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        env("a"),
        pairs(&[("LOG_LEVEL", "info"), ("N", "3"), ("ROOT", "/scratch")])
    );
    assert_eq!(
        env("b_1"),
        pairs(&[
            ("LOG_LEVEL", "debug"),
            ("N", "3"),
            ("ROOT", "/scratch"),
            ("SHARD", "s1")
        ])
    );
    has(
        &errors("name: e\nenv: {A: [1]}\njobs: []\n"),
        "env.A",
        "expected a string, number or boolean",
    );
}

#[test]
fn variables_are_substituted_everywhere_before_expansion() {
    let e = yaml(
        r#"
name: "v {project}"
description: "runs for {project}"
variables: {root: /scratch/p42, project: p42, n: 3, account: acct}
env: {PROJECT: "{project}", HOME_DIR: "${HOME}"}
files:
  - {name: "out_{i}", path: "{root}/out_{i}.txt", parameters: {i: "1:{n}"}}
slurm_schedulers:
  - {name: s, account: "{account}"}
jobs:
  - name: "w_{i:02d}"
    command: "run --in {root} --n {n:03d} -o ${files.output.out_{i}} && awk '{print $1}' ${X}"
    parameters: {i: "1:{n}"}
    use_parameters: []
actions:
  - {trigger_type: on_workflow_start, action_type: run_commands, commands: ["mkdir -p {root}"]}
"#,
    );
    let def = &e.def;
    assert_eq!(def.name, "v p42");
    assert_eq!(def.description.as_deref(), Some("runs for p42"));
    assert_eq!(names(def), ["w_01", "w_02", "w_03"]);
    assert_eq!(
        def.jobs[1].command,
        "run --in /scratch/p42 --n 003 -o /scratch/p42/out_2.txt && awk '{print $1}' ${X}"
    );
    assert_eq!(def.jobs[0].env["PROJECT"], "p42");
    assert_eq!(def.jobs[0].env["HOME_DIR"], "${HOME}");
    assert_eq!(def.files[2].path, "/scratch/p42/out_3.txt");
    assert_eq!(def.slurm_schedulers[0].account, "acct");
    assert_eq!(
        def.actions[0].kind,
        ActionKind::RunCommands {
            commands: vec!["mkdir -p /scratch/p42".into()]
        }
    );
    // A spec that names no file is sent as written.
    assert_eq!(e.self_contained, None);
}

#[test]
fn variable_problems() {
    let errs = errors(
        r#"
name: v
variables: {"1bad": x, i: 3, nested: "{other}", list: [1], fine: "${HOME}/x"}
jobs:
  - name: a_{i}
    command: "echo {fine} {undefined} {i} {}"
    parameters: {i: "1:2"}
"#,
    );
    has(&errs, "variables.1bad", "invalid variable name `1bad`");
    has(&errs, "variables.i", "both a variable and a parameter");
    has(&errs, "variables.nested", "may not contain templates");
    has(
        &errs,
        "variables.list",
        "expected a string, number or boolean",
    );
    has(
        &errs,
        r#"jobs[0] ("a_{i}").command"#,
        "`{undefined}` is neither a variable nor a parameter",
    );
    assert_eq!(errs.len(), 5, "{}", SpecErrors(errs.clone()));
    has(
        &errors("name: v\nvariables: [a]\njobs: []\n"),
        "variables",
        "expected a mapping",
    );
    has(
        &errors("name: v\nvariables: {s: abc}\njobs: [{name: a, command: \"{s:03d}\"}]\n"),
        r#"jobs[0] ("a").command"#,
        "needs an integer",
    );
    // Without `variables`, unknown braces are left as they were.
    let def = yaml("name: v\njobs: [{name: a, command: \"echo {x}\"}]\n").def;
    assert_eq!(def.jobs[0].command, "echo {x}");
}

#[test]
fn metadata_is_any_json_value() {
    let def = yaml("name: m\nmetadata: '{\"a\": 1}'\njobs: []\n").def;
    assert_eq!(def.metadata.as_deref(), Some(r#"{"a": 1}"#));
    let def = yaml("name: m\nmetadata: {team: x, tags: [1, 2]}\njobs: []\n").def;
    assert_eq!(
        def.metadata.as_deref(),
        Some(r#"{"team":"x","tags":[1,2]}"#)
    );
    let def = yaml("name: m\nmetadata: [1]\njobs: []\n").def;
    assert_eq!(def.metadata.as_deref(), Some("[1]"));
}

#[test]
fn files_keep_identifier_and_mtime() {
    let def = yaml(
        r#"
name: f
files:
  - {name: ref, path: data/ref.fa, identifier: "https://doi.org/10.1/x", st_mtime: 1700000000.5}
  - {name: "in_{i}", path: "in_{i}", identifier: "urn:x:{i}", parameters: {i: "1:2"}}
  - {name: plain, path: p}
jobs: []
"#,
    )
    .def;
    assert_eq!(
        def.files[0].identifier.as_deref(),
        Some("https://doi.org/10.1/x")
    );
    assert_eq!(def.files[0].st_mtime, Some(1_700_000_000.5));
    assert_eq!(def.files[2].identifier.as_deref(), Some("urn:x:2"));
    assert_eq!(def.files[3].identifier, None);
    has(
        &errors("name: f\nfiles: [{name: a, path: b, st_mtime: yesterday}]\njobs: []\n"),
        r#"files[0] ("a").st_mtime"#,
        "seconds since the epoch",
    );
}

#[test]
fn parameter_tables_and_value_lists() {
    let mut files = Files::default();
    files.tables.insert(
        "runs.csv".into(),
        rows(json!([{"id": 1, "lr": 0.5, "opt": "adam"}, {"id": 2, "lr": 0.25, "opt": "sgd"}])),
    );
    files.tables.insert(
        "shared.json".into(),
        rows(json!([{"k": "a"}, {"k": "b"}, {"k": "c"}])),
    );
    let text = r#"
name: t
variables: {dir: "."}
parameters_file: shared.json
files:
  - {name: "in_{k}", path: "data/{k}.txt", use_parameters_file: true}
jobs:
  - name: "run_{id}_{opt}"
    command: "train --lr {lr:.2f} --opt {opt}"
    parameters_file: "runs.csv"
  - name: "use_{k}"
    command: "cat ${files.input.in_{k}}"
    use_parameters_file: true
  - name: "seed_{s}"
    command: "x {s}"
    parameters: {s: "@{dir}/seeds.txt"}
"#;
    // The path is looked up after the variables in it are substituted.
    files
        .lists
        .insert("./seeds.txt".into(), vec!["7".into(), "11".into()]);
    let e = load_with(text, SpecFormat::Yaml, &files).unwrap_or_else(|e| panic!("{e}"));
    let def = &e.def;
    assert_eq!(
        names(def),
        [
            "run_1_adam",
            "run_2_sgd",
            "use_a",
            "use_b",
            "use_c",
            "seed_7",
            "seed_11"
        ]
    );
    assert_eq!(def.jobs[1].command, "train --lr 0.25 --opt sgd");
    assert_eq!(deps(def, "use_b"), Vec::<&str>::new());
    assert_eq!(def.files.len(), 3);
    assert_eq!(job(def, "use_c").input_files, [2]);
    // What a server gets: the rows and values themselves, no variables.
    let sent = e.self_contained.clone().expect("files were read");
    assert!(sent.get("variables").is_none());
    assert_eq!(sent["jobs"][0]["parameters_file"][1]["opt"], json!("sgd"));
    assert_eq!(sent["jobs"][2]["parameters"]["s"], json!(["7", "11"]));
    let again = load_value(&sent).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.def, e.def);
    assert_eq!(again.self_contained, None);
    // Without a source (a server), a spec naming a file is refused with what to do.
    let errs = match load(text, SpecFormat::Yaml) {
        Err(SpecErrors(v)) => v,
        Ok(_) => panic!("a server cannot read files"),
    };
    has(&errs, "parameters_file", "only the command line reads");
    has(
        &errs,
        r#"jobs[0] ("run_{id}_{opt}").parameters_file"#,
        "torc workflows create",
    );
    has(
        &errs,
        r#"jobs[2] ("seed_{s}").parameters.s"#,
        "value list `@./seeds.txt`",
    );
}

#[test]
fn parameter_table_problems() {
    let mut files = Files::default();
    files.tables.insert("empty.csv".into(), Vec::new());
    files.tables.insert(
        "ragged.json".into(),
        rows(json!([{"a": 1, "b": 2}, {"a": 3}, {"a": 4, "b": 5, "c": 6}, {"a": [1], "b": 1}])),
    );
    files
        .tables
        .insert("ok.csv".into(), rows(json!([{"a": 1}])));
    files.lists.insert("none.txt".into(), Vec::new());
    let errs = match load_with(
        r#"
name: t
jobs:
  - {name: "e_{a}", command: x, parameters_file: empty.csv}
  - {name: "r_{a}", command: x, parameters_file: ragged.json}
  - {name: "m_{a}", command: x, parameters_file: missing.csv}
  - {name: "x_{a}", command: x, parameters_file: ok.csv, parameters: {b: "1:2"}, parameter_mode: zip}
  - {name: "u_{a}", command: x, use_parameters_file: true}
  - {name: "n_{v}", command: x, parameters: {v: "@none.txt"}}
  - {name: "q_{v}", command: x, parameters: {v: "@gone.txt"}}
"#,
        SpecFormat::Yaml,
        &files,
    ) {
        Err(SpecErrors(v)) => v,
        Ok(_) => panic!("expected errors"),
    };
    has(&errs, r#"jobs[0] ("e_{a}").parameters_file"#, "no rows");
    let r = r#"jobs[1] ("r_{a}").parameters_file"#;
    has(
        &errs,
        &format!("{r}[1]"),
        "row 1 has no value for column `b`",
    );
    has(
        &errs,
        &format!("{r}[2]"),
        "column `c` that the first row does not have",
    );
    has(&errs, &format!("{r}[3].a"), "expected a number or a string");
    has(
        &errs,
        r#"jobs[2] ("m_{a}").parameters_file"#,
        "cannot read parameter table `missing.csv`: no such file",
    );
    has(
        &errs,
        r#"jobs[3] ("x_{a}")"#,
        "it also has `parameters`, `parameter_mode`",
    );
    has(
        &errs,
        r#"jobs[4] ("u_{a}").use_parameters_file"#,
        "no workflow-level `parameters_file`",
    );
    has(&errs, r#"jobs[5] ("n_{v}").parameters.v"#, "has no values");
    has(
        &errs,
        r#"jobs[6] ("q_{v}").parameters.v"#,
        "cannot read values from `@gone.txt`",
    );
    assert_eq!(errs.len(), 9, "{}", SpecErrors(errs.clone()));
    has(
        &errors("name: t\nparameters: {a: 1}\nparameters_file: [{a: 1}]\njobs: []\n"),
        "parameters_file",
        "either `parameters` or `parameters_file`",
    );
}

#[test]
fn execution_config_and_stdio() {
    let def = yaml("name: x\njobs: []\n").def;
    let c = &def.execution;
    assert_eq!(c.mode, ExecutionMode::Direct);
    assert!(c.limit_resources && c.staggered_start && !c.enable_cpu_bind);
    assert_eq!(
        (
            c.termination_signal.as_str(),
            c.sigterm_lead_seconds,
            c.sigkill_headroom_seconds
        ),
        ("SIGTERM", 30, 60)
    );
    assert_eq!((c.timeout_exit_code, c.oom_exit_code), (152, 137));
    assert_eq!(c.stdio, StdioConfig::default());
    let def = yaml(
        r#"
name: x
execution_config:
  mode: slurm
  sigkill_headroom_seconds: 180
  timeout_exit_code: 124
  srun_termination_signal: "TERM@120"
  enable_cpu_bind: true
  srun_mpi: pmix
  staggered_start: false
  stdio: {mode: no_stdout, delete_on_success: true}
jobs:
  - {name: a, command: x}
  - {name: b, command: x, stdio: {mode: combined}}
"#,
    )
    .def;
    let c = &def.execution;
    assert_eq!(c.mode, ExecutionMode::Slurm);
    assert_eq!(c.sigkill_headroom_seconds, 180);
    assert_eq!(c.timeout_exit_code, 124);
    assert_eq!(c.srun_termination_signal.as_deref(), Some("TERM@120"));
    assert!(c.enable_cpu_bind && !c.staggered_start);
    assert_eq!(c.srun_mpi.as_deref(), Some("pmix"));
    assert_eq!(job(&def, "a").stdio, None);
    assert_eq!(job(&def, "a").stdio_in(&def).mode, StdioMode::NoStdout);
    assert!(job(&def, "a").stdio_in(&def).delete_on_success);
    let b = job(&def, "b");
    assert_eq!(
        b.stdio,
        Some(StdioConfig {
            mode: StdioMode::Combined,
            delete_on_success: false
        })
    );
    // Auto allows the keys of both modes.
    let def = yaml("name: x\nexecution_config: {mode: auto, oom_exit_code: 9, enable_cpu_bind: true}\njobs: []\n").def;
    assert_eq!(def.execution.oom_exit_code, 9);
    let errs = errors(
        r#"
name: x
execution_config:
  mode: direct
  enable_cpu_bind: true
  termination_signal: "kill -9"
  timeout_exit_code: 300
  stdio: {mode: both}
  sigterm_lead: 3
jobs:
  - {name: a, command: x, stdio: combined}
"#,
    );
    has(
        &errs,
        "execution_config.enable_cpu_bind",
        "applies to `mode: slurm` only",
    );
    has(
        &errs,
        "execution_config.termination_signal",
        "not a signal name",
    );
    has(&errs, "execution_config.timeout_exit_code", "1 to 255");
    has(&errs, "execution_config.stdio.mode", "unknown mode `both`");
    has(
        &errs,
        "execution_config.sigterm_lead",
        "did you mean `sigterm_lead_seconds`",
    );
    has(&errs, r#"jobs[0] ("a").stdio"#, "expected a mapping");
    assert_eq!(errs.len(), 6, "{}", SpecErrors(errs.clone()));
    has(
        &errors("name: x\nexecution_config: {mode: slurm, limit_resources: false}\njobs: []\n"),
        "execution_config.limit_resources",
        "applies to `mode: direct` only",
    );
    has(
        &errors("name: x\nexecution_config: {mode: srun}\njobs: []\n"),
        "execution_config.mode",
        "expected one of direct, slurm, auto",
    );
}

#[test]
fn resource_monitor_forms() {
    let def = yaml(
        r#"
name: r
resource_monitor:
  sample_interval_seconds: 5
  generate_plots: true
  jobs: {enabled: true, granularity: time_series}
  compute_node: {enabled: true, granularity: summary, memory: false}
jobs: []
"#,
    )
    .def;
    let m = def.resource_monitor.unwrap();
    assert_eq!(m.sample_interval_seconds, 5);
    assert!(m.generate_plots && m.jobs.enabled && m.compute_node.enabled);
    assert_eq!(m.jobs.granularity, MonitorGranularity::TimeSeries);
    assert!(m.compute_node.cpu && !m.compute_node.memory);
    // The older flat form is the job monitor.
    let def =
        yaml("name: r\nresource_monitor: {enabled: true, granularity: TimeSeries}\njobs: []\n").def;
    let m = def.resource_monitor.unwrap();
    assert!(m.jobs.enabled && !m.compute_node.enabled);
    assert_eq!(m.jobs.granularity, MonitorGranularity::TimeSeries);
    assert_eq!(m.sample_interval_seconds, 10);
    assert_eq!(yaml("name: r\njobs: []\n").def.resource_monitor, None);
    let errs = errors(
        r#"
name: r
resource_monitor:
  enabled: true
  sample_interval_seconds: 0
  jobs: {enabled: "yes", granularity: hourly}
  compute_node: {gpu: true}
jobs: []
"#,
    );
    has(&errs, "resource_monitor", "not both");
    has(
        &errs,
        "resource_monitor.sample_interval_seconds",
        "at least 1",
    );
    has(&errs, "resource_monitor.jobs.enabled", "true or false");
    has(
        &errs,
        "resource_monitor.jobs.granularity",
        "unknown granularity `hourly`",
    );
    has(
        &errs,
        "resource_monitor.compute_node.gpu",
        "unknown key `gpu`",
    );
    assert_eq!(errs.len(), 5, "{}", SpecErrors(errs.clone()));
}

#[test]
fn compute_node_settings() {
    let def = yaml("name: c\njobs: []\n").def;
    assert_eq!(def.compute_node.wait_for_new_jobs_seconds, 90);
    assert_eq!(def.compute_node.expiration_buffer_seconds, None);
    let e = yaml(
        "name: c\ncompute_node_wait_for_new_jobs_seconds: 0\ncompute_node_expiration_buffer_seconds: 120\njobs: []\n",
    );
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    assert_eq!(e.def.compute_node.wait_for_new_jobs_seconds, 0);
    assert_eq!(e.def.compute_node.expiration_buffer_seconds, Some(120));
    has(
        &errors("name: c\ncompute_node_wait_for_new_jobs_seconds: soon\njobs: []\n"),
        "compute_node_wait_for_new_jobs_seconds",
        "non-negative integer",
    );
}

#[test]
fn old_definitions_deserialize_with_defaults() {
    // A definition serialized before these settings existed.
    let old = json!({
        "name": "w", "description": null, "user": null, "project": null, "metadata": null,
        "jobs_sort_method": "gpus_runtime_memory", "resource_requirements": [],
        "failure_handlers": [], "files": [{"name": "f", "path": "p"}], "user_data": [],
        "jobs": [{
            "name": "a", "command": "x", "invocation_script": null, "resource_requirement": null,
            "depends_on": [], "input_files": [], "output_files": [], "input_user_data": [],
            "output_user_data": [], "cancel_on_blocking_job_failure": true,
            "supports_termination": false, "failure_handler": null, "priority": 0, "tags": [],
            "env": {}, "timeout": null, "scheduler": null
        }]
    });
    let def: WorkflowDef = serde_json::from_value(old).unwrap();
    assert_eq!(def.execution, crate::model::ExecutionConfig::default());
    assert_eq!(def.jobs[0].stdio, None);
    assert_eq!(def.files[0].identifier, None);
    assert_eq!(def.compute_node.wait_for_new_jobs_seconds, 90);
    let full = yaml(
        "name: w\nexecution_config: {stdio: {mode: none}}\nresource_monitor: {enabled: true}\nslurm_schedulers: [{name: s, account: a}]\nactions: [{trigger_type: on_workflow_start, action_type: schedule_nodes, scheduler: s}]\njobs: [{name: a, command: x, stdio: {mode: combined}}]\n",
    )
    .def;
    let back: WorkflowDef = serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
    assert_eq!(back, full);
}
