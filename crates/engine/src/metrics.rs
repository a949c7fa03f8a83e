//! Performance metrics from the equity curve, exactly as design-notes "Backtest semantics".

use serde::{Deserialize, Serialize};

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
/// two-pass formula, which is both deterministic and free of the cancellation that
/// `Σr² − n·mean²` suffers.
pub(crate) struct MetricsAcc {
    prev: f64,
    peak: f64,
    sum: f64,
    down: f64,
    min_ratio: f64,
    rmin: f64,
    rmax: f64,
}

impl MetricsAcc {
    pub(crate) fn new() -> Self {
        MetricsAcc {
            prev: 1.0,
            peak: 1.0,
            sum: 0.0,
            down: 0.0,
            min_ratio: 1.0,
            rmin: f64::INFINITY,
            rmax: f64::NEG_INFINITY,
        }
    }

    /// Consumes the next chunk of equity values, writing their returns to `r_out`.
    #[inline]
    pub(crate) fn push(&mut self, equity: &[f64], r_out: &mut [f64]) {
        let (mut prev, mut peak, mut sum, mut down) = (self.prev, self.peak, self.sum, self.down);
        let (mut min_ratio, mut rmin, mut rmax) = (self.min_ratio, self.rmin, self.rmax);
        for (&e, r_slot) in equity.iter().zip(r_out.iter_mut()) {
            let r = e / prev - 1.0;
            *r_slot = r;
            sum += r;
            let neg = r.min(0.0);
            down += neg * neg;
            rmin = rmin.min(r);
            rmax = rmax.max(r);
            // The peak starts at 1.0 (E_start), which is the max(1.0, …) of the contract.
            peak = peak.max(e);
            min_ratio = min_ratio.min(e / peak);
            prev = e;
        }
        (self.prev, self.peak, self.sum, self.down) = (prev, peak, sum, down);
        (self.min_ratio, self.rmin, self.rmax) = (min_ratio, rmin, rmax);
    }

    /// Finishes with all returns of W (as written by `push`).
    pub(crate) fn finish(self, returns: &[f64], periods_per_year: f64, trades: u64) -> Metrics {
        let n = returns.len();
        let nf = n as f64;
        let final_equity = self.prev;
        let mean = self.sum / nf;
        let ann = periods_per_year.sqrt();
        // All-equal returns have zero variance by definition; testing that exactly avoids a
        // huge sharpe from the rounding noise of `r − mean`.
        let sharpe = if n < 2 || self.rmin == self.rmax {
            0.0
        } else {
            let ss: f64 = returns.iter().map(|r| (r - mean) * (r - mean)).sum();
            let sd = (ss / (nf - 1.0)).sqrt();
            if sd > 0.0 { mean / sd * ann } else { 0.0 }
        };
        let dd = (self.down / nf).sqrt();
        let sortino = if dd > 0.0 { mean / dd * ann } else { 0.0 };
        // min_t(x_t − 1) = min_t(x_t) − 1 exactly, because rounding is monotone.
        let max_drawdown = self.min_ratio - 1.0;
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
