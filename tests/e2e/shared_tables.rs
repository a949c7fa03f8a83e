//! Shared SMA tables (issue 9): a forked worker reads the parent's tables without copying
//! their pages, and results are bit-identical with the tables on and off, on every backend.

use serde_json::Value;

use crate::support::{daily_bundle, p, run_e2e};

/// `btopt-e2e shared` on `pool` with the tables on or off.
fn shared(pool: &str, tables: &str) -> Value {
    let out = run_e2e(&["shared", "--bundle", p(daily_bundle()), "--pool", pool, "--tables", tables]);
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    lines.into_iter().next().unwrap()
}

#[test]
fn results_are_identical_with_the_shared_tables_on_and_off() {
    let reference = shared("in-process", "off");
    let metrics = reference["metrics"].as_array().unwrap();
    // 249 windows, two thresholds; they really trade and differ.
    assert_eq!(metrics.len(), 2 * 249);
    assert!(metrics.iter().all(|m| m.get("metrics").is_some()), "{metrics:?}");
    let sharpes: std::collections::BTreeSet<u64> =
        metrics.iter().map(|m| m["metrics"]["sharpe"].as_u64().unwrap()).collect();
    assert!(sharpes.len() > 100, "{} distinct sharpes", sharpes.len());
    let mut kinds = vec!["in-process", "thread", "spawn-load"];
    if cfg!(unix) {
        kinds.extend(["fork-inherit", "fork-reopen", "per-batch"]);
    }
    for kind in kinds {
        for tables in ["on", "off"] {
            let got = shared(kind, tables);
            assert_eq!(got["metrics"], reference["metrics"], "{kind} with tables {tables}");
            let want = if tables == "on" { 249 * 7 * bundle_sessions() * 8 } else { 0 };
            assert_eq!(got["table_bytes"].as_u64(), Some(want as u64), "{kind}");
        }
    }
}

fn bundle_sessions() -> usize {
    bundle::Bundle::load(daily_bundle()).unwrap().sessions().len()
}

/// Private dirty memory of the one forked worker: its growth over the sweep is what it wrote
/// itself. With the tables, the worker reads every column from the parent's pages, so it
/// grows by far less than the tables' size; without them it computes every column in its
/// own cache, which the control asserts (so that the probe can tell the two apart).
#[cfg(target_os = "linux")]
#[test]
fn a_forked_worker_does_not_copy_the_shared_tables() {
    let growth = |v: &Value| {
        let (before, after) = (v["before"].as_u64().expect("before"), v["after"].as_u64().expect("after"));
        after.saturating_sub(before)
    };
    for kind in ["fork-inherit", "fork-reopen"] {
        let on = shared(kind, "on");
        let tables = on["table_bytes"].as_u64().unwrap();
        assert!(tables > 5 << 20, "tables of {tables} bytes are too small to tell");
        assert!(growth(&on) < tables / 8, "{kind}: grew {} with {tables} bytes of tables", growth(&on));
        let off = shared(kind, "off");
        assert!(growth(&off) > tables / 2, "{kind}: grew only {} without tables of {tables}", growth(&off));
    }
}

/// The windows a space can ask for, and the budget line.
#[test]
fn the_tables_hold_every_window_of_the_space_within_the_budget() {
    let registry = engine::Registry::builtin();
    let ma = registry.lookup("ma-crossover").unwrap();
    let base = engine::ParamValues::defaults(ma.parameters());
    let space_1100 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spaces/ma-1100.toml")).unwrap();
    let space = optimize::Space::from_toml_str(&space_1100).unwrap();
    let mut want: Vec<usize> = (5..=50).step_by(5).chain((50..=200).step_by(15)).collect();
    want.dedup();
    assert_eq!(runner::sma_windows(&**ma, &base, &space), want);
    // A window the space does not vary comes from the fixed values (default short 10).
    let only_long = optimize::Space::new(vec![optimize::Param::discrete("long_window", 30, 40, 5)], &[]).unwrap();
    assert_eq!(runner::sma_windows(&**ma, &base, &only_long), [10, 30, 35, 40]);
    // Momentum declares no SMA windows.
    let mom = registry.lookup("momentum").unwrap();
    assert!(runner::sma_windows(&**mom, &engine::ParamValues::defaults(mom.parameters()), &space).is_empty());

    let bundle = bundle::Bundle::load(daily_bundle()).unwrap();
    let column = bundle.sessions().len() * 8;
    let all = runner::tables_for(&**ma, &base, &space, &bundle, usize::MAX).unwrap();
    assert!(all.momentum.is_none(), "the MA crossover reads no momentum tables");
    assert_eq!(runner::shortfall(&all, usize::MAX), None);
    let all = all.sma.unwrap();
    assert_eq!(all.bytes(), want.len() * 7 * column);
    // Room for three and a half windows: three are shared, and one line says so.
    let budget = 7 * column * 7 / 2;
    let some = runner::tables_for(&**ma, &base, &space, &bundle, budget).unwrap();
    let line = runner::shortfall(&some, budget).expect("over budget");
    assert_eq!(some.sma.unwrap().complete_windows(), 3);
    assert!(line.contains(&format!("3 of {} windows are shared", want.len())), "{line}");
    assert!(!line.contains('\n'));
    assert!(runner::tables_for(&**ma, &base, &space, &bundle, 0).unwrap().sma.is_none());
}

/// `btopt optimize` with the tables (default), without (`BTOPT_SHARED_TABLES_MIB=0`) and with a
/// budget the space exceeds: the same trials, and one stderr line only when over budget.
#[test]
fn btopt_optimize_gives_the_same_trials_with_the_tables_on_off_and_over_budget() {
    use crate::optimize_cli::optimize_cmd;
    use crate::support::{start, wait_guarded};
    // 298 windows (short 2..=150, long 151..=300): about 8 MiB of SMAs on the test bundle.
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("wide.toml");
    let toml = "[[parameter]]\nname = \"short_window\"\ntype = \"discrete\"\nmin = 2\nmax = 150\nstep = 1\n\n\
                [[parameter]]\nname = \"long_window\"\ntype = \"discrete\"\nmin = 151\nmax = 300\nstep = 1\n";
    std::fs::write(&space, toml).unwrap();
    let run = |pool: &str, mib: Option<&str>| {
        let args = [
            "--space",
            p(&space),
            "--search",
            "random",
            "--evaluations",
            "150",
            "--deterministic",
            "--pool",
            pool,
            "--workers",
            "2",
            "--no-overfitting",
        ];
        with_tables_budget(optimize_cmd(&args, ""), mib)
    };
    let (want, lines, _) = run("thread", Some("0"));
    assert_eq!(want["trials"].as_array().unwrap().len(), 150);
    assert_eq!(lines, 0);
    for pool in ["fork", "thread"] {
        let (all, lines, stderr) = run(pool, None);
        assert_eq!(all, want, "{pool} with the default budget");
        assert_eq!(lines, 0, "{stderr}");
        let (some, lines, stderr) = run(pool, Some("1"));
        assert_eq!(some, want, "{pool} over budget");
        assert_eq!(lines, 1, "{stderr}");
        assert!(stderr.contains("over the budget of 1 MiB"), "{stderr}");
    }
    let mut bad = optimize_cmd(&["--space", p(&space), "--search", "grid", "--workers", "1"], "");
    let out = wait_guarded(start(bad.env(runner::TABLES_ENV, "lots")));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("BTOPT_SHARED_TABLES_MIB must be a number of MiB"), "{}", out.stderr);
}

/// An engine over shared tables computes none of the SMAs they hold, and refuses tables built
/// from another copy of the same bundle (the tables serve exactly the columns they were
/// built from).
#[test]
fn an_engine_reads_the_tables_of_its_own_bundle_only() {
    use std::sync::Arc;
    let bundle = Arc::new(bundle::Bundle::load(daily_bundle()).unwrap());
    let tables = runner::shared_tables(&bundle, &[5, 20, 50], usize::MAX).unwrap().unwrap();
    let run = |engine: &mut runner::Engine| {
        let mut sharpes = Vec::new();
        for (s, l) in [(5, 20), (20, 50), (5, 50)] {
            let ma = engine::MaCrossover { short_window: s, long_window: l, threshold: 0.0 }.configured().unwrap();
            sharpes.push(engine.run(&ma, &engine::RunOptions::default()).unwrap().sharpe.to_bits());
        }
        sharpes
    };
    let mut shared = runner::Engine::with_tables(bundle.clone(), runner::SharedTables::sma(tables.clone())).unwrap();
    let mut own = runner::Engine::new(bundle.clone()).unwrap();
    assert_eq!(run(&mut shared), run(&mut own));
    assert_eq!(shared.own_cache_bytes(), 0);
    // Its own cache holds the same columns, and each asset's prefix sums they were read off.
    let prefixes: usize = bundle.assets().iter().map(|a| 2 * (a.end_bar - a.first_bar + 1) * 8).sum();
    assert_eq!(own.own_cache_bytes(), tables.bytes() + prefixes);
    let copy = Arc::new(bundle::Bundle::load(daily_bundle()).unwrap());
    let refused = runner::Engine::with_tables(copy, runner::SharedTables::sma(tables)).err().expect("refused");
    assert!(refused.to_string().contains("another market"), "{refused}");
}

/// Momentum's tables: one per lookback of the space, within the budget (a line says when not),
/// and `btopt optimize` gives the same trials with them shared or not.
#[test]
fn momentum_tables_hold_every_lookback_and_change_no_trial() {
    use crate::support::btopt;
    let registry = engine::Registry::builtin();
    let mom = registry.lookup("momentum").unwrap();
    let base = engine::ParamValues::defaults(mom.parameters());
    let space_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../spaces/momentum-5m.toml");
    let space = optimize::Space::from_toml_file(std::path::Path::new(space_file)).unwrap();
    let want: Vec<usize> = (10..=100).step_by(10).collect();
    assert_eq!(runner::momentum_lookbacks(&**mom, &base, &space), want);
    assert!(runner::sma_windows(&**mom, &base, &space).is_empty());

    let bundle = bundle::Bundle::load(daily_bundle()).unwrap();
    // Score and volatility for 7 assets on every bar.
    let table = bundle.sessions().len() * 7 * 2 * 8;
    let all = runner::tables_for(&**mom, &base, &space, &bundle, usize::MAX).unwrap();
    assert!(all.sma.is_none());
    assert_eq!(runner::shortfall(&all, usize::MAX), None);
    let tables = all.momentum.as_ref().expect("momentum tables");
    assert_eq!((tables.lookbacks(), tables.bytes()), (10, 10 * table));
    let some = runner::tables_for(&**mom, &base, &space, &bundle, table * 7 / 2).unwrap();
    assert_eq!(some.momentum.as_ref().unwrap().lookbacks(), 3);
    let line = runner::shortfall(&some, table * 7 / 2).expect("over budget");
    assert!(line.contains("3 of 10 lookbacks are shared"), "{line}");

    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/../spaces/momentum-5m-tiny.toml");
    let run = |pool: &str, mib: Option<&str>| {
        let cmd = btopt(&[
            "optimize",
            "--bundle",
            p(daily_bundle()),
            "--strategy",
            "momentum",
            "--json",
            "--space",
            tiny,
            "--search",
            "random",
            "--evaluations",
            "60",
            "--deterministic",
            "--pool",
            pool,
            "--workers",
            "2",
            "--no-overfitting",
        ]);
        with_tables_budget(cmd, mib)
    };
    let (want, lines, _) = run("thread", Some("0"));
    assert_eq!(want["trials"].as_array().unwrap().len(), 60);
    assert_eq!(lines, 0);
    for pool in ["fork", "thread"] {
        let (all, lines, stderr) = run(pool, None);
        assert_eq!(all, want, "{pool} with the default budget");
        assert_eq!(lines, 0, "{stderr}");
    }
}

/// Runs an `optimize --json` command with the shared tables' budget set to `mib` MiB (`None`:
/// the default): its summary without the wall time, its number of "shared indicator tables:"
/// lines on stderr, and its stderr.
fn with_tables_budget(mut cmd: std::process::Command, mib: Option<&str>) -> (Value, usize, String) {
    use crate::optimize_cli::{parse_summary, timeless};
    use crate::support::{start, wait_guarded};
    match mib {
        Some(m) => cmd.env(runner::TABLES_ENV, m),
        None => cmd.env_remove(runner::TABLES_ENV),
    };
    let out = wait_guarded(start(&mut cmd));
    let lines = out.stderr.lines().filter(|l| l.starts_with("shared indicator tables:")).count();
    (timeless(parse_summary(&out)), lines, out.stderr)
}
