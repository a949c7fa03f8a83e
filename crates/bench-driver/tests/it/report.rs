//! Report records and writers: the shapes of `report.json`, `runs.csv` and `report.md`.

use bench_driver::decide::{self, Tracker};
use bench_driver::report::{self, Environment, Memory, MemorySample, Report, Run, ScenarioResult};
use bench_driver::stats;
use serde_json::Value;

use crate::close;

const BASE: [f64; 10] = [1.00, 1.02, 0.98, 1.01, 0.99, 1.00, 1.03, 0.97, 1.00, 1.00];
const CAND: [f64; 10] = [0.80, 0.81, 0.79, 0.80, 0.82, 0.78, 0.80, 0.81, 0.79, 0.80];

fn mem(arm: &str, workers: usize, pss_mib: u64, rss_mib: u64) -> MemorySample {
    MemorySample { arm: arm.to_owned(), workers, pss_sum_bytes: pss_mib << 20, rss_sum_bytes: rss_mib << 20 }
}

/// A report with a timed, accepted scenario carrying memory and metrics, and a scenario
/// rejected as not equivalent; plus its runs.
pub(crate) fn sample_report() -> (Report, Vec<Run>) {
    let mut tracker = Tracker::new();
    let cmp = stats::compare(&BASE, &CAND, true).unwrap();
    let v = decide::decide(true, Some(&cmp));
    tracker.record("persistent-pool", &v, Some(cmp.speedup.pct));
    let memory = Memory::new(
        "per-batch",
        "fork",
        vec![
            mem("per-batch", 2, 300, 600),
            mem("fork", 2, 150, 600),
            mem("per-batch", 8, 900, 2400),
            mem("fork", 8, 450, 2400),
        ],
    );
    let pool = ScenarioResult::new("persistent-pool", "per-batch", "fork", true, Some(&cmp), &v)
        .with_memory(memory)
        .with_metric("grid_size", 1100)
        .with_metric("best_sharpe", 1.25)
        .with_note("a note, with a comma");
    let v = decide::decide(false, None);
    tracker.record("shared-bundle/spawn-load", &v, None);
    let spawn = ScenarioResult::new("shared-bundle/spawn-load", "fork-inherit", "spawn-load", false, None, &v);
    let env = Environment::capture(&["bench-driver", "--profile", "quick", "--out", "dir with space"]);
    let mut report = Report::new(env, "quick", vec![pool, spawn], &tracker);
    report.plots = vec!["speedup.svg".to_owned()];
    let mut runs = Vec::new();
    for (i, (b, c)) in BASE.iter().zip(&CAND).enumerate() {
        runs.push(Run::new("persistent-pool", "per-batch", i, *b));
        runs.push(Run::new("persistent-pool", "fork", i, *c).with("workers", 2));
    }
    runs.push(Run::new("odd \"name\", here", "x", 0, 0.5).with("seed", 7));
    (report, runs)
}

#[test]
fn report_json_has_every_required_key() {
    let (report, runs) = sample_report();
    let dir = tempfile::tempdir().unwrap();
    // $BENCH_DRIVER_KEEP_PLOTS keeps the files for a look, as the plot tests do.
    let dir = std::env::var_os("BENCH_DRIVER_KEEP_PLOTS").map_or_else(|| dir.path().to_owned(), Into::into);
    let paths = report::write_all(&report, &runs, &dir).unwrap();
    assert_eq!(paths.len(), 3);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();

    for key in ["cpu_model", "cores", "os", "rustc", "git_commit", "command"] {
        assert!(json["environment"].get(key).is_some(), "environment lacks {key}");
    }
    assert!(json["cumulative_speedup_pct"].is_f64());
    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    for s in scenarios {
        for key in report::REQUIRED_SCENARIO_KEYS {
            assert!(s.get(key).is_some(), "scenario {} lacks {key}", s["name"]);
        }
        assert!(matches!(s["decision"].as_str(), Some("ACCEPT" | "REJECT")));
    }

    let pool = &scenarios[0];
    assert_eq!(pool["decision"], "ACCEPT");
    assert_eq!(pool["runs"], 10);
    close("speed-up", pool["speedup_pct"].as_f64().unwrap(), (1.0 / 0.8 - 1.0) * 100.0, 1e-9);
    let ci = pool["speedup_ci95"].as_array().unwrap();
    assert_eq!(ci.len(), 2);
    assert!(ci[0].as_f64().unwrap() < ci[1].as_f64().unwrap());
    assert_eq!(pool["metrics"]["grid_size"], 1100);
    let overhead = pool["memory"]["overhead"].as_array().unwrap();
    assert_eq!(overhead.len(), 2);
    close("pss overhead", overhead[0]["pss_overhead_pct"].as_f64().unwrap(), -50.0, 1e-9);
    close("rss overhead", overhead[1]["rss_overhead_pct"].as_f64().unwrap(), 0.0, 1e-9);

    // Not timed: the timing keys are present and null, and the cumulative is untouched.
    let spawn = &scenarios[1];
    assert_eq!((spawn["decision"].as_str(), spawn["reason"].as_str()), (Some("REJECT"), Some("not equivalent")));
    assert_eq!(spawn["equivalent"], false);
    assert!(spawn["speedup_pct"].is_null() && spawn["p_value"].is_null() && spawn["speedup_ci95"].is_null());
    assert!(spawn.get("memory").is_none());
    close("cumulative", json["cumulative_speedup_pct"].as_f64().unwrap(), 25.0, 1e-9);

    // The shape check that CI runs agrees.
    assert_eq!(report::check_json_shape(&serde_json::to_string(&json).unwrap()), Ok(2));

    // And it reads back into the same types.
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.scenarios, report.scenarios);
}

#[test]
fn runs_csv_has_every_run_and_extra_columns() {
    let (_, runs) = sample_report();
    let dir = tempfile::tempdir().unwrap();
    let path = report::write_runs_csv(&runs, dir.path()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "scenario,arm,run,seconds,seed,workers");
    assert_eq!(lines.len(), 1 + runs.len());
    assert_eq!(lines[1], "persistent-pool,per-batch,0,1,,");
    assert_eq!(lines[2], "persistent-pool,fork,0,0.8,,2");
    assert_eq!(lines[runs.len()], "\"odd \"\"name\"\", here\",x,0,0.5,7,");
    // Every value round-trips exactly.
    let secs: Vec<f64> = lines[1..21].iter().map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
    let expect: Vec<f64> = BASE.iter().zip(&CAND).flat_map(|(b, c)| [*b, *c]).collect();
    assert_eq!(secs, expect);
}

#[test]
fn report_md_has_every_section() {
    let (report, _) = sample_report();
    let md = report::render_markdown(&report);
    for needle in [
        "## Environment",
        &format!("| CPU | {} |", report.environment.cpu_model),
        "| Cores |",
        "| rustc |",
        "| Git commit |",
        "bench-driver --profile quick --out 'dir with space'",
        "## Summary",
        "| persistent-pool | per-batch | fork | 10 |",
        "### persistent-pool",
        "| per-batch | 10 | 1.0000 |",
        "- Welch: t = ",
        "- Paired t: t = ",
        "Overhead vs baseline at 2 workers: PSS -50.0%, RSS +0.0%.",
        "| grid_size | 1100 |",
        "| best_sharpe | 1.25",
        "a note, with a comma",
        "**Decision: ACCEPT** — equivalent; speed-up 25.00% (95% CI 23.12% to 26.91%) >= 5% with p = 3.66e-15",
        "### shared-bundle/spawn-load",
        "Not timed.",
        "**Decision: REJECT** — not equivalent",
        "## Cumulative tracking",
        "**Cumulative speed-up: 25.00%.**",
        "not fired",
        "![speedup.svg](speedup.svg)",
        "## Why PSS",
        "proportional set size",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
}

#[test]
fn environment_is_captured() {
    let env = Environment::capture(&["a", "b c", "it's"]);
    assert_eq!(env.command, r"a 'b c' 'it'\''s'");
    assert!(env.cores >= 1);
    assert!(!env.cpu_model.is_empty() && !env.os.is_empty());
    // Either the real answers or "unknown", never an empty string or an error message.
    assert!(env.rustc.starts_with("rustc ") || env.rustc == "unknown", "{}", env.rustc);
    assert!(env.git_commit == "unknown" || env.git_commit.len() == 40, "{}", env.git_commit);
    assert_eq!(env.timestamp_utc.len(), "2026-11-30T00:00:00Z".len());
}

#[test]
fn rfc3339_known_dates() {
    for (secs, expect) in [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (4_102_444_799, "2099-12-31T23:59:59Z"),
    ] {
        assert_eq!(report::rfc3339_utc(secs), expect);
    }
}

#[test]
fn shape_check_finds_every_problem() {
    assert!(report::check_json_shape("{").unwrap_err()[0].starts_with("not JSON"));
    let bad = r#"{"environment": 1, "scenarios": [
        {"name": "a", "decision": "MAYBE", "speedup_ci95": [1]},
        {"name": "b", "baseline": "x", "candidate": "y", "runs": 10, "baseline_mean_s": 1.0,
         "candidate_mean_s": 0.9, "speedup_pct": 11.1, "speedup_ci95": null, "p_value": 0.01,
         "equivalent": true, "decision": "ACCEPT", "reason": "ok"}]}"#;
    let problems = report::check_json_shape(bad).unwrap_err();
    assert!(problems.contains(&"missing object `environment`".to_owned()), "{problems:?}");
    assert!(problems.contains(&"missing number `cumulative_speedup_pct`".to_owned()), "{problems:?}");
    assert!(problems.contains(&"scenarios[0] (a) lacks `p_value`".to_owned()), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("(a): `decision`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("(a): `speedup_ci95`")), "{problems:?}");
    // Scenario b is complete: nothing is reported about it.
    assert!(!problems.iter().any(|p| p.contains("(b)")), "{problems:?}");
    // a lacks 9 of the 12 keys; plus its decision and CI, environment and cumulative.
    assert_eq!(problems.len(), 13, "{problems:?}");
}
