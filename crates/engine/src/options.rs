//! Run options: fidelity budget, session range and fee, and the evaluation window they imply.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::{Error, Market};

/// How to run one backtest: which sessions, at what fidelity, at what fee.
///
/// Build it with [`RunOptions::new_checked`]; [`crate::Backtester::run`] checks it again
/// (it may have crossed a process boundary) and checks the range against the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    budget: f64,
    sessions: Option<Range<usize>>,
    fee: f64,
}

impl Default for RunOptions {
    /// Budget 1.0, every session, fee 0.001.
    fn default() -> Self {
        RunOptions { budget: 1.0, sessions: None, fee: RunOptions::DEFAULT_FEE }
    }
}

impl RunOptions {
    /// The default fee rate on traded notional.
    pub const DEFAULT_FEE: f64 = 0.001;

    /// Checked constructor.
    ///
    /// - `budget ∈ (0, 1]`: evaluate the last `ceil(budget · T)` sessions of the range.
    /// - `sessions`: session indices `start..end`, `None` for all; must be non-empty. The
    ///   range bounds W only: indicators still warm up on bars before `start`, so a lower
    ///   budget is exactly the full-budget run over its last `ceil(b·T)` sessions.
    /// - `fee ∈ [0, 1)`: a rate on traded notional.
    pub fn new_checked(budget: f64, sessions: Option<Range<usize>>, fee: f64) -> Result<Self, Error> {
        let opts = RunOptions { budget, sessions, fee };
        opts.check()?;
        Ok(opts)
    }

    /// The fidelity budget.
    pub fn budget(&self) -> f64 {
        self.budget
    }

    /// The session range, `None` meaning every session.
    pub fn sessions(&self) -> Option<Range<usize>> {
        self.sessions.clone()
    }

    /// The fee rate.
    pub fn fee(&self) -> f64 {
        self.fee
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        // `!(x > 0)` also rejects NaN.
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return Err(Error::InvalidOptions(format!("budget must be in (0, 1], got {}", self.budget)));
        }
        if !(self.fee >= 0.0 && self.fee < 1.0) {
            return Err(Error::InvalidOptions(format!("fee must be in [0, 1), got {}", self.fee)));
        }
        if let Some(r) = &self.sessions
            && r.start >= r.end
        {
            return Err(Error::InvalidOptions(format!("session range {}..{} is empty", r.start, r.end)));
        }
        Ok(())
    }

    /// The evaluation window for `market`, after checking the range against it.
    pub(crate) fn window(&self, market: &Market<'_>) -> Result<Window, Error> {
        self.check()?;
        let n = market.n_sessions();
        let r = self.sessions.clone().unwrap_or(0..n);
        if r.end > n {
            return Err(Error::InvalidOptions(format!(
                "session range {}..{} exceeds the market's {n} sessions",
                r.start, r.end
            )));
        }
        let total = r.end - r.start;
        // ceil(b·T) with b ∈ (0, 1] lies in 1..=T; the clamp only guards float edge cases.
        let k = ((self.budget * total as f64).ceil() as usize).clamp(1, total);
        let sb = market.session_bounds;
        Ok(Window { bars: sb[r.end - k]..sb[r.end] })
    }
}

/// The evaluation window W, as bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) bars: Range<usize>,
}
