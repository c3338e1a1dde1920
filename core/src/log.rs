//! A job's event log: ids 1, 2, 3 …, each event encoded once into its final wire
//! bytes, a bounded in-memory window of them, and the rule that an event is visible
//! to subscribers only once it is archived.
//!
//! Rules:
//! 1. `append` assigns the next id and encodes the event; the bytes are shared
//!    (`Arc<[u8]>`) by every subscriber, never re-encoded.
//! 2. In [`Persistence::Archive`] mode an event is *pending* until the runtime has
//!    written it (`poll_persist` → write → `handle_persisted`); only then is it
//!    visible. In [`Persistence::Memory`] and [`Persistence::Stream`] mode it is
//!    visible at once.
//! 3. The window keeps the newest visible events up to `max_window_bytes` (at least
//!    one); older ones are evicted, never pending ones. The `start` event (id 1) is
//!    pinned: every viewer, `?tail=N` included, can say what it is looking at.
//! 4. Ids map to window positions in O(1) (ids are dense); evicted ids map to an
//!    archive offset through a sparse index in O(log n).
//! 5. Once a gzip subscriber has asked ([`Log::enable_gzip`]), each later event is
//!    also compressed once, as a full-flush deflate [`gzip::Block`] that every gzip
//!    subscriber shares. The compressor lives only until the `exit` event.

use crate::archive;
use crate::gzip;
use crate::id::EventId;
use std::collections::VecDeque;
use std::sync::Arc;

/// Where the log's events live beyond the memory window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Every event is appended to an on-disk archive before it is visible; events
    /// that left the window are read back from it.
    Archive,
    /// No disk: events that left the window are lost, and a `gap` says so.
    Memory,
    /// Another server's job (cluster mode): visible at once and kept in memory as
    /// in [`Persistence::Memory`]; events that left the window are read again from
    /// the job's stream in Redis (`Next::ReadStream`), and a `gap` names only what
    /// the stream no longer holds.
    Stream,
}

/// One stored event.
#[derive(Clone, Debug)]
struct Entry {
    wire: Arc<[u8]>,
    /// Where its record starts in the archive file.
    offset: u64,
    /// Whether it is a `stdout`/`stderr` event (for `?tail=N`).
    output: bool,
    /// The event compressed once, when gzip was enabled before it was appended.
    gz: Option<gzip::Block>,
}

/// Archive offsets are remembered about every this many bytes of archive.
const INDEX_STRIDE: u64 = 64 * 1024;

/// A job's event log. See the module docs for its rules.
#[derive(Debug)]
pub struct Log {
    persistence: Persistence,
    max_window_bytes: usize,
    /// The window: ids `first ..= first + entries.len() - 1`.
    entries: VecDeque<Entry>,
    first: u64,
    window_bytes: usize,
    /// The `start` event, pinned.
    start: Option<Arc<[u8]>>,
    /// The next id to assign.
    next: u64,
    /// The highest id subscribers may see.
    visible: u64,
    /// Framed records not yet handed to the runtime, and the id of the last one.
    unpersisted: Vec<u8>,
    unpersisted_upto: u64,
    /// The archive's length once every appended record is written.
    archive_len: u64,
    /// Sparse `(id, offset)` pairs, increasing.
    index: Vec<(u64, u64)>,
    /// The id of the `exit` event, once appended.
    exit_id: Option<u64>,
    /// The last id of a `stdout`/`stderr` event.
    last_output: u64,
    /// Raw bytes taken from each stream so far (for heartbeats and status).
    stdout_bytes: u64,
    stderr_bytes: u64,
    scratch: Vec<u8>,
    /// The job's one compressor for shared blocks, from [`Log::enable_gzip`] to `exit`.
    deflater: Option<Box<gzip::Deflater>>,
}

impl Log {
    /// An empty log.
    #[must_use]
    pub fn new(persistence: Persistence, max_window_bytes: usize) -> Log {
        Log {
            persistence,
            max_window_bytes,
            entries: VecDeque::new(),
            first: 1,
            window_bytes: 0,
            start: None,
            next: 1,
            visible: 0,
            unpersisted: Vec::new(),
            unpersisted_upto: 0,
            archive_len: 0,
            index: Vec::new(),
            exit_id: None,
            last_output: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            scratch: Vec::new(),
            deflater: None,
        }
    }

    // ---- getters ----

    /// Where events beyond the window live.
    #[must_use]
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// The id of the last event subscribers may see (0 when none).
    #[must_use]
    pub fn last_visible(&self) -> u64 {
        self.visible
    }

    /// The id the next appended event will get.
    #[must_use]
    pub fn next_id(&self) -> EventId {
        // invariant: `next` starts at 1 and only grows.
        EventId::new(self.next).expect("next id is at least 1")
    }

    /// The oldest id held in memory (pinned `start` aside); equals
    /// `last_visible() + 1` when nothing is held.
    #[must_use]
    pub fn window_first(&self) -> u64 {
        self.first
    }

    /// Bytes of wire data held in the window.
    #[must_use]
    pub fn window_bytes(&self) -> usize {
        self.window_bytes
    }

    /// Whether the `exit` event is visible: the log is complete.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.exit_id.is_some_and(|id| id <= self.visible)
    }

    /// The id of the `exit` event once appended.
    #[must_use]
    pub fn exit_id(&self) -> Option<u64> {
        self.exit_id
    }

    /// The id of the last `stdout`/`stderr` event (0 when none).
    #[must_use]
    pub fn last_output_id(&self) -> u64 {
        self.last_output
    }

    /// Raw bytes taken from the process so far: `(stdout, stderr)`.
    #[must_use]
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.stdout_bytes, self.stderr_bytes)
    }

    /// Counts raw bytes taken from a stream.
    pub fn count_bytes(&mut self, stream: crate::event::Stream, n: u64) {
        match stream {
            crate::event::Stream::Stdout => self.stdout_bytes += n,
            crate::event::Stream::Stderr => self.stderr_bytes += n,
        }
    }

    /// The archive's length once every appended record is written.
    #[must_use]
    pub fn archive_len(&self) -> u64 {
        self.archive_len
    }

    /// The wire bytes of a visible event still in memory.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<&[u8]> {
        self.get_shared(id).map(|wire| &wire[..])
    }

    /// The wire bytes of a visible event still in memory, shared: what every
    /// subscriber writes, by reference ([`crate::frames::Frames`]).
    #[must_use]
    pub fn get_shared(&self, id: u64) -> Option<&Arc<[u8]>> {
        if id == 1 {
            if let Some(start) = &self.start {
                return (self.visible >= 1).then_some(start);
            }
        }
        if id < self.first || id > self.visible {
            return None;
        }
        let pos = usize::try_from(id - self.first).ok()?;
        self.entries.get(pos).map(|e| &e.wire)
    }

    /// The shared gzip block of a visible event still in memory, if it has one
    /// (events appended before [`Log::enable_gzip`] have none).
    #[must_use]
    pub fn block(&self, id: u64) -> Option<&gzip::Block> {
        if id < self.first || id > self.visible {
            return None;
        }
        let pos = usize::try_from(id - self.first).ok()?;
        self.entries.get(pos).and_then(|e| e.gz.as_ref())
    }

    /// Whether the log compresses events as they are appended.
    #[must_use]
    pub fn gzip_enabled(&self) -> bool {
        self.deflater.is_some()
    }

    /// Where to start reading the archive to find event `id`: a record offset and
    /// the id of the record there (at or before `id`). `None` in memory mode or for
    /// ids the log never had.
    #[must_use]
    pub fn archive_position(&self, id: u64) -> Option<(u64, EventId)> {
        if self.persistence != Persistence::Archive || id == 0 || id >= self.next {
            return None;
        }
        if id >= self.first {
            let pos = usize::try_from(id - self.first).ok()?;
            return Some((self.entries.get(pos)?.offset, EventId::new(id)?));
        }
        // Binary search the sparse index for the last entry at or before `id`.
        let at = self.index.partition_point(|&(i, _)| i <= id);
        let (i, off) = if at == 0 { (1, 0) } else { self.index[at - 1] };
        Some((off, EventId::new(i)?))
    }

    // ---- mutators ----

    /// A gzip subscriber arrived: compress every event appended from now on once,
    /// for all of them. Does nothing once the `exit` event is appended.
    pub fn enable_gzip(&mut self) {
        if self.exit_id.is_none() && self.deflater.is_none() {
            self.deflater = Some(Box::default());
        }
    }

    /// Appends an event whose wire bytes `encode` writes for the given id; returns the
    /// id. `output` marks `stdout`/`stderr` events; `exit` marks the final event.
    pub fn append(&mut self, kind: Kind, encode: impl FnOnce(EventId, &mut Vec<u8>)) -> EventId {
        let id = self.next_id();
        self.scratch.clear();
        encode(id, &mut self.scratch);
        let wire: Arc<[u8]> = Arc::from(&self.scratch[..]);
        if self.persistence == Persistence::Archive {
            archive::encode_record(id, &wire, &mut self.unpersisted);
            self.unpersisted_upto = id.get();
        }
        self.push(wire, kind);
        if self.persistence != Persistence::Archive {
            self.visible = id.get();
        }
        self.evict();
        id
    }

    /// Appends an event at a given id (a remote job's, read from Redis): `None`
    /// for an id already held. Ids between the next one and `id` are not held: the
    /// window restarts at `id`, so subscribers that need them get a `gap`. Meant
    /// for [`Persistence::Stream`] logs, where nothing waits to be archived.
    pub fn append_at(
        &mut self,
        id: EventId,
        kind: Kind,
        encode: impl FnOnce(EventId, &mut Vec<u8>),
    ) -> Option<EventId> {
        if id.get() < self.next {
            return None;
        }
        if id.get() > self.next {
            self.entries.clear();
            self.window_bytes = 0;
            self.first = id.get();
            self.next = id.get();
            if self.persistence != Persistence::Archive {
                self.visible = id.get() - 1;
            }
        }
        Some(self.append(kind, encode))
    }

    /// Adds the next event's bytes to the window and its bookkeeping (ids, the
    /// archive offset index, the pinned `start`).
    fn push(&mut self, wire: Arc<[u8]>, kind: Kind) {
        let id = self.next;
        let offset = self.archive_len;
        if self.persistence == Persistence::Archive {
            if self
                .index
                .last()
                .is_none_or(|&(_, off)| offset >= off + INDEX_STRIDE)
            {
                self.index.push((id, offset));
            }
            self.archive_len += (archive::RECORD_HEADER_LEN + wire.len()) as u64;
        }
        if id == 1 {
            self.start = Some(wire.clone());
        }
        let gz = self
            .deflater
            .as_deref_mut()
            .map(|d| gzip::Block::compress(d, &wire));
        match kind {
            Kind::Output => self.last_output = id,
            Kind::Exit => {
                self.exit_id = Some(id);
                self.deflater = None;
            }
            Kind::Other => {}
        }
        if self.entries.is_empty() {
            self.first = id;
        }
        self.window_bytes += wire.len();
        self.entries.push_back(Entry {
            wire,
            offset,
            output: kind == Kind::Output,
            gz,
        });
        self.next += 1;
    }

    /// Framed archive records not yet handed out, and the id of the last of them;
    /// the runtime writes them, then calls [`Log::handle_persisted`].
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<(Vec<u8>, EventId)> {
        if self.unpersisted.is_empty() {
            return None;
        }
        let upto = EventId::new(self.unpersisted_upto)?;
        Some((std::mem::take(&mut self.unpersisted), upto))
    }

    /// The runtime wrote every record up to `upto`: they become visible.
    pub fn handle_persisted(&mut self, upto: EventId) {
        self.visible = self.visible.max(upto.get().min(self.next - 1));
        self.evict();
    }

    /// The archive can no longer be written: from now on events are visible at
    /// once and kept only in the memory window (as in [`Persistence::Memory`]), so
    /// live subscribers go on and anything that leaves the window is named by a
    /// `gap` rather than lost silently.
    pub fn handle_archive_failed(&mut self) {
        self.persistence = Persistence::Memory;
        self.unpersisted.clear();
        self.visible = self.next - 1;
        self.evict();
    }

    /// Rebuilds a log from its archive records (after a restart): ids continue
    /// after the last record; the newest records fill the window.
    pub fn restore<'a>(
        max_window_bytes: usize,
        records: impl IntoIterator<Item = (archive::Record<'a>, Kind)>,
    ) -> Log {
        let mut log = Log::new(Persistence::Archive, max_window_bytes);
        for (record, kind) in records {
            if record.id.get() != log.next {
                break;
            }
            log.push(Arc::from(record.wire), kind);
            log.visible = record.id.get();
            log.evict();
        }
        log
    }

    /// The id `?tail=n` starts from: the `n`-th last visible output event (never the
    /// `start` event, which a tail subscriber gets anyway). With `n = 0`, the id after
    /// the last output event (so `exit`, if any, is still sent).
    #[must_use]
    pub fn tail_start(&self, n: u64) -> u64 {
        if n == 0 {
            // Only what comes after the output: a finished job still ends with exit.
            return (self.last_output + 1).max(2);
        }
        // Count back over output events held in memory ...
        let mut seen = 0;
        let mut id = self.first + self.entries.len() as u64;
        for e in self.entries.iter().rev() {
            id -= 1;
            if id > self.visible || id < 2 {
                continue;
            }
            if e.output {
                seen += 1;
                if seen == n {
                    return id;
                }
            }
        }
        // ... and beyond the window, where kinds are not kept, count ids.
        if self.first <= 2 {
            return 2;
        }
        self.first.saturating_sub(n - seen).max(2)
    }

    fn evict(&mut self) {
        while self.window_bytes > self.max_window_bytes
            && self.entries.len() > 1
            && self.first <= self.visible
        {
            // invariant: the loop condition says the deque is not empty.
            let e = self.entries.pop_front().expect("window not empty");
            self.window_bytes -= e.wire.len();
            self.first += 1;
        }
    }
}

/// What kind of event is appended, for the log's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `stdout` or `stderr` event.
    Output,
    /// The final `exit` event.
    Exit,
    /// Anything else (`start`, `error`).
    Other,
}
