//! The terminal UI's state: which screen, what it shows (read from a [`Source`]), and what each
//! key does. Free of the terminal, so that tests drive it key by key and draw it on a test
//! backend.

use crate::cli::Global;
use crate::inspect::Change;
use crate::source::Source;
use crate::stdio::{self, Stream};
use anyhow::Result;
use std::path::PathBuf;
use torc_core::model::WorkflowDef;
use torc_core::{JobId, JobStatus, WorkflowId};
use torc_store::{JobRecord, ResultRecord, WorkflowSummary};

/// Lines of a job's log shown.
pub const LOG_LINES: usize = 12;

/// What the UI is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Workflows,
    Jobs(WorkflowId),
    Job(WorkflowId, JobId),
}

/// One job's detail.
#[derive(Debug, Clone, Default)]
pub struct JobDetail {
    pub job: Option<JobRecord>,
    pub results: Vec<ResultRecord>,
    /// What it waits for and what waits for it, `None` where the definition cannot be read.
    pub depends_on: Option<Vec<(JobId, String)>>,
    pub needed_by: Option<Vec<(JobId, String)>>,
    /// The log shown (stderr or stdout of the latest attempt): its path and last lines.
    pub log: Option<(PathBuf, Option<Vec<String>>)>,
}

/// Data and position of every screen, refreshed by [`App::refresh`].
pub struct App {
    pub screen: Screen,
    pub workflows: Vec<WorkflowSummary>,
    pub workflow_cursor: usize,
    pub summary: Option<WorkflowSummary>,
    pub jobs: Vec<JobRecord>,
    pub job_cursor: usize,
    /// Only jobs in this state (`f` cycles through the states present).
    pub state_filter: Option<JobStatus>,
    /// Only jobs whose name contains this (`/` to type it).
    pub name_filter: String,
    /// Typing the name filter.
    pub typing: bool,
    pub detail: JobDetail,
    pub show_stdout: bool,
    /// The last thing done or gone wrong, shown at the bottom.
    pub message: String,
    pub quit: bool,
    stdio_dir: PathBuf,
    def: Option<(WorkflowId, WorkflowDef)>,
}

/// Something the UI asks its owner to do: change a workflow, or start a runner for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Change(WorkflowId, Change),
    StartRunner(WorkflowId),
}

impl App {
    pub fn new(global: &Global) -> App {
        App {
            screen: Screen::Workflows,
            workflows: Vec::new(),
            workflow_cursor: 0,
            summary: None,
            jobs: Vec::new(),
            job_cursor: 0,
            state_filter: None,
            name_filter: String::new(),
            typing: false,
            detail: JobDetail::default(),
            show_stdout: false,
            message: String::new(),
            quit: false,
            stdio_dir: stdio::dir(&global.output_dir),
            def: None,
        }
    }

    /// Reads what the current screen shows.
    pub fn refresh(&mut self, source: &Source) -> Result<()> {
        match self.screen {
            Screen::Workflows => {
                self.workflows = source.workflows()?;
                clamp(&mut self.workflow_cursor, self.workflows.len());
            }
            Screen::Jobs(id) => {
                self.summary = Some(source.summary(id)?);
                self.jobs = source.all_jobs(id)?;
                let n = self.visible_jobs().len();
                clamp(&mut self.job_cursor, n);
            }
            Screen::Job(id, job) => {
                self.summary = Some(source.summary(id)?);
                if self.def.as_ref().map(|(w, _)| *w) != Some(id) {
                    self.def = source.def(id)?.map(|d| (id, d));
                }
                let record = source.job(id, job)?;
                let results = source.results(id, Some(job))?;
                let def = self.def.as_ref().map(|(_, d)| d);
                let name = |j: JobId| {
                    def.and_then(|d| d.job(j))
                        .map_or_else(String::new, |j| j.name.clone())
                };
                let depends_on = def.map(|d| {
                    d.job(job)
                        .map_or_else(Vec::new, |j| j.depends_on.clone())
                        .into_iter()
                        .map(|j| (j, name(j)))
                        .collect()
                });
                let needed_by = def.map(|d| {
                    (d.jobs.iter().enumerate())
                        .filter(|(_, j)| j.depends_on.contains(&job))
                        .map(|(i, _)| (JobId::from_index(i), name(JobId::from_index(i))))
                        .collect()
                });
                let stream = match self.show_stdout {
                    true => Stream::Stdout,
                    false => Stream::Stderr,
                };
                let log = record.as_ref().map(|j| {
                    // The attempt running now, else the latest one recorded.
                    let (run, attempt) = match results.last() {
                        Some(r) if j.status != JobStatus::Running => (r.run_id, r.attempt_id),
                        _ => (self.summary.as_ref().map_or(1, |s| s.run_id), j.attempt_id),
                    };
                    let path = stdio::file(&self.stdio_dir, id, job, run, attempt, stream);
                    let tail = stdio::tail(&path, LOG_LINES);
                    (path, tail)
                });
                self.detail = JobDetail {
                    job: record,
                    results,
                    depends_on,
                    needed_by,
                    log,
                };
            }
        }
        Ok(())
    }

    /// The jobs the filters let through.
    pub fn visible_jobs(&self) -> Vec<&JobRecord> {
        let needle = self.name_filter.to_lowercase();
        self.jobs
            .iter()
            .filter(|j| self.state_filter.is_none_or(|s| j.status == s))
            .filter(|j| needle.is_empty() || j.name.to_lowercase().contains(&needle))
            .collect()
    }

    /// Handles one key; returns what the owner must carry out, if anything.
    pub fn key(&mut self, key: Key) -> Option<Action> {
        if self.typing {
            match key {
                Key::Char(c) => self.name_filter.push(c),
                Key::Backspace => {
                    self.name_filter.pop();
                }
                Key::Enter | Key::Esc => self.typing = false,
                _ => {}
            }
            self.job_cursor = 0;
            return None;
        }
        match key {
            Key::Char('q') => self.quit = true,
            Key::Up | Key::Char('k') => self.move_cursor(-1),
            Key::Down | Key::Char('j') => self.move_cursor(1),
            Key::PageUp => self.move_cursor(-20),
            Key::PageDown => self.move_cursor(20),
            Key::Esc | Key::Backspace | Key::Left => self.back(),
            Key::Enter | Key::Right => self.open(),
            Key::Char('f') if matches!(self.screen, Screen::Jobs(_)) => self.cycle_filter(),
            Key::Char('/') if matches!(self.screen, Screen::Jobs(_)) => {
                self.typing = true;
                self.name_filter.clear();
            }
            Key::Char('o') if matches!(self.screen, Screen::Job(..)) => {
                self.show_stdout = !self.show_stdout;
            }
            Key::Char('c') => {
                return self
                    .current_workflow()
                    .map(|id| Action::Change(id, Change::Cancel))
            }
            Key::Char('r') => {
                return self
                    .current_workflow()
                    .map(|id| Action::Change(id, Change::Reset { failed_only: true }))
            }
            Key::Char('R') => {
                return self
                    .current_workflow()
                    .map(|id| Action::Change(id, Change::Reset { failed_only: false }))
            }
            Key::Char('s') => return self.current_workflow().map(Action::StartRunner),
            _ => {}
        }
        None
    }

    /// The workflow the keys act on: the one open, else the one under the cursor.
    pub fn current_workflow(&self) -> Option<WorkflowId> {
        match self.screen {
            Screen::Workflows => self.workflows.get(self.workflow_cursor).map(|w| w.id),
            Screen::Jobs(id) | Screen::Job(id, _) => Some(id),
        }
    }

    fn move_cursor(&mut self, by: isize) {
        let (cursor, len) = match self.screen {
            Screen::Workflows => (&mut self.workflow_cursor, self.workflows.len()),
            Screen::Jobs(_) => {
                let len = self.visible_jobs().len();
                (&mut self.job_cursor, len)
            }
            Screen::Job(..) => return,
        };
        let max = len.saturating_sub(1) as isize;
        *cursor = (*cursor as isize + by).clamp(0, max) as usize;
    }

    fn open(&mut self) {
        match self.screen {
            Screen::Workflows => {
                if let Some(w) = self.workflows.get(self.workflow_cursor) {
                    self.screen = Screen::Jobs(w.id);
                    self.jobs.clear();
                    self.job_cursor = 0;
                    self.state_filter = None;
                    self.name_filter.clear();
                }
            }
            Screen::Jobs(id) => {
                if let Some(j) = self.visible_jobs().get(self.job_cursor) {
                    self.screen = Screen::Job(id, j.id);
                    self.detail = JobDetail::default();
                }
            }
            Screen::Job(..) => {}
        }
    }

    fn back(&mut self) {
        self.screen = match self.screen {
            Screen::Workflows => Screen::Workflows,
            Screen::Jobs(_) => Screen::Workflows,
            Screen::Job(id, _) => Screen::Jobs(id),
        };
    }

    /// All states, then each state some job is in, in the states' order.
    fn cycle_filter(&mut self) {
        let present: Vec<JobStatus> = JobStatus::ALL
            .into_iter()
            .filter(|s| self.jobs.iter().any(|j| j.status == *s))
            .collect();
        self.state_filter = match self.state_filter {
            None => present.first().copied(),
            Some(cur) => present.iter().copied().skip_while(|s| *s != cur).nth(1),
        };
        self.job_cursor = 0;
    }
}

fn clamp(cursor: &mut usize, len: usize) {
    *cursor = (*cursor).min(len.saturating_sub(1));
}

/// The keys the UI knows, apart from the terminal library's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Enter,
    Esc,
    Backspace,
}
