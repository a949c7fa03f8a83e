//! `btopt optimize`: a search over a parameter space, on a worker pool, with an optional
//! durable trial store; with a PostgreSQL store, the coordinator of a distributed study.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use runner::{HandleMode, PoolKind, SpawnLoad};

use crate::distributed::{QueueEvaluator, TaskSpec, local_evaluator};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum PoolArg {
    Fork,
    Spawn,
    Thread,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum HandlesArg {
    Inherit,
    Reopen,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum SpawnLoadArg {
    Load,
    Mmap,
}

/// `btopt optimize` arguments (the command-line contract, plus range, fee and pool tuning).
#[derive(Args, Debug)]
pub(crate) struct OptimizeArgs {
    /// The bundle directory.
    #[arg(long)]
    pub(crate) bundle: PathBuf,
    /// The strategy (`strategies` lists each one's parameters).
    #[arg(long)]
    pub(crate) strategy: String,
    /// The parameter space, a TOML file.
    #[arg(long)]
    pub(crate) space: PathBuf,
    /// grid, random, hyperband or bohb.
    #[arg(long)]
    pub(crate) search: String,
    /// Worker pool backend [default: fork on unix, spawn elsewhere].
    #[arg(long)]
    pub(crate) pool: Option<PoolArg>,
    /// Number of workers [default: available cores]; 0 only with a PostgreSQL store, where
    /// `btopt worker` processes do the work.
    #[arg(long)]
    pub(crate) workers: Option<u16>,
    /// What a budget means: `recent` evaluates the last ceil(b·T) sessions; `blocks` takes them
    /// as evenly spaced blocks across the range (see the engine's docs).
    #[arg(long, default_value = "recent", value_parser = clap::builder::PossibleValuesParser::new(engine::Fidelity::NAMES))]
    pub(crate) fidelity: String,
    /// Smallest budget (hyperband, bohb).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) min_budget: f64,
    /// Largest budget; grid and random evaluate at this budget.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) max_budget: f64,
    /// Successive-halving factor (hyperband, bohb).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) eta: f64,
    /// Number of brackets (hyperband, bohb).
    #[arg(long, default_value_t = 10)]
    pub(crate) iterations: usize,
    /// Cap on evaluations (grid, random).
    #[arg(long)]
    pub(crate) evaluations: Option<u64>,
    /// Seed of every random choice of the search.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Synchronous stages: the same result for the same seed at any worker count.
    #[arg(long)]
    pub(crate) deterministic: bool,
    /// Trial store: FILE or sqlite:FILE (one machine), or postgresql://USER@HOST:PORT/DB
    /// (a distributed study); records every trial and resumes an interrupted run.
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// The study's name in a PostgreSQL store [default: the study's identity hash].
    #[arg(long)]
    pub(crate) study: Option<String>,
    /// PostgreSQL store: seconds without a heartbeat after which the trials of this
    /// process's own workers go back to the queue.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) lease: f64,
    /// PostgreSQL store: how many times a trial is handed to a worker; when its lease expires
    /// on the last of them (every worker that ran it died), it is a crashed trial and the
    /// search goes on [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: Option<u32>,
    /// A fixed strategy parameter, NAME=VALUE (repeatable); the space overrides it.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) set: Vec<String>,
    #[command(flatten)]
    pub(crate) range: crate::RangeArgs,
    /// Fork backend: use SQLite handles inherited from the parent, or reopen them per child.
    #[arg(long, default_value = "inherit")]
    pub(crate) handles: HandlesArg,
    /// Spawn backend: load the bundle in each worker, or map its columnar cache.
    #[arg(long, default_value = "load")]
    pub(crate) spawn_load: SpawnLoadArg,
    /// Kill and retry a backtest that runs longer than this many seconds.
    #[arg(long)]
    pub(crate) task_timeout: Option<f64>,
    /// CSCV blocks S for the probability of backtest overfitting: even, at least 4.
    #[arg(long)]
    pub(crate) cscv_blocks: Option<usize>,
    /// Cap on the full-budget trials the overfitting statistics use; above it they use a
    /// seeded uniform subsample of this many, chosen as trials finish: those with the smallest
    /// keyed hash of (--seed, trial id), whatever order they finish in.
    #[arg(long, default_value_t = overfitting::DEFAULT_MAX_TRIALS)]
    pub(crate) overfitting_max_trials: usize,
    /// Write every trial to this Parquet file (one row each); `--json` then leaves out
    /// `trials` and names the file in `trials_file`.
    #[arg(long, value_name = "FILE.parquet")]
    pub(crate) trials_out: Option<PathBuf>,
    /// Skip the overfitting statistics (and the per-session returns they need).
    #[arg(long)]
    pub(crate) no_overfitting: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What `optimize` and `walkforward` check before any work: the space against the
/// strategy's table, the fixed parameters, the search settings, the CSCV blocks and the pool.
pub(crate) struct Prepared {
    pub(crate) space: optimize::Space,
    pub(crate) base: engine::Configured,
    pub(crate) spec: optimize::SearchSpec,
    pub(crate) blocks: usize,
    pub(crate) kind: PoolKind,
    pub(crate) workers: usize,
    /// The parsed `--store`, if any.
    pub(crate) location: Option<store::Location>,
}

impl Prepared {
    /// Everything that can fail cheaply, checked before the bundle is loaded and before any
    /// pool, store or file exists: a bad space or parameter is a usage error (exit 2).
    pub(crate) fn new(a: &OptimizeArgs, strategies: &engine::Registry) -> Result<Prepared> {
        let space = optimize::Space::from_toml_file(&a.space)
            .map_err(|e| crate::usage(format!("invalid space {}: {e}", a.space.display())))?;
        let base = crate::backtest_cmd::configure(strategies, &a.strategy, &a.set)?;
        runner::check_space(&**base.strategy(), &space)
            .map_err(|e| crate::usage(format!("{}: {e}", a.space.display())))?;
        let spec = optimize::SearchSpec {
            kind: a.search.parse().map_err(|e| crate::usage(format!("invalid --search: {e}")))?,
            min_budget: a.min_budget,
            max_budget: a.max_budget,
            eta: a.eta,
            iterations: a.iterations,
            evaluations: a.evaluations,
            seed: a.seed,
        };
        spec.build(&space).map_err(|e| crate::usage(format!("invalid search settings: {e}")))?;
        if let Some(dir) = a.trials_out.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(crate::usage(format!("--trials-out: directory {} does not exist", dir.display())));
        }
        let blocks = a.cscv_blocks.unwrap_or(overfitting::DEFAULT_CSCV_BLOCKS);
        overfitting::check_blocks(blocks).map_err(|e| crate::usage(format!("invalid --cscv-blocks: {e}")))?;
        if a.overfitting_max_trials < 2 {
            return Err(crate::usage("invalid --overfitting-max-trials: the statistics need at least 2 trials"));
        }
        let workers =
            a.workers.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
        let kind = pool_kind(a.pool, a.handles, a.spawn_load);
        let location = a
            .store
            .as_deref()
            .map(store::Location::parse)
            .transpose()
            .map_err(|e| crate::usage(format!("invalid --store: {e}")))?;
        let distributed = matches!(location, Some(store::Location::Postgres(_)));
        if workers == 0 && !distributed {
            return Err(crate::usage(
                "--workers 0 needs a postgresql:// store, where btopt worker processes do the work",
            ));
        }
        if a.study.is_some() && !distributed {
            return Err(crate::usage("--study needs --store postgresql://USER@HOST:PORT/DB"));
        }
        if a.max_attempts.is_some() && !distributed {
            return Err(crate::usage(
                "--max-attempts needs --store postgresql://USER@HOST:PORT/DB (a local pool retries a lost worker's task itself)",
            ));
        }
        if !(a.lease.is_finite() && a.lease > 0.0) {
            return Err(crate::usage("--lease must be a positive number of seconds"));
        }
        Ok(Prepared { space, base, spec, blocks, kind, workers, location })
    }

    /// Builds the pool; call it while this process is still single-threaded (it forks).
    pub(crate) fn pool(
        &self,
        a: &OptimizeArgs,
        bundle: &Arc<bundle::Bundle>,
        strategies: &Arc<engine::Registry>,
    ) -> Result<pool::Pool<runner::BacktestWorker>> {
        let mut builder = pool::PoolBuilder::new().workers(self.workers);
        if let Some(t) = a.task_timeout {
            builder = builder.task_timeout(Duration::from_secs_f64(t));
        }
        // The SMAs or momentum tables every config can read, computed once here and shared by
        // the workers (spawned workers cannot inherit them and build their own).
        let budget = runner::tables_budget().map_err(|e| crate::usage(e.to_string()))?;
        let tables = match self.kind {
            PoolKind::Spawn(_) => runner::SharedTables::none(),
            _ => runner::tables_for(&**self.base.strategy(), self.base.values(), &self.space, bundle, budget)
                .context("failed to build the shared indicator tables")?,
        };
        if let Some(line) = runner::shortfall(&tables, budget) {
            eprintln!("{line}");
        }
        runner::build_pool_with(self.kind, builder, bundle, &tables, &a.bundle, strategies)
            .context("failed to start the pool")
    }
}

/// A thread pool of this machine's cores, for a coordinator without workers of its own to
/// compute the overfitting statistics' backtests (threads: it has database connections open,
/// so it may not fork).
fn coordinator_pool(
    a: &OptimizeArgs,
    strategies: &Arc<engine::Registry>,
) -> Result<pool::Pool<runner::BacktestWorker>> {
    let bundle = Arc::new(crate::bundle_cmd::open(&a.bundle)?);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let builder = pool::PoolBuilder::new().workers(workers);
    runner::build_pool_with(PoolKind::Thread, builder, &bundle, &runner::SharedTables::none(), &a.bundle, strategies)
        .context("failed to start a thread pool for the overfitting statistics")
}

pub(crate) fn run(a: &OptimizeArgs, strategies: &Arc<engine::Registry>) -> Result<()> {
    let started = Instant::now();
    let prep = Prepared::new(a, strategies)?;
    let (space, base, blocks) = (&prep.space, &prep.base, prep.blocks);
    let strategy = base.strategy().clone();
    let mut searcher = prep.spec.build(space)?;

    // A coordinator with no workers of its own runs no backtest: the bundle's metadata and
    // sessions are all it reads (its workers load the bars), so that it queues the first
    // trials while they are still loading.
    let bundle = match prep.workers {
        0 => None,
        _ => Some(Arc::new(crate::bundle_cmd::open(&a.bundle)?)),
    };
    let (frequency, bundle_hash, all_sessions) = match &bundle {
        Some(b) => (b.frequency(), b.content_hash().to_string(), b.sessions().to_vec()),
        None => {
            let (meta, all) = bundle::store::read_sessions(&a.bundle).context("failed to read the bundle")?;
            (meta.frequency, meta.content_hash, all)
        }
    };
    crate::backtest_cmd::check_frequency(&*strategy, frequency)?;
    let sessions = runner::sessions_between(&all_sessions, a.range.start, a.range.end)?;
    // CSCV needs 2 returns per block; asked for explicitly, too few is a usage error, and by
    // default the statistics are skipped with the reason.
    if a.cscv_blocks.is_some() && sessions.len() < 2 * blocks {
        return Err(crate::usage(format!(
            "--cscv-blocks {blocks} needs at least {} sessions of returns, the range has {}",
            2 * blocks,
            sessions.len()
        )));
    }
    let fidelity: engine::Fidelity = a.fidelity.parse().map_err(|e| crate::usage(format!("{e}")))?;
    // The pool forks here, while this process is still single-threaded; every database
    // connection comes after it.
    let mut pool = bundle.map(|b| prep.pool(a, &b, strategies)).transpose()?;

    // Trials stream: the optimizer keeps none, and the sink writes or keeps what the output
    // needs, so memory is bounded whatever the size of the search.
    let options = optimize::SearchOptions { deterministic: a.deterministic, reuse_results: false, streaming: true };
    let mut sink = TrialSink::new(a, space, prep.spec.seed)?;
    let mut progress = ProgressView::new(a.json);
    let mut observer = |p: &optimize::Progress<'_>| {
        sink.offer(p.trial);
        progress.update(p);
    };
    let (summary, overfit) = match (&prep.location, a.store.as_deref()) {
        (Some(store::Location::Postgres(target)), Some(url)) => {
            let spec = TaskSpec {
                strategy: a.strategy.clone(),
                set: a.set.clone(),
                sessions: sessions.clone(),
                fee: a.range.fee,
                fidelity: a.fidelity.clone(),
                sma_windows: runner::sma_windows(&*strategy, base.values(), space),
                momentum_lookbacks: runner::momentum_lookbacks(&*strategy, base.values(), space),
            };
            let task = store::StudyTask { bundle_hash, task: spec.to_json() };
            let mut opened =
                store::open(url, a.study.as_deref(), Some(task)).context("failed to open the trial store")?;
            let store::Opened::Postgres { store: pg, .. } = &mut opened else { unreachable!("a postgresql:// store") };
            pg.set_max_attempts(a.max_attempts.unwrap_or(store::DEFAULT_MAX_ATTEMPTS));
            // Every suggested trial goes to the queue (no result is reused): insert it queued.
            pg.queue_suggested(!options.reuse_results);
            let name = pg.study_name(&optimize::study_identity(space, &*searcher, options));
            let lease = Duration::from_secs_f64(a.lease);
            let connect =
                || store::Queue::connect(target, &name, lease).context("failed to connect to the study database");
            let local = pool.as_mut().map(|p| local_evaluator(p, strategies, &spec)).transpose()?;
            // Deterministic stages, and grid and random search (whose suggestions never depend
            // on results), queue everything they can at once; async brackets keep a bounded
            // number queued, so that the searcher's model sees results before it suggests more.
            let unbounded =
                a.deterministic || matches!(prep.spec.kind, optimize::SearchKind::Grid | optimize::SearchKind::Random);
            let capacity = if unbounded { optimize::DETERMINISTIC_BATCH } else { (4 * prep.workers).max(64) };
            let mut evaluator = QueueEvaluator::new(connect, local, prep.workers, lease, capacity);
            let summary = optimize::optimize(space, &mut *searcher, &mut evaluator, &mut **pg, options, &mut observer)
                .context("optimization failed")?;
            pg.finish().context("failed to mark the study finished")?;
            drop(evaluator);
            progress.finish();
            let overfit = match sink.sample.take() {
                None => Err("disabled by --no-overfitting".to_string()),
                Some(sample) => {
                    // The workers send outcomes only; the sample's moments and the best
                    // trial's returns are computed here, on this machine's pool, or on a
                    // thread pool of its cores for `--workers 0` (no fork: connections are
                    // open). The same backtests as a local run's, so the same statistics.
                    let mut own;
                    let pool = match pool.as_mut() {
                        Some(p) => p,
                        None => {
                            own = coordinator_pool(a, strategies)?;
                            &mut own
                        }
                    };
                    let id = strategies.id_of(strategy.name())?;
                    runner::PoolEvaluator::new(pool, strategy, id, *base.values(), Some(sessions), a.range.fee)
                        .with_fidelity(fidelity)
                        .overfitting(sample, blocks)
                        .map_err(|e| anyhow::anyhow!("failed to compute the returns' moments: {e}"))?
                }
            };
            (summary, overfit)
        }
        _ => {
            let mut opened = a
                .store
                .as_deref()
                .map(|s| store::open(s, None, None))
                .transpose()
                .context("failed to open the trial store")?;
            let mut nothing = optimize::NullStore;
            let store: &mut dyn optimize::TrialStore = match &mut opened {
                Some(o) => o.trial_store(),
                None => &mut nothing,
            };
            let pool = pool.as_mut().expect("workers > 0 without a PostgreSQL store");
            let id = strategies.id_of(strategy.name())?;
            let mut evaluator =
                runner::PoolEvaluator::new(pool, strategy, id, *base.values(), Some(sessions), a.range.fee)
                    .with_fidelity(fidelity);
            if !a.no_overfitting {
                evaluator = evaluator.collect_moments(FULL_BUDGET, a.overfitting_max_trials, blocks);
            }
            let summary = optimize::optimize(space, &mut *searcher, &mut evaluator, store, options, &mut observer)
                .context("optimization failed")?;
            progress.finish();
            let overfit = match sink.sample.take() {
                None => Err("disabled by --no-overfitting".to_string()),
                Some(sample) => evaluator
                    .overfitting(sample, blocks)
                    .map_err(|e| anyhow::anyhow!("failed to collect the returns' moments: {e}"))?,
            };
            (summary, overfit)
        }
    };
    let wall = started.elapsed().as_secs_f64();

    // HpBandSter's advice: below ρ = 0.2 between budgets, low budgets say little about high
    // ones, and Hyperband or BOHB should not be expected to help.
    let fidelity = if sink.bracketed.is_empty() { Vec::new() } else { optimize::fidelity(&sink.bracketed) };
    for p in &fidelity {
        if let Some(rho) = p.spearman.filter(|r| *r < optimize::WEAK_RANK_CORRELATION) {
            eprintln!(
                "warning: rank correlation of losses between budgets {} and {} is {rho:.3} over {} configs \
                 (below {}): low budgets say little about high ones here",
                p.low,
                p.high,
                p.pairs,
                optimize::WEAK_RANK_CORRELATION
            );
        }
    }
    let spool = sink.finish()?;
    if a.json {
        let mut json = summary.to_json();
        json.as_object_mut().map(|o| o.remove("trials"));
        if let Some(path) = &a.trials_out {
            json["trials_file"] = serde_json::json!(path.display().to_string());
        }
        if !fidelity.is_empty() {
            json["fidelity"] = serde_json::Value::Array(
                fidelity
                    .iter()
                    .map(
                        |p| serde_json::json!({"low": p.low, "high": p.high, "pairs": p.pairs, "spearman": p.spearman}),
                    )
                    .collect(),
            );
        }
        if let Some(best) = json.get_mut("best").and_then(|b| b.as_object_mut()) {
            let loss = best.get("loss").and_then(|l| l.as_f64()).unwrap_or(f64::NAN);
            best.insert("sharpe".into(), serde_json::json!(-loss));
        }
        json["wall_seconds"] = serde_json::json!(wall);
        match &overfit {
            Ok(o) => {
                json["overfitting"] = serde_json::json!({
                    "trials": o.trials, "returns": o.returns, "cscv_blocks": o.cscv_blocks, "pbo": o.pbo,
                    "deflated_sharpe": o.deflated_sharpe, "expected_max_sharpe": o.expected_max_sharpe,
                    "best_sharpe": o.best_sharpe,
                });
            }
            Err(reason) => {
                json["overfitting"] = serde_json::Value::Null;
                json["overfitting_skipped"] = serde_json::json!(reason);
            }
        }
        print_json(&json, spool)?;
    } else {
        match &summary.best {
            Some(b) => {
                let params: Vec<String> =
                    optimize::render_pairs(&b.config).iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("best          {}", params.join(" "));
                println!("sharpe        {:.6} (budget {})", -b.loss, b.budget);
            }
            None => println!("best          none (every trial failed)"),
        }
        println!("evaluations   {}", summary.evaluations);
        for p in &fidelity {
            let rho = p.spearman.map_or("-".to_string(), |r| format!("{r:.3}"));
            println!("fidelity      budget {} -> {}: spearman {rho} over {} configs", p.low, p.high, p.pairs);
        }
        println!("total_budget  {:.4}", summary.total_budget);
        match &overfit {
            Ok(o) => println!("overfitting   {}", o.reading()),
            Err(reason) => println!("overfitting   skipped: {reason}"),
        }
        println!("wall_seconds  {wall:.3}");
    }
    Ok(())
}

/// The budget whose trials the overfitting statistics use (design-notes section 9).
const FULL_BUDGET: f64 = 1.0;

/// The pool backend for `--pool` (default: fork on unix, spawn elsewhere).
pub(crate) fn pool_kind(pool: Option<PoolArg>, h: HandlesArg, s: SpawnLoadArg) -> PoolKind {
    match pool {
        None => match PoolKind::platform_default() {
            PoolKind::Fork(_) => PoolKind::Fork(handles(h)),
            _ => PoolKind::Spawn(spawn_load(s)),
        },
        Some(PoolArg::Fork) => PoolKind::Fork(handles(h)),
        Some(PoolArg::Spawn) => PoolKind::Spawn(spawn_load(s)),
        Some(PoolArg::Thread) => PoolKind::Thread,
    }
}

fn handles(h: HandlesArg) -> HandleMode {
    match h {
        HandlesArg::Inherit => HandleMode::Inherit,
        HandlesArg::Reopen => HandleMode::Reopen,
    }
}

fn spawn_load(s: SpawnLoadArg) -> SpawnLoad {
    match s {
        SpawnLoadArg::Load => SpawnLoad::Load,
        SpawnLoadArg::Mmap => SpawnLoad::Mmap,
    }
}

/// Where finished trials go as the search streams them: the Parquet file (`--trials-out`),
/// the spool of `--json`'s `trials` (a temporary file, so the array never sits in memory),
/// the bracket trials the fidelity diagnostics read (a bracket search is bounded by its
/// schedule), and the overfitting statistics' sample.
struct TrialSink {
    parquet: Option<crate::trials_out::Writer>,
    spool: Option<std::io::BufWriter<std::fs::File>>,
    spooled: u64,
    bracketed: Vec<optimize::TrialSummary>,
    sample: Option<runner::TrialSample>,
    /// The first write error; the observer cannot fail, so the run reports it at the end.
    error: Option<anyhow::Error>,
}

impl TrialSink {
    fn new(a: &OptimizeArgs, space: &optimize::Space, seed: u64) -> Result<TrialSink> {
        let parquet = match &a.trials_out {
            Some(path) => Some(
                crate::trials_out::Writer::create(space, path)
                    .with_context(|| format!("failed to write {}", path.display()))?,
            ),
            None => None,
        };
        let spool = match a.json && a.trials_out.is_none() {
            true => Some(std::io::BufWriter::new(
                tempfile::tempfile().context("failed to create a temporary file for the trials")?,
            )),
            false => None,
        };
        let sample = (!a.no_overfitting).then(|| runner::TrialSample::new(FULL_BUDGET, a.overfitting_max_trials, seed));
        Ok(TrialSink { parquet, spool, spooled: 0, bracketed: Vec::new(), sample, error: None })
    }

    fn offer(&mut self, t: &optimize::TrialSummary) {
        if let Some(s) = &mut self.sample {
            s.offer(t);
        }
        if t.bracket.is_some() {
            self.bracketed.push(t.clone());
        }
        if self.error.is_some() {
            return;
        }
        if let Some(w) = &mut self.parquet
            && let Err(e) = w.push(t)
        {
            self.error = Some(e.context("failed to write the trials file"));
        }
        if let Some(spool) = &mut self.spool {
            use std::io::Write;
            let sep: &[u8] = if self.spooled == 0 { b"" } else { b"," };
            let written = spool
                .write_all(sep)
                .map_err(serde_json::Error::io)
                .and_then(|()| serde_json::to_writer(&mut *spool, &TrialLine::of(t)));
            if let Err(e) = written {
                self.error = Some(anyhow::Error::new(e).context("failed to spool the trials"));
            }
            self.spooled += 1;
        }
    }

    /// Closes the Parquet file (moving it into place) and returns the JSON spool, rewound.
    fn finish(mut self) -> Result<Option<std::fs::File>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(w) = self.parquet.take() {
            w.finish()?;
        }
        match self.spool.take() {
            Some(spool) => {
                use std::io::Seek;
                let mut file = spool.into_inner().map_err(|e| e.into_error()).context("failed to spool the trials")?;
                file.rewind()?;
                Ok(Some(file))
            }
            None => Ok(None),
        }
    }
}

/// One entry of `--json`'s `trials` array, written as the trial finishes. The fields are in
/// the order a JSON object built from them prints them (sorted), so the text is what
/// `SearchSummary::to_json` gives for the same trial.
#[derive(serde::Serialize)]
struct TrialLine<'a> {
    bracket: Option<u32>,
    budget: f64,
    loss: Option<f64>,
    params: optimize::PlainConfig<'a>,
    stage: Option<u32>,
    status: &'static str,
    trial_id: u64,
}

impl<'a> TrialLine<'a> {
    fn of(t: &'a optimize::TrialSummary) -> TrialLine<'a> {
        TrialLine {
            bracket: t.bracket,
            budget: t.budget,
            loss: t.loss,
            params: optimize::PlainConfig(&t.config),
            stage: t.stage,
            status: t.status.as_str(),
            trial_id: t.trial_id,
        }
    }
}

/// Prints `json` as one line, with the spooled trials as its `trials` array.
fn print_json(json: &serde_json::Value, spool: Option<std::fs::File>) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string(json)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match spool {
        Some(mut trials) => {
            // `{"trials":[…],` then the rest of the object without its opening brace.
            let rest = text.strip_prefix('{').context("the summary is not a JSON object")?;
            write!(out, "{{\"trials\":[")?;
            std::io::copy(&mut trials, &mut out)?;
            write!(out, "]{}{rest}", if rest == "}" { "" } else { "," })?;
        }
        None => write!(out, "{text}")?,
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A progress bar on a terminal (position, rate and ETA when the searcher knows how many
/// trials it plans), plain lines (at most one a second) otherwise, nothing with `--json`
/// when stderr is not a terminal.
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_line: Instant,
    started: Instant,
    finished: u64,
}

impl ProgressView {
    fn new(json: bool) -> ProgressView {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        let now = Instant::now();
        ProgressView { bar, plain: !tty && !json, last_line: now, started: now, finished: 0 }
    }

    fn update(&mut self, p: &optimize::Progress<'_>) {
        self.finished += 1;
        // At most one message every 100 ms (a line a second without a terminal): rendering
        // one per trial cost more than a cheap backtest.
        let every = if self.bar.is_some() { Duration::from_millis(100) } else { Duration::from_secs(1) };
        if !(self.bar.is_some() || self.plain) || self.last_line.elapsed() < every {
            return;
        }
        self.last_line = Instant::now();
        let best = p.best.map_or("-".to_string(), |b| format!("{:.4} @ budget {:.3}", -b.loss, b.budget));
        let msg = format!("best sharpe {best} | evaluations {} | budget spent {:.3}", p.evaluations, p.total_budget);
        match &self.bar {
            Some(bar) => {
                if let Some(planned) = p.planned.filter(|_| bar.length().is_none()) {
                    bar.set_length(planned);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "[{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta} | {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                }
                bar.set_position(self.finished);
                bar.set_message(msg);
            }
            None => eprintln!("{} | {msg}", plain_progress(self.finished, p.planned, self.started.elapsed())),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The position, rate and ETA of a plain progress line: `trials 120/1000 | 60/s | eta 15 s`.
fn plain_progress(finished: u64, planned: Option<u64>, elapsed: Duration) -> String {
    let rate = finished as f64 / elapsed.as_secs_f64().max(1e-9);
    match planned {
        Some(n) => {
            let eta = n.saturating_sub(finished) as f64 / rate.max(1e-9);
            format!("trials {finished}/{n} | {rate:.0}/s | eta {eta:.0} s")
        }
        None => format!("trials {finished} | {rate:.0}/s"),
    }
}

#[cfg(test)]
mod tests {
    use optimize::{Config, TrialStatus, TrialSummary, Value};

    /// The spooled `trials` entries must read exactly as the summary's own JSON renders them.
    #[test]
    fn a_trial_line_is_the_summarys_json_text() {
        let config: Config = [
            ("lookback_period".to_owned(), Value::Int(80)),
            ("volatility_threshold".to_owned(), Value::Float(0.3)),
            ("weighting_scheme".to_owned(), Value::Str("market_cap".into())),
        ]
        .into_iter()
        .collect();
        let trial = |bracket: Option<u32>, loss: Option<f64>, status| TrialSummary {
            trial_id: 7,
            config: config.clone(),
            budget: 1.0 / 3.0,
            bracket,
            stage: bracket.map(|b| b + 1),
            status,
            loss,
            metrics: Default::default(),
            message: None,
            duration_secs: 0.0,
            reused_from: None,
            worker: None,
        };
        for t in [trial(None, Some(-1.985), TrialStatus::Ok), trial(Some(2), None, TrialStatus::Crashed)] {
            let summary = optimize::SearchSummary { trials: vec![t.clone()], ..Default::default() };
            let want = summary.to_json()["trials"][0].to_string();
            assert_eq!(serde_json::to_string(&super::TrialLine::of(&t)).expect("json"), want);
        }
    }
}
