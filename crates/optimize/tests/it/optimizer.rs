//! The optimizer loop: determinism across worker counts, async overlap, result reuse. (The
//! store and resume tests run on every store in the `store` crate.)

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use optimize::{
    BohbSettings, BracketSearch, InProcessEvaluator, Outcome, SearchOptions, SearchSummary, TrialStore, config_to_json,
    optimize,
};

const DET: SearchOptions = SearchOptions { deterministic: true, reuse_results: false, streaming: false };

/// What must match between runs: every trial's id, config, budget, status and loss, and the best.
fn fingerprint(s: &SearchSummary) -> Vec<String> {
    let mut v: Vec<String> = s
        .trials
        .iter()
        .map(|t| format!("{} {} {} {:?} {:?}", t.trial_id, config_to_json(&t.config), t.budget, t.status, t.loss))
        .collect();
    v.sort();
    v.push(format!("best {:?}", s.best.as_ref().map(|b| (b.trial_id, b.loss, b.budget))));
    v.push(format!("{} {}", s.evaluations, s.total_budget));
    v
}

#[test]
fn deterministic_mode_is_identical_at_any_worker_count() {
    let reference = fingerprint(&super::run_bohb_co(4, 6, 1, DET, &mut super::mem(), None).unwrap());
    for (cap, shuffle) in [(2, None), (8, Some(1)), (8, Some(2)), (3, Some(3))] {
        let got = fingerprint(&super::run_bohb_co(4, 6, cap, DET, &mut super::mem(), shuffle).unwrap());
        assert_eq!(got, reference, "capacity {cap}, shuffle {shuffle:?}");
    }
}

#[test]
fn async_mode_keeps_workers_busy_and_completes() {
    let s = super::run_bohb_co(4, 6, 8, SearchOptions::default(), &mut super::mem(), Some(5)).unwrap();
    // Brackets for (1/81, 1, 3): 81+27+9+3+1, 27+9+3+1, 9+3+1, 6+2, 5, then 81+27+9+3+1.
    assert_eq!(s.evaluations as usize, 121 + 40 + 13 + 8 + 5 + 121);
    assert!(s.best.is_some());
}

/// Overlap: in async mode a new bracket starts while another waits at a barrier.
#[test]
fn async_mode_starts_the_next_bracket_at_a_barrier() {
    let co = super::counting_ones(1);
    let space = co.space();
    let mut searcher = BracketSearch::hyperband(space.clone(), super::co_settings(3), 1).unwrap();
    let mut ev = InProcessEvaluator::new(200, move |id, c, b| co.evaluate(id, c, b));
    let s = optimize(&space, &mut searcher, &mut ev, &mut super::mem(), SearchOptions::default(), &mut ()).unwrap();
    // With 200 workers, bracket 1 and 2 are started before bracket 0 finishes stage 0, so the
    // first 81 + 27 + 9 trial ids are all stage-0 trials of the three brackets.
    let first: BTreeSet<u32> = s.trials.iter().filter(|t| t.trial_id < 117).map(|t| t.bracket.unwrap()).collect();
    assert_eq!(first, [0, 1, 2].into_iter().collect());
}

#[test]
fn summary_json_has_the_cli_shape() {
    let s = super::run_bohb_co(1, 1, 2, DET, &mut super::mem(), None).unwrap();
    let j = s.to_json();
    for key in ["best", "evaluations", "total_budget", "trials"] {
        assert!(j.get(key).is_some(), "{key}");
    }
    let t = &j["trials"][0];
    for key in ["params", "budget", "loss", "status"] {
        assert!(t.get(key).is_some(), "{key}");
    }
    assert_eq!(j["best"]["params"].as_object().unwrap().len(), 16);
}

/// A deterministic objective on the 1,100-point space with its optimum at (20, 110, 0.004).
fn ma_objective(_id: u64, c: &optimize::Config, budget: f64) -> Outcome {
    let f = |k: &str| c[k].as_f64().unwrap();
    let base = (f("short_window") - 20.0).powi(2) / 100.0
        + (f("long_window") - 110.0).powi(2) / 1000.0
        + (f("threshold") - 0.004).powi(2) * 1e4;
    Outcome::loss(base * (1.0 + 0.2 * (1.0 - budget)) - 3.0)
}

fn run_ma(
    opts: SearchOptions,
    store: &mut dyn TrialStore,
    capacity: usize,
    fail_after: Option<usize>,
) -> (optimize::Result<SearchSummary>, usize) {
    let space = optimize::Space::from_toml_file(&super::spaces_dir().join("ma-1100.toml")).unwrap();
    let settings = optimize::HyperbandSettings { min_budget: 0.05, max_budget: 1.0, eta: 3.0, iterations: 20 };
    let mut searcher = BracketSearch::bohb(space.clone(), settings, BohbSettings::default(), 7).unwrap();
    let calls = Rc::new(RefCell::new(0usize));
    let counter = calls.clone();
    let mut ev = InProcessEvaluator::new(capacity, move |id, c, b| {
        *counter.borrow_mut() += 1;
        ma_objective(id, c, b)
    })
    .shuffled(3);
    if let Some(k) = fail_after {
        ev = ev.fail_after(k);
    }
    let r = optimize(&space, &mut searcher, &mut ev, store, opts, &mut ());
    let n = *calls.borrow();
    (r, n)
}

#[test]
fn reusing_results_skips_repeats_without_changing_the_search() {
    let plain = run_ma(DET, &mut super::mem(), 2, None).0.unwrap();
    let reuse = SearchOptions { deterministic: true, reuse_results: true, streaming: false };
    let (cached, calls) = run_ma(reuse, &mut super::mem(), 2, None);
    let cached = cached.unwrap();
    let strip = |s: &SearchSummary| -> Vec<String> {
        s.trials
            .iter()
            .map(|t| format!("{} {} {} {:?}", t.trial_id, config_to_json(&t.config), t.budget, t.loss))
            .collect()
    };
    assert_eq!(strip(&cached), strip(&plain), "a deterministic objective gives the same trajectory");
    assert!(cached.reused > 0, "BOHB repeats configs on a small grid");
    assert_eq!(cached.evaluations + cached.reused, plain.evaluations);
    assert_eq!(calls as u64, cached.evaluations);
    assert!(cached.total_budget < plain.total_budget);
    for t in cached.trials.iter().filter(|t| t.reused_from.is_some()) {
        let orig = &cached.trials.iter().find(|o| Some(o.trial_id) == t.reused_from).unwrap();
        assert_eq!((&orig.config, orig.budget, orig.loss), (&t.config, t.budget, t.loss));
        assert!(orig.reused_from.is_none() && orig.trial_id < t.trial_id);
    }
    // Resume with reuse on is tested on every store in the store crate.
}

/// Streaming: the summary keeps no trial, the observer sees every one exactly as a kept run
/// keeps them, and the counts and the incumbent are the same; `planned` is the bracket
/// schedule's trial count.
#[test]
fn streaming_keeps_no_trial_and_the_observer_sees_them_all() {
    let kept = super::run_bohb_co(4, 6, 3, DET, &mut super::mem(), Some(1)).unwrap();
    let co = super::counting_ones(4);
    let space = co.space();
    let mut searcher = BracketSearch::bohb(space.clone(), super::co_settings(6), BohbSettings::default(), 4).unwrap();
    let mut ev = InProcessEvaluator::new(3, move |id, c, b| co.evaluate(id, c, b)).shuffled(1);
    let mut seen = Vec::new();
    let mut planned = None;
    let mut observer = |p: &optimize::Progress<'_>| {
        seen.push(p.trial.clone());
        planned = p.planned;
    };
    let streaming = SearchOptions { streaming: true, ..DET };
    let s = optimize(&space, &mut searcher, &mut ev, &mut optimize::NullStore, streaming, &mut observer).unwrap();
    assert!(s.trials.is_empty());
    assert_eq!(seen, kept.trials, "the same trials in the same order");
    assert_eq!(
        (s.evaluations, s.total_budget.to_bits(), &s.best),
        (kept.evaluations, kept.total_budget.to_bits(), &kept.best)
    );
    assert_eq!(planned, Some(kept.trials.len() as u64), "{} trials ran", kept.trials.len());
}

/// A grid's plan is its size (or the evaluation cap), which is what it runs without
/// constraints.
#[test]
fn a_grid_plans_its_size() {
    let space = optimize::Space::from_toml_str(
        r#"
        [[parameter]]
        name = "a"
        type = "discrete"
        min = 1
        max = 7
        step = 1
        [[parameter]]
        name = "b"
        type = "categorical"
        choices = ["x", "y", "z"]
        "#,
    )
    .unwrap();
    for cap in [None, Some(5)] {
        let mut grid = optimize::GridSearch::new(space.clone(), 1.0, cap).unwrap();
        assert_eq!(optimize::Searcher::planned(&grid), Some(cap.unwrap_or(21)));
        let mut ev = InProcessEvaluator::new(2, |_, c: &optimize::Config, _| Outcome::loss(c["a"].as_f64().unwrap()));
        let s = optimize(&space, &mut grid, &mut ev, &mut super::mem(), DET, &mut ()).unwrap();
        assert_eq!(s.trials.len() as u64, cap.unwrap_or(21));
    }
}

/// An evaluator whose every submitted trial is done at once, and says so (`has_completed`),
/// as a pool does for the rest of a chunk of results.
struct AllAtOnce {
    inner: InProcessEvaluator,
    in_flight: usize,
}

impl optimize::Evaluator for AllAtOnce {
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn submit(&mut self, id: u64, c: &optimize::Config, b: f64) -> optimize::Result<()> {
        self.in_flight += 1;
        self.inner.submit(id, c, b)
    }
    fn next_completed(&mut self) -> optimize::Result<optimize::Completion> {
        self.in_flight -= 1;
        self.inner.next_completed()
    }
    fn has_completed(&self) -> bool {
        self.in_flight > 0
    }
}

/// A store that counts the trials in each `record_suggested` call.
struct Counting {
    inner: optimize::MemoryStore,
    batches: Rc<RefCell<Vec<usize>>>,
}

impl TrialStore for Counting {
    fn open_study(
        &mut self,
        identity: &serde_json::Value,
        visit: &mut dyn FnMut(optimize::TrialRecord) -> optimize::Result<()>,
    ) -> optimize::Result<()> {
        self.inner.open_study(identity, visit)
    }
    fn record_suggested(&mut self, trials: &[(optimize::Trial, u64)]) -> optimize::Result<()> {
        self.batches.borrow_mut().push(trials.len());
        self.inner.record_suggested(trials)
    }
    fn record_completed(&mut self, c: &optimize::Completion, r: Option<u64>, f: Option<u64>) -> optimize::Result<()> {
        self.inner.record_completed(c, r, f)
    }
    fn record_fed(&mut self, fed: &[(u64, u64)]) -> optimize::Result<()> {
        self.inner.record_fed(fed)
    }
}

/// In async mode the results already at hand are all fed before the searcher is asked again,
/// so the capacity they free is suggested and recorded in one batch, not one trial at a time.
#[test]
fn async_mode_refills_the_capacity_results_free_in_one_batch() {
    let space = optimize::Space::from_toml_str(
        "[[parameter]]\nname = \"a\"\ntype = \"discrete\"\nmin = 1\nmax = 100\nstep = 1\n",
    )
    .unwrap();
    let mut grid = optimize::GridSearch::new(space.clone(), 1.0, None).unwrap();
    let inner = InProcessEvaluator::new(8, |_, c: &optimize::Config, _| Outcome::loss(c["a"].as_f64().unwrap()));
    let mut ev = AllAtOnce { inner, in_flight: 0 };
    let batches = Rc::new(RefCell::new(Vec::new()));
    let mut store = Counting { inner: optimize::MemoryStore::new(), batches: batches.clone() };
    let async_mode = SearchOptions { deterministic: false, ..DET };
    let s = optimize(&space, &mut grid, &mut ev, &mut store, async_mode, &mut ()).unwrap();
    assert_eq!(s.evaluations, 100);
    assert_eq!(s.best.unwrap().loss, 1.0);
    let b = batches.borrow();
    assert_eq!(b.iter().sum::<usize>(), 100);
    assert_eq!(b[..b.len() - 1], vec![8; b.len() - 1][..], "{b:?}");
    assert_eq!(b.last(), Some(&4), "{b:?}");
}
