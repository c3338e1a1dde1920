//! One thread per job: spawns the process, reads its pipes, and feeds everything to
//! the core's `Job`, carrying out what it asks (through the shared driver) until
//! the job is over.
//!
//! The job's thread reads both pipes itself and waits in `poll(2)` on them and on a
//! doorbell (a socket pair) that the waiter thread rings with the child's exit and
//! the server with a wake-up (a stop request, shutdown), bounded by the job's next
//! deadline. One input is taken per step, as `spout`'s job task does.
//!
//! Why the pipes are not read by threads of their own: the core ends the drain
//! after the child's exit at a deadline ("1 s of quiet"), and a due deadline must
//! never win over output already in a pipe. A child that has exited has written
//! everything into its pipes; a reader thread starved for a second under load (as
//! with hundreds of stream threads on two cores) left that tail unread when the
//! deadline came, and the job ended without it. Here a deadline is handed to the
//! core only when `poll` finds nothing to read, so what an exited child wrote is
//! always read, whatever the scheduling. Why wake-ups ring a doorbell rather than the
//! job's `event_listener::Event`: that event also fires on every append this thread
//! makes, and a thread cannot wait on an event and file descriptors at once.

use crate::clock;
use rustix::event::{PollFd, PollFlags, Timespec};
use spout_core::event::{ExitStatus, Stream};
use spout_core::registry::SpawnPlan;
use spout_core::JobId;
use spout_sys::driver::{log, JobIo, Outcome, Shared};
use spout_sys::os::{self, Signal};
use spout_sys::pty;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

/// What the job's thread takes in one step.
#[derive(Debug)]
enum Input {
    /// Bytes read from one pipe (in the thread's buffer for that pipe).
    Out(Stream, usize),
    Eof(Stream),
    Exit(Option<i32>, Option<i32>),
    /// Look at the job again: a stop was requested, or the server shuts down.
    Wake,
    /// The deadline passed with nothing to read.
    Deadline,
}

/// The child's exit as the waiter reports it: code and signal
/// (`os::wait_status_parts`).
type WaitStatus = (Option<i32>, Option<i32>);

/// How much one pipe read takes.
const READ_BYTES: usize = 64 * 1024;

/// Stack of the job and waiter threads: they hold a few locals and call the core;
/// their buffers live on the heap.
const STACK_BYTES: usize = 256 * 1024;

/// The running jobs' doorbells, by job: how the server wakes one.
#[derive(Debug, Default)]
pub struct Drivers {
    bells: Mutex<HashMap<JobId, UnixStream>>,
}

impl Drivers {
    /// Wakes job `id`'s thread, if it runs: it then asks the core what is due (the
    /// core already knows about the stop request or the shutdown).
    pub fn wake(&self, id: JobId) {
        if let Some(bell) = self.bells().get(&id) {
            ring(bell);
        }
    }

    fn bells(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, UnixStream>> {
        self.bells.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rings a job's doorbell: one byte on its socket pair. A full socket means the
/// bell already rings, so the byte is not needed.
fn ring(bell: &UnixStream) {
    let _ = (&*bell).write(b"w");
}

/// The job thread's side of its doorbell, and the waiter's news behind it.
struct Doorbell {
    socket: UnixStream,
    exits: Receiver<WaitStatus>,
}

impl Doorbell {
    /// A doorbell, its ringing end (for [`Drivers`]) and the sender the waiter
    /// reports the child's exit on.
    fn new() -> io::Result<(Doorbell, UnixStream, SyncSender<WaitStatus>)> {
        let (socket, ringer) = UnixStream::pair()?;
        // Rung from threads that must never block on it; emptied without blocking.
        socket.set_nonblocking(true)?;
        ringer.set_nonblocking(true)?;
        let (tx, exits) = sync_channel(1);
        Ok((Doorbell { socket, exits }, ringer, tx))
    }

    /// Empties the socket (every ring so far is being answered).
    fn clear(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.socket).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// The child's exit, if the waiter reported it.
    fn exit(&self) -> Option<Input> {
        match self.exits.try_recv() {
            Ok((code, signal)) => Some(Input::Exit(code, signal)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }
}

/// Creates job `id`'s files and writes its record, then starts the thread that
/// runs it. The caller sends the `201` only after this returns, so a crash at any
/// later instant leaves a record the next start finds.
pub fn start(shared: Arc<Shared>, drivers: Arc<Drivers>, id: JobId, plan: SpawnPlan) {
    let io = JobIo::record(&shared, id, clock::now());
    let spawned = Doorbell::new().and_then(|(bell, ringer, exits)| {
        drivers.bells().insert(id, ringer);
        let (shared, drivers) = (shared.clone(), drivers.clone());
        thread::Builder::new()
            .name("spout-job".into())
            .stack_size(STACK_BYTES)
            .spawn(move || drive(&shared, &drivers, id, &plan, io, &bell, exits))
    });
    if let Err(e) = spawned {
        // The job cannot run without its thread: record it as failed to start.
        log(&format!("job {id}: cannot start its thread: {e}"));
        drivers.bells().remove(&id);
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
    drivers: &Arc<Drivers>,
    id: JobId,
    plan: &SpawnPlan,
    mut io: JobIo,
    bell: &Doorbell,
    exits: SyncSender<WaitStatus>,
) {
    let mut group = GroupGuard {
        pgid: None,
        reaped: Arc::new(AtomicBool::new(false)),
    };
    let mut pipes: Pipes = [None, None];
    let now = clock::now();
    let mut outcome = match spawn(plan) {
        Ok((child, output)) => {
            let pid = child.id();
            // Read before the waiter can reap the child, so the pid is surely its;
            // recorded so that a restart after a crash can end the group.
            let identity = os::process_group(pid);
            io.set_pgid(pid);
            group.pgid = Some(pid);
            log(&format!("job {id}: started {:?} (pid {pid})", plan.argv));
            let waiter = helper("spout-wait", {
                let (drivers, reaped) = (drivers.clone(), group.reaped.clone());
                move || wait_child(child, &exits, &reaped, || drivers.wake(id))
            });
            match waiter {
                Ok(_) => {
                    pipes = output;
                    let absent = [Stream::Stdout, Stream::Stderr].map(|s| pipes[idx(s)].is_none());
                    io.with_job(shared, now, |job| {
                        match identity {
                            Ok(identity) => job.handle_process_group(identity),
                            Err(e) => {
                                log(&format!("job {id}: its process group is not recorded: {e}"))
                            }
                        }
                        job.handle_spawned(pid, now, clock::wall());
                        // On a terminal, stderr is the terminal: nothing to read.
                        for stream in [Stream::Stdout, Stream::Stderr] {
                            if absent[idx(stream)] {
                                job.handle_eof(stream, now);
                            }
                        }
                    })
                }
                Err(e) => {
                    // Without its waiter the job cannot be followed: end it.
                    log(&format!("job {id}: cannot start its waiter thread: {e}"));
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
    let mut reader = Reader::default();
    loop {
        if outcome.stop_reading {
            // Closes them: what a grandchild still writes is not the job's any more.
            pipes = [None, None];
        }
        if outcome.finished {
            break;
        }
        // The job's own lock, not the registry's.
        let deadline = io.peek(shared, |job| job.poll_timeout()).flatten();
        let input = reader.next_input(&mut pipes, bell, deadline);
        let now = clock::now();
        let a = match input {
            Input::Out(stream, n) => io.output(shared, stream, reader.bytes(stream, n), now),
            Input::Eof(stream) => io.with_job(shared, now, |job| job.handle_eof(stream, now)),
            Input::Exit(code, signal) => io.with_job(shared, now, |job| {
                job.handle_exit(ExitStatus { code, signal }, now);
            }),
            Input::Wake | Input::Deadline => Outcome::default(),
        };
        // Deadlines are checked after every input too, so a steady stream of output
        // cannot starve them; output taken in this step was handed first.
        let b = io.with_job(shared, now, |job| job.handle_timeout(now));
        outcome = Outcome {
            stop_reading: outcome.stop_reading || a.stop_reading || b.stop_reading,
            finished: a.finished || b.finished,
        };
    }
    drivers.bells().remove(&id);
    let state = io.peek(shared, |job| job.state().as_str());
    log(&format!("job {id}: ended ({})", state.unwrap_or("dropped")));
    shared.lock().job_finished(clock::wall());
    shared.remove_expired();
}

/// The job's stdout and stderr while they are read (`None` once at their end,
/// after the core said to stop reading, or, for stderr, on a terminal).
type Pipes = [Option<File>; 2];

fn idx(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Reads the job's pipes for its thread: one buffer per pipe, and whose turn it is
/// when both have output, so neither starves.
struct Reader {
    bufs: [Vec<u8>; 2],
    turn: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            bufs: [vec![0u8; READ_BYTES], vec![0u8; READ_BYTES]],
            turn: 0,
        }
    }
}

impl Reader {
    /// What [`Input::Out`]`(stream, n)` read.
    fn bytes(&self, stream: Stream, n: usize) -> &[u8] {
        &self.bufs[idx(stream)][..n]
    }

    /// The next input: the child's exit; else one read of a pipe that has output
    /// or is at its end; else a wake-up; else, once `deadline` has passed and
    /// nothing is left to read, [`Input::Deadline`]. The order is the rule: a
    /// deadline (the drain's end, above all) is never taken while a pipe has
    /// something to read, however late this thread got to look.
    fn next_input(
        &mut self,
        pipes: &mut Pipes,
        bell: &Doorbell,
        deadline: Option<Instant>,
    ) -> Input {
        loop {
            if let Some(exit) = bell.exit() {
                return exit;
            }
            let timeout = deadline.map(|t| t.saturating_duration_since(clock::now()));
            let Some(ready) = wait(pipes, &bell.socket, timeout) else {
                continue;
            };
            for k in 0..2 {
                let i = (self.turn + k) % 2;
                if ready.pipes[i] {
                    self.turn = (i + 1) % 2;
                    let stream = [Stream::Stdout, Stream::Stderr][i];
                    if let Some(input) = read_pipe(&mut pipes[i], &mut self.bufs[i], stream) {
                        return input;
                    }
                }
            }
            if ready.bell {
                bell.clear();
                return bell.exit().unwrap_or(Input::Wake);
            }
            if deadline.is_some_and(|t| clock::now() >= t) {
                return Input::Deadline;
            }
        }
    }
}

/// What `poll` found ready.
struct Ready {
    pipes: [bool; 2],
    bell: bool,
}

/// Waits up to `timeout` (`None`: without end) until a pipe or the doorbell is
/// ready; `None` when interrupted (or `poll` failed: logged, then retried).
fn wait(pipes: &Pipes, bell: &UnixStream, timeout: Option<std::time::Duration>) -> Option<Ready> {
    // A slot whose pipe is gone polls the doorbell again and is not looked at:
    // a fixed array, no allocation per step.
    let fd = |i: usize| pipes[i].as_ref().map_or(bell.as_fd(), AsFd::as_fd);
    let mut fds = [
        PollFd::from_borrowed_fd(bell.as_fd(), PollFlags::IN),
        PollFd::from_borrowed_fd(fd(0), PollFlags::IN),
        PollFd::from_borrowed_fd(fd(1), PollFlags::IN),
    ];
    // A timeout too large for a timespec is as good as none.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return None,
        Err(e) => {
            // poll(2) on three descriptors fails only without kernel memory: wait a
            // little rather than spin.
            log(&format!("poll on a job's pipes failed: {e}"));
            thread::sleep(std::time::Duration::from_millis(10));
            return None;
        }
    }
    // Hang-up and errors count as ready: the read then sees the end.
    let ready = |i: usize| !fds[i].revents().is_empty();
    Some(Ready {
        pipes: [
            pipes[0].is_some() && ready(1),
            pipes[1].is_some() && ready(2),
        ],
        bell: ready(0),
    })
}

/// One read of a pipe `poll` found ready (so it does not block: only this thread
/// reads it). `None` when interrupted; the pipe is dropped at its end.
fn read_pipe(pipe: &mut Option<File>, buf: &mut [u8], stream: Stream) -> Option<Input> {
    let file = pipe.as_mut()?;
    match file.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        // A terminal's master reads EIO once the job's side is closed: its end.
        Ok(0) | Err(_) => {
            *pipe = None;
            Some(Input::Eof(stream))
        }
        Ok(n) => Some(Input::Out(stream, n)),
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

/// Starts `plan` by the rules of `os::job_command` (own process group, cleared
/// environment, stdin from `/dev/null`, stdout and stderr piped), or on a
/// pseudo-terminal (`pty::spawn`): then stdout is the terminal, which carries
/// stderr too, and there is no stderr to read.
fn spawn(plan: &SpawnPlan) -> io::Result<(Child, Pipes)> {
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
            Ok(master) => Ok((child, [Some(master), None])),
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
    let pipe = |fd: OwnedFd| Some(File::from(fd));
    Ok((child, [pipe(stdout.into()), pipe(stderr.into())]))
}

/// Waits for the child (not its pipes: a grandchild may hold them open) to exit,
/// then reports it and rings the job's doorbell.
fn wait_child(
    mut child: Child,
    exits: &SyncSender<WaitStatus>,
    reaped: &AtomicBool,
    ring: impl FnOnce(),
) {
    let waited = child.wait();
    reaped.store(true, Ordering::Release);
    let (code, signal) = match waited {
        Ok(status) => os::wait_status_parts(status),
        Err(e) => {
            log(&format!("pid {}: wait failed: {e}", child.id()));
            (None, None)
        }
    };
    // Room for it (one exit, one slot); a job already over has dropped the receiver.
    let _ = exits.try_send((code, signal));
    ring();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe-like pair: the read end as the job's thread holds it, and the writer.
    fn pipe() -> (File, UnixStream) {
        let (read, write) = UnixStream::pair().unwrap();
        (File::from(OwnedFd::from(read)), write)
    }

    /// Takes inputs until the deadline is handed out (at most `max` of them), as
    /// (kind, bytes) with output bytes added up per stream.
    fn until_deadline(
        reader: &mut Reader,
        pipes: &mut Pipes,
        bell: &Doorbell,
        deadline: Instant,
    ) -> (Vec<String>, [usize; 2]) {
        let (mut kinds, mut bytes) = (Vec::new(), [0, 0]);
        for _ in 0..1000 {
            match reader.next_input(pipes, bell, Some(deadline)) {
                Input::Deadline => return (kinds, bytes),
                Input::Out(stream, n) => {
                    assert!(reader.bytes(stream, n).iter().all(|&b| b == b'x'));
                    bytes[idx(stream)] += n;
                    if kinds.last().is_none_or(|k| k != &format!("out {stream:?}")) {
                        kinds.push(format!("out {stream:?}"));
                    }
                }
                other => kinds.push(format!("{other:?}")),
            }
        }
        panic!("no deadline after 1000 inputs: {kinds:?}");
    }

    #[test]
    fn a_due_deadline_comes_only_after_what_the_pipes_hold() {
        // The child has exited: its last bytes are in stdout, stderr is at its end,
        // and the job's thread looks late, its deadline long past.
        let (bell, _ringer, _exits) = Doorbell::new().unwrap();
        let (stdout, mut w_out) = pipe();
        let (stderr, w_err) = pipe();
        w_out.write_all(&[b'x'; 100_000]).unwrap();
        drop((w_out, w_err));
        let mut pipes: Pipes = [Some(stdout), Some(stderr)];
        let past = clock::now();
        let (kinds, bytes) = until_deadline(&mut Reader::default(), &mut pipes, &bell, past);
        assert_eq!(bytes, [100_000, 0], "{kinds:?}");
        assert!(kinds.contains(&"Eof(Stdout)".into()), "{kinds:?}");
        assert!(kinds.contains(&"Eof(Stderr)".into()), "{kinds:?}");
        assert!(pipes.iter().all(Option::is_none), "both ended");
    }

    #[test]
    fn the_exit_comes_first_and_a_wake_up_before_the_deadline() {
        let (bell, ringer, exits) = Doorbell::new().unwrap();
        let (stdout, mut w_out) = pipe();
        w_out.write_all(b"xxxx").unwrap();
        drop(w_out);
        exits.try_send((Some(0), None)).unwrap();
        ring(&ringer);
        ring(&ringer); // rung twice (a stop request too): answered once
        let mut pipes: Pipes = [Some(stdout), None];
        let past = clock::now();
        let (kinds, bytes) = until_deadline(&mut Reader::default(), &mut pipes, &bell, past);
        assert_eq!(
            kinds,
            ["Exit(Some(0), None)", "out Stdout", "Eof(Stdout)", "Wake"]
        );
        assert_eq!(bytes, [4, 0]);
    }

    #[test]
    fn a_wake_up_ends_a_wait_without_deadline() {
        let (bell, ringer, _exits) = Doorbell::new().unwrap();
        let (stdout, _w_out) = pipe(); // open and quiet
        let mut pipes: Pipes = [Some(stdout), None];
        ring(&ringer);
        let mut reader = Reader::default();
        assert!(matches!(
            reader.next_input(&mut pipes, &bell, None),
            Input::Wake
        ));
        assert!(pipes[0].is_some(), "a quiet pipe stays open");
    }
}
