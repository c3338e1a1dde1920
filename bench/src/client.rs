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
    /// Where the current event's text lies in its data (`wire::json_text`).
    spans: Vec<wire::Span>,
    done: bool,
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
        let whole = wire::json_text(ev.data, &mut self.spans)?;
        self.seen.events += 1;
        if self.seen.first_event.is_none() {
            self.seen.first_event = Some(self.t0.elapsed());
            if self.first_only {
                self.done = true;
                return Err(String::new());
            }
        }
        let now = if self.latency { now_ns() } else { 0 };
        if let Some(text) = whole {
            for part in text.as_bytes().split_inclusive(|&c| c == b'\n') {
                match part.strip_suffix(b"\n") {
                    Some(line) => self.piece(line, b'\n', now)?,
                    None => self.piece(part, 0, now)?,
                }
            }
            return Ok(());
        }
        let spans = std::mem::take(&mut self.spans);
        let r = spans
            .iter()
            .try_for_each(|&(s, e, c)| self.piece(&ev.data[s..e], c, now));
        self.spans = spans;
        r
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
        Checker {
            body: wire::Body::new(opened.framing),
            sse: wire::Sse::new(),
            check: Check {
                consecutive_ids: w.consecutive_ids,
                latency: w.latency,
                first_only: w.first_only,
                t0: opened.t0,
                seen: Seen {
                    ttfb: Some(opened.ttfb),
                    ..Seen::default()
                },
                next_seq: w.first_seq,
                last_id: w.last_event_id.as_deref().and_then(|s| s.parse().ok()),
                text: Vec::new(),
                spans: Vec::new(),
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
