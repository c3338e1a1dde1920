//! Response heads and bodies, encoded to the exact bytes both runtimes write, and the
//! chunked framing of streamed bodies.

use serde::Serialize;

/// The `Content-Security-Policy` of the built-in viewer page: everything from this
/// server only; the page's one inline script and one inline style allowed by their
/// SHA-256 hashes (never `'unsafe-inline'`, so output wrongly inserted as markup could
/// not run a handler); no framing by other sites, no plugins, no `<base>` tricks. A
/// test (`core/tests/http_transcripts.rs`) fails with the new hashes when the page
/// changes.
pub const VIEWER_CSP: &str = "default-src 'none'; \
script-src 'sha256-mg2bEAPIv1cCHVbzJJMNecujr+gulX4wIuWzLd8Mpog='; \
style-src 'sha256-Evcy/CIlsUviJP/4jMp7gm/ogclNzksHSVMIislM/4U='; \
connect-src 'self'; img-src 'self' data:; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The interim answer to `Expect: 100-continue`, written before reading the body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A status line and header fields.
///
/// Header names are `&'static str` (only this crate chooses them); values are built
/// only from validated data. [`ResponseHead::encode`] still replaces any control byte
/// in a value, so a bug elsewhere can never split a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header fields in the order they are written.
    pub headers: Vec<(&'static str, String)>,
}

impl ResponseHead {
    /// A head with the headers every response carries (`X-Content-Type-Options`).
    #[must_use]
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            status,
            headers: vec![("X-Content-Type-Options", "nosniff".into())],
        }
    }

    /// Appends a header field.
    pub fn push(&mut self, name: &'static str, value: String) {
        self.headers.push((name, value));
    }

    /// The first value of a header (names compared case-insensitively).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends `HTTP/1.1 <status> <reason>\r\n`, one `Name: value\r\n` per field and
    /// the blank line.
    ///
    /// # Panics
    /// In debug builds only, when a header value contains CR, LF or NUL (a bug: values
    /// must be validated before they get here). Release builds replace every control
    /// byte but HTAB with a space instead.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(self.status.to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(reason_phrase(self.status).as_bytes());
        buf.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            debug_assert!(
                !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
                "header {name} has CR, LF or NUL in its value: {value:?}"
            );
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend(value.bytes().map(|b| {
                if (b < 0x20 && b != b'\t') || b == 0x7F {
                    b' '
                } else {
                    b
                }
            }));
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
    }
}

/// A complete response: head (with `Content-Length`, except for 204) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status and header fields.
    pub head: ResponseHead,
    /// The body bytes (written unless the request was `HEAD`).
    pub body: Vec<u8>,
}

impl Response {
    fn with_body(
        status: u16,
        content_type: &'static str,
        cache: &'static str,
        body: Vec<u8>,
    ) -> Response {
        let mut head = ResponseHead::new(status);
        head.push("Content-Type", content_type.into());
        head.push("Cache-Control", cache.into());
        head.push("Content-Length", body.len().to_string());
        Response { head, body }
    }

    /// A JSON body (`Content-Type: application/json`, `Cache-Control: no-store`: API
    /// answers are always current state).
    ///
    /// A value serde cannot serialize (a map with non-string keys) becomes a 500, so
    /// this never panics.
    #[must_use]
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::with_body(status, "application/json", "no-store", body),
            Err(_) => Response::with_body(
                500,
                "application/json",
                "no-store",
                br#"{"error":"internal server error: see the server log"}"#.to_vec(),
            ),
        }
    }

    /// A text body with the given `Content-Type` (e.g. `text/plain; charset=utf-8`),
    /// `Cache-Control: no-store`.
    #[must_use]
    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response::with_body(status, content_type, "no-store", body.into())
    }

    /// The viewer page: `200`, `text/html; charset=utf-8`, [`VIEWER_CSP`],
    /// `Referrer-Policy: no-referrer` (a shared link may carry `?token=`, which must not
    /// leak to other sites) and `Cache-Control: no-cache` (revalidate after upgrades).
    #[must_use]
    pub fn html(body: impl Into<Vec<u8>>) -> Response {
        let mut r = Response::with_body(200, "text/html; charset=utf-8", "no-cache", body.into());
        r.head.push("Content-Security-Policy", VIEWER_CSP.into());
        r.head.push("Referrer-Policy", "no-referrer".into());
        r
    }

    /// `204 No Content`, which has no body and so no `Content-Length` (RFC 9110 §8.6).
    #[must_use]
    pub fn no_content() -> Response {
        let mut head = ResponseHead::new(204);
        head.push("Cache-Control", "no-store".into());
        Response {
            head,
            body: Vec::new(),
        }
    }

    /// Adds a header field (e.g. `Location`); the value must come from validated data.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.head.push(name, value.into());
        self
    }

    /// Adds several header fields (e.g. from [`super::Cors::cors_headers`]).
    #[must_use]
    pub fn with_headers(
        mut self,
        headers: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Response {
        self.head.headers.extend(headers);
        self
    }

    /// Appends the head, then the body unless `head_only` (the answer to `HEAD`).
    pub fn encode(&self, head_only: bool, buf: &mut Vec<u8>) {
        self.head.encode(buf);
        if !head_only {
            buf.extend_from_slice(&self.body);
        }
    }
}

fn stream_head(content_type: &'static str) -> ResponseHead {
    let mut head = ResponseHead::new(200);
    head.push("Content-Type", content_type.into());
    head.push("Cache-Control", "no-cache".into());
    head.push("X-Accel-Buffering", "no".into());
    head.push("Transfer-Encoding", "chunked".into());
    head
}

/// The head of an SSE stream; the body follows in [`encode_chunk`] chunks and ends
/// with [`LAST_CHUNK`].
#[must_use]
pub fn sse_head() -> ResponseHead {
    stream_head("text/event-stream")
}

/// The head of `/jobs/{id}/log?follow=1`: raw output as chunked `text/plain`.
#[must_use]
pub fn chunked_text_head() -> ResponseHead {
    stream_head("text/plain; charset=utf-8")
}

/// Appends `data` as one chunk: `{len:x}\r\n`, data, `\r\n`.
///
/// Empty data writes nothing: an empty chunk is the end of the body.
pub fn encode_chunk(data: &[u8], buf: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    buf.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status this API uses; empty for others (allowed by RFC 9112).
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        let mut buf = Vec::new();
        r.encode(false, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn json_response_bytes() {
        let r = Response::json(201, &serde_json::json!({"a": "x\"y"}));
        assert_eq!(
            wire(&r),
            "HTTP/1.1 201 Created\r\nX-Content-Type-Options: nosniff\r\nContent-Type: application/json\r\n\
             Cache-Control: no-store\r\nContent-Length: 12\r\n\r\n{\"a\":\"x\\\"y\"}"
        );
    }

    #[test]
    fn head_only_omits_body_but_keeps_length() {
        let r = Response::text(200, "text/plain; charset=utf-8", "ok\n");
        let mut buf = Vec::new();
        r.encode(true, &mut buf);
        let s = String::from_utf8(buf).unwrap();
        assert!(s.ends_with("Content-Length: 3\r\n\r\n"), "{s}");
    }

    #[test]
    fn no_content_has_no_length() {
        let s = wire(&Response::no_content());
        assert!(s.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!s.contains("Content-Length"));
    }

    #[test]
    fn html_carries_csp_and_referrer_policy() {
        let r = Response::html("<p>");
        assert_eq!(r.head.get("content-security-policy"), Some(VIEWER_CSP));
        assert_eq!(r.head.get("Referrer-Policy"), Some("no-referrer"));
        assert_eq!(r.head.get("X-Content-Type-Options"), Some("nosniff"));
        assert!(!VIEWER_CSP.contains("http"), "no external sources");
    }

    #[test]
    fn stream_heads() {
        let mut buf = Vec::new();
        sse_head().encode(&mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nContent-Type: text/event-stream\r\n\
             Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            chunked_text_head().get("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn chunks() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"1\r\na\r\n"),
            (&[b'x'; 26], b"1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"),
        ];
        for (data, want) in cases {
            let mut buf = Vec::new();
            encode_chunk(data, &mut buf);
            assert_eq!(&buf[..], *want);
        }
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn control_bytes_are_replaced_in_release() {
        let head = ResponseHead {
            status: 200,
            headers: vec![("X", "a\r\nB: c\0".into())],
        };
        let mut buf = Vec::new();
        head.encode(&mut buf);
        assert_eq!(buf, b"HTTP/1.1 200 OK\r\nX: a  B: c \r\n\r\n");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "CR, LF or NUL")]
    fn control_bytes_are_a_bug_in_debug() {
        let head = ResponseHead {
            status: 200,
            headers: vec![("X", "a\r\nB: c".into())],
        };
        head.encode(&mut Vec::new());
    }

    #[test]
    fn unknown_status_has_empty_reason() {
        let mut buf = Vec::new();
        ResponseHead {
            status: 299,
            headers: vec![],
        }
        .encode(&mut buf);
        assert_eq!(buf, b"HTTP/1.1 299 \r\n\r\n");
    }
}
