//! Every fault is a test: panics, aborts, signals, exits, OOM, timeouts, oversized frames.

use crate::{Output, check, process_backends, run};

/// How many times each of tasks `0..n` ran, from the `ran N` lines of `traced` tasks.
fn runs(out: &Output, n: usize) -> Vec<usize> {
    let mut count = vec![0; n];
    for l in out.stderr.lines() {
        if let Some(id) = l.split("] ran ").nth(1).and_then(|x| x.trim().parse::<usize>().ok()) {
            count[id] += 1;
        }
    }
    count
}

/// The counter `name` from the `stats` line.
fn stat(out: &Output, name: &str) -> u64 {
    let line = out.line("stats ");
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).expect("counter");
    v.parse().expect("number")
}

#[test]
fn a_worker_killed_mid_chunk_loses_no_other_result() {
    for backend in process_backends() {
        for chunk in ["7", "auto"] {
            // With chunks of 7, tasks 10 and 11 share one (7..=13); 40 sits in another.
            let out = check(
                &["--backend", backend, "--workers", "2", "--chunk", chunk, "--tasks", "traced*64"],
                "sigkill@ids=10+11+40,attempts=1",
                "summary ok=64 failed=0",
            );
            for (i, l) in out.results().iter().enumerate() {
                assert_eq!(l, &format!("{i} ok num {i}"), "{backend} {chunk}");
            }
            // Each kill is charged to its task alone; the tasks that ran before it in its
            // chunk kept their results (nothing ran twice), the rest were sent again.
            assert_eq!((stat(&out, "lost"), stat(&out, "retries")), (3, 3), "{backend} {chunk}");
            // Nothing ran twice. (Fewer than one trace line is possible: the results above prove
            // every task ran, but a worker's last stderr lines may be cut when the pool ends.)
            assert!(runs(&out, 64).iter().all(|&n| n <= 1), "{backend} {chunk}: {}", out.stderr);
        }
    }
}

#[test]
fn a_tenth_of_tasks_killing_their_worker_cost_one_attempt_each() {
    for backend in process_backends() {
        for chunk in ["1", "7", "auto"] {
            let out = check(
                &["--backend", backend, "--workers", "2", "--chunk", chunk, "--tasks", "traced*300"],
                "sigkill@frac=0.1,seed=5,attempts=1",
                "summary ok=300 failed=0",
            );
            for (i, l) in out.results().iter().enumerate() {
                assert_eq!(l, &format!("{i} ok num {i}"), "{backend} {chunk}");
            }
            // Exactly one result per task, every task ran once (a killed attempt dies before
            // the task runs), and every lost worker is one charged attempt of its own task.
            assert_eq!(out.results().len(), 300);
            // Nothing ran twice (trace lines may be cut at shutdown; the results prove each ran).
            assert!(runs(&out, 300).iter().all(|&n| n <= 1), "{backend} {chunk}");
            let lost = stat(&out, "lost");
            assert_eq!(stat(&out, "retries"), lost, "{backend} {chunk}: {}", out.line("stats "));
            assert!((10..=60).contains(&lost), "{backend} {chunk}: {lost} of 300 selected");
        }
    }
}

#[test]
fn poison_tasks_inside_chunks_fail_after_exactly_their_attempts() {
    for backend in process_backends() {
        for chunk in ["7", "auto"] {
            let out = run(
                &["--backend", backend, "--workers", "2", "--chunk", chunk, "--tasks", "traced*100"],
                "abort@frac=0.1,seed=3",
            );
            assert!(out.status.success(), "{}", out.stderr);
            let failed: Vec<String> = out.results().into_iter().filter(|l| l.contains(" err ")).collect();
            assert!(!failed.is_empty() && failed.len() < 30, "{backend} {chunk}: {}", failed.len());
            for l in &failed {
                assert!(l.contains(" err lost ") && l.contains("each of 3 attempts"), "{backend} {chunk}: {l}");
            }
            assert_eq!(stat(&out, "lost"), 3 * failed.len() as u64, "{backend} {chunk}");
            // The others ran once each; a poison task never got to run.
            let ran = runs(&out, 100);
            for (i, l) in out.results().iter().enumerate() {
                let want = if l.contains(" err ") { 0 } else { 1 };
                assert_eq!(ran[i], want, "{backend} {chunk}: task {i}: {l}");
            }
        }
    }
}

#[test]
fn a_real_crash_inside_a_chunk_is_pinned_on_its_task() {
    // The abort is the worker's own doing (no injection), so the results of its chunk's
    // earlier tasks die with the worker: those run again, and the crash is charged to no one
    // until the suspects run alone.
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--chunk", "7", "--tasks", "traced*20,abort,traced*20"],
            "",
            "summary ok=40 failed=1",
        );
        let r = out.results();
        assert!(
            r[20].starts_with("20 err lost task 20 failed") && r[20].contains("each of 3 attempts"),
            "{backend}: {}",
            r[20]
        );
        assert_eq!(stat(&out, "retries"), 2, "{backend}: {}", out.line("stats "));
        for (i, l) in r.iter().enumerate().filter(|(i, _)| *i != 20) {
            assert_eq!(l, &format!("{i} ok num {i}"), "{backend}");
        }
        assert!(runs(&out, 41).iter().enumerate().all(|(i, &n)| i == 20 || n >= 1), "{backend}");
    }
}

#[test]
fn panics_come_back_as_data() {
    for backend in process_backends().iter().chain(&["thread"]) {
        let out = check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*3,panic,echo*3,panic,echo*3,panic,echo*3,panic"],
            "",
            "summary ok=12 failed=4",
        );
        let panics: Vec<_> = out.results().into_iter().filter(|l| l.contains(" err ")).collect();
        assert_eq!(
            panics,
            ["3 err panic demo panic", "7 err panic demo panic", "11 err panic demo panic", "15 err panic demo panic"],
            "{backend}"
        );
        assert!(out.line("stats ").contains("lost=0"), "{backend}: a panic must not cost a worker");
    }
}

#[test]
fn worker_killed_once_is_replaced_and_its_task_retried() {
    for backend in process_backends() {
        for fault in ["abort@ids=2+5,attempts=1", "sigkill@ids=2+5,attempts=1", "exit@ids=2+5,attempts=1"] {
            let out =
                check(&["--backend", backend, "--workers", "2", "--tasks", "echo*16"], fault, "summary ok=16 failed=0");
            for (i, l) in out.results().iter().enumerate() {
                assert_eq!(l, &format!("{i} ok num {i}"), "{backend} {fault}");
            }
            assert!(out.line("stats ").contains("retries=2"), "{backend} {fault}: {}", out.line("stats "));
        }
    }
}

#[test]
fn task_that_keeps_killing_workers_fails_alone() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*16"],
            "abort@ids=3+7+11+15",
            "summary ok=12 failed=4",
        );
        for l in out.results() {
            let id: u64 = l.split(' ').next().unwrap().parse().unwrap();
            if [3, 7, 11, 15].contains(&id) {
                assert!(l.starts_with(&format!("{id} err lost task {id} failed")), "{backend}: {l}");
                assert!(l.contains("each of 3 attempts"), "{backend}: {l}");
            } else {
                assert_eq!(l, format!("{id} ok num {id}"), "{backend}");
            }
        }
        assert!(out.line("stats ").contains("lost=12"), "{backend}: {}", out.line("stats "));
    }
}

#[test]
fn jobs_that_abort_exit_or_sigkill_fail_after_three_attempts() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*4,abort,echo*4,exit,echo*4,sigkill,echo"],
            "",
            "summary ok=13 failed=3",
        );
        let failed: Vec<_> = out.results().into_iter().filter(|l| l.contains(" err ")).collect();
        assert_eq!(failed.len(), 3);
        for (l, id) in failed.iter().zip([4, 9, 14]) {
            assert!(l.starts_with(&format!("{id} err lost task {id} failed")), "{backend}: {l}");
        }
    }
}

#[test]
fn out_of_memory_worker_is_replaced() {
    // RLIMIT_AS makes the 2 GiB allocation fail; Rust then aborts the worker.
    for backend in process_backends() {
        let out = check(
            &[
                "--backend",
                backend,
                "--workers",
                "2",
                "--rlimit-mb",
                "1024",
                "--tasks",
                "echo*5,alloc:2048,echo*5,alloc:8",
            ],
            "",
            "summary ok=11 failed=1",
        );
        assert!(out.results()[5].starts_with("5 err lost task 5"), "{backend}: {}", out.results()[5]);
        assert_eq!(out.results()[11], "11 ok bytes 8388608");
    }
}

#[test]
fn timeout_kills_and_replaces_the_worker() {
    for backend in process_backends() {
        // The timeout is per task, also when every task shares one chunk.
        for chunk in ["1", "8", "auto"] {
            let out = check(
                &[
                    "--backend",
                    backend,
                    "--workers",
                    "2",
                    "--chunk",
                    chunk,
                    "--timeout-ms",
                    "400",
                    "--tasks",
                    "echo*3,hang,echo*3,sleep:1",
                ],
                "hang@ids=1",
                "summary ok=6 failed=2",
            );
            let r = out.results();
            assert!(r[1].starts_with("1 err timeout task 1 timed out"), "{backend} {chunk}: {}", r[1]);
            assert!(r[3].starts_with("3 err timeout task 3 timed out"), "{backend} {chunk}: {}", r[3]);
            assert_eq!(r[7], "7 ok unit");
            assert!(out.line("stats ").contains("timeouts=2"), "{backend} {chunk}");
        }
    }
}

#[test]
fn fractional_injection_is_reproducible() {
    let args = ["--backend", "fork", "--workers", "2", "--tasks", "echo*64"];
    let args = if cfg!(unix) { args } else { ["--backend", "spawn", "--workers", "2", "--tasks", "echo*64"] };
    let a = run(&args, "exit@frac=0.25,seed=11");
    let b = run(&args, "exit@frac=0.25,seed=11");
    // Same tasks fail in both runs (worker ids and pids in the messages may differ).
    let outcome = |o: &crate::Output| -> Vec<String> {
        o.results().iter().map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" ")).collect()
    };
    assert_eq!(outcome(&a), outcome(&b));
    let failed = a.results().iter().filter(|l| l.contains(" err lost ")).count();
    assert!(failed > 4 && failed < 32, "{failed} of 64 failed");
    let c = run(&args, "exit@frac=0.25,seed=11,attempts=1");
    assert_eq!(c.line("summary "), "summary ok=64 failed=0");
}

#[test]
fn oversized_result_is_an_error_not_a_hang() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--max-frame", "4096", "--tasks", "echo*3,big:100000,echo*3"],
            "",
            "summary ok=6 failed=1",
        );
        assert!(out.results()[3].starts_with("3 err frame"), "{backend}: {}", out.results()[3]);
        // An oversized task is refused at submit, before it reaches a worker.
        let tasks = format!("echo,print:{},echo", "x".repeat(5000));
        let out = check(&["--backend", backend, "--max-frame", "4096", "--tasks", &tasks], "", "summary ok=2 failed=1");
        assert!(out.results()[1].contains("task frame of"), "{backend}: {}", out.results()[1]);
        assert!(out.line("stats ").contains("lost=0"), "{backend}");
    }
}

#[test]
fn invalid_fault_spec_fails_the_build() {
    let out = run(&["--backend", process_backends()[0], "--tasks", "echo"], "explode@ids=1");
    assert!(!out.status.success());
    assert!(out.stderr.contains("invalid BTOPT_FAULT_INJECT"), "{}", out.stderr);
}

#[test]
fn the_chunk_size_comes_from_the_environment_unless_set() {
    let demo = |chunk: &str, args: &[&str]| {
        let mut c = crate::demo();
        c.args(["run", "--workers", "2", "--tasks", "echo*20"]).args(args).env(pool::CHUNK_ENV, chunk);
        let c = c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
        crate::wait_guarded(c.stderr(std::process::Stdio::piped()).spawn().expect("start pool-demo"))
    };
    for backend in process_backends().iter().chain(&["thread"]) {
        let out = demo("0", &["--backend", backend]);
        assert!(!out.status.success(), "{backend}");
        assert!(out.stderr.contains("invalid BTOPT_POOL_CHUNK"), "{backend}: {}", out.stderr);
        // An explicit size wins over the variable; a valid variable is used.
        for (chunk, args) in [("0", &["--chunk", "3"][..]), ("5", &[][..]), ("auto", &[][..])] {
            let out = demo(chunk, &[&["--backend", backend][..], args].concat());
            assert!(out.status.success(), "{backend} {chunk}: {}", out.stderr);
            assert_eq!(out.line("summary "), "summary ok=20 failed=0");
        }
    }
}

#[test]
fn worker_stderr_is_forwarded_with_the_worker_id() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--tasks", "print:hello-from-a-worker,echo"],
            "",
            "summary ok=2 failed=0",
        );
        let line = out.stderr.lines().find(|l| l.contains("hello-from-a-worker")).expect("forwarded line");
        assert!(line.starts_with("[worker ") && line.ends_with("] hello-from-a-worker"), "{backend}: {line:?}");
    }
}

#[test]
fn corrupt_result_frame_loses_the_worker_and_only_that_task() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*8"],
            "garble@ids=1+6",
            "summary ok=6 failed=2",
        );
        for l in out.results() {
            let id: u64 = l.split(' ').next().unwrap().parse().unwrap();
            if id == 1 || id == 6 {
                assert!(l.starts_with(&format!("{id} err frame task {id} failed")), "{backend}: {l}");
                assert!(l.contains("bad frame"), "{backend}: {l}");
            } else {
                assert_eq!(l, format!("{id} ok num {id}"), "{backend}");
            }
        }
        // A garbled frame on the first attempt only is retried like any other crash.
        check(
            &["--backend", backend, "--workers", "2", "--tasks", "echo*8"],
            "garble@ids=1+6,attempts=1",
            "summary ok=8 failed=0",
        );
    }
}

#[test]
fn half_a_frame_then_silence_times_out_instead_of_stalling_the_pool() {
    for backend in process_backends() {
        let out = check(
            &["--backend", backend, "--workers", "2", "--timeout-ms", "400", "--tasks", "echo*6"],
            "stall@ids=2",
            "summary ok=5 failed=1",
        );
        let r = out.results();
        assert!(r[2].starts_with("2 err timeout task 2 timed out"), "{backend}: {}", r[2]);
        assert_eq!(r[5], "5 ok num 5", "{backend}");
    }
}

#[test]
fn failed_worker_init_fails_the_build_with_its_message() {
    for backend in ["fork", "spawn"].iter().filter(|b| process_backends().contains(b)) {
        let out = run(&["--backend", backend, "--fail-init", "--tasks", "echo"], "");
        assert_eq!(out.status.code(), Some(1), "{backend}");
        assert!(out.stderr.contains("worker start-up failed"), "{backend}: {}", out.stderr);
        assert!(out.stderr.contains("demo init refused"), "{backend}: {}", out.stderr);
    }
    // Per-batch starts workers with the first batch, so the tasks fail instead.
    if cfg!(unix) {
        let out = check(&["--backend", "per-batch", "--fail-init", "--tasks", "echo*3"], "", "summary ok=0 failed=3");
        assert!(out.results()[0].contains("demo init refused"), "{}", out.results()[0]);
    }
}
