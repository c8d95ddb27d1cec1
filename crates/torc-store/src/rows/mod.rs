//! Database rows and the mapping between them and the core's model, written once.
//!
//! Ids of a workflow's files, user data, resource requirements and failure handlers are stored
//! 1-based, like job ids: the model's index `i` is row id `i + 1`.
//!
//! One module per concern: `workflow` (the workflows table), `definition` (what a workflow is
//! created with: requirements, handlers, files, user data, jobs and their relations), `load`
//! (reading a definition back), `history` (results and events).

mod definition;
mod history;
mod load;
mod workflow;

pub(crate) use definition::{DefinitionRows, NewJob, NewRequirement};
pub(crate) use history::{EventRow, NewEvent, NewResult, ResultRow};
pub(crate) use load::{
    DependencyRow, FileRow, HandlerRow, JobFileRow, JobListRow, JobRow, JobUserDataRow,
    RequirementRow, UserDataRow, WorkflowRows,
};
pub(crate) use workflow::{NewWorkflow, SummaryRow, WorkflowRow};

use crate::error::StoreError;
use std::time::Duration;
use torc_core::changes::{EventKind, WorkflowState};
use torc_core::ids::JobId;
use torc_core::model::JobStatus;

/// A row type written with multi-row inserts: how many rows fit in one statement.
///
/// Its `Insertable` derive must say `treat_none_as_default_value = false`: otherwise diesel
/// writes a batch to SQLite as one statement per row (checked by a test below).
pub(crate) trait BatchRow {
    /// The table the rows go into.
    type Table: diesel::Table + Copy + Default;
    /// Bind parameters per row (the number of columns inserted).
    const COLUMNS: usize;

    /// Rows per statement for a backend that takes up to `max_binds` bind parameters.
    fn per_statement(max_binds: usize) -> usize {
        (max_binds / Self::COLUMNS).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions.

pub(crate) fn to_i32(what: &'static str, value: u32) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::OutOfRange {
        what,
        value: value.into(),
    })
}

pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

pub(super) fn opt_to_i64(
    what: &'static str,
    value: Option<u64>,
) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(what, v)).transpose()
}

/// A model index as a 1-based row id.
pub(crate) fn index_to_id(what: &'static str, index: u32) -> Result<i32, StoreError> {
    index
        .checked_add(1)
        .ok_or(StoreError::OutOfRange {
            what,
            value: index.into(),
        })
        .and_then(|id| to_i32(what, id))
}

/// The position `index` (0-based) of a list as a 1-based row id.
pub(super) fn position_to_id(what: &'static str, index: usize) -> Result<i32, StoreError> {
    i32::try_from(index + 1).map_err(|_| StoreError::OutOfRange {
        what,
        value: index as u64,
    })
}

pub(crate) fn job_id_to_i32(job: JobId) -> Result<i32, StoreError> {
    to_i32("job id", job.0)
}

pub(super) fn from_i32(what: &'static str, value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, format!("negative value {value}")))
}

pub(super) fn from_i64(what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what, format!("negative value {value}")))
}

pub(super) fn opt_from_i64(
    what: &'static str,
    value: Option<i64>,
) -> Result<Option<u64>, StoreError> {
    value.map(|v| from_i64(what, v)).transpose()
}

/// A 1-based row id as a model index, checked against the number of rows it refers to.
pub(super) fn id_to_index(what: &'static str, id: i32, len: usize) -> Result<u32, StoreError> {
    match usize::try_from(id) {
        Ok(id) if id >= 1 && id <= len => Ok((id - 1) as u32),
        _ => Err(StoreError::corrupt(
            what,
            format!("reference to id {id}, but there are {len}"),
        )),
    }
}

pub(crate) fn status_from_code(what: &'static str, code: i16) -> Result<JobStatus, StoreError> {
    JobStatus::from_code(code)
        .ok_or_else(|| StoreError::corrupt(what, format!("status code {code}")))
}

pub(crate) fn workflow_state_from_name(name: &str) -> Result<WorkflowState, StoreError> {
    WorkflowState::from_name(name)
        .ok_or_else(|| StoreError::corrupt("workflow state", format!("unknown state {name:?}")))
}

pub(super) fn event_kind_from_name(name: &str) -> Result<EventKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| StoreError::corrupt("event kind", format!("unknown kind {name:?}")))
}

pub(super) fn secs_to_duration(what: &'static str, secs: f64) -> Result<Duration, StoreError> {
    Duration::try_from_secs_f64(secs).map_err(|e| StoreError::corrupt(what, format!("{secs}: {e}")))
}

pub(super) fn encode<T: serde::Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, format!("{e} in {text:?}")))
}

#[cfg(test)]
mod tests;
