//! Creating and loading workflows.

use super::*;

// ---------------------------------------------------------------------------------------------
// Creating and loading.

#[test]
pub(super) fn store_is_shareable() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
}

pub(super) fn create_then_load_gives_back_the_definition(db: &TestDb) {
    let store = db.store();
    let def = rich_def();
    let id = store
        .create_workflow(&def, Some("name: rich\n"), Timestamp(1234))
        .unwrap();
    let loaded = store.load_workflow(id).unwrap();
    assert_eq!(loaded.id, id);
    assert_eq!(loaded.def, def);
    assert_eq!(loaded.state, WorkflowState::Active);
    assert_eq!(loaded.run_id, 1);
    assert_eq!(loaded.created_at, Timestamp(1234));
    assert_eq!(states(&loaded), vec![(JobStatus::Uninitialized, 1); 3]);
    assert_eq!(
        store.workflow_spec(id).unwrap().as_deref(),
        Some("name: rich\n")
    );

    let summary = store.workflow_summary(id).unwrap();
    assert_eq!(summary.name, "rich");
    assert_eq!(summary.user.as_deref(), Some("ana"));
    assert_eq!(summary.num_jobs, 3);
    assert_eq!(summary.state, WorkflowState::Active);
    assert_eq!(store.list_workflows().unwrap(), vec![summary]);
}

pub(super) fn empty_and_minimal_workflows_round_trip(db: &TestDb) {
    let store = db.store();
    for def in [flat_def(0), flat_def(1)] {
        let id = store.create_workflow(&def, None, Timestamp(0)).unwrap();
        assert_eq!(store.load_workflow(id).unwrap().def, def);
        assert_eq!(store.workflow_spec(id).unwrap(), None);
    }
}

pub(super) fn large_workflows_span_many_statements(db: &TestDb) {
    let store = db.store();
    // More jobs than fit in one insert, and more ids than fit in one UPDATE ... IN (...).
    let n = 35_000;
    let mut def = flat_def(n);
    for (i, job) in def.jobs.iter_mut().enumerate().skip(1) {
        job.depends_on = vec![JobId::from_index(i - 1)];
    }
    let id = store.create_workflow(&def, None, Timestamp(0)).unwrap();
    let changes = Changes {
        jobs: (1..=n as u32)
            .map(|j| change(j, JobStatus::Blocked, 1))
            .collect(),
        ..Changes::default()
    };
    store.apply(&[(id, &changes)]).unwrap();
    let loaded = store.load_workflow(id).unwrap();
    assert_eq!(loaded.def, def);
    assert!(states(&loaded)
        .iter()
        .all(|j| *j == (JobStatus::Blocked, 1)));
    assert_eq!(
        store.job_counts(id).unwrap(),
        BTreeMap::from([(JobStatus::Blocked, n as u64)])
    );
}

pub(super) fn workflow_ids_are_not_reused(db: &TestDb) {
    let store = db.store();
    let a = store
        .create_workflow(&flat_def(1), None, Timestamp(0))
        .unwrap();
    store.delete_workflow(a).unwrap();
    let b = store
        .create_workflow(&flat_def(1), None, Timestamp(0))
        .unwrap();
    assert!(b > a);
}

pub(super) fn data_survives_reopening(db: &TestDb) {
    let def = rich_def();
    let store = db.store();
    let id = store.create_workflow(&def, None, Timestamp(5)).unwrap();
    let c = Changes {
        jobs: vec![change(1, JobStatus::Ready, 1)],
        workflow: Some(WorkflowChange {
            state: WorkflowState::Canceled,
            run_id: 2,
        }),
        ..Changes::default()
    };
    store.apply(&[(id, &c)]).unwrap();

    // Opening again finds the schema up to date and everything committed.
    let again = db.reopen();
    assert_eq!(again.target(), store.target());
    let loaded = again.load_workflow(id).unwrap();
    assert_eq!(loaded.def, def);
    assert_eq!(states(&loaded)[0], (JobStatus::Ready, 1));
    assert_eq!((loaded.state, loaded.run_id), (WorkflowState::Canceled, 2));
    assert_eq!(loaded.created_at, Timestamp(5));
}

/// A creation can give each job its first status: the rows go in with it, in the same
/// statements, and the callback sees the id the creation returns.
pub(super) fn creation_writes_the_first_statuses_given(db: &TestDb) {
    let store = db.store();
    let def = rich_def();
    let mut seen = None;
    let (id, statements) = statements_of(|| {
        store
            .create_workflow_keyed(&def, None, Timestamp(0), None, |id| {
                seen = Some(id);
                // One fewer than there are jobs: the last stays uninitialized.
                vec![JobStatus::Ready, JobStatus::Blocked]
            })
            .unwrap()
    });
    assert_eq!(seen, Some(id));
    let (_, plain) = statements_of(|| store.create_workflow(&def, None, Timestamp(0)).unwrap());
    assert_eq!(
        statements, plain,
        "the statuses cost no statement of their own"
    );
    assert_eq!(
        states(&store.load_workflow(id).unwrap()),
        vec![
            (JobStatus::Ready, 1),
            (JobStatus::Blocked, 1),
            (JobStatus::Uninitialized, 1)
        ]
    );
}

/// Creating a large workflow and applying a large batch take a handful of statements, not one
/// per row.
pub(super) fn bulk_writes_are_a_handful_of_statements(db: &TestDb) {
    let store = db.store();
    let n = 20_000;
    let mut def = flat_def(n);
    for (i, job) in def.jobs.iter_mut().enumerate().skip(1) {
        job.depends_on = vec![JobId::from_index(i / 2)];
        job.input_files = vec![0];
    }
    def.files = vec![FileDef::new("f", "f")];
    let (id, create) = statements_of(|| store.create_workflow(&def, None, Timestamp(0)));
    let id = id.unwrap();
    // More than zero: the counting works. On SQLite the jobs go in statements of 1,024, 64, 8
    // and 1 rows (each prepared once): 19 + 8 + 4 of them here; a few more for the rest.
    assert!(
        (1..=50).contains(&create),
        "{create} statements to create {n} jobs"
    );

    let c = Changes {
        jobs: (1..=n as u32)
            .map(|j| change(j, JobStatus::Completed, 1))
            .collect(),
        results: (1..=n as u32).map(|j| result(j, 1, 1, 0)).collect(),
        ..Changes::default()
    };
    let ((), apply) = statements_of(|| store.apply(&[(id, &c)]).unwrap());
    assert!(
        (1..=40).contains(&apply),
        "{apply} statements to apply {n} completions"
    );
    assert_eq!(db.raw_count("results", id), n as i64);
    assert_eq!(
        store.job_counts(id).unwrap(),
        BTreeMap::from([(JobStatus::Completed, n as u64)])
    );
}
