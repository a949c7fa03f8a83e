//! The scheduler shared by the process backends (fork, per-batch, spawn): chunks, slots,
//! retries, timeouts and the wait for the next frame. It moves bytes; `Pool` does the typing.
//!
//! Tasks wait in a queue and go out in chunks, one request frame per chunk, up to [`DEPTH`]
//! chunks per worker (the one it runs and the next, already in its pipe). Results come back
//! per chunk (per task when there is a timeout), and every result is matched against the
//! front of what the worker was sent, in order. So when a worker dies, the pool knows which
//! tasks have their results (kept), and which did not run yet (sent again, uncharged). The
//! task it was running is charged one attempt when the pool can tell which one it was; when
//! it cannot (results of the chunk's earlier tasks died with the worker's buffer), no task is
//! charged and the chunk's unfinished tasks are "suspects", sent one per chunk from then on,
//! so that the next crash names its task.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::TaskId;
use crate::chunk::{ChunkSize, Chunker};
use crate::error::{Error, Kind};
use crate::frame::{ChunkHeader, Cursor, ResultHeader, ResultsHeader, Tag, TaskHeader, begin_frame, finish_frame};
use crate::worker::READY_OK;

/// A message about one worker, tagged by its worker id.
pub(crate) type Event = (u64, Msg);

pub(crate) enum Msg {
    Frame(Vec<u8>),
    /// A whole frame waits at the front of the worker's read buffer (poll(2) launchers).
    #[cfg(unix)]
    Buffered,
    Closed {
        cause: String,
        frame: bool,
    },
}

/// A started worker process as the scheduler sees it.
pub(crate) struct Launched {
    pub(crate) pid: u32,
    pub(crate) tx: Box<dyn Write + Send>,
    /// The result stream, for launchers that are waited on with poll(2); `None` when the
    /// launcher delivers frames through the event channel instead.
    #[cfg(unix)]
    pub(crate) rx: Option<std::fs::File>,
}

/// How a process backend starts, kills and reaps workers.
pub(crate) trait Launcher: Send {
    fn launch(&mut self, wid: u64, events: &Sender<Event>) -> Result<Launched, Error>;
    /// Kills the worker if it is still running (never a recycled pid).
    fn kill(&mut self, wid: u64, pid: u32);
    /// Reaps the worker, returning how it ended where known.
    fn reap(&mut self, wid: u64, pid: u32) -> String;
    fn helper_pids(&self) -> Vec<u32>;
    /// Waits up to `grace` for workers (whose task streams are closed) to exit, then kills
    /// and reaps the rest and any helper process. Idempotent.
    fn shutdown(&mut self, grace: Duration);
}

#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    pub(crate) max_frame: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) start_timeout: Duration,
    pub(crate) per_batch: bool,
    pub(crate) chunk: ChunkSize,
}

/// The largest request frame sent to a worker that is still busy. The pool writes frames
/// with blocking writes while the worker may be blocked writing results, so a frame behind a
/// running chunk must fit into the pipe's buffer (64 KiB on Linux, 16 KiB at first on macOS)
/// without waiting for the worker. Elsewhere chunks are not pipelined.
const PIPELINED_BYTES: usize = if cfg!(target_os = "linux") {
    32 << 10
} else if cfg!(unix) {
    8 << 10
} else {
    0
};

/// Chunks a worker may have outstanding: the one it runs and the next, so that it never waits
/// for the pool between chunks (one where chunks are not pipelined).
const DEPTH: usize = if PIPELINED_BYTES == 0 { 1 } else { 2 };

/// One task sent to a worker, in the order the worker runs them.
#[derive(Clone, Copy, Debug)]
struct Sent {
    task: TaskId,
    /// Which of the worker's chunks it came in.
    chunk: u64,
}

struct Live {
    wid: u64,
    pid: u32,
    tx: Box<dyn Write + Send>,
    #[cfg(unix)]
    rx: Option<std::fs::File>,
    /// Bytes read from `rx`, from `pos` on not yet handled. Reads never wait for the rest of a
    /// frame, so a worker that sends half a frame and hangs is caught by the task timeout
    /// instead of stalling the pool.
    #[cfg(unix)]
    buf: Vec<u8>,
    #[cfg(unix)]
    pos: usize,
    /// It reported ready.
    ready: bool,
    /// A write to it failed (it is dead or dying, and killed), or it said an injected fault
    /// fires on its next task: it gets nothing more. It leaves its slot when its result
    /// stream ends (or its task times out), so that every frame it wrote before still counts.
    broken: bool,
    /// Tasks sent and not reported yet, in order.
    sent: VecDeque<Sent>,
    /// Chunks among `sent`.
    chunks: usize,
    next_chunk: u64,
    /// Its last frame said it runs the front of `sent` with nothing unreported.
    sure: bool,
    /// When the front of `sent` started, as near as the pool can tell: its last frame, or
    /// the chunk sent to it while idle.
    since: Instant,
}

impl Live {
    /// Whether a death now is surely the front task's doing.
    fn culprit_known(&self, flush_each: bool) -> bool {
        let alone = match (self.sent.front(), self.sent.get(1)) {
            (Some(a), Some(b)) => a.chunk != b.chunk,
            _ => true,
        };
        flush_each || self.sure || alone
    }

    /// Takes the front task off `sent`.
    fn pop(&mut self) -> Option<Sent> {
        let s = self.sent.pop_front()?;
        if self.sent.front().is_none_or(|n| n.chunk != s.chunk) {
            self.chunks -= 1;
        }
        Some(s)
    }
}

/// Why a worker leaves its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    /// It died or failed to start: counted as lost; its running task is charged an attempt.
    Died,
    /// It sent an oversized, truncated or corrupt frame: as `Died`, and a frame error on its
    /// task if that was the last attempt.
    BadFrame,
    /// It was killed because its task timed out (already failed): lost, nothing charged.
    TimedOut,
    /// The pool stopped it on purpose (per-batch, between batches): not counted as lost.
    Stopped,
}

struct Entry {
    off: usize,
    len: usize,
    attempts: u32,
    /// Was unfinished in a chunk whose worker died without saying which task killed it:
    /// goes out alone from now on.
    suspect: bool,
}

/// Encoded tasks until their result is in, in one arena (no allocation per task). Task ids
/// are dense and outstanding ones form a window, so entries sit in a deque indexed by id.
#[derive(Default)]
struct Tasks {
    bytes: Vec<u8>,
    spare: Vec<u8>,
    base: TaskId,
    entries: VecDeque<Option<Entry>>,
    live: usize,
    live_bytes: usize,
}

impl Tasks {
    /// Encodes a task with `encode`; refuses (and forgets) it if it grows beyond `max` bytes.
    fn insert(
        &mut self,
        id: TaskId,
        max: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        let off = self.bytes.len();
        let encoded = encode(&mut self.bytes);
        let len = self.bytes.len() - off;
        if encoded.is_ok() && len > max {
            self.bytes.truncate(off);
            // As the whole frame of a chunk of one.
            let extra = ChunkHeader::LEN + TaskHeader::LEN;
            return Err(format!("task frame of {} bytes exceeds the maximum of {}", len + extra, max + extra));
        }
        if let Err(e) = encoded {
            self.bytes.truncate(off);
            return Err(e);
        }
        if self.entries.is_empty() {
            self.base = id;
        }
        // Ids only grow; a gap is an id used up by a refused submission.
        while self.base + (self.entries.len() as TaskId) < id {
            self.entries.push_back(None);
        }
        self.entries.push_back(Some(Entry { off, len, attempts: 0, suspect: false }));
        self.live += 1;
        self.live_bytes += len;
        Ok(())
    }

    fn get(&self, id: TaskId) -> Option<&Entry> {
        self.entries.get(id.checked_sub(self.base)? as usize)?.as_ref()
    }

    fn get_mut(&mut self, id: TaskId) -> Option<&mut Entry> {
        self.entries.get_mut(id.checked_sub(self.base)? as usize)?.as_mut()
    }

    fn body(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.off..e.off + e.len]
    }

    fn remove(&mut self, id: TaskId) {
        let Some(slot) = id.checked_sub(self.base).and_then(|k| self.entries.get_mut(k as usize)) else { return };
        let Some(e) = slot.take() else { return };
        self.live -= 1;
        self.live_bytes -= e.len;
        while self.entries.front().is_some_and(Option::is_none) {
            self.entries.pop_front();
            self.base += 1;
        }
        if self.live == 0 {
            self.bytes.clear();
        } else if self.bytes.len() > (64 << 10) && self.bytes.len() > 2 * self.live_bytes {
            // Compact: amortised O(1) per task, as at least half the arena is dead.
            self.spare.clear();
            for e in self.entries.iter_mut().flatten() {
                let off = self.spare.len();
                self.spare.extend_from_slice(&self.bytes[e.off..e.off + e.len]);
                e.off = off;
            }
            std::mem::swap(&mut self.bytes, &mut self.spare);
        }
    }

    /// Ids of every task held, in order.
    fn ids(&self) -> Vec<TaskId> {
        (self.base..).zip(&self.entries).filter(|(_, e)| e.is_some()).map(|(id, _)| id).collect()
    }
}

/// Counters over the pool's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Workers started, including the initial ones.
    pub started: u64,
    /// Workers that died or were killed while the pool wanted them.
    pub lost: u64,
    /// Tasks charged an attempt and put back in the queue after their worker died.
    pub retries: u64,
    /// Tasks sent again, uncharged, because their worker died before it reported them
    /// (they were queued behind, or ran in the same chunk as, the task that killed it).
    pub resent: u64,
    /// Tasks that hit the per-task timeout.
    pub timeouts: u64,
}

/// A finished task as [`ProcPool::next`] gives it: id, output bytes or error, and the
/// nanoseconds its worker spent on it.
pub(crate) type RawFinished<'a> = (TaskId, Result<&'a [u8], Error>, u64);

pub(crate) struct ProcPool {
    launcher: Box<dyn Launcher>,
    ev_tx: Sender<Event>,
    ev_rx: Receiver<Event>,
    slots: Vec<Option<Live>>,
    cfg: Cfg,
    tasks: Tasks,
    queue: VecDeque<TaskId>,
    /// Finished tasks: id, output bytes (a range of `done_bytes`) or error, and the
    /// nanoseconds their worker spent on them (0 when no worker reported them).
    done: VecDeque<(TaskId, Result<Range<usize>, Error>, u64)>,
    /// Output bytes of the `Ok` results in `done`; cleared whenever `done` is empty.
    done_bytes: Vec<u8>,
    /// The request frame being built (reused).
    out: Vec<u8>,
    /// Ids in the request frame being built (reused).
    batch: Vec<TaskId>,
    chunker: Chunker,
    next_wid: u64,
    deaths_in_row: u32,
    startup_failure: Option<String>,
    pub(crate) stats: Stats,
    rr: usize,
    #[cfg(unix)]
    pollfds: Vec<libc::pollfd>,
    #[cfg(unix)]
    pollidx: Vec<usize>,
    closed: bool,
}

impl ProcPool {
    pub(crate) fn start(launcher: Box<dyn Launcher>, workers: usize, cfg: Cfg) -> Result<ProcPool, Error> {
        let (ev_tx, ev_rx) = mpsc::channel();
        let mut p = ProcPool {
            launcher,
            ev_tx,
            ev_rx,
            slots: (0..workers.max(1)).map(|_| None).collect(),
            chunker: Chunker::new(cfg.chunk),
            cfg,
            tasks: Tasks::default(),
            queue: VecDeque::new(),
            done: VecDeque::new(),
            done_bytes: Vec::new(),
            out: Vec::new(),
            batch: Vec::new(),
            next_wid: 0,
            deaths_in_row: 0,
            startup_failure: None,
            stats: Stats::default(),
            rr: 0,
            #[cfg(unix)]
            pollfds: Vec::new(),
            #[cfg(unix)]
            pollidx: Vec::new(),
            closed: false,
        };
        if !p.cfg.per_batch {
            p.launch_missing()?;
            p.await_ready()?;
        }
        Ok(p)
    }

    /// Waits until no worker is starting; any start-up failure fails the whole start.
    fn await_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.start_timeout;
        while self.slots.iter().flatten().any(|l| !l.ready) {
            if let Some(m) = self.startup_failure.take() {
                return Err(Error::new(Kind::Startup(m)));
            }
            match self.wait_event(Some(deadline)) {
                Some((i, msg)) => self.handle(i, msg),
                None if Instant::now() >= deadline => {
                    return Err(Error::new(Kind::Startup(format!(
                        "workers not ready after {:?}",
                        self.cfg.start_timeout
                    ))));
                }
                None => {}
            }
        }
        match self.startup_failure.take() {
            Some(m) => Err(Error::new(Kind::Startup(m))),
            None if self.slots.iter().all(Option::is_some) => Ok(()),
            None => Err(Error::new(Kind::Startup("a worker died during start-up".into()))),
        }
    }

    fn launch_missing(&mut self) -> Result<(), Error> {
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                continue;
            }
            let wid = self.next_wid;
            self.next_wid += 1;
            let l = self.launcher.launch(wid, &self.ev_tx)?;
            self.stats.started += 1;
            self.slots[i] = Some(Live {
                wid,
                pid: l.pid,
                tx: l.tx,
                #[cfg(unix)]
                rx: l.rx,
                #[cfg(unix)]
                buf: Vec::new(),
                #[cfg(unix)]
                pos: 0,
                ready: false,
                broken: false,
                sent: VecDeque::new(),
                chunks: 0,
                next_chunk: 0,
                sure: false,
                since: Instant::now(),
            });
        }
        Ok(())
    }

    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.slots.iter().flatten().map(|l| l.pid).collect()
    }

    pub(crate) fn helper_pids(&self) -> Vec<u32> {
        self.launcher.helper_pids()
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.tasks.live + self.done.len()
    }

    /// Tasks in flight that keep every worker busy: [`DEPTH`] chunks each.
    pub(crate) fn wanted_in_flight(&self) -> usize {
        self.slots.len() * DEPTH * self.chunker.size()
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunker.size()
    }

    /// Queues a task that `encode` writes as bytes; sends a chunk once a whole one is queued.
    pub(crate) fn submit(
        &mut self,
        id: TaskId,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        let max = self.cfg.max_frame.saturating_sub(ChunkHeader::LEN + TaskHeader::LEN);
        self.tasks.insert(id, max, encode)?;
        self.queue.push_back(id);
        if self.queue.len() >= self.chunker.size() {
            self.pump(false);
        }
        Ok(())
    }

    /// Starts missing workers and hands queued tasks to workers with room; `partial` also
    /// sends chunks smaller than the chunk size (the caller is about to wait). A worker found
    /// dead on the way gets nothing; the others go on.
    fn pump(&mut self, partial: bool) {
        if self.queue.is_empty() {
            return;
        }
        if let Err(e) = self.launch_missing() {
            return self.fail_queue(&e.to_string());
        }
        let size = self.chunker.size();
        let open = |l: &&Live| l.ready && !l.broken;
        let free: usize = self.slots.iter().flatten().filter(open).map(|l| DEPTH - l.chunks.min(DEPTH)).sum();
        if free == 0 {
            return;
        }
        // Partial chunks share what is queued evenly among the free places.
        let share = if partial { self.queue.len().div_ceil(free).clamp(1, size) } else { size };
        let flush_each = self.cfg.timeout.is_some();
        // The first pass feeds idle workers; the second queues a chunk behind a running one.
        for depth in 0..DEPTH {
            for i in 0..self.slots.len() {
                let Some(live) = self.slots[i].as_ref() else { continue };
                if !live.ready || live.broken || live.chunks != depth {
                    continue;
                }
                let Some(&front) = self.queue.front() else { return };
                let suspect = self.tasks.get(front).is_some_and(|e| e.suspect);
                if !partial && !suspect && self.queue.len() < size {
                    return;
                }
                let limit = if depth == 0 { self.cfg.max_frame } else { PIPELINED_BYTES };
                if !self.build_chunk(share, limit, flush_each) {
                    continue;
                }
                let live = self.slots[i].as_mut().expect("checked above");
                let written = live.tx.write_all(&self.out).and_then(|()| live.tx.flush());
                match written {
                    Ok(()) => {
                        let chunk = live.next_chunk;
                        live.next_chunk += 1;
                        live.chunks += 1;
                        live.sent.extend(self.batch.iter().map(|&task| Sent { task, chunk }));
                        if depth == 0 {
                            live.since = Instant::now();
                            live.sure = false;
                        }
                    }
                    Err(_) => {
                        // The worker died before it took these tasks: not their fault. Its
                        // end of stream retires it.
                        for &task in self.batch.iter().rev() {
                            self.queue.push_front(task);
                        }
                        live.broken = true;
                        self.launcher.kill(live.wid, live.pid);
                    }
                }
            }
        }
    }

    /// Builds a request frame in `self.out` from up to `want` queued tasks within `limit`
    /// bytes, taking them off the queue into `self.batch`; false if not even one fits. A
    /// suspect task goes alone.
    fn build_chunk(&mut self, want: usize, limit: usize, flush_each: bool) -> bool {
        self.out.clear();
        self.batch.clear();
        let at = begin_frame(&mut self.out);
        self.out.extend_from_slice(&ChunkHeader { count: 0, flush_each }.to_bytes());
        while self.batch.len() < want {
            let Some(&id) = self.queue.front() else { break };
            let e = self.tasks.get(id).expect("queued task is pending");
            if !self.batch.is_empty() && e.suspect {
                break;
            }
            if self.out.len() - at - 4 + TaskHeader::LEN + e.len > limit {
                break;
            }
            let head = TaskHeader { id, attempt: e.attempts, len: e.len as u32 };
            self.out.extend_from_slice(&head.to_bytes());
            self.out.extend_from_slice(self.tasks.body(e));
            self.queue.pop_front();
            self.batch.push(id);
            if e.suspect {
                break;
            }
        }
        if self.batch.is_empty() {
            return false;
        }
        let head = ChunkHeader { count: self.batch.len() as u32, flush_each };
        self.out[at + 4..at + 4 + ChunkHeader::LEN].copy_from_slice(&head.to_bytes());
        // Within `limit`, which is at most the maximum frame: cannot fail.
        finish_frame(&mut self.out, at, usize::MAX).expect("chunk within limits");
        true
    }

    fn fail_queue(&mut self, why: &str) {
        while let Some(task) = self.queue.pop_front() {
            self.tasks.remove(task);
            self.done.push_back((task, Err(Error::new(Kind::Startup(why.to_string()))), 0));
        }
    }

    /// Takes a worker out of its slot: kills it (a no-op if it is already dead), reaps it,
    /// and charges, requeues or fails what it was sent.
    fn retire(&mut self, i: usize, cause: String, why: Retire) {
        let Some(mut live) = self.slots[i].take() else { return };
        let known = live.culprit_known(self.cfg.timeout.is_some());
        self.launcher.kill(live.wid, live.pid);
        drop(std::mem::replace(&mut live.tx, Box::new(std::io::sink())));
        let how = self.launcher.reap(live.wid, live.pid);
        let cause = format!("worker {} (pid {}) {cause}{how}", live.wid, live.pid);
        if why != Retire::Stopped {
            self.stats.lost += 1;
        }
        let crashed = matches!(why, Retire::Died | Retire::BadFrame);
        if !live.ready {
            self.startup_failure.get_or_insert(cause.clone());
            self.deaths_in_row += 1;
        } else if let Some(&front) = live.sent.front() {
            let charge = crashed && known;
            // Unknown culprit: the rest of its chunk is suspect (the next chunk had not begun).
            let suspects = (crashed && !charge).then_some(front.chunk);
            while let Some(s) = live.sent.pop_back() {
                let e = self.tasks.get_mut(s.task).expect("sent task is pending");
                if charge && s.task == front.task {
                    e.attempts += 1;
                    if e.attempts >= self.cfg.max_attempts {
                        let (task, attempts, frame) = (s.task, e.attempts, why == Retire::BadFrame);
                        self.tasks.remove(task);
                        let lost = Kind::WorkerLost { task, attempts, cause: cause.clone(), frame };
                        self.done.push_back((task, Err(Error::new(lost)), 0));
                        continue;
                    }
                    self.stats.retries += 1;
                } else {
                    e.suspect |= suspects == Some(s.chunk);
                    self.stats.resent += 1;
                }
                self.queue.push_front(s.task);
            }
        } else if why != Retire::Stopped {
            self.deaths_in_row += 1;
        }
        // Workers that die without ever taking a task would be restarted forever.
        if self.deaths_in_row > self.cfg.max_attempts * self.slots.len() as u32 + 1 {
            self.deaths_in_row = 0;
            self.fail_queue(&format!("workers keep dying before taking a task; last: {cause}"));
        }
    }

    fn handle(&mut self, i: usize, msg: Msg) {
        match msg {
            Msg::Closed { cause, frame } => self.retire(i, cause, if frame { Retire::BadFrame } else { Retire::Died }),
            Msg::Frame(f) => self.handle_frame(i, &f),
            #[cfg(unix)]
            Msg::Buffered => {
                let Some(live) = self.slots[i].as_mut() else { return };
                let (wid, pos, mut buf) = (live.wid, live.pos, std::mem::take(&mut live.buf));
                let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
                let end = pos + 4 + len;
                self.handle_frame(i, &buf[pos + 4..end]);
                if let Some(live) = self.slots[i].as_mut().filter(|l| l.wid == wid) {
                    live.pos = end;
                    if end == buf.len() {
                        buf.clear();
                        live.pos = 0;
                    }
                    live.buf = buf;
                }
            }
        }
    }

    fn handle_frame(&mut self, i: usize, frame: &[u8]) {
        let Some(live) = self.slots[i].as_mut() else { return };
        if !live.ready {
            if frame.first() == Some(&READY_OK) {
                live.ready = true;
            } else {
                let m = String::from_utf8_lossy(frame.get(1..).unwrap_or_default()).into_owned();
                self.retire(i, format!("failed to start: {m}"), Retire::Died);
            }
            return;
        }
        let mut c = Cursor::new(frame);
        let Some(head) = ResultsHeader::decode(&mut c) else {
            return self.retire(i, "sent a corrupt result frame".into(), Retire::BadFrame);
        };
        for _ in 0..head.count {
            let live = self.slots[i].as_mut().expect("live until retired");
            let front = live.sent.front().map(|s| s.task);
            let Some((r, body)) = ResultHeader::decode(&mut c).filter(|(r, _)| Some(r.id) == front) else {
                return self.retire(i, "sent a corrupt result frame".into(), Retire::BadFrame);
            };
            live.pop();
            let task = r.id;
            let text = || String::from_utf8_lossy(body).into_owned();
            let result = match r.tag {
                Tag::Ok => {
                    let start = self.done_bytes.len();
                    self.done_bytes.extend_from_slice(body);
                    Ok(start..self.done_bytes.len())
                }
                Tag::Panic => Err(Error::new(Kind::Panic { task, message: text() })),
                Tag::Codec => Err(Error::new(Kind::Codec { task, message: text() })),
            };
            self.tasks.remove(task);
            self.done.push_back((task, result, r.ns));
        }
        if !c.is_empty() {
            return self.retire(i, "sent a corrupt result frame".into(), Retire::BadFrame);
        }
        let live = self.slots[i].as_mut().expect("live until retired");
        live.sure = head.sure;
        live.since = Instant::now();
        if head.faulting {
            // Its next task ends it (or hangs it): what it holds behind that goes elsewhere.
            live.broken = true;
            let front = live.sent.pop_front();
            while let Some(s) = live.sent.pop_back() {
                self.queue.push_front(s.task);
                self.stats.resent += 1;
            }
            live.sent.extend(front);
            live.chunks = usize::from(front.is_some());
        }
        if head.count > 0 {
            self.deaths_in_row = 0;
        }
        self.chunker.observe(head.count as usize, head.busy_ns);
    }

    /// Whether [`ProcPool::next`] has a result at hand.
    pub(crate) fn has_ready(&self) -> bool {
        !self.done.is_empty()
    }

    /// Waits up to `timeout` until [`ProcPool::next`] has a result at hand; whether it has.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> bool {
        self.fill(Some(Instant::now() + timeout))
    }

    /// The next finished task in completion order, with its output bytes and the nanoseconds
    /// its worker spent on it; `None` when nothing is outstanding.
    pub(crate) fn next(&mut self) -> Option<RawFinished<'_>> {
        if !self.fill(None) {
            return None;
        }
        let (id, r, ns) = self.done.pop_front()?;
        if self.cfg.per_batch && self.tasks.live == 0 && self.done.is_empty() {
            // The batch is over: per-batch workers do not outlive it.
            self.stop_workers();
        }
        Some((id, r.map(|range| &self.done_bytes[range]), ns))
    }

    /// Runs the pool until a result is at hand (`true`), nothing is outstanding, or `until`
    /// passes (`false`); with `until = None` it waits as long as a task is outstanding.
    fn fill(&mut self, until: Option<Instant>) -> bool {
        while self.done.is_empty() {
            self.done_bytes.clear();
            if self.tasks.live == 0 {
                if self.cfg.per_batch {
                    self.stop_workers();
                }
                return false;
            }
            self.pump(true);
            if !self.done.is_empty() {
                continue;
            }
            if self.slots.iter().all(Option::is_none) {
                // Nothing can ever report back; never block on an empty set of workers.
                self.queue = self.tasks.ids().into();
                self.fail_queue("no worker could be started");
                continue;
            }
            let expiry = self.cfg.timeout.and_then(|t| {
                self.slots.iter().flatten().filter(|l| l.ready && !l.sent.is_empty()).map(|l| l.since + t).min()
            });
            let deadline = match (expiry, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match self.wait_event(deadline) {
                Some((i, msg)) => self.handle(i, msg),
                None => {
                    self.expire();
                    if self.done.is_empty() && until.is_some_and(|u| Instant::now() >= u) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn expire(&mut self) {
        let Some(after) = self.cfg.timeout else { return };
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let Some(live) = self.slots[i].as_mut() else { continue };
            if !live.ready || live.since + after > now {
                continue;
            }
            let Some(Sent { task, .. }) = live.pop() else { continue };
            self.tasks.remove(task);
            self.stats.timeouts += 1;
            self.done.push_back((task, Err(Error::new(Kind::Timeout { task, after })), 0));
            self.retire(i, "timed out".into(), Retire::TimedOut);
            self.deaths_in_row = 0;
        }
    }

    fn stop_workers(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.retire(i, "stopped".into(), Retire::Stopped);
            }
        }
        self.deaths_in_row = 0;
    }

    /// Waits for one event from any live worker until `deadline`.
    fn wait_event(&mut self, deadline: Option<Instant>) -> Option<(usize, Msg)> {
        #[cfg(unix)]
        if self.slots.iter().flatten().any(|l| l.rx.is_some()) {
            return self.poll_event(deadline);
        }
        loop {
            let got = match deadline {
                Some(d) => self.ev_rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                // The pool holds a sender itself, so this cannot disconnect.
                None => self.ev_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let (wid, msg) = got.ok()?;
            // Events from a worker that was already retired are stale.
            if let Some(i) = self.slots.iter().position(|l| l.as_ref().is_some_and(|l| l.wid == wid)) {
                return Some((i, msg));
            }
        }
    }

    #[cfg(unix)]
    fn poll_event(&mut self, deadline: Option<Instant>) -> Option<(usize, Msg)> {
        use std::os::fd::AsRawFd;
        let n = self.slots.len();
        let max = self.cfg.max_frame;
        // A whole frame may already be buffered from an earlier read.
        for i in 0..n {
            if let Some(live) = self.slots[i].as_mut().filter(|l| l.rx.is_some()) {
                match whole_frame(&live.buf[live.pos..], max) {
                    Ok(true) => return Some((i, Msg::Buffered)),
                    Ok(false) => {}
                    Err(cause) => return Some((i, Msg::Closed { cause, frame: true })),
                }
            }
        }
        self.pollidx.clear();
        self.pollfds.clear();
        for k in 0..n {
            let i = (self.rr + k) % n;
            if let Some(rx) = self.slots[i].as_ref().and_then(|l| l.rx.as_ref()) {
                self.pollidx.push(i);
                self.pollfds.push(libc::pollfd { fd: rx.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
        }
        loop {
            let timeout = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up so that a wake-up never comes just before the deadline.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
            };
            let fds = &mut self.pollfds;
            // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            if r == 0 {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    continue;
                }
                return None;
            }
            let k = fds.iter().position(|p| p.revents != 0).expect("poll reported a ready fd");
            let i = self.pollidx[k];
            self.rr = (i + 1) % n;
            let live = self.slots[i].as_mut().expect("polled slot is live");
            let fd = live.rx.as_ref().expect("polled slot has rx").as_raw_fd();
            if live.pos > 0 && live.pos * 2 >= live.buf.len() {
                live.buf.drain(..live.pos);
                live.pos = 0;
            }
            // One read into spare capacity (no zeroing): poll said readable, so it returns
            // what is there without waiting.
            live.buf.reserve(64 << 10);
            let spare = live.buf.spare_capacity_mut();
            // SAFETY: reading at most `spare.len()` bytes into the vector's spare capacity.
            let got = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
            if got < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    self.pollfds[k].revents = 0;
                    continue;
                }
                return Some((i, Msg::Closed { cause: format!("result pipe failed: {e}"), frame: false }));
            }
            if got == 0 {
                let msg = if live.buf.len() == live.pos {
                    Msg::Closed { cause: "closed its result pipe".into(), frame: false }
                } else {
                    Msg::Closed { cause: "sent a bad frame: truncated".into(), frame: true }
                };
                return Some((i, msg));
            }
            // SAFETY: read(2) initialised the first `got` bytes of the spare capacity.
            unsafe { live.buf.set_len(live.buf.len() + got as usize) };
            match whole_frame(&live.buf[live.pos..], max) {
                Ok(true) => return Some((i, Msg::Buffered)),
                Ok(false) => {
                    // Not a whole frame yet: wait for more, still bounded by the deadline.
                    for p in &mut self.pollfds {
                        p.revents = 0;
                    }
                }
                Err(cause) => return Some((i, Msg::Closed { cause, frame: true })),
            }
        }
    }

    /// Closes every task stream, gives workers `grace` to exit, then kills and reaps all.
    /// Idempotent.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        if self.closed {
            return;
        }
        self.closed = true;
        let lives: Vec<Live> = self.slots.iter_mut().filter_map(Option::take).collect();
        let ids: Vec<(u64, u32)> = lives.iter().map(|l| (l.wid, l.pid)).collect();
        drop(lives); // EOF on every task stream
        self.launcher.shutdown(grace);
        for (wid, pid) in ids {
            self.launcher.reap(wid, pid);
        }
    }
}

impl Drop for ProcPool {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Whether `buf` starts with one whole frame (u32 LE length, then payload). A length over
/// `max` is an error as soon as its 4 bytes are in, before any payload arrives.
#[cfg(unix)]
fn whole_frame(buf: &[u8], max: usize) -> Result<bool, String> {
    let Some(len) = buf.first_chunk::<4>() else { return Ok(false) };
    let len = u32::from_le_bytes(*len) as usize;
    if len > max {
        return Err(format!("sent a bad frame: frame length {len} exceeds the maximum of {max}"));
    }
    Ok(buf.len() >= 4 + len)
}
