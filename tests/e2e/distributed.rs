//! Distributed studies on PostgreSQL (issue 10), with real processes and a real server: a
//! coordinator (`btopt optimize --store postgresql://…`) plus `btopt worker` processes give
//! exactly the local result of deterministic BOHB however workers join, die or restart, and
//! whatever happens to the coordinator or the server. Also the one-line refusals: a second
//! coordinator, a worker on another bundle, a second process on an SQLite store.
#![cfg_attr(not(unix), allow(dead_code, unused_imports, reason = "the fork-pool workers are unix-only"))]

use std::path::Path;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::optimize_cli::{optimize, optimize_cmd, parse_summary, space_1100, timeless};
use crate::support::{HANG_GUARD, Output, btopt, daily_bundle, p, start, wait_guarded};

/// Deterministic BOHB on the 1,100-point space, seed 3: 40 trials over 6 brackets.
fn search_args() -> Vec<String> {
    ["--search", "bohb", "--deterministic", "--seed", "3", "--iterations", "6", "--space", p(&space_1100())]
        .map(String::from)
        .to_vec()
}

/// The local run every distributed setup must reproduce (fork pool, 2 workers, no store).
fn local() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let mut a = search_args();
        a.extend(["--pool", "fork", "--workers", "2"].map(String::from));
        comparable(timeless(optimize(&strs(&a), "")))
    })
}

/// The summary as a distributed study must reproduce it: all of it, overfitting statistics
/// included (the coordinator computes those itself, from the same backtests).
fn comparable(v: Value) -> Value {
    assert!(v["overfitting"].is_object(), "no overfitting statistics: {}", v["overfitting_skipped"]);
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A fresh database on the test server, or `None` (the skip line is printed).
fn database() -> Option<String> {
    Some(store::testing::server()?.create_database())
}

/// The coordinator: `btopt optimize … --store URL --study NAME` with `extra`.
fn coordinator(url: &str, study: &str, extra: &[&str]) -> Command {
    let mut a = search_args();
    a.extend(["--store", url, "--study", study].map(String::from));
    a.extend(extra.iter().map(|s| s.to_string()));
    optimize_cmd(&strs(&a), "")
}

/// `btopt worker --store URL --bundle BUNDLE --study NAME --workers 1` with `extra`.
fn worker(url: &str, bundle: &Path, study: &str, extra: &[&str]) -> Command {
    worker_of(1, url, bundle, study, extra)
}

/// [`worker`] with `n` local workers.
fn worker_of(n: usize, url: &str, bundle: &Path, study: &str, extra: &[&str]) -> Command {
    let n = n.to_string();
    let mut c = btopt(&["worker", "--store", url, "--bundle", p(bundle), "--study", study, "--workers", &n]);
    c.args(extra);
    c
}

/// A queue client for reading the study's state from the test.
fn observer(url: &str, study: &str) -> store::Queue {
    store::Queue::connect(&store::PgTarget::parse(url).unwrap(), study, Duration::from_secs(60)).unwrap()
}

/// Waits until `cond` holds for the study (it may not exist yet), failing on a hang.
fn wait_for(q: &mut store::Queue, what: &str, cond: impl Fn(&store::StudyInfo) -> bool) -> store::StudyInfo {
    let started = Instant::now();
    loop {
        if let Some(info) = q.info().unwrap()
            && cond(&info)
        {
            return info;
        }
        assert!(started.elapsed() < HANG_GUARD, "never reached: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The coordinator's summary, which must equal the local run's.
fn assert_local(out: &Output, what: &str) {
    let v = comparable(timeless(parse_summary(out)));
    assert_eq!(&v, local(), "{what}: the distributed result differs from the local run");
}

/// Every trial of the study has exactly one outcome (taken by the coordinator); returns the
/// attempt counts by trial.
fn one_outcome_each(url: &str, study: &str) -> std::collections::BTreeMap<u64, i32> {
    let attempts = observer(url, study).attempts().unwrap();
    assert_eq!(attempts.len(), local()["trials"].as_array().unwrap().len());
    for (id, (_, status)) in &attempts {
        assert_eq!(status, "ok", "trial {id}");
    }
    let info = observer(url, study).info().unwrap().unwrap();
    assert_eq!((info.state.as_str(), info.queued, info.running), ("finished", 0, 0), "{info:?}");
    attempts.into_iter().map(|(id, (a, _))| (id, a)).collect()
}

fn finish(child: Child, what: &str) -> Output {
    let out = wait_guarded(child);
    assert!(out.status.success(), "{what} failed ({}): {}", out.status, out.stderr);
    out
}

#[cfg(unix)]
#[test]
fn a_coordinator_with_no_workers_of_its_own_and_two_worker_processes_gives_the_local_result() {
    let Some(url) = database() else { return };
    let c = start(&mut coordinator(&url, "two", &["--workers", "0"]));
    // Two local workers in one process, which share the study's tables between them, and one
    // in the other, which reads them too rather than computing its own columns.
    let w1 = start(&mut worker_of(2, &url, daily_bundle(), "two", &[]));
    let w2 = start(&mut worker_of(1, &url, daily_bundle(), "two", &[]));
    assert_local(&finish(c, "coordinator"), "--workers 0 + 2 workers");
    // Each worker built the study's shared tables before its pool (from the task, through its
    // helper), and the result is the local one all the same.
    for (w, name) in [(w1, "worker 1"), (w2, "worker 2")] {
        let out = finish(w, name);
        assert!(out.stderr.contains("study two: shared indicator tables of "), "{name}: {}", out.stderr);
    }
    one_outcome_each(&url, "two");
    let list = btopt(&["study", "list", "--store", &url, "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["studies"][0]["name"], "two");
    assert_eq!(v["studies"][0]["state"], "finished");
    assert_eq!(v["studies"][0]["done"], 40);
    assert_eq!(v["studies"][0]["best_loss"], local()["best"]["loss"]);
}

#[cfg(unix)]
#[test]
fn workers_joining_after_30_percent_of_the_trials_change_nothing() {
    let Some(url) = database() else { return };
    // A coordinator with one worker of its own, and a worker process that joins late.
    let c = start(&mut coordinator(&url, "late", &["--workers", "1"]));
    wait_for(&mut observer(&url, "late"), "30% of the trials done", |i| i.done >= 12);
    let w = start(&mut worker(&url, daily_bundle(), "late", &[]));
    assert_local(&finish(c, "coordinator"), "coordinator + a late worker");
    finish(w, "late worker");
    one_outcome_each(&url, "late");

    // No worker at all until 30% in: the coordinator waits, then two workers join, one late.
    let c = start(&mut coordinator(&url, "late0", &["--workers", "0"]));
    let w1 = start(&mut worker(&url, daily_bundle(), "late0", &[]));
    wait_for(&mut observer(&url, "late0"), "30% of the trials done", |i| i.done >= 12);
    let w2 = start(&mut worker(&url, daily_bundle(), "late0", &[]));
    assert_local(&finish(c, "coordinator"), "--workers 0 + a worker + a late worker");
    finish(w1, "worker");
    finish(w2, "late worker");
    one_outcome_each(&url, "late0");
}

#[cfg(unix)]
#[test]
fn a_worker_killed_mid_lease_loses_nothing_and_its_trials_get_a_second_attempt() {
    let Some(url) = database() else { return };
    let c = start(&mut coordinator(&url, "kill", &["--workers", "0"]));
    // The worker's 6th task hangs: it stops with trials leased and stops heartbeating.
    let mut doomed = worker(&url, daily_bundle(), "kill", &["--lease", "1"]);
    doomed.env(pool::FAULT_ENV, "hang@ids=5");
    let mut doomed = start(&mut doomed);
    let mut q = observer(&url, "kill");
    let stuck = wait_for(&mut q, "the worker holds leased trials", |i| i.running > 0 && i.done >= 2);
    std::thread::sleep(Duration::from_millis(300));
    doomed.kill().unwrap(); // SIGKILL, mid-lease
    doomed.wait().unwrap();
    let held: Vec<u64> = {
        let leased = q.attempts().unwrap();
        leased.iter().filter(|(_, (a, s))| *a == 1 && s == "running").map(|(id, _)| *id).collect()
    };
    assert!(!held.is_empty() && stuck.done < 40, "{stuck:?}");
    let w = start(&mut worker(&url, daily_bundle(), "kill", &[]));
    assert_local(&finish(c, "coordinator"), "after a worker was killed");
    finish(w, "second worker");
    let attempts = one_outcome_each(&url, "kill");
    for id in &held {
        assert_eq!(attempts[id], 2, "trial {id} was leased by the killed worker");
    }
}

/// Waits until `cond` holds for the study's trials, failing on a hang.
fn wait_for_trials(
    q: &mut store::Queue,
    what: &str,
    cond: impl Fn(&std::collections::BTreeMap<u64, store::TrialState>) -> bool,
) -> std::collections::BTreeMap<u64, store::TrialState> {
    let started = Instant::now();
    loop {
        let trials = q.trials().unwrap();
        if cond(&trials) {
            return trials;
        }
        assert!(started.elapsed() < HANG_GUARD, "never reached: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn a_trial_that_kills_every_worker_is_crashed_once_after_its_attempts_and_the_search_goes_on() {
    let Some(url) = database() else { return };
    let c = start(&mut coordinator(&url, "cap", &["--workers", "0", "--max-attempts", "3"]));
    let mut q = observer(&url, "cap");
    // Three workers in turn claim the lowest trials (the first batch, then the same trials once
    // their lease has expired), hang on the first one (so no heartbeat) and are SIGKILLed.
    let mut held: Vec<u64> = Vec::new();
    for attempt in 1..=3 {
        let mut w = worker(&url, daily_bundle(), "cap", &["--lease", "1"]);
        w.env(pool::FAULT_ENV, "hang@ids=0");
        let mut w = start(&mut w);
        let trials = wait_for_trials(&mut q, "a dying worker holds its batch", |t| {
            let running: Vec<u64> = t
                .iter()
                .filter(|(_, s)| s.attempts == attempt && s.queue.as_deref() == Some("running"))
                .map(|(id, _)| *id)
                .collect();
            !running.is_empty() && (held.is_empty() || running == held)
        });
        if held.is_empty() {
            held = trials.iter().filter(|(_, s)| s.attempts == 1).map(|(id, _)| *id).collect();
        }
        let claimed: Vec<u64> = trials.iter().filter(|(_, s)| s.attempts > 0).map(|(id, _)| *id).collect();
        assert_eq!(claimed, held, "only the dying workers' batch was ever claimed");
        w.kill().unwrap(); // SIGKILL, holding the lease
        w.wait().unwrap();
        // The lease (1 s, from the claim, which came before we saw it) has surely expired.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let w = start(&mut worker(&url, daily_bundle(), "cap", &[]));
    let out = finish(c, "coordinator");
    finish(w, "healthy worker");

    let message = "lost its worker 3 times (its lease expired on every attempt)";
    let trials = observer(&url, "cap").trials().unwrap();
    for (id, t) in &trials {
        if held.contains(id) {
            assert_eq!((t.attempts, t.status.as_str(), t.message.as_deref()), (3, "crashed", Some(message)), "{id}");
        } else {
            assert_eq!((t.attempts, t.status.as_str()), (1, "ok"), "trial {id}");
        }
        assert_eq!(t.queue.as_deref(), Some("taken"), "trial {id}");
    }
    // The coordinator went on: every bracket ran (as many trials as the local run), each
    // trial once, the crashed ones as crashed.
    let summary = parse_summary(&out);
    let listed = summary["trials"].as_array().unwrap();
    assert_eq!(listed.len(), local()["trials"].as_array().unwrap().len());
    assert_eq!(listed.len(), trials.len());
    let mut ids: Vec<u64> = listed.iter().map(|t| t["trial_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), listed.len(), "each trial once");
    for t in listed {
        let crashed = held.contains(&t["trial_id"].as_u64().unwrap());
        assert_eq!(t["status"], if crashed { "crashed" } else { "ok" }, "{t}");
    }
    assert!(summary["best"]["loss"].is_f64(), "{summary}");
    let info = observer(&url, "cap").info().unwrap().unwrap();
    assert_eq!((info.state.as_str(), info.queued, info.running), ("finished", 0, 0), "{info:?}");
}

#[cfg(unix)]
#[test]
fn a_coordinator_killed_mid_study_and_run_again_gives_the_uninterrupted_result() {
    let Some(url) = database() else { return };
    let mut c = start(&mut coordinator(&url, "resume", &["--workers", "0"]));
    let w = start(&mut worker(&url, daily_bundle(), "resume", &[]));
    wait_for(&mut observer(&url, "resume"), "30% of the trials done", |i| i.done >= 12);
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    let again = start(&mut coordinator(&url, "resume", &["--workers", "0"]));
    assert_local(&finish(again, "resumed coordinator"), "coordinator killed and run again");
    finish(w, "worker");
    let attempts = one_outcome_each(&url, "resume");
    assert!(attempts.values().all(|&a| a == 1), "no trial was evaluated twice: {attempts:?}");
}

#[cfg(unix)]
#[test]
fn a_server_restart_mid_study_is_survived_with_nothing_lost_or_duplicated() {
    let Some(cluster) = store::testing::Cluster::start() else {
        store::testing::skip();
        return;
    };
    let url = store::testing::create_database_at(&cluster.url());
    let c = start(&mut coordinator(&url, "restart", &["--workers", "1"]));
    let w = start(&mut worker(&url, daily_bundle(), "restart", &[]));
    wait_for(&mut observer(&url, "restart"), "30% of the trials done", |i| i.done >= 12);
    cluster.restart();
    assert_local(&finish(c, "coordinator"), "server restarted mid-study");
    finish(w, "worker");
    one_outcome_each(&url, "restart");
}

/// A worker started before its study exists gives up on the study's shared tables after its
/// helper's wait (2 s), builds its pool without them, waits for the study and serves it: the
/// same result.
#[cfg(unix)]
#[test]
fn a_worker_started_before_its_study_serves_it_without_shared_tables() {
    let Some(url) = database() else { return };
    let w = start(&mut worker_of(2, &url, daily_bundle(), "early", &[]));
    std::thread::sleep(Duration::from_millis(2_500));
    let c = start(&mut coordinator(&url, "early", &["--workers", "0"]));
    assert_local(&finish(c, "coordinator"), "a worker that came first");
    let out = finish(w, "worker");
    assert!(out.stderr.contains("waiting for study early to be created"), "{}", out.stderr);
    assert!(!out.stderr.contains("shared indicator tables"), "{}", out.stderr);
    one_outcome_each(&url, "early");
}

#[cfg(unix)]
#[test]
fn a_worker_on_another_bundle_claims_nothing_and_says_so_in_one_line() {
    let Some(url) = database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let g = btopt(&["bundle", "generate", "--preset", "mag7", "--start", "2021-01-04", "--end", "2022-06-30"])
        .args(["--out", p(&other)])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let c = start(&mut coordinator(&url, "mismatch", &["--workers", "0"]));
    let mut q = observer(&url, "mismatch");
    wait_for(&mut q, "the study is created with queued trials", |i| i.queued > 0);
    let out = wait_guarded(start(&mut worker(&url, &other, "mismatch", &[])));
    assert!(!out.status.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].starts_with("error: study mismatch runs on bundle ") && lines[0].ends_with("claiming nothing"),
        "{}",
        lines[0]
    );
    assert!(q.attempts().unwrap().values().all(|(a, _)| *a == 0), "the study is unaffected");
    let w = start(&mut worker(&url, daily_bundle(), "mismatch", &[]));
    assert_local(&finish(c, "coordinator"), "after a refused worker");
    finish(w, "worker");
}

#[cfg(unix)]
#[test]
fn a_second_coordinator_on_a_running_study_is_refused_naming_the_holder() {
    let Some(url) = database() else { return };
    let first = start(&mut coordinator(&url, "held", &["--workers", "0"]));
    wait_for(&mut observer(&url, "held"), "the study is created", |i| i.queued > 0);
    let out = wait_guarded(start(&mut coordinator(&url, "held", &["--workers", "0"])));
    assert!(!out.status.success());
    let holder = format!("pid {} on {}", first.id(), store::hostname());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.trim_end().ends_with(&format!("study held is in use by {holder}")), "{}", out.stderr);
    let w = start(&mut worker(&url, daily_bundle(), "held", &[]));
    assert_local(&finish(first, "first coordinator"), "beside a refused coordinator");
    finish(w, "worker");
}

#[cfg(unix)]
#[test]
fn a_second_process_on_an_sqlite_store_is_told_who_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("study.sqlite");
    let mut a = search_args();
    a.extend(["--store".to_string(), p(&file).to_string(), "--workers".to_string(), "1".to_string()]);
    let mut first = start(&mut optimize_cmd(&strs(&a), "hang@ids=3"));
    let lock = tmp.path().join("study.sqlite.lock");
    let holder = format!("pid {} on {}", first.id(), store::hostname());
    let started = Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default() != holder {
        assert!(started.elapsed() < HANG_GUARD, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = wait_guarded(start(&mut optimize_cmd(&strs(&a), "")));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        out.stderr.trim_end(),
        format!("error: failed to open the trial store: study {} is in use by {holder}", file.display())
    );
}

#[test]
fn four_processes_creating_the_schema_at_once_all_succeed() {
    let Some(url) = database() else { return };
    let children: Vec<Child> =
        (0..4).map(|_| start(&mut btopt(&["study", "list", "--store", &url, "--json"]))).collect();
    for c in children {
        let out = finish(c, "study list");
        assert_eq!(out.stdout.trim(), r#"{"studies":[]}"#);
    }
}

#[cfg(unix)]
#[test]
fn a_worker_forks_replacement_workers_while_its_connection_is_live() {
    let Some(url) = database() else { return };
    // A host name (resolved by btopt on its own thread, not by a client thread) and a pool
    // worker that dies on its first attempt at task 1, so the fork pool forks a replacement
    // while the worker's connection is open.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    let c = start(&mut coordinator(&url, "refork", &["--workers", "0"]));
    let mut w = worker(&by_name, daily_bundle(), "refork", &["--pool", "fork"]);
    w.env(pool::FAULT_ENV, "sigkill@ids=1,attempts=1");
    let w = start(&mut w);
    assert_local(&finish(c, "coordinator"), "a worker whose pool re-forked");
    let out = finish(w, "worker");
    assert!(out.stderr.is_empty() || !out.stderr.contains("thread"), "{}", out.stderr);
    one_outcome_each(&url, "refork");
}

/// Design-notes section 7: a worker trusts the database only for parameters. A study whose
/// task names a strategy this btopt lacks is refused in one line with nothing claimed (like a
/// study on another bundle: its trials stay for workers that can run them, rather than all
/// failing); a queued trial whose config names a parameter the strategy lacks, or is not a
/// config at all, is a crashed trial with the reason, and the study goes on.
#[cfg(unix)]
#[test]
fn a_worker_fails_the_trials_the_database_got_wrong_and_refuses_a_strategy_it_lacks() {
    let Some(url) = database() else { return };
    let study = "untrusted";
    let c = start(&mut coordinator(&url, study, &["--workers", "0"]));
    let mut q = observer(&url, study);
    wait_for(&mut q, "the study is created with queued trials", |i| i.queued >= 2);
    let mut sql = store::PgTarget::parse(&url).unwrap().connect().unwrap();
    let set_task = "UPDATE btopt_studies SET task = replace(task, $2, $3) WHERE name = $1";
    let (ours, theirs) = ("\"ma-crossover\"", "\"no-such-strategy\"");
    assert_eq!(sql.execute(set_task, &[&study, &ours, &theirs]).unwrap(), 1);
    let out = wait_guarded(start(&mut worker(&url, daily_bundle(), study, &[])));
    assert!(!out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("the study's strategy cannot run here") && out.stderr.contains("no-such-strategy"));
    assert!(q.attempts().unwrap().values().all(|(a, _)| *a == 0), "nothing was claimed");
    assert_eq!(sql.execute(set_task, &[&study, &theirs, &ours]).unwrap(), 1);

    let queued: Vec<i64> = sql
        .query(
            "SELECT trial_id FROM btopt_trials WHERE study = $1 AND queue = 'queued' ORDER BY trial_id LIMIT 2",
            &[&study],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (unknown, garbled) = (queued[0], queued[1]);
    sql.execute(
        "UPDATE btopt_trials SET config = '{\"short_window\": 10, \"long_window\": 80, \"threshold\": 0.005, \"bogus\": 1}'
         WHERE study = $1 AND trial_id = $2",
        &[&study, &unknown],
    )
    .unwrap();
    sql.execute("UPDATE btopt_trials SET config = 'rm -rf /' WHERE study = $1 AND trial_id = $2", &[&study, &garbled])
        .unwrap();
    let w = start(&mut worker(&url, daily_bundle(), study, &[]));
    finish(c, "coordinator");
    finish(w, "worker");
    for (id, t) in q.trials().unwrap() {
        let message = t.message.as_deref().unwrap_or_default();
        if id as i64 == unknown {
            assert_eq!(t.status, "crashed", "{id}");
            assert!(message.contains("bogus"), "trial {id}: {message}");
        } else if id as i64 == garbled {
            assert_eq!(t.status, "crashed", "{id}");
            assert!(message.starts_with("invalid config in the study"), "trial {id}: {message}");
        } else {
            assert_eq!(t.status, "ok", "trial {id}: {message}");
        }
        assert_eq!(t.attempts, 1, "trial {id}");
    }
}

#[test]
fn max_attempts_without_a_postgresql_store_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("study.sqlite");
    let mut a = search_args();
    a.extend(["--store", p(&file), "--workers", "1", "--max-attempts", "2"].map(String::from));
    let out = wait_guarded(start(&mut optimize_cmd(&strs(&a), "")));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("--max-attempts needs --store postgresql://"), "{}", out.stderr);
    assert!(!file.exists(), "nothing was written");
}
