//! overfitting: is the optimum real? The deflated Sharpe ratio, the probability of backtest
//! overfitting (PBO) by combinatorially symmetric cross-validation, and walk-forward
//! segmentation, exactly as design-notes section 9 defines them.
//!
//! **Architecture invariant:** this crate knows nothing about backtests, bundles, pools or
//! processes. It takes return series (one per trial, all of one length, in trial-id order)
//! and session counts, and returns numbers. The threads [`pbo()`] spreads its splits over are
//! scoped: every one is joined before it returns, so none outlives a call, and a caller may
//! build a fork pool after using it.
//!
//! Main items: [`ReturnMatrix`] (the T×N matrix, checked on the way in), [`compute`] and its
//! [`Overfitting`] (the fields of `optimize --json`'s `"overfitting"`), the parts
//! [`deflated_sharpe`] and [`pbo()`], the per-period [`sharpe`], [`Sample`] for the
//! `--overfitting-max-trials` cap, and [`segments`] for walk-forward folds. One error type,
//! [`Error`]; its messages are what a caller puts in `"overfitting_skipped"`.
//!
//! Every sharpe here is per period and not annualised: mean/std (ddof = 1), 0 when std = 0.
//!
//! ```
//! use overfitting::{ReturnMatrix, compute};
//! // Three trials of 64 returns: one with an edge, two without.
//! let wave = |t: usize, phase: usize| (((t * 7 + phase * 3) % 11) as f64 - 5.0) * 1e-3;
//! let trials: Vec<Vec<f64>> = (0..3)
//!     .map(|n| (0..64).map(|t| wave(t, n) + if n == 0 { 2e-3 } else { 0.0 }).collect())
//!     .collect();
//! let m = ReturnMatrix::from_trials(&trials)?;
//! let o = compute(&m, 4)?;
//! assert_eq!((o.trials, o.returns, o.cscv_blocks), (3, 64, 4));
//! assert_eq!(o.best_trial, 0);
//! assert!(o.pbo < 0.5 && o.deflated_sharpe > 0.5);
//! // Too few returns for 16 blocks: a typed refusal with a reason.
//! let short = ReturnMatrix::from_trials(trials.iter().map(|t| &t[..20]))?;
//! let err = compute(&short, 16).unwrap_err();
//! assert_eq!(err.to_string(), "fewer than 32 returns (20), cscv needs 2 per block");
//! # Ok::<(), overfitting::Error>(())
//! ```

mod deflated;
mod error;
mod matrix;
mod moments;
mod pbo;
mod sharpe;
mod subsample;
mod walkforward;

pub use deflated::{DeflatedSharpe, EULER_GAMMA, deflated_sharpe};
pub use error::Error;
pub use matrix::ReturnMatrix;
pub use moments::{TrialMoments, best_trial};
pub use pbo::{DEFAULT_CSCV_BLOCKS, MAX_CSCV_BLOCKS, Pbo, check_blocks, pbo, pbo_from_moments, pbo_on_threads, splits};
pub use sharpe::sharpe;
pub use subsample::{DEFAULT_MAX_TRIALS, Sample, sample_key};
pub use walkforward::{Fold, segments};

/// The overfitting statistics of one search. The first seven fields are the contract's
/// `"overfitting"` object, under the same names.
#[derive(Clone, Debug, PartialEq)]
pub struct Overfitting {
    /// N, the number of trials used.
    pub trials: usize,
    /// T, the returns per trial, before CSCV drops any rows.
    pub returns: usize,
    /// S, the number of CSCV blocks.
    pub cscv_blocks: usize,
    /// The probability of backtest overfitting.
    pub pbo: f64,
    /// The deflated Sharpe ratio of the best trial.
    pub deflated_sharpe: f64,
    /// SR0, the expected maximum per-period sharpe of N trials under the null.
    pub expected_max_sharpe: f64,
    /// SR*, the best per-period sharpe.
    pub best_sharpe: f64,
    /// The position of the best trial in the matrix (the lowest on a tie).
    pub best_trial: usize,
    /// λ of every CSCV split ([`Pbo::logits`]), for a histogram in reports.
    pub logits: Vec<f64>,
}

impl Overfitting {
    /// One line for the human output: both figures and a plain-words reading of each.
    ///
    /// PBO above 1/2 reads "the in-sample best is more likely than not below the
    /// out-of-sample median", else "the in-sample best usually stays above the out-of-sample
    /// median"; DSR at or above 0.95 reads "its sharpe is significant at 95% after N trials",
    /// else "its sharpe is not significant at 95% after N trials".
    ///
    /// ```
    /// # let o = overfitting::Overfitting { trials: 1100, returns: 1258, cscv_blocks: 16, pbo: 0.62,
    /// #     deflated_sharpe: 0.41, expected_max_sharpe: 0.04, best_sharpe: 0.05, best_trial: 7, logits: vec![] };
    /// assert_eq!(
    ///     o.reading(),
    ///     "PBO 0.62, DSR 0.41: the in-sample best is more likely than not below the out-of-sample \
    ///      median; its sharpe is not significant at 95% after 1100 trials"
    /// );
    /// ```
    pub fn reading(&self) -> String {
        let pbo = if self.pbo > 0.5 {
            "the in-sample best is more likely than not below the out-of-sample median"
        } else {
            "the in-sample best usually stays above the out-of-sample median"
        };
        let not = if self.deflated_sharpe >= 0.95 { "" } else { "not " };
        format!(
            "PBO {:.2}, DSR {:.2}: {pbo}; its sharpe is {not}significant at 95% after {} trials",
            self.pbo, self.deflated_sharpe, self.trials
        )
    }
}

/// Both statistics over the trials of `m`, with S = `blocks` CSCV blocks.
///
/// Refuses, with the reason as a typed error, an invalid S ([`Error::InvalidBlocks`]),
/// fewer than 2 trials ([`Error::TooFewTrials`]), fewer than 2·S returns
/// ([`Error::TooFewReturns`]), and a degenerate deflated Sharpe
/// ([`Error::DegenerateDeflatedSharpe`], see [`deflated_sharpe`]).
pub fn compute(m: &ReturnMatrix, blocks: usize) -> Result<Overfitting, Error> {
    check_blocks(blocks)?;
    if m.trials() < 2 {
        return Err(Error::TooFewTrials(m.trials()));
    }
    if m.returns() < 2 * blocks {
        return Err(Error::TooFewReturns { got: m.returns(), needed: 2 * blocks, why: "cscv needs 2 per block" });
    }
    let d = deflated_sharpe(m)?;
    let p = pbo(m, blocks)?;
    Ok(Overfitting::of(m.trials(), m.returns(), blocks, d, p))
}

/// [`compute`] from each trial's [`TrialMoments`] (in trial-id order, all of the same T, built
/// for S = `blocks`) and the T returns of the best trial ([`best_trial`]), which the deflated
/// sharpe's skewness and kurtosis need: the same bits as [`compute`] on the series, with the
/// series of one trial instead of all. Refuses as [`compute`] does, and best returns that are
/// not the best trial's ([`Error::BestReturnsMismatch`]).
pub fn compute_from_moments(
    trials: &[TrialMoments],
    blocks: usize,
    best_returns: &[f64],
) -> Result<Overfitting, Error> {
    check_blocks(blocks)?;
    if trials.len() < 2 {
        return Err(Error::TooFewTrials(trials.len()));
    }
    let t = trials[0].returns;
    if t < 2 * blocks {
        return Err(Error::TooFewReturns { got: t, needed: 2 * blocks, why: "cscv needs 2 per block" });
    }
    if let Some((index, &value)) = best_returns.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite { trial: best_trial(trials), index, value });
    }
    let sharpes: Vec<f64> = trials.iter().map(|m| m.sharpe).collect();
    let p = pbo_from_moments(trials, blocks, None)?;
    let d = deflated::deflated_from_sharpes(&sharpes, t, best_returns)?;
    Ok(Overfitting::of(trials.len(), t, blocks, d, p))
}

impl Overfitting {
    fn of(trials: usize, returns: usize, blocks: usize, d: DeflatedSharpe, p: Pbo) -> Overfitting {
        Overfitting {
            trials,
            returns,
            cscv_blocks: blocks,
            pbo: p.pbo,
            deflated_sharpe: d.deflated_sharpe,
            expected_max_sharpe: d.expected_max_sharpe,
            best_sharpe: d.best_sharpe,
            best_trial: d.best_trial,
            logits: p.logits,
        }
    }
}
