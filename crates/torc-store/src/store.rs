//! The [`Store`] handle: opening a database, and the operations that write to it.

use crate::backend::{AnyConnection, Durability, InsertAll, Pool, PooledConn, Target};
use crate::error::StoreError;
use crate::fixed::SetJobStates;
use crate::rows::{
    index_to_id, job_id_to_i32, to_i32, to_i64, DefinitionRows, NewEvent, NewRequirement,
    NewResult, NewWorkflow,
};
use crate::schema::{
    job_dependencies, job_files, job_user_data, jobs, resource_requirements, results, workflows,
};
use diesel::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use torc_core::changes::{Changes, WorkflowChange};
use torc_core::ids::{Timestamp, WorkflowId};
use torc_core::model::{JobStatus, WorkflowDef};
use torc_core::sched::RequirementChange;

/// Most job ids set by one statement (they are one bound value, so this only bounds its size).
const UPDATE_CHUNK: usize = 50_000;

/// A handle on the database: a pool of connections, cheap to clone and safe to share.
///
/// Reads may run from any thread at any time. Writes are meant to come from one writer (the
/// engine's), which group-commits many requests into one [`Store::apply`]; concurrent writers
/// are safe but wait for each other.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    target: Arc<str>,
    /// What the store was opened on (for the engine lock).
    pub(crate) kind: Arc<Target>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Job ids to set to each `(status code, attempt_id)`: one `UPDATE` per group.
type UpdateGroups = BTreeMap<(i16, i32), Vec<i32>>;

/// What a batch does to one workflow: its job changes in order, and its last workflow change.
#[derive(Default)]
struct WorkflowBatch {
    jobs: Changes,
    workflow: Option<WorkflowChange>,
    actions: Vec<torc_core::changes::ActionChange>,
    allocations: Vec<torc_core::alloc::Allocation>,
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date: PostgreSQL for
    /// `postgres://...` or `postgresql://...` (any URL libpq accepts; the database must exist),
    /// SQLite for `sqlite://PATH`, `sqlite:PATH` or a plain path (created if needed; the parent
    /// directory must exist).
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, Durability::Full)
    }

    /// [`Store::open`] with commits as durable as `durability` says.
    pub fn open_with(url: &str, durability: Durability) -> Result<Store, StoreError> {
        Store::open_target(Target::parse(url)?, durability)
    }

    /// Opens (creating it if needed) the SQLite database at `path` and brings its schema up to
    /// date. The parent directory must exist.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::open_sqlite_with(path, Durability::Full)
    }

    /// [`Store::open_sqlite`] with commits as durable as `durability` says.
    pub fn open_sqlite_with(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        Store::open_target(Target::Sqlite(path.to_path_buf()), durability)
    }

    fn open_target(target: Target, durability: Durability) -> Result<Store, StoreError> {
        let pool = target.open_pool(durability)?;
        tracing::debug!(%target, "opened store");
        Ok(Store {
            pool,
            target: target.to_string().into(),
            kind: Arc::new(target),
        })
    }

    /// The path or URL this store was opened with (a URL without its password).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Records a new workflow, active in its first run, with every job uninitialized at attempt
    /// 1, in one transaction of a few multi-row inserts. `spec_text` is the spec it came from.
    pub fn create_workflow(
        &self,
        def: &WorkflowDef,
        spec_text: Option<&str>,
        now: Timestamp,
    ) -> Result<WorkflowId, StoreError> {
        self.create_workflow_keyed(def, spec_text, now, None, |_| Vec::new())
    }

    /// [`Store::create_workflow`], recording in the same transaction that `key` created it
    /// (see [`Store::find_idempotency_key`]), with each job's first status given by `initial`:
    /// called inside the transaction with the new workflow's id, it returns the statuses by
    /// job index (jobs past its end stay uninitialized). A caller that evaluates the fresh
    /// workflow anyway (the engine) thus writes each job once, rather than inserting it
    /// uninitialized and updating it in the next commit: on a 10-million-job workflow that
    /// update was a fifth of the creation.
    pub fn create_workflow_keyed(
        &self,
        def: &WorkflowDef,
        spec_text: Option<&str>,
        now: Timestamp,
        key: Option<&crate::IdempotencyKey>,
        initial: impl FnOnce(WorkflowId) -> Vec<JobStatus>,
    ) -> Result<WorkflowId, StoreError> {
        let started = Instant::now();
        let new = NewWorkflow::new(def, spec_text, now)?;
        let mut conn = self.conn()?;
        let id = conn.write_transaction(|conn| {
            let id = WorkflowId(
                diesel::insert_into(workflows::table)
                    .values(&new)
                    .returning(workflows::id)
                    .get_result::<i64>(conn)?,
            );
            let mut rows = DefinitionRows::new(id, def)?;
            rows.set_initial_statuses(&initial(id));
            rows.requirements.insert_all(conn)?;
            rows.handlers.insert_all(conn)?;
            rows.files.insert_all(conn)?;
            rows.user_data.insert_all(conn)?;
            match conn {
                AnyConnection::Sqlite(c) => crate::fixed::insert_fixed(c, &rows.jobs)?,
                // COPY: one statement whatever the count, nothing to parse per row.
                AnyConnection::Pg(c) => {
                    diesel::copy_from(jobs::table)
                        .from_insertable(&rows.jobs)
                        .execute(c)?;
                }
            }
            rows.dependencies.insert_all(conn)?;
            rows.job_files.insert_all(conn)?;
            rows.job_user_data.insert_all(conn)?;
            if let Some(key) = key {
                crate::idempotency::insert(conn, key, id, now)?;
            }
            Ok(id)
        })?;
        conn.refresh_statistics()?;
        tracing::debug!(
            workflow = %id,
            jobs = def.jobs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "created workflow"
        );
        Ok(id)
    }

    /// Writes the changes of a batch of operations, on any number of workflows, in one
    /// transaction: each job's last state and attempt, new results and events, and workflow
    /// state and run. Entries are applied in order (for a job changed twice, the later wins).
    ///
    /// Either all of it is durable when this returns `Ok`, or none of it is written. A batch
    /// naming a workflow or job that does not exist is refused as a whole.
    pub fn apply(&self, batch: &[(WorkflowId, &Changes)]) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut per_workflow: BTreeMap<WorkflowId, WorkflowBatch> = BTreeMap::new();
        let mut new_results = Vec::new();
        let mut new_events = Vec::new();
        let mut new_samples = Vec::new();
        for (wf, changes) in batch {
            if changes.is_empty() {
                continue;
            }
            let entry = per_workflow.entry(*wf).or_default();
            entry.jobs.jobs.extend_from_slice(&changes.jobs);
            if changes.workflow.is_some() {
                entry.workflow = changes.workflow;
            }
            entry.actions.extend_from_slice(&changes.actions);
            entry.allocations.extend_from_slice(&changes.allocations);
            for r in &changes.results {
                new_results.push(NewResult::new(*wf, r)?);
            }
            for e in &changes.events {
                new_events.push(NewEvent::new(*wf, e)?);
            }
            crate::samples::rows(*wf, &changes.samples, &mut new_samples)?;
        }
        if per_workflow.is_empty() {
            return Ok(());
        }

        // Per workflow: the job ids to set to each (status, attempt).
        let mut updates: Vec<(WorkflowId, UpdateGroups)> = Vec::with_capacity(per_workflow.len());
        let mut job_rows = 0;
        for (wf, b) in &per_workflow {
            let mut groups = UpdateGroups::new();
            for c in b.jobs.final_job_states() {
                let key = (c.status.code(), to_i32("attempt_id", c.attempt_id)?);
                groups.entry(key).or_default().push(job_id_to_i32(c.job)?);
                job_rows += 1;
            }
            updates.push((*wf, groups));
        }

        let mut conn = self.conn()?;
        conn.write_transaction(|conn| {
            let wanted: Vec<i64> = per_workflow.keys().map(|w| w.0).collect();
            // One workflow (the common case) is checked with a statement of fixed shape, which
            // is prepared once; an `IN` list is prepared afresh for every commit.
            let found: Vec<i64> = match wanted[..] {
                [one] => workflows::table
                    .select(workflows::id)
                    .filter(workflows::id.eq(one))
                    .filter(workflows::deleting.eq(false))
                    .load(conn)?,
                _ => workflows::table
                    .select(workflows::id)
                    .filter(workflows::id.eq_any(&wanted))
                    .filter(workflows::deleting.eq(false))
                    .load(conn)?,
            };
            if found.len() != wanted.len() {
                let missing = wanted
                    .iter()
                    .find(|w| !found.contains(w))
                    .copied()
                    .unwrap_or_default();
                return Err(StoreError::workflow_not_found(WorkflowId(missing)));
            }
            for (wf, groups) in &updates {
                for ((status, attempt), ids) in groups {
                    for chunk in ids.chunks(UPDATE_CHUNK) {
                        let updated =
                            SetJobStates::new(*status, *attempt, wf.0, chunk).run(conn)?;
                        if updated != chunk.len() {
                            return Err(StoreError::UnknownJobs {
                                workflow_id: *wf,
                                expected: chunk.len(),
                                found: updated,
                            });
                        }
                    }
                }
            }
            for (wf, b) in &per_workflow {
                if let Some(change) = b.workflow {
                    diesel::update(workflows::table.find(wf.0))
                        .set((
                            workflows::state.eq(change.state.name()),
                            workflows::run_id.eq(to_i32("run_id", change.run_id)?),
                        ))
                        .execute(conn)?;
                }
            }
            match conn {
                // PostgreSQL takes rows fastest through COPY: one statement whatever the count,
                // nothing to parse per row.
                AnyConnection::Pg(c) if !new_results.is_empty() => {
                    diesel::copy_from(crate::schema::results::table)
                        .from_insertable(&new_results)
                        .execute(c)?;
                }
                AnyConnection::Sqlite(c) => crate::fixed::insert_fixed(c, &new_results)?,
                AnyConnection::Pg(_) => {}
            }
            new_events.insert_all(conn)?;
            crate::samples::write(conn, &new_samples)?;
            for (wf, b) in &per_workflow {
                if !b.actions.is_empty() {
                    crate::actions::write(conn, *wf, &b.actions)?;
                }
                if !b.allocations.is_empty() {
                    crate::allocations::write(conn, *wf, &b.allocations)?;
                }
            }
            Ok(())
        })?;
        tracing::debug!(
            workflows = per_workflow.len(),
            job_rows,
            results = new_results.len(),
            events = new_events.len(),
            samples = new_samples.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "applied batch"
        );
        Ok(())
    }

    /// Deletes a workflow and everything that belongs to it.
    pub fn delete_workflow(&self, id: WorkflowId) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let deleted = conn.write_transaction(|conn| {
            // On PostgreSQL results, jobs and their edges reference no workflow (see its
            // migrations `results_unreferenced` and `bulk_rows_unreferenced`): nothing cascades
            // to them.
            let w = id.0;
            diesel::delete(results::table.filter(results::workflow_id.eq(w))).execute(conn)?;
            diesel::delete(job_dependencies::table.filter(job_dependencies::workflow_id.eq(w)))
                .execute(conn)?;
            diesel::delete(job_files::table.filter(job_files::workflow_id.eq(w))).execute(conn)?;
            diesel::delete(job_user_data::table.filter(job_user_data::workflow_id.eq(w)))
                .execute(conn)?;
            diesel::delete(jobs::table.filter(jobs::workflow_id.eq(w))).execute(conn)?;
            Ok(diesel::delete(workflows::table.find(id.0)).execute(conn)?)
        })?;
        if deleted == 0 {
            return Err(StoreError::workflow_not_found(id));
        }
        tracing::debug!(workflow = %id, "deleted workflow");
        Ok(())
    }

    /// Sets a workflow's cap on jobs in flight (`None`: no cap).
    pub fn set_max_concurrent_jobs(
        &self,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<(), StoreError> {
        let cap = cap
            .map(|n| crate::rows::to_i32("max_concurrent_jobs", n))
            .transpose()?;
        let mut conn = self.conn()?;
        let updated = conn.write_transaction(|conn| {
            Ok(diesel::update(workflows::table.find(id.0))
                .set(workflows::max_concurrent_jobs.eq(cap))
                .execute(conn)?)
        })?;
        if updated == 0 {
            return Err(StoreError::workflow_not_found(id));
        }
        Ok(())
    }

    /// Writes a change of one job's needs (see `WorkflowSched::scale_job_resources`): the
    /// requirement updated in place, or a new one and the job pointed at it; the job's timeout.
    pub fn apply_requirement_change(
        &self,
        id: WorkflowId,
        change: &RequirementChange,
    ) -> Result<(), StoreError> {
        let job = job_id_to_i32(change.job)?;
        let mut conn = self.conn()?;
        let updated = conn.write_transaction(|conn| {
            if let Some((index, req)) = &change.requirement {
                let row = NewRequirement::new(id, *index as usize, req)?;
                let rid = index_to_id("resource requirement", *index)?;
                if change.created {
                    diesel::insert_into(resource_requirements::table)
                        .values(&row)
                        .execute(conn)?;
                    diesel::update(jobs::table.find((id.0, job)))
                        .set(jobs::resource_requirement_id.eq(Some(rid)))
                        .execute(conn)?;
                } else {
                    let r = &req.resources;
                    diesel::update(resource_requirements::table.find((id.0, rid)))
                        .set((
                            resource_requirements::memory_bytes
                                .eq(to_i64("memory_bytes", r.memory_bytes)?),
                            resource_requirements::runtime_secs.eq(r.runtime.as_secs_f64()),
                        ))
                        .execute(conn)?;
                }
            }
            Ok(diesel::update(jobs::table.find((id.0, job)))
                .set(jobs::timeout_secs.eq(change.timeout.map(|t| t.as_secs_f64())))
                .execute(conn)?)
        })?;
        if updated == 0 {
            return Err(StoreError::workflow_not_found(id));
        }
        Ok(())
    }
}
