//! PostgreSQL: many studies in one database, each with its trials as rows that double as a
//! work queue (queued → running under a lease → done → taken by the coordinator).
//!
//! Schema (created idempotently, in one transaction under a transaction-level advisory lock,
//! so that any number of first users racing each other all succeed; a connection that finds
//! the schema's version mark, the comment of `btopt_trials`, skips all of that):
//! - `btopt_studies(name PK, identity, hash, bundle_hash, task, state, holder, created)`:
//!   `task` is the JSON a worker needs to run a trial (strategy, fixed parameters, sessions,
//!   fee); `state` is `running` or `finished`; `holder` names the coordinator ("pid N on HOST").
//! - `btopt_trials(study, trial_id, …the SQLite store's columns…, queue, attempts,
//!   lease_owner, lease_expires)`: `queue` is NULL until the coordinator hands the trial to
//!   the queue, then `queued`, `running` (leased), `done` (outcome written) and `taken` (fed
//!   to the coordinator's searcher, as its store records).
//!
//! Exactly one outcome per trial: a worker's result is written only while the worker still
//! holds the trial's lease (same owner, same attempt, state `running`). A lease that expires
//! puts the trial back in the queue with its attempt count one higher, and a result that
//! arrives after that is discarded: **the result of the current lease wins**, never a late
//! one. Backtests are deterministic, so the discarded result would have been the same.
//!
//! Bounded attempts: a study allows `max_attempts` claims per trial (the coordinator's
//! `--max-attempts`, default [`DEFAULT_MAX_ATTEMPTS`], recorded in `btopt_studies` when it
//! opens the study). A trial whose lease expires on its last allowed attempt is not claimed
//! again: the coordinator's next [`Queue::take_done`] writes its outcome itself, `crashed`
//! with the message `lost its worker N times (its lease expired on every attempt)`, and returns
//! it, so a trial that kills every worker that runs it ends instead of looping, and the search
//! goes on with a crashed trial. That write and a late worker's result exclude each other
//! (both require state `running`; row locks order them), so the trial still has exactly one
//! outcome.
//!
//! The queue's states of a trial, and who moves it:
//!
//! ```text
//! NULL ──enqueue──► queued ──claim──► running ──complete (lease held)──► done ──recorded fed──► taken
//!                     ▲                  │                                 ▲
//!                     └── lease expired, attempts < max_attempts: the next claim takes it again
//!                                        │                                 │
//!                   lease expired, attempts = max_attempts: take_done writes `crashed`
//! ```
//!
//! The coordinator reads a `done` row ([`Queue::take_done`]) without writing it: the worker's
//! notification names the trials it completed, and the coordinator reads those rows. Its
//! store marks a row `taken` in the write that records the trial fed (its `feed_seq`), so each
//! trial's row is written four times (suggested, claimed, completed, fed), not five.
//!
//! Connection loss: every operation is one transaction, retried whole after a reconnect, so
//! nothing is half-applied; reconnects back off from 50 ms to 2 s and give up after
//! [`RECONNECT_BOUND`] with [`Error::Unreachable`] (a first connection after
//! [`CONNECT_BOUND`]). A refused login or a TLS failure is not retried. A coordinator re-takes its study lock on
//! reconnect; workers listen again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use optimize::{Completion, Trial, TrialRecord, TrialStore, config_json_text, identity_hash, study_mismatch};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, Statement};

use crate::error::{Error, Result};
use crate::location::{ConnectFailure, PgTarget};
use crate::row::{RawTrial, columns, holder_name, outcome};

/// How long a server may stay unreachable before an operation fails: 60 s.
pub const RECONNECT_BOUND: Duration = Duration::from_secs(60);

/// How long a process's first connection to a server keeps trying: 10 s. Long enough for a
/// server that is starting (or restarting) beside it, short enough that a wrong port or host
/// in `--store` is one line after seconds, not a minute.
pub const CONNECT_BOUND: Duration = Duration::from_secs(10);

/// How many times a trial is claimed before a lease that expires on it makes it a crashed
/// trial (see the module docs): 3, like the local pool's retries of a task whose worker died.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Trials a coordinator suggests between two vacuums of the trials table (see
/// [`PgStore::vacuum_every`]).
pub const DEFAULT_VACUUM_EVERY: u64 = 20_000;

/// The advisory-lock class of btopt's locks ("btop").
const LOCK_CLASS: i32 = 0x6274_6f70;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS btopt_studies (
    name TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    hash TEXT NOT NULL,
    bundle_hash TEXT,
    task TEXT,
    state TEXT NOT NULL DEFAULT 'running',
    holder TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    max_attempts INTEGER NOT NULL DEFAULT 3
);
-- Databases created before attempts were bounded (3 = DEFAULT_MAX_ATTEMPTS). Checked first:
-- ALTER TABLE locks the table exclusively even when the column exists.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'btopt_studies' AND column_name = 'max_attempts') THEN
        ALTER TABLE btopt_studies ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS btopt_trials (
    study TEXT NOT NULL REFERENCES btopt_studies (name) ON DELETE CASCADE,
    trial_id BIGINT NOT NULL,
    config TEXT NOT NULL,
    budget DOUBLE PRECISION NOT NULL,
    bracket INTEGER,
    stage INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    loss DOUBLE PRECISION,
    metrics TEXT,
    message TEXT,
    duration DOUBLE PRECISION,
    worker INTEGER,
    suggest_seq BIGINT NOT NULL,
    feed_seq BIGINT,
    reused_from BIGINT,
    queue TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires TIMESTAMPTZ,
    PRIMARY KEY (study, trial_id)
);
CREATE INDEX IF NOT EXISTS btopt_trials_queue ON btopt_trials (study, queue, trial_id)
    WHERE queue IN ('queued', 'running', 'done');
COMMENT ON TABLE btopt_trials IS 'btopt schema 2';
";

/// What [`SCHEMA`] leaves as the comment of `btopt_trials`: a database that has it needs no
/// DDL. Change it with the schema.
const SCHEMA_MARK: &str = "btopt schema 2";

/// [`Queue::complete_and_claim`]'s statement.
///
/// The results: written only under the lease (same owner, same attempt), and
/// announced only when some were, on `btopt_done` with the payload `IDS|STUDY` (the trials
/// written, comma-separated), or `STUDY` alone when that would not fit a notification (8,000
/// bytes): the coordinator then reads every done row. Then the claim: two ordered index scans that
/// stop after $11 rows each (queued, and expired with attempts left), rather than
/// one scan of the study's whole queue with an OR. One row per claim, or one row
/// of NULLs when nothing is claimed, each carrying the count of results written and of the
/// trials queued before this claim (up to $13).
const COMPLETE_AND_CLAIM: &str = "WITH u AS (
    UPDATE btopt_trials t SET status = v.status, loss = v.loss, metrics = v.metrics,
           message = v.message, duration = v.duration, worker = v.worker,
           queue = 'done', lease_expires = NULL
    FROM unnest($3::int8[], $4::int4[], $5::text[], $6::float8[], $7::text[], $8::text[],
                $9::float8[], $10::int4[])
         AS v(trial_id, attempt, status, loss, metrics, message, duration, worker)
    WHERE t.study = $1 AND t.trial_id = v.trial_id AND t.queue = 'running'
          AND t.lease_owner = $2 AND t.attempts = v.attempt
    RETURNING t.trial_id),
 n AS (SELECT count(*) AS n, string_agg(trial_id::text, ',') AS ids FROM u),
 notified AS (
    SELECT pg_notify('btopt_done', CASE WHEN octet_length(n.ids) + octet_length($1) < 7900
                                        THEN n.ids || '|' || $1 ELSE $1 END)
    FROM n WHERE n.n > 0),
 q AS (
    SELECT trial_id FROM btopt_trials WHERE study = $1 AND queue = 'queued'
    ORDER BY trial_id LIMIT $11 FOR UPDATE SKIP LOCKED),
 e AS (
    SELECT trial_id FROM btopt_trials
    WHERE study = $1 AND queue = 'running' AND lease_expires < now()
          AND attempts < (SELECT max_attempts FROM btopt_studies WHERE name = $1)
          AND trial_id <> ALL($3)
    ORDER BY trial_id LIMIT $11 FOR UPDATE SKIP LOCKED),
 c AS (SELECT trial_id FROM (SELECT trial_id FROM q UNION ALL SELECT trial_id FROM e) x
       ORDER BY trial_id LIMIT $11),
 claimed AS (
    UPDATE btopt_trials t SET queue = 'running', attempts = t.attempts + 1, lease_owner = $2,
           lease_expires = now() + make_interval(secs => $12)
    FROM c WHERE t.study = $1 AND t.trial_id = c.trial_id
    RETURNING t.trial_id, t.config, t.budget, t.attempts)
 SELECT n.n, (SELECT count(*) FROM notified), k.trial_id, k.config, k.budget, k.attempts,
        (SELECT count(*) FROM (SELECT 1 FROM btopt_trials WHERE study = $1 AND queue = 'queued' LIMIT $13) r)
 FROM n LEFT JOIN claimed k ON true";

/// How far [`Queue::queued_left`] counts: eight times the claim's size, so that a queue's last
/// few batches are told apart (a claim sizes itself to at most a quarter of what is left), and
/// a claim of a few trials from a long queue does not count all of it.
fn queued_peek(claim: usize) -> i64 {
    (8 * claim as u64).clamp(QUEUED_PEEK_MIN, QUEUED_PEEK_MAX) as i64
}

/// [`queued_peek`]'s bounds.
const QUEUED_PEEK_MIN: u64 = 128;
const QUEUED_PEEK_MAX: u64 = 4096;

/// [`Queue::take_done`]'s statement: first the outcome of every trial whose lease expired on
/// its last allowed attempt (written here, crashed, and left `done` like any other outcome),
/// then the outcomes of the done rows that match `which` (the trials announced since the last
/// take, `$2`, or every done row). Nothing else is written: a row stays `done` until the
/// coordinator's store records it fed.
fn take_statement(which: &str) -> String {
    format!(
        "WITH failed AS (
            UPDATE btopt_trials t SET status = 'crashed', loss = NULL, metrics = NULL, duration = NULL,
                   worker = NULL, queue = 'done', lease_expires = NULL,
                   message = 'lost its worker ' || t.attempts
                             || CASE WHEN t.attempts = 1 THEN ' time' ELSE ' times' END
                             || ' (its lease expired on every attempt)'
            FROM btopt_studies s
            WHERE s.name = $1 AND t.study = $1 AND t.queue = 'running' AND t.lease_expires < now()
                  AND t.attempts >= s.max_attempts
            RETURNING t.trial_id, t.status, t.loss, t.metrics, t.message, t.duration, t.worker)
         SELECT * FROM failed
         UNION ALL
         SELECT trial_id, status, loss, metrics, message, duration, worker FROM btopt_trials
         WHERE study = $1 AND queue = 'done' AND {which}"
    )
}

/// The take of the trials announced since the last one.
const TAKE_ANNOUNCED: &str = "trial_id = ANY($2)";
/// The take of every done row (see [`Queue::take_done`]).
const TAKE_ALL: &str = "true";

/// [`Queue::take_done`] reads every done row (and forgets what is no longer `done`) once the
/// trials it remembers returning outnumber twice what the last such read left, and at least
/// this many.
const RETURNED_SLACK: usize = 4096;

/// What a coordinator's store writes in a trial's row (`t`) when it records the trial fed
/// (where `fed` holds): `taken`, so that [`Queue::take_done`]'s full reads skip it from then on.
fn taken_once(fed: &str) -> String {
    format!("queue = CASE WHEN t.queue = 'done' AND {fed} THEN 'taken' ELSE t.queue END")
}

/// Whether `e` means the connection is gone (as opposed to a statement that failed).
fn is_connection_loss(e: &postgres::Error, client: &mut Client) -> bool {
    if e.is_closed() || client.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
        }
        // An I/O error, or a client-side one (a type conversion): the connection decides.
        None => client.is_valid(Duration::from_secs(2)).is_err(),
    }
}

/// One connection that reconnects, re-listens and re-takes its study lock when it is lost.
struct Conn {
    target: PgTarget,
    client: Client,
    listening: Vec<&'static str>,
    /// The study whose session-level lock this connection holds.
    locked: Option<String>,
    /// A fault for tests: the next statement of this name succeeds on the server, and then
    /// its reply is lost, as if the connection broke just then (see [`Queue::lose_next_reply`]).
    lose_reply: Option<&'static str>,
    /// The hot statements (a worker's complete-and-claim, the coordinator's take), prepared
    /// once per connection: parsing and planning them was half of their cost on the server.
    prepared: BTreeMap<String, Statement>,
    /// Payloads of the `btopt_done` notifications received and not yet read.
    announced: Vec<String>,
    /// Whether the connection was lost (and reopened) since [`Conn::take_missed`]: the
    /// notifications sent meanwhile never came.
    missed: bool,
}

impl Conn {
    fn open(target: &PgTarget) -> Result<Conn> {
        let client = connect_with_backoff(target, CONNECT_BOUND)?;
        let mut conn = Conn {
            target: target.clone(),
            client,
            listening: Vec::new(),
            locked: None,
            lose_reply: None,
            prepared: BTreeMap::new(),
            announced: Vec::new(),
            missed: false,
        };
        // One cheap read when the schema is current (every connection but a database's first):
        // no lock, no DDL, which costs a fresh backend about 13 ms and serializes connections.
        let mark: Option<String> = conn.run("read the schema's version", |c| {
            c.query_typed_one("SELECT obj_description(to_regclass('btopt_trials'), 'pg_class')", &[]).map(|r| r.get(0))
        })?;
        if mark.as_deref() == Some(SCHEMA_MARK) {
            return Ok(conn);
        }
        conn.run("create the schema", |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()
        })?;
        Ok(conn)
    }

    /// Runs `f` (one transaction, or one statement) until it succeeds or fails for a reason
    /// other than a lost connection; reconnects in between.
    fn run<T>(&mut self, what: &str, mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>) -> Result<T> {
        loop {
            let r = f(&mut self.client);
            if let Some(v) = self.settle(what, r)? {
                return Ok(v);
            }
        }
    }

    /// What one attempt of [`Conn::run`] or [`Conn::run_prepared`] came to: its value, or
    /// `None` after a lost connection (reconnected: try again), or the error.
    fn settle<T>(&mut self, what: &str, r: Result<T, postgres::Error>) -> Result<Option<T>> {
        match r {
            Ok(_) if self.lose_reply == Some(what) => {
                self.lose_reply = None;
                self.reconnect()?;
                Ok(None)
            }
            Ok(v) => Ok(Some(v)),
            Err(e) if is_connection_loss(&e, &mut self.client) => {
                self.reconnect()?;
                Ok(None)
            }
            Err(e) => Err(self.target.error(what, &e)),
        }
    }

    /// [`Conn::run`] of one statement prepared on this connection (once: a reconnect prepares
    /// it again). `f` runs it.
    fn run_prepared<T>(
        &mut self,
        what: &'static str,
        sql: &str,
        types: &[Type],
        mut f: impl FnMut(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        loop {
            let statement = match self.prepared.get(sql) {
                Some(s) => s.clone(),
                None => match self.client.prepare_typed(sql, types) {
                    Ok(s) => {
                        self.prepared.insert(sql.to_string(), s.clone());
                        s
                    }
                    Err(e) if is_connection_loss(&e, &mut self.client) => {
                        self.reconnect()?;
                        continue;
                    }
                    Err(e) => return Err(self.target.error(what, &e)),
                },
            };
            let r = f(&mut self.client, &statement);
            if let Some(v) = self.settle(what, r)? {
                return Ok(v);
            }
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        self.prepared.clear();
        self.missed = true;
        self.client = connect_with_backoff(&self.target, RECONNECT_BOUND)?;
        for ch in self.listening.clone() {
            self.client.batch_execute(&format!("LISTEN {ch}")).map_err(|e| self.target.error("listen", &e))?;
        }
        if let Some(study) = self.locked.clone() {
            self.locked = None;
            self.lock_study(&study)?;
        }
        Ok(())
    }

    fn listen(&mut self, channel: &'static str) -> Result<()> {
        self.run("listen", |c| c.batch_execute(&format!("LISTEN {channel}")))?;
        self.listening.push(channel);
        Ok(())
    }

    /// Takes the session-level lock of `study`, or names its holder.
    fn lock_study(&mut self, study: &str) -> Result<()> {
        let got: bool = self.run("lock the study", |c| {
            c.query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &study]).map(|r| r.get(0))
        })?;
        if !got {
            let holder: Option<String> = self.run("read the study's holder", |c| {
                c.query_opt("SELECT holder FROM btopt_studies WHERE name = $1", &[&study])
                    .map(|r| r.and_then(|r| r.get::<_, Option<String>>(0)))
            })?;
            return Err(Error::InUse {
                study: study.to_string(),
                holder: holder.unwrap_or_else(|| "another coordinator".to_string()),
            });
        }
        self.locked = Some(study.to_string());
        Ok(())
    }

    /// Waits up to `timeout` for a notification on a channel this connection listens to
    /// (keeping the payloads of `btopt_done`).
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let got = {
            let mut n = self.client.notifications();
            let first = n.timeout_iter(timeout).next();
            match first {
                Ok(Some(first)) => {
                    let mut heard = vec![first];
                    // Drain what else has arrived.
                    while let Ok(Some(more)) = n.iter().next() {
                        heard.push(more);
                    }
                    Ok(heard)
                }
                Err(e) => Err(e),
                Ok(None) => Ok(Vec::new()),
            }
        };
        match got {
            Ok(heard) => {
                let any = !heard.is_empty();
                self.announced
                    .extend(heard.into_iter().filter(|n| n.channel() == "btopt_done").map(|n| n.payload().to_string()));
                Ok(any)
            }
            Err(e) if is_connection_loss(&e, &mut self.client) => {
                self.reconnect()?;
                Ok(true)
            }
            Err(e) => Err(self.target.error("wait for notifications", &e)),
        }
    }

    /// Whether the connection was lost since the last call (see [`Conn::missed`]).
    fn take_missed(&mut self) -> bool {
        std::mem::take(&mut self.missed)
    }
}

fn connect_with_backoff(target: &PgTarget, bound: Duration) -> Result<Client> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match target.connect_classified() {
            Ok(mut c) => {
                // The prepared queue statements are planned for each execution's values: a
                // generic plan (which PostgreSQL picks after five runs) of the claim halved
                // the queue's throughput (9,600 → 4,000 trials/s in `queue_throughput`).
                c.batch_execute("SET plan_cache_mode = force_custom_plan")
                    .map_err(|e| target.error("configure", &e))?;
                return Ok(c);
            }
            Err(ConnectFailure { error, permanent }) => {
                // Wrong password, unknown database, refused role, a certificate that does not
                // verify: retrying cannot help (`location::is_permanent_connect_failure`).
                if permanent {
                    return Err(error);
                }
                let message = match &error {
                    Error::Postgres { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                if started.elapsed() + delay > bound {
                    return Err(Error::Unreachable {
                        url: target.display().to_string(),
                        secs: bound.as_secs(),
                        message,
                    });
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// What workers need about a study: the bundle it runs on and how to turn a trial into a
/// backtest (opaque JSON to this crate).
#[derive(Debug, Clone, PartialEq)]
pub struct StudyTask {
    /// Content hash of the bundle the study was created on.
    pub bundle_hash: String,
    /// Strategy, fixed parameters, sessions and fee, as the glue writes them.
    pub task: serde_json::Value,
}

/// One study as `study list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyInfo {
    /// The study's name.
    pub name: String,
    /// `running` or `finished`.
    pub state: String,
    /// Trials waiting in the queue.
    pub queued: u64,
    /// Trials under a lease.
    pub running: u64,
    /// Trials with an outcome.
    pub done: u64,
    /// Best finite loss at the largest budget that has one.
    pub best_loss: Option<f64>,
    /// Content hash of the study's bundle, if recorded.
    pub bundle_hash: Option<String>,
    /// The workers' task JSON, if recorded.
    pub task: Option<serde_json::Value>,
    /// The coordinator holding it, if any.
    pub holder: Option<String>,
}

impl StudyInfo {
    /// `{"name", "state", "queued", "running", "done", "best_loss"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "state": self.state, "queued": self.queued, "running": self.running,
            "done": self.done, "best_loss": self.best_loss,
        })
    }
}

/// A study's head: what [`Queue::heads`] and [`Queue::head`] read (no counts; [`STUDY_INFO`]
/// reads the same columns first).
const STUDY_HEAD: &str = "SELECT name, state, bundle_hash, task, holder FROM btopt_studies";

fn head_of_row(r: &postgres::Row) -> StudyInfo {
    StudyInfo {
        name: r.get(0),
        state: r.get(1),
        bundle_hash: r.get(2),
        task: r.get::<_, Option<String>>(3).and_then(|t| serde_json::from_str(&t).ok()),
        holder: r.get(4),
        queued: 0,
        running: 0,
        done: 0,
        best_loss: None,
    }
}

const STUDY_INFO: &str = "
SELECT s.name, s.state, s.bundle_hash, s.task, s.holder,
       (SELECT count(*) FROM btopt_trials t WHERE t.study = s.name AND t.queue = 'queued'),
       (SELECT count(*) FROM btopt_trials t WHERE t.study = s.name AND t.queue = 'running'),
       (SELECT count(*) FROM btopt_trials t WHERE t.study = s.name AND t.status <> 'running'),
       (SELECT t.loss FROM btopt_trials t WHERE t.study = s.name AND t.loss IS NOT NULL
         ORDER BY t.budget DESC, t.loss ASC, t.trial_id ASC LIMIT 1)
FROM btopt_studies s";

fn study_info(row: &postgres::Row) -> StudyInfo {
    StudyInfo {
        queued: row.get::<_, i64>(5) as u64,
        running: row.get::<_, i64>(6) as u64,
        done: row.get::<_, i64>(7) as u64,
        best_loss: row.get(8),
        ..head_of_row(row)
    }
}

/// Every study in the database, by name.
pub fn list_studies(target: &PgTarget) -> Result<Vec<StudyInfo>> {
    let mut conn = Conn::open(target)?;
    let rows = conn.run("list the studies", |c| c.query(&format!("{STUDY_INFO} ORDER BY s.name"), &[]))?;
    Ok(rows.iter().map(study_info).collect())
}

/// The server's version as it reports it (`SHOW server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`),
/// for benchmark reports.
pub fn server_version(target: &PgTarget) -> Result<String> {
    let mut client = connect_with_backoff(target, CONNECT_BOUND)?;
    client
        .query_one("SHOW server_version", &[])
        .map(|r| r.get(0))
        .map_err(|e| target.error("read the server's version", &e))
}

/// A study in PostgreSQL, for the coordinator: implements [`TrialStore`] and holds the
/// study's session-level advisory lock from `open_study` until it is dropped (or
/// [`PgStore::finish`]), so a second coordinator gets [`Error::InUse`] naming this one.
///
/// Completions are buffered and written in one statement before the next suggestion or feed
/// record, and on [`PgStore::flush`] or drop: with the work queue, the worker has already
/// committed each outcome, so the buffer only holds bookkeeping.
pub struct PgStore {
    conn: Conn,
    name: Option<String>,
    task: Option<StudyTask>,
    study: Option<String>,
    max_attempts: u32,
    /// Insert suggested trials already queued ([`PgStore::queue_suggested`]).
    queue_suggested: bool,
    completed: Vec<(Completion, Option<u64>, Option<u64>)>,
    /// Suggested trials between vacuums (`None`: never, or no longer: a vacuum failed).
    vacuum_every: Option<u64>,
    /// Suggested trials since the last vacuum.
    since_vacuum: u64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.conn.target).field("study", &self.study).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects and creates the schema if needed. `name` names the study (default: the
    /// identity hash, known at `open_study`); `task` is recorded when the study is created
    /// and checked (bundle hash) when it is resumed.
    pub fn connect(target: &PgTarget, name: Option<&str>, task: Option<StudyTask>) -> Result<PgStore> {
        Ok(PgStore {
            conn: Conn::open(target)?,
            name: name.map(str::to_string),
            task,
            study: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            queue_suggested: false,
            completed: Vec::new(),
            vacuum_every: Some(DEFAULT_VACUUM_EVERY),
            since_vacuum: 0,
        })
    }

    /// Whether suggested trials are inserted already queued (with the notification that
    /// wakes workers), for a coordinator that submits every suggested trial to the queue at
    /// once, i.e. whose results are never reused from earlier trials: one row write less per
    /// trial. [`Queue::enqueue`] then finds them queued and writes nothing (it still queues a
    /// trial whose row a resumed study holds unqueued). Off by default: a trial answered from
    /// an earlier one must never reach the queue.
    pub fn queue_suggested(&mut self, on: bool) {
        self.queue_suggested = on;
    }

    /// Vacuum (and analyze) the trials table after every `n` suggested trials (default
    /// [`DEFAULT_VACUUM_EVERY`]; `None`: never). Each trial leaves about five dead row
    /// versions (suggested, claimed, completed, taken, fed), and autovacuum's defaults (a
    /// table is looked at once a minute, and vacuumed once a fifth of it is dead) let a fast
    /// study outrun it: the queue's index scans then step over every dead entry, the planner
    /// works from stale row counts, and each batch costs more than the last (a 100,000-trial
    /// study of trivial trials slowed from 1.3 to 3.1 s per tenth). `SKIP_LOCKED`: a table
    /// another process is vacuuming is left to it. Best effort: a server that refuses the
    /// statement (too old for `SKIP_LOCKED`, say) is not asked again, and a role that does
    /// not own the table gets the server's warning and nothing done.
    pub fn vacuum_every(&mut self, n: Option<u64>) {
        self.vacuum_every = n.filter(|&n| n > 0);
    }

    /// The vacuum of [`PgStore::vacuum_every`], when it is due.
    fn vacuum_if_due(&mut self, suggested: usize) {
        self.since_vacuum += suggested as u64;
        let Some(every) = self.vacuum_every else { return };
        if self.since_vacuum < every {
            return;
        }
        self.since_vacuum = 0;
        let r = self.conn.run("vacuum the trials", |c| c.batch_execute("VACUUM (ANALYZE, SKIP_LOCKED) btopt_trials"));
        if r.is_err() {
            self.vacuum_every = None;
        }
    }

    /// How many times a trial of the study may be claimed (at least 1; default
    /// [`DEFAULT_MAX_ATTEMPTS`]); recorded with the study when it is opened, so a resumed study
    /// takes the value of the coordinator that resumes it.
    pub fn set_max_attempts(&mut self, n: u32) {
        self.max_attempts = n.max(1);
    }

    /// The study's name for `identity`: `--study`, else the identity hash.
    pub fn study_name(&self, identity: &serde_json::Value) -> String {
        self.name.clone().unwrap_or_else(|| identity_hash(identity))
    }

    /// Writes the buffered completions.
    pub fn flush(&mut self) -> Result<()> {
        if self.completed.is_empty() {
            return Ok(());
        }
        let study = self.study.clone().ok_or_else(|| Error::Study("no study is open".into()))?;
        let mut ids = Vec::new();
        let mut status = Vec::new();
        let mut loss = Vec::new();
        let mut metrics = Vec::new();
        let mut message = Vec::new();
        let mut duration = Vec::new();
        let mut worker = Vec::new();
        let mut feed = Vec::new();
        let mut reused = Vec::new();
        for (c, r, f) in &self.completed {
            let cols = columns(&c.outcome);
            ids.push(c.trial_id as i64);
            status.push(cols.status.to_string());
            loss.push(cols.loss);
            metrics.push(cols.metrics);
            message.push(cols.message);
            duration.push(c.duration_secs);
            worker.push(c.worker.map(|w| w as i32));
            feed.push(f.map(|s| s as i64));
            reused.push(r.map(|s| s as i64));
        }
        // A row that already holds its outcome (a worker wrote it under its lease) is not
        // written again unless there is bookkeeping to add: one write less per queued trial.
        // A queued trial recorded fed here is `taken` in the same write.
        let taken = taken_once("v.feed IS NOT NULL");
        let sql = format!(
            "UPDATE btopt_trials t SET status = v.status, loss = v.loss, metrics = v.metrics,
                    message = v.message, duration = v.duration, worker = v.worker,
                    feed_seq = COALESCE(v.feed, t.feed_seq), reused_from = v.reused, {taken}
             FROM unnest($2::int8[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
                             $8::int4[], $9::int8[], $10::int8[])
                  AS v(trial_id, status, loss, metrics, message, duration, worker, feed, reused)
             WHERE t.study = $1 AND t.trial_id = v.trial_id
                   AND (t.status = 'running' OR v.feed IS NOT NULL OR v.reused IS NOT NULL)"
        );
        self.conn.run("record completions", |c| {
            c.execute(
                sql.as_str(),
                &[&study, &ids, &status, &loss, &metrics, &message, &duration, &worker, &feed, &reused],
            )
        })?;
        self.completed.clear();
        Ok(())
    }

    /// Marks the study finished (workers of it exit) and releases its lock.
    pub fn finish(&mut self) -> Result<()> {
        self.flush()?;
        let study = self.study.clone().ok_or_else(|| Error::Study("no study is open".into()))?;
        self.conn.run("finish the study", |c| {
            let mut tx = c.transaction()?;
            tx.execute("UPDATE btopt_studies SET state = 'finished', holder = NULL WHERE name = $1", &[&study])?;
            tx.execute("SELECT pg_notify('btopt_queued', $1)", &[&study])?;
            tx.commit()
        })?;
        self.conn.run("unlock the study", |c| {
            c.execute("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &study])
        })?;
        self.conn.locked = None;
        Ok(())
    }

    fn load(&mut self, study: &str) -> Result<Vec<TrialRecord>> {
        let rows = self.conn.run("load the trials", |c| {
            c.query(
                "SELECT trial_id, config, budget, bracket, stage, status, loss, metrics, message, duration,
                        worker, suggest_seq, feed_seq, reused_from
                 FROM btopt_trials WHERE study = $1 ORDER BY trial_id",
                &[&study],
            )
        })?;
        rows.iter()
            .map(|r| {
                RawTrial {
                    id: r.get(0),
                    config_json: r.get(1),
                    budget: r.get(2),
                    bracket: r.get::<_, Option<i32>>(3).map(i64::from),
                    stage: r.get::<_, Option<i32>>(4).map(i64::from),
                    status: r.get(5),
                    loss: r.get(6),
                    metrics: r.get(7),
                    message: r.get(8),
                    duration: r.get(9),
                    worker: r.get::<_, Option<i32>>(10).map(i64::from),
                    suggest_seq: r.get(11),
                    feed_seq: r.get(12),
                    reused_from: r.get(13),
                }
                .into_record()
                .map_err(Error::Study)
            })
            .collect()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Best effort: an error here has nowhere to go, and every outcome that came through
        // the queue is already committed by its worker.
        let _ = self.flush();
        // Unlock before the connection closes: the server drops a closed session's locks only
        // when its backend exits, after the client has gone on (a next opener could be refused).
        // No reconnect here: a lost connection has no lock left to release.
        if let Some(study) = self.conn.locked.take() {
            let _ = self.conn.client.execute("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &study]);
        }
    }
}

/// Why `open_study` refused a stored study (found before anything was written).
enum Refusal {
    /// Its identity, as stored, differs.
    Identity(String),
    /// It runs on the bundle with this content hash.
    Bundle(String),
}

impl TrialStore for PgStore {
    fn open_study(
        &mut self,
        identity: &serde_json::Value,
        visit: &mut dyn FnMut(TrialRecord) -> optimize::Result<()>,
    ) -> optimize::Result<()> {
        let name = self.study_name(identity);
        self.conn.lock_study(&name)?;
        let text = identity.to_string();
        let hash = identity_hash(identity);
        let holder = holder_name();
        let task = self.task.clone();
        let max_attempts = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        // The stored study is checked before anything is written: a coordinator refused for
        // another space or bundle leaves the study exactly as it was (state, holder, attempts).
        let wanted_bundle = task.as_ref().map(|t| t.bundle_hash.clone());
        let checked = self.conn.run("open the study", |c| {
            let mut tx = c.transaction()?;
            let row =
                tx.query_opt("SELECT identity, bundle_hash FROM btopt_studies WHERE name = $1 FOR UPDATE", &[&name])?;
            match row.map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1))) {
                Some((stored_identity, stored_bundle)) => {
                    if stored_identity != text {
                        return Ok(Err(Refusal::Identity(stored_identity)));
                    }
                    if let (Some(stored), Some(wanted)) = (stored_bundle, &wanted_bundle)
                        && stored != *wanted
                    {
                        return Ok(Err(Refusal::Bundle(stored)));
                    }
                    tx.execute(
                        "UPDATE btopt_studies SET holder = $2, state = 'running', max_attempts = $3 WHERE name = $1",
                        &[&name, &holder, &max_attempts],
                    )?;
                }
                None => {
                    let task_json = task.as_ref().map(|t| t.task.to_string());
                    tx.execute(
                        "INSERT INTO btopt_studies (name, identity, hash, bundle_hash, task, holder, max_attempts)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&name, &text, &hash, &wanted_bundle, &task_json, &holder, &max_attempts],
                    )?;
                }
            }
            tx.commit()?;
            Ok(Ok(()))
        })?;
        match checked {
            Ok(()) => {}
            Err(Refusal::Identity(stored_identity)) => {
                let old: serde_json::Value = serde_json::from_str(&stored_identity)
                    .map_err(|e| optimize::Error::Store(format!("study identity: {e}")))?;
                return Err(study_mismatch(&old, identity));
            }
            Err(Refusal::Bundle(stored)) => {
                return Err(optimize::Error::StudyMismatch(format!(
                    "study {name} runs on bundle {stored}, this one is {}",
                    wanted_bundle.unwrap_or_default()
                )));
            }
        }
        self.study = Some(name.clone());
        // Decision: PostgreSQL hands the trials over after reading them all (a distributed
        // study's resume holds its records once); SQLite streams them.
        for r in self.load(&name)? {
            visit(r)?;
        }
        Ok(())
    }

    fn record_suggested(&mut self, trials: &[(Trial, u64)]) -> optimize::Result<()> {
        self.flush()?;
        self.vacuum_if_due(trials.len());
        let study = self.study.clone().ok_or_else(|| optimize::Error::Store("no study is open".into()))?;
        let ids: Vec<i64> = trials.iter().map(|(t, _)| t.id as i64).collect();
        let configs: Vec<String> = trials.iter().map(|(t, _)| config_json_text(&t.config)).collect();
        let budgets: Vec<f64> = trials.iter().map(|(t, _)| t.budget).collect();
        let brackets: Vec<Option<i32>> = trials.iter().map(|(t, _)| t.bracket.map(|b| b as i32)).collect();
        let stages: Vec<Option<i32>> = trials.iter().map(|(t, _)| t.stage.map(|s| s as i32)).collect();
        let seqs: Vec<i64> = trials.iter().map(|(_, s)| *s as i64).collect();
        // ON CONFLICT: a retried insert whose first commit reached the server is a no-op.
        let insert = "INSERT INTO btopt_trials (study, trial_id, config, budget, bracket, stage, suggest_seq, queue)
                      SELECT $1, *, $8::text FROM unnest($2::int8[], $3::text[], $4::float8[], $5::int4[], $6::int4[],
                                                   $7::int8[])
                      ON CONFLICT (study, trial_id) DO NOTHING";
        let queue = self.queue_suggested.then_some("queued");
        let sql = if queue.is_some() {
            format!("WITH i AS ({insert}) SELECT pg_notify('btopt_queued', $1)")
        } else {
            insert.to_string()
        };
        self.conn.run("record suggested trials", |c| {
            c.execute(sql.as_str(), &[&study, &ids, &configs, &budgets, &brackets, &stages, &seqs, &queue])
        })?;
        Ok(())
    }

    fn record_completed(
        &mut self,
        completion: &Completion,
        reused_from: Option<u64>,
        feed_seq: Option<u64>,
    ) -> optimize::Result<()> {
        self.completed.push((completion.clone(), reused_from, feed_seq));
        if self.completed.len() >= 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn record_fed(&mut self, fed: &[(u64, u64)]) -> optimize::Result<()> {
        self.flush()?;
        let study = self.study.clone().ok_or_else(|| optimize::Error::Store("no study is open".into()))?;
        let ids: Vec<i64> = fed.iter().map(|(id, _)| *id as i64).collect();
        let seqs: Vec<i64> = fed.iter().map(|(_, s)| *s as i64).collect();
        let sql = format!(
            "UPDATE btopt_trials t SET feed_seq = v.seq, {}
             FROM unnest($2::int8[], $3::int8[]) AS v(trial_id, seq)
             WHERE t.study = $1 AND t.trial_id = v.trial_id",
            taken_once("true")
        );
        self.conn.run("record fed trials", |c| c.execute(sql.as_str(), &[&study, &ids, &seqs]))?;
        Ok(())
    }
}

/// A trial claimed from the queue, under this worker's lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The trial.
    pub trial_id: u64,
    /// Its config JSON, as stored (untrusted: parse it and fail the trial if it is wrong).
    pub config_json: String,
    /// Its budget.
    pub budget: f64,
    /// Which attempt this is (1 for the first claim).
    pub attempt: i32,
}

/// One trial's row as the queue sees it ([`Queue::trials`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialState {
    /// How many times it was claimed.
    pub attempts: i32,
    /// `queued`, `running`, `done` or `taken` (see the module docs); `None` before it is queued.
    pub queue: Option<String>,
    /// `running` until it has an outcome, then `ok`, `nonfinite` or `crashed`.
    pub status: String,
    /// A crashed trial's message.
    pub message: Option<String>,
}

/// A study's work queue, on its own connection: the coordinator enqueues and takes finished
/// trials; workers claim, heartbeat and complete them.
pub struct Queue {
    conn: Conn,
    study: String,
    owner: String,
    lease_secs: f64,
    /// Trials announced done and not yet read by [`Queue::take_done`].
    announced: BTreeSet<u64>,
    /// Whether the next take reads every done row, not only the announced ones.
    read_all: bool,
    /// Trials [`Queue::take_done`] returned whose rows were still `done` (not yet recorded
    /// fed) at its last full read, or returned since: a full read returns none of them again.
    returned: BTreeSet<u64>,
    /// When `returned` outgrows this, the next take is a full read (which prunes it).
    returned_bound: usize,
    /// Trials left in the queue after this client's last claim, as far as it counted.
    queued_left: Option<u64>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("study", &self.study).field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl Queue {
    /// A queue client of `study` whose claims are leased for `lease`.
    pub fn connect(target: &PgTarget, study: &str, lease: Duration) -> Result<Queue> {
        let conn = Conn::open(target)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Ok(Queue {
            conn,
            study: study.to_string(),
            owner: format!("{} #{:x}", holder_name(), nanos & 0xffff_ffff),
            lease_secs: lease.as_secs_f64(),
            announced: BTreeSet::new(),
            read_all: true,
            returned: BTreeSet::new(),
            returned_bound: RETURNED_SLACK,
            queued_left: None,
        })
    }

    /// The study's name.
    pub fn study(&self) -> &str {
        &self.study
    }

    /// Listen for trials being queued (workers) or done (the coordinator).
    pub fn listen_queued(&mut self) -> Result<()> {
        self.conn.listen("btopt_queued")
    }

    /// See [`Queue::listen_queued`].
    pub fn listen_done(&mut self) -> Result<()> {
        self.conn.listen("btopt_done")
    }

    /// Waits up to `timeout` for a notification; true if one came.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        self.conn.wait(timeout)
    }

    /// Serve another study from now on (same connection, same owner).
    pub fn switch(&mut self, study: &str) {
        if self.study != study {
            self.queued_left = None;
        }
        self.study = study.to_string();
    }

    /// Every study's name, state, bundle hash and task (no counts: cheap enough to poll).
    pub fn heads(&mut self) -> Result<Vec<StudyInfo>> {
        let rows = self.conn.run("read the studies", |c| c.query(&format!("{STUDY_HEAD} ORDER BY name"), &[]))?;
        Ok(rows.iter().map(head_of_row).collect())
    }

    /// This study's entry of [`Queue::heads`], if it exists: one row by its key, so a worker
    /// polling its study reads nothing of the other studies in the database.
    pub fn head(&mut self) -> Result<Option<StudyInfo>> {
        let study = self.study.clone();
        let row =
            self.conn.run("read the study", |c| c.query_opt(&format!("{STUDY_HEAD} WHERE name = $1"), &[&study]))?;
        Ok(row.as_ref().map(head_of_row))
    }

    /// The study with its counts, if it exists.
    pub fn info(&mut self) -> Result<Option<StudyInfo>> {
        let study = self.study.clone();
        let row =
            self.conn.run("read the study", |c| c.query_opt(&format!("{STUDY_INFO} WHERE s.name = $1"), &[&study]))?;
        Ok(row.as_ref().map(study_info))
    }

    /// Hands suggested trials to the queue (those not already in it).
    pub fn enqueue(&mut self, ids: &[u64]) -> Result<()> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let study = self.study.clone();
        self.conn.run("queue trials", |c| {
            c.query_typed(
                "WITH q AS (UPDATE btopt_trials SET queue = 'queued'
                            WHERE study = $1 AND trial_id = ANY($2) AND queue IS NULL)
                 SELECT pg_notify('btopt_queued', $1)",
                &[(&study, Type::TEXT), (&ids, Type::INT8_ARRAY)],
            )
            .map(drop)
        })
    }

    /// Claims up to `max` trials (lowest ids first): queued ones, and running ones whose
    /// lease has expired with attempts left (their attempt count grows; a trial that has used
    /// the study's `max_attempts` waits for [`Queue::take_done`] to fail it).
    /// `SELECT … FOR UPDATE SKIP LOCKED`, so workers never wait for each other.
    pub fn claim(&mut self, max: usize) -> Result<Vec<Claimed>> {
        Ok(self.complete_and_claim(&[], max)?.1)
    }

    /// Extends the lease of these claimed trials.
    pub fn heartbeat(&mut self, ids: &[u64]) -> Result<()> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let (study, owner, lease) = (self.study.clone(), self.owner.clone(), self.lease_secs);
        self.conn.run("renew the lease", |c| {
            c.execute_typed(
                "UPDATE btopt_trials SET lease_expires = now() + make_interval(secs => $4)
                 WHERE study = $1 AND lease_owner = $2 AND queue = 'running' AND trial_id = ANY($3)",
                &[(&study, Type::TEXT), (&owner, Type::TEXT), (&ids, Type::INT8_ARRAY), (&lease, Type::FLOAT8)],
            )
        })?;
        Ok(())
    }

    /// Writes the outcomes of claimed trials, each only if this worker still holds its
    /// lease; returns how many were recorded (the rest had expired and were discarded).
    pub fn complete(&mut self, done: &[(Claimed, Completion)]) -> Result<usize> {
        if done.is_empty() {
            return Ok(0);
        }
        Ok(self.complete_and_claim(done, 0)?.0)
    }

    /// [`Queue::complete`] and then [`Queue::claim`] in one statement, so a worker between two
    /// batches waits for one round trip, not two. The claim never takes back a trial whose
    /// outcome this call writes. Returns how many outcomes were recorded, and the claims.
    ///
    /// A retry after a lost connection is safe: a completion that committed matches no row
    /// the second time, and claims whose reply was lost stay leased to this owner until their
    /// lease expires (then the queue hands them out again).
    pub fn complete_and_claim(&mut self, done: &[(Claimed, Completion)], max: usize) -> Result<(usize, Vec<Claimed>)> {
        let mut ids = Vec::new();
        let mut attempts = Vec::new();
        let mut status = Vec::new();
        let mut loss = Vec::new();
        let mut metrics = Vec::new();
        let mut message = Vec::new();
        let mut duration = Vec::new();
        let mut worker = Vec::new();
        for (claim, c) in done {
            let cols = columns(&c.outcome);
            ids.push(claim.trial_id as i64);
            attempts.push(claim.attempt);
            status.push(cols.status.to_string());
            loss.push(cols.loss);
            metrics.push(cols.metrics);
            message.push(cols.message);
            duration.push(c.duration_secs);
            worker.push(c.worker.map(|w| w as i32));
        }
        let (study, owner, lease) = (self.study.clone(), self.owner.clone(), self.lease_secs);
        let peek = queued_peek(max);
        let max = max as i64;
        let rows = self.conn.run_prepared(
            "record results and claim trials",
            COMPLETE_AND_CLAIM,
            &[
                Type::TEXT,
                Type::TEXT,
                Type::INT8_ARRAY,
                Type::INT4_ARRAY,
                Type::TEXT_ARRAY,
                Type::FLOAT8_ARRAY,
                Type::TEXT_ARRAY,
                Type::TEXT_ARRAY,
                Type::FLOAT8_ARRAY,
                Type::INT4_ARRAY,
                Type::INT8,
                Type::FLOAT8,
                Type::INT8,
            ],
            |c, st| {
                c.query(
                    st,
                    &[
                        &study, &owner, &ids, &attempts, &status, &loss, &metrics, &message, &duration, &worker, &max,
                        &lease, &peek,
                    ],
                )
            },
        )?;
        let recorded = rows.first().map_or(0, |r| r.get::<_, i64>(0) as usize);
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .filter_map(|r| {
                Some(Claimed {
                    trial_id: r.get::<_, Option<i64>>(2)? as u64,
                    config_json: r.get(3),
                    budget: r.get(4),
                    attempt: r.get(5),
                })
            })
            .collect();
        claimed.sort_by_key(|c| c.trial_id);
        let queued_before = rows.first().map_or(0, |r| r.get::<_, i64>(6) as u64);
        self.queued_left = Some(queued_before.saturating_sub(claimed.len() as u64));
        Ok((recorded, claimed))
    }

    /// About how many trials were still queued after this client's last claim (counted up to
    /// eight times that claim's size, at least 128 and at most 4,096; `None` before its
    /// first): for sizing the next claims, so that the last batches of a queue are small and
    /// no worker idles while another finishes a large one.
    pub fn queued_left(&self) -> Option<u64> {
        self.queued_left
    }

    /// For tests of the retry paths: the next statement named `what` (as in its error
    /// messages, say `"take results"`) commits on the server, and then this client behaves as
    /// if the connection broke before the reply came: it reconnects and runs it again.
    #[doc(hidden)]
    pub fn lose_next_reply(&mut self, what: &'static str) {
        self.conn.lose_reply = Some(what);
    }

    /// Takes the outcomes that workers have written since the last call (each once), after
    /// writing the outcome of every trial whose lease expired on its last allowed attempt:
    /// crashed, `lost its worker N times (its lease expired on every attempt)`. One statement,
    /// so a trial is failed and returned together or not at all.
    ///
    /// It reads the rows of the trials that workers announced (the payloads of `btopt_done`,
    /// which name them) and writes none of them: a row stays `done` until the coordinator's
    /// store records the trial fed, and marks it `taken` in that same write, so a trial's row
    /// is written once less than if this read marked it. It reads every `done` row instead
    /// (skipping what it returned before) when announcements may be missing: at its first
    /// call (results from before it listened), when this client does not listen on
    /// `btopt_done`, after a lost connection (what was sent meanwhile never came), when a
    /// worker announced its study without the trials (a batch too large to name, or a worker
    /// of a btopt that does not name them), and when what it returned outgrows a bound (the
    /// read forgets what is no longer `done`).
    ///
    /// Retry-safe: a read may be repeated, and a retry after a lost connection (whose first
    /// attempt may have failed trials and lost the reply) reads every `done` row.
    pub fn take_done(&mut self) -> Result<Vec<Completion>> {
        // What has arrived so far, this read sees.
        self.conn.wait(Duration::ZERO)?;
        let study = self.study.clone();
        for payload in std::mem::take(&mut self.conn.announced) {
            // The study alone first: its name may hold a `|` itself.
            if payload == study {
                self.read_all = true;
                continue;
            }
            if let Some((ids, of)) = payload.split_once('|')
                && of == study
            {
                let parsed: Option<Vec<u64>> = ids.split(',').map(|id| id.parse().ok()).collect();
                match parsed {
                    Some(ids) => self.announced.extend(ids),
                    None => self.read_all = true,
                }
            }
        }
        if self.conn.take_missed() || !self.conn.listening.contains(&"btopt_done") {
            self.read_all = true;
        }
        if self.returned.len() > self.returned_bound {
            self.read_all = true;
        }
        let mut all = std::mem::take(&mut self.read_all);
        let announced: Vec<i64> = if all {
            Vec::new()
        } else {
            std::mem::take(&mut self.announced).into_iter().map(|id| id as i64).collect()
        };
        let every = take_statement(TAKE_ALL);
        let rows = if all {
            self.conn.run_prepared("take results", &every, &[Type::TEXT], |c, st| c.query(st, &[&study]))?
        } else {
            let these = take_statement(TAKE_ANNOUNCED);
            let mut retry = false;
            self.conn.run_prepared("take results", &these, &[Type::TEXT, Type::INT8_ARRAY], |c, st| {
                if std::mem::replace(&mut retry, true) {
                    // The first attempt may have failed trials and lost its reply: read all.
                    all = true;
                    c.query_typed(&every, &[(&study, Type::TEXT)])
                } else {
                    c.query(st, &[&study, &announced])
                }
            })?
        };
        if all {
            self.announced.clear();
            let done: BTreeSet<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
            self.returned.retain(|id| done.contains(id));
        }
        let mut out = BTreeMap::new();
        for r in &rows {
            let id: i64 = r.get(0);
            if self.returned.contains(&(id as u64)) {
                continue;
            }
            let status: String = r.get(1);
            let oc = outcome(id, &status, r.get(2), r.get(3), r.get(4)).map_err(Error::Study)?;
            let Some(oc) = oc else { return Err(Error::Study(format!("trial {id} is done without an outcome"))) };
            out.insert(
                id as u64,
                Completion {
                    trial_id: id as u64,
                    outcome: oc,
                    duration_secs: r.get::<_, Option<f64>>(5).unwrap_or(0.0),
                    worker: r.get::<_, Option<i32>>(6).map(|w| w as u32),
                },
            );
        }
        self.returned.extend(out.keys().copied());
        if all {
            self.returned_bound = (2 * self.returned.len()).max(RETURNED_SLACK);
        }
        Ok(out.into_values().collect())
    }

    /// Every attempt count and outcome status of the study, by trial id (for checks).
    pub fn attempts(&mut self) -> Result<BTreeMap<u64, (i32, String)>> {
        Ok(self.trials()?.into_iter().map(|(id, t)| (id, (t.attempts, t.status))).collect())
    }

    /// Every trial's queue state, attempts and outcome, by trial id (for checks and tools).
    pub fn trials(&mut self) -> Result<BTreeMap<u64, TrialState>> {
        let study = self.study.clone();
        let rows = self.conn.run("read the trials' states", |c| {
            c.query("SELECT trial_id, attempts, queue, status, message FROM btopt_trials WHERE study = $1", &[&study])
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let state = TrialState { attempts: r.get(1), queue: r.get(2), status: r.get(3), message: r.get(4) };
                (r.get::<_, i64>(0) as u64, state)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::queued_peek;

    #[test]
    fn a_claim_counts_the_queue_up_to_eight_times_its_size_within_bounds() {
        assert_eq!(queued_peek(0), 128);
        assert_eq!(queued_peek(1), 128);
        assert_eq!(queued_peek(16), 128);
        assert_eq!(queued_peek(100), 800);
        assert_eq!(queued_peek(512), 4096);
        assert_eq!(queued_peek(usize::MAX / 16), 4096);
    }
}
