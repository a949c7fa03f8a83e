//! pool-demo: runs trivial jobs through every pool backend. It is the child binary of the
//! pool's integration tests, a runnable example of the API, and the measurement tool.
//!
//! ```text
//! pool-demo run   --backend B [--workers N] --tasks SPEC [--timeout-ms T] [--max-frame BYTES]
//!                 [--attempts N] [--stream] [--reopen] [--shared-mb M] [--rlimit-mb M]
//!                 [--chunk N|auto] [--pace N] [--wait-ms MS]
//! pool-demo serve --backend B [--workers N]      (prints pids, then obeys "drop" or "hold" on stdin)
//! pool-demo bench --backend B [--workers N] [--roundtrips R] [--throughput T] [--shared-mb M]
//!                 [--chunk N|auto]
//! ```
//! `--chunk` sets the pool's chunk size (default: `BTOPT_POOL_CHUNK`, else auto). `--pace N` (with `--stream`) keeps at
//! most N tasks in flight, submitting one more per result, as the optimizer does. `--wait-ms MS`
//! (with `--stream`) first awaits each result with `Pool::wait_ready(MS)` and prints how many
//! of those waits ended with a result at hand and how many timed out.
//! SPEC is a comma-separated list of `KIND[:ARG][*COUNT]` with KIND one of echo (ARG
//! defaults to the task's index), traced (echo of the index that also prints `ran N` on
//! stderr), sleep:MS, panic, abort, exit, sigkill, alloc:MIB,
//! sum:SEED (a float reduction over the shared array), big:BYTES, hang, print:TEXT.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool::{Backend, ChunkSize, Pool, PoolBuilder, Registry, SpawnWorker, Worker};
use serde::{Deserialize, Serialize};

/// One demo job.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Job {
    Echo(u64),
    /// As `Echo`, and says so on stderr (`ran N`): tests count how often each task ran.
    Traced(u64),
    Sleep(u64),
    Panic,
    Abort,
    Exit,
    SigKill,
    Alloc(u64),
    Sum(u64),
    Big(u64),
    Hang,
    Print(String),
}

/// One demo result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Out {
    Num(u64),
    Float(f64),
    Bytes(usize),
    Blob(Vec<u8>),
    Unit,
}

/// How a spawned demo worker builds its state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Init {
    shared_len: usize,
    rlimit_mb: u64,
    fail_init: bool,
}

/// The demo state: a read-only shared array, standing in for a loaded bundle.
struct Demo {
    shared: Arc<Vec<f64>>,
}

fn build_shared(len: usize) -> Vec<f64> {
    (0..len).map(|i| ((i as f64) * 0.618_033_988_75).fract()).collect()
}

impl Worker for Demo {
    type Task = Job;
    type Output = Out;
    fn run(&mut self, job: Job) -> Out {
        match job {
            Job::Echo(n) => Out::Num(n),
            Job::Traced(n) => {
                eprintln!("ran {n}");
                Out::Num(n)
            }
            Job::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Out::Unit
            }
            Job::Panic => panic!("demo panic"),
            Job::Abort => std::process::abort(),
            Job::Exit => std::process::exit(9),
            Job::SigKill => {
                #[cfg(unix)]
                // SAFETY: raising a signal at ourselves.
                unsafe {
                    libc::raise(libc::SIGKILL);
                }
                std::process::abort()
            }
            Job::Alloc(mib) => {
                let v = vec![1u8; (mib as usize) << 20];
                Out::Bytes(v.iter().map(|&b| b as usize).sum())
            }
            Job::Sum(seed) => {
                let d = &self.shared;
                let mut acc = 0.0f64;
                let step = 1 + (seed as usize % 7);
                let mut i = seed as usize % d.len().max(1);
                while i < d.len() {
                    acc += (d[i] * (seed as f64 + 1.0)).sin();
                    i += step;
                }
                Out::Float(acc)
            }
            Job::Big(n) => Out::Blob(vec![7u8; n as usize]),
            Job::Hang => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Job::Print(text) => {
                eprintln!("{text}");
                Out::Unit
            }
        }
    }
}

impl SpawnWorker for Demo {
    type Init = Init;
    const NAME: &'static str = "pool-demo";
    fn init(init: Init) -> Result<Demo, String> {
        if init.fail_init {
            return Err("demo init refused (--fail-init)".into());
        }
        set_rlimit(init.rlimit_mb);
        Ok(Demo { shared: Arc::new(build_shared(init.shared_len)) })
    }
}

fn set_rlimit(mb: u64) {
    #[cfg(unix)]
    if mb > 0 {
        let lim = libc::rlimit { rlim_cur: mb << 20, rlim_max: mb << 20 };
        // SAFETY: setrlimit reads a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    }
}

struct Args {
    cmd: String,
    backend: Backend,
    workers: usize,
    tasks: String,
    timeout_ms: u64,
    max_frame: usize,
    attempts: u32,
    stream: bool,
    reopen: bool,
    fail_init: bool,
    shared_mb: f64,
    rlimit_mb: u64,
    roundtrips: usize,
    throughput: usize,
    chunk: Option<ChunkSize>,
    pace: usize,
    wait_ms: u64,
    busy: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("usage: pool-demo run|serve|bench [options]")?;
    let mut a = Args {
        cmd,
        backend: Backend::platform_default(),
        workers: 2,
        tasks: String::new(),
        timeout_ms: 0,
        max_frame: pool::frame::DEFAULT_MAX_FRAME,
        attempts: 3,
        stream: false,
        reopen: false,
        fail_init: false,
        shared_mb: 1.0,
        rlimit_mb: 0,
        roundtrips: 20_000,
        throughput: 100_000,
        chunk: None,
        pace: 0,
        wait_ms: 0,
        busy: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("bad number {v:?}: {e}"));
        match flag.as_str() {
            "--backend" => a.backend = val()?.parse()?,
            "--workers" => a.workers = num(val()?)? as usize,
            "--tasks" => a.tasks = val()?,
            "--timeout-ms" => a.timeout_ms = num(val()?)?,
            "--max-frame" => a.max_frame = num(val()?)? as usize,
            "--attempts" => a.attempts = num(val()?)? as u32,
            "--shared-mb" => a.shared_mb = val()?.parse().map_err(|_| "bad --shared-mb")?,
            "--rlimit-mb" => a.rlimit_mb = num(val()?)?,
            "--roundtrips" => a.roundtrips = num(val()?)? as usize,
            "--throughput" => a.throughput = num(val()?)? as usize,
            "--chunk" => a.chunk = Some(val()?.parse().map_err(|e| format!("bad --chunk: {e}"))?),
            "--pace" => a.pace = num(val()?)? as usize,
            "--wait-ms" => a.wait_ms = num(val()?)?,
            "--stream" => a.stream = true,
            "--busy" => a.busy = true,
            "--reopen" => a.reopen = true,
            "--fail-init" => a.fail_init = true,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn parse_tasks(spec: &str) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (item, count) = match item.split_once('*') {
            Some((i, c)) => (i, c.parse::<usize>().map_err(|_| format!("bad count in {item:?}"))?),
            None => (item, 1),
        };
        let (kind, arg) = item.split_once(':').unwrap_or((item, ""));
        let n = || arg.parse::<u64>().map_err(|_| format!("{kind} needs a number, got {arg:?}"));
        for _ in 0..count {
            jobs.push(match kind {
                "echo" if arg.is_empty() => Job::Echo(jobs.len() as u64),
                "echo" => Job::Echo(n()?),
                "traced" => Job::Traced(jobs.len() as u64),
                "sleep" => Job::Sleep(n()?),
                "panic" => Job::Panic,
                "abort" => Job::Abort,
                "exit" => Job::Exit,
                "sigkill" => Job::SigKill,
                "alloc" => Job::Alloc(n()?),
                "sum" => Job::Sum(n()?),
                "big" => Job::Big(n()?),
                "hang" => Job::Hang,
                "print" => Job::Print(arg.to_string()),
                _ => return Err(format!("unknown job kind {kind:?}")),
            });
        }
    }
    Ok(jobs)
}

fn shared_len(a: &Args) -> usize {
    (a.shared_mb * 131_072.0) as usize // f64s per MiB
}

/// The state the parent builds before the pool (empty where the workers build their own).
fn parent_state(a: &Args) -> Arc<Vec<f64>> {
    match a.backend {
        Backend::Spawn => Arc::new(Vec::new()),
        Backend::Fork if a.reopen => Arc::new(Vec::new()),
        _ => Arc::new(build_shared(shared_len(a))),
    }
}

fn build(a: &Args) -> Result<Pool<Demo>, pool::Error> {
    build_from(a, parent_state(a))
}

/// Builds a pool of `Demo` workers on the chosen backend: the pattern the glue follows.
fn build_from(a: &Args, shared: Arc<Vec<f64>>) -> Result<Pool<Demo>, pool::Error> {
    let len = shared_len(a);
    let mut b = PoolBuilder::new().workers(a.workers).max_frame_len(a.max_frame).max_attempts(a.attempts);
    if let Some(c) = a.chunk {
        b = b.chunk_size(c);
    }
    if a.timeout_ms > 0 {
        b = b.task_timeout(Duration::from_millis(a.timeout_ms));
    }
    let rlimit = a.rlimit_mb;
    let fail = a.fail_init;
    // The per-child hook of the fork backends (the "reopen" point).
    let child_init = move || -> Result<(), String> {
        if fail {
            return Err("demo init refused (--fail-init)".into());
        }
        set_rlimit(rlimit);
        Ok(())
    };
    match a.backend {
        #[cfg(unix)]
        Backend::Fork if a.reopen => {
            // "Reopen" mode: each child builds its own copy after the fork.
            b.fork_with(Demo { shared: Arc::new(Vec::new()) }, move |w| {
                child_init()?;
                w.shared = Arc::new(build_shared(len));
                Ok(())
            })
        }
        #[cfg(unix)]
        Backend::Fork => b.fork_with(Demo { shared }, move |_| child_init()),
        #[cfg(unix)]
        Backend::PerBatch => b.per_batch(Demo { shared }, move |_| child_init()),
        Backend::Spawn => b.spawn::<Demo>(&Init { shared_len: len, rlimit_mb: rlimit, fail_init: fail }),
        Backend::Thread => b.thread(move || Demo { shared: shared.clone() }),
        #[cfg(not(unix))]
        _ => b.spawn::<Demo>(&Init { shared_len: len, rlimit_mb: rlimit, fail_init: fail }),
    }
}

fn describe(r: &Result<Out, pool::Error>) -> String {
    match r {
        Ok(Out::Num(n)) => format!("ok num {n}"),
        Ok(Out::Float(f)) => format!("ok float {:016x}", f.to_bits()),
        Ok(Out::Bytes(n)) => format!("ok bytes {n}"),
        Ok(Out::Blob(b)) => format!("ok blob {}", b.len()),
        Ok(Out::Unit) => "ok unit".into(),
        Err(e) if e.is_timeout() => format!("err timeout {e}"),
        Err(e) if e.is_panic() => format!("err panic {}", e.panic_message().unwrap_or("")),
        Err(e) if e.is_frame() => format!("err frame {e}"),
        Err(e) if e.is_worker_lost() => format!("err lost {e}"),
        Err(e) => format!("err other {e}"),
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rfind(')').and_then(|i| s[i + 2..].chars().next()).is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

fn run(a: &Args) -> Result<(), String> {
    let jobs = parse_tasks(&a.tasks)?;
    let mut pool = build(a).map_err(|e| format!("failed to build the pool: {e}"))?;
    let mut out = std::io::stdout().lock();
    let mut results: Vec<(u64, Result<Out, pool::Error>)> = Vec::new();
    if a.stream {
        // With a pace, at most that many in flight: one more submitted per result.
        let mut jobs = jobs.into_iter();
        let window = if a.pace == 0 { usize::MAX } else { a.pace };
        for j in jobs.by_ref().take(window) {
            pool.submit(j).map_err(|e| e.to_string())?;
        }
        // With `--wait-ms`, each result is first awaited with `Pool::wait_ready`, counting the
        // waits that ended with a result at hand and those that timed out.
        let (mut ready, mut timed_out) = (0u64, 0u64);
        loop {
            if a.wait_ms > 0 && pool.outstanding() > 0 {
                if pool.wait_ready(Duration::from_millis(a.wait_ms)) {
                    ready += 1;
                } else {
                    timed_out += 1;
                }
            }
            let Some(f) = pool.recv_timed() else { break };
            // With `--busy`, the time each task's worker reports for it.
            if a.busy {
                writeln!(out, "busy {} {:.3}", f.id, f.busy.as_secs_f64() * 1e3).map_err(|e| e.to_string())?;
            }
            results.push((f.id, f.result));
            if let Some(j) = jobs.next() {
                pool.submit(j).map_err(|e| e.to_string())?;
            }
        }
        if a.wait_ms > 0 {
            writeln!(out, "waits ready={ready} timed_out={timed_out}").map_err(|e| e.to_string())?;
        }
    } else {
        results = pool.map(jobs).into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect();
    }
    let ok = results.iter().filter(|r| r.1.is_ok()).count();
    for (id, r) in &results {
        writeln!(out, "{id} {}", describe(r)).map_err(|e| e.to_string())?;
    }
    let s = pool.stats();
    writeln!(out, "summary ok={ok} failed={}", results.len() - ok).map_err(|e| e.to_string())?;
    writeln!(out, "stats started={} lost={} retries={} timeouts={}", s.started, s.lost, s.retries, s.timeouts)
        .map_err(|e| e.to_string())?;
    pool.shutdown(Duration::from_secs(5));
    Ok(())
}

fn serve(a: &Args) -> Result<(), String> {
    let mut pool = build(a).map_err(|e| format!("failed to build the pool: {e}"))?;
    let r = pool.map([Job::Echo(1)]);
    let mut pids = pool.worker_pids();
    pids.extend(pool.helper_pids());
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("pids {} ok={}", list.join(","), r[0].is_ok());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    match line.trim() {
        "drop" => {
            drop(pool);
            let n = pids.iter().filter(|&&p| alive(p)).count();
            println!("dropped alive={n}");
        }
        "shutdown" => {
            pool.shutdown(Duration::from_secs(5));
            let n = pids.iter().filter(|&&p| alive(p)).count();
            println!("dropped alive={n}");
        }
        _ => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    Ok(())
}

fn bench(a: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let shared = parent_state(a);
    let state = t0.elapsed();
    let t0 = Instant::now();
    let mut pool = build_from(a, shared).map_err(|e| format!("failed to build the pool: {e}"))?;
    let startup = t0.elapsed();
    // Warm up, then sequential round trips: one task in flight at a time.
    for i in 0..1000 {
        pool.submit(Job::Echo(i)).map_err(|e| e.to_string())?;
        pool.recv();
    }
    let mut rts = Vec::with_capacity(a.roundtrips);
    let t = Instant::now();
    for i in 0..a.roundtrips as u64 {
        let t = Instant::now();
        pool.submit(Job::Echo(i)).map_err(|e| e.to_string())?;
        let (_, r) = pool.recv().ok_or("no result")?;
        r.map_err(|e| e.to_string())?;
        rts.push(t.elapsed());
    }
    let rt = t.elapsed().as_secs_f64() / a.roundtrips.max(1) as f64;
    rts.sort_unstable();
    let rt_median = rts.get(rts.len() / 2).map_or(0.0, Duration::as_secs_f64);
    // Everything at once through `map`: the amortised cost of a task in a chunk.
    let t = Instant::now();
    let res = pool.map((0..a.throughput as u64).map(Job::Echo));
    let tput = a.throughput as f64 / t.elapsed().as_secs_f64();
    let failed = res.iter().filter(|r| r.is_err()).count();
    // As the optimizer does: keep `wanted_in_flight` tasks in flight, one more per result.
    let t = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    while got < a.throughput as u64 {
        while sent < a.throughput as u64 && (sent - got) < pool.wanted_in_flight() as u64 {
            pool.submit(Job::Echo(sent)).map_err(|e| e.to_string())?;
            sent += 1;
        }
        let (_, r) = pool.recv().ok_or("no result")?;
        r.map_err(|e| e.to_string())?;
        got += 1;
    }
    let paced = a.throughput as f64 / t.elapsed().as_secs_f64();
    let chunk = pool.chunk_size();
    // Touch the whole shared array in every worker, then measure memory.
    let _ = pool.map((0..a.workers as u64 * 4).map(|_| Job::Sum(0)));
    let mem = pool.memory().ok();
    println!(
        "bench backend={} workers={} shared_mb={} parent_state_ms={:.3} startup_ms={:.3} roundtrip_us={:.2} roundtrip_median_us={:.2} throughput_per_s={:.0} per_task_us={:.3} paced_per_s={:.0} chunk={chunk} failed={failed} pss_mb={} rss_mb={}",
        a.backend,
        a.workers,
        a.shared_mb,
        state.as_secs_f64() * 1e3,
        startup.as_secs_f64() * 1e3,
        rt * 1e6,
        rt_median * 1e6,
        tput,
        1e6 / tput,
        paced,
        mem.map_or("n/a".into(), |m| format!("{:.1}", m.pss as f64 / 1048576.0)),
        mem.map_or("n/a".into(), |m| format!("{:.1}", m.rss as f64 / 1048576.0)),
    );
    Ok(())
}

fn main() {
    pool::worker_main_if_requested(&Registry::new().register::<Demo>());
    let result = parse_args().and_then(|a| match a.cmd.as_str() {
        "run" => run(&a),
        "serve" => serve(&a),
        "bench" => bench(&a),
        c => Err(format!("unknown command {c:?}")),
    });
    if let Err(e) = result {
        eprintln!("pool-demo: {e}");
        std::process::exit(1);
    }
}
