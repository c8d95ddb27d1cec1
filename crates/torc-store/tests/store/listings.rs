//! Listings, opening, concurrent readers.

use super::*;

// ---------------------------------------------------------------------------------------------
// Listings.

pub(super) fn listings_paginate_and_filter(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&flat_def(25), None, Timestamp(0))
        .unwrap();
    // Jobs 1..=10 completed, 11..=15 failed at attempt 2, the rest ready.
    let mut c = Changes::default();
    for j in 1..=25 {
        c.jobs.push(match j {
            1..=10 => change(j, JobStatus::Completed, 1),
            11..=15 => change(j, JobStatus::Failed, 2),
            _ => change(j, JobStatus::Ready, 1),
        });
    }
    for j in 1..=10 {
        c.results.push(result(j, 1, 1, 0));
    }
    for j in 11..=15 {
        c.results.push(result(j, 1, 1, 1));
        c.results.push(result(j, 1, 2, 1));
    }
    for i in 0..12 {
        c.events
            .push(event(EventKind::JobRetried, Some(11), &format!("e{i}")));
    }
    store.apply(&[(id, &c)]).unwrap();

    assert_eq!(
        store.job_counts(id).unwrap(),
        BTreeMap::from([
            (JobStatus::Ready, 10),
            (JobStatus::Completed, 10),
            (JobStatus::Failed, 5),
        ])
    );

    let all = store.list_jobs(id, None, 0, 100).unwrap();
    assert_eq!(all.len(), 25);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, j)| j.id == JobId::from_index(i)));
    assert_eq!(all[0].name, "job_1");
    assert_eq!(all[0].command, "echo 1");

    let page = store.list_jobs(id, None, 20, 10).unwrap();
    let ids: Vec<u32> = page.iter().map(|j| j.id.0).collect();
    assert_eq!(ids, vec![21, 22, 23, 24, 25]);

    let failed = store.list_jobs(id, Some(JobStatus::Failed), 1, 3).unwrap();
    let ids: Vec<(u32, u32)> = failed.iter().map(|j| (j.id.0, j.attempt_id)).collect();
    assert_eq!(ids, vec![(12, 2), (13, 2), (14, 2)]);
    assert!(failed.iter().all(|j| j.status == JobStatus::Failed));
    assert!(store
        .list_jobs(id, Some(JobStatus::Running), 0, 10)
        .unwrap()
        .is_empty());

    let results = store.list_results(id, None, 0, 100).unwrap();
    assert_eq!(results.len(), 20);
    assert!(results.windows(2).all(|w| w[0].id < w[1].id));
    let of_12 = store.list_results(id, Some(JobId(12)), 0, 100).unwrap();
    let attempts: Vec<u32> = of_12.iter().map(|r| r.attempt_id).collect();
    assert_eq!(attempts, vec![1, 2]);
    assert!(of_12.iter().all(|r| r.status == JobStatus::Failed));
    let page = store.list_results(id, None, 18, 5).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[1].id, results[19].id);

    let events = store.list_events(id, 5, 4).unwrap();
    let msgs: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, vec!["e5", "e6", "e7", "e8"]);
    assert!(store.list_events(id, 12, 10).unwrap().is_empty());
    assert_eq!(store.list_events(id, 0, u64::MAX).unwrap().len(), 12);

    // Records print as JSON with statuses by name.
    let json = serde_json::to_value(&failed[0]).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["id"], 12);
}

pub(super) fn missing_workflows_are_not_found(db: &TestDb) {
    let store = db.store();
    let id = WorkflowId(42);
    let not_found = |e: StoreError| {
        matches!(
            e,
            StoreError::NotFound {
                what: "workflow",
                id: 42
            }
        )
    };
    assert!(not_found(store.load_workflow(id).unwrap_err()));
    assert!(not_found(store.workflow_summary(id).unwrap_err()));
    assert!(not_found(store.workflow_spec(id).unwrap_err()));
    assert!(not_found(store.job_counts(id).unwrap_err()));
    assert!(not_found(store.list_jobs(id, None, 0, 1).unwrap_err()));
    assert!(not_found(store.list_results(id, None, 0, 1).unwrap_err()));
    assert!(not_found(store.list_events(id, 0, 1).unwrap_err()));
    let err = store.delete_workflow(id).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "workflow 42 not found");
    assert!(store.list_workflows().unwrap().is_empty());
}

pub(super) fn delete_cascades_to_every_table(db: &TestDb) {
    let store = db.store();
    let keep = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let gone = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let c = Changes {
        jobs: vec![change(1, JobStatus::Completed, 1)],
        results: vec![result(1, 1, 1, 0)],
        events: vec![event(EventKind::WorkflowStarted, None, "go")],
        ..Changes::default()
    };
    store.apply(&[(keep, &c), (gone, &c)]).unwrap();
    let tables = [
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
    for table in tables {
        assert!(db.raw_count(table, gone) > 0, "{table}");
    }

    store.delete_workflow(gone).unwrap();
    for table in tables {
        assert_eq!(db.raw_count(table, gone), 0, "{table}");
        assert!(db.raw_count(table, keep) > 0, "{table}");
    }
    assert!(store.load_workflow(gone).unwrap_err().is_not_found());
    assert!(store.delete_workflow(gone).unwrap_err().is_not_found());
    assert_eq!(store.load_workflow(keep).unwrap().def, rich_def());
    let listed: Vec<WorkflowId> = store
        .list_workflows()
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, vec![keep]);
}

// ---------------------------------------------------------------------------------------------
// Opening.

#[test]
pub(super) fn urls_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let c = dir.path().join("c.db");
    for (url, path) in [
        (format!("sqlite://{}", a.display()), &a),
        (format!("sqlite:{}", b.display()), &b),
        (c.display().to_string(), &c),
    ] {
        let store = Store::open(&url).unwrap();
        store
            .create_workflow(&flat_def(1), None, Timestamp(0))
            .unwrap();
        assert!(path.exists(), "{url}");
        assert_eq!(store.target(), path.display().to_string());
    }
}

#[test]
pub(super) fn bad_urls_and_paths_are_clear_errors() {
    // No server listens on port 1: the error names the URL, without its password.
    for url in [
        "postgres://ana:s3cret@127.0.0.1:1/torc",
        "postgresql://ana:s3cret@127.0.0.1:1/torc?connect_timeout=5",
    ] {
        let err = Store::open(url).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("ana:***@127.0.0.1:1/torc"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    for url in ["mysql://host/torc", "sqlite://", ""] {
        let err = Store::open(url).unwrap_err();
        assert!(
            matches!(err, StoreError::UnsupportedUrl { .. }),
            "{url}: {err}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/torc.db");
    let err = Store::open_sqlite(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = Store::open_sqlite(&junk).unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

/// Readers see whole transactions: while the writer moves every job to the next attempt in one
/// batch after another, a reader never sees jobs of two different attempts at once.
pub(super) fn readers_run_while_the_writer_applies(db: &TestDb) {
    let store = db.store();
    let n = 200u32;
    let id = store
        .create_workflow(&flat_def(n as usize), None, Timestamp(0))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if r == 0 {
                        let loaded = store.load_workflow(id).unwrap();
                        let first = loaded.jobs[0];
                        assert!(loaded.jobs.iter().all(|j| *j == first), "torn read");
                    } else {
                        let counts = store.job_counts(id).unwrap();
                        assert_eq!(counts.len(), 1, "torn read: {counts:?}");
                        assert_eq!(counts.values().sum::<u64>(), u64::from(n));
                        let page = store.list_jobs(id, None, 0, u64::from(n)).unwrap();
                        assert!(page.iter().all(|j| j.attempt_id == page[0].attempt_id));
                    }
                    reads += 1;
                    if finished {
                        return reads;
                    }
                }
            })
        })
        .collect();

    for attempt in 2..=40u32 {
        let status = if attempt % 2 == 0 {
            JobStatus::Ready
        } else {
            JobStatus::Running
        };
        let c = Changes {
            jobs: (1..=n).map(|j| change(j, status, attempt)).collect(),
            results: (1..=n).map(|j| result(j, 1, attempt, 0)).collect(),
            ..Changes::default()
        };
        store.apply(&[(id, &c)]).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let loaded = store.load_workflow(id).unwrap();
    assert!(states(&loaded).iter().all(|j| *j == (JobStatus::Ready, 40)));
    assert_eq!(
        store.list_results(id, None, 0, u64::MAX).unwrap().len(),
        39 * n as usize
    );
}
