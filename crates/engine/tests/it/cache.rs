//! The per-worker SMA cache changes speed only: sweeps give bit-identical results with it,
//! without it, and while it evicts.

use engine::{Backtester, Metrics};

use crate::{Data, assert_same, ma, opts};

fn sweep(bt: &mut Backtester<'_>, budgets: &[f64]) -> Vec<Metrics> {
    let mut out = Vec::new();
    for &b in budgets {
        for s in (2..30).step_by(4) {
            for l in (5..60).step_by(9) {
                for thr in [0.0, 0.004] {
                    out.push(bt.run(&ma(s, l, thr), &opts(b, Some(3..70), 0.001)).unwrap());
                }
            }
        }
    }
    out
}

#[test]
fn results_are_identical_with_and_without_the_cache() {
    let budgets = [1.0, 0.25, 0.6, 1.0, 0.1];
    for (seed, bps) in [(11, 1), (12, 4)] {
        let data = Data::random(seed, 4, 80, bps);
        let market = data.market();
        let mut cached = Backtester::new(&market).unwrap();
        let warm = sweep(&mut cached, &budgets);
        assert!(cached.cache_bytes() > 0);
        // Capacity 0 keeps only what the current backtest needs: no reuse at all.
        let mut uncached = Backtester::with_cache_bytes(&market, 0).unwrap();
        let cold = sweep(&mut uncached, &budgets);
        // A capacity of a few arrays forces constant eviction.
        let mut tiny = Backtester::with_cache_bytes(&market, 3 * 8 * data.bounds[80]).unwrap();
        let evicting = sweep(&mut tiny, &budgets);
        assert_eq!(warm.len(), cold.len());
        for ((a, b), c) in warm.iter().zip(&cold).zip(&evicting) {
            assert_same(a, b);
            assert_same(a, c);
        }
        // And each equals a one-off run on a fresh backtester.
        let one = engine::run(&market, &ma(26, 59, 0.004), &opts(0.1, Some(3..70), 0.001)).unwrap();
        assert_same(warm.last().unwrap(), &one);
        assert!(warm.iter().any(|m| m.trades > 0));
    }
}

#[test]
fn momentum_sweeps_reuse_score_tables_without_changing_results() {
    use engine::{Momentum, WeightingScheme};
    let data = Data::random(21, 12, 120, 1);
    let market = data.market();
    let mut bt = Backtester::new(&market).unwrap();
    let mut n = 0;
    for lookback_period in [2, 5, 20] {
        for (rebalance_frequency, budget) in [(1, 1.0), (3, 0.4), (5, 0.75)] {
            for weighting_scheme in [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity] {
                let s = (Momentum {
                    lookback_period,
                    rebalance_frequency,
                    weighting_scheme,
                    top_n_assets: 4,
                    volatility_threshold: 0.8,
                    ..Momentum::default()
                })
                .configured()
                .expect("valid momentum");
                let o = opts(budget, Some(10..115), 0.001);
                let reused = bt.run(&s, &o).unwrap();
                let fresh = engine::run(&market, &s, &o).unwrap();
                assert_same(&reused, &fresh);
                n += usize::from(reused.trades > 0);
            }
        }
    }
    assert!(n > 10, "most configurations should trade");
}

#[test]
fn shared_tables_change_nothing_but_what_the_worker_builds() {
    use std::sync::Arc;

    use engine::SmaTables;
    let budgets = [1.0, 0.25, 0.6, 0.1];
    let data = Data::random(13, 4, 80, 2);
    let market = data.market();
    let span: usize = data.assets.iter().map(|a| a.end - a.first).sum();
    // Every window the sweep reads, plus ones it never reads and junk (0, repeats).
    let windows: Vec<usize> = (2..30).step_by(4).chain((5..60).step_by(9)).chain([0, 6, 6, 200]).collect();
    let distinct = {
        let mut w: Vec<usize> = windows.iter().copied().filter(|&w| w > 0).collect();
        w.sort_unstable();
        w.dedup();
        w.len()
    };
    let full = Arc::new(SmaTables::build(&market, &windows, usize::MAX));
    assert_eq!((full.windows(), full.complete_windows(), full.columns()), (distinct, distinct, distinct * 4));
    // Built on several threads, whole or cut by a budget: the same columns, bit for bit.
    for budget in [usize::MAX, span * 8 * 5 / 2] {
        let one = SmaTables::build(&market, &windows, budget);
        for threads in [2, 3, 64] {
            let many = SmaTables::build_on(&market, &windows, budget, threads);
            assert_eq!((many.columns(), many.bytes()), (one.columns(), one.bytes()), "{threads} threads");
            for asset in 0..data.assets.len() {
                for &w in &windows {
                    let bits =
                        |t: &SmaTables| t.get(asset, w).map(|c| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                    assert_eq!(bits(&many), bits(&one), "asset {asset}, window {w}, {threads} threads");
                }
            }
        }
    }
    assert_eq!(full.bytes(), distinct * span * 8);
    assert!(full.is_complete());
    // A budget of two and a half windows: a prefix of the windows, cut inside the third.
    let budget = span * 8 * 5 / 2;
    let part = Arc::new(SmaTables::build(&market, &windows, budget));
    assert!(part.bytes() <= budget && part.bytes() > 2 * span * 8, "{}", part.bytes());
    assert_eq!((part.complete_windows(), part.needed_bytes()), (2, full.bytes()));
    assert!(!part.is_complete());
    // A shared column holds what the worker would compute: SMA_2 of an asset by hand.
    let a = &data.assets[0];
    let sma2 = full.get(0, 2).unwrap();
    assert_eq!(sma2.len(), a.end - a.first);
    assert!(sma2[0].is_nan());
    let want = (a.close[a.first] + a.close[a.first + 1]) / 2.0;
    assert!((sma2[1] - want).abs() <= 1e-12 * want, "{} vs {want}", sma2[1]);

    let mut alone = Backtester::new(&market).unwrap();
    let reference = sweep(&mut alone, &budgets);
    let mut shared = Backtester::with_tables(&market, Backtester::DEFAULT_CACHE_BYTES, full.clone()).unwrap();
    let with_full = sweep(&mut shared, &budgets);
    // Everything came from the tables: the worker built nothing of its own.
    assert_eq!(shared.cache_bytes(), 0);
    let mut some = Backtester::with_tables(&market, Backtester::DEFAULT_CACHE_BYTES, part.clone()).unwrap();
    let with_part = sweep(&mut some, &budgets);
    // Only what the tables lack: the windows beyond the first two and a half, every asset.
    assert!(some.cache_bytes() > 0 && some.cache_bytes() < alone.cache_bytes(), "{}", some.cache_bytes());
    // Tables without any private cache (capacity 0) still serve every backtest.
    let mut bare = Backtester::with_tables(&market, 0, part).unwrap();
    let with_bare = sweep(&mut bare, &budgets);
    assert_eq!(reference.len(), with_full.len());
    for (((a, b), c), d) in reference.iter().zip(&with_full).zip(&with_part).zip(&with_bare) {
        assert_same(a, b);
        assert_same(a, c);
        assert_same(a, d);
    }
    assert!(reference.iter().any(|m| m.trades > 0));

    // Tables of another market are refused, even one with the same numbers elsewhere.
    let copy = data.clone();
    let other = copy.market();
    let refused = Backtester::with_tables(&other, 0, full.clone()).err().expect("refused");
    assert!(refused.to_string().contains("another market"), "{refused}");
    assert!(full.built_from(&market) && !full.built_from(&other));
}
