//! The output assembler's rules, one test each, with time as `t0 + ms`.

use spout_core::assembler::*;
use std::time::{Duration, Instant};

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn assembler(max_event_bytes: usize) -> Assembler {
    Assembler::new(AssemblerConfig {
        partial_line_delay: ms(50),
        max_event_bytes,
    })
}

fn drain(out: &mut Assembler, now: Instant) -> Vec<String> {
    std::iter::from_fn(|| out.poll_text(now)).collect()
}

#[test]
fn utf8_split_at_every_position_is_one_character() {
    let text = "a é ‚ € 😀 z\n";
    let bytes = text.as_bytes();
    let t = t0();
    for split in 0..=bytes.len() {
        let mut out = assembler(1024);
        out.handle_bytes(&bytes[..split], t);
        let mut got = drain(&mut out, t);
        out.handle_bytes(&bytes[split..], t);
        got.extend(drain(&mut out, t));
        assert_eq!(got.concat(), text, "split at {split}");
        assert_eq!(out.poll_timeout(), None);
    }
}

#[test]
fn utf8_byte_at_a_time() {
    let text = "€😀é\n";
    let t = t0();
    let mut out = assembler(1024);
    let mut got = Vec::new();
    for b in text.as_bytes() {
        out.handle_bytes(std::slice::from_ref(b), t);
        got.extend(drain(&mut out, t));
    }
    assert_eq!(got, [text]);
    assert_eq!(out.bytes_in(), text.len() as u64);
}

#[test]
fn invalid_bytes_match_from_utf8_lossy_in_any_chunking() {
    let cases: &[&[u8]] = &[
        b"a\xffb\n",
        b"\xe2\x82\n",         // truncated 3-byte char, then LF
        b"\xf0\x9f\x98A\n",    // truncated 4-byte char, then ASCII
        b"\xe0\x80\xaf\n",     // overlong: each byte is its own U+FFFD
        b"\xed\xa0\x80\n",     // surrogate
        b"\xf4\x90\x80\x80\n", // above U+10FFFF
        b"\xc3\xc3\xa9\n",     // lead byte followed by a lead byte
        b"\x80\x80\x80\n",     // lone continuation bytes
    ];
    let t = t0();
    for bytes in cases {
        let want = String::from_utf8_lossy(bytes);
        for split in 0..=bytes.len() {
            for split2 in split..=bytes.len() {
                let mut out = assembler(1024);
                let mut got = Vec::new();
                for part in [&bytes[..split], &bytes[split..split2], &bytes[split2..]] {
                    out.handle_bytes(part, t);
                    got.extend(drain(&mut out, t));
                }
                assert_eq!(got.concat(), want, "{bytes:?} split at {split}/{split2}");
            }
        }
    }
}

#[test]
fn lines_together_are_one_event_and_the_partial_line_waits() {
    let t = t0();
    let mut out = assembler(1024);
    out.handle_bytes(b"a\nb\nc", t);
    assert_eq!(drain(&mut out, t), ["a\nb\n"]);
    assert_eq!(out.poll_timeout(), Some(t + ms(50)));
}

#[test]
fn partial_line_is_sent_at_the_deadline_and_not_before() {
    let t = t0();
    let mut out = assembler(1024);
    out.handle_bytes(b"Password: ", t);
    assert_eq!(drain(&mut out, t), Vec::<String>::new());
    assert_eq!(out.poll_text(t + ms(49)), None);
    assert_eq!(out.poll_timeout(), Some(t + ms(50)));
    assert_eq!(drain(&mut out, t + ms(50)), ["Password: "]);
    assert_eq!(out.poll_timeout(), None);
}

#[test]
fn partial_line_deadline_counts_from_its_first_byte() {
    // A dot every 10 ms is never quiet; it is still sent within the delay.
    let t = t0();
    let mut out = assembler(1024);
    let mut sent = Vec::new();
    for i in 0..10 {
        let now = t + ms(10 * i);
        out.handle_bytes(b".", now);
        sent.extend(drain(&mut out, now).into_iter().map(|s| (i, s)));
        if let Some(due) = out.poll_timeout() {
            assert!(due > now);
        }
    }
    assert_eq!(sent, [(5, "......".to_owned())]);
    assert_eq!(out.poll_timeout(), Some(t + ms(60 + 50)));
}

#[test]
fn partial_after_lines_counts_from_the_read_that_ended_the_line() {
    let t = t0();
    let mut out = assembler(1024);
    out.handle_bytes(b"abc", t);
    assert_eq!(drain(&mut out, t), Vec::<String>::new());
    out.handle_bytes(b"\nde", t + ms(40));
    assert_eq!(drain(&mut out, t + ms(40)), ["abc\n"]);
    assert_eq!(out.poll_timeout(), Some(t + ms(90)));
    assert_eq!(drain(&mut out, t + ms(89)), Vec::<String>::new());
    assert_eq!(drain(&mut out, t + ms(90)), ["de"]);
}

#[test]
fn carriage_return_progress_bar_is_a_partial_line_that_streams() {
    let t = t0();
    let mut out = assembler(1024);
    // Redraws within one partial-line delay travel together, CRs exact.
    out.handle_bytes(b"\r 10%", t);
    out.handle_bytes(b"\r 20%", t + ms(10));
    out.handle_bytes(b"\r 30%", t + ms(20));
    assert_eq!(drain(&mut out, t + ms(20)), Vec::<String>::new());
    assert_eq!(out.poll_timeout(), Some(t + ms(50)));
    assert_eq!(drain(&mut out, t + ms(50)), ["\r 10%\r 20%\r 30%"]);
    // The next redraw starts a new delay: a bar that never writes LF still streams.
    out.handle_bytes(b"\r 40%", t + ms(60));
    assert_eq!(drain(&mut out, t + ms(109)), Vec::<String>::new());
    assert_eq!(drain(&mut out, t + ms(110)), ["\r 40%"]);
    // The final newline ends the line at once.
    out.handle_bytes(b"\r100%\n", t + ms(120));
    assert_eq!(drain(&mut out, t + ms(120)), ["\r100%\n"]);
}

#[test]
fn crlf_split_across_reads_stays_one_line_end() {
    let t = t0();
    let mut out = assembler(1024);
    out.handle_bytes(b"line\r", t);
    assert_eq!(drain(&mut out, t), Vec::<String>::new());
    out.handle_bytes(b"\nnext", t + ms(5));
    assert_eq!(drain(&mut out, t + ms(5)), ["line\r\n"]);
    out.handle_bytes(b"\r\n", t + ms(6));
    assert_eq!(drain(&mut out, t + ms(6)), ["next\r\n"]);
    assert_eq!(out.poll_timeout(), None);
}

#[test]
fn cr_before_an_incomplete_character_waits_with_it() {
    let t = t0();
    let mut out = assembler(1024);
    out.handle_bytes(b"a\r\xe2\x82", t);
    assert_eq!(drain(&mut out, t), Vec::<String>::new());
    out.handle_bytes(b"\xac", t + ms(1));
    assert_eq!(drain(&mut out, t + ms(49)), Vec::<String>::new());
    // The partial line's first byte arrived at t.
    assert_eq!(drain(&mut out, t + ms(50)), ["a\r€"]);
}

#[test]
fn cap_split_prefers_the_last_line_end_within_the_cap() {
    let t = t0();
    let mut out = assembler(8);
    out.handle_bytes(b"ab\ncd\nefghijklmn\nop", t);
    assert_eq!(drain(&mut out, t), ["ab\ncd\n", "efghijkl", "mn\n"]);
    assert_eq!(drain(&mut out, t + ms(50)), ["op"]);
}

#[test]
fn cap_split_never_cuts_a_crlf() {
    let t = t0();
    let mut out = assembler(8);
    out.handle_bytes(b"ab\ncdef\r\nxyz", t);
    assert_eq!(drain(&mut out, t), ["ab\n", "cdef\r\n"]);
}

#[test]
fn cap_split_is_on_a_character_boundary() {
    let t = t0();
    for cap in 4..=12 {
        let mut out = assembler(cap);
        let text = "€€€😀😀€é\n";
        out.handle_bytes(text.as_bytes(), t);
        let got = drain(&mut out, t);
        assert!(
            got.iter().all(|s| !s.is_empty() && s.len() <= cap),
            "{cap}: {got:?}"
        );
        assert_eq!(got.concat(), text);
        // Each piece but the last fills the cap as far as characters allow.
        for (piece, next) in got.iter().zip(got.iter().skip(1)) {
            let next_char = next.chars().next().unwrap().len_utf8();
            assert!(piece.len() + next_char > cap, "{cap}: {got:?}");
        }
    }
}

#[test]
fn held_text_reaching_the_cap_is_sent_at_once() {
    let t = t0();
    let mut out = assembler(6);
    out.handle_bytes(b"abc", t);
    assert_eq!(drain(&mut out, t), Vec::<String>::new());
    out.handle_bytes(b"def", t + ms(1));
    assert_eq!(drain(&mut out, t + ms(1)), ["abcdef"]);
    assert_eq!(out.poll_timeout(), None);
}

#[test]
fn too_small_cap_is_raised_to_one_character() {
    let t = t0();
    let mut out = assembler(1);
    assert_eq!(out.config().max_event_bytes, Assembler::MIN_EVENT_BYTES);
    out.handle_bytes("😀😀".as_bytes(), t);
    assert_eq!(drain(&mut out, t), ["😀", "😀"]);
}

#[test]
fn eof_flushes_everything_and_an_incomplete_character() {
    let t = t0();
    let mut out = assembler(4);
    out.handle_bytes(b"abcdef\xf0\x9f", t);
    assert_eq!(drain(&mut out, t), ["abcd"]);
    out.handle_eof();
    assert_eq!(out.poll_timeout(), Some(t));
    assert_eq!(drain(&mut out, t), ["ef", "\u{FFFD}"]);
    assert_eq!(out.poll_timeout(), None);
    out.handle_bytes(b"late", t + ms(1));
    assert_eq!(drain(&mut out, t + ms(1)), Vec::<String>::new());
    assert_eq!(out.bytes_in(), 8);
}

#[test]
fn clock_going_backwards_does_not_move_the_deadline_back() {
    let t = t0() + ms(1000);
    let mut out = assembler(1024);
    out.handle_bytes(b"x", t);
    assert_eq!(out.poll_text(t + ms(10)), None);
    out.handle_bytes(b"y", t - ms(500));
    assert_eq!(out.poll_text(t - ms(500)), None);
    assert_eq!(out.poll_timeout(), Some(t + ms(50)));
    out.handle_bytes(b"\nz", t - ms(600));
    assert_eq!(drain(&mut out, t - ms(600)), ["xy\n"]);
    // "z" arrived at the latest time seen, not at the stale one.
    assert_eq!(out.poll_timeout(), Some(t + ms(60)));
}

#[test]
fn any_chunking_gives_the_same_text_on_generated_inputs() {
    // Bytes drawn mostly from line ends and pieces of multi-byte characters, so that
    // splits land inside characters and CRLFs often.
    const ALPHABET: &[u8] = b"\n\r\r\na\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9\xff\x80";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = (next() % 200) as usize;
        let mut data: Vec<u8> = (0..3).map(|_| next() as u8).collect();
        data.extend((0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]));
        fuzz_assembler(&data, t0());
    }
}

#[test]
fn fuzz_entry_accepts_sample_inputs() {
    fuzz_assembler(b"", t0());
    fuzz_assembler(
        b"\x00\x32\x07a\nb\xe2\x82\xac\r\rc\r\n\xff\xf0\x9f\x98",
        t0(),
    );
    fuzz_assembler(b"\xff\x00\x01hello\nworld\xe2", t0());
    let long: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
    for size in [0u8, 5, 60, 127, 128, 200] {
        let mut data = vec![size, 10, 3];
        data.extend_from_slice(&long);
        fuzz_assembler(&data, t0());
    }
}
