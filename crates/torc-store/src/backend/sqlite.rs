//! SQLite: how a database is named, opened and tuned, its migrations and statement limits.

use crate::error::StoreError;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The most bind parameters one statement may carry (`SQLITE_MAX_VARIABLE_NUMBER` of the bundled
/// SQLite).
pub(crate) const MAX_BIND_PARAMS: usize = 32_766;

/// Settings applied to every connection: wait for locks rather than fail at once, write-ahead
/// log so readers never block the writer, an fsync at every commit (nothing acknowledged is
/// lost), a page cache of up to 32 MiB (SQLite's default, 2 MiB, holds a small part of a big
/// workflow's jobs: claims on a workflow of a million jobs were 2.5 times slower than on one of a
/// thousand, reading pages back from the kernel; the cache grows only as pages are used), and
/// enforced foreign keys (deleting a workflow deletes its rows).
const CONNECTION_SETUP: &str = "PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA cache_size = -32768;
PRAGMA foreign_keys = ON;";

pub(super) fn setup(conn: &mut SqliteConnection, durability: super::Durability) -> QueryResult<()> {
    conn.batch_execute(CONNECTION_SETUP)?;
    if durability == super::Durability::Relaxed {
        conn.batch_execute("PRAGMA synchronous = NORMAL;")?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

/// Reads `sqlite://PATH`, `sqlite:PATH` or a plain path; refuses other schemes.
pub(super) fn parse_url(url: &str) -> Result<PathBuf, StoreError> {
    let unsupported = |reason| StoreError::UnsupportedUrl {
        url: url.to_string(),
        reason,
    };
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if has_scheme(url) {
        return Err(unsupported(
            "unknown scheme (expected sqlite://, postgres:// or a path)",
        ));
    } else {
        url
    };
    if path.is_empty() {
        return Err(unsupported("the database path is empty"));
    }
    Ok(PathBuf::from(path))
}

/// `scheme://...` with an RFC 3986 scheme.
fn has_scheme(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Opens (creating it if needed) the database file at `path`.
pub(super) fn establish(path: &Path) -> ConnectionResult<SqliteConnection> {
    let url = path.to_str().ok_or_else(|| {
        diesel::ConnectionError::InvalidConnectionUrl("the path is not valid UTF-8".into())
    })?;
    SqliteConnection::establish(url)
}

/// Checks that `path` can serve a pool, opens it (creating it if needed; the parent directory
/// must exist), checks its settings and brings its schema up to date.
pub(super) fn prepare(path: &Path, shown: &str) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        target: shown.to_string(),
        source,
    };
    if shown == ":memory:" || shown.starts_with("file::memory:") {
        // Every pooled connection would get a database of its own.
        return Err(StoreError::UnsupportedUrl {
            url: shown.to_string(),
            reason: "in-memory databases cannot be shared by a pool; use a file",
        });
    }
    let mut conn =
        establish(path).map_err(|e| open_error(diesel::r2d2::Error::ConnectionError(e)))?;
    setup(&mut conn, super::Durability::Full)
        .map_err(|e| open_error(diesel::r2d2::Error::QueryError(e)))?;
    let mode = diesel::sql_query("PRAGMA journal_mode")
        .get_result::<JournalMode>(&mut conn)
        .map_err(|e| open_error(diesel::r2d2::Error::QueryError(e)))?;
    if !mode.journal_mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %shown, mode = %mode.journal_mode, "database is not in WAL mode");
    }
    let applied =
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|source| StoreError::Migration {
                target: shown.to_string(),
                source,
            })?;
    for version in &applied {
        tracing::debug!(path = %shown, %version, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{AnyConnection, Target};
    use super::*;
    use diesel::sql_types::Integer;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Integer)]
        value: i32,
    }

    fn setting(conn: &mut SqliteConnection, pragma: &str, column: &str) -> i32 {
        diesel::sql_query(format!("SELECT {column} AS value FROM pragma_{pragma}"))
            .get_result::<Setting>(conn)
            .unwrap()
            .value
    }

    /// Every connection of the pool, not only the first, has the durable settings.
    #[test]
    fn pooled_connections_are_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Target::Sqlite(dir.path().join("t.db"))
            .open_pool(crate::Durability::Full)
            .unwrap();
        let mut conns: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
        for conn in &mut conns {
            let AnyConnection::Sqlite(conn) = &mut **conn else {
                panic!("not a SQLite connection");
            };
            let mode = diesel::sql_query("PRAGMA journal_mode")
                .get_result::<JournalMode>(conn)
                .unwrap();
            assert_eq!(mode.journal_mode, "wal");
            assert_eq!(setting(conn, "synchronous", "synchronous"), 2, "FULL");
            assert_eq!(setting(conn, "foreign_keys", "foreign_keys"), 1);
            assert_eq!(setting(conn, "busy_timeout", "timeout"), 10_000);
        }
    }

    /// Relaxed durability syncs at checkpoints only; everything else is as durable pools have it.
    #[test]
    fn relaxed_pools_sync_less() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.db"));
        let pool = target.open_pool(crate::Durability::Relaxed).unwrap();
        let mut conn = pool.get().unwrap();
        let AnyConnection::Sqlite(conn) = &mut *conn else {
            panic!("not a SQLite connection");
        };
        assert_eq!(setting(conn, "synchronous", "synchronous"), 1, "NORMAL");
        assert_eq!(setting(conn, "foreign_keys", "foreign_keys"), 1);
    }

    #[test]
    fn in_memory_databases_are_refused() {
        assert!(matches!(
            Target::Sqlite(PathBuf::from(":memory:")).open_pool(crate::Durability::Full),
            Err(StoreError::UnsupportedUrl { .. })
        ));
    }
}
