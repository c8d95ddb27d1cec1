//! The JSON bodies the server reads, and the answers its client reads. The first byte picks the
//! type, the rest is the body. A request that parses goes through the server's checks at the
//! boundary (`torc_http::server::input`) and, when they pass, to a workflow's scheduling state
//! the way the engine hands it on; every value that parses is serialized again and must parse
//! back to the same value. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use torc_core::api::{
    ActionClaimRequest, ClaimRequest, ClaimResponse, ClaimedJob, FreeResources, HeartbeatRequest,
    HeartbeatResponse, ReportBatch, ReportResponse, RunnerTags, SharedClaimRequest,
};
use torc_core::sched::{LeasePolicy, ResourceScale, WorkflowSched};
use torc_core::{JobId, RunnerId, Timestamp, WorkflowDef, WorkflowId};
use torc_http::server::input::{self, Bounds};
use torc_http::server::service::Limits;
use torc_http::wire::{
    CapRequest, CreatedWorkflow, ErrorBody, EventBatch, EventPage, EventsWaitQuery, JobPage,
    JobsQuery, PageQuery, ResetRequest, ResourcesChanged, ResultPage, ResultsQuery, SamplePage,
    SamplesQuery, ScaleRequest, SpecQuery, TokenRequest, Workflow, WorkflowStatus,
};

/// A workflow with something for every request to act on: resources, a shared requirement, a
/// failure handler, a timeout, dependencies, a scheduler and actions.
const SPEC: &str = r#"
name: fuzz
resource_requirements:
  - {name: small, num_cpus: 1, memory: 1g, runtime: PT10M}
  - {name: big, num_cpus: 4, memory: 8g, num_gpus: 1, runtime: PT2H}
failure_handlers:
  - name: retry
    rules: [{exit_codes: [1, 2], max_retries: 2}]
slurm_schedulers: [{name: short, account: a, walltime: "1:00:00"}]
jobs:
  - {name: prep, command: "true", resource_requirements: small, timeout: PT30M}
  - name: "work_{i}"
    command: "echo {i}"
    parameters: {i: "1:3"}
    depends_on: [prep]
    resource_requirements: small
    failure_handler: retry
  - {name: gpu, command: "true", resource_requirements: big, scheduler: short}
  - {name: last, command: "true", depends_on_regexes: ["^work_"]}
actions:
  - {trigger_type: on_workflow_start, action_type: run_commands, commands: ["mkdir -p out"]}
  - {trigger_type: on_jobs_ready, action_type: schedule_nodes, jobs: [gpu], scheduler: short}
"#;

const WORKFLOW: WorkflowId = WorkflowId(1);
const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn def() -> Arc<WorkflowDef> {
    static DEF: OnceLock<Arc<WorkflowDef>> = OnceLock::new();
    DEF.get_or_init(|| {
        let loaded = torc_core::spec::load(SPEC, torc_core::spec::SpecFormat::Yaml)
            .unwrap_or_else(|e| panic!("the fuzz workflow does not load: {e}"));
        Arc::new(loaded.def)
    })
    .clone()
}

fn bounds() -> Bounds {
    let limits = Limits::default();
    Bounds {
        max_runner_id: limits.max_runner_id,
        max_claim: limits.max_claim,
    }
}

/// A started workflow; with `runner`, that runner holds every job that was ready.
fn sched(runner: Option<&RunnerId>) -> WorkflowSched {
    let mut s = WorkflowSched::new(WORKFLOW, def());
    let _ = s.initialize(NOW);
    if let Some(r) = runner {
        let _ = s.claim(r, 100, None, NOW);
    }
    s
}

/// Parses `body` as a `T`; what parses must serialize, and parse back to the same value.
fn parse<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value: T = serde_json::from_slice(body).ok()?;
    round_trip(&value);
    Some(value)
}

fn round_trip<T>(value: &T)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let text = serde_json::to_string(value).expect("a parsed value serializes");
    let back: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{text} does not parse back: {e} ({value:?})"));
    if &back != value {
        // serde_json (without its `float_roundtrip` feature) may read a float it wrote one
        // unit in the last place off (`1.11e72`): the same value otherwise.
        let (a, b) = (to_value(&back), to_value(value));
        assert!(
            same(&a, &b),
            "{text} parses back to another value: {back:?}"
        );
    }
}

fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("a parsed value is a JSON value")
}

/// Equal, floats within a few units in the last place.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        _ => a == b,
    }
}

fn answers<T>(body: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let _ = parse::<T>(body);
}

fn query<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// Claims for `runner` from a fresh workflow; never more than `limit` jobs.
fn claim_up_to(
    runner: &RunnerId,
    limit: u32,
    free: Option<&FreeResources>,
    tags: Option<&RunnerTags>,
) -> Vec<ClaimedJob> {
    let (jobs, _) = sched(None).claim_tagged(runner, limit, free, tags, NOW);
    assert!(
        jobs.len() as u64 <= u64::from(limit),
        "claimed over the limit"
    );
    jobs
}

fn claim(body: &[u8]) {
    let Some(req) = parse::<ClaimRequest>(body) else {
        return;
    };
    if input::claim(bounds(), &req).is_err() {
        return;
    }
    let jobs = claim_up_to(
        &req.runner_id,
        req.limit,
        req.resources.as_ref(),
        req.tags.as_ref(),
    );
    round_trip(&jobs);
}

fn shared_claim(body: &[u8]) {
    let Some(req) = parse::<SharedClaimRequest>(body) else {
        return;
    };
    if input::shared_claim(bounds(), &req).is_err() {
        return;
    }
    claim_up_to(
        &req.runner_id,
        req.limit,
        req.resources.as_ref(),
        Some(&req.tags),
    );
}

fn report(body: &[u8]) {
    let Some(batch) = parse::<ReportBatch>(body) else {
        return;
    };
    if input::report(bounds(), &batch).is_err() {
        return;
    }
    let mut s = sched(Some(&batch.runner_id));
    let _ = s.start(&batch.starts);
    let (outcomes, _) = s.complete(&batch.runner_id, &batch.completions, NOW);
    assert_eq!(
        outcomes.len(),
        batch.completions.len(),
        "one outcome per report"
    );
    round_trip(&outcomes);
}

fn heartbeat(body: &[u8]) {
    let Some(req) = parse::<HeartbeatRequest>(body) else {
        return;
    };
    if input::heartbeat(bounds(), &req).is_err() {
        return;
    }
    let mut s = sched(Some(&req.runner_id));
    let (revoked, _) = s.heartbeat(&req.runner_id, &req.held, NOW, &LeasePolicy::default());
    round_trip(&revoked);
}

fn action_claim(body: &[u8]) {
    let Some(req) = parse::<ActionClaimRequest>(body) else {
        return;
    };
    if input::action_claim(bounds(), &req).is_err() {
        return;
    }
    let mut s = sched(None);
    let (answer, _) = s.exchange_actions(&req, NOW);
    round_trip(&answer);
}

fn cap(body: &[u8]) {
    let Some(req) = parse::<CapRequest>(body) else {
        return;
    };
    if input::max_concurrent_jobs(req.max_concurrent_jobs).is_err() {
        return;
    }
    let mut s = sched(None);
    s.set_max_concurrent_jobs(req.max_concurrent_jobs);
    let _ = s.claim(&RunnerId("r".into()), 100, None, NOW);
}

/// The job to scale is the first byte after the type's; the rest is the body.
fn scale(data: &[u8]) {
    let Some((&job, body)) = data.split_first() else {
        return;
    };
    let Some(req) = parse::<ScaleRequest>(body) else {
        return;
    };
    let mut s = sched(None);
    let scale = ResourceScale {
        memory_factor: req.memory_factor,
        runtime_factor: req.runtime_factor,
    };
    if let Ok(change) = s.scale_job_resources(JobId(u32::from(job % 8)), scale) {
        let _ = serde_json::to_string(&ResourcesChanged::from(change));
    }
}

fn reset(body: &[u8]) {
    let Ok(req) = ResetRequest::from_body(body) else {
        return;
    };
    round_trip(&req);
    let mut s = sched(Some(&RunnerId("r".into())));
    let _ = s.cancel(NOW);
    let _ = s.reset(req.failed_only, NOW);
}

fn token(body: &[u8]) {
    let Some(req) = parse::<TokenRequest>(body) else {
        return;
    };
    if let Some(name) = &req.name {
        let _ = input::token_name(name);
    }
}

/// The query strings of the listings (as `application/x-www-form-urlencoded`).
fn queries(body: &[u8]) {
    let _ = query::<SpecQuery>(body);
    let _ = query::<PageQuery>(body);
    let _ = query::<ResultsQuery>(body);
    let _ = query::<EventsWaitQuery>(body);
    let _ = query::<SamplesQuery>(body);
    if let Some(q) = query::<JobsQuery>(body) {
        if let Some(s) = q.status.as_deref() {
            let _ = torc_core::JobStatus::from_name(s).or_else(|| {
                s.parse::<i16>()
                    .ok()
                    .and_then(torc_core::JobStatus::from_code)
            });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 16 {
        0 => claim(body),
        1 => shared_claim(body),
        2 => report(body),
        3 => heartbeat(body),
        4 => action_claim(body),
        5 => cap(body),
        6 => scale(body),
        7 => reset(body),
        8 => token(body),
        9 => queries(body),
        // What the client reads from a server.
        10 => answers::<ClaimResponse>(body),
        11 => answers::<ReportResponse>(body),
        12 => answers::<HeartbeatResponse>(body),
        13 => {
            answers::<ErrorBody>(body);
            answers::<CreatedWorkflow>(body);
            answers::<WorkflowStatus>(body);
        }
        14 => {
            answers::<JobPage>(body);
            answers::<ResultPage>(body);
            answers::<Vec<Workflow>>(body);
        }
        _ => {
            answers::<EventPage>(body);
            answers::<EventBatch>(body);
            answers::<SamplePage>(body);
        }
    }
});
