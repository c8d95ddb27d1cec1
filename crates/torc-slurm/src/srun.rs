//! The command line that runs one job as a Slurm step (`execution_config.mode: slurm`): Slurm
//! places the step on the allocation's CPUs, memory and GPUs and enforces its limits.
//!
//! `srun --exact --ntasks=1 --cpus-per-task=C --mem=MB [--gpus=G] [--nodes=N] [--time=MIN]
//! [--signal=SIG] [--cpu-bind=none] [--mpi=TYPE] [--job-name=NAME] bash -c COMMAND`
//!
//! `--exact` (Slurm 21.08 and later) gives the step only what it asks for, so that steps run
//! side by side in one allocation. Two Slurm spellings are traps avoided here: `--mem=0` and
//! `--time=0` both mean "no limit", so memory is rounded up to at least 1 MB and a time left
//! under a minute is an error rather than `0`.

use std::time::Duration;

/// What one job's step asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrunStep {
    pub cpus: u32,
    /// Bytes; given to srun in MB, rounded up.
    pub memory_bytes: u64,
    /// GPUs; `0` asks for none.
    pub gpus: u32,
    /// Nodes (for a job that spans several); `None` lets Slurm pick one.
    pub nodes: Option<u32>,
    /// The step's time limit; given to srun in whole minutes, rounded down (Slurm's limits
    /// have minutes as their unit, and rounding up could outlive the allocation's headroom).
    pub time_limit: Option<Duration>,
    /// `srun_termination_signal`: `--signal=[R:]SIG[@SECONDS]`, e.g. `TERM@120`.
    pub signal: Option<String>,
    /// `enable_cpu_bind`: `false` passes `--cpu-bind=none`.
    pub cpu_bind: bool,
    /// `srun_mpi`: `--mpi=TYPE`.
    pub mpi: Option<String>,
    /// `--job-name` for the step (shows in `squeue -s`, `sacct`).
    pub job_name: Option<String>,
}

impl SrunStep {
    /// A step of `cpus` CPUs and `memory_bytes` of memory, nothing else.
    pub fn new(cpus: u32, memory_bytes: u64) -> SrunStep {
        SrunStep {
            cpus,
            memory_bytes,
            gpus: 0,
            nodes: None,
            time_limit: None,
            signal: None,
            cpu_bind: true,
            mpi: None,
            job_name: None,
        }
    }
}

/// Why a step's command line could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrunError {
    #[error("a Slurm step needs at least 1 CPU")]
    ZeroCpus,
    #[error("a Slurm step needs at least 1 node")]
    ZeroNodes,
    #[error(
        "a Slurm step's time limit must be at least a minute (`--time=0` would mean none), \
         not {secs} s"
    )]
    TimeTooShort { secs: u64 },
    #[error("srun {option} `{value}` is not valid: {expected}")]
    BadOption {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the job command holds a NUL byte, which no command line can carry")]
    NulInCommand,
}

const MB: u64 = 1024 * 1024;

/// The argv (`srun` first) that runs `command` under bash as one step of the current allocation.
pub fn srun_argv(step: &SrunStep, command: &str) -> Result<Vec<String>, SrunError> {
    if step.cpus == 0 {
        return Err(SrunError::ZeroCpus);
    }
    if command.contains('\0') {
        return Err(SrunError::NulInCommand);
    }
    let mem_mb = step.memory_bytes.div_ceil(MB).max(1);
    let mut argv: Vec<String> = vec![
        "srun".into(),
        "--exact".into(),
        "--ntasks=1".into(),
        format!("--cpus-per-task={}", step.cpus),
        format!("--mem={mem_mb}"),
    ];
    if step.gpus > 0 {
        argv.push(format!("--gpus={}", step.gpus));
    }
    match step.nodes {
        Some(0) => return Err(SrunError::ZeroNodes),
        Some(n) => argv.push(format!("--nodes={n}")),
        None => {}
    }
    if let Some(limit) = step.time_limit {
        let minutes = limit.as_secs() / 60;
        if minutes == 0 {
            return Err(SrunError::TimeTooShort {
                secs: limit.as_secs(),
            });
        }
        argv.push(format!("--time={minutes}"));
    }
    if let Some(signal) = &step.signal {
        check_signal(signal)?;
        argv.push(format!("--signal={signal}"));
    }
    if !step.cpu_bind {
        argv.push("--cpu-bind=none".into());
    }
    if let Some(mpi) = &step.mpi {
        let ok = !mpi.is_empty()
            && mpi
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(SrunError::BadOption {
                option: "--mpi",
                value: mpi.clone(),
                expected: "an MPI plugin name such as pmix or pmi2",
            });
        }
        argv.push(format!("--mpi={mpi}"));
    }
    if let Some(name) = &step.job_name {
        if name.contains(['\0', '\n', '\r']) {
            return Err(SrunError::BadOption {
                option: "--job-name",
                value: name.clone(),
                expected: "a name without line breaks",
            });
        }
        argv.push(format!("--job-name={name}"));
    }
    argv.extend(["bash".into(), "-c".into(), command.into()]);
    Ok(argv)
}

/// `[R:|B:|RB:]SIG[@SECONDS]`, SIG a name (`TERM`, `SIGUSR1`, any case) or a number.
fn check_signal(s: &str) -> Result<(), SrunError> {
    let bad = || SrunError::BadOption {
        option: "--signal",
        value: s.to_string(),
        expected: "[R:|B:|RB:]SIGNAL[@SECONDS], e.g. TERM@120",
    };
    let rest = ["RB:", "BR:", "R:", "B:"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    let (sig, secs) = match rest.split_once('@') {
        Some((sig, secs)) => (sig, Some(secs)),
        None => (rest, None),
    };
    let sig_ok = !sig.is_empty() && sig.bytes().all(|b| b.is_ascii_alphanumeric());
    let secs_ok = secs.is_none_or(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    if sig_ok && secs_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_step() {
        assert_eq!(
            srun_argv(&SrunStep::new(1, 512 * MB), "echo hi").unwrap(),
            [
                "srun",
                "--exact",
                "--ntasks=1",
                "--cpus-per-task=1",
                "--mem=512",
                "bash",
                "-c",
                "echo hi"
            ]
        );
    }

    #[test]
    fn every_option() {
        let step = SrunStep {
            cpus: 8,
            memory_bytes: 16 * 1024 * MB,
            gpus: 2,
            nodes: Some(2),
            time_limit: Some(Duration::from_secs(90 * 60 + 59)),
            signal: Some("B:USR1@120".into()),
            cpu_bind: false,
            mpi: Some("pmix".into()),
            job_name: Some("wf1_j42 preprocess".into()),
        };
        let cmd = "python run.py --in 'a b' > out.txt";
        assert_eq!(
            srun_argv(&step, cmd).unwrap(),
            [
                "srun",
                "--exact",
                "--ntasks=1",
                "--cpus-per-task=8",
                "--mem=16384",
                "--gpus=2",
                "--nodes=2",
                "--time=90",
                "--signal=B:USR1@120",
                "--cpu-bind=none",
                "--mpi=pmix",
                "--job-name=wf1_j42 preprocess",
                "bash",
                "-c",
                cmd,
            ]
        );
    }

    #[test]
    fn memory_rounds_up_and_never_reaches_zero() {
        let mem = |bytes| srun_argv(&SrunStep::new(1, bytes), "x").unwrap()[4].clone();
        assert_eq!(mem(0), "--mem=1");
        assert_eq!(mem(1), "--mem=1");
        assert_eq!(mem(MB), "--mem=1");
        assert_eq!(mem(MB + 1), "--mem=2");
        assert_eq!(mem(u64::MAX), format!("--mem={}", u64::MAX.div_ceil(MB)));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            srun_argv(&SrunStep::new(0, MB), "x"),
            Err(SrunError::ZeroCpus)
        );
        let mut s = SrunStep::new(1, MB);
        s.nodes = Some(0);
        assert_eq!(srun_argv(&s, "x"), Err(SrunError::ZeroNodes));
        let mut s = SrunStep::new(1, MB);
        s.time_limit = Some(Duration::from_secs(59));
        assert_eq!(
            srun_argv(&s, "x"),
            Err(SrunError::TimeTooShort { secs: 59 })
        );
        assert_eq!(
            srun_argv(&SrunStep::new(1, MB), "a\0b"),
            Err(SrunError::NulInCommand)
        );
        for sig in ["", "TERM@", "@30", "X:TERM", "TERM@1m", "TERM 30", "-9"] {
            let mut s = SrunStep::new(1, MB);
            s.signal = Some(sig.into());
            assert!(
                matches!(
                    srun_argv(&s, "x"),
                    Err(SrunError::BadOption {
                        option: "--signal",
                        ..
                    })
                ),
                "{sig:?}"
            );
        }
        for sig in ["TERM", "SIGUSR1@60", "R:10@5", "RB:INT", "15", "term"] {
            let mut s = SrunStep::new(1, MB);
            s.signal = Some(sig.into());
            assert!(srun_argv(&s, "x").is_ok(), "{sig:?}");
        }
        let mut s = SrunStep::new(1, MB);
        s.mpi = Some("pmix --exclusive".into());
        assert!(matches!(
            srun_argv(&s, "x"),
            Err(SrunError::BadOption {
                option: "--mpi",
                ..
            })
        ));
        let mut s = SrunStep::new(1, MB);
        s.job_name = Some("a\nb".into());
        assert!(matches!(
            srun_argv(&s, "x"),
            Err(SrunError::BadOption {
                option: "--job-name",
                ..
            })
        ));
    }

    #[test]
    fn the_command_is_one_argument_whatever_it_holds() {
        let cmd = "echo \"$HOME\" 'x'; exit 3 # \n second line";
        let argv = srun_argv(&SrunStep::new(1, MB), cmd).unwrap();
        assert_eq!(argv.last().map(String::as_str), Some(cmd));
    }
}
