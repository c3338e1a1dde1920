//! The on-disk archive format, as pure encode/decode functions (the runtime owns the
//! files): framed event records, and the job's metadata document.
//! CONTRACT STUB: the signatures are fixed; the bodies are being written.

use crate::id::EventId;

/// Bytes of framing around each record (before the wire bytes).
pub const RECORD_HEADER_LEN: usize = 16;

/// Appends one framed record holding an event's wire bytes to `buf`.
pub fn encode_record(id: EventId, wire: &[u8], buf: &mut Vec<u8>) {
    let _ = (id, wire, buf);
    todo!()
}

/// One record read back from an archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The event's id.
    pub id: EventId,
    /// The event's exact wire bytes.
    pub wire: &'a [u8],
}

/// What was wrong with the tail of an archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The file ends inside a record (a crash mid-write).
    Truncated,
    /// A record's checksum or header does not match.
    Corrupt,
    /// A record's id does not follow the previous one.
    OutOfOrder,
}

/// The result of reading an archive file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The good records, in order.
    pub records: Vec<Record<'a>>,
    /// How many leading bytes are good; the runtime truncates the file to this.
    pub valid_len: usize,
    /// Why reading stopped early, if it did.
    pub damage: Option<Damage>,
}

/// Reads framed records from `bytes` until the end or the first damaged record.
/// `expect_first` is the id the first record must have (ids then go up by one).
#[must_use]
pub fn scan(bytes: &[u8], expect_first: EventId) -> Scan<'_> {
    let _ = (bytes, expect_first);
    todo!()
}
