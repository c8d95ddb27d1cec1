//! Checks of the workspace's shape that the compiler does not make: which crates may depend on
//! what, that modules import each other one way only, and that no source file grows past what a
//! reader can hold.
//!
//!     cargo run -p xtask -- layout
//!
//! `cargo test --workspace` runs the same checks (the tests at the bottom), so CI fails when a
//! rule is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Crates that do I/O: the scheduling core must never depend on one.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "diesel",
    "diesel_migrations",
    "r2d2",
    "actix-web",
    "actix-rt",
    "actix-server",
    "actix-http",
    "reqwest",
    "hyper",
    "libsqlite3-sys",
    "rusqlite",
    "sqlx",
    "pq-sys",
    "signal-hook",
];

/// Crates the storage layer must not pull in: it has no runtime, no thread and no HTTP.
const NOT_IN_STORE: &[&str] = &[
    "tokio",
    "mio",
    "actix-web",
    "actix-rt",
    "actix-server",
    "actix-http",
    "reqwest",
    "hyper",
];

/// Source files longer than this are to be split by concept.
const MAX_LINES: usize = 850;

/// Crates whose modules must form no import cycle.
const ACYCLIC: &[&str] = &["torc-http", "torc-engine", "torc-store"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("layout") => {
            let problems = layout_problems(&workspace_root());
            if problems.is_empty() {
                println!("layout: dependencies, imports and file sizes are as they should be");
                ExitCode::SUCCESS
            } else {
                for p in &problems {
                    eprintln!("layout: {p}");
                }
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: cargo run -p xtask -- layout");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// Every broken rule, as a sentence.
/// Migrations: each backend's versions (the name up to its first `_`) are unique, since the
/// migration runner keys on them and would skip all but one of a shared version, and both
/// backends have the same migrations.
fn migration_problems(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let names = |backend: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(backend))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (sqlite, postgres) = (names("sqlite"), names("postgres"));
    if sqlite != postgres {
        problems.push(format!(
            "migrations differ between sqlite ({sqlite:?}) and postgres ({postgres:?})"
        ));
    }
    let mut seen = std::collections::BTreeMap::new();
    for name in &sqlite {
        let version = name.split('_').next().unwrap_or(name).to_string();
        if let Some(other) = seen.insert(version.clone(), name.clone()) {
            problems.push(format!(
                "migrations {other} and {name} share version {version}: only one would run"
            ));
        }
    }
    problems
}

fn layout_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (krate, banned) in [("torc-core", IO_CRATES), ("torc-store", NOT_IN_STORE)] {
        match normal_dependencies(root, krate) {
            Ok(deps) => {
                for d in banned.iter().filter(|d| deps.contains(**d)) {
                    problems.push(format!(
                        "{krate} depends on {d} (see `cargo tree -p {krate} -e normal -i {d}`)"
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    problems.extend(migration_problems(
        &root.join("crates/torc-store/migrations"),
    ));
    for krate in ACYCLIC {
        let src = root.join("crates").join(krate).join("src");
        let graph = import_graph(&src);
        if let Some(cycle) = find_cycle(&graph) {
            problems.push(format!(
                "{krate}: modules import each other: {}",
                cycle.join(" -> ")
            ));
        }
    }
    for file in rust_files(root) {
        let lines = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
        if lines > MAX_LINES {
            let shown = file.strip_prefix(root).unwrap_or(&file).display();
            problems.push(format!(
                "{shown} has {lines} lines (at most {MAX_LINES}): split it by concept"
            ));
        }
    }
    problems
}

/// Names of every crate in `krate`'s normal (non-dev, non-build) dependency tree.
fn normal_dependencies(root: &Path, krate: &str) -> Result<BTreeSet<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree -p {krate} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Every `.rs` file of the workspace's crates, binaries and benches (not `target`).
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for top in ["crates", "bins", "benches", "xtask"] {
        walk(&root.join(top), &mut out);
    }
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                walk(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file below `src` (`server/auth/mod.rs` → `server::auth`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// Which module refers to which by path (`crate::a::b`, `super::c`), between modules that are
/// not ancestor and descendant of each other (a parent declares its children; a child may use
/// what its parent holds). Test modules (`tests.rs`, `tests/`) are left out.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(src, f);
        if from.split("::").any(|p| p == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let text = strip_test_modules(&text);
        for target in referenced_paths(text, &from) {
            let Some(to) = longest_module(&modules, &target) else {
                continue;
            };
            if to.split("::").any(|p| p == "tests") || related(&from, &to) {
                continue;
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    graph
}

/// The text before the first `#[cfg(test)]` (test modules sit at the end of a file here).
fn strip_test_modules(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Absolute module paths named in `text` through `crate::` or `super::`, seen from `from`.
fn referenced_paths(text: &str, from: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let before = line[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            out.push(path_at(&line[i + "crate::".len()..]));
        }
        for (i, _) in line.match_indices("super::") {
            let before = line[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            let mut rest = &line[i..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let tail = path_at(rest);
            let joined = base
                .into_iter()
                .map(str::to_string)
                .chain(std::iter::once(tail))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("::");
            out.push(joined);
        }
    }
    out
}

/// The `a::b::c` path at the start of `s` (identifiers joined by `::`).
fn path_at(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':').to_string()
}

/// The longest known module that `path` starts with (the crate root, "", excluded).
fn longest_module(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// True when one module is the other or its ancestor.
fn related(a: &str, b: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}::"))
    };
    within(a, b) || within(b, a)
}

/// A cycle of the graph, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_its_layout() {
        let problems = layout_problems(&workspace_root());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_wire_types_import_nothing_of_the_server() {
        let src = workspace_root().join("crates/torc-http/src");
        let graph = import_graph(&src);
        for (from, to) in &graph {
            if from == "wire" || from.starts_with("wire::") || from == "client" {
                let bad: Vec<_> = to.iter().filter(|t| !t.starts_with("wire")).collect();
                assert!(bad.is_empty(), "{from} imports {bad:?}");
            }
        }
        assert!(
            graph.contains_key("server::handlers"),
            "the graph sees imports: {graph:?}"
        );
    }

    #[test]
    fn a_cycle_is_found_and_parents_are_not_one() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(find_cycle(&g), None);
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(
            find_cycle(&g),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert!(related("server", "server::auth"));
        assert!(!related("server::auth", "server::service"));
    }

    #[test]
    fn paths_are_read_from_use_lines_and_expressions() {
        let text = "use crate::wire::{Job, JobPage};\nlet x = crate::server::error::json_config(1);\nuse super::park::Parked;\n";
        let got = referenced_paths(text, "writer::lease");
        assert_eq!(
            got,
            ["wire", "server::error::json_config", "writer::park::Parked"]
        );
    }
}
