//! Deleting workflows between group commits: the workflow leaves memory and is marked in the
//! database at once (hidden from every read), then one chunk of its rows is deleted after each
//! batch, so that a workflow of a million jobs never holds back another's commits for longer
//! than one chunk. Its caller is answered when the last row is gone; marks left by a crash are
//! taken up again when the writer starts.

use super::Writer;
use crate::request::{Pending, Reply};
use crate::EngineError;
use torc_core::WorkflowId;

/// Rows deleted per step (one transaction between two batches).
pub(super) const PURGE_ROWS: u32 = 5_000;

/// A workflow being deleted, and who waits for the end.
pub(super) struct Purge {
    pub(super) id: WorkflowId,
    pub(super) reply: Option<Reply<()>>,
}

impl Writer {
    /// Drops the workflow from memory (and what this batch changed of it) and marks it deleted;
    /// its rows go in later steps.
    pub(super) fn delete(&mut self, id: WorkflowId, reply: Reply<()>) {
        self.workflows.remove(&id);
        self.changes.remove(&id);
        self.touched.insert(id);
        match self.store.mark_deleting(id) {
            Ok(()) => self.purging.push_back(Purge {
                id,
                reply: Some(reply),
            }),
            Err(e) if e.is_not_found() => {
                let r = Err(EngineError::WorkflowNotFound(id));
                self.answers.push(Pending::Unit(reply, r));
            }
            Err(e) => self.answers.push(Pending::Unit(reply, Err(e.into()))),
        }
    }

    /// Takes up the deletions a crash interrupted.
    pub(super) fn resume_purges(&mut self) {
        match self.store.deleting_workflows() {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(workflow = %id, "going on deleting");
                    self.purging.push_back(Purge { id, reply: None });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list the workflows being deleted"),
        }
    }

    /// Deletes one chunk of the first workflow being deleted.
    pub(super) fn purge_step(&mut self) {
        let Some(purge) = self.purging.front_mut() else {
            return;
        };
        let id = purge.id;
        let done = match self.store.purge_step(id, PURGE_ROWS) {
            Ok(false) => return,
            Ok(true) => {
                tracing::info!(workflow = %id, "workflow deleted");
                Ok(())
            }
            Err(e) => {
                // Left marked: the next start goes on with it.
                tracing::error!(workflow = %id, error = %e, "deleting the workflow failed");
                Err(EngineError::from(e))
            }
        };
        if let Some(reply) = self.purging.pop_front().and_then(|p| p.reply) {
            drop(reply.send(done));
        }
    }
}
