//! Resume properties: from any `Last-Event-ID`, a subscriber gets exactly the rest
//! of the log, in order, once — from memory, from the archive, or with a `gap`
//! naming what memory-only mode lost.

use spout_core::event::Stream;
use spout_core::fuzzing::Sim;
use spout_core::job::JobSettings;
use spout_core::sse::{Decoder, Item};
use spout_core::subscriber::{LogEdges, Next, SubscribeParams};

#[allow(clippy::disallowed_methods)] // the one clock read: the simulation's t0
fn t0() -> std::time::Instant {
    std::time::Instant::now()
}

/// (id, type, data) of each event in a wire transcript.
fn parse(wire: &str) -> Vec<(u64, String, String)> {
    let mut d = Decoder::new();
    d.feed(wire.as_bytes());
    std::iter::from_fn(|| d.poll())
        .filter_map(|i| match i {
            Item::Event(e) => Some((e.last_event_id.parse().unwrap(), e.event_type, e.data)),
            _ => None,
        })
        .collect()
}

fn busy_job(settings: JobSettings, lines: usize) -> Sim {
    let mut s = Sim::new(settings, t0());
    s.spawn();
    for i in 0..lines {
        // Each line on its own event: alternate streams so nothing merges.
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        s.out(
            stream,
            format!("line {i:04} {}\n", "x".repeat(i % 50)).as_bytes(),
        );
    }
    s.exit(Some(0), None);
    s
}

#[test]
fn archive_mode_resume_from_every_id_gives_exactly_the_rest() {
    // A window far smaller than the log: most resumes read the archive.
    let s = busy_job(
        JobSettings {
            window_bytes: 2_000,
            ..JobSettings::default()
        },
        400,
    );
    let last = s.job.log().last_visible();
    assert!(
        s.job.log().window_first() > 100,
        "the window must have moved"
    );
    let mut full = s.subscribe(SubscribeParams::default()).unwrap();
    let (wire, next) = s.read(&mut full);
    assert_eq!(next, Next::End);
    let all = parse(&wire);
    assert_eq!(all.len() as u64, last);
    for from in 0..last {
        let text = from.to_string();
        let mut sub = s
            .subscribe(SubscribeParams {
                last_event_id: Some(&text),
                ..Default::default()
            })
            .unwrap();
        let (wire, next) = s.read(&mut sub);
        assert_eq!(next, Next::End, "from {from}");
        let got = parse(&wire);
        assert_eq!(got[..], all[from as usize..], "resume from {from}");
    }
}

#[test]
fn memory_mode_never_loses_silently() {
    let s = busy_job(
        JobSettings {
            persistence: spout_core::log::Persistence::Memory,
            window_bytes: 3_000,
            ..JobSettings::default()
        },
        300,
    );
    let last = s.job.log().last_visible();
    for from in 0..last {
        let text = from.to_string();
        let mut sub = s
            .subscribe(SubscribeParams {
                last_event_id: Some(&text),
                ..Default::default()
            })
            .unwrap();
        let (wire, _) = s.read(&mut sub);
        // Every id after `from` is covered exactly once: by its event, or by a gap.
        let mut expect = from + 1;
        for (id, kind, data) in parse(&wire) {
            if kind == "gap" {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap();
                assert_eq!(v["from"], expect, "gap starts where the client is");
                assert_eq!(v["to"], id, "gap carries id = to");
                expect = id + 1;
            } else {
                assert_eq!(id, expect, "from {from}");
                expect += 1;
            }
        }
        assert_eq!(expect, last + 1, "from {from}: reached the end");
    }
}

#[test]
fn slow_subscriber_costs_no_copy_of_the_log() {
    // A subscriber that never reads holds a cursor; the job's window stays bounded.
    let mut s = Sim::new(
        JobSettings {
            window_bytes: 10_000,
            ..JobSettings::default()
        },
        t0(),
    );
    let _idle = s.subscribe(SubscribeParams::default()).unwrap();
    s.spawn();
    for i in 0..10_000 {
        s.out(Stream::Stdout, format!("{i}\n").as_bytes());
    }
    assert!(s.job.log().window_bytes() <= 10_000 + 200);
}

#[test]
fn archive_reads_ignore_what_the_caller_buffer_already_holds() {
    // Found by the log_ops fuzzer: a caller buffer already past the transmit budget
    // made handle_archive send nothing and fall back to a gap.
    let s = busy_job(
        JobSettings {
            window_bytes: 2_000,
            ..JobSettings::default()
        },
        400,
    );
    let mut sub = s
        .subscribe(SubscribeParams {
            last_event_id: Some("0"),
            ..Default::default()
        })
        .unwrap();
    let mut buf = vec![b'x'; 100 * 1024];
    let before = buf.len();
    loop {
        match sub.poll_transmit(s.job.log(), s.now, &mut buf) {
            Next::ReadArchive { offset, first, len } => {
                let start = offset as usize;
                let end = (start + len).min(s.archive.len());
                sub.handle_archive(s.job.log(), offset, first, &s.archive[start..end], &mut buf);
            }
            Next::Wrote => continue,
            other => {
                assert_eq!(other, Next::End);
                break;
            }
        }
    }
    let wire = String::from_utf8(buf[before..].to_vec()).unwrap();
    let got = parse(&wire);
    assert!(
        got.iter().all(|(_, kind, _)| kind != "gap"),
        "no gap in archive mode"
    );
    assert_eq!(got.len() as u64, s.job.log().last_visible());
}

#[test]
fn archive_scans_with_edges_read_before_the_job_moved_on_lose_nothing() {
    // A runtime reads the log's edges under the job's lock and scans the archive
    // without it (`handle_archive_at`), while the job appends. Where the archive
    // cannot supply the ids (a short read here), the gap ends at the older edges
    // and the next polls cover the rest: every id once, in order, by its event or
    // by a gap.
    let mut s = Sim::new(
        JobSettings {
            window_bytes: 2_000,
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    let mut line = 0;
    let mut out = |s: &mut Sim, n: usize| {
        for _ in 0..n {
            let stream = if line % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            s.out(
                stream,
                format!("line {line:04} {}\n", "x".repeat(line % 50)).as_bytes(),
            );
            line += 1;
        }
    };
    out(&mut s, 200);
    let mut sub = s
        .subscribe(SubscribeParams {
            last_event_id: Some("0"),
            ..Default::default()
        })
        .unwrap();
    let (mut wire, mut stale, mut exited) = (Vec::new(), 0, false);
    loop {
        let mut buf = Vec::new();
        match sub.poll_transmit(s.job.log(), s.now, &mut buf) {
            Next::ReadArchive { offset, first, .. } => {
                let edges = LogEdges::of(s.job.log());
                if stale < 5 {
                    out(&mut s, 20);
                    assert_ne!(edges, LogEdges::of(s.job.log()), "the job moved on");
                    stale += 1;
                }
                sub.handle_archive_at(edges, offset, first, b"", &mut buf);
            }
            Next::Wrote => {}
            Next::Wait(_) if !exited => {
                s.exit(Some(0), None);
                exited = true;
            }
            Next::End => break,
            other => panic!("unexpected {other:?}"),
        }
        wire.extend_from_slice(&buf);
    }
    assert_eq!(stale, 5, "every round scanned with stale edges");
    let last = s.job.log().last_visible();
    let mut expect = 1;
    for (id, kind, data) in parse(&String::from_utf8(wire).unwrap()) {
        if kind == "gap" {
            let v: serde_json::Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["from"], expect, "gap starts where the client is");
            assert_eq!(v["to"], id, "gap carries id = to");
        } else {
            assert_eq!(id, expect, "in order, once");
        }
        expect = id + 1;
    }
    assert_eq!(expect, last + 1, "reached the end");
}
