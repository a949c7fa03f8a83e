//! Issue 4's blocking suite: one task list, bit-identical results from every pool backend at
//! 1, 2 and 8 workers and chunk sizes 1, 7 and adaptive; and inherited SQLite handles hammered
//! from 8 children at once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{daily_bundle, e2e, p, run_e2e, start, wait_guarded};

/// Every backend this platform has, by `btopt-e2e` name.
fn kinds() -> Vec<&'static str> {
    let mut k = vec!["spawn-load", "spawn-mmap", "thread"];
    if cfg!(unix) {
        k.extend(["fork-inherit", "fork-reopen", "per-batch"]);
    }
    k
}

/// `btopt-e2e run` output: for each pass (`map`, `stream`), the outputs in job order, with the
/// pool's chunk size set through `BTOPT_POOL_CHUNK` (`auto` or a number of tasks).
fn run_chunked(pool: &str, workers: usize, chunk: &str) -> BTreeMap<String, Vec<Value>> {
    let mut cmd = e2e(&["run", "--bundle", p(daily_bundle()), "--pool", pool, "--workers", &workers.to_string()]);
    let out = wait_guarded(start(cmd.env(pool::CHUNK_ENV, chunk)));
    let mut passes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in out.json_lines() {
        let pass = passes.entry(line["pass"].as_str().expect("pass").to_string()).or_default();
        assert_eq!(line["job"].as_u64(), Some(pass.len() as u64), "{pool}: jobs out of order");
        pass.push(line["out"].clone());
    }
    assert_eq!(passes.keys().collect::<Vec<_>>(), ["map", "stream"], "{pool}");
    passes
}

fn run(pool: &str, workers: usize) -> BTreeMap<String, Vec<Value>> {
    run_chunked(pool, workers, "auto")
}

/// The in-process reference (no pool), checked for being a meaningful reference once.
fn reference() -> &'static [Value] {
    static REF: OnceLock<Vec<Value>> = OnceLock::new();
    REF.get_or_init(|| {
        let outs = run("in-process", 1).remove("map").unwrap();
        let count = |key: &str| outs.iter().filter(|o| o.get(key).is_some()).count();
        // 24 + 3 MA-crossover and 2 momentum backtests; 4 refused; 7 assets plus one unknown; echo.
        assert_eq!(outs.len(), 24 + 3 + 2 + 4 + 7 + 1 + 1, "{outs:?}");
        assert_eq!(count("metrics"), 29);
        assert_eq!(count("invalid"), 4, "four refused backtests");
        // Seven assets, and an unknown sid, which reads as no rows.
        assert_eq!(count("closes"), 8);
        assert_eq!(outs[outs.len() - 2], serde_json::json!({ "closes": [] }));
        assert_eq!(count("echo"), 1);
        assert_eq!(count("error"), 0);
        // The backtests really trade and differ from each other.
        let metrics: Vec<&Value> = outs.iter().filter_map(|o| o.get("metrics")).collect();
        assert!(metrics.iter().filter(|m| m["trades"].as_u64().unwrap() > 0).count() >= 20);
        let sharpes: std::collections::BTreeSet<u64> = metrics.iter().map(|m| m["sharpe"].as_u64().unwrap()).collect();
        assert!(sharpes.len() >= 20, "{} distinct sharpes", sharpes.len());
        // Raw closes as stored, read through SQLite in the test process.
        let handles = bundle::Handles::open(daily_bundle()).unwrap();
        let bundle = bundle::Bundle::load(daily_bundle()).unwrap();
        let closes: Vec<&Value> = outs.iter().filter_map(|o| o.get("closes")).collect();
        for (asset, got) in bundle.assets().iter().zip(closes) {
            let want: Vec<u64> = handles.raw_closes(asset.sid).unwrap().iter().map(|x| x.to_bits()).collect();
            assert_eq!(want.len(), bundle.sessions().len());
            assert_eq!(*got, serde_json::json!(want), "sid {}", asset.sid);
        }
        outs
    })
}

fn check_all_backends(workers: usize) {
    let want = reference();
    for kind in kinds() {
        // One task per chunk, chunks of 7, and the adaptive size.
        for chunk in ["1", "7", "auto"] {
            let got = run_chunked(kind, workers, chunk);
            // Compare job by job first, for a readable failure.
            for (pass, outs) in &got {
                assert_eq!(outs.len(), want.len(), "{kind} x{workers} chunk {chunk} {pass}");
                for (i, (g, w)) in outs.iter().zip(want).enumerate() {
                    assert_eq!(g, w, "{kind} x{workers} chunk {chunk} {pass}: job {i} differs from the reference");
                }
            }
        }
    }
}

#[test]
fn every_backend_matches_the_reference_bit_for_bit_at_1_worker() {
    check_all_backends(1);
}

#[test]
fn every_backend_matches_the_reference_bit_for_bit_at_2_workers() {
    check_all_backends(2);
}

#[test]
fn every_backend_matches_the_reference_bit_for_bit_at_8_workers() {
    check_all_backends(8);
}

/// `btopt-e2e hammer` output: per sid (answers, distinct answers, errors, closes), and the
/// pool's (live workers, started, lost).
#[cfg(unix)]
fn hammer(handles: &str) -> (BTreeMap<u64, Value>, Value) {
    let out =
        run_e2e(&["hammer", "--bundle", p(daily_bundle()), "--handles", handles, "--workers", "8", "--rounds", "50"]);
    let mut lines = out.json_lines();
    let counters = lines.pop().expect("a counters line");
    let per_sid = lines.into_iter().map(|l| (l["sid"].as_u64().expect("sid"), l)).collect();
    (per_sid, counters)
}

#[cfg(unix)]
#[test]
fn inherited_handles_hammered_by_8_children_agree_with_reopened_and_in_process_reads() {
    let bundle = bundle::Bundle::load(daily_bundle()).unwrap();
    let handles = bundle::Handles::open(daily_bundle()).unwrap();
    let (inherit, inherit_counters) = hammer("inherit");
    let (reopen, reopen_counters) = hammer("reopen");
    for counters in [&inherit_counters, &reopen_counters] {
        assert_eq!(counters["live_workers"], 8, "{counters}");
        assert_eq!(counters["started"], 8, "no worker was replaced: {counters}");
        assert_eq!(counters["lost"], 0, "{counters}");
    }
    let sids: Vec<u64> = bundle.assets().iter().map(|a| u64::from(a.sid)).collect();
    assert_eq!(inherit.keys().copied().collect::<Vec<_>>(), sids);
    assert_eq!(reopen.keys().copied().collect::<Vec<_>>(), sids);
    for asset in bundle.assets() {
        let sid = u64::from(asset.sid);
        let want: Vec<u64> = handles.raw_closes(asset.sid).unwrap().iter().map(|x| x.to_bits()).collect();
        assert_eq!(want.len(), bundle.sessions().len());
        for (mode, got) in [("inherit", &inherit[&sid]), ("reopen", &reopen[&sid])] {
            assert_eq!(got["answers"], 50, "{mode} sid {sid}");
            assert_eq!(got["errors"], serde_json::json!([]), "{mode} sid {sid}");
            assert_eq!(got["distinct"], 1, "{mode} sid {sid}: the 50 reads disagree");
            assert_eq!(got["closes"], serde_json::json!(want), "{mode} sid {sid}: differs from an in-process read");
        }
    }
}
