//! Counters of the hot path (claims, completions, commits), kept by the writer and read by
//! anyone through [`crate::EngineHandle::stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of the hot path, readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    claimed_jobs: AtomicU64,
    completions: AtomicU64,
    commits: AtomicU64,
    committed_requests: AtomicU64,
    commit_micros: AtomicU64,
    waiting: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub claimed_jobs: u64,
    pub completions: u64,
    pub commits: u64,
    /// Requests answered by those commits (their ratio is the mean group-commit size).
    pub committed_requests: u64,
    pub commit_micros: u64,
    /// Claims and heartbeats parked (long polls waiting) after the writer's last batch.
    pub waiting: u64,
}

impl Stats {
    pub(crate) fn claimed(&self, n: usize) {
        self.claimed_jobs.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self, n: usize) {
        self.completions.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self, requests: usize, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_requests
            .fetch_add(requests as u64, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting(&self, n: usize) {
        self.waiting.store(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            claimed_jobs: self.claimed_jobs.load(Ordering::Relaxed),
            completions: self.completions.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            committed_requests: self.committed_requests.load(Ordering::Relaxed),
            commit_micros: self.commit_micros.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}
