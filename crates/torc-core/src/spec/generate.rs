//! `slurm_schedulers` and `schedule_nodes` actions written into a spec from its jobs' resource
//! requirements and the partitions of a cluster (what `torc slurm generate` does).
//!
//! Jobs are grouped by their resource requirement and by whether they wait on other jobs: each
//! group gets a scheduler (one node, a walltime that covers its longest job, GPUs if it needs
//! them, the partition that fits) and an action: `on_workflow_start` for a group that can start
//! at once, `on_jobs_ready` naming the group's jobs (by regex of each job entry's name) for a
//! group that waits, so its allocation is asked for only when its work can run. Pure: the
//! caller reads the spec and the partitions and writes the result.

use crate::model::{Resources, WorkflowDef};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A partition as the generator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub name: String,
    pub default: bool,
    /// `None`: no limit.
    pub max_time: Option<Duration>,
    pub cpus_per_node: u32,
    pub memory_per_node_mb: u64,
    pub gpus_per_node: u32,
}

/// What the user chose.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub account: String,
    /// Use this partition for every group (checked to fit) instead of choosing.
    pub partition: Option<String>,
}

/// One scheduler written, for the summary the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedScheduler {
    pub name: String,
    pub partition: String,
    pub walltime: String,
    pub jobs: usize,
    pub trigger: &'static str,
}

#[derive(Default)]
struct Group {
    /// Regexes of the job entries' names.
    regexes: Vec<String>,
    entries: Vec<usize>,
    jobs: usize,
    resources: Option<Resources>,
}

/// `name` as a regex matching every instance of the job entry (its `{...}` templates as `.+`).
fn name_regex(name: &str) -> String {
    let mut out = String::from("^");
    let mut rest = name;
    while let Some(open) = rest.find('{') {
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(&regex::escape(&rest[..open]));
                out.push_str(".+");
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
}

/// `d` as Slurm's `D-HH:MM:SS` / `HH:MM:SS`, rounded up to the minute.
fn walltime(d: Duration) -> String {
    let mins = d.as_secs().div_ceil(60).max(1);
    let (days, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    if days > 0 {
        format!("{days}-{h:02}:{m:02}:00")
    } else {
        format!("{h:02}:{m:02}:00")
    }
}

fn fits(p: &PartitionInfo, r: &Resources, time: Duration) -> Result<(), String> {
    let mem_mb = r.memory_bytes.div_ceil(1024 * 1024);
    if u64::from(r.num_cpus) > u64::from(p.cpus_per_node) {
        return Err(format!(
            "{} CPUs per node, not {}",
            p.cpus_per_node, r.num_cpus
        ));
    }
    if mem_mb > p.memory_per_node_mb {
        return Err(format!(
            "{} MB per node, not {mem_mb}",
            p.memory_per_node_mb
        ));
    }
    if r.num_gpus > p.gpus_per_node {
        return Err(format!(
            "{} GPUs per node, not {}",
            p.gpus_per_node, r.num_gpus
        ));
    }
    if let Some(max) = p.max_time {
        if time > max {
            return Err(format!(
                "a time limit of {}, not {}",
                walltime(max),
                walltime(time)
            ));
        }
    }
    Ok(())
}

/// Writes `slurm_schedulers` and `schedule_nodes` actions into `doc` (the spec as parsed, whose
/// expansion is `def`) and sets each job entry's `scheduler`. Existing `slurm_schedulers` and
/// `schedule_nodes` actions are replaced; other actions are kept.
pub fn generate_schedulers(
    doc: &mut Value,
    def: &WorkflowDef,
    partitions: &[PartitionInfo],
    opts: &GenerateOptions,
) -> Result<Vec<GeneratedScheduler>, String> {
    let Some(entries) = doc.get("jobs").and_then(Value::as_array) else {
        return Err("the spec has no jobs".into());
    };
    if partitions.is_empty() {
        return Err("the cluster lists no partitions".into());
    }
    // Group the job entries by (requirement, waits on other jobs).
    let mut groups: BTreeMap<(String, bool), Group> = BTreeMap::new();
    for (e, entry) in entries.iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let regex = name_regex(name);
        let re = regex::Regex::new(&regex).map_err(|e| format!("job name {name:?}: {e}"))?;
        let instances: Vec<_> = def.jobs.iter().filter(|j| re.is_match(&j.name)).collect();
        let waits = instances.iter().any(|j| !j.depends_on.is_empty());
        let (req_name, resources) = match instances.first().and_then(|j| j.resource_requirement) {
            Some(i) => {
                let r = &def.resource_requirements[i as usize];
                (r.name.clone(), r.resources)
            }
            None => ("default".to_string(), Resources::DEFAULT_JOB),
        };
        let g = groups.entry((req_name, waits)).or_default();
        g.regexes.push(regex);
        g.entries.push(e);
        g.jobs += instances.len();
        g.resources = Some(resources);
    }
    let mut schedulers = Vec::new();
    let mut actions: Vec<Value> = Vec::new();
    let mut summary = Vec::new();
    let mut job_scheduler: BTreeMap<usize, String> = BTreeMap::new();
    for ((req, waits), g) in &groups {
        let r = g.resources.unwrap_or(Resources::DEFAULT_JOB);
        // Room for the longest job and a margin for starting and reporting.
        let time = r.runtime + (r.runtime / 10).max(Duration::from_secs(300));
        let partition = match &opts.partition {
            Some(name) => {
                let p = partitions
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| format!("no partition {name} on this cluster"))?;
                fits(p, &r, time).map_err(|why| {
                    format!("jobs of {req} do not fit partition {name}: it has {why}")
                })?;
                p
            }
            None => {
                let mut fitting: Vec<&PartitionInfo> = partitions
                    .iter()
                    .filter(|p| fits(p, &r, time).is_ok())
                    .collect();
                // The default first, then the shortest limit that fits (short queues start
                // sooner), then by name.
                fitting.sort_by_key(|p| {
                    (
                        !p.default,
                        p.max_time.unwrap_or(Duration::MAX),
                        p.name.clone(),
                    )
                });
                *fitting.first().ok_or_else(|| {
                    format!(
                        "no partition fits the jobs of {req} ({} CPUs, {} MB, {} GPUs, {})",
                        r.num_cpus,
                        r.memory_bytes.div_ceil(1024 * 1024),
                        r.num_gpus,
                        walltime(time)
                    )
                })?
            }
        };
        let name = if *waits {
            format!("{req}_ready")
        } else {
            req.clone()
        };
        let wall = walltime(time);
        let mut s = Map::new();
        s.insert("name".into(), json!(name));
        s.insert("account".into(), json!(opts.account));
        s.insert("partition".into(), json!(partition.name));
        s.insert("nodes".into(), json!(1));
        s.insert("walltime".into(), json!(wall));
        if r.num_gpus > 0 {
            s.insert("gres".into(), json!(format!("gpu:{}", r.num_gpus)));
        }
        schedulers.push(Value::Object(s));
        let mut a = Map::new();
        a.insert(
            "trigger_type".into(),
            json!(if *waits {
                "on_jobs_ready"
            } else {
                "on_workflow_start"
            }),
        );
        a.insert("action_type".into(), json!("schedule_nodes"));
        a.insert("scheduler".into(), json!(name));
        a.insert("scheduler_type".into(), json!("slurm"));
        a.insert("num_allocations".into(), json!(1));
        if *waits {
            a.insert("job_name_regexes".into(), json!(g.regexes));
        }
        actions.push(Value::Object(a));
        for e in &g.entries {
            job_scheduler.insert(*e, name.clone());
        }
        summary.push(GeneratedScheduler {
            name,
            partition: partition.name.clone(),
            walltime: wall,
            jobs: g.jobs,
            trigger: if *waits {
                "on_jobs_ready"
            } else {
                "on_workflow_start"
            },
        });
    }
    let obj = doc.as_object_mut().ok_or("the spec is not a mapping")?;
    if let Some(jobs) = obj.get_mut("jobs").and_then(Value::as_array_mut) {
        for (e, entry) in jobs.iter_mut().enumerate() {
            if let (Some(name), Some(o)) = (job_scheduler.get(&e), entry.as_object_mut()) {
                o.insert("scheduler".into(), json!(name));
            }
        }
    }
    let mut kept: Vec<Value> = obj
        .get("actions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|a| a.get("action_type").and_then(Value::as_str) != Some("schedule_nodes"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    kept.extend(actions);
    obj.insert("slurm_schedulers".into(), Value::Array(schedulers));
    obj.insert("actions".into(), Value::Array(kept));
    Ok(summary)
}

/// The spec as YAML text.
pub fn to_yaml(doc: &Value) -> Result<String, String> {
    serde_norway::to_string(doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_anchored_regexes() {
        assert_eq!(name_regex("work_{i:04d}"), "^work_.+$");
        assert_eq!(name_regex("a.b"), "^a\\.b$");
        assert_eq!(name_regex("x_{a}_{b}"), "^x_.+_.+$");
    }

    #[test]
    fn walltimes_round_up_to_minutes() {
        assert_eq!(walltime(Duration::from_secs(61)), "00:02:00");
        assert_eq!(walltime(Duration::from_secs(3600)), "01:00:00");
        assert_eq!(walltime(Duration::from_secs(86_400 + 60)), "1-00:01:00");
    }
}
