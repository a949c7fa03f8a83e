//! `btopt optimize` under failure (issue 5): resume after SIGKILL from the trial store, and
//! workers crashing mid-search (`BTOPT_FAULT_INJECT`).
#![cfg_attr(not(unix), allow(dead_code, unused_imports, reason = "the fork-only tests are unix-only"))]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::optimize_cli::{bohb_args, check_contract, optimize, optimize_cmd, space_1100, timeless};
use crate::support::{HANG_GUARD, daily_bundle, p, start, wait_guarded};

/// One stored trial: (status, loss bits, duration bits). A trial evaluated again would be
/// written again, with a new duration.
type Row = (String, Option<u64>, Option<u64>);

/// The store's trials by id, read through a read-only connection (the optimizer may still
/// be writing).
fn try_stored_trials(store: &Path) -> rusqlite::Result<BTreeMap<i64, Row>> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(store, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut stmt = conn.prepare("SELECT trial_id, status, loss, duration FROM trials ORDER BY trial_id")?;
    stmt.query_map([], |r| {
        let loss: Option<f64> = r.get(2)?;
        let duration: Option<f64> = r.get(3)?;
        Ok((r.get::<_, i64>(0)?, (r.get::<_, String>(1)?, loss.map(f64::to_bits), duration.map(f64::to_bits))))
    })?
    .collect()
}

/// The store's trials, which must be readable.
fn stored_trials(store: &Path) -> BTreeMap<i64, Row> {
    try_stored_trials(store).unwrap_or_else(|e| panic!("failed to read the store {}: {e}", store.display()))
}

fn completed(rows: &BTreeMap<i64, Row>) -> BTreeMap<i64, Row> {
    rows.iter().filter(|(_, r)| r.0 != "running").map(|(k, v)| (*k, v.clone())).collect()
}

fn bohb_1100(extra: &[&'static str]) -> Vec<String> {
    let mut a: Vec<String> = bohb_args(extra).into_iter().map(String::from).collect();
    a.extend(["--space".to_string(), p(&space_1100()).to_string()]);
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// How a resume case runs.
struct Resume {
    /// Extra search arguments (mode), shared by every run of the case.
    search: &'static [&'static str],
    /// The trial whose task hangs, so that the run stalls with it in flight.
    hang: i64,
    /// Pool arguments of the interrupted run and of the resumed runs.
    first_pool: &'static [&'static str],
    resume_pool: &'static [&'static str],
}

/// Waits until the run under `hang@ids=K` stalls (trial `k` recorded as running and every
/// other stored trial completed; the store may not exist yet, or be half-created), then
/// SIGKILLs it and returns the store's trials as they were at the kill.
#[cfg(unix)]
fn kill_when_stalled(child: &mut std::process::Child, store: &Path, k: i64) -> BTreeMap<i64, Row> {
    let started = Instant::now();
    let rows = loop {
        let rows = try_stored_trials(store).unwrap_or_default();
        if rows.get(&k).is_some_and(|r| r.0 == "running") && completed(&rows).len() + 1 == rows.len() {
            break rows;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("btopt ended ({status}) before stalling on trial {k}");
        }
        assert!(started.elapsed() < HANG_GUARD, "the run never reached trial {k}");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL on unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    rows
}

/// The kill point is made deterministic instead of timed: under `hang@ids=K`, the task that
/// evaluates trial K hangs forever (task ids count submissions, and the optimizer submits
/// trials in id order: each trial is one task, no result is reused). The run stalls with every
/// other trial it could start completed and trial K in flight, and it is SIGKILLed there. The
/// resumed run, without faults, must not evaluate again any trial that the store had as
/// completed; in deterministic mode it must also end with the uninterrupted run's result.
/// Returns the summary of the resumed run (without `wall_seconds`).
#[cfg(unix)]
fn kill_and_resume(case: &Resume) -> Value {
    let k = case.hang;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("study.sqlite");
    let args = |pool: &[&'static str]| {
        let mut a = bohb_1100(pool);
        a.retain(|x| x != "--deterministic");
        a.extend(case.search.iter().map(|x| x.to_string()));
        a.extend(["--store".to_string(), p(&store).to_string()]);
        a
    };
    let mut child = start(&mut optimize_cmd(&strs(&args(case.first_pool)), &format!("hang@ids={k}")));
    let before_kill = kill_when_stalled(&mut child, &store, k);
    let done_before = completed(&before_kill);
    assert!(done_before.len() as i64 >= k, "{} completed before the kill", done_before.len());
    // What was read at the kill is what the store holds: the kill lost nothing committed.
    for (id, row) in &done_before {
        assert_eq!(stored_trials(&store).get(id), Some(row));
    }

    let resume = args(case.resume_pool);
    let resumed = crate::optimize_cli::parse_summary(&wait_guarded(start(&mut optimize_cmd(&strs(&resume), ""))));
    check_contract(&resumed);
    let resumed = timeless(resumed);
    let after = stored_trials(&store);
    assert_eq!(after.len(), resumed["trials"].as_array().unwrap().len(), "one stored row per trial");
    assert!(after.values().all(|r| r.0 == "ok"), "every trial completed");
    for (id, row) in &done_before {
        assert_eq!(&after[id], row, "trial {id} was completed before the kill and must not be evaluated again");
    }
    assert_ne!(after[&k].2, None, "trial {k}, in flight at the kill, was evaluated on resume");

    // Running the finished study once more evaluates nothing and reports the same result.
    let again = wait_guarded(start(&mut optimize_cmd(&strs(&resume), "")));
    assert_eq!(timeless(crate::optimize_cli::parse_summary(&again)), resumed);
    assert_eq!(stored_trials(&store), after, "a finished study is replayed, not re-evaluated");
    resumed
}

/// Deterministic BOHB (40 trials over 6 brackets) without a store: the reference.
#[cfg(unix)]
fn uninterrupted() -> Value {
    let v = timeless(optimize(&strs(&bohb_1100(&["--pool", "fork", "--workers", "2"])), ""));
    assert!(v["trials"].as_array().unwrap().len() > 36, "the kills below must fall mid-run");
    v
}

/// Killed mid-stage in the fourth bracket (trials 20..=28 are its first stage): the stage's
/// other trials are completed but not yet fed to the searcher.
#[cfg(unix)]
#[test]
fn resume_after_sigkill_mid_stage_gives_the_uninterrupted_result_without_rerunning_trials() {
    let case = Resume {
        search: &["--deterministic"],
        hang: 26,
        first_pool: &["--pool", "fork", "--workers", "2"],
        resume_pool: &["--pool", "fork", "--workers", "2"],
    };
    assert_eq!(kill_and_resume(&case), uninterrupted());
}

/// Killed in the very first stage, before any outcome was fed, and resumed on another backend
/// with another worker count: the study does not depend on either.
#[cfg(unix)]
#[test]
fn resume_after_sigkill_in_the_first_stage_on_another_backend_gives_the_same_result() {
    let case = Resume {
        search: &["--deterministic"],
        hang: 5,
        first_pool: &["--pool", "fork", "--workers", "2"],
        resume_pool: &["--pool", "spawn", "--workers", "1"],
    };
    assert_eq!(kill_and_resume(&case), uninterrupted());
}

/// Asynchronous mode depends on timing, so its result is not compared; but a resume still
/// completes the study and never evaluates a completed trial again.
#[cfg(unix)]
#[test]
fn resume_after_sigkill_in_async_mode_completes_without_rerunning_trials() {
    let case = Resume {
        search: &[],
        hang: 12,
        first_pool: &["--pool", "fork", "--workers", "2"],
        resume_pool: &["--pool", "fork", "--workers", "2"],
    };
    let v = kill_and_resume(&case);
    assert_eq!(v["best"]["budget"].as_f64(), Some(1.0), "{v}");
}

/// A long grid killed mid-run (trial 700 of 1,100 hangs) and run again: the trials the store
/// had finished are kept as they were, the rest are computed once, and the result is the
/// uninterrupted grid's, trial for trial.
#[cfg(unix)]
#[test]
fn a_grid_killed_mid_run_resumes_without_redoing_finished_trials() {
    let k = 700;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("grid.sqlite");
    let space = space_1100();
    let args = ["--space", p(&space), "--search", "grid", "--pool", "fork", "--workers", "2", "--store", p(&store)];
    let mut child = start(&mut optimize_cmd(&args, &format!("hang@ids={k}")));
    let before_kill = kill_when_stalled(&mut child, &store, k);
    let done_before = completed(&before_kill);
    assert!(done_before.len() as i64 >= k, "{} completed before the kill", done_before.len());

    let resumed = timeless(crate::optimize_cli::parse_summary(&wait_guarded(start(&mut optimize_cmd(&args, "")))));
    let after = stored_trials(&store);
    assert_eq!(after.len(), 1100);
    assert!(after.values().all(|r| r.0 == "ok"));
    for (id, row) in &done_before {
        assert_eq!(&after[id], row, "trial {id} was finished before the kill and must not be evaluated again");
    }
    let clean = timeless(optimize(&["--space", p(&space), "--search", "grid", "--pool", "fork", "--workers", "2"], ""));
    let by_id = |v: &Value| {
        let mut t: Vec<String> = v["trials"].as_array().unwrap().iter().map(Value::to_string).collect();
        t.sort();
        t
    };
    assert_eq!(by_id(&resumed), by_id(&clean));
    assert_eq!((&resumed["best"], &resumed["evaluations"]), (&clean["best"], &clean["evaluations"]));
    assert_eq!(resumed["overfitting"], clean["overfitting"], "the same trials, the same statistics");
}

/// Which of the first `n` task ids the current fault spec makes fail on every attempt, as the
/// pool itself decides it (echo jobs in a 1-worker process pool).
fn failing_task_ids(n: usize, fault: &str) -> Vec<usize> {
    let mut cmd = crate::support::e2e(&["fault-ids", "--bundle", p(daily_bundle()), "--tasks", &n.to_string()]);
    cmd.env(pool::FAULT_ENV, fault);
    let out = wait_guarded(start(&mut cmd));
    serde_json::from_str(out.ok().trim()).expect("a JSON array of task ids")
}

#[cfg(unix)]
#[test]
fn crash_injection_marks_always_crashing_trials_crashed_and_retried_ones_succeed() {
    let args = bohb_1100(&["--pool", "fork", "--workers", "2"]);
    let clean = timeless(optimize(&strs(&args), ""));

    // 20% of tasks abort their worker on every attempt: those trials crash, the rest succeed.
    let fault = "abort@frac=0.2,seed=1";
    let v = optimize(&strs(&args), fault);
    check_contract(&v);
    let trials = v["trials"].as_array().unwrap();
    let doomed = failing_task_ids(trials.len(), fault);
    assert!(!doomed.is_empty() && doomed.len() < trials.len() / 2, "{doomed:?}");
    let crashed: Vec<usize> =
        trials.iter().enumerate().filter(|(_, t)| t["status"] == "crashed").map(|(i, _)| i).collect();
    assert_eq!(crashed, doomed, "exactly the trials whose tasks always abort are crashed");
    assert!(trials.iter().all(|t| t["status"] == "ok" || t["status"] == "crashed"));
    assert_eq!(v["best"]["budget"].as_f64(), Some(1.0), "the search still finds a full-budget incumbent");

    // Asynchronous mode interleaves differently, but every trial is still one task: the
    // number of crashed trials is the number of doomed ids among the tasks submitted.
    let async_args: Vec<String> = args.iter().filter(|a| *a != "--deterministic").cloned().collect();
    assert_eq!(async_args.len() + 1, args.len());
    let v = optimize(&strs(&async_args), fault);
    check_contract(&v);
    let trials = v["trials"].as_array().unwrap();
    let crashed = trials.iter().filter(|t| t["status"] == "crashed").count();
    assert_eq!(crashed, failing_task_ids(trials.len(), fault).len(), "async mode");

    // The same fraction, but only on the first attempt: every trial succeeds on its retry and
    // the search is exactly the fault-free one.
    let v = optimize(&strs(&args), &format!("{fault},attempts=1"));
    assert_eq!(timeless(v), clean);
}

/// The thread backend ignores fault injection; a process backend with a bad spec refuses to start
/// with one error line rather than running without the faults asked for.
#[test]
fn a_bad_fault_spec_fails_the_run_with_one_error_line() {
    let args = bohb_1100(&["--pool", "spawn", "--workers", "1"]);
    let out = wait_guarded(start(&mut optimize_cmd(&strs(&args), "explode@ids=1")));
    assert!(!out.status.success());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("explode"), "{}", out.stderr);
}

/// When every trial crashes, the search still ends: no crashed config is promoted to a larger
/// budget, and there is no incumbent.
#[cfg(unix)]
#[test]
fn a_search_where_every_trial_crashes_ends_without_an_incumbent() {
    let mut args = bohb_1100(&["--pool", "fork", "--workers", "2"]);
    let at = args.iter().position(|a| a == "--iterations").unwrap();
    args[at + 1] = "2".to_string();
    let out = wait_guarded(start(&mut optimize_cmd(&strs(&args), "abort@frac=1")));
    let v = crate::optimize_cli::parse_summary(&out);
    assert_eq!(v["best"], Value::Null, "{v}");
    let trials = v["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["status"] == "crashed" && t["loss"].is_null()), "{v}");
    // Brackets of 9 configs at budget 1/9 and 3 at 1/3 (HpBandSter's schedule for
    // 0.05..1, eta 3), and nothing promoted out of either.
    let budgets: Vec<f64> = trials.iter().map(|t| t["budget"].as_f64().unwrap()).collect();
    assert_eq!(budgets, [[1.0 / 9.0; 9].as_slice(), &[1.0 / 3.0; 3]].concat());
    assert_eq!(v["evaluations"], 12);
}

/// A trial that hangs is stopped by `--task-timeout` and reported crashed; the search goes on
/// with every other trial intact, on the fork and the spawn backend.
#[test]
fn hanging_trials_time_out_as_crashed_and_the_search_completes() {
    let mut pools: Vec<&'static [&'static str]> = vec![&["--pool", "spawn", "--workers", "2"]];
    if cfg!(unix) {
        pools.push(&["--pool", "fork", "--workers", "2"]);
    }
    for pool in pools {
        let mut args = bohb_1100(pool);
        args.extend(["--task-timeout".to_string(), "0.5".to_string()]);
        let v = optimize(&strs(&args), "hang@ids=3+10");
        check_contract(&v);
        let trials = v["trials"].as_array().unwrap();
        let crashed: Vec<usize> =
            trials.iter().enumerate().filter(|(_, t)| t["status"] == "crashed").map(|(i, _)| i).collect();
        assert_eq!(crashed, [3, 10], "{pool:?}");
        // HpBandSter's schedule for 6 brackets, (9, 3, 1) + (3, 1) + (3) twice: a crashed
        // trial is never promoted, but the stages keep their sizes.
        assert_eq!(trials.len(), 40, "{pool:?}");
    }
}
