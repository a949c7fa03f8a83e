//! The command-line contract, exercised through the real `btopt` binary.

mod backtest;
mod bundle;
mod strategies;

use std::path::Path;
use std::process::Command;

/// Output of one `btopt` run.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `btopt` with `args`: the one place the tests call the binary.
pub(crate) fn btopt(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_btopt")).args(args).output().expect("btopt runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Asserts a failed run printed exactly one `error:` line containing `expect`.
pub(crate) fn check_error(run: &Run, expect: &str) {
    assert_ne!(run.code, 0, "must fail: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line on stderr: {:?}", run.stderr);
    assert!(run.stderr.contains(expect), "stderr must contain {expect:?}: {}", run.stderr);
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
