//! The bundle crate's one error type, carrying where the problem is.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or validating a bundle.
///
/// Every variant renders as one line that says what is wrong and where: a file and line, or a
/// database file, table and row. Callers add no context of their own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A problem at a line of a text input file (1-based line numbers).
    #[error("{}:{line}: {msg}", path.display())]
    AtLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A problem with a file or directory as a whole.
    #[error("{}: {msg}", path.display())]
    AtPath {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A problem at a row of a table in one of the bundle's SQLite files.
    #[error("{}: table {table}, {row}: {msg}", path.display())]
    AtRow {
        /// The SQLite file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// Which row, in words (for example `sid 3, session 2021-05-04`).
        row: String,
        /// What is wrong.
        msg: String,
    },
    /// An I/O error on a path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A SQLite error on a database file.
    #[error("{}: {}", path.display(), sqlite_message(source))]
    Sqlite {
        /// The SQLite file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// An invalid argument or request that is not tied to a file.
    #[error("{0}")]
    Invalid(String),
}

fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::NotADatabase => {
            "not a SQLite database (foreign or corrupt file)".to_owned()
        }
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::DatabaseCorrupt => {
            "SQLite database is corrupt or truncated".to_owned()
        }
        other => other.to_string(),
    }
}

impl Error {
    pub(crate) fn at_line(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::AtLine { path: path.into(), line, msg: msg.into() }
    }
    pub(crate) fn at_path(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::AtPath { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn at_row(
        path: impl Into<PathBuf>,
        table: &'static str,
        row: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::AtRow { path: path.into(), table, row: row.into(), msg: msg.into() }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite { path: path.into(), source }
    }
}
