//! One thread per job: spawns the process, reads its pipes (one thread per pipe),
//! and feeds everything to the core's `Job`, carrying out what it asks (through the
//! shared driver) until the job is over.
//!
//! The job's thread waits on one channel: pipe output, the child's exit, and wake-ups
//! (a stop request, shutdown) all arrive there, and `recv_timeout` runs to the job's
//! next deadline. Why wake-ups are messages rather than the job's
//! `event_listener::Event`: that event also fires on every append this thread makes,
//! and a thread cannot wait on an event and a channel at once.

use crate::clock;
use spout_core::event::{ExitStatus, Stream};
use spout_core::registry::SpawnPlan;
use spout_core::JobId;
use spout_sys::driver::{log, JobIo, Outcome, Shared};
use spout_sys::os::{self, Signal};
use spout_sys::pty;
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

/// What the pipe readers, the waiter and the server tell the job's thread.
enum Msg {
    Out(Stream, Vec<u8>),
    Eof(Stream),
    Exit(Option<i32>, Option<i32>),
    /// Look at the job again: a stop was requested, or the server shuts down.
    Wake,
}

/// How much one pipe read takes.
const READ_BYTES: usize = 64 * 1024;

/// Stack of the job and pipe threads: they hold a few locals and call the core;
/// their buffers live on the heap.
const STACK_BYTES: usize = 256 * 1024;

/// The running jobs' threads, by job: how the server wakes one.
#[derive(Debug, Default)]
pub struct Drivers {
    inboxes: Mutex<HashMap<JobId, SyncSender<Msg>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Out(..) => "Out",
            Msg::Eof(_) => "Eof",
            Msg::Exit(..) => "Exit",
            Msg::Wake => "Wake",
        })
    }
}

impl Drivers {
    /// Wakes job `id`'s thread, if it runs: it then asks the core what is due (the
    /// core already knows about the stop request or the shutdown).
    pub fn wake(&self, id: JobId) {
        if let Some(inbox) = self.inboxes().get(&id) {
            // A full inbox means the thread is about to look at the job anyway.
            let _ = inbox.try_send(Msg::Wake);
        }
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, SyncSender<Msg>>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates job `id`'s files and writes its record, then starts the thread that
/// runs it. The caller sends the `201` only after this returns, so a crash at any
/// later instant leaves a record the next start finds.
pub fn start(shared: Arc<Shared>, drivers: Arc<Drivers>, id: JobId, plan: SpawnPlan) {
    let io = JobIo::record(&shared, id, clock::now());
    // A small bound: a job that writes faster than we archive is slowed by its
    // pipe, not buffered in our memory.
    let (tx, rx) = sync_channel::<Msg>(8);
    drivers.inboxes().insert(id, tx.clone());
    let spawned = {
        let (shared, drivers) = (shared.clone(), drivers.clone());
        thread::Builder::new()
            .name("spout-job".into())
            .stack_size(STACK_BYTES)
            .spawn(move || drive(&shared, &drivers, id, &plan, io, tx, &rx))
    };
    if let Err(e) = spawned {
        // The job cannot run without its thread: record it as failed to start.
        log(&format!("job {id}: cannot start its thread: {e}"));
        drivers.inboxes().remove(&id);
        let now = clock::now();
        let mut io = JobIo::without_files(id);
        let _ = io.with_job(&shared, now, |job| {
            job.handle_spawn_failed(&format!("cannot start a thread: {e}"), now, clock::wall());
        });
        shared.lock().job_finished(clock::wall());
    }
}

fn drive(
    shared: &Shared,
    drivers: &Drivers,
    id: JobId,
    plan: &SpawnPlan,
    mut io: JobIo,
    tx: SyncSender<Msg>,
    rx: &Receiver<Msg>,
) {
    let stop_reading = Arc::new(AtomicBool::new(false));
    let mut group = GroupGuard {
        pgid: None,
        reaped: Arc::new(AtomicBool::new(false)),
    };
    let now = clock::now();
    let mut outcome = match spawn(plan) {
        Ok((child, [stdout, stderr])) => {
            let pid = child.id();
            // Read before the waiter can reap the child, so the pid is surely its;
            // recorded so that a restart after a crash can end the group.
            let identity = os::process_group(pid);
            io.set_pgid(pid);
            group.pgid = Some(pid);
            log(&format!("job {id}: started {:?} (pid {pid})", plan.argv));
            let readers = [
                helper("spout-stdout", {
                    let (tx, stop) = (tx.clone(), stop_reading.clone());
                    move || read_pipe(stdout, Stream::Stdout, &tx, &stop)
                }),
                helper("spout-stderr", {
                    let (tx, stop) = (tx.clone(), stop_reading.clone());
                    move || read_pipe(stderr, Stream::Stderr, &tx, &stop)
                }),
                helper("spout-wait", {
                    let (tx, reaped) = (tx.clone(), group.reaped.clone());
                    move || wait_child(child, &tx, &reaped)
                }),
            ];
            match readers.into_iter().find_map(Result::err) {
                None => io.with_job(shared, now, |job| {
                    match identity {
                        Ok(identity) => job.handle_process_group(identity),
                        Err(e) => log(&format!("job {id}: its process group is not recorded: {e}")),
                    }
                    job.handle_spawned(pid, now, clock::wall());
                }),
                Some(e) => {
                    // Without its readers or waiter the job cannot be followed: end it.
                    log(&format!("job {id}: cannot start its pipe threads: {e}"));
                    let _ = os::signal_group(pid, Signal::Kill);
                    io.with_job(shared, now, |job| {
                        job.handle_spawn_failed(
                            &format!("cannot start a thread: {e}"),
                            now,
                            clock::wall(),
                        );
                    })
                }
            }
        }
        Err(e) => {
            log(&format!("job {id}: could not start {:?}: {e}", plan.argv));
            io.with_job(shared, now, |job| {
                job.handle_spawn_failed(&e.to_string(), now, clock::wall());
            })
        }
    };
    // The inbox in `Drivers` keeps the channel open: `recv` never sees it closed
    // while the job runs, only messages, wake-ups and deadlines.
    drop(tx);
    loop {
        if outcome.stop_reading {
            // The readers drop their pipes after their current read; what they
            // still send is not the job's any more (as a cancelled reader in `spout`).
            stop_reading.store(true, Ordering::Relaxed);
        }
        if outcome.finished {
            break;
        }
        // The job's own lock, not the registry's.
        let deadline = io.peek(shared, |job| job.poll_timeout()).flatten();
        let msg = next_msg(rx, deadline);
        let now = clock::now();
        let reading = !stop_reading.load(Ordering::Relaxed);
        let a = match msg {
            Some(Msg::Out(stream, bytes)) if reading => io.output(shared, stream, &bytes, now),
            Some(Msg::Eof(stream)) if reading => {
                io.with_job(shared, now, |job| job.handle_eof(stream, now))
            }
            Some(Msg::Exit(code, signal)) => io.with_job(shared, now, |job| {
                job.handle_exit(ExitStatus { code, signal }, now);
            }),
            _ => Outcome::default(),
        };
        // Deadlines are checked after every input too, so a steady stream of output
        // cannot starve them.
        let b = io.with_job(shared, now, |job| job.handle_timeout(now));
        outcome = Outcome {
            stop_reading: outcome.stop_reading || a.stop_reading || b.stop_reading,
            finished: a.finished || b.finished,
        };
    }
    drivers.inboxes().remove(&id);
    let state = io.peek(shared, |job| job.state().as_str());
    log(&format!("job {id}: ended ({})", state.unwrap_or("dropped")));
    shared.lock().job_finished(clock::wall());
    shared.remove_expired();
}

/// The next input: a message, or `None` at the deadline.
fn next_msg(rx: &Receiver<Msg>, deadline: Option<Instant>) -> Option<Msg> {
    match deadline {
        None => rx.recv().ok(),
        // A timeout is the deadline; the channel cannot close while the job runs
        // (its inbox in `Drivers` holds a sender).
        Some(t) => rx
            .recv_timeout(t.saturating_duration_since(clock::now()))
            .ok(),
    }
}

/// Kills the job's process group when the job's thread ends (or unwinds) before its
/// child was reaped, as dropping an unreaped `Waiter` does in `spout`: a job nobody
/// drives must not leave processes behind. After the reap the pid may belong to
/// someone else, so it is never signalled then.
struct GroupGuard {
    pgid: Option<u32>,
    reaped: Arc<AtomicBool>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            if !self.reaped.load(Ordering::Acquire) {
                let _ = os::signal_group(pgid, Signal::Kill);
            }
        }
    }
}

fn helper(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(STACK_BYTES)
        .spawn(f)
}

/// What the job's stdout and stderr readers read.
type Output = [Box<dyn Read + Send>; 2];

/// Starts `plan` by the rules of `os::job_command` (own process group, cleared
/// environment, stdin from `/dev/null`, stdout and stderr piped), or on a
/// pseudo-terminal (`pty::spawn`): then stdout is the terminal, which carries
/// stderr too, and the stderr reader reads nothing.
fn spawn(plan: &SpawnPlan) -> io::Result<(Child, Output)> {
    let cwd = plan.cwd.as_deref().map(Path::new);
    let program = plan.argv.first().map_or("", String::as_str);
    let started = |e: io::Error| io::Error::new(e.kind(), format!("cannot start {program:?}: {e}"));
    if let Some(size) = plan.pty {
        let pty::Started { mut child, exec } =
            pty::spawn(&plan.argv, cwd, &plan.env, size, |mut cmd, stdio| {
                cmd.stdin(stdio.stdin)
                    .stdout(stdio.stdout)
                    .stderr(stdio.stderr)
                    .spawn()
            })
            .map_err(started)?;
        return match exec {
            Ok(master) => Ok((child, [Box::new(master), Box::new(io::empty())])),
            Err(e) => {
                let _ = child.wait(); // the helper has exited or is about to
                Err(e)
            }
        };
    }
    let mut child = os::job_command(&plan.argv, cwd, &plan.env)?
        .spawn()
        .map_err(started)?;
    // invariant: job_command pipes both, and they are taken only here.
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok((child, [Box::new(stdout), Box::new(stderr)]))
}

fn read_pipe(mut pipe: impl Read, stream: Stream, tx: &SyncSender<Msg>, stop: &AtomicBool) {
    let mut buf = vec![0u8; READ_BYTES];
    while !stop.load(Ordering::Relaxed) {
        match pipe.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => {
                let _ = tx.send(Msg::Eof(stream));
                return;
            }
            Ok(n) => {
                if tx.send(Msg::Out(stream, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits for the child (not its pipes: a grandchild may hold them open) to exit.
fn wait_child(mut child: Child, tx: &SyncSender<Msg>, reaped: &AtomicBool) {
    let waited = child.wait();
    reaped.store(true, Ordering::Release);
    let (code, signal) = match waited {
        Ok(status) => os::wait_status_parts(status),
        Err(e) => {
            log(&format!("pid {}: wait failed: {e}", child.id()));
            (None, None)
        }
    };
    let _ = tx.send(Msg::Exit(code, signal));
}
