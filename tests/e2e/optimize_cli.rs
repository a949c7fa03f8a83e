//! `btopt optimize` end to end (issues 4 and 5): the `--json` contract, grid's best, BOHB's
//! determinism across backends and worker counts, resume after SIGKILL, and crash injection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Output, btopt, daily_bundle, p, start, wait_guarded};

/// The repository's 1,100-point MA-crossover space.
pub(crate) fn space_1100() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spaces/ma-1100.toml")
}

/// `btopt optimize --json` on the test bundle with `args` added; `fault` sets
/// `BTOPT_FAULT_INJECT` when not empty.
pub(crate) fn optimize_cmd(args: &[&str], fault: &str) -> Command {
    let mut cmd = btopt(&["optimize", "--bundle", p(daily_bundle()), "--strategy", "ma-crossover", "--json"]);
    cmd.args(args);
    if !fault.is_empty() {
        cmd.env(pool::FAULT_ENV, fault);
    }
    cmd
}

/// Runs `btopt optimize --json` to the end and returns its one JSON object.
pub(crate) fn optimize(args: &[&str], fault: &str) -> Value {
    let out = wait_guarded(start(&mut optimize_cmd(args, fault)));
    parse_summary(&out)
}

pub(crate) fn parse_summary(out: &Output) -> Value {
    let stdout = out.ok();
    assert_eq!(stdout.lines().count(), 1, "one JSON line on stdout: {stdout}");
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("bad JSON {stdout:?}: {e}"))
}

/// The summary without `wall_seconds`, the one field that may differ between equal runs.
pub(crate) fn timeless(mut v: Value) -> Value {
    let wall = v.as_object_mut().expect("an object").remove("wall_seconds").expect("wall_seconds");
    assert!(wall.as_f64().is_some_and(|w| w.is_finite() && w >= 0.0), "wall_seconds {wall}");
    v
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Checks the contract's exact shape and the internal consistency of a summary.
pub(crate) fn check_contract(v: &Value) {
    let bracketed = v["trials"].as_array().expect("trials").iter().any(|t| !t["bracket"].is_null());
    let mut want = vec!["best", "evaluations", "overfitting", "total_budget", "trials", "wall_seconds"];
    if bracketed {
        want.push("fidelity");
        let pairs = v["fidelity"].as_array().expect("fidelity");
        assert!(!pairs.is_empty(), "a bracket search has several budgets");
        for p in pairs {
            assert_eq!(keys(p), ["high", "low", "pairs", "spearman"], "{p}");
            assert!(p["low"].as_f64() < p["high"].as_f64(), "{p}");
        }
    }
    if v["overfitting"].is_null() {
        want.push("overfitting_skipped");
        assert!(v["overfitting_skipped"].is_string(), "{v}");
    } else {
        let o = &v["overfitting"];
        let k = ["best_sharpe", "cscv_blocks", "deflated_sharpe", "expected_max_sharpe", "pbo", "returns", "trials"];
        assert_eq!(keys(o), k, "{o}");
        let pbo = o["pbo"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pbo), "{o}");
    }
    want.sort_unstable();
    assert_eq!(keys(v), want, "{v}");
    let best = &v["best"];
    assert_eq!(keys(best), ["budget", "loss", "params", "sharpe"], "{best}");
    assert_eq!(best["sharpe"].as_f64(), best["loss"].as_f64().map(|l| -l), "sharpe = -loss");
    let trials = v["trials"].as_array().expect("trials");
    assert_eq!(v["evaluations"].as_u64(), Some(trials.len() as u64));
    let mut spent = 0.0;
    for t in trials {
        assert_eq!(keys(t), ["bracket", "budget", "loss", "params", "stage", "status", "trial_id"], "{t}");
        assert!(t["trial_id"].is_u64(), "{t}");
        assert_eq!(t["bracket"].is_null(), t["stage"].is_null(), "{t}");
        assert_eq!(t["bracket"].is_null(), !bracketed, "{t}");
        assert_eq!(keys(&t["params"]), ["long_window", "short_window", "threshold"], "{t}");
        match t["status"].as_str() {
            Some("ok") => assert!(t["loss"].is_f64(), "{t}"),
            Some("crashed") => assert!(t["loss"].is_null(), "{t}"),
            s => panic!("unexpected status {s:?} in {t}"),
        }
        spent += t["budget"].as_f64().expect("budget");
    }
    let total = v["total_budget"].as_f64().expect("total_budget");
    assert!((total - spent).abs() <= 1e-9 * spent.max(1.0), "total_budget {total} vs sum {spent}");
}

/// The best trial as the contract defines it: the lowest loss at the largest budget that has
/// one, ties to the earlier trial.
fn best_of_trials(v: &Value) -> (Value, f64, f64) {
    let mut best: Option<(Value, f64, f64)> = None;
    for t in v["trials"].as_array().unwrap() {
        let (Some(loss), Some(budget)) = (t["loss"].as_f64(), t["budget"].as_f64()) else { continue };
        let better = match &best {
            None => true,
            Some((_, l, b)) => budget > *b || (budget == *b && loss < *l),
        };
        if better {
            best = Some((t["params"].clone(), loss, budget));
        }
    }
    best.expect("at least one finite trial")
}

fn check_best(v: &Value) {
    let (params, loss, budget) = best_of_trials(v);
    assert_eq!(v["best"]["params"], params, "{}", v["best"]);
    assert_eq!(v["best"]["loss"].as_f64(), Some(loss));
    assert_eq!(v["best"]["budget"].as_f64(), Some(budget));
}

#[test]
fn grid_json_has_the_contract_shape_and_its_best_is_the_best_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("space.toml");
    // 3 x 3 x 3 = 27 points.
    std::fs::write(
        &space,
        r#"
[[parameter]]
name = "short_window"
type = "discrete"
min = 5
max = 15
step = 5

[[parameter]]
name = "long_window"
type = "discrete"
min = 30
max = 60
step = 15

[[parameter]]
name = "threshold"
type = "continuous"
min = 0.0
max = 0.004
step = 0.002
"#,
    )
    .unwrap();
    let v = optimize(&["--space", p(&space), "--search", "grid", "--pool", "thread", "--workers", "2"], "");
    check_contract(&v);
    check_best(&v);
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 27);
    let distinct: BTreeSet<String> = trials.iter().map(|t| t["params"].to_string()).collect();
    assert_eq!(distinct.len(), 27, "grid visits every point once");
    assert!(trials.iter().all(|t| t["status"] == "ok" && t["budget"].as_f64() == Some(1.0)));
    assert_eq!(v["total_budget"].as_f64(), Some(27.0));
    let losses: BTreeSet<u64> = trials.iter().map(|t| t["loss"].as_f64().unwrap().to_bits()).collect();
    assert!(losses.len() > 10, "the objective must vary over the grid");

    // The repository's 1,100-point space, capped.
    let v = optimize(&["--space", p(&space_1100()), "--search", "grid", "--evaluations", "12", "--pool", "thread"], "");
    check_contract(&v);
    check_best(&v);
    assert_eq!(v["evaluations"], 12);
}

pub(crate) fn bohb_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec!["--search", "bohb", "--deterministic", "--seed", "7", "--iterations", "6"];
    a.extend(extra);
    a
}

#[test]
fn deterministic_bohb_is_identical_on_every_backend_and_worker_count() {
    let space = space_1100();
    let mut pools: Vec<&[&str]> =
        vec![&["--pool", "thread"], &["--pool", "spawn"], &["--pool", "spawn", "--spawn-load", "mmap"]];
    if cfg!(unix) {
        pools.extend([&["--pool", "fork"][..], &["--pool", "fork", "--handles", "reopen"]]);
    }
    let mut reference: Option<(String, Value)> = None;
    for pool in pools {
        for workers in ["1", "2", "8"] {
            let mut args = bohb_args(pool);
            args.extend(["--workers", workers, "--space", p(&space)]);
            let (pool, workers) = (pool.join(" "), workers);
            let v = optimize(&args, "");
            check_contract(&v);
            check_best(&v);
            let v = timeless(v);
            match &reference {
                None => {
                    let trials = v["trials"].as_array().unwrap();
                    let budgets: BTreeSet<u64> =
                        trials.iter().map(|t| t["budget"].as_f64().unwrap().to_bits()).collect();
                    assert!(budgets.len() >= 3, "BOHB runs several budgets: {budgets:?}");
                    assert!(trials.len() >= 40, "{} trials", trials.len());
                    assert_eq!(v["best"]["budget"].as_f64(), Some(1.0));
                    reference = Some((format!("{pool} x{workers}"), v));
                }
                Some((name, want)) => assert_eq!(&v, want, "{pool} x{workers} differs from {name}"),
            }
        }
    }
}

#[test]
fn the_store_records_which_worker_ran_each_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("study.sqlite");
    let space = space_1100();
    let args = ["--space", p(&space), "--search", "random", "--evaluations", "16", "--pool", "fork"];
    let v = optimize(&[&args[..], &["--workers", "2", "--store", p(&store)]].concat(), "");
    assert_eq!(v["evaluations"], 16);
    let conn = rusqlite::Connection::open(&store).unwrap();
    let (ok, with_worker): (i64, i64) = conn
        .query_row("SELECT count(*), count(worker) FROM trials WHERE status = 'ok'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((ok, with_worker), (16, 16), "every finished trial names its worker");
    let distinct: i64 = conn.query_row("SELECT count(DISTINCT worker) FROM trials", [], |r| r.get(0)).unwrap();
    assert!((1..=2).contains(&distinct), "at most the 2 workers: {distinct}");
    assert!(
        conn.query_row("SELECT min(worker) FROM trials", [], |r| r.get::<_, i64>(0)).unwrap()
            != i64::from(std::process::id() as i32),
        "fork workers are other processes"
    );
}

#[test]
fn fidelity_is_a_closed_set_and_budget_one_is_the_same_under_each() {
    let space = space_1100();
    let run = |fidelity: &str| {
        optimize(
            &[
                "--space",
                p(&space),
                "--search",
                "hyperband",
                "--deterministic",
                "--iterations",
                "3",
                "--fidelity",
                fidelity,
            ],
            "",
        )
    };
    let (recent, blocks) = (timeless(run("recent")), timeless(run("blocks")));
    let at = |v: &Value, full: bool| -> Vec<(u64, Value)> {
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| (t["budget"].as_f64() == Some(1.0)) == full)
            .map(|t| (t["trial_id"].as_u64().unwrap(), t["loss"].clone()))
            .collect()
    };
    // Hyperband's first bracket samples its configs before any result, so both fidelities
    // start from the same configs; below budget 1 they measure them differently.
    assert_ne!(at(&recent, false), at(&blocks, false), "blocks evaluates low budgets differently");
    let (r1, b1) = (at(&recent, true), at(&blocks, true));
    let same: Vec<_> = r1.iter().filter(|t| b1.contains(t)).collect();
    assert!(!same.is_empty(), "some budget-1 trials are the same config in both runs");
    let out =
        wait_guarded(start(&mut optimize_cmd(&["--space", p(&space), "--search", "grid", "--fidelity", "nope"], "")));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("nope") && out.stderr.lines().count() == 1, "{}", out.stderr);
    let help = wait_guarded(start(&mut crate::support::btopt(&["optimize", "--help"])));
    assert!(help.ok().contains("[default: recent] [possible values: recent, blocks]"), "{}", help.stdout);
}
