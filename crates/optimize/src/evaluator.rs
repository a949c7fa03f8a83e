//! The evaluation boundary: the [`Evaluator`] trait that glue code implements over a worker
//! pool, an in-process implementation for tests, and the counting-ones benchmark.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{Param, Space};
use crate::value::{Config, Value};

/// Metrics by name. The names an evaluator knows in advance are borrowed `'static` strings,
/// so a trial's metrics cost one allocation (the map's node), not one per name; names read
/// back from a store are owned.
pub type Metrics = BTreeMap<Cow<'static, str>, f64>;

/// What one evaluation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The objective ran. A non-finite loss still counts as a failure.
    Ok {
        /// The loss to minimize (btopt uses −sharpe).
        loss: f64,
        /// Extra metrics, recorded but not optimized.
        metrics: Metrics,
    },
    /// The evaluation failed (worker crash, panic, error).
    Crashed {
        /// Why.
        message: String,
    },
}

impl Outcome {
    /// A successful outcome without metrics.
    pub fn loss(loss: f64) -> Outcome {
        Outcome::Ok { loss, metrics: Metrics::new() }
    }

    /// The loss if the evaluation succeeded with a finite loss; `None` for every failure.
    pub fn finite_loss(&self) -> Option<f64> {
        match self {
            Outcome::Ok { loss, .. } if loss.is_finite() => Some(*loss),
            _ => None,
        }
    }

    /// The status to record.
    pub fn status(&self) -> TrialStatus {
        match self {
            Outcome::Ok { loss, .. } if loss.is_finite() => TrialStatus::Ok,
            Outcome::Ok { .. } => TrialStatus::NonFinite,
            Outcome::Crashed { .. } => TrialStatus::Crashed,
        }
    }
}

/// A finished trial's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Finite loss.
    Ok,
    /// The evaluation crashed.
    Crashed,
    /// The loss was NaN or infinite (treated as a failure).
    NonFinite,
}

impl TrialStatus {
    /// `"ok"`, `"crashed"` or `"nonfinite"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Ok => "ok",
            TrialStatus::Crashed => "crashed",
            TrialStatus::NonFinite => "nonfinite",
        }
    }
}

/// A completed evaluation as reported by an [`Evaluator`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The trial id given to [`Evaluator::submit`].
    pub trial_id: u64,
    /// What happened.
    pub outcome: Outcome,
    /// Time the evaluation itself took, for the record (on a pool, as its worker measured it).
    pub duration_secs: f64,
    /// Which worker ran it, for the record.
    pub worker: Option<u32>,
}

/// Runs evaluations, typically on a worker pool. The optimizer never submits more than
/// `capacity()` trials at once, and calls `next_completed` only while some are in flight.
pub trait Evaluator {
    /// How many evaluations may run at once (the number of workers).
    fn capacity(&self) -> usize;
    /// Start evaluating `config` at `budget`.
    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> Result<()>;
    /// Block until some submitted trial completes. Completions may come in any order.
    /// An `Err` aborts the search (the store keeps what completed; resume continues).
    fn next_completed(&mut self) -> Result<Completion>;
    /// Whether [`Evaluator::next_completed`] would return at once, without waiting (`false`
    /// when unsure).
    fn has_completed(&self) -> bool {
        false
    }
    /// Waits at most `timeout` until [`Evaluator::has_completed`] holds; whether it does. The
    /// optimizer makes its store durable before a wait longer than that (see
    /// [`crate::FLUSH_WHEN_IDLE`]). The default does not wait.
    fn wait_completed(&mut self, timeout: std::time::Duration) -> Result<bool> {
        let _ = timeout;
        Ok(self.has_completed())
    }
}

type Objective = Box<dyn FnMut(u64, &Config, f64) -> Outcome>;

/// An in-process evaluator over a closure, for tests and benchmarks. Evaluations run lazily
/// when a completion is requested; with [`InProcessEvaluator::shuffled`] completions come in
/// a seeded random order to exercise the asynchronous logic.
pub struct InProcessEvaluator {
    capacity: usize,
    objective: Objective,
    in_flight: Vec<(u64, Config, f64)>,
    shuffle: Option<ChaCha12Rng>,
    fail_after: Option<usize>,
    completed: usize,
}

impl std::fmt::Debug for InProcessEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessEvaluator")
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl InProcessEvaluator {
    /// Completions in submission order. `objective(trial_id, config, budget)`.
    pub fn new(capacity: usize, objective: impl FnMut(u64, &Config, f64) -> Outcome + 'static) -> Self {
        InProcessEvaluator {
            capacity: capacity.max(1),
            objective: Box::new(objective),
            in_flight: Vec::new(),
            shuffle: None,
            fail_after: None,
            completed: 0,
        }
    }

    /// Completions in a seeded random order among the trials in flight.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = Some(ChaCha12Rng::seed_from_u64(seed));
        self
    }

    /// Simulate the driver dying: after `n` completions, `next_completed` fails (trials still
    /// in flight are lost, as with SIGKILL).
    pub fn fail_after(mut self, n: usize) -> Self {
        self.fail_after = Some(n);
        self
    }

    /// Completions delivered so far.
    pub fn completed(&self) -> usize {
        self.completed
    }
}

impl Evaluator for InProcessEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> Result<()> {
        if self.in_flight.len() >= self.capacity {
            return Err(Error::Evaluator("submit beyond capacity".into()));
        }
        self.in_flight.push((trial_id, config.clone(), budget));
        Ok(())
    }

    fn next_completed(&mut self) -> Result<Completion> {
        if self.fail_after.is_some_and(|n| self.completed >= n) {
            return Err(Error::Evaluator("simulated driver death".into()));
        }
        if self.in_flight.is_empty() {
            return Err(Error::Evaluator("nothing in flight".into()));
        }
        let i = match &mut self.shuffle {
            Some(rng) => rng.random_range(0..self.in_flight.len()),
            None => 0,
        };
        let (trial_id, config, budget) = self.in_flight.remove(i);
        let outcome = (self.objective)(trial_id, &config, budget);
        self.completed += 1;
        Ok(Completion { trial_id, outcome, duration_secs: 0.0, worker: Some(0) })
    }
}

/// HPOlib's counting-ones: `n_cat` binary categorical parameters `c0…` (choices `"0"`, `"1"`)
/// and `n_cont` floats `x0…` in `[0, 1]`. Loss = −(Σ cat + Σ_j mean of `draws`
/// Bernoulli(x_j) samples); the optimum is −(n_cat + n_cont).
///
/// Budgets are fractions in (0, 1]: `draws = max(1, round(budget · max_draws))`. The draws
/// are seeded from `(seed, trial_id)`, so an evaluation is a pure function of its inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountingOnes {
    /// Binary categorical parameters.
    pub n_cat: usize,
    /// Continuous parameters.
    pub n_cont: usize,
    /// Draws at budget 1.
    pub max_draws: usize,
    /// Seed for the Bernoulli draws.
    pub seed: u64,
}

impl CountingOnes {
    /// The space: `c0..c{n_cat}` categorical, then `x0..x{n_cont}` continuous.
    pub fn space(&self) -> Space {
        let mut params: Vec<Param> =
            (0..self.n_cat).map(|i| Param::categorical(&format!("c{i}"), &["0", "1"])).collect();
        params.extend((0..self.n_cont).map(|i| Param::continuous(&format!("x{i}"), 0.0, 1.0, None, false)));
        Space::new(params, &[]).expect("counting-ones space is valid")
    }

    /// The optimum loss, −(n_cat + n_cont).
    pub fn optimum(&self) -> f64 {
        -((self.n_cat + self.n_cont) as f64)
    }

    /// Evaluate one config.
    pub fn evaluate(&self, trial_id: u64, config: &Config, budget: f64) -> Outcome {
        let draws = ((budget * self.max_draws as f64).round() as usize).max(1);
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&trial_id.to_le_bytes());
        let mut rng = ChaCha12Rng::from_seed(seed);
        let mut total = 0.0;
        for v in config.values() {
            match v {
                Value::Str(s) => total += if s == "1" { 1.0 } else { 0.0 },
                Value::Float(x) => {
                    let hits = (0..draws).filter(|_| rng.random::<f64>() < *x).count();
                    total += hits as f64 / draws as f64;
                }
                Value::Int(i) => total += *i as f64,
            }
        }
        Outcome::loss(-total)
    }
}
