//! Rows of the `workflows` table: written at creation, read back whole or as a summary.

use super::*;
use crate::error::StoreError;
use crate::records::WorkflowSummary;
use crate::schema::workflows;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use torc_core::changes::WorkflowState;
use torc_core::ids::{Timestamp, WorkflowId};
use torc_core::model::{
    ActionDef, ComputeNodeConfig, ExecutionConfig, ResourceMonitorConfig, SlurmScheduler,
    StdioConfig, WorkflowDef,
};

/// The `config` column: the workflow-level settings of the spec, as JSON. A missing key (or a
/// NULL column, for workflows stored before it existed) reads as the default.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct WorkflowConfig<'a> {
    pub execution: Cow<'a, ExecutionConfig>,
    pub resource_monitor: Option<ResourceMonitorConfig>,
    pub slurm_schedulers: Cow<'a, [SlurmScheduler]>,
    pub slurm_defaults: Cow<'a, BTreeMap<String, String>>,
    pub actions: Cow<'a, [ActionDef]>,
    pub compute_node: ComputeNodeConfig,
    /// The jobs that have a `stdio` of their own, by index.
    pub job_stdio: BTreeMap<u32, StdioConfig>,
}

/// The settings read back, owned.
pub(crate) struct Config {
    pub execution: ExecutionConfig,
    pub resource_monitor: Option<ResourceMonitorConfig>,
    pub slurm_schedulers: Vec<SlurmScheduler>,
    pub slurm_defaults: BTreeMap<String, String>,
    pub actions: Vec<ActionDef>,
    pub compute_node: ComputeNodeConfig,
    pub job_stdio: BTreeMap<u32, StdioConfig>,
}

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
    config: Option<String>,
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
            config: Some(encode(
                "workflow config",
                &WorkflowConfig {
                    execution: Cow::Borrowed(&def.execution),
                    resource_monitor: def.resource_monitor,
                    slurm_schedulers: Cow::Borrowed(&def.slurm_schedulers),
                    slurm_defaults: Cow::Borrowed(&def.slurm_defaults),
                    actions: Cow::Borrowed(&def.actions),
                    compute_node: def.compute_node,
                    job_stdio: def
                        .jobs
                        .iter()
                        .enumerate()
                        .filter_map(|(i, j)| Some((i as u32, j.stdio?)))
                        .collect(),
                },
            )?),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub(crate) struct WorkflowRow {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) user: Option<String>,
    pub(super) project: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) jobs_sort_method: String,
    pub(super) state: String,
    pub(super) run_id: i32,
    pub(super) created_at: i64,
    pub(super) num_jobs: i32,
    pub(super) max_concurrent_jobs: Option<i32>,
    pub(super) config: Option<String>,
}

impl WorkflowRow {
    /// The `config` column, decoded (the defaults when it is NULL).
    pub(super) fn config(&self) -> Result<Config, StoreError> {
        let c: WorkflowConfig<'static> = match &self.config {
            Some(text) => decode("workflow config", text)?,
            None => WorkflowConfig::default(),
        };
        Ok(Config {
            execution: c.execution.into_owned(),
            resource_monitor: c.resource_monitor,
            slurm_schedulers: c.slurm_schedulers.into_owned(),
            slurm_defaults: c.slurm_defaults.into_owned(),
            actions: c.actions.into_owned(),
            compute_node: c.compute_node,
            job_stdio: c.job_stdio,
        })
    }

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
