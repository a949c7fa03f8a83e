//! The pool worker that runs backtests, and how each backend gets its bundle.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bundle::{Bundle, Handles};
use engine::{Metrics, Registry};
use serde::{Deserialize, Serialize};

use crate::{BacktestOutcome, BacktestTask, Engine, Error, SharedTables};

/// How a worker's SQLite handles come about (fork backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleMode {
    /// Opened once in the parent before the fork; children use the inherited handles and never
    /// close them (sound only with `immutable=1`, read-only, Linux or macOS: see
    /// docs/ARCHITECTURE.md, "SQLite across fork").
    Inherit,
    /// Each child opens its own handles after the fork.
    Reopen,
}

/// How a spawned worker gets its bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpawnLoad {
    /// Read the SQLite files into private memory ("read-only extraction").
    Load,
    /// Map the bundle's columnar cache file read-only (shared page cache).
    Mmap,
}

/// What a spawned worker is told: enough to build its state itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpawnInit {
    /// The bundle directory.
    pub bundle_dir: PathBuf,
    /// How to get the bundle into memory.
    pub load: SpawnLoad,
    /// The parent's strategy names in registry order: the child refuses to start unless its
    /// own registry (the same binary's) agrees, because tasks name strategies by position.
    pub strategies: Vec<String>,
}

/// The strategies of this binary, for spawned workers (which are entered before `main` can
/// hand them anything); set by [`worker_main_if_requested`].
static STRATEGIES: OnceLock<Arc<Registry>> = OnceLock::new();

/// Installs this binary's strategies and, if this process was spawned as a pool worker,
/// serves as one and exits. Call it first thing in `main`, before anything starts a thread
/// and before parsing arguments (a worker's command line is not the binary's).
pub fn worker_main_if_requested(strategies: &Registry) {
    let _ = STRATEGIES.set(Arc::new(strategies.clone()));
    pool::worker_main_if_requested(&pool::Registry::new().register::<BacktestWorker>());
}

/// One unit of work for a [`BacktestWorker`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "a backtest's inline parameter values are the point: boxing them would allocate per task"
)]
pub enum Job {
    /// Run a backtest.
    Backtest(BacktestTask),
    /// Read one asset's raw closes through the worker's SQLite handle (checks that handles
    /// work from every worker, e.g. inherited ones from many children at once).
    SqlCloses {
        /// The asset.
        sid: u32,
    },
    /// Do nothing and echo the value: measures the pool's round-trip overhead.
    Echo(u64),
    /// Report this worker process's private dirty memory ([`pool::memory::own_private_dirty`],
    /// Linux only): read before and after a sweep, it shows what a forked worker copied of
    /// the pages it shares with its parent. A thread worker reports the whole process.
    PrivateDirty,
}

/// What a [`BacktestWorker`] returns for a [`Job`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobOutput {
    /// A backtest's metrics, with the id of the worker that ran it: the OS process id of a
    /// process worker (the pool's own process id for the thread backend).
    Metrics {
        /// The metrics.
        metrics: Metrics,
        /// The worker.
        worker: u32,
        /// The per-session returns of the window, if the task asked for them.
        returns: Option<Vec<f64>>,
        /// Their overfitting moments, if the task asked for them.
        moments: Option<Result<crate::Moments, String>>,
    },
    /// The engine or the SQLite handle refused the job; the message says why.
    Invalid(String),
    /// Raw closes read through SQLite.
    Closes(Vec<f64>),
    /// The echoed value.
    Echo(u64),
    /// A number of bytes (the answer to [`Job::PrivateDirty`]).
    Bytes(u64),
}

/// A pool worker holding a loaded bundle, a backtester over it, the binary's strategies and
/// (optionally) read-only SQLite handles on the bundle's files.
pub struct BacktestWorker {
    engine: Engine,
    strategies: Arc<Registry>,
    handles: Option<Handles>,
    dir: PathBuf,
    /// This process's id, read once on the first task: fork workers are built in the parent,
    /// so it cannot be read at construction, and a `getpid` per task is a syscall per task.
    pid: Option<u32>,
}

impl BacktestWorker {
    /// A worker over an already loaded bundle. `handles` are opened here when `mode` is
    /// [`HandleMode::Inherit`] (so that forked children inherit them) and left for
    /// [`BacktestWorker::reopen_handles`] otherwise.
    pub fn new(bundle: Arc<Bundle>, dir: &Path, mode: HandleMode, strategies: Arc<Registry>) -> Result<Self, Error> {
        Self::with_tables(bundle, SharedTables::none(), dir, mode, strategies)
    }

    /// Like [`BacktestWorker::new`], reading every SMA and momentum table the shared `tables`
    /// hold from them (built from this same `bundle`, see [`crate::tables_for`]).
    pub fn with_tables(
        bundle: Arc<Bundle>,
        tables: SharedTables,
        dir: &Path,
        mode: HandleMode,
        strategies: Arc<Registry>,
    ) -> Result<Self, Error> {
        let engine = Engine::with_tables(bundle, tables)?;
        let handles = match mode {
            HandleMode::Inherit => Some(Handles::open(dir)?),
            HandleMode::Reopen => None,
        };
        Ok(BacktestWorker { engine, strategies, handles, dir: dir.to_path_buf(), pid: None })
    }

    /// Opens this worker's own handles: the fork backend's per-child hook in reopen mode.
    /// An inherited handle is never closed here; it is leaked on purpose (see [`HandleMode`]).
    pub fn reopen_handles(&mut self) -> Result<(), Error> {
        let fresh = Handles::open(&self.dir)?;
        if let Some(old) = self.handles.replace(fresh) {
            std::mem::forget(old);
        }
        Ok(())
    }

    /// Runs one job.
    pub fn execute(&mut self, job: Job) -> JobOutput {
        match job {
            Job::Backtest(task) => match self.engine.execute(&self.strategies, &task) {
                BacktestOutcome::Done(metrics, returns, moments) => {
                    let worker = *self.pid.get_or_insert_with(std::process::id);
                    JobOutput::Metrics { metrics, worker, returns, moments }
                }
                BacktestOutcome::Invalid(msg) => JobOutput::Invalid(msg),
            },
            Job::SqlCloses { sid } => match &self.handles {
                Some(h) => h.raw_closes(sid).map_or_else(|e| JobOutput::Invalid(e.to_string()), JobOutput::Closes),
                None => JobOutput::Invalid("this worker has no SQLite handles".into()),
            },
            Job::Echo(v) => JobOutput::Echo(v),
            Job::PrivateDirty => match pool::memory::own_private_dirty() {
                Ok(b) => JobOutput::Bytes(b),
                Err(e) => JobOutput::Invalid(format!("cannot read private dirty memory: {e}")),
            },
        }
    }
}

impl pool::Worker for BacktestWorker {
    type Task = Job;
    type Output = JobOutput;
    fn run(&mut self, task: Job) -> JobOutput {
        self.execute(task)
    }
}

impl pool::SpawnWorker for BacktestWorker {
    type Init = SpawnInit;
    const NAME: &'static str = "btopt-backtest";
    fn init(init: SpawnInit) -> Result<Self, String> {
        let strategies = STRATEGIES.get().cloned().ok_or("this binary installed no strategies")?;
        if strategies.names() != init.strategies {
            return Err(format!(
                "the worker's strategies ({}) differ from the parent's ({})",
                strategies.names().join(", "),
                init.strategies.join(", ")
            ));
        }
        let bundle = match init.load {
            SpawnLoad::Load => Bundle::load(&init.bundle_dir),
            SpawnLoad::Mmap => Bundle::open_mapped(&init.bundle_dir),
        }
        .map_err(|e| e.to_string())?;
        let mut w = BacktestWorker::new(Arc::new(bundle), &init.bundle_dir, HandleMode::Reopen, strategies)
            .map_err(|e| e.to_string())?;
        w.reopen_handles().map_err(|e| e.to_string())?;
        Ok(w)
    }
}

/// Which backend, and how it gets the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Fork after loading, with inherited or reopened SQLite handles.
    Fork(HandleMode),
    /// A fresh fork pool per batch (the baseline for "persistent").
    PerBatch,
    /// Re-executed workers that load or map the bundle themselves.
    Spawn(SpawnLoad),
    /// In-process threads sharing the bundle through `Arc`.
    Thread,
}

impl PoolKind {
    /// A short name for reports: `fork-inherit`, `fork-reopen`, `per-batch`, `spawn-load`,
    /// `spawn-mmap`, `thread`.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Fork(HandleMode::Inherit) => "fork-inherit",
            PoolKind::Fork(HandleMode::Reopen) => "fork-reopen",
            PoolKind::PerBatch => "per-batch",
            PoolKind::Spawn(SpawnLoad::Load) => "spawn-load",
            PoolKind::Spawn(SpawnLoad::Mmap) => "spawn-mmap",
            PoolKind::Thread => "thread",
        }
    }

    /// The platform default: fork with inherited handles on unix, spawn (load) elsewhere.
    pub fn platform_default() -> PoolKind {
        if cfg!(unix) { PoolKind::Fork(HandleMode::Inherit) } else { PoolKind::Spawn(SpawnLoad::Load) }
    }
}

/// Builds a pool of [`BacktestWorker`]s running `strategies` over the bundle at `dir`, each
/// with its own SMA cache (see [`build_pool_with`] for shared tables).
///
/// `bundle` is the parent's loaded copy: forked and thread workers share it; spawned ones
/// build their own (and it is not needed for them). Fork kinds must be built while the
/// process is single-threaded (see the pool crate).
pub fn build_pool(
    kind: PoolKind,
    builder: pool::PoolBuilder,
    bundle: &Arc<Bundle>,
    dir: &Path,
    strategies: &Arc<Registry>,
) -> Result<pool::Pool<BacktestWorker>, Error> {
    build_pool_with(kind, builder, bundle, &SharedTables::none(), dir, strategies)
}

/// [`build_pool`] with shared SMA or momentum tables, built from `bundle` before this call
/// ([`crate::tables_for`]). Forked workers (fork, per-batch) inherit them copy-on-write from
/// this process and only ever read them; thread workers share them through `Arc`; spawned
/// workers cannot inherit memory and build what they need in their own caches, as without
/// tables. Every worker computes only the SMAs the tables lack. Results are bit-identical
/// with and without tables.
pub fn build_pool_with(
    kind: PoolKind,
    builder: pool::PoolBuilder,
    bundle: &Arc<Bundle>,
    tables: &SharedTables,
    dir: &Path,
    strategies: &Arc<Registry>,
) -> Result<pool::Pool<BacktestWorker>, Error> {
    let tables = tables.clone();
    let fork_state = |mode| BacktestWorker::with_tables(bundle.clone(), tables.clone(), dir, mode, strategies.clone());
    match kind {
        #[cfg(unix)]
        PoolKind::Fork(HandleMode::Inherit) => Ok(builder.fork(fork_state(HandleMode::Inherit)?)?),
        #[cfg(unix)]
        PoolKind::Fork(HandleMode::Reopen) => {
            Ok(builder.fork_with(fork_state(HandleMode::Reopen)?, |w| w.reopen_handles().map_err(|e| e.to_string()))?)
        }
        #[cfg(unix)]
        PoolKind::PerBatch => Ok(builder.per_batch(fork_state(HandleMode::Inherit)?, |_| Ok(()))?),
        #[cfg(not(unix))]
        PoolKind::Fork(_) | PoolKind::PerBatch => {
            Err(Error::Unsupported("the fork backends need unix; use spawn or thread".into()))
        }
        PoolKind::Spawn(load) => {
            if load == SpawnLoad::Mmap {
                // Write the cache once here, not racily in every child.
                bundle::cache::write_cache(bundle, dir)?;
            }
            let names = strategies.names().into_iter().map(String::from).collect();
            Ok(builder.spawn::<BacktestWorker>(&SpawnInit {
                bundle_dir: dir.to_path_buf(),
                load,
                strategies: names,
            })?)
        }
        PoolKind::Thread => {
            let (bundle, dir, strategies) = (bundle.clone(), dir.to_path_buf(), strategies.clone());
            let worker = move || {
                BacktestWorker::with_tables(
                    bundle.clone(),
                    tables.clone(),
                    &dir,
                    HandleMode::Reopen,
                    strategies.clone(),
                )
            };
            // Each thread builds its worker; do it once here first so that a failure is an
            // error, not a panic in a worker thread (every thread sees the same bundle).
            worker()?.reopen_handles()?;
            Ok(builder.thread(move || {
                let mut w = worker().expect("checked above");
                w.reopen_handles().expect("bundle handles opened above");
                w
            })?)
        }
    }
}
