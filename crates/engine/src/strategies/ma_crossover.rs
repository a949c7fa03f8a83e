//! `ma-crossover`: per-asset long/flat on two simple moving averages, independent 1/N slices.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::kernels;
use crate::metrics::{Metrics, MetricsAcc};
use crate::params::{ParamKind, ParamSpec, ParamValues};
use crate::run::Run;
use crate::sma::SmaCache;
use crate::{Error, Strategy};

/// The `ma-crossover` strategy.
///
/// Long when `SMA_short > SMA_long·(1+threshold)`, flat when
/// `SMA_short < SMA_long·(1−threshold)`, otherwise the previous target holds; no signal until
/// both SMAs exist. `short_window ≥ long_window` is legal.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaCrossoverStrategy;

/// MA-crossover parameters. Defaults: short 10, long 50, threshold 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaCrossover {
    /// Bars in the short SMA, ≥ 1.
    pub short_window: usize,
    /// Bars in the long SMA, ≥ 1.
    pub long_window: usize,
    /// Relative band half-width, finite and ≥ 0.
    pub threshold: f64,
}

impl Default for MaCrossover {
    fn default() -> Self {
        MaCrossover { short_window: 10, long_window: 50, threshold: 0.0 }
    }
}

const PARAMETERS: &[ParamSpec] = &[
    ParamSpec {
        name: "short_window",
        kind: ParamKind::Integer { default: 10, min: 1, max: None },
        doc: "bars in the short simple moving average of adjusted closes",
    },
    ParamSpec {
        name: "long_window",
        kind: ParamKind::Integer { default: 50, min: 1, max: None },
        doc: "bars in the long simple moving average of adjusted closes",
    },
    ParamSpec {
        name: "threshold",
        kind: ParamKind::Float { default: 0.0, min: Bound::Included(0.0), max: Bound::Unbounded },
        doc: "relative band half-width around the long SMA that the short SMA must cross",
    },
];

impl Strategy for MaCrossoverStrategy {
    type Params = MaCrossover;
    type Scratch = MaScratch;

    fn name(&self) -> &'static str {
        "ma-crossover"
    }

    fn parameters(&self) -> &'static [ParamSpec] {
        PARAMETERS
    }

    fn build(&self, v: &ParamValues) -> Result<MaCrossover, Error> {
        Ok(MaCrossover { short_window: v.int(0) as usize, long_window: v.int(1) as usize, threshold: v.float(2) })
    }

    fn run(&self, p: &MaCrossover, run: &mut Run<'_, '_>, scratch: &mut MaScratch) -> Result<Metrics, Error> {
        Ok(run_ma(run, p, scratch))
    }

    fn warmup(&self, p: &MaCrossover) -> usize {
        p.short_window.max(p.long_window)
    }

    fn sma_windows(&self) -> &'static [&'static str] {
        &["short_window", "long_window"]
    }
}

/// Bars per chunk. All assets advance one chunk at a time so the chunk's equity stays in
/// L1 instead of being read and written once per asset over the whole window.
const CHUNK: usize = 2048;

/// One asset's slice while the backtest runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slice {
    asset: usize,
    first: usize,
    end: usize,
    /// First bar at which both SMAs exist.
    decide_from: usize,
    short: usize,
    long: usize,
    cash: f64,
    shares: f64,
    /// Whether the slice holds shares.
    held: bool,
    /// The target decided at the last close, filled at the next open.
    pending: bool,
}

/// Buffers reused across backtests by one worker (the strategy's scratch).
#[derive(Default)]
pub struct MaScratch {
    slices: Vec<Slice>,
    equity: Vec<f64>,
    /// The per-chunk fill plan: where each segment of constant position ends.
    stops: Vec<u32>,
}

fn run_ma(run: &mut Run<'_, '_>, p: &MaCrossover, scratch: &mut MaScratch) -> Metrics {
    let (market, order, fee) = (run.market, run.order, run.fee);
    let (w0, w1) = (run.window.start, run.window.end);
    let cache: &mut SmaCache = &mut *run.sma;
    let returns: &mut Vec<f64> = &mut *run.returns;
    let mut equity_out = run.equity_out.as_deref_mut();
    let capital = 1.0 / order.len().max(1) as f64;
    let kup = 1.0 + p.threshold;
    let kdn = 1.0 - p.threshold;
    let (buy_k, sell_k) = (1.0 + fee, 1.0 - fee);

    cache.begin();
    scratch.slices.clear();
    for &i in order {
        let a = &market.assets[i];
        let span = &a.close[a.first_bar..a.end_bar];
        let short = cache.ensure(i, p.short_window, span);
        let long = cache.ensure(i, p.long_window, span);
        // Saturating: absurd windows (up to usize::MAX when built by hand) just never signal.
        let decide_from = a.first_bar.saturating_add(p.short_window.max(p.long_window) - 1);
        let mut pending = false;
        // The target in force when W opens is the last decisive signal before it. Scanning
        // back to it gives the same state as running the hysteresis forward from the first
        // signal, without touching the (possibly long) warm-up in between.
        if a.first_bar < w0 && w0 <= a.end_bar {
            let (ss, sl) = (cache.slice(short), cache.slice(long));
            for t in (decide_from..w0).rev() {
                let (s, l) = (ss[t - a.first_bar], sl[t - a.first_bar]);
                if s > l * kup {
                    pending = true;
                    break;
                }
                if s < l * kdn {
                    break;
                }
            }
        }
        scratch.slices.push(Slice {
            asset: i,
            first: a.first_bar,
            end: a.end_bar,
            decide_from,
            short,
            long,
            cash: capital,
            shares: 0.0,
            held: false,
            pending,
        });
    }

    let n = w1 - w0;
    // Grow-only buffers: every element used is written before it is read, so there is no
    // need to clear them per backtest.
    if returns.len() < n {
        returns.resize(n, 0.0);
    }
    let returns = &mut returns[..n];
    if scratch.equity.len() < CHUNK.min(n) {
        scratch.equity.resize(CHUNK.min(n), 0.0);
    }
    if let Some(out) = equity_out.as_deref_mut() {
        out.clear();
    }
    let mut acc = MetricsAcc::new();
    let mut trades = 0_u64;
    let mut c0 = w0;
    while c0 < w1 {
        let c1 = (c0 + CHUNK).min(w1);
        let eq = &mut scratch.equity[..c1 - c0];
        // The first slice stores its values, the others add theirs, in sid order.
        for (k, st) in scratch.slices.iter_mut().enumerate() {
            let a = &market.assets[st.asset];
            let kern = Kernel { open: a.open, close: a.close, cache, kup, kdn, buy_k, sell_k };
            let stops = &mut scratch.stops;
            trades += if k == 0 { kern.step::<false>(st, c0, eq, stops) } else { kern.step::<true>(st, c0, eq, stops) };
        }
        if scratch.slices.is_empty() {
            eq.fill(1.0);
        }
        acc.push(eq, &mut returns[c0 - w0..c1 - w0]);
        if let Some(out) = equity_out.as_deref_mut() {
            out.extend_from_slice(eq);
        }
        c0 = c1;
    }
    acc.finish(returns, market.periods_per_year, trades)
}

/// What one asset's step reads: its columns, its SMAs and the run's constants.
struct Kernel<'a> {
    open: &'a [f64],
    close: &'a [f64],
    cache: &'a SmaCache,
    kup: f64,
    kdn: f64,
    buy_k: f64,
    sell_k: f64,
}

impl Kernel<'_> {
    /// Advances one slice over the chunk starting at bar `c0`, writing (`ADD = false`) or
    /// adding (`ADD = true`) its value at each close to `eq`. Returns the number of fills.
    /// `stops` is scratch space for the fill plan.
    #[inline(always)]
    fn step<const ADD: bool>(&self, st: &mut Slice, c0: usize, eq: &mut [f64], stops: &mut Vec<u32>) -> u64 {
        #[inline(always)]
        fn put<const ADD: bool>(e: &mut f64, v: f64) {
            if ADD { *e += v } else { *e = v }
        }
        let Kernel { open, close, cache, kup, kdn, buy_k, sell_k } = *self;
        let c1 = c0 + eq.len();
        let (first, end) = (st.first, st.end);
        let (mut cash, mut shares, mut held, mut pending) = (st.cash, st.shares, st.held, st.pending);
        let mut fills = 0_u64;

        // Before the first bar the slice is cash.
        let lo = first.clamp(c0, c1);
        for e in &mut eq[..lo - c0] {
            put::<ADD>(e, cash);
        }
        let hi = end.clamp(lo, c1);
        // Traded bars before both SMAs exist: no signal, so nothing to fill either.
        let mid = st.decide_from.clamp(lo, hi);
        for (e, &c) in eq[lo - c0..mid - c0].iter_mut().zip(&close[lo..mid]) {
            put::<ADD>(e, cash + shares * c);
        }
        // The hot part, in two passes. First the decisions on each close as bitmasks, with no
        // loop-carried state. Then walk from one position change to the next: between two
        // changes the slice's value is either constant cash or shares·close, and the next
        // change is a trailing-zero count away.
        if mid < hi {
            let len = hi - mid;
            let ss = &cache.slice(st.short)[mid - first..hi - first];
            let sl = &cache.slice(st.long)[mid - first..hi - first];
            let mut to_long = [0_u64; CHUNK / 64];
            let mut to_flat = [0_u64; CHUNK / 64];
            kernels::crossover_masks(ss, sl, kup, kdn, &mut to_long, &mut to_flat);
            let (eq, open, close) = (&mut eq[mid - c0..hi - c0], &open[mid..hi], &close[mid..hi]);
            // Plan first: the position changes are bit scans only, and knowing them all lets
            // us prefetch every open a fill will read before touching any. Those opens are
            // scattered and usually not cached; on minute bars, waiting for them one at a
            // time took half the run time.
            // A reused buffer: a zeroed stack array here cost a visible 8 KB memset per asset
            // and chunk.
            stops.clear();
            let (mut t, mut p, mut h) = (0, pending, held);
            while t < len {
                if p != h {
                    h = p;
                    prefetch(&open[t]);
                }
                // The close on which the target next changes, or `len` if none in the chunk.
                let flip = next_set(if h { &to_flat } else { &to_long }, t, len);
                let stop = (flip + 1).min(len);
                if flip < len {
                    p = !h;
                }
                stops.push(stop as u32);
                t = stop;
            }
            // Then walk the segments: a fill at the first open if the target changed, then
            // the value at each close, constant cash or shares·close.
            let mut t = 0;
            for &stop in stops.iter() {
                let stop = stop as usize;
                if pending != held {
                    if pending {
                        shares = cash / (open[t] * buy_k);
                        cash = 0.0;
                    } else {
                        cash = shares * open[t] * sell_k;
                        shares = 0.0;
                    }
                    held = pending;
                    fills += 1;
                }
                if held {
                    for (e, &c) in eq[t..stop].iter_mut().zip(&close[t..stop]) {
                        put::<ADD>(e, shares * c);
                    }
                } else {
                    for e in &mut eq[t..stop] {
                        put::<ADD>(e, cash);
                    }
                }
                // A segment ends before the chunk does only where the target flips.
                if stop < len {
                    pending = !held;
                }
                t = stop;
            }
            // Whether the last close of the chunk flipped the target is in the plan.
            pending = p;
        }
        // After the last bar the position is held and valued at the last close.
        let tail = end.clamp(c0, c1).max(hi);
        if tail < c1 {
            let v = if shares > 0.0 { cash + shares * close[end - 1] } else { cash };
            for e in &mut eq[tail - c0..] {
                put::<ADD>(e, v);
            }
        }
        (st.cash, st.shares, st.held, st.pending) = (cash, shares, held, pending);
        fills
    }
}

/// The first set bit at index `from..len` of `mask`, or `len`.
#[inline(always)]
fn next_set(mask: &[u64; CHUNK / 64], from: usize, len: usize) -> usize {
    let mut w = from / 64;
    let mut bits = mask[w] & (!0_u64 << (from % 64));
    loop {
        if bits != 0 {
            return (w * 64 + bits.trailing_zeros() as usize).min(len);
        }
        w += 1;
        if w * 64 >= len {
            return len;
        }
        bits = mask[w];
    }
}

/// Hints the CPU to start loading `x`'s cache line; a no-op where unsupported.
#[inline(always)]
fn prefetch(x: &f64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is only a hint; it never faults, and SSE is baseline on x86_64.
        #[allow(unused_unsafe, reason = "`_mm_prefetch` is a safe fn on newer toolchains")]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((x as *const f64).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
