//! gzip on `/jobs/{id}/events` and `/jobs/{id}/log`, as a curl-like client sees it:
//! asked for with `Accept-Encoding: gzip`, decoded with flate2's streaming decoder,
//! live (an event decodes before the job's next output), resumable with
//! `Last-Event-ID`, and `204` unchanged after the end.

mod common;

use common::*;
use flate2::write::GzDecoder;
use serde_json::json;
use spout_tests::{
    both_runtimes, request, start_job, wait_for_state, EventStream, Runtime, Server,
};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const GZIP: (&str, &str) = ("Accept-Encoding", "gzip");

/// A streaming gzip decoder over a response body read bit by bit.
struct Gunzip {
    inner: GzDecoder<Vec<u8>>,
    text: Vec<u8>,
}

impl Gunzip {
    fn new() -> Gunzip {
        Gunzip {
            inner: GzDecoder::new(Vec::new()),
            text: Vec::new(),
        }
    }

    /// Feeds body bytes; everything they decode to is in `text` at once.
    fn feed(&mut self, bytes: &[u8]) {
        self.inner.write_all(bytes).expect("valid gzip");
        self.inner.flush().expect("valid gzip");
        self.text.append(self.inner.get_mut());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }
}

/// Decodes a whole gzip body, checking its trailer (CRC and length).
fn gunzip(body: &[u8]) -> String {
    let mut d = GzDecoder::new(Vec::new());
    d.write_all(body).expect("valid gzip");
    String::from_utf8(d.finish().expect("a complete gzip member")).expect("UTF-8")
}

/// The body without its `retry:` line (jittered per connection).
fn without_retry(text: &str) -> String {
    match text.split_once("\n\n") {
        Some((first, rest)) if first.starts_with("retry:") => rest.to_string(),
        _ => text.to_string(),
    }
}

fn server(rt: Runtime) -> Server {
    let script = "echo one; sleep 1.5; echo two";
    Server::start_with_config(
        rt,
        &config(json!({ "job": sh(script), "quick": sh("seq 1 2000") })),
        &[],
    )
}

/// Reads a (gzip) stream's raw body to its end.
fn read_to_end(events: &mut EventStream) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events.ended() {
        assert!(Instant::now() < deadline, "no end: {events:?}");
        let _ = events.read_some_raw(Duration::from_millis(200));
    }
}

/// Reads the stream until its decoded text contains `needle`.
fn read_until(events: &mut EventStream, gz: &mut Gunzip, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gz.text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            gz.text()
        );
        let bytes = events.read_some_raw(Duration::from_millis(200));
        gz.feed(&bytes);
    }
}

fn finished(addr: SocketAddr, command: &str) -> String {
    let (id, _) = start_job(addr, command, &[]);
    wait_for_state(
        addr,
        &id,
        |s| s["state"] == "exited",
        Duration::from_secs(20),
    );
    id
}

both_runtimes!(
    fn events_are_gzip_and_live(rt: Runtime) {
        let server = server(rt);
        let (id, _) = start_job(server.addr(), "job", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[GZIP]);
        assert_eq!(events.header("content-encoding"), Some("gzip"));
        assert_eq!(events.header("vary"), Some("Accept-Encoding"));
        let mut gz = Gunzip::new();
        read_until(&mut events, &mut gz, "event: stdout");
        // Decoded before the job wrote its next line: nothing was held back.
        assert_eq!(
            gz.text().matches("event: stdout").count(),
            1,
            "{}",
            gz.text()
        );
        assert!(gz.text().ends_with("\n\n"), "{:?}", gz.text());
        read_until(&mut events, &mut gz, "event: exit");
        read_to_end(&mut events);
        // The whole body is one valid gzip member (CRC and length checked) with
        // exactly the identity stream in it.
        let whole = gunzip(events.raw());
        assert_eq!(whole, gz.text());
        let mut plain = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        plain.collect_to_end(Duration::from_secs(10));
        assert_eq!(without_retry(&whole), without_retry(&plain.raw_text()));
    }

    fn resume_under_gzip_and_204_after_the_end(rt: Runtime) {
        let server = server(rt);
        let addr = server.addr();
        let id = finished(addr, "quick");
        let path = format!("/jobs/{id}/events");
        let all_events = whole_stream(addr, &id);
        let last = all_events.last().expect("events").last_event_id.clone();
        let mut all = stream(addr, &path, &[GZIP]);
        read_to_end(&mut all);
        let whole = without_retry(&gunzip(all.raw()));
        // Resume after the second event: exactly the rest.
        let second = &all_events[1].last_event_id;
        let mut rest = stream(addr, &path, &[GZIP, ("Last-Event-ID", second)]);
        read_to_end(&mut rest);
        let rest_text = without_retry(&gunzip(rest.raw()));
        let third = format!("id: {}\n", all_events[2].last_event_id);
        let cut = whole.find(&third).expect("the third event");
        assert_eq!(rest_text, whole[cut..]);
        // After the final event: 204, not a gzip body, and still Vary.
        let done = spout_tests::open_events(addr, &path, &[GZIP, ("Last-Event-ID", &last)])
            .expect_err("204");
        assert_eq!(done.status, 204);
        assert_eq!(done.header("content-encoding"), None);
        assert_eq!(done.header("vary"), Some("Accept-Encoding"));
        assert!(done.body.is_empty());
        // Refused gzip stays identity.
        let r = request(
            addr,
            "GET",
            &format!("/jobs/{id}/log"),
            &[("Accept-Encoding", "gzip;q=0")],
            b"",
        );
        assert_eq!(r.header("content-encoding"), None);
    }

    fn log_is_gzip_plain_and_followed(rt: Runtime) {
        let server = server(rt);
        let addr = server.addr();
        let id = finished(addr, "quick");
        let want: String = (1..=2000).map(|i| format!("{i}\n")).collect();
        let r = request(addr, "GET", &format!("/jobs/{id}/log"), &[GZIP], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert!(r.body.len() < want.len() / 2, "{} bytes", r.body.len());
        assert_eq!(gunzip(&r.body), want);
        // HEAD answers the same head.
        let h = request(addr, "HEAD", &format!("/jobs/{id}/log"), &[GZIP], b"");
        assert_eq!(h.header("content-encoding"), Some("gzip"));
        assert_eq!(h.header("vary"), Some("Accept-Encoding"));
        let h = request(addr, "HEAD", &format!("/jobs/{id}/events"), &[GZIP], b"");
        assert_eq!(h.header("content-encoding"), Some("gzip"));
        // Followed: live, then ends with a valid trailer.
        let (live, _) = start_job(addr, "job", &[]);
        let mut log = stream(addr, &format!("/jobs/{live}/log?follow=1"), &[GZIP]);
        assert_eq!(log.header("content-encoding"), Some("gzip"));
        let mut gz = Gunzip::new();
        read_until(&mut log, &mut gz, "one\n");
        assert_eq!(gz.text(), "one\n", "decoded before the next output");
        read_until(&mut log, &mut gz, "two\n");
        read_to_end(&mut log);
        assert_eq!(gunzip(log.raw()), "one\ntwo\n");
    }
);
