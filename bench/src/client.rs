//! The load client: plain HTTP/1.1 over `std::net`, chunked bodies undone by hand,
//! SSE parsed by `spout_core::sse::Decoder`, and every line of every event checked
//! against the generator's sequence numbers (so "every event once and in order" is
//! checked by content, for every peer, whatever its event ids look like).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    let mut body = Body::open(s)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match body.read(&mut buf)? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok((body.status, String::from_utf8_lossy(&out).into_owned()))
}

/// A response body being read: the head parsed, chunked framing undone.
pub struct Body {
    stream: TcpStream,
    /// The response status.
    pub status: u16,
    raw: Vec<u8>,
    pos: usize,
    framing: Framing,
}

enum Framing {
    /// Bytes left in the current chunk; `None` when a size line is due next.
    Chunked(Option<usize>),
    /// A chunk's data has been read; its trailing CRLF is due.
    ChunkEnd,
    Length(u64),
    Close,
    Done,
}

impl Body {
    /// Reads the response head from `stream`.
    ///
    /// # Errors
    /// When the connection fails or the head is not HTTP/1.x.
    pub fn open(mut stream: TcpStream) -> Result<Body, String> {
        let mut raw = Vec::with_capacity(64 * 1024);
        let mut buf = [0u8; 8192];
        let end = loop {
            if let Some(i) = find(&raw, b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("read head: {e}"))?;
            if n == 0 {
                return Err("connection closed before the response head".into());
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let framing = if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            Framing::Chunked(None)
        } else if let Some(n) = header("content-length:").and_then(|v| v.parse().ok()) {
            Framing::Length(n)
        } else if status == 204 || status == 304 {
            Framing::Done
        } else {
            Framing::Close
        };
        Ok(Body {
            stream,
            status,
            raw,
            pos: end,
            framing,
        })
    }

    /// Reads body bytes into `out`; 0 at the end of the body.
    ///
    /// # Errors
    /// A read error or broken chunk framing.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, String> {
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Chunked(None) => {
                    if let Some(i) = find(&self.raw[self.pos..], b"\r\n") {
                        let line = String::from_utf8_lossy(&self.raw[self.pos..self.pos + i]);
                        let size = line.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(size, 16)
                            .map_err(|_| format!("bad chunk size {line:?}"))?;
                        self.pos += i + 2;
                        if size == 0 {
                            self.framing = Framing::Done;
                            return Ok(0);
                        }
                        self.framing = Framing::Chunked(Some(size));
                        continue;
                    }
                }
                Framing::Chunked(Some(left)) => {
                    let have = self.raw.len() - self.pos;
                    if have > 0 {
                        let n = left.min(have).min(out.len());
                        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
                        self.pos += n;
                        self.framing = if left == n {
                            Framing::ChunkEnd
                        } else {
                            Framing::Chunked(Some(left - n))
                        };
                        return Ok(n);
                    }
                }
                Framing::ChunkEnd => {}
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
                Framing::Length(left) => {
                    let have = self.raw.len() - self.pos;
                    if have > 0 {
                        let n = (left as usize).min(have).min(out.len());
                        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
                        self.pos += n;
                        self.framing = Framing::Length(left - n as u64);
                        return Ok(n);
                    }
                }
                Framing::Close => {
                    let have = self.raw.len() - self.pos;
                    if have > 0 {
                        let n = have.min(out.len());
                        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
                        self.pos += n;
                        return Ok(n);
                    }
                }
            }
            if let Framing::ChunkEnd = self.framing {
                if self.raw.len() - self.pos >= 2 {
                    self.pos += 2;
                    self.framing = Framing::Chunked(None);
                    continue;
                }
            }
            self.fill()?;
        }
    }

    /// Reads more from the socket into `raw`, dropping what was consumed.
    fn fill(&mut self) -> Result<(), String> {
        if self.pos > 0 {
            self.raw.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.raw.len();
        // 64 KiB a read: what a socket usually holds, and cheap to zero.
        self.raw.resize(len + 64 * 1024, 0);
        let n = loop {
            match self.stream.read(&mut self.raw[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.raw.truncate(len);
                return Err(format!("read: {e}"));
            }
        };
        self.raw.truncate(len + n);
        if n == 0 {
            if let Framing::Close = self.framing {
                self.framing = Framing::Done;
                return Ok(());
            }
            return Err("connection closed inside the body".into());
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
    let mut body = Body::open(stream)?;
    if body.status != 200 {
        return Err(format!("{} answered {}", w.path, body.status));
    }
    if let Some(c) = &w.connected {
        c.fetch_add(1, Ordering::SeqCst);
    }
    let stopped = || w.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut seen = Seen::default();
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut next_seq = w.first_seq;
    let mut last_id: Option<u64> = w.last_event_id.as_deref().and_then(|s| s.parse().ok());
    let mut carry = String::new();
    loop {
        if stopped() {
            return Ok(seen);
        }
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(_) if w.stop.is_some() => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        seen.bytes += n as u64;
        dec.feed(&buf[..n]);
        while let Some(item) = dec.poll() {
            let Item::Event(ev) = item else { continue };
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
        if seen.exited {
            break;
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
    let mut body = Body::open(s)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match body.read(&mut buf)? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok((body.status, String::from_utf8_lossy(&out).into_owned()))
}
