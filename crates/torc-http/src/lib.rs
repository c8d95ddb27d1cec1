//! The HTTP layer of torc: a REST server (actix-web) in front of the engine, and its client.
//!
//! The server ([`Server`], [`serve`]) owns one [`torc_engine::EngineHandle`] and one
//! [`torc_store::Store`]; everything under `/torc-service/v1` is JSON. Workflows are created from
//! spec text, listed, inspected, canceled, reset, resumed and deleted; runners claim jobs
//! (long-poll: an idle claim is answered as soon as a job becomes ready) and report starts and
//! completions, group-committed by the engine and answered only after their commit. The OpenAPI
//! 3 document is generated from the handlers (`server::openapi`); `/metrics` speaks Prometheus.
//!
//! Authentication and authorization live in [`server::auth`]: a [`Principal`] per request from its
//! bearer token, and every decision of who may see, change or run which workflow. Without an
//! auth configuration the server trusts every caller and listens on loopback only.
//!
//! [`HttpClient`] has a method for every endpoint and implements
//! [`torc_core::api::Coordinator`], so a runner cannot tell it from the in-process engine.
//!
//! Layout, with imports running one way (a test checks it): [`wire`] holds the JSON types and
//! their OpenAPI schemas and imports nothing of the server; [`server`] (routes, handlers,
//! service, auth, errors, metrics, the OpenAPI document) sits above it; [`client`] sits beside
//! the server and uses only [`wire`].
//!
//! What this crate must never do:
//! - decide anything the core or the engine decides: handlers extract and answer, `server::service`
//!   validates input and calls the engine or the store, nothing more;
//! - let unvalidated input reach the state: bodies have size limits, ids in the path and the
//!   body must agree, claim sizes and waits are capped, listings are paginated;
//! - run blocking store calls on an async worker (they go to tokio's blocking pool);
//! - serve a workflow to a caller `server::auth` did not let through, or listen beyond loopback without
//!   authentication;
//! - answer an error in any other shape than `{code, message}` JSON, mapped in `server::error`;
//! - install a tracing subscriber or signal handlers (binaries do).

pub mod client;
pub mod server;
pub mod wire;

pub use client::{ClientError, HttpClient, API_PREFIX};
pub use server::auth::{self, Auth, AuthConfig, AuthConfigError, Principal};
pub use server::error::{ApiError, ApiErrorKind};
pub use server::flood::FloodLimits;
pub use server::metrics::parse_sample;
pub use server::service::Limits;
pub use server::{is_loopback_host, serve, Server, ServerConfig, ServerError, StopHandle};
pub use torc_store::Durability;
pub use wire::{
    CapRequest, CreatedToken, CreatedWorkflow, ErrorBody, EventBatch, EventPage, Job, JobPage,
    JobResult, ResourcesChanged, ResultPage, Sample, SamplePage, ScaleRequest, SpecProblem,
    TokenInfo, TokenRequest, TokenScopeSpec, Workflow, WorkflowEvent, WorkflowStatus,
};
