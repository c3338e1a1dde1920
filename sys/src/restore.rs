//! Start-up recovery: every job of the archive rebuilt into the registry, damaged
//! tails cut back to the last whole event, and jobs that were running when the
//! server stopped given their final `exit` (`reason: "server_restart"`).

use crate::driver::{log, JobIo, Shared};
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
        let meta = match archive.read_meta(&name) {
            Ok(m) => m,
            Err(e) => {
                log(&format!("archive: skipping job {id}: {e}"));
                continue;
            }
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
