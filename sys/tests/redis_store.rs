//! `redis_store` against a real `redis-server` (Debian package `redis-server`),
//! started per test on a unix socket in a temporary directory and stopped by its
//! PID. In CI (`CI` set) a missing redis-server fails the test; elsewhere it is
//! skipped with a SKIP line.
#![cfg(feature = "redis")]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spout_core::cluster::{
    self, CommandTable, EndAttempt, JobKeys, JobRecord, LeaseSeen, RenewOutcome, ServerId,
    StreamEntry,
};
use spout_core::config::CommandSpec;
use spout_core::{Cursor, EventId, JobId};
use spout_sys::redis_store::{Appended, RedisStore, StoreError};

mod common;
use common::{redis, Redis};

fn store(redis: &Redis) -> RedisStore {
    RedisStore::connect(&redis.url, Duration::from_secs(5)).expect("connect")
}

fn id(n: u64) -> EventId {
    EventId::new(n).unwrap()
}

fn out(n: u64) -> StreamEntry {
    StreamEntry {
        id: id(n),
        kind: "stdout".into(),
        data: format!(r#"{{"text":"line {n}\n"}}"#),
    }
}

fn job(seed: u8) -> (JobId, JobKeys) {
    let job = JobId::from_random([seed; 16]);
    (job, JobKeys::new(&job))
}

fn ids(entries: &[StreamEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id.get()).collect()
}

#[test]
fn explicit_ids_append_in_order_and_a_duplicate_is_refused() {
    let Some(redis) = redis() else { return };
    let mut s = store(&redis);
    let (_, keys) = job(1);
    let batch: Vec<StreamEntry> = (1..=3).map(out).collect();
    assert_eq!(s.append(&keys, &batch, None).unwrap(), Appended::All);
    assert_eq!(
        ids(&s.read_after(&keys, Cursor(0), 100).unwrap()),
        [1, 2, 3]
    );
    // The same id again, or an older one, or a batch starting at one: nothing added.
    assert_eq!(s.append(&keys, &[out(3)], None).unwrap(), Appended::IdTaken);
    assert_eq!(s.append(&keys, &[out(2)], None).unwrap(), Appended::IdTaken);
    assert_eq!(
        s.append(&keys, &[out(3), out(4)], None).unwrap(),
        Appended::IdTaken
    );
    assert_eq!(
        ids(&s.read_after(&keys, Cursor(0), 100).unwrap()),
        [1, 2, 3]
    );
    assert_eq!(s.append(&keys, &[out(4)], None).unwrap(), Appended::All);
    let all = s.read_after(&keys, Cursor(0), 100).unwrap();
    assert_eq!(
        all,
        (1..=4).map(out).collect::<Vec<_>>(),
        "entries round-trip exactly"
    );
    let last = s.last_entry(&keys).unwrap().unwrap();
    assert_eq!(last.id, id(4));
    assert_eq!(s.last_entry(&job(2).1).unwrap(), None);
}

#[test]
fn two_writers_racing_for_the_next_id_one_wins() {
    let Some(redis) = redis() else { return };
    let (_, keys) = job(3);
    let mut seed = store(&redis);
    assert_eq!(
        seed.append(&keys, &[out(1), out(2)], None).unwrap(),
        Appended::All
    );
    let record = JobRecord {
        owner: "gone".into(),
        command: "build".into(),
        started_at_ms: 0,
        start: "{}".into(),
        last_id: 2,
        stdout_bytes: 0,
        stderr_bytes: 0,
    };
    // Twenty rounds of two servers, each on its own thread and connection, both
    // ending the lost job at the same moment.
    for round in 0..20 {
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<Appended> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (keys, record, barrier) = (&keys, &record, &barrier);
                    let mut s = store(&redis);
                    scope.spawn(move || {
                        let last = s.last_entry(keys).unwrap();
                        let EndAttempt::Append(exit) =
                            cluster::end_lost_job(last.as_ref(), record, 1)
                        else {
                            panic!("not ended yet")
                        };
                        barrier.wait();
                        s.append(keys, &[exit], None).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| **r == Appended::All).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let all = seed.read_after(&keys, Cursor(0), 100).unwrap();
        assert_eq!(ids(&all), [1, 2, 3], "round {round}");
        assert!(all[2].is_final() && all[2].data.contains("server_lost"));
        // The loser, reading again, is done.
        let last = seed.last_entry(&keys).unwrap();
        assert_eq!(
            cluster::end_lost_job(last.as_ref(), &record, 2),
            EndAttempt::Done
        );
        // Reset for the next round: a new stream for the same job.
        let _: () = redis::cmd("DEL")
            .arg(&keys.events)
            .query(&mut raw(&redis))
            .unwrap();
        assert_eq!(
            seed.append(&keys, &[out(1), out(2)], None).unwrap(),
            Appended::All
        );
    }
}

fn raw(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url.to_string())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn lease_expires_and_is_taken_over() {
    let Some(redis) = redis() else { return };
    let mut a = store(&redis);
    let mut b = store(&redis);
    let (_, keys) = job(4);
    let (server_a, server_b) = (
        ServerId::from_random([0xa; 12]),
        ServerId::from_random([0xb; 12]),
    );
    let ttl = Duration::from_millis(200);
    assert_eq!(b.check_lease(&keys).unwrap(), LeaseSeen::Absent);
    assert!(a.acquire_lease(&keys, &server_a, ttl).unwrap());
    assert!(
        !b.acquire_lease(&keys, &server_b, ttl).unwrap(),
        "held by a"
    );
    assert_eq!(b.check_lease(&keys).unwrap(), LeaseSeen::Held);
    assert_eq!(a.renew_lease(&keys, &server_a, ttl), RenewOutcome::Renewed);
    assert_eq!(
        b.renew_lease(&keys, &server_b, ttl),
        RenewOutcome::HeldByOther
    );
    // a stops renewing: the key expires on Redis's clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.check_lease(&keys).unwrap() == LeaseSeen::Held {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(b
        .acquire_lease(&keys, &server_b, Duration::from_secs(10))
        .unwrap());
    assert_eq!(
        a.renew_lease(&keys, &server_a, ttl),
        RenewOutcome::HeldByOther
    );
    assert_eq!(b.renew_lease(&keys, &server_b, ttl), RenewOutcome::Renewed);
}

#[test]
fn renewal_reacquires_an_expired_lease_and_reports_unreachable() {
    let Some(redis) = redis() else { return };
    let mut a = store(&redis);
    let (_, keys) = job(5);
    let server = ServerId::from_random([1; 12]);
    assert_eq!(
        a.renew_lease(&keys, &server, Duration::from_secs(5)),
        RenewOutcome::Renewed
    );
    assert_eq!(a.check_lease(&keys).unwrap(), LeaseSeen::Held);
    drop(redis);
    assert_eq!(
        a.renew_lease(&keys, &server, Duration::from_secs(5)),
        RenewOutcome::Unreachable
    );
    assert!(matches!(
        a.check_lease(&keys),
        Err(StoreError::Unreachable(_))
    ));
}

fn commands(argv: &[(&str, &[&str])]) -> CommandTable {
    let map: BTreeMap<String, CommandSpec> = argv
        .iter()
        .map(|(name, argv)| {
            let spec = CommandSpec::new(name, argv.iter().map(|s| (*s).to_owned()).collect());
            ((*name).to_owned(), spec)
        })
        .collect();
    CommandTable::new(&map)
}

#[test]
fn digest_mismatch_is_refused_with_the_difference_named() {
    let Some(redis) = redis() else { return };
    let first = commands(&[("build", &["make"])]);
    store(&redis)
        .check_commands(&first)
        .expect("the first server publishes");
    store(&redis)
        .check_commands(&first)
        .expect("a second with the same table starts");
    let other = commands(&[("build", &["make", "-j2"]), ("lint", &["clippy"])]);
    let err = store(&redis).check_commands(&other).unwrap_err();
    let StoreError::Mismatch(mismatch) = &err else {
        panic!("{err}")
    };
    assert_eq!(mismatch.theirs, first.digest());
    let text = err.to_string();
    assert!(
        text.contains(r#"command "build": argv is ["make","-j2"] here but ["make"] in Redis"#),
        "{text}"
    );
    assert!(
        text.contains(r#"command "lint" is declared here but not in Redis"#),
        "{text}"
    );
}

#[test]
fn range_and_blocking_reads_after_an_id() {
    let Some(redis) = redis() else { return };
    let mut s = store(&redis);
    let (_, keys) = job(6);
    let batch: Vec<StreamEntry> = (1..=10).map(out).collect();
    assert_eq!(s.append(&keys, &batch, None).unwrap(), Appended::All);
    assert_eq!(
        ids(&s.read_after(&keys, Cursor(4), 100).unwrap()),
        [5, 6, 7, 8, 9, 10]
    );
    assert_eq!(ids(&s.read_after(&keys, Cursor(4), 2).unwrap()), [5, 6]);
    assert!(s.read_after(&keys, Cursor(10), 100).unwrap().is_empty());
    assert_eq!(
        ids(&s
            .read_blocking(&keys, Cursor(8), 100, Duration::from_millis(50))
            .unwrap()),
        [9, 10]
    );
    assert!(s
        .read_blocking(&keys, Cursor(10), 100, Duration::from_millis(50))
        .unwrap()
        .is_empty());
    // A blocking read wakes for an append from another connection.
    let got = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut r = store(&redis);
            r.read_blocking(&keys, Cursor(10), 100, Duration::from_secs(10))
                .unwrap()
        });
        // Appending before the reader blocks is fine too: it reads after 10 either way.
        s.append(&keys, &[out(11)], None).unwrap();
        reader.join().unwrap()
    });
    assert_eq!(ids(&got), [11]);
}

#[test]
fn trim_then_a_read_before_the_trimmed_range_reports_the_gap() {
    let Some(redis) = redis() else { return };
    let mut s = store(&redis);
    let (job_id, keys) = job(7);
    let batch: Vec<StreamEntry> = (1..=10).map(out).collect();
    s.append(&keys, &batch, None).unwrap();
    let cap = 4;
    let floor = cluster::trim_floor(id(10), cap).unwrap();
    s.trim(&keys, floor).unwrap();
    let got = s.read_after(&keys, Cursor(2), 100).unwrap();
    assert_eq!(ids(&got), [7, 8, 9, 10]);
    assert_eq!(
        cluster::read_gap(Cursor(2), got[0].id),
        Some((id(3), id(6)))
    );
    let got = s.read_after(&keys, Cursor(7), 100).unwrap();
    assert_eq!(cluster::read_gap(Cursor(7), got[0].id), None);
    // Appends trim as they go (approximately, whole nodes: at least the cap stays).
    let more: Vec<StreamEntry> = (11..=400).map(out).collect();
    s.append(&keys, &more, cluster::trim_floor(id(400), 300))
        .unwrap();
    let left = s.read_after(&keys, Cursor(0), 1000).unwrap();
    assert!(
        left.len() >= 300 && left.last().unwrap().id == id(400),
        "{}",
        left.len()
    );
    // The record keeps the last id the append wrote, next to the rest.
    let record = JobRecord {
        owner: "a".into(),
        command: "build".into(),
        started_at_ms: 5,
        start: "{}".into(),
        last_id: 0,
        stdout_bytes: 1,
        stderr_bytes: 2,
    };
    s.put_record(&job_id, &keys, &record).unwrap();
    s.append(&keys, &[out(401)], None).unwrap();
    let got = s.get_record(&keys).unwrap().unwrap();
    assert_eq!(
        got,
        JobRecord {
            last_id: 401,
            ..record
        }
    );
    assert_eq!(s.get_record(&job(8).1).unwrap(), None);
}
