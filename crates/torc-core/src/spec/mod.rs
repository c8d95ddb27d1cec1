//! Spec parsing, validation and expansion: YAML/JSON text in, [`crate::model::WorkflowDef`] out.
//! (Being written.)

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
    /// Where: `jobs[3] (name: "b_{i}").depends_on[0]`, `files[1].path`, `top level`…
    pub location: String,
    pub message: String,
}

/// Every problem found in a spec (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} in the spec:", if n == 1 { "" } else { "s" })?;
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
    let _ = (text, format);
    Err(SpecErrors(vec![SpecError {
        location: "top level".into(),
        message: "spec loading is not written yet".into(),
    }]))
}
