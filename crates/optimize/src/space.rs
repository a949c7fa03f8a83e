//! Parameter spaces: definitions, validation, TOML files, the lazy grid and its index ↔ config
//! bijection, unit-cube encoding and seeded sampling.
//!
//! Grid order is mixed-radix over the parameters in declaration order, the first parameter
//! most significant and the last varying fastest (like nested loops, or `itertools.product`).
//! Constraints filter the grid: [`Space::cardinality`] counts the unconstrained grid exactly,
//! [`Space::grid`] yields only feasible configs.
//!
//! Unit-cube encoding: a parameter with `n` levels (discrete, stepped continuous, categorical)
//! maps level `k` to the centre of its cell, `(k + 0.5) / n`, and decodes `u` to
//! `min(floor(u·n), n−1)`, so every level owns an equal share of `[0, 1]` (as ConfigSpace does
//! for integers). A truly continuous parameter maps linearly, or linearly in `ln x` when `log`.

use std::path::Path;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::value::{Config, Value};

/// What kind of values a parameter takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ParamKind {
    /// Integers `min, min+step, …, max`.
    Discrete {
        /// Smallest value.
        min: i64,
        /// Largest value; `max − min` must be a multiple of `step`.
        max: i64,
        /// Distance between values, > 0.
        step: i64,
    },
    /// Floats in `[min, max]`; with `step`, only `min + k·step` (a grid), and with `log`, sampled
    /// and encoded uniformly in `ln x` (requires `min > 0`, not combinable with `step`).
    Continuous {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// Optional grid step; must divide `max − min`.
        step: Option<f64>,
        /// Log scale.
        log: bool,
    },
    /// One of at least two distinct strings.
    Categorical {
        /// The choices, in order.
        choices: Vec<String>,
    },
}

/// A named parameter. Build one with [`Param::discrete`], [`Param::continuous`],
/// [`Param::categorical`]; [`Space::new`] validates it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    /// The parameter's name.
    pub name: String,
    /// Its kind and range.
    pub kind: ParamKind,
    #[serde(skip)]
    decimals: usize,
}

impl Param {
    /// A discrete (integer) parameter.
    pub fn discrete(name: &str, min: i64, max: i64, step: i64) -> Param {
        Param { name: name.to_owned(), kind: ParamKind::Discrete { min, max, step }, decimals: 0 }
    }

    /// A continuous parameter, optionally stepped or log-scaled.
    pub fn continuous(name: &str, min: f64, max: f64, step: Option<f64>, log: bool) -> Param {
        Param { name: name.to_owned(), kind: ParamKind::Continuous { min, max, step, log }, decimals: 0 }
    }

    /// A categorical parameter.
    pub fn categorical(name: &str, choices: &[&str]) -> Param {
        Param {
            name: name.to_owned(),
            kind: ParamKind::Categorical { choices: choices.iter().map(|c| (*c).to_owned()).collect() },
            decimals: 0,
        }
    }

    /// Whether the parameter is categorical (BOHB gives those an Aitchison-Aitken kernel).
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, ParamKind::Categorical { .. })
    }

    /// Number of distinct values, or `None` for a truly continuous parameter.
    pub fn levels(&self) -> Option<u128> {
        match &self.kind {
            ParamKind::Discrete { min, max, step } => Some(((*max as i128 - *min as i128) / *step as i128) as u128 + 1),
            ParamKind::Continuous { min, max, step: Some(step), .. } => Some(((max - min) / step).round() as u128 + 1),
            ParamKind::Continuous { step: None, .. } => None,
            ParamKind::Categorical { choices } => Some(choices.len() as u128),
        }
    }

    /// The value of level `k` (< [`Param::levels`]). Stepped floats are rounded to the decimals
    /// of `min` and `step`, so `0.1 + 2·0.1` is `0.3`, not `0.30000000000000004`.
    pub fn value_at(&self, k: u128) -> Value {
        match &self.kind {
            ParamKind::Discrete { min, step, .. } => Value::Int(min + (k as i64) * step),
            ParamKind::Continuous { min, step: Some(step), .. } => {
                Value::Float(round_decimals(min + (k as f64) * step, self.decimals))
            }
            ParamKind::Continuous { min, .. } => Value::Float(*min),
            ParamKind::Categorical { choices } => Value::Str(choices[k as usize].clone()),
        }
    }

    /// The level of `value`, if it is one of this parameter's grid values.
    pub fn level_of(&self, value: &Value) -> Option<u128> {
        match (&self.kind, value) {
            (ParamKind::Discrete { min, max, step }, Value::Int(v)) => {
                (v >= min && v <= max && (v - min) % step == 0).then(|| ((v - min) / step) as u128)
            }
            (ParamKind::Continuous { min, max, step: Some(step), .. }, Value::Float(v)) => {
                if !(v.is_finite() && *v >= min - step * 1e-9 && *v <= max + step * 1e-9) {
                    return None;
                }
                let k = ((v - min) / step).round() as u128;
                let back = self.value_at(k).as_f64()?;
                ((back - v).abs() <= step * 1e-9).then_some(k)
            }
            (ParamKind::Categorical { choices }, Value::Str(s)) => {
                choices.iter().position(|c| c == s).map(|p| p as u128)
            }
            _ => None,
        }
    }

    fn contains(&self, value: &Value) -> bool {
        match (&self.kind, value) {
            (ParamKind::Continuous { min, max, step: None, .. }, Value::Float(v)) => {
                v.is_finite() && v >= min && v <= max
            }
            _ => self.level_of(value).is_some(),
        }
    }

    fn encode(&self, value: &Value) -> Option<f64> {
        match (&self.kind, value) {
            (ParamKind::Continuous { min, max, step: None, log }, Value::Float(v)) => {
                if *log {
                    Some((v.ln() - min.ln()) / (max.ln() - min.ln()))
                } else {
                    Some((v - min) / (max - min))
                }
            }
            _ => {
                let n = self.levels()?;
                self.level_of(value).map(|k| (k as f64 + 0.5) / n as f64)
            }
        }
    }

    fn decode(&self, u: f64) -> Value {
        let u = if u.is_nan() { 0.5 } else { u.clamp(0.0, 1.0) };
        match (&self.kind, self.levels()) {
            (ParamKind::Continuous { min, max, log, .. }, None) => {
                let x = if *log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
                Value::Float(x.clamp(*min, *max))
            }
            (_, Some(n)) => {
                let k = ((u * n as f64).floor() as u128).min(n - 1);
                self.value_at(k)
            }
            (_, None) => unreachable!("only continuous parameters lack levels"),
        }
    }

    fn validate(&mut self) -> Result<()> {
        let bad = |problem: String| Error::InvalidParameter { param: self.name.clone(), problem };
        if self.name.trim().is_empty() {
            return Err(Error::InvalidSpace("a parameter has an empty name".into()));
        }
        match &self.kind {
            ParamKind::Discrete { min, max, step } => {
                if min >= max {
                    return Err(bad(format!("min ({min}) must be less than max ({max})")));
                }
                if *step <= 0 {
                    return Err(bad(format!("step ({step}) must be positive")));
                }
                if (*max as i128 - *min as i128) % *step as i128 != 0 {
                    return Err(bad(format!("step ({step}) does not divide the range {min}..{max}")));
                }
            }
            ParamKind::Continuous { min, max, step, log } => {
                if !min.is_finite() || !max.is_finite() {
                    return Err(bad("min and max must be finite".into()));
                }
                if min >= max {
                    return Err(bad(format!("min ({min}) must be less than max ({max})")));
                }
                if *log && *min <= 0.0 {
                    return Err(bad(format!("log scale needs min > 0, got {min}")));
                }
                if let Some(step) = step {
                    if *log {
                        return Err(bad("log scale cannot be combined with step".into()));
                    }
                    if !step.is_finite() || *step <= 0.0 {
                        return Err(bad(format!("step ({step}) must be positive")));
                    }
                    let ratio = (max - min) / step;
                    if (ratio - ratio.round()).abs() > 1e-9 * ratio.max(1.0) {
                        return Err(bad(format!("step ({step}) does not divide the range {min}..{max}")));
                    }
                    if ratio.round() >= 2f64.powi(100) {
                        return Err(bad("too many steps".into()));
                    }
                    self.decimals = decimals(*min).max(decimals(*step));
                }
            }
            ParamKind::Categorical { choices } => {
                if choices.len() < 2 {
                    return Err(bad(format!("needs at least 2 choices, got {}", choices.len())));
                }
                for (i, c) in choices.iter().enumerate() {
                    if choices[..i].contains(c) {
                        return Err(bad(format!("duplicate choice `{c}`")));
                    }
                }
            }
        }
        Ok(())
    }
}

fn decimals(x: f64) -> usize {
    let s = format!("{}", x.abs());
    s.find('.').map_or(0, |p| s.len() - p - 1).min(15)
}

fn round_decimals(x: f64, d: usize) -> f64 {
    format!("{x:.d$}").parse().unwrap_or(x)
}

/// A comparison operator in a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Param(usize),
    Number(f64),
}

/// A validated constraint such as `short_window < long_window` or `threshold <= 0.05`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    expr: String,
    lhs: Operand,
    op: CmpOp,
    rhs: Operand,
}

impl Constraint {
    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    fn parse(expr: &str, params: &[Param]) -> Result<Constraint> {
        let bad = |m: String| Error::InvalidSpace(format!("constraint `{expr}`: {m}"));
        let ops: [(&str, CmpOp); 6] = [
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ];
        let (pos, tok, op) = ops
            .iter()
            .filter_map(|(t, op)| expr.find(t).map(|p| (p, *t, *op)))
            .min_by_key(|(p, t, _)| (*p, std::cmp::Reverse(t.len())))
            .ok_or_else(|| bad("expected `a OP b` with OP one of < <= > >= == !=".into()))?;
        let operand = |s: &str| -> Result<Operand> {
            let s = s.trim();
            if s.is_empty() {
                return Err(bad("missing operand".into()));
            }
            if let Ok(x) = s.parse::<f64>() {
                return Ok(Operand::Number(x));
            }
            let i = params.iter().position(|p| p.name == s).ok_or_else(|| bad(format!("unknown parameter `{s}`")))?;
            if params[i].is_categorical() {
                return Err(bad(format!("categorical parameter `{s}` cannot be compared")));
            }
            Ok(Operand::Param(i))
        };
        let lhs = operand(&expr[..pos])?;
        let rhs = operand(&expr[pos + tok.len()..])?;
        if ops.iter().any(|(t, _)| expr[pos + tok.len()..].contains(t)) {
            return Err(bad("only one comparison per constraint; add more [[constraint]]".into()));
        }
        Ok(Constraint { expr: expr.trim().to_owned(), lhs, op, rhs })
    }

    fn holds(&self, values: &[Value]) -> bool {
        let get = |o: &Operand| match o {
            Operand::Param(i) => values[*i].as_f64().unwrap_or(f64::NAN),
            Operand::Number(x) => *x,
        };
        let (a, b) = (get(&self.lhs), get(&self.rhs));
        match self.op {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// A validated parameter space.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    params: Vec<Param>,
    constraints: Vec<Constraint>,
}

/// How many times [`Space::sample`] retries before concluding that the constraints reject
/// (nearly) the whole space.
const MAX_REJECTIONS: usize = 100_000;

impl Space {
    /// Validate parameters and constraints. Errors name the parameter and the problem:
    /// min ≥ max, step ≤ 0, step not dividing the range, fewer than 2 choices, duplicate
    /// names, unknown names in a constraint.
    pub fn new(params: Vec<Param>, constraints: &[&str]) -> Result<Space> {
        let mut params = params;
        if params.is_empty() {
            return Err(Error::InvalidSpace("a space needs at least one parameter".into()));
        }
        for i in 0..params.len() {
            if params[..i].iter().any(|p| p.name == params[i].name) {
                return Err(Error::InvalidParameter {
                    param: params[i].name.clone(),
                    problem: "duplicate parameter name".into(),
                });
            }
            params[i].validate()?;
        }
        let constraints = constraints.iter().map(|c| Constraint::parse(c, &params)).collect::<Result<Vec<_>>>()?;
        let space = Space { params, constraints };
        space.cardinality_checked()?;
        Ok(space)
    }

    /// Parse a space from TOML (see the design notes, "Space files").
    pub fn from_toml_str(text: &str) -> Result<Space> {
        let file: SpaceFile = toml::from_str(text).map_err(|e| Error::InvalidSpace(e.to_string()))?;
        let params = file
            .parameter
            .into_iter()
            .map(|p| match p {
                ParamFile::Discrete { name, min, max, step } => Param::discrete(&name, min, max, step.unwrap_or(1)),
                ParamFile::Continuous { name, min, max, step, log } => {
                    Param::continuous(&name, min, max, step, log.unwrap_or(false))
                }
                ParamFile::Categorical { name, choices } => {
                    Param { name, kind: ParamKind::Categorical { choices }, decimals: 0 }
                }
            })
            .collect();
        let exprs: Vec<&str> = file.constraint.iter().map(|c| c.expr.as_str()).collect();
        Space::new(params, &exprs)
    }

    /// Read and parse a space file; errors carry the path.
    pub fn from_toml_file(path: &Path) -> Result<Space> {
        let with_path = |message: String| Error::SpaceFile { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path).map_err(|e| with_path(e.to_string()))?;
        Space::from_toml_str(&text).map_err(|e| with_path(e.to_string()))
    }

    /// The parameters, in declaration order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The constraints.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Number of parameters.
    pub fn dims(&self) -> usize {
        self.params.len()
    }

    fn cardinality_checked(&self) -> Result<Option<u128>> {
        let mut n: u128 = 1;
        for p in &self.params {
            match p.levels() {
                None => return Ok(None),
                Some(l) => {
                    n = n
                        .checked_mul(l)
                        .ok_or_else(|| Error::InvalidSpace("the grid has more than 2^128 points".into()))?
                }
            }
        }
        Ok(Some(n))
    }

    /// Exact size of the unconstrained grid, or `None` if a parameter is truly continuous.
    pub fn cardinality(&self) -> Option<u128> {
        self.cardinality_checked().ok().flatten()
    }

    /// Count the grid points that satisfy the constraints by walking the grid (O(cardinality)).
    pub fn count_feasible(&self) -> Option<u128> {
        self.cardinality()?;
        Some(self.grid().count() as u128)
    }

    /// The config at grid index `index` (< cardinality), ignoring constraints.
    pub fn config_at(&self, index: u128) -> Result<Config> {
        let card = self.cardinality().ok_or_else(|| Error::InvalidConfig("a continuous space has no grid".into()))?;
        if index >= card {
            return Err(Error::InvalidConfig(format!("grid index {index} ≥ cardinality {card}")));
        }
        Ok(self.to_config(self.values_at(index)))
    }

    /// The values of grid point `index` (< the cardinality), in declaration order.
    fn values_at(&self, index: u128) -> Vec<Value> {
        let mut rest = index;
        let mut values = vec![Value::Int(0); self.params.len()];
        for (i, p) in self.params.iter().enumerate().rev() {
            let n = p.levels().unwrap_or(1);
            values[i] = p.value_at(rest % n);
            rest /= n;
        }
        values
    }

    /// The first feasible grid point at or after `index`, with its index: what a grid search
    /// suggests next. Infeasible points are skipped without building their configs.
    pub(crate) fn next_feasible(&self, mut index: u128) -> Option<(u128, Config)> {
        let card = self.cardinality()?;
        while index < card {
            let values = self.values_at(index);
            if self.constraints.iter().all(|c| c.holds(&values)) {
                return Some((index, self.to_config(values)));
            }
            index += 1;
        }
        None
    }

    /// The grid index of `config`; the inverse of [`Space::config_at`].
    pub fn index_of(&self, config: &Config) -> Result<u128> {
        let values = self.values_of(config)?;
        let mut index: u128 = 0;
        for (p, v) in self.params.iter().zip(&values) {
            let n =
                p.levels().ok_or_else(|| Error::InvalidConfig(format!("`{}` is continuous; no grid index", p.name)))?;
            let k = p
                .level_of(v)
                .ok_or_else(|| Error::InvalidConfig(format!("`{}` = {} is not a grid value", p.name, v.render())))?;
            index = index * n + k;
        }
        Ok(index)
    }

    /// The lazy grid in index order, skipping configs that violate a constraint. Empty for a
    /// space with a truly continuous parameter.
    pub fn grid(&self) -> Grid<'_> {
        Grid { space: self, next: 0, end: self.cardinality().unwrap_or(0) }
    }

    /// Check that `config` names exactly this space's parameters with admissible values.
    pub fn validate_config(&self, config: &Config) -> Result<()> {
        self.values_of(config).map(|_| ())
    }

    fn values_of(&self, config: &Config) -> Result<Vec<Value>> {
        if config.len() != self.params.len() {
            return Err(Error::InvalidConfig(format!(
                "expected {} parameters, got {}",
                self.params.len(),
                config.len()
            )));
        }
        self.params
            .iter()
            .map(|p| {
                let v = config.get(&p.name).ok_or_else(|| Error::InvalidConfig(format!("missing `{}`", p.name)))?;
                if !p.contains(v) {
                    return Err(Error::InvalidConfig(format!("`{}` = {} is outside the space", p.name, v.render())));
                }
                Ok(v.clone())
            })
            .collect()
    }

    fn to_config(&self, values: Vec<Value>) -> Config {
        self.params.iter().map(|p| p.name.clone()).zip(values).collect()
    }

    /// Whether `config` satisfies every constraint (it must belong to the space).
    pub fn is_feasible(&self, config: &Config) -> bool {
        let values: Vec<Value> =
            self.params.iter().map(|p| config.get(&p.name).cloned().unwrap_or(Value::Int(0))).collect();
        self.constraints.iter().all(|c| c.holds(&values))
    }

    /// Encode on the unit cube, one coordinate per parameter in declaration order.
    pub fn encode(&self, config: &Config) -> Result<Vec<f64>> {
        let values = self.values_of(config)?;
        Ok(self.params.iter().zip(&values).map(|(p, v)| p.encode(v).unwrap_or(0.5)).collect())
    }

    /// Decode a unit-cube point (coordinates are clamped to `[0, 1]`).
    pub fn decode(&self, u: &[f64]) -> Config {
        let values = self.params.iter().zip(u).map(|(p, x)| p.decode(*x)).collect();
        self.to_config(values)
    }

    /// Sample uniformly on the unit cube, ignoring constraints.
    pub fn sample_unconstrained<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Config {
        let values = self
            .params
            .iter()
            .map(|p| match p.levels() {
                Some(n) => p.value_at(rng.random_range(0..n)),
                None => p.decode(rng.random::<f64>()),
            })
            .collect();
        self.to_config(values)
    }

    /// Sample a feasible config by rejection; fails if the constraints reject
    /// 100,000 draws in a row.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Result<Config> {
        for _ in 0..MAX_REJECTIONS {
            let c = self.sample_unconstrained(rng);
            if self.is_feasible(&c) {
                return Ok(c);
            }
        }
        Err(Error::InvalidSpace(format!("the constraints rejected {MAX_REJECTIONS} random configs in a row")))
    }

    /// A canonical JSON description, part of a study's identity.
    pub fn identity_json(&self) -> serde_json::Value {
        serde_json::json!({
            "parameters": serde_json::to_value(&self.params).unwrap_or_default(),
            "constraints": self.constraints.iter().map(|c| c.expr.clone()).collect::<Vec<_>>(),
        })
    }
}

/// The lazy, constraint-filtered grid; see [`Space::grid`].
#[derive(Debug, Clone)]
pub struct Grid<'a> {
    space: &'a Space,
    next: u128,
    end: u128,
}

impl Iterator for Grid<'_> {
    type Item = Config;

    fn next(&mut self) -> Option<Config> {
        while self.next < self.end {
            let c = self.space.config_at(self.next).ok()?;
            self.next += 1;
            if self.space.is_feasible(&c) {
                return Some(c);
            }
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    #[serde(default)]
    parameter: Vec<ParamFile>,
    #[serde(default)]
    constraint: Vec<ConstraintFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintFile {
    expr: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ParamFile {
    Discrete { name: String, min: i64, max: i64, step: Option<i64> },
    Continuous { name: String, min: f64, max: f64, step: Option<f64>, log: Option<bool> },
    Categorical { name: String, choices: Vec<String> },
}
