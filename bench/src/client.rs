//! The load client: plain HTTP/1.1 over `std::net`, responses read by the core's
//! decoder chained into its SSE decoder (`spout_core::client`), and every line of every event checked
//! against the generator's sequence numbers (so "every event once and in order" is
//! checked by content, for every peer, whatever its event ids look like).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spout_core::client::{EventStreamDecoder, Progress, ResponseDecoder};
use spout_core::sse::{Decoder, Item};

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
    /// From connect to the first output event.
    pub first_event: Option<Duration>,
    /// Latency samples in nanoseconds.
    pub latencies: Vec<u64>,
    /// Whether an `exit` event ended the stream.
    pub exited: bool,
}

/// Connects, sends the request and reads the response head (blocking).
fn connect(addr: SocketAddr, w: &Watch) -> Result<(TcpStream, ResponseDecoder), String> {
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
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    // A slow reader must notice its stop flag even if the server sends nothing; any
    // other stream that is silent for longer than a heartbeat period has failed.
    let timeout = if w.stop.is_some() { 1 } else { 30 };
    stream
        .set_read_timeout(Some(Duration::from_secs(timeout)))
        .ok();
    let body = Body::open(stream)?;
    if body.status != 200 {
        return Err(format!("{} answered {}", w.path, body.status));
    }
    if let Some(c) = &w.connected {
        c.fetch_add(1, Ordering::SeqCst);
    }
    Ok((body.stream, body.decoder))
}

/// One subscriber's checks, fed with the bytes its socket yields (the same checks
/// for the thread-per-subscriber client and the one-thread client).
pub struct Checker {
    w: Watch,
    t0: Instant,
    seen: Seen,
    events: EventStreamDecoder,
    next_seq: Option<u64>,
    last_id: Option<u64>,
    carry: String,
    done: bool,
    /// A read error (one-thread client).
    failed: Option<String>,
}

impl Checker {
    fn new(w: &Watch, t0: Instant, decoder: ResponseDecoder) -> Checker {
        Checker {
            w: w.clone(),
            t0,
            seen: Seen::default(),
            events: EventStreamDecoder::new(decoder, Decoder::new()),
            next_seq: w.first_seq,
            last_id: w.last_event_id.as_deref().and_then(|s| s.parse().ok()),
            carry: String::new(),
            done: false,
            failed: None,
        }
    }

    /// Bytes read from the socket (`None`: end of stream).
    fn feed(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => self.events.handle_bytes(b),
            None => self.events.handle_eof(),
        }
    }

    /// Checks every event decoded so far; true when the stream is done (exit,
    /// end of body, or the first output event for `first_only`).
    fn check(&mut self) -> Result<bool, String> {
        let w = &self.w;
        let seen = &mut self.seen;
        loop {
            let ev = match self.events.poll_item() {
                Ok(Some(Item::Event(ev))) => ev,
                Ok(Some(_)) => continue,
                Ok(None) => break,
                // A slow reader's checks hold for what it read.
                Err(_) if w.stop.is_some() => {
                    self.done = true;
                    return Ok(true);
                }
                Err(e) => return Err(e.to_string()),
            };
            if w.consecutive_ids {
                let id: u64 = ev
                    .last_event_id
                    .parse()
                    .map_err(|_| format!("id {:?} is not a number", ev.last_event_id))?;
                if let Some(prev) = self.last_id {
                    if id != prev + 1 {
                        return Err(format!(
                            "{} event id {id} after {prev} (data {:.80})",
                            ev.event_type, ev.data
                        ));
                    }
                }
                self.last_id = Some(id);
            }
            match ev.event_type.as_str() {
                "stdout" | "stderr" | "message" => {}
                // The last event: stop here (a pub/sub peer keeps the stream open).
                "exit" => {
                    seen.exited = true;
                    break;
                }
                _ => continue,
            }
            let text = json_text(&ev.data)?;
            seen.events += 1;
            if seen.first_event.is_none() {
                seen.first_event = Some(self.t0.elapsed());
                if w.first_only {
                    self.done = true;
                    return Ok(true);
                }
            }
            self.carry.push_str(&text);
            let whole = self.carry.rfind('\n').map_or(0, |i| i + 1);
            let now = if w.latency { now_ns() } else { 0 };
            for line in self.carry[..whole].lines() {
                let seq: u64 = line
                    .get(..10)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("not a generator line: {line:?}"))?;
                match self.next_seq {
                    Some(want) if want != seq => {
                        return Err(format!("line {seq} where {want} was due"))
                    }
                    _ => self.next_seq = Some(seq + 1),
                }
                if w.latency {
                    let ts: u64 = line.get(11..30).and_then(|s| s.parse().ok()).unwrap_or(0);
                    seen.latencies.push(now.saturating_sub(ts));
                }
                seen.lines += 1;
            }
            self.carry.drain(..whole);
        }
        seen.bytes = self.events.response().body_len();
        self.done = seen.exited || self.events.response().is_complete();
        Ok(self.done)
    }

    /// The final checks once the stream is done.
    fn finish(self) -> Result<Seen, String> {
        let (w, seen) = (self.w, self.seen);
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
    let t0 = Instant::now();
    let (mut stream, decoder) = connect(addr, w)?;
    let stopped = || w.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut c = Checker::new(w, t0, decoder);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if stopped() {
            return Ok(c.seen);
        }
        if c.check()? {
            break;
        }
        let read = read_into(&mut stream, &mut buf, |bytes| c.feed(bytes));
        match read {
            Ok(()) => {}
            // A slow reader's 1 s read timeout: look at the stop flag again.
            Err(_) if w.stop.is_some() => continue,
            Err(e) => return Err(e),
        }
        if let Some(p) = w.read_pause {
            std::thread::sleep(p);
        }
    }
    c.finish()
}

/// The one-thread client: opens `n` streams (blocking, one after the other, each
/// counted in `w.connected` when its head has arrived), then reads them all from
/// this one thread: non-blocking sockets with default buffers, `poll(2)` for
/// readiness, 64 KiB reads, every event parsed and checked. A slow reader by
/// design, so the server's backpressure path is what is measured.
///
/// Returns one result per stream, in connection order.
pub fn watch_all(addr: SocketAddr, w: &Watch, n: usize) -> Vec<Result<Seen, String>> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut results: Vec<Option<Result<Seen, String>>> = (0..n).map(|_| None).collect();
    let mut live: Vec<(usize, TcpStream, Checker)> = Vec::with_capacity(n);
    for (i, slot) in results.iter_mut().enumerate() {
        let t0 = Instant::now();
        match connect(addr, w).and_then(|(s, d)| {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok((s, d))
        }) {
            Ok((s, d)) => live.push((i, s, Checker::new(w, t0, d))),
            Err(e) => *slot = Some(Err(e)),
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    while !live.is_empty() {
        // Events that came with the head, or a stream done: settle those first.
        let mut k = 0;
        while k < live.len() {
            let (i, _, c) = &mut live[k];
            let i = *i;
            match c.check() {
                Ok(false) => k += 1,
                Ok(true) => {
                    let (_, _, c) = live.swap_remove(k);
                    results[i] = Some(c.finish());
                }
                Err(e) => {
                    live.swap_remove(k);
                    results[i] = Some(Err(e));
                }
            }
        }
        if live.is_empty() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = live
            .iter()
            .map(|(_, s, _)| PollFd::new(s, PollFlags::IN))
            .collect();
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                for (i, _, _) in live.drain(..) {
                    results[i] = Some(Err("no bytes for 30 s".into()));
                }
                break;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                for (i, _, _) in live.drain(..) {
                    results[i] = Some(Err(format!("poll: {e}")));
                }
                break;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        for (k, (_, s, c)) in live.iter_mut().enumerate() {
            if !ready[k] {
                continue;
            }
            // One read per ready socket per round: the client drains no faster
            // than it parses, as a real one-thread reader would.
            match s.read(&mut buf) {
                Ok(0) => c.feed(None),
                Ok(m) => c.feed(Some(&buf[..m])),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => c.failed = Some(format!("read: {e}")),
            }
        }
        // Read errors: report them.
        let mut k = 0;
        while k < live.len() {
            if live[k].2.failed.is_some() {
                let (i, _, c) = live.swap_remove(k);
                results[i] = Some(Err(c.failed.unwrap_or_default()));
            } else {
                k += 1;
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

/// The `text` of a `{"text": …}` event.
fn json_text(data: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("event data is not JSON: {e}"))?;
    v.get("text")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "event data has no text".into())
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
