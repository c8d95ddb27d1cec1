//! The one error type of the store.

use torc_core::WorkflowId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up (bad path, missing directory, no permission,
    /// or a connection setting that the database refused).
    #[error("cannot open database {target}: {source}")]
    Open {
        /// The path or URL that was given.
        target: String,
        #[source]
        source: diesel::r2d2::Error,
    },

    /// The database URL names a backend or form that this store does not handle.
    #[error("unsupported database URL {url:?}: {reason}")]
    UnsupportedUrl { url: String, reason: &'static str },

    /// The embedded migrations could not be applied.
    #[error("cannot migrate database {target}: {source}")]
    Migration {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// No connection could be taken from the pool in time.
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),

    /// A query failed (the transaction it was part of was rolled back).
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),

    /// The thing asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },

    /// A batch named jobs that the workflow does not have; nothing of the batch was written.
    #[error("workflow {workflow_id}: {expected} job rows to update, {found} exist")]
    UnknownJobs {
        workflow_id: WorkflowId,
        expected: usize,
        found: usize,
    },

    /// A value does not fit in its column (a count of bytes above `i64::MAX`, say).
    #[error("{what} = {value} does not fit in the database")]
    OutOfRange { what: &'static str, value: u64 },

    /// A value could not be encoded as JSON for its column.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A row with this unique name already exists.
    #[error("{what} {name:?} already exists")]
    Duplicate { what: &'static str, name: String },

    /// Another engine runs over this database (its lock is held).
    #[error("another engine runs over {target}: held by {holder}; stop it first (two engines on one database would overwrite each other's work)")]
    Locked { target: String, holder: String },

    /// The lock file beside a SQLite database cannot be opened or written.
    #[error("cannot use the lock file {path}: {source}")]
    LockFile {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A row does not map back to the model (unknown status code, malformed JSON, a reference
    /// to a row that does not exist...).
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn workflow_not_found(id: WorkflowId) -> StoreError {
        StoreError::NotFound {
            what: "workflow",
            id: id.0,
        }
    }

    /// The thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
