//! pool: a persistent pool of workers that run many small tasks, on interchangeable backends.
//!
//! The pool is generic: a [`Worker`] holds state and turns a `Task` into an `Output`. It
//! knows nothing about market data, bundles or SQLite; the glue that plugs backtests in
//! chooses how the state is built:
//!
//! | backend | state | where |
//! |---|---|---|
//! | [`Backend::Fork`] | built once in the parent, inherited copy-on-write ([`PoolBuilder::fork`]); optional per-child hook for a "reopen" mode ([`PoolBuilder::fork_with`]) | unix |
//! | [`Backend::PerBatch`] | as fork, but fresh workers for every batch: the baseline | unix |
//! | [`Backend::Spawn`] | each re-executed child builds it from a serializable init value ([`SpawnWorker`]) | everywhere |
//! | [`Backend::Thread`] | one value per thread from a factory, sharing through `Arc` | everywhere |
//!
//! What it is not: a general job system. Tasks are independent; results are bit-identical
//! across backends and worker counts as long as `Worker::run` is deterministic, because
//! tasks carry their ids and [`Pool::map`] returns results in task order.
//!
//! # Fork safety
//! A fork happens in the calling process exactly once per fork pool, at build time, and only
//! after checking (Linux: `/proc/self/stat`) that the process is single-threaded (waiting up
//! to 200 ms for threads that were just joined to leave the count); otherwise the build fails
//! with [`Error::is_not_single_threaded`]. That fork creates a zygote which
//! never starts a thread; it holds the state, forks every worker (also replacements and
//! per-batch workers) and forwards their stderr. So build fork pools first thing in `main`,
//! before anything starts a thread. Forked children leave with `libc::_exit` and never drop
//! the inherited state, so inherited read-only SQLite handles are never closed in a child.
//!
//! # IPC
//! Frames behind a `u32` little-endian length, with a maximum size
//! ([`PoolBuilder::max_frame_len`], default 64 MiB); see [`frame`]. A request frame is a
//! chunk of tasks (each a header with its id and attempt, then the postcard task); a result
//! frame holds the results of the chunk's tasks in order (each a header with id and tag,
//! then the postcard output). Chunk sizes adapt to the task time ([`ChunkSize`]), so a cheap
//! task costs a fraction of a round trip. An oversized or corrupt frame is an error (the
//! worker is replaced), never a hang or a huge allocation. Worker stderr is drained
//! concurrently and forwarded line by line as `[worker N] ...`.
//!
//! # Chunk size: `BTOPT_POOL_CHUNK`
//! Pools built without [`PoolBuilder::chunk_size`] take their [`ChunkSize`] from this
//! variable ([`CHUNK_ENV`]): `auto` (the default when unset) or a number of tasks, so that
//! tests and benchmarks can vary it from outside a binary. An invalid value fails the build.
//!
//! # Fault injection: `BTOPT_FAULT_INJECT`
//! Read by process workers (fork, per-batch, spawn); the thread backend ignores it. Unset or
//! empty means no faults. An invalid value fails the pool's build. Faults are per task, also
//! inside chunks: before a fault fires, the worker reports the results of the chunk so far,
//! so the fault costs only its own task an attempt.
//! ```text
//! spec     = rule *( ";" rule )
//! rule     = action "@" selector *( "," option )
//! action   = "abort" | "exit" | "hang" | "sigkill" | "panic" | "garble" | "stall"
//! selector = "ids=" id *( "+" id )      ; task ids, as returned by submit (0-based)
//!          | "frac=" F                  ; 0 <= F <= 1 of tasks, chosen by a hash of (id, seed)
//! option   = "seed=" N                  ; for frac (default 0)
//!          | "attempts=" N              ; fire only on the first N attempts of a task
//!          | "code=" N                  ; exit status for exit (default 70)
//! ```
//! `abort` calls `std::process::abort`, `exit` ends the worker with `_exit`, `hang` sleeps
//! forever, `sigkill` raises SIGKILL, `panic` panics inside the task (returned as data) and
//! `garble` writes a truncated result frame, then exits; `stall` writes one and then hangs. The first matching rule wins. Fraction selection is a pure function of the task id and
//! seed, so runs are reproducible. Examples: `abort@ids=3+7` (tasks 3 and 7 abort their
//! worker on every attempt, so they fail after 3 attempts), `sigkill@frac=0.25,attempts=1`
//! (a quarter of tasks kill their first worker, then succeed), `hang@ids=5` (with a task
//! timeout, task 5 times out).
//!
//! # Example
//! ```no_run
//! use pool::{PoolBuilder, Worker};
//!
//! struct Sum { data: Vec<f64> } // e.g. a loaded bundle
//! impl Worker for Sum {
//!     type Task = (usize, usize);
//!     type Output = f64;
//!     fn run(&mut self, (a, b): (usize, usize)) -> f64 { self.data[a..b].iter().sum() }
//! }
//!
//! let state = Sum { data: (0..1000).map(f64::from).collect() };
//! let mut pool = PoolBuilder::new().workers(2).fork(state)?; // before any thread exists
//! let sums = pool.map([(0, 10), (10, 20)]);
//! assert_eq!(*sums[0].as_ref().unwrap(), 45.0);
//! # Ok::<(), pool::Error>(())
//! ```

mod chunk;
mod error;
mod fault;
#[cfg(unix)]
mod fork;
pub mod frame;
pub mod memory;
mod pool;
mod proc;
mod spawn;
mod thread;
#[cfg(windows)]
mod winjob;
mod worker;

pub use chunk::{CHUNK_ENV, ChunkSize, MAX_CHUNK, TARGET_CHUNK_NANOS};
pub use error::{Error, TaskId};
pub use fault::FAULT_ENV;
pub use memory::Memory;
pub use pool::{Backend, Finished, Pool, PoolBuilder};
pub use proc::Stats;
pub use spawn::{Registry, WORKER_ENV, worker_main_if_requested};
pub use worker::{SpawnWorker, Worker};

/// How many threads the current process has, where the OS says (Linux); `None` elsewhere.
/// Fork pools need this to be 1 when they are built.
pub fn thread_count() -> Option<usize> {
    #[cfg(unix)]
    return fork::thread_count();
    #[cfg(not(unix))]
    None
}
