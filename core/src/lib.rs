//! # spout-core
//!
//! The protocol core of spout: everything that decides *what* is sent — event ids,
//! output assembly, the job log and its memory window, subscriber cursors, resume,
//! heartbeats, end-of-stream, routing, status codes and headers, config validation —
//! and nothing that does I/O.
//!
//! ## Why sans-IO
//!
//! spout has two runtimes (`spout` on smol, `spout-blocking` on std threads, one
//! per connection). If either decided anything, they would drift apart and every rule would
//! need testing twice. So this crate has no sockets, threads, clocks, processes or
//! files (`core/clippy.toml` forbids them): time and randomness come in as
//! arguments, and output comes out as values — bytes to write, a deadline to wake
//! at, a signal to send. Every rule is tested here once, with simulated time
//! ([`fuzzing::Sim`]), and fuzzed.
//!
//! ## The run loop a runtime implements
//!
//! 1. For each connection, keep an [`http::ServerConn`]: feed it the bytes read
//!    (`handle_read`), the end of the stream (`handle_eof`) and its deadline
//!    (`handle_timeout` at [`http::ServerConn::poll_timeout`]); write whatever
//!    `poll_transmit` gives. On a request head (`poll_event`), build an
//!    [`http::Request`] and call [`registry::Registry::admit`]: either write the
//!    [`http::Response`] it gives (and tell the connection, `handle_response`), or
//!    let the connection read the body it describes (`handle_admitted`) and, on
//!    the body event, call [`registry::Registry::handle`].
//! 2. Carry out the [`registry::Reply`]: write a response; spawn a job's process
//!    ([`registry::Reply::Spawn`]); or drive a stream.
//! 3. For each job: report what the process does with the `handle_*` methods of
//!    [`job::Job`] (`handle_spawned`, `handle_output`, `handle_eof`, `handle_exit`,
//!    and `handle_timeout` when [`job::Job::poll_timeout`] passes); after each, drain
//!    [`job::Job::poll_action`] in order — persist records (then
//!    `handle_persisted`), signal the process group, stop reading, save metadata —
//!    and wake the job's subscribers.
//! 4. For each stream: call [`subscriber::Subscriber::poll_transmit`] (into a
//!    `Vec<u8>`, or into [`frames::Frames`] that share the log's bytes for one
//!    vectored write) and do what
//!    its [`subscriber::Next`] says: write the bytes (one HTTP chunk), wait for the
//!    job to append or for the deadline (heartbeats), read the archive
//!    ([`subscriber::Subscriber::handle_archive`]) or, for another server's job,
//!    its stream in Redis ([`subscriber::Subscriber::handle_stream`]), or end the
//!    response.
//! 5. Hold the registry's lock only around core calls, never across I/O.
//!
//! ## Method groups
//!
//! Stateful types group their methods as quinn-proto does: getters, `handle_*`
//! (inputs, each taking `now` where time matters), mutators, and `poll_*` (outputs,
//! `#[must_use]`). Stateless rules are plain functions: [`sse::encode_event`],
//! [`http::route`], [`config::parse`].
//!
//! ## Errors and panics
//!
//! Errors are small enums with lowercase `Display`, split by whose fault they are:
//! a request error ([`http::ApiError`]) knows its HTTP status and JSON body; a config
//! error ([`config::ConfigError`]) names the field's path. Input never panics: the
//! fuzz targets in `fuzz/` assert it, with the invariants of each module. An
//! `expect` carries an `// invariant:` comment saying why it cannot fail.
//!
//! ## Modules
//!
//! - [`sse`]: the SSE encoder (validated fields only) and the WHATWG decoder.
//! - [`json`]: JSON string escaping for the hot path, identical to serde_json's.
//! - [`assembler`]: process bytes → text events (UTF-8, lines, partial lines, cap).
//! - [`log`]: a job's event log, its memory window, and archive-before-visible.
//! - [`subscriber`]: a connection's cursor: resume, tail, gaps, heartbeats, end.
//! - [`frames`]: a subscriber's output as shared frames for one vectored write.
//! - [`job`]: a job's lifecycle, deadlines and the actions it asks of a runtime.
//! - [`feed`]: the live job list: a bounded change log and a list stream's cursor.
//! - [`registry`]: the server's state and the answer to every request.
//! - [`http`]: request checks, routing, auth, CORS, response heads, chunk framing.
//! - [`client`]: the client side: HTTP/1.1 responses decoded, chained into [`sse`].
//! - [`config`], [`cli`], [`demo`]: configuration, command lines, demo commands.
//! - [`archive`]: the archive's framed record format.
//! - [`cluster`]: scale-out on Redis Streams: keys, ids, lease, backfill, cap.
//! - [`event`], [`id`]: the events' JSON data and the ids.
//! - [`fuzzing`]: the scenario simulator and fuzz entry points.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod assembler;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod event;
pub mod feed;
pub mod frames;
pub mod fuzzing;
pub mod gzip;
pub mod http;
pub mod id;
pub mod job;
pub mod json;
pub mod link;
pub mod log;
pub mod registry;
pub mod sse;
pub mod subscriber;

pub use id::{Cursor, EventId, JobId};
