//! The crate's one error type.

/// Everything that can go wrong while opening or using a study store. Messages never hold a
/// password: every URL in them is redacted first (see [`crate::redact`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--store` does not name a store this crate can open.
    #[error("invalid store {0}")]
    InvalidLocation(String),
    /// Another process holds the study (`holder` reads "pid N on HOST").
    #[error("study {study} is in use by {holder}")]
    InUse {
        /// The study.
        study: String,
        /// Who holds it.
        holder: String,
    },
    /// An SQLite store failed.
    #[error("{path}: {message}")]
    Sqlite {
        /// The store file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A PostgreSQL store failed (`what` names the operation).
    #[error("{url}: failed to {what}: {message}")]
    Postgres {
        /// The server, redacted.
        url: String,
        /// What was being done.
        what: String,
        /// The server's or client's message.
        message: String,
    },
    /// The server stayed unreachable for longer than the reconnect bound.
    #[error("{url}: the database has been unreachable for {secs} s: {message}")]
    Unreachable {
        /// The server, redacted.
        url: String,
        /// The bound that was exceeded.
        secs: u64,
        /// The last connection error.
        message: String,
    },
    /// The stored data is not what this version writes, or the study is not usable.
    #[error("{0}")]
    Study(String),
}

impl Error {
    /// Whether this is [`Error::InUse`].
    pub fn is_in_use(&self) -> bool {
        matches!(self, Error::InUse { .. })
    }
}

impl From<Error> for optimize::Error {
    fn from(e: Error) -> Self {
        optimize::Error::Store(e.to_string())
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
