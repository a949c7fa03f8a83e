//! Strategy parameters: typed, serialisable, parsed from `NAME=VALUE` pairs with defaults.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A strategy with all its parameters.
///
/// It derives serde because pool tasks carry it across the process boundary; the default
/// externally tagged layout is used because postcard cannot read internally tagged enums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// `ma-crossover`: per-asset long/flat on two simple moving averages.
    MaCrossover(MaCrossover),
    /// `momentum`: periodic top-N rebalancing with shared cash.
    Momentum(Momentum),
}

/// MA-crossover parameters. Defaults: short 10, long 50, threshold 0.
///
/// Long when `SMA_short > SMA_long·(1+threshold)`, flat when
/// `SMA_short < SMA_long·(1−threshold)`, otherwise the previous target holds.
/// `short_window ≥ long_window` is legal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaCrossover {
    /// Bars in the short SMA, ≥ 1.
    pub short_window: usize,
    /// Bars in the long SMA, ≥ 1.
    pub long_window: usize,
    /// Relative band half-width, finite and ≥ 0.
    pub threshold: f64,
}

impl Default for MaCrossover {
    fn default() -> Self {
        MaCrossover { short_window: 10, long_window: 50, threshold: 0.0 }
    }
}

/// How momentum weights its target set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightingScheme {
    /// `1/k` each.
    Equal,
    /// `close · shares_outstanding`, normalised.
    MarketCap,
    /// `1/vol`, normalised.
    RiskParity,
}

impl WeightingScheme {
    /// The name used in `--set weighting_scheme=…` and in space files.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightingScheme::Equal => "equal",
            WeightingScheme::MarketCap => "market_cap",
            WeightingScheme::RiskParity => "risk_parity",
        }
    }
}

/// Momentum parameters (the guidance's 8-parameter Option 2). Daily markets only.
///
/// Defaults, chosen inside the guidance's search ranges so that a bare run is sensible:
/// lookback_period 60, holding_period 5, rebalance_frequency 5, weighting_scheme equal,
/// top_n_assets 10, volatility_threshold 0.5, min_position_size 1, max_position_size 20.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Momentum {
    /// Sessions in the score and volatility lookback, ≥ 2 (volatility needs two returns).
    pub lookback_period: usize,
    /// Minimum sessions a new position stays in the target set, ≥ 1.
    pub holding_period: usize,
    /// Sessions between rebalances, ≥ 1.
    pub rebalance_frequency: usize,
    /// Weighting over the target set.
    pub weighting_scheme: WeightingScheme,
    /// How many assets to select, ≥ 1.
    pub top_n_assets: usize,
    /// Annualised volatility above which an asset is excluded, > 0.
    pub volatility_threshold: f64,
    /// Weights below this percent of portfolio value are dropped, ≥ 0.
    pub min_position_size: f64,
    /// Weights are capped at this percent of portfolio value, > 0.
    pub max_position_size: f64,
}

impl Default for Momentum {
    fn default() -> Self {
        Momentum {
            lookback_period: 60,
            holding_period: 5,
            rebalance_frequency: 5,
            weighting_scheme: WeightingScheme::Equal,
            top_n_assets: 10,
            volatility_threshold: 0.5,
            min_position_size: 1.0,
            max_position_size: 20.0,
        }
    }
}

const MA_PARAMS: &str = "short_window, long_window, threshold";
const MOMENTUM_PARAMS: &str = "lookback_period, holding_period, rebalance_frequency, \
     weighting_scheme, top_n_assets, volatility_threshold, min_position_size, max_position_size";

impl Strategy {
    /// The strategy names accepted by [`Strategy::from_pairs`].
    pub const NAMES: [&'static str; 2] = ["ma-crossover", "momentum"];

    /// Parses `--set NAME=VALUE` pairs for strategy `name`, filling defaults for anything
    /// left out, and validates the result.
    ///
    /// Integer parameters accept `"50"` and also `"50.0"` or `"5e1"`, because optimizers may
    /// format integers as floats; a fractional value is rejected.
    pub fn from_pairs(name: &str, pairs: &[(String, String)]) -> Result<Strategy, Error> {
        let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
        for (k, _) in pairs {
            if seen.contains(&k.as_str()) {
                return Err(Error::DuplicateParameter { name: k.clone() });
            }
            seen.push(k);
        }
        let strategy = match name {
            "ma-crossover" => {
                let mut p = MaCrossover::default();
                for (k, v) in pairs {
                    match k.as_str() {
                        "short_window" => p.short_window = parse_count("short_window", v)?,
                        "long_window" => p.long_window = parse_count("long_window", v)?,
                        "threshold" => p.threshold = parse_real("threshold", v)?,
                        _ => return Err(unknown("ma-crossover", k, MA_PARAMS)),
                    }
                }
                Strategy::MaCrossover(p)
            }
            "momentum" => {
                let mut p = Momentum::default();
                for (k, v) in pairs {
                    match k.as_str() {
                        "lookback_period" => p.lookback_period = parse_count("lookback_period", v)?,
                        "holding_period" => p.holding_period = parse_count("holding_period", v)?,
                        "rebalance_frequency" => p.rebalance_frequency = parse_count("rebalance_frequency", v)?,
                        "weighting_scheme" => p.weighting_scheme = parse_scheme(v)?,
                        "top_n_assets" => p.top_n_assets = parse_count("top_n_assets", v)?,
                        "volatility_threshold" => p.volatility_threshold = parse_real("volatility_threshold", v)?,
                        "min_position_size" => p.min_position_size = parse_real("min_position_size", v)?,
                        "max_position_size" => p.max_position_size = parse_real("max_position_size", v)?,
                        _ => return Err(unknown("momentum", k, MOMENTUM_PARAMS)),
                    }
                }
                Strategy::Momentum(p)
            }
            _ => {
                return Err(Error::UnknownStrategy { name: name.to_owned() });
            }
        };
        strategy.validate()?;
        Ok(strategy)
    }

    /// The strategy's name, as accepted by [`Strategy::from_pairs`].
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::MaCrossover(_) => "ma-crossover",
            Strategy::Momentum(_) => "momentum",
        }
    }

    /// Every parameter as a `(name, value)` pair, in documentation order. Feeding these back
    /// to [`Strategy::from_pairs`] gives the same strategy.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        match self {
            Strategy::MaCrossover(p) => vec![
                ("short_window", p.short_window.to_string()),
                ("long_window", p.long_window.to_string()),
                ("threshold", p.threshold.to_string()),
            ],
            Strategy::Momentum(p) => vec![
                ("lookback_period", p.lookback_period.to_string()),
                ("holding_period", p.holding_period.to_string()),
                ("rebalance_frequency", p.rebalance_frequency.to_string()),
                ("weighting_scheme", p.weighting_scheme.as_str().to_owned()),
                ("top_n_assets", p.top_n_assets.to_string()),
                ("volatility_threshold", p.volatility_threshold.to_string()),
                ("min_position_size", p.min_position_size.to_string()),
                ("max_position_size", p.max_position_size.to_string()),
            ],
        }
    }

    /// Checks parameter ranges. [`crate::Backtester::run`] calls this too, because a
    /// strategy may have been built field by field or deserialised.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Strategy::MaCrossover(p) => {
                at_least("short_window", p.short_window, 1)?;
                at_least("long_window", p.long_window, 1)?;
                if !(p.threshold.is_finite() && p.threshold >= 0.0) {
                    return Err(invalid("threshold", p.threshold, "must be finite and at least 0"));
                }
            }
            Strategy::Momentum(p) => {
                if p.lookback_period < 2 {
                    return Err(invalid(
                        "lookback_period",
                        p.lookback_period,
                        "must be at least 2 (volatility needs two daily returns)",
                    ));
                }
                at_least("holding_period", p.holding_period, 1)?;
                at_least("rebalance_frequency", p.rebalance_frequency, 1)?;
                at_least("top_n_assets", p.top_n_assets, 1)?;
                if p.volatility_threshold.is_nan() || p.volatility_threshold <= 0.0 {
                    return Err(invalid("volatility_threshold", p.volatility_threshold, "must be greater than 0"));
                }
                if !(p.min_position_size.is_finite() && p.min_position_size >= 0.0) {
                    return Err(invalid("min_position_size", p.min_position_size, "must be finite and at least 0"));
                }
                if !(p.max_position_size.is_finite() && p.max_position_size > 0.0) {
                    return Err(invalid("max_position_size", p.max_position_size, "must be finite and greater than 0"));
                }
            }
        }
        Ok(())
    }
}

fn unknown(strategy: &'static str, name: &str, expected: &'static str) -> Error {
    Error::UnknownParameter { strategy, name: name.to_owned(), expected }
}

fn invalid(name: &'static str, value: impl ToString, reason: &'static str) -> Error {
    Error::InvalidParameter { name, value: value.to_string(), reason }
}

fn at_least(name: &'static str, value: usize, min: usize) -> Result<(), Error> {
    if value < min {
        return Err(invalid(name, value, if min == 1 { "must be at least 1" } else { "too small" }));
    }
    Ok(())
}

/// A whole number, written as an integer or as an integral float.
fn parse_count(name: &'static str, value: &str) -> Result<usize, Error> {
    let v = value.trim();
    if let Ok(n) = v.parse::<usize>() {
        return Ok(n);
    }
    let x: f64 = v.parse().map_err(|_| invalid(name, value, "expected a whole number"))?;
    // 2^53 bounds the integers an f64 holds exactly; no window gets anywhere near it.
    if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_992.0) {
        return Err(invalid(name, value, "expected a whole number"));
    }
    Ok(x as usize)
}

fn parse_real(name: &'static str, value: &str) -> Result<f64, Error> {
    let x: f64 = value.trim().parse().map_err(|_| invalid(name, value, "expected a number"))?;
    if !x.is_finite() {
        return Err(invalid(name, value, "expected a finite number"));
    }
    Ok(x)
}

fn parse_scheme(value: &str) -> Result<WeightingScheme, Error> {
    match value.trim() {
        "equal" => Ok(WeightingScheme::Equal),
        "market_cap" => Ok(WeightingScheme::MarketCap),
        "risk_parity" => Ok(WeightingScheme::RiskParity),
        _ => Err(invalid("weighting_scheme", value, "expected equal, market_cap or risk_parity")),
    }
}
