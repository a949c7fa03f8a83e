//! PostgreSQL specifics: schema creation races, the work queue's leases and its
//! exactly-once outcomes, study listing, and surviving a server restart.

use std::time::Duration;

use optimize::{Completion, InProcessEvaluator, Outcome, SearchOptions, TrialStore, optimize};
use store::{PgStore, PgTarget, Queue};

fn fresh() -> Option<PgTarget> {
    let server = store::testing::server()?;
    Some(PgTarget::parse(&server.create_database()).unwrap())
}

#[test]
fn four_first_users_creating_the_schema_at_once_all_succeed() {
    let Some(target) = fresh() else { return };
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (t, b) = (target.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                store::PgStore::connect(&t, Some(&format!("s{i}")), None).map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("every first user succeeds");
    }
    assert!(store::list_studies(&target).unwrap().is_empty());
}

/// A study with `n` suggested trials (counting-ones, hyperband at capacity `n`) whose
/// optimizer died before any completion: its trials are recorded, none evaluated.
fn study_with_trials(target: &PgTarget, name: &str) -> Vec<u64> {
    study_with_trials_allowing(target, name, store::DEFAULT_MAX_ATTEMPTS, false)
}

/// [`study_with_trials`] whose coordinator allows `max_attempts` claims per trial, and
/// inserts its suggestions already queued when `queued` ([`PgStore::queue_suggested`]).
fn study_with_trials_allowing(target: &PgTarget, name: &str, max_attempts: u32, queued: bool) -> Vec<u64> {
    let co = crate::counting_ones(1);
    let space = co.space();
    let mut searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), 1).unwrap();
    let mut store = PgStore::connect(target, Some(name), None).unwrap();
    store.queue_suggested(queued);
    let mut ev = InProcessEvaluator::new(100, move |id, c, b| co.evaluate(id, c, b)).fail_after(0);
    optimize(
        &space,
        &mut searcher,
        &mut ev,
        &mut store,
        SearchOptions { deterministic: true, reuse_results: false, streaming: false },
        &mut (),
    )
    .unwrap_err();
    drop(store);
    let (_, ids) = reopen(target, name, max_attempts);
    ids
}

/// The coordinator's store of a study made by [`study_with_trials_allowing`], opened again
/// (holding its lock), and its trials' ids.
fn reopen(target: &PgTarget, name: &str, max_attempts: u32) -> (PgStore, Vec<u64>) {
    let co = crate::counting_ones(1);
    let space = co.space();
    let searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), 1).unwrap();
    let identity = optimize::study_identity(
        &space,
        &searcher,
        SearchOptions { deterministic: true, reuse_results: false, streaming: false },
    );
    let mut store = PgStore::connect(target, Some(name), None).unwrap();
    store.set_max_attempts(max_attempts);
    let records = store.load_study(&identity).unwrap();
    (store, records.iter().map(|r| r.trial_id).collect())
}

fn done(claim: &store::Claimed, loss: f64) -> (store::Claimed, Completion) {
    (
        claim.clone(),
        Completion { trial_id: claim.trial_id, outcome: Outcome::loss(loss), duration_secs: 0.0, worker: Some(0) },
    )
}

#[test]
fn suggestions_inserted_queued_wake_a_worker_and_are_claimable_without_enqueue() {
    let Some(target) = fresh() else { return };
    let mut worker = Queue::connect(&target, "iq", Duration::from_secs(60)).unwrap();
    worker.listen_queued().unwrap();
    let ids = study_with_trials_allowing(&target, "iq", store::DEFAULT_MAX_ATTEMPTS, true);
    assert!(worker.wait(Duration::from_secs(30)).unwrap(), "the insert notifies waiting workers");
    let claimed: Vec<u64> = worker.claim(1000).unwrap().iter().map(|c| c.trial_id).collect();
    assert_eq!(claimed, ids);
    // Queueing them again (a resumed coordinator submits its outstanding trials) changes nothing.
    let mut coordinator = Queue::connect(&target, "iq", Duration::from_secs(60)).unwrap();
    coordinator.enqueue(&ids).unwrap();
    let info = coordinator.info().unwrap().unwrap();
    assert_eq!((info.queued, info.running), (0, ids.len() as u64));
}

#[test]
fn the_queue_leases_claims_and_records_each_outcome_once() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "q");
    assert_eq!(ids.len(), 81, "stage 0 of the largest bracket");
    let lease = Duration::from_millis(300);
    let mut coordinator = Queue::connect(&target, "q", lease).unwrap();
    let mut a = Queue::connect(&target, "q", lease).unwrap();
    let mut b = Queue::connect(&target, "q", Duration::from_secs(60)).unwrap();
    assert!(a.claim(10).unwrap().is_empty(), "nothing is claimable before it is queued");
    coordinator.enqueue(&ids).unwrap();
    coordinator.enqueue(&ids).unwrap(); // queueing twice changes nothing
    let ca = a.claim(10).unwrap();
    let cb = b.claim(100).unwrap();
    assert_eq!(ca.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..10].to_vec());
    assert_eq!(cb.len(), 71, "skip locked: b gets the rest");
    assert!(ca.iter().chain(&cb).all(|c| c.attempt == 1));
    let info = coordinator.info().unwrap().unwrap();
    assert_eq!((info.queued, info.running, info.done), (0, 81, 0));

    // a stops heartbeating; its lease expires and b takes its trials as second attempts.
    std::thread::sleep(Duration::from_millis(600));
    let again = b.claim(100).unwrap();
    assert_eq!(again.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..10].to_vec());
    assert!(again.iter().all(|c| c.attempt == 2));
    // a's late results are discarded; b's (the current lease) are recorded.
    let late: Vec<_> = ca.iter().map(|c| done(c, -1.0)).collect();
    assert_eq!(a.complete(&late).unwrap(), 0, "a late result of an expired lease is never recorded");
    let current: Vec<_> = again.iter().chain(&cb).map(|c| done(c, -2.0)).collect();
    assert_eq!(b.complete(&current).unwrap(), 81);
    assert_eq!(b.complete(&current).unwrap(), 0, "completing twice records nothing");

    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids);
    assert!(taken.iter().all(|c| c.outcome == Outcome::loss(-2.0)));
    assert!(coordinator.take_done().unwrap().is_empty(), "each outcome is taken once");
    let attempts = coordinator.attempts().unwrap();
    assert!(ids[..10].iter().all(|id| attempts[id] == (2, "ok".to_string())));
    assert!(ids[10..].iter().all(|id| attempts[id] == (1, "ok".to_string())));
    let info = coordinator.info().unwrap().unwrap();
    assert_eq!((info.queued, info.running, info.done, info.best_loss), (0, 0, 81, Some(-2.0)));
}

/// Claims and lets the lease expire: `q`'s claims are leased for a few milliseconds.
fn claim_and_expire(q: &mut Queue, n: usize) -> Vec<store::Claimed> {
    let c = q.claim(n).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    c
}

#[test]
fn a_trial_whose_lease_expires_on_every_allowed_attempt_becomes_crashed_exactly_once() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "cap");
    let mut coordinator = Queue::connect(&target, "cap", Duration::from_secs(60)).unwrap();
    // Workers that die holding trials 0 and 1: their leases (50 ms) are never renewed.
    let mut dying = Queue::connect(&target, "cap", Duration::from_millis(50)).unwrap();
    let mut healthy = Queue::connect(&target, "cap", Duration::from_secs(60)).unwrap();
    coordinator.enqueue(&ids).unwrap();
    let mut last = Vec::new();
    for attempt in 1..=store::DEFAULT_MAX_ATTEMPTS as i32 {
        last = claim_and_expire(&mut dying, 2);
        assert_eq!(
            last.iter().map(|c| (c.trial_id, c.attempt)).collect::<Vec<_>>(),
            [(ids[0], attempt), (ids[1], attempt)]
        );
    }
    // Used up: no claim takes them again, not even before the coordinator fails them.
    let rest = healthy.claim(200).unwrap();
    assert_eq!(rest.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[2..].to_vec());
    assert!(rest.iter().all(|c| c.attempt == 1));
    assert_eq!(healthy.complete(&rest.iter().map(|c| done(c, 0.5)).collect::<Vec<_>>()).unwrap(), 79);

    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids, "every trial, each once");
    let message = "lost its worker 3 times (its lease expired on every attempt)";
    for c in &taken[..2] {
        assert_eq!(c.outcome, Outcome::Crashed { message: message.to_string() }, "trial {}", c.trial_id);
    }
    assert!(taken[2..].iter().all(|c| c.outcome == Outcome::loss(0.5)));
    // A late result of the last attempt is discarded, and nothing is taken twice.
    assert_eq!(dying.complete(&last.iter().map(|c| done(c, -9.0)).collect::<Vec<_>>()).unwrap(), 0);
    assert!(dying.claim(10).unwrap().is_empty());
    assert!(coordinator.take_done().unwrap().is_empty());
    let trials = coordinator.trials().unwrap();
    for id in &ids[..2] {
        let t = &trials[id];
        // Returned, not yet recorded fed (no store here): `done`.
        assert_eq!((t.attempts, t.queue.as_deref(), t.status.as_str()), (3, Some("done"), "crashed"), "{t:?}");
        assert_eq!(t.message.as_deref(), Some(message));
    }
    let info = coordinator.info().unwrap().unwrap();
    assert_eq!((info.queued, info.running, info.done), (0, 0, 81));

    // The coordinator's own bound is the study's: with 1 attempt, one lost worker is enough.
    let ids = study_with_trials_allowing(&target, "once", 1, false);
    let mut coordinator = Queue::connect(&target, "once", Duration::from_secs(60)).unwrap();
    let mut dying = Queue::connect(&target, "once", Duration::from_millis(50)).unwrap();
    let mut healthy = Queue::connect(&target, "once", Duration::from_secs(60)).unwrap();
    coordinator.enqueue(&ids).unwrap();
    assert_eq!(claim_and_expire(&mut dying, 1)[0].trial_id, ids[0]);
    assert_eq!(healthy.claim(1).unwrap()[0].trial_id, ids[1], "trial 0 is not claimed a second time");
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.len(), 1);
    let once = "lost its worker 1 time (its lease expired on every attempt)".to_string();
    assert_eq!((taken[0].trial_id, &taken[0].outcome), (ids[0], &Outcome::Crashed { message: once }));
}

#[test]
fn a_heartbeat_keeps_a_lease() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "h");
    let mut a = Queue::connect(&target, "h", Duration::from_millis(400)).unwrap();
    let mut b = Queue::connect(&target, "h", Duration::from_secs(60)).unwrap();
    a.enqueue(&ids).unwrap();
    let claimed = a.claim(5).unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        a.heartbeat(&claimed.iter().map(|c| c.trial_id).collect::<Vec<_>>()).unwrap();
    }
    let other = b.claim(100).unwrap();
    assert_eq!(other.len(), 76, "b gets none of a's heartbeated trials");
    assert_eq!(a.complete(&claimed.iter().map(|c| done(c, 0.5)).collect::<Vec<_>>()).unwrap(), 5);
}

#[test]
fn studies_are_listed_with_their_queue_counts() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "listed");
    let mut q = Queue::connect(&target, "listed", Duration::from_secs(60)).unwrap();
    q.enqueue(&ids[..20]).unwrap();
    let c = q.claim(5).unwrap();
    q.complete(&c[..2].iter().map(|c| done(c, 0.25)).collect::<Vec<_>>()).unwrap();
    let list = store::list_studies(&target).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].to_json(),
        serde_json::json!({"name": "listed", "state": "running", "queued": 15, "running": 3, "done": 2, "best_loss": 0.25})
    );
}

#[test]
fn a_queue_reads_its_own_studys_head_and_only_that() {
    let Some(target) = fresh() else { return };
    study_with_trials(&target, "head-a");
    study_with_trials(&target, "head-b");
    let mut q = Queue::connect(&target, "head-b", Duration::from_secs(60)).unwrap();
    let head = q.head().unwrap().expect("head-b exists");
    assert_eq!((head.name.as_str(), head.state.as_str()), ("head-b", "running"));
    let listed = q.heads().unwrap().into_iter().find(|h| h.name == "head-b").expect("listed");
    assert_eq!((head.bundle_hash, head.task, head.holder), (listed.bundle_hash, listed.task, listed.holder));
    q.switch("head-c");
    assert!(q.head().unwrap().is_none(), "no study head-c");
    assert_eq!(q.heads().unwrap().len(), 2);
}

/// Manual vacuums of the trials table so far, in the database at `url`.
fn vacuums(url: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one(
        "SELECT coalesce(sum(vacuum_count), 0)::int8 FROM pg_stat_user_tables WHERE relname = 'btopt_trials'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A hyperband study on counting-ones (81 + 27 + 9 + 3 + 1 suggestions) whose coordinator
/// vacuums every `every` suggested trials.
fn study_vacuuming_every(url: &str, every: Option<u64>) {
    let co = crate::counting_ones(1);
    let space = co.space();
    let mut searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), 1).unwrap();
    let mut store = PgStore::connect(&PgTarget::parse(url).unwrap(), Some("v"), None).unwrap();
    store.vacuum_every(every);
    let mut ev = InProcessEvaluator::new(100, move |id, c, b| co.evaluate(id, c, b));
    let options = SearchOptions { deterministic: true, reuse_results: false, streaming: false };
    let summary = optimize(&space, &mut searcher, &mut ev, &mut store, options, &mut ()).unwrap();
    assert_eq!(summary.evaluations, 121);
}

#[test]
fn a_coordinator_vacuums_the_trials_table_every_so_many_suggestions() {
    let Some(server) = store::testing::server() else { return };
    let (often, default) = (server.create_database(), server.create_database());
    study_vacuuming_every(&often, Some(50));
    // 81 suggestions, then 40 more: due once.
    assert_eq!(vacuums(&often), 1);
    study_vacuuming_every(&default, Some(store::DEFAULT_VACUUM_EVERY));
    assert_eq!(vacuums(&default), 0, "121 trials are far from the default's 20,000");
}

#[test]
fn a_server_restart_mid_study_is_survived_by_every_client() {
    let Some(cluster) = store::testing::Cluster::start() else {
        store::testing::skip();
        return;
    };
    let url = store::testing::create_database_at(&cluster.url());
    let target = PgTarget::parse(&url).unwrap();
    let ids = study_with_trials(&target, "r");
    let mut coordinator = Queue::connect(&target, "r", Duration::from_secs(60)).unwrap();
    let mut worker = Queue::connect(&target, "r", Duration::from_secs(60)).unwrap();
    worker.listen_queued().unwrap();
    coordinator.enqueue(&ids).unwrap();
    let first = worker.claim(40).unwrap();
    cluster.restart();
    // Both connections are gone; each operation reconnects and runs whole.
    assert_eq!(worker.complete(&first.iter().map(|c| done(c, 1.0)).collect::<Vec<_>>()).unwrap(), 40);
    let rest = worker.claim(100).unwrap();
    assert_eq!(rest.len(), 41);
    cluster.restart();
    worker.wait(Duration::from_millis(10)).unwrap();
    assert_eq!(worker.complete(&rest.iter().map(|c| done(c, 1.0)).collect::<Vec<_>>()).unwrap(), 41);
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.len(), 81, "nothing lost, nothing twice");
    let attempts = coordinator.attempts().unwrap();
    assert!(attempts.values().all(|(a, s)| *a == 1 && s == "ok"), "{attempts:?}");
}

/// The coordinator reads the rows its workers announce and writes none of them: they stay
/// `done` until its store records them fed (then `taken`). A row made `done` without an
/// announcement is not read, until a lost connection or an announcement without trial ids
/// makes the next take read every done row; a full read never returns a trial twice.
#[test]
fn a_take_reads_what_workers_announce_and_reads_every_done_row_when_announcements_may_be_missing() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "ann");
    let lease = Duration::from_secs(60);
    let mut coordinator = Queue::connect(&target, "ann", lease).unwrap();
    coordinator.listen_done().unwrap();
    coordinator.enqueue(&ids).unwrap();
    assert!(coordinator.take_done().unwrap().is_empty(), "the first take reads every done row: none");
    let mut w = Queue::connect(&target, "ann", lease).unwrap();
    let first = w.claim(10).unwrap();
    assert_eq!(w.complete(&first.iter().map(|c| done(c, 1.0)).collect::<Vec<_>>()).unwrap(), 10);
    assert!(coordinator.wait(Duration::from_secs(10)).unwrap(), "the worker announces its results");
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..10].to_vec());
    let states = coordinator.trials().unwrap();
    assert!(ids[..10].iter().all(|id| states[id].queue.as_deref() == Some("done")), "a take writes no row");

    // Done behind the queue's back: no announcement, so an announced take does not see them.
    let behind = |these: &[u64]| {
        let these: Vec<i64> = these.iter().map(|&id| id as i64).collect();
        target
            .connect()
            .unwrap()
            .execute(
                "UPDATE btopt_trials SET status = 'ok', loss = 3.0, queue = 'done'
                 WHERE study = 'ann' AND trial_id = ANY($1)",
                &[&these],
            )
            .unwrap();
    };
    behind(&ids[10..15]);
    assert!(coordinator.take_done().unwrap().is_empty(), "nothing was announced");
    // A lost connection (the statement commits, its reply is lost): the retry reads every done
    // row, and returns only what it had not returned.
    coordinator.lose_next_reply("take results");
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[10..15].to_vec());
    assert!(taken.iter().all(|c| c.outcome == Outcome::loss(3.0)));
    // An announcement of the study without trial ids (a batch too large to name) does the same.
    behind(&ids[15..17]);
    target.connect().unwrap().execute("SELECT pg_notify('btopt_done', 'ann')", &[]).unwrap();
    assert!(coordinator.wait(Duration::from_secs(10)).unwrap());
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[15..17].to_vec());
    assert!(coordinator.take_done().unwrap().is_empty(), "nothing twice");

    // The coordinator's store records them fed: `taken`, in the same write.
    drop(coordinator);
    let (mut store, _) = reopen(&target, "ann", store::DEFAULT_MAX_ATTEMPTS);
    let fed: Vec<(u64, u64)> = ids[..17].iter().enumerate().map(|(i, &id)| (id, 1000 + i as u64)).collect();
    optimize::TrialStore::record_fed(&mut store, &fed).unwrap();
    let states = Queue::connect(&target, "ann", lease).unwrap().trials().unwrap();
    assert!(ids[..17].iter().all(|id| states[id].queue.as_deref() == Some("taken")), "fed: taken");
    assert!(ids[17..].iter().all(|id| states[id].queue.as_deref() == Some("queued")));

    // A study whose name holds the separator: its bare announcement is still its own.
    let ids = study_with_trials(&target, "a|b");
    let mut coordinator = Queue::connect(&target, "a|b", lease).unwrap();
    coordinator.listen_done().unwrap();
    coordinator.enqueue(&ids).unwrap();
    assert!(coordinator.take_done().unwrap().is_empty());
    let these: Vec<i64> = ids[..3].iter().map(|&id| id as i64).collect();
    let mut c = target.connect().unwrap();
    c.execute(
        "UPDATE btopt_trials SET status = 'ok', loss = 3.0, queue = 'done' WHERE study = 'a|b' AND trial_id = ANY($1)",
        &[&these],
    )
    .unwrap();
    c.execute("SELECT pg_notify('btopt_done', 'a|b')", &[]).unwrap();
    assert!(coordinator.wait(Duration::from_secs(10)).unwrap());
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..3].to_vec());
}

/// A take whose statement commits while its reply is lost (a server restart just then) is
/// retried, and the retry hands over the results the lost reply carried: none is lost, none
/// is taken twice.
#[test]
fn a_take_whose_reply_is_lost_loses_no_result() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "lost");
    let lease = Duration::from_secs(60);
    let mut coordinator = Queue::connect(&target, "lost", lease).unwrap();
    let mut w = Queue::connect(&target, "lost", lease).unwrap();
    coordinator.enqueue(&ids).unwrap();
    let first = w.claim(30).unwrap();
    assert_eq!(w.complete(&first.iter().map(|c| done(c, -1.0)).collect::<Vec<_>>()).unwrap(), 30);
    coordinator.lose_next_reply("take results");
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..30].to_vec());
    // The next take returns only what was completed since.
    let rest = w.claim(100).unwrap();
    assert_eq!(w.complete(&rest.iter().map(|c| done(c, -2.0)).collect::<Vec<_>>()).unwrap(), 51);
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[30..].to_vec());
    assert!(taken.iter().all(|c| c.outcome == Outcome::loss(-2.0)));
    assert!(coordinator.take_done().unwrap().is_empty());
}

#[test]
fn completing_and_claiming_in_one_statement_never_takes_back_what_it_completes() {
    let Some(target) = fresh() else { return };
    let ids = study_with_trials(&target, "chain");
    let mut coordinator = Queue::connect(&target, "chain", Duration::from_secs(60)).unwrap();
    coordinator.listen_done().unwrap();
    coordinator.enqueue(&ids).unwrap();
    // A worker whose lease expires before it completes: nobody has claimed its trials again,
    // so its results still count, and its next claim must not take them back.
    let mut w = Queue::connect(&target, "chain", Duration::from_millis(50)).unwrap();
    assert_eq!(w.queued_left(), None);
    let first = claim_and_expire(&mut w, 10);
    assert_eq!(w.queued_left(), Some(71), "what the claim left queued");
    assert!(!coordinator.wait(Duration::from_millis(300)).unwrap(), "claiming announces no result");
    let (recorded, next) = w.complete_and_claim(&first.iter().map(|c| done(c, 1.0)).collect::<Vec<_>>(), 20).unwrap();
    assert_eq!(recorded, 10);
    assert_eq!(next.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[10..30].to_vec());
    assert!(next.iter().all(|c| c.attempt == 1));
    assert_eq!(w.queued_left(), Some(51));
    assert!(coordinator.wait(Duration::from_secs(10)).unwrap(), "recorded results are announced");
    let taken = coordinator.take_done().unwrap();
    assert_eq!(taken.iter().map(|c| c.trial_id).collect::<Vec<_>>(), ids[..10].to_vec());
    // The rest, with w's second batch, whose lease has expired too; then nothing is left to
    // claim: the reply is the count alone.
    std::thread::sleep(Duration::from_millis(100));
    let mut rest = Queue::connect(&target, "chain", Duration::from_secs(60)).unwrap();
    let all = rest.claim(1000).unwrap();
    assert_eq!(all.len(), 71);
    assert_eq!(rest.queued_left(), Some(0));
    let (recorded, none) = rest.complete_and_claim(&all.iter().map(|c| done(c, 2.0)).collect::<Vec<_>>(), 10).unwrap();
    assert_eq!((recorded, none.len()), (71, 0));
    let attempts = coordinator.attempts().unwrap();
    assert_eq!(attempts.len(), 81);
    assert!(ids[..10].iter().all(|id| attempts[id] == (1, "ok".to_string())));
    assert!(ids[10..30].iter().all(|id| attempts[id] == (2, "ok".to_string())));
    assert!(ids[30..].iter().all(|id| attempts[id] == (1, "ok".to_string())));
}

#[test]
fn a_connection_to_a_current_schema_takes_no_schema_lock_and_an_old_one_is_brought_up_to_date() {
    let Some(target) = fresh() else { return };
    drop(PgStore::connect(&target, None, None).unwrap());
    let mark = |t: &PgTarget| -> Option<String> {
        let row = t.connect().unwrap().query_one("SELECT obj_description('btopt_trials'::regclass, 'pg_class')", &[]);
        row.unwrap().get(0)
    };
    assert_eq!(mark(&target).as_deref(), Some("btopt schema 2"));
    // Another session holds the lock under which the schema is created: a connection that
    // had to take it would wait until that session ends (here: the guard's timeout).
    let mut holder = target.connect().unwrap();
    holder.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(1651797872, 0)").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = target.clone();
    std::thread::spawn(move || tx.send(Queue::connect(&t, "s", Duration::from_secs(60)).map(drop)).unwrap());
    let connected = rx.recv_timeout(Duration::from_secs(60)).expect("the connection does not wait for the lock");
    connected.unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    // A database whose schema predates the mark gets the DDL (idempotent) and the mark.
    target.connect().unwrap().batch_execute("COMMENT ON TABLE btopt_trials IS NULL").unwrap();
    assert_eq!(mark(&target), None);
    drop(PgStore::connect(&target, None, None).unwrap());
    assert_eq!(mark(&target).as_deref(), Some("btopt schema 2"));
}

/// A coordinator refused for another space, or another bundle, writes nothing: a finished
/// study stays finished, without a holder (so `worker --study` still exits 0 on it).
#[test]
fn a_coordinator_refused_for_another_space_or_bundle_leaves_the_study_as_it_was() {
    let Some(target) = fresh() else { return };
    let task = |bundle: &str| store::StudyTask { bundle_hash: bundle.into(), task: serde_json::json!({}) };
    let co = crate::counting_ones(1);
    let space = co.space();
    let identity = |seed: u64| {
        let searcher = optimize::BracketSearch::hyperband(space.clone(), crate::co_settings(1), seed).unwrap();
        optimize::study_identity(&space, &searcher, SearchOptions::default())
    };
    let mut first = PgStore::connect(&target, Some("kept"), Some(task("b1"))).unwrap();
    first.load_study(&identity(1)).unwrap();
    first.finish().unwrap();
    drop(first);
    let before = store::list_studies(&target).unwrap();
    assert_eq!(before[0].state, "finished");
    for (seed, bundle, says) in [(2, "b1", "searcher"), (1, "b2", "runs on bundle b1")] {
        let mut other = PgStore::connect(&target, Some("kept"), Some(task(bundle))).unwrap();
        let e = other.load_study(&identity(seed)).unwrap_err();
        assert!(matches!(e, optimize::Error::StudyMismatch(_)) && e.to_string().contains(says), "{e}");
        drop(other);
        assert_eq!(store::list_studies(&target).unwrap(), before, "refused with {says}");
    }
}
