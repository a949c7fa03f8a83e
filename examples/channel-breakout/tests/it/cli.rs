//! The whole btopt CLI, from a binary that adds one strategy.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_channel-breakout"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn generate(dir: &Path) -> String {
    let bundle = dir.join("bundle");
    let b = bundle.to_str().unwrap();
    let out =
        run(&["bundle", "generate", "--preset", "mag7", "--start", "2022-01-03", "--end", "2023-12-29", "--out", b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.to_string()
}

const SPACE: &str = "[[parameter]]\nname = \"entry_window\"\ntype = \"discrete\"\nmin = 5\nmax = 40\nstep = 5\n\n\
                     [[parameter]]\nname = \"exit_window\"\ntype = \"discrete\"\nmin = 5\nmax = 20\nstep = 5\n";

#[test]
fn optimize_is_identical_on_fork_spawn_and_thread_and_its_best_is_a_backtest() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = generate(tmp.path());
    let space = tmp.path().join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    let mut trials = Vec::new();
    for pool in ["fork", "spawn", "thread"] {
        let out = run(&[
            "optimize",
            "--bundle",
            &bundle,
            "--strategy",
            "channel-breakout",
            "--space",
            space.to_str().unwrap(),
            "--search",
            "grid",
            "--pool",
            pool,
            "--workers",
            "2",
            "--deterministic",
            "--json",
        ]);
        let v = json_of(&out);
        assert_eq!(v["evaluations"], 32, "{pool}");
        let ok = v["trials"].as_array().unwrap().iter().filter(|t| t["status"] == "ok").count();
        assert_eq!(ok, 32, "{pool}: every trial runs");
        trials.push((v["trials"].clone(), v["best"].clone()));
    }
    assert_eq!(trials[0], trials[1], "fork and spawn agree");
    assert_eq!(trials[0], trials[2], "fork and thread agree");
    // The best trial's sharpe is what a plain backtest of its parameters gives.
    let best = &trials[0].1;
    let (entry, exit) = (best["params"]["entry_window"].to_string(), best["params"]["exit_window"].to_string());
    let out = run(&[
        "backtest",
        "--bundle",
        &bundle,
        "--strategy",
        "channel-breakout",
        "--set",
        &format!("entry_window={entry}"),
        "--set",
        &format!("exit_window={exit}"),
        "--json",
    ]);
    let m = json_of(&out);
    assert_eq!(m["sharpe"].as_f64(), best["sharpe"].as_f64());
    assert!(m["trades"].as_u64().unwrap() > 0, "the best config trades");
}

#[test]
fn strategies_lists_the_example_with_the_built_ins() {
    let v = json_of(&run(&["strategies", "--json"]));
    let names: Vec<&str> = v["strategies"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ma-crossover", "momentum", "channel-breakout"]);
    let cb = &v["strategies"][2];
    assert_eq!(cb["frequencies"], serde_json::json!(["daily", "minute"]));
    assert_eq!(cb["parameters"][0]["name"], "entry_window");
    assert_eq!(cb["parameters"][0]["type"], "integer");
    assert_eq!(cb["parameters"][0]["default"], 20);
    assert_eq!(cb["parameters"][0]["min"], 1);
    assert_eq!(cb["parameters"][1]["default"], 10);
}

#[test]
fn a_typo_in_the_space_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("space.toml");
    std::fs::write(&space, SPACE.replace("exit_window", "exit_windw")).unwrap();
    let store = tmp.path().join("study.sqlite");
    // The bundle does not even exist: the space is checked first.
    let out = run(&[
        "optimize",
        "--bundle",
        tmp.path().join("nope").to_str().unwrap(),
        "--strategy",
        "channel-breakout",
        "--space",
        space.to_str().unwrap(),
        "--search",
        "grid",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("`exit_windw`") && err.contains("channel-breakout parameters: entry_window, exit_window"),
        "{err}"
    );
    assert!(!store.exists(), "no store is created");
}
