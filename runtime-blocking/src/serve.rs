//! `spout-blocking serve`: start-up (config, archive, restore), connection threads
//! that take turns at accepting and serve what they accept, each moving requests
//! to the core and its answers back
//! (bounded: past the bound a connection gets the core's `503`), and a clean
//! shutdown on SIGINT/SIGTERM. The same loop as `runtime-smol/src/serve.rs`, on
//! std sockets and threads.

use crate::clock;
use crate::http::Conn;
use crate::idle::Idler;
use crate::job::{self, Drivers};
use crate::stream::{self, EventStream};
use anyhow::Context as _;
use rustix::event::{PollFd, PollFlags};
use spout_core::cli::ServeOptions;
use spout_core::http::{
    self, Admission, ApiError, ConnLimits, Event, Route, ServerConn, StreamFraming,
};
use spout_core::registry::{Inputs, Reply};
use spout_sys::cluster::Cluster;
use spout_sys::driver::{log, Shared};
use spout_sys::startup::{self, Started};
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Stack of a connection thread: the request path is shallow (a head, a body of
/// at most 64 KiB on the heap, core calls, an 8 KiB read buffer). But a gzip stream
/// builds a miniz_oxide compressor, which is assembled on the stack before it is
/// boxed: under 128 KiB in release builds, 256-384 KiB in debug ones. Untouched
/// stack pages cost no memory, so the reservation is generous.
const STACK_BYTES: usize = 1024 * 1024;

/// Stack of the thread an event stream moves to once it first waits
/// ([`serve_stream`]): room for a gzip stream's compressor (above), and under a
/// quarter of [`STACK_BYTES`] in release builds, because glibc hands a new thread
/// a cached stack of an ended thread up to four times the size asked for, with
/// the pages that thread touched still resident: a stream must not inherit the
/// deep pages of an ended request thread.
const STREAM_STACK_BYTES: usize = if cfg!(debug_assertions) {
    STACK_BYTES
} else {
    240 * 1024
};

/// Connection threads beyond the subscriber limit: room for plain requests (and
/// the core's own `503` for one stream too many) while every stream slot is taken.
const EXTRA_CONNECTIONS: usize = 64;

/// Threads that may be answering `503` at once when every connection slot is taken;
/// past them the accept loop waits for a slot (the kernel's backlog holds new
/// connections meanwhile).
const REFUSERS: usize = 16;

/// Seconds in the `Retry-After` of that `503`.
const RETRY_AFTER_S: u32 = 5;

/// How long the accept loop pauses after a failed `accept` (EMFILE and the like):
/// the listener stays readable, so retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the server until SIGINT/SIGTERM. Exit code 0 after a clean shutdown, 2 for
/// a config that is refused, 1 for other start-up failures.
pub fn run(options: &ServeOptions) -> ExitCode {
    startup::run(
        options,
        || (clock::now(), clock::wall(), clock::job_id_bytes()),
        serve,
    )
}

/// The answer inputs the core needs from the world.
fn inputs() -> Inputs {
    Inputs {
        now: clock::now(),
        wall: clock::wall(),
        random: clock::job_id_bytes(),
    }
}

/// What every connection thread shares.
struct State {
    shared: Arc<Shared>,
    drivers: Arc<Drivers>,
    /// Cluster mode (`--redis`): the Redis side of this server's jobs.
    cluster: Option<Arc<Cluster>>,
    gate: Gate,
    /// Set by the signal thread: stop accepting and shut down.
    stopping: AtomicBool,
    /// Holds quiet streams and writes their heartbeats (`crate::idle`).
    idler: Arc<Idler>,
}

fn serve(started: Started) -> anyhow::Result<()> {
    let Started {
        shared,
        listen,
        summary,
    } = started;
    let connections = shared
        .lock()
        .config()
        .limits
        .max_subscribers
        .saturating_add(EXTRA_CONNECTIONS);
    let listener = startup::bind(listen)?;
    let addr = listener.local_addr()?;
    let drivers = Arc::new(Drivers::default());
    let cluster = Cluster::start(&shared, {
        let drivers = drivers.clone();
        Box::new(move |id| drivers.wake(id))
    })?;
    let state = Arc::new(State {
        shared,
        drivers,
        cluster,
        gate: Gate::new(connections),
        stopping: AtomicBool::new(false),
        idler: Arc::new(Idler::default()),
    });
    start_idler(&state);
    let (wake, wake_tx) = UnixStream::pair().context("cannot handle SIGTERM/SIGINT")?;
    watch_signals(state.clone(), wake_tx)?;
    log(&format!("listening on http://{addr}"));
    log(&summary);
    accept_loop(&state, listener, wake);
    shutdown(&state);
    Ok(())
}

/// Starts the idle thread. Without it (no thread could start) every stream
/// waits on its own thread, as before: slower when idle, but the same answers.
fn start_idler(state: &Arc<State>) {
    let moved = state.clone();
    let started = thread::Builder::new()
        .name("spout-idle".into())
        .stack_size(STACK_BYTES)
        .spawn(move || moved.idler.run(&moved.shared));
    if let Err(e) = started {
        log(&format!("cannot start the idle thread: {e}"));
    }
}

/// Connection threads kept waiting for the accepting role (spares): one takes it
/// the moment the thread that accepted a connection starts serving it, so no
/// thread start lies between a connection's arrival and its answer. A thread that
/// finishes serving waits as a spare while fewer than this many wait, else ends.
const SPARES: usize = 4;

/// The accepting role, handed from thread to thread (leader/follower): whoever
/// holds `listen` waits for the next connection; the others wait for `listen`.
struct Acceptors {
    role: Mutex<Role>,
    /// Signalled when `listen` is put back or the server stops (spares wait on it).
    handed: Condvar,
    /// Signalled when the server stops (the main thread waits on it).
    stopped: Condvar,
}

/// What the [`Acceptors`] lock guards.
struct Role {
    /// The listener and the stop socket, held by no thread (`Some`) or by the
    /// accepting one (`None`); dropped (the listener closed) once stopping.
    listen: Option<Listen>,
    /// Threads waiting for `listen`.
    spares: usize,
    /// The accepting thread saw the stop: the main thread may shut down.
    stopped: bool,
}

/// The listener and the socket the signal thread writes to on SIGINT/SIGTERM.
struct Listen {
    listener: TcpListener,
    wake: UnixStream,
}

impl Acceptors {
    fn role(&self) -> MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until shutdown, each served on the thread that accepted it
/// once it has a slot in the [`Gate`], with the accepting role handed to a spare
/// thread first; returns (on the main thread) once the listener is closed.
fn accept_loop(state: &Arc<State>, listener: TcpListener, wake: UnixStream) {
    let acceptors = Arc::new(Acceptors {
        role: Mutex::new(Role {
            listen: Some(Listen { listener, wake }),
            spares: 0,
            stopped: false,
        }),
        handed: Condvar::new(),
        stopped: Condvar::new(),
    });
    if let Err(e) = start_acceptor(state, &acceptors) {
        log(&format!("cannot start a connection thread: {e}"));
        // Accept on this thread: a thread per connection cannot start either.
        acceptor(state, &acceptors);
    }
    let mut role = acceptors.role();
    while !role.stopped {
        role = acceptors
            .stopped
            .wait(role)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Starts a connection thread (named, its stack bounded) that runs [`acceptor`].
fn start_acceptor(state: &Arc<State>, acceptors: &Arc<Acceptors>) -> io::Result<()> {
    let (state, acceptors) = (state.clone(), acceptors.clone());
    thread::Builder::new()
        .name("spout-conn".into())
        .stack_size(STACK_BYTES)
        .spawn(move || acceptor(&state, &acceptors))
        .map(drop)
}

/// A connection thread: takes the accepting role when it is free, accepts one
/// connection, hands the role on (to a spare, or to a thread started for it) and
/// serves the connection; then waits as a spare or ends (see [`SPARES`]).
fn acceptor(state: &Arc<State>, acceptors: &Arc<Acceptors>) {
    loop {
        let listen = {
            let mut role = acceptors.role();
            loop {
                if role.stopped {
                    return;
                }
                if let Some(listen) = role.listen.take() {
                    break listen;
                }
                if role.spares >= SPARES {
                    return;
                }
                role.spares += 1;
                role = acceptors
                    .handed
                    .wait(role)
                    .unwrap_or_else(PoisonError::into_inner);
                role.spares -= 1;
            }
        };
        let Some((permit, stream, peer)) = accept_one(state, &listen) else {
            // Stopping: the listener closes here, before the main thread shuts down.
            drop(listen);
            acceptors.role().stopped = true;
            acceptors.handed.notify_all();
            acceptors.stopped.notify_all();
            return;
        };
        let start = {
            let mut role = acceptors.role();
            role.listen = Some(listen);
            role.spares == 0
        };
        acceptors.handed.notify_one();
        if start {
            if let Err(e) = start_acceptor(state, acceptors) {
                // The next thread to finish serving takes the role.
                log(&format!("cannot start a connection thread: {e}"));
            }
        }
        serve_connection(permit, stream, peer);
    }
}

/// Turns Nagle's algorithm off on an accepted connection. Every write is already
/// a whole piece (a response, or an event stream's batch), so there is nothing to
/// coalesce; with Nagle on, a stream's write made while its previous small segment
/// was unacknowledged waited for that ACK, which a client in delayed-ACK mode sends
/// only after its 40 ms timer: the 40-50 ms latency maxima of issue 13 (cluster
/// scenario, 7b: p99 26-38 ms on the server that follows the job through Redis,
/// whose streams write after each `XREAD` batch). Failing to set it only costs that
/// latency, so the connection is served either way.
fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        log(&format!("cannot set TCP_NODELAY on a connection: {e}"));
    }
}

/// Takes a slot, then waits for a connection and accepts it; `None` once the
/// server is stopping.
fn accept_one(state: &Arc<State>, listen: &Listen) -> Option<(Permit, TcpStream, SocketAddr)> {
    // A slot first: past the bound, new connections wait in the backlog.
    let permit = Permit::take(state)?;
    loop {
        match readable(&listen.listener, &listen.wake) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                log(&format!("accept failed: {e}"));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        }
        match listen.listener.accept() {
            Ok((stream, peer)) => {
                no_delay(&stream);
                return Some((permit, stream, peer));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: wait instead of
                // spinning; service resumes when descriptors come back.
                log(&format!("accept failed: {e}"));
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Waits until `listener` has a connection (`true`) or `wake` says stop (`false`).
fn readable(listener: &TcpListener, wake: &UnixStream) -> io::Result<bool> {
    let mut fds = [
        PollFd::new(listener, PollFlags::IN),
        PollFd::new(wake, PollFlags::IN),
    ];
    loop {
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fds[1].revents().is_empty())
}

/// Serves `stream`'s connection on this thread (an event stream moves to a thread
/// of its own at its first wait: [`serve_stream`]).
fn serve_connection(permit: Permit, stream: TcpStream, peer: SocketAddr) {
    // Linux's `accept` gives a blocking socket whatever the listener's mode; other
    // systems pass the listener's non-blocking mode on. This runtime's reads and
    // writes block (with timeouts).
    let blocking = if cfg!(target_os = "linux") {
        Ok(())
    } else {
        stream.set_nonblocking(false)
    };
    match blocking.and_then(|()| Conn::new(stream)) {
        Ok(conn) if permit.serving => {
            if let Some(stream) = connection(&permit.state, conn, &peer.to_string()) {
                serve_stream(permit, stream);
            }
        }
        Ok(conn) => refuse(&permit.state, conn, &peer.to_string()),
        Err(e) => log(&format!("{peer}: cannot set up the connection: {e}")),
    }
}

/// Serves an event stream on the request's thread until the stream first waits
/// (a resuming client's first events go out at once), then on a thread of its own
/// with a stack of its own, and lets the request's thread end. Pages a thread's
/// stack touched stay resident for the thread's life, and the request path
/// (the core's decision) reaches deeper than a waiting stream ever does: an idle
/// subscriber would keep that depth for hours.
fn serve_stream(permit: Permit, stream: Box<EventStream>) {
    let state = &permit.state;
    let Some(stream) = stream.serve(&state.shared, state.cluster.as_deref(), None, true) else {
        return;
    };
    // Given back here if the thread cannot start (the closure is then dropped
    // without running).
    let moved = Arc::new(Mutex::new(Some((permit, stream))));
    let task = {
        let moved = moved.clone();
        move || {
            let taken = take(&moved);
            drop(moved);
            if let Some((permit, stream)) = taken {
                let state = &permit.state;
                stream.serve(
                    &state.shared,
                    state.cluster.as_deref(),
                    Some(&state.idler),
                    false,
                );
            }
        }
    };
    let spawned = thread::Builder::new()
        .name("spout-stream".into())
        .stack_size(STREAM_STACK_BYTES)
        .spawn(task);
    if spawned.is_err() {
        // Served here, on the deeper stack, rather than dropped.
        if let Some((permit, stream)) = take(&moved) {
            let state = &permit.state;
            stream.serve(
                &state.shared,
                state.cluster.as_deref(),
                Some(&state.idler),
                false,
            );
        }
    }
}

/// Takes what `cell` holds (a poisoned lock still holds it).
pub(crate) fn take<T>(cell: &Mutex<Option<T>>) -> Option<T> {
    cell.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// On SIGINT/SIGTERM, ends the accept loop: a thread reads signal-hook's
/// self-pipe (no handler of ours runs in signal context) and wakes the loop
/// through `wake`, wherever it waits (in `poll`, or for a slot).
fn watch_signals(state: Arc<State>, mut wake: UnixStream) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot handle SIGTERM/SIGINT")?;
    thread::Builder::new()
        .name("spout-signals".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            if signals.forever().next().is_some() {
                state.stopping.store(true, Ordering::SeqCst);
                state.gate.wake_all();
                let _ = wake.write_all(b"s");
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Stops every running job (SIGTERM to its group, SIGKILL after the grace), waits
/// for their `exit` to be archived, and gives open streams a moment to send it.
fn shutdown(state: &State) {
    let shared = &state.shared;
    let woken = shared.lock().shutdown(clock::now());
    log(&format!(
        "shutting down: stopping {} running jobs",
        woken.len()
    ));
    for id in &woken {
        shared.notify(*id);
        state.drivers.wake(*id);
    }
    let bound = clock::now() + Duration::from_secs(60);
    while shared.lock().running_jobs() > 0 && clock::now() < bound {
        thread::sleep(Duration::from_millis(20));
    }
    if let Some(cluster) = &state.cluster {
        // The jobs' exits into Redis, so other servers see how they ended.
        cluster.finish_pushes(Duration::from_secs(5));
    }
    let deadline = clock::now() + Duration::from_secs(2);
    while shared.lock().subscribers() > 0 && clock::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    log("stopped");
}

/// One connection: requests in, the core's answers out, until either side closes.
/// The core's [`ServerConn`] reads the requests; this loop asks the registry and
/// passes its answers back. An event stream is returned, with its head written,
/// for [`serve_stream`] (this function's frame is then gone from the stack).
fn connection(state: &State, mut conn: Conn, peer: &str) -> Option<Box<EventStream>> {
    let shared = &state.shared;
    let limits = ConnLimits::new(&shared.lock().config().limits);
    let mut http_conn = ServerConn::new(limits, clock::now());
    // The admitted request whose body is being read.
    let mut pending = None;
    while let Some(event) = conn.next(&mut http_conn) {
        let (head, admitted, body) = match event {
            Event::Head(head) => {
                let fields = head.fields();
                let req = head.request(&fields);
                let admission = shared.lock().admit(&req, head.version);
                match admission {
                    Admission::Respond(response) => {
                        // Answered without reading any body (the core closes the
                        // connection where the body's framing is then lost).
                        log(&http::request_log_line(
                            peer,
                            &head.method,
                            &head.target,
                            response.head.status,
                        ));
                        http_conn.handle_response(&response, clock::now());
                    }
                    Admission::Handle(a) => {
                        http_conn.handle_admitted(a.framing, a.expect_continue, clock::now());
                        pending = Some((head, a));
                    }
                }
                continue;
            }
            Event::Failed { error, status } => {
                log(&format!("{peer} bad request: {error} -> {status}"));
                continue;
            }
            Event::Body(body) => match pending.take() {
                Some((head, a)) => (head, a, body),
                None => return None,
            },
        };
        let fields = head.fields();
        let req = head.request(&fields);
        let version = head.version;
        if let Some(cluster) = &state.cluster {
            // Another server's job, or the list of every server's: from Redis.
            let unknown = shared.lock().unknown_job(admitted.route);
            if let Some(id) = unknown {
                let _ = cluster.follow(id);
            }
            if matches!(admitted.route, Route::ListJobs) {
                cluster.refresh_index();
            }
        }
        let reply = shared.lock().handle(&req, admitted, &body, inputs());
        let line = http::request_log_line(peer, &head.method, &head.target, reply.status());
        if !matches!(reply, Reply::Stream { .. }) {
            log(&line);
        }
        let response = match reply {
            Reply::Full(r) => r,
            Reply::Spawn {
                response,
                job,
                plan,
            } => {
                if let Some(cluster) = &state.cluster {
                    // Lease, record and index before the 201.
                    cluster.own(job);
                }
                job::start(shared.clone(), state.drivers.clone(), job, plan);
                response
            }
            Reply::Stopping { response, job } => {
                let remote = shared.lock().is_remote(job);
                match &state.cluster {
                    Some(cluster) if remote => {
                        let _ = cluster.forward_stop(job);
                    }
                    _ => {
                        shared.notify(job);
                        state.drivers.wake(job);
                    }
                }
                response
            }
            Reply::Stream {
                head,
                job,
                subscriber,
            } => {
                let framing = StreamFraming::for_version(version);
                let stream = EventStream::start(shared, conn, head, framing, job, subscriber);
                // After the head: the log's write (and the wake-up of whatever
                // reads the log) need not come before a resuming client's bytes.
                log(&line);
                return Some(stream);
            }
            Reply::JobList { head, subscriber } => {
                let framing = StreamFraming::for_version(version);
                stream::job_list(shared, &mut conn, head, framing, subscriber);
                return None;
            }
            Reply::RawLog {
                head,
                job,
                follow,
                body,
            } => {
                let framing = StreamFraming::for_version(version);
                stream::raw_log(shared, &mut conn, head, framing, job, follow, body);
                return None;
            }
            _ => return None,
        };
        http_conn.handle_response(&response, clock::now());
    }
    None
}

/// Answers a connection that found no free slot: its first request gets the core's
/// `503` with `Retry-After`, then the connection is closed. The head is read first
/// (within the first-byte and head deadlines) so that the answer follows a request.
fn refuse(state: &State, mut conn: Conn, peer: &str) {
    let limits = ConnLimits::new(&state.shared.lock().config().limits);
    let mut http_conn = ServerConn::new(limits, clock::now());
    match conn.next(&mut http_conn) {
        Some(Event::Head(head)) => {
            let response = ApiError::Unavailable {
                message: "too many open connections: retry later".into(),
                retry_after: RETRY_AFTER_S,
            }
            .response()
            .with_header("Connection", "close");
            log(&http::request_log_line(
                peer,
                &head.method,
                &head.target,
                response.head.status,
            ));
            http_conn.handle_response(&response, clock::now());
            // Writes the answer; the core has closed the connection.
            let _ = conn.next(&mut http_conn);
        }
        Some(Event::Failed { error, status }) => {
            log(&format!("{peer} bad request: {error} -> {status}"));
        }
        _ => {}
    }
}

/// The bound on connection threads: `limit` serving, [`REFUSERS`] more answering
/// `503`; past both, the accept loop waits for a slot.
struct Gate {
    limit: usize,
    /// Threads serving, threads refusing.
    counts: Mutex<(usize, usize)>,
    freed: Condvar,
}

impl Gate {
    fn new(limit: usize) -> Gate {
        Gate {
            limit,
            counts: Mutex::new((0, 0)),
            freed: Condvar::new(),
        }
    }

    fn counts(&self) -> MutexGuard<'_, (usize, usize)> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot, waiting while none is free: `Some(true)` to serve,
    /// `Some(false)` to refuse, `None` once the server is stopping.
    fn enter(&self, stopping: &AtomicBool) -> Option<bool> {
        let mut counts = self.counts();
        loop {
            // Read under the lock that `wake_all` takes: no wake-up is lost.
            if stopping.load(Ordering::SeqCst) {
                return None;
            }
            let (serving, refusing) = *counts;
            if serving < self.limit {
                counts.0 += 1;
                return Some(true);
            }
            if refusing < REFUSERS {
                counts.1 += 1;
                return Some(false);
            }
            counts = self
                .freed
                .wait(counts)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn leave(&self, serving: bool) {
        let mut counts = self.counts();
        if serving {
            counts.0 -= 1;
        } else {
            counts.1 -= 1;
        }
        self.freed.notify_one();
    }

    /// Wakes a waiting [`Gate::enter`] so that it sees the server stopping.
    fn wake_all(&self) {
        let _counts = self.counts();
        self.freed.notify_all();
    }
}

/// A slot taken from the [`Gate`], given back when its connection ends.
struct Permit {
    state: Arc<State>,
    serving: bool,
}

impl Permit {
    /// Waits for a slot; `None` once the server is stopping.
    fn take(state: &Arc<State>) -> Option<Permit> {
        let serving = state.gate.enter(&state.stopping)?;
        Some(Permit {
            state: state.clone(),
            serving,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.state.gate.leave(self.serving);
    }
}
