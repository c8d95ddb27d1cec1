//! `torc plot resources`: CPU and memory over time from the time-series samples that runners
//! take when a workflow's `resource_monitor` asks for `granularity: time_series`. Two panels,
//! CPU above memory, against seconds since the first sample; one thin line per job attempt and
//! one thick dark line per runner node.

use crate::cli::{Global, ResourcesArgs};
use crate::out::errln;
use crate::source::Source;
use crate::timeline::{is_png, register_font};
use crate::Exit;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::process::ExitCode;
use torc_core::{JobId, WorkflowId};
use torc_store::{SampleFilter, SampleRecord};

/// Jobs named one by one in the legend at most; past it the legend counts them.
const LEGEND_JOBS: usize = 12;

/// What one line is of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Of {
    /// A runner's node.
    Node(String),
    /// A job's attempt: job, run, attempt.
    Job(JobId, u32, u32),
}

/// One line: (seconds, CPU %, bytes) points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub of: Of,
    pub label: String,
    pub points: Vec<(f64, f64, u64)>,
}

/// Groups samples into series (nodes first, then jobs in id order), with times in seconds
/// since the first sample.
pub fn series(samples: &[SampleRecord], name_of: impl Fn(JobId) -> String) -> Vec<Series> {
    let first = samples.iter().map(|s| s.sample.time.0).min().unwrap_or(0);
    let mut by: BTreeMap<Of, Vec<(f64, f64, u64)>> = BTreeMap::new();
    for r in samples {
        let s = &r.sample;
        let of = match s.job_id {
            None => Of::Node(r.runner.0.clone()),
            Some(j) => Of::Job(j, s.run_id.unwrap_or(0), s.attempt_id.unwrap_or(0)),
        };
        let t = (s.time.0 - first) as f64 / 1000.0;
        by.entry(of)
            .or_default()
            .push((t, s.cpu_percent, s.memory_bytes));
    }
    by.into_iter()
        .map(|(of, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = match &of {
                Of::Node(runner) => format!("node of {runner}"),
                Of::Job(j, run, attempt) if *run > 1 || *attempt > 1 => {
                    format!("job {j} {} (run {run}, attempt {attempt})", name_of(*j))
                }
                Of::Job(j, ..) => format!("job {j} {}", name_of(*j)),
            };
            Series { of, label, points }
        })
        .collect()
}

/// A memory scale that reads well for the largest value: (divisor, unit).
fn memory_unit(max: u64) -> (f64, &'static str) {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if max >= 4 * GIB {
        (GIB as f64, "GiB")
    } else if max >= 4 * MIB {
        (MIB as f64, "MiB")
    } else {
        (1024.0, "KiB")
    }
}

struct Plot<'a> {
    title: String,
    series: &'a [Series],
    height: u32,
}

impl Plot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("cannot draw: {e}");
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&self.title, ("sans-serif", 20)).map_err(err)?;
        let (top, bottom) = root.split_vertically(self.height.saturating_sub(30) / 2);
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let span = points().map(|p| p.0).fold(0.0, f64::max).max(1.0);
        let cpu_max = points().map(|p| p.1).fold(0.0, f64::max).max(10.0) * 1.1;
        // Jobs' memory on the left axis; a node's (usually far larger) on its own right axis.
        let mem_of = |node: bool| {
            (self.series.iter())
                .filter(|s| matches!(s.of, Of::Node(_)) == node)
                .flat_map(|s| s.points.iter().map(|p| p.2))
                .max()
        };
        let job_mem = mem_of(false).unwrap_or(0);
        let node_mem = mem_of(true);
        let (div, unit) = memory_unit(job_mem);
        let mem_top = (job_mem as f64 / div).max(1.0) * 1.1;
        let (ndiv, nunit) = memory_unit(node_mem.unwrap_or(0));
        let node_top = (node_mem.unwrap_or(0) as f64 / ndiv).max(1.0) * 1.1;
        let jobs = self
            .series
            .iter()
            .filter(|s| matches!(s.of, Of::Job(..)))
            .count();
        let colour = |i: usize, s: &Series| -> (RGBColor, u32) {
            match s.of {
                Of::Node(_) => {
                    let greys = [
                        RGBColor(33, 33, 33),
                        RGBColor(94, 53, 177),
                        RGBColor(0, 77, 64),
                    ];
                    (greys[i % greys.len()], 3)
                }
                Of::Job(..) => {
                    let c = Palette99::pick(i).to_rgba();
                    (RGBColor(c.0, c.1, c.2), 2)
                }
            }
        };
        let panels: [(DrawingArea<DB, _>, &str, f64); 2] = [
            (top, "CPU (% of one CPU)", cpu_max),
            (bottom, "job memory", mem_top),
        ];
        for (p, (area, what, ymax)) in panels.into_iter().enumerate() {
            let ydesc = if p == 0 {
                what.to_string()
            } else {
                format!("{what} ({unit})")
            };
            let secondary = p == 1 && node_mem.is_some();
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .right_y_label_area_size(if node_mem.is_some() { 64 } else { 0 })
                .build_cartesian_2d(0f64..span * 1.02, 0f64..ymax)
                .map_err(err)?
                .set_secondary_coord(0f64..span * 1.02, 0f64..node_top);
            chart
                .configure_mesh()
                .max_light_lines(1)
                .x_desc("seconds since the first sample")
                .y_desc(ydesc)
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(err)?;
            if secondary {
                chart
                    .configure_secondary_axes()
                    .y_desc(format!("node memory in use ({nunit})"))
                    .label_style(("sans-serif", 12))
                    .draw()
                    .map_err(err)?;
            }
            let mut job_index = 0;
            for (i, s) in self.series.iter().enumerate() {
                let (c, w) = colour(i, s);
                let is_node = matches!(s.of, Of::Node(_));
                let scale = if is_node { ndiv } else { div };
                let line = s.points.iter().map(move |&(t, cpu, mem)| match p {
                    0 => (t, cpu),
                    _ => (t, mem as f64 / scale),
                });
                let style = c.stroke_width(w);
                let drawn = if p == 1 && is_node {
                    chart
                        .draw_secondary_series(LineSeries::new(line, style))
                        .map_err(err)?
                } else {
                    chart
                        .draw_series(LineSeries::new(line, style))
                        .map_err(err)?
                };
                let named = match s.of {
                    Of::Node(_) => true,
                    Of::Job(..) => {
                        job_index += 1;
                        job_index <= LEGEND_JOBS
                    }
                };
                if p == 0 && named {
                    drawn.label(s.label.clone()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], c.stroke_width(w.max(2)))
                    });
                }
            }
            if p == 0 && jobs > LEGEND_JOBS {
                chart
                    .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                    .map_err(err)?
                    .label(format!("… and {} more jobs", jobs - LEGEND_JOBS))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], WHITE));
            }
            if p == 0 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 12))
                    .draw()
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
        Ok(())
    }
}

/// `torc plot resources`.
pub fn resources(global: &Global, args: &ResourcesArgs) -> Result<ExitCode> {
    let png = is_png(&args.output)?;
    let id = WorkflowId(args.workflow_id);
    let source = Source::open(global)?;
    let summary = source.summary(id)?;
    let def = source.def(id)?;
    let job = match &args.job {
        Some(spec) => Some(source.resolve(id, spec, def.as_ref())?),
        None => None,
    };
    let filter = match &job {
        Some(j) => SampleFilter::Job(j.id),
        None => SampleFilter::All,
    };
    let mut samples = source.samples(id, filter)?;
    if let Some(j) = &job {
        // The node lines too, over the job's time, to show what else the node was doing.
        let (from, to) = samples.iter().fold((i64::MAX, i64::MIN), |(a, b), s| {
            (a.min(s.sample.time.0), b.max(s.sample.time.0))
        });
        let nodes = source.samples(id, SampleFilter::Nodes)?;
        samples.extend(
            nodes
                .into_iter()
                .filter(|s| (from..=to).contains(&s.sample.time.0)),
        );
        if samples.is_empty() {
            return Err(no_samples(id, Some(&j.name)));
        }
    }
    if samples.is_empty() {
        return Err(no_samples(id, None));
    }
    let names: BTreeMap<JobId, String> = match &def {
        Some(def) => def
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (JobId::from_index(i), j.name.clone()))
            .collect(),
        None => source
            .jobs(id, 0, u64::MAX)?
            .into_iter()
            .map(|j| (j.id, j.name))
            .collect(),
    };
    let name_of = |j: JobId| names.get(&j).map_or_else(String::new, |n| format!("({n})"));
    let series = series(&samples, name_of);
    register_font()?;
    let what = match &job {
        Some(j) => format!("job {} ({})", j.id, j.name),
        None => {
            let jobs = series
                .iter()
                .filter(|s| matches!(s.of, Of::Job(..)))
                .count();
            let nodes = series.len() - jobs;
            format!("{jobs} job attempt(s), {nodes} node(s)")
        }
    };
    let height = args.width * 2 / 3;
    let plot = Plot {
        title: format!("workflow {id} ({}): {what}", summary.name),
        series: &series,
        height,
    };
    let size = (args.width, height);
    let drawn = if png {
        plot.draw(BitMapBackend::new(&args.output, size).into_drawing_area())
    } else {
        plot.draw(SVGBackend::new(&args.output, size).into_drawing_area())
    };
    drawn.with_context(|| format!("cannot write {}", args.output.display()))?;
    errln!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn no_samples(id: WorkflowId, job: Option<&str>) -> anyhow::Error {
    let of = job.map_or_else(String::new, |j| format!(" of job {j}"));
    Exit {
        code: 1,
        message: format!(
            "workflow {id} has no resource samples{of}: runners record them when the spec's \
             resource_monitor has `jobs: {{enabled: true, granularity: time_series}}` (or \
             `compute_node`), every sample_interval_seconds"
        ),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use torc_core::api::ResourceSample;
    use torc_core::{RunnerId, Timestamp};

    fn sample(job: Option<u32>, t: i64, cpu: f64) -> SampleRecord {
        SampleRecord {
            id: t,
            runner: RunnerId("h:1".into()),
            sample: ResourceSample {
                job_id: job.map(JobId),
                run_id: job.map(|_| 1),
                attempt_id: job.map(|_| 1),
                time: Timestamp(t),
                cpu_percent: cpu,
                memory_bytes: 1 << 20,
                num_processes: 1,
            },
        }
    }

    #[test]
    fn samples_group_into_node_and_job_series_from_the_first_sample() {
        let samples = [
            sample(Some(2), 3000, 50.0),
            sample(None, 1000, 10.0),
            sample(Some(2), 2000, 100.0),
            sample(Some(1), 2500, 5.0),
        ];
        let got = series(&samples, |j| format!("(j{j})"));
        let summary: Vec<(String, Vec<f64>)> = got
            .iter()
            .map(|s| (s.label.clone(), s.points.iter().map(|p| p.0).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                ("node of h:1".to_string(), vec![0.0]),
                ("job 1 (j1)".to_string(), vec![1.5]),
                ("job 2 (j2)".to_string(), vec![1.0, 2.0]),
            ]
        );
        assert_eq!(memory_unit(10 << 30), ((1u64 << 30) as f64, "GiB"));
        assert_eq!(memory_unit(100 << 20), ((1u64 << 20) as f64, "MiB"));
    }
}
