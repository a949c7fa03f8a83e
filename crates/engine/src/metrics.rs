//! Performance metrics from the equity curve, exactly as design-notes "Backtest semantics".

use serde::{Deserialize, Serialize};

use crate::kernels;

/// The result of one backtest. Initial capital is 1.0.
///
/// It derives serde because results travel back from pool workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// `E_last − 1`.
    pub total_return: f64,
    /// `mean(r)/std(r, ddof=1)·sqrt(P)`; 0 when the returns are all equal or there is
    /// only one of them.
    pub sharpe: f64,
    /// `min_t E_t / max(1, max_{s≤t} E_s) − 1`, ≤ 0.
    pub max_drawdown: f64,
    /// Number of fills.
    pub trades: u64,
    /// `mean(r)/sqrt(mean(min(r,0)²))·sqrt(P)`; 0 when the denominator is 0.
    pub sortino: f64,
    /// `(E_last^(P/n) − 1)/|max_drawdown|`; 0 when max_drawdown is 0.
    pub calmar: f64,
    /// Number of bars in the evaluation window W.
    pub bars: u64,
    /// `E_last`.
    pub final_equity: f64,
}

/// Streams the equity curve chunk by chunk, so the caller need not keep it.
///
/// Returns are kept (in a reused buffer) because the standard deviation uses the exact
/// two-pass formula, which is deterministic and free of the cancellation that
/// `Σr² − n·mean²` suffers. Sums run in eight fixed lanes (`kernels::LANES`, combined by
/// `kernels::combine`): a fixed order, so still deterministic to the bit, and it lets the
/// compiler use SIMD instead of one long dependency chain. The drawdown needs no division
/// per bar: while the peak is unchanged, min_t fl(E_t/peak) = fl(min_t E_t / peak) because
/// rounding is monotone, so only the trough of each peak-to-peak segment is divided.
pub(crate) struct MetricsAcc {
    prev: f64,
    peak: f64,
    /// Lowest equity since the current peak was set.
    trough: f64,
    min_ratio: f64,
}

impl MetricsAcc {
    pub(crate) fn new() -> Self {
        MetricsAcc { prev: 1.0, peak: 1.0, trough: f64::INFINITY, min_ratio: 1.0 }
    }

    /// Consumes the next chunk of equity values, writing their returns to `r_out`.
    #[inline]
    pub(crate) fn push(&mut self, equity: &[f64], r_out: &mut [f64]) {
        let Some(&last) = equity.last() else { return };
        // Division by the previous value has no loop-carried dependency: it vectorises.
        kernels::returns_into(self.prev, equity, r_out);
        self.prev = last;
        (self.peak, self.trough, self.min_ratio) = kernels::drawdown(equity, self.peak, self.trough, self.min_ratio);
    }

    /// Finishes with all returns of W (as written by `push`).
    pub(crate) fn finish(self, returns: &[f64], periods_per_year: f64, trades: u64) -> Metrics {
        let n = returns.len();
        let nf = n as f64;
        let final_equity = self.prev;
        let (sum, down) = kernels::sum_and_downside(returns);
        let mean = kernels::combine(sum) / nf;
        let ann = periods_per_year.sqrt();
        // All-equal returns have zero variance by definition; testing that exactly avoids a
        // huge sharpe from the rounding noise of `r − mean`. It usually stops at index 1.
        let all_equal = returns.iter().all(|&r| r == returns[0]);
        let sharpe = if n < 2 || all_equal {
            0.0
        } else {
            let ss = kernels::squared_deviations(returns, mean);
            let sd = (kernels::combine(ss) / (nf - 1.0)).sqrt();
            if sd > 0.0 { mean / sd * ann } else { 0.0 }
        };
        let dd = (kernels::combine(down) / nf).sqrt();
        let sortino = if dd > 0.0 { mean / dd * ann } else { 0.0 };
        // min_t(x_t − 1) = min_t(x_t) − 1 exactly, because rounding is monotone.
        let min_ratio = min2(self.min_ratio, self.trough / self.peak);
        let max_drawdown = min_ratio - 1.0;
        let calmar = if max_drawdown < 0.0 {
            (final_equity.powf(periods_per_year / nf) - 1.0) / max_drawdown.abs()
        } else {
            0.0
        };
        Metrics {
            total_return: final_equity - 1.0,
            sharpe,
            max_drawdown,
            trades,
            sortino,
            calmar,
            bars: n as u64,
            final_equity,
        }
    }
}

/// `min` without NaN handling (no NaN reaches here), which compiles to one `minsd`/`minpd`.
#[inline(always)]
fn min2(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}
