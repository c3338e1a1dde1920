//! A subscriber: one SSE connection's cursor into a job's [`Log`] — never a queue.
//!
//! Rules:
//! 1. [`Subscriber::open`] decides the answer to a new subscription: a stream from
//!    the right id, `204` (the client already has the final event), or `400`
//!    (malformed `Last-Event-ID` or `tail`, or an id beyond the job's last).
//! 2. The first bytes are `retry: <ms>` with a per-connection jitter of ±20 %.
//! 3. Then events in id order, each exactly once, as many whole events per call as
//!    fit a budget. Ids that left the memory window come from the archive
//!    ([`Next::ReadArchive`]), from the cluster's stream for another server's job
//!    ([`Next::ReadStream`]: a `gap` only where the stream was trimmed), or, with
//!    neither, are named by a `gap` event.
//! 4. After `heartbeat` of silence, a `:` comment (or an id-less `heartbeat` event).
//! 5. After the `exit` event, [`Next::End`]: the runtime ends the response.
//! 6. Under gzip ([`Subscriber::use_coding`]) the same bytes go out as one gzip
//!    member: events as the log's shared blocks (compressed once per job), the
//!    subscriber's own pieces (`retry:`, heartbeats, gaps) as stored blocks, events
//!    without a shared block (from the archive, or older than the first gzip
//!    subscriber) compressed per call by a compressor dropped before it returns.
//!    Every call ends on a flush point, so each write decodes at once; the trailer
//!    is written before [`Next::End`].
//! 7. Another server's job that is still running ([`Persistence::Stream`], not
//!    complete) accepts any `Last-Event-ID`, even one this server has not read from
//!    Redis yet: the owner has those events, and the stream simply continues after
//!    that id once they arrive (or ends at the `exit` if the id was past it).
//! 8. A text subscriber ([`Subscriber::output_text`]) serves `/jobs/{id}/log` of
//!    another server's job: the same cursor, but it writes only the text of the
//!    `stdout`/`stderr` events (no `retry:`, heartbeat or gap), up to the event
//!    that was last when it opened, or (follow) to the `exit`.
//!
//! 9. Output goes to a `Vec<u8>` (the bytes copied) or to [`Frames`] (the log's
//!    shared bytes and the archive read by reference, for one vectored write):
//!    the same bytes either way. Gzip and text subscribers copy into the frames'
//!    own buffer.
//!
//! A subscriber holds a few words, gzip or not; a slow one costs nothing but its
//! socket.

use crate::archive;
use crate::cluster::{self, StreamEntry};
use crate::event::{self, HeartbeatData};
use crate::frames::Frames;
use crate::gzip::{self, Block, Member};
use crate::http::ContentCoding;
use crate::id::{Cursor, EventId};
use crate::log::{Log, Persistence};
use crate::sse;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes one [`Subscriber::poll_transmit`] call writes (but always at least
/// one whole event).
pub const TRANSMIT_BUDGET: usize = 64 * 1024;

/// The first archive read of a stream: small, so a resuming client's first event
/// comes at once.
pub const ARCHIVE_FIRST_READ_BYTES: usize = 32 * 1024;

/// The largest sequential archive read: reads double from
/// [`ARCHIVE_FIRST_READ_BYTES`] up to this while a stream walks the archive (a
/// single larger record gets a read of its own size). Every byte read is used:
/// each record is read, checked and sent once. Small enough that a read, its
/// check and its copy stay in the core's cache, and that a lagging subscriber's
/// two buffers (the read and what it sends) stay small: 1 MiB reads cost ~25 %
/// more server CPU per GB in fan-out to slow readers (docs/benchmarks.md).
pub const ARCHIVE_READ_BYTES: usize = 256 * 1024;

/// How many entries one [`Next::ReadStream`] asks for.
pub const STREAM_READ_COUNT: usize = 512;

/// How long a subscriber waits before it asks the cluster's stream again after a
/// read failed (Redis unreachable): it stalls rather than send a false `gap`.
pub const STREAM_RETRY: Duration = Duration::from_secs(1);

/// Per-server stream settings (from the config's `sse` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// The reconnection delay announced in `retry:`, before jitter.
    pub retry_ms: u64,
    /// Silence after which a heartbeat is written.
    pub heartbeat: Duration,
    /// Heartbeats as `event: heartbeat` rather than a comment, by default.
    pub heartbeat_event: bool,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            retry_ms: 2000,
            heartbeat: Duration::from_secs(15),
            heartbeat_event: false,
        }
    }
}

/// What the client asked for (already picked from header or query by the HTTP layer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeParams<'a> {
    /// The `Last-Event-ID` (header, else `last_event_id`/`lastEventId` query).
    pub last_event_id: Option<&'a str>,
    /// The `tail` query parameter.
    pub tail: Option<&'a str>,
    /// `?heartbeat=event` (true) or `?heartbeat=comment` (false); `None`: the default.
    pub heartbeat_event: Option<bool>,
}

/// Why a subscription gets no stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `204 No Content`: the client already has the final event.
    NoContent,
    /// `400 Bad Request`, with what is wrong.
    BadRequest(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoContent => f.write_str("the client already has the final event"),
            Refusal::BadRequest(m) => f.write_str(m),
        }
    }
}

/// What a runtime does next for a subscriber.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Bytes were appended to the buffer: write them, then poll again.
    Wrote,
    /// Nothing to write: wait until the job appends or until the deadline.
    Wait(Option<Instant>),
    /// Read up to `len` bytes of the job's archive at `offset` (where the record of
    /// event `first` starts) and pass them to [`Subscriber::handle_archive`].
    ReadArchive {
        /// Byte offset of a record start.
        offset: u64,
        /// The id of the record at `offset`.
        first: EventId,
        /// How many bytes to read (fewer at the end of the file is fine).
        len: usize,
    },
    /// Read up to `count` entries of the job's stream in the cluster's Redis after
    /// id `after` (`XRANGE (0-after + COUNT count`) and pass them to
    /// [`Subscriber::handle_stream`]. Only for [`Persistence::Stream`] logs.
    ReadStream {
        /// The entries wanted come after this id.
        after: Cursor,
        /// The most entries to read.
        count: usize,
    },
    /// The stream is complete: end the response.
    End,
}

/// The `retry:` value a stream announces: `retry_ms` with a per-connection jitter of
/// ±20 % drawn from `jitter` (runtime randomness), so that clients cut off together
/// do not all come back in the same instant. Shared by job and list streams.
#[must_use]
pub fn jittered_retry(retry_ms: u64, jitter: u32) -> u64 {
    retry_ms.saturating_mul(80 + u64::from(jitter % 41)) / 100
}

/// How late a runtime may wake a waiting stream: stream deadlines (heartbeats)
/// are rounded up to the next multiple of this since a fixed instant
/// ([`coalesce`]), so that streams due within the same slice share one wake-up of
/// the server instead of one each (10,000 idle streams then cost ~16 wake-ups a
/// second, not 10,000).
pub const WAKE_SLICE: Duration = Duration::from_millis(64);

/// The instant a runtime wakes for `deadline`: `deadline` rounded up to the next
/// multiple of [`WAKE_SLICE`] after `epoch` (a fixed instant the runtime picks
/// once, the same for every stream). Never earlier than `deadline`, at most one
/// slice later; a deadline before `epoch` is kept as it is.
#[must_use]
pub fn coalesce(deadline: Instant, epoch: Instant) -> Instant {
    let Some(since) = deadline.checked_duration_since(epoch) else {
        return deadline;
    };
    let slice = WAKE_SLICE.as_nanos();
    let rounded = since.as_nanos().div_ceil(slice).saturating_mul(slice);
    u64::try_from(rounded)
        .ok()
        .and_then(|n| epoch.checked_add(Duration::from_nanos(n)))
        .unwrap_or(deadline)
}

/// What [`Subscriber::handle_archive_at`] needs of a job's log: where its memory
/// window starts and its last visible id, read together under the job's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEdges {
    window_first: u64,
    last_visible: u64,
}

impl LogEdges {
    /// The edges of `log` now.
    #[must_use]
    pub fn of(log: &Log) -> LogEdges {
        LogEdges {
            window_first: log.window_first(),
            last_visible: log.last_visible(),
        }
    }
}

/// One connection's cursor into a job log. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// The next id to send.
    next: u64,
    /// The `retry:` value still to write first.
    preamble: Option<u64>,
    /// `?tail`: send the pinned `start`, then a gap up to this id.
    tail_gap_to: Option<u64>,
    last_write: Instant,
    heartbeat: Duration,
    heartbeat_event: bool,
    /// Where the next archive read continues: (offset, id of the record there).
    archive_at: Option<(u64, u64)>,
    archive_len: usize,
    ended: bool,
    /// Events written so far (for metrics).
    sent: u64,
    /// The response's gzip member, when the body is gzip.
    gzip: Option<Member>,
    /// A failed [`Next::ReadStream`] is asked again at this time.
    stream_retry_at: Option<Instant>,
    /// A text subscriber (rule 8): `Some(limit)`, where `limit` is the last id it
    /// sends (`None`: follow to the `exit`).
    text: Option<Option<u64>>,
    /// The last [`Subscriber::poll_transmit`] wrote a heartbeat and nothing else.
    heartbeat_only: bool,
    /// The last [`Subscriber::poll_transmit`] wrote everything the log showed,
    /// and the stream goes on.
    caught_up: bool,
}

/// Where a subscriber's bytes go: a `Vec<u8>` they are appended to (copied), or
/// [`Frames`] that refer to the log's shared bytes and the archive read instead
/// of copying them. Both give the same bytes for the same calls.
pub trait Output: sealed::Sealed {}

impl Output for Vec<u8> {}
impl Output for Frames {}

mod sealed {
    use super::Frames;

    /// Keeps [`super::Output`] to the two kinds of output the core knows.
    pub trait Sealed {
        /// This output, for one call.
        fn out(&mut self) -> Out<'_>;
    }

    /// One call's output (see [`super::Output`]).
    pub enum Out<'a> {
        Copy(&'a mut Vec<u8>),
        Frames(&'a mut Frames),
    }

    impl Sealed for Vec<u8> {
        fn out(&mut self) -> Out<'_> {
            Out::Copy(self)
        }
    }

    impl Sealed for Frames {
        fn out(&mut self) -> Out<'_> {
            Out::Frames(self)
        }
    }
}

use sealed::Out;

impl Out<'_> {
    fn len(&self) -> usize {
        match self {
            Out::Copy(b) => b.len(),
            Out::Frames(f) => f.len(),
        }
    }

    /// The buffer copied bytes are appended to.
    fn buf(&mut self) -> &mut Vec<u8> {
        match self {
            Out::Copy(b) => b,
            Out::Frames(f) => f.own(),
        }
    }
}

/// Where an event's bytes come from, for [`Frames`]: the log's shared bytes, the
/// archive read (at this offset of the bytes read), or a buffer of this call only.
#[derive(Clone, Copy)]
enum Src<'a> {
    Shared(&'a Arc<[u8]>),
    Read(usize),
    Scratch,
}

/// Where one call's bytes go: straight into the output (identity), or through the
/// response's gzip member (see rule 6).
struct Sink<'a> {
    out: Out<'a>,
    start: usize,
    gzip: Option<&'a mut Member>,
    /// Events with no shared block, compressed together at the next flush.
    pending: Vec<u8>,
    /// A text subscriber's sink: only the text of output events (rule 8).
    text: bool,
}

impl<'a> Sink<'a> {
    /// A sink appending to `out`, through `gzip` when the subscriber compresses.
    fn new(out: Out<'a>, gzip: Option<&'a mut Member>) -> Sink<'a> {
        Sink {
            start: out.len(),
            out,
            gzip,
            pending: Vec::new(),
            text: false,
        }
    }

    /// Bytes this call has produced so far (before compression, for pending ones).
    fn written(&self) -> usize {
        self.out.len() - self.start + self.pending.len()
    }

    /// The subscriber's own piece (`retry:`, heartbeat, gap).
    fn own(&mut self, bytes: &[u8]) {
        if self.text {
            return; // a raw log has no SSE pieces
        }
        self.flush();
        match &mut self.gzip {
            None => self.out.buf().extend_from_slice(bytes),
            Some(m) => m.push_stored(bytes, self.out.buf()),
        }
    }

    /// An event's wire bytes (from `src`), with its shared block if it has one.
    fn event(&mut self, wire: &[u8], src: Src<'_>, block: Option<&Block>) {
        if self.text {
            let mut text = Vec::new();
            output_text(wire, &mut text);
            match &mut self.gzip {
                None => self.out.buf().extend_from_slice(&text),
                Some(_) => self.pending.extend_from_slice(&text),
            }
            return;
        }
        match (&mut self.gzip, block) {
            (None, _) => match (&mut self.out, src) {
                (Out::Frames(f), Src::Shared(shared)) => f.push_shared(shared),
                (Out::Frames(f), Src::Read(at)) => f.push_read(wire, at),
                (out, _) => out.buf().extend_from_slice(wire),
            },
            (Some(m), Some(b)) => {
                if self.pending.is_empty() {
                    m.push_block(b, self.out.buf());
                } else {
                    self.flush();
                    self.event(wire, src, block);
                }
            }
            (Some(_), None) => self.pending.extend_from_slice(wire),
        }
    }

    /// Compresses the pending events (a compressor only for this call).
    fn flush(&mut self) {
        if let (Some(m), false) = (&mut self.gzip, self.pending.is_empty()) {
            let mut d = gzip::Deflater::default();
            m.push_compressed(&mut d, &self.pending, true, self.out.buf());
            self.pending.clear();
        }
    }
}

impl Subscriber {
    /// Decides the answer to a new subscription on `log` at `now`. `jitter` is
    /// randomness from the runtime, for the `retry:` value.
    ///
    /// # Errors
    /// [`Refusal::NoContent`] when the client already has the final event;
    /// [`Refusal::BadRequest`] for a malformed `Last-Event-ID` or `tail`, or an id
    /// beyond the job's last.
    pub fn open(
        log: &Log,
        params: &SubscribeParams<'_>,
        settings: &StreamSettings,
        jitter: u32,
        now: Instant,
    ) -> Result<Subscriber, Refusal> {
        let retry = jittered_retry(settings.retry_ms, jitter);
        let last = log.last_visible();
        let mut sub = Subscriber {
            next: 1,
            preamble: Some(retry),
            tail_gap_to: None,
            last_write: now,
            heartbeat: settings.heartbeat,
            heartbeat_event: params.heartbeat_event.unwrap_or(settings.heartbeat_event),
            archive_at: None,
            archive_len: ARCHIVE_FIRST_READ_BYTES,
            ended: false,
            sent: 0,
            gzip: None,
            stream_retry_at: None,
            text: None,
            heartbeat_only: false,
            caught_up: false,
        };
        if let Some(text) = params.last_event_id {
            let cursor = Cursor::parse(text).map_err(|e| {
                Refusal::BadRequest(format!("malformed Last-Event-ID {text:?}: {e}"))
            })?;
            // Rule 7: a running remote job's later ids exist on its owner.
            let pending_remote = log.persistence() == Persistence::Stream && !log.is_complete();
            if cursor.0 > last && !pending_remote {
                return Err(Refusal::BadRequest(format!(
                    "Last-Event-ID {} is beyond this job's last event id {last}",
                    cursor.0
                )));
            }
            if log.is_complete() && cursor.0 == last {
                return Err(Refusal::NoContent);
            }
            sub.next = cursor.0 + 1;
        } else if let Some(text) = params.tail {
            let n = Cursor::parse(text)
                .map_err(|e| Refusal::BadRequest(format!("malformed tail {text:?}: {e}")))?
                .0;
            let from = log.tail_start(n);
            if last >= 1 && from > 2 {
                sub.tail_gap_to = Some(from - 1);
                sub.next = from;
            }
        }
        Ok(sub)
    }

    /// A text subscriber (rule 8) for `/jobs/{id}/log` of another server's job:
    /// the text of its `stdout`/`stderr` events from the first, up to the event
    /// that is last now, or with `follow` to the `exit`. It never writes SSE
    /// pieces; while it waits it wakes every `settings.heartbeat` without writing,
    /// so a runtime can look at its client.
    #[must_use]
    pub fn output_text(
        log: &Log,
        follow: bool,
        settings: &StreamSettings,
        now: Instant,
    ) -> Subscriber {
        Subscriber {
            next: 1,
            preamble: None,
            tail_gap_to: None,
            last_write: now,
            heartbeat: settings.heartbeat,
            heartbeat_event: false,
            archive_at: None,
            archive_len: ARCHIVE_FIRST_READ_BYTES,
            ended: false,
            sent: 0,
            gzip: None,
            stream_retry_at: None,
            text: Some((!follow).then(|| log.last_visible())),
            heartbeat_only: false,
            caught_up: false,
        }
    }

    /// The last id this subscriber may send now: what the log shows, and for a
    /// text subscriber without follow, no further than its limit.
    fn last_wanted(&self, log: &Log) -> u64 {
        match self.text {
            Some(Some(limit)) => log.last_visible().min(limit),
            _ => log.last_visible(),
        }
    }

    /// Whether everything this subscriber will ever send is sent.
    fn is_done(&self, log: &Log) -> bool {
        log.exit_id().is_some_and(|id| self.next > id)
            || matches!(self.text, Some(Some(limit)) if self.next > limit)
    }

    /// Sets the coding of the response body (identity by default). Call it before
    /// the first [`Subscriber::poll_transmit`]; gzip subscribers also want the log's
    /// shared blocks ([`Log::enable_gzip`]).
    pub fn use_coding(&mut self, coding: ContentCoding) {
        self.gzip = (coding == ContentCoding::Gzip).then(Member::new);
    }

    /// How many events this subscriber has written (heartbeats not counted).
    #[must_use]
    pub fn events_sent(&self) -> u64 {
        self.sent
    }

    /// The next id this subscriber will send.
    #[must_use]
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// After a [`Subscriber::poll_transmit`] that answered [`Next::Wrote`] with a
    /// heartbeat and nothing else: the deadline the next call would answer
    /// [`Next::Wait`] with while the log does not change (the next heartbeat).
    /// A runtime that listened for the log's changes before that call may wait
    /// for it at once, without asking again: an idle stream's heartbeat then costs
    /// one look at the log, not two. `None` after any other answer.
    #[must_use]
    pub fn wait_after_heartbeat(&self) -> Option<Instant> {
        self.heartbeat_only
            .then(|| self.last_write + self.heartbeat)
    }

    /// After a [`Subscriber::poll_transmit`] that answered [`Next::Wrote`] and
    /// wrote everything the log showed (events, or a heartbeat): the deadline the
    /// next call would answer [`Next::Wait`] with while the log does not change.
    /// A runtime that listened for the log's changes before that call may, once
    /// the bytes are written, wait for it at once: a live stream then looks at the
    /// log once per event, not twice. `None` after any other answer (more to
    /// send, an archive read next, or the end of the stream).
    #[must_use]
    pub fn wait_after_write(&self) -> Option<Instant> {
        self.caught_up.then(|| self.last_write + self.heartbeat)
    }

    /// Appends the next bytes to send to `out` (whole events, up to
    /// [`TRANSMIT_BUDGET`]) and says what to do next. `out` is a `Vec<u8>` the
    /// bytes are copied into, or [`Frames`] that share the log's bytes instead.
    pub fn poll_transmit(&mut self, log: &Log, now: Instant, out: &mut impl Output) -> Next {
        self.heartbeat_only = false;
        self.caught_up = false;
        let mut gz = self.gzip.take();
        let mut sink = Sink::new(out.out(), gz.as_mut());
        sink.text = self.text.is_some();
        let mut next = self.transmit(log, now, &mut sink);
        sink.flush();
        if next == Next::End {
            if let Some(m) = sink.gzip.as_mut().filter(|m| !m.is_finished()) {
                m.finish(sink.out.buf());
                next = Next::Wrote;
            }
        }
        self.gzip = gz;
        next
    }

    fn transmit(&mut self, log: &Log, now: Instant, sink: &mut Sink<'_>) -> Next {
        if self.ended {
            return Next::End;
        }
        let mut own = Vec::new();
        if let Some(ms) = self.preamble.take() {
            sse::encode_retry(ms, &mut own);
        }
        if let Some(to) = self.tail_gap_to.take() {
            if let Some(start) = log.get_shared(1) {
                sink.own(&own);
                own.clear();
                sink.event(start, Src::Shared(start), log.block(1));
            }
            event::encode_gap(
                EventId::FIRST.next(),
                EventId::new(to).unwrap_or(EventId::FIRST),
                &mut own,
            );
        }
        if !own.is_empty() {
            sink.own(&own);
        }
        while sink.written() < TRANSMIT_BUDGET && self.next <= self.last_wanted(log) {
            if let Some(wire) = log.get_shared(self.next) {
                sink.event(wire, Src::Shared(wire), log.block(self.next));
                self.next += 1;
                self.sent += 1;
                continue;
            }
            // `next` has left the memory window.
            match log.persistence() {
                Persistence::Archive => {
                    if sink.written() > 0 {
                        break; // send what we have; the archive read comes next call
                    }
                    let (offset, first) = match self.archive_at {
                        Some((off, id)) if id <= self.next => (off, id),
                        _ => match log.archive_position(self.next) {
                            Some((off, id)) => (off, id.get()),
                            None => break,
                        },
                    };
                    // invariant: archive ids are >= 1.
                    let first = EventId::new(first).expect("archive ids start at 1");
                    return Next::ReadArchive {
                        offset,
                        first,
                        len: self.archive_len,
                    };
                }
                Persistence::Memory => {
                    let to = log.window_first() - 1;
                    self.write_gap(self.next, to, sink);
                }
                Persistence::Stream => {
                    if sink.written() > 0 {
                        break; // send what we have; the stream read comes next call
                    }
                    if let Some(at) = self.stream_retry_at.filter(|&at| now < at) {
                        return Next::Wait(Some(at));
                    }
                    self.stream_retry_at = None;
                    return Next::ReadStream {
                        after: Cursor(self.next - 1),
                        count: STREAM_READ_COUNT,
                    };
                }
            }
        }
        if sink.written() > 0 {
            self.last_write = now;
            self.caught_up = self.next > self.last_wanted(log) && !self.is_done(log);
            return Next::Wrote;
        }
        if self.is_done(log) {
            self.ended = true;
            return Next::End;
        }
        let due = self.last_write + self.heartbeat;
        if now >= due && self.text.is_some() {
            // A raw log has no heartbeat: wake again later, write nothing.
            self.last_write = now;
            return Next::Wait(Some(now + self.heartbeat));
        }
        if now >= due {
            if self.heartbeat_event {
                let (stdout_bytes, stderr_bytes) = log.byte_counts();
                let data = HeartbeatData {
                    last_id: log.last_visible(),
                    stdout_bytes,
                    stderr_bytes,
                };
                event::encode_heartbeat(&data, &mut own);
            } else {
                sse::encode_comment("", &mut own);
            }
            sink.own(&own);
            self.last_write = now;
            self.heartbeat_only = true;
            self.caught_up = true;
            return Next::Wrote;
        }
        Next::Wait(Some(due))
    }

    /// Takes bytes the runtime read from the archive for a [`Next::ReadArchive`]
    /// (`offset` and `first` as it asked) and appends the events this subscriber
    /// still needs to `out`. Where the archive cannot supply them (damaged or
    /// short), a `gap` names the ids lost: never a silent loss. [`Frames`] refer
    /// to `bytes`: write them from these same bytes ([`Frames::slices`]).
    pub fn handle_archive(
        &mut self,
        log: &Log,
        offset: u64,
        first: EventId,
        bytes: &[u8],
        out: &mut impl Output,
    ) {
        self.handle_archive_at(LogEdges::of(log), offset, first, bytes, out);
    }

    /// [`Subscriber::handle_archive`] with the log's [`LogEdges`] in place of the
    /// log: a runtime reads them under the job's lock and lets go of it before the
    /// scan, which is the longest core call of a lagging stream (up to
    /// [`ARCHIVE_READ_BYTES`] checked and encoded), so that the job's driver and
    /// new subscribers are not held up behind it. Edges read a moment earlier are
    /// as good as the log then: they only decide where a `gap` ends, and a gap
    /// that ends too early is followed by the rest on the next poll.
    pub fn handle_archive_at(
        &mut self,
        edges: LogEdges,
        offset: u64,
        first: EventId,
        bytes: &[u8],
        out: &mut impl Output,
    ) {
        let mut gz = self.gzip.take();
        let mut sink = Sink::new(out.out(), gz.as_mut());
        self.archive(edges, offset, first, bytes, &mut sink);
        sink.flush();
        self.gzip = gz;
    }

    fn archive(
        &mut self,
        log: LogEdges,
        offset: u64,
        first: EventId,
        bytes: &[u8],
        sink: &mut Sink<'_>,
    ) {
        let scan = archive::scan(bytes, first);
        let (mut pos, mut pos_id) = (offset, first.get());
        // The whole read is used (no transmit budget here): what is skipped would be
        // read and checked again by the next read.
        for record in &scan.records {
            pos += (archive::RECORD_HEADER_LEN + record.wire.len()) as u64;
            pos_id = record.id.get() + 1;
            if record.id.get() == self.next {
                // Archive reads have no shared block: compressed per call.
                sink.event(record.wire, Src::Read(record.at), None);
                self.next += 1;
                self.sent += 1;
            }
        }
        if pos_id > first.get() {
            // Progress through the file (sent, or skipped up to the cursor):
            // the next read continues right here.
            self.archive_at = Some((pos, pos_id));
            self.archive_len =
                (self.archive_len * 2).clamp(ARCHIVE_FIRST_READ_BYTES, ARCHIVE_READ_BYTES);
            return;
        }
        // Not one whole record at `offset`.
        if scan.damage == Some(archive::Damage::Truncated)
            && bytes.len() >= self.archive_len
            && self.archive_len < archive::MAX_WIRE_LEN
        {
            // One record is larger than the read: ask for more next time.
            self.archive_len =
                (self.archive_len * 2).min(archive::MAX_WIRE_LEN + archive::RECORD_HEADER_LEN);
            return;
        }
        // The archive cannot give `next` (damaged or short): say what is lost, up
        // to the memory window, rather than lose it silently.
        self.archive_at = None;
        let to = log.window_first.saturating_sub(1).max(self.next);
        self.write_gap(self.next, to.min(log.last_visible), sink);
    }

    /// Takes what the runtime read from the job's stream in Redis for a
    /// [`Next::ReadStream`] (`after` as it asked; `None` when the read failed) and
    /// appends the events this subscriber still needs to `out`, encoded as
    /// [`Job::handle_remote_entry`](crate::job::Job::handle_remote_entry) encodes
    /// them. Ids the stream no longer holds (trimmed by its cap) are named by a
    /// `gap`; a failed read is asked again after [`STREAM_RETRY`], never a gap.
    pub fn handle_stream(
        &mut self,
        log: &Log,
        after: Cursor,
        entries: Option<&[StreamEntry]>,
        now: Instant,
        out: &mut impl Output,
    ) {
        let mut gz = self.gzip.take();
        let mut sink = Sink::new(out.out(), gz.as_mut());
        sink.text = self.text.is_some();
        self.stream(log, after, entries, now, &mut sink);
        sink.flush();
        self.gzip = gz;
    }

    fn stream(
        &mut self,
        log: &Log,
        after: Cursor,
        entries: Option<&[StreamEntry]>,
        now: Instant,
        sink: &mut Sink<'_>,
    ) {
        let Some(entries) = entries else {
            self.stream_retry_at = Some(now + STREAM_RETRY);
            return;
        };
        if after.0 + 1 != self.next {
            return; // not the read this cursor asked for
        }
        // Only what left the window: the rest is sent from memory, as ever.
        let below = log.window_first().min(self.last_wanted(log) + 1);
        let from = self.next;
        let mut at_window = false;
        let mut wire = Vec::new();
        for entry in entries {
            if entry.id.get() < self.next {
                continue;
            }
            if entry.id.get() >= below {
                at_window = true;
                break;
            }
            if let Some((from, to)) = cluster::read_gap(Cursor(self.next - 1), entry.id) {
                self.write_gap(from.get(), to.get(), sink);
            }
            wire.clear();
            cluster::encode_entry(entry, &mut wire);
            sink.event(&wire, Src::Scratch, None);
            self.next += 1;
            self.sent += 1;
        }
        // A read that reached the window, or one that gave nothing new: what is
        // still missing before the window is not in the stream (trimmed, or gone
        // with its retention). Not a short read that gave something: the stream
        // may have grown since (this server's reader appended, the window moved
        // on), so the next read asks again from where this one stopped.
        if at_window || self.next == from {
            self.write_gap(self.next, below.saturating_sub(1), sink);
        }
    }

    fn write_gap(&mut self, from: u64, to: u64, sink: &mut Sink<'_>) {
        if let (Some(from_id), Some(to_id)) = (EventId::new(from), EventId::new(to)) {
            if to >= from {
                let mut own = Vec::new();
                event::encode_gap(from_id, to_id, &mut own);
                sink.own(&own);
                self.next = to + 1;
                self.sent += 1;
            }
        }
    }
}

/// Appends the text of a `stdout`/`stderr` event's wire bytes to `out` (nothing
/// for other events): what a raw log holds of it.
pub fn output_text(wire: &[u8], out: &mut Vec<u8>) {
    let mut decoder = sse::Decoder::new();
    decoder.feed(wire);
    while let Some(item) = decoder.poll() {
        if let sse::Item::Event(e) = item {
            if e.event_type == "stdout" || e.event_type == "stderr" {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) {
                    out.extend_from_slice(v["text"].as_str().unwrap_or("").as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;
    use crate::fuzzing::{ms, t0};

    #[test]
    fn deadlines_round_up_to_the_next_slice_boundary() {
        let epoch = t0();
        assert_eq!(coalesce(epoch, epoch), epoch);
        assert_eq!(coalesce(epoch + ms(1), epoch), epoch + ms(64));
        assert_eq!(coalesce(epoch + ms(64), epoch), epoch + ms(64));
        assert_eq!(coalesce(epoch + ms(65), epoch), epoch + ms(128));
        let d = epoch + Duration::from_nanos(15_000_000_001);
        assert_eq!(coalesce(d, epoch), epoch + ms(15_040));
    }

    #[test]
    fn a_wake_up_is_never_early_and_at_most_one_slice_late() {
        let epoch = t0();
        for n in 0..2_000u64 {
            let d = epoch + Duration::from_micros(n * 997);
            let w = coalesce(d, epoch);
            assert!(w >= d && w - d < WAKE_SLICE, "{n}");
        }
        // Streams due in the same slice share their wake-up.
        assert_eq!(
            coalesce(epoch + ms(70), epoch),
            coalesce(epoch + ms(127), epoch)
        );
    }

    #[test]
    fn a_deadline_before_the_epoch_is_kept() {
        let epoch = t0() + ms(100);
        assert_eq!(coalesce(epoch - ms(30), epoch), epoch - ms(30));
    }
}

#[cfg(test)]
mod gzip_tests {
    use super::*;
    use crate::fuzzing::{ms, t0};
    use crate::log::Kind;

    /// A log of `n` events (the last one `exit`), gzip enabled from event
    /// `gzip_from` on, with a small window so old events come from the archive (or
    /// a gap, in memory mode). Returns the log and its archive file.
    fn log(n: u64, gzip_from: u64, persistence: Persistence) -> (Log, Vec<u8>) {
        let mut log = Log::new(persistence, 2_000);
        let mut file = Vec::new();
        for i in 1..=n {
            if i == gzip_from {
                log.enable_gzip();
            }
            let kind = if i == n { Kind::Exit } else { Kind::Output };
            log.append(kind, |id, buf| {
                let line = format!(
                    "Compiling crate-{} v0.{}.0 (/src/crate-{})",
                    i % 9,
                    i % 4,
                    i % 9
                );
                buf.extend_from_slice(
                    format!(
                        "id: {}\ndata: {}\n\n",
                        id.get(),
                        line.repeat(1 + (i % 5) as usize)
                    )
                    .as_bytes(),
                );
            });
            if let Some((records, upto)) = log.poll_persist() {
                file.extend_from_slice(&records);
                log.handle_persisted(upto);
            }
        }
        assert!(!log.gzip_enabled(), "the compressor is dropped at exit");
        (log, file)
    }

    /// Drives a subscriber to the end; returns every write.
    fn drive(log: &Log, file: &[u8], mut sub: Subscriber, t0: Instant) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        let mut now = t0;
        for _ in 0..10_000 {
            let mut buf = Vec::new();
            match sub.poll_transmit(log, now, &mut buf) {
                Next::Wrote => writes.push(buf),
                Next::Wait(Some(t)) => now = t,
                Next::Wait(None) => panic!("a finished log never waits forever"),
                Next::ReadArchive { offset, first, len } => {
                    let at = usize::try_from(offset).unwrap().min(file.len());
                    let bytes = &file[at..(at + len).min(file.len())];
                    sub.handle_archive(log, offset, first, bytes, &mut buf);
                    if !buf.is_empty() {
                        writes.push(buf);
                    }
                }
                Next::ReadStream { .. } => panic!("only a remote job reads a stream"),
                Next::End => return writes,
            }
        }
        panic!("no end");
    }

    #[test]
    fn gzip_decodes_to_exactly_the_identity_stream_from_any_resume_point() {
        let t0 = t0();
        for persistence in [Persistence::Archive, Persistence::Memory] {
            for gzip_from in [1, 20, 1000] {
                let (log, file) = log(60, gzip_from, persistence);
                for last in [None, Some(0u64), Some(1), Some(7), Some(30), Some(58)] {
                    let text = last.map(|l| l.to_string());
                    let params = SubscribeParams {
                        last_event_id: text.as_deref(),
                        ..SubscribeParams::default()
                    };
                    let settings = StreamSettings::default();
                    let plain = Subscriber::open(&log, &params, &settings, 7, t0).unwrap();
                    let mut gz = plain.clone();
                    gz.use_coding(ContentCoding::Gzip);
                    let want: Vec<u8> = drive(&log, &file, plain, t0).concat();
                    let writes = drive(&log, &file, gz, t0);
                    // Every write decodes alone up to its end ...
                    let mut wire = Vec::new();
                    for (i, w) in writes.iter().enumerate() {
                        wire.extend_from_slice(w);
                        let (got, ended) = crate::gzip::tests::decode_prefix(&wire);
                        // (a write's bytes all decode: whole events, nothing held)
                        assert!(want.starts_with(&got), "{persistence:?} {last:?} write {i}");
                        assert!(got.ends_with(b"\n\n"), "{persistence:?} {last:?} write {i}");
                        assert_eq!(ended, i + 1 == writes.len());
                    }
                    // ... and the whole is a valid gzip member of exactly the
                    // identity stream.
                    let (got, ended) = crate::gzip::tests::decode_prefix(&wire);
                    assert!(ended);
                    assert_eq!(got, want, "{persistence:?} gzip from {gzip_from}, {last:?}");
                    let mut std = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&wire[..]),
                        &mut std,
                    )
                    .unwrap();
                    assert_eq!(std, want);
                }
            }
        }
    }

    #[test]
    fn live_writes_decode_at_once_and_heartbeats_too() {
        let t0 = t0();
        let mut log = Log::new(Persistence::Memory, 1 << 20);
        log.enable_gzip();
        let settings = StreamSettings::default();
        let params = SubscribeParams::default();
        let mut plain = Subscriber::open(&log, &params, &settings, 3, t0).unwrap();
        let mut gz = plain.clone();
        gz.use_coding(ContentCoding::Gzip);
        let (mut want, mut wire) = (Vec::new(), Vec::new());
        let mut now = t0;
        for i in 1..=20u64 {
            if i % 4 == 0 {
                now += settings.heartbeat; // silence: a heartbeat is due
            } else {
                log.append(Kind::Output, |id, buf| {
                    buf.extend_from_slice(format!("id: {}\ndata: x{i}\n\n", id.get()).as_bytes())
                });
                now += ms(10);
            }
            let mut b = Vec::new();
            assert_eq!(plain.poll_transmit(&log, now, &mut b), Next::Wrote);
            want.extend_from_slice(&b);
            b.clear();
            assert_eq!(gz.poll_transmit(&log, now, &mut b), Next::Wrote);
            wire.extend_from_slice(&b);
            // Everything written so far decodes now, not at the next write.
            let (got, ended) = crate::gzip::tests::decode_prefix(&wire);
            assert!(!ended);
            assert_eq!(got, want, "after step {i}");
        }
    }
}

#[cfg(test)]
mod frames_tests {
    //! [`Frames`] against the copy path: the same bytes and answers, call by call.
    use super::*;
    use crate::frames::MIN_SHARED;
    use crate::fuzzing::{ms, t0};
    use crate::log::Kind;

    /// Event `i`'s size: small ones (copied) and large ones (shared), mixed.
    fn size(i: u64) -> usize {
        [20, 1500, 5000, 100, 3000][(i % 5) as usize]
    }

    fn append(log: &mut Log, file: &mut Vec<u8>, i: u64, kind: Kind) {
        log.append(kind, |id, buf| {
            let data = "x".repeat(size(i));
            buf.extend_from_slice(format!("id: {}\ndata: {data}\n\n", id.get()).as_bytes());
        });
        if let Some((records, upto)) = log.poll_persist() {
            file.extend_from_slice(&records);
            log.handle_persisted(upto);
        }
    }

    /// A log of `n` events, the last one `exit` when `complete`, with a window
    /// small enough that old events come from the archive (or a gap).
    fn log(n: u64, complete: bool, persistence: Persistence) -> (Log, Vec<u8>) {
        let mut log = Log::new(persistence, 12_000);
        let mut file = Vec::new();
        for i in 1..=n {
            let kind = if complete && i == n {
                Kind::Exit
            } else {
                Kind::Output
            };
            append(&mut log, &mut file, i, kind);
        }
        (log, file)
    }

    /// One call's answer and bytes.
    type Call = (Next, Vec<u8>);

    /// Drives `sub` until it waits or ends, through `frames` if given (else the
    /// copy path); every call's answer and bytes.
    fn drive(
        log: &Log,
        file: &[u8],
        sub: &mut Subscriber,
        now: Instant,
        mut frames: Option<&mut Frames>,
    ) -> Vec<Call> {
        let mut calls = Vec::new();
        for _ in 0..10_000 {
            let (next, bytes) = match frames.as_deref_mut() {
                Some(f) => {
                    f.clear(0);
                    let next = sub.poll_transmit(log, now, f);
                    (next, f.to_vec(&[]))
                }
                None => {
                    let mut buf = Vec::new();
                    (sub.poll_transmit(log, now, &mut buf), buf)
                }
            };
            calls.push((next, bytes));
            match next {
                Next::Wrote => {}
                Next::ReadArchive { offset, first, len } => {
                    let at = usize::try_from(offset).unwrap().min(file.len());
                    let read = &file[at..(at + len).min(file.len())];
                    let bytes = match frames.as_deref_mut() {
                        Some(f) => {
                            f.clear(0);
                            sub.handle_archive(log, offset, first, read, f);
                            f.to_vec(read)
                        }
                        None => {
                            let mut buf = Vec::new();
                            sub.handle_archive(log, offset, first, read, &mut buf);
                            buf
                        }
                    };
                    calls.push((next, bytes));
                }
                _ => return calls,
            }
        }
        panic!("no rest");
    }

    /// Subscribers on `log` from several resume points and tails, with and without
    /// gzip.
    fn subscribers(log: &Log, t0: Instant) -> Vec<Subscriber> {
        let mut subs = Vec::new();
        let ids = ["0", "1", "2", "7", "30", "58"];
        let params = [SubscribeParams::default()]
            .into_iter()
            .chain(ids.iter().map(|id| SubscribeParams {
                last_event_id: Some(id),
                ..SubscribeParams::default()
            }))
            .chain(["0", "3", "40"].iter().map(|n| SubscribeParams {
                tail: Some(n),
                ..SubscribeParams::default()
            }));
        for p in params {
            let Ok(sub) = Subscriber::open(log, &p, &StreamSettings::default(), 9, t0) else {
                continue;
            };
            let mut gz = sub.clone();
            gz.use_coding(ContentCoding::Gzip);
            subs.push(sub);
            subs.push(gz);
        }
        subs.push(Subscriber::output_text(
            log,
            true,
            &StreamSettings::default(),
            t0,
        ));
        subs
    }

    #[test]
    fn frames_give_the_copy_paths_bytes_and_answers_from_any_start() {
        let t0 = t0();
        for persistence in [Persistence::Archive, Persistence::Memory] {
            let (log, file) = log(60, true, persistence);
            for sub in subscribers(&log, t0) {
                let want = drive(&log, &file, &mut sub.clone(), t0, None);
                assert_eq!(want.last().map(|c| c.0), Some(Next::End));
                for min_shared in [0, 1000, MIN_SHARED, 1 << 20] {
                    let mut frames = Frames::with_min_shared(min_shared);
                    let got = drive(&log, &file, &mut sub.clone(), t0, Some(&mut frames));
                    assert_eq!(got, want, "{persistence:?}, sharing from {min_shared} B");
                }
            }
        }
    }

    #[test]
    fn live_frames_with_heartbeats_match_the_copy_path() {
        let t0 = t0();
        let (mut log, mut file) = log(3, false, Persistence::Archive);
        let settings = StreamSettings::default();
        let open = |log: &Log| {
            Subscriber::open(log, &SubscribeParams::default(), &settings, 1, t0).unwrap()
        };
        let (mut copy, mut framed) = (open(&log), open(&log));
        let mut frames = Frames::new();
        let mut now = t0;
        for i in 4..=40u64 {
            let want = drive(&log, &file, &mut copy, now, None);
            let got = drive(&log, &file, &mut framed, now, Some(&mut frames));
            assert_eq!(got, want, "step {i}");
            if i % 7 == 0 {
                now += settings.heartbeat; // silence: a heartbeat is due
            } else {
                let kind = if i == 40 { Kind::Exit } else { Kind::Output };
                append(&mut log, &mut file, i, kind);
                now += ms(3);
            }
        }
        let want = drive(&log, &file, &mut copy, now, None);
        assert_eq!(
            drive(&log, &file, &mut framed, now, Some(&mut frames)),
            want
        );
        assert_eq!(want.last().map(|c| c.0), Some(Next::End));
    }

    #[test]
    fn the_wait_after_a_write_is_what_the_next_poll_answers() {
        let t0 = t0();
        for persistence in [Persistence::Archive, Persistence::Memory] {
            for complete in [false, true] {
                let (log, file) = log(30, complete, persistence);
                for mut sub in subscribers(&log, t0) {
                    let mut now = t0;
                    let mut caught_up = 0;
                    for _ in 0..1_000 {
                        let mut buf = Vec::new();
                        let next = sub.poll_transmit(&log, now, &mut buf);
                        let after = sub.wait_after_write();
                        let mut again = sub.clone();
                        let answer = again.poll_transmit(&log, now + ms(1), &mut Vec::new());
                        match (next, after) {
                            (Next::Wrote, Some(t)) => {
                                assert_eq!(answer, Next::Wait(Some(t)));
                                caught_up += 1;
                            }
                            (_, Some(_)) => panic!("only after a write"),
                            (Next::Wrote, None) => {
                                assert!(!matches!(answer, Next::Wait(_)), "{answer:?}");
                            }
                            _ => {}
                        }
                        match next {
                            Next::ReadArchive { offset, first, len } => {
                                let at = usize::try_from(offset).unwrap().min(file.len());
                                let read = &file[at..(at + len).min(file.len())];
                                sub.handle_archive(&log, offset, first, read, &mut buf);
                                assert_eq!(sub.wait_after_write(), after);
                            }
                            Next::Wait(Some(t)) => now = t, // a heartbeat next
                            Next::End => break,
                            _ => {}
                        }
                        if caught_up > 3 {
                            break;
                        }
                    }
                    // (A text subscriber has no heartbeat: after an archive read
                    // that took it to the end, it only waits.)
                    if complete || sub.text.is_none() {
                        assert_eq!(caught_up > 0, !complete, "{persistence:?} {sub:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_events_are_shared_not_copied() {
        let t0 = t0();
        let (log, _) = log(5, true, Persistence::Archive);
        let mut sub = Subscriber::open(
            &log,
            &SubscribeParams::default(),
            &StreamSettings::default(),
            0,
            t0,
        )
        .unwrap();
        let mut frames = Frames::new();
        assert_eq!(sub.poll_transmit(&log, t0, &mut frames), Next::Wrote);
        frames.frame(crate::http::StreamFraming::Chunked);
        // The chunk's head with `retry:` (copied bytes are one slice); events 1,
        // 2 (shared), 3 (100 B, copied), 4 (shared); event 5 (20 B, copied) with
        // the chunk's end.
        let sizes: Vec<usize> = frames.slices(&[]).map(<[u8]>::len).collect();
        let wire: Vec<usize> = (1..=5).map(|id| log.get(id).unwrap().len()).collect();
        assert_eq!(sizes.len(), 6, "{sizes:?}");
        assert_eq!(sizes[1..5], wire[..4]);
        assert_eq!(sizes[5], wire[4] + 2);
        assert!(wire[2] < MIN_SHARED && wire[4] < MIN_SHARED);
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;
    use crate::fuzzing::{ms, t0};
    use crate::log::Kind;

    fn append(log: &mut Log, text: &str) {
        log.append(Kind::Output, |id, buf| {
            buf.extend_from_slice(format!("id: {}\ndata: {text}\n\n", id.get()).as_bytes());
        });
    }

    #[test]
    fn the_wait_after_a_heartbeat_is_what_the_next_poll_answers() {
        let t0 = t0();
        let mut log = Log::new(Persistence::Memory, 1 << 20);
        append(&mut log, "a");
        let settings = StreamSettings::default();
        let mut sub = Subscriber::open(&log, &SubscribeParams::default(), &settings, 3, t0)
            .expect("a fresh subscription opens");
        let mut buf = Vec::new();
        // The preamble and the event: not a heartbeat.
        assert_eq!(sub.poll_transmit(&log, t0, &mut buf), Next::Wrote);
        assert_eq!(sub.wait_after_heartbeat(), None);
        let due = t0 + settings.heartbeat;
        assert_eq!(
            sub.poll_transmit(&log, t0 + ms(5), &mut buf),
            Next::Wait(Some(due))
        );
        assert_eq!(sub.wait_after_heartbeat(), None);
        // Silence: a heartbeat, and the next wait is known without asking again.
        let at = due + ms(40);
        buf.clear();
        assert_eq!(sub.poll_transmit(&log, at, &mut buf), Next::Wrote);
        assert_eq!(buf, b":\n\n");
        let next = sub.wait_after_heartbeat();
        assert_eq!(next, Some(at + settings.heartbeat));
        let mut again = sub.clone();
        assert_eq!(
            again.poll_transmit(&log, at + ms(1), &mut Vec::new()),
            Next::Wait(next)
        );
        // An event after the heartbeat is written at the next poll, and the one
        // after that is no heartbeat.
        append(&mut log, "b");
        buf.clear();
        assert_eq!(sub.poll_transmit(&log, at + ms(2), &mut buf), Next::Wrote);
        assert!(buf.starts_with(b"id: 2"));
        assert_eq!(sub.wait_after_heartbeat(), None);
    }
}

#[cfg(test)]
mod stream_tests {
    //! Another server's job (`Persistence::Stream`): history beyond the window read
    //! from a fake Redis stream, ids not read yet, text subscribers.
    use super::*;
    use crate::fuzzing::{ms, t0};
    use crate::job::Job;
    use crate::JobId;

    fn entry(n: u64, last: u64) -> StreamEntry {
        let (kind, data) = match n {
            1 => ("start", r#"{"argv":["ticker"],"pid":7}"#.to_owned()),
            n if n == last => ("exit", r#"{"code":0,"duration_ms":5}"#.to_owned()),
            n => ("stdout", format!(r#"{{"text":"line {}\n"}}"#, n - 1)),
        };
        StreamEntry {
            id: EventId::new(n).unwrap(),
            kind: kind.to_owned(),
            data,
        }
    }

    /// The owner's stream of a job with `n` events (the last is `exit` when
    /// `complete`), as Redis holds it.
    fn redis(n: u64, complete: bool) -> Vec<StreamEntry> {
        let last = if complete { n } else { u64::MAX };
        (1..=n).map(|i| entry(i, last)).collect()
    }

    /// A follower's remote job with a small window, fed `entries`.
    fn follower(entries: &[StreamEntry]) -> Job {
        let mut job = Job::remote(JobId::from_random([1; 16]), "ticker".into(), 0, 300);
        for e in entries {
            job.handle_remote_entry(e);
        }
        job
    }

    /// What `XRANGE (0-after + COUNT count` answers on `stream`.
    fn xrange(stream: &[StreamEntry], after: Cursor, count: usize) -> Vec<StreamEntry> {
        stream
            .iter()
            .filter(|e| e.id.get() > after.0)
            .take(count)
            .cloned()
            .collect()
    }

    /// Drives `sub` until it waits or ends, reading `stream` for `ReadStream`;
    /// returns the bytes written and the last answer. Counts the stream reads.
    fn drive(
        log: &Log,
        stream: &[StreamEntry],
        sub: &mut Subscriber,
        now: Instant,
        reads: &mut usize,
    ) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let mut buf = Vec::new();
            match sub.poll_transmit(log, now, &mut buf) {
                Next::Wrote => out.extend_from_slice(&buf),
                Next::ReadStream { after, count } => {
                    *reads += 1;
                    let got = xrange(stream, after, count);
                    sub.handle_stream(log, after, Some(&got), now, &mut buf);
                    out.extend_from_slice(&buf);
                }
                other => return (out, other),
            }
        }
        panic!("no rest");
    }

    /// The ids of the events in `wire`, and whether any is a `gap`.
    fn ids(wire: &[u8]) -> (Vec<u64>, bool) {
        let mut decoder = sse::Decoder::new();
        decoder.feed(wire);
        let (mut ids, mut gap) = (Vec::new(), false);
        while let Some(item) = decoder.poll() {
            if let sse::Item::Event(e) = item {
                if e.event_type == "gap" {
                    gap = true;
                } else {
                    ids.push(e.last_event_id.parse().unwrap());
                }
            }
        }
        (ids, gap)
    }

    fn open(log: &Log, last: Option<&str>) -> Result<Subscriber, Refusal> {
        let params = SubscribeParams {
            last_event_id: last,
            ..SubscribeParams::default()
        };
        Subscriber::open(log, &params, &StreamSettings::default(), 0, t0())
    }

    #[test]
    fn a_short_read_overtaken_by_the_window_is_no_gap() {
        // The subscriber asks for history while Redis holds events 1..=100; before
        // its answer arrives, this server's reader appends 101..=200 and the
        // window moves past 100. The short answer is no proof that 101.. is gone.
        let stream = redis(200, true);
        let mut job = follower(&stream[..100]);
        let mut sub = open(job.log(), None).unwrap();
        let mut buf = Vec::new();
        let (after, count) = loop {
            match sub.poll_transmit(job.log(), t0(), &mut buf) {
                Next::Wrote => {} // the `retry:` preamble, and events 1.. if held
                Next::ReadStream { after, count } => break (after, count),
                other => panic!("history comes from the stream, not {other:?}"),
            }
        };
        let early = xrange(&stream[..100], after, count);
        for e in &stream[100..] {
            job.handle_remote_entry(e);
        }
        assert!(job.log().window_first() > 101, "the window moved on");
        sub.handle_stream(job.log(), after, Some(&early), t0(), &mut buf);
        let mut reads = 1;
        let (rest, next) = drive(job.log(), &stream, &mut sub, t0(), &mut reads);
        assert_eq!(next, Next::End);
        buf.extend_from_slice(&rest);
        let (got, gap) = ids(&buf);
        assert!(!gap, "no gap: every event is in the stream");
        assert_eq!(got, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn a_late_subscriber_gets_history_beyond_the_window_from_the_stream_once() {
        let stream = redis(200, true);
        let job = follower(&stream);
        let log = job.log();
        assert!(log.window_first() > 100, "the window holds only the newest");
        for last in [None, Some("0"), Some("1"), Some("57"), Some("199")] {
            let mut sub = open(log, last).unwrap();
            let mut reads = 0;
            let (wire, next) = drive(log, &stream, &mut sub, t0(), &mut reads);
            assert_eq!(next, Next::End, "{last:?}");
            let (got, gap) = ids(&wire);
            let from = last.map_or(1, |l| l.parse::<u64>().unwrap() + 1);
            assert_eq!(got, (from..=200).collect::<Vec<_>>(), "{last:?}");
            assert!(!gap, "{last:?}");
            // Byte for byte what the window holds for the events it still has.
            let tail = log.get(200).unwrap();
            assert!(wire.ends_with(tail));
            assert_eq!(reads > 0, from < log.window_first(), "{last:?}");
        }
    }

    #[test]
    fn only_what_the_stream_trimmed_is_a_gap() {
        let full = redis(200, true);
        let job = follower(&full);
        let log = job.log();
        // The cap trimmed ids up to 40 (the record's `start` is pinned in memory).
        let trimmed: Vec<StreamEntry> = full.iter().filter(|e| e.id.get() > 40).cloned().collect();
        let mut sub = open(log, None).unwrap();
        let (wire, next) = drive(log, &trimmed, &mut sub, t0(), &mut 0);
        assert_eq!(next, Next::End);
        let mut decoder = sse::Decoder::new();
        decoder.feed(&wire);
        let mut gaps = Vec::new();
        let mut got = Vec::new();
        while let Some(item) = decoder.poll() {
            if let sse::Item::Event(e) = item {
                if e.event_type == "gap" {
                    gaps.push(e.data);
                } else {
                    got.push(e.last_event_id.parse::<u64>().unwrap());
                }
            }
        }
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(
            gaps[0].contains("\"from\":2") && gaps[0].contains("\"to\":40"),
            "{gaps:?}"
        );
        let want: Vec<u64> = std::iter::once(1).chain(41..=200).collect();
        assert_eq!(got, want);
        // A stream gone altogether (retention): the rest before the window is a gap.
        let mut sub = open(log, Some("1")).unwrap();
        let (wire, next) = drive(log, &[], &mut sub, t0(), &mut 0);
        assert_eq!(next, Next::End);
        let (got, gap) = ids(&wire);
        assert!(gap);
        assert_eq!(got, (log.window_first()..=200).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_read_is_retried_later_never_a_gap() {
        let stream = redis(200, true);
        let job = follower(&stream);
        let log = job.log();
        let t0 = t0();
        let mut sub = open(log, Some("10")).unwrap();
        let mut buf = Vec::new();
        assert_eq!(sub.poll_transmit(log, t0, &mut buf), Next::Wrote); // retry:
        let Next::ReadStream { after, .. } = sub.poll_transmit(log, t0, &mut buf) else {
            panic!("reads the stream");
        };
        assert_eq!(after, Cursor(10));
        buf.clear();
        sub.handle_stream(log, after, None, t0, &mut buf);
        assert!(buf.is_empty());
        assert_eq!(
            sub.poll_transmit(log, t0 + ms(10), &mut buf),
            Next::Wait(Some(t0 + STREAM_RETRY))
        );
        assert!(matches!(
            sub.poll_transmit(log, t0 + STREAM_RETRY, &mut buf),
            Next::ReadStream {
                after: Cursor(10),
                ..
            }
        ));
        let (wire, next) = drive(log, &stream, &mut sub, t0 + STREAM_RETRY, &mut 0);
        assert_eq!(next, Next::End);
        assert_eq!(ids(&wire), ((11..=200).collect(), false));
    }

    #[test]
    fn a_running_remote_job_accepts_ids_not_read_yet() {
        let stream = redis(12, false);
        let mut job = follower(&stream[..8]);
        // Past what this server read: accepted while the job runs ...
        let mut sub = open(job.log(), Some("9")).unwrap();
        let mut buf = Vec::new();
        assert_eq!(sub.poll_transmit(job.log(), t0(), &mut buf), Next::Wrote); // retry:
        assert!(matches!(
            sub.poll_transmit(job.log(), t0(), &mut buf),
            Next::Wait(_)
        ));
        // ... and the stream continues after it once the reader gets there.
        for e in &stream[8..] {
            job.handle_remote_entry(e);
        }
        job.handle_remote_entry(&entry(13, 13));
        let (wire, next) = drive(job.log(), &stream, &mut sub, t0(), &mut 0);
        assert_eq!(next, Next::End);
        assert_eq!(ids(&wire), (vec![10, 11, 12, 13], false));
        // Complete: an id beyond the exit is refused, as on the owner.
        assert!(matches!(
            open(job.log(), Some("14")),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(open(job.log(), Some("13")).err(), Some(Refusal::NoContent));
        // A local memory-only log still refuses ids it does not have.
        let mut local = Log::new(Persistence::Memory, 1000);
        local.append(crate::log::Kind::Other, |id, b| {
            b.extend_from_slice(format!("id: {}\ndata: x\n\n", id.get()).as_bytes());
        });
        assert!(matches!(
            open(&local, Some("2")),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn a_text_subscriber_writes_only_output_text_to_its_limit_or_the_exit() {
        let t0 = t0();
        let settings = StreamSettings::default();
        let stream = redis(60, false);
        let mut job = follower(&stream);
        let want = |n: u64| -> String { (1..n).map(|i| format!("line {i}\n")).collect() };
        // Without follow: what is there when it opens (history from the stream).
        let mut snapshot = Subscriber::output_text(job.log(), false, &settings, t0);
        // With follow: to the exit.
        let mut follow = Subscriber::output_text(job.log(), true, &settings, t0);
        let (text, next) = drive(job.log(), &stream, &mut snapshot, t0, &mut 0);
        assert_eq!(
            (String::from_utf8(text).unwrap(), next),
            (want(60), Next::End)
        );
        let (text, next) = drive(job.log(), &stream, &mut follow, t0, &mut 0);
        assert_eq!(String::from_utf8(text).unwrap(), want(60));
        // Waiting: no heartbeat bytes, but a wake-up each heartbeat.
        assert_eq!(next, Next::Wait(Some(t0 + settings.heartbeat)));
        let later = t0 + settings.heartbeat;
        let mut buf = Vec::new();
        assert_eq!(
            follow.poll_transmit(job.log(), later, &mut buf),
            Next::Wait(Some(later + settings.heartbeat))
        );
        assert!(buf.is_empty());
        job.handle_remote_entry(&entry(61, 63));
        job.handle_remote_entry(&entry(62, 63));
        job.handle_remote_entry(&entry(63, 63));
        let (text, next) = drive(job.log(), &stream, &mut follow, later, &mut 0);
        assert_eq!(String::from_utf8(text).unwrap(), "line 60\nline 61\n");
        assert_eq!(next, Next::End);
    }
}
