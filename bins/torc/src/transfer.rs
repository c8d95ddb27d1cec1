//! `torc workflows delete`, `export` and `import`.

use crate::cli::Global;
use crate::out::{errln, outln};
use crate::run::{open_existing_store, open_store, runtime};
use crate::Exit;
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use torc_core::WorkflowId;
use torc_store::WorkflowExport;

/// Deletes a workflow, after asking on a terminal (or with `yes`).
pub fn delete(global: &Global, id: i64, yes: bool) -> Result<ExitCode> {
    let id = WorkflowId(id);
    let source = crate::source::Source::open(global)?;
    let summary = source.summary(id)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Exit {
                code: 2,
                message: format!(
                    "not deleting workflow {id} ({}) without confirmation: pass --yes",
                    summary.name
                ),
            }
            .into());
        }
        errln!(
            "delete workflow {id} ({}, {} jobs, {}) and everything recorded about it? [y/N]",
            summary.name,
            summary.num_jobs,
            summary.state.name()
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            errln!("not deleted");
            return Ok(ExitCode::FAILURE);
        }
    }
    match &global.url {
        Some(url) => runtime()?.block_on(global.client(url)?.delete_workflow(id))?,
        None => open_existing_store(global)?.delete_workflow(id)?,
    }
    outln!("deleted workflow {id} ({})", summary.name);
    Ok(ExitCode::SUCCESS)
}

fn local_only(what: &str, global: &Global) -> Result<()> {
    if global.url.is_some() {
        return Err(Exit {
            code: 2,
            message: format!(
                "workflows {what} works on a database file (--db, or OUTPUT_DIR/torc.db); a \
                 server's database is a file too: run it there with --db"
            ),
        }
        .into());
    }
    Ok(())
}

/// Writes workflow `id` as one JSON document to `output`, else stdout.
pub fn export(global: &Global, id: i64, output: Option<&Path>) -> Result<ExitCode> {
    local_only("export", global)?;
    let doc = open_existing_store(global)?.export_workflow(WorkflowId(id))?;
    let text = serde_json::to_string_pretty(&doc)?;
    match output {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = anstream::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates a new workflow from an export file (`-` for stdin).
pub fn import(global: &Global, file: &Path, json: bool) -> Result<ExitCode> {
    local_only("import", global)?;
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(file).map_err(|e| Exit {
            code: 2,
            message: format!("cannot read {}: {e}", file.display()),
        })?
    };
    let doc: WorkflowExport = serde_json::from_str(&text).map_err(|e| Exit {
        code: 2,
        message: format!("{} is not a workflow export: {e}", file.display()),
    })?;
    let store = open_store(global)?;
    let id = store
        .import_workflow(&doc, torc_engine::now())
        .map_err(|e| match e {
            torc_store::ImportError::Store(e) => anyhow::Error::from(e),
            other => Exit {
                code: 2,
                message: format!("{}: {other}", file.display()),
            }
            .into(),
        })?;
    if json {
        outln!(
            "{}",
            serde_json::json!({"workflow_id": id, "imported_from": doc.exported_from.id})
        );
    } else {
        outln!(
            "imported workflow {id} ({}, {} jobs, {}) from workflow {}",
            doc.definition.name,
            doc.definition.jobs.len(),
            doc.exported_from.state.name(),
            doc.exported_from.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
