//! Shared indicator tables: the SMAs, or the momentum score/volatility tables, a whole search
//! reads, built once before the pool starts.
//!
//! Every worker of a sweep needs the same columns (each SMA window of the space, or each
//! momentum lookback, for every asset). Left to themselves, workers each compute and keep a
//! private copy, so memory grows with the worker count. Here the parent computes them once,
//! within a memory budget, before it builds the pool: forked workers (and the zygote) inherit the columns copy-on-write and
//! only read them, thread workers share them through `Arc`, and spawned workers, which cannot
//! inherit memory, build their own as before. A worker computes only the columns the tables
//! lack, in its own cache. Results are bit-identical either way (the engine computes both
//! with the same function).

use std::sync::Arc;

use bundle::Bundle;
use engine::{DynStrategy, MomentumTables, ParamValue, ParamValues, SmaTables};
use optimize::{Space, Value};

use crate::{Error, market_of};

/// The environment variable that sets the shared tables' budget in MiB (`0`: no sharing).
pub const TABLES_ENV: &str = "BTOPT_SHARED_TABLES_MIB";

/// The default budget of the shared tables: 1 GiB of columns (the 20 windows of the 1,100-point
/// MA space over the mag-7 minute bundle take about 0.5 GiB; the 10 lookbacks of the 5.4M
/// momentum space over the 100-asset universe, 20 MB).
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

/// The tables a search shares between its workers: SMA columns, momentum tables, or neither
/// (see the module docs). Cloning clones the `Arc`s.
#[derive(Debug, Clone, Default)]
pub struct SharedTables {
    /// The SMAs of the space's windows ([`engine::Strategy::sma_windows`]).
    pub sma: Option<Arc<SmaTables>>,
    /// The momentum tables of the space's lookbacks ([`engine::Strategy::momentum_lookbacks`]).
    pub momentum: Option<Arc<MomentumTables>>,
}

impl SharedTables {
    /// No shared tables: every worker builds what it reads.
    pub fn none() -> SharedTables {
        SharedTables::default()
    }

    /// Shared SMA tables only.
    pub fn sma(tables: Arc<SmaTables>) -> SharedTables {
        SharedTables { sma: Some(tables), momentum: None }
    }

    /// Bytes of columns held, of both kinds.
    pub fn bytes(&self) -> usize {
        self.sma.as_ref().map_or(0, |t| t.bytes()) + self.momentum.as_ref().map_or(0, |t| t.bytes())
    }
}

/// Every SMA window a config of `space` can ask of `strategy` ([`engine::Strategy::sma_windows`]):
/// each window parameter's values in the space, or its value in `base` when the space does
/// not vary it. Sorted and distinct. A parameter too fine to enumerate (truly continuous, or
/// more than 100,000 levels) contributes nothing: workers build those windows themselves.
pub fn sma_windows(strategy: &dyn DynStrategy, base: &ParamValues, space: &Space) -> Vec<usize> {
    positive_values(strategy, strategy.sma_windows(), base, space)
}

/// Every momentum lookback a config of `space` can ask of `strategy`
/// ([`engine::Strategy::momentum_lookbacks`]), as [`sma_windows`] enumerates windows.
pub fn momentum_lookbacks(strategy: &dyn DynStrategy, base: &ParamValues, space: &Space) -> Vec<usize> {
    positive_values(strategy, strategy.momentum_lookbacks(), base, space)
}

/// The positive integer values the parameters `names` take over `space` (or in `base`).
fn positive_values(strategy: &dyn DynStrategy, names: &[&str], base: &ParamValues, space: &Space) -> Vec<usize> {
    let table = strategy.parameters();
    let mut windows = Vec::new();
    for name in names {
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

/// Below this many values (8 MiB of SMA columns, a few milliseconds of work) the shared tables
/// are built on the calling thread: starting threads would cost about what they save.
const PARALLEL_MIN_VALUES: usize = 1 << 20;

/// The SMA tables of `windows` over `bundle` within `budget` bytes, or `None` when there is
/// nothing to share (no window, or a zero budget). Build them before the pool, and hand the
/// pool the same `bundle` (the tables serve only the columns they were built from).
pub fn shared_tables(bundle: &Bundle, windows: &[usize], budget: usize) -> Result<Option<Arc<SmaTables>>, Error> {
    if windows.is_empty() || budget == 0 {
        return Ok(None);
    }
    let market = market_of(bundle)?;
    // On every core (the pool does not exist yet, and the threads are joined before it forks),
    // unless the tables are too small for threads to pay.
    let values: usize = market.assets.iter().map(|a| a.end_bar - a.first_bar).sum::<usize>() * windows.len();
    let threads = match values.min(budget / size_of::<f64>()) < PARALLEL_MIN_VALUES {
        true => 1,
        false => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let tables = SmaTables::build_on(&market, windows, budget, threads);
    Ok(Some(Arc::new(tables)))
}

/// The shared tables for a search of `space` with `strategy` over `bundle`: its SMA windows
/// ([`sma_windows`], [`shared_tables`]) and its momentum lookbacks ([`momentum_lookbacks`]),
/// within `budget` bytes in all (SMAs first).
pub fn tables_for(
    strategy: &dyn DynStrategy,
    base: &ParamValues,
    space: &Space,
    bundle: &Bundle,
    budget: usize,
) -> Result<SharedTables, Error> {
    tables_of(bundle, &sma_windows(strategy, base, space), &momentum_lookbacks(strategy, base, space), budget)
}

/// The shared tables of these SMA `windows` and momentum `lookbacks` over `bundle`, within
/// `budget` bytes in all (SMAs first): what [`tables_for`] builds for a space, for a caller
/// that was given the windows (a `btopt worker`, from its study).
pub fn tables_of(
    bundle: &Bundle,
    windows: &[usize],
    lookbacks: &[usize],
    budget: usize,
) -> Result<SharedTables, Error> {
    let sma = shared_tables(bundle, windows, budget)?;
    let left = budget.saturating_sub(sma.as_ref().map_or(0, |t| t.bytes()));
    let momentum = if lookbacks.is_empty() || left == 0 {
        None
    } else {
        Some(Arc::new(MomentumTables::build(&market_of(bundle)?, lookbacks, left)))
    };
    Ok(SharedTables { sma, momentum })
}

/// One line for stderr when the space needs more than the budget allowed, else `None`.
pub fn shortfall(tables: &SharedTables, budget: usize) -> Option<String> {
    let mib = |b: usize| b as f64 / f64::from(1 << 20);
    if let Some(t) = tables.sma.as_ref().filter(|t| !t.is_complete()) {
        return Some(format!(
            "shared indicator tables: the space needs {:.0} MiB of SMAs, over the budget of {:.0} MiB ({TABLES_ENV}); \
             {} of {} windows are shared, workers build the rest",
            mib(t.needed_bytes()),
            mib(budget),
            t.complete_windows(),
            t.windows()
        ));
    }
    tables.momentum.as_ref().filter(|t| !t.is_complete()).map(|t| {
        format!(
            "shared indicator tables: the space needs {:.0} MiB of momentum tables, over the budget of {:.0} MiB \
             ({TABLES_ENV}); {} of {} lookbacks are shared, workers build the rest",
            mib(t.needed_bytes()),
            mib(budget),
            t.lookbacks(),
            t.wanted()
        )
    })
}
