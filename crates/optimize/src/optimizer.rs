//! The optimizer loop: drives a [`Searcher`] over an [`Evaluator`], records every trial in a
//! [`TrialStore`], resumes from it, and reports progress to an [`Observer`].
//!
//! Two modes:
//! - **async** (default): keeps every worker busy; results are fed to the searcher as they
//!   complete and new brackets start whenever all active ones wait at a barrier. Which configs
//!   get suggested depends on completion timing, so results vary run to run.
//! - **deterministic**: stages run synchronously. The optimizer takes every trial the searcher
//!   offers (up to [`DETERMINISTIC_BATCH`]), evaluates the batch on as many workers as exist,
//!   then feeds the outcomes in trial-id order. Same seed, same results, at any worker count
//!   (given an objective that is a function of its inputs).
//!
//! Resume: the store logs when each trial was suggested and when its outcome was fed. On
//! start, the optimizer replays that log through the fresh searcher (suggest → must produce the
//! same trial; feed → the recorded outcome), so its state is exactly what it was, in either
//! mode. Completed trials are never re-evaluated; trials that were in flight are evaluated
//! again. In deterministic mode a batch is recorded in one transaction, so a resumed run ends
//! with exactly the result of an uninterrupted one.

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Result};
use crate::evaluator::{Completion, Evaluator, Metrics, Outcome, TrialStatus};
use crate::searcher::{Mode, Searcher, Suggestion, Trial};
use crate::space::Space;
use crate::store::{TrialRecord, TrialStore};
use crate::value::{Config, config_json_text, config_to_json};

/// Upper bound on the trials suggested before a deterministic-mode barrier. A constant (not
/// the worker count), so the sequence of searcher calls never depends on capacity.
pub const DETERMINISTIC_BATCH: usize = 4096;

/// How long the optimizer waits for a result before it makes its store durable
/// ([`TrialStore::flush`]) and waits on. A stream of results that come closer together than
/// this is left to the store's own grouping (SQLite commits every 50 ms), so a fast search
/// costs a commit per 50 ms, not one per chunk of results; a result never sits uncommitted
/// for longer than that while the search waits.
pub const FLUSH_WHEN_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchOptions {
    /// Synchronous stages and in-order results (see the module docs).
    pub deterministic: bool,
    /// Reuse the outcome of an earlier successful trial with the same config and budget
    /// instead of evaluating again (recorded with `reused_from`; not counted in
    /// `evaluations`/`total_budget`). Sound when the objective is a function of config and
    /// budget, as a backtest is; BOHB on a grid-valued space proposes repeats often.
    /// HpBandSter has no such cache, so it is off by default.
    pub reuse_results: bool,
    /// Do not keep finished trials in [`SearchSummary::trials`]: the [`Observer`] sees each
    /// one as it is fed, and the summary keeps only counts and the incumbent. Memory then
    /// stays bounded however many trials the search runs (a 5.4M-point grid), given a store
    /// that does not hold them either ([`crate::NullStore`], or a durable store).
    pub streaming: bool,
}

/// One finished trial, as reported in the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSummary {
    /// Trial id.
    pub trial_id: u64,
    /// Config.
    pub config: Config,
    /// Budget.
    pub budget: f64,
    /// Bracket, for bracketed searchers.
    pub bracket: Option<u32>,
    /// Stage within the bracket.
    pub stage: Option<u32>,
    /// Outcome status.
    pub status: TrialStatus,
    /// Finite loss, if any.
    pub loss: Option<f64>,
    /// Metrics reported with the loss.
    pub metrics: Metrics,
    /// Crash message, if crashed.
    pub message: Option<String>,
    /// Time the evaluation took (its worker's own time on a pool: not the time it waited in
    /// a chunk behind other trials).
    pub duration_secs: f64,
    /// The earlier trial whose outcome was reused (see [`SearchOptions::reuse_results`]).
    pub reused_from: Option<u64>,
    /// Worker that ran it.
    pub worker: Option<u32>,
}

/// The incumbent.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// Trial that produced it.
    pub trial_id: u64,
    /// Its config.
    pub config: Config,
    /// Its loss.
    pub loss: f64,
    /// Its budget.
    pub budget: f64,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSummary {
    /// Best finite loss at the largest budget that has one (HpBandSter's incumbent is the best
    /// at max budget); ties go to the earlier trial.
    pub best: Option<Best>,
    /// Finished evaluations, crashed ones included (replayed ones too), reused ones excluded.
    pub evaluations: u64,
    /// Trials answered from an earlier identical trial.
    pub reused: u64,
    /// Sum of the budgets of all finished evaluations.
    pub total_budget: f64,
    /// Finished trials replayed from the store rather than evaluated in this run.
    pub replayed: u64,
    /// Every finished trial, in the order fed to the searcher; empty with
    /// [`SearchOptions::streaming`].
    pub trials: Vec<TrialSummary>,
}

impl SearchSummary {
    /// Counts `t` and updates the incumbent (the caller keeps `t` in `trials`, or not).
    fn count(&mut self, t: &TrialSummary) {
        if t.reused_from.is_some() {
            self.reused += 1;
        } else {
            self.evaluations += 1;
            self.total_budget += t.budget;
        }
        if let Some(loss) = t.loss {
            let better = match &self.best {
                None => true,
                Some(b) => t.budget > b.budget || (t.budget == b.budget && loss < b.loss),
            };
            if better {
                self.best = Some(Best { trial_id: t.trial_id, config: t.config.clone(), loss, budget: t.budget });
            }
        }
    }

    /// The summary in the CLI's JSON shape, minus what the glue adds (`sharpe`, `wall_seconds`):
    /// `{"best": {"params", "loss", "budget"}, "evaluations", "total_budget",
    /// "trials": [{"params", "budget", "loss", "status", "trial_id", "bracket", "stage"}]}`,
    /// plus `"fidelity"` ([`crate::fidelity`]) for bracket searches. `bracket` and `stage` are
    /// null outside bracket searches.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "best": self.best.as_ref().map(|b| serde_json::json!({
                "params": config_to_json(&b.config), "loss": b.loss, "budget": b.budget})),
            "evaluations": self.evaluations,
            "total_budget": self.total_budget,
            "trials": self.trials.iter().map(|t| serde_json::json!({
                "params": config_to_json(&t.config), "budget": t.budget, "loss": t.loss,
                "status": t.status.as_str(), "trial_id": t.trial_id, "bracket": t.bracket,
                "stage": t.stage})).collect::<Vec<_>>(),
        });
        if self.trials.iter().any(|t| t.bracket.is_some()) {
            json["fidelity"] = serde_json::Value::Array(
                crate::fidelity(&self.trials)
                    .iter()
                    .map(
                        |p| serde_json::json!({"low": p.low, "high": p.high, "pairs": p.pairs, "spearman": p.spearman}),
                    )
                    .collect(),
            );
        }
        json
    }
}

/// Progress after each finished trial.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The trial that just finished.
    pub trial: &'a TrialSummary,
    /// Whether it was replayed from the store.
    pub replayed: bool,
    /// Finished evaluations so far.
    pub evaluations: u64,
    /// Budget spent so far.
    pub total_budget: f64,
    /// Incumbent so far.
    pub best: Option<&'a Best>,
    /// The trials the searcher will suggest at most, when it knows ([`Searcher::planned`]),
    /// counting those replayed from the store.
    pub planned: Option<u64>,
}

/// Receives progress; the CLI draws its bar from it. The library never prints.
pub trait Observer {
    /// Called after every finished trial.
    fn on_trial(&mut self, progress: &Progress<'_>);
}

impl Observer for () {
    fn on_trial(&mut self, _progress: &Progress<'_>) {}
}

impl<F: FnMut(&Progress<'_>)> Observer for F {
    fn on_trial(&mut self, progress: &Progress<'_>) {
        self(progress)
    }
}

/// The identity stored with a study: space, searcher (with its seed) and mode.
pub fn study_identity(space: &Space, searcher: &dyn Searcher, options: SearchOptions) -> serde_json::Value {
    serde_json::json!({
        "space": space.identity_json(),
        "searcher": searcher.identity(),
        "mode": if options.deterministic { "deterministic" } else { "async" },
        "reuse_results": options.reuse_results,
    })
}

struct Run<'a> {
    searcher: &'a mut dyn Searcher,
    observer: &'a mut dyn Observer,
    summary: SearchSummary,
    seq: u64,
    /// Suggested, not yet fed: the trial as suggested.
    outstanding: BTreeMap<u64, Trial>,
    /// Successful fed outcomes by (config JSON, budget bits), for `reuse_results`.
    cache: BTreeMap<(String, u64), (u64, Outcome)>,
    reuse: bool,
    streaming: bool,
    planned: Option<u64>,
}

/// A completion not yet fed, with the trial it reused, if any.
type Ready = BTreeMap<u64, (Completion, Option<u64>)>;

fn cache_key(t: &Trial) -> (String, u64) {
    (config_json_text(&t.config), t.budget.to_bits())
}

impl Run<'_> {
    /// A completion answering `t` from the cache, if reuse is on and one exists.
    fn reuse_for(&self, t: &Trial) -> Option<(Completion, u64)> {
        if !self.reuse {
            return None;
        }
        let (orig, outcome) = self.cache.get(&cache_key(t))?;
        Some((Completion { trial_id: t.id, outcome: outcome.clone(), duration_secs: 0.0, worker: None }, *orig))
    }

    fn feed(&mut self, c: Completion, replayed: bool, reused_from: Option<u64>) -> Result<()> {
        let trial = self
            .outstanding
            .remove(&c.trial_id)
            .ok_or_else(|| Error::Evaluator(format!("completion for unknown trial {}", c.trial_id)))?;
        self.searcher.observe(c.trial_id, &c.outcome)?;
        if self.reuse && c.outcome.status() == TrialStatus::Ok {
            self.cache.entry(cache_key(&trial)).or_insert((reused_from.unwrap_or(c.trial_id), c.outcome.clone()));
        }
        let (status, loss) = (c.outcome.status(), c.outcome.finite_loss());
        let (metrics, message) = match c.outcome {
            Outcome::Ok { metrics, .. } => (metrics, None),
            Outcome::Crashed { message } => (Metrics::new(), Some(message)),
        };
        let summary = TrialSummary {
            trial_id: c.trial_id,
            config: trial.config,
            budget: trial.budget,
            bracket: trial.bracket,
            stage: trial.stage,
            status,
            loss,
            metrics,
            message,
            duration_secs: c.duration_secs,
            worker: c.worker,
            reused_from,
        };
        self.summary.count(&summary);
        if replayed {
            self.summary.replayed += 1;
        }
        let s = &self.summary;
        self.observer.on_trial(&Progress {
            trial: &summary,
            replayed,
            evaluations: s.evaluations,
            total_budget: s.total_budget,
            best: s.best.as_ref(),
            planned: self.planned,
        });
        if !self.streaming {
            self.summary.trials.push(summary);
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }
}

/// Compare configs by their JSON text, exactly as written to the store (no float re-parsing).
fn same_json(config: &serde_json::Value, stored: &str) -> bool {
    let text = config.to_string();
    text.as_str() == stored
}

/// Run (or resume) a search to the end and return its summary.
///
/// The optimizer knows nothing about processes, pools or backtests: `evaluator` is the glue.
/// An evaluator error aborts the run with that error; everything already recorded in `store`
/// is kept, and calling `optimize` again with a fresh searcher built from the same settings
/// continues the study.
pub fn optimize(
    space: &Space,
    searcher: &mut dyn Searcher,
    evaluator: &mut dyn Evaluator,
    store: &mut dyn TrialStore,
    options: SearchOptions,
    observer: &mut dyn Observer,
) -> Result<SearchSummary> {
    let identity = study_identity(space, searcher, options);
    let mode = if options.deterministic { Mode::Synchronous } else { Mode::Async };
    let planned = searcher.planned();
    let mut run = Run {
        searcher,
        observer,
        summary: SearchSummary::default(),
        seq: 0,
        outstanding: BTreeMap::new(),
        cache: BTreeMap::new(),
        reuse: options.reuse_results,
        streaming: options.streaming,
        planned,
    };

    // Replay the event log as the store streams it, in suggestion order. A trial's feed event
    // comes after its suggestion, so the events in sequence order are the suggestions in
    // stream order with each feed slotted in before the first suggestion that followed it:
    // `feeds` holds the feeds not yet due, never more than were outstanding at one time.
    let mut feeds: BTreeMap<u64, (Completion, Option<u64>)> = BTreeMap::new();
    // Outstanding after replay: completed-but-unfed trials are ready; the rest were in flight.
    let mut ready: Ready = BTreeMap::new();
    let mut unfinished: Vec<u64> = Vec::new();
    let mut next_seq: u64 = 0;
    let mut last_suggest: Option<u64> = None;
    store.open_study(&identity, &mut |r: TrialRecord| {
        if let Some(last) = last_suggest.filter(|&l| l >= r.suggest_seq) {
            return Err(Error::Store(format!(
                "trial {} was suggested at event {}, not after the previous trial's event {last}: \
                 the store's trials are not in suggestion order",
                r.trial_id, r.suggest_seq
            )));
        }
        last_suggest = Some(r.suggest_seq);
        while let Some(entry) = feeds.first_entry() {
            if *entry.key() > r.suggest_seq {
                break;
            }
            let (c, reused) = entry.remove();
            run.feed(c, true, reused)?;
        }
        match run.searcher.suggest(mode)? {
            Suggestion::Trial(t)
                if t.id == r.trial_id
                    && t.budget == r.budget
                    && same_json(&config_to_json(&t.config), &r.config_json) =>
            {
                run.outstanding.insert(t.id, t);
            }
            other => {
                return Err(Error::StudyMismatch(format!(
                    "replay diverged at trial {}: the store has {} at budget {}, the searcher now gives {other:?}",
                    r.trial_id, r.config_json, r.budget
                )));
            }
        }
        next_seq = next_seq.max(r.suggest_seq + 1);
        match (r.feed_seq, r.completion) {
            (Some(f), Some(c)) => {
                if f <= r.suggest_seq || feeds.insert(f, (c, r.reused_from)).is_some() {
                    return Err(Error::Store(format!("trial {}: feed event {f} out of place", r.trial_id)));
                }
                next_seq = next_seq.max(f + 1);
            }
            (Some(_), None) => return Err(Error::Store(format!("trial {} was fed but has no outcome", r.trial_id))),
            (None, Some(c)) => {
                ready.insert(r.trial_id, (c, r.reused_from));
            }
            (None, None) => unfinished.push(r.trial_id),
        }
        Ok(())
    })?;
    for (_, (c, reused)) in std::mem::take(&mut feeds) {
        run.feed(c, true, reused)?;
    }
    run.seq = next_seq;
    // Trials to submit, by id: the trial itself stays in `outstanding` until it is fed.
    let mut pending: VecDeque<u64> = unfinished.into_iter().collect();

    // Capacity is read afresh each time: a pool that batches tasks into chunks wants more in
    // flight as its chunks grow. Deterministic results do not depend on it (outcomes are fed
    // in trial-id order after each batch).
    let mut in_flight: usize = 0;
    if options.deterministic {
        loop {
            if run.outstanding.is_empty() {
                let mut batch = Vec::new();
                while batch.len() < DETERMINISTIC_BATCH {
                    match run.searcher.suggest(mode)? {
                        Suggestion::Trial(t) => {
                            let seq = run.next_seq();
                            batch.push((t, seq));
                        }
                        Suggestion::Wait if batch.is_empty() => {
                            return Err(Error::Stalled("searcher waits with nothing running".into()));
                        }
                        Suggestion::Wait | Suggestion::Done => break,
                    }
                }
                if batch.is_empty() {
                    break;
                }
                store.record_suggested(&batch)?;
                for (t, _) in batch {
                    pending.push_back(t.id);
                    run.outstanding.insert(t.id, t);
                }
            }
            while !pending.is_empty() || in_flight > 0 {
                while in_flight < evaluator.capacity().max(1) {
                    let Some(id) = pending.pop_front() else { break };
                    let t = &run.outstanding[&id];
                    if let Some((c, orig)) = run.reuse_for(t) {
                        store.record_completed(&c, Some(orig), None)?;
                        ready.insert(c.trial_id, (c, Some(orig)));
                        continue;
                    }
                    evaluator.submit(t.id, &t.config, t.budget)?;
                    in_flight += 1;
                }
                if in_flight == 0 {
                    continue;
                }
                if !evaluator.has_completed() && !evaluator.wait_completed(FLUSH_WHEN_IDLE)? {
                    store.flush()?;
                }
                let c = evaluator.next_completed()?;
                if !run.outstanding.contains_key(&c.trial_id) || ready.contains_key(&c.trial_id) {
                    return Err(Error::Evaluator(format!("unexpected completion for trial {}", c.trial_id)));
                }
                in_flight -= 1;
                store.record_completed(&c, None, None)?;
                ready.insert(c.trial_id, (c, None));
            }
            let mut fed = Vec::with_capacity(ready.len());
            for (id, (c, orig)) in std::mem::take(&mut ready) {
                run.feed(c, false, orig)?;
                let seq = run.next_seq();
                fed.push((id, seq));
            }
            store.record_fed(&fed)?;
        }
    } else {
        // Recovered completions first, in id order.
        for (id, (c, orig)) in std::mem::take(&mut ready) {
            run.feed(c, false, orig)?;
            let seq = run.next_seq();
            store.record_fed(&[(id, seq)])?;
        }
        loop {
            let mut last = Suggestion::Wait;
            // Whether the searcher said Wait or Done in this round: it is not asked again
            // before a completion is fed.
            let mut paused = false;
            while in_flight < evaluator.capacity().max(1) {
                let id = match pending.pop_front() {
                    Some(id) => id,
                    None if paused => break,
                    None => {
                        // The free capacity's suggestions, recorded in one call (one statement
                        // on a database store, not one per trial), then submitted in order.
                        // With result reuse, one at a time: a reused trial is fed before the
                        // next suggestion, which may depend on it.
                        let room = if run.reuse { 1 } else { evaluator.capacity().max(1) - in_flight };
                        let mut fresh = Vec::new();
                        while fresh.len() < room {
                            match run.searcher.suggest(mode)? {
                                Suggestion::Trial(t) => {
                                    let seq = run.next_seq();
                                    fresh.push((t, seq));
                                }
                                other => {
                                    last = other;
                                    paused = true;
                                    break;
                                }
                            }
                        }
                        if fresh.is_empty() {
                            break;
                        }
                        store.record_suggested(&fresh)?;
                        for (t, _) in fresh {
                            pending.push_back(t.id);
                            run.outstanding.insert(t.id, t);
                        }
                        continue;
                    }
                };
                if let Some((c, orig)) = run.reuse_for(&run.outstanding[&id]) {
                    let seq = run.next_seq();
                    store.record_completed(&c, Some(orig), Some(seq))?;
                    run.feed(c, false, Some(orig))?;
                    continue;
                }
                let t = &run.outstanding[&id];
                evaluator.submit(t.id, &t.config, t.budget)?;
                in_flight += 1;
            }
            if in_flight == 0 {
                match last {
                    Suggestion::Done => break,
                    _ => return Err(Error::Stalled("searcher waits with nothing running".into())),
                }
            }
            if !evaluator.has_completed() && !evaluator.wait_completed(FLUSH_WHEN_IDLE)? {
                store.flush()?;
            }
            // Every result already at hand is fed before the searcher is asked again, so the
            // capacity they free is refilled, and recorded, in one batch: one statement per
            // chunk of results on a database store, not one per trial.
            loop {
                let c = evaluator.next_completed()?;
                if !run.outstanding.contains_key(&c.trial_id) {
                    return Err(Error::Evaluator(format!("unexpected completion for trial {}", c.trial_id)));
                }
                in_flight -= 1;
                let seq = run.next_seq();
                store.record_completed(&c, None, Some(seq))?;
                run.feed(c, false, None)?;
                if in_flight == 0 || !evaluator.has_completed() {
                    break;
                }
            }
        }
    }
    store.flush()?;
    Ok(run.summary)
}
