//! The load client: plain HTTP/1.1 over `std::net`, response heads read by the core's
//! decoder (`spout_core::client`), bodies by the bench's own parsers (`wire`: framing,
//! SSE, the events' JSON), and every line of every event checked byte for byte
//! against the generator's (so "every event once and in order" is checked by
//! content, for every peer, whatever its event ids look like).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spout_core::client::{Framing, Progress, ResponseDecoder};

use crate::wire;

/// Sends one request with a JSON body and returns (status, body).
///
/// # Errors
/// When the connection fails or the response is not HTTP.
pub fn post_json(addr: SocketAddr, path: &str, json: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let body = Body::open(s)?;
    let status = body.status;
    let out = body.read_to_end()?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// A response being read: the head parsed by the core's decoder, which also holds
/// the body bytes that came with it.
pub struct Body {
    stream: TcpStream,
    /// The response status.
    pub status: u16,
    decoder: ResponseDecoder,
}

impl Body {
    /// Reads the response head from `stream`.
    ///
    /// # Errors
    /// When the connection fails or the head is not HTTP/1.x.
    pub fn open(mut stream: TcpStream) -> Result<Body, String> {
        let mut decoder = ResponseDecoder::new("GET");
        let mut buf = [0u8; 8192];
        loop {
            match decoder.poll_head() {
                Ok(Some(head)) => {
                    let status = head.status;
                    return Ok(Body {
                        stream,
                        status,
                        decoder,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(format!("read head: {e}")),
            }
            read_into(&mut stream, &mut buf, |bytes| match bytes {
                Some(bytes) => decoder.handle_bytes(bytes),
                None => decoder.handle_eof(),
            })?;
        }
    }

    /// Reads the whole body.
    ///
    /// # Errors
    /// A read error, broken framing, or a body cut short.
    pub fn read_to_end(mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.decoder.poll_body(&mut out) {
                Ok(Progress::Complete) => return Ok(out),
                Ok(Progress::Partial) => {}
                Err(e) => return Err(e.to_string()),
            }
            let decoder = &mut self.decoder;
            read_into(&mut self.stream, &mut buf, |bytes| match bytes {
                Some(bytes) => decoder.handle_bytes(bytes),
                None => decoder.handle_eof(),
            })?;
        }
    }
}

/// One read from `stream` into `buf`, handed to `to` (`None` at the end of the stream).
fn read_into(
    stream: &mut TcpStream,
    buf: &mut [u8],
    mut to: impl FnMut(Option<&[u8]>),
) -> Result<(), String> {
    loop {
        match stream.read(buf) {
            Ok(0) => {
                to(None);
                return Ok(());
            }
            Ok(n) => {
                to(Some(&buf[..n]));
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Nanoseconds since the epoch (the generator stamps lines with the same clock).
#[must_use]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What one subscriber should do.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// The stream's path.
    pub path: String,
    /// Sent as `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// The first line's sequence number, when known (1 for a stream from the start).
    pub first_seq: Option<u64>,
    /// Lines the stream must hold in all, when known.
    pub expect_lines: Option<u64>,
    /// Event ids are numbers that must go up by one (spout, Express); nchan's are not.
    pub consecutive_ids: bool,
    /// Record one latency sample per line from its `ts_ns`.
    pub latency: bool,
    /// Stop after the first event carrying output (resume time-to-first-byte).
    pub first_only: bool,
    /// Sleep this long after every read (a slow reader).
    pub read_pause: Option<Duration>,
    /// A slow reader stops when this is set (its checks still hold for what it read).
    pub stop: Option<Arc<AtomicBool>>,
    /// Counts subscribers whose response head has arrived.
    pub connected: Option<Arc<AtomicUsize>>,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Events with output.
    pub events: u64,
    /// Lines checked.
    pub lines: u64,
    /// Body bytes received (the SSE wire bytes).
    pub bytes: u64,
    /// From sending the request to the first byte of the response.
    pub ttfb: Option<Duration>,
    /// From sending the request to the first output event parsed.
    pub first_event: Option<Duration>,
    /// Latency samples in nanoseconds.
    pub latencies: Vec<u64>,
    /// Whether an `exit` event ended the stream.
    pub exited: bool,
}

/// A stream whose response head has arrived.
struct Opened {
    stream: TcpStream,
    /// Just before the request was written: what TTFB and first event count from.
    t0: Instant,
    /// From `t0` to the first byte of the response.
    ttfb: Duration,
    framing: wire::Framing,
    /// Body bytes that came with the head.
    rest: Vec<u8>,
}

/// Connects, sends the request and reads the response head (blocking). The head is
/// parsed by the core's decoder; the body is left to [`wire`].
fn connect(addr: SocketAddr, w: &Watch) -> Result<Opened, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n",
        w.path
    );
    if let Some(id) = &w.last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    // A slow reader must notice its stop flag even if the server sends nothing; any
    // other stream that is silent for longer than a heartbeat period has failed.
    let timeout = if w.stop.is_some() { 1 } else { 30 };
    stream
        .set_read_timeout(Some(Duration::from_secs(timeout)))
        .ok();
    let t0 = Instant::now();
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut ttfb = None;
    let end = loop {
        if let Some(end) = wire::head_end(&buf) {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Err("a response head over 64 KiB".into());
        }
        let at = buf.len();
        buf.resize(at + 8192, 0);
        let n = loop {
            match stream.read(&mut buf[at..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read head: {e}")),
            }
        };
        buf.truncate(at + n);
        if n == 0 {
            return Err("read head: closed before the head".into());
        }
        ttfb.get_or_insert_with(|| t0.elapsed());
    };
    let mut decoder = ResponseDecoder::new("GET");
    decoder.handle_bytes(&buf[..end]);
    let head = match decoder.poll_head() {
        Ok(Some(head)) => head,
        Ok(None) => return Err("read head: an interim response".into()),
        Err(e) => return Err(format!("read head: {e}")),
    };
    if head.status != 200 {
        return Err(format!("{} answered {}", w.path, head.status));
    }
    // The client asks for no content coding; a server that sends one anyway fails.
    if let Some(coding) = head.header("content-encoding") {
        if !coding.trim().eq_ignore_ascii_case("identity") {
            return Err(format!("{} sent Content-Encoding: {coding}", w.path));
        }
    }
    let framing = match head.framing(false) {
        Ok(Framing::Chunked) => wire::Framing::Chunked,
        Ok(Framing::Length(n)) => wire::Framing::Length(n),
        Ok(Framing::Empty) => wire::Framing::Length(0),
        Ok(_) => wire::Framing::Close,
        Err(e) => return Err(format!("read head: {e}")),
    };
    if let Some(c) = &w.connected {
        c.fetch_add(1, Ordering::SeqCst);
    }
    buf.drain(..end);
    Ok(Opened {
        stream,
        t0,
        // invariant: the loop above read at least one byte.
        ttfb: ttfb.unwrap_or_default(),
        framing,
        rest: buf,
    })
}

/// One subscriber's checks, fed with the bytes its socket yields (the same checks
/// for the thread-per-subscriber client and the one-thread client): framing undone,
/// SSE parsed, every output event's `text` unescaped and every line checked byte for
/// byte, in order (`wire`).
pub struct Checker {
    body: wire::Body,
    sse: wire::Sse,
    check: Check,
    /// A slow reader's checks hold for what it read: an error ends it quietly.
    lenient: bool,
}

/// The checks on the events, apart from the parsers that feed them.
struct Check {
    consecutive_ids: bool,
    latency: bool,
    first_only: bool,
    t0: Instant,
    seen: Seen,
    next_seq: Option<u64>,
    last_id: Option<u64>,
    /// Event text not yet checked: the start of a line that an event cut, or one
    /// that held escapes.
    text: Vec<u8>,
    /// `text` as it was before the current event, should the event need a second
    /// reading (kept here so that no event allocates).
    saved_text: Vec<u8>,
    done: bool,
}

/// Where the checks stood before an event: see [`Check::rewind`].
struct Mark {
    next_seq: Option<u64>,
    lines: u64,
    latencies: usize,
}

impl Check {
    /// One event. Returns an empty error to stop parsing once the stream is done.
    fn event(&mut self, ev: wire::Event<'_>) -> Result<(), String> {
        if self.consecutive_ids {
            let id: u64 = std::str::from_utf8(ev.last_event_id)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "id {:?} is not a number",
                        String::from_utf8_lossy(ev.last_event_id)
                    )
                })?;
            if let Some(prev) = self.last_id {
                if id != prev + 1 {
                    return Err(format!(
                        "{} event id {id} after {prev} (data {:.80})",
                        String::from_utf8_lossy(ev.event_type),
                        String::from_utf8_lossy(ev.data)
                    ));
                }
            }
            self.last_id = Some(id);
        }
        match ev.event_type {
            b"stdout" | b"stderr" | b"message" => {}
            // The last event: stop here (a pub/sub peer keeps the stream open).
            b"exit" => {
                self.seen.exited = true;
                self.done = true;
                return Err(String::new());
            }
            _ => return Ok(()),
        }
        self.seen.events += 1;
        if self.seen.first_event.is_none() {
            // The first output event counts once its text is read out of its data
            // (read once more below, with the checks; this is one event per stream).
            if wire::text_whole(ev.data).is_none() {
                wire::json_text(ev.data)?;
            }
            self.seen.first_event = Some(self.t0.elapsed());
            if self.first_only {
                self.done = true;
                return Err(String::new());
            }
        }
        let now = if self.latency { now_ns() } else { 0 };
        if let Some(at) = wire::text_start(ev.data) {
            let mark = self.mark();
            if self.text_in_place(ev.data, at, now)? {
                return Ok(());
            }
            // Not the usual shape after all (a `\u` escape, another key): read
            // again from the start of the event, by serde_json.
            self.rewind(mark);
        }
        let text = wire::json_text(ev.data)?;
        for part in text.as_bytes().split_inclusive(|&c| c == b'\n') {
            match part.strip_suffix(b"\n") {
                Some(line) => self.piece(line, b'\n', now)?,
                None => self.piece(part, 0, now)?,
            }
        }
        Ok(())
    }

    /// Checks the text of a `{"text": "…"}` event from its string's start `at`, in
    /// the data (`wire::text_piece`). Returns false, having checked part of it, when
    /// the data turns out to need serde_json.
    fn text_in_place(&mut self, data: &[u8], mut at: usize, now: u64) -> Result<bool, String> {
        loop {
            // The usual case: a whole generator line then its `\n` escape. It is
            // checked where it lies, without looking for the escape first: a line
            // that passes the check holds no quote or backslash, so this is what the
            // walk below would find.
            if self.text.is_empty() {
                if let Some(l) = data.get(at..at + wire::LINE + 1) {
                    if l[wire::LINE - 1..] == *b"\\n" {
                        if let Some((seq, ts)) =
                            wire::gen_fields(&l[..wire::LINE - 1], self.latency)
                        {
                            self.numbered(seq, ts, now)?;
                            at += wire::LINE + 1;
                            continue;
                        }
                    }
                }
            }
            let Some((end, c, next)) = wire::text_piece(data, at) else {
                return Ok(false);
            };
            self.piece(&data[at..end], c, now)?;
            if c == 0 {
                return Ok(wire::text_end(&data[next..]));
            }
            at = next;
        }
    }

    /// Where the checks stand, to read an event again ([`Check::rewind`]).
    fn mark(&mut self) -> Mark {
        self.saved_text.clone_from(&self.text);
        Mark {
            next_seq: self.next_seq,
            lines: self.seen.lines,
            latencies: self.seen.latencies.len(),
        }
    }

    /// Back to where the checks stood at `mark`.
    fn rewind(&mut self, mark: Mark) {
        self.next_seq = mark.next_seq;
        self.seen.lines = mark.lines;
        self.seen.latencies.truncate(mark.latencies);
        self.text.clone_from(&self.saved_text);
    }

    /// A piece of an event's text, then the character `then` (`0`: none).
    fn piece(&mut self, plain: &[u8], then: u8, now: u64) -> Result<(), String> {
        match then {
            // The usual case: a whole line in the event's data, checked in place.
            b'\n' if self.text.is_empty() => self.line(plain, now),
            b'\n' => {
                self.text.extend_from_slice(plain);
                let text = std::mem::take(&mut self.text);
                let r = self.line(&text, now);
                self.text = text;
                self.text.clear();
                r
            }
            0 => {
                self.text.extend_from_slice(plain);
                Ok(())
            }
            c => {
                self.text.extend_from_slice(plain);
                self.text.push(c);
                Ok(())
            }
        }
    }

    /// One whole line of output (LF excluded).
    fn line(&mut self, line: &[u8], now: u64) -> Result<(), String> {
        let (seq, ts) = wire::gen_line(line, self.latency)?;
        self.numbered(seq, ts, now)
    }

    /// A generator line's sequence number and time stamp: in order?
    fn numbered(&mut self, seq: u64, ts: u64, now: u64) -> Result<(), String> {
        match self.next_seq {
            Some(want) if want != seq => return Err(format!("line {seq} where {want} was due")),
            _ => self.next_seq = Some(seq + 1),
        }
        if self.latency {
            self.seen.latencies.push(now.saturating_sub(ts));
        }
        self.seen.lines += 1;
        Ok(())
    }
}

impl Checker {
    fn new(w: &Watch, opened: &Opened) -> Checker {
        Checker::with(w, opened.framing, opened.t0, opened.ttfb)
    }

    /// A checker for a body with this framing, whose request was written at `t0`
    /// and answered after `ttfb`.
    fn with(w: &Watch, framing: wire::Framing, t0: Instant, ttfb: Duration) -> Checker {
        Checker {
            body: wire::Body::new(framing),
            sse: wire::Sse::new(),
            check: Check {
                consecutive_ids: w.consecutive_ids,
                latency: w.latency,
                first_only: w.first_only,
                t0,
                seen: Seen {
                    ttfb: Some(ttfb),
                    ..Seen::default()
                },
                next_seq: w.first_seq,
                last_id: w.last_event_id.as_deref().and_then(|s| s.parse().ok()),
                text: Vec::new(),
                saved_text: Vec::new(),
                done: false,
            },
            lenient: w.stop.is_some(),
        }
    }

    /// Bytes read from the socket (`None`: end of stream), parsed and checked at
    /// once; true when the stream is done (exit, end of body, or the first output
    /// event for `first_only`).
    ///
    /// # Errors
    /// The first violation, or broken framing.
    fn feed(&mut self, bytes: Option<&[u8]>) -> Result<bool, String> {
        if self.check.done {
            return Ok(true);
        }
        let Checker {
            body, sse, check, ..
        } = self;
        let r = body.feed(bytes, &mut |piece| {
            sse.feed(piece, &mut |ev| check.event(ev))
        });
        check.seen.bytes = body.len();
        match r {
            Ok(()) => {}
            Err(_) if check.done => {}
            Err(_) if self.lenient => check.done = true,
            Err(e) => return Err(e),
        }
        check.done |= body.is_complete();
        Ok(check.done)
    }

    /// The final checks once the stream is done.
    fn finish(self, w: &Watch) -> Result<Seen, String> {
        let seen = self.check.seen;
        if w.first_only || w.stop.is_some() {
            return Ok(seen);
        }
        if !seen.exited {
            return Err("stream ended without an exit event".into());
        }
        if let Some(want) = w.expect_lines {
            if seen.lines != want {
                return Err(format!("{} lines where {want} were written", seen.lines));
            }
        }
        Ok(seen)
    }
}

/// Subscribes and checks the stream; returns what was seen or the first violation.
///
/// # Errors
/// A connection problem, an unexpected status, an id or line out of order, a missing
/// line, or a stream that ended without `exit` (unless `first_only` or `stop`).
pub fn watch(addr: SocketAddr, w: &Watch) -> Result<Seen, String> {
    let mut opened = connect(addr, w)?;
    let stopped = || w.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut c = Checker::new(w, &opened);
    let mut done = c.feed(Some(&opened.rest))?;
    let mut buf = vec![0u8; 256 * 1024];
    while !done {
        if stopped() {
            return Ok(c.check.seen);
        }
        done = match opened.stream.read(&mut buf) {
            Ok(0) => c.feed(None)?,
            Ok(n) => c.feed(Some(&buf[..n]))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
            // A slow reader's 1 s read timeout: look at the stop flag again.
            Err(_) if w.stop.is_some() => false,
            Err(e) => return Err(format!("read: {e}")),
        };
        if let Some(p) = w.read_pause {
            std::thread::sleep(p);
        }
    }
    c.finish(w)
}

/// The one-thread client: opens `n` streams (blocking, one after the other, each
/// counted in `w.connected` when its head has arrived), then reads them all from
/// this one thread: non-blocking sockets with default buffers, `epoll(7)` for
/// readiness (level-triggered), one 64 KiB read per ready socket per wake-up, every
/// event parsed and checked. A slow reader by design, so the server's backpressure
/// path is what is measured.
///
/// Returns one result per stream, in connection order.
pub fn watch_all(addr: SocketAddr, w: &Watch, n: usize) -> Vec<Result<Seen, String>> {
    use rustix::event::epoll;
    let mut results: Vec<Option<Result<Seen, String>>> = (0..n).map(|_| None).collect();
    let mut live: Vec<Option<(TcpStream, Checker)>> = (0..n).map(|_| None).collect();
    let ep = match epoll::create(epoll::CreateFlags::CLOEXEC) {
        Ok(ep) => ep,
        Err(e) => return (0..n).map(|_| Err(format!("epoll: {e}"))).collect(),
    };
    let mut left = 0;
    for i in 0..n {
        let started = connect(addr, w).and_then(|o| {
            o.stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut c = Checker::new(w, &o);
            // Events that came with the head.
            if c.feed(Some(&o.rest))? {
                return Ok((o.stream, c, true));
            }
            epoll::add(
                &ep,
                &o.stream,
                epoll::EventData::new_u64(i as u64),
                epoll::EventFlags::IN,
            )
            .map_err(|e| format!("epoll: {e}"))?;
            Ok((o.stream, c, false))
        });
        match started {
            Ok((_, c, true)) => results[i] = Some(c.finish(w)),
            Ok((s, c, false)) => {
                live[i] = Some((s, c));
                left += 1;
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let none = epoll::Event {
        flags: epoll::EventFlags::empty(),
        data: epoll::EventData::new_u64(0),
    };
    let mut ready = vec![none; n.max(1)];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    while left > 0 {
        let got = match epoll::wait(&ep, &mut ready[..], Some(&timeout)) {
            Ok(0) => {
                for (i, slot) in live.iter_mut().enumerate() {
                    if slot.take().is_some() {
                        results[i] = Some(Err("no bytes for 30 s".into()));
                    }
                }
                break;
            }
            Ok(got) => got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                for (i, slot) in live.iter_mut().enumerate() {
                    if slot.take().is_some() {
                        results[i] = Some(Err(format!("epoll: {e}")));
                    }
                }
                break;
            }
        };
        for ev in &ready[..got] {
            let i = ev.data.u64() as usize;
            let Some((s, c)) = live.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            // One read per ready socket per wake-up: the client drains no faster
            // than it parses, as a real one-thread reader would.
            let r = match s.read(&mut buf) {
                Ok(0) => c.feed(None),
                Ok(m) => c.feed(Some(&buf[..m])),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    Ok(false)
                }
                Err(e) => Err(format!("read: {e}")),
            };
            let r = match r {
                Ok(false) => continue,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
            if let Some((s, c)) = live[i].take() {
                let _ = epoll::delete(&ep, &s);
                left -= 1;
                results[i] = Some(r.and_then(|()| c.finish(w)));
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

/// Opens a stream and keeps it open without reading past the first body bytes: an
/// idle subscriber. The kernel's receive buffer absorbs the heartbeats.
///
/// # Errors
/// When the connection or the response head fails, or the status is not 200.
pub fn open_idle(addr: SocketAddr, path: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = Body::open(s.try_clone().map_err(|e| e.to_string())?)?;
    if body.status != 200 {
        return Err(format!("{path} answered {}", body.status));
    }
    Ok(s)
}

/// Reads whatever an idle subscriber's socket holds, without waiting, and counts the
/// SSE blocks in it (blank lines: `\n\n`). The socket is left non-blocking.
pub fn drain_blocks(s: &mut TcpStream) -> u64 {
    if s.set_nonblocking(true).is_err() {
        return 0;
    }
    let mut buf = [0u8; 4096];
    let (mut blocks, mut last) = (0, 0u8);
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return blocks,
            Ok(n) => {
                let b = &buf[..n];
                blocks += u64::from(last == b'\n' && b[0] == b'\n');
                blocks += memchr::memmem::find_iter(b, b"\n\n").count() as u64;
                last = b[n - 1];
            }
        }
    }
}

/// `GET path` and returns (status, body).
///
/// # Errors
/// When the connection fails or the response is not HTTP.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let body = Body::open(s)?;
    let status = body.status;
    let out = body.read_to_end()?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spout_core::event::Stream;
    use spout_core::id::EventId;
    use spout_core::sse;

    /// A fan-out stream as spout sends it live: a chunk per event of `per_event`
    /// generator lines (`lines` in all), ids from 2, then `exit`.
    fn spout_wire(lines: u64, per_event: u64) -> Vec<u8> {
        let mut body = b"retry: 1000\n\nid: 1\nevent: start\ndata: {}\n\n".to_vec();
        let mut wire = Vec::new();
        let mut chunk = |body: &mut Vec<u8>| {
            wire.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            wire.append(body);
            wire.extend_from_slice(b"\r\n");
        };
        chunk(&mut body);
        let mut id = 2;
        let mut seq = 1;
        while seq <= lines {
            let mut text = String::new();
            for s in seq..(seq + per_event).min(lines + 1) {
                text.push_str(&format!("{s:010} {:019} {}\n", s * 7, "x".repeat(68)));
            }
            seq += per_event;
            let eid = EventId::new(id).expect("invariant: not 0");
            sse::encode_output_event(eid, Stream::Stdout, &text, &mut body);
            chunk(&mut body);
            id += 1;
        }
        body.extend_from_slice(format!("id: {id}\nevent: exit\ndata: {{}}\n\n").as_bytes());
        chunk(&mut body);
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    /// The checks pass on a whole stream fed in pieces of any size, and fail on a
    /// line out of place.
    #[test]
    fn checker_takes_spout_wire_in_any_pieces() {
        let wire = spout_wire(500, 37);
        let w = Watch {
            first_seq: Some(1),
            expect_lines: Some(500),
            consecutive_ids: true,
            ..Watch::default()
        };
        for step in [1, 2, 3, 7, 99, 100, 101, 4096, wire.len()] {
            let mut c = Checker::with(&w, wire::Framing::Chunked, Instant::now(), Duration::ZERO);
            let mut done = false;
            for piece in wire.chunks(step) {
                done = c.feed(Some(piece)).unwrap();
            }
            assert!(done, "step {step}");
            let seen = c.finish(&w).unwrap();
            assert_eq!((seen.lines, seen.events), (500, 14), "step {step}");
        }
        let swapped = String::from_utf8(wire)
            .unwrap()
            .replacen("0000000042 0", "0000000043 0", 1);
        let mut c = Checker::with(&w, wire::Framing::Chunked, Instant::now(), Duration::ZERO);
        let e = c.feed(Some(swapped.as_bytes())).unwrap_err();
        assert!(e.contains("line 43 where 42 was due"), "{e}");
    }

    /// Events that cut lines (as nchan's relay sends them) and event data that the
    /// in-place walk gives up on halfway (a `\u` escape, a key after `text`): every
    /// line is checked once, whichever path reads it.
    #[test]
    fn checker_reads_cut_lines_and_other_json_again() {
        let line = |seq: u64| format!("{seq:010} {:019} {}", 0, "x".repeat(68));
        let (l2, l4) = (line(2), line(4));
        let events = [
            format!(r#"{{"text":"{}\n{}"}}"#, line(1), &l2[..50]),
            format!(
                r#"{{"text":"{}\n{}\n{}\u0078\n"}}"#,
                &l2[50..],
                line(3),
                &l4[..98]
            ),
            format!(r#"{{"text":"{}\n","then":1}}"#, line(5)),
            format!(r#"{{"text":"{}\n{}\n"}}"#, line(6), line(7)),
        ];
        let mut body = String::new();
        for (i, data) in events.iter().enumerate() {
            body.push_str(&format!("id: {}\nevent: stdout\ndata: {data}\n\n", i + 1));
        }
        body.push_str("id: 5\nevent: exit\ndata: {}\n\n");
        let w = Watch {
            first_seq: Some(1),
            expect_lines: Some(7),
            consecutive_ids: true,
            ..Watch::default()
        };
        for step in [1, 13, 100, body.len()] {
            let mut c = Checker::with(&w, wire::Framing::Close, Instant::now(), Duration::ZERO);
            for piece in body.as_bytes().chunks(step) {
                c.feed(Some(piece)).unwrap();
            }
            c.feed(None).unwrap();
            let seen = c.finish(&w).unwrap();
            assert_eq!((seen.lines, seen.events), (7, 4), "step {step}");
        }
    }

    /// The client alone, without sockets: 100 subscribers' checkers fed the same
    /// spout stream in 64 KiB pieces, in turn, as the one-thread client reads them.
    /// Run with `cargo test --release client_alone -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn client_alone() {
        let lines = 100_000;
        let wire = spout_wire(lines, 131);
        let w = Watch {
            first_seq: Some(1),
            expect_lines: Some(lines),
            consecutive_ids: true,
            ..Watch::default()
        };
        for round in 0..5 {
            let mut checkers: Vec<Checker> = (0..100)
                .map(|_| Checker::with(&w, wire::Framing::Chunked, Instant::now(), Duration::ZERO))
                .collect();
            let t0 = Instant::now();
            for piece in wire.chunks(64 * 1024) {
                for c in &mut checkers {
                    c.feed(Some(piece)).unwrap();
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            for c in checkers {
                assert_eq!(c.finish(&w).unwrap().lines, lines);
            }
            println!(
                "round {round}: {:.1} M lines/s, {:.0} MB/s of wire",
                100.0 * lines as f64 / secs / 1e6,
                100.0 * wire.len() as f64 / secs / 1e6
            );
        }
    }
}
