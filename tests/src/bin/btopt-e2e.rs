//! btopt-e2e: the child binary of the end-to-end tests (`tests/e2e/`).
//!
//! It builds real backtest pools (`runner::build_pool`) over a bundle directory and prints
//! what the workers return as JSON lines, with every `f64` as its bit pattern (a `u64`), so
//! that tests compare results across backends exactly. Fork pools must be built while the
//! process is single-threaded, which a `#[test]` function never is: hence a binary.
//!
//! ```text
//! btopt-e2e run    --bundle DIR --pool KIND --workers N
//!     KIND: fork-inherit | fork-reopen | per-batch | spawn-load | spawn-mmap | thread
//!           | in-process (no pool: one worker value called directly, the reference)
//!     Runs the fixed job list (`jobs`) twice, with `map` and with submit/recv, and prints
//!     one line per job and pass: {"pass":"map"|"stream","job":I,"out":{...}}.
//! btopt-e2e hammer --bundle DIR --handles inherit|reopen [--workers 8] [--rounds 50]
//!     Submits rounds × assets `SqlCloses` jobs at once to a fork pool and prints, per sid,
//!     the closes (bits) and how many distinct answers and errors the rounds gave, then a
//!     line with the pool's counters.
//! btopt-e2e shared --bundle DIR --pool KIND --tables on|off
//!     One worker (KIND as for `run`, or in-process), with or without shared SMA tables of the
//!     windows 2..=250 built here first: a warm-up backtest, the worker's private dirty memory,
//!     a sweep that reads every one of those windows, the private dirty memory again. Prints
//!     one JSON object: table_bytes, before, after, metrics (every float as its bits).
//! btopt-e2e fault-ids --bundle DIR --tasks N
//!     Runs N echo jobs on the platform's default process pool under the current
//!     BTOPT_FAULT_INJECT and prints the ids of the tasks that failed, as one JSON array.
//! ```
//! Spawned pool workers re-execute this binary, so `main` hands them over to the pool first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bundle::Bundle;
use engine::{Configured, MaCrossover, Metrics, Momentum, ParamValue, Registry, RunOptions, WeightingScheme};
use runner::{BacktestTask, HandleMode, Job, JobOutput, PoolKind, SpawnLoad};
use serde_json::{Value, json};

fn main() -> ExitCode {
    // Spawned workers run here and exit, before anything starts a thread.
    runner::worker_main_if_requested(&Registry::builtin());
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": "));
            ExitCode::from(1)
        }
    }
}

/// `--name value` options after the subcommand.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let name = k.strip_prefix("--").ok_or_else(|| anyhow!("unexpected argument {k:?}"))?;
            let v = it.next().ok_or_else(|| anyhow!("{k} needs a value"))?;
            map.insert(name.to_string(), v.clone());
        }
        Ok(Opts(map))
    }

    fn get(&self, name: &str) -> Result<&str> {
        self.0.get(name).map(String::as_str).ok_or_else(|| anyhow!("missing --{name}"))
    }

    fn num(&self, name: &str, default: usize) -> Result<usize> {
        match self.0.get(name) {
            Some(v) => v.parse().with_context(|| format!("bad --{name} {v:?}")),
            None => Ok(default),
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().ok_or_else(|| anyhow!("expected run, hammer or fault-ids"))?;
    let opts = Opts::parse(rest)?;
    let dir = PathBuf::from(opts.get("bundle")?);
    let bundle = Arc::new(Bundle::load(&dir).context("failed to load the bundle")?);
    match cmd.as_str() {
        "run" if opts.get("pool")? == "in-process" => in_process(&bundle, &dir),
        "run" => {
            let kind = pool_kind(opts.get("pool")?)?;
            let workers = opts.num("workers", 2)?;
            run_jobs(kind, workers, &bundle, &dir)
        }
        "hammer" => {
            let mode = match opts.get("handles")? {
                "inherit" => HandleMode::Inherit,
                "reopen" => HandleMode::Reopen,
                h => bail!("unknown --handles {h:?}"),
            };
            hammer(mode, opts.num("workers", 8)?, opts.num("rounds", 50)?, &bundle, &dir)
        }
        "fault-ids" => fault_ids(opts.num("tasks", 100)?, &bundle, &dir),
        "shared" => {
            let on = match opts.get("tables")? {
                "on" => true,
                "off" => false,
                t => bail!("unknown --tables {t:?}"),
            };
            shared(opts.get("pool")?, on, &bundle, &dir)
        }
        c => bail!("unknown subcommand {c:?}"),
    }
}

fn pool_kind(name: &str) -> Result<PoolKind> {
    Ok(match name {
        "fork-inherit" => PoolKind::Fork(HandleMode::Inherit),
        "fork-reopen" => PoolKind::Fork(HandleMode::Reopen),
        "per-batch" => PoolKind::PerBatch,
        "spawn-load" => PoolKind::Spawn(SpawnLoad::Load),
        "spawn-mmap" => PoolKind::Spawn(SpawnLoad::Mmap),
        "thread" => PoolKind::Thread,
        k => bail!("unknown --pool {k:?}"),
    })
}

/// The fixed job list: MA-crossover and momentum backtests over varied windows, thresholds,
/// budgets, ranges and fees; tasks the engine must refuse; a raw-closes read for every
/// asset and for one that does not exist (which reads as no rows); an echo.
fn jobs(bundle: &Bundle) -> Result<Vec<Job>> {
    let n = bundle.sessions().len();
    let fee = RunOptions::DEFAULT_FEE;
    let opts = |budget: f64, sessions: Option<std::ops::Range<usize>>, fee: f64| {
        RunOptions::new_checked(budget, sessions, fee).map_err(|e| anyhow!("bad run options: {e}"))
    };
    let strategies = Registry::builtin();
    let task = |strategy: Configured, options: RunOptions| {
        BacktestTask::new(&strategies, &strategy, options).map_err(|e| anyhow!("bad task: {e}"))
    };
    let ma = |short_window, long_window, threshold| {
        MaCrossover { short_window, long_window, threshold }.configured().map_err(|e| anyhow!("bad params: {e}"))
    };
    let mut jobs = Vec::new();
    let windows = [(5, 20), (10, 50), (20, 60), (50, 50), (3, 8), (30, 15), (1, 2), (40, 200)];
    let budgets = [1.0, 0.37, 0.05];
    for (i, &(s, l)) in windows.iter().enumerate() {
        for (j, t) in [0.0, 0.002, 0.01].into_iter().enumerate() {
            let options = opts(budgets[(i + j) % budgets.len()], None, fee)?;
            jobs.push(Job::Backtest(task(ma(s, l, t)?, options)?));
        }
    }
    // Sub-ranges and fees.
    for (sessions, fee) in [(Some(10..n - 10), 0.0), (Some(n / 2..n), 0.005), (Some(0..n / 3), fee)] {
        jobs.push(Job::Backtest(task(ma(7, 21, 0.001)?, opts(0.8, sessions, fee)?)?));
    }
    let momentum = Momentum::default().configured().map_err(|e| anyhow!("bad params: {e}"))?;
    jobs.push(Job::Backtest(task(momentum, opts(1.0, None, fee)?)?));
    let risk_parity =
        Momentum { weighting_scheme: WeightingScheme::RiskParity, top_n_assets: 3, ..Momentum::default() }
            .configured()
            .map_err(|e| anyhow!("bad params: {e}"))?;
    jobs.push(Job::Backtest(task(risk_parity, opts(0.5, None, fee)?)?));
    // Refused by the engine inside the worker: a zero window and a negative threshold (values
    // forged past the checks, as a corrupt task would carry them), a range past the bundle's
    // end, and a strategy id this binary does not have.
    let forged = |i: usize, v: ParamValue| -> Result<Job> {
        let mut t = task(ma(5, 20, 0.0)?, opts(1.0, None, fee)?)?;
        t.params = t.params.with(i, v);
        Ok(Job::Backtest(t))
    };
    jobs.push(forged(0, ParamValue::Int(0))?);
    jobs.push(Job::Backtest(task(ma(5, 20, 0.0)?, opts(1.0, Some(n + 5..n + 10), fee)?)?));
    jobs.push(forged(2, ParamValue::Float(-1.0))?);
    let mut unknown = task(ma(5, 20, 0.0)?, opts(1.0, None, fee)?)?;
    unknown.strategy = engine::StrategyId(99);
    jobs.push(Job::Backtest(unknown));
    for a in bundle.assets() {
        jobs.push(Job::SqlCloses { sid: a.sid });
    }
    jobs.push(Job::SqlCloses { sid: 999_999 });
    jobs.push(Job::Echo(0xdead_beef));
    Ok(jobs)
}

fn bits(x: f64) -> Value {
    json!(x.to_bits())
}

fn metrics_json(m: &Metrics) -> Value {
    json!({
        "total_return": bits(m.total_return),
        "sharpe": bits(m.sharpe),
        "max_drawdown": bits(m.max_drawdown),
        "trades": m.trades,
        "sortino": bits(m.sortino),
        "calmar": bits(m.calmar),
        "bars": m.bars,
        "final_equity": bits(m.final_equity),
    })
}

/// One result, exactly: every float as its bits.
fn output_json(r: &Result<JobOutput, pool::Error>) -> Value {
    match r {
        // The worker id differs between backends by design; only the metrics must agree.
        Ok(JobOutput::Metrics { metrics, .. }) => json!({ "metrics": metrics_json(metrics) }),
        Ok(JobOutput::Invalid(msg)) => json!({ "invalid": msg }),
        Ok(JobOutput::Closes(c)) => json!({ "closes": c.iter().map(|x| x.to_bits()).collect::<Vec<_>>() }),
        Ok(JobOutput::Echo(v)) => json!({ "echo": v }),
        Ok(JobOutput::Bytes(b)) => json!({ "bytes": b }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn run_jobs(kind: PoolKind, workers: usize, bundle: &Arc<Bundle>, dir: &std::path::Path) -> Result<()> {
    let jobs = jobs(bundle)?;
    let builder = pool::PoolBuilder::new().workers(workers);
    let mut pool = runner::build_pool(kind, builder, bundle, dir, &Arc::new(Registry::builtin()))
        .map_err(|e| anyhow!("failed to start the pool: {e}"))?;
    for (i, r) in pool.map(jobs.clone()).iter().enumerate() {
        println!("{}", json!({ "pass": "map", "job": i, "out": output_json(r) }));
    }
    // The same jobs streamed in completion order, put back in task order.
    let mut first = None;
    for job in jobs {
        let id = pool.submit(job).context("failed to submit")?;
        first.get_or_insert(id);
    }
    let first = first.unwrap_or(0);
    let mut got = BTreeMap::new();
    while let Some((id, r)) = pool.recv() {
        got.insert(id - first, r);
    }
    for (i, r) in &got {
        println!("{}", json!({ "pass": "stream", "job": i, "out": output_json(r) }));
    }
    Ok(())
}

/// The reference: the same worker type, called directly, with no pool and no IPC.
fn in_process(bundle: &Arc<Bundle>, dir: &std::path::Path) -> Result<()> {
    let mut worker =
        runner::BacktestWorker::new(bundle.clone(), dir, HandleMode::Reopen, Arc::new(Registry::builtin()))
            .map_err(|e| anyhow!("worker: {e}"))?;
    worker.reopen_handles().map_err(|e| anyhow!("handles: {e}"))?;
    let outs: Vec<_> = jobs(bundle)?.into_iter().map(|j| Ok(worker.execute(j))).collect();
    for pass in ["map", "stream"] {
        for (i, r) in outs.iter().enumerate() {
            println!("{}", json!({ "pass": pass, "job": i, "out": output_json(r) }));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn hammer(mode: HandleMode, workers: usize, rounds: usize, bundle: &Arc<Bundle>, dir: &std::path::Path) -> Result<()> {
    let builder = pool::PoolBuilder::new().workers(workers);
    let mut pool = runner::build_pool(PoolKind::Fork(mode), builder, bundle, dir, &Arc::new(Registry::builtin()))
        .map_err(|e| anyhow!("failed to start the pool: {e}"))?;
    let sids: Vec<u32> = bundle.assets().iter().map(|a| a.sid).collect();
    let mut of_task = BTreeMap::new();
    // Everything at once, so that every worker reads while the others do.
    for _ in 0..rounds {
        for &sid in &sids {
            of_task.insert(pool.submit(Job::SqlCloses { sid }).context("failed to submit")?, sid);
        }
    }
    let live = pool.worker_pids().len();
    let mut answers: BTreeMap<u32, Vec<Result<Vec<u64>, String>>> = BTreeMap::new();
    while let Some((id, r)) = pool.recv() {
        let sid = of_task[&id];
        let answer = match r {
            Ok(JobOutput::Closes(c)) => Ok(c.iter().map(|x| x.to_bits()).collect()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        };
        answers.entry(sid).or_default().push(answer);
    }
    for (sid, all) in &answers {
        let errors: Vec<&String> = all.iter().filter_map(|a| a.as_ref().err()).collect();
        let mut distinct: Vec<&Vec<u64>> = all.iter().filter_map(|a| a.as_ref().ok()).collect();
        distinct.sort();
        distinct.dedup();
        println!(
            "{}",
            json!({
                "sid": sid, "answers": all.len(), "distinct": distinct.len(), "errors": errors,
                "closes": distinct.first(),
            })
        );
    }
    let stats = pool.stats();
    println!("{}", json!({ "live_workers": live, "started": stats.started, "lost": stats.lost }));
    Ok(())
}

#[cfg(not(unix))]
fn hammer(_: HandleMode, _: usize, _: usize, _: &Arc<Bundle>, _: &std::path::Path) -> Result<()> {
    bail!("hammer needs the fork backend (unix)")
}

/// The windows of `shared`'s tables and sweep.
const SHARED_WINDOWS: std::ops::RangeInclusive<usize> = 2..=250;

fn shared(pool: &str, on: bool, bundle: &Arc<Bundle>, dir: &std::path::Path) -> Result<()> {
    let windows: Vec<usize> = SHARED_WINDOWS.collect();
    let tables = if on {
        runner::SharedTables::sma(
            runner::shared_tables(bundle, &windows, usize::MAX).map_err(|e| anyhow!("tables: {e}"))?.expect("tables"),
        )
    } else {
        runner::SharedTables::none()
    };
    let strategies = Arc::new(Registry::builtin());
    let task = |s, l, t| -> Result<Job> {
        let ma = MaCrossover { short_window: s, long_window: l, threshold: t }.configured()?;
        Ok(Job::Backtest(BacktestTask::new(&strategies, &ma, RunOptions::default())?))
    };
    let mut jobs = vec![task(2, 3, 0.0)?, Job::PrivateDirty];
    // Every window, as the short and as the long SMA.
    let (lo, hi) = (*SHARED_WINDOWS.start(), *SHARED_WINDOWS.end());
    for w in SHARED_WINDOWS {
        for t in [0.0, 0.002] {
            jobs.push(task(w, hi + lo - w, t)?);
        }
    }
    jobs.push(Job::PrivateDirty);
    let outs: Vec<Result<JobOutput, pool::Error>> = if pool == "in-process" {
        let mut w =
            runner::BacktestWorker::with_tables(bundle.clone(), tables.clone(), dir, HandleMode::Reopen, strategies)
                .map_err(|e| anyhow!("worker: {e}"))?;
        jobs.into_iter().map(|j| Ok(w.execute(j))).collect()
    } else {
        let builder = pool::PoolBuilder::new().workers(1);
        let mut pool = runner::build_pool_with(pool_kind(pool)?, builder, bundle, &tables, dir, &strategies)
            .map_err(|e| anyhow!("failed to start the pool: {e}"))?;
        pool.map(jobs)
    };
    let bytes = |o: &Result<JobOutput, pool::Error>| match o {
        Ok(JobOutput::Bytes(b)) => json!(b),
        other => json!(format!("{other:?}")),
    };
    let metrics: Vec<Value> = outs[2..outs.len() - 1].iter().map(output_json).collect();
    println!(
        "{}",
        json!({
            "table_bytes": tables.bytes(),
            "before": bytes(&outs[1]),
            "after": bytes(&outs[outs.len() - 1]),
            "metrics": metrics,
        })
    );
    Ok(())
}

fn fault_ids(tasks: usize, bundle: &Arc<Bundle>, dir: &std::path::Path) -> Result<()> {
    let builder = pool::PoolBuilder::new().workers(1);
    let mut pool =
        runner::build_pool(PoolKind::platform_default(), builder, bundle, dir, &Arc::new(Registry::builtin()))
            .map_err(|e| anyhow!("failed to start the pool: {e}"))?;
    let results = pool.map((0..tasks as u64).map(Job::Echo));
    let failed: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    println!("{}", json!(failed));
    Ok(())
}
