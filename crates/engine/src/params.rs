//! Parameter tables and typed parameter values: what a strategy accepts, checked once.

use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The most parameters a strategy may declare. Values live inline in [`ParamValues`], so a
/// task carries them without a heap allocation.
pub const MAX_PARAMS: usize = 16;

/// One entry of a strategy's parameter table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The name used in `--set NAME=VALUE` and space files.
    pub name: &'static str,
    /// Type, default and domain.
    pub kind: ParamKind,
    /// One line for `btopt strategies` and `--help`.
    pub doc: &'static str,
}

/// A parameter's type, default and domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// Whole numbers in `min..=max` (`max` unbounded when `None`).
    Integer {
        /// The value when a run leaves the parameter out.
        default: i64,
        /// Smallest legal value.
        min: i64,
        /// Largest legal value, if any.
        max: Option<i64>,
    },
    /// Finite floats within the bounds.
    Float {
        /// The value when a run leaves the parameter out.
        default: f64,
        /// Lower bound.
        min: Bound<f64>,
        /// Upper bound.
        max: Bound<f64>,
    },
    /// One of a closed set of names.
    Categorical {
        /// Index of the default in `choices`.
        default: u16,
        /// The choices, in documentation order.
        choices: &'static [&'static str],
    },
}

impl ParamSpec {
    /// `"integer"`, `"float"` or `"categorical"`, as `btopt strategies --json` prints it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ParamKind::Integer { .. } => "integer",
            ParamKind::Float { .. } => "float",
            ParamKind::Categorical { .. } => "categorical",
        }
    }

    /// The default value.
    pub fn default_value(&self) -> ParamValue {
        match self.kind {
            ParamKind::Integer { default, .. } => ParamValue::Int(default),
            ParamKind::Float { default, .. } => ParamValue::Float(default),
            ParamKind::Categorical { default, .. } => ParamValue::Choice(default),
        }
    }

    /// The domain in words, e.g. `an integer >= 1` or `one of equal, market_cap`.
    pub fn domain(&self) -> String {
        match self.kind {
            ParamKind::Integer { min, max: None, .. } => format!("an integer >= {min}"),
            ParamKind::Integer { min, max: Some(max), .. } => format!("an integer in {min}..={max}"),
            ParamKind::Float { min, max, .. } => {
                let mut parts = vec![];
                match min {
                    Bound::Included(x) => parts.push(format!(">= {x}")),
                    Bound::Excluded(x) => parts.push(format!("> {x}")),
                    Bound::Unbounded => {}
                }
                match max {
                    Bound::Included(x) => parts.push(format!("<= {x}")),
                    Bound::Excluded(x) => parts.push(format!("< {x}")),
                    Bound::Unbounded => {}
                }
                if parts.is_empty() {
                    "a finite number".into()
                } else {
                    format!("a finite number {}", parts.join(" and "))
                }
            }
            ParamKind::Categorical { choices, .. } => format!("one of {}", choices.join(", ")),
        }
    }

    /// Whether an integer lies in the domain (integer and float parameters).
    pub fn admits_number(&self, x: f64) -> bool {
        match self.kind {
            ParamKind::Integer { min, max, .. } => {
                x.is_finite() && x.fract() == 0.0 && x >= min as f64 && max.is_none_or(|m| x <= m as f64)
            }
            ParamKind::Float { min, max, .. } => x.is_finite() && within(x, min, max),
            ParamKind::Categorical { .. } => false,
        }
    }

    /// The index of `choice` (categorical parameters).
    pub fn choice_index(&self, choice: &str) -> Option<u16> {
        match self.kind {
            ParamKind::Categorical { choices, .. } => choices.iter().position(|c| *c == choice).map(|i| i as u16),
            _ => None,
        }
    }

    /// Checks a typed value against the type and domain.
    pub fn check(&self, value: ParamValue) -> Result<(), Error> {
        let ok = match (self.kind, value) {
            (ParamKind::Integer { .. }, ParamValue::Int(i)) => self.admits_number(i as f64),
            (ParamKind::Float { .. }, ParamValue::Float(x)) => self.admits_number(x),
            (ParamKind::Categorical { choices, .. }, ParamValue::Choice(c)) => usize::from(c) < choices.len(),
            _ => false,
        };
        if ok { Ok(()) } else { Err(self.invalid(&self.render(value))) }
    }

    /// Parses `text` (from `--set` or a space) into a checked value. Integers accept `50`,
    /// and also `50.0` or `5e1`, because optimizers may format integers as floats.
    pub fn parse(&self, text: &str) -> Result<ParamValue, Error> {
        let t = text.trim();
        let value = match self.kind {
            ParamKind::Integer { .. } => match t.parse::<i64>() {
                Ok(i) => ParamValue::Int(i),
                Err(_) => {
                    let x: f64 = t.parse().map_err(|_| self.invalid(text))?;
                    // 2^53 bounds the integers an f64 holds exactly.
                    if !(x.is_finite() && x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0) {
                        return Err(self.invalid(text));
                    }
                    ParamValue::Int(x as i64)
                }
            },
            ParamKind::Float { .. } => ParamValue::Float(t.parse().map_err(|_| self.invalid(text))?),
            ParamKind::Categorical { .. } => {
                ParamValue::Choice(self.choice_index(t).ok_or_else(|| self.invalid(text))?)
            }
        };
        self.check(value).map_err(|_| self.invalid(text))?;
        Ok(value)
    }

    /// The value as `--set` would spell it: integers as integers, floats in Rust's shortest
    /// round-trip form, choices by name.
    pub fn render(&self, value: ParamValue) -> String {
        match (self.kind, value) {
            (ParamKind::Categorical { choices, .. }, ParamValue::Choice(c)) => {
                choices.get(usize::from(c)).map_or_else(|| format!("choice #{c}"), |s| s.to_string())
            }
            (_, v) => v.to_string(),
        }
    }

    fn invalid(&self, value: &str) -> Error {
        Error::InvalidParameter { name: self.name.to_string(), value: value.to_string(), expected: self.domain() }
    }
}

fn within(x: f64, min: Bound<f64>, max: Bound<f64>) -> bool {
    let lo = match min {
        Bound::Included(m) => x >= m,
        Bound::Excluded(m) => x > m,
        Bound::Unbounded => true,
    };
    let hi = match max {
        Bound::Included(m) => x <= m,
        Bound::Excluded(m) => x < m,
        Bound::Unbounded => true,
    };
    lo && hi
}

/// One typed parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    /// An integer parameter's value.
    Int(i64),
    /// A float parameter's value.
    Float(f64),
    /// A categorical parameter's value: an index into its choices.
    Choice(u16),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Choice(c) => write!(f, "#{c}"),
        }
    }
}

/// A strategy's parameter values in table order, each checked against its [`ParamSpec`].
///
/// Inline and `Copy`, so tasks carry them across the process boundary without allocating.
/// Build it with [`ParamValues::from_pairs`] or [`ParamValues::builder`]; a strategy reads it
/// by position ([`ParamValues::int`], [`ParamValues::float`], [`ParamValues::choice`]) in
/// its `build`.
#[derive(Clone, Copy, PartialEq)]
pub struct ParamValues {
    len: u8,
    values: [ParamValue; MAX_PARAMS],
}

/// Serialised as a sequence of the used values only (postcard: one length byte, then each
/// value's tag and varint), so a task of a 3-parameter strategy carries about 10 bytes.
impl Serialize for ParamValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.as_slice().len()))?;
        for v in self.as_slice() {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ParamValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ParamValues, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = ParamValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_PARAMS} parameter values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ParamValues, A::Error> {
                let mut out = ParamValues { len: 0, values: [ParamValue::Int(0); MAX_PARAMS] };
                while let Some(v) = seq.next_element::<ParamValue>()? {
                    if usize::from(out.len) == MAX_PARAMS {
                        return Err(serde::de::Error::invalid_length(MAX_PARAMS + 1, &self));
                    }
                    out.values[usize::from(out.len)] = v;
                    out.len += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq)
    }
}

impl fmt::Debug for ParamValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl ParamValues {
    /// The defaults of `table`.
    pub fn defaults(table: &[ParamSpec]) -> ParamValues {
        let mut values = [ParamValue::Int(0); MAX_PARAMS];
        for (v, p) in values.iter_mut().zip(table) {
            *v = p.default_value();
        }
        ParamValues { len: table.len().min(MAX_PARAMS) as u8, values }
    }

    /// Parses `NAME=VALUE` pairs against `table`, filling defaults for everything left out.
    /// `strategy` names the strategy in errors.
    pub fn from_pairs(strategy: &str, table: &[ParamSpec], pairs: &[(String, String)]) -> Result<ParamValues, Error> {
        let mut b = ParamValues::builder(strategy, table);
        for (k, v) in pairs {
            b.set_text(k, v)?;
        }
        Ok(b.finish())
    }

    /// A builder starting from the defaults of `table`.
    pub fn builder<'t>(strategy: &str, table: &'t [ParamSpec]) -> ParamValuesBuilder<'t> {
        ParamValuesBuilder { strategy: strategy.to_string(), table, values: ParamValues::defaults(table), set: 0 }
    }

    /// The values, in table order.
    pub fn as_slice(&self) -> &[ParamValue] {
        &self.values[..usize::from(self.len)]
    }

    /// The value at `index` as an integer. Panics if the table declares another type there,
    /// which is a bug in the strategy, not bad input (values are checked on construction).
    pub fn int(&self, index: usize) -> i64 {
        match self.values[index] {
            ParamValue::Int(i) => i,
            other => panic!("parameter #{index} is {other:?}, not an integer"),
        }
    }

    /// The value at `index` as a float (see [`ParamValues::int`]).
    pub fn float(&self, index: usize) -> f64 {
        match self.values[index] {
            ParamValue::Float(x) => x,
            other => panic!("parameter #{index} is {other:?}, not a float"),
        }
    }

    /// The value at `index` as a choice index (see [`ParamValues::int`]).
    pub fn choice(&self, index: usize) -> u16 {
        match self.values[index] {
            ParamValue::Choice(c) => c,
            other => panic!("parameter #{index} is {other:?}, not a choice"),
        }
    }

    /// These values with the one at `index` replaced, unchecked: call
    /// [`ParamValues::check`] (or build a [`crate::Configured`]) afterwards. Panics if
    /// `index` is past the table.
    pub fn with(mut self, index: usize, value: ParamValue) -> ParamValues {
        assert!(index < usize::from(self.len), "parameter #{index} is past the table of {}", self.len);
        self.values[index] = value;
        self
    }

    /// Checks every value against `table` (values that crossed a process boundary).
    pub fn check(&self, table: &[ParamSpec]) -> Result<(), Error> {
        if usize::from(self.len) != table.len() {
            return Err(Error::InvalidOptions(format!("{} parameter values for a table of {}", self.len, table.len())));
        }
        table.iter().zip(self.as_slice()).try_for_each(|(p, v)| p.check(*v))
    }

    /// `(name, value)` pairs in table order, rendered as `--set` spells them; feeding them
    /// back to [`ParamValues::from_pairs`] gives the same values.
    pub fn to_pairs(&self, table: &[ParamSpec]) -> Vec<(&'static str, String)> {
        table.iter().zip(self.as_slice()).map(|(p, v)| (p.name, p.render(*v))).collect()
    }
}

/// Sets parameters one by one, by name; see [`ParamValues::builder`].
#[derive(Debug)]
pub struct ParamValuesBuilder<'t> {
    strategy: String,
    table: &'t [ParamSpec],
    values: ParamValues,
    /// Bit `i` set once parameter `i` has been given.
    set: u32,
}

impl ParamValuesBuilder<'_> {
    /// The index of parameter `name`, or the error that lists the strategy's parameters.
    pub fn index_of(&self, name: &str) -> Result<usize, Error> {
        self.table.iter().position(|p| p.name == name).ok_or_else(|| Error::UnknownParameter {
            strategy: self.strategy.clone(),
            name: name.to_string(),
            expected: self.table.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })
    }

    fn mark(&mut self, i: usize) -> Result<(), Error> {
        if self.set & (1 << i) != 0 {
            return Err(Error::DuplicateParameter { name: self.table[i].name.to_string() });
        }
        self.set |= 1 << i;
        Ok(())
    }

    /// Sets `name` from text.
    pub fn set_text(&mut self, name: &str, text: &str) -> Result<&mut Self, Error> {
        let i = self.index_of(name)?;
        let v = self.table[i].parse(text)?;
        self.mark(i)?;
        self.values.values[i] = v;
        Ok(self)
    }

    /// Sets `name` from a number: an integer parameter takes a whole number, a float any.
    pub fn set_number(&mut self, name: &str, x: f64) -> Result<&mut Self, Error> {
        let i = self.index_of(name)?;
        let p = &self.table[i];
        let v = match p.kind {
            ParamKind::Integer { .. } if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 => {
                ParamValue::Int(x as i64)
            }
            ParamKind::Float { .. } => ParamValue::Float(x),
            _ => return Err(p.invalid(&x.to_string())),
        };
        p.check(v)?;
        self.mark(i)?;
        self.values.values[i] = v;
        Ok(self)
    }

    /// Sets `name` to one of its choices.
    pub fn set_choice(&mut self, name: &str, choice: &str) -> Result<&mut Self, Error> {
        let i = self.index_of(name)?;
        let p = &self.table[i];
        let c = p.choice_index(choice).ok_or_else(|| p.invalid(choice))?;
        self.mark(i)?;
        self.values.values[i] = ParamValue::Choice(c);
        Ok(self)
    }

    /// The values.
    pub fn finish(&self) -> ParamValues {
        self.values
    }
}
