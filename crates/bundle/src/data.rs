//! The canonical content of a bundle: what is written, read back, hashed and verified.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar;
use crate::error::{Error, Result};

/// Bar frequency of a bundle. A bundle holds exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// One bar per session.
    Daily,
    /// One bar per minute, 09:31..16:00 New York time (390, or 210 on an early close).
    Minute,
}

impl Frequency {
    /// The name used on the command line and in the metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Minute => "minute",
        }
    }

    /// Bars per year used to annualise metrics: 252, or 252·390 for minute bars.
    pub fn periods_per_year(self) -> f64 {
        match self {
            Frequency::Daily => 252.0,
            Frequency::Minute => 252.0 * 390.0,
        }
    }

    /// Number of bars in the session on `date`.
    pub fn bars_in_session(self, date: NaiveDate) -> usize {
        match self {
            Frequency::Daily => 1,
            Frequency::Minute => calendar::minutes_in_session(date) as usize,
        }
    }
}

impl std::str::FromStr for Frequency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "daily" => Ok(Frequency::Daily),
            "minute" => Ok(Frequency::Minute),
            other => Err(Error::Invalid(format!("unknown frequency {other:?}: expected daily or minute"))),
        }
    }
}

/// One asset's identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetDef {
    /// Ticker symbol. Sids are assigned in sorted symbol order.
    pub symbol: String,
    /// Descriptive name.
    pub asset_name: String,
    /// Listing exchange, `XNYS` for every bundle btopt writes.
    pub exchange: String,
    /// Shares outstanding, in current (post-split) shares; 0 when unknown.
    pub shares_outstanding: f64,
}

/// Raw (unadjusted) bars of one asset, dense on the bundle's bar grid from `first_bar`.
///
/// "Dense" means one bar for every grid position from the first bar to the last: ingest
/// forward-fills interior gaps (see `csvdir`), so nothing downstream handles holes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBars {
    /// Global bar index of the first bar.
    pub first_bar: usize,
    /// Opens.
    pub open: Vec<f64>,
    /// Highs.
    pub high: Vec<f64>,
    /// Lows.
    pub low: Vec<f64>,
    /// Closes.
    pub close: Vec<f64>,
    /// Volumes.
    pub volume: Vec<f64>,
}

impl RawBars {
    /// Number of bars.
    pub fn len(&self) -> usize {
        self.close.len()
    }
    /// Whether there are no bars.
    pub fn is_empty(&self) -> bool {
        self.close.is_empty()
    }
    /// One past the global index of the last bar.
    pub fn end_bar(&self) -> usize {
        self.first_bar + self.len()
    }
    pub(crate) fn push(&mut self, o: f64, h: f64, l: f64, c: f64, v: f64) {
        self.open.push(o);
        self.high.push(h);
        self.low.push(l);
        self.close.push(c);
        self.volume.push(v);
    }
}

/// A split: from `date` on, one old share is `1/ratio` new shares (zipline's convention: a
/// 2-for-1 split has ratio 0.5, which multiplies prices before `date`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Asset.
    pub sid: u32,
    /// First session trading on the new share basis.
    pub effective_date: NaiveDate,
    /// Price multiplier for earlier bars, in (0, ∞).
    pub ratio: f64,
}

/// A cash dividend per share, with `ex_date` as its ex-date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dividend {
    /// Asset.
    pub sid: u32,
    /// Ex-dividend session.
    pub ex_date: NaiveDate,
    /// Cash per share, > 0.
    pub amount: f64,
}

/// Everything a bundle holds. This is what writers produce and what `verify` reads back.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleData {
    /// Bar frequency.
    pub frequency: Frequency,
    /// Calendar sessions covered, ascending and contiguous on XNYS.
    pub sessions: Vec<NaiveDate>,
    /// Free text saying where the data came from. Not part of the content hash.
    pub provenance: String,
    /// Assets, indexed by sid.
    pub assets: Vec<AssetDef>,
    /// Raw bars, indexed by sid.
    pub bars: Vec<RawBars>,
    /// Splits, sorted by (sid, effective_date).
    pub splits: Vec<Split>,
    /// Dividends, sorted by (sid, ex_date).
    pub dividends: Vec<Dividend>,
}

/// Bar offsets of each session on the bundle's grid: `len = sessions + 1`, last = total bars.
pub fn session_bounds(frequency: Frequency, sessions: &[NaiveDate]) -> Vec<usize> {
    let mut bounds = Vec::with_capacity(sessions.len() + 1);
    let mut at = 0;
    bounds.push(0);
    for s in sessions {
        at += frequency.bars_in_session(*s);
        bounds.push(at);
    }
    bounds
}

/// Price and volume multipliers of one asset's back-adjustment, per bar of its series.
pub(crate) struct Adjustment {
    pub(crate) price: Vec<f64>,
    pub(crate) volume: Vec<f64>,
}

impl BundleData {
    /// Bar offsets of each session (see [`session_bounds`]).
    pub fn session_bounds(&self) -> Vec<usize> {
        session_bounds(self.frequency, &self.sessions)
    }

    /// Index of `date` among the sessions, if it is one.
    pub fn session_index(&self, date: NaiveDate) -> Option<usize> {
        self.sessions.binary_search(&date).ok()
    }

    /// Checks every invariant of the format. `where_` names the thing being checked (a
    /// directory or a database file) so that the error says where the problem is.
    pub fn validate(&self, where_: &std::path::Path) -> Result<()> {
        let bad = |msg: String| Error::at_path(where_, msg);
        if self.sessions.is_empty() {
            return Err(bad("bundle has no sessions".into()));
        }
        let (first, last) = (self.sessions[0], *self.sessions.last().expect("non-empty"));
        if !calendar::supports(first) || !calendar::supports(last) {
            return Err(bad(format!(
                "sessions {first}..{last} are outside the supported calendar years {}..{}",
                calendar::FIRST_YEAR,
                calendar::LAST_YEAR
            )));
        }
        if calendar::sessions_between(first, last) != self.sessions {
            return Err(bad("sessions are not exactly the XNYS sessions of their range".into()));
        }
        if self.assets.len() != self.bars.len() {
            return Err(bad("asset and bar counts differ".into()));
        }
        if self.assets.is_empty() {
            return Err(bad("bundle has no assets".into()));
        }
        for w in self.assets.windows(2) {
            if w[0].symbol >= w[1].symbol {
                return Err(bad(format!("symbols not in sorted unique order at {:?}", w[1].symbol)));
            }
        }
        let bounds = self.session_bounds();
        let n_bars = *bounds.last().expect("bounds non-empty");
        for (sid, (asset, bars)) in self.assets.iter().zip(&self.bars).enumerate() {
            let what = |i: usize, msg: &str| {
                let bar = bars.first_bar + i;
                let s = bounds.partition_point(|&b| b <= bar) - 1;
                bad(format!(
                    "{} (sid {sid}) bar {} of session {}: {msg}",
                    asset.symbol,
                    bar - bounds[s],
                    self.sessions[s]
                ))
            };
            if bars.is_empty() {
                return Err(bad(format!("{} (sid {sid}) has no bars", asset.symbol)));
            }
            if bars.end_bar() > n_bars
                || [&bars.open, &bars.high, &bars.low, &bars.volume].iter().any(|c| c.len() != bars.len())
            {
                return Err(bad(format!("{} (sid {sid}) bars do not fit the session grid", asset.symbol)));
            }
            for i in 0..bars.len() {
                let (o, h, l, c, v) = (bars.open[i], bars.high[i], bars.low[i], bars.close[i], bars.volume[i]);
                check_bar(o, h, l, c, v).map_err(|m| what(i, &m))?;
            }
            if !(asset.shares_outstanding.is_finite() && asset.shares_outstanding >= 0.0) {
                return Err(bad(format!("{} (sid {sid}) has invalid shares_outstanding", asset.symbol)));
            }
        }
        let n = self.assets.len() as u32;
        for s in &self.splits {
            if s.sid >= n || !(s.ratio.is_finite() && s.ratio > 0.0) {
                return Err(bad(format!(
                    "split sid {} on {}: ratio must be > 0 and sid known",
                    s.sid, s.effective_date
                )));
            }
            self.check_event_inside(s.sid, s.effective_date, &bounds).map_err(|m| bad(format!("split {m}")))?;
        }
        for d in &self.dividends {
            if d.sid >= n || !(d.amount.is_finite() && d.amount > 0.0) {
                return Err(bad(format!("dividend sid {} on {}: amount must be > 0 and sid known", d.sid, d.ex_date)));
            }
            self.check_event_inside(d.sid, d.ex_date, &bounds).map_err(|m| bad(format!("dividend {m}")))?;
        }
        if !self.splits.is_sorted_by_key(|s| (s.sid, s.effective_date))
            || !self.dividends.is_sorted_by_key(|d| (d.sid, d.ex_date))
        {
            return Err(bad("adjustments are not sorted by (sid, date)".into()));
        }
        // The back-adjustment must produce usable prices (a dividend larger than the previous
        // close would make them negative).
        for sid in 0..self.assets.len() {
            let adj = self.adjustment(sid as u32);
            if adj.price.iter().any(|m| !(m.is_finite() && *m > 0.0)) {
                return Err(bad(format!(
                    "{} (sid {sid}): a dividend is not smaller than the previous close",
                    self.assets[sid].symbol
                )));
            }
        }
        Ok(())
    }

    /// An adjustment must fall on a session after the asset's first bar and not after its last.
    fn check_event_inside(&self, sid: u32, date: NaiveDate, bounds: &[usize]) -> std::result::Result<(), String> {
        let Some(s) = self.session_index(date) else {
            return Err(format!("sid {sid} on {date}: not a session of the bundle"));
        };
        let bars = &self.bars[sid as usize];
        if bounds[s] <= bars.first_bar || bounds[s] >= bars.end_bar() {
            return Err(format!(
                "sid {sid} on {date}: must fall after the asset's first bar and on or before its last session"
            ));
        }
        Ok(())
    }

    /// Back-adjustment multipliers for one asset: each split or dividend multiplies every
    /// earlier bar's prices by its ratio; splits divide earlier volumes by theirs.
    ///
    /// A dividend's ratio is `1 − amount / previous close`, the previous close being the raw
    /// close of the bar just before the ex-date's first bar.
    pub(crate) fn adjustment(&self, sid: u32) -> Adjustment {
        let bars = &self.bars[sid as usize];
        let bounds = self.session_bounds();
        // (first bar of the event's session, relative to the series; price ratio; volume ratio)
        let mut events: Vec<(usize, f64, f64)> = Vec::new();
        for s in self.splits.iter().filter(|s| s.sid == sid) {
            if let Some(i) = self.session_index(s.effective_date) {
                events.push((bounds[i] - bars.first_bar, s.ratio, 1.0 / s.ratio));
            }
        }
        for d in self.dividends.iter().filter(|d| d.sid == sid) {
            if let Some(i) = self.session_index(d.ex_date) {
                let at = bounds[i] - bars.first_bar;
                let prev_close = bars.close[at - 1];
                events.push((at, 1.0 - d.amount / prev_close, 1.0));
            }
        }
        // Walk backwards from the last bar, so that the cumulative product is formed in one
        // fixed order (latest event first) and is bit-reproducible.
        events.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)));
        let n = bars.len();
        let (mut price, mut volume) = (vec![1.0; n], vec![1.0; n]);
        let (mut pm, mut vm) = (1.0f64, 1.0f64);
        let mut next = events.iter().peekable();
        for i in (0..n).rev() {
            while let Some(&&(at, pr, vr)) = next.peek() {
                if at > i {
                    pm *= pr;
                    vm *= vr;
                    next.next();
                } else {
                    break;
                }
            }
            price[i] = pm;
            volume[i] = vm;
        }
        Adjustment { price, volume }
    }

    /// The content hash: blake3 over a canonical byte stream of everything but the
    /// provenance. Two bundles with the same hash give the same backtests.
    pub fn content_hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"btopt-bundle/1\0");
        h.update(self.frequency.as_str().as_bytes());
        h.update(&(self.sessions.len() as u64).to_le_bytes());
        for s in &self.sessions {
            h.update(s.to_string().as_bytes());
        }
        h.update(&(self.assets.len() as u64).to_le_bytes());
        for (a, b) in self.assets.iter().zip(&self.bars) {
            for s in [&a.symbol, &a.asset_name, &a.exchange] {
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            h.update(&a.shares_outstanding.to_le_bytes());
            h.update(&(b.first_bar as u64).to_le_bytes());
            h.update(&(b.len() as u64).to_le_bytes());
            for col in [&b.open, &b.high, &b.low, &b.close, &b.volume] {
                for v in col.iter() {
                    h.update(&v.to_le_bytes());
                }
            }
        }
        h.update(&(self.splits.len() as u64).to_le_bytes());
        for s in &self.splits {
            h.update(&s.sid.to_le_bytes());
            h.update(s.effective_date.to_string().as_bytes());
            h.update(&s.ratio.to_le_bytes());
        }
        h.update(&(self.dividends.len() as u64).to_le_bytes());
        for d in &self.dividends {
            h.update(&d.sid.to_le_bytes());
            h.update(d.ex_date.to_string().as_bytes());
            h.update(&d.amount.to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// Checks one bar's values; the message says which rule failed.
pub(crate) fn check_bar(o: f64, h: f64, l: f64, c: f64, v: f64) -> std::result::Result<(), String> {
    for (name, x) in [("open", o), ("high", h), ("low", l), ("close", c)] {
        if x.is_nan() {
            return Err(format!("{name} is NaN"));
        }
        if !(x.is_finite() && x > 0.0) {
            return Err(format!("{name} {x} is not a positive finite price"));
        }
    }
    if h < o.max(c) {
        return Err(format!("high {h} is below max(open, close) {}", o.max(c)));
    }
    if l > o.min(c) {
        return Err(format!("low {l} is above min(open, close) {}", o.min(c)));
    }
    if v.is_nan() || v < 0.0 || v.is_infinite() {
        return Err(format!("volume {v} is negative or not finite"));
    }
    Ok(())
}
