//! Simple moving averages from compensated running sums, the per-worker SMA cache, and the
//! read-only tables a whole search can share.
//!
//! Definition (the one the engine and its tests agree on): for an asset whose first bar is
//! `f`, let `S(i)` be the sum of closes `f..f+i`, accumulated left to right as a
//! double-double (Knuth's TwoSum keeps each addition's rounding error in a second word).
//! Then `SMA_w(t) = (S(t+1−f) − S(t+1−w−f)) / w`, with the difference of the two
//! double-doubles taken by TwoSum as well. The window sum is therefore accurate to about one
//! ulp, like a direct sum of the `w` closes, while costing O(1) per bar.
//!
//! A plain f64 prefix sum would lose `log2(t/w)` bits to cancellation (about 1e-11 relative
//! on 490,000 minute bars), enough to flip near-tie crossovers; a rolling add/subtract sum has
//! the same drift. Because `S` always starts at the asset's first bar, an SMA value depends
//! only on the closes up to `t` and never on the session range, budget or cache state.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Error, Market};

/// Knuth's TwoSum: `a + b = s + e` exactly.
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// The reference: writes `SMA_w` for every bar of an asset's traded span `closes` into
/// `out`; bars with fewer than `w` closes get NaN, which no comparison accepts, so they never
/// signal. The engine computes columns with [`prefix_sums`] and [`sma_from_prefix`], which
/// give these bits (a unit test holds them to it).
///
/// Two double-double running sums advance together: the lead `S(t+1)` and the lag
/// `S(t+1−w)`, `w` closes behind. The lag performs exactly the operations the lead performed
/// `w` bars earlier, so it holds the same bits as the lead's stored prefix sums, which is why
/// reading a column off [`prefix_sums`] gives this function's bits.
#[cfg(test)]
pub(crate) fn sma_column(closes: &[f64], w: usize, out: &mut [f64]) {
    debug_assert_eq!(closes.len(), out.len());
    let warm = (w - 1).min(out.len());
    let (mut ha, mut la) = (0.0_f64, 0.0_f64);
    for (o, &c) in out[..warm].iter_mut().zip(&closes[..warm]) {
        let (s, e) = two_sum(ha, c);
        (ha, la) = (s, la + e);
        *o = f64::NAN;
    }
    let (mut hb, mut lb) = (0.0_f64, 0.0_f64);
    let wf = w as f64;
    for t in warm..out.len() {
        let (s, e) = two_sum(ha, closes[t]);
        (ha, la) = (s, la + e);
        if t >= w {
            let (s, e) = two_sum(hb, closes[t - w]);
            (hb, lb) = (s, lb + e);
        }
        let (d, e) = two_sum(ha, -hb);
        out[t] = (d + (e + (la - lb))) / wf;
    }
}

/// The lead sums of `sma_column` for every prefix of `closes`, into `out` (length
/// `2 · (closes.len() + 1)`): `out[k]` and `out[n + 1 + k]` are the high and low words of the
/// double-double sum of the first `k` closes, accumulated exactly as `sma_column`'s lead and
/// lag accumulate them, so a column read off them ([`sma_from_prefix`]) has the same bits.
/// One pass per asset, shared by all its windows: a column then costs one independent
/// TwoSum per bar instead of three chained ones.
pub(crate) fn prefix_sums(closes: &[f64], out: &mut [f64]) {
    let n = closes.len();
    debug_assert_eq!(out.len(), 2 * (n + 1));
    let (hi, lo) = out.split_at_mut(n + 1);
    let (mut h, mut l) = (0.0_f64, 0.0_f64);
    hi[0] = 0.0;
    lo[0] = 0.0;
    for (k, &c) in closes.iter().enumerate() {
        let (s, e) = two_sum(h, c);
        (h, l) = (s, l + e);
        hi[k + 1] = h;
        lo[k + 1] = l;
    }
}

/// `SMA_w` from an asset's [`prefix_sums`] into `out` (one value per bar): the same bits as
/// `sma_column` over the same closes.
pub(crate) fn sma_from_prefix(prefix: &[f64], w: usize, out: &mut [f64]) {
    let n = out.len();
    debug_assert_eq!(prefix.len(), 2 * (n + 1));
    let (hi, lo) = prefix.split_at(n + 1);
    if w > n {
        out.fill(f64::NAN);
        return;
    }
    out[..w - 1].fill(f64::NAN);
    let wf = w as f64;
    // Bar t ≥ w − 1 reads the sums of its first t + 1 closes (lead, from index w) and of the
    // first t + 1 − w (lag, from index 0).
    let (lead_h, lead_l) = (&hi[w..], &lo[w..]);
    let (lag_h, lag_l) = (hi, lo);
    for (i, o) in out[w - 1..].iter_mut().enumerate() {
        let (d, e) = two_sum(lead_h[i], -lag_h[i]);
        *o = (d + (e + (lead_l[i] - lag_l[i]))) / wf;
    }
}

struct Slot {
    key: (usize, usize),
    data: Vec<f64>,
    last_used: u64,
}

/// Per-worker cache of SMA arrays keyed by (asset, window), in front of optional shared
/// [`SmaTables`].
///
/// An SMA array covers the asset's whole traded span, so one entry serves every session
/// range and budget (see the module docs for why the values cannot depend on them).
/// Capacity is in bytes of SMA data; the least recently used entries not needed by the
/// current backtest are evicted first. Eviction changes speed only, never results. A column
/// the shared tables hold is read from them and never copied; only what they lack is
/// computed here.
pub(crate) struct SmaCache {
    shared: Option<Arc<SmaTables>>,
    map: HashMap<(usize, usize), usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    bytes: usize,
    capacity: usize,
    tick: u64,
}

impl SmaCache {
    pub(crate) fn new(capacity: usize) -> SmaCache {
        SmaCache { shared: None, map: HashMap::new(), slots: Vec::new(), free: Vec::new(), bytes: 0, capacity, tick: 0 }
    }

    /// Serves the columns `tables` holds from them from now on (the caller checked that they
    /// were built for this cache's market).
    pub(crate) fn share(&mut self, tables: Arc<SmaTables>) {
        self.shared = Some(tables);
    }

    /// Starts a backtest: entries touched from now on are pinned until the next `begin`.
    pub(crate) fn begin(&mut self) {
        self.tick += 1;
    }

    /// The capacity in bytes (0: no reuse across backtests).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by this cache's own SMA arrays (shared tables not counted).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The slot holding `SMA_w` over `closes` (the asset's traded span): a shared column if
    /// the tables hold it, else a private one, computed on a miss.
    pub(crate) fn ensure(&mut self, asset: usize, w: usize, closes: &[f64]) -> usize {
        if let Some(j) = self.shared.as_ref().and_then(|t| t.find(asset, w)) {
            return SHARED | j;
        }
        let tick = self.tick;
        if let Some(&slot) = self.map.get(&(asset, w)) {
            self.slots[slot].last_used = tick;
            return slot;
        }
        // The asset's prefix sums first (pinned for this backtest, so making room for the
        // column cannot evict them), then the column off them.
        let prefix = self.prefix_slot(asset, closes);
        while self.bytes + size_of_val(closes) > self.capacity && self.evict_one() {}
        let mut data = vec![0.0; closes.len()];
        sma_from_prefix(&self.slots[prefix].data, w, &mut data);
        self.insert((asset, w), data)
    }

    /// The slot of `asset`'s [`prefix_sums`] (under window 0, which no SMA has), computed on
    /// a miss. They cost two columns of memory (all seven assets of the 5-year minute bundle:
    /// 55 MB, within the default capacity) and make each further column of the asset about
    /// five times cheaper; they are evicted like any column.
    fn prefix_slot(&mut self, asset: usize, closes: &[f64]) -> usize {
        if let Some(&slot) = self.map.get(&(asset, 0)) {
            self.slots[slot].last_used = self.tick;
            return slot;
        }
        let len = 2 * (closes.len() + 1);
        while self.bytes + len * size_of::<f64>() > self.capacity && self.evict_one() {}
        let mut data = vec![0.0; len];
        prefix_sums(closes, &mut data);
        self.insert((asset, 0), data)
    }

    /// Holds `data` under `key`, used by the current backtest.
    fn insert(&mut self, key: (usize, usize), data: Vec<f64>) -> usize {
        self.bytes += size_of_val(data.as_slice());
        let slot = Slot { key, data, last_used: self.tick };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.map.insert(key, idx);
        idx
    }

    /// Evicts the least recently used unpinned entry; false when none is left.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.data.is_empty() && s.last_used < self.tick)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i);
        let Some(i) = victim else { return false };
        let slot = &mut self.slots[i];
        self.bytes -= slot.data.len() * size_of::<f64>();
        self.map.remove(&slot.key);
        slot.data = Vec::new();
        self.free.push(i);
        true
    }

    pub(crate) fn slice(&self, slot: usize) -> &[f64] {
        if slot & SHARED != 0 {
            let tables = self.shared.as_ref().expect("a shared slot comes from the tables");
            return tables.column(slot & !SHARED);
        }
        &self.slots[slot].data
    }
}

/// The bit that marks a slot of [`SmaCache::ensure`] as an entry of the shared tables.
const SHARED: usize = 1 << (usize::BITS - 1);

/// Read-only SMA columns for a whole search, built once before the workers start and shared
/// by all of them.
///
/// A sweep's workers all need the same SMAs (every window of the space, for every asset).
/// Built per worker, each holds a private copy of the same numbers, so memory grows with the
/// worker count. Built once, in the process that then forks (or behind an `Arc` for threads),
/// the columns exist once: forked workers only read them, so their pages stay shared
/// copy-on-write. [`crate::Backtester::with_tables`] takes them; a column they lack is
/// computed in the worker's own cache as before. Every column holds exactly the bits the
/// per-worker cache would compute (the same function computes both), so results never
/// depend on whether, or how completely, tables are shared.
///
/// All columns live in one allocation, written only while building. The tables remember the
/// market they were built from (each asset's sid, span and close column, by address) and
/// serve no other: a backtester refuses tables of another market.
///
/// ```
/// use std::sync::Arc;
/// use engine::{AssetSeries, Backtester, Market, SmaTables};
///
/// let close = [10.0, 11.0, 12.0, 11.0, 10.0, 9.0];
/// let bounds: Vec<usize> = (0..=close.len()).collect();
/// let asset = AssetSeries::new(0, &close, &close, &close, &close, 0..close.len(), 1.0);
/// let market = Market::new_checked(252.0, &bounds, vec![asset])?;
/// let tables = Arc::new(SmaTables::build(&market, &[1, 2, 3], usize::MAX));
/// assert_eq!((tables.columns(), tables.bytes()), (3, 3 * 6 * 8));
/// let bt = Backtester::with_tables(&market, Backtester::DEFAULT_CACHE_BYTES, tables)?;
/// # let _ = bt; Ok::<(), engine::Error>(())
/// ```
#[derive(Debug)]
pub struct SmaTables {
    data: Vec<f64>,
    /// Per asset (in the market's order): `(window, column)` sorted by window.
    by_asset: Vec<Vec<(usize, usize)>>,
    /// Per column: its range in `data`.
    columns: Vec<std::ops::Range<usize>>,
    /// Per asset: what the tables were built from, to refuse another market.
    built_from: Vec<Origin>,
    needed_bytes: usize,
    windows: usize,
    full_windows: usize,
}

/// One asset of the market the tables were built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    sid: u32,
    first_bar: usize,
    end_bar: usize,
    /// The close column's address and length: the tables hold SMAs of exactly these closes.
    close: (usize, usize),
}

impl Origin {
    pub(crate) fn of(market: &Market<'_>) -> Vec<Origin> {
        let origin = |a: &crate::AssetSeries<'_>| Origin {
            sid: a.sid,
            first_bar: a.first_bar,
            end_bar: a.end_bar,
            close: (a.close.as_ptr() as usize, a.close.len()),
        };
        market.assets.iter().map(origin).collect()
    }
}

/// `xs` without zeros and repeats, ascending: the windows or lookbacks a shared table holds.
pub(crate) fn distinct_positive(xs: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = xs.iter().copied().filter(|&x| x > 0).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One column for [`SmaTables::build_on`] to compute: the asset's position and closes, a
/// window, and the column's slice of the tables.
type ColumnJob<'a> = (usize, &'a [f64], usize, &'a mut [f64]);

impl SmaTables {
    /// The SMA of every asset's adjusted closes for each of `windows` (zero and repeated
    /// windows are ignored), within `budget` bytes of columns: windows are taken in
    /// ascending order, each for every asset in sid order, until the next column would not
    /// fit. [`SmaTables::needed_bytes`] says what all of them would take.
    pub fn build(market: &Market<'_>, windows: &[usize], budget: usize) -> SmaTables {
        SmaTables::build_on(market, windows, budget, 1)
    }

    /// [`SmaTables::build`] on up to `threads` threads of this process, all joined before it
    /// returns. Each column is computed by one thread exactly as `build` computes it, so the
    /// tables are bit for bit the same whatever `threads` is. (A caller that forks next must
    /// still see its thread count drop back to one; `pool`'s fork check waits for that.)
    pub fn build_on(market: &Market<'_>, windows: &[usize], budget: usize, threads: usize) -> SmaTables {
        let wanted = distinct_positive(windows);
        let order = market.sid_order();
        let span = |i: usize| market.assets[i].end_bar - market.assets[i].first_bar;
        let per_window: usize = order.iter().map(|&i| span(i)).sum();
        let needed_bytes = per_window * wanted.len() * size_of::<f64>();
        // Plan first, so that the one allocation has its final size.
        let mut plan = Vec::new();
        let mut len = 0;
        'plan: for &w in &wanted {
            for &i in &order {
                if (len + span(i)) * size_of::<f64>() > budget {
                    break 'plan;
                }
                plan.push((i, w, len..len + span(i)));
                len += span(i);
            }
        }
        // Huge pages: 115 MB for the minute grid took 28,000 small page faults.
        let mut data = hugemem::zeroed(len);
        let mut by_asset = vec![Vec::new(); market.assets.len()];
        let mut columns = Vec::with_capacity(plan.len());
        // Every column's closes, window and slice of `data` (disjoint, in plan order), dealt
        // round-robin to the threads: a window's columns are of similar length across assets.
        let threads = threads.clamp(1, plan.len().max(1));
        let mut jobs: Vec<Vec<ColumnJob<'_>>> = (0..threads).map(|_| Vec::new()).collect();
        let mut rest = data.as_mut_slice();
        for (k, (i, w, range)) in plan.into_iter().enumerate() {
            let a = &market.assets[i];
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(range.len());
            rest = tail;
            jobs[k % threads].push((i, &a.close[a.first_bar..a.end_bar], w, out));
            by_asset[i].push((w, columns.len()));
            columns.push(range);
        }
        // A thread's columns are in plan order (window-major); grouped by asset, each asset's
        // prefix sums are computed once per thread.
        let run = |mut jobs: Vec<ColumnJob<'_>>| {
            jobs.sort_by_key(|&(asset, ..)| asset);
            let mut prefix: Vec<f64> = Vec::new();
            let mut of = None;
            for (asset, closes, w, out) in jobs {
                if of != Some(asset) {
                    prefix.resize(2 * (closes.len() + 1), 0.0);
                    prefix_sums(closes, &mut prefix);
                    of = Some(asset);
                }
                sma_from_prefix(&prefix, w, out);
            }
        };
        if threads == 1 {
            jobs.into_iter().for_each(run);
        } else {
            std::thread::scope(|scope| {
                for part in jobs {
                    scope.spawn(move || run(part));
                }
            });
        }
        for v in &mut by_asset {
            v.sort_unstable();
        }
        let full_windows =
            if market.assets.is_empty() { wanted.len() } else { by_asset.iter().map(Vec::len).min().unwrap_or(0) };
        SmaTables {
            data,
            by_asset,
            columns,
            built_from: Origin::of(market),
            needed_bytes,
            windows: wanted.len(),
            full_windows,
        }
    }

    /// Bytes of SMA columns held.
    pub fn bytes(&self) -> usize {
        self.data.len() * size_of::<f64>()
    }

    /// Bytes that every window asked for would have taken, for every asset.
    pub fn needed_bytes(&self) -> usize {
        self.needed_bytes
    }

    /// Number of columns held.
    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// Distinct windows asked for.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// Windows held for every asset.
    pub fn complete_windows(&self) -> usize {
        self.full_windows
    }

    /// Whether every column asked for fit in the budget.
    pub fn is_complete(&self) -> bool {
        self.bytes() == self.needed_bytes
    }

    /// The column of `SMA_w` over the traded span of the asset at `asset` (its index in the
    /// market's asset list), if held.
    pub fn get(&self, asset: usize, w: usize) -> Option<&[f64]> {
        self.find(asset, w).map(|j| self.column(j))
    }

    /// Whether these tables were built from `market`'s closes.
    pub fn built_from(&self, market: &Market<'_>) -> bool {
        self.built_from == Origin::of(market)
    }

    fn find(&self, asset: usize, w: usize) -> Option<usize> {
        let v = self.by_asset.get(asset)?;
        v.binary_search_by_key(&w, |&(w, _)| w).ok().map(|k| v[k].1)
    }

    fn column(&self, j: usize) -> &[f64] {
        &self.data[self.columns[j].clone()]
    }

    /// Refuses tables of another market.
    pub(crate) fn check(&self, market: &Market<'_>) -> Result<(), Error> {
        if self.built_from(market) {
            Ok(())
        } else {
            Err(Error::InvalidMarket("the shared SMA tables were built from another market's closes".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns off the prefix sums have the reference's bits: random walks of several
    /// lengths (0 and 1 included) and every window from 1 to past the end.
    #[test]
    fn columns_off_prefix_sums_have_the_reference_bits() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for n in [0, 1, 2, 7, 100, 1000] {
            let mut p = 100.0_f64;
            let closes: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    p *= 1.0 + ((x % 2001) as f64 - 1000.0) * 1e-4;
                    p
                })
                .collect();
            let mut prefix = vec![0.0; 2 * (n + 1)];
            prefix_sums(&closes, &mut prefix);
            for w in (1..=n + 2).chain([n + 50]) {
                let (mut want, mut got) = (vec![0.0; n], vec![1.0; n]);
                sma_column(&closes, w, &mut want);
                sma_from_prefix(&prefix, w, &mut got);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "n {n}, w {w}");
            }
        }
    }
}
