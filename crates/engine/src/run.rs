//! [`Run`]: one backtest as a strategy sees it, with the engine's shared building blocks.

use std::ops::Range;

use crate::metrics::{Metrics, MetricsAcc};
use crate::sma::SmaCache;
use crate::{AssetSeries, Market};

/// One backtest as a strategy sees it: the market in sid order, the evaluation window W, the
/// fee, the per-worker SMA cache, and the building blocks that turn positions into
/// [`Metrics`].
///
/// Asset positions `k` count assets in sid order (`0..n_assets()`); bars `t` index the
/// market's shared bar axis. A strategy may read any bar before W (warm-up), and must not
/// read a bar after the close it decides on.
pub struct Run<'r, 'm> {
    pub(crate) market: &'m Market<'m>,
    pub(crate) order: &'r [usize],
    pub(crate) fee: f64,
    pub(crate) window: Range<usize>,
    pub(crate) returns: &'r mut Vec<f64>,
    pub(crate) equity: &'r mut Vec<f64>,
    pub(crate) sma: &'r mut SmaCache,
    pub(crate) equity_out: Option<&'r mut Vec<f64>>,
}

impl<'m> Run<'_, 'm> {
    /// The market.
    pub fn market(&self) -> &'m Market<'m> {
        self.market
    }

    /// Number of assets.
    pub fn n_assets(&self) -> usize {
        self.order.len()
    }

    /// The asset at position `k` in sid order.
    pub fn asset(&self, k: usize) -> &'m AssetSeries<'m> {
        &self.market.assets[self.order[k]]
    }

    /// The evaluation window W as bars.
    pub fn window(&self) -> Range<usize> {
        self.window.clone()
    }

    /// The fee rate on traded notional.
    pub fn fee(&self) -> f64 {
        self.fee
    }

    /// The `window`-bar SMA of the adjusted closes of the asset at position `k`, from the
    /// per-worker cache: element `j` is the SMA on bar `first_bar + j`, NaN before a full
    /// window.
    pub fn sma(&mut self, k: usize, window: usize) -> &[f64] {
        let i = self.order[k];
        let a = &self.market.assets[i];
        let slot = self.sma.ensure(i, window, &a.close[a.first_bar..a.end_bar]);
        self.sma.slice(slot)
    }

    /// Metrics of an equity curve over W (`equity.len()` bars, the first against
    /// `E_start = 1`), with `trades` fills; also hands the curve to a caller that asked for it.
    pub fn finish(&mut self, equity: &[f64], trades: u64) -> Metrics {
        let n = equity.len();
        if self.returns.len() < n {
            self.returns.resize(n, 0.0);
        }
        let returns = &mut self.returns[..n];
        let mut acc = MetricsAcc::new();
        acc.push(equity, returns);
        if let Some(out) = self.equity_out.as_deref_mut() {
            out.clear();
            out.extend_from_slice(equity);
        }
        acc.finish(returns, self.market.periods_per_year, trades)
    }

    /// The independent-slice long/flat portfolio, as the MA crossover trades: each asset gets
    /// `1/N` of the capital, with no cash sharing; a target decided on the close of bar `t`
    /// fills at the open of `t + 1`; buying spends all the slice's cash at `open·(1+fee)`,
    /// selling returns `shares·open·(1−fee)`; before an asset's first bar its slice is cash,
    /// after its last bar the position is held and valued at the last close.
    ///
    /// `signal(k, t)` is the target decided on the close of bar `t` for the asset at position
    /// `k`: `Some(true)` long, `Some(false)` flat, `None` keep the previous target. It is
    /// called for traded bars only, and must be a function of bars up to `t` alone (no
    /// state of its own): the target in force when W opens is the last decisive signal
    /// before W, found by scanning back from W.
    pub fn long_flat(&mut self, mut signal: impl FnMut(usize, usize) -> Option<bool>) -> Metrics {
        let (w0, w1) = (self.window.start, self.window.end);
        let n = w1 - w0;
        let capital = 1.0 / self.order.len().max(1) as f64;
        let (buy_k, sell_k) = (1.0 + self.fee, 1.0 - self.fee);
        let mut equity = std::mem::take(self.equity);
        equity.clear();
        equity.resize(n, if self.order.is_empty() { 1.0 } else { 0.0 });
        let mut trades = 0_u64;
        for k in 0..self.order.len() {
            let a = self.asset(k);
            let (first, end) = (a.first_bar, a.end_bar);
            let mut pending = false;
            if first < w0 {
                for t in (first..w0.min(end)).rev() {
                    if let Some(x) = signal(k, t) {
                        pending = x;
                        break;
                    }
                }
            }
            let (mut cash, mut shares, mut held) = (capital, 0.0_f64, false);
            for (e, t) in equity.iter_mut().zip(w0..w1) {
                let v = if t < first {
                    cash
                } else if t < end {
                    if pending != held {
                        if pending {
                            shares = cash / (a.open[t] * buy_k);
                            cash = 0.0;
                        } else {
                            cash = shares * a.open[t] * sell_k;
                            shares = 0.0;
                        }
                        held = pending;
                        trades += 1;
                    }
                    if let Some(x) = signal(k, t) {
                        pending = x;
                    }
                    if held { shares * a.close[t] } else { cash }
                } else if shares > 0.0 {
                    cash + shares * a.close[end - 1]
                } else {
                    cash
                };
                if k == 0 { *e = v } else { *e += v }
            }
        }
        let metrics = self.finish(&equity, trades);
        *self.equity = equity;
        metrics
    }
}
