//! btopt's command-line interface, as a library, so that a binary with strategies of its own
//! gets the whole CLI: bundles, backtests, every search on every pool backend, the store.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // The built-ins plus one's own strategy (any `engine::Strategy`).
//!     let strategies = engine::Registry::builtin();
//!     btopt::main_with(strategies)
//! }
//! ```
//!
//! `main_with` first serves as a spawned pool worker if this process is one (so spawned
//! workers have the same strategies as the parent), then parses the command line with the
//! registry's strategy names as the choices of `--strategy`. Every error is printed to stderr
//! as one line, `error: …`, and exits non-zero: 2 for a bad command line, space or parameter
//! (checked before any pool, store or file is created), 1 for everything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod backtest_cmd;
mod bundle_cmd;
mod distributed;
mod optimize_cmd;
mod strategies_cmd;
mod study_cmd;
mod trials_out;
mod walkforward_cmd;
mod worker_cmd;

/// A bad command line, space or parameter: exit status 2.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Fails with exit status 2 and `message`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// Heavy strategy-parameter optimization over market-data bundles.
#[derive(Parser, Debug)]
#[command(name = "btopt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, inspect and check bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Run one backtest.
    Backtest(BacktestArgs),
    /// Search a parameter space with backtests on a worker pool.
    Optimize(Box<optimize_cmd::OptimizeArgs>),
    /// Walk-forward optimization: search each fold's train segment, test its best on the next.
    Walkforward(Box<walkforward_cmd::WalkforwardArgs>),
    /// List the strategies this binary knows, with their parameters.
    Strategies {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the trials of distributed studies (PostgreSQL) on a local pool.
    Worker(worker_cmd::WorkerArgs),
    /// Inspect the studies in a store.
    #[command(subcommand)]
    Study(StudyCommand),
}

#[derive(Subcommand, Debug)]
enum StudyCommand {
    /// The studies with their queued, running and done trials.
    List {
        /// FILE, sqlite:FILE or postgresql://USER@HOST:PORT/DB.
        #[arg(long)]
        store: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// The backtest range and costs, shared by `backtest` and `optimize`.
#[derive(Args, Debug)]
pub(crate) struct RangeArgs {
    /// First calendar day of the backtest range.
    #[arg(long)]
    pub(crate) start: Option<chrono::NaiveDate>,
    /// Last calendar day of the backtest range.
    #[arg(long)]
    pub(crate) end: Option<chrono::NaiveDate>,
    /// Fee rate on traded notional.
    #[arg(long, default_value_t = engine::RunOptions::DEFAULT_FEE)]
    pub(crate) fee: f64,
}

#[derive(Args, Debug)]
pub(crate) struct BacktestArgs {
    /// The bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// The strategy (`strategies` lists each one's parameters).
    #[arg(long)]
    strategy: String,
    /// A strategy parameter, NAME=VALUE (repeatable); unset parameters take their defaults.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Fidelity: evaluate the last ceil(budget·T) sessions of the range, budget in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    budget: f64,
    #[command(flatten)]
    range: RangeArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum BundleCommand {
    /// Write a deterministic synthetic bundle.
    Generate(GenerateArgs),
    /// Ingest data into a new bundle.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Print a bundle's summary.
    Info {
        /// The bundle directory.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the content hash and check every invariant.
    Verify {
        /// The bundle directory.
        dir: PathBuf,
    },
    /// Export a bundle to another layout.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Subcommand, Debug)]
enum IngestCommand {
    /// zipline's csvdir layout: daily/ and/or minute/ with SYMBOL.csv[.gz].
    Csvdir {
        /// The csvdir root.
        #[arg(long)]
        source: PathBuf,
        /// The new bundle directory (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Which sub-directory to ingest when both exist.
        #[arg(long)]
        frequency: Option<FrequencyArg>,
    },
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// zipline's csvdir layout.
    Csvdir {
        /// The bundle directory.
        dir: PathBuf,
        /// The new csvdir root (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum FrequencyArg {
    Daily,
    Minute,
}

impl From<FrequencyArg> for bundle::Frequency {
    fn from(f: FrequencyArg) -> Self {
        match f {
            FrequencyArg::Daily => bundle::Frequency::Daily,
            FrequencyArg::Minute => bundle::Frequency::Minute,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PresetArg {
    Mag7,
    Universe,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Data set to generate.
    #[arg(long)]
    preset: PresetArg,
    /// Bar frequency.
    #[arg(long, default_value = "daily")]
    frequency: FrequencyArg,
    /// The new bundle directory (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// First calendar day.
    #[arg(long, default_value = "2020-01-02")]
    start: chrono::NaiveDate,
    /// Last calendar day.
    #[arg(long, default_value = "2024-12-31")]
    end: chrono::NaiveDate,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of assets (universe preset only).
    #[arg(long, default_value_t = 100)]
    assets: usize,
    /// Plant a real edge for one MA-crossover configuration: SHORT,LONG[,STRENGTH[,THRESHOLD]]
    /// (strength in per-bar volatilities, in (0, 10], default 2; threshold default 0.001).
    /// A control for the overfitting statistics; such a bundle has no dividends.
    #[arg(long, value_name = "SHORT,LONG[,STRENGTH[,THRESHOLD]]", value_parser = parse_plant_edge)]
    plant_edge: Option<bundle::generate::PlantEdge>,
}

/// Parses `--plant-edge SHORT,LONG[,STRENGTH[,THRESHOLD]]`; a bad value is a command-line
/// error (exit 2).
fn parse_plant_edge(text: &str) -> std::result::Result<bundle::generate::PlantEdge, String> {
    use bundle::generate::PlantEdge;
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if !(2..=4).contains(&parts.len()) {
        return Err(format!("expected SHORT,LONG[,STRENGTH[,THRESHOLD]], got `{text}`"));
    }
    let window =
        |name: &str, v: &str| v.parse::<usize>().map_err(|_| format!("{name} window `{v}` is not a whole number"));
    let number = |name: &str, i: usize, default: f64| match parts.get(i) {
        Some(v) => v.parse::<f64>().map_err(|_| format!("{name} `{v}` is not a number")),
        None => Ok(default),
    };
    let (short, long) = (window("short", parts[0])?, window("long", parts[1])?);
    let strength = number("strength", 2, PlantEdge::DEFAULT_STRENGTH)?;
    let threshold = number("threshold", 3, PlantEdge::DEFAULT_THRESHOLD)?;
    PlantEdge::new_checked(short, long, strength, threshold).map_err(|e| e.to_string())
}

/// Runs the CLI with `strategies`: the whole of `btopt`'s `main`. Call it first thing in
/// `main`, before anything starts a thread (fork pools need a single-threaded process).
pub fn main_with(strategies: engine::Registry) -> ExitCode {
    // A spawned pool worker runs here and exits; this must come before anything starts a
    // thread, and before argument parsing (a worker's command line is not ours).
    runner::worker_main_if_requested(&strategies);
    let strategies = Arc::new(strategies);
    let names = strategies.names();
    let mut command = Cli::command();
    for sub in ["backtest", "optimize", "walkforward"] {
        command = command.mut_subcommand(sub, |c| {
            c.mut_arg("strategy", |a| a.value_parser(clap::builder::PossibleValuesParser::new(names.clone())))
        });
    }
    let parsed = command.try_get_matches().and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            eprintln!("{}", first.trim());
            return ExitCode::from(2);
        }
    };
    match run(cli, &strategies) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(if e.downcast_ref::<Usage>().is_some() { 2 } else { 1 })
        }
    }
}

/// The error chain on one line: outer context first, then each cause.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string().replace('\n', " ")).collect::<Vec<_>>().join(": ")
}

fn run(cli: Cli, strategies: &Arc<engine::Registry>) -> Result<()> {
    match cli.command {
        Command::Backtest(a) => backtest_cmd::run(&a, strategies),
        Command::Optimize(a) => optimize_cmd::run(&a, strategies),
        Command::Strategies { json } => strategies_cmd::run(strategies, json),
        Command::Worker(a) => worker_cmd::run(&a, strategies),
        Command::Study(StudyCommand::List { store, json }) => study_cmd::list(&store, json),
        Command::Walkforward(a) => walkforward_cmd::run(&a, strategies),
        Command::Bundle(cmd) => match cmd {
            BundleCommand::Generate(a) => {
                let preset = match a.preset {
                    PresetArg::Mag7 => bundle::Preset::Mag7,
                    PresetArg::Universe => bundle::Preset::Universe { assets: a.assets },
                };
                let spec = bundle::GenerateSpec {
                    preset,
                    frequency: a.frequency.into(),
                    start: a.start,
                    end: a.end,
                    seed: a.seed,
                    plant_edge: a.plant_edge,
                };
                bundle_cmd::generate(&spec, &a.out)
            }
            BundleCommand::Ingest(IngestCommand::Csvdir { source, out, frequency }) => {
                bundle_cmd::ingest_csvdir(&source, &out, frequency.map(Into::into))
            }
            BundleCommand::Info { dir, json } => bundle_cmd::info(&dir, json),
            BundleCommand::Verify { dir } => bundle_cmd::verify(&dir),
            BundleCommand::Export(ExportCommand::Csvdir { dir, out }) => {
                let rows = bundle::csvdir::export(&dir, &out).context("failed to export the bundle")?;
                eprintln!("exported {rows} bars to {}", out.display());
                Ok(())
            }
        },
    }
}
