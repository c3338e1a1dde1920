//! spout behind a real nginx, configured by the shipped `deploy/nginx.conf` (only its
//! addresses and certificate paths changed, see `spout_tests::nginx`):
//!
//! - HTTP/1.1 with a plain `proxy_pass` and nginx's default buffering: events arrive
//!   live, resume with `Last-Event-ID` gets exactly the rest, `204` after the end.
//! - TLS and HTTP/2: twenty event streams on one connection (curl `--parallel`), each
//!   live.
//!
//! "Live" is shown by causality, not timing: each job prints a line, then waits for a
//! file that the test creates only after that line came out of nginx. A proxy that held
//! the event back would never see the job finish, and the case fails at its bound.
//!
//! They need `/usr/sbin/nginx` (Debian `nginx-light`), `openssl` and `curl` with HTTP/2;
//! `.ci/run` installs them. Elsewhere a case skips with a message saying so — but never
//! in CI (`CI` set), where a missing program is a failure.

mod common;

use common::*;
use serde_json::json;
use spout_core::sse::{Decoder, Item};
use spout_tests::nginx::{self, Nginx, NGINX};
use spout_tests::{both_runtimes, open_events, request, start_job, Dispatched, Runtime, Server};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Streams opened at once over one HTTP/2 connection.
const STREAMS: usize = 20;

/// A command that prints `first`, waits for the file named by its argument, then prints
/// `second`.
fn gated() -> serde_json::Value {
    let mut command = sh("echo first; while [ ! -e \"$1\" ]; do sleep 0.02; done; echo second");
    command["argv"].as_array_mut().unwrap().push(json!("sh"));
    command["args"] = json!({ "max": 1, "max_len": 4096 });
    command
}

/// A server whose one command is [`gated`], with room for every job of a case.
fn gated_server(rt: Runtime) -> Server {
    let cfg = json!({
        "commands": { "gated": gated() },
        "limits": { "max_running_jobs": 32 },
    });
    Server::start_with_config(rt, &cfg.to_string(), &[])
}

/// Whether `event` is the job's `first` line.
fn is_first(event: &Dispatched) -> bool {
    event.event_type == "stdout" && data(event)["text"] == "first\n"
}

/// Every event in a whole SSE body.
fn decode(bytes: &[u8]) -> Vec<Dispatched> {
    let mut decoder = Decoder::new();
    decoder.feed(bytes);
    std::iter::from_fn(|| decoder.poll())
        .filter_map(|item| match item {
            Item::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

/// A child process killed and reaped when dropped, so a failing case leaves no curl.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

both_runtimes!(
    fn http11_default_buffering_is_live_resumes_and_ends_with_204(rt: Runtime) {
        if !nginx::require(&[(NGINX, "nginx-light"), ("openssl", "openssl")]) {
            return;
        }
        let server = gated_server(rt);
        let nginx = Nginx::start(server.addr());
        let front = nginx.http_addr();
        let go = nginx.dir().join("go");
        // Started through nginx too: the POST and its JSON pass unchanged.
        let (id, _) = start_job(front, "gated", &[go.to_str().unwrap()]);
        let path = format!("/jobs/{id}/events");

        let mut events = stream(front, &path, &[]);
        assert_eq!(events.header("content-type"), Some("text/event-stream"));
        // The job cannot write `second` before this stream has shown `first`.
        let mut got = Vec::new();
        while !got.last().is_some_and(is_first) {
            match events.next_event(STREAM_BOUND) {
                Some(event) => got.push(event),
                None => panic!(
                    "`first` did not come through nginx while the job waited (held in a \
                     buffer?); got {got:#?}, raw:\n{}",
                    events.raw_text()
                ),
            }
        }
        std::fs::write(&go, b"").unwrap();
        got.extend(events.collect_to_end(STREAM_BOUND));
        assert!(events.finished(), "{:?}", events.dropped());
        assert_whole(&got);
        assert_eq!(text_of(&got, "stdout"), "first\nsecond\n");
        assert_eq!(exit_data(&got)["code"], 0);
        // nginx changed nothing: the same events straight from spout.
        assert_eq!(whole_stream(server.addr(), &id), got);

        // Resume through nginx after every id: exactly the rest, then the end.
        for (k, event) in got[..got.len() - 1].iter().enumerate() {
            let last = event.last_event_id.as_str();
            let mut rest = stream(front, &path, &[("Last-Event-ID", last)]);
            assert_eq!(
                rest.collect_to_end(STREAM_BOUND),
                got[k + 1..],
                "after {last}"
            );
            assert!(rest.finished(), "after {last}: {:?}", rest.dropped());
        }
        // After the final event: 204, which stops EventSource, by header and by query.
        let last = got.last().unwrap().last_event_id.clone();
        for (path, headers) in [
            (path.clone(), vec![("Last-Event-ID", last.as_str())]),
            (format!("{path}?last_event_id={last}"), vec![]),
        ] {
            match open_events(front, &path, &headers) {
                Err(response) => assert_eq!(response.status, 204, "{}", response.text()),
                Ok(stream) => panic!("{path} {headers:?}: a stream after the end: {stream:?}"),
            }
        }

        // nginx passes the client's Host: spout on loopback without tokens refuses a
        // public name, so a proxy cannot publish it by accident (docs/deploy.md).
        let public = request(front, "GET", "/jobs", &[("Host", "spout.example.org")], b"");
        assert_eq!(public.status, 403, "{}", public.text());
    }
);

/// curl reading event streams the way a browser's EventSource does, each into its own
/// file (`-N`: written as it arrives), with `--compressed` so nginx's gzip is in the
/// path; one `-w` line per transfer: connects, HTTP version, status, content encoding.
struct Curl {
    child: Reaped,
    outputs: Vec<PathBuf>,
}

impl Curl {
    /// Starts curl with `args` (protocol choice, `--parallel`) on every `(url, output)`.
    fn start(args: &[&str], streams: &[(String, PathBuf)]) -> Curl {
        let mut curl = Command::new("curl");
        curl.args(["-k", "-sS", "-N", "--compressed"])
            .args(args)
            .args([
                "-H",
                "Accept: text/event-stream",
                "-H",
                "Cache-Control: no-cache",
            ])
            .args([
                "-w",
                "%{num_connects} %{http_version} %{response_code} %header{content-encoding}\\n",
            ]);
        for (url, out) in streams {
            curl.arg("-o").arg(out).arg(url);
        }
        let child = curl
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting curl: {e}"));
        Curl {
            child: Reaped(child),
            outputs: streams.iter().map(|(_, out)| out.clone()).collect(),
        }
    }

    /// Waits until every stream has shown its job's `first` line.
    ///
    /// # Panics
    /// When curl ends first, or after [`STREAM_BOUND`]: the jobs wait for the test, so
    /// a stream held back anywhere never shows it.
    fn wait_all_live(&mut self) {
        let has_first = |out: &PathBuf| {
            decode(&std::fs::read(out).unwrap_or_default())
                .iter()
                .any(is_first)
        };
        let deadline = Instant::now() + STREAM_BOUND;
        while !self.outputs.iter().all(has_first) {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("curl ended ({status}) before every stream was live");
            }
            let live = self.outputs.iter().filter(|out| has_first(out)).count();
            assert!(
                Instant::now() < deadline,
                "only {live} of {} streams showed `first` while the jobs waited for it \
                 (held back in a buffer?)",
                self.outputs.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for curl to end, checks it succeeded and returns its `-w` lines and
    /// every stream's events.
    fn finish(mut self) -> (Vec<String>, Vec<Vec<Dispatched>>) {
        let deadline = Instant::now() + STREAM_BOUND;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "curl did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut report, mut errors) = (String::new(), String::new());
        self.child
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut report)
            .unwrap();
        self.child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut errors)
            .unwrap();
        assert!(status.success(), "curl: {status}: {errors}");
        let streams = self
            .outputs
            .iter()
            .map(|out| decode(&std::fs::read(out).unwrap()))
            .collect();
        (report.lines().map(str::to_string).collect(), streams)
    }
}

both_runtimes!(
    fn http11_stays_live_under_nginx_gzip(rt: Runtime) {
        if !nginx::require(&[
            (NGINX, "nginx-light"),
            ("openssl", "openssl"),
            ("curl", "curl"),
        ]) {
            return;
        }
        let server = gated_server(rt);
        let nginx = Nginx::start(server.addr());
        let go = nginx.dir().join("go");
        let (id, _) = start_job(nginx.http_addr(), "gated", &[go.to_str().unwrap()]);
        let url = format!("http://{}/jobs/{id}/events", nginx.http_addr());
        let mut curl = Curl::start(&["--http1.1"], &[(url, nginx.dir().join("stream"))]);
        curl.wait_all_live();
        std::fs::write(&go, b"").unwrap();
        let (report, streams) = curl.finish();
        // nginx did compress it: this is the gzip path, not identity.
        assert_eq!(report, ["1 1.1 200 gzip"]);
        assert_whole(&streams[0]);
        assert_eq!(whole_stream(server.addr(), &id), streams[0]);
    }
);

both_runtimes!(
    fn http2_twenty_live_streams_share_one_connection(rt: Runtime) {
        if !nginx::require(&[
            (NGINX, "nginx-light"),
            ("openssl", "openssl"),
            ("curl", "curl"),
        ]) {
            return;
        }
        let version = Command::new("curl").arg("-V").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.contains("HTTP2"),
            "this curl has no HTTP/2 (Debian's `curl` has):\n{version}"
        );
        let server = gated_server(rt);
        let nginx = Nginx::start(server.addr());
        let base = format!("https://{}", nginx.https_addr());
        let go = nginx.dir().join("go");
        let go_arg = go.to_str().unwrap();

        // A browser's POST over HTTP/2, with its Origin: nginx passes `:authority` on as
        // `Host`, so spout's same-origin check accepts it.
        let body = json!({ "command": "gated", "args": [go_arg] }).to_string();
        let post = Command::new("curl")
            .args(["--http2", "-k", "-sS", "-o", "/dev/null"])
            .args(["-w", "%{http_version} %{response_code}"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", &format!("Origin: {base}")])
            .args(["--data", &body, &format!("{base}/jobs")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&post.stdout),
            "2 201",
            "POST over HTTP/2: {}",
            String::from_utf8_lossy(&post.stderr)
        );

        let ids: Vec<String> = (0..STREAMS)
            .map(|_| start_job(nginx.http_addr(), "gated", &[go_arg]).0)
            .collect();
        // What a page with twenty EventSources asks for, on one multiplexed connection
        // (curl waits for the first connection to confirm HTTP/2 before reusing it).
        let streams: Vec<(String, PathBuf)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let out = nginx.dir().join(format!("stream-{i}"));
                (format!("{base}/jobs/{id}/events"), out)
            })
            .collect();
        let parallel = STREAMS.to_string();
        let mut curl = Curl::start(
            &["--http2", "--parallel", "--parallel-max", &parallel],
            &streams,
        );
        // Every job waits until all twenty streams have shown its `first` line.
        curl.wait_all_live();
        std::fs::write(&go, b"").unwrap();
        let (report, events) = curl.finish();

        for (id, events) in ids.iter().zip(&events) {
            assert_whole(events);
            assert_eq!(text_of(events, "stdout"), "first\nsecond\n", "job {id}");
        }
        // One connection in curl's eyes: twenty transfers over HTTP/2, one connect.
        assert_eq!(report.len(), STREAMS, "{report:#?}");
        assert!(
            report.iter().all(|l| l.ends_with(" 2 200 gzip")),
            "{report:#?}"
        );
        let connects: u32 = report
            .iter()
            .map(|l| l.split(' ').next().unwrap().parse::<u32>().unwrap())
            .sum();
        assert_eq!(connects, 1, "{report:#?}");
        // And in nginx's: every stream logged on the same `$connection`, as HTTP/2.0.
        // nginx logs a request as it ends, which may trail curl's exit a little.
        let deadline = Instant::now() + 5 * SECOND;
        let streamed = loop {
            let streamed: Vec<String> = nginx
                .access_log()
                .lines()
                .filter(|l| l.contains("/events HTTP/2.0\""))
                .map(str::to_string)
                .collect();
            if streamed.len() >= STREAMS || Instant::now() > deadline {
                break streamed;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(streamed.len(), STREAMS, "{}", nginx.access_log());
        let connections: BTreeSet<&str> = streamed
            .iter()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(connections.len(), 1, "{}", nginx.access_log());
        assert!(
            streamed.iter().all(|l| l.contains(" HTTP/2.0 200 ")),
            "{}",
            nginx.access_log()
        );
    }
);
