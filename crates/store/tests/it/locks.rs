//! One holder per study: a second opener is refused with a line naming the holder.

use optimize::{InProcessEvaluator, SearchOptions, TrialStore, optimize};

fn holder_line() -> String {
    format!("pid {} on {}", std::process::id(), store::hostname())
}

#[test]
fn a_second_sqlite_opener_is_told_who_holds_the_study() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let first = store::SqliteStore::open(&path).unwrap();
    let e = store::SqliteStore::open(&path).unwrap_err();
    assert!(e.is_in_use(), "{e}");
    assert_eq!(e.to_string(), format!("study {} is in use by {}", path.display(), holder_line()));
    drop(first);
    store::SqliteStore::open(&path).expect("the lock goes with its holder");
}

#[test]
fn a_second_postgres_coordinator_is_told_who_holds_the_study() {
    let Some(server) = store::testing::server() else { return };
    let target = store::PgTarget::parse(&server.create_database()).unwrap();
    let co = crate::counting_ones(1);
    let space = co.space();
    let identity = |s: &optimize::BracketSearch| optimize::study_identity(&space, s, SearchOptions::default());
    let searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), 1).unwrap();
    let mut first = store::PgStore::connect(&target, Some("busy"), None).unwrap();
    first.load_study(&identity(&searcher)).unwrap();
    let mut second = store::PgStore::connect(&target, Some("busy"), None).unwrap();
    let e = second.load_study(&identity(&searcher)).unwrap_err().to_string();
    assert_eq!(e, format!("trial store: study busy is in use by {}", holder_line()));
    // Another study in the same database is free.
    let mut other = store::PgStore::connect(&target, Some("other"), None).unwrap();
    other.load_study(&identity(&searcher)).unwrap();
    drop(first);
    let mut searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), 1).unwrap();
    let mut ev = InProcessEvaluator::new(2, move |id, c, b| co.evaluate(id, c, b));
    optimize(&space, &mut searcher, &mut ev, &mut second, SearchOptions::default(), &mut ())
        .expect("free once dropped");
}
