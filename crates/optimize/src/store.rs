//! The trial store interface: the [`TrialStore`] trait and an in-memory store. Durable stores
//! (SQLite files, PostgreSQL studies) implement the trait in the `store` crate; this crate
//! knows only the trait.
//!
//! What is stored is an event log as much as a table: each trial records the sequence number
//! of its suggestion and of the moment its outcome was fed to the searcher. Replaying those
//! events in order rebuilds the searcher exactly (see `optimizer`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::evaluator::Completion;
use crate::searcher::Trial;
use crate::value::{Config, config_to_json};

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
    /// [`Error::StudyMismatch`]); then hand `visit` every stored trial, one at a time, in id
    /// order (which is the order they were suggested in). A store streams them rather than
    /// holding them, so that resuming a study of millions of trials takes bounded memory.
    fn open_study(
        &mut self,
        identity: &serde_json::Value,
        visit: &mut dyn FnMut(TrialRecord) -> Result<()>,
    ) -> Result<()>;

    /// [`TrialStore::open_study`], collecting the stored trials (for tests and small studies).
    fn load_study(&mut self, identity: &serde_json::Value) -> Result<Vec<TrialRecord>> {
        let mut records = Vec::new();
        self.open_study(identity, &mut |r| {
            records.push(r);
            Ok(())
        })?;
        Ok(records)
    }
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
    /// Make everything recorded so far durable (a store may group its writes; each call's
    /// writes must still land whole, so that a crash leaves a prefix of the event log). The
    /// optimizer calls it before a wait for a result that lasts longer than
    /// [`crate::FLUSH_WHEN_IDLE`], and when a search ends.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// FNV-1a 64 of the canonical identity JSON, shown to users as the study id.
pub fn identity_hash(identity: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.to_string().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The [`Error::StudyMismatch`] for a stored study identity that differs from the wanted one,
/// naming each setting that differs (for every store's `open_study`).
pub fn study_mismatch(stored: &serde_json::Value, wanted: &serde_json::Value) -> Error {
    Error::StudyMismatch(describe_mismatch(stored, wanted))
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
    fn open_study(
        &mut self,
        identity: &serde_json::Value,
        visit: &mut dyn FnMut(TrialRecord) -> Result<()>,
    ) -> Result<()> {
        match &self.identity {
            Some(old) if old != identity => return Err(study_mismatch(old, identity)),
            Some(_) => {}
            None => self.identity = Some(identity.clone()),
        }
        // The JSON text is rendered here, on the rare replay, not once per trial as it runs.
        for r in self.trials.values() {
            visit(TrialRecord { config_json: config_to_json(&r.config).to_string(), ..r.clone() })?;
        }
        Ok(())
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

/// A store that records nothing: a run that cannot be resumed, in constant memory whatever
/// its size (btopt's default without `--store`). Opening it always finds an empty study.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullStore;

impl TrialStore for NullStore {
    fn open_study(
        &mut self,
        _identity: &serde_json::Value,
        _visit: &mut dyn FnMut(TrialRecord) -> Result<()>,
    ) -> Result<()> {
        Ok(())
    }

    fn record_suggested(&mut self, _trials: &[(Trial, u64)]) -> Result<()> {
        Ok(())
    }

    fn record_completed(
        &mut self,
        _completion: &Completion,
        _reused_from: Option<u64>,
        _feed_seq: Option<u64>,
    ) -> Result<()> {
        Ok(())
    }

    fn record_fed(&mut self, _fed: &[(u64, u64)]) -> Result<()> {
        Ok(())
    }
}
