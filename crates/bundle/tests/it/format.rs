//! The on-disk format: immutable opens, truncated or foreign files, hash verification.

use bundle::{Bundle, Field, Frequency, Handles};

fn fresh() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    crate::write_bundle(&crate::small_spec(Frequency::Daily), &dir);
    (tmp, dir)
}

#[test]
fn info_matches_the_contract_shape() {
    let (_tmp, dir) = fresh();
    let s = bundle::summary::info(&dir).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut expected =
        ["frequency", "sessions", "first_session", "last_session", "content_hash", "splits", "dividends", "assets"];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    let a0 = &v["assets"][0];
    let mut akeys: Vec<&str> = a0.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    akeys.sort_unstable();
    assert_eq!(akeys, ["bars", "first", "last", "sid", "symbol"]);
    assert_eq!(v["frequency"], "daily");
    assert_eq!(v["first_session"], "2020-07-01");
    assert_eq!(v["last_session"], "2020-09-30");
    assert_eq!(a0["symbol"], "AAPL");
}

#[test]
fn foreign_file_is_rejected_with_its_name() {
    let (_tmp, dir) = fresh();
    std::fs::write(dir.join("assets.sqlite"), b"this is not a database, just some text that is long enough").unwrap();
    for err in [bundle::summary::info(&dir).unwrap_err(), bundle::summary::verify(&dir).unwrap_err()] {
        let e = err.to_string();
        assert!(e.contains("assets.sqlite") && e.contains("not a SQLite database"), "{e}");
    }
}

#[test]
fn truncated_file_is_rejected_with_its_name() {
    let (_tmp, dir) = fresh();
    let path = dir.join("daily_bars.sqlite");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    for err in [bundle::summary::info(&dir).unwrap_err(), bundle::summary::verify(&dir).unwrap_err()] {
        let e = err.to_string();
        assert!(e.contains("daily_bars.sqlite") && e.contains("truncated"), "{e}");
    }
}

#[test]
fn missing_directory_or_file() {
    let (tmp, dir) = fresh();
    let e = bundle::summary::info(&tmp.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("not a bundle directory"), "{e}");
    std::fs::remove_file(dir.join("adjustments.sqlite")).unwrap();
    let e = bundle::summary::info(&dir).unwrap_err().to_string();
    assert!(e.contains("adjustments.sqlite"), "{e}");
}

#[test]
fn verify_detects_a_changed_price() {
    let (_tmp, dir) = fresh();
    assert!(bundle::summary::verify(&dir).is_ok());
    let conn = rusqlite::Connection::open(dir.join("daily_bars.sqlite")).unwrap();
    conn.execute(
        "UPDATE daily_bars SET close = close * 1.0001, high = high * 1.01 WHERE sid = 3 AND day = '2020-08-03'",
        [],
    )
    .unwrap();
    drop(conn);
    let e = bundle::summary::verify(&dir).unwrap_err().to_string();
    assert!(e.contains("content hash mismatch"), "{e}");
}

#[test]
fn verify_detects_a_broken_invariant() {
    let (_tmp, dir) = fresh();
    let conn = rusqlite::Connection::open(dir.join("daily_bars.sqlite")).unwrap();
    conn.execute("UPDATE daily_bars SET high = low * 0.5 WHERE sid = 2 AND day = '2020-08-03'", []).unwrap();
    drop(conn);
    let e = bundle::summary::verify(&dir).unwrap_err().to_string();
    assert!(e.contains("GOOGL") && e.contains("2020-08-03") && e.contains("high"), "{e}");
}

#[test]
fn handles_read_the_same_closes_as_the_loader() {
    let (_tmp, dir) = fresh();
    let b = Bundle::load(&dir).unwrap();
    let h = Handles::open(&dir).unwrap();
    for sid in 0..7 {
        assert_eq!(h.raw_closes(sid).unwrap(), b.column(sid, Field::Close));
    }
}

/// The small minute spec over Thanksgiving week 2020 (4 sessions, one of them half a day),
/// generated and written to `m` under `tmp`.
fn thanksgiving_minute(tmp: &tempfile::TempDir) -> (std::path::PathBuf, bundle::BundleData) {
    let dir = tmp.path().join("m");
    let spec = bundle::GenerateSpec {
        start: "2020-11-25".parse().unwrap(),
        end: "2020-12-01".parse().unwrap(),
        ..crate::small_spec(Frequency::Minute)
    };
    let data = bundle::generate::generate(&spec).unwrap();
    bundle::store::write(&data, &dir).unwrap();
    (dir, data)
}

#[test]
fn minute_loader_agrees_with_canonical_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, data) = thanksgiving_minute(&tmp);
    let b = Bundle::load(&dir).unwrap();
    assert_eq!(b.session_bounds(), [0, 390, 600, 990, 1380]);
    for sid in 0..7u32 {
        assert_eq!(b.column(sid, Field::Open), data.bars[sid as usize].open.as_slice());
    }
    let h = Handles::open(&dir).unwrap();
    assert_eq!(h.raw_closes(4).unwrap(), b.column(4, Field::Close));
}

#[test]
fn mapped_cache_equals_the_loaded_bundle() {
    let (_tmp, dir) = fresh();
    let loaded = Bundle::load(&dir).unwrap();
    let mapped = Bundle::open_mapped(&dir).unwrap();
    assert!(mapped.is_mapped() && !loaded.is_mapped());
    assert_eq!(mapped.assets(), loaded.assets());
    assert_eq!(mapped.sessions(), loaded.sessions());
    assert_eq!(mapped.content_hash(), loaded.content_hash());
    for sid in 0..7 {
        for f in Field::ALL {
            let (a, b) = (mapped.column(sid, f), loaded.column(sid, f));
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "sid {sid} {f:?}");
        }
    }
    // A second open reuses the file; a corrupted cache is refused, never misread.
    let path = bundle::cache::cache_path(&dir, loaded.content_hash());
    assert!(Bundle::open_mapped(&dir).is_ok());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 100).unwrap();
    let e = Bundle::open_mapped(&dir).unwrap_err().to_string();
    assert!(e.contains("columns-") && e.contains("truncated"), "{e}");
}

/// The first open loads the bundle and leaves its columnar cache; the next one reads the
/// cache (not the SQLite bars) and gets the same bars under the same content hash.
#[test]
fn the_first_cached_open_writes_the_cache_and_the_next_reads_it() {
    let (_tmp, dir) = fresh();
    let hash = Bundle::load(&dir).unwrap().content_hash().to_string();
    let path = bundle::cache::cache_path(&dir, &hash);
    assert!(!path.exists());
    let (first, unwritten) = Bundle::open_cached(&dir).unwrap();
    assert!(!first.is_mapped() && unwritten.is_none() && path.exists(), "{unwritten:?}");
    // The next one reads it (a loaded bundle's copy, not a map: its own memory, as fast as a load).
    std::fs::rename(dir.join("daily_bars.sqlite"), dir.join("moved.sqlite")).unwrap();
    assert!(Bundle::load(&dir).is_err(), "the bars are gone");
    let (next, _) = Bundle::open_cached(&dir).unwrap();
    std::fs::rename(dir.join("moved.sqlite"), dir.join("daily_bars.sqlite")).unwrap();
    assert!(!next.is_mapped());
    assert_eq!((next.content_hash(), next.assets()), (first.content_hash(), first.assets()));
    for sid in 0..7 {
        for f in Field::ALL {
            let (a, b) = (next.column(sid, f), first.column(sid, f));
            assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "sid {sid} {f:?}");
        }
    }
    // The cache changes no content: the bundle still verifies under the same hash.
    assert_eq!(bundle::summary::verify(&dir).unwrap().content_hash, hash);
}

#[test]
fn sessions_read_without_the_bars_are_the_loaded_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = thanksgiving_minute(&tmp);
    let loaded = Bundle::load(&dir).unwrap();
    let (meta, sessions) = bundle::store::read_sessions(&dir).unwrap();
    assert_eq!(meta.content_hash, loaded.content_hash());
    assert_eq!(meta.frequency, Frequency::Minute);
    assert_eq!(sessions, loaded.sessions());
    assert_eq!(sessions.len(), 4, "Thanksgiving is not a session");
    let err = bundle::store::read_sessions(&tmp.path().join("missing")).unwrap_err().to_string();
    assert!(err.contains("not a bundle directory"), "{err}");
}
