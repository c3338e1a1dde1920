//! Long responses: an SSE stream (a subscriber's cursor driven until the end of the
//! job's log or the client's departure) and the raw output log (`?follow=1`). Each
//! batch the core yields is framed as one HTTP chunk and flushed at once.

use crate::clock;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;
use spout_core::http::{self, ResponseHead, StreamFraming};
use spout_core::registry::LogNext;
use spout_core::subscriber::{Next, Subscriber};
use spout_core::JobId;
use spout_sys::driver::{log, Shared};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Writes `bytes`, giving up after the core's write timeout (a client that stops
/// reading is dropped rather than held forever). Returns whether it worked.
async fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    let write = async {
        stream
            .write_all(bytes)
            .await
            .and(stream.flush().await)
            .is_ok()
    };
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

/// Waits for a wake-up, the deadline, or the client closing its side (the only
/// way to notice a vanished client between writes). Returns false if it left.
async fn wait(
    stream: &TcpStream,
    listener: event_listener::EventListener,
    deadline: Option<Instant>,
) -> bool {
    let woken = async {
        match deadline {
            Some(t) => {
                future::or(
                    async {
                        listener.await;
                    },
                    async {
                        Timer::at(t).await;
                    },
                )
                .await
            }
            None => listener.await,
        }
        true
    };
    let gone = async {
        let mut probe = stream.clone();
        let mut byte = [0u8; 1];
        loop {
            match probe.read(&mut byte).await {
                // Anything a client sends during a stream is ignored; EOF or an
                // error means it is gone.
                Ok(n) if n > 0 => continue,
                _ => return false,
            }
        }
    };
    future::or(woken, gone).await
}

/// Serves an event stream: the head, then the subscriber's bytes until the end of
/// the log (then the last chunk) or until the client goes away.
pub async fn events(
    shared: &Shared,
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
    let waker = shared.waker(id);
    let mut buf = Vec::new();
    let mut reader = None;
    let mut counted = 0;
    while !dropped {
        // The subscriber appends after room for the chunk-size line: one copy of
        // the log's bytes per subscriber, no re-framing copy.
        framing.begin(&mut buf);
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
            Next::Wrote => dropped = !send(&mut w, framing.finish(&mut buf)).await,
            Next::Wait(deadline) => dropped = !wait(stream, listener, deadline).await,
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
                if !framing.is_empty(&buf) {
                    dropped = !send(&mut w, framing.finish(&mut buf)).await;
                }
            }
            Next::End => {
                let _ = send(&mut w, framing.end()).await;
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
pub async fn raw_log(
    shared: &Shared,
    stream: &TcpStream,
    mut head: ResponseHead,
    framing: StreamFraming,
    id: JobId,
    follow: bool,
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
                        if !send_chunk(&mut w, framing, &buf[..n], &mut frame).await {
                            return;
                        }
                    }
                    _ => {
                        // Counted but not yet in the file (the job's task writes it
                        // just after the core counts the bytes): give it a moment;
                        // a file that never appears ends the answer after ~1 s.
                        misses += 1;
                        if misses > 200 {
                            let _ = send(&mut w, framing.end()).await;
                            return;
                        }
                        Timer::after(Duration::from_millis(5)).await;
                    }
                }
            }
            LogNext::Wait => {
                if !wait(
                    stream,
                    listener,
                    Some(clock::now() + Duration::from_secs(15)),
                )
                .await
                {
                    return;
                }
            }
            LogNext::End => {
                let _ = send(&mut w, framing.end()).await;
                return;
            }
        }
    }
}
