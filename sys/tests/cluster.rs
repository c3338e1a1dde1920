//! The cluster driver (`spout_sys::cluster`) against a real `redis-server`, two
//! "servers" in one process (two registries, each with its own `Cluster`), the jobs
//! driven by hand through the core: a follower's log equals the owner's byte for
//! byte, a stop travels to the owner, a lost owner's job ends with `server_lost`,
//! and Redis down at start is a `503` on `/healthz`. The same redis-server harness
//! as `redis_store.rs` (skipped outside CI when redis-server is missing).
#![cfg(feature = "redis")]
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use spout_core::cluster::RedisUrl;
use spout_core::event::{ExitStatus, Stream};
use spout_core::fuzzing;
use spout_core::job::State;
use spout_core::registry::{Inputs, Registry, Reply};
use spout_core::JobId;
use spout_sys::cluster::Cluster;
use spout_sys::driver::{JobIo, Shared};

mod common;
use common::redis;

/// One "server": a memory-only registry and its cluster member.
struct Server {
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cluster.stop();
    }
}

fn server(url: &RedisUrl) -> Server {
    let mut config = spout_core::config::parse(&format!(
        r#"{{"commands": {{"b": {{"argv": ["true"]}}}}, "redis": "{url}", "redis_lease_ttl_ms": 600}}"#
    ))
    .expect("config");
    config.memory = true;
    let shared = Shared::new(Registry::new(config).expect("registry"), None);
    let cluster = Cluster::start(&shared, Box::new(|_| {}))
        .expect("joins")
        .expect("cluster mode");
    Server { shared, cluster }
}

fn inputs(seed: u8) -> Inputs {
    Inputs {
        now: Instant::now(),
        wall: SystemTime::now(),
        random: [seed; 16],
    }
}

fn ask(shared: &Shared, method: &str, target: &str, body: &[u8], seed: u8) -> Reply {
    fuzzing::ask(&mut shared.lock(), method, target, body, inputs(seed))
}

/// Creates a job on `owner` as `POST /jobs` does, its lease and record in Redis.
fn start_job(owner: &Server, seed: u8) -> (JobId, JobIo) {
    let Reply::Spawn { job, .. } = ask(&owner.shared, "POST", "/jobs", br#"{"command":"b"}"#, seed)
    else {
        panic!("not created")
    };
    owner.cluster.own(job);
    let mut io = JobIo::without_files(job);
    let now = Instant::now();
    let _ = io.with_job(&owner.shared, now, |j| {
        j.handle_spawned(4242, now, SystemTime::now());
    });
    (job, io)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every visible event of `job`'s log on `shared`, as wire bytes.
fn wires(shared: &Shared, job: JobId) -> Vec<Vec<u8>> {
    let Some(slot) = shared.slot(job) else {
        return Vec::new();
    };
    let job = slot.lock();
    let log = job.log();
    (1..=log.last_visible())
        .map(|n| log.get(n).unwrap_or_default().to_vec())
        .collect()
}

#[test]
fn a_follower_serves_the_owners_events_byte_for_byte_and_its_end() {
    let Some(redis) = redis() else { return };
    let (a, b) = (server(&redis.url), server(&redis.url));
    let (job, mut io) = start_job(&a, 1);
    let now = Instant::now();
    let _ = io.with_job(&a.shared, now, |j| {
        j.handle_output(Stream::Stdout, b"one\ntwo\n", now);
    });
    assert!(b.cluster.follow(job), "b finds a's job in redis");
    assert!(b.shared.lock().is_remote(job));
    // Later output reaches b through its one reader.
    let _ = io.with_job(&a.shared, now, |j| {
        j.handle_output(Stream::Stderr, b"three\n", now);
        j.handle_exit(
            ExitStatus {
                code: Some(3),
                signal: None,
            },
            now,
        );
        j.handle_eof(Stream::Stdout, now);
        j.handle_eof(Stream::Stderr, now);
    });
    let owner = wires(&a.shared, job);
    assert_eq!(owner.len(), 4, "start, stdout, stderr, exit");
    wait_until("b has the exit", || {
        b.shared
            .slot(job)
            .is_some_and(|s| s.lock().log().is_complete())
    });
    assert_eq!(wires(&b.shared, job), owner, "same ids, same bytes");
    let status = b.shared.slot(job).unwrap().lock().status();
    assert_eq!(status.state, "exited");
    assert_eq!(status.exit.unwrap().code, Some(3));
    // The list of either server holds the job once.
    b.cluster.refresh_index();
    let Reply::Full(list) = ask(&b.shared, "GET", "/jobs", b"", 9) else {
        panic!()
    };
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let listed: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] == job.to_string())
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
}

#[test]
fn a_stop_on_a_follower_reaches_the_owner() {
    let Some(redis) = redis() else { return };
    let (a, b) = (server(&redis.url), server(&redis.url));
    let (job, _io) = start_job(&a, 2);
    assert!(b.cluster.follow(job));
    let reply = ask(&b.shared, "DELETE", &format!("/jobs/{job}"), b"", 3);
    assert_eq!(reply.status(), 202);
    assert!(b.cluster.forward_stop(job));
    wait_until("the owner stops the job", || {
        a.shared.slot(job).unwrap().lock().state() == State::Stopping
    });
}

#[test]
fn a_lost_owners_job_ends_with_server_lost_everywhere() {
    let Some(redis) = redis() else { return };
    let (a, b) = (server(&redis.url), server(&redis.url));
    let (job, mut io) = start_job(&a, 4);
    let now = Instant::now();
    let _ = io.with_job(&a.shared, now, |j| {
        j.handle_output(Stream::Stdout, b"before the crash\n", now);
    });
    assert!(b.cluster.follow(job));
    wait_until("b has the line", || {
        b.shared
            .slot(job)
            .is_some_and(|s| s.lock().log().last_visible() >= 2)
    });
    // The owner stops renewing (as if killed): its lease lapses.
    a.cluster.stop();
    wait_until("b ends the job", || {
        b.shared
            .slot(job)
            .is_some_and(|s| s.lock().log().is_complete())
    });
    let status = b.shared.slot(job).unwrap().lock().status();
    assert_eq!(status.state, "lost");
    assert_eq!(status.exit.unwrap().reason.as_deref(), Some("server_lost"));
    assert_eq!(status.last_event_id, 3, "the exit follows the last event");
}

#[test]
fn redis_down_at_start_is_one_log_line_and_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let url = RedisUrl::parse(&format!(
        "redis+unix://{}",
        dir.path().join("none.sock").display()
    ))
    .unwrap();
    let s = server(&url);
    let Reply::Full(health) = ask(&s.shared, "GET", "/healthz", b"", 5) else {
        panic!()
    };
    assert_eq!(health.head.status, 503);
    assert!(
        String::from_utf8_lossy(&health.body).starts_with("redis unreachable: "),
        "{:?}",
        String::from_utf8_lossy(&health.body)
    );
    let post = ask(&s.shared, "POST", "/jobs", br#"{"command":"b"}"#, 6);
    assert_eq!(post.status(), 503);
}

#[test]
fn different_commands_refuse_to_join() {
    let Some(redis) = redis() else { return };
    let _a = server(&redis.url);
    let mut config = spout_core::config::parse(&format!(
        r#"{{"commands": {{"b": {{"argv": ["false"]}}}}, "redis": "{}"}}"#,
        redis.url
    ))
    .unwrap();
    config.memory = true;
    let shared = Shared::new(Registry::new(config).unwrap(), None);
    let err = Cluster::start(&shared, Box::new(|_| {})).unwrap_err();
    assert!(err.to_string().contains("argv"), "{err}");
}

#[test]
fn events_that_left_the_window_are_pushed_from_the_archive() {
    let Some(redis) = redis() else { return };
    let data = tempfile::tempdir().unwrap();
    let config = spout_core::config::parse(&format!(
        r#"{{"commands": {{"b": {{"argv": ["true"]}}}}, "redis": "{}",
            "limits": {{"memory_window_bytes": 1024}}, "sse": {{"max_event_bytes": 1024}}}}"#,
        redis.url
    ))
    .unwrap();
    let archive = spout_sys::archive::ArchiveDir::open(data.path()).unwrap();
    let shared = Shared::new(Registry::new(config).unwrap(), Some(archive));
    let a = Server {
        cluster: Cluster::start(&shared, Box::new(|_| {})).unwrap().unwrap(),
        shared,
    };
    let b = server(&redis.url);
    let Reply::Spawn { job, .. } = ask(&a.shared, "POST", "/jobs", br#"{"command":"b"}"#, 7) else {
        panic!("not created")
    };
    let now = Instant::now();
    let mut io = JobIo::record(&a.shared, job, now);
    let _ = io.with_job(&a.shared, now, |j| {
        j.handle_spawned(4242, now, SystemTime::now());
    });
    // 200 events of ~60 bytes: most have left the 1 KiB window before the
    // pusher starts (as after a long outage).
    for n in 0..200 {
        let line = format!("line {n:03} ........................................\n");
        let _ = io.output(&a.shared, Stream::Stdout, line.as_bytes(), now);
    }
    assert!(a.shared.slot(job).unwrap().lock().log().window_first() > 100);
    a.cluster.own(job);
    assert!(b.cluster.follow(job));
    wait_until("b has every event", || {
        b.shared
            .slot(job)
            .is_some_and(|s| s.lock().log().last_visible() >= 201)
    });
    let slot = b.shared.slot(job).unwrap();
    let remote = slot.lock();
    // b's window is the default 1 MiB: every event is still there, none lost.
    for n in 2..=201 {
        let Some(wire) = remote.log().get(n) else {
            panic!("{n} missing; window from {}", remote.log().window_first())
        };
        let wire = String::from_utf8_lossy(wire).into_owned();
        assert!(wire.contains(&format!("line {:03}", n - 2)), "{n}: {wire}");
    }
}
