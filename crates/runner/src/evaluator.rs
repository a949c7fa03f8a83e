//! The optimizer's evaluator over a pool of backtest workers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use engine::{DynStrategy, ParamValues, RunOptions, StrategyId};
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
        PoolEvaluator { pool, strategy, id, base, sessions, fee, in_flight: HashMap::new(), ready: VecDeque::new() }
    }

    fn task(&self, config: &Config, budget: f64) -> Result<BacktestTask, String> {
        let params = params_of(&*self.strategy, &self.base, config).map_err(|e| e.to_string())?;
        let options = RunOptions::new_checked(budget, self.sessions.clone(), self.fee).map_err(|e| e.to_string())?;
        Ok(BacktestTask { strategy: self.id, params, options })
    }
}

/// The metrics a backtest reports with its loss, by name.
pub fn metrics_map(m: &engine::Metrics) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("sharpe".to_string(), m.sharpe),
        ("total_return".to_string(), m.total_return),
        ("max_drawdown".to_string(), m.max_drawdown),
        ("sortino".to_string(), m.sortino),
        ("calmar".to_string(), m.calmar),
        ("trades".to_string(), m.trades as f64),
        ("bars".to_string(), m.bars as f64),
        ("final_equity".to_string(), m.final_equity),
    ])
}

impl Evaluator for PoolEvaluator<'_> {
    fn capacity(&self) -> usize {
        self.pool.workers().max(1)
    }

    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> optimize::Result<()> {
        match self.task(config, budget) {
            Ok(task) => {
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
            Ok(JobOutput::Metrics { metrics, worker }) => {
                (Outcome::Ok { loss: -metrics.sharpe, metrics: metrics_map(&metrics) }, Some(worker))
            }
            Ok(JobOutput::Invalid(message)) => (Outcome::Crashed { message }, None),
            Ok(other) => (Outcome::Crashed { message: format!("unexpected worker output {other:?}") }, None),
            Err(e) => (Outcome::Crashed { message: e.to_string() }, None),
        };
        Ok(Completion { trial_id, outcome, duration_secs: started.elapsed().as_secs_f64(), worker })
    }
}
