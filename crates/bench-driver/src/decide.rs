//! The guidance's acceptance rules: ACCEPT or REJECT with a reason, BOHB's two criteria,
//! cumulative speed-up and the stop rule on diminishing returns.
//!
//! Every rule takes measured quantities and returns a [`Verdict`]; none of them measures
//! anything. The thresholds are constants so that the report can quote them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stats::Comparison;

/// Minimum speed-up, in percent, for an optimization to be accepted.
pub const MIN_SPEEDUP_PCT: f64 = 5.0;
/// Significance level of the timing test.
pub const ALPHA: f64 = 0.05;
/// BOHB on a space of 1,000+ combinations must come within this fraction of the optimum...
pub const BOHB_MAX_SHORTFALL: f64 = 0.10;
/// ...using at most this fraction of the evaluations of an exhaustive grid.
pub const BOHB_MAX_BUDGET_FRACTION: f64 = 0.10;
/// BOHB is rejected outright when its best is further than this fraction below the optimum.
pub const BOHB_REJECT_SHORTFALL: f64 = 0.20;
/// Accepted steps below this speed-up, in percent, count as diminishing returns.
pub const DIMINISHING_PCT: f64 = 2.0;

/// ACCEPT or REJECT; serialized as `"ACCEPT"` / `"REJECT"`, as `report.json` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// Every rule held.
    Accept,
    /// At least one rule failed; the verdict's reason says which.
    Reject,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Accept => "ACCEPT",
            Decision::Reject => "REJECT",
        })
    }
}

/// A decision and its rationale, in words fit for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// ACCEPT or REJECT.
    pub decision: Decision,
    /// Why: on REJECT, every rule that failed, joined by "; "; on ACCEPT, the evidence.
    pub reason: String,
}

impl Verdict {
    /// Whether this is an ACCEPT.
    pub fn is_accept(&self) -> bool {
        self.decision == Decision::Accept
    }

    /// ACCEPT if `failures` is empty (with `evidence` as the reason), otherwise REJECT with the
    /// failures. Collecting every failure, not just the first, tells the reader how far off a
    /// rejected step was.
    fn from_checks(failures: Vec<String>, evidence: String) -> Verdict {
        if failures.is_empty() {
            Verdict { decision: Decision::Accept, reason: evidence }
        } else {
            Verdict { decision: Decision::Reject, reason: failures.join("; ") }
        }
    }

    /// The verdict of a scenario whose arms did not produce the same results. It is final:
    /// timing a wrong answer would only invite comparing it.
    pub fn not_equivalent() -> Verdict {
        Verdict { decision: Decision::Reject, reason: "not equivalent".to_owned() }
    }
}

/// The failed timing rules of `cmp`: speed-up below [`MIN_SPEEDUP_PCT`], p not below [`ALPHA`].
fn timing_failures(cmp: &Comparison) -> Vec<String> {
    let mut failures = Vec::new();
    let s = cmp.speedup.pct;
    if s.is_nan() || s < MIN_SPEEDUP_PCT {
        failures.push(format!("speed-up {s:.2}% < {MIN_SPEEDUP_PCT}%"));
    }
    let p = cmp.p_value();
    if p.is_nan() || p >= ALPHA {
        failures.push(format!("p = {} >= {ALPHA} (not significant)", format_p(p)));
    }
    failures
}

/// One sentence of timing evidence: speed-up, its CI and p.
fn timing_evidence(cmp: &Comparison) -> String {
    let s = cmp.speedup;
    format!(
        "speed-up {:.2}% (95% CI {:.2}% to {:.2}%) >= {MIN_SPEEDUP_PCT}% with p = {} < {ALPHA}",
        s.pct,
        s.ci95[0],
        s.ci95[1],
        format_p(cmp.p_value())
    )
}

/// A p-value for people: four decimals, or scientific notation below 1e-4, where four
/// decimals would print a misleading 0.0000.
pub fn format_p(p: f64) -> String {
    if p > 0.0 && p < 1e-4 { format!("{p:.2e}") } else { format!("{p:.4}") }
}

/// The guidance's rule for one optimization step: ACCEPT iff the arms are `equivalent`, and
/// the speed-up is ≥ [`MIN_SPEEDUP_PCT`] with Welch's p < [`ALPHA`].
///
/// Equivalence is checked first and blocks: a non-equivalent scenario is rejected as "not
/// equivalent" whatever `cmp` holds (normally `None`, since it is not timed). An equivalent
/// scenario without timing is rejected too, because there is no evidence of a speed-up.
pub fn decide(equivalent: bool, cmp: Option<&Comparison>) -> Verdict {
    if !equivalent {
        return Verdict::not_equivalent();
    }
    let Some(cmp) = cmp else {
        return Verdict { decision: Decision::Reject, reason: "no timing measured".to_owned() };
    };
    Verdict::from_checks(timing_failures(cmp), format!("equivalent; {}", timing_evidence(cmp)))
}

/// Issue 10's bound on a distributed run: within this many percent of the local wall time.
pub const MAX_SLOWDOWN_PCT: f64 = 10.0;

/// The slowdown, in percent, that a speed-up of `speedup_pct` means: how much longer the
/// candidate took (`candidate_mean / baseline_mean − 1`, the inverse ratio of the speed-up).
pub fn slowdown_pct(speedup_pct: f64) -> f64 {
    (100.0 / (100.0 + speedup_pct) - 1.0) * 100.0
}

/// A non-inferiority rule, for a candidate that is not meant to be faster, only not much
/// slower (a fleet of worker processes against the local pool): ACCEPT iff the arms are
/// `equivalent` and the slowdown is at most `max_pct` with 95% confidence, i.e. the upper end
/// of the slowdown's 95% CI (the lower end of the speed-up's) is at most `max_pct`. A mean
/// inside the bound whose interval reaches past it is a REJECT: the runs do not show it.
pub fn within_slowdown(equivalent: bool, cmp: Option<&Comparison>, max_pct: f64) -> Verdict {
    if !equivalent {
        return Verdict::not_equivalent();
    }
    let Some(cmp) = cmp else {
        return Verdict { decision: Decision::Reject, reason: "no timing measured".to_owned() };
    };
    let mean = slowdown_pct(cmp.speedup.pct);
    let upper = slowdown_pct(cmp.speedup.ci95[0]);
    let ok = upper <= max_pct;
    let reason = format!(
        "equivalent; slower by {mean:.2}% (95% CI up to {upper:.2}%), {} the {max_pct}% bound",
        if ok {
            "within"
        } else if mean <= max_pct {
            "the interval reaches past"
        } else {
            "past"
        }
    );
    Verdict { decision: if ok { Decision::Accept } else { Decision::Reject }, reason }
}

/// How far `best` falls short of `optimum`, as a fraction of the optimum, for a score where
/// higher is better (a Sharpe ratio): 0.0 at the optimum, 0.1 at 10% below it, negative when
/// `best` beats a reference that is only an estimate of the optimum (a random sample's best).
///
/// "x% below the optimum" needs an optimum away from zero to mean anything; the measure uses
/// `|optimum|` so that a negative optimum still gives a positive shortfall for a worse best, and
/// an optimum of exactly zero gives an infinite shortfall for any worse best (never accepted).
pub fn shortfall(best: f64, optimum: f64) -> f64 {
    let gap = optimum - best;
    if gap == 0.0 { 0.0 } else { gap / optimum.abs() }
}

/// Which of the guidance's BOHB criteria is the primary one for a space of `combinations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BohbRegime {
    /// Under 100 combinations: outside BOHB's design range, so no BOHB criterion applies
    /// (the guidance's complaint about the original 36-point test).
    TooSmall,
    /// 100–1,000 combinations: [`bohb_vs_grid`].
    VsGrid,
    /// More than 1,000 combinations: [`bohb_within_budget`].
    WithinBudget,
}

impl BohbRegime {
    /// The regime of a space with `combinations` points.
    pub fn for_combinations(combinations: u64) -> BohbRegime {
        match combinations {
            0..100 => BohbRegime::TooSmall,
            100..=1000 => BohbRegime::VsGrid,
            _ => BohbRegime::WithinBudget,
        }
    }
}

/// The failure of the guidance's hard quality floor, if any: a best more than
/// [`BOHB_REJECT_SHORTFALL`] below the optimum.
fn quality_floor(short: f64) -> Option<String> {
    (short.is_nan() || short > BOHB_REJECT_SHORTFALL)
        .then(|| format!("best is {:.1}% below the optimum (> {:.0}%)", short * 100.0, BOHB_REJECT_SHORTFALL * 100.0))
}

/// BOHB's criterion for 100–1,000 combinations: ≥ 5% faster than the exhaustive grid (with
/// p < 0.05) at comparable best quality.
///
/// `timing` compares grid (baseline) with BOHB (candidate) time to solution; `best` is BOHB's
/// best score and `optimum` the grid's (higher is better). "Comparable quality" is taken to be
/// within [`BOHB_MAX_SHORTFALL`] of the optimum: it is the only quality tolerance the guidance
/// quantifies for an acceptance, and one number for both criteria keeps them consistent. A
/// best more than [`BOHB_REJECT_SHORTFALL`] below the optimum rejects whatever the timing.
pub fn bohb_vs_grid(timing: &Comparison, best: f64, optimum: f64) -> Verdict {
    let short = shortfall(best, optimum);
    if let Some(floor) = quality_floor(short) {
        return Verdict { decision: Decision::Reject, reason: floor };
    }
    let mut failures = timing_failures(timing);
    if short > BOHB_MAX_SHORTFALL {
        failures.push(format!(
            "best is {:.1}% below the grid optimum (not comparable: > {:.0}%)",
            short * 100.0,
            BOHB_MAX_SHORTFALL * 100.0
        ));
    }
    let evidence = format!("{}; best {:.1}% below the grid optimum", timing_evidence(timing), short * 100.0);
    Verdict::from_checks(failures, evidence)
}

/// BOHB's criterion for 1,000+ combinations: a best within [`BOHB_MAX_SHORTFALL`] of the
/// optimum using at most [`BOHB_MAX_BUDGET_FRACTION`] of the evaluations.
///
/// `budget_fraction` is BOHB's budget in full-fidelity evaluations (a run on 1/3 of the data
/// counts 1/3) divided by the number of points in the space, i.e. the exhaustive grid's budget.
/// A best more than [`BOHB_REJECT_SHORTFALL`] below the optimum rejects outright.
pub fn bohb_within_budget(best: f64, optimum: f64, budget_fraction: f64) -> Verdict {
    let short = shortfall(best, optimum);
    if let Some(floor) = quality_floor(short) {
        return Verdict { decision: Decision::Reject, reason: floor };
    }
    let mut failures = Vec::new();
    if short > BOHB_MAX_SHORTFALL {
        failures.push(format!(
            "best is {:.1}% below the optimum (> {:.0}%)",
            short * 100.0,
            BOHB_MAX_SHORTFALL * 100.0
        ));
    }
    if budget_fraction.is_nan() || budget_fraction > BOHB_MAX_BUDGET_FRACTION {
        failures.push(format!(
            "used {:.1}% of the evaluations (> {:.0}%)",
            budget_fraction * 100.0,
            BOHB_MAX_BUDGET_FRACTION * 100.0
        ));
    }
    let evidence = format!(
        "best {:.1}% below the optimum using {:.2}% of the evaluations",
        short * 100.0,
        budget_fraction * 100.0
    );
    Verdict::from_checks(failures, evidence)
}

/// One step of the sequential evaluation, as the cumulative tracking sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Scenario name.
    pub name: String,
    /// Its measured speed-up, in percent; `None` when it was not timed.
    pub speedup_pct: Option<f64>,
    /// Whether it was accepted.
    pub accepted: bool,
    /// Cumulative speed-up of the accepted steps so far, this one included, in percent.
    pub cumulative_pct: f64,
}

/// Cumulative speed-up over the sequence of steps, and the stop rule.
///
/// Speed-ups compose multiplicatively: a 10% step then a 20% step make `1.1 · 1.2 − 1 = 32%`,
/// not 30%, because each is measured against a baseline that already includes the previous
/// ones. Only accepted steps count; a rejected one leaves the code, and the baseline, as they
/// were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    steps: Vec<Step>,
}

impl Tracker {
    /// An empty sequence: cumulative speed-up 0%.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Records a step with its verdict and measured speed-up (`None` when not timed),
    /// returning the step as recorded. An accepted step without a speed-up (BOHB accepted on
    /// its budget criterion without timing) counts as 0%: it changes nothing in the cumulative
    /// figure and counts as a diminishing return.
    pub fn record(&mut self, name: &str, verdict: &Verdict, speedup_pct: Option<f64>) -> &Step {
        let accepted = verdict.is_accept();
        let factor = match speedup_pct {
            Some(s) if accepted && s.is_finite() => 1.0 + s / 100.0,
            _ => 1.0,
        };
        let cumulative_pct = ((1.0 + self.cumulative_pct() / 100.0) * factor - 1.0) * 100.0;
        self.steps.push(Step { name: name.to_owned(), speedup_pct, accepted, cumulative_pct });
        self.steps.last().expect("just pushed")
    }

    /// Every step recorded, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The product of `(1 + s/100)` over accepted steps, minus one, in percent.
    pub fn cumulative_pct(&self) -> f64 {
        self.steps.last().map_or(0.0, |s| s.cumulative_pct)
    }

    /// The guidance's stop rule: stop on diminishing returns, when each of the last two
    /// accepted steps is below [`DIMINISHING_PCT`].
    ///
    /// With the 5% acceptance threshold a timing step can never be accepted below 2%, so in
    /// practice this fires only for steps accepted on other grounds (BOHB's budget criterion);
    /// it is kept as the guidance states it so that a change of thresholds keeps it meaningful.
    pub fn should_stop(&self) -> bool {
        let mut accepted = self.steps.iter().rev().filter(|s| s.accepted);
        match (accepted.next(), accepted.next()) {
            (Some(a), Some(b)) => [a, b].iter().all(|s| s.speedup_pct.unwrap_or(0.0) < DIMINISHING_PCT),
            _ => false,
        }
    }
}
