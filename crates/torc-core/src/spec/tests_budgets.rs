//! Budgets: hostile specs are refused before they cost much, each refusal naming its budget,
//! and a spec just under each budget passes.

use super::*;

fn small(f: impl FnOnce(&mut Budgets)) -> Budgets {
    let mut b = Budgets::default();
    f(&mut b);
    b
}

fn load_yaml(text: &str, budgets: &Budgets) -> Result<Expanded, SpecErrors> {
    load_with_budgets(text, SpecFormat::Yaml, None, budgets)
}

/// Asserts that loading fails with an error naming `budget` (`spec exceeds the budget for
/// {budget} (`), and returns it.
#[track_caller]
fn refused(result: Result<Expanded, SpecErrors>, budget: &str) -> SpecError {
    let errs = match result {
        Ok(e) => panic!("expected a refusal, got {} jobs", e.def.jobs.len()),
        Err(SpecErrors(v)) => v,
    };
    let wanted = format!("spec exceeds the budget for {budget} (");
    errs.iter()
        .find(|e| e.message.starts_with(&wanted))
        .cloned()
        .unwrap_or_else(|| panic!("no `{wanted}` in:\n{}", SpecErrors(errs)))
}

/// Nine levels of ten aliases each: 10^9 scalars from 600 bytes.
fn billion_laughs() -> String {
    let mut text = String::from("name: lol\nx0: &x0 [");
    text.push_str(&["lol"; 10].join(", "));
    text.push_str("]\n");
    for level in 1..9 {
        let prev = format!("*x{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("x{level}: &x{level} [{items}]\n"));
    }
    text.push_str("jobs:\n  - name: a\n    command: echo\n    tags: *x8\n");
    text
}

/// Few aliases, each replaying many nodes: 3 * 100 * 100 * 500 = 15 million scalars from 2 KB
/// (the YAML parser's own limit counts aliases, not what they replay).
fn wide_laughs() -> String {
    let mut text = String::from("name: lol\nx0: &x0 [");
    text.push_str(&["l"; 500].join(","));
    text.push_str("]\nx1: &x1 [");
    text.push_str(&["*x0"; 100].join(","));
    text.push_str("]\nx2: &x2 [");
    text.push_str(&["*x1"; 100].join(","));
    text.push_str("]\nx3: &x3 [");
    text.push_str(&["*x2"; 3].join(","));
    text.push_str("]\njobs: []\n");
    text
}

#[test]
fn yaml_aliases_that_expand_too_far_are_refused() {
    for text in [billion_laughs(), wide_laughs()] {
        let e = refused(
            load(&text, SpecFormat::Yaml),
            "YAML nodes replayed by aliases",
        );
        assert!(e.message.contains("(1000000)"), "{e:?}");
        assert!(e.message.contains("aliases"), "{e:?}");
    }
}

#[test]
fn yaml_anchors_and_merges_within_the_budget_still_work() {
    let text = "name: m\ndefaults: &d\n  command: echo hi\n  tags: [t]\njobs:\n  - <<: *d\n    name: a\n  - <<: *d\n    name: b\n    tags: [u]\n";
    let budgets = small(|b| b.yaml_alias_nodes = 20);
    let e = load_yaml(&format!("{text}x_: 1\n"), &budgets).unwrap_err();
    // Only the unknown keys: the aliases fit.
    assert!(e.0.iter().all(|e| e.message.contains("unknown key")), "{e}");
    let ok = load_yaml(text, &budgets);
    let errs = ok.unwrap_err();
    assert!(errs.0.iter().all(|e| e.location == "defaults"), "{errs}");
    // A thousand merged defaults of some fifty nodes each: more nodes than bytes.
    let mut many = format!(
        "name: m\njobs:\n  - &d {{name: a0, command: echo, tags: [{}]}}\n",
        ["x"; 50].join(",")
    );
    for i in 1..1000 {
        many.push_str(&format!("  - {{<<: *d, name: a{i}}}\n"));
    }
    let e = load(&many, SpecFormat::Yaml).unwrap();
    assert_eq!(e.def.jobs.len(), 1000);
    assert_eq!(e.def.jobs[999].tags, ["x"]);
    assert!(many.len() < 30_000);
    refused(
        load_yaml(&many, &small(|b| b.yaml_alias_nodes = 100)),
        "YAML nodes replayed by aliases",
    );
}

/// Runs `f` on a thread with the default 2 MiB stack, as a server's worker would.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_nesting_is_refused_in_every_syntax_without_overflowing_the_stack() {
    on_small_stack(|| {
        let deep = 100_000;
        let cases = [
            (SpecFormat::Json5, "[".repeat(deep)),
            (SpecFormat::Json, "[".repeat(deep)),
            (SpecFormat::Yaml, format!("a: {}", "[".repeat(deep))),
            (SpecFormat::Yaml, "- ".repeat(deep)),
            (
                SpecFormat::Kdl,
                format!("{}{}", "a {\n".repeat(deep), "}\n".repeat(deep)),
            ),
        ];
        for (format, text) in cases {
            let e = load(&text, format).unwrap_err();
            assert_eq!(e.0.len(), 1, "{format:?}: {e}");
        }
        let e = load(&"a {\n".repeat(200), SpecFormat::Kdl).unwrap_err();
        assert!(e.0[0].message.contains("nested more than 128"), "{e}");
    });
}

#[test]
fn jobs_and_the_product_of_parameter_sizes() {
    let spec = |n: u32| {
        format!("name: j\njobs:\n  - {{name: 'a_{{i}}', command: x, parameters: {{i: '1:{n}'}}}}\n")
    };
    let budgets = small(|b| b.jobs = 10);
    assert_eq!(load_yaml(&spec(10), &budgets).unwrap().def.jobs.len(), 10);
    let e = refused(load_yaml(&spec(11), &budgets), "jobs");
    assert_eq!(e.location, r#"jobs[0] ("a_{i}")"#);
    assert!(
        e.message.contains("more than 10 jobs (11 from this entry"),
        "{e:?}"
    );
    // Seven parameters of a thousand values: the product overflows, and nothing is made.
    let params: Vec<String> = (0..7).map(|k| format!("p{k}: '1:1000'")).collect();
    let text = format!(
        "name: j\njobs:\n  - {{name: 'a_{}', command: x, parameters: {{{}}}}}\n",
        (0..7).map(|k| format!("{{p{k}}}")).collect::<String>(),
        params.join(", ")
    );
    let e = refused(load(&text, SpecFormat::Yaml), "jobs");
    assert!(
        e.message.contains("more than 2^64 from this entry"),
        "{e:?}"
    );
}

#[test]
fn files_and_user_data_count_with_jobs() {
    let spec = |extra: &str| {
        format!(
            "name: i\nfiles: [{{name: 'f_{{i}}', path: 'p_{{i}}', parameters: {{i: '1:4'}}}}]\njobs:\n  - {{name: 'a_{{i}}', command: x, parameters: {{i: '1:5'}}}}\n{extra}"
        )
    };
    let budgets = small(|b| b.instances = 10);
    let ok = load_yaml(&spec("user_data: [{name: d}]\n"), &budgets).unwrap();
    assert_eq!(
        (
            ok.def.files.len(),
            ok.def.jobs.len(),
            ok.def.user_data.len()
        ),
        (4, 5, 1)
    );
    let e = refused(
        load_yaml(&spec("user_data: [{name: d}, {name: e}]\n"), &budgets),
        "expanded jobs, files and user data",
    );
    assert_eq!(e.location, r#"jobs[0] ("a_{i}")"#);
    assert!(
        e.message.contains("(10): this entry makes 5 jobs, after 6"),
        "{e:?}"
    );
}

#[test]
fn parameter_ranges_are_counted_before_their_values_are_made() {
    let spec = |j: &str| {
        format!("name: p\njobs:\n  - {{name: 'a_{{i}}_{{j}}', command: x, parameters: {{i: '1:8', j: '{j}'}}}}\n")
    };
    let budgets = small(|b| b.parameter_values = 10);
    assert_eq!(
        load_yaml(&spec("1:2"), &budgets).unwrap().def.jobs.len(),
        16
    );
    let e = refused(load_yaml(&spec("1:3"), &budgets), "parameter values");
    assert_eq!(e.location, r#"jobs[0] ("a_{i}_{j}").parameters.j"#);
    assert!(e.message.contains("`1:3` makes 3 values, after 8"), "{e:?}");
    // Many big ranges: refused at the budget, not at the product.
    let params: Vec<String> = (0..100).map(|k| format!("p{k}: '1:9000000'")).collect();
    let text = format!(
        "name: p\njobs:\n  - {{name: a, command: x, parameters: {{{}}}}}\n",
        params.join(", ")
    );
    refused(load(&text, SpecFormat::Yaml), "parameter values");
}

#[test]
fn dependency_edges_are_counted_before_they_are_added() {
    let regex = "name: e\njobs:\n  - {name: 'a_{i}', command: x, parameters: {i: '1:10'}}\n  - {name: b, command: x, depends_on_regexes: ['^a_']}\n";
    assert_eq!(
        load_yaml(regex, &small(|b| b.dependency_edges = 10))
            .unwrap()
            .def
            .jobs[10]
            .depends_on
            .len(),
        10
    );
    let e = refused(
        load_yaml(regex, &small(|b| b.dependency_edges = 9)),
        "dependency edges",
    );
    assert!(e.message.contains("matches 10 names"), "{e:?}");
    // Ten writers of one file, ten readers: 100 implied edges, plus 20 relations to the file.
    let data = "name: e\nfiles: [{name: f, path: p}]\njobs:\n  - {name: 'w_{i}', command: x, output_files: [f], parameters: {i: '1:10'}}\n  - {name: 'r_{i}', command: x, input_files: [f], parameters: {i: '1:10'}}\n";
    let ok = load_yaml(data, &small(|b| b.dependency_edges = 120)).unwrap();
    assert_eq!(ok.def.jobs[19].depends_on.len(), 10);
    let e = refused(
        load_yaml(data, &small(|b| b.dependency_edges = 119)),
        "dependency edges",
    );
    assert_eq!(e.location, "jobs");
    assert!(e.message.contains("their 100 writers"), "{e:?}");
}

#[test]
fn rendered_bytes_are_estimated_before_rendering_and_counted_while_rendering() {
    let command = "x".repeat(100);
    let spec = format!("name: r\njobs:\n  - {{name: 'a_{{i}}', command: '{command}', parameters: {{i: '1:10'}}}}\n");
    // 10 instances of a 5-byte name and a 100-byte command.
    load_yaml(&spec, &small(|b| b.rendered_bytes = 1050)).unwrap();
    let e = refused(
        load_yaml(&spec, &small(|b| b.rendered_bytes = 1049)),
        "rendered bytes",
    );
    assert!(
        e.message.contains("(105 bytes) times its 10 instances"),
        "{e:?}"
    );
    // A long parameter value makes more than the templates' length.
    let long = "y".repeat(1000);
    let spec = format!("name: r\njobs:\n  - {{name: 'a_{{i}}', command: 'echo {{s}}', parameters: {{i: '1:10', s: ['{long}']}}}}\n");
    load_yaml(&spec, &small(|b| b.rendered_bytes = 10_100)).unwrap();
    let e = refused(
        load_yaml(&spec, &small(|b| b.rendered_bytes = 5_000)),
        "rendered bytes",
    );
    assert!(
        e.message.contains("instances of this entry render"),
        "{e:?}"
    );
    // Variables are counted as they are written in.
    let spec = format!(
        "name: r\nvariables: {{v: '{long}'}}\njobs:\n{}",
        (0..10)
            .map(|i| format!("  - {{name: a{i}, command: 'echo {{v}}'}}\n"))
            .collect::<String>()
    );
    load_yaml(&spec, &small(|b| b.rendered_bytes = 25_000)).unwrap();
    let e = refused(
        load_yaml(&spec, &small(|b| b.rendered_bytes = 5_000)),
        "rendered bytes",
    );
    assert!(
        e.message.contains("variable `v` writes in 1000 more bytes"),
        "{e:?}"
    );
}

#[test]
fn regex_work_is_counted_before_scanning() {
    // No literal prefix: each distinct regex is tested against all 11 job names.
    let spec = "name: w\njobs:\n  - {name: 'a_{i}', command: x, parameters: {i: '1:10'}}\n  - {name: b, command: x, depends_on_regexes: ['_1', '_1', '^a_1.*']}\n";
    load_yaml(spec, &small(|b| b.regex_work = 11 + 2)).unwrap();
    let e = refused(
        load_yaml(spec, &small(|b| b.regex_work = 12)),
        "regex work (names tested against regexes)",
    );
    assert_eq!(e.location, r#"jobs[1] ("b").depends_on_regexes[2]"#);
}

#[test]
fn suggestions_skip_long_words_and_many_candidates() {
    let spec = |dep: &str| {
        format!("name: s\njobs:\n  - {{name: 'a_{{i}}', command: x, parameters: {{i: '1:20'}}}}\n  - {{name: b, command: x, depends_on: ['{dep}']}}\n")
    };
    let message =
        |text: &str, budgets: &Budgets| load_yaml(text, budgets).unwrap_err().0[0].message.clone();
    let d = Budgets::default();
    let m = message(&spec("a_21"), &d);
    assert!(m.ends_with("did you mean `a_1`?"), "{m}");
    let few = small(|b| b.suggestion_candidates = 20);
    assert!(!message(&spec("a_21"), &few).contains("did you mean"));
    let long = format!("a_{}", "1".repeat(70));
    assert!(!message(&spec(&long), &d).contains("did you mean"));
    // A problem every instance has is said once: one suggestion, not one per instance.
    let spec = "name: s\njobs:\n  - {name: 'a_{i}', command: x, parameters: {i: '1:5000'}}\n  - {name: 'b_{i}', command: x, depends_on: ['c_{i}'], parameters: {i: '1:5000'}}\n";
    let errs = load(spec, SpecFormat::Yaml).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{}", SpecErrors(errs.clone()));
    assert!(errs[0].message.contains("did you mean"), "{errs:?}");
}

#[test]
fn durations_and_sizes_out_of_range_are_validation_errors() {
    let errs = load(
        "name: u\nresource_requirements:\n  - {name: r, num_cpus: 1, memory: 2048t, runtime: P36526D}\n  - {name: s, num_cpus: 1, memory: 1152921504606846976}\njobs:\n  - {name: a, command: x, timeout: PT9223372036854775807S, resource_requirements: r}\n",
        SpecFormat::Yaml,
    )
    .unwrap_err()
    .0;
    let at = |location: &str, fragment: &str| {
        assert!(
            errs.iter()
                .any(|e| e.location == location && e.message.contains(fragment)),
            "no `{fragment}` at `{location}` in:\n{}",
            SpecErrors(errs.clone())
        )
    };
    at(
        r#"jobs[0] ("a").timeout"#,
        "`PT9223372036854775807S` is longer than the limit of 100 years",
    );
    at(
        r#"resource_requirements[0] ("r").runtime"#,
        "limit of 100 years",
    );
    at(r#"resource_requirements[0] ("r").memory"#, "limit of 1 PiB");
    at(r#"resource_requirements[1] ("s").memory"#, "limit of 1 PiB");
    assert_eq!(errs.len(), 4, "{}", SpecErrors(errs.clone()));
    let ok = load(
        "name: u\nresource_requirements: [{name: r, num_cpus: 1, memory: 1024t, runtime: P36525D}]\njobs:\n  - {name: a, command: x, timeout: P36525D, resource_requirements: r}\n",
        SpecFormat::Yaml,
    )
    .unwrap();
    assert_eq!(ok.def.jobs[0].timeout, Some(crate::units::MAX_DURATION));
}
