//! Output assembly for one stream (stdout or stderr): raw bytes in, the texts of
//! `stdout`/`stderr` events out, decoded as UTF-8 incrementally and grouped by line.
//!
//! # Rules
//!
//! 1. Decoding is incremental: a character split across two reads is one character.
//!    Invalid bytes become U+FFFD exactly as [`String::from_utf8_lossy`] would turn
//!    them on the whole stream (one U+FFFD per maximal invalid subpart). An incomplete
//!    character at the end of what was read waits for the next bytes; at end of stream
//!    it becomes U+FFFD.
//! 2. An event carries whole lines, and every whole line held is sent at the next
//!    poll, so lines that arrive together travel together. A line ends at LF only: a
//!    progress bar that redraws with `\r` is a partial line (as SPEC.md says), so the
//!    redraws of one partial-line delay travel together in one event rather than as a
//!    lone `"\r"` and then the bar. It still streams, by rule 3. The text itself is
//!    always exact: CRs are kept.
//! 3. A partial line is sent when the partial-line delay has passed since its *first*
//!    byte arrived (not after a quiet period: a process that writes a dot every 10 ms
//!    is never quiet, and must still be seen within the delay).
//! 4. No event text is longer than `max_event_bytes` UTF-8 bytes. Held text that
//!    reaches the cap is sent at once; text over the cap is split after the last line
//!    end within the cap, or else on the last character boundary within it.
//!
//! # Driving it
//!
//! After every [`Assembler::handle_bytes`] and [`Assembler::handle_eof`], drain
//! [`Assembler::poll_text`] until it returns `None`, then sleep until
//! [`Assembler::poll_timeout`] (or the next read). Held memory is then bounded by
//! about `max_event_bytes` + 3 bytes; bytes that are read but never polled pile up.

use std::time::{Duration, Instant};

/// How an [`Assembler`] groups text into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// How long a partial line may wait for the rest of its line.
    pub partial_line_delay: Duration,
    /// The most UTF-8 bytes of text one event carries.
    pub max_event_bytes: usize,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            partial_line_delay: Duration::from_millis(50),
            max_event_bytes: 16 * 1024,
        }
    }
}

/// Turns one stream's bytes into the texts of `stdout`/`stderr` events.
///
/// # Examples
///
/// ```
/// use spout_core::assembler::{Assembler, AssemblerConfig};
/// # fn example(t0: std::time::Instant) {
/// let mut out = Assembler::new(AssemblerConfig::default());
/// out.handle_bytes(b"compiling foo\ncompiling bar\nlinking", t0);
/// assert_eq!(out.poll_text(t0).as_deref(), Some("compiling foo\ncompiling bar\n"));
/// assert_eq!(out.poll_text(t0), None); // "linking" waits for the rest of its line
/// let due = out.poll_timeout().unwrap();
/// assert_eq!(out.poll_text(due).as_deref(), Some("linking"));
/// # }
/// ```
#[derive(Debug)]
pub struct Assembler {
    config: AssemblerConfig,
    /// Decoded text; `held[start..]` is not yet sent. The sent prefix is dropped lazily
    /// so that splitting a long burst does not move the rest once per event.
    held: String,
    start: usize,
    /// `held[start..lines_end]` is whole lines (due now); none when `lines_end <= start`.
    lines_end: usize,
    /// The start of an incomplete UTF-8 sequence (at most 3 bytes).
    tail: Vec<u8>,
    /// When the oldest byte of the partial line (text after `lines_end`, then `tail`)
    /// arrived; `None` when there is no partial line.
    partial_since: Option<Instant>,
    /// When the first byte of `tail` arrived.
    tail_since: Option<Instant>,
    /// The latest time seen, so that a driver's clock going backwards cannot move a
    /// deadline backwards.
    latest: Option<Instant>,
    eof: bool,
    bytes_in: u64,
}

impl Assembler {
    /// The smallest `max_event_bytes` allowed: one character of any size must fit.
    pub const MIN_EVENT_BYTES: usize = 4;

    /// A new assembler.
    ///
    /// A `max_event_bytes` below [`Assembler::MIN_EVENT_BYTES`] is raised to it (the
    /// config layer is expected to reject such values with a proper message).
    #[must_use]
    pub fn new(config: AssemblerConfig) -> Assembler {
        let config = AssemblerConfig {
            max_event_bytes: config.max_event_bytes.max(Self::MIN_EVENT_BYTES),
            ..config
        };
        Assembler {
            config,
            held: String::new(),
            start: 0,
            lines_end: 0,
            tail: Vec::with_capacity(4),
            partial_since: None,
            tail_since: None,
            latest: None,
            eof: false,
            bytes_in: 0,
        }
    }

    // ----- getters -----

    /// The configuration in effect (after raising a too small `max_event_bytes`).
    #[must_use]
    pub fn config(&self) -> AssemblerConfig {
        self.config
    }

    /// Raw bytes taken so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    // ----- inputs -----

    /// Takes bytes the process wrote, read at `now`.
    ///
    /// Bytes after [`Assembler::handle_eof`] are ignored (and not counted): the stream
    /// has ended.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.eof || bytes.is_empty() {
            return;
        }
        let now = self.advance(now);
        self.bytes_in = self.bytes_in.saturating_add(bytes.len() as u64);
        self.compact();

        let old_len = self.held.len();
        let tail_was_empty = self.tail.is_empty();
        let tail_resolved = self.decode(bytes);
        if !self.tail.is_empty() && (tail_was_empty || tail_resolved) {
            self.tail_since = Some(now);
        }

        // Only the new text, and the byte before it (a CR that was last and waited),
        // can hold a new line end.
        let lo = old_len
            .saturating_sub(1)
            .max(self.start)
            .max(self.lines_end);
        if let Some(end) = self.last_line_end(lo, self.held.len()) {
            self.lines_end = end;
            // The partial line now starts after that line end, in this read.
            let partial_empty = end == self.held.len() && self.tail.is_empty();
            self.partial_since = if partial_empty { None } else { Some(now) };
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// The stream ended: everything held becomes text (an incomplete character at
    /// the end becomes U+FFFD).
    pub fn handle_eof(&mut self) {
        if self.eof {
            return;
        }
        self.eof = true;
        if !self.tail.is_empty() {
            // An incomplete sequence is a valid prefix: from_utf8_lossy makes it one
            // U+FFFD.
            self.held.push(char::REPLACEMENT_CHARACTER);
            self.tail.clear();
            self.tail_since = None;
        }
    }

    // ----- outputs -----

    /// The next event's text, if one is due at `now`.
    ///
    /// Call it until it returns `None`: a long burst yields several events.
    #[must_use]
    pub fn poll_text(&mut self, now: Instant) -> Option<String> {
        let now = self.advance(now);
        let text_len = self.held.len() - self.start;
        if text_len == 0 {
            return None;
        }
        let cap = self.config.max_event_bytes;
        let cut = if text_len > cap {
            self.cap_cut()
        } else if text_len == cap || self.eof || self.partial_due(now) {
            text_len
        } else if self.lines_end > self.start {
            self.lines_end - self.start
        } else {
            return None;
        };
        Some(self.take(cut))
    }

    /// When a held partial line becomes due, if any.
    ///
    /// After [`Assembler::poll_text`]`(now)` has returned `None`, this is `None` or
    /// later than `now`. If text is already due (the driver has not drained), it is
    /// the latest time seen, meaning "now".
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let text_len = self.held.len() - self.start;
        if text_len == 0 {
            return None;
        }
        if self.eof || text_len >= self.config.max_event_bytes || self.lines_end > self.start {
            return self.latest;
        }
        self.deadline()
    }

    // ----- internals -----

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }

    /// Drops the sent prefix of `held`.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.held.drain(..self.start);
        self.lines_end = self.lines_end.saturating_sub(self.start);
        self.start = 0;
        // A burst may have grown the buffer far beyond what a drained assembler holds.
        let keep = self.config.max_event_bytes.saturating_mul(2);
        if self.held.capacity() > keep.max(4096) {
            self.held.shrink_to(keep);
        }
    }

    /// Decodes `bytes` (after any held `tail`) into `held`, leaving an incomplete
    /// sequence at the end in `tail`. Returns whether a previously held tail was
    /// resolved (completed or found invalid).
    fn decode(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        let mut resolved = false;
        if !self.tail.is_empty() {
            // The tail is at most 3 bytes of one sequence; 3 more bytes always decide
            // it. Decoding that small window gives exactly what the whole stream would,
            // because every decision made inside it depends only on bytes inside it.
            let old = self.tail.len();
            let window = bytes.len().min(3);
            self.tail.extend_from_slice(&bytes[..window]);
            let joined = std::mem::take(&mut self.tail);
            let used = decode_lossy(&joined, &mut self.held);
            if used >= old {
                rest = &bytes[used - old..];
                resolved = true;
                self.tail = joined;
                self.tail.clear();
            } else {
                // Still undecided: then the window was all of `bytes` (a 4th byte would
                // have decided it), so everything is taken.
                self.tail = joined;
                self.tail.drain(..used);
                return false;
            }
        }
        let used = decode_lossy(rest, &mut self.held);
        self.tail.extend_from_slice(&rest[used..]);
        resolved
    }

    /// The end (just after the terminator) of the last line end in `held[lo..hi]`.
    fn last_line_end(&self, lo: usize, hi: usize) -> Option<usize> {
        (lo..hi).rev().find(|&i| self.is_line_end(i)).map(|i| i + 1)
    }

    fn is_line_end(&self, i: usize) -> bool {
        self.held.as_bytes()[i] == b'\n'
    }

    fn deadline(&self) -> Option<Instant> {
        self.partial_since?
            .checked_add(self.config.partial_line_delay)
    }

    /// Whether held text after the last line end has waited long enough.
    fn partial_due(&self, now: Instant) -> bool {
        self.held.len() > self.start.max(self.lines_end)
            && self.deadline().is_some_and(|d| d <= now)
    }

    /// Where to split text longer than the cap.
    fn cap_cut(&self) -> usize {
        let cap = self.config.max_event_bytes;
        let window_end = self.start + cap;
        let lines = if self.lines_end > self.start && self.lines_end <= window_end {
            Some(self.lines_end)
        } else {
            self.last_line_end(self.start, window_end)
        };
        match lines {
            Some(end) => end - self.start,
            None => {
                // invariant: cap >= 4, so a boundary lies within the window past start.
                let mut end = window_end;
                while !self.held.is_char_boundary(end) {
                    end -= 1;
                }
                end - self.start
            }
        }
    }

    /// Removes and returns the next `cut` bytes of text.
    fn take(&mut self, cut: usize) -> String {
        let end = self.start + cut;
        if end < self.held.len() {
            let text = self.held[self.start..end].to_owned();
            self.start = end;
            return text;
        }
        // Everything held goes: hand over the buffer itself when nothing was sent from
        // it yet, which is the common case of one read making one event.
        let text = if self.start == 0 {
            std::mem::take(&mut self.held)
        } else {
            let text = self.held[self.start..].to_owned();
            self.held.clear();
            text
        };
        self.start = 0;
        self.lines_end = 0;
        self.partial_since = if self.tail.is_empty() {
            None
        } else {
            self.tail_since
        };
        text
    }
}

/// Appends the lossy decoding of `bytes` to `out`, except an incomplete sequence at
/// the very end; returns how many bytes were used.
fn decode_lossy(bytes: &[u8], out: &mut String) -> usize {
    let mut used = 0;
    loop {
        let rest = &bytes[used..];
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                return bytes.len();
            }
            Err(err) => {
                let (valid, _) = rest.split_at(err.valid_up_to());
                // invariant: from_utf8 vouched for these bytes.
                out.push_str(std::str::from_utf8(valid).expect("validated prefix"));
                used += valid.len();
                match err.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        used += bad;
                    }
                    None => return used,
                }
            }
        }
    }
}

/// Fuzz entry point: any chunking of the same bytes gives the same text, within the
/// event cap, never an empty event. Panics when an invariant breaks.
#[doc(hidden)]
pub fn fuzz_assembler(data: &[u8], t0: Instant) {
    let [size, delay, seed, rest @ ..] = data else {
        return;
    };
    let max_event_bytes = if *size < 128 {
        Assembler::MIN_EVENT_BYTES + usize::from(*size % 61)
    } else {
        64 + usize::from(*size - 128) * 128
    };
    let config = AssemblerConfig {
        partial_line_delay: Duration::from_millis(u64::from(*delay)),
        max_event_bytes,
    };

    fn drain(out: &mut Assembler, now: Instant, texts: &mut Vec<String>) {
        while let Some(text) = out.poll_text(now) {
            texts.push(text);
        }
        if let Some(due) = out.poll_timeout() {
            assert!(due > now, "poll_timeout did not move forward");
        }
    }

    let run = |chunk_len: &dyn Fn(usize) -> usize| -> Vec<String> {
        let mut now = t0;
        let mut out = Assembler::new(config);
        let mut texts = Vec::new();
        let mut pos = 0;
        while pos < rest.len() {
            let len = chunk_len(pos).clamp(1, rest.len() - pos);
            out.handle_bytes(&rest[pos..pos + len], now);
            drain(&mut out, now, &mut texts);
            // Time moves by a data-derived step, sometimes past the deadline.
            now += Duration::from_millis(u64::from(rest[pos] % 64));
            drain(&mut out, now, &mut texts);
            pos += len;
        }
        assert_eq!(out.bytes_in(), rest.len() as u64);
        out.handle_eof();
        drain(&mut out, now, &mut texts);
        assert_eq!(out.poll_timeout(), None);
        texts
    };

    let a = run(&|pos| usize::from(rest[pos].wrapping_add(*seed) % 9));
    let b = run(&|pos| usize::from(rest[pos].rotate_left(3) ^ *seed) * 3);
    let whole = String::from_utf8_lossy(rest);
    for texts in [&a, &b] {
        for text in texts.iter() {
            assert!(!text.is_empty(), "empty event");
            assert!(text.len() <= max_event_bytes, "event over the cap");
        }
        assert_eq!(texts.concat(), whole);
    }
}
