//! An SSE response read as it arrives: the core's response decoder
//! (`spout_core::client`) de-frames the body incrementally, every body byte is kept
//! (for exact-wire snapshots) and fed, only when a case asks for items, to the core's
//! `spout_core::sse::Decoder`.

use crate::client::{self, Response, DEFAULT_TIMEOUT};
use crate::wire::{self, Reader};
use spout_core::client::{Progress, ResponseDecoder};
use spout_core::sse::{Decoder, Dispatched, Item};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An open `200` event-stream response.
pub struct EventStream {
    reader: Reader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// The core's response decoder: framing, and where the body is.
    response: ResponseDecoder,
    /// Every body byte so far, de-chunked.
    raw: Vec<u8>,
    /// How much of `raw` the decoder has seen.
    fed: usize,
    decoder: Decoder,
    /// Items the decoder produced that no caller has taken yet.
    pending: VecDeque<Item>,
    /// The connection ended without the body's end (close, reset, or [`Self::close`]).
    dropped: Option<String>,
}

/// Sends `GET path` (with `Accept: text/event-stream` unless `headers` has an
/// `Accept`) and, for a `200`, returns the open stream after its head.
///
/// # Errors
/// Any other status: the whole response (e.g. `204` after the final id, `400` for a bad
/// `Last-Event-ID`, `404`).
///
/// # Panics
/// On connection or framing errors, or no head within [`DEFAULT_TIMEOUT`].
pub fn open_events(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<EventStream, Response> {
    match try_open(addr, path, headers) {
        Ok(result) => result,
        Err(e) => panic!("GET http://{addr}{path} (event stream) failed: {e}"),
    }
}

fn try_open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Result<EventStream, Response>> {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let mut stream = client::connect(addr)?;
    let mut head = client::request_head(addr, "GET", path, headers);
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: text/event-stream\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut reader = Reader::new(stream);
    let mut response = ResponseDecoder::new("GET");
    let head = reader.read_head(&mut response, deadline)?;
    let mut events = EventStream {
        reader,
        status: head.status,
        headers: head.headers,
        response,
        raw: Vec::new(),
        fed: 0,
        decoder: Decoder::new(),
        pending: VecDeque::new(),
        dropped: None,
    };
    if events.status == 200 {
        return Ok(Ok(events));
    }
    while !events.ended() {
        if !events.read_more(deadline) && !events.ended() {
            return Err(wire::timed_out(&format!(
                "the end of a {} response body",
                events.status
            )));
        }
    }
    if let Some(why) = events.dropped {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
    }
    Ok(Err(Response {
        status: events.status,
        headers: events.headers,
        body: events.raw,
    }))
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("status", &self.status)
            .field("raw", &self.raw_text())
            .field("finished", &self.finished())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The response status (always 200 for an open stream).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response header fields, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header_in(&self.headers, name)
    }

    /// Every body byte received so far, de-chunked: the exact SSE wire text.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// [`Self::raw`] as text (lossy), for snapshots and messages.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Whether the body is over: its end arrived (the zero chunk), or the connection
    /// was closed or reset, or [`Self::close`] was called.
    pub fn ended(&self) -> bool {
        self.finished() || self.dropped.is_some()
    }

    /// Whether the body ended cleanly: the zero chunk (or, for a body without chunked
    /// framing, its length or the server's close) arrived.
    pub fn finished(&self) -> bool {
        self.response.is_complete()
    }

    /// Why the connection ended without the body's end, if it did.
    pub fn dropped(&self) -> Option<&str> {
        self.dropped.as_deref()
    }

    /// Closes the connection mid-stream, as a browser tab going away does.
    pub fn close(&mut self) {
        let _ = self.reader.source.shutdown(Shutdown::Both);
        if !self.ended() {
            self.dropped = Some("closed by the test".into());
        }
    }

    /// Waits up to `timeout` for body bytes and returns the ones that came (empty on
    /// timeout or at the end). Does not use the decoder.
    pub fn read_some_raw(&mut self, timeout: Duration) -> Vec<u8> {
        let start = self.raw.len();
        self.read_more(Instant::now() + timeout);
        self.raw[start..].to_vec()
    }

    /// Reads until the raw body contains `needle`; returns whether it does. Does not
    /// use the decoder.
    pub fn read_until_raw_contains(&mut self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Only the bytes that could hold a new match are searched each time: a scan of
        // the whole body per read is quadratic, and far too slow for tens of megabytes.
        let mut from = 0;
        loop {
            if contains(&self.raw[from..], needle) {
                return true;
            }
            from = self
                .raw
                .len()
                .saturating_sub(needle.len().saturating_sub(1));
            if !self.read_more(deadline) {
                return contains(&self.raw[from..], needle);
            }
        }
    }

    /// The next decoded item (event, comment or retry), waiting up to `timeout`;
    /// `None` on timeout or at the end of the stream ([`Self::ended`] tells which).
    pub fn next_item(&mut self, timeout: Duration) -> Option<Item> {
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if !self.read_more(deadline) {
                self.decode();
                return self.pending.pop_front();
            }
        }
    }

    /// The next dispatched event, skipping comments and `retry`, waiting up to
    /// `timeout`; `None` on timeout or at the end.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Dispatched> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left)? {
                Item::Event(event) => return Some(event),
                _ => continue,
            }
        }
    }

    /// Every remaining event up to the end of the stream.
    ///
    /// # Panics
    /// When the stream has not ended within `timeout`; the message shows the events
    /// collected and the raw wire text.
    pub fn collect_to_end(&mut self, timeout: Duration) -> Vec<Dispatched> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(event) => events.push(event),
                None if self.ended() => return events,
                None => panic!(
                    "event stream did not end within {timeout:?}; events so far: {events:#?}\n\
                     raw stream:\n{}",
                    self.raw_text()
                ),
            }
        }
    }

    /// The decoder's last event id after everything received so far: what a
    /// reconnecting client sends as `Last-Event-ID`.
    pub fn last_event_id(&mut self) -> String {
        self.decode();
        self.decoder.last_event_id().to_string()
    }

    /// Feeds the decoder what it has not seen and queues what it produces.
    fn decode(&mut self) {
        if self.fed < self.raw.len() {
            self.decoder.feed(&self.raw[self.fed..]);
            self.fed = self.raw.len();
        }
        while let Some(item) = self.decoder.poll() {
            self.pending.push_back(item);
        }
    }

    /// Reads until new body bytes arrive; `false` when none came before `deadline`
    /// or the body is over.
    ///
    /// # Panics
    /// On bad framing: that is a server bug the case must see.
    fn read_more(&mut self, deadline: Instant) -> bool {
        if self.ended() {
            return false;
        }
        let before = self.raw.len();
        match self
            .reader
            .read_body(&mut self.response, &mut self.raw, deadline)
        {
            Ok(Progress::Partial | Progress::Complete) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.dropped = Some(format!("connection closed mid-body: {e}"));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => panic!(
                "bad framing in the event stream: {e}\nbody so far:\n{}",
                self.raw_text()
            ),
            Err(e) => self.dropped = Some(format!("connection error: {e}")),
        }
        self.raw.len() > before
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
