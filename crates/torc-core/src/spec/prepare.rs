//! The passes over the parsed value before it is read: `variables` substituted into every
//! string, then parameter tables (`parameters_file`) and `@path` value lists written in from a
//! [`TableSource`]. What comes out is self-contained: no variables, no file names.
//!
//! Tables are written in as a list of row mappings under the same `parameters_file` key, and
//! `@path` lists as plain lists, so that a spec sent on to a server needs nothing but itself.

use super::budget::Budget;
use super::diag::{Errors, Loc};
use super::params::{is_param_name, type_name, typed_item, ParamValue};
use super::template::format_value;
use super::TableSource;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// The lists whose entries take parameters.
const PARAMETERIZED: [&str; 3] = ["jobs", "files", "user_data"];

/// Runs both passes; returns whether any table or list was read in.
pub(super) fn prepare(
    value: &mut Value,
    tables: Option<&dyn TableSource>,
    errs: &mut Errors,
) -> bool {
    let Some(map) = value.as_object_mut() else {
        return false;
    };
    let unknown = match map.shift_remove("variables") {
        Some(vars) => {
            // A variable named like a parameter is not substituted (the clash is reported).
            let params: BTreeSet<String> = parameter_names(map)
                .into_iter()
                .map(str::to_string)
                .collect();
            substitute_variables(map, &vars, &params, errs)
        }
        None => None,
    };
    let read_in = read_tables(map, tables, errs);
    if let Some((vars, unknown)) = unknown {
        let params = parameter_names(map);
        let root = Loc::Root;
        let vloc = root.key("variables");
        for name in vars.keys() {
            if params.contains(name.as_str()) {
                errs.push(
                    vloc.key(name),
                    format!("`{name}` is both a variable and a parameter; rename one of them"),
                );
            }
        }
        let mut seen = BTreeSet::new();
        for (loc, name) in unknown {
            if !params.contains(name.as_str()) && seen.insert((loc.clone(), name.clone())) {
                let hint = errs.suggest(
                    &name,
                    vars.len() + params.len(),
                    vars.keys()
                        .map(String::as_str)
                        .chain(params.iter().copied()),
                );
                errs.push(
                    loc,
                    format!("`{{{name}}}` is neither a variable nor a parameter{hint}"),
                );
            }
        }
    }
    read_in
}

/// Variables by name, with their values typed as parameter values are.
type Vars = HashMap<String, ParamValue>;

/// Substitutes `variables` into every string; returns them and the `{name}` references that
/// are not variables, with where they are (to be checked against the parameters later).
fn substitute_variables(
    map: &mut Map<String, Value>,
    vars: &Value,
    params: &BTreeSet<String>,
    errs: &mut Errors,
) -> Option<(Vars, Vec<(String, String)>)> {
    let root = Loc::Root;
    let vloc = root.key("variables");
    let Value::Object(given) = vars else {
        if !vars.is_null() {
            errs.push(
                vloc,
                format!(
                    "expected a mapping of names to values, found {}",
                    type_name(vars)
                ),
            );
        }
        return None;
    };
    let mut out = Vars::new();
    let mut clashing = Vec::new();
    for (name, v) in given {
        let here = vloc.key(name);
        if !is_param_name(name) {
            errs.push(
                here,
                format!("invalid variable name `{name}`: use letters, digits and `_`, not starting with a digit"),
            );
            continue;
        }
        let value = match v {
            Value::String(s) => {
                let mut nested = Vec::new();
                scan(s, &mut |n, _| {
                    nested.push(n.to_string());
                    None
                });
                if let Some(n) = nested.first() {
                    errs.push(
                        here,
                        format!(
                            "a variable's value may not contain templates, but it has `{{{n}}}`"
                        ),
                    );
                    continue;
                }
                typed_item(s)
            }
            Value::Number(n) => match n.as_i64() {
                Some(i) => ParamValue::Int(i),
                None => ParamValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::Bool(b) => ParamValue::Str(b.to_string()),
            other => {
                errs.push(
                    here,
                    format!(
                        "expected a string, number or boolean, found {}",
                        type_name(other)
                    ),
                );
                continue;
            }
        };
        if !params.contains(name) {
            out.insert(name.clone(), value);
        } else {
            clashing.push(name.clone());
        }
    }
    let mut unknown = Vec::new();
    let mut cx = Subst {
        vars: &out,
        unknown: &mut unknown,
        errs,
    };
    for (key, v) in map.iter_mut() {
        cx.walk(v, &root.key(key));
    }
    for name in clashing {
        out.insert(name, ParamValue::Str(String::new()));
    }
    Some((out, unknown))
}

struct Subst<'a> {
    vars: &'a Vars,
    unknown: &'a mut Vec<(String, String)>,
    errs: &'a mut Errors,
}

impl Subst<'_> {
    fn walk(&mut self, v: &mut Value, loc: &Loc<'_>) {
        match v {
            Value::String(s) => self.string(s, loc),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
                    let here = match &name {
                        Some(n) => loc.entry(i, Some(n)),
                        None => loc.index(i),
                    };
                    self.walk(item, &here);
                }
            }
            Value::Object(m) => {
                for (key, child) in m.iter_mut() {
                    // Parameter names, not strings of the spec.
                    if key != "use_parameters" {
                        self.walk(child, &loc.key(key));
                    }
                }
            }
            _ => {}
        }
    }

    fn string(&mut self, s: &mut String, loc: &Loc<'_>) {
        if !s.contains('{') {
            return;
        }
        let vars = self.vars;
        let mut failure = None;
        let mut others = Vec::new();
        let errs = &mut *self.errs;
        let replaced = scan(s, &mut |name, spec| match vars.get(name) {
            // What variables write in is spent as it is made: a long value used often could
            // otherwise make far more text than the spec has.
            Some(_) if errs.meter.exceeded(Budget::RenderedBytes) => None,
            Some(value) => {
                let mut text = String::new();
                if let Err(e) = format_value(name, spec, value, &mut text) {
                    failure.get_or_insert(e);
                }
                let n = text.len() as u64;
                errs.spend(loc, Budget::RenderedBytes, n, || {
                    format!("variable `{name}` writes in {n} more bytes")
                })
                .then_some(text)
            }
            None => {
                others.push(name.to_string());
                None
            }
        });
        if let Some(e) = failure {
            self.errs.push(loc, e.to_string());
        }
        if !others.is_empty() {
            let at = loc.to_string();
            self.unknown
                .extend(others.into_iter().map(|n| (at.clone(), n)));
        }
        if let Some(r) = replaced {
            *s = r;
        }
    }
}

/// Calls `f(name, format)` for each `{name}` / `{name:format}` in `text` whose name is an
/// identifier and that is not shell syntax (`${...}`); `f` returns the replacement, or `None` to
/// keep it. Returns the new text if anything was replaced.
fn scan(text: &str, f: &mut dyn FnMut(&str, Option<&str>) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut changed = false;
    let mut rest = text;
    let mut copied = 0;
    while let Some(open) = rest.find('{') {
        let absolute = text.len() - rest.len() + open;
        let after = &rest[open + 1..];
        let shell = text[..absolute].ends_with('$');
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        let (name, spec) = match inner.split_once(':') {
            Some((n, s)) => (n, Some(s)),
            None => (inner, None),
        };
        if shell {
            // `${...}` is left whole, braces included.
            rest = &after[close + 1..];
            continue;
        }
        if !is_param_name(name) {
            rest = after;
            continue;
        }
        if let Some(replacement) = f(name, spec) {
            out.push_str(&text[copied..absolute]);
            out.push_str(&replacement);
            copied = absolute + 1 + close + 1;
            changed = true;
        }
        rest = &after[close + 1..];
    }
    changed.then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// Every parameter name of the spec: workflow-level, each entry's own, and table columns.
fn parameter_names(map: &Map<String, Value>) -> BTreeSet<&str> {
    fn add<'m>(names: &mut BTreeSet<&'m str>, m: &'m Map<String, Value>) {
        if let Some(Value::Object(p)) = m.get("parameters") {
            names.extend(p.keys().map(String::as_str));
        }
        if let Some(Value::Array(rows)) = m.get("parameters_file") {
            for row in rows.iter().filter_map(Value::as_object) {
                names.extend(row.keys().map(String::as_str));
            }
        }
    }
    let mut names = BTreeSet::new();
    add(&mut names, map);
    for list in PARAMETERIZED {
        if let Some(Value::Array(items)) = map.get(list) {
            for m in items.iter().filter_map(Value::as_object) {
                add(&mut names, m);
            }
        }
    }
    names
}

/// Writes in every `parameters_file` table and `@path` list; without a source, each one is an
/// error. Returns whether anything was read.
fn read_tables(
    map: &mut Map<String, Value>,
    tables: Option<&dyn TableSource>,
    errs: &mut Errors,
) -> bool {
    let root = Loc::Root;
    let mut read = false;
    read |= read_entry_files(map, &root, tables, errs);
    for list in PARAMETERIZED {
        let lloc = root.key(list);
        if let Some(Value::Array(items)) = map.get_mut(list) {
            for (i, item) in items.iter_mut().enumerate() {
                let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
                if let Value::Object(m) = item {
                    read |= read_entry_files(m, &lloc.entry(i, name.as_deref()), tables, errs);
                }
            }
        }
    }
    read
}

/// The tables and lists of one entry (or of the top level).
fn read_entry_files(
    m: &mut Map<String, Value>,
    loc: &Loc<'_>,
    tables: Option<&dyn TableSource>,
    errs: &mut Errors,
) -> bool {
    let mut read = false;
    if let Some(slot) = m.get_mut("parameters_file") {
        if let Value::String(path) = slot {
            let here = loc.key("parameters_file");
            *slot = match tables {
                Some(t) => match t.table(path) {
                    Ok(rows) => {
                        read = true;
                        Value::Array(rows.into_iter().map(Value::Object).collect())
                    }
                    Err(e) => {
                        errs.push(here, format!("cannot read parameter table `{path}`: {e}"));
                        Value::Null
                    }
                },
                None => {
                    errs.push(here, no_source("parameter table", path));
                    Value::Null
                }
            };
        }
    }
    if let Some(Value::Object(params)) = m.get_mut("parameters") {
        let ploc = loc.key("parameters");
        for (name, v) in params.iter_mut() {
            let Value::String(s) = v else { continue };
            let Some(path) = s.trim().strip_prefix('@') else {
                continue;
            };
            let path = path.trim().to_string();
            let here = ploc.key(name);
            match tables {
                Some(t) => match t.lines(&path) {
                    Ok(lines) if lines.is_empty() => {
                        errs.push(here, format!("`@{path}` has no values (no non-empty line)"));
                    }
                    Ok(lines) => {
                        read = true;
                        *v = Value::Array(lines.into_iter().map(Value::String).collect());
                    }
                    Err(e) => errs.push(here, format!("cannot read values from `@{path}`: {e}")),
                },
                None => errs.push(here, no_source("value list", &format!("@{path}"))),
            }
        }
    }
    read
}

fn no_source(what: &str, path: &str) -> String {
    format!(
        "the {what} `{path}` is a file, which only the command line reads: create the workflow \
         from the spec file with `torc workflows create` or `torc run`, which send its contents along"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, vars: &[(&str, ParamValue)]) -> (Option<String>, Vec<String>) {
        let vars: Vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut unknown = Vec::new();
        let out = scan(text, &mut |n, spec| match vars.get(n) {
            Some(v) => {
                let mut s = String::new();
                format_value(n, spec, v, &mut s).unwrap();
                Some(s)
            }
            None => {
                unknown.push(n.to_string());
                None
            }
        });
        (out, unknown)
    }

    #[test]
    fn scanning_leaves_shell_and_other_braces() {
        let vars = [
            ("root", ParamValue::Str("/s".into())),
            ("n", ParamValue::Int(7)),
        ];
        let (out, unknown) = run(
            "{root}/x_{n:03d} ${root} ${HOME} {} { root } {i} awk '{print $1}' {n",
            &vars,
        );
        assert_eq!(
            out.as_deref(),
            Some("/s/x_007 ${root} ${HOME} {} { root } {i} awk '{print $1}' {n")
        );
        assert_eq!(unknown, ["i"]);
        assert_eq!(run("plain", &vars), (None, vec![]));
        assert_eq!(
            run("{x}{n}", &vars),
            (Some("{x}7".into()), vec!["x".into()])
        );
    }
}
