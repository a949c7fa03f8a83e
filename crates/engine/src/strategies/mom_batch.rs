//! Batched momentum: many configs under the same options, sharing whole backtests between
//! configs whose paths provably coincide.
//!
//! Two configs that differ only in their position bounds (`min_position_size`,
//! `max_position_size`) start from the same state, and at each decision compute the same
//! weights *before* the bounds, as long as every earlier decision gave both the same targets
//! (the target set and the raw weights depend only on the state and the other parameters).
//! So if, for every raw weight `x` a backtest of config A decided on, `bound_B(x)` and
//! `bound_A(x)` are the same bits, B's backtest is A's, step for step: same fills, same
//! equity, same metrics. The batch runs one config of each such class (its "leader") while
//! recording those raw weights, and gives every config that passes the check the leader's
//! metrics. A config that fails it against every leader so far runs itself and becomes a
//! leader. Nothing is approximated: a shared result is the one the config's own run gives.

use std::collections::HashMap;

use super::mom_fast::{bound, bounds};
use crate::{Error, Metrics, Momentum};

/// Every parameter but the position bounds.
type PathKey = (usize, usize, usize, u8, usize, u64);

fn path_key(p: &Momentum) -> PathKey {
    (
        p.lookback_period,
        p.holding_period,
        p.rebalance_frequency,
        p.weighting_scheme as u8,
        p.top_n_assets,
        p.volatility_threshold.to_bits(),
    )
}

/// A config that ran, with the distinct raw weights its decisions bounded.
struct Leader {
    lo: f64,
    hi: f64,
    raw: Vec<f64>,
    metrics: Metrics,
}

impl Leader {
    /// Whether bounds `lo..hi` would have turned every raw weight into the same bits.
    fn agrees(&self, lo: f64, hi: f64) -> bool {
        (lo.to_bits(), hi.to_bits()) == (self.lo.to_bits(), self.hi.to_bits())
            || self.raw.iter().all(|&x| bound(x, lo, hi).to_bits() == bound(x, self.lo, self.hi).to_bits())
    }
}

/// Runs every config; `run(p, record)` is one backtest, returning its metrics and, when
/// `record`, the raw weights of its decisions. Without `share` every config runs itself.
pub(crate) fn run(
    configs: &[Momentum],
    share: bool,
    mut run: impl FnMut(&Momentum, bool) -> Result<(Metrics, Vec<f64>), Error>,
) -> Result<Vec<Metrics>, Error> {
    let mut leaders: HashMap<PathKey, Vec<Leader>> = HashMap::new();
    let mut out = Vec::with_capacity(configs.len());
    for p in configs {
        p.configured()?;
        if !share {
            out.push(run(p, false)?.0);
            continue;
        }
        let (lo, hi) = bounds(p);
        let class = leaders.entry(path_key(p)).or_default();
        if let Some(l) = class.iter().find(|l| l.agrees(lo, hi)) {
            out.push(l.metrics);
            continue;
        }
        let (metrics, mut raw) = run(p, true)?;
        raw.sort_unstable_by(f64::total_cmp);
        raw.dedup_by(|a, b| a.to_bits() == b.to_bits());
        class.push(Leader { lo, hi, raw, metrics });
        out.push(metrics);
    }
    Ok(out)
}
