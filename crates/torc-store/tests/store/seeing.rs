//! Time-series samples, and a workflow exported and imported.

use super::*;
use torc_core::api::ResourceSample;
use torc_core::changes::RunnerSamples;
use torc_store::{SampleFilter, WorkflowExport};

fn sample(job: Option<u32>, t: i64, mem: u64) -> ResourceSample {
    ResourceSample {
        job_id: job.map(JobId),
        run_id: job.map(|_| 1),
        attempt_id: job.map(|_| 2),
        time: Timestamp(t),
        cpu_percent: 150.5,
        memory_bytes: mem,
        num_processes: 3,
    }
}

pub(super) fn samples_are_stored_with_their_batch_and_listed_by_job_or_node(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    let changes = Changes {
        jobs: vec![change(1, JobStatus::Completed, 2)],
        samples: vec![RunnerSamples {
            runner: RunnerId("h:1".into()),
            samples: vec![
                sample(Some(1), 10, 5 << 30),
                sample(None, 11, 1 << 40),
                sample(Some(1), 12, 6 << 30),
            ],
        }],
        ..Changes::default()
    };
    store.apply(&[(id, &changes)]).unwrap();
    let all = store.list_samples(id, SampleFilter::All, 0, 100).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[1].sample,
        sample(None, 11, 1 << 40),
        "large values survive"
    );
    assert!(all.iter().all(|s| s.runner.0 == "h:1"));
    let job = store
        .list_samples(id, SampleFilter::Job(JobId(1)), 0, 100)
        .unwrap();
    let times: Vec<i64> = job.iter().map(|s| s.sample.time.0).collect();
    assert_eq!(times, [10, 12]);
    let nodes = store.list_samples(id, SampleFilter::Nodes, 0, 100).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        store.list_samples(id, SampleFilter::All, 1, 1).unwrap()[0],
        all[1]
    );
    assert!(store
        .list_samples(WorkflowId(999), SampleFilter::All, 0, 10)
        .unwrap_err()
        .is_not_found());
    // A batch that fails writes none of its samples.
    let bad = Changes {
        jobs: vec![change(999, JobStatus::Completed, 1)],
        ..changes.clone()
    };
    assert!(store.apply(&[(id, &bad)]).is_err());
    assert_eq!(
        store
            .list_samples(id, SampleFilter::All, 0, 100)
            .unwrap()
            .len(),
        3
    );
    store.delete_workflow(id).unwrap();
    let other = store
        .create_workflow(&rich_def(), None, Timestamp(0))
        .unwrap();
    assert!(store
        .list_samples(other, SampleFilter::All, 0, 10)
        .unwrap()
        .is_empty());
}

pub(super) fn an_exported_workflow_imports_in_the_same_states(db: &TestDb) {
    let store = db.store();
    let id = store
        .create_workflow(&rich_def(), Some("name: x"), Timestamp(0))
        .unwrap();
    let changes = Changes {
        jobs: vec![
            change(1, JobStatus::Completed, 1),
            change(2, JobStatus::Failed, 2),
            change(3, JobStatus::Canceled, 1),
        ],
        results: vec![result(1, 1, 1, 0), result(2, 1, 2, 9)],
        events: vec![event(EventKind::JobRetried, Some(2), "retry")],
        workflow: Some(WorkflowChange {
            state: WorkflowState::Complete,
            run_id: 1,
        }),
        ..Changes::default()
    };
    store.apply(&[(id, &changes)]).unwrap();
    let doc = store.export_workflow(id).unwrap();
    let text = serde_json::to_string(&doc).unwrap();
    let back: WorkflowExport = serde_json::from_str(&text).unwrap();
    let new = store.import_workflow(&back, Timestamp(5)).unwrap();
    assert_ne!(new, id);
    let (a, b) = (
        store.load_workflow(id).unwrap(),
        store.load_workflow(new).unwrap(),
    );
    assert_eq!(a.def, b.def);
    assert_eq!((a.state, a.run_id), (b.state, b.run_id));
    assert_eq!(a.jobs, b.jobs);
    let again = store.export_workflow(new).unwrap();
    assert_eq!(again.results, doc.results);
    assert_eq!(again.events, doc.events);
    assert_eq!(again.spec.as_deref(), Some("name: x"));
    // Refused before anything is written.
    let before = store.list_workflows().unwrap().len();
    let mut bad = doc.clone();
    bad.jobs.pop();
    assert!(store.import_workflow(&bad, Timestamp(5)).is_err());
    let mut bad = doc.clone();
    bad.results[0].job = JobId(77);
    assert!(store.import_workflow(&bad, Timestamp(5)).is_err());
    assert_eq!(store.list_workflows().unwrap().len(), before);
}
