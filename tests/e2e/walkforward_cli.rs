//! `btopt walkforward` end to end (issue 12): a fold's test metrics are a plain backtest of its
//! best over the test dates, its best is the grid's best over its train dates, a killed run
//! resumes fold by fold to the same result, and bad folds are refused before any work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{btopt, daily_bundle, p, start, wait_guarded};

fn space_36() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spaces/ma-36.toml")
}

fn walkforward(extra: &[&str], fault: &str) -> std::process::Command {
    let space = space_36();
    let mut cmd = btopt(&[
        "walkforward",
        "--bundle",
        p(daily_bundle()),
        "--strategy",
        "ma-crossover",
        "--space",
        p(&space),
        "--search",
        "grid",
        "--workers",
        "2",
        "--json",
    ]);
    cmd.args(extra);
    if !fault.is_empty() {
        cmd.env(pool::FAULT_ENV, fault);
    }
    cmd
}

fn json(cmd: &mut std::process::Command) -> Value {
    let out = wait_guarded(start(cmd));
    serde_json::from_str(out.ok()).expect("one JSON object")
}

#[test]
fn folds_match_plain_backtests_and_grid_bests_over_their_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("wf.svg");
    let v = json(&mut walkforward(&["--folds", "3", "--plot", p(&svg)], ""));
    let folds = v["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"), "the plot is an SVG");
    let space = space_36();
    let mut test_sessions = 0;
    for f in folds {
        // The test metrics are `btopt backtest` of the fold's best over its test dates.
        let params = f["best"]["params"].as_object().unwrap();
        let sets: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["backtest", "--bundle", p(daily_bundle()), "--strategy", "ma-crossover", "--json"];
        args.extend(["--start", f["test_start"].as_str().unwrap(), "--end", f["test_end"].as_str().unwrap()]);
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        let m = json(&mut btopt(&args));
        assert_eq!(m["sharpe"], f["test_sharpe"], "{f}");
        assert_eq!(m["total_return"], f["test_total_return"], "{f}");
        test_sessions += m["bars"].as_u64().unwrap();
        // The fold's best is the grid's best over its train dates.
        let grid = json(&mut btopt(&[
            "optimize",
            "--bundle",
            p(daily_bundle()),
            "--strategy",
            "ma-crossover",
            "--space",
            p(&space),
            "--search",
            "grid",
            "--json",
            "--start",
            f["train_start"].as_str().unwrap(),
            "--end",
            f["train_end"].as_str().unwrap(),
        ]));
        assert_eq!(grid["best"]["params"], f["best"]["params"], "{f}");
        assert_eq!(grid["best"]["sharpe"], f["best"]["sharpe"], "{f}");
    }
    // Rolling folds test consecutive segments; the stitched series covers all of them.
    assert_eq!(v["out_of_sample"]["sessions"].as_u64(), Some(test_sessions));
    for w in folds.windows(2) {
        assert_eq!(w[0]["test_start"], w[1]["train_start"], "fold i+1 trains where fold i tests");
    }
    let mean = |k: &str| folds.iter().map(|f| f[k].as_f64().unwrap()).sum::<f64>() / 3.0;
    let (test, train) =
        (mean("test_sharpe"), folds.iter().map(|f| f["best"]["sharpe"].as_f64().unwrap()).sum::<f64>() / 3.0);
    assert!((v["efficiency"].as_f64().unwrap() - test / train).abs() < 1e-12);
    // Anchored folds all train from the first session.
    let anchored = json(&mut walkforward(&["--folds", "3", "--anchored"], ""));
    let starts: Vec<&Value> = anchored["folds"].as_array().unwrap().iter().map(|f| &f["train_start"]).collect();
    assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
    assert_eq!(anchored["folds"][2]["test_end"], folds[2]["test_end"]);
}

#[test]
fn a_killed_walkforward_resumes_fold_by_fold_to_the_same_result() {
    let want = json(&mut walkforward(&["--folds", "3"], ""));
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("wf.sqlite");
    // Task 40 is in fold 1 (each fold's grid has 36 trials, and pool task ids count on across
    // folds): it hangs, and the run is killed once fold 1's store exists.
    let mut child = start(&mut walkforward(&["--folds", "3", "--store", p(&store)], "hang@ids=40"));
    let fold1 = tmp.path().join("wf-fold1.sqlite");
    let t = Instant::now();
    while !fold1.exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "fold 1 never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(tmp.path().join("wf-fold0.sqlite").exists());
    let resumed = json(&mut walkforward(&["--folds", "3", "--store", p(&store)], ""));
    assert_eq!(resumed, want);
}

#[test]
fn bad_folds_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("wf.sqlite");
    for (folds, expect) in [("0", "at least 1 fold"), ("40", "fewer than the 60 needed")] {
        let out = wait_guarded(start(&mut walkforward(&["--folds", folds, "--store", p(&store)], "")));
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(expect), "{}", out.stderr);
        assert!(!tmp.path().join("wf-fold0.sqlite").exists(), "nothing written");
    }
}
