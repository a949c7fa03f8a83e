//! The per-worker backtester: a market, its SMA cache, every strategy's scratch buffers.

use std::ops::Range;
use std::sync::Arc;

use crate::fidelity;
use crate::metrics::Metrics;
use crate::options::Fidelity;
use crate::params::ParamValues;
use crate::run::Run;
use crate::sma::{SmaCache, SmaTables};
use crate::strategies::momentum::MomScratch;
use crate::strategy::{Configured, DynStrategy, ScratchStore};
use crate::{Error, Market, Momentum, MomentumTables, RunOptions};

/// Runs many backtests over one market, reusing work between them.
///
/// Build one per worker and keep it for the whole sweep. It caches each distinct SMA per
/// (asset, window) that shared [`SmaTables`] (if given) do not hold, keeps every strategy's scratch buffers (momentum's score/volatility
/// tables per lookback and selections per (lookback, top_n, threshold) among them, bounded by
/// the same capacity), and reuses every buffer, so after warm-up a backtest allocates nothing
/// (under the `blocks` fidelity, a few small buffers). The cache changes speed only: every
/// result is bit-identical to [`crate::run`] on a fresh backtester.
///
/// The cache is tied to the borrowed market, so it can never serve stale data.
pub struct Backtester<'m> {
    market: &'m Market<'m>,
    /// Asset indices sorted by sid, so results never depend on the order of `assets`.
    order: Vec<usize>,
    cache: SmaCache,
    momentum: Option<Arc<MomentumTables>>,
    returns: Vec<f64>,
    equity: Vec<f64>,
    scratch: ScratchStore,
}

impl<'m> Backtester<'m> {
    /// Default SMA cache capacity: 256 MiB of SMA arrays per worker.
    pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

    /// A backtester with the default cache capacity. Checks the market's structure
    /// (O(assets + sessions)); prices are checked by [`Market::new_checked`].
    pub fn new(market: &'m Market<'m>) -> Result<Self, Error> {
        Self::with_cache_bytes(market, Self::DEFAULT_CACHE_BYTES)
    }

    /// A backtester whose SMA cache holds at most `bytes` of SMA arrays beyond the ones the
    /// current backtest needs, and whose momentum cache at most `bytes` of tables and
    /// selections. Zero disables reuse across backtests (momentum then runs its reference
    /// kernel).
    pub fn with_cache_bytes(market: &'m Market<'m>, bytes: usize) -> Result<Self, Error> {
        market.check_structure()?;
        let order = market.sid_order();
        Ok(Backtester {
            market,
            order,
            cache: SmaCache::new(bytes),
            momentum: None,
            returns: Vec::new(),
            equity: Vec::new(),
            scratch: ScratchStore::default(),
        })
    }

    /// A backtester like [`Backtester::with_cache_bytes`] that reads every SMA `tables` hold
    /// from them (shared with other backtesters, never copied) and caches only the others
    /// itself. Results are bit-identical to a backtester without tables. Refuses tables
    /// built from another market.
    pub fn with_tables(market: &'m Market<'m>, bytes: usize, tables: Arc<SmaTables>) -> Result<Self, Error> {
        let mut bt = Self::with_cache_bytes(market, bytes)?;
        bt.share_tables(tables)?;
        Ok(bt)
    }

    /// From now on, reads every SMA `tables` hold from them (see [`Backtester::with_tables`]).
    /// Refuses tables built from another market.
    pub fn share_tables(&mut self, tables: Arc<SmaTables>) -> Result<(), Error> {
        tables.check(self.market)?;
        self.cache.share(tables);
        Ok(())
    }

    /// From now on, reads the momentum score/volatility tables `tables` hold from them, and
    /// builds only the lookbacks they lack in its own cache. Results are bit-identical to a
    /// backtester without them. Refuses tables built from another market.
    pub fn share_momentum_tables(&mut self, tables: Arc<MomentumTables>) -> Result<(), Error> {
        tables.check(self.market)?;
        self.momentum = Some(tables);
        Ok(())
    }

    /// The market this backtester runs on.
    pub fn market(&self) -> &'m Market<'m> {
        self.market
    }

    /// Bytes currently held by the SMA cache (shared tables not counted).
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Runs one backtest.
    pub fn run(&mut self, strategy: &Configured, opts: &RunOptions) -> Result<Metrics, Error> {
        self.run_values(&**strategy.strategy(), strategy.values(), opts, None)
    }

    /// Runs one backtest and also writes the equity curve `E_t` for every bar of W
    /// (`equity.len() == metrics.bars`).
    pub fn run_with_equity(
        &mut self,
        strategy: &Configured,
        opts: &RunOptions,
        equity: &mut Vec<f64>,
    ) -> Result<Metrics, Error> {
        self.run_values(&**strategy.strategy(), strategy.values(), opts, Some(equity))
    }

    /// Runs `strategy` with `values` (checked here against its table): the hot path of a
    /// worker, which holds the strategy and the values of a task without building a
    /// [`Configured`].
    pub fn run_values(
        &mut self,
        strategy: &dyn DynStrategy,
        values: &ParamValues,
        opts: &RunOptions,
        equity: Option<&mut Vec<f64>>,
    ) -> Result<Metrics, Error> {
        if opts.fidelity() != Fidelity::Recent {
            let wins = opts.windows(self.market)?;
            if wins.len() > 1 {
                let (ppy, fee) = (self.market.periods_per_year, opts.fee());
                return fidelity::run_blocks(&wins, ppy, equity, |w, eq| {
                    self.run_window(strategy, values, fee, w.bars.clone(), Some(eq))
                });
            }
        }
        let win = opts.window(self.market)?;
        self.run_window(strategy, values, opts.fee(), win.bars, equity)
    }

    /// Runs momentum `configs` under the same options. Element `i` is bit-identical to
    /// running `configs[i]` alone; configs that differ only in their position bounds share a
    /// backtest whenever their decisions provably coincide (module `mom_batch`), which grid
    /// sweeps hit often. Fails on the first config a single run would refuse.
    pub fn run_momentum_batch(&mut self, configs: &[Momentum], opts: &RunOptions) -> Result<Vec<Metrics>, Error> {
        let share = self.cache.capacity() > 0;
        crate::strategies::mom_batch::run(configs, share, |p, record| {
            let configured = p.configured()?;
            self.scratch.get::<MomScratch>().set_trace(record);
            let m = self.run(&configured, opts);
            let raw = self.scratch.get::<MomScratch>().take_trace();
            Ok((m?, raw))
        })
    }

    /// Runs one backtest over one window of bars.
    fn run_window(
        &mut self,
        strategy: &dyn DynStrategy,
        values: &ParamValues,
        fee: f64,
        window: Range<usize>,
        equity: Option<&mut Vec<f64>>,
    ) -> Result<Metrics, Error> {
        // Entries touched from here on are pinned until the next backtest.
        self.cache.begin();
        let mut run = Run {
            market: self.market,
            order: &self.order,
            fee,
            window,
            returns: &mut self.returns,
            equity: &mut self.equity,
            sma: &mut self.cache,
            momentum: self.momentum.as_deref(),
            equity_out: equity,
        };
        strategy.run_erased(values, &mut run, &mut self.scratch)
    }
}
