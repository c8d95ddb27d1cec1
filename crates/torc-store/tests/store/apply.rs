//! Applying changes.

use super::*;

// ---------------------------------------------------------------------------------------------
// Applying changes.

pub(super) fn applied_changes_are_loaded_back(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let first = Changes {
        jobs: vec![
            change(1, JobStatus::Ready, 1),
            change(2, JobStatus::Blocked, 1),
            change(3, JobStatus::Blocked, 1),
            change(1, JobStatus::Pending, 1),
        ],
        events: vec![event(EventKind::WorkflowStarted, None, "started")],
        ..Changes::default()
    };
    let second = Changes {
        jobs: vec![
            change(1, JobStatus::Running, 1),
            change(1, JobStatus::Ready, 2),
            change(3, JobStatus::Canceled, 1),
        ],
        // Why the runner ended it travels with the result, and comes back.
        results: vec![JobResult {
            end_reason: Some(torc_core::changes::EndReason::Memory),
            message: Some("killed for using more memory than its limit".into()),
            ..result(1, 1, 1, 137)
        }],
        events: vec![event(
            EventKind::JobRetried,
            Some(1),
            "exit 137, retry 1 of 2",
        )],
        workflow: Some(WorkflowChange {
            state: WorkflowState::Canceled,
            run_id: 2,
        }),
        actions: Vec::new(),
        allocations: Vec::new(),
        samples: Vec::new(),
    };
    store.apply(&[(id, &first), (id, &second)]).unwrap();

    let loaded = store.load_workflow(id).unwrap();
    assert_eq!(
        states(&loaded),
        vec![
            (JobStatus::Ready, 2),
            (JobStatus::Blocked, 1),
            (JobStatus::Canceled, 1)
        ]
    );
    assert_eq!(loaded.state, WorkflowState::Canceled);
    assert_eq!(loaded.run_id, 2);
    let summary = store.workflow_summary(id).unwrap();
    assert_eq!(
        (summary.state, summary.run_id),
        (WorkflowState::Canceled, 2)
    );

    let results = store.list_results(id, None, 0, 100).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].to_job_result(), second.results[0]);
    assert_eq!(results[0].exec_time_secs, 2.5);

    let events = store.list_events(id, 0, 100).unwrap();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.job_id, e.message.as_str(), e.time))
        .collect();
    assert_eq!(
        got,
        vec![
            (EventKind::WorkflowStarted, None, "started", Timestamp(7)),
            (
                EventKind::JobRetried,
                Some(JobId(1)),
                "exit 137, retry 1 of 2",
                Timestamp(7)
            ),
        ]
    );
}

pub(super) fn one_batch_spans_many_workflows(db: &TestDb) {
    let store = db.store();
    let a = store
        .create_workflow(&flat_def(3), None, Timestamp(0))
        .unwrap();
    let b = store
        .create_workflow(&flat_def(2), None, Timestamp(0))
        .unwrap();
    let to_a = Changes {
        jobs: vec![change(3, JobStatus::Ready, 1)],
        results: vec![result(2, 1, 1, 0)],
        ..Changes::default()
    };
    let to_b = Changes {
        jobs: vec![change(1, JobStatus::Completed, 1)],
        results: vec![result(1, 1, 1, 0)],
        workflow: Some(WorkflowChange {
            state: WorkflowState::Complete,
            run_id: 1,
        }),
        ..Changes::default()
    };
    let nothing = Changes::default();
    store
        .apply(&[(a, &to_a), (b, &to_b), (WorkflowId(999), &nothing)])
        .unwrap();
    assert_eq!(
        states(&store.load_workflow(a).unwrap())[2],
        (JobStatus::Ready, 1)
    );
    let lb = store.load_workflow(b).unwrap();
    assert_eq!(states(&lb)[0], (JobStatus::Completed, 1));
    assert_eq!(lb.state, WorkflowState::Complete);
    assert_eq!(
        store.list_results(a, None, 0, 10).unwrap()[0].job_id,
        JobId(2)
    );
    assert_eq!(
        store.list_results(b, None, 0, 10).unwrap()[0].job_id,
        JobId(1)
    );
    // An empty batch is a no-op.
    store.apply(&[]).unwrap();
}

pub(super) fn a_bad_batch_writes_nothing(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&flat_def(2), None, Timestamp(0))
        .unwrap();
    let good = Changes {
        jobs: vec![change(1, JobStatus::Ready, 1)],
        results: vec![result(1, 1, 1, 0)],
        events: vec![event(EventKind::WorkflowStarted, None, "")],
        ..Changes::default()
    };

    // A workflow that does not exist.
    let missing = WorkflowId(id.0 + 100);
    let err = store.apply(&[(id, &good), (missing, &good)]).unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "workflow", id } if id == missing.0),
        "{err}"
    );

    // A job that does not exist.
    let unknown_job = Changes {
        jobs: vec![change(3, JobStatus::Ready, 1)],
        ..Changes::default()
    };
    let err = store.apply(&[(id, &good), (id, &unknown_job)]).unwrap_err();
    assert!(matches!(err, StoreError::UnknownJobs { .. }), "{err}");

    // The same attempt's result twice.
    let err = store.apply(&[(id, &good), (id, &good)]).unwrap_err();
    assert!(matches!(err, StoreError::Query(_)), "{err}");

    let loaded = store.load_workflow(id).unwrap();
    assert_eq!(states(&loaded), vec![(JobStatus::Uninitialized, 1); 2]);
    assert_eq!(db.raw_count("results", id), 0);
    assert_eq!(db.raw_count("events", id), 0);

    // Values that do not fit are refused before anything is written.
    let mut huge = result(1, 1, 1, 0);
    huge.peak_memory_bytes = Some(u64::MAX);
    let c = Changes {
        results: vec![huge],
        ..Changes::default()
    };
    assert!(matches!(
        store.apply(&[(id, &c)]),
        Err(StoreError::OutOfRange { .. })
    ));
    store.apply(&[(id, &good)]).unwrap();
    assert_eq!(db.raw_count("results", id), 1);
}

pub(super) fn allocations_are_replaced_whole_and_loaded_back(db: &TestDb) {
    use torc_core::alloc::{Allocation, AllocationState};
    let store = db.store();
    let id = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let requested = Allocation {
        id: 1,
        record: 3,
        scheduler: "gpu".into(),
        batch_id: None,
        state: AllocationState::Requested,
        executor: "submit:login1:42".into(),
        requested_at: Timestamp(10),
        started_at: None,
        ended_at: None,
        note: String::new(),
    };
    let queued = Allocation {
        batch_id: Some(u64::from(u32::MAX) + 7),
        state: AllocationState::Queued,
        ..requested.clone()
    };
    let other = Allocation {
        id: 2,
        scheduler: "cpu".into(),
        ..requested.clone()
    };
    // One batch with two versions of allocation 1: the later wins.
    let first = Changes {
        allocations: vec![requested.clone(), other.clone(), queued.clone()],
        ..Changes::default()
    };
    store.apply(&[(id, &first)]).unwrap();
    assert_eq!(
        store.load_allocations(id).unwrap(),
        [queued.clone(), other.clone()]
    );
    let ended = Allocation {
        state: AllocationState::Ended,
        started_at: Some(Timestamp(20)),
        ended_at: Some(Timestamp(30)),
        note: "cancelled: workflow canceled".into(),
        ..queued
    };
    let second = Changes {
        allocations: vec![ended.clone()],
        ..Changes::default()
    };
    store.apply(&[(id, &second)]).unwrap();
    assert_eq!(store.load_allocations(id).unwrap(), [ended, other]);
    // Gone with their workflow.
    store.delete_workflow(id).unwrap();
    assert!(store.load_allocations(id).unwrap().is_empty());
}

/// The results of one batch, of any count, are written whole and field for field: on SQLite they
/// go in statements of a few fixed sizes (1,024, 64, 8 and 1 rows), so each count here crosses
/// a different mix of them.
pub(super) fn results_of_any_count_are_written_whole(db: &TestDb) {
    let store = db.store();
    let n_jobs = 1_100;
    let id = store
        .create_workflow(&flat_def(n_jobs), None, Timestamp(0))
        .unwrap();
    let mut expected = Vec::new();
    for (round, count) in [1usize, 7, 8, 9, 64, 65, 1_023, 1_024, 1_100]
        .into_iter()
        .enumerate()
    {
        let attempt = round as u32 + 1;
        let results: Vec<JobResult> = (1..=count as u32)
            .map(|j| {
                let mut r = result(j, 1, attempt, (j % 5) as i32 - 2);
                r.end_time = Timestamp(r.start_time.0 + i64::from(j));
                if j % 3 == 0 {
                    r.runner = None;
                    r.peak_memory_bytes = None;
                    r.avg_cpu_percent = Some(f64::from(j) / 4.0);
                }
                if j % 7 == 0 {
                    r.end_reason = Some(torc_core::changes::EndReason::Timeout);
                    r.message = Some(format!("job {j} ran out of time"));
                }
                r
            })
            .collect();
        let c = Changes {
            results: results.clone(),
            ..Changes::default()
        };
        store.apply(&[(id, &c)]).unwrap();
        expected.extend(results);
    }
    let got: Vec<JobResult> = store
        .list_results(id, None, 0, 10_000)
        .unwrap()
        .iter()
        .map(|r| r.to_job_result())
        .collect();
    assert_eq!(got.len(), expected.len());
    // Listed in insertion order (by result id).
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "result {i}");
    }
}
