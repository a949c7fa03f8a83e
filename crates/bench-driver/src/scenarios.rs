//! The scenarios of the sequential evaluation (`dispatch` has its own module). Each returns
//! its rows: the first is its step in the sequence; any others are extra arms, reported but
//! not compounded.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use bench_driver::decide::{self, BohbRegime, Verdict};
use bench_driver::plots::{Convergence, ConvergenceSeries, FidelityScatter};
use bench_driver::report::{Memory, MemorySample, Run, ScenarioResult};
use bench_driver::stats;
use engine::{Registry, RunOptions};
use optimize::{SearchKind, SearchSpec, SearchSummary, Space};
use runner::{BacktestTask, BacktestWorker, HandleMode, Job, JobOutput, PoolKind, SpawnLoad};

use crate::{Ctx, Data, PerProfile, exact, wait_single_threaded};

pub(crate) type Pool = pool::Pool<BacktestWorker>;

fn start_pool(kind: PoolKind, workers: usize, data: &Data) -> Result<Pool> {
    if matches!(kind, PoolKind::Fork(_) | PoolKind::PerBatch) {
        wait_single_threaded()?;
    }
    let strategies = Arc::new(Registry::builtin());
    runner::build_pool(kind, pool::PoolBuilder::new().workers(workers), &data.bundle, &data.dir, &strategies)
        .map_err(|e| anyhow!("failed to start a {} pool: {e}", kind.name()))
}

pub(crate) fn space(ctx: &Ctx, file: &str) -> Result<Space> {
    Space::from_toml_file(&ctx.spaces.join(file)).with_context(|| format!("failed to read spaces/{file}"))
}

/// `n` MA-crossover backtests spread evenly over the space's grid (all of it if `n` is larger).
pub(crate) fn ma_jobs(space: &Space, n: usize, budget: f64, sessions: Option<Range<usize>>) -> Result<Vec<Job>> {
    let card = space.cardinality().ok_or_else(|| anyhow!("space has no finite grid"))?;
    let n = (n as u128).min(card).max(1);
    let strategies = Registry::builtin();
    let ma = strategies.lookup("ma-crossover")?.clone();
    let base = engine::ParamValues::defaults(ma.parameters());
    let id = strategies.id_of("ma-crossover")?;
    (0..n)
        .map(|i| {
            let config = space.config_at(i * card / n)?;
            let params = runner::params_of(&*ma, &base, &config)?;
            let options = RunOptions::new_checked(budget, sessions.clone(), RunOptions::DEFAULT_FEE)?;
            Ok(Job::Backtest(BacktestTask { strategy: id, params, options, returns: false, moments: None }))
        })
        .collect()
}

/// Exact fingerprints of pool outputs: `Debug` of an f64 is its shortest round-trip form, so
/// equal strings mean bit-identical results. The id of the worker that ran a backtest is left
/// out: it differs between pools by design.
pub(crate) fn fingerprint(outputs: &[Result<JobOutput, pool::Error>]) -> Vec<String> {
    let one = |o: &Result<JobOutput, pool::Error>| match o {
        Ok(JobOutput::Metrics { metrics, returns, .. }) => format!("{metrics:?} {returns:?}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    outputs.iter().map(one).collect()
}

pub(crate) fn failures(outputs: &[Result<JobOutput, pool::Error>]) -> usize {
    outputs.iter().filter(|o| !matches!(o, Ok(JobOutput::Metrics { .. }))).count()
}

/// Runs `f(arm, run)` for every arm, interleaved A B A B …, after one warm-up per arm.
/// Returns the seconds per arm in run order and records every run.
pub(crate) fn interleave(
    ctx: &mut Ctx,
    scenario: &str,
    arms: &[&str],
    mut f: impl FnMut(&mut Ctx, usize, usize) -> Result<f64>,
) -> Result<Vec<Vec<f64>>> {
    let runs = ctx.profile.runs;
    for (a, arm) in arms.iter().enumerate() {
        f(ctx, a, usize::MAX).with_context(|| format!("warm-up of {arm}"))?;
        ctx.progress.step(&format!("warm-up {arm}"));
    }
    let mut secs = vec![Vec::with_capacity(runs); arms.len()];
    for r in 0..runs {
        for (a, arm) in arms.iter().enumerate() {
            let s = f(ctx, a, r).with_context(|| format!("run {r} of {arm}"))?;
            secs[a].push(s);
            ctx.runs.push(Run::new(scenario, arm, r, s).with("workers", ctx.profile.workers));
            ctx.progress.step(&format!("{arm} run {r}: {s:.3} s"));
        }
    }
    Ok(secs)
}

pub(crate) fn timed_row(
    name: &str,
    base: &str,
    cand: &str,
    equivalent: bool,
    b: &[f64],
    c: &[f64],
) -> Result<ScenarioResult> {
    if !equivalent {
        return Ok(ScenarioResult::new(name, base, cand, false, None, &Verdict::not_equivalent()));
    }
    let cmp = stats::compare(b, c, true)?;
    Ok(ScenarioResult::new(name, base, cand, true, Some(&cmp), &decide::decide(true, Some(&cmp))))
}

/// persistent-pool's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSizes {
    /// Batches each run maps through its pool.
    pub(crate) batches: usize,
    /// MA backtests per batch.
    pub(crate) batch_size: usize,
}

/// shared-bundle's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SharedSizes {
    /// Backtests per run (the first of the 1,100-point space).
    pub(crate) backtests: usize,
    /// Their budget.
    pub(crate) budget: f64,
    /// Worker counts at which memory is measured.
    pub(crate) memory_workers: &'static [usize],
}

/// bohb-1100's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bohb1100Sizes {
    /// BOHB brackets.
    pub(crate) iterations: usize,
    /// Grid points evaluated (`None`: all 1,100).
    pub(crate) grid_points: Option<u64>,
    /// Whether the scenario also runs on the minute bundle, and over which calendar days
    /// (`Some(None)`: all of it).
    pub(crate) minute: Option<Option<(&'static str, &'static str)>>,
}

/// bohb-5m's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bohb5mSizes {
    /// Brackets of the equal-budget comparison.
    pub(crate) iterations: usize,
    /// The space (in `spaces/`) when the whole 5.4M space's exact optimum is not cached.
    pub(crate) space: &'static str,
    /// Brackets of each convergence run.
    pub(crate) convergence_iterations: usize,
    /// Seeds of the convergence runs (one run per searcher and seed).
    pub(crate) convergence_seeds: u64,
}

/// Scenario 1: A persistent fork pool against a fresh pool per batch, on the same batches.
pub(crate) fn persistent_pool(ctx: &mut Ctx, sizes: &PerProfile<PoolSizes>) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    let sizes = sizes.pick(p.name);
    ctx.progress.start("persistent-pool", (2 + 2 * p.runs) as u64);
    let jobs = ma_jobs(&space(ctx, "ma-36.toml")?, sizes.batch_size, 1.0, None)?;
    let kinds = [PoolKind::PerBatch, PoolKind::Fork(HandleMode::Inherit)];
    // Equivalence: every batch's results, bit for bit, from both arms.
    let mut prints = Vec::new();
    for kind in kinds {
        let mut pool = start_pool(kind, p.workers, &ctx.daily)?;
        let out = pool.map(jobs.clone());
        if failures(&out) > 0 {
            return Err(anyhow!("{} failed {} of its backtests", kind.name(), failures(&out)));
        }
        prints.push(fingerprint(&out));
    }
    let equivalent = prints.windows(2).all(|w| w[0] == w[1]);
    let secs = interleave(ctx, "persistent-pool", &["per-batch", "fork-persistent"], |ctx, a, _| {
        let t = Instant::now();
        let mut pool = start_pool(kinds[a], p.workers, &ctx.daily)?;
        for _ in 0..sizes.batches {
            let out = pool.map(jobs.clone());
            if failures(&out) > 0 {
                return Err(anyhow!("{} backtests failed", failures(&out)));
            }
        }
        drop(pool);
        Ok(t.elapsed().as_secs_f64())
    })?;
    let row = timed_row("persistent-pool", "per-batch", "fork-persistent", equivalent, &secs[0], &secs[1])?
        .with_metric("batches_per_run", sizes.batches)
        .with_metric("backtests_per_batch", jobs.len())
        .with_note(format!(
            "each run builds the pool, maps {} batches of {} MA-crossover backtests on mag-7 daily, and stops it",
            sizes.batches,
            jobs.len()
        ));
    Ok(vec![row])
}

/// Scenario 2: how workers get the bundle. Fork (inherited or reopened SQLite handles), spawn
/// (load or mmap) and threads, on the minute bundle. The baseline is spawn-load, i.e. every
/// worker reads the bundle itself (the guidance's "read-only extraction").
pub(crate) fn shared_bundle(ctx: &mut Ctx, sizes: &PerProfile<SharedSizes>) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    let sizes = sizes.pick(p.name);
    let arms = [
        PoolKind::Spawn(SpawnLoad::Load),
        PoolKind::Fork(HandleMode::Inherit),
        PoolKind::Fork(HandleMode::Reopen),
        PoolKind::Spawn(SpawnLoad::Mmap),
        PoolKind::Thread,
    ];
    let names: Vec<&str> = arms.iter().map(|k| k.name()).collect();
    let steps = arms.len() * (2 + p.runs + sizes.memory_workers.len());
    ctx.progress.start("shared-bundle", steps as u64);
    let jobs = ma_jobs(&space(ctx, "ma-1100.toml")?, sizes.backtests, sizes.budget, None)?;
    let sids = ctx.minute.bundle.assets().len() as u32;
    let with_sql: Vec<Job> = jobs.iter().cloned().chain((0..sids).map(|sid| Job::SqlCloses { sid })).collect();

    let mut prints = Vec::new();
    for kind in arms {
        let mut pool = start_pool(kind, p.workers, &ctx.minute)?;
        let out = pool.map(with_sql.clone());
        if out.iter().any(|o| matches!(o, Err(_) | Ok(JobOutput::Invalid(_)))) {
            return Err(anyhow!("{} failed some jobs: {:?}", kind.name(), fingerprint(&out)));
        }
        prints.push(fingerprint(&out));
        drop(pool);
        ctx.progress.step(&format!("equivalence {}", kind.name()));
    }
    let equivalent = prints.windows(2).all(|w| w[0] == w[1]);

    let mut startup: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let secs = interleave(ctx, "shared-bundle", &names, |ctx, a, r| {
        let t = Instant::now();
        let mut pool = start_pool(arms[a], p.workers, &ctx.minute)?;
        let up = t.elapsed().as_secs_f64();
        let out = pool.map(jobs.clone());
        drop(pool);
        let total = t.elapsed().as_secs_f64();
        if failures(&out) > 0 {
            return Err(anyhow!("{} backtests failed", failures(&out)));
        }
        if r != usize::MAX {
            startup.entry(names[a]).or_default().push(up);
            ctx.runs.push(Run::new("shared-bundle/startup", names[a], r, up).with("workers", p.workers));
        }
        Ok(total)
    })?;

    // Memory: the sum of PSS over the whole job (this process, the zygote, every worker), after
    // each worker has run backtests, at each worker count.
    let mut samples = Vec::new();
    let mut idle: Vec<(String, f64)> = Vec::new();
    for &w in sizes.memory_workers {
        for kind in arms {
            let mut pool = start_pool(kind, w, &ctx.minute)?;
            // Idle: after start-up only, so the figure is the bundle copies and nothing else
            // (the backtests below add each worker's private SMA cache).
            let mut pids = vec![std::process::id()];
            pids.extend(pool.worker_pids());
            pids.extend(pool.helper_pids());
            let m0 = pool::memory::of_pids(&pids).context("failed to read /proc smaps_rollup")?;
            idle.push((format!("pss_idle_mib.{}.w{w}", kind.name()), (m0.pss >> 20) as f64));
            let warm = ma_jobs(&space(ctx, "ma-1100.toml")?, 2 * w, sizes.budget, None)?;
            let out = pool.map(warm);
            if failures(&out) > 0 {
                return Err(anyhow!("{} failed while warming up for memory", kind.name()));
            }
            let mut pids = vec![std::process::id()];
            pids.extend(pool.worker_pids());
            pids.extend(pool.helper_pids());
            let m = pool::memory::of_pids(&pids).context("failed to read /proc smaps_rollup")?;
            samples.push(MemorySample {
                arm: kind.name().to_string(),
                workers: w,
                pss_sum_bytes: m.pss,
                rss_sum_bytes: m.rss,
            });
            drop(pool);
            ctx.progress.step(&format!("memory {} at {w} workers: PSS {} MiB", kind.name(), m.pss >> 20));
        }
    }

    let mut rows = Vec::new();
    for (a, name) in names.iter().enumerate().skip(1) {
        let row_name = if a == 1 { "shared-bundle".to_string() } else { format!("shared-bundle/{name}") };
        let mut row = timed_row(&row_name, names[0], name, equivalent, &secs[0], &secs[a])?;
        for arm in [names[0], name] {
            if let Some(s) = startup.get(arm) {
                row = row.with_metric(&format!("startup_mean_s.{arm}"), s.iter().sum::<f64>() / s.len() as f64);
            }
        }
        for (k, v) in
            idle.iter().filter(|(k, _)| k.contains(&format!(".{}.", names[0])) || k.contains(&format!(".{name}.")))
        {
            row = row.with_metric(k, *v);
        }
        let arm_samples: Vec<MemorySample> =
            samples.iter().filter(|s| s.arm == names[0] || s.arm == *name).cloned().collect();
        row = row.with_memory(Memory::new(names[0], name, arm_samples)).with_note(format!(
            "each run starts the pool on the mag-7 minute bundle ({} bars), runs {} backtests at budget {}, and stops it; \
             memory is the sum of PSS over this process (which holds its own copy of every bundle), the zygote and every worker, \
             after each worker has run backtests (so it includes each worker's private SMA cache); pss_idle_mib is the same \
             sum right after start-up",
            ctx.minute.bundle.assets().iter().map(|a| a.bars()).sum::<usize>(),
            jobs.len(),
            sizes.budget
        ));
        rows.push(row);
    }
    Ok(rows)
}

/// Runs one search on `pool` in deterministic mode; returns its wall time and summary.
fn search(
    pool: &mut Pool,
    space: &Space,
    spec: &SearchSpec,
    strategy: &str,
    sessions: Option<Range<usize>>,
) -> Result<(f64, SearchSummary)> {
    search_with(pool, space, spec, strategy, sessions, engine::Fidelity::Recent)
}

/// [`search`] with budgets of the given fidelity.
fn search_with(
    pool: &mut Pool,
    space: &Space,
    spec: &SearchSpec,
    strategy: &str,
    sessions: Option<Range<usize>>,
    fidelity: engine::Fidelity,
) -> Result<(f64, SearchSummary)> {
    let mut searcher = spec.build(space)?;
    let strategies = Registry::builtin();
    let s = strategies.lookup(strategy)?.clone();
    let base = engine::ParamValues::defaults(s.parameters());
    runner::check_space(&*s, space)?;
    let id = strategies.id_of(strategy)?;
    let mut ev =
        runner::PoolEvaluator::new(pool, s, id, base, sessions, RunOptions::DEFAULT_FEE).with_fidelity(fidelity);
    let mut store = optimize::MemoryStore::new();
    let options = optimize::SearchOptions { deterministic: true, reuse_results: false, streaming: false };
    let t = Instant::now();
    let s = optimize::optimize(space, &mut *searcher, &mut ev, &mut store, options, &mut ())?;
    Ok((t.elapsed().as_secs_f64(), s))
}

fn best_sharpe(s: &SearchSummary) -> f64 {
    s.best.as_ref().map_or(f64::NEG_INFINITY, |b| -b.loss)
}

/// The best trial's sharpe, recomputed by a direct backtest in this process.
fn recompute_best(data: &Data, strategy: &str, s: &SearchSummary, sessions: Option<Range<usize>>) -> Result<f64> {
    let best = s.best.as_ref().ok_or_else(|| anyhow!("the search found nothing"))?;
    let strategy = Registry::builtin().configure(strategy, &optimize::render_pairs(&best.config))?;
    let mut engine = runner::Engine::new(data.bundle.clone())?;
    let m = engine.run(&strategy, &RunOptions::new_checked(best.budget, sessions, RunOptions::DEFAULT_FEE)?)?;
    Ok(m.sharpe)
}

fn bohb_spec(iterations: usize, seed: u64) -> SearchSpec {
    SearchSpec { kind: SearchKind::Bohb, iterations, seed, ..SearchSpec::default() }
}

/// A search arm's repeatability: the same seed gives the same summary on the fork pool and on
/// one thread, and its best is what a direct backtest gives.
fn search_equivalent(
    ctx: &Ctx,
    data: &Data,
    space: &Space,
    spec: &SearchSpec,
    strategy: &str,
    sessions: Option<Range<usize>>,
) -> Result<bool> {
    let mut thread = start_pool(PoolKind::Thread, 1, data)?;
    let (_, a) = search(&mut thread, space, spec, strategy, sessions.clone())?;
    drop(thread);
    let mut fork = start_pool(PoolKind::Fork(HandleMode::Inherit), ctx.profile.workers, data)?;
    let (_, b) = search(&mut fork, space, spec, strategy, sessions.clone())?;
    drop(fork);
    let direct = recompute_best(data, strategy, &b, sessions)?;
    Ok(a.to_json() == b.to_json() && direct.to_bits() == best_sharpe(&b).to_bits())
}

/// Scenario 3: BOHB against the exhaustive grid on the 1,100-point space, daily and minute.
pub(crate) fn bohb_1100(ctx: &mut Ctx, sizes: &PerProfile<Bohb1100Sizes>) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    let sizes = sizes.pick(p.name);
    let space = space(ctx, "ma-1100.toml")?;
    let mut rows = Vec::new();
    let sets: Vec<(&str, bool)> =
        if sizes.minute.is_some() { vec![("daily", false), ("minute", true)] } else { vec![("daily", false)] };
    for (label, minute) in sets {
        let name = if minute { "bohb-1100/minute" } else { "bohb-1100" };
        ctx.progress.start(name, (5 + 2 * p.runs) as u64);
        let data = if minute { &ctx.minute } else { &ctx.daily };
        let sessions = match (minute, sizes.minute.flatten()) {
            (true, Some((a, b))) => {
                let day = |d: &str| d.parse::<chrono::NaiveDate>().with_context(|| format!("bad date {d}"));
                Some(runner::session_range(&data.bundle, Some(day(a)?), Some(day(b)?))?)
            }
            _ => None,
        };
        let grid_spec = SearchSpec { kind: SearchKind::Grid, evaluations: sizes.grid_points, ..SearchSpec::default() };
        let equivalent =
            search_equivalent(ctx, data, &space, &bohb_spec(sizes.iterations, 0), "ma-crossover", sessions.clone())?
                && search_equivalent(ctx, data, &space, &grid_spec, "ma-crossover", sessions.clone())?;
        ctx.progress.step("equivalence");
        let data_dir = data.dir.clone();
        let bundle = data.bundle.clone();
        let data = Data { dir: data_dir, bundle };
        let mut pool = start_pool(PoolKind::Fork(HandleMode::Inherit), p.workers, &data)?;
        let (_, grid) = search(&mut pool, &space, &grid_spec, "ma-crossover", sessions.clone())?;
        let optimum = best_sharpe(&grid);
        let scores: Vec<f64> = grid.trials.iter().filter_map(|t| t.loss.map(|l| -l)).collect();
        let mut bests = Vec::new();
        let mut budgets = Vec::new();
        let mut percentiles = Vec::new();
        let mut recent_runs = Vec::new();
        let secs = interleave(ctx, name, &["grid", "bohb"], |_, a, r| {
            if a == 0 {
                let (s, g) = search(&mut pool, &space, &grid_spec, "ma-crossover", sessions.clone())?;
                if best_sharpe(&g).to_bits() != optimum.to_bits() {
                    return Err(anyhow!("grid gave a different optimum on a repeat"));
                }
                Ok(s)
            } else {
                let seed = if r == usize::MAX { 0 } else { r as u64 };
                let (s, b) =
                    search(&mut pool, &space, &bohb_spec(sizes.iterations, seed), "ma-crossover", sessions.clone())?;
                if r != usize::MAX {
                    let best = best_sharpe(&b);
                    bests.push(best);
                    budgets.push(b.total_budget);
                    percentiles.push(stats::rank_among(&scores, best).percentile);
                    recent_runs.push(b);
                }
                Ok(s)
            }
        })?;
        // The same seeds under the other fidelity (untimed): quality and rank correlations.
        let mut blocks_runs = Vec::new();
        for seed in 0..p.runs as u64 {
            let spec = bohb_spec(sizes.iterations, seed);
            blocks_runs.push(
                search_with(&mut pool, &space, &spec, "ma-crossover", sessions.clone(), engine::Fidelity::Blocks)?.1,
            );
        }
        ctx.progress.step("blocks fidelity");
        drop(pool);
        let rho = |runs: &[SearchSummary]| {
            let r: Vec<f64> =
                runs.iter().flat_map(|s| optimize::fidelity(&s.trials)).filter_map(|f| f.spearman).collect();
            r.iter().sum::<f64>() / r.len().max(1) as f64
        };
        let blocks_bests: Vec<f64> = blocks_runs.iter().map(best_sharpe).collect();
        let blocks_mean = blocks_bests.iter().sum::<f64>() / blocks_bests.len().max(1) as f64;
        let blocks_p = stats::welch(&bests, &blocks_bests).ok().map_or(f64::NAN, |t| t.p_value);
        let recent_mean = bests.iter().sum::<f64>() / bests.len().max(1) as f64;
        let fidelity_choice = if blocks_mean > recent_mean && blocks_p < 0.05 { "blocks" } else { "recent" };
        let mut series = fidelity_series("recent", &recent_runs.iter().collect::<Vec<_>>());
        series.extend(fidelity_series("blocks", &blocks_runs.iter().collect::<Vec<_>>()));
        ctx.fidelity.push(FidelityScatter {
            stem: format!("fidelity-{}", name.replace('/', "-")),
            title: format!("BOHB on ma-1100, mag-7 {label}, seeds 0..{}", p.runs),
            series,
        });
        let n = grid.evaluations as f64;
        let mean_best = bests.iter().sum::<f64>() / bests.len() as f64;
        let worst_best = bests.iter().copied().fold(f64::INFINITY, f64::min);
        let mean_budget = budgets.iter().sum::<f64>() / budgets.len() as f64;
        let fraction = mean_budget / n;
        let regime = BohbRegime::for_combinations(grid.evaluations);
        let cmp = stats::compare(&secs[0], &secs[1], true)?;
        let within = decide::bohb_within_budget(mean_best, optimum, fraction);
        let vs_grid = decide::bohb_vs_grid(&cmp, mean_best, optimum);
        let verdict = if !equivalent {
            Verdict::not_equivalent()
        } else {
            match regime {
                BohbRegime::WithinBudget => within.clone(),
                _ => vs_grid.clone(),
            }
        };
        let row = ScenarioResult::new(name, "grid", "bohb", equivalent, equivalent.then_some(&cmp), &verdict)
            .with_metric("bundle", label)
            .with_metric("grid_points", grid.evaluations)
            .with_metric("grid_optimum_sharpe", optimum)
            .with_metric("bohb_best_sharpe_mean", mean_best)
            .with_metric("bohb_best_sharpe_worst", worst_best)
            .with_metric("bohb_best_shortfall_pct", decide::shortfall(mean_best, optimum) * 100.0)
            .with_metric("bohb_rank_percentile_mean", percentiles.iter().sum::<f64>() / percentiles.len() as f64)
            .with_metric("bohb_budget_fraction", fraction)
            .with_metric("bohb_iterations", sizes.iterations)
            .with_metric("spearman_mean_recent", rho(&recent_runs))
            .with_metric("spearman_mean_blocks", rho(&blocks_runs))
            .with_metric("bohb_blocks_best_sharpe_mean", blocks_mean)
            .with_metric("quality_welch_p_blocks_vs_recent", blocks_p)
            .with_metric("fidelity_decision", fidelity_choice)
            .with_note(format!(
                "fidelity: BOHB under `recent` {recent_mean:.4} vs `blocks` {blocks_mean:.4} (Welch p {}); mean Spearman \
                 between successive budgets {:.3} (recent) vs {:.3} (blocks); decision: use `{fidelity_choice}` (blocks \
                 replaces the default only when better with p < 0.05)",
                decide::format_p(blocks_p),
                rho(&recent_runs),
                rho(&blocks_runs)
            ))
            .with_note(format!("criterion for 1,000+ points (within 10% using ≤ 10%): {:?}: {}", within.decision, within.reason))
            .with_note(format!("criterion for 100–1,000 points (≥ 5% faster, comparable): {:?}: {}", vs_grid.decision, vs_grid.reason))
            .with_note(format!(
                "BOHB over seeds 0..{} in deterministic mode; equivalence = each search repeats bit for bit on a fork pool and on one thread, and its best is reproduced by a direct backtest",
                p.runs
            ));
        rows.push(row);
    }
    Ok(rows)
}

/// Scenario 4: BOHB on the 5.4M-point momentum space, judged against its exact optimum (the
/// exhaustive grid, cached under the data dir): against random search and Hyperband at an
/// equal budget, under each fidelity, with a convergence plot toward 1,000 evaluations.
pub(crate) fn bohb_5m(ctx: &mut Ctx, sizes: &PerProfile<Bohb5mSizes>) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    let sizes = sizes.pick(p.name);
    let arms = ["random", "hyperband", "bohb", "bohb-blocks"];
    let steps = 3 + arms.len() * (p.runs + 1) + 3 * sizes.convergence_seeds as usize;
    ctx.progress.start("bohb-5m", steps as u64);
    let data = Data { dir: ctx.universe.dir.clone(), bundle: ctx.universe.bundle.clone() };
    // The whole space when the profile asks for it or its exact optimum is cached already;
    // otherwise the profile's documented sub-space, searched and solved exactly alike.
    let whole = space(ctx, "momentum-5m.toml")?;
    let (file, space) = if sizes.space == "momentum-5m.toml" || exact::is_cached(&ctx.data_dir, &data, &whole) {
        ("momentum-5m.toml", whole)
    } else {
        (sizes.space, space(ctx, sizes.space)?)
    };
    let equivalent = search_equivalent(ctx, &data, &space, &bohb_spec(sizes.iterations, 0), "momentum", None)?;
    ctx.progress.step("equivalence");
    let mut pool = start_pool(PoolKind::Fork(HandleMode::Inherit), p.workers, &data)?;
    let exact = exact::exact(&mut pool, &ctx.data_dir, &data, &space)?;
    ctx.progress.step(&format!(
        "exact optimum of {file} ({} points{}): sharpe {:.4}",
        exact.points,
        if exact.cached { ", cached" } else { "" },
        exact.optimum
    ));
    let (_, first) = search(&mut pool, &space, &bohb_spec(sizes.iterations, 0), "momentum", None)?;
    let equal_budget = first.total_budget.ceil().max(1.0) as u64;
    let hb = |iterations, seed| SearchSpec { kind: SearchKind::Hyperband, iterations, seed, ..SearchSpec::default() };
    let random = |evaluations, seed| SearchSpec {
        kind: SearchKind::Random,
        evaluations: Some(evaluations),
        seed,
        ..SearchSpec::default()
    };
    let mut bests: [Vec<f64>; 4] = Default::default();
    let mut budgets: [Vec<f64>; 4] = Default::default();
    let mut rhos: [Vec<f64>; 4] = Default::default();
    let mut kept: [Vec<SearchSummary>; 2] = Default::default();
    let secs = interleave(ctx, "bohb-5m", &arms, |_, a, r| {
        let seed = if r == usize::MAX { 0 } else { r as u64 };
        let (spec, fidelity) = match a {
            0 => (random(equal_budget, seed), engine::Fidelity::Recent),
            1 => (hb(sizes.iterations, seed), engine::Fidelity::Recent),
            2 => (bohb_spec(sizes.iterations, seed), engine::Fidelity::Recent),
            _ => (bohb_spec(sizes.iterations, seed), engine::Fidelity::Blocks),
        };
        let (s, summary) = search_with(&mut pool, &space, &spec, "momentum", None, fidelity)?;
        if r != usize::MAX {
            bests[a].push(best_sharpe(&summary));
            budgets[a].push(summary.total_budget);
            rhos[a].extend(optimize::fidelity(&summary.trials).iter().filter_map(|f| f.spearman));
            if a >= 2 {
                kept[a - 2].push(summary);
            }
        }
        Ok(s)
    })?;
    let mut series = fidelity_series("recent", &kept[0].iter().collect::<Vec<_>>());
    series.extend(fidelity_series("blocks", &kept[1].iter().collect::<Vec<_>>()));
    ctx.fidelity.push(FidelityScatter {
        stem: "fidelity-5m".into(),
        title: format!("BOHB on {file}, seeds 0..{}", p.runs),
        series,
    });
    // Convergence toward the guidance's ~1,000 evaluations, per seed: a long BOHB run, Hyperband
    // over the same brackets, and random search at that BOHB run's budget.
    let searchers = ["BOHB", "Hyperband", "random"];
    let mut curves: [Vec<Vec<(f64, f64)>>; 3] = Default::default();
    let mut long_bests: [Vec<f64>; 3] = Default::default();
    let mut long_budgets = Vec::new();
    for seed in 0..sizes.convergence_seeds {
        let bohb = search(&mut pool, &space, &bohb_spec(sizes.convergence_iterations, seed), "momentum", None)?.1;
        let budget = bohb.total_budget.ceil().max(1.0) as u64;
        long_budgets.push(bohb.total_budget);
        let hyperband = search(&mut pool, &space, &hb(sizes.convergence_iterations, seed), "momentum", None)?.1;
        let random = search(&mut pool, &space, &random(budget, seed), "momentum", None)?.1;
        for (a, s) in [bohb, hyperband, random].iter().enumerate() {
            curves[a].push(convergence_points(s));
            long_bests[a].push(best_sharpe(s));
            ctx.progress.step(&format!("long {} run, seed {seed}", searchers[a]));
        }
    }
    drop(pool);
    ctx.convergence.push(Convergence {
        stem: "convergence-5m".into(),
        title: format!(
            "{file} on the universe: best loss (−sharpe) at full budget vs budget spent; exact optimum {:.4}",
            -exact.optimum
        ),
        series: searchers
            .iter()
            .zip(curves)
            .map(|(name, seeds)| ConvergenceSeries { searcher: name.to_string(), seeds })
            .collect(),
    });

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let points = exact.points as f64;
    let fraction = mean(&budgets[2]) / points;
    let verdict = if equivalent {
        decide::bohb_within_budget(mean(&bests[2]), exact.optimum, fraction)
    } else {
        Verdict::not_equivalent()
    };
    let p_of = |a: &[f64], b: &[f64]| stats::welch(a, b).ok().map_or(f64::NAN, |t| t.p_value);
    let percentile = mean(&bests[2].iter().map(|&b| exact.percentile(b)).collect::<Vec<_>>());
    // Which fidelity: blocks replaces recent only when it finds better configs with
    // confidence (Welch p < 0.05 on the best sharpe); otherwise the default stays.
    let blocks_better = mean(&bests[3]) > mean(&bests[2]) && p_of(&bests[2], &bests[3]) < 0.05;
    let fidelity_choice = if blocks_better { "blocks" } else { "recent" };
    let cmp = stats::compare(&secs[0], &secs[2], true)?;
    let row = ScenarioResult::new("bohb-5m", "random", "bohb", equivalent, equivalent.then_some(&cmp), &verdict)
        .with_metric("space_file", file)
        .with_metric("space_points", points)
        .with_metric("exact_optimum_sharpe", exact.optimum)
        .with_metric("exact_best_params", exact.best_params.clone())
        .with_metric("exact_grid_seconds", exact.seconds)
        .with_metric("exact_cached", exact.cached)
        .with_metric("fraction_within_10pct", exact.fraction_within(0.10))
        .with_metric("equal_budget_evaluations", equal_budget)
        .with_metric("bohb_best_sharpe_mean", mean(&bests[2]))
        .with_metric("bohb_best_shortfall_pct", decide::shortfall(mean(&bests[2]), exact.optimum) * 100.0)
        .with_metric("bohb_rank_percentile_mean", percentile)
        .with_metric("bohb_evaluations_mean", mean(&budgets[2]))
        .with_metric("bohb_budget_fraction", fraction)
        .with_metric("random_best_sharpe_mean", mean(&bests[0]))
        .with_metric("hyperband_best_sharpe_mean", mean(&bests[1]))
        .with_metric("bohb_blocks_best_sharpe_mean", mean(&bests[3]))
        .with_metric("quality_welch_p_vs_random", p_of(&bests[0], &bests[2]))
        .with_metric("quality_welch_p_vs_hyperband", p_of(&bests[1], &bests[2]))
        .with_metric("quality_welch_p_blocks_vs_recent", p_of(&bests[2], &bests[3]))
        .with_metric("spearman_mean_recent", mean(&rhos[2]))
        .with_metric("spearman_mean_blocks", mean(&rhos[3]))
        .with_metric("fidelity_decision", fidelity_choice)
        .with_metric("convergence_seeds", sizes.convergence_seeds)
        .with_metric("convergence_iterations", sizes.convergence_iterations)
        .with_metric("convergence_bohb_evaluations", mean(&long_budgets))
        .with_metric("convergence_bohb_best_sharpe", mean(&long_bests[0]))
        .with_metric("convergence_hyperband_best_sharpe", mean(&long_bests[1]))
        .with_metric("convergence_random_best_sharpe", mean(&long_bests[2]))
        .with_metric("convergence_bohb_shortfall_pct", decide::shortfall(mean(&long_bests[0]), exact.optimum) * 100.0)
        .with_metric("convergence_welch_p_vs_random", p_of(&long_bests[2], &long_bests[0]))
        .with_metric("convergence_welch_p_vs_hyperband", p_of(&long_bests[1], &long_bests[0]))
        .with_note(format!(
            "reference: the exact optimum of {file} ({} points), from the exhaustive grid at full budget{}; {:.2}% of the \
             points are within 10% of it",
            exact.points,
            if exact.cached { ", cached under the data dir" } else { ", computed in this run and cached" },
            exact.fraction_within(0.10) * 100.0
        ))
        .with_note(format!(
            "quality over seeds 0..{} in deterministic mode: BOHB {:.4} (shortfall {:.1}%, rank percentile {:.2}) vs random \
             {:.4} at BOHB's budget ({equal_budget} full evaluations) and Hyperband {:.4} (same brackets); Welch p {} vs \
             random, {} vs Hyperband; time ratio random vs BOHB is shown but never compounded (a quality verdict)",
            p.runs,
            mean(&bests[2]),
            decide::shortfall(mean(&bests[2]), exact.optimum) * 100.0,
            percentile,
            mean(&bests[0]),
            mean(&bests[1]),
            decide::format_p(p_of(&bests[0], &bests[2])),
            decide::format_p(p_of(&bests[1], &bests[2])),
        ))
        .with_note(format!(
            "fidelity: BOHB under `recent` {:.4} vs `blocks` {:.4} (Welch p {}); mean Spearman between successive budgets \
             {:.3} (recent) vs {:.3} (blocks); decision: use `{fidelity_choice}` (blocks replaces the default only when \
             better with p < 0.05)",
            mean(&bests[2]),
            mean(&bests[3]),
            decide::format_p(p_of(&bests[2], &bests[3])),
            mean(&rhos[2]),
            mean(&rhos[3]),
        ))
        .with_note(format!(
            "convergence over seeds 0..{}: BOHB over {} brackets spent {:.0} full evaluations on average and reached {:.4} \
             (shortfall {:.1}%); Hyperband over the same brackets {:.4}; random {:.4} at each BOHB run's budget; Welch p {} \
             vs random, {} vs Hyperband (plot convergence-5m.svg)",
            sizes.convergence_seeds,
            sizes.convergence_iterations,
            mean(&long_budgets),
            mean(&long_bests[0]),
            decide::shortfall(mean(&long_bests[0]), exact.optimum) * 100.0,
            mean(&long_bests[1]),
            mean(&long_bests[2]),
            decide::format_p(p_of(&long_bests[2], &long_bests[0])),
            decide::format_p(p_of(&long_bests[1], &long_bests[0])),
        ));
    Ok(vec![row])
}

/// `(low-budget loss, high-budget loss)` points.
type Points = Vec<(f64, f64)>;
/// A series of a fidelity plot: its label and points.
type LabelledPoints = (String, Points);

/// Pools `optimize::fidelity_points` of several summaries under `fidelity`'s name, with each pair's
/// mean Spearman ρ in its label.
fn fidelity_series(fidelity: &str, summaries: &[&SearchSummary]) -> Vec<LabelledPoints> {
    let mut pooled: BTreeMap<String, (Points, Vec<f64>)> = BTreeMap::new();
    for s in summaries {
        for (p, pair) in optimize::fidelity_points(&s.trials).into_iter().zip(optimize::fidelity(&s.trials)) {
            let e = pooled.entry(format!("{:.3} → {:.3}", p.low, p.high)).or_default();
            e.0.extend(p.points);
            e.1.extend(pair.spearman);
        }
    }
    pooled
        .into_iter()
        .map(|(label, (points, rhos))| {
            let rho = rhos.iter().sum::<f64>() / rhos.len().max(1) as f64;
            (format!("{fidelity} {label}, mean ρ {rho:.2}"), points)
        })
        .collect()
}

/// Best loss at the maximum budget against cumulative budget, for a convergence plot.
fn convergence_points(s: &SearchSummary) -> Vec<(f64, f64)> {
    let max = s.trials.iter().map(|t| t.budget).fold(0.0, f64::max);
    let (mut spent, mut best) = (0.0, f64::INFINITY);
    let mut points = Vec::new();
    for t in &s.trials {
        spent += t.budget;
        if let Some(l) = t.loss.filter(|_| t.budget == max) {
            best = best.min(l);
        }
        if best.is_finite() {
            points.push((spent, best));
        }
    }
    points
}

/// Scenario 5: Hyperband against BOHB at an equal budget (the same `iterations` brackets):
/// what the model adds.
pub(crate) fn hyperband(ctx: &mut Ctx, iterations: usize) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    ctx.progress.start("hyperband", (4 + 3 * p.runs) as u64);
    let space = space(ctx, "ma-1100.toml")?;
    let data = Data { dir: ctx.daily.dir.clone(), bundle: ctx.daily.bundle.clone() };
    let hb = |seed| SearchSpec { kind: SearchKind::Hyperband, iterations, seed, ..SearchSpec::default() };
    let equivalent = search_equivalent(ctx, &data, &space, &hb(0), "ma-crossover", None)?;
    let mut pool = start_pool(PoolKind::Fork(HandleMode::Inherit), p.workers, &data)?;
    let (_, first) = search(&mut pool, &space, &hb(0), "ma-crossover", None)?;
    let equal_budget = first.total_budget.round().max(1.0) as u64;
    let mut series: [Vec<Vec<(f64, f64)>>; 3] = Default::default();
    let mut bests: [Vec<f64>; 3] = Default::default();
    let mut rhos: [Vec<f64>; 2] = Default::default();
    let secs = interleave(ctx, "hyperband", &["hyperband", "bohb", "random"], |_, a, r| {
        let seed = if r == usize::MAX { 0 } else { r as u64 };
        let spec = match a {
            0 => hb(seed),
            1 => bohb_spec(iterations, seed),
            _ => {
                SearchSpec { kind: SearchKind::Random, evaluations: Some(equal_budget), seed, ..SearchSpec::default() }
            }
        };
        let (s, summary) = search(&mut pool, &space, &spec, "ma-crossover", None)?;
        if r != usize::MAX {
            series[a].push(convergence_points(&summary));
            bests[a].push(best_sharpe(&summary));
            if a < 2 {
                rhos[a].extend(optimize::fidelity(&summary.trials).iter().filter_map(|f| f.spearman));
            }
        }
        Ok(s)
    })?;
    // Both bracket searches again under the other fidelity (untimed): quality and ρ.
    let mut blocks: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for seed in 0..p.runs as u64 {
        for (a, spec) in [hb(seed), bohb_spec(iterations, seed)].iter().enumerate() {
            let (_, s) = search_with(&mut pool, &space, spec, "ma-crossover", None, engine::Fidelity::Blocks)?;
            blocks[a].0.push(best_sharpe(&s));
            blocks[a].1.extend(optimize::fidelity(&s.trials).iter().filter_map(|f| f.spearman));
        }
    }
    ctx.progress.step("blocks fidelity");
    drop(pool);
    let names = ["Hyperband", "BOHB", "random"];
    ctx.convergence.push(Convergence {
        stem: "convergence-1100".into(),
        title: "ma-1100 on mag-7 daily: best loss (−sharpe) at full budget vs budget spent".into(),
        series: names
            .iter()
            .zip(series)
            .map(|(n, seeds)| ConvergenceSeries { searcher: n.to_string(), seeds })
            .collect(),
    });
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let quality = stats::welch(&bests[0], &bests[1]).ok();
    let row = timed_row("hyperband", "hyperband", "bohb", equivalent, &secs[0], &secs[1])?
        .with_metric("hyperband_best_sharpe_mean", mean(&bests[0]))
        .with_metric("bohb_best_sharpe_mean", mean(&bests[1]))
        .with_metric("random_best_sharpe_mean", mean(&bests[2]))
        .with_metric("quality_welch_p", quality.map_or(f64::NAN, |t| t.p_value))
        .with_metric("spearman_mean_recent_hyperband", mean(&rhos[0]))
        .with_metric("spearman_mean_recent_bohb", mean(&rhos[1]))
        .with_metric("spearman_mean_blocks_hyperband", mean(&blocks[0].1))
        .with_metric("spearman_mean_blocks_bohb", mean(&blocks[1].1))
        .with_metric("hyperband_blocks_best_sharpe_mean", mean(&blocks[0].0))
        .with_metric("bohb_blocks_best_sharpe_mean", mean(&blocks[1].0))
        .with_note(format!(
            "fidelity (untimed, same seeds): under `blocks` Hyperband {:.4} and BOHB {:.4} against {:.4} and {:.4} under \
             `recent`; mean Spearman between successive budgets {:.3} (recent) vs {:.3} (blocks)",
            mean(&blocks[0].0),
            mean(&blocks[1].0),
            mean(&bests[0]),
            mean(&bests[1]),
            mean(&[rhos[0].clone(), rhos[1].clone()].concat()),
            mean(&[blocks[0].1.clone(), blocks[1].1.clone()].concat()),
        ))
        .with_note(format!(
            "equal budget: both run {} brackets of the same schedule; the model's value shows in quality \
             (mean best sharpe {:.4} for BOHB vs {:.4} for Hyperband, Welch p {}), not in time",
            iterations,
            mean(&bests[1]),
            mean(&bests[0]),
            quality.map_or("n/a".to_string(), |t| decide::format_p(t.p_value))
        ));
    Ok(vec![row])
}

/// The generator inputs of the overfitting control: mag-7 daily with a planted edge for the
/// MA crossover (20, 110, 0.001), a point of `spaces/ma-1100.toml`.
pub(crate) fn planted_spec() -> Result<bundle::GenerateSpec> {
    let edge = bundle::generate::PlantEdge::new_checked(
        20,
        110,
        bundle::generate::PlantEdge::DEFAULT_STRENGTH,
        bundle::generate::PlantEdge::DEFAULT_THRESHOLD,
    )?;
    Ok(bundle::GenerateSpec { plant_edge: Some(edge), ..bundle::GenerateSpec::mag7(bundle::Frequency::Daily) })
}

/// Overfitting statistics and walk-forward efficiency of one search on one bundle.
struct Judged {
    best: f64,
    stats: overfitting::Overfitting,
    efficiency: f64,
}

/// The search `spec` on the full range of `data`, its overfitting statistics over its
/// full-budget trials, and its walk-forward efficiency over 3 rolling folds.
fn judge(pool: &mut Pool, data: &Data, space: &Space, spec: &SearchSpec) -> Result<Judged> {
    let strategies = Registry::builtin();
    let ma = strategies.lookup("ma-crossover")?.clone();
    let id = strategies.id_of("ma-crossover")?;
    let base = engine::ParamValues::defaults(ma.parameters());
    let options = optimize::SearchOptions { deterministic: true, reuse_results: false, streaming: false };
    let mut searcher = spec.build(space)?;
    let mut ev = runner::PoolEvaluator::new(pool, ma.clone(), id, base, None, RunOptions::DEFAULT_FEE).collect_moments(
        1.0,
        overfitting::DEFAULT_MAX_TRIALS,
        overfitting::DEFAULT_CSCV_BLOCKS,
    );
    let summary =
        optimize::optimize(space, &mut *searcher, &mut ev, &mut optimize::MemoryStore::new(), options, &mut ())?;
    let mut sample = runner::TrialSample::new(1.0, overfitting::DEFAULT_MAX_TRIALS, 0);
    summary.trials.iter().for_each(|t| sample.offer(t));
    let stats = ev
        .overfitting(sample, overfitting::DEFAULT_CSCV_BLOCKS)
        .map_err(|e| anyhow!("returns: {e}"))?
        .map_err(|reason| anyhow!("overfitting statistics: {reason}"))?;
    let sessions = data.bundle.sessions().len();
    let warmup = runner::max_warmup(&*ma, &base, space)?;
    let folds = overfitting::segments(sessions, 3, false, warmup)?;
    let wf = runner::walkforward::WalkForward {
        strategy: ma,
        id,
        base,
        space,
        spec,
        options,
        fee: RunOptions::DEFAULT_FEE,
        fidelity: engine::Fidelity::Recent,
    };
    let mut engine = runner::Engine::new(data.bundle.clone())?;
    let mut outcomes = Vec::new();
    for f in folds {
        outcomes.push(wf.fold(pool, &mut engine, &mut optimize::MemoryStore::new(), f.train, f.test)?);
    }
    Ok(Judged { best: best_sharpe(&summary), stats, efficiency: runner::walkforward::efficiency(&outcomes) })
}

/// Scenario 6 (a quality verdict, never compounded): are the optimum's statistics sane? On
/// the mag-7 daily bundle and on the same bundle with a planted edge, the PBO, deflated Sharpe
/// and walk-forward efficiency of grid, random and BOHB on the 1,100-point MA space. ACCEPT
/// when the planted edge's grid search shows PBO < 0.2 and DSR > 0.95 and finds the planted
/// configuration, and the plain bundle's grid PBO is above the planted one's.
pub(crate) fn overfitting(ctx: &mut Ctx, iterations: usize) -> Result<Vec<ScenarioResult>> {
    let p = ctx.profile.clone();
    let space = space(ctx, "ma-1100.toml")?;
    ctx.progress.start("overfitting", 6);
    let searches = [
        ("grid", SearchSpec { kind: SearchKind::Grid, ..SearchSpec::default() }),
        ("random", SearchSpec { kind: SearchKind::Random, evaluations: Some(110), seed: 1, ..SearchSpec::default() }),
        ("bohb", bohb_spec(iterations, 1)),
    ];
    let mut judged = BTreeMap::new();
    for (label, data) in [("plain", &ctx.daily), ("planted", &ctx.planted)] {
        let data = Data { dir: data.dir.clone(), bundle: data.bundle.clone() };
        let mut pool = start_pool(PoolKind::Fork(HandleMode::Inherit), p.workers, &data)?;
        for (name, spec) in &searches {
            judged.insert((label, *name), judge(&mut pool, &data, &space, spec)?);
            ctx.progress.step(&format!("{label} {name}"));
        }
    }
    let planted = &judged[&("planted", "grid")];
    let plain = &judged[&("plain", "grid")];
    let mut failed = Vec::new();
    if planted.stats.pbo >= 0.2 {
        failed.push(format!("planted-edge PBO {:.3} is not below 0.2", planted.stats.pbo));
    }
    if planted.stats.deflated_sharpe <= 0.95 {
        failed.push(format!("planted-edge DSR {:.3} is not above 0.95", planted.stats.deflated_sharpe));
    }
    if plain.stats.pbo <= planted.stats.pbo {
        failed.push(format!("plain PBO {:.3} is not above the planted one {:.3}", plain.stats.pbo, planted.stats.pbo));
    }
    let verdict = if failed.is_empty() {
        Verdict {
            decision: decide::Decision::Accept,
            reason: format!(
                "the statistics tell a real edge from noise: planted PBO {:.3}, DSR {:.3}; plain PBO {:.3}, DSR {:.3}",
                planted.stats.pbo, planted.stats.deflated_sharpe, plain.stats.pbo, plain.stats.deflated_sharpe
            ),
        }
    } else {
        Verdict { decision: decide::Decision::Reject, reason: failed.join("; ") }
    };
    let mut row = ScenarioResult::new("overfitting", "plain", "planted", true, None, &verdict);
    for ((label, name), j) in &judged {
        row = row
            .with_metric(&format!("{label}_{name}_pbo"), j.stats.pbo)
            .with_metric(&format!("{label}_{name}_dsr"), j.stats.deflated_sharpe)
            .with_metric(&format!("{label}_{name}_trials"), j.stats.trials)
            .with_metric(&format!("{label}_{name}_best_sharpe"), j.best)
            .with_metric(&format!("{label}_{name}_wf_efficiency"), j.efficiency);
    }
    Ok(vec![row.with_note(
        "plain: the mag-7 daily bundle (drifting random walks); planted: the same generator with an edge planted for \
         (20, 110, 0.001) (`btopt bundle generate --plant-edge 20,110`); statistics over each search's full-budget \
         trials, S = 16; walk-forward: 3 rolling folds, the same search per fold"
            .to_string(),
    )])
}
