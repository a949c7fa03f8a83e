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
