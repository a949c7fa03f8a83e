//! One trial as columns, shared by every store: the outcome's status, loss, metrics JSON and
//! message, and the decoding of a stored row back into a [`TrialRecord`].

use optimize::{Completion, Metrics, Outcome, TrialRecord, config_from_json};

/// An outcome as the columns `status`, `loss`, `metrics` (JSON of the finite metrics: JSON
/// has no NaN) and `message`.
#[derive(Debug)]
pub(crate) struct OutcomeColumns {
    pub(crate) status: &'static str,
    pub(crate) loss: Option<f64>,
    pub(crate) metrics: Option<String>,
    pub(crate) message: Option<String>,
}

pub(crate) fn columns(outcome: &Outcome) -> OutcomeColumns {
    match outcome {
        Outcome::Ok { loss, metrics } => OutcomeColumns {
            status: outcome.status().as_str(),
            loss: loss.is_finite().then_some(*loss),
            metrics: Some(serde_json::to_string(&Finite(metrics)).expect("a map of finite floats is JSON")),
            message: None,
        },
        Outcome::Crashed { message } => OutcomeColumns {
            status: outcome.status().as_str(),
            loss: None,
            metrics: None,
            message: Some(message.clone()),
        },
    }
}

/// The finite entries of a metrics map, serialized as a JSON object in name order (written
/// once per trial, so without building a map of them first).
struct Finite<'a>(&'a Metrics);

impl serde::Serialize for Finite<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(_, v)| v.is_finite()) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The outcome stored in these columns; `None` while the trial is `running`.
pub(crate) fn outcome(
    id: i64,
    status: &str,
    loss: Option<f64>,
    metrics: Option<String>,
    message: Option<String>,
) -> Result<Option<Outcome>, String> {
    Ok(match status {
        "running" => None,
        "ok" => Some(Outcome::Ok {
            loss: loss.ok_or_else(|| format!("trial {id}: ok without loss"))?,
            metrics: match metrics {
                Some(m) => serde_json::from_str(&m).map_err(|e| format!("trial {id}: {e}"))?,
                None => Metrics::new(),
            },
        }),
        "nonfinite" => Some(Outcome::Ok { loss: f64::NAN, metrics: Metrics::new() }),
        "crashed" => Some(Outcome::Crashed { message: message.unwrap_or_default() }),
        other => return Err(format!("trial {id}: unknown status `{other}`")),
    })
}

/// A stored row, as read.
pub(crate) struct RawTrial {
    pub(crate) id: i64,
    pub(crate) config_json: String,
    pub(crate) budget: f64,
    pub(crate) bracket: Option<i64>,
    pub(crate) stage: Option<i64>,
    pub(crate) status: String,
    pub(crate) loss: Option<f64>,
    pub(crate) metrics: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) duration: Option<f64>,
    pub(crate) worker: Option<i64>,
    pub(crate) suggest_seq: i64,
    pub(crate) feed_seq: Option<i64>,
    pub(crate) reused_from: Option<i64>,
}

impl RawTrial {
    pub(crate) fn into_record(self) -> Result<TrialRecord, String> {
        let id = self.id;
        let value = serde_json::from_str(&self.config_json).map_err(|e| format!("trial {id}: {e}"))?;
        let config = config_from_json(&value).map_err(|e| format!("trial {id}: {e}"))?;
        let outcome = outcome(id, &self.status, self.loss, self.metrics, self.message)?;
        Ok(TrialRecord {
            trial_id: id as u64,
            config_json: self.config_json,
            config,
            budget: self.budget,
            bracket: self.bracket.map(|b| b as u32),
            stage: self.stage.map(|s| s as u32),
            suggest_seq: self.suggest_seq as u64,
            completion: outcome.map(|outcome| Completion {
                trial_id: id as u64,
                outcome,
                duration_secs: self.duration.unwrap_or(0.0),
                worker: self.worker.map(|w| w as u32),
            }),
            feed_seq: self.feed_seq.map(|s| s as u64),
            reused_from: self.reused_from.map(|r| r as u64),
        })
    }
}

/// "pid N on HOST", how a holder of a study names itself.
pub(crate) fn holder_name() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

/// This machine's name (Linux: the kernel's; elsewhere `HOSTNAME` or `COMPUTERNAME`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}
