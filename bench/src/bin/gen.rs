//! The load generator every target runs as its job's process: fixed 100-byte lines
//! `SEQ TS_NS xxx…\n` on stdout, so a client can check order and completeness of any
//! peer's output by content alone, and measure latency from the moment of the write.
//!
//! Usage: `gen [--go FILE] MODE ARGS`
//! - `lines N`: N lines as fast as possible, in 64 KiB writes.
//! - `rate R SECS`: R lines per second for SECS seconds, one write per line.
//! - `events N`: N lines, one write(2) per line (so a server sees many small reads).
//! - `bytes TOTAL`: at least TOTAL bytes of lines as fast as possible.
//! - `quiet SECS`: one line, then silence for SECS seconds.
//!
//! `--go FILE` waits until FILE exists before the first write: the client creates it
//! once every subscriber is connected, so "subscribed before the job writes" holds for
//! every peer, including those that do not replay history.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of every line, newline included.
const LINE: usize = 100;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--go") && args.len() >= 2 {
        let file = args[1].clone();
        args.drain(..2);
        // Polling is fine: it costs nothing measurable and happens before the clock starts.
        while !std::path::Path::new(&file).exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let mode = args.first().cloned().unwrap_or_else(|| usage());
    let out = std::io::stdout();
    let mut out = out.lock();
    let result = match mode.as_str() {
        "lines" => fast(&mut out, num(1)),
        "bytes" => fast(&mut out, num(1).div_ceil(LINE as u64)),
        "events" => (1..=num(1)).try_for_each(|seq| out.write_all(&line(seq, 0))),
        "rate" => rate(&mut out, num(1), num(2)),
        "quiet" => out.write_all(&line(1, now_ns())).map(|()| {
            std::thread::sleep(Duration::from_secs(num(1)));
        }),
        _ => usage(),
    };
    // A closed pipe (the server stopped the job) is a normal end for a generator.
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("gen: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: gen [--go FILE] lines N | bytes TOTAL | events N | rate R SECS | quiet SECS");
    std::process::exit(2)
}

/// Nanoseconds since the epoch: the wall clock is shared by every process on the
/// machine, so a client can subtract it from its own reading.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One line: `SSSSSSSSSS TTTTTTTTTTTTTTTTTTT ` then padding to 99 bytes, then LF.
fn line(seq: u64, ts: u64) -> [u8; LINE] {
    let mut l = [b'x'; LINE];
    let head = format!("{seq:010} {ts:019} ");
    l[..head.len()].copy_from_slice(head.as_bytes());
    l[LINE - 1] = b'\n';
    l
}

fn fast(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    let mut block = Vec::with_capacity(64 * 1024);
    for seq in 1..=n {
        block.extend_from_slice(&line(seq, 0));
        if block.len() + LINE > 64 * 1024 {
            out.write_all(&block)?;
            block.clear();
        }
    }
    out.write_all(&block)?;
    out.flush()
}

fn rate(out: &mut impl Write, per_s: u64, secs: u64) -> std::io::Result<()> {
    let t0 = Instant::now();
    let interval = Duration::from_secs(1) / per_s.max(1) as u32;
    for seq in 1..=per_s * secs {
        let due = t0 + interval * (seq - 1) as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        out.write_all(&line(seq, now_ns()))?;
        out.flush()?;
    }
    Ok(())
}
