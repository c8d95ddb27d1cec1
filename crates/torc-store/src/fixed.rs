//! Statements of the group commit with one shape whatever the batch, so that each connection
//! prepares them once: the job state updates, and (on SQLite) the results inserts.
//!
//! diesel never caches an `UPDATE` (nor an `IN (...)` list, whose text grows with the list), so
//! a commit used to parse and plan one fresh statement per (status, attempt) group, every
//! batch; on SQLite that was a tenth of the writer's time. Here the ids travel as one bound
//! value (a JSON array read by `json_each` on SQLite, an `int4[]` on PostgreSQL) and the
//! statement declares a static query id, which is what diesel's statement cache keys on.

use crate::rows::NewResult;
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, SmallInt, Text};
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

/// Rows per statement of [`insert_results`]: each size is one statement text, prepared once per
/// connection; a batch is cut into as many of the largest as fit, then the smaller. The largest
/// binds 15,360 values, under SQLite's limit of 32,766 (checked below, at compile time), and
/// keeps a bulk write (a creation's worth of completions) to a few statements.
const RESULT_CHUNKS: [usize; 4] = [1024, 64, 8, 1];
const _: () = assert!(
    RESULT_CHUNKS[0] * <NewResult<'static> as crate::rows::BatchRow>::COLUMNS
        <= crate::backend::SQLITE_MAX_BIND_PARAMS
);

/// `INSERT INTO results` of exactly `N` rows, with every column bound (NULLs included), so that
/// its text depends on `N` alone.
struct InsertResults<'a, const N: usize> {
    rows: &'a [NewResult<'a>],
}

impl<const N: usize> QueryId for InsertResults<'_, N> {
    type QueryId = InsertResults<'static, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const N: usize> QueryFragment<Sqlite> for InsertResults<'_, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        debug_assert_eq!(self.rows.len(), N);
        out.push_sql(
            "INSERT INTO results (workflow_id, job_id, run_id, attempt_id, runner, return_code, \
             status, start_time, end_time, exec_time_secs, peak_memory_bytes, avg_memory_bytes, \
             peak_cpu_percent, avg_cpu_percent, end_reason) VALUES ",
        );
        for (i, r) in self.rows.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(&r.workflow_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&r.job_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&r.run_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&r.attempt_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.runner)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&r.return_code)?;
            out.push_sql(", ");
            out.push_bind_param::<SmallInt, _>(&r.status)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&r.start_time)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&r.end_time)?;
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&r.exec_time_secs)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&r.peak_memory_bytes)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&r.avg_memory_bytes)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&r.peak_cpu_percent)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&r.avg_cpu_percent)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.end_reason)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<Conn, const N: usize> RunQueryDsl<Conn> for InsertResults<'_, N> {}

/// Inserts results on SQLite with statements of [`RESULT_CHUNKS`] rows only.
///
/// diesel prepares a multi-row insert afresh whenever it runs (its text grows with the row
/// count), and the group commit inserts a different number of results every time: on the
/// 3,001-job workload that preparation was a tenth of the writer thread.
pub(crate) fn insert_results(
    conn: &mut diesel::SqliteConnection,
    mut rows: &[NewResult<'_>],
) -> QueryResult<()> {
    for size in RESULT_CHUNKS {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            match size {
                1024 => InsertResults::<1024> { rows: chunk }.execute(conn)?,
                64 => InsertResults::<64> { rows: chunk }.execute(conn)?,
                8 => InsertResults::<8> { rows: chunk }.execute(conn)?,
                _ => InsertResults::<1> { rows: chunk }.execute(conn)?,
            };
            rows = rest;
        }
    }
    Ok(())
}
