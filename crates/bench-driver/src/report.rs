//! The evaluation's records and their writers: `report.json`, `runs.csv` and `report.md`.
//!
//! These types are serialized, so they are an interface: `report.json` is read by CI's shape
//! check and by anyone comparing runs. Renaming a field is a breaking change. Every field that
//! `report.json` must carry is serialized even when it has no value (as `null`), so a reader
//! can tell "not measured" from "forgotten".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::decide::{self, Decision, Step, Tracker, Verdict};
use crate::stats::{Comparison, SampleSummary, TTest};

/// One timed run of one arm of one scenario: a row of `runs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Scenario name.
    pub scenario: String,
    /// Arm name (backend, searcher...).
    pub arm: String,
    /// Index of the run within its arm, from 0, in the order it was run.
    pub index: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Extra columns (workers, seed, best score...). Every key becomes a column of `runs.csv`,
    /// empty in the rows that do not have it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Run {
    /// A run without extra columns.
    pub fn new(scenario: &str, arm: &str, index: usize, seconds: f64) -> Run {
        Run { scenario: scenario.to_owned(), arm: arm.to_owned(), index, seconds, extra: BTreeMap::new() }
    }

    /// Adds an extra column.
    pub fn with(mut self, key: &str, value: impl ToString) -> Run {
        self.extra.insert(key.to_owned(), value.to_string());
        self
    }
}

/// Memory of one arm's pool at one worker count: sums over the pool's processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySample {
    /// Arm name.
    pub arm: String,
    /// Number of workers.
    pub workers: usize,
    /// Sum of PSS over the pool's processes, in bytes.
    pub pss_sum_bytes: u64,
    /// Sum of RSS over the pool's processes, in bytes (double-counts shared pages).
    pub rss_sum_bytes: u64,
}

/// The candidate's memory overhead over the baseline at one worker count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryOverhead {
    /// Number of workers.
    pub workers: usize,
    /// `(candidate PSS sum / baseline PSS sum − 1) · 100`; `None` if the baseline's is 0.
    pub pss_overhead_pct: Option<f64>,
    /// The same for RSS sums, for contrast.
    pub rss_overhead_pct: Option<f64>,
}

/// A scenario's memory figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Every measured arm and worker count, in the order given.
    pub samples: Vec<MemorySample>,
    /// The candidate's overhead over the baseline, at each worker count measured for both.
    pub overhead: Vec<MemoryOverhead>,
}

impl Memory {
    /// Collects `samples` and computes the overhead of `candidate` over `baseline` at each
    /// worker count where both were measured.
    pub fn new(baseline: &str, candidate: &str, samples: Vec<MemorySample>) -> Memory {
        let pct = |c: u64, b: u64| (b > 0).then(|| (c as f64 / b as f64 - 1.0) * 100.0);
        let find = |arm: &str, workers: usize| samples.iter().find(|s| s.arm == arm && s.workers == workers);
        let mut workers: Vec<usize> = samples.iter().filter(|s| s.arm == baseline).map(|s| s.workers).collect();
        workers.dedup();
        let overhead = workers
            .into_iter()
            .filter_map(|w| {
                let (b, c) = (find(baseline, w)?, find(candidate, w)?);
                Some(MemoryOverhead {
                    workers: w,
                    pss_overhead_pct: pct(c.pss_sum_bytes, b.pss_sum_bytes),
                    rss_overhead_pct: pct(c.rss_sum_bytes, b.rss_sum_bytes),
                })
            })
            .collect();
        Memory { samples, overhead }
    }
}

/// Detailed statistics of a timed scenario, beyond the headline fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Baseline runs: n, mean, sd, 95% CI.
    pub baseline: SampleSummary,
    /// Candidate runs: n, mean, sd, 95% CI.
    pub candidate: SampleSummary,
    /// Welch's t-test, baseline − candidate.
    pub welch: TTest,
    /// Paired t-test, when the runs were paired.
    pub paired: Option<TTest>,
}

/// One row of the sequential evaluation: an element of `report.json`'s `scenarios[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario name (`persistent-pool`, `shared-bundle/fork-inherit`, ...).
    pub name: String,
    /// Baseline arm.
    pub baseline: String,
    /// Candidate arm.
    pub candidate: String,
    /// Runs per arm (0 when not timed).
    pub runs: usize,
    /// Mean baseline time in seconds; `null` when not timed.
    pub baseline_mean_s: Option<f64>,
    /// Mean candidate time in seconds; `null` when not timed.
    pub candidate_mean_s: Option<f64>,
    /// Speed-up %, `(baseline_mean / candidate_mean − 1) · 100`; `null` when not timed.
    pub speedup_pct: Option<f64>,
    /// 95% CI of the speed-up %, `[lo, hi]`; `null` when not timed.
    pub speedup_ci95: Option<[f64; 2]>,
    /// Welch's two-sided p; `null` when not timed.
    pub p_value: Option<f64>,
    /// Whether the arms gave the same results (the gate that runs first).
    pub equivalent: bool,
    /// ACCEPT or REJECT.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// Full statistics, when timed.
    pub stats: Option<Stats>,
    /// Memory figures, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Scenario-specific metrics (best sharpe, rank percentile, budget fraction...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Free-form remarks for the markdown report (e.g. how large a reference sample was).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A quality verdict (judged on the quality of what was found), reported in its own
    /// table and never compounded into the cumulative speed-up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quality: bool,
}

impl ScenarioResult {
    /// A row from its comparison (`None` when not timed, e.g. not equivalent) and verdict.
    pub fn new(
        name: &str,
        baseline: &str,
        candidate: &str,
        equivalent: bool,
        cmp: Option<&Comparison>,
        verdict: &Verdict,
    ) -> ScenarioResult {
        ScenarioResult {
            name: name.to_owned(),
            baseline: baseline.to_owned(),
            candidate: candidate.to_owned(),
            runs: cmp.map_or(0, |c| c.baseline.n.min(c.candidate.n)),
            baseline_mean_s: cmp.map(|c| c.baseline.mean),
            candidate_mean_s: cmp.map(|c| c.candidate.mean),
            speedup_pct: cmp.map(|c| c.speedup.pct),
            speedup_ci95: cmp.map(|c| c.speedup.ci95),
            p_value: cmp.map(Comparison::p_value),
            equivalent,
            decision: verdict.decision,
            reason: verdict.reason.clone(),
            stats: cmp.map(|c| Stats {
                baseline: c.baseline,
                candidate: c.candidate,
                welch: c.welch,
                paired: c.paired,
            }),
            memory: None,
            metrics: BTreeMap::new(),
            notes: Vec::new(),
            quality: false,
        }
    }

    /// Marks the row as a quality verdict.
    pub fn as_quality(mut self) -> ScenarioResult {
        self.quality = true;
        self
    }

    /// Attaches memory figures.
    pub fn with_memory(mut self, memory: Memory) -> ScenarioResult {
        self.memory = Some(memory);
        self
    }

    /// Adds a scenario-specific metric.
    pub fn with_metric(mut self, key: &str, value: impl Into<serde_json::Value>) -> ScenarioResult {
        self.metrics.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a remark for the markdown report.
    pub fn with_note(mut self, note: impl Into<String>) -> ScenarioResult {
        self.notes.push(note.into());
        self
    }
}

/// The machine and build a report was produced on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// CPU model (`/proc/cpuinfo`'s `model name`), or "unknown".
    pub cpu_model: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Operating system: distribution and kernel where known.
    pub os: String,
    /// Target architecture.
    pub arch: String,
    /// `rustc -V`, or "unknown".
    pub rustc: String,
    /// `git rev-parse HEAD`, or "unknown".
    pub git_commit: String,
    /// Whether the work tree had uncommitted changes to tracked files; `null` if unknown.
    pub git_dirty: Option<bool>,
    /// The exact command line.
    pub command: String,
    /// When the environment was captured, UTC, RFC 3339.
    pub timestamp_utc: String,
}

/// A note for scenarios whose arms allocate different amounts of memory, when this machine is
/// a VM that hands freed memory back to its host (virtio-balloon free page reporting): the
/// next process to touch such memory pays a host fault per page as its own CPU, so an arm can
/// be charged for what the arm before it freed (crates/store/BENCHMARKS.md, 2026-12-02).
/// `None` where the kernel does not report (no such parameter, or an order above the largest).
pub fn free_page_reporting_note() -> Option<String> {
    reporting_note(&fs::read_to_string(PAGE_REPORTING_ORDER).ok()?)
}

const PAGE_REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// [`free_page_reporting_note`] for the parameter's text.
fn reporting_note(text: &str) -> Option<String> {
    const PARAM: &str = PAGE_REPORTING_ORDER;
    let order: u32 = text.trim().parse().ok()?;
    // Linux's largest buddy order is 10 on x86-64 and most arm64 kernels; above it nothing is reported.
    (order <= 10).then(|| {
        format!(
            "this VM reports freed memory to its host ({PARAM} = {order}): a run that touches memory an earlier \
             run freed pays host faults as CPU, which can skew arms that allocate different amounts; as root, \
             `echo 11 > {PARAM}` stops the reporting while measuring (set it back to {order} after)"
        )
    })
}

/// Runs `program args` and returns its trimmed stdout if it succeeded.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The CPU model from `/proc/cpuinfo` (x86: `model name`; some ARM kernels: `Model` or
/// `Hardware`).
fn cpu_model() -> Option<String> {
    let info = fs::read_to_string("/proc/cpuinfo").ok()?;
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
        })
    })
}

/// Distribution name and kernel release, falling back to the compile-time OS name.
fn os_description() -> String {
    let distro = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned())));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned());
    match (distro, kernel) {
        (Some(d), Some(k)) => format!("{d} (Linux {k})"),
        (Some(d), None) => d,
        (None, Some(k)) => format!("{} {k}", std::env::consts::OS),
        (None, None) => std::env::consts::OS.to_owned(),
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC, without a date library: the
/// civil-from-days conversion of Howard Hinnant's date algorithms.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let (days, secs) = ((unix_seconds / 86_400) as i64, unix_seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Quotes a command-line argument for a POSIX shell when it needs it, so that the report's
/// command can be pasted back.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

impl Environment {
    /// Captures the environment now. `command` is the exact command line (normally
    /// `std::env::args()`); `rustc` and `git` are asked at run time and are "unknown" when
    /// they are missing, e.g. on a machine that only has the built binary.
    pub fn capture<S: AsRef<str>>(command: &[S]) -> Environment {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let unknown = || "unknown".to_owned();
        Environment {
            cpu_model: cpu_model().unwrap_or_else(unknown),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: os_description(),
            arch: std::env::consts::ARCH.to_owned(),
            rustc: command_output("rustc", &["-V"]).unwrap_or_else(unknown),
            git_commit: command_output("git", &["rev-parse", "HEAD"]).unwrap_or_else(unknown),
            git_dirty: Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| !o.stdout.is_empty()),
            command: command.iter().map(|a| shell_quote(a.as_ref())).collect::<Vec<_>>().join(" "),
            timestamp_utc: rfc3339_utc(now),
        }
    }
}

/// The whole evaluation: the content of `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Where and how it ran.
    pub environment: Environment,
    /// Profile name (`quick`, `full`...).
    pub profile: String,
    /// Every scenario, in the order evaluated.
    pub scenarios: Vec<ScenarioResult>,
    /// Cumulative speed-up of the accepted steps, in percent (multiplicative).
    pub cumulative_speedup_pct: f64,
    /// The steps behind it.
    pub cumulative: Vec<Step>,
    /// Whether the stop rule (two accepted steps each below 2%) fired.
    pub stopped_on_diminishing_returns: bool,
    /// Plot files, relative to the report's directory, embedded in `report.md`. Set it from
    /// what [`crate::plots::write_all`] wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<String>,
}

impl Report {
    /// A report of `scenarios`, with the cumulative tracking taken from `tracker`.
    pub fn new(environment: Environment, profile: &str, scenarios: Vec<ScenarioResult>, tracker: &Tracker) -> Report {
        Report {
            environment,
            profile: profile.to_owned(),
            scenarios,
            cumulative_speedup_pct: tracker.cumulative_pct(),
            cumulative: tracker.steps().to_vec(),
            stopped_on_diminishing_returns: tracker.should_stop(),
            plots: Vec::new(),
        }
    }
}

/// Keys that every element of `report.json`'s `scenarios[]` must carry (issue 6's contract).
pub const REQUIRED_SCENARIO_KEYS: [&str; 12] = [
    "name",
    "baseline",
    "candidate",
    "runs",
    "baseline_mean_s",
    "candidate_mean_s",
    "speedup_pct",
    "speedup_ci95",
    "p_value",
    "equivalent",
    "decision",
    "reason",
];

/// Checks the shape of a `report.json` text against the contract, for CI and end-to-end
/// tests: a top-level `environment` object, a numeric `cumulative_speedup_pct`, and a
/// non-empty `scenarios[]` whose elements carry [`REQUIRED_SCENARIO_KEYS`], with `decision`
/// "ACCEPT" or "REJECT" and `speedup_ci95` either `null` or `[lo, hi]`. Returns the number of
/// scenarios, or every problem found.
pub fn check_json_shape(text: &str) -> Result<usize, Vec<String>> {
    use serde_json::Value;
    let json: Value = serde_json::from_str(text).map_err(|e| vec![format!("not JSON: {e}")])?;
    let mut problems = Vec::new();
    if !json.get("environment").is_some_and(Value::is_object) {
        problems.push("missing object `environment`".to_owned());
    }
    if !json.get("cumulative_speedup_pct").is_some_and(Value::is_number) {
        problems.push("missing number `cumulative_speedup_pct`".to_owned());
    }
    let scenarios = json.get("scenarios").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if scenarios.is_empty() {
        problems.push("missing or empty array `scenarios`".to_owned());
    }
    for (i, s) in scenarios.iter().enumerate() {
        let name = s.get("name").and_then(Value::as_str).unwrap_or("?");
        for key in REQUIRED_SCENARIO_KEYS {
            if s.get(key).is_none() {
                problems.push(format!("scenarios[{i}] ({name}) lacks `{key}`"));
            }
        }
        if !matches!(s.get("decision").and_then(Value::as_str), Some("ACCEPT" | "REJECT")) {
            problems.push(format!("scenarios[{i}] ({name}): `decision` is not \"ACCEPT\" or \"REJECT\""));
        }
        let ci_ok = match s.get("speedup_ci95") {
            Some(Value::Null) | None => true,
            Some(Value::Array(a)) => a.len() == 2 && a.iter().all(Value::is_number),
            Some(_) => false,
        };
        if !ci_ok {
            problems.push(format!("scenarios[{i}] ({name}): `speedup_ci95` is not [lo, hi]"));
        }
    }
    if problems.is_empty() { Ok(scenarios.len()) } else { Err(problems) }
}

/// Writes `report.json` (pretty-printed) into `dir`, creating it, and returns its path.
pub fn write_json(report: &Report, dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join("report.json");
    let mut text = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    text.push('\n');
    fs::write(&path, text)?;
    Ok(path)
}

/// Quotes a CSV field when it holds a separator, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// Writes `runs.csv` into `dir`, creating it, and returns its path.
///
/// Columns: `scenario,arm,run,seconds`, then the union of every run's extra keys in sorted
/// order, empty where a run lacks one. Seconds are written with Rust's shortest round-trip
/// formatting, so the file holds exactly the measured values.
pub fn write_runs_csv(runs: &[Run], dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let extra: Vec<&str> = {
        let mut keys: Vec<&str> = runs.iter().flat_map(|r| r.extra.keys().map(String::as_str)).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let mut out = String::from("scenario,arm,run,seconds");
    for k in &extra {
        out.push(',');
        out.push_str(&csv_field(k));
    }
    out.push('\n');
    for r in runs {
        out.push_str(&format!("{},{},{},{}", csv_field(&r.scenario), csv_field(&r.arm), r.index, r.seconds));
        for k in &extra {
            out.push(',');
            out.push_str(&csv_field(r.extra.get(*k).map_or("", String::as_str)));
        }
        out.push('\n');
    }
    let path = dir.join("runs.csv");
    fs::write(&path, out)?;
    Ok(path)
}

/// Why the memory figure is the sum of PSS; quoted in `report.md`.
pub const PSS_NOTE: &str = "Memory is the sum of PSS (proportional set size) over the pool's processes. \
RSS counts every resident page in full in every process that maps it, so a bundle shared \
copy-on-write by 8 forked workers (or mapped from one file) is counted 8 times and the RSS sum \
overstates the real footprint by up to the number of workers. PSS divides each shared page by the \
number of processes that map it, so the PSS sum over all processes is the memory actually used: \
shared pages are counted once and private copies in full. That makes it the fair figure for \
comparing backends that share (fork, mmap, threads) with those that copy (spawn and load).";

/// A float for a table cell, or an em dash when there is none.
fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

/// A p-value for a table cell.
fn p_cell(p: Option<f64>) -> String {
    p.map_or_else(|| "—".to_owned(), decide::format_p)
}

/// A float with 6 decimals, without trailing zeros.
fn trim_float(f: f64) -> String {
    let s = format!("{f:.6}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Renders `report.md`.
pub fn render_markdown(report: &Report) -> String {
    let mut md = String::new();
    let env = &report.environment;
    // `write!` into a String cannot fail; the results are ignored through `let _`.
    let _ = writeln!(md, "# btopt sequential evaluation\n");
    let _ = writeln!(md, "Profile `{}`, {}.\n", report.profile, env.timestamp_utc);
    let _ = writeln!(md, "## Environment\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let dirty = match env.git_dirty {
        Some(true) => " (uncommitted changes)",
        _ => "",
    };
    for (k, v) in [
        ("CPU", env.cpu_model.clone()),
        ("Cores", env.cores.to_string()),
        ("OS", env.os.clone()),
        ("Arch", env.arch.clone()),
        ("rustc", env.rustc.clone()),
        ("Git commit", format!("`{}`{dirty}", env.git_commit)),
    ] {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\nCommand:\n\n```sh\n{}\n```\n", env.command);

    let _ = writeln!(md, "## Summary: time steps\n");
    let _ = writeln!(
        md,
        "| scenario | baseline | candidate | runs | baseline mean (s) | candidate mean (s) | speed-up % | 95% CI | p (Welch) | equivalent | decision |"
    );
    let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---|---:|---|---|");
    for s in report.scenarios.iter().filter(|s| !s.quality) {
        let ci = s.speedup_ci95.map_or_else(|| "—".to_owned(), |[lo, hi]| format!("[{lo:.2}, {hi:.2}]"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {ci} | {} | {} | **{}** |",
            s.name,
            s.baseline,
            s.candidate,
            s.runs,
            cell(s.baseline_mean_s, 4),
            cell(s.candidate_mean_s, 4),
            cell(s.speedup_pct, 2),
            p_cell(s.p_value),
            if s.equivalent { "yes" } else { "**no**" },
            s.decision,
        );
    }

    let _ = writeln!(md, "\n## Summary: quality verdicts\n");
    let _ = writeln!(
        md,
        "Judged on what the search found (against an exact optimum, or a planted edge), not on time; \
         never part of the cumulative speed-up.\n"
    );
    let _ =
        writeln!(md, "| scenario | baseline | candidate | equivalent | decision | why |\n|---|---|---|---|---|---|");
    for s in report.scenarios.iter().filter(|s| s.quality) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | **{}** | {} |",
            s.name,
            s.baseline,
            s.candidate,
            if s.equivalent { "yes" } else { "**no**" },
            s.decision,
            s.reason.replace('|', "/"),
        );
    }

    let _ = writeln!(md, "\n## Scenarios\n");
    for s in &report.scenarios {
        render_scenario(&mut md, s);
    }

    let _ = writeln!(md, "## Cumulative tracking\n");
    let _ = writeln!(
        md,
        "Speed-ups compose multiplicatively over accepted steps: cumulative = Π(1 + sᵢ/100) − 1. \
         Rejected steps leave the baseline unchanged. Only the first row of a timed scenario is a step \
         (persistent-pool, shared-bundle, hyperband, dispatch); the guidance's \"cumulative\" is this product over \
         time steps alone. distributed is timed but judged on issue 10's target (within 10% of the local run), so \
         it is no step. Quality verdicts (bohb-1100 and bohb-5m, judged within 10% of an exact optimum at ≤ 10% of its \
         evaluations, and overfitting) have their own table and never enter the product.\n"
    );
    let _ = writeln!(md, "| step | speed-up % | accepted | cumulative % |\n|---|---:|---|---:|");
    for st in &report.cumulative {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} |",
            st.name,
            cell(st.speedup_pct, 2),
            if st.accepted { "yes" } else { "no" },
            st.cumulative_pct
        );
    }
    let _ = writeln!(md, "\n**Cumulative speed-up: {:.2}%.**", report.cumulative_speedup_pct);
    let _ = writeln!(
        md,
        "Stop rule (each of the last two accepted steps below {}%): {}.\n",
        decide::DIMINISHING_PCT,
        if report.stopped_on_diminishing_returns { "**fired**, stop optimizing" } else { "not fired" }
    );

    if !report.plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for p in &report.plots {
            let _ = writeln!(md, "![{p}]({p})\n");
        }
    }
    let _ = writeln!(md, "## Decision rules\n");
    let _ = writeln!(
        md,
        "- Functional equivalence is checked first and blocks: a scenario that fails it is \
         REJECTED (not equivalent) without timing.\n\
         - ACCEPT iff speed-up ≥ {}% and Welch's two-sided p < {}; speed-up % = (baseline mean / candidate mean − 1) · 100, \
         its 95% CI from the log ratio of means (delta method, Welch–Satterthwaite df).\n\
         - BOHB, 100–1,000 combinations: ≥ 5% faster than the exhaustive grid at comparable best quality (within {:.0}% of the grid optimum).\n\
         - BOHB, 1,000+ combinations: best within {:.0}% of the optimum using ≤ {:.0}% of the evaluations.\n\
         - BOHB is rejected when its best is more than {:.0}% below the optimum.\n",
        decide::MIN_SPEEDUP_PCT,
        decide::ALPHA,
        decide::BOHB_MAX_SHORTFALL * 100.0,
        decide::BOHB_MAX_SHORTFALL * 100.0,
        decide::BOHB_MAX_BUDGET_FRACTION * 100.0,
        decide::BOHB_REJECT_SHORTFALL * 100.0,
    );
    let _ = writeln!(md, "## Why PSS\n\n{PSS_NOTE}");
    md
}

/// One scenario's section of `report.md`.
fn render_scenario(md: &mut String, s: &ScenarioResult) {
    let _ = writeln!(md, "### {}\n", s.name);
    let _ = writeln!(md, "`{}` (baseline) vs `{}` (candidate).\n", s.baseline, s.candidate);
    if let Some(st) = &s.stats {
        let _ = writeln!(md, "| arm | runs | mean (s) | sd (s) | 95% CI (s) |\n|---|---:|---:|---:|---|");
        for (arm, x) in [(&s.baseline, &st.baseline), (&s.candidate, &st.candidate)] {
            let _ = writeln!(
                md,
                "| {arm} | {} | {:.4} | {:.4} | [{:.4}, {:.4}] |",
                x.n, x.mean, x.sd, x.ci95[0], x.ci95[1]
            );
        }
        let _ = writeln!(md);
        if let (Some(sp), Some([lo, hi])) = (s.speedup_pct, s.speedup_ci95) {
            let _ = writeln!(md, "- Speed-up: {sp:.2}% (95% CI {lo:.2}% to {hi:.2}%)");
        }
        let _ = writeln!(
            md,
            "- Welch: t = {:.3}, df = {:.1}, p = {}",
            st.welch.statistic,
            st.welch.df,
            p_cell(Some(st.welch.p_value))
        );
        if let Some(p) = &st.paired {
            let _ =
                writeln!(md, "- Paired t: t = {:.3}, df = {:.0}, p = {}", p.statistic, p.df, p_cell(Some(p.p_value)));
        }
    } else {
        let _ = writeln!(md, "Not timed.");
    }
    let _ = writeln!(md, "- Equivalent: {}", if s.equivalent { "yes" } else { "no" });
    if let Some(mem) = &s.memory {
        let _ = writeln!(md, "\nMemory (sums over the pool's processes):\n");
        let _ = writeln!(md, "| arm | workers | PSS sum (MiB) | RSS sum (MiB) |\n|---|---:|---:|---:|");
        for m in &mem.samples {
            let _ = writeln!(md, "| {} | {} | {} | {} |", m.arm, m.workers, mib(m.pss_sum_bytes), mib(m.rss_sum_bytes));
        }
        let signed = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:+.1}%"));
        for o in &mem.overhead {
            let _ = writeln!(
                md,
                "\nOverhead vs baseline at {} workers: PSS {}, RSS {}.",
                o.workers,
                signed(o.pss_overhead_pct),
                signed(o.rss_overhead_pct)
            );
        }
    }
    if !s.metrics.is_empty() {
        let _ = writeln!(md, "\n| metric | value |\n|---|---|");
        for (k, v) in &s.metrics {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                // Integers as they are; floats to 6 significant-enough decimals, trimmed.
                serde_json::Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), trim_float),
                other => other.to_string(),
            };
            let _ = writeln!(md, "| {k} | {v} |");
        }
    }
    for n in &s.notes {
        let _ = writeln!(md, "\n{n}");
    }
    let _ = writeln!(md, "\n**Decision: {}** — {}\n", s.decision, s.reason);
}

/// Writes `report.md` into `dir`, creating it, and returns its path.
pub fn write_markdown(report: &Report, dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join("report.md");
    fs::write(&path, render_markdown(report))?;
    Ok(path)
}

/// Writes `report.json`, `runs.csv` and `report.md` into `dir`, returning their paths.
pub fn write_all(report: &Report, runs: &[Run], dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(vec![write_json(report, dir)?, write_runs_csv(runs, dir)?, write_markdown(report, dir)?])
}

#[cfg(test)]
mod tests {
    /// Reporting at any order up to the largest gets the note (naming the order to restore);
    /// an order above it, or text that is not one, gets none.
    #[test]
    fn the_free_page_reporting_note_appears_only_where_the_kernel_reports() {
        let note = super::reporting_note("9\n").expect("order 9 reports");
        assert!(note.contains("= 9") && note.contains("echo 11") && note.contains("back to 9"), "{note}");
        assert!(super::reporting_note("0").is_some());
        assert!(super::reporting_note("11").is_none());
        assert!(super::reporting_note("off").is_none());
    }
}
