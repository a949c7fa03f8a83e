//! Fidelities: what a budget evaluates. `blocks` places its blocks as documented, chains
//! full-budget runs of each block, equals `recent` at budget 1, never looks ahead, and
//! costs more bars as the budget grows.

use std::ops::Range;

use engine::{Fidelity, RunOptions};
use proptest::prelude::*;

use crate::props::{any_strategy, bars_per_session};
use crate::{Data, assert_same, check, opts};

fn blocks(budget: f64, sessions: Option<Range<usize>>) -> RunOptions {
    opts(budget, sessions, 0.001).with_fidelity(Fidelity::Blocks)
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn names_round_trip_and_unknown_names_are_refused() {
    for f in Fidelity::ALL {
        assert_eq!(f.as_str().parse::<Fidelity>().unwrap(), f);
        assert_eq!(f.to_string(), f.as_str());
    }
    assert_eq!(Fidelity::NAMES, Fidelity::ALL.map(Fidelity::as_str));
    assert_eq!(
        "suffix".parse::<Fidelity>().unwrap_err().to_string(),
        "invalid run options: unknown fidelity `suffix`, expected one of recent, blocks"
    );
    assert_eq!(RunOptions::default().fidelity(), Fidelity::Recent);
}

#[test]
fn options_serialised_without_a_fidelity_mean_recent() {
    let json = r#"{"budget":0.5,"sessions":null,"fee":0.001}"#;
    let o: RunOptions = serde_json::from_str(json).unwrap();
    assert_eq!(o, opts(0.5, None, 0.001));
    assert_eq!(o.fidelity(), Fidelity::Recent);
    let b = blocks(0.3, Some(2..9));
    let text = serde_json::to_string(&b).unwrap();
    assert!(text.contains(r#""fidelity":"blocks""#), "{text}");
    assert_eq!(serde_json::from_str::<RunOptions>(&text).unwrap(), b);
    assert_eq!(postcard::from_bytes::<RunOptions>(&postcard::to_stdvec(&b).unwrap()).unwrap(), b);
}

#[test]
fn blocks_are_placed_as_documented() {
    /// (budget, range, the blocks as (start, end)), on a 100-session market.
    type Case = (f64, Option<Range<usize>>, &'static [(usize, usize)]);
    let cases: [Case; 6] = [
        // T = 100, k = 20, K = 4, G = 80: each block of 5 follows a gap of 20.
        (0.2, None, &[(20, 25), (45, 50), (70, 75), (95, 100)]),
        // T = 10, k = 3: three blocks of one session, gaps 2, 2, 3.
        (0.25, Some(0..10), &[(2, 3), (5, 6), (9, 10)]),
        // T = 10, k = 9, G = 1: the first three blocks touch and merge.
        (0.9, Some(0..10), &[(0, 6), (7, 10)]),
        // One session: the last one, as under `recent`.
        (0.001, Some(5..15), &[(14, 15)]),
        // The whole range.
        (1.0, Some(5..15), &[(5, 15)]),
        // An offset range: T = 40, k = 8, G = 32, blocks of 2.
        (0.2, Some(30..70), &[(38, 40), (48, 50), (58, 60), (68, 70)]),
    ];
    for (b, range, want) in cases {
        let got: Vec<(usize, usize)> =
            blocks(b, range.clone()).evaluated_sessions(100).unwrap().into_iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, want, "b = {b}, {range:?}");
    }
    let recent = opts(0.2, None, 0.001).evaluated_sessions(100).unwrap();
    assert_eq!(recent.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), [(80, 100)]);
    assert_eq!(
        blocks(0.5, Some(0..120)).evaluated_sessions(100).unwrap_err().to_string(),
        "invalid run options: session range 0..120 exceeds the market's 100 sessions"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(13),
        ..ProptestConfig::default()
    })]

    #[test]
    fn blocks_hold_ceil_b_t_sessions_ending_with_the_range(
        budget in 0.0001f64..=1.0, start in 0usize..50, len in 1usize..400,
    ) {
        let (s, e) = (start, start + len);
        let got = blocks(budget, Some(s..e)).evaluated_sessions(e).unwrap();
        let k = ((budget * len as f64).ceil() as usize).clamp(1, len);
        prop_assert_eq!(got.iter().map(|r| r.len()).sum::<usize>(), k);
        prop_assert!(got.len() <= Fidelity::BLOCKS);
        prop_assert_eq!(got.last().unwrap().end, e);
        prop_assert!(got[0].start >= s);
        // Sorted, non-empty, and neither overlapping nor touching (touching blocks merge).
        prop_assert!(got.iter().all(|r| !r.is_empty()));
        prop_assert!(got.windows(2).all(|w| w[0].end < w[1].start));
    }

    #[test]
    fn budget_one_is_identical_across_fidelities(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(), start in 0usize..20, end in 40usize..=60,
    ) {
        let data = Data::random(seed, 4, 60, bars_per_session(&s, intraday));
        for range in [None, Some(start..end)] {
            let (m, eq) = check(&data, &s, &opts(1.0, range.clone(), 0.001));
            let (mb, eqb) = check(&data, &s, &blocks(1.0, range));
            assert_same(&m, &mb);
            prop_assert_eq!(bits(&eq), bits(&eqb));
        }
    }

    #[test]
    fn blocks_chain_full_budget_runs_of_each_block(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(),
        budget in 0.01f64..1.0, start in 0usize..20, end in 40usize..=60, fee in prop_oneof![Just(0.001), 0.0..0.01],
    ) {
        let data = Data::random(seed, 4, 60, bars_per_session(&s, intraday));
        let o = opts(budget, Some(start..end), fee).with_fidelity(Fidelity::Blocks);
        let (m, eq) = check(&data, &s, &o);
        let mut want = Vec::new();
        let (mut carry, mut trades) = (1.0_f64, 0);
        for block in o.evaluated_sessions(60).unwrap() {
            let (mb, eqb) = check(&data, &s, &opts(1.0, Some(block), fee));
            trades += mb.trades;
            want.extend(eqb.iter().map(|&e| carry * e));
            carry = *want.last().unwrap();
        }
        prop_assert_eq!(bits(&eq), bits(&want));
        prop_assert_eq!(m.trades, trades);
        prop_assert_eq!(m.final_equity.to_bits(), carry.to_bits());
        prop_assert_eq!(m.bars as usize, want.len());
    }

    #[test]
    fn blocks_never_look_ahead(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(),
        budget in 0.01f64..1.0, end in 30usize..=80, cut in 0.0f64..1.0, bump in 0.5f64..2.0,
    ) {
        let bps = bars_per_session(&s, intraday);
        let data = Data::random(seed, 4, 80, bps);
        let o = blocks(budget, Some(0..end));
        let (m, eq) = check(&data, &s, &o);
        // The bars each equity value belongs to, in order.
        let bars: Vec<usize> = o.evaluated_sessions(80).unwrap().into_iter()
            .flat_map(|r| data.bounds[r.start]..data.bounds[r.end]).collect();
        prop_assert_eq!(bars.len(), eq.len());
        // Perturb every bar after a cut: equity up to the cut is unchanged. A cut at the
        // last block's last bar (the range end) leaves everything unchanged.
        let last = *bars.last().unwrap();
        let t = if cut > 0.9 { last } else { bars[((bars.len() - 1) as f64 * cut) as usize] };
        let mut changed = data.clone();
        for a in &mut changed.assets {
            for u in t + 1..data.bounds[80] {
                a.open[u] *= bump;
                a.close[u] *= bump * 1.01;
            }
        }
        let (m2, eq2) = check(&changed, &s, &o);
        let upto = bars.iter().take_while(|&&b| b <= t).count();
        prop_assert_eq!(bits(&eq[..upto]), bits(&eq2[..upto]));
        if t == last {
            assert_same(&m, &m2);
        }
    }

    #[test]
    fn cost_grows_with_the_budget(
        seed in any::<u64>(), s in any_strategy(), intraday in any::<bool>(),
        b1 in 0.01f64..=1.0, b2 in 0.01f64..=1.0,
    ) {
        let bps = bars_per_session(&s, intraday);
        let data = Data::random(seed, 3, 60, bps);
        let (lo, hi) = (b1.min(b2), b1.max(b2));
        let bars = |b: f64| {
            let o = blocks(b, None);
            let (m, _) = check(&data, &s, &o);
            let sessions: usize = o.evaluated_sessions(60).unwrap().iter().map(|r| r.len()).sum();
            // Every session has `bps` bars here, and the run touches exactly the blocks' bars.
            assert_eq!(m.bars as usize, sessions * bps);
            m.bars
        };
        let (a, b) = (bars(lo), bars(hi));
        prop_assert!(a <= b, "{} bars at b = {}, {} at b = {}", a, lo, b, hi);
        prop_assert_eq!(b as usize, ((hi * 60.0).ceil() as usize).clamp(1, 60) * bps);
    }
}

#[test]
fn a_lower_budget_is_a_different_backtest_under_each_fidelity() {
    // Not a tautology check: `blocks` at b < 1 must actually evaluate other sessions.
    let data = Data::random(3, 4, 100, 1);
    let s = (engine::Momentum { lookback_period: 5, top_n_assets: 2, ..Default::default() }).configured().unwrap();
    let (recent, _) = check(&data, &s, &opts(0.4, None, 0.001));
    let (spread, _) = check(&data, &s, &blocks(0.4, None));
    assert_eq!(recent.bars, spread.bars);
    assert_ne!(recent.final_equity.to_bits(), spread.final_equity.to_bits());
}
