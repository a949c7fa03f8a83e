//! `btopt optimize`'s overfitting statistics end to end (issue 12): the planted edge is found
//! and judged real, the statistics survive a resume, and bad settings are refused first.

use serde_json::Value;

use crate::optimize_cli::{optimize, space_1100};
use crate::support::{btopt, p, start, wait_guarded};

fn grid_on(bundle: &str, extra: &[&str]) -> Value {
    let space = space_1100();
    let mut args = vec![
        "optimize",
        "--bundle",
        bundle,
        "--strategy",
        "ma-crossover",
        "--space",
        p(&space),
        "--search",
        "grid",
        "--workers",
        "2",
        "--json",
    ];
    args.extend(extra);
    let out = wait_guarded(start(&mut btopt(&args)));
    serde_json::from_str(out.ok()).expect("one JSON object")
}

#[test]
fn a_planted_edge_wins_the_grid_with_low_pbo_and_a_significant_deflated_sharpe() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = tmp.path().join("planted");
    let out = wait_guarded(start(&mut btopt(&[
        "bundle",
        "generate",
        "--preset",
        "mag7",
        "--plant-edge",
        "20,110",
        "--out",
        p(&planted),
    ])));
    out.ok();
    let v = grid_on(p(&planted), &[]);
    assert_eq!(v["best"]["params"], serde_json::json!({"short_window": 20, "long_window": 110, "threshold": 0.001}));
    let o = &v["overfitting"];
    assert_eq!(
        (o["trials"].as_u64(), o["returns"].as_u64(), o["cscv_blocks"].as_u64()),
        (Some(1100), Some(1258), Some(16))
    );
    assert!(o["deflated_sharpe"].as_f64().unwrap() > 0.95, "{o}");
    assert!(o["pbo"].as_f64().unwrap() < 0.2, "{o}");
    // best.sharpe is the annualised per-period best_sharpe (daily bars).
    let (annual, per_period) = (v["best"]["sharpe"].as_f64().unwrap(), o["best_sharpe"].as_f64().unwrap());
    assert!((annual - per_period * 252f64.sqrt()).abs() < 1e-9 * annual.abs(), "{annual} vs {per_period}");
    assert!(o["expected_max_sharpe"].as_f64().unwrap() < per_period);
}

#[test]
fn statistics_are_the_same_after_a_resume_and_cap_to_a_subsample() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("study.sqlite");
    let first =
        optimize(&["--space", p(&space_1100()), "--search", "grid", "--evaluations", "200", "--store", p(&store)], "");
    // The second run replays every trial from the store; their returns are computed again.
    let again =
        optimize(&["--space", p(&space_1100()), "--search", "grid", "--evaluations", "200", "--store", p(&store)], "");
    assert!(first["overfitting"].is_object(), "{first}");
    assert_eq!(first["overfitting"], again["overfitting"]);
    // Under a cap, a seeded subsample of that many trials.
    let capped = optimize(
        &["--space", p(&space_1100()), "--search", "grid", "--evaluations", "200", "--overfitting-max-trials", "50"],
        "",
    );
    assert_eq!(capped["overfitting"]["trials"], 50);
    assert_eq!(capped["best"], first["best"], "the cap changes the statistics only");
    let off =
        optimize(&["--space", p(&space_1100()), "--search", "grid", "--evaluations", "200", "--no-overfitting"], "");
    assert!(off["overfitting"].is_null() && off["overfitting_skipped"] == "disabled by --no-overfitting", "{off}");
    // Async trials come in completion order; by id they are the same trials.
    let by_id = |v: &Value| {
        let mut t: Vec<(u64, String)> = v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["trial_id"].as_u64().unwrap(), format!("{} {}", t["params"], t["loss"])))
            .collect();
        t.sort();
        t
    };
    assert!(by_id(&off) == by_id(&first), "the statistics change nothing else");
}

#[test]
fn bad_cscv_settings_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("study.sqlite");
    let space = space_1100();
    for (extra, expect) in [
        (vec!["--cscv-blocks", "5"], "--cscv-blocks"),
        (vec!["--cscv-blocks", "2"], "--cscv-blocks"),
        (vec!["--cscv-blocks", "16", "--start", "2022-12-01", "--end", "2022-12-30"], "needs at least 32 sessions"),
    ] {
        let mut args = vec!["--space", p(&space), "--search", "grid", "--store", p(&store)];
        args.extend(extra.iter().copied());
        let out = wait_guarded(start(&mut crate::optimize_cli::optimize_cmd(&args, "")));
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(expect), "{}", out.stderr);
        assert!(!store.exists(), "nothing written");
    }
    // By default a range too short for CSCV skips the statistics with the reason.
    let v = optimize(
        &[
            "--space",
            p(&space_1100()),
            "--search",
            "grid",
            "--evaluations",
            "20",
            "--start",
            "2022-12-01",
            "--end",
            "2022-12-30",
        ],
        "",
    );
    assert!(v["overfitting"].is_null());
    assert!(v["overfitting_skipped"].as_str().unwrap().contains("returns"), "{v}");
}

/// The statistics `optimize` computes from the moments its workers send equal
/// `overfitting::compute` over the whole return series, computed here in-process: every field,
/// to the bit.
#[test]
fn the_statistics_from_worker_moments_equal_those_from_the_series() {
    use crate::support::daily_bundle;
    let space_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../spaces/ma-36.toml");
    let out = wait_guarded(start(&mut btopt(&[
        "optimize",
        "--bundle",
        p(daily_bundle()),
        "--strategy",
        "ma-crossover",
        "--space",
        space_file,
        "--search",
        "grid",
        "--workers",
        "2",
        "--json",
    ])));
    let v: Value = serde_json::from_str(out.ok()).expect("one JSON object");
    let trials = v["trials"].as_array().unwrap();

    let bundle = bundle::Bundle::load(daily_bundle()).unwrap();
    let market = runner::market_of(&bundle).unwrap();
    let mut bt = engine::Backtester::new(&market).unwrap();
    let registry = engine::Registry::builtin();
    let opts = engine::RunOptions::default();
    let mut by_id: Vec<(u64, Vec<f64>)> = Vec::new();
    for t in trials {
        let params = &t["params"];
        let pairs: Vec<(String, String)> =
            params.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        let configured = registry.configure("ma-crossover", &pairs).unwrap();
        let mut equity = Vec::new();
        bt.run_with_equity(&configured, &opts, &mut equity).unwrap();
        by_id.push((t["trial_id"].as_u64().unwrap(), runner::session_returns(&equity, bundle.session_bounds())));
    }
    by_id.sort_by_key(|(id, _)| *id);
    let m = overfitting::ReturnMatrix::from_trials(by_id.iter().map(|(_, r)| r.as_slice())).unwrap();
    let o = overfitting::compute(&m, 16).unwrap();
    let got = &v["overfitting"];
    assert_eq!(got["trials"].as_u64(), Some(o.trials as u64), "{got}");
    assert_eq!(got["returns"].as_u64(), Some(o.returns as u64), "{got}");
    for (field, want) in [
        ("pbo", o.pbo),
        ("deflated_sharpe", o.deflated_sharpe),
        ("expected_max_sharpe", o.expected_max_sharpe),
        ("best_sharpe", o.best_sharpe),
    ] {
        assert_eq!(got[field].as_f64().map(f64::to_bits), Some(want.to_bits()), "{field}: {got}");
    }
}
