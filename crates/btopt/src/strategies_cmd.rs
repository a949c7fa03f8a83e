//! `btopt strategies`: the registry's strategies and parameter tables (design-notes section 6).

use std::ops::Bound;

use anyhow::Result;
use engine::{DynStrategy, ParamKind, ParamSpec, ParamValue, Registry};
use serde_json::{Value, json};

pub(crate) fn run(strategies: &Registry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(&to_json(strategies))?);
        return Ok(());
    }
    for s in strategies.iter() {
        let freqs: Vec<&str> = s.frequencies().iter().map(|f| f.as_str()).collect();
        println!("{} ({})", s.name(), freqs.join(", "));
        for p in s.parameters() {
            println!("  {:<22} {:<12} default {:<8} {}; {}", p.name, p.type_name(), default_text(p), p.domain(), p.doc);
        }
    }
    Ok(())
}

/// `{"strategies": [{"name", "frequencies", "parameters": [{"name", "type", "default",
/// "min"?, "max"?, "choices"?, "doc"}]}]}`.
pub(crate) fn to_json(strategies: &Registry) -> Value {
    json!({ "strategies": strategies.iter().map(|s| strategy_json(&**s)).collect::<Vec<_>>() })
}

fn strategy_json(s: &dyn DynStrategy) -> Value {
    json!({
        "name": s.name(),
        "frequencies": s.frequencies().iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        "parameters": s.parameters().iter().map(param_json).collect::<Vec<_>>(),
    })
}

fn param_json(p: &ParamSpec) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("name".into(), json!(p.name));
    o.insert("type".into(), json!(p.type_name()));
    o.insert(
        "default".into(),
        match p.default_value() {
            ParamValue::Int(i) => json!(i),
            ParamValue::Float(x) => json!(x),
            ParamValue::Choice(_) => json!(default_text(p)),
        },
    );
    match p.kind {
        ParamKind::Integer { min, max, .. } => {
            o.insert("min".into(), json!(min));
            if let Some(max) = max {
                o.insert("max".into(), json!(max));
            }
        }
        // An exclusive bound is still the bound; `doc` and the text listing say which.
        ParamKind::Float { min, max, .. } => {
            if let Bound::Included(x) | Bound::Excluded(x) = min {
                o.insert("min".into(), json!(x));
            }
            if let Bound::Included(x) | Bound::Excluded(x) = max {
                o.insert("max".into(), json!(x));
            }
        }
        ParamKind::Categorical { choices, .. } => {
            o.insert("choices".into(), json!(choices));
        }
    }
    o.insert("doc".into(), json!(format!("{} ({})", p.doc, p.domain())));
    Value::Object(o)
}

fn default_text(p: &ParamSpec) -> String {
    p.render(p.default_value())
}
