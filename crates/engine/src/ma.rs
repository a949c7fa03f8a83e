//! The MA-crossover kernel: per-asset long/flat slices of 1/N, no cash sharing.

use crate::MaCrossover;
use crate::backtester::Ctx;
use crate::metrics::{Metrics, MetricsAcc};
use crate::sma::SmaCache;

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

/// Buffers reused across backtests by one worker.
#[derive(Default)]
pub(crate) struct MaScratch {
    slices: Vec<Slice>,
    equity: Vec<f64>,
}

pub(crate) fn run(
    ctx: Ctx<'_>,
    cache: &mut SmaCache,
    p: &MaCrossover,
    scratch: &mut MaScratch,
    mut equity_out: Option<&mut Vec<f64>>,
) -> Metrics {
    let Ctx { market, order, fee, win, returns } = ctx;
    let (w0, w1) = (win.bars.start, win.bars.end);
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
        let decide_from = a.first_bar + p.short_window.max(p.long_window) - 1;
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
    returns.clear();
    returns.resize(n, 0.0);
    scratch.equity.clear();
    scratch.equity.resize(CHUNK.min(n), 0.0);
    if let Some(out) = equity_out.as_deref_mut() {
        out.clear();
    }
    let mut acc = MetricsAcc::new();
    let mut trades = 0_u64;
    let mut c0 = w0;
    while c0 < w1 {
        let c1 = (c0 + CHUNK).min(w1);
        let eq = &mut scratch.equity[..c1 - c0];
        eq.fill(0.0);
        for st in &mut scratch.slices {
            let a = &market.assets[st.asset];
            trades += step(st, a.open, a.close, cache, kup, kdn, buy_k, sell_k, c0, eq);
        }
        acc.push(eq, &mut returns[c0 - w0..c1 - w0]);
        if let Some(out) = equity_out.as_deref_mut() {
            out.extend_from_slice(eq);
        }
        c0 = c1;
    }
    acc.finish(returns, market.periods_per_year, trades)
}

/// Advances one slice over the chunk starting at bar `c0`, adding its value at each close
/// to `eq`. Returns the number of fills.
#[expect(clippy::too_many_arguments, reason = "a hot kernel; a params struct would hide the data flow")]
#[inline]
fn step(
    st: &mut Slice,
    open: &[f64],
    close: &[f64],
    cache: &SmaCache,
    kup: f64,
    kdn: f64,
    buy_k: f64,
    sell_k: f64,
    c0: usize,
    eq: &mut [f64],
) -> u64 {
    let c1 = c0 + eq.len();
    let (first, end) = (st.first, st.end);
    let (mut cash, mut shares, mut held, mut pending) = (st.cash, st.shares, st.held, st.pending);
    let mut fills = 0_u64;

    // Before the first bar the slice is cash.
    let lo = first.clamp(c0, c1);
    for e in &mut eq[..lo - c0] {
        *e += cash;
    }
    let hi = end.clamp(lo, c1);
    // Traded bars before both SMAs exist: no signal, so nothing to fill either.
    let mid = st.decide_from.clamp(lo, hi);
    for (e, &c) in eq[lo - c0..mid - c0].iter_mut().zip(&close[lo..mid]) {
        *e += cash + shares * c;
    }
    // The hot loop: fill at the open what the last close decided, mark at the close, decide.
    if mid < hi {
        let ss = &cache.slice(st.short)[mid - first..hi - first];
        let sl = &cache.slice(st.long)[mid - first..hi - first];
        let bars = eq[mid - c0..hi - c0].iter_mut().zip(&open[mid..hi]).zip(&close[mid..hi]).zip(ss.iter().zip(sl));
        for (((e, &o), &c), (&s, &l)) in bars {
            if pending != held {
                if pending {
                    shares = cash / (o * buy_k);
                    cash = 0.0;
                } else {
                    cash = shares * o * sell_k;
                    shares = 0.0;
                }
                held = pending;
                fills += 1;
            }
            *e += cash + shares * c;
            // Two strict comparisons, not `>=`, so the band keeps the target exactly as the
            // contract says; `|`/`&` on bools keeps it branch-free.
            let up = s > l * kup;
            let down = s < l * kdn;
            pending = up | (pending & !down);
        }
    }
    // After the last bar the position is held and valued at the last close.
    let tail = end.clamp(c0, c1).max(hi);
    if tail < c1 {
        let v = if shares > 0.0 { cash + shares * close[end - 1] } else { cash };
        for e in &mut eq[tail - c0..] {
            *e += v;
        }
    }
    (st.cash, st.shares, st.held, st.pending) = (cash, shares, held, pending);
    fills
}
