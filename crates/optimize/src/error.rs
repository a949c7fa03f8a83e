//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while building a space, searching or storing trials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter definition is invalid; `param` names it.
    #[error("parameter `{param}`: {problem}")]
    InvalidParameter {
        /// The offending parameter.
        param: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The space as a whole is invalid (duplicate names, bad constraint, ...).
    #[error("invalid space: {0}")]
    InvalidSpace(String),
    /// A space file could not be read or parsed.
    #[error("space file {path}: {message}")]
    SpaceFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A config does not belong to the space.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Searcher or optimizer settings are invalid.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    /// The evaluator (the glue over the worker pool) failed.
    #[error("evaluator failed: {0}")]
    Evaluator(String),
    /// The trial store failed.
    #[error("trial store: {0}")]
    Store(String),
    /// The store holds a different study than the one being resumed.
    #[error("the store holds a different study ({0}); use a new store file or the original settings")]
    StudyMismatch(String),
    /// The searcher stopped making progress (a bug, reported instead of hanging).
    #[error("search stalled: {0}")]
    Stalled(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
