//! Batching is invisible; tokens; losses counted from events.

use super::*;

// ---------------------------------------------------------------------------------------------
// Batching is invisible.

const JOBS: u32 = 6;

pub(super) fn any_status() -> impl Strategy<Value = JobStatus> {
    proptest::sample::select(JobStatus::ALL.to_vec())
}

pub(super) fn any_event_kind() -> impl Strategy<Value = EventKind> {
    proptest::sample::select(vec![
        EventKind::WorkflowStarted,
        EventKind::JobRetried,
        EventKind::JobLost,
        EventKind::ReportRefused,
    ])
}

pub(super) fn any_workflow_state() -> impl Strategy<Value = WorkflowState> {
    proptest::sample::select(vec![
        WorkflowState::Active,
        WorkflowState::Complete,
        WorkflowState::Canceled,
    ])
}

/// Changes whose results are not yet numbered (attempts are made unique afterwards).
pub(super) fn any_changes() -> impl Strategy<Value = Changes> {
    (
        proptest::collection::vec((1..=JOBS, any_status(), 1..4u32), 0..10),
        proptest::collection::vec((1..=JOBS, -3..3i32, 0..5_000i64), 0..4),
        proptest::collection::vec(
            (
                any_event_kind(),
                proptest::option::of(1..=JOBS),
                "[a-z ]{0,8}",
            ),
            0..3,
        ),
        proptest::option::of((any_workflow_state(), 1..4u32)),
    )
        .prop_map(|(jobs, results, events, workflow)| Changes {
            jobs: jobs.into_iter().map(|(j, s, a)| change(j, s, a)).collect(),
            results: results
                .into_iter()
                .map(|(j, rc, ms)| {
                    let mut r = result(j, 1, 0, rc);
                    r.end_time = Timestamp(r.start_time.0 + ms);
                    r.runner = None;
                    r
                })
                .collect(),
            events: events
                .into_iter()
                .map(|(k, j, m)| event(k, j, &m))
                .collect(),
            workflow: workflow.map(|(state, run_id)| WorkflowChange { state, run_id }),
            actions: Vec::new(),
            samples: Vec::new(),
        })
}

/// Applying a sequence of changes in one batch, or one by one, gives the same stored state, and
/// that state is what folding the changes in order gives.
pub(super) fn batching_does_not_change_the_outcome(db: &TestDb) {
    let mut runner = TestRunner::new(Config::with_cases(48));
    let strategy = proptest::collection::vec(any_changes(), 1..6);
    let outcome = runner.run(&strategy, |sequence| same_outcome(db, sequence));
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

pub(super) fn same_outcome(db: &TestDb, mut sequence: Vec<Changes>) -> Result<(), TestCaseError> {
    let mut attempt = 0;
    for c in &mut sequence {
        for r in &mut c.results {
            attempt += 1;
            r.attempt_id = attempt;
        }
    }
    let store = db.store();
    let def = flat_def(JOBS as usize);
    let batched = store.create_workflow(&def, None, Timestamp(0)).unwrap();
    let single = store.create_workflow(&def, None, Timestamp(0)).unwrap();

    let batch: Vec<(WorkflowId, &Changes)> = sequence.iter().map(|c| (batched, c)).collect();
    store.apply(&batch).unwrap();
    for c in &sequence {
        store.apply(&[(single, c)]).unwrap();
    }

    let mut expected_jobs = vec![(JobStatus::Uninitialized, 1); JOBS as usize];
    let mut expected_workflow = (WorkflowState::Active, 1);
    for c in &sequence {
        for j in &c.jobs {
            expected_jobs[j.job.index()] = (j.status, j.attempt_id);
        }
        if let Some(w) = c.workflow {
            expected_workflow = (w.state, w.run_id);
        }
    }
    for id in [batched, single] {
        let loaded = store.load_workflow(id).unwrap();
        prop_assert_eq!(&loaded.def, &def);
        prop_assert_eq!(&states(&loaded), &expected_jobs);
        prop_assert_eq!((loaded.state, loaded.run_id), expected_workflow);
        let results: Vec<JobResult> = store
            .list_results(id, None, 0, u64::MAX)
            .unwrap()
            .iter()
            .map(|r| r.to_job_result())
            .collect();
        let expected: Vec<&JobResult> = sequence.iter().flat_map(|c| &c.results).collect();
        prop_assert_eq!(results.iter().collect::<Vec<_>>(), expected);
        let events: Vec<Event> = store
            .list_events(id, 0, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|e| Event {
                time: e.time,
                kind: e.kind,
                job: e.job_id,
                message: e.message,
            })
            .collect();
        let expected: Vec<&Event> = sequence.iter().flat_map(|c| &c.events).collect();
        prop_assert_eq!(events.iter().collect::<Vec<_>>(), expected);
    }
    Ok(())
}

pub(super) fn tokens_round_trip_refuse_duplicates_and_go(db: &TestDb) {
    let store = db.store();
    assert!(store.list_tokens().unwrap().is_empty());
    let token = |name: &str, hash: char, scope| TokenRecord {
        name: name.into(),
        user: "ana".into(),
        sha256: hash.to_string().repeat(64),
        scope,
        created_at: Timestamp(7),
    };
    let all = vec![
        token("plain", 'a', None),
        token("one", 'b', Some(TokenScope::Workflow(WorkflowId(42)))),
        token("mine", 'c', Some(TokenScope::User("ana".into()))),
        token("team", 'd', Some(TokenScope::Group("lab".into()))),
    ];
    for t in &all {
        store.insert_token(t).unwrap();
    }
    assert_eq!(store.list_tokens().unwrap(), all);
    for dup in [token("plain", 'e', None), token("other", 'a', None)] {
        let err = store.insert_token(&dup).unwrap_err();
        assert!(
            matches!(err, StoreError::Duplicate { what: "token", .. }),
            "{err}"
        );
    }
    assert_eq!(store.list_tokens().unwrap().len(), 4);
    let reopened = db.reopen();
    assert_eq!(reopened.list_tokens().unwrap(), all);
    assert_eq!(store.delete_token("one").unwrap(), Some(all[1].clone()));
    assert_eq!(store.delete_token("one").unwrap(), None);
    let left: Vec<String> = store
        .list_tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(left, ["plain", "mine", "team"]);
}

// ---------------------------------------------------------------------------------------------

pub(super) fn losses_are_counted_from_the_events_since_the_last_reset(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&flat_def(3), None, Timestamp(1))
        .unwrap();
    let lost = |job| event(EventKind::JobLost, Some(job), "lost");
    let apply = |events: Vec<Event>| {
        let changes = Changes {
            events,
            ..Changes::default()
        };
        store.apply(&[(id, &changes)]).unwrap();
    };
    apply(vec![lost(1), lost(2), lost(1)]);
    // An entry naming no job of the workflow counts for nothing.
    apply(vec![event(EventKind::JobLost, None, "?"), lost(9)]);
    let losses = |store: &Store| -> Vec<u32> {
        let loaded = store.load_workflow(id).unwrap();
        loaded.jobs.iter().map(|j| j.losses).collect()
    };
    assert_eq!(losses(store), [2, 1, 0]);
    apply(vec![
        event(EventKind::WorkflowReset, None, "reset"),
        lost(3),
    ]);
    assert_eq!(losses(store), [0, 0, 1]);
    assert_eq!(losses(&db.reopen()), [0, 0, 1]);
}
