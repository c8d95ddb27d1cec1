//! KDL specs, read into the same JSON value a YAML spec gives, so that one reader serves all.
//!
//! # Mapping
//!
//! Torc's KDL form, as its own examples write it:
//!
//! ```kdl
//! name "sweep"
//! variables { root "/scratch" }
//! env { LOG_LEVEL "info" }
//! parameters { lr "[0.001,0.01]" }
//! resource_requirements "small" { num_cpus 2; memory "4g"; runtime "PT30M" }
//! file "input" path="{root}/in.txt"
//! slurm_scheduler "short" { account "me"; walltime "01:00:00" }
//! failure_handler "retry" { rule { exit_codes 10 11; max_retries 2 } }
//! job "train_{lr}" {
//!     command "python train.py --lr {lr}"
//!     depends_on_job "prepare"
//!     input_file "input"
//!     use_parameters "lr"
//!     stdio { mode "combined" }
//! }
//! action { trigger_type "on_jobs_ready"; action_type "schedule_nodes"; job "train_0.001"
//!          scheduler "short" }
//! execution_config { mode "direct"; limit_resources #true }
//! ```
//!
//! - The document is the top-level mapping; each node is one key, its value the node's single
//!   argument (`name "x"`), its arguments as a list when it has several (`exit_codes 10 11`), or
//!   a mapping of its properties and children (`execution_config { ... }`, nested freely).
//! - List entries are one node each, named in the singular or the plural: `job`, `file`,
//!   `user_data`, `resource_requirements`, `failure_handler`, `slurm_scheduler`, `action` (and
//!   `rule` inside a failure handler). The entry's first argument is its `name`; its
//!   properties (`path="..."`) and children are its keys.
//! - Name lists are repeated nodes or several arguments, and take Torc's singular names too:
//!   `depends_on` / `depends_on_job`, `input_file(s)`, `output_file(s)`, `input_user_data`,
//!   `output_user_data`, the `*_regexes`, `label(s)`, `tag(s)`, `use_parameters`; in an
//!   action `job(s)`, `job_name_regex(es)` and `command(s)`; `exit_code(s)` in a rule;
//!   `access_group(s)`.
//! - A user data `data` string holding JSON is that JSON value (as Torc reads it), else the
//!   string itself.
//! - Values keep their KDL types (`#true`, numbers, strings; KDL 1's `true` is read too);
//!   parameter values are strings as in Torc (`"1:10"`, `"[a,b]"`).
//!
//! A node given twice where one value is expected, an argument mixed with a block, or a syntax
//! error is reported with its line and column.

use super::SpecError;
use kdl::{KdlDocument, KdlNode, KdlValue};
use serde_json::{Map, Number, Value};

/// Which kind of block the nodes being read are in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Job,
    File,
    UserData,
    Handler,
    Rule,
    Action,
    /// Any other mapping (resource requirements, schedulers, parameters, env, settings).
    Plain,
}

/// The list a node adds an entry to, and the kind of that entry.
fn entry_list(ctx: Ctx, name: &str) -> Option<(&'static str, Ctx)> {
    Some(match (ctx, name) {
        (Ctx::Top, "job" | "jobs") => ("jobs", Ctx::Job),
        (Ctx::Top, "file" | "files") => ("files", Ctx::File),
        (Ctx::Top, "user_data") => ("user_data", Ctx::UserData),
        (Ctx::Top, "resource_requirements" | "resource_requirement") => {
            ("resource_requirements", Ctx::Plain)
        }
        (Ctx::Top, "failure_handler" | "failure_handlers") => ("failure_handlers", Ctx::Handler),
        (Ctx::Top, "slurm_scheduler" | "slurm_schedulers") => ("slurm_schedulers", Ctx::Plain),
        (Ctx::Top, "action" | "actions") => ("actions", Ctx::Action),
        (Ctx::Handler, "rule" | "rules") => ("rules", Ctx::Rule),
        _ => return None,
    })
}

/// The list key a node's arguments are added to.
fn list_key(ctx: Ctx, name: &str) -> Option<&'static str> {
    const JOB_LISTS: [&str; 13] = [
        "depends_on",
        "depends_on_regexes",
        "input_files",
        "input_file_regexes",
        "output_files",
        "output_file_regexes",
        "input_user_data",
        "input_user_data_regexes",
        "output_user_data",
        "output_user_data_regexes",
        "tags",
        "labels",
        "use_parameters",
    ];
    let alias = match (ctx, name) {
        (Ctx::Job, "depends_on_job") => Some("depends_on"),
        (Ctx::Job, "depends_on_regex") => Some("depends_on_regexes"),
        (Ctx::Job, "input_file") => Some("input_files"),
        (Ctx::Job, "output_file") => Some("output_files"),
        (Ctx::Job, "input_file_regex") => Some("input_file_regexes"),
        (Ctx::Job, "output_file_regex") => Some("output_file_regexes"),
        (Ctx::Job, "tag") => Some("tags"),
        (Ctx::Job, "label") => Some("labels"),
        (Ctx::Action, "job" | "jobs") => Some("jobs"),
        (Ctx::Action, "job_name_regex" | "job_name_regexes") => Some("job_name_regexes"),
        (Ctx::Action, "command" | "commands") => Some("commands"),
        (Ctx::Rule, "exit_code" | "exit_codes") => Some("exit_codes"),
        (Ctx::Top, "access_group" | "access_groups") => Some("access_groups"),
        (Ctx::File | Ctx::UserData, "use_parameters") => Some("use_parameters"),
        _ => None,
    };
    alias.or_else(|| {
        (ctx == Ctx::Job)
            .then(|| JOB_LISTS.iter().copied().find(|k| *k == name))
            .flatten()
    })
}

/// Most slashdashes (`/-`) in a row; real specs use one.
const MAX_SLASHDASH_RUN: usize = 16;

/// Refuses, in one linear pass, the malformed text that the `kdl` parser's error recovery is
/// slow on (it retries from each position, so these cost time quadratic in their length):
/// strings, raw strings and block comments never closed, and long runs of slashdashes. Valid
/// KDL always passes: what is refused would be a syntax error anyway, reported here with where
/// it starts rather than after seconds of recovery.
fn guard(text: &str) -> Result<(), SpecError> {
    let bytes = text.as_bytes();
    let fail = |at: usize, what: &str| SpecError {
        location: line_col(text, at),
        message: format!("invalid KDL: {what}"),
    };
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b >= 0x80;
    let mut slashdashes = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // A raw string: `#"…"#` (KDL 2, any number of `#`) or `r"…"`, `r#"…"#` (KDL 1).
        let v1_raw = b == b'r' && (i == 0 || !ident(bytes[i - 1]));
        if b == b'#' || v1_raw {
            let start = i;
            let mut j = i + usize::from(v1_raw);
            while j < bytes.len() && bytes[j] == b'#' {
                j += 1;
            }
            let hashes = j - start - usize::from(v1_raw);
            if j < bytes.len() && bytes[j] == b'"' && (hashes > 0 || v1_raw) {
                // `"""` opens a multi-line raw string when its closer is there; else `"` a
                // single-line one.
                let hashes = "#".repeat(hashes);
                let multi = format!("\"\"\"{hashes}");
                let single = format!("\"{hashes}");
                let found = text[j..]
                    .starts_with("\"\"\"")
                    .then(|| {
                        text[j + 3..]
                            .find(&multi)
                            .map(|end| j + 3 + end + multi.len())
                    })
                    .flatten()
                    .or_else(|| {
                        text[j + 1..]
                            .find(&single)
                            .map(|end| j + 1 + end + single.len())
                    });
                match found {
                    Some(end) => i = end,
                    None => return Err(fail(start, "a raw string that is never closed")),
                }
                slashdashes = 0;
                continue;
            }
            i = j.max(i + 1);
            slashdashes = 0;
            continue;
        }
        match b {
            b'"' if text[i..].starts_with("\"\"\"\n") || text[i..].starts_with("\"\"\"\r") => {
                // A multi-line string (KDL 2): to the next `"""` not escaped.
                let mut j = i + 3;
                loop {
                    match bytes.get(j) {
                        None => return Err(fail(i, "a multi-line string that is never closed")),
                        Some(b'\\') => j += 2,
                        Some(b'"') if text[j..].starts_with("\"\"\"") => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 3;
                slashdashes = 0;
            }
            b'"' => {
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return Err(fail(i, "a string that is never closed")),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                slashdashes = 0;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start = i;
                let mut depth = 0usize;
                loop {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (None, _) => {
                            return Err(fail(start, "a block comment that is never closed"))
                        }
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'-') => {
                slashdashes += 1;
                if slashdashes > MAX_SLASHDASH_RUN {
                    return Err(fail(
                        i,
                        &format!("more than {MAX_SLASHDASH_RUN} slashdashes (`/-`) in a row"),
                    ));
                }
                i += 2;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                slashdashes = 0;
                i += 1;
            }
        }
    }
    Ok(())
}

/// Parses KDL text (version 2, or version 1) into a spec value.
pub(super) fn parse(text: &str) -> Result<Value, SpecError> {
    guard(text)?;
    let doc = KdlDocument::parse(text).map_err(|e| {
        let first = e.diagnostics.first();
        let offset = first.map_or(0, |d| d.span.offset());
        let mut message = first
            .and_then(|d| d.message.clone())
            .unwrap_or_else(|| "syntax error".to_string());
        if let Some(help) = first.and_then(|d| d.help.as_deref()) {
            message.push_str(&format!(" ({help})"));
        }
        SpecError {
            location: line_col(text, offset),
            message: format!("invalid KDL: {message}"),
        }
    })?;
    let reader = Reader { text };
    Ok(Value::Object(reader.block(&doc, Ctx::Top)?))
}

/// `line L, column C` of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, tail)| tail)
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

struct Reader<'t> {
    text: &'t str,
}

impl Reader<'_> {
    fn error(&self, node: &KdlNode, message: String) -> SpecError {
        SpecError {
            location: line_col(self.text, node.span().offset()),
            message,
        }
    }

    /// The nodes of a block as a mapping.
    fn block(&self, doc: &KdlDocument, ctx: Ctx) -> Result<Map<String, Value>, SpecError> {
        let mut out = Map::new();
        for node in doc.nodes() {
            let name = node.name().value();
            if let Some((list, entry_ctx)) = entry_list(ctx, name) {
                let entry = self.entry(node, entry_ctx)?;
                self.push(&mut out, node, list, [Value::Object(entry)])?;
            } else if let Some(list) = list_key(ctx, name) {
                if node.children().is_some() || node.entries().iter().any(|e| e.name().is_some()) {
                    return Err(self.error(
                        node,
                        format!("`{name}` takes names as arguments (`{name} \"a\" \"b\"`), not properties or a block"),
                    ));
                }
                let values: Vec<Value> = node.entries().iter().map(|e| value(e.value())).collect();
                self.push(&mut out, node, list, values)?;
            } else {
                let mut v = self.node_value(node, Ctx::Plain)?;
                if ctx == Ctx::UserData && name == "data" {
                    if let Value::String(s) = &v {
                        if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                            v = parsed;
                        }
                    }
                }
                if out.contains_key(name) {
                    return Err(self.error(node, format!("`{name}` is given more than once")));
                }
                out.insert(name.to_string(), v);
            }
        }
        Ok(out)
    }

    fn push(
        &self,
        out: &mut Map<String, Value>,
        node: &KdlNode,
        list: &str,
        items: impl IntoIterator<Item = Value>,
    ) -> Result<(), SpecError> {
        match out
            .entry(list.to_string())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(a) => {
                a.extend(items);
                Ok(())
            }
            _ => Err(self.error(
                node,
                format!("`{list}` is given both as a value and as entries"),
            )),
        }
    }

    /// A list entry: `job "name" key=value { children }`.
    fn entry(&self, node: &KdlNode, ctx: Ctx) -> Result<Map<String, Value>, SpecError> {
        let name = node.name().value();
        let mut out = Map::new();
        let mut args = node.entries().iter().filter(|e| e.name().is_none());
        if let Some(first) = args.next() {
            match first.value() {
                KdlValue::String(s) => {
                    out.insert("name".to_string(), Value::String(s.clone()));
                }
                _ => {
                    return Err(self.error(
                        node,
                        format!("the argument of `{name}` is its name and must be a string"),
                    ))
                }
            }
        }
        if args.next().is_some() {
            return Err(self.error(
                node,
                format!("`{name}` takes one argument, its name (`{name} \"x\" {{ ... }}`)"),
            ));
        }
        for e in node.entries() {
            if let Some(key) = e.name() {
                out.insert(key.value().to_string(), value(e.value()));
            }
        }
        if let Some(children) = node.children() {
            for (k, v) in self.block(children, ctx)? {
                if out.contains_key(&k) {
                    return Err(self.error(node, format!("`{k}` is given more than once")));
                }
                out.insert(k, v);
            }
        }
        Ok(out)
    }

    /// A key's value: its argument, its arguments as a list, or a mapping of its properties and
    /// children.
    fn node_value(&self, node: &KdlNode, ctx: Ctx) -> Result<Value, SpecError> {
        let name = node.name().value();
        let args: Vec<Value> = node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .map(|e| value(e.value()))
            .collect();
        let has_props = node.entries().iter().any(|e| e.name().is_some());
        if node.children().is_none() && !has_props {
            return match args.len() {
                0 => Err(self.error(node, format!("`{name}` needs a value"))),
                1 => Ok(args.into_iter().next().unwrap_or(Value::Null)),
                _ => Ok(Value::Array(args)),
            };
        }
        if !args.is_empty() {
            return Err(self.error(
                node,
                format!("`{name}` has both arguments and a block; give one or the other"),
            ));
        }
        let mut out = Map::new();
        for e in node.entries() {
            if let Some(key) = e.name() {
                out.insert(key.value().to_string(), value(e.value()));
            }
        }
        if let Some(children) = node.children() {
            for (k, v) in self.block(children, ctx)? {
                if out.contains_key(&k) {
                    return Err(self.error(node, format!("`{k}` is given more than once")));
                }
                out.insert(k, v);
            }
        }
        Ok(Value::Object(out))
    }
}

fn value(v: &KdlValue) -> Value {
    match v {
        KdlValue::String(s) => Value::String(s.clone()),
        KdlValue::Integer(i) => match i64::try_from(*i) {
            Ok(i) => Value::Number(i.into()),
            // Out of range for the spec anyway: keep the digits, the reader says what is wrong.
            Err(_) => Value::String(i.to_string()),
        },
        KdlValue::Float(x) => Number::from_f64(*x).map_or(Value::Null, Value::Number),
        KdlValue::Bool(b) => Value::Bool(*b),
        KdlValue::Null => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn torc_style_nodes_map_to_the_yaml_shape() {
        let v = parse(
            r#"
name "w"
parameters {
    lr "[0.1,0.2]"
}
file "raw" path="/data/raw.csv"
file "model_{lr}" {
    path "/m/{lr}.pt"
    use_parameters "lr"
}
user_data "meta" {
    is_ephemeral #true
    data "{\"k\": 1}"
}
resource_requirements "small" {
    num_cpus 2
    memory "4g"
}
failure_handler "h" {
    rule {
        exit_codes 10 11
        max_retries 2
    }
    rule {
        match_all_exit_codes #true
    }
}
job "train_{lr}" {
    command "python train.py"
    depends_on_job "prep"
    depends_on "other"
    input_file "raw"
    use_parameters "lr"
    stdio { mode "combined"; }
}
action {
    trigger_type "on_workflow_start"
    action_type "run_commands"
    command "echo a"
    command "echo b"
}
execution_config {
    mode "direct"
    stdio {
        mode "separate"
        delete_on_success #false
    }
}
"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "name": "w",
                "parameters": {"lr": "[0.1,0.2]"},
                "files": [
                    {"name": "raw", "path": "/data/raw.csv"},
                    {"name": "model_{lr}", "path": "/m/{lr}.pt", "use_parameters": ["lr"]},
                ],
                "user_data": [{"name": "meta", "is_ephemeral": true, "data": {"k": 1}}],
                "resource_requirements": [{"name": "small", "num_cpus": 2, "memory": "4g"}],
                "failure_handlers": [{"name": "h", "rules": [
                    {"exit_codes": [10, 11], "max_retries": 2},
                    {"match_all_exit_codes": true},
                ]}],
                "jobs": [{
                    "name": "train_{lr}",
                    "command": "python train.py",
                    "depends_on": ["prep", "other"],
                    "input_files": ["raw"],
                    "use_parameters": ["lr"],
                    "stdio": {"mode": "combined"},
                }],
                "actions": [{
                    "trigger_type": "on_workflow_start",
                    "action_type": "run_commands",
                    "commands": ["echo a", "echo b"],
                }],
                "execution_config": {"mode": "direct", "stdio": {"mode": "separate", "delete_on_success": false}},
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,120}") {
            let _ = parse(&s);
        }

        /// The guard refuses only text the parser refuses too.
        #[test]
        fn the_guard_passes_whatever_parses(s in "(a|r|b1|#true|=|\"[a#/\\\\\"*{}-]{0,4}\"|r\"[a\\\\]{0,2}\"|r#\"[a\"]{0,2}\"#|#\"[a\"#]{0,3}\"#|##\"[a\"#]{0,3}\"##|\"\"\"\n[a\"]{0,3}\n\"\"\"|//[a\"]{0,2}\n|/\\*[a\"/*]{0,3}\\*/|/- |\\{|\\}|;| |\n){0,16}") {
            if KdlDocument::parse(&s).is_ok() {
                proptest::prop_assert!(guard(&s).is_ok(), "{:?}: {:?}", s, guard(&s));
            }
        }

        #[test]
        fn node_like_text_never_panics(s in "(job|file|name|action|parameters|[a-z]{1,3})( \"[a-z{}]{0,3}\"| [0-9]{1,3}| #true| [a-z]=\"x\"| \\{|\\}|\n){0,12}") {
            let _ = parse(&s);
        }
    }

    #[test]
    fn kdl_version_1_booleans_are_read() {
        let v = parse("name \"w\"\nresource_monitor {\n    enabled true\n}\n").unwrap();
        assert_eq!(v["resource_monitor"], json!({"enabled": true}));
    }

    #[test]
    fn problems_have_line_and_column() {
        let e = parse("name \"w\"\njob \"a\" {\n    command \"x\n").unwrap_err();
        assert!(e.location.starts_with("line "), "{e:?}");
        assert!(e.message.starts_with("invalid KDL"), "{e:?}");
        let e = parse("name \"w\"\nname \"v\"\n").unwrap_err();
        assert_eq!(e.location, "line 2, column 1");
        assert!(e.message.contains("more than once"), "{e:?}");
        let e = parse("name \"w\"\njob \"a\" \"b\" {\n}\n").unwrap_err();
        assert_eq!(e.location, "line 2, column 1");
        let e = parse("x\n  description\n").unwrap_err();
        assert!(e.message.contains("needs a value"), "{e:?}");
        let e = parse("job \"a\" {\n  depends_on x=1\n}\n").unwrap_err();
        assert_eq!(e.location, "line 2, column 3");
        assert_eq!(line_col("ab\ncd", 4), "line 2, column 2");
    }

    /// Malformed text the parser's error recovery takes quadratic time on is refused by the
    /// guard at once, with where it starts (before: 1,600 `"+=#` took seconds, unoptimized).
    #[test]
    fn malformed_text_the_parser_is_slow_on_is_refused_at_once() {
        for (text, what) in [
            ("\"+=#".repeat(20_000), "raw string that is never closed"),
            ("a=#\"".repeat(20_000), "raw string that is never closed"),
            ("/- ".repeat(20_000), "slashdashes"),
            (
                format!("a \"{}", "x".repeat(100_000)),
                "string that is never closed",
            ),
            (
                format!("a /* {}", "/* x */".repeat(10_000)),
                "block comment",
            ),
            (
                format!("a \"\"\"\n{}", "x\"".repeat(10_000)),
                "multi-line string",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.message.contains(what), "{}: {err:?}", &text[..20]);
        }
        // What is closed passes the guard.
        let ok = "name w\n/- a\nb r#\"x\"y\"# #\"\"\"\nq\"\n\"\"\"# \"\\\"\" /* /* */ */ // \"\n";
        assert_eq!(guard(ok), Ok(()), "{ok}");
    }
}
