//! Integration tests for the engine: one binary, with `check` as the one place that runs
//! a backtest through the public API.

mod blocks;
mod cache;
mod fidelity;
mod hand;
mod momentum;
mod momentum_cache;
mod momentum_reference;
mod params;
mod props;
mod recorded;
mod reference;

use engine::{AssetSeries, Backtester, Configured, MaCrossover, Market, Metrics, RunOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// Owned market data that tests can edit, then view as a [`Market`].
#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) periods_per_year: f64,
    pub(crate) bounds: Vec<usize>,
    pub(crate) assets: Vec<OwnedAsset>,
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedAsset {
    pub(crate) sid: u32,
    pub(crate) open: Vec<f64>,
    pub(crate) close: Vec<f64>,
    pub(crate) first: usize,
    pub(crate) end: usize,
    pub(crate) shares_outstanding: f64,
}

impl Data {
    /// One daily asset trading on every bar.
    pub(crate) fn daily(open: &[f64], close: &[f64]) -> Data {
        let n = close.len();
        Data {
            periods_per_year: 252.0,
            bounds: (0..=n).collect(),
            assets: vec![OwnedAsset {
                sid: 0,
                open: open.to_vec(),
                close: close.to_vec(),
                first: 0,
                end: n,
                shares_outstanding: 1.0,
            }],
        }
    }

    pub(crate) fn market(&self) -> Market<'_> {
        let assets = self
            .assets
            .iter()
            .map(|a| AssetSeries {
                high: &a.close,
                low: &a.close,
                sid: a.sid,
                open: &a.open,
                close: &a.close,
                first_bar: a.first,
                end_bar: a.end,
                shares_outstanding: a.shares_outstanding,
            })
            .collect();
        Market::new_checked(self.periods_per_year, &self.bounds, assets).expect("valid market")
    }

    /// Random bundle: `n_assets` random walks on `n_sessions` sessions of `bars_per_session`
    /// bars, with random listing spans (some start late, some end early).
    pub(crate) fn random(seed: u64, n_assets: usize, n_sessions: usize, bars_per_session: usize) -> Data {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let n = n_sessions * bars_per_session;
        let assets = (0..n_assets)
            .map(|i| {
                let (first, end) = if rng.random_bool(0.5) {
                    (0, n)
                } else {
                    let first = rng.random_range(0..n / 2);
                    (first, rng.random_range(first + 1..=n))
                };
                let mut open = vec![f64::NAN; n];
                let mut close = vec![f64::NAN; n];
                let mut p = rng.random_range(5.0..200.0);
                let vol = rng.random_range(0.002..0.04);
                for t in first..end {
                    open[t] = p * (1.0 + vol * 0.3 * (rng.random::<f64>() - 0.5));
                    p *= 1.0 + vol * (rng.random::<f64>() * 2.0 - 1.0);
                    close[t] = p;
                }
                OwnedAsset {
                    sid: (i as u32) * 3 + 1,
                    open,
                    close,
                    first,
                    end,
                    shares_outstanding: rng.random_range(1e6..1e9),
                }
            })
            .collect();
        Data {
            periods_per_year: 252.0 * bars_per_session as f64,
            bounds: (0..=n_sessions).map(|s| s * bars_per_session).collect(),
            assets,
        }
    }
}

pub(crate) fn ma(short_window: usize, long_window: usize, threshold: f64) -> Configured {
    (MaCrossover { short_window, long_window, threshold }).configured().expect("valid ma-crossover")
}

pub(crate) fn opts(budget: f64, sessions: Option<std::ops::Range<usize>>, fee: f64) -> RunOptions {
    RunOptions::new_checked(budget, sessions, fee).expect("valid options")
}

/// Runs one backtest on a fresh backtester and returns metrics and equity curve.
pub(crate) fn check(data: &Data, strategy: &Configured, opts: &RunOptions) -> (Metrics, Vec<f64>) {
    let market = data.market();
    let mut bt = Backtester::new(&market).expect("backtester");
    let mut equity = Vec::new();
    let m = bt.run_with_equity(strategy, opts, &mut equity).expect("backtest runs");
    // The plain entry point must agree bit for bit with the equity variant.
    let plain = engine::run(&market, strategy, opts).expect("backtest runs");
    assert_same(&m, &plain);
    assert_eq!(equity.len() as u64, m.bars);
    (m, equity)
}

/// Bit-identical metrics.
pub(crate) fn assert_same(a: &Metrics, b: &Metrics) {
    let bits =
        |m: &Metrics| [m.total_return, m.sharpe, m.max_drawdown, m.sortino, m.calmar, m.final_equity].map(f64::to_bits);
    assert_eq!((bits(a), a.trades, a.bars), (bits(b), b.trades, b.bars), "{a:?} != {b:?}");
}

pub(crate) fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    let scale = a.abs().max(b.abs()).max(1e-300);
    assert!((a - b).abs() <= rel * scale || a == b, "{what}: {a} vs {b} (rel tol {rel})");
}

/// Parses a built-in strategy from `NAME=VALUE` pairs (the one place tests name the API).
pub(crate) fn strategy_from_pairs(name: &str, pairs: &[(String, String)]) -> Configured {
    engine::Registry::builtin().configure(name, pairs).expect("valid strategy")
}

/// One backtest on a fresh backtester without cache.
pub(crate) fn run_fresh(market: &Market<'_>, strategy: &Configured, opts: &RunOptions) -> Metrics {
    engine::run(market, strategy, opts).expect("backtest runs")
}
