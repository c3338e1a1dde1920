//! # spout-tests
//!
//! The harness for spout's integration tests: it starts a real server binary (`spout`
//! on smol, or `spout-blocking` on std threads) on a loopback port and talks plain HTTP/1.1
//! to it over `std::net::TcpStream`, so that one list of cases runs against both
//! runtimes. See `tests/README.md` for how to write a case.
//!
//! The pieces, each in its own file:
//!
//! 1. [`Runtime`] and [`binary_path`] (`bin.rs`): find, and on first use build, the
//!    binaries of the target directory the test runs from.
//! 2. [`Server`] (`server.rs`): one server process with its own temp data dir, its
//!    stderr drained into a buffer that failing tests print; [`run_to_exit`] for a
//!    command line the server must refuse.
//! 3. [`request`], [`get`], [`post_json`], [`delete`], [`raw`] (`client.rs`): a small
//!    blocking client with timeouts; responses read by the core's decoder
//!    (`spout_core::client`: `Content-Length`, chunked encoding or close).
//! 4. [`EventStream`] (`events.rs`): an SSE response read incrementally, every
//!    de-chunked byte kept for exact-wire snapshots and fed to `spout_core::sse::Decoder`.
//! 5. [`CutProxy`] (`proxy.rs`): a loopback TCP proxy that drops connections on demand,
//!    for resume tests.
//! 6. [`start_job`], [`wait_for_state`] (`jobs.rs`): the job API on top.
//! 7. [`procfs`]: CPU time, memory, threads, descriptors and process groups from
//!    `/proc`, for the hardening cases.
//! 8. [`nginx`]: the shipped `deploy/nginx.conf` run by a real nginx in front of a
//!    server, for the reverse-proxy cases.
//! 9. [`redis`]: a real redis-server on a unix socket (stop, SIGSTOP/SIGCONT, restart
//!    on the same socket, RESP commands for assertions) and servers started on it
//!    with `--redis`, for the cluster cases.
//! 10. [`both_runtimes!`]: write a case once, get one `#[test]` per runtime.
//!
//! Everything listens on and connects to loopback only, and everything a test starts
//! is stopped in `Drop` (processes killed and reaped, temp dirs removed, threads joined).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bin;
mod client;
mod events;
mod jobs;
pub mod nginx;
pub mod procfs;
mod proxy;
pub mod redis;
mod server;
mod wire;

pub use bin::{binary_path, Runtime};
pub use client::{
    delete, get, post_json, raw, raw_with_timeout, request, try_request, Response, DEFAULT_TIMEOUT,
};
pub use events::{open_events, EventStream};
pub use jobs::{start_job, wait_for_state};
pub use proxy::CutProxy;
pub use server::{run_to_exit, Exited, Server};

/// Re-exported so cases can name decoder items without another dependency line.
pub use spout_core::sse::{Dispatched, Item};

/// Writes a case once and runs it against both runtimes.
///
/// `both_runtimes!(fn name(rt: Runtime) { … })` expands to a module `name` holding a
/// private `case(rt)` with the body and two tests, `name::smol` and `name::blocking`,
/// so a failure names its runtime and `cargo test smol` picks one runtime. Attributes
/// written before `fn` (`#[ignore = "…"]`, `#[should_panic]`) go on both tests. The
/// module does `use super::*`, so the case sees the test file's imports and helpers.
/// Several cases may share one invocation.
///
/// # Examples
///
/// ```ignore
/// use spout_tests::{both_runtimes, get, Runtime, Server};
///
/// both_runtimes!(
///     fn healthz_answers_ok(rt: Runtime) {
///         let server = Server::start(rt, &["--memory"]);
///         assert_eq!(get(server.addr(), "/healthz").status, 200);
///     }
/// );
/// ```
#[macro_export]
macro_rules! both_runtimes {
    ($( $(#[$meta:meta])* fn $name:ident($rt:ident : $ty:ty) $body:block )+) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn case($rt: $ty) $body

                /// The case on `spout` (smol).
                #[test]
                $(#[$meta])*
                pub fn smol() {
                    case($crate::Runtime::Smol)
                }

                /// The case on `spout-blocking` (std threads).
                #[test]
                $(#[$meta])*
                pub fn blocking() {
                    case($crate::Runtime::Blocking)
                }
            }
        )+
    };
}
