//! Helpers shared by the case files: config building, reading a job's whole stream,
//! event data as JSON, waiting for processes to go, and masking the variable parts of
//! a wire transcript for snapshots.
//!
//! Each case file is its own test binary and uses only some of these, hence the
//! `dead_code` allowance.

#![allow(dead_code)]

use serde_json::{json, Value};
use spout_tests::{open_events, start_job, Dispatched, EventStream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One second, for bounds.
pub const SECOND: Duration = Duration::from_secs(1);

/// The bound for a job's whole stream to arrive: generous, since the machine is shared.
pub const STREAM_BOUND: Duration = Duration::from_secs(20);

/// A command that runs `script` with `sh -c` (tests may use a shell; the server never
/// does on its own).
pub fn sh(script: &str) -> Value {
    json!({ "argv": ["sh", "-c", script] })
}

/// A config file with these commands and nothing else.
pub fn config(commands: Value) -> String {
    json!({ "commands": commands }).to_string()
}

/// Opens `path` as an event stream, panicking with the answer when it is not `200`.
pub fn stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> EventStream {
    open_events(addr, path, headers).unwrap_or_else(|r| {
        panic!(
            "GET {path} {headers:?}: expected an event stream, got {} {}",
            r.status,
            r.text()
        )
    })
}

/// Every event of job `id` from the start to its end.
pub fn whole_stream(addr: SocketAddr, id: &str) -> Vec<Dispatched> {
    let mut events = stream(addr, &format!("/jobs/{id}/events"), &[]);
    let got = events.collect_to_end(STREAM_BOUND);
    assert!(
        events.finished(),
        "stream of {id} did not end cleanly: {:?}",
        events.dropped()
    );
    got
}

/// Starts `command` and reads its whole stream: the id and the events.
pub fn run_job(addr: SocketAddr, command: &str) -> (String, Vec<Dispatched>) {
    let (id, _) = start_job(addr, command, &[]);
    let events = whole_stream(addr, &id);
    (id, events)
}

/// An event's data as JSON.
pub fn data(event: &Dispatched) -> Value {
    serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {event:?}"))
}

/// An event's id as a number.
pub fn id_of(event: &Dispatched) -> u64 {
    event
        .last_event_id
        .parse()
        .unwrap_or_else(|e| panic!("event id is not a number ({e}): {event:?}"))
}

/// The ids of `events`, in order.
pub fn ids(events: &[Dispatched]) -> Vec<u64> {
    events.iter().map(id_of).collect()
}

/// The types of `events`, in order.
pub fn types(events: &[Dispatched]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// The concatenated `text` of the events of type `kind` (`stdout` or `stderr`).
pub fn text_of(events: &[Dispatched], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e.event_type == kind)
        .map(|e| {
            data(e)["text"]
                .as_str()
                .unwrap_or_else(|| panic!("{kind} event without text: {e:?}"))
                .to_string()
        })
        .collect()
}

/// The data of the final event, checking that it is the only `exit` and the last.
pub fn exit_data(events: &[Dispatched]) -> Value {
    let last = events.last().expect("a stream with events");
    assert_eq!(last.event_type, "exit", "last event: {events:#?}");
    assert_eq!(
        types(events).iter().filter(|t| **t == "exit").count(),
        1,
        "exactly one exit: {events:#?}"
    );
    data(last)
}

/// Checks the shape every whole stream has: ids 1, 2, 3, … with no hole, `start`
/// first, `exit` last.
pub fn assert_whole(events: &[Dispatched]) {
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(ids(events), expected, "ids of {events:#?}");
    assert_eq!(events[0].event_type, "start", "{events:#?}");
    exit_data(events);
}

/// Whether process `pid` is gone: no `/proc/<pid>`, or a zombie (dead, waiting for a
/// parent that is not ours to reap it).
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z')),
    }
}

/// Waits up to `bound` for process `pid` to be gone; returns whether it is.
pub fn wait_gone(pid: u32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if is_gone(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Masks what varies between runs in an SSE transcript, so it can be snapshotted:
/// the jittered `retry:` value, and in event data the `pid`, `started_at` and
/// `duration_ms` values. Everything else stays byte for byte.
pub fn redact_wire(wire: &str) -> String {
    let mut out = String::with_capacity(wire.len());
    for line in wire.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("retry: ") {
            let end = rest.trim_end_matches(['\r', '\n']);
            assert!(
                !end.is_empty() && end.bytes().all(|b| b.is_ascii_digit()),
                "retry value {end:?} is not digits"
            );
            out.push_str("retry: [retry]");
            out.push_str(&rest[end.len()..]);
            continue;
        }
        let mut line = line.to_string();
        for (key, mask) in [
            ("\"pid\":", "\"[pid]\""),
            ("\"started_at\":", "\"[time]\""),
            ("\"duration_ms\":", "\"[ms]\""),
        ] {
            line = mask_json_value(&line, key, mask);
        }
        out.push_str(&line);
    }
    out
}

/// Replaces the scalar value after every `key` in `line` (a number, `null` or a string
/// without escapes) by `mask`.
fn mask_json_value(line: &str, key: &str, mask: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(key) {
        let value_start = at + key.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let len = if let Some(s) = value.strip_prefix('"') {
            s.find('"').map_or(value.len(), |i| i + 2)
        } else {
            value.find([',', '}']).unwrap_or(value.len())
        };
        out.push_str(mask);
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

/// The response head of an event stream as text, `Name: value` per line, for
/// snapshots (no `Date`: the servers send none).
pub fn head_text(headers: &[(String, String)]) -> String {
    headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect()
}

#[test]
fn redaction_masks_only_the_variable_parts() {
    let wire = "retry: 1834\n\nid: 1\nevent: start\ndata: {\"command\":\"x\",\"argv\":[\"pid\"],\"pid\":4242,\"started_at\":\"2026-11-22T10:00:00.000Z\"}\n\nid: 2\nevent: exit\ndata: {\"code\":0,\"signal\":null,\"duration_ms\":5230,\"stdout_bytes\":28}\n\n";
    assert_eq!(
        redact_wire(wire),
        "retry: [retry]\n\nid: 1\nevent: start\ndata: {\"command\":\"x\",\"argv\":[\"pid\"],\"pid\":\"[pid]\",\"started_at\":\"[time]\"}\n\nid: 2\nevent: exit\ndata: {\"code\":0,\"signal\":null,\"duration_ms\":\"[ms]\",\"stdout_bytes\":28}\n\n"
    );
    assert_eq!(
        mask_json_value("{\"pid\":null}", "\"pid\":", "X"),
        "{\"pid\":X}"
    );
}

/// The value of a gauge or counter without labels in `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = spout_tests::get(addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Polls until `f` holds, up to `bound`; returns whether it did.
pub fn eventually(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
