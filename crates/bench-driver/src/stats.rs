//! Sample statistics for run times: summaries with Student-t CIs, Welch's and the paired t-test,
//! and the speed-up % with its CI.
//!
//! Conventions, fixed here so that every scenario reports the same thing:
//! - `sd` is the sample standard deviation (ddof = 1), and every CI is two-sided at 95%.
//! - Every p-value is two-sided.
//! - The **speed-up %** of a candidate over a baseline is `(baseline_mean / candidate_mean − 1)
//!   · 100`: +25% means the baseline takes 1.25× as long, i.e. the candidate does 25% more work
//!   per unit of time. It is the convention of the guidance ("≥ 5% faster"), and it composes
//!   multiplicatively, which is what cumulative tracking needs (see [`crate::decide`]).
//! - The speed-up's CI is built on the log of the ratio of means with the delta method and
//!   Welch–Satterthwaite degrees of freedom; see [`speedup`] for why.
//! - [`rank_among`] places a search's best score among a grid's, for the BOHB scenarios.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Why a statistic could not be computed. Every variant is a problem with the input, found
/// before any arithmetic, so that no NaN ever reaches a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A sample needs at least two values for a standard deviation.
    #[error("need at least 2 runs, got {0}")]
    TooFewRuns(usize),
    /// A value was NaN or infinite.
    #[error("run {index} is not finite ({value})")]
    NotFinite {
        /// Position of the value in its sample.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A ratio of means needs both means to be positive, which run times always are.
    #[error("mean run time must be positive for a speed-up, got {0}")]
    NonPositiveMean(f64),
    /// Paired samples must have the same length.
    #[error("paired samples differ in length: {0} vs {1}")]
    LengthMismatch(usize, usize),
}

/// Mean, sd and 95% CI of one arm's run times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// Number of runs.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1).
    pub sd: f64,
    /// 95% CI of the mean: `mean ± t(0.975, n−1) · sd / √n`.
    pub ci95: [f64; 2],
}

/// The result of a t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// The t statistic, signed as `first − second`.
    pub statistic: f64,
    /// Degrees of freedom (fractional for Welch).
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Speed-up % of a candidate over a baseline, with its 95% CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speedup {
    /// `(baseline_mean / candidate_mean − 1) · 100`.
    pub pct: f64,
    /// 95% CI of `pct`.
    pub ci95: [f64; 2],
}

/// Everything [`crate::decide`] and [`crate::report`] need about one baseline/candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline's runs.
    pub baseline: SampleSummary,
    /// The candidate's runs.
    pub candidate: SampleSummary,
    /// Speed-up of the candidate over the baseline.
    pub speedup: Speedup,
    /// Welch's t-test, baseline − candidate.
    pub welch: TTest,
    /// Paired t-test on `baseline[i] − candidate[i]`, when the runs were paired.
    pub paired: Option<TTest>,
}

impl Comparison {
    /// The p-value that decisions use: Welch's.
    ///
    /// Welch's test is the one the guidance names, and it stays valid whatever the pairing is
    /// worth: interleaved runs A₁ B₁ A₂ B₂ share only their neighbourhood in time, so the
    /// paired test is reported as a cross-check rather than used to decide.
    pub fn p_value(&self) -> f64 {
        self.welch.p_value
    }
}

/// Checks a sample: at least two values, all finite.
fn check(xs: &[f64]) -> Result<(), Error> {
    if xs.len() < 2 {
        return Err(Error::TooFewRuns(xs.len()));
    }
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NotFinite { index, value: xs[index] }),
        None => Ok(()),
    }
}

/// Mean and sample variance (ddof = 1) of a checked sample, in two passes for accuracy.
fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let ss: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
    (mean, ss / (n - 1.0))
}

/// The CDF of Student's t with `df` degrees of freedom at `t`.
///
/// `df` may be infinite (Welch's df is, when one arm has no variance and the other has
/// infinitely many runs; in practice when df overflows), where t is the standard normal.
///
/// # Panics
/// If `df` is not positive.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    assert!(df > 0.0, "degrees of freedom must be positive, got {df}");
    if df.is_infinite() {
        return Normal::standard().cdf(t);
    }
    StudentsT::new(0.0, 1.0, df).expect("df > 0 was checked").cdf(t)
}

/// The `p`-quantile of Student's t with `df` degrees of freedom, e.g. `t_quantile(0.975, 9)`
/// = 2.262157.
///
/// # Panics
/// If `df` is not positive or `p` is outside (0, 1).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(df > 0.0, "degrees of freedom must be positive, got {df}");
    assert!(p > 0.0 && p < 1.0, "probability must be in (0, 1), got {p}");
    if df.is_infinite() {
        return Normal::standard().inverse_cdf(p);
    }
    StudentsT::new(0.0, 1.0, df).expect("df > 0 was checked").inverse_cdf(p)
}

/// Two-sided p-value of a t statistic.
fn two_sided_p(t: f64, df: f64) -> f64 {
    // 2·P(T > |t|) through the lower tail at −|t|: the upper tail computed as 1 − cdf would lose
    // every digit of a small p to cancellation.
    (2.0 * t_cdf(-t.abs(), df)).min(1.0)
}

/// t statistic and p for a difference `diff` with standard error `se`, handling `se = 0`:
/// equal means are then no evidence of a difference (t = 0, p = 1), and different ones are
/// certain (t = ±∞, p = 0). Run times with no spread at all happen with coarse clocks.
fn t_and_p(diff: f64, se: f64, df: f64) -> (f64, f64) {
    if se > 0.0 {
        let t = diff / se;
        (t, two_sided_p(t, df))
    } else if diff == 0.0 {
        (0.0, 1.0)
    } else {
        (diff.signum() * f64::INFINITY, 0.0)
    }
}

/// Mean, sd (ddof = 1) and the 95% Student-t CI of the mean.
pub fn summarize(xs: &[f64]) -> Result<SampleSummary, Error> {
    check(xs)?;
    let (mean, var) = mean_var(xs);
    let n = xs.len();
    let sd = var.sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Ok(SampleSummary { n, mean, sd, ci95: [mean - half, mean + half] })
}

/// Welch–Satterthwaite degrees of freedom for two variance components `v1 = s1²/n1` and
/// `v2 = s2²/n2`, falling back to `n1 + n2 − 2` when both are zero (the formula is 0/0 there,
/// and the value then matters only for CIs of zero width).
fn welch_df(v1: f64, n1: usize, v2: f64, n2: usize) -> f64 {
    let den = v1 * v1 / (n1 - 1) as f64 + v2 * v2 / (n2 - 1) as f64;
    if den > 0.0 { (v1 + v2).powi(2) / den } else { (n1 + n2 - 2) as f64 }
}

/// Welch's unequal-variance t-test of `mean(a) − mean(b)`, two-sided, with
/// Welch–Satterthwaite degrees of freedom.
///
/// statrs has no Welch test, so it is computed here: `t = (m1 − m2) / √(s1²/n1 + s2²/n2)`.
pub fn welch(a: &[f64], b: &[f64]) -> Result<TTest, Error> {
    check(a)?;
    check(b)?;
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (va, vb) = (va / a.len() as f64, vb / b.len() as f64);
    let df = welch_df(va, a.len(), vb, b.len());
    let (statistic, p_value) = t_and_p(ma - mb, (va + vb).sqrt(), df);
    Ok(TTest { statistic, df, p_value })
}

/// Paired t-test of the differences `a[i] − b[i]`, two-sided, with `n − 1` degrees of freedom.
pub fn paired(a: &[f64], b: &[f64]) -> Result<TTest, Error> {
    if a.len() != b.len() {
        return Err(Error::LengthMismatch(a.len(), b.len()));
    }
    check(a)?;
    check(b)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (md, vd) = mean_var(&d);
    let n = d.len();
    let df = (n - 1) as f64;
    let (statistic, p_value) = t_and_p(md, (vd / n as f64).sqrt(), df);
    Ok(TTest { statistic, df, p_value })
}

/// Speed-up % of `candidate` over `baseline`, `(mean_b / mean_c − 1) · 100`, with a 95% CI.
///
/// The CI is computed on the log scale, where the ratio of means becomes a difference:
/// `L = ln m_b − ln m_c`. By the delta method `Var(ln m) ≈ s² / (n m²)`, so `L` gets the
/// standard error `√(s_b²/(n_b m_b²) + s_c²/(n_c m_c²))`, a Student-t quantile with
/// Welch–Satterthwaite df on those two components, and the interval `exp(L ± t·se) − 1` is
/// mapped back to percent. Why this one:
/// - it is always finite and always contains the point estimate, unlike Fieller's interval,
///   which becomes unbounded when the candidate's mean is not clearly away from zero;
/// - it is asymmetric in the right direction (a ratio cannot fall below −100%);
/// - for run times, whose coefficient of variation is a few percent, its coverage is the
///   nominal 95%; the integration tests check that by simulation.
pub fn speedup(baseline: &[f64], candidate: &[f64]) -> Result<Speedup, Error> {
    check(baseline)?;
    check(candidate)?;
    let (mb, vb) = mean_var(baseline);
    let (mc, vc) = mean_var(candidate);
    for m in [mb, mc] {
        if m <= 0.0 {
            return Err(Error::NonPositiveMean(m));
        }
    }
    let (nb, nc) = (baseline.len(), candidate.len());
    let (cb, cc) = (vb / (nb as f64 * mb * mb), vc / (nc as f64 * mc * mc));
    let log_ratio = mb.ln() - mc.ln();
    let half = t_quantile(0.975, welch_df(cb, nb, cc, nc)) * (cb + cc).sqrt();
    let pct = |l: f64| (l.exp() - 1.0) * 100.0;
    Ok(Speedup { pct: (mb / mc - 1.0) * 100.0, ci95: [pct(log_ratio - half), pct(log_ratio + half)] })
}

/// Summaries of both arms, the speed-up and Welch's test, plus the paired test when `paired`
/// (the runs were interleaved as pairs `baseline[i]`, `candidate[i]`).
pub fn compare(baseline: &[f64], candidate: &[f64], paired_runs: bool) -> Result<Comparison, Error> {
    Ok(Comparison {
        baseline: summarize(baseline)?,
        candidate: summarize(candidate)?,
        speedup: speedup(baseline, candidate)?,
        welch: welch(baseline, candidate)?,
        paired: if paired_runs { Some(paired(baseline, candidate)?) } else { None },
    })
}

/// Where a score stands among all the scores of a space (higher is better), e.g. BOHB's best
/// Sharpe among the exhaustive grid's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rank {
    /// 1 for the best: one more than the number of scores strictly above.
    pub rank: usize,
    /// Number of (non-NaN) scores ranked against.
    pub of: usize,
    /// Percentile rank: the percentage of scores at or below this one (100 at the optimum);
    /// NaN when there are no scores.
    pub percentile: f64,
}

/// The rank of `value` among `scores`, higher being better. NaN scores (failed evaluations)
/// are left out, so that a crash never counts as being beaten.
pub fn rank_among(scores: &[f64], value: f64) -> Rank {
    let valid = scores.iter().filter(|s| !s.is_nan());
    let (mut above, mut at_or_below) = (0, 0);
    for s in valid {
        if *s > value {
            above += 1;
        } else {
            at_or_below += 1;
        }
    }
    let of = above + at_or_below;
    let percentile = if of == 0 { f64::NAN } else { 100.0 * at_or_below as f64 / of as f64 };
    Rank { rank: above + 1, of, percentile }
}
