//! `torc workflows graph`: a workflow's dependency graph as Graphviz DOT, Mermaid, or SVG (DOT
//! rendered by Graphviz's `dot`), from a spec file (expanded by torc-core, no database needed)
//! or a stored workflow (with each job's state).
//!
//! Parameter sweeps are collapsed so that a graph of thousands of jobs stays readable. Jobs are
//! grouped by their *shape*: the name and the command with every run of digits replaced by `#`
//! (`a_17` and `a_0042` are both `a_#`), refined until the jobs of a group depend on the same
//! groups and are depended on by the same groups (partition refinement; a chain `s_1 -> s_2 ->
//! ...` therefore splits back into single jobs, as it should). A group of more than `collapse`
//! jobs becomes one node labelled with its first and last job and its count; smaller groups are
//! drawn job by job. Edges between nodes are merged; a merged edge says `1:1` (instance by
//! instance), `all` (every job on every job) or how many dependencies it stands for.

use crate::cli::{Global, GraphArgs, GraphFormat};
use crate::out::outln;
use crate::run::{load_spec, open_existing_store};
use crate::Exit;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use torc_core::model::WorkflowDef;
use torc_core::{JobStatus, WorkflowId};

/// One node of the drawn graph: a job, or a collapsed group of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Indexes of the jobs it stands for, in id order.
    pub jobs: Vec<usize>,
    pub label: String,
    /// Jobs by state, when states are known.
    pub states: BTreeMap<JobStatus, u64>,
}

/// The graph as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub title: String,
    pub nodes: Vec<Node>,
    /// (from, to, dependencies it stands for): `to` depends on `from`.
    pub edges: Vec<(usize, usize, u64)>,
}

/// A name or command with every run of ASCII digits replaced by `#`.
fn skeleton(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Renumbers `keys` densely in order of first appearance; returns the classes and their count.
fn classes_of<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> (Vec<usize>, usize) {
    let mut ids: HashMap<K, usize> = HashMap::new();
    let classes = keys
        .map(|k| {
            let next = ids.len();
            *ids.entry(k).or_insert(next)
        })
        .collect();
    (classes, ids.len())
}

/// Groups the jobs of `def` (see the module doc): the class of each job.
pub fn group(def: &WorkflowDef) -> Vec<usize> {
    let n = def.jobs.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, job) in def.jobs.iter().enumerate() {
        for d in &job.depends_on {
            if let Some(list) = dependents.get_mut(d.index()) {
                list.push(i);
            }
        }
    }
    let (mut class, mut count) = classes_of(
        def.jobs
            .iter()
            .map(|j| (skeleton(&j.name), skeleton(&j.command))),
    );
    loop {
        let signature = |i: usize| {
            let of = |list: &mut dyn Iterator<Item = usize>| {
                let mut v: Vec<usize> = list.map(|j| class[j]).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let preds = of(&mut def.jobs[i].depends_on.iter().map(|d| d.index()));
            let succs = of(&mut dependents[i].iter().copied());
            (class[i], preds, succs)
        };
        let (next, next_count) = classes_of((0..n).map(signature));
        // Refinement only splits classes: an unchanged count means nothing changed.
        if next_count == count {
            return class;
        }
        class = next;
        count = next_count;
    }
}

/// The drawn graph of `def`; `states` (index = job index) when known. Groups of more than
/// `collapse` jobs become one node.
pub fn build(def: &WorkflowDef, states: Option<&[JobStatus]>, collapse: usize) -> Graph {
    let class = group(def);
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in class.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let mut node_of = vec![0; def.jobs.len()];
    let mut nodes = Vec::new();
    // Nodes in the order of their first job, so that output follows the spec.
    let mut groups: Vec<Vec<usize>> = members.into_values().collect();
    groups.sort_by_key(|g| g[0]);
    for jobs in groups {
        let parts: Vec<Vec<usize>> = if jobs.len() > collapse {
            vec![jobs]
        } else {
            jobs.into_iter().map(|j| vec![j]).collect()
        };
        for jobs in parts {
            let label = match jobs.as_slice() {
                [one] => def.jobs[*one].name.clone(),
                [first, .., last] => format!(
                    "{} … {} ({} jobs)",
                    def.jobs[*first].name,
                    def.jobs[*last].name,
                    jobs.len()
                ),
                [] => continue,
            };
            let mut by_state = BTreeMap::new();
            if let Some(states) = states {
                for &j in &jobs {
                    if let Some(&s) = states.get(j) {
                        *by_state.entry(s).or_insert(0) += 1;
                    }
                }
            }
            for &j in &jobs {
                node_of[j] = nodes.len();
            }
            nodes.push(Node {
                jobs,
                label,
                states: by_state,
            });
        }
    }
    let mut edges: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (i, job) in def.jobs.iter().enumerate() {
        for d in &job.depends_on {
            if let Some(&from) = node_of.get(d.index()) {
                *edges.entry((from, node_of[i])).or_insert(0) += 1;
            }
        }
    }
    Graph {
        title: def.name.clone(),
        nodes,
        edges: edges.into_iter().map(|((a, b), n)| (a, b, n)).collect(),
    }
}

/// The state a node is coloured by: its worst (failed over running over ... over completed).
fn shown_state(node: &Node) -> Option<JobStatus> {
    const ORDER: [JobStatus; 11] = [
        JobStatus::Failed,
        JobStatus::PendingFailed,
        JobStatus::Terminated,
        JobStatus::Canceled,
        JobStatus::Running,
        JobStatus::Pending,
        JobStatus::Ready,
        JobStatus::Blocked,
        JobStatus::Uninitialized,
        JobStatus::Disabled,
        JobStatus::Completed,
    ];
    ORDER.into_iter().find(|s| node.states.contains_key(s))
}

fn fill(state: JobStatus) -> &'static str {
    match state {
        JobStatus::Completed => "#b7e1b0",
        JobStatus::Failed | JobStatus::PendingFailed => "#f4a6a6",
        JobStatus::Terminated | JobStatus::Canceled => "#f7d794",
        JobStatus::Running | JobStatus::Pending => "#a6c8f4",
        _ => "#eeeeee",
    }
}

/// The lines of a node's label: its name(s), then its jobs by state when known.
fn label_lines(node: &Node) -> Vec<String> {
    let mut lines = vec![node.label.clone()];
    if !node.states.is_empty() {
        let counts: Vec<String> = node
            .states
            .iter()
            .map(|(s, n)| match node.jobs.len() {
                1 => s.name().to_string(),
                _ => format!("{n} {s}"),
            })
            .collect();
        lines.push(counts.join(", "));
    }
    lines
}

fn dot_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How an edge is labelled: nothing for one dependency, `1:1` for a sweep feeding a sweep
/// instance by instance, `all` when every job of one depends on every job of the other, else
/// the number of dependencies.
fn edge_label(g: &Graph, from: usize, to: usize, n: u64) -> Option<String> {
    let (a, b) = (
        g.nodes[from].jobs.len() as u64,
        g.nodes[to].jobs.len() as u64,
    );
    match n {
        1 => None,
        n if a > 1 && b > 1 && n == a && n == b => Some("1:1".into()),
        n if a > 1 && b > 1 && n == a * b => Some("all".into()),
        n => Some(n.to_string()),
    }
}

/// Graphviz DOT text.
pub fn to_dot(g: &Graph) -> String {
    let mut s = format!(
        "digraph {} {{\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        dot_quote(&g.title)
    );
    for (i, node) in g.nodes.iter().enumerate() {
        let label = dot_quote(&label_lines(node).join("\n"));
        let mut attrs = format!("label={label}");
        if let Some(state) = shown_state(node) {
            attrs.push_str(&format!(", fillcolor=\"{}\"", fill(state)));
        }
        if node.jobs.len() > 1 {
            attrs.push_str(", peripheries=2");
        }
        s.push_str(&format!("  n{i} [{attrs}];\n"));
    }
    for &(a, b, n) in &g.edges {
        match edge_label(g, a, b, n) {
            None => s.push_str(&format!("  n{a} -> n{b};\n")),
            Some(l) => s.push_str(&format!("  n{a} -> n{b} [label=\"{l}\"];\n")),
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid_text(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Mermaid flowchart text.
pub fn to_mermaid(g: &Graph) -> String {
    let mut s = format!(
        "---\ntitle: {}\n---\nflowchart TD\n",
        mermaid_text(&g.title)
    );
    for (i, node) in g.nodes.iter().enumerate() {
        let lines: Vec<String> = label_lines(node).iter().map(|l| mermaid_text(l)).collect();
        let label = lines.join("<br>");
        match node.jobs.len() {
            1 => s.push_str(&format!("  n{i}[\"{label}\"]\n")),
            // A collapsed sweep: a stacked shape.
            _ => s.push_str(&format!("  n{i}[[\"{label}\"]]\n")),
        }
    }
    for &(a, b, n) in &g.edges {
        match edge_label(g, a, b, n) {
            None => s.push_str(&format!("  n{a} --> n{b}\n")),
            Some(l) => s.push_str(&format!("  n{a} -->|{l}| n{b}\n")),
        }
    }
    let mut styled: BTreeMap<JobStatus, Vec<String>> = BTreeMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        if let Some(state) = shown_state(node) {
            styled.entry(state).or_default().push(format!("n{i}"));
        }
    }
    for (state, ids) in styled {
        s.push_str(&format!("  classDef {state} fill:{}\n", fill(state)));
        s.push_str(&format!("  class {} {state}\n", ids.join(",")));
    }
    s
}

/// SVG drawn by Graphviz's `dot` from the DOT text.
fn to_svg(dot: &str) -> Result<Vec<u8>> {
    let mut child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Exit {
                code: 1,
                message: "--format svg needs Graphviz's `dot` program, which is not on PATH: \
                          install Graphviz (e.g. `apt-get install graphviz`), or write \
                          --format dot and render it elsewhere"
                    .into(),
            }
            .into())
        }
        Err(e) => return Err(e).context("cannot run Graphviz's `dot`"),
    };
    // Write from a thread: `dot` may fill its output pipe before it has read all its input.
    let mut stdin = child.stdin.take().context("no stdin for `dot`")?;
    let text = dot.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child
        .wait_with_output()
        .context("cannot run Graphviz's `dot`")?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to `dot` failed"))?;
    if !out.status.success() {
        anyhow::bail!(
            "Graphviz's `dot` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("cannot write to Graphviz's `dot`")?;
    Ok(out.stdout)
}

/// The format asked for, else the one the output file's extension names, else DOT.
fn format_of(args: &GraphArgs) -> GraphFormat {
    if let Some(f) = args.format {
        return f;
    }
    let ext = args
        .output
        .as_deref()
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => GraphFormat::Svg,
        Some("mmd" | "mermaid") => GraphFormat::Mermaid,
        _ => GraphFormat::Dot,
    }
}

/// `torc workflows graph`.
pub fn graph(global: &Global, args: &GraphArgs) -> Result<ExitCode> {
    let as_path = Path::new(&args.spec_or_id);
    let (def, states) = match args.spec_or_id.parse::<i64>() {
        Ok(id) if !as_path.exists() => {
            if global.url.is_some() {
                return Err(Exit {
                    code: 2,
                    message: "the graph of a server's workflow is not served yet: give its \
                              spec file instead of its id"
                        .into(),
                }
                .into());
            }
            let loaded = open_existing_store(global)?.load_workflow(WorkflowId(id))?;
            let states: Vec<JobStatus> = loaded.jobs.iter().map(|j| j.status).collect();
            (loaded.def, Some(states))
        }
        _ => (load_spec(as_path)?.0.def, None),
    };
    let collapse = if args.all_jobs {
        usize::MAX
    } else {
        args.collapse
    };
    let g = build(&def, states.as_deref(), collapse);
    let bytes = match format_of(args) {
        GraphFormat::Dot => to_dot(&g).into_bytes(),
        GraphFormat::Mermaid => to_mermaid(&g).into_bytes(),
        GraphFormat::Svg => to_svg(&to_dot(&g))?,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let text = String::from_utf8_lossy(&bytes);
            outln!("{}", text.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use torc_core::model::JobDef;
    use torc_core::JobId;

    fn def(jobs: &[(&str, &[u32])]) -> WorkflowDef {
        let text = "name: t\njobs:\n  - name: x\n    command: x\n";
        let mut def = torc_core::spec::load(text, torc_core::spec::SpecFormat::Yaml)
            .unwrap()
            .def;
        def.jobs = jobs
            .iter()
            .map(|(name, deps)| JobDef {
                depends_on: deps.iter().map(|&d| JobId(d)).collect(),
                ..JobDef::new(*name, "true")
            })
            .collect();
        def
    }

    #[test]
    fn skeletons_replace_digit_runs() {
        assert_eq!(skeleton("a_17"), "a_#");
        assert_eq!(skeleton("a_0042_x9"), "a_#_x#");
        assert_eq!(skeleton("prep"), "prep");
    }

    #[test]
    fn a_sweep_collapses_and_its_fan_in_stays_one_node() {
        // prep -> w_1..w_8 -> post
        let mut jobs: Vec<(String, Vec<u32>)> = vec![("prep".into(), vec![])];
        for i in 1..=8 {
            jobs.push((format!("w_{i}"), vec![1]));
        }
        jobs.push(("post".into(), (2..=9).collect()));
        let borrowed: Vec<(&str, &[u32])> = jobs
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let g = build(&def(&borrowed), None, 5);
        let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(labels, ["prep", "w_1 … w_8 (8 jobs)", "post"]);
        assert_eq!(g.edges, [(0, 1, 8), (1, 2, 8)]);
        // Under the threshold, every job is drawn.
        assert_eq!(build(&def(&borrowed), None, 8).nodes.len(), 10);
    }

    #[test]
    fn a_chain_of_similar_names_is_not_collapsed() {
        let g = build(
            &def(&[
                ("s_1", &[]),
                ("s_2", &[1]),
                ("s_3", &[2]),
                ("s_4", &[3]),
                ("s_5", &[4]),
                ("s_6", &[5]),
                ("s_7", &[6]),
            ]),
            None,
            5,
        );
        assert_eq!(g.nodes.len(), 7);
        assert_eq!(g.edges.len(), 6);
    }

    #[test]
    fn labels_are_escaped() {
        let g = build(&def(&[("say \"hi\" <now>", &[])]), None, 5);
        assert!(to_dot(&g).contains(r#"label="say \"hi\" <now>""#));
        assert!(to_mermaid(&g).contains("say #quot;hi#quot; #lt;now#gt;"));
    }
}
