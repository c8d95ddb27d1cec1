//! Validation: every kind of problem, with where it is and what it says.

use super::*;

fn errors(text: &str) -> Vec<SpecError> {
    match load(text, SpecFormat::Yaml) {
        Ok(e) => panic!("expected errors, got {} jobs", e.def.jobs.len()),
        Err(SpecErrors(v)) => {
            assert!(!v.is_empty());
            v
        }
    }
}

/// Asserts that one error has exactly `location` and a message containing `fragment`.
#[track_caller]
fn has(errs: &[SpecError], location: &str, fragment: &str) {
    assert!(
        errs.iter()
            .any(|e| e.location == location && e.message.contains(fragment)),
        "no error at `{location}` containing `{fragment}` in:\n{}",
        SpecErrors(errs.to_vec())
    );
}

#[track_caller]
fn only(text: &str, location: &str, fragment: &str) {
    let errs = errors(text);
    has(&errs, location, fragment);
    assert_eq!(errs.len(), 1, "{}", SpecErrors(errs));
}

#[test]
fn unknown_keys_name_the_closest_known_key() {
    only(
        "name: x\njobs:\n  - {name: a, command: x, depend_on: [b]}\n",
        r#"jobs[0] ("a").depend_on"#,
        "unknown key `depend_on`; did you mean `depends_on`?",
    );
    only(
        "name: x\njob: []\njobs: []\n",
        "job",
        "did you mean `jobs`?",
    );
    only(
        "name: x\njobs: []\nfiles: [{name: f, pth: p, path: p}]\n",
        r#"files[0] ("f").pth"#,
        "did you mean `path`?",
    );
    only(
        "name: x\njobs: []\nresource_requirements: [{name: r, num_cpu: 1, num_cpus: 1, memory: 1g}]\n",
        r#"resource_requirements[0] ("r").num_cpu"#,
        "did you mean `num_cpus`?",
    );
    only(
        "name: x\njobs: []\nfailure_handlers: [{name: h, rules: [{exit_code: [1], exit_codes: [1]}]}]\n",
        r#"failure_handlers[0] ("h").rules[0].exit_code"#,
        "did you mean `exit_codes`?",
    );
    only(
        "name: x\njobs: []\nqqqqqqqqqqqqqqqq: 1\n",
        "qqqqqqqqqqqqqqqq",
        "closest known key is",
    );
}

#[test]
fn missing_required_keys_and_wrong_types() {
    let errs = errors("description: 5\n");
    has(&errs, "top level", "missing required key `name`");
    has(&errs, "top level", "missing required key `jobs`");
    has(&errs, "description", "expected a string, found a number");
    let errs = errors("name: x\njobs:\n  - {command: x}\n  - {name: b}\n  - 7\n");
    has(&errs, "jobs[0]", "missing required key `name`");
    has(&errs, r#"jobs[1] ("b")"#, "missing required key `command`");
    has(&errs, "jobs[2]", "expected a mapping, found a number");
    only("- a\n- b\n", "top level", "a spec must be a mapping");
    only(
        "name: x\njobs: {a: 1}\n",
        "jobs",
        "expected a list, found a mapping",
    );
    let errs = errors(
        "name: x\njobs:\n  - name: a\n    command: [x]\n    depends_on: b\n    priority: high\n    tags: [1]\n    cancel_on_blocking_job_failure: 'no'\n    env: {A: [1]}\n",
    );
    let job = r#"jobs[0] ("a")"#;
    has(
        &errs,
        &format!("{job}.command"),
        "expected a string, found a list",
    );
    has(
        &errs,
        &format!("{job}.depends_on"),
        "expected a list, found a string",
    );
    has(&errs, &format!("{job}.priority"), "expected an integer");
    has(
        &errs,
        &format!("{job}.tags[0]"),
        "expected a string, found a number",
    );
    has(
        &errs,
        &format!("{job}.cancel_on_blocking_job_failure"),
        "expected true or false",
    );
    has(
        &errs,
        &format!("{job}.env.A"),
        "expected a string, number or boolean",
    );
    assert_eq!(errs.len(), 6, "{}", SpecErrors(errs.clone()));
}

#[test]
fn duplicate_names() {
    let errs = errors(
        r#"
name: d
files:
  - {name: f, path: a}
  - {name: f, path: b}
user_data:
  - {name: u}
  - {name: u}
resource_requirements:
  - {name: r, num_cpus: 1, memory: 1m}
  - {name: r, num_cpus: 1, memory: 1m}
failure_handlers:
  - {name: h, rules: [{match_all_exit_codes: true}]}
  - {name: h, rules: [{match_all_exit_codes: true}]}
jobs:
  - {name: "a_{i}", command: x, parameters: {i: "1:3"}}
  - {name: "a_2", command: x}
"#,
    );
    has(
        &errs,
        r#"files[1] ("f").name"#,
        "duplicate file name `f` (files[0]",
    );
    has(
        &errs,
        r#"user_data[1] ("u").name"#,
        "duplicate user data name `u`",
    );
    has(
        &errs,
        r#"resource_requirements[1] ("r").name"#,
        "duplicate resource requirement name `r`",
    );
    has(
        &errs,
        r#"failure_handlers[1] ("h").name"#,
        "duplicate failure handler name `h`",
    );
    has(
        &errs,
        r#"jobs[1] ("a_2").name"#,
        r#"duplicate job name `a_2` (jobs[0] ("a_{i}") already defines it)"#,
    );
    assert_eq!(errs.len(), 5, "{}", SpecErrors(errs.clone()));
    // Duplicates made by expansion alone.
    only(
        "name: d\njobs:\n  - {name: 'same', command: x, parameters: {i: '1:2'}}\n",
        r#"jobs[0] ("same").name"#,
        "duplicate job name `same`",
    );
}

#[test]
fn unknown_references() {
    let errs = errors(
        r#"
name: u
files: [{name: input, path: in.txt}]
user_data: [{name: conf}]
resource_requirements: [{name: small, num_cpus: 1, memory: 1g}]
failure_handlers: [{name: retry, rules: [{exit_codes: [1]}]}]
jobs:
  - {name: a_1, command: x}
  - name: b_{i}
    command: "cat ${files.input.inptu} ${user_data.output.conff}"
    parameters: {i: "1:1"}
    depends_on: [a_{i}, a_9]
    resource_requirements: smal
    failure_handler: retyr
    input_files: [nope]
    output_user_data: [conf, missing]
    use_parameters: [zz]
"#,
    );
    let b = r#"jobs[1] ("b_{i}")"#;
    has(
        &errs,
        &format!("{b}.depends_on[1]"),
        "unknown job `a_9` (in job `b_1`); did you mean `a_1`?",
    );
    has(
        &errs,
        &format!("{b}.command"),
        "unknown file `inptu` (in job `b_1`); did you mean `input`?",
    );
    has(
        &errs,
        &format!("{b}.command"),
        "unknown user data `conff` (in job `b_1`); did you mean `conf`?",
    );
    has(
        &errs,
        &format!("{b}.resource_requirements"),
        "unknown resource requirement `smal` (in job `b_1`); did you mean `small`?",
    );
    has(
        &errs,
        &format!("{b}.failure_handler"),
        "unknown failure handler `retyr`",
    );
    has(&errs, &format!("{b}.input_files[0]"), "unknown file `nope`");
    has(
        &errs,
        &format!("{b}.output_user_data[1]"),
        "unknown user data `missing`",
    );
    has(
        &errs,
        &format!("{b}.use_parameters[0]"),
        "unknown workflow parameter `zz`",
    );
    assert_eq!(errs.len(), 8, "{}", SpecErrors(errs.clone()));
}

#[test]
fn placeholders_must_be_well_formed() {
    let errs = errors(
        "name: p\nfiles: [{name: f, path: p}]\njobs:\n  - {name: a, command: 'cat ${files.inpt.f}'}\n  - {name: b, command: 'cat ${files.input.f'}\n",
    );
    has(
        &errs,
        r#"jobs[0] ("a").command"#,
        "invalid placeholder `${files.inpt.f}`",
    );
    has(&errs, r#"jobs[1] ("b").command"#, "unclosed placeholder");
}

#[test]
fn unknown_scheduler_when_slurm_schedulers_are_given() {
    let errs = errors(
        "name: s\nslurm_schedulers: [{name: short, account: a}]\njobs:\n  - {name: a, command: x, scheduler: shrt}\n",
    );
    has(
        &errs,
        r#"jobs[0] ("a").scheduler"#,
        "unknown slurm scheduler `shrt`; did you mean `short`?",
    );
}

#[test]
fn regex_problems() {
    let errs = errors(
        r#"
name: r
files: [{name: f, path: p}]
jobs:
  - {name: a, command: x, depends_on_regexes: ["(unclosed"]}
  - {name: b, command: x, depends_on_regexes: ["^zzz"]}
  - {name: c, command: x, input_file_regexes: ["^g"]}
  - {name: d, command: x, depends_on_regexes: ["(unclosed"]}
"#,
    );
    has(
        &errs,
        r#"jobs[0] ("a").depends_on_regexes[0]"#,
        "invalid regex `(unclosed`",
    );
    has(
        &errs,
        r#"jobs[1] ("b").depends_on_regexes[0]"#,
        "regex `^zzz` matches no job",
    );
    has(
        &errs,
        r#"jobs[2] ("c").input_file_regexes[0]"#,
        "regex `^g` matches no file",
    );
    // The same bad regex is reported once.
    assert_eq!(errs.len(), 3, "{}", SpecErrors(errs.clone()));
}

#[test]
fn cycles_name_the_jobs_on_them() {
    let errs = errors(
        "name: c\njobs:\n  - {name: a, command: x, depends_on: [c]}\n  - {name: b, command: x, depends_on: [a]}\n  - {name: c, command: x, depends_on: [b]}\n  - {name: d, command: x, depends_on: [c]}\n",
    );
    assert_eq!(errs.len(), 1, "{}", SpecErrors(errs.clone()));
    let msg = &errs[0].message;
    assert!(msg.starts_with("dependency cycle: "), "{msg}");
    let cycle = msg
        .trim_start_matches("dependency cycle: ")
        .split(' ')
        .next_back()
        .unwrap();
    let _ = cycle;
    // The cycle is a -> b -> c -> a in some rotation.
    assert!(
        ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
            .iter()
            .any(|c| msg.contains(c)),
        "{msg}"
    );
    // Through files too.
    let errs = errors(
        "name: f\nfiles: [{name: x, path: x}, {name: y, path: y}]\njobs:\n  - {name: p, command: 'cp ${files.input.y} ${files.output.x}'}\n  - {name: q, command: 'cp ${files.input.x} ${files.output.y}'}\n",
    );
    assert!(errs[0].message.contains("dependency cycle"), "{errs:?}");
    only(
        "name: s\njobs:\n  - {name: a, command: x, depends_on: [a]}\n",
        r#"jobs[0] ("a").depends_on[0]"#,
        "job `a` depends on itself",
    );
}

#[test]
fn bad_units() {
    let errs = errors(
        r#"
name: u
resource_requirements:
  - {name: a, num_cpus: 1, memory: 1.5g}
  - {name: b, num_cpus: 0, memory: 2x, runtime: P1M}
  - {name: c, num_cpus: -1, memory: 1g, runtime: 3600}
  - {name: d}
jobs:
  - {name: j, command: x, timeout: 30 minutes}
"#,
    );
    has(
        &errs,
        r#"resource_requirements[0] ("a").memory"#,
        "fractional memory size `1.5g` is not allowed",
    );
    has(
        &errs,
        r#"resource_requirements[1] ("b").num_cpus"#,
        "at least 1",
    );
    has(
        &errs,
        r#"resource_requirements[1] ("b").memory"#,
        "invalid memory size `2x`",
    );
    has(&errs, r#"resource_requirements[1] ("b").runtime"#, "months");
    has(
        &errs,
        r#"resource_requirements[2] ("c").num_cpus"#,
        "expected a non-negative integer",
    );
    has(
        &errs,
        r#"resource_requirements[2] ("c").runtime"#,
        "expected a string, found a number",
    );
    has(
        &errs,
        r#"resource_requirements[3] ("d")"#,
        "missing required key `num_cpus`",
    );
    has(
        &errs,
        r#"resource_requirements[3] ("d")"#,
        "missing required key `memory`",
    );
    has(
        &errs,
        r#"jobs[0] ("j").timeout"#,
        "invalid ISO 8601 duration `30 minutes`",
    );
    assert_eq!(errs.len(), 9, "{}", SpecErrors(errs.clone()));
}

#[test]
fn parameter_problems() {
    let errs = errors(
        r#"
name: p
parameters:
  k: "1:5:0"
  "2bad": "1:2"
jobs:
  - {name: "a_{i}", command: x, parameters: {i: "1:10:0"}}
  - {name: "b_{i}_{j}", command: x, parameter_mode: zip, parameters: {i: "1:3", j: "[x, y]"}}
  - {name: "c_{i:03q}", command: x, parameters: {i: "1:2"}}
  - {name: "d_{x:03d}", command: x, parameters: {x: "[0.5]"}}
  - {name: "e_{i}", command: x, parameter_mode: cartesian, parameters: {i: "1:2"}}
  - {name: "f_{i}", command: x, parameters: {i: "[]"}}
  - {name: "g_{i}", command: x, parameters: {i: {a: 1}}}
"#,
    );
    has(&errs, "parameters.k", "range `1:5:0` has a zero step");
    has(&errs, "parameters.2bad", "invalid parameter name `2bad`");
    has(&errs, r#"jobs[0] ("a_{i}").parameters.i"#, "zero step");
    has(
        &errs,
        r#"jobs[1] ("b_{i}_{j}").parameters"#,
        "parameter_mode `zip` needs parameters with the same number of values, but `i` has 3, `j` has 2",
    );
    has(
        &errs,
        r#"jobs[2] ("c_{i:03q}").name"#,
        "invalid format spec `03q` for parameter `i`",
    );
    has(
        &errs,
        r#"jobs[3] ("d_{x:03d}").name"#,
        "format `03d` needs an integer, but parameter `x` is `0.5`",
    );
    has(
        &errs,
        r#"jobs[4] ("e_{i}").parameter_mode"#,
        "unknown parameter_mode `cartesian`",
    );
    has(
        &errs,
        r#"jobs[5] ("f_{i}").parameters.i"#,
        "the list is empty",
    );
    has(
        &errs,
        r#"jobs[6] ("g_{i}").parameters.i"#,
        "found a mapping",
    );
    assert_eq!(errs.len(), 9, "{}", SpecErrors(errs.clone()));
}

#[test]
fn too_many_jobs_is_an_error_not_an_allocation() {
    only(
        "name: big\njobs:\n  - {name: 'a_{i}_{j}', command: x, parameters: {i: '1:100000', j: '1:100000'}}\n",
        r#"jobs[0] ("a_{i}_{j}")"#,
        "more than 10000000",
    );
}

#[test]
fn other_top_level_problems() {
    let errs = errors("name: x\njobs: []\njobs_sort_method: gpus_runtime_memroy\nuser: [me]\n");
    has(
        &errs,
        "jobs_sort_method",
        "unknown sort method `gpus_runtime_memroy`",
    );
    has(
        &errs,
        "jobs_sort_method",
        "did you mean `gpus_runtime_memory`?",
    );
    has(&errs, "user", "expected a string, found a list");
    let errs =
        errors("name: x\njobs: []\nfailure_handlers: [{name: h, rules: [{max_retries: 2}]}]\n");
    has(
        &errs,
        r#"failure_handlers[0] ("h").rules[0]"#,
        "needs `exit_codes` or `match_all_exit_codes: true`",
    );
}

#[test]
fn syntax_errors() {
    let errs = load("name: x\njobs: [\n", SpecFormat::Yaml).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].location.starts_with("line "), "{errs:?}");
    let errs = load("{\"name\": \"x\",}", SpecFormat::Json).unwrap_err().0;
    assert!(errs[0].message.contains("invalid JSON"), "{errs:?}");
}

#[test]
fn many_problems_are_reported_at_once_and_displayed() {
    let errs = errors(
        r#"
name: many
resource_requirements: [{name: r, num_cpus: 1, memory: 1.5g}]
jobs:
  - {name: a, command: x, depend_on: [b]}
  - {name: b, command: x, depends_on: [nope], resource_requirements: q}
  - {name: c, command: x, timeout: PT1Y}
"#,
    );
    assert_eq!(errs.len(), 5, "{}", SpecErrors(errs.clone()));
    let shown = SpecErrors(errs).to_string();
    assert!(shown.starts_with("5 problems in the spec:\n"), "{shown}");
    assert!(
        shown.contains(r#"  - jobs[0] ("a").depend_on: unknown key"#),
        "{shown}"
    );
    assert!(shown.contains("fractional"), "{shown}");
    assert!(shown.contains("unknown job `nope`"), "{shown}");
    assert!(
        shown.contains("unknown resource requirement `q`"),
        "{shown}"
    );
    assert!(shown.contains("years"), "{shown}");
}

#[test]
fn a_problem_of_many_instances_is_reported_once() {
    let errs = errors(
        "name: m\njobs:\n  - {name: 'b_{i}', command: x, depends_on: ['a_{i}'], parameters: {i: '1:1000'}}\n",
    );
    // Once, with how many instances have it and the first few of them.
    assert_eq!(errs.len(), 1, "{}", SpecErrors(errs.clone()));
    assert_eq!(errs[0].location, r#"jobs[0] ("b_{i}").depends_on[0]"#);
    assert!(
        errs[0]
            .message
            .starts_with("unknown job `a_1` (in job `b_1`)")
            && errs[0]
                .message
                .ends_with(" (1000 instances have this problem: `b_1`, `b_2`, `b_3`, …)"),
        "{}",
        errs[0].message
    );
    // Two problems at one place of each instance stay two problems.
    let errs = errors(
        "name: m\njobs:\n  - {name: 'b_{i}', command: 'cat ${files.input.x} ${files.input.y}', parameters: {i: '1:3'}}\n",
    );
    assert_eq!(errs.len(), 2, "{}", SpecErrors(errs.clone()));
    assert!(
        errs[1].message.contains("unknown file `y`"),
        "{:?}",
        errs[1]
    );
    assert!(errs[1].message.contains("3 instances"), "{:?}", errs[1]);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for format in [SpecFormat::Yaml, SpecFormat::Json, SpecFormat::Json5] {
        let text = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(load(&text, format).is_err());
        let text = format!("{}1{}", "{\"a\": ".repeat(50_000), "}".repeat(50_000));
        assert!(load(&text, format).is_err());
    }
    let mut text = String::new();
    for depth in 0..1_000 {
        text.push_str(&" ".repeat(depth));
        text.push_str("a:\n");
    }
    assert!(load(&text, SpecFormat::Yaml).is_err());
}

#[test]
fn max_concurrent_jobs_is_a_positive_cap() {
    let ok = load(
        "name: x\nmax_concurrent_jobs: 3\njobs:\n  - name: a\n    command: \"true\"\n",
        SpecFormat::Yaml,
    )
    .unwrap();
    assert_eq!(ok.def.max_concurrent_jobs, Some(3));
    let none = load("name: x\njobs: []\n", SpecFormat::Yaml).unwrap();
    assert_eq!(none.def.max_concurrent_jobs, None);
    has(
        &errors("name: x\nmax_concurrent_jobs: 0\njobs: []\n"),
        "max_concurrent_jobs",
        "at least 1",
    );
    has(
        &errors("name: x\nmax_concurrent_jobs: many\njobs: []\n"),
        "max_concurrent_jobs",
        "non-negative integer",
    );
}
