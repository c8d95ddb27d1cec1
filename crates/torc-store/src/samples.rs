//! Time-series samples of resource use, written with the batch whose reports carried them
//! (`Store::apply`); `Store::list_samples` (in `read`) reads them back.

use crate::backend::{AnyConnection, InsertAll};
use crate::error::StoreError;
use crate::rows::{job_id_to_i32, to_i32, BatchRow};
use crate::schema::resource_samples;
use diesel::prelude::*;
use serde::Serialize;
use torc_core::api::ResourceSample;
use torc_core::changes::RunnerSamples;
use torc_core::ids::{JobId, RunnerId, WorkflowId};

/// One stored sample: of a job's attempt, or (no `job_id`) of a runner's node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRecord {
    pub id: i64,
    pub runner: RunnerId,
    pub sample: ResourceSample,
}

#[derive(Insertable)]
#[diesel(table_name = resource_samples, treat_none_as_default_value = false)]
pub(crate) struct NewSample<'a> {
    workflow_id: i64,
    job_id: Option<i32>,
    run_id: Option<i32>,
    attempt_id: Option<i32>,
    runner: &'a str,
    time: i64,
    cpu_percent: f64,
    memory_bytes: i64,
    num_processes: i32,
}

impl BatchRow for NewSample<'_> {
    type Table = resource_samples::table;
    const COLUMNS: usize = 9;
}

/// The rows of one workflow's samples in `batches`.
pub(crate) fn rows<'a>(
    wf: WorkflowId,
    batches: &'a [RunnerSamples],
    out: &mut Vec<NewSample<'a>>,
) -> Result<(), StoreError> {
    for b in batches {
        for s in &b.samples {
            out.push(NewSample {
                workflow_id: wf.0,
                job_id: s.job_id.map(job_id_to_i32).transpose()?,
                run_id: s.run_id.map(|r| to_i32("run_id", r)).transpose()?,
                attempt_id: s.attempt_id.map(|a| to_i32("attempt_id", a)).transpose()?,
                runner: &b.runner.0,
                time: s.time.0,
                cpu_percent: if s.cpu_percent.is_finite() {
                    s.cpu_percent
                } else {
                    0.0
                },
                memory_bytes: i64::try_from(s.memory_bytes).unwrap_or(i64::MAX),
                num_processes: i32::try_from(s.num_processes).unwrap_or(i32::MAX),
            });
        }
    }
    Ok(())
}

pub(crate) fn write(conn: &mut AnyConnection, rows: &[NewSample<'_>]) -> QueryResult<()> {
    rows.insert_all(conn)
}

/// Which samples of a workflow to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleFilter {
    /// Every sample, of jobs and nodes.
    #[default]
    All,
    /// One job's (every attempt).
    Job(JobId),
    /// The runners' nodes' only.
    Nodes,
}
