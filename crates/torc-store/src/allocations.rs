//! Allocation records, written with the batch that changed them, and read back when a workflow
//! is loaded.

use crate::backend::AnyConnection;
use crate::error::StoreError;
use crate::rows::{to_i32, to_i64};
use crate::schema::allocations;
use crate::store::Store;
use diesel::prelude::*;
use std::collections::BTreeMap;
use torc_core::alloc::{Allocation, AllocationState};
use torc_core::ids::{Timestamp, WorkflowId};

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
