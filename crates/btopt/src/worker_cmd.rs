//! `btopt worker`: joins distributed studies on PostgreSQL and evaluates their trials on a
//! local pool (fork by default, so the bundle is shared copy-on-write as in a local run).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

use crate::distributed::{BatchSize, TaskSpec, local_evaluator, serve_batch};
use crate::optimize_cmd::{PoolArg, pool_kind};
use runner::PoolKind;

/// How long a worker that keeps finding trials goes without reading the studies again (for a
/// new study to serve, or one that finished).
const HEADS_EVERY: Duration = Duration::from_secs(1);

/// `btopt worker` arguments (design notes, section 7).
#[derive(Args, Debug)]
pub(crate) struct WorkerArgs {
    /// The study database, postgresql://USER@HOST:PORT/DB.
    #[arg(long)]
    store: String,
    /// The bundle directory; only studies created on a bundle with the same content hash are
    /// served.
    #[arg(long)]
    bundle: PathBuf,
    /// Serve this study only, and exit 0 once it is finished [default: every running study
    /// on this bundle, exiting when none is left].
    #[arg(long)]
    study: Option<String>,
    /// Number of local workers [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Worker pool backend [default: fork on unix, spawn elsewhere].
    #[arg(long)]
    pool: Option<PoolArg>,
    /// Seconds without a heartbeat after which this worker's trials go back to the queue.
    /// Heartbeats happen between completions, so it must exceed the longest single trial.
    #[arg(long, default_value_t = 30.0)]
    lease: f64,
}

pub(crate) fn run(a: &WorkerArgs, strategies: &Arc<engine::Registry>) -> Result<()> {
    let target = match store::Location::parse(&a.store).context("invalid --store")? {
        store::Location::Postgres(t) => t,
        store::Location::Sqlite(_) => bail!("btopt worker needs a postgresql:// store"),
    };
    if !(a.lease.is_finite() && a.lease > 0.0) {
        bail!("--lease must be a positive number of seconds");
    }
    let lease = Duration::from_secs_f64(a.lease);
    let workers = a.workers.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let kind = pool_kind(a.pool, crate::optimize_cmd::HandlesArg::Inherit, crate::optimize_cmd::SpawnLoadArg::Load);
    // A helper asks the database for the study's task while the bundle loads (see
    // `StudyPeek`): this process stays without a connection until its pool exists. The task
    // names the tables to build before the pool, as `optimize` builds them, at any worker
    // count: one local worker reads them too, in huge pages built on every core, instead of
    // computing each column into its own cache (spawned workers cannot inherit them).
    let peek = a
        .study
        .as_deref()
        .filter(|_| !matches!(kind, PoolKind::Spawn(_)))
        .and_then(|name| StudyPeek::start(&target, name));
    let bundle = Arc::new(crate::bundle_cmd::open(&a.bundle)?);
    let hash = bundle.content_hash().to_string();
    let tables = match (peek, &a.study) {
        (Some(peek), Some(name)) => study_tables(peek.finish(), name, &bundle, strategies)?,
        _ => runner::SharedTables::none(),
    };
    // The pool first, while this process is single-threaded; then the database.
    let builder = pool::PoolBuilder::new().workers(workers);
    let mut pool = runner::build_pool_with(kind, builder, &bundle, &tables, &a.bundle, strategies)
        .context("failed to start the pool")?;
    drop(tables);
    drop(bundle);
    let threads_before = pool::thread_count();
    let mut queue = store::Queue::connect(&target, a.study.as_deref().unwrap_or(""), lease)
        .context("failed to connect to the study database")?;
    if let (Some(before), Some(after)) = (threads_before, pool::thread_count())
        && after > before
    {
        bail!("connecting to the database started {} thread(s); a fork pool cannot work beside them", after - before);
    }
    queue.listen_queued().context("failed to listen for queued trials")?;
    let mut batch = BatchSize::new(workers);
    let mut announced = false;
    // The studies to serve, from the last read of the heads, and when that was: while trials
    // keep coming, the heads are read again only every HEADS_EVERY, not once per batch.
    let mut serve: Vec<(String, TaskSpec)> = Vec::new();
    let mut finished = false;
    let mut read_at: Option<Instant> = None;
    // Each study's next batch, claimed with the last one's results.
    let mut held: BTreeMap<String, Vec<store::Claimed>> = BTreeMap::new();
    loop {
        let fresh = read_at.is_none_or(|t| t.elapsed() >= HEADS_EVERY);
        if fresh {
            read_at = Some(Instant::now());
            serve.clear();
            match &a.study {
                Some(name) => {
                    let Some(head) = queue.head().context("failed to read the study")? else {
                        if !announced {
                            eprintln!("waiting for study {name} to be created");
                            announced = true;
                        }
                        queue.wait(Duration::from_millis(500)).context("failed to wait for the study")?;
                        read_at = None;
                        continue;
                    };
                    check_bundle(&head, &hash)?;
                    serve.push((name.clone(), task_of(&head)?));
                    finished = head.state == "finished";
                }
                None => {
                    let heads = queue.heads().context("failed to read the studies")?;
                    let running: Vec<_> = heads.iter().filter(|h| h.state == "running").collect();
                    let ours: Vec<_> = running.iter().filter(|h| h.bundle_hash.as_deref() == Some(&hash)).collect();
                    if ours.is_empty() {
                        if let Some(other) = running.first() {
                            check_bundle(other, &hash)?;
                        }
                        eprintln!("no running study on this bundle");
                        return Ok(());
                    }
                    for h in ours {
                        serve.push((h.name.clone(), task_of(h)?));
                    }
                }
            }
        }
        let mut served = 0;
        for (name, spec) in &serve {
            queue.switch(name);
            let mut local = local_evaluator(&mut pool, strategies, spec)?;
            served += serve_batch(&mut queue, &mut local, &mut batch, lease, held.entry(name.clone()).or_default())?;
        }
        if served == 0 {
            if !fresh {
                // Decide on what the studies are now.
                read_at = None;
                continue;
            }
            if a.study.is_some() && finished {
                return Ok(());
            }
            queue.wait(Duration::from_millis(500).min(lease / 2)).context("failed to wait for trials")?;
            read_at = None;
        }
    }
}

/// Refuses a study whose bundle is not this worker's (one line, nothing claimed).
fn check_bundle(head: &store::StudyInfo, hash: &str) -> Result<()> {
    match head.bundle_hash.as_deref() {
        Some(h) if h == hash => Ok(()),
        Some(h) => bail!("study {} runs on bundle {h}, this worker's bundle is {hash}: claiming nothing", head.name),
        None => bail!("study {} records no bundle: claiming nothing", head.name),
    }
}

fn task_of(head: &store::StudyInfo) -> Result<TaskSpec> {
    TaskSpec::from_json(head.task.as_ref().ok_or_else(|| anyhow!("study {} records no task", head.name))?)
}

/// How long a worker started for a study waits for it to appear before building its pool
/// without the study's shared tables (it serves the study all the same, computing its SMAs in
/// each local worker).
const PEEK_WAIT: Duration = Duration::from_secs(2);

/// A short-lived child process that reads one study's row (its bundle hash and task) and
/// writes it to a pipe, so that a worker can build the study's shared tables before its pool,
/// as `btopt optimize` does, although it learns the study from the database. The worker forks
/// it first thing, while it is single-threaded and has no connection; the child connects
/// (which may start threads in the child, never in the worker) and exits. Whatever goes wrong
/// in it (no server, no study within [`PEEK_WAIT`], a crash) only means no shared tables.
struct StudyPeek {
    #[cfg(unix)]
    pid: libc::pid_t,
    #[cfg(unix)]
    read: std::io::PipeReader,
    started: Instant,
}

impl StudyPeek {
    #[cfg(unix)]
    fn start(target: &store::PgTarget, study: &str) -> Option<StudyPeek> {
        if pool::thread_count().is_none_or(|n| n != 1) {
            return None;
        }
        let (read, mut write) = std::io::pipe().ok()?;
        // SAFETY: this process has one thread (checked above), so the child is a complete copy
        // of it; the child only connects, reads, writes the pipe and leaves with `_exit`.
        match unsafe { libc::fork() } {
            -1 => None,
            0 => {
                drop(read);
                let found = peek(target, study).unwrap_or_default();
                let _ = std::io::Write::write_all(&mut write, found.as_bytes());
                // SAFETY: ends the child without running the parent's destructors or exit handlers.
                unsafe { libc::_exit(0) }
            }
            pid => Some(StudyPeek { pid, read, started: Instant::now() }),
        }
    }

    #[cfg(not(unix))]
    fn start(_target: &store::PgTarget, _study: &str) -> Option<StudyPeek> {
        // Without fork, a pool is never forked beside a connection: the worker could connect
        // first, but it keeps one order everywhere and computes its SMAs per worker.
        None
    }

    /// The helper's answer (empty if it had none within [`PEEK_WAIT`]); the helper is reaped.
    #[cfg(unix)]
    fn finish(self) -> String {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = PEEK_WAIT.saturating_sub(self.started.elapsed());
            let mut fd = libc::pollfd { fd: self.read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut fd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if ready <= 0 {
                out.clear();
                break;
            }
            match (&self.read).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {
                    out.clear();
                    break;
                }
            }
        }
        // SAFETY: `pid` is our unreaped child: killing it (it may still be waiting) and
        // reaping it cannot touch another process.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
        String::from_utf8(out).unwrap_or_default()
    }

    #[cfg(not(unix))]
    fn finish(self) -> String {
        String::new()
    }
}

/// In the helper: the study's bundle hash and task as one JSON object, once the study exists.
#[cfg(unix)]
fn peek(target: &store::PgTarget, study: &str) -> Result<String> {
    let started = Instant::now();
    let mut queue = store::Queue::connect(target, study, Duration::from_secs(30))?;
    while started.elapsed() < PEEK_WAIT {
        if let Some(head) = queue.head()? {
            return Ok(serde_json::json!({ "bundle_hash": head.bundle_hash, "task": head.task }).to_string());
        }
        // A read by key, well under a millisecond: polling often lets the worker start on the
        // study soon after its coordinator creates it.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(String::new())
}

/// The shared tables of the study the helper found, if it is on this bundle (any other answer:
/// none; the worker refuses a study on another bundle later, with its usual line).
fn study_tables(
    found: String,
    study: &str,
    bundle: &bundle::Bundle,
    strategies: &engine::Registry,
) -> Result<runner::SharedTables> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&found) else { return Ok(runner::SharedTables::none()) };
    if v["bundle_hash"].as_str() != Some(bundle.content_hash()) {
        return Ok(runner::SharedTables::none());
    }
    // A task this worker cannot run gets no tables (and, later, its usual one-line refusal).
    let Ok(mut spec) = TaskSpec::from_json(&v["task"]) else { return Ok(runner::SharedTables::none()) };
    if crate::backtest_cmd::configure(strategies, &spec.strategy, &spec.set).is_err() {
        return Ok(runner::SharedTables::none());
    }
    // From the database, so bounded here as well as by the budget: a window or lookback
    // longer than the bundle is of no use to any backtest on it.
    let n_bars = bundle.n_bars();
    spec.sma_windows.retain(|&w| w <= n_bars);
    spec.momentum_lookbacks.retain(|&l| l <= n_bars);
    let budget = runner::tables_budget()?;
    let tables = runner::tables_of(bundle, &spec.sma_windows, &spec.momentum_lookbacks, budget)?;
    if tables.bytes() > 0 {
        eprintln!(
            "study {study}: shared indicator tables of {} SMA windows and {} momentum lookbacks ({:.0} MiB)",
            tables.sma.as_ref().map_or(0, |t| t.complete_windows()),
            if tables.momentum.is_some() { spec.momentum_lookbacks.len() } else { 0 },
            tables.bytes() as f64 / f64::from(1 << 20)
        );
    }
    if let Some(line) = runner::shortfall(&tables, budget) {
        eprintln!("{line}");
    }
    Ok(tables)
}
