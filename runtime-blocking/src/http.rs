//! HTTP/1.1 connection plumbing on a blocking `std::net::TcpStream`: reading
//! request heads (httparse) and bodies within size limits and deadlines, writing
//! bytes back within the write timeout, and noticing a client that left. The
//! blocking twin of `runtime-smol/src/http.rs`'s `Conn`, with the same API shape.
//!
//! It decides nothing about routes, statuses or headers: the core's `http` module
//! does. What it does is say precisely what went wrong ([`ReadError`]), so that
//! the core can choose the status (or to close without one).
//!
//! Deadlines are whole-message deadlines, not per-read ones: before each read the
//! socket's `SO_RCVTIMEO` is set to what is left until the deadline, so a client
//! trickling a byte a second is cut at the deadline, not kept alive by each byte.
//!
//! After any `Err` from [`Conn::read_head`] or [`Conn::read_body`] the request
//! framing is lost: answer if the error calls for it, then close the connection.

use rustix::io::Errno;
use rustix::net::RecvFlags;
use spout_core::http::{self as core_http, ApiError, ChunkedDecoder};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub use spout_core::http::BodyFraming;

/// How much one read asks the socket for (a stack buffer: connection threads
/// have 256 KiB stacks).
const READ_CHUNK: usize = 8 * 1024;

use spout_sys::head;
pub use spout_sys::head::{Head, Limits, ReadError};

/// One HTTP/1.1 connection: a socket plus the bytes read from it that no
/// request has consumed yet (the start of a pipelined next request).
pub struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed; always starts at a message boundary
    /// or inside the message being read.
    buf: Vec<u8>,
}

impl Conn {
    /// Wraps an accepted socket (blocking mode) and gives its writes the core's
    /// [`core_http::WRITE_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// The socket's error when the timeout cannot be set.
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_write_timeout(Some(core_http::WRITE_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Reads the next request head.
    ///
    /// Returns `Ok(None)` when the peer closed the connection before sending any
    /// byte of a new request (the normal end of a keep-alive connection); empty
    /// lines before a request line are ignored, as RFC 9112 §2.2 allows. Bytes
    /// after the head stay buffered for [`Conn::read_body`] or the next head.
    ///
    /// # Errors
    ///
    /// [`ReadError::Idle`] when no byte arrived within `idle_timeout`;
    /// [`ReadError::Timeout`] when the head did not complete within
    /// `head_timeout` of its first byte; [`ReadError::HeadTooLarge`],
    /// [`ReadError::TooManyHeaders`], [`ReadError::Malformed`] as httparse
    /// judges the bytes; [`ReadError::Closed`] on EOF inside a head;
    /// [`ReadError::Io`].
    pub fn read_head(&mut self, limits: &Limits) -> Result<Option<Head>, ReadError> {
        // Until a byte of the request arrives the connection is idle; from
        // then on one deadline covers the whole head, however it trickles in.
        let mut deadline = Instant::now() + limits.idle_timeout;
        let mut started = false;
        // Empty lines dropped before the request line; they count toward the limit.
        let mut skipped = 0;
        // Bytes left from an earlier read may already hold a whole head.
        let mut parse = true;
        loop {
            if !self.buf.is_empty() && !started {
                started = true;
                deadline = Instant::now() + limits.head_timeout;
            }
            // Dropping them here rather than letting httparse skip them again
            // on every parse keeps a flood of CRLFs from costing quadratic time.
            skipped += head::skip_empty_lines(&mut self.buf);
            if parse {
                if let Some(head) = head::parse_head(&mut self.buf, limits, skipped)? {
                    return Ok(Some(head));
                }
            }
            if skipped + self.buf.len() >= limits.max_head_bytes {
                return Err(ReadError::HeadTooLarge);
            }
            let n = match self.fill(deadline) {
                Err(ReadError::Timeout) if !started => return Err(ReadError::Idle),
                other => other?,
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Closed)
                };
            }
            // A head can only complete on a line end: re-parsing only when one
            // arrives bounds the parses by the number of lines, not of reads.
            parse = self.buf[self.buf.len() - n..].contains(&b'\n');
        }
    }

    /// Reads a request body framed as `framing`, keeping any bytes after it
    /// for the next request.
    ///
    /// Chunked bodies go through the core's `ChunkedDecoder`: chunk extensions are
    /// ignored, trailer fields read and discarded (all framing together within
    /// `spout_core::http::MAX_HEAD_BYTES`).
    ///
    /// # Errors
    ///
    /// [`ReadError::BodyTooLarge`] as soon as the body is known to exceed `max`
    /// (a `Length` over it is refused before reading anything);
    /// [`ReadError::Timeout`] when the whole body did not arrive within
    /// `timeout`; [`ReadError::BadChunk`] for broken chunk framing or too much of
    /// it; [`ReadError::Closed`] on EOF inside the body; [`ReadError::Io`].
    pub fn read_body(
        &mut self,
        framing: BodyFraming,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        match framing {
            BodyFraming::None => Ok(Vec::new()),
            BodyFraming::Length(len) => {
                if len > max {
                    return Err(ReadError::BodyTooLarge);
                }
                while self.buf.len() < len {
                    self.fill_some(deadline)?;
                }
                Ok(self.take(len))
            }
            BodyFraming::Chunked => self.read_chunked(max, deadline),
        }
    }

    /// Writes all of `bytes`. The whole write must finish within
    /// [`core_http::WRITE_TIMEOUT`], so a client that stops reading is dropped
    /// rather than holding its thread forever.
    ///
    /// # Errors
    ///
    /// The socket's error, e.g. when the peer has gone or the time ran out.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        // The socket's send timeout is WRITE_TIMEOUT (set in `new`): a write the
        // kernel takes whole in one call (every write, while the client reads)
        // costs one system call. Only a partial write switches to a deadline for
        // the rest, then puts the timeout back.
        let mut written = write_some(&self.stream, bytes)?;
        if written == bytes.len() {
            return Ok(());
        }
        let deadline = Instant::now() + core_http::WRITE_TIMEOUT;
        let result = loop {
            if written == bytes.len() {
                break Ok(());
            }
            let left = match remaining(deadline) {
                Some(left) => left,
                None => break Err(io::ErrorKind::TimedOut.into()),
            };
            if let Err(e) = self.stream.set_write_timeout(Some(left)) {
                break Err(e);
            }
            match write_some(&self.stream, &bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if is_timeout(&e) => {}
                Err(e) => break Err(e),
            }
        };
        self.stream
            .set_write_timeout(Some(core_http::WRITE_TIMEOUT))?;
        result
    }

    /// Tells a client that sent `Expect: 100-continue` to go on with its body.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn send_continue(&mut self) -> io::Result<()> {
        self.write_all(core_http::CONTINUE)
    }

    /// Whether the client has closed its side (or reset the connection), without
    /// waiting. Bytes it sent meanwhile are read and dropped: during a stream
    /// nothing a client sends is a request. Used between a stream's waits, where
    /// no read is pending (a thread cannot wait on the job and the socket at once).
    pub fn peer_gone(&mut self) -> bool {
        let mut scratch = [0u8; 512];
        // A bound, so that a client sending without pause cannot keep us here.
        for _ in 0..64 {
            match rustix::net::recv(&self.stream, &mut scratch[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => return true,
                Ok(_) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return false,
                Err(_) => return true,
            }
        }
        false
    }

    /// A chunked body, de-chunked by the core's decoder (the one de-chunker of
    /// request bodies; strict about CRLF, trailers read and ignored).
    fn read_chunked(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut decoder = ChunkedDecoder::new(max);
        let mut body = Vec::new();
        loop {
            let used = decoder.decode(&self.buf, &mut body).map_err(|e| match e {
                ApiError::BodyTooLarge(_) => ReadError::BodyTooLarge,
                _ => ReadError::BadChunk,
            })?;
            self.buf.drain(..used);
            if decoder.is_done() {
                return Ok(body);
            }
            self.fill_some(deadline)?;
        }
    }

    /// Removes and returns the first `len` buffered bytes.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let rest = self.buf.split_off(len);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads at least one byte; EOF here is inside a message.
    fn fill_some(&mut self, deadline: Instant) -> Result<(), ReadError> {
        match self.fill(deadline)? {
            0 => Err(ReadError::Closed),
            _ => Ok(()),
        }
    }

    /// One read into the buffer, ending at `deadline` at the latest; returns the
    /// byte count (0 at EOF).
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            // What is left of the deadline, not a fresh timeout per read.
            let left = remaining(deadline).ok_or(ReadError::Timeout)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(ReadError::Io)?;
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                // Timed out (or woken early): the loop looks at the deadline again.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Time left until `deadline`; `None` once it has passed (a zero timeout would
/// mean "no timeout" to the socket).
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// How a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`) shows up in std.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One `write`, retried on `EINTR`; an error for a socket that takes nothing.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(bytes) {
            Ok(0) if !bytes.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const GET: &[u8] = b"GET /jobs?x=1 HTTP/1.1\r\nHost: a\r\nX-Two: b c\r\n\r\n";

    fn get_head() -> Head {
        Head {
            method: "GET".into(),
            target: "/jobs?x=1".into(),
            version: 1,
            headers: vec![
                ("Host".into(), b"a".to_vec()),
                ("X-Two".into(), b"b c".to_vec()),
            ],
        }
    }

    /// Short deadlines, so that a test of a timeout ends soon.
    fn quick() -> Limits {
        Limits {
            head_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    /// A connected pair over loopback: the client side, and the server's `Conn`.
    fn pair() -> (TcpStream, Conn) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nodelay(true).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (client, Conn::new(accepted).unwrap())
    }

    /// A `Conn` that reads `pieces` (written one by one, a little apart, so that
    /// they tend to arrive in separate reads), then EOF.
    fn scripted(pieces: &[&[u8]]) -> Conn {
        let (mut client, conn) = pair();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        std::thread::spawn(move || {
            for p in pieces {
                client.write_all(&p).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        conn
    }

    #[test]
    fn head_then_clean_end() {
        let mut c = scripted(&[GET]);
        assert_eq!(c.read_head(&quick()).unwrap(), Some(get_head()));
        assert!(matches!(c.read_head(&quick()), Ok(None)));
    }

    #[test]
    fn head_split_and_pipelined() {
        let two = [GET, b"DELETE /jobs/x HTTP/1.0\r\n\r\n"].concat();
        for at in [1, 5, 20, GET.len() - 1, GET.len() + 3] {
            let mut c = scripted(&[&two[..at], &two[at..]]);
            assert_eq!(c.read_head(&quick()).unwrap(), Some(get_head()), "at {at}");
            let second = c.read_head(&quick()).unwrap().unwrap();
            assert_eq!((second.method.as_str(), second.version), ("DELETE", 0));
            assert!(matches!(c.read_head(&quick()), Ok(None)));
        }
    }

    #[test]
    fn leading_empty_lines_are_ignored() {
        let mut c = scripted(&[b"\r\n\n\r\n", GET]);
        assert_eq!(c.read_head(&quick()).unwrap(), Some(get_head()));
        let mut c = scripted(&[b"\r\n"]);
        assert!(matches!(c.read_head(&quick()), Ok(None)));
    }

    #[test]
    fn head_limits() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
            ..quick()
        };
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let mut c = scripted(&[big.as_bytes()]);
        assert!(matches!(c.read_head(&limits), Err(ReadError::HeadTooLarge)));
        // Never complete, yet refused at the size, not at the deadline.
        let (mut client, mut c) = pair();
        client.write_all(&big.as_bytes()[..80]).unwrap();
        assert!(matches!(c.read_head(&limits), Err(ReadError::HeadTooLarge)));
        let mut c = scripted(&[b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"]);
        assert!(matches!(
            c.read_head(&limits),
            Err(ReadError::TooManyHeaders)
        ));
    }

    #[test]
    fn malformed_heads() {
        let rows: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", "invalid header value"),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "invalid header value"),
            (b"GET / HTTP/2.0\r\n\r\n", "invalid HTTP version"),
            (b"G(T / HTTP/1.1\r\n\r\n", "invalid token"),
        ];
        for (bytes, want) in rows {
            let mut c = scripted(&[bytes]);
            match c.read_head(&quick()) {
                Err(ReadError::Malformed(got)) => assert_eq!(&got, want),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn silent_connection_is_idle_and_stalled_head_times_out() {
        let (_client, mut c) = pair();
        assert!(matches!(c.read_head(&quick()), Err(ReadError::Idle)));
        let (mut client, mut c) = pair();
        client.write_all(b"GET / HTTP/1.1\r\nHost").unwrap();
        assert!(matches!(c.read_head(&quick()), Err(ReadError::Timeout)));
        let mut c = scripted(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]);
        assert!(matches!(c.read_head(&quick()), Err(ReadError::Closed)));
    }

    #[test]
    fn a_trickled_head_is_cut_at_the_deadline_not_reset_by_each_byte() {
        let (mut client, mut c) = pair();
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        // A byte every 20 ms for 30 s, then a close. A deadline reset by each byte
        // would end in `Closed` when the trickle stops; only a deadline over the
        // whole head ends it in `Timeout`.
        let trickle = std::thread::spawn(move || {
            for &b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle().take(1500) {
                if client.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert!(matches!(c.read_head(&limits), Err(ReadError::Timeout)));
        drop(c);
        trickle.join().unwrap();
    }

    #[test]
    fn bodies_by_length_and_chunked() {
        let post = b"POST /jobs HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
        let chunked = b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
        let mut c = scripted(&[&post[..30], &post[30..], chunked, GET]);
        c.read_head(&quick()).unwrap().unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(
            c.read_body(BodyFraming::Length(11), 64, t).unwrap(),
            b"hello world"
        );
        assert_eq!(
            c.read_body(BodyFraming::Chunked, 64, t).unwrap(),
            b"Wikipedia"
        );
        assert!(c.read_body(BodyFraming::None, 64, t).unwrap().is_empty());
        assert_eq!(c.read_head(&quick()).unwrap(), Some(get_head()));
    }

    #[test]
    fn body_errors() {
        let t = Duration::from_millis(300);
        // Over the limit: refused before reading (the client sends nothing).
        let (_client, mut c) = pair();
        assert!(matches!(
            c.read_body(BodyFraming::Length(65), 64, t),
            Err(ReadError::BodyTooLarge)
        ));
        let (mut client, mut c) = pair();
        client.write_all(b"3\r\nabc\r\n2\r\n").unwrap();
        assert!(matches!(
            c.read_body(BodyFraming::Chunked, 4, t),
            Err(ReadError::BodyTooLarge)
        ));
        let mut c = scripted(&[b"zz\r\n"]);
        assert!(matches!(
            c.read_body(BodyFraming::Chunked, 64, t),
            Err(ReadError::BadChunk)
        ));
        let mut c = scripted(&[b"hello"]);
        assert!(matches!(
            c.read_body(BodyFraming::Length(11), 64, t),
            Err(ReadError::Closed)
        ));
        let (mut client, mut c) = pair();
        client.write_all(b"hello").unwrap();
        assert!(matches!(
            c.read_body(BodyFraming::Length(11), 64, t),
            Err(ReadError::Timeout)
        ));
    }

    #[test]
    fn writes_continue_and_peer_gone() {
        let (mut client, mut c) = pair();
        c.send_continue().unwrap();
        c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        let want = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut got = vec![0; want.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        // Bytes sent during a stream are dropped; only the close counts.
        client.write_all(b"ignored").unwrap();
        assert!(!c.peer_gone());
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.peer_gone() {
            assert!(Instant::now() < deadline, "the close was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
