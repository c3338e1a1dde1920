//! The part of driving jobs that is the same in both runtimes and needs no async:
//! the shared state, and carrying out a job's actions (archive writes, signals,
//! metadata).
//!
//! A runtime adds only how it waits (async or blocking) and how it reads pipes.
//! Every decision is the core's: this file only does what a [`Job`] asks.

use crate::archive::{ArchiveDir, JobFiles};
use crate::os;
use event_listener::Event;
use spout_core::event::Stream;
use spout_core::job::{Action, Job, Signal};
use spout_core::registry::Registry;
use spout_core::JobId;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The server's state: the core's registry behind one lock, the archive, and a
/// notifier per job that wakes its subscribers when it appends.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<Registry>,
    wakers: Mutex<HashMap<JobId, Arc<Event>>>,
    /// The archive directory; `None` with `--memory`.
    pub archive: Option<ArchiveDir>,
}

impl Shared {
    /// Shared state around `registry`.
    #[must_use]
    pub fn new(registry: Registry, archive: Option<ArchiveDir>) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(registry),
            wakers: Mutex::new(HashMap::new()),
            archive,
        })
    }

    /// Locks the registry. Hold it only around core calls, never across I/O.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves the core's state as consistent as
        // any single core call does; keep serving rather than poison every request.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The notifier of job `id` (created on first use).
    #[must_use]
    pub fn waker(&self, id: JobId) -> Arc<Event> {
        let mut wakers = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers
            .entry(id)
            .or_insert_with(|| Arc::new(Event::new()))
            .clone()
    }

    /// Wakes everything waiting on job `id`.
    pub fn notify(&self, id: JobId) {
        let waker = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        if let Some(w) = waker {
            w.notify(usize::MAX);
        }
    }

    /// Deletes the files of jobs the registry dropped by retention.
    pub fn remove_expired(&self) {
        loop {
            let Some(id) = self.lock().poll_expired() else {
                break;
            };
            self.wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            if let Some(archive) = &self.archive {
                if let Err(e) = archive.remove_job(&id.to_string()) {
                    log(&format!("job {id}: could not remove its archive: {e}"));
                }
            }
        }
    }
}

/// Writes one log line to stderr (the server's log).
pub fn log(line: &str) {
    eprintln!("spout: {line}");
}

/// What [`JobIo::drain`] saw that the runtime must act on itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Stop reading the pipes.
    pub stop_reading: bool,
    /// The job is over: end the driver.
    pub finished: bool,
}

/// One job's I/O: its archive files and process group.
#[derive(Debug)]
pub struct JobIo {
    id: JobId,
    files: Option<JobFiles>,
    pgid: Option<u32>,
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
        })
    }

    /// The I/O of a job that has no archive files (memory mode, or the archive
    /// could not be written).
    #[must_use]
    pub fn without_files(id: JobId) -> JobIo {
        JobIo {
            id,
            files: None,
            pgid: None,
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
        }
    }

    /// The job's process group leader (its pid), once spawned.
    pub fn set_pgid(&mut self, pgid: u32) {
        self.pgid = Some(pgid);
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
        let taken = match shared.lock().job_mut(self.id) {
            Some(job) => job.handle_output(stream, bytes, now),
            None => 0,
        };
        if let Some(files) = &mut self.files {
            if let Err(e) = files.append_output(&bytes[..taken]) {
                log(&format!("job {}: raw log write failed: {e}", self.id));
            }
        }
        self.drain(shared, now)
    }

    /// Runs `f` on the job under the lock, then carries out what it asks.
    pub fn with_job(&mut self, shared: &Shared, now: Instant, f: impl FnOnce(&mut Job)) -> Outcome {
        if let Some(job) = shared.lock().job_mut(self.id) {
            f(job);
        }
        self.drain(shared, now)
    }

    /// Carries out every action the job asks, in order, then wakes its subscribers.
    pub fn drain(&mut self, shared: &Shared, now: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        loop {
            let action = match shared.lock().job_mut(self.id) {
                Some(job) => job.poll_action(),
                None => {
                    outcome.finished = true;
                    break;
                }
            };
            let Some(action) = action else { break };
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
                    let written = match &mut self.files {
                        Some(files) => files.append_events(&records),
                        None => Ok(()),
                    };
                    let mut reg = shared.lock();
                    let Some(job) = reg.job_mut(self.id) else {
                        continue;
                    };
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
                    let meta = shared.lock().job(self.id).map(Job::meta_json);
                    if let (Some(files), Some(meta)) = (&self.files, meta) {
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
        }
        shared.notify(self.id);
        outcome
    }
}
