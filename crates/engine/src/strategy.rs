//! The strategy interface, its type-erased form, and the registry binaries are built from.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use crate::market::Frequency;
use crate::params::{ParamSpec, ParamValues};
use crate::run::Run;
use crate::{Error, Metrics};

/// A backtestable strategy: a name, a parameter table, and a run over a [`Run`].
///
/// Implement this (one file), add one line to a [`Registry`], and every part of btopt works
/// with it: the CLI, every pool backend (fork workers inherit the registry, spawned workers
/// re-execute the same binary and rebuild it), every search and the trial store.
///
/// A strategy never sees a bundle, a process or an optimizer. It reads the [`Market`] view
/// through [`Run`], and uses the engine's building blocks there: the evaluation window and
/// fee, the per-worker SMA cache, the independent-slice long/flat portfolio
/// ([`Run::long_flat`]) and the metrics ([`Run::finish`]).
///
/// [`Market`]: crate::Market
pub trait Strategy: Send + Sync + 'static {
    /// Typed, validated parameters, built once per backtest from [`ParamValues`].
    type Params: Send;
    /// Per-worker buffers reused across backtests (use `()` for none).
    type Scratch: Default + Send + 'static;

    /// The name used by `--strategy`, e.g. `ma-crossover`.
    fn name(&self) -> &'static str;

    /// Bar frequencies the strategy supports.
    fn frequencies(&self) -> &'static [Frequency] {
        &[Frequency::Daily, Frequency::Minute]
    }

    /// The parameter table: names, types, defaults, domains, docs, at most
    /// [`crate::MAX_PARAMS`] entries.
    fn parameters(&self) -> &'static [ParamSpec];

    /// Builds typed parameters from values that are already checked against
    /// [`Strategy::parameters`]; checks what involves several parameters, if anything.
    fn build(&self, values: &ParamValues) -> Result<Self::Params, Error>;

    /// Runs one backtest.
    fn run(&self, params: &Self::Params, run: &mut Run<'_, '_>, scratch: &mut Self::Scratch) -> Result<Metrics, Error>;

    /// Bars of history a backtest needs before its window for its indicators to exist (the
    /// longest SMA, say). Walk-forward refuses folds shorter than this. Default 0.
    fn warmup(&self, params: &Self::Params) -> usize {
        let _ = params;
        0
    }

    /// The integer parameters whose value is the window of an SMA of adjusted closes that a
    /// backtest reads for every asset ([`Run::sma`]), by name. Glue code may then compute
    /// those SMAs once for a whole search and share them between workers
    /// ([`crate::SmaTables`]); that changes memory and speed only, never a result. Default:
    /// none.
    fn sma_windows(&self) -> &'static [&'static str] {
        &[]
    }

    /// The integer parameters whose value is a lookback of the [`crate::MomentumTables`] a
    /// backtest reads (score and volatility per asset and bar), by name. Only the built-in
    /// momentum kernel reads those tables; glue code may build them once for a whole search
    /// and share them between workers, which changes memory and speed only. Default: none.
    fn momentum_lookbacks(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The object-safe face of a [`Strategy`], implemented for every one; registries hold these.
pub trait DynStrategy: Send + Sync + 'static {
    /// See [`Strategy::name`].
    fn name(&self) -> &'static str;
    /// See [`Strategy::frequencies`].
    fn frequencies(&self) -> &'static [Frequency];
    /// See [`Strategy::parameters`].
    fn parameters(&self) -> &'static [ParamSpec];
    /// Checks values against the table and the strategy's own rules.
    fn check(&self, values: &ParamValues) -> Result<(), Error>;
    /// See [`Strategy::warmup`], for checked values.
    fn warmup(&self, values: &ParamValues) -> Result<usize, Error>;
    /// See [`Strategy::sma_windows`].
    fn sma_windows(&self) -> &'static [&'static str];
    /// See [`Strategy::momentum_lookbacks`].
    fn momentum_lookbacks(&self) -> &'static [&'static str];
    /// Runs one backtest with checked values; `scratch` is the backtester's store of
    /// per-strategy buffers.
    #[doc(hidden)]
    fn run_erased(
        &self,
        values: &ParamValues,
        run: &mut Run<'_, '_>,
        scratch: &mut ScratchStore,
    ) -> Result<Metrics, Error>;
}

impl<S: Strategy> DynStrategy for S {
    fn name(&self) -> &'static str {
        Strategy::name(self)
    }
    fn frequencies(&self) -> &'static [Frequency] {
        Strategy::frequencies(self)
    }
    fn parameters(&self) -> &'static [ParamSpec] {
        Strategy::parameters(self)
    }
    fn check(&self, values: &ParamValues) -> Result<(), Error> {
        values.check(Strategy::parameters(self))?;
        self.build(values).map(drop)
    }
    fn warmup(&self, values: &ParamValues) -> Result<usize, Error> {
        values.check(Strategy::parameters(self))?;
        Ok(Strategy::warmup(self, &self.build(values)?))
    }
    fn sma_windows(&self) -> &'static [&'static str] {
        Strategy::sma_windows(self)
    }
    fn momentum_lookbacks(&self) -> &'static [&'static str] {
        Strategy::momentum_lookbacks(self)
    }
    fn run_erased(
        &self,
        values: &ParamValues,
        run: &mut Run<'_, '_>,
        scratch: &mut ScratchStore,
    ) -> Result<Metrics, Error> {
        values.check(Strategy::parameters(self))?;
        let params = self.build(values)?;
        let freq = run.market().frequency();
        if !Strategy::frequencies(self).contains(&freq) {
            return Err(Error::Unsupported(format!(
                "{} runs on {} bars, but this market has {} bars",
                Strategy::name(self),
                frequency_list(Strategy::frequencies(self)),
                freq.as_str()
            )));
        }
        self.run(&params, run, scratch.get::<S::Scratch>())
    }
}

fn frequency_list(f: &[Frequency]) -> String {
    f.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" or ")
}

/// Per-strategy scratch buffers of one backtester, one per scratch type.
#[derive(Default)]
pub struct ScratchStore {
    slots: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl ScratchStore {
    pub(crate) fn get<T: Default + Send + 'static>(&mut self) -> &mut T {
        let id = TypeId::of::<T>();
        let i = match self.slots.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                self.slots.push((id, Box::new(T::default())));
                self.slots.len() - 1
            }
        };
        self.slots[i].1.downcast_mut().expect("slot holds its type")
    }
}

impl fmt::Debug for ScratchStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchStore").field("slots", &self.slots.len()).finish()
    }
}

/// A strategy with checked parameter values: what one backtest runs.
#[derive(Clone)]
pub struct Configured {
    strategy: Arc<dyn DynStrategy>,
    values: ParamValues,
}

impl fmt::Debug for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.strategy.name())?;
        for (i, (k, v)) in self.to_pairs().iter().enumerate() {
            write!(f, "{}{k}={v}", if i > 0 { ", " } else { "" })?;
        }
        write!(f, ")")
    }
}

impl PartialEq for Configured {
    fn eq(&self, other: &Self) -> bool {
        self.strategy.name() == other.strategy.name() && self.values == other.values
    }
}

impl Configured {
    /// Checks `values` for `strategy`.
    pub fn new(strategy: Arc<dyn DynStrategy>, values: ParamValues) -> Result<Configured, Error> {
        strategy.check(&values)?;
        Ok(Configured { strategy, values })
    }

    /// Parses `NAME=VALUE` pairs for `strategy`, with defaults for everything left out.
    pub fn from_pairs(strategy: Arc<dyn DynStrategy>, pairs: &[(String, String)]) -> Result<Configured, Error> {
        let values = ParamValues::from_pairs(strategy.name(), strategy.parameters(), pairs)?;
        Configured::new(strategy, values)
    }

    /// The strategy.
    pub fn strategy(&self) -> &Arc<dyn DynStrategy> {
        &self.strategy
    }

    /// The name of the strategy.
    pub fn name(&self) -> &'static str {
        self.strategy.name()
    }

    /// The checked values.
    pub fn values(&self) -> &ParamValues {
        &self.values
    }

    /// Every parameter as a `(name, value)` pair in table order.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        self.values.to_pairs(self.strategy.parameters())
    }
}

/// The strategies a binary knows, in registration order.
///
/// `btopt` uses [`Registry::builtin`]; a user's binary adds its own with
/// [`Registry::with`] and hands the result to the CLI. The position of a strategy is its
/// [`StrategyId`], which tasks carry across the process boundary: every worker runs the same
/// binary (fork inherits the registry, spawn re-executes and rebuilds it), so ids agree.
#[derive(Clone, Default)]
pub struct Registry {
    strategies: Vec<Arc<dyn DynStrategy>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A strategy's position in its [`Registry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StrategyId(pub u16);

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `strategy`. Panics on a duplicate name or an invalid table (more than
    /// [`crate::MAX_PARAMS`] entries, a repeated parameter name, a default outside its
    /// domain, an SMA window that is not an integer parameter): those are bugs in the binary, found the first time it starts.
    pub fn with(mut self, strategy: impl Strategy) -> Registry {
        let name = Strategy::name(&strategy);
        assert!(self.get(name).is_none(), "strategy {name} registered twice");
        let table = Strategy::parameters(&strategy);
        assert!(table.len() <= crate::MAX_PARAMS, "strategy {name} has more than {} parameters", crate::MAX_PARAMS);
        for (i, p) in table.iter().enumerate() {
            assert!(table[..i].iter().all(|q| q.name != p.name), "strategy {name} repeats parameter {}", p.name);
            assert!(p.check(p.default_value()).is_ok(), "strategy {name}: default of {} is outside its domain", p.name);
        }
        for w in Strategy::sma_windows(&strategy) {
            let integer = table.iter().any(|p| p.name == *w && matches!(p.kind, crate::ParamKind::Integer { .. }));
            assert!(integer, "strategy {name}: SMA window {w} is not an integer parameter");
        }
        self.strategies.push(Arc::new(strategy));
        self
    }

    /// The strategy called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynStrategy>> {
        self.strategies.iter().find(|s| s.name() == name)
    }

    /// The strategy called `name`, or an error listing the known names.
    pub fn lookup(&self, name: &str) -> Result<&Arc<dyn DynStrategy>, Error> {
        self.get(name)
            .ok_or_else(|| Error::UnknownStrategy { name: name.to_string(), expected: self.names().join(", ") })
    }

    /// The id of the strategy called `name`.
    pub fn id_of(&self, name: &str) -> Result<StrategyId, Error> {
        self.lookup(name)?;
        Ok(StrategyId(self.strategies.iter().position(|s| s.name() == name).expect("found above") as u16))
    }

    /// The strategy with id `id`.
    pub fn by_id(&self, id: StrategyId) -> Option<&Arc<dyn DynStrategy>> {
        self.strategies.get(usize::from(id.0))
    }

    /// Every strategy, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynStrategy>> {
        self.strategies.iter()
    }

    /// The names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.strategies.iter().map(|s| s.name()).collect()
    }

    /// Parses `NAME=VALUE` pairs for strategy `name`.
    pub fn configure(&self, name: &str, pairs: &[(String, String)]) -> Result<Configured, Error> {
        Configured::from_pairs(self.lookup(name)?.clone(), pairs)
    }
}

impl fmt::Debug for dyn DynStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}
