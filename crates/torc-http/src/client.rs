//! [`HttpClient`]: every endpoint of the server as a method, and the runner's [`Coordinator`]
//! over HTTP, so that a runner talks to a server exactly as it talks to the in-process engine.

use crate::wire::{
    CapRequest, CreatedToken, CreatedWorkflow, ErrorBody, EventBatch, EventPage, JobPage,
    ResetRequest, ResourcesChanged, ResultPage, SamplePage, ScaleRequest, SpecProblem, TokenInfo,
    TokenRequest, Workflow, WorkflowStatus,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;
use torc_core::api::{
    ActionClaimRequest, ActionClaimResponse, ClaimRequest, ClaimResponse, Coordinator,
    CoordinatorError, ErrorCode, HeartbeatRequest, HeartbeatResponse, ReportBatch, ReportResponse,
    SharedClaimRequest,
};
use torc_core::spec::SpecFormat;
use torc_core::{JobId, JobStatus, WorkflowId};

/// The path under which the API lives.
pub const API_PREFIX: &str = "/torc-service/v1";

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `http://HOST:PORT[/torc-service/v1]`.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    /// No answer: connection refused or reset, timeout.
    #[error("no answer from {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{url}: {status}: {}: {message}", code.name())]
    Api {
        url: String,
        status: u16,
        code: ErrorCode,
        message: String,
        /// For an invalid spec: every problem.
        errors: Vec<SpecProblem>,
    },
    /// The token cannot be sent in an HTTP header (a control character, say).
    #[error("invalid token: it must be printable ASCII without spaces")]
    InvalidToken,
    /// No random idempotency key could be drawn.
    #[error("the system gave no randomness for an idempotency key")]
    NoRandomness,
    /// The server answered success with a body that does not read as expected.
    #[error("unexpected answer from {url}: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error as a runner sees it: no answer, a server-side failure (5xx), a request timeout
    /// (408) or a throttle (429) may be retried; another refusal (4xx) or an answer that cannot
    /// be read is final.
    pub fn to_coordinator_error(&self) -> CoordinatorError {
        match self {
            ClientError::Transport { .. } => CoordinatorError::Unavailable {
                message: self.to_string(),
            },
            ClientError::Api { status, code, .. } => {
                // 408: the server gave up receiving the request (a loaded machine); 429: it
                // asked to be called later. Neither is a verdict on the request itself.
                if *status >= 500 || matches!(*status, 408 | 429) {
                    CoordinatorError::Unavailable {
                        message: self.to_string(),
                    }
                } else {
                    CoordinatorError::Rejected {
                        code: *code,
                        message: self.to_string(),
                    }
                }
            }
            ClientError::InvalidUrl { .. }
            | ClientError::InvalidToken
            | ClientError::NoRandomness
            | ClientError::Decode { .. } => CoordinatorError::Rejected {
                code: ErrorCode::Internal,
                message: self.to_string(),
            },
        }
    }
}

/// The code that a status stands for when the body does not say.
fn code_of_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        429 => ErrorCode::TooManyRequests,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidInput,
    }
}

/// A client of one torc server. Cheap to clone (connections are pooled and kept alive).
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    /// `http://HOST:PORT/torc-service/v1`
    api: String,
    /// `http://HOST:PORT`
    root: String,
    timeout: Duration,
    /// `Bearer TOKEN`, sent with every request when set.
    authorization: Option<reqwest::header::HeaderValue>,
}

/// Times [`HttpClient::create_workflow`] sends a creation before it gives up.
pub const CREATE_ATTEMPTS: u32 = 4;

/// A random idempotency key (128 bits, hex); `None` when the system has no randomness.
pub fn new_idempotency_key() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A failure a retry may mend: no answer, or the server unavailable for now.
fn worth_retrying(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        ClientError::Api { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

/// How much longer than its `wait_ms` a claim may take before the client gives up.
const CLAIM_GRACE: Duration = Duration::from_secs(30);

impl HttpClient {
    /// The default timeout of every request but claims (which wait `wait_ms` plus a grace).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A client of the server at `url`: `http://HOST:PORT`, optionally followed by
    /// `/torc-service/v1`.
    pub fn new(url: &str) -> Result<HttpClient, ClientError> {
        let trimmed = url.trim().trim_end_matches('/');
        let root = trimmed.strip_suffix(API_PREFIX).unwrap_or(trimmed);
        let invalid = |reason| ClientError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let Some(host) = root.strip_prefix("http://") else {
            return Err(invalid("expected http://HOST:PORT"));
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("expected http://HOST:PORT"));
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|_| invalid("the HTTP client could not be built"))?;
        Ok(HttpClient {
            http,
            api: format!("{root}{API_PREFIX}"),
            root: root.to_string(),
            timeout: Self::DEFAULT_TIMEOUT,
            authorization: None,
        })
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: &str) -> Result<HttpClient, ClientError> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidToken);
        }
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidToken)?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// The same client with another default request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    /// `http://HOST:PORT/torc-service/v1`
    pub fn api_url(&self) -> &str {
        &self.api
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.request_with_timeout(method, url, self.timeout)
    }

    fn request_with_timeout(&self, method: Method, url: &str, timeout: Duration) -> RequestBuilder {
        let rb = self.http.request(method, url).timeout(timeout);
        match &self.authorization {
            Some(v) => rb.header(reqwest::header::AUTHORIZATION, v.clone()),
            None => rb,
        }
    }

    async fn send_raw(&self, rb: RequestBuilder, url: &str) -> Result<Vec<u8>, ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let res = rb.send().await.map_err(transport)?;
        let status = res.status();
        let body = res.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(body.into());
        }
        let (code, message, errors) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.code, e.message, e.errors),
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(500).collect();
                (code_of_status(status), text, Vec::new())
            }
        };
        Err(ClientError::Api {
            url: url.to_string(),
            status: status.as_u16(),
            code,
            message,
            errors,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        rb: RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let body = self.send_raw(rb, url).await?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, url: String) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, &url), &url).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        url: String,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, &url).json(body), &url)
            .await
    }

    fn workflow_url(&self, id: WorkflowId, rest: &str) -> String {
        format!("{}/workflows/{id}{rest}", self.api)
    }

    /// Creates a workflow from spec text, with a new idempotency key: when no answer comes (or
    /// the server is unavailable) the creation is sent again with the same key, and the server
    /// answers a retry with the workflow the first attempt made, never a second one.
    pub async fn create_workflow(
        &self,
        spec: impl Into<String>,
        format: SpecFormat,
    ) -> Result<CreatedWorkflow, ClientError> {
        let key = new_idempotency_key().ok_or(ClientError::NoRandomness)?;
        self.create_workflow_with_key(spec, format, &key).await
    }

    /// Creates a workflow from spec text under the idempotency key `key` (1 to 255 printable
    /// ASCII characters): sending the same spec with the same key again, now or after a crash,
    /// gets the first creation's answer. Retried with it up to [`CREATE_ATTEMPTS`] times when
    /// no answer comes or the server is unavailable (502, 503, 504).
    pub async fn create_workflow_with_key(
        &self,
        spec: impl Into<String>,
        format: SpecFormat,
        key: &str,
    ) -> Result<CreatedWorkflow, ClientError> {
        let (name, mime) = match format {
            SpecFormat::Yaml => ("yaml", "application/yaml"),
            SpecFormat::Json => ("json", "application/json"),
            SpecFormat::Json5 => ("json5", "application/json5"),
            SpecFormat::Kdl => ("kdl", "application/kdl"),
        };
        let url = format!("{}/workflows", self.api);
        let spec = spec.into();
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let rb = self
                .request(Method::POST, &url)
                .query(&[("format", name)])
                .header(reqwest::header::CONTENT_TYPE, mime)
                .header("idempotency-key", key)
                .body(spec.clone());
            match self.send(rb, &url).await {
                Err(e) if attempt < CREATE_ATTEMPTS && worth_retrying(&e) => {
                    tracing::warn!(error = %e, attempt, "creating the workflow again, same key");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    /// Creates a token (admins only); the answer holds the token, which the server does not keep.
    pub async fn create_token(&self, req: &TokenRequest) -> Result<CreatedToken, ClientError> {
        self.post(format!("{}/tokens", self.api), req).await
    }

    /// Every token, without the tokens themselves (admins only).
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get(format!("{}/tokens", self.api)).await
    }

    /// Revokes a token made through the API (admins only).
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}/tokens/", self.api)).map_err(|_| {
            ClientError::InvalidUrl {
                url: self.api.clone(),
                reason: "cannot add a token name to it",
            }
        })?;
        url.path_segments_mut()
            .map_err(|_| ClientError::InvalidUrl {
                url: self.api.clone(),
                reason: "cannot add a token name to it",
            })?
            .pop_if_empty()
            .push(name);
        let url = url.to_string();
        self.send_raw(self.request(Method::DELETE, &url), &url)
            .await
            .map(drop)
    }

    pub async fn list_workflows(&self) -> Result<Vec<Workflow>, ClientError> {
        self.get(format!("{}/workflows", self.api)).await
    }

    pub async fn workflow(&self, id: WorkflowId) -> Result<Workflow, ClientError> {
        self.get(self.workflow_url(id, "")).await
    }

    pub async fn delete_workflow(&self, id: WorkflowId) -> Result<(), ClientError> {
        let url = self.workflow_url(id, "");
        self.send_raw(self.request(Method::DELETE, &url), &url)
            .await
            .map(drop)
    }

    pub async fn status(&self, id: WorkflowId) -> Result<WorkflowStatus, ClientError> {
        self.get(self.workflow_url(id, "/status")).await
    }

    pub async fn cancel(&self, id: WorkflowId) -> Result<WorkflowStatus, ClientError> {
        self.post(self.workflow_url(id, "/cancel"), &serde_json::json!({}))
            .await
    }

    pub async fn resume(&self, id: WorkflowId) -> Result<WorkflowStatus, ClientError> {
        self.post(self.workflow_url(id, "/resume"), &serde_json::json!({}))
            .await
    }

    /// Starts a new run of failed, canceled and terminated jobs (`failed_only`) or of all jobs.
    pub async fn reset(
        &self,
        id: WorkflowId,
        failed_only: bool,
    ) -> Result<WorkflowStatus, ClientError> {
        self.post(
            self.workflow_url(id, "/reset"),
            &ResetRequest { failed_only },
        )
        .await
    }

    /// A page of jobs; `limit` is capped by the server.
    pub async fn jobs(
        &self,
        id: WorkflowId,
        status: Option<JobStatus>,
        offset: u64,
        limit: u64,
    ) -> Result<JobPage, ClientError> {
        let url = self.workflow_url(id, "/jobs");
        let mut query = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
        if let Some(s) = status {
            query.push(("status", s.name().to_string()));
        }
        self.send(self.request(Method::GET, &url).query(&query), &url)
            .await
    }

    /// A page of results, optionally of one job.
    pub async fn results(
        &self,
        id: WorkflowId,
        job: Option<JobId>,
        offset: u64,
        limit: u64,
    ) -> Result<ResultPage, ClientError> {
        let url = self.workflow_url(id, "/results");
        let mut query = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
        if let Some(j) = job {
            query.push(("job", j.0.to_string()));
        }
        self.send(self.request(Method::GET, &url).query(&query), &url)
            .await
    }

    /// A page of the event log.
    pub async fn events(
        &self,
        id: WorkflowId,
        offset: u64,
        limit: u64,
    ) -> Result<EventPage, ClientError> {
        let url = self.workflow_url(id, "/events");
        let query = [("offset", offset), ("limit", limit)];
        self.send(self.request(Method::GET, &url).query(&query), &url)
            .await
    }

    /// The events after `after` (an event id, 0 for all); when none, the server waits up to
    /// `wait` for some (long poll). The request's own timeout is stretched to cover the wait.
    pub async fn wait_events(
        &self,
        id: WorkflowId,
        after: i64,
        wait: Duration,
        limit: u64,
    ) -> Result<EventBatch, ClientError> {
        let url = self.workflow_url(id, "/events/wait");
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let query = [
            ("after", after.to_string()),
            ("wait_ms", wait_ms.to_string()),
            ("limit", limit.to_string()),
        ];
        let rb = self
            .request_with_timeout(Method::GET, &url, self.timeout.saturating_add(wait))
            .query(&query);
        self.send(rb, &url).await
    }

    /// A page of time-series samples: of one job, of the nodes only, or (neither) all.
    pub async fn samples(
        &self,
        id: WorkflowId,
        job: Option<JobId>,
        nodes_only: bool,
        offset: u64,
        limit: u64,
    ) -> Result<SamplePage, ClientError> {
        let url = self.workflow_url(id, "/samples");
        let mut query = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
        if let Some(j) = job {
            query.push(("job", j.0.to_string()));
        }
        if nodes_only {
            query.push(("nodes", "true".to_string()));
        }
        self.send(self.request(Method::GET, &url).query(&query), &url)
            .await
    }

    /// The server's OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get(format!("{}/openapi.json", self.api)).await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.root);
        let body = self.send_raw(self.request(Method::GET, &url), &url).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A claim, with a timeout longer than its `wait_ms`.
    pub async fn claim_jobs(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        let url = self.workflow_url(req.workflow_id, "/claim");
        self.long_poll(&url, req, req.wait_ms).await
    }

    /// A POST whose answer may wait up to `wait_ms` at the server: its timeout covers the wait.
    async fn long_poll<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        wait_ms: u64,
    ) -> Result<T, ClientError> {
        let timeout = self
            .timeout
            .max(Duration::from_millis(wait_ms).saturating_add(CLAIM_GRACE));
        let rb = self
            .request_with_timeout(Method::POST, url, timeout)
            .json(body);
        self.send(rb, url).await
    }

    pub async fn report_batch(&self, batch: &ReportBatch) -> Result<ReportResponse, ClientError> {
        self.post(self.workflow_url(batch.workflow_id, "/report"), batch)
            .await
    }

    /// A shared runner's claim, with a timeout longer than its `wait_ms`.
    pub async fn claim_shared_jobs(
        &self,
        req: &SharedClaimRequest,
    ) -> Result<ClaimResponse, ClientError> {
        let url = format!("{}/runners/claim", self.api);
        self.long_poll(&url, req, req.wait_ms).await
    }

    /// Changes a workflow's cap on jobs in flight (`None`: no cap).
    pub async fn set_max_concurrent_jobs(
        &self,
        id: WorkflowId,
        cap: Option<u32>,
    ) -> Result<WorkflowStatus, ClientError> {
        let url = self.workflow_url(id, "/max_concurrent_jobs");
        let body = CapRequest {
            max_concurrent_jobs: cap,
        };
        self.send(self.request(Method::PUT, &url).json(&body), &url)
            .await
    }

    /// Scales one job's memory and runtime (and timeout) by factors.
    pub async fn scale_job_resources(
        &self,
        id: WorkflowId,
        job: JobId,
        req: ScaleRequest,
    ) -> Result<ResourcesChanged, ClientError> {
        let url = self.workflow_url(id, &format!("/jobs/{job}/scale_resources"));
        self.send(self.request(Method::POST, &url).json(&req), &url)
            .await
    }

    /// Takes the triggered actions of a workflow that this executor can carry out.
    pub async fn claim_actions(
        &self,
        req: &ActionClaimRequest,
    ) -> Result<ActionClaimResponse, ClientError> {
        let url = self.workflow_url(req.workflow_id, "/actions/claim");
        self.send(self.request(Method::POST, &url).json(req), &url)
            .await
    }

    /// Every allocation recorded for workflow `id`, oldest first.
    pub async fn allocations(
        &self,
        id: WorkflowId,
    ) -> Result<Vec<torc_core::alloc::Allocation>, ClientError> {
        let url = self.workflow_url(id, "/allocations");
        self.send(self.request(Method::GET, &url), &url).await
    }

    /// A heartbeat, with a timeout longer than its `wait_ms`.
    pub async fn send_heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        let url = self.workflow_url(req.workflow_id, "/heartbeat");
        self.long_poll(&url, req, req.wait_ms).await
    }
}

impl Coordinator for HttpClient {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        self.claim_jobs(&req)
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn report(&self, batch: ReportBatch) -> Result<ReportResponse, CoordinatorError> {
        self.report_batch(&batch)
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        self.send_heartbeat(&req)
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn claim_shared(
        &self,
        req: SharedClaimRequest,
    ) -> Result<ClaimResponse, CoordinatorError> {
        self.claim_shared_jobs(&req)
            .await
            .map_err(|e| e.to_coordinator_error())
    }

    async fn claim_actions(
        &self,
        req: ActionClaimRequest,
    ) -> Result<ActionClaimResponse, CoordinatorError> {
        HttpClient::claim_actions(self, &req)
            .await
            .map_err(|e| e.to_coordinator_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let c = HttpClient::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(c.api_url(), "http://127.0.0.1:8080/torc-service/v1");
        let c = HttpClient::new("http://localhost:1/torc-service/v1/").unwrap();
        assert_eq!(c.api_url(), "http://localhost:1/torc-service/v1");
        assert!(HttpClient::new("https://x").is_err());
        assert!(HttpClient::new("127.0.0.1:80").is_err());
        assert!(HttpClient::new("http://h/other").is_err());
        let c = HttpClient::new("http://127.0.0.1:1").unwrap();
        assert!(c.clone().with_token("torc_abc").is_ok());
        for bad in ["", "a b", "a\nb", "é"] {
            assert!(
                matches!(c.clone().with_token(bad), Err(ClientError::InvalidToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refusals_and_outages() {
        let api = |status| ClientError::Api {
            url: "u".into(),
            status,
            code: ErrorCode::Conflict,
            message: "m".into(),
            errors: Vec::new(),
        };
        assert!(matches!(
            api(409).to_coordinator_error(),
            CoordinatorError::Rejected {
                code: ErrorCode::Conflict,
                ..
            }
        ));
        assert!(api(503).to_coordinator_error().is_transient());
        assert!(api(408).to_coordinator_error().is_transient());
        assert!(!api(400).to_coordinator_error().is_transient());
        assert_eq!(code_of_status(StatusCode::NOT_FOUND), ErrorCode::NotFound);
        assert_eq!(code_of_status(StatusCode::BAD_GATEWAY), ErrorCode::Internal);
    }
}
