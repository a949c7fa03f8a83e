//! The crate's one error type.

/// Why a statistic cannot be computed. Every message is one lowercase line that a caller
/// can print as is, or put in `"overfitting_skipped"`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trial's return series does not have the matrix's length.
    #[error("trial {trial} has {got} returns, but the matrix has {expected} per trial")]
    RaggedReturns {
        /// The trial (its position in the matrix).
        trial: usize,
        /// Its number of returns.
        got: usize,
        /// The matrix's number of returns per trial.
        expected: usize,
    },
    /// A return is NaN or infinite.
    #[error("trial {trial} has a non-finite return at {index}: {value}")]
    NonFinite {
        /// The trial (its position in the matrix).
        trial: usize,
        /// The return's index in its series.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A return series (one trial's, before it has a position) holds a NaN or infinity.
    #[error("a non-finite return at {index}: {value}")]
    NonFiniteReturn {
        /// The return's index in its series.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A trial's moments were built for another number of CSCV blocks.
    #[error("trial {trial}'s moments have {blocks} blocks, not {expected}")]
    InvalidMoments {
        /// The trial (its position).
        trial: usize,
        /// Its number of blocks.
        blocks: usize,
        /// The number asked for.
        expected: usize,
    },
    /// The returns given for the best trial are not the ones its moments came from.
    #[error("the best trial's returns ({got}) do not match its moments ({expected} returns, sharpe {sharpe})")]
    BestReturnsMismatch {
        /// How many returns were given.
        got: usize,
        /// T of its moments.
        expected: usize,
        /// The sharpe of its moments.
        sharpe: f64,
    },
    /// Fewer than 2 trials: there is no variance of sharpes and no ranking.
    #[error("fewer than 2 trials ({0})")]
    TooFewTrials(usize),
    /// Fewer returns than the statistic needs.
    #[error("fewer than {needed} returns ({got}), {why}")]
    TooFewReturns {
        /// How many there are.
        got: usize,
        /// How many are needed.
        needed: usize,
        /// What needs them.
        why: &'static str,
    },
    /// The number of CSCV blocks is odd, below 4 or above [`crate::MAX_CSCV_BLOCKS`].
    #[error("cscv blocks must be even, at least 4 and at most {max}, got {got}", max = crate::MAX_CSCV_BLOCKS)]
    InvalidBlocks {
        /// The number asked for.
        got: usize,
    },
    /// The deflated Sharpe ratio's denominator is not a positive real number.
    #[error(
        "the deflated sharpe is undefined: 1 - g3*sr + (g4-1)/4*sr^2 = {radicand} is not positive \
         (skewness {skewness}, kurtosis {kurtosis}, best sharpe {best_sharpe})"
    )]
    DegenerateDeflatedSharpe {
        /// The value under the square root.
        radicand: f64,
        /// g3 of the best trial's returns.
        skewness: f64,
        /// g4 of the best trial's returns.
        kurtosis: f64,
        /// SR*.
        best_sharpe: f64,
    },
    /// Walk-forward with fewer than 1 fold.
    #[error("walk-forward needs at least 1 fold, got {0}")]
    NoFolds(usize),
    /// Walk-forward segments would be shorter than needed.
    #[error(
        "{folds} folds cut {sessions} sessions into {segments} segments of {segment} sessions, \
         fewer than the {needed} needed"
    )]
    SegmentTooShort {
        /// K.
        folds: usize,
        /// T.
        sessions: usize,
        /// K + 1.
        segments: usize,
        /// The length of the shortest segment.
        segment: usize,
        /// The minimum asked for.
        needed: usize,
    },
}
