//! tiny_http plumbing: the listening socket, a request head copied out of
//! tiny_http's request (for the core's `http::Request`), the body read within the
//! core's limit, and a response writer that puts the core's exact bytes on the wire.
//!
//! It decides nothing about routes, statuses or headers: the core's `http` module
//! does. Why the answers bypass `tiny_http::Response`: it adds `Server` and `Date`,
//! drops `Connection` and `Transfer-Encoding` from `add_header`, and buffers bodies
//! of unknown length (an 8 KiB chunk encoder behind a 1 KiB `BufWriter`), so a
//! stream's events would arrive late and together. Writing the core's bytes to
//! `Request::into_writer` and flushing after each chunk keeps both runtimes
//! byte-identical and every event on time. See `docs/runtime-blocking.md` for what
//! tiny_http does before a request reaches us, and the limits that follow.

use spout_core::http::{self, BodyFraming, ReadFailure, Request};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};

/// Binds the listening socket. Accepted connections inherit its send timeout
/// (`SO_SNDTIMEO` is copied on `accept` on Linux), so a write to a client that
/// stopped reading fails after [`http::WRITE_TIMEOUT`] instead of blocking its
/// thread forever — tiny_http accepts the sockets itself and never shows them to us.
///
/// # Errors
///
/// The OS error of binding (address in use, permission).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Send,
        Some(http::WRITE_TIMEOUT),
    )?;
    Ok(listener)
}

/// A request head, copied out of a `tiny_http::Request` so that the request itself
/// can move on (to its body and its writer).
#[derive(Clone, Debug)]
pub struct Head {
    /// The method token as sent.
    pub method: String,
    /// The request target as sent (`/jobs/abc?token=x`); not decoded.
    pub target: String,
    /// Header fields in the order received (values trimmed by tiny_http).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The client's address, for log lines.
    pub peer: String,
}

impl Head {
    /// Copies the head of `req`.
    pub fn of(req: &tiny_http::Request) -> Head {
        Head {
            method: req.method().as_str().to_owned(),
            target: req.url().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_owned(),
                        h.value.as_str().as_bytes().to_vec(),
                    )
                })
                .collect(),
            peer: req
                .remote_addr()
                .map_or_else(|| "?".to_owned(), ToString::to_string),
        }
    }

    /// The fields as the core's [`Request`] takes them.
    #[must_use]
    pub fn fields(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }

    /// Whether the head is past the core's limits ([`http::MAX_HEADERS`] fields or
    /// [`http::MAX_HEAD_BYTES`]). tiny_http reads heads of any size before we see
    /// them; this at least gives such a request the same `431` as `spout` does.
    /// The size is counted as the head was sent: request line and `name: value`
    /// lines with their CRLFs (tiny_http trimmed the values, so it may count a
    /// few bytes short).
    #[must_use]
    pub fn too_large(&self) -> bool {
        let line = self.method.len() + self.target.len() + "  HTTP/1.1\r\n".len();
        let fields: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + ": \r\n".len())
            .sum();
        self.headers.len() > http::MAX_HEADERS || line + fields + 2 > http::MAX_HEAD_BYTES
    }
}

/// The core's view of `head`.
pub fn request<'a>(head: &'a Head, fields: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
    Request {
        method: &head.method,
        target: &head.target,
        headers: fields,
    }
}

/// Reads the body by the core's `framing`, at most [`http::MAX_BODY`] bytes.
/// tiny_http has already removed the chunked framing and answers
/// `Expect: 100-continue` itself when the body is first read.
///
/// # Errors
///
/// The core's [`ReadFailure`]: `BodyTooLarge` past the limit (a `Content-Length`
/// over it is refused before reading), `BadChunk` for broken chunk framing, `Gone`
/// when the client closed mid-body.
pub fn read_body(
    req: &mut tiny_http::Request,
    framing: BodyFraming,
) -> Result<Vec<u8>, ReadFailure> {
    let limit = match framing {
        BodyFraming::None => return Ok(Vec::new()),
        BodyFraming::Length(len) if len > http::MAX_BODY => return Err(ReadFailure::BodyTooLarge),
        BodyFraming::Length(len) => len,
        BodyFraming::Chunked => http::MAX_BODY + 1,
    };
    let mut body = Vec::new();
    // One byte past the limit tells "too large" from "exactly the limit".
    let read = req.as_reader().take(limit as u64).read_to_end(&mut body);
    match (read, framing) {
        (Err(e), BodyFraming::Chunked) if e.kind() == io::ErrorKind::InvalidInput => {
            Err(ReadFailure::BadChunk)
        }
        (Err(_), _) => Err(ReadFailure::Gone),
        (Ok(_), BodyFraming::Length(len)) if body.len() < len => Err(ReadFailure::Gone),
        (Ok(_), _) if body.len() > http::MAX_BODY => Err(ReadFailure::BodyTooLarge),
        (Ok(_), _) => Ok(body),
    }
}

/// The write side of one answer: the connection, taken over from tiny_http.
/// Every call writes and flushes, so nothing waits in a buffer.
pub struct Writer {
    out: Box<dyn Write + Send>,
    frame: Vec<u8>,
}

/// Largest unread request body tiny_http may discard before an answer is written.
///
/// Why a bound: tiny_http 0.12 discards an unread `Content-Length` body by
/// allocating a buffer of the whole remaining length, so one request declaring a
/// terabyte would abort the process (allocation failure). Requests past this bound
/// are left unanswered instead (see [`Writer::new`]).
pub const MAX_DISCARD: usize = 16 * 1024 * 1024;

impl Writer {
    /// Takes `req`'s connection over for writing. tiny_http first discards what is
    /// left of the request body (read it first where it matters).
    ///
    /// `None` for a request whose declared body is over [`MAX_DISCARD`] (always
    /// unread: the core refuses bodies over `MAX_BODY`): the request is leaked, not
    /// dropped — its connection stays open and unanswered until the server stops —
    /// because dropping it would abort the whole server (see [`MAX_DISCARD`]).
    pub fn new(req: tiny_http::Request) -> Option<Writer> {
        if req.body_length().is_some_and(|len| len > MAX_DISCARD) {
            spout_blocking::driver::log(&format!(
                "{}: request body of {} bytes declared; leaving the connection unanswered",
                req.remote_addr()
                    .map_or_else(|| "?".to_owned(), ToString::to_string),
                req.body_length().unwrap_or(0)
            ));
            std::mem::forget(req);
            return None;
        }
        Some(Writer {
            out: req.into_writer(),
            frame: Vec::new(),
        })
    }

    /// Writes `bytes` and flushes them. Returns whether it worked: a client that
    /// went away, or stopped reading for [`http::WRITE_TIMEOUT`], makes it fail.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.flush())
            .is_ok()
    }

    /// Sends `data` as one HTTP chunk (nothing for empty data: an empty chunk
    /// would end the body).
    pub fn send_chunk(&mut self, data: &[u8]) -> bool {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        http::encode_chunk(data, &mut frame);
        let ok = frame.is_empty() || self.send(&frame);
        self.frame = frame;
        ok
    }
}
