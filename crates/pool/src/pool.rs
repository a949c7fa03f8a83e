//! The pool type, its builder and the backend choice.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::TaskId;
use crate::chunk::ChunkSize;
use crate::error::{Error, Kind};
use crate::fault::FaultSpec;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::memory::{self, Memory};
use crate::proc::{Cfg, ProcPool, Stats};
use crate::thread::ThreadPool;
use crate::worker::{SpawnWorker, Worker};

/// Which kind of workers a pool runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Persistent forked workers that inherit the state copy-on-write (unix; default there).
    Fork,
    /// A fresh set of forked workers for every batch: the baseline for "persistent" (unix).
    PerBatch,
    /// Re-executed processes that build their state from an init value (default elsewhere).
    Spawn,
    /// In-process threads: the zero-IPC reference.
    Thread,
}

impl Backend {
    /// `Fork` on unix, `Spawn` elsewhere.
    pub fn platform_default() -> Backend {
        if cfg!(unix) { Backend::Fork } else { Backend::Spawn }
    }

    /// The name used on the command line: `fork`, `per-batch`, `spawn` or `thread`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Fork => "fork",
            Backend::PerBatch => "per-batch",
            Backend::Spawn => "spawn",
            Backend::Thread => "thread",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "fork" => Ok(Backend::Fork),
            "per-batch" => Ok(Backend::PerBatch),
            "spawn" => Ok(Backend::Spawn),
            "thread" => Ok(Backend::Thread),
            _ => Err(format!("unknown pool backend {s:?} (expected fork, per-batch, spawn or thread)")),
        }
    }
}

/// Options shared by every backend; finish with one of the backend constructors.
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: usize,
    max_frame: usize,
    timeout: Option<Duration>,
    max_attempts: u32,
    start_timeout: Duration,
    program: Option<PathBuf>,
    chunk: Option<ChunkSize>,
}

impl Default for PoolBuilder {
    fn default() -> PoolBuilder {
        PoolBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: None,
            max_attempts: 3,
            start_timeout: Duration::from_secs(120),
            program: None,
            chunk: None,
        }
    }
}

impl PoolBuilder {
    /// Defaults: one worker per core, 64 MiB frames, no task timeout, 3 attempts per task,
    /// adaptive chunks (or what [`CHUNK_ENV`](crate::CHUNK_ENV) says).
    pub fn new() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of workers (at least 1).
    pub fn workers(mut self, n: usize) -> PoolBuilder {
        self.workers = n.max(1);
        self
    }

    /// Largest frame (task or result) in bytes; bigger or corrupt frames are errors.
    pub fn max_frame_len(mut self, bytes: usize) -> PoolBuilder {
        self.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// Per-task timeout: a task still running after `t` fails with
    /// [`Error::is_timeout`] and its worker is killed and replaced (process backends only).
    pub fn task_timeout(mut self, t: Duration) -> PoolBuilder {
        self.timeout = Some(t);
        self
    }

    /// How many workers a task may kill before it fails with [`Error::is_worker_lost`].
    pub fn max_attempts(mut self, n: u32) -> PoolBuilder {
        self.max_attempts = n.max(1);
        self
    }

    /// How long the build waits for workers to report ready.
    pub fn start_timeout(mut self, t: Duration) -> PoolBuilder {
        self.start_timeout = t;
        self
    }

    /// How many tasks go to a worker at once. Results do not depend on it; speed does.
    /// Without this call, the environment variable [`CHUNK_ENV`](crate::CHUNK_ENV) decides
    /// (`auto` or a number, so that tests and benchmarks can vary it from outside a binary),
    /// and without that, [`ChunkSize::Adaptive`]. An invalid value fails the build.
    pub fn chunk_size(mut self, c: ChunkSize) -> PoolBuilder {
        self.chunk = Some(c);
        self
    }

    fn chunk(&self) -> Result<ChunkSize, Error> {
        match self.chunk {
            Some(c) => Ok(c),
            None => ChunkSize::from_env(),
        }
    }

    /// The binary the spawn backend runs (default: `std::env::current_exe()`).
    pub fn program(mut self, path: impl Into<PathBuf>) -> PoolBuilder {
        self.program = Some(path.into());
        self
    }

    fn cfg(&self, per_batch: bool) -> Result<Cfg, Error> {
        Ok(Cfg {
            max_frame: self.max_frame,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            start_timeout: self.start_timeout,
            per_batch,
            chunk: self.chunk()?,
        })
    }

    /// Fork backend, "inherit" mode: `state` is already built (bundle loaded, read-only
    /// handles open); workers use their copy-on-write copy and never drop it.
    ///
    /// Must be called while the process is single-threaded (it errors otherwise, see
    /// [`Error::is_not_single_threaded`]), from a thread that outlives the pool (Linux ties
    /// the helper's death signal to it). The parent's `state` is dropped after the fork.
    #[cfg(unix)]
    pub fn fork<W: Worker>(self, state: W) -> Result<Pool<W>, Error> {
        self.fork_with(state, |_| Ok(()))
    }

    /// Fork backend with a hook run in every worker right after its fork, before its first
    /// task: the "reopen" mode (e.g. open a per-child SQLite handle). An `Err` fails start-up.
    #[cfg(unix)]
    pub fn fork_with<W, F>(self, state: W, child_init: F) -> Result<Pool<W>, Error>
    where
        W: Worker,
        F: Fn(&mut W) -> Result<(), String>,
    {
        self.forked(state, child_init, false)
    }

    /// The per-batch baseline: like [`PoolBuilder::fork_with`], but workers are forked when
    /// work arrives and stopped whenever nothing is outstanding (so each `map` gets fresh ones).
    #[cfg(unix)]
    pub fn per_batch<W, F>(self, state: W, child_init: F) -> Result<Pool<W>, Error>
    where
        W: Worker,
        F: Fn(&mut W) -> Result<(), String>,
    {
        self.forked(state, child_init, true)
    }

    #[cfg(unix)]
    fn forked<W, F>(self, state: W, child_init: F, per_batch: bool) -> Result<Pool<W>, Error>
    where
        W: Worker,
        F: Fn(&mut W) -> Result<(), String>,
    {
        let faults = FaultSpec::from_env()?;
        let launcher = crate::fork::start(state, child_init, self.max_frame, faults)?;
        let backend = if per_batch { Backend::PerBatch } else { Backend::Fork };
        let proc = ProcPool::start(Box::new(launcher), self.workers, self.cfg(per_batch)?)?;
        Ok(Pool::new(Inner::Proc(Box::new(proc)), backend, &self))
    }

    /// Spawn backend: start `workers` copies of the program in worker mode; each builds its
    /// state with [`SpawnWorker::init`] from `init`. The program must call
    /// [`worker_main_if_requested`](crate::worker_main_if_requested) with a registry holding `W`.
    ///
    /// Works from any thread. On Linux a worker dies with the thread that started it
    /// (`PR_SET_PDEATHSIG`); if that thread ends first, the pool replaces the worker.
    pub fn spawn<W: SpawnWorker>(self, init: &W::Init) -> Result<Pool<W>, Error> {
        FaultSpec::from_env()?;
        let launcher = crate::spawn::SpawnLauncher::new::<W>(self.program.clone(), init, self.max_frame)?;
        let proc = ProcPool::start(Box::new(launcher), self.workers, self.cfg(false)?)?;
        Ok(Pool::new(Inner::Proc(Box::new(proc)), Backend::Spawn, &self))
    }

    /// Thread backend: `make` builds one worker value per thread (share big state with an
    /// `Arc`). No IPC, no fault injection, no timeouts (a thread cannot be killed).
    pub fn thread<W, F>(self, make: F) -> Result<Pool<W>, Error>
    where
        W: Worker + Send,
        F: Fn() -> W + Send + Sync + 'static,
    {
        let t = ThreadPool::start(self.workers, self.chunk()?, make)?;
        Ok(Pool::new(Inner::Thread(t), Backend::Thread, &self))
    }
}

enum Inner<W: Worker> {
    Proc(Box<ProcPool>),
    Thread(ThreadPool<W>),
}

/// A pool of workers of type `W`, on one of the [`Backend`]s.
///
/// # Lifecycle
/// - **Build** with [`PoolBuilder`]. Process backends start every worker and wait until
///   each reports ready (per-batch starts them on demand). Fork builds first fork one
///   single-threaded helper (the zygote) that holds the state and forks every worker.
/// - **Work** with [`Pool::map`] (results in task order) or [`Pool::submit`] +
///   [`Pool::recv`] (completion order). Task ids count submissions from 0.
/// - **Chunks**: tasks wait in a queue and go to a worker in chunks, one frame (thread
///   backend: one channel message) per chunk each way. A chunk leaves once a whole one is
///   queued and a worker has room, or when [`Pool::recv`] would otherwise wait (then what is
///   queued is shared among the free workers). Each worker holds up to two chunks: the one it
///   runs and the next, so it never waits for the pool in between. The chunk size is
///   [`ChunkSize::Adaptive`] by default: from 1, it grows geometrically towards a few
///   milliseconds of measured work per chunk (at most [`MAX_CHUNK`](crate::MAX_CHUNK)
///   tasks). [`Pool::wanted_in_flight`] says how many tasks to keep submitted to keep every
///   worker busy. Chunking changes no result: tasks keep their ids and run one by one.
/// - **Crash**: a worker that dies (abort, signal, OOM kill, exit, corrupt frame) is reaped
///   and replaced. Results it reported before are kept; tasks it was sent but had not run
///   are sent again, uncharged. The task it was running is charged one attempt and retried,
///   up to `max_attempts` (default 3) per task; then that task alone fails with
///   [`Error::is_worker_lost`]. When the pool cannot tell which task of a chunk was running
///   (the chunk's results died in the worker's buffer), it charges none and runs that chunk's
///   unfinished tasks one per chunk, so the next crash names its task. A panic is returned
///   as data ([`Error::is_panic`]) and the worker goes on. A task over the timeout fails with
///   [`Error::is_timeout`]; its worker is killed and replaced. Timeouts are per task: with a
///   timeout, workers report each result as it is done (one write per task), so that the
///   pool knows which task runs. Without one, a task that never ends also holds the tasks
///   behind it on its worker (at most two chunks), so set a timeout where tasks can hang. An
///   injected fault announces itself, and the tasks behind it go to other workers at once.
/// - **End**: [`Pool::shutdown`] closes every task stream and gives workers a grace period
///   to finish their current chunk and exit, then kills and reaps what is left.
///   [`Pool::kill`] and `Drop` kill and reap at once. Both are idempotent underneath; no
///   zombie or orphan is left. Workers also die with the parent process (Linux
///   `PR_SET_PDEATHSIG` + a `getppid` check; EOF on their task stream everywhere), and they
///   ignore SIGINT, so Ctrl-C stops the parent, which takes its workers down.
/// - Outstanding results are abandoned by `shutdown`, `kill` and `Drop`.
pub struct Pool<W: Worker> {
    inner: Inner<W>,
    backend: Backend,
    workers: usize,
    next_id: TaskId,
    stash: VecDeque<Finished<W::Output>>,
}

/// A finished task, from [`Pool::recv_timed`].
#[derive(Debug)]
pub struct Finished<O> {
    /// The id [`Pool::submit`] gave it.
    pub id: TaskId,
    /// Its output, or why there is none.
    pub result: Result<O, Error>,
    /// The time its worker spent on it (decoding, running, and for a thread worker nothing
    /// else), measured in the worker: not the time it waited in a chunk behind other tasks.
    /// Zero when no worker reported it (a worker lost, a timeout, a start-up failure).
    pub busy: std::time::Duration,
}

impl<W: Worker> Pool<W> {
    fn new(inner: Inner<W>, backend: Backend, b: &PoolBuilder) -> Pool<W> {
        Pool { inner, backend, workers: b.workers, next_id: 0, stash: VecDeque::new() }
    }

    /// Queues one task and returns its id. It goes to a worker as soon as a whole chunk is
    /// queued and a worker has room, or at the latest when [`Pool::recv`] would wait.
    /// Fails only if the task cannot be serialized or its frame exceeds the maximum size
    /// ([`Error::is_frame`]); the id is used up either way.
    pub fn submit(&mut self, task: W::Task) -> Result<TaskId, Error> {
        let id = self.next_id;
        self.next_id += 1;
        match &mut self.inner {
            Inner::Proc(p) => {
                let encode = |buf: &mut Vec<u8>| postcard::to_io(&task, buf).map(drop).map_err(|e| e.to_string());
                p.submit(id, encode).map_err(|message| Error::new(Kind::Codec { task: id, message }))?;
            }
            Inner::Thread(t) => t.submit(id, task),
        }
        Ok(id)
    }

    /// The next finished task, in completion order; `None` when nothing is outstanding.
    pub fn recv(&mut self) -> Option<(TaskId, Result<W::Output, Error>)> {
        self.recv_timed().map(|f| (f.id, f.result))
    }

    /// [`Pool::recv`], with the time the task's worker spent on it.
    pub fn recv_timed(&mut self) -> Option<Finished<W::Output>> {
        if let Some(d) = self.stash.pop_front() {
            return Some(d);
        }
        let (id, result, ns) = match &mut self.inner {
            Inner::Proc(p) => {
                let (id, r, ns) = p.next()?;
                let r = r.and_then(|bytes| {
                    postcard::from_bytes(bytes)
                        .map_err(|e| Error::new(Kind::Codec { task: id, message: format!("bad output: {e}") }))
                });
                (id, r, ns)
            }
            Inner::Thread(t) => t.next()?,
        };
        Some(Finished { id, result, busy: std::time::Duration::from_nanos(ns) })
    }

    /// Runs every task and returns the results in task order. Results of tasks submitted
    /// earlier with [`Pool::submit`] stay available to [`Pool::recv`].
    pub fn map(&mut self, tasks: impl IntoIterator<Item = W::Task>) -> Vec<Result<W::Output, Error>> {
        // Ids are handed out in order, so this map's tasks are `first..first + slots.len()`.
        let first = self.next_id;
        let mut slots: Vec<Option<Result<W::Output, Error>>> = Vec::new();
        let mut missing = 0;
        for task in tasks {
            match self.submit(task) {
                Ok(_) => {
                    slots.push(None);
                    missing += 1;
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let mut other = VecDeque::new();
        while missing > 0 {
            let Some(f) = self.recv_timed() else { break };
            match f.id.checked_sub(first).and_then(|k| slots.get_mut(k as usize)) {
                Some(slot) if slot.is_none() => {
                    *slot = Some(f.result);
                    missing -= 1;
                }
                _ => other.push_back(f),
            }
        }
        self.stash.extend(other);
        slots.into_iter().map(|r| r.expect("every task has a result")).collect()
    }

    /// Tasks submitted whose results have not been received yet.
    pub fn outstanding(&self) -> usize {
        self.stash.len()
            + match &self.inner {
                Inner::Proc(p) => p.outstanding(),
                Inner::Thread(t) => t.outstanding,
            }
    }

    /// Whether [`Pool::recv`] has a result at hand, so that it returns without waiting
    /// (`false` for results still in a pipe or channel, not yet read).
    pub fn has_ready(&self) -> bool {
        !self.stash.is_empty()
            || match &self.inner {
                Inner::Proc(p) => p.has_ready(),
                Inner::Thread(t) => t.has_ready(),
            }
    }

    /// Waits at most `timeout` for a result, running the pool meanwhile (sending queued
    /// chunks, retrying crashed tasks, expiring timed-out ones) exactly as [`Pool::recv`]
    /// does while it waits; whether [`Pool::recv`] now has a result at hand. `false` at once
    /// when nothing is outstanding. A caller uses it to do its own work (commit a store) only
    /// when a wait is going to be long.
    pub fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        !self.stash.is_empty()
            || match &mut self.inner {
                Inner::Proc(p) => p.wait_ready(timeout),
                Inner::Thread(t) => t.wait_ready(timeout),
            }
    }

    /// How many tasks should be in flight (submitted, not yet received) to keep every worker
    /// busy: each worker's running chunk and the next one queued behind it, at the current
    /// chunk size. It starts at `2 × workers` and follows the adaptive chunk size, so callers
    /// that keep a window of work in flight (the optimizer's evaluator) should read it again
    /// as they go.
    pub fn wanted_in_flight(&self) -> usize {
        match &self.inner {
            Inner::Proc(p) => p.wanted_in_flight(),
            Inner::Thread(t) => t.wanted_in_flight(),
        }
    }

    /// The current chunk size: how many tasks go to a worker in one frame (or message).
    pub fn chunk_size(&self) -> usize {
        match &self.inner {
            Inner::Proc(p) => p.chunk_size(),
            Inner::Thread(t) => t.chunk_size(),
        }
    }

    /// The backend this pool runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configured number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Process ids of the live workers (empty for the thread backend, and for per-batch
    /// between batches).
    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Proc(p) => p.worker_pids(),
            Inner::Thread(_) => Vec::new(),
        }
    }

    /// Process ids of helpers: the fork backend's zygote (which holds one copy of the state).
    pub fn helper_pids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Proc(p) => p.helper_pids(),
            Inner::Thread(_) => Vec::new(),
        }
    }

    /// Sum of PSS and RSS over workers and helpers (Linux); for the thread backend, the
    /// current process. For process backends, add the parent's own with [`memory::of_pids`]
    /// and `std::process::id()` if it still holds a copy of the state.
    pub fn memory(&self) -> std::io::Result<Memory> {
        let mut pids = self.worker_pids();
        pids.extend(self.helper_pids());
        if let Inner::Thread(_) = self.inner {
            pids.push(std::process::id());
        }
        memory::of_pids(&pids)
    }

    /// Counters: workers started and lost, retries, timeouts (zero for the thread backend).
    pub fn stats(&self) -> Stats {
        match &self.inner {
            Inner::Proc(p) => p.stats,
            Inner::Thread(_) => Stats::default(),
        }
    }

    /// Closes every task stream, waits up to `grace` for workers to exit, then kills and
    /// reaps the rest (threads are joined after their current task).
    pub fn shutdown(mut self, grace: Duration) {
        match &mut self.inner {
            Inner::Proc(p) => p.shutdown(grace),
            Inner::Thread(t) => t.shutdown(),
        }
    }

    /// Kills and reaps every worker now (same as `Drop`).
    pub fn kill(self) {}
}
