//! Spaces and configs held against a strategy's parameter table.
//!
//! The optimizer's spaces know nothing of strategies and the engine knows nothing of spaces,
//! so this glue checks one against the other, once, before any work: every parameter of the
//! space must exist in the strategy's table, with a type that fits and a domain inside the
//! strategy's. After that, each trial's config becomes typed [`ParamValues`] directly, with
//! no text in between.

use engine::{DynStrategy, ParamKind, ParamSpec, ParamValue, ParamValues};
use optimize::{Config, ParamKind as SpaceKind, Space, Value};

use crate::Error;

/// Checks that every parameter of `space` is a parameter of `strategy` whose type and domain
/// admit every value the space can produce. The error is one line naming the parameter and
/// listing the strategy's parameters.
pub fn check_space(strategy: &dyn DynStrategy, space: &Space) -> Result<(), Error> {
    let table = strategy.parameters();
    for p in space.params() {
        let bad =
            |problem: String| Error::Space(format!("space parameter `{}` {problem} ({})", p.name, listing(strategy)));
        let Some(spec) = table.iter().find(|s| s.name == p.name) else {
            return Err(bad(format!("is not a parameter of {}", strategy.name())));
        };
        let outside = |what: String| bad(format!("{what}, but {} takes {}", spec.name, spec.domain()));
        match (&spec.kind, &p.kind) {
            (ParamKind::Integer { .. } | ParamKind::Float { .. }, SpaceKind::Discrete { min, max, .. }) => {
                for x in [*min, *max] {
                    if !spec.admits_number(x as f64) {
                        return Err(outside(format!("reaches {x}")));
                    }
                }
            }
            (ParamKind::Integer { .. }, SpaceKind::Continuous { min, max, step, .. }) => {
                let integral = step.is_some_and(|s| s.fract() == 0.0) && min.fract() == 0.0;
                if !integral {
                    return Err(bad(format!(
                        "is continuous, but {} is an integer parameter (use type = \"discrete\")",
                        spec.name
                    )));
                }
                for x in [*min, *max] {
                    if !spec.admits_number(x) {
                        return Err(outside(format!("reaches {x}")));
                    }
                }
            }
            (ParamKind::Float { .. }, SpaceKind::Continuous { min, max, .. }) => {
                for x in [*min, *max] {
                    if !spec.admits_number(x) {
                        return Err(outside(format!("reaches {x}")));
                    }
                }
            }
            (ParamKind::Categorical { choices, .. }, SpaceKind::Categorical { choices: wanted }) => {
                if let Some(c) = wanted.iter().find(|c| !choices.contains(&c.as_str())) {
                    return Err(outside(format!("has the choice `{c}`")));
                }
            }
            (ParamKind::Categorical { .. }, _) => {
                return Err(bad(format!("is numeric, but {} takes {}", spec.name, spec.domain())));
            }
            (_, SpaceKind::Categorical { .. }) => {
                return Err(bad(format!("is categorical, but {} takes {}", spec.name, spec.domain())));
            }
        }
    }
    Ok(())
}

/// `ma-crossover parameters: short_window, long_window, threshold`, for error lines.
pub fn listing(strategy: &dyn DynStrategy) -> String {
    let names: Vec<&str> = strategy.parameters().iter().map(|p| p.name).collect();
    format!("{} parameters: {}", strategy.name(), names.join(", "))
}

/// The typed values of one trial: `base` (defaults and fixed `--set` values) overridden by
/// every parameter of `config`, each checked against the table.
pub fn params_of(strategy: &dyn DynStrategy, base: &ParamValues, config: &Config) -> Result<ParamValues, Error> {
    let table = strategy.parameters();
    let mut values = *base;
    for (name, value) in config {
        let Some(i) = table.iter().position(|s| s.name == name.as_str()) else {
            return Err(Error::Space(format!("unknown parameter `{name}` ({})", listing(strategy))));
        };
        let v = typed(&table[i], value).ok_or_else(|| {
            Error::Space(format!("invalid {name} {}: expected {}", value.to_json(), table[i].domain()))
        })?;
        values = values.with(i, v);
    }
    strategy.check(&values)?;
    Ok(values)
}

fn typed(spec: &ParamSpec, value: &Value) -> Option<ParamValue> {
    let v = match (&spec.kind, value) {
        (ParamKind::Integer { .. }, Value::Int(i)) => ParamValue::Int(*i),
        (ParamKind::Integer { .. }, Value::Float(x)) if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 => {
            ParamValue::Int(*x as i64)
        }
        (ParamKind::Float { .. }, Value::Int(i)) => ParamValue::Float(*i as f64),
        (ParamKind::Float { .. }, Value::Float(x)) => ParamValue::Float(*x),
        (ParamKind::Categorical { .. }, Value::Str(s)) => ParamValue::Choice(spec.choice_index(s)?),
        _ => return None,
    };
    spec.check(v).ok().map(|()| v)
}

/// The most warm-up any config of `space` can need (see [`engine::Strategy::warmup`]),
/// evaluated at the space's corner of largest numeric values (window-like parameters grow the
/// warm-up as they grow); categorical parameters keep `base`'s value.
pub fn max_warmup(strategy: &dyn DynStrategy, base: &ParamValues, space: &Space) -> Result<usize, Error> {
    let mut corner = Config::new();
    for p in space.params() {
        let v = match &p.kind {
            SpaceKind::Discrete { max, .. } => Value::Int(*max),
            SpaceKind::Continuous { max, .. } => Value::Float(*max),
            SpaceKind::Categorical { .. } => continue,
        };
        corner.insert(p.name.clone(), v);
    }
    let values = params_of(strategy, base, &corner)?;
    Ok(strategy.warmup(&values)?)
}
