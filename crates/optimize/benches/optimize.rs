//! Criterion benchmarks for the search machinery's own overhead (no objective cost):
//!
//! - `bohb_suggest_d16`: one model-based BOHB suggestion on counting-ones (N_cat = N_cont = 8)
//!   after 4 brackets of results, i.e. 64 candidates scored against both KDEs.
//! - `bohb_10_brackets_d16`: a whole 10-bracket BOHB run on counting-ones with the in-process
//!   evaluator, the shape HpBandSter needed 16 s for on 1 worker (design notes, anchors).
//! - `config_at_5m`: one index → config decode on the 5,400,000-point momentum space.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-optimize cargo bench -p optimize --bench optimize`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use optimize::{
    BohbSettings, BracketSearch, CountingOnes, HyperbandSettings, InProcessEvaluator, MemoryStore, Mode, SearchOptions,
    Searcher, Space, Suggestion, optimize,
};

fn settings(iterations: usize) -> HyperbandSettings {
    HyperbandSettings { min_budget: 1.0 / 81.0, max_budget: 1.0, eta: 3.0, iterations }
}

fn benches(c: &mut Criterion) {
    let co = CountingOnes { n_cat: 8, n_cont: 8, max_draws: 729, seed: 1 };
    let space = co.space();

    // Feed 4 brackets of results, then time suggestions from the fitted model.
    let mut warm = BracketSearch::bohb(space.clone(), settings(100), BohbSettings::default(), 1).unwrap();
    for _ in 0..200 {
        match warm.suggest(Mode::Synchronous).unwrap() {
            Suggestion::Trial(t) => {
                let outcome = co.evaluate(t.id, &t.config, t.budget);
                warm.observe(t.id, &outcome).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(warm.model().unwrap().model_budget().is_some());
    c.bench_function("bohb_suggest_d16", |b| {
        b.iter_batched(
            || warm.clone(),
            |mut s| black_box(s.suggest(Mode::Async).unwrap()),
            criterion::BatchSize::SmallInput,
        )
    });

    c.bench_function("bohb_10_brackets_d16", |b| {
        b.iter(|| {
            let mut s = BracketSearch::bohb(space.clone(), settings(10), BohbSettings::default(), 1).unwrap();
            let mut ev = InProcessEvaluator::new(1, move |id, cfg, bud| co.evaluate(id, cfg, bud));
            let opts = SearchOptions { deterministic: true, reuse_results: false, streaming: false };
            black_box(optimize(&space, &mut s, &mut ev, &mut MemoryStore::new(), opts, &mut ()).unwrap())
        })
    });

    let momentum =
        Space::from_toml_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spaces/momentum-5m.toml"))
            .unwrap();
    let mut i = 0u128;
    c.bench_function("config_at_5m", |b| {
        b.iter(|| {
            i = (i + 7_919) % 5_400_000;
            black_box(momentum.config_at(i).unwrap())
        })
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(group);
