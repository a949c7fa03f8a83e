//! Scenario `dispatch` (issue 9): the full optimize path against the engine alone, and what
//! shared indicator tables do to memory.
//!
//! Part one times the sweep (every MA pair `short < long` of windows 2..=max on one
//! daily asset) four ways in one process, interleaved: the engine alone (a warm `Backtester`
//! loop, the ceiling), and `runner::PoolEvaluator` + `optimize::optimize` (grid search, async,
//! as `btopt optimize --search grid` runs it) on thread and fork pools at 1 and 2 workers,
//! plus a fork pool that sends one task per frame and keeps a private SMA cache per worker
//! (the dispatch this issue replaced), which is the baseline of the scenario's step, and the
//! engine alone on two threads (every other config each, no pool): what two cores of this
//! machine give at best. Every pool arm's trials must equal the engine's, bit for bit, before
//! anything is timed.
//!
//! Part two sums PSS over every process of a pool (this one, the zygote, the workers) on the
//! minute bundle at each worker count, idle (right after start-up) and while working (the
//! largest of several samples taken as results come in), with the shared tables on and off,
//! for fork and thread pools.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use bench_driver::decide::{Decision, Verdict};
use bench_driver::report::{Memory, MemorySample, ScenarioResult};
use bench_driver::stats;
use bundle::{Frequency, GenerateSpec};
use engine::{Configured, MaCrossover, Registry, RunOptions};
use optimize::{Completion, Config, Evaluator, Mode, SearchKind, SearchSpec, Searcher, Space, Suggestion};
use runner::{BacktestWorker, HandleMode, JobOutput, PoolKind, SharedTables};

use crate::PerProfile;
use crate::scenarios::{failures, fingerprint, interleave, ma_jobs, space, timed_row};
use crate::{Ctx, Data, wait_single_threaded};

/// The scenario's sizes for one profile (its entry in `SCENARIOS` holds one per profile).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Last calendar day of the one-asset daily bundle, which starts on 2015-01-02
    /// (2024-12-31 gives 2,516 sessions, the issue's ~2,520).
    pub(crate) end: &'static str,
    /// The sweep's largest window: short in 2..max, long in 3..=max, short < long (100 gives
    /// the 4,851 pairs).
    pub(crate) max_window: usize,
    /// Worker counts of the memory part.
    pub(crate) memory_workers: &'static [usize],
    /// The memory part's space (file in `spaces/`); its first threshold only, every
    /// (short, long) pair.
    pub(crate) memory_space: &'static str,
    /// Budget of the memory part's backtests (SMAs span the whole bundle whatever it is).
    pub(crate) memory_budget: f64,
    /// Workers and brackets of the async BOHB measurement on the minute bundle (`None`: not
    /// measured).
    pub(crate) bohb: Option<(usize, usize)>,
}

/// The arms of part one, in run order.
const ARMS: [&str; 7] = ["engine", "fork-w1-per-task", "fork-w1", "fork-w2", "thread-w1", "thread-w2", "engine-x2"];
/// The arm that runs the engine alone on two threads: what two cores give with no pool.
const ENGINE_X2: usize = 6;

/// The share of the engine's throughput a one-worker pool should reach (the target).
const ENGINE_FRACTION_TARGET: f64 = 0.8;
/// The speed-up two workers should give over one (the target).
const TWO_WORKER_TARGET: f64 = 1.8;
/// Working PSS over idle PSS at the most workers, with shared tables (the target).
const PSS_RATIO_TARGET: f64 = 1.3;

/// Runs the scenario with `sizes` picked for the profile.
pub(crate) fn run(ctx: &mut Ctx, sizes: &PerProfile<Sizes>) -> Result<Vec<ScenarioResult>> {
    let sizes = sizes.pick(ctx.profile.name);
    let mut rows = throughput(ctx, &sizes)?;
    rows.push(memory(ctx, &sizes)?);
    if let Some((workers, iterations)) = sizes.bohb {
        rows.push(bohb_idle(ctx, workers, iterations)?);
    }
    Ok(rows)
}

/// The one-asset daily bundle (AAPL of the mag-7 generator, 2015-01-02 to `end`).
fn one_asset(ctx: &Ctx, end: &str) -> Result<Data> {
    let spec = GenerateSpec {
        start: "2015-01-02".parse()?,
        end: end.parse().with_context(|| format!("bad end date {end}"))?,
        ..GenerateSpec::mag7(Frequency::Daily)
    };
    crate::ensure_edited(&ctx.data_dir, "aapl-daily", &spec, |data| {
        data.assets.truncate(1);
        data.bars.truncate(1);
        data.splits.retain(|s| s.sid == 0);
        data.dividends.retain(|d| d.sid == 0);
    })
}

/// The sweep's space: short 2..max, long 3..=max, short < long.
fn sweep_space(max: usize) -> Result<Space> {
    let max = max as i64;
    let params = vec![
        optimize::Param::discrete("short_window", 2, max - 1, 1),
        optimize::Param::discrete("long_window", 3, max, 1),
    ];
    Ok(Space::new(params, &["short_window < long_window"])?)
}

/// Runs the whole grid of `space` through the optimizer on `pool` as `btopt optimize --search
/// grid` does (async, streaming, no store); returns the seconds and each trial's loss bits by
/// (short, long), gathered by the observer.
fn optimize_on(pool: &mut pool::Pool<BacktestWorker>, space: &Space) -> Result<(f64, Losses)> {
    let strategies = Registry::builtin();
    let ma = strategies.lookup("ma-crossover")?.clone();
    let base = engine::ParamValues::defaults(ma.parameters());
    let id = strategies.id_of("ma-crossover")?;
    let spec = SearchSpec { kind: SearchKind::Grid, ..SearchSpec::default() };
    let t = Instant::now();
    let mut searcher = spec.build(space)?;
    let mut ev = runner::PoolEvaluator::new(pool, ma, id, base, None, RunOptions::DEFAULT_FEE);
    let mut seen = Seen::default();
    optimize::optimize(space, &mut *searcher, &mut ev, &mut optimize::NullStore, STREAMING, &mut seen)?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(message) = seen.failed {
        return Err(anyhow!("a trial has no loss: {message}"));
    }
    Ok((secs, seen.losses))
}

/// btopt's options for a grid without `--deterministic`.
const STREAMING: optimize::SearchOptions =
    optimize::SearchOptions { deterministic: false, reuse_results: false, streaming: true };

/// Each finished trial's loss bits by (short, long), as they stream by.
#[derive(Default)]
struct Seen {
    losses: Losses,
    failed: Option<String>,
}

impl optimize::Observer for Seen {
    fn on_trial(&mut self, p: &optimize::Progress<'_>) {
        let int = |name: &str| p.trial.config.get(name).and_then(|v| v.as_f64()).map_or(-1, |x| x as i64);
        match p.trial.loss {
            Some(loss) => {
                self.losses.insert((int("short_window"), int("long_window")), loss.to_bits());
            }
            None => {
                self.failed.get_or_insert_with(|| format!("{:?}", p.trial.message));
            }
        }
    }
}

/// The engine alone: the same configs on one warm backtester in this process.
fn engine_loop(engine: &mut runner::Engine, configs: &[((i64, i64), Configured)]) -> Result<(f64, Losses)> {
    let opts = RunOptions::default();
    let t = Instant::now();
    let mut losses = BTreeMap::new();
    for (key, c) in configs {
        let m = engine.run(c, &opts)?;
        losses.insert(*key, (-m.sharpe).to_bits());
    }
    Ok((t.elapsed().as_secs_f64(), losses))
}

/// The engine alone on two threads at once, each with its own warm engine and every other
/// config: the machine's ceiling for two workers, with no pool and no coordinator. Returns the
/// wall seconds until both are done.
fn engine_pair(engines: &mut [runner::Engine; 2], configs: &[((i64, i64), Configured)]) -> Result<f64> {
    let opts = &RunOptions::default();
    let t = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let runs: Vec<_> = engines
            .iter_mut()
            .enumerate()
            .map(|(half, engine)| {
                scope.spawn(move || -> Result<()> {
                    for (_, c) in configs.iter().skip(half).step_by(2) {
                        engine.run(c, opts)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for r in runs {
            r.join().map_err(|_| anyhow!("an engine thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(t.elapsed().as_secs_f64())
}

/// The optimizer's own cost for the whole grid: median seconds of 5 sweeps over an evaluator
/// that answers at once (with one fixed backtest's metrics), so no backtest runs.
fn coordinator_secs(space: &Space, engine: &mut runner::Engine, configs: &[((i64, i64), Configured)]) -> Result<f64> {
    let (_, first) = configs.first().ok_or_else(|| anyhow!("an empty sweep"))?;
    let m = engine.run(first, &RunOptions::default())?;
    let mut secs = Vec::new();
    for _ in 0..5 {
        let spec = SearchSpec { kind: SearchKind::Grid, ..SearchSpec::default() };
        let t = Instant::now();
        let mut searcher = spec.build(space)?;
        let mut ev = optimize::InProcessEvaluator::new(64, move |_, _, _| optimize::Outcome::Ok {
            loss: -m.sharpe,
            metrics: runner::metrics_map(&m),
        });
        optimize::optimize(space, &mut *searcher, &mut ev, &mut optimize::NullStore, STREAMING, &mut ())?;
        secs.push(t.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    Ok(secs[secs.len() / 2])
}

fn build(kind: PoolKind, builder: pool::PoolBuilder, data: &Data, tables: &SharedTables) -> Result<Pool> {
    if matches!(kind, PoolKind::Fork(_)) {
        wait_single_threaded()?;
    }
    let strategies = Arc::new(Registry::builtin());
    runner::build_pool_with(kind, builder, &data.bundle, tables, &data.dir, &strategies)
        .map_err(|e| anyhow!("failed to start a {} pool: {e}", kind.name()))
}

type Pool = pool::Pool<BacktestWorker>;

/// Each trial's loss bits by (short, long) window.
type Losses = BTreeMap<(i64, i64), u64>;

/// Part one: the sweep through the optimizer on each backend against the engine alone.
fn throughput(ctx: &mut Ctx, sizes: &Sizes) -> Result<Vec<ScenarioResult>> {
    let runs = ctx.profile.runs;
    ctx.progress.start("dispatch", (ARMS.len() * (runs + 1) + 1) as u64);
    let data = one_asset(ctx, sizes.end)?;
    let space = sweep_space(sizes.max_window)?;
    let ma = Registry::builtin().lookup("ma-crossover")?.clone();
    let base = engine::ParamValues::defaults(ma.parameters());
    let budget = runner::tables_budget()?;
    let tables = runner::tables_for(&*ma, &base, &space, &data.bundle, budget)?;
    let configs: Vec<((i64, i64), Configured)> = space
        .grid()
        .map(|c| {
            let int = |name: &str| c.get(name).and_then(|v| v.as_f64()).map_or(0, |x| x as i64);
            let (s, l) = (int("short_window"), int("long_window"));
            let m = MaCrossover { short_window: s as usize, long_window: l as usize, threshold: 0.0 };
            Ok(((s, l), m.configured()?))
        })
        .collect::<Result<_>>()?;

    // Fork pools first, while this process has no thread; then the thread pools.
    let w1 = pool::PoolBuilder::new().workers(1);
    let w2 = pool::PoolBuilder::new().workers(2);
    let fork = PoolKind::Fork(HandleMode::Inherit);
    let mut pools: Vec<Option<Pool>> = vec![
        None,
        Some(build(fork, w1.clone().chunk_size(pool::ChunkSize::Fixed(1)), &data, &SharedTables::none())?),
        Some(build(fork, w1.clone(), &data, &tables)?),
        Some(build(fork, w2.clone(), &data, &tables)?),
        Some(build(PoolKind::Thread, w1, &data, &tables)?),
        Some(build(PoolKind::Thread, w2, &data, &tables)?),
    ];
    let mut engine = runner::Engine::new(data.bundle.clone())?;
    let mut pair = [runner::Engine::new(data.bundle.clone())?, runner::Engine::new(data.bundle.clone())?];

    // Equivalence: every arm's trials equal the engine's, bit for bit.
    let (_, want) = engine_loop(&mut engine, &configs)?;
    let mut equivalent = want.len() == configs.len();
    for (a, p) in pools.iter_mut().enumerate() {
        if let Some(p) = p {
            let (_, got) = optimize_on(p, &space)?;
            if got != want {
                equivalent = false;
                eprintln!("dispatch: {} differs from the engine alone", ARMS[a]);
            }
        }
    }
    ctx.progress.step("equivalence");

    let coordinator = coordinator_secs(&space, &mut engine, &configs)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let secs = interleave(ctx, "dispatch", &ARMS, |_, a, _| match pools.get_mut(a) {
        Some(Some(p)) => Ok(optimize_on(p, &space)?.0),
        _ if a == ENGINE_X2 => engine_pair(&mut pair, &configs),
        _ => Ok(engine_loop(&mut engine, &configs)?.0),
    })?;
    drop(pools);
    wait_single_threaded()?;
    let ceiling = mean(&secs[0]) / mean(&secs[ENGINE_X2]);

    let n = configs.len();
    let per_s = |a: usize| n as f64 / mean(&secs[a]);
    let arm = |name: &str| ARMS.iter().position(|a| *a == name).expect("an arm");
    let engine_rate = per_s(0);
    let note = format!(
        "every run sweeps {n} MA pairs (short 2..={short_max}, long 3..={max}, short < long, threshold 0) over one asset and {} \
         daily sessions, full range, default fee; engine = one warm runner::Engine (Backtester) loop in this process; \
         the pool arms run runner::PoolEvaluator + optimize::optimize (grid, async, streaming, no store: btopt's \
         defaults), pools built once before the runs; \
         fork-w1-per-task sends one task per frame (ChunkSize::Fixed(1)) and its worker keeps a private SMA cache, the \
         other pool arms chunk adaptively and share the tables ({} of SMAs)",
        data.bundle.sessions().len(),
        tables.sma.as_ref().map_or_else(|| "none".to_string(), |t| format!("{} KiB", t.bytes() >> 10)),
        max = sizes.max_window,
        short_max = sizes.max_window - 1,
    );
    let mut step = timed_row("dispatch", "fork-w1-per-task", "fork-w1", equivalent, &secs[1], &secs[2])?
        .with_metric("coordinator_us_per_trial", coordinator / n as f64 * 1e6)
        .with_metric("engine_us_per_backtest", 1e6 / engine_rate)
        .with_metric("engine_two_thread_speedup", ceiling)
        .with_note(
            "coordinator_us_per_trial: the optimizer loop alone (grid search, async, streaming, no store) over an in-process \
             evaluator that answers every trial at once with a fixed metrics map, median of 5 sweeps; it runs on the \
             main thread beside the workers, so on 2 cores it bounds what 2 workers can add when a backtest costs about \
             as much",
        )
        .with_metric("pairs", n)
        .with_metric("sessions", data.bundle.sessions().len())
        .with_note(note);
    if let Some(note) = bench_driver::report::free_page_reporting_note() {
        step = step.with_note(note);
    }
    for (a, name) in ARMS.iter().enumerate() {
        step = step.with_metric(&format!("backtests_per_s.{name}"), per_s(a).round());
        if a > 0 {
            step = step.with_metric(&format!("engine_fraction.{name}"), per_s(a) / engine_rate);
        }
    }
    let mut rows = vec![step];
    for name in ["thread-w1", "fork-w1", "thread-w2", "fork-w2"] {
        let a = arm(name);
        let cmp = stats::compare(&secs[0], &secs[a], true)?;
        let fraction = per_s(a) / engine_rate;
        let verdict = if !equivalent {
            Verdict::not_equivalent()
        } else if name.ends_with("w1") {
            target(
                fraction >= ENGINE_FRACTION_TARGET,
                format!(
                    "{name} reaches {:.1}% of the engine's throughput ({:.0}/s against {engine_rate:.0}/s); the target is ≥ {:.0}%",
                    fraction * 100.0,
                    per_s(a),
                    ENGINE_FRACTION_TARGET * 100.0
                ),
            )
        } else {
            let one = arm(&name.replace("w2", "w1"));
            let gain = mean(&secs[one]) / mean(&secs[a]);
            target(
                gain >= TWO_WORKER_TARGET,
                format!(
                    "{name} is {gain:.2}× as fast as one worker of the same backend ({:.1}% of the engine's throughput); the \
                 target is ≥ {TWO_WORKER_TARGET}×; the engine alone on two threads is {ceiling:.2}× as fast as on one",
                    fraction * 100.0
                ),
            )
        };
        rows.push(
            ScenarioResult::new(
                &format!("dispatch/{name}"),
                "engine",
                name,
                equivalent,
                equivalent.then_some(&cmp),
                &verdict,
            )
            .with_metric("engine_fraction", fraction)
            .with_metric("backtests_per_s", per_s(a).round())
            .with_metric("engine_backtests_per_s", engine_rate.round())
            .with_note(
                "the decision is the issue's target, not the speed-up: a pool is compared with the engine's \
                     throughput in the same run; speed-up % is the pool arm's time against the engine loop's",
            ),
        );
    }
    Ok(rows)
}

fn target(ok: bool, reason: String) -> Verdict {
    Verdict { decision: if ok { Decision::Accept } else { Decision::Reject }, reason }
}

/// Part two: summed PSS against worker count, idle and working, shared tables on and off.
fn memory(ctx: &mut Ctx, sizes: &Sizes) -> Result<ScenarioResult> {
    let data = Data { dir: ctx.minute.dir.clone(), bundle: ctx.minute.bundle.clone() };
    let space = space(ctx, sizes.memory_space)?;
    let card = space.cardinality().ok_or_else(|| anyhow!("space has no finite grid"))?;
    let thresholds = space.params().iter().find(|p| p.name == "threshold").and_then(|p| p.levels()).unwrap_or(1);
    // Every (short, long) pair at the first threshold (the threshold varies fastest).
    let jobs = ma_jobs(&space, (card / thresholds) as usize, sizes.memory_budget, None)?;
    let ma = Registry::builtin().lookup("ma-crossover")?.clone();
    let base = engine::ParamValues::defaults(ma.parameters());
    let budget = runner::tables_budget()?;
    let arms: [(&str, PoolKind, bool); 4] = [
        ("fork-private", PoolKind::Fork(HandleMode::Inherit), false),
        ("fork-shared", PoolKind::Fork(HandleMode::Inherit), true),
        ("thread-private", PoolKind::Thread, false),
        ("thread-shared", PoolKind::Thread, true),
    ];
    ctx.progress.start("dispatch/memory", (arms.len() * sizes.memory_workers.len()) as u64);
    let mut samples = Vec::new();
    let mut metrics: Vec<(String, f64)> = Vec::new();
    let mut prints: Vec<Vec<String>> = Vec::new();
    let mut table_bytes = 0;
    let mut ratios: BTreeMap<&str, f64> = BTreeMap::new();
    let most = sizes.memory_workers.iter().copied().max().unwrap_or(1);
    for &w in sizes.memory_workers {
        for (name, kind, shared) in arms {
            let tables = if shared {
                runner::tables_for(&*ma, &base, &space, &data.bundle, budget)?
            } else {
                SharedTables::none()
            };
            if let Some(line) = runner::shortfall(&tables, budget) {
                eprintln!("{line}");
            }
            table_bytes = table_bytes.max(tables.bytes());
            let mut pool = build(kind, pool::PoolBuilder::new().workers(w), &data, &tables)?;
            // Only the pool's copies hold the tables from here on.
            drop(tables);
            let pss = |pool: &Pool| -> Result<pool::Memory> {
                let mut pids = vec![std::process::id()];
                pids.extend(pool.worker_pids());
                pids.extend(pool.helper_pids());
                pool::memory::of_pids(&pids).context("failed to read /proc smaps_rollup")
            };
            let idle = pss(&pool)?;
            let mut ids = BTreeMap::new();
            for (i, job) in jobs.iter().enumerate() {
                ids.insert(pool.submit(job.clone()).context("failed to submit")?, i);
            }
            let mut outs: Vec<Option<Result<JobOutput, pool::Error>>> = (0..jobs.len()).map(|_| None).collect();
            let mut working = idle;
            let every = (jobs.len() / 8).max(1);
            let mut got = 0;
            while let Some((id, r)) = pool.recv() {
                outs[ids[&id]] = Some(r);
                got += 1;
                if got % every == 0 || got == jobs.len() {
                    let m = pss(&pool)?;
                    if m.pss > working.pss {
                        working = m;
                    }
                }
            }
            let outs: Vec<Result<JobOutput, pool::Error>> =
                outs.into_iter().map(|o| o.expect("every result")).collect();
            if failures(&outs) > 0 {
                return Err(anyhow!("{name} failed {} of its backtests", failures(&outs)));
            }
            prints.push(fingerprint(&outs));
            drop(pool);
            samples.push(MemorySample {
                arm: name.to_string(),
                workers: w,
                pss_sum_bytes: working.pss,
                rss_sum_bytes: working.rss,
            });
            let ratio = working.pss as f64 / idle.pss.max(1) as f64;
            metrics.push((format!("pss_idle_mib.{name}.w{w}"), (idle.pss >> 20) as f64));
            metrics.push((format!("pss_working_over_idle.{name}.w{w}"), ratio));
            if w == most {
                ratios.insert(name, ratio);
            }
            ctx.progress.step(&format!(
                "{name} at {w} workers: PSS idle {} MiB, working {} MiB",
                idle.pss >> 20,
                working.pss >> 20
            ));
        }
    }
    let equivalent = prints.windows(2).all(|p| p[0] == p[1]);
    let failing: Vec<String> = ["fork-shared", "thread-shared"]
        .iter()
        .filter(|a| ratios.get(**a).is_none_or(|r| *r > PSS_RATIO_TARGET))
        .map(|a| {
            format!("{a} works at {:.2}× its idle PSS at {most} workers", ratios.get(a).copied().unwrap_or(f64::NAN))
        })
        .collect();
    let verdict = if !equivalent {
        Verdict::not_equivalent()
    } else if failing.is_empty() {
        target(
            true,
            format!(
                "with shared tables, working PSS stays within {PSS_RATIO_TARGET}× of idle at {most} workers (fork {:.2}×, thread {:.2}×; private caches: fork {:.2}×, thread {:.2}×)",
                ratios["fork-shared"],
                ratios["thread-shared"],
                ratios.get("fork-private").copied().unwrap_or(f64::NAN),
                ratios.get("thread-private").copied().unwrap_or(f64::NAN),
            ),
        )
    } else {
        target(false, format!("{} (target ≤ {PSS_RATIO_TARGET}×)", failing.join("; ")))
    };
    let mut row = ScenarioResult::new("dispatch/memory", "fork-private", "fork-shared", equivalent, None, &verdict)
        .with_memory(Memory::new("fork-private", "fork-shared", samples))
        .with_metric("shared_table_mib", (table_bytes >> 20) as f64)
        .with_metric("backtests", jobs.len())
        .with_note(format!(
            "mag-7 minute bundle ({} bars); each pool runs {} MA-crossover backtests of {} at budget {} (every (short, long) \
             pair, first threshold); PSS sums this process (which holds its own copy of every bundle the driver loaded), \
             the zygote and every worker; the samples are the largest of 8 taken while results come in (\"working\"), \
             pss_idle_mib right after start-up; -shared arms build the space's SMA tables before the pool and hand them over, \
             -private arms leave each worker its own cache (up to {} MiB each); results are identical across all arms",
            data.bundle.assets().iter().map(|a| a.bars()).sum::<usize>(),
            jobs.len(),
            sizes.memory_space,
            sizes.memory_budget,
            engine::Backtester::DEFAULT_CACHE_BYTES >> 20,
        ));
    for (k, v) in metrics {
        row = row.with_metric(&k, v);
    }
    Ok(row)
}

/// The async BOHB share of worker idle time allowed (the target).
const BOHB_IDLE_TARGET: f64 = 0.05;

/// The coordinator's side of a search: its time in the searcher per suggestion.
struct TimedSearcher<'s> {
    inner: &'s mut dyn Searcher,
    suggest_secs: f64,
    observe_secs: f64,
    suggestions: u64,
    /// When the searcher first suggested a trial of each bracket. The latest of these is when
    /// the last bracket opened: from then on no bracket can open, and workers idle at the
    /// open brackets' stage barriers. (Async mode opens brackets in its own order, so the
    /// last to open is not the highest-numbered.)
    opened: std::collections::BTreeMap<u32, Instant>,
}

impl TimedSearcher<'_> {
    /// When the last bracket opened.
    fn last_opened(&self) -> Option<Instant> {
        self.opened.values().max().copied()
    }
}

impl Searcher for TimedSearcher<'_> {
    fn suggest(&mut self, mode: Mode) -> optimize::Result<Suggestion> {
        let t = Instant::now();
        let s = self.inner.suggest(mode);
        self.suggest_secs += t.elapsed().as_secs_f64();
        if let Ok(Suggestion::Trial(t)) = &s {
            self.suggestions += 1;
            if let Some(b) = t.bracket {
                self.opened.entry(b).or_insert_with(Instant::now);
            }
        }
        s
    }
    fn observe(&mut self, trial_id: u64, outcome: &optimize::Outcome) -> optimize::Result<()> {
        let t = Instant::now();
        let r = self.inner.observe(trial_id, outcome);
        self.observe_secs += t.elapsed().as_secs_f64();
        r
    }
    fn identity(&self) -> serde_json::Value {
        self.inner.identity()
    }
    fn max_budget(&self) -> f64 {
        self.inner.max_budget()
    }
}

/// Trials in flight over time: the worker-seconds during which fewer trials were submitted
/// than there are workers (so some worker certainly had nothing to do).
struct Watched<'e> {
    inner: &'e mut dyn Evaluator,
    workers: usize,
    in_flight: usize,
    since: Instant,
    /// (end of an interval, workers without a submitted trial during it, its seconds).
    starved: Vec<(Instant, usize, f64)>,
    /// When the last trial was submitted: from then on the search only drains.
    last_submit: Option<Instant>,
}

impl Watched<'_> {
    fn advance(&mut self) {
        let now = Instant::now();
        let idle = self.workers.saturating_sub(self.in_flight);
        if idle > 0 {
            self.starved.push((now, idle, (now - self.since).as_secs_f64()));
        }
        self.since = now;
    }

    /// Starved worker-seconds before and after `split` (intervals ending after it count as
    /// after).
    fn starved_secs(&self, split: Option<Instant>) -> (f64, f64) {
        let (mut before, mut after) = (0.0, 0.0);
        for &(end, idle, secs) in &self.starved {
            if split.is_some_and(|s| end > s) {
                after += idle as f64 * secs;
            } else {
                before += idle as f64 * secs;
            }
        }
        (before, after)
    }
}

impl Evaluator for Watched<'_> {
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> optimize::Result<()> {
        self.advance();
        self.last_submit = Some(Instant::now());
        self.in_flight += 1;
        self.inner.submit(trial_id, config, budget)
    }
    fn next_completed(&mut self) -> optimize::Result<Completion> {
        let c = self.inner.next_completed();
        self.advance();
        self.in_flight = self.in_flight.saturating_sub(1);
        c
    }
}

/// Async BOHB of `iterations` brackets on the 1,100-point space over the minute bundle at
/// `workers` fork workers: the share of worker time with no trial submitted, and the
/// searcher's cost per suggestion.
fn bohb_idle(ctx: &mut Ctx, workers: usize, iterations: usize) -> Result<ScenarioResult> {
    let runs: u64 = 3;
    ctx.progress.start("dispatch/bohb", runs);
    let data = Data { dir: ctx.minute.dir.clone(), bundle: ctx.minute.bundle.clone() };
    let space = space(ctx, "ma-1100.toml")?;
    // The whole minute bundle, as the issue states it, whatever the profile's range for
    // bohb-1100: on a quarter of it a search takes under 0.1 s and start-up dominates.
    let sessions = None;
    let strategies = Registry::builtin();
    let ma = strategies.lookup("ma-crossover")?.clone();
    let base = engine::ParamValues::defaults(ma.parameters());
    let id = strategies.id_of("ma-crossover")?;
    let budget = runner::tables_budget()?;
    let tables = runner::tables_for(&*ma, &base, &space, &data.bundle, budget)?;
    let mut pool =
        build(PoolKind::Fork(HandleMode::Inherit), pool::PoolBuilder::new().workers(workers), &data, &tables)?;
    drop(tables);
    let (mut idle, mut late, mut drain, mut per_suggestion, mut per_observe, mut walls, mut trials) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for seed in 0..runs {
        let spec = SearchSpec { kind: SearchKind::Bohb, iterations, seed, ..SearchSpec::default() };
        let mut inner = spec.build(&space)?;
        let mut searcher = TimedSearcher {
            inner: &mut *inner,
            suggest_secs: 0.0,
            observe_secs: 0.0,
            suggestions: 0,
            opened: std::collections::BTreeMap::new(),
        };
        let mut ev =
            runner::PoolEvaluator::new(&mut pool, ma.clone(), id, base, sessions.clone(), RunOptions::DEFAULT_FEE);
        let mut watched = Watched {
            inner: &mut ev,
            workers,
            in_flight: 0,
            since: Instant::now(),
            starved: Vec::new(),
            last_submit: None,
        };
        let t = Instant::now();
        let summary =
            optimize::optimize(&space, &mut searcher, &mut watched, &mut optimize::NullStore, STREAMING, &mut ())?;
        let wall = t.elapsed().as_secs_f64();
        watched.advance();
        let (early_secs, late_secs) = watched.starved_secs(searcher.last_opened());
        idle.push((early_secs + late_secs) / (workers as f64 * wall));
        late.push(late_secs / (workers as f64 * wall));
        drain.push(watched.starved_secs(watched.last_submit).1 / (workers as f64 * wall));
        per_suggestion.push(searcher.suggest_secs / searcher.suggestions.max(1) as f64);
        per_observe.push(searcher.observe_secs / summary.evaluations.max(1) as f64);
        walls.push(wall);
        trials.push(summary.evaluations);
        ctx.runs.push(
            bench_driver::report::Run::new("dispatch/bohb", "bohb-async", seed as usize, wall).with("workers", workers),
        );
        ctx.progress.step(&format!(
            "seed {seed}: {:.1}% idle, {} trials in {wall:.2} s",
            idle[idle.len() - 1] * 100.0,
            summary.evaluations
        ));
    }
    drop(pool);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let worst = idle.iter().copied().fold(0.0, f64::max);
    let verdict = target(
        worst <= BOHB_IDLE_TARGET,
        format!(
            "with async BOHB at {workers} fork workers, fewer trials than workers were in flight for {:.2}% of the \
             worker time on average (worst seed {:.2}%; target ≤ {:.0}%), {:.2}% of it after the last bracket opened \
             (from then on no bracket can start while the others wait at their stage barriers) and {:.2}% after the last trial was \
             submitted (the drain, while the last trials run); the searcher took {:.1} µs per suggestion",
            mean(&idle) * 100.0,
            worst * 100.0,
            BOHB_IDLE_TARGET * 100.0,
            mean(&late) * 100.0,
            mean(&drain) * 100.0,
            mean(&per_suggestion) * 1e6
        ),
    );
    Ok(ScenarioResult::new("dispatch/bohb-async", "-", "bohb-async", true, None, &verdict)
        .with_metric("workers", workers)
        .with_metric("idle_fraction_mean", mean(&idle))
        .with_metric("idle_fraction_worst", worst)
        .with_metric("idle_fraction_after_last_bracket_mean", mean(&late))
        .with_metric("idle_fraction_after_last_submit_mean", mean(&drain))
        .with_metric("suggest_us_mean", mean(&per_suggestion) * 1e6)
        .with_metric("observe_us_mean", mean(&per_observe) * 1e6)
        .with_metric("wall_s_mean", mean(&walls))
        .with_metric("trials_mean", trials.iter().sum::<u64>() as f64 / trials.len() as f64)
        .with_note(format!(
            "async BOHB (iterations {}, seeds 0..{runs}) on spaces/ma-1100.toml over the whole mag-7 minute bundle, one fork pool \
             with shared tables; idle = worker-seconds with fewer trials submitted than workers (some worker certainly had \
             nothing) over workers × wall time, a lower bound of idleness that the coordinator controls (on 2 cores, 8 \
             workers cannot all run at once anyway); suggest = time in the searcher's suggest per suggested trial, observe per \
             finished trial",
            iterations,
        )))
}
