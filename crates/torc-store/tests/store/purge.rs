//! Deleting a workflow in chunks: hidden at once, its rows gone a chunk per transaction, the
//! other workflows untouched, and the marks kept across a reopening.

use super::*;

const TABLES: [&str; 10] = [
    "resource_requirements",
    "failure_handlers",
    "files",
    "user_data",
    "jobs",
    "job_dependencies",
    "job_files",
    "job_user_data",
    "results",
    "events",
];

pub(super) fn a_workflow_is_hidden_at_once_then_purged_a_chunk_at_a_time(db: &TestDb) {
    let store = db.store();
    let keep = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let gone = store
        .create_workflow(&flat_def(50), None, Timestamp(0))
        .unwrap();
    let rich = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let c = Changes {
        jobs: vec![change(1, JobStatus::Completed, 1)],
        results: vec![result(1, 1, 1, 0)],
        events: vec![event(EventKind::WorkflowStarted, None, "go")],
        ..Changes::default()
    };
    store.apply(&[(keep, &c), (rich, &c)]).unwrap();

    store.mark_deleting(gone).unwrap();
    store.mark_deleting(rich).unwrap();
    assert!(store.mark_deleting(gone).unwrap_err().is_not_found());
    for id in [gone, rich] {
        assert!(store.load_workflow(id).unwrap_err().is_not_found());
        assert!(store.workflow_summary(id).unwrap_err().is_not_found());
        assert!(store.list_jobs(id, None, 0, 10).unwrap_err().is_not_found());
        // A group commit naming it is refused.
        assert!(store.apply(&[(id, &c)]).unwrap_err().is_not_found());
    }
    let listed: Vec<WorkflowId> = store
        .list_workflows()
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, [keep]);
    assert_eq!(store.deleting_workflows().unwrap(), [gone, rich]);
    assert_eq!(db.raw_count("jobs", gone), 50, "nothing deleted yet");

    // Reopened, the marks are still there.
    let store = Store::open(&db.url).unwrap();
    assert_eq!(store.deleting_workflows().unwrap(), [gone, rich]);

    // Chunks of 20 rows: the 50 jobs take three steps, then the workflow row goes.
    let mut steps = 0;
    while !store.purge_step(gone, 20).unwrap() {
        steps += 1;
        assert!(db.raw_count("jobs", gone) >= 50 - 20 * steps);
    }
    assert_eq!(steps, 3);
    while !store.purge_step(rich, 1).unwrap() {}
    for table in TABLES {
        assert_eq!(db.raw_count(table, gone), 0, "{table}");
        assert_eq!(db.raw_count(table, rich), 0, "{table}");
        assert!(db.raw_count(table, keep) > 0, "{table}");
    }
    assert!(store.deleting_workflows().unwrap().is_empty());
    assert_eq!(store.load_workflow(keep).unwrap().def, rich_def());
}

pub(super) fn one_engine_lock_per_database_naming_its_holder(db: &TestDb) {
    let store = db.store();
    let held = store.lock_engine().unwrap();
    // A second store over the same database, as a second server would open it.
    let other = Store::open(&db.url).unwrap();
    let err = other.lock_engine().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        text.contains(&format!("pid={}", std::process::id())) && text.contains("host="),
        "{text}"
    );
    drop(held);
    let again = other.lock_engine().expect("free once its holder let go");
    assert!(store.lock_engine().is_err());
    drop(again);
}
