//! The glue between btopt's crates: backtests over a loaded bundle.
//!
//! This is the one crate that knows both the bundle and the engine (and, through its pool and
//! optimizer adapters, the process pool and the searchers). It keeps those crates ignorant of
//! each other:
//!
//! - [`market_of`] views a loaded [`bundle::Bundle`] as an [`engine::Market`];
//! - [`Engine`] owns a bundle (through `Arc`) together with a per-worker
//!   [`engine::Backtester`], so a worker keeps its SMA cache for its whole life;
//! - [`BacktestTask`] is the unit of work that crosses the process boundary: a strategy id
//!   and its typed, checked [`engine::ParamValues`], never text to parse again;
//! - [`BacktestWorker`] runs [`Job`]s in a [`pool::Pool`], and [`build_pool`] builds one on any
//!   backend ([`PoolKind`]), with the bundle inherited, reopened, loaded or mapped;
//! - [`tables_for`] computes the SMA columns or momentum tables a whole search reads once,
//!   before the pool, so that [`build_pool_with`] gives every forked or thread worker one
//!   shared copy ([`SharedTables`]) instead of a private cache each;
//! - [`PoolEvaluator`] is the optimizer's [`optimize::Evaluator`] over such a pool;
//! - [`check_space`] and [`params_of`] hold a space and its configs against a strategy's
//!   parameter table, so that a typo is refused before any work starts.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bundle = std::sync::Arc::new(bundle::Bundle::load("data/mag7-daily".as_ref())?);
//! let mut engine = runner::Engine::new(bundle)?;
//! let strategy = engine::Registry::builtin().configure("ma-crossover", &[])?;
//! let metrics = engine.run(&strategy, &engine::RunOptions::default())?;
//! # let _ = metrics; Ok(()) }
//! ```

mod evaluator;
mod params;
mod tables;
pub mod walkforward;
mod worker;

pub use evaluator::{PoolEvaluator, TrialSample, metrics_map};
pub use params::{check_space, listing, max_warmup, params_of};
pub use tables::{
    DEFAULT_TABLES_BYTES, SharedTables, TABLES_ENV, momentum_lookbacks, shared_tables, shortfall, sma_windows,
    tables_budget, tables_for, tables_of,
};
pub use worker::{
    BacktestWorker, HandleMode, Job, JobOutput, PoolKind, SpawnInit, SpawnLoad, build_pool, build_pool_with,
    worker_main_if_requested,
};

use std::ops::Range;
use std::sync::Arc;

use bundle::{Bundle, Field};
use chrono::NaiveDate;
use engine::{AssetSeries, Backtester, Configured, Market, Metrics, ParamValues, Registry, RunOptions, StrategyId};
use serde::{Deserialize, Serialize};

/// Errors of the glue layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused the market, the strategy or the options.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A date range that selects no session of the bundle.
    #[error("{0}")]
    Range(String),
    /// The bundle could not be read or mapped.
    #[error(transparent)]
    Bundle(#[from] bundle::Error),
    /// The pool could not be built.
    #[error(transparent)]
    Pool(#[from] pool::Error),
    /// A space or config does not fit the strategy's parameter table.
    #[error("{0}")]
    Space(String),
    /// What this platform cannot do (the fork backends off unix).
    #[error("{0}")]
    Unsupported(String),
    /// A search failed or found nothing.
    #[error("{0}")]
    Search(String),
}

/// The bundle's adjusted opens, highs, lows and closes as the engine's market view (borrowed
/// columns, no copy).
///
/// Checks every traded price once (O(bars)); build it once per worker, not per backtest.
pub fn market_of(bundle: &Bundle) -> Result<Market<'_>, engine::Error> {
    let assets = bundle
        .assets()
        .iter()
        .map(|a| AssetSeries {
            sid: a.sid,
            open: bundle.column(a.sid, Field::AdjOpen),
            high: bundle.column(a.sid, Field::AdjHigh),
            low: bundle.column(a.sid, Field::AdjLow),
            close: bundle.column(a.sid, Field::AdjClose),
            first_bar: a.first_bar,
            end_bar: a.end_bar,
            shares_outstanding: a.shares_outstanding,
        })
        .collect();
    Market::new_checked(bundle.frequency().periods_per_year(), bundle.session_bounds(), assets)
}

/// Session indices `start..end` of the bundle's sessions within the calendar dates
/// `[start, end]` (both inclusive, either open-ended).
pub fn session_range(bundle: &Bundle, start: Option<NaiveDate>, end: Option<NaiveDate>) -> Result<Range<usize>, Error> {
    sessions_between(bundle.sessions(), start, end)
}

/// [`session_range`] over a bundle's sessions as read without its bars
/// (`bundle::store::read_sessions`).
pub fn sessions_between(
    sessions: &[NaiveDate],
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> Result<Range<usize>, Error> {
    let lo = start.map_or(0, |d| sessions.partition_point(|s| *s < d));
    let hi = end.map_or(sessions.len(), |d| sessions.partition_point(|s| *s <= d));
    if lo >= hi {
        let show = |d: Option<NaiveDate>| d.map_or("-".to_string(), |d| d.to_string());
        return Err(Error::Range(format!(
            "date range {}..{} holds no session of the bundle ({}..{})",
            show(start),
            show(end),
            sessions[0],
            sessions[sessions.len() - 1]
        )));
    }
    Ok(lo..hi)
}

struct MarketOwner {
    bundle: Arc<Bundle>,
}

self_cell::self_cell!(
    struct MarketCell {
        owner: MarketOwner,
        #[covariant]
        dependent: Market,
    }
);

self_cell::self_cell!(
    struct EngineCell {
        owner: MarketCell,
        #[not_covariant]
        dependent: Backtester,
    }
);

/// A bundle plus a backtester over it, owned together so that a long-lived worker can keep
/// the backtester's SMA cache for its whole life.
pub struct Engine {
    cell: EngineCell,
}

impl Engine {
    /// Views `bundle` as a market (checking every price once) and builds a backtester on it.
    pub fn new(bundle: Arc<Bundle>) -> Result<Engine, Error> {
        Engine::with_tables(bundle, SharedTables::none())
    }

    /// Like [`Engine::new`], with the backtester reading every SMA column and momentum table
    /// `tables` hold from them (built from this same `bundle`, see [`tables_for`]; tables of
    /// another bundle are refused).
    pub fn with_tables(bundle: Arc<Bundle>, tables: SharedTables) -> Result<Engine, Error> {
        let market = MarketCell::try_new(MarketOwner { bundle }, |o| market_of(&o.bundle))?;
        let cell = EngineCell::try_new(market, |m| {
            let market = m.borrow_dependent();
            let mut bt = match tables.sma {
                Some(t) => Backtester::with_tables(market, Backtester::DEFAULT_CACHE_BYTES, t)?,
                None => Backtester::new(market)?,
            };
            if let Some(t) = tables.momentum {
                bt.share_momentum_tables(t)?;
            }
            Ok::<_, engine::Error>(bt)
        })?;
        Ok(Engine { cell })
    }

    /// Bytes of SMA columns this engine computed and holds itself (not the shared tables).
    pub fn own_cache_bytes(&self) -> usize {
        self.cell.with_dependent(|_, bt| bt.cache_bytes())
    }

    /// The bundle this engine runs on.
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.cell.borrow_owner().borrow_owner().bundle
    }

    /// Runs one backtest.
    pub fn run(&mut self, strategy: &Configured, opts: &RunOptions) -> Result<Metrics, Error> {
        Ok(self.cell.with_dependent_mut(|_, bt| bt.run(strategy, opts))?)
    }

    /// Runs one backtest and writes its equity curve over W into `equity`.
    pub fn run_with_equity(
        &mut self,
        strategy: &Configured,
        opts: &RunOptions,
        equity: &mut Vec<f64>,
    ) -> Result<Metrics, Error> {
        Ok(self.cell.with_dependent_mut(|_, bt| bt.run_with_equity(strategy, opts, equity))?)
    }

    /// Runs one task, resolving its strategy in `strategies`. Errors come back as data: a bad
    /// task must not kill a worker. With `task.returns`, also the per-session returns of the
    /// evaluation window ([`session_returns`]); with `task.moments`, their overfitting
    /// [`Moments`]; otherwise nothing beyond the metrics is computed or allocated.
    pub fn execute(&mut self, strategies: &Registry, task: &BacktestTask) -> BacktestOutcome {
        let Some(strategy) = strategies.by_id(task.strategy) else {
            return BacktestOutcome::Invalid(format!("no strategy with id {} in this worker", task.strategy.0));
        };
        let mut equity = (task.returns || task.moments.is_some()).then(Vec::new);
        let ran = self
            .cell
            .with_dependent_mut(|_, bt| bt.run_values(&**strategy, &task.params, &task.options, equity.as_mut()));
        match ran {
            Ok(m) => {
                let returns = equity.map(|e| session_returns(&e, self.bundle().session_bounds()));
                let moments = match (task.moments, &returns) {
                    (Some(blocks), Some(r)) => Some(
                        overfitting::TrialMoments::of(r, blocks as usize).map(Moments::from).map_err(|e| e.to_string()),
                    ),
                    _ => None,
                };
                BacktestOutcome::Done(m, returns.filter(|_| task.returns), moments)
            }
            Err(e) => BacktestOutcome::Invalid(e.to_string()),
        }
    }
}

/// The return of each session of an evaluation window, from its equity curve (one value per
/// bar, the window's last bars): on daily bars the bar returns, on minute bars each session's
/// compounded return, `E(last bar of s) / E(last bar of s − 1) − 1`, the first against
/// `E_start = 1`. `bounds` are the market's session bounds; the window starts on a session
/// boundary, as every window does.
pub fn session_returns(equity: &[f64], bounds: &[usize]) -> Vec<f64> {
    let n_bars = *bounds.last().unwrap_or(&0);
    let start = n_bars - equity.len();
    let first = bounds.partition_point(|&b| b < start);
    let mut prev = 1.0;
    bounds[first + 1..]
        .iter()
        .map(|&end| {
            let e = equity[end - 1 - start];
            let r = e / prev - 1.0;
            prev = e;
            r
        })
        .collect()
}

/// One backtest to run: the unit of work that crosses the process boundary.
///
/// The strategy travels as its position in the binary's [`Registry`] (every worker runs the
/// same binary, so positions agree; spawned workers check this at start-up) and its
/// parameters as checked, typed values: nothing is rendered or parsed per task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacktestTask {
    /// The strategy's id in the registry.
    pub strategy: StrategyId,
    /// Its parameter values, in table order.
    pub params: ParamValues,
    /// Budget, session range and fee.
    pub options: RunOptions,
    /// Also return the per-session returns.
    pub returns: bool,
    /// Also return the overfitting moments of the per-session returns for this many CSCV
    /// blocks ([`Moments`]): 2·S + 1 numbers instead of one per session.
    pub moments: Option<u32>,
}

impl BacktestTask {
    /// The task that runs `strategy` (which must be registered in `strategies`) with `options`.
    pub fn new(strategies: &Registry, strategy: &Configured, options: RunOptions) -> Result<BacktestTask, Error> {
        Ok(BacktestTask {
            strategy: strategies.id_of(strategy.name())?,
            params: *strategy.values(),
            options,
            returns: false,
            moments: None,
        })
    }
}

/// One trial's [`overfitting::TrialMoments`] as they cross the process boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// T, the number of returns.
    pub returns: usize,
    /// The per-period sharpe over all T returns.
    pub sharpe: f64,
    /// Each CSCV block's mean.
    pub block_mean: Vec<f64>,
    /// Each CSCV block's M2.
    pub block_m2: Vec<f64>,
}

impl From<overfitting::TrialMoments> for Moments {
    fn from(m: overfitting::TrialMoments) -> Moments {
        Moments { returns: m.returns, sharpe: m.sharpe, block_mean: m.block_mean, block_m2: m.block_m2 }
    }
}

impl From<Moments> for overfitting::TrialMoments {
    fn from(m: Moments) -> overfitting::TrialMoments {
        overfitting::TrialMoments {
            returns: m.returns,
            sharpe: m.sharpe,
            block_mean: m.block_mean,
            block_m2: m.block_m2,
        }
    }
}

/// What a worker returns for a [`BacktestTask`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BacktestOutcome {
    /// The backtest ran, with the per-session returns and the overfitting moments if the task
    /// asked for them (the moments, or why they cannot be computed).
    Done(Metrics, Option<Vec<f64>>, Option<Result<Moments, String>>),
    /// The engine refused the task; the message says why.
    Invalid(String),
}
