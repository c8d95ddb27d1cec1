//! Running jobs: environment, output, return codes, order, capacity, retries.

use super::*;

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_get_their_environment_and_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        0,
        "hello",
        "echo \"wf=$TORC_WORKFLOW_ID job=$TORC_JOB_ID name=$TORC_JOB_NAME \
         attempt=$TORC_ATTEMPT_ID run=$TORC_RUN_ID api=$TORC_API_URL extra=$EXTRA\"; \
         echo \"out=$TORC_OUTPUT_DIR\"; echo \"cwd=$(pwd)\"; echo oops >&2",
    );
    j.env.insert("EXTRA".into(), "yes".into());
    let mut with_prefix = job(1, "prefixed", "echo world");
    with_prefix.invocation_script = Some("echo hello;".into());
    let fake = Fake::new(vec![(j, vec![]), (with_prefix, vec![])]);
    let mut cfg = config(dir.path(), Capacity::MaxParallelJobs(4));
    cfg.api_url = Some("http://localhost:1234/torc".into());
    let summary = run_to_end(&fake, cfg, Shutdown::new()).await.unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!((summary.completed, summary.failed), (2, 0));

    let out = read(&stdio(dir.path(), 0, 1, "o"));
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("wf=7 job=1 name=hello attempt=1 run=1 api=http://localhost:1234/torc extra=yes")
    );
    let out_dir = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        lines.next(),
        Some(format!("out={}", out_dir.display()).as_str())
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        lines.next(),
        Some(format!("cwd={}", cwd.display()).as_str())
    );
    assert_eq!(read(&stdio(dir.path(), 0, 1, "e")), "oops\n");
    assert_eq!(read(&stdio(dir.path(), 1, 1, "o")), "hello\nworld\n");

    let c = fake.completion(0, 1);
    assert_eq!(c.return_code, 0);
    assert!(!c.terminated && !c.recovery_failed);
    assert!(c.end_time >= c.start_time);
    // Every start was reported, and every report was answered.
    let s = fake.lock();
    let starts: usize = s.batches.iter().map(|b| b.starts.len()).sum();
    assert_eq!(starts, 2);
    assert!(s.batches.iter().all(|b| b.workflow_id == WF));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_signals_become_return_codes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(vec![
        (job(0, "ok", "true"), vec![]),
        (job(1, "three", "exit 3"), vec![]),
        (job(2, "killed", "kill -KILL $$"), vec![]),
        (job(3, "termed", "kill -TERM $$"), vec![]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!(
        (summary.completed, summary.failed, summary.terminated),
        (1, 3, 0)
    );
    let rcs: Vec<i32> = (0..4).map(|i| fake.completion(i, 1).return_code).collect();
    assert_eq!(rcs, [0, 3, -9, -15]);
    assert_eq!(fake.status(1), JobStatus::Failed);
    assert!((0..4).all(|i| !fake.completion(i, 1).terminated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let step = |idx, name: &str| job(idx, name, &format!("echo {name} >> {}", log.display()));
    let fake = Fake::new(vec![
        (step(0, "a"), vec![]),
        (step(1, "b"), vec![0]),
        (step(2, "c"), vec![1]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.completed, 3);
    assert_eq!(read(&log), "a\nb\nc\n");
    let order: Vec<u32> = fake.lock().applied.iter().map(|c| c.job_id.0).collect();
    assert_eq!(order, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_jobs_is_never_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    // Each job marks itself live, records how many are live, and unmarks itself before exiting:
    // a count is never more than the number of job processes alive at that moment.
    let cmd = format!(
        "touch {live}/$TORC_JOB_ID; ls {live} | wc -l > {out}/count_$TORC_JOB_ID; \
         sleep 0.05; rm {live}/$TORC_JOB_ID",
        live = live.display(),
        out = dir.path().display()
    );
    let jobs = (0..8)
        .map(|i| (job(i, &format!("j{i}"), &cmd), vec![]))
        .collect();
    let fake = Fake::new(jobs);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.completed, 8);
    for id in 1..=8 {
        let count: u32 = read(&dir.path().join(format!("count_{id}")))
            .trim()
            .parse()
            .unwrap();
        assert!(
            (1..=2).contains(&count),
            "job {id} saw {count} jobs running"
        );
    }
    let s = fake.lock();
    // Short jobs are prefetched: against a coordinator that answers at once, claims may ask for
    // up to three capacities' worth (the running one, one round trip's, one more as the queue is
    // refilled a capacity at a time), but no more, and the counts above show that never more
    // than two ran at once.
    assert!(s
        .claims
        .iter()
        .all(|c| c.resources.is_none() && c.limit <= 6));
    // The first claim, before any job has run, asks for exactly the free slots.
    assert_eq!(s.claims[0].limit, 2);
}

/// Runs 60 short jobs with `capacity` (room for two at a time) and checks that the queue was
/// topped up a capacity at a time.
async fn claims_a_capacity_at_a_time(capacity: Capacity) {
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let jobs = (0..n)
        .map(|i| (job(i, &format!("j{i}"), "true"), vec![]))
        .collect();
    let fake = Fake::new(jobs);
    let summary = run_to_end(&fake, config(dir.path(), capacity), Shutdown::new())
        .await
        .unwrap();
    assert_eq!(summary.completed, n as u64);
    let s = fake.lock();
    // Each claim is a commit at the coordinator: with prefetched jobs queued, the runner tops
    // the queue up two jobs (its capacity) at a time, not one per exit. One claim per job
    // would be 60; a capacity at a time about 30, with a few more where the queue ran dry.
    assert!(
        s.claims.len() <= n * 2 / 3,
        "{} claims for {n} jobs: {:?}",
        s.claims.len(),
        s.claims.iter().map(|c| c.limit).collect::<Vec<_>>()
    );
    // Every completion was reported once and applied.
    assert_eq!(s.applied.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_jobs_are_claimed_a_capacity_at_a_time() {
    claims_a_capacity_at_a_time(Capacity::MaxParallelJobs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_jobs_are_claimed_a_capacity_at_a_time_by_resources() {
    // Two CPUs bind; memory is plentiful. Room in memory alone (always there) must not send a
    // claim for every CPU freed.
    claims_a_capacity_at_a_time(Capacity::Resources {
        num_cpus: 2,
        memory_bytes: 64 << 30,
        num_gpus: 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_claimed_only_when_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let small = job(
        0,
        "small",
        &format!("while [ ! -e {} ]; do sleep 0.01; done", go.display()),
    );
    let mut big = job(1, "big", "true");
    big.resources.num_cpus = 2;
    let fake = Fake::new(vec![(small, vec![]), (big, vec![])]);
    let cfg = config(
        dir.path(),
        Capacity::Resources {
            num_cpus: 2,
            memory_bytes: 1 << 30,
            num_gpus: 0,
        },
    );
    let runner = tokio::spawn(run(Arc::clone(&fake), cfg, Shutdown::new()));
    // The small job runs; the runner asks with 1 CPU free and the big job stays ready.
    fake.wait_until("a claim offers 1 free CPU", |s| {
        s.claims
            .iter()
            .any(|c| c.resources.is_some_and(|r| r.num_cpus == 1))
    })
    .await;
    {
        let s = fake.lock();
        let free = s.claims.last().unwrap().resources.unwrap();
        assert_eq!(
            free.memory_bytes,
            (1 << 30) - Resources::DEFAULT_JOB.memory_bytes
        );
        assert_eq!(s.jobs[1].status, JobStatus::Ready);
    }
    std::fs::write(&go, b"").unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2);
    let s = fake.lock();
    assert_eq!(
        s.max_in_flight, 1,
        "the big job never ran beside the small one"
    );
    let big_claim = s
        .claims
        .iter()
        .find(|c| c.resources.is_some_and(|r| r.num_cpus == 2) && c.limit == 2);
    assert!(big_claim.is_some());
}

fn handler(script: &str, exit_code: i32, max_retries: u32) -> Option<FailureHandler> {
    Some(FailureHandler {
        name: "h".into(),
        rules: vec![FailureRule {
            exit_codes: vec![exit_code],
            match_all_exit_codes: false,
            recovery_script: Some(script.into()),
            max_retries,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_scripts_run_before_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mark = "touch \"$TORC_OUTPUT_DIR/rec_${TORC_JOB_NAME}_$TORC_ATTEMPT_ID\"";
    // Fails once, recovers, passes on the second attempt.
    let mut flaky = job(
        0,
        "flaky",
        "echo \"attempt $TORC_ATTEMPT_ID\"; [ \"$TORC_ATTEMPT_ID\" = 2 ] || exit 1",
    );
    flaky.failure_handler = handler(mark, 1, 2);
    // Its recovery script fails: not retried.
    let mut broken = job(1, "broken", "exit 1");
    broken.failure_handler = handler(&format!("{mark}; exit 5"), 1, 2);
    // Always fails: recovers before attempt 2, not after it (no retries left).
    let mut hopeless = job(2, "hopeless", "exit 1");
    hopeless.failure_handler = handler(mark, 1, 1);
    // A code without a rule: no recovery.
    let mut other = job(3, "other", "exit 4");
    other.failure_handler = handler(mark, 1, 1);
    let fake = Fake::new(vec![
        (flaky, vec![]),
        (broken, vec![]),
        (hopeless, vec![]),
        (other, vec![]),
    ]);
    let summary = run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(4)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    let rec = |name: &str, attempt: u32| dir.path().join(format!("rec_{name}_{attempt}")).exists();

    assert!(rec("flaky", 1) && !rec("flaky", 2));
    let first = fake.completion(0, 1);
    assert_eq!((first.return_code, first.recovery_failed), (1, false));
    assert_eq!(fake.completion(0, 2).return_code, 0);
    assert_eq!(fake.status(0), JobStatus::Completed);

    assert!(rec("broken", 1));
    let c = fake.completion(1, 1);
    assert_eq!((c.return_code, c.recovery_failed), (1, true));
    assert_eq!(fake.status(1), JobStatus::Failed);

    assert!(rec("hopeless", 1) && !rec("hopeless", 2));
    assert!(!fake.completion(2, 1).recovery_failed);
    assert!(!fake.completion(2, 2).recovery_failed);
    assert_eq!(fake.status(2), JobStatus::Failed);

    assert!(!rec("other", 1));
    assert_eq!(fake.status(3), JobStatus::Failed);
    // Each attempt has its own output file.
    assert_eq!(read(&stdio(dir.path(), 0, 1, "o")), "attempt 1\n");
    assert_eq!(read(&stdio(dir.path(), 0, 2, "o")), "attempt 2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_modes_make_only_the_files_they_ask_for() {
    use torc_core::model::{StdioConfig, StdioMode};
    let dir = tempfile::tempdir().unwrap();
    let both = "echo out; echo err >&2";
    let mode = |mode, delete_on_success| StdioConfig {
        mode,
        delete_on_success,
    };
    let mut jobs = Vec::new();
    for (i, (stdio, cmd)) in [
        (mode(StdioMode::Separate, false), both.to_string()),
        (mode(StdioMode::Combined, false), both.to_string()),
        (mode(StdioMode::NoStdout, false), both.to_string()),
        (mode(StdioMode::NoStderr, false), both.to_string()),
        (mode(StdioMode::None, false), both.to_string()),
        (mode(StdioMode::Combined, true), both.to_string()),
        (mode(StdioMode::Combined, true), format!("{both}; exit 3")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut j = job(i, &format!("j{i}"), &cmd);
        j.stdio = stdio;
        jobs.push((j, vec![]));
    }
    let fake = Fake::new(jobs);
    run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    let files = |i: usize| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("job_stdio"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("job_wf7_j{}_", i + 1)))
            .collect();
        names.sort();
        names
    };
    let ext = |i: usize| -> Vec<String> {
        files(i)
            .iter()
            .map(|n| n.rsplit('.').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(ext(0), ["e", "o"]);
    assert_eq!(ext(1), ["log"]);
    let log = read(&stdio(dir.path(), 1, 1, "log"));
    assert!(log.contains("out") && log.contains("err"), "{log}");
    assert_eq!(ext(2), ["e"]);
    assert_eq!(ext(3), ["o"]);
    assert!(ext(4).is_empty(), "none: no file at all");
    assert!(ext(5).is_empty(), "a completed job's files are deleted");
    assert_eq!(ext(6), ["log"], "a failed job keeps its log");
    assert_eq!(fake.completion(6, 1).return_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_made_by_the_first_byte_and_hold_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("go");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    // Far more than a pipe holds, on both streams at once, and nothing at all.
    let big = "head -c 3000000 /dev/zero | tr '\\0' o; head -c 1000000 /dev/zero | tr '\\0' e >&2";
    let mut quiet_recovered = job(3, "quiet", "exit 1");
    quiet_recovered.failure_handler = handler("echo recovered", 1, 1);
    let fake = Fake::new(vec![
        (job(0, "big", big), vec![]),
        (job(1, "silent", "true"), vec![]),
        (job(2, "err_only", "echo only >&2"), vec![]),
        (quiet_recovered, vec![]),
        // Its leader exits at once; what it left behind writes once the test says so.
        (
            job(
                4,
                "lingering",
                &format!("echo early; (read _ < {}; echo late) &", fifo.display()),
            ),
            vec![],
        ),
    ]);
    run_to_end(
        &fake,
        config(dir.path(), Capacity::MaxParallelJobs(2)),
        Shutdown::new(),
    )
    .await
    .unwrap();
    let out = std::fs::read(stdio(dir.path(), 0, 1, "o")).unwrap();
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|&b| b == b'o'));
    let err = std::fs::read(stdio(dir.path(), 0, 1, "e")).unwrap();
    assert_eq!(err.len(), 1_000_000);
    assert!(
        !stdio(dir.path(), 1, 1, "o").exists(),
        "nothing written, no file"
    );
    assert!(!stdio(dir.path(), 1, 1, "e").exists());
    assert!(!stdio(dir.path(), 2, 1, "o").exists());
    assert_eq!(read(&stdio(dir.path(), 2, 1, "e")), "only\n");
    // The recovery script's output goes to the attempt's file even though the job wrote none.
    assert_eq!(read(&stdio(dir.path(), 3, 1, "o")), "recovered\n");
    // Reported with what its leader wrote, while the process it left behind still held the pipe.
    assert_eq!(read(&stdio(dir.path(), 4, 1, "o")), "early\n");
    assert_eq!(fake.completion(4, 1).return_code, 0);
    // Lets the lingering process go.
    std::fs::write(&fifo, "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_sees_only_the_gpus_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // a and b each hold one GPU until both have started, so they run at once; c needs one of
    // theirs after; d needs none.
    let gpu_job = |i: usize, name: &str, cmd: String| {
        let mut j = job(i, name, &cmd);
        j.resources.num_gpus = 1;
        j
    };
    let a = gpu_job(
        0,
        "a",
        format!("echo $CUDA_VISIBLE_DEVICES > {d}/a; while [ ! -f {d}/b ]; do sleep 0.01; done"),
    );
    let b = gpu_job(
        1,
        "b",
        format!("echo $CUDA_VISIBLE_DEVICES > {d}/b; while [ ! -f {d}/a ]; do sleep 0.01; done"),
    );
    let c = gpu_job(2, "c", format!("echo $CUDA_VISIBLE_DEVICES > {d}/c"));
    let none = job(3, "d", &format!("echo \"[$CUDA_VISIBLE_DEVICES]\" > {d}/d"));
    let fake = Fake::new(vec![(a, vec![]), (b, vec![]), (c, vec![]), (none, vec![])]);
    let capacity = Capacity::Resources {
        num_cpus: 4,
        memory_bytes: 1 << 30,
        num_gpus: 2,
    };
    run_to_end(&fake, config(dir.path(), capacity), Shutdown::new())
        .await
        .unwrap();
    let got = |n: &str| read(&dir.path().join(n)).trim().to_string();
    let mut ab = [got("a"), got("b")];
    ab.sort();
    assert_eq!(ab, ["0", "1"], "two jobs at once never share a GPU");
    assert!(["0", "1"].contains(&got("c").as_str()), "{}", got("c"));
    assert_eq!(got("d"), "[]", "a job without GPUs sees none");
}
