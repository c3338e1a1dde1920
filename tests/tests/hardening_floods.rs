//! Floods: connections up to and past the limits (`503`/`429` with `Retry-After`),
//! slow-loris clients cut at the head timeout, running out of file descriptors
//! (no CPU spin, no death, service back when descriptors are), and a thousand
//! subscribers that come and go leaving no thread, descriptor or memory behind.
//!
//! Sizes: `SPOUT_CHURN` subscribers in the churn case (default 1,000).

mod common;

use common::*;
use serde_json::json;
use spout_tests::procfs::usage;
use spout_tests::{
    both_runtimes, delete, get, open_events, post_json, start_job, try_request, wait_for_state,
    Runtime, Server,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A job that prints a line every 100 ms for a minute: something to watch.
fn ticker() -> serde_json::Value {
    sh("i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done")
}

both_runtimes!(
    fn past_max_subscribers_is_503_with_retry_after(rt: Runtime) {
        let cfg = json!({ "commands": { "ticker": ticker() }, "limits": { "max_subscribers": 3 } });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let (id, _) = start_job(server.addr(), "ticker", &[]);
        let path = format!("/jobs/{id}/events");
        let mut held: Vec<_> = (0..3).map(|_| stream(server.addr(), &path, &[])).collect();
        for _ in 0..10 {
            let refused = open_events(server.addr(), &path, &[]).expect_err("past max_subscribers");
            assert_eq!(refused.status, 503, "{}", refused.text());
            let retry: u64 = refused
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .expect("Retry-After in seconds");
            assert!(retry >= 1, "{retry}");
            assert!(refused.json()["error"].is_string());
        }
        assert_eq!(metric(server.addr(), "spout_subscribers"), 3);
        // The held streams are unharmed.
        for s in &mut held {
            assert!(s.next_event(STREAM_BOUND).is_some(), "{:?}", s.dropped());
        }
        // One leaves: there is room again.
        held.pop().expect("three").close();
        assert!(
            eventually(10 * SECOND, || metric(server.addr(), "spout_subscribers")
                == 2),
            "a closed stream is still counted"
        );
        let mut again = stream(server.addr(), &path, &[]);
        assert!(again.next_event(STREAM_BOUND).is_some());
        assert_eq!(delete(server.addr(), &format!("/jobs/{id}")).status, 202);
    }

    fn past_max_running_jobs_is_refused_with_retry_after(rt: Runtime) {
        let cfg = json!({
            "commands": { "sleepy": { "argv": ["sleep", "30"] } },
            "limits": { "max_running_jobs": 2 }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let (first, _) = start_job(server.addr(), "sleepy", &[]);
        let (_second, _) = start_job(server.addr(), "sleepy", &[]);
        for _ in 0..10 {
            let refused = post_json(server.addr(), "/jobs", &json!({ "command": "sleepy" }));
            assert!(
                [429, 503].contains(&refused.status),
                "{} {}",
                refused.status,
                refused.text()
            );
            assert!(refused
                .header("retry-after")
                .is_some_and(|v| v.parse::<u64>().is_ok()));
        }
        assert_eq!(
            get(server.addr(), "/jobs").json().as_array().unwrap().len(),
            2
        );
        assert_eq!(delete(server.addr(), &format!("/jobs/{first}")).status, 202);
        wait_for_state(
            server.addr(),
            &first,
            |s| s["exit"].is_object(),
            10 * SECOND,
        );
        start_job(server.addr(), "sleepy", &[]);
    }

    fn churning_subscribers_leave_nothing_behind(rt: Runtime) {
        let total: usize = std::env::var("SPOUT_CHURN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000);
        let cfg = json!({ "commands": { "ticker": ticker() } });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let pid = server.pid();
        let (id, _) = start_job(server.addr(), "ticker", &[]);
        let path = format!("/jobs/{id}/events");
        // Warm up (allocator arenas, thread pools) at the same size, then take the
        // baseline: a leak grows with every round, a cache does not.
        churn(server.addr(), &path, total);
        settle(&server, None);
        let before = usage(pid);
        churn(server.addr(), &path, total);
        settle(&server, Some(before));
        let after = usage(pid);
        eprintln!("figures: {total} subscribers came and went: {before:?} -> {after:?}");
        assert!(
            after.threads <= before.threads + 2,
            "threads {} -> {} after {total} subscribers came and went",
            before.threads,
            after.threads
        );
        assert!(
            after.fds <= before.fds + 2,
            "descriptors {} -> {} after {total} subscribers came and went",
            before.fds,
            after.fds
        );
        // A leak of even 1 KiB per subscriber shows past this; allocator noise does not.
        assert!(
            after.rss_kib <= before.rss_kib + 8 * 1024,
            "RSS {} KiB -> {} KiB after {total} subscribers came and went",
            before.rss_kib,
            after.rss_kib
        );
        assert_eq!(delete(server.addr(), &format!("/jobs/{id}")).status, 202);
    }
);

fn slowloris_case(rt: Runtime) {
    let server = Server::start(rt, &["--memory"]);
    // The head timeout, plus the one-second write cadence and a loaded machine.
    let bound = spout_core::http::HEAD_TIMEOUT + 8 * SECOND;
    let addr = server.addr();
    let cut_after: Vec<Duration> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| scope.spawn(move || slowloris(addr, bound)))
            .collect();
        // Meanwhile, everyone else is served.
        for _ in 0..5 {
            assert_eq!(get(addr, "/healthz").status, 200);
            std::thread::sleep(SECOND);
        }
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect()
    });
    for (i, took) in cut_after.iter().enumerate() {
        assert!(
            *took <= bound,
            "slow client {i} was still connected after {took:?}"
        );
    }
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// Slow-loris clients on each runtime.
mod slowloris_clients_are_cut_at_the_head_timeout {
    use super::*;

    /// On `spout` (smol).
    #[test]
    fn smol() {
        slowloris_case(Runtime::Smol)
    }

    /// On `spout-blocking`.
    #[test]
    fn blocking() {
        slowloris_case(Runtime::Blocking)
    }
}

fn emfile_case(rt: Runtime) {
    let cfg = json!({ "commands": { "ticker": ticker() } });
    let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
    let pid = server.pid();
    let (id, _) = start_job(server.addr(), "ticker", &[]);
    // The job must be running before descriptors run out: a spawn after the limit
    // would fail (rightly) and the test would measure something else.
    spout_tests::wait_for_state(server.addr(), &id, |s| s["state"] == "running", 20 * SECOND);
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=64:64"])
        .status()
        .expect("prlimit (util-linux) is installed");
    assert!(status.success(), "prlimit failed");
    // Hold event streams open until the server cannot accept any more: each one
    // costs it a descriptor. The kernel keeps completing handshakes into the
    // backlog, so connects succeed; the server's accept() is what fails.
    let request = format!(
        "GET /jobs/{id}/events HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr()
    );
    let mut clients = Vec::new();
    for _ in 0..120 {
        match TcpStream::connect(server.addr()) {
            Ok(mut c) => {
                let _ = c.write_all(request.as_bytes());
                clients.push(c);
            }
            Err(_) => break,
        }
    }
    assert!(
        eventually(10 * SECOND, || usage(pid).fds >= 60),
        "the server never ran out of descriptors: {:?}",
        usage(pid)
    );
    // Exhausted: accept() fails with EMFILE while connections wait in the
    // backlog. A server that retries at once spins a core here.
    std::thread::sleep(SECOND);
    let before = usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(2 * SECOND);
    let after = usage(pid);
    let wall = t0.elapsed();
    let cpu = after.cpu.saturating_sub(before.cpu);
    eprintln!(
        "figures: out of descriptors ({} open): {cpu:?} CPU in {wall:?}",
        after.fds
    );
    assert!(
        cpu < wall / 4,
        "{cpu:?} of CPU in {wall:?} while out of descriptors: the accept loop spins"
    );
    // Still alive, and service comes back when descriptors do.
    drop(clients);
    assert!(
        eventually(20 * SECOND, || try_request(
            server.addr(),
            "GET",
            "/healthz",
            &[],
            b""
        )
        .is_ok_and(|r| r.status == 200)),
        "no service after descriptors came back\n{}",
        server.stderr_text()
    );
    let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
    assert!(events.next_event(STREAM_BOUND).is_some());
    assert_eq!(delete(server.addr(), &format!("/jobs/{id}")).status, 202);
}

/// Descriptor exhaustion on each runtime.
mod out_of_descriptors_no_spin_no_death_and_recovery {
    use super::*;

    /// On `spout` (smol).
    #[test]
    fn smol() {
        emfile_case(Runtime::Smol)
    }

    /// On `spout-blocking`.
    #[test]
    fn blocking() {
        emfile_case(Runtime::Blocking)
    }
}

/// Sends a request head one byte a second and returns how long until the server cut
/// the connection (or `bound`, if it never did).
fn slowloris(addr: SocketAddr, bound: Duration) -> Duration {
    let head = b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let t0 = Instant::now();
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(SECOND)).unwrap();
    let mut buf = [0u8; 1024];
    for byte in head.iter().cycle() {
        if t0.elapsed() > bound {
            break;
        }
        if c.write_all(&[*byte]).is_err() {
            break;
        }
        // The one-second pause doubles as the check for the server's answer (a 408)
        // or its close.
        match c.read(&mut buf) {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    t0.elapsed()
}

/// `n` subscribers from 8 threads: each opens the stream, reads an event or a few
/// bytes, and vanishes; some hang up halfway through their request head.
fn churn(addr: SocketAddr, path: &str, n: usize) {
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                for i in (t..n).step_by(8) {
                    if i % 10 == 9 {
                        let mut c = TcpStream::connect(addr).expect("connect");
                        let _ = c.write_all(
                            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n").as_bytes(),
                        );
                        continue;
                    }
                    let mut events = stream(addr, path, &[]);
                    if i % 2 == 0 {
                        assert!(
                            events.next_event(STREAM_BOUND).is_some(),
                            "{:?}",
                            events.dropped()
                        );
                    }
                    events.close();
                }
            });
        }
    });
}

/// Waits until the server counts no subscriber and its thread and descriptor
/// counts are stable (threads of closed connections have exited) or back to
/// `baseline`.
fn settle(server: &Server, baseline: Option<spout_tests::procfs::Usage>) {
    assert!(
        eventually(20 * SECOND, || metric(server.addr(), "spout_subscribers")
            == 0),
        "spout_subscribers did not come back to 0 after every client left: {}",
        metric(server.addr(), "spout_subscribers")
    );
    let mut last = usage(server.pid());
    // Connections that hung up mid-head are dropped at the latest at the head timeout.
    let deadline = Instant::now() + spout_core::http::HEAD_TIMEOUT + 5 * SECOND;
    let mut stable = 0;
    while Instant::now() < deadline && stable < 14 {
        if baseline.is_some_and(|b| last.threads <= b.threads && last.fds <= b.fds) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let now = usage(server.pid());
        stable = if now.threads == last.threads && now.fds == last.fds {
            stable + 1
        } else {
            0
        };
        last = now;
    }
}
