//! Long responses: an SSE stream (a subscriber's cursor driven until the end of the
//! job's log or the client's departure) and the raw output log (`?follow=1`). Each
//! batch the core yields is framed as one HTTP chunk and flushed at once.
//!
//! A connection thread waits on its job's `event_listener::Event` (woken when the
//! job appends) with the core's deadline, never on a polling timer. A client that
//! went away is noticed when a write to it fails: at the latest the next heartbeat,
//! because tiny_http's own thread, not this one, reads the socket.

use crate::clock;
use crate::http::Writer;
use event_listener::Listener as _;
use spout_blocking::driver::{log, Shared};
use spout_core::http::{self, ResponseHead};
use spout_core::registry::LogNext;
use spout_core::subscriber::{Next, Subscriber};
use spout_core::JobId;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Waits for a wake-up or the deadline.
fn wait(listener: event_listener::EventListener, deadline: Option<Instant>) {
    match deadline {
        Some(t) => {
            let _ = listener.wait_deadline(t);
        }
        None => listener.wait(),
    }
}

/// Serves an event stream: the head, then the subscriber's bytes until the end of
/// the log (then the last chunk) or until the client goes away.
pub fn events(
    shared: &Shared,
    w: &mut Writer,
    head: &ResponseHead,
    id: JobId,
    mut sub: Subscriber,
) {
    let mut frame = Vec::new();
    head.encode(&mut frame);
    let mut dropped = !w.send(&frame);
    let waker = shared.waker(id);
    let mut buf = Vec::new();
    let mut reader = None;
    let mut counted = 0;
    while !dropped {
        buf.clear();
        let listener = waker.listen();
        let next = {
            let mut reg = shared.lock();
            reg.record_sent(sub.events_sent() - counted, 0);
            counted = sub.events_sent();
            match reg.job(id) {
                Some(job) => sub.poll_transmit(job.log(), clock::now(), &mut buf),
                None => Next::End,
            }
        };
        match next {
            Next::Wrote => dropped = !w.send_chunk(&buf),
            Next::Wait(deadline) => wait(listener, deadline),
            Next::ReadArchive { offset, first, len } => {
                let bytes = match (&shared.archive, &reader) {
                    (Some(archive), None) => match archive.open_events(&id.to_string()) {
                        Ok(r) => reader.insert(r).read_at(offset, len),
                        Err(e) => Err(e),
                    },
                    (_, Some(r)) => r.read_at(offset, len),
                    (None, None) => Ok(Vec::new()),
                };
                let bytes = bytes.unwrap_or_else(|e| {
                    log(&format!("job {id}: archive read failed: {e}"));
                    Vec::new()
                });
                if let Some(job) = shared.lock().job(id) {
                    sub.handle_archive(job.log(), offset, first, &bytes, &mut buf);
                }
                if !buf.is_empty() {
                    dropped = !w.send_chunk(&buf);
                }
            }
            Next::End => {
                let _ = w.send(http::LAST_CHUNK);
                break;
            }
        }
        if !dropped {
            shared.lock().record_sent(0, buf.len() as u64);
        }
    }
    let mut reg = shared.lock();
    reg.record_sent(sub.events_sent() - counted, 0);
    reg.unsubscribe(id, dropped, clock::now());
}

/// Serves a job's raw output log from its archive file, as the core says: up to its
/// length at the request, or (follow) until the job is complete.
pub fn raw_log(shared: &Shared, w: &mut Writer, head: &ResponseHead, id: JobId, follow: bool) {
    let mut frame = Vec::new();
    head.encode(&mut frame);
    if !w.send(&frame) {
        return;
    }
    let file = match shared
        .archive
        .as_ref()
        .map(|a| a.open_output(&id.to_string()))
    {
        Some(Ok(f)) => f,
        _ => {
            let _ = w.send(http::LAST_CHUNK);
            return;
        }
    };
    let limit = if follow {
        None
    } else {
        shared.lock().raw_log_len(id).map(|(len, _)| len)
    };
    let waker = shared.waker(id);
    let mut offset = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let listener = waker.listen();
        let next = shared.lock().raw_log_next(id, offset, limit);
        match next {
            LogNext::Read { upto } => {
                let want = usize::try_from(upto - offset)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                match file.read_at(&mut buf[..want], offset) {
                    Ok(0) | Err(_) => {
                        // The job thread writes the file just after the core counts
                        // the bytes: give it a moment.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(n) => {
                        offset += n as u64;
                        if !w.send_chunk(&buf[..n]) {
                            return;
                        }
                    }
                }
            }
            // Woken by the job, or after 15 s to write nothing: as in `spout`, a
            // follower that left is noticed by the next failed write.
            LogNext::Wait => wait(listener, Some(clock::now() + Duration::from_secs(15))),
            LogNext::End => {
                let _ = w.send(http::LAST_CHUNK);
                return;
            }
        }
    }
}
