//! The operations that only read: loading a workflow to rebuild live state, and listings.

use crate::backend::AnyConnection as Conn;
use crate::error::StoreError;
use crate::records::{EventRecord, JobRecord, LoadedWorkflow, ResultRecord, WorkflowSummary};
use crate::rows::{
    job_id_to_i32, status_from_code, DependencyRow, EventRow, FileRow, HandlerRow, JobFileRow,
    JobListRow, JobRow, JobUserDataRow, RequirementRow, ResultRow, SummaryRow, UserDataRow,
    WorkflowRow, WorkflowRows,
};
use crate::samples::{SampleFilter, SampleRecord};
use crate::schema::resource_samples;
use crate::schema::{
    action_claims, action_records, allocations, events, failure_handlers, files, idempotency_keys,
    job_dependencies, job_files, job_user_data, jobs, resource_requirements, results, user_data,
    workflows,
};
use crate::store::Store;
use diesel::prelude::*;
use std::collections::BTreeMap;
use torc_core::alloc::{Allocation, AllocationState};
use torc_core::api::ResourceSample;
use torc_core::changes::EventKind;
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use torc_core::model::JobStatus;
use torc_core::sched::ActionRecord;

/// `offset` or `limit` as SQL wants it (anything above `i64::MAX` means "all").
fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ensure_exists(conn: &mut Conn, id: WorkflowId) -> Result<(), StoreError> {
    let found = workflows::table
        .find(id.0)
        .filter(workflows::deleting.eq(false))
        .select(workflows::id)
        .first::<i64>(conn)
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::workflow_not_found(id)),
    }
}

impl Store {
    /// Runs `f` in a read transaction, so that all its queries see the same snapshot.
    fn read<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.conn()?.read_transaction(f)
    }

    /// Reads a workflow back: exactly the definition it was created with, and the durable state
    /// of the workflow and each job.
    pub fn load_workflow(&self, id: WorkflowId) -> Result<LoadedWorkflow, StoreError> {
        let w = id.0;
        let rows = self.read(|conn| {
            let workflow = workflows::table
                .find(w)
                .filter(workflows::deleting.eq(false))
                .select(WorkflowRow::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(|| StoreError::workflow_not_found(id))?;
            let results = results::table
                .filter(results::workflow_id.eq(w))
                .filter(results::run_id.eq(workflow.run_id()))
                .select((results::job_id, results::attempt_id))
                .load(conn)?;
            Ok(WorkflowRows {
                results,
                workflow,
                requirements: resource_requirements::table
                    .filter(resource_requirements::workflow_id.eq(w))
                    .order(resource_requirements::id)
                    .select(RequirementRow::as_select())
                    .load(conn)?,
                handlers: failure_handlers::table
                    .filter(failure_handlers::workflow_id.eq(w))
                    .order(failure_handlers::id)
                    .select(HandlerRow::as_select())
                    .load(conn)?,
                files: files::table
                    .filter(files::workflow_id.eq(w))
                    .order(files::id)
                    .select(FileRow::as_select())
                    .load(conn)?,
                user_data: user_data::table
                    .filter(user_data::workflow_id.eq(w))
                    .order(user_data::id)
                    .select(UserDataRow::as_select())
                    .load(conn)?,
                jobs: jobs::table
                    .filter(jobs::workflow_id.eq(w))
                    .order(jobs::id)
                    .select(JobRow::as_select())
                    .load(conn)?,
                dependencies: job_dependencies::table
                    .filter(job_dependencies::workflow_id.eq(w))
                    .order((
                        job_dependencies::job_id,
                        job_dependencies::depends_on_job_id,
                    ))
                    .select(DependencyRow::as_select())
                    .load(conn)?,
                job_files: job_files::table
                    .filter(job_files::workflow_id.eq(w))
                    .order((job_files::job_id, job_files::is_output, job_files::position))
                    .select(JobFileRow::as_select())
                    .load(conn)?,
                job_user_data: job_user_data::table
                    .filter(job_user_data::workflow_id.eq(w))
                    .order((
                        job_user_data::job_id,
                        job_user_data::is_output,
                        job_user_data::position,
                    ))
                    .select(JobUserDataRow::as_select())
                    .load(conn)?,
                losses: losses_since_reset(conn, w)?,
            })
        })?;
        rows.into_loaded()
    }

    /// The spec text a workflow was created from, if it was given.
    pub fn workflow_spec(&self, id: WorkflowId) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            workflows::table
                .find(id.0)
                .filter(workflows::deleting.eq(false))
                .select(workflows::spec)
                .first::<Option<String>>(conn)
                .optional()?
                .ok_or_else(|| StoreError::workflow_not_found(id))
        })
    }

    /// Every workflow, oldest first.
    pub fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let rows = self.read(|conn| {
            Ok(workflows::table
                .filter(workflows::deleting.eq(false))
                .order(workflows::id)
                .select(SummaryRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(SummaryRow::into_record).collect()
    }

    /// One workflow's summary.
    pub fn workflow_summary(&self, id: WorkflowId) -> Result<WorkflowSummary, StoreError> {
        self.read(|conn| {
            workflows::table
                .find(id.0)
                .filter(workflows::deleting.eq(false))
                .select(SummaryRow::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(|| StoreError::workflow_not_found(id))
        })?
        .into_record()
    }

    /// How many of a workflow's jobs are in each status (statuses with no job are absent).
    pub fn job_counts(&self, id: WorkflowId) -> Result<BTreeMap<JobStatus, u64>, StoreError> {
        let rows = self.read(|conn| {
            ensure_exists(conn, id)?;
            Ok(jobs::table
                .filter(jobs::workflow_id.eq(id.0))
                .group_by(jobs::status)
                .select((jobs::status, diesel::dsl::count_star()))
                .load::<(i16, i64)>(conn)?)
        })?;
        rows.into_iter()
            .map(|(code, n)| {
                Ok((
                    status_from_code("job status", code)?,
                    u64::try_from(n).unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// A page of a workflow's jobs in id order, optionally only those in `status`.
    pub fn list_jobs(
        &self,
        id: WorkflowId,
        status: Option<JobStatus>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self.read(|conn| {
            ensure_exists(conn, id)?;
            let mut query = jobs::table
                .filter(jobs::workflow_id.eq(id.0))
                .select(JobListRow::as_select())
                .into_boxed();
            if let Some(status) = status {
                query = query.filter(jobs::status.eq(status.code()));
            }
            Ok(query
                .order(jobs::id)
                .offset(sql_count(offset))
                .limit(sql_count(limit))
                .load(conn)?)
        })?;
        rows.into_iter().map(JobListRow::into_record).collect()
    }

    /// A page of a workflow's results in the order they were recorded, optionally only those of
    /// one job.
    pub fn list_results(
        &self,
        id: WorkflowId,
        job: Option<JobId>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let rows = self.read(|conn| {
            ensure_exists(conn, id)?;
            let mut query = results::table
                .filter(results::workflow_id.eq(id.0))
                .select(ResultRow::as_select())
                .into_boxed();
            if let Some(job) = job {
                query = query.filter(results::job_id.eq(job_id_to_i32(job)?));
            }
            Ok(query
                .order(results::id)
                .offset(sql_count(offset))
                .limit(sql_count(limit))
                .load(conn)?)
        })?;
        rows.into_iter().map(ResultRow::into_record).collect()
    }

    /// A page of a workflow's event log, oldest first.
    pub fn list_events(
        &self,
        id: WorkflowId,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self.read(|conn| {
            ensure_exists(conn, id)?;
            Ok(events::table
                .filter(events::workflow_id.eq(id.0))
                .order(events::id)
                .offset(sql_count(offset))
                .limit(sql_count(limit))
                .select(EventRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(EventRow::into_record).collect()
    }

    /// Up to `limit` events of a workflow recorded after the event `after` (0: from the first),
    /// oldest first: how a follower reads what is new since its last look.
    pub fn events_after(
        &self,
        id: WorkflowId,
        after: i64,
        limit: u64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self.read(|conn| {
            ensure_exists(conn, id)?;
            Ok(events::table
                .filter(events::workflow_id.eq(id.0))
                .filter(events::id.gt(after))
                .order(events::id)
                .limit(sql_count(limit))
                .select(EventRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(EventRow::into_record).collect()
    }

    /// How many events a workflow has.
    pub fn count_events(&self, id: WorkflowId) -> Result<u64, StoreError> {
        let n: i64 = self.read(|conn| {
            ensure_exists(conn, id)?;
            Ok(events::table
                .filter(events::workflow_id.eq(id.0))
                .count()
                .get_result(conn)?)
        })?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}

/// How often each job was lost with its runner since the workflow's last reset, counted from the
/// `job_lost` events (a reset gives the jobs it touches a fresh count; the jobs it leaves alone
/// are finished and never run again without one). Derived rather than stored: losses are rare,
/// and the hot path's job updates stay one column narrower.
fn losses_since_reset(conn: &mut Conn, w: i64) -> QueryResult<Vec<(Option<i32>, i64)>> {
    let since: Option<i64> = events::table
        .filter(events::workflow_id.eq(w))
        .filter(events::kind.eq(EventKind::WorkflowReset.name()))
        .select(diesel::dsl::max(events::id))
        .first(conn)?;
    events::table
        .filter(events::workflow_id.eq(w))
        .filter(events::kind.eq(EventKind::JobLost.name()))
        // A loss names its job; one that does not counts for none (rather than failing the load).
        .filter(events::job_id.is_not_null())
        .filter(events::id.gt(since.unwrap_or(0)))
        .group_by(events::job_id)
        .select((events::job_id, diesel::dsl::count_star()))
        .load(conn)
}

impl Store {
    /// Every action record of a workflow with the executors that claimed it, in the order they
    /// fired, and the id the next record gets.
    pub fn load_actions(&self, id: WorkflowId) -> Result<(Vec<ActionRecord>, u32), StoreError> {
        let mut conn = self.conn()?;
        conn.read_transaction(|conn| {
            let records: Vec<(i32, i32, i32)> = action_records::table
                .filter(action_records::workflow_id.eq(id.0))
                .order(action_records::id)
                .select((
                    action_records::id,
                    action_records::action_index,
                    action_records::run_id,
                ))
                .load(conn)?;
            let claims: Vec<(i32, String)> = action_claims::table
                .filter(action_claims::workflow_id.eq(id.0))
                .order((action_claims::record_id, action_claims::claimed_at))
                .select((action_claims::record_id, action_claims::executor))
                .load(conn)?;
            let mut by: BTreeMap<i32, Vec<String>> = BTreeMap::new();
            for (record, executor) in claims {
                by.entry(record).or_default().push(executor);
            }
            let mut next = 1u32;
            let mut out = Vec::with_capacity(records.len());
            for (rid, action, run) in records {
                let as_u32 = |what: &'static str, v: i32| {
                    u32::try_from(v).map_err(|_| StoreError::corrupt(what, v.to_string()))
                };
                let record = ActionRecord {
                    id: as_u32("action record id", rid)?,
                    action: as_u32("action index", action)?,
                    run_id: as_u32("action run_id", run)?,
                    claimed_by: by.remove(&rid).unwrap_or_default(),
                };
                next = next.max(record.id + 1);
                out.push(record);
            }
            Ok((out, next))
        })
    }

    /// The workflow a user's key created, with the SHA-256 of the request that created it.
    pub fn find_idempotency_key(
        &self,
        user: &str,
        key: &str,
    ) -> Result<Option<(String, WorkflowId)>, StoreError> {
        let found = self.read(|conn| {
            Ok(idempotency_keys::table
                .find((user, key))
                .select((
                    idempotency_keys::request_sha256,
                    idempotency_keys::workflow_id,
                ))
                .first::<(String, i64)>(conn)
                .optional()?)
        })?;
        Ok(found.map(|(sha, id)| (sha, WorkflowId(id))))
    }
}

type Loaded = (
    i32,
    i32,
    String,
    Option<i64>,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
);

impl Store {
    /// Every allocation recorded for workflow `id`, oldest first.
    pub fn load_allocations(&self, id: WorkflowId) -> Result<Vec<Allocation>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<Loaded> = allocations::table
            .filter(allocations::workflow_id.eq(id.0))
            .order(allocations::id)
            .select((
                allocations::id,
                allocations::record_id,
                allocations::scheduler,
                allocations::batch_id,
                allocations::state,
                allocations::executor,
                allocations::requested_at,
                allocations::started_at,
                allocations::ended_at,
                allocations::note,
            ))
            .load(&mut conn)?;
        rows.into_iter()
            .map(
                |(aid, record, scheduler, batch, state, executor, req, start, end, note)| {
                    let as_u32 = |what: &'static str, v: i32| {
                        u32::try_from(v).map_err(|_| StoreError::corrupt(what, v))
                    };
                    Ok(Allocation {
                        id: as_u32("allocation id", aid)?,
                        record: as_u32("allocation record", record)?,
                        scheduler,
                        batch_id: batch
                            .map(|b| {
                                u64::try_from(b).map_err(|_| StoreError::corrupt("batch id", b))
                            })
                            .transpose()?,
                        state: AllocationState::parse(&state)
                            .ok_or_else(|| StoreError::corrupt("allocation state", &state))?,
                        executor,
                        requested_at: Timestamp(req),
                        started_at: start.map(Timestamp),
                        ended_at: end.map(Timestamp),
                        note,
                    })
                },
            )
            .collect()
    }
}

/// A stored sample's columns, in the order selected.
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
