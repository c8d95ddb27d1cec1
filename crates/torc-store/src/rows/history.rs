//! Rows of what happened: results (one per attempt) and events, written by `apply` and listed
//! for people.

use super::*;
use crate::error::StoreError;
use crate::records::{EventRecord, ResultRecord};
use crate::schema::{events, results};
use diesel::prelude::*;
use torc_core::changes::{EndReason, Event, JobResult};
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};

#[derive(Insertable)]
#[diesel(table_name = results, treat_none_as_default_value = false)]
pub(crate) struct NewResult<'a> {
    pub(crate) workflow_id: i64,
    pub(crate) job_id: i32,
    pub(crate) run_id: i32,
    pub(crate) attempt_id: i32,
    pub(crate) runner: Option<&'a str>,
    pub(crate) return_code: i32,
    pub(crate) status: i16,
    pub(crate) start_time: i64,
    pub(crate) end_time: i64,
    pub(crate) exec_time_secs: f64,
    pub(crate) peak_memory_bytes: Option<i64>,
    pub(crate) avg_memory_bytes: Option<i64>,
    pub(crate) peak_cpu_percent: Option<f64>,
    pub(crate) avg_cpu_percent: Option<f64>,
    /// `{"reason": NAME, "message": TEXT}` (see [`EndNote`]): one column, as the table has
    /// diesel's 16 at most.
    pub(crate) end_reason: Option<String>,
}

impl BatchRow for NewResult<'_> {
    type Table = results::table;
    const COLUMNS: usize = 15;
}

/// Why the runner ended an attempt, and what it said, as the `end_reason` column stores them.
#[derive(serde::Serialize, serde::Deserialize)]
struct EndNote {
    reason: Option<EndReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn encode_end(r: &JobResult) -> Result<Option<String>, StoreError> {
    if r.end_reason.is_none() && r.message.is_none() {
        return Ok(None);
    }
    let note = EndNote {
        reason: r.end_reason,
        message: r.message.clone(),
    };
    encode("result end_reason", &note).map(Some)
}

impl<'a> NewResult<'a> {
    pub(crate) fn new(wf: WorkflowId, r: &'a JobResult) -> Result<Self, StoreError> {
        Ok(NewResult {
            workflow_id: wf.0,
            job_id: job_id_to_i32(r.job)?,
            run_id: to_i32("run_id", r.run_id)?,
            attempt_id: to_i32("attempt_id", r.attempt_id)?,
            runner: r.runner.as_ref().map(|r| r.0.as_str()),
            return_code: r.return_code,
            status: r.status.code(),
            start_time: r.start_time.0,
            end_time: r.end_time.0,
            exec_time_secs: r.end_time.0.saturating_sub(r.start_time.0) as f64 / 1000.0,
            peak_memory_bytes: opt_to_i64("peak_memory_bytes", r.peak_memory_bytes)?,
            avg_memory_bytes: opt_to_i64("avg_memory_bytes", r.avg_memory_bytes)?,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
            end_reason: encode_end(r)?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub(crate) struct NewEvent<'a> {
    workflow_id: i64,
    time: i64,
    kind: &'static str,
    job_id: Option<i32>,
    message: &'a str,
}

impl BatchRow for NewEvent<'_> {
    type Table = events::table;
    const COLUMNS: usize = 5;
}

impl<'a> NewEvent<'a> {
    pub(crate) fn new(wf: WorkflowId, e: &'a Event) -> Result<Self, StoreError> {
        Ok(NewEvent {
            workflow_id: wf.0,
            time: e.time.0,
            kind: e.kind.name(),
            job_id: e.job.map(job_id_to_i32).transpose()?,
            message: &e.message,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = results)]
pub(crate) struct ResultRow {
    id: i64,
    job_id: i32,
    run_id: i32,
    attempt_id: i32,
    runner: Option<String>,
    return_code: i32,
    status: i16,
    start_time: i64,
    end_time: i64,
    exec_time_secs: f64,
    peak_memory_bytes: Option<i64>,
    avg_memory_bytes: Option<i64>,
    peak_cpu_percent: Option<f64>,
    avg_cpu_percent: Option<f64>,
    end_reason: Option<String>,
}

impl ResultRow {
    pub(crate) fn into_record(self) -> Result<ResultRecord, StoreError> {
        let end = self
            .end_reason
            .as_deref()
            .map(|text| decode::<EndNote>("result end_reason", text))
            .transpose()?
            .unwrap_or(EndNote {
                reason: None,
                message: None,
            });
        Ok(ResultRecord {
            id: self.id,
            job_id: JobId(from_i32("result job_id", self.job_id)?),
            run_id: from_i32("result run_id", self.run_id)?,
            attempt_id: from_i32("result attempt_id", self.attempt_id)?,
            runner: self.runner.map(RunnerId),
            return_code: self.return_code,
            status: status_from_code("result status", self.status)?,
            start_time: Timestamp(self.start_time),
            end_time: Timestamp(self.end_time),
            exec_time_secs: self.exec_time_secs,
            peak_memory_bytes: opt_from_i64("result peak_memory_bytes", self.peak_memory_bytes)?,
            avg_memory_bytes: opt_from_i64("result avg_memory_bytes", self.avg_memory_bytes)?,
            peak_cpu_percent: self.peak_cpu_percent,
            avg_cpu_percent: self.avg_cpu_percent,
            end_reason: end.reason,
            message: end.message,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
pub(crate) struct EventRow {
    id: i64,
    time: i64,
    kind: String,
    job_id: Option<i32>,
    message: String,
}

impl EventRow {
    pub(crate) fn into_record(self) -> Result<EventRecord, StoreError> {
        Ok(EventRecord {
            id: self.id,
            time: Timestamp(self.time),
            kind: event_kind_from_name(&self.kind)?,
            job_id: self
                .job_id
                .map(|j| from_i32("event job_id", j).map(JobId))
                .transpose()?,
            message: self.message,
        })
    }
}
