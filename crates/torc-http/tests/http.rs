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
            })
            .collect(),
    }
}

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
        .send(t.raw.post(t.url(&format!("/workflows/{}/reset", pair.id))))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_documented_json_errors() {
    let t = TestServer::start().await;
    let id = t.create(FLAT5).await;
    let claim_url = t.url(&format!("/workflows/{id}/claim"));

    // Malformed JSON: 400; valid JSON of the wrong shape: 422.
    t.expect_error(
        t.raw.post(&claim_url).body("{not json"),
        400,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(&claim_url).json(&json!({"limit": "x"})),
        422,
        "invalid_input",
    )
    .await;
    // The path and the body disagree on the workflow: 400.
    let other = claim_req(WorkflowId(id.0 + 100), "r", 1, 0);
    t.expect_error(t.raw.post(&claim_url).json(&other), 400, "invalid_input")
        .await;
    // Out-of-range values: 422.
    t.expect_error(
        t.raw.post(&claim_url).json(&claim_req(id, "r", 0, 0)),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        t.raw.post(&claim_url).json(&claim_req(id, "", 1, 0)),
        422,
        "invalid_input",
    )
    .await;

    // Unknown workflow: 404 everywhere.
    let ghost = WorkflowId(9999);
    for path in ["", "/status", "/jobs", "/results", "/events"] {
        t.expect_error(
            t.raw.get(t.url(&format!("/workflows/9999{path}"))),
            404,
            "not_found",
        )
        .await;
    }
    t.expect_error(
        t.raw
            .post(t.url("/workflows/9999/claim"))
            .json(&claim_req(ghost, "r", 1, 0)),
        404,
        "not_found",
    )
    .await;
    t.expect_error(t.raw.delete(t.url("/workflows/9999")), 404, "not_found")
        .await;
    let err = Coordinator::claim(&t.client, claim_req(ghost, "r", 1, 0))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "a 404 is final: {err:?}");

    // Invalid spec: 422 with every problem and where it is.
    let body = t
        .expect_error(
            t.raw
                .post(t.url("/workflows"))
                .body("name: bad\njobs:\n  - name: a\n    command: x\n    depends_on: [nope]\n    colour: red\n"),
            422,
            "invalid_input",
        )
        .await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(errors
        .iter()
        .all(|e| e["location"].as_str().unwrap().starts_with("jobs[0]")));
    let err = t
        .client
        .create_workflow("name: [", SpecFormat::Yaml)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    t.expect_error(
        t.raw.post(t.url("/workflows?format=toml")).body(FLAT5),
        400,
        "invalid_input",
    )
    .await;

    // Bodies over their limits: 413 (spec 64 KiB, report 16 KiB in this server).
    let big_spec = format!("{FLAT5}#{}\n", "x".repeat(100 << 10));
    t.expect_error(
        t.raw.post(t.url("/workflows")).body(big_spec),
        413,
        "payload_too_large",
    )
    .await;
    let mut batch = done(
        id,
        "r",
        &ClaimResponse {
            jobs: vec![],
            workflow_state: WorkflowState::Active,
        },
    );
    batch.starts = (0..2000)
        .map(|i| StartReport {
            job_id: JobId(i),
            attempt_id: 1,
            start_time: Timestamp(0),
        })
        .collect();
    t.expect_error(
        t.raw
            .post(t.url(&format!("/workflows/{id}/report")))
            .json(&batch),
        413,
        "payload_too_large",
    )
    .await;

    // Bad query and path parameters: 400.
    for q in ["limit=abc", "offset=-1", "status=bogus", "colour=red"] {
        t.expect_error(
            t.raw.get(t.url(&format!("/workflows/{id}/jobs?{q}"))),
            400,
            "invalid_input",
        )
        .await;
    }
    t.expect_error(
        t.raw.get(t.url(&format!("/workflows/{id}/results?job=0"))),
        400,
        "invalid_input",
    )
    .await;
    t.expect_error(t.raw.get(t.url("/workflows/abc")), 400, "invalid_input")
        .await;
    t.expect_error(
        t.raw
            .post(t.url(&format!("/workflows/{id}/reset")))
            .body("{\"failed_only\": 3}"),
        422,
        "invalid_input",
    )
    .await;

    // Reset while jobs are pending: 409.
    let got = Coordinator::claim(&t.client, claim_req(id, "r", 1, 0))
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 1);
    let err = t.client.reset(id, false).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(matches!(
        err,
        torc_http::ClientError::Api {
            code: torc_core::api::ErrorCode::Conflict,
            ..
        }
    ));

    // No such route, wrong method: still JSON.
    t.expect_error(t.raw.get(t.url("/nowhere")), 404, "not_found")
        .await;
    t.expect_error(t.raw.put(t.url("/workflows")), 405, "invalid_input")
        .await;
    t.stop().await;
}

/// Waits (polling the server, bounded by [`SAFETY`]) until `ready` holds for the metrics text.
async fn until_metrics(client: &HttpClient, ready: impl Fn(&str) -> bool) {
    tokio::time::timeout(SAFETY, async {
        loop {
            if ready(&client.metrics().await.unwrap()) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server never reached the expected state");
}

fn claims_in_flight(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("torc_http_requests_in_flight{method=\"POST\",route=\"/torc-service/v1/workflows/{id}/claim\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_claim_is_answered_when_a_job_becomes_ready() {
    let t = TestServer::start().await;
    let id = t
        .create("name: chain\njobs:\n  - name: a\n    command: \"true\"\n  - name: b\n    command: \"true\"\n    depends_on: [a]\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "r1", 5, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs.len(), 1);

    // Nothing is ready: this claim parks on the server for up to a minute (capped at 30 s).
    let idle = t.client.clone();
    let parked =
        tokio::spawn(
            async move { Coordinator::claim(&idle, claim_req(id, "r2", 5, 60_000)).await },
        );
    until_metrics(&t.client, |m| claims_in_flight(m) == 1).await;

    // The report that makes `b` ready answers the parked claim with it.
    Coordinator::report(&t.client, done(id, "r1", &first))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .expect("the parked claim was not answered when b became ready")
        .unwrap()
        .unwrap();
    assert_eq!(answer.jobs.len(), 1);
    assert_eq!(answer.jobs[0].name, "b");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_with_a_parked_claim_still_reports() {
    let t = TestServer::start().await;
    // `gate` (claimed first: highest priority) is held by this test; `b` waits for it, so once
    // the runner has run `a` its only claim is a parked one.
    let id = t
        .create(concat!(
            "name: gated\njobs:\n",
            "  - name: gate\n    command: \"true\"\n    priority: 10\n",
            "  - name: a\n    command: \"true\"\n",
            "  - name: b\n    command: \"true\"\n    depends_on: [gate]\n",
        ))
        .await;
    let gate = Coordinator::claim(&t.client, claim_req(id, "test", 1, 0))
        .await
        .unwrap();
    assert_eq!(gate.jobs[0].name, "gate");

    let out = t.dir.path().join("out");
    let mut config = RunnerConfig::new(
        id,
        RunnerId("lib-runner".into()),
        Capacity::MaxParallelJobs(2),
        &out,
    );
    config.claim_wait = Duration::from_secs(60);
    config.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        Shutdown::new(),
    ));

    // `a` is reported complete while the runner's next claim waits on the server.
    tokio::time::timeout(SAFETY, async {
        loop {
            let s = t.client.status(id).await.unwrap();
            if s.count(JobStatus::Completed) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the runner's completion of `a` never arrived");
    let a = t
        .client
        .jobs(id, Some(JobStatus::Completed), 0, 10)
        .await
        .unwrap();
    assert_eq!(a.items[0].name, "a");
    until_metrics(&t.client, |m| claims_in_flight(m) >= 1).await;

    // Releasing the gate hands `b` to the parked claim; the runner runs it and ends.
    Coordinator::report(&t.client, done(id, "test", &gate))
        .await
        .unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowComplete);
    assert_eq!((summary.completed, summary.failed), (2, 0));
    let status = t.client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Completed), 3);
    assert_eq!(status.state, WorkflowState::Complete);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_answers_requests_in_flight() {
    let t = TestServer::start().await;
    let id = t
        .create("name: chain\njobs:\n  - name: a\n    command: \"true\"\n  - name: b\n    command: \"true\"\n    depends_on: [a]\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "r1", 5, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs.len(), 1);
    let idle = t.client.clone();
    let parked =
        tokio::spawn(async move { Coordinator::claim(&idle, claim_req(id, "r2", 5, 1_500)).await });
    until_metrics(&t.client, |m| claims_in_flight(m) == 1).await;

    // The stop waits for the parked claim, which is answered at its deadline, empty.
    let TestServer { dir, server, .. } = t;
    let stopping = tokio::spawn(server.stop(true));
    let answer = tokio::time::timeout(SAFETY, parked)
        .await
        .expect("the parked claim was never answered")
        .unwrap()
        .expect("a graceful stop answers requests in flight");
    assert!(answer.jobs.is_empty());
    tokio::time::timeout(SAFETY, stopping)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempt_is_refused_and_a_duplicate_report_answered_alike() {
    let t = TestServer::start_with(|c| c.leases.lease = Duration::from_millis(300)).await;
    let id = t
        .create("name: one\njobs:\n  - name: only\n    command: \"true\"\n")
        .await;
    let first = Coordinator::claim(&t.client, claim_req(id, "a", 1, 0))
        .await
        .unwrap();
    assert_eq!(first.jobs[0].attempt_id, 1);
    // Runner a goes silent; once its lease lapses the job is ready again.
    tokio::time::timeout(SAFETY, async {
        while t.client.status(id).await.unwrap().count(JobStatus::Ready) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the lease never lapsed");

    let late = Coordinator::report(&t.client, done(id, "a", &first))
        .await
        .unwrap();
    match &late.outcomes[0] {
        CompletionOutcome::Refused { reason } => assert!(reason.contains("stale"), "{reason}"),
        other => panic!("a lost attempt's report was {other:?}"),
    }

    let second = Coordinator::claim(&t.client, claim_req(id, "b", 1, 0))
        .await
        .unwrap();
    assert_eq!(second.jobs[0].attempt_id, 2);
    let batch = done(id, "b", &second);
    let once = Coordinator::report(&t.client, batch.clone()).await.unwrap();
    let twice = Coordinator::report(&t.client, batch).await.unwrap();
    assert_eq!(once, twice, "the same report answered differently");
    assert_eq!(
        once.outcomes[0],
        CompletionOutcome::Accepted {
            status: JobStatus::Completed
        }
    );
    assert_eq!(once.workflow_state, WorkflowState::Complete);

    let results = t.client.results(id, None, 0, 10).await.unwrap().items;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        (results[0].attempt_id, results[0].runner.clone()),
        (2, Some(RunnerId("b".into())))
    );
    let kinds: Vec<_> = t
        .client
        .events(id, 0, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::JobLost), "{kinds:?}");
    assert!(kinds.contains(&EventKind::ReportRefused), "{kinds:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_a_busy_runner_through_its_waiting_heartbeat() {
    // Long leases and waits: without the early answer the runner would hear of the cancel only
    // after the safety timeout.
    let t = TestServer::start_with(|c| {
        c.leases.lease = Duration::from_secs(3600);
        c.limits.max_wait = Duration::from_secs(3600);
    })
    .await;
    let id = t
        .create("name: long\njobs:\n  - name: j{i}\n    command: sleep 600\n    parameters:\n      i: \"1:2\"\n")
        .await;
    let mut config = RunnerConfig::new(
        id,
        RunnerId("busy".into()),
        Capacity::MaxParallelJobs(2),
        t.dir.path().join("out"),
    );
    config.heartbeat_interval = Some(Duration::from_secs(3600));
    config.sample_interval = None;
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        Shutdown::new(),
    ));
    tokio::time::timeout(SAFETY, async {
        while t.client.status(id).await.unwrap().count(JobStatus::Running) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs never ran");
    t.client.cancel(id).await.unwrap();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the cancel did not reach the runner")
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, RunEnd::WorkflowCanceled);
    assert_eq!(summary.terminated, 2);
    let status = t.client.status(id).await.unwrap();
    assert_eq!(status.count(JobStatus::Terminated), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_and_caps_over_http() {
    let t = TestServer::start().await;
    let a = t.create(FLAT5).await;
    let b = t.create(FLAT5).await;
    let c = &t.client;
    let status = c.set_max_concurrent_jobs(b, Some(1)).await.unwrap();
    assert_eq!(status.workflow_id, b);
    let req = SharedClaimRequest {
        runner_id: RunnerId("shared".into()),
        limit: 4,
        resources: None,
        tags: Default::default(),
        wait_ms: 0,
    };
    let got = Coordinator::claim_shared(c, req.clone()).await.unwrap();
    let from = |w: WorkflowId| got.jobs.iter().filter(|j| j.workflow_id == w).count();
    assert_eq!(
        (from(a), from(b)),
        (3, 1),
        "b is capped at one job in flight"
    );
    c.set_max_concurrent_jobs(b, None).await.unwrap();
    let more = Coordinator::claim_shared(c, req).await.unwrap();
    assert!(more.jobs.iter().any(|j| j.workflow_id == b));

    let cap = |id: i64| {
        t.raw
            .put(t.url(&format!("/workflows/{id}/max_concurrent_jobs")))
    };
    t.expect_error(
        cap(a.0).json(&serde_json::json!({"max_concurrent_jobs": 0})),
        422,
        "invalid_input",
    )
    .await;
    t.expect_error(
        cap(999).json(&serde_json::json!({"max_concurrent_jobs": 2})),
        404,
        "not_found",
    )
    .await;
    t.expect_error(
        cap(a.0).json(&serde_json::json!({"max": 2})),
        422,
        "invalid_input",
    )
    .await;
    let shared = t.raw.post(t.url("/runners/claim"));
    t.expect_error(
        shared.json(&serde_json::json!({"runner_id": "s", "limit": 0})),
        422,
        "invalid_input",
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_one_workflow_stops_only_its_jobs_on_a_shared_runner() {
    // Long leases and waits: only the early answer of a waiting heartbeat can bring the news
    // before the safety timeout.
    let t = TestServer::start_with(|c| {
        c.leases.lease = Duration::from_secs(3600);
        c.limits.max_wait = Duration::from_secs(3600);
    })
    .await;
    let long = "name: long\njobs:\n  - name: j{i}\n    command: sleep 600\n    parameters:\n      i: \"1:2\"\n";
    let short = "name: short\njobs:\n  - name: gate\n    command: sleep 600\n  - name: after\n    command: \"true\"\n    depends_on: [gate]\n";
    let a = t.create(long).await;
    let b = t.create(short).await;
    let mut config = RunnerConfig::new(
        WorkflowId(0),
        RunnerId("pool".into()),
        Capacity::MaxParallelJobs(3),
        t.dir.path().join("out"),
    );
    config.shared = true;
    config.tags = Some(Default::default());
    config.heartbeat_interval = Some(Duration::from_secs(3600));
    config.idle_timeout = Some(Duration::from_millis(500));
    config.sample_interval = None;
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(torc_runner::run(
        Arc::new(t.client.clone()),
        config,
        shutdown.clone(),
    ));
    let running = |id| {
        let c = t.client.clone();
        async move { c.status(id).await.unwrap().count(JobStatus::Running) }
    };
    tokio::time::timeout(SAFETY, async {
        while running(a).await < 2 || running(b).await < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs never ran");
    t.client.cancel(a).await.unwrap();
    // a's two jobs end terminated; b's gate keeps running.
    tokio::time::timeout(SAFETY, async {
        while t
            .client
            .status(a)
            .await
            .unwrap()
            .count(JobStatus::Terminated)
            < 2
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the cancel never reached the shared runner");
    assert_eq!(
        running(b).await,
        1,
        "the other workflow's job was stopped too"
    );
    shutdown.trigger();
    let summary = tokio::time::timeout(SAFETY, runner)
        .await
        .expect("the runner did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(summary.terminated, 3);
    t.stop().await;
}
