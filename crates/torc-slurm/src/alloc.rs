//! The allocation a process runs in, read from the environment Slurm gives it (job id, nodes,
//! CPUs, memory, GPUs) and, for its end, from Slurm itself: Slurm 22.05 has no variable for the
//! end time, so it is asked (`squeue -h -j ID -o %e`) unless a newer Slurm's
//! `SLURM_JOB_END_TIME` says it.

use crate::command::{CommandError, Slurm};
use crate::state::SlurmJobId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A Slurm allocation, as seen from one of its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub job_id: SlurmJobId,
    pub num_nodes: u32,
    /// The allocation's nodes in Slurm's compressed form (`node[01-04,07]`).
    pub node_list: String,
    /// CPUs this node gives the allocation.
    pub cpus_on_node: u32,
    /// Memory this node gives the allocation, in MB (`SLURM_MEM_PER_NODE`, or
    /// `SLURM_MEM_PER_CPU` times the CPUs); `None` when Slurm says neither.
    pub memory_per_node_mb: Option<u64>,
    /// GPUs this node gives the allocation.
    pub gpus_on_node: u32,
    /// Their device ids (`SLURM_JOB_GPUS`, else `CUDA_VISIBLE_DEVICES`), when Slurm names them.
    pub gpu_ids: Vec<String>,
    /// When the allocation ends. [`Allocation::from_env`] fills it only from
    /// `SLURM_JOB_END_TIME`; after [`Allocation::discover`], `None` means no time limit.
    pub end_time: Option<SystemTime>,
}

/// The environment does not describe an allocation we can use.
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("inside Slurm allocation {job_id} but {var} is not set")]
    Missing {
        job_id: SlurmJobId,
        var: &'static str,
    },
    #[error("{var}=`{value}` is not {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("could not ask Slurm when allocation {job_id} ends: {source}")]
    EndTime {
        job_id: SlurmJobId,
        source: CommandError,
    },
}

impl Allocation {
    /// Reads the allocation from environment variables through `env` (`None`: not set).
    /// `Ok(None)` when `SLURM_JOB_ID` is not set: not inside an allocation.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Allocation>, AllocationError> {
        let get = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names
                .iter()
                .find_map(|n| env(n).map(|v| (*n, v.trim().to_string())))
                .filter(|(_, v)| !v.is_empty())
        };
        let Some((var, value)) = get(&["SLURM_JOB_ID", "SLURM_JOBID"]) else {
            return Ok(None);
        };
        let job_id: SlurmJobId = value.parse().map_err(|_| AllocationError::Invalid {
            var,
            value: value.clone(),
            expected: "a Slurm job id",
        })?;
        let required = |names: &[&'static str]| {
            get(names).ok_or(AllocationError::Missing {
                job_id,
                var: names[0],
            })
        };

        let (var, value) = required(&["SLURM_JOB_NUM_NODES", "SLURM_NNODES"])?;
        let num_nodes: u32 = positive(var, &value)?;
        let (_, node_list) = required(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"])?;
        let (var, value) = required(&["SLURM_CPUS_ON_NODE"])?;
        let cpus_on_node: u32 = positive(var, &value)?;

        let memory_per_node_mb = match get(&["SLURM_MEM_PER_NODE"]) {
            Some((var, value)) => Some(whole::<u64>(var, &value)?),
            None => match get(&["SLURM_MEM_PER_CPU"]) {
                Some((var, value)) => {
                    let per_cpu: u64 = whole(var, &value)?;
                    Some(per_cpu.saturating_mul(u64::from(cpus_on_node)))
                }
                None => None,
            },
        }
        // `0` is Slurm's "all of the node's memory", which it does not tell: unknown.
        .filter(|&mb| mb > 0);

        let gpu_ids: Vec<String> = match get(&["SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"]) {
            Some((_, ids)) if ids != "NoDevFiles" => ids
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        let gpus_on_node = match get(&["SLURM_GPUS_ON_NODE"]) {
            Some((var, value)) => whole(var, &value)?,
            None => u32::try_from(gpu_ids.len()).unwrap_or(u32::MAX),
        };

        let end_time = match get(&["SLURM_JOB_END_TIME"]) {
            Some((var, value)) => match whole::<u64>(var, &value)? {
                0 => None,
                secs => Some(UNIX_EPOCH + Duration::from_secs(secs)),
            },
            None => None,
        };

        Ok(Some(Allocation {
            job_id,
            num_nodes,
            node_list,
            cpus_on_node,
            memory_per_node_mb,
            gpus_on_node,
            gpu_ids,
            end_time,
        }))
    }

    /// The allocation this process runs in, from its environment, with its end time from
    /// `SLURM_JOB_END_TIME` or else from `squeue`. `Ok(None)` outside an allocation.
    pub fn discover(slurm: &Slurm) -> Result<Option<Allocation>, AllocationError> {
        let Some(mut alloc) = Allocation::from_env(|name| std::env::var(name).ok())? else {
            return Ok(None);
        };
        if alloc.end_time.is_none() {
            alloc.end_time =
                slurm
                    .end_time(alloc.job_id)
                    .map_err(|source| AllocationError::EndTime {
                        job_id: alloc.job_id,
                        source,
                    })?;
        }
        Ok(Some(alloc))
    }

    /// Time left at `now` (zero once past the end); `None` without a known end.
    pub fn time_left(&self, now: SystemTime) -> Option<Duration> {
        self.end_time
            .map(|end| end.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

fn whole<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, AllocationError> {
    let invalid = || AllocationError::Invalid {
        var,
        value: value.to_string(),
        expected: "a whole number",
    };
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse().map_err(|_| invalid())
}

fn positive(var: &'static str, value: &str) -> Result<u32, AllocationError> {
    match whole::<u32>(var, value) {
        Ok(0) => Err(AllocationError::Invalid {
            var,
            value: value.to_string(),
            expected: "a positive whole number",
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// The variables of a batch job on the test cluster (`sbatch -c 2 --mem-per-cpu=500`).
    const TEST_CLUSTER: &[(&str, &str)] = &[
        ("SLURMD_NODENAME", "vm"),
        ("SLURM_CPUS_ON_NODE", "2"),
        ("SLURM_CPUS_PER_TASK", "2"),
        ("SLURM_JOBID", "3"),
        ("SLURM_JOB_CPUS_PER_NODE", "2"),
        ("SLURM_JOB_ID", "3"),
        ("SLURM_JOB_NODELIST", "vm"),
        ("SLURM_JOB_NUM_NODES", "1"),
        ("SLURM_JOB_PARTITION", "debug"),
        ("SLURM_MEM_PER_CPU", "500"),
        ("SLURM_NNODES", "1"),
        ("SLURM_NODELIST", "vm"),
        ("SLURM_TASKS_PER_NODE", "1"),
    ];

    #[test]
    fn outside_an_allocation() {
        assert_eq!(Allocation::from_env(env(&[])).unwrap(), None);
        assert_eq!(
            Allocation::from_env(env(&[("SLURM_JOB_ID", "")])).unwrap(),
            None
        );
    }

    #[test]
    fn the_test_clusters_environment() {
        let a = Allocation::from_env(env(TEST_CLUSTER)).unwrap().unwrap();
        assert_eq!(
            a,
            Allocation {
                job_id: SlurmJobId(3),
                num_nodes: 1,
                node_list: "vm".into(),
                cpus_on_node: 2,
                memory_per_node_mb: Some(1000),
                gpus_on_node: 0,
                gpu_ids: vec![],
                end_time: None,
            }
        );
        assert_eq!(a.time_left(SystemTime::now()), None);
    }

    #[test]
    fn a_gpu_node_of_a_larger_allocation() {
        let a = Allocation::from_env(env(&[
            ("SLURM_JOB_ID", "123456"),
            ("SLURM_NNODES", "4"),
            ("SLURM_NODELIST", "gpu[01-04]"),
            ("SLURM_CPUS_ON_NODE", "64"),
            ("SLURM_MEM_PER_NODE", "240000"),
            ("SLURM_MEM_PER_CPU", "1"),
            ("SLURM_GPUS_ON_NODE", "4"),
            ("SLURM_JOB_GPUS", "0,1,2,3"),
            ("CUDA_VISIBLE_DEVICES", "ignored"),
            ("SLURM_JOB_END_TIME", "1796163796"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.job_id, SlurmJobId(123456));
        assert_eq!(a.num_nodes, 4);
        assert_eq!(a.node_list, "gpu[01-04]");
        assert_eq!(a.memory_per_node_mb, Some(240000));
        assert_eq!(a.gpus_on_node, 4);
        assert_eq!(a.gpu_ids, ["0", "1", "2", "3"]);
        let end = UNIX_EPOCH + Duration::from_secs(1_796_163_796);
        assert_eq!(a.end_time, Some(end));
        assert_eq!(
            a.time_left(end - Duration::from_secs(90)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            a.time_left(end + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn gpus_from_cuda_visible_devices() {
        let mut vars = TEST_CLUSTER.to_vec();
        vars.push(("CUDA_VISIBLE_DEVICES", "2,3"));
        let a = Allocation::from_env(env(&vars)).unwrap().unwrap();
        assert_eq!(
            (a.gpus_on_node, a.gpu_ids.clone()),
            (2, vec!["2".into(), "3".into()])
        );
        let mut vars = TEST_CLUSTER.to_vec();
        vars.push(("CUDA_VISIBLE_DEVICES", "NoDevFiles"));
        let a = Allocation::from_env(env(&vars)).unwrap().unwrap();
        assert_eq!(a.gpus_on_node, 0);
        assert!(a.gpu_ids.is_empty());
    }

    #[test]
    fn memory_zero_or_unset_is_unknown() {
        let without: Vec<_> = TEST_CLUSTER
            .iter()
            .copied()
            .filter(|(k, _)| *k != "SLURM_MEM_PER_CPU")
            .collect();
        let a = Allocation::from_env(env(&without)).unwrap().unwrap();
        assert_eq!(a.memory_per_node_mb, None);
        let mut zero = without.clone();
        zero.push(("SLURM_MEM_PER_NODE", "0"));
        let a = Allocation::from_env(env(&zero)).unwrap().unwrap();
        assert_eq!(a.memory_per_node_mb, None);
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let without = |var: &str| -> Vec<(&str, &str)> {
            TEST_CLUSTER
                .iter()
                .copied()
                .filter(|(k, _)| *k != var)
                .collect()
        };
        let mut vars = without("SLURM_CPUS_ON_NODE");
        let err = Allocation::from_env(env(&vars)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inside Slurm allocation 3 but SLURM_CPUS_ON_NODE is not set"
        );
        vars.push(("SLURM_CPUS_ON_NODE", "0"));
        let err = Allocation::from_env(env(&vars)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SLURM_CPUS_ON_NODE=`0` is not a positive whole number"
        );
        let mut vars = without("SLURM_JOB_NUM_NODES");
        vars.retain(|(k, _)| *k != "SLURM_NNODES");
        assert!(matches!(
            Allocation::from_env(env(&vars)),
            Err(AllocationError::Missing {
                var: "SLURM_JOB_NUM_NODES",
                ..
            })
        ));
        for (var, value) in [
            ("SLURM_JOB_ID", "12_3"),
            ("SLURM_MEM_PER_CPU", "500M"),
            ("SLURM_GPUS_ON_NODE", "-1"),
            ("SLURM_JOB_END_TIME", "soon"),
            ("SLURM_JOB_NUM_NODES", "99999999999"),
        ] {
            let mut vars = without(var);
            if var == "SLURM_JOB_ID" {
                vars.retain(|(k, _)| *k != "SLURM_JOBID");
            }
            vars.push((var, value));
            let err = Allocation::from_env(env(&vars)).unwrap_err();
            assert!(
                matches!(&err, AllocationError::Invalid { var: v, .. } if *v == var),
                "{var}: {err}"
            );
        }
    }
}
