//! The server over real loopback HTTP: every endpoint's happy path, the documented JSON errors,
//! the OpenAPI document, long-poll claims, and the runner library talking through the client;
//! authentication and authorization in `http/auth.rs`.

#[path = "http/auth.rs"]
mod auth;

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use torc_core::api::{
    ClaimRequest, ClaimResponse, CompletionOutcome, CompletionReport, Coordinator, FreeResources,
    HeartbeatRequest, ReportBatch, SharedClaimRequest, StartReport,
};
use torc_core::changes::{EventKind, WorkflowState};
use torc_core::spec::SpecFormat;
use torc_core::{JobId, JobStatus, RunnerId, Timestamp, WorkflowId};
use torc_http::{HttpClient, Limits, Server, ServerConfig};
use torc_runner::{Capacity, RunEnd, RunnerConfig, Shutdown};

/// Longest any single step may take before the test fails instead of hanging.
const SAFETY: Duration = Duration::from_secs(60);

struct TestServer {
    dir: TempDir,
    server: Server,
    client: HttpClient,
    raw: reqwest::Client,
    config: ServerConfig,
}

impl TestServer {
    async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with the test limits, then `adjust` applied to its configuration.
    async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("torc.db").display().to_string());
        config.port = 0;
        config.workers = Some(2);
        config.limits = Limits {
            spec_bytes: 64 << 10,
            report_bytes: 16 << 10,
            ..Limits::default()
        };
        adjust(&mut config);
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: TempDir, config: ServerConfig) -> TestServer {
        let server = Server::start(config.clone()).await.unwrap();
        assert!(server.local_addr().ip().is_loopback());
        let client = HttpClient::new(&server.url()).unwrap();
        TestServer {
            dir,
            server,
            client,
            raw: reqwest::Client::new(),
            config,
        }
    }

    /// Stops the server and starts another on the same database and configuration.
    async fn restart(self) -> TestServer {
        let TestServer {
            dir,
            server,
            config,
            ..
        } = self;
        server.stop(true).await.unwrap();
        Self::start_in(dir, config).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/torc-service/v1{path}", self.server.url())
    }

    async fn create(&self, yaml: &str) -> WorkflowId {
        self.client
            .create_workflow(yaml, SpecFormat::Yaml)
            .await
            .unwrap()
            .id
    }

    /// Sends a raw request; returns the status and the JSON body.
    async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.bytes().await.unwrap();
        if status >= 400 {
            assert_eq!(ct.as_deref(), Some("application/json"), "error not JSON");
        }
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, value)
    }

    async fn expect_error(&self, rb: reqwest::RequestBuilder, status: u16, code: &str) -> Value {
        let (got, body) = self.send(rb).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        body
    }

    async fn stop(self) {
        self.server.stop(true).await.unwrap();
        drop(self.dir);
    }
}

fn claim_req(id: WorkflowId, runner: &str, limit: u32, wait_ms: u64) -> ClaimRequest {
    ClaimRequest {
        workflow_id: id,
        runner_id: RunnerId(runner.into()),
        limit,
        resources: None,
        wait_ms,
        tags: None,
    }
}

/// Starts and completes `jobs` (as claimed) with return code 0.
fn done(id: WorkflowId, runner: &str, jobs: &ClaimResponse) -> ReportBatch {
    ReportBatch {
        workflow_id: id,
        runner_id: RunnerId(runner.into()),
        starts: jobs
            .jobs
            .iter()
            .map(|j| StartReport {
                job_id: j.job_id,
                attempt_id: j.attempt_id,
                start_time: Timestamp(1),
            })
            .collect(),
        completions: jobs
            .jobs
            .iter()
            .map(|j| CompletionReport {
                job_id: j.job_id,
                run_id: j.run_id,
                attempt_id: j.attempt_id,
                return_code: 0,
                terminated: false,
                recovery_failed: false,
                start_time: Timestamp(1),
                end_time: Timestamp(2),
                peak_memory_bytes: None,
                avg_memory_bytes: None,
                peak_cpu_percent: None,
                avg_cpu_percent: None,
                end_reason: None,
                message: None,
            })
            .collect(),
        samples: Vec::new(),
    }
}

/// The Content-Type of a JSON body, and of a YAML one.
const JSON: (&str, &str) = ("content-type", "application/json");
const YAML: (&str, &str) = ("content-type", "application/yaml");

const FLAT5: &str = "name: flat5\njobs:\n  - name: j{i}\n    command: \"true\"\n    parameters:\n      i: \"1:5\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_happy_path() {
    let t = TestServer::start().await;
    let c = &t.client;

    let created = c.create_workflow(FLAT5, SpecFormat::Yaml).await.unwrap();
    assert_eq!((created.name.as_str(), created.num_jobs), ("flat5", 5));
    let json_spec = json!({"name": "pair", "jobs": [
        {"name": "a", "command": "true"},
        {"name": "b", "command": "true", "depends_on": ["a"]}
    ]})
    .to_string();
    let pair = c
        .create_workflow(json_spec, SpecFormat::Json)
        .await
        .unwrap();
    let j5 = c
        .create_workflow(
            "{name: 'j5', jobs: [{name: 'x', command: 'true',},],}",
            SpecFormat::Json5,
        )
        .await
        .unwrap();
    assert_eq!(j5.num_jobs, 1);

    let list = c.list_workflows().await.unwrap();
    let ids: Vec<_> = list.iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![created.id, pair.id, j5.id]);
    let w = c.workflow(pair.id).await.unwrap();
    assert_eq!((w.name.as_str(), w.num_jobs), ("pair", 2));

    let status = c.status(created.id).await.unwrap();
    assert_eq!(status.total, 5);
    assert_eq!(status.count(JobStatus::Ready), 5);
    assert_eq!(status.state, WorkflowState::Active);

    // Jobs: filtered, paginated, capped.
    let page = c.jobs(created.id, None, 1, 2).await.unwrap();
    assert_eq!(
        page.items.iter().map(|j| j.id.0).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let blocked = c
        .jobs(pair.id, Some(JobStatus::Blocked), 0, 10)
        .await
        .unwrap();
    assert_eq!(blocked.items.len(), 1);
    assert_eq!(blocked.items[0].name, "b");
    let capped = c.jobs(created.id, None, 0, u64::MAX).await.unwrap();
    assert_eq!(capped.limit, Limits::default().max_page);
    let (s, by_code) = t
        .send(
            t.raw
                .get(t.url(&format!("/workflows/{}/jobs?status=2", created.id))),
        )
        .await;
    assert_eq!((s, by_code["items"].as_array().unwrap().len()), (200, 5));

    // The hot path through the client's Coordinator impl.
    let got = Coordinator::claim(c, claim_req(created.id, "r1", 2, 0))
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 2);
    let answer = Coordinator::report(c, done(created.id, "r1", &got))
        .await
        .unwrap();
    assert!(answer.outcomes.iter().all(|o| matches!(
        o,
        CompletionOutcome::Accepted {
            status: JobStatus::Completed
        }
    )));
    let results = c.results(created.id, None, 0, 100).await.unwrap();
    assert_eq!(results.items.len(), 2);
    assert!(results.items.iter().all(|r| r.return_code == 0));
    let one = c
        .results(created.id, Some(got.jobs[0].job_id), 0, 100)
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let events = c.events(created.id, 0, 100).await.unwrap();
    assert!(!events.items.is_empty());

    // A resource-based claim: only what fits (the default job needs 1 CPU, 1 MiB).
    let mut fits = claim_req(pair.id, "r2", 10, 0);
    fits.resources = Some(FreeResources {
        num_cpus: 4,
        memory_bytes: 1 << 10,
        num_gpus: 0,
        time_left: None,
    });
    let none = Coordinator::claim(c, fits.clone()).await.unwrap();
    assert!(none.jobs.is_empty(), "1 KiB of memory fits no job");
    fits.resources = fits.resources.map(|r| FreeResources {
        memory_bytes: 1 << 30,
        ..r
    });
    let a = Coordinator::claim(c, fits).await.unwrap();
    assert_eq!(
        a.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    Coordinator::report(c, done(pair.id, "r2", &a))
        .await
        .unwrap();

    // Steering.
    let canceled = c.cancel(created.id).await.unwrap();
    assert_eq!(canceled.state, WorkflowState::Canceled);
    let reset = c.reset(created.id, true).await.unwrap();
    assert_eq!(reset.run_id, 2);
    assert_eq!(reset.count(JobStatus::Completed), 2);
    assert_eq!(reset.state, WorkflowState::Active);
    let (s, full) = t
        .send(
            t.raw
                .post(t.url(&format!("/workflows/{}/reset", pair.id)))
                .header("content-type", "application/json"),
        )
        .await;
    assert_eq!((s, full["run_id"].as_u64()), (200, Some(2)));
    let resumed = c.resume(created.id).await.unwrap();
    assert_eq!(resumed.total, 5);

    // Runners and service endpoints.
    let ack = c
        .heartbeat(HeartbeatRequest {
            workflow_id: created.id,
            runner_id: RunnerId("r1".into()),
            held: Vec::new(),
            wait_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(ack.workflow_state, WorkflowState::Active);
    assert_eq!(ack.lease_ms, Some(60_000));
    let metrics = c.metrics().await.unwrap();
    assert_eq!(
        torc_http::parse_sample(&metrics, "torc_claimed_jobs_total"),
        Some(3.0)
    );
    assert_eq!(
        torc_http::parse_sample(&metrics, "torc_completions_total"),
        Some(3.0)
    );
    assert_eq!(
        torc_http::parse_sample(&metrics, "torc_runners_live"),
        Some(1.0)
    );
    assert!(metrics.contains("torc_http_requests_total{method=\"POST\",route=\"/torc-service/v1/workflows/{id}/claim\",status=\"200\"} 3"));

    // Delete: gone from the listing and from the engine.
    c.delete_workflow(pair.id).await.unwrap();
    let err = c.workflow(pair.id).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = c.status(pair.id).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(c.list_workflows().await.unwrap().len(), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_paths() {
    let t = TestServer::start().await;
    let doc = t.client.openapi().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/torc-service/v1/workflows",
        "/torc-service/v1/workflows/{id}",
        "/torc-service/v1/workflows/{id}/status",
        "/torc-service/v1/workflows/{id}/cancel",
        "/torc-service/v1/workflows/{id}/reset",
        "/torc-service/v1/workflows/{id}/resume",
        "/torc-service/v1/workflows/{id}/jobs",
        "/torc-service/v1/workflows/{id}/results",
        "/torc-service/v1/workflows/{id}/events",
        "/torc-service/v1/workflows/{id}/claim",
        "/torc-service/v1/workflows/{id}/report",
        "/torc-service/v1/workflows/{id}/heartbeat",
        "/torc-service/v1/tokens",
        "/torc-service/v1/tokens/{name}",
        "/torc-service/v1/openapi.json",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "ClaimRequest",
        "ClaimResponse",
        "ReportBatch",
        "ErrorBody",
        "JobStatus",
        "TokenRequest",
        "CreatedToken",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    t.stop().await;
}

#[path = "http/hostile.rs"]
mod hostile;
#[path = "http/requests.rs"]
mod requests;
#[path = "http/runners.rs"]
mod runners;
