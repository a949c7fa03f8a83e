//! `btopt strategies` and the checks of spaces and `--set` against a strategy's table.

use std::path::{Path, PathBuf};

use crate::{Run, btopt, p};

fn bundle(tmp: &Path, frequency: &str) -> PathBuf {
    let dir = tmp.join(frequency);
    let r = btopt(&[
        "bundle",
        "generate",
        "--preset",
        "mag7",
        "--frequency",
        frequency,
        "--start",
        "2024-11-04",
        "--end",
        "2024-12-06",
        "--out",
        p(&dir),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    dir
}

/// A usage refusal: exit 2, one line, containing every piece of `expect`.
fn check_refused(r: &Run, expect: &[&str]) {
    assert_eq!(r.code, 2, "exit 2: {}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {:?}", r.stderr);
    for e in expect {
        assert!(r.stderr.contains(e), "stderr must contain {e:?}: {}", r.stderr);
    }
}

const MA: &str = "ma-crossover parameters: short_window, long_window, threshold";

#[test]
fn json_matches_the_contract_shape() {
    let r = btopt(&["strategies", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let all = v["strategies"].as_array().unwrap();
    assert_eq!(all.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["ma-crossover", "momentum"]);
    assert_eq!(all[0]["frequencies"], serde_json::json!(["daily", "minute"]));
    assert_eq!(all[1]["frequencies"], serde_json::json!(["daily"]));
    for s in all {
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["frequencies", "name", "parameters"]);
        for param in s["parameters"].as_array().unwrap() {
            let o = param.as_object().unwrap();
            for k in ["name", "type", "default", "doc"] {
                assert!(o.contains_key(k), "{k} in {param}");
            }
            let allowed = ["name", "type", "default", "min", "max", "choices", "doc"];
            assert!(o.keys().all(|k| allowed.contains(&k.as_str())), "{param}");
            match param["type"].as_str().unwrap() {
                "integer" => assert!(param["default"].is_i64() && param["min"].is_i64()),
                "float" => assert!(param["default"].is_f64()),
                "categorical" => {
                    let choices = param["choices"].as_array().unwrap();
                    assert!(choices.contains(&param["default"]));
                }
                other => panic!("type {other}"),
            }
        }
    }
    let ws = &all[1]["parameters"][3];
    assert_eq!(ws["name"], "weighting_scheme");
    assert_eq!(ws["choices"], serde_json::json!(["equal", "market_cap", "risk_parity"]));
    assert_eq!(all[0]["parameters"][0]["default"], 10);
    assert_eq!(all[0]["parameters"][1]["default"], 50);
}

#[test]
fn defaults_in_the_table_are_the_defaults_that_run() {
    // The table's defaults, as `strategies --json` prints them, are exactly what a backtest
    // with no `--set` runs, and the text listing shows the same values.
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path(), "daily");
    let v: serde_json::Value = serde_json::from_str(&btopt(&["strategies", "--json"]).stdout).unwrap();
    let text = btopt(&["strategies"]).stdout;
    for s in v["strategies"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let mut args = vec!["backtest", "--bundle", p(&dir), "--strategy", name, "--json"];
        let bare = btopt(&args);
        assert_eq!(bare.code, 0, "{}", bare.stderr);
        let sets: Vec<String> = s["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                let d = &q["default"];
                // As `--set` spells it: integers as integers, floats in shortest form.
                let shown = match (d.as_i64(), d.as_f64(), d.as_str()) {
                    (Some(i), _, _) => i.to_string(),
                    (None, Some(x), _) => x.to_string(),
                    (_, _, Some(s)) => s.to_string(),
                    _ => panic!("default {d}"),
                };
                assert!(text.lines().any(|l| l.contains(q["name"].as_str().unwrap()) && l.contains(&shown)));
                format!("{}={shown}", q["name"].as_str().unwrap())
            })
            .collect();
        for s in &sets {
            args.extend(["--set", s]);
        }
        assert_eq!(btopt(&args).stdout, bare.stdout, "{name}");
    }
}

fn optimize(tmp: &Path, bundle: &Path, strategy: &str, space: &str) -> (Run, PathBuf) {
    let file = tmp.join("space.toml");
    std::fs::write(&file, space).unwrap();
    let store = tmp.join("study.sqlite");
    let r = btopt(&[
        "optimize",
        "--bundle",
        p(bundle),
        "--strategy",
        strategy,
        "--space",
        p(&file),
        "--search",
        "grid",
        "--store",
        p(&store),
    ]);
    (r, store)
}

fn discrete(name: &str, min: i64, max: i64) -> String {
    format!("[[parameter]]\nname = \"{name}\"\ntype = \"discrete\"\nmin = {min}\nmax = {max}\nstep = 1\n")
}

#[test]
fn spaces_are_checked_against_the_table_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    // The bundle need not exist: nothing is loaded before the space is checked.
    let nowhere = tmp.path().join("no-bundle");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("ma-crossover", discrete("short_windw", 2, 5), vec!["`short_windw`", "not a parameter", MA]),
        ("ma-crossover", discrete("short_window", 0, 5), vec!["`short_window`", "reaches 0", "an integer >= 1", MA]),
        (
            "momentum",
            "[[parameter]]\nname = \"weighting_scheme\"\ntype = \"categorical\"\nchoices = [\"equal\", \"cap\"]\n"
                .into(),
            vec!["`weighting_scheme`", "`cap`", "momentum parameters: lookback_period"],
        ),
        (
            "ma-crossover",
            "[[parameter]]\nname = \"short_window\"\ntype = \"continuous\"\nmin = 1.5\nmax = 4.5\n".into(),
            vec!["`short_window`", "integer parameter", MA],
        ),
    ];
    for (strategy, space, expect) in cases {
        let (r, store) = optimize(tmp.path(), &nowhere, strategy, &space);
        check_refused(&r, &expect);
        assert!(!store.exists(), "no store file for {space}");
    }
    // --set is checked the same way.
    let r = btopt(&["backtest", "--bundle", p(&nowhere), "--strategy", "ma-crossover", "--set", "treshold=0.1"]);
    check_refused(&r, &["`treshold`", MA]);
    let r = btopt(&["backtest", "--bundle", p(&nowhere), "--strategy", "ma-crossover", "--set", "long_window=0"]);
    check_refused(&r, &["long_window", "an integer >= 1", MA]);
    // An unknown strategy is a command-line error whose choices come from the registry.
    let r = btopt(&["backtest", "--bundle", p(&nowhere), "--strategy", "sma"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("sma") && r.stderr.lines().count() == 1, "{}", r.stderr);
    let help = btopt(&["optimize", "--help"]).stdout;
    assert!(help.contains("ma-crossover") && help.contains("momentum"), "{help}");
}

#[test]
fn frequencies_come_from_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let minute = bundle(tmp.path(), "minute");
    let r = btopt(&["backtest", "--bundle", p(&minute), "--strategy", "momentum"]);
    check_refused(&r, &["momentum does not run on minute bars", "daily"]);
    let (r, store) = optimize(tmp.path(), &minute, "momentum", &discrete("top_n_assets", 1, 3));
    check_refused(&r, &["momentum does not run on minute bars"]);
    assert!(!store.exists());
    // The MA crossover declares both frequencies.
    let r = btopt(&["backtest", "--bundle", p(&minute), "--strategy", "ma-crossover", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
