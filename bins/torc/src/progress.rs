//! What `torc run` shows while it runs: an `indicatif` bar on a terminal (jobs finished of all,
//! counts by state, jobs/s, ETA), a plain line every few seconds elsewhere, and every failed
//! attempt as it happens, with its return code and the last lines of its stderr file.
//!
//! Counts come from the workflow's status summary (the engine's live state, or the server's).
//! Failures come from the results: the display knows how many results the workflow had when the
//! run began and reads only those recorded since, and only while the runner has seen more
//! attempts fail than have been printed (the runner's own counters say so at no cost), plus once
//! at the end, so that none is missed however quickly the run ends.

use crate::out::{self, errln};
use crate::stdio::{self, Stream};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use torc_core::sched::StatusSummary;
use torc_core::{JobId, JobStatus, WorkflowId};
use torc_engine::EngineHandle;
use torc_http::HttpClient;
use torc_runner::Progress;
use torc_store::{ResultRecord, Store};

/// Results read per request (a server caps its pages; it answers at most what it allows).
const PAGE: u64 = 10_000;
/// Lines of a failed job's stderr shown.
const TAIL_LINES: usize = 5;
/// How often the bar is redrawn from a fresh status.
const BAR_EVERY: Duration = Duration::from_millis(250);
/// How often a plain progress line is printed (when something changed).
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Where a run's status, results and job names are read from.
pub trait Watched: Clone + Send + Sync + 'static {
    fn status(&self, id: WorkflowId) -> impl Future<Output = Result<StatusSummary>> + Send;
    /// Results from the `offset`-th on, in the order they were recorded (one page).
    fn results(
        &self,
        id: WorkflowId,
        offset: u64,
    ) -> impl Future<Output = Result<Vec<ResultRecord>>> + Send;
    fn job_name(&self, id: WorkflowId, job: JobId) -> impl Future<Output = Result<String>> + Send;
}

/// The embedded engine (live counts) and the database it writes (results, names).
#[derive(Clone)]
pub struct Local {
    pub engine: EngineHandle,
    pub store: Store,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, torc_store::StoreError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

impl Watched for Local {
    async fn status(&self, id: WorkflowId) -> Result<StatusSummary> {
        Ok(self.engine.status(id).await?)
    }

    async fn results(&self, id: WorkflowId, offset: u64) -> Result<Vec<ResultRecord>> {
        let store = self.store.clone();
        blocking(move || store.list_results(id, None, offset, PAGE)).await
    }

    async fn job_name(&self, id: WorkflowId, job: JobId) -> Result<String> {
        let store = self.store.clone();
        let offset = u64::from(job.0.saturating_sub(1));
        let jobs = blocking(move || store.list_jobs(id, None, offset, 1)).await?;
        Ok(jobs.into_iter().next().map_or_else(String::new, |j| j.name))
    }
}

/// The database alone, written by a `torc run` in another process: counts come from the stored
/// job states.
#[derive(Clone)]
pub struct Stored(pub Store);

impl Watched for Stored {
    async fn status(&self, id: WorkflowId) -> Result<StatusSummary> {
        let store = self.0.clone();
        let (summary, counts) =
            blocking(move || Ok((store.workflow_summary(id)?, store.job_counts(id)?))).await?;
        Ok(StatusSummary {
            state: summary.state,
            run_id: summary.run_id,
            total: summary.num_jobs,
            counts: counts.into_iter().collect(),
        })
    }

    async fn results(&self, id: WorkflowId, offset: u64) -> Result<Vec<ResultRecord>> {
        let store = self.0.clone();
        blocking(move || store.list_results(id, None, offset, PAGE)).await
    }

    async fn job_name(&self, id: WorkflowId, job: JobId) -> Result<String> {
        let store = self.0.clone();
        let offset = u64::from(job.0.saturating_sub(1));
        let jobs = blocking(move || store.list_jobs(id, None, offset, 1)).await?;
        Ok(jobs.into_iter().next().map_or_else(String::new, |j| j.name))
    }
}

impl Watched for HttpClient {
    async fn status(&self, id: WorkflowId) -> Result<StatusSummary> {
        Ok(HttpClient::status(self, id).await?.into_summary())
    }

    async fn results(&self, id: WorkflowId, offset: u64) -> Result<Vec<ResultRecord>> {
        let page = HttpClient::results(self, id, None, offset, PAGE).await?;
        Ok(page.items.into_iter().map(ResultRecord::from).collect())
    }

    async fn job_name(&self, id: WorkflowId, job: JobId) -> Result<String> {
        let offset = u64::from(job.0.saturating_sub(1));
        let page = self.jobs(id, None, offset, 1).await?;
        Ok(page
            .items
            .into_iter()
            .next()
            .map_or_else(String::new, |j| j.name))
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar on stderr, a terminal.
    Bar,
    /// Plain lines on stderr, for a log file or a pipe.
    Lines,
}

/// The running display; [`Display::finish`] prints what is left and clears the bar.
pub struct Display {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Display {
    /// Starts showing workflow `id`: counts the results it already has (so that only this
    /// run's failures are shown), then follows it until [`Display::finish`].
    pub async fn start<W: Watched>(
        source: W,
        id: WorkflowId,
        mode: Mode,
        stdio_dir: PathBuf,
        runner: watch::Receiver<Progress>,
    ) -> Result<Display> {
        let show = Show::new(source, id, mode, stdio_dir).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(show.run(runner, stopped));
        Ok(Display { stop, task })
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Show<W> {
    source: W,
    id: WorkflowId,
    mode: Mode,
    stdio_dir: PathBuf,
    /// Results of the workflow read so far (those before the run included).
    results_seen: u64,
    /// Failed attempts printed (compared with the runner's count of them).
    failures_shown: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    /// Jobs already finished when the run began (they are not part of the rate).
    done_at_start: Option<u64>,
    /// The last plain line printed, and when.
    last_line: String,
    last_line_at: Option<Instant>,
}

impl<W: Watched> Show<W> {
    /// A display of workflow `id` that counts the results it already has, so that only those
    /// recorded from now on are shown as failures.
    async fn new(source: W, id: WorkflowId, mode: Mode, stdio_dir: PathBuf) -> Result<Show<W>> {
        let mut seen = 0;
        loop {
            let page = source.results(id, seen).await?.len() as u64;
            seen += page;
            if page == 0 {
                break;
            }
        }
        Ok(Show {
            source,
            id,
            mode,
            stdio_dir,
            results_seen: seen,
            failures_shown: 0,
            started: Instant::now(),
            bar: None,
            done_at_start: None,
            last_line: String::new(),
            last_line_at: None,
        })
    }

    /// Shows `status`: redraws the bar, or prints a plain line when it changed and the last one
    /// is at least [`LINE_EVERY`] old (always with `force`).
    fn show(&mut self, status: &StatusSummary, force: bool) {
        match self.mode {
            Mode::Bar => self.draw(status),
            Mode::Lines => {
                let line = self.line(status);
                let due = self.last_line_at.is_none_or(|t| t.elapsed() >= LINE_EVERY);
                if line != self.last_line && (due || force) {
                    errln!("{line}");
                    self.last_line = line;
                    self.last_line_at = Some(Instant::now());
                }
            }
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Follows workflow `id`, run by someone else, until it is no longer active: the same bar or
/// lines as `torc run`, and every failed attempt recorded from now on as it is recorded.
/// `on_tick` is given the workflow's state at every look (about four a second), the last one
/// included; it is the place for whatever else a follower does (it must not block). Returns the
/// last state (at once for a workflow that is already over).
pub async fn follow<W: Watched>(
    source: W,
    id: WorkflowId,
    mode: Mode,
    stdio_dir: PathBuf,
    mut on_tick: impl FnMut(&StatusSummary) + Send,
) -> Result<StatusSummary> {
    let mut show = Show::new(source, id, mode, stdio_dir).await?;
    let mut tick = tokio::time::interval(BAR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Results first: a failure committed with the workflow's end is then never missed.
        show.show_failures().await;
        let status = show.source.status(id).await?;
        let over = status.state != torc_core::changes::WorkflowState::Active;
        if over {
            show.show_failures().await;
        }
        show.show(&status, over);
        on_tick(&status);
        if over {
            show.clear();
            return Ok(status);
        }
    }
}

impl<W: Watched> Show<W> {
    async fn run(mut self, runner: watch::Receiver<Progress>, mut stopped: watch::Receiver<bool>) {
        let every = match self.mode {
            Mode::Bar => BAR_EVERY,
            Mode::Lines => LINE_EVERY,
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the first look below is the one before it
        let mut last = false;
        loop {
            let failed = {
                let p = runner.borrow();
                p.failed + p.terminated
            };
            if last || failed > self.failures_shown {
                self.show_failures().await;
            }
            if last {
                break;
            }
            if let Ok(status) = self.source.status(self.id).await {
                self.show(&status, true);
            }
            last = tokio::select! {
                _ = tick.tick() => false,
                _ = stopped.changed() => true,
            };
        }
        self.clear();
    }

    fn draw(&mut self, status: &StatusSummary) {
        let done = finished(status);
        let start = *self.done_at_start.get_or_insert(done);
        let bar = self.bar.get_or_insert_with(|| {
            let template = if out::stderr_colours() {
                "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {rate} ETA {eta} {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {rate} ETA {eta} {msg}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} jobs/s", s.per_sec());
                })
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(status.total), ProgressDrawTarget::stderr())
                .with_style(style);
            // Jobs finished before this run are shown but count for neither rate nor ETA.
            bar.set_position(start);
            bar.reset_eta();
            bar
        });
        bar.set_length(status.total);
        bar.set_position(done);
        // indicatif writes to the terminal itself: colour only where anstream would show it.
        bar.set_message(counts(status, out::stderr_colours()));
    }

    fn line(&mut self, status: &StatusSummary) -> String {
        let done = finished(status);
        let start = *self.done_at_start.get_or_insert(done);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done.saturating_sub(start) as f64 / secs;
        let left = status.total.saturating_sub(done);
        let eta = if rate > 0.0 && left > 0 {
            format!(
                ", ETA {}",
                torc_core::units::format_duration(torc_core::units::duration_from_secs_f64(
                    left as f64 / rate
                ))
            )
        } else {
            String::new()
        };
        format!(
            "workflow {}: {done}/{} done | {} | {rate:.1} jobs/s{eta}",
            self.id,
            status.total,
            counts(status, false)
        )
    }

    /// Prints the failed attempts recorded since the last look.
    async fn show_failures(&mut self) {
        loop {
            let Ok(page) = self.source.results(self.id, self.results_seen).await else {
                return;
            };
            if page.is_empty() {
                return;
            }
            self.results_seen += page.len() as u64;
            for r in page.iter().filter(|r| r.status != JobStatus::Completed) {
                self.failures_shown += 1;
                let name = self
                    .source
                    .job_name(self.id, r.job_id)
                    .await
                    .unwrap_or_default();
                let text = failure_text(self.id, r, &name, &self.stdio_dir);
                match &self.bar {
                    Some(bar) => bar.suspend(|| errln!("{text}")),
                    None => errln!("{text}"),
                }
            }
        }
    }
}

/// Jobs that will not run again in this run.
fn finished(s: &StatusSummary) -> u64 {
    s.counts
        .iter()
        .filter(|(st, _)| st.is_finished())
        .map(|(_, n)| n)
        .sum()
}

/// `3 running, 10 ready, 2 failed`, states with no job left out; coloured on request.
fn counts(s: &StatusSummary, colour: bool) -> String {
    s.counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| {
            if colour {
                format!("{n} {}", out::state(st.name()))
            } else {
                format!("{n} {st}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is printed for a failed attempt: a headline, then the last lines of its stderr (or
/// of its combined `.log`), indented.
pub fn failure_text(id: WorkflowId, r: &ResultRecord, name: &str, stdio_dir: &Path) -> String {
    let mut text = format!(
        "{} job {} ({name}), attempt {}: return code {}",
        out::state(r.status.name()),
        r.job_id,
        r.attempt_id,
        r.return_code
    );
    if let Some(message) = &r.message {
        text.push_str(&format!(" ({message})"));
    }
    let err = stdio::file(
        stdio_dir,
        id,
        r.job_id,
        r.run_id,
        r.attempt_id,
        Stream::Stderr,
    );
    let kept = stdio::locate(err, Stream::Stderr, None);
    let Some(path) = kept.path() else {
        return text;
    };
    match stdio::tail(path, TAIL_LINES) {
        Some(lines) if !lines.is_empty() => {
            text.push_str(&format!("; last lines of {}:", path.display()));
            for l in lines {
                text.push_str("\n    ");
                text.push_str(&l);
            }
        }
        Some(_) => text.push_str(&format!("; {} is empty", path.display())),
        None => {}
    }
    text
}
