//! Tests of the example strategy: a hand-computed case, no look-ahead, and the whole CLI
//! (identical results on fork, spawn and thread; refusals before any work).

mod cli;
mod hand;
mod props;

use channel_breakout::ChannelBreakout;
use engine::{AssetSeries, Configured, Market, Metrics, Registry, RunOptions};

/// Owned OHLC columns of one asset.
#[derive(Debug, Clone)]
pub(crate) struct Ohlc {
    pub(crate) open: Vec<f64>,
    pub(crate) high: Vec<f64>,
    pub(crate) low: Vec<f64>,
    pub(crate) close: Vec<f64>,
}

/// The one place the tests run a backtest: on a daily market of `assets`, all trading on
/// every bar, returning the metrics and the equity curve.
pub(crate) fn check(assets: &[Ohlc], entry: usize, exit: usize, budget: f64, fee: f64) -> (Metrics, Vec<f64>) {
    let n = assets[0].close.len();
    let bounds: Vec<usize> = (0..=n).collect();
    let series = assets
        .iter()
        .enumerate()
        .map(|(i, a)| AssetSeries::new(i as u32, &a.open, &a.high, &a.low, &a.close, 0..n, 1.0))
        .collect();
    let market = Market::new_checked(252.0, &bounds, series).expect("valid market");
    let strategy = configured(entry, exit);
    let mut bt = engine::Backtester::new(&market).expect("backtester");
    let mut equity = Vec::new();
    let opts = RunOptions::new_checked(budget, None, fee).expect("valid options");
    let m = bt.run_with_equity(&strategy, &opts, &mut equity).expect("backtest runs");
    // A warm backtester and a fresh one agree to the bit.
    let fresh = engine::run(&market, &strategy, &opts).expect("backtest runs");
    assert_eq!(format!("{m:?}"), format!("{fresh:?}"));
    (m, equity)
}

pub(crate) fn configured(entry: usize, exit: usize) -> Configured {
    let pairs = [("entry_window".to_string(), entry.to_string()), ("exit_window".to_string(), exit.to_string())];
    Registry::builtin().with(ChannelBreakout).configure("channel-breakout", &pairs).expect("valid parameters")
}
