//! Scenario 6: the core's hot loops on one core, against `memcpy` of the same bytes
//! as the ceiling (and serde_json's string escaping as the common alternative).

use std::hint::black_box;
use std::time::{Duration, Instant};

use spout_core::assembler::{Assembler, AssemblerConfig};
use spout_core::event::Stream;
use spout_core::id::EventId;
use spout_core::sse;

/// One measured loop: a name and MB/s of input.
pub struct Rate {
    /// What was measured.
    pub name: &'static str,
    /// Input megabytes (10^6) per second, best of the rounds.
    pub mb_s: f64,
}

/// Runs every micro benchmark over `mb` megabytes of 100-byte output lines.
#[must_use]
pub fn run(mb: usize) -> Vec<Rate> {
    let line = format!("{:0>10} {:0>19} {}\n", 1, 0, "x".repeat(68));
    let text = line.repeat(mb * 1_000_000 / line.len());
    // The texts events carry: whole lines, up to the 16 KiB event cap.
    let pieces: Vec<&str> = text
        .as_bytes()
        .chunks(163 * line.len())
        .map(|c| std::str::from_utf8(c).expect("invariant: ASCII"))
        .collect();
    let bytes = text.len();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut rates = Vec::new();

    // Every loop writes one event's worth into a buffer that is cleared each time, as
    // the server does per event: the output stays in cache, so the figures compare
    // the work per byte, not the machine's memory bandwidth.
    rates.push(best("memcpy (ceiling)", bytes, || {
        for p in &pieces {
            out.clear();
            out.extend_from_slice(p.as_bytes());
            black_box(&out);
        }
    }));
    rates.push(best("sse::encode_output_event", bytes, || {
        for (i, p) in pieces.iter().enumerate() {
            out.clear();
            let id = EventId::new(i as u64 + 2).expect("invariant: not 0");
            sse::encode_output_event(id, Stream::Stdout, p, &mut out);
            black_box(&out);
        }
    }));
    rates.push(best("serde_json string escape (reference)", bytes, || {
        for p in &pieces {
            out.clear();
            serde_json::to_writer(&mut out, p).expect("invariant: Vec never fails");
            black_box(&out);
        }
    }));
    let t0 = Instant::now();
    rates.push(best("assembler (64 KiB reads)", bytes, || {
        let mut a = Assembler::new(AssemblerConfig::default());
        let mut n = 0usize;
        for block in text.as_bytes().chunks(64 * 1024) {
            a.handle_bytes(block, t0);
            while let Some(t) = a.poll_text(t0) {
                n += t.len();
            }
        }
        a.handle_eof();
        while let Some(t) = a.poll_text(t0) {
            n += t.len();
        }
        assert_eq!(n, bytes, "the assembler lost text");
    }));
    rates
}

/// Best of five rounds, in MB/s of `bytes`.
fn best(name: &'static str, bytes: usize, mut f: impl FnMut()) -> Rate {
    f(); // warm caches and allocations
    let fastest = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_secs(1));
    Rate {
        name,
        mb_s: bytes as f64 / fastest.as_secs_f64() / 1e6,
    }
}
