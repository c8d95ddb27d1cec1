//! The REST server: routes and workers (`app`), the handlers that extract requests and shape
//! answers (`handlers`), what each endpoint does (`service`), who may do it (`auth`), errors as
//! `{code, message}` (`error`), Prometheus counters (`metrics`) and the OpenAPI document
//! (`openapi`).
//!
//! Imports among them run one way: `app` → `handlers` → `service` → `auth` → `error`, with
//! `input` (each request body's checks: values that cannot be stored) and `flood` (what one
//! token may hold) between `service` and `error`, `origin` (cross-site requests refused without authentication)
//! between `app` and `error`, `peer` (a long poll's caller going away) under `handlers`,
//! `openapi` over `handlers` and `metrics` under `service`; every one may use `crate::wire`.

mod app;
pub mod auth;
pub mod error;
pub mod flood;
mod handlers;
#[doc(hidden)]
pub mod input;
pub(crate) mod metrics;
mod observe;
mod openapi;
mod origin;
mod peer;
pub mod service;

pub use app::{is_loopback_host, serve, Server, ServerConfig, ServerError, StopHandle};
pub use openapi::document;
