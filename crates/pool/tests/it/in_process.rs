//! Tests that use the pool API inside the (multi-threaded) test process.

use std::time::Duration;

use pool::{ChunkSize, PoolBuilder, SpawnWorker, Worker};

struct Square;

impl Worker for Square {
    type Task = u64;
    type Output = u64;
    fn run(&mut self, x: u64) -> u64 {
        x * x
    }
}

impl SpawnWorker for Square {
    type Init = ();
    const NAME: &'static str = "square";
    fn init(_: ()) -> Result<Square, String> {
        Ok(Square)
    }
}

#[cfg(target_os = "linux")]
#[test]
fn fork_is_refused_in_a_multi_threaded_process() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let err = PoolBuilder::new().workers(1).fork(Square).err().expect("fork must be refused");
    assert!(err.is_not_single_threaded(), "{err}");
    assert!(err.to_string().contains("threads"), "{err}");
    drop(tx);
    t.join().expect("join").ok();
}

#[test]
fn thread_backend_maps_in_order_and_streams_every_result() {
    let mut pool = PoolBuilder::new().workers(3).thread(|| Square).expect("build");
    let r: Vec<u64> = pool.map(0..100).into_iter().map(|r| r.expect("ok")).collect();
    assert_eq!(r, (0..100).map(|x| x * x).collect::<Vec<_>>());
    for x in 0..10 {
        assert_eq!(pool.submit(x).expect("submit"), 100 + x);
    }
    let mut got: Vec<_> = std::iter::from_fn(|| pool.recv()).map(|(id, r)| (id, r.expect("ok"))).collect();
    got.sort();
    assert_eq!(got, (0..10).map(|x| (100 + x, x * x)).collect::<Vec<_>>());
    assert_eq!(pool.outstanding(), 0);
    pool.shutdown(Duration::from_secs(1));
}

#[test]
fn chunked_thread_pool_wants_two_chunks_per_worker_and_keeps_ids() {
    for chunk in [ChunkSize::Fixed(1), ChunkSize::Fixed(7), ChunkSize::Adaptive] {
        let mut pool = PoolBuilder::new().workers(3).chunk_size(chunk).thread(|| Square).expect("build");
        if chunk == ChunkSize::Fixed(7) {
            assert_eq!((pool.chunk_size(), pool.wanted_in_flight()), (7, 3 * 2 * 7));
        }
        let r: Vec<u64> = pool.map(0..1000).into_iter().map(|r| r.expect("ok")).collect();
        assert_eq!(r, (0..1000).map(|x| x * x).collect::<Vec<_>>(), "{chunk:?}");
        // A window of `wanted_in_flight`, refilled per result, as the optimizer submits.
        let (mut sent, mut got) = (0u64, Vec::new());
        while got.len() < 500 {
            while sent < 500 && (sent as usize - got.len()) < pool.wanted_in_flight() {
                assert_eq!(pool.submit(sent).expect("submit"), 1000 + sent);
                sent += 1;
            }
            let (id, out) = pool.recv().expect("in flight");
            got.push((id, out.expect("ok")));
        }
        got.sort();
        assert_eq!(got, (0..500).map(|x| (1000 + x, x * x)).collect::<Vec<_>>(), "{chunk:?}");
        assert!(pool.recv().is_none());
    }
}

#[test]
fn map_keeps_earlier_submissions_for_recv() {
    let mut pool = PoolBuilder::new().workers(2).thread(|| Square).expect("build");
    let early = pool.submit(7).expect("submit");
    let r = pool.map([2, 3]);
    assert_eq!(r.into_iter().map(|r| r.expect("ok")).collect::<Vec<_>>(), [4, 9]);
    let (id, out) = pool.recv().expect("early result kept");
    assert_eq!((id, out.expect("ok")), (early, 49));
    assert!(pool.recv().is_none());
}

/// A fake worker program that replies with whatever the test wrote into a script.
#[cfg(unix)]
fn fake_program(name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[cfg(unix)]
#[test]
fn oversized_ready_frame_fails_start_up_instead_of_allocating() {
    let prog = fake_program("pool-oversized.sh", r"printf '\377\377\377\377'; sleep 30");
    let err = PoolBuilder::new().workers(2).program(prog).spawn::<Square>(&()).err().expect("must fail");
    assert!(err.is_startup(), "{err}");
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
}

#[cfg(unix)]
#[test]
fn workers_that_die_between_tasks_fail_the_queue_instead_of_hanging() {
    // Reports ready, then exits at once: every task finds its worker dead.
    let prog = fake_program("pool-quitter.sh", r"printf '\001\000\000\000\000'");
    // Depending on timing the deaths are seen during the build or by the first tasks.
    let mut pool = match PoolBuilder::new().workers(2).program(prog).spawn::<Square>(&()) {
        Ok(pool) => pool,
        Err(e) => return assert!(e.is_startup(), "{e}"),
    };
    for _ in 0..3 {
        let r = pool.map([1, 2, 3]);
        assert_eq!(r.len(), 3);
        for e in r.iter().map(|r| r.as_ref().expect_err("no worker survives")) {
            // Which one depends on timing: a replacement that dies before it reports ready is
            // a start-up failure; one that reports ready and then dies loses the task.
            assert!(e.is_startup() || e.is_worker_lost(), "{e}");
        }
    }
    assert!(pool.stats().lost > 0);
}

#[test]
fn a_pool_can_move_to_another_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let pool = PoolBuilder::new().workers(1).thread(|| Square).expect("build");
    assert_send(&pool);
    let r = std::thread::spawn(move || {
        let mut pool = pool;
        pool.map([3]).pop().expect("one result").expect("ok")
    });
    assert_eq!(r.join().expect("join"), 9);
}
