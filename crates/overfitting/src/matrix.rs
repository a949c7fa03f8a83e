//! `ReturnMatrix`: N trials' return series of one common length T, in trial-id order.

use crate::Error;

/// The T×N matrix M of the contract, stored trial by trial (each trial's T returns are
/// contiguous). Every value is finite and every trial has the same T: both are checked on
/// the way in, so the statistics can trust them.
#[derive(Clone, Debug, PartialEq)]
pub struct ReturnMatrix {
    trials: usize,
    returns: usize,
    data: Vec<f64>,
}

impl ReturnMatrix {
    /// An empty matrix whose trials will each hold `returns` returns.
    pub fn with_returns(returns: usize) -> ReturnMatrix {
        ReturnMatrix { trials: 0, returns, data: Vec::new() }
    }

    /// A matrix of the given series, in order (the position is the trial id). With no series,
    /// T is 0.
    pub fn from_trials<I, R>(series: I) -> Result<ReturnMatrix, Error>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[f64]>,
    {
        let mut series = series.into_iter().peekable();
        let returns = series.peek().map_or(0, |s| s.as_ref().len());
        let mut m = ReturnMatrix::with_returns(returns);
        for s in series {
            m.push(s.as_ref())?;
        }
        Ok(m)
    }

    /// Appends the next trial's series; it must have T finite returns.
    pub fn push(&mut self, series: &[f64]) -> Result<(), Error> {
        let trial = self.trials();
        if series.len() != self.returns {
            return Err(Error::RaggedReturns { trial, got: series.len(), expected: self.returns });
        }
        if let Some((index, &value)) = series.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite { trial, index, value });
        }
        self.data.extend_from_slice(series);
        self.trials += 1;
        Ok(())
    }

    /// N, the number of trials.
    pub fn trials(&self) -> usize {
        self.trials
    }

    /// T, the number of returns per trial.
    pub fn returns(&self) -> usize {
        self.returns
    }

    /// Trial `n`'s T returns. Panics if `n >= self.trials()`.
    pub fn trial(&self, n: usize) -> &[f64] {
        &self.data[n * self.returns..(n + 1) * self.returns]
    }

    /// The trials in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        (0..self.trials()).map(|n| self.trial(n))
    }

    /// A new matrix of the trials `ids`, in the order given (see [`crate::Sample`]).
    /// Panics if an id is out of range.
    pub fn select(&self, ids: &[usize]) -> ReturnMatrix {
        let mut data = Vec::with_capacity(ids.len() * self.returns);
        for &n in ids {
            data.extend_from_slice(self.trial(n));
        }
        ReturnMatrix { trials: ids.len(), returns: self.returns, data }
    }
}
