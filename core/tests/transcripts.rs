//! Whole wire transcripts of SPEC.md's examples, snapshotted with insta: what a
//! client reads, byte for byte, for each kind of job and subscription.

use spout_core::event::Stream;
use spout_core::fuzzing::{ms, Sim};
use spout_core::job::JobSettings;
use spout_core::subscriber::{Next, Refusal, SubscribeParams};
use std::time::Duration;

#[allow(clippy::disallowed_methods)] // the one clock read: the simulation's t0
fn t0() -> std::time::Instant {
    std::time::Instant::now()
}

fn short_job() -> Sim {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    s.out(Stream::Stdout, b"compiling foo\ncompiling bar\n");
    s.advance(ms(10));
    s.out(Stream::Stderr, b"warning: unused variable `x`\n");
    s.advance(ms(5220));
    s.exit(Some(0), None);
    s
}

#[test]
fn short_job_transcript() {
    let s = short_job();
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    let (wire, next) = s.read(&mut sub);
    assert_eq!(next, Next::End);
    insta::assert_snapshot!(wire);
}

#[test]
fn live_subscriber_sees_same_bytes_as_late_one() {
    let mut s = Sim::new(JobSettings::default(), t0());
    let mut live = s.subscribe(SubscribeParams::default()).unwrap();
    let mut got = String::new();
    s.spawn();
    got += &s.read(&mut live).0;
    s.out(Stream::Stdout, b"compiling foo\ncompiling bar\n");
    got += &s.read(&mut live).0;
    s.advance(ms(10));
    s.out(Stream::Stderr, b"warning: unused variable `x`\n");
    got += &s.read(&mut live).0;
    s.advance(ms(5220));
    s.exit(Some(0), None);
    let (rest, next) = s.read(&mut live);
    got += &rest;
    assert_eq!(next, Next::End);
    let mut late = s.subscribe(SubscribeParams::default()).unwrap();
    assert_eq!(got, s.read(&mut late).0);
}

#[test]
fn carriage_return_progress_transcript() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    for pct in [10, 50, 100] {
        s.out(
            Stream::Stdout,
            format!("\r[{:<10}] {pct}%", "#".repeat(pct / 10)).as_bytes(),
        );
        s.advance(ms(60));
    }
    s.out(Stream::Stdout, b"\ndone\n");
    s.exit(Some(0), None);
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn split_utf8_and_invalid_bytes_transcript() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    let text = "naïve 日本語 🎉\n".as_bytes();
    for chunk in text.chunks(1) {
        s.out(Stream::Stdout, chunk);
    }
    s.out(Stream::Stdout, b"bad \xff\xfe bytes \xe6\x97\n");
    s.exit(Some(0), None);
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn stderr_interleaving_transcript() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    s.out(Stream::Stdout, b"step 1\n");
    s.out(Stream::Stderr, b"warn 1\n");
    s.out(Stream::Stdout, b"step 2\n");
    s.out(Stream::Stderr, b"error: failed\n");
    s.exit(Some(2), None);
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn resume_from_id_transcript() {
    let s = short_job();
    let mut sub = s
        .subscribe(SubscribeParams {
            last_event_id: Some("2"),
            ..Default::default()
        })
        .unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn no_content_after_final_event() {
    let s = short_job();
    let last = s.job.log().last_visible().to_string();
    let got = s.subscribe(SubscribeParams {
        last_event_id: Some(&last),
        ..Default::default()
    });
    assert_eq!(got.unwrap_err(), Refusal::NoContent);
}

#[test]
fn bad_last_event_ids_are_400() {
    let s = short_job();
    for bad in ["abc", "-1", "", "99", "1.5"] {
        let got = s.subscribe(SubscribeParams {
            last_event_id: Some(bad),
            ..Default::default()
        });
        assert!(
            matches!(got, Err(Refusal::BadRequest(_))),
            "{bad:?}: {got:?}"
        );
    }
    insta::assert_snapshot!(
        "beyond_last_message",
        s.subscribe(SubscribeParams {
            last_event_id: Some("99"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    );
}

#[test]
fn gap_in_memory_mode_transcript() {
    // A tiny window: early events are lost, and a gap says which.
    let mut s = Sim::memory(200, t0());
    s.spawn();
    for i in 1..=6 {
        s.out(Stream::Stdout, format!("line {i}\n").as_bytes());
    }
    s.exit(Some(0), None);
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn tail_transcript() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    for i in 1..=10 {
        s.out(Stream::Stdout, format!("line {i}\n").as_bytes());
    }
    let mut sub = s
        .subscribe(SubscribeParams {
            tail: Some("3"),
            ..Default::default()
        })
        .unwrap();
    insta::assert_snapshot!(s.read(&mut sub).0);
}

#[test]
fn heartbeat_transcript() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    let (first, next) = s.read(&mut sub);
    assert_eq!(next, Next::Wait(Some(s.now + Duration::from_secs(15))));
    s.advance(Duration::from_secs(15));
    let (beat, _) = s.read(&mut sub);
    let mut ev = s
        .subscribe(SubscribeParams {
            heartbeat_event: Some(true),
            ..Default::default()
        })
        .unwrap();
    let _ = s.read(&mut ev);
    s.advance(Duration::from_secs(15));
    let (beat_event, _) = s.read(&mut ev);
    insta::assert_snapshot!(format!("{first}---\n{beat}---\n{beat_event}"));
}
