//! `torc tui`: workflows, a workflow's jobs by state with filters, a job's detail with its
//! dependencies and the tail of its log; keys to cancel, reset and start a runner; refreshed
//! every second. `app` holds the state and the keys, `view` draws it; this module owns the
//! terminal and carries out what a key asks for.

mod app;
mod view;

use crate::cli::Global;
use crate::inspect;
use crate::source::Source;
use anyhow::{Context, Result};
use app::{Action, App, Key};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};
use torc_core::WorkflowId;

/// How often the screen's data is read again.
const REFRESH: Duration = Duration::from_secs(1);

pub fn tui(global: &Global) -> Result<ExitCode> {
    let source = Source::open(global)?;
    let mut app = App::new(global);
    app.refresh(&source)?;
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, &source, &mut app, global);
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    source: &Source,
    app: &mut App,
    global: &Global,
) -> Result<()> {
    let mut runners: Vec<(WorkflowId, Child)> = Vec::new();
    let mut refreshed = Instant::now();
    let mut dirty = false;
    loop {
        if dirty || refreshed.elapsed() >= REFRESH {
            if let Err(e) = app.refresh(source) {
                app.message = format!("cannot read: {e:#}");
            }
            refreshed = Instant::now();
            dirty = false;
        }
        // Runners started here that ended: reaped, and said so.
        runners.retain_mut(|(id, child)| match child.try_wait() {
            Ok(Some(status)) => {
                app.message = format!("the runner of workflow {id} ended ({status})");
                false
            }
            _ => true,
        });
        terminal.draw(|f| view::draw(f, app))?;
        if app.quit {
            return Ok(());
        }
        if !event::poll(Duration::from_millis(200))? {
            continue;
        }
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::Left => Key::Left,
            KeyCode::Right => Key::Right,
            KeyCode::PageUp => Key::PageUp,
            KeyCode::PageDown => Key::PageDown,
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Backspace => Key::Backspace,
            _ => continue,
        };
        dirty = true;
        match app.key(key) {
            None => {}
            Some(Action::Change(id, change)) => {
                app.message = match inspect::apply(global, id, change) {
                    Ok(()) => format!("workflow {id}: {}", describe(change)),
                    Err(e) => format!("workflow {id}: {e:#}"),
                };
            }
            Some(Action::StartRunner(id)) => {
                app.message = match start_runner(global, id) {
                    Ok((child, log)) => {
                        let msg = format!(
                            "started `torc run {id}` (pid {}), output in {}; it runs to the \
                             workflow's end, also after this UI quits",
                            child.id(),
                            log.display()
                        );
                        runners.push((id, child));
                        msg
                    }
                    Err(e) => format!("cannot start a runner: {e:#}"),
                };
            }
        }
    }
}

fn describe(change: inspect::Change) -> &'static str {
    match change {
        inspect::Change::Cancel => "canceled",
        inspect::Change::Reset { failed_only: true } => "reset (failed jobs and downstream)",
        inspect::Change::Reset { failed_only: false } => "reset (every job)",
        inspect::Change::MaxConcurrentJobs(_) => "cap changed",
    }
}

/// Starts `torc run ID` on this machine, as a separate process (the same database or server,
/// the same output directory), its output going to a log file beside the jobs' output.
fn start_runner(global: &Global, id: WorkflowId) -> Result<(Child, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the torc executable")?;
    std::fs::create_dir_all(&global.output_dir)?;
    let log = global.output_dir.join(format!("tui_runner_wf{id}.log"));
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--output-dir").arg(&global.output_dir);
    match &global.url {
        Some(url) => {
            cmd.arg("--url").arg(url);
        }
        None => {
            cmd.arg("--db").arg(global.db_path());
        }
    }
    cmd.args(["run", &id.to_string(), "--quiet"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = cmd.spawn().context("cannot start torc run")?;
    Ok((child, log))
}

#[cfg(test)]
mod tests;
