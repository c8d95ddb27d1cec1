//! Specs read by the CLI: dry runs, bad and hostile specs (exit 2), Torc 1.x examples.

use super::*;

#[test]
fn dry_run_counts_jobs_and_bad_specs_exit_2_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example("pipeline3001.yaml");
    let out = torc_in(
        dir.path(),
        &["workflows", "create", "--dry-run", spec.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3001 jobs"),
        "{}",
        text(&out.stdout)
    );

    let bad = write_spec(
        dir.path(),
        "bad.yaml",
        "name: bad\njobs:\n  - name: a\n    command: x\n    depend_on: [b]\n",
    );
    for args in [
        vec!["workflows", "create", "--dry-run", bad.to_str().unwrap()],
        vec!["run", bad.to_str().unwrap()],
    ] {
        let out = torc_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(
            err.contains("depend_on") && err.contains("depends_on"),
            "{err}"
        );
    }
    assert!(
        !dir.path().join("torc_output").exists(),
        "a bad spec wrote something"
    );
}

#[test]
fn hostile_specs_exit_2_naming_their_budget_or_limit() {
    let dir = tempfile::tempdir().unwrap();
    // A few hundred bytes whose aliases stand for a billion nodes.
    let mut laughs =
        String::from("name: lol\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let prev = format!("*x{}", level - 1);
        laughs.push_str(&format!(
            "x{level}: &x{level} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    laughs.push_str("jobs:\n  - {name: a, command: echo, tags: *x8}\n");
    let laughs = write_spec(dir.path(), "laughs.yaml", &laughs);
    let forever = write_spec(
        dir.path(),
        "forever.yaml",
        "name: f\njobs:\n  - {name: a, command: x, timeout: PT9223372036854775807S}\n",
    );
    for (spec, says) in [
        (
            &laughs,
            "exceeds the budget for YAML nodes replayed by aliases",
        ),
        (&forever, "longer than the limit of 100 years"),
    ] {
        for args in [
            vec!["workflows", "create", "--dry-run", spec.to_str().unwrap()],
            vec!["run", spec.to_str().unwrap()],
        ] {
            let out = torc_in(dir.path(), &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = text(&out.stderr);
            assert!(err.contains(says), "{err}");
        }
    }
}

#[test]
fn torc1x_examples_validate_alike_in_yaml_and_kdl() {
    // The examples name their tables relative to the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut seen = Vec::new();
    for spec in ["examples/torc1x/sweep.yaml", "examples/torc1x/sweep.kdl"] {
        let out = json(&root, &["workflows", "create", "--dry-run", "--json", spec]);
        assert_eq!(out["num_jobs"], 7, "{spec}: {out}");
        assert_eq!(out["num_files"], 4, "{spec}: {out}");
        seen.push((out["num_jobs"].clone(), out["num_dependencies"].clone()));
    }
    assert_eq!(seen[0], seen[1]);
}
