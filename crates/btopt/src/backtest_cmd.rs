//! `btopt backtest`: one backtest, printed as the contract's JSON object or as text.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::BacktestArgs;

/// Splits `NAME=VALUE` arguments into pairs, rejecting anything else.
pub(crate) fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => bail!("--set {s:?}: expected NAME=VALUE"),
        })
        .collect()
}

pub(crate) fn run(a: &BacktestArgs) -> Result<()> {
    let strategy = engine::Strategy::from_pairs(&a.strategy, &parse_sets(&a.set)?).context("invalid strategy")?;
    let bundle = bundle::Bundle::load(&a.bundle).context("failed to load the bundle")?;
    let range = runner::session_range(&bundle, a.range.start, a.range.end)?;
    let options = engine::RunOptions::new_checked(a.budget, Some(range), a.range.fee)?;
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
