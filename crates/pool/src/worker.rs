//! What a worker is, and the loop every process worker runs (fork and spawn alike).

use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TaskId;
use crate::fault::{self, Action, FaultSpec};
use crate::frame::{
    ChunkHeader, Cursor, ResultHeader, ResultsHeader, Tag, TaskHeader, finish_frame, read_frame_into, write_frame,
};

/// State that handles tasks. One value lives in each worker (a copy-on-write copy in a
/// forked child, a value built from [`SpawnWorker::Init`] in a spawned child, or one per
/// thread for the thread backend).
///
/// `run` must be deterministic in the task for the backends to agree bit for bit.
/// A panic in `run` is caught and returned as data; the worker keeps its state and goes on.
pub trait Worker: 'static {
    /// The input of one task. Crosses the process boundary as postcard.
    type Task: Serialize + DeserializeOwned + Send + 'static;
    /// The result of one task. Crosses the process boundary as postcard.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Handles one task.
    fn run(&mut self, task: Self::Task) -> Self::Output;
}

/// A worker that a spawned process can build for itself from a serializable value.
///
/// Register it in the binary with [`Registry::register`](crate::Registry::register) and call
/// [`worker_main_if_requested`](crate::worker_main_if_requested) first thing in `main`.
pub trait SpawnWorker: Worker + Sized {
    /// What the child needs to build its state, e.g. a bundle path and a load mode.
    type Init: Serialize + DeserializeOwned + 'static;
    /// A name unique within the binary's registry; the parent sends it to the child.
    const NAME: &'static str;
    /// Builds the state inside the child. An `Err` fails the pool's start-up with the message.
    fn init(init: Self::Init) -> Result<Self, String>;
}

pub(crate) const READY_OK: u8 = 0;
pub(crate) const READY_FAILED: u8 = 1;

/// Sends the start-up outcome as the first frame.
pub(crate) fn send_ready(out: &mut (impl Write + ?Sized), result: &Result<(), String>, max: usize) -> io::Result<()> {
    match result {
        Ok(()) => write_frame(out, &[READY_OK], max),
        Err(m) => {
            let mut f = vec![READY_FAILED];
            f.extend_from_slice(m.as_bytes());
            f.truncate(4096);
            write_frame(out, &f, max)
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The result frame a worker is filling: the buffer is reused for every frame, so a task
/// costs no allocation here, and a whole chunk costs one write.
struct Results {
    buf: Vec<u8>,
    count: u32,
    since: Instant,
    /// When the last task ended (or the frame started): the next task's time runs from here.
    lap: Instant,
}

impl Results {
    /// Offset of the first record: the frame length, then the [`ResultsHeader`].
    const BODY: usize = 4 + ResultsHeader::LEN;

    fn new() -> Results {
        let now = Instant::now();
        Results { buf: Vec::with_capacity(64 << 10), count: 0, since: now, lap: now }
    }

    fn start(&mut self) {
        self.buf.clear();
        self.buf.resize(Self::BODY, 0);
        self.count = 0;
        self.since = Instant::now();
        self.lap = self.since;
    }

    /// Nanoseconds since the last lap (the end of the previous task, or the frame's start):
    /// the time of the task that just ran. One clock read per task.
    fn lap(&mut self) -> u64 {
        let now = Instant::now();
        let ns = now.duration_since(self.lap).as_nanos().min(u64::MAX as u128) as u64;
        self.lap = now;
        ns
    }

    /// Appends one record of a task that took `ns`; the body is written by `body` straight
    /// into the frame.
    fn push(&mut self, id: TaskId, tag: Tag, ns: u64, body: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&ResultHeader { id, tag, len: 0, ns }.to_bytes());
        body(&mut self.buf);
        let len = (self.buf.len() - at - ResultHeader::LEN) as u32;
        self.buf[at..at + ResultHeader::LEN].copy_from_slice(&ResultHeader { id, tag, len, ns }.to_bytes());
        self.count += 1;
    }

    /// Writes the frame (even an empty one: with `sure` it tells the pool which task runs
    /// next) and starts the next.
    fn flush(&mut self, out: &mut (impl Write + ?Sized), sure: bool, max: usize) -> io::Result<()> {
        self.flush_flags(out, sure, false, max)
    }

    fn flush_flags(
        &mut self,
        out: &mut (impl Write + ?Sized),
        sure: bool,
        faulting: bool,
        max: usize,
    ) -> io::Result<()> {
        let busy_ns = self.since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        let head = ResultsHeader { count: self.count, busy_ns, sure, faulting };
        self.buf[4..Self::BODY].copy_from_slice(&head.to_bytes());
        finish_frame(&mut self.buf, 0, max)?;
        out.write_all(&self.buf)?;
        out.flush()?;
        self.start();
        Ok(())
    }
}

/// Runs one task and appends its result, keeping the frame under `max`: a result too big
/// for any frame becomes a codec error, and one that does not fit after the others goes into
/// the next frame.
fn run_one<W: Worker>(
    worker: &mut W,
    id: TaskId,
    body: &[u8],
    inject_panic: bool,
    res: &mut Results,
    out: &mut (impl Write + ?Sized),
    max: usize,
) -> io::Result<()> {
    let at = res.buf.len();
    let ns = match postcard::from_bytes::<W::Task>(body) {
        Err(e) => {
            let ns = res.lap();
            res.push(id, Tag::Codec, ns, |b| {
                b.extend_from_slice(format!("worker could not decode the task: {e}").as_bytes())
            });
            ns
        }
        Ok(task) => {
            let ran = catch_unwind(AssertUnwindSafe(|| {
                if inject_panic {
                    panic!("injected panic (BTOPT_FAULT_INJECT) on task {id}");
                }
                worker.run(task)
            }));
            let ns = res.lap();
            match ran {
                Ok(output) => {
                    let mut failed = None;
                    res.push(id, Tag::Ok, ns, |b| {
                        if let Err(e) = postcard::to_io(&output, &mut *b) {
                            failed = Some(e);
                        }
                    });
                    if let Some(e) = failed {
                        res.buf.truncate(at);
                        res.count -= 1;
                        res.push(id, Tag::Codec, ns, |b| {
                            b.extend_from_slice(format!("worker could not encode the output: {e}").as_bytes())
                        });
                    }
                }
                Err(p) => res.push(id, Tag::Panic, ns, |b| b.extend_from_slice(panic_message(&*p).as_bytes())),
            }
            ns
        }
    };
    let record = res.buf.len() - at;
    if Results::BODY - 4 + record > max {
        res.buf.truncate(at);
        res.count -= 1;
        let n = record - ResultHeader::LEN;
        res.push(id, Tag::Codec, ns, |b| {
            b.extend_from_slice(format!("output frame of {n} bytes exceeds the maximum of {max}").as_bytes())
        });
    } else if res.buf.len() - 4 > max {
        // Fits alone, not after the others: send those first.
        let tail = res.buf[at..].to_vec();
        res.buf.truncate(at);
        res.count -= 1;
        res.flush(out, false, max)?;
        res.buf.extend_from_slice(&tail);
        res.count += 1;
    }
    Ok(())
}

/// Serves chunks until the parent closes the task stream (EOF), which is how every worker
/// learns that the pool, or the parent process, is gone.
///
/// Each request frame is a chunk of tasks; their results go back in one frame at the end of
/// the chunk (one write per chunk), or one frame per task when the chunk asks for it. Before
/// an injected fault fires, the results so far are flushed with `sure` set, so the pool
/// knows exactly which task killed the worker. No syscall per task: the frame buffers are
/// reused, and the clock (the vDSO's, no syscall) is read once per task for its time.
pub(crate) fn serve<W: Worker>(
    worker: &mut W,
    input: &mut (impl Read + ?Sized),
    output: &mut (impl Write + ?Sized),
    max: usize,
    faults: &FaultSpec,
) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut req = Vec::new();
    let mut res = Results::new();
    while read_frame_into(input, max, &mut req)? {
        let mut c = Cursor::new(&req);
        let chunk = ChunkHeader::decode(&mut c).ok_or_else(|| bad("short request frame"))?;
        res.start();
        for _ in 0..chunk.count {
            let (TaskHeader { id, attempt, .. }, body) =
                TaskHeader::decode(&mut c).ok_or_else(|| bad("truncated request frame"))?;
            let fault = faults.decide(id, attempt);
            if let Some(action) = fault.filter(|&a| a != Action::Panic) {
                res.flush_flags(output, true, true, max)?;
                fault::perform(action, output);
            }
            run_one(worker, id, body, fault == Some(Action::Panic), &mut res, output, max)?;
            if chunk.flush_each {
                res.flush(output, true, max)?;
            }
        }
        if !chunk.flush_each {
            res.flush(output, false, max)?;
        }
        if !c.is_empty() {
            return Err(bad("trailing bytes in a request frame"));
        }
    }
    Ok(())
}

/// A worker process's whole conversation: report start-up, then serve. Returns the exit
/// status: 0 when the parent closed the stream (EOF, or a broken pipe because it is gone or
/// stopped this worker), 2 when start-up failed, 3 on a corrupt request stream.
pub(crate) fn session<W: Worker>(
    worker: Result<&mut W, String>,
    input: &mut (impl Read + ?Sized),
    output: &mut (impl Write + ?Sized),
    max: usize,
    faults: &FaultSpec,
) -> i32 {
    let code = |e: io::Error, other: i32| if e.kind() == io::ErrorKind::BrokenPipe { 0 } else { other };
    match worker {
        Err(m) => {
            let _ = send_ready(output, &Err(m), max);
            2
        }
        Ok(w) => match send_ready(output, &Ok(()), max) {
            Err(e) => code(e, 2),
            Ok(()) => match serve(w, input, output, max, faults) {
                Ok(()) => 0,
                Err(e) => code(e, 3),
            },
        },
    }
}
