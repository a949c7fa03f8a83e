//! `btopt backtest`: one backtest, printed as the contract's JSON object or as text.

use std::sync::Arc;

use anyhow::{Context, Result};
use engine::{DynStrategy, Registry};

use crate::{BacktestArgs, usage};

/// Splits `NAME=VALUE` arguments into pairs, rejecting anything else.
pub(crate) fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(usage(format!("--set {s:?}: expected NAME=VALUE"))),
        })
        .collect()
}

/// The strategy called `name` with `--set` values on top of its defaults; a bad name or
/// value is a usage error naming the parameter and listing the strategy's parameters.
pub(crate) fn configure(strategies: &Registry, name: &str, sets: &[String]) -> Result<engine::Configured> {
    let strategy = strategies.lookup(name).map_err(|e| usage(e.to_string()))?;
    strategies.configure(name, &parse_sets(sets)?).map_err(|e| usage(format!("{e} ({})", runner::listing(&**strategy))))
}

/// Refuses a bundle whose frequency the strategy's table does not list.
pub(crate) fn check_frequency(strategy: &dyn DynStrategy, frequency: bundle::Frequency) -> Result<()> {
    let freq = match frequency {
        bundle::Frequency::Daily => engine::Frequency::Daily,
        bundle::Frequency::Minute => engine::Frequency::Minute,
    };
    if !strategy.frequencies().contains(&freq) {
        let supported: Vec<&str> = strategy.frequencies().iter().map(|f| f.as_str()).collect();
        return Err(usage(format!(
            "{} does not run on {} bars (it supports: {})",
            strategy.name(),
            freq.as_str(),
            supported.join(", ")
        )));
    }
    Ok(())
}

pub(crate) fn run(a: &BacktestArgs, strategies: &Arc<Registry>) -> Result<()> {
    let strategy = configure(strategies, &a.strategy, &a.set)?;
    let options = engine::RunOptions::new_checked(a.budget, None, a.range.fee).map_err(|e| usage(e.to_string()))?;
    let bundle = bundle::Bundle::load(&a.bundle).context("failed to load the bundle")?;
    check_frequency(&**strategy.strategy(), bundle.frequency())?;
    let range = runner::session_range(&bundle, a.range.start, a.range.end)?;
    let options = engine::RunOptions::new_checked(options.budget(), Some(range), options.fee())?;
    let mut engine = runner::Engine::new(Arc::new(bundle)).context("bundle is unusable for backtests")?;
    let m = engine.run(&strategy, &options).context("backtest failed")?;
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!("total_return  {:.6}", m.total_return);
        println!("sharpe        {:.6}", m.sharpe);
        println!("max_drawdown  {:.6}", m.max_drawdown);
        println!("sortino       {:.6}", m.sortino);
        println!("calmar        {:.6}", m.calmar);
        println!("trades        {}", m.trades);
        println!("bars          {}", m.bars);
        println!("final_equity  {:.6}", m.final_equity);
    }
    Ok(())
}
