//! Database rows and the mapping between them and the core's model, written once.
//!
//! Ids of a workflow's files, user data, resource requirements and failure handlers are stored
//! 1-based, like job ids: the model's index `i` is row id `i + 1`.

use crate::error::StoreError;
use crate::records::{EventRecord, JobRecord, LoadedWorkflow, ResultRecord, WorkflowSummary};
use crate::schema::{
    events, failure_handlers, files, job_dependencies, job_files, job_user_data, jobs,
    resource_requirements, results, user_data, workflows,
};
use diesel::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use torc_core::changes::{Event, EventKind, JobResult, WorkflowState};
use torc_core::ids::{JobId, RunnerId, Timestamp, WorkflowId};
use torc_core::model::{
    FailureHandler, FailureRule, FileDef, JobDef, JobStatus, ResourceRequirement, Resources,
    SortMethod, UserDataDef, WorkflowDef,
};
use torc_core::sched::SavedJob;

/// A row type written with multi-row inserts: how many rows fit in one statement.
///
/// Its `Insertable` derive must say `treat_none_as_default_value = false`: otherwise diesel
/// writes a batch to SQLite as one statement per row (checked by a test below).
pub(crate) trait BatchRow {
    /// The table the rows go into.
    type Table: diesel::Table + Copy + Default;
    /// Bind parameters per row (the number of columns inserted).
    const COLUMNS: usize;

    /// Rows per statement for a backend that takes up to `max_binds` bind parameters.
    fn per_statement(max_binds: usize) -> usize {
        (max_binds / Self::COLUMNS).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions.

pub(crate) fn to_i32(what: &'static str, value: u32) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::OutOfRange {
        what,
        value: value.into(),
    })
}

pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

fn opt_to_i64(what: &'static str, value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(what, v)).transpose()
}

/// A model index as a 1-based row id.
fn index_to_id(what: &'static str, index: u32) -> Result<i32, StoreError> {
    index
        .checked_add(1)
        .ok_or(StoreError::OutOfRange {
            what,
            value: index.into(),
        })
        .and_then(|id| to_i32(what, id))
}

/// The position `index` (0-based) of a list as a 1-based row id.
fn position_to_id(what: &'static str, index: usize) -> Result<i32, StoreError> {
    i32::try_from(index + 1).map_err(|_| StoreError::OutOfRange {
        what,
        value: index as u64,
    })
}

pub(crate) fn job_id_to_i32(job: JobId) -> Result<i32, StoreError> {
    to_i32("job id", job.0)
}

fn from_i32(what: &'static str, value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, format!("negative value {value}")))
}

fn from_i64(what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what, format!("negative value {value}")))
}

fn opt_from_i64(what: &'static str, value: Option<i64>) -> Result<Option<u64>, StoreError> {
    value.map(|v| from_i64(what, v)).transpose()
}

/// A 1-based row id as a model index, checked against the number of rows it refers to.
fn id_to_index(what: &'static str, id: i32, len: usize) -> Result<u32, StoreError> {
    match usize::try_from(id) {
        Ok(id) if id >= 1 && id <= len => Ok((id - 1) as u32),
        _ => Err(StoreError::corrupt(
            what,
            format!("reference to id {id}, but there are {len}"),
        )),
    }
}

pub(crate) fn status_from_code(what: &'static str, code: i16) -> Result<JobStatus, StoreError> {
    JobStatus::from_code(code)
        .ok_or_else(|| StoreError::corrupt(what, format!("status code {code}")))
}

pub(crate) fn workflow_state_from_name(name: &str) -> Result<WorkflowState, StoreError> {
    WorkflowState::from_name(name)
        .ok_or_else(|| StoreError::corrupt("workflow state", format!("unknown state {name:?}")))
}

fn event_kind_from_name(name: &str) -> Result<EventKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| StoreError::corrupt("event kind", format!("unknown kind {name:?}")))
}

fn secs_to_duration(what: &'static str, secs: f64) -> Result<Duration, StoreError> {
    Duration::try_from_secs_f64(secs).map_err(|e| StoreError::corrupt(what, format!("{secs}: {e}")))
}

fn encode<T: serde::Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, format!("{e} in {text:?}")))
}

// ---------------------------------------------------------------------------------------------
// Rows written when a workflow is created.

#[derive(Insertable)]
#[diesel(table_name = workflows, treat_none_as_default_value = false)]
pub(crate) struct NewWorkflow<'a> {
    name: &'a str,
    description: Option<&'a str>,
    user: Option<&'a str>,
    project: Option<&'a str>,
    metadata: Option<&'a str>,
    jobs_sort_method: &'static str,
    state: &'static str,
    run_id: i32,
    created_at: i64,
    num_jobs: i32,
    spec: Option<&'a str>,
    max_concurrent_jobs: Option<i32>,
}

impl<'a> NewWorkflow<'a> {
    /// A new workflow: active, first run.
    pub(crate) fn new(
        def: &'a WorkflowDef,
        spec: Option<&'a str>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        Ok(NewWorkflow {
            name: &def.name,
            description: def.description.as_deref(),
            user: def.user.as_deref(),
            project: def.project.as_deref(),
            metadata: def.metadata.as_deref(),
            jobs_sort_method: def.jobs_sort_method.name(),
            state: WorkflowState::Active.name(),
            run_id: 1,
            created_at: now.0,
            num_jobs: i32::try_from(def.jobs.len()).map_err(|_| StoreError::OutOfRange {
                what: "number of jobs",
                value: def.jobs.len() as u64,
            })?,
            spec,
            max_concurrent_jobs: def
                .max_concurrent_jobs
                .map(|n| to_i32("max_concurrent_jobs", n))
                .transpose()?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = resource_requirements, treat_none_as_default_value = false)]
pub(crate) struct NewRequirement<'a> {
    workflow_id: i64,
    id: i32,
    name: &'a str,
    num_cpus: i32,
    memory_bytes: i64,
    num_gpus: i32,
    num_nodes: i32,
    runtime_secs: f64,
}

impl BatchRow for NewRequirement<'_> {
    type Table = resource_requirements::table;
    const COLUMNS: usize = 8;
}

#[derive(Insertable)]
#[diesel(table_name = failure_handlers, treat_none_as_default_value = false)]
pub(crate) struct NewHandler<'a> {
    workflow_id: i64,
    id: i32,
    name: &'a str,
    rules: String,
}

impl BatchRow for NewHandler<'_> {
    type Table = failure_handlers::table;
    const COLUMNS: usize = 4;
}

#[derive(Insertable)]
#[diesel(table_name = files, treat_none_as_default_value = false)]
pub(crate) struct NewFile<'a> {
    workflow_id: i64,
    id: i32,
    name: &'a str,
    path: &'a str,
}

impl BatchRow for NewFile<'_> {
    type Table = files::table;
    const COLUMNS: usize = 4;
}

#[derive(Insertable)]
#[diesel(table_name = user_data, treat_none_as_default_value = false)]
pub(crate) struct NewUserData<'a> {
    workflow_id: i64,
    id: i32,
    name: &'a str,
    data: Option<String>,
    is_ephemeral: bool,
}

impl BatchRow for NewUserData<'_> {
    type Table = user_data::table;
    const COLUMNS: usize = 5;
}

#[derive(Insertable)]
#[diesel(table_name = jobs, treat_none_as_default_value = false)]
pub(crate) struct NewJob<'a> {
    workflow_id: i64,
    id: i32,
    name: &'a str,
    command: &'a str,
    invocation_script: Option<&'a str>,
    status: i16,
    attempt_id: i32,
    resource_requirement_id: Option<i32>,
    cancel_on_blocking_job_failure: bool,
    supports_termination: bool,
    failure_handler_id: Option<i32>,
    priority: i64,
    tags: String,
    env: String,
    timeout_secs: Option<f64>,
    scheduler: Option<&'a str>,
}

impl BatchRow for NewJob<'_> {
    type Table = jobs::table;
    const COLUMNS: usize = 16;
}

#[derive(Insertable)]
#[diesel(table_name = job_dependencies, treat_none_as_default_value = false)]
pub(crate) struct NewDependency {
    workflow_id: i64,
    job_id: i32,
    depends_on_job_id: i32,
}

impl BatchRow for NewDependency {
    type Table = job_dependencies::table;
    const COLUMNS: usize = 3;
}

#[derive(Insertable)]
#[diesel(table_name = job_files, treat_none_as_default_value = false)]
pub(crate) struct NewJobFile {
    workflow_id: i64,
    job_id: i32,
    is_output: bool,
    position: i32,
    file_id: i32,
}

impl BatchRow for NewJobFile {
    type Table = job_files::table;
    const COLUMNS: usize = 5;
}

#[derive(Insertable)]
#[diesel(table_name = job_user_data, treat_none_as_default_value = false)]
pub(crate) struct NewJobUserData {
    workflow_id: i64,
    job_id: i32,
    is_output: bool,
    position: i32,
    user_data_id: i32,
}

impl BatchRow for NewJobUserData {
    type Table = job_user_data::table;
    const COLUMNS: usize = 5;
}

/// Every row of a workflow's definition except the workflow row itself.
#[derive(Default)]
pub(crate) struct DefinitionRows<'a> {
    pub requirements: Vec<NewRequirement<'a>>,
    pub handlers: Vec<NewHandler<'a>>,
    pub files: Vec<NewFile<'a>>,
    pub user_data: Vec<NewUserData<'a>>,
    pub jobs: Vec<NewJob<'a>>,
    pub dependencies: Vec<NewDependency>,
    pub job_files: Vec<NewJobFile>,
    pub job_user_data: Vec<NewJobUserData>,
}

/// JSON of an empty list and an empty map, the usual case, without going through serde.
const EMPTY_TAGS: &str = "[]";
const EMPTY_ENV: &str = "{}";

impl<'a> DefinitionRows<'a> {
    /// The rows of `def` for workflow `wf`; every job starts uninitialized at attempt 1.
    pub(crate) fn new(wf: WorkflowId, def: &'a WorkflowDef) -> Result<Self, StoreError> {
        let w = wf.0;
        let mut rows = DefinitionRows::default();
        for (i, r) in def.resource_requirements.iter().enumerate() {
            let res = &r.resources;
            rows.requirements.push(NewRequirement {
                workflow_id: w,
                id: position_to_id("resource requirement id", i)?,
                name: &r.name,
                num_cpus: to_i32("num_cpus", res.num_cpus)?,
                memory_bytes: to_i64("memory_bytes", res.memory_bytes)?,
                num_gpus: to_i32("num_gpus", res.num_gpus)?,
                num_nodes: to_i32("num_nodes", res.num_nodes)?,
                runtime_secs: res.runtime.as_secs_f64(),
            });
        }
        for (i, h) in def.failure_handlers.iter().enumerate() {
            rows.handlers.push(NewHandler {
                workflow_id: w,
                id: position_to_id("failure handler id", i)?,
                name: &h.name,
                rules: encode("failure handler rules", &h.rules)?,
            });
        }
        for (i, f) in def.files.iter().enumerate() {
            rows.files.push(NewFile {
                workflow_id: w,
                id: position_to_id("file id", i)?,
                name: &f.name,
                path: &f.path,
            });
        }
        for (i, u) in def.user_data.iter().enumerate() {
            rows.user_data.push(NewUserData {
                workflow_id: w,
                id: position_to_id("user data id", i)?,
                name: &u.name,
                data: u
                    .data
                    .as_ref()
                    .map(|d| encode("user data", d))
                    .transpose()?,
                is_ephemeral: u.is_ephemeral,
            });
        }
        rows.jobs.reserve_exact(def.jobs.len());
        for (i, job) in def.jobs.iter().enumerate() {
            let id = job_id_to_i32(JobId::from_index(i))?;
            rows.push_job(w, id, job)?;
        }
        Ok(rows)
    }

    fn push_job(&mut self, w: i64, id: i32, job: &'a JobDef) -> Result<(), StoreError> {
        self.jobs.push(NewJob {
            workflow_id: w,
            id,
            name: &job.name,
            command: &job.command,
            invocation_script: job.invocation_script.as_deref(),
            status: JobStatus::Uninitialized.code(),
            attempt_id: 1,
            resource_requirement_id: job
                .resource_requirement
                .map(|r| index_to_id("resource requirement", r))
                .transpose()?,
            cancel_on_blocking_job_failure: job.cancel_on_blocking_job_failure,
            supports_termination: job.supports_termination,
            failure_handler_id: job
                .failure_handler
                .map(|h| index_to_id("failure handler", h))
                .transpose()?,
            priority: job.priority,
            tags: if job.tags.is_empty() {
                EMPTY_TAGS.to_string()
            } else {
                encode("job tags", &job.tags)?
            },
            env: if job.env.is_empty() {
                EMPTY_ENV.to_string()
            } else {
                encode("job env", &job.env)?
            },
            timeout_secs: job.timeout.map(|t| t.as_secs_f64()),
            scheduler: job.scheduler.as_deref(),
        });
        for dep in &job.depends_on {
            self.dependencies.push(NewDependency {
                workflow_id: w,
                job_id: id,
                depends_on_job_id: job_id_to_i32(*dep)?,
            });
        }
        for (is_output, list) in [(false, &job.input_files), (true, &job.output_files)] {
            for (pos, file) in list.iter().enumerate() {
                self.job_files.push(NewJobFile {
                    workflow_id: w,
                    job_id: id,
                    is_output,
                    position: position_to_id("file position", pos)?,
                    file_id: index_to_id("file", *file)?,
                });
            }
        }
        for (is_output, list) in [(false, &job.input_user_data), (true, &job.output_user_data)] {
            for (pos, ud) in list.iter().enumerate() {
                self.job_user_data.push(NewJobUserData {
                    workflow_id: w,
                    job_id: id,
                    is_output,
                    position: position_to_id("user data position", pos)?,
                    user_data_id: index_to_id("user data", *ud)?,
                });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Rows written by `apply`.

#[derive(Insertable)]
#[diesel(table_name = results, treat_none_as_default_value = false)]
pub(crate) struct NewResult<'a> {
    workflow_id: i64,
    job_id: i32,
    run_id: i32,
    attempt_id: i32,
    runner: Option<&'a str>,
    return_code: i32,
    status: i16,
    start_time: i64,
    end_time: i64,
    exec_time_secs: f64,
    peak_memory_bytes: Option<i64>,
    avg_memory_bytes: Option<i64>,
    peak_cpu_percent: Option<f64>,
    avg_cpu_percent: Option<f64>,
}

impl BatchRow for NewResult<'_> {
    type Table = results::table;
    const COLUMNS: usize = 14;
}

impl<'a> NewResult<'a> {
    pub(crate) fn new(wf: WorkflowId, r: &'a JobResult) -> Result<Self, StoreError> {
        Ok(NewResult {
            workflow_id: wf.0,
            job_id: job_id_to_i32(r.job)?,
            run_id: to_i32("run_id", r.run_id)?,
            attempt_id: to_i32("attempt_id", r.attempt_id)?,
            runner: r.runner.as_ref().map(|r| r.0.as_str()),
            return_code: r.return_code,
            status: r.status.code(),
            start_time: r.start_time.0,
            end_time: r.end_time.0,
            exec_time_secs: r.end_time.0.saturating_sub(r.start_time.0) as f64 / 1000.0,
            peak_memory_bytes: opt_to_i64("peak_memory_bytes", r.peak_memory_bytes)?,
            avg_memory_bytes: opt_to_i64("avg_memory_bytes", r.avg_memory_bytes)?,
            peak_cpu_percent: r.peak_cpu_percent,
            avg_cpu_percent: r.avg_cpu_percent,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub(crate) struct NewEvent<'a> {
    workflow_id: i64,
    time: i64,
    kind: &'static str,
    job_id: Option<i32>,
    message: &'a str,
}

impl BatchRow for NewEvent<'_> {
    type Table = events::table;
    const COLUMNS: usize = 5;
}

impl<'a> NewEvent<'a> {
    pub(crate) fn new(wf: WorkflowId, e: &'a Event) -> Result<Self, StoreError> {
        Ok(NewEvent {
            workflow_id: wf.0,
            time: e.time.0,
            kind: e.kind.name(),
            job_id: e.job.map(job_id_to_i32).transpose()?,
            message: &e.message,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Rows read back.

#[derive(Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub(crate) struct WorkflowRow {
    id: i64,
    name: String,
    description: Option<String>,
    user: Option<String>,
    project: Option<String>,
    metadata: Option<String>,
    jobs_sort_method: String,
    state: String,
    run_id: i32,
    created_at: i64,
    num_jobs: i32,
    max_concurrent_jobs: Option<i32>,
}

impl WorkflowRow {
    pub(crate) fn run_id(&self) -> i32 {
        self.run_id
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub(crate) struct SummaryRow {
    id: i64,
    name: String,
    user: Option<String>,
    state: String,
    run_id: i32,
    created_at: i64,
    num_jobs: i32,
}

impl SummaryRow {
    pub(crate) fn into_record(self) -> Result<WorkflowSummary, StoreError> {
        Ok(WorkflowSummary {
            id: WorkflowId(self.id),
            name: self.name,
            user: self.user,
            state: workflow_state_from_name(&self.state)?,
            run_id: from_i32("workflow run_id", self.run_id)?,
            created_at: Timestamp(self.created_at),
            num_jobs: from_i32("workflow num_jobs", self.num_jobs)?.into(),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = resource_requirements)]
pub(crate) struct RequirementRow {
    id: i32,
    name: String,
    num_cpus: i32,
    memory_bytes: i64,
    num_gpus: i32,
    num_nodes: i32,
    runtime_secs: f64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = failure_handlers)]
pub(crate) struct HandlerRow {
    id: i32,
    name: String,
    rules: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = files)]
pub(crate) struct FileRow {
    id: i32,
    name: String,
    path: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = user_data)]
pub(crate) struct UserDataRow {
    id: i32,
    name: String,
    data: Option<String>,
    is_ephemeral: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub(crate) struct JobRow {
    id: i32,
    name: String,
    command: String,
    invocation_script: Option<String>,
    status: i16,
    attempt_id: i32,
    resource_requirement_id: Option<i32>,
    cancel_on_blocking_job_failure: bool,
    supports_termination: bool,
    failure_handler_id: Option<i32>,
    priority: i64,
    tags: String,
    env: String,
    timeout_secs: Option<f64>,
    scheduler: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = job_dependencies)]
pub(crate) struct DependencyRow {
    job_id: i32,
    depends_on_job_id: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = job_files)]
pub(crate) struct JobFileRow {
    job_id: i32,
    is_output: bool,
    file_id: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = job_user_data)]
pub(crate) struct JobUserDataRow {
    job_id: i32,
    is_output: bool,
    user_data_id: i32,
}

/// Everything read to rebuild a workflow, each list in id order (relations in the order
/// `(job_id, is_output, position)`, dependencies in `(job_id, depends_on_job_id)` order).
pub(crate) struct WorkflowRows {
    pub workflow: WorkflowRow,
    pub requirements: Vec<RequirementRow>,
    pub handlers: Vec<HandlerRow>,
    pub files: Vec<FileRow>,
    pub user_data: Vec<UserDataRow>,
    pub jobs: Vec<JobRow>,
    pub dependencies: Vec<DependencyRow>,
    pub job_files: Vec<JobFileRow>,
    pub job_user_data: Vec<JobUserDataRow>,
    /// `(job id, times lost)` since the last reset; see `read::losses_since_reset`.
    pub losses: Vec<(Option<i32>, i64)>,
    /// `(job id, attempt)` of every result of the current run.
    pub results: Vec<(i32, i32)>,
}

/// Checks that the rows of a table have the ids 1, 2, 3... in order.
fn check_dense(what: &'static str, ids: impl Iterator<Item = i32>) -> Result<(), StoreError> {
    for (i, id) in ids.enumerate() {
        if position_to_id(what, i)? != id {
            return Err(StoreError::corrupt(
                what,
                format!("expected id {} at position {i}, found {id}", i + 1),
            ));
        }
    }
    Ok(())
}

/// The job (as a model index) that a relation row belongs to.
fn job_index(what: &'static str, job_id: i32, num_jobs: usize) -> Result<usize, StoreError> {
    id_to_index(what, job_id, num_jobs).map(|i| i as usize)
}

impl WorkflowRows {
    /// Rebuilds the workflow exactly as it was created, with its jobs' durable state.
    pub(crate) fn into_loaded(self) -> Result<LoadedWorkflow, StoreError> {
        let w = self.workflow;
        check_dense(
            "resource requirement",
            self.requirements.iter().map(|r| r.id),
        )?;
        check_dense("failure handler", self.handlers.iter().map(|r| r.id))?;
        check_dense("file", self.files.iter().map(|r| r.id))?;
        check_dense("user data", self.user_data.iter().map(|r| r.id))?;
        check_dense("job", self.jobs.iter().map(|r| r.id))?;
        let expected_jobs = from_i32("workflow num_jobs", w.num_jobs)? as usize;
        if self.jobs.len() != expected_jobs {
            return Err(StoreError::corrupt(
                "workflow",
                format!(
                    "workflow {} has {} job rows, expected {expected_jobs}",
                    w.id,
                    self.jobs.len()
                ),
            ));
        }

        let resource_requirements = self
            .requirements
            .into_iter()
            .map(|r| {
                Ok(ResourceRequirement {
                    name: r.name,
                    resources: Resources {
                        num_cpus: from_i32("num_cpus", r.num_cpus)?,
                        memory_bytes: from_i64("memory_bytes", r.memory_bytes)?,
                        num_gpus: from_i32("num_gpus", r.num_gpus)?,
                        num_nodes: from_i32("num_nodes", r.num_nodes)?,
                        runtime: secs_to_duration("runtime_secs", r.runtime_secs)?,
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let failure_handlers = self
            .handlers
            .into_iter()
            .map(|h| {
                Ok(FailureHandler {
                    name: h.name,
                    rules: decode::<Vec<FailureRule>>("failure handler rules", &h.rules)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let files: Vec<FileDef> = self
            .files
            .into_iter()
            .map(|f| FileDef {
                name: f.name,
                path: f.path,
            })
            .collect();
        let user_data = self
            .user_data
            .into_iter()
            .map(|u| {
                Ok(UserDataDef {
                    name: u.name,
                    data: u
                        .data
                        .as_deref()
                        .map(|d| decode("user data", d))
                        .transpose()?,
                    is_ephemeral: u.is_ephemeral,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let num_jobs = self.jobs.len();
        let mut states = Vec::with_capacity(num_jobs);
        let mut jobs = Vec::with_capacity(num_jobs);
        for r in self.jobs {
            states.push(SavedJob {
                status: status_from_code("job status", r.status)?,
                attempt: from_i32("job attempt_id", r.attempt_id)?,
                losses: 0,
                last_result: None,
            });
            jobs.push(JobDef {
                name: r.name,
                command: r.command,
                invocation_script: r.invocation_script,
                resource_requirement: r
                    .resource_requirement_id
                    .map(|id| {
                        id_to_index("job resource requirement", id, resource_requirements.len())
                    })
                    .transpose()?,
                depends_on: Vec::new(),
                input_files: Vec::new(),
                output_files: Vec::new(),
                input_user_data: Vec::new(),
                output_user_data: Vec::new(),
                cancel_on_blocking_job_failure: r.cancel_on_blocking_job_failure,
                supports_termination: r.supports_termination,
                failure_handler: r
                    .failure_handler_id
                    .map(|id| id_to_index("job failure handler", id, failure_handlers.len()))
                    .transpose()?,
                priority: r.priority,
                tags: decode("job tags", &r.tags)?,
                env: decode::<BTreeMap<String, String>>("job env", &r.env)?,
                timeout: r
                    .timeout_secs
                    .map(|s| secs_to_duration("job timeout_secs", s))
                    .transpose()?,
                scheduler: r.scheduler,
            });
        }
        for d in self.dependencies {
            let job = job_index("job dependency", d.job_id, num_jobs)?;
            let dep = id_to_index("job dependency", d.depends_on_job_id, num_jobs)?;
            jobs[job].depends_on.push(JobId::from_index(dep as usize));
        }
        for f in self.job_files {
            let job = &mut jobs[job_index("job file", f.job_id, num_jobs)?];
            let file = id_to_index("job file", f.file_id, files.len())?;
            if f.is_output {
                job.output_files.push(file);
            } else {
                job.input_files.push(file);
            }
        }
        for u in self.job_user_data {
            let job = &mut jobs[job_index("job user data", u.job_id, num_jobs)?];
            let ud = id_to_index("job user data", u.user_data_id, user_data.len())?;
            if u.is_output {
                job.output_user_data.push(ud);
            } else {
                job.input_user_data.push(ud);
            }
        }

        let jobs_sort_method = SortMethod::from_name(&w.jobs_sort_method).ok_or_else(|| {
            StoreError::corrupt(
                "workflow jobs_sort_method",
                format!("unknown method {:?}", w.jobs_sort_method),
            )
        })?;
        for (job, attempt) in self.results {
            let index = usize::try_from(job).ok().and_then(|j| j.checked_sub(1));
            if let (Some(saved), Ok(attempt)) = (
                index.and_then(|i| states.get_mut(i)),
                u32::try_from(attempt),
            ) {
                saved.last_result = saved.last_result.max(Some(attempt));
            }
        }
        // The event log is a record, not state: an entry that names no job of this workflow
        // counts for nothing rather than making the workflow unloadable.
        for (job, n) in self.losses {
            let index = job.and_then(|j| usize::try_from(j).ok()?.checked_sub(1));
            if let Some(saved) = index.and_then(|i| states.get_mut(i)) {
                saved.losses = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        Ok(LoadedWorkflow {
            id: WorkflowId(w.id),
            def: WorkflowDef {
                name: w.name,
                description: w.description,
                user: w.user,
                project: w.project,
                metadata: w.metadata,
                jobs_sort_method,
                resource_requirements,
                failure_handlers,
                files,
                user_data,
                jobs,
                max_concurrent_jobs: w
                    .max_concurrent_jobs
                    .map(|n| from_i32("workflow max_concurrent_jobs", n))
                    .transpose()?,
            },
            state: workflow_state_from_name(&w.state)?,
            run_id: from_i32("workflow run_id", w.run_id)?,
            jobs: states,
            created_at: Timestamp(w.created_at),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub(crate) struct JobListRow {
    id: i32,
    name: String,
    status: i16,
    attempt_id: i32,
    command: String,
    invocation_script: Option<String>,
    priority: i64,
    tags: String,
}

impl JobListRow {
    pub(crate) fn into_record(self) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            id: JobId(from_i32("job id", self.id)?),
            name: self.name,
            status: status_from_code("job status", self.status)?,
            attempt_id: from_i32("job attempt_id", self.attempt_id)?,
            command: self.command,
            invocation_script: self.invocation_script,
            priority: self.priority,
            tags: decode("job tags", &self.tags)?,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = results)]
pub(crate) struct ResultRow {
    id: i64,
    job_id: i32,
    run_id: i32,
    attempt_id: i32,
    runner: Option<String>,
    return_code: i32,
    status: i16,
    start_time: i64,
    end_time: i64,
    exec_time_secs: f64,
    peak_memory_bytes: Option<i64>,
    avg_memory_bytes: Option<i64>,
    peak_cpu_percent: Option<f64>,
    avg_cpu_percent: Option<f64>,
}

impl ResultRow {
    pub(crate) fn into_record(self) -> Result<ResultRecord, StoreError> {
        Ok(ResultRecord {
            id: self.id,
            job_id: JobId(from_i32("result job_id", self.job_id)?),
            run_id: from_i32("result run_id", self.run_id)?,
            attempt_id: from_i32("result attempt_id", self.attempt_id)?,
            runner: self.runner.map(RunnerId),
            return_code: self.return_code,
            status: status_from_code("result status", self.status)?,
            start_time: Timestamp(self.start_time),
            end_time: Timestamp(self.end_time),
            exec_time_secs: self.exec_time_secs,
            peak_memory_bytes: opt_from_i64("result peak_memory_bytes", self.peak_memory_bytes)?,
            avg_memory_bytes: opt_from_i64("result avg_memory_bytes", self.avg_memory_bytes)?,
            peak_cpu_percent: self.peak_cpu_percent,
            avg_cpu_percent: self.avg_cpu_percent,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
pub(crate) struct EventRow {
    id: i64,
    time: i64,
    kind: String,
    job_id: Option<i32>,
    message: String,
}

impl EventRow {
    pub(crate) fn into_record(self) -> Result<EventRecord, StoreError> {
        Ok(EventRecord {
            id: self.id,
            time: Timestamp(self.time),
            kind: event_kind_from_name(&self.kind)?,
            job_id: self
                .job_id
                .map(|j| from_i32("event job_id", j).map(JobId))
                .transpose()?,
            message: self.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::pg::Pg;
    use diesel::sqlite::Sqlite;

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
            files: vec![FileDef {
                name: "f".into(),
                path: "p".into(),
            }],
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
}
