//! Hostile HTTP over raw TCP: a table of malformed and tricky request heads with the
//! answer each must get, then a deterministic mutation fuzzer (fixed seeds, a bounded
//! number of cases) over a corpus of valid requests. Every exchange must end, within
//! a bound, in clean HTTP answers (never a `500`) or a closed connection; the server
//! must stay up (a normal request afterwards works) and never panic.
//!
//! The fuzzer's size: `SPOUT_FUZZ_CASES` (default 2,000 per runtime; the soak script
//! runs 50,000). A failing case prints its seed and bytes, so it can be replayed.

mod common;

use common::*;
use serde_json::json;
use spout_tests::{both_runtimes, get, start_job, wait_for_state, Response, Runtime, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest one exchange may take: the core's head timeout
/// (`spout_core::http::HEAD_TIMEOUT`, 10 s) plus a margin for a loaded machine.
/// Since the client half-closes after sending, a server answers (or closes) long
/// before that; the bound only catches a hang.
const EXCHANGE_BOUND: Duration = Duration::from_secs(15);

fn server_config() -> String {
    json!({
        "commands": {
            "hi": sh("echo hi"),
            "greet": { "argv": ["echo"], "args": { "max": 2, "max_len": 32 } }
        }
    })
    .to_string()
}

/// What one exchange brought back.
struct Exchange {
    bytes: Vec<u8>,
    /// The server closed the connection (as opposed to the bound passing).
    closed: bool,
}

/// Sends `request`, half-closes, and reads until the server closes or the bound
/// passes. The half-close tells the server no more bytes will come, so an incomplete
/// request must be answered or dropped at once instead of at the head timeout.
fn exchange(addr: SocketAddr, request: &[u8]) -> Exchange {
    let deadline = Instant::now() + EXCHANGE_BOUND;
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    // A server may answer a bad head and close before reading it all: a failed
    // write is not a failure.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Exchange {
                bytes,
                closed: false,
            };
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Exchange {
                    bytes,
                    closed: true,
                }
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Exchange {
                    bytes,
                    closed: false,
                }
            }
            // A reset after the answer still leaves the answer in `bytes`.
            Err(_) => {
                return Exchange {
                    bytes,
                    closed: true,
                }
            }
        }
    }
}

/// The status codes of the response heads in `bytes`, in order, read with httparse
/// (heads only: enough for pipelined answers whose bodies are framed by length).
fn statuses(bytes: &[u8]) -> Result<Vec<u16>, String> {
    // Whole responses when they parse; a HEAD answer (no body) defeats body framing,
    // so fall back to the first head alone.
    if let Ok(all) = Response::parse_all(bytes) {
        return Ok(all.iter().map(|r| r.status).collect());
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Ok(vec![response.code.unwrap_or(0)]),
        Ok(httparse::Status::Partial) => Err("an incomplete response head".into()),
        Err(e) => Err(format!("a malformed response head: {e}")),
    }
}

/// Checks an answer is clean HTTP (or nothing) and returns its statuses.
fn clean_answer(what: &str, request: &[u8], got: &Exchange) -> Vec<u16> {
    assert!(
        got.closed,
        "{what}: the server neither answered-and-closed nor closed within {EXCHANGE_BOUND:?} after a half-close\nrequest: {:?}\ngot: {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(&got.bytes)
    );
    if got.bytes.is_empty() {
        return Vec::new();
    }
    let statuses = statuses(&got.bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: {e}\nrequest: {:?}\ngot: {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&got.bytes)
        )
    });
    for &status in &statuses {
        assert!(
            (200..500).contains(&status) || [501, 503, 505].contains(&status),
            "{what}: status {status} is not a clean answer\nrequest: {:?}\ngot: {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&got.bytes)
        );
    }
    statuses
}

fn assert_alive(server: &Server, after: &str) {
    let response = spout_tests::try_request(server.addr(), "GET", "/healthz", &[], b"")
        .unwrap_or_else(|e| panic!("after {after}: /healthz failed: {e}"));
    assert_eq!(response.status, 200, "after {after}: {}", response.text());
}

fn assert_no_panic(server: &Server) {
    let stderr = server.stderr_text();
    assert!(
        !stderr.contains("panicked"),
        "the server panicked:\n{stderr}"
    );
}

/// One hand-written hostile request and the statuses it may get. `0` in `ok` means
/// "closed without an answer" is fine too.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    ok: &'static [u16],
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, ok: &'static [u16]) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        ok,
    }
}

fn hostile_table(addr: SocketAddr, job: &str) -> Vec<Case> {
    let host = format!("Host: {addr}\r\n");
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\n{host}{extra}\r\n");
    let post = |extra: &str, body: &str| {
        format!("POST /jobs HTTP/1.1\r\n{host}Content-Type: application/json\r\n{extra}\r\n{body}")
    };
    let jpost = |body: &str| post(&format!("Content-Length: {}\r\n", body.len()), body);
    let body = r#"{"command":"hi"}"#;
    let mut nul = get("/healthz", "X-A: a").into_bytes();
    nul.truncate(nul.len() - 2);
    nul.extend_from_slice(b"\0b\r\n\r\n");
    let mut non_utf8_path = b"GET /jobs/\xff\xfe HTTP/1.1\r\n".to_vec();
    non_utf8_path.extend_from_slice(host.as_bytes());
    non_utf8_path.extend_from_slice(b"\r\n");
    let mut non_utf8_value = get("/healthz", "").into_bytes();
    non_utf8_value.truncate(non_utf8_value.len() - 2);
    non_utf8_value.extend_from_slice(b"X-Name: caf\xe9\r\n\r\n");
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        case("garbage request line", "GARBAGE\r\n\r\n", &[400, 0]),
        case("empty request line", "\r\n\r\n", &[400, 0]),
        case(
            "binary junk",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0xff, 0xff],
            &[400, 0],
        ),
        case(
            "tls client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            &[400, 0],
        ),
        case(
            "missing version",
            format!("GET /healthz\r\n{host}\r\n"),
            &[400, 0],
        ),
        case(
            "HTTP/2.0 version",
            format!("GET /healthz HTTP/2.0\r\n{host}\r\n"),
            &[505, 400, 0],
        ),
        case(
            "two Host fields",
            get("/healthz", "Host: other\r\n"),
            &[400],
        ),
        case(
            "lowercase method",
            format!("get /healthz HTTP/1.1\r\n{host}\r\n"),
            &[400, 405, 501],
        ),
        case(
            "unknown method",
            format!("BREW /healthz HTTP/1.1\r\n{host}\r\n"),
            &[405, 501, 400],
        ),
        case(
            "huge header value",
            get("/healthz", &format!("X-Big: {}\r\n", "a".repeat(20_000))),
            &[431, 400, 0],
        ),
        case(
            "header section past 16 KiB in small fields",
            get(
                "/healthz",
                &"X-Pad: 0123456789012345678901234567890123456789\r\n".repeat(500),
            ),
            &[431, 400, 0],
        ),
        case(
            "200 header fields",
            get("/healthz", &many_headers),
            &[431, 400, 0],
        ),
        case(
            "huge URL",
            get(&format!("/jobs/{}", "a".repeat(20_000)), ""),
            &[414, 431, 400, 404, 0],
        ),
        case("NUL in a header value", nul, &[400]),
        case(
            "bare CR in a header value",
            get("/healthz", "X-A: a\rb\r\n"),
            &[400],
        ),
        case(
            "bare LF line ends",
            format!("GET /healthz HTTP/1.1\n{}\n\n", host.trim_end()),
            &[200, 400],
        ),
        case(
            "header without colon",
            get("/healthz", "NoColon\r\n"),
            &[400],
        ),
        case("space before colon", get("/healthz", "X-A : b\r\n"), &[400]),
        case(
            "obs-fold continuation line",
            get("/healthz", "X-A: a\r\n  folded\r\n"),
            &[400],
        ),
        case("non-UTF-8 path", non_utf8_path, &[400, 404, 0]),
        case("non-UTF-8 header value", non_utf8_value, &[200, 400, 0]),
        case(
            "absolute-form target",
            format!("GET http://{addr}/healthz HTTP/1.1\r\n{host}\r\n"),
            &[200, 400, 404],
        ),
        case(
            "asterisk-form GET",
            format!("GET * HTTP/1.1\r\n{host}\r\n"),
            &[400, 404, 405],
        ),
        case("dot-dot path", get("/../../etc/passwd", ""), &[400, 404]),
        case(
            "percent-encoded dot-dot",
            get("/%2e%2e/%2e%2e/etc/passwd", ""),
            &[400, 404],
        ),
        case(
            "dot-dot inside jobs",
            get("/jobs/..%2f..%2fetc%2fpasswd/log", ""),
            &[400, 404],
        ),
        case(
            "encoded slash in id",
            get(&format!("/jobs/{job}%2Flog"), ""),
            &[400, 404],
        ),
        case(
            "NUL percent-encoded",
            get("/jobs/%00/events", ""),
            &[400, 404],
        ),
        case(
            "bad percent escape in query",
            get(&format!("/jobs/{job}/events?last_event_id=%zz"), ""),
            &[400],
        ),
        case(
            "two Content-Length, differing",
            post("Content-Length: 16\r\nContent-Length: 17\r\n", body),
            &[400],
        ),
        case(
            "Content-Length with Transfer-Encoding",
            post(
                "Content-Length: 16\r\nTransfer-Encoding: chunked\r\n",
                &format!("10\r\n{body}\r\n0\r\n\r\n"),
            ),
            &[400, 501, 411],
        ),
        case(
            "negative Content-Length",
            post("Content-Length: -1\r\n", body),
            &[400],
        ),
        case(
            "Content-Length with a plus",
            post("Content-Length: +16\r\n", body),
            &[400],
        ),
        case(
            "Content-Length overflowing u64",
            post("Content-Length: 99999999999999999999999\r\n", body),
            &[400, 413],
        ),
        case(
            "Content-Length past the body limit",
            post("Content-Length: 10000000\r\n", body),
            &[413],
        ),
        case(
            "Content-Length longer than what is sent",
            post("Content-Length: 100\r\n", body),
            &[400, 0],
        ),
        case(
            "invalid chunk size",
            post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"),
            &[400, 411, 501],
        ),
        case(
            "chunk size overflowing",
            post("Transfer-Encoding: chunked\r\n", "ffffffffffffffffffff\r\n"),
            &[400, 411, 413, 501],
        ),
        case(
            "unknown transfer coding",
            post("Transfer-Encoding: gzip\r\n", body),
            &[400, 411, 501],
        ),
        case(
            "body with wrong content type",
            post("Content-Length: 16\r\n", "").replace("application/json", "text/plain") + body,
            &[415],
        ),
        case(
            "Expect: 100-continue",
            post("Content-Length: 16\r\nExpect: 100-continue\r\n", body),
            &[201],
        ),
        case(
            "unknown Expect",
            post("Content-Length: 16\r\nExpect: coffee\r\n", body),
            &[417, 400],
        ),
        case("HTTP/1.0 request", "GET /healthz HTTP/1.0\r\n\r\n", &[200]),
        case(
            "HTTP/1.0 keep-alive",
            "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            &[200],
        ),
        case(
            "HEAD",
            format!("HEAD /healthz HTTP/1.1\r\n{host}\r\n"),
            &[200],
        ),
        case(
            "pipelined three",
            format!(
                "{}{}{}",
                get("/healthz", ""),
                get("/commands", ""),
                get("/nope", "")
            ),
            &[200, 404],
        ),
        case(
            "pipelined after a bad one",
            format!("GARBAGE\r\n\r\n{}", get("/healthz", "")),
            &[400, 0],
        ),
        case(
            "malformed Last-Event-ID",
            get(&format!("/jobs/{job}/events"), "Last-Event-ID: 1x\r\n"),
            &[400],
        ),
        case(
            "Last-Event-ID beyond the end",
            get(&format!("/jobs/{job}/events"), "Last-Event-ID: 999999\r\n"),
            &[400],
        ),
        case(
            "huge Last-Event-ID",
            get(
                &format!("/jobs/{job}/events"),
                "Last-Event-ID: 99999999999999999999999999\r\n",
            ),
            &[400],
        ),
        case(
            "args with a NUL",
            jpost(r#"{"command":"greet","args":["a\u0000b"]}"#),
            &[400],
        ),
        case(
            "JSON nested deep",
            jpost(&format!("{}{}", "[".repeat(20_000), "]".repeat(20_000))),
            &[400, 413],
        ),
        case(
            "JSON with a lone surrogate",
            jpost(r#"{"command":"hi\ud800"}"#),
            &[400, 404],
        ),
    ]
}

fn hostile_table_case(rt: Runtime) {
    let server = Server::start_with_config(rt, &server_config(), &[]);
    let (job, _) = start_job(server.addr(), "hi", &[]);
    wait_for_state(server.addr(), &job, |s| s["exit"].is_object(), 10 * SECOND);
    let mut failures = Vec::new();
    for case in hostile_table(server.addr(), &job) {
        let got = exchange(server.addr(), &case.bytes);
        if !got.closed {
            failures.push(format!(
                "{}: neither answered-and-closed nor closed within {EXCHANGE_BOUND:?} after a half-close\n    request: {:?}\n    answer so far: {:?}",
                case.name,
                String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(200)]),
                String::from_utf8_lossy(&got.bytes[..got.bytes.len().min(300)])
            ));
            assert_alive(&server, case.name);
            continue;
        }
        let statuses = clean_answer(case.name, &case.bytes, &got);
        let fine = if statuses.is_empty() {
            case.ok.contains(&0)
        } else {
            statuses.iter().all(|s| case.ok.contains(s))
        };
        if !fine {
            failures.push(format!(
                "{}: got {statuses:?} (closed without answer when empty), want one of {:?}\n    request: {:?}\n    answer:  {:?}",
                case.name,
                case.ok,
                String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(200)]),
                String::from_utf8_lossy(&got.bytes[..got.bytes.len().min(300)])
            ));
        }
        assert_alive(&server, case.name);
        if case.name.contains("dot-dot") {
            assert!(
                !String::from_utf8_lossy(&got.bytes).contains("root:"),
                "{}: a file leaked",
                case.name
            );
        }
    }
    assert_no_panic(&server);
    assert!(
        failures.is_empty(),
        "{} of the hostile requests got the wrong answer:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The table on each runtime.
mod hostile_requests_get_clean_answers {
    use super::*;

    /// The table on `spout` (smol).
    #[test]
    fn smol() {
        hostile_table_case(Runtime::Smol)
    }

    /// The table on `spout-blocking`.
    #[test]
    fn blocking() {
        hostile_table_case(Runtime::Blocking)
    }
}

both_runtimes!(
    /// RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status
    /// code to any HTTP/1.1 request message that lacks a Host header field".
    fn http11_without_host_is_400(rt: Runtime) {
        let server = Server::start_with_config(rt, &server_config(), &[]);
        let request = b"GET /healthz HTTP/1.1\r\n\r\n";
        let got = exchange(server.addr(), request);
        assert_eq!(clean_answer("no Host", request, &got), vec![400]);
        // HTTP/1.0 has no Host requirement.
        let request = b"GET /healthz HTTP/1.0\r\n\r\n";
        let got = exchange(server.addr(), request);
        assert_eq!(clean_answer("1.0 without Host", request, &got), vec![200]);
    }

    fn mutation_fuzzer_never_breaks_the_server(rt: Runtime) {
        let cases = std::env::var("SPOUT_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000u64);
        fuzz(rt, cases);
    }
);

/// Runs `cases` mutated requests against one server from four client threads, each
/// with its own fixed seed.
fn fuzz(rt: Runtime, cases: u64) {
    let server = Server::start_with_config(rt, &server_config(), &[]);
    let (job, _) = start_job(server.addr(), "hi", &[]);
    wait_for_state(server.addr(), &job, |s| s["exit"].is_object(), 10 * SECOND);
    let corpus = corpus(server.addr(), &job);
    const THREADS: u64 = 4;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let corpus = &corpus;
            let server = &server;
            scope.spawn(move || {
                for n in (t..cases).step_by(THREADS as usize) {
                    let seed = 0x5eed_0000 + n;
                    let mut rng = Rng(seed);
                    let base = &corpus[rng.below(corpus.len() as u64) as usize];
                    let request = mutate(&mut rng, base);
                    let got = exchange(server.addr(), &request);
                    clean_answer(&format!("fuzz seed {seed:#x}"), &request, &got);
                    if n % 100 == t {
                        assert_alive(server, &format!("fuzz seed {seed:#x}"));
                    }
                }
            });
        }
    });
    assert_alive(&server, "the fuzzer");
    assert_no_panic(&server);
    // Not a job was left behind by a mutated POST (only `hi`, which ends at once).
    let jobs = get(server.addr(), "/jobs").json();
    for j in jobs.as_array().expect("a job list") {
        let id = j["id"].as_str().unwrap();
        wait_for_state(server.addr(), id, |s| s["exit"].is_object(), 20 * SECOND);
    }
}

/// Valid requests the mutations start from: every route, both body framings.
fn corpus(addr: SocketAddr, job: &str) -> Vec<Vec<u8>> {
    let h = format!("Host: {addr}\r\n");
    let body = r#"{"command":"greet","args":["x"]}"#;
    [
        format!("GET /healthz HTTP/1.1\r\n{h}\r\n"),
        format!("GET / HTTP/1.1\r\n{h}Accept: text/html\r\n\r\n"),
        format!("GET /commands HTTP/1.1\r\n{h}\r\n"),
        format!("GET /jobs HTTP/1.1\r\n{h}Connection: keep-alive\r\n\r\n"),
        format!("GET /jobs/{job} HTTP/1.1\r\n{h}\r\n"),
        format!("GET /jobs/{job}/events HTTP/1.1\r\n{h}Accept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n"),
        format!("GET /jobs/{job}/events?tail=1&last_event_id=2 HTTP/1.1\r\n{h}\r\n"),
        format!("GET /jobs/{job}/log HTTP/1.1\r\n{h}\r\n"),
        format!("GET /metrics HTTP/1.1\r\n{h}\r\n"),
        format!("DELETE /jobs/{job} HTTP/1.1\r\n{h}\r\n"),
        format!("OPTIONS /jobs HTTP/1.1\r\n{h}Origin: http://x.example\r\nAccess-Control-Request-Method: POST\r\n\r\n"),
        format!("POST /jobs HTTP/1.1\r\n{h}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
        format!("POST /jobs HTTP/1.1\r\n{h}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
        format!("GET /healthz HTTP/1.1\r\n{h}\r\nGET /jobs HTTP/1.1\r\n{h}\r\n"),
        "GET /healthz HTTP/1.0\r\n\r\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Bytes that break parsers.
const NASTY: &[&[u8]] = &[
    b"\0",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b":",
    b"%",
    b"%00",
    b"%2e%2e/",
    b"../",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x7f",
    b"HTTP/1.1",
    b"chunked",
    b"-1",
    b"99999999999999999999",
    b"?",
    b"#",
    b"\"",
    b"\\",
    b"{",
    b"}",
];

/// Header lines that stress framing and routing.
const NASTY_HEADERS: &[&str] = &[
    "Content-Length: 5\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 18446744073709551616\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: identity\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n",
    "Host: evil.example\r\n",
    "Authorization: Bearer \r\n",
    "Authorization: Basic Zm9vOmJhcg==\r\n",
    "Last-Event-ID: 0\r\n",
    "Last-Event-ID: \r\n",
    "Origin: null\r\n",
    "Content-Type: application/json; charset=utf-16\r\n",
    "X-Forwarded-For: 127.0.0.1\r\n",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() as u64 + 1) as usize;
        match rng.below(10) {
            // Flip one bit.
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            // A random byte.
            1 => out.insert(at, rng.below(256) as u8),
            // A nasty token.
            2 | 3 => {
                let token = NASTY[rng.below(NASTY.len() as u64) as usize];
                out.splice(at..at, token.iter().copied());
            }
            // Delete a run.
            4 => {
                let end = (at + 1 + rng.below(16) as usize).min(out.len());
                out.drain(at.min(end)..end);
            }
            // Truncate.
            5 => out.truncate(at),
            // A nasty header line after the request line.
            6 => {
                let line = NASTY_HEADERS[rng.below(NASTY_HEADERS.len() as u64) as usize];
                let after_first = out
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(out.len(), |i| i + 2);
                out.splice(after_first..after_first, line.bytes());
            }
            // Repeat a slice many times (long lines, many headers).
            7 => {
                let end = (at + 1 + rng.below(40) as usize).min(out.len());
                let piece = out[at.min(end)..end].to_vec();
                let times = 1 + rng.below(600) as usize;
                let grown: Vec<u8> = piece.repeat(times);
                out.splice(end..end, grown);
            }
            // Duplicate the whole request (pipelining).
            8 => {
                let copy = out.clone();
                out.extend_from_slice(&copy);
            }
            // Swap a byte with a random ASCII one.
            _ if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = b' ' + rng.below(95) as u8;
            }
            _ => {}
        }
    }
    out
}

/// SplitMix64: a tiny deterministic generator, so a seed names a case forever.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[test]
fn the_generator_is_deterministic() {
    let a: Vec<u64> = (0..4).map(|_| Rng(7).next()).collect();
    assert!(a.windows(2).all(|w| w[0] == w[1]));
    let mut r = Rng(7);
    let (x, y) = (r.next(), r.next());
    assert_ne!(x, y);
    let base = b"GET / HTTP/1.1\r\n\r\n";
    assert_eq!(mutate(&mut Rng(9), base), mutate(&mut Rng(9), base));
}

#[test]
fn duration_bound_covers_the_head_timeout() {
    assert!(EXCHANGE_BOUND > spout_core::http::HEAD_TIMEOUT);
}
