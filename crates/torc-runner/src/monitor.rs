//! Memory and CPU of running jobs, sampled from `/proc`, and the memory limits that no cgroup
//! enforces.
//!
//! Each job runs in its own process group, so one pass over `/proc` per tick, grouping processes
//! by their process group id (field 5 of `/proc/PID/stat`), measures every job's whole process
//! tree at once. The scan runs on a blocking thread, and only while jobs are tracked. A group
//! tracked with a limit is checked every [`LIMIT_CHECK`] at least, and killed (SIGKILL to the
//! group) by the first sample over it; a job that passes its limit between two samples and
//! frees the memory again goes unseen, which is why cgroups are preferred where available.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// When the first sample is taken after the sampler starts.
const FIRST_SAMPLE: Duration = Duration::from_millis(100);
/// How often groups with a memory limit are sampled (at most; more often when the sampling
/// interval is shorter), and how often an idle sampler looks for work when it samples nothing
/// else.
pub(crate) const LIMIT_CHECK: Duration = Duration::from_millis(200);

/// Memory and CPU of one job over its life. Fields are `None` when no sample was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    pub peak_memory_bytes: Option<u64>,
    pub avg_memory_bytes: Option<u64>,
    pub peak_cpu_percent: Option<f64>,
    pub avg_cpu_percent: Option<f64>,
    /// The sample that passed the group's memory limit (the group was killed for it).
    pub over_limit: Option<u64>,
}

/// One process group in one scan: resident memory and CPU ticks used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GroupSample {
    rss_bytes: u64,
    cpu_ticks: u64,
}

#[derive(Debug)]
struct Tracked {
    last_ticks: u64,
    last_at: Instant,
    samples: u32,
    rss_sum: u128,
    rss_peak: u64,
    cpu_sum: f64,
    cpu_peak: f64,
    /// Kill the group when a sample passes this many bytes.
    limit: Option<u64>,
    over_limit: Option<u64>,
}

impl Tracked {
    fn usage(&self) -> Usage {
        if self.samples == 0 {
            return Usage {
                over_limit: self.over_limit,
                ..Usage::default()
            };
        }
        let n = f64::from(self.samples);
        Usage {
            peak_memory_bytes: Some(self.rss_peak),
            avg_memory_bytes: Some(
                u64::try_from(self.rss_sum / u128::from(self.samples)).unwrap_or(u64::MAX),
            ),
            peak_cpu_percent: Some(self.cpu_peak),
            avg_cpu_percent: Some(self.cpu_sum / n),
            over_limit: self.over_limit,
        }
    }
}

/// The process groups being measured, shared by the runner loop and the sampler task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Monitor {
    groups: Arc<Mutex<HashMap<i32, Tracked>>>,
}

impl Monitor {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Tracked>> {
        // A poisoned map only holds statistics: keep using it.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts measuring the process group `pgid`, which started now; with a `limit`, the group
    /// is killed when a sample of its memory passes it.
    pub fn track(&self, pgid: i32, limit: Option<u64>) {
        self.lock().insert(
            pgid,
            Tracked {
                last_ticks: 0,
                last_at: Instant::now(),
                samples: 0,
                rss_sum: 0,
                rss_peak: 0,
                cpu_sum: 0.0,
                cpu_peak: 0.0,
                limit,
                over_limit: None,
            },
        );
    }

    /// Stops measuring `pgid` and returns what was measured.
    pub fn untrack(&self, pgid: i32) -> Usage {
        self.lock()
            .remove(&pgid)
            .map(|t| t.usage())
            .unwrap_or_default()
    }

    /// The groups tracked, and whether any of them has a limit.
    fn tracked(&self) -> (HashSet<i32>, bool) {
        let groups = self.lock();
        let limited = groups.values().any(|t| t.limit.is_some());
        (groups.keys().copied().collect(), limited)
    }

    /// Records one scan; kills the groups that passed their limit in it.
    fn record(&self, scan: &HashMap<i32, GroupSample>, at: Instant, ticks_per_sec: f64) {
        let over = self.record_samples(scan, at, ticks_per_sec);
        for (pgid, rss, limit) in over {
            tracing::warn!(
                pgid,
                rss,
                limit,
                "a job passed its memory limit: killing it"
            );
            crate::process::signal_group(pgid, libc::SIGKILL);
        }
    }

    /// Records one scan; returns the groups (with their sample and limit) that passed their
    /// limit in it for the first time, marked so before anyone kills them.
    fn record_samples(
        &self,
        scan: &HashMap<i32, GroupSample>,
        at: Instant,
        ticks_per_sec: f64,
    ) -> Vec<(i32, u64, u64)> {
        let mut over = Vec::new();
        let mut groups = self.lock();
        for (pgid, sample) in scan {
            let Some(t) = groups.get_mut(pgid) else {
                continue;
            };
            let wall = at.saturating_duration_since(t.last_at).as_secs_f64();
            let ticks = sample.cpu_ticks.saturating_sub(t.last_ticks);
            let cpu = if wall > 0.0 && ticks_per_sec > 0.0 {
                (ticks as f64 / ticks_per_sec) / wall * 100.0
            } else {
                0.0
            };
            t.last_ticks = sample.cpu_ticks;
            t.last_at = at;
            t.samples += 1;
            t.rss_sum += u128::from(sample.rss_bytes);
            t.rss_peak = t.rss_peak.max(sample.rss_bytes);
            t.cpu_sum += cpu;
            t.cpu_peak = t.cpu_peak.max(cpu);
            if let Some(limit) = t.limit {
                if sample.rss_bytes > limit && t.over_limit.is_none() {
                    t.over_limit = Some(sample.rss_bytes);
                    over.push((*pgid, sample.rss_bytes, limit));
                }
            }
        }
        over
    }

    /// Samples the tracked groups: once shortly after the start, then every `interval`
    /// (every [`LIMIT_CHECK`] at least while a group has a limit). Without an interval only
    /// groups with a limit are sampled.
    pub async fn sample_forever(self, interval: Option<Duration>) {
        let ticks_per_sec = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
        let page_size = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        let mut next = Instant::now() + FIRST_SAMPLE;
        loop {
            tokio::time::sleep_until(next).await;
            let (wanted, limited) = self.tracked();
            let every = match (interval, limited) {
                (Some(i), true) => i.min(LIMIT_CHECK),
                (Some(i), false) => i,
                (None, _) => LIMIT_CHECK,
            };
            next = Instant::now() + every;
            if wanted.is_empty() || (interval.is_none() && !limited) {
                continue;
            }
            let scan = tokio::task::spawn_blocking(move || scan_proc(&wanted, page_size)).await;
            match scan {
                Ok(scan) => self.record(&scan, Instant::now(), ticks_per_sec),
                Err(e) => tracing::warn!(error = %e, "resource sampling failed"),
            }
        }
    }
}

pub(crate) fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

/// One pass over `/proc`: resident memory and CPU ticks per wanted process group.
fn scan_proc(wanted: &HashSet<i32>, page_size: u64) -> HashMap<i32, GroupSample> {
    let mut out: HashMap<i32, GroupSample> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
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
        buf.clear();
        let path = format!("/proc/{pid}/stat");
        // Processes come and go during the scan; a vanished one is simply skipped.
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        if file.read_to_end(&mut buf).is_err() {
            continue;
        }
        let Some(stat) = parse_stat(&buf) else {
            continue;
        };
        if !wanted.contains(&stat.pgrp) {
            continue;
        }
        let group = out.entry(stat.pgrp).or_default();
        group.rss_bytes += stat.rss_pages.saturating_mul(page_size);
        group.cpu_ticks += stat.ticks;
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) pgrp: i32,
    /// utime + stime + cutime + cstime: the process and its reaped children, so that the
    /// time of short-lived children inside the group is not lost.
    pub(crate) ticks: u64,
    pub(crate) rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
    // rest[0] is field 3 (state); field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let pgrp = field(5)?.parse().ok()?;
    let mut ticks = 0u64;
    for n in 14..=17 {
        // cutime and cstime are signed in the kernel's format; never negative in practice.
        ticks += field(n)?.parse::<i64>().ok().map_or(0, |v| v.max(0) as u64);
    }
    let rss_pages = field(24)?.parse::<i64>().ok()?.max(0) as u64;
    Some(Stat {
        pgrp,
        ticks,
        rss_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"1234 (a (b) c) S 1 4321 4321 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 \
                     100 12345678 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                pgrp: 4321,
                ticks: 13,
                rss_pages: 250
            }
        );
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1"), None);
    }

    #[test]
    fn usage_is_none_without_samples() {
        let m = Monitor::default();
        m.track(42, None);
        assert_eq!(m.untrack(42), Usage::default());
        assert_eq!(m.untrack(42), Usage::default());
    }

    #[test]
    fn records_peaks_and_averages() {
        let m = Monitor::default();
        m.track(42, None);
        let start = m.lock()[&42].last_at;
        let mut scan = HashMap::new();
        scan.insert(
            42,
            GroupSample {
                rss_bytes: 100,
                cpu_ticks: 50,
            },
        );
        // 50 ticks at 100 ticks/s over 1 s: 50 %.
        m.record(&scan, start + Duration::from_secs(1), 100.0);
        scan.insert(
            42,
            GroupSample {
                rss_bytes: 300,
                cpu_ticks: 250,
            },
        );
        // 200 more ticks over the next second: 200 % (two CPUs busy).
        m.record(&scan, start + Duration::from_secs(2), 100.0);
        let usage = m.untrack(42);
        assert_eq!(usage.peak_memory_bytes, Some(300));
        assert_eq!(usage.avg_memory_bytes, Some(200));
        let peak = usage.peak_cpu_percent.unwrap();
        let avg = usage.avg_cpu_percent.unwrap();
        assert!((peak - 200.0).abs() < 1e-6, "{peak}");
        assert!((avg - 125.0).abs() < 1e-6, "{avg}");
    }

    #[test]
    fn a_sample_over_the_limit_marks_the_group_once() {
        let m = Monitor::default();
        m.track(7, Some(1000));
        m.track(8, None);
        let start = m.lock()[&7].last_at;
        let sample = |rss_bytes| GroupSample {
            rss_bytes,
            cpu_ticks: 0,
        };
        let scan: HashMap<i32, GroupSample> = [(7, sample(900)), (8, sample(5000))].into();
        assert!(m.record_samples(&scan, start, 100.0).is_empty());
        let scan: HashMap<i32, GroupSample> = [(7, sample(1500)), (8, sample(9000))].into();
        assert_eq!(m.record_samples(&scan, start, 100.0), vec![(7, 1500, 1000)]);
        let scan: HashMap<i32, GroupSample> = [(7, sample(2000))].into();
        assert!(
            m.record_samples(&scan, start, 100.0).is_empty(),
            "killed once, not at every sample"
        );
        assert_eq!(m.untrack(7).over_limit, Some(1500));
        assert_eq!(m.untrack(8).over_limit, None);
    }

    #[test]
    fn scans_own_process_group() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        let wanted: HashSet<i32> = [own].into_iter().collect();
        let scan = scan_proc(&wanted, 4096);
        let group = scan
            .get(&own)
            .expect("the test's own group is visible in /proc");
        assert!(group.rss_bytes > 0);
    }
}
