//! `spout-blocking serve`: start-up (config, archive, restore), the loop that takes
//! tiny_http's requests and gives each its own thread, the per-request handling
//! (the core's answers written back), and a clean shutdown on SIGINT/SIGTERM.

use crate::http::{self as wire, Head, Writer};
use crate::job::{self, Drivers};
use crate::{clock, stream};
use anyhow::{anyhow, Context as _};
use spout_blocking::archive::ArchiveDir;
use spout_blocking::driver::{self, log, Shared};
use spout_blocking::os;
use spout_core::cli::ServeOptions;
use spout_core::config::Config;
use spout_core::http::{Admission, ApiError, ReadFailure, Response};
use spout_core::registry::{Inputs, Registry, Reply};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// Stack of a connection thread: the request path is shallow (a head, a body of
/// at most 64 KiB on the heap, core calls), and thousands of idle streams must
/// stay cheap.
const STACK_BYTES: usize = 256 * 1024;

/// Connection threads beyond the subscriber limit: room for plain requests (and
/// the core's own `503` for one stream too many) while every stream slot is taken.
const EXTRA_CONNECTIONS: usize = 64;

/// Threads that may be answering `503` at once when every connection slot is taken;
/// past them the server waits for a slot before taking the next request.
const REFUSERS: usize = 16;

/// Seconds in the `Retry-After` of that `503`.
const RETRY_AFTER_S: u32 = 5;

/// Runs the server until SIGINT/SIGTERM. Exit code 0 after a clean shutdown, 2 for
/// a config that is refused, 1 for other start-up failures.
pub fn run(options: &ServeOptions) -> ExitCode {
    let config = match load_config(options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spout: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spout: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(options: &ServeOptions) -> anyhow::Result<Config> {
    let text = match &options.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {path}"))?,
        ),
        None => None,
    };
    let exe = std::env::current_exe().context("cannot find the spout executable")?;
    Config::load(options, text.as_deref(), &exe.to_string_lossy())
        .map_err(|e| anyhow!("config refused: {e}"))
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
    gate: Gate,
}

fn serve(config: Config) -> anyhow::Result<()> {
    let _ = os::raise_nofile_limit();
    os::try_random_bytes().context("the OS gives no randomness for job ids")?;
    let archive = if config.memory {
        None
    } else {
        Some(
            ArchiveDir::open(&config.data_dir)
                .with_context(|| format!("cannot use data dir {}", config.data_dir))?,
        )
    };
    let listen = config.listen;
    let commands: Vec<String> = config.commands.keys().cloned().collect();
    let mode = archive.as_ref().map_or("memory only".to_string(), |a| {
        format!("archive {}", a.root().display())
    });
    let connections = config
        .limits
        .max_subscribers
        .saturating_add(EXTRA_CONNECTIONS);
    let shared = Shared::new(Registry::new(config)?, archive);
    let restored = driver::restore(&shared, clock::now(), clock::wall(), clock::job_id_bytes())
        .context("cannot read the archive")?;
    let listener = wire::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        shared,
        drivers: Arc::new(Drivers::default()),
        gate: Gate::new(connections),
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let current = Arc::new(Mutex::new(accept_on(&listener)?));
    watch_signals(stopping.clone(), current.clone())?;
    log(&format!("listening on http://{addr}"));
    log(&format!(
        "commands: {}; {mode}; {restored} archived jobs",
        commands.join(", ")
    ));
    loop {
        let server = current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match server.recv() {
            Ok(request) => dispatch(&state, request),
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                // tiny_http's accept loop ended for good on this error (EMFILE and
                // the like). A new tiny_http server on the same socket takes over;
                // the old one keeps serving its open connections on a thread.
                log(&format!("accept failed: {e}; accepting again shortly"));
                thread::sleep(Duration::from_millis(100));
                let retired = server;
                let fresh = loop {
                    match accept_on(&listener) {
                        Ok(s) => break s,
                        Err(e) => {
                            log(&format!("cannot accept again yet: {e}"));
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                };
                *current.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
                let state = state.clone();
                let _ = thread::Builder::new()
                    .name("spout-retired".into())
                    .stack_size(STACK_BYTES)
                    .spawn(move || {
                        while let Ok(request) = retired.recv() {
                            dispatch(&state, request);
                        }
                    });
            }
        }
    }
    // Stop accepting: tiny_http's accept thread closes its copy of the socket.
    drop(current);
    drop(listener);
    shutdown(&state);
    Ok(())
}

/// A tiny_http server accepting on a copy of `listener` (so that a new one can
/// take over when tiny_http's accept loop dies).
fn accept_on(listener: &TcpListener) -> anyhow::Result<Arc<tiny_http::Server>> {
    let copy = listener
        .try_clone()
        .context("cannot copy the listening socket")?;
    let server = tiny_http::Server::from_listener(copy, None)
        .map_err(|e| anyhow!("cannot start the HTTP server: {e}"))?;
    Ok(Arc::new(server))
}

/// On SIGINT/SIGTERM, ends the request loop (a thread blocked in `sigwait`-like
/// reading of signal-hook's self-pipe; no handler of ours runs in signal context).
fn watch_signals(
    stopping: Arc<AtomicBool>,
    current: Arc<Mutex<Arc<tiny_http::Server>>>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot handle SIGTERM/SIGINT")?;
    thread::Builder::new()
        .name("spout-signals".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            if signals.forever().next().is_some() {
                stopping.store(true, Ordering::SeqCst);
                current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unblock();
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
    let deadline = clock::now() + Duration::from_secs(2);
    while shared.lock().subscribers() > 0 && clock::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    log("stopped");
}

/// Gives `request` a thread of its own, or a `503` when every slot is taken.
fn dispatch(state: &Arc<State>, request: tiny_http::Request) {
    let serving = state.gate.enter();
    let permit = Permit {
        state: state.clone(),
        serving,
    };
    let task = move || {
        if permit.serving {
            connection(&permit.state, request);
        } else {
            refuse(request);
        }
    };
    if let Err(e) = thread::Builder::new()
        .name("spout-conn".into())
        .stack_size(STACK_BYTES)
        .spawn(task)
    {
        // The request (dropped with the task) gets tiny_http's bare 500.
        log(&format!("cannot start a connection thread: {e}"));
    }
}

/// Answers a request that found no free connection slot.
fn refuse(request: tiny_http::Request) {
    let head = Head::of(&request);
    let response = ApiError::Unavailable {
        message: "too many open connections: retry later".into(),
        retry_after: RETRY_AFTER_S,
    }
    .response()
    .with_header("Connection", "close");
    log(&format!(
        "{} {} {} -> {}",
        head.peer,
        head.method,
        path_of(&head.target),
        response.head.status
    ));
    write_response(request, &response, head.method == "HEAD");
}

/// Writes a whole answer. Returns whether it was written.
fn write_response(request: tiny_http::Request, response: &Response, head_only: bool) -> bool {
    let mut out = Vec::new();
    response.encode(head_only, &mut out);
    Writer::new(request).is_some_and(|mut w| w.send(&out))
}

/// One request: its head to the core, its body read, the core's answer written.
/// tiny_http hands over the requests of a keep-alive connection one at a time, in
/// order, so this is the connection's thread for as long as its request lasts.
fn connection(state: &State, mut request: tiny_http::Request) {
    let shared = &state.shared;
    let head = Head::of(&request);
    if head.too_large() {
        if let Some(response) = ReadFailure::HeadTooLarge.response() {
            log(&format!(
                "{} bad request: request header section too large -> {}",
                head.peer, response.head.status
            ));
            write_response(request, &response, false);
        }
        return;
    }
    let fields = head.fields();
    let req = wire::request(&head, &fields);
    let minor = request.http_version().1;
    let admission = shared.lock().admit(&req, minor);
    let admitted = match admission {
        Admission::Respond(response) => {
            log(&format!(
                "{} {} {} -> {}",
                head.peer,
                head.method,
                path_of(&head.target),
                response.head.status
            ));
            write_response(request, &response, req.is_head());
            return;
        }
        Admission::Handle(admitted) => admitted,
    };
    let body = match wire::read_body(&mut request, admitted.framing) {
        Ok(body) => body,
        Err(failure) => {
            if let Some(response) = failure.response() {
                write_response(request, &response, false);
            }
            return;
        }
    };
    let head_only = admitted.head_only;
    let reply = shared.lock().handle(&req, admitted, &body, inputs());
    let status = match &reply {
        Reply::Full(r) | Reply::Spawn { response: r, .. } | Reply::Stopping { response: r, .. } => {
            r.head.status
        }
        Reply::Stream { head, .. } | Reply::RawLog { head, .. } => head.status,
        _ => 500,
    };
    log(&format!(
        "{} {} {} -> {status}",
        head.peer,
        head.method,
        path_of(&head.target)
    ));
    let response = match reply {
        Reply::Full(r) => r,
        Reply::Spawn {
            response,
            job,
            plan,
        } => {
            job::start(shared.clone(), state.drivers.clone(), job, plan);
            response
        }
        Reply::Stopping { response, job } => {
            shared.notify(job);
            state.drivers.wake(job);
            response
        }
        Reply::Stream {
            head,
            job,
            subscriber,
        } => {
            let Some(mut w) = Writer::new(request) else {
                shared.lock().unsubscribe(job, true, clock::now());
                return;
            };
            if head_only {
                shared.lock().unsubscribe(job, false, clock::now());
                let mut out = Vec::new();
                head.encode(&mut out);
                let _ = w.send(&out);
                return;
            }
            stream::events(shared, &mut w, &head, job, subscriber);
            return;
        }
        Reply::RawLog { head, job, follow } => {
            if let Some(mut w) = Writer::new(request) {
                stream::raw_log(shared, &mut w, &head, job, follow);
            }
            return;
        }
        _ => return,
    };
    write_response(request, &response, head_only);
}

/// The path of a target, for log lines (the query may hold a token).
fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// The bound on connection threads: `limit` serving, [`REFUSERS`] more answering
/// `503`; past both, the request loop waits for a slot (tiny_http's queue holds the
/// requests meanwhile).
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

    fn counts(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot, waiting while none is free: `true` to serve, `false` to refuse.
    fn enter(&self) -> bool {
        let mut counts = self.counts();
        loop {
            let (serving, refusing) = *counts;
            if serving < self.limit {
                counts.0 += 1;
                return true;
            }
            if refusing < REFUSERS {
                counts.1 += 1;
                return false;
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
}

/// A slot taken from the [`Gate`], given back when its thread ends (or cannot start).
struct Permit {
    state: Arc<State>,
    serving: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.state.gate.leave(self.serving);
    }
}
