//! The cached momentum kernel: score/volatility tables and selections shared across
//! backtests, and O(held + target set) work per rebalance instead of O(assets).
//!
//! It computes exactly what the reference kernel (module `momentum`) computes, in the
//! same floating-point order, so results are bit-identical; only the bookkeeping differs:
//!
//! - Score and volatility depend on (lookback, asset, bar) only. A table per lookback holds
//!   them for every bar, asset-major (`position · n_bars + bar`), built in one pass per asset
//!   from the daily returns (each window sum in the reference's left-to-right order; the loop
//!   runs over bars, so it vectorises without reordering any sum). Asset-major because the
//!   hot reads are the volatilities of the target set at successive rebalances, a few assets
//!   at nearby bars; only building a selection reads a whole bar across assets.
//! - The selection (top-N of the low-volatility assets) depends on (lookback, top_n,
//!   volatility_threshold, bar) only, not on weighting, holding period, position bounds,
//!   rebalance frequency, budget or fee. It is kept as a bitmask per bar, filled on first use.
//! - Sets are bitmasks in sid order, so the target set is `selection | young holdings` and
//!   every per-asset loop visits only held or targeted assets, in sid order, which is the
//!   order (and so the rounding) of the reference's loops over all assets: an asset neither
//!   held nor targeted contributes exactly nothing there.
//! - Equity between two fills is `cash + Σ shares·close` over a constant holding set, marked
//!   one holding at a time across the segment's bars: the same additions per bar, in the same
//!   order, but in loops that vectorise.
//!
//! Memory: the tables and selections kept beyond the ones the current backtest uses are
//! bounded by the backtester's cache capacity; the oldest entries go first.

use std::collections::HashMap;

use crate::metrics::Metrics;
use crate::run::Run;
use crate::{Market, Momentum, WeightingScheme};

/// Marks an asset that is not held.
const NOT_HELD: usize = usize::MAX;

/// Score and annualised volatility of every (asset, bar) for one lookback, asset-major.
/// Cells where the asset has no full lookback (or is delisted) are never read.
struct Table {
    score: Vec<f64>,
    vol: Vec<f64>,
    n_bars: usize,
    stamp: u64,
}

impl Table {
    #[inline(always)]
    fn vol(&self, k: usize, t: usize) -> f64 {
        self.vol[k * self.n_bars + t]
    }
}

/// The selected assets of every bar for one (lookback, top_n, threshold), as bitmasks in
/// sid order (`words` u64 per bar), filled on first use of each bar.
struct Selection {
    bits: Vec<u64>,
    done: Vec<bool>,
    stamp: u64,
}

/// The market's columns in sid order, asset-major (`position · n_bars + bar`), packed once
/// per backtester so the hot loops index one array instead of following two references.
struct Prices {
    n_bars: usize,
    /// The open on traded bars, the last close after the last one: what a held position
    /// is worth at that open. NaN before the first bar (never read).
    open: Vec<f64>,
    /// The close on traded bars, the last close after the last one: what a held position is
    /// worth at that close. NaN before the first bar (never read).
    close: Vec<f64>,
    first: Vec<usize>,
    end: Vec<usize>,
    shares_outstanding: Vec<f64>,
}

impl Prices {
    fn new(market: &Market<'_>, order: &[usize]) -> Prices {
        let n_bars = market.n_bars();
        let mut px = Prices {
            n_bars,
            open: vec![f64::NAN; n_bars * order.len()],
            close: vec![f64::NAN; n_bars * order.len()],
            first: Vec::with_capacity(order.len()),
            end: Vec::with_capacity(order.len()),
            shares_outstanding: Vec::with_capacity(order.len()),
        };
        for (k, &i) in order.iter().enumerate() {
            let a = &market.assets[i];
            let (open, close) = (&mut px.open[k * n_bars..][..n_bars], &mut px.close[k * n_bars..][..n_bars]);
            open[a.first_bar..a.end_bar].copy_from_slice(&a.open[a.first_bar..a.end_bar]);
            close[a.first_bar..a.end_bar].copy_from_slice(&a.close[a.first_bar..a.end_bar]);
            if a.first_bar < a.end_bar {
                let last = a.close[a.end_bar - 1];
                open[a.end_bar..].fill(last);
                close[a.end_bar..].fill(last);
            }
            px.first.push(a.first_bar);
            px.end.push(a.end_bar);
            px.shares_outstanding.push(a.shares_outstanding);
        }
        px
    }
}

/// (lookback_period, top_n_assets, volatility_threshold bits).
type SelKey = (usize, usize, u64);

/// Per-worker state of the cached kernel: the shared tables and selections, plus buffers
/// reused by every backtest.
pub(crate) struct MomCache {
    capacity: usize,
    bytes: usize,
    clock: u64,
    tables: HashMap<usize, Table>,
    selections: HashMap<SelKey, Selection>,
    /// Per position in sid order.
    pos: Vec<Pos>,
    /// Positions with shares (exactly those with an entry bar), as bits and in sid order.
    held: Vec<u64>,
    held_list: Vec<usize>,
    in_set: Vec<u64>,
    members: Vec<usize>,
    touched: Vec<usize>,
    candidates: Vec<usize>,
    /// Packed once, kept for the backtester's life (not counted against the capacity).
    prices: Option<Prices>,
    /// When set, every decision appends its weights before the position bounds (see
    /// `mom_batch`).
    pub(crate) trace: Option<Vec<f64>>,
    equity: Vec<f64>,
    returns_col: Vec<f64>,
    sum_col: Vec<f64>,
}

impl MomCache {
    /// A cache keeping at most `capacity` bytes of tables and selections beyond the current
    /// backtest's.
    pub(crate) fn new(capacity: usize) -> Self {
        MomCache {
            capacity,
            bytes: 0,
            clock: 0,
            tables: HashMap::new(),
            selections: HashMap::new(),
            pos: Vec::new(),
            held: Vec::new(),
            held_list: Vec::new(),
            in_set: Vec::new(),
            members: Vec::new(),
            touched: Vec::new(),
            candidates: Vec::new(),
            prices: None,
            trace: None,
            equity: Vec::new(),
            returns_col: Vec::new(),
            sum_col: Vec::new(),
        }
    }

    /// Drops the oldest entries until `extra` more bytes fit, never the table of `keep`.
    fn make_room(&mut self, extra: usize, keep: Option<usize>) {
        while self.bytes + extra > self.capacity {
            let oldest_table = self.tables.iter().filter(|(lb, _)| Some(**lb) != keep).min_by_key(|(_, t)| t.stamp);
            let oldest_sel = self.selections.iter().min_by_key(|(_, s)| s.stamp);
            match (oldest_table.map(|(k, t)| (*k, t.stamp)), oldest_sel.map(|(k, s)| (*k, s.stamp))) {
                (Some((lb, ts)), Some((_, ss))) if ts < ss => self.drop_table(lb),
                (Some((lb, _)), None) => self.drop_table(lb),
                (_, Some((key, _))) => {
                    let s = self.selections.remove(&key).expect("present");
                    self.bytes -= s.bits.len() * 8 + s.done.len();
                }
                (None, None) => break,
            }
        }
    }

    fn drop_table(&mut self, lb: usize) {
        let t = self.tables.remove(&lb).expect("present");
        self.bytes -= (t.score.len() + t.vol.len()) * 8;
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Builds the table for `lb` unless it exists.
    fn ensure_table(&mut self, market: &Market<'_>, order: &[usize], lb: usize) {
        if self.tables.contains_key(&lb) {
            return;
        }
        let cells = market.n_bars() * order.len();
        self.make_room(cells * 16, None);
        let mut table = build_table(market, order, lb, &mut self.returns_col, &mut self.sum_col);
        self.bytes += cells * 16;
        table.stamp = self.tick();
        self.tables.insert(lb, table);
    }

    /// Makes sure a selection exists for `key` (after its table).
    fn ensure_selection(&mut self, n_bars: usize, words: usize, key: SelKey) {
        if let Some(s) = self.selections.get_mut(&key) {
            self.clock += 1;
            s.stamp = self.clock;
            return;
        }
        let size = n_bars * words * 8 + n_bars;
        self.make_room(size, Some(key.0));
        self.bytes += size;
        let stamp = self.tick();
        self.selections.insert(key, Selection { bits: vec![0; n_bars * words], done: vec![false; n_bars], stamp });
    }
}

/// The score/volatility table of lookback `lb` for the assets `order` (sid order), built with
/// the scratch columns `returns_col` and `sum_col`: the one place both the private cache and
/// [`MomentumTables`] compute it, so the two hold the same bits.
fn build_table(
    market: &Market<'_>,
    order: &[usize],
    lb: usize,
    returns_col: &mut Vec<f64>,
    sum_col: &mut Vec<f64>,
) -> Table {
    let n = order.len();
    let n_bars = market.n_bars();
    let cells = n_bars * n;
    let mut score = vec![f64::NAN; cells];
    let mut vol = vec![f64::NAN; cells];
    let ann = 252.0_f64.sqrt();
    let m = lb as f64;
    for (k, &i) in order.iter().enumerate() {
        let a = &market.assets[i];
        let from = a.first_bar.saturating_add(lb);
        if from >= a.end_bar {
            continue;
        }
        // r[j − first − 1] is the return into bar j, for j in first+1..end.
        let r = &mut *returns_col;
        r.clear();
        r.extend(a.close[a.first_bar..a.end_bar].windows(2).map(|w| w[1] / w[0] - 1.0));
        let len = a.end_bar - from;
        // The window of bar t holds the returns into bars t−lb+1..=t, that is
        // r[t − lb − first ..][..lb]; bar `from + i` starts at r[i].
        let acc = &mut *sum_col;
        acc.clear();
        // `Sum for f64` folds from −0.0; starting there keeps even the sign of zero.
        acc.resize(len, -0.0);
        for j in 0..lb {
            for (s, &x) in acc.iter_mut().zip(&r[j..j + len]) {
                *s += x;
            }
        }
        for s in acc.iter_mut() {
            *s /= m;
        }
        let mut ss = vec![-0.0_f64; len];
        for j in 0..lb {
            for ((q, &x), &mean) in ss.iter_mut().zip(&r[j..j + len]).zip(acc.iter()) {
                let d = x - mean;
                *q += d * d;
            }
        }
        for (i, q) in ss.iter().enumerate() {
            let t = from + i;
            score[k * n_bars + t] = a.close[t] / a.close[t - lb] - 1.0;
            vol[k * n_bars + t] = (q / (m - 1.0)).sqrt() * ann;
        }
    }
    Table { score, vol, n_bars, stamp: 0 }
}

/// The momentum kernel's score/volatility tables for a whole search, built once before the
/// pool and read by every backtester that shares them ([`crate::Backtester::share_momentum_tables`]):
/// forked workers inherit them copy-on-write, threads share the `Arc`. A backtester computes
/// (in its own cache) only the lookbacks these lack. Results are bit-identical either way: the
/// same function builds both. The per-(lookback, top_n, threshold) selections stay per
/// backtester: they fill bar by bar as backtests ask, within its cache capacity.
///
/// ```
/// use std::sync::Arc;
/// use engine::{AssetSeries, Backtester, Market, MomentumTables};
///
/// let close = [10.0, 11.0, 12.0, 11.0, 10.0, 9.0];
/// let bounds: Vec<usize> = (0..=close.len()).collect();
/// let asset = AssetSeries::new(0, &close, &close, &close, &close, 0..close.len(), 1.0);
/// let market = Market::new_checked(252.0, &bounds, vec![asset])?;
/// // Two lookbacks of one asset over 6 bars: score and volatility, 2 · 6 · 8 bytes each.
/// let tables = MomentumTables::build(&market, &[2, 3], usize::MAX);
/// assert_eq!((tables.lookbacks(), tables.bytes(), tables.is_complete()), (2, 2 * 2 * 6 * 8, true));
/// // A budget of one table keeps the lower lookback only.
/// assert_eq!(MomentumTables::build(&market, &[3, 2], 2 * 6 * 8).lookbacks(), 1);
/// let mut bt = Backtester::new(&market)?;
/// bt.share_momentum_tables(Arc::new(tables))?;
/// # Ok::<(), engine::Error>(())
/// ```
pub struct MomentumTables {
    prices: Prices,
    tables: std::collections::BTreeMap<usize, Table>,
    built_from: Vec<crate::sma::Origin>,
    needed_bytes: usize,
    wanted: usize,
}

impl std::fmt::Debug for MomentumTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MomentumTables")
            .field("lookbacks", &self.tables.keys().collect::<Vec<_>>())
            .field("bytes", &self.bytes())
            .field("needed_bytes", &self.needed_bytes)
            .finish()
    }
}

impl MomentumTables {
    /// The tables of `lookbacks` (zero and repeated ones ignored) over `market`, within
    /// `budget` bytes: lookbacks are taken in ascending order until the next would not fit.
    /// [`MomentumTables::needed_bytes`] says what all of them would take.
    pub fn build(market: &Market<'_>, lookbacks: &[usize], budget: usize) -> MomentumTables {
        let wanted = crate::sma::distinct_positive(lookbacks);
        let order = market.sid_order();
        let per_table = market.n_bars() * order.len() * 2 * size_of::<f64>();
        let (mut returns_col, mut sum_col) = (Vec::new(), Vec::new());
        let mut tables = std::collections::BTreeMap::new();
        for (k, &lb) in wanted.iter().enumerate() {
            if (k + 1) * per_table > budget {
                break;
            }
            tables.insert(lb, build_table(market, &order, lb, &mut returns_col, &mut sum_col));
        }
        MomentumTables {
            prices: Prices::new(market, &order),
            tables,
            built_from: crate::sma::Origin::of(market),
            needed_bytes: per_table * wanted.len(),
            wanted: wanted.len(),
        }
    }

    /// Bytes of score and volatility columns held (the packed prices, read by every
    /// momentum backtest, not counted).
    pub fn bytes(&self) -> usize {
        self.tables.values().map(|t| (t.score.len() + t.vol.len()) * size_of::<f64>()).sum()
    }

    /// Bytes that every lookback asked for would have taken.
    pub fn needed_bytes(&self) -> usize {
        self.needed_bytes
    }

    /// Lookbacks held.
    pub fn lookbacks(&self) -> usize {
        self.tables.len()
    }

    /// Distinct lookbacks asked for.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Whether every lookback asked for fit in the budget.
    pub fn is_complete(&self) -> bool {
        self.tables.len() == self.wanted
    }

    /// Refuses tables of another market.
    pub(crate) fn check(&self, market: &Market<'_>) -> Result<(), crate::Error> {
        if self.built_from == crate::sma::Origin::of(market) {
            Ok(())
        } else {
            Err(crate::Error::InvalidMarket(
                "the shared momentum tables were built from another market's closes".into(),
            ))
        }
    }
}

/// Iterates the set bits of `words` in increasing order.
#[inline(always)]
fn for_each_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut b = word;
        while b != 0 {
            f(w * 64 + b.trailing_zeros() as usize);
            b &= b - 1;
        }
    }
}

#[inline(always)]
fn set_bit(words: &mut [u64], k: usize, on: bool) {
    let (w, m) = (k / 64, 1_u64 << (k % 64));
    if on { words[w] |= m } else { words[w] &= !m }
}

/// Runs one momentum backtest on the cached kernel. The caller has checked the market.
pub(crate) fn run(r: &mut Run<'_, '_>, p: &Momentum, c: &mut MomCache) -> Metrics {
    let (market, order, fee) = (r.market, r.order, r.fee);
    let n = order.len();
    let words = n.div_ceil(64);
    let n_bars = market.n_bars();
    let lb = p.lookback_period;
    let key: SelKey = (lb, p.top_n_assets, p.volatility_threshold.to_bits());
    let shared = r.momentum;
    let shared_table = shared.and_then(|s| s.tables.get(&lb));
    if shared.is_none() && c.prices.is_none() {
        c.prices = Some(Prices::new(market, order));
    }
    if shared_table.is_none() {
        c.ensure_table(market, order, lb);
    }
    c.ensure_selection(n_bars, words, key);
    if shared_table.is_none() {
        let stamp = c.tick();
        c.tables.get_mut(&lb).expect("built").stamp = stamp;
    }

    c.pos.clear();
    c.pos.resize(n, Pos::FLAT);
    for v in [&mut c.held, &mut c.in_set] {
        v.clear();
        v.resize(words, 0);
    }
    c.held_list.clear();
    let (w0, w1) = (r.window.start, r.window.end);
    let len = w1 - w0;
    // Grow-only: every value is written before it is read.
    if c.equity.len() < len {
        c.equity.resize(len, 0.0);
    }

    let MomCache {
        tables,
        selections,
        prices,
        pos,
        held,
        in_set,
        held_list,
        members,
        touched,
        candidates,
        equity,
        trace,
        ..
    } = c;
    let px = match shared {
        Some(s) => &s.prices,
        None => prices.as_ref().expect("built"),
    };
    let equity = &mut equity[..len];
    let table = match shared_table {
        Some(t) => t,
        None => &tables[&lb],
    };
    let sel = selections.get_mut(&key).expect("built");

    let mut cash = 1.0_f64;
    let mut trades = 0_u64;
    let mut seg = w0;
    let mut d = w0;
    loop {
        // Holdings are constant from `seg` up to the next fill at d + 1.
        let seg_end = if d + 1 < w1 { d + 1 } else { w1 };
        mark(&mut equity[seg - w0..seg_end - w0], seg, cash, held_list, pos, px);
        if d + 1 >= w1 {
            break;
        }
        // Decide on the close of d.
        let t = d;
        if !sel.done[t] {
            select(p, t, px, table, candidates, &mut sel.bits[t * words..(t + 1) * words]);
            sel.done[t] = true;
        }
        in_set.copy_from_slice(&sel.bits[t * words..(t + 1) * words]);
        // Young positions stay in the target set (held ⇔ an entry bar is set).
        for &k in held_list.iter() {
            let eligible = t >= px.first[k].saturating_add(lb) && t < px.end[k];
            if eligible && t + 1 - pos[k].entry < p.holding_period {
                set_bit(in_set, k, true);
            }
        }
        members.clear();
        for_each_bit(in_set, |k| members.push(k));
        weights(p, t, px, table, members, pos, trace.as_mut());
        // Fill at the open of d + 1, over everything held or targeted.
        touched.clear();
        for (w, (&h, &s)) in held.iter().zip(in_set.iter()).enumerate() {
            let mut b = h | s;
            while b != 0 {
                touched.push(w * 64 + b.trailing_zeros() as usize);
                b &= b - 1;
            }
        }
        trades += fill(px, fee, t + 1, &mut cash, touched, pos, held, held_list);
        seg = d + 1;
        d += p.rebalance_frequency;
    }

    r.finish(equity, trades)
}

/// Writes `cash + Σ shares·close` for the bars `t0..t0 + eq.len()`, holdings in sid order.
#[inline]
fn mark(eq: &mut [f64], t0: usize, cash: f64, held: &[usize], pos: &[Pos], px: &Prices) {
    for e in eq.iter_mut() {
        *e = cash;
    }
    let len = eq.len();
    for &k in held {
        let q = pos[k].shares;
        let from = k * px.n_bars + t0;
        for (e, &c) in eq.iter_mut().zip(&px.close[from..from + len]) {
            *e += q * c;
        }
    }
}

/// The selection on the close of `t`: the top `top_n_assets` by score among eligible assets
/// with volatility at most the threshold, ties to the lower sid.
fn select(p: &Momentum, t: usize, px: &Prices, table: &Table, candidates: &mut Vec<usize>, bits: &mut [u64]) {
    let lb = p.lookback_period;
    let score = |k: usize| table.score[k * table.n_bars + t];
    candidates.clear();
    for k in 0..px.first.len() {
        if t >= px.first[k].saturating_add(lb) && t < px.end[k] && table.vol(k, t) <= p.volatility_threshold {
            candidates.push(k);
        }
    }
    let top = p.top_n_assets.min(candidates.len());
    if top > 0 && top < candidates.len() {
        candidates.select_nth_unstable_by(top - 1, |&x, &y| score(y).total_cmp(&score(x)).then(x.cmp(&y)));
    }
    bits.fill(0);
    for &k in &candidates[..top] {
        set_bit(bits, k, true);
    }
}

/// The position bounds of `p` as fractions: (min, max).
#[inline]
pub(crate) fn bounds(p: &Momentum) -> (f64, f64) {
    (p.min_position_size / 100.0, p.max_position_size / 100.0)
}

/// A weight after the position bounds: dropped below `lo`, capped above `hi`.
#[inline(always)]
pub(crate) fn bound(w: f64, lo: f64, hi: f64) -> f64 {
    if w < lo {
        0.0
    } else if w > hi {
        hi
    } else {
        w
    }
}

/// Target weights of `members` (sid order) on the close of `t`, written to their `target` (the
/// others' are 0), after the position bounds. `trace` gets the weights before them.
fn weights(
    p: &Momentum,
    t: usize,
    px: &Prices,
    table: &Table,
    members: &[usize],
    pos: &mut [Pos],
    trace: Option<&mut Vec<f64>>,
) {
    if members.is_empty() {
        return;
    }
    let (lo, hi) = bounds(p);
    let bound = |w: f64| bound(w, lo, hi);
    // Normalising sums every asset's weight in sid order; the non-members add exactly 0.
    let normalise = |pos: &mut [Pos]| {
        let mut total = -0.0_f64;
        for &k in members {
            total += pos[k].target;
        }
        if total > 0.0 {
            for &k in members {
                pos[k].target /= total;
            }
        }
    };
    match p.weighting_scheme {
        WeightingScheme::Equal => {
            let w = 1.0 / members.len() as f64;
            if let Some(trace) = trace {
                trace.push(w);
            }
            let w = bound(w);
            for &k in members {
                pos[k].target = w;
            }
            return;
        }
        WeightingScheme::MarketCap => {
            // Members are eligible, so they trade at t and `close` is the bar's own close.
            for &k in members {
                pos[k].target = px.close[k * px.n_bars + t] * px.shares_outstanding[k];
            }
            normalise(pos);
        }
        WeightingScheme::RiskParity => {
            let zero_vol = members.iter().any(|&k| table.vol(k, t) == 0.0);
            for &k in members {
                let vol = table.vol(k, t);
                pos[k].target = match (zero_vol, vol == 0.0) {
                    (false, _) => 1.0 / vol,
                    (true, true) => 1.0,
                    (true, false) => 0.0,
                };
            }
            normalise(pos);
        }
    }
    if let Some(trace) = trace {
        trace.extend(members.iter().map(|&k| pos[k].target));
    }
    for &k in members {
        pos[k].target = bound(pos[k].target);
    }
}

/// A position's state while a backtest runs.
#[derive(Debug, Clone, Copy)]
struct Pos {
    shares: f64,
    /// The weight decided at the last close, 0 outside the target set.
    target: f64,
    /// Scratch for a fill: the shares the target asks for.
    target_shares: f64,
    /// Bar of the fill that opened the position, or `NOT_HELD`.
    entry: usize,
}

impl Pos {
    const FLAT: Pos = Pos { shares: 0.0, target: 0.0, target_shares: 0.0, entry: NOT_HELD };
}

/// Trades toward the targets at the open of bar `t`, exactly as the reference kernel's fill
/// but visiting only `touched` (held or targeted, in sid order). Resets the targets to 0 and
/// rebuilds the held set. Returns the fills.
#[allow(clippy::too_many_arguments, reason = "the kernel's state, borrowed piecewise")]
fn fill(
    px: &Prices,
    fee: f64,
    t: usize,
    cash: &mut f64,
    touched: &[usize],
    pos: &mut [Pos],
    held: &mut [u64],
    held_list: &mut Vec<usize>,
) -> u64 {
    let nb = px.n_bars;
    let mut value = *cash;
    for &k in held_list.iter() {
        value += pos[k].shares * px.open[k * nb + t];
    }
    let mut fills = 0;
    let mut cost = 0.0;
    for &k in touched {
        let q = &mut pos[k];
        if !(px.first[k] <= t && t < px.end[k]) {
            q.target_shares = q.shares;
            continue;
        }
        let o = px.open[k * nb + t];
        let tq = q.target * value / o;
        q.target_shares = tq;
        if tq < q.shares {
            *cash += (q.shares - tq) * o * (1.0 - fee);
            q.shares = tq;
            if tq == 0.0 {
                q.entry = NOT_HELD;
            }
            fills += 1;
        } else if tq > q.shares {
            cost += (tq - q.shares) * o * (1.0 + fee);
        }
    }
    let scale = if cost > *cash { *cash / cost } else { 1.0 };
    held_list.clear();
    for &k in touched {
        let q = &mut pos[k];
        let dq = (q.target_shares - q.shares) * scale;
        if dq > 0.0 {
            let o = px.open[k * nb + t];
            q.shares += dq;
            *cash -= dq * o * (1.0 + fee);
            if q.entry == NOT_HELD {
                q.entry = t;
            }
            fills += 1;
        }
        q.target = 0.0;
        let h = q.shares > 0.0;
        set_bit(held, k, h);
        if h {
            held_list.push(k);
        }
    }
    if scale < 1.0 {
        *cash = 0.0;
    }
    fills
}
