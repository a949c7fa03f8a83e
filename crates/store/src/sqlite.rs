//! The single-machine store: one study in an SQLite file, held by one process at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use optimize::{Completion, Trial, TrialRecord, TrialStore, config_json_text, identity_hash, study_mismatch};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::pg::StudyInfo;
use crate::row::{OutcomeColumns, RawTrial, columns, holder_name};

/// An SQLite file in WAL mode with `synchronous = NORMAL`: a committed trial survives a
/// SIGKILL of the process. Writes are grouped: one transaction stays open across the
/// optimizer's calls and commits at the end of the first call [`COMMIT_AFTER`] after it began,
/// on [`TrialStore::flush`] (the optimizer calls it when it has waited
/// [`optimize::FLUSH_WHEN_IDLE`] for a result, so nothing finished sits uncommitted through a
/// long wait) and on drop: a fast search costs a commit per 50 ms, not three per trial. Each call's writes land whole, so what a SIGKILL
/// leaves is a prefix of the event log, which resume replays exactly; at most the results
/// taken in since the optimizer last waited are lost, and resume evaluates those again.
///
/// A trial suggested in the open transaction is held as a row in memory until the commit, and
/// its completion and feed land in that row: a trial that begins and ends within one
/// transaction (nearly every trial of a fast search) costs one INSERT, not an INSERT and
/// UPDATEs. Nothing is visible before the commit either way, so what survives a SIGKILL is
/// the same.
///
/// Tables `study` (one row: identity JSON and its hash) and `trials`
/// (id, config JSON, budget, bracket, stage, status, loss, metrics JSON, message, duration,
/// worker, suggest_seq, feed_seq, reused_from). Status is `running` until the trial completes.
///
/// One process per file: opening takes an exclusive OS lock on the sidecar file `FILE.lock`
/// (`flock` on unix) for as long as the store lives, and writes "pid N on HOST" into it, so a
/// second process gets [`Error::InUse`] naming the holder. The OS drops the lock when the
/// process dies, SIGKILL included, so a killed run never leaves a stale lock behind.
///
/// Open it after the pool has forked its workers, or make sure the children never touch it:
/// an SQLite connection must not be used or closed across fork (design notes, "SQLite across
/// fork"); forked workers that end with `_exit` are fine.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    _lock: File,
    /// When the open write transaction began, if one is open.
    tx: Option<Instant>,
    /// Trials suggested in the open transaction, not yet inserted (see the type's docs).
    unwritten: BTreeMap<u64, Row>,
}

/// A trial's row as it will be inserted.
#[derive(Debug)]
struct Row {
    config: String,
    budget: f64,
    bracket: Option<u32>,
    stage: Option<u32>,
    suggest_seq: u64,
    outcome: Option<Finished>,
    feed_seq: Option<u64>,
}

/// The completion columns of a row.
#[derive(Debug)]
struct Finished {
    columns: OutcomeColumns,
    duration: f64,
    worker: Option<u32>,
    reused_from: Option<u64>,
}

/// How long the store's grouped write transaction stays open at most (while calls come).
pub const COMMIT_AFTER: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS study (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    identity TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    config TEXT NOT NULL,
    budget REAL NOT NULL,
    bracket INTEGER,
    stage INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    loss REAL,
    metrics TEXT,
    message TEXT,
    duration REAL,
    worker INTEGER,
    suggest_seq INTEGER NOT NULL,
    feed_seq INTEGER,
    reused_from INTEGER
);
";

/// The lock file next to `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the process-lifetime lock on `path`'s study, or names whoever holds it.
fn lock(path: &Path) -> Result<File> {
    let lp = lock_path(path);
    let err = |e: std::io::Error| Error::Sqlite { path: lp.display().to_string(), message: e.to_string() };
    let mut f =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lp).map_err(err)?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0).map_err(err)?;
            f.rewind().map_err(err)?;
            f.write_all(holder_name().as_bytes()).map_err(err)?;
            f.flush().map_err(err)?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(Error::InUse {
                study: path.display().to_string(),
                holder: if holder.is_empty() { "another process".to_string() } else { holder.to_string() },
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

impl SqliteStore {
    /// Open or create the store file, taking its lock (see the type's docs).
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let lock = lock(path)?;
        let e = |e: rusqlite::Error| Error::Sqlite { path: path.display().to_string(), message: e.to_string() };
        let conn = Connection::open(path).map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(e)?;
        conn.execute_batch(SCHEMA).map_err(e)?;
        Ok(SqliteStore { conn, path: path.to_path_buf(), _lock: lock, tx: None, unwritten: BTreeMap::new() })
    }

    /// The file's study as `study list` shows it (none if the file holds none yet). Reads
    /// without taking the study's lock: `state` is `running` while a process holds it, else
    /// `stopped`; `queued` is always 0 and `running` counts trials without an outcome.
    pub fn list(path: &Path) -> Result<Vec<StudyInfo>> {
        let e = |e: rusqlite::Error| Error::Sqlite { path: path.display().to_string(), message: e.to_string() };
        if !path.exists() {
            return Err(Error::Sqlite { path: path.display().to_string(), message: "no such store file".into() });
        }
        let held = match std::fs::OpenOptions::new().read(true).write(true).open(lock_path(path)) {
            Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(e)?;
        let has_tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('study', 'trials')", [], |r| r.get(0))
            .map_err(e)?;
        if has_tables < 2 {
            return Ok(Vec::new());
        }
        let Some(hash) = conn
            .query_row("SELECT hash FROM study WHERE id = 1", [], |r| r.get::<_, String>(0))
            .optional()
            .map_err(e)?
        else {
            return Ok(Vec::new());
        };
        let (all, done): (i64, i64) = conn
            .query_row("SELECT count(*), count(*) FILTER (WHERE status <> 'running') FROM trials", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(e)?;
        let best_loss: Option<f64> = conn
            .query_row(
                "SELECT loss FROM trials WHERE loss IS NOT NULL ORDER BY budget DESC, loss ASC, trial_id ASC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        Ok(vec![StudyInfo {
            name: hash,
            state: if held { "running" } else { "stopped" }.to_string(),
            queued: 0,
            running: (all - done) as u64,
            done: done as u64,
            best_loss,
            bundle_hash: None,
            task: None,
            holder: None,
        }])
    }

    fn err(&self, e: rusqlite::Error) -> optimize::Error {
        Error::Sqlite { path: self.path.display().to_string(), message: e.to_string() }.into()
    }

    /// Streams the stored trials to `visit` in id order.
    fn load(&self, visit: &mut dyn FnMut(TrialRecord) -> optimize::Result<()>) -> optimize::Result<()> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT trial_id, config, budget, bracket, stage, status, loss, metrics, message,
                    duration, worker, suggest_seq, feed_seq, reused_from FROM trials ORDER BY trial_id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let raw = (|| {
                Ok::<_, rusqlite::Error>(RawTrial {
                    id: r.get(0)?,
                    config_json: r.get(1)?,
                    budget: r.get(2)?,
                    bracket: r.get(3)?,
                    stage: r.get(4)?,
                    status: r.get(5)?,
                    loss: r.get(6)?,
                    metrics: r.get(7)?,
                    message: r.get(8)?,
                    duration: r.get(9)?,
                    worker: r.get(10)?,
                    suggest_seq: r.get(11)?,
                    feed_seq: r.get(12)?,
                    reused_from: r.get(13)?,
                })
            })()
            .map_err(|e| self.err(e))?;
            visit(raw.into_record().map_err(optimize::Error::Store)?)?;
        }
        Ok(())
    }

    /// Opens the grouped write transaction unless one is open.
    fn begin(&mut self) -> optimize::Result<()> {
        if self.tx.is_none() {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.err(e))?;
            self.tx = Some(Instant::now());
        }
        Ok(())
    }

    /// Ends a call: commits when the transaction has been open for [`COMMIT_AFTER`].
    fn end(&mut self) -> optimize::Result<()> {
        if self.tx.is_some_and(|t| t.elapsed() >= COMMIT_AFTER) {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> optimize::Result<()> {
        if self.tx.is_some() {
            if let Err(e) = self.write_unwritten() {
                // Nothing of a failed transaction may land, not even on drop.
                self.tx = None;
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            self.tx = None;
            self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Inserts the rows held for the open transaction.
    fn write_unwritten(&mut self) -> optimize::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.unwritten);
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO trials (trial_id, config, budget, bracket, stage, status, loss, metrics, message,
                    duration, worker, suggest_seq, feed_seq, reused_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(|e| self.err(e))?;
        for (id, r) in rows {
            let f = r.outcome.as_ref();
            stmt.execute(params![
                id as i64,
                r.config,
                r.budget,
                r.bracket.map(i64::from),
                r.stage.map(i64::from),
                f.map_or("running", |f| f.columns.status),
                f.and_then(|f| f.columns.loss),
                f.and_then(|f| f.columns.metrics.as_deref()),
                f.and_then(|f| f.columns.message.as_deref()),
                f.map(|f| f.duration),
                f.and_then(|f| f.worker.map(i64::from)),
                r.suggest_seq as i64,
                r.feed_seq.map(|s| s as i64),
                f.and_then(|f| f.reused_from.map(|r| r as i64)),
            ])
            .map_err(|e| Error::Sqlite { path: self.path.display().to_string(), message: e.to_string() })?;
        }
        Ok(())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let _ = self.commit();
    }
}

impl TrialStore for SqliteStore {
    fn open_study(
        &mut self,
        identity: &serde_json::Value,
        visit: &mut dyn FnMut(TrialRecord) -> optimize::Result<()>,
    ) -> optimize::Result<()> {
        self.commit()?;
        let stored: Option<String> = self
            .conn
            .query_row("SELECT identity FROM study WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        match stored {
            Some(text) => {
                // Compare the canonical text, not re-parsed floats (budgets like 1/81).
                if text != *identity.to_string() {
                    let old: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| optimize::Error::Store(format!("study identity: {e}")))?;
                    return Err(study_mismatch(&old, identity));
                }
            }
            None => {
                self.conn
                    .execute(
                        "INSERT INTO study (id, identity, hash) VALUES (1, ?1, ?2)",
                        params![identity.to_string(), identity_hash(identity)],
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        self.load(visit)
    }

    fn record_suggested(&mut self, trials: &[(Trial, u64)]) -> optimize::Result<()> {
        self.begin()?;
        for (t, seq) in trials {
            let row = Row {
                config: config_json_text(&t.config),
                budget: t.budget,
                bracket: t.bracket,
                stage: t.stage,
                suggest_seq: *seq,
                outcome: None,
                feed_seq: None,
            };
            if self.unwritten.insert(t.id, row).is_some() {
                return Err(optimize::Error::Store(format!("trial {} suggested twice", t.id)));
            }
        }
        self.end()
    }

    fn record_completed(
        &mut self,
        c: &Completion,
        reused_from: Option<u64>,
        feed_seq: Option<u64>,
    ) -> optimize::Result<()> {
        let cols = columns(&c.outcome);
        self.begin()?;
        if let Some(row) = self.unwritten.get_mut(&c.trial_id) {
            row.outcome = Some(Finished { columns: cols, duration: c.duration_secs, worker: c.worker, reused_from });
            row.feed_seq = feed_seq;
            return self.end();
        }
        let n = self
            .conn
            .prepare_cached(
                "UPDATE trials SET status = ?2, loss = ?3, metrics = ?4, message = ?5, duration = ?6,
                    worker = ?7, feed_seq = ?8, reused_from = ?9 WHERE trial_id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    c.trial_id as i64,
                    cols.status,
                    cols.loss,
                    cols.metrics,
                    cols.message,
                    c.duration_secs,
                    c.worker.map(i64::from),
                    feed_seq.map(|s| s as i64),
                    reused_from.map(|r| r as i64)
                ])
            })
            .map_err(|e| self.err(e))?;
        if n != 1 {
            return Err(optimize::Error::Store(format!("completion for unknown trial {}", c.trial_id)));
        }
        self.end()
    }

    fn record_fed(&mut self, fed: &[(u64, u64)]) -> optimize::Result<()> {
        self.begin()?;
        {
            let mut stmt = self
                .conn
                .prepare_cached("UPDATE trials SET feed_seq = ?2 WHERE trial_id = ?1")
                .map_err(|e| optimize::Error::Store(e.to_string()))?;
            for (id, seq) in fed {
                if let Some(row) = self.unwritten.get_mut(id) {
                    row.feed_seq = Some(*seq);
                    continue;
                }
                stmt.execute(params![*id as i64, *seq as i64]).map_err(|e| optimize::Error::Store(e.to_string()))?;
            }
        }
        self.end()
    }

    fn flush(&mut self) -> optimize::Result<()> {
        self.commit()
    }
}
