//! Lifecycle: no zombies or orphans after drop/shutdown, workers die with their parent.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{demo, process_backends, wait_guarded};

/// Starts `pool-demo serve`, returning the child and the pids it reported.
fn serve(backend: &str) -> (Child, Vec<u32>) {
    let mut cmd = demo();
    // Its own process group, so that a test can send Ctrl-C to the whole group as a terminal does.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .args(["serve", "--backend", backend, "--workers", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pool-demo serve");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.as_mut().expect("stdout"));
    out.read_line(&mut line).expect("read pids");
    let rest = line.strip_prefix("pids ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let (pids, ok) = rest.trim().split_once(' ').expect("pids and ok");
    assert_eq!(ok, "ok=true");
    let pids: Vec<u32> = pids.split(',').map(|p| p.parse().expect("pid")).collect();
    (child, pids)
}

#[cfg(target_os = "linux")]
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rfind(')').and_then(|i| s[i + 2..].chars().next()).is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
fn wait_all_gone(pids: &[u32]) -> Vec<u32> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if !pids.iter().any(|&p| running(p)) {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.iter().copied().filter(|&p| running(p)).collect()
}

#[test]
fn drop_and_shutdown_leave_no_child_behind() {
    for backend in process_backends() {
        for how in ["drop", "shutdown"] {
            let (mut child, pids) = serve(backend);
            let expected = if *backend == "per-batch" { 1 } else { 4 };
            let expected = if *backend == "spawn" { 3 } else { expected };
            assert_eq!(pids.len(), expected, "{backend}: {pids:?}");
            writeln!(child.stdin.as_mut().expect("stdin"), "{how}").expect("send command");
            let out = wait_guarded(child);
            assert!(out.status.success(), "{}", out.stderr);
            // The demo checks /proc itself right after the drop returns: reaped, not zombies.
            assert!(out.stdout.contains("dropped alive=0"), "{backend} {how}: {}", out.stdout);
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn workers_die_with_a_killed_parent() {
    for backend in process_backends() {
        for signal in [libc::SIGKILL, libc::SIGINT, libc::SIGTERM] {
            let (child, pids) = serve(backend);
            assert!(pids.iter().all(|&p| running(p)));
            // Ctrl-C goes to the whole process group (workers included); the rest to the parent.
            let target = if signal == libc::SIGINT { -(child.id() as i32) } else { child.id() as i32 };
            // SAFETY: signalling our own child (or its group), which has not been reaped yet.
            assert_eq!(unsafe { libc::kill(target, signal) }, 0);
            let out = wait_guarded(child);
            assert!(!out.status.success());
            assert_eq!(wait_all_gone(&pids), Vec::<u32>::new(), "{backend} signal {signal}: survivors");
        }
    }
}

#[test]
fn worker_mode_needs_the_token() {
    let mut child = demo()
        .env(pool::WORKER_ENV, "expected-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    pool::frame::write_frame(&mut stdin, b"wrong-token", 256).expect("write");
    drop(stdin);
    let out = wait_guarded(child);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("without the matching token"), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    // A giant length prefix instead of a token is refused without allocating it.
    let mut child = demo()
        .env(pool::WORKER_ENV, "t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    child.stdin.take().expect("stdin").write_all(&u32::MAX.to_le_bytes()).expect("write");
    let out = wait_guarded(child);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("exceeds the maximum"), "{}", out.stderr);
}

#[test]
fn without_the_variable_the_binary_runs_normally() {
    let out = wait_guarded(
        demo()
            .arg("no-such-command")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("unknown command"), "{}", out.stderr);
}

#[cfg(target_os = "linux")]
#[test]
fn forked_workers_share_the_state_copy_on_write() {
    let measure = |backend: &str| -> (f64, f64) {
        let out = wait_guarded(
            demo()
                .args(["bench", "--backend", backend, "--workers", "4", "--shared-mb", "32"])
                .args(["--roundtrips", "10", "--throughput", "100"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start bench"),
        );
        assert!(out.status.success(), "{}", out.stderr);
        let field = |k: &str| -> f64 {
            let v = out.stdout.split_whitespace().find_map(|w| w.strip_prefix(k)).expect("field");
            v.parse().expect("number")
        };
        assert_eq!(field("failed="), 0.0);
        (field("pss_mb="), field("rss_mb="))
    };
    // Four workers and the zygote each map the 32 MiB array; PSS divides it among them.
    let (pss, rss) = measure("fork");
    assert!(rss > 4.0 * 32.0, "fork rss {rss}");
    assert!(pss < 2.0 * 32.0, "fork pss {pss} for one 32 MiB copy");
    // Spawned workers each build their own copy.
    let (pss, _) = measure("spawn");
    assert!(pss > 3.0 * 32.0, "spawn pss {pss}");
}

/// `Pool::wait_ready` ends without a result while the only task still runs (a 300 ms sleep
/// cannot finish within a 1 ms wait), and with one when the wait is long enough; every
/// result still arrives exactly once.
#[test]
fn wait_ready_times_out_on_a_running_task_and_returns_a_finished_one() {
    let mut backends = process_backends().to_vec();
    backends.push("thread");
    for backend in backends {
        let out = crate::check(
            &["--backend", backend, "--workers", "1", "--tasks", "sleep:300", "--stream", "--wait-ms", "1"],
            "",
            "summary ok=1 failed=0",
        );
        let waits = out.line("waits ");
        assert!(!waits.ends_with("timed_out=0"), "{backend}: a 1 ms wait on a 300 ms task timed out: {waits}");
        let out = crate::check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*50", "--stream", "--wait-ms", "60000"],
            "",
            "summary ok=50 failed=0",
        );
        let waits = out.line("waits ");
        assert!(waits.ends_with("timed_out=0"), "{backend}: a wait for echo results timed out: {waits}");
        assert!(!waits.starts_with("waits ready=0 "), "{backend}: {waits}");
    }
}

/// A task's busy time is its own, measured in its worker, not the time it waited in its
/// chunk behind the others: three tasks in one chunk on one worker, the first sleeping
/// 400 ms and the others 1 ms, report at least 400 ms for the first and well under it for
/// the others (which waited 400 ms). The margins are wide: this checks what is measured,
/// not how fast anything runs.
#[test]
fn busy_time_is_each_tasks_own_not_its_wait_in_the_chunk() {
    let mut backends = process_backends().to_vec();
    backends.push("thread");
    for backend in backends {
        let out = crate::check(
            &[
                "--backend",
                backend,
                "--workers",
                "1",
                "--chunk",
                "3",
                "--tasks",
                "sleep:400,sleep:1,sleep:1",
                "--stream",
                "--busy",
            ],
            "",
            "summary ok=3 failed=0",
        );
        let busy: Vec<(u64, f64)> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("busy "))
            .map(|l| {
                let (id, ms) = l.split_once(' ').expect("busy ID MS");
                (id.parse().expect("id"), ms.parse().expect("ms"))
            })
            .collect();
        assert_eq!(busy.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 1, 2], "{backend}: {}", out.stdout);
        assert!(busy[0].1 >= 400.0, "{backend}: the 400 ms task reports {} ms", busy[0].1);
        for &(id, ms) in &busy[1..] {
            assert!((1.0..200.0).contains(&ms), "{backend}: 1 ms task {id} reports {ms} ms (it waited 400 ms)");
        }
    }
}
