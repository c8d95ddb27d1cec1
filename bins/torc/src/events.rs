//! `torc events list ID [--follow]`: a workflow's event log, and with --follow each new event as
//! it is recorded. Against a server the follow is its long poll (`/events/wait`: answered when a
//! commit brings events); on the local database, written by a `torc run` in another process,
//! the database is looked at four times a second.

use crate::cli::{EventsListArgs, Global};
use crate::out::outln;
use crate::run::{open_existing_store, runtime};
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;
use torc_core::changes::WorkflowState;
use torc_core::WorkflowId;
use torc_http::HttpClient;
use torc_store::{EventRecord, Store};

/// Events read per request.
const PAGE: u64 = 10_000;
/// How long one long poll of a server waits.
const WAIT: Duration = Duration::from_secs(20);
/// How often the local database is looked at while following.
const LOOK_EVERY: Duration = Duration::from_millis(250);

enum Log {
    Local(Store),
    Remote(HttpClient),
}

impl Log {
    /// Events after `after`, the workflow's state read before them (so that "over and nothing
    /// new" is never decided before the last events were read).
    async fn after(
        &self,
        id: WorkflowId,
        after: i64,
        wait: bool,
    ) -> Result<(Vec<EventRecord>, WorkflowState)> {
        match self {
            Log::Local(store) => {
                let store = store.clone();
                Ok(tokio::task::spawn_blocking(move || {
                    let state = store.workflow_summary(id)?.state;
                    Ok::<_, torc_store::StoreError>((store.events_after(id, after, PAGE)?, state))
                })
                .await??)
            }
            Log::Remote(c) => {
                let wait = if wait { WAIT } else { Duration::ZERO };
                let b = c.wait_events(id, after, wait, PAGE).await?;
                Ok((
                    b.items.into_iter().map(EventRecord::from).collect(),
                    b.workflow_state,
                ))
            }
        }
    }

    async fn count(&self, id: WorkflowId) -> Result<u64> {
        match self {
            Log::Local(store) => {
                let store = store.clone();
                Ok(tokio::task::spawn_blocking(move || store.count_events(id)).await??)
            }
            Log::Remote(c) => {
                // Pages of the plain listing: only the count is wanted.
                let mut n = 0;
                loop {
                    let page = c.events(id, n, PAGE).await?.items.len() as u64;
                    n += page;
                    if page == 0 {
                        return Ok(n);
                    }
                }
            }
        }
    }

    /// The id of the event before the `offset`-th (0: none).
    async fn id_before(&self, id: WorkflowId, offset: u64) -> Result<i64> {
        if offset == 0 {
            return Ok(0);
        }
        let e = match self {
            Log::Local(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.list_events(id, offset - 1, 1)).await??
            }
            Log::Remote(c) => c
                .events(id, offset - 1, 1)
                .await?
                .items
                .into_iter()
                .map(EventRecord::from)
                .collect(),
        };
        Ok(e.first().map_or(0, |e| e.id))
    }
}

pub fn list(global: &Global, args: &EventsListArgs) -> Result<ExitCode> {
    let log = match &global.url {
        Some(url) => Log::Remote(global.client(url)?),
        None => Log::Local(open_existing_store(global)?),
    };
    runtime()?.block_on(list_async(log, args))
}

async fn list_async(log: Log, args: &EventsListArgs) -> Result<ExitCode> {
    let id = WorkflowId(args.workflow_id);
    let mut after = match args.tail {
        Some(n) => {
            let total = log.count(id).await?;
            log.id_before(id, total.saturating_sub(n)).await?
        }
        None => 0,
    };
    let mut waited = false;
    loop {
        let (events, state) = log.after(id, after, args.follow && waited).await?;
        for e in &events {
            print(e, args.json)?;
        }
        if let Some(last) = events.last() {
            after = last.id;
        }
        let more = events.len() as u64 == PAGE;
        if more {
            continue;
        }
        if !args.follow || (events.is_empty() && state != WorkflowState::Active) {
            return Ok(ExitCode::SUCCESS);
        }
        if matches!(log, Log::Local(_)) && events.is_empty() {
            tokio::time::sleep(LOOK_EVERY).await;
        }
        waited = true;
    }
}

fn print(e: &EventRecord, json: bool) -> std::io::Result<()> {
    if json {
        outln!(
            "{}",
            serde_json::to_string(e).map_err(std::io::Error::other)?
        );
        return Ok(());
    }
    let job = e
        .job_id
        .map_or_else(|| "-".to_string(), |j| format!("job {j}"));
    outln!(
        "{}  {:<20}  {:<8}  {}",
        crate::inspect::time(e.time),
        e.kind.name(),
        job,
        e.message
    );
    Ok(())
}
