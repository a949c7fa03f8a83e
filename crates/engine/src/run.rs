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
    /// Shared momentum tables, if the backtester has them.
    pub(crate) momentum: Option<&'r crate::MomentumTables>,
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
    /// shared [`crate::SmaTables`] if they hold it, else from the per-worker cache: element `j` is the SMA on bar `first_bar + j`, NaN before a full
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

    /// The shared-cash portfolio, as the built-in momentum trades: one cash account for all
    /// assets, starting at 1.0. On the close of each bar `t` of W (but W's last, whose fill
    /// would fall outside W), `decide(t, weights)` may set target weights per asset position
    /// (`weights` holds the previous targets; return `true` to rebalance). The targets fill at
    /// the open of `t + 1`: with V the portfolio value at those opens, each asset's target is
    /// `w·V/open` shares; sells go first, then buys, the fee is taken on traded notional, and if
    /// the buys and their fees exceed the cash, every buy is scaled by one common factor (the
    /// cash then ends at exactly 0). An asset that does not trade on the fill bar keeps its
    /// position; after its last bar a position is valued at its last close. Equity is marked at
    /// every close of W. Buffers come from `scratch`, reused across backtests.
    pub fn shared_cash(
        &mut self,
        scratch: &mut SharedCash,
        mut decide: impl FnMut(usize, &mut [f64]) -> bool,
    ) -> Metrics {
        let n = self.order.len();
        let (w0, w1) = (self.window.start, self.window.end);
        let fee = self.fee;
        let SharedCash { shares, weights, target, equity } = scratch;
        for v in [&mut *shares, &mut *weights, &mut *target] {
            v.clear();
            v.resize(n, 0.0);
        }
        equity.clear();
        let mut cash = 1.0_f64;
        let mut trades = 0_u64;
        let mut pending = false;
        for t in w0..w1 {
            if pending {
                pending = false;
                let mut value = cash;
                for (k, &q) in shares.iter().enumerate() {
                    if q > 0.0 {
                        let a = self.asset(k);
                        value += q * if t < a.end_bar { a.open[t] } else { a.close[a.end_bar - 1] };
                    }
                }
                let mut cost = 0.0;
                for k in 0..n {
                    let a = self.asset(k);
                    if !(a.first_bar <= t && t < a.end_bar) {
                        target[k] = shares[k];
                        continue;
                    }
                    let o = a.open[t];
                    target[k] = weights[k] * value / o;
                    if target[k] < shares[k] {
                        cash += (shares[k] - target[k]) * o * (1.0 - fee);
                        shares[k] = target[k];
                        trades += 1;
                    } else if target[k] > shares[k] {
                        cost += (target[k] - shares[k]) * o * (1.0 + fee);
                    }
                }
                let scale = if cost > cash { cash / cost } else { 1.0 };
                for k in 0..n {
                    let dq = (target[k] - shares[k]) * scale;
                    if dq > 0.0 {
                        shares[k] += dq;
                        cash -= dq * self.asset(k).open[t] * (1.0 + fee);
                        trades += 1;
                    }
                }
                if scale < 1.0 {
                    cash = 0.0;
                }
            }
            let mut e = cash;
            for (k, &q) in shares.iter().enumerate() {
                if q > 0.0 {
                    let a = self.asset(k);
                    e += q * a.close[t.min(a.end_bar - 1)];
                }
            }
            equity.push(e);
            if t + 1 < w1 && decide(t, weights) {
                pending = true;
            }
        }
        let equity = std::mem::take(equity);
        let metrics = self.finish(&equity, trades);
        scratch.equity = equity;
        metrics
    }
}

/// Buffers of [`Run::shared_cash`], reused across backtests (keep one in a strategy's
/// scratch).
#[derive(Debug, Default)]
pub struct SharedCash {
    shares: Vec<f64>,
    weights: Vec<f64>,
    target: Vec<f64>,
    equity: Vec<f64>,
}
