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
        let items = vec![prev.as_str(); 10].join(", ");
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
