//! `channel-breakout`: an example strategy that lives outside btopt's crates, and the whole
//! btopt CLI around it (see this folder's README for the walk-through).
//!
//! Per asset, long/flat, with independent 1/N slices and the MA crossover's fills and
//! metrics (design-notes section 6). On the close of bar `t`:
//! - long if `close_t` is above the highest high of the `entry_window` bars before `t`;
//! - flat if `close_t` is below the lowest low of the `exit_window` bars before `t`;
//! - otherwise the previous target holds.
//!
//! A condition is tested only once its window of earlier bars of that asset exists. Both
//! windows contain bar `t − 1`, whose low is at most its high, so the two conditions exclude
//! each other. Prices are back-adjusted highs, lows and closes.
//!
//! ```
//! let strategies = engine::Registry::builtin().with(channel_breakout::ChannelBreakout);
//! let pairs = [("entry_window".to_string(), "20".to_string())];
//! let configured = strategies.configure("channel-breakout", &pairs)?;
//! assert_eq!(configured.to_pairs()[1], ("exit_window", "10".to_string()));
//! # Ok::<(), engine::Error>(())
//! ```

use engine::{Error, Metrics, ParamKind, ParamSpec, ParamValues, Run, Strategy};

/// The strategy: register it with `Registry::with(ChannelBreakout)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelBreakout;

/// Its typed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Bars of highs before `t` that a close must exceed to go long.
    pub entry_window: usize,
    /// Bars of lows before `t` that a close must fall below to go flat.
    pub exit_window: usize,
}

const PARAMETERS: &[ParamSpec] = &[
    ParamSpec {
        name: "entry_window",
        kind: ParamKind::Integer { default: 20, min: 1, max: None },
        doc: "bars of highs before t that the close must exceed to go long",
    },
    ParamSpec {
        name: "exit_window",
        kind: ParamKind::Integer { default: 10, min: 1, max: None },
        doc: "bars of lows before t that the close must fall below to go flat",
    },
];

/// Per-asset channel bounds, reused across backtests: `upper[j]` is the highest high of the
/// `entry_window` bars before bar `first_bar + j` (NaN while that window is incomplete), and
/// `lower[j]` likewise the lowest low.
#[derive(Debug, Default)]
pub struct Scratch {
    upper: Vec<Vec<f64>>,
    lower: Vec<Vec<f64>>,
}

impl Strategy for ChannelBreakout {
    type Params = Params;
    type Scratch = Scratch;

    fn name(&self) -> &'static str {
        "channel-breakout"
    }

    fn parameters(&self) -> &'static [ParamSpec] {
        PARAMETERS
    }

    fn build(&self, v: &ParamValues) -> Result<Params, Error> {
        Ok(Params { entry_window: v.int(0) as usize, exit_window: v.int(1) as usize })
    }

    fn run(&self, p: &Params, run: &mut Run<'_, '_>, s: &mut Scratch) -> Result<Metrics, Error> {
        // The assets in sid order; the signal below reads them while `long_flat` runs.
        let assets: Vec<_> = (0..run.n_assets()).map(|k| run.asset(k)).collect();
        s.upper.resize_with(assets.len(), Vec::new);
        s.lower.resize_with(assets.len(), Vec::new);
        for (k, a) in assets.iter().enumerate() {
            let span = a.first_bar..a.end_bar;
            rolling_before(&a.high[span.clone()], p.entry_window, &mut s.upper[k], |x, y| x >= y);
            rolling_before(&a.low[span], p.exit_window, &mut s.lower[k], |x, y| x <= y);
        }
        let (upper, lower) = (&s.upper, &s.lower);
        Ok(run.long_flat(|k, t| {
            let (j, c) = (t - assets[k].first_bar, assets[k].close[t]);
            // NaN bounds (an incomplete window) compare false: no signal.
            if c > upper[k][j] {
                Some(true)
            } else if c < lower[k][j] {
                Some(false)
            } else {
                None
            }
        }))
    }
}

/// `out[j]` = the extreme (by `keeps(x, y)`: x dominates y) of `x[j-w..j]`, NaN for `j < w`:
/// a monotonic deque, O(len).
fn rolling_before(x: &[f64], w: usize, out: &mut Vec<f64>, keeps: impl Fn(f64, f64) -> bool) {
    out.clear();
    out.resize(x.len(), f64::NAN);
    let mut deque = std::collections::VecDeque::with_capacity(w.min(x.len()) + 1);
    for j in 0..x.len() {
        // The window for j is x[j-w..j]: push x[j-1], drop what fell out.
        if j >= 1 {
            let v = x[j - 1];
            while deque.back().is_some_and(|&b: &usize| keeps(v, x[b])) {
                deque.pop_back();
            }
            deque.push_back(j - 1);
        }
        while deque.front().is_some_and(|&f| f + w < j) {
            deque.pop_front();
        }
        if j >= w {
            out[j] = x[*deque.front().expect("the window holds w bars")];
        }
    }
}
