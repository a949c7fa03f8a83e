//! The `blocks` fidelity: several windows backtested one by one, their equity chained.

use crate::Error;
use crate::metrics::{Metrics, MetricsAcc};
use crate::options::Window;

/// Runs `run` over each window (a full backtest of that window, writing its equity curve),
/// then chains the curves: window `j`'s curve is scaled by the product of the final equities
/// of the windows before it (1.0 for the first, so one window is returned unchanged).
/// Metrics are those of the chained curve, as for one window with all their bars; trades
/// add up.
pub(crate) fn run_blocks(
    wins: &[Window],
    periods_per_year: f64,
    equity_out: Option<&mut Vec<f64>>,
    mut run: impl FnMut(&Window, &mut Vec<f64>) -> Result<Metrics, Error>,
) -> Result<Metrics, Error> {
    let total: usize = wins.iter().map(|w| w.bars.len()).sum();
    let mut chained = Vec::with_capacity(total);
    let mut block = Vec::new();
    let mut carry = 1.0_f64;
    let mut trades = 0;
    for w in wins {
        let m = run(w, &mut block)?;
        trades += m.trades;
        chained.extend(block.iter().map(|&e| carry * e));
        carry = *chained.last().expect("a window holds at least one bar");
    }
    let mut returns = vec![0.0; total];
    let mut acc = MetricsAcc::new();
    acc.push(&chained, &mut returns);
    let metrics = acc.finish(&returns, periods_per_year, trades);
    if let Some(out) = equity_out {
        out.clear();
        out.extend_from_slice(&chained);
    }
    Ok(metrics)
}
