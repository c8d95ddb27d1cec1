//! Starting and stopping the server: the store, the engine, the actix `App` and its workers.

use crate::server::auth::{Auth, AuthConfig};
use crate::server::error::{json_config, json_fallback, path_error, query_error};
use crate::server::handlers::{self, OpenApiText};
use crate::server::origin::BrowserGuard;
use crate::server::service::{Limits, Service};
use actix_web::dev::ServerHandle;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpServer};
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use torc_engine::{EngineConfig, EngineHandle, LeasePolicy};
use torc_store::{Store, StoreError};

/// How to run a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `sqlite:PATH`, `sqlite://PATH` or a plain path (created if missing).
    pub database: String,
    pub host: String,
    /// 0 picks a free port; [`Server::local_addr`] tells which.
    pub port: u16,
    /// HTTP worker threads; `None`: one per CPU core.
    pub workers: Option<usize>,
    pub limits: Limits,
    /// How long a graceful stop waits for requests in flight (a parked claim is one).
    pub shutdown_timeout: Duration,
    /// Runner leases: how long a silent runner keeps its jobs, how often a job may be lost.
    pub leases: LeasePolicy,
    /// Users and tokens. `None`: no authentication, every caller is trusted as a local admin,
    /// `host` must be a loopback address, and requests a browser could send from another site
    /// are refused (see `server::origin`).
    pub auth: Option<AuthConfig>,
    /// Without authentication: names besides the loopback ones that a request's `Host` (and
    /// `Origin`) may give, `NAME` (any port) or `NAME:PORT` (a reverse proxy's name, say).
    pub allowed_hosts: Vec<String>,
    /// When a commit counts as done (and a request is answered): on disk by default.
    pub durability: torc_store::Durability,
}

impl ServerConfig {
    /// `database` on 127.0.0.1:8080 with the default limits.
    pub fn new(database: impl Into<String>) -> ServerConfig {
        ServerConfig {
            database: database.into(),
            host: "127.0.0.1".into(),
            port: 8080,
            workers: None,
            limits: Limits::default(),
            shutdown_timeout: Duration::from_secs(35),
            leases: LeasePolicy::default(),
            auth: None,
            allowed_hosts: Vec::new(),
            durability: torc_store::Durability::Full,
        }
    }
}

/// Whether every address `host` names is a loopback one (`127.0.0.1`, `::1`, `localhost`).
pub fn is_loopback_host(host: &str) -> bool {
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not start (another engine holds the database, say).
    #[error("cannot start the engine: {0}")]
    Engine(#[from] torc_engine::EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("opening the database was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Listening beyond this machine without authentication would let anyone who can reach the
    /// port run commands as the server's users.
    #[error(
        "refusing to listen on {host} without authentication: anyone who can reach it could run \
         commands on the runners. Give an auth configuration (torc-server --auth-config FILE; \
         see \"Authentication\" in the README: users, and tokens stored as their SHA-256, which \
         `torc-server hash-token` prints), or listen on 127.0.0.1"
    )]
    AuthRequired { host: String },
    /// The engine's writer thread died (it panicked): the server stopped serving.
    #[error("the engine's writer thread died ({reason}); the server stopped")]
    EngineDied { reason: String },
}

/// Counts a request in flight from its start until it is answered or dropped, then records it.
struct InFlight {
    service: web::Data<Service>,
    method: String,
    route: String,
    started: Instant,
}

impl InFlight {
    fn new(service: web::Data<Service>, method: &str, route: Option<String>) -> InFlight {
        let route = route.unwrap_or_else(|| "unmatched".into());
        service.metrics.in_flight(method, &route, 1);
        InFlight {
            service,
            method: method.to_string(),
            route,
            started: Instant::now(),
        }
    }

    fn done(self, status: u16) {
        let took = self.started.elapsed();
        self.service
            .metrics
            .record(&self.method, &self.route, status, took);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.service
            .metrics
            .in_flight(&self.method, &self.route, -1);
    }
}

/// A running server. Dropping it does not stop it; call [`Server::stop`] or await
/// [`Server::wait`].
pub struct Server {
    addrs: Vec<SocketAddr>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    engine: EngineHandle,
    store: Store,
}

/// Stops a [`Server`] from elsewhere (a signal handler, say).
#[derive(Clone)]
pub struct StopHandle(ServerHandle);

impl StopHandle {
    /// Stops accepting connections; `graceful` lets requests in flight finish first.
    pub async fn stop(&self, graceful: bool) {
        self.0.stop(graceful).await;
    }
}

impl Server {
    /// Opens the database (running its migrations), starts the engine over it and listens.
    /// Must be called within a tokio runtime.
    /// Refuses without authentication on a non-loopback host, before anything is opened.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        if config.auth.is_none() && !is_loopback_host(&config.host) {
            return Err(ServerError::AuthRequired { host: config.host });
        }
        let (url, durability) = (config.database.clone(), config.durability);
        let store =
            tokio::task::spawn_blocking(move || Store::open_with(&url, durability)).await??;
        let engine = EngineHandle::start_with(
            store.clone(),
            EngineConfig {
                leases: Some(config.leases),
            },
        )?;
        Server::start_with(engine, store, &config).await
    }

    /// Listens with an engine and a store that the caller opened (they must be over the same
    /// database). With authentication, the tokens stored in the database join the
    /// configuration's. Must be called within a tokio runtime.
    pub async fn start_with(
        engine: EngineHandle,
        store: Store,
        config: &ServerConfig,
    ) -> Result<Server, ServerError> {
        let auth = match &config.auth {
            None if !is_loopback_host(&config.host) => {
                return Err(ServerError::AuthRequired {
                    host: config.host.clone(),
                })
            }
            None => Auth::disabled(),
            Some(auth) => {
                let reader = store.clone();
                let stored = tokio::task::spawn_blocking(move || reader.list_tokens()).await??;
                Auth::enabled(auth.clone(), stored)
            }
        };
        let limits = config.limits;
        let guard = config
            .auth
            .is_none()
            .then(|| BrowserGuard::new(&config.host, &config.allowed_hosts));
        let guard_for_app = guard.clone();
        let auth_data = web::Data::new(auth.clone());
        let reader_store = store.clone();
        let service = web::Data::new(Service::new(engine.clone(), store, limits, auth));
        let doc = web::Data::new(OpenApiText(crate::server::openapi::document()));
        let app = move || {
            let metrics = service.clone();
            let guard = guard_for_app.clone();
            App::new()
                .app_data(service.clone())
                .app_data(auth_data.clone())
                .app_data(doc.clone())
                .app_data(json_config(limits.request_bytes))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(ErrorHandlers::new().default_handler(json_fallback))
                .wrap_fn(move |req, srv| {
                    use actix_web::dev::Service as _;
                    let refused = guard
                        .as_ref()
                        .and_then(|g| g.check(req.method(), req.headers()).err());
                    let call = match refused {
                        Some(e) => Err(req.error_response(e)),
                        None => Ok(srv.call(req)),
                    };
                    async move {
                        match call {
                            Err(refused) => Ok(refused),
                            Ok(served) => served.await.map(|r| r.map_into_boxed_body()),
                        }
                    }
                })
                .wrap_fn(move |req, srv| {
                    use actix_web::dev::Service as _;
                    let guard =
                        InFlight::new(metrics.clone(), req.method().as_str(), req.match_pattern());
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await;
                        let status = match &res {
                            Ok(r) => r.status(),
                            Err(e) => e.as_response_error().status_code(),
                        };
                        guard.done(status.as_u16());
                        res
                    }
                })
                .route("/metrics", web::get().to(handlers::metrics))
                .service(
                    web::scope("/torc-service/v1").configure(|cfg| handlers::routes(cfg, &limits)),
                )
        };
        let addr = format!("{}:{}", config.host, config.port);
        let mut http = HttpServer::new(app)
            .on_connect(crate::server::peer::on_connect)
            .disable_signals()
            .shutdown_timeout(config.shutdown_timeout.as_secs());
        if let Some(n) = config.workers {
            http = http.workers(n.max(1));
        }
        let http = http
            .bind(addr.as_str())
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addrs = http.addrs();
        if let Some(g) = &guard {
            g.listening_on(addrs.iter().map(SocketAddr::port).collect());
        }
        let running = http.run();
        let handle = running.handle();
        let task = tokio::spawn(running);
        tracing::info!(addrs = ?addrs, auth = config.auth.is_some(), "torc server listening");
        Ok(Server {
            addrs,
            handle,
            task,
            engine,
            store: reader_store,
        })
    }

    /// The first address listened on (with the port actually bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// `http://HOST:PORT`, the base URL that [`crate::HttpClient::new`] takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    /// The store behind the server, for reading (every write goes through the engine).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The engine behind the server (its counters, or in-process calls).
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.handle.clone())
    }

    /// Waits until the server stops, then until the engine has committed its last batch. If
    /// the engine's writer thread dies first, stops at once and says so
    /// ([`ServerError::EngineDied`]): a server whose engine is gone could only answer 503, so
    /// it ends for its supervisor to start it again.
    pub async fn wait(self) -> Result<(), ServerError> {
        let Server {
            mut task,
            engine,
            handle,
            ..
        } = self;
        let served = tokio::select! {
            served = &mut task => served?,
            reason = engine.died() => {
                tracing::error!(
                    %reason,
                    "the engine's writer thread died: the server stops (restart it; \
                     everything acknowledged is in the database)"
                );
                handle.stop(false).await;
                let _ = task.await;
                return Err(ServerError::EngineDied { reason });
            }
        };
        // The workers are gone with their handles; this is the last one, and dropping it joins
        // the writer thread after its last commit. Joining blocks, so not on a runtime worker.
        tokio::task::spawn_blocking(move || drop(engine)).await?;
        served?;
        tracing::info!("torc server stopped");
        Ok(())
    }

    /// Stops the server (`graceful`: requests in flight finish first) and waits for it.
    pub async fn stop(self, graceful: bool) -> Result<(), ServerError> {
        self.handle.stop(graceful).await;
        self.wait().await
    }
}

/// Runs a server until `shutdown` resolves, then stops gracefully: no new connections,
/// requests in flight are answered, the engine commits what it holds, and this returns.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = Server::start(config).await?;
    let stop = server.stop_handle();
    let waiting = server.wait();
    tokio::pin!(waiting);
    tokio::select! {
        r = &mut waiting => return r,
        () = shutdown => tracing::info!("shutdown requested: finishing requests in flight"),
    }
    stop.stop(true).await;
    waiting.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "::1", "localhost", "127.0.0.2"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.0.2.1", "not a host name"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[tokio::test]
    async fn no_auth_beyond_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("t.db").display().to_string());
        config.host = "0.0.0.0".into();
        let err = Server::start(config).await.err().unwrap();
        assert!(matches!(err, ServerError::AuthRequired { .. }));
        let text = err.to_string();
        assert!(
            text.contains("--auth-config") && text.contains("0.0.0.0"),
            "{text}"
        );
        assert!(
            !dir.path().join("t.db").exists(),
            "refused before opening the database"
        );
    }
}
