//! Requests a web browser could send from another site, refused when the server has no
//! authentication (it trusts every local caller, so any page open in a local browser could
//! otherwise create and run workflows: `fetch(url, {method: "POST", mode: "no-cors", body})`
//! needs no permission).
//!
//! Three rules, all free of I/O:
//! - a `POST`, `PUT` or `PATCH` must declare a JSON or YAML body (`application/json`,
//!   `application/yaml`, JSON5 or KDL): a browser sends those cross-site only after a
//!   preflight, which this server never grants, and the forms it may send unasked
//!   (`text/plain`, form encodings) are refused;
//! - an `Origin` header, when present, must name this server (browsers add it to cross-site
//!   requests; `null` is foreign too);
//! - `Host` must name the address listened on: a loopback name (`127.0.0.1`, `localhost`,
//!   `[::1]`) with the port listened on, or one of the names given with `--allowed-host`. A
//!   page whose own name was pointed at 127.0.0.1 (DNS rebinding) sends its own name.
//!
//! With authentication on, none of this applies: a browser has no bearer token to attach.

use crate::server::error::{ApiError, ApiErrorKind};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;
use std::sync::{Arc, OnceLock};

/// The body types a mutating request may declare.
const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "application/json5",
    "application/kdl",
];

/// Loopback names that always name this server (with its port).
const LOOPBACK: &[&str] = &["127.0.0.1", "localhost", "[::1]"];

/// The cross-site rules of a server without authentication.
#[derive(Debug, Clone)]
pub struct BrowserGuard {
    /// The ports listened on, known once bound.
    ports: Arc<OnceLock<Vec<u16>>>,
    /// Further names (`NAME`: any port, `NAME:PORT`: that one), lowercase.
    allowed: Arc<[String]>,
    /// The name the server was told to listen on, as a Host header spells it (with the port
    /// bound, like the loopback names).
    listen_name: Arc<str>,
}

impl BrowserGuard {
    /// The rules of a server listening on `listen_host`, answering `allowed_hosts` too.
    pub fn new(listen_host: &str, allowed_hosts: &[String]) -> BrowserGuard {
        let host = listen_host.trim().to_ascii_lowercase();
        let listen_name = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        BrowserGuard {
            ports: Arc::new(OnceLock::new()),
            allowed: allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            listen_name: listen_name.into(),
        }
    }

    /// Records the ports bound (before any request is served).
    pub fn listening_on(&self, ports: Vec<u16>) {
        let _ = self.ports.set(ports);
    }

    /// Refuses a request a browser could have sent from another site.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        match host {
            Some(h) if self.names_us(h) => {}
            Some(h) => {
                return Err(forbidden(format!(
                    "Host {h:?} is not this server's address: without authentication the \
                     server answers only to its loopback names and to --allowed-host"
                )))
            }
            None => return Err(forbidden("a request without Host is refused".to_string())),
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let ours = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|authority| self.names_us(authority));
            if !ours {
                return Err(forbidden(format!(
                    "requests from the web origin {origin:?} are refused: without \
                     authentication the server accepts no cross-site request"
                )));
            }
        }
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            let mime = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|m| m.trim().to_ascii_lowercase())
                .unwrap_or_default();
            if !BODY_TYPES.contains(&mime.as_str()) {
                return Err(ApiError::new(
                    ApiErrorKind::UnsupportedMediaType,
                    format!(
                        "a {method} must declare a JSON or YAML body (Content-Type: \
                         application/json or application/yaml), not {:?}",
                        if mime.is_empty() { "nothing" } else { &mime }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether `authority` (`NAME[:PORT]`, from Host or Origin) names this server.
    fn names_us(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        if self.allowed.contains(&authority) {
            return true;
        }
        let (name, port) = split_port(&authority);
        if port.is_some() && self.allowed.iter().any(|a| a == name) {
            return true;
        }
        let listened = self.ports.get().map_or(&[][..], Vec::as_slice);
        (LOOPBACK.contains(&name) || name == &*self.listen_name)
            && port.is_some_and(|p| listened.contains(&p))
    }
}

/// `NAME:PORT` → (`NAME`, `Some(PORT)`); `[::1]:8080` keeps its brackets.
fn split_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && (!name.contains(':') || name.ends_with(']')) => {
            match port.parse() {
                Ok(p) => (name, Some(p)),
                Err(_) => (authority, None),
            }
        }
        _ => (authority, None),
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(ApiErrorKind::Forbidden, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn guard() -> BrowserGuard {
        let g = BrowserGuard::new("127.0.0.2", &["torc.example".into(), "proxy:8443".into()]);
        g.listening_on(vec![8080]);
        g
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
            "torc.example",
            "torc.example:80",
            "proxy:8443",
            "127.0.0.2:8080",
        ] {
            assert!(g.names_us(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "evil.example:8080",
            "proxy:8444",
            "proxy",
            "[::1]",
            "",
        ] {
            assert!(!g.names_us(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_requests() {
        let g = guard();
        let json = (header::CONTENT_TYPE, "application/json");
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(g
            .check(&Method::POST, &headers(&[host.clone(), json.clone()]))
            .is_ok());
        assert!(g
            .check(&Method::GET, &headers(std::slice::from_ref(&host)))
            .is_ok());
        assert!(g
            .check(&Method::DELETE, &headers(std::slice::from_ref(&host)))
            .is_ok());
        let plain = (header::CONTENT_TYPE, "text/plain;charset=UTF-8");
        let e = g
            .check(&Method::POST, &headers(&[host.clone(), plain]))
            .unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::UnsupportedMediaType);
        let e = g
            .check(&Method::POST, &headers(std::slice::from_ref(&host)))
            .unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::UnsupportedMediaType);
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9090"] {
            let e = g
                .check(
                    &Method::POST,
                    &headers(&[host.clone(), json.clone(), (header::ORIGIN, origin)]),
                )
                .unwrap_err();
            assert_eq!(e.kind, ApiErrorKind::Forbidden, "{origin}");
        }
        let same = (header::ORIGIN, "http://localhost:8080");
        assert!(g
            .check(&Method::POST, &headers(&[host, json.clone(), same]))
            .is_ok());
        let rebound = (header::HOST, "evil.example:8080");
        let e = g.check(&Method::GET, &headers(&[rebound])).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Forbidden);
    }
}
