//! Who gets in: without a token nothing starts and nothing is watched, on every
//! route; a `watch` token neither starts nor stops; CORS refuses unknown origins;
//! job ids are 22 URL-safe characters of randomness that cannot be enumerated; no
//! user argument reaches a shell or adds an option the command does not allow.
//!
//! (Token comparison is constant-time by construction, see `docs/reliability.md`;
//! there is no timing test, machines are too noisy for one.)

mod common;

use common::*;
use serde_json::{json, Value};
use spout_tests::{
    both_runtimes, get, post_json, request, wait_for_state, Response, Runtime, Server,
};
use std::collections::HashSet;
use std::time::Duration;

const WATCH: &str = "hardening-watch-0123456789abcdef";
const START: &str = "hardening-start-0123456789abcdef";
const BOTH: &str = "hardening-both-0123456789abcdef";

fn with(token: &str) -> String {
    format!("Bearer {token}")
}

fn tokens_config() -> String {
    json!({
        "commands": { "sleepy": { "argv": ["sleep", "30"] } },
        "tokens": [
            { "token": WATCH, "scopes": ["watch"] },
            { "token": START, "scopes": ["start"] },
            { "token": BOTH, "scopes": ["start", "watch"] }
        ]
    })
    .to_string()
}

fn post_job(server: &Server, headers: &[(&str, &str)], path: &str) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(
        server.addr(),
        "POST",
        path,
        &all,
        br#"{"command":"sleepy"}"#,
    )
}

fn jobs_as(server: &Server, token: &str) -> Vec<Value> {
    let auth = with(token);
    let response = request(
        server.addr(),
        "GET",
        "/jobs",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json().as_array().expect("a list").clone()
}

/// Checks nobody stopped the job: it is still starting or running, without an exit.
fn assert_alive(job: &Value) {
    assert!(
        ["starting", "running"].contains(&job["state"].as_str().unwrap_or(""))
            && job["exit"].is_null(),
        "the job was stopped: {job:#}"
    );
}

both_runtimes!(
    fn without_a_token_nothing_starts_or_is_watched(rt: Runtime) {
        let server = Server::start_with_config(rt, &tokens_config(), &[]);
        let both = with(BOTH);
        let started = post_job(&server, &[("Authorization", &both)], "/jobs");
        assert_eq!(started.status, 201, "{}", started.text());
        let id = started.json()["id"].as_str().expect("an id").to_string();

        let bad_tokens = [
            None,
            Some("Bearer wrong-0123456789abcdef0123".to_string()),
            Some("Bearer ".to_string()),
            Some(format!("Basic {BOTH}")),
            Some(format!("Bearer {BOTH}x")),
            Some(format!("Bearer {}", &BOTH[..BOTH.len() - 1])),
            Some(format!("Bearer {BOTH} {BOTH}")),
        ];
        let paths = [
            ("GET", "/jobs".to_string()),
            ("GET", "/commands".to_string()),
            ("GET", "/metrics".to_string()),
            ("GET", format!("/jobs/{id}")),
            ("GET", format!("/jobs/{id}/events")),
            ("GET", format!("/jobs/{id}/log")),
            ("GET", format!("/jobs/{id}/log?follow=1")),
            ("DELETE", format!("/jobs/{id}")),
        ];
        for auth in &bad_tokens {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            for (method, path) in &paths {
                let response = request(server.addr(), method, path, &headers, b"");
                assert!(
                    [400, 401].contains(&response.status),
                    "{method} {path} with {auth:?}: {} {}",
                    response.status,
                    response.text()
                );
                assert!(response.json()["error"].is_string());
            }
            let response = post_job(&server, &headers, "/jobs");
            assert!(
                [400, 401].contains(&response.status),
                "POST /jobs with {auth:?}: {} {}",
                response.status,
                response.text()
            );
        }
        // ?token= never starts a job, whatever its scopes.
        for token in [START, BOTH] {
            let response = post_job(&server, &[], &format!("/jobs?token={token}"));
            assert_eq!(response.status, 401, "{}", response.text());
        }
        // A wrong ?token= does not watch either.
        let refused = spout_tests::open_events(
            server.addr(),
            &format!("/jobs/{id}/events?token=wrong-0123456789"),
            &[],
        )
        .expect_err("a wrong ?token= must not watch");
        assert_eq!(refused.status, 401, "{}", refused.text());

        let jobs = jobs_as(&server, WATCH);
        assert_eq!(jobs.len(), 1, "only the authorized job exists: {jobs:#?}");
        assert_eq!(
            jobs[0]["state"], "running",
            "and nobody stopped it: {jobs:#?}"
        );
    }

    fn a_watch_token_cannot_start_or_stop(rt: Runtime) {
        let server = Server::start_with_config(rt, &tokens_config(), &[]);
        let watch = with(WATCH);
        let start = with(START);
        let response = post_job(&server, &[("Authorization", &watch)], "/jobs");
        assert_eq!(response.status, 403, "{}", response.text());
        let started = post_job(&server, &[("Authorization", &start)], "/jobs");
        assert_eq!(started.status, 201, "{}", started.text());
        let id = started.json()["id"].as_str().unwrap().to_string();
        for path in [format!("/jobs/{id}"), format!("/jobs/{id}?token={START}")] {
            let response = request(
                server.addr(),
                "DELETE",
                &path,
                &[("Authorization", &watch)],
                b"",
            );
            assert_eq!(response.status, 403, "DELETE {path}: {}", response.text());
        }
        // Without a header, ?token= with the start scope does not stop either.
        let response = request(
            server.addr(),
            "DELETE",
            &format!("/jobs/{id}?token={START}"),
            &[],
            b"",
        );
        assert_eq!(response.status, 401, "{}", response.text());
        let jobs = jobs_as(&server, WATCH);
        assert_eq!(jobs.len(), 1, "{jobs:#?}");
        assert_alive(&jobs[0]);
        // The start token stops it.
        let response = request(
            server.addr(),
            "DELETE",
            &format!("/jobs/{id}"),
            &[("Authorization", &start)],
            b"",
        );
        assert_eq!(response.status, 202, "{}", response.text());
    }

    fn cors_refuses_unknown_origins(rt: Runtime) {
        let allowed = "https://ops.example.com";
        let cfg = json!({
            "commands": { "sleepy": { "argv": ["sleep", "30"] } },
            "cors": { "allow_origins": [allowed] }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        for origin in [
            "https://evil.example.com",
            "https://ops.example.com.evil.example",
            "http://ops.example.com",
            "https://OPS.example.com.",
            "null",
        ] {
            let response = request(
                server.addr(),
                "OPTIONS",
                "/jobs",
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                ],
                b"",
            );
            assert_eq!(
                response.status,
                403,
                "preflight from {origin}: {}",
                response.text()
            );
            assert_eq!(
                response.header("access-control-allow-origin"),
                None,
                "{origin}"
            );
            let response = post_job(&server, &[("Origin", origin)], "/jobs");
            assert_eq!(
                response.status,
                403,
                "POST from {origin}: {}",
                response.text()
            );
            assert_eq!(
                response.header("access-control-allow-origin"),
                None,
                "{origin}"
            );
            let response = request(server.addr(), "GET", "/jobs", &[("Origin", origin)], b"");
            assert_eq!(
                response.header("access-control-allow-origin"),
                None,
                "{origin}"
            );
            assert_ne!(
                response.header("access-control-allow-credentials"),
                Some("true")
            );
        }
        assert_eq!(
            get(server.addr(), "/jobs").json(),
            json!([]),
            "nothing started"
        );
    }

    fn job_ids_cannot_be_enumerated(rt: Runtime) {
        let cfg = json!({
            "commands": { "quick": { "argv": ["true"] } },
            "limits": { "max_running_jobs": 64, "max_retained_jobs": 2000 }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &["--memory"]);
        let mut ids = Vec::with_capacity(1000);
        while ids.len() < 1000 {
            let response = post_json(server.addr(), "/jobs", &json!({ "command": "quick" }));
            match response.status {
                201 => ids.push(response.json()["id"].as_str().expect("an id").to_string()),
                // Past max_running_jobs: wait for the `true`s to end.
                429 | 503 => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("POST /jobs: {other} {}", response.text()),
            }
        }
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "ids repeat");
        let mut ones = [0usize; 128];
        let mut values = Vec::new();
        for id in &ids {
            assert_eq!(id.len(), 22, "{id:?}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id:?} is not URL-safe base64"
            );
            let value = base64url_128(id);
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += ((value >> bit) & 1) as usize;
            }
            values.push(value);
        }
        // Not sequential: consecutive ids are nowhere near each other.
        for pair in values.windows(2) {
            assert!(pair[0].abs_diff(pair[1]) > 1u128 << 64, "{pair:x?}");
        }
        // Every one of the 128 bits varies: no counter, no timestamp, no fixed prefix
        // (for random ids, a bit set in all or none of 1,000 has odds 2^-999).
        for (bit, &count) in ones.iter().enumerate() {
            assert!(
                count > 0 && count < ids.len(),
                "bit {bit} is set in {count} of {} ids",
                ids.len()
            );
        }
        // Guessing: a well-formed id that was never issued is 404, like any unknown.
        let guess = ids[0].chars().rev().collect::<String>();
        if !distinct.contains(&guess) {
            assert_eq!(get(server.addr(), &format!("/jobs/{guess}")).status, 404);
            assert_eq!(
                get(server.addr(), &format!("/jobs/{guess}/events")).status,
                404
            );
        }
        for id in ids.iter().rev().take(64) {
            wait_for_state(server.addr(), id, |s| s["exit"].is_object(), 20 * SECOND);
        }
    }

    fn args_cannot_add_options_or_reach_a_shell(rt: Runtime) {
        let cfg = json!({
            "commands": {
                "echo": { "argv": ["echo"], "args": { "max": 4, "max_len": 64 } },
                "pick": { "argv": ["echo"], "args": { "max": 1, "allow": ["test", "release"] } },
                "fixed": { "argv": ["echo", "fixed"] }
            }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let refused: &[(&str, Value)] = &[
            ("echo", json!(["-rf"])),
            ("echo", json!(["--output=/etc/passwd"])),
            ("echo", json!(["ok", "-n"])),
            ("echo", json!(["-"])),
            ("echo", json!(["a", "b", "c", "d", "e"])),
            ("echo", json!(["x".repeat(65)])),
            ("echo", json!(["a\u{0}b"])),
            ("echo", json!([1])),
            ("echo", json!("not-a-list")),
            ("pick", json!(["debug"])),
            ("pick", json!(["test; rm -rf /"])),
            ("pick", json!(["-rf"])),
            ("fixed", json!(["anything"])),
        ];
        for (command, args) in refused {
            let response = post_json(
                server.addr(),
                "/jobs",
                &json!({ "command": command, "args": args }),
            );
            assert_eq!(
                response.status,
                400,
                "{command} {args}: {}",
                response.text()
            );
            assert!(response.json()["error"].is_string());
        }
        assert_eq!(
            get(server.addr(), "/jobs").json(),
            json!([]),
            "nothing started"
        );

        // Shell syntax is an ordinary argument: printed, never interpreted.
        let words = ["a;b", "$(id)", "`id`", "* $HOME"];
        let (id, _) = spout_tests::start_job(server.addr(), "echo", &words);
        let events = whole_stream(server.addr(), &id);
        assert_eq!(text_of(&events, "stdout"), format!("{}\n", words.join(" ")));
        let (id, _) = spout_tests::start_job(server.addr(), "pick", &["release"]);
        assert_eq!(
            text_of(&whole_stream(server.addr(), &id), "stdout"),
            "release\n"
        );
    }

    fn an_ad_hoc_command_is_not_run_through_a_shell(rt: Runtime) {
        let server = Server::start(
            rt,
            &["--memory", "--", "echo", "$HOME", "*", "$(id)", "a|b"],
        );
        let (id, _) = spout_tests::start_job(server.addr(), "default", &[]);
        let events = whole_stream(server.addr(), &id);
        assert_eq!(text_of(&events, "stdout"), "$HOME * $(id) a|b\n");
    }
);

/// The 128-bit value of a 22-character base64url id (no padding).
fn base64url_128(id: &str) -> u128 {
    let digits: Vec<u8> = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("{id:?} is not base64url"),
        })
        .collect();
    assert_eq!(digits.len(), 22, "{id:?}");
    // 21 digits carry 126 bits; the last one carries 2 more and 4 padding zeros.
    let high = digits[..21]
        .iter()
        .fold(0u128, |v, &d| (v << 6) | u128::from(d));
    let last = digits[21];
    assert_eq!(last & 0xf, 0, "{id:?} has non-zero padding bits");
    (high << 2) | u128::from(last >> 4)
}
