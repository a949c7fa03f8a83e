//! Property tests: no look-ahead, budget semantics and asset-order independence.

use proptest::prelude::*;

use engine::{Configured, Momentum, RunOptions, WeightingScheme};

use crate::{Data, assert_same, check, ma, opts};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 96, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() }
}

pub(crate) fn any_strategy() -> impl proptest::strategy::Strategy<Value = Configured> {
    prop_oneof![
        (1usize..20, 1usize..40, prop_oneof![Just(0.0), 0.0..0.02]).prop_map(|(s, l, t)| ma(s, l, t)),
        (2usize..15, 1usize..6, 1usize..5, 0usize..3, 1usize..4, 0.1f64..3.0, 0.0f64..20.0, 10.0f64..100.0).prop_map(
            |(lb, hold, reb, w, top, vol, lo, hi)| {
                (Momentum {
                    lookback_period: lb,
                    holding_period: hold,
                    rebalance_frequency: reb,
                    weighting_scheme: [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity]
                        [w],
                    top_n_assets: top,
                    volatility_threshold: vol,
                    min_position_size: lo,
                    max_position_size: hi,
                })
                .configured()
                .expect("valid momentum")
            }
        ),
    ]
}

/// Momentum needs daily bars; MA crossover also gets intraday bars.
pub(crate) fn bars_per_session(s: &Configured, pick: bool) -> usize {
    if s.name() == "ma-crossover" && pick { 3 } else { 1 }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn changing_later_bars_never_changes_earlier_equity(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(),
        budget in 0.05f64..=1.0, cut in 0.0f64..1.0, bump in 0.5f64..2.0,
    ) {
        let bps = bars_per_session(&s, intraday);
        let data = Data::random(seed, 4, 80, bps);
        let o = opts(budget, None, 0.001);
        let (_, eq) = check(&data, &s, &o);
        let n = data.bounds[80];
        let w0 = n - eq.len();
        let t = w0 + ((eq.len() - 1) as f64 * cut) as usize;
        let mut changed = data.clone();
        for a in &mut changed.assets {
            for u in t + 1..n {
                a.open[u] *= bump;
                a.close[u] *= bump * 1.01;
            }
        }
        let (_, eq2) = check(&changed, &s, &o);
        let upto = t - w0 + 1;
        prop_assert_eq!(eq[..upto].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        eq2[..upto].iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn budget_one_is_the_plain_full_range_run(seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>()) {
        let data = Data::random(seed, 3, 60, bars_per_session(&s, intraday));
        let (full, eq) = check(&data, &s, &RunOptions::default());
        let (explicit, eq2) = check(&data, &s, &opts(1.0, Some(0..60), 0.001));
        assert_same(&full, &explicit);
        prop_assert_eq!(eq, eq2);
        prop_assert_eq!(full.bars as usize, data.bounds[60]);
    }

    #[test]
    fn a_lower_budget_evaluates_a_suffix_of_the_window(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(),
        budget in 0.001f64..1.0, start in 0usize..20, end in 40usize..=60,
    ) {
        let data = Data::random(seed, 3, 60, bars_per_session(&s, intraday));
        let (low, eq) = check(&data, &s, &opts(budget, Some(start..end), 0.001));
        let k = (budget * (end - start) as f64).ceil() as usize;
        prop_assert!(k >= 1 && k <= end - start);
        // W is the last k sessions of the range, and it is the same backtest as running
        // those sessions at full budget: warm-up may read any earlier bar.
        prop_assert_eq!(low.bars as usize, data.bounds[end] - data.bounds[end - k]);
        let (suffix, eq2) = check(&data, &s, &opts(1.0, Some(end - k..end), 0.001));
        assert_same(&low, &suffix);
        prop_assert_eq!(eq, eq2);
    }

    #[test]
    fn results_do_not_depend_on_asset_order(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(), rot in 1usize..5,
    ) {
        let data = Data::random(seed, 5, 50, bars_per_session(&s, intraday));
        let (m, eq) = check(&data, &s, &opts(0.7, None, 0.001));
        let mut shuffled = data.clone();
        shuffled.assets.rotate_left(rot);
        shuffled.assets.swap(0, 3);
        let (m2, eq2) = check(&shuffled, &s, &opts(0.7, None, 0.001));
        assert_same(&m, &m2);
        prop_assert_eq!(eq.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        eq2.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
