//! Long responses: an SSE stream (a subscriber's cursor driven until the end of the
//! job's log or the client's departure) and the raw output log (`?follow=1`). Each
//! batch the core yields is framed as the connection's [`StreamFraming`] says (one
//! HTTP chunk for HTTP/1.1, bare bytes then a close for HTTP/1.0) and written at once.
//!
//! A connection thread waits on its job's `event_listener::Event` (woken when the
//! job appends) with the core's deadline, never on a polling timer. A thread cannot
//! also wait on its socket, so a client that went away is noticed by a look at the
//! socket (a non-blocking `recv`: EOF or reset) before each wait and each archive
//! read, or by a failed write: at the latest when the next heartbeat is due
//! (`sse.heartbeat_s`), or for `/log?follow=1` of a quiet job within the core's
//! `FOLLOW_CHECK` (15 s).
//!
//! A stream finds its job's slot once and then locks only that job, for one core
//! call at a time; the registry is locked again only to unsubscribe.
//!
//! A stream quiet for a whole heartbeat interval is handed to the idle thread
//! (`crate::idle`), which writes its heartbeats without waking its thread, and
//! gives it back at the job's next change ([`EventStream::beat`] is that thread's
//! step).

use crate::clock;
use crate::http::Conn;
use crate::idle::{Given, Idler};
use event_listener::{EventListener, Listener as _};
use spout_core::feed::ListSubscriber;
use spout_core::gzip::BodyEncoder;
use spout_core::http::{ResponseHead, StreamFraming};
use spout_core::registry::{raw_log_len, raw_log_next, LogNext, FOLLOW_CHECK};
use spout_core::subscriber::{self, LogEdges, Next, Subscriber};
use spout_core::JobId;
use spout_sys::archive::EventsReader;
use spout_sys::cluster::Cluster;
use spout_sys::driver::{log, JobSlot, Shared};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `data` as one piece of the body (one HTTP chunk, for HTTP/1.1). Returns
/// whether it worked.
fn send_chunk(conn: &mut Conn, framing: StreamFraming, data: &[u8], frame: &mut Vec<u8>) -> bool {
    frame.clear();
    framing.frame(data, frame);
    frame.is_empty() || conn.write_all(frame).is_ok()
}

/// Waits for a wake-up or the deadline, unless the client has already gone.
/// Returns false if it left.
fn wait(
    conn: &mut Conn,
    listener: event_listener::EventListener,
    deadline: Option<Instant>,
) -> bool {
    if conn.peer_gone() {
        return false;
    }
    match deadline {
        Some(t) => {
            // Rounded up, so that streams due together wake together.
            let _ = listener.wait_deadline(subscriber::coalesce(t, clock::epoch()));
        }
        None => listener.wait(),
    }
    true
}

/// Lets the client that a write just woke run before this thread reads on, once
/// per stream, after its first archive read is written. A resuming stream does
/// not block until the socket is full (hundreds of KiB later), and a task the
/// kernel wakes does not preempt a running one before that one's slice is used
/// up (EEVDF's run-to-parity: 1.5 ms on this 2-CPU machine), so where the stream
/// and its client shared a CPU, the client saw its first event only after
/// 0.3-2.5 ms of reads it may not want (a resuming client that takes the first
/// events and leaves), and the threads of earlier such streams, still reading,
/// held up the next request's head. Only once: after every read it cost
/// fan-out to lagging subscribers 14-35 % more CPU per GB (many streams, each
/// yielding to the others), and once the client has its first events it reads
/// on its own, or has left (the look at the socket before the next read).
fn give_way() {
    std::thread::yield_now();
}

/// A stream that has caught up lets go of buffers grown by archive reads: a
/// waiting subscriber costs nothing but its socket.
fn shrink(buf: &mut Vec<u8>, archive_buf: &mut Vec<u8>) {
    if buf.capacity() > 2 * spout_core::subscriber::TRANSMIT_BUDGET {
        *buf = Vec::new();
    }
    *archive_buf = Vec::new();
}

/// An event stream being served: the connection, the subscriber's cursor, and the
/// buffers kept from step to step. It can move to another thread between steps
/// ([`EventStream::serve`] returns it at its first wait when asked to), so that the
/// deep stack of the request that made it need not live as long as the stream.
/// It lives boxed: moving it (to that thread, to the idle thread and back) moves a
/// pointer, and the frames of a stream's thread stay as shallow as its stack pages.
pub struct EventStream {
    conn: Conn,
    framing: StreamFraming,
    id: JobId,
    sub: Subscriber,
    /// Found once: while this stream watches the job, retention keeps it.
    slot: Option<Arc<JobSlot>>,
    buf: Vec<u8>,
    reader: Option<EventsReader>,
    archive_buf: Vec<u8>,
    /// Events already counted in the server's totals.
    counted: u64,
    /// Whether the client went away (or a write failed).
    dropped: bool,
    /// Bytes the idle thread could not write without waiting: the stream's own
    /// thread writes them first when the stream is given back.
    pending: Vec<u8>,
    /// Whether the stream has yielded after its first archive write ([`give_way`]).
    gave_way: bool,
}

/// What the idle thread does with a stream after [`EventStream::beat`].
pub enum Beat {
    /// Keep holding it: wait on this listener (taken before the look at the job)
    /// until this deadline.
    Again(EventListener, Option<Instant>),
    /// Give it back to its thread: the job has more for it, its client left, or
    /// a write has to wait.
    Back,
}

impl EventStream {
    /// Writes the head and finds the job: a stream ready for [`EventStream::serve`].
    pub fn start(
        shared: &Shared,
        mut conn: Conn,
        mut head: ResponseHead,
        framing: StreamFraming,
        id: JobId,
        sub: Subscriber,
    ) -> Box<EventStream> {
        let mut frame = Vec::new();
        framing.adapt(&mut head);
        head.encode(&mut frame);
        let dropped = conn.write_all(&frame).is_err();
        Box::new(EventStream {
            conn,
            framing,
            id,
            sub,
            slot: shared.slot(id),
            buf: Vec::new(),
            reader: None,
            archive_buf: Vec::new(),
            counted: 0,
            dropped,
            pending: Vec::new(),
            gave_way: false,
        })
    }

    /// One look at a held stream's job when its deadline came, on the idle
    /// thread (`crate::idle`), without ever waiting: the client checked, the
    /// core polled, what it yields (a heartbeat) written as far as the socket
    /// takes it at once. Anything but a written heartbeat, or a wait, gives the
    /// stream back to its own thread, which then goes on as usual.
    pub fn beat(&mut self, shared: &Shared) -> Beat {
        if self.conn.peer_gone() {
            self.dropped = true;
            return Beat::Back;
        }
        let Some(slot) = &self.slot else {
            return Beat::Back;
        };
        let listener = slot.listen();
        self.framing.begin(&mut self.buf);
        let next = self
            .sub
            .poll_transmit(slot.lock().log(), clock::now(), &mut self.buf);
        match next {
            Next::Wrote => {
                let frame = self.framing.finish(&mut self.buf);
                match self.conn.try_write(frame) {
                    Ok(n) => {
                        self.pending.extend_from_slice(&frame[n..]);
                        shared.record_sent(self.sub.events_sent() - self.counted, n as u64);
                        self.counted = self.sub.events_sent();
                    }
                    Err(_) => {
                        self.dropped = true;
                        return Beat::Back;
                    }
                }
                match self.sub.wait_after_write() {
                    Some(t) if self.pending.is_empty() => Beat::Again(listener, Some(t)),
                    _ => Beat::Back,
                }
            }
            Next::Wait(deadline) => Beat::Again(listener, deadline),
            Next::ReadArchive { .. } | Next::ReadStream { .. } | Next::End => Beat::Back,
        }
    }

    /// Serves the subscriber's bytes until the end of the log (then the framing's
    /// end) or until the client goes away; `None` then. With `hand_off`, returns
    /// the stream instead when it first has to wait (caught up, nothing written
    /// since), for its caller to serve the rest elsewhere. Without, a stream that
    /// has written a heartbeat is held by `idler` (if given) until its job changes.
    pub fn serve(
        mut self: Box<Self>,
        shared: &Shared,
        cluster: Option<&Cluster>,
        idler: Option<&Idler>,
        hand_off: bool,
    ) -> Option<Box<EventStream>> {
        let framing = self.framing;
        let id = self.id;
        // After a heartbeat: the listener taken before it and the core's next deadline
        // (`Subscriber::wait_after_heartbeat`), waited for without another look at the
        // job. Anything appended since that look wakes the listener.
        let mut idle = None;
        while !self.dropped {
            if let Some((listener, deadline)) = idle.take() {
                shrink(&mut self.buf, &mut self.archive_buf);
                let listener = match idler {
                    Some(idler) => match idler.hold(self, listener, deadline) {
                        Given::Back(stream) => {
                            self = stream;
                            None
                        }
                        Given::Refused(stream, listener) => {
                            self = stream;
                            Some(listener)
                        }
                    },
                    None => Some(listener),
                };
                if let Some(listener) = listener {
                    if !wait(&mut self.conn, listener, Some(deadline)) {
                        self.dropped = true;
                        break;
                    }
                }
                if !self.pending.is_empty() {
                    self.dropped = self.conn.write_all(&self.pending).is_err();
                    shared.record_sent(0, self.pending.len() as u64);
                    self.pending = Vec::new();
                }
                if self.dropped {
                    break;
                }
            }
            // The subscriber appends after room for the chunk-size line: one copy of
            // the log's bytes per subscriber, no re-framing copy.
            framing.begin(&mut self.buf);
            shared.record_sent(self.sub.events_sent() - self.counted, 0);
            self.counted = self.sub.events_sent();
            let Some(slot) = &self.slot else {
                let _ = self.conn.write_all(framing.end());
                break;
            };
            let listener = slot.listen();
            let now = clock::now();
            let next = self
                .sub
                .poll_transmit(slot.lock().log(), now, &mut self.buf);
            let (conn, buf, sub) = (&mut self.conn, &mut self.buf, &mut self.sub);
            match next {
                Next::Wrote => {
                    self.dropped = conn.write_all(framing.finish(buf)).is_err();
                    // Not before a hand-off: that waits on the stream's own thread.
                    if !hand_off {
                        idle = sub.wait_after_heartbeat().map(|t| (listener, t));
                    }
                }
                Next::Wait(deadline) => {
                    shrink(buf, &mut self.archive_buf);
                    if hand_off {
                        return Some(self);
                    }
                    self.dropped = !wait(conn, listener, deadline);
                }
                Next::ReadArchive { offset, first, len } => {
                    // A client that left (a resuming one that wanted only the first
                    // events) costs no more reads: one look per read is cheap next
                    // to the read and the scan.
                    if conn.peer_gone() {
                        self.dropped = true;
                        break;
                    }
                    // Read into a buffer kept from read to read (not zeroed again).
                    let archive_buf = &mut self.archive_buf;
                    let read = match (&shared.archive, &self.reader) {
                        (Some(archive), None) => match archive.open_events(&id.to_string()) {
                            Ok(r) => self.reader.insert(r).read_into(offset, len, archive_buf),
                            Err(e) => Err(e),
                        },
                        (_, Some(r)) => r.read_into(offset, len, archive_buf),
                        (None, None) => Ok(0),
                    };
                    let n = read.unwrap_or_else(|e| {
                        log(&format!("job {id}: archive read failed: {e}"));
                        0
                    });
                    let bytes = &archive_buf[..n];
                    // Scanned and encoded without the job's lock (its edges read
                    // under it): the job and new subscribers need not wait.
                    let edges = LogEdges::of(slot.lock().log());
                    sub.handle_archive_at(edges, offset, first, bytes, buf);
                    if !framing.is_empty(buf) {
                        self.dropped = conn.write_all(framing.finish(buf)).is_err();
                        if !self.gave_way {
                            self.gave_way = true;
                            give_way();
                        }
                    }
                }
                Next::ReadStream { after, count } => {
                    // Redis is read without the job's lock.
                    let entries = cluster.and_then(|c| c.read_range(id, after, count));
                    let now = clock::now();
                    sub.handle_stream(slot.lock().log(), after, entries.as_deref(), now, buf);
                    if !framing.is_empty(buf) {
                        self.dropped = conn.write_all(framing.finish(buf)).is_err();
                    }
                }
                Next::End => {
                    let _ = conn.write_all(framing.end());
                    break;
                }
            }
            if !self.dropped {
                shared.record_sent(0, self.buf.len() as u64);
            }
        }
        shared.record_sent(self.sub.events_sent() - self.counted, 0);
        shared.lock().unsubscribe(id, self.dropped, clock::now());
        None
    }
}

/// Serves the live job list (`GET /jobs` as an event stream): the head, then what
/// the core's list cursor yields, waking on the registry-wide list notifier or the
/// heartbeat deadline, until the client goes away.
pub fn job_list(
    shared: &Shared,
    conn: &mut Conn,
    mut head: ResponseHead,
    framing: StreamFraming,
    mut sub: ListSubscriber,
) {
    let mut buf = Vec::new();
    framing.adapt(&mut head);
    head.encode(&mut buf);
    let mut dropped = conn.write_all(&buf).is_err();
    let mut counted = 0;
    while !dropped {
        framing.begin(&mut buf);
        let listener = shared.listen_list();
        let next = shared.lock().poll_list(&mut sub, clock::now(), &mut buf);
        shared.record_sent(sub.events_sent() - counted, 0);
        counted = sub.events_sent();
        match next {
            Next::Wrote => {
                shared.record_sent(0, buf.len() as u64);
                dropped = conn.write_all(framing.finish(&mut buf)).is_err();
            }
            Next::Wait(deadline) => dropped = !wait(conn, listener, deadline),
            Next::End | Next::ReadArchive { .. } | Next::ReadStream { .. } => {
                let _ = conn.write_all(framing.end());
                break;
            }
        }
    }
    shared.lock().unsubscribe_list(dropped);
}

/// Serves a job's raw output log from its archive file, as the core says: up to its
/// length at the request, or (follow) until the job is complete. Each read goes out
/// through `body` (the negotiated coding), which also writes the body's last bytes.
pub fn raw_log(
    shared: &Shared,
    conn: &mut Conn,
    mut head: ResponseHead,
    framing: StreamFraming,
    id: JobId,
    follow: bool,
    mut body: BodyEncoder,
) {
    let mut frame = Vec::new();
    framing.adapt(&mut head);
    head.encode(&mut frame);
    if conn.write_all(&frame).is_err() {
        return;
    }
    // Opened when there are bytes to read: the job's task creates the file just
    // after the job is answered, so a request can come before it exists.
    let mut file = None;
    let mut misses = 0u32;
    // Found once; a job that is gone ends the answer (the core says `End`).
    let mut coded = Vec::new();
    let Some(slot) = shared.slot(id) else {
        end_log(conn, framing, &mut body, &mut frame);
        return;
    };
    let limit = if follow {
        None
    } else {
        Some(raw_log_len(&slot.lock()).0)
    };
    let mut offset = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let listener = slot.listen();
        let next = raw_log_next(Some(&slot.lock()), offset, limit);
        match next {
            LogNext::Read { upto } => {
                let want = usize::try_from(upto - offset)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                if file.is_none() {
                    file = shared
                        .archive
                        .as_ref()
                        .and_then(|a| a.open_output(&id.to_string()).ok());
                }
                match file.as_ref().map(|f| f.read_at(&mut buf[..want], offset)) {
                    Some(Ok(n)) if n > 0 => {
                        misses = 0;
                        offset += n as u64;
                        coded.clear();
                        body.encode(&buf[..n], &mut coded);
                        if !send_chunk(conn, framing, &coded, &mut frame) {
                            return;
                        }
                    }
                    _ => {
                        // Counted but not yet in the file (the job's task writes it
                        // just after the core counts the bytes): give it a moment;
                        // a file that never appears ends the answer after ~1 s.
                        misses += 1;
                        if misses > 200 {
                            end_log(conn, framing, &mut body, &mut frame);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            LogNext::Wait => {
                if !wait(conn, listener, Some(clock::now() + FOLLOW_CHECK)) {
                    return;
                }
            }
            LogNext::End => {
                end_log(conn, framing, &mut body, &mut frame);
                return;
            }
        }
    }
}

/// Ends a raw-log body: the coding's last bytes, then the framing's end.
fn end_log(conn: &mut Conn, framing: StreamFraming, body: &mut BodyEncoder, frame: &mut Vec<u8>) {
    let mut last = Vec::new();
    body.finish(&mut last);
    if send_chunk(conn, framing, &last, frame) {
        let _ = conn.write_all(framing.end());
    }
}
