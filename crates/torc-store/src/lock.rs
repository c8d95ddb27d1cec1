//! One engine per database: [`Store::lock_engine`] takes an exclusive lock that lives as long as
//! the returned [`EngineLock`], and names the holder when it is taken already. Two engines on
//! one database would each trust their own memory and overwrite each other's jobs.
//!
//! SQLite: `flock` on a file beside the database (`PATH.lock`), which holds the holder's pid,
//! host and start time; the kernel drops the lock with the process, however it ends.
//! PostgreSQL: an advisory lock, keyed by database and schema, held on a connection of its own
//! whose `application_name` names the holder; the server drops it with the connection.

use crate::backend::Target;
use crate::error::StoreError;
use crate::store::Store;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The first key of the advisory lock (the second is the database's and schema's).
const PG_LOCK_CLASS: i32 = 0x746f_7263; // "torc"

/// Held while an engine runs over the database; dropping it lets another start.
pub struct EngineLock {
    held: Held,
}

/// What keeps the lock: the open lock file, or the connection that holds the advisory lock.
enum Held {
    File {
        _file: File,
    },
    Pg {
        conn: Box<diesel::PgConnection>,
        key: i32,
    },
}

impl Drop for EngineLock {
    /// Lets go of an advisory lock before its connection closes: the server would release it
    /// only once the backend has gone, after this returns, and a new engine could be refused.
    fn drop(&mut self) {
        if let Held::Pg { conn, key } = &mut self.held {
            let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1, $2) AS locked")
                .bind::<Integer, _>(PG_LOCK_CLASS)
                .bind::<Integer, _>(*key)
                .get_result::<Locked>(&mut **conn);
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "cannot release the engine lock (the connection will)");
            }
        }
    }
}

impl std::fmt::Debug for EngineLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineLock")
    }
}

/// `pid=… host=… started=…` of this process.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("pid={} host={host} started={started}", std::process::id())
}

fn lock_file(db: &std::path::Path) -> Result<EngineLock, StoreError> {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let io = |source| StoreError::LockFile {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io(e));
        }
        let mut held_by = String::new();
        let _ = file.read_to_string(&mut held_by);
        return Err(StoreError::Locked {
            target: db.display().to_string(),
            holder: format!("{} (lock file {})", held_by.trim(), path.display()),
        });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", holder()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(EngineLock {
        held: Held::File { _file: file },
    })
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Nullable<Text>)]
    application_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    client_addr: Option<String>,
}

/// FNV-1a of `s`, folded to the advisory lock's second key.
fn key_of(s: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

fn lock_pg(url: &str, shown: &str) -> Result<EngineLock, StoreError> {
    let open = |source| StoreError::Open {
        target: shown.to_string(),
        source,
    };
    let mut conn = diesel::PgConnection::establish(url)
        .map_err(|e| open(diesel::r2d2::Error::ConnectionError(e)))?;
    let me = holder().replace('\'', "");
    conn.batch_execute(&format!("SET application_name = 'torc-engine {me}'"))?;
    let place = diesel::sql_query("SELECT current_database() || '.' || current_schema() AS name")
        .get_result::<Named>(&mut conn)?
        .name;
    let key = key_of(&place);
    let got = diesel::sql_query("SELECT pg_try_advisory_lock($1, $2) AS locked")
        .bind::<Integer, _>(PG_LOCK_CLASS)
        .bind::<Integer, _>(key)
        .get_result::<Locked>(&mut conn)?
        .locked;
    if got {
        return Ok(EngineLock {
            held: Held::Pg {
                conn: Box::new(conn),
                key,
            },
        });
    }
    let unsigned = |k: i32| i64::from(u32::from_ne_bytes(k.to_ne_bytes()));
    let holders = diesel::sql_query(
        "SELECT a.pid, a.application_name, a.client_addr::text AS client_addr \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
         AND l.classid::bigint = $1 AND l.objid::bigint = $2",
    )
    .bind::<BigInt, _>(unsigned(PG_LOCK_CLASS))
    .bind::<BigInt, _>(unsigned(key))
    .load::<Holder>(&mut conn)?;
    let holder = match holders.first() {
        Some(h) => format!(
            "{} (PostgreSQL backend pid {}, client {})",
            h.application_name.as_deref().unwrap_or("?"),
            h.pid,
            h.client_addr.as_deref().unwrap_or("local socket")
        ),
        None => "another session (it let go just now: try again)".to_string(),
    };
    Err(StoreError::Locked {
        target: format!("{shown} (schema {place})"),
        holder,
    })
}

impl Store {
    /// Takes the database's engine lock, held until the result is dropped;
    /// [`StoreError::Locked`] naming the holder when another engine has it.
    pub fn lock_engine(&self) -> Result<EngineLock, StoreError> {
        match &*self.kind {
            Target::Sqlite(path) => lock_file(path),
            Target::Postgres(url) => lock_pg(url, self.target()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_stable() {
        assert_eq!(
            super::key_of(""),
            i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes())
        );
        assert_ne!(super::key_of("torc.public"), super::key_of("torc.other"));
    }
}
