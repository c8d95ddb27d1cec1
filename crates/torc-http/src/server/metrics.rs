//! Counters exposed at `GET /metrics` in the Prometheus text format: the engine's hot-path
//! counters and, per route, method and status, the requests served and the time they took.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Requests served, by (method, route pattern, status).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    by_route: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
    /// Requests being served now, by (method, route): parked long-poll claims show here.
    in_flight: Mutex<BTreeMap<(String, String), i64>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

impl RequestMetrics {
    /// A request started (`delta` 1) or ended (`delta` -1).
    pub fn in_flight(&self, method: &str, route: &str, delta: i64) {
        if let Ok(mut map) = self.in_flight.lock() {
            *map.entry((method.to_string(), route.to_string()))
                .or_default() += delta;
        }
    }

    pub fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let Ok(mut map) = self.by_route.lock() else {
            return;
        };
        let key = (method.to_string(), route.to_string(), status);
        let entry = map.entry(key).or_default();
        entry.count += 1;
        entry.seconds += took.as_secs_f64();
    }

    pub fn render(&self, out: &mut String) {
        if let Ok(map) = self.in_flight.lock() {
            let _ = writeln!(
                out,
                "# HELP torc_http_requests_in_flight HTTP requests being served now.\n# TYPE torc_http_requests_in_flight gauge"
            );
            for ((method, route), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "torc_http_requests_in_flight{{method=\"{method}\",route=\"{}\"}} {n}",
                    escape(route)
                );
            }
        }
        let Ok(map) = self.by_route.lock() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP torc_http_requests_total HTTP requests served.\n# TYPE torc_http_requests_total counter"
        );
        for ((method, route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "torc_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP torc_http_request_seconds_total Time spent serving HTTP requests.\n# TYPE torc_http_request_seconds_total counter"
        );
        for ((method, route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "torc_http_request_seconds_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.seconds
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_counter(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

pub fn render_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The engine's counters (a copy of its `stats()` snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineCounters {
    pub claimed_jobs: u64,
    pub completions: u64,
    pub commits: u64,
    pub committed_requests: u64,
    pub commit_micros: u64,
}

/// The engine's counters.
pub fn render_engine(out: &mut String, s: &EngineCounters) {
    render_counter(
        out,
        "torc_claimed_jobs_total",
        "Jobs handed out to runners.",
        s.claimed_jobs as f64,
    );
    render_counter(
        out,
        "torc_completions_total",
        "Completion reports received.",
        s.completions as f64,
    );
    render_counter(
        out,
        "torc_commits_total",
        "Group commits (transactions) written.",
        s.commits as f64,
    );
    render_counter(
        out,
        "torc_committed_requests_total",
        "Requests answered by those commits.",
        s.committed_requests as f64,
    );
    render_counter(
        out,
        "torc_commit_seconds_total",
        "Time spent in group commits.",
        s.commit_micros as f64 / 1e6,
    );
    let mean = if s.commits == 0 {
        0.0
    } else {
        s.committed_requests as f64 / s.commits as f64
    };
    render_gauge(
        out,
        "torc_group_commit_mean_size",
        "Mean requests per group commit since start.",
        mean,
    );
}

/// Reads one unlabelled sample from a Prometheus text exposition.
pub fn parse_sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_back() {
        let m = RequestMetrics::default();
        m.record("GET", "/a/{id}", 200, Duration::from_millis(5));
        m.record("GET", "/a/{id}", 200, Duration::from_millis(5));
        let mut out = String::new();
        render_engine(
            &mut out,
            &EngineCounters {
                claimed_jobs: 3,
                completions: 2,
                commits: 2,
                committed_requests: 8,
                commit_micros: 1500,
            },
        );
        m.render(&mut out);
        assert_eq!(parse_sample(&out, "torc_claimed_jobs_total"), Some(3.0));
        assert_eq!(parse_sample(&out, "torc_group_commit_mean_size"), Some(4.0));
        assert!(out.contains(
            "torc_http_requests_total{method=\"GET\",route=\"/a/{id}\",status=\"200\"} 2"
        ));
    }
}
