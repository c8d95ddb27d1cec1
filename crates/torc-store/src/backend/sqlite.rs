//! Everything that is specific to SQLite: how a database is named, opened and tuned, how a write
//! transaction starts, and the limits of its statements. The rest of the crate speaks diesel's
//! DSL only, so that a PostgreSQL backend can slot in beside this module.

use crate::error::StoreError;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection};
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The connection type behind the store's pool.
pub(crate) type Conn = SqliteConnection;

/// The store's connection pool.
pub(crate) type Pool = diesel::r2d2::Pool<ConnectionManager<Conn>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The most bind parameters one statement may carry (`SQLITE_MAX_VARIABLE_NUMBER` of the bundled
/// SQLite; PostgreSQL allows more, so statements sized for this fit there as well).
pub(crate) const MAX_BIND_PARAMS: usize = 32_766;

/// Settings applied to every connection: wait for locks rather than fail at once, write-ahead
/// log so readers never block the writer, an fsync at every commit (nothing acknowledged is
/// lost), and enforced foreign keys (deleting a workflow deletes its rows).
const CONNECTION_SETUP: &str = "PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;";

/// Connections of the pool: one writer at a time plus concurrent readers.
const POOL_SIZE: u32 = 8;

/// How long a caller waits for a free connection before [`StoreError::Pool`].
const POOL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Setup;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(CONNECTION_SETUP)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

/// What a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Sqlite(PathBuf),
}

/// Reads `sqlite://PATH`, `sqlite:PATH` or a plain path; refuses other schemes.
pub(crate) fn parse_url(url: &str) -> Result<Target, StoreError> {
    let unsupported = |reason| StoreError::UnsupportedUrl {
        url: url.to_string(),
        reason,
    };
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(unsupported("PostgreSQL is not supported yet"));
    } else if has_scheme(url) {
        return Err(unsupported("unknown scheme (expected sqlite:// or a path)"));
    } else {
        url
    };
    if path.is_empty() {
        return Err(unsupported("the database path is empty"));
    }
    Ok(Target::Sqlite(PathBuf::from(path)))
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

/// Opens (creating if needed) the database file at `path`, brings its schema up to date and
/// builds the pool. The parent directory must exist.
pub(crate) fn open_pool(path: &Path) -> Result<Pool, StoreError> {
    let target = path.display().to_string();
    let open_error = |source| StoreError::Open {
        target: target.clone(),
        source,
    };
    if target == ":memory:" || target.starts_with("file::memory:") {
        // Every pooled connection would get a database of its own.
        return Err(StoreError::UnsupportedUrl {
            url: target,
            reason: "in-memory databases cannot be shared by a pool; use a file",
        });
    }
    let url = path.to_str().ok_or_else(|| {
        open_error(diesel::r2d2::Error::ConnectionError(
            diesel::ConnectionError::InvalidConnectionUrl("the path is not valid UTF-8".into()),
        ))
    })?;
    // One connection first, so that a bad path fails at once with a clear error (the pool would
    // retry until its timeout) and so that migrations run once, before any reader.
    let mut conn =
        Conn::establish(url).map_err(|e| open_error(diesel::r2d2::Error::ConnectionError(e)))?;
    Setup.on_acquire(&mut conn).map_err(open_error)?;
    let mode = diesel::sql_query("PRAGMA journal_mode")
        .get_result::<JournalMode>(&mut conn)
        .map_err(|e| open_error(diesel::r2d2::Error::QueryError(e)))?;
    if !mode.journal_mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %target, mode = %mode.journal_mode, "database is not in WAL mode");
    }
    let applied =
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|source| StoreError::Migration {
                target: target.clone(),
                source,
            })?;
    for version in &applied {
        tracing::debug!(path = %target, %version, "applied migration");
    }
    drop(conn);

    diesel::r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(1))
        .connection_timeout(POOL_TIMEOUT)
        .connection_customizer(Box::new(Setup))
        .build(ConnectionManager::new(url))
        .map_err(StoreError::Pool)
}

/// Runs `f` in a write transaction. SQLite takes the write lock at `BEGIN IMMEDIATE`, so that a
/// writer waits (up to the busy timeout) instead of failing when it first writes.
pub(crate) fn write_transaction<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.immediate_transaction(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::Integer;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Integer)]
        value: i32,
    }

    fn setting(conn: &mut Conn, pragma: &str, column: &str) -> i32 {
        diesel::sql_query(format!("SELECT {column} AS value FROM pragma_{pragma}"))
            .get_result::<Setting>(conn)
            .unwrap()
            .value
    }

    /// Every connection of the pool, not only the first, has the durable settings.
    #[test]
    fn pooled_connections_are_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open_pool(&dir.path().join("t.db")).unwrap();
        let mut conns: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
        for conn in &mut conns {
            let mode = diesel::sql_query("PRAGMA journal_mode")
                .get_result::<JournalMode>(&mut **conn)
                .unwrap();
            assert_eq!(mode.journal_mode, "wal");
            assert_eq!(setting(conn, "synchronous", "synchronous"), 2, "FULL");
            assert_eq!(setting(conn, "foreign_keys", "foreign_keys"), 1);
            assert_eq!(setting(conn, "busy_timeout", "timeout"), 10_000);
        }
    }

    #[test]
    fn in_memory_databases_are_refused() {
        assert!(matches!(
            open_pool(Path::new(":memory:")),
            Err(StoreError::UnsupportedUrl { .. })
        ));
    }

    #[test]
    fn urls() {
        let path = |p: &str| Target::Sqlite(PathBuf::from(p));
        assert_eq!(parse_url("sqlite:///tmp/a.db").unwrap(), path("/tmp/a.db"));
        assert_eq!(parse_url("sqlite://a.db").unwrap(), path("a.db"));
        assert_eq!(parse_url("sqlite:a.db").unwrap(), path("a.db"));
        assert_eq!(parse_url("/tmp/x/a.db").unwrap(), path("/tmp/x/a.db"));
        assert_eq!(parse_url("rel/a.db").unwrap(), path("rel/a.db"));
        for bad in [
            "postgres://u@h/db",
            "postgresql://h/db",
            "mysql://h/db",
            "sqlite://",
            "",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::UnsupportedUrl { .. })),
                "{bad}"
            );
        }
    }
}
