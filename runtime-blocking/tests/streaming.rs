//! The real `spout-blocking` binary over loopback: each event reaches the client
//! when it is written (not buffered until the end), a client that goes away is
//! noticed and its thread ends, and SIGTERM ends jobs and streams and exits 0.
//!
//! Plain `std::net::TcpStream` and raw bytes on purpose: nothing between the server
//! and the assertion may buffer.

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on every wait: generous, since machines are noisy; a pass never waits it.
const BOUND: Duration = Duration::from_secs(20);

/// A running server, killed (with the job groups it reported) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    job_pids: Vec<i32>,
}

impl Server {
    fn start(name: &str, config: &str) -> Server {
        // One server per test, and test names are unique in this file.
        let dir =
            std::env::temp_dir().join(format!("spout-blocking-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("spout.json");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spout-blocking"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("spout: listening on http://") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx.recv_timeout(BOUND).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no listening line: {}", stderr.lock().unwrap());
        });
        Server {
            child,
            addr,
            dir,
            stderr,
            job_pids: Vec::new(),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// One request on its own connection; the whole answer (until close).
    fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = self.connect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Starts a job of `command`; its id.
    fn start_job(&mut self, command: &str) -> String {
        let answer = self.request("POST", "/jobs", &format!(r#"{{"command":"{command}"}}"#));
        assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
        let id = field(&answer, "\"id\":\"");
        // Remember its process group, so a failing test still ends it.
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            let status = self.request("GET", &format!("/jobs/{id}"), "");
            if let Some(pid) = status
                .split("\"pid\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok())
            {
                self.job_pids.push(pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        id
    }

    fn subscribers(&self) -> String {
        let metrics = self.request("GET", "/metrics", "");
        metrics
            .lines()
            .find(|l| l.starts_with("spout_subscribers "))
            .unwrap_or_else(|| panic!("no spout_subscribers in {metrics}"))
            .to_owned()
    }

    /// Waits for `/metrics` to show `want` subscribers.
    fn wait_subscribers(&self, want: usize) {
        let want = format!("spout_subscribers {want}");
        let deadline = Instant::now() + BOUND;
        loop {
            let got = self.subscribers();
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "still {got:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.job_pids {
            if let Some(pid) = Pid::from_raw(*pid) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("server log:\n{}", self.stderr.lock().unwrap());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The text after `prefix` up to the next `"`.
fn field(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        + prefix.len();
    text[start..].split('"').next().unwrap().to_owned()
}

/// Opens `GET /jobs/{id}/events`; the connection, head already written.
fn open_events(server: &Server, id: &str) -> TcpStream {
    let mut s = server.connect();
    write!(
        s,
        "GET /jobs/{id}/events HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads from `s` into `seen` until `seen` holds `needle`.
fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "waiting for {needle:?}: {e}; got {}",
                String::from_utf8_lossy(seen)
            )
        });
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn each_event_arrives_when_it_is_written() {
    let mut server = Server::start(
        "stream",
        r#"{"commands": {"twice": {"argv": ["sh", "-c", "echo one; sleep 1; echo two"]}}}"#,
    );
    let id = server.start_job("twice");
    let mut s = open_events(&server, &id);
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, r#"{"text":"one\n"}"#);
    // The second line is written a second after the first: had the server held
    // the first event back (a buffering writer), both would arrive together.
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    // (Not just "two": the `start` event's argv holds the whole script.)
    assert!(
        !text.contains(r#"{"text":"two\n"}"#),
        "the first event came with the second: {text}"
    );
    read_until(&mut s, &mut seen, r#"{"text":"two\n"}"#);
    read_until(&mut s, &mut seen, "event: exit\n");
    // The stream ends with the last chunk after `exit`.
    read_until(&mut s, &mut seen, "\r\n0\r\n\r\n");
    assert!(String::from_utf8_lossy(&seen).ends_with("\r\n0\r\n\r\n"));
    assert!(server.terminate().success());
}

#[test]
fn a_client_that_leaves_is_noticed_and_its_thread_ends() {
    let mut server = Server::start(
        "leave",
        r#"{"commands": {"quiet": {"argv": ["sleep", "600"]}}, "sse": {"heartbeat_s": 1}}"#,
    );
    let id = server.start_job("quiet");
    let mut s = open_events(&server, &id);
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "event: start\n");
    assert_eq!(server.subscribers(), "spout_subscribers 1");
    drop(s);
    // Noticed at a failed write: a heartbeat at the latest.
    server.wait_subscribers(0);
    assert!(server.terminate().success());
}

#[test]
fn sigterm_stops_jobs_ends_streams_and_exits_zero() {
    let mut server = Server::start(
        "term",
        r#"{"commands": {"quiet": {"argv": ["sleep", "600"]}}}"#,
    );
    let id = server.start_job("quiet");
    let mut s = open_events(&server, &id);
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "event: start\n");
    let status = server.terminate();
    read_until(&mut s, &mut seen, "event: exit\n");
    read_until(&mut s, &mut seen, "\r\n0\r\n\r\n");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(r#""reason":"server_shutdown""#), "{text}");
    assert!(status.success(), "{status:?}");
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("spout: stopped\n"), "{log}");
}

#[test]
fn past_the_connection_bound_a_request_gets_503_with_retry_after() {
    // One subscriber allowed, so 1 + 64 connection threads: one event stream and 64
    // raw-log followers of a quiet job hold them all.
    let mut server = Server::start(
        "bound",
        r#"{"commands": {"quiet": {"argv": ["sleep", "600"]}},
            "limits": {"max_subscribers": 1}, "sse": {"heartbeat_s": 1}}"#,
    );
    let id = server.start_job("quiet");
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut s = server.connect();
        write!(
            s,
            "GET /jobs/{id}/log?follow=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        let mut seen = Vec::new();
        read_until(&mut s, &mut seen, "Transfer-Encoding: chunked\r\n\r\n");
        held.push(s);
    }
    let mut events = open_events(&server, &id);
    read_until(&mut events, &mut Vec::new(), "event: start\n");
    let answer = server.request("GET", "/healthz", "");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: "), "{answer}");
    assert!(answer.contains(r#"{"error":"#), "{answer}");
    // The stream's client leaves; its next heartbeat fails and gives the slot back.
    drop(events);
    let deadline = Instant::now() + BOUND;
    loop {
        let answer = server.request("GET", "/healthz", "");
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.terminate().success());
}
