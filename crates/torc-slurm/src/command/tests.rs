//! Parsing, with output captured from the one-node test cluster (Slurm 22.05.8) and, where
//! marked, shapes other clusters print.

use super::*;
use crate::state::EndReason::*;
use std::time::Duration;

fn local(s: &str) -> Option<SystemTime> {
    parse_local_timestamp(s).unwrap()
}

#[test]
fn submit_output() {
    assert_eq!(parse_submit("7\n").unwrap(), SlurmJobId(7));
    assert_eq!(parse_submit("12345;cluster2\n").unwrap(), SlurmJobId(12345));
    assert_eq!(parse_submit("\n  42  \n").unwrap(), SlurmJobId(42));
    assert!(matches!(
        parse_submit(""),
        Err(CommandError::Output {
            problem: OutputProblem::Empty,
            ..
        })
    ));
    assert!(matches!(
        parse_submit("Submitted batch job 7\n"),
        Err(CommandError::Output {
            problem: OutputProblem::JobId(_),
            ..
        })
    ));
}

/// `squeue -h -t all -o '%i|%T|%e|%r'` after a cancelled, a completed, a failed, a timed-out
/// and a pending job, as the test cluster printed it.
const SQUEUE: &str = "\
1|CANCELLED|2026-12-01T22:13:48|None
2|COMPLETING|2026-12-01T22:14:03|None
3|PENDING|N/A|Resources
6|COMPLETED|2026-12-01T22:15:04|None
4|FAILED|2026-12-01T22:14:10|NonZeroExitCode
5|TIMEOUT|2026-12-01T22:15:18|TimeLimit
8|RUNNING|NONE|None
9|RUNNING|2026-12-01T22:23:16|None
";

#[test]
fn squeue_output() {
    let jobs = parse_squeue(SQUEUE).unwrap();
    let summary: Vec<(u64, AllocationState, Option<&str>)> = jobs
        .iter()
        .map(|j| (j.id.0, j.state.clone(), j.reason.as_deref()))
        .collect();
    use AllocationState::*;
    assert_eq!(
        summary,
        vec![
            (1, Ended(Cancelled { by: None }), None),
            (2, Running, None),
            (3, Queued, Some("Resources")),
            (6, Ended(Completed), None),
            (4, Ended(Failed), Some("NonZeroExitCode")),
            (5, Ended(Timeout), Some("TimeLimit")),
            (8, Running, None),
            (9, Running, None),
        ]
    );
    assert_eq!(jobs[0].end_time, local("2026-12-01T22:13:48"));
    assert_eq!(jobs[2].end_time, None);
    assert_eq!(jobs[6].end_time, None);
    assert!(jobs.iter().all(|j| j.exit.is_none()));
    assert_eq!(parse_squeue("").unwrap(), vec![]);
}

#[test]
fn squeue_reason_may_hold_separators() {
    // Shape from busy clusters.
    let jobs =
        parse_squeue("77|PENDING|N/A|(ReqNodeNotAvail, UnavailableNodes:n[01-02]|x)\n").unwrap();
    assert_eq!(
        jobs[0].reason.as_deref(),
        Some("(ReqNodeNotAvail, UnavailableNodes:n[01-02]|x)")
    );
}

#[test]
fn odd_squeue_output_is_an_error() {
    for (out, want) in [
        ("1|RUNNING|NONE\n", "FieldCount"),
        ("1_3|RUNNING|NONE|None\n", "JobId"),
        ("1|DONE|NONE|None\n", "State"),
        ("1|RUNNING|tomorrow|None\n", "Time"),
    ] {
        let err = parse_squeue(out).unwrap_err();
        let CommandError::Output {
            program,
            problem,
            line,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(*program, "squeue");
        assert_eq!(line, out.trim());
        assert!(format!("{problem:?}").starts_with(want), "{problem:?}");
    }
}

#[test]
fn sacct_output() {
    // Shape from clusters with accounting (the test cluster keeps none).
    let out = "\
10|COMPLETED|0:0|2026-12-01T10:00:00|2026-12-01T10:05:00
10.batch|COMPLETED|0:0|2026-12-01T10:00:00|2026-12-01T10:05:00
10.extern|COMPLETED|0:0|2026-12-01T10:00:00|2026-12-01T10:05:00
11|CANCELLED by 0|0:15|2026-12-01T10:00:00|2026-12-01T10:01:00
12|FAILED|3:0|2026-12-01T10:00:00|2026-12-01T10:00:01
13|PENDING|0:0|Unknown|Unknown
14|OUT_OF_MEMORY|0:125|2026-12-01T10:00:00|2026-12-01T10:00:09
";
    let jobs = parse_sacct(out).unwrap();
    let summary: Vec<(u64, AllocationState, SlurmExit)> = jobs
        .iter()
        .map(|j| (j.id.0, j.state.clone(), j.exit.unwrap()))
        .collect();
    use AllocationState::*;
    let exit = |code, signal| SlurmExit { code, signal };
    assert_eq!(
        summary,
        vec![
            (10, Ended(Completed), exit(0, 0)),
            (11, Ended(Cancelled { by: Some(0) }), exit(0, 15)),
            (12, Ended(Failed), exit(3, 0)),
            (13, Queued, exit(0, 0)),
            (14, Ended(OutOfMemory), exit(0, 125)),
        ]
    );
    assert_eq!(jobs[0].end_time, local("2026-12-01T10:05:00"));
    assert_eq!(jobs[3].end_time, None);
    assert!(matches!(
        parse_sacct("10|COMPLETED|zero|Unknown|Unknown\n"),
        Err(CommandError::Output {
            problem: OutputProblem::ExitCode(_),
            ..
        })
    ));
    assert!(matches!(
        parse_sacct("10|COMPLETED|0|Unknown|Unknown\n"),
        Err(CommandError::Output {
            problem: OutputProblem::ExitCode(_),
            ..
        })
    ));
}

#[test]
fn sinfo_output() {
    // The test cluster.
    let parts = parse_sinfo("debug*|infinite|2|24105|(null)|1\n").unwrap();
    assert_eq!(
        parts,
        vec![Partition {
            name: "debug".into(),
            default: true,
            max_time: TimeLimit::Unlimited,
            cpus_per_node: 2,
            memory_per_node_mb: 24105,
            gres: None,
            nodes: 1,
        }]
    );
    // Shapes from larger clusters.
    let parts = parse_sinfo(
        "short|4:00:00|104|240000|(null)|2000\n\
         gpu|2-00:00:00|128+|1000000+|gpu:h100:4|40\n\
         debug|1:00:00|36|92000|(null)|8\n",
    )
    .unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].name, "short");
    assert!(!parts[0].default);
    assert_eq!(
        parts[0].max_time,
        TimeLimit::Limited(Duration::from_secs(4 * 3_600))
    );
    assert_eq!(parts[1].cpus_per_node, 128);
    assert_eq!(parts[1].memory_per_node_mb, 1_000_000);
    assert_eq!(parts[1].gres.as_deref(), Some("gpu:h100:4"));
    assert_eq!(
        parts[1].max_time,
        TimeLimit::Limited(Duration::from_secs(2 * 86_400))
    );
    assert_eq!(parts[2].nodes, 8);
}

#[test]
fn odd_sinfo_output_is_an_error() {
    for out in [
        "debug*|infinite|2|24105|(null)\n",
        "debug*|forever|2|24105|(null)|1\n",
        "debug*|infinite|two|24105|(null)|1\n",
        "debug*|infinite|2|-1|(null)|1\n",
        "debug*|infinite|2|24105|(null)|+\n",
        "debug*|infinite|99999999999|24105|(null)|1\n",
    ] {
        let err = parse_sinfo(out).unwrap_err();
        assert!(
            matches!(
                err,
                CommandError::Output {
                    program: "sinfo",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn end_time_output() {
    // `squeue -h -j ID -o %e` inside an allocation with and without a time limit.
    assert_eq!(
        parse_end_time("2026-12-01T22:23:16\n").unwrap(),
        local("2026-12-01T22:23:16")
    );
    assert_eq!(parse_end_time("NONE\n").unwrap(), None);
    assert_eq!(parse_end_time("N/A\n").unwrap(), None);
    assert!(parse_end_time("").is_err());
    assert!(parse_end_time("22:23\n").is_err());
}

#[test]
fn error_messages_name_the_command() {
    let e = CommandError::NotFound {
        program: "sbatch",
        bin_dir: None,
    };
    assert_eq!(e.to_string(), "sbatch not found on PATH");
    let e = CommandError::Failed {
        program: "sbatch",
        code: Some(1),
        stderr: "sbatch: error: invalid partition specified: nope".into(),
    };
    assert_eq!(
        e.to_string(),
        "sbatch failed (exit code 1): sbatch: error: invalid partition specified: nope"
    );
}

#[test]
fn a_missing_command_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_bin_dir(dir.path());
    let err = slurm.partitions().unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::NotFound {
                program: "sinfo",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("sinfo not found in {}", dir.path().display())
    );
}

/// (A symlink, not a script written here: a file being written while another test thread
/// forks can be "text file busy" when run.)
#[cfg(unix)]
#[test]
fn a_failing_command_is_an_error_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let falsy = ["/bin/false", "/usr/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::os::unix::fs::symlink(falsy, dir.path().join("sbatch")).unwrap();
    let err = Slurm::with_bin_dir(dir.path())
        .submit(Path::new("/nonexistent.sh"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Failed {
                program: "sbatch",
                code: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "sbatch failed (exit code 1): it printed nothing on stderr"
    );
}
