//! The borrowed view of market data that every backtest reads.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Read-only market data for one backtest worker: a session calendar and, per asset,
/// back-adjusted open, high, low and close columns on a shared bar axis.
///
/// The engine never loads data itself. Glue code elsewhere builds a `Market` once per worker
/// from the in-memory bundle, borrowing its columns, so the engine knows nothing about
/// bundles, files or SQLite.
#[derive(Debug, Clone)]
pub struct Market<'a> {
    /// Bars per year used to annualise metrics: 252 for daily, 252·390 for minute bars.
    pub periods_per_year: f64,
    /// Bar offset where each session starts, plus the bar count at the end
    /// (`len = n_sessions + 1`). Daily bars give `0, 1, 2, …, n`.
    pub session_bounds: &'a [usize],
    /// The assets, conventionally in sid order. Results never depend on this order: the
    /// engine sorts by sid itself.
    pub assets: Vec<AssetSeries<'a>>,
}

/// One asset's columns on the market's bar axis.
#[derive(Debug, Clone, Copy)]
pub struct AssetSeries<'a> {
    /// Stable asset id; ties in momentum selection go to the lower sid.
    pub sid: u32,
    /// Back-adjusted opens, `len = n_bars`; only `first_bar..end_bar` is meaningful.
    pub open: &'a [f64],
    /// Back-adjusted highs (same factors as the closes), same layout as `open`.
    pub high: &'a [f64],
    /// Back-adjusted lows, same layout as `open`.
    pub low: &'a [f64],
    /// Back-adjusted closes, same layout as `open`.
    pub close: &'a [f64],
    /// First bar on which the asset trades.
    pub first_bar: usize,
    /// One past the last bar on which the asset trades (no interior gaps).
    pub end_bar: usize,
    /// Shares outstanding; market-cap weighting uses `close · shares_outstanding`.
    pub shares_outstanding: f64,
}

impl<'a> AssetSeries<'a> {
    /// An asset trading on `bars` of the shared axis.
    pub fn new(
        sid: u32,
        open: &'a [f64],
        high: &'a [f64],
        low: &'a [f64],
        close: &'a [f64],
        bars: std::ops::Range<usize>,
        shares_outstanding: f64,
    ) -> AssetSeries<'a> {
        AssetSeries { sid, open, high, low, close, first_bar: bars.start, end_bar: bars.end, shares_outstanding }
    }
}

/// A market's bar frequency, as strategies declare what they support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// One bar per session.
    Daily,
    /// Several bars per session (390 on a full day of minute bars).
    Minute,
}

impl Frequency {
    /// `"daily"` or `"minute"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Minute => "minute",
        }
    }
}

/// The first index of `col` that is not a finite positive price.
///
/// Branch-free over blocks (which the compiler vectorises), then exact within the block that
/// fails: a whole minute bundle's check is a few milliseconds, not tens (it runs once per
/// process that loads a bundle).
fn first_non_positive_or_non_finite(col: &[f64]) -> Option<usize> {
    const BLOCK: usize = 512;
    // NaN fails both comparisons; +inf fails the second.
    let good = |p: f64| (p > 0.0) & (p <= f64::MAX);
    for (b, block) in col.chunks(BLOCK).enumerate() {
        if !block.iter().fold(true, |ok, &p| ok & good(p)) {
            return block.iter().position(|&p| !good(p)).map(|i| b * BLOCK + i);
        }
    }
    None
}

impl<'a> Market<'a> {
    /// Builds a market and checks everything, prices included: lengths, bounds, unique sids,
    /// and finite positive opens, highs, lows and closes on every traded bar.
    ///
    /// This is O(bars); call it once per worker. [`crate::Backtester::new`] repeats only
    /// the O(assets + sessions) structural checks.
    pub fn new_checked(
        periods_per_year: f64,
        session_bounds: &'a [usize],
        assets: Vec<AssetSeries<'a>>,
    ) -> Result<Self, Error> {
        let market = Market { periods_per_year, session_bounds, assets };
        market.check_structure()?;
        for a in &market.assets {
            let r = a.first_bar..a.end_bar;
            let cols = [
                ("open", &a.open[r.clone()]),
                ("high", &a.high[r.clone()]),
                ("low", &a.low[r.clone()]),
                ("close", &a.close[r.clone()]),
            ];
            for (name, col) in cols {
                if let Some(i) = first_non_positive_or_non_finite(col) {
                    return Err(Error::InvalidMarket(format!(
                        "sid {} has {name} {} on bar {}, expected a finite positive price",
                        a.sid,
                        col[i],
                        a.first_bar + i
                    )));
                }
            }
        }
        Ok(market)
    }

    /// The positions of the assets in sid order: the order every per-asset loop of a backtest
    /// and every shared table follows.
    pub(crate) fn sid_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.assets.len()).collect();
        order.sort_unstable_by_key(|&i| self.assets[i].sid);
        order
    }

    /// Number of bars on the shared axis.
    pub fn n_bars(&self) -> usize {
        self.session_bounds.last().copied().unwrap_or(0)
    }

    /// Number of sessions.
    pub fn n_sessions(&self) -> usize {
        self.session_bounds.len().saturating_sub(1)
    }

    /// True when every session is exactly one bar (a daily market).
    pub fn is_daily(&self) -> bool {
        self.n_bars() == self.n_sessions()
    }

    /// Daily when every session is one bar, minute otherwise.
    pub fn frequency(&self) -> Frequency {
        if self.is_daily() { Frequency::Daily } else { Frequency::Minute }
    }

    /// The O(assets + sessions) checks that indexing later relies on.
    pub(crate) fn check_structure(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidMarket(msg));
        if !(self.periods_per_year.is_finite() && self.periods_per_year > 0.0) {
            return bad(format!("periods_per_year is {}, expected > 0", self.periods_per_year));
        }
        let sb = self.session_bounds;
        if sb.len() < 2 || sb[0] != 0 {
            return bad("session_bounds must start at 0 and hold at least one session".into());
        }
        if let Some(i) = sb.windows(2).position(|w| w[0] >= w[1]) {
            return bad(format!("session {i} is empty or session_bounds is not increasing"));
        }
        let n = self.n_bars();
        let mut sids: Vec<u32> = Vec::with_capacity(self.assets.len());
        for a in &self.assets {
            if [a.open.len(), a.high.len(), a.low.len(), a.close.len()] != [n; 4] {
                return bad(format!(
                    "sid {} has {} opens, {} highs, {} lows and {} closes, expected {n} each",
                    a.sid,
                    a.open.len(),
                    a.high.len(),
                    a.low.len(),
                    a.close.len()
                ));
            }
            if a.first_bar > a.end_bar || a.end_bar > n {
                return bad(format!("sid {} trades on bars {}..{}, outside 0..{n}", a.sid, a.first_bar, a.end_bar));
            }
            sids.push(a.sid);
        }
        sids.sort_unstable();
        if let Some(w) = sids.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("sid {} appears twice", w[0]));
        }
        Ok(())
    }
}
