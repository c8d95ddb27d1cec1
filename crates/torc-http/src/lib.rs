//! The HTTP layer of torc: a REST server (actix-web) in front of the engine, and its client.
//!
//! The server ([`Server`], [`serve`]) owns one [`torc_store::engine::EngineHandle`] and one
//! [`torc_store::Store`]; everything under `/torc-service/v1` is JSON. Workflows are created from
//! spec text, listed, inspected, canceled, reset, resumed and deleted; runners claim jobs
//! (long-poll: an idle claim is answered as soon as a job becomes ready) and report starts and
//! completions, group-committed by the engine and answered only after their commit. The OpenAPI
//! 3 document is generated from the handlers ([`openapi`]); `/metrics` speaks Prometheus.
//!
//! Authentication and authorization live in [`auth`]: a [`Principal`] per request from its
//! bearer token, and every decision of who may see, change or run which workflow. Without an
//! auth configuration the server trusts every caller and listens on loopback only.
//!
//! [`HttpClient`] has a method for every endpoint and implements
//! [`torc_core::api::Coordinator`], so a runner cannot tell it from the in-process engine.
//!
//! What this crate must never do:
//! - decide anything the core or the engine decides: handlers extract and answer, [`service`]
//!   validates input and calls the engine or the store, nothing more;
//! - let unvalidated input reach the state: bodies have size limits, ids in the path and the
//!   body must agree, claim sizes and waits are capped, listings are paginated;
//! - run blocking store calls on an async worker (they go to tokio's blocking pool);
//! - serve a workflow to a caller [`auth`] did not let through, or listen beyond loopback without
//!   authentication;
//! - answer an error in any other shape than `{code, message}` JSON, mapped in [`error`];
//! - install a tracing subscriber or signal handlers (binaries do).

pub mod auth;
pub mod client;
pub mod dto;
pub mod error;
mod handlers;
mod metrics;
pub mod openapi;
mod server;
pub mod service;

pub use auth::{Auth, AuthConfig, AuthConfigError, Principal};
pub use client::{ClientError, HttpClient, API_PREFIX};
pub use dto::{
    CapRequest, CreatedToken, CreatedWorkflow, ErrorBody, EventPage, Job, JobPage, JobResult,
    ResultPage, SpecProblem, TokenInfo, TokenRequest, TokenScopeSpec, Workflow, WorkflowEvent,
    WorkflowStatus,
};
pub use error::{ApiError, ApiErrorKind};
pub use metrics::parse_sample;
pub use server::{is_loopback_host, serve, Server, ServerConfig, ServerError, StopHandle};
pub use service::Limits;
pub use torc_store::engine::LeasePolicy;
