//! Identifiers: [`JobId`] (unguessable, from randomness the runtime supplies) and
//! [`EventId`] (the per-job sequence 1, 2, 3 …), with their text forms.

use std::fmt;

/// The id of one event in a job's log: 1 for the first event, then 2, 3, …
///
/// Ids are dense and never reused within a job, so a client's `Last-Event-ID` names
/// exactly how much of the log it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u64);

impl EventId {
    /// The id of the first event of every job.
    pub const FIRST: EventId = EventId(1);

    /// An id from its number; `None` for 0, which names no event.
    #[must_use]
    pub fn new(n: u64) -> Option<EventId> {
        (n > 0).then_some(EventId(n))
    }

    /// The id's number (at least 1).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id that follows this one.
    #[must_use]
    pub fn next(self) -> EventId {
        EventId(self.0.saturating_add(1))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How much of a log a client says it already has: the `Last-Event-ID` it sent, or
/// zero for "nothing yet".
///
/// The wire form is ASCII decimal digits only (no sign, no spaces, at most 19 digits),
/// which is what the encoder writes; anything else is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(pub u64);

impl Cursor {
    /// Parses a `Last-Event-ID` value.
    ///
    /// # Errors
    /// [`ParseIdError`] when the text is empty, has a non-digit, or is too long.
    pub fn parse(text: &str) -> Result<Cursor, ParseIdError> {
        if text.is_empty() {
            return Err(ParseIdError::Empty);
        }
        if text.len() > 19 {
            return Err(ParseIdError::TooLong);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIdError::NotDigits);
        }
        // invariant: at most 19 ASCII digits always fit in a u64.
        Ok(Cursor(text.parse().expect("19 digits fit in u64")))
    }
}

/// Why a `Last-Event-ID` value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The value is empty.
    Empty,
    /// The value has a character that is not an ASCII digit.
    NotDigits,
    /// The value has more than 19 digits.
    TooLong,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseIdError::Empty => "event id is empty",
            ParseIdError::NotDigits => "event id must be ASCII decimal digits",
            ParseIdError::TooLong => "event id has more than 19 digits",
        })
    }
}

impl std::error::Error for ParseIdError {}

/// A job's id: 128 bits of OS randomness (supplied by the runtime), written as 22
/// characters of unpadded URL-safe base64.
///
/// Ids are unguessable so that knowing one job's URL tells nothing about another's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl JobId {
    /// Length of the text form.
    pub const TEXT_LEN: usize = 22;

    /// A job id from 16 random bytes (the runtime reads them from the OS).
    #[must_use]
    pub fn from_random(bytes: [u8; 16]) -> JobId {
        JobId(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 22-character text form; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<JobId> {
        let t = text.as_bytes();
        if t.len() != Self::TEXT_LEN {
            return None;
        }
        let mut bits: u128 = 0;
        for (i, &c) in t.iter().enumerate() {
            let v = B64.iter().position(|&b| b == c)? as u128;
            if i == Self::TEXT_LEN - 1 {
                // The last character holds only 2 bits (22 * 6 = 132 = 128 + 4);
                // its low 4 bits must be zero so each id has exactly one text form.
                if v & 0xF != 0 {
                    return None;
                }
                bits = (bits << 2) | (v >> 4);
            } else {
                bits = (bits << 6) | v;
            }
        }
        Some(JobId(bits.to_be_bytes()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = u128::from_be_bytes(self.0);
        let mut out = [0u8; Self::TEXT_LEN];
        for (i, slot) in out.iter_mut().enumerate().take(Self::TEXT_LEN - 1) {
            let shift = 128 - 6 * (i + 1);
            *slot = B64[((bits >> shift) & 0x3F) as usize];
        }
        out[Self::TEXT_LEN - 1] = B64[((bits & 0x3) << 4) as usize];
        // invariant: every byte comes from the ASCII alphabet above.
        f.write_str(std::str::from_utf8(&out).expect("base64 alphabet is ASCII"))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_round_trips_and_is_url_safe() {
        for seed in [[0u8; 16], [0xFF; 16], *b"0123456789abcdef"] {
            let id = JobId::from_random(seed);
            let text = id.to_string();
            assert_eq!(text.len(), 22);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(JobId::parse(&text), Some(id));
        }
    }

    #[test]
    fn job_id_rejects_other_text() {
        assert_eq!(JobId::parse(""), None);
        assert_eq!(JobId::parse("AAAAAAAAAAAAAAAAAAAAA"), None); // 21
        assert_eq!(JobId::parse("AAAAAAAAAAAAAAAAAAAAA+"), None);
        assert_eq!(JobId::parse("AAAAAAAAAAAAAAAAAAAAAB"), None); // non-canonical tail
        assert_eq!(JobId::parse("../../../../etc/passwd"), None);
    }

    #[test]
    fn cursor_parsing_table() {
        let cases: &[(&str, Result<u64, ParseIdError>)] = &[
            ("0", Ok(0)),
            ("1", Ok(1)),
            ("0042", Ok(42)),
            ("9999999999999999999", Ok(9_999_999_999_999_999_999)),
            ("", Err(ParseIdError::Empty)),
            ("+1", Err(ParseIdError::NotDigits)),
            ("-1", Err(ParseIdError::NotDigits)),
            (" 1", Err(ParseIdError::NotDigits)),
            ("1.0", Err(ParseIdError::NotDigits)),
            ("abc", Err(ParseIdError::NotDigits)),
            ("١", Err(ParseIdError::NotDigits)),
            ("12345678901234567890", Err(ParseIdError::TooLong)),
        ];
        for (text, want) in cases {
            assert_eq!(Cursor::parse(text).map(|c| c.0), *want, "{text:?}");
        }
    }

    #[test]
    fn event_id_zero_is_none() {
        assert_eq!(EventId::new(0), None);
        assert_eq!(EventId::new(3).map(EventId::get), Some(3));
        assert_eq!(EventId::FIRST.next().get(), 2);
    }
}
