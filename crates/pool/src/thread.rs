//! The thread backend: in-process workers, no IPC. The zero-overhead reference that the
//! process backends are measured against. State is shared however the factory shares it
//! (typically an `Arc` of the loaded bundle in each worker value).
//!
//! Tasks travel in chunks, one channel message per chunk each way, sized like the process
//! backends' chunks and at most [`DEPTH`] per thread in flight, so that a cheap task costs no
//! futex hand-off of its own.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::TaskId;
use crate::chunk::{ChunkSize, Chunker};
use crate::error::{Error, Kind};
use crate::worker::Worker;

/// Chunks per thread in flight: the one it runs and the next.
const DEPTH: usize = 2;

/// A finished task: its id, result, and the nanoseconds its thread spent on it.
type Done<W> = (TaskId, Result<<W as Worker>::Output, Error>, u64);
type Chunk<W> = Vec<(TaskId, <W as Worker>::Task)>;

/// What a thread sends back for a chunk: its results, the emptied chunk (for reuse) and the
/// nanoseconds it spent.
struct Reply<W: Worker> {
    results: Vec<Done<W>>,
    chunk: Chunk<W>,
    busy_ns: u64,
}

pub(crate) struct ThreadPool<W: Worker> {
    tx: Option<Sender<Chunk<W>>>,
    rx: Receiver<Reply<W>>,
    handles: Vec<JoinHandle<()>>,
    threads: usize,
    /// Tasks not sent yet.
    queue: VecDeque<(TaskId, W::Task)>,
    /// Emptied chunks, to be filled again.
    spare: Vec<Chunk<W>>,
    /// Chunks the threads hold.
    chunks: usize,
    ready: VecDeque<Done<W>>,
    chunker: Chunker,
    pub(crate) outstanding: usize,
}

impl<W: Worker> ThreadPool<W> {
    pub(crate) fn start<F>(n: usize, chunk: ChunkSize, make: F) -> Result<ThreadPool<W>, Error>
    where
        W: Send,
        F: Fn() -> W + Send + Sync + 'static,
    {
        let (tx, task_rx) = mpsc::channel::<Chunk<W>>();
        let (done_tx, rx) = mpsc::channel::<Reply<W>>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        let make = Arc::new(make);
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let (task_rx, done_tx, make) = (task_rx.clone(), done_tx.clone(), make.clone());
            let h = std::thread::Builder::new()
                .name(format!("pool-worker-{i}"))
                .spawn(move || {
                    let mut w = make();
                    loop {
                        let next = task_rx.lock().map(|r| r.recv());
                        let Ok(Ok(mut chunk)) = next else { return };
                        let started = Instant::now();
                        let mut lap = started;
                        let results: Vec<Done<W>> = chunk
                            .drain(..)
                            .map(|(id, task)| {
                                let r = run(&mut w, id, task);
                                let now = Instant::now();
                                let ns = now.duration_since(lap).as_nanos().min(u64::MAX as u128) as u64;
                                lap = now;
                                (id, r, ns)
                            })
                            .collect();
                        let busy_ns = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                        if done_tx.send(Reply { results, chunk, busy_ns }).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("failed to start a worker thread", e))?;
            handles.push(h);
        }
        Ok(ThreadPool {
            tx: Some(tx),
            rx,
            handles,
            threads: n.max(1),
            queue: VecDeque::new(),
            spare: Vec::new(),
            chunks: 0,
            ready: VecDeque::new(),
            chunker: Chunker::new(chunk),
            outstanding: 0,
        })
    }

    pub(crate) fn submit(&mut self, id: TaskId, task: W::Task) {
        self.outstanding += 1;
        self.queue.push_back((id, task));
        if self.queue.len() >= self.chunker.size() {
            self.pump(false);
        }
    }

    /// Sends chunks while threads have room; `partial` also sends chunks smaller than the
    /// chunk size, sharing what is queued evenly (the caller is about to wait).
    fn pump(&mut self, partial: bool) {
        let Some(tx) = &self.tx else { return };
        let size = self.chunker.size();
        let free = (self.threads * DEPTH).saturating_sub(self.chunks);
        if free == 0 || self.queue.is_empty() {
            return;
        }
        let share = if partial { self.queue.len().div_ceil(free).clamp(1, size) } else { size };
        while self.chunks < self.threads * DEPTH && (self.queue.len() >= size || (partial && !self.queue.is_empty())) {
            let take = share.min(self.queue.len());
            let mut chunk = self.spare.pop().unwrap_or_default();
            chunk.extend(self.queue.drain(..take));
            // Threads only stop when `tx` is dropped, so this cannot fail while we hold it.
            let _ = tx.send(chunk);
            self.chunks += 1;
        }
    }

    pub(crate) fn wanted_in_flight(&self) -> usize {
        self.threads * DEPTH * self.chunker.size()
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunker.size()
    }

    /// Whether [`ThreadPool::next`] has a result at hand.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Waits up to `timeout` until [`ThreadPool::next`] has a result at hand; whether it has.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> bool {
        if self.ready.is_empty() && self.outstanding > 0 {
            self.pump(true);
            if let Ok(reply) = self.rx.recv_timeout(timeout) {
                self.take(reply);
            }
        }
        !self.ready.is_empty()
    }

    pub(crate) fn next(&mut self) -> Option<Done<W>> {
        if self.outstanding == 0 {
            return None;
        }
        if self.ready.is_empty() {
            self.pump(true);
            let reply = self.rx.recv().ok()?;
            self.take(reply);
        }
        let d = self.ready.pop_front()?;
        self.outstanding -= 1;
        Some(d)
    }

    /// Takes in one chunk's results.
    fn take(&mut self, reply: Reply<W>) {
        self.chunks -= 1;
        self.chunker.observe(reply.results.len(), reply.busy_ns);
        self.ready.extend(reply.results);
        self.spare.push(reply.chunk);
    }

    /// Stops handing out tasks and joins the threads once they finish their current chunk.
    pub(crate) fn shutdown(&mut self) {
        self.tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs one task; a panic comes back as data.
fn run<W: Worker>(w: &mut W, id: TaskId, task: W::Task) -> Result<W::Output, Error> {
    catch_unwind(AssertUnwindSafe(|| w.run(task))).map_err(|p| {
        let message = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        Error::new(Kind::Panic { task: id, message })
    })
}

impl<W: Worker> Drop for ThreadPool<W> {
    fn drop(&mut self) {
        // Threads cannot be killed: stop feeding them and let them go (a hung one stays).
        self.tx = None;
    }
}
