//! The harness's own tests, against a fake server started in-process (a loopback
//! listener whose connection threads write canned bytes, with pauses where the case
//! needs bytes to arrive in pieces) and a fake server program (a shell script), never
//! against the real binaries: those are under test elsewhere.

use spout_tests::{
    binary_path, both_runtimes, delete, get, open_events, post_json, raw, raw_with_timeout,
    request, CutProxy, Response, Runtime, Server,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// A loopback server that runs `handler` on each connection in its own thread.
struct FakeServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeServer {
    fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let acceptor = {
            let (stopping, conns) = (Arc::clone(&stopping), Arc::clone(&conns));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = Arc::clone(&handler);
                    let conn = std::thread::spawn(move || handler(stream));
                    conns.lock().unwrap().push(conn);
                }
            })
        };
        FakeServer {
            addr,
            stopping,
            acceptor: Some(acceptor),
            conns,
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        for conn in std::mem::take(&mut *self.conns.lock().unwrap()) {
            // A handler that panicked already failed its own assertions in the case.
            let _ = conn.join();
        }
    }
}

/// What the fake server saw of a request.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head with httparse, then a `Content-Length` body).
fn read_request(stream: &mut TcpStream) -> Seen {
    stream.set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut slots);
        if let httparse::Status::Complete(len) = request.parse(&buf).unwrap() {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let mut seen = Seen {
                method: request.method.unwrap().to_string(),
                path: request.path.unwrap().to_string(),
                headers,
                body: buf[len..].to_vec(),
            };
            let want: usize = seen
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            while seen.body.len() < want {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "client closed mid-body");
                seen.body.extend_from_slice(&chunk[..n]);
            }
            return seen;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "client closed before a whole request");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `pieces` one by one, flushing and pausing between them so the client reads
/// them as separate arrivals.
fn write_slowly(stream: &mut TcpStream, pieces: &[&[u8]], pause: Duration) {
    stream.set_nodelay(true).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
    }
}

/// Waits until the client closes (so the fake never closes first by accident).
fn wait_for_close(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(10 * SECOND)).unwrap();
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// A fake that answers every request with `answer` and reports what it saw.
fn answering(answer: &'static [u8]) -> (FakeServer, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(move |mut stream| {
        let seen = read_request(&mut stream);
        tx.lock().unwrap().send(seen).unwrap();
        stream.write_all(answer).unwrap();
        wait_for_close(&mut stream);
    });
    (fake, rx)
}

#[test]
fn content_length_response_does_not_wait_for_close() {
    let (fake, seen) =
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: a b\r\n\r\nhello");
    let started = Instant::now();
    let response = get(fake.addr, "/healthz?x=1");
    // The fake holds the connection open: only the length can have ended the body.
    assert!(started.elapsed() < 5 * SECOND);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("x-THING"), Some("a b"));
    let seen = seen.recv().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/healthz?x=1")
    );
    assert_eq!(seen.header("host"), Some(fake.addr.to_string().as_str()));
    assert_eq!(seen.header("connection"), Some("close"));
    assert_eq!(seen.header("content-length"), None);
}

#[test]
fn chunked_response_split_across_writes_is_dechunked() {
    let fake = FakeServer::start(|mut stream| {
        read_request(&mut stream);
        write_slowly(
            &mut stream,
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"4\r",
                b"\nWiki\r\n5;note=x\r\npedia\r",
                b"\n0\r\n",
                b"Trailer-A: 1\r\n\r\n",
            ],
            Duration::from_millis(30),
        );
        wait_for_close(&mut stream);
    });
    let response = get(fake.addr, "/x");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Wikipedia");
}

#[test]
fn close_delimited_response_reads_to_close() {
    let fake = FakeServer::start(|mut stream| {
        read_request(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            .unwrap();
    });
    assert_eq!(get(fake.addr, "/").text(), "until the end");
}

#[test]
fn no_body_for_204_even_with_a_length() {
    let (fake, _seen) = answering(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
    let response = delete(fake.addr, "/jobs/abc");
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
}

#[test]
fn post_json_sends_body_and_reads_json() {
    let (fake, seen) = answering(
        b"HTTP/1.1 201 Created\r\nLocation: /jobs/j1\r\nContent-Type: application/json\r\n\
          Content-Length: 29\r\n\r\n{\"id\":\"j1\",\"state\":\"running\"}",
    );
    let response = post_json(
        fake.addr,
        "/jobs",
        &serde_json::json!({"command": "build", "args": ["test"]}),
    );
    assert_eq!(response.status, 201);
    assert_eq!(response.json()["state"], "running");
    let seen = seen.recv().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"command": "build", "args": ["test"]})
    );
}

#[test]
fn start_job_reads_location() {
    let (fake, seen) = answering(
        b"HTTP/1.1 201 Created\r\nLocation: /jobs/j1\r\nContent-Length: 29\r\n\r\n\
          {\"id\":\"j1\",\"state\":\"running\"}",
    );
    let (id, status) = spout_tests::start_job(fake.addr, "build", &["test"]);
    assert_eq!(id, "j1");
    assert_eq!(status["state"], "running");
    spout_tests::start_job(fake.addr, "build", &[]);
    let sent: Vec<serde_json::Value> = (0..2)
        .map(|_| serde_json::from_slice(&seen.recv().unwrap().body).unwrap())
        .collect();
    assert_eq!(
        sent,
        [
            serde_json::json!({"command": "build", "args": ["test"]}),
            serde_json::json!({"command": "build"}),
        ]
    );
}

#[test]
#[should_panic(expected = "201")]
fn start_job_refuses_other_statuses() {
    let (fake, _seen) = answering(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 31\r\n\r\n{\"error\":\"no command \\\"nope\\\"\"}",
    );
    spout_tests::start_job(fake.addr, "nope", &[]);
}

#[test]
fn wait_for_state_polls_until_the_predicate_holds() {
    let calls = Arc::new(Mutex::new(0));
    let fake = {
        let calls = Arc::clone(&calls);
        FakeServer::start(move |mut stream| {
            read_request(&mut stream);
            let n = {
                let mut calls = calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            let body = if n < 3 {
                r#"{"state":"running"}"#
            } else {
                r#"{"state":"exited"}"#
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
            wait_for_close(&mut stream);
        })
    };
    let status =
        spout_tests::wait_for_state(fake.addr, "j1", |s| s["state"] == "exited", 5 * SECOND);
    assert_eq!(status["state"], "exited");
    assert_eq!(*calls.lock().unwrap(), 3);
}

#[test]
fn request_sends_caller_headers_and_raw_body() {
    let (fake, seen) =
        answering(b"HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 0\r\n\r\n");
    let response = request(
        fake.addr,
        "POST",
        "/jobs",
        &[
            ("Content-Type", "text/plain"),
            ("Authorization", "Bearer t"),
        ],
        b"not json",
    );
    assert_eq!(response.status, 415);
    let seen = seen.recv().unwrap();
    assert_eq!(seen.body, b"not json");
    assert_eq!(seen.header("content-length"), Some("8"));
    assert_eq!(seen.header("authorization"), Some("Bearer t"));
}

#[test]
fn raw_sends_bytes_as_is_and_reads_to_close() {
    let answer: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 20\r\n\r\n{\"error\":\"bad line\"}";
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(move |mut stream| {
        stream.set_read_timeout(Some(5 * SECOND)).unwrap();
        let mut got = vec![0u8; 64];
        let n = stream.read(&mut got).unwrap();
        got.truncate(n);
        tx.lock().unwrap().send(got).unwrap();
        stream.write_all(answer).unwrap();
        // Dropping the stream closes it: `raw` must return at once, not at its timeout.
    });
    let started = Instant::now();
    let bytes = raw(fake.addr, b"GARBAGE \x00\r\n\r\n");
    assert!(started.elapsed() < 5 * SECOND);
    assert_eq!(bytes, answer);
    assert_eq!(rx.recv().unwrap(), b"GARBAGE \x00\r\n\r\n");
    let parsed = Response::parse(&bytes).unwrap();
    assert_eq!(parsed.status, 400);
    assert_eq!(parsed.json()["error"], "bad line");
}

#[test]
fn raw_with_timeout_returns_what_came_on_an_open_connection() {
    let fake = FakeServer::start(|mut stream| {
        stream.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        wait_for_close(&mut stream);
    });
    let bytes = raw_with_timeout(
        fake.addr,
        b"GET / HTTP/1.1\r\n\r\n",
        Duration::from_millis(300),
    );
    assert_eq!(bytes, b"HTTP/1.1 200 OK\r\n");
}

/// The SSE body the fake streams, in the pieces it writes them (chunk framing split
/// in awkward places: inside a size line, between data and CRLF, inside the final
/// chunk).
const SSE_PIECES: [&[u8]; 7] = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
      Transfer-Encoding: chunked\r\n\r\nd\r\nretry: 2000\n\n\r\n",
    b"1",
    b"3\r\nid: 1\nevent: start\n",
    b"\r\nf\r\ndata: {\"a\":1}\n\n\r",
    b"\n3\r\n:\n\n\r\n",
    b"29\r\nid: 2\nevent: exit\ndata: {\"code\":0}\n\nid:",
    b" 3\r\n0\r\n\r\n",
];

/// The de-chunked body of [`SSE_PIECES`].
const SSE_BODY: &str = "retry: 2000\n\nid: 1\nevent: start\ndata: {\"a\":1}\n\n:\n\nid: 2\nevent: exit\ndata: {\"code\":0}\n\nid: 3";

fn sse_fake(pause: Duration) -> FakeServer {
    FakeServer::start(move |mut stream| {
        read_request(&mut stream);
        write_slowly(&mut stream, &SSE_PIECES, pause);
        wait_for_close(&mut stream);
    })
}

#[test]
fn event_stream_keeps_the_exact_dechunked_bytes() {
    let fake = sse_fake(Duration::from_millis(40));
    let mut stream = open_events(fake.addr, "/jobs/j1/events", &[("Last-Event-ID", "0")])
        .unwrap_or_else(|r| panic!("not a stream: {r:?}"));
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    // The first read returns only the first piece: bytes are handed out as they come.
    let first = stream.read_some_raw(5 * SECOND);
    assert_eq!(first, b"retry: 2000\n\n");
    assert!(!stream.ended());
    assert!(stream.read_until_raw_contains(b"event: exit", 5 * SECOND));
    while !stream.ended() {
        stream.read_some_raw(5 * SECOND);
    }
    assert!(stream.finished());
    assert_eq!(stream.dropped(), None);
    assert_eq!(stream.raw(), SSE_BODY.as_bytes());
    insta::assert_snapshot!(stream.raw_text(), @r#"
    retry: 2000

    id: 1
    event: start
    data: {"a":1}

    :

    id: 2
    event: exit
    data: {"code":0}

    id: 3
    "#);
}

#[test]
fn event_stream_sends_accept_and_caller_headers() {
    let (fake, seen) = answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let mut stream =
        open_events(fake.addr, "/e?last_event_id=4", &[("Last-Event-ID", "7")]).unwrap();
    let seen = seen.recv().unwrap();
    assert_eq!(seen.path, "/e?last_event_id=4");
    assert_eq!(seen.header("accept"), Some("text/event-stream"));
    assert_eq!(seen.header("last-event-id"), Some("7"));
    assert!(stream.read_some_raw(5 * SECOND).is_empty());
    assert!(stream.finished());
}

#[test]
fn event_stream_cut_mid_chunk_is_ended_but_not_finished() {
    let fake = FakeServer::start(|mut stream| {
        read_request(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nid: 1\nda")
            .unwrap();
        // Dropping the stream here closes it mid-chunk.
    });
    let mut stream = open_events(fake.addr, "/e", &[]).unwrap();
    while !stream.ended() {
        stream.read_some_raw(5 * SECOND);
    }
    assert_eq!(stream.raw(), b"id: 1\nda");
    assert!(!stream.finished());
    assert!(stream.dropped().unwrap().contains("closed mid-body"));
}

#[test]
fn event_stream_close_drops_the_connection() {
    let (closed_tx, closed_rx) = mpsc::channel();
    let closed_tx = Mutex::new(closed_tx);
    let fake = FakeServer::start(move |mut stream| {
        read_request(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n:\n\n\r\n")
            .unwrap();
        let started = Instant::now();
        wait_for_close(&mut stream);
        closed_tx.lock().unwrap().send(started.elapsed()).unwrap();
    });
    let mut stream = open_events(fake.addr, "/e", &[]).unwrap();
    assert_eq!(stream.read_some_raw(5 * SECOND), b":\n\n");
    stream.close();
    assert!(stream.ended());
    assert!(!stream.finished());
    let waited = closed_rx.recv_timeout(5 * SECOND).unwrap();
    assert!(waited < 5 * SECOND, "server saw the close after {waited:?}");
}

#[test]
fn open_events_returns_non_200_answers() {
    let (fake, _seen) = answering(b"HTTP/1.1 204 No Content\r\n\r\n");
    let response = open_events(fake.addr, "/e", &[("Last-Event-ID", "9")])
        .err()
        .unwrap();
    assert_eq!(response.status, 204);

    let (fake, _seen) = answering(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"error\":\"id 99 is too new\"}",
    );
    let response = open_events(fake.addr, "/e", &[("Last-Event-ID", "99")])
        .err()
        .unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "id 99 is too new");
}

#[test]
fn event_stream_decodes_events_as_they_arrive() {
    use spout_tests::Item;
    let fake = sse_fake(Duration::from_millis(20));
    let mut stream = open_events(fake.addr, "/e", &[]).unwrap();
    assert_eq!(stream.next_item(5 * SECOND), Some(Item::Retry(2000)));
    let start = stream.next_event(5 * SECOND).unwrap();
    assert_eq!(
        (
            start.event_type.as_str(),
            start.data.as_str(),
            start.last_event_id.as_str()
        ),
        ("start", "{\"a\":1}", "1")
    );
    assert_eq!(stream.last_event_id(), "1");
    let rest = stream.collect_to_end(5 * SECOND);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_type, "exit");
    // The trailing `id: 3` has no line end, so it is never processed as a field.
    assert_eq!(stream.last_event_id(), "2");
    assert!(stream.finished());
}

#[test]
#[should_panic(expected = "did not end")]
fn collect_to_end_fails_on_a_stream_that_does_not_end() {
    let fake = FakeServer::start(|mut stream| {
        read_request(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n:\n\n\r\n")
            .unwrap();
        wait_for_close(&mut stream);
    });
    let mut stream = open_events(fake.addr, "/e", &[]).unwrap();
    stream.collect_to_end(Duration::from_millis(300));
}

/// A fake that answers `GET /n` with an `n`-byte body of a repeating pattern.
fn pattern_fake() -> FakeServer {
    FakeServer::start(|mut stream| {
        let seen = read_request(&mut stream);
        let n: usize = seen.path.trim_start_matches('/').parse().unwrap();
        let body = pattern(n);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        wait_for_close(&mut stream);
    })
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn proxy_forwards_both_ways() {
    let fake = pattern_fake();
    let proxy = CutProxy::start(fake.addr);
    for n in [0, 10, 200_000] {
        let response = get(proxy.addr(), &format!("/{n}"));
        assert_eq!(response.body, pattern(n), "{n} bytes through the proxy");
    }
    assert_eq!(proxy.accepted(), 3);
}

#[test]
fn proxy_cut_all_drops_open_connections_only() {
    let fake = FakeServer::start(|mut stream| {
        read_request(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        // Stream a comment every 20 ms until the connection goes away.
        while stream.write_all(b"3\r\n:\n\n\r\n").is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let proxy = CutProxy::start(fake.addr);
    let mut first = open_events(proxy.addr(), "/e", &[]).unwrap();
    assert!(first.read_until_raw_contains(b":\n\n:\n\n", 5 * SECOND));
    proxy.cut_all();
    let deadline = Instant::now() + 5 * SECOND;
    while !first.ended() && Instant::now() < deadline {
        first.read_some_raw(SECOND);
    }
    assert!(
        first.ended() && !first.finished(),
        "the cut must end the stream"
    );
    // The proxy still accepts and forwards after a cut: a client can reconnect.
    let mut second = open_events(proxy.addr(), "/e", &[]).unwrap();
    assert!(second.read_until_raw_contains(b":\n\n:\n\n", 5 * SECOND));
    assert_eq!(proxy.accepted(), 2);
}

#[test]
fn proxy_cut_after_forwards_exactly_n_bytes_per_connection() {
    let fake = pattern_fake();
    let proxy = CutProxy::cut_after(fake.addr, 50);
    for _ in 0..2 {
        let bytes = raw(proxy.addr(), b"GET /1000 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(bytes.len(), 50);
        assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
        assert_eq!(&bytes[41..], &pattern(9)[..]);
    }
}

// Which runtimes the generated tests ran with, per thread (the test threads of the
// generated tests themselves run the same case concurrently).
thread_local! {
    static RAN: std::cell::RefCell<Vec<Runtime>> = const { std::cell::RefCell::new(Vec::new()) };
}

both_runtimes!(
    fn records_its_runtime(rt: Runtime) {
        RAN.with(|ran| ran.borrow_mut().push(rt));
    }

    #[should_panic(expected = "attributes reach both tests")]
    fn attributes_reach_both(rt: Runtime) {
        panic!("attributes reach both tests ({rt})");
    }
);

#[test]
fn macro_generates_one_test_per_runtime() {
    records_its_runtime::smol();
    records_its_runtime::blocking();
    RAN.with(|ran| assert_eq!(*ran.borrow(), [Runtime::Smol, Runtime::Blocking]));
    // And the test harness lists them under names that say the runtime.
    let list = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    for name in [
        "records_its_runtime::smol: test",
        "records_its_runtime::blocking: test",
        "attributes_reach_both::smol: test",
        "attributes_reach_both::blocking: test",
    ] {
        assert!(list.lines().any(|l| l == name), "{name} not in:\n{list}");
    }
}

both_runtimes!(
    fn binary_is_built_in_the_target_dir(rt: Runtime) {
        let path = binary_path(rt);
        assert!(path.is_file(), "{}", path.display());
        assert_eq!(path.file_name().unwrap(), rt.binary_name());
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>/<binary>
        assert_eq!(path.parent(), exe.parent().unwrap().parent());
    }
);

/// A scratch dir for a fake server program, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("spout-selftest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shell script that behaves like a server on the outside: it reports its
/// arguments, starts a background "job" in its own process group, prints a listening
/// line (a made-up port) and exits 3 on SIGTERM.
fn fake_program(scratch: &Scratch) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch.0.join("fake-spout");
    let script = format!(
        r#"#!/bin/sh
echo "args: $*" >&2
echo "to stdout"
set -m
sleep 1000 &
echo "$!" >> "{jobs}"
trap 'echo "got TERM" >&2; exit 3' TERM
echo "fake: listening on http://127.0.0.1:$((20000 + $$ % 20000)) (fake)" >&2
while :; do sleep 0.05; done
"#,
        jobs = scratch.0.join("jobs").display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z'),
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + 5 * SECOND;
    while Instant::now() < deadline {
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn job_pids(scratch: &Scratch) -> Vec<u32> {
    std::fs::read_to_string(scratch.0.join("jobs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn server_passes_the_conventional_command_line_and_cleans_up() {
    let scratch = Scratch::new("cmdline");
    let program = fake_program(&scratch);
    let mut server = Server::start_program(
        &program,
        Some(r#"{"commands":{}}"#),
        &["--memory", "--", "echo", "hi"],
    );
    let dir = server.dir().to_path_buf();
    assert!(dir.starts_with(std::env::temp_dir()));
    let port = server.addr().port();
    assert_eq!(server.addr(), SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        server.url("/healthz"),
        format!("http://127.0.0.1:{port}/healthz")
    );
    let expected = format!(
        "args: serve --listen 127.0.0.1:0 --data-dir {} --config {} --memory -- echo hi\n",
        server.data_dir().display(),
        dir.join("spout.json").display()
    );
    assert!(
        server.stderr_text().starts_with(&expected),
        "{}",
        server.stderr_text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("spout.json")).unwrap(),
        r#"{"commands":{}}"#
    );
    let deadline = Instant::now() + 5 * SECOND;
    while !server.stdout_text().contains("to stdout") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.stdout_text(), "to stdout\n");
    let status = server.terminate();
    assert_eq!(status.code(), Some(3));
    server.wait_for_stderr("got TERM", 5 * SECOND);
    let jobs = job_pids(&scratch);
    drop(server);
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(
        jobs.iter().all(|&pid| wait_gone(pid)),
        "job processes left behind"
    );
}

#[test]
fn kill9_leaves_jobs_until_drop_and_restart_keeps_the_data_dir() {
    let scratch = Scratch::new("restart");
    let program = fake_program(&scratch);
    let mut server = Server::start_program(&program, None, &[]);
    let first_pid = server.pid();
    if Path::new("/usr/bin/setsid").is_file() || Path::new("/bin/setsid").is_file() {
        let stat = std::fs::read_to_string(format!("/proc/{first_pid}/stat")).unwrap();
        let sid: u32 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(sid, first_pid, "the server leads its own session");
    }
    let data_dir = server.data_dir();
    server.kill9();
    assert!(wait_gone(first_pid));
    let orphan = job_pids(&scratch)[0];
    assert!(
        !is_gone(orphan),
        "a crash leaves the job running, as a real one would"
    );
    server.restart();
    assert_ne!(server.pid(), first_pid);
    assert_eq!(server.data_dir(), data_dir);
    let stderr = server.stderr_text();
    assert_eq!(stderr.matches("args: serve").count(), 2, "{stderr}");
    assert!(stderr.contains("server restarted"), "{stderr}");
    assert_eq!(
        u32::from(server.addr().port()),
        20000 + server.pid() % 20000
    );
    let second_pid = server.pid();
    drop(server);
    assert!(wait_gone(second_pid));
    for pid in job_pids(&scratch) {
        assert!(wait_gone(pid), "job {pid} outlived the Server");
    }
}

#[test]
fn start_fails_with_stderr_when_the_program_exits_early() {
    let scratch = Scratch::new("early");
    let path = scratch.0.join("dies");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            &path,
            "#!/bin/sh\necho 'bad config: commands.x.argv' >&2\nexit 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let panic = std::panic::catch_unwind(|| Server::start_program(&path, None, &[])).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("bad config: commands.x.argv"), "{message}");
}
