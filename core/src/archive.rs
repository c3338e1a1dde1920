//! The on-disk archive format of a job's event file, as pure encode/decode functions
//! (the runtime owns the files): framed records, each holding one event's wire bytes.
//!
//! # Record format
//!
//! An event file is a plain sequence of records, with no file header:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | length of `wire`, u32 little-endian (at most [`MAX_WIRE_LEN`]) |
//! | 4 | CRC-32 (IEEE) of the 8 id bytes, then `wire`, u32 little-endian |
//! | 8 | event id, u64 little-endian |
//! | length | `wire`: the event's exact SSE bytes, as subscribers receive them |
//!
//! Records are only ever appended, so a crash can only damage the end of a file;
//! [`scan`] reads the good prefix and says where it stops, and the runtime cuts the
//! file there. The checksum does not cover the length field: a damaged length either
//! points past the end (reported as [`Damage::Truncated`]) or frames the wrong bytes
//! (the checksum fails: [`Damage::Corrupt`]); either way the file is cut at the same
//! place.

use std::fmt;

use crate::id::EventId;

/// Bytes of framing around each record (before the wire bytes).
pub const RECORD_HEADER_LEN: usize = 16;

/// The longest `wire` a record may hold (64 MiB). Events are capped far below this;
/// a longer length in a header can only be damage, and must not make a reader
/// allocate or skip gigabytes.
pub const MAX_WIRE_LEN: usize = 64 << 20;

/// Appends one framed record holding an event's wire bytes to `buf`.
///
/// # Panics
///
/// When `wire` is longer than [`MAX_WIRE_LEN`]: [`scan`] would reject such a record,
/// so writing it would lose it and every later event. Event texts are capped by
/// configuration far below this, so only a bug gets here.
pub fn encode_record(id: EventId, wire: &[u8], buf: &mut Vec<u8>) {
    assert!(
        wire.len() <= MAX_WIRE_LEN,
        "event of {} bytes exceeds the archive record limit",
        wire.len()
    );
    let id_bytes = id.get().to_le_bytes();
    // invariant: MAX_WIRE_LEN fits in a u32.
    let len = u32::try_from(wire.len()).expect("checked against MAX_WIRE_LEN");
    buf.reserve(RECORD_HEADER_LEN + wire.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(&id_bytes, wire).to_le_bytes());
    buf.extend_from_slice(&id_bytes);
    buf.extend_from_slice(wire);
}

/// One record read back from an archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The event's id.
    pub id: EventId,
    /// The event's exact wire bytes.
    pub wire: &'a [u8],
    /// Where `wire` starts in the scanned bytes.
    pub at: usize,
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

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Truncated => "archive ends inside a record",
            Damage::Corrupt => "archive record fails its checksum or has an impossible length",
            Damage::OutOfOrder => "archive record id does not follow the previous one",
        })
    }
}

impl std::error::Error for Damage {}

/// The result of reading an archive file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
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
///
/// Reading stops at the first record that is cut short ([`Damage::Truncated`]), has
/// an impossible length or a bad checksum ([`Damage::Corrupt`]), or does not carry
/// the expected id ([`Damage::OutOfOrder`]); nothing after it is trusted.
///
/// # Examples
///
/// ```
/// use spout_core::archive::{encode_record, scan, Damage};
/// use spout_core::EventId;
///
/// let mut file = Vec::new();
/// encode_record(EventId::FIRST, b"id: 1\ndata: a\n\n", &mut file);
/// let whole = file.len();
/// encode_record(EventId::FIRST.next(), b"id: 2\ndata: b\n\n", &mut file);
/// file.truncate(file.len() - 3); // a crash mid-write
///
/// let found = scan(&file, EventId::FIRST);
/// assert_eq!(found.records.len(), 1);
/// assert_eq!(found.valid_len, whole);
/// assert_eq!(found.damage, Some(Damage::Truncated));
/// ```
pub fn scan(bytes: &[u8], expect_first: EventId) -> Scan<'_> {
    let mut records = Vec::new();
    let mut pos = 0;
    let mut expect = Some(expect_first);
    let damage = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        let Some((header, body)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            break Some(Damage::Truncated);
        };
        let (len, crc, id_bytes) = split_header(header);
        let len = len as usize;
        if len > MAX_WIRE_LEN {
            break Some(Damage::Corrupt);
        }
        let Some(wire) = body.get(..len) else {
            break Some(Damage::Truncated);
        };
        if record_crc(&id_bytes, wire) != crc {
            break Some(Damage::Corrupt);
        }
        let id = EventId::new(u64::from_le_bytes(id_bytes));
        if id.is_none() || id != expect {
            break Some(Damage::OutOfOrder);
        }
        // Past u64::MAX nothing can follow: `next` would saturate and accept a repeat.
        expect = id
            .and_then(|id| id.get().checked_add(1))
            .and_then(EventId::new);
        if let Some(id) = id {
            records.push(Record {
                id,
                wire,
                at: pos + RECORD_HEADER_LEN,
            });
        }
        pos += RECORD_HEADER_LEN + len;
    };
    Scan {
        records,
        valid_len: pos,
        damage,
    }
}

fn split_header(header: &[u8; RECORD_HEADER_LEN]) -> (u32, u32, [u8; 8]) {
    let [l0, l1, l2, l3, c0, c1, c2, c3, id @ ..] = *header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
        id,
    )
}

fn record_crc(id_bytes: &[u8; 8], wire: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(id_bytes);
    crc.update(wire);
    crc.finish()
}

/// The CRC-32 of `bytes`, as zlib, gzip, PNG and Ethernet compute it (IEEE 802.3
/// polynomial, reflected, initial and final XOR `0xFFFF_FFFF`).
///
/// Exposed so that tools and tests can check archive records by hand.
///
/// # Examples
///
/// ```
/// assert_eq!(spout_core::archive::crc32(b"123456789"), 0xCBF4_3926);
/// ```
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// The reflected IEEE polynomial.
#[cfg(test)]
const POLY: u32 = 0xEDB8_8320;

/// One table entry per byte value: the CRC of that byte alone, without the XORs (the
/// definition, kept to check [`Crc32`] against, byte by byte).
#[cfg(test)]
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// A running CRC-32, so a record's id and wire bytes are summed without copying
/// them together.
/// The same CRC as the byte-wise table definition (see the tests) computes, by `crc32fast` (SIMD where the CPU has it):
/// every archive read checks every record, once per resuming or lagging subscriber,
/// so a byte-at-a-time loop was the top cost of fan-out to slow readers.
struct Crc32(crc32fast::Hasher);

impl Crc32 {
    fn new() -> Crc32 {
        Crc32(crc32fast::Hasher::new())
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// Fuzz entry point: [`scan`] never panics on any bytes, its good prefix re-encodes to
/// exactly itself, and a file of good records cut anywhere yields exactly the records
/// wholly before the cut. Panics when an invariant breaks.
#[doc(hidden)]
pub fn fuzz_archive_scan(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let expect = EventId::new(u64::from(first) + 1).unwrap_or(EventId::FIRST);

    // 1. Arbitrary bytes.
    let found = scan(rest, expect);
    assert!(found.valid_len <= rest.len());
    assert_eq!(found.damage.is_none(), found.valid_len == rest.len());
    let mut again = Vec::new();
    for (i, record) in found.records.iter().enumerate() {
        assert_eq!(record.id.get(), expect.get() + i as u64);
        encode_record(record.id, record.wire, &mut again);
    }
    assert_eq!(again, &rest[..found.valid_len]);

    // 2. Good records made from the data (each byte says how long its record is),
    //    cut at a data-derived point.
    let mut file = Vec::new();
    let mut ends = Vec::new();
    let mut wires = Vec::new();
    let mut pos = 0;
    while pos < rest.len() {
        let len = usize::from(rest[pos] % 40).min(rest.len() - pos);
        wires.push(&rest[pos..pos + len]);
        pos += len.max(1);
    }
    let mut id = expect;
    for wire in &wires {
        encode_record(id, wire, &mut file);
        ends.push(file.len());
        id = id.next();
    }
    let whole = scan(&file, expect);
    assert_eq!(whole.damage, None);
    assert_eq!(
        whole.records.iter().map(|r| r.wire).collect::<Vec<_>>(),
        wires
    );

    let cut = usize::from(first) * 7 % (file.len() + 1);
    let cut_scan = scan(&file[..cut], expect);
    let kept = ends.iter().take_while(|&&end| end <= cut).count();
    assert_eq!(cut_scan.records, whole.records[..kept]);
    assert_eq!(
        cut_scan.valid_len,
        if kept == 0 { 0 } else { ends[kept - 1] }
    );
    let at_boundary = cut == cut_scan.valid_len;
    assert_eq!(cut_scan.damage, (!at_boundary).then_some(Damage::Truncated));

    // 3. One flipped byte: every record wholly before it survives, and the damage is
    //    reported.
    if !file.is_empty() {
        let at = usize::from(first).wrapping_mul(31) % file.len();
        let mut bad = file.clone();
        bad[at] ^= 0x5A;
        let flipped = scan(&bad, expect);
        let intact = ends.iter().take_while(|&&end| end <= at).count();
        assert!(flipped.records.len() >= intact);
        assert_eq!(flipped.records[..intact], whole.records[..intact]);
    }
}

#[cfg(test)]
mod crc_tests {
    use super::*;

    #[test]
    fn crc32fast_is_the_table_crc() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0usize, 1, 7, 8, 63, 64, 1000, 10_000] {
            let mut c = 0xFFFF_FFFFu32;
            for &b in &data[..len] {
                c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
            }
            assert_eq!(crc32(&data[..len]), !c, "{len}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EventId {
        EventId::new(n).unwrap()
    }

    fn three_records() -> (Vec<u8>, Vec<usize>) {
        let mut file = Vec::new();
        let mut ends = Vec::new();
        for (n, wire) in [
            (1, &b"id: 1\nevent: start\ndata: {}\n\n"[..]),
            (2, b""),
            (3, b"id: 3\ndata: x\n\n"),
        ] {
            encode_record(id(n), wire, &mut file);
            ends.push(file.len());
        }
        (file, ends)
    }

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn record_layout_is_as_documented() {
        let mut buf = vec![0xAA];
        encode_record(id(0x0102), b"hi", &mut buf);
        assert_eq!(buf.len(), 1 + RECORD_HEADER_LEN + 2);
        assert_eq!(buf[1..5], [2, 0, 0, 0]);
        let mut summed = 0x0102u64.to_le_bytes().to_vec();
        summed.extend_from_slice(b"hi");
        assert_eq!(buf[5..9], crc32(&summed).to_le_bytes());
        assert_eq!(buf[9..17], [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[17..], b"hi");
    }

    #[test]
    fn round_trip() {
        let (file, _) = three_records();
        let found = scan(&file, EventId::FIRST);
        assert_eq!(found.damage, None);
        assert_eq!(found.valid_len, file.len());
        let ids: Vec<u64> = found.records.iter().map(|r| r.id.get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(found.records[0].wire, b"id: 1\nevent: start\ndata: {}\n\n");
        assert_eq!(found.records[1].wire, b"");
        assert_eq!(found.records[2].wire, b"id: 3\ndata: x\n\n");
        assert_eq!(
            scan(&[], id(7)),
            Scan {
                records: vec![],
                valid_len: 0,
                damage: None
            }
        );
    }

    #[test]
    fn truncation_at_every_byte_keeps_the_whole_records_before_it() {
        let (file, ends) = three_records();
        let whole = scan(&file, EventId::FIRST).records;
        for cut in 0..=file.len() {
            let found = scan(&file[..cut], EventId::FIRST);
            let kept = ends.iter().take_while(|&&end| end <= cut).count();
            assert_eq!(found.records, whole[..kept], "cut at {cut}");
            let valid = if kept == 0 { 0 } else { ends[kept - 1] };
            assert_eq!(found.valid_len, valid, "cut at {cut}");
            let damage = (cut != valid).then_some(Damage::Truncated);
            assert_eq!(found.damage, damage, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_is_caught() {
        let (file, ends) = three_records();
        let second = ends[0]..ends[1];
        for at in second.clone() {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[at] ^= 1 << bit;
                let found = scan(&bad, EventId::FIRST);
                assert_eq!(found.records.len(), 1, "byte {at} bit {bit}");
                assert_eq!(found.valid_len, second.start);
                // A damaged length may point past the end of the file instead.
                let want: &[Damage] = if at < second.start + 4 {
                    &[Damage::Corrupt, Damage::Truncated]
                } else {
                    &[Damage::Corrupt]
                };
                assert!(
                    want.contains(&found.damage.unwrap()),
                    "byte {at} bit {bit}: {:?}",
                    found.damage
                );
            }
        }
    }

    #[test]
    fn absurd_length_is_corrupt_without_reading_on() {
        let mut file = Vec::new();
        encode_record(id(1), b"ok", &mut file);
        let good = file.len();
        let too_long = u32::try_from(MAX_WIRE_LEN + 1).unwrap();
        file.extend_from_slice(&too_long.to_le_bytes());
        file.extend_from_slice(&[0; 12]);
        let found = scan(&file, id(1));
        assert_eq!(
            (found.records.len(), found.valid_len, found.damage),
            (1, good, Some(Damage::Corrupt))
        );
    }

    #[test]
    fn ids_must_start_as_expected_and_go_up_by_one() {
        let file = |ids: &[u64]| {
            let mut buf = Vec::new();
            for &n in ids {
                // Written by hand so that id 0, which EventId cannot hold, is testable.
                let id_bytes = n.to_le_bytes();
                buf.extend_from_slice(&1u32.to_le_bytes());
                buf.extend_from_slice(&record_crc(&id_bytes, b"x").to_le_bytes());
                buf.extend_from_slice(&id_bytes);
                buf.push(b'x');
            }
            buf
        };
        let cases: &[(&[u64], u64, usize)] = &[
            (&[1, 2, 3], 1, 3),
            (&[5, 6], 5, 2),
            (&[2, 3], 1, 0),
            (&[1, 3], 1, 1),
            (&[1, 2, 2], 1, 2),
            (&[1, 0], 1, 1),
            (&[u64::MAX - 1, u64::MAX], u64::MAX - 1, 2),
            (&[u64::MAX, u64::MAX], u64::MAX, 1),
        ];
        for &(ids, first, good) in cases {
            let bytes = file(ids);
            let found = scan(&bytes, id(first));
            assert_eq!(found.records.len(), good, "{ids:?}");
            assert_eq!(found.valid_len, good * (RECORD_HEADER_LEN + 1), "{ids:?}");
            let damage = (good < ids.len()).then_some(Damage::OutOfOrder);
            assert_eq!(found.damage, damage, "{ids:?}");
        }
    }

    #[test]
    fn damage_reads_as_a_log_line() {
        for damage in [Damage::Truncated, Damage::Corrupt, Damage::OutOfOrder] {
            let text = damage.to_string();
            assert!(text.starts_with("archive "), "{text}");
            assert_eq!(text, text.to_lowercase());
        }
    }

    #[test]
    fn fuzz_entry_accepts_sample_inputs() {
        fuzz_archive_scan(b"");
        fuzz_archive_scan(b"\x00");
        fuzz_archive_scan(b"\x03hello world, this is some data\n\x00\xff");
        let (file, _) = three_records();
        let mut data = vec![0];
        data.extend_from_slice(&file);
        fuzz_archive_scan(&data);
        for first in 0..=255u8 {
            let data: Vec<u8> = std::iter::once(first)
                .chain((0..300u32).map(|i| (i * 13 % 256) as u8))
                .collect();
            fuzz_archive_scan(&data);
        }
    }
}
