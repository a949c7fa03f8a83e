//! The same backtests give bit-identical results however the bundle reached memory.

use std::sync::Arc;

use bundle::{Bundle, Frequency, GenerateSpec};
use engine::{Configured, Registry, RunOptions};

fn strategies() -> Vec<Configured> {
    let ma = |s: u32, l: u32, t: &str| {
        let pairs = [("short_window", s.to_string()), ("long_window", l.to_string()), ("threshold", t.to_string())];
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Registry::builtin().configure("ma-crossover", &pairs).unwrap()
    };
    vec![ma(5, 20, "0"), ma(10, 50, "0.002"), ma(50, 50, "0.001"), ma(3, 8, "0.01")]
}

fn results(bundle: Bundle) -> Vec<u64> {
    let mut engine = runner::Engine::new(Arc::new(bundle)).unwrap();
    let mut bits = vec![];
    for s in strategies() {
        for budget in [1.0, 0.5, 0.05] {
            let m = engine.run(&s, &RunOptions::new_checked(budget, None, 0.001).unwrap()).unwrap();
            bits.extend([m.sharpe.to_bits(), m.final_equity.to_bits(), m.max_drawdown.to_bits(), m.trades]);
        }
    }
    bits
}

fn spec() -> GenerateSpec {
    GenerateSpec {
        start: "2020-06-01".parse().unwrap(),
        end: "2021-06-30".parse().unwrap(),
        ..GenerateSpec::mag7(Frequency::Daily)
    }
}

#[test]
fn loaded_mapped_and_in_memory_bundles_backtest_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let data = bundle::generate::generate(&spec()).unwrap();
    let hash = bundle::store::write(&data, &dir).unwrap();
    let from_memory = results(Bundle::from_data(&data, hash, String::new()));
    let loaded = results(Bundle::load(&dir).unwrap());
    let mapped = results(Bundle::open_mapped(&dir).unwrap());
    assert_eq!(from_memory, loaded);
    assert_eq!(loaded, mapped);
}

#[test]
fn csvdir_round_trip_backtests_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, csv, back) = (tmp.path().join("b"), tmp.path().join("csv"), tmp.path().join("back"));
    bundle::store::write(&bundle::generate::generate(&spec()).unwrap(), &dir).unwrap();
    bundle::csvdir::export(&dir, &csv).unwrap();
    bundle::csvdir::ingest(&csv, &back, None).unwrap();
    assert_eq!(results(Bundle::load(&dir).unwrap()), results(Bundle::load(&back).unwrap()));
}

#[test]
fn the_cache_changes_nothing_across_a_sweep() {
    // A long-lived Engine (SMA cache warm) against a fresh one per backtest.
    let data = bundle::generate::generate(&spec()).unwrap();
    let bundle = Arc::new(Bundle::from_data(&data, data.content_hash(), String::new()));
    let mut warm = runner::Engine::new(bundle.clone()).unwrap();
    for s in strategies() {
        let opts = RunOptions::new_checked(0.7, None, 0.001).unwrap();
        let a = warm.run(&s, &opts).unwrap();
        let b = runner::Engine::new(bundle.clone()).unwrap().run(&s, &opts).unwrap();
        assert_eq!(a, b);
    }
}
