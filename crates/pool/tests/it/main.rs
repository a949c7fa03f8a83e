//! Integration tests for the pool: every test drives the real `pool-demo` binary (or, for
//! the spawn backend's edge cases, a tiny shell script) as child processes.

mod equivalence;
mod faults;
mod in_process;
mod lifecycle;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Hang guard for every child run; never an assertion on speed.
const HANG_GUARD: Duration = Duration::from_secs(120);

pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Result lines (`ID ok ...` / `ID err KIND ...`) sorted by task id.
    pub(crate) fn results(&self) -> Vec<String> {
        let mut lines: Vec<(u64, String)> =
            self.stdout.lines().filter_map(|l| Some((l.split_once(' ')?.0.parse().ok()?, l.to_string()))).collect();
        lines.sort();
        lines.into_iter().map(|(_, l)| l).collect()
    }

    pub(crate) fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

pub(crate) fn demo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pool-demo"));
    c.env_remove(pool::FAULT_ENV).env_remove(pool::CHUNK_ENV).env("RUST_BACKTRACE", "0");
    c
}

pub(crate) fn wait_guarded(mut child: Child) -> Output {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > HANG_GUARD {
            child.kill().expect("kill hung child");
            panic!("pool-demo hung for {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout reader").expect("utf-8 stdout"),
        stderr: t_err.join().expect("stderr reader").expect("utf-8 stderr"),
    }
}

/// Runs `pool-demo run` with `args`, under `BTOPT_FAULT_INJECT=fault` if non-empty.
pub(crate) fn run(args: &[&str], fault: &str) -> Output {
    let mut c = demo();
    c.arg("run").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if !fault.is_empty() {
        c.env(pool::FAULT_ENV, fault);
    }
    wait_guarded(c.spawn().expect("start pool-demo"))
}

/// The one place that checks a run: it succeeded and printed `expect` as its summary.
pub(crate) fn check(args: &[&str], fault: &str, expect: &str) -> Output {
    let out = run(args, fault);
    assert!(out.status.success(), "pool-demo failed: {}\n{}", out.status, out.stderr);
    assert_eq!(out.line("summary "), expect, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    out
}

/// Backends that run in processes on this platform.
pub(crate) fn process_backends() -> &'static [&'static str] {
    if cfg!(unix) { &["fork", "spawn", "per-batch"] } else { &["spawn"] }
}
