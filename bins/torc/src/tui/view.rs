//! Drawing the terminal UI's screens with ratatui.

use super::app::{App, Screen};
use crate::inspect::time;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use std::collections::BTreeMap;
use torc_core::JobStatus;

fn state_style(name: &str) -> Style {
    match name {
        "failed" | "pending_failed" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        "terminated" | "canceled" => Style::new().fg(Color::Yellow),
        "completed" | "complete" => Style::new().fg(Color::Green),
        "running" | "pending" => Style::new().fg(Color::Cyan),
        _ => Style::new(),
    }
}

const HIGHLIGHT: Style = Style::new().add_modifier(Modifier::REVERSED);

pub fn draw(frame: &mut Frame, app: &App) {
    let [main, help, message] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    match app.screen {
        Screen::Workflows => workflows(frame, main, app),
        Screen::Jobs(_) => jobs(frame, main, app),
        Screen::Job(..) => job(frame, main, app),
    }
    let keys = match app.screen {
        Screen::Workflows => "↑↓ move  enter open  c cancel  r reset failed  R reset all  s start a runner  q quit",
        Screen::Jobs(_) => "↑↓ move  enter job  f state filter  / name filter  c cancel  r reset failed  s start a runner  esc back  q quit",
        Screen::Job(..) => "o stdout/stderr  c cancel  r reset failed  s start a runner  esc back  q quit",
    };
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().fg(Color::DarkGray)),
        help,
    );
    frame.render_widget(Paragraph::new(app.message.as_str()), message);
}

fn workflows(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.workflows.iter().map(|w| {
        Row::new(vec![
            Span::raw(w.id.to_string()),
            Span::raw(w.name.clone()),
            Span::styled(w.state.name(), state_style(w.state.name())),
            Span::raw(w.run_id.to_string()),
            Span::raw(w.num_jobs.to_string()),
            Span::raw(time(w.created_at)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(24),
        ],
    )
    .header(
        Row::new(["ID", "NAME", "STATE", "RUN", "JOBS", "CREATED"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(" torc: workflows "),
    )
    .row_highlight_style(HIGHLIGHT);
    let mut state = TableState::new().with_selected(Some(app.workflow_cursor));
    frame.render_stateful_widget(table, area, &mut state);
}

fn jobs(frame: &mut Frame, area: Rect, app: &App) {
    let [head, list] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let mut counts: BTreeMap<JobStatus, u64> = BTreeMap::new();
    for j in &app.jobs {
        *counts.entry(j.status).or_default() += 1;
    }
    let mut spans = Vec::new();
    for (s, n) in &counts {
        spans.push(Span::styled(
            format!("{n} {}", s.name()),
            state_style(s.name()),
        ));
        spans.push(Span::raw("  "));
    }
    let title = match &app.summary {
        Some(w) => format!(
            " workflow {} ({}): {}, run {} ",
            w.id,
            w.name,
            w.state.name(),
            w.run_id
        ),
        None => " workflow ".into(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(spans)).block(Block::new().borders(Borders::ALL).title(title)),
        head,
    );
    let visible = app.visible_jobs();
    let filter = match (&app.state_filter, app.name_filter.is_empty(), app.typing) {
        (None, true, false) => String::new(),
        (state, _, typing) => format!(
            " filter: state {} · name {:?}{} ",
            state.map_or("any", |s| s.name()),
            app.name_filter,
            if typing {
                " (typing, enter to end)"
            } else {
                ""
            }
        ),
    };
    let rows = visible.iter().map(|j| {
        Row::new(vec![
            Span::raw(j.id.to_string()),
            Span::raw(j.name.clone()),
            Span::styled(j.status.name(), state_style(j.status.name())),
            Span::raw(j.attempt_id.to_string()),
            Span::raw(j.command.clone()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Length(24),
            Constraint::Length(15),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(["ID", "NAME", "STATE", "ATTEMPT", "COMMAND"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(format!(" jobs: {} of {} ", visible.len(), app.jobs.len()))
            .title_bottom(filter),
    )
    .row_highlight_style(HIGHLIGHT);
    let mut state = TableState::new().with_selected(Some(app.job_cursor));
    frame.render_stateful_widget(table, list, &mut state);
}

fn job(frame: &mut Frame, area: Rect, app: &App) {
    let d = &app.detail;
    let Some(job) = &d.job else {
        frame.render_widget(
            Paragraph::new("no such job").block(Block::new().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let [info, log] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(super::app::LOG_LINES as u16 + 2),
    ])
    .areas(area);
    let mut lines = vec![
        Line::from(vec![
            Span::raw("state: "),
            Span::styled(job.status.name(), state_style(job.status.name())),
            Span::raw(format!("   attempt: {}", job.attempt_id)),
        ]),
        Line::from(format!("command: {}", job.command)),
    ];
    let list = |deps: &Option<Vec<(torc_core::JobId, String)>>| match deps {
        None => "(not shown over --url)".to_string(),
        Some(v) if v.is_empty() => "none".to_string(),
        Some(v) => v
            .iter()
            .map(|(j, n)| format!("{j} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    lines.push(Line::from(format!("depends on: {}", list(&d.depends_on))));
    lines.push(Line::from(format!("needed by: {}", list(&d.needed_by))));
    lines.push(Line::from(format!("results ({}):", d.results.len())));
    for r in d.results.iter().rev().take(8) {
        lines.push(Line::from(vec![
            Span::raw(format!("  run {} attempt {}: ", r.run_id, r.attempt_id)),
            Span::styled(r.status.name(), state_style(r.status.name())),
            Span::raw(format!(
                ", return code {}, {:.2} s, started {}",
                r.return_code,
                r.exec_time_secs,
                time(r.start_time)
            )),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" job {} ({}) ", job.id, job.name))
                .title_bottom(match &app.summary {
                    Some(w) => format!(
                        " workflow {} ({}): {}, run {} ",
                        w.id,
                        w.name,
                        w.state.name(),
                        w.run_id
                    ),
                    None => String::new(),
                }),
        ),
        info,
    );
    let which = if app.show_stdout { "stdout" } else { "stderr" };
    let (title, text) = match &d.log {
        Some((path, Some(tail))) if tail.is_empty() => (
            format!(" {which}: {} ", path.display()),
            vec![Line::from("(empty)")],
        ),
        Some((path, Some(tail))) => (
            format!(" {which}: {} ", path.display()),
            tail.iter().map(|l| Line::from(l.clone())).collect(),
        ),
        Some((path, None)) => (
            format!(" {which} "),
            vec![Line::from(format!(
                "not readable from here: {} (not written yet, or on another machine)",
                path.display()
            ))],
        ),
        None => (format!(" {which} "), Vec::new()),
    };
    frame.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::ALL).title(title)),
        log,
    );
}
