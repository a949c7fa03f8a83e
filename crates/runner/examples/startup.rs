//! Pool start-up time against bundle size, for every backend: a measurement, not a test.
//!
//! ```sh
//! cargo run --release -p runner --example startup -- DAILY_BUNDLE MINUTE_BUNDLE [WORKERS] [REPEATS]
//! ```
//!
//! For each bundle and backend it builds a pool of `WORKERS` (default 2), waits until every
//! worker is ready, and stops it, `REPEATS` times (default 5); it prints the median and the
//! range. The bundle is loaded once up front: the figure is what a pool adds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::{HandleMode, Job, PoolKind, SpawnLoad};

fn main() {
    let strategies = Arc::new(engine::Registry::builtin());
    runner::worker_main_if_requested(&strategies);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: startup DAILY_BUNDLE MINUTE_BUNDLE [WORKERS] [REPEATS]");
        std::process::exit(2);
    }
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    println!("{:<8} {:<13} {:>10} {:>10} {:>10}", "bundle", "backend", "median ms", "min ms", "max ms");
    for dir in args[..2].iter().map(PathBuf::from) {
        let bundle = Arc::new(bundle::Bundle::load(&dir).expect("bundle loads"));
        let label = bundle.frequency().as_str();
        for kind in [
            PoolKind::Fork(HandleMode::Inherit),
            PoolKind::Fork(HandleMode::Reopen),
            PoolKind::Spawn(SpawnLoad::Load),
            PoolKind::Spawn(SpawnLoad::Mmap),
            PoolKind::Thread,
        ] {
            let mut ms = Vec::new();
            for _ in 0..repeats {
                // Thread and spawn pools leave helper threads that end shortly after drop;
                // fork needs the process single-threaded again.
                while pool::thread_count().is_some_and(|n| n > 1) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let t = Instant::now();
                let mut p =
                    runner::build_pool(kind, pool::PoolBuilder::new().workers(workers), &bundle, &dir, &strategies)
                        .expect("pool starts");
                // One echo per worker: every worker is up and answering.
                let out = p.map((0..workers as u64).map(Job::Echo));
                assert!(out.iter().all(|o| o.is_ok()));
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                drop(p);
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "{label:<8} {:<13} {:>10.1} {:>10.1} {:>10.1}",
                kind.name(),
                ms[ms.len() / 2],
                ms[0],
                ms[ms.len() - 1]
            );
        }
    }
}
