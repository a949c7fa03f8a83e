//! The optimizer's store and resume tests, run on every store (one body, each place).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use optimize::{
    BohbSettings, BracketSearch, Error, InProcessEvaluator, MemoryStore, Outcome, Progress, SearchOptions,
    SearchSummary, TrialStatus, TrialStore, config_to_json, optimize,
};

use crate::Place;

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
fn every_store_records_every_trial_with_status() {
    for place in Place::all() {
        let co = crate::counting_ones(2);
        let space = co.space();
        let mut searcher = BracketSearch::hyperband(space.clone(), crate::co_settings(2), 2).unwrap();
        let mut ev = InProcessEvaluator::new(4, move |id, c, b| {
            if id % 5 == 1 {
                Outcome::Crashed { message: format!("worker died on {id}") }
            } else {
                co.evaluate(id, c, b)
            }
        });
        let mut seen = 0;
        let mut obs = |p: &Progress<'_>| {
            seen += 1;
            assert_eq!(p.evaluations, seen);
        };
        let s = {
            let mut store = place.open();
            optimize(&space, &mut searcher, &mut ev, &mut *store, SearchOptions::default(), &mut obs).unwrap()
        };
        let identity = optimize::study_identity(&space, &searcher, SearchOptions::default());
        let records = place.open().load_study(&identity).unwrap();
        assert_eq!(records.len() as u64, s.evaluations, "{}", place.name());
        let crashed: Vec<_> = records
            .iter()
            .filter(|r| matches!(r.completion.as_ref().unwrap().outcome, Outcome::Crashed { .. }))
            .collect();
        assert!(!crashed.is_empty());
        assert!(crashed.iter().all(|r| r.trial_id % 5 == 1));
        assert!(crashed.iter().all(|r| matches!(&r.completion.as_ref().unwrap().outcome,
            Outcome::Crashed { message } if *message == format!("worker died on {}", r.trial_id))));
        let summary_crashed = s.trials.iter().filter(|t| t.status == TrialStatus::Crashed).count();
        assert_eq!(crashed.len(), summary_crashed, "{}", place.name());
    }
}

fn counting_searcher(seed: u64, iterations: usize) -> (optimize::Space, BracketSearch, optimize::CountingOnes) {
    let co = crate::counting_ones(seed);
    let space = co.space();
    let s = BracketSearch::bohb(space.clone(), crate::co_settings(iterations), BohbSettings::default(), seed).unwrap();
    (space, s, co)
}

/// Run against `store`, dying after `fail_after` completions; records the evaluated trial ids.
fn run_into(
    store: &mut dyn TrialStore,
    opts: SearchOptions,
    capacity: usize,
    fail_after: Option<usize>,
    evaluated: Rc<RefCell<Vec<u64>>>,
) -> optimize::Result<SearchSummary> {
    let (space, mut searcher, co) = counting_searcher(8, 5);
    let mut ev = InProcessEvaluator::new(capacity, move |id, c, b| {
        evaluated.borrow_mut().push(id);
        co.evaluate(id, c, b)
    })
    .shuffled(capacity as u64);
    if let Some(k) = fail_after {
        ev = ev.fail_after(k);
    }
    optimize(&space, &mut searcher, &mut ev, store, opts, &mut ())
}

/// Completions recorded but not yet fed when the run died are recovered, not replayed: the
/// replayed count is the number of fed trials. The batches of this study (deterministic BOHB on
/// counting-ones, 5 brackets) have sizes 81, 27, 9, 3, 1, 27, ...; return how many of the
/// first `k` completions belong to the unfinished batch.
fn pending_unfed(k: usize) -> usize {
    let mut done = 0;
    for size in [81usize, 27, 9, 3, 1, 27, 9, 3, 1, 9, 3, 1, 6, 2, 5] {
        if done + size > k {
            return k - done;
        }
        done += size;
    }
    0
}

#[test]
fn resume_in_deterministic_mode_matches_an_uninterrupted_run() {
    let uninterrupted = run_into(&mut MemoryStore::new(), DET, 4, None, Rc::default()).unwrap();
    for kill_at in [1usize, 37, 121, 150, 180] {
        for place in Place::all() {
            let first = Rc::new(RefCell::new(Vec::new()));
            {
                let Err(e) = run_into(&mut *place.open(), DET, 4, Some(kill_at), first.clone()) else {
                    panic!("the run should die")
                };
                assert!(matches!(e, Error::Evaluator(_)), "{e}");
            }
            let second = Rc::new(RefCell::new(Vec::new()));
            let mut store = place.open();
            // Resume with a different worker count: deterministic mode does not care.
            let resumed = run_into(&mut *store, DET, 3, None, second.clone()).unwrap();
            let what = format!("{} killed after {kill_at}", place.name());
            assert_eq!(fingerprint(&resumed), fingerprint(&uninterrupted), "{what}");
            assert_eq!(resumed.replayed as usize, kill_at.min(first.borrow().len()) - pending_unfed(kill_at), "{what}");
            let completed_first: BTreeSet<u64> = first.borrow()[..kill_at].iter().copied().collect();
            assert!(second.borrow().iter().all(|id| !completed_first.contains(id)), "{what}: a trial was re-evaluated");
            if kill_at == 150 {
                drop(store);
                // Opening a finished study replays it and evaluates nothing.
                let third = Rc::new(RefCell::new(Vec::new()));
                let again = run_into(&mut *place.open(), DET, 2, None, third.clone()).unwrap();
                assert_eq!(fingerprint(&again), fingerprint(&uninterrupted), "{what}");
                assert!(third.borrow().is_empty());
                assert_eq!(again.replayed, again.evaluations);
            }
        }
    }
}

#[test]
fn resume_in_async_mode_continues_without_reevaluating() {
    for place in Place::all() {
        let first = Rc::new(RefCell::new(Vec::new()));
        run_into(&mut *place.open(), SearchOptions::default(), 6, Some(100), first.clone()).unwrap_err();
        let second = Rc::new(RefCell::new(Vec::new()));
        let s = run_into(&mut *place.open(), SearchOptions::default(), 6, None, second.clone()).unwrap();
        assert_eq!(s.replayed, 100, "{}", place.name());
        let done_first: BTreeSet<u64> = first.borrow()[..100].iter().copied().collect();
        assert!(second.borrow().iter().all(|id| !done_first.contains(id)));
        // Every trial ran exactly once overall, counting the in-flight ones lost at the kill.
        let ids: Vec<u64> = s.trials.iter().map(|t| t.trial_id).collect::<BTreeSet<_>>().into_iter().collect();
        assert_eq!(ids.len() as u64, s.evaluations);
        assert_eq!(s.evaluations as usize, 121 + 40 + 13 + 8 + 5);
    }
}

#[test]
fn a_resume_with_different_settings_is_refused() {
    for place in Place::all() {
        run_into(&mut *place.open(), DET, 2, Some(10), Rc::default()).unwrap_err();
        let (space, _, co) = counting_searcher(8, 5);
        let mut other = BracketSearch::bohb(space.clone(), crate::co_settings(5), BohbSettings::default(), 9).unwrap();
        let mut ev = InProcessEvaluator::new(2, move |id, c, b| co.evaluate(id, c, b));
        if let Place::Postgres(_) = place {
            // PostgreSQL holds many studies: another identity is another study, unless named.
            let url = place.url();
            let mut named = store::PgStore::connect(&store::PgTarget::parse(&url).unwrap(), Some("s"), None).unwrap();
            let (space2, mut first, co2) = counting_searcher(8, 5);
            let mut ev2 = InProcessEvaluator::new(2, move |id, c, b| co2.evaluate(id, c, b)).fail_after(3);
            optimize(&space2, &mut first, &mut ev2, &mut named, DET, &mut ()).unwrap_err();
            drop(named);
            let mut named = store::PgStore::connect(&store::PgTarget::parse(&url).unwrap(), Some("s"), None).unwrap();
            let e = optimize(&space, &mut other, &mut ev, &mut named, DET, &mut ()).unwrap_err();
            assert!(matches!(e, Error::StudyMismatch(_)), "{e}");
            assert!(e.to_string().contains("searcher.seed: stored 8, requested 9"), "{e}");
            continue;
        }
        let e = optimize(&space, &mut other, &mut ev, &mut *place.open(), DET, &mut ()).unwrap_err();
        assert!(matches!(e, Error::StudyMismatch(_)), "{e}");
        assert!(e.to_string().contains("searcher.seed: stored 8, requested 9"), "{e}");
        let (space, mut same, co) = counting_searcher(8, 5);
        let mut ev = InProcessEvaluator::new(2, move |id, c, b| co.evaluate(id, c, b));
        let e =
            optimize(&space, &mut same, &mut ev, &mut *place.open(), SearchOptions::default(), &mut ()).unwrap_err();
        assert!(e.to_string().contains("mode differs"), "{e}");
    }
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
) -> optimize::Result<SearchSummary> {
    let space = optimize::Space::from_toml_file(&crate::spaces_dir().join("ma-1100.toml")).unwrap();
    let settings = optimize::HyperbandSettings { min_budget: 0.05, max_budget: 1.0, eta: 3.0, iterations: 20 };
    let mut searcher = BracketSearch::bohb(space.clone(), settings, BohbSettings::default(), 7).unwrap();
    let mut ev = InProcessEvaluator::new(capacity, ma_objective).shuffled(3);
    if let Some(k) = fail_after {
        ev = ev.fail_after(k);
    }
    optimize(&space, &mut searcher, &mut ev, store, opts, &mut ())
}

#[test]
fn a_resume_with_reused_results_ends_where_an_uninterrupted_run_ends() {
    let reuse = SearchOptions { deterministic: true, reuse_results: true, streaming: false };
    let cached = run_ma(reuse, &mut MemoryStore::new(), 2, None).unwrap();
    assert!(cached.reused > 0, "BOHB repeats configs on a small grid");
    for place in Place::all() {
        assert!(run_ma(reuse, &mut *place.open(), 4, Some(60)).is_err());
        let resumed = run_ma(reuse, &mut *place.open(), 1, None).unwrap();
        assert_eq!(fingerprint(&resumed), fingerprint(&cached), "{}", place.name());
        assert_eq!(resumed.reused, cached.reused);
    }
}

#[test]
fn crashed_and_nonfinite_trials_survive_a_resume_as_failures() {
    for place in Place::all() {
        let run = |fail_after: Option<usize>| {
            let (space, mut searcher, co) = counting_searcher(5, 3);
            let mut ev = InProcessEvaluator::new(3, move |id, c, b| match id % 4 {
                1 => Outcome::Crashed { message: format!("injected {id}") },
                2 if id % 8 == 2 => Outcome::loss(f64::INFINITY),
                _ => co.evaluate(id, c, b),
            })
            .shuffled(9);
            if let Some(k) = fail_after {
                ev = ev.fail_after(k);
            }
            optimize(&space, &mut searcher, &mut ev, &mut *place.open(), SearchOptions::default(), &mut ())
        };
        assert!(run(Some(50)).is_err());
        let s = run(None).unwrap();
        assert_eq!(s.replayed, 50, "{}", place.name());
        for t in &s.trials {
            match t.trial_id % 4 {
                1 => assert_eq!(
                    (t.status, t.message.clone()),
                    (TrialStatus::Crashed, Some(format!("injected {}", t.trial_id)))
                ),
                2 if t.trial_id % 8 == 2 => assert_eq!((t.status, t.loss), (TrialStatus::NonFinite, None)),
                _ => assert_eq!(t.status, TrialStatus::Ok),
            }
        }
    }
}
