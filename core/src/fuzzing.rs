//! Drivers for tests and fuzzing: a scenario simulator ([`Sim`]) that holds one
//! job, its fake archive and subscribers, and moves simulated time to the next
//! deadline as a runtime would sleep; plus the fuzz entry points of every module.
//!
//! Nothing here is used by the runtimes.

use crate::event::{ExitStatus, Stream};
use crate::frames::Frames;
use crate::http::{self, Request};
use crate::job::{Action, Job, JobSettings, Signal};
use crate::log::Persistence;
use crate::registry::{Inputs, JobCell, Registry, Reply};
use crate::subscriber::{Next, Refusal, StreamSettings, SubscribeParams, Subscriber};
use crate::JobId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 2026-11-22T10:00:00.000Z, the start time in SPEC.md's example.
pub fn wall0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_341_600)
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Asks `reg` one request as a runtime would (HTTP/1.1, `Host: 127.0.0.1:8080`,
/// `body` as JSON): admission, then the answer; a refusal at admission comes back
/// as its full response. For tests of the registry and of what drives it.
pub fn ask<C: JobCell>(
    reg: &mut Registry<C>,
    method: &str,
    target: &str,
    body: &[u8],
    inputs: Inputs,
) -> Reply {
    let length = body.len().to_string();
    let headers: &[(&str, &[u8])] = &[
        ("Host", b"127.0.0.1:8080"),
        ("Content-Type", b"application/json"),
        ("Content-Length", length.as_bytes()),
    ];
    let req = Request {
        method,
        target,
        headers,
    };
    match reg.admit(&req, 1) {
        http::Admission::Handle(admitted) => reg.handle(&req, admitted, body, inputs),
        http::Admission::Respond(r) => Reply::Full(r),
    }
}

/// Simulated time zero for the core's tests: any instant will do, and this is the
/// one clock read of the core's test code.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn t0() -> Instant {
    Instant::now()
}

/// One job, its fake archive file, and what it asked of the runtime.
pub struct Sim {
    /// Simulated start time.
    pub t0: Instant,
    /// Simulated now.
    pub now: Instant,
    /// The job under test.
    pub job: Job,
    /// The archive file's bytes.
    pub archive: Vec<u8>,
    /// Signals sent to the process group, in order.
    pub signals: Vec<Signal>,
    /// Whether the job said to stop reading its pipes.
    pub stopped_reading: bool,
    /// Whether the job said it is finished.
    pub finished: bool,
    /// How many times metadata was saved.
    pub meta_saves: usize,
    /// How many syncs were asked.
    pub syncs: usize,
}

impl Sim {
    /// A job about to spawn, at simulated time `t0`.
    pub fn new(settings: JobSettings, t0: Instant) -> Sim {
        let job = Job::new(
            JobId::from_random(*b"spout-sim-job-id"),
            "build".into(),
            vec!["make".into(), "-j2".into()],
            settings,
            wall0(),
        );
        Sim {
            t0,
            now: t0,
            job,
            archive: Vec::new(),
            signals: Vec::new(),
            stopped_reading: false,
            finished: false,
            meta_saves: 0,
            syncs: 0,
        }
    }

    /// A memory-only job with a window of `window_bytes`.
    pub fn memory(window_bytes: usize, t0: Instant) -> Sim {
        Sim::new(
            JobSettings {
                persistence: Persistence::Memory,
                window_bytes,
                ..JobSettings::default()
            },
            t0,
        )
    }

    /// The simulated wall clock.
    pub fn wall(&self) -> SystemTime {
        wall0() + (self.now - self.t0)
    }

    /// Drains every action, as a runtime would.
    pub fn drive(&mut self) {
        while let Some(action) = self.job.poll_action() {
            match action {
                Action::Persist { records, upto } => {
                    self.archive.extend_from_slice(&records);
                    self.job.handle_persisted(upto, self.now);
                }
                Action::Signal(s) => self.signals.push(s),
                Action::StopReading => self.stopped_reading = true,
                Action::SaveMeta => self.meta_saves += 1,
                Action::Sync => self.syncs += 1,
                Action::Finished => self.finished = true,
            }
        }
    }

    /// The process spawned (pid 4242).
    pub fn spawn(&mut self) {
        let wall = self.wall();
        self.job.handle_spawned(4242, self.now, wall);
        self.drive();
    }

    /// The process wrote `bytes`.
    pub fn out(&mut self, stream: Stream, bytes: &[u8]) {
        let _ = self.job.handle_output(stream, bytes, self.now);
        self.drive();
    }

    /// Moves time forward by `d`, firing each deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut guard = 0;
        while let Some(t) = self.job.poll_timeout() {
            if t > end {
                break;
            }
            assert!(guard < 10_000, "deadline does not move forward");
            guard += 1;
            self.now = self.now.max(t);
            self.job.handle_timeout(self.now);
            self.drive();
        }
        self.now = end;
        self.job.handle_timeout(self.now);
        self.drive();
    }

    /// Both pipes closed and the process ended.
    pub fn exit(&mut self, code: Option<i32>, signal: Option<i32>) {
        self.job.handle_eof(Stream::Stdout, self.now);
        self.job.handle_eof(Stream::Stderr, self.now);
        self.job.handle_exit(ExitStatus { code, signal }, self.now);
        self.drive();
    }

    /// A new subscription with default settings and no jitter.
    ///
    /// # Errors
    /// The subscription's [`Refusal`].
    pub fn subscribe(&self, params: SubscribeParams<'_>) -> Result<Subscriber, Refusal> {
        let settings = StreamSettings {
            retry_ms: 2000,
            heartbeat: Duration::from_secs(15),
            heartbeat_event: false,
        };
        // jitter 20 of 0..=40 means no jitter: retry stays 2000.
        Subscriber::open(self.job.log(), &params, &settings, 20, self.now)
    }

    /// What a runtime's read of `len` bytes at `offset` of the archive gives (short
    /// at its end, empty past it).
    fn archive_read(&self, offset: u64, len: usize) -> &[u8] {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.archive.len());
        let end = start.saturating_add(len).min(self.archive.len());
        &self.archive[start..end]
    }

    /// Everything a subscriber can write now, until it must wait or the stream ends.
    pub fn read(&self, sub: &mut Subscriber) -> (String, Next) {
        let mut buf = Vec::new();
        loop {
            match sub.poll_transmit(self.job.log(), self.now, &mut buf) {
                Next::Wrote => continue,
                Next::ReadArchive { offset, first, len } => {
                    let read = self.archive_read(offset, len);
                    sub.handle_archive(self.job.log(), offset, first, read, &mut buf);
                }
                other => return (String::from_utf8_lossy(&buf).into_owned(), other),
            }
        }
    }

    /// [`Sim::read`] through [`Frames`] sharing events of `min_shared` bytes or
    /// more, as the smol runtime writes: each call's frames written (and cleared)
    /// before the next.
    pub fn read_frames(&self, sub: &mut Subscriber, min_shared: usize) -> (String, Next) {
        let mut wire = Vec::new();
        let mut frames = Frames::with_min_shared(min_shared);
        loop {
            frames.clear(0);
            let next = sub.poll_transmit(self.job.log(), self.now, &mut frames);
            wire.extend(frames.slices(&[]).flatten());
            match next {
                Next::Wrote => continue,
                Next::ReadArchive { offset, first, len } => {
                    let read = self.archive_read(offset, len);
                    frames.clear(0);
                    sub.handle_archive(self.job.log(), offset, first, read, &mut frames);
                    wire.extend(frames.slices(read).flatten());
                }
                other => return (String::from_utf8_lossy(&wire).into_owned(), other),
            }
        }
    }
}

/// Checks one subscriber's transcript so far: ids follow on from `expect` with no
/// repeat and no hole, where a `gap` may stand for ids (only where `gaps_ok`).
/// Returns the next expected id.
fn check_transcript(wire: &str, mut expect: u64, gaps_ok: bool) -> u64 {
    let mut decoder = crate::sse::Decoder::new();
    decoder.feed(wire.as_bytes());
    while let Some(item) = decoder.poll() {
        let crate::sse::Item::Event(ev) = item else {
            continue;
        };
        if ev.event_type == "heartbeat" {
            continue;
        }
        let id: u64 = ev
            .last_event_id
            .parse()
            .expect("every log event has a numeric id");
        if ev.event_type == "gap" {
            assert!(gaps_ok, "gap where none may be: {wire}");
            let v: serde_json::Value = serde_json::from_str(&ev.data).expect("gap data is JSON");
            assert_eq!(v["from"].as_u64(), Some(expect), "gap starts at the cursor");
            assert_eq!(v["to"].as_u64(), Some(id), "gap carries id = to");
            assert!(id >= expect);
        } else {
            assert_eq!(id, expect, "ids in order, once: {wire}");
        }
        expect = id + 1;
    }
    expect
}

/// Reads `sub` through both outputs (a copy of it through [`Frames`], sharing
/// every event or only some, as `pick` says) and checks they give the same bytes.
fn read_both(sim: &Sim, sub: &mut Subscriber, pick: u8) -> (String, Next) {
    let mut twin = sub.clone();
    let copied = sim.read(sub);
    let min_shared = [0, 1, 30, 60, 1 << 20][usize::from(pick % 5)];
    let framed = sim.read_frames(&mut twin, min_shared);
    assert_eq!(copied, framed, "frames give the copy path's bytes");
    copied
}

/// Fuzz entry: any sequence of output, time, subscriptions (from any
/// `Last-Event-ID` or `tail`), reads and window evictions yields, for every
/// subscriber, each id at most once and in order, every missing id covered by a
/// `gap` (memory mode, or what `tail` skips) or by an archive read, and the stream
/// ends after `exit`; [`Frames`] give exactly the copy path's bytes. `t0` is any
/// instant (simulated time starts there).
pub fn fuzz_log_ops(data: &[u8], t0: Instant) {
    use crate::assembler::AssemblerConfig;
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let persistence = if mode & 1 == 0 {
        Persistence::Archive
    } else {
        Persistence::Memory
    };
    let settings = JobSettings {
        persistence,
        window_bytes: 64 + usize::from(mode >> 1) * 8,
        assembler: AssemblerConfig {
            partial_line_delay: ms(50),
            max_event_bytes: 64,
        },
        ..JobSettings::default()
    };
    let mut sim = Sim::new(settings, t0);
    sim.spawn();
    // (subscriber, next expected id, gaps allowed)
    let mut subs: Vec<(Subscriber, u64, bool)> = Vec::new();
    let mut exited = false;
    for op in ops.chunks(2) {
        let arg = op.get(1).copied().unwrap_or(0);
        match op[0] % 7 {
            0 | 1 if !exited => {
                let stream = if op[0] % 7 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                let mut bytes: Vec<u8> = (0..arg % 97).map(|i| b'a' + (i % 26)).collect();
                if arg % 3 != 0 {
                    bytes.push(b'\n');
                }
                sim.out(stream, &bytes);
            }
            2 => sim.advance(ms(u64::from(arg) * 4)),
            3 | 5 => {
                let last = sim.job.log().last_visible();
                let text = (u64::from(arg) % (last + 2)).to_string();
                let tail = (u64::from(arg) % 6).to_string();
                let params = if op[0] % 7 == 3 {
                    SubscribeParams {
                        last_event_id: Some(&text),
                        ..SubscribeParams::default()
                    }
                } else {
                    SubscribeParams {
                        tail: Some(&tail),
                        ..SubscribeParams::default()
                    }
                };
                match sim.subscribe(params) {
                    Ok(sub) => {
                        let (expect, gaps) = if op[0] % 7 == 3 {
                            (
                                text.parse::<u64>().unwrap_or(0) + 1,
                                persistence == Persistence::Memory,
                            )
                        } else {
                            (1, true)
                        };
                        subs.push((sub, expect, gaps));
                    }
                    Err(Refusal::NoContent) => {
                        assert!(sim.job.log().is_complete());
                        assert_eq!(text.parse::<u64>().ok(), Some(last));
                    }
                    Err(Refusal::BadRequest(_)) => {
                        assert!(op[0] % 7 == 3 && text.parse::<u64>().unwrap_or(0) > last);
                    }
                }
            }
            4 if !subs.is_empty() => {
                let n = usize::from(arg) % subs.len();
                let (sub, expect, gaps) = &mut subs[n];
                let (wire, _) = read_both(&sim, sub, arg);
                *expect = check_transcript(&wire, *expect, *gaps);
            }
            6 if !exited => {
                sim.exit(Some(i32::from(arg)), None);
                exited = true;
            }
            _ => {}
        }
    }
    if !exited {
        sim.exit(Some(0), None);
    }
    let last = sim.job.log().last_visible();
    for (i, (sub, expect, gaps)) in subs.iter_mut().enumerate() {
        let (wire, next) = read_both(&sim, sub, i as u8);
        *expect = check_transcript(&wire, *expect, *gaps);
        assert_eq!(next, Next::End, "a complete log ends every stream");
        assert_eq!(*expect, last + 1, "every subscriber reached the exit event");
    }
}
