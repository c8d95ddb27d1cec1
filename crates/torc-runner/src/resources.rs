//! What this machine (or the slice of it this process may use) offers: CPUs, memory, GPUs.

use std::path::{Path, PathBuf};

/// Resources found on this machine, as limited by CPU affinity and cgroup v2 limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedResources {
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub num_gpus: u32,
}

/// Detects the CPUs this process may use (affinity mask, capped by a cgroup v2 `cpu.max`
/// quota), the memory (`MemTotal`, capped by the lowest cgroup v2 `memory.max` on the way to
/// the root) and the NVIDIA GPUs (`/dev/nvidiaN`, overridden by `CUDA_VISIBLE_DEVICES`).
/// This machine's host name (from the kernel), if it can be read: part of default runner and
/// executor names.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

pub fn detect_resources() -> DetectedResources {
    let cgroup = own_cgroup_dir();
    let mut num_cpus = affinity_cpus()
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        })
        .unwrap_or(1);
    if let Some(quota) = cgroup.as_deref().and_then(cgroup_cpu_limit) {
        num_cpus = num_cpus.min(quota);
    }
    let mut memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo_total(&s))
        .unwrap_or(0);
    if let Some(limit) = cgroup.as_deref().and_then(cgroup_memory_limit) {
        if memory_bytes == 0 || limit < memory_bytes {
            memory_bytes = limit;
        }
    }
    let num_gpus = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) => count_visible_devices(&list),
        Err(_) => count_nvidia_devices(Path::new("/dev")),
    };
    DetectedResources {
        num_cpus: num_cpus.max(1),
        memory_bytes,
        num_gpus,
    }
}

/// CPUs in this thread's affinity mask.
fn affinity_cpus() -> Option<u32> {
    // SAFETY: `cpu_set_t` is plain data, zeroed is a valid empty set; the size passed matches
    // the buffer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        u32::try_from(libc::CPU_COUNT(&set)).ok().filter(|&n| n > 0)
    }
}

/// The cgroup v2 directory of this process, from `/proc/self/cgroup` (`0::/path`).
fn own_cgroup_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

/// The directories from `dir` up to the cgroup root, inclusive.
fn cgroup_ancestry(dir: &Path) -> impl Iterator<Item = &Path> {
    dir.ancestors()
        .take_while(|p| p.starts_with("/sys/fs/cgroup"))
}

fn cgroup_cpu_limit(dir: &Path) -> Option<u32> {
    cgroup_ancestry(dir)
        .filter_map(|d| std::fs::read_to_string(d.join("cpu.max")).ok())
        .filter_map(|s| parse_cpu_max(&s))
        .min()
}

fn cgroup_memory_limit(dir: &Path) -> Option<u64> {
    cgroup_ancestry(dir)
        .filter_map(|d| std::fs::read_to_string(d.join("memory.max")).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .min()
}

/// `cpu.max` holds `"<quota> <period>"` or `"max <period>"`; the limit in whole CPUs, rounded up.
fn parse_cpu_max(text: &str) -> Option<u32> {
    let mut parts = text.split_whitespace();
    let quota: u64 = parts.next()?.parse().ok()?;
    let period: u64 = parts.next().unwrap_or("100000").parse().ok()?;
    if period == 0 {
        return None;
    }
    u32::try_from(quota.div_ceil(period).max(1)).ok()
}

/// `MemTotal:  16384 kB` in bytes.
fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some(unit) if unit.eq_ignore_ascii_case("kb") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Entries of `CUDA_VISIBLE_DEVICES` (indexes or UUIDs) up to the first invalid one, as CUDA
/// itself ignores everything after an invalid entry (`-1`, `NoDevFiles`).
fn count_visible_devices(list: &str) -> u32 {
    let n = list
        .split(',')
        .map(str::trim)
        .take_while(|e| e.parse::<u32>().is_ok() || e.starts_with("GPU-") || e.starts_with("MIG-"))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Files named `nvidia<digits>` in `dev`.
fn count_nvidia_devices(dev: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    let n = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|name| name.strip_prefix("nvidia"))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("1000 100000"), Some(1));
        assert_eq!(parse_cpu_max("5 0"), None);
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       16316412 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(16_316_412 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn counts_visible_devices() {
        assert_eq!(count_visible_devices(""), 0);
        assert_eq!(count_visible_devices("0,1,2"), 3);
        assert_eq!(count_visible_devices("0, 1"), 2);
        assert_eq!(count_visible_devices("0,-1,2"), 1);
        assert_eq!(count_visible_devices("NoDevFiles"), 0);
        assert_eq!(count_visible_devices("GPU-abc,MIG-def"), 2);
    }

    #[test]
    fn counts_nvidia_device_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "nvidia0",
            "nvidia1",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia12",
            "other",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(count_nvidia_devices(dir.path()), 3);
        assert_eq!(count_nvidia_devices(&dir.path().join("missing")), 0);
    }

    #[test]
    fn detects_something_sane() {
        let d = detect_resources();
        assert!(d.num_cpus >= 1);
        assert!(d.memory_bytes > 0);
    }
}
