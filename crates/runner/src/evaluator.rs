//! The optimizer's evaluator over a pool of backtest workers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use engine::{DynStrategy, Fidelity, ParamValues, RunOptions, StrategyId};
use optimize::{Completion, Config, Evaluator, Outcome};

use crate::worker::{BacktestWorker, Job, JobOutput};
use crate::{BacktestTask, params_of};

/// Turns the optimizer's (config, budget) trials into backtest jobs on a pool, and their
/// metrics into losses: loss = −sharpe.
///
/// A config the engine refuses (say, a window of 0) comes back as a crashed trial, never as
/// an error that stops the search; so does a task whose worker died too often.
pub struct PoolEvaluator<'p> {
    pool: &'p mut pool::Pool<BacktestWorker>,
    strategy: Arc<dyn DynStrategy>,
    id: StrategyId,
    base: ParamValues,
    sessions: Option<Range<usize>>,
    fee: f64,
    in_flight: HashMap<pool::TaskId, (u64, Instant)>,
    ready: VecDeque<Completion>,
    returns: Option<ReturnsSink>,
    fidelity: Fidelity,
}

/// Per-session returns collected while a search runs, for the overfitting statistics.
///
/// Only trials at the full budget ask for them, and only up to `cap` trials: past the cap
/// the sink drops what it holds and stops asking, so memory stays at `cap · T · 8` bytes at
/// most whatever the search's size; [`PoolEvaluator::returns_of`] then computes the returns
/// of a subsample after the search.
struct ReturnsSink {
    budget: f64,
    cap: usize,
    by_trial: BTreeMap<u64, Vec<f64>>,
    overflowed: bool,
}

impl<'p> PoolEvaluator<'p> {
    /// An evaluator for `strategy` (registered as `id` in the pool's registry) on `pool`.
    /// `base` holds the defaults and fixed parameters of every trial (the space's parameters
    /// override them); `sessions` and `fee` as for a backtest.
    pub fn new(
        pool: &'p mut pool::Pool<BacktestWorker>,
        strategy: Arc<dyn DynStrategy>,
        id: StrategyId,
        base: ParamValues,
        sessions: Option<Range<usize>>,
        fee: f64,
    ) -> PoolEvaluator<'p> {
        PoolEvaluator {
            pool,
            strategy,
            id,
            base,
            sessions,
            fee,
            in_flight: HashMap::new(),
            ready: VecDeque::new(),
            returns: None,
            fidelity: Fidelity::Recent,
        }
    }

    /// Evaluate budgets with `fidelity` (default [`Fidelity::Recent`]); budget 1.0 is the same
    /// backtest under every fidelity.
    pub fn with_fidelity(mut self, fidelity: Fidelity) -> Self {
        self.fidelity = fidelity;
        self
    }

    /// Also collect the per-session returns of trials at `budget`, for up to `cap` trials
    /// (see [`PoolEvaluator::returns_of`]). Other trials run exactly as without it.
    pub fn collect_returns(mut self, budget: f64, cap: usize) -> Self {
        self.returns = Some(ReturnsSink { budget, cap, by_trial: BTreeMap::new(), overflowed: false });
        self
    }

    /// The per-session returns of `trials` (id, config) at `budget`: those collected during the
    /// search, and the rest (replayed from a store, or past the cap) computed now on the pool.
    /// Call it when no trial is in flight.
    pub fn returns_of(&mut self, trials: &[(u64, Config)], budget: f64) -> Result<BTreeMap<u64, Vec<f64>>, String> {
        let mut have = self.returns.take().map(|s| s.by_trial).unwrap_or_default();
        let wanted: std::collections::BTreeSet<u64> = trials.iter().map(|(id, _)| *id).collect();
        have.retain(|id, _| wanted.contains(id));
        let missing: Vec<&(u64, Config)> = trials.iter().filter(|(id, _)| !have.contains_key(id)).collect();
        let mut jobs = Vec::with_capacity(missing.len());
        for (_, config) in &missing {
            let mut task = self.task(config, budget)?;
            task.returns = true;
            jobs.push(Job::Backtest(task));
        }
        for ((id, _), out) in missing.iter().zip(self.pool.map(jobs)) {
            match out {
                Ok(JobOutput::Metrics { returns: Some(r), .. }) => {
                    have.insert(*id, r);
                }
                Ok(other) => return Err(format!("trial {id}: the worker returned {other:?}, not returns")),
                Err(e) => return Err(format!("trial {id}: {e}")),
            }
        }
        Ok(have)
    }

    /// The overfitting statistics (design-notes section 9) over the trials `sample` chose,
    /// in trial-id order; their returns come from [`PoolEvaluator::returns_of`].
    /// `Ok(Err(reason))` when the statistics cannot be computed; `Err` when the pool failed to
    /// produce returns.
    pub fn overfitting(
        &mut self,
        sample: TrialSample,
        blocks: usize,
    ) -> Result<Result<overfitting::Overfitting, String>, String> {
        let (budget, seen) = (sample.budget, sample.sample.seen());
        if seen < 2 {
            return Ok(Err(format!("{seen} full-budget trials ended ok, the statistics need at least 2")));
        }
        let chosen = sample.sample.into_sorted();
        let returns = self.returns_of(&chosen, budget)?;
        let matrix = match overfitting::ReturnMatrix::from_trials(chosen.iter().map(|(id, _)| returns[id].as_slice())) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(overfitting::compute(&matrix, blocks).map_err(|e| e.to_string()))
    }

    fn task(&self, config: &Config, budget: f64) -> Result<BacktestTask, String> {
        let params = params_of(&*self.strategy, &self.base, config).map_err(|e| e.to_string())?;
        let options = RunOptions::new_checked(budget, self.sessions.clone(), self.fee)
            .map_err(|e| e.to_string())?
            .with_fidelity(self.fidelity);
        Ok(BacktestTask { strategy: self.id, params, options, returns: false })
    }
}

/// The trials the overfitting statistics use: those at one budget that ended ok, or a seeded
/// uniform subsample of `cap` of them ([`overfitting::Sample`], seeded by the search's seed),
/// chosen as trials finish, so a search of millions of trials needs memory for `cap` configs
/// only, and the choice does not depend on the order trials finish in.
#[derive(Debug, Clone)]
pub struct TrialSample {
    budget: f64,
    sample: overfitting::Sample<Config>,
}

impl TrialSample {
    /// An empty sample of the ok trials at `budget`, at most `cap` of them, chosen by `seed`.
    pub fn new(budget: f64, cap: usize, seed: u64) -> TrialSample {
        TrialSample { budget, sample: overfitting::Sample::new(cap, seed) }
    }

    /// Offers a finished trial; only ok trials at the sample's budget count.
    pub fn offer(&mut self, t: &optimize::TrialSummary) {
        if t.budget != self.budget || t.status != optimize::TrialStatus::Ok {
            return;
        }
        if self.sample.would_keep(t.trial_id) {
            self.sample.push(t.trial_id, t.config.clone());
        } else {
            self.sample.skip();
        }
    }

    /// Ok trials at the budget offered so far.
    pub fn seen(&self) -> usize {
        self.sample.seen()
    }
}

/// The metrics a backtest reports with its loss, by name (borrowed names: one allocation).
pub fn metrics_map(m: &engine::Metrics) -> optimize::Metrics {
    [
        ("sharpe", m.sharpe),
        ("total_return", m.total_return),
        ("max_drawdown", m.max_drawdown),
        ("sortino", m.sortino),
        ("calmar", m.calmar),
        ("trades", m.trades as f64),
        ("bars", m.bars as f64),
        ("final_equity", m.final_equity),
    ]
    .into_iter()
    .map(|(k, v)| (Cow::Borrowed(k), v))
    .collect()
}

impl Evaluator for PoolEvaluator<'_> {
    fn capacity(&self) -> usize {
        self.pool.wanted_in_flight().max(1)
    }

    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> optimize::Result<()> {
        match self.task(config, budget) {
            Ok(mut task) => {
                task.returns = self.returns.as_ref().is_some_and(|s| !s.overflowed && s.budget == budget);
                let id = self
                    .pool
                    .submit(Job::Backtest(task))
                    .map_err(|e| optimize::Error::Evaluator(format!("failed to submit trial {trial_id}: {e}")))?;
                self.in_flight.insert(id, (trial_id, Instant::now()));
            }
            Err(message) => self.ready.push_back(Completion {
                trial_id,
                outcome: Outcome::Crashed { message },
                duration_secs: 0.0,
                worker: None,
            }),
        }
        Ok(())
    }

    fn has_completed(&self) -> bool {
        !self.ready.is_empty() || self.pool.has_ready()
    }

    fn wait_completed(&mut self, timeout: std::time::Duration) -> optimize::Result<bool> {
        Ok(!self.ready.is_empty() || self.pool.wait_ready(timeout))
    }

    fn next_completed(&mut self) -> optimize::Result<Completion> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(c);
        }
        let (id, result) =
            self.pool.recv().ok_or_else(|| optimize::Error::Evaluator("the pool has no trial in flight".into()))?;
        let (trial_id, started) = self
            .in_flight
            .remove(&id)
            .ok_or_else(|| optimize::Error::Evaluator(format!("the pool returned unknown task {id}")))?;
        let (outcome, worker) = match result {
            Ok(JobOutput::Metrics { metrics, worker, returns }) => {
                if let (Some(sink), Some(r)) = (self.returns.as_mut(), returns) {
                    sink.by_trial.insert(trial_id, r);
                    if sink.by_trial.len() > sink.cap {
                        sink.by_trial.clear();
                        sink.overflowed = true;
                    }
                }
                (Outcome::Ok { loss: -metrics.sharpe, metrics: metrics_map(&metrics) }, Some(worker))
            }
            Ok(JobOutput::Invalid(message)) => (Outcome::Crashed { message }, None),
            Ok(other) => (Outcome::Crashed { message: format!("unexpected worker output {other:?}") }, None),
            Err(e) => (Outcome::Crashed { message: e.to_string() }, None),
        };
        Ok(Completion { trial_id, outcome, duration_secs: started.elapsed().as_secs_f64(), worker })
    }
}
