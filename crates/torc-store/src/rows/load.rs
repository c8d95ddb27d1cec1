//! Rows read back to rebuild a workflow (`WorkflowRows::into_loaded`), and job listings.

use super::*;
use crate::error::StoreError;
use crate::records::{JobRecord, LoadedWorkflow};
use crate::schema::{
    failure_handlers, files, job_dependencies, job_files, job_user_data, jobs,
    resource_requirements, user_data,
};
use diesel::prelude::*;
use std::collections::BTreeMap;
use torc_core::ids::{JobId, Timestamp, WorkflowId};
use torc_core::model::{
    FailureHandler, FailureRule, FileDef, JobDef, ResourceRequirement, Resources, SortMethod,
    UserDataDef, WorkflowDef,
};
use torc_core::sched::SavedJob;

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
    identifier: Option<String>,
    st_mtime: Option<f64>,
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
                identifier: f.identifier,
                st_mtime: f.st_mtime,
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
                stdio: None,
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
        let config = w.config()?;
        for (index, stdio) in config.job_stdio {
            let job = usize::try_from(index)
                .ok()
                .and_then(|i| jobs.get_mut(i))
                .ok_or_else(|| {
                    StoreError::corrupt("workflow config", format!("no job {index} for its stdio"))
                })?;
            job.stdio = Some(stdio);
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
                execution: config.execution,
                resource_monitor: config.resource_monitor,
                slurm_schedulers: config.slurm_schedulers,
                slurm_defaults: config.slurm_defaults,
                actions: config.actions,
                compute_node: config.compute_node,
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
