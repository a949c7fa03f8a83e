//! Run options: fidelity budget and kind, session range and fee, and the evaluation window
//! they imply.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

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
    /// Absent in tasks written before fidelities existed, which meant `recent`.
    #[serde(default)]
    fidelity: Fidelity,
}

impl Default for RunOptions {
    /// Budget 1.0, every session, fee 0.001, fidelity `recent`.
    fn default() -> Self {
        RunOptions { budget: 1.0, sessions: None, fee: RunOptions::DEFAULT_FEE, fidelity: Fidelity::Recent }
    }
}

/// What a budget `b < 1` evaluates, out of the `T` sessions of the range. Either way it
/// evaluates `k = ceil(b·T)` sessions (so the cost grows with `b`), and `b = 1` is the
/// plain full-range backtest, bit for bit.
///
/// - `recent`: the last `k` sessions, one window W (the crate docs' contract).
/// - `blocks`: `K = min(Fidelity::BLOCKS, k)` blocks spread evenly across the range, see
///   [`RunOptions::evaluated_sessions`] for the exact placement and the crate docs for how
///   the blocks' results combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fidelity {
    /// The most recent `ceil(b·T)` sessions.
    #[default]
    Recent,
    /// `ceil(b·T)` sessions in up to [`Fidelity::BLOCKS`] evenly spaced blocks.
    Blocks,
}

impl Fidelity {
    /// Every fidelity, in the order of [`Fidelity::NAMES`].
    pub const ALL: [Fidelity; 2] = [Fidelity::Recent, Fidelity::Blocks];
    /// The names accepted by [`Fidelity::from_str`] (`--fidelity NAME`).
    pub const NAMES: [&'static str; 2] = ["recent", "blocks"];
    /// The number of blocks of `blocks` (fewer when the budget covers fewer sessions).
    pub const BLOCKS: usize = 4;

    /// The name, as accepted by [`Fidelity::from_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Fidelity::Recent => "recent",
            Fidelity::Blocks => "blocks",
        }
    }
}

impl fmt::Display for Fidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fidelity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Fidelity::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            Error::InvalidOptions(format!("unknown fidelity `{s}`, expected one of {}", Fidelity::NAMES.join(", ")))
        })
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
        let opts = RunOptions { budget, sessions, fee, fidelity: Fidelity::Recent };
        opts.check()?;
        Ok(opts)
    }

    /// The same options with another fidelity (`recent` unless set).
    pub fn with_fidelity(mut self, fidelity: Fidelity) -> Self {
        self.fidelity = fidelity;
        self
    }

    /// The fidelity: what a budget below 1 evaluates.
    pub fn fidelity(&self) -> Fidelity {
        self.fidelity
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

    /// The session range and `k = ceil(b·T)`, after checking the range against `n_sessions`.
    fn range_and_count(&self, n_sessions: usize) -> Result<(Range<usize>, usize), Error> {
        self.check()?;
        let n = n_sessions;
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
        Ok((r, k))
    }

    /// The sessions evaluated on a market of `n_sessions` sessions, as sorted, disjoint,
    /// non-adjacent ranges (adjacent blocks merge: they are one backtest).
    ///
    /// With `T` sessions in the range `s..e`, `k = ceil(b·T)`:
    /// - `recent`: the one range `e−k..e`.
    /// - `blocks`: with `K = min(Fidelity::BLOCKS, k)` and the `G = T − k` skipped sessions
    ///   split into K gaps, one before each block, block `i ∈ 0..K` is
    ///   `s + ⌊(i+1)·G/K⌋ + ⌊i·k/K⌋ .. s + ⌊(i+1)·G/K⌋ + ⌊(i+1)·k/K⌋`. The blocks hold
    ///   `⌊k/K⌋` or `⌈k/K⌉` sessions each, `k` in all, the last one ends at `e`, and at
    ///   `b = 1` (no gaps) they merge into `s..e`.
    pub fn evaluated_sessions(&self, n_sessions: usize) -> Result<Vec<Range<usize>>, Error> {
        let (r, k) = self.range_and_count(n_sessions)?;
        Ok(match self.fidelity {
            Fidelity::Recent => std::iter::once(r.end - k..r.end).collect(),
            Fidelity::Blocks => {
                let (s, t) = (r.start, r.end - r.start);
                let (nb, gaps) = (Fidelity::BLOCKS.min(k), t - k);
                let mut out: Vec<Range<usize>> = Vec::with_capacity(nb);
                for i in 0..nb {
                    let lead = s + (i + 1) * gaps / nb;
                    let block = lead + i * k / nb..lead + (i + 1) * k / nb;
                    match out.last_mut() {
                        Some(prev) if prev.end == block.start => prev.end = block.end,
                        _ => out.push(block),
                    }
                }
                out
            }
        })
    }

    /// The evaluation window for `market` under `recent`, after checking the range against
    /// it.
    pub(crate) fn window(&self, market: &Market<'_>) -> Result<Window, Error> {
        let (r, k) = self.range_and_count(market.n_sessions())?;
        let sb = market.session_bounds;
        Ok(Window { bars: sb[r.end - k]..sb[r.end] })
    }

    /// The windows this fidelity evaluates on `market`, as bars, in order. One window is
    /// always exactly [`RunOptions::window`].
    pub(crate) fn windows(&self, market: &Market<'_>) -> Result<Vec<Window>, Error> {
        let sb = market.session_bounds;
        let sessions = self.evaluated_sessions(market.n_sessions())?;
        Ok(sessions.into_iter().map(|r| Window { bars: sb[r.start]..sb[r.end] }).collect())
    }
}

/// The evaluation window W, as bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) bars: Range<usize>,
}
