//! How busy async bracket searches keep a pool: a simulated pool of W workers on a virtual
//! clock, where a trial takes time equal to its budget, so the idle share is exact and free
//! of machine noise.

use optimize::{
    BohbSettings, BracketSearch, Completion, Config, Evaluator, HyperbandSettings, MemoryStore, Outcome, Result,
    SearchOptions, Space, optimize,
};

/// W workers on a virtual clock: a submitted trial starts at once and ends `budget` later.
struct SimulatedPool {
    workers: usize,
    now: f64,
    idle: f64,
    running: Vec<(f64, u64, f64)>,
}

impl SimulatedPool {
    fn new(workers: usize) -> SimulatedPool {
        SimulatedPool { workers, now: 0.0, idle: 0.0, running: Vec::new() }
    }

    /// Idle worker-time over workers × elapsed time.
    fn idle_share(&self) -> f64 {
        self.idle / (self.workers as f64 * self.now)
    }
}

impl Evaluator for SimulatedPool {
    fn capacity(&self) -> usize {
        self.workers
    }

    fn submit(&mut self, trial_id: u64, config: &Config, budget: f64) -> Result<()> {
        assert!(self.running.len() < self.workers, "submitted beyond capacity");
        let x = config.get("x").and_then(|v| v.as_f64()).expect("x");
        self.running.push((self.now + budget, trial_id, x));
        Ok(())
    }

    fn next_completed(&mut self) -> Result<Completion> {
        // The earliest end; ties in submission order.
        let i = (0..self.running.len())
            .min_by(|&a, &b| {
                self.running[a].0.total_cmp(&self.running[b].0).then(self.running[a].1.cmp(&self.running[b].1))
            })
            .expect("something is running");
        let (end, trial_id, x) = self.running.remove(i);
        self.idle += (self.workers - self.running.len() - 1) as f64 * (end - self.now);
        self.now = end;
        let outcome = Outcome::loss((x - 0.3).powi(2));
        Ok(Completion { trial_id, outcome, duration_secs: 0.0, worker: None })
    }
}

fn space() -> Space {
    Space::new(vec![optimize::Param::continuous("x", 0.0, 1.0, None, false)], &[]).expect("a space")
}

/// The guidance's 10 brackets, budgets 1/9 … 1, eta 3 (iteration i has 2 - i mod 3 halvings).
const SETTINGS: HyperbandSettings =
    HyperbandSettings { min_budget: 1.0 / 9.0, max_budget: 1.0, eta: 3.0, iterations: 10 };

/// BOHB (seed 0) at `workers` on the simulated pool: its idle share and the number of
/// halvings of each bracket in the order they opened (read off each bracket's first budget).
fn bohb_on(workers: usize, deterministic: bool) -> (f64, Vec<u32>) {
    let mut searcher = BracketSearch::bohb(space(), SETTINGS, BohbSettings::default(), 0).expect("bohb");
    let mut pool = SimulatedPool::new(workers);
    let options = SearchOptions { deterministic, reuse_results: false, streaming: false };
    let summary =
        optimize(&space(), &mut searcher, &mut pool, &mut MemoryStore::new(), options, &mut ()).expect("search");
    let mut first: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
    for t in &summary.trials {
        first.entry(t.bracket.expect("a bracket")).or_insert(t.budget);
    }
    let halvings = first.values().map(|b| (1.0 / b).log(3.0).round() as u32).collect();
    (pool.idle_share(), halvings)
}

#[test]
fn async_brackets_open_longest_first_and_idle_less() {
    let (_, order) = bohb_on(8, false);
    assert_eq!(order, [2, 2, 2, 2, 1, 1, 1, 0, 0, 0], "async mode opens the brackets with most stages first");
    // HpBandSter's order (2, 1, 0, 2, …, 2) left 5.1%, 10.7% and 17.9% idle at 2, 4 and 8
    // workers here: its last bracket's three stages ran one after another at the end.
    for (workers, most) in [(2, 0.015), (4, 0.04), (8, 0.11)] {
        let (idle, _) = bohb_on(workers, false);
        assert!(idle < most, "{workers} workers idle {idle:.4}, more than {most}");
    }
}

#[test]
fn synchronous_brackets_keep_hpbandsters_order() {
    for workers in [1, 8] {
        let (_, order) = bohb_on(workers, true);
        assert_eq!(order, [2, 1, 0, 2, 1, 0, 2, 1, 0, 2]);
    }
}
