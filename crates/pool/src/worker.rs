//! What a worker is, and the loop every process worker runs (fork and spawn alike).

use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TaskId;
use crate::fault::{self, Action, FaultSpec};
use crate::frame::{ResultHeader, Tag, TaskHeader, read_frame, write_frame};

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

/// Builds a request frame payload: a [`TaskHeader`] (attempt 0, patched on retry), then the
/// postcard task.
pub(crate) fn encode_request(id: TaskId, task: &impl Serialize) -> Result<Vec<u8>, postcard::Error> {
    let mut buf = Vec::with_capacity(64);
    TaskHeader { id, attempt: 0 }.encode(&mut buf);
    postcard::to_io(task, &mut buf)?;
    Ok(buf)
}

/// Rewrites the header of a request built by [`encode_request`] for another attempt.
pub(crate) fn set_attempt(frame: &mut [u8], id: TaskId, attempt: u32) {
    frame[..TaskHeader::LEN].copy_from_slice(&TaskHeader { id, attempt }.to_bytes());
}

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

/// Serves tasks until the parent closes the task stream (EOF), which is how every worker
/// learns that the pool, or the parent process, is gone.
pub(crate) fn serve<W: Worker>(
    worker: &mut W,
    input: &mut (impl Read + ?Sized),
    output: &mut (impl Write + ?Sized),
    max: usize,
    faults: &FaultSpec,
) -> io::Result<()> {
    while let Some(req) = read_frame(input, max)? {
        let Some((TaskHeader { id, attempt }, body)) = TaskHeader::decode(&req) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short request frame"));
        };
        let fault = faults.decide(id, attempt);
        if let Some(action) = fault {
            fault::perform(action, output);
        }
        let mut resp;
        let head = |tag| {
            let mut h = Vec::with_capacity(64);
            ResultHeader { id, tag }.encode(&mut h);
            h
        };
        match postcard::from_bytes::<W::Task>(body) {
            Err(e) => {
                resp = head(Tag::Codec);
                resp.extend_from_slice(format!("worker could not decode the task: {e}").as_bytes());
            }
            Ok(task) => {
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    if fault == Some(Action::Panic) {
                        panic!("injected panic (BTOPT_FAULT_INJECT) on task {id}");
                    }
                    worker.run(task)
                }));
                match ran {
                    Ok(out) => {
                        resp = head(Tag::Ok);
                        if let Err(e) = postcard::to_io(&out, &mut resp) {
                            resp = head(Tag::Codec);
                            resp.extend_from_slice(format!("worker could not encode the output: {e}").as_bytes());
                        }
                    }
                    Err(p) => {
                        resp = head(Tag::Panic);
                        resp.extend_from_slice(panic_message(&*p).as_bytes());
                    }
                }
            }
        }
        if resp.len() > max {
            let n = resp.len();
            resp = head(Tag::Codec);
            resp.extend_from_slice(format!("output frame of {n} bytes exceeds the maximum of {max}").as_bytes());
        }
        write_frame(output, &resp, max)?;
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
