//! Rows written when a workflow is created: its requirements, handlers, files, user data, jobs
//! and their relations, built from a `WorkflowDef` in one pass ([`DefinitionRows`]).

use super::*;
use crate::error::StoreError;
use crate::schema::{
    failure_handlers, files, job_dependencies, job_files, job_user_data, jobs,
    resource_requirements, user_data,
};
use diesel::prelude::*;
use std::borrow::Cow;
use torc_core::ids::{JobId, WorkflowId};
use torc_core::model::{JobDef, JobStatus, ResourceRequirement, WorkflowDef};

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

impl<'a> NewRequirement<'a> {
    /// The row of requirement `index` of workflow `wf`.
    pub(crate) fn new(
        wf: WorkflowId,
        index: usize,
        r: &'a ResourceRequirement,
    ) -> Result<Self, StoreError> {
        let res = &r.resources;
        Ok(NewRequirement {
            workflow_id: wf.0,
            id: position_to_id("resource requirement id", index)?,
            name: &r.name,
            num_cpus: to_i32("num_cpus", res.num_cpus)?,
            memory_bytes: to_i64("memory_bytes", res.memory_bytes)?,
            num_gpus: to_i32("num_gpus", res.num_gpus)?,
            num_nodes: to_i32("num_nodes", res.num_nodes)?,
            runtime_secs: res.runtime.as_secs_f64(),
        })
    }
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
    identifier: Option<&'a str>,
    st_mtime: Option<f64>,
}

impl BatchRow for NewFile<'_> {
    type Table = files::table;
    const COLUMNS: usize = 6;
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
    pub(crate) workflow_id: i64,
    pub(crate) id: i32,
    pub(crate) name: &'a str,
    pub(crate) command: &'a str,
    pub(crate) invocation_script: Option<&'a str>,
    pub(crate) status: i16,
    pub(crate) attempt_id: i32,
    pub(crate) resource_requirement_id: Option<i32>,
    pub(crate) cancel_on_blocking_job_failure: bool,
    pub(crate) supports_termination: bool,
    pub(crate) failure_handler_id: Option<i32>,
    pub(crate) priority: i64,
    pub(crate) tags: Cow<'a, str>,
    pub(crate) env: Cow<'a, str>,
    pub(crate) timeout_secs: Option<f64>,
    pub(crate) scheduler: Option<&'a str>,
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
            rows.requirements.push(NewRequirement::new(wf, i, r)?);
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
                identifier: f.identifier.as_deref(),
                st_mtime: f.st_mtime,
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

    /// Gives job `i` the status `initial[i]` (jobs past the slice's end stay uninitialized), so
    /// that a creation writes each job's first evaluated state with its row rather than
    /// updating every row again in the next commit.
    pub(crate) fn set_initial_statuses(&mut self, initial: &[JobStatus]) {
        for (row, status) in self.jobs.iter_mut().zip(initial) {
            row.status = status.code();
        }
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
                Cow::Borrowed(EMPTY_TAGS)
            } else {
                Cow::Owned(encode("job tags", &job.tags)?)
            },
            env: if job.env.is_empty() {
                Cow::Borrowed(EMPTY_ENV)
            } else {
                Cow::Owned(encode("job env", &job.env)?)
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
