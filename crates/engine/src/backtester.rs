//! The per-worker backtester: a market, its SMA cache and reusable buffers.

use crate::ma::{self, MaScratch};
use crate::metrics::Metrics;
use crate::momentum::{self, MomScratch};
use crate::options::Window;
use crate::sma::SmaCache;
use crate::{Error, Market, RunOptions, Strategy};

/// Runs many backtests over one market, reusing work between them.
///
/// Build one per worker and keep it for the whole sweep. It caches each distinct SMA per
/// (asset, window), keeps momentum score tables, and reuses every buffer, so after
/// warm-up a backtest allocates nothing. The cache changes speed only: every result is
/// bit-identical to [`crate::run`] on a fresh backtester.
///
/// The cache is tied to the borrowed market, so it can never serve stale data.
pub struct Backtester<'m> {
    market: &'m Market<'m>,
    /// Asset indices sorted by sid, so results never depend on the order of `assets`.
    order: Vec<usize>,
    cache: SmaCache,
    returns: Vec<f64>,
    ma: MaScratch,
    mom: MomScratch,
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
    /// current backtest needs. Zero disables reuse across backtests.
    pub fn with_cache_bytes(market: &'m Market<'m>, bytes: usize) -> Result<Self, Error> {
        market.check_structure()?;
        let mut order: Vec<usize> = (0..market.assets.len()).collect();
        order.sort_unstable_by_key(|&i| market.assets[i].sid);
        Ok(Backtester {
            market,
            order,
            cache: SmaCache::new(bytes),
            returns: Vec::new(),
            ma: MaScratch::default(),
            mom: MomScratch::default(),
        })
    }

    /// The market this backtester runs on.
    pub fn market(&self) -> &'m Market<'m> {
        self.market
    }

    /// Bytes currently held by the SMA cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Runs one backtest.
    pub fn run(&mut self, strategy: &Strategy, opts: &RunOptions) -> Result<Metrics, Error> {
        self.run_inner(strategy, opts, None)
    }

    /// Runs one backtest and also writes the equity curve `E_t` for every bar of W
    /// (`equity.len() == metrics.bars`).
    pub fn run_with_equity(
        &mut self,
        strategy: &Strategy,
        opts: &RunOptions,
        equity: &mut Vec<f64>,
    ) -> Result<Metrics, Error> {
        self.run_inner(strategy, opts, Some(equity))
    }

    fn run_inner(
        &mut self,
        strategy: &Strategy,
        opts: &RunOptions,
        equity: Option<&mut Vec<f64>>,
    ) -> Result<Metrics, Error> {
        strategy.validate()?;
        let win = opts.window(self.market)?;
        let ctx =
            Ctx { market: self.market, order: &self.order, fee: opts.fee(), win: &win, returns: &mut self.returns };
        match strategy {
            Strategy::MaCrossover(p) => Ok(ma::run(ctx, &mut self.cache, p, &mut self.ma, equity)),
            Strategy::Momentum(p) => momentum::run(ctx, p, &mut self.mom, equity),
        }
    }
}

/// What every kernel needs: the market in sid order, the fee, the window, and the reused
/// returns buffer that metrics read.
pub(crate) struct Ctx<'a> {
    pub(crate) market: &'a Market<'a>,
    pub(crate) order: &'a [usize],
    pub(crate) fee: f64,
    pub(crate) win: &'a Window,
    pub(crate) returns: &'a mut Vec<f64>,
}
