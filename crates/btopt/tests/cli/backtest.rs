//! `btopt backtest`.

use crate::{btopt, check_error, p};

fn daily_bundle(tmp: &std::path::Path) -> std::path::PathBuf {
    let dir = tmp.join("b");
    let r = btopt(&[
        "bundle",
        "generate",
        "--preset",
        "mag7",
        "--start",
        "2021-01-04",
        "--end",
        "2022-12-30",
        "--out",
        p(&dir),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    dir
}

#[test]
fn json_has_exactly_the_contract_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = daily_bundle(tmp.path());
    let r = btopt(&[
        "backtest",
        "--bundle",
        p(&dir),
        "--strategy",
        "ma-crossover",
        "--set",
        "short_window=5",
        "--set",
        "long_window=30",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bars", "calmar", "final_equity", "max_drawdown", "sharpe", "sortino", "total_return", "trades"]);
    assert_eq!(v["bars"], 503);
    let (fe, tr) = (v["final_equity"].as_f64().unwrap(), v["total_return"].as_f64().unwrap());
    assert_eq!(fe - 1.0, tr);
    assert!(v["trades"].as_u64().unwrap() > 0);
}

#[test]
fn budget_and_range_select_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = daily_bundle(tmp.path());
    let run = |extra: &[&str]| -> serde_json::Value {
        let r =
            btopt(&[&["backtest", "--bundle", p(&dir), "--strategy", "ma-crossover", "--json"][..], extra].concat());
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(r.stdout.trim()).unwrap()
    };
    assert_eq!(run(&["--budget", "0.1"])["bars"], 51); // ceil(0.1 · 503)
    assert_eq!(run(&["--start", "2022-01-01"])["bars"], 251);
    assert_eq!(run(&["--start", "2022-01-01", "--end", "2022-06-30", "--budget", "0.5"])["bars"], 62); // 124 sessions
    assert_eq!(run(&["--budget", "1"]), run(&[]));
}

#[test]
fn bad_parameters_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = daily_bundle(tmp.path());
    let base = ["backtest", "--bundle", p(&dir), "--strategy"];
    check_error(&btopt(&[&base[..], &["ma-crossover", "--budget", "1.5"]].concat()), "budget must be in (0, 1]");
    check_error(&btopt(&[&base[..], &["ma-crossover", "--set", "short_window=0"]].concat()), "short_window");
    check_error(&btopt(&[&base[..], &["ma-crossover", "--set", "bogus=1"]].concat()), "unknown parameter");
    check_error(&btopt(&[&base[..], &["ma-crossover", "--set", "short_window"]].concat()), "expected NAME=VALUE");
    check_error(&btopt(&[&base[..], &["nope"]].concat()), "nope");
    check_error(&btopt(&[&base[..], &["ma-crossover", "--start", "2025-01-01"]].concat()), "holds no session");
}
