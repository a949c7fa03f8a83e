//! Integration tests for the optimize crate: one binary, one module per area.

mod bohb;
mod diagnostics;
mod idle;
mod optimizer;
mod schedule;
mod searchers;
mod space;

use optimize::{
    BohbSettings, BracketSearch, CountingOnes, HyperbandSettings, InProcessEvaluator, MemoryStore, SearchOptions,
    SearchSummary, TrialStore, optimize,
};

/// The workspace's `spaces/` directory.
fn spaces_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spaces")
}

/// Counting-ones with N_cat = N_cont = 8 and 729 draws at budget 1.
fn counting_ones(seed: u64) -> CountingOnes {
    CountingOnes { n_cat: 8, n_cont: 8, max_draws: 729, seed }
}

/// HpBandSter's counting-ones settings: budgets 1/81 … 1 (9 … 729 draws), eta 3.
fn co_settings(iterations: usize) -> HyperbandSettings {
    HyperbandSettings { min_budget: 1.0 / 81.0, max_budget: 1.0, eta: 3.0, iterations }
}

/// The one place tests run BOHB on counting-ones.
fn run_bohb_co(
    seed: u64,
    iterations: usize,
    capacity: usize,
    opts: SearchOptions,
    store: &mut dyn TrialStore,
    evaluator_seed: Option<u64>,
) -> optimize::Result<SearchSummary> {
    let co = counting_ones(seed);
    let space = co.space();
    let mut searcher = BracketSearch::bohb(space.clone(), co_settings(iterations), BohbSettings::default(), seed)?;
    let mut ev = InProcessEvaluator::new(capacity, move |id, c, b| co.evaluate(id, c, b));
    if let Some(s) = evaluator_seed {
        ev = ev.shuffled(s);
    }
    optimize(&space, &mut searcher, &mut ev, store, opts, &mut ())
}

/// A fresh in-memory store.
fn mem() -> MemoryStore {
    MemoryStore::new()
}
