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
    let bundle = Arc::new(bundle::Bundle::load(&a.bundle).context("failed to load the bundle")?);
    let hash = bundle.content_hash().to_string();
    // The pool first, while this process is single-threaded; then the database.
    let kind = pool_kind(a.pool, crate::optimize_cmd::HandlesArg::Inherit, crate::optimize_cmd::SpawnLoadArg::Load);
    let mut pool = runner::build_pool(kind, pool::PoolBuilder::new().workers(workers), &bundle, &a.bundle, strategies)
        .context("failed to start the pool")?;
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
            let heads = queue.heads().context("failed to read the studies")?;
            read_at = Some(Instant::now());
            serve.clear();
            match &a.study {
                Some(name) => {
                    let Some(head) = heads.iter().find(|h| h.name == *name) else {
                        if !announced {
                            eprintln!("waiting for study {name} to be created");
                            announced = true;
                        }
                        queue.wait(Duration::from_millis(500)).context("failed to wait for the study")?;
                        read_at = None;
                        continue;
                    };
                    check_bundle(head, &hash)?;
                    serve.push((name.clone(), task_of(head)?));
                    finished = head.state == "finished";
                }
                None => {
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
