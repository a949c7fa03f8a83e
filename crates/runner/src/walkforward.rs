//! Walk-forward optimization over a pool: the chosen search on each fold's train sessions, its
//! best tested on the fold's test sessions (design-notes section 9). The folds themselves come
//! from `overfitting::segments`; the CLI and bench-driver both run them through here.

use std::ops::Range;
use std::sync::Arc;

use engine::{Configured, DynStrategy, Metrics, ParamValues, RunOptions, StrategyId};
use optimize::{Config, SearchSpec, Space, TrialStore};

use crate::{Engine, Error, PoolEvaluator, params_of, worker::BacktestWorker};

/// What every fold shares.
pub struct WalkForward<'a> {
    /// The strategy, registered as `id` in the pool's registry.
    pub strategy: Arc<dyn DynStrategy>,
    /// Its id in the pool's registry.
    pub id: StrategyId,
    /// Defaults and fixed parameters of every trial.
    pub base: ParamValues,
    /// The space searched in every fold.
    pub space: &'a Space,
    /// The search run in every fold (a fresh searcher per fold).
    pub spec: &'a SearchSpec,
    /// Async or deterministic.
    pub options: optimize::SearchOptions,
    /// Fee rate.
    pub fee: f64,
    /// What a budget below 1 means.
    pub fidelity: engine::Fidelity,
}

/// One fold's outcome.
#[derive(Debug, Clone)]
pub struct FoldOutcome {
    /// Train sessions (absolute session indices of the bundle).
    pub train: Range<usize>,
    /// Test sessions.
    pub test: Range<usize>,
    /// The search's best config on the train sessions.
    pub best: Config,
    /// Its sharpe over the train sessions (−loss of the search's best).
    pub train_sharpe: f64,
    /// The best's backtest over the test sessions: what `btopt backtest` gives for them.
    pub test_metrics: Metrics,
    /// Its equity curve over the test sessions.
    pub test_equity: Vec<f64>,
    /// The best's equity curve over the train sessions.
    pub train_equity: Vec<f64>,
}

impl WalkForward<'_> {
    /// Runs fold `(train, test)` on `pool`, recording its search in `store`, and tests the
    /// best with `engine` (the parent's own, so the pool's workers keep their caches).
    pub fn fold(
        &self,
        pool: &mut pool::Pool<BacktestWorker>,
        engine: &mut Engine,
        store: &mut dyn TrialStore,
        train: Range<usize>,
        test: Range<usize>,
    ) -> Result<FoldOutcome, Error> {
        let mut searcher = self.spec.build(self.space).map_err(|e| Error::Space(e.to_string()))?;
        let mut evaluator =
            PoolEvaluator::new(pool, self.strategy.clone(), self.id, self.base, Some(train.clone()), self.fee)
                .with_fidelity(self.fidelity);
        let summary = optimize::optimize(self.space, &mut *searcher, &mut evaluator, store, self.options, &mut ())
            .map_err(|e| Error::Search(e.to_string()))?;
        let best = summary.best.ok_or_else(|| Error::Search("every trial failed, there is no best".into()))?;
        let configured = Configured::new(self.strategy.clone(), params_of(&*self.strategy, &self.base, &best.config)?)?;
        let mut run = |sessions: Range<usize>| -> Result<(Metrics, Vec<f64>), Error> {
            let opts = RunOptions::new_checked(1.0, Some(sessions), self.fee)?;
            let mut equity = Vec::new();
            let m = engine.run_with_equity(&configured, &opts, &mut equity)?;
            Ok((m, equity))
        };
        let (test_metrics, test_equity) = run(test.clone())?;
        let (_, train_equity) = run(train.clone())?;
        Ok(FoldOutcome {
            train,
            test,
            best: best.config,
            train_sharpe: -best.loss,
            test_metrics,
            test_equity,
            train_equity,
        })
    }
}

/// Equity curves run one after another, each starting from 1: their per-bar returns
/// concatenated (each curve's first return against 1) and compounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Stitched {
    /// The compounded equity after each bar.
    pub equity: Vec<f64>,
    /// mean/std(ddof 1) of the returns, annualised with `periods_per_year`; 0 without spread.
    pub sharpe: f64,
    /// Last equity − 1.
    pub total_return: f64,
    /// min over bars of equity / max(1, peak so far) − 1.
    pub max_drawdown: f64,
}

/// See [`Stitched`].
pub fn stitch<'e>(curves: impl Iterator<Item = &'e [f64]>, periods_per_year: f64) -> Stitched {
    let mut returns = Vec::new();
    for curve in curves {
        let mut prev = 1.0;
        for &e in curve {
            returns.push(e / prev - 1.0);
            prev = e;
        }
    }
    let (mut equity, mut e, mut peak, mut dd) = (Vec::with_capacity(returns.len()), 1.0_f64, 1.0_f64, 0.0_f64);
    for r in &returns {
        e *= 1.0 + r;
        peak = peak.max(e);
        dd = dd.min(e / peak - 1.0);
        equity.push(e);
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
    let sharpe = if returns.len() < 2 || var <= 0.0 { 0.0 } else { mean / var.sqrt() * periods_per_year.sqrt() };
    Stitched { equity, sharpe, total_return: e - 1.0, max_drawdown: dd }
}

/// Walk-forward efficiency: mean test sharpe / mean train-best sharpe.
pub fn efficiency(folds: &[FoldOutcome]) -> f64 {
    let n = folds.len() as f64;
    let test = folds.iter().map(|f| f.test_metrics.sharpe).sum::<f64>() / n;
    let train = folds.iter().map(|f| f.train_sharpe).sum::<f64>() / n;
    test / train
}
