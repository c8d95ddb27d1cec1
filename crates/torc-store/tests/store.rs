//! The store's test suite: every public operation, each test against a fresh SQLite database and
//! (when `TORC_TEST_POSTGRES_URL` names a PostgreSQL database) against a fresh schema of that
//! database. `on_both_backends!` turns each `fn test(db: &TestDb)` into `sqlite::test` and
//! `postgres::test`.
//!
//! Without the URL the PostgreSQL variants are marked ignored, so that `cargo test` says they
//! did not run; with `CI=true` they run regardless and fail without it (see `build.rs`).

use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use torc_core::changes::{
    Changes, Event, EventKind, JobChange, JobResult, WorkflowChange, WorkflowState,
};
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use torc_core::model::{
    FailureHandler, FailureRule, FileDef, JobDef, JobStatus, ResourceRequirement, Resources,
    SortMethod, UserDataDef, WorkflowDef,
};
use torc_store::{LoadedWorkflow, Store, StoreError, TokenRecord, TokenScope};

// ---------------------------------------------------------------------------------------------
// Backends.

/// The PostgreSQL database the PostgreSQL variants run in (each in a schema of its own).
const POSTGRES_URL_VAR: &str = "TORC_TEST_POSTGRES_URL";

/// Runs each named `fn NAME(db: &TestDb)` as the tests `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::TestDb::sqlite());
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                #[cfg_attr(
                    not(torc_postgres_tests),
                    ignore = "PostgreSQL: TORC_TEST_POSTGRES_URL is not set (see the README)"
                )]
                fn $name() {
                    super::$name(&super::TestDb::postgres());
                }
            )*
        }
    };
}

/// Where a test's database lives; removed when the test ends, pass or fail.
enum Place {
    /// Kept only to be removed at the end.
    Sqlite { _dir: TempDir },
    /// A schema of the PostgreSQL database: `(admin URL, schema name)`.
    Postgres(String, String),
}

/// A fresh, empty database of one backend, and the store opened on it.
struct TestDb {
    // Dropped first: the pool closes its connections before the place is removed.
    store: Store,
    url: String,
    place: Place,
}

impl TestDb {
    fn sqlite() -> TestDb {
        count_statements();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("torc.db").display());
        TestDb {
            store: Store::open(&url).unwrap(),
            url,
            place: Place::Sqlite { _dir: dir },
        }
    }

    /// A new schema in the database of `TORC_TEST_POSTGRES_URL`, which the store's connections
    /// use through their `search_path`.
    fn postgres() -> TestDb {
        count_statements();
        let admin = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{POSTGRES_URL_VAR} is not set: the store's tests must run against PostgreSQL \
                 (CI=true). `bash .ci/run` starts a server and sets it; see the README."
            ),
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "torc_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        diesel::sql_query(format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        TestDb {
            store: Store::open(&url).unwrap(),
            url,
            place: Place::Postgres(admin, schema),
        }
    }

    fn store(&self) -> &Store {
        &self.store
    }

    /// Another store on the same database, as a restarted server would open it.
    fn reopen(&self) -> Store {
        Store::open(&self.url).unwrap()
    }

    /// Rows of `table` that belong to workflow `id`, read behind the store's back.
    fn raw_count(&self, table: &str, id: WorkflowId) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE workflow_id = {}",
            id.0
        );
        let query = diesel::sql_query(sql);
        match &self.place {
            Place::Sqlite { .. } => {
                let path = self.url.trim_start_matches("sqlite://");
                let mut conn = SqliteConnection::establish(path).unwrap();
                query.get_result::<Count>(&mut conn).unwrap().n
            }
            Place::Postgres(..) => {
                let mut conn = PgConnection::establish(&self.url).unwrap();
                query.get_result::<Count>(&mut conn).unwrap().n
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Postgres(admin, schema) = self {
            let dropped = PgConnection::establish(admin).map(|mut conn| {
                diesel::sql_query(format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn)
            });
            if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
                panic!("cannot drop test schema {schema}: {dropped:?}");
            }
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

thread_local! {
    /// Statements sent by connections used on this thread (each test has a thread of its own).
    static STATEMENTS: Cell<u64> = const { Cell::new(0) };
}

/// Makes every connection opened from now on count the statements it sends in `STATEMENTS`.
fn count_statements() {
    fn counter() -> Option<Box<dyn Instrumentation>> {
        Some(Box::new(|event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { .. } = event {
                STATEMENTS.with(|n| n.set(n.get() + 1));
            }
        }))
    }
    static ONCE: Once = Once::new();
    ONCE.call_once(|| set_default_instrumentation(counter).unwrap());
}

/// Statements sent on this thread while `f` ran.
fn statements_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = STATEMENTS.with(Cell::get);
    let value = f();
    (value, STATEMENTS.with(Cell::get) - before)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A workflow that uses every part of the model.
fn rich_def() -> WorkflowDef {
    let mut prep = JobDef::new("prep", "python prep.py ${files.output.raw}");
    prep.output_files = vec![2, 0];
    prep.output_user_data = vec![1];
    prep.resource_requirement = Some(1);
    prep.priority = -3;
    prep.tags = vec!["gpu".into(), "fast".into()];
    prep.env = BTreeMap::from([("A".into(), "1".into()), ("B".into(), "two".into())]);
    prep.timeout = Some(Duration::from_millis(1500));
    prep.scheduler = Some("short".into());

    let mut work = JobDef::new("work", "run --in data.csv");
    work.invocation_script = Some("srun -n 1".into());
    work.depends_on = vec![JobId(1)];
    work.input_files = vec![2, 0];
    work.output_files = vec![1];
    work.input_user_data = vec![1, 0];
    work.cancel_on_blocking_job_failure = false;
    work.supports_termination = true;
    work.failure_handler = Some(0);
    work.priority = 10;

    let mut post = JobDef::new("post", "echo done");
    post.depends_on = vec![JobId(1), JobId(2)];
    post.input_files = vec![1];
    post.resource_requirement = Some(0);
    post.failure_handler = Some(1);

    WorkflowDef {
        name: "rich".into(),
        description: Some("all the parts".into()),
        user: Some("ana".into()),
        project: Some("p1".into()),
        metadata: Some("{\"k\": 1}".into()),
        jobs_sort_method: SortMethod::GpusMemoryRuntime,
        max_concurrent_jobs: Some(7),
        resource_requirements: vec![
            ResourceRequirement {
                name: "small".into(),
                resources: Resources::DEFAULT_JOB,
            },
            ResourceRequirement {
                name: "big".into(),
                resources: Resources {
                    num_cpus: 32,
                    memory_bytes: 64 << 30,
                    num_gpus: 2,
                    num_nodes: 3,
                    runtime: Duration::from_secs(36 * 3600) + Duration::from_millis(250),
                },
            },
        ],
        failure_handlers: vec![
            FailureHandler {
                name: "retry_oom".into(),
                rules: vec![
                    FailureRule {
                        exit_codes: vec![137, 9],
                        match_all_exit_codes: false,
                        recovery_script: Some("./shrink.sh".into()),
                        max_retries: 2,
                    },
                    FailureRule {
                        exit_codes: vec![],
                        match_all_exit_codes: true,
                        recovery_script: None,
                        max_retries: 1,
                    },
                ],
            },
            FailureHandler {
                name: "none".into(),
                rules: vec![],
            },
        ],
        files: vec![
            FileDef {
                name: "raw".into(),
                path: "data/raw.csv".into(),
            },
            FileDef {
                name: "out".into(),
                path: "out/result.json".into(),
            },
            FileDef {
                name: "cfg".into(),
                path: "cfg.toml".into(),
            },
        ],
        user_data: vec![
            UserDataDef {
                name: "params".into(),
                data: Some(serde_json::json!({"alpha": 0.5, "list": [1, 2, 3]})),
                is_ephemeral: false,
            },
            UserDataDef {
                name: "handoff".into(),
                data: None,
                is_ephemeral: true,
            },
            UserDataDef {
                name: "explicit_null".into(),
                data: Some(serde_json::Value::Null),
                is_ephemeral: false,
            },
        ],
        jobs: vec![prep, work, post],
    }
}

/// `n` independent jobs named `job_1`...
fn flat_def(n: usize) -> WorkflowDef {
    WorkflowDef {
        name: format!("flat{n}"),
        jobs: (1..=n)
            .map(|i| JobDef::new(format!("job_{i}"), format!("echo {i}")))
            .collect(),
        ..WorkflowDef::default()
    }
}

/// Each job's saved (status, attempt).
fn states(loaded: &LoadedWorkflow) -> Vec<(JobStatus, u32)> {
    loaded.jobs.iter().map(|j| (j.status, j.attempt)).collect()
}

fn change(job: u32, status: JobStatus, attempt_id: u32) -> JobChange {
    JobChange {
        job: JobId(job),
        status,
        attempt_id,
    }
}

fn result(job: u32, run_id: u32, attempt_id: u32, return_code: i32) -> JobResult {
    JobResult {
        job: JobId(job),
        run_id,
        attempt_id,
        runner: Some(RunnerId("node1:42".into())),
        return_code,
        status: if return_code == 0 {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        },
        start_time: Timestamp(1_000),
        end_time: Timestamp(3_500),
        peak_memory_bytes: Some(1 << 30),
        avg_memory_bytes: Some(1 << 29),
        peak_cpu_percent: Some(180.5),
        avg_cpu_percent: None,
    }
}

fn event(kind: EventKind, job: Option<u32>, message: &str) -> Event {
    Event {
        time: Timestamp(7),
        kind,
        job: job.map(JobId),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Creating and loading.

#[test]
fn store_is_shareable() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
}

fn create_then_load_gives_back_the_definition(db: &TestDb) {
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

fn empty_and_minimal_workflows_round_trip(db: &TestDb) {
    let store = db.store();
    for def in [flat_def(0), flat_def(1)] {
        let id = store.create_workflow(&def, None, Timestamp(0)).unwrap();
        assert_eq!(store.load_workflow(id).unwrap().def, def);
        assert_eq!(store.workflow_spec(id).unwrap(), None);
    }
}

fn large_workflows_span_many_statements(db: &TestDb) {
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

fn workflow_ids_are_not_reused(db: &TestDb) {
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

fn data_survives_reopening(db: &TestDb) {
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

/// Creating a large workflow and applying a large batch take a handful of statements, not one
/// per row.
fn bulk_writes_are_a_handful_of_statements(db: &TestDb) {
    let store = db.store();
    let n = 20_000;
    let mut def = flat_def(n);
    for (i, job) in def.jobs.iter_mut().enumerate().skip(1) {
        job.depends_on = vec![JobId::from_index(i / 2)];
        job.input_files = vec![0];
    }
    def.files = vec![FileDef {
        name: "f".into(),
        path: "f".into(),
    }];
    let (id, create) = statements_of(|| store.create_workflow(&def, None, Timestamp(0)));
    let id = id.unwrap();
    // More than zero: the counting works.
    assert!(
        (1..=40).contains(&create),
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

// ---------------------------------------------------------------------------------------------
// Applying changes.

fn applied_changes_are_loaded_back(db: &TestDb) {
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
        results: vec![result(1, 1, 1, 137)],
        events: vec![event(
            EventKind::JobRetried,
            Some(1),
            "exit 137, retry 1 of 2",
        )],
        workflow: Some(WorkflowChange {
            state: WorkflowState::Canceled,
            run_id: 2,
        }),
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

fn one_batch_spans_many_workflows(db: &TestDb) {
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

fn a_bad_batch_writes_nothing(db: &TestDb) {
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

// ---------------------------------------------------------------------------------------------
// Listings.

fn listings_paginate_and_filter(db: &TestDb) {
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

fn missing_workflows_are_not_found(db: &TestDb) {
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

fn delete_cascades_to_every_table(db: &TestDb) {
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
fn urls_and_paths() {
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
fn bad_urls_and_paths_are_clear_errors() {
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
fn readers_run_while_the_writer_applies(db: &TestDb) {
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

// ---------------------------------------------------------------------------------------------
// Batching is invisible.

const JOBS: u32 = 6;

fn any_status() -> impl Strategy<Value = JobStatus> {
    proptest::sample::select(JobStatus::ALL.to_vec())
}

fn any_event_kind() -> impl Strategy<Value = EventKind> {
    proptest::sample::select(vec![
        EventKind::WorkflowStarted,
        EventKind::JobRetried,
        EventKind::JobLost,
        EventKind::ReportRefused,
    ])
}

fn any_workflow_state() -> impl Strategy<Value = WorkflowState> {
    proptest::sample::select(vec![
        WorkflowState::Active,
        WorkflowState::Complete,
        WorkflowState::Canceled,
    ])
}

/// Changes whose results are not yet numbered (attempts are made unique afterwards).
fn any_changes() -> impl Strategy<Value = Changes> {
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
        })
}

/// Applying a sequence of changes in one batch, or one by one, gives the same stored state, and
/// that state is what folding the changes in order gives.
fn batching_does_not_change_the_outcome(db: &TestDb) {
    let mut runner = TestRunner::new(Config::with_cases(48));
    let strategy = proptest::collection::vec(any_changes(), 1..6);
    let outcome = runner.run(&strategy, |sequence| same_outcome(db, sequence));
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

fn same_outcome(db: &TestDb, mut sequence: Vec<Changes>) -> Result<(), TestCaseError> {
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

fn tokens_round_trip_refuse_duplicates_and_go(db: &TestDb) {
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

fn losses_are_counted_from_the_events_since_the_last_reset(db: &TestDb) {
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

on_both_backends!(
    losses_are_counted_from_the_events_since_the_last_reset,
    create_then_load_gives_back_the_definition,
    empty_and_minimal_workflows_round_trip,
    large_workflows_span_many_statements,
    workflow_ids_are_not_reused,
    data_survives_reopening,
    bulk_writes_are_a_handful_of_statements,
    applied_changes_are_loaded_back,
    one_batch_spans_many_workflows,
    a_bad_batch_writes_nothing,
    listings_paginate_and_filter,
    missing_workflows_are_not_found,
    delete_cascades_to_every_table,
    readers_run_while_the_writer_applies,
    batching_does_not_change_the_outcome,
    tokens_round_trip_refuse_duplicates_and_go,
);
