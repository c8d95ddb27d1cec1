//! Prints the Slurm allocation this process runs in as one line of JSON (`end_time` in Unix
//! seconds), as `torc_slurm::Allocation::discover` reads it. Exits 2 outside an allocation and
//! 1 on an error. The integration tests run it inside real allocations.

use std::process::ExitCode;
use std::time::UNIX_EPOCH;
use torc_slurm::{Allocation, Slurm};

fn main() -> ExitCode {
    match Allocation::discover(&Slurm::new()) {
        Ok(Some(a)) => {
            let end_time = a
                .end_time
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let json = serde_json::json!({
                "job_id": a.job_id.0,
                "num_nodes": a.num_nodes,
                "node_list": a.node_list,
                "cpus_on_node": a.cpus_on_node,
                "memory_per_node_mb": a.memory_per_node_mb,
                "gpus_on_node": a.gpus_on_node,
                "gpu_ids": a.gpu_ids,
                "end_time": end_time,
            });
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("alloc_info: not inside a Slurm allocation (SLURM_JOB_ID is not set)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("alloc_info: {e}");
            ExitCode::FAILURE
        }
    }
}
