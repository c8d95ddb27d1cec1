//! Statements of the group commit with one shape whatever the batch, so that each connection
//! prepares them once: the job state updates, and (on SQLite) the inserts of results and of
//! a creation's jobs.
//!
//! diesel never caches an `UPDATE` (nor an `IN (...)` list, whose text grows with the list), so
//! a commit used to parse and plan one fresh statement per (status, attempt) group, every
//! batch; on SQLite that was a tenth of the writer's time. Here the ids travel as one bound
//! value (a JSON array read by `json_each` on SQLite; on PostgreSQL two `int4[]` of the first
//! and last ids of each run of consecutive ids, joined by `unnest`) and the
//! statement declares a static query id, which is what diesel's statement cache keys on.

use crate::rows::{NewJob, NewResult};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable, SmallInt, Text};
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
    /// `ids` as runs of consecutive ids, first and last of each (PostgreSQL's form), filled in
    /// by [`SetJobStates::for_postgres`].
    firsts: Vec<i32>,
    lasts: Vec<i32>,
}

impl<'a> SetJobStates<'a> {
    pub(crate) fn new(status: i16, attempt: i32, workflow: i64, ids: &'a [i32]) -> Self {
        SetJobStates {
            status,
            attempt,
            workflow,
            ids,
            json: String::new(),
            firsts: Vec::new(),
            lasts: Vec::new(),
        }
    }

    /// PostgreSQL walks its primary key once per value of an `id = ANY(array)` (a fifth of its
    /// time in `hotpath claims`); claims and completions come in runs of consecutive ids, and a
    /// range of the key is walked once per run.
    fn for_postgres(mut self) -> Self {
        let mut ids = self.ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            match self.lasts.last_mut() {
                Some(last) if last.checked_add(1) == Some(id) => *last = id,
                _ => {
                    self.firsts.push(id);
                    self.lasts.push(id);
                }
            }
        }
        self
    }

    fn for_sqlite(mut self) -> Self {
        // Integers always serialize.
        self.json = serde_json::to_string(self.ids).unwrap_or_default();
        self
    }

    /// Runs the update; returns how many rows it changed.
    pub(crate) fn run(self, conn: &mut crate::backend::AnyConnection) -> QueryResult<usize> {
        use crate::backend::AnyConnection;
        match conn {
            AnyConnection::Sqlite(c) => self.for_sqlite().execute(c),
            AnyConnection::Pg(c) => self.for_postgres().execute(c),
        }
    }
}

impl QueryId for SetJobStates<'_> {
    type QueryId = SetJobStates<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Sqlite> for SetJobStates<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("UPDATE jobs SET status = ");
        out.push_bind_param::<SmallInt, _>(&self.status)?;
        out.push_sql(", attempt_id = ");
        out.push_bind_param::<Integer, _>(&self.attempt)?;
        out.push_sql(" WHERE workflow_id = ");
        out.push_bind_param::<BigInt, _>(&self.workflow)?;
        out.push_sql(" AND id IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, _>(&self.json)?;
        out.push_sql("))");
        Ok(())
    }
}

impl QueryFragment<Pg> for SetJobStates<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE jobs SET status = ");
        out.push_bind_param::<SmallInt, _>(&self.status)?;
        out.push_sql(", attempt_id = ");
        out.push_bind_param::<Integer, _>(&self.attempt)?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<Integer>, _>(&self.firsts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.lasts)?;
        out.push_sql(") AS run (first, last) WHERE jobs.workflow_id = ");
        out.push_bind_param::<BigInt, _>(&self.workflow)?;
        out.push_sql(" AND jobs.id BETWEEN run.first AND run.last");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for SetJobStates<'_> {}

/// Rows per statement of [`insert_fixed`]: each size is one statement text, prepared once per
/// connection; a batch is cut into as many of the largest as fit, then the smaller. The largest
/// keeps a bulk write (a creation, a creation's worth of completions) to few statements, and
/// binds at most 16,384 values (16 columns), under SQLite's limit of 32,766 (checked below, at
/// compile time, for each kind of row).
const CHUNKS: [usize; 4] = [1024, 64, 8, 1];

/// A row that [`insert_fixed`] writes: its columns, and how each is bound.
pub(crate) trait FixedRow {
    /// `INSERT INTO table (columns) VALUES `.
    const HEAD: &'static str;
    /// A `'static` type naming the row kind, for diesel's statement cache.
    type Kind: 'static;
    /// Pushes the row's values, bound, separated by `, ` (the parentheses are pushed around).
    fn walk_row<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()>;
}

/// The columns of `R` fit SQLite's bind limit in the largest chunk.
const fn fits<R: crate::rows::BatchRow>() -> bool {
    CHUNKS[0] * R::COLUMNS <= crate::backend::SQLITE_MAX_BIND_PARAMS
}
const _: () = assert!(fits::<NewResult<'static>>());
const _: () = assert!(fits::<NewJob<'static>>());

/// A multi-row `INSERT` of exactly `N` rows, with every column bound (NULLs included), so that
/// its text depends on the row kind and `N` alone.
struct FixedInsert<'a, R, const N: usize> {
    rows: &'a [R],
}

/// The statement cache's key of a [`FixedInsert`].
struct FixedInsertId<K, const N: usize>(std::marker::PhantomData<K>);

impl<R: FixedRow, const N: usize> QueryId for FixedInsert<'_, R, N> {
    type QueryId = FixedInsertId<R::Kind, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<R: FixedRow, const N: usize> QueryFragment<Sqlite> for FixedInsert<'_, R, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        debug_assert_eq!(self.rows.len(), N);
        out.push_sql(R::HEAD);
        for (i, r) in self.rows.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            r.walk_row(&mut out)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<Conn, R, const N: usize> RunQueryDsl<Conn> for FixedInsert<'_, R, N> {}

/// Inserts rows on SQLite with statements of [`CHUNKS`] rows only.
///
/// diesel prepares a multi-row insert afresh whenever it runs (its text grows with the row
/// count): the group commit inserts a different number of results every time (on the 3,001-job
/// workload that preparation was a tenth of the writer thread), and a creation of millions of
/// jobs parsed and planned one statement of 2,047 rows for every 2,047 jobs (more than a
/// quarter of the rows' insertion).
pub(crate) fn insert_fixed<R: FixedRow>(
    conn: &mut diesel::SqliteConnection,
    mut rows: &[R],
) -> QueryResult<()> {
    for size in CHUNKS {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            match size {
                1024 => FixedInsert::<R, 1024> { rows: chunk }.execute(conn)?,
                64 => FixedInsert::<R, 64> { rows: chunk }.execute(conn)?,
                8 => FixedInsert::<R, 8> { rows: chunk }.execute(conn)?,
                _ => FixedInsert::<R, 1> { rows: chunk }.execute(conn)?,
            };
            rows = rest;
        }
    }
    Ok(())
}

/// Pushes `value` bound as `T`, then `, ` unless it is the row's last.
macro_rules! bind {
    ($out:ident; $($t:ty => $v:expr),+ $(,)?) => {{
        let mut first = true;
        $(
            if !std::mem::take(&mut first) {
                $out.push_sql(", ");
            }
            $out.push_bind_param::<$t, _>($v)?;
        )+
    }};
}

impl FixedRow for NewResult<'_> {
    const HEAD: &'static str = "INSERT INTO results (workflow_id, job_id, run_id, attempt_id, \
        runner, return_code, status, start_time, end_time, exec_time_secs, peak_memory_bytes, \
        avg_memory_bytes, peak_cpu_percent, avg_cpu_percent, end_reason) VALUES ";
    type Kind = NewResult<'static>;

    fn walk_row<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        bind!(out;
            BigInt => &self.workflow_id,
            Integer => &self.job_id,
            Integer => &self.run_id,
            Integer => &self.attempt_id,
            Nullable<Text> => &self.runner,
            Integer => &self.return_code,
            SmallInt => &self.status,
            BigInt => &self.start_time,
            BigInt => &self.end_time,
            Double => &self.exec_time_secs,
            Nullable<BigInt> => &self.peak_memory_bytes,
            Nullable<BigInt> => &self.avg_memory_bytes,
            Nullable<Double> => &self.peak_cpu_percent,
            Nullable<Double> => &self.avg_cpu_percent,
            Nullable<Text> => &self.end_reason,
        );
        Ok(())
    }
}

impl FixedRow for NewJob<'_> {
    const HEAD: &'static str = "INSERT INTO jobs (workflow_id, id, name, command, \
        invocation_script, status, attempt_id, resource_requirement_id, \
        cancel_on_blocking_job_failure, supports_termination, failure_handler_id, priority, \
        tags, env, timeout_secs, scheduler) VALUES ";
    type Kind = NewJob<'static>;

    fn walk_row<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        bind!(out;
            BigInt => &self.workflow_id,
            Integer => &self.id,
            Text => self.name,
            Text => self.command,
            Nullable<Text> => &self.invocation_script,
            SmallInt => &self.status,
            Integer => &self.attempt_id,
            Nullable<Integer> => &self.resource_requirement_id,
            Bool => &self.cancel_on_blocking_job_failure,
            Bool => &self.supports_termination,
            Nullable<Integer> => &self.failure_handler_id,
            BigInt => &self.priority,
            Text => &*self.tags,
            Text => &*self.env,
            Nullable<Double> => &self.timeout_secs,
            Nullable<Text> => &self.scheduler,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_runs_of_consecutive_ids() {
        let ids = [9, 3, 5, 4, 1, 10, 12, 4];
        let s = SetJobStates::new(2, 1, 7, &ids).for_postgres();
        assert_eq!(s.firsts, [1, 3, 9, 12]);
        assert_eq!(s.lasts, [1, 5, 10, 12]);
        let edge = SetJobStates::new(2, 1, 7, &[i32::MAX, i32::MIN]).for_postgres();
        assert_eq!(edge.firsts, [i32::MIN, i32::MAX]);
        let none = SetJobStates::new(2, 1, 7, &[]).for_postgres();
        assert!(none.firsts.is_empty() && none.lasts.is_empty());
    }
}
