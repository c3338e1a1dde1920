//! Table-driven tests of the request-level functions in `http/mod.rs`.

use super::*;

type Fields<'a> = &'a [(&'a str, &'a [u8])];

const ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

fn id() -> JobId {
    // invariant: ID is a canonical job id.
    JobId::parse(ID).unwrap()
}

#[test]
fn split_target_table() {
    let ok: &[(&str, &str, &str)] = &[
        ("/", "/", ""),
        ("/jobs?x=1", "/jobs", "x=1"),
        ("/jobs?", "/jobs", ""),
        ("/a?b?c", "/a", "b?c"),
        (
            "/jobs/abc/events?last_event_id=3&token=t%2Bx",
            "/jobs/abc/events",
            "last_event_id=3&token=t%2Bx",
        ),
        ("/x?a=..%2F", "/x", "a=..%2F"),
        ("//double", "//double", ""),
    ];
    for (target, path, query) in ok {
        assert_eq!(split_target(target), Ok((*path, *query)), "{target:?}");
    }
    let bad = [
        "",
        "*",
        "jobs",
        "http://host/jobs",
        "HTTP://host/",
        " /",
        "/a b",
        "/a\0",
        "/a\r",
        "/a\t",
        "/é",
        "/a#frag",
        "/..",
        "/jobs/..",
        "/jobs/../etc",
        "/./jobs",
        "/jobs/.",
        "/a\\b",
        "/%2e%2e/x",
        "/%2F",
        "/jobs%2Fabc",
        "/%41",
        "/a\x7f",
    ];
    for target in bad {
        let e = split_target(target).unwrap_err();
        assert_eq!(e.status(), 400, "{target:?}");
    }
}

#[test]
fn query_table() {
    let q = Query::parse("a=1&b=x+y&c&a=2&d=%2B%26%3D%25&e=caf%C3%A9&&f=").unwrap();
    let cases = [
        ("a", Some("1")),
        ("b", Some("x y")),
        ("c", Some("")),
        ("d", Some("+&=%")),
        ("e", Some("café")),
        ("f", Some("")),
        ("g", None),
        ("A", None),
    ];
    for (name, want) in cases {
        assert_eq!(q.get(name), want, "{name}");
    }
    assert_eq!(Query::parse("").unwrap(), Query::default());
    assert_eq!(Query::parse("k%3Dv=1").unwrap().get("k=v"), Some("1"));
    for bad in ["a=%", "a=%4", "a=%zz", "%g0=1", "a=%ff", "a=%C3"] {
        assert_eq!(Query::parse(bad).unwrap_err().status(), 400, "{bad}");
    }
}

#[test]
fn flags() {
    let cases: &[(&str, Result<bool, u16>)] = &[
        ("", Ok(false)),
        ("follow=0", Ok(false)),
        ("follow=false", Ok(false)),
        ("follow=1", Ok(true)),
        ("follow=true", Ok(true)),
        ("follow", Ok(true)),
        ("follow=", Ok(true)),
        ("follow=yes", Err(400)),
        ("follow=2", Err(400)),
    ];
    for (q, want) in cases {
        let got = Query::parse(q)
            .unwrap()
            .flag("follow")
            .map_err(|e| e.status());
        assert_eq!(&got, want, "{q}");
    }
}

#[test]
fn query_debug_redacts_token() {
    let q = Query::parse("token=s3cret&tail=5").unwrap();
    let d = format!("{q:?}");
    assert!(
        !d.contains("s3cret") && d.contains("redacted") && d.contains("tail"),
        "{d}"
    );
}

#[test]
fn route_table() {
    let job = format!("/jobs/{ID}");
    let events = format!("/jobs/{ID}/events");
    let log = format!("/jobs/{ID}/log");
    let ok: &[(&str, &str, Route)] = &[
        ("GET", "/", Route::Index),
        ("HEAD", "/", Route::Index),
        ("GET", "/commands", Route::Commands),
        ("HEAD", "/commands", Route::Commands),
        ("POST", "/jobs", Route::CreateJob),
        ("GET", "/jobs", Route::ListJobs),
        ("HEAD", "/jobs", Route::ListJobs),
        ("GET", &job, Route::JobStatus(id())),
        ("HEAD", &job, Route::JobStatus(id())),
        ("DELETE", &job, Route::StopJob(id())),
        ("GET", &events, Route::JobEvents(id())),
        ("HEAD", &events, Route::JobEvents(id())),
        ("GET", &log, Route::JobLog(id())),
        ("GET", "/healthz", Route::Healthz),
        ("HEAD", "/healthz", Route::Healthz),
        ("GET", "/metrics", Route::Metrics),
        ("OPTIONS", "/", Route::Preflight),
        ("OPTIONS", "/jobs", Route::Preflight),
        ("OPTIONS", &job, Route::Preflight),
        ("OPTIONS", &events, Route::Preflight),
        ("OPTIONS", "/metrics", Route::Preflight),
    ];
    for (method, path, want) in ok {
        assert_eq!(route(method, path).as_ref(), Ok(want), "{method} {path}");
    }
    let read: &[&str] = &["GET", "HEAD", "OPTIONS"];
    let jobs: &[&str] = &["GET", "HEAD", "POST", "OPTIONS"];
    let one: &[&str] = &["GET", "HEAD", "DELETE", "OPTIONS"];
    let wrong: &[(&str, &str, &[&str])] = &[
        ("POST", "/", read),
        ("DELETE", "/commands", read),
        ("PUT", "/jobs", jobs),
        ("DELETE", "/jobs", jobs),
        ("get", "/jobs", jobs),
        ("POST", &job, one),
        ("PATCH", &job, one),
        ("POST", &events, read),
        ("DELETE", &events, read),
        ("DELETE", &log, read),
        ("POST", "/healthz", read),
        ("PUT", "/metrics", read),
        ("TRACE", "/", read),
    ];
    for (method, path, allow) in wrong {
        let e = route(method, path).unwrap_err();
        assert_eq!(e, ApiError::MethodNotAllowed(allow), "{method} {path}");
        assert_eq!(
            e.response().head.get("Allow"),
            Some(allow.join(", ").as_str())
        );
    }
    let missing: &[(&str, &str, &str)] = &[
        ("GET", "/nope", "no such path"),
        ("GET", "/jobs/", "no such job"),
        ("GET", "/jobs/short", "no such job"),
        ("DELETE", "/jobs/short", "no such job"),
        ("OPTIONS", "/jobs/short", "no such job"),
        ("GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAB", "no such job"),
        ("GET", "/jobs/short/events", "no such job"),
        ("GET", &format!("/jobs/{ID}/other"), "no such path"),
        ("GET", &format!("/jobs/{ID}/events/"), "no such path"),
        ("GET", &format!("/jobs/{ID}/"), "no such path"),
        ("GET", "/jobs//events", "no such job"),
        ("GET", "/commands/", "no such path"),
        ("GET", "//", "no such path"),
        ("OPTIONS", "/nope", "no such path"),
    ];
    for (method, path, needle) in missing {
        let e = route(method, path).unwrap_err();
        assert_eq!(e.status(), 404, "{method} {path}");
        assert!(e.message().contains(needle), "{method} {path}: {e}");
    }
}

#[test]
fn last_event_id_precedence() {
    let cases: &[(Fields<'_>, &str, Option<&str>)] = &[
        (&[], "", None),
        (
            &[("Last-Event-ID", b"7")],
            "last_event_id=5&lastEventId=3",
            Some("7"),
        ),
        (&[("last-event-id", b"7")], "", Some("7")),
        (&[], "last_event_id=5&lastEventId=3", Some("5")),
        (&[], "lastEventId=3&last_event_id=5", Some("5")),
        (&[], "lastEventId=3", Some("3")),
        (&[("Last-Event-ID", b"")], "last_event_id=5", Some("5")),
        (&[], "last_event_id=&lastEventId=3", Some("3")),
        (
            &[("Last-Event-ID", b"\xff\xfe")],
            "last_event_id=5",
            Some("\u{FFFD}"),
        ),
        (&[("Last-Event-ID", b" x ")], "", Some(" x ")),
    ];
    for (headers, q, want) in cases {
        let req = Request {
            method: "GET",
            target: "/",
            headers,
        };
        let query = Query::parse(q).unwrap();
        assert_eq!(last_event_id(&req, &query), *want, "{headers:?} {q}");
    }
}

/// An error, its status, whether it closes the connection, and a header it must carry.
type ErrorCase = (ApiError, u16, bool, Option<(&'static str, &'static str)>);

#[test]
fn error_table() {
    let cases: &[ErrorCase] = &[
        (ApiError::BadRequest("bad \"x\"".into()), 400, false, None),
        (ApiError::BadFraming("f".into()), 400, true, None),
        (
            ApiError::MissingToken,
            401,
            false,
            Some(("WWW-Authenticate", "Bearer")),
        ),
        (
            ApiError::InvalidToken,
            401,
            false,
            Some(("WWW-Authenticate", "Bearer error=\"invalid_token\"")),
        ),
        (ApiError::MissingScope(Scope::Watch), 403, false, None),
        (ApiError::Forbidden("no".into()), 403, false, None),
        (ApiError::NotFound("no such job".into()), 404, false, None),
        (
            ApiError::MethodNotAllowed(READ),
            405,
            false,
            Some(("Allow", "GET, HEAD, OPTIONS")),
        ),
        (ApiError::RequestTimeout, 408, true, None),
        (ApiError::Conflict("job has ended".into()), 409, false, None),
        (ApiError::LengthRequired, 411, true, None),
        (ApiError::BodyTooLarge(65536), 413, true, None),
        (ApiError::UnsupportedMediaType, 415, false, None),
        (ApiError::ExpectationFailed, 417, true, None),
        (
            ApiError::TooManyRequests {
                message: "too many jobs".into(),
                retry_after: 5,
            },
            429,
            false,
            Some(("Retry-After", "5")),
        ),
        (ApiError::HeadTooLarge, 431, true, None),
        (ApiError::Internal, 500, false, None),
        (ApiError::UnsupportedTransferCoding, 501, true, None),
        (
            ApiError::Unavailable {
                message: "shutting down".into(),
                retry_after: 2,
            },
            503,
            false,
            Some(("Retry-After", "2")),
        ),
    ];
    for (e, status, closes, header) in cases {
        assert_eq!(e.status(), *status, "{e:?}");
        let r = e.response();
        assert_eq!(r.head.status, *status);
        assert_eq!(r.closes_connection(), *closes, "{e:?}");
        assert_eq!(e.closes_connection(), *closes, "{e:?}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, serde_json::json!({"error": e.message()}));
        assert!(!reason_phrase(*status).is_empty(), "{status}");
        let m = e.message();
        assert!(m.starts_with(|c: char| c.is_lowercase()), "{m}");
        if let Some((name, value)) = header {
            assert_eq!(r.head.get(name), Some(*value), "{e:?}");
        }
        assert_eq!(r.head.get("Cache-Control"), Some("no-store"));
        assert_eq!(r.head.get("Content-Type"), Some("application/json"));
    }
    assert_eq!(
        ApiError::BadRequest("bad \"x\"".into()).response().body,
        br#"{"error":"bad \"x\""}"#.to_vec()
    );
}

fn admit_with(method: &str, target: &str, headers: Fields<'_>) -> Admission {
    let grant = |start| Grant {
        start,
        watch: true,
        share: false,
    };
    let auth = Auth::new(&[("s".into(), grant(true)), ("w".into(), grant(false))]).unwrap();
    let cors = Cors::new(vec!["https://ops.example.com".into()]).unwrap();
    admit(
        &Request {
            method,
            target,
            headers,
        },
        &auth,
        &cors,
        MAX_BODY,
    )
}

fn status(a: &Admission) -> u16 {
    match a {
        Admission::Handle(_) => 0,
        Admission::Respond(r) => r.head.status,
    }
}

#[test]
fn admit_table() {
    let job = format!("/jobs/{ID}");
    let events = format!("/jobs/{ID}/events?token=w&last_event_id=3");
    let s: (&str, &[u8]) = ("Authorization", b"Bearer s");
    let w: (&str, &[u8]) = ("Authorization", b"Bearer w");
    let json: (&str, &[u8]) = ("Content-Type", b"application/json");
    let cl: (&str, &[u8]) = ("Content-Length", b"20");
    let evil: (&str, &[u8]) = ("Origin", b"https://evil.example");
    let ops: (&str, &[u8]) = ("Origin", b"https://ops.example.com");
    let acrm: (&str, &[u8]) = ("Access-Control-Request-Method", b"POST");
    // (method, target, headers, status or 0 for Handle, closes connection)
    let cases: &[(&str, &str, Fields<'_>, u16, bool)] = &[
        ("GET", "/", &[], 0, false),
        ("HEAD", "/healthz", &[], 0, false),
        ("GET", "/jobs", &[], 401, false),
        ("GET", "/jobs", &[w], 0, false),
        ("GET", "/jobs?token=w", &[], 0, false),
        ("GET", &events, &[], 0, false),
        ("POST", "/jobs", &[w, json, cl], 403, true),
        ("POST", "/jobs", &[s, json, cl], 0, false),
        ("POST", "/jobs?token=s", &[json, cl], 401, true),
        ("POST", "/jobs", &[s, json], 411, true),
        (
            "POST",
            "/jobs",
            &[s, cl, ("Transfer-Encoding", b"chunked")],
            400,
            true,
        ),
        (
            "POST",
            "/jobs",
            &[s, ("Content-Length", b"70000")],
            413,
            true,
        ),
        (
            "POST",
            "/jobs",
            &[s, cl, ("Expect", b"100-continue")],
            0,
            false,
        ),
        ("POST", "/jobs", &[s, cl, ("Expect", b"nothing")], 417, true),
        ("POST", "/jobs", &[s, cl, evil], 403, true),
        ("POST", "/jobs", &[s, cl, ops], 0, false),
        ("POST", "/nope", &[s, cl], 404, true),
        ("POST", "http://x/jobs", &[s, cl], 400, true),
        ("DELETE", &job, &[s], 0, false),
        ("DELETE", &job, &[s, evil], 403, false),
        ("DELETE", &job, &[w], 403, false),
        ("DELETE", "/jobs/bad", &[s], 404, false),
        ("PUT", "/jobs", &[s], 405, false),
        ("GET", "/../etc/passwd", &[], 400, false),
        ("GET", "/jobs?x=%zz", &[w], 400, false),
        ("GET", "/", &[("Host", b"a"), ("Host", b"b")], 400, false),
        ("OPTIONS", "/jobs", &[ops, acrm], 204, false),
        ("OPTIONS", "/jobs", &[evil, acrm], 403, false),
        ("OPTIONS", "/jobs", &[], 204, false),
        ("OPTIONS", "/jobs", &[cl], 400, true),
        ("OPTIONS", "/nope", &[ops, acrm], 404, false),
    ];
    for (method, target, headers, want, closes) in cases {
        let got = admit_with(method, target, headers);
        assert_eq!(
            status(&got),
            *want,
            "{method} {target} {headers:?}: {got:?}"
        );
        if let Admission::Respond(r) = &got {
            assert_eq!(
                r.closes_connection(),
                *closes,
                "{method} {target} {headers:?}"
            );
        }
    }
}

#[test]
fn admitted_carries_everything_the_runtime_needs() {
    let target = format!("/jobs/{ID}/log?follow=1&token=w");
    let h: Fields<'_> = &[("Origin", b"https://ops.example.com")];
    let Admission::Handle(a) = admit_with("HEAD", &target, h) else {
        panic!("refused")
    };
    assert_eq!(a.route, Route::JobLog(id()));
    assert_eq!(a.query.flag("follow"), Ok(true));
    assert_eq!(a.framing, BodyFraming::None);
    assert!(a.head_only && !a.expect_continue);
    assert!(a.cors_headers.contains(&(
        "Access-Control-Allow-Origin",
        "https://ops.example.com".into()
    )));

    let h: Fields<'_> = &[
        ("Authorization", b"Bearer s"),
        ("Content-Length", b"2"),
        ("Expect", b"100-continue"),
    ];
    let Admission::Handle(a) = admit_with("POST", "/jobs", h) else {
        panic!("refused")
    };
    assert_eq!(
        (a.route, a.framing, a.expect_continue),
        (Route::CreateJob, BodyFraming::Length(2), true)
    );
}

#[test]
fn refusals_carry_cors_headers_for_allowed_pages() {
    let h: Fields<'_> = &[("Origin", b"https://ops.example.com")];
    let Admission::Respond(r) = admit_with("GET", "/jobs", h) else {
        panic!("admitted")
    };
    assert_eq!(r.head.status, 401);
    assert_eq!(
        r.head.get("Access-Control-Allow-Origin"),
        Some("https://ops.example.com")
    );
    assert_eq!(r.head.get("WWW-Authenticate"), Some("Bearer"));
}

#[test]
fn fuzz_entry_accepts_the_seed_shapes() {
    let seeds: &[&[u8]] = &[
        b"",
        b"GET /",
        b"POST /jobs?token=fuzz-token\nContent-Type: application/json\nContent-Length: 20\n\n{\"command\":\"build\"}",
        b"POST /jobs\nTransfer-Encoding: chunked\n\n5\r\nhello\r\n0\r\n\r\n",
        b"OPTIONS /jobs\nOrigin: https://ops.example.com\nAccess-Control-Request-Method: POST",
        b"GET /jobs/AAAAAAAAAAAAAAAAAAAAAA/events?last_event_id=%zz\nLast-Event-ID: \xff",
        b"DELETE /jobs/x\nOrigin: null\nAuthorization: Bearer fuzz-token\nExpect: 100-continue",
        b"GET /\nOrigin: https://ops.example.com\r\nX: y",
    ];
    for seed in seeds {
        fuzz_request(seed);
    }
}

#[test]
fn request_debug_redacts_tokens() {
    let h: Fields<'_> = &[("authorization", b"Bearer s3cret"), ("Accept", b"*/*")];
    let req = Request {
        method: "GET",
        target: "/jobs?tail=1&token=s3cret",
        headers: h,
    };
    let d = format!("{req:?}");
    assert!(
        !d.contains("s3cret") && d.contains("Accept") && d.contains("/jobs?<redacted>"),
        "{d}"
    );
}

/// A deterministic mutation loop over the seed shapes (no fuzzer needed): every
/// invariant `fuzz_request` asserts must hold for thousands of malformed variants.
#[test]
fn fuzz_entry_survives_mutations() {
    let seeds: &[&[u8]] = &[
        b"POST /jobs?token=fuzz-token\nContent-Type: application/json; charset=utf-8\nContent-Length: 20\nOrigin: https://ops.example.com\n\n{\"command\":\"build\"}",
        b"POST /jobs\nTransfer-Encoding: chunked\nExpect: 100-continue\nAuthorization: Bearer fuzz-token\n\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"GET /jobs/AAAAAAAAAAAAAAAAAAAAAA/events?last_event_id=3&follow=1\nLast-Event-ID: 4\nHost: h\nOrigin: http://h",
        b"OPTIONS /jobs/AAAAAAAAAAAAAAAAAAAAAA\nOrigin: https://ops.example.com\nAccess-Control-Request-Method: DELETE",
    ];
    let alphabet: &[u8] = b"\r\n\0:;,%+=?&/.\\ \t\"{}[]0aAzZ\x7f\xff\xc3";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..20_000u32 {
        let mut data = seeds[round as usize % seeds.len()].to_vec();
        for _ in 0..=next() % 4 {
            let at = (next() as usize) % (data.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => data.insert(at, byte),
                1 if at < data.len() => data[at] = byte,
                _ if at < data.len() => {
                    data.remove(at);
                }
                _ => data.push(byte),
            }
        }
        fuzz_request(&data);
    }
}
