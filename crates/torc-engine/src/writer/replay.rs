//! Group commit, and what happens when one fails: the workflows the batch touched are dropped
//! from memory (they reload from the database, which holds none of the batch), then the batch's
//! requests are done again one by one, each in a commit of its own, so that only a request
//! whose own changes cannot be written gets the error. Requests done again see the state as
//! reloaded, so an answer never rests on a change that was not committed.

use super::park::ParkedBeat;
use super::Writer;
use crate::request::{CommitFailure, Pending, Redo, Request};
use std::time::Instant;
use torc_core::WorkflowId;
use torc_store::StoreError;

/// After this many requests in a row failed their commit alone, the database itself is failing
/// (full, gone): the rest of the batch gets the error without trying each.
const GIVE_UP_AFTER: usize = 3;

impl Writer {
    /// Writes the batch in one transaction, then answers its callers; when the commit fails,
    /// commits the batch's requests one by one instead.
    pub(super) fn commit(&mut self) {
        let failed = self.write_changes();
        let answers = std::mem::take(&mut self.answers);
        match failed {
            None => answers.into_iter().for_each(|a| a.send(None)),
            Some(failure) if answers.len() <= 1 => {
                answers.into_iter().for_each(|a| a.send(Some(&failure)));
            }
            Some(failure) => self.replay(answers, &failure),
        }
    }

    /// Does every request of a failed batch again alone, each in its own commit.
    fn replay(&mut self, answers: Vec<Pending>, failure: &CommitFailure) {
        tracing::warn!(
            requests = answers.len(),
            error = %failure.detail,
            "committing the failed batch's requests one by one"
        );
        let mut failed_in_a_row = 0;
        for answer in answers {
            if failed_in_a_row >= GIVE_UP_AFTER {
                answer.send(Some(failure));
                continue;
            }
            let Some(req) = self.again(answer, failure) else {
                continue;
            };
            self.handle(req);
            let failed = self.write_changes();
            failed_in_a_row = if failed.is_some() {
                failed_in_a_row + 1
            } else {
                0
            };
            for a in std::mem::take(&mut self.answers) {
                a.send(failed.as_ref());
            }
        }
    }

    /// The request to do again alone for an answer of a failed batch; `None` when it is
    /// answered already (what it changed was durable before the batch) or parked again.
    fn again(&mut self, answer: Pending, failure: &CommitFailure) -> Option<Request> {
        use Pending as P;
        Some(match answer {
            P::Id(..) | P::Unit(..) | P::Status(_, _, Redo::Keep) => {
                answer.send(None);
                return None;
            }
            P::Status(reply, _, Redo::Resume(id)) => Request::Resume { id, reply },
            P::Status(reply, _, Redo::Cancel(id)) => Request::Cancel { id, reply },
            P::Status(reply, _, Redo::Reset(id, failed_only)) => Request::Reset {
                id,
                failed_only,
                reply,
            },
            P::Status(reply, _, Redo::Status(id)) => Request::Status { id, reply },
            P::Claim(reply, _, Redo::Claim { req, deadline }) => Request::Claim {
                req,
                deadline,
                reply,
            },
            P::Claim(
                reply,
                _,
                Redo::ClaimShared {
                    req,
                    owners,
                    deadline,
                },
            ) => Request::ClaimShared {
                req,
                owners,
                deadline,
                reply,
            },
            P::Report(reply, _, Redo::Report(batch)) => Request::Report { batch, reply },
            P::Heartbeat(reply, _, Redo::Heartbeat { req, deadline }) => Request::Heartbeat {
                req,
                deadline,
                reply,
            },
            P::Heartbeat(reply, _, Redo::Beat(workflow_id)) => {
                // Answered by the next `answer_beats`, from the state as reloaded.
                self.beats.push(ParkedBeat {
                    workflow_id,
                    deadline: Instant::now(),
                    reply,
                });
                return None;
            }
            P::Actions(reply, _, Redo::Actions(req)) => Request::ClaimActions { req, reply },
            // An answer built with another request's redo (never made): the batch's failure.
            other => {
                other.send(Some(failure));
                return None;
            }
        })
    }

    /// Writes the changes recorded since the last commit in one transaction. On failure, drops
    /// the workflows they belong to from memory (they reload from the database) and says why.
    fn write_changes(&mut self) -> Option<CommitFailure> {
        let changes = std::mem::take(&mut self.changes);
        if changes.is_empty() {
            return None;
        }
        let batch: Vec<(WorkflowId, &_)> = changes.iter().map(|(id, c)| (*id, c)).collect();
        let started = Instant::now();
        let result = self.store.apply(&batch);
        self.stalled(started.elapsed());
        match result {
            Ok(()) => {
                self.stats.committed(self.answers.len(), started.elapsed());
                // Wakes whoever waits for news (event streams).
                self.committed.send_modify(|n| *n += 1);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; reloading affected workflows");
                for id in changes.keys() {
                    self.workflows.remove(id);
                    self.touched.insert(*id);
                }
                self.all_loaded = false;
                Some(CommitFailure {
                    detail: e.to_string(),
                    refused: matches!(e, StoreError::OutOfRange { .. } | StoreError::Encode { .. }),
                })
            }
        }
    }
}
