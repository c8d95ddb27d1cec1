//! What each endpoint does, free of HTTP: who may do it (decided by [`crate::server::auth`], with the
//! workflow's owner looked up here), validation of what came in, the call into the engine or
//! the store (blocking store reads on tokio's blocking pool), and the wire type that goes out.
//! Handlers only extract and wrap.

use crate::server::auth::{self, Access, Auth, Owner, Principal};
use crate::server::error::{ApiError, ApiErrorKind};
use crate::server::flood::{FloodLimits, Floods, Waiting};
use crate::server::input;
use crate::server::metrics::RequestMetrics;
use crate::wire::{
    CreatedToken, CreatedWorkflow, EventPage, JobPage, JobsQuery, PageQuery, ResourcesChanged,
    ResultPage, ResultsQuery, ScaleRequest, TokenInfo, TokenRequest, TokenScopeSpec, Workflow,
    WorkflowStatus,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, Coordinator,
    HeartbeatRequest, HeartbeatResponse, ReportBatch, ReportResponse, SharedClaimRequest,
};
use torc_core::sched::ResourceScale;
use torc_core::spec::{self, SpecErrors, SpecFormat};
use torc_core::{JobId, JobStatus, Timestamp, WorkflowId};
use torc_engine::EngineHandle;
use torc_store::{Store, StoreError, TokenRecord};

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
    /// Runners and long polls one token, and everyone, may hold.
    pub floods: FloodLimits,
    /// Specs read at once (`POST /workflows`); a creation waits its turn for at most
    /// `spec_parse_time`, then gets 503.
    pub spec_parses: usize,
    /// Longest a spec may take to be read, validated and expanded; past it the creation gets
    /// 422. The spec's own budgets (`torc_core::spec`) bound the work; this bounds the time.
    pub spec_parse_time: Duration,
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
            floods: FloodLimits::default(),
            // Half the cores, 1 to 8: each spec read can take a core and, for millions of
            // jobs, gigabytes, while claims and reports keep the rest.
            spec_parses: std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .clamp(1, 8),
            spec_parse_time: Duration::from_secs(60),
        }
    }
}

/// Most workflow owners remembered; past it the memory starts over (owners are re-read).
const MAX_OWNERS_CACHED: usize = 1_000_000;

/// A workflow's owner (`None`: created without a user).
type OwnerName = Option<Arc<str>>;

/// The state shared by every worker: the engine, the store, limits, runners' last heartbeats,
/// authentication and the owners of the workflows asked about.
pub struct Service {
    pub(crate) engine: EngineHandle,
    pub(crate) store: Store,
    pub(crate) limits: Limits,
    /// Runners named and long polls in flight, per token.
    floods: Floods,
    pub(crate) metrics: RequestMetrics,
    pub(crate) auth: Auth,
    /// One permit per spec being read (`Limits::spec_parses`).
    parses: Arc<tokio::sync::Semaphore>,
    /// Workflow → owner. An owner never changes and ids are never reused, so an entry is never
    /// stale; a deleted workflow's is dropped.
    owners: RwLock<HashMap<WorkflowId, OwnerName>>,
}

/// The token a caller's runners and long polls are counted against (every local caller is
/// one).
fn token_of(who: &Principal) -> &str {
    match who {
        Principal::Local => "",
        Principal::Token(holder) => &holder.token,
    }
}

/// Runs a blocking store call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
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
            "kdl" => Ok(SpecFormat::Kdl),
            other => Err(ApiError::bad_request(format!(
                "unknown spec format {other:?}: expected yaml, json, json5 or kdl"
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
        "application/kdl" => SpecFormat::Kdl,
        _ => SpecFormat::Yaml,
    })
}

impl Service {
    pub fn new(engine: EngineHandle, store: Store, limits: Limits, auth: Auth) -> Service {
        Service {
            engine,
            store,
            limits,
            floods: Floods::new(limits.floods),
            metrics: RequestMetrics::default(),
            auth,
            parses: Arc::new(tokio::sync::Semaphore::new(limits.spec_parses.max(1))),
            owners: RwLock::new(HashMap::new()),
        }
    }

    /// The server's authentication (for [`Principal::claimable_owners`], say).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    fn remember_owner(&self, id: WorkflowId, owner: OwnerName) {
        if let Ok(mut owners) = self.owners.write() {
            if owners.len() >= MAX_OWNERS_CACHED {
                owners.clear();
            }
            owners.insert(id, owner);
        }
    }

    /// A workflow's owner: `Ok(None)` when there is no such workflow.
    async fn owner(&self, id: WorkflowId) -> Result<Option<OwnerName>, ApiError> {
        if let Some(owner) = self.owners.read().ok().and_then(|o| o.get(&id).cloned()) {
            return Ok(Some(owner));
        }
        let store = self.store.clone();
        match blocking(move || store.workflow_summary(id)).await {
            Ok(w) => {
                let owner: OwnerName = w.user.map(Arc::from);
                self.remember_owner(id, owner.clone());
                Ok(Some(owner))
            }
            Err(e) if e.kind == ApiErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Refuses unless `who` may have `access` to workflow `id` (looking its owner up only when
    /// the decision depends on it).
    pub async fn allow(
        &self,
        who: &Principal,
        id: WorkflowId,
        access: Access,
    ) -> Result<(), ApiError> {
        if !self.auth.needs_owner(who, access) {
            return self.auth.authorize(who, id, access, Owner::NotLookedUp);
        }
        let owner = self.owner(id).await?;
        let owner = match &owner {
            None => Owner::NoSuchWorkflow,
            Some(o) => Owner::Is(o.as_deref()),
        };
        self.auth.authorize(who, id, access, owner)
    }

    pub(crate) fn page(&self, offset: Option<u64>, limit: Option<u64>) -> (u64, u64) {
        let limit = limit
            .unwrap_or(self.limits.default_page)
            .min(self.limits.max_page);
        (offset.unwrap_or(0), limit)
    }

    fn bounds(&self) -> input::Bounds {
        input::Bounds {
            max_runner_id: self.limits.max_runner_id,
            max_claim: self.limits.max_claim,
        }
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
        who: &Principal,
        body: Vec<u8>,
        format: SpecFormat,
        key: Option<String>,
    ) -> Result<CreatedWorkflow, ApiError> {
        // A runner token is refused before the spec is read.
        self.auth.owner_for_new_workflow(who, None)?;
        let key = key
            .map(|key| input::idempotency_key(who.user().unwrap_or(""), key, format, &body))
            .transpose()?;
        let text = String::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8: {e}")))?;
        let (expanded, text) = self.read_spec(text, format).await?;
        let mut expanded = expanded?;
        input::spec(&text, &expanded.def)?;
        let owner = self
            .auth
            .owner_for_new_workflow(who, expanded.def.user.take())?;
        expanded.def.user = owner.clone();
        let name = expanded.def.name.clone();
        let num_jobs = expanded.def.jobs.len() as u64;
        let id = match key {
            Some(key) => {
                self.engine
                    .create_workflow_once(expanded.def, Some(text), key)
                    .await?
            }
            None => {
                self.engine
                    .create_workflow(expanded.def, Some(text))
                    .await?
            }
        };
        self.remember_owner(id, owner.as_deref().map(Arc::from));
        tracing::info!(workflow = %id, %name, num_jobs, owner = owner.as_deref().unwrap_or("-"), "workflow created");
        Ok(CreatedWorkflow {
            id,
            name,
            num_jobs,
            warnings: expanded.warnings,
        })
    }

    /// Reads a spec on a blocking thread, at most `spec_parses` at once and for at most
    /// `spec_parse_time`. The permit goes with the thread: one that outlives its time limit
    /// still counts until it ends, so slow specs never pile up threads.
    async fn read_spec(
        &self,
        text: String,
        format: SpecFormat,
    ) -> Result<(Result<spec::Expanded, SpecErrors>, String), ApiError> {
        let limit = self.limits.spec_parse_time;
        let permit = match tokio::time::timeout(limit, self.parses.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    ApiErrorKind::Unavailable,
                    "the server is stopping",
                ))
            }
            Err(_) => {
                return Err(ApiError::new(
                    ApiErrorKind::Unavailable,
                    format!(
                        "the server is busy reading {} other specs; try again later",
                        self.limits.spec_parses
                    ),
                ))
            }
        };
        let reading = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let r = spec::load(&text, format);
            (r, text)
        });
        match tokio::time::timeout(limit, reading).await {
            Ok(done) => Ok(done?),
            Err(_) => Err(ApiError::unprocessable(format!(
                "the spec took longer than the server's limit of {} s to read, validate and \
                 expand (torc-server --spec-parse-secs); split it into smaller workflows",
                limit.as_secs_f64()
            ))),
        }
    }

    /// The workflows `who` may see, oldest first.
    pub async fn list_workflows(&self, who: &Principal) -> Result<Vec<Workflow>, ApiError> {
        self.auth.may_list(who)?;
        let store = self.store.clone();
        let list = blocking(move || store.list_workflows()).await?;
        Ok(list
            .into_iter()
            .filter(|w| self.auth.sees(who, w.user.as_deref()))
            .map(Workflow::from)
            .collect())
    }

    pub async fn workflow(&self, who: &Principal, id: WorkflowId) -> Result<Workflow, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        let store = self.store.clone();
        Ok(blocking(move || store.workflow_summary(id)).await?.into())
    }

    /// Deletes the workflow through the engine, a chunk of rows at a time between its
    /// commits; answered once it is all gone.
    pub async fn delete_workflow(&self, who: &Principal, id: WorkflowId) -> Result<(), ApiError> {
        self.allow(who, id, Access::Manage).await?;
        self.engine.delete(id).await?;
        if let Ok(mut owners) = self.owners.write() {
            owners.remove(&id);
        }
        tracing::info!(workflow = %id, "workflow deleted");
        Ok(())
    }

    pub async fn status(
        &self,
        who: &Principal,
        id: WorkflowId,
    ) -> Result<WorkflowStatus, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        Ok(WorkflowStatus::new(id, self.engine.status(id).await?))
    }

    pub async fn cancel(
        &self,
        who: &Principal,
        id: WorkflowId,
    ) -> Result<WorkflowStatus, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        Ok(WorkflowStatus::new(id, self.engine.cancel(id).await?))
    }

    /// Changes a workflow's cap on jobs in flight.
    pub async fn set_max_concurrent_jobs(
        &self,
        who: &Principal,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<WorkflowStatus, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        input::max_concurrent_jobs(cap)?;
        Ok(WorkflowStatus::new(
            id,
            self.engine.set_max_concurrent_jobs(id, cap).await?,
        ))
    }

    pub async fn resume(
        &self,
        who: &Principal,
        id: WorkflowId,
    ) -> Result<WorkflowStatus, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        Ok(WorkflowStatus::new(id, self.engine.resume(id).await?))
    }

    pub async fn reset(
        &self,
        who: &Principal,
        id: WorkflowId,
        failed_only: bool,
    ) -> Result<WorkflowStatus, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        Ok(WorkflowStatus::new(
            id,
            self.engine.reset(id, failed_only).await?,
        ))
    }

    /// Scales one job's memory and runtime (see `WorkflowSched::scale_job_resources`).
    pub async fn scale_job_resources(
        &self,
        who: &Principal,
        id: WorkflowId,
        job: JobId,
        req: ScaleRequest,
    ) -> Result<ResourcesChanged, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        let scale = ResourceScale {
            memory_factor: req.memory_factor,
            runtime_factor: req.runtime_factor,
        };
        Ok(self
            .engine
            .scale_job_resources(id, job, scale)
            .await?
            .into())
    }

    pub async fn jobs(
        &self,
        who: &Principal,
        id: WorkflowId,
        q: JobsQuery,
    ) -> Result<JobPage, ApiError> {
        self.allow(who, id, Access::Manage).await?;
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

    pub async fn results(
        &self,
        who: &Principal,
        id: WorkflowId,
        q: ResultsQuery,
    ) -> Result<ResultPage, ApiError> {
        self.allow(who, id, Access::Manage).await?;
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

    pub async fn events(
        &self,
        who: &Principal,
        id: WorkflowId,
        q: PageQuery,
    ) -> Result<EventPage, ApiError> {
        self.allow(who, id, Access::Manage).await?;
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
        who: &Principal,
        path_id: WorkflowId,
        mut req: ClaimRequest,
    ) -> Result<ClaimResponse, ApiError> {
        self.allow(who, path_id, Access::Run).await?;
        Self::check_path_id(path_id, req.workflow_id)?;
        input::claim(self.bounds(), &req)?;
        self.floods
            .note_runner(token_of(who), &req.runner_id, false)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        let _waiting = self.waiting(who, req.wait_ms)?;
        Ok(self.engine.claim(req).await?)
    }

    /// A shared runner's claim across the workflows its token lets it serve (their owners',
    /// see [`Principal::claimable_owners`]), with its wait cut to the server's maximum.
    pub async fn claim_shared(
        &self,
        who: &Principal,
        mut req: SharedClaimRequest,
    ) -> Result<ClaimResponse, ApiError> {
        let owners = who.claimable_owners(&self.auth)?;
        input::shared_claim(self.bounds(), &req)?;
        self.floods
            .note_runner(token_of(who), &req.runner_id, false)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        let _waiting = self.waiting(who, req.wait_ms)?;
        Ok(self.engine.claim_shared_for(req, owners).await?)
    }

    /// Starts and completions, answered after their commit.
    pub async fn report(
        &self,
        who: &Principal,
        path_id: WorkflowId,
        batch: ReportBatch,
    ) -> Result<ReportResponse, ApiError> {
        self.allow(who, path_id, Access::Run).await?;
        Self::check_path_id(path_id, batch.workflow_id)?;
        input::report(self.bounds(), &batch)?;
        self.floods
            .note_runner(token_of(who), &batch.runner_id, false)?;
        Ok(self.engine.report(batch).await?)
    }

    pub(crate) fn max_wait_ms(&self) -> u64 {
        u64::try_from(self.limits.max_wait.as_millis()).unwrap_or(u64::MAX)
    }

    /// A heartbeat: renews the runner's lease (in the engine) and notes it as live.
    pub async fn heartbeat(
        &self,
        who: &Principal,
        path_id: WorkflowId,
        mut req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ApiError> {
        self.allow(who, path_id, Access::Run).await?;
        Self::check_path_id(path_id, req.workflow_id)?;
        input::heartbeat(self.bounds(), &req)?;
        self.floods
            .note_runner(token_of(who), &req.runner_id, true)?;
        req.wait_ms = req.wait_ms.min(self.max_wait_ms());
        let _waiting = self.waiting(who, req.wait_ms)?;
        Ok(self.engine.heartbeat(req).await?)
    }

    /// Hands an executor the triggered actions of a workflow that it can carry out.
    pub async fn claim_actions(
        &self,
        who: &Principal,
        path_id: WorkflowId,
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, ApiError> {
        self.allow(who, path_id, Access::Run).await?;
        Self::check_path_id(path_id, req.workflow_id)?;
        input::action_claim(self.bounds(), &req)?;
        Ok(self.engine.claim_actions(req).await?)
    }

    /// Every allocation recorded for a workflow.
    pub async fn allocations(
        &self,
        who: &Principal,
        id: WorkflowId,
    ) -> Result<Vec<torc_core::alloc::Allocation>, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        Ok(self.engine.allocations(id).await?)
    }

    /// Creates a token (admins only): a random one, of which only the SHA-256 is stored; the
    /// answer is the only place the token itself ever appears.
    pub async fn create_token(
        &self,
        who: &Principal,
        req: TokenRequest,
    ) -> Result<CreatedToken, ApiError> {
        let config = self.auth.may_create_tokens(who)?;
        if !config.has_user(&req.user) {
            return Err(ApiError::unprocessable(format!(
                "user {:?} is not in the server's auth configuration",
                req.user
            )));
        }
        let scope = req
            .scope
            .map(|s| config.check_scope(s))
            .transpose()
            .map_err(|reason| ApiError::unprocessable(format!("scope: {reason}")))?;
        if let Some(torc_store::TokenScope::Workflow(id)) = &scope {
            if self.owner(*id).await?.is_none() {
                return Err(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("workflow {id} not found"),
                ));
            }
        }
        let name = match req.name {
            Some(n) => n,
            None => format!("{}-{}", req.user, auth::random_suffix()?),
        };
        input::token_name(&name)?;
        if config.has_token_named(&name) {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!("token {name:?} already exists (in the auth configuration)"),
            ));
        }
        let token = auth::new_token()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let record = TokenRecord {
            name,
            user: req.user,
            sha256: auth::hash_token(&token),
            scope,
            created_at: Timestamp(now),
        };
        let store = self.store.clone();
        let stored = record.clone();
        blocking(move || store.insert_token(&stored)).await?;
        self.auth.add_token(&record)?;
        tracing::info!(token = %record.name, user = %record.user, by = who.user().unwrap_or("local"), "token created");
        Ok(CreatedToken {
            name: record.name,
            user: record.user,
            scope: record.scope.as_ref().map(TokenScopeSpec::from),
            token,
        })
    }

    /// Every token (admins only): the configuration's, then those made through the API. Never
    /// a token or its hash.
    pub async fn list_tokens(&self, who: &Principal) -> Result<Vec<TokenInfo>, ApiError> {
        let config = self.auth.may_create_tokens(who)?;
        let mut out: Vec<TokenInfo> = config
            .tokens()
            .map(|t| TokenInfo {
                name: t.token.clone(),
                user: t.user.clone(),
                scope: t.scope.as_ref().map(TokenScopeSpec::from),
                source: "config".into(),
                created_at: None,
            })
            .collect();
        let store = self.store.clone();
        let stored = blocking(move || store.list_tokens()).await?;
        out.extend(stored.into_iter().map(|t| TokenInfo {
            scope: t.scope.as_ref().map(TokenScopeSpec::from),
            name: t.name,
            user: t.user,
            source: "api".into(),
            created_at: Some(t.created_at),
        }));
        Ok(out)
    }

    /// Revokes a token made through the API (admins only): it stops working at once. The
    /// configuration's tokens are changed in the file.
    pub async fn revoke_token(&self, who: &Principal, name: String) -> Result<(), ApiError> {
        let config = self.auth.may_create_tokens(who)?;
        if config.has_token_named(&name) {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!(
                    "token {name:?} is in the auth configuration: remove it from the file and \
                     restart the server"
                ),
            ));
        }
        let store = self.store.clone();
        let wanted = name.clone();
        let Some(record) = blocking(move || store.delete_token(&wanted)).await? else {
            return Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("token {name:?} not found"),
            ));
        };
        self.auth.remove_token(&record)?;
        tracing::info!(token = %name, by = who.user().unwrap_or("local"), "token revoked");
        Ok(())
    }

    /// Runners heard from (claim, report or heartbeat) within `within`.
    pub fn live_runners(&self, within: Duration) -> usize {
        self.floods.live_runners(within)
    }

    /// Counts a long poll of `who` while it waits (none for a call that does not wait).
    fn waiting(&self, who: &Principal, wait_ms: u64) -> Result<Option<Waiting>, ApiError> {
        if wait_ms == 0 {
            return Ok(None);
        }
        self.floods.wait(token_of(who)).map(Some)
    }

    /// The Prometheus text exposition: engine counters, then request counters.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let s = self.engine.stats();
        let counters = crate::server::metrics::EngineCounters {
            claimed_jobs: s.claimed_jobs,
            completions: s.completions,
            commits: s.commits,
            committed_requests: s.committed_requests,
            commit_micros: s.commit_micros,
        };
        crate::server::metrics::render_engine(&mut out, &counters);
        crate::server::metrics::render_gauge(
            &mut out,
            "torc_runners_live",
            "Runners that sent a heartbeat in the last 5 minutes.",
            self.live_runners(Duration::from_secs(300)) as f64,
        );
        crate::server::metrics::render_gauge(
            &mut out,
            "torc_long_polls_waiting",
            "Claims and heartbeats parked in the engine, waiting for work or their deadline.",
            s.waiting as f64,
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
