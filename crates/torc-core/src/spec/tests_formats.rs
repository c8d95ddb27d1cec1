//! KDL specs, and one workflow written as YAML, JSON and KDL expanding the same way.

use super::tests::{deps, job, names};
use super::*;
use crate::model::{ActionKind, ExecutionMode, StdioMode};
use proptest::prelude::*;

fn kdl(text: &str) -> Expanded {
    load(text, SpecFormat::Kdl).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kdl_format_is_picked_by_extension() {
    assert_eq!(SpecFormat::from_path("w/flow.KDL"), SpecFormat::Kdl);
    assert_eq!(SpecFormat::from_path("flow.yaml"), SpecFormat::Yaml);
}

#[test]
fn a_torc_kdl_spec_validates() {
    let e = kdl(r#"
// As Torc writes them: singular entry nodes, repeated list nodes, string parameter values.
name "variables_demo"
description "demo"
variables {
    data_root "/scratch/proj42"
    account "acct"
}
env {
    ROOT "{data_root}"
}
file "clean_data" path="{data_root}/clean/all.parquet"
resource_requirements "gpu_job" {
    num_cpus 4
    num_gpus 1
    memory "16g"
    runtime "PT2H"
}
slurm_scheduler "gpu_sched" {
    account "{account}"
    partition "gpu"
    gres "gpu:1"
    walltime "04:00:00"
    nodes 1
}
failure_handler "retry" {
    rule {
        exit_codes 10 11
        max_retries 2
    }
}
job "prepare" {
    command "python prepare.py --out {data_root}/clean"
    output_file "clean_data"
    scheduler "gpu_sched"
}
job "train_{i:02d}" {
    command "python train.py --shard {i}"
    resource_requirements "gpu_job"
    depends_on "prepare"
    label "gpu"
    failure_handler "retry"
    parameters {
        i "1:3"
    }
    scheduler "gpu_sched"
    stdio {
        mode "combined"
    }
}
job "aggregate" {
    command "python aggregate.py"
    depends_on_regexes "^train_.*$"
    input_file "clean_data"
    cancel_on_blocking_job_failure #false
}
action {
    trigger_type "on_jobs_ready"
    action_type "schedule_nodes"
    job "prepare"
    scheduler "gpu_sched"
    scheduler_type "slurm"
    num_allocations 1
}
action {
    trigger_type "on_workflow_complete"
    action_type "run_commands"
    command "echo one"
    command "echo two"
}
execution_config {
    mode "direct"
    limit_resources #true
    stdio {
        mode "no_stdout"
    }
}
resource_monitor {
    sample_interval_seconds 5
    jobs {
        enabled #true
        granularity "time_series"
    }
}
"#);
    let def = &e.def;
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    assert_eq!(
        names(def),
        ["prepare", "train_01", "train_02", "train_03", "aggregate"]
    );
    assert_eq!(deps(def, "train_02"), ["prepare"]);
    assert_eq!(
        deps(def, "aggregate"),
        ["prepare", "train_01", "train_02", "train_03"]
    );
    assert_eq!(def.files[0].path, "/scratch/proj42/clean/all.parquet");
    assert_eq!(job(def, "train_01").tags, ["gpu"]);
    assert_eq!(job(def, "train_01").env["ROOT"], "/scratch/proj42");
    assert_eq!(
        job(def, "train_01").stdio.unwrap().mode,
        StdioMode::Combined
    );
    assert!(!job(def, "aggregate").cancel_on_blocking_job_failure);
    assert_eq!(def.failure_handlers[0].rules[0].exit_codes, [10, 11]);
    assert_eq!(def.slurm_schedulers[0].account, "acct");
    assert_eq!(def.execution.mode, ExecutionMode::Direct);
    assert_eq!(def.execution.stdio.mode, StdioMode::NoStdout);
    assert_eq!(def.resource_monitor.unwrap().sample_interval_seconds, 5);
    assert_eq!(def.actions[0].jobs, [crate::JobId::from_index(0)]);
    assert_eq!(
        def.actions[1].kind,
        ActionKind::RunCommands {
            commands: vec!["echo one".into(), "echo two".into()]
        }
    );
}

#[test]
fn kdl_problems_are_located() {
    let e = load(
        "name \"x\"\njob \"a\" {\n  command \"x\"\n  command \"y\"\n}\n",
        SpecFormat::Kdl,
    )
    .unwrap_err();
    assert_eq!(e.0[0].location, "line 4, column 3");
    // Problems of shape are reported like any spec's, by place in the spec.
    let e = load(
        "name \"x\"\njob \"a\" {\n  comand \"x\"\n}\n",
        SpecFormat::Kdl,
    )
    .unwrap_err();
    assert!(
        e.0.iter().any(|e| e.location == r#"jobs[0] ("a").comand"#
            && e.message.contains("did you mean `command`")),
        "{e}"
    );
}

/// One random workflow: jobs with dependencies on earlier jobs, files written by one job and
/// read by later ones, and parameterized jobs.
#[derive(Debug, Clone)]
struct Flow {
    jobs: Vec<FlowJob>,
    files: usize,
}

/// The earlier jobs it names, the files it writes, the files it reads, and the size of its
/// parameter range (0: none).
type FlowJob = (Vec<usize>, Vec<usize>, Vec<usize>, u8);

fn flow() -> impl Strategy<Value = Flow> {
    (1usize..7, 0usize..4).prop_flat_map(|(n, files)| {
        let job = (
            proptest::collection::vec(0usize..8, 0..3),
            proptest::collection::vec(0usize..4, 0..2),
            proptest::collection::vec(0usize..4, 0..2),
            0u8..3,
        );
        proptest::collection::vec(job, n).prop_map(move |raw| {
            let mut writer: Vec<Option<usize>> = vec![None; files];
            let jobs = raw
                .into_iter()
                .enumerate()
                .map(|(j, (d, w, r, p))| {
                    let mut deps: Vec<usize> = d.into_iter().filter(|&x| x < j).collect();
                    deps.sort_unstable();
                    deps.dedup();
                    let mut writes = Vec::new();
                    for f in w.into_iter().filter(|&f| f < files) {
                        if writer[f].is_none() {
                            writer[f] = Some(j);
                            writes.push(f);
                        }
                    }
                    let mut reads: Vec<usize> = r
                        .into_iter()
                        .filter(|&f| f < files && writer[f].is_some_and(|w| w < j))
                        .collect();
                    reads.sort_unstable();
                    reads.dedup();
                    (deps, writes, reads, p)
                })
                .collect();
            Flow { jobs, files }
        })
    })
}

fn job_name(j: usize, p: u8) -> String {
    if p > 0 {
        format!("j{j}_{{i}}")
    } else {
        format!("j{j}")
    }
}

/// The names a job of `p` instances depends on: every instance of each dependency.
fn dep_regex(d: usize) -> String {
    format!("^j{d}(_[0-9]+)?$")
}

fn to_yaml(f: &Flow) -> String {
    let mut s = String::from("name: prop\nfiles:\n");
    for i in 0..f.files {
        s.push_str(&format!("  - {{name: f{i}, path: \"data/f{i}.txt\"}}\n"));
    }
    if f.files == 0 {
        s = String::from("name: prop\n");
    }
    s.push_str("jobs:\n");
    for (j, (deps, writes, reads, p)) in f.jobs.iter().enumerate() {
        s.push_str(&format!(
            "  - name: \"{}\"\n    command: \"echo {j}\"\n",
            job_name(j, *p)
        ));
        let list = |v: Vec<String>| format!("[{}]", v.join(", "));
        if !deps.is_empty() {
            let r: Vec<String> = deps
                .iter()
                .map(|&d| format!("\"{}\"", dep_regex(d)))
                .collect();
            s.push_str(&format!("    depends_on_regexes: {}\n", list(r)));
        }
        if !writes.is_empty() {
            let w: Vec<String> = writes.iter().map(|f| format!("f{f}")).collect();
            s.push_str(&format!("    output_files: {}\n", list(w)));
        }
        if !reads.is_empty() {
            let r: Vec<String> = reads.iter().map(|f| format!("f{f}")).collect();
            s.push_str(&format!("    input_files: {}\n", list(r)));
        }
        if *p > 0 {
            s.push_str(&format!("    parameters: {{i: \"1:{p}\"}}\n"));
        }
    }
    s
}

fn to_json(f: &Flow) -> String {
    let files: Vec<serde_json::Value> = (0..f.files)
        .map(|i| serde_json::json!({"name": format!("f{i}"), "path": format!("data/f{i}.txt")}))
        .collect();
    let jobs: Vec<serde_json::Value> = f
        .jobs
        .iter()
        .enumerate()
        .map(|(j, (deps, writes, reads, p))| {
            let mut m =
                serde_json::json!({"name": job_name(j, *p), "command": format!("echo {j}")});
            if !deps.is_empty() {
                m["depends_on_regexes"] = deps.iter().map(|&d| dep_regex(d)).collect();
            }
            if !writes.is_empty() {
                m["output_files"] = writes.iter().map(|f| format!("f{f}")).collect();
            }
            if !reads.is_empty() {
                m["input_files"] = reads.iter().map(|f| format!("f{f}")).collect();
            }
            if *p > 0 {
                m["parameters"] = serde_json::json!({"i": format!("1:{p}")});
            }
            m
        })
        .collect();
    serde_json::json!({"name": "prop", "files": files, "jobs": jobs}).to_string()
}

fn to_kdl(f: &Flow) -> String {
    let mut s = String::from("name \"prop\"\n");
    for i in 0..f.files {
        s.push_str(&format!("file \"f{i}\" path=\"data/f{i}.txt\"\n"));
    }
    for (j, (deps, writes, reads, p)) in f.jobs.iter().enumerate() {
        s.push_str(&format!(
            "job \"{}\" {{\n    command \"echo {j}\"\n",
            job_name(j, *p)
        ));
        for &d in deps {
            s.push_str(&format!("    depends_on_regexes \"{}\"\n", dep_regex(d)));
        }
        for w in writes {
            s.push_str(&format!("    output_file \"f{w}\"\n"));
        }
        for r in reads {
            s.push_str(&format!("    input_file \"f{r}\"\n"));
        }
        if *p > 0 {
            s.push_str(&format!("    parameters {{\n        i \"1:{p}\"\n    }}\n"));
        }
        s.push_str("}\n");
    }
    s
}

proptest! {
    #[test]
    fn yaml_json_and_kdl_expand_alike(f in flow()) {
        let from = |text: String, format| load(&text, format).map_err(|e| format!("{e}\n{text}"));
        let y = from(to_yaml(&f), SpecFormat::Yaml).map_err(TestCaseError::fail)?;
        let j = from(to_json(&f), SpecFormat::Json).map_err(TestCaseError::fail)?;
        let k = from(to_kdl(&f), SpecFormat::Kdl).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&y.def, &j.def);
        prop_assert_eq!(&y.def, &k.def);
        let expected: usize = f.jobs.iter().map(|(_, _, _, p)| (*p).max(1) as usize).sum();
        prop_assert_eq!(y.def.jobs.len(), expected);
        prop_assert_eq!(y.def.files.len(), f.files);
    }
}
