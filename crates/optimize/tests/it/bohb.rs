//! BOHB's model (KDE start, split sizes, faults avoided) and its search quality on
//! counting-ones.

use optimize::{
    BohbModel, BohbSettings, Kde, RandomSearch, SearchOptions, Searcher, optimize, split_sizes, truncated_std_normal,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

#[test]
fn split_sizes_follow_hpbandster() {
    // (n, min_points, expected (good, bad)); d = 3 so min_points = 4.
    for (n, m, want) in [
        (4, 4, (4, 0)),
        (7, 4, (4, 3)),
        (8, 4, (4, 4)),
        (20, 4, (4, 16)),
        (40, 4, (6, 34)),
        (100, 4, (15, 85)),
        (101, 4, (15, 85)),
        (200, 17, (30, 170)),
    ] {
        assert_eq!(split_sizes(n, m, 15), want, "n = {n}");
    }
}

#[test]
fn kde_starts_only_at_two_d_plus_one_points_on_a_budget() {
    for d in [1usize, 3, 6] {
        let mut model = BohbModel::new(BohbSettings::default(), vec![0; d]);
        let mut rng = ChaCha12Rng::seed_from_u64(d as u64);
        for n in 1..=2 * (d + 1) {
            assert!(model.model_budget().is_none(), "d = {d}: model before {n} points");
            let v: Vec<f64> = (0..d).map(|_| rng.random()).collect();
            // Failures count as bad points, so they help reach the threshold too.
            let loss = if n % 3 == 0 { None } else { Some(rng.random::<f64>()) };
            model.observe(1.0, v, loss);
        }
        assert_eq!(model.model_budget(), Some(1.0), "d = {d}: model at 2(d+1) points");
        let pair = model.model(1.0).unwrap();
        assert_eq!((pair.good.data().len(), pair.bad.data().len()), (d + 1, d + 1));
    }
}

#[test]
fn the_model_uses_the_largest_budget_and_drops_smaller_results() {
    let mut model = BohbModel::new(BohbSettings::default(), vec![0, 0]);
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    for _ in 0..6 {
        model.observe(0.5, vec![rng.random(), rng.random()], Some(rng.random()));
    }
    assert_eq!(model.model_budget(), Some(0.5));
    for _ in 0..6 {
        model.observe(1.0, vec![rng.random(), rng.random()], Some(rng.random()));
    }
    assert_eq!(model.model_budget(), Some(1.0));
    model.observe(0.5, vec![0.1, 0.2], Some(0.0));
    assert_eq!(model.observations(0.5), 6, "a result below the model's budget is dropped");
}

#[test]
fn bandwidths_follow_the_normal_reference_rule() {
    let data = vec![vec![0.0, 0.0], vec![1.0, 1.0], vec![0.5, 1.0], vec![0.5, 0.0]];
    let kde = Kde::fit(data, &[0, 2], 1e-3);
    let sd = (0.125f64).sqrt(); // population sd of 0, 1, .5, .5
    let want0 = 1.06 * sd * 4f64.powf(-1.0 / 6.0);
    assert!((kde.bandwidths()[0] - want0).abs() < 1e-12);
    assert!(kde.bandwidths()[1] <= 0.5, "categorical bandwidth capped at (c-1)/c");
    // All-equal data: clipped at min_bandwidth, and a single observed level stays finite.
    let flat = Kde::fit(vec![vec![0.3, 1.0]; 5], &[0, 3], 1e-3);
    assert_eq!(flat.bandwidths(), &[1e-3, 1e-3]);
    let p = flat.pdf(&[0.3, 0.0]);
    assert!(p.is_finite() && p > 0.0, "{p}");
}

#[test]
fn truncated_normal_stays_in_bounds() {
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    for (a, b) in [(-1.0, 1.0), (-1e-3, 1e3), (5.0, 9.0), (-40.0, -30.0), (0.0, 1e-9)] {
        for _ in 0..200 {
            let z = truncated_std_normal(&mut rng, a, b);
            assert!(z >= a && z <= b, "{z} not in [{a}, {b}]");
        }
    }
}

fn bohb_and_random(seed: u64, iterations: usize) -> (f64, f64, f64) {
    let s = super::run_bohb_co(
        seed,
        iterations,
        4,
        SearchOptions { deterministic: true, ..SearchOptions::default() },
        &mut super::mem(),
        None,
    )
    .unwrap();
    let co = super::counting_ones(seed);
    let space = co.space();
    let evals = s.total_budget.floor() as u64;
    let mut random = RandomSearch::new(space.clone(), 1.0, Some(evals), seed).unwrap();
    assert_eq!(random.max_budget(), 1.0);
    let mut ev = optimize::InProcessEvaluator::new(4, move |id, c, b| co.evaluate(id, c, b));
    let r = optimize(&space, &mut random, &mut ev, &mut super::mem(), SearchOptions::default(), &mut ()).unwrap();
    assert!(r.total_budget <= s.total_budget);
    (s.best.unwrap().loss, r.best.unwrap().loss, s.total_budget)
}

#[test]
fn bohb_beats_random_search_at_equal_budget_on_counting_ones() {
    let (mut bohb, mut random) = (0.0, 0.0);
    for seed in 0..10 {
        let (b, r, _) = bohb_and_random(seed, 10);
        bohb += b / 10.0;
        random += r / 10.0;
    }
    assert!(bohb < random, "mean best: BOHB {bohb}, random {random}");
}

#[test]
fn bohb_gets_within_one_of_the_optimum_in_bounded_brackets() {
    // Measured (examples/counting_ones.rs): seeds 3, 4, 8 first reach it in brackets 9, 16, 16.
    for seed in [3, 4, 8] {
        let s = super::run_bohb_co(
            seed,
            30,
            4,
            SearchOptions { deterministic: true, ..SearchOptions::default() },
            &mut super::mem(),
            None,
        )
        .unwrap();
        let optimum = super::counting_ones(seed).optimum();
        let first = s
            .trials
            .iter()
            .find(|t| t.budget == 1.0 && t.loss.is_some_and(|l| l <= optimum + 1.0))
            .and_then(|t| t.bracket);
        assert!(first.is_some_and(|b| b < 30), "seed {seed}: best {:?}", s.best.map(|b| b.loss));
        assert!(s.best.unwrap().loss <= optimum + 1.0);
    }
}
