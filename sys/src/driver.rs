//! The part of driving jobs that is the same in both runtimes and needs no async:
//! the shared state, and carrying out a job's actions (archive writes, signals,
//! metadata).
//!
//! A runtime adds only how it waits (async or blocking) and how it reads pipes.
//! Every decision is the core's: this file only does what a [`Job`] asks.
//!
//! # Locks
//!
//! Two kinds, and one order. The registry ([`Shared::lock`]) is taken to find,
//! insert or remove a job and to answer requests that need every job (admission,
//! listing, creating, subscribing, `/metrics`). Each job has its own
//! ([`JobSlot::lock`]), taken for one core call at a time by the job's driver and by
//! the streams that watch it: a driver or a stream finds its [`JobSlot`] once
//! ([`Shared::slot`]) and then never touches the registry on its hot path. What
//! streams write is counted in atomics ([`Shared::record_sent`]).
//!
//! Order: the registry, then a job; never the reverse. The registry's methods lock
//! jobs (through [`JobCell::with`]) while the registry is held, so code that holds a
//! job's lock must let it go before it calls anything on [`Shared`] that locks the
//! registry. Neither lock is ever held across I/O (files, sockets, signals).
//!
//! # The job list's notifier
//!
//! `GET /jobs` event streams wait on one registry-wide notifier
//! ([`Shared::listen_list`]). Whoever changes the job list does so under the
//! registry lock, so the lock's guard ([`RegistryGuard`]) wakes them on release
//! when the list moved ([`Registry::list_version`]): no caller can forget to.
//! A job's state changes in its own cell, so [`JobIo::drain`] reports a new state
//! to the registry once it has let the job go.

use crate::archive::{ArchiveDir, JobFiles};
use crate::os;
use event_listener::{Event, EventListener};
use spout_core::event::Stream;
use spout_core::job::State;
use spout_core::job::{Action, Job, Signal};
use spout_core::registry::{JobCell, Registry, SentCounters};
use spout_core::JobId;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The registry as the runtimes keep it: every job in its own [`JobSlot`].
pub type SharedRegistry = Registry<JobSlot>;

/// One job behind its own lock, with the notifier that wakes whoever waits on it
/// (its subscribers when it appends; its driver on a stop request).
#[derive(Debug)]
pub struct JobSlot {
    job: Mutex<Job>,
    waker: Event,
    /// Woken before `waker`: the job's Redis pusher ([`JobSlot::listen_first`]).
    first: Event,
}

impl JobSlot {
    /// Locks the job. Hold it only around core calls, never across I/O, and never
    /// take the registry while holding it (see the module docs).
    pub fn lock(&self) -> MutexGuard<'_, Job> {
        // As for the registry: a panic inside one core call leaves the job as
        // consistent as any call does; keep serving it.
        self.job.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A listener for the job's next [`JobSlot::notify`]: take it before looking at
    /// the job, so that nothing appended in between is missed.
    #[must_use]
    pub fn listen(&self) -> EventListener {
        self.waker.listen()
    }

    /// A listener woken before every [`JobSlot::listen`] one, for the one task
    /// whose wake-up others wait on: the cluster pusher, whose push is the start
    /// of every other server's delivery. Woken last (after up to thousands of
    /// subscribers, each taking the job's lock in turn), it added their time to
    /// the Redis hop.
    #[must_use]
    pub fn listen_first(&self) -> EventListener {
        self.first.listen()
    }

    /// Wakes everything waiting on the job ([`JobSlot::listen_first`] first).
    pub fn notify(&self) {
        self.first.notify(usize::MAX);
        self.waker.notify(usize::MAX);
    }
}

impl JobCell for JobSlot {
    fn new(job: Job) -> Self {
        JobSlot {
            job: Mutex::new(job),
            waker: Event::new(),
            first: Event::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Job) -> R) -> R {
        f(&mut self.lock())
    }
}

/// The server's state: the core's registry behind one lock (each job behind its
/// own, inside it), the archive, and the counters streams add to.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<SharedRegistry>,
    /// Wakes the job list's streams when the feed moves.
    list: Event,
    sent: Arc<SentCounters>,
    /// The archive directory; `None` with `--memory`.
    pub archive: Option<ArchiveDir>,
}

impl Shared {
    /// Shared state around `registry`.
    #[must_use]
    pub fn new(registry: SharedRegistry, archive: Option<ArchiveDir>) -> Arc<Shared> {
        Arc::new(Shared {
            sent: registry.sent(),
            state: Mutex::new(registry),
            list: Event::new(),
            archive,
        })
    }

    /// Locks the registry. Hold it only around core calls, never across I/O. When
    /// the guard goes and the job list changed meanwhile, the list's streams are
    /// woken.
    pub fn lock(&self) -> RegistryGuard<'_> {
        // A panic while holding the lock leaves the core's state as consistent as
        // any single core call does; keep serving rather than poison every request.
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        RegistryGuard {
            seq: guard.list_version(),
            guard,
            list: &self.list,
        }
    }

    /// A listener for the next change to the job list: take it before looking at
    /// the feed, so that nothing recorded in between is missed.
    #[must_use]
    pub fn listen_list(&self) -> EventListener {
        self.list.listen()
    }

    /// Job `id`'s slot, found once under the registry lock; `None` if the registry
    /// does not hold it (never created, or dropped by retention).
    #[must_use]
    pub fn slot(&self, id: JobId) -> Option<Arc<JobSlot>> {
        self.lock().cell(id)
    }

    /// Wakes everything waiting on job `id`.
    pub fn notify(&self, id: JobId) {
        if let Some(slot) = self.slot(id) {
            slot.notify();
        }
    }

    /// Counts what a stream wrote (for `/metrics`), without the registry lock.
    pub fn record_sent(&self, events: u64, bytes: u64) {
        self.sent.add(events, bytes);
    }

    /// Deletes the files of jobs the registry dropped by retention.
    pub fn remove_expired(&self) {
        loop {
            let Some(id) = self.lock().poll_expired() else {
                break;
            };
            if let Some(archive) = &self.archive {
                if let Err(e) = archive.remove_job(&id.to_string()) {
                    log(&format!("job {id}: could not remove its archive: {e}"));
                }
            }
        }
    }
}

/// The registry, locked ([`Shared::lock`]); wakes the job list's streams on
/// release if the list moved.
#[derive(Debug)]
pub struct RegistryGuard<'a> {
    guard: MutexGuard<'a, SharedRegistry>,
    seq: u64,
    list: &'a Event,
}

impl Deref for RegistryGuard<'_> {
    type Target = SharedRegistry;

    fn deref(&self) -> &SharedRegistry {
        &self.guard
    }
}

impl DerefMut for RegistryGuard<'_> {
    fn deref_mut(&mut self) -> &mut SharedRegistry {
        &mut self.guard
    }
}

impl Drop for RegistryGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: a stream takes its listener before it locks, so it
        // either sees the change or gets this wake-up.
        if self.guard.list_version() != self.seq {
            self.list.notify(usize::MAX);
        }
    }
}

/// Writes one log line to stderr (the server's log), in one `write` (`eprintln!`
/// makes one per piece of its format), so lines from threads never interleave.
pub fn log(line: &str) {
    use std::io::Write as _;
    let line = format!("spout: {line}\n");
    // A log line that cannot be written has nowhere else to go.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// What [`JobIo::drain`] saw that the runtime must act on itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Stop reading the pipes.
    pub stop_reading: bool,
    /// The job is over: end the driver.
    pub finished: bool,
}

/// One job's I/O: its archive files and process group, and its slot (found in the
/// registry on first use, then locked alone).
#[derive(Debug)]
pub struct JobIo {
    id: JobId,
    files: Option<JobFiles>,
    pgid: Option<u32>,
    slot: Option<Arc<JobSlot>>,
    /// The state last reported to the registry (for the job list).
    reported: Option<State>,
    /// Whether [`JobIo::drain`] leaves the actions that may block long for
    /// [`JobIo::drain_deferred`] (set by [`JobIo::defer_slow_actions`]).
    defer_slow: bool,
    /// The action a drain stopped at, carried out first by the next
    /// [`JobIo::drain_deferred`].
    deferred: Option<Action>,
}

impl JobIo {
    /// The I/O of a new job: creates its archive files (unless memory-only).
    ///
    /// # Errors
    /// The archive directory's error (full disk, permissions).
    pub fn create(shared: &Shared, id: JobId) -> io::Result<JobIo> {
        let files = match &shared.archive {
            Some(a) => Some(a.create_job(&id.to_string())?),
            None => None,
        };
        Ok(JobIo {
            id,
            files,
            pgid: None,
            slot: None,
            reported: None,
            defer_slow: false,
            deferred: None,
        })
    }

    /// The I/O of a new job, its files created and its record written (the core's
    /// first action), ready before the job's `201` is sent. Without an archive the
    /// job is stopped (`archive_error`) rather than run with nothing saved.
    pub fn record(shared: &Shared, id: JobId, now: Instant) -> JobIo {
        match JobIo::create(shared, id) {
            Ok(mut io) => {
                let _ = io.drain(shared, now);
                io
            }
            Err(e) => {
                log(&format!("job {id}: cannot create its archive: {e}"));
                let mut io = JobIo::without_files(id);
                let _ = io.with_job(shared, now, |job| job.handle_archive_failed(now));
                io
            }
        }
    }

    /// The I/O of a job that has no archive files (memory mode, or the archive
    /// could not be written).
    #[must_use]
    pub fn without_files(id: JobId) -> JobIo {
        JobIo {
            id,
            files: None,
            pgid: None,
            slot: None,
            reported: None,
            defer_slow: false,
            deferred: None,
        }
    }

    /// The I/O of a job restored from the archive, its files reopened for appending
    /// (a job that was running gets its final event written through them).
    #[must_use]
    pub fn reopened(id: JobId, files: JobFiles) -> JobIo {
        JobIo {
            id,
            files: Some(files),
            pgid: None,
            slot: None,
            reported: None,
            defer_slow: false,
            deferred: None,
        }
    }

    /// From now on, [`JobIo::drain`] (and so [`JobIo::output`] and
    /// [`JobIo::with_job`]) may run where blocking is not allowed, an async
    /// executor: it carries out appends, signals and the core's bookkeeping, but
    /// stops at the first action that may block long (a sync, the metadata, which is
    /// synced) and leaves it and everything after it, in order, for
    /// [`JobIo::drain_deferred`], which the caller runs where blocking is allowed
    /// whenever [`JobIo::has_deferred`] says so.
    ///
    /// An append to a file is a copy into the page cache; a sync waits for the disk.
    pub fn defer_slow_actions(&mut self) {
        self.defer_slow = true;
    }

    /// Whether a drain stopped at an action that may block long: call
    /// [`JobIo::drain_deferred`] where blocking is allowed before anything else.
    #[must_use]
    pub fn has_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Carries out the action a drain stopped at, then every action after it
    /// (blocking ones included), as [`JobIo::drain`] does without deferral.
    pub fn drain_deferred(&mut self, shared: &Shared, now: Instant) -> Outcome {
        let defer = std::mem::replace(&mut self.defer_slow, false);
        let outcome = self.drain(shared, now);
        self.defer_slow = defer;
        outcome
    }

    /// The job's process group leader (its pid), once spawned.
    pub fn set_pgid(&mut self, pgid: u32) {
        self.pgid = Some(pgid);
    }

    /// The job's slot: looked up in the registry the first time, kept after.
    /// `None` if the registry does not hold the job.
    pub fn slot(&mut self, shared: &Shared) -> Option<Arc<JobSlot>> {
        if self.slot.is_none() {
            self.slot = shared.slot(self.id);
        }
        self.slot.clone()
    }

    /// Runs `f` on the job under its own lock (not the registry's); `None` if the
    /// registry does not hold the job.
    pub fn peek<R>(&mut self, shared: &Shared, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.slot(shared).map(|slot| f(&mut slot.lock()))
    }

    /// The process wrote `bytes` on `stream`: hand them to the core, keep the taken
    /// part in the raw log, carry out what the job asks.
    pub fn output(
        &mut self,
        shared: &Shared,
        stream: Stream,
        bytes: &[u8],
        now: Instant,
    ) -> Outcome {
        let taken = self
            .peek(shared, |job| job.handle_output(stream, bytes, now))
            .unwrap_or(0);
        if let Some(files) = &mut self.files {
            if let Err(e) = files.append_output(&bytes[..taken]) {
                log(&format!("job {}: raw log write failed: {e}", self.id));
            }
        }
        self.drain(shared, now)
    }

    /// Runs `f` on the job under its lock, then carries out what it asks.
    pub fn with_job(&mut self, shared: &Shared, now: Instant, f: impl FnOnce(&mut Job)) -> Outcome {
        let _ = self.peek(shared, f);
        self.drain(shared, now)
    }

    /// Carries out every action the job asks, in order, then wakes its subscribers.
    /// Only the job's own lock is taken, once per core call, never across a write;
    /// when the job's state changed, the registry is told afterwards (for the job
    /// list), with the job's lock let go. After [`JobIo::defer_slow_actions`] it
    /// stops at the first action that may block long (see there).
    pub fn drain(&mut self, shared: &Shared, now: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(slot) = self.slot(shared) else {
            outcome.finished = true;
            return outcome;
        };
        let state = loop {
            let mut job = slot.lock();
            if self.defer_slow && self.deferred.is_some() {
                // An earlier action waits for a thread that may block: nothing
                // after it runs first.
                break job.state();
            }
            let Some(action) = self.deferred.take().or_else(|| job.poll_action()) else {
                break job.state();
            };
            if self.defer_slow && matches!(action, Action::SaveMeta | Action::Sync) {
                self.deferred = Some(action);
                break job.state();
            }
            drop(job);
            match action {
                Action::Signal(signal) => {
                    if let Some(pgid) = self.pgid {
                        let sig = match signal {
                            Signal::Term => os::Signal::Term,
                            Signal::Kill => os::Signal::Kill,
                        };
                        if let Err(e) = os::signal_group(pgid, sig) {
                            log(&format!(
                                "job {}: signal {signal:?} to group {pgid}: {e}",
                                self.id
                            ));
                        }
                    }
                }
                Action::StopReading => outcome.stop_reading = true,
                Action::Persist { records, upto } => {
                    // Written before the core is told: an event becomes visible
                    // to subscribers only once it is archived.
                    let written = match &mut self.files {
                        Some(files) => files.append_events(&records),
                        None => Ok(()),
                    };
                    let mut job = slot.lock();
                    match written {
                        Ok(()) => job.handle_persisted(upto, now),
                        Err(e) => {
                            // The core stops the job (reason archive_error) and keeps
                            // its log in memory; later appends are not attempted.
                            log(&format!(
                                "job {}: archive write failed, stopping the job: {e}",
                                self.id
                            ));
                            job.handle_archive_failed(now);
                        }
                    }
                }
                Action::SaveMeta => {
                    let meta = slot.lock().meta_json();
                    if let Some(files) = &self.files {
                        if let Err(e) = files.write_meta(&meta) {
                            log(&format!("job {}: metadata write failed: {e}", self.id));
                        }
                    }
                }
                Action::Sync => {
                    if let Some(files) = &mut self.files {
                        if let Err(e) = files.sync() {
                            log(&format!("job {}: sync failed: {e}", self.id));
                        }
                    }
                }
                Action::Finished => outcome.finished = true,
                other => log(&format!("job {}: unknown action {other:?}", self.id)),
            }
        };
        slot.notify();
        if self.reported != Some(state) {
            self.reported = Some(state);
            shared.lock().handle_job_changed(self.id);
        }
        outcome
    }
}
