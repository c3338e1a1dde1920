//! Start-up recovery: every job of the archive rebuilt into the registry, damaged
//! tails cut back to the last whole event, and jobs that were running when the
//! server stopped given their final `exit` (`reason: "server_restart"`), after
//! their process groups, if still running, are killed. A job folder without a
//! record (a crash before its `201`) is removed.
//!
//! Partial state a crash can leave, and what becomes of it:
//!
//! | found | why | done |
//! | --- | --- | --- |
//! | folder, no `meta.json` | crash between creating the folder and its record: no `201` was sent | folder removed, one log line |
//! | `meta.json.tmp` beside `meta.json` | crash during a record update | ignored; the next update replaces it |
//! | `events` ending in a torn record | crash during an append | cut back to the last whole record, one log line |
//! | record without an `exit` event | the job was running | its recorded group killed if still ours, then `exit` with `server_restart` |

use crate::archive::ArchiveDir;
use crate::driver::{log, JobIo, Shared};
use crate::os::{self, Orphan};
use spout_core::job::Job;
use spout_core::registry::Inputs;
use spout_core::{archive, EventId, JobId};
use std::io;
use std::time::{Instant, SystemTime};

/// Loads every job of the archive into the registry (start-up): damaged tails are
/// cut with a warning; jobs that were running get their `server_restart` exit.
///
/// # Errors
/// Listing the archive directory failed.
pub fn restore(
    shared: &Shared,
    now: Instant,
    wall: SystemTime,
    random: [u8; 16],
) -> io::Result<usize> {
    let Some(archive) = &shared.archive else {
        return Ok(0);
    };
    let mut restored = 0;
    for name in archive.list()? {
        let Some(id) = JobId::parse(&name) else {
            log(&format!("archive: skipping {name:?}: not a job id"));
            continue;
        };
        let Some(meta) = read_record(archive, id, &name)? else {
            continue;
        };
        let events = archive.read_events(&name)?;
        let scan = archive::scan(&events, EventId::FIRST);
        if let Some(damage) = scan.damage {
            log(&format!(
                "archive: job {id}: {damage} at byte {} of {}; cutting the damaged tail",
                scan.valid_len,
                events.len()
            ));
            archive.truncate_events(&name, scan.valid_len as u64)?;
        }
        let settings = shared.lock().job_settings(None);
        let job = match Job::restore(id, &meta, scan.records.iter().copied(), settings, now, wall) {
            Ok(job) => job,
            Err(e) => {
                log(&format!("archive: skipping job {id}: {e}"));
                continue;
            }
        };
        let lost = !job.log().is_complete();
        end_orphaned_group(&job);
        shared
            .lock()
            .insert_restored(job, Inputs { now, wall, random });
        // A job that was running gets its final event written now.
        let mut io = JobIo::reopened(id, archive.open_job(&name)?);
        let _ = io.drain(shared, now);
        if lost {
            log(&format!(
                "archive: job {id} was running when the server stopped: ended with server_restart"
            ));
        }
        restored += 1;
    }
    shared.remove_expired();
    Ok(restored)
}

/// The job's record, or `None` when there is none to restore: a folder without a
/// record is a job that was never acknowledged (the record is written before the
/// `201`), so it is removed; an unreadable record is skipped and kept for a person
/// to look at.
///
/// # Errors
/// Removing the folder failed.
fn read_record(archive: &ArchiveDir, id: JobId, name: &str) -> io::Result<Option<Vec<u8>>> {
    match archive.read_meta(name) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log(&format!(
                "archive: removing job {id}: it has no record (the server stopped before acknowledging it)"
            ));
            archive.remove_job(name)?;
            Ok(None)
        }
        Err(e) => {
            log(&format!("archive: skipping job {id}: {e}"));
            Ok(None)
        }
    }
}

/// Kills what is left of the process group of a job that was running when the
/// earlier server died, if the OS still knows the group as the recorded one (see
/// `os::end_orphaned_group` for why the check never hits a reused pid). Logs what
/// it did; a failure is logged and start-up goes on.
fn end_orphaned_group(job: &Job) {
    let Some(group) = job.orphaned_group() else {
        return;
    };
    let (id, pgid) = (job.id(), group.pgid);
    match os::end_orphaned_group(group) {
        Ok(Orphan::Killed { leader, members }) => log(&format!(
            "archive: job {id}: killed its process group {pgid} left from the earlier run \
             ({members} processes{})",
            if leader {
                ""
            } else {
                ", its leader already gone"
            }
        )),
        Ok(Orphan::Gone) => {}
        Ok(Orphan::NotOurs(why)) => log(&format!(
            "archive: job {id}: process group {pgid} left alone: {why}"
        )),
        Err(e) => log(&format!(
            "archive: job {id}: cannot check process group {pgid}, left alone: {e}"
        )),
    }
}
