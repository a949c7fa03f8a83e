//! `TrialMoments`: what the statistics need of one trial's returns, computable where the
//! returns are (a worker), so that the series themselves never travel.

use crate::pbo::check_blocks;
use crate::sharpe::{block_moments, sharpe};
use crate::{Error, ReturnMatrix};

/// One trial's returns reduced to what [`crate::compute_from_moments`] reads: its per-period
/// sharpe over all T returns, and the mean and M2 of each of the S CSCV blocks (after the
/// first T mod S returns are dropped). Built by [`TrialMoments::of`] with the very functions
/// [`crate::compute`] applies to a [`ReturnMatrix`], so the statistics from moments are the
/// same bits as from the series: a trial of T returns costs 2·S + 1 numbers instead of T.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialMoments {
    /// T, the number of returns it was built from.
    pub returns: usize,
    /// Its per-period sharpe over all T returns ([`crate::sharpe()`]).
    pub sharpe: f64,
    /// Each block's mean, in block order.
    pub block_mean: Vec<f64>,
    /// Each block's sum of squared deviations, in block order.
    pub block_m2: Vec<f64>,
}

impl TrialMoments {
    /// The moments of `returns` for S = `blocks` CSCV blocks. Refuses an invalid S and a
    /// non-finite return ([`Error::NonFiniteReturn`]: the caller knows which trial it is).
    pub fn of(returns: &[f64], blocks: usize) -> Result<TrialMoments, Error> {
        check_blocks(blocks)?;
        if let Some((index, &value)) = returns.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteReturn { index, value });
        }
        Ok(TrialMoments::of_finite(returns, blocks))
    }

    /// [`TrialMoments::of`] for returns known finite and a checked S.
    pub(crate) fn of_finite(returns: &[f64], blocks: usize) -> TrialMoments {
        let t = returns.len();
        let (rows, dropped) = (t / blocks, t % blocks);
        let (mut block_mean, mut block_m2) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        for b in 0..blocks {
            let start = dropped + b * rows;
            let (mu, ss) = block_moments(&returns[start..start + rows]);
            block_mean.push(mu);
            block_m2.push(ss);
        }
        TrialMoments { returns: t, sharpe: sharpe(returns), block_mean, block_m2 }
    }

    /// The moments of every trial of `m`, in order.
    pub fn of_matrix(m: &ReturnMatrix, blocks: usize) -> Result<Vec<TrialMoments>, Error> {
        check_blocks(blocks)?;
        Ok(m.iter().map(|series| TrialMoments::of_finite(series, blocks)).collect())
    }

    /// The number of blocks these moments were built for.
    pub fn blocks(&self) -> usize {
        self.block_mean.len()
    }
}

/// The position of the best trial by sharpe, the lowest on a tie: the trial whose returns the
/// deflated sharpe's skewness and kurtosis come from.
pub fn best_trial(trials: &[TrialMoments]) -> usize {
    let mut best = 0;
    for (i, t) in trials.iter().enumerate() {
        if t.sharpe > trials[best].sharpe {
            best = i;
        }
    }
    best
}
