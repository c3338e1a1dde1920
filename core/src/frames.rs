//! A subscriber's output as a list of frames to write with one vectored write: the
//! log's shared event bytes by reference (`Arc<[u8]>`, encoded once per job, never
//! copied per subscriber), events of an archive read by their place in the read
//! buffer, and the subscriber's own small pieces (`retry:`, gaps, heartbeats, small
//! events) copied into one buffer of its own.
//!
//! Rules:
//! 1. The frames, written in order, are exactly the bytes the copy path
//!    ([`Subscriber::poll_transmit`](crate::subscriber::Subscriber::poll_transmit)
//!    into a `Vec<u8>`) gives for the same calls.
//! 2. An event shorter than [`Frames::min_shared`] is copied: for a small event a
//!    copy costs less than one more `iovec` and a shared count's increment and
//!    decrement (an atomic that every subscriber of the job touches).
//! 3. A [`Frames`] holds bytes of at most one archive read (the `read` buffer
//!    passed to [`Subscriber::handle_archive`](crate::subscriber::Subscriber::handle_archive)):
//!    a runtime writes the frames and clears them before it reads again, and passes
//!    that same buffer to [`Frames::slices`].
//! 4. Frames hold shared bytes only until [`Frames::clear`]: a runtime clears them
//!    once written, so a waiting subscriber keeps no event alive.

use crate::http::{StreamFraming, CHUNK_HEAD_ROOM};
use std::ops::Range;
use std::sync::Arc;

/// Events of at least this many bytes are written by reference (see rule 2).
pub const MIN_SHARED: usize = 1024;

/// One frame: where its bytes are.
#[derive(Clone, Debug)]
enum Frame {
    /// `own[range]`.
    Own(Range<usize>),
    /// A whole event of the log, shared.
    Shared(Arc<[u8]>),
    /// `read[range]`: an event of the archive read.
    Read(Range<usize>),
}

/// A subscriber's output for one write: frames in order, plus the body framing
/// around them. See the module docs for its rules.
///
/// Copied bytes follow room for the framing's head, and the framing's tail is
/// appended to them, as [`StreamFraming::begin`] and [`StreamFraming::finish`]
/// do: frames that share nothing are one contiguous buffer, one plain write.
#[derive(Clone, Debug)]
pub struct Frames {
    /// Room for the head, then copied bytes; `own[..sealed]` is covered by
    /// `list`, the rest follows it (empty: nothing copied yet, no room taken).
    own: Vec<u8>,
    sealed: usize,
    list: Vec<Frame>,
    /// Bytes in `list`.
    listed: usize,
    min_shared: usize,
    /// Once framed: where the head starts in `own`, and the tail's length (at
    /// the end of `own`).
    head_at: usize,
    tail_len: usize,
}

impl Default for Frames {
    fn default() -> Self {
        Frames::with_min_shared(MIN_SHARED)
    }
}

impl Frames {
    /// Empty frames that share events of [`MIN_SHARED`] bytes or more.
    #[must_use]
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Empty frames that share events of `min_shared` bytes or more (for tests
    /// and fuzzing, which use small events: `0` shares every event).
    #[must_use]
    pub fn with_min_shared(min_shared: usize) -> Frames {
        Frames {
            own: Vec::new(),
            sealed: CHUNK_HEAD_ROOM,
            list: Vec::new(),
            listed: 0,
            min_shared,
            head_at: CHUNK_HEAD_ROOM,
            tail_len: 0,
        }
    }

    // ---- getters ----

    /// The smallest event written by reference.
    #[must_use]
    pub fn min_shared(&self) -> usize {
        self.min_shared
    }

    /// Body bytes held (without the framing).
    #[must_use]
    pub fn len(&self) -> usize {
        self.listed + self.own.len().saturating_sub(self.sealed + self.tail_len)
    }

    /// Bytes to write: the body bytes held and, once [`Frames::frame`]d, the
    /// framing around them.
    #[must_use]
    pub fn framed_len(&self) -> usize {
        CHUNK_HEAD_ROOM - self.head_at + self.len() + self.tail_len
    }

    /// Whether no body bytes are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes to write, in order: the framing's head, the frames, its tail
    /// (adjacent copied bytes as one slice). `read` is the buffer last passed to
    /// [`Subscriber::handle_archive`](crate::subscriber::Subscriber::handle_archive)
    /// since [`Frames::clear`] (any slice when there was none). Empty slices are
    /// left out.
    ///
    /// # Panics
    /// When `read` is shorter than that buffer (rule 3 broken by the runtime).
    pub fn slices<'a>(&'a self, read: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        // The head and the copied bytes after it are one slice.
        let (first, skip) = match self.list.first() {
            None => (self.head_at..self.own.len(), 0),
            Some(Frame::Own(r)) => (self.head_at..r.end, 1),
            Some(_) => (self.head_at..CHUNK_HEAD_ROOM, 0),
        };
        let first = self.own.get(first).unwrap_or_default();
        let frames = self.list.iter().skip(skip).map(move |f| match f {
            Frame::Own(r) => &self.own[r.clone()],
            Frame::Shared(wire) => &wire[..],
            Frame::Read(r) => &read[r.clone()],
        });
        // The copied rest and the tail, when there are frames before them.
        let rest = if self.list.is_empty() {
            &[][..]
        } else {
            self.own.get(self.sealed..).unwrap_or_default()
        };
        std::iter::once(first)
            .chain(frames)
            .chain(std::iter::once(rest))
            .filter(|s| !s.is_empty())
    }

    /// All the bytes of [`Frames::slices`] in one vector (for tests).
    #[must_use]
    pub fn to_vec(&self, read: &[u8]) -> Vec<u8> {
        self.slices(read).flatten().copied().collect()
    }

    // ---- mutators ----

    /// Frames what is held as one piece of a body framed with `framing` (one
    /// HTTP chunk): call it once, when the frames are complete, before
    /// [`Frames::slices`]. Nothing is framed when nothing is held (an empty chunk
    /// would end the body).
    pub fn frame(&mut self, framing: StreamFraming) {
        let len = self.len();
        if len == 0 || self.tail_len > 0 || self.head_at < CHUNK_HEAD_ROOM {
            return;
        }
        let mut head = [0; CHUNK_HEAD_ROOM];
        let at = framing.head(len, &mut head);
        self.reserve_room();
        self.own[at..CHUNK_HEAD_ROOM].copy_from_slice(&head[at..]);
        self.head_at = at;
        let tail = framing.tail();
        self.own.extend_from_slice(tail);
        self.tail_len = tail.len();
    }

    /// Forgets every frame (and drops the shared bytes). Keeps the buffers'
    /// memory unless the copy buffer grew beyond `keep` bytes.
    pub fn clear(&mut self, keep: usize) {
        if self.own.capacity() > keep {
            self.own = Vec::new();
            self.list = Vec::new();
        } else {
            self.own.clear();
            self.list.clear();
        }
        self.sealed = CHUNK_HEAD_ROOM;
        self.listed = 0;
        self.head_at = CHUNK_HEAD_ROOM;
        self.tail_len = 0;
    }

    /// Room for the framing's head, taken with the first copied byte.
    fn reserve_room(&mut self) {
        if self.own.is_empty() {
            self.own.resize(CHUNK_HEAD_ROOM, 0);
        }
    }

    /// The buffer copied bytes are appended to.
    pub(crate) fn own(&mut self) -> &mut Vec<u8> {
        self.reserve_room();
        &mut self.own
    }

    /// Appends a shared event by reference (rule 2: copied when small).
    pub(crate) fn push_shared(&mut self, wire: &Arc<[u8]>) {
        if wire.len() < self.min_shared {
            self.own().extend_from_slice(wire);
        } else {
            self.push(Frame::Shared(wire.clone()), wire.len());
        }
    }

    /// Appends `read[at..at + wire.len()]` (which is `wire`) by reference (rule 2:
    /// copied when small).
    pub(crate) fn push_read(&mut self, wire: &[u8], at: usize) {
        if wire.len() < self.min_shared {
            self.own().extend_from_slice(wire);
        } else {
            self.push(Frame::Read(at..at + wire.len()), wire.len());
        }
    }

    fn push(&mut self, frame: Frame, len: usize) {
        self.reserve_room();
        if self.own.len() > self.sealed {
            self.list.push(Frame::Own(self.sealed..self.own.len()));
            self.listed += self.own.len() - self.sealed;
            self.sealed = self.own.len();
        }
        self.list.push(frame);
        self.listed += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    #[test]
    fn frames_are_the_bytes_in_order_small_ones_copied() {
        let mut f = Frames::with_min_shared(4);
        f.own().extend_from_slice(b"retry: 1\n\n");
        f.push_shared(&shared("abc")); // copied
        f.push_shared(&shared("shared-1"));
        let read = b"..read-1..xy";
        f.push_read(&read[2..8], 2);
        f.push_read(&read[10..12], 10); // copied
        f.own().extend_from_slice(b":\n\n");
        assert_eq!(f.len(), 10 + 3 + 8 + 6 + 2 + 3);
        assert_eq!(f.to_vec(read), b"retry: 1\n\nabcshared-1read-1xy:\n\n");
        // Copied runs, then the references, then the copied rest: four slices.
        assert_eq!(f.slices(read).count(), 4);
    }

    #[test]
    fn framing_wraps_the_whole_piece_and_clear_forgets_it() {
        let mut f = Frames::with_min_shared(0);
        f.push_shared(&shared("0123456789abcdefg"));
        f.own().extend_from_slice(b"\n");
        f.frame(StreamFraming::Chunked);
        assert_eq!(f.to_vec(&[]), b"12\r\n0123456789abcdefg\n\r\n");
        let mut one = Vec::new();
        crate::http::encode_chunk(b"0123456789abcdefg\n", &mut one);
        assert_eq!(f.to_vec(&[]), one);
        assert_eq!(f.framed_len(), one.len());
        f.clear(1 << 16);
        assert!(f.is_empty());
        assert_eq!(f.slices(&[]).count(), 0);
        // Nothing held: no empty chunk (it would end the body).
        f.frame(StreamFraming::Chunked);
        assert_eq!(f.slices(&[]).count(), 0);
        f.own().extend_from_slice(b"x");
        f.frame(StreamFraming::CloseDelimited);
        assert_eq!(f.to_vec(&[]), b"x");
    }
}
