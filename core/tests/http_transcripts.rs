//! Whole HTTP exchanges through the registry, exactly as both runtimes drive it
//! (`admit`, then `handle`): the bytes of the answers, snapshotted with insta.

use spout_core::config;
use spout_core::event::{ExitStatus, Stream};
use spout_core::http::{Admission, Request, Response};
use spout_core::registry::{Inputs, Registry, Reply};
use spout_core::JobId;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[allow(clippy::disallowed_methods)] // the one clock read: simulated time zero
fn t0() -> Instant {
    Instant::now()
}

fn inputs(now: Instant, n: u8) -> Inputs {
    Inputs {
        now,
        wall: UNIX_EPOCH + Duration::from_secs(1_795_341_600),
        random: [n; 16],
    }
}

const CONFIG: &str = r#"{"commands": {"build": {"argv": ["make"], "description": "Build"}}}"#;

/// One request through admit + handle; the answer's bytes (heads of streams only).
fn exchange(
    reg: &mut Registry,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    inp: Inputs,
) -> (Vec<u8>, Option<Reply>) {
    let req = Request {
        method,
        target,
        headers,
    };
    let mut out = Vec::new();
    match reg.admit(&req, 0) {
        Admission::Respond(r) => {
            r.encode(false, &mut out);
            (out, None)
        }
        Admission::Handle(admitted) => match reg.handle(&req, admitted, body, inp) {
            Reply::Full(r) => {
                r.encode(false, &mut out);
                (out, None)
            }
            Reply::Stream {
                head,
                job,
                subscriber,
            } => {
                head.encode(&mut out);
                (
                    out,
                    Some(Reply::Stream {
                        head,
                        job,
                        subscriber,
                    }),
                )
            }
            Reply::Spawn {
                response,
                job,
                plan,
            } => {
                response.encode(false, &mut out);
                (
                    out,
                    Some(Reply::Spawn {
                        response,
                        job,
                        plan,
                    }),
                )
            }
            other => (out, Some(other)),
        },
    }
}

fn finished_job(reg: &mut Registry, now: Instant) -> JobId {
    finished_job_n(reg, now, 7)
}

/// A job created with randomness `n` (its id), run to its exit.
fn finished_job_n(reg: &mut Registry, now: Instant, n: u8) -> JobId {
    let body = br#"{"command":"build"}"#;
    let ct: &[(&str, &[u8])] = &[
        ("Content-Type", b"application/json"),
        ("Content-Length", b"19"),
    ];
    let (_, reply) = exchange(reg, "POST", "/jobs", ct, body, inputs(now, n));
    let Some(Reply::Spawn { job, .. }) = reply else {
        panic!("job created")
    };
    let cell = reg.cell(job).unwrap();
    let mut j = cell.borrow_mut();
    j.handle_spawned(4242, now, UNIX_EPOCH + Duration::from_secs(1_795_341_600));
    let _ = j.handle_output(Stream::Stdout, b"ok\n", now);
    j.handle_eof(Stream::Stdout, now);
    j.handle_eof(Stream::Stderr, now);
    j.handle_exit(
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        now + Duration::from_millis(5),
    );
    while let Some(a) = j.poll_action() {
        if let spout_core::job::Action::Persist { upto, .. } = a {
            j.handle_persisted(upto, now);
        }
    }
    drop(j);
    job
}

#[test]
fn no_content_after_the_final_event() {
    let mut reg: Registry = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    let now = t0();
    let job = finished_job(&mut reg, now);
    let target = format!("/jobs/{job}/events");
    let (bytes, _) = exchange(
        &mut reg,
        "GET",
        &target,
        &[("Last-Event-ID", b"3")],
        b"",
        inputs(now, 1),
    );
    insta::assert_snapshot!(String::from_utf8(bytes).unwrap());
}

#[test]
fn event_stream_head() {
    let mut reg: Registry = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    let now = t0();
    let job = finished_job(&mut reg, now);
    let target = format!("/jobs/{job}/events");
    let (bytes, reply) = exchange(&mut reg, "GET", &target, &[], b"", inputs(now, 1));
    assert!(matches!(reply, Some(Reply::Stream { .. })));
    assert_eq!(reg.subscribers(), 1);
    insta::assert_snapshot!(String::from_utf8(bytes).unwrap());
}

#[test]
fn errors_are_json_with_their_status() {
    let mut reg: Registry = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    let now = t0();
    let job = finished_job(&mut reg, now);
    let events = format!("/jobs/{job}/events");
    let mut all = String::new();
    for (method, target, headers) in [
        ("GET", events.as_str(), vec![("Last-Event-ID", &b"x1"[..])]),
        ("GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA", vec![]),
        ("PUT", "/jobs", vec![]),
        ("DELETE", &format!("/jobs/{job}"), vec![]),
    ] {
        let (bytes, _) = exchange(&mut reg, method, target, &headers, b"", inputs(now, 2));
        all += &format!(
            "{method} {}\n{}\n",
            target.replace(&job.to_string(), "{id}"),
            String::from_utf8(bytes).unwrap()
        );
    }
    insta::assert_snapshot!(all);
}

#[test]
fn response_encoding_is_what_both_runtimes_write() {
    let mut out = Vec::new();
    Response::no_content().encode(false, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 204 No Content\r\n"));
}

/// The viewer's CSP allows exactly its own inline script and style, by hash (no
/// `'unsafe-inline'`: output wrongly inserted as markup could not run a handler).
/// Editing the page without updating `VIEWER_CSP` fails here, with the new hashes.
#[test]
fn viewer_csp_pins_the_inline_script_and_style() {
    use sha2::{Digest, Sha256};
    let html = spout_core::registry::VIEWER_HTML;
    let csp = spout_core::http::VIEWER_CSP;
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for tag in ["script", "style"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        assert_eq!(html.matches(&open).count(), 1, "one inline <{tag}>");
        let start = html.find(&open).unwrap() + open.len();
        let end = start + html[start..].find(&close).unwrap();
        let digest = Sha256::digest(&html.as_bytes()[start..end]);
        let hash = base64(&digest);
        assert!(
            csp.contains(&format!("'sha256-{hash}'")),
            "VIEWER_CSP must allow the <{tag}> by 'sha256-{hash}'"
        );
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Retention: finished jobs beyond `max_retained_jobs` are dropped, oldest first,
/// and named by `poll_expired` so the runtime deletes their files; running jobs
/// and jobs being watched are kept.
#[test]
fn retention_by_count_drops_the_oldest_finished_jobs() {
    let cfg = r#"{"commands": {"build": {"argv": ["make"]}}, "limits": {"max_retained_jobs": 2}}"#;
    let mut reg: Registry = Registry::new(config::parse(cfg).unwrap()).unwrap();
    let now = t0();
    let first = finished_job(&mut reg, now);
    let second = finished_job_n(&mut reg, now, 8);
    assert_eq!(reg.poll_expired(), None);
    let third = finished_job_n(&mut reg, now, 9);
    reg.job_finished(UNIX_EPOCH + Duration::from_secs(1_795_341_600));
    assert_eq!(reg.poll_expired(), Some(first));
    assert_eq!(reg.poll_expired(), None);
    assert!(reg.cell(first).is_none());
    assert!(reg.cell(second).is_some() && reg.cell(third).is_some());
}

/// Retention: finished jobs older than `retention_s` are dropped.
#[test]
fn retention_by_age_drops_old_finished_jobs() {
    let cfg = r#"{"commands": {"build": {"argv": ["make"]}}, "limits": {"retention_s": 60}}"#;
    let mut reg: Registry = Registry::new(config::parse(cfg).unwrap()).unwrap();
    let now = t0();
    let job = finished_job(&mut reg, now);
    reg.job_finished(UNIX_EPOCH + Duration::from_secs(1_795_341_600 + 30));
    assert_eq!(reg.poll_expired(), None, "30 s old: kept");
    reg.job_finished(UNIX_EPOCH + Duration::from_secs(1_795_341_600 + 61));
    assert_eq!(reg.poll_expired(), Some(job), "61 s old: dropped");
}

/// HEAD on a streamed resource gets GET's head and nothing more: no subscriber is
/// opened (so none leaks), and the raw log is not streamed.
#[test]
fn head_on_streams_opens_nothing() {
    let mut reg: Registry = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    let now = t0();
    let job = finished_job(&mut reg, now);
    for path in [format!("/jobs/{job}/events"), format!("/jobs/{job}/log")] {
        let (bytes, reply) = exchange(&mut reg, "HEAD", &path, &[], b"", inputs(now, 3));
        assert!(reply.is_none(), "{path}: a complete answer, not a stream");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {text}");
        assert!(text.ends_with("\r\n\r\n"), "{path}: head only: {text}");
    }
    assert_eq!(reg.subscribers(), 0);
}

/// Retention keeps a finished job while a stream watches it (the watcher counted
/// through its cell), and drops it once the stream unsubscribes.
#[test]
fn a_watched_job_outlives_retention_until_unsubscribed() {
    let cfg = r#"{"commands": {"build": {"argv": ["make"]}}, "limits": {"max_retained_jobs": 1}}"#;
    let mut reg: Registry = Registry::new(config::parse(cfg).unwrap()).unwrap();
    let now = t0();
    let watched = finished_job(&mut reg, now);
    let target = format!("/jobs/{watched}/events");
    let (_, reply) = exchange(&mut reg, "GET", &target, &[], b"", inputs(now, 1));
    assert!(matches!(reply, Some(Reply::Stream { .. })));
    let other = finished_job_n(&mut reg, now, 8);
    assert_eq!(reg.poll_expired(), None, "the watched job is kept");
    assert!(reg.cell(watched).is_some() && reg.cell(other).is_some());
    reg.unsubscribe(watched, false, now);
    assert_eq!(reg.subscribers(), 0);
    reg.job_finished(UNIX_EPOCH + Duration::from_secs(1_795_341_600));
    assert_eq!(reg.poll_expired(), Some(watched), "unwatched: dropped");
    assert_eq!(reg.poll_expired(), None);
}

/// What streams count in the shared atomics, without the registry, is what
/// `/metrics` reports.
#[test]
fn metrics_report_what_streams_counted() {
    let mut reg: Registry = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    let now = t0();
    let sent = reg.sent();
    sent.add(3, 120);
    sent.add(0, 30);
    assert_eq!(reg.metrics().events_sent, 3);
    assert_eq!(reg.metrics().bytes_sent, 150);
    let (bytes, _) = exchange(&mut reg, "GET", "/metrics", &[], b"", inputs(now, 1));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("\nspout_events_sent_total 3\n"), "{text}");
    assert!(text.contains("\nspout_bytes_sent_total 150\n"), "{text}");
}
