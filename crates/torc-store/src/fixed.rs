//! Statements of the group commit with one shape whatever the batch, so that each connection
//! prepares them once.
//!
//! diesel never caches an `UPDATE` (nor an `IN (...)` list, whose text grows with the list), so
//! a commit used to parse and plan one fresh statement per (status, attempt) group, every
//! batch; on SQLite that was a tenth of the writer's time. Here the ids travel as one bound
//! value (a JSON array read by `json_each` on SQLite, an `int4[]` on PostgreSQL) and the
//! statement declares a static query id, which is what diesel's statement cache keys on.

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sql_types::{Array, BigInt, Integer, SmallInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl};

/// `UPDATE jobs SET status, attempt_id` for the listed jobs of one workflow.
pub(crate) struct SetJobStates<'a> {
    pub status: i16,
    pub attempt: i32,
    pub workflow: i64,
    pub ids: &'a [i32],
    /// `ids` as a JSON array (SQLite's form), filled in by [`SetJobStates::for_sqlite`].
    json: String,
}

impl<'a> SetJobStates<'a> {
    pub(crate) fn new(status: i16, attempt: i32, workflow: i64, ids: &'a [i32]) -> Self {
        SetJobStates {
            status,
            attempt,
            workflow,
            ids,
            json: String::new(),
        }
    }

    fn for_sqlite(mut self) -> Self {
        // Integers always serialize.
        self.json = serde_json::to_string(self.ids).unwrap_or_default();
        self
    }

    /// `UPDATE jobs SET status = ?, attempt_id = ? WHERE workflow_id = ?`: the part both
    /// backends spell alike.
    fn walk_head<'b, DB>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: Backend + HasSqlType<SmallInt> + HasSqlType<Integer> + HasSqlType<BigInt>,
        i16: ToSql<SmallInt, DB>,
        i32: ToSql<Integer, DB>,
        i64: ToSql<BigInt, DB>,
    {
        out.push_sql("UPDATE jobs SET status = ");
        out.push_bind_param::<SmallInt, _>(&self.status)?;
        out.push_sql(", attempt_id = ");
        out.push_bind_param::<Integer, _>(&self.attempt)?;
        out.push_sql(" WHERE workflow_id = ");
        out.push_bind_param::<BigInt, _>(&self.workflow)
    }

    /// Runs the update; returns how many rows it changed.
    pub(crate) fn run(self, conn: &mut crate::backend::AnyConnection) -> QueryResult<usize> {
        use crate::backend::AnyConnection;
        match conn {
            AnyConnection::Sqlite(c) => self.for_sqlite().execute(c),
            AnyConnection::Pg(c) => self.execute(c),
        }
    }
}

impl QueryId for SetJobStates<'_> {
    type QueryId = SetJobStates<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Sqlite> for SetJobStates<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.walk_head(&mut out)?;
        out.push_sql(" AND id IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, _>(&self.json)?;
        out.push_sql("))");
        Ok(())
    }
}

impl QueryFragment<Pg> for SetJobStates<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.walk_head(&mut out)?;
        out.push_sql(" AND id = ANY(");
        out.push_bind_param::<Array<Integer>, _>(&self.ids)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for SetJobStates<'_> {}
