//! Simple moving averages from compensated running sums, and the per-worker SMA cache.
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

/// Knuth's TwoSum: `a + b = s + e` exactly.
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Writes `SMA_w` for every bar of an asset's traded span `closes` into `out`; bars with
/// fewer than `w` closes get NaN, which no comparison accepts, so they never signal.
///
/// Two double-double running sums advance together: the lead `S(t+1)` and the lag
/// `S(t+1−w)`, `w` closes behind. The lag performs exactly the operations the lead performed
/// `w` bars earlier, so it holds the same bits a stored prefix array would, without storing
/// one (on minute bars that array was 55 MB per worker, mostly page faults to build).
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

struct Slot {
    key: (usize, usize),
    data: Vec<f64>,
    last_used: u64,
}

/// Per-worker cache of SMA arrays keyed by (asset, window).
///
/// An SMA array covers the asset's whole traded span, so one entry serves every session
/// range and budget (see the module docs for why the values cannot depend on them).
/// Capacity is in bytes of SMA data; the least recently used entries not needed by the
/// current backtest are evicted first. Eviction changes speed only, never results.
pub(crate) struct SmaCache {
    map: HashMap<(usize, usize), usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    bytes: usize,
    capacity: usize,
    tick: u64,
}

impl SmaCache {
    pub(crate) fn new(capacity: usize) -> SmaCache {
        SmaCache { map: HashMap::new(), slots: Vec::new(), free: Vec::new(), bytes: 0, capacity, tick: 0 }
    }

    /// Starts a backtest: entries touched from now on are pinned until the next `begin`.
    pub(crate) fn begin(&mut self) {
        self.tick += 1;
    }

    /// The capacity in bytes (0: no reuse across backtests).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by SMA arrays.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The slot holding `SMA_w` over `closes` (the asset's traded span), computing it on a
    /// miss.
    pub(crate) fn ensure(&mut self, asset: usize, w: usize, closes: &[f64]) -> usize {
        let tick = self.tick;
        if let Some(&slot) = self.map.get(&(asset, w)) {
            self.slots[slot].last_used = tick;
            return slot;
        }
        let need = size_of_val(closes);
        while self.bytes + need > self.capacity && self.evict_one() {}
        let mut data = vec![0.0; closes.len()];
        sma_column(closes, w, &mut data);
        self.bytes += need;
        let slot = Slot { key: (asset, w), data, last_used: tick };
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
        self.map.insert((asset, w), idx);
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
        &self.slots[slot].data
    }
}
