//! The UI drawn on ratatui's test backend from a real database, driven key by key.

use super::app::{Action, App, Key, Screen};
use super::view;
use crate::cli::Global;
use crate::inspect::Change;
use crate::source::Source;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use torc_core::{JobStatus, WorkflowId};

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(140, 40)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// A database with one workflow run to its end: `a` (completes, writes to stderr), `b`
/// (fails) and `c` (after `a`).
fn ran() -> (tempfile::TempDir, Global) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("w.yaml");
    std::fs::write(
        &spec,
        "name: tuitest\njobs:\n  - name: a\n    command: \"echo from-a-stderr >&2\"\n  - name: b\n    command: \"exit 4\"\n  - name: c\n    command: \"true\"\n    depends_on: [a]\n",
    )
    .unwrap();
    let global = Global {
        output_dir: dir.path().join("out"),
        db: None,
        url: None,
        token: None,
    };
    let args = crate::cli::RunArgs {
        spec_or_id: spec.to_string_lossy().into_owned(),
        max_parallel_jobs: Some(2),
        num_cpus: None,
        memory: None,
        num_gpus: None,
        grace_period: Some(1),
        quiet: true,
        relaxed_durability: false,
    };
    crate::run::run(&global, &args).unwrap();
    (dir, global)
}

#[test]
fn screens_show_workflows_jobs_filters_and_a_job_with_its_log() {
    let (_dir, global) = ran();
    let source = Source::open(&global).unwrap();
    let mut app = App::new(&global);
    app.refresh(&source).unwrap();
    let s = screen(&app);
    assert!(
        s.contains("torc: workflows") && s.contains("tuitest"),
        "{s}"
    );
    assert!(s.contains("complete"), "{s}");

    app.key(Key::Enter);
    app.refresh(&source).unwrap();
    assert_eq!(app.screen, Screen::Jobs(WorkflowId(1)));
    let s = screen(&app);
    assert!(s.contains("2 completed") && s.contains("1 failed"), "{s}");
    assert!(s.contains("jobs: 3 of 3"), "{s}");

    // f: the first state present (completed), then the next (failed).
    app.key(Key::Char('f'));
    assert_eq!(app.state_filter, Some(JobStatus::Completed));
    app.key(Key::Char('f'));
    assert_eq!(app.state_filter, Some(JobStatus::Failed));
    let s = screen(&app);
    assert!(s.contains("jobs: 1 of 3") && s.contains("exit 4"), "{s}");
    app.key(Key::Char('f'));
    assert_eq!(app.state_filter, None, "after the last state: all again");

    // A name filter typed after /.
    for k in [Key::Char('/'), Key::Char('a'), Key::Enter] {
        app.key(k);
    }
    assert_eq!(app.visible_jobs().len(), 1);
    let s = screen(&app);
    assert!(s.contains("name \"a\""), "{s}");

    app.key(Key::Enter);
    assert_eq!(app.screen, Screen::Job(WorkflowId(1), torc_core::JobId(1)));
    app.refresh(&source).unwrap();
    let s = screen(&app);
    assert!(
        s.contains("job 1 (a)") && s.contains("needed by: 3 c"),
        "{s}"
    );
    assert!(s.contains("depends on: none"), "{s}");
    assert!(s.contains("from-a-stderr"), "the tail of its stderr: {s}");
    assert!(s.contains("return code 0"), "{s}");

    // Keys that act hand their action to the owner.
    assert_eq!(
        app.key(Key::Char('r')),
        Some(Action::Change(
            WorkflowId(1),
            Change::Reset { failed_only: true }
        ))
    );
    assert_eq!(
        app.key(Key::Char('s')),
        Some(Action::StartRunner(WorkflowId(1)))
    );
    app.key(Key::Esc);
    app.key(Key::Esc);
    assert_eq!(app.screen, Screen::Workflows);
    app.key(Key::Char('q'));
    assert!(app.quit);
}
