//! Counting-ones (N_cat = N_cont = 8): BOHB vs random search at equal total budget, and how many
//! brackets BOHB needs to get within 1 of the optimum. Run with
//! `cargo run --release -p optimize --example counting_ones [brackets]`.

use optimize::{
    BohbSettings, BracketSearch, CountingOnes, HyperbandSettings, InProcessEvaluator, MemoryStore, RandomSearch,
    SearchOptions, SearchSummary, optimize,
};

fn main() -> optimize::Result<()> {
    let brackets: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let settings = HyperbandSettings { min_budget: 1.0 / 81.0, max_budget: 1.0, eta: 3.0, iterations: brackets };
    let (mut bohb_sum, mut rand_sum, mut hb_sum, mut bohb_secs) = (0.0, 0.0, 0.0, 0.0);
    println!("seed  bohb_best  hyperband_best  random_best  total_budget  brackets_to_within_1");
    for seed in 0..10u64 {
        let co = CountingOnes { n_cat: 8, n_cont: 8, max_draws: 729, seed };
        let space = co.space();
        let run = |searcher: &mut dyn optimize::Searcher| -> optimize::Result<SearchSummary> {
            let mut ev = InProcessEvaluator::new(4, move |id, c, b| co.evaluate(id, c, b));
            optimize(
                &space,
                searcher,
                &mut ev,
                &mut MemoryStore::new(),
                SearchOptions { deterministic: true, ..SearchOptions::default() },
                &mut (),
            )
        };
        let start = std::time::Instant::now();
        let b = run(&mut BracketSearch::bohb(space.clone(), settings.clone(), BohbSettings::default(), seed)?)?;
        bohb_secs += start.elapsed().as_secs_f64();
        let h = run(&mut BracketSearch::hyperband(space.clone(), settings.clone(), seed)?)?;
        let r = run(&mut RandomSearch::new(space.clone(), 1.0, Some(b.total_budget.floor() as u64), seed)?)?;
        let within = b
            .trials
            .iter()
            .find(|t| t.budget == 1.0 && t.loss.is_some_and(|l| l <= co.optimum() + 1.0))
            .and_then(|t| t.bracket)
            .map_or("never".to_owned(), |x| (x + 1).to_string());
        let (bl, hl, rl) = (b.best.unwrap().loss, h.best.unwrap().loss, r.best.unwrap().loss);
        println!("{seed:4}  {bl:9.3}  {hl:14.3}  {rl:11.3}  {:12.2}  {within}", b.total_budget);
        bohb_sum += bl;
        hb_sum += hl;
        rand_sum += rl;
    }
    println!("mean  {:9.3}  {:14.3}  {:11.3}", bohb_sum / 10.0, hb_sum / 10.0, rand_sum / 10.0);
    println!("BOHB wall time per run (search + in-process objective): {:.3} s", bohb_secs / 10.0);
    Ok(())
}
