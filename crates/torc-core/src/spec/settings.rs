//! Reads the workflow-level settings: `execution_config` (and a job's `stdio`),
//! `resource_monitor`, `slurm_schedulers`, `slurm_defaults`, `actions` and the `compute_node_*`
//! keys. Action job lists are resolved after expansion ([`resolve_actions`]).

use super::diag::{did_you_mean, unknown_key_message, Errors, Loc};
use super::fields::{
    field, for_each_entry, get_bool, get_int, get_map, get_str, get_str_list, get_u32,
};
use super::params::type_name;
use super::resolve::{NameIndex, RegexMatch};
use crate::ids::JobId;
use crate::model::{
    ActionDef, ActionKind, ComputeNodeConfig, ExecutionConfig, ExecutionMode, MonitorGranularity,
    ResourceMonitorConfig, SchedulerType, SlurmScheduler, StdioConfig, StdioMode, Trigger,
};
use crate::units;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The workflow-level settings, read.
#[derive(Debug, Default)]
pub(super) struct Settings<'a> {
    pub execution: ExecutionConfig,
    pub resource_monitor: Option<ResourceMonitorConfig>,
    /// `None` when the spec has no `slurm_schedulers` (then any job `scheduler` is kept as is).
    pub slurm_schedulers: Option<Vec<SlurmScheduler>>,
    pub slurm_defaults: BTreeMap<String, String>,
    pub actions: Vec<RawAction<'a>>,
    pub compute_node: ComputeNodeConfig,
}

/// An action before its job names are resolved.
#[derive(Debug)]
pub(super) struct RawAction<'a> {
    pub index: usize,
    pub trigger: Trigger,
    pub kind: ActionKind,
    pub jobs: Vec<&'a str>,
    pub regexes: Vec<&'a str>,
    pub persistent: bool,
}

const DIRECT_ONLY: &[&str] = &[
    "limit_resources",
    "termination_signal",
    "sigterm_lead_seconds",
    "oom_exit_code",
];
const SLURM_ONLY: &[&str] = &["srun_termination_signal", "enable_cpu_bind"];
const EXECUTION_KEYS: &[&str] = &[
    "mode",
    "limit_resources",
    "termination_signal",
    "sigterm_lead_seconds",
    "sigkill_headroom_seconds",
    "timeout_exit_code",
    "oom_exit_code",
    "stdio",
    "staggered_start",
    "srun_termination_signal",
    "enable_cpu_bind",
    "srun_mpi",
    "slurm_worker_mpi_mode",
    "downstream_buffer_multiplier",
];
const STDIO_KEYS: &[&str] = &["mode", "delete_on_success"];
const MONITOR_KEYS: &[&str] = &[
    "sample_interval_seconds",
    "flush_interval_seconds",
    "generate_plots",
    "jobs",
    "compute_node",
    "enabled",
    "granularity",
];
const JOB_MONITOR_KEYS: &[&str] = &["enabled", "granularity"];
const NODE_MONITOR_KEYS: &[&str] = &["enabled", "granularity", "cpu", "memory"];
const SCHEDULER_KEYS: &[&str] = &[
    "name",
    "account",
    "partition",
    "nodes",
    "walltime",
    "mem",
    "gres",
    "qos",
    "ntasks_per_node",
    "tmp",
    "extra",
    "serialize_allocations",
];
/// `sbatch` options a scheduler sets itself, so `slurm_defaults` may not (as `-` or `_`).
const SCHEDULER_OWNED: &[&str] = &[
    "partition",
    "nodes",
    "walltime",
    "time",
    "mem",
    "gres",
    "name",
    "job-name",
];
const ACTION_KEYS: &[&str] = &[
    "trigger_type",
    "action_type",
    "jobs",
    "job_name_regexes",
    "commands",
    "scheduler",
    "scheduler_type",
    "num_allocations",
    "start_one_worker_per_node",
    "max_parallel_jobs",
    "persistent",
];
const SCHEDULE_ONLY: &[&str] = &[
    "scheduler",
    "scheduler_type",
    "num_allocations",
    "start_one_worker_per_node",
    "max_parallel_jobs",
];

pub(super) fn read_settings<'a>(
    map: &'a Map<String, Value>,
    root: &Loc<'_>,
    errs: &mut Errors,
    warnings: &mut Vec<String>,
) -> Settings<'a> {
    let mut s = Settings::default();
    if let Some(m) = get_map(map, "execution_config", root, errs) {
        s.execution = read_execution(m, &root.key("execution_config"), errs, warnings);
    }
    if let Some(m) = get_map(map, "resource_monitor", root, errs) {
        s.resource_monitor = Some(read_monitor(m, &root.key("resource_monitor"), errs));
    }
    if let Some(m) = get_map(map, "slurm_defaults", root, errs) {
        s.slurm_defaults = read_slurm_defaults(m, &root.key("slurm_defaults"), errs);
    }
    if field(map, "slurm_schedulers").is_some() {
        let mut schedulers: Vec<SlurmScheduler> = Vec::new();
        let default_account = s.slurm_defaults.get("account").cloned();
        for_each_entry(
            map,
            "slurm_schedulers",
            root,
            SCHEDULER_KEYS,
            errs,
            |_, m, loc, errs| {
                if let Some(sched) = read_scheduler(m, loc, default_account.as_deref(), errs) {
                    if schedulers.iter().any(|o| o.name == sched.name) {
                        errs.push(
                            loc.key("name"),
                            format!("duplicate slurm scheduler name `{}`", sched.name),
                        );
                    } else {
                        schedulers.push(sched);
                    }
                }
            },
        );
        s.slurm_schedulers = Some(schedulers);
    }
    let names: Vec<&str> = s
        .slurm_schedulers
        .iter()
        .flatten()
        .map(|x| x.name.as_str())
        .collect();
    let mut actions = Vec::new();
    for_each_entry(
        map,
        "actions",
        root,
        ACTION_KEYS,
        errs,
        |i, m, loc, errs| {
            if let Some(a) = read_action(i, m, loc, &names, errs) {
                actions.push(a);
            }
        },
    );
    s.actions = actions;
    if let Some(w) = get_u32(map, "compute_node_wait_for_new_jobs_seconds", root, errs) {
        s.compute_node.wait_for_new_jobs_seconds = w;
    }
    s.compute_node.expiration_buffer_seconds =
        get_u32(map, "compute_node_expiration_buffer_seconds", root, errs);
    s
}

/// Reports keys of `m` that are not in `known`.
fn check_keys(m: &Map<String, Value>, loc: &Loc<'_>, known: &[&str], errs: &mut Errors) {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            errs.push(loc.key(k), unknown_key_message(k, known));
        }
    }
}

/// A string naming one of `names`; an unknown one is reported with the choices.
fn get_choice<T: Copy>(
    m: &Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    names: &[(&str, T)],
    errs: &mut Errors,
) -> Option<T> {
    let given = get_str(m, key, loc, errs)?;
    match names.iter().find(|(n, _)| *n == given) {
        Some((_, v)) => Some(*v),
        None => {
            let shown: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            errs.push(
                loc.key(key),
                format!(
                    "unknown {key} `{given}` (expected one of {}){}",
                    shown.join(", "),
                    did_you_mean(given, shown.iter().copied())
                ),
            );
            None
        }
    }
}

fn read_execution(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
    warnings: &mut Vec<String>,
) -> ExecutionConfig {
    check_keys(m, loc, EXECUTION_KEYS, errs);
    let mut c = ExecutionConfig::default();
    let modes: Vec<(&str, ExecutionMode)> = ExecutionMode::ALL
        .into_iter()
        .map(|x| (x.name(), x))
        .collect();
    if let Some(mode) = get_choice(m, "mode", loc, &modes, errs) {
        c.mode = mode;
    }
    let other_mode = match c.mode {
        ExecutionMode::Direct => Some((SLURM_ONLY, "slurm")),
        ExecutionMode::Slurm => Some((DIRECT_ONLY, "direct")),
        ExecutionMode::Auto => None,
    };
    if let Some((keys, mode)) = other_mode {
        for k in keys.iter().filter(|k| field(m, k).is_some()) {
            errs.push(
                loc.key(k),
                format!(
                    "`{k}` applies to `mode: {mode}` only, but this workflow's mode is `{}`",
                    c.mode.name()
                ),
            );
        }
    }
    if field(m, "downstream_buffer_multiplier").is_some() {
        warnings.push(
            "`execution_config.downstream_buffer_multiplier` is accepted for compatibility with Torc but is not acted on yet".to_string(),
        );
    }
    let exit_code = |key: &str, errs: &mut Errors| {
        let v = get_int(m, key, loc, errs)?;
        match i32::try_from(v) {
            Ok(code) if (1..=255).contains(&code) => Some(code),
            _ => {
                errs.push(loc.key(key), format!("an exit code is 1 to 255, not {v}"));
                None
            }
        }
    };
    if let Some(b) = get_bool(m, "limit_resources", loc, errs) {
        c.limit_resources = b;
    }
    if let Some(sig) = get_str(m, "termination_signal", loc, errs) {
        if crate::model::config::signal_number(sig).is_some() {
            c.termination_signal = sig.to_string();
        } else {
            errs.push(
                loc.key("termination_signal"),
                format!("`{sig}` is not a signal name such as `SIGTERM`, `SIGINT` or `SIGUSR1`"),
            );
        }
    }
    if let Some(v) = get_u32(m, "sigterm_lead_seconds", loc, errs) {
        c.sigterm_lead_seconds = v;
    }
    if let Some(v) = get_u32(m, "sigkill_headroom_seconds", loc, errs) {
        c.sigkill_headroom_seconds = v;
    }
    if let Some(v) = exit_code("timeout_exit_code", errs) {
        c.timeout_exit_code = v;
    }
    if let Some(v) = exit_code("oom_exit_code", errs) {
        c.oom_exit_code = v;
    }
    if let Some(v) = field(m, "stdio") {
        if let Some(stdio) = read_stdio(v, &loc.key("stdio"), errs) {
            c.stdio = stdio;
        }
    }
    if let Some(b) = get_bool(m, "staggered_start", loc, errs) {
        c.staggered_start = b;
    }
    c.srun_termination_signal =
        get_str(m, "srun_termination_signal", loc, errs).map(str::to_string);
    if let Some(b) = get_bool(m, "enable_cpu_bind", loc, errs) {
        c.enable_cpu_bind = b;
    }
    c.srun_mpi = get_str(m, "srun_mpi", loc, errs).map(str::to_string);
    if let Some(mpi) = get_str(m, "slurm_worker_mpi_mode", loc, errs) {
        if c.srun_mpi.is_some() {
            errs.push(
                loc.key("slurm_worker_mpi_mode"),
                "`slurm_worker_mpi_mode` is the older name of `srun_mpi`; give only one",
            );
        }
        c.srun_mpi = Some(mpi.to_string());
    }
    c
}

/// `SIGTERM`, `TERM`, `SIGRTMIN+1`: letters (and digits or `+` after them), optionally `SIG`-prefixed.
/// A `stdio` mapping (workflow-level or a job's own).
pub(super) fn read_stdio(v: &Value, loc: &Loc<'_>, errs: &mut Errors) -> Option<StdioConfig> {
    let Value::Object(m) = v else {
        errs.push(
            loc,
            format!(
                "expected a mapping such as `{{mode: combined}}`, found {}",
                type_name(v)
            ),
        );
        return None;
    };
    check_keys(m, loc, STDIO_KEYS, errs);
    let modes: Vec<(&str, StdioMode)> = StdioMode::ALL.into_iter().map(|x| (x.name(), x)).collect();
    let mut c = StdioConfig::default();
    if let Some(mode) = get_choice(m, "mode", loc, &modes, errs) {
        c.mode = mode;
    }
    if let Some(b) = get_bool(m, "delete_on_success", loc, errs) {
        c.delete_on_success = b;
    }
    Some(c)
}

const GRANULARITIES: &[(&str, MonitorGranularity)] = &[
    ("summary", MonitorGranularity::Summary),
    ("time_series", MonitorGranularity::TimeSeries),
    // As Torc's serialized enum spells them.
    ("Summary", MonitorGranularity::Summary),
    ("TimeSeries", MonitorGranularity::TimeSeries),
];

fn read_monitor(m: &Map<String, Value>, loc: &Loc<'_>, errs: &mut Errors) -> ResourceMonitorConfig {
    check_keys(m, loc, MONITOR_KEYS, errs);
    let mut c = ResourceMonitorConfig::default();
    let positive = |key: &str, errs: &mut Errors| {
        let v = get_u32(m, key, loc, errs)?;
        if v == 0 {
            errs.push(loc.key(key), format!("`{key}` must be at least 1"));
            return None;
        }
        Some(v)
    };
    if let Some(v) = positive("sample_interval_seconds", errs) {
        c.sample_interval_seconds = v;
    }
    if let Some(v) = positive("flush_interval_seconds", errs) {
        c.flush_interval_seconds = v;
    }
    if let Some(b) = get_bool(m, "generate_plots", loc, errs) {
        c.generate_plots = b;
    }
    let flat = field(m, "enabled").is_some() || field(m, "granularity").is_some();
    if let Some(jobs) = get_map(m, "jobs", loc, errs) {
        if flat {
            errs.push(
                loc,
                "give the job monitor either as `jobs: {enabled, granularity}` or in the older flat form, not both",
            );
        }
        let jloc = loc.key("jobs");
        check_keys(jobs, &jloc, JOB_MONITOR_KEYS, errs);
        read_scope(
            jobs,
            &jloc,
            errs,
            &mut c.jobs.enabled,
            &mut c.jobs.granularity,
        );
    } else if flat {
        read_scope(m, loc, errs, &mut c.jobs.enabled, &mut c.jobs.granularity);
    }
    if let Some(node) = get_map(m, "compute_node", loc, errs) {
        let nloc = loc.key("compute_node");
        check_keys(node, &nloc, NODE_MONITOR_KEYS, errs);
        let n = &mut c.compute_node;
        read_scope(node, &nloc, errs, &mut n.enabled, &mut n.granularity);
        if let Some(b) = get_bool(node, "cpu", &nloc, errs) {
            n.cpu = b;
        }
        if let Some(b) = get_bool(node, "memory", &nloc, errs) {
            n.memory = b;
        }
    }
    c
}

fn read_scope(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
    enabled: &mut bool,
    granularity: &mut MonitorGranularity,
) {
    if let Some(b) = get_bool(m, "enabled", loc, errs) {
        *enabled = b;
    }
    if let Some(g) = get_str(m, "granularity", loc, errs) {
        match GRANULARITIES.iter().find(|(n, _)| *n == g) {
            Some((_, v)) => *granularity = *v,
            None => errs.push(
                loc.key("granularity"),
                format!(
                    "unknown granularity `{g}` (expected `summary` or `time_series`){}",
                    did_you_mean(g, ["summary", "time_series"])
                ),
            ),
        }
    }
}

fn read_slurm_defaults(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let here = loc.key(k);
        let option = k.replace('_', "-");
        if k.starts_with('-') {
            errs.push(
                here,
                format!(
                    "write sbatch options without the leading dashes (`{}`)",
                    k.trim_start_matches('-')
                ),
            );
            continue;
        }
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(here, format!("`{k}` is not an sbatch long option name"));
            continue;
        }
        if SCHEDULER_OWNED.contains(&option.as_str()) {
            errs.push(
                here,
                format!("`{k}` is set by each slurm scheduler, so it cannot be a default (only `account` and options the schedulers do not set can)"),
            );
            continue;
        }
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                errs.push(
                    here,
                    format!("expected a string or a number, found {}", type_name(other)),
                );
                continue;
            }
        };
        out.insert(k.clone(), value);
    }
    out
}

fn read_scheduler(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    default_account: Option<&str>,
    errs: &mut Errors,
) -> Option<SlurmScheduler> {
    let name = match get_str(m, "name", loc, errs) {
        Some(n) => Some(n),
        None if field(m, "name").is_none() => {
            errs.push(
                loc,
                "missing required key `name` (jobs and actions refer to schedulers by it)",
            );
            None
        }
        None => None,
    };
    let account = get_str(m, "account", loc, errs).or(default_account);
    if account.is_none() && field(m, "account").is_none() {
        errs.push(
            loc,
            "missing required key `account` (or give it for all schedulers in `slurm_defaults`)",
        );
    }
    let nodes = get_u32(m, "nodes", loc, errs).unwrap_or(1);
    if nodes == 0 {
        errs.push(loc.key("nodes"), "`nodes` must be at least 1");
    }
    let walltime = get_str(m, "walltime", loc, errs).unwrap_or("01:00:00");
    let walltime_duration = units::parse_walltime(walltime)
        .map_err(|e| errs.push(loc.key("walltime"), e.to_string()))
        .ok();
    let text = |key: &str, errs: &mut Errors| match field(m, key) {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => get_str(m, key, loc, errs).map(str::to_string),
    };
    let mem = text("mem", errs);
    if let Some(mem) = &mem {
        if units::parse_memory(mem).is_err() && !mem.bytes().all(|b| b.is_ascii_digit()) {
            errs.push(
                loc.key("mem"),
                format!("invalid memory size `{mem}` (expected e.g. `64G`, `500M`)"),
            );
        }
    }
    let sched = SlurmScheduler {
        name: name?.to_string(),
        account: account.unwrap_or_default().to_string(),
        partition: text("partition", errs),
        nodes,
        walltime: walltime.to_string(),
        walltime_duration: walltime_duration?,
        mem,
        gres: text("gres", errs),
        qos: text("qos", errs),
        ntasks_per_node: get_u32(m, "ntasks_per_node", loc, errs),
        tmp: text("tmp", errs),
        extra: get_str(m, "extra", loc, errs).map(str::to_string),
        serialize_allocations: get_bool(m, "serialize_allocations", loc, errs).unwrap_or(false),
    };
    Some(sched)
}

fn read_action<'a>(
    index: usize,
    m: &'a Map<String, Value>,
    loc: &Loc<'_>,
    schedulers: &[&str],
    errs: &mut Errors,
) -> Option<RawAction<'a>> {
    for key in ["trigger_type", "action_type"] {
        if field(m, key).is_none() {
            errs.push(loc, format!("missing required key `{key}`"));
        }
    }
    let triggers: Vec<(&str, Trigger)> = Trigger::ALL.into_iter().map(|t| (t.name(), t)).collect();
    let trigger = get_choice(m, "trigger_type", loc, &triggers, errs);
    let action_type = get_choice(
        m,
        "action_type",
        loc,
        &[("schedule_nodes", true), ("run_commands", false)],
        errs,
    );
    let jobs = get_str_list(m, "jobs", loc, errs);
    let regexes = get_str_list(m, "job_name_regexes", loc, errs);
    let persistent = get_bool(m, "persistent", loc, errs).unwrap_or(false);
    if trigger.is_some_and(Trigger::watches_jobs) && jobs.is_empty() && regexes.is_empty() {
        errs.push(
            loc,
            format!(
                "trigger `{}` needs the jobs it watches in `jobs` or `job_name_regexes`",
                trigger.map_or("", Trigger::name)
            ),
        );
    }
    let kind = match action_type? {
        true => {
            if field(m, "commands").is_some() {
                errs.push(
                    loc.key("commands"),
                    "`commands` applies to `run_commands` actions",
                );
            }
            let scheduler_type = get_choice(
                m,
                "scheduler_type",
                loc,
                &[
                    ("slurm", SchedulerType::Slurm),
                    ("local", SchedulerType::Local),
                ],
                errs,
            )
            .unwrap_or_default();
            let scheduler = get_str(m, "scheduler", loc, errs);
            if scheduler_type == SchedulerType::Slurm {
                match scheduler {
                    None if field(m, "scheduler").is_none() => errs.push(
                        loc,
                        "a `schedule_nodes` action of `scheduler_type: slurm` needs `scheduler`, the name of a `slurm_schedulers` entry",
                    ),
                    Some(s) if !schedulers.contains(&s) => {
                        let hint = errs.suggest(s, schedulers.len(), schedulers.iter().copied());
                        errs.push(
                            loc.key("scheduler"),
                            format!("unknown slurm scheduler `{s}`{hint}"),
                        );
                    }
                    _ => {}
                }
            }
            let num_allocations = get_u32(m, "num_allocations", loc, errs).unwrap_or(1);
            if num_allocations == 0 {
                errs.push(
                    loc.key("num_allocations"),
                    "`num_allocations` must be at least 1",
                );
            }
            let max_parallel_jobs = get_u32(m, "max_parallel_jobs", loc, errs);
            if max_parallel_jobs == Some(0) {
                errs.push(
                    loc.key("max_parallel_jobs"),
                    "`max_parallel_jobs` must be at least 1",
                );
            }
            ActionKind::ScheduleNodes {
                scheduler: scheduler.map(str::to_string),
                scheduler_type,
                num_allocations,
                start_one_worker_per_node: get_bool(m, "start_one_worker_per_node", loc, errs)
                    .unwrap_or(false),
                max_parallel_jobs,
            }
        }
        false => {
            for k in SCHEDULE_ONLY.iter().filter(|k| field(m, k).is_some()) {
                errs.push(
                    loc.key(k),
                    format!("`{k}` applies to `schedule_nodes` actions"),
                );
            }
            let commands: Vec<String> = get_str_list(m, "commands", loc, errs)
                .into_iter()
                .map(str::to_string)
                .collect();
            if commands.is_empty() && field(m, "commands").is_none() {
                errs.push(loc, "a `run_commands` action needs `commands`");
            } else if commands.is_empty() {
                errs.push(loc.key("commands"), "`commands` is empty");
            }
            ActionKind::RunCommands { commands }
        }
    };
    Some(RawAction {
        index,
        trigger: trigger?,
        kind,
        jobs,
        regexes,
        persistent,
    })
}

/// Resolves the actions' job names and regexes over the expanded jobs.
pub(super) fn resolve_actions(
    raw: Vec<RawAction<'_>>,
    jobs: &mut NameIndex<'_>,
    errs: &mut Errors,
) -> Vec<ActionDef> {
    let root = Loc::Root;
    let aloc = root.key("actions");
    raw.into_iter()
        .map(|a| {
            let loc = aloc.index(a.index);
            let mut ids: Vec<u32> = Vec::new();
            let names_loc = loc.key("jobs");
            for (i, name) in a.jobs.iter().enumerate() {
                match jobs.get(name) {
                    Some(j) => ids.push(j),
                    None => {
                        let hint = errs.suggest(name, jobs.len(), jobs.names());
                        errs.push(names_loc.index(i), format!("unknown job `{name}`{hint}"));
                    }
                }
            }
            let regex_loc = loc.key("job_name_regexes");
            for (i, pattern) in a.regexes.iter().enumerate() {
                let at = regex_loc.index(i);
                match &*jobs.resolve_regex(pattern, errs, &at).0 {
                    RegexMatch::Invalid(e) => errs.push(
                        regex_loc.index(i),
                        format!("invalid regex `{pattern}`: {e}"),
                    ),
                    RegexMatch::Matches(m) if m.is_empty() => errs.push(
                        regex_loc.index(i),
                        format!("regex `{pattern}` matches no job"),
                    ),
                    RegexMatch::Matches(m) => ids.extend_from_slice(m),
                    RegexMatch::OverBudget => {}
                }
            }
            ids.sort_unstable();
            ids.dedup();
            ActionDef {
                trigger: a.trigger,
                kind: a.kind,
                jobs: ids
                    .into_iter()
                    .map(|j| JobId::from_index(j as usize))
                    .collect(),
                persistent: a.persistent,
            }
        })
        .collect()
}
