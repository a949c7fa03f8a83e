//! The built-in strategies, one file each. A new strategy is one file like these plus one
//! line in [`crate::Registry::builtin`] (or in a user's own registry, outside this crate).

mod ma_crossover;
pub(crate) mod mom_batch;
mod mom_fast;
pub(crate) mod momentum;

pub use ma_crossover::{MaCrossover, MaCrossoverStrategy, MaScratch};
pub use mom_fast::MomentumTables;
pub use momentum::{MomScratch, Momentum, MomentumStrategy, WeightingScheme};

use crate::{Configured, Error, Registry};

impl Registry {
    /// The built-in strategies: ma-crossover and momentum.
    pub fn builtin() -> Registry {
        Registry::new().with(MaCrossoverStrategy).with(MomentumStrategy)
    }
}

impl MaCrossover {
    /// These parameters as a configured `ma-crossover`, checked.
    pub fn configured(&self) -> Result<Configured, Error> {
        let pairs = [
            ("short_window", self.short_window.to_string()),
            ("long_window", self.long_window.to_string()),
            ("threshold", self.threshold.to_string()),
        ];
        configure("ma-crossover", &pairs)
    }
}

impl Momentum {
    /// These parameters as a configured `momentum`, checked.
    pub fn configured(&self) -> Result<Configured, Error> {
        let pairs = [
            ("lookback_period", self.lookback_period.to_string()),
            ("holding_period", self.holding_period.to_string()),
            ("rebalance_frequency", self.rebalance_frequency.to_string()),
            ("weighting_scheme", self.weighting_scheme.as_str().to_string()),
            ("top_n_assets", self.top_n_assets.to_string()),
            ("volatility_threshold", self.volatility_threshold.to_string()),
            ("min_position_size", self.min_position_size.to_string()),
            ("max_position_size", self.max_position_size.to_string()),
        ];
        configure("momentum", &pairs)
    }
}

fn configure(name: &str, pairs: &[(&str, String)]) -> Result<Configured, Error> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Registry::builtin().configure(name, &pairs)
}
