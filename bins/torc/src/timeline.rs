//! `torc plot timeline`: every attempt of a run as a bar on the row of the runner slot that ran
//! it, coloured by outcome, against seconds since the run's first start; drawn with plotters
//! as SVG or PNG.
//!
//! Results record their runner but not a slot number, so slots are derived: per runner, the
//! attempts in order of start each take the lowest-numbered slot that is free by then (greedy
//! interval packing, which uses exactly as many slots as the runner ran jobs at once at most).
//!
//! Text is drawn with ab_glyph from a TrueType font found at run time (`TORC_FONT`, else the
//! usual system places), so the binary links no font library.

use crate::cli::{Global, TimelineArgs};
use crate::out::errln;
use crate::source::Source;
use crate::Exit;
use anyhow::{Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use torc_core::{JobId, JobStatus, Timestamp, WorkflowId};
use torc_store::ResultRecord;

/// One attempt on the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub job: JobId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub status: JobStatus,
}

/// One runner slot: the attempts it ran, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub runner: String,
    /// 1-based within its runner.
    pub slot: usize,
    pub bars: Vec<Bar>,
}

/// Packs `results` into runner slots: rows by runner (in order of first start), then slot.
pub fn rows(results: &[ResultRecord]) -> Vec<Row> {
    let mut by_runner: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    for r in results {
        let runner = r.runner.as_ref().map_or("unknown runner", |r| r.0.as_str());
        by_runner.entry(runner.to_string()).or_default().push(Bar {
            job: r.job_id,
            start: r.start_time,
            // A clock step backwards must not make a bar of negative length.
            end: r.end_time.max(r.start_time),
            status: r.status,
        });
    }
    let mut runners: Vec<(String, Vec<Bar>)> = by_runner.into_iter().collect();
    for (_, bars) in &mut runners {
        bars.sort_by_key(|b| (b.start, b.end, b.job));
    }
    runners.sort_by_key(|(name, bars)| (bars.first().map(|b| b.start), name.clone()));
    let mut out = Vec::new();
    for (runner, bars) in runners {
        let mut slots: Vec<Row> = Vec::new();
        for bar in bars {
            let free = slots
                .iter_mut()
                .find(|s| s.bars.last().is_some_and(|last| last.end <= bar.start));
            match free {
                Some(slot) => slot.bars.push(bar),
                None => slots.push(Row {
                    runner: runner.clone(),
                    slot: slots.len() + 1,
                    bars: vec![bar],
                }),
            }
        }
        out.extend(slots);
    }
    out
}

/// The colour of an outcome.
fn colour(status: JobStatus) -> RGBColor {
    match status {
        JobStatus::Completed => RGBColor(76, 175, 80),
        JobStatus::Failed | JobStatus::PendingFailed => RGBColor(229, 57, 53),
        JobStatus::Terminated => RGBColor(251, 140, 0),
        JobStatus::Canceled => RGBColor(255, 202, 40),
        _ => RGBColor(144, 164, 174),
    }
}

/// A TrueType font for the labels: `TORC_FONT`, else a sans-serif font in the usual places.
fn find_font() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TORC_FONT") {
        return Some(PathBuf::from(path));
    }
    const KNOWN: [&str; 8] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
    ];
    if let Some(p) = KNOWN.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    // Any TrueType font at all, a few levels down the usual roots.
    fn walk(dir: &Path, depth: u32) -> Option<PathBuf> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let is_ttf = |p: &PathBuf| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf"));
        if let Some(p) = entries.iter().find(|p| is_ttf(p) && p.is_file()) {
            return Some(p.clone());
        }
        if depth == 0 {
            return None;
        }
        entries
            .iter()
            .filter(|p| p.is_dir())
            .find_map(|p| walk(p, depth - 1))
    }
    let home_fonts = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".fonts"));
    ["/usr/share/fonts", "/usr/local/share/fonts"]
        .iter()
        .map(PathBuf::from)
        .chain(home_fonts)
        .find_map(|root| walk(&root, 3))
}

/// Registers a font for plotters' "sans-serif" family.
pub(crate) fn register_font() -> Result<()> {
    let missing = || Exit {
        code: 1,
        message: "no TrueType font found to label the plot: set TORC_FONT to a .ttf file, or \
                  install one (e.g. Debian's fonts-dejavu-core)"
            .into(),
    };
    let path = find_font().ok_or_else(missing)?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("cannot read the font {}", path.display()))?;
    // plotters keeps fonts for the life of the process; so does this one-shot command.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| Exit {
        code: 1,
        message: format!("{} is not a TrueType font this can read", path.display()),
    })?;
    Ok(())
}

/// What is drawn.
pub struct Plot<'a> {
    pub title: String,
    pub rows: &'a [Row],
    pub width: u32,
}

impl Plot<'_> {
    fn height(&self) -> u32 {
        let per_row = (1600 / self.rows.len().max(1) as u32).clamp(4, 26);
        (130 + per_row * self.rows.len() as u32).max(260)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("cannot draw: {e}");
        root.fill(&WHITE).map_err(err)?;
        let first = self
            .rows
            .iter()
            .filter_map(|r| r.bars.first().map(|b| b.start))
            .min()
            .unwrap_or_default();
        let last = self
            .rows
            .iter()
            .flat_map(|r| r.bars.iter().map(|b| b.end))
            .max()
            .unwrap_or_default();
        let secs = |t: Timestamp| (t.0 - first.0) as f64 / 1000.0;
        let span = secs(last).max(0.001);
        let n = self.rows.len();
        let label_every = n.div_ceil(40).max(1);
        let labels: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{} · slot {}", short_runner(&r.runner), r.slot))
            .collect();
        let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size((widest * 7 + 16).min(self.width / 3))
            // A segmented 0..=k has k + 1 rows.
            .build_cartesian_2d(
                0f64..span * 1.01,
                (0..(n as u32).saturating_sub(1)).into_segmented(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .max_light_lines(1)
            .x_desc("seconds since the first start")
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if (*i as usize).checked_rem(label_every) == Some(0) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        // Row height in pixels, to leave a gap between rows that are tall enough for one.
        let (area_w, area_h) = chart.plotting_area().dim_in_pixel();
        let px_per_sec = f64::from(area_w) / (span * 1.01);
        let gap = if area_h / (n.max(1) as u32) >= 8 {
            2
        } else {
            0
        };
        let mut by_status: BTreeMap<JobStatus, Vec<(usize, Bar)>> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            for bar in &row.bars {
                by_status.entry(bar.status).or_default().push((i, *bar));
            }
        }
        let rect = |i: usize, b: &Bar, style: ShapeStyle| {
            let mut r = Rectangle::new(
                [
                    (secs(b.start), SegmentValue::Exact(i as u32)),
                    (secs(b.end), SegmentValue::Exact(i as u32 + 1)),
                ],
                style,
            );
            r.set_margin(gap, gap, 0, 0);
            r
        };
        for (status, bars) in by_status {
            let count = bars.len();
            let fill = colour(status);
            // A darker outline tells apart attempts that follow each other on a slot, for bars
            // wide enough that it does not hide their colour.
            let edge = RGBColor(fill.0 / 2, fill.1 / 2, fill.2 / 2);
            chart
                .draw_series(bars.iter().map(|(i, b)| rect(*i, b, fill.filled())))
                .map_err(err)?
                .label(format!("{status} ({count})"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], fill.filled()));
            chart
                .draw_series(
                    bars.iter()
                        .filter(|(_, b)| secs(b.end) - secs(b.start) >= 4.0 / px_per_sec)
                        .map(|(i, b)| rect(*i, b, edge.stroke_width(1))),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

/// A runner's name without a long host domain (`node12.cluster.example:4242` → `node12:4242`).
fn short_runner(r: &str) -> String {
    match r.split_once(':') {
        Some((host, rest)) => {
            format!("{}:{rest}", host.split('.').next().unwrap_or(host))
        }
        None => r.to_string(),
    }
}

/// Whether a picture goes to PNG (else SVG), from the file's extension; any other is bad input.
pub(crate) fn is_png(output: &Path) -> Result<bool> {
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(true),
        Some("svg") => Ok(false),
        _ => Err(Exit {
            code: 2,
            message: format!("-o {}: the file must end in .svg or .png", output.display()),
        }
        .into()),
    }
}

/// `torc plot timeline`.
pub fn timeline(global: &Global, args: &TimelineArgs) -> Result<ExitCode> {
    let png = is_png(&args.output)?;
    let id = WorkflowId(args.workflow_id);
    let source = Source::open(global)?;
    let summary = source.summary(id)?;
    let run = args.run.unwrap_or(summary.run_id);
    let results: Vec<ResultRecord> = source
        .results(id, None)?
        .into_iter()
        .filter(|r| r.run_id == run)
        .collect();
    if results.is_empty() {
        return Err(Exit {
            code: 1,
            message: format!("workflow {id} has no results in run {run}: nothing to plot yet"),
        }
        .into());
    }
    let rows = rows(&results);
    let runners = {
        let mut r: Vec<&str> = rows.iter().map(|r| r.runner.as_str()).collect();
        r.dedup();
        r.len()
    };
    register_font()?;
    let plot = Plot {
        title: format!(
            "workflow {id} ({}), run {run}: {} attempts on {runners} runner(s), {} slot(s)",
            summary.name,
            results.len(),
            rows.len()
        ),
        rows: &rows,
        width: args.width,
    };
    let size = (args.width, plot.height());
    let drawn = if png {
        plot.draw(BitMapBackend::new(&args.output, size).into_drawing_area())
    } else {
        plot.draw(SVGBackend::new(&args.output, size).into_drawing_area())
    };
    drawn.with_context(|| format!("cannot write {}", args.output.display()))?;
    errln!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use torc_core::RunnerId;

    fn result(job: u32, runner: &str, start: i64, end: i64) -> ResultRecord {
        ResultRecord {
            id: i64::from(job),
            job_id: JobId(job),
            run_id: 1,
            attempt_id: 1,
            runner: Some(RunnerId(runner.into())),
            return_code: 0,
            status: JobStatus::Completed,
            start_time: Timestamp(start),
            end_time: Timestamp(end),
            exec_time_secs: (end - start) as f64 / 1000.0,
            peak_memory_bytes: None,
            avg_memory_bytes: None,
            peak_cpu_percent: None,
            avg_cpu_percent: None,
            end_reason: None,
            message: None,
        }
    }

    fn layout(rows: &[Row]) -> Vec<(String, usize, Vec<u32>)> {
        rows.iter()
            .map(|r| {
                let jobs = r.bars.iter().map(|b| b.job.0).collect();
                (r.runner.clone(), r.slot, jobs)
            })
            .collect()
    }

    #[test]
    fn attempts_take_the_lowest_free_slot_of_their_runner() {
        let results = [
            result(1, "a:1", 0, 100),
            result(2, "a:1", 0, 50),
            result(3, "a:1", 50, 120), // job 2 (slot 1, shorter) is done at 50
            result(4, "a:1", 100, 130), // job 1 (slot 2) is done at 100
            result(5, "a:1", 110, 140), // both busy: a third slot
            result(6, "b:2", 10, 20),
        ];
        assert_eq!(
            layout(&rows(&results)),
            [
                ("a:1".to_string(), 1, vec![2, 3]),
                ("a:1".to_string(), 2, vec![1, 4]),
                ("a:1".to_string(), 3, vec![5]),
                ("b:2".to_string(), 1, vec![6]),
            ]
        );
    }

    #[test]
    fn runner_names_drop_the_domain() {
        assert_eq!(short_runner("node12.cluster.example:4242"), "node12:4242");
        assert_eq!(short_runner("vm:1"), "vm:1");
        assert_eq!(short_runner("unknown runner"), "unknown runner");
    }
}
