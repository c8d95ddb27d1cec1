//! Everything that differs between SQLite and PostgreSQL, in one place: how a database is named
//! and opened, the settings of each connection, migrations, how transactions begin, and how many
//! bind parameters one statement may carry. The rest of the crate writes each query once, in
//! diesel's DSL, against [`AnyConnection`].
//!
//! `AnyConnection` is diesel's `MultiConnection`: an enum over the two connection types whose
//! backend renders every query for the connection it runs on. Two things it cannot express:
//!
//! - Multi-row inserts: diesel renders `INSERT ... VALUES (...), (...)` only for a backend with
//!   one spelling of `DEFAULT` in a row, and the multi-backend is not one, so through it every
//!   batch would be refused (or, on SQLite, split into one statement per row).
//!   [`InsertAll::insert_all`] takes the insert, written once, and runs it on the inner
//!   connection, where each backend renders its own single statement.
//! - How a transaction begins (`BEGIN IMMEDIATE` on SQLite, a snapshot for readers on
//!   PostgreSQL): [`AnyConnection::write_transaction`] and [`AnyConnection::read_transaction`]
//!   begin it on the inner connection and hand the closure the `AnyConnection`, whose
//!   transaction manager then commits or rolls back that same transaction.

mod postgres;
mod sqlite;

pub(crate) use sqlite::MAX_BIND_PARAMS as SQLITE_MAX_BIND_PARAMS;

use crate::error::StoreError;
use crate::rows::BatchRow;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A connection to a database of either backend.
///
/// `pub` only because diesel's derive wants it so; the module is private to the crate.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Sqlite(diesel::SqliteConnection),
    Pg(diesel::PgConnection),
}

/// The store's connection pool.
pub(crate) type Pool = diesel::r2d2::Pool<Manager>;

/// A connection taken from the pool.
pub(crate) type PooledConn = diesel::r2d2::PooledConnection<Manager>;

/// Connections of the pool: one writer at a time plus concurrent readers.
const POOL_SIZE: u32 = 8;

/// How long a caller waits for a free connection before [`StoreError::Pool`].
const POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a database URL names.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as libpq reads it.
    Postgres(String),
}

impl fmt::Display for Target {
    /// The path, or the URL without its password: fit for logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sqlite(path) => write!(f, "{}", path.display()),
            Target::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sqlite(_) => write!(f, "Sqlite({self})"),
            Target::Postgres(_) => write!(f, "Postgres({self})"),
        }
    }
}

impl Target {
    /// Reads `postgres://...` or `postgresql://...` (PostgreSQL), `sqlite://PATH`, `sqlite:PATH`
    /// or a plain path (SQLite); refuses other schemes.
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        if postgres::is_url(url) {
            Ok(Target::Postgres(url.to_string()))
        } else {
            sqlite::parse_url(url).map(Target::Sqlite)
        }
    }

    /// Connects, sets the connection up, brings the schema up to date and builds the pool.
    pub(crate) fn open_pool(&self, durability: Durability) -> Result<Pool, StoreError> {
        let shown = self.to_string();
        // One connection first, so that a bad target fails at once with a clear error (the pool
        // would retry until its timeout) and so that migrations run once, before any reader.
        match self {
            Target::Sqlite(path) => sqlite::prepare(path, &shown)?,
            Target::Postgres(url) => postgres::prepare(url, &shown)?,
        }
        diesel::r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .connection_customizer(Box::new(Setup { durability }))
            .build(Manager {
                target: self.clone(),
            })
            .map_err(StoreError::Pool)
    }
}

/// Opens connections of the backend that the target names (diesel's own manager would try each
/// backend in turn with the same URL and lose the reason of the failure).
#[derive(Debug)]
pub(crate) struct Manager {
    target: Target,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let conn = match &self.target {
            Target::Sqlite(path) => sqlite::establish(path).map(AnyConnection::Sqlite),
            Target::Postgres(url) => diesel::PgConnection::establish(url).map(AnyConnection::Pg),
        };
        conn.map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Applies the per-connection settings of each backend to every connection of the pool.
#[derive(Debug, Clone, Copy)]
struct Setup {
    durability: Durability,
}

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once it is on disk: nothing acknowledged is lost, whatever fails (the default).
    #[default]
    Full,
    /// Once the database has it in memory or in its log, before the disk has it: SQLite's
    /// `synchronous = NORMAL` (a commit may be lost if the machine, not just the process, goes
    /// down), PostgreSQL's `synchronous_commit = off` (the last fraction of a second of commits
    /// may be lost if the database server crashes). The database is never corrupted, but a job
    /// reported done may run again, and one claimed may be handed out again.
    Relaxed,
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        match conn {
            AnyConnection::Sqlite(c) => sqlite::setup(c, self.durability),
            AnyConnection::Pg(c) => postgres::setup(c, self.durability),
        }
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl AnyConnection {
    /// The most bind parameters one statement may carry on this connection.
    pub(crate) fn max_bind_params(&self) -> usize {
        match self {
            AnyConnection::Sqlite(_) => sqlite::MAX_BIND_PARAMS,
            AnyConnection::Pg(_) => postgres::MAX_BIND_PARAMS,
        }
    }

    /// After a bulk creation: refreshes the planner's statistics where the database needs it.
    ///
    /// PostgreSQL plans `UPDATE jobs … WHERE workflow_id = $1 AND id = ANY($2)` from its
    /// statistics; until they know of a new workflow's rows it estimates one row per workflow,
    /// probes the primary key by `workflow_id` alone and filters `id` over every job of the
    /// workflow, so each group commit costs in proportion to the workflow's size. SQLite always
    /// probes the primary key with both columns.
    pub(crate) fn refresh_statistics(&mut self) -> Result<(), StoreError> {
        match self {
            AnyConnection::Sqlite(_) => Ok(()),
            AnyConnection::Pg(c) => postgres::analyze_after_bulk_insert(c),
        }
    }

    /// Runs `f` in a write transaction: committed if it returns `Ok`, rolled back otherwise.
    ///
    /// SQLite takes the write lock at `BEGIN IMMEDIATE`, so that a writer waits (up to the busy
    /// timeout) instead of failing when it first writes. PostgreSQL locks rows as they are
    /// written, so a plain `BEGIN` (read committed) serves.
    pub(crate) fn write_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let begin = match self {
            AnyConnection::Sqlite(_) => "BEGIN IMMEDIATE",
            AnyConnection::Pg(_) => "BEGIN",
        };
        self.transaction_from(begin, f)
    }

    /// Runs `f` in a read-only transaction whose queries all see the same snapshot.
    ///
    /// A SQLite read transaction is a snapshot already; PostgreSQL's default (read committed)
    /// gives each statement its own, so readers ask for repeatable read.
    pub(crate) fn read_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let begin = match self {
            AnyConnection::Sqlite(_) => "BEGIN DEFERRED",
            AnyConnection::Pg(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        };
        self.transaction_from(begin, f)
    }

    /// Begins a transaction with `begin` on the inner connection, then lets `f` run on `self`
    /// and commits or rolls back through `self`'s transaction manager, which keeps its state in
    /// the inner connection's (so it knows the transaction that was begun here).
    fn transaction_from<T>(
        &mut self,
        begin: &str,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, begin)?,
            AnyConnection::Pg(c) => AnsiTransactionManager::begin_transaction_sql(c, begin)?,
        }
        type Manager = <AnyConnection as Connection>::TransactionManager;
        match f(self) {
            Ok(value) => {
                Manager::commit_transaction(self)?;
                Ok(value)
            }
            Err(error) => match Manager::rollback_transaction(self) {
                // A broken transaction manager says less than the error that broke it.
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
                Err(rollback) => Err(rollback.into()),
            },
        }
    }
}

/// Rows inserted with multi-row `INSERT` statements into the table of their [`BatchRow`].
pub(crate) trait InsertAll {
    /// Inserts every row with as few statements as the connection's bind-parameter limit
    /// allows. Each statement is built once and run on the inner connection, where each backend
    /// renders its own multi-row form.
    fn insert_all(self, conn: &mut AnyConnection) -> QueryResult<()>;
}

// A method of the rows rather than of the connection: the row type is then known before the
// compiler looks at the bounds (with it unknown, their search overflows).
impl<'a, R> InsertAll for &'a [R]
where
    R: BatchRow,
    &'a [R]: Insertable<R::Table>,
    InsertStatement<R::Table, <&'a [R] as Insertable<R::Table>>::Values>:
        ExecuteDsl<diesel::SqliteConnection> + ExecuteDsl<diesel::PgConnection>,
{
    fn insert_all(self, conn: &mut AnyConnection) -> QueryResult<()> {
        for chunk in self.chunks(R::per_statement(conn.max_bind_params())) {
            let insert = diesel::insert_into(R::Table::default()).values(chunk);
            match conn {
                AnyConnection::Sqlite(c) => insert.execute(c)?,
                AnyConnection::Pg(c) => insert.execute(c)?,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let path = |p: &str| Target::Sqlite(PathBuf::from(p));
        assert_eq!(
            Target::parse("sqlite:///tmp/a.db").unwrap(),
            path("/tmp/a.db")
        );
        assert_eq!(Target::parse("sqlite://a.db").unwrap(), path("a.db"));
        assert_eq!(Target::parse("sqlite:a.db").unwrap(), path("a.db"));
        assert_eq!(Target::parse("/tmp/x/a.db").unwrap(), path("/tmp/x/a.db"));
        assert_eq!(Target::parse("rel/a.db").unwrap(), path("rel/a.db"));
        for pg in [
            "postgres://u@h/db",
            "postgresql://h:5433/db?sslmode=disable",
            "postgres://",
        ] {
            assert_eq!(Target::parse(pg).unwrap(), Target::Postgres(pg.into()));
        }
        for bad in ["mysql://h/db", "sqlite://", "sqlite:", ""] {
            assert!(
                matches!(Target::parse(bad), Err(StoreError::UnsupportedUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn targets_show_no_password() {
        let t = Target::parse("postgres://ana:s3cret@db.example:5432/torc").unwrap();
        assert_eq!(t.to_string(), "postgres://ana:***@db.example:5432/torc");
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = Target::parse("sqlite:///tmp/a.db").unwrap();
        assert_eq!(t.to_string(), "/tmp/a.db");
    }

    /// Both schemas have the same migrations and declare the same tables, columns and indexes;
    /// only the auto-assigned keys are spelled differently, and PostgreSQL may set storage
    /// parameters and change constraints.
    #[test]
    fn migrations_match() {
        fn statements(sql: &str) -> Vec<String> {
            // A statement after a comment that starts `-- PostgreSQL only` is that backend's.
            let mut own = false;
            sql.lines()
                .filter(|l| {
                    let l = l.trim();
                    if l.starts_with("-- PostgreSQL only") {
                        own = true;
                    } else if own && !l.starts_with("--") {
                        own = !l.ends_with(';');
                        return false;
                    }
                    !l.starts_with("--")
                })
                .collect::<Vec<_>>()
                .join("\n")
                .replace(
                    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                    "INTEGER PRIMARY KEY AUTOINCREMENT",
                )
                .split(';')
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|s| !s.is_empty())
                // Storage parameters (a table's fillfactor) are PostgreSQL's alone, and so are
                // changes to constraints: PostgreSQL checks a foreign key with a query per row,
                // SQLite with a lookup, and only the first is worth a migration.
                .filter(|s| {
                    !(s.starts_with("ALTER TABLE")
                        && (s.contains("(fillfactor") || s.contains(" CONSTRAINT ")))
                })
                .collect()
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let names = |backend: &str| {
            let mut names: Vec<String> = std::fs::read_dir(format!("{dir}/{backend}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let migrations = names("sqlite");
        assert!(migrations.len() >= 2, "{migrations:?}");
        assert_eq!(migrations, names("postgres"));
        for migration in &migrations {
            for file in ["up.sql", "down.sql"] {
                let read = |backend: &str| {
                    std::fs::read_to_string(format!("{dir}/{backend}/{migration}/{file}")).unwrap()
                };
                let (lite, pg) = (statements(&read("sqlite")), statements(&read("postgres")));
                // A migration only PostgreSQL acts on still has a statement there.
                let pg_only = read("postgres").lines().any(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with("--")
                });
                assert!(!lite.is_empty() || pg_only, "{migration}/{file} is empty");
                assert_eq!(lite, pg, "{migration}/{file}");
            }
        }
    }
}
