//! The per-period sharpe of the contract, and the moments the other statistics build on.

/// The per-period (not annualised) sharpe ratio: mean / std with ddof = 1, and 0 when the
/// std is 0 or there are fewer than 2 returns.
///
/// "std = 0" is decided exactly: a series whose values are all equal has sharpe 0, even
/// where rounding in the mean would leave a std of a few ulps (a constant 0.1 summed 78
/// times does not divide back to 0.1). The CSCV code uses the same rule on block moments,
/// so a flat stretch (a strategy out of the market) has sharpe exactly 0 everywhere.
/// Returns are expected finite ([`crate::ReturnMatrix`] checks that).
pub fn sharpe(returns: &[f64]) -> f64 {
    let n = returns.len();
    if n < 2 || is_constant(returns) {
        return 0.0;
    }
    let mean = returns.iter().sum::<f64>() / n as f64;
    let ss: f64 = returns.iter().map(|x| (x - mean) * (x - mean)).sum();
    let std = (ss / (n - 1) as f64).sqrt();
    if std == 0.0 { 0.0 } else { mean / std }
}

/// Whether every value equals the first (true for an empty slice).
pub(crate) fn is_constant(xs: &[f64]) -> bool {
    xs.first().is_none_or(|&first| xs.iter().all(|&x| x == first))
}

/// Mean and sum of squared deviations (M2) of one block, with the exact-constant rule:
/// a constant block has its value as mean and M2 = 0 exactly.
pub(crate) fn block_moments(xs: &[f64]) -> (f64, f64) {
    if is_constant(xs) {
        return (xs.first().copied().unwrap_or(0.0), 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let m2 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, m2)
}
