//! The deflated Sharpe ratio (Bailey & López de Prado, 2014), design-notes section 9.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::sharpe::{is_constant, sharpe};
use crate::{Error, ReturnMatrix};

/// The Euler–Mascheroni constant γ of the expected-maximum formula.
pub const EULER_GAMMA: f64 = 0.5772156649015329;

/// The deflated Sharpe ratio of the best of N trials, and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct DeflatedSharpe {
    /// Φ((SR* − SR0)·sqrt(T−1) / sqrt(1 − g3·SR* + (g4−1)/4·SR*²)).
    pub deflated_sharpe: f64,
    /// SR0, the expected maximum per-period sharpe of N trials under the null.
    pub expected_max_sharpe: f64,
    /// SR* = max SR_n, per period.
    pub best_sharpe: f64,
    /// The trial with SR* (the lowest id on a tie).
    pub best_trial: usize,
    /// V, the variance (ddof = 1) of the N trials' sharpes.
    pub sharpe_variance: f64,
    /// g3 = m3 / m2^1.5 of the best trial's returns (population moments); 0 when they are
    /// constant.
    pub skewness: f64,
    /// g4 = m4 / m2² of the best trial's returns (population moments, not excess); 0 when
    /// they are constant.
    pub kurtosis: f64,
}

/// The deflated Sharpe ratio of the trials of `m`, exactly as design-notes section 9 states it:
///
/// - SR_n = [`sharpe`] of trial n; V = var(SR_n) with ddof = 1;
/// - SR0 = sqrt(V)·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e))), γ = [`EULER_GAMMA`];
/// - SR* = max SR_n (the lowest id on a tie), with g3 = m3/m2^1.5 and g4 = m4/m2² from the
///   population moments of its T returns;
/// - DSR = Φ((SR* − SR0)·sqrt(T−1) / sqrt(1 − g3·SR* + (g4−1)/4·SR*²)).
///
/// Edge cases, decided here:
/// - N < 2 is [`Error::TooFewTrials`] (V needs two sharpes) and T < 2 is
///   [`Error::TooFewReturns`].
/// - All sharpes equal: V = 0, so SR0 = 0 (not an error).
/// - The best trial's returns are constant (m2 = 0, so g3 and g4 are 0/0): then SR* = 0 by
///   the sharpe rule, both moment terms are multiplied by SR* = 0, and the radicand is taken
///   as 1; g3 and g4 are reported as 0. This happens when every trial loses and a trial that
///   never trades (all returns 0) is the best.
/// - Otherwise the radicand is ≥ (1 − g3·SR*/2)² ≥ 0 by Pearson's inequality g4 ≥ g3² + 1; it
///   reaches 0 only for a two-point return distribution. A radicand ≤ 0 (or a non-finite one)
///   is [`Error::DegenerateDeflatedSharpe`] rather than an infinite z.
pub fn deflated_sharpe(m: &ReturnMatrix) -> Result<DeflatedSharpe, Error> {
    let sharpes: Vec<f64> = m.iter().map(sharpe).collect();
    let best = best_of(&sharpes);
    deflated_from_sharpes(&sharpes, m.returns(), best.map(|b| m.trial(b)).unwrap_or(&[]))
}

/// The first position of the largest sharpe, if any.
pub(crate) fn best_of(sharpes: &[f64]) -> Option<usize> {
    let mut best = None;
    for (i, &s) in sharpes.iter().enumerate() {
        if best.is_none_or(|b: usize| s > sharpes[b]) {
            best = Some(i);
        }
    }
    best
}

/// [`deflated_sharpe`] from the N trials' sharpes over T returns each, and the T returns of
/// the best trial (the first of the largest sharpe), which its skewness and kurtosis need.
pub(crate) fn deflated_from_sharpes(sharpes: &[f64], t: usize, best_returns: &[f64]) -> Result<DeflatedSharpe, Error> {
    let n = sharpes.len();
    if n < 2 {
        return Err(Error::TooFewTrials(n));
    }
    if t < 2 {
        return Err(Error::TooFewReturns { got: t, needed: 2, why: "the deflated sharpe needs at least 2" });
    }
    let mean_sr = sharpes.iter().sum::<f64>() / n as f64;
    let v = sharpes.iter().map(|s| (s - mean_sr) * (s - mean_sr)).sum::<f64>() / (n - 1) as f64;

    let phi = Normal::standard();
    let nf = n as f64;
    let sr0 = v.sqrt()
        * ((1.0 - EULER_GAMMA) * phi.inverse_cdf(1.0 - 1.0 / nf)
            + EULER_GAMMA * phi.inverse_cdf(1.0 - 1.0 / (nf * std::f64::consts::E)));

    let best_trial = best_of(sharpes).expect("n ≥ 2");
    let sr = sharpes[best_trial];
    let best = best_returns;
    if best.len() != t || sharpe(best).to_bits() != sr.to_bits() {
        return Err(Error::BestReturnsMismatch { got: best.len(), expected: t, sharpe: sr });
    }
    let (g3, g4) = if is_constant(best) { (0.0, 0.0) } else { skew_kurtosis(best) };
    let radicand = if sr == 0.0 { 1.0 } else { 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr };
    if !(radicand > 0.0 && radicand.is_finite()) {
        return Err(Error::DegenerateDeflatedSharpe { radicand, skewness: g3, kurtosis: g4, best_sharpe: sr });
    }
    let z = (sr - sr0) * ((t - 1) as f64).sqrt() / radicand.sqrt();
    Ok(DeflatedSharpe {
        deflated_sharpe: phi.cdf(z),
        expected_max_sharpe: sr0,
        best_sharpe: sr,
        best_trial,
        sharpe_variance: v,
        skewness: g3,
        kurtosis: g4,
    })
}

/// (g3, g4) from the population central moments m2, m3, m4 (divided by T).
fn skew_kurtosis(xs: &[f64]) -> (f64, f64) {
    let t = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / t;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &x in xs {
        let d = x - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    let (m2, m3, m4) = (m2 / t, m3 / t, m4 / t);
    (m3 / m2.powf(1.5), m4 / (m2 * m2))
}
