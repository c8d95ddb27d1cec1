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
