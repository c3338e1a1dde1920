//! One task per job: spawns the process, reads its pipes, and feeds everything to
//! the core's `Job`, carrying out what it asks (through the shared driver) until
//! the job is over.
//!
//! The task locks only its own job (its `JobSlot`, found once), never the registry
//! until the job is over. A step runs on the executor, appends included (a copy into
//! the page cache, as a socket write is a copy into the kernel); at the first action
//! that may block long (an fsync, the metadata's synced rewrite) it stops and the
//! rest of it runs on smol's blocking pool ([`step`]). Inside a step the order is the
//! shared driver's: an event is archived, then the core is told, then subscribers
//! are woken.

use crate::{clock, process};
use async_channel::{Receiver, Sender};
use futures_lite::future;
use smol::{Task, Timer};
use spout_core::event::{ExitStatus, Stream};
use spout_core::registry::SpawnPlan;
use spout_core::JobId;
use spout_sys::driver::{log, JobIo, Outcome, Shared};
use spout_sys::os;
use std::sync::Arc;
use std::time::Instant;

/// What the job's task waits for: its pipes' output, the waiter's news.
enum Msg {
    Out(Stream, Vec<u8>),
    Eof(Stream),
    Exit(Option<i32>, Option<i32>),
}

/// How much one pipe read takes.
const READ_BYTES: usize = 64 * 1024;

/// Creates job `id`'s files and writes its record, then starts the task that runs
/// it. The caller sends the `201` only after this returns, so a crash at any later
/// instant leaves a record the next start finds.
pub async fn start(shared: Arc<Shared>, id: JobId, plan: SpawnPlan) {
    let io = smol::unblock({
        let shared = shared.clone();
        move || JobIo::record(&shared, id, clock::now())
    })
    .await;
    smol::spawn(drive(shared, id, plan, io)).detach();
}

/// Runs `f` on the job's I/O right here, on the executor, then, if it stopped at an
/// action that may block long (a sync, the metadata: [`JobIo::defer_slow_actions`]),
/// carries out that action and the rest on smol's blocking pool, the I/O moved there
/// and back. So the common step (the core's calls under the job's own lock, an
/// append to the page cache, the wake-up of the subscribers) costs no thread
/// hand-off, and no fsync ever runs on the executor.
async fn step<R>(
    mut io: JobIo,
    shared: &Arc<Shared>,
    now: Instant,
    f: impl FnOnce(&mut JobIo, &Shared) -> R,
) -> (JobIo, R, Outcome) {
    let r = f(&mut io, shared);
    if !io.has_deferred() {
        return (io, r, Outcome::default());
    }
    let shared = shared.clone();
    let (io, rest) = smol::unblock(move || {
        let mut io = io;
        let rest = io.drain_deferred(&shared, now);
        (io, rest)
    })
    .await;
    (io, r, rest)
}

async fn drive(shared: Arc<Shared>, id: JobId, plan: SpawnPlan, mut io: JobIo) {
    io.defer_slow_actions();
    // The task reads the pipes itself, one read per step: a job that writes faster
    // than we archive is slowed by its pipe, not buffered in our memory. Only the
    // child's exit comes from a task of its own.
    let (tx, rx) = async_channel::bounded::<Msg>(1);
    let mut pipes: Pipes = [None, None];
    let mut _waiter: Option<Task<()>> = None;
    let now = clock::now();
    // Off the executor: a start on a terminal waits for the program's exec.
    let spawned = smol::unblock({
        let plan = plan.clone();
        move || {
            let spawned = process::spawn(&plan.argv, plan.cwd.as_deref(), &plan.env, plan.pty)?;
            let (stdout, stderr, waiter) = spawned.into_parts();
            // The group's identity, recorded so that a restart after a crash can
            // end it. Read here, before the waiter exists: a child that has
            // already exited is a zombie until reaped, and still in /proc.
            let group = os::process_group(waiter.pid());
            Ok::<_, std::io::Error>((stdout, stderr, waiter, group))
        }
    })
    .await;
    let (mut io, mut outcome) = match spawned {
        Ok((stdout, stderr, waiter, group)) => {
            let pid = waiter.pid();
            log(&format!("job {id}: started {:?} (pid {pid})", plan.argv));
            pipes = [Some(stdout), Some(stderr)];
            _waiter = Some(smol::spawn(wait_child(waiter, tx.clone())));
            let wall = clock::wall();
            let (io, a, b) = step(io, &shared, now, move |io, shared| {
                io.set_pgid(pid);
                io.with_job(shared, now, |job| {
                    match group {
                        Ok(group) => job.handle_process_group(group),
                        Err(e) => log(&format!("job {id}: its process group is not recorded: {e}")),
                    }
                    job.handle_spawned(pid, now, wall);
                })
            })
            .await;
            (io, merge(a, b))
        }
        Err(e) => {
            log(&format!("job {id}: could not start {:?}: {e}", plan.argv));
            let (error, wall) = (e.to_string(), clock::wall());
            let (io, a, b) = step(io, &shared, now, move |io, shared| {
                io.with_job(shared, now, |job| {
                    job.handle_spawn_failed(&error, now, wall)
                })
            })
            .await;
            (io, merge(a, b))
        }
    };
    drop(tx);
    let mut bufs = [vec![0u8; READ_BYTES], vec![0u8; READ_BYTES]];
    loop {
        if outcome.stop_reading {
            pipes = [None, None]; // closes them
        }
        if outcome.finished {
            break;
        }
        // The job's own slot: its lock and its notifier (no registry lock here).
        let Some(slot) = io.slot(&shared) else { break };
        let listener = slot.listen();
        let deadline = slot.lock().poll_timeout();
        let msg = next_msg(&mut pipes, &mut bufs, &rx, listener, deadline).await;
        let now = clock::now();
        let (next_io, (a, b), c) = step(io, &shared, now, move |io, shared| {
            let a = match msg {
                Some(Msg::Out(stream, bytes)) => io.output(shared, stream, &bytes, now),
                Some(Msg::Eof(stream)) => {
                    io.with_job(shared, now, |job| job.handle_eof(stream, now))
                }
                Some(Msg::Exit(code, signal)) => io.with_job(shared, now, |job| {
                    job.handle_exit(ExitStatus { code, signal }, now)
                }),
                None => Outcome::default(),
            };
            // Deadlines are checked after every input too, so a steady stream of
            // output cannot starve them.
            let b = io.with_job(shared, now, |job| job.handle_timeout(now));
            (a, b)
        })
        .await;
        io = next_io;
        let step = merge(merge(a, b), c);
        outcome = Outcome {
            stop_reading: outcome.stop_reading || step.stop_reading,
            finished: step.finished,
        };
    }
    let state = io.peek(&shared, |job| job.state().as_str());
    log(&format!("job {id}: ended ({})", state.unwrap_or("dropped")));
    shared.lock().job_finished(clock::wall());
    // Deleting expired jobs' files is file I/O too.
    let shared = shared.clone();
    smol::unblock(move || shared.remove_expired()).await;
}

/// Both outcomes of a step: stop reading or finish if either says so.
fn merge(a: Outcome, b: Outcome) -> Outcome {
    Outcome {
        stop_reading: a.stop_reading || b.stop_reading,
        finished: a.finished || b.finished,
    }
}

/// The job's stdout and stderr while they are read.
type Pipes = [Option<process::Output>; 2];

/// The next input: output or the end of a pipe, the child's exit, a wake-up (stop
/// request, shutdown), or a deadline. A pipe whose end was read is dropped. Reads
/// race the other inputs: a read not finished when another input wins took
/// nothing from its pipe.
async fn next_msg(
    pipes: &mut Pipes,
    bufs: &mut [Vec<u8>; 2],
    rx: &Receiver<Msg>,
    listener: event_listener::EventListener,
    deadline: Option<Instant>,
) -> Option<Msg> {
    let [out, err] = pipes;
    let [out_buf, err_buf] = bufs;
    // Either pipe, picked at random when both are ready, so neither starves.
    let output = future::race(
        read_pipe(out, out_buf, Stream::Stdout),
        read_pipe(err, err_buf, Stream::Stderr),
    );
    let exit = async {
        match rx.recv().await {
            Ok(msg) => msg,
            // The waiter is gone: only output, wake-ups and deadlines remain.
            Err(_) => future::pending().await,
        }
    };
    let woken = async {
        listener.await;
        None
    };
    let timer = async {
        match deadline {
            Some(t) => {
                Timer::at(t).await;
            }
            None => future::pending::<()>().await,
        }
        None
    };
    let msg = future::or(
        async { Some(future::or(output, exit).await) },
        future::or(woken, timer),
    )
    .await;
    for (stream, pipe) in [(Stream::Stdout, out), (Stream::Stderr, err)] {
        if matches!(msg, Some(Msg::Eof(s)) if s == stream) {
            *pipe = None;
        }
    }
    msg
}

/// One read of `pipe` (never finishes once it is gone).
async fn read_pipe(pipe: &mut Option<process::Output>, buf: &mut [u8], stream: Stream) -> Msg {
    let Some(pipe) = pipe else {
        return future::pending().await;
    };
    match process::read_some(pipe, buf).await {
        Ok(0) | Err(_) => Msg::Eof(stream),
        Ok(n) => Msg::Out(stream, buf[..n].to_vec()),
    }
}

async fn wait_child(mut waiter: process::Waiter, tx: Sender<Msg>) {
    let (code, signal) = match waiter.wait().await {
        Ok(status) => status,
        Err(e) => {
            log(&format!("pid {}: wait failed: {e}", waiter.pid()));
            (None, None)
        }
    };
    let _ = tx.send(Msg::Exit(code, signal)).await;
}
