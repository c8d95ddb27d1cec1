use super::definition::NewJob;
use super::*;
use crate::schema::*;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use torc_core::changes::{Event, JobResult};
use torc_core::ids::{JobId, Timestamp, WorkflowId};
use torc_core::model::{
    FailureHandler, FileDef, JobDef, ResourceRequirement, Resources, UserDataDef, WorkflowDef,
};

/// Bind parameters in the SQL of `query` as each backend renders it, which must be a single
/// statement on both (not one per row) and carry the same number of parameters.
macro_rules! binds {
    ($query:expr) => {{
        let lite = diesel::debug_query::<Sqlite, _>(&$query).to_string();
        assert!(!lite.starts_with("BEGIN"), "not a single statement: {lite}");
        let lite = lite.split(" -- binds").next().unwrap_or_default();
        let pg = diesel::debug_query::<Pg, _>(&$query).to_string();
        let pg = pg.split(" -- binds").next().unwrap_or_default();
        assert_eq!(pg.matches(';').count(), 0, "not a single statement: {pg}");
        let n = lite.matches('?').count();
        assert_eq!(pg.matches('$').count(), n, "{pg}");
        n
    }};
}

fn full_def() -> WorkflowDef {
    let mut job = JobDef::new("a", "true");
    job.resource_requirement = Some(0);
    job.failure_handler = Some(0);
    job.input_files = vec![0];
    job.input_user_data = vec![0];
    WorkflowDef {
        name: "w".into(),
        resource_requirements: vec![ResourceRequirement {
            name: "r".into(),
            resources: Resources::DEFAULT_JOB,
        }],
        failure_handlers: vec![FailureHandler {
            name: "h".into(),
            rules: Vec::new(),
        }],
        files: vec![FileDef::new("f", "p")],
        user_data: vec![UserDataDef {
            name: "u".into(),
            data: None,
            is_ephemeral: false,
        }],
        jobs: vec![job.clone(), {
            job.depends_on = vec![JobId(1)];
            job
        }],
        ..WorkflowDef::default()
    }
}

/// The column counts that size multi-row inserts match what diesel actually binds, and
/// every multi-row insert is one statement (not one per row), on both backends.
#[test]
fn column_counts_match_binds() {
    let def = full_def();
    let rows = DefinitionRows::new(WorkflowId(1), &def).unwrap();
    macro_rules! count {
        ($table:expr, $rows:expr) => {{
            let one = binds!(diesel::insert_into($table).values(&$rows[..1]));
            assert_eq!(one, count_of(&$rows), stringify!($table));
        }};
    }
    fn count_of<R: BatchRow>(_: &[R]) -> usize {
        R::COLUMNS
    }
    count!(resource_requirements::table, rows.requirements);
    count!(failure_handlers::table, rows.handlers);
    count!(files::table, rows.files);
    count!(user_data::table, rows.user_data);
    count!(jobs::table, rows.jobs);
    count!(job_dependencies::table, rows.dependencies);
    count!(job_files::table, rows.job_files);
    count!(job_user_data::table, rows.job_user_data);
    // Two jobs, one with no optional values: still one statement with twice the binds.
    assert_eq!(
        binds!(diesel::insert_into(jobs::table).values(&rows.jobs[..])),
        2 * NewJob::COLUMNS
    );

    let result = JobResult {
        job: JobId(1),
        run_id: 1,
        attempt_id: 1,
        runner: None,
        return_code: 0,
        status: JobStatus::Completed,
        start_time: Timestamp(0),
        end_time: Timestamp(1),
        peak_memory_bytes: None,
        avg_memory_bytes: None,
        peak_cpu_percent: None,
        avg_cpu_percent: None,
        end_reason: None,
        message: None,
    };
    let results = vec![NewResult::new(WorkflowId(1), &result).unwrap()];
    count!(results::table, results);
    let event = Event {
        time: Timestamp(0),
        kind: EventKind::JobLost,
        job: None,
        message: String::new(),
    };
    let events = vec![NewEvent::new(WorkflowId(1), &event).unwrap()];
    count!(events::table, events);
}

#[test]
fn event_kinds_map_back() {
    for kind in [
        EventKind::WorkflowCreated,
        EventKind::WorkflowStarted,
        EventKind::WorkflowCompleted,
        EventKind::WorkflowCanceled,
        EventKind::WorkflowReset,
        EventKind::JobRetried,
        EventKind::JobRecoveryFailed,
        EventKind::JobLost,
        EventKind::ReportRefused,
    ] {
        assert_eq!(event_kind_from_name(kind.name()).unwrap(), kind);
    }
    assert!(matches!(
        event_kind_from_name("nope"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn references_are_checked() {
    assert_eq!(id_to_index("x", 1, 1).unwrap(), 0);
    for bad in [0, 2, -1] {
        assert!(id_to_index("x", bad, 1).is_err());
    }
    assert!(matches!(
        to_i64("memory", u64::MAX),
        Err(StoreError::OutOfRange { .. })
    ));
}
