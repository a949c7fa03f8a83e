//! A recorded table of 200 random configs per built-in strategy, with the metrics' exact bits.
//!
//! The table was written once by the engine before strategies moved behind the `Strategy`
//! trait, so the move (and any later refactor) must reproduce every bit. Regenerate it only
//! for a deliberate change of semantics: `BTOPT_RECORD=1 cargo test -p engine --test it recorded`.

use std::fmt::Write as _;
use std::path::PathBuf;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::{Data, opts};

const CONFIGS: usize = 200;

fn table_path(strategy: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/recorded").join(format!("{strategy}.tsv"))
}

/// The markets the table runs on: (seed, assets, sessions, bars per session).
fn market_for(strategy: &str, i: usize) -> Data {
    match strategy {
        "ma-crossover" if i % 2 == 1 => Data::random(100 + i as u64 % 5, 3, 120, 4),
        "ma-crossover" => Data::random(200 + i as u64 % 5, 4, 400, 1),
        _ => Data::random(300 + i as u64 % 5, 12, 300, 1),
    }
}

fn random_pairs(strategy: &str, rng: &mut ChaCha12Rng) -> Vec<(String, String)> {
    let p = |k: &str, v: String| (k.to_string(), v);
    match strategy {
        "ma-crossover" => vec![
            p("short_window", rng.random_range(1..60_usize).to_string()),
            p("long_window", rng.random_range(1..120_usize).to_string()),
            p("threshold", if rng.random_bool(0.3) { "0".into() } else { format!("{}", rng.random_range(0.0..0.03)) }),
        ],
        _ => vec![
            p("lookback_period", rng.random_range(2..60_usize).to_string()),
            p("holding_period", rng.random_range(1..20_usize).to_string()),
            p("rebalance_frequency", rng.random_range(1..10_usize).to_string()),
            p("weighting_scheme", ["equal", "market_cap", "risk_parity"][rng.random_range(0..3_usize)].to_string()),
            p("top_n_assets", rng.random_range(1..12_usize).to_string()),
            p("volatility_threshold", format!("{}", rng.random_range(0.05..2.0))),
            p("min_position_size", rng.random_range(0..10_usize).to_string()),
            p("max_position_size", format!("{}", rng.random_range(5.0..60.0))),
        ],
    }
}

fn metrics_line(m: &engine::Metrics) -> String {
    let bits = [m.total_return, m.sharpe, m.max_drawdown, m.sortino, m.calmar, m.final_equity]
        .map(|x| format!("{:016x}", x.to_bits()))
        .join(" ");
    format!("{bits} {} {}", m.trades, m.bars)
}

fn render(strategy: &str) -> String {
    let mut rng = ChaCha12Rng::seed_from_u64(2026);
    let mut out = String::new();
    for i in 0..CONFIGS {
        let pairs = random_pairs(strategy, &mut rng);
        let budget = [1.0, 0.5, 0.2][i % 3];
        let line = run_pairs(strategy, i, &pairs, budget);
        let cfg = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        writeln!(out, "{i}\t{budget}\t{cfg}\t{line}").expect("write to string");
    }
    out
}

fn run_pairs(strategy: &str, i: usize, pairs: &[(String, String)], budget: f64) -> String {
    let data = market_for(strategy, i);
    let market = data.market();
    let s = crate::strategy_from_pairs(strategy, pairs);
    let m = crate::run_fresh(&market, &s, &opts(budget, None, 0.001));
    metrics_line(&m)
}

fn check_table(strategy: &str) {
    let path = table_path(strategy);
    if std::env::var_os("BTOPT_RECORD").is_some() {
        std::fs::write(&path, render(strategy)).expect("write the recorded table");
    }
    let text = std::fs::read_to_string(&path).expect("recorded table exists");
    let mut rows = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let (i, budget, cfg, want) = (cols[0].parse().unwrap(), cols[1].parse().unwrap(), cols[2], cols[3]);
        let pairs: Vec<(String, String)> = cfg
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("NAME=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect();
        assert_eq!(run_pairs(strategy, i, &pairs, budget), want, "{strategy} row {i}: {cfg} at budget {budget}");
        rows += 1;
    }
    assert_eq!(rows, CONFIGS);
}

#[test]
fn ma_crossover_matches_the_recorded_table() {
    check_table("ma-crossover");
}

#[test]
fn momentum_matches_the_recorded_table() {
    check_table("momentum");
}
