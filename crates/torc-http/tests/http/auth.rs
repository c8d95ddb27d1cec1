//! Authentication and authorization over real loopback HTTP: every endpoint × every kind of
//! caller, answered 2xx or 401/403/404 as designed (and a refused request changes nothing);
//! listings and ownership; tokens created by an admin, at once and after a restart; a runner
//! with a scoped token.

use super::{TestServer, FLAT5, SAFETY};
use serde_json::{json, Value};
use std::sync::Arc;
use torc_core::api::{Coordinator, SharedClaimRequest};
use torc_core::{RunnerId, WorkflowId};
use torc_http::auth::hash_token;
use torc_http::{
    AuthConfig, ClientError, HttpClient, TokenRequest, TokenScopeSpec, WorkflowStatus,
};
use torc_runner::{Capacity, RunEnd, RunnerConfig, Shutdown};

pub(crate) const ANA: &str = "token-of-ana";
pub(crate) const BO: &str = "token-of-bo";
const CY: &str = "token-of-cy";
const ROOT: &str = "token-of-root";
const LAB_RUNNER: &str = "token-of-the-lab-runner";
const CY_RUNNER: &str = "token-of-cy-runner";

/// ana and bo share the group `lab`; cy is alone in `ops`; root is an admin.
pub(crate) fn config() -> AuthConfig {
    let text = format!(
        "users:
  - {{name: ana, groups: [lab]}}
  - {{name: bo, groups: [lab]}}
  - {{name: cy, groups: [ops]}}
  - {{name: root, admin: true}}
tokens:
  - {{name: ana, user: ana, sha256: {}}}
  - {{name: bo, user: bo, sha256: {}}}
  - {{name: cy, user: cy, sha256: {}}}
  - {{name: root, user: root, sha256: {}}}
  - {{name: lab-runner, user: bo, sha256: {}, scope: {{group: lab}}}}
  - {{name: cy-runner, user: cy, sha256: {}, scope: {{user: cy}}}}
",
        hash_token(ANA),
        hash_token(BO),
        hash_token(CY),
        hash_token(ROOT),
        hash_token(LAB_RUNNER),
        hash_token(CY_RUNNER),
    );
    AuthConfig::from_yaml(&text).unwrap()
}

async fn start() -> TestServer {
    TestServer::start_with(|c| c.auth = Some(config())).await
}

pub(crate) fn client(t: &TestServer, token: &str) -> HttpClient {
    HttpClient::new(&t.server.url())
        .unwrap()
        .with_token(token)
        .unwrap()
}

/// Who calls, relative to a workflow that ana owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    GroupMember,
    OtherUser,
    Admin,
    /// A runner token for exactly this workflow.
    RunnerOfIt,
    /// A shared runner token for the owner's group.
    GroupRunner,
    /// A runner token for another workflow (cy's).
    WrongWorkflowRunner,
    /// A shared runner token for another user's (cy's) workflows.
    OtherUserRunner,
    NoToken,
}

const CALLERS: [Caller; 9] = [
    Caller::Owner,
    Caller::GroupMember,
    Caller::OtherUser,
    Caller::Admin,
    Caller::RunnerOfIt,
    Caller::GroupRunner,
    Caller::WrongWorkflowRunner,
    Caller::OtherUserRunner,
    Caller::NoToken,
];

/// What an endpoint does, which decides who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads or changes one workflow.
    Manage,
    /// The runner path of one workflow.
    Run,
    List,
    Create,
    Tokens,
    Metrics,
    Public,
    /// A shared runner's claim across the workflows its token allows.
    SharedClaim,
}

struct Endpoint {
    method: &'static str,
    /// `{id}` is the workflow's id.
    path: &'static str,
    body: fn(WorkflowId) -> Option<String>,
    kind: Kind,
    success: u16,
}

fn none(_: WorkflowId) -> Option<String> {
    None
}

fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, body, kind, success| Endpoint {
        method,
        path,
        body,
        kind,
        success,
    };
    vec![
        e("GET", "/workflows/{id}", none, Kind::Manage, 200),
        e("GET", "/workflows/{id}/status", none, Kind::Manage, 200),
        e("GET", "/workflows/{id}/jobs", none, Kind::Manage, 200),
        e("GET", "/workflows/{id}/results", none, Kind::Manage, 200),
        e("GET", "/workflows/{id}/events", none, Kind::Manage, 200),
        e(
            "POST",
            "/workflows/{id}/cancel",
            |_| Some("{}".into()),
            Kind::Manage,
            200,
        ),
        e(
            "POST",
            "/workflows/{id}/reset",
            |_| Some(r#"{"failed_only": false}"#.into()),
            Kind::Manage,
            200,
        ),
        e(
            "POST",
            "/workflows/{id}/resume",
            |_| Some("{}".into()),
            Kind::Manage,
            200,
        ),
        e("DELETE", "/workflows/{id}", none, Kind::Manage, 204),
        e(
            "POST",
            "/workflows/{id}/claim",
            |id| {
                Some(
                    json!({"workflow_id": id.0, "runner_id": "r", "limit": 1, "wait_ms": 0})
                        .to_string(),
                )
            },
            Kind::Run,
            200,
        ),
        e(
            "POST",
            "/workflows/{id}/report",
            |id| {
                Some(
                    json!({"workflow_id": id.0, "runner_id": "r", "starts": [], "completions": []})
                        .to_string(),
                )
            },
            Kind::Run,
            200,
        ),
        e(
            "POST",
            "/workflows/{id}/heartbeat",
            |id| {
                Some(
                    json!({"workflow_id": id.0, "runner_id": "r", "held": [], "wait_ms": 0})
                        .to_string(),
                )
            },
            Kind::Run,
            200,
        ),
        e("GET", "/workflows", none, Kind::List, 200),
        e(
            "POST",
            "/workflows",
            |_| Some(FLAT5.into()),
            Kind::Create,
            201,
        ),
        e(
            "POST",
            "/tokens",
            |_| Some(json!({"user": "cy", "scope": {"user": "cy"}}).to_string()),
            Kind::Tokens,
            201,
        ),
        e("GET", "/tokens", none, Kind::Tokens, 200),
        // `t{id}`: a token made for the cell, named after its workflow.
        e("DELETE", "/tokens/t{id}", none, Kind::Tokens, 204),
        e("GET", "/metrics", none, Kind::Metrics, 200),
        e("GET", "/openapi.json", none, Kind::Public, 200),
        e(
            "PUT",
            "/workflows/{id}/max_concurrent_jobs",
            |_| Some(json!({"max_concurrent_jobs": 2}).to_string()),
            Kind::Manage,
            200,
        ),
        e(
            "POST",
            "/workflows/{id}/jobs/1/scale_resources",
            |_| Some(json!({"runtime_factor": 1.5}).to_string()),
            Kind::Manage,
            200,
        ),
        e(
            "POST",
            "/runners/claim",
            |_| Some(json!({"runner_id": "r", "limit": 1, "wait_ms": 0}).to_string()),
            Kind::SharedClaim,
            200,
        ),
    ]
}

/// The status an endpoint answers a caller, as designed: 0 stands for the endpoint's success.
fn expected(kind: Kind, caller: Caller) -> u16 {
    use Caller::*;
    let runner = matches!(
        caller,
        RunnerOfIt | GroupRunner | WrongWorkflowRunner | OtherUserRunner
    );
    match (kind, caller) {
        (Kind::Public, _) => 0,
        (_, NoToken) => 401,
        (Kind::Metrics, _) => 0,
        (Kind::Manage, Owner | GroupMember | Admin) => 0,
        (Kind::Manage, OtherUser) => 404,
        (Kind::Manage, _) => 403,
        (Kind::Run, Owner | GroupMember | Admin | RunnerOfIt | GroupRunner) => 0,
        (Kind::Run, OtherUser) => 404,
        (Kind::Run, _) => 403,
        (Kind::List | Kind::Create, _) if runner => 403,
        (Kind::List | Kind::Create, _) => 0,
        (Kind::Tokens, Admin) => 0,
        (Kind::Tokens, _) => 403,
        // A token for one workflow is no shared runner's.
        (Kind::SharedClaim, RunnerOfIt | WrongWorkflowRunner) => 403,
        (Kind::SharedClaim, _) => 0,
    }
}

fn code_of(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        _ => "?",
    }
}

/// Sends `endpoint` about workflow `id` with `token`: the status, the body, and whether a 401
/// came with `WWW-Authenticate: Bearer`.
async fn call(
    t: &TestServer,
    endpoint: &Endpoint,
    id: WorkflowId,
    token: Option<&str>,
) -> (u16, Value, bool) {
    let path = endpoint.path.replace("{id}", &id.0.to_string());
    let url = if path == "/metrics" {
        format!("{}/metrics", t.server.url())
    } else {
        t.url(&path)
    };
    let method = reqwest::Method::from_bytes(endpoint.method.as_bytes()).unwrap();
    let mut rb = t.raw.request(method, url);
    if let Some(token) = token {
        rb = rb.bearer_auth(token);
    }
    if let Some(body) = (endpoint.body)(id) {
        rb = rb.body(body);
    }
    let res = rb.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer"));
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, challenge)
}

/// What a refused request must leave as it was.
async fn snapshot(ana: &HttpClient, id: WorkflowId) -> WorkflowStatus {
    ana.status(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_caller_as_designed() {
    let t = start().await;
    let ana = client(&t, ANA);
    let root = client(&t, ROOT);
    let cy = client(&t, CY);
    let cys = cy
        .create_workflow(FLAT5, super::SpecFormat::Yaml)
        .await
        .unwrap();
    let wrong_runner = root
        .create_token(&TokenRequest {
            user: "cy".into(),
            name: Some("cy-wf".into()),
            scope: Some(TokenScopeSpec {
                workflow: Some(cys.id.0),
                ..TokenScopeSpec::default()
            }),
        })
        .await
        .unwrap()
        .token;

    let mut failures = Vec::new();
    let mut cells = 0;
    for endpoint in endpoints() {
        for caller in CALLERS {
            // A fresh workflow of ana's for every cell: what one call changes (a cancel, a
            // delete, a claim) cannot decide what the next one is answered.
            let id = ana
                .create_workflow(FLAT5, super::SpecFormat::Yaml)
                .await
                .unwrap()
                .id;
            let its_runner;
            let token = match caller {
                Caller::Owner => Some(ANA),
                Caller::GroupMember => Some(BO),
                Caller::OtherUser => Some(CY),
                Caller::Admin => Some(ROOT),
                Caller::RunnerOfIt => {
                    its_runner = root
                        .create_token(&TokenRequest {
                            user: "ana".into(),
                            name: None,
                            scope: Some(TokenScopeSpec {
                                workflow: Some(id.0),
                                ..TokenScopeSpec::default()
                            }),
                        })
                        .await
                        .unwrap()
                        .token;
                    Some(its_runner.as_str())
                }
                Caller::GroupRunner => Some(LAB_RUNNER),
                Caller::WrongWorkflowRunner => Some(wrong_runner.as_str()),
                Caller::OtherUserRunner => Some(CY_RUNNER),
                Caller::NoToken => None,
            };
            let revoked = format!("t{id}");
            if endpoint.path.starts_with("/tokens/") {
                root.create_token(&TokenRequest {
                    user: "ana".into(),
                    name: Some(revoked.clone()),
                    scope: None,
                })
                .await
                .unwrap();
            }
            let before = snapshot(&ana, id).await;
            let (status, body, challenge) = call(&t, &endpoint, id, token).await;
            cells += 1;
            let want = match expected(endpoint.kind, caller) {
                0 => endpoint.success,
                s => s,
            };
            let cell = format!("{} {} as {caller:?}", endpoint.method, endpoint.path);
            if status != want {
                failures.push(format!("{cell}: {status} (expected {want}): {body}"));
                continue;
            }
            if status >= 400 {
                if body["code"] != code_of(status) || !body["message"].is_string() {
                    failures.push(format!("{cell}: body {body}"));
                }
                if status == 401 && !challenge {
                    failures.push(format!("{cell}: 401 without WWW-Authenticate: Bearer"));
                }
                if status == 404 && body["message"] != format!("workflow {id} not found") {
                    failures.push(format!(
                        "{cell}: a hidden workflow must read as a missing one: {body}"
                    ));
                }
                if snapshot(&ana, id).await != before {
                    failures.push(format!("{cell}: refused, yet the workflow changed"));
                }
                let tokens = root.list_tokens().await.unwrap();
                if endpoint.path.starts_with("/tokens/")
                    && !tokens.iter().any(|t| t.name == revoked)
                {
                    failures.push(format!("{cell}: refused, yet the token is gone"));
                }
            }
        }
    }
    assert_eq!(cells, 22 * 9);
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The 404 of a workflow one may not see is the 404 of one that does not exist.
    let missing = WorkflowId(1_000_000);
    let endpoints = endpoints();
    let (s, body, _) = call(&t, &endpoints[1], missing, Some(ROOT)).await;
    assert_eq!(
        (s, body["message"].as_str()),
        (404, Some("workflow 1000000 not found"))
    );
    // A runner token learns nothing either: outside its scope, existing or not, it is 403.
    let (s, _, _) = call(&t, &endpoints[9], missing, Some(CY_RUNNER)).await;
    assert_eq!(s, 403);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_what_the_caller_may_see_and_creators_own_their_workflows() {
    let t = start().await;
    let (ana, bo, cy, root) = (
        client(&t, ANA),
        client(&t, BO),
        client(&t, CY),
        client(&t, ROOT),
    );
    let yaml = super::SpecFormat::Yaml;
    let a = ana.create_workflow(FLAT5, yaml).await.unwrap().id;
    let b = bo.create_workflow(FLAT5, yaml).await.unwrap().id;
    let c = cy.create_workflow(FLAT5, yaml).await.unwrap().id;
    let named = |user: &str| format!("user: {user}\n{FLAT5}");

    // The spec's `user` may name the caller, or anyone when the caller is an admin.
    let a2 = ana.create_workflow(named("ana"), yaml).await.unwrap().id;
    let err = ana.create_workflow(named("cy"), yaml).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let c2 = root.create_workflow(named("cy"), yaml).await.unwrap().id;
    let r = root.create_workflow(FLAT5, yaml).await.unwrap().id;

    let owners: Vec<(WorkflowId, Option<String>)> = root
        .list_workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.id, w.user))
        .collect();
    let own = |id, user: &str| (id, Some(user.to_string()));
    assert_eq!(
        owners,
        vec![
            own(a, "ana"),
            own(b, "bo"),
            own(c, "cy"),
            own(a2, "ana"),
            own(c2, "cy"),
            own(r, "root")
        ]
    );
    let ids = |list: Vec<torc_http::Workflow>| list.into_iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(ids(ana.list_workflows().await.unwrap()), vec![a, b, a2]);
    assert_eq!(ids(bo.list_workflows().await.unwrap()), vec![a, b, a2]);
    assert_eq!(ids(cy.list_workflows().await.unwrap()), vec![c, c2]);

    // A group member changes the owner's workflow; the other user cannot even see it.
    bo.cancel(a).await.unwrap();
    assert_eq!(
        ana.status(a).await.unwrap().state,
        torc_core::changes::WorkflowState::Canceled
    );
    assert_eq!(cy.delete_workflow(a).await.unwrap_err().status(), Some(404));
    ana.workflow(a).await.unwrap();

    // Without a token, or with an unknown one, nothing at all.
    let anonymous = HttpClient::new(&t.server.url()).unwrap();
    let err = anonymous.list_workflows().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 401, code, .. } if code.name() == "unauthorized"),
        "{err}"
    );
    let forged = client(&t, &format!("{ANA}x"));
    assert_eq!(forged.status(a).await.unwrap_err().status(), Some(401));
    // The token is checked before the body is read: a malformed body without one is still 401.
    let rb = t
        .raw
        .post(t.url(&format!("/workflows/{a}/claim")))
        .body("not json");
    t.expect_error(rb, 401, "unauthorized").await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_tokens_that_work_at_once_and_after_a_restart() {
    let t = start().await;
    let root = client(&t, ROOT);
    let cy = client(&t, CY);
    let id = cy
        .create_workflow(FLAT5, super::SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let request = |user: &str, name: Option<&str>, scope: Option<TokenScopeSpec>| TokenRequest {
        user: user.into(),
        name: name.map(Into::into),
        scope,
    };
    let on = |id: WorkflowId| {
        Some(TokenScopeSpec {
            workflow: Some(id.0),
            ..TokenScopeSpec::default()
        })
    };

    let plain = root
        .create_token(&request("cy", Some("cy-laptop"), None))
        .await
        .unwrap();
    assert_eq!(
        (plain.name.as_str(), plain.user.as_str()),
        ("cy-laptop", "cy")
    );
    assert!(plain.token.starts_with(torc_http::auth::TOKEN_PREFIX));
    let runner = root
        .create_token(&request("cy", None, on(id)))
        .await
        .unwrap();
    assert!(runner.name.starts_with("cy-"), "{}", runner.name);
    assert_eq!(runner.scope, on(id));

    // Refusals, each with its reason.
    let refused = |r: Result<torc_http::CreatedToken, ClientError>| r.unwrap_err().status();
    let ana = client(&t, ANA);
    assert_eq!(
        refused(ana.create_token(&request("ana", None, None)).await),
        Some(403)
    );
    assert_eq!(
        refused(root.create_token(&request("zed", None, None)).await),
        Some(422)
    );
    let group = |g: &str| {
        Some(TokenScopeSpec {
            group: Some(g.into()),
            ..TokenScopeSpec::default()
        })
    };
    assert_eq!(
        refused(
            root.create_token(&request("cy", None, group("nobody")))
                .await
        ),
        Some(422)
    );
    assert_eq!(
        refused(
            root.create_token(&request("cy", None, on(WorkflowId(999))))
                .await
        ),
        Some(404)
    );
    assert_eq!(
        refused(
            root.create_token(&request("cy", Some("cy-laptop"), None))
                .await
        ),
        Some(409),
        "a name already stored"
    );
    assert_eq!(
        refused(root.create_token(&request("cy", Some("ana"), None)).await),
        Some(409),
        "a name of the configuration"
    );

    let check = |t: &TestServer| {
        let (plain, runner) = (client(t, &plain.token), client(t, &runner.token));
        async move {
            assert_eq!(plain.status(id).await.unwrap().total, 5);
            let claim = super::claim_req(id, "r", 1, 0);
            assert_eq!(runner.claim_jobs(&claim).await.unwrap().jobs.len(), 1);
            assert_eq!(runner.status(id).await.unwrap_err().status(), Some(403));
        }
    };
    check(&t).await;
    let t = t.restart().await;
    check(&t).await;

    // Listed without secrets; revoked ones stop working at once and stay revoked.
    let root = client(&t, ROOT);
    let listed = root.list_tokens().await.unwrap();
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|t| (t.name.as_str(), t.source.as_str()))
        .collect();
    assert_eq!(&names[..2], [("ana", "config"), ("bo", "config")]);
    assert_eq!(
        &names[names.len() - 2..],
        [("cy-laptop", "api"), (runner.name.as_str(), "api")]
    );
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&plain.token) && !text.contains(&hash_token(&plain.token)));
    root.revoke_token("cy-laptop").await.unwrap();
    assert_eq!(
        client(&t, &plain.token)
            .status(id)
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert_eq!(
        root.revoke_token("cy-laptop").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        root.revoke_token("ana").await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        client(&t, ANA).list_tokens().await.unwrap_err().status(),
        Some(403)
    );
    let t = t.restart().await;
    assert_eq!(
        client(&t, &plain.token)
            .status(id)
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert_eq!(client(&t, ANA).list_workflows().await.unwrap().len(), 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_runs_its_workflow_with_a_scoped_token_and_is_refused_elsewhere() {
    let t = start().await;
    let ana = client(&t, ANA);
    let root = client(&t, ROOT);
    let mine = ana
        .create_workflow(FLAT5, super::SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let other = ana
        .create_workflow(FLAT5, super::SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let token = root
        .create_token(&TokenRequest {
            user: "ana".into(),
            name: None,
            scope: Some(TokenScopeSpec {
                workflow: Some(mine.0),
                ..TokenScopeSpec::default()
            }),
        })
        .await
        .unwrap()
        .token;
    let runner = |id: WorkflowId| {
        let mut config = RunnerConfig::new(
            id,
            RunnerId("scoped".into()),
            Capacity::MaxParallelJobs(2),
            t.dir.path().join("out"),
        );
        config.sample_interval = None;
        torc_runner::run(Arc::new(client(&t, &token)), config, Shutdown::new())
    };
    let done = tokio::time::timeout(SAFETY, runner(mine))
        .await
        .expect("the runner never finished")
        .unwrap();
    assert_eq!((done.end, done.completed), (RunEnd::WorkflowComplete, 5));
    let refused = tokio::time::timeout(SAFETY, runner(other))
        .await
        .expect("a refused runner must stop, not retry forever");
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("403") || err.contains("forbidden"), "{err}");
    assert_eq!(ana.status(other).await.unwrap().total, 5);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_everyone_local_is_trusted_and_tokens_mean_nothing() {
    let t = TestServer::start().await;
    let id = t.create(FLAT5).await;
    // A token is neither needed nor checked.
    let any = client(&t, "whatever");
    assert_eq!(any.status(id).await.unwrap().total, 5);
    let err = t
        .client
        .create_token(&TokenRequest {
            user: "ana".into(),
            name: None,
            scope: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(err.to_string().contains("--auth-config"), "{err}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_hand_out_only_the_workflows_a_token_allows() {
    let t = start().await;
    let yaml = super::SpecFormat::Yaml;
    let a = client(&t, ANA)
        .create_workflow(FLAT5, yaml)
        .await
        .unwrap()
        .id;
    let b = client(&t, BO)
        .create_workflow(FLAT5, yaml)
        .await
        .unwrap()
        .id;
    let c = client(&t, CY)
        .create_workflow(FLAT5, yaml)
        .await
        .unwrap()
        .id;
    // Claims everything the token may have, and says from which workflows it came.
    let claim_all = |token: &'static str| {
        let c = client(&t, token);
        async move {
            let req = SharedClaimRequest {
                runner_id: RunnerId(format!("pool-{}", &token[..3])),
                limit: 100,
                resources: None,
                tags: Default::default(),
                wait_ms: 0,
            };
            let got = Coordinator::claim_shared(&c, req).await.unwrap();
            let mut from: Vec<WorkflowId> = got.jobs.iter().map(|j| j.workflow_id).collect();
            from.sort();
            from.dedup();
            from
        }
    };
    // cy's own runner token reaches cy's workflows only.
    assert_eq!(claim_all(CY_RUNNER).await, [c]);
    // The lab group's runner token reaches ana's and bo's.
    assert_eq!(claim_all(LAB_RUNNER).await, [a, b]);
    assert_eq!(
        claim_all(ROOT).await,
        Vec::<WorkflowId>::new(),
        "nothing left"
    );
    t.stop().await;
}
