//! Plots: each writes a non-empty, well-formed SVG naming its series; convergence bands.

use std::path::Path;

use bench_driver::plots::{self, ConvergenceSeries, SpeedupBar};
use bench_driver::report::MemorySample;

/// Where a test writes its plot: a fresh temporary directory, or `$BENCH_DRIVER_KEEP_PLOTS`
/// when set, to look at the plots after the run.
fn out(name: &str) -> (Option<tempfile::TempDir>, std::path::PathBuf) {
    match std::env::var_os("BENCH_DRIVER_KEEP_PLOTS") {
        Some(dir) => (None, Path::new(&dir).join(name)),
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(name);
            (Some(tmp), path)
        }
    }
}

/// Reads an SVG and checks that it is well formed: one `<svg>` root, and every element closed
/// in order. Returns the text.
fn read_svg(path: &Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.len() > 500, "suspiciously small SVG: {svg}");
    let body = svg.trim_start();
    let body = if body.starts_with("<?xml") { &body[body.find("?>").unwrap() + 2..] } else { body };
    assert!(body.trim_start().starts_with("<svg"), "no svg root");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>').expect("unterminated tag");
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') && !tag.starts_with('!') && !tag.starts_with('?') {
            stack.push(tag.split_whitespace().next().unwrap().to_owned());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert!(svg.contains("<text"), "no text elements");
    svg
}

#[test]
fn speedup_plot() {
    let (_tmp, path) = out("speedup.svg");
    let bars = vec![
        SpeedupBar { name: "persistent-pool".into(), pct: 42.0, ci95: [35.0, 50.0], accepted: true },
        SpeedupBar { name: "shared-bundle/thread".into(), pct: -3.0, ci95: [-8.0, 2.0], accepted: false },
        SpeedupBar { name: "bohb-1100/daily".into(), pct: 300.0, ci95: [250.0, 360.0], accepted: true },
        SpeedupBar { name: "not-timed".into(), pct: f64::NAN, ci95: [f64::NAN, f64::NAN], accepted: false },
    ];
    plots::speedup_chart(&bars, &path).unwrap();
    let svg = read_svg(&path);
    for b in &bars {
        assert!(svg.contains(&b.name), "missing {}", b.name);
    }
    for label in ["ACCEPT", "REJECT", "acceptance threshold"] {
        assert!(svg.contains(label), "missing {label}");
    }
}

#[test]
fn memory_plot() {
    let (_tmp, path) = out("nested/memory.svg");
    let mut samples = Vec::new();
    for (i, arm) in ["fork-inherit", "fork-reopen", "spawn-load", "spawn-mmap", "thread"].iter().enumerate() {
        for w in [2usize, 8] {
            let pss = (100 + 50 * i as u64) * w as u64;
            samples.push(MemorySample {
                arm: (*arm).to_owned(),
                workers: w,
                pss_sum_bytes: pss << 20,
                rss_sum_bytes: (pss * 2) << 20,
            });
        }
    }
    plots::memory_chart(&samples, &path).unwrap();
    let svg = read_svg(&path);
    for s in &samples {
        assert!(svg.contains(&s.arm), "missing {}", s.arm);
    }
    assert!(svg.contains("2 workers") && svg.contains("8 workers"));
}

/// A synthetic trace: `evals` evaluations of budget `step` each, losses decreasing with noise
/// depending on the seed.
fn trace(seed: u64, evals: usize, step: f64, floor: f64) -> Vec<(f64, f64)> {
    (0..evals)
        .map(|i| {
            let noise = ((seed * 31 + i as u64 * 17) % 13) as f64 / 13.0;
            ((i + 1) as f64 * step, floor + 1.0 / (1.0 + i as f64) + 0.3 * noise)
        })
        .collect()
}

#[test]
fn convergence_plot() {
    let (_tmp, path) = out("convergence.svg");
    let series: Vec<ConvergenceSeries> = [("BOHB", 0.1, -1.5), ("Hyperband", 0.1, -1.3), ("random", 1.0, -1.0)]
        .iter()
        .map(|(name, step, floor)| ConvergenceSeries {
            searcher: (*name).to_owned(),
            seeds: (0..5).map(|s| trace(s, 60, *step, *floor)).collect(),
        })
        .collect();
    plots::convergence_chart(&series, "bohb-5m", &path).unwrap();
    let svg = read_svg(&path);
    for name in ["BOHB", "Hyperband", "random", "over 5 seeds", "bohb-5m"] {
        assert!(svg.contains(name), "missing {name}");
    }
    assert!(svg.contains("<polygon"), "no bands");
}

#[test]
fn empty_inputs_still_give_a_valid_svg() {
    let dir = tempfile::tempdir().unwrap();
    plots::speedup_chart(&[], &dir.path().join("a.svg")).unwrap();
    plots::memory_chart(&[], &dir.path().join("b.svg")).unwrap();
    plots::convergence_chart(&[], "empty", &dir.path().join("c.svg")).unwrap();
    for f in ["a.svg", "b.svg", "c.svg"] {
        read_svg(&dir.path().join(f));
    }
}

#[test]
fn band_over_seeds() {
    // Two seeds, step functions of best loss so far:
    //   seed 0: budget 1 → 5, 2 → 3, 4 → 4 (no improvement)
    //   seed 1: budget 2 → 6, 3 → 1
    let s = ConvergenceSeries {
        searcher: "x".into(),
        seeds: vec![vec![(1.0, 5.0), (2.0, 3.0), (4.0, 4.0)], vec![(2.0, 6.0), (3.0, 1.0)]],
    };
    let b = plots::band(&s, 3); // budgets 2, 3, 4: from the later first evaluation to the end
    assert_eq!(b.budget, vec![2.0, 3.0, 4.0]);
    assert_eq!(b.min, vec![3.0, 1.0, 1.0]);
    assert_eq!(b.max, vec![6.0, 3.0, 3.0]);
    assert_eq!(b.median, vec![4.5, 2.0, 2.0]);
    let three =
        ConvergenceSeries { searcher: "y".into(), seeds: vec![vec![(1.0, 1.0)], vec![(1.0, 7.0)], vec![(1.0, 2.0)]] };
    assert_eq!(plots::band(&three, 2).median, vec![2.0, 2.0]);
}

#[test]
fn write_all_from_a_report() {
    let (report, _) = crate::report::sample_report();
    let dir = tempfile::tempdir().unwrap();
    let conv = plots::Convergence {
        stem: "convergence-bohb-1100".into(),
        title: "bohb-1100 on mag-7 daily".into(),
        series: vec![ConvergenceSeries { searcher: "BOHB".into(), seeds: vec![trace(1, 20, 0.1, -1.0)] }],
    };
    let written = plots::write_all(&report, &[conv], dir.path()).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["speedup.svg", "memory.svg", "convergence-bohb-1100.svg"]);
    let speedup = read_svg(&written[0]);
    assert!(speedup.contains("persistent-pool") && speedup.contains("not timed"));
    // The memory samples appear once each, from the scenario's figures.
    let samples = plots::memory_samples(&report);
    assert_eq!(samples.len(), 4);
    assert!(read_svg(&written[1]).contains("per-batch"));
    assert!(read_svg(&written[2]).contains("bohb-1100 on mag-7 daily"));
}
