//! Bounds on what one caller may hold of the server: the runners it names (each costs a row in
//! the runner table and a lease in the engine) and its long polls in flight (each a parked claim
//! or heartbeat in the engine and an open connection). Each is bounded per token (without
//! authentication, every local caller is one token) and in total; past a bound the caller is
//! answered 429 and nobody else notices.

use crate::server::error::{ApiError, ApiErrorKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use torc_core::RunnerId;

/// How much of the server one token, and everyone, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    /// Runners one token may name.
    pub runners_per_token: usize,
    /// Runners remembered in all.
    pub runners_total: usize,
    /// Long polls (claims and heartbeats waiting) one token may have in flight.
    pub waits_per_token: usize,
    /// Long polls in flight in all.
    pub waits_total: usize,
}

impl Default for FloodLimits {
    fn default() -> FloodLimits {
        FloodLimits {
            runners_per_token: 10_000,
            runners_total: 100_000,
            waits_per_token: 20_000,
            waits_total: 100_000,
        }
    }
}

/// A runner silent this long is forgotten when room is needed.
const RUNNER_FORGET_AFTER: Duration = Duration::from_secs(3600);

struct Runner {
    token: Arc<str>,
    seen: Instant,
    /// Its last heartbeat (the live-runner gauge counts these).
    beat: Option<Instant>,
}

#[derive(Default)]
struct State {
    runners: HashMap<RunnerId, Runner>,
    runners_of: HashMap<Arc<str>, usize>,
    waits_of: HashMap<Arc<str>, usize>,
    waits: usize,
}

impl State {
    /// Forgets runners silent for a while (of `token` only, when given).
    fn forget_silent(&mut self, token: Option<&str>, now: Instant) {
        let runners_of = &mut self.runners_of;
        self.runners.retain(|_, r| {
            let keep = token.is_some_and(|t| *r.token != *t)
                || now.duration_since(r.seen) < RUNNER_FORGET_AFTER;
            if !keep {
                if let Some(n) = runners_of.get_mut(&r.token) {
                    *n -= 1;
                }
            }
            keep
        });
        runners_of.retain(|_, n| *n > 0);
    }
}

/// The runner table and the long polls in flight, per token.
pub struct Floods {
    limits: FloodLimits,
    state: Arc<Mutex<State>>,
}

/// A long poll in flight, counted until dropped (answered, or its caller went away).
pub struct Waiting {
    token: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.waits = s.waits.saturating_sub(1);
            if let Some(n) = s.waits_of.get_mut(&self.token) {
                *n -= 1;
                if *n == 0 {
                    s.waits_of.remove(&self.token);
                }
            }
        }
    }
}

fn too_many(message: String) -> ApiError {
    ApiError::new(ApiErrorKind::TooManyRequests, message)
}

fn poisoned() -> ApiError {
    ApiError::new(ApiErrorKind::Internal, "runner table poisoned")
}

impl Floods {
    pub fn new(limits: FloodLimits) -> Floods {
        Floods {
            limits,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Notes that `token` speaks for `runner` (`beat`: in a heartbeat): 429 when it is a runner the token has not named before and the token,
    /// or everyone, has named as many as allowed (after forgetting runners silent for an hour).
    pub fn note_runner(&self, token: &str, runner: &RunnerId, beat: bool) -> Result<(), ApiError> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        let now = Instant::now();
        if let Some(r) = s.runners.get_mut(runner) {
            r.seen = now;
            if beat {
                r.beat = Some(now);
            }
            return Ok(());
        }
        let of_token = |s: &State| s.runners_of.get(token).copied().unwrap_or(0);
        if of_token(&s) >= self.limits.runners_per_token {
            s.forget_silent(Some(token), now);
            if of_token(&s) >= self.limits.runners_per_token {
                return Err(too_many(format!(
                    "this token already speaks for {} runners, as many as one token may; \
                     reuse runner ids, or retry once some have been silent for an hour",
                    self.limits.runners_per_token
                )));
            }
        }
        if s.runners.len() >= self.limits.runners_total {
            s.forget_silent(None, now);
            if s.runners.len() >= self.limits.runners_total {
                return Err(too_many(format!(
                    "the server already tracks {} runners; retry later",
                    self.limits.runners_total
                )));
            }
        }
        let token: Arc<str> = Arc::from(token);
        *s.runners_of.entry(Arc::clone(&token)).or_insert(0) += 1;
        s.runners.insert(
            runner.clone(),
            Runner {
                token,
                seen: now,
                beat: beat.then_some(now),
            },
        );
        Ok(())
    }

    /// Counts a long poll of `token` until the returned guard drops: 429 when the token, or
    /// everyone, has as many in flight as allowed.
    pub fn wait(&self, token: &str) -> Result<Waiting, ApiError> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        let mine = s.waits_of.get(token).copied().unwrap_or(0);
        if mine >= self.limits.waits_per_token {
            return Err(too_many(format!(
                "this token already has {mine} claims and heartbeats waiting, as many as one \
                 token may; wait for their answers"
            )));
        }
        if s.waits >= self.limits.waits_total {
            return Err(too_many(format!(
                "the server already holds {} waiting claims and heartbeats; retry later",
                s.waits
            )));
        }
        s.waits += 1;
        let token: Arc<str> = Arc::from(token);
        *s.waits_of.entry(Arc::clone(&token)).or_insert(0) += 1;
        Ok(Waiting {
            token,
            state: Arc::clone(&self.state),
        })
    }

    /// Runners that sent a heartbeat within `within`.
    pub fn live_runners(&self, within: Duration) -> usize {
        let now = Instant::now();
        self.state.lock().map_or(0, |s| {
            s.runners
                .values()
                .filter(|r| r.beat.is_some_and(|b| now.duration_since(b) <= within))
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FloodLimits {
        FloodLimits {
            runners_per_token: 2,
            runners_total: 3,
            waits_per_token: 1,
            waits_total: 2,
        }
    }

    #[test]
    fn runners_per_token_and_in_total() {
        let f = Floods::new(limits());
        let r = |n: &str| RunnerId(n.into());
        f.note_runner("a", &r("a1"), true).unwrap();
        f.note_runner("a", &r("a2"), true).unwrap();
        f.note_runner("a", &r("a1"), true).unwrap(); // known: no new row
        let e = f.note_runner("a", &r("a3"), true).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::TooManyRequests);
        f.note_runner("b", &r("b1"), true).unwrap();
        let e = f.note_runner("c", &r("c1"), true).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::TooManyRequests, "the total is full");
        assert_eq!(f.live_runners(Duration::from_secs(60)), 3);
    }

    #[test]
    fn waits_are_counted_until_dropped() {
        let f = Floods::new(limits());
        let a = f.wait("a").unwrap();
        assert!(f.wait("a").is_err());
        let b = f.wait("b").unwrap();
        assert!(f.wait("c").is_err(), "the total is full");
        drop(a);
        let _a = f.wait("a").unwrap();
        drop(b);
        let _c = f.wait("c").unwrap();
    }
}
