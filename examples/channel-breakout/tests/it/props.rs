//! No look-ahead: changing bars after the close of bar `t` never changes equity up to `t`.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::{Ohlc, check};

fn random_assets(seed: u64, n_assets: usize, bars: usize) -> Vec<Ohlc> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    (0..n_assets)
        .map(|_| {
            let mut a = Ohlc { open: vec![], high: vec![], low: vec![], close: vec![] };
            let mut p: f64 = rng.random_range(10.0..100.0);
            for _ in 0..bars {
                let o = p * (1.0 + 0.01 * (rng.random::<f64>() - 0.5));
                p *= 1.0 + 0.03 * (rng.random::<f64>() * 2.0 - 1.0);
                let (hi, lo) = (o.max(p), o.min(p));
                a.open.push(o);
                a.close.push(p);
                a.high.push(hi * (1.0 + 0.01 * rng.random::<f64>()));
                a.low.push(lo * (1.0 - 0.01 * rng.random::<f64>()));
            }
            a
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(5), ..ProptestConfig::default()
    })]

    #[test]
    fn later_bars_never_change_earlier_equity(
        seed in any::<u64>(), entry in 1usize..25, exit in 1usize..25, budget in 0.1f64..=1.0,
        cut in 0.0f64..1.0, bump in 0.5f64..2.0,
    ) {
        let bars = 120;
        let assets = random_assets(seed, 3, bars);
        let (_, eq) = check(&assets, entry, exit, budget, 0.001);
        let w0 = bars - eq.len();
        let t = w0 + ((eq.len() - 1) as f64 * cut) as usize;
        let mut changed = assets.clone();
        for a in &mut changed {
            for u in t + 1..bars {
                a.open[u] *= bump;
                a.high[u] *= bump;
                a.low[u] *= bump;
                a.close[u] *= bump;
            }
        }
        let (_, eq2) = check(&changed, entry, exit, budget, 0.001);
        prop_assert_eq!(&eq[..=t - w0], &eq2[..=t - w0]);
    }
}
