//! What an entry costs against the budgets ([`super::budget`]), counted before it is expanded.

use super::budget::Budget;
use super::diag::{Errors, Loc};
use super::params::ParamSet;
use super::read::RawJob;
use crate::model::JobDef;

/// A count for a message: `u64::MAX` stands for an overflow.
pub(super) fn shown_count(n: u64) -> String {
    if n == u64::MAX {
        "more than 2^64".to_string()
    } else {
        n.to_string()
    }
}

/// Spends an entry's instances, and the bytes its templates make (their length times its
/// instances), before any instance is made; false (reported) if a budget refuses them.
pub(super) fn admit(
    errs: &mut Errors,
    loc: &Loc<'_>,
    what: &str,
    params: Option<&ParamSet>,
    text_len: u64,
) -> bool {
    let count = params.map_or(1, ParamSet::count);
    let before = errs.meter.budgets.instances - errs.meter.left(Budget::Instances);
    if !errs.spend(loc, Budget::Instances, count, || {
        format!(
            "this entry makes {} {what}, after {before} jobs, files and user data before it",
            shown_count(count)
        )
    }) {
        return false;
    }
    let bytes = count.saturating_mul(text_len);
    errs.spend(loc, Budget::RenderedBytes, bytes, || {
        format!(
            "this entry's templates ({text_len} bytes) times its {} instances make at least {} \
             bytes",
            shown_count(count),
            shown_count(bytes)
        )
    })
}

/// Roughly the bytes a JSON value takes in memory beyond its nodes: its strings and keys, and 8
/// per node.
pub(super) fn value_len(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match v {
        Value::String(s) => 8 + s.len() as u64,
        Value::Array(items) => items.iter().map(value_len).sum::<u64>() + 8,
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| k.len() as u64 + value_len(v))
            .sum::<u64>()
            .saturating_add(8),
        _ => 8,
    }
}

/// The length of a job entry's templates, with the workflow's `env` (`env_len`) each of its
/// instances gets a copy of.
pub(super) fn job_text_len(job: &RawJob<'_>, env_len: usize) -> u64 {
    let optional = [
        job.invocation_script,
        job.resource_requirements,
        job.failure_handler,
        job.scheduler,
    ];
    let len = job.name.len()
        + job.command.len()
        + optional.iter().flatten().map(|s| s.len()).sum::<usize>()
        + job.lists.iter().flatten().map(|s| s.len()).sum::<usize>()
        + job.tags.iter().map(|s| s.len()).sum::<usize>()
        + job
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + env_len;
    len as u64
}

/// The bytes of text of a built job (its name is counted in pass A).
pub(super) fn job_len(def: &JobDef) -> u64 {
    let len = def.command.len()
        + def.invocation_script.as_ref().map_or(0, String::len)
        + def.scheduler.as_ref().map_or(0, String::len)
        + def.tags.iter().map(String::len).sum::<usize>()
        + def
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    len as u64
}
