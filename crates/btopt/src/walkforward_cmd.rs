//! `btopt walkforward`: the chosen search on each fold's train segment, its best tested on the
//! next segment, and the stitched out-of-sample result (design-notes section 9).
//!
//! One pool serves every fold. With `--store FILE`, fold `i` keeps its study in its own file
//! (`FILE` with `-fold{i}` before the extension), so a killed walk-forward resumes fold by fold:
//! finished folds replay from their stores without evaluating anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::optimize_cmd::{OptimizeArgs, Prepared};

/// `btopt walkforward` arguments: optimize's, plus the folds.
#[derive(Args, Debug)]
pub(crate) struct WalkforwardArgs {
    #[command(flatten)]
    pub(crate) search: OptimizeArgs,
    /// Number of folds K: the range is cut into K+1 equal segments (the remainder goes to the
    /// first); fold i trains on segment i and tests on segment i+1.
    #[arg(long)]
    pub(crate) folds: usize,
    /// Train fold i on segments 0..=i instead of segment i alone.
    #[arg(long)]
    pub(crate) anchored: bool,
    /// Write an SVG of the stitched out-of-sample equity against the in-sample bests' equity.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
}

pub(crate) fn run(w: &WalkforwardArgs, strategies: &Arc<engine::Registry>) -> Result<()> {
    let a = &w.search;
    let prep = Prepared::new(a, strategies)?;
    if matches!(prep.location, Some(store::Location::Postgres(_))) {
        return Err(crate::usage("walkforward keeps its folds in SQLite files: use --store FILE"));
    }
    if w.folds < 1 {
        return Err(crate::usage("invalid --folds 0: a walk-forward needs at least 1 fold"));
    }
    let strategy = prep.base.strategy().clone();
    let warmup = runner::max_warmup(&*strategy, prep.base.values(), &prep.space)
        .map_err(|e| crate::usage(format!("{}: {e}", a.space.display())))?;
    let bundle = Arc::new(bundle::Bundle::load(&a.bundle).context("failed to load the bundle")?);
    crate::backtest_cmd::check_frequency(&*strategy, bundle.frequency())?;
    let range = runner::session_range(&bundle, a.range.start, a.range.end)?;
    let folds = overfitting::segments(range.len(), w.folds, w.anchored, warmup).map_err(|e| {
        crate::usage(format!("invalid --folds {}: {e} (the space's longest indicator needs {warmup})", w.folds))
    })?;
    // The pool forks here, while this process is still single-threaded; it serves every fold.
    let mut pool = prep.pool(a, &bundle, strategies)?;
    let mut engine = runner::Engine::new(bundle.clone()).context("bundle is unusable for backtests")?;
    let wf = runner::walkforward::WalkForward {
        strategy: strategy.clone(),
        id: strategies.id_of(strategy.name())?,
        base: *prep.base.values(),
        space: &prep.space,
        spec: &prep.spec,
        options: optimize::SearchOptions { deterministic: a.deterministic, reuse_results: false, streaming: false },
        fee: a.range.fee,
        fidelity: a.fidelity.parse().map_err(|e| crate::usage(format!("{e}")))?,
    };
    let mut results = Vec::with_capacity(folds.len());
    for (i, fold) in folds.iter().enumerate() {
        let train = range.start + fold.train.start..range.start + fold.train.end;
        let test = range.start + fold.test.start..range.start + fold.test.end;
        let mut store: Box<dyn optimize::TrialStore> = match &prep.location {
            Some(store::Location::Sqlite(path)) => Box::new(
                store::SqliteStore::open(&fold_store(path, i))
                    .with_context(|| format!("failed to open the trial store of fold {i}"))?,
            ),
            Some(store::Location::Postgres(_)) => unreachable!("refused before any work"),
            None => Box::new(optimize::MemoryStore::new()),
        };
        let outcome =
            wf.fold(&mut pool, &mut engine, &mut *store, train, test).with_context(|| format!("fold {i} failed"))?;
        results.push(outcome);
    }

    let sessions = bundle.sessions();
    let day = |s: usize| sessions[s].format("%Y-%m-%d").to_string();
    let periods = bundle.frequency().periods_per_year();
    let oos = runner::walkforward::stitch(results.iter().map(|r| r.test_equity.as_slice()), periods);
    let efficiency = runner::walkforward::efficiency(&results);
    let oos_sessions: usize = results.iter().map(|r| r.test.len()).sum();
    if let Some(path) = &w.plot {
        let is = runner::walkforward::stitch(results.iter().map(|r| r.train_equity.as_slice()), periods);
        plot(&oos.equity, &is.equity, path).with_context(|| format!("failed to write {}", path.display()))?;
    }
    if a.json {
        let folds: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "train_start": day(r.train.start), "train_end": day(r.train.end - 1),
                    "test_start": day(r.test.start), "test_end": day(r.test.end - 1),
                    "best": {"params": optimize::config_to_json(&r.best), "sharpe": r.train_sharpe},
                    "test_sharpe": r.test_metrics.sharpe, "test_total_return": r.test_metrics.total_return,
                })
            })
            .collect();
        let v = json!({
            "folds": folds,
            "out_of_sample": {
                "sharpe": oos.sharpe, "total_return": oos.total_return, "max_drawdown": oos.max_drawdown,
                "sessions": oos_sessions,
            },
            "efficiency": efficiency,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        for (i, r) in results.iter().enumerate() {
            let params: Vec<String> = optimize::render_pairs(&r.best).iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "fold {i}  train {}..{}  test {}..{}  best {}  train sharpe {:.4}  test sharpe {:.4}",
                day(r.train.start),
                day(r.train.end - 1),
                day(r.test.start),
                day(r.test.end - 1),
                params.join(" "),
                r.train_sharpe,
                r.test_metrics.sharpe
            );
        }
        println!(
            "out of sample  sharpe {:.4}  total_return {:.4}  max_drawdown {:.4}  sessions {oos_sessions}",
            oos.sharpe, oos.total_return, oos.max_drawdown
        );
        println!("efficiency     {efficiency:.4} (mean test sharpe / mean train-best sharpe)");
    }
    Ok(())
}

/// `study.sqlite` → `study-fold2.sqlite`.
fn fold_store(path: &Path, fold: usize) -> PathBuf {
    let stem = path.file_stem().map_or_else(|| "study".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-fold{fold}.{}", ext.to_string_lossy()),
        None => format!("{stem}-fold{fold}"),
    };
    path.with_file_name(name)
}

fn plot(oos: &[f64], is: &[f64], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = oos.len().max(is.len()).max(2);
    let (lo, hi) = oos.iter().chain(is).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption("walk-forward: stitched equity", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0..n, (lo - pad)..(hi + pad))?;
    chart.configure_mesh().x_desc("bar of the stitched segments").y_desc("equity").draw()?;
    for (curve, label, color) in
        [(oos, "out of sample (fold tests)", BLUE), (is, "in sample (fold bests on train)", RED)]
    {
        chart
            .draw_series(LineSeries::new(curve.iter().enumerate().map(|(i, &e)| (i, e)), color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}
