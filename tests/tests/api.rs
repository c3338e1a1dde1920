//! The HTTP API around a job: resume by `Last-Event-ID` header and by the
//! `last_event_id` / `lastEventId` query (exactly the rest, the header winning), `204`
//! after the final event, the JSON errors (400, 404, 405, 409, 413, 415), and the
//! other routes: `/healthz`, `/metrics`, `/commands`, `GET /jobs`, `/jobs/{id}/log`
//! (raw bytes, and `?follow=1`).

mod common;

use common::*;
use serde_json::json;
use spout_tests::{
    both_runtimes, delete, get, open_events, post_json, raw, request, start_job, Dispatched,
    Response, Runtime, Server,
};

/// A job with a handful of separate events, and a second command that accepts no
/// arguments and stays quiet.
const JOBS: &str = r#"{"commands": {
    "steps": {"argv": ["sh", "-c", "for i in 1 2 3 4; do echo step $i; sleep 0.05; done"]},
    "quiet": {"argv": ["true"]}
}}"#;

/// A job id that is well formed and belongs to no job.
const UNKNOWN_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// Checks `response` is an error with `status` and a JSON `{"error": "..."}` body.
fn assert_json_error(response: &Response, status: u16, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: {} {:?}",
        response.text(),
        response.headers
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: content type {:?}",
        response.header("content-type")
    );
    let body = response.json();
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: body {body}"
    );
}

/// The events after resuming job `id` at `path` (a query may be in it) with `headers`.
fn resumed(server: &Server, path: &str, headers: &[(&str, &str)]) -> Vec<Dispatched> {
    let mut events = stream(server.addr(), path, headers);
    let got = events.collect_to_end(STREAM_BOUND);
    assert!(events.finished(), "{path}: {:?}", events.dropped());
    got
}

both_runtimes!(
    fn resume_gets_exactly_the_rest(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let (id, full) = run_job(server.addr(), "steps");
        assert_whole(&full);
        let last = full.len() as u64;
        let path = format!("/jobs/{id}/events");
        for k in 1..last {
            let rest = &full[k as usize..];
            let n = k.to_string();
            assert_eq!(
                resumed(&server, &path, &[("Last-Event-ID", &n)]),
                rest,
                "Last-Event-ID: {k}"
            );
            assert_eq!(
                resumed(&server, &format!("{path}?last_event_id={k}"), &[]),
                rest,
                "?last_event_id={k}"
            );
            assert_eq!(
                resumed(&server, &format!("{path}?lastEventId={k}"), &[]),
                rest,
                "?lastEventId={k}"
            );
        }
        // The header wins over the query.
        assert_eq!(
            resumed(
                &server,
                &format!("{path}?last_event_id=1&lastEventId=1"),
                &[("Last-Event-ID", "2")]
            ),
            &full[2..],
            "header 2 beats query 1"
        );
    }

    fn after_the_final_event_is_204_and_bad_ids_are_400(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let (id, full) = run_job(server.addr(), "steps");
        let last = full.len() as u64;
        let path = format!("/jobs/{id}/events");
        let last_text = last.to_string();
        for (headers, query) in [
            (vec![("Last-Event-ID", last_text.as_str())], String::new()),
            (vec![], format!("?last_event_id={last}")),
            (vec![], format!("?lastEventId={last}")),
        ] {
            let response = open_events(server.addr(), &format!("{path}{query}"), &headers)
                .expect_err("no stream after the final event");
            assert_eq!(response.status, 204, "{headers:?} {query}");
            assert!(response.body.is_empty());
        }
        let beyond = (last + 1).to_string();
        for bad in [
            "abc",
            "-1",
            "1.5",
            "0x3",
            beyond.as_str(),
            "99999999999999999999999",
        ] {
            let response = open_events(server.addr(), &path, &[("Last-Event-ID", bad)])
                .expect_err("no stream for a bad id");
            assert_json_error(&response, 400, &format!("Last-Event-ID: {bad}"));
            let response = open_events(
                server.addr(),
                &format!("{path}?last_event_id={}", bad.replace('-', "%2D")),
                &[],
            )
            .expect_err("no stream for a bad id");
            assert_json_error(&response, 400, &format!("?last_event_id={bad}"));
        }
    }

    fn unknown_job_is_404(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        for path in [
            format!("/jobs/{UNKNOWN_ID}"),
            format!("/jobs/{UNKNOWN_ID}/events"),
            format!("/jobs/{UNKNOWN_ID}/log"),
            "/jobs/not-an-id".to_string(),
        ] {
            assert_json_error(&get(server.addr(), &path), 404, &path);
        }
        assert_json_error(
            &delete(server.addr(), &format!("/jobs/{UNKNOWN_ID}")),
            404,
            "DELETE unknown",
        );
        assert_json_error(&get(server.addr(), "/no/such/path"), 404, "unknown path");
    }

    fn wrong_method_is_405_with_allow(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let (id, _) = start_job(server.addr(), "quiet", &[]);
        for (method, path, allowed) in [
            ("PUT", "/jobs".to_string(), &["GET", "POST"][..]),
            ("DELETE", "/jobs".to_string(), &["GET", "POST"]),
            ("POST", format!("/jobs/{id}/events"), &["GET"]),
            ("POST", "/healthz".to_string(), &["GET"]),
            ("PATCH", format!("/jobs/{id}"), &["GET", "DELETE"]),
        ] {
            let response = request(server.addr(), method, &path, &[], b"");
            assert_json_error(&response, 405, &format!("{method} {path}"));
            let allow = response
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
            let listed: Vec<&str> = allow.split(',').map(str::trim).collect();
            for m in allowed {
                assert!(
                    listed.contains(m),
                    "{method} {path}: Allow {allow:?} lacks {m}"
                );
            }
            assert!(
                !listed.contains(&method),
                "{method} {path}: Allow {allow:?}"
            );
        }
    }

    fn bad_bodies_are_refused(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let addr = server.addr();
        // Over 64 KiB: refused from the head alone, before any body byte is sent.
        let head = format!(
            "POST /jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            1 << 20
        );
        let response = Response::parse(&raw(addr, head.as_bytes())).expect("a 413 answer");
        assert_json_error(&response, 413, "1 MiB body");

        let json_body = br#"{"command":"quiet"}"#;
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let response = request(
                addr,
                "POST",
                "/jobs",
                &[("Content-Type", content_type)],
                json_body,
            );
            assert_json_error(&response, 415, content_type);
        }
        let response = request(addr, "POST", "/jobs", &[], json_body);
        assert_json_error(&response, 415, "no content type");

        for (body, what) in [
            (&b"{\"command\":"[..], "truncated JSON"),
            (b"not json", "not JSON"),
            (b"[\"quiet\"]", "an array"),
            (b"{\"command\":\"quiet\",\"extra\":1}", "unknown field"),
            (b"{\"command\":7}", "wrong type"),
            (b"{\"command\":\"nope\"}", "unknown command"),
            (
                b"{\"command\":\"quiet\",\"args\":[\"x\"]}",
                "args to a command without args",
            ),
        ] {
            let response = request(
                addr,
                "POST",
                "/jobs",
                &[("Content-Type", "application/json")],
                body,
            );
            assert_json_error(&response, 400, what);
        }
        // None of that started a job.
        assert_eq!(get(addr, "/jobs").json(), json!([]));
    }

    fn delete_of_a_finished_job_is_409(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let (id, _) = run_job(server.addr(), "quiet");
        assert_json_error(
            &delete(server.addr(), &format!("/jobs/{id}")),
            409,
            "DELETE finished",
        );
    }
);

both_runtimes!(
    fn healthz_metrics_and_commands(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let health = get(server.addr(), "/healthz");
        assert_eq!(health.status, 200);
        assert_eq!(health.text().trim_end(), "ok");

        run_job(server.addr(), "quiet");
        let metrics = get(server.addr(), "/metrics");
        assert_eq!(metrics.status, 200);
        assert!(
            metrics
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            metrics.headers
        );
        let text = metrics.text();
        assert!(text.contains("# TYPE spout_jobs gauge"), "{text}");
        assert!(
            text.lines().any(|l| l == "spout_jobs{state=\"exited\"} 1"),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l == "spout_jobs{state=\"running\"} 0"),
            "{text}"
        );
        // Every sample line is `name[{labels}] value`.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(name.starts_with("spout_"), "{line:?}");
            assert!(value.parse::<f64>().is_ok(), "{line:?}");
        }

        let commands = get(server.addr(), "/commands");
        assert_eq!(commands.status, 200);
        let list = commands.json();
        let mut names: Vec<&str> = list
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["quiet", "steps"]);
        assert!(list
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["accepts_args"] == false));
    }

    fn jobs_are_listed_newest_first(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let started: Vec<String> = (0..3).map(|_| run_job(server.addr(), "quiet").0).collect();
        let list = get(server.addr(), "/jobs");
        assert_eq!(list.status, 200);
        let listed: Vec<String> = list
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                assert!(j["state"].is_string(), "{j}");
                j["id"].as_str().unwrap().to_string()
            })
            .collect();
        let newest_first: Vec<String> = started.into_iter().rev().collect();
        assert_eq!(listed, newest_first);
    }

    fn raw_log_is_the_exact_bytes(rt: Runtime) {
        let server = Server::start_with_config(
            rt,
            &config(json!({ "bytes": sh("printf 'ok \\377\\376 caf\\303\\251\\r\\n'") })),
            &[],
        );
        let (id, events) = run_job(server.addr(), "bytes");
        assert_whole(&events);
        let log = get(server.addr(), &format!("/jobs/{id}/log"));
        assert_eq!(log.status, 200, "{}", log.text());
        assert!(
            log.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            log.headers
        );
        assert_eq!(log.body, b"ok \xff\xfe caf\xc3\xa9\r\n");
    }

    fn followed_log_streams_until_exit(rt: Runtime) {
        follow_a_log_to_the_exit(rt, &[]);
    }

    fn followed_log_streams_until_exit_in_memory_mode(rt: Runtime) {
        // `--memory` keeps no raw bytes: the followed log is the text of the
        // events, still to the exit, not what was held when the request came.
        let (server, id) = follow_a_log_to_the_exit(rt, &["--memory"]);
        // Without `follow`, what is held, at once (the job is over here: all of it).
        let whole = get(server.addr(), &format!("/jobs/{id}/log"));
        assert_eq!(whole.text(), "1\n2\n3\n");
    }
);

/// Follows the log of a job that prints 1, 2, 3 over 0.4 s (a server started with
/// `args`) and checks that it streams all of it and ends only after the exit.
fn follow_a_log_to_the_exit(rt: Runtime, args: &[&str]) -> (Server, String) {
    let server = Server::start_with_config(
        rt,
        &config(json!({ "slow": sh("for i in 1 2 3; do echo $i; sleep 0.2; done") })),
        args,
    );
    let (id, _) = start_job(server.addr(), "slow", &[]);
    // `request` reads to the end of the body: the last chunk comes after the exit.
    let log = get(server.addr(), &format!("/jobs/{id}/log?follow=1"));
    assert_eq!(log.status, 200, "{}", log.text());
    assert_eq!(log.text(), "1\n2\n3\n");
    let status = get(server.addr(), &format!("/jobs/{id}")).json();
    assert!(
        status["exit"].is_object(),
        "the log ended before the job: {status:#}"
    );
    (server, id)
}

both_runtimes!(
    fn follow_flag_values_are_strict(rt: Runtime) {
        // docs/http.md: absent, `0`, `false` = off; `1`, `true`, bare `?follow` = on;
        // anything else 400.
        let server = Server::start_with_config(rt, JOBS, &[]);
        let (id, _) = run_job(server.addr(), "quiet");
        for on_or_off in [
            "follow",
            "follow=",
            "follow=0",
            "follow=false",
            "follow=1",
            "follow=true",
        ] {
            let response = get(server.addr(), &format!("/jobs/{id}/log?{on_or_off}"));
            assert_eq!(response.status, 200, "?{on_or_off}: {}", response.text());
        }
        for bad in ["follow=maybe", "follow=2", "follow=on"] {
            assert_json_error(
                &get(server.addr(), &format!("/jobs/{id}/log?{bad}")),
                400,
                &format!("?{bad}"),
            );
        }
    }

    fn started_job_answers_201_with_location_and_status(rt: Runtime) {
        let server = Server::start_with_config(rt, JOBS, &[]);
        let response = post_json(server.addr(), "/jobs", &json!({ "command": "quiet" }));
        assert_eq!(response.status, 201, "{}", response.text());
        let location = response.header("location").expect("Location").to_string();
        let status = response.json();
        assert_eq!(
            location,
            format!("/jobs/{}", status["id"].as_str().unwrap())
        );
        assert_eq!(status["command"], "quiet");
        let again = get(server.addr(), &location);
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["id"], status["id"]);
    }
);
