//! Hostile requests: values the database cannot hold, floods of runners and long polls,
//! cross-site requests to a server without authentication, retried creations, a huge delete.
//! Each refused request gets a 4xx `{code, message}` and leaves every other caller unaffected.

use super::*;

/// Claims `n` jobs of workflow `id` for `runner`.
async fn take(t: &TestServer, id: WorkflowId, runner: &str, n: u32) -> ClaimResponse {
    let got = Coordinator::claim(&t.client, claim_req(id, runner, n, 0))
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), n as usize);
    got
}

fn accepted(answer: &torc_core::api::ReportResponse) -> bool {
    answer.outcomes.iter().all(|o| {
        matches!(
            o,
            CompletionOutcome::Accepted {
                status: JobStatus::Completed
            }
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_database_cannot_hold_are_refused_at_the_boundary() {
    let t = TestServer::start().await;
    let a = t.create(FLAT5).await;
    let b = t.create(FLAT5).await;
    let got_a = take(&t, a, "ra", 2).await;
    let got_b = take(&t, b, "rb", 1).await;
    let report_url = t.url(&format!("/workflows/{a}/report"));

    // A peak memory above i64::MAX fits the wire (u64) but not the column: 422, not a failed
    // commit for everyone.
    let mut bad = done(a, "ra", &got_a);
    bad.completions[0].peak_memory_bytes = Some(u64::MAX);
    let body = t
        .expect_error(t.raw.post(&report_url).json(&bad), 422, "invalid_input")
        .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("peak_memory_bytes"),
        "{body}"
    );
    let mut bad = done(a, "ra", &got_a);
    bad.completions[1].attempt_id = u32::MAX;
    t.expect_error(t.raw.post(&report_url).json(&bad), 422, "invalid_input")
        .await;

    // Identifiers with NUL or control characters.
    for runner in ["r\0", "tab\tbed", "line\nbreak"] {
        t.expect_error(
            t.raw
                .post(t.url(&format!("/workflows/{a}/claim")))
                .json(&claim_req(a, runner, 1, 0)),
            422,
            "invalid_input",
        )
        .await;
        t.expect_error(
            t.raw
                .post(t.url(&format!("/workflows/{a}/heartbeat")))
                .json(&HeartbeatRequest {
                    workflow_id: a,
                    runner_id: RunnerId(runner.into()),
                    held: Vec::new(),
                    wait_ms: 0,
                }),
            422,
            "invalid_input",
        )
        .await;
    }
    // A spec string holding NUL through an escape.
    let spec = json!({"name": "nul", "jobs": [{"name": "a", "command": "echo \u{0}"}]});
    t.expect_error(
        t.raw
            .post(t.url("/workflows"))
            .header("content-type", "application/json")
            .body(spec.to_string()),
        422,
        "invalid_input",
    )
    .await;

    // Nothing else was affected: both workflows' jobs are as they were, and their good
    // reports go through.
    let status = t.client.status(a).await.unwrap();
    assert_eq!(status.count(JobStatus::Pending), 2, "{status:?}");
    assert!(accepted(
        &Coordinator::report(&t.client, done(a, "ra", &got_a))
            .await
            .unwrap()
    ));
    assert!(accepted(
        &Coordinator::report(&t.client, done(b, "rb", &got_b))
            .await
            .unwrap()
    ));
    assert_eq!(
        t.client
            .status(a)
            .await
            .unwrap()
            .count(JobStatus::Completed),
        2
    );
    assert_eq!(t.client.list_workflows().await.unwrap().len(), 2);
    t.stop().await;
}

/// What a web page can make a browser send to a server without authentication: a `text/plain`
/// POST (no preflight), a request from a foreign origin, a request to a name rebound to
/// 127.0.0.1. Each is refused and creates nothing; the client, which declares its bodies,
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_browser_could_send_cross_site_are_refused_without_authentication() {
    let t = TestServer::start_with(|c| c.allowed_hosts = vec!["torc.example".into()]).await;
    let port = t.server.local_addr().port();
    let create = || t.raw.post(t.url("/workflows")).body(FLAT5);

    let body = t
        .expect_error(
            create()
                .header("content-type", "text/plain;charset=UTF-8")
                .header("origin", "http://evil.example"),
            403,
            "forbidden",
        )
        .await;
    assert!(body["message"].as_str().unwrap().contains("evil.example"));
    t.expect_error(
        create().header("content-type", "text/plain"),
        415,
        "invalid_input",
    )
    .await;
    t.expect_error(create(), 415, "invalid_input").await;
    t.expect_error(
        create().header(YAML.0, YAML.1).header("origin", "null"),
        403,
        "forbidden",
    )
    .await;
    // A page at a name pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host.
    for host in ["evil.example", "127.0.0.1:1"] {
        t.expect_error(
            t.raw.get(t.url("/workflows")).header("host", host),
            403,
            "forbidden",
        )
        .await;
    }
    assert!(
        t.client.list_workflows().await.unwrap().is_empty(),
        "nothing was created"
    );

    // Loopback names with the port, the names allowed, and a same-origin request pass.
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "torc.example".to_string(),
    ] {
        let (status, _) = t
            .send(
                create()
                    .header(YAML.0, YAML.1)
                    .header("host", host.as_str())
                    .header("origin", format!("http://{host}")),
            )
            .await;
        assert_eq!(status, 201, "{host}");
    }
    let id = t.create(FLAT5).await;
    t.client.cancel(id).await.unwrap();
    t.client.reset(id, false).await.unwrap();
    t.client.delete_workflow(id).await.unwrap();
    assert_eq!(t.client.list_workflows().await.unwrap().len(), 3);
    t.stop().await;
}

/// Polls the engine until `n` long polls are parked in it.
async fn until_parked(t: &TestServer, n: u64) {
    let deadline = tokio::time::Instant::now() + SAFETY;
    while t.server.engine().stats().waiting != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} long polls never parked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One token naming runners without end, or holding long polls without end, is answered 429
/// past its bound; another token's runners are served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_runners_and_long_polls_is_bounded_per_token() {
    let t = TestServer::start_with(|c| {
        c.auth = Some(auth::config());
        c.limits.floods = torc_http::FloodLimits {
            runners_per_token: 3,
            runners_total: 1000,
            waits_per_token: 2,
            waits_total: 1000,
        };
    })
    .await;
    let ana = auth::client(&t, auth::ANA);
    let bo = auth::client(&t, auth::BO);
    let one = "name: one\njobs:\n  - name: a\n    command: \"true\"\n";
    let id = ana.create_workflow(one, SpecFormat::Yaml).await.unwrap().id;
    let claim_url = t.url(&format!("/workflows/{id}/claim"));
    let as_ana = |body: &ClaimRequest| t.raw.post(&claim_url).bearer_auth(auth::ANA).json(body);

    // Runners: ana's token may name three.
    let got = Coordinator::claim(&ana, claim_req(id, "a1", 1, 0))
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 1, "the one job is a1's: later claims wait");
    for r in ["a2", "a3", "a1"] {
        Coordinator::claim(&ana, claim_req(id, r, 1, 0))
            .await
            .unwrap();
    }
    let body = t
        .expect_error(as_ana(&claim_req(id, "a4", 1, 0)), 429, "too_many_requests")
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("3 runners"),
        "{body}"
    );
    let err = Coordinator::claim(&ana, claim_req(id, "a4", 1, 0))
        .await
        .unwrap_err();
    assert!(
        err.is_transient(),
        "a runner backs off and retries: {err:?}"
    );
    Coordinator::claim(&bo, claim_req(id, "b1", 1, 0))
        .await
        .unwrap();

    // Long polls: ana's token may hold two.
    let parked: Vec<_> = ["a1", "a2"]
        .into_iter()
        .map(|r| {
            let ana = ana.clone();
            tokio::spawn(async move { Coordinator::claim(&ana, claim_req(id, r, 1, 30_000)).await })
        })
        .collect();
    until_parked(&t, 2).await;
    t.expect_error(
        as_ana(&claim_req(id, "a3", 1, 30_000)),
        429,
        "too_many_requests",
    )
    .await;
    let beat = HeartbeatRequest {
        workflow_id: id,
        runner_id: RunnerId("a3".into()),
        held: Vec::new(),
        wait_ms: 30_000,
    };
    t.expect_error(
        t.raw
            .post(t.url(&format!("/workflows/{id}/heartbeat")))
            .bearer_auth(auth::ANA)
            .json(&beat),
        429,
        "too_many_requests",
    )
    .await;
    // ana's heartbeats that do not wait, and bo's long polls, are served.
    ana.heartbeat(HeartbeatRequest { wait_ms: 0, ..beat })
        .await
        .unwrap();
    let bo_waits = Coordinator::claim(&bo, claim_req(id, "b1", 1, 100))
        .await
        .unwrap();
    assert!(bo_waits.jobs.is_empty());

    // Answered, the long polls give their room back.
    ana.cancel(id).await.unwrap();
    for p in parked {
        let answer = tokio::time::timeout(SAFETY, p)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(answer.workflow_state, WorkflowState::Canceled);
    }
    Coordinator::claim(&ana, claim_req(id, "a3", 1, 30_000))
        .await
        .unwrap();
    t.stop().await;
}

/// A runner's long-poll claim whose connection closes (the runner died, or gave up) takes no
/// job: the job that becomes ready is there for the next runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_claim_whose_client_went_away_takes_no_job() {
    let t = TestServer::start().await;
    let pair = "name: pair\njobs:\n  - name: a\n    command: \"true\"\n  - name: b\n    command: \"true\"\n    depends_on: [a]\n";
    let id = t.create(pair).await;
    let first = take(&t, id, "ra", 1).await;
    let gone = {
        let client = t.client.clone();
        tokio::spawn(
            async move { Coordinator::claim(&client, claim_req(id, "rb", 1, 30_000)).await },
        )
    };
    until_parked(&t, 1).await;
    gone.abort();
    // The server notices the closed connection: the claim is no longer in flight, long before
    // its 30 s deadline would have ended it.
    let route = "torc_http_requests_in_flight{method=\"POST\",route=\"/torc-service/v1/workflows/{id}/claim\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = t.client.metrics().await.unwrap();
        if torc_http::parse_sample(&metrics, route).unwrap_or(0.0) == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed claim stayed in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(accepted(
        &Coordinator::report(&t.client, done(id, "ra", &first))
            .await
            .unwrap()
    ));
    let next = take(&t, id, "rc", 1).await;
    assert_eq!(next.jobs[0].name, "b");
    t.stop().await;
}

/// A creation sent again with its `Idempotency-Key` (its answer was lost, the client retried)
/// gets the first answer, not a second workflow, even after a restart; the key reused for
/// another spec is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_creation_with_its_key_gets_the_first_answer() {
    let t = TestServer::start().await;
    fn create(t: &TestServer, key: &str, spec: &str) -> reqwest::RequestBuilder {
        t.raw
            .post(t.url("/workflows"))
            .header(YAML.0, YAML.1)
            .header("idempotency-key", key)
            .body(spec.to_string())
    }
    let (status, first) = t.send(create(&t, "k-1", FLAT5)).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = t.send(create(&t, "k-1", FLAT5)).await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(t.client.list_workflows().await.unwrap().len(), 1);

    let other = FLAT5.replace("flat5", "other");
    let body = t
        .expect_error(create(&t, "k-1", &other), 422, "invalid_input")
        .await;
    assert!(body["message"].as_str().unwrap().contains("k-1"), "{body}");
    t.expect_error(create(&t, "bad key", FLAT5), 422, "invalid_input")
        .await;

    // The client sends a key of its own, or the one it is given.
    let c1 = t
        .client
        .create_workflow_with_key(&other, SpecFormat::Yaml, "k-2");
    let one = c1.await.unwrap();
    let two = t
        .client
        .create_workflow_with_key(&other, SpecFormat::Yaml, "k-2")
        .await
        .unwrap();
    assert_eq!(one.id, two.id);
    assert_eq!(t.client.list_workflows().await.unwrap().len(), 2);

    // Keys are kept in the database.
    let t = t.restart().await;
    let (status, after) = t.send(create(&t, "k-1", FLAT5)).await;
    assert_eq!((status, &after), (201, &first));
    assert_eq!(t.client.list_workflows().await.unwrap().len(), 2);
    // Deleting the workflow frees its key.
    let id = WorkflowId(first["id"].as_i64().unwrap());
    t.client.delete_workflow(id).await.unwrap();
    let (status, fresh) = t.send(create(&t, "k-1", FLAT5)).await;
    assert_eq!(status, 201);
    assert_ne!(fresh["id"], first["id"]);
    t.stop().await;
}

/// Deleting a workflow of 200,000 jobs goes a chunk of rows per transaction between the
/// engine's group commits: another workflow's claims and reports are all answered while the
/// delete is still under way, and the deleted workflow is gone from every read at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_huge_workflow_does_not_hold_back_the_others() {
    let t = TestServer::start().await;
    let big = "name: big\njobs:\n  - name: j{i}\n    command: \"true\"\n    parameters:\n      i: \"1:200000\"\n";
    let created = std::time::Instant::now();
    let big = t.create(big).await;
    eprintln!("created 200,000 jobs in {:?}", created.elapsed());
    let small = t.create(FLAT5).await;

    let started = std::time::Instant::now();
    let deleting = {
        let client = t.client.clone();
        tokio::spawn(async move {
            client.delete_workflow(big).await.unwrap();
            started.elapsed()
        })
    };
    // Hidden as soon as the delete is under way.
    let deadline = tokio::time::Instant::now() + SAFETY;
    while t.client.workflow(big).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "never hidden");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!t
        .client
        .list_workflows()
        .await
        .unwrap()
        .iter()
        .any(|w| w.id == big));
    for i in 0..5 {
        let got = take(&t, small, &format!("r{i}"), 1).await;
        let answer = Coordinator::report(&t.client, done(small, &format!("r{i}"), &got))
            .await
            .unwrap();
        assert!(accepted(&answer));
    }
    let served = started.elapsed();
    assert!(
        !deleting.is_finished(),
        "the other workflow's 10 requests waited for the whole delete"
    );
    let took = tokio::time::timeout(SAFETY, deleting)
        .await
        .unwrap()
        .unwrap();
    eprintln!("the other workflow was served in {served:?}; the delete took {took:?}");
    assert_eq!(
        t.client.status(small).await.unwrap().state,
        WorkflowState::Complete
    );
    assert_eq!(
        t.client.workflow(big).await.unwrap_err().status(),
        Some(404)
    );
    t.stop().await;
}

/// A spec small on the wire that takes a while to expand (200,000 jobs).
const SLOW_SPEC: &str = "name: slow
jobs:
  - name: j_{a}_{b}
    command: echo {a} {b}
    parameters: {a: \"1:500\", b: \"1:400\"}
";

/// Specs are read a bounded number at once and for a bounded time: past the time the creation
/// gets 422 (while the thread still reading it keeps its turn, so slow specs never pile up
/// threads), and a creation that cannot get a turn in time gets 503; the rest of the server
/// answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_are_read_few_at_once_and_for_a_bounded_time() {
    let t = TestServer::start_with(|c| {
        c.limits.spec_parses = 1;
        c.limits.spec_parse_time = std::time::Duration::from_millis(30);
    })
    .await;
    let small = t.create(FLAT5).await;
    let create = || {
        t.raw
            .post(t.url("/workflows"))
            .header("content-type", "application/yaml")
            .body(SLOW_SPEC)
    };
    let body = t.expect_error(create(), 422, "invalid_input").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--spec-parse-secs"),
        "{body}"
    );
    // The first spec is still being read (it takes far longer than 30 ms): no turn for this one.
    let body = t.expect_error(create(), 503, "internal").await;
    assert!(body["message"].as_str().unwrap().contains("busy"), "{body}");
    // Everything else is answered meanwhile.
    let (status, summary) = t
        .send(t.raw.get(t.url(&format!("/workflows/{small}"))))
        .await;
    assert_eq!(status, 200, "{summary}");
    t.stop().await;
}

/// Few aliases, each replaying many nodes: 15 million scalars from 2 KB (a hang of seconds and
/// gigabytes before the alias budget).
fn wide_laughs() -> String {
    let mut text = String::from("name: lol\nx0: &x0 [");
    text.push_str(&["l"; 500].join(","));
    text.push_str("]\nx1: &x1 [");
    text.push_str(&["*x0"; 100].join(","));
    text.push_str("]\nx2: &x2 [");
    text.push_str(&["*x1"; 100].join(","));
    text.push_str("]\nx3: &x3 [");
    text.push_str(&["*x2"; 3].join(","));
    text.push_str("]\njobs: []\n");
    text
}

/// Specs whose aliases replay millions of nodes, posted four at once, are each refused with 422
/// naming the budget, and a good spec created right after goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_over_a_budget_is_refused_and_nobody_else_waits() {
    let t = TestServer::start().await;
    let bomb = wide_laughs();
    let post = || {
        t.expect_error(
            t.raw
                .post(t.url("/workflows"))
                .header("content-type", "application/yaml")
                .body(bomb.clone()),
            422,
            "invalid_input",
        )
    };
    let (a, b, c, d) = tokio::join!(post(), post(), post(), post());
    for body in [a, b, c, d] {
        let text = body.to_string();
        assert!(text.contains("YAML nodes replayed by aliases"), "{text}");
    }
    let id = t.create(FLAT5).await;
    let (status, summary) = t.send(t.raw.get(t.url(&format!("/workflows/{id}")))).await;
    assert_eq!(status, 200, "{summary}");
    t.stop().await;
}
