//! Runaway jobs: binary output at full speed to hundreds of subscribers; jobs that
//! write a lot and exit at once, none of it lost; a job that closes stdout and keeps
//! running; one that ignores SIGTERM (SIGKILL after the grace); a tree of nested
//! shells (the whole group dies on stop); an output limit that falls in the middle
//! of a multi-byte character.
//!
//! Sizes: `SPOUT_FLOOD_BYTES` (default 1,000,000) bytes of `/dev/urandom` to
//! `SPOUT_FLOOD_SUBSCRIBERS` (default 500) subscribers; the soak runs 50 MB.

mod common;

use common::*;
use serde_json::{json, Value};
use spout_tests::procfs::group_members;
use spout_tests::{both_runtimes, delete, get, start_job, wait_for_state, Runtime, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A path for a "go" file: jobs wait for it, so every subscriber is connected
/// before the output starts.
fn go_file() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("spout-go-{}-{nanos}", std::process::id()))
}

both_runtimes!(
    fn binary_flood_to_many_subscribers(rt: Runtime) {
        binary_flood(
            rt,
            env_or("SPOUT_FLOOD_BYTES", 1_000_000),
            env_or("SPOUT_FLOOD_SUBSCRIBERS", 500) as usize,
            Duration::from_secs(120),
        );
    }

    #[ignore = "full-size soak (50 MB to 500 subscribers): tests/soak/run.sh"]
    fn soak_binary_flood_50mb(rt: Runtime) {
        binary_flood(rt, 50_000_000, 500, Duration::from_secs(1200));
    }

    fn jobs_that_write_a_lot_and_exit_at_once_lose_nothing(rt: Runtime) {
        // Each child fills both pipes (more than a pipe holds, so it waits on them
        // until its last write) and exits at once: its tail is in the pipes when
        // its exit is known. Sixteen at a time, three rounds, to load the server;
        // every byte must be counted in `exit` and kept in the raw log.
        let (out, err) = (300_000, 70_000);
        let cfg = config(json!({
            "burst": sh(&format!(
                "head -c {out} /dev/urandom & head -c {err} /dev/urandom >&2; wait"
            ))
        }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let addr = server.addr();
        for round in 0..3 {
            let ids: Vec<String> = (0..16).map(|_| start_job(addr, "burst", &[]).0).collect();
            for id in &ids {
                let events = whole_stream(addr, id);
                assert_whole(&events);
                let exit = exit_data(&events);
                assert_eq!(exit["code"], 0, "round {round}, job {id}: {exit}");
                assert_eq!(exit["stdout_bytes"], out, "round {round}, job {id}: {exit}");
                assert_eq!(exit["stderr_bytes"], err, "round {round}, job {id}: {exit}");
                let log = get(addr, &format!("/jobs/{id}/log"));
                assert_eq!(log.status, 200);
                assert_eq!(
                    log.body.len(),
                    out + err,
                    "round {round}, job {id}: raw log"
                );
            }
        }
    }

    fn a_job_that_closes_stdout_keeps_running(rt: Runtime) {
        let cfg = config(json!({
            "quiet": sh("echo before; exec >&-; sleep 2; echo done >&2")
        }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let (id, _) = start_job(server.addr(), "quiet", &[]);
        let events = whole_stream(server.addr(), &id);
        assert_whole(&events);
        assert_eq!(text_of(&events, "stdout"), "before\n");
        assert_eq!(
            text_of(&events, "stderr"),
            "done\n",
            "the job ran on after closing stdout"
        );
        let exit = exit_data(&events);
        assert_eq!(exit["code"], 0, "{exit}");
        assert!(exit.get("reason").is_none_or(Value::is_null), "{exit}");
    }

    fn a_job_ignoring_sigterm_is_killed_after_the_grace(rt: Runtime) {
        let cfg = config(json!({
            "stubborn": {
                "argv": ["sh", "-c", "trap '' TERM; echo ready; sleep 60; echo survived"],
                "stop_grace_s": 1
            }
        }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let (id, _) = start_job(server.addr(), "stubborn", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let start = events.next_event(STREAM_BOUND).expect("start");
        let pgid = data(&start)["pid"].as_u64().expect("pid") as u32;
        let ready = events.next_event(STREAM_BOUND).expect("ready");
        assert_eq!(data(&ready)["text"], "ready\n");
        let t0 = Instant::now();
        assert_eq!(delete(server.addr(), &format!("/jobs/{id}")).status, 202);
        let rest = events.collect_to_end(STREAM_BOUND);
        let exit = exit_data(&rest);
        assert_eq!(exit["signal"], "SIGKILL", "{exit}");
        assert_eq!(exit["reason"], "stopped", "{exit}");
        assert!(!text_of(&rest, "stdout").contains("survived"));
        eprintln!(
            "figures: SIGTERM ignored; exit after {:?} (grace 1 s)",
            t0.elapsed()
        );
        assert!(
            wait_gone(pgid, 5 * SECOND) && group_members(pgid).is_empty(),
            "group {pgid} survives: {:?}",
            group_members(pgid)
        );
    }

    fn a_process_tree_dies_whole_on_stop(rt: Runtime) {
        // 1 + 3 + 9 shells and 18 sleeps: 31 processes, three levels deep.
        let script = r#"for i in 1 2 3; do sh -c 'for j in 1 2 3; do sh -c "sleep 300 & sleep 300 & wait" & done; wait' & done; echo ready; wait"#;
        let cfg = config(json!({ "tree": sh(script) }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let (id, _) = start_job(server.addr(), "tree", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let start = events.next_event(STREAM_BOUND).expect("start");
        let pgid = data(&start)["pid"].as_u64().expect("pid") as u32;
        let deadline = Instant::now() + 20 * SECOND;
        let members = loop {
            let members = group_members(pgid);
            if members.len() >= 31 || Instant::now() >= deadline {
                break members;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(members.len() >= 31, "the tree did not grow: {members:?}");
        assert_eq!(delete(server.addr(), &format!("/jobs/{id}")).status, 202);
        let rest = events.collect_to_end(STREAM_BOUND);
        assert_eq!(exit_data(&rest)["reason"], "stopped");
        for pid in &members {
            assert!(
                wait_gone(*pid, 10 * SECOND),
                "pid {pid} of the tree survived the stop"
            );
        }
        assert!(group_members(pgid).is_empty(), "{:?}", group_members(pgid));
    }

    fn an_output_limit_inside_a_character(rt: Runtime) {
        // "é" is two bytes; an odd limit falls between them.
        let cfg = config(json!({
            "accents": { "argv": ["sh", "-c", "while :; do printf 'é'; done"], "max_output_bytes": 1001 }
        }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let (id, _) = start_job(server.addr(), "accents", &[]);
        let status = wait_for_state(server.addr(), &id, |s| s["exit"].is_object(), 20 * SECOND);
        assert_eq!(status["state"], "output_limit", "{status:#}");
        let events = whole_stream(server.addr(), &id);
        assert_whole(&events);
        let exit = exit_data(&events);
        assert_eq!(exit["reason"], "output_limit", "{exit}");
        let counted = exit["stdout_bytes"].as_u64().expect("stdout_bytes");
        assert!(counted <= 1001, "{exit}");
        let raw = get(server.addr(), &format!("/jobs/{id}/log"));
        assert_eq!(raw.status, 200);
        assert_eq!(
            raw.body.len() as u64,
            counted,
            "the raw log holds the counted bytes"
        );
        let whole = raw.body.len() / 2 * 2;
        assert!(
            raw.body[..whole].chunks(2).all(|c| c == "é".as_bytes()),
            "{:?}",
            raw.body
        );
        // The events carry the same bytes, a cut character as one U+FFFD.
        assert_eq!(
            text_of(&events, "stdout"),
            String::from_utf8_lossy(&raw.body)
        );
    }
);

/// `bytes` of `/dev/urandom` written at full speed, watched by `subscribers` raw
/// readers connected before it starts, each checked to get every event.
fn binary_flood(rt: Runtime, bytes: u64, subscribers: usize, bound: Duration) {
    let go = go_file();
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; head -c {bytes} /dev/urandom",
        go = go.display()
    );
    let cfg = json!({
        "commands": { "flood": sh(&script) },
        "limits": { "max_subscribers": subscribers + 10 }
    });
    let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
    let (id, _) = start_job(server.addr(), "flood", &[]);
    let path = format!("/jobs/{id}/events");
    let addr = server.addr();
    let t0 = Instant::now();
    let results: Vec<Result<Counted, String>> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..subscribers)
            .map(|_| {
                let path = &path;
                scope.spawn(move || count_stream(addr, path, bound))
            })
            .collect();
        // Everyone is connected (the job waits for `go`) before output starts.
        let all_in = (0..200).any(|_| {
            let n = metric(addr, "spout_subscribers");
            n >= subscribers as u64 || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        std::fs::write(&go, b"go").expect("writing the go file");
        assert!(all_in, "not every subscriber connected");
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect()
    });
    let _ = std::fs::remove_file(&go);
    let took = t0.elapsed();
    let server_cpu = spout_tests::procfs::usage(server.pid()).cpu;
    // The reference: one decoded stream, checked event by event.
    let events = whole_stream(addr, &id);
    assert_whole(&events);
    let exit = exit_data(&events);
    assert_eq!(exit["stdout_bytes"].as_u64(), Some(bytes), "{exit}");
    assert_eq!(exit["code"], 0, "{exit}");
    let expected = events.len() as u64;
    for (i, r) in results.iter().enumerate() {
        let c = r.as_ref().unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        assert_eq!(
            c.ids, expected,
            "subscriber {i} got {} of {expected} events",
            c.ids
        );
    }
    eprintln!(
        "figures: {bytes} random bytes ({} events) to {subscribers} subscribers in {took:?}, server CPU {server_cpu:?}",
        expected
    );
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// What a raw reader saw.
struct Counted {
    /// `id:` lines in the de-chunked stream.
    ids: u64,
}

/// Reads a whole event stream without decoding it (hundreds at once must be cheap):
/// de-chunks on the fly, counts `id:` lines, and requires the exit event and the
/// final zero chunk.
fn count_stream(addr: SocketAddr, path: &str, bound: Duration) -> Result<Counted, String> {
    let deadline = Instant::now() + bound;
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut wire = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut dechunk = Dechunk::default();
    let mut head_done = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no end within {bound:?}; {} ids so far",
                dechunk.ids
            ));
        }
        c.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = c.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed before the zero chunk; {} ids", dechunk.ids));
        }
        if !head_done {
            wire.extend_from_slice(&chunk[..n]);
            let Some(end) = wire.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !wire.starts_with(b"HTTP/1.1 200") {
                return Err(format!("answer: {:?}", String::from_utf8_lossy(&wire)));
            }
            head_done = true;
            let rest = wire.split_off(end + 4);
            dechunk.feed(&rest)?;
        } else {
            dechunk.feed(&chunk[..n])?;
        }
        if dechunk.done {
            if !dechunk.saw_exit {
                return Err("ended without an exit event".into());
            }
            if let Some((want, got)) = dechunk.jump {
                return Err(format!(
                    "expected id {want}, got id {got}: events were skipped"
                ));
            }
            return Ok(Counted { ids: dechunk.ids });
        }
    }
}

/// An on-the-fly de-chunker that checks the `id:` lines run 1, 2, 3, … and spots
/// `event: exit` in the body.
#[derive(Default)]
struct Dechunk {
    /// Hex size line being read (`None` while in data).
    size_line: Vec<u8>,
    /// Data bytes left in the current chunk, then its CRLF.
    left: usize,
    crlf_left: usize,
    /// The first bytes of the line being read.
    line: Vec<u8>,
    ids: u64,
    saw_exit: bool,
    done: bool,
    seen: Vec<u64>,
    /// The first place the ids were not consecutive: (expected, got).
    jump: Option<(u64, u64)>,
}

impl Dechunk {
    fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        while !input.is_empty() && !self.done {
            if self.left > 0 {
                let n = self.left.min(input.len());
                self.body(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.crlf_left = 2;
                }
            } else if self.crlf_left > 0 {
                input = &input[1..];
                self.crlf_left -= 1;
            } else {
                let b = input[0];
                input = &input[1..];
                if b != b'\n' {
                    self.size_line.push(b);
                    continue;
                }
                let line = String::from_utf8_lossy(&self.size_line).trim().to_string();
                self.size_line.clear();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                if size == 0 {
                    self.done = true;
                } else {
                    self.left = size;
                }
            }
        }
        Ok(())
    }

    /// Looks at whole lines only (an `id:` line may be split across reads): keeps
    /// the first bytes of the current line, judges it at its `\n`.
    fn body(&mut self, data: &[u8]) {
        for &b in data {
            if b != b'\n' {
                if self.line.len() < 32 {
                    self.line.push(b);
                }
                continue;
            }
            if let Some(digits) = self.line.strip_prefix(b"id: ") {
                let id: u64 = String::from_utf8_lossy(digits).parse().unwrap_or(0);
                let want = self.seen.last().map_or(1, |l| l + 1);
                if id != want && self.jump.is_none() {
                    self.jump = Some((want, id));
                }
                self.seen.push(id);
                self.ids += 1;
            }
            self.saw_exit |= self.line == b"event: exit";
            self.line.clear();
        }
    }
}

#[test]
fn dechunk_counts_across_chunk_and_read_boundaries() {
    let body = b"retry: 10\n\nid: 1\nevent: start\ndata: {}\n\nid: 2\nevent: exit\ndata: {}\n\n";
    let mut wire = Vec::new();
    for piece in body.chunks(7) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    for step in [1, 3, 5, 1000] {
        let mut d = Dechunk::default();
        for part in wire.chunks(step) {
            d.feed(part).unwrap();
        }
        assert!(d.done && d.saw_exit, "step {step}");
        assert_eq!(d.ids, 2, "step {step}");
    }
}

#[test]
fn dechunk_one_chunk_per_event() {
    let events: [&[u8]; 3] = [
        b"retry: 10\n\n",
        b"id: 1\nevent: start\ndata: {}\n\n",
        b"id: 2\nevent: exit\ndata: {}\n\n",
    ];
    let mut wire = Vec::new();
    for piece in events {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut d = Dechunk::default();
    d.feed(&wire).unwrap();
    assert_eq!(d.ids, 2);
}
