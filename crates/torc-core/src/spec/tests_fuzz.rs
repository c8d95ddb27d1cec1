//! Inputs found by fuzzing the spec reader (`fuzz/`, target `spec`), kept as tests.

use super::*;
use std::time::{Duration, Instant};

fn errors(text: &str) -> Vec<SpecError> {
    match load(text, SpecFormat::Yaml) {
        Ok(e) => panic!("expected errors, got {} jobs", e.def.jobs.len()),
        Err(SpecErrors(v)) => v,
    }
}

/// A name unknown to every instance of a large entry: the closest known name is looked for
/// once (for the message shown), not once per instance. Found as pipeline3001.yaml with
/// `parameters` misspelled in its first job, which took 10 s; here 2,500 instances among
/// 7,500 names (within the suggestion's budget of candidates), which compared every instance's name with every name (minutes, unoptimized).
#[test]
fn an_unknown_name_in_every_instance_is_suggested_for_once() {
    let text = r#"
name: w
resource_requirements: [{name: small, num_cpus: 1, memory: 1g}]
jobs:
  - {name: "a_{i}", command: "true", parameters: {i: "1:5000"}}
  - name: "b_{i}"
    command: "true"
    parameters: {i: "1:2500"}
    depends_on: ["a_{i}x"]
    resource_requirements: "smal{i}"
"#;
    let started = Instant::now();
    let errs = errors(text);
    let took = started.elapsed();
    let deps = errs
        .iter()
        .find(|e| e.location.ends_with(".depends_on[0]"))
        .unwrap_or_else(|| panic!("no depends_on error in {}", SpecErrors(errs.clone())));
    assert!(
        deps.message.starts_with("unknown job `a_1x`"),
        "{}",
        deps.message
    );
    assert!(
        deps.message.contains("did you mean `a_1`?"),
        "{}",
        deps.message
    );
    assert!(deps.message.contains("2500"), "{}", deps.message);
    let rr = errs
        .iter()
        .find(|e| e.location.ends_with(".resource_requirements"))
        .unwrap_or_else(|| panic!("no requirement error in {}", SpecErrors(errs.clone())));
    assert!(
        rr.message.contains("did you mean `small`?"),
        "{}",
        rr.message
    );
    assert_eq!(errs.len(), 2, "{}", SpecErrors(errs));
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A range whose end is too large for an integer is read as a float range; its count of
/// values, past u128, was one more than u128::MAX (an overflow; a panic with overflow checks).
#[test]
fn a_range_past_every_integer_is_too_many_values() {
    let end = "8".repeat(80);
    let text = format!(
        "name: w\njobs:\n  - {{name: \"a_{{i}}\", command: x, parameters: {{i: \"1:{end}\"}}}}\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{}", SpecErrors(errs));
    assert!(errs[0].location.contains("parameters"), "{:?}", errs[0]);
}
