//! The scheduler shared by the process backends (fork, per-batch, spawn): slots, retries,
//! timeouts and the wait for the next frame. It moves bytes; `Pool` does the typing.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::TaskId;
use crate::error::{Error, Kind};
use crate::frame::{ResultHeader, Tag, write_frame};
use crate::worker::{self, READY_OK};

/// A message about one worker, tagged by its worker id.
pub(crate) type Event = (u64, Msg);

pub(crate) enum Msg {
    Frame(Vec<u8>),
    Closed { cause: String, frame: bool },
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
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Starting,
    Idle,
    Busy { task: TaskId, deadline: Option<Instant> },
}

struct Live {
    wid: u64,
    pid: u32,
    tx: Box<dyn Write + Send>,
    #[cfg(unix)]
    rx: Option<std::fs::File>,
    /// Bytes read from `rx` that do not make a whole frame yet. Reads never wait for the rest
    /// of a frame, so a worker that sends half a frame and hangs is caught by the task
    /// timeout instead of stalling the pool.
    #[cfg(unix)]
    buf: Vec<u8>,
    state: State,
}

/// Why a worker leaves its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    /// It died, failed to start, or was killed for a timeout: counted as lost.
    Died,
    /// It sent an oversized, truncated or corrupt frame: lost, and a frame error on its task.
    BadFrame,
    /// The pool stopped it on purpose (per-batch, between batches): not counted as lost.
    Stopped,
}

struct Pending {
    frame: Vec<u8>,
    attempts: u32,
}

/// Counters over the pool's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Workers started, including the initial ones.
    pub started: u64,
    /// Workers that died or were killed while the pool wanted them.
    pub lost: u64,
    /// Tasks put back in the queue after their worker died.
    pub retries: u64,
    /// Tasks that hit the per-task timeout.
    pub timeouts: u64,
}

pub(crate) struct ProcPool {
    launcher: Box<dyn Launcher>,
    ev_tx: Sender<Event>,
    ev_rx: Receiver<Event>,
    slots: Vec<Option<Live>>,
    cfg: Cfg,
    queue: VecDeque<TaskId>,
    pending: HashMap<TaskId, Pending>,
    done: VecDeque<(TaskId, Result<Vec<u8>, Error>)>,
    next_wid: u64,
    deaths_in_row: u32,
    startup_failure: Option<String>,
    pub(crate) stats: Stats,
    rr: usize,
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
            cfg,
            queue: VecDeque::new(),
            pending: HashMap::new(),
            done: VecDeque::new(),
            next_wid: 0,
            deaths_in_row: 0,
            startup_failure: None,
            stats: Stats::default(),
            rr: 0,
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
        while self.slots.iter().flatten().any(|l| l.state == State::Starting) {
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
                state: State::Starting,
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
        self.pending.len() + self.done.len()
    }

    pub(crate) fn submit(&mut self, id: TaskId, frame: Vec<u8>) {
        self.pending.insert(id, Pending { frame, attempts: 0 });
        self.queue.push_back(id);
        self.pump();
    }

    /// Starts missing workers and hands queued tasks to idle ones.
    fn pump(&mut self) {
        // A worker found dead while handing it a task frees its slot again: go round until
        // every slot is filled or the queue is empty.
        while !self.queue.is_empty() && self.dispatch() {}
    }

    /// One round of start-and-dispatch; true if a worker was found dead on the way.
    fn dispatch(&mut self) -> bool {
        if let Err(e) = self.launch_missing() {
            self.fail_queue(&e.to_string());
            return false;
        }
        let mut lost = false;
        for i in 0..self.slots.len() {
            let Some(live) = self.slots[i].as_mut() else { continue };
            if live.state != State::Idle {
                continue;
            }
            let Some(task) = self.queue.pop_front() else { break };
            let p = self.pending.get_mut(&task).expect("queued task is pending");
            worker::set_attempt(&mut p.frame, task, p.attempts);
            match write_frame(&mut live.tx, &p.frame, self.cfg.max_frame) {
                Ok(()) => {
                    let deadline = self.cfg.timeout.map(|t| Instant::now() + t);
                    live.state = State::Busy { task, deadline };
                }
                Err(e) => {
                    // The worker died before it took the task: not the task's fault.
                    self.queue.push_front(task);
                    self.retire(i, format!("write failed: {e}"), Retire::Died);
                    lost = true;
                }
            }
        }
        lost
    }

    fn fail_queue(&mut self, why: &str) {
        while let Some(task) = self.queue.pop_front() {
            self.pending.remove(&task);
            self.done.push_back((task, Err(Error::new(Kind::Startup(why.to_string())))));
        }
    }

    /// Takes a worker out of its slot: kills it (a no-op if it is already dead), reaps it,
    /// and requeues or fails its task.
    fn retire(&mut self, i: usize, cause: String, why: Retire) {
        let Some(live) = self.slots[i].take() else { return };
        self.launcher.kill(live.wid, live.pid);
        drop(live.tx);
        let how = self.launcher.reap(live.wid, live.pid);
        let cause = format!("worker {} (pid {}) {cause}{how}", live.wid, live.pid);
        if why != Retire::Stopped {
            self.stats.lost += 1;
        }
        let frame = why == Retire::BadFrame;
        match live.state {
            State::Busy { task, .. } => {
                let p = self.pending.get_mut(&task).expect("busy task is pending");
                p.attempts += 1;
                if p.attempts >= self.cfg.max_attempts {
                    let attempts = p.attempts;
                    self.pending.remove(&task);
                    self.done.push_back((
                        task,
                        Err(Error::new(Kind::WorkerLost { task, attempts, cause: cause.clone(), frame })),
                    ));
                } else {
                    self.stats.retries += 1;
                    self.queue.push_front(task);
                }
            }
            State::Starting => {
                self.startup_failure.get_or_insert(cause.clone());
                self.deaths_in_row += 1;
            }
            State::Idle => self.deaths_in_row += 1,
        }
        // Workers that die without ever taking a task would be restarted forever.
        if self.deaths_in_row > self.cfg.max_attempts * self.slots.len() as u32 + 1 {
            self.deaths_in_row = 0;
            self.fail_queue(&format!("workers keep dying before taking a task; last: {cause}"));
        }
    }

    fn handle(&mut self, i: usize, msg: Msg) {
        let Some(live) = self.slots[i].as_mut() else { return };
        let frame = match msg {
            Msg::Closed { cause, frame } => {
                return self.retire(i, cause, if frame { Retire::BadFrame } else { Retire::Died });
            }
            Msg::Frame(f) => f,
        };
        match live.state {
            State::Starting => {
                if frame.first() == Some(&READY_OK) {
                    live.state = State::Idle;
                } else {
                    let m = String::from_utf8_lossy(frame.get(1..).unwrap_or_default()).into_owned();
                    self.retire(i, format!("failed to start: {m}"), Retire::Died);
                }
            }
            State::Busy { task, .. } => {
                let (head, body) = match ResultHeader::decode(&frame) {
                    Some((head, body)) if head.id == task => (head, body),
                    _ => return self.retire(i, "sent a corrupt result frame".into(), Retire::BadFrame),
                };
                let text = || String::from_utf8_lossy(body).into_owned();
                let result = match head.tag {
                    Tag::Ok => Ok(body.to_vec()),
                    Tag::Panic => Err(Error::new(Kind::Panic { task, message: text() })),
                    Tag::Codec => Err(Error::new(Kind::Codec { task, message: text() })),
                };
                live.state = State::Idle;
                self.deaths_in_row = 0;
                self.pending.remove(&task);
                self.done.push_back((task, result));
            }
            State::Idle => self.retire(i, "sent a frame while idle".into(), Retire::BadFrame),
        }
    }

    /// The next finished task in completion order; `None` when nothing is outstanding.
    pub(crate) fn next(&mut self) -> Option<(TaskId, Result<Vec<u8>, Error>)> {
        loop {
            if let Some(d) = self.done.pop_front() {
                if self.cfg.per_batch && self.pending.is_empty() && self.done.is_empty() {
                    // The batch is over: per-batch workers do not outlive it.
                    self.stop_workers();
                }
                return Some(d);
            }
            if self.pending.is_empty() {
                if self.cfg.per_batch {
                    self.stop_workers();
                }
                return None;
            }
            self.pump();
            if !self.done.is_empty() {
                continue;
            }
            if self.slots.iter().all(Option::is_none) {
                // Nothing can ever report back; never block on an empty set of workers.
                self.queue = self.pending.keys().copied().collect();
                self.queue.make_contiguous().sort_unstable();
                self.fail_queue("no worker could be started");
                continue;
            }
            let deadline = self
                .slots
                .iter()
                .flatten()
                .filter_map(|l| match l.state {
                    State::Busy { deadline, .. } => deadline,
                    _ => None,
                })
                .min();
            match self.wait_event(deadline) {
                Some((i, msg)) => self.handle(i, msg),
                None => self.expire(),
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let Some(live) = self.slots[i].as_mut() else { continue };
            if let State::Busy { task, deadline: Some(d) } = live.state
                && d <= now
            {
                live.state = State::Idle;
                self.pending.remove(&task);
                self.stats.timeouts += 1;
                let after = self.cfg.timeout.unwrap_or_default();
                self.done.push_back((task, Err(Error::new(Kind::Timeout { task, after }))));
                self.retire(i, "timed out".into(), Retire::Died);
                self.deaths_in_row = 0;
            }
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
        // A whole frame may already be buffered from an earlier read.
        for i in 0..n {
            if let Some(live) = self.slots[i].as_mut().filter(|l| l.rx.is_some()) {
                match take_frame(&mut live.buf, self.cfg.max_frame) {
                    Ok(Some(f)) => return Some((i, Msg::Frame(f))),
                    Ok(None) => {}
                    Err(cause) => return Some((i, Msg::Closed { cause, frame: true })),
                }
            }
        }
        let mut idx = Vec::with_capacity(n);
        let mut fds = Vec::with_capacity(n);
        for k in 0..n {
            let i = (self.rr + k) % n;
            if let Some(rx) = self.slots[i].as_ref().and_then(|l| l.rx.as_ref()) {
                idx.push(i);
                fds.push(libc::pollfd { fd: rx.as_raw_fd(), events: libc::POLLIN, revents: 0 });
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
            let i = idx[k];
            self.rr = (i + 1) % n;
            let max = self.cfg.max_frame;
            let live = self.slots[i].as_mut().expect("polled slot is live");
            let rx = live.rx.as_mut().expect("polled slot has rx");
            // One read: poll said readable, so it returns what is there without waiting.
            let mut chunk = [0u8; 64 << 10];
            let got = match std::io::Read::read(rx, &mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    fds[k].revents = 0;
                    continue;
                }
                Err(e) => return Some((i, Msg::Closed { cause: format!("result pipe failed: {e}"), frame: false })),
            };
            if got == 0 {
                let msg = if live.buf.is_empty() {
                    Msg::Closed { cause: "closed its result pipe".into(), frame: false }
                } else {
                    Msg::Closed { cause: "sent a bad frame: truncated".into(), frame: true }
                };
                return Some((i, msg));
            }
            live.buf.extend_from_slice(&chunk[..got]);
            match take_frame(&mut live.buf, max) {
                Ok(Some(f)) => return Some((i, Msg::Frame(f))),
                Ok(None) => {
                    // Not a whole frame yet: wait for more, still bounded by the deadline.
                    for p in &mut fds {
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

/// Takes one whole frame (u32 LE length, then payload) off the front of `buf`, if there is one.
/// A length over `max` is an error as soon as its 4 bytes are in, before any payload arrives.
#[cfg(unix)]
fn take_frame(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(format!("sent a bad frame: frame length {len} exceeds the maximum of {max}"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let frame = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Ok(Some(frame))
}
