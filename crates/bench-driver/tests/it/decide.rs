//! Decision rules, BOHB's criteria, cumulative tracking and the stop rule.

use bench_driver::decide::{self, BohbRegime, Decision, Tracker, Verdict};
use bench_driver::stats::{Comparison, SampleSummary, Speedup, TTest};

use crate::close;

/// A comparison with the given speed-up and Welch p; the other fields do not enter decisions.
fn cmp(speedup_pct: f64, p: f64) -> Comparison {
    let arm = SampleSummary { n: 10, mean: 1.0, sd: 0.01, ci95: [0.99, 1.01] };
    Comparison {
        baseline: arm,
        candidate: arm,
        speedup: Speedup { pct: speedup_pct, ci95: [speedup_pct - 1.0, speedup_pct + 1.0] },
        welch: TTest { statistic: 3.0, df: 17.0, p_value: p },
        paired: None,
    }
}

/// The one place these tests call `decide`: checks the decision and that the reason contains
/// every expected fragment.
#[track_caller]
fn check(equivalent: bool, timing: Option<(f64, f64)>, expect: Decision, reason_has: &[&str]) {
    let c = timing.map(|(s, p)| cmp(s, p));
    let v = decide::decide(equivalent, c.as_ref());
    assert_eq!(v.decision, expect, "{v:?}");
    for frag in reason_has {
        assert!(v.reason.contains(frag), "reason {:?} lacks {frag:?}", v.reason);
    }
}

#[test]
fn accept_needs_every_rule() {
    check(true, Some((12.0, 0.001)), Decision::Accept, &["equivalent", "speed-up 12.00%", "p = 0.0010"]);
    check(true, Some((5.0, 0.049)), Decision::Accept, &[]); // both thresholds are inclusive/exclusive as stated
}

#[test]
fn each_failed_rule_is_named() {
    check(true, Some((4.99, 0.001)), Decision::Reject, &["speed-up 4.99% < 5%"]);
    check(true, Some((12.0, 0.05)), Decision::Reject, &["p = 0.0500 >= 0.05"]);
    check(true, Some((12.0, 3.2e-9)), Decision::Accept, &["p = 3.20e-9 < 0.05"]);
    check(true, Some((-20.0, 0.0001)), Decision::Reject, &["speed-up -20.00% < 5%"]);
    // Both failures are reported, not just the first.
    check(true, Some((1.0, 0.6)), Decision::Reject, &["speed-up 1.00% < 5%", "; p = 0.6000"]);
    check(true, Some((f64::NAN, f64::NAN)), Decision::Reject, &["speed-up NaN%", "p = NaN"]);
}

#[test]
fn equivalence_gate_blocks_first() {
    // Not equivalent: rejected as such, whatever the timing says, and the reason says nothing
    // about timing.
    for timing in [None, Some((50.0, 1e-9))] {
        let c = timing.map(|(s, p)| cmp(s, p));
        let v = decide::decide(false, c.as_ref());
        assert_eq!(v, Verdict { decision: Decision::Reject, reason: "not equivalent".to_owned() });
    }
    assert_eq!(Verdict::not_equivalent().reason, "not equivalent");
    check(true, None, Decision::Reject, &["no timing measured"]);
}

/// A comparison whose speed-up has this mean and 95% CI.
fn cmp_ci(pct: f64, ci95: [f64; 2]) -> Comparison {
    Comparison { speedup: Speedup { pct, ci95 }, ..cmp(pct, 0.5) }
}

#[test]
fn slowdown_is_the_inverse_ratio_of_the_speed_up() {
    close("no change", decide::slowdown_pct(0.0), 0.0, 1e-12);
    // Twice as fast is half the time; a 10% slowdown is a speed-up of 1/1.1 - 1.
    close("twice as fast", decide::slowdown_pct(100.0), -50.0, 1e-12);
    close("10% slower", decide::slowdown_pct(-100.0 / 11.0), 10.0, 1e-9);
}

#[test]
fn within_slowdown_reads_the_interval_not_only_the_mean() {
    let v = |pct, ci| decide::within_slowdown(true, Some(&cmp_ci(pct, ci)), decide::MAX_SLOWDOWN_PCT);
    // The measured run of this session: -2.24% [-5.13, 0.74] is at most 5.4% slower.
    let ok = v(-2.24, [-5.13, 0.74]);
    assert_eq!(ok.decision, Decision::Accept, "{ok:?}");
    assert!(ok.reason.contains("slower by 2.29%") && ok.reason.contains("up to 5.41%"), "{}", ok.reason);
    // Faster than the baseline is inside the bound too.
    assert_eq!(v(3.0, [1.0, 5.0]).decision, Decision::Accept);
    // A mean inside the bound with an interval past it is not shown to be within it.
    let wide = v(-6.54, [-19.52, 8.53]);
    assert_eq!(wide.decision, Decision::Reject, "{wide:?}");
    assert!(wide.reason.contains("interval reaches past"), "{}", wide.reason);
    let past = v(-20.0, [-25.0, -15.0]);
    assert_eq!(past.decision, Decision::Reject);
    assert!(past.reason.contains("past the 10% bound"), "{}", past.reason);
    // The equivalence gate and missing timing block as in `decide`.
    assert_eq!(decide::within_slowdown(false, Some(&cmp_ci(0.0, [-1.0, 1.0])), 10.0), Verdict::not_equivalent());
    assert_eq!(decide::within_slowdown(true, None, 10.0).decision, Decision::Reject);
}

#[test]
fn decision_serializes_as_required() {
    assert_eq!(serde_json::to_string(&Decision::Accept).unwrap(), "\"ACCEPT\"");
    assert_eq!(serde_json::to_string(&Decision::Reject).unwrap(), "\"REJECT\"");
    assert_eq!(Decision::Reject.to_string(), "REJECT");
}

#[test]
fn shortfall_measure() {
    close("at optimum", decide::shortfall(2.0, 2.0), 0.0, 0.0);
    close("10% below", decide::shortfall(1.8, 2.0), 0.1, 1e-12);
    close("better than a sampled reference", decide::shortfall(2.2, 2.0), -0.1, 1e-12);
    close("negative optimum", decide::shortfall(-1.2, -1.0), 0.2, 1e-12);
    assert_eq!(decide::shortfall(-0.1, 0.0), f64::INFINITY);
}

#[test]
fn bohb_regimes() {
    assert_eq!(BohbRegime::for_combinations(36), BohbRegime::TooSmall);
    assert_eq!(BohbRegime::for_combinations(100), BohbRegime::VsGrid);
    assert_eq!(BohbRegime::for_combinations(1000), BohbRegime::VsGrid);
    assert_eq!(BohbRegime::for_combinations(1100), BohbRegime::WithinBudget);
    assert_eq!(BohbRegime::for_combinations(5_400_000), BohbRegime::WithinBudget);
}

#[test]
fn bohb_vs_grid_rules() {
    // Faster, significant, best 5% below the grid optimum: accepted.
    let v = decide::bohb_vs_grid(&cmp(30.0, 0.001), 1.9, 2.0);
    assert!(v.is_accept(), "{v:?}");
    // Faster but 15% below: not comparable.
    let v = decide::bohb_vs_grid(&cmp(30.0, 0.001), 1.7, 2.0);
    assert_eq!(v.decision, Decision::Reject);
    assert!(v.reason.contains("not comparable"), "{}", v.reason);
    // Comparable but not faster enough, and not significant: both named.
    let v = decide::bohb_vs_grid(&cmp(3.0, 0.3), 2.0, 2.0);
    assert!(v.reason.contains("speed-up 3.00% < 5%") && v.reason.contains("not significant"), "{}", v.reason);
    // More than 20% below rejects outright, however fast.
    let v = decide::bohb_vs_grid(&cmp(90.0, 1e-9), 1.5, 2.0);
    assert_eq!(v.decision, Decision::Reject);
    assert!(v.reason.contains("25.0% below the optimum (> 20%)"), "{}", v.reason);
}

#[test]
fn bohb_within_budget_rules() {
    assert!(decide::bohb_within_budget(1.85, 2.0, 0.08).is_accept());
    assert!(decide::bohb_within_budget(1.8, 2.0, 0.10).is_accept()); // both limits inclusive
    let v = decide::bohb_within_budget(1.85, 2.0, 0.25);
    assert!(!v.is_accept() && v.reason.contains("used 25.0% of the evaluations (> 10%)"), "{}", v.reason);
    let v = decide::bohb_within_budget(1.7, 2.0, 0.05);
    assert!(!v.is_accept() && v.reason.contains("15.0% below the optimum (> 10%)"), "{}", v.reason);
    let v = decide::bohb_within_budget(1.5, 2.0, 0.01);
    assert!(!v.is_accept() && v.reason.contains("(> 20%)"), "{}", v.reason);
    let v = decide::bohb_within_budget(f64::NAN, 2.0, 0.01);
    assert!(!v.is_accept(), "{v:?}");
}

/// An ACCEPT or REJECT verdict for tracking.
fn verdict(accept: bool) -> Verdict {
    Verdict { decision: if accept { Decision::Accept } else { Decision::Reject }, reason: String::new() }
}

#[test]
fn cumulative_is_multiplicative_over_accepted_steps() {
    let mut t = Tracker::new();
    assert_eq!(t.cumulative_pct(), 0.0);
    t.record("a", &verdict(true), Some(10.0));
    t.record("b", &verdict(false), Some(50.0)); // rejected: does not count
    let step = t.record("c", &verdict(true), Some(20.0)).clone();
    close("cumulative", t.cumulative_pct(), 32.0, 1e-9); // 1.1 · 1.2 − 1, not 30
    assert_eq!(step.cumulative_pct, t.cumulative_pct());
    let cums: Vec<f64> = t.steps().iter().map(|s| s.cumulative_pct).collect();
    close("after a", cums[0], 10.0, 1e-9);
    close("after b", cums[1], 10.0, 1e-9);
    // A slowdown accepted on other grounds compounds too.
    t.record("d", &verdict(true), Some(-10.0));
    close("with slowdown", t.cumulative_pct(), (1.1 * 1.2 * 0.9 - 1.0) * 100.0, 1e-9);
}

#[test]
fn stop_rule_needs_two_small_accepted_steps() {
    let mut t = Tracker::new();
    t.record("big", &verdict(true), Some(12.0));
    t.record("small", &verdict(true), Some(1.5));
    assert!(!t.should_stop(), "only one small step");
    t.record("rejected", &verdict(false), Some(0.5));
    assert!(!t.should_stop(), "rejected steps do not count");
    t.record("small again", &verdict(true), Some(1.9));
    assert!(t.should_stop());
    t.record("big again", &verdict(true), Some(8.0));
    assert!(!t.should_stop(), "a big step resets it");
    let mut t = Tracker::new();
    t.record("exactly 2", &verdict(true), Some(2.0));
    t.record("small", &verdict(true), Some(1.0));
    assert!(!t.should_stop(), "2% is not below 2%");
    // Accepted without timing (BOHB on its budget criterion): 0%, a diminishing return.
    let mut t = Tracker::new();
    t.record("bohb", &verdict(true), None);
    t.record("small", &verdict(true), Some(1.0));
    assert!(t.should_stop());
    close("untimed step adds nothing", t.cumulative_pct(), 1.0, 1e-9);
}
