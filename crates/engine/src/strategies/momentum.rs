//! `momentum`: periodic top-N rebalancing by lookback return, shared cash (daily bars only).
//!
//! Two kernels compute the same bits. The reference kernel here is the contract written out
//! step by step over every asset; a backtester without cache capacity (so [`crate::run`])
//! uses it. A backtester with a cache runs `mom_fast`, which shares score/volatility tables
//! and selections across backtests and visits only held or targeted assets.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::mom_fast::MomCache;
use crate::market::Frequency;
use crate::metrics::Metrics;
use crate::params::{ParamKind, ParamSpec, ParamValues};
use crate::run::Run;
use crate::{Error, Market, Strategy};

/// The `momentum` strategy: the guidance's 8-parameter Option 2 (design-notes, "Momentum").
#[derive(Debug, Clone, Copy, Default)]
pub struct MomentumStrategy;

/// How momentum weights its target set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightingScheme {
    /// `1/k` each.
    Equal,
    /// `close · shares_outstanding`, normalised.
    MarketCap,
    /// `1/vol`, normalised.
    RiskParity,
}

impl WeightingScheme {
    /// The name used in `--set weighting_scheme=…` and in space files.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightingScheme::Equal => "equal",
            WeightingScheme::MarketCap => "market_cap",
            WeightingScheme::RiskParity => "risk_parity",
        }
    }
}

/// Momentum parameters (the guidance's 8-parameter Option 2). Daily markets only.
///
/// Defaults, chosen inside the guidance's search ranges so that a bare run is sensible:
/// lookback_period 60, holding_period 5, rebalance_frequency 5, weighting_scheme equal,
/// top_n_assets 10, volatility_threshold 0.5, min_position_size 1, max_position_size 20.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Momentum {
    /// Sessions in the score and volatility lookback, ≥ 2 (volatility needs two returns).
    pub lookback_period: usize,
    /// Minimum sessions a new position stays in the target set, ≥ 1.
    pub holding_period: usize,
    /// Sessions between rebalances, ≥ 1.
    pub rebalance_frequency: usize,
    /// Weighting over the target set.
    pub weighting_scheme: WeightingScheme,
    /// How many assets to select, ≥ 1.
    pub top_n_assets: usize,
    /// Annualised volatility above which an asset is excluded, > 0.
    pub volatility_threshold: f64,
    /// Weights below this percent of portfolio value are dropped, ≥ 0.
    pub min_position_size: f64,
    /// Weights are capped at this percent of portfolio value, > 0.
    pub max_position_size: f64,
}

impl Default for Momentum {
    fn default() -> Self {
        Momentum {
            lookback_period: 60,
            holding_period: 5,
            rebalance_frequency: 5,
            weighting_scheme: WeightingScheme::Equal,
            top_n_assets: 10,
            volatility_threshold: 0.5,
            min_position_size: 1.0,
            max_position_size: 20.0,
        }
    }
}

const SCHEMES: [WeightingScheme; 3] = [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity];

const PARAMETERS: &[ParamSpec] = &[
    ParamSpec {
        name: "lookback_period",
        kind: ParamKind::Integer { default: 60, min: 2, max: None },
        doc: "sessions in the score and volatility lookback (volatility needs two returns)",
    },
    ParamSpec {
        name: "holding_period",
        kind: ParamKind::Integer { default: 5, min: 1, max: None },
        doc: "minimum sessions a new position stays in the target set",
    },
    ParamSpec {
        name: "rebalance_frequency",
        kind: ParamKind::Integer { default: 5, min: 1, max: None },
        doc: "sessions between rebalances; the first is W's first session",
    },
    ParamSpec {
        name: "weighting_scheme",
        kind: ParamKind::Categorical { default: 0, choices: &["equal", "market_cap", "risk_parity"] },
        doc: "weights over the target set: 1/k, close times shares outstanding, or 1/vol",
    },
    ParamSpec {
        name: "top_n_assets",
        kind: ParamKind::Integer { default: 10, min: 1, max: None },
        doc: "how many assets to select by score",
    },
    ParamSpec {
        name: "volatility_threshold",
        kind: ParamKind::Float { default: 0.5, min: Bound::Excluded(0.0), max: Bound::Unbounded },
        doc: "annualised volatility above which an asset is excluded",
    },
    ParamSpec {
        name: "min_position_size",
        kind: ParamKind::Float { default: 1.0, min: Bound::Included(0.0), max: Bound::Unbounded },
        doc: "weights below this percent of portfolio value are dropped",
    },
    ParamSpec {
        name: "max_position_size",
        kind: ParamKind::Float { default: 20.0, min: Bound::Excluded(0.0), max: Bound::Unbounded },
        doc: "weights are capped at this percent of portfolio value",
    },
];

impl Strategy for MomentumStrategy {
    type Params = Momentum;
    type Scratch = MomScratch;

    fn name(&self) -> &'static str {
        "momentum"
    }

    fn frequencies(&self) -> &'static [Frequency] {
        &[Frequency::Daily]
    }

    fn parameters(&self) -> &'static [ParamSpec] {
        PARAMETERS
    }

    fn build(&self, v: &ParamValues) -> Result<Momentum, Error> {
        Ok(Momentum {
            lookback_period: v.int(0) as usize,
            holding_period: v.int(1) as usize,
            rebalance_frequency: v.int(2) as usize,
            weighting_scheme: SCHEMES[usize::from(v.choice(3))],
            top_n_assets: v.int(4) as usize,
            volatility_threshold: v.float(5),
            min_position_size: v.float(6),
            max_position_size: v.float(7),
        })
    }

    fn run(&self, p: &Momentum, run: &mut Run<'_, '_>, scratch: &mut MomScratch) -> Result<Metrics, Error> {
        run_momentum(run, p, scratch)
    }

    fn warmup(&self, p: &Momentum) -> usize {
        p.lookback_period + 1
    }

    fn momentum_lookbacks(&self) -> &'static [&'static str] {
        &["lookback_period"]
    }
}
/// Marks an asset that is not held.
const NOT_HELD: usize = usize::MAX;

/// Per-asset buffers reused across backtests, indexed by position in sid order (the
/// strategy's scratch).
#[derive(Default)]
pub struct MomScratch {
    /// The cached kernel's state, made on the first run with cache capacity.
    fast: Option<MomCache>,
    /// A trace asked for before `fast` existed.
    trace_pending: bool,
    shares: Vec<f64>,
    /// Bar of the fill that opened the position, or `NOT_HELD`.
    entry: Vec<usize>,
    target: Vec<f64>,
    target_shares: Vec<f64>,
    score: Vec<f64>,
    vol: Vec<f64>,
    eligible: Vec<bool>,
    in_set: Vec<bool>,
    candidates: Vec<usize>,
    /// Positions with shares, in sid order.
    held: Vec<usize>,
    equity: Vec<f64>,
}

impl MomScratch {
    /// Starts (or stops) recording each decision's weights before the position bounds
    /// (cached kernel only; see `mom_batch`).
    pub(crate) fn set_trace(&mut self, on: bool) {
        if let Some(f) = &mut self.fast {
            f.trace = on.then(Vec::new);
        } else if on {
            self.trace_pending = true;
        }
    }

    /// The weights recorded since `set_trace(true)`, and stops recording.
    pub(crate) fn take_trace(&mut self) -> Vec<f64> {
        self.trace_pending = false;
        self.fast.as_mut().and_then(|f| f.trace.take()).unwrap_or_default()
    }
}

fn run_momentum(run: &mut Run<'_, '_>, p: &Momentum, s: &mut MomScratch) -> Result<Metrics, Error> {
    let (market, order, fee) = (run.market, run.order, run.fee);
    if p.weighting_scheme == WeightingScheme::MarketCap
        && let Some(a) =
            market.assets.iter().find(|a| !(a.shares_outstanding.is_finite() && a.shares_outstanding > 0.0))
    {
        return Err(Error::InvalidMarket(format!(
            "market_cap weighting needs positive shares_outstanding, sid {} has {}",
            a.sid, a.shares_outstanding
        )));
    }
    let capacity = run.sma.capacity();
    if capacity > 0 {
        let fast = s.fast.get_or_insert_with(|| MomCache::new(capacity));
        if std::mem::take(&mut s.trace_pending) {
            fast.trace = Some(Vec::new());
        }
        return Ok(super::mom_fast::run(run, p, fast));
    }
    let n = order.len();
    for v in [&mut s.shares, &mut s.target, &mut s.target_shares, &mut s.score, &mut s.vol] {
        v.clear();
        v.resize(n, 0.0);
    }
    s.entry.clear();
    s.entry.resize(n, NOT_HELD);
    s.eligible.clear();
    s.eligible.resize(n, false);
    s.in_set.clear();
    s.in_set.resize(n, false);
    s.held.clear();

    let (w0, w1) = (run.window.start, run.window.end);
    let mut cash = 1.0_f64;
    let mut trades = 0_u64;
    let mut pending = false;
    s.equity.clear();
    for t in w0..w1 {
        if pending {
            trades += fill(market, order, fee, t, &mut cash, s);
            pending = false;
            s.held.clear();
            s.held.extend((0..n).filter(|&k| s.shares[k] > 0.0));
        }
        // Only held assets contribute; `held` is in sid order, so this is the same sum, in
        // the same order, as skipping the zero positions of all assets.
        let mut e = cash;
        for &k in &s.held {
            let a = &market.assets[order[k]];
            e += s.shares[k] * a.close[t.min(a.end_bar - 1)];
        }
        s.equity.push(e);
        // A decision on W's last close could only fill outside W, so it is skipped.
        if (t - w0) % p.rebalance_frequency == 0 && t + 1 < w1 {
            decide(market, order, p, t, s);
            pending = true;
        }
    }
    Ok(run.finish(&s.equity, trades))
}

/// Chooses target weights on the close of bar `t`.
fn decide(market: &Market<'_>, order: &[usize], p: &Momentum, t: usize, s: &mut MomScratch) {
    let lb = p.lookback_period;
    let ann = 252.0_f64.sqrt();
    s.candidates.clear();
    for (k, &i) in order.iter().enumerate() {
        let a = &market.assets[i];
        let ok = t >= a.first_bar.saturating_add(lb) && t < a.end_bar;
        s.eligible[k] = ok;
        s.in_set[k] = false;
        s.target[k] = 0.0;
        if !ok {
            continue;
        }
        let c = &a.close[t - lb..=t];
        let m = lb as f64;
        let mean = c.windows(2).map(|w| w[1] / w[0] - 1.0).sum::<f64>() / m;
        let ss = c.windows(2).map(|w| w[1] / w[0] - 1.0 - mean).map(|d| d * d).sum::<f64>();
        (s.score[k], s.vol[k]) = (c[lb] / c[0] - 1.0, (ss / (m - 1.0)).sqrt() * ann);
        if s.vol[k] <= p.volatility_threshold {
            s.candidates.push(k);
        }
    }
    // Highest score first; ties go to the lower sid, which is the lower position `k`.
    let score = &s.score;
    // Only membership matters, so a selection (O(n)) suffices: the comparator is a total
    // order with unique keys, so the first `top` elements are the same set however the
    // selection proceeds.
    let top = p.top_n_assets.min(s.candidates.len());
    if top > 0 && top < s.candidates.len() {
        s.candidates.select_nth_unstable_by(top - 1, |&x, &y| score[y].total_cmp(&score[x]).then(x.cmp(&y)));
    }
    for &k in &s.candidates[..top] {
        s.in_set[k] = true;
    }
    // Young positions stay in the target set; one bought at the open of bar e has been held
    // for t − e + 1 sessions at the close of t. A delisted holding cannot trade, so it stays.
    for k in 0..order.len() {
        if s.entry[k] != NOT_HELD && s.eligible[k] && t + 1 - s.entry[k] < p.holding_period {
            s.in_set[k] = true;
        }
    }
    let members = s.in_set.iter().filter(|&&b| b).count();
    if members == 0 {
        return;
    }
    match p.weighting_scheme {
        WeightingScheme::Equal => {
            let w = 1.0 / members as f64;
            for k in 0..order.len() {
                if s.in_set[k] {
                    s.target[k] = w;
                }
            }
        }
        WeightingScheme::MarketCap => {
            for (k, &i) in order.iter().enumerate() {
                if s.in_set[k] {
                    let a = &market.assets[i];
                    s.target[k] = a.close[t] * a.shares_outstanding;
                }
            }
            normalise(&mut s.target);
        }
        WeightingScheme::RiskParity => {
            // 1/vol is infinite for a flat asset; the limit of the normalised weights then
            // splits everything among the zero-vol members.
            let zero_vol = (0..order.len()).any(|k| s.in_set[k] && s.vol[k] == 0.0);
            for k in 0..order.len() {
                if s.in_set[k] {
                    s.target[k] = match (zero_vol, s.vol[k] == 0.0) {
                        (false, _) => 1.0 / s.vol[k],
                        (true, true) => 1.0,
                        (true, false) => 0.0,
                    };
                }
            }
            normalise(&mut s.target);
        }
    }
    // No renormalisation after the bounds: what they remove stays in cash.
    let (lo, hi) = (p.min_position_size / 100.0, p.max_position_size / 100.0);
    for w in &mut s.target {
        if *w < lo {
            *w = 0.0;
        } else if *w > hi {
            *w = hi;
        }
    }
}

fn normalise(w: &mut [f64]) {
    let total: f64 = w.iter().sum();
    if total > 0.0 {
        for x in w.iter_mut() {
            *x /= total;
        }
    }
}

/// Trades toward the targets at the open of bar `t`: sells first, then buys, scaled by one
/// common factor if cash falls short. Returns the number of fills.
fn fill(market: &Market<'_>, order: &[usize], fee: f64, t: usize, cash: &mut f64, s: &mut MomScratch) -> u64 {
    let mut value = *cash;
    for (k, &q) in s.shares.iter().enumerate() {
        if q > 0.0 {
            let a = &market.assets[order[k]];
            value += q * if t < a.end_bar { a.open[t] } else { a.close[a.end_bar - 1] };
        }
    }
    let mut fills = 0;
    let mut cost = 0.0;
    for (k, &i) in order.iter().enumerate() {
        let a = &market.assets[i];
        if !(a.first_bar <= t && t < a.end_bar) {
            s.target_shares[k] = s.shares[k];
            continue;
        }
        let o = a.open[t];
        let tq = s.target[k] * value / o;
        s.target_shares[k] = tq;
        if tq < s.shares[k] {
            *cash += (s.shares[k] - tq) * o * (1.0 - fee);
            s.shares[k] = tq;
            if tq == 0.0 {
                s.entry[k] = NOT_HELD;
            }
            fills += 1;
        } else if tq > s.shares[k] {
            cost += (tq - s.shares[k]) * o * (1.0 + fee);
        }
    }
    let scale = if cost > *cash { *cash / cost } else { 1.0 };
    for (k, &i) in order.iter().enumerate() {
        let dq = (s.target_shares[k] - s.shares[k]) * scale;
        if dq > 0.0 {
            let o = market.assets[i].open[t];
            s.shares[k] += dq;
            *cash -= dq * o * (1.0 + fee);
            if s.entry[k] == NOT_HELD {
                s.entry[k] = t;
            }
            fills += 1;
        }
    }
    if scale < 1.0 {
        // The buys were sized to spend exactly the cash; pin it so rounding cannot leave a
        // tiny negative balance.
        *cash = 0.0;
    }
    fills
}
