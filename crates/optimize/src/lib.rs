//! optimize: btopt's search half. Parameter spaces, searchers (grid, random, Hyperband,
//! BOHB), the optimizer loop that drives them over an abstract [`Evaluator`], and the
//! [`TrialStore`] interface it records trials through.
//!
//! **Architecture invariant:** the optimizers know nothing about processes, pools, bundles,
//! backtests or databases. They see a [`Space`], [`Config`]s and losses, and record trials
//! through the [`TrialStore`] trait; the durable stores (SQLite, PostgreSQL) live in the
//! `store` crate.
//!
//! Main types: [`Space`] (with [`Space::from_toml_file`]), the [`Searcher`] implementations
//! [`GridSearch`], [`RandomSearch`], [`BracketSearch`] (Hyperband/BOHB), the [`Evaluator`]
//! trait the glue implements, [`optimize`] and its [`SearchSummary`].
//!
//! Determinism: every random choice flows from one explicit seed through `ChaCha12Rng`.
//! With [`SearchOptions::deterministic`], a run is identical at any worker count; the default
//! asynchronous mode keeps workers busier but its results depend on completion timing.
//!
//! For the glue (`btopt optimize`): parse the space with [`Space::from_toml_file`], build the
//! searcher with [`SearchSpec::build`], implement [`Evaluator`] over the worker pool (render a
//! config with [`render_pairs`] for the engine; report loss = −sharpe and metrics), open a
//! durable store for `--store` with `store::open` (else [`MemoryStore`]), call [`optimize`] with an
//! [`Observer`] for the progress bar, and print [`SearchSummary::to_json`] plus `sharpe` and
//! `wall_seconds`. Calling [`optimize`] again on the same store resumes the study.
//!
//! ```
//! use optimize::*;
//! let space = Space::from_toml_str(r#"
//!     [[parameter]]
//!     name = "short_window"
//!     type = "discrete"
//!     min = 5
//!     max = 20
//!     step = 5
//!     [[parameter]]
//!     name = "threshold"
//!     type = "continuous"
//!     min = 0.01
//!     max = 0.05
//!     step = 0.02
//! "#)?;
//! assert_eq!(space.cardinality(), Some(12));
//! let settings = HyperbandSettings { min_budget: 1.0 / 9.0, max_budget: 1.0, eta: 3.0, iterations: 3 };
//! let mut searcher = BracketSearch::bohb(space.clone(), settings, BohbSettings::default(), 42)?;
//! let mut evaluator = InProcessEvaluator::new(2, |_id, config: &Config, budget| {
//!     let s = config["short_window"].as_f64().unwrap();
//!     Outcome::loss((s - 10.0).abs() * budget)
//! });
//! let mut store = MemoryStore::new();
//! let summary = optimize(&space, &mut searcher, &mut evaluator, &mut store,
//!                        SearchOptions { deterministic: true, ..SearchOptions::default() }, &mut ())?;
//! assert!(summary.best.is_some());
//! # Ok::<(), optimize::Error>(())
//! ```

mod diagnostics;
mod error;
mod evaluator;
mod kde;
mod optimizer;
mod schedule;
mod searcher;
mod space;
mod store;
mod value;

pub use diagnostics::{FidelityPair, FidelityPoints, WEAK_RANK_CORRELATION, fidelity, fidelity_points, spearman};
pub use error::{Error, Result};
pub use evaluator::{Completion, CountingOnes, Evaluator, InProcessEvaluator, Metrics, Outcome, TrialStatus};
pub use kde::{BohbModel, BohbSettings, Kde, KdePair, split_sizes, truncated_std_normal};
pub use optimizer::{
    Best, DETERMINISTIC_BATCH, FLUSH_WHEN_IDLE, Observer, Progress, SearchOptions, SearchSummary, TrialSummary,
    optimize, study_identity,
};
pub use schedule::{BracketPlan, bracket_for_iteration, bracket_schedule, budgets, max_sh_iter};
pub use searcher::{
    BracketSearch, GridSearch, HyperbandSettings, Mode, RandomSearch, SearchKind, SearchSpec, Searcher, Suggestion,
    Trial,
};
pub use space::{Constraint, Grid, Param, ParamKind, Space};
pub use store::{MemoryStore, NullStore, TrialRecord, TrialStore, identity_hash, study_mismatch};
pub use value::{Config, PlainConfig, Value, config_from_json, config_json_text, config_to_json, render_pairs};
