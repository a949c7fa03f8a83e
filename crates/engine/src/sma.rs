//! Simple moving averages from compensated prefix sums, and the per-worker SMA cache.
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

use crate::kernels;

/// Knuth's TwoSum: `a + b = s + e` exactly.
#[inline(always)]
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Double-double running sums of one asset's closes over its traded span.
pub(crate) struct Prefix {
    hi: Vec<f64>,
    lo: Vec<f64>,
}

impl Prefix {
    /// `closes` is the asset's traded span `first_bar..end_bar`.
    pub(crate) fn new(closes: &[f64]) -> Prefix {
        let mut hi = Vec::with_capacity(closes.len() + 1);
        let mut lo = Vec::with_capacity(closes.len() + 1);
        let (mut h, mut l) = (0.0_f64, 0.0_f64);
        hi.push(h);
        lo.push(l);
        for &c in closes {
            let (s, e) = two_sum(h, c);
            h = s;
            l += e;
            hi.push(h);
            lo.push(l);
        }
        Prefix { hi, lo }
    }

    fn bytes(&self) -> usize {
        (self.hi.len() + self.lo.len()) * size_of::<f64>()
    }

    /// Writes `SMA_w` at span-relative bars `from..from + out.len()`; bars with fewer than
    /// `w` closes get NaN, which no comparison accepts, so they never signal.
    pub(crate) fn sma_into(&self, w: usize, from: usize, out: &mut [f64]) {
        // Bars with fewer than `w` closes come first; splitting them off leaves a branch-free
        // loop that vectorises.
        let warm = (w - 1).saturating_sub(from).min(out.len());
        let (nan, full) = out.split_at_mut(warm);
        nan.fill(f64::NAN);
        let t0 = from + warm;
        let n = full.len();
        if n == 0 {
            return;
        }
        kernels::window_means(
            &self.hi[t0 + 1..t0 + 1 + n],
            &self.hi[t0 + 1 - w..t0 + 1 - w + n],
            &self.lo[t0 + 1..t0 + 1 + n],
            &self.lo[t0 + 1 - w..t0 + 1 - w + n],
            w as f64,
            full,
        );
    }
}

struct Slot {
    key: (usize, usize),
    data: Vec<f64>,
    last_used: u64,
}

/// Per-worker cache of SMA arrays keyed by (asset, window), plus each asset's prefix sums.
///
/// An SMA array covers the asset's whole traded span, so one entry serves every session
/// range and budget (see the module docs for why the values cannot depend on them).
/// Capacity is in bytes of SMA data; the least recently used entries not needed by the
/// current backtest are evicted first. Eviction changes speed only, never results.
pub(crate) struct SmaCache {
    prefixes: Vec<Option<Prefix>>,
    map: HashMap<(usize, usize), usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    bytes: usize,
    capacity: usize,
    tick: u64,
}

impl SmaCache {
    pub(crate) fn new(n_assets: usize, capacity: usize) -> SmaCache {
        SmaCache {
            prefixes: (0..n_assets).map(|_| None).collect(),
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            bytes: 0,
            capacity,
            tick: 0,
        }
    }

    /// Starts a backtest: entries touched from now on are pinned until the next `begin`.
    pub(crate) fn begin(&mut self) {
        self.tick += 1;
    }

    /// Bytes held by SMA arrays and prefix sums.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes + self.prefixes.iter().flatten().map(Prefix::bytes).sum::<usize>()
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
        let prefix = self.prefixes[asset].get_or_insert_with(|| Prefix::new(closes));
        let mut data = vec![0.0; closes.len()];
        prefix.sma_into(w, 0, &mut data);
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
