//! btopt's backtest engine: the inner loop of parameter search.
//!
//! The engine runs one strategy over a borrowed [`Market`] and returns [`Metrics`]. It is a
//! pure function of (market, strategy, parameter values, session range, budget, fidelity,
//! fee):
//! deterministic to the bit, independent of asset order, and allocation-free per bar. It
//! knows nothing about bundles, files, processes or optimizers; glue code builds the
//! `Market` view once per worker.
//!
//! Strategies are open: a strategy implements [`Strategy`] (a name, the frequencies it
//! supports, a typed parameter table of [`ParamSpec`]s, and a run over a [`Run`]) and is
//! added to a [`Registry`]. The built-ins live in [`strategies`], one file each:
//! `ma-crossover` ([`MaCrossoverStrategy`]) and `momentum` ([`MomentumStrategy`]).
//! Parameter values are checked against the table once, into [`ParamValues`] (inline,
//! `Copy`, serialisable: what a task carries across a process boundary), and a strategy
//! with checked values is a [`Configured`].
//!
//! Semantics follow design-notes "Backtest semantics" exactly: a target decided at close t
//! fills at open t+1, the fee is a rate on traded notional, equity is marked at each close,
//! and a budget `b` evaluates the last `ceil(b·T)` sessions of the range while indicators
//! warm up on any earlier bar (from the start of the market, not of the range).
//!
//! Fidelity ([`Fidelity`], on [`RunOptions`]): what a budget `b` evaluates out of the `T`
//! sessions of the range. Every fidelity evaluates `k = ceil(b·T)` sessions, so the cost
//! grows with `b`, and at `b = 1` every fidelity is the plain full-range backtest, bit for
//! bit.
//! - `recent` (the default; tasks serialised without a fidelity mean it): the window W above,
//!   the last `k` sessions.
//! - `blocks`: `K = min(4, k)` blocks spread evenly across the range, the `T − k` skipped
//!   sessions split into K gaps, one before each block, so the last block ends with the range
//!   (exact bounds: [`RunOptions::evaluated_sessions`]). Blocks that touch merge into one.
//!   Each block is backtested exactly as a full-budget run over its own sessions: it starts
//!   flat with capital 1.0, indicators warm up on every earlier bar (earlier blocks and gaps
//!   included), its first fill is at its first open, and a decision on its last close is
//!   not filled. Nothing carries from one block to the next but the portfolio value: the
//!   equity curve of block `j` is scaled by the product of the final equities of blocks
//!   `0..j` (as if the portfolio were marked to cash, free of fees, at each block's last
//!   close and put to work again at the next block's first open). Metrics are the usual ones
//!   over the chained curve, its `n` bars being all the blocks' bars (`bars` = their count;
//!   the first return of each block is taken against the previous block's last equity, which
//!   is E_start = 1.0 scaled the same way); `trades` adds up the blocks' fills. There is no
//!   look-ahead: equity at a bar depends only on bars up to it.
//!
//! Choices the contract leaves open, made here once:
//! - SMA: window sums from double-double running sums anchored at the asset's first bar
//!   (module `sma`), accurate to about one ulp, so near-tie crossovers do not depend on how
//!   far into the data a bar lies; NaN before a full window, which never signals.
//! - Momentum (daily markets only): a position bought at the open of session `e` has been
//!   held `t − e + 1` sessions at the close of `t`; `lookback_period ≥ 2` because volatility
//!   needs two returns; with risk parity a zero-volatility member takes the limit weight
//!   (zero-vol members share everything); a decision on W's last close is skipped because
//!   its fill would fall outside W; a scaled-down buy round leaves cash at exactly 0.
//! - Metrics: sums run in eight fixed lanes; sharpe is 0 when all returns are equal or
//!   there is only one; calmar may be infinite for a very short window.
//!
//! Speed: the MA kernel turns decisions into bitmasks and walks from one position change to
//! the next; metrics avoid per-bar division in the drawdown. The vectorisable loops have
//! AVX copies chosen at run time (module `kernels`, the only `unsafe` apart from a prefetch
//! hint); they give the same bits as the baseline copies, which a unit test checks.
//! Momentum has a reference kernel (`strategies/momentum.rs`, used without cache capacity,
//! so by [`run`]) and a cached one for sweeps (`strategies/mom_fast.rs`: score/volatility
//! tables per lookback, selections per (lookback, top_n, threshold), work per rebalance over
//! held and targeted assets only), which gives the same bits;
//! [`Backtester::run_momentum_batch`] also shares whole backtests between configs that
//! differ only in position bounds when their decisions provably coincide
//! (`strategies/mom_batch.rs`). See `BENCHMARKS.md` for figures.
//!
//! Memory across workers: [`SmaTables`] hold the SMAs a whole search reads (the windows a
//! strategy names in [`Strategy::sma_windows`]), computed once and shared read-only by many
//! backtesters ([`Backtester::with_tables`]), which then compute only what the tables lack;
//! the bits are those of the per-worker cache. [`MomentumTables`] do the same for momentum's
//! score/volatility tables per lookback ([`Strategy::momentum_lookbacks`],
//! [`Backtester::share_momentum_tables`]). The engine only builds and reads them: glue code
//! decides what goes in, and how the processes share the pages.
//!
//! ```
//! use engine::{AssetSeries, Market, Registry, RunOptions};
//!
//! let close = [10.0, 11.0, 12.0, 11.0, 10.0, 9.0];
//! let bounds: Vec<usize> = (0..=close.len()).collect();
//! let asset = AssetSeries::new(0, &close, &close, &close, &close, 0..close.len(), 1.0);
//! let market = Market::new_checked(252.0, &bounds, vec![asset])?;
//! let pairs = [("short_window".to_string(), "1".to_string()),
//!              ("long_window".to_string(), "2".to_string())];
//! let strategy = Registry::builtin().configure("ma-crossover", &pairs)?;
//! let metrics = engine::run(&market, &strategy, &RunOptions::default())?;
//! assert_eq!(metrics.bars, 6);
//! assert_eq!(metrics.trades, 2);
//! # Ok::<(), engine::Error>(())
//! ```

mod backtester;
mod error;
mod fidelity;
mod kernels;
mod market;
mod metrics;
mod options;
mod params;
mod run;
mod sma;
pub mod strategies;
mod strategy;

pub use backtester::Backtester;
pub use error::Error;
pub use market::{AssetSeries, Frequency, Market};
pub use metrics::Metrics;
pub use options::{Fidelity, RunOptions};
pub use params::{MAX_PARAMS, ParamKind, ParamSpec, ParamValue, ParamValues, ParamValuesBuilder};
pub use run::{Run, SharedCash};
pub use sma::SmaTables;
pub use strategies::{MaCrossover, MaCrossoverStrategy, Momentum, MomentumStrategy, MomentumTables, WeightingScheme};
pub use strategy::{Configured, DynStrategy, Registry, ScratchStore, Strategy, StrategyId};

/// Runs one backtest on a fresh [`Backtester`]. Sweeps should keep a `Backtester` instead,
/// which gives bit-identical results while reusing SMAs and buffers.
pub fn run(market: &Market<'_>, strategy: &Configured, opts: &RunOptions) -> Result<Metrics, Error> {
    Backtester::with_cache_bytes(market, 0)?.run(strategy, opts)
}
