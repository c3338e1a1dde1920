//! The load client's parsers, written for speed: the end of a response head, the
//! body's framing undone in place (chunked, length, close), SSE lines and fields as
//! `EventSource` reads them, the `{"text": …}` data of an output event, and the
//! generator's lines checked byte for byte. They work on the read buffer's slices
//! with `memchr` and allocate nothing per event: a client that parses every event
//! of 100 subscribers on one thread must not be the slowest process in the test.
//!
//! The SSE parser follows the same rules as `spout_core::sse::Decoder` (the tests
//! compare the two on the same input cut at every point), except that it leaves the
//! data as bytes: the checks that follow compare them byte for byte.

use memchr::{memchr, memchr2};

/// Where a response head ends: the index just past its blank line (`\r\n\r\n` or a
/// bare `\n\n`), once it is in `buf`.
#[must_use]
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr(b'\n', &buf[from..]) {
        let at = from + i + 1;
        match buf.get(at) {
            Some(b'\n') => return Some(at + 1),
            Some(b'\r') if buf.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            _ => from = at,
        }
    }
    None
}

/// How the body is delimited, from the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// In a size line: the size so far, whether a digit came, whether past a `;`.
    Size { size: u64, digits: bool, ext: bool },
    /// In a chunk's data: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF (whether the CR came).
    DataEnd { cr: bool },
    /// After the last chunk: trailer lines; `empty` while the line has no byte yet.
    Trailer { empty: bool },
}

/// A body being read: its framing undone on the bytes as they come, handing out
/// slices of the input (no copy).
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    chunk: Chunk,
    done: bool,
    len: u64,
}

impl Body {
    /// A body with this framing.
    #[must_use]
    pub fn new(framing: Framing) -> Body {
        Body {
            framing,
            chunk: Chunk::Size {
                size: 0,
                digits: false,
                ext: false,
            },
            done: framing == Framing::Length(0),
            len: 0,
        }
    }

    /// Body bytes handed out so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body has ended as framed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Undoes the framing of `input` (the next bytes of the connection; `None`: it
    /// ended), handing each piece of body to `out`. Bytes after the end are ignored.
    ///
    /// # Errors
    /// Broken chunk framing, a body cut short, or an error of `out`.
    pub fn feed(
        &mut self,
        input: Option<&[u8]>,
        out: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(mut input) = input else {
            if self.done {
                return Ok(());
            }
            if self.framing == Framing::Close {
                self.done = true;
                return Ok(());
            }
            return Err("the body was cut short".into());
        };
        while !input.is_empty() && !self.done {
            let take = match (self.framing, self.chunk) {
                (Framing::Close, _) => input.len(),
                (Framing::Length(left), _) => {
                    let take = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                    self.framing = Framing::Length(left - take as u64);
                    self.done = left == take as u64;
                    take
                }
                (Framing::Chunked, Chunk::Data(left)) => {
                    let take = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd { cr: false }
                    } else {
                        Chunk::Data(left)
                    };
                    take
                }
                (Framing::Chunked, _) => {
                    self.chunk_byte(input[0])?;
                    input = &input[1..];
                    continue;
                }
            };
            let (piece, rest) = input.split_at(take);
            self.len += take as u64;
            out(piece)?;
            input = rest;
        }
        Ok(())
    }

    /// One byte of chunk framing (size lines, CRLFs, trailers).
    fn chunk_byte(&mut self, b: u8) -> Result<(), String> {
        self.chunk = match self.chunk {
            Chunk::Size { size, digits, ext } => match b {
                b'\n' if !digits => return Err("a chunk size line without a size".into()),
                b'\n' if size == 0 => Chunk::Trailer { empty: true },
                b'\n' => Chunk::Data(size),
                b'\r' => Chunk::Size { size, digits, ext },
                _ if ext => Chunk::Size { size, digits, ext },
                b';' | b' ' | b'\t' => Chunk::Size {
                    size,
                    digits,
                    ext: true,
                },
                _ => {
                    let d = (b as char)
                        .to_digit(16)
                        .ok_or_else(|| format!("chunk size byte {b:#04x}"))?;
                    let size = size
                        .checked_mul(16)
                        .map(|s| s + u64::from(d))
                        .ok_or("chunk size overflows")?;
                    Chunk::Size {
                        size,
                        digits: true,
                        ext,
                    }
                }
            },
            Chunk::DataEnd { cr: false } if b == b'\r' => Chunk::DataEnd { cr: true },
            Chunk::DataEnd { .. } if b == b'\n' => Chunk::Size {
                size: 0,
                digits: false,
                ext: false,
            },
            Chunk::DataEnd { .. } => return Err("no CRLF after a chunk's data".into()),
            Chunk::Trailer { empty } => match b {
                b'\n' if empty => {
                    self.done = true;
                    Chunk::Trailer { empty }
                }
                b'\n' => Chunk::Trailer { empty: true },
                b'\r' => Chunk::Trailer { empty },
                _ => Chunk::Trailer { empty: false },
            },
            // invariant: data is taken in `feed`, never a byte at a time.
            Chunk::Data(_) => unreachable!("chunk data is taken whole"),
        };
        Ok(())
    }
}

/// One dispatched SSE event, borrowed from the parser.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event` field (`message` when absent or empty).
    pub event_type: &'a [u8],
    /// The data lines joined by LF.
    pub data: &'a [u8],
    /// The last event id as of this event (ids persist across events).
    pub last_event_id: &'a [u8],
}

/// An SSE stream parser: lines end with CR, LF or CRLF; `data`, `event`, `id`
/// fields; comments and `retry` ignored; an event is dispatched at a blank line when
/// its data is not empty; a leading BOM is dropped.
#[derive(Debug, Default)]
pub struct Sse {
    /// A line that spans reads.
    line: Vec<u8>,
    /// The previous piece ended with CR: an LF first in the next one ends nothing.
    after_cr: bool,
    started: bool,
    data: Vec<u8>,
    event_type: Vec<u8>,
    /// The `id` field of the block being read, and the one of the last block ended.
    id: Vec<u8>,
    last_id: Vec<u8>,
}

impl Sse {
    /// A parser at the start of a stream.
    #[must_use]
    pub fn new() -> Sse {
        Sse::default()
    }

    /// Parses the next body bytes, handing every event they complete to `on_event`.
    ///
    /// # Errors
    /// The first error of `on_event` (the rest of `bytes` is then not parsed).
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut impl FnMut(Event<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.started && !bytes.is_empty() {
            // The BOM is three bytes; one cut inside it is not worth handling here.
            self.started = true;
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            bytes = bytes.strip_prefix(b"\n").unwrap_or(bytes);
        }
        while let Some(end) = memchr2(b'\n', b'\r', bytes) {
            // The usual end of an event: its only `data` line then a blank line.
            // Dispatched from where the line is, without copying it into `data`: from
            // the input, or from `line` when the previous input cut it.
            if self.data.is_empty() && bytes[end] == b'\n' && bytes.get(end + 1) == Some(&b'\n') {
                if self.line.is_empty() {
                    if let Some(value) = data_value(&bytes[..end]) {
                        self.dispatch(Some(value), on_event)?;
                        bytes = &bytes[end + 2..];
                        continue;
                    }
                } else if self.line.starts_with(b"data:") {
                    self.line.extend_from_slice(&bytes[..end]);
                    let line = std::mem::take(&mut self.line);
                    let r = self.dispatch(data_value(&line), on_event);
                    self.line = line;
                    self.line.clear();
                    r?;
                    bytes = &bytes[end + 2..];
                    continue;
                }
            }
            if self.line.is_empty() {
                self.line_ended(&bytes[..end], on_event)?;
            } else {
                self.line.extend_from_slice(&bytes[..end]);
                let line = std::mem::take(&mut self.line);
                let r = self.line_ended(&line, on_event);
                self.line = line;
                self.line.clear();
                r?;
            }
            bytes = match (bytes[end], bytes.get(end + 1)) {
                (b'\r', Some(b'\n')) => &bytes[end + 2..],
                (b'\r', None) => {
                    self.after_cr = true;
                    &[]
                }
                _ => &bytes[end + 1..],
            };
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// One whole line, without its end.
    fn line_ended(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(Event<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        if line.is_empty() {
            return self.dispatch(None, on_event);
        }
        let (name, value) = match memchr(b':', line) {
            Some(0) => return Ok(()),
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"id" if memchr(0, value).is_none() => {
                self.id.clear();
                self.id.extend_from_slice(value);
            }
            _ => {}
        }
        Ok(())
    }

    /// A blank line: the block ends. `data`: the block's only data line, when it is
    /// taken from the input rather than from `self.data`.
    fn dispatch(
        &mut self,
        data: Option<&[u8]>,
        on_event: &mut impl FnMut(Event<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.last_id.clone_from(&self.id);
        let data = match data {
            Some(d) => Some(d),
            // No data line at all: nothing is dispatched.
            None if self.data.is_empty() => None,
            None => {
                self.data.pop(); // the last data line's LF
                Some(&self.data[..])
            }
        };
        let r = match data {
            None => Ok(()),
            Some(data) => on_event(Event {
                event_type: if self.event_type.is_empty() {
                    b"message"
                } else {
                    &self.event_type
                },
                data,
                last_event_id: &self.last_id,
            }),
        };
        self.data.clear();
        self.event_type.clear();
        r
    }
}

/// The value of a `data` field line (`None` for another line).
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Where the string of a `{"text": "…"}` event's data starts (just past its opening
/// quote): the usual shape, walked in place by [`text_piece`]. `None` for any other
/// shape, which [`json_text`] reads.
#[must_use]
pub fn text_start(data: &[u8]) -> Option<usize> {
    let rest = skip_ws(data).strip_prefix(b"{")?;
    let rest = skip_ws(rest).strip_prefix(b"\"text\"")?;
    let rest = skip_ws(rest).strip_prefix(b":")?;
    let rest = skip_ws(rest).strip_prefix(b"\"")?;
    Some(data.len() - rest.len())
}

/// One step of the JSON string that [`text_start`] found, from `data[at..]`: the
/// plain bytes run to `end`, then come an escape, whose character is given, or the
/// closing quote (`0`); the walk goes on at `next`. After the closing quote, what
/// follows must pass [`text_end`].
///
/// Raw control characters (which JSON does not allow in a string) are not looked
/// for: the generator lines are checked byte for byte afterwards, and they hold none.
///
/// Returns `None` for what this path does not take (`\u` escapes: serde_json decodes
/// them) or JSON does not allow (an unknown escape, no closing quote).
#[must_use]
pub fn text_piece(data: &[u8], at: usize) -> Option<(usize, u8, usize)> {
    let i = at + memchr2(b'"', b'\\', data.get(at..)?)?;
    if data[i] == b'"' {
        return Some((i, 0, i + 1));
    }
    let c = match data.get(i + 1)? {
        b'n' => b'\n',
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b't' => b'\t',
        b'r' => b'\r',
        b'b' => 8,
        b'f' => 12,
        _ => return None,
    };
    Some((i, c, i + 2))
}

/// Whether `rest`, what follows the text's closing quote, ends the object.
#[must_use]
pub fn text_end(rest: &[u8]) -> bool {
    skip_ws(rest)
        .strip_prefix(b"}")
        .is_some_and(|r| skip_ws(r).is_empty())
}

/// The text of a `{"text": "…"}` event, unescaped by the walk of [`text_piece`]
/// (`None` where that walk does not take the data).
#[must_use]
pub fn text_whole(data: &[u8]) -> Option<Vec<u8>> {
    let mut at = text_start(data)?;
    let mut out = Vec::with_capacity(data.len());
    loop {
        let (end, c, next) = text_piece(data, at)?;
        out.extend_from_slice(&data[at..end]);
        if c == 0 {
            return text_end(&data[next..]).then_some(out);
        }
        out.push(c);
        at = next;
    }
}

/// The `text` of event data of any other shape than [`text_start`] takes, by
/// serde_json.
///
/// # Errors
/// When the data is not a JSON object with a string `text`.
pub fn json_text(data: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("event data is not JSON: {e}"))?;
    let text = v
        .get("text")
        .and_then(|t| t.as_str())
        .ok_or("event data has no text")?;
    Ok(text.to_owned())
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

/// The generator's line length, LF included (`bench/src/bin/gen.rs`).
pub const LINE: usize = 100;

/// The generator's line, byte by byte, as ranges `LOW[i] ..= LOW[i] + SPAN[i]`:
/// ten digits, a space, nineteen digits, a space, then `x` to the end.
const LOW: [u8; LINE - 1] = template().0;
const SPAN: [u8; LINE - 1] = template().1;

const fn template() -> ([u8; LINE - 1], [u8; LINE - 1]) {
    let (mut low, mut span) = ([b'x'; LINE - 1], [0; LINE - 1]);
    let mut i = 0;
    while i < 31 {
        (low[i], span[i]) = if i == 10 || i == 30 {
            (b' ', 0)
        } else {
            (b'0', 9)
        };
        i += 1;
    }
    (low, span)
}

/// One generator line, LF excluded: `SSSSSSSSSS TTTTTTTTTTTTTTTTTTT ` then `x` to 99
/// bytes. Returns its sequence number, and its timestamp in ns when `want_ts` (else
/// 0: its digits are checked, not read).
///
/// # Errors
/// When the line is anything else.
pub fn gen_line(line: &[u8], want_ts: bool) -> Result<(u64, u64), String> {
    gen_fields(line, want_ts).ok_or_else(|| {
        format!(
            "not a generator line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        )
    })
}

/// [`gen_line`] without the error message: `None` when `line` is not a generator
/// line. Every byte is checked against the template in one pass with no early exit
/// (it vectorizes), then the digits are read.
#[must_use]
pub fn gen_fields(line: &[u8], want_ts: bool) -> Option<(u64, u64)> {
    let line: &[u8; LINE - 1] = line.try_into().ok()?;
    let mut bad = 0u8;
    for i in 0..LINE - 1 {
        bad |= u8::from(line[i].wrapping_sub(LOW[i]) > SPAN[i]);
    }
    if bad != 0 {
        return None;
    }
    let ts = if want_ts { number(&line[11..30]) } else { 0 };
    let mut high = [0; 8];
    high.copy_from_slice(&line[..8]);
    Some((eight_digits(high) * 100 + number(&line[8..10]), ts))
}

/// The number eight ASCII digits spell (checked by the caller), read as one
/// 64-bit word: pairs of digits, then fours, then all eight, each step a mask, a
/// multiply and an add, not a chain of eight.
fn eight_digits(s: [u8; 8]) -> u64 {
    let w = u64::from_le_bytes(s);
    let w = ((w & 0x0f00_0f00_0f00_0f00) >> 8) + (w & 0x000f_000f_000f_000f) * 10;
    let w = ((w & 0x00ff_0000_00ff_0000) >> 16) + (w & 0x0000_00ff_0000_00ff) * 100;
    ((w & 0x0000_ffff_0000_0000) >> 32) + (w & 0x0000_0000_0000_ffff) * 10_000
}

/// The number the ASCII digits of `s` spell (checked by the caller).
fn number(s: &[u8]) -> u64 {
    s.iter()
        .fold(0u64, |n, &c| n.wrapping_mul(10) + u64::from(c - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spout_core::sse::{Decoder, Item};

    /// Every event the parser dispatches for `input` fed in pieces at `cuts`.
    fn parse(input: &[u8], cuts: &[usize]) -> Vec<(String, String, String)> {
        let mut sse = Sse::new();
        let mut got = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain([&input.len()]) {
            let c = c.clamp(at, input.len());
            sse.feed(&input[at..c], &mut |e: Event<'_>| {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                got.push((s(e.event_type), s(e.data), s(e.last_event_id)));
                Ok(())
            })
            .unwrap();
            at = c;
        }
        got
    }

    /// What spout's own decoder (the CLI's and the tests') makes of the same input.
    fn reference(input: &[u8]) -> Vec<(String, String, String)> {
        let mut d = Decoder::new();
        d.feed(input);
        std::iter::from_fn(|| d.poll())
            .filter_map(|i| match i {
                Item::Event(e) => Some((e.event_type, e.data, e.last_event_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sse_matches_the_core_decoder_at_every_cut() {
        let inputs: [&[u8]; 7] = [
            b"data:\n\nevent: e\ndata:\n\ndata: \n\nevent: none\n\ndata: d\n\n",
            b"retry: 1000\n\nid: 1\nevent: start\ndata: {}\n\n: heartbeat\n\nid: 2\nevent: stdout\ndata: {\"text\":\"a\\n\"}\n\n",
            b"data: one\r\ndata: two\r\n\r\ndata:three\rid: 7\r\revent\ndata\n\n",
            b"data: bom\n\nid: 5\n\nid: 6\ndata: x\n\nid\ndata: y\n\n",
            b"event: a\n\ndata: b\nevent:\n\n:comment\ndata:  two spaces\nbogus: 1\n\n",
            b"id: a\0b\ndata: nul id ignored\n\ndata: no end",
            b"data: a\r\n\r\ndata: b\r\r\ndata: c\n\r\n",
        ];
        // A BOM is dropped when it comes whole (not cut: no server here sends one).
        let bom = b"\xEF\xBB\xBFdata: bom\n\n";
        assert_eq!(parse(bom, &[]), reference(bom));
        for input in inputs {
            let want = reference(input);
            assert_eq!(parse(input, &[]), want, "{input:?} whole");
            for cut in 0..=input.len() {
                for cut2 in cut..=input.len().min(cut + 3) {
                    assert_eq!(
                        parse(input, &[cut, cut2]),
                        want,
                        "{input:?} cut at {cut}, {cut2}"
                    );
                }
            }
        }
    }

    fn dechunk(input: &[u8], framing: Framing, step: usize) -> Result<(Vec<u8>, bool), String> {
        let mut body = Body::new(framing);
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            body.feed(Some(piece), &mut |b: &[u8]| {
                out.extend_from_slice(b);
                Ok(())
            })?;
        }
        Ok((out, body.is_complete()))
    }

    #[test]
    fn chunked_bodies_at_every_step() {
        let input = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nafter";
        for step in 1..input.len() {
            let (out, done) = dechunk(input, Framing::Chunked, step).unwrap();
            assert_eq!(out, b"hello 0123456789", "step {step}");
            assert!(done, "step {step}");
        }
        let (out, done) = dechunk(b"3\r\nab", Framing::Chunked, 2).unwrap();
        assert_eq!((out.as_slice(), done), (&b"ab"[..], false));
        assert!(dechunk(b"3\r\nabcX", Framing::Chunked, 7).is_err());
        assert!(dechunk(b"zz\r\n", Framing::Chunked, 7).is_err());
        assert!(dechunk(b"\r\n", Framing::Chunked, 7).is_err());
    }

    #[test]
    fn length_close_and_eof() {
        let (out, done) = dechunk(b"abcdef", Framing::Length(4), 3).unwrap();
        assert_eq!((out.as_slice(), done), (&b"abcd"[..], true));
        let mut body = Body::new(Framing::Close);
        body.feed(Some(b"ab"), &mut |_| Ok(())).unwrap();
        body.feed(None, &mut |_| Ok(())).unwrap();
        assert!(body.is_complete());
        assert_eq!(body.len(), 2);
        let mut body = Body::new(Framing::Chunked);
        body.feed(Some(b"2\r\na"), &mut |_| Ok(())).unwrap();
        assert!(body.feed(None, &mut |_| Ok(())).is_err());
    }

    #[test]
    fn head_ends() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"), Some(25));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\nA: b\n\nbody"), Some(22));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
    }

    /// The text of event data, whichever path it takes: walked in place when
    /// `text_start` takes it and every step does, else by serde_json.
    fn text_of(data: &[u8]) -> Result<(String, bool), String> {
        match text_whole(data) {
            Some(out) => Ok((String::from_utf8(out).unwrap(), true)),
            None => Ok((json_text(data)?, false)),
        }
    }

    #[test]
    fn json_text_fast_path_and_fallback() {
        for (data, want, fast) in [
            (
                &br#"{"text":"a\nb\"c\\d\/e\tf\r\b\f"}"#[..],
                "a\nb\"c\\d/e\tf\r\u{8}\u{c}",
                true,
            ),
            (br#" { "text" : "plain" } "#, "plain", true),
            (br#"{"text":""}"#, "", true),
            (br#"{"text":"\u0078\ud83d\ude00"}"#, "x\u{1F600}", false),
            (
                br#"{"stream":"stdout","text":"other key first"}"#,
                "other key first",
                false,
            ),
            (br#"{"text":"a","then":"another key"}"#, "a", false),
        ] {
            assert_eq!(
                text_of(data),
                Ok((want.to_owned(), fast)),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
        for bad in [
            &br#"{"text":1}"#[..],
            br#"{"text":"a"#,
            br#"{"text":"\x"}"#,
            b"nope",
        ] {
            assert!(text_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generator_lines_are_checked_exactly() {
        let mut l = format!("{:010} {:019} ", 42, 7).into_bytes();
        l.resize(LINE - 1, b'x');
        assert_eq!(gen_line(&l, true), Ok((42, 7)));
        assert_eq!(gen_line(&l, false), Ok((42, 0)));
        for seq in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345_678,
            1_234_567_890,
            9_999_999_999,
        ] {
            let mut l = format!("{seq:010} {:019} ", u64::MAX / 2).into_bytes();
            l.resize(LINE - 1, b'x');
            assert_eq!(gen_line(&l, true), Ok((seq, u64::MAX / 2)), "{seq}");
        }
        for (i, b) in [(0, b'a'), (10, b'x'), (29, b'/'), (50, b'y'), (98, b' ')] {
            let mut bad = l.clone();
            bad[i] = b;
            assert!(gen_line(&bad, false).is_err(), "byte {i}");
        }
        assert!(gen_line(&l[..LINE - 2], false).is_err());
        assert!(gen_line(b"", false).is_err());
    }
}
