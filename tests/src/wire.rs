//! Bytes from a socket (or a byte slice, for [`crate::Response::parse`]) into the
//! core's response decoder (`spout_core::client`), with deadlines. The harness has
//! no HTTP parsing of its own: a harness with its own HTTP bugs would hide the
//! servers' bugs, or invent some.

use spout_core::client::{Head, Progress, ResponseDecoder, ResponseError};
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Something bytes come from: a socket (with read timeouts) or a byte slice.
pub(crate) trait Source: Read {
    /// Makes the next read give up at `deadline`.
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()>;
}

impl Source for TcpStream {
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        // A zero timeout means "block forever" to the OS, so never pass zero.
        let left = deadline.saturating_duration_since(Instant::now());
        self.set_read_timeout(Some(left.max(Duration::from_millis(1))))
    }
}

impl Source for &[u8] {
    fn set_deadline(&mut self, _deadline: Instant) -> io::Result<()> {
        Ok(())
    }
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// This many new bytes are in the buffer.
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// The deadline passed with nothing read.
    TimedOut,
}

/// A source plus the bytes read from it and not yet consumed.
pub(crate) struct Reader<S> {
    pub(crate) source: S,
    pub(crate) buf: Vec<u8>,
    /// The first bytes handed to a decoder, for error messages.
    seen: Vec<u8>,
}

impl<S: Source> Reader<S> {
    pub(crate) fn new(source: S) -> Reader<S> {
        Reader {
            source,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// One read into the buffer, bounded by `deadline`.
    pub(crate) fn fill(&mut self, deadline: Instant) -> io::Result<Fill> {
        if Instant::now() >= deadline {
            return Ok(Fill::TimedOut);
        }
        self.source.set_deadline(deadline)?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.source.read(&mut chunk) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(Fill::Data(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(Fill::TimedOut)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the buffered bytes into `decoder` (`Fill::Data(0)`), or when there are
    /// none, reads once and moves what came (or the end of the stream).
    fn feed(&mut self, decoder: &mut ResponseDecoder, deadline: Instant) -> io::Result<Fill> {
        let fill = if self.buf.is_empty() {
            self.fill(deadline)?
        } else {
            Fill::Data(0)
        };
        match fill {
            Fill::Data(_) => {
                let keep = self.buf.len().min(512 - self.seen.len().min(512));
                self.seen.extend_from_slice(&self.buf[..keep]);
                decoder.handle_bytes(&self.buf);
                self.buf.clear();
            }
            Fill::Eof => decoder.handle_eof(),
            Fill::TimedOut => {}
        }
        Ok(fill)
    }

    /// Reads until `decoder` has the final head (interim 1xx heads are skipped).
    ///
    /// # Errors
    /// As [`decode_error`], and `TimedOut` at `deadline`.
    pub(crate) fn read_head(
        &mut self,
        decoder: &mut ResponseDecoder,
        deadline: Instant,
    ) -> io::Result<Head> {
        loop {
            match decoder.poll_head() {
                Ok(Some(head)) => return Ok(head.clone()),
                Ok(None) => {}
                Err(e) => {
                    let err = decode_error(e, decoder, &[]);
                    let got = String::from_utf8_lossy(&self.seen);
                    let message = format!("{err}; the connection's first bytes: {got:?}");
                    return Err(io::Error::new(err.kind(), message));
                }
            }
            if self.feed(decoder, deadline)? == Fill::TimedOut {
                return Err(timed_out("the response head"));
            }
        }
    }

    /// Reads body bytes into `body` until some arrive, the body is complete, or
    /// `deadline` passes (then `Ok(Progress::Partial)` with nothing new).
    ///
    /// # Errors
    /// As [`decode_error`]; the bytes before the fault are in `body`.
    pub(crate) fn read_body(
        &mut self,
        decoder: &mut ResponseDecoder,
        body: &mut Vec<u8>,
        deadline: Instant,
    ) -> io::Result<Progress> {
        loop {
            let before = body.len();
            let progress = decoder
                .poll_body(body)
                .map_err(|e| decode_error(e, decoder, body))?;
            if body.len() > before || progress == Progress::Complete {
                return Ok(progress);
            }
            if self.feed(decoder, deadline)? == Fill::TimedOut {
                return Ok(Progress::Partial);
            }
        }
    }
}

/// The core's [`ResponseError`] as an `io::Error`: `UnexpectedEof` for a connection
/// that closed too early, `InvalidData` for bytes that are not a response; the
/// message shows the framing and the body so far.
pub(crate) fn decode_error(e: ResponseError, decoder: &ResponseDecoder, body: &[u8]) -> io::Error {
    let kind = match e {
        ResponseError::ClosedBeforeHead | ResponseError::Truncated => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    let message = match decoder.head() {
        None => e.to_string(),
        Some(head) => format!(
            "{e} (a {} response, {:?}, after {} body bytes: {:?})",
            head.status,
            decoder.framing(),
            body.len(),
            String::from_utf8_lossy(&body[body.len().saturating_sub(512)..])
        ),
    };
    io::Error::new(kind, message)
}

/// The first value of header `name` in `headers` (case-insensitive).
pub(crate) fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out waiting for {what}"),
    )
}
