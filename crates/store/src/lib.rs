//! store: where studies live. The durable implementations of optimize's
//! [`optimize::TrialStore`]: an SQLite file for one machine ([`SqliteStore`]) and PostgreSQL
//! for studies that many machines work on ([`PgStore`], with its work queue [`Queue`]).
//!
//! What it is not: it knows nothing about bundles, backtests or pools. A study's worker task
//! is opaque JSON here ([`StudyTask`]); `btopt` writes and reads it.
//!
//! **Architecture invariant:** optimize knows only the `TrialStore` trait; only this crate
//! opens a study database.
//!
//! Main entry points: [`Location::parse`] for `--store` (`FILE`, `sqlite:FILE`,
//! `postgresql://USER@HOST:PORT/DB`), [`open`], [`list_studies`], [`redact`] (every URL this
//! crate prints goes through it: passwords never appear in errors, logs or reports), and,
//! behind the `testing` feature, a throwaway PostgreSQL server for tests ([`testing`]).
//!
//! ```no_run
//! # fn main() -> Result<(), store::Error> {
//! let mut opened = store::open("postgresql://btopt@127.0.0.1:5432/studies", Some("ma-sweep"), None)?;
//! let trial_store: &mut dyn optimize::TrialStore = opened.trial_store();
//! # let _ = trial_store; Ok(()) }
//! ```

mod error;
mod location;
mod pg;
mod redact;
mod row;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use location::{Location, PgTarget};
pub use pg::{
    CONNECT_BOUND, Claimed, DEFAULT_MAX_ATTEMPTS, DEFAULT_VACUUM_EVERY, PgStore, Queue, RECONNECT_BOUND, StudyInfo,
    StudyTask, TrialState, list_studies, server_version,
};
pub use redact::redact;
pub use row::hostname;
pub use sqlite::{COMMIT_AFTER, SqliteStore};

/// An opened durable store.
#[derive(Debug)]
pub enum Opened {
    /// An SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL study.
    Postgres {
        /// The study's store.
        store: Box<PgStore>,
        /// Its server, for queue connections.
        target: Box<PgTarget>,
    },
}

impl Opened {
    /// The store as the optimizer sees it.
    pub fn trial_store(&mut self) -> &mut dyn optimize::TrialStore {
        match self {
            Opened::Sqlite(s) => s,
            Opened::Postgres { store, .. } => &mut **store,
        }
    }
}

/// Every study at `location`: the studies of a PostgreSQL database, or the one study of an
/// SQLite file (read without taking its lock; `state` is `running` while a process holds it,
/// else `stopped`).
pub fn list(location: &str) -> Result<Vec<StudyInfo>> {
    match Location::parse(location)? {
        Location::Sqlite(path) => SqliteStore::list(&path),
        Location::Postgres(target) => list_studies(&target),
    }
}

/// Opens the store that `--store` names. `study` names a PostgreSQL study (an SQLite file
/// holds one study, so `study` is refused there); `task` is what workers of a new PostgreSQL
/// study need.
pub fn open(location: &str, study: Option<&str>, task: Option<StudyTask>) -> Result<Opened> {
    match Location::parse(location)? {
        Location::Sqlite(path) => {
            if study.is_some() {
                return Err(Error::InvalidLocation(format!(
                    "{}: --study needs a postgresql:// store (an SQLite file holds one study)",
                    path.display()
                )));
            }
            Ok(Opened::Sqlite(SqliteStore::open(&path)?))
        }
        Location::Postgres(target) => {
            Ok(Opened::Postgres { store: Box::new(PgStore::connect(&target, study, task)?), target })
        }
    }
}
