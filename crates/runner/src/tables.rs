//! Shared indicator tables: the SMAs a whole search reads, built once before the pool starts.
//!
//! Every worker of a sweep needs the same SMA columns (each window of the space, for every
//! asset). Left to themselves, workers each compute and keep a private copy, so memory grows
//! with the worker count. Here the parent computes them once, within a memory budget, before
//! it builds the pool: forked workers (and the zygote) inherit the columns copy-on-write and
//! only read them, thread workers share them through `Arc`, and spawned workers, which cannot
//! inherit memory, build their own as before. A worker computes only the columns the tables
//! lack, in its own cache. Results are bit-identical either way (the engine computes both
//! with the same function).

use std::sync::Arc;

use bundle::Bundle;
use engine::{DynStrategy, ParamValue, ParamValues, SmaTables};
use optimize::{Space, Value};

use crate::{Error, market_of};

/// The environment variable that sets the shared tables' budget in MiB (`0`: no sharing).
pub const TABLES_ENV: &str = "BTOPT_SHARED_TABLES_MIB";

/// The default budget of the shared tables: 1 GiB of SMA columns (the 20 windows of the
/// 1,100-point MA space over the mag-7 minute bundle take about 0.5 GiB).
pub const DEFAULT_TABLES_BYTES: usize = 1 << 30;

/// A parameter with more levels than this is not enumerated for its windows (its SMAs are
/// built by the workers that need them).
const MAX_LEVELS: u128 = 100_000;

/// The budget for shared tables: [`TABLES_ENV`] in MiB if set, else [`DEFAULT_TABLES_BYTES`].
pub fn tables_budget() -> Result<usize, Error> {
    match std::env::var(TABLES_ENV) {
        Err(_) => Ok(DEFAULT_TABLES_BYTES),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|mib| mib.checked_mul(1 << 20))
            .ok_or_else(|| Error::Space(format!("{TABLES_ENV} must be a number of MiB, not {v:?}"))),
    }
}

/// Every SMA window a config of `space` can ask of `strategy` ([`engine::Strategy::sma_windows`]):
/// each window parameter's values in the space, or its value in `base` when the space does
/// not vary it. Sorted and distinct. A parameter too fine to enumerate (truly continuous, or
/// more than 100,000 levels) contributes nothing: workers build those windows themselves.
pub fn sma_windows(strategy: &dyn DynStrategy, base: &ParamValues, space: &Space) -> Vec<usize> {
    let table = strategy.parameters();
    let mut windows = Vec::new();
    for name in strategy.sma_windows() {
        match space.params().iter().find(|p| p.name == *name) {
            Some(p) => {
                let Some(levels) = p.levels().filter(|&n| n <= MAX_LEVELS) else { continue };
                for k in 0..levels {
                    let w = match p.value_at(k) {
                        Value::Int(i) => i,
                        Value::Float(x) if x.fract() == 0.0 => x as i64,
                        _ => continue,
                    };
                    windows.extend(usize::try_from(w).ok());
                }
            }
            None => {
                let Some(i) = table.iter().position(|s| s.name == *name) else { continue };
                if let Some(ParamValue::Int(w)) = base.as_slice().get(i).copied() {
                    windows.extend(usize::try_from(w).ok());
                }
            }
        }
    }
    windows.retain(|&w| w > 0);
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// The SMA tables of `windows` over `bundle` within `budget` bytes, or `None` when there is
/// nothing to share (no window, or a zero budget). Build them before the pool, and hand the
/// pool the same `bundle` (the tables serve only the columns they were built from).
pub fn shared_tables(bundle: &Bundle, windows: &[usize], budget: usize) -> Result<Option<Arc<SmaTables>>, Error> {
    if windows.is_empty() || budget == 0 {
        return Ok(None);
    }
    let market = market_of(bundle)?;
    let tables = SmaTables::build(&market, windows, budget);
    Ok(Some(Arc::new(tables)))
}

/// The shared tables for a search of `space` with `strategy` over `bundle` (see
/// [`sma_windows`] and [`shared_tables`]).
pub fn tables_for(
    strategy: &dyn DynStrategy,
    base: &ParamValues,
    space: &Space,
    bundle: &Bundle,
    budget: usize,
) -> Result<Option<Arc<SmaTables>>, Error> {
    shared_tables(bundle, &sma_windows(strategy, base, space), budget)
}

/// One line for stderr when the space needs more than the budget allowed, else `None`.
pub fn shortfall(tables: &SmaTables, budget: usize) -> Option<String> {
    let mib = |b: usize| b as f64 / f64::from(1 << 20);
    (!tables.is_complete()).then(|| {
        format!(
            "shared indicator tables: the space needs {:.0} MiB of SMAs, over the budget of {:.0} MiB ({TABLES_ENV}); \
             {} of {} windows are shared, workers build the rest",
            mib(tables.needed_bytes()),
            mib(budget),
            tables.complete_windows(),
            tables.windows()
        )
    })
}
