//! What each endpoint does, free of HTTP: validation of what came in, the call into the engine
//! or the store (blocking store reads on tokio's blocking pool), and the wire type that goes
//! out. Handlers only extract and wrap.

use crate::dto::{
    CreatedWorkflow, EventPage, JobPage, JobsQuery, PageQuery, ResultPage, ResultsQuery, Workflow,
    WorkflowStatus,
};
use crate::error::{ApiError, ApiErrorKind};
use crate::metrics::RequestMetrics;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use torc_core::api::{
    ClaimRequest, ClaimResponse, Coordinator, HeartbeatRequest, HeartbeatResponse, ReportBatch,
    ReportResponse, SharedClaimRequest,
};
use torc_core::spec::{self, SpecFormat};
use torc_core::{JobId, JobStatus, RunnerId, WorkflowId};
use torc_store::engine::EngineHandle;
use torc_store::{Store, StoreError};

/// Size limits and caps of what clients may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest spec body (`POST /workflows`).
    pub spec_bytes: usize,
    /// Largest report batch body, and largest heartbeat (it lists the jobs a runner holds).
    pub report_bytes: usize,
    /// Largest body of every other JSON request (claims, resets).
    pub request_bytes: usize,
    /// A claim's `wait_ms` is cut to this.
    pub max_wait: Duration,
    /// Most jobs one claim may ask for.
    pub max_claim: u32,
    /// Rows of a listing page when `limit` is not given.
    pub default_page: u64,
    /// Most rows of a listing page; a larger `limit` is cut to this.
    pub max_page: u64,
    /// Longest runner id accepted.
    pub max_runner_id: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            spec_bytes: 64 << 20,
            report_bytes: 16 << 20,
            request_bytes: 1 << 20,
            max_wait: Duration::from_secs(30),
            max_claim: 100_000,
            default_page: 1_000,
            max_page: 10_000,
            max_runner_id: 256,
        }
    }
}

/// Most runners whose last heartbeat is kept.
const MAX_RUNNERS_TRACKED: usize = 100_000;
/// A runner silent this long may be forgotten when the table is full.
const RUNNER_FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The state shared by every worker: the engine, the store, limits, runners' last heartbeats.
pub struct Service {
    pub(crate) engine: EngineHandle,
    store: Store,
    pub(crate) limits: Limits,
    runners: Mutex<HashMap<RunnerId, (Option<WorkflowId>, Instant)>>,
    pub(crate) metrics: RequestMetrics,
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// The spec syntax: `?format=` if given, else from the Content-Type, else YAML (which also
/// reads most JSON).
pub fn spec_format(
    format: Option<&str>,
    content_type: Option<&str>,
) -> Result<SpecFormat, ApiError> {
    if let Some(f) = format {
        return match f.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Ok(SpecFormat::Yaml),
            "json" => Ok(SpecFormat::Json),
            "json5" => Ok(SpecFormat::Json5),
            other => Err(ApiError::bad_request(format!(
                "unknown spec format {other:?}: expected yaml, json or json5"
            ))),
        };
    }
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(match mime.as_str() {
        "application/json" => SpecFormat::Json,
        "application/json5" => SpecFormat::Json5,
        _ => SpecFormat::Yaml,
    })
}

impl Service {
    pub fn new(engine: EngineHandle, store: Store, limits: Limits) -> Service {
        Service {
            engine,
            store,
            limits,
            runners: Mutex::new(HashMap::new()),
            metrics: RequestMetrics::default(),
        }
    }

    fn page(&self, offset: Option<u64>, limit: Option<u64>) -> (u64, u64) {
        let limit = limit
            .unwrap_or(self.limits.default_page)
            .min(self.limits.max_page);
        (offset.unwrap_or(0), limit)
    }

    fn check_runner(&self, runner: &RunnerId) -> Result<(), ApiError> {
        let n = runner.0.len();
        if n == 0 || n > self.limits.max_runner_id {
            return Err(ApiError::unprocessable(format!(
                "runner_id must have 1 to {} bytes, it has {n}",
                self.limits.max_runner_id
            )));
        }
        Ok(())
    }

    fn check_path_id(path: WorkflowId, body: WorkflowId) -> Result<(), ApiError> {
        if path != body {
            return Err(ApiError::bad_request(format!(
                "the path names workflow {path} but the body names workflow {body}"
            )));
        }
        Ok(())
    }

    /// Parses, validates and expands the spec (off the workers: big specs take a while), then
    /// creates the workflow.
    pub async fn create_workflow(
        &self,
        body: Vec<u8>,
        format: SpecFormat,
    ) -> Result<CreatedWorkflow, ApiError> {
        let text = String::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8: {e}")))?;
        let (expanded, text) = tokio::task::spawn_blocking(move || {
            let r = spec::load(&text, format);
            (r, text)
        })
        .await?;
        let expanded = expanded?;
        let name = expanded.def.name.clone();
        let num_jobs = expanded.def.jobs.len() as u64;
        let id = self
            .engine
            .create_workflow(expanded.def, Some(text))
            .await?;
        tracing::info!(workflow = %id, %name, num_jobs, "workflow created");
        Ok(CreatedWorkflow {
            id,
            name,
            num_jobs,
            warnings: expanded.warnings,
        })
    }

    pub async fn list_workflows(&self) -> Result<Vec<Workflow>, ApiError> {
        let store = self.store.clone();
        let list = blocking(move || store.list_workflows()).await?;
        Ok(list.into_iter().map(Workflow::from).collect())
    }

    pub async fn workflow(&self, id: WorkflowId) -> Result<Workflow, ApiError> {
        let store = self.store.clone();
        Ok(blocking(move || store.workflow_summary(id)).await?.into())
    }

    /// Drops the live state, then the stored workflow.
    pub async fn delete_workflow(&self, id: WorkflowId) -> Result<(), ApiError> {
        self.engine.unload(id).await?;
        let store = self.store.clone();
        blocking(move || store.delete_workflow(id)).await?;
        tracing::info!(workflow = %id, "workflow deleted");
        Ok(())
    }

    pub async fn status(&self, id: WorkflowId) -> Result<WorkflowStatus, ApiError> {
        Ok(WorkflowStatus::new(id, self.engine.status(id).await?))
    }

    pub async fn cancel(&self, id: WorkflowId) -> Result<WorkflowStatus, ApiError> {
        Ok(WorkflowStatus::new(id, self.engine.cancel(id).await?))
    }

    /// Changes a workflow's cap on jobs in flight.
    pub async fn set_max_concurrent_jobs(
        &self,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<WorkflowStatus, ApiError> {
        if cap == Some(0) {
            return Err(ApiError::unprocessable(
                "max_concurrent_jobs must be at least 1 (null for no cap)",
            ));
        }
        Ok(WorkflowStatus::new(
            id,
            self.engine.set_max_concurrent_jobs(id, cap).await?,
        ))
    }

    pub async fn resume(&self, id: WorkflowId) -> Result<WorkflowStatus, ApiError> {
        Ok(WorkflowStatus::new(id, self.engine.resume(id).await?))
    }

    pub async fn reset(
        &self,
        id: WorkflowId,
        failed_only: bool,
    ) -> Result<WorkflowStatus, ApiError> {
        Ok(WorkflowStatus::new(
            id,
            self.engine.reset(id, failed_only).await?,
        ))
    }

    pub async fn jobs(&self, id: WorkflowId, q: JobsQuery) -> Result<JobPage, ApiError> {
        let status = match q.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                JobStatus::from_name(s)
                    .or_else(|| s.parse::<i16>().ok().and_then(JobStatus::from_code))
                    .ok_or_else(|| ApiError::bad_request(format!("unknown job status {s:?}")))?,
            ),
        };
        let (offset, limit) = self.page(q.offset, q.limit);
        let store = self.store.clone();
        let items = blocking(move || store.list_jobs(id, status, offset, limit)).await?;
        Ok(JobPage {
            offset,
            limit,
            items: items.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn results(&self, id: WorkflowId, q: ResultsQuery) -> Result<ResultPage, ApiError> {
        let job = match q.job {
            Some(0) => return Err(ApiError::bad_request("job ids start at 1")),
            j => j.map(JobId),
        };
        let (offset, limit) = self.page(q.offset, q.limit);
        let store = self.store.clone();
        let items = blocking(move || store.list_results(id, job, offset, limit)).await?;
        Ok(ResultPage {
            offset,
            limit,
            items: items.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn events(&self, id: WorkflowId, q: PageQuery) -> Result<EventPage, ApiError> {
        let (offset, limit) = self.page(q.offset, q.limit);
        let store = self.store.clone();
        let items = blocking(move || store.list_events(id, offset, limit)).await?;
        Ok(EventPage {
            offset,
            limit,
            items: items.into_iter().map(Into::into).collect(),
        })
    }

    /// A claim, with its wait cut to the server's maximum. Answered after the commit that
    /// hands the jobs out, or at the (cut) deadline with none.
    pub async fn claim(
        &self,
        path_id: WorkflowId,
        mut req: ClaimRequest,
    ) -> Result<ClaimResponse, ApiError> {
        Self::check_path_id(path_id, req.workflow_id)?;
        self.check_runner(&req.runner_id)?;
        self.check_limit(req.limit)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        Ok(self.engine.claim(req).await?)
    }

    /// A shared runner's claim across the workflows it may serve, with its wait cut to the
    /// server's maximum.
    pub async fn claim_shared(
        &self,
        mut req: SharedClaimRequest,
        owners: Option<Vec<String>>,
    ) -> Result<ClaimResponse, ApiError> {
        self.check_runner(&req.runner_id)?;
        self.check_limit(req.limit)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        Ok(self.engine.claim_shared_for(req, owners).await?)
    }

    /// Starts and completions, answered after their commit.
    pub async fn report(
        &self,
        path_id: WorkflowId,
        batch: ReportBatch,
    ) -> Result<ReportResponse, ApiError> {
        Self::check_path_id(path_id, batch.workflow_id)?;
        self.check_runner(&batch.runner_id)?;
        Ok(self.engine.report(batch).await?)
    }

    /// A claim's job limit: 1 to the server's maximum.
    fn check_limit(&self, limit: u32) -> Result<(), ApiError> {
        if limit == 0 || limit > self.limits.max_claim {
            return Err(ApiError::unprocessable(format!(
                "limit must be 1 to {}, it is {limit}",
                self.limits.max_claim
            )));
        }
        Ok(())
    }

    fn max_wait_ms(&self) -> u64 {
        u64::try_from(self.limits.max_wait.as_millis()).unwrap_or(u64::MAX)
    }

    /// A heartbeat: renews the runner's lease (in the engine) and notes it as live.
    pub async fn heartbeat(
        &self,
        path_id: WorkflowId,
        mut req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ApiError> {
        Self::check_path_id(path_id, req.workflow_id)?;
        self.check_runner(&req.runner_id)?;
        self.note_runner(&req.runner_id, path_id)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        Ok(self.engine.heartbeat(req).await?)
    }

    /// Records when a runner was last heard from, for the live-runner gauge.
    fn note_runner(&self, runner: &RunnerId, workflow: WorkflowId) -> Result<(), ApiError> {
        let mut runners = self
            .runners
            .lock()
            .map_err(|_| ApiError::new(ApiErrorKind::Internal, "runner table poisoned"))?;
        let now = Instant::now();
        if runners.len() >= MAX_RUNNERS_TRACKED && !runners.contains_key(runner) {
            // Forget runners silent for a while, so that made-up ids cannot grow the table.
            runners.retain(|_, (_, seen)| now.duration_since(*seen) < RUNNER_FORGET_AFTER);
            if runners.len() >= MAX_RUNNERS_TRACKED {
                return Err(ApiError::new(
                    ApiErrorKind::Unavailable,
                    "too many runners tracked; retry later",
                ));
            }
        }
        runners.insert(runner.clone(), (Some(workflow), now));
        Ok(())
    }

    /// Runners heard from within `within`.
    pub fn live_runners(&self, within: Duration) -> usize {
        let now = Instant::now();
        self.runners.lock().map_or(0, |r| {
            r.values()
                .filter(|(_, seen)| now.duration_since(*seen) <= within)
                .count()
        })
    }

    /// The Prometheus text exposition: engine counters, then request counters.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let s = self.engine.stats();
        let counters = crate::metrics::EngineCounters {
            claimed_jobs: s.claimed_jobs,
            completions: s.completions,
            commits: s.commits,
            committed_requests: s.committed_requests,
            commit_micros: s.commit_micros,
        };
        crate::metrics::render_engine(&mut out, &counters);
        crate::metrics::render_gauge(
            &mut out,
            "torc_runners_live",
            "Runners that sent a heartbeat in the last 5 minutes.",
            self.live_runners(Duration::from_secs(300)) as f64,
        );
        self.metrics.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_query_then_content_type() {
        assert_eq!(spec_format(Some("JSON"), None).unwrap(), SpecFormat::Json);
        assert_eq!(
            spec_format(Some("json5"), Some("application/json")).unwrap(),
            SpecFormat::Json5
        );
        assert_eq!(
            spec_format(None, Some("application/json; charset=utf-8")).unwrap(),
            SpecFormat::Json
        );
        assert_eq!(
            spec_format(None, Some("application/yaml")).unwrap(),
            SpecFormat::Yaml
        );
        assert_eq!(spec_format(None, None).unwrap(), SpecFormat::Yaml);
        let e = spec_format(Some("toml"), None).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::BadRequest);
    }
}
