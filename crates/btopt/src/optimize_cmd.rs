//! `btopt optimize`: a search over a parameter space, on a worker pool, with an optional
//! durable trial store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use runner::{HandleMode, PoolKind, SpawnLoad};

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
    bundle: PathBuf,
    /// The strategy (`strategies` lists each one's parameters).
    #[arg(long)]
    strategy: String,
    /// The parameter space, a TOML file.
    #[arg(long)]
    space: PathBuf,
    /// grid, random, hyperband or bohb.
    #[arg(long)]
    search: String,
    /// Worker pool backend [default: fork on unix, spawn elsewhere].
    #[arg(long)]
    pool: Option<PoolArg>,
    /// Number of workers [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Smallest budget (hyperband, bohb).
    #[arg(long, default_value_t = 0.05)]
    min_budget: f64,
    /// Largest budget; grid and random evaluate at this budget.
    #[arg(long, default_value_t = 1.0)]
    max_budget: f64,
    /// Successive-halving factor (hyperband, bohb).
    #[arg(long, default_value_t = 3.0)]
    eta: f64,
    /// Number of brackets (hyperband, bohb).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Cap on evaluations (grid, random).
    #[arg(long)]
    evaluations: Option<u64>,
    /// Seed of every random choice of the search.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synchronous stages: the same result for the same seed at any worker count.
    #[arg(long)]
    deterministic: bool,
    /// Trial store: FILE or sqlite:FILE (one machine), or postgresql://USER@HOST:PORT/DB
    /// (a distributed study); records every trial and resumes an interrupted run.
    #[arg(long)]
    store: Option<String>,
    /// The study's name in a PostgreSQL store [default: the study's identity hash].
    #[arg(long)]
    study: Option<String>,
    /// A fixed strategy parameter, NAME=VALUE (repeatable); the space overrides it.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    range: crate::RangeArgs,
    /// Fork backend: use SQLite handles inherited from the parent, or reopen them per child.
    #[arg(long, default_value = "inherit")]
    handles: HandlesArg,
    /// Spawn backend: load the bundle in each worker, or map its columnar cache.
    #[arg(long, default_value = "load")]
    spawn_load: SpawnLoadArg,
    /// Kill and retry a backtest that runs longer than this many seconds.
    #[arg(long)]
    task_timeout: Option<f64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &OptimizeArgs, strategies: &Arc<engine::Registry>) -> Result<()> {
    let started = Instant::now();
    // Everything that can fail cheaply is checked before the bundle is loaded, and before any
    // pool, store or file exists: a bad space or parameter is a usage error (exit 2).
    let space = optimize::Space::from_toml_file(&a.space)
        .map_err(|e| crate::usage(format!("invalid space {}: {e}", a.space.display())))?;
    let base = crate::backtest_cmd::configure(strategies, &a.strategy, &a.set)?;
    let strategy = base.strategy().clone();
    runner::check_space(&*strategy, &space).map_err(|e| crate::usage(format!("{}: {e}", a.space.display())))?;
    let spec = optimize::SearchSpec {
        kind: a.search.parse().map_err(|e| crate::usage(format!("invalid --search: {e}")))?,
        min_budget: a.min_budget,
        max_budget: a.max_budget,
        eta: a.eta,
        iterations: a.iterations,
        evaluations: a.evaluations,
        seed: a.seed,
    };
    let mut searcher = spec.build(&space).map_err(|e| crate::usage(format!("invalid search settings: {e}")))?;
    let workers = a.workers.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let kind = match a.pool {
        None => match PoolKind::platform_default() {
            PoolKind::Fork(_) => PoolKind::Fork(handles(a.handles)),
            _ => PoolKind::Spawn(spawn_load(a.spawn_load)),
        },
        Some(PoolArg::Fork) => PoolKind::Fork(handles(a.handles)),
        Some(PoolArg::Spawn) => PoolKind::Spawn(spawn_load(a.spawn_load)),
        Some(PoolArg::Thread) => PoolKind::Thread,
    };

    let bundle = Arc::new(bundle::Bundle::load(&a.bundle).context("failed to load the bundle")?);
    crate::backtest_cmd::check_frequency(&*strategy, &bundle)?;
    let sessions = runner::session_range(&bundle, a.range.start, a.range.end)?;
    let mut builder = pool::PoolBuilder::new().workers(workers);
    if let Some(t) = a.task_timeout {
        builder = builder.task_timeout(Duration::from_secs_f64(t));
    }
    // The pool forks here, while this process is still single-threaded.
    let mut pool =
        runner::build_pool(kind, builder, &bundle, &a.bundle, strategies).context("failed to start the pool")?;
    drop(bundle);

    if a.study.is_some() && a.store.is_none() {
        anyhow::bail!("--study needs --store postgresql://...");
    }
    // Only after the pool exists: a store connection must never cross a fork.
    let mut opened = a
        .store
        .as_deref()
        .map(|s| store::open(s, a.study.as_deref(), None))
        .transpose()
        .context("failed to open the trial store")?;
    let mut memory = optimize::MemoryStore::new();
    let store: &mut dyn optimize::TrialStore = match &mut opened {
        Some(o) => o.trial_store(),
        None => &mut memory,
    };
    let id = strategies.id_of(strategy.name())?;
    let mut evaluator =
        runner::PoolEvaluator::new(&mut pool, strategy, id, *base.values(), Some(sessions), a.range.fee);
    let options = optimize::RunOptions { deterministic: a.deterministic, reuse_results: false };
    let mut progress = ProgressView::new(a.json);
    let summary =
        optimize::optimize(&space, &mut *searcher, &mut evaluator, store, options, &mut |p: &optimize::Progress<
            '_,
        >| progress.update(p))
        .context("optimization failed")?;
    progress.finish();
    let wall = started.elapsed().as_secs_f64();

    let mut json = summary.to_json();
    if let Some(best) = json.get_mut("best").and_then(|b| b.as_object_mut()) {
        let loss = best.get("loss").and_then(|l| l.as_f64()).unwrap_or(f64::NAN);
        best.insert("sharpe".into(), serde_json::json!(-loss));
    }
    json["wall_seconds"] = serde_json::json!(wall);
    if a.json {
        println!("{}", serde_json::to_string(&json)?);
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
        println!("total_budget  {:.4}", summary.total_budget);
        println!("wall_seconds  {wall:.3}");
    }
    Ok(())
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

/// A progress bar on a terminal, plain lines (at most one a second) otherwise, nothing with
/// `--json` when stderr is not a terminal.
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_line: Instant,
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
        ProgressView { bar, plain: !tty && !json, last_line: Instant::now() }
    }

    fn update(&mut self, p: &optimize::Progress<'_>) {
        let best = p.best.map_or("-".to_string(), |b| format!("{:.4} @ budget {:.3}", -b.loss, b.budget));
        let msg = format!("best sharpe {best} | evaluations {} | budget spent {:.3}", p.evaluations, p.total_budget);
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
            bar.tick();
        } else if self.plain && self.last_line.elapsed() >= Duration::from_secs(1) {
            eprintln!("{msg}");
            self.last_line = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
