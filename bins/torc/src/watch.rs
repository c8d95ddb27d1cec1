//! `torc watch ID`: the live view of `torc run` for a workflow that runs elsewhere (under a
//! server with `--url`, or a `torc run` in another process writing the local database).

use crate::cli::{Global, WatchArgs};
use crate::out::outln;
use crate::progress::{self, Mode, Stored};
use crate::run::{counts_line, open_existing_store, runtime};
use anyhow::Result;
use std::io::IsTerminal;
use std::process::ExitCode;
use torc_core::changes::WorkflowState;
use torc_core::sched::StatusSummary;
use torc_core::{JobStatus, WorkflowId};

pub fn watch(global: &Global, args: &WatchArgs) -> Result<ExitCode> {
    let id = WorkflowId(args.workflow_id);
    let mode = match std::io::stderr().is_terminal() && !args.lines {
        true => Mode::Bar,
        false => Mode::Lines,
    };
    let stdio_dir = crate::stdio::dir(&global.output_dir);
    let rt = runtime()?;
    let last = match &global.url {
        Some(url) => {
            let client = global.client(url)?;
            rt.block_on(progress::follow(client, id, mode, stdio_dir, on_tick))?
        }
        None => {
            let store = Stored(open_existing_store(global)?);
            rt.block_on(progress::follow(store, id, mode, stdio_dir, on_tick))?
        }
    };
    outln!(
        "workflow {id} {}: {}",
        crate::out::state(last.state.name()),
        counts_line(&last)
    );
    Ok(exit_code(&last))
}

/// Called with the workflow's state at every look. Watching only shows; acting on what is seen
/// (restarting lost runners, say) belongs here.
fn on_tick(_status: &StatusSummary) {}

/// 0 when every job completed (or was skipped as disabled), 1 when any failed, was canceled or
/// terminated, or the workflow was canceled.
fn exit_code(s: &StatusSummary) -> ExitCode {
    let bad = s.counts.iter().any(|(st, n)| {
        *n > 0
            && matches!(
                st,
                JobStatus::Failed | JobStatus::Canceled | JobStatus::Terminated
            )
    });
    if bad || s.state == WorkflowState::Canceled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
