//! Schema mirrors of `torc_core`'s coordinator types, for the OpenAPI document only (the server
//! sends the core types themselves).
//!
//! `torc-core` stays free of HTTP concerns, so its types cannot derive `ToSchema`; these mirrors
//! have the same names, fields and serde attributes. The tests round-trip real core values
//! through them (the mirrors refuse unknown fields), so a field added to the core without its
//! mirror fails the tests.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A job's state (public Torc numbering 0 to 10, sent by name).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Uninitialized,
    Blocked,
    Ready,
    Pending,
    Running,
    Completed,
    Failed,
    Canceled,
    Terminated,
    Disabled,
    PendingFailed,
}

/// Why a runner ended an attempt itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Memory,
    Timeout,
    AllocationEnd,
    Shutdown,
    Canceled,
    RunnerError,
}

/// A workflow's overall state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    Active,
    Complete,
    Canceled,
}

/// What a runner has free right now (resource-based claims).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeResources {
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub num_gpus: u32,
    /// Seconds left in the runner's allocation; absent or null: unbounded.
    #[serde(default)]
    pub time_left: Option<f64>,
}

/// A request for ready jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Must equal the workflow id of the path.
    pub workflow_id: i64,
    pub runner_id: String,
    /// At most this many jobs.
    pub limit: u32,
    /// Only jobs that fit, together, in these; null for a count-based claim.
    pub resources: Option<FreeResources>,
    /// When nothing fits now, wait up to this long for a job that does (capped by the
    /// server).
    #[serde(default)]
    pub wait_ms: u64,
    /// Only jobs these tags allow; absent or null: any job of the workflow.
    #[serde(default)]
    pub tags: Option<RunnerTags>,
}

/// The tags a runner offers: a tagged job needs all of its tags on the runner; an untagged
/// job goes to an untagged runner, or to a tagged one with `run_untagged`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerTags {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub run_untagged: bool,
}

/// A shared runner's claim: jobs of any workflow it may serve, picked fairly (fewest jobs
/// in flight first, then priority, then the workflow waiting longest).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedClaimRequest {
    pub runner_id: String,
    pub limit: u32,
    pub resources: Option<FreeResources>,
    #[serde(default)]
    pub tags: RunnerTags,
    #[serde(default)]
    pub wait_ms: u64,
}

/// What a job needs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub num_gpus: u32,
    pub num_nodes: u32,
    /// Expected runtime in seconds.
    pub runtime: f64,
}

/// One retry rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureRule {
    pub exit_codes: Vec<i32>,
    pub match_all_exit_codes: bool,
    pub recovery_script: Option<String>,
    pub max_retries: u32,
}

/// A named set of retry rules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureHandler {
    pub name: String,
    pub rules: Vec<FailureRule>,
}

/// A job handed to a runner. Fields at their defaults are left out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimedJob {
    pub workflow_id: i64,
    pub job_id: u32,
    pub run_id: u32,
    pub attempt_id: u32,
    pub name: String,
    pub command: String,
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_script: Option<String>,
    pub resources: Resources,
    /// Always sent (runners built before defaults were left out require it).
    #[serde(default)]
    pub supports_termination: bool,
    /// Seconds; absent: no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Always sent, like `supports_termination`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `{mode: separate|combined|no_stdout|no_stderr|none, delete_on_success}`; absent:
    /// `{mode: separate, delete_on_success: false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<serde_json::Value>,
    /// Absent: 152.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_exit_code: Option<i32>,
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handler: Option<FailureHandler>,
    /// Time-series sampling the workflow's `resource_monitor` asks for; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeries>,
    /// Absent: the defaults of `execution_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<JobLimits>,
}

/// Time-series sampling of a job (and of the runner's node).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeSeries {
    /// Seconds between samples.
    pub interval_seconds: u32,
    /// Sample the job's process tree.
    pub jobs: bool,
    /// Sample the runner's node.
    pub node: bool,
}

/// One time-series sample, of a job's attempt or (without `job_id`) of the runner's node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSample {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// Percent of one CPU (200: two CPUs busy).
    pub cpu_percent: f64,
    /// Resident memory; of a node, memory in use (total less available).
    pub memory_bytes: u64,
    pub num_processes: u32,
}

/// How a runner limits and stops a job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    /// Kill the job past this memory; null: not limited.
    pub memory_bytes: Option<u64>,
    pub oom_exit_code: i32,
    /// Linux signal number sent before SIGKILL.
    pub termination_signal: i32,
    /// Seconds between the termination signal and SIGKILL.
    pub sigterm_lead: f64,
    /// Seconds before an allocation's end that SIGKILL comes.
    pub sigkill_headroom: f64,
    pub staggered_start: bool,
}

/// The answer to a claim.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimResponse {
    pub jobs: Vec<ClaimedJob>,
    /// When not `active`, the runner has nothing more to wait for.
    pub workflow_state: WorkflowState,
    /// For a runner of an allocation (tags naming a scheduler): unfinished jobs it could still
    /// be given; 0 means none can come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_jobs: Option<u64>,
}

/// A job started running.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartReport {
    pub job_id: u32,
    pub attempt_id: u32,
    /// Milliseconds since the Unix epoch.
    pub start_time: i64,
}

/// A job's process ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionReport {
    pub job_id: u32,
    pub run_id: u32,
    pub attempt_id: u32,
    /// Exit code; the negated signal number when killed by a signal.
    pub return_code: i32,
    /// Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminated: bool,
    /// Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovery_failed: bool,
    pub start_time: i64,
    pub end_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Starts and completions sent together.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    /// Must equal the workflow id of the path.
    pub workflow_id: i64,
    pub runner_id: String,
    #[serde(default)]
    pub starts: Vec<StartReport>,
    #[serde(default)]
    pub completions: Vec<CompletionReport>,
    /// Time-series samples (`resource_monitor` with `granularity: time_series`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<ResourceSample>,
}

/// What became of one completion report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompletionOutcome {
    Accepted { status: JobStatus },
    Refused { reason: String },
}

/// A job a runner holds: claimed, running, or finished with its report not yet
/// acknowledged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldJob {
    pub job_id: u32,
    pub run_id: u32,
    pub attempt_id: u32,
}

/// A runner is alive and holds these jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Must equal the workflow id of the path.
    pub workflow_id: i64,
    pub runner_id: String,
    #[serde(default)]
    pub held: Vec<HeldJob>,
    /// Hold the answer up to this long unless the workflow stops being active.
    #[serde(default)]
    pub wait_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatResponse {
    pub workflow_state: WorkflowState,
    /// Listed jobs that are no longer the runner's (lost, canceled, reset): stop them, do
    /// not report them.
    #[serde(default)]
    pub revoked: Vec<HeldJob>,
    /// A runner silent this long loses its jobs; null: no leases.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// The answer to a report batch: one outcome per completion, in the order sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportResponse {
    pub outcomes: Vec<CompletionOutcome>,
    pub workflow_state: WorkflowState,
}

#[cfg(test)]
mod tests {
    use crate::wire::schema;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::time::Duration;
    use torc_core::api::{
        ClaimRequest, ClaimResponse, ClaimedJob, CompletionOutcome, CompletionReport,
        FreeResources, HeartbeatRequest, HeartbeatResponse, HeldJob, ReportBatch, ReportResponse,
        RunnerTags, SharedClaimRequest, StartReport,
    };
    use torc_core::changes::WorkflowState;
    use torc_core::model::{FailureHandler, FailureRule, Resources};
    use torc_core::{JobId, JobStatus, RunnerId, Timestamp, WorkflowId};

    /// The core value, through its mirror, back to the same JSON.
    fn same_json<Core: Serialize, Mirror: Serialize + DeserializeOwned>(value: &Core) {
        let json = serde_json::to_value(value).unwrap();
        let mirror: Mirror = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("mirror does not read {json}: {e}"));
        assert_eq!(serde_json::to_value(&mirror).unwrap(), json);
    }

    #[test]
    fn mirrors_match_the_core_types() {
        let claim = ClaimRequest {
            workflow_id: WorkflowId(3),
            runner_id: RunnerId("h:1".into()),
            limit: 8,
            resources: Some(FreeResources {
                num_cpus: 4,
                memory_bytes: 1 << 30,
                num_gpus: 0,
                time_left: Some(Duration::from_secs(60)),
            }),
            wait_ms: 100,
            tags: Some(RunnerTags {
                tags: vec!["gpu".into()],
                run_untagged: true,
            }),
        };
        same_json::<_, schema::ClaimRequest>(&claim);
        same_json::<_, schema::SharedClaimRequest>(&SharedClaimRequest {
            runner_id: RunnerId("h:1".into()),
            limit: 4,
            resources: None,
            tags: RunnerTags::default(),
            wait_ms: 10,
        });
        let job = ClaimedJob {
            workflow_id: WorkflowId(3),
            job_id: JobId(1),
            run_id: 1,
            attempt_id: 1,
            name: "a".into(),
            command: "true".into(),
            invocation_script: Some("env".into()),
            resources: Resources::DEFAULT_JOB,
            supports_termination: true,
            timeout: Some(Duration::from_millis(1500)),
            env: [("K".to_string(), "V".to_string())].into(),
            stdio: Default::default(),
            timeout_exit_code: 152,
            failure_handler: Some(FailureHandler {
                name: "h".into(),
                rules: vec![FailureRule {
                    exit_codes: vec![3],
                    match_all_exit_codes: false,
                    recovery_script: Some("fix".into()),
                    max_retries: 2,
                }],
            }),
            time_series: Some(torc_core::api::TimeSeries {
                interval_seconds: 2,
                jobs: true,
                node: false,
            }),
            limits: torc_core::api::JobLimits {
                memory_bytes: Some(50 << 20),
                ..Default::default()
            },
        };
        same_json::<_, schema::ClaimResponse>(&ClaimResponse {
            jobs: vec![job.clone()],
            workflow_state: WorkflowState::Active,
            open_jobs: None,
        });
        // A job at every default: those fields are left out, and read back as they were.
        let plain = ClaimedJob {
            invocation_script: None,
            supports_termination: false,
            timeout: None,
            env: Default::default(),
            timeout_exit_code: 152,
            failure_handler: None,
            time_series: None,
            limits: Default::default(),
            ..job.clone()
        };
        let json = serde_json::to_value(&plain).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "workflow_id",
                "job_id",
                "run_id",
                "attempt_id",
                "name",
                "command",
                "resources",
                "supports_termination",
                "env"
            ]
        );
        // What a runner built before defaults were left out requires (its fields without a
        // serde default; options may be absent).
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct EarlierRunnersJob {
            workflow_id: i64,
            job_id: u32,
            run_id: u32,
            attempt_id: u32,
            name: String,
            command: String,
            invocation_script: Option<String>,
            resources: serde_json::Value,
            supports_termination: bool,
            env: std::collections::BTreeMap<String, String>,
            failure_handler: Option<serde_json::Value>,
        }
        serde_json::from_value::<EarlierRunnersJob>(json.clone())
            .expect("a runner of the previous version reads a job at every default");
        assert_eq!(serde_json::from_value::<ClaimedJob>(json).unwrap(), plain);
        same_json::<_, schema::ClaimResponse>(&ClaimResponse {
            jobs: vec![job, plain],
            workflow_state: WorkflowState::Active,
            open_jobs: Some(3),
        });
        same_json::<_, schema::ReportBatch>(&ReportBatch {
            workflow_id: WorkflowId(3),
            runner_id: RunnerId("h:1".into()),
            starts: vec![StartReport {
                job_id: JobId(1),
                attempt_id: 1,
                start_time: Timestamp(5),
            }],
            completions: vec![
                CompletionReport {
                    job_id: JobId(1),
                    run_id: 1,
                    attempt_id: 1,
                    return_code: -9,
                    terminated: true,
                    recovery_failed: false,
                    start_time: Timestamp(5),
                    end_time: Timestamp(6),
                    peak_memory_bytes: Some(10),
                    avg_memory_bytes: None,
                    peak_cpu_percent: Some(1.5),
                    avg_cpu_percent: None,
                    end_reason: Some(torc_core::changes::EndReason::Memory),
                    message: Some("over its memory".into()),
                },
                // Every optional field absent.
                CompletionReport {
                    job_id: JobId(2),
                    run_id: 1,
                    attempt_id: 1,
                    return_code: 0,
                    terminated: false,
                    recovery_failed: false,
                    start_time: Timestamp(5),
                    end_time: Timestamp(6),
                    peak_memory_bytes: None,
                    avg_memory_bytes: None,
                    peak_cpu_percent: None,
                    avg_cpu_percent: None,
                    end_reason: None,
                    message: None,
                },
            ],
            samples: vec![
                torc_core::api::ResourceSample {
                    job_id: Some(JobId(1)),
                    run_id: Some(1),
                    attempt_id: Some(1),
                    time: Timestamp(5),
                    cpu_percent: 99.5,
                    memory_bytes: 1 << 20,
                    num_processes: 2,
                },
                torc_core::api::ResourceSample {
                    job_id: None,
                    run_id: None,
                    attempt_id: None,
                    time: Timestamp(6),
                    cpu_percent: 150.0,
                    memory_bytes: 1 << 30,
                    num_processes: 300,
                },
            ],
        });
        for state in [
            WorkflowState::Active,
            WorkflowState::Complete,
            WorkflowState::Canceled,
        ] {
            same_json::<_, schema::WorkflowState>(&state);
        }
        for status in JobStatus::ALL {
            same_json::<_, schema::JobStatus>(&status);
        }
        same_json::<_, schema::ReportResponse>(&ReportResponse {
            outcomes: vec![
                CompletionOutcome::Accepted {
                    status: JobStatus::Completed,
                },
                CompletionOutcome::Refused {
                    reason: "stale".into(),
                },
            ],
            workflow_state: WorkflowState::Complete,
        });
        let held = HeldJob {
            job_id: JobId(2),
            run_id: 1,
            attempt_id: 3,
        };
        same_json::<_, schema::HeartbeatRequest>(&HeartbeatRequest {
            workflow_id: WorkflowId(3),
            runner_id: RunnerId("h:1".into()),
            held: vec![held],
            wait_ms: 500,
        });
        same_json::<_, schema::HeartbeatResponse>(&HeartbeatResponse {
            workflow_state: WorkflowState::Canceled,
            revoked: vec![held],
            lease_ms: Some(60_000),
        });
    }
}
