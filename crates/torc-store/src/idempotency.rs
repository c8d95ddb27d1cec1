//! Keys of retried workflow creations: the row is written in the creation's own transaction, so
//! a key names a workflow exactly when that workflow exists (looked up in `read`).

use crate::backend::AnyConnection;
use crate::error::StoreError;
use crate::schema::idempotency_keys;
use diesel::prelude::*;
use torc_core::ids::{Timestamp, WorkflowId};

/// A creation's idempotency key: who sent it, the key, and the SHA-256 of what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The user the key belongs to (empty without authentication).
    pub user: String,
    pub key: String,
    /// Lowercase hex SHA-256 of the request (its format and its spec).
    pub request_sha256: String,
}

#[derive(Insertable)]
#[diesel(table_name = idempotency_keys)]
struct NewKey<'a> {
    user: &'a str,
    key: &'a str,
    request_sha256: &'a str,
    workflow_id: i64,
    created_at: i64,
}

/// Records `key` as having created workflow `id` (inside the creation's transaction).
pub(crate) fn insert(
    conn: &mut AnyConnection,
    key: &IdempotencyKey,
    id: WorkflowId,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(idempotency_keys::table)
        .values(NewKey {
            user: &key.user,
            key: &key.key,
            request_sha256: &key.request_sha256,
            workflow_id: id.0,
            created_at: now.0,
        })
        .execute(conn)?;
    Ok(())
}
