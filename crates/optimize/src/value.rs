//! Parameter values and configs, and their renderings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One parameter value. Externally tagged so that it survives non-self-describing formats
/// (postcard) when a config travels to a worker inside a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A discrete (integer) parameter value.
    Int(i64),
    /// A continuous parameter value.
    Float(f64),
    /// A categorical choice.
    Str(String),
}

impl Value {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(_) => None,
        }
    }

    /// Render for the backtest engine's parser: integers as integers, floats with Rust's
    /// shortest round-trip `{}` formatting, strings verbatim.
    pub fn render(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
        }
    }

    /// Plain JSON (`5`, `0.01`, `"equal"`), as the CLI and the trial store write it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Value::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Value> {
        match v {
            serde_json::Value::Number(n) if n.is_i64() => n.as_i64().map(Value::Int),
            serde_json::Value::Number(n) => n.as_f64().map(Value::Float),
            serde_json::Value::String(s) => Some(Value::Str(s.clone())),
            _ => None,
        }
    }
}

/// A configuration: parameter name to value, in name order.
pub type Config = BTreeMap<String, Value>;

/// Render a config as `(name, string)` pairs for the backtest engine's `--set` style parser.
pub fn render_pairs(config: &Config) -> Vec<(String, String)> {
    config.iter().map(|(k, v)| (k.clone(), v.render())).collect()
}

/// A config as a plain JSON object (`{"short_window": 5, "threshold": 0.01}`).
pub fn config_to_json(config: &Config) -> serde_json::Value {
    serde_json::Value::Object(config.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// A config that serializes as its plain JSON object, exactly as [`config_to_json`] renders it,
/// without building a [`serde_json::Value`] first: for what is written once per trial (the
/// stores' config column, the CLI's trials).
#[derive(Debug, Clone, Copy)]
pub struct PlainConfig<'a>(pub &'a Config);

impl Serialize for PlainConfig<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                Value::Int(i) => map.serialize_entry(k, i)?,
                // JSON has no NaN or infinity: `to_json` makes them null.
                Value::Float(f) if f.is_finite() => map.serialize_entry(k, f)?,
                Value::Float(_) => map.serialize_entry(k, &())?,
                Value::Str(x) => map.serialize_entry(k, x)?,
            }
        }
        map.end()
    }
}

/// A config's plain JSON text, exactly `config_to_json(config).to_string()` (the text the trial
/// stores write and compare on resume).
pub fn config_json_text(config: &Config) -> String {
    serde_json::to_string(&PlainConfig(config)).expect("a config is JSON")
}

/// Parse a plain JSON object back into a config. JSON integers become `Int`, other numbers
/// `Float` (serde_json keeps `1.0` a float), strings `Str`.
pub fn config_from_json(json: &serde_json::Value) -> Result<Config> {
    let obj = json.as_object().ok_or_else(|| Error::InvalidConfig(format!("expected a JSON object, got {json}")))?;
    obj.iter()
        .map(|(k, v)| {
            Value::from_json(v)
                .map(|v| (k.clone(), v))
                .ok_or_else(|| Error::InvalidConfig(format!("`{k}` has unsupported value {v}")))
        })
        .collect()
}
