//! Cross-origin rules: which other sites' pages may read answers, preflights, and the
//! `Origin` check that keeps other sites from starting or stopping jobs (CSRF).
//!
//! Rules:
//! 1. Origins match the allowlist exactly (scheme, host, port, as browsers send them);
//!    there is no `*` and no default entry.
//! 2. An allowed `Origin` gets `Access-Control-Allow-Origin: <origin>` and
//!    `Access-Control-Expose-Headers: Location`. Whenever the allowlist is not empty,
//!    every answer carries `Vary: Origin`, allowed or not, so that no cache hands one
//!    origin's answer to another (Fetch standard, "CORS protocol and HTTP caches").
//! 3. A reading request from a disallowed origin is answered without CORS headers: the
//!    browser then hides the answer from the page. A state-changing request (any
//!    method but `GET`, `HEAD`, `OPTIONS`) with an `Origin` that is neither allowed nor
//!    the server's own (`scheme://` + `Host`) is refused with 403 before anything runs.
//! 4. A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
//!    allowed origin for a method the path supports is 204 with the allowed methods and
//!    headers; any other preflight is 403. A plain `OPTIONS` is 204 with `Allow`.

use super::{ApiError, Request, Response};
use std::fmt;

/// Headers a cross-origin page may send.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID";

/// How long (seconds) a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: u32 = 600;

/// A configured origin that cannot be one a browser sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadOrigin(pub String);

impl fmt::Display for BadOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid CORS origin {:?}: write it as a browser sends it, scheme://host[:port] in lowercase with no path, e.g. https://ops.example.com",
            self.0
        )
    }
}

impl std::error::Error for BadOrigin {}

/// The CORS allowlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    allow_origins: Vec<String>,
}

fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, port))
                if !addr.is_empty()
                    && addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                ("v6", port)
            }
            _ => return false,
        }
    } else {
        let host_end = rest.find(':').unwrap_or(rest.len());
        rest.split_at(host_end)
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && port_ok
}

impl Cors {
    /// An allowlist; empty means no cross-origin page may read anything.
    ///
    /// # Errors
    /// [`BadOrigin`] for `*`, `null`, a path, uppercase, or anything not
    /// `http(s)://host[:port]`.
    pub fn new(allow_origins: Vec<String>) -> Result<Cors, BadOrigin> {
        if let Some(bad) = allow_origins.iter().find(|o| !is_origin(o)) {
            return Err(BadOrigin(bad.clone()));
        }
        Ok(Cors { allow_origins })
    }

    /// The allowed origin that equals the request's single `Origin` field.
    fn allowed<'s>(&'s self, req: &Request<'_>) -> Option<&'s str> {
        let origin = single(req, "origin")?;
        self.allow_origins
            .iter()
            .map(String::as_str)
            .find(|o| o.as_bytes() == origin)
    }

    /// Headers for a normal answer to `req` (rule 2).
    #[must_use]
    pub fn cors_headers(&self, req: &Request<'_>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(origin) = self.allowed(req) {
            out.push(("Access-Control-Allow-Origin", origin.to_string()));
            out.push(("Access-Control-Expose-Headers", "Location".to_string()));
        }
        if !self.allow_origins.is_empty() {
            out.push(("Vary", "Origin".to_string()));
        }
        out
    }

    /// Refuses a state-changing request from another site (rule 3).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] (403).
    pub fn check_origin(&self, req: &Request<'_>) -> Result<(), ApiError> {
        if matches!(req.method, "GET" | "HEAD" | "OPTIONS")
            || req.headers_all("origin").next().is_none()
        {
            return Ok(());
        }
        if self.allowed(req).is_some() || same_origin(req) {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "this page's origin may not start or stop jobs: add it to cors.allow_origins".into(),
        ))
    }

    /// The answer to an `OPTIONS` request on a path that supports `route_methods`
    /// (rule 4).
    #[must_use]
    pub fn preflight(&self, req: &Request<'_>, route_methods: &[&str]) -> Response {
        let requested = req.header("access-control-request-method");
        if req.headers_all("origin").next().is_none() || requested.is_none() {
            return Response::no_content()
                .with_header("Allow", route_methods.join(", "))
                .with_headers(self.cors_headers(req));
        }
        let method_ok = requested.is_some_and(|m| route_methods.iter().any(|r| r.as_bytes() == m));
        match self.allowed(req) {
            Some(origin) if method_ok => Response::no_content()
                .with_header("Access-Control-Allow-Origin", origin)
                .with_header("Access-Control-Allow-Methods", route_methods.join(", "))
                .with_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
                .with_header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE.to_string())
                .with_header("Vary", "Origin"),
            Some(_) => ApiError::Forbidden(format!(
                "method not allowed here: use one of {}",
                route_methods.join(", ")
            ))
            .response()
            .with_header("Vary", "Origin"),
            None => ApiError::Forbidden("origin not allowed: add it to cors.allow_origins".into())
                .response()
                .with_header("Vary", "Origin"),
        }
    }
}

/// The value of a field that appears exactly once.
fn single<'a>(req: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    let mut all = req.headers_all(name);
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// Whether `Origin` names this server itself: `http://` or `https://` + `Host`. The
/// built-in viewer's own `POST`s carry such an `Origin`.
fn same_origin(req: &Request<'_>) -> bool {
    let (Some(origin), Some(host)) = (single(req, "origin"), single(req, "host")) else {
        return false;
    };
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a [u8])];

    const OPS: &str = "https://ops.example.com";

    fn cors() -> Cors {
        Cors::new(vec![OPS.into(), "http://127.0.0.1:9000".into()]).unwrap()
    }

    fn req<'a>(method: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
        Request {
            method,
            target: "/jobs",
            headers,
        }
    }

    #[test]
    fn origin_config_is_validated() {
        for good in [
            OPS,
            "http://localhost:8080",
            "http://[::1]:8080",
            "http://10.0.0.1",
            "https://a-b.c",
        ] {
            assert!(Cors::new(vec![good.into()]).is_ok(), "{good}");
        }
        for bad in [
            "*",
            "null",
            "",
            "https://ops.example.com/",
            "https://Ops.example.com",
            "ftp://x",
            "https://",
            "https://x:",
            "https://x:123456",
            "https://x\r\nY: z",
            "https://a b",
            "https://[]",
            "ops.example.com",
        ] {
            assert_eq!(
                Cors::new(vec![OPS.into(), bad.into()]),
                Err(BadOrigin(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn normal_answer_headers() {
        let c = cors();
        let cases: &[(Fields<'_>, &[(&str, &str)])] = &[
            (&[], &[("Vary", "Origin")]),
            (
                &[("Origin", OPS.as_bytes())],
                &[
                    ("Access-Control-Allow-Origin", OPS),
                    ("Access-Control-Expose-Headers", "Location"),
                    ("Vary", "Origin"),
                ],
            ),
            (
                &[("Origin", b"https://evil.example")],
                &[("Vary", "Origin")],
            ),
            (
                &[("Origin", b"https://ops.example.com.evil.example")],
                &[("Vary", "Origin")],
            ),
            (
                &[("Origin", b"HTTPS://OPS.EXAMPLE.COM")],
                &[("Vary", "Origin")],
            ),
            (&[("Origin", b"null")], &[("Vary", "Origin")]),
            (
                &[("Origin", OPS.as_bytes()), ("Origin", OPS.as_bytes())],
                &[("Vary", "Origin")],
            ),
        ];
        for (headers, want) in cases {
            let got = c.cors_headers(&req("GET", headers));
            let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(&got, want, "{headers:?}");
        }
        assert!(Cors::default()
            .cors_headers(&req("GET", &[("Origin", OPS.as_bytes())]))
            .is_empty());
    }

    #[test]
    fn state_changes_need_an_allowed_or_own_origin() {
        let c = cors();
        let cases: &[(&str, Fields<'_>, bool)] = &[
            ("POST", &[], true),
            ("POST", &[("Origin", OPS.as_bytes())], true),
            ("DELETE", &[("Origin", OPS.as_bytes())], true),
            ("POST", &[("Origin", b"https://evil.example")], false),
            ("DELETE", &[("Origin", b"https://evil.example")], false),
            ("POST", &[("Origin", b"null")], false),
            (
                "POST",
                &[
                    ("Origin", b"http://127.0.0.1:8080"),
                    ("Host", b"127.0.0.1:8080"),
                ],
                true,
            ),
            (
                "POST",
                &[
                    ("Origin", b"http://LOCALHOST:8080"),
                    ("Host", b"localhost:8080"),
                ],
                true,
            ),
            (
                "POST",
                &[
                    ("Origin", b"https://spout.example"),
                    ("Host", b"spout.example"),
                ],
                true,
            ),
            (
                "POST",
                &[
                    ("Origin", b"http://evil.example"),
                    ("Host", b"127.0.0.1:8080"),
                ],
                false,
            ),
            ("POST", &[("Origin", b"http://127.0.0.1:8080")], false),
            ("POST", &[("Origin", b"http://"), ("Host", b"")], false),
            ("GET", &[("Origin", b"https://evil.example")], true),
            ("HEAD", &[("Origin", b"https://evil.example")], true),
        ];
        for (method, headers, ok) in cases {
            let got = c.check_origin(&req(method, headers));
            assert_eq!(got.is_ok(), *ok, "{method} {headers:?}");
            if let Err(e) = got {
                assert_eq!(e.status(), 403);
            }
        }
    }

    #[test]
    fn preflights() {
        let c = cors();
        let methods = ["GET", "HEAD", "POST", "OPTIONS"];
        let p = |h: Fields<'_>| c.preflight(&req("OPTIONS", h), &methods);

        let ok = p(&[
            ("Origin", OPS.as_bytes()),
            ("Access-Control-Request-Method", b"POST"),
        ]);
        assert_eq!(ok.head.status, 204);
        assert_eq!(ok.head.get("Access-Control-Allow-Origin"), Some(OPS));
        assert_eq!(
            ok.head.get("Access-Control-Allow-Methods"),
            Some("GET, HEAD, POST, OPTIONS")
        );
        assert_eq!(
            ok.head.get("Access-Control-Allow-Headers"),
            Some(ALLOW_HEADERS)
        );
        assert_eq!(ok.head.get("Access-Control-Max-Age"), Some("600"));
        assert_eq!(ok.head.get("Vary"), Some("Origin"));

        let denied: &[Fields<'_>] = &[
            &[
                ("Origin", b"https://evil.example"),
                ("Access-Control-Request-Method", b"POST"),
            ],
            &[
                ("Origin", OPS.as_bytes()),
                ("Access-Control-Request-Method", b"DELETE"),
            ],
            &[
                ("Origin", OPS.as_bytes()),
                ("Access-Control-Request-Method", b"post"),
            ],
        ];
        for h in denied {
            let r = p(h);
            assert_eq!(r.head.status, 403, "{h:?}");
            assert_eq!(r.head.get("Access-Control-Allow-Origin"), None, "{h:?}");
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert!(body["error"].is_string());
        }

        let plain = p(&[]);
        assert_eq!(plain.head.status, 204);
        assert_eq!(plain.head.get("Allow"), Some("GET, HEAD, POST, OPTIONS"));
        assert_eq!(plain.head.get("Access-Control-Allow-Methods"), None);
    }
}
