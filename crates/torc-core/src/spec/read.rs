//! Walks the parsed value into raw, still unexpanded entries, reporting every problem of shape:
//! unknown keys, wrong types, missing keys, bad units, bad parameters.
//!
//! An entry with a readable name is kept even when other fields are wrong (with defaults in
//! their place), so that references to it do not raise a second, misleading error. The final
//! result is an error anyway as soon as one problem was recorded.

use super::diag::{did_you_mean, unknown_key_message, Errors, Loc};
use super::fields::{
    field, for_each_entry, get_bool, get_int, get_list, get_str, get_str_list, get_u32,
    require_str, shown,
};
use super::params::{is_param_name, type_name, ParamSet};
use super::read_params::{read_env, read_param_set, read_workflow_params, WorkflowParams};
use super::settings::{self, Settings};
use crate::model::{
    FailureHandler, FailureRule, ResourceRequirement, Resources, SortMethod, StdioConfig,
};
use crate::units;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "project",
    "metadata",
    "user",
    "jobs",
    "files",
    "user_data",
    "resource_requirements",
    "parameters",
    "parameters_file",
    "variables",
    "env",
    "failure_handlers",
    "jobs_sort_method",
    "max_concurrent_jobs",
    "execution_config",
    "resource_monitor",
    "slurm_schedulers",
    "slurm_defaults",
    "actions",
    "compute_node_expiration_buffer_seconds",
    "compute_node_wait_for_new_jobs_seconds",
    "compute_node_ignore_workflow_completion",
    "compute_node_wait_for_healthy_database_minutes",
    "use_pending_failed",
    "enable_ro_crate",
    "access_groups",
    "dynamic_jobs",
];

/// Torc keys that are accepted and reported, once each, as not acted on yet (plus any
/// `compute_node_*` key other than the two read into [`crate::model::ComputeNodeConfig`]).
const NOT_ACTED_ON: &[&str] = &[
    "use_pending_failed",
    "enable_ro_crate",
    "access_groups",
    "dynamic_jobs",
];

/// The `compute_node_*` keys that are read (the others only warn).
const COMPUTE_NODE_READ: &[&str] = &[
    "compute_node_wait_for_new_jobs_seconds",
    "compute_node_expiration_buffer_seconds",
];

const JOB_KEYS: &[&str] = &[
    "name",
    "command",
    "invocation_script",
    "depends_on",
    "depends_on_regexes",
    "input_files",
    "input_file_regexes",
    "output_files",
    "output_file_regexes",
    "input_user_data",
    "input_user_data_regexes",
    "output_user_data",
    "output_user_data_regexes",
    "resource_requirements",
    "cancel_on_blocking_job_failure",
    "supports_termination",
    "failure_handler",
    "parameters",
    "parameter_mode",
    "use_parameters",
    "scheduler",
    "priority",
    "tags",
    "labels",
    "env",
    "stdio",
    "timeout",
    "parameters_file",
    "use_parameters_file",
];

const FILE_KEYS: &[&str] = &[
    "name",
    "path",
    "identifier",
    "st_mtime",
    "parameters",
    "parameter_mode",
    "use_parameters",
    "parameters_file",
    "use_parameters_file",
];
const USER_DATA_KEYS: &[&str] = &[
    "name",
    "data",
    "is_ephemeral",
    "parameters",
    "parameter_mode",
    "use_parameters",
    "parameters_file",
    "use_parameters_file",
];
const RESOURCE_KEYS: &[&str] = &[
    "name",
    "num_cpus",
    "memory",
    "num_gpus",
    "num_nodes",
    "runtime",
];
const HANDLER_KEYS: &[&str] = &["name", "rules"];
const RULE_KEYS: &[&str] = &[
    "exit_codes",
    "match_all_exit_codes",
    "recovery_script",
    "max_retries",
];

/// The spec, read but not yet expanded.
#[derive(Debug, Default)]
pub(super) struct RawSpec<'a> {
    pub name: String,
    pub description: Option<String>,
    pub project: Option<String>,
    pub metadata: Option<String>,
    pub user: Option<String>,
    pub jobs_sort_method: SortMethod,
    pub max_concurrent_jobs: Option<u32>,
    /// With the index of the spec entry each came from.
    pub resource_requirements: Vec<(usize, ResourceRequirement)>,
    pub failure_handlers: Vec<(usize, FailureHandler)>,
    pub files: Vec<RawFile<'a>>,
    pub user_data: Vec<RawUserData<'a>>,
    pub jobs: Vec<RawJob<'a>>,
    /// The workflow's `env`, under every job's own.
    pub env: BTreeMap<String, String>,
    pub settings: Settings<'a>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub(super) struct RawFile<'a> {
    pub index: usize,
    pub name: &'a str,
    pub path: &'a str,
    pub identifier: Option<&'a str>,
    pub st_mtime: Option<f64>,
    pub params: Option<ParamSet>,
}

#[derive(Debug)]
pub(super) struct RawUserData<'a> {
    pub index: usize,
    pub name: &'a str,
    pub data: Option<&'a Value>,
    pub is_ephemeral: bool,
    pub params: Option<ParamSet>,
}

/// The name lists of a job, in the order of [`RawJob::lists`].
pub(super) const LIST_KEYS: [&str; 10] = [
    "depends_on",
    "depends_on_regexes",
    "input_files",
    "input_file_regexes",
    "output_files",
    "output_file_regexes",
    "input_user_data",
    "input_user_data_regexes",
    "output_user_data",
    "output_user_data_regexes",
];

#[derive(Debug)]
pub(super) struct RawJob<'a> {
    pub index: usize,
    pub name: &'a str,
    pub command: &'a str,
    pub invocation_script: Option<&'a str>,
    /// The name lists, in the order of [`LIST_KEYS`].
    pub lists: [Vec<&'a str>; 10],
    pub resource_requirements: Option<&'a str>,
    pub failure_handler: Option<&'a str>,
    pub scheduler: Option<&'a str>,
    pub cancel_on_blocking_job_failure: bool,
    pub supports_termination: bool,
    pub priority: i64,
    /// `tags` then `labels`, without repeats; templates.
    pub tags: Vec<&'a str>,
    /// Values are templates.
    pub env: BTreeMap<String, String>,
    pub stdio: Option<StdioConfig>,
    pub timeout: Option<Duration>,
    pub params: Option<ParamSet>,
}

/// Reads the whole spec; problems go to `errs`.
pub(super) fn read_spec<'a>(value: &'a Value, errs: &mut Errors) -> RawSpec<'a> {
    let root = Loc::Root;
    let mut spec = RawSpec::default();
    let Some(map) = value.as_object() else {
        errs.push(
            root,
            format!(
                "a spec must be a mapping with at least `name` and `jobs`, found {}",
                type_name(value)
            ),
        );
        return spec;
    };
    for key in map.keys() {
        let compute_node =
            key.starts_with("compute_node_") && !COMPUTE_NODE_READ.contains(&key.as_str());
        if compute_node || NOT_ACTED_ON.contains(&key.as_str()) {
            spec.warnings.push(format!(
                "`{key}` is accepted for compatibility with Torc but is not acted on yet"
            ));
        } else if !TOP_KEYS.contains(&key.as_str()) {
            errs.push(root.key(key), unknown_key_message(key, TOP_KEYS));
        }
    }
    spec.name = require_str(map, "name", &root, errs)
        .unwrap_or_default()
        .to_string();
    spec.description = get_str(map, "description", &root, errs).map(str::to_string);
    spec.project = get_str(map, "project", &root, errs).map(str::to_string);
    spec.metadata = field(map, "metadata").map(|m| match m {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    spec.user = get_str(map, "user", &root, errs).map(str::to_string);
    if let Some(method) = get_str(map, "jobs_sort_method", &root, errs) {
        const METHODS: [&str; 3] = ["gpus_runtime_memory", "gpus_memory_runtime", "none"];
        match SortMethod::from_name(method) {
            Some(m) => spec.jobs_sort_method = m,
            None => errs.push(
                root.key("jobs_sort_method"),
                format!(
                    "unknown sort method `{method}` (expected one of {}){}",
                    METHODS.join(", "),
                    did_you_mean(method, METHODS)
                ),
            ),
        }
    }
    spec.max_concurrent_jobs = get_u32(map, "max_concurrent_jobs", &root, errs);
    if spec.max_concurrent_jobs == Some(0) {
        errs.push(
            root.key("max_concurrent_jobs"),
            "must be at least 1 (leave it out for no cap)".to_string(),
        );
    }
    let workflow_params = read_workflow_params(map, &root, errs);
    spec.env = read_env(map, &root, errs);
    spec.settings = settings::read_settings(map, &root, errs, &mut spec.warnings);

    for_each_entry(
        map,
        "resource_requirements",
        &root,
        RESOURCE_KEYS,
        errs,
        |i, m, loc, errs| {
            if let Some(r) = read_resource_requirement(m, loc, errs) {
                spec.resource_requirements.push((i, r));
            }
        },
    );
    for_each_entry(
        map,
        "failure_handlers",
        &root,
        HANDLER_KEYS,
        errs,
        |i, m, loc, errs| {
            if let Some(h) = read_failure_handler(m, loc, errs) {
                spec.failure_handlers.push((i, h));
            }
        },
    );
    for_each_entry(
        map,
        "files",
        &root,
        FILE_KEYS,
        errs,
        |index, m, loc, errs| {
            let name = require_str(m, "name", loc, errs);
            let path = require_str(m, "path", loc, errs);
            let identifier = get_str(m, "identifier", loc, errs);
            let st_mtime = match field(m, "st_mtime") {
                Some(Value::Number(n)) => n.as_f64(),
                Some(other) => {
                    errs.push(
                        loc.key("st_mtime"),
                        format!(
                            "expected a time in seconds since the epoch, found {}",
                            type_name(other)
                        ),
                    );
                    None
                }
                None => None,
            };
            let params = read_param_set(m, loc, &workflow_params, errs);
            if let Some(name) = name {
                warn_unexpanded("file", name, &params, &mut spec.warnings);
                spec.files.push(RawFile {
                    index,
                    name,
                    path: path.unwrap_or_default(),
                    identifier,
                    st_mtime,
                    params,
                });
            }
        },
    );
    for_each_entry(
        map,
        "user_data",
        &root,
        USER_DATA_KEYS,
        errs,
        |index, m, loc, errs| {
            let name = require_str(m, "name", loc, errs);
            let is_ephemeral = get_bool(m, "is_ephemeral", loc, errs).unwrap_or(false);
            let params = read_param_set(m, loc, &workflow_params, errs);
            if let Some(name) = name {
                warn_unexpanded("user data", name, &params, &mut spec.warnings);
                spec.user_data.push(RawUserData {
                    index,
                    name,
                    data: field(m, "data"),
                    is_ephemeral,
                    params,
                });
            }
        },
    );
    if field(map, "jobs").is_none() {
        errs.push(root, "missing required key `jobs`");
    }
    for_each_entry(map, "jobs", &root, JOB_KEYS, errs, |index, m, loc, errs| {
        if let Some(job) = read_job(index, m, loc, &workflow_params, errs) {
            warn_unexpanded("job", job.name, &job.params, &mut spec.warnings);
            spec.jobs.push(job);
        }
    });
    spec
}

/// Warns when a name looks like a template but nothing will expand it.
fn warn_unexpanded(what: &str, name: &str, params: &Option<ParamSet>, warnings: &mut Vec<String>) {
    if params.is_some() {
        return;
    }
    let looks_templated = name.split('{').skip(1).any(|rest| {
        rest.split_once('}')
            .map(|(inner, _)| inner.split(':').next().unwrap_or(""))
            .is_some_and(is_param_name)
    });
    if looks_templated {
        warnings.push(format!(
            "{what} `{name}` has no parameters, so its name is used as written"
        ));
    }
}

fn read_job<'a>(
    index: usize,
    m: &'a Map<String, Value>,
    loc: &Loc<'_>,
    workflow: &WorkflowParams,
    errs: &mut Errors,
) -> Option<RawJob<'a>> {
    let name = require_str(m, "name", loc, errs);
    let command = require_str(m, "command", loc, errs);
    let lists = LIST_KEYS.map(|key| get_str_list(m, key, loc, errs));
    let env = read_env(m, loc, errs);
    let stdio = field(m, "stdio").and_then(|v| settings::read_stdio(v, &loc.key("stdio"), errs));
    let timeout = get_str(m, "timeout", loc, errs).and_then(|t| {
        units::parse_duration(t)
            .map_err(|e| errs.push(loc.key("timeout"), e.to_string()))
            .ok()
    });
    let invocation_script = get_str(m, "invocation_script", loc, errs);
    let resource_requirements = get_str(m, "resource_requirements", loc, errs);
    let failure_handler = get_str(m, "failure_handler", loc, errs);
    let scheduler = get_str(m, "scheduler", loc, errs);
    let cancel_on_blocking_job_failure =
        get_bool(m, "cancel_on_blocking_job_failure", loc, errs).unwrap_or(true);
    let supports_termination = get_bool(m, "supports_termination", loc, errs).unwrap_or(false);
    let priority = get_int(m, "priority", loc, errs).unwrap_or(0);
    let mut tags = get_str_list(m, "tags", loc, errs);
    for label in get_str_list(m, "labels", loc, errs) {
        if !tags.contains(&label) {
            tags.push(label);
        }
    }
    let params = read_param_set(m, loc, workflow, errs);
    Some(RawJob {
        index,
        name: name?,
        command: command.unwrap_or_default(),
        invocation_script,
        lists,
        resource_requirements,
        failure_handler,
        scheduler,
        cancel_on_blocking_job_failure,
        supports_termination,
        priority,
        tags,
        env,
        stdio,
        timeout,
        params,
    })
}

fn read_resource_requirement(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<ResourceRequirement> {
    let name = require_str(m, "name", loc, errs);
    let num_cpus = match field(m, "num_cpus") {
        None => {
            errs.push(loc, "missing required key `num_cpus`");
            None
        }
        Some(_) => get_u32(m, "num_cpus", loc, errs),
    };
    if num_cpus == Some(0) {
        errs.push(loc.key("num_cpus"), "`num_cpus` must be at least 1");
    }
    let memory = match field(m, "memory") {
        None => {
            errs.push(loc, "missing required key `memory`");
            None
        }
        Some(Value::String(s)) => units::parse_memory(s)
            .map_err(|e| errs.push(loc.key("memory"), e.to_string()))
            .ok(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(bytes) => units::check_memory(bytes)
                .map_err(|e| errs.push(loc.key("memory"), e.to_string()))
                .ok(),
            None => {
                let shown = n.to_string();
                let e = units::parse_memory(&shown).err().map_or_else(
                    || format!("invalid memory size `{shown}`"),
                    |e| e.to_string(),
                );
                errs.push(loc.key("memory"), e);
                None
            }
        },
        Some(other) => {
            errs.push(
                loc.key("memory"),
                format!("expected a size such as `4g`, found {}", type_name(other)),
            );
            None
        }
    };
    let num_gpus = get_u32(m, "num_gpus", loc, errs);
    let num_nodes = get_u32(m, "num_nodes", loc, errs);
    if num_nodes == Some(0) {
        errs.push(loc.key("num_nodes"), "`num_nodes` must be at least 1");
    }
    let runtime = match get_str(m, "runtime", loc, errs) {
        Some(r) => units::parse_duration(r)
            .map_err(|e| errs.push(loc.key("runtime"), e.to_string()))
            .ok(),
        None => Some(Duration::from_secs(3600)),
    };
    Some(ResourceRequirement {
        name: name?.to_string(),
        resources: Resources {
            num_cpus: num_cpus.unwrap_or(1),
            memory_bytes: memory.unwrap_or(Resources::DEFAULT_JOB.memory_bytes),
            num_gpus: num_gpus.unwrap_or(0),
            num_nodes: num_nodes.unwrap_or(1),
            runtime: runtime.unwrap_or(Duration::from_secs(3600)),
        },
    })
}

fn read_failure_handler(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<FailureHandler> {
    let name = require_str(m, "name", loc, errs);
    let mut rules = Vec::new();
    if field(m, "rules").is_none() {
        errs.push(loc, "missing required key `rules`");
    }
    if let Some(items) = get_list(m, "rules", loc, errs) {
        let rloc = loc.key("rules");
        for (i, item) in items.iter().enumerate() {
            let here = rloc.index(i);
            let Some(rule) = item.as_object() else {
                errs.push(
                    here,
                    format!("expected a mapping, found {}", type_name(item)),
                );
                continue;
            };
            for k in rule.keys() {
                if !RULE_KEYS.contains(&k.as_str()) {
                    errs.push(here.key(k), unknown_key_message(k, RULE_KEYS));
                }
            }
            let mut exit_codes = Vec::new();
            if let Some(codes) = get_list(rule, "exit_codes", &here, errs) {
                let cloc = here.key("exit_codes");
                for (j, c) in codes.iter().enumerate() {
                    match c.as_i64().and_then(|c| i32::try_from(c).ok()) {
                        Some(code) => exit_codes.push(code),
                        None => errs.push(
                            cloc.index(j),
                            format!("expected an integer exit code, found {}", shown(c)),
                        ),
                    }
                }
            }
            let match_all = get_bool(rule, "match_all_exit_codes", &here, errs).unwrap_or(false);
            if exit_codes.is_empty() && !match_all && field(rule, "exit_codes").is_none() {
                errs.push(
                    here,
                    "a rule needs `exit_codes` or `match_all_exit_codes: true`",
                );
            }
            rules.push(FailureRule {
                exit_codes,
                match_all_exit_codes: match_all,
                recovery_script: get_str(rule, "recovery_script", &here, errs).map(str::to_string),
                max_retries: get_u32(rule, "max_retries", &here, errs).unwrap_or(3),
            });
        }
    }
    Some(FailureHandler {
        name: name?.to_string(),
        rules,
    })
}
