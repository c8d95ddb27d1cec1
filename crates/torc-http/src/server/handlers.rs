//! The HTTP handlers: extract, call [`Service`], wrap the answer. Nothing else happens here.
//!
//! Every handler but the OpenAPI document's takes the caller's [`Principal`] first, so that a
//! request without a valid token is answered 401 before anything else is read.

use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::server::peer::{unless_gone, Peer};
use crate::server::service::{spec_format, Service};
use crate::wire::schema;
use crate::wire::{
    CapRequest, CreatedToken, CreatedWorkflow, ErrorBody, EventBatch, EventPage, EventsWaitQuery,
    JobPage, JobsQuery, PageQuery, ResetRequest, ResourcesChanged, ResultPage, ResultsQuery,
    SamplePage, SamplesQuery, ScaleRequest, SpecQuery, TokenInfo, TokenRequest, Workflow,
    WorkflowStatus,
};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use torc_core::api::{
    ActionClaimRequest, ClaimRequest, HeartbeatRequest, ReportBatch, SharedClaimRequest,
};
use torc_core::{JobId, WorkflowId};

type Svc = web::Data<Service>;
type Answer = Result<HttpResponse, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> Answer {
    Ok(HttpResponse::Ok().json(value))
}

/// The connection of a request that may wait, to notice when its caller goes away.
fn watch(http: &HttpRequest, wait_ms: u64) -> Option<Peer> {
    (wait_ms > 0)
        .then(|| http.conn_data::<Peer>().cloned())
        .flatten()
}

/// A long poll's answer, or (its caller gone, nobody to read it) an error.
fn gone<T>(answer: Option<Result<T, ApiError>>) -> Result<T, ApiError> {
    answer.unwrap_or_else(|| Err(ApiError::bad_request("the caller closed its connection")))
}

/// Create a workflow from a spec (YAML, JSON or JSON5 text).
#[utoipa::path(
    post, path = "/torc-service/v1/workflows", tag = "workflows",
    params(
        SpecQuery,
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes a retry safe: a creation sent again by the same user with the same \
                        key gets the first one's answer; the key reused for another spec is 422"),
    ),
    request_body(content = String, content_type = "application/yaml",
                 description = "The spec; the format comes from `?format=`, else Content-Type"),
    responses(
        (status = 201, description = "Created", body = CreatedWorkflow),
        (status = 400, description = "Not UTF-8, unknown format", body = ErrorBody),
        (status = 413, description = "Spec over the size limit", body = ErrorBody),
        (status = 422, description = "Invalid spec; `errors` lists every problem", body = ErrorBody),
    )
)]
pub async fn create_workflow(
    who: Principal,
    svc: Svc,
    req: HttpRequest,
    q: web::Query<SpecQuery>,
    body: web::Bytes,
) -> Answer {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = spec_format(q.format.as_deref(), content_type)?;
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?
                .to_string(),
        ),
    };
    let created = svc.create_workflow(&who, body.into(), format, key).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Every workflow, oldest first.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows", tag = "workflows",
    responses((status = 200, body = Vec<Workflow>))
)]
pub async fn list_workflows(who: Principal, svc: Svc) -> Answer {
    ok(svc.list_workflows(&who).await?)
}

/// One workflow.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses((status = 200, body = Workflow), (status = 404, body = ErrorBody))
)]
pub async fn get_workflow(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    ok(svc.workflow(&who, WorkflowId(*id)).await?)
}

/// Delete a workflow and everything recorded about it.
#[utoipa::path(
    delete, path = "/torc-service/v1/workflows/{id}", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
pub async fn delete_workflow(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    svc.delete_workflow(&who, WorkflowId(*id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Job counts by state, the workflow's state and run.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/status", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses((status = 200, body = WorkflowStatus), (status = 404, body = ErrorBody))
)]
pub async fn workflow_status(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    ok(svc.status(&who, WorkflowId(*id)).await?)
}

/// Cancel: no more claims; ready, blocked and pending jobs are canceled.
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/cancel", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses((status = 200, body = WorkflowStatus), (status = 404, body = ErrorBody))
)]
pub async fn cancel_workflow(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    ok(svc.cancel(&who, WorkflowId(*id)).await?)
}

/// Start a new run of failed, canceled and terminated jobs (or of every job).
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/reset", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body(content = ResetRequest, description = "May be empty: a full reset"),
    responses(
        (status = 200, body = WorkflowStatus),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Jobs are pending or running", body = ErrorBody),
    )
)]
pub async fn reset_workflow(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    body: web::Bytes,
) -> Answer {
    let req = ResetRequest::from_body(&body)?;
    ok(svc.reset(&who, WorkflowId(*id), req.failed_only).await?)
}

/// Put interrupted jobs back in play (after a crash or a lost runner).
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/resume", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses((status = 200, body = WorkflowStatus), (status = 404, body = ErrorBody))
)]
pub async fn resume_workflow(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    ok(svc.resume(&who, WorkflowId(*id)).await?)
}

/// A page of jobs in id order.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/jobs", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id"), JobsQuery),
    responses(
        (status = 200, body = JobPage),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn list_jobs(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    q: web::Query<JobsQuery>,
) -> Answer {
    ok(svc.jobs(&who, WorkflowId(*id), q.into_inner()).await?)
}

/// A page of results (one per attempt), in the order recorded.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/results", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id"), ResultsQuery),
    responses(
        (status = 200, body = ResultPage),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn list_results(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    q: web::Query<ResultsQuery>,
) -> Answer {
    ok(svc.results(&who, WorkflowId(*id), q.into_inner()).await?)
}

/// A page of the event log, oldest first.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/events", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id"), PageQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn list_events(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Answer {
    ok(svc.events(&who, WorkflowId(*id), q.into_inner()).await?)
}

/// The event log as it grows (long poll): the events after `after`; when there are none yet,
/// waits up to `wait_ms` for the next ones. Answered at once when the workflow is no longer
/// active. Follow it by asking again with `after=next_after`.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/events/wait", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id"), EventsWaitQuery),
    responses(
        (status = 200, body = EventBatch),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn wait_events(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    q: web::Query<EventsWaitQuery>,
) -> Answer {
    ok(svc
        .events_after(&who, WorkflowId(*id), q.into_inner())
        .await?)
}

/// A page of the time-series samples of resource use (`resource_monitor` with `granularity:
/// time_series`), of every job and node, one job's, or (`nodes=true`) the nodes' only.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/samples", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id"), SamplesQuery),
    responses(
        (status = 200, body = SamplePage),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn list_samples(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    q: web::Query<SamplesQuery>,
) -> Answer {
    ok(svc.samples(&who, WorkflowId(*id), q.into_inner()).await?)
}

/// Claim ready jobs; when none fits, wait up to `wait_ms` (long poll).
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/claim", tag = "runners",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body = schema::ClaimRequest,
    responses(
        (status = 200, body = schema::ClaimResponse),
        (status = 400, description = "Malformed, or ids that disagree", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Out-of-range limit or runner id", body = ErrorBody),
    )
)]
pub async fn claim(
    who: Principal,
    svc: Svc,
    http: HttpRequest,
    id: web::Path<i64>,
    req: web::Json<ClaimRequest>,
) -> Answer {
    let req = req.into_inner();
    let peer = watch(&http, req.wait_ms);
    ok(gone(
        unless_gone(peer.as_ref(), svc.claim(&who, WorkflowId(*id), req)).await,
    )?)
}

/// A shared runner claims jobs of any workflow it may serve, picked fairly: the workflow with
/// the fewest jobs in flight first, then priority, then the one waiting longest. When none fits,
/// waits up to `wait_ms` (long poll).
#[utoipa::path(
    post, path = "/torc-service/v1/runners/claim", tag = "runners",
    request_body = schema::SharedClaimRequest,
    responses(
        (status = 200, body = schema::ClaimResponse),
        (status = 400, body = ErrorBody),
        (status = 422, description = "Out-of-range limit or runner id", body = ErrorBody),
    )
)]
pub async fn claim_shared(
    who: Principal,
    svc: Svc,
    http: HttpRequest,
    req: web::Json<SharedClaimRequest>,
) -> Answer {
    let req = req.into_inner();
    let peer = watch(&http, req.wait_ms);
    ok(gone(
        unless_gone(peer.as_ref(), svc.claim_shared(&who, req)).await,
    )?)
}

/// Change the workflow's cap on jobs in flight (null: no cap).
#[utoipa::path(
    put, path = "/torc-service/v1/workflows/{id}/max_concurrent_jobs", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body = CapRequest,
    responses(
        (status = 200, body = WorkflowStatus),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn set_max_concurrent_jobs(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    req: web::Json<CapRequest>,
) -> Answer {
    ok(svc
        .set_max_concurrent_jobs(&who, WorkflowId(*id), req.max_concurrent_jobs)
        .await?)
}

/// Scale one job's memory and runtime (and timeout) by factors; a resource requirement it
/// shares with other jobs is copied for it, not changed for them. Refused (409) while the job
/// is pending or running.
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/jobs/{job}/scale_resources", tag = "workflows",
    params(
        ("id" = i64, Path, description = "Workflow id"),
        ("job" = u32, Path, description = "Job id"),
    ),
    request_body = ScaleRequest,
    responses(
        (status = 200, body = ResourcesChanged),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn scale_job_resources(
    who: Principal,
    svc: Svc,
    path: web::Path<(i64, u32)>,
    req: web::Json<ScaleRequest>,
) -> Answer {
    let (id, job) = *path;
    ok(svc
        .scale_job_resources(&who, WorkflowId(id), JobId(job), req.into_inner())
        .await?)
}

/// Report starts and completions; answered once they are durable.
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/report", tag = "runners",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body = schema::ReportBatch,
    responses(
        (status = 200, body = schema::ReportResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
    )
)]
pub async fn report(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    batch: web::Json<ReportBatch>,
) -> Answer {
    ok(svc
        .report(&who, WorkflowId(*id), batch.into_inner())
        .await?)
}

/// A runner is alive and holds these jobs: renews its lease on them. Answered at once when some
/// of them are no longer the runner's, else when the workflow stops being active or after
/// `wait_ms` (capped by the server, below a third of the lease).
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/heartbeat", tag = "runners",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body = schema::HeartbeatRequest,
    responses(
        (status = 200, body = schema::HeartbeatResponse),
        (status = 400, description = "Malformed, or ids that disagree", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Out-of-range runner id", body = ErrorBody),
    )
)]
pub async fn heartbeat(
    who: Principal,
    svc: Svc,
    http: HttpRequest,
    id: web::Path<i64>,
    req: web::Json<HeartbeatRequest>,
) -> Answer {
    let req = req.into_inner();
    let peer = watch(&http, req.wait_ms);
    let answer = unless_gone(peer.as_ref(), svc.heartbeat(&who, WorkflowId(*id), req)).await;
    ok(gone(answer)?)
}

/// An executor of workflow actions (`torc submit`, a runner, a server with `--execute-actions`)
/// takes the triggered actions it can carry out: each goes to one executor (a persistent one to
/// each that asks), and the claim is durable before the answer.
#[utoipa::path(
    post, path = "/torc-service/v1/workflows/{id}/actions/claim", tag = "runners",
    params(("id" = i64, Path, description = "Workflow id")),
    request_body = Object,
    responses(
        (status = 200, description = "The actions claimed and the workflow's state", body = Object),
        (status = 400, description = "Malformed, or ids that disagree", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Out-of-range executor id", body = ErrorBody),
    )
)]
pub async fn claim_actions(
    who: Principal,
    svc: Svc,
    id: web::Path<i64>,
    req: web::Json<ActionClaimRequest>,
) -> Answer {
    ok(svc
        .claim_actions(&who, WorkflowId(*id), req.into_inner())
        .await?)
}

/// The allocations (batch jobs) recorded for a workflow's schedulers, oldest first: who
/// requested each, its batch job id, state and times.
#[utoipa::path(
    get, path = "/torc-service/v1/workflows/{id}/allocations", tag = "workflows",
    params(("id" = i64, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "Every allocation of the workflow", body = Object),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn list_allocations(who: Principal, svc: Svc, id: web::Path<i64>) -> Answer {
    ok(svc.allocations(&who, WorkflowId(*id)).await?)
}

/// Create a bearer token (admins only). The token is in this answer and nowhere else: the
/// server stores its SHA-256.
#[utoipa::path(
    post, path = "/torc-service/v1/tokens", tag = "service",
    request_body = TokenRequest,
    responses(
        (status = 201, body = CreatedToken),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin, or a runner token", body = ErrorBody),
        (status = 409, description = "A token of that name exists", body = ErrorBody),
        (status = 422, description = "Unknown user or group, bad scope, no authentication configured", body = ErrorBody),
    )
)]
pub async fn create_token(who: Principal, svc: Svc, req: web::Json<TokenRequest>) -> Answer {
    let created = svc.create_token(&who, req.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Every token (admins only): names, users and scopes, never a token or its hash.
#[utoipa::path(
    get, path = "/torc-service/v1/tokens", tag = "service",
    responses(
        (status = 200, body = Vec<TokenInfo>),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin, or a runner token", body = ErrorBody),
    )
)]
pub async fn list_tokens(who: Principal, svc: Svc) -> Answer {
    ok(svc.list_tokens(&who).await?)
}

/// Revoke a token made through the API (admins only); it stops working at once.
#[utoipa::path(
    delete, path = "/torc-service/v1/tokens/{name}", tag = "service",
    params(("name" = String, Path, description = "Token name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Not an admin, or a runner token", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A token of the auth configuration", body = ErrorBody),
    )
)]
pub async fn revoke_token(who: Principal, svc: Svc, name: web::Path<String>) -> Answer {
    svc.revoke_token(&who, name.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// This document.
#[utoipa::path(
    get, path = "/torc-service/v1/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub async fn openapi_json(doc: web::Data<OpenApiText>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// Counters in the Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition", body = String))
)]
pub async fn metrics(_who: Principal, svc: Svc) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(svc.metrics_text())
}

/// The OpenAPI document, rendered once.
pub struct OpenApiText(pub String);

/// The routes under `/torc-service/v1`, with the body limits of `limits`.
pub fn routes(cfg: &mut web::ServiceConfig, limits: &crate::Limits) {
    let report_json = crate::server::error::json_config(limits.report_bytes);
    // The runners' routes first: actix tries patterns in the order registered, each with a
    // regular expression, and these take nearly every request (a report was matched after
    // sixteen others).
    cfg.route("/workflows/{id}/claim", web::post().to(claim))
        .service(
            web::resource("/workflows/{id}/report")
                .app_data(report_json.clone())
                .route(web::post().to(report)),
        )
        .service(
            // A heartbeat lists every job its runner holds: as large as a report can be.
            web::resource("/workflows/{id}/heartbeat")
                .app_data(report_json)
                .route(web::post().to(heartbeat)),
        )
        .route("/runners/claim", web::post().to(claim_shared));
    cfg.service(
        web::resource("/workflows")
            .app_data(web::PayloadConfig::new(limits.spec_bytes))
            .route(web::get().to(list_workflows))
            .route(web::post().to(create_workflow)),
    )
    .service(
        web::resource("/workflows/{id}")
            .route(web::get().to(get_workflow))
            .route(web::delete().to(delete_workflow)),
    )
    .route("/workflows/{id}/status", web::get().to(workflow_status))
    .route("/workflows/{id}/cancel", web::post().to(cancel_workflow))
    .route("/workflows/{id}/reset", web::post().to(reset_workflow))
    .route("/workflows/{id}/resume", web::post().to(resume_workflow))
    .route("/workflows/{id}/jobs", web::get().to(list_jobs))
    .route(
        "/workflows/{id}/jobs/{job}/scale_resources",
        web::post().to(scale_job_resources),
    )
    .route("/workflows/{id}/results", web::get().to(list_results))
    .route("/workflows/{id}/events", web::get().to(list_events))
    .route(
        "/workflows/{id}/allocations",
        web::get().to(list_allocations),
    )
    .route("/workflows/{id}/events/wait", web::get().to(wait_events))
    .route("/workflows/{id}/samples", web::get().to(list_samples))
    .route(
        "/workflows/{id}/max_concurrent_jobs",
        web::put().to(set_max_concurrent_jobs),
    )
    .route(
        "/workflows/{id}/actions/claim",
        web::post().to(claim_actions),
    )
    .service(
        web::resource("/tokens")
            .route(web::get().to(list_tokens))
            .route(web::post().to(create_token)),
    )
    .route("/tokens/{name}", web::delete().to(revoke_token))
    .route("/openapi.json", web::get().to(openapi_json));
}
