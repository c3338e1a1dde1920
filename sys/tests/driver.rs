//! The shared driver's deferral of slow actions (`JobIo::defer_slow_actions`), as
//! the smol runtime uses it: a drain on the executor carries out appends and stops
//! at the first sync or metadata write, which `drain_deferred` then carries out with
//! everything after it, in the order the core asked. A real archive in a temporary
//! directory; the job is driven by hand through the core.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use spout_core::event::{ExitStatus, Stream};
use spout_core::fuzzing;
use spout_core::registry::{Inputs, Registry, Reply};
use spout_core::JobId;
use spout_sys::archive::ArchiveDir;
use spout_sys::driver::{JobIo, Shared};

struct Server {
    shared: Arc<Shared>,
    archive: ArchiveDir,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        spout_core::config::parse(r#"{"commands": {"b": {"argv": ["true"]}}}"#).expect("config");
    let archive = ArchiveDir::open(dir.path()).expect("archive");
    let shared = Shared::new(
        Registry::new(config).expect("registry"),
        Some(ArchiveDir::open(dir.path()).expect("archive")),
    );
    Server {
        shared,
        archive,
        _dir: dir,
    }
}

/// Creates a job as `POST /jobs` does.
fn create(shared: &Shared) -> JobId {
    let inputs = Inputs {
        now: Instant::now(),
        wall: SystemTime::now(),
        random: [7; 16],
    };
    let reply = fuzzing::ask(
        &mut shared.lock(),
        "POST",
        "/jobs",
        br#"{"command":"b"}"#,
        inputs,
    );
    let Reply::Spawn { job, .. } = reply else {
        panic!("not created: {reply:?}")
    };
    job
}

fn meta(s: &Server, job: JobId) -> String {
    String::from_utf8(s.archive.read_meta(&job.to_string()).expect("meta")).expect("utf-8")
}

fn events_len(s: &Server, job: JobId) -> usize {
    s.archive
        .read_events(&job.to_string())
        .expect("events")
        .len()
}

#[test]
fn a_deferred_drain_stops_at_the_metadata_and_the_rest_follows_in_order() {
    let s = server();
    let job = create(&s.shared);
    let now = Instant::now();
    let mut io = JobIo::record(&s.shared, job, now);
    assert!(meta(&s, job).contains("starting"), "{}", meta(&s, job));
    io.defer_slow_actions();

    // The spawn asks for the metadata first, then the start event's append: the
    // drain stops at the metadata, and nothing after it runs before it.
    let before = events_len(&s, job);
    let out = io.with_job(&s.shared, now, |j| {
        j.handle_spawned(4242, now, SystemTime::now());
    });
    assert!(!out.finished);
    assert!(io.has_deferred());
    assert!(meta(&s, job).contains("starting"), "{}", meta(&s, job));
    assert_eq!(
        events_len(&s, job),
        before,
        "an append ran before the metadata"
    );
    let rest = io.drain_deferred(&s.shared, now);
    assert!(!rest.finished);
    assert!(!io.has_deferred());
    assert!(meta(&s, job).contains("running"), "{}", meta(&s, job));
    let started = events_len(&s, job);
    assert!(started > before, "the start event was not appended");

    // Output is only appends: nothing is deferred, the event is on disk at once.
    let out = io.output(&s.shared, Stream::Stdout, b"one\n", now);
    assert!(!out.finished);
    assert!(!io.has_deferred());
    assert!(events_len(&s, job) > started, "the output was not appended");

    // The exit's final metadata, sync and end are deferred together, in order.
    let out = io.with_job(&s.shared, now, |j| {
        j.handle_eof(Stream::Stdout, now);
        j.handle_eof(Stream::Stderr, now);
        j.handle_exit(
            ExitStatus {
                code: Some(0),
                signal: None,
            },
            now,
        );
    });
    assert!(!out.finished, "finished before its metadata was saved");
    assert!(io.has_deferred());
    let rest = io.drain_deferred(&s.shared, now);
    assert!(rest.finished);
    assert!(!io.has_deferred());
    assert!(meta(&s, job).contains("exited"), "{}", meta(&s, job));
}

#[test]
fn without_deferral_a_drain_carries_out_everything() {
    let s = server();
    let job = create(&s.shared);
    let now = Instant::now();
    let mut io = JobIo::record(&s.shared, job, now);
    let _ = io.with_job(&s.shared, now, |j| {
        j.handle_spawned(4242, now, SystemTime::now());
    });
    assert!(!io.has_deferred());
    assert!(meta(&s, job).contains("running"), "{}", meta(&s, job));
}
