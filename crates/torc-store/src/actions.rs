//! Workflow action records and claims, written with the batch whose job changes fired or
//! claimed them (`Store::load_actions`, in `read`, reads them back).

use crate::backend::AnyConnection;
use crate::error::StoreError;
use crate::rows::to_i32;
use crate::schema::{action_claims, action_records};
use diesel::prelude::*;
use torc_core::changes::ActionChange;
use torc_core::ids::WorkflowId;

#[derive(Insertable)]
#[diesel(table_name = action_records)]
struct NewRecord {
    workflow_id: i64,
    id: i32,
    action_index: i32,
    run_id: i32,
    triggered_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = action_claims)]
struct NewClaim<'a> {
    workflow_id: i64,
    record_id: i32,
    executor: &'a str,
    claimed_at: i64,
}

/// Writes the action changes of one workflow inside the caller's transaction. Records and
/// claims are rare (a handful per workflow), so each is one insert.
pub(crate) fn write(
    conn: &mut AnyConnection,
    wf: WorkflowId,
    changes: &[ActionChange],
) -> Result<(), StoreError> {
    for change in changes {
        match change {
            ActionChange::Triggered {
                record,
                action,
                run_id,
                time,
            } => {
                diesel::insert_into(action_records::table)
                    .values(NewRecord {
                        workflow_id: wf.0,
                        id: to_i32("action record", *record)?,
                        action_index: to_i32("action index", *action)?,
                        run_id: to_i32("run_id", *run_id)?,
                        triggered_at: time.0,
                    })
                    .execute(conn)?;
            }
            ActionChange::Claimed {
                record,
                executor,
                time,
            } => {
                diesel::insert_into(action_claims::table)
                    .values(NewClaim {
                        workflow_id: wf.0,
                        record_id: to_i32("action record", *record)?,
                        executor,
                        claimed_at: time.0,
                    })
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}
