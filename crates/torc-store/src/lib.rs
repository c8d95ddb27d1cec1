//! The storage adapter of torc: the durable record of every workflow, in SQLite (bundled, WAL)
//! or PostgreSQL, through diesel and an r2d2 pool.
//!
//! It stores a workflow's definition when it is created ([`Store::create_workflow`]), writes
//! what the scheduling core changed ([`Store::apply`]: many operations group-committed in one
//! transaction), and reads it all back, either to rebuild the core's live state
//! ([`Store::load_workflow`]) or to list jobs, results and events for people.
//!
//! The engine (crate `torc-engine`) is the only writer in a running system: it keeps every
//! active workflow's live state in memory and calls [`Store::apply`] once per group commit. This
//! crate has no thread, channel or async runtime of its own. The store also keeps the hashes of bearer tokens created
//! through the server's API ([`Store::insert_token`], [`Store::list_tokens`]); what a token may do
//! is decided in `torc-http`, never here.
//!
//! It must never make a scheduling decision: it persists exactly what the core decided, and a
//! workflow loaded back is exactly what was created plus the changes applied. Schema and queries
//! are written once in diesel's DSL; what differs between SQLite and PostgreSQL (URLs,
//! connection settings, migrations, transaction start, statement limits) lives in one module,
//! `backend`.

mod actions;
mod allocations;
mod backend;

mod error;
mod fixed;
mod idempotency;
mod lock;
mod purge;
mod read;
mod records;
mod rows;
mod samples;
mod schema;
mod store;
mod tokens;
mod transfer;

pub use backend::Durability;
pub use error::StoreError;
pub use idempotency::IdempotencyKey;
pub use lock::EngineLock;
pub use records::{
    EventRecord, JobRecord, LoadedWorkflow, ResultRecord, TokenRecord, TokenScope, WorkflowSummary,
};
pub use samples::{SampleFilter, SampleRecord};
pub use store::Store;
pub use transfer::{ExportedWorkflow, ImportError, WorkflowExport, EXPORT_FORMAT, EXPORT_VERSION};
