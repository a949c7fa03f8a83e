//! An independent, obviously-correct MA-crossover reference: slow loops straight from the
//! contract, sharing no code with the engine, compared on random bundles.

use proptest::prelude::*;

use crate::{Data, assert_close, check, ma, opts};

/// Equity curve and metrics, computed the slow way.
struct Reference {
    equity: Vec<f64>,
    trades: u64,
    total_return: f64,
    sharpe: f64,
    sortino: f64,
    max_drawdown: f64,
    calmar: f64,
}

#[allow(clippy::needless_range_loop, reason = "the reference indexes bars exactly as the contract's formulas do")]
fn reference(
    data: &Data,
    short: usize,
    long: usize,
    thr: f64,
    budget: f64,
    range: Option<std::ops::Range<usize>>,
    fee: f64,
) -> Reference {
    let n_sessions = data.bounds.len() - 1;
    let range = range.unwrap_or(0..n_sessions);
    let t_sessions = range.end - range.start;
    let k = (budget * t_sessions as f64).ceil() as usize;
    let w0 = data.bounds[range.end - k];
    let w1 = data.bounds[range.end];
    let n_assets = data.assets.len();
    let mut equity = vec![0.0; w1 - w0];
    let mut trades = 0;
    for a in &data.assets {
        let sma = |t: usize, w: usize| -> Option<f64> {
            if t + 1 < a.first + w {
                return None;
            }
            let mut sum = 0.0;
            for c in &a.close[t + 1 - w..=t] {
                sum += c;
            }
            Some(sum / w as f64)
        };
        // Target decided on each close, from the asset's first bar.
        let mut target = vec![false; a.end.max(a.first)];
        let mut state = false;
        for t in a.first..a.end {
            if let (Some(s), Some(l)) = (sma(t, short), sma(t, long)) {
                if s > l * (1.0 + thr) {
                    state = true;
                } else if s < l * (1.0 - thr) {
                    state = false;
                }
            }
            target[t] = state;
        }
        let mut cash = 1.0 / n_assets as f64;
        let mut shares = 0.0;
        for t in w0..w1 {
            if t >= a.first && t < a.end {
                let want = t > a.first && target[t - 1];
                if want && shares == 0.0 {
                    shares = cash / (a.open[t] * (1.0 + fee));
                    cash = 0.0;
                    trades += 1;
                } else if !want && shares > 0.0 {
                    cash = shares * a.open[t] * (1.0 - fee);
                    shares = 0.0;
                    trades += 1;
                }
            }
            let value = if t < a.first {
                cash
            } else if t < a.end {
                cash + shares * a.close[t]
            } else {
                cash + shares * a.close[a.end - 1]
            };
            equity[t - w0] += value;
        }
    }
    let n = equity.len() as f64;
    let mut r = Vec::new();
    let mut prev = 1.0;
    for &e in &equity {
        r.push(e / prev - 1.0);
        prev = e;
    }
    let mean = r.iter().sum::<f64>() / n;
    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    let ann = data.periods_per_year.sqrt();
    let sharpe = if var > 0.0 && r.len() > 1 { mean / var.sqrt() * ann } else { 0.0 };
    let down = (r.iter().map(|x| x.min(0.0) * x.min(0.0)).sum::<f64>() / n).sqrt();
    let sortino = if down > 0.0 { mean / down * ann } else { 0.0 };
    let mut max_drawdown = 0.0_f64;
    for t in 0..equity.len() {
        let peak = equity[..=t].iter().fold(1.0_f64, |m, &e| m.max(e));
        max_drawdown = max_drawdown.min(equity[t] / peak - 1.0);
    }
    let last = *equity.last().unwrap();
    let calmar =
        if max_drawdown < 0.0 { (last.powf(data.periods_per_year / n) - 1.0) / max_drawdown.abs() } else { 0.0 };
    Reference { equity, trades, total_return: last - 1.0, sharpe, sortino, max_drawdown, calmar }
}

fn metric_close(a: f64, b: f64, what: &str) {
    // Metrics sum returns in different orders, so allow a little more than the curve.
    assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0), "{what}: {a} vs {b}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        rng_seed: proptest::test_runner::RngSeed::Fixed(3),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_the_slow_reference(
        seed in any::<u64>(),
        n_assets in 1usize..4,
        n_sessions in 20usize..160,
        bars_per_session in prop_oneof![Just(1usize), Just(3usize)],
        short in 1usize..25,
        long in 1usize..60,
        thr in prop_oneof![Just(0.0), 0.0..0.03],
        budget in prop_oneof![Just(1.0), 0.01f64..1.0],
        range_cut in (0.0f64..0.3, 0.0f64..0.3),
        fee in prop_oneof![Just(0.001), 0.0..0.01],
    ) {
        let data = Data::random(seed, n_assets, n_sessions, bars_per_session);
        let start = (range_cut.0 * n_sessions as f64) as usize;
        let end = n_sessions - (range_cut.1 * n_sessions as f64) as usize;
        let range = Some(start..end);
        let (m, eq) = check(&data, &ma(short, long, thr), &opts(budget, range.clone(), fee));
        let r = reference(&data, short, long, thr, budget, range, fee);
        prop_assert_eq!(eq.len(), r.equity.len());
        for (t, (a, b)) in eq.iter().zip(&r.equity).enumerate() {
            assert_close(*a, *b, 1e-12, &format!("equity[{t}]"));
        }
        prop_assert_eq!(m.trades, r.trades);
        metric_close(m.total_return, r.total_return, "total_return");
        metric_close(m.sharpe, r.sharpe, "sharpe");
        metric_close(m.sortino, r.sortino, "sortino");
        metric_close(m.max_drawdown, r.max_drawdown, "max_drawdown");
        metric_close(m.calmar, r.calmar, "calmar");
    }
}
