//! Spec parsing, validation and expansion: YAML/JSON/JSON5 text in, [`WorkflowDef`] out.
//!
//! [`load`] parses the text into a JSON value ([`SpecFormat`] picks the syntax; YAML anchors and
//! `<<` merge keys are applied), walks that value by hand so that every problem is reported
//! with where it is (`jobs[3] ("b_{i}").depends_on[0]`), expands parameters, resolves every
//! reference to an index and checks the dependency graph for cycles. It does no I/O: the caller
//! reads the file. All problems found are returned together ([`SpecErrors`]); at most a few
//! hundred are spelled out and the rest counted.
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

mod diag;
mod expand;
mod fields;
mod params;
mod read;
mod resolve;
mod template;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
mod text;

use crate::model::WorkflowDef;
use std::fmt;

/// The syntax of a spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Yaml,
    Json,
    Json5,
}

impl SpecFormat {
    /// Guesses the format from a file name: `.json`, `.json5`, else YAML.
    pub fn from_path(path: &str) -> SpecFormat {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".json5") {
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
}

/// Parses, validates and expands a spec.
pub fn load(text: &str, format: SpecFormat) -> Result<Expanded, SpecErrors> {
    let value = text::parse(text, format).map_err(|e| SpecErrors(vec![e]))?;
    load_value(&value)
}

/// Validates and expands a spec already parsed into a JSON value (e.g. a request body).
pub fn load_value(value: &serde_json::Value) -> Result<Expanded, SpecErrors> {
    let mut errs = diag::Errors::default();
    let mut raw = read::read_spec(value, &mut errs);
    let warnings = std::mem::take(&mut raw.warnings);
    let def = expand::expand(raw, &mut errs);
    if errs.is_empty() {
        Ok(Expanded { def, warnings })
    } else {
        Err(SpecErrors(errs.into_vec()))
    }
}
