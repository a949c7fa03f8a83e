//! The thread backend: in-process workers, no IPC. The zero-overhead reference that the
//! process backends are measured against. State is shared however the factory shares it
//! (typically an `Arc` of the loaded bundle in each worker value).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::TaskId;
use crate::error::{Error, Kind};
use crate::worker::Worker;

type Done<W> = (TaskId, Result<<W as Worker>::Output, Error>);

pub(crate) struct ThreadPool<W: Worker> {
    tx: Option<Sender<(TaskId, W::Task)>>,
    rx: Receiver<Done<W>>,
    handles: Vec<JoinHandle<()>>,
    pub(crate) outstanding: usize,
}

impl<W: Worker> ThreadPool<W> {
    pub(crate) fn start<F>(n: usize, make: F) -> Result<ThreadPool<W>, Error>
    where
        W: Send,
        F: Fn() -> W + Send + Sync + 'static,
    {
        let (tx, task_rx) = mpsc::channel::<(TaskId, W::Task)>();
        let (done_tx, rx) = mpsc::channel::<Done<W>>();
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
                        let Ok(Ok((id, task))) = next else { return };
                        let out = catch_unwind(AssertUnwindSafe(|| w.run(task))).map_err(|p| {
                            let message = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "non-string panic payload".into());
                            Error::new(Kind::Panic { task: id, message })
                        });
                        if done_tx.send((id, out)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("failed to start a worker thread", e))?;
            handles.push(h);
        }
        Ok(ThreadPool { tx: Some(tx), rx, handles, outstanding: 0 })
    }

    pub(crate) fn submit(&mut self, id: TaskId, task: W::Task) {
        self.outstanding += 1;
        if let Some(tx) = &self.tx {
            // Workers only stop when `tx` is dropped, so this cannot fail while we hold it.
            let _ = tx.send((id, task));
        }
    }

    pub(crate) fn next(&mut self) -> Option<Done<W>> {
        if self.outstanding == 0 {
            return None;
        }
        let d = self.rx.recv().ok()?;
        self.outstanding -= 1;
        Some(d)
    }

    /// Stops handing out tasks and joins the threads once they finish their current task.
    pub(crate) fn shutdown(&mut self) {
        self.tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl<W: Worker> Drop for ThreadPool<W> {
    fn drop(&mut self) {
        // Threads cannot be killed: stop feeding them and let them go (a hung one stays).
        self.tx = None;
    }
}
