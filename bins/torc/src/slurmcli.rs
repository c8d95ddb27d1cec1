//! `torc slurm generate` and `torc slurm allocations`.

use crate::cli::{Global, SlurmGenerateArgs};
use crate::inspect::time;
use crate::out::{errln, outln};
use crate::run::load_spec;
use crate::source::Source;
use crate::{table, Exit};
use anyhow::{Context, Result};
use std::process::ExitCode;
use torc_core::spec::generate::{generate_schedulers, to_yaml, GenerateOptions, PartitionInfo};
use torc_core::spec::{parse_document, SpecFormat};
use torc_core::WorkflowId;
use torc_slurm::{Slurm, TimeLimit};

/// GPUs per node from a `sinfo` gres field (`gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:2,mps:100`).
fn gpus_of(gres: Option<&str>) -> u32 {
    gres.unwrap_or_default()
        .split(',')
        .filter(|g| g.starts_with("gpu"))
        .filter_map(|g| {
            let count = g.split('(').next()?.rsplit(':').next()?;
            count.parse::<u32>().ok()
        })
        .sum()
}

/// `torc slurm generate SPEC --account A [--partition P] [-o FILE]`.
pub fn generate(args: &SlurmGenerateArgs) -> Result<ExitCode> {
    let (expanded, _, _) = load_spec(&args.spec)?;
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("cannot read {}", args.spec.display()))?;
    let format = SpecFormat::from_path(&args.spec.to_string_lossy());
    let mut doc = parse_document(&text, format).map_err(|e| Exit {
        code: 2,
        message: format!("{}: {}: {}", args.spec.display(), e.location, e.message),
    })?;
    let partitions: Vec<PartitionInfo> = Slurm::new()
        .partitions()
        .context("cannot read this cluster's partitions (sinfo)")?
        .into_iter()
        .map(|p| PartitionInfo {
            gpus_per_node: gpus_of(p.gres.as_deref()),
            name: p.name,
            default: p.default,
            max_time: match p.max_time {
                TimeLimit::Limited(d) => Some(d),
                TimeLimit::Unlimited => None,
            },
            cpus_per_node: p.cpus_per_node,
            memory_per_node_mb: p.memory_per_node_mb,
        })
        .collect();
    let opts = GenerateOptions {
        account: args.account.clone(),
        partition: args.partition.clone(),
    };
    let summary =
        generate_schedulers(&mut doc, &expanded.def, &partitions, &opts).map_err(|message| {
            Exit {
                code: 2,
                message: format!("{}: {message}", args.spec.display()),
            }
        })?;
    let json_out = args
        .output
        .as_ref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "json"));
    let out = if json_out {
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        to_yaml(&doc).map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?
    };
    // The result must be a valid spec: check it the way `torc submit` will read it.
    let reread = if json_out {
        SpecFormat::Json
    } else {
        SpecFormat::Yaml
    };
    torc_core::spec::load_value(
        &parse_document(&out, reread).map_err(|e| anyhow::anyhow!("{}", e.message))?,
    )
    .map_err(|e| anyhow::anyhow!("the generated spec does not validate: {e}"))?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            errln!("wrote {}", path.display());
        }
        None => outln!("{}", out.trim_end()),
    }
    for s in &summary {
        errln!(
            "scheduler {}: partition {}, walltime {}, {} job(s), {}",
            s.name,
            s.partition,
            s.walltime,
            s.jobs,
            s.trigger
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `torc slurm allocations ID [--json]`.
pub fn allocations(global: &Global, id: i64, json: bool) -> Result<ExitCode> {
    let id = WorkflowId(id);
    let list = match Source::open(global)? {
        Source::Remote(client, rt) => rt.block_on(client.allocations(id))?,
        Source::Local(store) => {
            store.workflow_summary(id)?;
            store.load_allocations(id)?
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln!("workflow {id} has no allocations");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.scheduler.clone(),
                a.batch_id.map_or("-".into(), |b| b.to_string()),
                a.state.name().to_string(),
                time(a.requested_at),
                a.started_at.map_or("-".into(), time),
                a.ended_at.map_or("-".into(), time),
                a.note.clone(),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "SCHEDULER",
            "SLURM JOB",
            "STATE",
            "REQUESTED",
            "STARTED",
            "ENDED",
            "NOTE",
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::gpus_of;

    #[test]
    fn gpus_from_gres() {
        assert_eq!(gpus_of(None), 0);
        assert_eq!(gpus_of(Some("gpu:4")), 4);
        assert_eq!(gpus_of(Some("gpu:a100:4(S:0-1)")), 4);
        assert_eq!(gpus_of(Some("gpu:2,mps:100")), 2);
        assert_eq!(gpus_of(Some("(null)")), 0);
    }
}
