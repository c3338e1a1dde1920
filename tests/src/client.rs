//! A small blocking HTTP/1.1 client for the cases: one request per connection, read
//! and write timeouts, responses decoded by the core's `spout_core::client`.

use crate::wire::{self, Fill, Reader};
use spout_core::client::{Progress, ResponseDecoder};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any one request may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in the order received, names as the server spelled them.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header_in(&self.headers, name)
    }

    /// The body as UTF-8 text (lossy, so a bad byte shows up as U+FFFD in a failure).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON; the message shows the status and the body.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(e) => panic!(
                "response {} is not JSON ({e}): {:?}",
                self.status,
                self.text()
            ),
        }
    }

    /// Parses a whole response from bytes, e.g. what [`raw`] returned.
    ///
    /// # Errors
    /// When the head is incomplete or malformed, or the body is cut short.
    pub fn parse(bytes: &[u8]) -> io::Result<Response> {
        read_response(Reader::new(bytes), false, Instant::now() + DEFAULT_TIMEOUT)
    }

    /// Parses every response in `bytes`, in order: the answers to pipelined requests
    /// on one connection (none of them to a `HEAD`, whose answer has no body).
    ///
    /// # Errors
    /// As [`Response::parse`], for the first response that does not parse; trailing
    /// bytes that are not a whole response are an error too.
    pub fn parse_all(bytes: &[u8]) -> io::Result<Vec<Response>> {
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        let mut reader = Reader::new(bytes);
        let mut all = Vec::new();
        while !reader.buf.is_empty() || !reader.source.is_empty() {
            let (response, rest) = read_response_keeping_rest(reader, false, deadline)?;
            all.push(response);
            reader = rest;
        }
        Ok(all)
    }
}

/// Sends one request and reads the whole response; see [`try_request`].
///
/// # Panics
/// On any I/O or framing error, or after [`DEFAULT_TIMEOUT`]; the message names the
/// request.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    match try_request(addr, method, path, headers, body) {
        Ok(response) => response,
        Err(e) => panic!("{method} http://{addr}{path} failed: {e}"),
    }
}

/// Sends one request on a new connection and reads the whole response.
///
/// The client adds `Host`, `Content-Length` (when there is a body, or for `POST`/`PUT`)
/// and `Connection: close`, each unless `headers` has it already.
///
/// # Errors
/// Connection, timeout ([`DEFAULT_TIMEOUT`]) and framing errors.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let mut stream = connect(addr)?;
    let mut head = request_head(addr, method, path, headers);
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("content-length")
        && !has("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    read_response(
        Reader::new(stream),
        method.eq_ignore_ascii_case("HEAD"),
        deadline,
    )
}

/// `GET path`.
///
/// # Panics
/// As [`request`].
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// `POST path` with a JSON body and `Content-Type: application/json`.
///
/// # Panics
/// As [`request`].
pub fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Response {
    let bytes = body.to_string();
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        bytes.as_bytes(),
    )
}

/// `DELETE path`.
///
/// # Panics
/// As [`request`].
pub fn delete(addr: SocketAddr, path: &str) -> Response {
    request(addr, "DELETE", path, &[], b"")
}

/// Sends `bytes` as they are and returns everything the server sends back until it
/// closes the connection, or [`DEFAULT_TIMEOUT`] passes. For malformed requests;
/// [`Response::parse`] reads the answer.
///
/// # Panics
/// When the connection cannot be made or written.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    raw_with_timeout(addr, bytes, DEFAULT_TIMEOUT)
}

/// [`raw`] with its own bound: returns what arrived when `timeout` passes, so a test
/// can also check that a server keeps a connection open.
///
/// # Panics
/// As [`raw`].
pub fn raw_with_timeout(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    // A server may answer and close before it read everything we send (that is
    // allowed for a malformed request), so a failed write is not a test failure.
    let _ = stream.write_all(bytes);
    let mut reader = Reader::new(stream);
    loop {
        match reader.fill(deadline) {
            Ok(Fill::Data(_)) => {}
            Ok(Fill::Eof | Fill::TimedOut) => break,
            // A reset after the server's answer still leaves the answer in the buffer.
            Err(_) => break,
        }
    }
    reader.buf
}

/// Opens a connection with the client's timeouts set.
pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    assert!(
        addr.ip().is_loopback(),
        "the harness only talks to loopback, not {addr}"
    );
    let stream = TcpStream::connect_timeout(&addr, DEFAULT_TIMEOUT)?;
    stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
    stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
    // Tests measure latency of single small events; Nagle would add delays.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The request line, `Host` (unless given) and the caller's headers, without the blank line.
pub(crate) fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

/// Reads a head and its whole body.
fn read_response<S: wire::Source>(
    reader: Reader<S>,
    request_was_head: bool,
    deadline: Instant,
) -> io::Result<Response> {
    read_response_keeping_rest(reader, request_was_head, deadline).map(|(response, _)| response)
}

/// [`read_response`], also giving back the reader with the bytes that followed the
/// response (a pipelined next answer) in its buffer.
fn read_response_keeping_rest<S: wire::Source>(
    mut reader: Reader<S>,
    request_was_head: bool,
    deadline: Instant,
) -> io::Result<(Response, Reader<S>)> {
    let method = if request_was_head { "HEAD" } else { "GET" };
    let mut decoder = ResponseDecoder::new(method);
    let head = reader.read_head(&mut decoder, deadline)?;
    let mut body = Vec::new();
    while reader.read_body(&mut decoder, &mut body, deadline)? != Progress::Complete {
        if Instant::now() >= deadline {
            return Err(wire::timed_out(&format!(
                "the end of a {} response body ({:?}, {} bytes so far)",
                head.status,
                decoder.framing(),
                body.len()
            )));
        }
    }
    reader.buf = decoder.rest().to_vec();
    Ok((
        Response {
            status: head.status,
            headers: head.headers,
            body,
        },
        reader,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interim_heads_are_skipped() {
        let wire: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
        let response = Response::parse(wire).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("location"), Some("/x"));
    }

    #[test]
    fn pipelined_answers_parse_in_order() {
        let wire: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}\
            HTTP/1.1 200 OK\r\n\r\nuntil close";
        let all = Response::parse_all(wire).unwrap();
        let got: Vec<(u16, &[u8])> = all.iter().map(|r| (r.status, &r.body[..])).collect();
        assert_eq!(
            got,
            [(200, &b"hi"[..]), (404, b"{}"), (200, b"until close")]
        );
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let err = Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("half"), "{err}");
        let err = Response::parse(b"HTTP/1.1 2").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = Response::parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxx\r\n")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
