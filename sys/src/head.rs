//! HTTP request heads, the part of reading a request both runtimes share: the
//! limits, the parsed [`Head`], what can go wrong ([`ReadError`], and which answer
//! the core gives to it), and parsing a head out of a connection's read buffer
//! with httparse. Each runtime's `http.rs` adds only its own reads and deadlines
//! (async on smol, blocking here).

use spout_core::http::{self as core_http, ReadFailure};
use std::fmt;
use std::io;
use std::time::Duration;

/// Size and time bounds for reading a request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head, from the first byte to the blank line that ends it
    /// (empty lines before the request line count too).
    pub max_head_bytes: usize,
    /// Most header fields a head may have.
    pub max_headers: usize,
    /// Time for the *whole* head to arrive, counted from its first byte, so that
    /// a client trickling one byte a second is cut off.
    pub head_timeout: Duration,
    /// Time an open connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: core_http::MAX_HEAD_BYTES,
            max_headers: core_http::MAX_HEADERS,
            head_timeout: core_http::HEAD_TIMEOUT,
            idle_timeout: core_http::IDLE_TIMEOUT,
        }
    }
}

/// A request head, copied out of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method token as sent (case-sensitive: `GET`, not `get`).
    pub method: String,
    /// The request target as sent (`/jobs/abc?token=x`); not decoded.
    pub target: String,
    /// Minor HTTP version: `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub version: u8,
    /// Header fields in the order received; names as sent, values as raw bytes
    /// (httparse admits bytes >= 0x80 in values).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What went wrong while reading a request.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection in the middle of a request.
    Closed,
    /// No request began within [`Limits::idle_timeout`]: close quietly.
    Idle,
    /// A head did not complete within [`Limits::head_timeout`], or a body within
    /// its time.
    Timeout,
    /// The head exceeds its byte limit.
    HeadTooLarge,
    /// The head has more fields than allowed.
    TooManyHeaders,
    /// The head is not valid HTTP/1.x; says what httparse found wrong.
    Malformed(&'static str),
    /// The body is longer than allowed; the rest of it was not read.
    BodyTooLarge,
    /// A chunked body's framing is invalid (chunk-size line or chunk end).
    BadChunk,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed in the middle of a request"),
            ReadError::Idle => f.write_str("no request arrived within the idle timeout"),
            ReadError::Timeout => f.write_str("request not received within the time limit"),
            ReadError::HeadTooLarge => f.write_str("request header section too large"),
            ReadError::TooManyHeaders => f.write_str("too many header fields"),
            ReadError::Malformed(what) => write!(f, "malformed request: {what}"),
            ReadError::BodyTooLarge => f.write_str("request body too large"),
            ReadError::BadChunk => f.write_str("invalid chunked body framing"),
            ReadError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl ReadError {
    /// What this failure means for the answer (the core decides the response).
    #[must_use]
    pub fn failure(&self) -> ReadFailure {
        match self {
            ReadError::Closed | ReadError::Idle | ReadError::Io(_) => ReadFailure::Gone,
            ReadError::Timeout => ReadFailure::Timeout,
            ReadError::HeadTooLarge | ReadError::TooManyHeaders => ReadFailure::HeadTooLarge,
            ReadError::Malformed(why) => ReadFailure::Malformed(why),
            ReadError::BodyTooLarge => ReadFailure::BodyTooLarge,
            ReadError::BadChunk => ReadFailure::BadChunk,
        }
    }
}

/// Tries to parse a head from the start of `buf` (after [`skip_empty_lines`]),
/// removing it from `buf`; `Ok(None)` when more bytes are needed. `skipped` is how
/// many empty-line bytes came before it (they count toward the size limit).
///
/// # Errors
/// [`ReadError::HeadTooLarge`], [`ReadError::TooManyHeaders`], [`ReadError::Malformed`].
pub fn parse_head(
    buf: &mut Vec<u8>,
    limits: &Limits,
    skipped: usize,
) -> Result<Option<Head>, ReadError> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(header_error(e)),
    };
    if skipped + len > limits.max_head_bytes {
        return Err(ReadError::HeadTooLarge);
    }
    // A complete parse always fills these three; match rather than unwrap
    // so that a surprise in httparse stays an error, not a panic.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ReadError::Malformed("incomplete request line"));
    };
    let head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    };
    buf.drain(..len);
    if buf.is_empty() {
        // A connection may now sit for hours streaming events; it should
        // not keep a read buffer while it does.
        *buf = Vec::new();
    }
    Ok(Some(head))
}

/// Drops the CRLF and LF lines at the start of `buf` (RFC 9112 lets a server
/// ignore them before a request); returns how many bytes.
pub fn skip_empty_lines(buf: &mut Vec<u8>) -> usize {
    let mut at = 0;
    loop {
        match buf[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => break,
        }
    }
    buf.drain(..at);
    at
}

/// Maps an httparse error in a header section to ours.
fn header_error(e: httparse::Error) -> ReadError {
    // httparse's own Display strings, which it only exposes as a `fmt` (not
    // `&'static str`); the same words as `spout`.
    ReadError::Malformed(match e {
        httparse::Error::TooManyHeaders => return ReadError::TooManyHeaders,
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid new line",
        httparse::Error::Status => "invalid response status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
    })
}
