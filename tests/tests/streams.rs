//! A job's event stream, read whole by real clients: exact text (carriage returns,
//! UTF-8 split across writes, invalid bytes, lines longer than one event, stderr next
//! to stdout), the wire of a small job as an insta snapshot, 100 subscribers on one
//! job, a subscriber that stops reading, the `gap` of `--memory` mode and `?tail=N`.

mod common;

use common::*;
use serde_json::json;
use spout_tests::{both_runtimes, start_job, wait_for_state, Item, Runtime, Server};
use std::sync::Barrier;

/// Starts a server with one command `job` running `script`, runs it and returns its
/// whole stream (checked for ids 1.., `start` first and one `exit` last).
fn stream_of(rt: Runtime, script: &str) -> Vec<spout_tests::Dispatched> {
    let server = Server::start_with_config(rt, &config(json!({ "job": sh(script) })), &[]);
    let (_, events) = run_job(server.addr(), "job");
    assert_whole(&events);
    events
}

both_runtimes!(
    fn start_output_and_exit_code(rt: Runtime) {
        let events = stream_of(rt, "printf 'one\\ntwo\\n'; exit 3");
        let start = data(&events[0]);
        assert_eq!(start["command"], "job");
        assert_eq!(
            start["argv"],
            json!(["sh", "-c", "printf 'one\\ntwo\\n'; exit 3"])
        );
        assert!(start["pid"].as_u64().is_some_and(|p| p > 0), "{start}");
        assert!(start["started_at"].is_string(), "{start}");
        assert_eq!(text_of(&events, "stdout"), "one\ntwo\n");
        assert_eq!(text_of(&events, "stderr"), "");
        let exit = exit_data(&events);
        assert_eq!(exit["code"], 3, "{exit}");
        assert_eq!(exit["signal"], json!(null), "{exit}");
        assert!(exit["duration_ms"].is_u64(), "{exit}");
        assert_eq!(exit["stdout_bytes"], 8, "{exit}");
        assert_eq!(exit["stderr_bytes"], 0, "{exit}");
        assert!(exit.get("reason").is_none_or(|r| r.is_null()), "{exit}");
    }

    fn carriage_return_progress_is_kept(rt: Runtime) {
        let events = stream_of(rt, "printf 'a\\rb\\rc\\n'");
        assert_eq!(text_of(&events, "stdout"), "a\rb\rc\n");
        assert_eq!(exit_data(&events)["stdout_bytes"], 6);
    }

    fn utf8_split_across_writes_is_one_character(rt: Runtime) {
        // é is C3 A9; the pause makes the two bytes two separate reads.
        let events = stream_of(rt, "printf '\\303'; sleep 0.1; printf '\\251\\n'");
        let text = text_of(&events, "stdout");
        assert_eq!(text, "é\n", "{events:#?}");
        assert_eq!(exit_data(&events)["stdout_bytes"], 3);
    }

    fn invalid_bytes_become_replacement_characters(rt: Runtime) {
        let events = stream_of(rt, "printf 'a\\377b\\376\\n'");
        assert_eq!(text_of(&events, "stdout"), "a\u{FFFD}b\u{FFFD}\n");
        assert_eq!(exit_data(&events)["stdout_bytes"], 5);
    }

    fn long_line_is_split_into_events_that_add_up(rt: Runtime) {
        // 40 000 bytes and a newline: more than two events of 16 KiB.
        let events = stream_of(rt, "head -c 40000 /dev/zero | tr '\\0' x; echo");
        let outputs: Vec<_> = events.iter().filter(|e| e.event_type == "stdout").collect();
        assert!(outputs.len() >= 3, "{} stdout events", outputs.len());
        for event in &outputs {
            let text = data(event)["text"].as_str().unwrap().to_string();
            assert!(text.len() <= 16 * 1024, "event of {} bytes", text.len());
        }
        let expected = format!("{}\n", "x".repeat(40_000));
        assert!(text_of(&events, "stdout") == expected, "text differs");
        assert_eq!(exit_data(&events)["stdout_bytes"], 40_001);
    }

    fn stderr_and_stdout_are_told_apart(rt: Runtime) {
        let events = stream_of(
            rt,
            "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2",
        );
        assert_eq!(text_of(&events, "stdout"), "out1\nout2\n");
        assert_eq!(text_of(&events, "stderr"), "err1\nerr2\n");
        let exit = exit_data(&events);
        assert_eq!(
            (exit["stdout_bytes"].clone(), exit["stderr_bytes"].clone()),
            (json!(10), json!(10))
        );
    }
);

both_runtimes!(
    fn small_job_wire_snapshot(rt: Runtime) {
        // One write on stdout, so the events are the same on every run.
        let server = Server::start_with_config(
            rt,
            &config(json!({ "small": sh("printf 'hello\\nworld\\n'; exit 3") })),
            &[],
        );
        let (id, _) = start_job(server.addr(), "small", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let got = events.collect_to_end(STREAM_BOUND);
        assert!(events.finished(), "{:?}", events.dropped());
        assert_eq!(types(&got), ["start", "stdout", "exit"]);
        let transcript = format!(
            "{}\n{}",
            head_text(events.headers()),
            redact_wire(&events.raw_text())
        );
        // One snapshot for both runtimes: they must answer byte for byte the same.
        insta::assert_snapshot!("small_job_wire", transcript);
    }
);

both_runtimes!(
    fn hundred_subscribers_each_get_every_event_once_in_order(rt: Runtime) {
        // The job waits for a file the test creates once every subscriber is in, so
        // all 100 streams are live while it writes.
        let script = "while [ ! -e \"$1\" ]; do sleep 0.02; done; \
                      for i in $(seq 1 30); do echo line $i; sleep 0.01; done";
        let mut command = sh(script);
        command["argv"].as_array_mut().unwrap().push(json!("sh"));
        command["args"] = json!({ "max": 1, "max_len": 4096 });
        let server = Server::start_with_config(rt, &config(json!({ "gated": command })), &[]);
        let go = server.dir().join("go");
        let (id, _) = start_job(server.addr(), "gated", &[go.to_str().unwrap()]);
        const N: usize = 100;
        let opened = Barrier::new(N + 1);
        let path = format!("/jobs/{id}/events");
        let all: Vec<Vec<spout_tests::Dispatched>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    s.spawn(|| {
                        let mut events = stream(server.addr(), &path, &[]);
                        opened.wait();
                        let got = events.collect_to_end(STREAM_BOUND);
                        assert!(events.finished(), "{:?}", events.dropped());
                        got
                    })
                })
                .collect();
            opened.wait();
            std::fs::write(&go, b"").unwrap();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let reference = &all[0];
        assert_whole(reference);
        let expected: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text_of(reference, "stdout"), expected);
        for (i, events) in all.iter().enumerate() {
            assert_eq!(events, reference, "subscriber {i} differs");
        }
    }
);

both_runtimes!(
    fn a_subscriber_that_stops_reading_stalls_nobody(rt: Runtime) {
        const BYTES: u64 = 20_000_000;
        let script = format!("yes | head -c {BYTES}");
        let server = Server::start_with_config(rt, &config(json!({ "flood": sh(&script) })), &[]);
        let (id, _) = start_job(server.addr(), "flood", &[]);
        let path = format!("/jobs/{id}/events");
        // Opened, head read, then never read again: its socket buffers fill up.
        let mut stalled = stream(server.addr(), &path, &[]);
        let mut reader = stream(server.addr(), &path, &[]);
        // 20 MB of output is some 30 MB of SSE; decoding it all in a debug build is
        // slow, so this reads raw bytes and parses only the final event.
        assert!(
            reader.read_until_raw_contains(b"event: exit\n", STREAM_BOUND * 3),
            "no exit event; {} bytes read",
            reader.raw().len()
        );
        let raw = reader.raw_text();
        let exit_at = raw.rfind("event: exit\n").unwrap();
        let data_line = raw[exit_at..].lines().nth(1).unwrap();
        let exit: serde_json::Value =
            serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(exit["stdout_bytes"], BYTES, "{exit}");
        assert_eq!(exit["code"], 0, "{exit}");
        let status = wait_for_state(
            server.addr(),
            &id,
            |s| s["state"] != "running" && s["state"] != "starting",
            10 * SECOND,
        );
        assert_eq!(status["state"], "exited", "{status:#}");
        assert!(
            !stalled.ended(),
            "the stalled stream was cut: {:?}",
            stalled.dropped()
        );
        stalled.close();
    }
);

both_runtimes!(
    fn memory_mode_resume_past_the_window_gets_a_gap(rt: Runtime) {
        let cfg = json!({
            "commands": { "big": sh("head -c 40000 /dev/zero | tr '\\0' x") },
            "limits": { "memory_window_bytes": 4096 },
            "sse": { "max_event_bytes": 1024 }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &["--memory"]);
        let (id, _) = start_job(server.addr(), "big", &[]);
        wait_for_state(server.addr(), &id, |s| s["exit"].is_object(), 10 * SECOND);
        let mut events = stream(
            server.addr(),
            &format!("/jobs/{id}/events"),
            &[("Last-Event-ID", "1")],
        );
        let got = events.collect_to_end(STREAM_BOUND);
        assert!(events.finished(), "{:?}", events.dropped());
        assert_eq!(got[0].event_type, "gap", "{got:#?}");
        let gap = data(&got[0]);
        assert_eq!(gap["from"], 2, "{gap}");
        let to = gap["to"].as_u64().unwrap();
        assert!(to >= 2, "{gap}");
        assert_eq!(id_of(&got[0]), to, "a gap carries the id it ends at");
        let rest: Vec<u64> = ids(&got[1..]);
        let expected: Vec<u64> = (to + 1..to + 1 + rest.len() as u64).collect();
        assert_eq!(rest, expected, "after the gap, every id in order");
        let exit = exit_data(&got);
        assert_eq!(exit["stdout_bytes"], 40_000);
        let text = text_of(&got, "stdout");
        assert!(
            !text.is_empty() && text.len() < 40_000 && text.bytes().all(|b| b == b'x'),
            "{} bytes after the gap",
            text.len()
        );
    }
);

both_runtimes!(
    fn archive_mode_resume_past_the_window_reads_the_archive(rt: Runtime) {
        // The same small window as above, but with the archive: nothing is lost.
        let cfg = json!({
            "commands": { "big": sh("head -c 40000 /dev/zero | tr '\\0' x") },
            "limits": { "memory_window_bytes": 4096 },
            "sse": { "max_event_bytes": 1024 }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let (id, full) = run_job(server.addr(), "big");
        assert_whole(&full);
        assert_eq!(text_of(&full, "stdout"), "x".repeat(40_000));
        for k in [1, 2, full.len() as u64 / 2] {
            let mut events = stream(
                server.addr(),
                &format!("/jobs/{id}/events"),
                &[("Last-Event-ID", &k.to_string())],
            );
            let got = events.collect_to_end(STREAM_BOUND);
            assert!(events.finished(), "{:?}", events.dropped());
            assert!(got == full[k as usize..], "resume after {k} differs");
        }
    }
);

both_runtimes!(
    fn tail_sends_start_a_gap_and_the_last_n_output_events(rt: Runtime) {
        let server = Server::start_with_config(
            rt,
            &config(json!({
                "lines": sh("for i in $(seq 1 20); do echo line $i; sleep 0.02; done")
            })),
            &[],
        );
        let (id, full) = run_job(server.addr(), "lines");
        assert_whole(&full);
        let outputs: Vec<&spout_tests::Dispatched> =
            full.iter().filter(|e| e.event_type == "stdout").collect();
        const N: usize = 3;
        assert!(
            outputs.len() > N + 1,
            "the job wrote only {} events",
            outputs.len()
        );
        let first_kept = id_of(outputs[outputs.len() - N]);

        let mut events = stream(server.addr(), &format!("/jobs/{id}/events?tail={N}"), &[]);
        let got = events.collect_to_end(STREAM_BOUND);
        assert!(events.finished(), "{:?}", events.dropped());
        assert_eq!(got[0], full[0], "start comes first");
        assert_eq!(got[1].event_type, "gap", "{got:#?}");
        assert_eq!(
            data(&got[1]),
            json!({ "from": 2, "to": first_kept - 1 }),
            "{got:#?}"
        );
        assert_eq!(id_of(&got[1]), first_kept - 1);
        assert_eq!(
            &got[2..],
            &full[(first_kept - 1) as usize..],
            "then the last {N} output events and the exit"
        );
    }
);

both_runtimes!(
    fn tail_zero_of_a_finished_job_still_ends_with_exit(rt: Runtime) {
        let server = Server::start_with_config(
            rt,
            &config(json!({ "lines": sh("echo one; sleep 0.1; echo two") })),
            &[],
        );
        let (id, full) = run_job(server.addr(), "lines");
        assert_whole(&full);
        let exit_id = id_of(full.last().unwrap());
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events?tail=0"), &[]);
        let got = events.collect_to_end(STREAM_BOUND);
        assert!(events.finished(), "{:?}", events.dropped());
        // No output events, but the viewer still learns how the job ended.
        assert_eq!(types(&got), ["start", "gap", "exit"], "{got:#?}");
        assert_eq!(data(&got[1]), json!({ "from": 2, "to": exit_id - 1 }));
        assert_eq!(got[2], *full.last().unwrap());
    }
);

/// A server with a 1 s heartbeat running one quiet job, which prints `late` and
/// ends once the returned file exists: its id and that file (`tag` keeps the
/// tests' files apart).
fn quiet_job(rt: Runtime, tag: &str) -> (Server, String, std::path::PathBuf) {
    let go = std::env::temp_dir().join(format!("spout-{tag}-go-{}-{rt:?}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; printf 'late\\n'",
        go.display()
    );
    let cfg = json!({ "commands": { "quiet": sh(&script) }, "sse": { "heartbeat_s": 1 } });
    let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
    let (id, _) = start_job(server.addr(), "quiet", &[]);
    (server, id, go)
}

/// Reads `events` until it has seen `n` heartbeats (comments); panics if the
/// stream ends first.
fn read_heartbeats(events: &mut spout_tests::EventStream, n: usize) {
    let mut beats = 0;
    while beats < n {
        match events.next_item(STREAM_BOUND) {
            Some(Item::Comment(_)) => beats += 1,
            Some(_) => {}
            None => panic!("no heartbeat: {:?}", events.dropped()),
        }
    }
}

both_runtimes!(
    fn a_quiet_stream_gets_heartbeats_and_still_the_next_event(rt: Runtime) {
        // After a heartbeat a stream waits on what it listened to before writing
        // it, without another look at the job: an append after several heartbeats
        // must still wake it. On spout-blocking the idle thread holds the stream
        // after its first heartbeat and writes the next ones, and the append must
        // give it back to its own thread. The job writes once the test has seen
        // three.
        let (server, id, go) = quiet_job(rt, "heartbeat");
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        read_heartbeats(&mut events, 3);
        std::fs::write(&go, b"").unwrap();
        let rest = events.collect_to_end(STREAM_BOUND);
        let _ = std::fs::remove_file(&go);
        assert!(events.finished(), "{:?}", events.dropped());
        assert_eq!(text_of(&rest, "stdout"), "late\n", "{rest:#?}");
        assert_eq!(exit_data(&rest)["code"], 0);
    }

    fn quiet_streams_whose_clients_left_are_let_go_and_the_rest_go_on(rt: Runtime) {
        // Ten streams on a quiet job, held between heartbeats (by the idle thread
        // on spout-blocking). Five clients leave: each is noticed at a heartbeat
        // and no longer counted; the other five still get the job's output.
        let (server, id, go) = quiet_job(rt, "leave");
        let mut all: Vec<_> = (0..10)
            .map(|_| stream(server.addr(), &format!("/jobs/{id}/events"), &[]))
            .collect();
        for events in &mut all {
            read_heartbeats(events, 2);
        }
        assert_eq!(metric(server.addr(), "spout_subscribers"), 10);
        for mut events in all.drain(5..) {
            events.close();
        }
        assert!(
            eventually(10 * SECOND, || metric(server.addr(), "spout_subscribers")
                == 5),
            "streams whose clients left are still counted"
        );
        std::fs::write(&go, b"").unwrap();
        for events in &mut all {
            let rest = events.collect_to_end(STREAM_BOUND);
            assert!(events.finished(), "{:?}", events.dropped());
            assert_eq!(text_of(&rest, "stdout"), "late\n", "{rest:#?}");
        }
        let _ = std::fs::remove_file(&go);
    }
);
