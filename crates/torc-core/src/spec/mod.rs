//! Spec parsing, validation and expansion: YAML/JSON/JSON5/KDL text in, [`WorkflowDef`] out.
//!
//! [`load`] parses the text into a JSON value ([`SpecFormat`] picks the syntax; YAML anchors and
//! `<<` merge keys are applied; KDL nodes are mapped as `kdl.rs` documents), substitutes
//! `variables` and writes in parameter tables and `@path` lists (read through a
//! [`TableSource`], see [`load_with`]), walks that value by hand so that every problem is
//! reported with where it is (`jobs[3] ("b_{i}").depends_on[0]`), expands parameters, resolves
//! every reference to an index and checks the dependency graph for cycles. It does no I/O: the
//! caller reads the spec file and whatever it names. All problems found are returned together
//! ([`SpecErrors`]); at most a few hundred are spelled out and the rest counted, and a problem
//! that every instance of a parameterized entry has is reported once, with how many instances
//! have it and the first few of their names.
//!
//! # Variables and tables
//!
//! `variables` are substituted as `{name}` (or `{name:03d}`) into every string of the spec
//! before anything else, keys and `use_parameters` entries excepted; `${...}` and braces that
//! are not identifiers are left alone; a `{name}` that is neither a variable nor a parameter is
//! an error (only in specs that define `variables`, so that older specs keep their braces). A
//! `parameters_file` table expands its entry once per row, its columns as parameters (as
//! `parameter_mode: zip` would); the CLI reads it, and a spec sent to a server carries the rows
//! themselves, as a list of mappings under the same key ([`Expanded::self_contained`]).
//!
//! # Expansion order
//!
//! Deterministic, and the order of job ids: jobs in spec order; each job's instances in
//! parameter order. With `parameter_mode: product` (the default) that is the Cartesian product
//! in the order the parameters are written, the **last** parameter varying fastest
//! (`{a: [1, 2], b: [x, y]}` gives `1x, 1y, 2x, 2y`); with `zip`, position by position. A job's
//! parameters are its own `parameters` in written order, then the workflow-level ones named in
//! `use_parameters` that it does not define itself. Files and user data expand the same way, in
//! spec order.
//!
//! # Templates
//!
//! `{p}`, `{p:03d}`, `{p:3d}`, `{p:.2f}` (Python-like `[0][width][.precision][d|f|s]`) where
//! `p` is a parameter of that job or file. Braces around anything else, such as `${HOME}`,
//! `${files.input.x}` or `awk '{print $1}'`, are left as written. Substituted in a job's name,
//! command, invocation_script, depends_on names and regexes, data names and regexes, resource
//! requirement, failure handler and scheduler names; in a file's name and path; in a user data
//! name. In regexes the values are regex-escaped. Float values print in Rust's shortest form
//! (`0.5`, `1`), as in Torc; float ranges are computed as `start + k * step` and rounded to the
//! decimals written, so they never drift.
//!
//! # Dependencies
//!
//! A job waits for the jobs named in `depends_on`, those matched by `depends_on_regexes` (other
//! than itself), and every job that writes a file or user data it reads (named in the data
//! lists, matched by their regexes, or used as `${files.input.NAME}` /
//! `${user_data.input.NAME}` in its command or invocation script). A job that reads and writes
//! the same data does not wait for itself. Names are looked up in hash maps; an anchored
//! literal regex (`^a_12$`) is a lookup; other regexes scan the names once per distinct regex,
//! narrowed by their literal prefix, so that specs of a million jobs expand in seconds.
//!
//! # Budgets
//!
//! Loading is held to [`Budgets`] (see `budget.rs` for the defaults and why): what the spec
//! makes is counted before it is made, and a spec past a budget is refused with an error that
//! names it. [`load_with_budgets`] takes others than the defaults.

mod budget;
mod compile;
mod cost;
mod diag;
mod expand;
mod fields;
pub mod generate;
mod kdl;
mod params;
mod prepare;
mod read;
mod read_params;
mod resolve;
mod settings;
mod template;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_budgets;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_formats;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_slurm;
#[cfg(test)]
mod tests_torc1x;
mod text;

pub use budget::Budgets;

use crate::model::WorkflowDef;
use serde_json::{Map, Value};
use std::fmt;

/// The syntax of a spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Yaml,
    Json,
    Json5,
    Kdl,
}

impl SpecFormat {
    /// Guesses the format from a file name: `.json`, `.json5`, `.kdl`, else YAML.
    pub fn from_path(path: &str) -> SpecFormat {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".kdl") {
            SpecFormat::Kdl
        } else if lower.ends_with(".json5") {
            SpecFormat::Json5
        } else if lower.ends_with(".json") {
            SpecFormat::Json
        } else {
            SpecFormat::Yaml
        }
    }
}

/// One problem found in a spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Where: `jobs[3] ("b_{i}").depends_on[0]`, `files[1].path`, `top level`, or
    /// `line 4, column 7` for a syntax error.
    pub location: String,
    pub message: String,
}

/// Every problem found in a spec (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the spec:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {}: {}", e.location, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// A validated, expanded workflow, with warnings about keys accepted but not acted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub def: WorkflowDef,
    pub warnings: Vec<String>,
    /// When the spec named files (a `parameters_file`, an `@path` list): the spec with their
    /// contents written in and its variables substituted, which is what to send to a server
    /// (it cannot read the caller's files). `None` when the spec is self-contained as written.
    pub self_contained: Option<Value>,
}

/// Reads what a spec names outside itself. The core never touches files: whoever reads the
/// spec file (the CLI) implements this, resolving relative paths as it sees fit (the CLI: the
/// current directory).
pub trait TableSource {
    /// The rows of a `parameters_file` table, each a mapping of column to value (an integer,
    /// float or string: see [`typed_cell`] for text cells).
    fn table(&self, path: &str) -> Result<Vec<Map<String, Value>>, String>;
    /// The values of an `@path` list: one per non-empty line, as written.
    fn lines(&self, path: &str) -> Result<Vec<String>, String>;
}

/// A table cell given as text, typed as SPEC.md says: an integer, else a float, else the text.
pub fn typed_cell(text: &str) -> Value {
    match params::typed_item(text) {
        params::ParamValue::Int(i) => Value::from(i),
        params::ParamValue::Float(x) => serde_json::Number::from_f64(x)
            .map_or_else(|| Value::String(text.to_string()), Value::Number),
        params::ParamValue::Str(s) => Value::String(s),
    }
}

/// Parses a spec's text into a JSON value, without validating it (for tools that rewrite
/// specs, such as `torc slurm generate`); held to the default [`Budgets`].
pub fn parse_document(text: &str, format: SpecFormat) -> Result<Value, SpecError> {
    text::parse(text, format, &Budgets::default())
}

/// Parses, validates and expands a spec that names no files (a `parameters_file` or `@path`
/// list is an error that says to create the workflow from the command line).
pub fn load(text: &str, format: SpecFormat) -> Result<Expanded, SpecErrors> {
    load_with_budgets(text, format, None, &Budgets::default())
}

/// Parses, validates and expands a spec, reading the files it names through `tables`.
pub fn load_with(
    text: &str,
    format: SpecFormat,
    tables: &dyn TableSource,
) -> Result<Expanded, SpecErrors> {
    load_with_budgets(text, format, Some(tables), &Budgets::default())
}

/// [`load`] or (with `tables`) [`load_with`], held to `budgets` rather than the defaults.
pub fn load_with_budgets(
    text: &str,
    format: SpecFormat,
    tables: Option<&dyn TableSource>,
    budgets: &Budgets,
) -> Result<Expanded, SpecErrors> {
    let value = text::parse(text, format, budgets).map_err(|e| SpecErrors(vec![e]))?;
    load_value_from(value, tables, budgets)
}

/// Validates and expands a spec already parsed into a JSON value (e.g. a request body).
pub fn load_value(value: &Value) -> Result<Expanded, SpecErrors> {
    load_value_from(value.clone(), None, &Budgets::default())
}

fn load_value_from(
    mut value: Value,
    tables: Option<&dyn TableSource>,
    budgets: &Budgets,
) -> Result<Expanded, SpecErrors> {
    let mut errs = diag::Errors::with_budgets(budgets.clone());
    let read_in = prepare::prepare(&mut value, tables, &mut errs);
    let mut raw = read::read_spec(&value, &mut errs);
    let warnings = std::mem::take(&mut raw.warnings);
    let def = if errs.meter.any_exceeded() {
        WorkflowDef::default()
    } else {
        expand::expand(raw, &mut errs)
    };
    if errs.is_empty() {
        Ok(Expanded {
            def,
            warnings,
            self_contained: read_in.then_some(value),
        })
    } else {
        Err(SpecErrors(errs.into_vec()))
    }
}
