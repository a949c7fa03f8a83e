//! The optimizer's evaluator over a pool of backtest workers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

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
    /// Trial ids by pool task.
    in_flight: HashMap<pool::TaskId, u64>,
    ready: VecDeque<Completion>,
    moments: Option<MomentsSink>,
    fidelity: Fidelity,
}

/// The overfitting moments of the per-session returns ([`crate::Moments`]), collected while a
/// search runs: each worker reduces a trial's returns to 2·S + 1 numbers, so the series never
/// cross to the coordinator.
///
/// Only trials at the full budget ask for them, and only up to `cap` trials: past the cap
/// the sink drops what it holds and stops asking, so memory stays at `cap · (2·S + 1) · 8`
/// bytes at most whatever the search's size; [`PoolEvaluator::moments_of`] then computes
/// those of a subsample after the search.
struct MomentsSink {
    budget: f64,
    cap: usize,
    blocks: usize,
    by_trial: BTreeMap<u64, Result<overfitting::TrialMoments, String>>,
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
            moments: None,
            fidelity: Fidelity::Recent,
        }
    }

    /// Evaluate budgets with `fidelity` (default [`Fidelity::Recent`]); budget 1.0 is the same
    /// backtest under every fidelity.
    pub fn with_fidelity(mut self, fidelity: Fidelity) -> Self {
        self.fidelity = fidelity;
        self
    }

    /// Also collect the overfitting moments (for S = `blocks`) of trials at `budget`, for up
    /// to `cap` trials (see [`PoolEvaluator::moments_of`]). Other trials run exactly as
    /// without it.
    pub fn collect_moments(mut self, budget: f64, cap: usize, blocks: usize) -> Self {
        self.moments = Some(MomentsSink { budget, cap, blocks, by_trial: BTreeMap::new(), overflowed: false });
        self
    }

    /// The overfitting moments (for S = `blocks`) of `trials` (id, config) at `budget`: those
    /// collected during the search, and the rest (replayed from a store, or past the cap)
    /// computed now on the pool. Call it when no trial is in flight.
    pub fn moments_of(
        &mut self,
        trials: &[(u64, Config)],
        budget: f64,
        blocks: usize,
    ) -> Result<BTreeMap<u64, Result<overfitting::TrialMoments, String>>, String> {
        let mut have = self.moments.take().filter(|s| s.blocks == blocks).map(|s| s.by_trial).unwrap_or_default();
        let wanted: std::collections::BTreeSet<u64> = trials.iter().map(|(id, _)| *id).collect();
        have.retain(|id, _| wanted.contains(id));
        let missing: Vec<&(u64, Config)> = trials.iter().filter(|(id, _)| !have.contains_key(id)).collect();
        let mut jobs = Vec::with_capacity(missing.len());
        for (_, config) in &missing {
            let mut task = self.task(config, budget)?;
            task.moments = Some(blocks as u32);
            jobs.push(Job::Backtest(task));
        }
        for ((id, _), out) in missing.iter().zip(self.pool.map(jobs)) {
            match out {
                Ok(JobOutput::Metrics { moments: Some(m), .. }) => {
                    have.insert(*id, m.map(overfitting::TrialMoments::from));
                }
                Ok(other) => return Err(format!("trial {id}: the worker returned {other:?}, not moments")),
                Err(e) => return Err(format!("trial {id}: {e}")),
            }
        }
        Ok(have)
    }

    /// The per-session returns of one trial at `budget`, computed now on the pool.
    fn returns_of(&mut self, config: &Config, budget: f64) -> Result<Vec<f64>, String> {
        let mut task = self.task(config, budget)?;
        task.returns = true;
        match self.pool.map([Job::Backtest(task)]).pop() {
            Some(Ok(JobOutput::Metrics { returns: Some(r), .. })) => Ok(r),
            Some(Ok(other)) => Err(format!("the worker returned {other:?}, not returns")),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the pool returned nothing".into()),
        }
    }

    /// The overfitting statistics (design-notes section 9) over the trials `sample` chose,
    /// in trial-id order, from their moments ([`PoolEvaluator::moments_of`]) and the returns of
    /// the best of them (one more backtest). `Ok(Err(reason))` when the statistics cannot be
    /// computed; `Err` when the pool failed to produce moments or returns.
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
        let mut by_id = self.moments_of(&chosen, budget, blocks)?;
        let mut moments = Vec::with_capacity(chosen.len());
        for (id, _) in &chosen {
            match by_id.remove(id).ok_or_else(|| format!("trial {id}: no moments"))? {
                Ok(m) => moments.push(m),
                Err(e) => return Ok(Err(format!("trial {id} has {e}"))),
            }
        }
        if moments.len() < 2 {
            return Ok(Err(overfitting::Error::TooFewTrials(moments.len()).to_string()));
        }
        let best = overfitting::best_trial(&moments);
        let returns = self.returns_of(&chosen[best].1, budget).map_err(|e| format!("trial {}: {e}", chosen[best].0))?;
        Ok(overfitting::compute_from_moments(&moments, blocks, &returns).map_err(|e| e.to_string()))
    }

    fn task(&self, config: &Config, budget: f64) -> Result<BacktestTask, String> {
        let params = params_of(&*self.strategy, &self.base, config).map_err(|e| e.to_string())?;
        let options = RunOptions::new_checked(budget, self.sessions.clone(), self.fee)
            .map_err(|e| e.to_string())?
            .with_fidelity(self.fidelity);
        Ok(BacktestTask { strategy: self.id, params, options, returns: false, moments: None })
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
                task.moments =
                    self.moments.as_ref().filter(|s| !s.overflowed && s.budget == budget).map(|s| s.blocks as u32);
                let id = self
                    .pool
                    .submit(Job::Backtest(task))
                    .map_err(|e| optimize::Error::Evaluator(format!("failed to submit trial {trial_id}: {e}")))?;
                self.in_flight.insert(id, trial_id);
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
        let pool::Finished { id, result, busy } = self
            .pool
            .recv_timed()
            .ok_or_else(|| optimize::Error::Evaluator("the pool has no trial in flight".into()))?;
        let trial_id = self
            .in_flight
            .remove(&id)
            .ok_or_else(|| optimize::Error::Evaluator(format!("the pool returned unknown task {id}")))?;
        let (outcome, worker) = match result {
            Ok(JobOutput::Metrics { metrics, worker, moments, .. }) => {
                if let (Some(sink), Some(m)) = (self.moments.as_mut(), moments) {
                    sink.by_trial.insert(trial_id, m.map(overfitting::TrialMoments::from));
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
        // The worker's own time for the trial, not the time since submission, which includes
        // waiting in a chunk behind other trials (0 when its worker was lost).
        Ok(Completion { trial_id, outcome, duration_secs: busy.as_secs_f64(), worker })
    }
}
