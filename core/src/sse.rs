//! The Server-Sent Events wire format: an encoder that can only write valid framing,
//! and an incremental decoder that follows the WHATWG parsing rules exactly.
//! CONTRACT STUB: the signatures are fixed; the bodies are being written.

use crate::event::Stream;
use crate::id::EventId;
use std::fmt;

/// Why a value cannot be written as an SSE field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldError {
    /// The value is empty where a value is required.
    Empty,
    /// The value contains CR or LF, which would end the line early.
    Newline,
    /// The value contains U+0000, which makes clients ignore an `id` field.
    Nul,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldError::Empty => "field value is empty",
            FieldError::Newline => "field value contains CR or LF",
            FieldError::Nul => "id value contains U+0000",
        })
    }
}

impl std::error::Error for FieldError {}

/// A validated `event:` value: not empty, no CR, no LF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventType<'a>(&'a str);

impl<'a> EventType<'a> {
    /// Validates an event type.
    ///
    /// # Errors
    /// [`FieldError::Empty`] or [`FieldError::Newline`].
    pub fn new(value: &'a str) -> Result<EventType<'a>, FieldError> {
        let _ = value;
        todo!()
    }
    /// An event type known at compile time; fails to compile (const panic) if invalid.
    pub const fn from_static(value: &'static str) -> EventType<'static> {
        EventType(value)
    }
    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A validated `id:` value: no CR, LF or U+0000 (may be empty, which resets the id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdValue<'a>(&'a str);

impl<'a> IdValue<'a> {
    /// Validates an id value.
    ///
    /// # Errors
    /// [`FieldError::Newline`] or [`FieldError::Nul`].
    pub fn new(value: &'a str) -> Result<IdValue<'a>, FieldError> {
        let _ = value;
        todo!()
    }
    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Writes one event: optional `id:`, optional `event:`, one `data:` line per line of
/// `data` (split on CRLF, LF, CR; empty data still writes one `data:` line so the
/// event fires), then the blank line.
pub fn encode_event(
    id: Option<IdValue<'_>>,
    event: Option<EventType<'_>>,
    data: &str,
    buf: &mut Vec<u8>,
) {
    let _ = (id, event, data, buf);
    todo!()
}

/// Writes an event whose id is a log [`EventId`] and whose data is a JSON text with
/// no raw newlines (compact serde_json output never has any).
pub fn encode_json_event(id: Option<EventId>, event: EventType<'_>, json: &str, buf: &mut Vec<u8>) {
    let _ = (id, event, json, buf);
    todo!()
}

/// The hot path: writes `id: N\nevent: stdout|stderr\ndata: {"text":"…"}\n\n`, with the
/// text JSON-escaped by [`crate::json::write_str`] straight into `buf`.
pub fn encode_output_event(id: EventId, stream: Stream, text: &str, buf: &mut Vec<u8>) {
    let _ = (id, stream, text, buf);
    todo!()
}

/// Writes `retry: <ms>\n\n`.
pub fn encode_retry(ms: u64, buf: &mut Vec<u8>) {
    let _ = (ms, buf);
    todo!()
}

/// Writes a comment: one `:` line per line of `text` (`:` alone for empty text),
/// then a blank line. The heartbeat is `encode_comment("", buf)` = `":\n\n"`.
pub fn encode_comment(text: &str, buf: &mut Vec<u8>) {
    let _ = (text, buf);
    todo!()
}

/// One thing the decoder found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// A dispatched event, as `EventSource` would fire it.
    Event(Dispatched),
    /// A comment line's text (after the `:`; one leading space kept as sent).
    Comment(String),
    /// A valid `retry:` value (ASCII digits only).
    Retry(u64),
}

/// An event as a browser's `EventSource` would deliver it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dispatched {
    /// `event.type`: the `event:` field, or `message`.
    pub event_type: String,
    /// `event.data`: the `data:` lines joined by LF.
    pub data: String,
    /// `event.lastEventId`: the last id buffer at dispatch (kept across events).
    pub last_event_id: String,
}

/// An incremental SSE parser: feed bytes in any chunking, poll items out.
#[derive(Debug, Default)]
pub struct Decoder {
    _private: (),
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }
    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }
    /// The next complete item, if any.
    #[must_use]
    pub fn poll(&mut self) -> Option<Item> {
        todo!()
    }
    /// The last event id buffer (what a reconnect sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        todo!()
    }
}
