//! The client's HTTP/1.1 plumbing, blocking std: parsing the URLs it is given,
//! writing one request per connection, and moving the response's bytes into the
//! core's decoders (`spout_core::client`: the head, the body's framing, the events).
//!
//! Plain `http://` only: there is no TLS in this client (use an SSH tunnel or a
//! local TLS-terminating proxy to reach a server over the internet).
//!
//! Every read waits at most [`TICK`], so the caller can look at its interrupt flag
//! and its idle deadline between reads without a second thread on the socket.

use spout_core::client::{
    EventStreamDecoder, Head, Progress as Framed, ResponseDecoder, ResponseError,
};
use spout_core::sse::{self, Item};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long one socket read may block before the caller gets control back.
pub const TICK: Duration = Duration::from_millis(200);
/// Bound on connecting and on writing a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a non-streamed body (status JSON, errors).
const MAX_BODY_BYTES: usize = 1 << 20;

/// A parsed `http://host[:port][/prefix]` base, for a server or a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// `host[:port]` as given, for the `Host` field.
    pub authority: String,
    /// The path before `/jobs`, without a trailing `/` (empty for a server at `/`).
    pub prefix: String,
}

/// A job's location: its server and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUrl {
    /// The server.
    pub base: Base,
    /// The job id (URL-safe characters only, checked).
    pub id: String,
}

impl Base {
    /// Parses a server URL: `http://host[:port][/prefix]` (a query or fragment is
    /// dropped).
    ///
    /// # Errors
    /// A message for the user when the URL is not plain `http://` or has no host.
    pub fn parse(url: &str) -> Result<Base, String> {
        let (authority, path) = split_url(url)?;
        Ok(Base {
            authority,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// `http://authority/prefix<path>`, for messages.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{}", self.authority, self.prefix, path)
    }

    /// The socket addresses of the authority (port 80 when none is given).
    ///
    /// # Errors
    /// When the name does not resolve.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let has_port = match self.authority.rfind(']') {
            Some(bracket) => self.authority[bracket..].contains(':'),
            None => self.authority.contains(':'),
        };
        let target = if has_port {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        Ok(target.to_socket_addrs()?.collect())
    }
}

impl JobUrl {
    /// Parses `http://host[:port][/prefix]/jobs/ID`, also with `/events` or `/log`
    /// after the id (what a user copies from a browser or a log line).
    ///
    /// # Errors
    /// A message for the user when it is not such a URL.
    pub fn parse(url: &str) -> Result<JobUrl, String> {
        let (authority, path) = split_url(url)?;
        let not_a_job =
            || format!("{url:?} is not a job URL; it looks like http://127.0.0.1:8080/jobs/ID");
        let at = path.rfind("/jobs/").ok_or_else(not_a_job)?;
        let rest = path[at + "/jobs/".len()..].trim_end_matches('/');
        let id = match rest.split_once('/') {
            None => rest,
            Some((id, "events" | "log")) => id,
            Some(_) => return Err(not_a_job()),
        };
        let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if id.is_empty() || !id.chars().all(url_safe) {
            return Err(not_a_job());
        }
        Ok(JobUrl {
            base: Base {
                authority,
                prefix: path[..at].to_owned(),
            },
            id: id.to_owned(),
        })
    }

    /// `http://authority/prefix/jobs/ID`.
    pub fn url(&self) -> String {
        self.base.url(&format!("/jobs/{}", self.id))
    }

    /// The path of `/jobs/ID` plus `suffix`, for a request line.
    pub fn path(&self, suffix: &str) -> String {
        format!("{}/jobs/{}{}", self.base.prefix, self.id, suffix)
    }
}

/// Splits `http://authority/path?query#fragment` into authority and path.
fn split_url(url: &str) -> Result<(String, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: spout's client speaks plain http:// only (no TLS); reach a remote \
             server through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host) or a local TLS proxy"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} must start with http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if authority.is_empty() || !authority.chars().all(ok_char) {
        return Err(format!(
            "{url:?} has no usable host; write it as http://host:port"
        ));
    }
    let path_and_more = &rest[end..];
    let path_end = path_and_more
        .find(['?', '#'])
        .unwrap_or(path_and_more.len());
    let path = &path_and_more[..path_end];
    if path
        .chars()
        .any(|c| c.is_ascii_control() || c == ' ' || !c.is_ascii())
    {
        return Err(format!(
            "{url:?} has spaces or control characters in its path"
        ));
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, timed out): nothing was
    /// sent, so trying again is safe for any method.
    Connect(io::Error),
    /// The host name did not resolve.
    Resolve(io::Error),
    /// The connection broke, or the peer sent something that is not HTTP.
    Exchange(String),
    /// The caller's stop condition (an interrupt) fired while waiting.
    Stopped,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Resolve(e) => write!(f, "cannot resolve the host name: {e}"),
            Failure::Exchange(why) => f.write_str(why),
            Failure::Stopped => f.write_str("interrupted"),
        }
    }
}

/// One outgoing request.
pub struct Request<'a> {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'a str,
    /// Origin-form target, `/prefix/jobs/…?query`.
    pub target: &'a str,
    /// Extra fields (name, value); values were checked by the caller.
    pub fields: &'a [(&'a str, &'a str)],
    /// A JSON body, sent with `Content-Type: application/json`.
    pub json_body: Option<&'a str>,
}

/// A response whose head has been read; the body is read on demand.
pub struct Response {
    /// The status code.
    pub status: u16,
    head: Head,
    stream: TcpStream,
    /// The core's decoder, holding body bytes read with the head.
    decoder: ResponseDecoder,
}

/// What [`Response::read_body`] and [`EventStream::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Body bytes arrived (the body may have ended too: the next call says
    /// [`Progress::End`]).
    Data,
    /// No byte within [`TICK`]; the caller checks its deadlines and calls again.
    Idle,
    /// The body ended as framed ([`Response::read_body`]), or the server closed the
    /// connection ([`EventStream::read`]: its next items tell how it ended).
    End,
}

/// Sends `req` to `base` on a new connection and reads the response head.
///
/// `stop` is asked between reads; when it says so, the exchange ends with
/// [`Failure::Stopped`].
///
/// # Errors
/// [`Failure`] when no head arrives.
pub fn send(base: &Base, req: &Request<'_>, stop: &dyn Fn() -> bool) -> Result<Response, Failure> {
    let addrs = base.resolve().map_err(Failure::Resolve)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
    let mut connected = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                connected = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = connected.ok_or(Failure::Connect(last))?;
    let exchange = |e: io::Error| Failure::Exchange(format!("connection failed: {e}"));
    stream.set_nodelay(true).map_err(exchange)?;
    stream.set_read_timeout(Some(TICK)).map_err(exchange)?;
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(exchange)?;

    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: spout/{}\r\nConnection: close\r\n",
        req.method,
        req.target,
        base.authority,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in req.fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = req.json_body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(req.json_body.unwrap_or(""));
    stream.write_all(head.as_bytes()).map_err(exchange)?;

    // Read until the head is complete.
    let started = Instant::now();
    let mut decoder = ResponseDecoder::new(req.method);
    let mut chunk = [0u8; 8192];
    loop {
        match decoder.poll_head() {
            Ok(Some(head)) => {
                return Ok(Response {
                    status: head.status,
                    head: head.clone(),
                    stream,
                    decoder,
                })
            }
            Ok(None) => {}
            Err(e) => return Err(Failure::Exchange(unreadable(e))),
        }
        match stream.read(&mut chunk) {
            Ok(0) => decoder.handle_eof(),
            Ok(n) => decoder.handle_bytes(&chunk[..n]),
            Err(e) if is_tick(&e) => {
                if stop() {
                    return Err(Failure::Stopped);
                }
                if started.elapsed() > CONNECT_TIMEOUT * 3 {
                    return Err(Failure::Exchange(
                        "the server accepted the connection but sent no answer for 30 s".into(),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(exchange(e)),
        }
    }
}

/// The core's response error, as a sentence for the user.
fn unreadable(e: ResponseError) -> String {
    match e {
        ResponseError::ClosedBeforeHead => {
            "the server closed the connection before answering".into()
        }
        ResponseError::Truncated => "the connection closed in the middle of the response".into(),
        ResponseError::MalformedHead(_) => format!("the server's answer is not HTTP/1.1 ({e})"),
        e => format!("the server's answer cannot be read: {e}"),
    }
}

/// One read from `stream` into `decoder`: bytes, the end of the stream, or a tick.
fn fill(
    stream: &mut TcpStream,
    decoder: &mut dyn FnMut(Option<&[u8]>),
) -> Result<Progress, String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                decoder(None);
                return Ok(Progress::End);
            }
            Ok(n) => {
                decoder(Some(&chunk[..n]));
                return Ok(Progress::Data);
            }
            Err(e) if is_tick(&e) => return Ok(Progress::Idle),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("the connection broke: {e}")),
        }
    }
}

fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Response {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Reads body bytes into `out`, waiting at most about [`TICK`].
    ///
    /// # Errors
    /// When the connection breaks before the body's framed end, or the framing is
    /// malformed: a message for the user.
    pub fn read_body(&mut self, out: &mut Vec<u8>) -> Result<Progress, String> {
        loop {
            let before = out.len();
            let framed = self.decoder.poll_body(out);
            // Data first: the last bytes and the body's end (or fault) often come
            // together, and the decoder says the same again on the next call.
            if out.len() > before {
                return Ok(Progress::Data);
            }
            match framed.map_err(unreadable)? {
                Framed::Complete => return Ok(Progress::End),
                Framed::Partial => {}
            }
            let decoder = &mut self.decoder;
            if fill(&mut self.stream, &mut |bytes| match bytes {
                Some(bytes) => decoder.handle_bytes(bytes),
                None => decoder.handle_eof(),
            })? == Progress::Idle
            {
                return Ok(Progress::Idle);
            }
        }
    }

    /// Reads the whole (small) body, for JSON answers.
    ///
    /// # Errors
    /// As [`Response::read_body`], and when it takes over 30 s or 1 MiB.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        let mut out = Vec::new();
        loop {
            match self.read_body(&mut out)? {
                Progress::End => return Ok(out),
                Progress::Data if out.len() > MAX_BODY_BYTES => {
                    return Err("the server's answer is too large".into())
                }
                Progress::Data | Progress::Idle if started.elapsed() > CONNECT_TIMEOUT * 3 => {
                    return Err("the server's answer did not finish within 30 s".into())
                }
                Progress::Data | Progress::Idle => {}
            }
        }
    }

    /// The body as an event stream, decoded by `events`.
    pub fn into_events(self, events: sse::Decoder) -> EventStream {
        EventStream {
            stream: self.stream,
            decoder: EventStreamDecoder::new(self.decoder, events),
        }
    }
}

/// A `200` event-stream response being read: the core's response decoder chained
/// into its SSE decoder.
pub struct EventStream {
    stream: TcpStream,
    decoder: EventStreamDecoder,
}

impl EventStream {
    /// Reads once from the connection, waiting at most about [`TICK`]; then
    /// [`EventStream::poll_item`] has what arrived.
    ///
    /// # Errors
    /// When the connection breaks: a message for the user.
    pub fn read(&mut self) -> Result<Progress, String> {
        let decoder = &mut self.decoder;
        fill(&mut self.stream, &mut |bytes| match bytes {
            Some(bytes) => decoder.handle_bytes(bytes),
            None => decoder.handle_eof(),
        })
    }

    /// The next SSE item that has arrived; `None` when it needs more bytes or the
    /// body has ended ([`EventStream::is_complete`]).
    ///
    /// # Errors
    /// When the body's framing is malformed or the body was cut short (after the
    /// items before the fault): a message for the user.
    pub fn poll_item(&mut self) -> Result<Option<Item>, String> {
        self.decoder.poll_item().map_err(unreadable)
    }

    /// Whether the body ended as framed.
    pub fn is_complete(&self) -> bool {
        self.decoder.response().is_complete()
    }

    /// The last event id seen (what a reconnect sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        self.decoder.last_event_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_urls() {
        let job = |authority: &str, prefix: &str, id: &str| {
            Ok(JobUrl {
                base: Base {
                    authority: authority.into(),
                    prefix: prefix.into(),
                },
                id: id.into(),
            })
        };
        let cases = [
            (
                "http://127.0.0.1:8080/jobs/abc",
                job("127.0.0.1:8080", "", "abc"),
            ),
            ("http://h/jobs/a-b_c/events", job("h", "", "a-b_c")),
            ("http://h/jobs/x/log?follow=1", job("h", "", "x")),
            ("http://h/jobs/x/", job("h", "", "x")),
            (
                "http://[::1]:9/spout/jobs/x#top",
                job("[::1]:9", "/spout", "x"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(JobUrl::parse(url), want, "{url}");
        }
        for bad in [
            "http://h/",
            "http://h/jobs/",
            "http://h/jobs/x/y",
            "http://h/jobs/a%20b",
            "https://h/jobs/x",
            "ftp://h/jobs/x",
            "http:///jobs/x",
            "http://us@er/jobs/x",
        ] {
            assert!(JobUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(JobUrl::parse("https://h/jobs/x")
            .unwrap_err()
            .contains("http:// only"));
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            Base::parse("http://127.0.0.1:8080/"),
            Ok(Base {
                authority: "127.0.0.1:8080".into(),
                prefix: String::new()
            })
        );
        let b = Base::parse("http://h/p/").unwrap();
        assert_eq!(b.url("/jobs"), "http://h/p/jobs");
        assert_eq!(
            Base::parse("http://127.0.0.1:1")
                .unwrap()
                .resolve()
                .unwrap(),
            vec!["127.0.0.1:1".parse().unwrap()]
        );
        assert_eq!(
            Base::parse("http://[::1]").unwrap().resolve().unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
    }
}
