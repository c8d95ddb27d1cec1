//! Where the commands that look at one workflow read from: the local database, or a server
//! (`--url`). Every listing is read in full, page by page.

use crate::cli::Global;
use crate::run::{open_existing_store, runtime};
use crate::Exit;
use anyhow::Result;
use torc_core::model::WorkflowDef;
use torc_core::{JobId, WorkflowId};
use torc_http::HttpClient;
use torc_store::{JobRecord, ResultRecord, SampleFilter, SampleRecord, Store, WorkflowSummary};

/// Rows asked for per request (a server caps its pages; it answers at most what it allows).
const PAGE: u64 = 10_000;

pub enum Source {
    Local(Store),
    Remote(HttpClient, tokio::runtime::Runtime),
}

impl Source {
    pub fn open(global: &Global) -> Result<Source> {
        match &global.url {
            Some(url) => Ok(Source::Remote(global.client(url)?, runtime()?)),
            None => Ok(Source::Local(open_existing_store(global)?)),
        }
    }

    /// Every workflow, oldest first.
    pub fn workflows(&self) -> Result<Vec<WorkflowSummary>> {
        Ok(match self {
            Source::Local(store) => store.list_workflows()?,
            Source::Remote(c, rt) => rt
                .block_on(c.list_workflows())?
                .into_iter()
                .map(WorkflowSummary::from)
                .collect(),
        })
    }

    /// Every job of the workflow, in id order.
    pub fn all_jobs(&self, id: WorkflowId) -> Result<Vec<JobRecord>> {
        let mut all = Vec::new();
        loop {
            let page = self.jobs(id, all.len() as u64, PAGE)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// The workflow's definition, where it can be read (not over `--url`).
    pub fn def(&self, id: WorkflowId) -> Result<Option<WorkflowDef>> {
        match self {
            Source::Local(store) => Ok(Some(store.load_workflow(id)?.def)),
            Source::Remote(..) => Ok(None),
        }
    }

    pub fn run_id(&self, id: WorkflowId) -> Result<u32> {
        match self {
            Source::Local(store) => Ok(store.workflow_summary(id)?.run_id),
            Source::Remote(c, rt) => Ok(rt.block_on(c.workflow(id))?.run_id),
        }
    }

    /// Jobs from the `offset`-th (0-based, in id order).
    pub fn jobs(&self, id: WorkflowId, offset: u64, limit: u64) -> Result<Vec<JobRecord>> {
        Ok(match self {
            Source::Local(store) => store.list_jobs(id, None, offset, limit)?,
            Source::Remote(c, rt) => rt
                .block_on(c.jobs(id, None, offset, limit))?
                .items
                .into_iter()
                .map(JobRecord::from)
                .collect(),
        })
    }

    pub fn job(&self, id: WorkflowId, job: JobId) -> Result<Option<JobRecord>> {
        if job.0 == 0 {
            return Ok(None);
        }
        let found = self.jobs(id, u64::from(job.0 - 1), 1)?;
        Ok(found.into_iter().next().filter(|j| j.id == job))
    }

    /// The workflow's summary (name, state, current run).
    pub fn summary(&self, id: WorkflowId) -> Result<WorkflowSummary> {
        match self {
            Source::Local(store) => Ok(store.workflow_summary(id)?),
            Source::Remote(c, rt) => Ok(WorkflowSummary::from(rt.block_on(c.workflow(id))?)),
        }
    }

    /// Every result of the workflow (or of one job), in the order they were recorded.
    pub fn results(&self, id: WorkflowId, job: Option<JobId>) -> Result<Vec<ResultRecord>> {
        let mut all = Vec::new();
        loop {
            let page: Vec<ResultRecord> = match self {
                Source::Local(store) => store.list_results(id, job, all.len() as u64, PAGE)?,
                Source::Remote(c, rt) => rt
                    .block_on(c.results(id, job, all.len() as u64, PAGE))?
                    .items
                    .into_iter()
                    .map(ResultRecord::from)
                    .collect(),
            };
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Every time-series sample of the workflow (or of one job, or of the nodes), in order.
    pub fn samples(&self, id: WorkflowId, filter: SampleFilter) -> Result<Vec<SampleRecord>> {
        let mut all = Vec::new();
        loop {
            let offset = all.len() as u64;
            let page: Vec<SampleRecord> = match self {
                Source::Local(store) => store.list_samples(id, filter, offset, PAGE)?,
                Source::Remote(c, rt) => {
                    let (job, nodes) = match filter {
                        SampleFilter::All => (None, false),
                        SampleFilter::Job(j) => (Some(j), false),
                        SampleFilter::Nodes => (None, true),
                    };
                    rt.block_on(c.samples(id, job, nodes, offset, PAGE))?
                        .items
                        .into_iter()
                        .map(SampleRecord::from)
                        .collect()
                }
            };
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// The job named by `spec`: a job id, or else a job name.
    pub fn resolve(
        &self,
        id: WorkflowId,
        spec: &str,
        def: Option<&WorkflowDef>,
    ) -> Result<JobRecord> {
        if let Ok(n) = spec.parse::<u32>() {
            if let Some(job) = self.job(id, JobId(n))? {
                return Ok(job);
            }
        }
        let names: Vec<(JobId, String)> = match def {
            Some(def) => def
                .jobs
                .iter()
                .enumerate()
                .map(|(i, j)| (JobId::from_index(i), j.name.clone()))
                .collect(),
            None => {
                let mut names = Vec::new();
                loop {
                    let page = self.jobs(id, names.len() as u64, PAGE)?;
                    if page.is_empty() {
                        break;
                    }
                    names.extend(page.into_iter().map(|j| (j.id, j.name)));
                }
                names
            }
        };
        if let Some((job, _)) = names.iter().find(|(_, n)| n == spec) {
            if let Some(found) = self.job(id, *job)? {
                return Ok(found);
            }
        }
        let closest = names
            .iter()
            .map(|(_, n)| (strsim::jaro_winkler(n, spec), n))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let hint = match closest {
            Some((_, n)) => format!("; did you mean `{n}`?"),
            None => String::new(),
        };
        Err(Exit {
            code: 2,
            message: format!(
                "workflow {id} has no job with id or name `{spec}` ({} jobs){hint}",
                names.len()
            ),
        }
        .into())
    }
}
