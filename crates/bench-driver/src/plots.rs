//! SVG plots of the evaluation: speed-up per scenario with CI error bars, memory per backend,
//! and BOHB convergence against other searchers with a band over seeds.
//!
//! Plotters draws through its SVG backend only, with no font features: text goes out as SVG
//! `<text>` elements that the viewer renders, and plotters sizes the layout with a built-in
//! estimate. So the plots need no system library, font file or fontconfig, on any machine.

use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{MemorySample, Report};

/// Plot size in pixels.
const SIZE: (u32, u32) = (960, 540);

/// Maps any plotters error to an I/O error: the SVG backend's only real failure is writing the
/// file, and callers handle every write the same way.
fn err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("plotting failed: {e}"))
}

/// A distinct colour for series `i` (Tableau 10, readable on white and by most colour-blind
/// readers).
fn palette(i: usize) -> RGBColor {
    const TABLEAU: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TABLEAU[i % TABLEAU.len()];
    RGBColor(r, g, b)
}

/// Width in pixels of a label area that fits the longest of `labels` (the naive font estimate
/// is ~0.6 em per character; 14 px text).
fn label_width(labels: impl Iterator<Item = usize>) -> u32 {
    let longest = labels.max().unwrap_or(4) as u32;
    (longest * 8 + 16).clamp(40, 360)
}

/// `lo..hi` padded by 5% on each side (and widened when empty), so that nothing touches the
/// frame.
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, hi + 1.0) };
    let pad = (hi - lo) * 0.05;
    (lo - pad)..(hi + pad)
}

/// Starts an SVG drawing area at `path`, white.
fn canvas(path: &Path) -> io::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// One bar of the speed-up plot.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedupBar {
    /// Scenario name.
    pub name: String,
    /// Speed-up in percent.
    pub pct: f64,
    /// 95% CI of the speed-up, `[lo, hi]`.
    pub ci95: [f64; 2],
    /// Whether the step was accepted (green) or rejected (grey).
    pub accepted: bool,
}

/// The bar's segment on a segmented axis of `n` categories: `i` runs from `Exact(i)` to the
/// next category, or to the axis end for the last.
fn segment(i: usize, n: usize) -> (SegmentValue<i32>, SegmentValue<i32>) {
    let end = if i + 1 < n { SegmentValue::Exact(i as i32 + 1) } else { SegmentValue::Last };
    (SegmentValue::Exact(i as i32), end)
}

/// Horizontal bars of the speed-up % per scenario, with 95% CI error bars, a zero line and
/// the 5% acceptance threshold. Scenarios are listed top to bottom in the given order.
pub fn speedup_chart(bars: &[SpeedupBar], path: &Path) -> io::Result<()> {
    let root = canvas(path)?;
    let n = bars.len().max(1);
    let finite = |v: f64| v.is_finite().then_some(v);
    let values = bars.iter().flat_map(|b| [finite(b.pct), finite(b.ci95[0]), finite(b.ci95[1])]).flatten();
    let (lo, hi) = values
        .chain([0.0, crate::decide::MIN_SPEEDUP_PCT])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Plotters puts index 0 at the bottom; reversing keeps the report's order from the top.
    let row = |i: usize| n - 1 - i;
    let names: Vec<&str> = bars.iter().map(|b| b.name.as_str()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Speed-up vs baseline (95% CI)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(label_width(names.iter().map(|s| s.len())))
        .build_cartesian_2d(padded(lo, hi), (0..n as i32 - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(n - 1 - *i as usize).map_or_else(String::new, |s| (*s).to_owned())
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("speed-up % = (baseline mean / candidate mean - 1) x 100")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;

    let accepted = RGBColor(44, 160, 44);
    let rejected = RGBColor(160, 160, 160);
    for (i, b) in bars.iter().enumerate() {
        if !b.pct.is_finite() {
            // Not timed (not equivalent): say so rather than leave a silent gap.
            let at = (0.0, SegmentValue::CenterOf(row(i) as i32));
            let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(std::iter::once(Text::new(" not timed", at, style))).map_err(err)?;
            continue;
        }
        let (y0, y1) = segment(row(i), n);
        let colour = if b.accepted { accepted } else { rejected };
        let mut bar = Rectangle::new([(0.0, y0), (b.pct, y1)], colour.mix(0.8).filled());
        bar.set_margin(6, 6, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        if b.ci95.iter().all(|v| v.is_finite()) {
            let y = SegmentValue::CenterOf(row(i) as i32);
            let ends = [b.ci95[0], b.ci95[1]];
            let whisker = PathElement::new(vec![(ends[0], y.clone()), (ends[1], y.clone())], BLACK.stroke_width(2));
            chart.draw_series(std::iter::once(whisker)).map_err(err)?;
            // Caps: short vertical ticks at both ends, drawn in pixels so they do not depend
            // on the category height.
            for x in ends {
                let cap =
                    EmptyElement::at((x, y.clone())) + PathElement::new(vec![(0, -6), (0, 6)], BLACK.stroke_width(2));
                chart.draw_series(std::iter::once(cap)).map_err(err)?;
            }
        }
    }
    let (top, bottom) = (SegmentValue::Exact(0), SegmentValue::Last);
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, top.clone()), (0.0, bottom.clone())], BLACK)))
        .map_err(err)?;
    let t = crate::decide::MIN_SPEEDUP_PCT;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(t, top), (t, bottom)], RED.stroke_width(1))))
        .map_err(err)?
        .label(format!("{t}% acceptance threshold"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    chart
        .draw_series(std::iter::empty::<Rectangle<(f64, SegmentValue<i32>)>>())
        .map_err(err)?
        .label("ACCEPT")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], accepted.filled()));
    chart
        .draw_series(std::iter::empty::<Rectangle<(f64, SegmentValue<i32>)>>())
        .map_err(err)?
        .label("REJECT")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], rejected.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Grouped horizontal bars of the sum of PSS per backend (arm), one bar per worker count, with
/// the sum of RSS as an outline behind each bar to show how much RSS double-counts shared
/// pages. Backends are listed in order of first appearance in `samples`.
pub fn memory_chart(samples: &[MemorySample], path: &Path) -> io::Result<()> {
    let root = canvas(path)?;
    let mut arms: Vec<&str> = Vec::new();
    let mut workers: Vec<usize> = Vec::new();
    for s in samples {
        if !arms.contains(&s.arm.as_str()) {
            arms.push(&s.arm);
        }
        if !workers.contains(&s.workers) {
            workers.push(s.workers);
        }
    }
    workers.sort_unstable();
    let n = arms.len().max(1);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let hi = samples.iter().map(|s| mib(s.pss_sum_bytes).max(mib(s.rss_sum_bytes))).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Memory per backend: sum of PSS (bars) and of RSS (outlines)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(label_width(arms.iter().map(|a| a.len())))
        // The extra 30% on the right leaves room for the legend beside the longest bar.
        .build_cartesian_2d(0.0..hi * 1.3, (0..n as i32 - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                arms.get(n - 1 - *i as usize).map_or_else(String::new, |s| (*s).to_owned())
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("MiB, summed over the pool's processes")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;

    // Each category is split into one sub-bar per worker count; the pixel margins below place
    // sub-bar k in the k-th slice of the category's height.
    let plot_height = chart.plotting_area().dim_in_pixel().1;
    let band = plot_height / n as u32;
    let slice = (band.saturating_sub(8)) / workers.len().max(1) as u32;
    for (k, &w) in workers.iter().enumerate() {
        let colour = palette(k);
        let mut pss_bars = Vec::new();
        let mut rss_bars = Vec::new();
        for s in samples.iter().filter(|s| s.workers == w) {
            let i = arms.iter().position(|a| *a == s.arm).expect("collected above");
            let (y0, y1) = segment(n - 1 - i, n);
            // Top margin skips the slices above this one; bottom margin those below.
            let top = 4 + slice * k as u32;
            let bottom = band.saturating_sub(top + slice);
            let mut pss = Rectangle::new([(0.0, y0.clone()), (mib(s.pss_sum_bytes), y1.clone())], colour.filled());
            pss.set_margin(top + 1, bottom + 1, 0, 0);
            let mut rss = Rectangle::new([(0.0, y0), (mib(s.rss_sum_bytes), y1)], colour.stroke_width(1));
            rss.set_margin(top + 1, bottom + 1, 0, 0);
            pss_bars.push(pss);
            rss_bars.push(rss);
        }
        chart.draw_series(rss_bars).map_err(err)?;
        chart
            .draw_series(pss_bars)
            .map_err(err)?
            .label(format!("{w} workers"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// One searcher's convergence traces, one per seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceSeries {
    /// Searcher name (BOHB, Hyperband, random...).
    pub searcher: String,
    /// Per seed, the evaluations in order as `(cumulative budget, loss)`: the budget spent so
    /// far including this evaluation (in full-fidelity units) and the loss it returned.
    pub seeds: Vec<Vec<(f64, f64)>>,
}

/// The band of one searcher over its seeds at each budget of a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Budgets at which the band is defined (where every seed has at least one evaluation).
    pub budget: Vec<f64>,
    /// Median over seeds of the best loss so far.
    pub median: Vec<f64>,
    /// Minimum over seeds.
    pub min: Vec<f64>,
    /// Maximum over seeds.
    pub max: Vec<f64>,
}

/// Best loss so far of one trace at budget `b`, or `None` before its first evaluation.
fn best_at(trace: &[(f64, f64)], b: f64) -> Option<f64> {
    trace.iter().take_while(|(spent, _)| *spent <= b).map(|(_, loss)| *loss).filter(|l| !l.is_nan()).reduce(f64::min)
}

/// Median of a non-empty slice.
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 { xs[m] } else { (xs[m - 1] + xs[m]) / 2.0 }
}

/// The median and min–max band over seeds of the best loss so far, on `points` budgets evenly
/// spaced from the latest first evaluation of any seed (before it, not every seed has a value
/// and the band would mix populations) to the largest budget spent.
///
/// A searcher's traces advance at different budgets per seed, so each trace is read as a step
/// function (best loss so far) at common budgets.
pub fn band(series: &ConvergenceSeries, points: usize) -> Band {
    let traces: Vec<&[(f64, f64)]> = series.seeds.iter().map(Vec::as_slice).filter(|t| !t.is_empty()).collect();
    let start = traces.iter().map(|t| t[0].0).fold(f64::NEG_INFINITY, f64::max);
    let end = traces.iter().flat_map(|t| t.last()).map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let mut out = Band { budget: Vec::new(), median: Vec::new(), min: Vec::new(), max: Vec::new() };
    if traces.is_empty() || !start.is_finite() || !end.is_finite() {
        return out;
    }
    let points = points.max(2);
    for k in 0..points {
        let b = if end > start { start + (end - start) * k as f64 / (points - 1) as f64 } else { start };
        let mut at: Vec<f64> = traces.iter().filter_map(|t| best_at(t, b)).collect();
        if at.len() != traces.len() {
            continue;
        }
        out.budget.push(b);
        out.min.push(at.iter().copied().fold(f64::INFINITY, f64::min));
        out.max.push(at.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        out.median.push(median(&mut at));
    }
    out
}

/// Best loss so far against cumulative budget for several searchers: for each, the median over
/// seeds as a line and the min–max over seeds as a translucent band. `title` names the space
/// (e.g. "bohb-5m: momentum space, 100 assets").
pub fn convergence_chart(series: &[ConvergenceSeries], title: &str, path: &Path) -> io::Result<()> {
    let root = canvas(path)?;
    let bands: Vec<Band> = series.iter().map(|s| band(s, 200)).collect();
    let xs = bands.iter().flat_map(|b| b.budget.iter().copied());
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let ys = bands.iter().flat_map(|b| b.min.iter().chain(&b.max).copied());
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (x0, x1) = if x0.is_finite() { (x0.min(0.0), x1) } else { (0.0, 1.0) };
    let (y0, y1) = if y0.is_finite() { (y0, y1) } else { (0.0, 1.0) };
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Convergence: {title}"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("cumulative budget (full-fidelity evaluations)")
        .y_desc("best loss so far")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, (s, b)) in series.iter().zip(&bands).enumerate() {
        let colour = palette(i);
        if b.budget.is_empty() {
            continue;
        }
        let outline: Vec<(f64, f64)> = b
            .budget
            .iter()
            .zip(&b.max)
            .map(|(x, y)| (*x, *y))
            .chain(b.budget.iter().zip(&b.min).rev().map(|(x, y)| (*x, *y)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.18).filled()))).map_err(err)?;
        let line = b.budget.iter().copied().zip(b.median.iter().copied());
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (median, min-max over {} seeds)", s.searcher, s.seeds.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// The speed-up bars of a report's scenarios, in order; untimed scenarios get a NaN bar, which
/// [`speedup_chart`] labels "not timed".
pub fn speedup_bars(report: &Report) -> Vec<SpeedupBar> {
    report
        .scenarios
        .iter()
        .map(|s| SpeedupBar {
            name: s.name.clone(),
            pct: s.speedup_pct.unwrap_or(f64::NAN),
            ci95: s.speedup_ci95.unwrap_or([f64::NAN; 2]),
            accepted: s.decision == crate::decide::Decision::Accept,
        })
        .collect()
}

/// Every memory sample of a report's scenarios, once per (arm, workers): scenarios that share
/// a baseline each carry its samples, and the plot needs them once.
pub fn memory_samples(report: &Report) -> Vec<MemorySample> {
    let mut out: Vec<MemorySample> = Vec::new();
    for m in report.scenarios.iter().filter_map(|s| s.memory.as_ref()) {
        for s in &m.samples {
            if !out.iter().any(|o| o.arm == s.arm && o.workers == s.workers) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// One convergence plot: a title (the scenario and space) and its searchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Convergence {
    /// File stem, e.g. `convergence-bohb-5m` (written as `<stem>.svg`).
    pub stem: String,
    /// Title after "Convergence: ".
    pub title: String,
    /// One series per searcher.
    pub series: Vec<ConvergenceSeries>,
}

/// Writes every plot of a report into `dir`: `speedup.svg`, `memory.svg` when any scenario
/// measured memory, and one `<stem>.svg` per convergence plot. Returns the paths written.
pub fn write_all(report: &Report, convergence: &[Convergence], dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let path = dir.join("speedup.svg");
    speedup_chart(&speedup_bars(report), &path)?;
    written.push(path);
    let memory = memory_samples(report);
    if !memory.is_empty() {
        let path = dir.join("memory.svg");
        memory_chart(&memory, &path)?;
        written.push(path);
    }
    for c in convergence {
        let path = dir.join(format!("{}.svg", c.stem));
        convergence_chart(&c.series, &c.title, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Low- against high-budget losses of the configs a bracket search evaluated at both of two
/// successive budgets: does the cheap evaluation rank configs as the expensive one does?
#[derive(Debug, Clone, PartialEq)]
pub struct FidelityScatter {
    /// File stem, e.g. `fidelity-bohb-5m` (written as `<stem>.svg`).
    pub stem: String,
    /// Title after "Fidelity: ".
    pub title: String,
    /// One series per (fidelity, budget pair), e.g. "recent 1/9 → 1/3, ρ 0.41", with its
    /// `(low-budget loss, high-budget loss)` points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Draws a [`FidelityScatter`] as an SVG at `path`.
pub fn fidelity_chart(scatter: &FidelityScatter, path: &Path) -> io::Result<()> {
    let root = canvas(path)?;
    let all =
        scatter.series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Fidelity: {}", scatter.title), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("loss at the lower budget")
        .y_desc("loss at the next budget up")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in scatter.series.iter().enumerate() {
        let colour = palette(i);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|&(x, y)| Circle::new((x, y), 3, colour.mix(0.6).filled())),
            )
            .map_err(err)?
            .label(format!("{label} ({} configs)", points.len()))
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
