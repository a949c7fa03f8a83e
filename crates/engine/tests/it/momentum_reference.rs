//! A slow, straightforward momentum reference compared with the engine on random daily
//! universes (late listings and early delistings included).

use engine::{Momentum, WeightingScheme};
use proptest::prelude::*;

use crate::{Data, assert_close, check, opts};

#[allow(
    clippy::needless_range_loop,
    reason = "the reference indexes assets and bars exactly as the contract's rules do"
)]
fn reference(data: &Data, p: &Momentum, budget: f64, fee: f64) -> (Vec<f64>, u64) {
    let n_sessions = data.bounds.len() - 1;
    let k_sessions = (budget * n_sessions as f64).ceil() as usize;
    let (w0, w1) = (n_sessions - k_sessions, n_sessions);
    let mut idx: Vec<usize> = (0..data.assets.len()).collect();
    idx.sort_by_key(|&i| data.assets[i].sid);
    let assets: Vec<_> = idx.iter().map(|&i| &data.assets[i]).collect();
    let n = assets.len();
    let mut cash = 1.0_f64;
    let mut shares = vec![0.0_f64; n];
    let mut entry: Vec<Option<usize>> = vec![None; n];
    let mut pending: Option<Vec<f64>> = None;
    let mut equity = Vec::new();
    let mut trades = 0;
    for t in w0..w1 {
        if let Some(w) = pending.take() {
            let tradable = |k: usize| assets[k].first <= t && t < assets[k].end;
            let mut value = cash;
            for k in 0..n {
                if shares[k] > 0.0 {
                    let a = assets[k];
                    value += shares[k] * if t < a.end { a.open[t] } else { a.close[a.end - 1] };
                }
            }
            let tq: Vec<f64> =
                (0..n).map(|k| if tradable(k) { w[k] * value / assets[k].open[t] } else { shares[k] }).collect();
            for k in 0..n {
                if tradable(k) && tq[k] < shares[k] {
                    cash += (shares[k] - tq[k]) * assets[k].open[t] * (1.0 - fee);
                    shares[k] = tq[k];
                    if tq[k] == 0.0 {
                        entry[k] = None;
                    }
                    trades += 1;
                }
            }
            let mut cost = 0.0;
            for k in 0..n {
                if tradable(k) && tq[k] > shares[k] {
                    cost += (tq[k] - shares[k]) * assets[k].open[t] * (1.0 + fee);
                }
            }
            let scale = if cost > cash { cash / cost } else { 1.0 };
            for k in 0..n {
                let dq = (tq[k] - shares[k]) * scale;
                if dq > 0.0 {
                    shares[k] += dq;
                    cash -= dq * assets[k].open[t] * (1.0 + fee);
                    entry[k].get_or_insert(t);
                    trades += 1;
                }
            }
            if scale < 1.0 {
                cash = 0.0;
            }
        }
        let mut e = cash;
        for k in 0..n {
            if shares[k] > 0.0 {
                e += shares[k] * assets[k].close[t.min(assets[k].end - 1)];
            }
        }
        equity.push(e);
        if (t - w0) % p.rebalance_frequency == 0 && t + 1 < w1 {
            let lb = p.lookback_period;
            let mut eligible = vec![false; n];
            let (mut score, mut vol) = (vec![0.0; n], vec![0.0; n]);
            for k in 0..n {
                let a = assets[k];
                if t >= a.first + lb && t < a.end {
                    eligible[k] = true;
                    score[k] = a.close[t] / a.close[t - lb] - 1.0;
                    let r: Vec<f64> = (t - lb + 1..=t).map(|j| a.close[j] / a.close[j - 1] - 1.0).collect();
                    let mean = r.iter().sum::<f64>() / lb as f64;
                    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (lb - 1) as f64;
                    vol[k] = var.sqrt() * 252.0_f64.sqrt();
                }
            }
            let mut ranked: Vec<usize> = (0..n).filter(|&k| eligible[k] && vol[k] <= p.volatility_threshold).collect();
            ranked.sort_by(|&x, &y| score[y].partial_cmp(&score[x]).unwrap().then(x.cmp(&y)));
            let mut in_set = vec![false; n];
            for &k in ranked.iter().take(p.top_n_assets) {
                in_set[k] = true;
            }
            for k in 0..n {
                if let Some(e0) = entry[k]
                    && eligible[k]
                    && t - e0 + 1 < p.holding_period
                {
                    in_set[k] = true;
                }
            }
            let mut w = vec![0.0; n];
            let members = in_set.iter().filter(|&&b| b).count();
            if members > 0 {
                let raw: Vec<f64> = (0..n)
                    .map(|k| {
                        if !in_set[k] {
                            return 0.0;
                        }
                        match p.weighting_scheme {
                            WeightingScheme::Equal => 1.0,
                            WeightingScheme::MarketCap => assets[k].close[t] * assets[k].shares_outstanding,
                            WeightingScheme::RiskParity => 1.0 / vol[k],
                        }
                    })
                    .collect();
                let total: f64 = raw.iter().sum();
                for k in 0..n {
                    w[k] = if p.weighting_scheme == WeightingScheme::Equal {
                        if in_set[k] { 1.0 / members as f64 } else { 0.0 }
                    } else {
                        raw[k] / total
                    };
                    if w[k] < p.min_position_size / 100.0 {
                        w[k] = 0.0;
                    } else if w[k] > p.max_position_size / 100.0 {
                        w[k] = p.max_position_size / 100.0;
                    }
                }
            }
            pending = Some(w);
        }
    }
    (equity, trades)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(5),
        ..ProptestConfig::default()
    })]

    #[test]
    fn momentum_matches_the_slow_reference(
        seed in any::<u64>(),
        n_assets in 2usize..14,
        lookback_period in 2usize..30,
        holding_period in 1usize..8,
        rebalance_frequency in 1usize..7,
        scheme in 0usize..3,
        top_n_assets in 1usize..8,
        volatility_threshold in 0.05f64..2.0,
        min_position_size in 0.0f64..15.0,
        max_position_size in 5.0f64..100.0,
        budget in prop_oneof![Just(1.0), 0.05f64..1.0],
        fee in prop_oneof![Just(0.001), 0.0..0.01],
    ) {
        let data = Data::random(seed, n_assets, 90, 1);
        let weighting_scheme =
            [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity][scheme];
        let p = Momentum {
            lookback_period, holding_period, rebalance_frequency, weighting_scheme, top_n_assets,
            volatility_threshold, min_position_size, max_position_size,
        };
        let (m, eq) = check(&data, &(p).configured().expect("valid momentum"), &opts(budget, None, fee));
        let (want, trades) = reference(&data, &p, budget, fee);
        prop_assert_eq!(eq.len(), want.len());
        for (t, (a, b)) in eq.iter().zip(&want).enumerate() {
            assert_close(*a, *b, 1e-12, &format!("equity[{t}]"));
        }
        prop_assert_eq!(m.trades, trades);
    }
}
