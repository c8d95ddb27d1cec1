//! Time-series samples of resource use, written with the batch whose reports carried them
//! (`Store::apply`) and read back by workflow, optionally by job.

use crate::backend::{AnyConnection, InsertAll};
use crate::error::StoreError;
use crate::rows::{job_id_to_i32, to_i32, BatchRow};
use crate::schema::{resource_samples, workflows};
use crate::store::Store;
use diesel::prelude::*;
use serde::Serialize;
use torc_core::api::ResourceSample;
use torc_core::changes::RunnerSamples;
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};

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

type Row = (
    i64,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    String,
    i64,
    f64,
    i64,
    i32,
);

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

impl Store {
    /// A page of a workflow's samples in the order they were stored.
    pub fn list_samples(
        &self,
        id: WorkflowId,
        filter: SampleFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<SampleRecord>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<Row> = conn.read_transaction(|conn| {
            let found: i64 = workflows::table
                .filter(workflows::id.eq(id.0))
                .count()
                .get_result(conn)?;
            if found == 0 {
                return Err(StoreError::workflow_not_found(id));
            }
            let mut q = resource_samples::table
                .filter(resource_samples::workflow_id.eq(id.0))
                .into_boxed();
            q = match filter {
                SampleFilter::All => q,
                SampleFilter::Job(j) => q.filter(resource_samples::job_id.eq(job_id_to_i32(j)?)),
                SampleFilter::Nodes => q.filter(resource_samples::job_id.is_null()),
            };
            Ok(q.order(resource_samples::id)
                .offset(i64::try_from(offset).unwrap_or(i64::MAX))
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .select((
                    resource_samples::id,
                    resource_samples::job_id,
                    resource_samples::run_id,
                    resource_samples::attempt_id,
                    resource_samples::runner,
                    resource_samples::time,
                    resource_samples::cpu_percent,
                    resource_samples::memory_bytes,
                    resource_samples::num_processes,
                ))
                .load(conn)?)
        })?;
        rows.into_iter().map(record).collect()
    }
}

fn record(
    (id, job, run, attempt, runner, time, cpu, mem, procs): Row,
) -> Result<SampleRecord, StoreError> {
    let unsigned = |what: &'static str, v: i32| {
        u32::try_from(v).map_err(|_| StoreError::corrupt(what, v.to_string()))
    };
    Ok(SampleRecord {
        id,
        runner: RunnerId(runner),
        sample: ResourceSample {
            job_id: job
                .map(|j| unsigned("sample job id", j))
                .transpose()?
                .map(JobId),
            run_id: run.map(|r| unsigned("sample run id", r)).transpose()?,
            attempt_id: attempt
                .map(|a| unsigned("sample attempt id", a))
                .transpose()?,
            time: Timestamp(time),
            cpu_percent: cpu,
            memory_bytes: u64::try_from(mem).unwrap_or_default(),
            num_processes: unsigned("sample process count", procs)?,
        },
    })
}
