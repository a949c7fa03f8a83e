//! The pool's one error type: opaque, with predicates.

use std::fmt;
use std::time::Duration;

/// Identifies a task within one pool: the order in which it was submitted, from 0.
pub type TaskId = u64;

/// An error from the pool: building it, submitting to it, or one task's result.
///
/// The type is opaque on purpose; ask it questions with the `is_*` predicates and
/// [`Error::task`] rather than matching on its shape. `Display` gives one lowercase line.
pub struct Error {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("task {task} timed out after {after:?}; its worker was killed and replaced")]
    Timeout { task: TaskId, after: Duration },
    #[error("task {task} failed: its worker died on each of {attempts} attempts (last: {cause})")]
    WorkerLost { task: TaskId, attempts: u32, cause: String, frame: bool },
    #[error("task {task} panicked: {message}")]
    Panic { task: TaskId, message: String },
    #[error("task {task} could not be encoded or decoded: {message}")]
    Codec { task: TaskId, message: String },
    #[error("refusing to fork: the process has {threads} threads (fork only while single-threaded)")]
    NotSingleThreaded { threads: usize },
    #[error("worker start-up failed: {0}")]
    Startup(String),
    #[error("invalid BTOPT_FAULT_INJECT: {0}")]
    FaultSpec(String),
    #[error("invalid BTOPT_POOL_CHUNK: {0}")]
    ChunkSpec(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error { kind }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::new(Kind::Io { context: context.into(), source })
    }

    /// The task exceeded the per-task timeout; its worker was killed and replaced.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// The task's worker died (abort, signal, OOM, exit, corrupt frame) on every allowed attempt.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self.kind, Kind::WorkerLost { .. })
    }

    /// The task panicked inside the worker; [`Error::panic_message`] has the message.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panic { .. })
    }

    /// A frame was oversized or corrupt (on the last attempt, for a lost worker).
    pub fn is_frame(&self) -> bool {
        matches!(self.kind, Kind::WorkerLost { frame: true, .. } | Kind::Codec { .. })
    }

    /// A fork backend was asked to fork from a multi-threaded process.
    pub fn is_not_single_threaded(&self) -> bool {
        matches!(self.kind, Kind::NotSingleThreaded { .. })
    }

    /// Workers could not be started (spawn failure, init error, zygote gone).
    pub fn is_startup(&self) -> bool {
        matches!(self.kind, Kind::Startup(_))
    }

    /// The task this error belongs to, if it is a per-task error.
    pub fn task(&self) -> Option<TaskId> {
        match &self.kind {
            Kind::Timeout { task, .. }
            | Kind::WorkerLost { task, .. }
            | Kind::Panic { task, .. }
            | Kind::Codec { task, .. } => Some(*task),
            _ => None,
        }
    }

    /// The panic message, for a panicked task.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// How many times the task was attempted before it was given up, for a lost worker.
    pub fn attempts(&self) -> Option<u32> {
        match &self.kind {
            Kind::WorkerLost { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
