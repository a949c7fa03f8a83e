//! Searchers behind one interface: they suggest trials (config + budget) and take results.
//! [`GridSearch`], [`RandomSearch`] and [`BracketSearch`] (Hyperband and BOHB).
//!
//! Contract: trial ids are assigned by the searcher, 0, 1, 2, … in suggestion order; a call
//! to [`Searcher::suggest`] that returns `Wait` or `Done` changes nothing, so a searcher's
//! state is a pure function of its seed and the sequence of suggestions and observations.
//! The optimizer relies on that to resume a study by replaying its recorded events.

use std::collections::{BTreeMap, BTreeSet};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::error::{Error, Result};
use crate::evaluator::Outcome;
use crate::kde::{BohbModel, BohbSettings};
use crate::schedule::{BracketPlan, bracket_for_iteration, max_sh_iter};
use crate::space::Space;
use crate::value::Config;

/// A trial to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Unique, increasing id.
    pub id: u64,
    /// What to evaluate.
    pub config: Config,
    /// At what budget (fraction of the data, in (0, 1] for btopt).
    pub budget: f64,
    /// Bracket (iteration) number, for bracketed searchers.
    pub bracket: Option<u32>,
    /// Successive-halving stage within the bracket.
    pub stage: Option<u32>,
}

/// What a searcher wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Suggestion {
    /// Evaluate this.
    Trial(Trial),
    /// Nothing to start until some running trial reports back.
    Wait,
    /// The search is over (once everything running has reported back).
    Done,
}

/// How brackets may overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HpBandSter's scheduling: when every active bracket waits at a stage barrier, start the
    /// next bracket, so workers never idle. Results depend on completion timing. Brackets with
    /// more stages open first, and runs come from the open bracket with the longest chain of
    /// stages left, so the search ends on short brackets, whose runs are independent.
    Async,
    /// One stage at a time: no new bracket while one is unfinished. Combined with the
    /// optimizer's in-order result delivery this is deterministic at any worker count.
    Synchronous,
}

/// The searcher interface.
pub trait Searcher {
    /// The next trial, or `Wait`/`Done` (which must not change any state).
    fn suggest(&mut self, mode: Mode) -> Result<Suggestion>;
    /// Report a suggested trial's outcome. Failures (crashed, non-finite) are never promoted.
    fn observe(&mut self, trial_id: u64, outcome: &Outcome) -> Result<()>;
    /// A canonical description of the searcher and its settings (part of the study identity).
    fn identity(&self) -> serde_json::Value;
    /// The largest budget it evaluates; the incumbent is the best loss at this budget.
    fn max_budget(&self) -> f64;
    /// The number of trials it will suggest at most, when it knows (for a progress bar's
    /// ETA); an upper bound where constraints may skip configs.
    fn planned(&self) -> Option<u64> {
        None
    }
}

/// Exhaustive grid search in bijection order, skipping infeasible configs.
#[derive(Debug, Clone)]
pub struct GridSearch {
    space: Space,
    budget: f64,
    max_evaluations: Option<u64>,
    next_index: u128,
    suggested: u64,
}

impl GridSearch {
    /// Grid over a finite `space`, each config at `budget`, stopping after `max_evaluations`.
    pub fn new(space: Space, budget: f64, max_evaluations: Option<u64>) -> Result<GridSearch> {
        if space.cardinality().is_none() {
            return Err(Error::InvalidSettings(
                "grid search needs a finite space (give continuous parameters a step)".into(),
            ));
        }
        check_budget(budget)?;
        Ok(GridSearch { space, budget, max_evaluations, next_index: 0, suggested: 0 })
    }
}

fn check_budget(budget: f64) -> Result<()> {
    if budget.is_finite() && budget > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidSettings(format!("budget must be positive, got {budget}")))
    }
}

impl Searcher for GridSearch {
    fn suggest(&mut self, _mode: Mode) -> Result<Suggestion> {
        if self.max_evaluations.is_some_and(|m| self.suggested >= m) {
            return Ok(Suggestion::Done);
        }
        let Some((index, config)) = self.space.next_feasible(self.next_index) else {
            self.next_index = self.space.cardinality().unwrap_or(0);
            return Ok(Suggestion::Done);
        };
        self.next_index = index + 1;
        let id = self.suggested;
        self.suggested += 1;
        Ok(Suggestion::Trial(Trial { id, config, budget: self.budget, bracket: None, stage: None }))
    }

    fn observe(&mut self, _trial_id: u64, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }

    fn identity(&self) -> serde_json::Value {
        serde_json::json!({"searcher": "grid", "budget": self.budget, "max_evaluations": self.max_evaluations})
    }

    fn max_budget(&self) -> f64 {
        self.budget
    }

    fn planned(&self) -> Option<u64> {
        let card = u64::try_from(self.space.cardinality()?).unwrap_or(u64::MAX);
        Some(self.max_evaluations.map_or(card, |m| m.min(card)))
    }
}

/// A seeded pseudo-random permutation of `0..n` (a 4-round Feistel network with cycle
/// walking): sampling without replacement in O(1) memory, exhausting the grid exactly.
#[derive(Debug, Clone)]
struct Permutation {
    n: u128,
    half_bits: u32,
    keys: [u64; 4],
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Permutation {
    fn new(n: u128, rng: &mut ChaCha12Rng) -> Permutation {
        let bits = (128 - (n.max(4) - 1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        Permutation { n, half_bits, keys: [rng.random(), rng.random(), rng.random(), rng.random()] }
    }

    fn round(&self, x: u128) -> u128 {
        let mask: u128 = (1u128 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = splitmix64((r as u64) ^ k) as u128 & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }

    fn get(&self, i: u128) -> u128 {
        let mut x = self.round(i);
        while x >= self.n {
            x = self.round(x);
        }
        x
    }
}

/// Seeded random search without repeats. On a finite space it walks a pseudo-random
/// permutation of the grid; on a space with truly continuous parameters it samples and
/// skips any exact repeat.
#[derive(Debug, Clone)]
pub struct RandomSearch {
    space: Space,
    budget: f64,
    max_evaluations: Option<u64>,
    seed: u64,
    rng: ChaCha12Rng,
    perm: Option<Permutation>,
    position: u128,
    seen: BTreeSet<String>,
    suggested: u64,
}

impl RandomSearch {
    /// Random search at `budget`; `max_evaluations` is required for an infinite space.
    pub fn new(space: Space, budget: f64, max_evaluations: Option<u64>, seed: u64) -> Result<RandomSearch> {
        check_budget(budget)?;
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let perm = match space.cardinality() {
            Some(n) => Some(Permutation::new(n, &mut rng)),
            None if max_evaluations.is_none() => {
                return Err(Error::InvalidSettings(
                    "random search over a continuous space needs an evaluation cap".into(),
                ));
            }
            None => None,
        };
        Ok(RandomSearch {
            space,
            budget,
            max_evaluations,
            seed,
            rng,
            perm,
            position: 0,
            seen: BTreeSet::new(),
            suggested: 0,
        })
    }
}

impl Searcher for RandomSearch {
    fn suggest(&mut self, _mode: Mode) -> Result<Suggestion> {
        if self.max_evaluations.is_some_and(|m| self.suggested >= m) {
            return Ok(Suggestion::Done);
        }
        let config = match &self.perm {
            Some(perm) => loop {
                if self.position >= perm.n {
                    return Ok(Suggestion::Done);
                }
                let c = self.space.config_at(perm.get(self.position))?;
                self.position += 1;
                if self.space.is_feasible(&c) {
                    break c;
                }
            },
            None => loop {
                let c = self.space.sample(&mut self.rng)?;
                if self.seen.insert(crate::value::config_json_text(&c)) {
                    break c;
                }
            },
        };
        let id = self.suggested;
        self.suggested += 1;
        Ok(Suggestion::Trial(Trial { id, config, budget: self.budget, bracket: None, stage: None }))
    }

    fn observe(&mut self, _trial_id: u64, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }

    fn identity(&self) -> serde_json::Value {
        serde_json::json!({"searcher": "random", "budget": self.budget,
            "max_evaluations": self.max_evaluations, "seed": self.seed})
    }

    fn max_budget(&self) -> f64 {
        self.budget
    }

    fn planned(&self) -> Option<u64> {
        let card = self.perm.as_ref().map(|p| u64::try_from(p.n).unwrap_or(u64::MAX));
        match (card, self.max_evaluations) {
            (Some(c), Some(m)) => Some(c.min(m)),
            (c, m) => c.or(m),
        }
    }
}

/// Hyperband settings (HpBandSter's `min_budget`, `max_budget`, `eta`, `n_iterations`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HyperbandSettings {
    /// Smallest budget (the smallest used can be larger; budgets are built down from max).
    pub min_budget: f64,
    /// Largest budget.
    pub max_budget: f64,
    /// Successive-halving factor.
    pub eta: f64,
    /// Number of brackets to run (HpBandSter's `n_iterations`).
    pub iterations: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    config: Config,
    trial_id: Option<u64>,
    loss: Option<Option<f64>>,
}

#[derive(Debug, Clone)]
struct Bracket {
    /// HpBandSter's iteration number, which sets the plan.
    iteration: usize,
    plan: BracketPlan,
    stage: usize,
    entries: Vec<Entry>,
    issued: usize,
    finished: bool,
}

impl Bracket {
    fn stage_target(&self) -> usize {
        if self.stage == 0 { self.plan.num_configs[0] } else { self.entries.len() }
    }

    /// Whether the bracket can issue a run right now.
    fn has_run(&self) -> bool {
        !self.finished && self.issued < self.stage_target()
    }

    fn advance_if_complete(&mut self) {
        let complete = self.issued == self.stage_target() && self.entries.iter().all(|e| e.loss.is_some());
        if !complete || self.finished {
            return;
        }
        if self.stage + 1 >= self.plan.num_configs.len() {
            self.finished = true;
            return;
        }
        // Rank finite losses only; ties go to the earlier entry. Failures are never promoted.
        let mut ok: Vec<(usize, f64)> =
            self.entries.iter().enumerate().filter_map(|(i, e)| e.loss.flatten().map(|l| (i, l))).collect();
        ok.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let keep = self.plan.num_configs[self.stage + 1];
        let promoted: Vec<Entry> = ok
            .iter()
            .take(keep)
            .map(|(i, _)| Entry { config: self.entries[*i].config.clone(), trial_id: None, loss: None })
            .collect();
        if promoted.is_empty() {
            self.finished = true;
            return;
        }
        self.entries = promoted;
        self.stage += 1;
        self.issued = 0;
    }
}

#[derive(Debug, Clone)]
enum Sampler {
    Random,
    Bohb(Box<BohbModel>),
}

/// Hyperband (random configs) or BOHB (KDE model) over HpBandSter's bracket schedule.
/// Configs are sampled just in time; one explicit seed drives every random choice.
///
/// Successive halving promotes the top `n_{k+1}` finite losses of a stage (ties to the earlier
/// trial); crashed and non-finite results are never promoted, so a stage can be smaller than
/// planned and a bracket ends early when nothing is left. `iterations` counts brackets.
///
/// Constraints (HpBandSter has none): prior samples are drawn by rejection; model candidates
/// that violate a constraint are skipped, and if none of the `num_samples` passes, the config
/// comes from the prior.
#[derive(Debug, Clone)]
pub struct BracketSearch {
    space: Space,
    settings: HyperbandSettings,
    seed: u64,
    rng: ChaCha12Rng,
    sampler: Sampler,
    brackets: Vec<Bracket>,
    trials: BTreeMap<u64, (usize, usize)>,
    next_id: u64,
}

impl BracketSearch {
    /// Hyperband: random configs.
    pub fn hyperband(space: Space, settings: HyperbandSettings, seed: u64) -> Result<BracketSearch> {
        BracketSearch::new(space, settings, seed, Sampler::Random)
    }

    /// BOHB: configs from the KDE model once one exists.
    pub fn bohb(space: Space, settings: HyperbandSettings, bohb: BohbSettings, seed: u64) -> Result<BracketSearch> {
        if !(0.0..=1.0).contains(&bohb.random_fraction) || bohb.top_n_percent == 0 || bohb.top_n_percent >= 100 {
            return Err(Error::InvalidSettings("random_fraction must be in [0, 1] and top_n_percent in 1..=99".into()));
        }
        let levels = space
            .params()
            .iter()
            .map(|p| if p.is_categorical() { p.levels().unwrap_or(0) as usize } else { 0 })
            .collect();
        BracketSearch::new(space, settings, seed, Sampler::Bohb(Box::new(BohbModel::new(bohb, levels))))
    }

    fn new(space: Space, settings: HyperbandSettings, seed: u64, sampler: Sampler) -> Result<BracketSearch> {
        max_sh_iter(settings.min_budget, settings.max_budget, settings.eta)?;
        Ok(BracketSearch {
            space,
            settings,
            seed,
            rng: ChaCha12Rng::seed_from_u64(seed),
            sampler,
            brackets: Vec::new(),
            trials: BTreeMap::new(),
            next_id: 0,
        })
    }

    /// The BOHB model, if this is BOHB.
    pub fn model(&self) -> Option<&BohbModel> {
        match &self.sampler {
            Sampler::Bohb(m) => Some(m),
            Sampler::Random => None,
        }
    }

    /// Brackets started so far.
    pub fn brackets_started(&self) -> usize {
        self.brackets.len()
    }

    /// BOHB vector: unit-cube coordinates, choice indices for categoricals.
    fn config_to_vector(&self, config: &Config) -> Result<Vec<f64>> {
        let u = self.space.encode(config)?;
        Ok(self
            .space
            .params()
            .iter()
            .zip(u)
            .map(|(p, x)| match p.levels() {
                Some(n) if p.is_categorical() => ((x * n as f64).floor()).min(n as f64 - 1.0),
                _ => x,
            })
            .collect())
    }

    fn vector_to_config(&self, v: &[f64]) -> Config {
        let u: Vec<f64> = self
            .space
            .params()
            .iter()
            .zip(v)
            .map(|(p, x)| match p.levels() {
                Some(n) if p.is_categorical() => (x.round() + 0.5) / n as f64,
                _ => *x,
            })
            .collect();
        self.space.decode(&u)
    }

    fn sample_config(&mut self) -> Result<Config> {
        if let Sampler::Bohb(model) = &self.sampler {
            let feasible = |v: &[f64]| self.space.is_feasible(&self.vector_to_config(v));
            let mut rng = self.rng.clone();
            let proposal = model.propose(&mut rng, &feasible);
            self.rng = rng;
            if let Some(v) = proposal {
                return Ok(self.vector_to_config(&v));
            }
        }
        self.space.sample(&mut self.rng)
    }

    /// The bracket to issue the next run from: of those with a run to give, the one with the
    /// longest chain of stages left (the sum of their budgets), the oldest on a tie. Work on
    /// the longest chain first ends the search soonest, so fewer workers idle at its end (a
    /// bracket's stages run one after the other). In synchronous mode one bracket is active.
    fn next_bracket(&self) -> Option<usize> {
        let left = |b: &Bracket| b.plan.budgets[b.stage..].iter().sum::<f64>();
        let mut best: Option<(usize, f64)> = None;
        for (i, b) in self.brackets.iter().enumerate().filter(|(_, b)| b.has_run()) {
            if best.is_none_or(|(_, l)| left(b) > l) {
                best = Some((i, left(b)));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The iteration of the next bracket to open. Synchronous mode keeps HpBandSter's order.
    /// Async mode opens the brackets with the most stages first (iteration order among equals):
    /// a bracket's stages run one after another, so a long bracket opened last would leave
    /// most workers idle while its last stages run; short ones (a single stage, whose runs are
    /// independent) fill the end instead. With 10 brackets of budgets 1/9 to 1 on a simulated
    /// pool where a run takes its budget, the idle share at 8 workers is 10.7% instead of
    /// 17.9% (`tests/it/idle.rs`). The brackets are the same; only their order changes.
    fn next_iteration(&self, mode: Mode) -> Result<usize> {
        let opened: BTreeSet<usize> = self.brackets.iter().map(|b| b.iteration).collect();
        let left = (0..self.settings.iterations).filter(|i| !opened.contains(i));
        let next = match mode {
            Mode::Synchronous => left.min(),
            Mode::Async => {
                let s = &self.settings;
                let m = max_sh_iter(s.min_budget, s.max_budget, s.eta)?;
                // Iteration i has s = m - 1 - (i mod m) successive-halving steps.
                left.min_by_key(|&i| (i % m, i))
            }
        };
        next.ok_or_else(|| Error::Stalled("no bracket left to open".into()))
    }

    fn issue(&mut self, b: usize) -> Result<Trial> {
        if self.brackets[b].stage == 0 && self.brackets[b].entries.len() == self.brackets[b].issued {
            let config = self.sample_config()?;
            self.brackets[b].entries.push(Entry { config, trial_id: None, loss: None });
        }
        let id = self.next_id;
        self.next_id += 1;
        let br = &mut self.brackets[b];
        let e = br.issued;
        br.issued += 1;
        br.entries[e].trial_id = Some(id);
        self.trials.insert(id, (b, e));
        Ok(Trial {
            id,
            config: br.entries[e].config.clone(),
            budget: br.plan.budgets[br.stage],
            bracket: Some(b as u32),
            stage: Some(br.stage as u32),
        })
    }
}

impl Searcher for BracketSearch {
    fn suggest(&mut self, mode: Mode) -> Result<Suggestion> {
        if let Some(b) = self.next_bracket() {
            return self.issue(b).map(Suggestion::Trial);
        }
        let any_active = self.brackets.iter().any(|b| !b.finished);
        if self.brackets.len() < self.settings.iterations && (mode == Mode::Async || !any_active) {
            let s = &self.settings;
            let iteration = self.next_iteration(mode)?;
            let plan = bracket_for_iteration(s.min_budget, s.max_budget, s.eta, iteration)?;
            self.brackets.push(Bracket { iteration, plan, stage: 0, entries: Vec::new(), issued: 0, finished: false });
            return self.issue(self.brackets.len() - 1).map(Suggestion::Trial);
        }
        Ok(if any_active { Suggestion::Wait } else { Suggestion::Done })
    }

    fn observe(&mut self, trial_id: u64, outcome: &Outcome) -> Result<()> {
        let (b, e) = self
            .trials
            .remove(&trial_id)
            .ok_or_else(|| Error::Stalled(format!("result for unknown or finished trial {trial_id}")))?;
        let loss = outcome.finite_loss();
        let budget = self.brackets[b].plan.budgets[self.brackets[b].stage];
        let config = self.brackets[b].entries[e].config.clone();
        if matches!(self.sampler, Sampler::Bohb(_)) {
            let v = self.config_to_vector(&config)?;
            if let Sampler::Bohb(model) = &mut self.sampler {
                model.observe(budget, v, loss);
            }
        }
        let br = &mut self.brackets[b];
        br.entries[e].loss = Some(loss);
        br.advance_if_complete();
        Ok(())
    }

    fn identity(&self) -> serde_json::Value {
        let (name, bohb) = match &self.sampler {
            Sampler::Random => ("hyperband", serde_json::Value::Null),
            Sampler::Bohb(m) => ("bohb", serde_json::to_value(m.settings()).unwrap_or_default()),
        };
        serde_json::json!({"searcher": name, "settings": serde_json::to_value(&self.settings).unwrap_or_default(),
            "bohb": bohb, "seed": self.seed})
    }

    fn max_budget(&self) -> f64 {
        self.settings.max_budget
    }

    fn planned(&self) -> Option<u64> {
        let h = &self.settings;
        let mut n = 0u64;
        for i in 0..h.iterations {
            let plan = crate::schedule::bracket_for_iteration(h.min_budget, h.max_budget, h.eta, i).ok()?;
            n += plan.num_configs.iter().map(|&c| c as u64).sum::<u64>();
        }
        Some(n)
    }
}

/// Which searcher `btopt optimize --search` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// [`GridSearch`].
    Grid,
    /// [`RandomSearch`].
    Random,
    /// [`BracketSearch::hyperband`].
    Hyperband,
    /// [`BracketSearch::bohb`].
    Bohb,
}

impl std::str::FromStr for SearchKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<SearchKind> {
        match s {
            "grid" => Ok(SearchKind::Grid),
            "random" => Ok(SearchKind::Random),
            "hyperband" => Ok(SearchKind::Hyperband),
            "bohb" => Ok(SearchKind::Bohb),
            other => Err(Error::InvalidSettings(format!(
                "unknown search `{other}` (expected grid, random, hyperband or bohb)"
            ))),
        }
    }
}

/// Everything the CLI's search flags say, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// `--search`.
    pub kind: SearchKind,
    /// `--min-budget` (Hyperband/BOHB).
    pub min_budget: f64,
    /// `--max-budget`; grid and random evaluate every config at this budget.
    pub max_budget: f64,
    /// `--eta` (Hyperband/BOHB).
    pub eta: f64,
    /// `--iterations`: brackets for Hyperband/BOHB.
    pub iterations: usize,
    /// `--evaluations`: cap for grid/random (`None`: the whole grid).
    pub evaluations: Option<u64>,
    /// `--seed`.
    pub seed: u64,
}

impl Default for SearchSpec {
    /// BOHB with the guidance's settings: budgets 0.05..1, eta 3, 10 brackets, seed 42.
    fn default() -> Self {
        SearchSpec {
            kind: SearchKind::Bohb,
            min_budget: 0.05,
            max_budget: 1.0,
            eta: 3.0,
            iterations: 10,
            evaluations: None,
            seed: 42,
        }
    }
}

impl SearchSpec {
    /// Build the searcher (BOHB with [`BohbSettings::default`]).
    pub fn build(&self, space: &Space) -> Result<Box<dyn Searcher>> {
        let hb = HyperbandSettings {
            min_budget: self.min_budget,
            max_budget: self.max_budget,
            eta: self.eta,
            iterations: self.iterations,
        };
        Ok(match self.kind {
            SearchKind::Grid => Box::new(GridSearch::new(space.clone(), self.max_budget, self.evaluations)?),
            SearchKind::Random => {
                Box::new(RandomSearch::new(space.clone(), self.max_budget, self.evaluations, self.seed)?)
            }
            SearchKind::Hyperband => Box::new(BracketSearch::hyperband(space.clone(), hb, self.seed)?),
            SearchKind::Bohb => Box::new(BracketSearch::bohb(space.clone(), hb, BohbSettings::default(), self.seed)?),
        })
    }
}
