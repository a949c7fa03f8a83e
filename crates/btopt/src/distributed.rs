//! Distributed studies on PostgreSQL: the coordinator's [`QueueEvaluator`] (the optimizer's
//! evaluator over the study's work queue) and [`serve_batch`], the one routine that runs
//! claimed trials on a local pool, shared by `btopt worker` and a coordinator's own workers.
//!
//! The optimizer is unchanged: it submits trials to the evaluator and records outcomes in the
//! store as always. Here a submitted trial becomes a queued row; any process that claims it
//! (a `btopt worker` anywhere, or the coordinator's own pool) writes its outcome under its
//! lease; the coordinator takes finished rows and hands them back as completions. In
//! `--deterministic` mode the optimizer feeds a stage's outcomes in trial-id order at its
//! barrier, so who evaluated what, and when, cannot change the result.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use optimize::{Completion, Evaluator, Outcome};
use store::{Claimed, Queue};

/// What a worker needs to turn a trial into a backtest, stored with the study as JSON. A
/// worker trusts it only for parameters: an unknown strategy or parameter fails the trial.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskSpec {
    pub(crate) strategy: String,
    /// The `--set NAME=VALUE` values of the study.
    pub(crate) set: Vec<String>,
    pub(crate) sessions: Range<usize>,
    pub(crate) fee: f64,
    /// What a budget means (`--fidelity`), by name.
    pub(crate) fidelity: String,
    /// The SMA windows and momentum lookbacks the study's space can ask for
    /// (`runner::sma_windows`, `runner::momentum_lookbacks`): a worker started for the study
    /// builds them into shared tables before its pool, as a local run does. They change speed
    /// only, never results, so a worker may take them from the database (within its tables'
    /// memory budget). Empty in studies written before they were recorded.
    pub(crate) sma_windows: Vec<usize>,
    pub(crate) momentum_lookbacks: Vec<usize>,
}

impl TaskSpec {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.strategy,
            "set": self.set,
            "sessions": [self.sessions.start, self.sessions.end],
            "fee": self.fee,
            "fidelity": self.fidelity,
            "sma_windows": self.sma_windows,
            "momentum_lookbacks": self.momentum_lookbacks,
        })
    }

    pub(crate) fn from_json(v: &serde_json::Value) -> Result<TaskSpec> {
        let bad = || anyhow!("the study's task is not one this btopt understands: {v}");
        let strategy = v["strategy"].as_str().ok_or_else(bad)?.to_string();
        let set = v["set"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|p| p.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?;
        let lo = v["sessions"][0].as_u64().ok_or_else(bad)? as usize;
        let hi = v["sessions"][1].as_u64().ok_or_else(bad)? as usize;
        let fee = v["fee"].as_f64().ok_or_else(bad)?;
        // Studies written before `--fidelity` existed meant `recent`.
        let fidelity = v.get("fidelity").map_or(Some("recent"), |f| f.as_str()).ok_or_else(bad)?.to_string();
        let sizes = |key: &str| -> Result<Vec<usize>> {
            match v.get(key) {
                None => Ok(Vec::new()),
                Some(a) => a
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(bad))
                    .collect(),
            }
        };
        let (sma_windows, momentum_lookbacks) = (sizes("sma_windows")?, sizes("momentum_lookbacks")?);
        Ok(TaskSpec { strategy, set, sessions: lo..hi, fee, fidelity, sma_windows, momentum_lookbacks })
    }
}

/// An evaluator for the study's task on a local pool. The task comes from the database, so a
/// strategy or parameter this binary does not know is refused here, before any trial runs.
pub(crate) fn local_evaluator<'p>(
    pool: &'p mut pool::Pool<runner::BacktestWorker>,
    strategies: &engine::Registry,
    spec: &TaskSpec,
) -> Result<runner::PoolEvaluator<'p>> {
    let base = crate::backtest_cmd::configure(strategies, &spec.strategy, &spec.set)
        .context("the study's strategy cannot run here")?;
    let strategy = base.strategy().clone();
    let id = strategies.id_of(strategy.name())?;
    let fidelity: engine::Fidelity =
        spec.fidelity.parse().map_err(|e| anyhow!("the study's fidelity cannot run here: {e}"))?;
    Ok(runner::PoolEvaluator::new(pool, strategy, id, *base.values(), Some(spec.sessions.clone()), spec.fee)
        .with_fidelity(fidelity))
}

/// How many trials to claim at once: enough for about [`BATCH_SECS`] of work on this pool
/// (so that trivial trials are claimed in large batches and long ones two per worker), from
/// the mean duration seen so far; and near the end of the queue at most a quarter of what is
/// left, so that the last batches are small and no process idles while another finishes a
/// large one. (The queue counts what is left up to eight times the last claim, so while it
/// is long a claim at most doubles the one before.)
#[derive(Debug)]
pub(crate) struct BatchSize {
    workers: usize,
    mean_secs: Option<f64>,
}

/// The work a claim aims at: each batch costs a worker one round trip (its results and its
/// next claim), and the server one statement.
const BATCH_SECS: f64 = 0.1;

impl BatchSize {
    pub(crate) fn new(workers: usize) -> BatchSize {
        BatchSize { workers: workers.max(1), mean_secs: None }
    }

    /// The next claim's size, given about how many trials the queue still holds.
    fn get(&self, queued: Option<u64>) -> usize {
        let floor = 2 * self.workers;
        let want = match self.mean_secs {
            None => floor,
            Some(m) => ((BATCH_SECS / m.max(1e-6)) as usize * self.workers).clamp(floor, 512.max(floor)),
        };
        match queued {
            Some(q) => want.min(usize::try_from(q / 4).unwrap_or(usize::MAX).max(floor)),
            None => want,
        }
    }

    fn observe(&mut self, secs: f64) {
        self.mean_secs = Some(match self.mean_secs {
            None => secs,
            Some(m) => 0.8 * m + 0.2 * secs,
        });
    }
}

/// Runs a batch of claimed trials on `local` and writes their outcomes (each only while this
/// process still holds its lease), claiming the next batch into `held` in the same statement;
/// claims a batch first when `held` is empty. Heartbeats the lease between completions, so
/// one trial must finish within the lease. Returns how many trials it ran.
///
/// `held` is the next batch of the queue's current study: claimed, leased to this process and
/// not yet started, so the pool waits for one round trip between batches, not two.
pub(crate) fn serve_batch(
    queue: &mut Queue,
    local: &mut dyn Evaluator,
    batch: &mut BatchSize,
    lease: Duration,
    held: &mut Vec<Claimed>,
) -> Result<usize> {
    let claimed = if held.is_empty() {
        queue.claim(batch.get(queue.queued_left())).context("failed to claim trials")?
    } else {
        std::mem::take(held)
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let n = claimed.len();
    let mut pending: BTreeMap<u64, Claimed> = BTreeMap::new();
    let mut done: Vec<(Claimed, Completion)> = Vec::with_capacity(n);
    for c in claimed {
        let config = serde_json::from_str(&c.config_json)
            .map_err(|e| e.to_string())
            .and_then(|v| optimize::config_from_json(&v).map_err(|e| e.to_string()));
        match config {
            Ok(config) => {
                local.submit(c.trial_id, &config, c.budget)?;
                pending.insert(c.trial_id, c);
            }
            Err(e) => {
                let outcome = Outcome::Crashed { message: format!("invalid config in the study: {e}") };
                done.push((c.clone(), Completion { trial_id: c.trial_id, outcome, duration_secs: 0.0, worker: None }));
            }
        }
    }
    let started = Instant::now();
    let mut beat = Instant::now();
    while !pending.is_empty() {
        let completion = local.next_completed()?;
        let claim = pending
            .remove(&completion.trial_id)
            .ok_or_else(|| anyhow!("the pool returned trial {} that was not claimed", completion.trial_id))?;
        done.push((claim, completion));
        if beat.elapsed() >= lease / 3 && !pending.is_empty() {
            queue.heartbeat(&pending.keys().copied().collect::<Vec<_>>()).context("failed to renew the lease")?;
            beat = Instant::now();
        }
    }
    batch.observe(started.elapsed().as_secs_f64() / n as f64);
    let next_size = batch.get(queue.queued_left());
    let (_, next) = queue.complete_and_claim(&done, next_size).context("failed to record results")?;
    *held = next;
    Ok(n)
}

/// The optimizer's evaluator over a study's queue: `submit` queues the trial (in one
/// statement per batch), `next_completed` serves a batch on the coordinator's own pool when
/// it has one, and otherwise waits for workers' results (woken by `NOTIFY`, polling at
/// least every 200 ms).
///
/// Its connection is opened at its first use, after the optimizer has opened the study and
/// queued the first trials on the store's connection: workers waiting for the study (to build
/// its tables) and for its first trials do not also wait for this second connection, which
/// costs the server a new backend (about 10 ms on two cores).
///
/// It reads the queue only when something may have been written since its last read: after
/// a notification, a poll's timeout, or a batch of its own. It consumes the notifications
/// that have arrived just before each read, which sees what they announced; a result
/// committed after the read notifies this connection at its commit. So waiting first loses
/// nothing, and it saves the empty read that would otherwise follow every read that found
/// results.
pub(crate) struct QueueEvaluator<'p> {
    queue: Option<Queue>,
    /// Opens the queue's connection (taken at the first use).
    connect: Option<Box<dyn FnOnce() -> Result<Queue> + 'p>>,
    local: Option<runner::PoolEvaluator<'p>>,
    batch: BatchSize,
    lease: Duration,
    capacity: usize,
    to_queue: Vec<u64>,
    in_flight: BTreeSet<u64>,
    ready: VecDeque<Completion>,
    /// Whether results may have been written since the last [`Queue::take_done`].
    unread: bool,
    /// Queue reads so far (for tests of the reads' economy).
    takes: u64,
    /// The longest wait for a notification before reading anyway.
    poll: Duration,
    /// The own pool's next batch (see [`serve_batch`]).
    held: Vec<Claimed>,
}

impl<'p> QueueEvaluator<'p> {
    /// `capacity` bounds the trials in the queue at once (see `optimize_cmd`); `connect` opens
    /// the queue's connection when it is first needed.
    pub(crate) fn new(
        connect: impl FnOnce() -> Result<Queue> + 'p,
        local: Option<runner::PoolEvaluator<'p>>,
        local_workers: usize,
        lease: Duration,
        capacity: usize,
    ) -> QueueEvaluator<'p> {
        QueueEvaluator {
            queue: None,
            connect: Some(Box::new(connect)),
            local,
            batch: BatchSize::new(local_workers),
            lease,
            capacity,
            to_queue: Vec::new(),
            in_flight: BTreeSet::new(),
            ready: VecDeque::new(),
            unread: true,
            takes: 0,
            poll: Duration::from_millis(200),
            held: Vec::new(),
        }
    }

    /// Opens the queue's connection (and listens for results) if it is not open yet.
    fn open_queue(&mut self) -> Result<()> {
        if let Some(connect) = self.connect.take() {
            let mut queue = connect()?;
            queue.listen_done().context("failed to listen for results")?;
            self.queue = Some(queue);
        }
        Ok(())
    }

    /// How many times it has read the queue's results.
    #[cfg(test)]
    pub(crate) fn takes(&self) -> u64 {
        self.takes
    }

    fn step(&mut self) -> Result<()> {
        let to_queue = std::mem::take(&mut self.to_queue);
        self.open_queue()?;
        let Some(queue) = self.queue.as_mut() else { return Err(anyhow!("the study's queue could not be opened")) };
        if !to_queue.is_empty() {
            queue.enqueue(&to_queue).context("failed to queue trials")?;
        }
        let served = match &mut self.local {
            Some(local) => serve_batch(queue, local, &mut self.batch, self.lease, &mut self.held)?,
            None => 0,
        };
        if served > 0 || self.unread {
            // The take reads what has been announced so far.
            self.unread = false;
            self.takes += 1;
            for c in queue.take_done().context("failed to read results")? {
                // Outcomes of trials this run did not submit were recovered by the store on open.
                if self.in_flight.remove(&c.trial_id) {
                    self.ready.push_back(c);
                }
            }
        }
        if self.ready.is_empty() && served == 0 {
            // Notified or not, the next step reads: a timeout is the poll.
            queue.wait(self.poll).context("failed to wait for results")?;
            self.unread = true;
        }
        Ok(())
    }
}

impl Evaluator for QueueEvaluator<'_> {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial_id: u64, _config: &optimize::Config, _budget: f64) -> optimize::Result<()> {
        // The trial's config and budget are already in its row (recorded as suggested).
        self.to_queue.push(trial_id);
        self.in_flight.insert(trial_id);
        Ok(())
    }

    /// Results taken from the queue but not yet handed over: the optimizer flushes its store
    /// only when these run out (one statement per batch of results, not one per trial).
    fn has_completed(&self) -> bool {
        !self.ready.is_empty()
    }

    fn next_completed(&mut self) -> optimize::Result<Completion> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(c);
            }
            if self.in_flight.is_empty() {
                return Err(optimize::Error::Evaluator("no trial in the queue".into()));
            }
            self.step().map_err(|e| optimize::Error::Evaluator(format!("{e:#}")))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use optimize::{Completion, Evaluator, Outcome, Trial, TrialStore};
    use store::{Claimed, PgStore, PgTarget, Queue};

    use super::QueueEvaluator;

    /// A study named `name` with trials 0..n suggested (not queued), and its coordinator's store.
    fn study(target: &PgTarget, name: &str, n: u64) -> PgStore {
        let mut pg = PgStore::connect(target, Some(name), None).expect("connect");
        pg.open_study(&serde_json::json!({ "test": name }), &mut |_| Ok(())).expect("open");
        let config: optimize::Config = [("x".to_string(), optimize::Value::Int(1))].into_iter().collect();
        let trials: Vec<(Trial, u64)> = (0..n)
            .map(|id| (Trial { id, config: config.clone(), budget: 1.0, bracket: None, stage: None }, id))
            .collect();
        pg.record_suggested(&trials).expect("suggest");
        pg
    }

    fn done(c: &Claimed) -> (Claimed, Completion) {
        let outcome = Outcome::loss(c.trial_id as f64);
        (c.clone(), Completion { trial_id: c.trial_id, outcome, duration_secs: 0.0, worker: Some(0) })
    }

    /// The task round-trips with its windows; a task written before they were recorded reads
    /// as none; windows that are not sizes make the task unreadable.
    #[test]
    fn a_task_carries_its_windows_and_old_tasks_have_none() {
        let spec = super::TaskSpec {
            strategy: "ma-crossover".into(),
            set: vec!["threshold=0.01".into()],
            sessions: 3..90,
            fee: 0.001,
            fidelity: "recent".into(),
            sma_windows: vec![5, 20, 200],
            momentum_lookbacks: vec![],
        };
        assert_eq!(super::TaskSpec::from_json(&spec.to_json()).unwrap(), spec);
        let mut old = spec.to_json();
        let o = old.as_object_mut().unwrap();
        o.remove("sma_windows");
        o.remove("momentum_lookbacks");
        let read = super::TaskSpec::from_json(&old).unwrap();
        assert_eq!((read.sma_windows.len(), read.momentum_lookbacks.len()), (0, 0));
        let mut bad = spec.to_json();
        bad["sma_windows"] = serde_json::json!([5, -1]);
        assert!(super::TaskSpec::from_json(&bad).is_err());
    }

    #[test]
    fn batches_aim_at_a_tenth_of_a_second_and_shrink_at_the_end_of_the_queue() {
        let mut b = super::BatchSize::new(2);
        assert_eq!(b.get(None), 4, "two per worker before anything is measured");
        b.observe(0.002);
        assert_eq!(b.get(None), 100, "0.1 s of 2 ms trials on each of 2 workers");
        assert_eq!(b.get(Some(4096)), 100);
        assert_eq!(b.get(Some(200)), 50, "a quarter of what is left");
        assert_eq!(b.get(Some(9)), 4, "never below two per worker");
        b.observe(10.0);
        assert_eq!(b.get(None), 4, "long trials: two per worker");
        let mut tiny = super::BatchSize::new(1);
        tiny.observe(1e-9);
        assert_eq!(tiny.get(None), 512, "at most 512");
    }

    /// The coordinator's queue connection opens at the first step, after the optimizer has
    /// opened the study and queued trials on the store's connection, and only once.
    #[test]
    fn the_coordinators_queue_connects_at_its_first_use_and_once() {
        let Some(server) = store::testing::server() else { return };
        let target = PgTarget::parse(&server.create_database()).expect("url");
        let _pg = study(&target, "lazy", 2);
        let lease = Duration::from_secs(60);
        let opened = std::cell::Cell::new(0);
        let t = target.clone();
        let mut ev = QueueEvaluator::new(
            || {
                opened.set(opened.get() + 1);
                Ok(Queue::connect(&t, "lazy", lease)?)
            },
            None,
            0,
            lease,
            64,
        );
        let config = optimize::Config::new();
        for id in 0..2 {
            ev.submit(id, &config, 1.0).expect("submit");
        }
        assert_eq!(opened.get(), 0, "no connection before the first step");
        ev.step().expect("queue the trials");
        let mut worker = Queue::connect(&target, "lazy", lease).expect("connect");
        let claimed = worker.claim(2).expect("claim");
        assert_eq!(claimed.len(), 2, "the first step queued both trials");
        worker.complete(&claimed.iter().map(done).collect::<Vec<_>>()).expect("complete");
        let got: Vec<u64> = (0..2).map(|_| ev.next_completed().expect("a result").trial_id).collect();
        assert_eq!(got, vec![0, 1]);
        assert_eq!(opened.get(), 1, "one connection for every step");
    }

    #[test]
    fn the_coordinator_reads_results_only_after_a_notification() {
        let Some(server) = store::testing::server() else { return };
        let target = PgTarget::parse(&server.create_database()).expect("url");
        let _pg = study(&target, "notify", 8);
        let lease = Duration::from_secs(60);
        let t = target.clone();
        let mut ev = QueueEvaluator::new(move || Ok(Queue::connect(&t, "notify", lease)?), None, 0, lease, 64);
        let config = optimize::Config::new();
        for id in 0..8 {
            ev.submit(id, &config, 1.0).expect("submit");
        }
        ev.step().expect("queue the trials");
        let mut worker = Queue::connect(&target, "notify", lease).expect("connect");
        let claimed = worker.claim(8).expect("claim");
        assert_eq!(claimed.len(), 8);
        let (first, second) = claimed.split_at(4);
        assert_eq!(worker.complete(&first.iter().map(done).collect::<Vec<_>>()).expect("complete"), 4);
        // Its notification reaches the coordinator's connection asynchronously; let it arrive,
        // so that the read below consumes it.
        std::thread::sleep(Duration::from_millis(300));
        let mut got: Vec<u64> = (0..4).map(|_| ev.next_completed().expect("a result").trial_id).collect();
        assert_eq!(ev.takes(), 2, "a read when queueing, and one that found the first half");
        // The second half comes while the coordinator waits: it must read once, when notified,
        // not also right away (an empty read). No poll can fire meanwhile.
        ev.poll = Duration::from_secs(600);
        let second = second.to_vec();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            worker.complete(&second.iter().map(done).collect::<Vec<_>>()).expect("complete")
        });
        got.extend((0..4).map(|_| ev.next_completed().expect("a result").trial_id));
        assert_eq!(late.join().expect("the worker thread"), 4);
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert_eq!(ev.takes(), 3, "one more read, after the second half's notification");
    }
}
