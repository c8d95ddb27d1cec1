use super::*;

const CONFIG: &str = "
users:
  - {name: ana, groups: [lab]}
  - {name: bo, groups: [lab, ops]}
  - {name: cy}
  - {name: root, admin: true}
tokens:
  - {name: ana, user: ana, sha256: HASH_ANA}
  - {name: cy, user: cy, sha256: HASH_CY}
  - {name: root, user: root, sha256: HASH_ROOT}
  - {name: wf7, user: ana, sha256: HASH_WF7, scope: {workflow: 7}}
  - {name: ana-runner, user: ana, sha256: HASH_ANA_RUNNER, scope: {user: ana}}
  - {name: lab-runner, user: bo, sha256: HASH_LAB, scope: {group: lab}}
  - {name: root-runner, user: root, sha256: HASH_ROOT_RUNNER, scope: {group: ops}}
";

fn config_text() -> String {
    let mut text = CONFIG.to_string();
    // Longest first: `HASH_ANA` is a prefix of `HASH_ANA_RUNNER`.
    for name in [
        "ANA_RUNNER",
        "ROOT_RUNNER",
        "ANA",
        "CY",
        "ROOT",
        "WF7",
        "LAB",
    ] {
        text = text.replace(&format!("HASH_{name}"), &hash_token(name));
    }
    text
}

fn auth() -> Auth {
    Auth::enabled(AuthConfig::from_yaml(&config_text()).unwrap(), Vec::new())
}

fn who(auth: &Auth, token: &str) -> Principal {
    auth.authenticate(Some(format!("Bearer {token}").as_bytes()))
        .unwrap()
}

fn status(r: Result<(), ApiError>) -> u16 {
    match r {
        Ok(()) => 200,
        Err(e) => e.kind.status().as_u16(),
    }
}

#[test]
fn tokens_are_recognized_by_their_hash() {
    let auth = auth();
    let p = who(&auth, "ANA");
    assert_eq!(p.user(), Some("ana"));
    for bad in [
        None,
        Some("Bearer nope"),
        Some("Basic ANA"),
        Some("Bearer "),
    ] {
        let e = auth.authenticate(bad.map(str::as_bytes)).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Unauthorized, "{bad:?}");
    }
    let lab = auth.authenticate(Some(b"bearer LAB")).unwrap();
    assert_eq!(lab.user(), Some("bo"), "`bearer` in any case");
    assert!(matches!(
        Auth::disabled().authenticate(None).unwrap(),
        Principal::Local
    ));
}

#[test]
fn who_may_do_what() {
    let auth = auth();
    let w = WorkflowId(7);
    let cases = [
        // (token, access, owner, expected status)
        ("ANA", Access::Manage, Some("ana"), 200),
        ("ANA", Access::Manage, Some("bo"), 200), // shares `lab`
        ("ANA", Access::Run, Some("bo"), 200),
        ("ANA", Access::Manage, Some("cy"), 404),
        ("ANA", Access::Manage, None, 404),
        ("CY", Access::Manage, Some("ana"), 404),
        ("ROOT", Access::Manage, Some("cy"), 200),
        ("ROOT", Access::Manage, None, 200),
        ("WF7", Access::Run, Some("cy"), 200), // the scope alone decides
        ("WF7", Access::Manage, Some("ana"), 403),
        ("ANA_RUNNER", Access::Run, Some("ana"), 200),
        ("ANA_RUNNER", Access::Run, Some("bo"), 403),
        ("ANA_RUNNER", Access::Manage, Some("ana"), 403),
        ("LAB", Access::Run, Some("ana"), 200),
        ("LAB", Access::Run, Some("cy"), 403),
        ("LAB", Access::Run, None, 403),
        ("ROOT_RUNNER", Access::Run, Some("ana"), 403), // admin does not widen a scope
        ("ROOT_RUNNER", Access::Run, Some("bo"), 200),
    ];
    for (token, access, owner, expected) in cases {
        let p = who(&auth, token);
        let got = status(auth.authorize(&p, w, access, Owner::Is(owner)));
        assert_eq!(got, expected, "{token} {access:?} {owner:?}");
    }
    let wf7 = who(&auth, "WF7");
    assert_eq!(
        status(auth.authorize(&wf7, WorkflowId(8), Access::Run, Owner::NotLookedUp)),
        403
    );
    let lab = who(&auth, "LAB");
    assert_eq!(
        status(auth.authorize(&lab, w, Access::Run, Owner::NoSuchWorkflow)),
        403,
        "a runner token learns nothing of workflows outside its scope"
    );
    assert!(!auth.needs_owner(&who(&auth, "ROOT"), Access::Manage));
    assert!(auth.needs_owner(&who(&auth, "ANA"), Access::Run));
    assert!(!auth.needs_owner(&wf7, Access::Run));
}

#[test]
fn claimable_owners_follow_the_scope() {
    let auth = auth();
    let owners = |t: &str| who(&auth, t).claimable_owners(&auth);
    let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(owners("ANA").unwrap(), list(&["ana", "bo"]));
    assert_eq!(owners("CY").unwrap(), list(&["cy"]));
    assert_eq!(owners("ROOT").unwrap(), None);
    assert_eq!(owners("ANA_RUNNER").unwrap(), list(&["ana"]));
    assert_eq!(owners("LAB").unwrap(), list(&["ana", "bo"]));
    assert_eq!(owners("ROOT_RUNNER").unwrap(), list(&["bo"]));
    assert_eq!(
        owners("WF7").unwrap_err().kind,
        ApiErrorKind::Forbidden,
        "a one-workflow token makes no shared claims"
    );
    assert_eq!(
        Principal::Local.claimable_owners(&Auth::disabled()),
        Ok(None)
    );
}

#[test]
fn new_workflows_belong_to_their_creator() {
    let auth = auth();
    let ana = who(&auth, "ANA");
    assert_eq!(
        auth.owner_for_new_workflow(&ana, None).unwrap(),
        Some("ana".into())
    );
    assert_eq!(
        auth.owner_for_new_workflow(&ana, Some("ana".into()))
            .unwrap(),
        Some("ana".into())
    );
    let e = auth
        .owner_for_new_workflow(&ana, Some("bo".into()))
        .unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Forbidden);
    let root = who(&auth, "ROOT");
    assert_eq!(
        auth.owner_for_new_workflow(&root, Some("bo".into()))
            .unwrap(),
        Some("bo".into())
    );
    assert_eq!(
        auth.owner_for_new_workflow(&Principal::Local, Some("x".into()))
            .unwrap(),
        Some("x".into())
    );
}

#[test]
fn bad_configurations_name_the_problem() {
    let hash = hash_token("t");
    let cases = [
        ("users: [{name: a, color: red}]", "unknown field `color`"),
        ("users: [{name: a}, {name: a}]", "user \"a\" is listed twice"),
        (
            "tokens: [{name: t, user: nobody, sha256: HASH}]",
            "user \"nobody\" is not in `users`",
        ),
        (
            "users: [{name: a}]\ntokens: [{name: t, user: a, sha256: abc}]",
            "64 hexadecimal digits",
        ),
        (
            "users: [{name: a}]\ntokens: [{name: t, user: a, sha256: HASH, scope: {group: g}}]",
            "no user is in group \"g\"",
        ),
        (
            "users: [{name: a}]\ntokens: [{name: t, user: a, sha256: HASH, scope: {workflow: 1, user: a}}]",
            "exactly one of",
        ),
        (
            "users: [{name: a}]\ntokens: [{name: t, user: a, sha256: HASH}, {name: u, user: a, sha256: HASH}]",
            "same sha256",
        ),
        ("users: [{name: \"\"}]", "user name \"\""),
        ("users: {name: a}", "invalid type"),
    ];
    for (text, expected) in cases {
        let text = text.replace("HASH", &hash);
        let e = AuthConfig::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    let e = AuthConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("auth.yaml"), "{e}");
    std::fs::write(&path, "users: [{name: a, groups: [x]}]\ntokens: [{}]").unwrap();
    let e = AuthConfig::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("auth.yaml") && e.contains("missing field"),
        "{e}"
    );
    assert!(AuthConfig::from_yaml("").unwrap().users.is_empty());
}

#[test]
fn made_tokens_are_random_and_hash_as_documented() {
    let (a, b) = (new_token().unwrap(), new_token().unwrap());
    assert_ne!(a, b);
    assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
    assert_eq!(
        hash_token("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(parse_hex_digest(&hash_token("abc")), Ok(digest("abc")));
}

#[test]
fn stored_tokens_join_and_unconfigured_users_are_left_out() {
    let config = AuthConfig::from_yaml(&config_text()).unwrap();
    let record = |name: &str, user: &str, token: &str| TokenRecord {
        name: name.into(),
        user: user.into(),
        sha256: hash_token(token),
        scope: None,
        created_at: torc_core::Timestamp(0),
    };
    let auth = Auth::enabled(
        config,
        vec![record("s1", "cy", "S1"), record("gone", "zed", "GONE")],
    );
    assert_eq!(who(&auth, "S1").user(), Some("cy"));
    assert!(auth.authenticate(Some(b"Bearer GONE")).is_err());
    auth.add_token(&record("s2", "bo", "S2")).unwrap();
    assert_eq!(who(&auth, "S2").user(), Some("bo"));
    let e = auth.add_token(&record("s3", "bo", "S2")).unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Conflict);
}
