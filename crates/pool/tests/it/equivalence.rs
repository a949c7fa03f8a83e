//! Bit-identical results from every backend at 1, 2 and 8 workers and chunk sizes 1, 7 and
//! adaptive.

use crate::check;

#[derive(Clone, Copy, Debug)]
enum Stream {
    Map,
    Paced,
}

fn combinations() -> Vec<(&'static str, &'static str, Stream)> {
    let mut v = Vec::new();
    for workers in ["1", "2", "8"] {
        for chunk in ["1", "7", "auto"] {
            for stream in [Stream::Map, Stream::Paced] {
                v.push((workers, chunk, stream));
            }
        }
    }
    v
}

const TASKS: &str =
    "sum:0,sum:1,sum:2,sum:3,sum:4,sum:5,sum:6,sum:7,sum:8,sum:9,sum:10,sum:11,sum:12,sum:13,echo*8,sum:99,sum:12345";

#[test]
fn every_backend_and_worker_count_gives_identical_results() {
    let mut variants: Vec<Vec<&str>> = vec![vec!["--backend", "spawn"], vec!["--backend", "thread"]];
    if cfg!(unix) {
        variants.push(vec!["--backend", "fork"]);
        variants.push(vec!["--backend", "fork", "--reopen"]);
        variants.push(vec!["--backend", "per-batch"]);
    }
    let mut reference: Option<Vec<String>> = None;
    for v in &variants {
        for (workers, chunk, stream) in combinations() {
            let mut args = v.clone();
            args.extend(["--workers", workers, "--chunk", chunk, "--shared-mb", "2", "--tasks", TASKS]);
            match stream {
                Stream::Map => {}
                // A window of 5 in flight, one more per result, as the optimizer submits.
                Stream::Paced => args.extend(["--stream", "--pace", "5"]),
            }
            let out = check(&args, "", "summary ok=24 failed=0");
            let results = out.results();
            match &reference {
                None => reference = Some(results),
                Some(r) => assert_eq!(&results, r, "{args:?}"),
            }
        }
    }
    let r = reference.expect("ran");
    assert_eq!(r.len(), 24);
    assert!(r[0].starts_with("0 ok float "));
}
