//! Values that fit the wire but not the database, refused at the boundary with 422 before they
//! reach the engine: counts above `i64::MAX` (the columns are signed), attempt and run numbers
//! above `i32::MAX`, identifiers with control characters, and text holding NUL, which
//! PostgreSQL cannot store in a `TEXT` column. One bad value must never reach a group commit,
//! where it would fail the batch of every other caller with it.
//!
//! Each request body the server takes as JSON has its check here ([`claim`], [`report`], ...),
//! which [`crate::server::service::Service`] runs before anything else reads the request; the
//! fuzz targets (`fuzz/`) run the same functions. Public for them only.

use crate::server::auth;
use crate::server::error::ApiError;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use torc_core::api::{
    ActionClaimRequest, ClaimRequest, CompletionReport, HeartbeatRequest, ReportBatch,
    SharedClaimRequest,
};
use torc_core::spec::SpecFormat;
use torc_core::RunnerId;
use torc_core::WorkflowDef;
use torc_store::IdempotencyKey;

/// An identifier that is stored (runner id, executor): 1 to `max` bytes, no control character.
pub fn identifier(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.len();
    if n == 0 || n > max {
        return Err(ApiError::unprocessable(format!(
            "{what} must have 1 to {max} bytes, it has {n}"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::unprocessable(format!(
            "{what} must not hold control characters (it holds U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(())
}

/// A count stored in a signed 64-bit column.
fn count(what: &str, value: Option<u64>) -> Result<(), ApiError> {
    match value {
        Some(v) if i64::try_from(v).is_err() => Err(ApiError::unprocessable(format!(
            "{what} = {v} is out of range (at most {})",
            i64::MAX
        ))),
        _ => Ok(()),
    }
}

/// A run or attempt number stored in a signed 32-bit column.
fn small(what: &str, value: u32) -> Result<(), ApiError> {
    if i32::try_from(value).is_err() {
        return Err(ApiError::unprocessable(format!(
            "{what} = {value} is out of range (at most {})",
            i32::MAX
        )));
    }
    Ok(())
}

fn completion(i: usize, c: &CompletionReport) -> Result<(), ApiError> {
    let at = |field: &str| format!("completions[{i}].{field}");
    count(&at("peak_memory_bytes"), c.peak_memory_bytes)?;
    count(&at("avg_memory_bytes"), c.avg_memory_bytes)?;
    small(&at("run_id"), c.run_id)?;
    small(&at("attempt_id"), c.attempt_id)?;
    for (field, v) in [
        ("peak_cpu_percent", c.peak_cpu_percent),
        ("avg_cpu_percent", c.avg_cpu_percent),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(ApiError::unprocessable(format!(
                "{} is not finite",
                at(field)
            )));
        }
    }
    Ok(())
}

/// The server's limits that the checks below apply (from its `Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest runner id (and executor name) accepted.
    pub max_runner_id: usize,
    /// Most jobs one claim may ask for.
    pub max_claim: u32,
}

/// A runner id: an identifier of at most `max_runner_id` bytes.
fn runner(limits: Bounds, runner: &RunnerId) -> Result<(), ApiError> {
    identifier("runner_id", &runner.0, limits.max_runner_id)
}

/// A claim's job limit: 1 to the server's maximum.
fn claim_limit(limits: Bounds, limit: u32) -> Result<(), ApiError> {
    if limit == 0 || limit > limits.max_claim {
        return Err(ApiError::unprocessable(format!(
            "limit must be 1 to {}, it is {limit}",
            limits.max_claim
        )));
    }
    Ok(())
}

/// A claim of one workflow's jobs (its workflow id is checked against the path's elsewhere).
pub fn claim(limits: Bounds, req: &ClaimRequest) -> Result<(), ApiError> {
    runner(limits, &req.runner_id)?;
    claim_limit(limits, req.limit)
}

/// A shared runner's claim.
pub fn shared_claim(limits: Bounds, req: &SharedClaimRequest) -> Result<(), ApiError> {
    runner(limits, &req.runner_id)?;
    claim_limit(limits, req.limit)
}

/// A heartbeat.
pub fn heartbeat(limits: Bounds, req: &HeartbeatRequest) -> Result<(), ApiError> {
    runner(limits, &req.runner_id)
}

/// An executor's claim of workflow actions, with what it reports about allocations.
pub fn action_claim(limits: Bounds, req: &ActionClaimRequest) -> Result<(), ApiError> {
    identifier("executor", &req.executor, limits.max_runner_id)?;
    allocation_updates(&req.allocations)
}

/// A workflow's cap on jobs in flight: at least 1, or none.
pub fn max_concurrent_jobs(cap: Option<u32>) -> Result<(), ApiError> {
    if cap == Some(0) {
        return Err(ApiError::unprocessable(
            "max_concurrent_jobs must be at least 1 (null for no cap)",
        ));
    }
    Ok(())
}

/// The name of a token made through the API.
pub fn token_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > auth::MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(format!(
            "a token name has 1 to {} bytes and no control characters",
            auth::MAX_NAME_BYTES
        )));
    }
    Ok(())
}

/// A report batch: its runner id, and every stored number fits its column.
pub fn report(limits: Bounds, batch: &ReportBatch) -> Result<(), ApiError> {
    runner(limits, &batch.runner_id)?;
    for (i, s) in batch.starts.iter().enumerate() {
        small(&format!("starts[{i}].attempt_id"), s.attempt_id)?;
    }
    for (i, c) in batch.completions.iter().enumerate() {
        completion(i, c)?;
    }
    Ok(())
}

/// What an executor reports about allocations must fit the database: bounded text without
/// control characters, batch ids a signed 64-bit column holds.
fn allocation_updates(updates: &[torc_core::alloc::AllocationUpdate]) -> Result<(), ApiError> {
    use torc_core::alloc::AllocationUpdate as U;
    const MAX_UPDATES: usize = 1000;
    const MAX_TEXT: usize = 4096;
    if updates.len() > MAX_UPDATES {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_UPDATES} allocation updates per request, not {}",
            updates.len()
        )));
    }
    let text = |what: &str, s: &str| {
        if s.len() > MAX_TEXT || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ApiError::unprocessable(format!(
                "allocation {what} must be at most {MAX_TEXT} bytes without control characters"
            )));
        }
        Ok(())
    };
    let batch = |id: u64| {
        if i64::try_from(id).is_err() {
            return Err(ApiError::unprocessable(format!(
                "batch_id {id} is out of range"
            )));
        }
        Ok(())
    };
    for u in updates {
        match u {
            U::Submitted {
                scheduler,
                batch_id,
                ..
            } => {
                text("scheduler", scheduler)?;
                batch(*batch_id)?;
            }
            U::SubmitFailed { message, .. } => text("message", message)?,
            U::Seen { batch_id, note, .. } => {
                text("note", note)?;
                batch(*batch_id)?;
            }
        }
    }
    Ok(())
}

/// Longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 255;

/// A creation's `Idempotency-Key` of `user`, with the SHA-256 of what it was sent with.
pub fn idempotency_key(
    user: &str,
    key: String,
    format: SpecFormat,
    body: &[u8],
) -> Result<IdempotencyKey, ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::unprocessable(format!(
            "Idempotency-Key must have 1 to {MAX_KEY_BYTES} printable ASCII characters"
        )));
    }
    let mut sha = Sha256::new();
    sha.update(format!("{format:?}\n").as_bytes());
    sha.update(body);
    let request_sha256 = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(IdempotencyKey {
        user: user.to_string(),
        key,
        request_sha256,
    })
}

/// The spec text and every string of the workflow it expands to are free of NUL.
pub fn spec(text: &str, def: &WorkflowDef) -> Result<(), ApiError> {
    if let Some(at) = text.find('\0') {
        return Err(ApiError::unprocessable(format!(
            "the spec holds a NUL character at byte {at}, which cannot be stored"
        )));
    }
    if holds_nul(def) {
        return Err(ApiError::unprocessable(
            "a string of the spec holds a NUL character (U+0000, written as an escape), which \
             cannot be stored",
        ));
    }
    Ok(())
}

/// Whether any string of `value` holds NUL: serialized to nowhere, with a formatter that notes
/// the escape serde_json writes for it (no copy of the value is made).
fn holds_nul(value: &impl serde::Serialize) -> bool {
    struct Watch<'a>(&'a Cell<bool>);
    impl serde_json::ser::Formatter for Watch<'_> {
        fn write_char_escape<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            escape: serde_json::ser::CharEscape,
        ) -> std::io::Result<()> {
            if matches!(escape, serde_json::ser::CharEscape::AsciiControl(0)) {
                self.0.set(true);
            }
            let _ = writer;
            Ok(())
        }
    }
    let found = Cell::new(false);
    let mut ser = serde_json::Serializer::with_formatter(std::io::sink(), Watch(&found));
    // Serializing a model value to a sink cannot fail; if it did, the store would say so.
    let _ = value.serialize(&mut ser);
    found.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use torc_core::model::JobDef;

    #[test]
    fn identifiers() {
        assert!(identifier("runner_id", "host:42", 256).is_ok());
        for bad in ["", "a\0b", "tab\there", "new\nline", "\u{7f}"] {
            let e = identifier("runner_id", bad, 256).unwrap_err();
            assert_eq!(e.kind, crate::ApiErrorKind::Unprocessable, "{bad:?}");
        }
        assert!(identifier("runner_id", &"x".repeat(257), 256).is_err());
    }

    #[test]
    fn nul_anywhere_in_a_workflow() {
        let mut def = WorkflowDef {
            name: "w".into(),
            jobs: vec![JobDef::new("a", "echo 'tab\tand \\u0000 as text'")],
            ..WorkflowDef::default()
        };
        assert!(
            spec("name: w", &def).is_ok(),
            "tabs and a written escape are fine"
        );
        def.jobs[0].env.insert("K".into(), "v\0".into());
        assert!(spec("name: w", &def).is_err());
        def.jobs[0].env.clear();
        assert!(spec("name: w\0", &def).is_err());
    }
}
