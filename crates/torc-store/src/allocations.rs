//! Allocation records, written with the batch that changed them (`Store::load_allocations`, in
//! `read`, reads them back).

use crate::backend::AnyConnection;
use crate::error::StoreError;
use crate::rows::{to_i32, to_i64};
use crate::schema::allocations;
use diesel::prelude::*;
use std::collections::BTreeMap;
use torc_core::alloc::Allocation;
use torc_core::ids::WorkflowId;

#[derive(Insertable)]
#[diesel(table_name = allocations)]
struct Row<'a> {
    workflow_id: i64,
    id: i32,
    record_id: i32,
    scheduler: &'a str,
    batch_id: Option<i64>,
    state: &'a str,
    executor: &'a str,
    requested_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    note: &'a str,
}

/// Writes the allocations of one workflow inside the caller's transaction: each one's last
/// version replaces what was stored. They are few (a handful per workflow), so each is one
/// delete and one insert, the same on every backend.
pub(crate) fn write(
    conn: &mut AnyConnection,
    wf: WorkflowId,
    changed: &[Allocation],
) -> Result<(), StoreError> {
    let mut last: BTreeMap<u32, &Allocation> = BTreeMap::new();
    for a in changed {
        last.insert(a.id, a);
    }
    for a in last.values() {
        let id = to_i32("allocation id", a.id)?;
        diesel::delete(
            allocations::table
                .filter(allocations::workflow_id.eq(wf.0))
                .filter(allocations::id.eq(id)),
        )
        .execute(conn)?;
        let batch_id = a
            .batch_id
            .map(|b| to_i64("allocation batch id", b))
            .transpose()?;
        diesel::insert_into(allocations::table)
            .values(Row {
                workflow_id: wf.0,
                id,
                record_id: to_i32("allocation record", a.record)?,
                scheduler: &a.scheduler,
                batch_id,
                state: a.state.name(),
                executor: &a.executor,
                requested_at: a.requested_at.0,
                started_at: a.started_at.map(|t| t.0),
                ended_at: a.ended_at.map(|t| t.0),
                note: &a.note,
            })
            .execute(conn)?;
    }
    Ok(())
}
