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

/// Subscribes and checks the stream; returns what was seen or the first violation.
///
/// # Errors
/// A connection problem, an unexpected status, an id or line out of order, a missing
/// line, or a stream that ended without `exit` (unless `first_only` or `stop`).
pub fn watch(addr: SocketAddr, w: &Watch) -> Result<Seen, String> {
    let t0 = Instant::now();
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
    let stopped = || w.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut seen = Seen::default();
    let (mut stream, decoder) = (body.stream, body.decoder);
    let mut events = EventStreamDecoder::new(decoder, Decoder::new());
    let mut buf = vec![0u8; 256 * 1024];
    let mut next_seq = w.first_seq;
    let mut last_id: Option<u64> = w.last_event_id.as_deref().and_then(|s| s.parse().ok());
    let mut carry = String::new();
    loop {
        if stopped() {
            return Ok(seen);
        }
        loop {
            let ev = match events.poll_item() {
                Ok(Some(Item::Event(ev))) => ev,
                Ok(Some(_)) => continue,
                Ok(None) => break,
                // A slow reader's checks hold for what it read.
                Err(_) if w.stop.is_some() => return Ok(seen),
                Err(e) => return Err(e.to_string()),
            };
            if w.consecutive_ids {
                let id: u64 = ev
                    .last_event_id
                    .parse()
                    .map_err(|_| format!("id {:?} is not a number", ev.last_event_id))?;
                if let Some(prev) = last_id {
                    if id != prev + 1 {
                        return Err(format!(
                            "{} event id {id} after {prev} (data {:.80})",
                            ev.event_type, ev.data
                        ));
                    }
                }
                last_id = Some(id);
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
                seen.first_event = Some(t0.elapsed());
                if w.first_only {
                    return Ok(seen);
                }
            }
            carry.push_str(&text);
            let whole = carry.rfind('\n').map_or(0, |i| i + 1);
            let now = if w.latency { now_ns() } else { 0 };
            for line in carry[..whole].lines() {
                let seq: u64 = line
                    .get(..10)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("not a generator line: {line:?}"))?;
                match next_seq {
                    Some(want) if want != seq => {
                        return Err(format!("line {seq} where {want} was due"))
                    }
                    _ => next_seq = Some(seq + 1),
                }
                if w.latency {
                    let ts: u64 = line.get(11..30).and_then(|s| s.parse().ok()).unwrap_or(0);
                    seen.latencies.push(now.saturating_sub(ts));
                }
                seen.lines += 1;
            }
            carry.drain(..whole);
        }
        seen.bytes = events.response().body_len();
        if seen.exited || events.response().is_complete() {
            break;
        }
        let read = read_into(&mut stream, &mut buf, |bytes| match bytes {
            Some(bytes) => events.handle_bytes(bytes),
            None => events.handle_eof(),
        });
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
