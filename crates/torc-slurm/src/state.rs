//! Slurm job ids and job states, and what the states mean to torc.

use std::fmt;
use std::str::FromStr;

/// A Slurm job id (an allocation's, as `sbatch --parsable` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlurmJobId(pub u64);

impl fmt::Display for SlurmJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is not a plain Slurm job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Slurm job id `{0}`: expected a positive whole number")]
pub struct BadJobId(pub String);

impl FromStr for SlurmJobId {
    type Err = BadJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadJobId(s.to_string()));
        }
        match t.parse::<u64>() {
            Ok(n) if n > 0 => Ok(SlurmJobId(n)),
            _ => Err(BadJobId(s.to_string())),
        }
    }
}

/// Where an allocation is in its life, as far as torc cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllocationState {
    /// Waiting for resources, held, or requeued: no runner is there yet.
    Queued,
    /// Holding nodes: starting (`CONFIGURING`), running, suspended, or finishing
    /// (`COMPLETING`: the script has ended, processes are being cleaned up).
    Running,
    /// Gone from the nodes, for this reason.
    Ended(EndReason),
}

/// Why an allocation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The batch script exited 0.
    Completed,
    /// The batch script exited non-zero.
    Failed,
    /// Cancelled (`scancel`, or the administrator); `by` is the uid Slurm names, when it does
    /// (`CANCELLED by 0`).
    Cancelled { by: Option<u32> },
    /// Reached its time limit.
    Timeout,
    /// A node it ran on failed.
    NodeFail,
    /// Its nodes did not boot.
    BootFail,
    /// Preempted by a job of higher priority.
    Preempted,
    /// Killed for exceeding its memory.
    OutOfMemory,
    /// Reached its `--deadline`.
    Deadline,
    /// Revoked (a federated sibling ran it).
    Revoked,
    /// Slurm no longer knows the job: it has left `squeue` and no accounting (`sacct`) remembers
    /// it. Nothing runs there any more.
    Forgotten,
}

/// A state word that is not one of Slurm's job states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Slurm job state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for AllocationState {
    type Err = UnknownState;

    /// Reads a state as `squeue %T` or `sacct State` print it: `RUNNING`, `CANCELLED by 1000`,
    /// `CANCELLED+` (sacct's mark for a truncated field), any case.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let (word, by) = match s.split_once(" by ") {
            Some((w, uid)) => (w.trim(), Some(uid.trim())),
            None => (s, None),
        };
        let word = word.trim_end_matches('+').to_ascii_uppercase();
        let unknown = || UnknownState(input.to_string());
        use AllocationState::*;
        use EndReason::*;
        let state = match word.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "SPECIAL_EXIT" => Queued,
            "CONFIGURING" | "RUNNING" | "COMPLETING" | "RESIZING" | "SIGNALING" | "STAGE_OUT"
            | "SUSPENDED" | "STOPPED" => Running,
            "COMPLETED" => Ended(Completed),
            "FAILED" => Ended(Failed),
            "CANCELLED" => Ended(Cancelled {
                by: match by {
                    Some(uid) => Some(uid.parse().map_err(|_| unknown())?),
                    None => None,
                },
            }),
            "TIMEOUT" => Ended(Timeout),
            "NODE_FAIL" => Ended(NodeFail),
            "BOOT_FAIL" => Ended(BootFail),
            "PREEMPTED" => Ended(Preempted),
            "OUT_OF_MEMORY" => Ended(OutOfMemory),
            "DEADLINE" => Ended(Deadline),
            "REVOKED" => Ended(Revoked),
            _ => return Err(unknown()),
        };
        if by.is_some() && !matches!(state, Ended(Cancelled { .. })) {
            return Err(unknown());
        }
        Ok(state)
    }
}

impl AllocationState {
    pub fn is_ended(&self) -> bool {
        matches!(self, AllocationState::Ended(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AllocationState::*;
    use EndReason::*;

    fn state(s: &str) -> AllocationState {
        s.parse().unwrap()
    }

    #[test]
    fn job_ids() {
        assert_eq!("42".parse(), Ok(SlurmJobId(42)));
        assert_eq!(" 7\n".parse(), Ok(SlurmJobId(7)));
        for bad in ["", "0", "-1", "1_2", "12+0", "x", "99999999999999999999999"] {
            assert!(bad.parse::<SlurmJobId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_state() {
        for s in [
            "PENDING",
            "REQUEUED",
            "REQUEUE_HOLD",
            "SPECIAL_EXIT",
            "pending",
        ] {
            assert_eq!(state(s), Queued, "{s}");
        }
        for s in [
            "CONFIGURING",
            "RUNNING",
            "COMPLETING",
            "SUSPENDED",
            "SIGNALING",
            "STAGE_OUT",
        ] {
            assert_eq!(state(s), Running, "{s}");
        }
        assert_eq!(state("COMPLETED"), Ended(Completed));
        assert_eq!(state("FAILED"), Ended(Failed));
        assert_eq!(state("CANCELLED"), Ended(Cancelled { by: None }));
        assert_eq!(state("CANCELLED by 0"), Ended(Cancelled { by: Some(0) }));
        assert_eq!(
            state("CANCELLED by 1000"),
            Ended(Cancelled { by: Some(1000) })
        );
        assert_eq!(state("CANCELLED+"), Ended(Cancelled { by: None }));
        assert_eq!(state("TIMEOUT"), Ended(Timeout));
        assert_eq!(state("NODE_FAIL"), Ended(NodeFail));
        assert_eq!(state("BOOT_FAIL"), Ended(BootFail));
        assert_eq!(state("PREEMPTED"), Ended(Preempted));
        assert_eq!(state("OUT_OF_MEMORY"), Ended(OutOfMemory));
        assert_eq!(state("DEADLINE"), Ended(Deadline));
        assert_eq!(state("REVOKED"), Ended(Revoked));
        assert!(state("TIMEOUT").is_ended());
        assert!(!state("RUNNING").is_ended());
    }

    #[test]
    fn unknown_states_are_errors() {
        for s in [
            "",
            "DONE",
            "CANCELLED by",
            "CANCELLED by root",
            "RUNNING by 0",
            "R",
        ] {
            assert_eq!(
                s.parse::<AllocationState>(),
                Err(UnknownState(s.to_string())),
                "{s:?}"
            );
        }
    }
}
