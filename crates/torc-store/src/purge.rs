//! Deleting a workflow without holding the database: [`Store::mark_deleting`] hides it from
//! every read in one small transaction, then each [`Store::purge_step`] deletes at most about a
//! chunk of its rows in a transaction of its own (the engine's writer takes one step between
//! group commits, so other workflows' commits wait at most for one chunk); the workflow's own
//! row goes last. The mark is durable: a restarted engine goes on with
//! [`Store::deleting_workflows`].

use crate::backend::AnyConnection;
use crate::error::StoreError;
use crate::schema::{
    action_claims, action_records, events, failure_handlers, files, job_dependencies, job_files,
    job_user_data, jobs, resource_requirements, results, user_data, workflows,
};
use crate::store::Store;
use diesel::prelude::*;
use torc_core::ids::WorkflowId;

/// Deletes up to about `budget` rows of workflow `w` from `$table`, ordered by `$key`; the
/// number deleted (0 when it has none left).
macro_rules! purge_chunk {
    ($conn:expr, $table:ident, $key:ident: $ty:ty, $w:expr, $budget:expr) => {{
        let cutoff: Option<$ty> = $table::table
            .filter($table::workflow_id.eq($w))
            .select($table::$key)
            .order($table::$key)
            .offset($budget)
            .first(&mut *$conn)
            .optional()?;
        match cutoff {
            None => diesel::delete($table::table.filter($table::workflow_id.eq($w)))
                .execute(&mut *$conn)?,
            Some(cutoff) => {
                let n = diesel::delete(
                    $table::table
                        .filter($table::workflow_id.eq($w))
                        .filter($table::$key.lt(cutoff)),
                )
                .execute(&mut *$conn)?;
                if n > 0 {
                    n
                } else {
                    // More than a chunk share the first key: take them all, or never move on.
                    diesel::delete(
                        $table::table
                            .filter($table::workflow_id.eq($w))
                            .filter($table::$key.eq(cutoff)),
                    )
                    .execute(&mut *$conn)?
                }
            }
        }
    }};
}

/// Deletes one chunk of the first table that still has rows of `w`, or the workflow's own row
/// (and its keys) when none has. Whether the workflow is gone.
fn step(conn: &mut AnyConnection, w: i64, budget: i64) -> Result<bool, StoreError> {
    macro_rules! chunk_of {
        ($($table:ident by $key:ident: $ty:ty),* $(,)?) => {
            $(
                if purge_chunk!(conn, $table, $key: $ty, w, budget) > 0 {
                    return Ok(false);
                }
            )*
        };
    }
    chunk_of!(
        job_dependencies by job_id: i32,
        job_files by job_id: i32,
        job_user_data by job_id: i32,
        results by id: i64,
        events by id: i64,
        action_claims by record_id: i32,
        action_records by id: i32,
        jobs by id: i32,
        resource_requirements by id: i32,
        failure_handlers by id: i32,
        files by id: i32,
        user_data by id: i32,
    );
    diesel::delete(workflows::table.find(w)).execute(conn)?;
    Ok(true)
}

impl Store {
    /// Hides a workflow from every read (loads, listings, group commits) before its rows are
    /// deleted by [`Store::purge_step`]. `NotFound` when there is no such workflow, or it is
    /// being deleted already.
    pub fn mark_deleting(&self, id: WorkflowId) -> Result<(), StoreError> {
        let marked = self.conn()?.write_transaction(|conn| {
            Ok(diesel::update(
                workflows::table
                    .find(id.0)
                    .filter(workflows::deleting.eq(false)),
            )
            .set(workflows::deleting.eq(true))
            .execute(conn)?)
        })?;
        if marked == 0 {
            return Err(StoreError::workflow_not_found(id));
        }
        Ok(())
    }

    /// Deletes up to about `rows` rows of a workflow marked by [`Store::mark_deleting`], in one
    /// transaction; its own row goes last. Whether it is gone.
    pub fn purge_step(&self, id: WorkflowId, rows: u32) -> Result<bool, StoreError> {
        let budget = i64::from(rows.max(1));
        self.conn()?
            .write_transaction(|conn| step(conn, id.0, budget))
    }

    /// The workflows marked for deletion and not gone yet (a restart goes on with them).
    pub fn deleting_workflows(&self) -> Result<Vec<WorkflowId>, StoreError> {
        let ids: Vec<i64> = self.conn()?.read_transaction(|conn| {
            Ok(workflows::table
                .filter(workflows::deleting.eq(true))
                .select(workflows::id)
                .order(workflows::id)
                .load(conn)?)
        })?;
        Ok(ids.into_iter().map(WorkflowId).collect())
    }
}
