//! The cached momentum kernel (shared tables and selections, per-worker) against the
//! reference kernel of a fresh, cache-less backtester: bit-identical on random universes and
//! random sweeps, including while the cache evicts.

use engine::{Backtester, Configured, Metrics, Momentum, RunOptions, WeightingScheme};
use proptest::prelude::*;

use crate::{Data, assert_same, opts};

fn momentum() -> impl proptest::strategy::Strategy<Value = Momentum> {
    // Few lookbacks, sizes and thresholds, so that a sweep reuses tables and selections.
    (
        prop_oneof![Just(2usize), Just(5), Just(12), 2usize..40],
        1usize..9,
        1usize..8,
        0usize..3,
        prop_oneof![Just(3usize), Just(8), 1usize..30],
        prop_oneof![Just(0.3f64), Just(0.8), 0.05f64..3.0],
        prop_oneof![Just(0.0f64), 0.0f64..15.0],
        prop_oneof![Just(100.0f64), 5.0f64..100.0],
    )
        .prop_map(|(lb, hold, reb, w, top, vol, lo, hi)| Momentum {
            lookback_period: lb,
            holding_period: hold,
            rebalance_frequency: reb,
            weighting_scheme: [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity][w],
            top_n_assets: top,
            volatility_threshold: vol,
            min_position_size: lo,
            max_position_size: hi,
        })
}

fn run_options() -> impl proptest::strategy::Strategy<Value = RunOptions> {
    (prop_oneof![Just(1.0f64), 0.02f64..1.0], 0usize..30, 60usize..=100, prop_oneof![Just(0.001f64), 0.0..0.02])
        .prop_map(|(b, start, end, fee)| opts(b, Some(start..end), fee))
}

fn sweep(bt: &mut Backtester<'_>, runs: &[(Momentum, RunOptions)]) -> Vec<(Metrics, Vec<f64>)> {
    runs.iter()
        .map(|(p, o)| {
            let mut eq = Vec::new();
            let m = bt.run_with_equity(&configured(p), o, &mut eq).expect("runs");
            (m, eq)
        })
        .collect()
}

fn configured(p: &Momentum) -> Configured {
    p.configured().expect("valid momentum")
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Every sweep in `sweeps` (the metrics and equity of each of `runs`) holds exactly the bits of
/// a fresh, cache-less backtester's reference run of the same config.
fn same_as_fresh_runs(
    market: &engine::Market<'_>,
    runs: &[(Momentum, RunOptions)],
    sweeps: &[&[(Metrics, Vec<f64>)]],
) -> Result<(), TestCaseError> {
    for (k, (p, o)) in runs.iter().enumerate() {
        let mut fresh = Backtester::with_cache_bytes(market, 0).expect("backtester");
        let mut want = Vec::new();
        let reference = fresh.run_with_equity(&configured(p), o, &mut want).expect("runs");
        for sweep in sweeps {
            let (m, eq) = &sweep[k];
            assert_same(m, &reference);
            prop_assert_eq!(bits(eq), bits(&want));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cached_sweeps_equal_fresh_reference_runs(
        seed in any::<u64>(),
        // Up to 70 assets, so that sets span more than one 64-bit word.
        n_assets in prop_oneof![2usize..12, 60usize..71],
        runs in proptest::collection::vec((momentum(), run_options()), 1..12),
    ) {
        let data = Data::random(seed, n_assets, 100, 1);
        let market = data.market();
        let mut warm = Backtester::new(&market).expect("backtester");
        let cached = sweep(&mut warm, &runs);
        // A capacity below one table: every backtest evicts what the previous one kept.
        let mut tiny = Backtester::with_cache_bytes(&market, 1).expect("backtester");
        let evicting = sweep(&mut tiny, &runs);
        same_as_fresh_runs(&market, &runs, &[&cached, &evicting])?;
    }
}

/// Configs as a grid sweep orders them: runs of one config with many position bounds.
fn bound_variants() -> impl proptest::strategy::Strategy<Value = Vec<Momentum>> {
    let bounds = (
        prop_oneof![Just(0.0f64), Just(1.0), Just(5.0), 0.0f64..30.0],
        prop_oneof![Just(10.0f64), Just(20.0), Just(50.0), 5.0f64..100.0],
    );
    proptest::collection::vec((momentum(), proptest::collection::vec(bounds, 1..10)), 1..5).prop_map(|groups| {
        groups
            .into_iter()
            .flat_map(|(p, bs)| {
                bs.into_iter().map(move |(lo, hi)| Momentum { min_position_size: lo, max_position_size: hi, ..p })
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn batches_equal_fresh_reference_runs(
        seed in any::<u64>(),
        n_assets in prop_oneof![2usize..12, 60usize..71],
        configs in bound_variants(),
        o in run_options(),
        blocks in any::<bool>(),
    ) {
        let data = Data::random(seed, n_assets, 100, 1);
        let market = data.market();
        let o = if blocks { o.with_fidelity(engine::Fidelity::Blocks) } else { o };
        let mut bt = Backtester::new(&market).expect("backtester");
        let batch = bt.run_momentum_batch(&configs, &o).expect("runs");
        // A cache-less backtester runs the reference kernel for every config.
        let mut plain = Backtester::with_cache_bytes(&market, 0).expect("backtester");
        let unshared = plain.run_momentum_batch(&configs, &o).expect("runs");
        prop_assert_eq!(batch.len(), configs.len());
        for ((p, m), u) in configs.iter().zip(&batch).zip(&unshared) {
            let reference = engine::run(&market, &configured(p), &o).expect("runs");
            assert_same(m, &reference);
            assert_same(u, &reference);
        }
    }
}

#[test]
fn a_batch_refuses_what_a_single_run_refuses() {
    let data = Data::random(4, 6, 60, 1);
    let market = data.market();
    let mut bt = Backtester::new(&market).unwrap();
    let bad = Momentum { max_position_size: 0.0, ..Momentum::default() };
    let want = bad.configured().unwrap_err();
    let got = bt.run_momentum_batch(&[Momentum::default(), bad], &RunOptions::default()).unwrap_err();
    assert_eq!(got, want);
    assert_eq!(bt.run_momentum_batch(&[], &RunOptions::default()).unwrap(), vec![]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: proptest::test_runner::RngSeed::Fixed(13),
        ..ProptestConfig::default()
    })]

    /// Shared momentum tables (all the sweep's lookbacks, or only some, so the backtester
    /// builds the rest itself) change no bit of any result.
    #[test]
    fn shared_momentum_tables_change_no_result(
        seed in any::<u64>(),
        n_assets in prop_oneof![2usize..12, 60usize..71],
        runs in proptest::collection::vec((momentum(), run_options()), 1..10),
        keep_every in 1usize..3,
    ) {
        let data = Data::random(seed, n_assets, 100, 1);
        let market = data.market();
        let lookbacks: Vec<usize> = runs.iter().map(|(p, _)| p.lookback_period).step_by(keep_every).collect();
        let tables = std::sync::Arc::new(engine::MomentumTables::build(&market, &lookbacks, usize::MAX));
        prop_assert!(tables.is_complete());
        let mut shared = Backtester::new(&market).expect("backtester");
        shared.share_momentum_tables(tables.clone()).expect("same market");
        let got = sweep(&mut shared, &runs);
        // The same, evicting its own tables after every backtest.
        let mut tiny = Backtester::with_cache_bytes(&market, 1).expect("backtester");
        tiny.share_momentum_tables(tables).expect("same market");
        let evicting = sweep(&mut tiny, &runs);
        same_as_fresh_runs(&market, &runs, &[&got, &evicting])?;
    }
}

#[test]
fn momentum_tables_of_another_market_are_refused() {
    let (a, b) = (Data::random(1, 5, 80, 1), Data::random(1, 5, 80, 1));
    let (ma, mb) = (a.market(), b.market());
    let tables = std::sync::Arc::new(engine::MomentumTables::build(&ma, &[5, 10], usize::MAX));
    let mut bt = Backtester::new(&mb).expect("backtester");
    let e = bt.share_momentum_tables(tables.clone()).expect_err("another market's closes");
    assert!(e.to_string().contains("momentum tables"), "{e}");
    Backtester::new(&ma).expect("backtester").share_momentum_tables(tables).expect("its own market");
}
