//! Shared fixtures: the small bundle every test uses, and the one place that runs child
//! binaries (`btopt-e2e` and `btopt`) under a hang guard.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bundle::{Frequency, GenerateSpec};

/// Hang guard for every child run: a run that takes longer is killed and the test fails.
/// It only catches hangs; no test asserts anything about speed.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(300);

/// The mag-7 daily bundle for 2021-2022 (about 500 sessions), generated once per content
/// hash under cargo's per-target temp dir and shared by every test (a bundle never changes
/// after it is written, and `bundle::store::write` publishes it atomically).
pub(crate) fn daily_bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let spec = GenerateSpec {
            start: "2021-01-04".parse().unwrap(),
            end: "2022-12-30".parse().unwrap(),
            ..GenerateSpec::mag7(Frequency::Daily)
        };
        let data = bundle::generate::generate(&spec).expect("generate the bundle");
        let hash = data.content_hash();
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-bundles").join(format!("mag7-daily-{}", &hash[..16]));
        if !dir.exists() {
            std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
            // Another test process may publish the same bundle first; then use that one.
            if let Err(e) = bundle::store::write(&data, &dir) {
                assert!(dir.exists(), "failed to write the test bundle: {e}");
            }
        }
        assert_eq!(bundle::Bundle::load(&dir).expect("load the test bundle").content_hash(), hash);
        dir
    })
}

/// What a child run printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Asserts a zero exit and returns stdout.
    pub(crate) fn ok(&self) -> &str {
        assert!(self.status.success(), "child failed ({}):\nstderr:\n{}", self.status, self.stderr);
        &self.stdout
    }

    /// stdout as JSON lines.
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// Waits for `child` (stdout and stderr piped), draining both pipes concurrently; kills it and
/// fails the test if it outlives [`HANG_GUARD`].
pub(crate) fn wait_guarded(mut child: Child) -> Output {
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > HANG_GUARD {
            child.kill().expect("kill a hung child");
            let _ = child.wait();
            panic!("child hung for {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader").expect("utf-8 stdout"),
        stderr: err.join().expect("stderr reader").expect("utf-8 stderr"),
    }
}

/// Starts `cmd` with stdin closed and stdout and stderr piped (for [`wait_guarded`]).
pub(crate) fn start(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the child")
}

/// A `btopt-e2e` command (this package's child binary) with fault injection cleared.
pub(crate) fn e2e(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_btopt-e2e"));
    c.args(args).env_remove(pool::FAULT_ENV).env("RUST_BACKTRACE", "0");
    c
}

/// Runs `btopt-e2e` to the end.
pub(crate) fn run_e2e(args: &[&str]) -> Output {
    wait_guarded(start(&mut e2e(args)))
}

/// The `btopt` binary of this build.
///
/// `CARGO_BIN_EXE_btopt` exists only for the btopt package's own tests, and a binary cannot be
/// a dev-dependency, so it is found by layout: this test runs as
/// `<target>/<profile-dir>/deps/e2e-HASH`, and cargo puts `btopt` in `<target>/<profile-dir>/`.
/// To never run a stale binary, the first call runs `cargo build -p btopt` into that same
/// directory with the test profile (a no-op when it is fresh; `cargo test` has released the
/// build lock by the time tests run). `BTOPT_E2E_BTOPT=/path/to/btopt` overrides all of this.
pub(crate) fn btopt_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        if let Some(p) = std::env::var_os("BTOPT_E2E_BTOPT") {
            return PathBuf::from(p);
        }
        let test_exe = std::env::current_exe().expect("current_exe");
        let profile_dir = test_exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/e2e-HASH");
        let exe = profile_dir.join(format!("btopt{}", std::env::consts::EXE_SUFFIX));
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "test".to_string(),
            Some("release") => "bench".to_string(),
            Some(other) => other.to_string(),
            None => panic!("no profile directory above {}", test_exe.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "btopt", "--bin", "btopt", "--profile", &profile]);
        build.current_dir(env!("CARGO_MANIFEST_DIR"));
        // Cross builds put the profile directory under <target>/<triple>/; cargo marks the
        // target directory itself with CACHEDIR.TAG.
        let above = profile_dir.parent().expect("target dir");
        let target_dir = if above.join("CACHEDIR.TAG").exists() {
            above
        } else {
            let triple = above.file_name().and_then(|n| n.to_str()).expect("target triple");
            build.args(["--target", triple]);
            above.parent().expect("target dir")
        };
        build.env("CARGO_TARGET_DIR", target_dir);
        let status = build.status().expect("run cargo build -p btopt");
        assert!(status.success(), "cargo build -p btopt failed: {status}");
        assert!(exe.exists(), "cargo built btopt, but not at {}", exe.display());
        exe
    })
}

/// A `btopt` command with fault injection cleared.
pub(crate) fn btopt(args: &[&str]) -> Command {
    let mut c = Command::new(btopt_exe());
    c.args(args).env_remove(pool::FAULT_ENV).env("RUST_BACKTRACE", "0");
    c
}

/// A path as a `&str` argument.
pub(crate) fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
