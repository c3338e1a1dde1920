//! The live job list (`GET /jobs` as an event stream): which requests get it, the
//! wire transcript of a job's life as list events (insta), and the resume property:
//! from any id, a stream gives exactly the later changes or a snapshot.

use spout_core::config;
use spout_core::event::{ExitStatus, Stream};
use spout_core::feed::{ChangeKind, Feed, ListSubscriber, Resume, SnapshotReason};
use spout_core::http::{self, Admission, Request};
use spout_core::job::{Action, Job};
use spout_core::registry::{Inputs, Registry, Reply};
use spout_core::sse::{Decoder, Item};
use spout_core::subscriber::{Next, StreamSettings};
use spout_core::JobId;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[allow(clippy::disallowed_methods)] // the one clock read: simulated time zero
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn inputs(now: Instant, n: u8) -> Inputs {
    Inputs {
        now,
        wall: UNIX_EPOCH + Duration::from_secs(1_795_341_600),
        random: [n; 16],
    }
}

const CONFIG: &str = r#"{
  "commands": {"build": {"argv": ["make"]}},
  "limits": {"max_retained_jobs": 2, "max_subscribers": 2}
}"#;

fn registry() -> Registry {
    Registry::new(config::parse(CONFIG).unwrap()).unwrap()
}

/// One request through admit + handle.
fn request(reg: &mut Registry, method: &str, target: &str, headers: &[(&str, &[u8])]) -> Reply {
    request_at(reg, method, target, headers, b"", inputs(t0(), 7))
}

fn request_at(
    reg: &mut Registry,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    inp: Inputs,
) -> Reply {
    let req = Request {
        method,
        target,
        headers,
    };
    match reg.admit(&req, 0) {
        Admission::Respond(r) => Reply::Full(r),
        Admission::Handle(admitted) => reg.handle(&req, admitted, body, inp),
    }
}

const SSE: &[(&str, &[u8])] = &[("Accept", b"text/event-stream")];

fn open_list(reg: &mut Registry, last_id: Option<&str>) -> ListSubscriber {
    let mut headers = SSE.to_vec();
    if let Some(id) = last_id {
        headers.push(("Last-Event-ID", id.as_bytes()));
    }
    match request(reg, "GET", "/jobs", &headers) {
        Reply::JobList { head, subscriber } => {
            assert_eq!(head.status, 200);
            assert_eq!(head.get("content-type"), Some("text/event-stream"));
            assert_eq!(head.get("vary"), Some("Accept"));
            subscriber
        }
        other => panic!("{other:?}"),
    }
}

/// Everything the stream has to send now, as text.
fn drain(reg: &Registry, sub: &mut ListSubscriber, now: Instant) -> String {
    let mut buf = Vec::new();
    while reg.poll_list(sub, now, &mut buf) == Next::Wrote {}
    String::from_utf8(buf).unwrap()
}

fn create(reg: &mut Registry, n: u8) -> JobId {
    let body = br#"{"command":"build"}"#;
    let len = body.len().to_string();
    let headers: &[(&str, &[u8])] = &[
        ("Content-Type", b"application/json"),
        ("Content-Length", len.as_bytes()),
    ];
    match request_at(reg, "POST", "/jobs", headers, body, inputs(t0(), n)) {
        Reply::Spawn { job, .. } => job,
        other => panic!("{other:?}"),
    }
}

/// Runs `f` on job `id` as a driver does: then its actions, then the report.
fn drive(reg: &mut Registry, id: JobId, f: impl FnOnce(&mut Job)) {
    let cell = reg.cell(id).unwrap();
    {
        let mut job = cell.borrow_mut();
        f(&mut job);
        while let Some(action) = job.poll_action() {
            if let Action::Persist { upto, .. } = action {
                job.handle_persisted(upto, t0());
            }
        }
    }
    reg.handle_job_changed(id);
}

fn run_to_exit(reg: &mut Registry, id: JobId, code: i32) {
    let wall = inputs(t0(), 0).wall;
    drive(reg, id, |j| j.handle_spawned(4242, t0(), wall));
    drive(reg, id, |j| {
        j.handle_exit(
            ExitStatus {
                code: Some(code),
                signal: None,
            },
            t0() + ms(10),
        );
        j.handle_eof(Stream::Stdout, t0() + ms(10));
        j.handle_eof(Stream::Stderr, t0() + ms(10));
    });
}

#[test]
fn accept_decides_stream_or_json() {
    let cases: &[(&[&str], bool)] = &[
        (&["text/event-stream"], true),
        (&["Text/Event-Stream"], true),
        (&["text/event-stream, */*;q=0.1"], true),
        (&["application/json;q=0.5, text/event-stream"], true),
        (&["text/event-stream;q=0.5", "application/json"], false),
        (&["text/event-stream;q=0"], false),
        (&["text/event-stream;q=0.000"], false),
        (&["text/event-stream ; q=0.9, application/*;q=0.8"], true),
        (&["text/event-stream;q=0.8, application/*;q=0.9"], false),
        (&["text/event-stream;q=0.5, */*;q=0.5"], true),
        (&["text/event-stream;q=2"], false),
        (&["text/event-stream;q=x"], false),
        (&["*/*"], false),
        (&["text/*"], false),
        (&["application/json"], false),
        (&[], false),
    ];
    for (values, want) in cases {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("Accept", v.as_bytes())).collect();
        let req = Request {
            method: "GET",
            target: "/jobs",
            headers: &headers,
        };
        assert_eq!(http::wants_event_stream(&req), *want, "{values:?}");
    }
}

#[test]
fn without_the_accept_value_the_list_is_json_and_head_has_no_stream() {
    let mut reg = registry();
    match request(&mut reg, "GET", "/jobs", &[("Accept", b"*/*")]) {
        Reply::Full(r) => {
            assert_eq!(r.head.get("content-type"), Some("application/json"));
            assert_eq!(r.body, b"[]");
        }
        other => panic!("{other:?}"),
    }
    match request(&mut reg, "HEAD", "/jobs", SSE) {
        Reply::Full(r) => {
            assert_eq!(r.head.get("content-type"), Some("text/event-stream"));
            assert!(r.body.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reg.subscribers(), 0, "HEAD opens no stream");
}

#[test]
fn list_streams_count_against_max_subscribers() {
    let mut reg = registry();
    let _a = open_list(&mut reg, None);
    let _b = open_list(&mut reg, None);
    match request(&mut reg, "GET", "/jobs", SSE) {
        Reply::Full(r) => {
            assert_eq!(r.head.status, 503);
            assert!(r.head.get("retry-after").is_some());
        }
        other => panic!("{other:?}"),
    }
    reg.unsubscribe_list(false);
    let _c = open_list(&mut reg, None);
}

#[test]
fn a_jobs_life_as_list_events() {
    let mut reg = registry();
    let old = create(&mut reg, 1);
    run_to_exit(&mut reg, old, 0);
    let mut sub = open_list(&mut reg, None);
    let mut transcript = drain(&reg, &mut sub, t0());
    let id = create(&mut reg, 2);
    transcript += &drain(&reg, &mut sub, t0());
    run_to_exit(&mut reg, id, 3);
    transcript += &drain(&reg, &mut sub, t0());
    // A third job: retention (max 2) drops the oldest finished one.
    let _third = create(&mut reg, 3);
    transcript += &drain(&reg, &mut sub, t0());
    // Nothing new: a heartbeat when it is due, not before.
    assert_eq!(drain(&reg, &mut sub, t0() + ms(14_999)), "");
    transcript += &drain(&reg, &mut sub, t0() + ms(15_000));
    insta::assert_snapshot!(transcript);

    // A reconnect from the `running` change gets exactly what came after it.
    let running_id = reg.feed().id_text(5);
    reg.unsubscribe_list(false);
    let mut again = open_list(&mut reg, Some(&running_id));
    let resumed = drain(&reg, &mut again, t0());
    let kinds: Vec<String> = events(&resumed)
        .iter()
        .map(|(_, ty, data)| format!("{ty}:{}", data["change"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kinds, ["job:exited", "job:created", "job:removed"]);
    // An id from before a restart (another epoch) gets a snapshot, said in-band.
    reg.unsubscribe_list(false);
    let mut stale = open_list(&mut reg, Some("00000000-4"));
    let got = events(&drain(&reg, &mut stale, t0()));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "snapshot");
    assert_eq!(got[0].2["reason"], "unknown");
    assert_eq!(got[0].2["jobs"].as_array().unwrap().len(), 2);
}

#[test]
fn shutdown_ends_caught_up_list_streams() {
    let mut reg = registry();
    let id = create(&mut reg, 1);
    drive(&mut reg, id, |j| j.handle_spawned(1, t0(), UNIX_EPOCH));
    let mut sub = open_list(&mut reg, None);
    let _ = drain(&reg, &mut sub, t0());
    let before = reg.list_version();
    let _ = reg.shutdown(t0());
    assert_ne!(reg.list_version(), before, "list streams are woken");
    // The job still runs: its exit must reach the list before the stream ends.
    drive(&mut reg, id, |j| {
        j.handle_exit(
            ExitStatus {
                code: None,
                signal: Some(15),
            },
            t0(),
        );
        j.handle_eof(Stream::Stdout, t0());
        j.handle_eof(Stream::Stderr, t0());
    });
    let mut buf = Vec::new();
    assert_eq!(reg.poll_list(&mut sub, t0(), &mut buf), Next::Wrote);
    assert!(String::from_utf8_lossy(&buf).contains("\"change\":\"exited\""));
    assert_eq!(reg.poll_list(&mut sub, t0(), &mut Vec::new()), Next::End);
}

/// `(id, type, data)` of every event in `text`.
fn events(text: &str) -> Vec<(String, String, serde_json::Value)> {
    let mut d = Decoder::new();
    d.feed(text.as_bytes());
    let mut out = Vec::new();
    while let Some(item) = d.poll() {
        if let Item::Event(e) = item {
            let data = serde_json::from_str(&e.data).unwrap();
            out.push((e.last_event_id.clone(), e.event_type.clone(), data));
        }
    }
    out
}

/// A tiny deterministic generator for the property test (no new dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// Resuming from any id gives exactly the later changes, or a snapshot when they
/// are not all held (or the id is not this run's); a stream that falls behind
/// the log also gets a snapshot rather than a silent hole.
#[test]
fn resume_from_any_id_gives_exactly_the_rest_or_a_snapshot() {
    let settings = StreamSettings::default();
    let kinds = [
        ChangeKind::Created,
        ChangeKind::Running,
        ChangeKind::Exited,
        ChangeKind::Removed,
    ];
    for seed in 0..300u64 {
        let mut rng = Lcg(seed);
        let cap = 1 + rng.next(8) as usize;
        let mut feed = Feed::with_capacity(cap);
        feed.seed([seed as u8; 16]);
        let n = rng.next(20);
        for i in 0..n {
            let kind = kinds[rng.next(4) as usize];
            feed.record(kind, format!("job{i}"), None);
        }
        let epoch = &feed.id_text(0)[..8];
        let mut ids: Vec<String> = (0..=n + 2).map(|s| format!("{epoch}-{s}")).collect();
        ids.extend(["".into(), "garbage".into(), format!("ffffffff-{n}")]);
        for id in &ids {
            let mut sub = ListSubscriber::open(&feed, Some(id), &settings, None, 0, t0());
            let mut buf = Vec::new();
            while sub.poll_transmit(&feed, Vec::new, t0(), &mut buf) == Next::Wrote {}
            let got = events(std::str::from_utf8(&buf).unwrap());
            let seq = id
                .strip_prefix(&format!("{epoch}-"))
                .and_then(|s| s.parse::<u64>().ok());
            match seq {
                Some(s) if s <= n && s + 1 >= feed.first_held() => {
                    assert_eq!(feed.resume(Some(id)), Resume::From(s + 1));
                    let want: Vec<String> = (s + 1..=n).map(|k| format!("job{}", k - 1)).collect();
                    let ids_got: Vec<String> = got
                        .iter()
                        .map(|(_, ty, d)| {
                            assert_eq!(ty, "job");
                            d["id"].as_str().unwrap().to_string()
                        })
                        .collect();
                    assert_eq!(ids_got, want, "seed {seed} id {id}");
                    let last = got.last().map_or(id.clone(), |e| e.0.clone());
                    assert_eq!(last, feed.id_text(n), "the last id is the last change's");
                }
                _ => {
                    assert_eq!(got.len(), 1, "seed {seed} id {id}");
                    assert_eq!(got[0].1, "snapshot");
                    let want = match seq {
                        Some(s) if s <= n => SnapshotReason::Expired,
                        _ => SnapshotReason::Unknown,
                    };
                    assert_eq!(got[0].2["reason"], want.as_str(), "seed {seed} id {id}");
                    assert_eq!(got[0].0, feed.id_text(n));
                }
            }
        }
        // Falling behind: a stream caught up at 0 that misses more than `cap`.
        let mut slow = ListSubscriber::open(&feed, None, &settings, None, 0, t0());
        let _ = slow.poll_transmit(&feed, Vec::new, t0(), &mut Vec::new());
        for i in 0..=cap as u64 {
            feed.record(ChangeKind::Created, format!("late{i}"), None);
        }
        let mut buf = Vec::new();
        let _ = slow.poll_transmit(&feed, Vec::new, t0(), &mut buf);
        let got = events(std::str::from_utf8(&buf).unwrap());
        assert_eq!(got[0].1, "snapshot", "seed {seed}");
        assert_eq!(got[0].2["reason"], "expired");
    }
}
