//! The client side of HTTP/1.1: [`ResponseDecoder`], an incremental sans-IO response
//! decoder (the head, then the body with its framing undone), and
//! [`EventStreamDecoder`], the same chained into the [`sse::Decoder`]. The terminal
//! client (`spout run`, `spout tail`), the integration tests and the bench client all
//! read responses with it, so they agree on every byte.
//!
//! How long the body is (RFC 9112 §6.3, for a response), in the order checked:
//!
//! | response | body |
//! | --- | --- |
//! | to a `HEAD` request; status 1xx, 204 or 304 | none |
//! | status 1xx other than 101 | an interim head: skipped, the final head follows |
//! | `Transfer-Encoding` whose last coding is `chunked` | chunked: extensions ignored, trailers read and dropped |
//! | any other `Transfer-Encoding` | until the server closes |
//! | `Content-Length` (several only if all equal) | that many bytes |
//! | neither | until the server closes |
//!
//! The states, and what moves them (an error in any state is final: [`State::Failed`]):
//!
//! | state | on bytes | on the end of the stream |
//! | --- | --- | --- |
//! | `Head` | a final head → the body's state, or `Done` when there is no body | [`ResponseError::ClosedBeforeHead`] |
//! | `Length(n)` | up to `n` body bytes; `n` reached → `Done` | [`ResponseError::Truncated`] |
//! | `Close` | all bytes are body | `Done` |
//! | `ChunkSize` → `ChunkData(n)` → `ChunkDataEnd` → … | `0` → `Trailers` → `Done` | [`ResponseError::Truncated`] |
//! | `Done` | kept as [`ResponseDecoder::rest`] (a pipelined next response) | – |
//!
//! Any split of the same bytes gives the same head, body, rest and error: limits are
//! checked on the bytes themselves, never on how they arrived
//! ([`fuzz_response`] asserts it).

use crate::sse;
use std::fmt;

/// The largest response head (and chunked trailer section) accepted by default.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Bounds on what a server can make the decoder hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one head (interim or final) or of the trailer section, blank line
    /// included.
    pub max_head_bytes: usize,
    /// Header fields in one head or trailer section.
    pub max_headers: usize,
    /// Bytes of one chunk-size line, extensions and CRLF included.
    pub max_chunk_line: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: 100,
            max_chunk_line: 1024,
        }
    }
}

/// A final response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The minor version: 1 for `HTTP/1.1`, 0 for `HTTP/1.0`.
    pub version: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase (often empty in HTTP/1.1).
    pub reason: String,
    /// The header fields in the order received, names as the server spelled them,
    /// values as UTF-8 (lossy: a byte that is not UTF-8 becomes U+FFFD).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the body that follows this head is delimited (the table in this module's
    /// docs); `head_request` when the request was `HEAD`.
    ///
    /// # Errors
    /// [`ResponseError::BadContentLength`] for a `Content-Length` that is not digits,
    /// or several that disagree.
    pub fn framing(&self, head_request: bool) -> Result<Framing, ResponseError> {
        if head_request || (100..200).contains(&self.status) || matches!(self.status, 204 | 304) {
            return Ok(Framing::Empty);
        }
        let last_coding = self
            .headers_all("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .last();
        if let Some(coding) = last_coding {
            return Ok(if coding.eq_ignore_ascii_case("chunked") {
                Framing::Chunked
            } else {
                Framing::Close
            });
        }
        let mut length = None;
        // Several fields, or a list in one, are fine only when all say the same
        // (RFC 9110 §8.6).
        for value in self
            .headers_all("content-length")
            .flat_map(|v| v.split(','))
        {
            let digits = value.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ResponseError::BadContentLength);
            }
            let n: u64 = digits
                .parse()
                .map_err(|_| ResponseError::BadContentLength)?;
            if length.is_some_and(|m| m != n) {
                return Err(ResponseError::BadContentLength);
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        })
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304, `Content-Length: 0`).
    Empty,
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// Why a response could not be read. Whose fault: always the server's (or the
/// network's, for the two "closed" cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The head is not HTTP/1.x.
    MalformedHead(httparse::Error),
    /// A head was longer than this many bytes.
    HeadTooLarge(usize),
    /// `Content-Length` is not digits, or several disagree.
    BadContentLength,
    /// A chunk-size line is not hex digits, or a chunk's data is not followed by CRLF.
    MalformedChunk,
    /// A chunk-size line was longer than this many bytes.
    ChunkLineTooLong(usize),
    /// The trailer section after the last chunk is not header fields.
    MalformedTrailers(httparse::Error),
    /// The trailer section was longer than this many bytes.
    TrailersTooLarge(usize),
    /// The stream ended before a complete final head.
    ClosedBeforeHead,
    /// The stream ended before the body's framed end.
    Truncated,
    /// The body says `Content-Encoding: gzip` but is not valid gzip.
    BadGzip,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::MalformedHead(e) => write!(f, "malformed response head: {e}"),
            ResponseError::HeadTooLarge(n) => write!(f, "response head larger than {n} bytes"),
            ResponseError::BadContentLength => f.write_str("bad or conflicting content-length"),
            ResponseError::MalformedChunk => f.write_str("malformed chunked framing"),
            ResponseError::BadGzip => f.write_str("the gzip-encoded body is not valid gzip"),
            ResponseError::ChunkLineTooLong(n) => {
                write!(f, "chunk-size line longer than {n} bytes")
            }
            ResponseError::MalformedTrailers(e) => write!(f, "malformed chunked trailers: {e}"),
            ResponseError::TrailersTooLarge(n) => {
                write!(f, "chunked trailers larger than {n} bytes")
            }
            ResponseError::ClosedBeforeHead => {
                f.write_str("connection closed before a complete response head")
            }
            ResponseError::Truncated => {
                f.write_str("connection closed in the middle of the response body")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// What [`ResponseDecoder::poll_body`] found.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The response is not complete: feed more bytes, or the end of the stream.
    Partial,
    /// The body ended as framed; bytes after it are [`ResponseDecoder::rest`].
    Complete,
}

/// Where the decoder is (the table in this module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Done,
    Failed(ResponseError),
}

/// What one step of the state machine did.
enum Step {
    /// It moved; try the next step.
    Moved,
    /// It needs bytes that have not arrived.
    Stall,
}

/// An incremental HTTP/1.1 response decoder: feed bytes in any split with
/// [`handle_bytes`](Self::handle_bytes) and the end of the stream with
/// [`handle_eof`](Self::handle_eof); take the head with
/// [`poll_head`](Self::poll_head) and the de-framed body with
/// [`poll_body`](Self::poll_body).
///
/// Rules:
/// 1. Interim 1xx heads (not 101) are skipped; the head is always the final one.
/// 2. Body bytes come out as they arrive; the decoder holds only input not yet polled.
/// 3. The end of the stream completes a close-delimited body and is an error anywhere
///    else ([`ResponseError::Truncated`], [`ResponseError::ClosedBeforeHead`]).
/// 4. An error is final: every later poll returns it, and later bytes are dropped.
///
/// # Examples
/// ```
/// use spout_core::client::{Progress, ResponseDecoder};
/// let mut response = ResponseDecoder::new("GET");
/// response.handle_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
/// assert_eq!(response.poll_head().unwrap().unwrap().status, 200);
/// response.handle_bytes(b"lo\r\n0\r\n\r\n");
/// let mut body = Vec::new();
/// assert_eq!(response.poll_body(&mut body), Ok(Progress::Complete));
/// assert_eq!(body, b"hello");
/// ```
#[derive(Clone, Debug)]
pub struct ResponseDecoder {
    limits: Limits,
    head_request: bool,
    /// Input; `buf[at..]` is not consumed yet.
    buf: Vec<u8>,
    at: usize,
    state: State,
    head: Option<Head>,
    framing: Option<Framing>,
    eof: bool,
    /// Of the head or trailer section at `at`: how many bytes were searched for an
    /// LF, and how many the last parse saw.
    scanned: usize,
    parsed_to: usize,
    /// Input or the end of the stream arrived since the decoder last stalled: a poll
    /// without it cannot move, so it does not parse the same partial head again.
    fresh: bool,
    body_len: u64,
}

impl ResponseDecoder {
    /// A decoder for the response to a `method` request, with the default [`Limits`].
    pub fn new(method: &str) -> ResponseDecoder {
        ResponseDecoder::with_limits(method, Limits::default())
    }

    /// A decoder for the response to a `method` request, with `limits`.
    pub fn with_limits(method: &str, limits: Limits) -> ResponseDecoder {
        ResponseDecoder {
            limits,
            head_request: method.eq_ignore_ascii_case("HEAD"),
            buf: Vec::new(),
            at: 0,
            state: State::Head,
            head: None,
            framing: None,
            eof: false,
            scanned: 0,
            parsed_to: 0,
            fresh: true,
            body_len: 0,
        }
    }

    // Getters.

    /// The final head, once parsed.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// How the body is delimited, once the head is parsed.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// Body bytes given out so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Whether the body has ended as framed.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// The error the decoder stopped at, if any.
    pub fn error(&self) -> Option<ResponseError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Bytes fed after the end of a complete response (a pipelined next response);
    /// empty before the response is complete.
    pub fn rest(&self) -> &[u8] {
        if self.is_complete() {
            &self.buf[self.at..]
        } else {
            &[]
        }
    }

    // Inputs.

    /// Feeds the next bytes from the connection. Bytes after the end of the stream
    /// or after an error are dropped.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.eof || matches!(self.state, State::Failed(_)) || bytes.is_empty() {
            return;
        }
        // Drop consumed input once it is most of the buffer: amortised O(1) a byte.
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > 4096 && self.at * 2 > self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.fresh = true;
    }

    /// The connection's read side ended (the server closed it). The next poll
    /// completes a close-delimited body, or reports what was cut short.
    pub fn handle_eof(&mut self) {
        if !self.eof {
            self.eof = true;
            self.fresh = true;
        }
    }

    // Outputs.

    /// The final head once it has arrived (`Ok(None)` until then). Body bytes stay
    /// buffered for [`poll_body`](Self::poll_body).
    ///
    /// # Errors
    /// When the decoder has failed (on the head, or already on the body).
    pub fn poll_head(&mut self) -> Result<Option<&Head>, ResponseError> {
        // Partial or complete, the head is what this poll is about.
        let _body_progress = self.drive(None)?;
        Ok(self.head.as_ref())
    }

    /// Appends the body bytes that have arrived to `out` (parsing the head first if
    /// needed) and says whether the body is complete.
    ///
    /// # Errors
    /// Malformed or cut-short input ([`ResponseError`]); the body bytes before the
    /// fault have been appended to `out` by this call or earlier ones.
    pub fn poll_body(&mut self, out: &mut Vec<u8>) -> Result<Progress, ResponseError> {
        self.drive(Some(out))
    }

    /// Runs the state machine until it stalls, completes or fails; with no `out`,
    /// stops once the head is known.
    fn drive(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<Progress, ResponseError> {
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Done => return Ok(Progress::Complete),
                _ if !self.fresh => return Ok(Progress::Partial),
                State::Head => {}
                _ if out.is_none() => return Ok(Progress::Partial),
                _ => {}
            }
            match self.step(out.as_deref_mut()) {
                Ok(Step::Moved) => {}
                Ok(Step::Stall) if self.eof => {
                    self.state = match self.state {
                        State::Close => State::Done,
                        State::Head => State::Failed(ResponseError::ClosedBeforeHead),
                        _ => State::Failed(ResponseError::Truncated),
                    };
                }
                Ok(Step::Stall) => {
                    self.fresh = false;
                    return Ok(Progress::Partial);
                }
                Err(e) => self.state = State::Failed(e),
            }
        }
    }

    /// One move of the state machine on the buffered input.
    fn step(&mut self, out: Option<&mut Vec<u8>>) -> Result<Step, ResponseError> {
        let rest = &self.buf[self.at..];
        if rest.is_empty() {
            return Ok(Step::Stall);
        }
        match self.state {
            State::Head => self.step_head(),
            State::Length(left) | State::ChunkData(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                if let Some(out) = out {
                    out.extend_from_slice(&rest[..take]);
                }
                self.at += take;
                self.body_len += take as u64;
                let left = left - take as u64;
                self.state = match (self.state, left) {
                    (State::Length(_), 0) => State::Done,
                    (State::Length(_), left) => State::Length(left),
                    (_, 0) => State::ChunkDataEnd,
                    (_, left) => State::ChunkData(left),
                };
                Ok(Step::Moved)
            }
            State::Close => {
                if let Some(out) = out {
                    out.extend_from_slice(rest);
                }
                self.at += rest.len();
                self.body_len += rest.len() as u64;
                Ok(Step::Moved)
            }
            State::ChunkSize => {
                // httparse reads an empty size as 0; RFC 9112 wants 1*HEXDIG.
                if !rest[0].is_ascii_hexdigit() {
                    return Err(ResponseError::MalformedChunk);
                }
                let max = self.limits.max_chunk_line;
                match httparse::parse_chunk_size(&rest[..rest.len().min(max)]) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.at += len;
                        self.state = match size {
                            0 => State::Trailers,
                            size => State::ChunkData(size),
                        };
                        Ok(Step::Moved)
                    }
                    Ok(httparse::Status::Partial) if rest.len() >= max => {
                        Err(ResponseError::ChunkLineTooLong(max))
                    }
                    Ok(httparse::Status::Partial) => Ok(Step::Stall),
                    Err(_) => Err(ResponseError::MalformedChunk),
                }
            }
            State::ChunkDataEnd => match rest {
                [b'\r', b'\n', ..] => {
                    self.at += 2;
                    self.state = State::ChunkSize;
                    Ok(Step::Moved)
                }
                [b'\r'] => Ok(Step::Stall),
                _ => Err(ResponseError::MalformedChunk),
            },
            State::Trailers => {
                let Some(end) = self.section_window() else {
                    return Ok(Step::Stall);
                };
                let max = self.limits.max_head_bytes;
                let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
                match httparse::parse_headers(&self.buf[self.at..self.at + end], &mut slots) {
                    Ok(httparse::Status::Complete((len, _))) => {
                        self.at += len;
                        self.state = State::Done;
                        Ok(Step::Moved)
                    }
                    Ok(httparse::Status::Partial) if end >= max => {
                        Err(ResponseError::TrailersTooLarge(max))
                    }
                    Ok(httparse::Status::Partial) => Ok(Step::Stall),
                    Err(e) => Err(ResponseError::MalformedTrailers(e)),
                }
            }
            State::Done | State::Failed(_) => Ok(Step::Stall),
        }
    }

    /// Parses one head: an interim one is skipped, a final one sets the framing.
    fn step_head(&mut self) -> Result<Step, ResponseError> {
        let Some(end) = self.section_window() else {
            return Ok(Step::Stall);
        };
        let max = self.limits.max_head_bytes;
        let window = &self.buf[self.at..self.at + end];
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Response::new(&mut slots);
        let (len, head) = match parsed.parse(window) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    version: parsed.version.unwrap_or(1),
                    // invariant: httparse sets the code of every complete head.
                    status: parsed.code.expect("httparse sets code on Complete"),
                    reason: parsed.reason.unwrap_or_default().to_owned(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                (len, head)
            }
            Ok(httparse::Status::Partial) if end >= max => {
                return Err(ResponseError::HeadTooLarge(max))
            }
            Ok(httparse::Status::Partial) => return Ok(Step::Stall),
            Err(e) => return Err(ResponseError::MalformedHead(e)),
        };
        self.at += len;
        (self.scanned, self.parsed_to) = (0, 0);
        if (100..200).contains(&head.status) && head.status != 101 {
            return Ok(Step::Moved);
        }
        let framing = head.framing(self.head_request)?;
        self.state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        self.head = Some(head);
        self.framing = Some(framing);
        Ok(Step::Moved)
    }

    /// How many of the unconsumed bytes a head or trailer parse should see, or `None`
    /// when a parse could tell nothing new.
    ///
    /// That is the first `max_head_bytes`, cut after their last LF unless the limit
    /// or the end of the stream is reached. A head ends with an LF and httparse reads
    /// left to right, so what a parse finds depends on the bytes alone, never on how
    /// they were split; and a head that trickles in is parsed once a line, not once a
    /// byte.
    fn section_window(&mut self) -> Option<usize> {
        let max = self.limits.max_head_bytes;
        let len = (self.buf.len() - self.at).min(max);
        let new = &self.buf[self.at + self.scanned.min(len)..self.at + len];
        let last_lf = new
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| self.scanned + i + 1);
        self.scanned = len;
        let end = if len == max || self.eof {
            len
        } else {
            last_lf?
        };
        if end <= self.parsed_to {
            return None;
        }
        self.parsed_to = end;
        Some(end)
    }
}

/// A [`ResponseDecoder`] chained into an [`sse::Decoder`]: response bytes in, the
/// events of its body out, as a browser's `EventSource` would see them.
///
/// Check the head (status 200, `Content-Type: text/event-stream`) before taking
/// items: the decoder feeds whatever body there is to the SSE decoder.
///
/// # Examples
/// ```
/// use spout_core::client::{EventStreamDecoder, ResponseDecoder};
/// use spout_core::sse::{Decoder, Item};
/// let mut events = EventStreamDecoder::new(ResponseDecoder::new("GET"), Decoder::new());
/// events.handle_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
/// events.handle_bytes(b"a\r\ndata: hi\n\n\r\n0\r\n\r\n");
/// assert_eq!(events.poll_head().unwrap().unwrap().status, 200);
/// let Ok(Some(Item::Event(event))) = events.poll_item() else { panic!() };
/// assert_eq!(event.data, "hi");
/// assert_eq!(events.poll_item(), Ok(None));
/// assert!(events.response().is_complete());
/// ```
///
/// A body with `Content-Encoding: gzip` is decoded on the way, as it streams: each
/// event is yielded as soon as its compressed bytes have arrived.
#[derive(Debug)]
pub struct EventStreamDecoder {
    response: ResponseDecoder,
    events: sse::Decoder,
    /// Body bytes on their way from the response decoder to the SSE decoder.
    body: Vec<u8>,
    /// The body's content coding, undone once the head is known.
    coding: Option<BodyDecoder>,
}

/// Undoes a response body's content coding as the body streams: identity passes
/// bytes through, `gzip` is inflated by flate2's streaming decoder, giving every
/// byte that the compressed bytes so far hold (the server flushes at each write).
pub struct BodyDecoder {
    gzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    failed: bool,
}

impl fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyDecoder")
            .field("gzip", &self.gzip.is_some())
            .finish()
    }
}

impl BodyDecoder {
    /// The decoder for a response with this head: gzip when its last
    /// `Content-Encoding` is `gzip` (or `x-gzip`), else identity.
    #[must_use]
    pub fn for_head(head: &Head) -> BodyDecoder {
        let gzip = head
            .headers_all("content-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip"));
        BodyDecoder {
            gzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
            failed: false,
        }
    }

    /// Appends what `bytes` (the next body bytes) decode to.
    ///
    /// # Errors
    /// [`ResponseError::BadGzip`] when the body is not valid gzip (then always).
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ResponseError> {
        use std::io::Write as _;
        if self.failed {
            return Err(ResponseError::BadGzip);
        }
        let Some(gz) = &mut self.gzip else {
            out.extend_from_slice(bytes);
            return Ok(());
        };
        // `write_all` into a `Vec` only fails on invalid data; `flush` pushes out
        // everything decodable so far.
        if gz.write_all(bytes).and_then(|()| gz.flush()).is_err() {
            self.failed = true;
            return Err(ResponseError::BadGzip);
        }
        out.append(gz.get_mut());
        Ok(())
    }
}

impl EventStreamDecoder {
    /// Chains `response` (which may already have parsed its head) into `events`.
    pub fn new(response: ResponseDecoder, events: sse::Decoder) -> EventStreamDecoder {
        EventStreamDecoder {
            response,
            events,
            body: Vec::new(),
            coding: None,
        }
    }

    /// The response decoder: its head, framing, body length, completeness.
    pub fn response(&self) -> &ResponseDecoder {
        &self.response
    }

    /// The SSE decoder's last event id: what a reconnect sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        self.events.last_event_id()
    }

    /// Feeds the next bytes from the connection.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.response.handle_bytes(bytes);
    }

    /// The connection's read side ended.
    pub fn handle_eof(&mut self) {
        self.response.handle_eof();
    }

    /// The final head once it has arrived.
    ///
    /// # Errors
    /// As [`ResponseDecoder::poll_head`].
    pub fn poll_head(&mut self) -> Result<Option<&Head>, ResponseError> {
        self.response.poll_head()
    }

    /// The next SSE item of the body: `Ok(None)` when it needs more bytes, or when
    /// the body is over ([`ResponseDecoder::is_complete`] tells which).
    ///
    /// # Errors
    /// The response's [`ResponseError`], after every item of the body bytes before
    /// the fault.
    pub fn poll_item(&mut self) -> Result<Option<sse::Item>, ResponseError> {
        loop {
            if let Some(item) = self.events.poll() {
                return Ok(Some(item));
            }
            if self.coding.as_ref().is_some_and(|c| c.failed) {
                return Err(ResponseError::BadGzip); // a fatal state stays fatal
            }
            self.body.clear();
            let progress = self.response.poll_body(&mut self.body);
            if self.body.is_empty() {
                return progress.map(|_| None);
            }
            let coding = match &mut self.coding {
                Some(c) => c,
                None => match self.response.head() {
                    Some(head) => self.coding.insert(BodyDecoder::for_head(head)),
                    // invariant: body bytes come only after the head.
                    None => return Err(ResponseError::ClosedBeforeHead),
                },
            };
            let mut decoded = Vec::new();
            coding.decode(&self.body, &mut decoded)?;
            self.events.feed(&decoded);
        }
    }
}

/// Fuzz entry point: decoding never panics and does not depend on how the bytes are
/// split.
///
/// The first byte picks the request method (bit 0: `HEAD`), whether the stream ends
/// (bit 1 clear: it does) and small limits (bit 2); the rest is the response. It is
/// decoded whole, split at points derived from the data and a byte at a time; the
/// head, body, rest, error and SSE items must be the same each time, and the body must
/// match its framing.
///
/// # Panics
/// When an invariant fails (that is the bug the fuzzer looks for).
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    let method = if flags & 1 == 1 { "HEAD" } else { "GET" };
    let eof = flags & 2 == 0;
    let limits = if flags & 4 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head_bytes: 40 + usize::from(flags >> 3),
            max_headers: 3,
            max_chunk_line: 4 + usize::from(flags >> 5),
        }
    };
    let whole = fuzz_run(method, limits, wire, eof, &[]);
    let mut splits = Vec::new();
    let mut at = 0;
    for &b in wire.iter().take(32) {
        at += usize::from(b % 11) + 1;
        if at >= wire.len() {
            break;
        }
        splits.push(at);
    }
    let split = fuzz_run(method, limits, wire, eof, &splits);
    assert_eq!(whole, split, "splitting at {splits:?} changed the outcome");
    let every_byte: Vec<usize> = (1..wire.len()).collect();
    let bytewise = fuzz_run(method, limits, wire, eof, &every_byte);
    assert_eq!(
        whole, bytewise,
        "byte-at-a-time feeding changed the outcome"
    );

    let (head, body, result, rest, _) = &whole;
    match (result, head.as_ref().map(|(_, framing)| *framing)) {
        (Ok(Progress::Complete), Some(Framing::Empty)) => assert!(body.is_empty()),
        (Ok(Progress::Complete), Some(Framing::Length(n))) => {
            assert_eq!(body.len() as u64, n);
        }
        (Ok(Progress::Complete), Some(Framing::Close)) => assert!(rest.is_empty()),
        (Ok(Progress::Complete), None) => panic!("complete without a head"),
        (Err(ResponseError::ClosedBeforeHead), Some(_)) => panic!("a head, yet none"),
        (Ok(Progress::Partial), _) => assert!(!eof, "the end of the stream decides"),
        _ => {}
    }
    if let Some((head, _)) = head {
        assert!(head.status == 101 || !(100..200).contains(&head.status));
    }
    assert!(wire.ends_with(rest), "the rest is the input's tail");
}

/// What a run of the decoder gave: head and framing, body, the last poll's result,
/// rest, and the SSE items of the same bytes through [`EventStreamDecoder`].
type FuzzOutcome = (
    Option<(Head, Framing)>,
    Vec<u8>,
    Result<Progress, ResponseError>,
    Vec<u8>,
    (Vec<sse::Item>, Option<ResponseError>),
);

fn fuzz_run(method: &str, limits: Limits, wire: &[u8], eof: bool, splits: &[usize]) -> FuzzOutcome {
    let mut response = ResponseDecoder::with_limits(method, limits);
    let mut events = EventStreamDecoder::new(
        ResponseDecoder::with_limits(method, limits),
        sse::Decoder::new(),
    );
    let (mut body, mut items, mut items_error) = (Vec::new(), Vec::new(), None);
    let mut drain_events = |events: &mut EventStreamDecoder| loop {
        match events.poll_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => break,
            Err(e) => {
                items_error = Some(e);
                break;
            }
        }
    };
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&wire.len())) {
        response.handle_bytes(&wire[start..end]);
        events.handle_bytes(&wire[start..end]);
        // Polling the head alone in between must not change anything.
        let _ = response.poll_head();
        let _ = response.poll_body(&mut body);
        drain_events(&mut events);
        start = end;
    }
    if eof {
        response.handle_eof();
        events.handle_eof();
    }
    let result = response.poll_body(&mut body);
    drain_events(&mut events);
    // Invariants of any one run.
    assert_eq!(response.body_len(), body.len() as u64);
    assert_eq!(response.poll_body(&mut Vec::new()), result, "polling again");
    assert_eq!(response.error(), result.err());
    assert_eq!(response.is_complete(), result == Ok(Progress::Complete));
    let mut direct = sse::Decoder::new();
    direct.feed(&body);
    let want: Vec<sse::Item> = std::iter::from_fn(|| direct.poll()).collect();
    assert_eq!(items, want, "the chained SSE decoder saw another body");
    assert_eq!(items_error, result.err());
    let head = response.head().cloned().zip(response.framing());
    let rest = response.rest().to_vec();
    (head, body, result, rest, (items, items_error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Item;

    /// Head status, body, the final result and the rest, for `wire` fed in `pieces`.
    type Outcome = (
        Option<u16>,
        Vec<u8>,
        Result<Progress, ResponseError>,
        Vec<u8>,
    );

    fn decode(method: &str, limits: Limits, pieces: &[&[u8]], eof: bool) -> Outcome {
        let mut decoder = ResponseDecoder::with_limits(method, limits);
        let mut body = Vec::new();
        for piece in pieces {
            decoder.handle_bytes(piece);
            let _ = decoder.poll_body(&mut body);
        }
        if eof {
            decoder.handle_eof();
        }
        let result = decoder.poll_body(&mut body);
        let status = decoder.head().map(|h| h.status);
        (status, body, result, decoder.rest().to_vec())
    }

    /// Decodes `wire` whole, split in two at every byte, and a byte at a time; all
    /// must agree. Returns the outcome.
    fn decode_any_split(method: &str, limits: Limits, wire: &[u8], eof: bool) -> Outcome {
        let whole = decode(method, limits, &[wire], eof);
        // Every split for short inputs; for the 64 KiB ones, a few hundred.
        for at in (0..=wire.len()).step_by(wire.len() / 512 + 1) {
            let (a, b) = wire.split_at(at);
            assert_eq!(decode(method, limits, &[a, b], eof), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode(method, limits, &bytes, eof), whole, "byte at a time");
        whole
    }

    /// name, method, wire, eof, status, body, result, rest
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [u8],
        bool,
        Option<u16>,
        &'a [u8],
        Result<Progress, ResponseError>,
        &'a [u8],
    );

    const OK: Result<Progress, ResponseError> = Ok(Progress::Complete);
    const PARTIAL: Result<Progress, ResponseError> = Ok(Progress::Partial);

    #[test]
    fn any_split_gives_the_same_head_and_body() {
        use ResponseError::*;
        let long_line = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(2000)
        );
        let long_trailer = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n",
            "t".repeat(MAX_HEAD_BYTES)
        );
        let long_head = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "h".repeat(MAX_HEAD_BYTES)
        );
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            // (name, method, wire, eof, status, body, result, rest)
            ("length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, Some(200), b"hello", OK, b""),
            ("length, pipelined next", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n", false, Some(200), b"hi", OK, b"HTTP/1.1 204 No Content\r\n\r\n"),
            ("length zero", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, Some(200), b"", OK, b""),
            ("equal lengths", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nhi", false, Some(200), b"hi", OK, b""),
            ("conflicting lengths", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi", false, None, b"", Err(BadContentLength), b""),
            ("signed length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi", false, None, b"", Err(BadContentLength), b""),
            ("huge length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, None, b"", Err(BadContentLength), b""),
            ("length cut short", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", true, Some(200), b"hello", Err(Truncated), b""),
            ("length still coming", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false, Some(200), b"hello", PARTIAL, b""),
            ("chunked, extensions, trailers", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1;q=\"a b\"\r\n \r\n06\r\nworld!\r\n0\r\nX-Trailer: yes\r\n\r\nnext", false, Some(200), b"hello world!", OK, b"next"),
            ("chunked, hex sizes", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n", false, Some(200), b"0123456789abcdefghijk", OK, b""),
            ("chunked after gzip", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n2\r\nzz\r\n0\r\n\r\n", false, Some(200), b"zz", OK, b""),
            ("coding other than chunked: until close", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", true, Some(200), b"abc", OK, b""),
            ("chunked cut in data", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, Some(200), b"hel", Err(Truncated), b""),
            ("chunked cut before trailers end", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n", true, Some(200), b"hi", Err(Truncated), b""),
            ("chunked cut in size line", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1", true, Some(200), b"hi", Err(Truncated), b""),
            ("chunked without CRLF after data", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", false, Some(200), b"abc", Err(MalformedChunk), b""),
            ("chunked, CR then junk", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX", false, Some(200), b"abc", Err(MalformedChunk), b""),
            ("bad chunk size", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, Some(200), b"", Err(MalformedChunk), b""),
            ("empty chunk size", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", false, Some(200), b"", Err(MalformedChunk), b""),
            ("chunk size over 64 bits", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", false, Some(200), b"", Err(MalformedChunk), b""),
            ("chunk line too long", "GET", long_line.as_bytes(), false, Some(200), b"", Err(ChunkLineTooLong(1024)), b""),
            ("bad trailers", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Name: x\r\n\r\n", false, Some(200), b"", Err(MalformedTrailers(httparse::Error::HeaderName)), b""),
            ("trailers too large", "GET", long_trailer.as_bytes(), false, Some(200), b"", Err(TrailersTooLarge(MAX_HEAD_BYTES)), b""),
            ("until close", "GET", b"HTTP/1.0 200 OK\r\n\r\nall of it", true, Some(200), b"all of it", OK, b""),
            ("until close, still open", "GET", b"HTTP/1.0 200 OK\r\n\r\nall of it", false, Some(200), b"all of it", PARTIAL, b""),
            ("204 has no body", "GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n", false, Some(204), b"", OK, b"HTTP/1.1 200 OK\r\n"),
            ("304 has no body", "GET", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", true, Some(304), b"", OK, b""),
            ("HEAD has no body", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Some(200), b"", OK, b""),
            ("head request, chunked", "head", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Some(200), b"", OK, b""),
            ("interim heads skipped", "POST", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}", false, Some(201), b"{}", OK, b""),
            ("101 is final", "GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nother", false, Some(101), b"", OK, b"other"),
            ("bare LF lines", "GET", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, Some(200), b"hi", OK, b""),
            ("not HTTP", "GET", b"SSH-2.0-OpenSSH\r\n", false, None, b"", Err(MalformedHead(httparse::Error::Version)), b""),
            ("bad status", "GET", b"HTTP/1.1 2x0 OK\r\n\r\n", false, None, b"", Err(MalformedHead(httparse::Error::Status)), b""),
            ("head too large", "GET", long_head.as_bytes(), false, None, b"", Err(HeadTooLarge(MAX_HEAD_BYTES)), b""),
            ("closed before head", "GET", b"HTTP/1.1 200 OK\r\nContent-Le", true, None, b"", Err(ClosedBeforeHead), b""),
            ("closed after interim head", "GET", b"HTTP/1.1 100 Continue\r\n\r\n", true, None, b"", Err(ClosedBeforeHead), b""),
            ("nothing at all", "GET", b"", true, None, b"", Err(ClosedBeforeHead), b""),
        ];
        for (name, method, wire, eof, status, body, result, rest) in cases {
            let got = decode_any_split(method, Limits::default(), wire, eof);
            let want = (status, body.to_vec(), result, rest.to_vec());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn head_fields_and_framing() {
        let mut decoder = ResponseDecoder::new("GET");
        decoder.handle_bytes(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n");
        assert_eq!(decoder.poll_head(), Ok(None));
        decoder.handle_bytes(b"X-A: 1\r\nx-a:  2 \r\nContent-Length: 2\r\n\r\n{}");
        let head = decoder.poll_head().unwrap().unwrap().clone();
        assert_eq!((head.version, head.status), (1, 404));
        assert_eq!(head.reason, "Not Found");
        assert_eq!(head.header("content-type"), Some("application/json"));
        assert_eq!(head.headers_all("X-A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(head.headers[0].0, "Content-Type", "names as spelled");
        assert_eq!(decoder.framing(), Some(Framing::Length(2)));
        // The head alone does not take body bytes.
        assert!(!decoder.is_complete());
        let mut body = Vec::new();
        assert_eq!(decoder.poll_body(&mut body), OK);
        assert_eq!((body.as_slice(), decoder.body_len()), (&b"{}"[..], 2));
    }

    #[test]
    fn an_error_is_final() {
        let mut decoder = ResponseDecoder::new("GET");
        decoder.handle_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n");
        let err = Err(ResponseError::MalformedChunk);
        assert_eq!(decoder.poll_body(&mut Vec::new()), err);
        decoder.handle_bytes(b"0\r\n\r\n");
        decoder.handle_eof();
        assert_eq!(decoder.poll_body(&mut Vec::new()), err);
        assert_eq!(decoder.poll_head(), Err(ResponseError::MalformedChunk));
        assert_eq!(decoder.error(), Some(ResponseError::MalformedChunk));
        assert!(decoder.head().is_some(), "the head stays readable");
    }

    #[test]
    fn small_limits() {
        let limits = Limits {
            max_head_bytes: 48,
            max_headers: 1,
            max_chunk_line: 5,
        };
        let run = |wire: &str| decode_any_split("GET", limits, wire.as_bytes(), true).2;
        assert_eq!(run("HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), OK);
        assert_eq!(
            run("HTTP/1.1 200 OK\r\nA: bbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n"),
            Err(ResponseError::HeadTooLarge(48)),
            "49 bytes"
        );
        assert_eq!(
            run("HTTP/1.1 200\r\nA: b\r\nC: d\r\n\r\n"),
            Err(ResponseError::MalformedHead(
                httparse::Error::TooManyHeaders
            ))
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            run(&format!("{chunked}1;x\r\na\r\n0\r\n\r\n")),
            OK,
            "a 5-byte line fits"
        );
        assert_eq!(
            run(&format!("{chunked}1;xy\r\na\r\n0\r\n\r\n")),
            Err(ResponseError::ChunkLineTooLong(5))
        );
    }

    #[test]
    fn event_stream_chains_into_sse() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
            Transfer-Encoding: chunked\r\n\r\n\
            c\r\nretry: 500\n\n\r\n\
            16\r\nid: 7\nevent: x\ndata: a\r\n\
            4\r\n\n\n:\n\r\n\
            0\r\n\r\n";
        let want = vec![
            Item::Retry(500),
            Item::Event(sse::Dispatched {
                event_type: "x".into(),
                data: "a".into(),
                last_event_id: "7".into(),
            }),
            Item::Comment(String::new()),
        ];
        for at in 0..=wire.len() {
            let mut events =
                EventStreamDecoder::new(ResponseDecoder::new("GET"), sse::Decoder::new());
            let mut items = Vec::new();
            for part in [&wire[..at], &wire[at..]] {
                events.handle_bytes(part);
                while let Some(item) = events.poll_item().unwrap() {
                    items.push(item);
                }
            }
            assert_eq!(items, want, "split at {at}");
            assert!(events.response().is_complete());
            assert_eq!(events.last_event_id(), "7");
        }
    }

    #[test]
    fn event_stream_gives_items_before_the_error() {
        let mut events = EventStreamDecoder::new(ResponseDecoder::new("GET"), sse::Decoder::new());
        events.handle_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        events.handle_bytes(b"9\r\ndata: a\n\n\r\n9\r\ndata: b");
        events.handle_eof();
        assert_eq!(
            events.poll_head().map(|h| h.map(|h| h.status)),
            Ok(Some(200))
        );
        assert!(matches!(events.poll_item(), Ok(Some(Item::Event(e))) if e.data == "a"));
        assert_eq!(events.poll_item(), Err(ResponseError::Truncated));
        assert_eq!(events.response().body_len(), 16);
    }

    #[test]
    fn errors_read_as_lowercase_sentences() {
        let all = [
            ResponseError::MalformedHead(httparse::Error::Version),
            ResponseError::HeadTooLarge(1),
            ResponseError::BadContentLength,
            ResponseError::MalformedChunk,
            ResponseError::ChunkLineTooLong(1),
            ResponseError::MalformedTrailers(httparse::Error::HeaderName),
            ResponseError::TrailersTooLarge(1),
            ResponseError::ClosedBeforeHead,
            ResponseError::Truncated,
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
        }
    }

    #[test]
    fn fuzz_entry_holds_on_seeds() {
        for flags in 0..8u8 {
            for wire in [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef",
                b"HTTP/1.1 200 OK\r\n\r\ndata: x\n\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"",
                b"\xff\x00",
            ] {
                let mut data = vec![flags];
                data.extend_from_slice(wire);
                fuzz_response(&data);
            }
        }
    }
}

#[cfg(test)]
mod gzip_tests {
    use super::*;
    use crate::gzip::Member;
    use crate::sse::Item;

    #[test]
    fn a_gzip_event_stream_yields_each_event_as_its_bytes_arrive() {
        let mut events = EventStreamDecoder::new(ResponseDecoder::new("GET"), sse::Decoder::new());
        events.handle_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let mut member = Member::new();
        let mut d = crate::gzip::Deflater::default();
        for i in 0..5 {
            let mut piece = Vec::new();
            member.push_compressed(
                &mut d,
                format!("id: {i}\ndata: line {i}\n\n").as_bytes(),
                false,
                &mut piece,
            );
            let mut chunk = Vec::new();
            crate::http::encode_chunk(&piece, &mut chunk);
            events.handle_bytes(&chunk);
            let Ok(Some(Item::Event(e))) = events.poll_item() else {
                panic!("event {i} not decodable at once")
            };
            assert_eq!(e.data, format!("line {i}"));
            assert_eq!(events.poll_item(), Ok(None));
        }
        let mut last = Vec::new();
        member.finish(&mut last);
        let mut chunk = Vec::new();
        crate::http::encode_chunk(&last, &mut chunk);
        events.handle_bytes(&chunk);
        events.handle_bytes(b"0\r\n\r\n");
        assert_eq!(events.poll_item(), Ok(None));
        assert!(events.response().is_complete());
    }

    #[test]
    fn a_body_that_is_not_gzip_is_an_error() {
        let mut events = EventStreamDecoder::new(ResponseDecoder::new("GET"), sse::Decoder::new());
        events.handle_bytes(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\ndata: hi\n\n\n\n");
        assert_eq!(events.poll_item(), Err(ResponseError::BadGzip));
        assert_eq!(events.poll_item(), Err(ResponseError::BadGzip));
    }
}
