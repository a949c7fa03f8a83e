//! Durable trial stores: the [`TrialStore`] interface, an in-memory store and an SQLite (WAL)
//! store. A PostgreSQL backend can implement the same trait later.
//!
//! What is stored is an event log as much as a table: each trial records the sequence number
//! of its suggestion and of the moment its outcome was fed to the searcher. Replaying those
//! events in order rebuilds the searcher exactly (see `optimizer`).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::evaluator::{Completion, Outcome, TrialStatus};
use crate::searcher::Trial;
use crate::value::{Config, config_from_json, config_to_json};

/// One stored trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    /// Trial id.
    pub trial_id: u64,
    /// The config, as plain JSON text exactly as written (compared verbatim on replay).
    pub config_json: String,
    /// The parsed config.
    pub config: Config,
    /// Budget.
    pub budget: f64,
    /// Bracket, if any.
    pub bracket: Option<u32>,
    /// Stage, if any.
    pub stage: Option<u32>,
    /// Sequence number of the suggestion event.
    pub suggest_seq: u64,
    /// The completion, if the trial finished.
    pub completion: Option<Completion>,
    /// Sequence number of the event that fed the outcome to the searcher.
    pub feed_seq: Option<u64>,
    /// The trial whose outcome this one reused, if any.
    pub reused_from: Option<u64>,
}

/// Where a study's trials live.
pub trait TrialStore {
    /// Create the study, or check that the stored one has the same identity (else
    /// [`Error::StudyMismatch`]); returns the stored trials in id order.
    fn open_study(&mut self, identity: &serde_json::Value) -> Result<Vec<TrialRecord>>;
    /// Record suggested trials with their suggestion sequence numbers, atomically.
    fn record_suggested(&mut self, trials: &[(Trial, u64)]) -> Result<()>;
    /// Record a completion (answered from trial `reused_from`, if set); `feed_seq` when it is
    /// fed to the searcher at once.
    fn record_completed(
        &mut self,
        completion: &Completion,
        reused_from: Option<u64>,
        feed_seq: Option<u64>,
    ) -> Result<()>;
    /// Record that these `(trial_id, feed_seq)` outcomes were fed, atomically.
    fn record_fed(&mut self, fed: &[(u64, u64)]) -> Result<()>;
}

/// FNV-1a 64 of the canonical identity JSON, shown to users as the study id.
pub fn identity_hash(identity: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.to_string().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn describe_mismatch(stored: &serde_json::Value, wanted: &serde_json::Value) -> String {
    let mut diffs = Vec::new();
    if let (Some(a), Some(b)) = (stored.as_object(), wanted.as_object()) {
        for (k, v) in b {
            let old = a.get(k);
            if old != Some(v) {
                match (old.and_then(|o| o.as_object()), v.as_object()) {
                    (Some(oa), Some(ob)) => {
                        for (kk, vv) in ob {
                            if oa.get(kk) != Some(vv) {
                                diffs.push(format!(
                                    "{k}.{kk}: stored {}, requested {vv}",
                                    oa.get(kk).map_or("nothing".to_owned(), |x| x.to_string())
                                ));
                            }
                        }
                    }
                    _ => diffs.push(format!("{k} differs")),
                }
            }
        }
    }
    if diffs.is_empty() {
        diffs.push("settings differ".into());
    }
    format!("study {} vs requested {}: {}", identity_hash(stored), identity_hash(wanted), diffs.join("; "))
}

/// A store that lives and dies with the process (the default without `--store`).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    identity: Option<serde_json::Value>,
    trials: BTreeMap<u64, TrialRecord>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl TrialStore for MemoryStore {
    fn open_study(&mut self, identity: &serde_json::Value) -> Result<Vec<TrialRecord>> {
        match &self.identity {
            Some(old) if old != identity => return Err(Error::StudyMismatch(describe_mismatch(old, identity))),
            Some(_) => {}
            None => self.identity = Some(identity.clone()),
        }
        // The JSON text is rendered here, on the rare replay, not once per trial as it runs.
        Ok(self
            .trials
            .values()
            .map(|r| TrialRecord { config_json: config_to_json(&r.config).to_string(), ..r.clone() })
            .collect())
    }

    fn record_suggested(&mut self, trials: &[(Trial, u64)]) -> Result<()> {
        for (t, seq) in trials {
            self.trials.insert(
                t.id,
                TrialRecord {
                    trial_id: t.id,
                    config_json: String::new(),
                    config: t.config.clone(),
                    budget: t.budget,
                    bracket: t.bracket,
                    stage: t.stage,
                    suggest_seq: *seq,
                    completion: None,
                    feed_seq: None,
                    reused_from: None,
                },
            );
        }
        Ok(())
    }

    fn record_completed(
        &mut self,
        completion: &Completion,
        reused_from: Option<u64>,
        feed_seq: Option<u64>,
    ) -> Result<()> {
        let r = self
            .trials
            .get_mut(&completion.trial_id)
            .ok_or_else(|| Error::Store(format!("unknown trial {}", completion.trial_id)))?;
        r.completion = Some(completion.clone());
        r.feed_seq = feed_seq;
        r.reused_from = reused_from;
        Ok(())
    }

    fn record_fed(&mut self, fed: &[(u64, u64)]) -> Result<()> {
        for (id, seq) in fed {
            if let Some(r) = self.trials.get_mut(id) {
                r.feed_seq = Some(*seq);
            }
        }
        Ok(())
    }
}

/// An SQLite file in WAL mode with `synchronous = NORMAL`: a committed trial survives a
/// SIGKILL of the process. Tables `study` (one row: identity JSON and its hash) and `trials`
/// (id, config JSON, budget, bracket, stage, status, loss, metrics JSON, message, duration,
/// worker, suggest_seq, feed_seq, reused_from). Status is `running` until the trial completes.
///
/// One optimizer process per file. Open it after the pool has forked its workers, or make
/// sure the children never touch it: an SQLite connection must not be used or closed across
/// fork (design notes, "SQLite across fork"); forked workers that end with `_exit` are fine.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

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

impl SqliteStore {
    /// Open or create the store file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn })
    }

    fn load(&self) -> Result<Vec<TrialRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT trial_id, config, budget, bracket, stage, status, loss, metrics, message,
                    duration, worker, suggest_seq, feed_seq, reused_from FROM trials ORDER BY trial_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<f64>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<f64>>(9)?,
                r.get::<_, Option<i64>>(10)?,
                r.get::<_, i64>(11)?,
                r.get::<_, Option<i64>>(12)?,
                r.get::<_, Option<i64>>(13)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                config_json,
                budget,
                bracket,
                stage,
                status,
                loss,
                metrics,
                message,
                duration,
                worker,
                sseq,
                fseq,
                reused,
            ) = row?;
            let config = config_from_json(
                &serde_json::from_str(&config_json).map_err(|e| Error::Store(format!("trial {id}: {e}")))?,
            )?;
            let outcome = match status.as_str() {
                "running" => None,
                "ok" => Some(Outcome::Ok {
                    loss: loss.ok_or_else(|| Error::Store(format!("trial {id}: ok without loss")))?,
                    metrics: match metrics {
                        Some(m) => serde_json::from_str(&m).map_err(|e| Error::Store(format!("trial {id}: {e}")))?,
                        None => BTreeMap::new(),
                    },
                }),
                "nonfinite" => Some(Outcome::Ok { loss: f64::NAN, metrics: BTreeMap::new() }),
                "crashed" => Some(Outcome::Crashed { message: message.unwrap_or_default() }),
                other => return Err(Error::Store(format!("trial {id}: unknown status `{other}`"))),
            };
            out.push(TrialRecord {
                trial_id: id as u64,
                config_json,
                config,
                budget,
                bracket: bracket.map(|b| b as u32),
                stage: stage.map(|s| s as u32),
                suggest_seq: sseq as u64,
                completion: outcome.map(|outcome| Completion {
                    trial_id: id as u64,
                    outcome,
                    duration_secs: duration.unwrap_or(0.0),
                    worker: worker.map(|w| w as u32),
                }),
                feed_seq: fseq.map(|s| s as u64),
                reused_from: reused.map(|r| r as u64),
            });
        }
        Ok(out)
    }
}

impl TrialStore for SqliteStore {
    fn open_study(&mut self, identity: &serde_json::Value) -> Result<Vec<TrialRecord>> {
        let stored: Option<String> =
            self.conn.query_row("SELECT identity FROM study WHERE id = 1", [], |r| r.get(0)).optional()?;
        match stored {
            Some(text) => {
                // Compare the canonical text, not re-parsed floats (budgets like 1/81).
                let wanted = identity.to_string();
                if text != wanted {
                    let old: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| Error::Store(format!("study identity: {e}")))?;
                    return Err(Error::StudyMismatch(describe_mismatch(&old, identity)));
                }
            }
            None => {
                self.conn.execute(
                    "INSERT INTO study (id, identity, hash) VALUES (1, ?1, ?2)",
                    params![identity.to_string(), identity_hash(identity)],
                )?;
            }
        }
        self.load()
    }

    fn record_suggested(&mut self, trials: &[(Trial, u64)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO trials (trial_id, config, budget, bracket, stage, suggest_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (t, seq) in trials {
                stmt.execute(params![
                    t.id as i64,
                    config_to_json(&t.config).to_string(),
                    t.budget,
                    t.bracket.map(i64::from),
                    t.stage.map(i64::from),
                    *seq as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn record_completed(&mut self, c: &Completion, reused_from: Option<u64>, feed_seq: Option<u64>) -> Result<()> {
        let (loss, metrics, message) = match &c.outcome {
            Outcome::Ok { loss, metrics } => (
                loss.is_finite().then_some(*loss),
                {
                    // JSON has no NaN/inf: keep finite metrics only.
                    let finite: BTreeMap<&String, &f64> = metrics.iter().filter(|(_, v)| v.is_finite()).collect();
                    Some(serde_json::to_string(&finite).map_err(|e| Error::Store(e.to_string()))?)
                },
                None,
            ),
            Outcome::Crashed { message } => (None, None, Some(message.clone())),
        };
        let status: TrialStatus = c.outcome.status();
        let n = self.conn.execute(
            "UPDATE trials SET status = ?2, loss = ?3, metrics = ?4, message = ?5, duration = ?6,
                    worker = ?7, feed_seq = ?8, reused_from = ?9 WHERE trial_id = ?1",
            params![
                c.trial_id as i64,
                status.as_str(),
                loss,
                metrics,
                message,
                c.duration_secs,
                c.worker.map(i64::from),
                feed_seq.map(|s| s as i64),
                reused_from.map(|r| r as i64)
            ],
        )?;
        if n != 1 {
            return Err(Error::Store(format!("completion for unknown trial {}", c.trial_id)));
        }
        Ok(())
    }

    fn record_fed(&mut self, fed: &[(u64, u64)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare("UPDATE trials SET feed_seq = ?2 WHERE trial_id = ?1")?;
            for (id, seq) in fed {
                stmt.execute(params![*id as i64, *seq as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
