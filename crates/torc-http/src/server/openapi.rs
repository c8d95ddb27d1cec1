//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes and the wire
//! types.
//!
//! The coordinator's types are described by the mirrors in `crate::wire::schema`.

use crate::server::handlers;
use crate::wire::{self as dto, schema};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "torc",
        description = "Workflow orchestration: workflows of shell-command jobs, claimed and run \
                       by runners. Every error is `{code, message}` JSON.",
    ),
    paths(
        handlers::create_workflow,
        handlers::list_workflows,
        handlers::get_workflow,
        handlers::delete_workflow,
        handlers::workflow_status,
        handlers::cancel_workflow,
        handlers::reset_workflow,
        handlers::resume_workflow,
        handlers::list_jobs,
        handlers::list_results,
        handlers::list_events,
        handlers::wait_events,
        handlers::list_samples,
        handlers::claim,
        handlers::claim_shared,
        handlers::set_max_concurrent_jobs,
        handlers::scale_job_resources,
        handlers::report,
        handlers::heartbeat,
        handlers::claim_actions,
        handlers::list_allocations,
        handlers::create_token,
        handlers::list_tokens,
        handlers::revoke_token,
        handlers::openapi_json,
        handlers::metrics,
    ),
    components(schemas(
        dto::ErrorBody,
        dto::SpecProblem,
        dto::TokenScopeSpec,
        schema::JobStatus,
        schema::WorkflowState,
        schema::TimeSeries,
        schema::ResourceSample,
        schema::EndReason,
    )),
    tags(
        (name = "workflows", description = "Create, inspect and steer workflows"),
        (name = "runners", description = "The hot path: claims, reports, heartbeats"),
        (name = "service", description = "The document, the metrics and tokens"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Declares the bearer token that every endpoint but this document takes when the server has an
/// auth configuration.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the server's auth configuration, or one an admin created \
                         (POST /tokens). Not needed by a server without authentication.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON text.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_path() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/torc-service/v1/workflows",
            "/torc-service/v1/workflows/{id}",
            "/torc-service/v1/workflows/{id}/claim",
            "/torc-service/v1/workflows/{id}/report",
            "/torc-service/v1/workflows/{id}/heartbeat",
            "/torc-service/v1/tokens",
            "/torc-service/v1/workflows/{id}/events/wait",
            "/torc-service/v1/workflows/{id}/samples",
        ] {
            assert!(paths.contains_key(p), "missing {p}");
        }
        let bearer = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(bearer["scheme"], "bearer", "{bearer}");
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        let public = &doc["paths"]["/torc-service/v1/openapi.json"]["get"]["security"];
        assert_eq!(
            public,
            &serde_json::json!([{}]),
            "the document needs no token"
        );
    }
}
