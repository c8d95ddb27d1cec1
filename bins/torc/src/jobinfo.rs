//! `torc jobs show` (one job: definition, state, results, dependencies both ways) and
//! `torc jobs logs` (an attempt's stdout or stderr file, optionally followed until the job
//! finishes).
//!
//! On the local database everything comes from the stored workflow. Over `--url` the server
//! serves jobs and results but not the definition's dependencies, so `show` says so and shows
//! the rest. Output files are wherever the runner that ran the attempt wrote them
//! (`<its output_dir>/job_stdio/`); `logs` reads them when that is reachable from here (the
//! same `--output-dir`, a shared file system) and otherwise says where they are.

use crate::cli::{Global, JobLogsArgs, JobShowArgs};
use crate::inspect::time;
use crate::out::{self, errln, outln};
use crate::source::Source;
use crate::stdio::{self, Stream};
use crate::Exit;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use torc_core::units::{format_duration, format_memory};
use torc_core::{JobId, JobStatus, WorkflowId};
use torc_store::JobRecord;

/// How often `--follow` looks for more output and for the job's end.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// `torc jobs show ID JOB`.
pub fn show(global: &Global, args: &JobShowArgs) -> Result<ExitCode> {
    let id = WorkflowId(args.workflow_id);
    let source = Source::open(global)?;
    let def = source.def(id)?;
    let job = source.resolve(id, &args.job, def.as_ref())?;
    let results = source.results(id, Some(job.id))?;
    let stdio_dir = stdio::dir(&global.output_dir);
    // Dependencies both ways, with the state of each job named.
    let deps = def.as_ref().map(|def| {
        let named = |ids: Vec<JobId>| -> Vec<(JobId, String)> {
            ids.into_iter()
                .filter_map(|d| def.job(d).map(|j| (d, j.name.clone())))
                .collect()
        };
        let upstream = def
            .job(job.id)
            .map_or_else(Vec::new, |j| j.depends_on.clone());
        let downstream = def
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.depends_on.contains(&job.id))
            .map(|(i, _)| JobId::from_index(i))
            .collect();
        (named(upstream), named(downstream))
    });
    let jdef = def.as_ref().and_then(|d| d.job(job.id).map(|j| (d, j)));
    if args.json {
        let mut out = json!({ "job": job, "results": results });
        if let Some((def, j)) = jdef {
            out["definition"] = json!({
                "job": j,
                "resources": def.resources_of(j),
                "resource_requirement": j.resource_requirement
                    .and_then(|i| def.resource_requirements.get(i as usize))
                    .map(|r| &r.name),
                "failure_handler": j.failure_handler
                    .and_then(|i| def.failure_handlers.get(i as usize))
                    .map(|h| &h.name),
                "input_files": j.input_files.iter().filter_map(|&i| def.files.get(i as usize)).collect::<Vec<_>>(),
                "output_files": j.output_files.iter().filter_map(|&i| def.files.get(i as usize)).collect::<Vec<_>>(),
            });
        }
        if let Some((up, down)) = &deps {
            let list = |v: &[(JobId, String)]| -> Vec<serde_json::Value> {
                v.iter().map(|(i, n)| json!({"id": i, "name": n})).collect()
            };
            out["depends_on"] = json!(list(up));
            out["needed_by"] = json!(list(down));
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "job {} ({}) of workflow {id}: {}, attempt {}",
        job.id,
        job.name,
        out::state(job.status.name()),
        job.attempt_id
    );
    outln!("  command:    {}", job.command);
    if let Some(script) = &job.invocation_script {
        outln!("  invocation: {script}");
    }
    if job.priority != 0 {
        outln!("  priority:   {}", job.priority);
    }
    if !job.tags.is_empty() {
        outln!("  tags:       {}", job.tags.join(", "));
    }
    if let Some((def, j)) = jdef {
        let r = def.resources_of(j);
        let named = j
            .resource_requirement
            .and_then(|i| def.resource_requirements.get(i as usize))
            .map_or("default".to_string(), |r| r.name.clone());
        outln!(
            "  resources:  {named}: {} CPU, {}, {} GPU, {} node(s), runtime {}",
            r.num_cpus,
            format_memory(r.memory_bytes),
            r.num_gpus,
            r.num_nodes,
            format_duration(r.runtime)
        );
        if let Some(t) = j.timeout {
            outln!("  timeout:    {}", format_duration(t));
        }
        if let Some(h) = j
            .failure_handler
            .and_then(|i| def.failure_handlers.get(i as usize))
        {
            outln!("  on failure: handler {}", h.name);
        }
        let files = |idx: &[u32]| -> String {
            idx.iter()
                .filter_map(|&i| def.files.get(i as usize))
                .map(|f| format!("{} ({})", f.name, f.path))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !j.input_files.is_empty() {
            outln!("  reads:      {}", files(&j.input_files));
        }
        if !j.output_files.is_empty() {
            outln!("  writes:     {}", files(&j.output_files));
        }
        for (k, v) in &j.env {
            outln!("  env:        {k}={v}");
        }
        outln!(
            "  if a dependency fails: {}",
            if j.cancel_on_blocking_job_failure {
                "canceled"
            } else {
                "runs anyway"
            }
        );
    }
    match &deps {
        Some((up, down)) => {
            let list = |v: &[(JobId, String)]| match v.len() {
                0 => "-".to_string(),
                _ => v
                    .iter()
                    .map(|(i, n)| format!("{n} ({i})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            outln!("  depends on: {}", list(up));
            outln!("  needed by:  {}", list(down));
        }
        None => outln!("  dependencies: not served over --url; see `torc workflows graph SPEC`"),
    }
    if results.is_empty() {
        outln!("no results yet");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let err = stdio::file(
                &stdio_dir,
                id,
                r.job_id,
                r.run_id,
                r.attempt_id,
                Stream::Stderr,
            );
            vec![
                r.run_id.to_string(),
                r.attempt_id.to_string(),
                r.status.name().to_string(),
                r.return_code.to_string(),
                time(r.start_time),
                format_duration(torc_core::units::duration_from_secs_f64(r.exec_time_secs)),
                r.peak_memory_bytes.map_or("-".into(), format_memory),
                r.runner.as_ref().map_or("-".into(), |r| r.0.clone()),
                err.with_extension("{o,e}").display().to_string(),
            ]
        })
        .collect();
    outln!("results:");
    crate::table::print(
        &[
            "RUN", "ATTEMPT", "STATE", "RC", "STARTED", "WALL", "PEAK MEM", "RUNNER", "OUTPUT",
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the attempt `attempt` (run, attempt) of `job` will write no more output: the job
/// moved on to a later attempt, or it is finished (and so will not reach `attempt` without a
/// reset either).
fn done_with(job: &JobRecord, run_id: u32, attempt: (u32, u32)) -> bool {
    (run_id, job.attempt_id) > attempt
        || job.status.is_finished()
        || job.status == JobStatus::PendingFailed
}

/// `torc jobs logs ID JOB`.
pub fn logs(global: &Global, args: &JobLogsArgs) -> Result<ExitCode> {
    let id = WorkflowId(args.workflow_id);
    let source = Source::open(global)?;
    let job = source.resolve(id, &args.job, None)?;
    let current_run = source.run_id(id)?;
    let results = source.results(id, Some(job.id))?;
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    // Which attempt: the one asked for (in the run asked for, else the latest run that has
    // it), else the one running now, else the latest recorded.
    let live = matches!(job.status, JobStatus::Pending | JobStatus::Running);
    let (run_id, attempt) = match (args.run, args.attempt) {
        (run, Some(a)) => {
            let run = run.unwrap_or_else(|| {
                results
                    .iter()
                    .filter(|r| r.attempt_id == a)
                    .map(|r| r.run_id)
                    .max()
                    .unwrap_or(current_run)
            });
            (run, a)
        }
        (Some(run), None) => {
            let last = results
                .iter()
                .filter(|r| r.run_id == run)
                .map(|r| r.attempt_id)
                .max();
            match last {
                Some(a) => (run, a),
                None if run == current_run => (run, job.attempt_id),
                None => {
                    return Err(Exit {
                        code: 2,
                        message: format!(
                            "job {} ({}) has no result in run {run}",
                            job.id, job.name
                        ),
                    }
                    .into())
                }
            }
        }
        (None, None) => match results.iter().map(|r| (r.run_id, r.attempt_id)).max() {
            Some(last) if !live => last,
            _ => (current_run, job.attempt_id),
        },
    };
    let result = results
        .iter()
        .find(|r| r.run_id == run_id && r.attempt_id == attempt);
    let own = stdio::file(
        &stdio::dir(&global.output_dir),
        id,
        job.id,
        run_id,
        attempt,
        stream,
    );
    let which = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    // The job's stdio mode, where the definition can be read; else the files tell.
    let mode = source
        .def(id)?
        .and_then(|d| d.job(job.id).map(|j| j.stdio_in(&d).mode));
    let path = match stdio::locate(own, stream, mode) {
        stdio::Kept::Own(p) => p,
        stdio::Kept::Combined(p) => {
            errln!(
                "({which} and the other stream are kept together in {})",
                p.display()
            );
            p
        }
        stdio::Kept::Discarded(mode) => {
            return Err(Exit {
                code: 1,
                message: format!(
                    "job {} ({}) keeps no {which}: its stdio mode is `{}`",
                    job.id,
                    job.name,
                    mode.name()
                ),
            }
            .into())
        }
    };
    let may_write = !done_with(&job, current_run, (run_id, attempt));
    if args.follow && may_write {
        follow(&source, id, job.id, (run_id, attempt), &path)?;
    } else if path.exists() {
        copy_from(&path, 0)?;
    }
    if path.exists() {
        return Ok(ExitCode::SUCCESS);
    }
    let host = result.and_then(|r| r.runner.as_ref()).map(|r| {
        r.0.rsplit_once(':')
            .map_or(r.0.as_str(), |(h, _)| h)
            .to_string()
    });
    let waiting = matches!(
        job.status,
        JobStatus::Uninitialized | JobStatus::Blocked | JobStatus::Ready
    );
    // Runners make a stream's file at its first byte: a job that ran where this output
    // directory is and has no file wrote nothing there.
    let ran = result.is_some() || (may_write && !waiting);
    let ran_here = host.is_none() || host == torc_runner::hostname();
    if ran && ran_here && path.parent().is_some_and(Path::exists) {
        errln!(
            "(job {} ({}) {} nothing to its {which}: {} is made at the first byte)",
            job.id,
            job.name,
            if result.is_some() {
                "wrote"
            } else {
                "has written"
            },
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let message = if result.is_none() && may_write && waiting {
        format!(
            "job {} ({}) has not started yet (it is {}); --follow waits for it",
            job.id, job.name, job.status
        )
    } else if result.is_none() && !may_write {
        format!(
            "job {} ({}) has no attempt {attempt} in run {run_id} (it is {}); its {which} \
             would be {}",
            job.id,
            job.name,
            job.status,
            path.display()
        )
    } else {
        format!(
            "the {which} of job {} ({}), run {run_id} attempt {attempt}, is not here: no {}. \
             The runner{} writes it under its own output directory, as job_stdio/{}; pass \
             that directory with --output-dir, or read it there",
            job.id,
            job.name,
            path.display(),
            host.map_or(String::new(), |h| format!(" on {h}")),
            path.file_name().unwrap_or_default().to_string_lossy()
        )
    };
    Err(Exit { code: 1, message }.into())
}

/// Copies `path` from byte `offset` to stdout; returns the new offset.
fn copy_from(path: &Path, offset: u64) -> Result<u64> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !buf.is_empty() {
        // The job's bytes as they are: its own colours, if any, are its business.
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()?;
    }
    Ok(offset + buf.len() as u64)
}

/// Prints `path` as it grows, until the attempt is over and everything it wrote is printed.
fn follow(
    source: &Source,
    id: WorkflowId,
    job: JobId,
    attempt: (u32, u32),
    path: &Path,
) -> Result<()> {
    let mut offset = 0;
    loop {
        // The state first, the bytes second: output written before the job was seen done is
        // then always printed by the last round.
        let record = source.job(id, job)?;
        let run_id = source.run_id(id)?;
        offset = copy_from(path, offset)?;
        match record {
            Some(j) if !done_with(&j, run_id, attempt) => {}
            _ => return Ok(()),
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
