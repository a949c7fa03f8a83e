//! HpBandSter's bracket schedule (successive-halving stage sizes and budgets).

use crate::error::{Error, Result};

/// Tolerance for floors of quantities that are integers in exact arithmetic, so that
/// `log_3(243/9) = 2.9999999999999996` still floors to 3 (HpBandSter's `int()` can be off by one
/// here; that is one of the faults we avoid).
const FLOOR_EPS: f64 = 1e-9;

fn robust_floor(x: f64) -> f64 {
    (x + FLOOR_EPS).floor()
}

/// One bracket: `num_configs[k]` configs evaluated at `budgets[k]` in stage `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct BracketPlan {
    /// HpBandSter's `s`: the bracket has `s + 1` stages.
    pub s: usize,
    /// Configs per stage.
    pub num_configs: Vec<usize>,
    /// Budget per stage.
    pub budgets: Vec<f64>,
}

/// `max_SH_iter = floor(log_eta(max/min)) + 1`, after validating the arguments.
pub fn max_sh_iter(min_budget: f64, max_budget: f64, eta: f64) -> Result<usize> {
    if !(min_budget.is_finite() && max_budget.is_finite() && min_budget > 0.0) {
        return Err(Error::InvalidSettings(format!(
            "budgets must be finite and positive, got min {min_budget}, max {max_budget}"
        )));
    }
    if min_budget > max_budget {
        return Err(Error::InvalidSettings(format!("min budget {min_budget} exceeds max budget {max_budget}")));
    }
    if !(eta.is_finite() && eta > 1.0) {
        return Err(Error::InvalidSettings(format!("eta must be > 1, got {eta}")));
    }
    Ok(robust_floor((max_budget / min_budget).ln() / eta.ln()) as usize + 1)
}

/// The budgets `max·eta^-[max_SH_iter−1 … 0]`, smallest first. Built down from max, so the
/// smallest can exceed `min_budget`.
pub fn budgets(min_budget: f64, max_budget: f64, eta: f64) -> Result<Vec<f64>> {
    let m = max_sh_iter(min_budget, max_budget, eta)?;
    Ok((0..m).map(|k| max_budget * eta.powi(-((m - 1 - k) as i32))).collect())
}

/// The bracket for iteration `i` (brackets cycle from the largest `s` down).
pub fn bracket_for_iteration(min_budget: f64, max_budget: f64, eta: f64, i: usize) -> Result<BracketPlan> {
    let m = max_sh_iter(min_budget, max_budget, eta)?;
    let all = budgets(min_budget, max_budget, eta)?;
    let s = m - 1 - (i % m);
    let n0 = robust_floor((m / (s + 1)) as f64 * eta.powi(s as i32)) as usize;
    let num_configs = (0..=s).map(|k| (robust_floor(n0 as f64 * eta.powi(-(k as i32))) as usize).max(1)).collect();
    Ok(BracketPlan { s, num_configs, budgets: all[m - 1 - s..].to_vec() })
}

/// One full cycle of brackets, in iteration order (largest bracket first).
pub fn bracket_schedule(min_budget: f64, max_budget: f64, eta: f64) -> Result<Vec<BracketPlan>> {
    let m = max_sh_iter(min_budget, max_budget, eta)?;
    (0..m).map(|i| bracket_for_iteration(min_budget, max_budget, eta, i)).collect()
}
