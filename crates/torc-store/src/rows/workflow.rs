//! Rows of the `workflows` table: written at creation, read back whole or as a summary.

use super::*;
use crate::error::StoreError;
use crate::records::WorkflowSummary;
use crate::schema::workflows;
use diesel::prelude::*;
use torc_core::changes::WorkflowState;
use torc_core::ids::{Timestamp, WorkflowId};
use torc_core::model::WorkflowDef;

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
