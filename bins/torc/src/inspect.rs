//! Validation, listings and workflow commands, on the embedded database or (with `--url`) on a
//! server. Both sources are read into the store's record types, so each listing is printed by
//! one piece of code.

use crate::cli::Global;
use crate::out::{errln, outln};
use crate::run::{load_spec, open_existing_store, open_store, runtime};
use crate::{table, Exit};
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use torc_core::units::{format_duration, format_memory};
use torc_core::{JobId, JobStatus, Timestamp, WorkflowId};
use torc_engine::EngineHandle;
use torc_http::{HttpClient, TokenRequest, TokenScopeSpec};
use torc_store::{JobRecord, ResultRecord, Store, WorkflowSummary};

/// Where listings come from.
enum Source {
    Local(Store),
    Remote(HttpClient, tokio::runtime::Runtime),
}

impl Source {
    fn open(global: &Global) -> Result<Source> {
        match &global.url {
            Some(url) => Ok(Source::Remote(global.client(url)?, runtime()?)),
            None => Ok(Source::Local(open_existing_store(global)?)),
        }
    }

    fn workflows(&self) -> Result<Vec<WorkflowSummary>> {
        Ok(match self {
            Source::Local(store) => store.list_workflows()?,
            Source::Remote(c, rt) => rt
                .block_on(c.list_workflows())?
                .into_iter()
                .map(WorkflowSummary::from)
                .collect(),
        })
    }

    /// The workflow named, else the most recent.
    fn pick(&self, id: Option<i64>) -> Result<WorkflowId> {
        if let Some(id) = id {
            return Ok(WorkflowId(id));
        }
        self.workflows()?.iter().map(|w| w.id).max().ok_or_else(|| {
            Exit {
                code: 2,
                message: "no workflow yet; create one with `torc run SPEC`".into(),
            }
            .into()
        })
    }

    fn summary(&self, id: WorkflowId) -> Result<(WorkflowSummary, BTreeMap<JobStatus, u64>)> {
        match self {
            Source::Local(store) => Ok((store.workflow_summary(id)?, store.job_counts(id)?)),
            Source::Remote(c, rt) => {
                let status = rt.block_on(c.status(id))?.into_summary();
                let w = rt.block_on(c.workflow(id))?;
                let summary = WorkflowSummary {
                    state: status.state,
                    run_id: status.run_id,
                    num_jobs: status.total,
                    ..WorkflowSummary::from(w)
                };
                Ok((summary, status.counts.into_iter().collect()))
            }
        }
    }

    fn jobs(
        &self,
        id: WorkflowId,
        status: Option<JobStatus>,
        (offset, limit): (u64, u64),
    ) -> Result<Vec<JobRecord>> {
        Ok(match self {
            Source::Local(store) => store.list_jobs(id, status, offset, limit)?,
            Source::Remote(c, rt) => rt
                .block_on(c.jobs(id, status, offset, limit))?
                .items
                .into_iter()
                .map(JobRecord::from)
                .collect(),
        })
    }

    fn results(
        &self,
        id: WorkflowId,
        job: Option<JobId>,
        (offset, limit): (u64, u64),
    ) -> Result<Vec<ResultRecord>> {
        Ok(match self {
            Source::Local(store) => store.list_results(id, job, offset, limit)?,
            Source::Remote(c, rt) => rt
                .block_on(c.results(id, job, offset, limit))?
                .items
                .into_iter()
                .map(ResultRecord::from)
                .collect(),
        })
    }
}

pub fn create(global: &Global, spec: &Path, dry_run: bool, json: bool) -> Result<ExitCode> {
    let (expanded, text, format) = load_spec(spec)?;
    let def = &expanded.def;
    let edges: usize = def.jobs.iter().map(|j| j.depends_on.len()).sum();
    let id = match (&global.url, dry_run) {
        (_, true) => None,
        (Some(url), false) => {
            let client = global.client(url)?;
            let created = runtime()?.block_on(client.create_workflow(text, format))?;
            Some(created.id)
        }
        (None, false) => {
            // Through the engine, so that the jobs are evaluated (ready or blocked) at once.
            let engine = EngineHandle::start(open_store(global)?)?;
            Some(runtime()?.block_on(engine.create_workflow(def.clone(), Some(text)))?)
        }
    };
    if json {
        let out = json!({
            "name": def.name,
            "workflow_id": id,
            "num_jobs": def.jobs.len(),
            "num_dependencies": edges,
            "num_files": def.files.len(),
            "num_user_data": def.user_data.len(),
            "warnings": expanded.warnings,
            "dry_run": dry_run,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let what = match id {
            Some(id) => format!("created workflow {id}"),
            None => "valid".to_string(),
        };
        outln!(
            "{} ({}): {} jobs, {} dependencies, {} files, {} user data",
            what,
            def.name,
            def.jobs.len(),
            edges,
            def.files.len(),
            def.user_data.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn time(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.0.rem_euclid(1000)
    )
}

pub fn list_workflows(global: &Global, json: bool) -> Result<ExitCode> {
    let all = Source::open(global)?.workflows()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|w| {
            vec![
                w.id.to_string(),
                w.name.clone(),
                w.state.name().to_string(),
                w.run_id.to_string(),
                w.num_jobs.to_string(),
                time(w.created_at),
            ]
        })
        .collect();
    table::print(&["ID", "NAME", "STATE", "RUN", "JOBS", "CREATED"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub fn status(global: &Global, id: Option<i64>, json: bool) -> Result<ExitCode> {
    let source = Source::open(global)?;
    let id = source.pick(id)?;
    let (summary, counts) = source.summary(id)?;
    print_status(&summary, &counts, json)
}

fn print_status(
    summary: &WorkflowSummary,
    counts: &BTreeMap<JobStatus, u64>,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let by_state: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(s, n)| (s.name().to_string(), json!(n)))
            .collect();
        let out = json!({"workflow": summary, "job_counts": by_state});
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "workflow {} ({}): {}, run {}, {} jobs",
        summary.id,
        summary.name,
        summary.state.name(),
        summary.run_id,
        summary.num_jobs
    );
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(s, n)| vec![s.name().to_string(), n.to_string()])
        .collect();
    table::print(&["STATE", "JOBS"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub fn list_jobs(
    global: &Global,
    id: Option<i64>,
    status: Option<&str>,
    (offset, limit): (u64, u64),
    json: bool,
) -> Result<ExitCode> {
    let status = status
        .map(|s| {
            JobStatus::from_name(s).ok_or_else(|| Exit {
                code: 2,
                message: format!(
                    "unknown job state `{s}`; one of: {}",
                    JobStatus::ALL.map(|s| s.name()).join(", ")
                ),
            })
        })
        .transpose()?;
    let source = Source::open(global)?;
    let id = source.pick(id)?;
    let jobs = source.jobs(id, status, (offset, limit))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.name.clone(),
                j.status.name().to_string(),
                j.attempt_id.to_string(),
                j.command.clone(),
            ]
        })
        .collect();
    table::print(&["ID", "NAME", "STATE", "ATTEMPT", "COMMAND"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub fn list_results(
    global: &Global,
    id: Option<i64>,
    job: Option<u32>,
    (offset, limit): (u64, u64),
    json: bool,
) -> Result<ExitCode> {
    let source = Source::open(global)?;
    let id = source.pick(id)?;
    let results = source.results(id, job.map(JobId), (offset, limit))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt_mem = |m: Option<u64>| m.map_or("-".to_string(), format_memory);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.job_id.to_string(),
                r.run_id.to_string(),
                r.attempt_id.to_string(),
                r.status.name().to_string(),
                r.return_code.to_string(),
                time(r.start_time),
                format_duration(torc_core::units::duration_from_secs_f64(r.exec_time_secs)),
                opt_mem(r.peak_memory_bytes),
                r.peak_cpu_percent
                    .map_or("-".into(), |c| format!("{c:.0}%")),
                r.end_reason.map_or("-", |e| e.name()).to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "JOB", "RUN", "ATTEMPT", "STATE", "RC", "STARTED", "WALL", "PEAK MEM", "PEAK CPU",
            "ENDED BY",
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A change to a workflow asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Cancel,
    Reset { failed_only: bool },
    MaxConcurrentJobs(Option<u32>),
}

/// `workflows cancel`, `reset` and `set-max-concurrent-jobs`: through the engine or the server.
pub fn change(global: &Global, id: i64, change: Change, json: bool) -> Result<ExitCode> {
    let id = WorkflowId(id);
    apply(global, id, change)?;
    let (summary, counts) = Source::open(global)?.summary(id)?;
    print_status(&summary, &counts, json)
}

/// Makes `change` to workflow `id`, through the server or an engine over the local database.
pub fn apply(global: &Global, id: WorkflowId, change: Change) -> Result<()> {
    let rt = runtime()?;
    // The change itself; what is printed is the workflow's state read back afterwards.
    match &global.url {
        Some(url) => {
            let client = global.client(url)?;
            match change {
                Change::Reset { failed_only } => rt.block_on(client.reset(id, failed_only))?,
                Change::Cancel => rt.block_on(client.cancel(id))?,
                Change::MaxConcurrentJobs(cap) => {
                    rt.block_on(client.set_max_concurrent_jobs(id, cap))?
                }
            };
            if let Change::Cancel = change {
                for line in crate::submit::cancel_allocations(&rt, Arc::new(client), id)? {
                    errln!("{line}");
                }
            }
        }
        None => {
            let engine = EngineHandle::start(open_existing_store(global)?)?;
            match change {
                Change::Reset { failed_only } => rt.block_on(engine.reset(id, failed_only))?,
                Change::Cancel => rt.block_on(engine.cancel(id))?,
                Change::MaxConcurrentJobs(cap) => {
                    rt.block_on(engine.set_max_concurrent_jobs(id, cap))?
                }
            };
            if let Change::Cancel = change {
                for line in crate::submit::cancel_allocations(&rt, Arc::new(engine), id)? {
                    errln!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// The server that `tokens` commands talk to.
fn token_server(global: &Global) -> Result<HttpClient> {
    match &global.url {
        Some(url) => global.client(url),
        None => Err(Exit {
            code: 2,
            message: "tokens are a server's: give --url (or TORC_API_URL) and an admin's --token"
                .into(),
        }
        .into()),
    }
}

/// `tokens create`: asks the server for a token and prints it.
pub fn create_token(
    global: &Global,
    user: &str,
    name: Option<&str>,
    scope: Option<TokenScopeSpec>,
    json: bool,
) -> Result<ExitCode> {
    let client = token_server(global)?;
    let request = TokenRequest {
        user: user.to_string(),
        name: name.map(str::to_string),
        scope,
    };
    let created = runtime()?.block_on(client.create_token(&request))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        errln!(
            "token {:?} for {}: shown once, the server keeps only its hash",
            created.name,
            created.user
        );
        outln!("{}", created.token);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tokens list`.
pub fn list_tokens(global: &Global, json: bool) -> Result<ExitCode> {
    let client = token_server(global)?;
    let tokens = runtime()?.block_on(client.list_tokens())?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let scope = match &t.scope {
                None => "-".to_string(),
                Some(s) => match (s.workflow, &s.user, &s.group) {
                    (Some(w), _, _) => format!("workflow {w}"),
                    (_, Some(u), _) => format!("user {u}"),
                    (_, _, Some(g)) => format!("group {g}"),
                    _ => "-".to_string(),
                },
            };
            let created = t.created_at.map_or("-".to_string(), time);
            vec![
                t.name.clone(),
                t.user.clone(),
                scope,
                t.source.clone(),
                created,
            ]
        })
        .collect();
    table::print(&["NAME", "USER", "SCOPE", "SOURCE", "CREATED"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `tokens revoke NAME`.
pub fn revoke_token(global: &Global, name: &str) -> Result<ExitCode> {
    let client = token_server(global)?;
    runtime()?.block_on(client.revoke_token(name))?;
    errln!("token {name:?} revoked");
    Ok(ExitCode::SUCCESS)
}
