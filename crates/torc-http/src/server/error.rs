//! Every error the server answers, and the one place where errors become HTTP statuses.
//!
//! [`ApiError`] is what handlers and the service return. Errors of the engine, the store, the
//! spec parser and the coordinator contract convert into it here (`From` impls), and so do the
//! extractors' errors (JSON body, query string, path) through [`json_error`], [`query_error`] and
//! [`path_error`]. Whatever actix answers by itself (no such route, wrong method, a body over its
//! limit) is rewritten into the same JSON shape by [`json_fallback`]. The body is always
//! [`ErrorBody`]: `{code, message}` plus, for an invalid spec, `errors: [{location, message}]`.

use crate::wire::{ErrorBody, SpecProblem};
use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::fmt;
use torc_core::api::{CoordinatorError, ErrorCode};
use torc_core::sched::{AdjustError, SchedError};
use torc_core::spec::SpecErrors;
use torc_engine::EngineError;
use torc_store::StoreError;

/// What kind of failure, which fixes both the HTTP status and the machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400: malformed request (bad JSON, bad query or path parameter, ids that disagree).
    BadRequest,
    /// 401: no token, a malformed one, or one the server does not know.
    Unauthorized,
    /// 403: a token that may not do this (a runner token outside its scope, a non-admin).
    Forbidden,
    /// 404: no such workflow (or route), or one the caller may not see.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the workflow's state (reset with jobs in flight).
    Conflict,
    /// 413: the body is over its limit.
    PayloadTooLarge,
    /// 415: a body that does not say it is JSON or YAML (refused without authentication).
    UnsupportedMediaType,
    /// 422: well-formed but invalid (a spec with errors, a field out of range).
    Unprocessable,
    /// 429: the caller holds as much of the server as one caller may (runners, long polls).
    TooManyRequests,
    /// 500: a bug or corrupt data on the server's side.
    Internal,
    /// 503: storage failed or the engine is stopping; the request may be retried.
    Unavailable,
}

impl ApiErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ApiErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ApiErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ApiErrorKind::NotFound => StatusCode::NOT_FOUND,
            ApiErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorKind::Conflict => StatusCode::CONFLICT,
            ApiErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ApiErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            ApiErrorKind::BadRequest | ApiErrorKind::Unprocessable => ErrorCode::InvalidInput,
            ApiErrorKind::Unauthorized => ErrorCode::Unauthorized,
            ApiErrorKind::Forbidden => ErrorCode::Forbidden,
            ApiErrorKind::NotFound => ErrorCode::NotFound,
            ApiErrorKind::MethodNotAllowed => ErrorCode::InvalidInput,
            ApiErrorKind::Conflict => ErrorCode::Conflict,
            ApiErrorKind::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiErrorKind::UnsupportedMediaType => ErrorCode::InvalidInput,
            ApiErrorKind::TooManyRequests => ErrorCode::TooManyRequests,
            ApiErrorKind::Internal | ApiErrorKind::Unavailable => ErrorCode::Internal,
        }
    }

    /// The kind that answers with `code` (a coordinator refusal relayed as is).
    fn from_code(code: ErrorCode) -> ApiErrorKind {
        match code {
            ErrorCode::NotFound => ApiErrorKind::NotFound,
            ErrorCode::InvalidInput => ApiErrorKind::Unprocessable,
            ErrorCode::Conflict => ApiErrorKind::Conflict,
            ErrorCode::PayloadTooLarge => ApiErrorKind::PayloadTooLarge,
            ErrorCode::TooManyRequests => ApiErrorKind::TooManyRequests,
            ErrorCode::Unauthorized => ApiErrorKind::Unauthorized,
            ErrorCode::Forbidden => ApiErrorKind::Forbidden,
            ErrorCode::Internal => ApiErrorKind::Internal,
        }
    }

    /// The kind of a status that actix produced by itself.
    fn from_status(status: StatusCode) -> ApiErrorKind {
        match status {
            StatusCode::UNAUTHORIZED => ApiErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ApiErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ApiErrorKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiErrorKind::MethodNotAllowed,
            StatusCode::CONFLICT => ApiErrorKind::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ApiErrorKind::PayloadTooLarge,
            StatusCode::TOO_MANY_REQUESTS => ApiErrorKind::TooManyRequests,
            StatusCode::UNPROCESSABLE_ENTITY => ApiErrorKind::Unprocessable,
            StatusCode::SERVICE_UNAVAILABLE => ApiErrorKind::Unavailable,
            s if s.is_client_error() => ApiErrorKind::BadRequest,
            _ => ApiErrorKind::Internal,
        }
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
    /// For an invalid spec: every problem found, with where it is.
    pub errors: Vec<SpecProblem>,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ApiErrorKind::BadRequest, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(ApiErrorKind::Unprocessable, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.kind.code(),
            message: self.message.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code().name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut res = HttpResponse::build(self.status_code());
        if self.kind == ApiErrorKind::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"torc\""));
        }
        res.json(self.body())
    }
}

impl From<SpecErrors> for ApiError {
    fn from(errs: SpecErrors) -> ApiError {
        let n = errs.0.len();
        let first = errs
            .0
            .first()
            .map(|e| format!(": {}: {}", e.location, e.message))
            .unwrap_or_default();
        ApiError {
            kind: ApiErrorKind::Unprocessable,
            message: format!(
                "invalid spec, {n} problem{}{first}",
                if n == 1 { "" } else { "s" }
            ),
            errors: errs
                .0
                .into_iter()
                .map(|e| SpecProblem {
                    location: e.location,
                    message: e.message,
                })
                .collect(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let kind = match &e {
            StoreError::NotFound { .. } => ApiErrorKind::NotFound,
            StoreError::OutOfRange { .. } => ApiErrorKind::Unprocessable,
            StoreError::Duplicate { .. } => ApiErrorKind::Conflict,
            StoreError::Pool(_) | StoreError::Query(_) => ApiErrorKind::Unavailable,
            StoreError::Open { .. }
            | StoreError::Locked { .. }
            | StoreError::LockFile { .. }
            | StoreError::UnsupportedUrl { .. }
            | StoreError::Migration { .. }
            | StoreError::UnknownJobs { .. }
            | StoreError::Encode { .. }
            | StoreError::Corrupt { .. } => ApiErrorKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::WorkflowNotFound(_) => {
                ApiError::new(ApiErrorKind::NotFound, e.to_string())
            }
            EngineError::Sched(SchedError::JobsInFlight { .. }) => {
                ApiError::new(ApiErrorKind::Conflict, e.to_string())
            }
            EngineError::Sched(SchedError::Inconsistent { .. }) => {
                ApiError::new(ApiErrorKind::Internal, e.to_string())
            }
            EngineError::Adjust(AdjustError::NoSuchJob { .. }) => {
                ApiError::new(ApiErrorKind::NotFound, e.to_string())
            }
            EngineError::Adjust(AdjustError::InFlight { .. }) => {
                ApiError::new(ApiErrorKind::Conflict, e.to_string())
            }
            EngineError::Adjust(_) => ApiError::new(ApiErrorKind::Unprocessable, e.to_string()),
            EngineError::Store(inner) => inner.into(),
            EngineError::Unstorable { .. } | EngineError::KeyReused { .. } => {
                ApiError::new(ApiErrorKind::Unprocessable, e.to_string())
            }
            EngineError::Stopped | EngineError::Spawn(_) | EngineError::CommitFailed { .. } => {
                ApiError::new(ApiErrorKind::Unavailable, e.to_string())
            }
        }
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> ApiError {
        match e {
            CoordinatorError::Unavailable { message } => {
                ApiError::new(ApiErrorKind::Unavailable, message)
            }
            CoordinatorError::Rejected { code, message } => {
                ApiError::new(ApiErrorKind::from_code(code), message)
            }
        }
    }
}

/// A JSON body that could not be read: bad syntax is 400, the wrong shape 422.
impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        let kind = if e.is_data() {
            ApiErrorKind::Unprocessable
        } else {
            ApiErrorKind::BadRequest
        };
        ApiError::new(kind, format!("invalid JSON body: {e}"))
    }
}

/// A blocking task that did not finish (it panicked, or the runtime is stopping).
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::new(
            ApiErrorKind::Internal,
            format!("a background task failed: {e}"),
        )
    }
}

/// `JsonConfig::error_handler`: bad syntax is 400, a body of the wrong shape is 422, too big 413.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let kind = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiErrorKind::PayloadTooLarge
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiErrorKind::Unprocessable,
        JsonPayloadError::Serialize(_) => ApiErrorKind::Internal,
        _ => ApiErrorKind::BadRequest,
    };
    ApiError::new(kind, err.to_string()).into()
}

/// `QueryConfig::error_handler`: 400 naming the parameter.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query string: {err}")).into()
}

/// `PathConfig::error_handler`: 400 (an id that is not a number, say).
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid path parameter: {err}")).into()
}

/// `ErrorHandlers` fallback: an error response that is not JSON yet (actix's own 404, 405, 413
/// of a raw body...) is rewritten as [`ErrorBody`] with the code its status calls for.
pub fn json_fallback<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let kind = ApiErrorKind::from_status(status);
    let message = match res.response().error() {
        Some(e) => e.to_string(),
        None => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase(),
    };
    let (req, old) = res.into_parts();
    let mut new = HttpResponse::build(status).json(ApiError::new(kind, message).body());
    if let Some(allow) = old.headers().get(header::ALLOW) {
        new.headers_mut()
            .insert(header::ALLOW, HeaderValue::clone(allow));
    }
    let res = ServiceResponse::new(req, new).map_body(|_, b| EitherBody::<B, BoxBody>::right(b));
    Ok(ErrorHandlerResponse::Response(res))
}

/// The JSON extractor settings: `limit` bytes, errors as [`crate::ErrorBody`], any content type.
pub(crate) fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .error_handler(json_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status_and_a_code() {
        let kinds = [
            (ApiErrorKind::BadRequest, 400, "invalid_input"),
            (ApiErrorKind::Unauthorized, 401, "unauthorized"),
            (ApiErrorKind::Forbidden, 403, "forbidden"),
            (ApiErrorKind::NotFound, 404, "not_found"),
            (ApiErrorKind::Conflict, 409, "conflict"),
            (ApiErrorKind::PayloadTooLarge, 413, "payload_too_large"),
            (ApiErrorKind::TooManyRequests, 429, "too_many_requests"),
            (ApiErrorKind::Unprocessable, 422, "invalid_input"),
            (ApiErrorKind::Internal, 500, "internal"),
        ];
        for (kind, status, code) in kinds {
            assert_eq!(kind.status().as_u16(), status);
            assert_eq!(kind.code().name(), code);
            assert_eq!(ApiErrorKind::from_status(kind.status()).code(), kind.code());
        }
    }

    #[test]
    fn coordinator_refusals_keep_their_code() {
        let e: ApiError = CoordinatorError::Rejected {
            code: ErrorCode::Conflict,
            message: "busy".into(),
        }
        .into();
        assert_eq!(e.kind.status(), StatusCode::CONFLICT);
        let e: ApiError = CoordinatorError::Unavailable {
            message: "down".into(),
        }
        .into();
        assert_eq!(e.kind.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn spec_errors_carry_the_list() {
        let errs = SpecErrors(vec![torc_core::spec::SpecError {
            location: "jobs[0].command".into(),
            message: "missing".into(),
        }]);
        let e = ApiError::from(errs);
        assert_eq!(e.kind, ApiErrorKind::Unprocessable);
        assert_eq!(e.errors.len(), 1);
        assert!(e.message.contains("jobs[0].command"));
    }
}
