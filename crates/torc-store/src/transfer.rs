//! A workflow as one self-contained, versioned JSON document: its definition (and the spec text
//! it came from), every job's state and attempt, every result and event. Exported from one
//! database and imported into another (or the same) as a new workflow in the same states.

use crate::error::StoreError;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use torc_core::changes::{Changes, Event, JobChange, JobResult, WorkflowChange, WorkflowState};
use torc_core::ids::{JobId, Timestamp, WorkflowId};
use torc_core::model::WorkflowDef;

/// What `format` says in every export.
pub const EXPORT_FORMAT: &str = "torc-workflow";
/// The version of the document written; import reads this one.
pub const EXPORT_VERSION: u32 = 1;

/// Rows read per query while exporting.
const PAGE: u64 = 10_000;

/// An exported workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`] when written by this version.
    pub version: u32,
    /// Where it came from (for the record; import gives the workflow a new id).
    pub exported_from: ExportedWorkflow,
    pub spec: Option<String>,
    pub definition: WorkflowDef,
    /// Every job's state and attempt, in job id order.
    pub jobs: Vec<JobChange>,
    pub results: Vec<JobResult>,
    pub events: Vec<Event>,
}

/// The exported workflow's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedWorkflow {
    pub id: WorkflowId,
    pub state: WorkflowState,
    pub run_id: u32,
    pub created_at: Timestamp,
}

/// Why a document cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not a torc workflow export (format is {found:?}, expected {EXPORT_FORMAT:?})")]
    Format { found: String },
    #[error("export version {found} is not one this torc reads (it reads {EXPORT_VERSION})")]
    Version { found: u32 },
    #[error("the export lists {states} job states for {jobs} jobs")]
    JobCount { states: usize, jobs: usize },
    #[error("the export names job {job}, and the workflow has {jobs} jobs")]
    UnknownJob { job: JobId, jobs: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Everything recorded about workflow `id`, as one document.
    pub fn export_workflow(&self, id: WorkflowId) -> Result<WorkflowExport, StoreError> {
        let loaded = self.load_workflow(id)?;
        let spec = self.workflow_spec(id)?;
        let mut results = Vec::new();
        loop {
            let page = self.list_results(id, None, results.len() as u64, PAGE)?;
            if page.is_empty() {
                break;
            }
            results.extend(page.iter().map(|r| r.to_job_result()));
        }
        let mut events = Vec::new();
        loop {
            let page = self.list_events(id, events.len() as u64, PAGE)?;
            if page.is_empty() {
                break;
            }
            events.extend(page.into_iter().map(|e| Event {
                time: e.time,
                kind: e.kind,
                job: e.job_id,
                message: e.message,
            }));
        }
        Ok(WorkflowExport {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            exported_from: ExportedWorkflow {
                id,
                state: loaded.state,
                run_id: loaded.run_id,
                created_at: loaded.created_at,
            },
            spec,
            jobs: loaded
                .jobs
                .iter()
                .enumerate()
                .map(|(i, j)| JobChange {
                    job: JobId::from_index(i),
                    status: j.status,
                    attempt_id: j.attempt,
                })
                .collect(),
            definition: loaded.def,
            results,
            events,
        })
    }

    /// Creates a new workflow from an export, in the states it was exported in (same run,
    /// attempts, results and events), and returns its id. Checked before anything is written.
    pub fn import_workflow(
        &self,
        export: &WorkflowExport,
        now: Timestamp,
    ) -> Result<WorkflowId, ImportError> {
        if export.format != EXPORT_FORMAT {
            return Err(ImportError::Format {
                found: export.format.clone(),
            });
        }
        if export.version != EXPORT_VERSION {
            return Err(ImportError::Version {
                found: export.version,
            });
        }
        let jobs = export.definition.jobs.len();
        if export.jobs.len() != jobs {
            return Err(ImportError::JobCount {
                states: export.jobs.len(),
                jobs,
            });
        }
        let named = (export.jobs.iter().map(|j| j.job))
            .chain(export.results.iter().map(|r| r.job))
            .chain(export.events.iter().filter_map(|e| e.job));
        for job in named {
            if job.0 == 0 || job.index() >= jobs {
                return Err(ImportError::UnknownJob { job, jobs });
            }
        }
        let id = self.create_workflow(&export.definition, export.spec.as_deref(), now)?;
        let changes = Changes {
            jobs: export.jobs.clone(),
            results: export.results.clone(),
            events: export.events.clone(),
            workflow: Some(WorkflowChange {
                state: export.exported_from.state,
                run_id: export.exported_from.run_id,
            }),
            ..Changes::default()
        };
        if let Err(e) = self.apply(&[(id, &changes)]) {
            // Leave no half-imported workflow behind.
            let _ = self.delete_workflow(id);
            return Err(e.into());
        }
        Ok(id)
    }
}
