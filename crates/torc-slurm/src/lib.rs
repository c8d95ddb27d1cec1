//! The one crate of torc that knows Slurm.
//!
//! Slurm is the engine our users' work runs on, and its commands are the interface: this crate
//! renders batch scripts for allocations ([`script`]), runs `sbatch`, `squeue`, `sacct`,
//! `scancel` and `sinfo` and reads what they print ([`command`]; one module builds every
//! `Command` and a pure function parses each output), maps Slurm's job states to
//! [`AllocationState`] ([`state`]), builds the `srun` command line that runs one job as a step
//! of an allocation ([`srun`]), and reads the allocation a runner finds itself in
//! ([`alloc`]).
//!
//! It must never talk to Slurm's daemons (no `slurmrestd`, no libslurm, no sockets: only the
//! commands), never decide anything about workflows or jobs (when to allocate, what to run
//! where: the core and the runner do), and never depend on the store, the HTTP layer or the
//! runner. Bad input and odd Slurm output are typed errors, never panics.

pub mod alloc;
pub mod command;
mod quote;
pub mod script;
pub mod srun;
pub mod state;
pub mod time;

pub use alloc::{Allocation, AllocationError};
pub use command::{CommandError, JobStatus, Partition, Slurm, SlurmExit};
pub use quote::{sbatch_quote, shell_quote};
pub use script::{BatchScript, RunnerLaunch, SchedulerParams, ScriptError};
pub use srun::{srun_argv, SrunError, SrunStep};
pub use state::{AllocationState, EndReason, SlurmJobId};
pub use time::{parse_time_limit, TimeLimit};
