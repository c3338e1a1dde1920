//! Share links through the registry, as both runtimes drive it (`admit`, then
//! `handle`): who may make one, what a link opens, and what it never opens.

use spout_core::config;
use spout_core::http::{Admission, Request};
use spout_core::link::LinkKey;
use spout_core::registry::{Inputs, Registry, Reply};
use spout_core::JobId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[allow(clippy::disallowed_methods)] // the one clock read: simulated time zero
fn t0() -> Instant {
    Instant::now()
}

const NOW_S: u64 = 1_795_341_600;

fn inputs(wall_s: u64, n: u8) -> Inputs {
    Inputs {
        now: t0(),
        wall: UNIX_EPOCH + Duration::from_secs(wall_s),
        random: [n; 16],
    }
}

const CONFIG: &str = r#"{
  "commands": {"build": {"argv": ["make"]}},
  "tokens": [
    {"token": "starter-0123456789", "scopes": ["start"]},
    {"token": "watcher-0123456789", "scopes": ["watch"]},
    {"token": "sharer-01234567890", "scopes": ["share"]}
  ],
  "limits": {"max_link_s": 3600}
}"#;

fn registry() -> Registry {
    let mut reg = Registry::new(config::parse(CONFIG).unwrap()).unwrap();
    reg.set_link_key(LinkKey::new(b"a-long-random-link-key").unwrap());
    reg
}

/// One request: its status and body (or, for a stream, its status and no body).
fn call(
    reg: &mut Registry,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: &str,
    inp: Inputs,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let len = body.len().to_string();
    let mut headers: Vec<(&str, &[u8])> = vec![("Host", b"localhost")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_bytes()));
    }
    if !body.is_empty() {
        headers.push(("Content-Type", b"application/json"));
        headers.push(("Content-Length", len.as_bytes()));
    }
    let req = Request {
        method,
        target,
        headers: &headers,
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match reg.admit(&req, 1) {
        Admission::Respond(r) => (r.head.status, text(&r.body)),
        Admission::Handle(admitted) => match reg.handle(&req, admitted, body.as_bytes(), inp) {
            Reply::Full(r) | Reply::Spawn { response: r, .. } => (r.head.status, text(&r.body)),
            other => {
                let status = other.status();
                if let Reply::Stream { job, .. } = other {
                    reg.unsubscribe(job, false, t0());
                }
                (status, String::new())
            }
        },
    }
}

fn start_job(reg: &mut Registry, n: u8) -> JobId {
    let (status, body) = call(
        reg,
        "POST",
        "/jobs",
        Some("starter-0123456789"),
        r#"{"command":"build"}"#,
        inputs(NOW_S, n),
    );
    assert_eq!(status, 201, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    JobId::parse(doc["id"].as_str().unwrap()).unwrap()
}

fn make_link(reg: &mut Registry, job: JobId, expires_in_s: u64) -> serde_json::Value {
    let (status, body) = call(
        reg,
        "POST",
        &format!("/jobs/{job}/links"),
        Some("sharer-01234567890"),
        &format!(r#"{{"expires_in_s": {expires_in_s}}}"#),
        inputs(NOW_S, 1),
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_link_opens_one_job_read_only_until_it_expires() {
    let mut reg = registry();
    let job = start_job(&mut reg, 100);
    let doc = make_link(&mut reg, job, 600);
    let sig = doc["sig"].as_str().unwrap().to_owned();
    assert_eq!(doc["url"], format!("/?sig={sig}#/jobs/{job}"));
    let expires_at =
        spout_core::event::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_S + 600));
    assert_eq!(doc["expires_at"], expires_at);

    // What the link opens, without any token.
    for path in ["", "/events", "/log"] {
        let target = format!("/jobs/{job}{path}?sig={sig}");
        let (status, body) = call(&mut reg, "GET", &target, None, "", inputs(NOW_S + 10, 2));
        assert_eq!(status, 200, "{target}: {body}");
    }
    // Without it, the same requests need a token.
    let (status, _) = call(
        &mut reg,
        "GET",
        &format!("/jobs/{job}"),
        None,
        "",
        inputs(NOW_S, 2),
    );
    assert_eq!(status, 401);

    // What it never opens: start, stop, list, other links, other jobs' data.
    let with_sig = |p: &str| format!("{p}?sig={sig}");
    let cases: &[(&str, String, &str, u16)] = &[
        ("DELETE", with_sig(&format!("/jobs/{job}")), "", 401),
        ("GET", with_sig("/jobs"), "", 401),
        ("GET", with_sig("/commands"), "", 401),
        ("GET", with_sig("/metrics"), "", 401),
        ("POST", with_sig("/jobs"), r#"{"command":"build"}"#, 401),
        (
            "POST",
            with_sig(&format!("/jobs/{job}/links")),
            r#"{"expires_in_s": 5}"#,
            401,
        ),
    ];
    for (method, target, body, want) in cases {
        let (status, text) = call(&mut reg, method, target, None, body, inputs(NOW_S, 3));
        assert_eq!(status, *want, "{method} {target}: {text}");
    }

    // Expired: at its expiry second, and after.
    for at in [NOW_S + 600, NOW_S + 100_000] {
        let target = format!("/jobs/{job}?sig={sig}");
        let (status, body) = call(&mut reg, "GET", &target, None, "", inputs(at, 4));
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("expired"), "{body}");
    }
}

#[test]
fn tampered_and_other_job_links_are_403_with_a_reason() {
    let mut reg = registry();
    let job = start_job(&mut reg, 100);
    let other = start_job(&mut reg, 101);
    let sig = make_link(&mut reg, job, 600)["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    let (exp, mac) = sig.split_once('.').unwrap();
    let flipped = {
        let mut m = mac.to_owned().into_bytes();
        m[5] = if m[5] == b'A' { b'B' } else { b'A' };
        String::from_utf8(m).unwrap()
    };
    let later = (exp.parse::<u64>().unwrap() + 3600).to_string();
    let cases = [
        (other, sig.clone(), "not valid for this job"),
        (job, format!("{exp}.{flipped}"), "not valid for this job"),
        (job, format!("{later}.{mac}"), "not valid for this job"),
        (job, "nonsense".to_owned(), "malformed"),
        (job, String::new(), "malformed"),
    ];
    for (id, s, why) in cases {
        let target = format!("/jobs/{id}/events?sig={s}");
        let (status, body) = call(&mut reg, "GET", &target, None, "", inputs(NOW_S, 5));
        assert_eq!(status, 403, "{target}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(why), "{body}");
    }
}

#[test]
fn making_a_link_needs_the_share_scope_a_known_job_and_a_bounded_life() {
    let mut reg = registry();
    let job = start_job(&mut reg, 100);
    let target = format!("/jobs/{job}/links");
    let body = r#"{"expires_in_s": 60}"#;
    for (token, want) in [
        (None, 401),
        (Some("starter-0123456789"), 403),
        (Some("watcher-0123456789"), 403),
        (Some("sharer-01234567890"), 201),
    ] {
        let (status, text) = call(&mut reg, "POST", &target, token, body, inputs(NOW_S, 6));
        assert_eq!(status, want, "{token:?}: {text}");
    }
    let sharer = Some("sharer-01234567890");
    let rows: &[(&str, &str, u16)] = &[
        (&target, r#"{"expires_in_s": 0}"#, 400),
        (&target, r#"{"expires_in_s": 3601}"#, 400),
        (&target, r#"{"expires_in_s": -1}"#, 400),
        (&target, r#"{"expires_in_s": 60, "x": 1}"#, 400),
        (&target, r#"[60]"#, 400),
        (&target, r#"{"expires_in_s": 3600}"#, 201),
        (
            "/jobs/AAAAAAAAAAAAAAAAAAAAAA/links",
            r#"{"expires_in_s": 60}"#,
            404,
        ),
    ];
    for (t, b, want) in rows {
        let (status, text) = call(&mut reg, "POST", t, sharer, b, inputs(NOW_S, 7));
        assert_eq!(status, *want, "{t} {b}: {text}");
    }
    // GET on the links path is not a route.
    let (status, _) = call(&mut reg, "GET", &target, sharer, "", inputs(NOW_S, 8));
    assert_eq!(status, 405);
}

#[test]
fn a_token_presented_with_a_link_is_what_counts() {
    let mut reg = registry();
    let job = start_job(&mut reg, 100);
    let sig = make_link(&mut reg, job, 600)["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = format!("/jobs/{job}?sig={sig}");
    // A wrong token is refused even beside a good link: no mixing of credentials.
    let (status, _) = call(
        &mut reg,
        "GET",
        &target,
        Some("wrong-token-0123456"),
        "",
        inputs(NOW_S, 1),
    );
    assert_eq!(status, 401);
    let (status, _) = call(
        &mut reg,
        "GET",
        &target,
        Some("watcher-0123456789"),
        "",
        inputs(NOW_S, 1),
    );
    assert_eq!(status, 200);
}
