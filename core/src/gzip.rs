//! gzip (RFC 1952) for streamed bodies, built so that nothing is ever held back:
//! every piece a response writes ends on a deflate flush point, so a client's
//! streaming decoder yields everything written so far.
//!
//! Rules:
//! 1. A response is one gzip [`Member`]: a 10-byte header, deflate blocks, an empty
//!    final block, then CRC32 and length. The member tracks the CRC by combining the
//!    CRCs of its pieces, so a piece compressed once is never re-read to be
//!    checksummed. The combine is zlib's `crc32_combine_op`: each block keeps the
//!    operator for its length (x^(8·len) mod P, computed once per job), so a
//!    subscriber pays one 32-step multiply per block, not `Hasher::combine`'s
//!    matrix powers (measured: that alone cost more than the copy).
//! 2. A [`Block`] is compressed once per job and shared by every gzip subscriber: a
//!    *full-flush* raw deflate block (it refers to no earlier bytes, ends
//!    byte-aligned), so it decodes after any other flush point of any stream.
//! 3. A subscriber's own pieces (`retry:`, heartbeats, gaps) are *stored* blocks: no
//!    compressor, a few bytes of overhead, decodable at once.
//! 4. A per-response compressor ([`BodyEncoder`]) *sync*-flushes each piece (the
//!    window carries over, for ratio) and is dropped as soon as a piece is short (the
//!    reader caught up with its source): an idle response holds no compressor.

use crate::http::ContentCoding;
use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress};
use std::sync::Arc;

/// The gzip header spout writes: deflate, no name, no mtime, unknown OS.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty fixed-Huffman block with BFINAL set: ends the deflate stream.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// The compression level of shared blocks and bodies (1 = fastest, 9 = smallest).
/// Measured in docs/benchmarks.md: on build logs 6 costs little more than 1 (the
/// work is done once per job) for a better ratio.
pub const LEVEL: u32 = 6;

/// Pieces at least this long keep a [`BodyEncoder`]'s compressor for the next one;
/// a shorter piece means the source is drained (a followed log that caught up).
const KEEP_WARM: usize = 32 * 1024;

/// Largest stored block payload (its length is 16 bits).
const STORED_MAX: usize = 0xFFFF;

/// A raw deflate compressor (miniz_oxide, about 300 KB while it exists).
pub struct Deflater {
    c: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new(LEVEL)
    }
}

impl Deflater {
    /// A raw deflate compressor (no zlib header) at `level` (0–9).
    ///
    /// Never inlined: miniz builds its ~64 KiB state on the stack before boxing it,
    /// and a caller that inlined this would carry that frame (and touch it, through
    /// the stack probe) on every call, gzip or not: an idle `spout-blocking`
    /// connection's stack grew from ~19 to ~74 KiB that way.
    #[must_use]
    #[inline(never)]
    pub fn new(level: u32) -> Deflater {
        Deflater {
            c: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Appends `input` compressed to `out`, ending with a flush point: `full` (the
    /// next output refers to nothing before it) or sync (the window carries over).
    pub fn compress(&mut self, input: &[u8], full: bool, out: &mut Vec<u8>) {
        let flush = if full {
            FlushCompress::Full
        } else {
            FlushCompress::Sync
        };
        let mut used = 0;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.c.total_in();
            let before_out = out.len();
            // Errors are impossible for raw deflate with a valid flush; if one came,
            // stopping here still leaves a stream that ends at a flush point.
            if self.c.compress_vec(&input[used..], out, flush).is_err() {
                return;
            }
            used += usize::try_from(self.c.total_in() - before_in).unwrap_or(0);
            // Done when all input is taken and the output buffer was not filled
            // (a full buffer may hide more flush output).
            if used >= input.len() && out.len() < out.capacity() {
                return;
            }
            if used >= input.len() && out.len() == before_out {
                return;
            }
        }
    }
}

/// Bytes compressed once (a full-flush raw deflate block), with the CRC32 and
/// length of what they decode to. Shared by `Arc`.
#[derive(Clone, Debug)]
pub struct Block {
    deflate: Arc<[u8]>,
    crc: u32,
    /// x^(8·len) mod P: what shifts a CRC past this block's bytes.
    shift: u32,
    len: u64,
}

/// The CRC-32 polynomial, reflected.
const POLY: u32 = 0xedb8_8320;

/// a·b modulo P (zlib's `multmodp`), in reflected bit order.
const fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// x^(2^n) mod P for n = 0..32 (zlib's `x2n_table`).
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut p = 1u32 << 30; // x^1
    t[0] = p;
    let mut n = 1;
    while n < 32 {
        p = multmodp(p, p);
        t[n] = p;
        n += 1;
    }
    t
};

/// x^(8·len) mod P: the operator that moves a CRC past `len` bytes.
fn shift_for(len: u64) -> u32 {
    let (mut n, mut k, mut p) = (len, 3usize, 1u32 << 31);
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

impl Block {
    /// Compresses `input` as one full-flush block with `deflater`.
    #[must_use]
    pub fn compress(deflater: &mut Deflater, input: &[u8]) -> Block {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        deflater.compress(input, true, &mut out);
        Block {
            deflate: Arc::from(out),
            crc: crc32fast::hash(input),
            shift: shift_for(input.len() as u64),
            len: input.len() as u64,
        }
    }

    /// The compressed bytes.
    #[must_use]
    pub fn deflate(&self) -> &[u8] {
        &self.deflate
    }

    /// How many bytes it decodes to.
    #[must_use]
    pub fn decoded_len(&self) -> u64 {
        self.len
    }
}

/// One response's gzip member, written piece by piece. A few words: no compressor.
#[derive(Clone, Debug, Default)]
pub struct Member {
    started: bool,
    finished: bool,
    crc: u32,
    len: u64,
}

impl Member {
    /// A member with nothing written yet.
    #[must_use]
    pub fn new() -> Member {
        Member::default()
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&HEADER);
        }
    }

    /// Whether the trailer has been written.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Appends a shared [`Block`] (and the header first, if not yet written).
    pub fn push_block(&mut self, block: &Block, out: &mut Vec<u8>) {
        self.start(out);
        out.extend_from_slice(&block.deflate);
        self.crc = multmodp(block.shift, self.crc) ^ block.crc;
        self.len += block.len;
    }

    /// Appends `data` as stored (uncompressed) blocks.
    pub fn push_stored(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.start(out);
        for piece in data.chunks(STORED_MAX) {
            // invariant: chunks are at most 0xFFFF bytes long.
            let n = u16::try_from(piece.len()).unwrap_or(u16::MAX);
            out.push(0x00); // BFINAL = 0, BTYPE = stored; we are byte-aligned.
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(!n).to_le_bytes());
            out.extend_from_slice(piece);
        }
        self.update(data);
    }

    fn update(&mut self, data: &[u8]) {
        let mut h = Hasher::new_with_initial(self.crc);
        h.update(data);
        self.crc = h.finalize();
        self.len += data.len() as u64;
    }

    /// Appends `data` compressed by `deflater` and flushed (`full` or sync).
    pub fn push_compressed(
        &mut self,
        deflater: &mut Deflater,
        data: &[u8],
        full: bool,
        out: &mut Vec<u8>,
    ) {
        self.start(out);
        deflater.compress(data, full, out);
        self.update(data);
    }

    /// Ends the member: the final block and the trailer (the header too, for an
    /// empty body). Does nothing the second time.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(out);
        self.finished = true;
        out.extend_from_slice(&FINAL_BLOCK);
        out.extend_from_slice(&self.crc.to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&((self.len & 0xFFFF_FFFF) as u32).to_le_bytes());
    }
}

/// Encodes one response body in its negotiated coding: identity passes bytes
/// through; gzip compresses each piece with a sync flush. See rule 4 for when its
/// compressor lives.
#[derive(Debug)]
pub struct BodyEncoder {
    gzip: Option<(Member, Option<Box<Deflater>>)>,
}

impl BodyEncoder {
    /// An encoder for `coding`.
    #[must_use]
    pub fn new(coding: ContentCoding) -> BodyEncoder {
        BodyEncoder {
            gzip: (coding == ContentCoding::Gzip).then(|| (Member::new(), None)),
        }
    }

    /// Whether this encoder holds a compressor now (for tests and metrics).
    #[must_use]
    pub fn holds_compressor(&self) -> bool {
        matches!(&self.gzip, Some((_, Some(_))))
    }

    /// Appends `data` encoded to `out`; every byte of `data` is decodable from what
    /// has been appended so far.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some((member, deflater)) = &mut self.gzip else {
            out.extend_from_slice(data);
            return;
        };
        if data.is_empty() {
            return;
        }
        let d = deflater.get_or_insert_with(Box::default);
        member.push_compressed(d, data, false, out);
        if data.len() < KEEP_WARM {
            *deflater = None;
        }
    }

    /// Appends what ends the body (the gzip trailer; nothing for identity).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some((member, deflater)) = &mut self.gzip {
            *deflater = None;
            member.finish(out);
        }
    }
}

/// The whole of `data` as one gzip member (for small complete bodies).
#[must_use]
pub fn compress_all(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3 + 32);
    let mut member = Member::new();
    member.push_compressed(&mut Deflater::default(), data, false, &mut out);
    member.finish(&mut out);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    /// Decodes `bytes` as much as possible; returns what came out and whether the
    /// member ended cleanly.
    pub(crate) fn decode_prefix(bytes: &[u8]) -> (Vec<u8>, bool) {
        let mut d = flate2::Decompress::new(false);
        let mut out = Vec::new();
        if bytes.len() < HEADER.len() {
            return (out, false);
        }
        assert_eq!(bytes[..HEADER.len()], HEADER);
        let body = &bytes[HEADER.len()..];
        let mut used = 0;
        loop {
            out.reserve(64 * 1024);
            let before = d.total_in();
            let status = d
                .decompress_vec(&body[used..], &mut out, flate2::FlushDecompress::Sync)
                .expect("valid deflate");
            used += (d.total_in() - before) as usize;
            if status == flate2::Status::StreamEnd {
                return (out, true);
            }
            if d.total_in() == before && out.len() < out.capacity() {
                return (out, false);
            }
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn shared_blocks_and_stored_pieces_make_one_valid_member() {
        let mut d = Deflater::default();
        let a = Block::compress(&mut d, b"id: 1\ndata: hello hello hello\n\n");
        let b = Block::compress(&mut d, b"id: 2\ndata: hello hello world\n\n");
        // Two subscribers at different places, with their own pieces between.
        for order in [&[&a, &b][..], &[&b][..], &[&b, &a, &b][..]] {
            let mut m = Member::new();
            let (mut out, mut want) = (Vec::new(), Vec::new());
            m.push_stored(b"retry: 2000\n\n", &mut out);
            want.extend_from_slice(b"retry: 2000\n\n");
            for block in order {
                m.push_block(block, &mut out);
                m.push_stored(b":\n\n", &mut out);
                want.extend_from_slice(&gunzip_block(block));
                want.extend_from_slice(b":\n\n");
            }
            m.finish(&mut out);
            assert_eq!(gunzip(&out), want);
        }
    }

    fn gunzip_block(block: &Block) -> Vec<u8> {
        let mut m = Member::new();
        let mut out = Vec::new();
        m.push_block(block, &mut out);
        m.finish(&mut out);
        gunzip(&out)
    }

    #[test]
    fn every_write_decodes_alone_up_to_its_end() {
        let mut enc = BodyEncoder::new(ContentCoding::Gzip);
        let (mut wire, mut want) = (Vec::new(), Vec::new());
        for i in 0..50u32 {
            let piece = format!("line {i} of a build log, compiling crate {}\n", i % 7);
            let piece = piece.repeat(1 + (i as usize % 3) * 900);
            enc.encode(piece.as_bytes(), &mut wire);
            want.extend_from_slice(piece.as_bytes());
            let (got, ended) = decode_prefix(&wire);
            assert!(!ended);
            assert_eq!(got, want, "after piece {i}");
        }
        enc.finish(&mut wire);
        assert_eq!(gunzip(&wire), want);
        assert!(!enc.holds_compressor());
    }

    #[test]
    fn an_idle_body_holds_no_compressor() {
        let mut enc = BodyEncoder::new(ContentCoding::Gzip);
        let mut out = Vec::new();
        enc.encode(&vec![b'x'; KEEP_WARM], &mut out);
        assert!(enc.holds_compressor(), "a full piece: more is coming");
        enc.encode(b"short", &mut out);
        assert!(!enc.holds_compressor(), "caught up: dropped");
        enc.encode(&vec![b'y'; KEEP_WARM], &mut out);
        enc.finish(&mut out);
        let mut want = vec![b'x'; KEEP_WARM];
        want.extend_from_slice(b"short");
        want.extend(vec![b'y'; KEEP_WARM]);
        assert_eq!(gunzip(&out), want);
    }

    #[test]
    fn crc_combine_matches_crc_of_the_concatenation() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cut in [0, 1, 7, 100, 4096, 5000] {
            let (a, b) = data.split_at(cut);
            let got = multmodp(shift_for(b.len() as u64), crc32fast::hash(a)) ^ crc32fast::hash(b);
            assert_eq!(got, crc32fast::hash(&data), "cut {cut}");
        }
    }

    #[test]
    fn empty_and_large_bodies() {
        assert_eq!(gunzip(&compress_all(b"")), b"");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(gunzip(&compress_all(&big)), big);
        let mut m = Member::new();
        let mut out = Vec::new();
        m.push_stored(&big, &mut out);
        m.finish(&mut out);
        m.finish(&mut out); // twice: no second trailer
        assert_eq!(gunzip(&out), big);
        let mut id = BodyEncoder::new(ContentCoding::Identity);
        let mut out = Vec::new();
        id.encode(b"abc", &mut out);
        id.finish(&mut out);
        assert_eq!(out, b"abc");
    }
}

/// The figures behind the design (docs/benchmarks.md, "Compression"): run with
/// `SPOUT_GZIP_LOG=build.log cargo test --release -p spout-core --lib gzip::bench -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use super::*;
    use crate::event::Stream;
    use crate::id::EventId;
    use crate::sse;

    /// The log's lines as stdout events of 1–4 lines each (as reads group them).
    fn events(text: &str) -> Vec<Vec<u8>> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut out = Vec::new();
        let (mut i, mut n) = (0, 0usize);
        while i < lines.len() {
            let take = 1 + n % 4;
            let chunk: String = lines[i..(i + take).min(lines.len())].concat();
            let mut wire = Vec::new();
            let id = EventId::new(out.len() as u64 + 2).expect("ids from 2");
            sse::encode_output_event(id, Stream::Stdout, &chunk, &mut wire);
            out.push(wire);
            i += take;
            n += 1;
        }
        out
    }

    fn secs(f: impl FnOnce()) -> f64 {
        #[allow(clippy::disallowed_methods)] // a benchmark measures time
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }

    #[test]
    #[ignore = "a benchmark: prints figures"]
    fn bench() {
        let path = std::env::var("SPOUT_GZIP_LOG").unwrap_or_else(|_| "Cargo.toml".into());
        #[allow(clippy::disallowed_methods)] // a benchmark reads its input
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("the log")).into_owned();
        let evs = events(&text);
        let wire: usize = evs.iter().map(Vec::len).sum();
        let subs = 100;
        println!(
            "log {path}: {} bytes, {} events, {} wire bytes",
            text.len(),
            evs.len(),
            wire
        );
        let gb = (wire * subs) as f64 / 1e9;
        // Identity fan-out: every subscriber copies every event into its buffer.
        let mut buf = Vec::with_capacity(wire);
        let t_id = secs(|| {
            for _ in 0..subs {
                buf.clear();
                for e in &evs {
                    buf.extend_from_slice(e);
                }
                std::hint::black_box(&buf);
            }
        });
        println!("identity fan-out: {:.3} s/GB", t_id / gb);
        for level in [1, 6] {
            // Shared: each event compressed once; per subscriber a copy + CRC combine.
            let mut d = Deflater::new(level);
            let mut blocks = Vec::new();
            let t_once = secs(|| blocks = evs.iter().map(|e| Block::compress(&mut d, e)).collect());
            let gz: usize = blocks.iter().map(|b| b.deflate().len()).sum();
            let t_fan = secs(|| {
                for _ in 0..subs {
                    buf.clear();
                    let mut m = Member::new();
                    for b in &blocks {
                        m.push_block(b, &mut buf);
                    }
                    m.finish(&mut buf);
                    std::hint::black_box(&buf);
                }
            });
            println!(
                "shared, level {level}: ratio {:.2}, compress once {:.3} s/GB of input, fan-out {:.3} s/GB ({:.2}x identity; {:.2}x with the once-per-job cost spread over {subs} subscribers)",
                wire as f64 / gz as f64,
                t_once / (wire as f64 / 1e9),
                t_fan / gb,
                t_fan / t_id,
                (t_fan + t_once) / t_id,
            );
            // Per subscriber: one deflate stream each, sync flush per event.
            let per = 10;
            let mut size = 0;
            let t_per = secs(|| {
                for _ in 0..per {
                    buf.clear();
                    let mut d = Deflater::new(level);
                    let mut m = Member::new();
                    for e in &evs {
                        m.push_compressed(&mut d, e, false, &mut buf);
                    }
                    m.finish(&mut buf);
                    size = buf.len();
                }
            });
            println!(
                "per subscriber, level {level}: ratio {:.2}, fan-out {:.3} s/GB ({:.1}x identity)",
                wire as f64 / size as f64,
                t_per / ((wire * per) as f64 / 1e9),
                (t_per / per as f64) / (t_id / subs as f64),
            );
        }
        println!(
            "memory: Member {} B, Subscriber {} B, Deflater (boxed miniz_oxide) about {} KB",
            std::mem::size_of::<Member>(),
            std::mem::size_of::<crate::subscriber::Subscriber>(),
            (std::mem::size_of::<flate2::Compress>()
                + 64 * 1024
                + 2 * 32 * 1024 * 2
                + 32 * 1024
                + 20_000)
                / 1000,
        );
    }
}
