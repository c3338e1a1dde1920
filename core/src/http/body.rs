//! Request bodies: how long a body is (with request smuggling in mind), a sans-IO
//! decoder for chunked bodies, `Expect: 100-continue`, and the `POST /jobs` body.
//!
//! Rules, from RFC 9112 §6 and made strict wherever the RFC allows a choice:
//!
//! | request has | answer |
//! | --- | --- |
//! | both `Content-Length` and `Transfer-Encoding` | 400, close |
//! | two or more `Content-Length` fields (even identical) | 400, close |
//! | `Content-Length` that is not 1*DIGIT | 400, close |
//! | `Content-Length` above the limit | 413, close |
//! | `Transfer-Encoding` whose last coding is not `chunked` | 400, close |
//! | `Transfer-Encoding` other than exactly `chunked` | 501, close |
//! | `POST` with neither | 411, close |
//! | a non-empty body on any method but `POST` | 400, close |

use super::{ApiError, Request, MAX_HEAD_BYTES};
use serde::{Deserialize, Serialize};

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the next request starts right after the head.
    None,
    /// Exactly that many bytes follow (at most the limit passed to [`body_framing`]).
    Length(usize),
    /// A chunked body follows: feed it to a [`ChunkedDecoder`].
    Chunked,
}

pub(super) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Decides how the body of `req` is delimited (see the table in this module's docs).
///
/// Only `POST` has a body in this API; refusing bodies elsewhere (instead of reading
/// and discarding them) removes a whole class of desynchronisation bugs.
///
/// # Errors
/// [`ApiError::BadFraming`] (400), [`ApiError::BodyTooLarge`] (413),
/// [`ApiError::UnsupportedTransferCoding`] (501), [`ApiError::LengthRequired`] (411);
/// all close the connection.
pub fn body_framing(req: &Request<'_>, max_body: usize) -> Result<BodyFraming, ApiError> {
    let lengths: Vec<&[u8]> = req.headers_all("content-length").collect();
    let codings: Vec<&[u8]> = req.headers_all("transfer-encoding").collect();
    let framing = if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(ApiError::BadFraming(
                "both Content-Length and Transfer-Encoding: send only one".into(),
            ));
        }
        // Several fields are one comma-separated list (RFC 9110 §5.3).
        let list: Vec<&[u8]> = codings
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .collect();
        if !list
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(ApiError::BadFraming(
                "chunked must be the final transfer coding: send `Transfer-Encoding: chunked`"
                    .into(),
            ));
        }
        if list.len() != 1 {
            return Err(ApiError::UnsupportedTransferCoding);
        }
        BodyFraming::Chunked
    } else {
        match lengths[..] {
            [] => BodyFraming::None,
            [value] => BodyFraming::Length(parse_content_length(value, max_body)?),
            _ => {
                return Err(ApiError::BadFraming(
                    "more than one Content-Length field: send exactly one".into(),
                ))
            }
        }
    };
    match (req.method == "POST", framing) {
        (true, BodyFraming::None) => Err(ApiError::LengthRequired),
        (true, f) => Ok(f),
        (false, BodyFraming::None | BodyFraming::Length(0)) => Ok(BodyFraming::None),
        (false, _) => Err(ApiError::BadFraming(
            "this request takes no body: send none".into(),
        )),
    }
}

fn parse_content_length(value: &[u8], max_body: usize) -> Result<usize, ApiError> {
    let digits = trim_ows(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ApiError::BadFraming(
            "Content-Length must be decimal digits".into(),
        ));
    }
    let mut n: usize = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .filter(|&n| n <= max_body)
            .ok_or(ApiError::BodyTooLarge(max_body))?;
    }
    Ok(n)
}

/// Whether the client waits for `100 Continue` before sending its body.
///
/// # Errors
/// [`ApiError::ExpectationFailed`] (417) for any `Expect` other than one
/// `100-continue` (case-insensitive, RFC 9110 §10.1.1).
pub fn expects_continue(req: &Request<'_>) -> Result<bool, ApiError> {
    let values: Vec<&[u8]> = req.headers_all("expect").collect();
    match values[..] {
        [] => Ok(false),
        [v] if trim_ows(v).eq_ignore_ascii_case(b"100-continue") => Ok(true),
        _ => Err(ApiError::ExpectationFailed),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size: how many so far, and the value.
    Size {
        digits: u8,
        size: u64,
    },
    /// Skipping a chunk extension until CR.
    Ext {
        size: u64,
    },
    /// Got CR after the size line; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Copying chunk data; bytes left.
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line (ignored).
    Trailer,
    TrailerLf,
    /// Got the final CR; LF ends the body.
    EndLf,
    Done,
}

/// A sans-IO decoder for a chunked request body (RFC 9112 §7.1), strict about CRLF.
///
/// Feed it whatever bytes arrived; it appends the body's data to `out` and says how
/// many input bytes it used, so that bytes after the body (a pipelined request) are
/// left for the caller. Trailer fields are read and ignored. A failure is final.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: Chunk,
    max_body: usize,
    body_len: u64,
    overhead: usize,
    failed: Option<ApiError>,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` bytes.
    #[must_use]
    pub fn new(max_body: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: Chunk::Size { digits: 0, size: 0 },
            max_body,
            body_len: 0,
            overhead: 0,
            failed: None,
        }
    }

    /// Whether the whole body, final chunk and trailers included, has been read.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Decodes from `input`, appending body data to `out`; returns how many bytes of
    /// `input` were used (fewer than all only once [`Self::is_done`]).
    ///
    /// # Errors
    /// [`ApiError::BadFraming`] for malformed framing or too much framing overhead
    /// (more than [`MAX_HEAD_BYTES`] of sizes, extensions and trailers),
    /// [`ApiError::BodyTooLarge`] past the limit. Every later call returns the same.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ApiError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.run(input, out) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ApiError> {
        let bad = |what: &str| ApiError::BadFraming(format!("malformed chunked body: {what}"));
        let mut i = 0;
        while i < input.len() {
            if let Chunk::Data(left) = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            if self.state == Chunk::Done {
                break;
            }
            let b = input[i];
            i += 1;
            self.overhead += 1;
            if self.overhead > MAX_HEAD_BYTES {
                return Err(ApiError::BadFraming(
                    "too much chunked framing: send larger chunks or use Content-Length".into(),
                ));
            }
            self.state = match (self.state, b) {
                (Chunk::Size { digits, size }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 16 {
                        return Err(bad("chunk size has too many digits"));
                    }
                    let d = char::from(b).to_digit(16).map_or(0, u64::from);
                    Chunk::Size {
                        digits: digits + 1,
                        size: (size << 4) | d,
                    }
                }
                (Chunk::Size { digits: 1.., size }, b';' | b' ' | b'\t') => Chunk::Ext { size },
                (Chunk::Size { digits: 1.., size }, b'\r') | (Chunk::Ext { size }, b'\r') => {
                    Chunk::SizeLf { size }
                }
                (Chunk::Size { .. }, _) => return Err(bad("expected a hexadecimal chunk size")),
                (Chunk::Ext { size }, _)
                    if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 =>
                {
                    Chunk::Ext { size }
                }
                (Chunk::Ext { .. }, _) => return Err(bad("control byte in a chunk extension")),
                (Chunk::SizeLf { size: 0 }, b'\n') => Chunk::TrailerStart,
                (Chunk::SizeLf { size }, b'\n') => {
                    self.body_len = self.body_len.saturating_add(size);
                    if self.body_len > self.max_body as u64 {
                        return Err(ApiError::BodyTooLarge(self.max_body));
                    }
                    Chunk::Data(size)
                }
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size { digits: 0, size: 0 },
                (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                (Chunk::TrailerStart | Chunk::Trailer, _)
                    if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 =>
                {
                    Chunk::Trailer
                }
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                (Chunk::EndLf, b'\n') => Chunk::Done,
                _ => return Err(bad("expected CRLF")),
            };
        }
        Ok(i)
    }
}

/// The body of `POST /jobs`: which declared command to run and the user's arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The declared command's name.
    pub command: String,
    /// Arguments appended to its argv (only where the command allows them).
    #[serde(default)]
    pub args: Vec<String>,
}

/// Reads a `POST /jobs` body.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] (415) unless there is one `Content-Type` of
/// `application/json` (a `charset` parameter must be `utf-8`; other parameters are
/// ignored); [`ApiError::BadRequest`] (400) with serde_json's description for bad JSON,
/// unknown fields, or a wrong type.
pub fn parse_job_request(req: &Request<'_>, body: &[u8]) -> Result<JobRequest, ApiError> {
    parse_json_object(
        req,
        body,
        "invalid job request",
        r#"{"command": "<name>", "args": ["<arg>", ...]}"#,
    )
}

/// The body of `POST /jobs/{id}/links`: how long the link lasts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Seconds from now until the link stops working.
    pub expires_in_s: u64,
}

/// Reads a `POST /jobs/{id}/links` body (same rules as [`parse_job_request`]).
///
/// # Errors
/// As [`parse_job_request`].
pub fn parse_link_request(req: &Request<'_>, body: &[u8]) -> Result<LinkRequest, ApiError> {
    parse_json_object(
        req,
        body,
        "invalid link request",
        r#"{"expires_in_s": <seconds>}"#,
    )
}

/// A JSON object body of type `T`; `what` and `shape` word the 400.
fn parse_json_object<T: serde::de::DeserializeOwned>(
    req: &Request<'_>,
    body: &[u8],
    what: &str,
    shape: &str,
) -> Result<T, ApiError> {
    let types: Vec<&[u8]> = req.headers_all("content-type").collect();
    let [ctype] = types[..] else {
        return Err(ApiError::UnsupportedMediaType);
    };
    if !is_json_media_type(ctype) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let invalid =
        |why: &dyn std::fmt::Display| ApiError::BadRequest(format!("{what}: {why}; send {shape}"));
    // serde's derived structs also accept a JSON array (`["build"]`); only an object
    // is a request.
    if body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .is_some_and(|&b| b != b'{')
    {
        return Err(invalid(&"expected a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| invalid(&e))
}

fn is_json_media_type(value: &[u8]) -> bool {
    let mut parts = value.split(|&b| b == b';');
    // invariant: split always yields at least one part.
    let essence = trim_ows(parts.next().unwrap_or_default());
    if !essence.eq_ignore_ascii_case(b"application/json") {
        return false;
    }
    parts.all(|param| {
        let param = trim_ows(param);
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &b""[..]),
        };
        if !trim_ows(name).eq_ignore_ascii_case(b"charset") {
            return true;
        }
        let value = trim_ows(value);
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        value.eq_ignore_ascii_case(b"utf-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a [u8])];

    fn req<'a>(method: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
        Request {
            method,
            target: "/jobs",
            headers,
        }
    }

    #[test]
    fn framing_table() {
        use BodyFraming as F;
        let too_large = Err(ApiError::BodyTooLarge(100));
        let cases: &[(&str, Fields<'_>, Result<F, u16>)] = &[
            ("POST", &[("Content-Length", b"10")], Ok(F::Length(10))),
            ("POST", &[("content-length", b" 0 ")], Ok(F::Length(0))),
            ("POST", &[("Content-Length", b"007")], Ok(F::Length(7))),
            ("POST", &[("Content-Length", b"100")], Ok(F::Length(100))),
            ("POST", &[("Transfer-Encoding", b"chunked")], Ok(F::Chunked)),
            (
                "POST",
                &[("Transfer-Encoding", b"  CHUNKED\t")],
                Ok(F::Chunked),
            ),
            ("POST", &[], Err(411)),
            ("GET", &[], Ok(F::None)),
            ("GET", &[("Content-Length", b"0")], Ok(F::None)),
            ("DELETE", &[("Content-Length", b"1")], Err(400)),
            ("GET", &[("Transfer-Encoding", b"chunked")], Err(400)),
            // smuggling shapes
            (
                "POST",
                &[("Content-Length", b"5"), ("Transfer-Encoding", b"chunked")],
                Err(400),
            ),
            (
                "POST",
                &[("Transfer-Encoding", b"chunked"), ("Content-Length", b"0")],
                Err(400),
            ),
            (
                "POST",
                &[("Content-Length", b"5"), ("Content-Length", b"5")],
                Err(400),
            ),
            (
                "POST",
                &[("Content-Length", b"5"), ("Content-Length", b"6")],
                Err(400),
            ),
            ("POST", &[("Content-Length", b"5, 5")], Err(400)),
            ("POST", &[("Content-Length", b"+5")], Err(400)),
            ("POST", &[("Content-Length", b"-1")], Err(400)),
            ("POST", &[("Content-Length", b"0x10")], Err(400)),
            ("POST", &[("Content-Length", b"1 0")], Err(400)),
            ("POST", &[("Content-Length", b"")], Err(400)),
            ("POST", &[("Content-Length", "５".as_bytes())], Err(400)),
            ("POST", &[("Content-Length", b"101")], Err(413)),
            (
                "POST",
                &[("Content-Length", b"99999999999999999999999999")],
                Err(413),
            ),
            ("POST", &[("Transfer-Encoding", b"gzip, chunked")], Err(501)),
            (
                "POST",
                &[("Transfer-Encoding", b"chunked, chunked")],
                Err(501),
            ),
            (
                "POST",
                &[
                    ("Transfer-Encoding", b"gzip"),
                    ("Transfer-Encoding", b"chunked"),
                ],
                Err(501),
            ),
            ("POST", &[("Transfer-Encoding", b"chunked, gzip")], Err(400)),
            ("POST", &[("Transfer-Encoding", b"chunked,")], Err(400)),
            ("POST", &[("Transfer-Encoding", b"identity")], Err(400)),
            ("POST", &[("Transfer-Encoding", b"xchunked")], Err(400)),
            ("POST", &[("Transfer-Encoding", b"")], Err(400)),
        ];
        for (method, headers, want) in cases {
            let got = body_framing(&req(method, headers), 100);
            match (want, &got) {
                (Ok(f), Ok(g)) => assert_eq!(f, g, "{method} {headers:?}"),
                (Err(s), Err(e)) => {
                    assert_eq!(*s, e.status(), "{method} {headers:?}: {e}");
                    assert!(e.closes_connection(), "{method} {headers:?}");
                }
                _ => panic!("{method} {headers:?}: want {want:?}, got {got:?}"),
            }
        }
        assert_eq!(
            body_framing(&req("POST", &[("Content-Length", b"101")]), 100),
            too_large
        );
    }

    #[test]
    fn expect_table() {
        let cases: &[(Fields<'_>, Result<bool, ApiError>)] = &[
            (&[], Ok(false)),
            (&[("Expect", b"100-continue")], Ok(true)),
            (&[("expect", b" 100-Continue ")], Ok(true)),
            (&[("Expect", b"200-ok")], Err(ApiError::ExpectationFailed)),
            (&[("Expect", b"")], Err(ApiError::ExpectationFailed)),
            (
                &[("Expect", b"100-continue"), ("Expect", b"100-continue")],
                Err(ApiError::ExpectationFailed),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(
                &expects_continue(&req("POST", headers)),
                want,
                "{headers:?}"
            );
        }
    }

    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), ApiError> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        assert!(d.is_done(), "not done after {input:?}");
        Ok((out, n))
    }

    #[test]
    fn chunked_decoding_table() {
        let ok: &[(&[u8], &[u8], usize)] = &[
            (b"0\r\n\r\n", b"", 5),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
            (
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                b"hello world",
                32,
            ),
            (
                b"A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1",
                b"0123456789",
                34,
            ),
            (b"00000005 \r\nhello\r\n0\r\n\r\n", b"hello", 23),
        ];
        for (input, body, used) in ok {
            assert_eq!(
                decode_all(input, 64),
                Ok((body.to_vec(), *used)),
                "{input:?}"
            );
        }
        let bad: &[(&[u8], u16)] = &[
            (b"\r\n", 400),
            (b"g\r\n", 400),
            (b"5\nhello\r\n0\r\n\r\n", 400),
            (b"5\r\nhelloX\r\n", 400),
            (b"5\r\nhello\n0\r\n\r\n", 400),
            (b"0\r\n\n", 400),
            (b"1;a\0\r\n", 400),
            (b"-1\r\n", 400),
            (b"11111111111111111\r\n", 400),
            (b"41\r\n", 413),
            (b"20\r\n01234567890123456789012345678901\r\n21\r\n", 413),
            (b"ffffffffffffffff\r\n", 413),
        ];
        for (input, status) in bad {
            let e = decode_all(input, 64).unwrap_err();
            assert_eq!(e.status(), *status, "{input:?}: {e}");
        }
    }

    #[test]
    fn chunked_any_split_gives_same_body() {
        let input = b"5;x\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
        for split in 0..=input.len() {
            let mut d = ChunkedDecoder::new(64);
            let mut out = Vec::new();
            let a = d.decode(&input[..split], &mut out).unwrap();
            let b = d.decode(&input[a..], &mut out).unwrap();
            assert!(d.is_done(), "split {split}");
            assert_eq!(out, b"hello world", "split {split}");
            assert_eq!(&input[a + b..], b"NEXT", "split {split}");
        }
    }

    #[test]
    fn chunked_failure_is_final_and_overhead_is_bounded() {
        let mut d = ChunkedDecoder::new(64);
        let e = d.decode(b"zz", &mut Vec::new()).unwrap_err();
        assert_eq!(d.decode(b"0\r\n\r\n", &mut Vec::new()), Err(e));
        let mut d = ChunkedDecoder::new(usize::MAX);
        let endless_ext = [b"1;".as_slice(), &[b'a'; MAX_HEAD_BYTES]].concat();
        assert_eq!(
            d.decode(&endless_ext, &mut Vec::new())
                .map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn job_request_table() {
        let json: Fields<'_> = &[("Content-Type", b"application/json")];
        let ok: &[(Fields<'_>, &str, JobRequest)] = &[
            (
                json,
                r#"{"command":"build","args":["test"]}"#,
                JobRequest {
                    command: "build".into(),
                    args: vec!["test".into()],
                },
            ),
            (
                json,
                r#"{"command":"build"}"#,
                JobRequest {
                    command: "build".into(),
                    args: vec![],
                },
            ),
            (
                &[("content-type", b"Application/JSON; charset=UTF-8")],
                r#" {"args":[],"command":"x"} "#,
                JobRequest {
                    command: "x".into(),
                    args: vec![],
                },
            ),
            (
                &[("Content-Type", b"application/json;charset=\"utf-8\"; q=1")],
                r#"{"command":"x"}"#,
                JobRequest {
                    command: "x".into(),
                    args: vec![],
                },
            ),
        ];
        for (headers, body, want) in ok {
            assert_eq!(
                parse_job_request(&req("POST", headers), body.as_bytes()).as_ref(),
                Ok(want),
                "{body}"
            );
        }
        let bad: &[(Fields<'_>, &str, u16, &str)] = &[
            (&[], r#"{"command":"x"}"#, 415, "application/json"),
            (
                &[("Content-Type", b"text/plain")],
                r#"{"command":"x"}"#,
                415,
                "",
            ),
            (
                &[("Content-Type", b"application/jsonx")],
                r#"{"command":"x"}"#,
                415,
                "",
            ),
            (
                &[("Content-Type", b"application/json; charset=latin1")],
                r#"{"command":"x"}"#,
                415,
                "",
            ),
            (
                &[
                    ("Content-Type", b"application/json"),
                    ("Content-Type", b"application/json"),
                ],
                r#"{"command":"x"}"#,
                415,
                "",
            ),
            (json, "", 400, "EOF"),
            (json, "{", 400, "EOF"),
            (
                json,
                r#"{"command":"x","argz":[]}"#,
                400,
                "unknown field `argz`",
            ),
            (json, r#"{"args":[]}"#, 400, "missing field `command`"),
            (json, r#"{"command":1}"#, 400, "invalid type"),
            (json, r#"{"command":"x","args":"a"}"#, 400, "invalid type"),
            (json, r#"{"command":"x"} {}"#, 400, "trailing characters"),
            (json, "[\"x\"]", 400, "expected a JSON object"),
            (json, " \n[\"x\", []]", 400, "expected a JSON object"),
            (json, "null", 400, "expected a JSON object"),
        ];
        for (headers, body, status, needle) in bad {
            let e = parse_job_request(&req("POST", headers), body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), *status, "{body}: {e}");
            assert!(e.message().contains(needle), "{body}: {e}");
        }
        assert!(parse_job_request(&req("POST", json), b"\xff").is_err());
    }
}
