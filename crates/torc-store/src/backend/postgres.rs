//! PostgreSQL: URLs, connection settings, migrations (serialized between servers that start at
//! the same time) and statement limits.

use crate::error::StoreError;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The most bind parameters one statement may carry: the protocol counts them in 16 bits.
pub(super) const MAX_BIND_PARAMS: usize = 65_535;

/// Key of the advisory lock held while migrating, so that two servers starting on one database
/// do not both try to create the schema.
const MIGRATION_LOCK: i64 = 0x746f_7263_6d69_6772; // "torcmigr"

/// Settings applied to every connection: a commit returns only once it is flushed to disk, even
/// if the server's default says otherwise (nothing acknowledged is lost), and notices stay in
/// the server log.
const CONNECTION_SETUP: &str = "SET synchronous_commit = on;
SET client_min_messages = warning;";

pub(super) fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub(super) fn setup(conn: &mut PgConnection, durability: super::Durability) -> QueryResult<()> {
    conn.batch_execute(CONNECTION_SETUP)?;
    if durability == super::Durability::Relaxed {
        conn.batch_execute("SET synchronous_commit = off;")?;
    }
    Ok(())
}

/// `url` with the password (of the user part, or a `password=` parameter) replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((key, _)) if key == "password" => format!("{key}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Connects to `url`, checks the connection settings and brings the schema up to date.
pub(super) fn prepare(url: &str, shown: &str) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        target: shown.to_string(),
        source,
    };
    let mut conn = PgConnection::establish(url)
        .map_err(|e| open_error(diesel::r2d2::Error::ConnectionError(e)))?;
    setup(&mut conn, super::Durability::Full)
        .map_err(|e| open_error(diesel::r2d2::Error::QueryError(e)))?;
    let migration_error = |source| StoreError::Migration {
        target: shown.to_string(),
        source,
    };
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(|e| migration_error(Box::new(e)))?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    // Closing the connection would release the lock too; this only releases it sooner.
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    for version in &applied.map_err(migration_error)? {
        tracing::debug!(url = %shown, %version, "applied migration");
    }
    Ok(())
}

/// Tables whose planner statistics a bulk creation makes stale.
const BULK_TABLES: &str = "jobs, job_dependencies, job_files, job_user_data";

/// Refreshes the statistics of the tables a workflow's creation filled.
pub(super) fn analyze_after_bulk_insert(conn: &mut PgConnection) -> Result<(), StoreError> {
    diesel::sql_query(format!("ANALYZE {BULK_TABLES}")).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgresql://u:p@w@h", "postgresql://u:***@h"),
            (
                "postgres://h/db?user=u&password=pw&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgres://", "postgres://"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
