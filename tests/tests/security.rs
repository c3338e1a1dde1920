//! The security defaults: a non-loopback listen address without tokens is refused at
//! start; tokens and their scopes (`watch` may read, also with `?token=` on the event
//! stream, but not start or stop; `start` may start); CORS (allowed origins get
//! `Access-Control-Allow-Origin`, preflights are answered, a state change from an
//! unknown origin is refused).

mod common;

use common::*;
use serde_json::json;
use spout_tests::{
    both_runtimes, get, open_events, request, run_to_exit, start_job, Response, Runtime, Server,
};

const WATCH: &str = "watch-token-0123456789abcdef";
const START: &str = "start-token-0123456789abcdef";
const ORIGIN: &str = "http://allowed.example";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn post_job(server: &Server, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(server.addr(), "POST", "/jobs", &all, br#"{"command":"hi"}"#)
}

both_runtimes!(
    fn non_loopback_without_tokens_is_refused_at_start(rt: Runtime) {
        let exited = run_to_exit(
            rt,
            &["serve", "--listen", "0.0.0.0:0", "--memory"],
            20 * SECOND,
        );
        assert!(!exited.status.success(), "{exited:?}");
        assert!(
            exited.stderr.contains("tokens") && exited.stderr.contains("--insecure-no-auth"),
            "the refusal says what to do: {:?}",
            exited.stderr
        );
        assert!(
            !exited.stderr.contains("listening on"),
            "{:?}",
            exited.stderr
        );
    }

    fn tokens_and_scopes(rt: Runtime) {
        let cfg = json!({
            "commands": { "hi": sh("echo hi") },
            "tokens": [
                { "token": WATCH, "scopes": ["watch"] },
                { "token": START, "scopes": ["start"] }
            ]
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let watch = bearer(WATCH);
        let start = bearer(START);

        // No token, or an unknown one: 401 everywhere but /healthz.
        let response = get(server.addr(), "/jobs");
        assert_eq!(response.status, 401, "{}", response.text());
        assert!(response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
        assert_eq!(post_job(&server, &[]).status, 401);
        let wrong = bearer("wrong-token-0123456789abcdef");
        assert_eq!(post_job(&server, &[("Authorization", &wrong)]).status, 401);
        assert_eq!(get(server.addr(), "/healthz").status, 200);

        // The watch token cannot start or stop.
        let response = post_job(&server, &[("Authorization", &watch)]);
        assert_eq!(response.status, 403, "{}", response.text());
        assert!(response.json()["error"].is_string());

        // The start token can start.
        let response = post_job(&server, &[("Authorization", &start)]);
        assert_eq!(response.status, 201, "{}", response.text());
        let location = response.header("location").unwrap().to_string();
        let id = location.trim_start_matches("/jobs/").to_string();

        let response = request(
            server.addr(),
            "DELETE",
            &location,
            &[("Authorization", &watch)],
            b"",
        );
        assert_eq!(response.status, 403, "{}", response.text());

        // The watch token reads, with the header and with ?token= on the stream.
        let response = request(
            server.addr(),
            "GET",
            &location,
            &[("Authorization", &watch)],
            b"",
        );
        assert_eq!(response.status, 200, "{}", response.text());
        let mut events = stream(
            server.addr(),
            &format!("{location}/events?token={WATCH}"),
            &[],
        );
        let got = events.collect_to_end(STREAM_BOUND);
        assert_whole(&got);
        assert_eq!(text_of(&got, "stdout"), "hi\n");
        // ... but the start token does not watch.
        let refused = open_events(
            server.addr(),
            &format!("/jobs/{id}/events?token={START}"),
            &[],
        )
        .expect_err("start scope only");
        assert_eq!(refused.status, 403, "{}", refused.text());
        // And ?token= counts only for watching, never for starting.
        let response = request(
            server.addr(),
            "POST",
            &format!("/jobs?token={START}"),
            &[("Content-Type", "application/json")],
            br#"{"command":"hi"}"#,
        );
        assert_eq!(response.status, 401, "{}", response.text());
    }

    fn cors_allowlist_and_preflight(rt: Runtime) {
        let cfg = json!({
            "commands": { "hi": sh("echo hi") },
            "cors": { "allow_origins": [ORIGIN] }
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);

        let response = request(server.addr(), "GET", "/jobs", &[("Origin", ORIGIN)], b"");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));

        let response = request(
            server.addr(),
            "GET",
            "/jobs",
            &[("Origin", "http://other.example")],
            b"",
        );
        assert_eq!(response.header("access-control-allow-origin"), None);

        let response = request(
            server.addr(),
            "OPTIONS",
            "/jobs",
            &[
                ("Origin", ORIGIN),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        );
        assert_eq!(response.status, 204, "{}", response.text());
        assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
        let methods = response
            .header("access-control-allow-methods")
            .expect("Access-Control-Allow-Methods");
        assert!(methods.contains("POST"), "{methods}");

        let response = request(
            server.addr(),
            "OPTIONS",
            "/jobs",
            &[
                ("Origin", "http://other.example"),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        );
        assert_eq!(
            response.status,
            403,
            "denied preflight: {}",
            response.text()
        );
        assert_eq!(response.header("access-control-allow-origin"), None);

        let response = post_job(&server, &[("Origin", "http://other.example")]);
        assert_eq!(response.status, 403, "{}", response.text());
        assert!(response.json()["error"].is_string());
        assert_eq!(
            get(server.addr(), "/jobs").json(),
            json!([]),
            "nothing started"
        );

        let response = post_job(&server, &[("Origin", ORIGIN)]);
        assert_eq!(response.status, 201, "{}", response.text());
        assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
        // Without an Origin (curl, the CLI) nothing changes.
        start_job(server.addr(), "hi", &[]);
    }
);
