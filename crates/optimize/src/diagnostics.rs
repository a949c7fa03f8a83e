//! Fidelity diagnostics: do low budgets rank configs the way high budgets do?
//!
//! HpBandSter's advice for multi-fidelity search is to "look at the rank correlations across
//! budgets. If those are really small (<0.2) … we don't expect Hyperband or BOHB to perform
//! very well". [`fidelity`] computes them for a finished search: for each pair of successive
//! budgets, the Spearman rank correlation of the losses over the configs evaluated (with a
//! finite loss) at both.

use std::collections::BTreeMap;

use crate::optimizer::TrialSummary;
use crate::value::config_json_text;

/// The rank correlation between two successive budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct FidelityPair {
    /// The lower budget.
    pub low: f64,
    /// The next budget up.
    pub high: f64,
    /// Configs with a finite loss at both budgets.
    pub pairs: usize,
    /// Spearman's ρ of their losses (ties get average ranks); `None` with fewer than 2 pairs
    /// or when either side has no spread.
    pub spearman: Option<f64>,
}

/// Below this ρ a warning is due: low budgets say little about high ones.
pub const WEAK_RANK_CORRELATION: f64 = 0.2;

/// The losses behind one [`FidelityPair`]: the configs evaluated at both budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct FidelityPoints {
    /// The lower budget.
    pub low: f64,
    /// The next budget up.
    pub high: f64,
    /// `(loss at low, loss at high)` per config with a finite loss at both, in config order.
    pub points: Vec<(f64, f64)>,
}

/// For each pair of successive budgets of `trials` (in budget order), the losses of the
/// configs evaluated with a finite loss at both. A config evaluated more than once at one
/// budget counts with its first finite loss.
pub fn fidelity_points(trials: &[TrialSummary]) -> Vec<FidelityPoints> {
    // config text -> budget bits -> loss; budgets present with a finite loss.
    let mut by_config: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let mut budgets: Vec<f64> = Vec::new();
    for t in trials {
        let Some(loss) = t.loss else { continue };
        let at = by_config.entry(config_json_text(&t.config)).or_default();
        at.entry(t.budget.to_bits()).or_insert(loss);
        if !budgets.contains(&t.budget) {
            budgets.push(t.budget);
        }
    }
    budgets.sort_by(f64::total_cmp);
    budgets
        .windows(2)
        .map(|w| {
            let (lo, hi) = (w[0].to_bits(), w[1].to_bits());
            let points = by_config.values().filter_map(|m| Some((*m.get(&lo)?, *m.get(&hi)?))).collect();
            FidelityPoints { low: w[0], high: w[1], points }
        })
        .collect()
}

/// The rank correlations between successive budgets of `trials` (in budget order), over
/// [`fidelity_points`].
pub fn fidelity(trials: &[TrialSummary]) -> Vec<FidelityPair> {
    fidelity_points(trials)
        .into_iter()
        .map(|p| {
            let (x, y): (Vec<f64>, Vec<f64>) = p.points.iter().copied().unzip();
            FidelityPair { low: p.low, high: p.high, pairs: x.len(), spearman: spearman(&x, &y) }
        })
        .collect()
}

/// Spearman's ρ: the Pearson correlation of the ranks, ties sharing their average rank.
/// `None` for fewer than 2 points or when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// 1-based ranks, ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}
