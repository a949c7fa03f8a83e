//! csvdir ingest: every bad input gets one clear error naming the file and line, and leaves
//! nothing behind; a generate → export → ingest round trip keeps every price.

use std::io::Write;
use std::path::Path;

use bundle::{Bundle, Field, Frequency};

const HEADER: &str = "date,open,high,low,close,volume,dividend,split";

/// Writes `files` (`daily/AAA.csv` → content) under a fresh csvdir, ingests it, and returns
/// the error message, asserting that nothing was left at `--out` or beside it.
fn ingest_error(files: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, content) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let out = tmp.path().join("out");
    let err = bundle::csvdir::ingest(&src, &out, None).expect_err("ingest must fail").to_string();
    assert!(!out.exists(), "nothing may be left at --out");
    assert!(crate::hidden_entries(tmp.path()).is_empty(), "no temporary directory may be left");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// The data-driven check: a daily csv for symbol AAA with `body` rows, expecting an error
/// at `line` containing `expect`.
fn check(body: &str, line: usize, expect: &str) {
    let content = format!("{HEADER}\n{body}");
    let err = ingest_error(&[("daily/AAA.csv", &content)]);
    let at = format!("AAA.csv:{line}:");
    assert!(err.contains(&at), "error must name file and line {at}: {err}");
    assert!(err.contains(expect), "error must say {expect:?}: {err}");
}

const GOOD1: &str = "2024-01-02,10,11,9,10.5,1000,0,1\n";
const GOOD2: &str = "2024-01-03,10.5,11,10,10.8,1200,0,1\n";

#[test]
fn missing_column() {
    let err = ingest_error(&[("daily/AAA.csv", "date,open,high,low,volume\n2024-01-02,10,11,9,1000\n")]);
    assert!(err.contains("AAA.csv:1:") && err.contains("missing column \"close\""), "{err}");
}

#[test]
fn non_numeric_nan_and_non_positive_prices() {
    check(&format!("{GOOD1}2024-01-03,abc,11,10,10.8,1200,0,1\n"), 3, "open \"abc\" is not a number");
    check(&format!("{GOOD1}2024-01-03,10.5,11,10,NaN,1200,0,1\n"), 3, "close is NaN");
    check(&format!("{GOOD1}2024-01-03,0,11,0,10.8,1200,0,1\n"), 3, "open 0 is not a positive finite price");
    check(&format!("{GOOD1}2024-01-03,-1,11,-2,10.8,1200,0,1\n"), 3, "not a positive finite price");
}

#[test]
fn high_and_low_inconsistent() {
    check(&format!("{GOOD1}2024-01-03,10.5,10.6,10,10.8,1200,0,1\n"), 3, "high 10.6 is below max(open, close)");
    check(&format!("{GOOD1}2024-01-03,10.5,11,10.6,10.8,1200,0,1\n"), 3, "low 10.6 is above min(open, close)");
}

#[test]
fn negative_volume() {
    check(&format!("{GOOD1}2024-01-03,10.5,11,10,10.8,-5,0,1\n"), 3, "volume -5 is negative");
}

#[test]
fn duplicate_and_unsorted_dates() {
    check(&format!("{GOOD1}{GOOD1}"), 3, "duplicate date 2024-01-02");
    check(&format!("{GOOD2}{GOOD1}"), 3, "dates not sorted");
}

#[test]
fn date_off_the_calendar() {
    check(&format!("{GOOD1}2024-01-06,10.5,11,10,10.8,1200,0,1\n"), 3, "off the XNYS calendar");
    check("2024-01-15,10,11,9,10.5,1000,0,1\n", 2, "off the XNYS calendar"); // MLK day
    check(&format!("{GOOD1}2024-13-01,10.5,11,10,10.8,1200,0,1\n"), 3, "bad date");
}

#[test]
fn split_not_positive() {
    check(&format!("{GOOD1}2024-01-03,10.5,11,10,10.8,1200,0,0\n"), 3, "split 0 must be > 0");
    check(&format!("{GOOD1}2024-01-03,10.5,11,10,10.8,1200,0,-2\n"), 3, "split -2 must be > 0");
}

#[test]
fn empty_directory() {
    let err = ingest_error(&[]);
    assert!(err.contains("empty"), "{err}");
    let err = ingest_error(&[("daily/README.txt", "not a csv")]);
    assert!(err.contains("daily: empty: no SYMBOL.csv"), "{err}");
}

#[test]
fn existing_out_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("daily")).unwrap();
    std::fs::write(src.join("daily/AAA.csv"), format!("{HEADER}\n{GOOD1}{GOOD2}")).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let err = bundle::csvdir::ingest(&src, &out, None).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}

#[test]
fn gzip_files_splits_and_dividends_are_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src/daily");
    std::fs::create_dir_all(&src).unwrap();
    let body =
        format!("{HEADER}\n{GOOD1}2024-01-03,5.25,5.5,5,5.4,2400,0,2.0\n2024-01-04,5.4,5.6,5.3,5.5,2000,0.11,1\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    std::fs::write(src.join("BBB.csv.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(src.join("AAA.csv"), format!("{HEADER}\n{GOOD1}{GOOD2}")).unwrap();
    let out = tmp.path().join("out");
    let report = bundle::csvdir::ingest(&tmp.path().join("src"), &out, None).unwrap();
    assert_eq!((report.assets, report.bars_read, report.bars_filled), (2, 5, 0));
    let b = Bundle::load(&out).unwrap();
    assert_eq!(b.assets()[1].symbol, "BBB");
    assert_eq!(b.splits().len(), 1);
    assert_eq!(b.splits()[0].ratio, 0.5);
    assert_eq!(b.dividends()[0].amount, 0.11);
    // BBB on 2024-01-02 is adjusted by the split (×0.5) and the dividend (1 − 0.11/5.4).
    let adj = b.column(1, Field::AdjClose)[0];
    let expected = 10.5 * 0.5 * (1.0 - 0.11 / 5.4);
    assert!((adj - expected).abs() < 1e-12, "{adj} vs {expected}");
    // AAA has no bar on 2024-01-04: held at its last close there (forward-fill is interior
    // only, so AAA simply ends on 2024-01-03).
    assert_eq!(b.assets()[0].last_session.to_string(), "2024-01-03");
}

#[test]
fn interior_gaps_are_forward_filled() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src/daily");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("AAA.csv"), format!("{HEADER}\n{GOOD1}2024-01-05,10.5,11,10,10.8,1200,0,1\n")).unwrap();
    let out = tmp.path().join("out");
    let report = bundle::csvdir::ingest(&tmp.path().join("src"), &out, None).unwrap();
    assert_eq!(report.bars_filled, 2);
    let b = Bundle::load(&out).unwrap();
    assert_eq!(b.column(0, Field::Close), [10.5, 10.5, 10.5, 10.8]);
    assert_eq!(b.column(0, Field::Volume), [1000.0, 0.0, 0.0, 1200.0]);
}

#[test]
fn minute_timestamps_local_and_utc() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src/minute");
    std::fs::create_dir_all(&src).unwrap();
    // 2024-07-01 is in daylight saving time: 13:31Z is 09:31 New York.
    std::fs::write(
        src.join("AAA.csv"),
        "timestamp,open,high,low,close,volume\n2024-07-01 09:31:00,10,11,9,10.5,100\n2024-07-01T13:32:00+00:00,10.5,11,10,10.6,100\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    bundle::csvdir::ingest(&tmp.path().join("src"), &out, None).unwrap();
    let b = Bundle::load(&out).unwrap();
    assert_eq!(b.assets()[0].bars(), 2);
    assert_eq!(&b.column(0, Field::Close)[..2], [10.5, 10.6]);

    let err = ingest_error(&[(
        "minute/AAA.csv",
        "timestamp,open,high,low,close,volume\n2024-07-01 16:01:00,10,11,9,10.5,100\n",
    )]);
    assert!(err.contains("AAA.csv:2:") && err.contains("after the session's close"), "{err}");
}

#[test]
fn both_frequencies_need_a_choice() {
    let err = ingest_error(&[("daily/AAA.csv", HEADER), ("minute/AAA.csv", HEADER)]);
    assert!(err.contains("--frequency"), "{err}");
}

fn round_trip(frequency: Frequency) {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, csv, back) = (tmp.path().join("orig"), tmp.path().join("csv"), tmp.path().join("back"));
    let spec = bundle::GenerateSpec {
        start: "2020-08-20".parse().unwrap(),
        end: "2020-09-10".parse().unwrap(),
        ..crate::small_spec(frequency)
    };
    crate::write_bundle(&spec, &orig);
    bundle::csvdir::export(&orig, &csv).unwrap();
    let report = bundle::csvdir::ingest(&csv, &back, None).unwrap();
    assert_eq!(report.bars_filled, 0);
    let (_, a) = bundle::store::read(&orig).unwrap();
    let (_, b) = bundle::store::read(&back).unwrap();
    assert_eq!(a.sessions, b.sessions);
    assert_eq!(a.bars, b.bars, "every raw price and volume survives the round trip");
    assert_eq!(a.splits, b.splits);
    assert_eq!(a.dividends, b.dividends);
    assert!(!a.splits.is_empty(), "the window holds the 2020-08-31 splits");
    let (la, lb) = (Bundle::load(&orig).unwrap(), Bundle::load(&back).unwrap());
    for sid in 0..7 {
        assert_eq!(la.column(sid, Field::AdjClose), lb.column(sid, Field::AdjClose));
    }
}

#[test]
fn csvdir_round_trip_daily() {
    round_trip(Frequency::Daily);
}

#[test]
fn csvdir_round_trip_minute() {
    round_trip(Frequency::Minute);
}

#[test]
fn export_refuses_existing_out() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig");
    crate::write_bundle(&crate::small_spec(Frequency::Daily), &orig);
    let err = bundle::csvdir::export(&orig, Path::new(tmp.path())).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}
