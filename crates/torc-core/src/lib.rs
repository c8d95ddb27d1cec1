//! The scheduling core of torc.
//!
//! This crate holds the workflow model ([`model`]), spec parsing, validation and expansion
//! ([`spec`]), the per-workflow scheduler ([`sched`]) with its dependency graph and bucketed ready
//! queue, and the boundary types a runner uses to talk to whoever coordinates it ([`api`]).
//!
//! It must never do I/O: no files, sockets, processes, threads, async runtime or database, and it
//! never reads the clock. Every operation is a synchronous method that takes `now` as an argument
//! and returns the [`changes::Changes`] it made, so that a store can persist exactly that.

pub mod alloc;
pub mod api;
pub mod changes;
pub mod ids;
pub mod model;
pub mod recover;
pub mod sched;
pub mod spec;
pub mod units;

pub use ids::{JobId, RunnerId, Timestamp, WorkflowId};
pub use model::{JobStatus, WorkflowDef};
