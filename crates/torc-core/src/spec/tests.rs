//! Spec loading, end to end: the shared examples, parameters, data relations, formats.
//! Validation errors are in `tests_errors.rs`.

use super::*;
use crate::ids::JobId;
use crate::model::{JobDef, Resources, SortMethod};
use proptest::prelude::*;
use std::time::Duration;

pub(super) fn yaml(text: &str) -> Expanded {
    load(text, SpecFormat::Yaml).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn job<'d>(def: &'d WorkflowDef, name: &str) -> &'d JobDef {
    def.jobs
        .iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

pub(super) fn names(def: &WorkflowDef) -> Vec<&str> {
    def.jobs.iter().map(|j| j.name.as_str()).collect()
}

pub(super) fn deps<'d>(def: &'d WorkflowDef, name: &str) -> Vec<&'d str> {
    job(def, name)
        .depends_on
        .iter()
        .map(|id| def.job(*id).unwrap().name.as_str())
        .collect()
}

#[test]
fn diamond_example_gets_its_edges_from_files() {
    let e = yaml(include_str!("../../../../examples/diamond.yaml"));
    let def = &e.def;
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    assert_eq!(
        names(def),
        ["preprocess", "work_left", "work_right", "postprocess"]
    );
    assert!(deps(def, "preprocess").is_empty());
    assert_eq!(deps(def, "work_left"), ["preprocess"]);
    assert_eq!(deps(def, "work_right"), ["preprocess"]);
    assert_eq!(deps(def, "postprocess"), ["work_left", "work_right"]);
    let work_left = job(def, "work_left");
    assert_eq!(
        work_left.command,
        "tr a-z A-Z < data/left_in.txt > data/left_out.txt"
    );
    assert_eq!(work_left.input_files, [0]);
    assert_eq!(work_left.output_files, [2]);
    assert_eq!(def.files.len(), 5);
    assert_eq!(def.files[4].path, "data/result.txt");
    assert_eq!(work_left.resource_requirement, None);
    assert_eq!(def.resources_of(work_left), Resources::DEFAULT_JOB);
}

#[test]
fn pipeline3001_example() {
    let def = yaml(include_str!("../../../../examples/pipeline3001.yaml")).def;
    assert_eq!(def.jobs.len(), 3001);
    assert_eq!(def.jobs[0].name, "a_1");
    assert_eq!(def.jobs[999].name, "a_1000");
    assert_eq!(def.jobs[1000].name, "b_1");
    assert_eq!(deps(&def, "b_5"), ["a_5"]);
    assert_eq!(deps(&def, "c_1000"), ["b_1000"]);
    let fin = job(&def, "final");
    assert_eq!(fin.depends_on.len(), 1000);
    assert_eq!(fin.depends_on[0], JobId::from_index(2000));
    assert_eq!(fin.depends_on[999], JobId::from_index(2999));
    assert!(fin
        .depends_on
        .iter()
        .all(|id| def.job(*id).unwrap().name.starts_with("c_")));
}

#[test]
fn flat10000_example() {
    let def = yaml(include_str!("../../../../examples/flat10000.yaml")).def;
    assert_eq!(def.jobs.len(), 10_000);
    assert_eq!(def.jobs[0].name, "job_00001");
    assert_eq!(def.jobs[9999].name, "job_10000");
    assert!(def.jobs.iter().all(|j| j.depends_on.is_empty()));
    assert_eq!(def.name, "flat10000");
    assert_eq!(
        def.description.as_deref(),
        Some("10,000 independent no-op jobs")
    );
}

#[test]
fn barrier_example() {
    let def = yaml(include_str!("../../../../examples/barrier.yaml")).def;
    assert_eq!(def.jobs.len(), 2001);
    assert_eq!(job(&def, "barrier").depends_on.len(), 1000);
    assert_eq!(deps(&def, "stage2_0001"), ["barrier"]);
    assert_eq!(deps(&def, "stage2_1000"), ["barrier"]);
    let edges: usize = def.jobs.iter().map(|j| j.depends_on.len()).sum();
    assert_eq!(edges, 2000);
}

const JSON_SPEC: &str = r#"{
  "name": "j",
  "resource_requirements": [{"name": "small", "num_cpus": 2, "memory": "512m"}],
  "jobs": [
    {"name": "a_{i}", "command": "echo {i}", "parameters": {"i": "1:3"},
     "resource_requirements": "small"},
    {"name": "b", "command": "true", "depends_on_regexes": ["^a_"]}
  ]
}"#;

#[test]
fn json_input() {
    let def = load(JSON_SPEC, SpecFormat::Json).unwrap().def;
    assert_eq!(names(&def), ["a_1", "a_2", "a_3", "b"]);
    assert_eq!(deps(&def, "b"), ["a_1", "a_2", "a_3"]);
    assert_eq!(def.jobs[2].command, "echo 3");
    assert_eq!(def.resources_of(&def.jobs[0]).num_cpus, 2);
    assert_eq!(def.resources_of(&def.jobs[0]).memory_bytes, 512 << 20);
    // YAML is a superset of JSON: the same text gives the same workflow.
    assert_eq!(load(JSON_SPEC, SpecFormat::Yaml).unwrap().def, def);
}

#[test]
fn json5_input() {
    let text = r#"{
      // comments and trailing commas are fine
      name: 'j5',
      jobs: [
        {name: 'x_{n:02d}', command: 'run {n}', parameters: {n: '[1, 2]'},},
        {name: 'y', command: 'true', depends_on: ['x_01', 'x_02'],},
      ],
    }"#;
    let def = load(text, SpecFormat::Json5).unwrap().def;
    assert_eq!(names(&def), ["x_01", "x_02", "y"]);
    assert_eq!(deps(&def, "y"), ["x_01", "x_02"]);
    assert_eq!(SpecFormat::from_path("w.JSON5"), SpecFormat::Json5);
    assert_eq!(SpecFormat::from_path("w.json"), SpecFormat::Json);
    assert_eq!(SpecFormat::from_path("w.yml"), SpecFormat::Yaml);
}

#[test]
fn product_order_last_parameter_fastest() {
    let def = yaml(
        "name: p\njobs:\n  - name: t_{a}_{b}\n    command: run {a} {b}\n    parameters:\n      a: '[1, 2]'\n      b: [x, y, z]\n",
    )
    .def;
    assert_eq!(
        names(&def),
        ["t_1_x", "t_1_y", "t_1_z", "t_2_x", "t_2_y", "t_2_z"]
    );
    assert_eq!(def.jobs[4].command, "run 2 y");
}

#[test]
fn zip_mode_pairs_by_position() {
    let def = yaml(
        "name: z\njobs:\n  - name: t_{a}_{b}\n    command: 'true'\n    parameter_mode: zip\n    parameters:\n      a: '1:3'\n      b: '[x, y, z]'\n",
    )
    .def;
    assert_eq!(names(&def), ["t_1_x", "t_2_y", "t_3_z"]);
}

#[test]
fn formats_and_float_ranges() {
    let def = yaml(
        r#"
name: f
jobs:
  - name: "lr_{lr:.3f}_n{n:03d}_w{n:3d}"
    command: "train --lr {lr} --n {n}"
    parameters:
      lr: "0.1:0.3:0.1"
      n: "[7]"
"#,
    )
    .def;
    assert_eq!(
        names(&def),
        [
            "lr_0.100_n007_w  7",
            "lr_0.200_n007_w  7",
            "lr_0.300_n007_w  7"
        ]
    );
    // No drift: 0.1 + 2 * 0.1 prints as 0.3, not 0.30000000000000004.
    assert_eq!(def.jobs[2].command, "train --lr 0.3 --n 7");
}

#[test]
fn negative_steps_and_single_values() {
    let def = yaml(
        "name: n\njobs:\n  - name: d_{i}\n    command: 'true'\n    parameters: {i: '10:1:-4'}\n  - name: s_{v}_{w}\n    command: 'true'\n    parameters: {v: 5, w: '{1:2}'}\n",
    )
    .def;
    assert_eq!(names(&def), ["d_10", "d_6", "d_2", "s_5_1", "s_5_2"]);
}

#[test]
fn workflow_parameters_with_use_parameters() {
    let def = yaml(
        r#"
name: wp
parameters:
  i: "1:2"
  city: "['Denver', 'Boston']"
files:
  - name: out_{city}_{i}
    path: out/{city}/{i}.csv
    use_parameters: [city, i]
jobs:
  - name: make_{city}_{i}
    command: "make > ${files.output.out_{city}_{i}}"
    use_parameters: [city, i]
  - name: sum_{city}
    command: "cat ${files.input.out_{city}_1} ${files.input.out_{city}_2}"
    use_parameters: [city]
  - name: local_{i}
    command: "true"
    parameters: {i: "[9]"}
    use_parameters: [i]
"#,
    )
    .def;
    assert_eq!(
        names(&def)[..4],
        [
            "make_Denver_1",
            "make_Denver_2",
            "make_Boston_1",
            "make_Boston_2"
        ]
    );
    assert_eq!(def.files[1].name, "out_Denver_2");
    assert_eq!(def.files[1].path, "out/Denver/2.csv");
    assert_eq!(
        job(&def, "make_Boston_2").command,
        "make > out/Boston/2.csv"
    );
    assert_eq!(deps(&def, "sum_Boston"), ["make_Boston_1", "make_Boston_2"]);
    // Local parameters win over the workflow's.
    assert_eq!(names(&def)[6..], ["local_9"]);
}

#[test]
fn other_braces_are_left_alone() {
    let def = yaml(
        r#"
name: b
files: [{name: in, path: data/in.txt}]
jobs:
  - name: w_{i}
    command: "awk '{print $1}' ${files.input.in} | grep {i} > ${HOME}/x_{i}_{j} {}"
    parameters: {i: "1:1"}
  - name: plain
    command: "echo {i} ${HOME} '{print}'"
"#,
    )
    .def;
    assert_eq!(
        def.jobs[0].command,
        "awk '{print $1}' data/in.txt | grep 1 > ${HOME}/x_1_{j} {}"
    );
    assert_eq!(def.jobs[1].command, "echo {i} ${HOME} '{print}'");
}

#[test]
fn templates_apply_to_every_reference() {
    let def = yaml(
        r#"
name: t
resource_requirements:
  - {name: rr_1, num_cpus: 1, memory: 1g}
  - {name: rr_2, num_cpus: 2, memory: 2g}
failure_handlers:
  - name: fh_2
    rules: [{exit_codes: [1]}]
user_data:
  - name: ud_{i}
    data: {value: 1}
    parameters: {i: "1:2"}
files:
  - {name: "f_{i}", path: "f{i}", parameters: {i: "1:2"}}
jobs:
  - name: src_{i}
    command: "true"
    parameters: {i: "1:2"}
    output_user_data: [ud_{i}]
  - name: use_{i}
    command: "true"
    parameters: {i: "1:2"}
    resource_requirements: rr_{i}
    invocation_script: "env I={i}"
    input_user_data: [ud_{i}]
    output_file_regexes: ["^f_{i}$"]
    depends_on_regexes: ["^src_{i}$"]
  - name: fh
    command: "true"
    failure_handler: fh_2
    depends_on: [use_2]
"#,
    )
    .def;
    let u2 = job(&def, "use_2");
    assert_eq!(u2.resource_requirement, Some(1));
    assert_eq!(u2.invocation_script.as_deref(), Some("env I=2"));
    assert_eq!(u2.input_user_data, [1]);
    assert_eq!(u2.output_files, [1]);
    assert_eq!(def.files[1].path, "f2");
    assert_eq!(deps(&def, "use_2"), ["src_2"]);
    assert_eq!(job(&def, "use_1").output_files, [0]);
    assert_eq!(job(&def, "fh").failure_handler, Some(0));
    assert_eq!(def.user_data[1].name, "ud_2");
    assert_eq!(def.user_data[1].data, Some(serde_json::json!({"value": 1})));
}

#[test]
fn user_data_placeholders_and_implicit_dependencies() {
    let def = yaml(
        r#"
name: u
user_data:
  - {name: params, is_ephemeral: true}
  - {name: result}
files:
  - {name: log, path: run.log}
jobs:
  - name: writer
    command: "produce --out ${user_data.output.params} >> ${files.output.log}"
  - name: reader
    command: "consume ${user_data.input.params} > ${user_data.output.result}"
    input_files: [log]
    output_files: [log]
  - name: last
    command: "true"
    input_user_data: [result]
"#,
    )
    .def;
    assert_eq!(
        job(&def, "writer").command,
        "produce --out params >> run.log"
    );
    assert_eq!(job(&def, "writer").output_user_data, [0]);
    assert_eq!(job(&def, "reader").input_user_data, [0]);
    assert_eq!(job(&def, "reader").output_user_data, [1]);
    // reader reads and writes `log`: it waits for writer, never for itself.
    assert_eq!(deps(&def, "reader"), ["writer"]);
    assert_eq!(deps(&def, "last"), ["reader"]);
    assert!(def.user_data[0].is_ephemeral);
    assert!(!def.user_data[1].is_ephemeral);
}

#[test]
fn resources_handlers_and_extensions() {
    let e = yaml(
        r#"
name: r
user: alice
project: p1
metadata: '{"k": 1}'
jobs_sort_method: gpus_memory_runtime
resource_requirements:
  - name: big
    num_cpus: 8
    memory: 64G
    num_gpus: 2
    num_nodes: 2
    runtime: P1DT12H
  - {name: tiny, num_cpus: 1, memory: 1048576}
failure_handlers:
  - name: retry
    rules:
      - {exit_codes: [137, 139], max_retries: 5, recovery_script: "cleanup.sh"}
      - {match_all_exit_codes: true}
jobs:
  - name: a
    command: run
    resource_requirements: big
    failure_handler: retry
    priority: -3
    tags: [gpu, fast]
    env: {A: x, N: 5, F: 1.5, B: true}
    timeout: PT30M
    cancel_on_blocking_job_failure: false
    supports_termination: true
  - name: b
    command: run
    resource_requirements: tiny
"#,
    );
    let def = &e.def;
    assert_eq!(def.user.as_deref(), Some("alice"));
    assert_eq!(def.project.as_deref(), Some("p1"));
    assert_eq!(def.metadata.as_deref(), Some("{\"k\": 1}"));
    assert_eq!(def.jobs_sort_method, SortMethod::GpusMemoryRuntime);
    let big = def.resource_requirements[0].resources;
    assert_eq!(
        big,
        Resources {
            num_cpus: 8,
            memory_bytes: 64 << 30,
            num_gpus: 2,
            num_nodes: 2,
            runtime: Duration::from_secs(36 * 3600)
        }
    );
    let tiny = def.resource_requirements[1].resources;
    assert_eq!(tiny.memory_bytes, 1 << 20);
    assert_eq!(tiny.num_gpus, 0);
    assert_eq!(tiny.num_nodes, 1);
    assert_eq!(tiny.runtime, Duration::from_secs(3600));
    let h = &def.failure_handlers[0];
    assert_eq!(h.rules[0].exit_codes, [137, 139]);
    assert_eq!(h.rules[0].max_retries, 5);
    assert_eq!(h.rules[0].recovery_script.as_deref(), Some("cleanup.sh"));
    assert!(!h.rules[0].match_all_exit_codes);
    assert!(h.rules[1].match_all_exit_codes);
    assert_eq!(h.rules[1].max_retries, 3);
    let a = job(def, "a");
    assert_eq!(a.resource_requirement, Some(0));
    assert_eq!(a.failure_handler, Some(0));
    assert_eq!(a.priority, -3);
    assert_eq!(a.tags, ["gpu", "fast"]);
    let env: Vec<(&str, &str)> = a
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "x"), ("B", "true"), ("F", "1.5"), ("N", "5")]);
    assert_eq!(a.timeout, Some(Duration::from_secs(1800)));
    assert!(!a.cancel_on_blocking_job_failure);
    assert!(a.supports_termination);
    let b = job(def, "b");
    assert!(b.cancel_on_blocking_job_failure);
    assert!(!b.supports_termination);
    assert_eq!(b.timeout, None);
    assert_eq!(b.priority, 0);
}

#[test]
fn torc_keys_are_accepted_with_warnings() {
    let e = yaml(
        r#"
name: w
use_pending_failed: true
enable_ro_crate: true
access_groups: [team]
dynamic_jobs: {anything: 1}
resource_monitor: {enabled: true}
slurm_schedulers:
  - {name: short, account: me, walltime: "01:00:00"}
slurm_defaults: {account: me}
actions: []
compute_node_wait_for_new_jobs_seconds: 60
compute_node_ignore_workflow_completion: true
compute_node_something_new: 1
jobs:
  - {name: a, command: "true", scheduler: short}
  - name: b_{i}
    command: "true"
    scheduler: short
    parameters: {i: "1:1"}
"#,
    );
    let warned = [
        "use_pending_failed",
        "enable_ro_crate",
        "access_groups",
        "dynamic_jobs",
        "compute_node_ignore_workflow_completion",
        "compute_node_something_new",
    ];
    assert_eq!(e.warnings.len(), warned.len(), "{:?}", e.warnings);
    for key in warned {
        assert_eq!(
            e.warnings
                .iter()
                .filter(|w| w.contains(&format!("`{key}`")) && w.contains("not acted on"))
                .count(),
            1,
            "{key}: {:?}",
            e.warnings
        );
    }
    // Read, not warned about.
    assert_eq!(e.def.compute_node.wait_for_new_jobs_seconds, 60);
    assert_eq!(e.def.slurm_schedulers[0].name, "short");
    assert!(e.def.resource_monitor.unwrap().jobs.enabled);
    assert_eq!(job(&e.def, "a").scheduler.as_deref(), Some("short"));
    assert_eq!(job(&e.def, "b_1").scheduler.as_deref(), Some("short"));
    // Without slurm_schedulers, any scheduler name is stored as is.
    let def = yaml("name: s\njobs:\n  - {name: a, command: x, scheduler: anything}\n").def;
    assert_eq!(def.jobs[0].scheduler.as_deref(), Some("anything"));
}

#[test]
fn unexpanded_template_names_warn() {
    let e = yaml("name: w\njobs:\n  - {name: 'a_{i}', command: x}\n");
    assert_eq!(e.def.jobs[0].name, "a_{i}");
    assert!(e.warnings[0].contains("no parameters"), "{:?}", e.warnings);
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let def = yaml(
        r#"
name: m
jobs:
  - &base
    name: a
    command: "true"
    priority: 4
  - <<: *base
    name: b
"#,
    )
    .def;
    assert_eq!(names(&def), ["a", "b"]);
    assert_eq!(job(&def, "b").priority, 4);
    assert_eq!(job(&def, "b").command, "true");
}

#[test]
fn large_parameterized_spec_expands() {
    // 3 x 20,000 jobs with per-instance dependencies and one regex fan-in.
    let def = yaml(
        r#"
name: big
jobs:
  - {name: "a_{i}", command: "true", parameters: {i: "1:20000"}}
  - {name: "b_{i}", command: "true", depends_on: ["a_{i}"], parameters: {i: "1:20000"}}
  - {name: "c_{i}", command: "true", depends_on_regexes: ["^b_{i}$"], parameters: {i: "1:20000"}}
  - {name: "end", command: "true", depends_on_regexes: ["^c_"]}
"#,
    )
    .def;
    assert_eq!(def.jobs.len(), 60_001);
    assert_eq!(deps(&def, "c_777"), ["b_777"]);
    assert_eq!(job(&def, "end").depends_on.len(), 20_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn load_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = load(&s, SpecFormat::Yaml);
        let _ = load(&s, SpecFormat::Json);
        let _ = load(&s, SpecFormat::Json5);
    }

    #[test]
    fn load_never_panics_on_spec_like_text(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("name: x\n"), Just("jobs:\n"), Just("  - name: a_{i}\n"),
                Just("    command: echo {i:03d} ${files.input.f}\n"), Just("    parameters: {i: '1:3'}\n"),
                Just("    depends_on: [a_1]\n"), Just("    depends_on_regexes: ['^a_', '(']\n"),
                Just("files: [{name: f, path: p}]\n"), Just("  - {name: b, command: x, depends_on: [b]}\n"),
                Just("    parameter_mode: zip\n"), Just("resource_requirements: [{name: r, num_cpus: 1, memory: 1.5g}]\n"),
                Just("    resource_requirements: r\n"), Just("  - 5\n"), Just("parameters: {i: '0:1:0'}\n"),
            ],
            0..12,
        )
    ) {
        let text: String = parts.concat();
        let _ = load(&text, SpecFormat::Yaml);
    }

    #[test]
    fn integer_parameter_ranges_expand_to_every_value(start in -50i64..50, len in 1i64..60, step in 1i64..5) {
        let end = start + (len - 1) * step;
        let text = format!("name: r\njobs:\n  - name: j_{{i}}\n    command: x\n    parameters: {{i: '{start}:{end}:{step}'}}\n");
        let def = yaml(&text).def;
        prop_assert_eq!(def.jobs.len() as i64, len);
        for (k, j) in def.jobs.iter().enumerate() {
            prop_assert_eq!(&j.name, &format!("j_{}", start + k as i64 * step));
        }
    }

    #[test]
    fn chains_resolve_in_order(n in 1usize..40) {
        let text = format!(
            "name: c\njobs:\n  - {{name: 's_{{i}}', command: x, parameters: {{i: '1:{n}'}}}}\n  - {{name: 't_{{i}}', command: x, depends_on: ['s_{{i}}'], parameters: {{i: '1:{n}'}}}}\n"
        );
        let def = yaml(&text).def;
        prop_assert_eq!(def.jobs.len(), 2 * n);
        for k in 0..n {
            prop_assert_eq!(&def.jobs[n + k].depends_on, &vec![JobId::from_index(k)]);
        }
    }
}

#[test]
fn load_value_takes_an_already_parsed_spec() {
    let value = serde_json::json!({
        "name": "v",
        "jobs": [{"name": "a", "command": "true"}, {"name": "b", "command": "true", "depends_on": ["a"]}]
    });
    let def = load_value(&value).unwrap().def;
    assert_eq!(deps(&def, "b"), ["a"]);
    let bad = serde_json::json!({"name": "v", "jobs": [{"name": "a"}]});
    let errs = load_value(&bad).unwrap_err().0;
    assert_eq!(errs[0].location, r#"jobs[0] ("a")"#);
    assert_eq!(errs[0].message, "missing required key `command`");
}
