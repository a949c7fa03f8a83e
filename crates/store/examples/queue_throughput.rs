//! Queue throughput on PostgreSQL with trivial trials: a coordinator running the real
//! optimizer loop (random search, deterministic batches) over the work queue, and N worker
//! processes (this binary again, `--worker`) that claim batches and complete them at once.
//! Reports trials/s end to end, the coordinator's CPU per trial, and the wall time of each
//! tenth of the study (a store that re-read its history per trial would slow down).
//!
//! ```text
//! cargo run --release -p store --features testing --example queue_throughput -- \
//!     [--url postgresql://postgres@127.0.0.1:5432/postgres] [--trials 100000] [--workers 4]
//! ```
//! Without `--url` it starts a throwaway cluster (as `store::testing` does). Figures are in
//! `crates/store/BENCHMARKS.md`.

use std::collections::{BTreeSet, VecDeque};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use optimize::{Completion, Evaluator, Outcome, Param, RandomSearch, SearchOptions, Space};
use store::{PgStore, PgTarget, Queue};

/// The coordinator's evaluator: submit queues, next_completed takes finished rows.
struct Coordinator {
    queue: Queue,
    to_queue: Vec<u64>,
    in_flight: BTreeSet<u64>,
    ready: VecDeque<Completion>,
}

impl Evaluator for Coordinator {
    fn capacity(&self) -> usize {
        optimize::DETERMINISTIC_BATCH
    }

    fn submit(&mut self, trial_id: u64, _: &optimize::Config, _: f64) -> optimize::Result<()> {
        self.to_queue.push(trial_id);
        self.in_flight.insert(trial_id);
        Ok(())
    }

    fn next_completed(&mut self) -> optimize::Result<Completion> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(c);
            }
            if !self.to_queue.is_empty() {
                self.queue.enqueue(&std::mem::take(&mut self.to_queue))?;
            }
            for c in self.queue.take_done()? {
                if self.in_flight.remove(&c.trial_id) {
                    self.ready.push_back(c);
                }
            }
            if self.ready.is_empty() {
                self.queue.wait(Duration::from_millis(50))?;
            }
        }
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn worker(url: &str, study: &str, batch: usize) {
    let target = PgTarget::parse(url).expect("url");
    let mut q = Queue::connect(&target, study, Duration::from_secs(30)).expect("connect");
    q.listen_queued().expect("listen");
    let mut done = 0usize;
    loop {
        let claimed = q.claim(batch).expect("claim");
        if claimed.is_empty() {
            if q.head().expect("head").is_some_and(|h| h.state == "finished") {
                break;
            }
            q.wait(Duration::from_millis(50)).expect("wait");
            continue;
        }
        let results: Vec<_> = claimed
            .into_iter()
            .map(|c| {
                let id = c.trial_id;
                (c, Completion { trial_id: id, outcome: Outcome::loss(id as f64), duration_secs: 0.0, worker: Some(0) })
            })
            .collect();
        done += q.complete(&results).expect("complete");
    }
    eprintln!("worker {} completed {done} trials", std::process::id());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let trials: u64 = get("--trials").map_or(100_000, |v| v.parse().expect("--trials N"));
    let workers: usize = get("--workers").map_or(4, |v| v.parse().expect("--workers N"));
    let batch: usize = get("--batch").map_or(256, |v| v.parse().expect("--batch N"));
    if args.iter().any(|a| a == "--worker") {
        worker(&get("--url").expect("--url"), &get("--study").expect("--study"), batch);
        return;
    }
    let (url, _server) = match get("--url") {
        Some(u) => (store::testing::create_database_at(&u), None),
        None => {
            let s = store::testing::Cluster::start().expect("PostgreSQL binaries (or pass --url)");
            (store::testing::create_database_at(&s.url()), Some(s))
        }
    };
    let target = PgTarget::parse(&url).expect("url");
    let version: String =
        target.connect().expect("connect").query_one("SHOW server_version", &[]).map(|r| r.get(0)).expect("version");
    let space = Space::new(vec![Param::continuous("x", 0.0, 1.0, None, false)], &[]).expect("space");
    let mut searcher = RandomSearch::new(space.clone(), 1.0, Some(trials), 1).expect("searcher");
    let study = "bench";
    let mut pg = PgStore::connect(&target, Some(study), None).expect("store");
    // As btopt's coordinator does: every suggestion goes to the queue, inserted queued.
    pg.queue_suggested(true);
    let coordinator = Queue::connect(&target, study, Duration::from_secs(30)).expect("queue");
    let mut ev =
        Coordinator { queue: coordinator, to_queue: Vec::new(), in_flight: BTreeSet::new(), ready: VecDeque::new() };
    ev.queue.listen_done().expect("listen");
    let exe = std::env::current_exe().expect("current_exe");
    let mut children: Vec<_> = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .args(["--worker", "--url", &url, "--study", study, "--batch", &batch.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let tenth = (trials / 10).max(1);
    let mut marks = Vec::new();
    let (started, cpu0) = (Instant::now(), cpu_seconds());
    let mut last = Instant::now();
    let mut observer = |p: &optimize::Progress<'_>| {
        if p.evaluations.is_multiple_of(tenth) {
            marks.push(last.elapsed().as_secs_f64());
            last = Instant::now();
        }
    };
    let options = SearchOptions { deterministic: true, reuse_results: false, streaming: false };
    let summary =
        optimize::optimize(&space, &mut searcher, &mut ev, &mut pg, options, &mut observer).expect("optimize");
    pg.finish().expect("finish");
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    for c in &mut children {
        c.wait().expect("wait for a worker");
    }
    assert_eq!(summary.evaluations, trials);
    println!("server: PostgreSQL {version}; {workers} worker processes, claim batch {batch}");
    println!("trials: {trials} in {wall:.2} s = {:.0} trials/s", trials as f64 / wall);
    println!("coordinator CPU: {cpu:.2} s = {:.1} us/trial", cpu / trials as f64 * 1e6);
    let shown: Vec<String> = marks.iter().map(|m| format!("{m:.2}")).collect();
    println!("wall s per tenth of the study: {}", shown.join(" "));
}
