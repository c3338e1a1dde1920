//! HTTP/1.1 response framing shared by the client and the event stream: reading a
//! response head and de-framing a body (`Content-Length`, chunked, or until close),
//! incrementally, with deadlines. Heads, chunk sizes and trailers are parsed by
//! `httparse`.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest response head we accept; a bigger one is a server bug.
const MAX_HEAD: usize = 64 * 1024;
/// Header slots for `httparse`.
const MAX_HEADERS: usize = 64;

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
}

impl<S: Source> Reader<S> {
    pub(crate) fn new(source: S) -> Reader<S> {
        Reader {
            source,
            buf: Vec::new(),
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

    /// Reads one final (non-1xx) response head; interim 1xx heads are skipped.
    pub(crate) fn read_head(&mut self, deadline: Instant) -> io::Result<Head> {
        loop {
            let head = loop {
                if let Some((len, head)) = parse_head(&self.buf)? {
                    self.buf.drain(..len);
                    break head;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(invalid(format!(
                        "response head longer than {MAX_HEAD} bytes"
                    )));
                }
                match self.fill(deadline)? {
                    Fill::Data(_) => {}
                    Fill::Eof => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "connection closed before a complete response head; got {:?}",
                                String::from_utf8_lossy(&self.buf)
                            ),
                        ))
                    }
                    Fill::TimedOut => return Err(timed_out("the response head")),
                }
            };
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok(head);
        }
    }
}

/// A parsed response head.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// How the body that follows is delimited (RFC 9112 section 6.3).
    pub(crate) fn framing(&self, request_was_head: bool) -> io::Result<Framing> {
        if request_was_head || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            return Ok(Framing::Length(0));
        }
        let encodings: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if let Some(last) = encodings.last() {
            return if last.eq_ignore_ascii_case("chunked") {
                Ok(Framing::Chunked(Chunk::Size))
            } else {
                Ok(Framing::Close)
            };
        }
        let mut length = None;
        for (_, value) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|m| m != n) {
                return Err(invalid("conflicting Content-Length headers".into()));
            }
            length = Some(n);
        }
        Ok(length.map_or(Framing::Close, Framing::Length))
    }
}

/// The first value of header `name` in `headers` (case-insensitive).
pub(crate) fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, Head)>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            // invariant: a complete parse always sets the status code.
            let status = response.code.expect("httparse sets code on Complete");
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some((len, Head { status, headers })))
        }
        Err(e) => Err(invalid(format!(
            "bad response head ({e}): {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(512)])
        ))),
    }
}

/// Where a chunked body decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many data bytes to go.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the zero chunk, before the end of the trailer section.
    Trailers,
}

/// How a body is delimited, and how far decoding has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// `Content-Length`: this many bytes to go.
    Length(u64),
    /// Until the peer closes.
    Close,
    /// Complete: the zero chunk and trailers, or the last length byte, or the close.
    Done,
}

impl Framing {
    /// Whether the body is complete.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Framing::Done | Framing::Length(0))
    }

    /// Decodes as much of `input` as it can, appending body bytes to `out` and
    /// removing what it used from `input`.
    ///
    /// # Errors
    /// `InvalidData` for bad chunk framing.
    pub(crate) fn decode(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        let mut used = 0;
        let result = self.decode_slice(input, &mut used, out);
        input.drain(..used);
        result
    }

    fn decode_slice(
        &mut self,
        input: &[u8],
        used: &mut usize,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        loop {
            let rest = &input[*used..];
            match *self {
                Framing::Done => return Ok(()),
                Framing::Length(0) => {
                    *self = Framing::Done;
                    return Ok(());
                }
                Framing::Length(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..take]);
                    *used += take;
                    *self = Framing::Length(left - take as u64);
                    if take == rest.len() && left != take as u64 {
                        return Ok(());
                    }
                }
                Framing::Close => {
                    out.extend_from_slice(rest);
                    *used += rest.len();
                    return Ok(());
                }
                Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Partial) => return Ok(()),
                    Ok(httparse::Status::Complete((len, 0))) => {
                        *used += len;
                        *self = Framing::Chunked(Chunk::Trailers);
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        *used += len;
                        *self = Framing::Chunked(Chunk::Data(size));
                    }
                    Err(_) => {
                        return Err(invalid(format!(
                            "bad chunk size line: {:?}",
                            String::from_utf8_lossy(&rest[..rest.len().min(40)])
                        )))
                    }
                },
                Framing::Chunked(Chunk::Data(left)) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if take == 0 {
                        return Ok(());
                    }
                    out.extend_from_slice(&rest[..take]);
                    *used += take;
                    let left = left - take as u64;
                    *self = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(invalid("chunk data not followed by CRLF".into()));
                        }
                        return Ok(());
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(invalid(format!(
                            "chunk data not followed by CRLF but {:?}",
                            String::from_utf8_lossy(&rest[..2])
                        )));
                    }
                    *used += 2;
                    *self = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(rest, &mut slots) {
                        Ok(httparse::Status::Partial) => return Ok(()),
                        Ok(httparse::Status::Complete((len, _))) => {
                            *used += len;
                            *self = Framing::Done;
                        }
                        Err(e) => return Err(invalid(format!("bad chunked trailer section: {e}"))),
                    }
                }
            }
        }
    }

    /// Called when the peer closed: a close-delimited body is now complete; any other
    /// unfinished body was cut short.
    pub(crate) fn on_eof(&mut self) -> bool {
        if *self == Framing::Close {
            *self = Framing::Done;
        }
        self.is_done()
    }
}

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out waiting for {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes.
    fn dechunk(wire: &[u8], step: usize) -> (Framing, Vec<u8>) {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut input = Vec::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            input.extend_from_slice(piece);
            framing.decode(&mut input, &mut out).unwrap();
        }
        (framing, out)
    }

    #[test]
    fn chunked_body_decodes_in_any_piece_size() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: yes\r\n\r\n";
        for step in 1..wire.len() {
            let (framing, out) = dechunk(wire, step);
            assert_eq!(out, b"hello world!", "step {step}");
            assert_eq!(framing, Framing::Done, "step {step}");
        }
    }

    #[test]
    fn chunked_body_without_zero_chunk_is_not_done() {
        let (mut framing, out) = dechunk(b"3\r\nabc\r\n", 2);
        assert_eq!(out, b"abc");
        assert!(!framing.is_done());
        assert!(!framing.on_eof());
    }

    #[test]
    fn chunk_data_without_crlf_is_an_error() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut input = b"3\r\nabcXY".to_vec();
        let err = framing.decode(&mut input, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut input = b"zz\r\n".to_vec();
        assert!(framing.decode(&mut input, &mut Vec::new()).is_err());
    }

    #[test]
    fn length_body_stops_at_length() {
        let mut framing = Framing::Length(4);
        let mut input = b"abcdef".to_vec();
        let mut out = Vec::new();
        framing.decode(&mut input, &mut out).unwrap();
        assert_eq!(out, b"abcd");
        assert_eq!(input, b"ef");
        assert!(framing.is_done());
    }

    #[test]
    fn framing_follows_rfc_9112_order() {
        let head = |status, headers: &[(&str, &str)]| Head {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let te = head(
            200,
            &[
                ("Content-Length", "3"),
                ("transfer-encoding", "gzip, chunked"),
            ],
        );
        assert_eq!(te.framing(false).unwrap(), Framing::Chunked(Chunk::Size));
        assert_eq!(
            head(204, &[("Content-Length", "3")])
                .framing(false)
                .unwrap(),
            Framing::Length(0)
        );
        assert_eq!(
            head(200, &[("Content-Length", "3")]).framing(true).unwrap(),
            Framing::Length(0)
        );
        assert_eq!(head(200, &[]).framing(false).unwrap(), Framing::Close);
        assert!(
            head(200, &[("Content-Length", "3"), ("content-length", "4")])
                .framing(false)
                .is_err()
        );
    }

    #[test]
    fn interim_heads_are_skipped() {
        let wire: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /x\r\n\r\n";
        let mut reader = Reader::new(wire);
        let head = reader
            .read_head(Instant::now() + Duration::from_secs(1))
            .unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(header_in(&head.headers, "location"), Some("/x"));
    }
}
