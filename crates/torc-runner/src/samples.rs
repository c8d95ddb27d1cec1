//! Time series of resource use (`resource_monitor` with `granularity: time_series`): CPU,
//! resident memory and process count of each job's process tree, and of the runner's node, every
//! `sample_interval_seconds`.
//!
//! A job's samples are kept until it ends and then travel with the next report, which carries
//! its completion; the node's travel with whichever report comes next. Both are bounded: past
//! [`MAX_SAMPLES`] a series keeps every other sample and from then on takes one tick in two (then
//! one in four, ...), so a job of any length sends at most [`MAX_SAMPLES`] samples, evenly spread
//! over its life. One pass over `/proc` per tick measures every job at once (process groups, as
//! in `monitor`); the pass runs on a blocking thread, and the task sleeps while nothing asks
//! for samples.

use crate::monitor::{parse_stat, sysconf};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use torc_core::api::{ClaimedJob, ResourceSample, TimeSeries};
use torc_core::{Timestamp, WorkflowId};

/// Most samples one series (a job's attempt, or the node between two reports) sends.
pub(crate) const MAX_SAMPLES: usize = 240;

/// When a job's first sample is taken after it starts.
const FIRST_SAMPLE: Duration = Duration::from_millis(200);

/// A series bounded to [`MAX_SAMPLES`] by thinning.
#[derive(Debug, Default)]
struct Bounded {
    samples: Vec<ResourceSample>,
    /// Keep one tick in `stride` (a power of two; 0 is read as 1).
    stride: u32,
    ticks: u32,
}

impl Bounded {
    fn push(&mut self, s: ResourceSample) {
        let stride = self.stride.max(1);
        let tick = self.ticks;
        self.ticks = self.ticks.wrapping_add(1);
        if !tick.is_multiple_of(stride) {
            return;
        }
        self.samples.push(s);
        if self.samples.len() > MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = stride * 2;
        }
    }
}

#[derive(Debug)]
struct JobSeries {
    workflow: WorkflowId,
    template: ResourceSample,
    every: Duration,
    next: Instant,
    node: bool,
    sample_job: bool,
    last_ticks: u64,
    last_at: Instant,
    kept: Bounded,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<i32, JobSeries>,
    /// The node's samples since the last report, per workflow that asked for them.
    node: HashMap<WorkflowId, Bounded>,
    node_next: Option<Instant>,
    node_last: Option<(u64, Instant)>,
    /// Ready to be sent.
    done: Vec<(WorkflowId, ResourceSample)>,
}

/// The series being taken, shared by the runner loop and the sampling task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl Samples {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only holds measurements: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the series `job` asks for (if any); its process group is `pgid`.
    pub fn track(&self, pgid: i32, job: &ClaimedJob) {
        let Some(TimeSeries {
            interval_seconds,
            jobs,
            node,
        }) = job.time_series
        else {
            return;
        };
        let now = Instant::now();
        let every = Duration::from_secs(u64::from(interval_seconds.max(1)));
        let mut inner = self.lock();
        inner.jobs.insert(
            pgid,
            JobSeries {
                workflow: job.workflow_id,
                template: ResourceSample {
                    job_id: Some(job.job_id),
                    run_id: Some(job.run_id),
                    attempt_id: Some(job.attempt_id),
                    time: Timestamp(0),
                    cpu_percent: 0.0,
                    memory_bytes: 0,
                    num_processes: 0,
                },
                every,
                next: now + FIRST_SAMPLE.min(every),
                node,
                sample_job: jobs,
                last_ticks: 0,
                last_at: now,
                kept: Bounded::default(),
            },
        );
        if node && inner.node_next.is_none() {
            inner.node_next = Some(now + FIRST_SAMPLE.min(every));
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Ends the series of process group `pgid`: its samples are ready to be sent.
    pub fn untrack(&self, pgid: i32) {
        let mut inner = self.lock();
        if let Some(series) = inner.jobs.remove(&pgid) {
            let wf = series.workflow;
            inner
                .done
                .extend(series.kept.samples.into_iter().map(|s| (wf, s)));
        }
        if !inner.jobs.values().any(|j| j.node) {
            inner.node_next = None;
            inner.node_last = None;
        }
    }

    /// Every sample ready to be sent (ended jobs' and the node's), by workflow.
    pub fn take(&self) -> Vec<(WorkflowId, ResourceSample)> {
        let mut inner = self.lock();
        let mut out = std::mem::take(&mut inner.done);
        for (wf, series) in inner.node.iter_mut() {
            out.extend(
                std::mem::take(&mut series.samples)
                    .into_iter()
                    .map(|s| (*wf, s)),
            );
            series.stride = 1;
            series.ticks = 0;
        }
        inner.node.retain(|_, s| !s.samples.is_empty());
        out
    }

    /// When the next sample is due, `None` when nothing is sampled.
    fn next_due(&self) -> Option<Instant> {
        let inner = self.lock();
        inner
            .jobs
            .values()
            .map(|j| j.next)
            .chain(inner.node_next)
            .min()
    }

    /// Samples whatever is due, until dropped (aborted with the runner).
    pub async fn sample_forever(self) {
        let ticks_per_sec = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
        let page_size = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        loop {
            // Registered before looking, so that a `track` in between is not missed.
            let woken = self.wake.notified();
            match self.next_due() {
                None => woken.await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = woken => continue,
                    }
                }
            }
            let wanted: HashSet<i32> = self.lock().jobs.keys().copied().collect();
            let want_node = self.lock().node_next.is_some();
            let scan =
                tokio::task::spawn_blocking(move || Scan::take(&wanted, want_node, page_size))
                    .await;
            match scan {
                Ok(scan) => self.record(&scan, Instant::now(), ticks_per_sec),
                Err(e) => tracing::warn!(error = %e, "time-series sampling failed"),
            }
        }
    }

    fn record(&self, scan: &Scan, at: Instant, ticks_per_sec: f64) {
        let time = crate::process::now_timestamp();
        let cpu = |ticks: u64, wall: Duration| {
            let wall = wall.as_secs_f64();
            if wall > 0.0 && ticks_per_sec > 0.0 {
                ticks as f64 / ticks_per_sec / wall * 100.0
            } else {
                0.0
            }
        };
        let mut inner = self.lock();
        let mut node_for: HashSet<WorkflowId> = HashSet::new();
        for (pgid, series) in inner.jobs.iter_mut() {
            if series.node {
                node_for.insert(series.workflow);
            }
            if series.next > at {
                continue;
            }
            series.next = at + series.every;
            if !series.sample_job {
                continue;
            }
            let group = scan.groups.get(pgid).copied().unwrap_or_default();
            let used = group.ticks.saturating_sub(series.last_ticks);
            let wall = at.saturating_duration_since(series.last_at);
            series.last_ticks = group.ticks.max(series.last_ticks);
            series.last_at = at;
            series.kept.push(ResourceSample {
                time,
                cpu_percent: cpu(used, wall),
                memory_bytes: group.rss_bytes,
                num_processes: group.processes,
                ..series.template
            });
        }
        let due = inner.node_next.is_some_and(|t| t <= at);
        if let (true, Some(node)) = (due, scan.node) {
            let every = (inner.jobs.values())
                .filter(|j| j.node)
                .map(|j| j.every)
                .min()
                .unwrap_or(Duration::from_secs(1));
            inner.node_next = Some(at + every);
            let cpu_percent = match inner.node_last {
                Some((ticks, when)) => cpu(
                    node.busy_ticks.saturating_sub(ticks),
                    at.saturating_duration_since(when),
                ),
                None => 0.0,
            };
            let first = inner.node_last.is_none();
            inner.node_last = Some((node.busy_ticks, at));
            // The first look only sets the CPU baseline.
            if !first {
                let sample = ResourceSample {
                    job_id: None,
                    run_id: None,
                    attempt_id: None,
                    time,
                    cpu_percent,
                    memory_bytes: node.memory_bytes,
                    num_processes: scan.processes,
                };
                for wf in node_for {
                    inner.node.entry(wf).or_default().push(sample);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Group {
    rss_bytes: u64,
    ticks: u64,
    processes: u32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// CPU time of all CPUs spent on anything but idling and waiting for I/O.
    busy_ticks: u64,
    /// Memory in use: total less available.
    memory_bytes: u64,
}

/// One pass over `/proc`.
#[derive(Debug, Default)]
struct Scan {
    groups: HashMap<i32, Group>,
    processes: u32,
    node: Option<Node>,
}

impl Scan {
    fn take(wanted: &HashSet<i32>, node: bool, page_size: u64) -> Scan {
        let mut scan = Scan::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return scan;
        };
        let mut buf = Vec::with_capacity(512);
        for entry in dir.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            scan.processes += 1;
            if wanted.is_empty() {
                continue;
            }
            buf.clear();
            // Processes come and go during the scan; a vanished one is skipped.
            let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if f.read_to_end(&mut buf).is_err() {
                continue;
            }
            let Some(stat) = parse_stat(&buf) else {
                continue;
            };
            if !wanted.contains(&stat.pgrp) {
                continue;
            }
            let g = scan.groups.entry(stat.pgrp).or_default();
            g.rss_bytes += stat.rss_pages.saturating_mul(page_size);
            g.ticks += stat.ticks;
            g.processes += 1;
        }
        if node {
            let stat = std::fs::read_to_string("/proc/stat").ok();
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
            if let (Some(busy_ticks), Some(memory_bytes)) = (
                stat.as_deref().and_then(busy_ticks),
                meminfo.as_deref().and_then(memory_in_use),
            ) {
                scan.node = Some(Node {
                    busy_ticks,
                    memory_bytes,
                });
            }
        }
        scan
    }
}

/// From `/proc/stat`'s `cpu` line: user, nice, system, irq, softirq and steal ticks summed.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    (v.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// From `/proc/meminfo`: MemTotal less MemAvailable, in bytes.
fn memory_in_use(meminfo: &str) -> Option<u64> {
    let kb = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let total = kb("MemTotal:")?;
    let available = kb("MemAvailable:")?;
    Some(total.saturating_sub(available) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64) -> ResourceSample {
        ResourceSample {
            job_id: None,
            run_id: None,
            attempt_id: None,
            time: Timestamp(t),
            cpu_percent: 0.0,
            memory_bytes: 0,
            num_processes: 0,
        }
    }

    #[test]
    fn a_series_stays_bounded_and_evenly_spread() {
        let mut b = Bounded::default();
        for t in 0..10_000 {
            b.push(sample(t));
        }
        assert!(b.samples.len() <= MAX_SAMPLES, "{}", b.samples.len());
        assert!(b.samples.len() > MAX_SAMPLES / 2, "{}", b.samples.len());
        let times: Vec<i64> = b.samples.iter().map(|s| s.time.0).collect();
        assert_eq!(times[0], 0, "the first sample is kept");
        let gaps: HashSet<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.len(), 1, "uneven gaps: {gaps:?}");
        assert!(
            *times.last().unwrap() > 9_000,
            "the end is covered: {times:?}"
        );
    }

    #[test]
    fn reads_node_counters() {
        let stat = "cpu  10 2 3 100 50 4 5 6 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(busy_ticks(stat), Some(10 + 2 + 3 + 4 + 5 + 6));
        assert_eq!(busy_ticks("nothing"), None);
        let mem = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(memory_in_use(mem), Some(600 * 1024));
        assert_eq!(memory_in_use("MemTotal: 5 kB\n"), None);
        // The real files parse.
        let real = Scan::take(&HashSet::new(), true, 4096);
        let node = real
            .node
            .expect("/proc/stat and /proc/meminfo are readable");
        assert!(node.memory_bytes > 0 && node.busy_ticks > 0);
        assert!(real.processes > 0);
    }
}
