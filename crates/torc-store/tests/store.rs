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
    ActionDef, ActionKind, ComputeNodeConfig, ExecutionConfig, ExecutionMode, FailureHandler,
    FailureRule, FileDef, JobDef, JobStatus, ResourceMonitorConfig, ResourceRequirement, Resources,
    SchedulerType, SlurmScheduler, SortMethod, StdioConfig, StdioMode, Trigger, UserDataDef,
    WorkflowDef,
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
    prep.stdio = Some(StdioConfig {
        mode: StdioMode::Combined,
        delete_on_success: true,
    });

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
                identifier: Some("https://doi.org/10.1/raw".into()),
                st_mtime: Some(1_700_000_000.25),
                ..FileDef::new("raw", "data/raw.csv")
            },
            FileDef::new("out", "out/result.json"),
            FileDef::new("cfg", "cfg.toml"),
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
        execution: ExecutionConfig {
            mode: ExecutionMode::Slurm,
            sigkill_headroom_seconds: 120,
            srun_termination_signal: Some("TERM@60".into()),
            enable_cpu_bind: true,
            stdio: StdioConfig {
                mode: StdioMode::NoStdout,
                delete_on_success: false,
            },
            ..ExecutionConfig::default()
        },
        resource_monitor: Some(ResourceMonitorConfig {
            sample_interval_seconds: 3,
            ..ResourceMonitorConfig::default()
        }),
        slurm_schedulers: vec![SlurmScheduler {
            name: "short".into(),
            account: "acct".into(),
            partition: Some("debug".into()),
            nodes: 2,
            walltime: "1-00:00:00".into(),
            walltime_duration: Duration::from_secs(86_400),
            mem: Some("64G".into()),
            gres: None,
            qos: Some("high".into()),
            ntasks_per_node: Some(4),
            tmp: None,
            extra: Some("--exclusive".into()),
            serialize_allocations: true,
        }],
        slurm_defaults: BTreeMap::from([("mail-type".into(), "END".into())]),
        actions: vec![
            ActionDef {
                trigger: Trigger::OnJobsReady,
                kind: ActionKind::ScheduleNodes {
                    scheduler: Some("short".into()),
                    scheduler_type: SchedulerType::Slurm,
                    num_allocations: 2,
                    start_one_worker_per_node: true,
                    max_parallel_jobs: Some(8),
                },
                jobs: vec![JobId(1), JobId(2)],
                persistent: false,
            },
            ActionDef {
                trigger: Trigger::OnWorkflowComplete,
                kind: ActionKind::RunCommands {
                    commands: vec!["echo done".into()],
                },
                jobs: vec![],
                persistent: true,
            },
        ],
        compute_node: ComputeNodeConfig {
            wait_for_new_jobs_seconds: 15,
            expiration_buffer_seconds: Some(300),
        },
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
        end_reason: None,
        message: None,
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

#[path = "store/apply.rs"]
mod apply;
#[path = "store/batching.rs"]
mod batching;
#[path = "store/create.rs"]
mod create;
#[path = "store/listings.rs"]
mod listings;
#[path = "store/purge.rs"]
mod purge;
#[path = "store/seeing.rs"]
mod seeing;
use apply::*;
use batching::*;
use create::*;
use listings::*;
use purge::*;
use seeing::*;

on_both_backends!(
    losses_are_counted_from_the_events_since_the_last_reset,
    create_then_load_gives_back_the_definition,
    empty_and_minimal_workflows_round_trip,
    large_workflows_span_many_statements,
    workflow_ids_are_not_reused,
    data_survives_reopening,
    bulk_writes_are_a_handful_of_statements,
    creation_writes_the_first_statuses_given,
    applied_changes_are_loaded_back,
    results_of_any_count_are_written_whole,
    one_batch_spans_many_workflows,
    a_bad_batch_writes_nothing,
    listings_paginate_and_filter,
    missing_workflows_are_not_found,
    delete_cascades_to_every_table,
    readers_run_while_the_writer_applies,
    batching_does_not_change_the_outcome,
    tokens_round_trip_refuse_duplicates_and_go,
    allocations_are_replaced_whole_and_loaded_back,
    samples_are_stored_with_their_batch_and_listed_by_job_or_node,
    an_exported_workflow_imports_in_the_same_states,
    a_workflow_is_hidden_at_once_then_purged_a_chunk_at_a_time,
    one_engine_lock_per_database_naming_its_holder,
);
