//! Long responses: an SSE stream (a subscriber's cursor driven until the end of the
//! job's log or the client's departure) and the raw output log (`?follow=1`). Each
//! batch the core yields is framed as one HTTP chunk and flushed at once; an SSE
//! stream's batch is the core's [`Frames`], written with vectored writes straight
//! from the log's shared bytes and the archive read (no copy per subscriber).
//!
//! A stream finds its job's slot once and then locks only that job, for one core
//! call at a time; the registry is locked again only to unsubscribe. Files are read
//! on smol's blocking pool (`smol::unblock`), except archive reads that the page
//! cache holds whole (`EventsReader::read_cached`, which never waits for a disk).

use crate::clock;
use futures_lite::{future, AsyncWriteExt};
use smol::net::TcpStream;
use smol::{Async, Timer};
use spout_core::feed::ListSubscriber;
use spout_core::frames::Frames;
use spout_core::gzip::BodyEncoder;
use spout_core::http::{self, ResponseHead, StreamFraming};
use spout_core::registry::{raw_log_len, raw_log_next, LogNext, FOLLOW_CHECK};
use spout_core::subscriber::{self, LogEdges, Next, Subscriber};
use spout_core::JobId;
use spout_sys::archive::EventsReader;
use spout_sys::cluster::Cluster;
use spout_sys::driver::{log, Shared};
use std::fs::File;
use std::io::{self, IoSlice, Read as _};
use std::os::unix::fs::FileExt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes `bytes`, giving up after the core's write timeout. Returns whether it
/// worked.
async fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    within_write_timeout(async {
        stream
            .write_all(bytes)
            .await
            .and(stream.flush().await)
            .is_ok()
    })
    .await
}

/// The most buffers one `writev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes `frames` (with `read`, the archive read they may refer to) with vectored
/// writes: as much as the socket takes per wake-up, on through partial writes,
/// giving up after the core's write timeout as [`send`] does.
async fn send_frames(stream: &mut TcpStream, frames: &Frames, read: &[u8]) -> bool {
    let mut slices: Vec<IoSlice<'_>> = frames.slices(read).map(IoSlice::new).collect();
    if let [one] = &slices[..] {
        // Nothing shared (small events, a heartbeat): one plain write, which
        // costs the kernel less than a `writev`.
        return send(stream, one).await;
    }
    within_write_timeout(async {
        let mut bufs = &mut slices[..];
        while !bufs.is_empty() {
            let n = bufs.len().min(IOV_MAX);
            match stream.write_vectored(&bufs[..n]).await {
                Ok(0) => return false,
                Ok(written) => IoSlice::advance_slices(&mut bufs, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    })
    .await
}

/// Runs a write, giving up after the core's write timeout (a client that stops
/// reading is dropped rather than held forever). Returns whether it worked.
///
/// The timeout's timer is made only when the socket does not take everything at
/// once: a timer costs a wake-up of the reactor, and most writes complete at once.
async fn within_write_timeout(write: impl std::future::Future<Output = bool>) -> bool {
    let mut write = pin!(write);
    if let Some(done) = future::poll_once(write.as_mut()).await {
        return done;
    }
    let timeout = async {
        Timer::after(http::WRITE_TIMEOUT).await;
        false
    };
    future::or(write, timeout).await
}

/// Sends `data` as one piece of the body (one HTTP chunk, for HTTP/1.1).
async fn send_chunk(
    stream: &mut TcpStream,
    framing: StreamFraming,
    data: &[u8],
    frame: &mut Vec<u8>,
) -> bool {
    frame.clear();
    framing.frame(data, frame);
    send(stream, frame).await
}

/// What a long response keeps from one wait to the next, so that waiting costs no
/// system call when nothing happened: the deadline's timer, and the client's socket
/// for noticing its departure.
struct Waiting {
    /// Armed at `armed`, or not armed.
    timer: Timer,
    armed: Option<Instant>,
    socket: Arc<Async<std::net::TcpStream>>,
}

impl Waiting {
    fn new(stream: &TcpStream) -> Waiting {
        Waiting {
            timer: Timer::never(),
            armed: None,
            socket: stream.clone().into(),
        }
    }

    /// Waits for a wake-up, the deadline, or the client closing its side (the only
    /// way to notice a vanished client between writes). Returns false if it left.
    ///
    /// The timer is re-armed only when `deadline` is earlier than the one it holds
    /// or it has fired: each write moves the core's deadline (the next heartbeat)
    /// later, and a wake-up at the older deadline is harmless (the core answers
    /// with the newer one). So a busy stream does not make a timer per event.
    /// Deadlines are coalesced into the core's wake slices
    /// (`subscriber::WAKE_SLICE`): idle streams share their wake-ups.
    async fn wait(
        &mut self,
        listener: event_listener::EventListener,
        deadline: Option<Instant>,
    ) -> bool {
        if let Some(t) = deadline {
            // Rounded up, so that streams due together wake together.
            let t = subscriber::coalesce(t, clock::epoch());
            if self.armed.is_none_or(|armed| t < armed) {
                self.timer.set_at(t);
                self.armed = Some(t);
            }
        }
        let (timer, armed, socket) = (&mut self.timer, &mut self.armed, &self.socket);
        let woken = future::or(
            async {
                listener.await;
                true
            },
            async {
                timer.await;
                *armed = None;
                true
            },
        );
        let gone = async {
            let mut byte = [0u8; 1];
            loop {
                // Readiness first: no read is tried while nothing came (the
                // interest stays registered from wait to wait).
                if future::poll_fn(|cx| socket.poll_readable(cx))
                    .await
                    .is_err()
                {
                    return false;
                }
                match socket.get_ref().read(&mut byte) {
                    // Anything a client sends during a stream is ignored; EOF or
                    // an error means it is gone.
                    Ok(n) if n > 0 => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    _ => return false,
                }
            }
        };
        future::or(woken, gone).await
    }
}

/// Reads `len` bytes at `offset` of job `id`'s event archive into `buf` on the
/// blocking pool, opening it first if `reader` is `None`. Gives the reader and the
/// buffer back for the next read, with how many bytes of `buf` were read.
async fn read_archive(
    shared: &Arc<Shared>,
    id: JobId,
    reader: Option<EventsReader>,
    mut buf: Vec<u8>,
    offset: u64,
    len: usize,
) -> (Option<EventsReader>, Vec<u8>, io::Result<usize>) {
    let shared = shared.clone();
    smol::unblock(move || {
        let reader = match (reader, &shared.archive) {
            (Some(r), _) => r,
            (None, Some(archive)) => match archive.open_events(&id.to_string()) {
                Ok(r) => r,
                Err(e) => return (None, buf, Err(e)),
            },
            (None, None) => return (None, buf, Ok(0)),
        };
        let read = reader.read_into(offset, len, &mut buf);
        (Some(reader), buf, read)
    })
    .await
}

/// Reads up to `count` entries of job `id`'s stream after `after` from Redis on
/// the blocking pool (`None`: no cluster, or Redis did not answer).
async fn read_stream(
    cluster: Option<&Arc<Cluster>>,
    id: JobId,
    after: spout_core::Cursor,
    count: usize,
) -> Option<Vec<spout_core::cluster::StreamEntry>> {
    let cluster = cluster?.clone();
    smol::unblock(move || cluster.read_range(id, after, count)).await
}

/// Lets the client that a write just woke run before this executor thread reads
/// on, once per stream, after its first archive read is written: the same
/// reasoning as spout-blocking's `give_way` (runtime-blocking/src/stream.rs). A
/// task the kernel wakes does not preempt a running one before that one's slice
/// is used up, so where a resuming stream and its client share a CPU, the client
/// would see its first event only after the stream's next reads and writes (up to
/// a full socket). Once per stream: a `sched_yield` costs about a microsecond, and
/// the executor's other tasks lose nothing (this thread is runnable again at once).
fn give_way() {
    std::thread::yield_now();
}

/// A stream that has caught up lets go of buffers grown by archive reads: a
/// waiting subscriber costs nothing but its socket.
fn shrink(frames: &mut Frames, archive_buf: &mut Vec<u8>) {
    frames.clear(2 * spout_core::subscriber::TRANSMIT_BUDGET);
    *archive_buf = Vec::new();
}

/// Serves an event stream: the head, then the subscriber's bytes until the end of
/// the log (then the last chunk) or until the client goes away.
pub async fn events(
    shared: &Arc<Shared>,
    cluster: Option<&Arc<Cluster>>,
    stream: &TcpStream,
    mut head: ResponseHead,
    framing: StreamFraming,
    id: JobId,
    mut sub: Subscriber,
) {
    let mut w = stream.clone();
    let mut frame = Vec::new();
    framing.adapt(&mut head);
    head.encode(&mut frame);
    let mut dropped = !send(&mut w, &frame).await;
    // Found once: while this stream watches the job, retention keeps it.
    let slot = shared.slot(id);
    let mut frames = Frames::new();
    let mut reader = None;
    let mut archive_buf = Vec::new();
    let mut waiting = Waiting::new(stream);
    let mut counted = 0;
    // After a write that took the stream to the end of what the log showed (events
    // or a heartbeat): the listener taken before it and the core's next deadline
    // (`Subscriber::wait_after_write`), waited for without another look at the
    // job. Anything appended since that look wakes the listener.
    let mut idle = None;
    let mut gave_way = false;
    while !dropped {
        if let Some((listener, deadline)) = idle.take() {
            shrink(&mut frames, &mut archive_buf);
            if !waiting.wait(listener, Some(deadline)).await {
                dropped = true;
                break;
            }
        }
        shared.record_sent(sub.events_sent() - counted, 0);
        counted = sub.events_sent();
        let Some(slot) = &slot else {
            let _ = send(&mut w, framing.end()).await;
            break;
        };
        let listener = slot.listen();
        let now = clock::now();
        // The core fills `frames` with references to the log's shared bytes (and
        // copies of small pieces); they are written, then cleared, so that no
        // event is kept alive while this stream waits.
        let next = sub.poll_transmit(slot.lock().log(), now, &mut frames);
        let mut read: &[u8] = &[];
        match next {
            Next::Wrote => {
                idle = sub.wait_after_write().map(|t| (listener, t));
            }
            Next::Wait(deadline) => {
                shrink(&mut frames, &mut archive_buf);
                dropped = !waiting.wait(listener, deadline).await;
            }
            Next::ReadArchive { offset, first, len } => {
                // Here on the executor when the page cache holds all of it (no
                // disk wait, no hand-off); otherwise on the blocking pool.
                let cached = reader
                    .as_ref()
                    .and_then(|r: &EventsReader| r.read_cached(offset, len, &mut archive_buf));
                let n = match cached {
                    Some(n) => n,
                    None => {
                        let (kept, back, read) = read_archive(
                            shared,
                            id,
                            reader.take(),
                            std::mem::take(&mut archive_buf),
                            offset,
                            len,
                        )
                        .await;
                        (reader, archive_buf) = (kept, back);
                        read.unwrap_or_else(|e| {
                            log(&format!("job {id}: archive read failed: {e}"));
                            0
                        })
                    }
                };
                read = &archive_buf[..n];
                // The scan runs without the job's lock (the log's edges are read
                // under it), as spout-blocking does.
                let edges = LogEdges::of(slot.lock().log());
                sub.handle_archive_at(edges, offset, first, read, &mut frames);
            }
            Next::ReadStream { after, count } => {
                let entries = read_stream(cluster, id, after, count).await;
                let now = clock::now();
                sub.handle_stream(
                    slot.lock().log(),
                    after,
                    entries.as_deref(),
                    now,
                    &mut frames,
                );
            }
            Next::End => {
                let _ = send(&mut w, framing.end()).await;
                break;
            }
        }
        if !frames.is_empty() && !dropped {
            frames.frame(framing);
            dropped = !send_frames(&mut w, &frames, read).await;
            if !dropped {
                shared.record_sent(0, frames.framed_len() as u64);
            }
            if !read.is_empty() && !gave_way {
                gave_way = true;
                give_way();
            }
        }
        frames.clear(2 * spout_core::subscriber::TRANSMIT_BUDGET);
    }
    shared.record_sent(sub.events_sent() - counted, 0);
    shared.lock().unsubscribe(id, dropped, clock::now());
}

/// Serves the live job list (`GET /jobs` as an event stream): the head, then what
/// the core's list cursor yields, waking on the registry-wide list notifier or the
/// heartbeat deadline, until the client goes away.
pub async fn job_list(
    shared: &Arc<Shared>,
    stream: &TcpStream,
    mut head: ResponseHead,
    framing: StreamFraming,
    mut sub: ListSubscriber,
) {
    let mut w = stream.clone();
    let mut buf = Vec::new();
    framing.adapt(&mut head);
    head.encode(&mut buf);
    let mut dropped = !send(&mut w, &buf).await;
    let mut waiting = Waiting::new(stream);
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
                dropped = !send(&mut w, framing.finish(&mut buf)).await;
            }
            Next::Wait(deadline) => dropped = !waiting.wait(listener, deadline).await,
            Next::End | Next::ReadArchive { .. } | Next::ReadStream { .. } => {
                let _ = send(&mut w, framing.end()).await;
                break;
            }
        }
    }
    shared.lock().unsubscribe_list(dropped);
}

/// Reads up to `want` bytes at `offset` of job `id`'s raw output log into `buf` on
/// the blocking pool, opening the file first if `file` is `None` (it may not exist
/// yet). Gives the file and the buffer back; `None` if there is no file.
async fn read_output(
    shared: &Arc<Shared>,
    id: JobId,
    file: Option<File>,
    mut buf: Vec<u8>,
    offset: u64,
    want: usize,
) -> (Option<File>, Vec<u8>, Option<io::Result<usize>>) {
    let shared = shared.clone();
    smol::unblock(move || {
        let file = file.or_else(|| {
            shared
                .archive
                .as_ref()
                .and_then(|a| a.open_output(&id.to_string()).ok())
        });
        let read = file.as_ref().map(|f| f.read_at(&mut buf[..want], offset));
        (file, buf, read)
    })
    .await
}

/// Serves a job's raw output log from its archive file, as the core says: up to its
/// length at the request, or (follow) until the job is complete. Each read goes out
/// through `body` (the negotiated coding), which also writes the body's last bytes.
pub async fn raw_log(
    shared: &Arc<Shared>,
    stream: &TcpStream,
    mut head: ResponseHead,
    framing: StreamFraming,
    id: JobId,
    follow: bool,
    mut body: BodyEncoder,
) {
    let mut w = stream.clone();
    let mut frame = Vec::new();
    framing.adapt(&mut head);
    head.encode(&mut frame);
    if !send(&mut w, &frame).await {
        return;
    }
    // Opened when there are bytes to read: the job's task creates the file just
    // after the job is answered, so a request can come before it exists.
    let mut file = None;
    let mut misses = 0u32;
    // Found once; a job that is gone ends the answer (the core says `End`).
    let mut coded = Vec::new();
    let Some(slot) = shared.slot(id) else {
        end_log(&mut w, framing, &mut body, &mut frame).await;
        return;
    };
    let limit = if follow {
        None
    } else {
        Some(raw_log_len(&slot.lock()).0)
    };
    let mut offset = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut waiting = Waiting::new(stream);
    loop {
        let listener = slot.listen();
        let next = raw_log_next(Some(&slot.lock()), offset, limit);
        match next {
            LogNext::Read { upto } => {
                let want = usize::try_from(upto - offset)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let (kept, back, read) =
                    read_output(shared, id, file.take(), buf, offset, want).await;
                (file, buf) = (kept, back);
                match read {
                    Some(Ok(n)) if n > 0 => {
                        misses = 0;
                        offset += n as u64;
                        coded.clear();
                        body.encode(&buf[..n], &mut coded);
                        if !send_chunk(&mut w, framing, &coded, &mut frame).await {
                            return;
                        }
                    }
                    _ => {
                        // Counted but not yet in the file (the job's task writes it
                        // just after the core counts the bytes): give it a moment;
                        // a file that never appears ends the answer after ~1 s.
                        misses += 1;
                        if misses > 200 {
                            end_log(&mut w, framing, &mut body, &mut frame).await;
                            return;
                        }
                        Timer::after(Duration::from_millis(5)).await;
                    }
                }
            }
            LogNext::Wait => {
                if !waiting
                    .wait(listener, Some(clock::now() + FOLLOW_CHECK))
                    .await
                {
                    return;
                }
            }
            LogNext::End => {
                end_log(&mut w, framing, &mut body, &mut frame).await;
                return;
            }
        }
    }
}

/// Ends a raw-log body: the coding's last bytes, then the framing's end.
async fn end_log(
    w: &mut TcpStream,
    framing: StreamFraming,
    body: &mut BodyEncoder,
    frame: &mut Vec<u8>,
) {
    let mut last = Vec::new();
    body.finish(&mut last);
    if send_chunk(w, framing, &last, frame).await {
        let _ = send(w, framing.end()).await;
    }
}
