//! bench-driver: btopt's main job, the guidance's sequential evaluation.
//!
//! It prepares its own bundles (cached under `--data-dir`, keyed by generator inputs and checked
//! by content hash), then runs each scenario: a functional-equivalence gate first, then ≥ 10
//! interleaved runs per arm after a warm-up, then statistics and an ACCEPT/REJECT decision.
//! It writes `report.md`, `report.json`, `runs.csv` and SVG plots to `--out`.
//!
//! Fork pools may only be built while the process is single-threaded, so this program starts
//! no thread of its own (the progress bar is drawn from the main thread) and waits for the
//! threads of a finished spawn or thread pool to end before it forks again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, ValueEnum};

use bench_driver::decide::Tracker;
use bench_driver::plots::{self, Convergence};
use bench_driver::report::{self, Environment, Report, Run, ScenarioResult};
use bundle::{Bundle, Frequency, GenerateSpec, Preset};

mod dispatch;
mod distributed;
mod exact;
mod scenarios;

/// Run btopt's sequential evaluation and write its report.
#[derive(Parser, Debug)]
#[command(name = "bench-driver", version, about)]
struct Cli {
    /// quick (the default, ≤ 5 minutes on 2 cores) or full (the guidance's configuration).
    #[arg(long, default_value = "quick")]
    profile: ProfileArg,
    /// Run only this scenario (repeatable).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS.iter().map(|s| s.name)))]
    scenario: Vec<String>,
    /// Timed runs per arm (at least 10 for a decision).
    #[arg(long)]
    runs: Option<usize>,
    /// Workers per pool.
    #[arg(long)]
    workers: Option<usize>,
    /// Output directory [default: target/bench-driver/<UTC timestamp>/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where generated bundles are cached.
    #[arg(long, default_value = "target/bench-driver/data")]
    data_dir: PathBuf,
    /// Check the report written to this directory (its JSON shape and files) and exit.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
    /// PostgreSQL server for the `distributed` scenario, a URL of a database where it may
    /// `CREATE DATABASE` [default: BTOPT_TEST_POSTGRES, else a throwaway cluster when the server
    /// binaries exist, else the scenario is reported as skipped].
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum ProfileArg {
    Quick,
    Full,
    /// A seconds-long smoke run for CI: tiny grids, still 10 runs per arm.
    Tiny,
}

/// What every scenario shares in a profile; each scenario owns its other sizes
/// ([`PerProfile`] in its entry of [`SCENARIOS`]).
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub(crate) name: &'static str,
    /// Timed runs per arm.
    pub(crate) runs: usize,
    /// Workers per pool.
    pub(crate) workers: usize,
    /// Assets in the universe bundle (prepared before any scenario runs).
    pub(crate) universe_assets: usize,
}

impl Profile {
    fn new(arg: ProfileArg) -> Profile {
        match arg {
            ProfileArg::Quick => Profile { name: "quick", runs: 10, workers: 2, universe_assets: 100 },
            ProfileArg::Full => Profile { name: "full", runs: 10, workers: 8, universe_assets: 100 },
            ProfileArg::Tiny => Profile { name: "tiny", runs: 10, workers: 2, universe_assets: 30 },
        }
    }
}

/// What a scenario's first row is: a step of the speed-up sequence (compounded into the
/// cumulative speed-up), a timed comparison judged against an issue's target, or a quality
/// verdict (reported in its own table, never compounded).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A time step: its speed-up enters the cumulative product.
    Timed,
    /// Timed, but judged against a target rather than as an optimization step (distributed:
    /// a fleet is not meant to beat the local pool, only to stay within 10% of it): reported
    /// with the time steps, never compounded, never skipped by the stop rule.
    Target,
    /// A quality or sanity verdict: no speed-up to compound.
    Quality,
}

/// One scenario: its name (also `--scenario`'s choice), what its first row is, and its run.
pub(crate) struct ScenarioDef {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) run: fn(&mut Ctx) -> Result<Vec<ScenarioResult>>,
}

/// A scenario's own sizes for each profile; its entry in [`SCENARIOS`] holds them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PerProfile<S> {
    pub(crate) tiny: S,
    pub(crate) quick: S,
    pub(crate) full: S,
}

impl<S: Copy> PerProfile<S> {
    /// The sizes of the profile named `profile` (quick for any other name).
    pub(crate) fn pick(&self, profile: &str) -> S {
        match profile {
            "tiny" => self.tiny,
            "full" => self.full,
            _ => self.quick,
        }
    }
}

/// Every scenario, in run order: the one list that drives `--scenario`, validation and the
/// run loop.
pub(crate) const SCENARIOS: &[ScenarioDef] = &[
    ScenarioDef {
        name: "persistent-pool",
        kind: Kind::Timed,
        run: |ctx| {
            // Batches of MA backtests on mag-7 daily, each run building and stopping its pool.
            const SIZES: PerProfile<scenarios::PoolSizes> = PerProfile {
                tiny: scenarios::PoolSizes { batches: 3, batch_size: 8 },
                quick: scenarios::PoolSizes { batches: 10, batch_size: 36 },
                full: scenarios::PoolSizes { batches: 20, batch_size: 36 },
            };
            scenarios::persistent_pool(ctx, &SIZES)
        },
    },
    ScenarioDef {
        name: "shared-bundle",
        kind: Kind::Timed,
        run: |ctx| {
            // Backtests of the 1,100-point space on the mag-7 minute bundle, at this budget.
            const SIZES: PerProfile<scenarios::SharedSizes> = PerProfile {
                tiny: scenarios::SharedSizes { backtests: 2, budget: 0.05, memory_workers: &[2] },
                quick: scenarios::SharedSizes { backtests: 8, budget: 0.25, memory_workers: &[2, 8] },
                full: scenarios::SharedSizes { backtests: 32, budget: 1.0, memory_workers: &[2, 8] },
            };
            scenarios::shared_bundle(ctx, &SIZES)
        },
    },
    ScenarioDef {
        name: "bohb-1100",
        kind: Kind::Quality,
        run: |ctx| {
            // The guidance's 10 brackets; the minute bundle over a quarter (quick) or all of it
            // (full); CI's tiny run stops the grid after 200 points and skips the minute bundle.
            const SIZES: PerProfile<scenarios::Bohb1100Sizes> = PerProfile {
                tiny: scenarios::Bohb1100Sizes { iterations: 4, grid_points: Some(200), minute: None },
                quick: scenarios::Bohb1100Sizes {
                    iterations: 10,
                    grid_points: None,
                    minute: Some(Some(("2024-10-01", "2024-12-31"))),
                },
                full: scenarios::Bohb1100Sizes { iterations: 10, grid_points: None, minute: Some(None) },
            };
            scenarios::bohb_1100(ctx, &SIZES)
        },
    },
    ScenarioDef {
        name: "bohb-5m",
        kind: Kind::Quality,
        run: |ctx| {
            // The space searched when the whole 5.4M space's exact optimum is not cached (a
            // documented sub-space of it in `spaces/`), and the convergence runs: 360 brackets
            // spend about 1,000 full-budget evaluations, the guidance's figure.
            const SIZES: PerProfile<scenarios::Bohb5mSizes> = PerProfile {
                tiny: scenarios::Bohb5mSizes {
                    iterations: 4,
                    space: "momentum-5m-tiny.toml",
                    convergence_iterations: 12,
                    convergence_seeds: 2,
                },
                quick: scenarios::Bohb5mSizes {
                    iterations: 10,
                    space: "momentum-5m-quick.toml",
                    convergence_iterations: 120,
                    convergence_seeds: 10,
                },
                full: scenarios::Bohb5mSizes {
                    iterations: 10,
                    space: "momentum-5m.toml",
                    convergence_iterations: 360,
                    convergence_seeds: 10,
                },
            };
            scenarios::bohb_5m(ctx, &SIZES)
        },
    },
    ScenarioDef {
        name: "hyperband",
        kind: Kind::Timed,
        run: |ctx| {
            const ITERATIONS: PerProfile<usize> = PerProfile { tiny: 4, quick: 10, full: 10 };
            scenarios::hyperband(ctx, ITERATIONS.pick(ctx.profile.name))
        },
    },
    ScenarioDef {
        name: "distributed",
        kind: Kind::Target,
        run: |ctx| {
            // The 1,100-point MA grid on a mag-7 minute bundle of these dates: a month (200
            // points) for CI, the last quarter of 2024 for quick, all of 2024 for full (the
            // bundle of the measurement in crates/store/BENCHMARKS.md).
            const SIZES: PerProfile<distributed::Sizes> = PerProfile {
                tiny: distributed::Sizes { grid_points: Some(200), dates: ("2024-12-02", "2024-12-31") },
                quick: distributed::Sizes { grid_points: None, dates: ("2024-10-01", "2024-12-31") },
                full: distributed::Sizes { grid_points: None, dates: ("2024-01-02", "2024-12-31") },
            };
            distributed::run(ctx, &SIZES)
        },
    },
    ScenarioDef {
        name: "overfitting",
        kind: Kind::Quality,
        run: |ctx| {
            // BOHB's brackets among the judged searches.
            const ITERATIONS: PerProfile<usize> = PerProfile { tiny: 4, quick: 10, full: 10 };
            scenarios::overfitting(ctx, ITERATIONS.pick(ctx.profile.name))
        },
    },
    ScenarioDef {
        name: "dispatch",
        kind: Kind::Timed,
        run: |ctx| {
            const SIZES: PerProfile<dispatch::Sizes> = PerProfile {
                tiny: dispatch::Sizes {
                    end: "2016-12-30",
                    max_window: 20,
                    memory_workers: &[1, 2],
                    memory_space: "ma-36.toml",
                    memory_budget: 0.01,
                    bohb: None,
                },
                quick: dispatch::Sizes {
                    end: "2024-12-31",
                    max_window: 100,
                    memory_workers: &[1, 2, 4, 8],
                    memory_space: "ma-1100.toml",
                    memory_budget: 0.02,
                    bohb: Some((8, 10)),
                },
                full: dispatch::Sizes {
                    end: "2024-12-31",
                    max_window: 100,
                    memory_workers: &[1, 2, 4, 8],
                    memory_space: "ma-1100.toml",
                    memory_budget: 0.1,
                    bohb: Some((8, 10)),
                },
            };
            dispatch::run(ctx, &SIZES)
        },
    },
];

/// A bundle on disk and loaded.
pub(crate) struct Data {
    pub(crate) dir: PathBuf,
    pub(crate) bundle: Arc<Bundle>,
}

/// Everything a scenario needs.
pub(crate) struct Ctx {
    pub(crate) profile: Profile,
    pub(crate) daily: Data,
    pub(crate) minute: Data,
    pub(crate) universe: Data,
    /// mag-7 daily with a planted edge for (20, 110, 0.001): the overfitting control.
    pub(crate) planted: Data,
    pub(crate) spaces: PathBuf,
    /// Where bundles and exact optima are cached.
    pub(crate) data_dir: PathBuf,
    pub(crate) progress: Progress,
    pub(crate) runs: Vec<Run>,
    pub(crate) convergence: Vec<Convergence>,
    /// Low- against high-budget losses of the bracket scenarios, one plot each.
    pub(crate) fidelity: Vec<plots::FidelityScatter>,
    /// `--postgres`.
    pub(crate) postgres: Option<String>,
}

/// Per-scenario progress: a bar on a terminal (drawn from this thread; no ticker thread),
/// plain lines otherwise.
pub(crate) struct Progress {
    tty: bool,
    bar: Option<indicatif::ProgressBar>,
    scenario: String,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), bar: None, scenario: String::new() }
    }

    /// Starts a scenario with `steps` steps.
    pub(crate) fn start(&mut self, scenario: &str, steps: u64) {
        self.finish();
        self.scenario = scenario.to_string();
        if self.tty {
            let bar = indicatif::ProgressBar::new(steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(scenario.to_string());
            self.bar = Some(bar);
        } else {
            eprintln!("[{scenario}] starting ({steps} steps)");
        }
    }

    /// One step done.
    pub(crate) fn step(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg.to_string());
                bar.inc(1);
            }
            None => eprintln!("[{}] {msg}", self.scenario),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    // Spawned pool workers run here and exit, before anything else happens.
    runner::worker_main_if_requested(&engine::Registry::builtin());
    // The `distributed` scenario's coordinator and workers: btopt's CLI, from this very build.
    if std::env::var_os(distributed::AS_BTOPT_ENV).is_some() {
        return btopt::main_with(engine::Registry::builtin());
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::from(1)
        }
    }
}

/// Returns the cached bundle for `spec`, generating it first if needed, and loads it.
///
/// Bundles live in `<data-dir>/<name>-<content hash>/`; a small index file
/// `<name>-seed<N>.hash` maps the generator's inputs to the content hash, so a cached bundle
/// is found without regenerating it, and is loaded only if its recorded hash matches.
fn ensure(data_dir: &Path, name: &str, spec: &GenerateSpec) -> Result<Data> {
    ensure_edited(data_dir, name, spec, |_| {})
}

/// [`ensure`] for the generated data after `edit` (a distinct `name` per edit: the cache is
/// keyed by name and generator inputs).
pub(crate) fn ensure_edited(
    data_dir: &Path,
    name: &str,
    spec: &GenerateSpec,
    edit: impl Fn(&mut bundle::BundleData),
) -> Result<Data> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;
    let key = format!("{name}-{}-{}..{}-seed{}", spec.frequency.as_str(), spec.start, spec.end, spec.seed);
    let index = data_dir.join(format!("{key}.hash"));
    let cached = std::fs::read_to_string(&index).ok().map(|h| h.trim().to_string());
    let dir_of = |hash: &str| data_dir.join(format!("{name}-{}", &hash[..hash.len().min(16)]));
    let hash = match cached.filter(|h| !h.is_empty() && dir_of(h).is_dir()) {
        Some(h) => h,
        None => {
            let t = Instant::now();
            let mut data = bundle::generate::generate(spec)?;
            edit(&mut data);
            let hash = data.content_hash();
            if !dir_of(&hash).exists() {
                bundle::store::write(&data, &dir_of(&hash))?;
            }
            std::fs::write(&index, &hash).with_context(|| format!("failed to write {}", index.display()))?;
            eprintln!("generated {name} in {:.2} s (content hash {hash})", t.elapsed().as_secs_f64());
            hash
        }
    };
    let dir = dir_of(&hash);
    let t = Instant::now();
    let bundle =
        Bundle::load(&dir).with_context(|| format!("failed to load {}; delete it to regenerate", dir.display()))?;
    if bundle.content_hash() != hash {
        return Err(anyhow!("cached bundle {} does not hold content {hash}; delete it", dir.display()));
    }
    let bars: usize = bundle.assets().iter().map(|a| a.bars()).sum();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("loaded {name}: {bars} bars in {:.0} ms ({:.2} M bars/s)", secs * 1e3, bars as f64 / secs / 1e6);
    Ok(Data { dir, bundle: Arc::new(bundle) })
}

/// Checks a finished report directory: every required key of `report.json`, and the other files.
fn check_report(dir: &Path) -> Result<()> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let n = report::check_json_shape(&text).map_err(|p| anyhow!("{}: {}", path.display(), p.join("; ")))?;
    if n == 0 {
        return Err(anyhow!("{}: no scenarios", path.display()));
    }
    for f in ["report.md", "runs.csv", "speedup.svg"] {
        let meta = std::fs::metadata(dir.join(f)).with_context(|| format!("missing {f} in {}", dir.display()))?;
        if meta.len() == 0 {
            return Err(anyhow!("{f} in {} is empty", dir.display()));
        }
    }
    println!("ok: {} holds a well-formed report of {n} scenario rows", dir.display());
    Ok(())
}

fn run(cli: &Cli) -> Result<()> {
    if let Some(dir) = &cli.check {
        return check_report(dir);
    }
    let mut profile = Profile::new(cli.profile);
    if let Some(r) = cli.runs {
        if r < 10 {
            return Err(anyhow!("--runs {r}: a decision needs at least 10 runs per arm"));
        }
        profile.runs = r;
    }
    if let Some(w) = cli.workers {
        if w == 0 {
            return Err(anyhow!("--workers must be at least 1"));
        }
        profile.workers = w;
    }
    let wanted = |name: &str| cli.scenario.is_empty() || cli.scenario.iter().any(|s| s == name);
    let started = Instant::now();
    let out = match &cli.out {
        Some(o) => o.clone(),
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            PathBuf::from("target/bench-driver").join(report::rfc3339_utc(now).replace(':', "-"))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;

    let universe_spec = GenerateSpec {
        preset: Preset::Universe { assets: profile.universe_assets },
        ..GenerateSpec::mag7(Frequency::Daily)
    };
    let universe_name = format!("universe{}-daily", profile.universe_assets);
    let mut ctx = Ctx {
        daily: ensure(&cli.data_dir, "mag7-daily", &GenerateSpec::mag7(Frequency::Daily))?,
        minute: ensure(&cli.data_dir, "mag7-minute", &GenerateSpec::mag7(Frequency::Minute))?,
        universe: ensure(&cli.data_dir, &universe_name, &universe_spec)?,
        planted: ensure(&cli.data_dir, "mag7-planted-20-110", &scenarios::planted_spec()?)?,
        spaces: spaces_dir()?,
        data_dir: cli.data_dir.clone(),
        profile,
        progress: Progress::new(),
        runs: Vec::new(),
        convergence: Vec::new(),
        fidelity: Vec::new(),
        postgres: cli.postgres.clone(),
    };

    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut tracker = Tracker::new();
    for def in SCENARIOS {
        let name = def.name;
        if !wanted(name) {
            continue;
        }
        if tracker.should_stop() && def.kind == Kind::Timed {
            eprintln!("stopping before {name}: the last two accepted steps each gained under 2%");
            continue;
        }
        let rows = (def.run)(&mut ctx).with_context(|| format!("scenario {name} failed"))?;
        ctx.progress.finish();
        for (i, row) in rows.into_iter().enumerate() {
            // The first row of a timed scenario is its step in the sequence; the others are
            // extra arms, reported but not compounded. Quality verdicts are never compounded.
            if i == 0 && def.kind == Kind::Timed {
                tracker.record(&row.name, &verdict_of(&row), row.speedup_pct);
            }
            let row = if def.kind == Kind::Quality { row.as_quality() } else { row };
            eprintln!("{:<28} {:<6} {}", row.name, format!("{:?}", row.decision).to_uppercase(), row.reason);
            results.push(row);
        }
    }

    let args: Vec<String> = std::env::args().collect();
    let mut report = Report::new(Environment::capture(&args), ctx.profile.name, results, &tracker);
    let mut plot_files = plots::write_all(&report, &ctx.convergence, &out).context("failed to write the plots")?;
    for f in &ctx.fidelity {
        let path = out.join(format!("{}.svg", f.stem));
        plots::fidelity_chart(f, &path).context("failed to write the plots")?;
        plot_files.push(path);
    }
    report.plots = plot_files.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    report::write_all(&report, &ctx.runs, &out).context("failed to write the report")?;
    println!(
        "cumulative speed-up {:.1}% over {} scenario rows in {:.0} s; report in {}",
        report.cumulative_speedup_pct,
        report.scenarios.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn verdict_of(row: &ScenarioResult) -> bench_driver::decide::Verdict {
    bench_driver::decide::Verdict { decision: row.decision, reason: row.reason.clone() }
}

/// The example spaces shipped in the repository (`spaces/`), found from the working directory
/// or from this crate's source location.
fn spaces_dir() -> Result<PathBuf> {
    let candidates = [PathBuf::from("spaces"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spaces")];
    candidates
        .into_iter()
        .find(|p| p.join("ma-1100.toml").is_file())
        .ok_or_else(|| anyhow!("cannot find the spaces/ directory of the repository; run from its root"))
}

/// Waits (briefly) until this process is single-threaded again, so that a fork pool may be
/// built after a spawn or thread pool has been dropped.
pub(crate) fn wait_single_threaded() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pool::thread_count() {
            None | Some(1) => return Ok(()),
            Some(n) if Instant::now() > deadline => {
                return Err(anyhow!("{n} threads still alive; a fork pool cannot be built"));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_scenario_table_drives_the_command_line() {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "scenario names repeat: {names:?}");
        let command = Cli::command();
        let arg = command.get_arguments().find(|a| a.get_id() == "scenario").expect("--scenario exists");
        let choices: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        assert_eq!(choices, names);
        for name in &names {
            let cli = Cli::try_parse_from(["bench-driver", "--scenario", name]).expect("a listed scenario parses");
            assert_eq!(cli.scenario, vec![name.to_string()]);
        }
        assert!(Cli::try_parse_from(["bench-driver", "--scenario", "bohb-1100x"]).is_err());
    }

    #[test]
    fn each_profile_picks_its_own_sizes() {
        let sizes = PerProfile { tiny: 1, quick: 2, full: 3 };
        let picked: Vec<i32> =
            [ProfileArg::Tiny, ProfileArg::Quick, ProfileArg::Full].map(|p| sizes.pick(Profile::new(p).name)).to_vec();
        assert_eq!(picked, [1, 2, 3]);
    }
}
