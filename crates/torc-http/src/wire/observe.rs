//! Wire types for following a workflow: the event log read as it grows (long poll), and the
//! time-series samples of resource use.

use serde::{Deserialize, Serialize};
use torc_core::changes::WorkflowState;
use torc_core::{JobId, RunnerId, Timestamp};
use torc_store::SampleRecord;
use utoipa::{IntoParams, ToSchema};

use super::WorkflowEvent;

/// `?after=&wait_ms=&limit=` of the event stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsWaitQuery {
    /// Only events after this one (an event id; 0 or absent: from the first).
    pub after: Option<i64>,
    /// When there are none yet, wait up to this long for one (cut to the server's maximum).
    pub wait_ms: Option<u64>,
    /// Events to return at most (default and maximum set by the server).
    pub limit: Option<u64>,
}

/// What the event stream answers: the events after `after` (none if the wait ran out), where
/// to go on from, and the workflow's state (a follower stops when it is over and `items` is
/// empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventBatch {
    pub items: Vec<WorkflowEvent>,
    /// The `after` of the next request: the last event's id, else the one asked with.
    pub next_after: i64,
    #[schema(value_type = crate::wire::schema::WorkflowState)]
    pub workflow_state: WorkflowState,
}

/// `?job=&nodes=&offset=&limit=` of the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SamplesQuery {
    /// Only this job's samples.
    pub job: Option<u32>,
    /// Only the runners' nodes' samples.
    pub nodes: Option<bool>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

/// One time-series sample: of a job's attempt, or (no `job_id`) of a runner's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sample {
    pub id: i64,
    #[schema(value_type = String)]
    pub runner: RunnerId,
    #[schema(value_type = Option<u32>)]
    pub job_id: Option<JobId>,
    pub run_id: Option<u32>,
    pub attempt_id: Option<u32>,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub time: Timestamp,
    /// Percent of one CPU (200: two CPUs busy).
    pub cpu_percent: f64,
    /// Resident memory; of a node, memory in use (total less available).
    pub memory_bytes: u64,
    pub num_processes: u32,
}

impl From<SampleRecord> for Sample {
    fn from(r: SampleRecord) -> Sample {
        let s = r.sample;
        Sample {
            id: r.id,
            runner: r.runner,
            job_id: s.job_id,
            run_id: s.run_id,
            attempt_id: s.attempt_id,
            time: s.time,
            cpu_percent: s.cpu_percent,
            memory_bytes: s.memory_bytes,
            num_processes: s.num_processes,
        }
    }
}

impl From<Sample> for SampleRecord {
    fn from(s: Sample) -> SampleRecord {
        SampleRecord {
            id: s.id,
            runner: s.runner,
            sample: torc_core::api::ResourceSample {
                job_id: s.job_id,
                run_id: s.run_id,
                attempt_id: s.attempt_id,
                time: s.time,
                cpu_percent: s.cpu_percent,
                memory_bytes: s.memory_bytes,
                num_processes: s.num_processes,
            },
        }
    }
}

/// A page of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SamplePage {
    pub offset: u64,
    pub limit: u64,
    pub items: Vec<Sample>,
}
