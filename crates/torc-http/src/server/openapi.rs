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
    modifiers(&BearerAuth, &CommonErrors),
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

/// The errors any operation may answer besides those its handler lists, each with an
/// `ErrorBody`: a malformed request (400), a token missing or refused (401, 403; 403 is also a
/// cross-site request refused without authentication), a missing workflow or token (404), a
/// body too large, not declared JSON or YAML, or of the wrong shape (413, 415, 422), a caller
/// over its share of runners and long polls (429), storage unavailable (503).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.ends_with("/openapi.json") {
                continue;
            }
            let names_one = path.contains('{');
            let runner = ["/claim", "/heartbeat", "/report"]
                .iter()
                .any(|end| path.ends_with(end));
            let tokens = path.contains("/tokens");
            let operations = [
                (&mut item.get, false),
                (&mut item.delete, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
            ];
            for (operation, with_body) in operations {
                let Some(op) = operation.as_mut() else {
                    continue;
                };
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                };
                add("400", "Malformed request (path, query or body)");
                add("401", "No token, or one the server does not know");
                add(
                    "403",
                    "Not allowed to this token, or a cross-site request refused by a server \
                     without authentication",
                );
                if names_one {
                    add("404", "No such workflow or token (or not the caller's)");
                }
                if with_body {
                    add("413", "Body over its limit");
                    add(
                        "415",
                        "Without authentication: the body is not declared JSON or YAML",
                    );
                }
                if with_body || tokens {
                    add("422", "Well-formed but invalid");
                }
                if runner {
                    add(
                        "429",
                        "The caller holds as many runners or long polls as allowed",
                    );
                }
                add("503", "Storage unavailable or the engine stopping; retry");
            }
        }
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
        let claim = &doc["paths"]["/torc-service/v1/workflows/{id}/claim"]["post"]["responses"];
        for status in [
            "400", "401", "403", "404", "413", "415", "422", "429", "503",
        ] {
            assert_eq!(
                claim[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}"
            );
        }
        let public = &doc["paths"]["/torc-service/v1/openapi.json"]["get"]["security"];
        assert_eq!(
            public,
            &serde_json::json!([{}]),
            "the document needs no token"
        );
    }
}
