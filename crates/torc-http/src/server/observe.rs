//! Following a workflow: the event log as a long poll (answered as soon as a commit brings
//! events after the caller's last, or at its deadline), and the resource samples.

use crate::server::auth::{Access, Principal};
use crate::server::error::ApiError;
use crate::server::service::{blocking, Service};
use crate::wire::{EventBatch, EventsWaitQuery, SamplePage, SamplesQuery};
use std::time::Duration;
use torc_core::changes::WorkflowState;
use torc_core::{JobId, WorkflowId};
use torc_store::SampleFilter;

impl Service {
    /// Events after `q.after`; when there are none, waits for the engine's next commits (no
    /// polling) until some arrive or `q.wait_ms` (cut to the server's maximum) runs out. A
    /// workflow that is no longer active is answered at once.
    pub async fn events_after(
        &self,
        who: &Principal,
        id: WorkflowId,
        q: EventsWaitQuery,
    ) -> Result<EventBatch, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        let after = q.after.unwrap_or(0).max(0);
        let (_, limit) = self.page(None, q.limit);
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(self.max_wait_ms()));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribed before reading: a commit between the read and the wait wakes it.
            let mut commits = self.engine.commits();
            let store = self.store.clone();
            let items = blocking(move || store.events_after(id, after, limit)).await?;
            let state = self.engine.status(id).await?.state;
            let over = state != WorkflowState::Active;
            if !items.is_empty() || over || tokio::time::Instant::now() >= deadline {
                let next_after = items.last().map_or(after, |e| e.id);
                return Ok(EventBatch {
                    items: items.into_iter().map(Into::into).collect(),
                    next_after,
                    workflow_state: state,
                });
            }
            if tokio::time::timeout_at(deadline, commits.changed())
                .await
                .is_err()
            {
                continue; // the deadline: one last read above, then the (empty) answer
            }
        }
    }

    /// A page of the workflow's time-series samples.
    pub async fn samples(
        &self,
        who: &Principal,
        id: WorkflowId,
        q: SamplesQuery,
    ) -> Result<SamplePage, ApiError> {
        self.allow(who, id, Access::Manage).await?;
        let filter = match (q.job, q.nodes.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(ApiError::bad_request("give job or nodes=true, not both"))
            }
            (Some(0), false) => return Err(ApiError::bad_request("job ids start at 1")),
            (Some(j), false) => SampleFilter::Job(JobId(j)),
            (None, true) => SampleFilter::Nodes,
            (None, false) => SampleFilter::All,
        };
        let (offset, limit) = self.page(q.offset, q.limit);
        let store = self.store.clone();
        let items = blocking(move || store.list_samples(id, filter, offset, limit)).await?;
        Ok(SamplePage {
            offset,
            limit,
            items: items.into_iter().map(Into::into).collect(),
        })
    }
}
