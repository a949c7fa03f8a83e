//! Grid, random and Hyperband searchers: order, no repeats, schedules, failures.

use std::collections::{BTreeMap, BTreeSet};

use optimize::{
    BracketSearch, Config, GridSearch, HyperbandSettings, InProcessEvaluator, Mode, Outcome, RandomSearch,
    SearchOptions, Searcher, Space, Suggestion, TrialStatus, config_to_json, optimize,
};

fn ma36() -> Space {
    Space::from_toml_file(&super::spaces_dir().join("ma-36.toml")).unwrap()
}

fn drain(searcher: &mut dyn Searcher) -> Vec<Config> {
    let mut out = Vec::new();
    while let Suggestion::Trial(t) = searcher.suggest(Mode::Async).unwrap() {
        out.push(t.config);
    }
    out
}

#[test]
fn grid_walks_the_bijection_and_respects_the_cap() {
    let space = ma36();
    let all = drain(&mut GridSearch::new(space.clone(), 1.0, None).unwrap());
    assert_eq!(all, space.grid().collect::<Vec<_>>());
    assert_eq!(drain(&mut GridSearch::new(space.clone(), 1.0, Some(5)).unwrap()).len(), 5);
    let cont = Space::new(vec![optimize::Param::continuous("x", 0.0, 1.0, None, false)], &[]).unwrap();
    assert!(GridSearch::new(cont, 1.0, None).unwrap_err().to_string().contains("finite space"));
}

#[test]
fn random_is_seeded_without_repeats_and_exhausts_the_grid() {
    let space = ma36();
    let a = drain(&mut RandomSearch::new(space.clone(), 1.0, None, 1).unwrap());
    let keys: BTreeSet<String> = a.iter().map(|c| config_to_json(c).to_string()).collect();
    assert_eq!((a.len(), keys.len()), (36, 36));
    assert_eq!(a, drain(&mut RandomSearch::new(space.clone(), 1.0, None, 1).unwrap()));
    assert_ne!(a, drain(&mut RandomSearch::new(space.clone(), 1.0, None, 2).unwrap()));
    assert_ne!(a, space.grid().collect::<Vec<_>>(), "not grid order");
    let m = Space::from_toml_file(&super::spaces_dir().join("momentum-5m.toml")).unwrap();
    let b = drain(&mut RandomSearch::new(m, 1.0, Some(2000), 9).unwrap());
    let keys: BTreeSet<String> = b.iter().map(|c| config_to_json(c).to_string()).collect();
    assert_eq!(keys.len(), 2000);
}

/// Run Hyperband with `objective` and return per-(bracket, stage) trial counts and the trials.
fn hyperband_run(
    min: f64,
    max: f64,
    iterations: usize,
    objective: impl FnMut(u64, &Config, f64) -> Outcome + 'static,
) -> (BTreeMap<(u32, u32), usize>, optimize::SearchSummary) {
    let space = super::counting_ones(0).space();
    let mut s = BracketSearch::hyperband(
        space.clone(),
        HyperbandSettings { min_budget: min, max_budget: max, eta: 3.0, iterations },
        5,
    )
    .unwrap();
    let mut ev = InProcessEvaluator::new(3, objective).shuffled(11);
    let summary = optimize(&space, &mut s, &mut ev, &mut super::mem(), SearchOptions::default(), &mut ()).unwrap();
    let mut counts = BTreeMap::new();
    for t in &summary.trials {
        *counts.entry((t.bracket.unwrap(), t.stage.unwrap())).or_insert(0) += 1;
    }
    (counts, summary)
}

#[test]
fn hyperband_runs_hpbandsters_brackets() {
    let co = super::counting_ones(0);
    let (counts, summary) = hyperband_run(9.0, 243.0, 5, move |id, c, b| co.evaluate(id, c, b / 243.0));
    let got: Vec<usize> = counts.values().copied().collect();
    // HpBandSter's five brackets (iterations 0..4: 27-9-3-1, 9-3-1, 6-2, 4, 27-9-3-1); async
    // mode opens those with the most stages first.
    assert_eq!(got, [27, 9, 3, 1, 27, 9, 3, 1, 9, 3, 1, 6, 2, 4]);
    let budgets: BTreeSet<u64> = summary.trials.iter().map(|t| t.budget as u64).collect();
    assert_eq!(budgets, [9, 27, 81, 243].into_iter().collect());
    assert_eq!(summary.best.unwrap().budget, 243.0);
}

#[test]
fn failures_are_recorded_and_never_promoted() {
    // Every third trial crashes, every seventh returns NaN.
    let co = super::counting_ones(0);
    let (counts, summary) = hyperband_run(1.0 / 27.0, 1.0, 4, move |id, c, b| match id % 21 {
        x if x % 3 == 0 => Outcome::Crashed { message: format!("injected crash in trial {id}") },
        x if x % 7 == 0 => Outcome::loss(f64::NAN),
        _ => co.evaluate(id, c, b),
    });
    let failed: BTreeSet<(u32, u32, String)> = summary
        .trials
        .iter()
        .filter(|t| t.status != TrialStatus::Ok)
        .map(|t| (t.bracket.unwrap(), t.stage.unwrap(), config_to_json(&t.config).to_string()))
        .collect();
    assert!(
        summary
            .trials
            .iter()
            .any(|t| t.status == TrialStatus::Crashed && t.message.as_deref().unwrap().contains("injected"))
    );
    assert!(summary.trials.iter().any(|t| t.status == TrialStatus::NonFinite && t.loss.is_none()));
    for t in summary.trials.iter().filter(|t| t.stage.unwrap() > 0) {
        let prev = (t.bracket.unwrap(), t.stage.unwrap() - 1, config_to_json(&t.config).to_string());
        assert!(!failed.contains(&prev), "failed config promoted");
    }
    // Promotion counts never exceed the number of finite results of the previous stage.
    for ((b, s), n) in &counts {
        if *s > 0 {
            let ok_prev = summary
                .trials
                .iter()
                .filter(|t| t.bracket == Some(*b) && t.stage == Some(s - 1) && t.loss.is_some())
                .count();
            assert!(*n <= ok_prev);
        }
    }
}

#[test]
fn an_all_crashing_objective_ends_without_hanging() {
    let (counts, summary) = hyperband_run(1.0 / 9.0, 1.0, 3, |_, _, _| Outcome::Crashed { message: "boom".into() });
    // Only stage 0 of each bracket runs: 9 + 3 + 3.
    assert_eq!(counts.values().sum::<usize>(), 15);
    assert!(counts.keys().all(|(_, s)| *s == 0));
    assert_eq!(summary.best, None);
    assert!(summary.trials.iter().all(|t| t.status == TrialStatus::Crashed));
}

#[test]
fn wait_and_done_do_not_change_state() {
    let space = super::counting_ones(0).space();
    let settings = HyperbandSettings { min_budget: 1.0 / 3.0, max_budget: 1.0, eta: 3.0, iterations: 1 };
    let mut s = BracketSearch::hyperband(space, settings, 1).unwrap();
    let mut ids = Vec::new();
    while let Suggestion::Trial(t) = s.suggest(Mode::Synchronous).unwrap() {
        ids.push(t.id);
    }
    assert_eq!(ids.len(), 3);
    assert_eq!(s.suggest(Mode::Synchronous).unwrap(), Suggestion::Wait);
    assert_eq!(s.suggest(Mode::Async).unwrap(), Suggestion::Wait);
    for id in ids {
        s.observe(id, &Outcome::loss(id as f64)).unwrap();
    }
    let Suggestion::Trial(t) = s.suggest(Mode::Synchronous).unwrap() else { panic!("stage 1 expected") };
    assert_eq!((t.id, t.stage, t.budget), (3, Some(1), 1.0));
    s.observe(3, &Outcome::loss(0.0)).unwrap();
    assert_eq!(s.suggest(Mode::Synchronous).unwrap(), Suggestion::Done);
    assert!(s.observe(3, &Outcome::loss(0.0)).is_err(), "a second result for a trial is an error");
}

#[test]
fn search_specs_build_every_searcher() {
    let space = ma36();
    // Loss is minimal at short 10, long 45, threshold 0.03.
    let objective = |_: u64, c: &Config, b: f64| {
        let f = |k: &str| c[k].as_f64().unwrap();
        Outcome::loss(
            (f("short_window") - 10.0).abs()
                + (f("long_window") - 45.0).abs() / 15.0
                + (f("threshold") - 0.03).abs() * 50.0
                + (1.0 - b),
        )
    };
    for (name, evaluations, want) in
        [("grid", None, 36u64), ("random", Some(10), 10), ("hyperband", None, 0), ("bohb", None, 0)]
    {
        let spec = optimize::SearchSpec {
            kind: name.parse().unwrap(),
            min_budget: 1.0 / 9.0,
            iterations: 3,
            evaluations,
            ..optimize::SearchSpec::default()
        };
        let mut searcher = spec.build(&space).unwrap();
        let mut ev = InProcessEvaluator::new(2, objective);
        let s =
            optimize(&space, &mut *searcher, &mut ev, &mut super::mem(), SearchOptions::default(), &mut ()).unwrap();
        if want > 0 {
            assert_eq!(s.evaluations, want, "{name}");
        } else {
            assert_eq!(s.evaluations, 13 + 4 + 3, "{name}: brackets [9,3,1], [3,1], [3]");
        }
        assert_eq!(s.best.as_ref().unwrap().budget, 1.0);
        if name == "grid" {
            let best = &s.best.unwrap().config;
            assert_eq!(
                optimize::render_pairs(best),
                optimize::render_pairs(&space.config_at(space.index_of(best).unwrap()).unwrap())
            );
            assert_eq!(
                (best["short_window"].render(), best["long_window"].render(), best["threshold"].render()),
                ("10".into(), "45".into(), "0.03".into())
            );
        }
    }
    let e = "tpe".parse::<optimize::SearchKind>().unwrap_err().to_string();
    assert!(e.contains("unknown search `tpe`"), "{e}");
}

mod worker_count {
    use optimize::{BohbSettings, BracketSearch, InProcessEvaluator, SearchOptions, config_to_json, optimize};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Deterministic mode: same seed, same trials, whatever the worker count and completion order.
        #[test]
        fn results_do_not_depend_on_worker_count(seed in 0u64..1000, capacity in 2usize..12, order in 0u64..1000) {
            let run = |capacity: usize, order: Option<u64>| {
                let co = optimize::CountingOnes { n_cat: 2, n_cont: 2, max_draws: 27, seed };
                let space = co.space();
                let hb = optimize::HyperbandSettings { min_budget: 1.0 / 9.0, max_budget: 1.0, eta: 3.0, iterations: 4 };
                let mut s = BracketSearch::bohb(space.clone(), hb, BohbSettings::default(), seed).unwrap();
                let mut ev = InProcessEvaluator::new(capacity, move |id, c, b| co.evaluate(id, c, b));
                if let Some(o) = order {
                    ev = ev.shuffled(o);
                }
                let opts = SearchOptions { deterministic: true, reuse_results: false, streaming: false };
                let sum = optimize(&space, &mut s, &mut ev, &mut optimize::MemoryStore::new(), opts, &mut ()).unwrap();
                sum.trials.iter().map(|t| format!("{} {} {} {:?}", t.trial_id, config_to_json(&t.config), t.budget, t.loss)).collect::<Vec<_>>()
            };
            prop_assert_eq!(run(1, None), run(capacity, Some(order)));
        }
    }
}

mod random_permutation {
    use optimize::{Mode, Param, RandomSearch, Searcher, Space, Suggestion};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random search visits every grid point exactly once, for any grid size and seed.
        #[test]
        fn random_search_is_a_permutation_of_the_grid(n in 2i64..3000, seed in any::<u64>()) {
            let space = Space::new(vec![Param::discrete("i", 0, n - 1, 1)], &[]).unwrap();
            let mut r = RandomSearch::new(space.clone(), 1.0, None, seed).unwrap();
            let mut seen = Vec::new();
            while let Suggestion::Trial(t) = r.suggest(Mode::Async).unwrap() {
                seen.push(space.index_of(&t.config).unwrap());
            }
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n as u128).collect::<Vec<_>>());
        }
    }
}
