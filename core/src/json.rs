//! JSON string escaping for the hot path, byte-identical to serde_json's.
//!
//! Every `stdout`/`stderr` event runs its text through [`write_str`], so this is the
//! server's inner loop. Process output is mostly ASCII with few bytes that need an
//! escape, so the loop looks for the next such byte eight bytes at a time and copies
//! each clean run with one `extend_from_slice`.

/// What to write for each byte: 0 for "copy as is", `u` for `\u00XX`, otherwise the
/// character that follows the backslash. Same choices as serde_json.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Appends `s` as a JSON string literal (with quotes), exactly as
/// `serde_json::to_string(s)` would write it, with an ASCII fast path.
///
/// # Examples
/// ```
/// let mut buf = Vec::new();
/// spout_core::json::write_str("a\"b\n\u{1}é", &mut buf);
/// assert_eq!(String::from_utf8(buf).unwrap(), r#""a\"b\n\u0001é""#);
/// ```
pub fn write_str(s: &str, buf: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    // Most text needs no escape at all; one reservation covers that case.
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        buf.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match ESCAPE[usize::from(b)] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xF)],
                ]);
            }
            short => buf.extend_from_slice(&[b'\\', short]),
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// The index of the first byte at or after `from` that needs an escape.
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = &bytes[from..];
    let mut words = rest.chunks_exact(8);
    let mut offset = from;
    for word in &mut words {
        // invariant: chunks_exact(8) yields slices of exactly 8 bytes.
        let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        let hits = needs_escape_mask(w);
        if hits != 0 {
            // Little-endian load: the lowest flagged byte is the first in the text.
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| ESCAPE[usize::from(b)] != 0)
        .map(|i| offset + i)
}

/// A mask with the high bit set in the lowest byte of `w` that is `"`, `\` or below
/// 0x20 (higher bytes may be flagged spuriously, but only above a true hit, because a
/// borrow only carries upwards). Zero when no byte needs an escape; bytes >= 0x80 are
/// never flagged, as the `& !w` term excludes them.
fn needs_escape_mask(w: u64) -> u64 {
    let control = w.wrapping_sub(ONES * 0x20);
    let quote = (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    // `x - ONES & !x & HIGHS` flags zero bytes; xor turns "equals c" into "is zero".
    (control & !w & HIGHS)
        | (quote & !(w ^ (ONES * u64::from(b'"'))) & HIGHS)
        | (backslash & !(w ^ (ONES * u64::from(b'\\'))) & HIGHS)
}

/// Fuzz entry point: [`write_str`] must agree with serde_json on any text.
///
/// # Panics
/// When the two disagree (that is the bug the fuzzer looks for).
#[doc(hidden)]
pub fn fuzz_json_escape(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut ours = Vec::new();
    write_str(&text, &mut ours);
    // invariant: serializing a str to a Vec cannot fail.
    let theirs = serde_json::to_vec(text.as_ref()).expect("str serializes");
    assert_eq!(ours, theirs, "escaping differs for {text:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> String {
        let mut buf = b"prefix".to_vec();
        write_str(s, &mut buf);
        assert!(buf.starts_with(b"prefix"), "write_str must append");
        String::from_utf8(buf.split_off(6)).expect("write_str writes UTF-8")
    }

    fn theirs(s: &str) -> String {
        serde_json::to_string(s).expect("str serializes")
    }

    #[test]
    fn tricky_strings_match_serde_json() {
        let cases = [
            "",
            "plain",
            "\"",
            "\\",
            "\\\"",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "\u{8}\u{c}\n\r\t",
            "\u{b}",
            "line one\nline two\n",
            "progress 10%\rprogress 20%\r",
            "é",
            "日本語のテキスト",
            "🦀 crab",
            "\u{2028}\u{2029}",
            "\u{feff}bom",
            "\u{fffd}",
            "ends with quote\"",
            "\"starts with quote",
            "exactly8",
            "exactly8\"",
            "1234567\"",
            "12345678901234567\n",
            "\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
            "high bytes next to escapes: é\"é\\é\nü",
        ];
        for s in cases {
            assert_eq!(ours(s), theirs(s), "{s:?}");
        }
    }

    #[test]
    fn every_ascii_char_at_every_word_position_matches_serde_json() {
        // Each byte is tried at each position of an 8-byte word and in the tail, with
        // clean and non-ASCII neighbours, so every lane of the word scan is covered.
        for c in 0u8..=0x7F {
            let ch = char::from(c);
            for pad in 0..17 {
                for filler in ["a", "é"] {
                    let s = format!("{}{ch}{}", filler.repeat(pad), filler.repeat(3));
                    assert_eq!(ours(&s), theirs(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn non_ascii_sample_matches_serde_json() {
        // Every 97th scalar value plus the boundaries of each UTF-8 length.
        let boundaries = [
            0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF,
        ];
        let chars = (0x80u32..=0x10FFFF)
            .step_by(97)
            .chain(boundaries)
            .filter_map(char::from_u32);
        for ch in chars {
            let s = format!("a{ch}\"{ch}\n");
            assert_eq!(ours(&s), theirs(&s), "{s:?}");
        }
    }

    #[test]
    fn mask_flags_exactly_the_escape_bytes() {
        for b in 0u8..=255 {
            let want = ESCAPE[usize::from(b)] != 0;
            for lane in 0..8 {
                let mut word = [b'x'; 8];
                word[lane] = b;
                let hits = needs_escape_mask(u64::from_le_bytes(word));
                assert_eq!(hits != 0, want, "byte {b:#x} lane {lane}");
                if want {
                    assert_eq!(hits.trailing_zeros() / 8, lane as u32);
                }
            }
        }
    }

    #[test]
    fn fuzz_entry_accepts_invalid_utf8() {
        fuzz_json_escape(b"\xff\xfe\"\\\n\x00abc\xe2\x82");
        fuzz_json_escape(b"");
    }
}
