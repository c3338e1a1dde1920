//! The archive directory on disk: one folder per job holding its framed event file,
//! its raw output and its metadata document. This module only appends, reads,
//! truncates and replaces bytes; their format is `spout_core::archive`'s.
//!
//! Layout under the data dir (default `./spout-data`):
//!
//! ```text
//! jobs/<job-id>/events       framed event records, append-only
//! jobs/<job-id>/output.log   the raw bytes the process wrote (stdout and stderr)
//! jobs/<job-id>/meta.json    the job's metadata, replaced atomically
//! ```
//!
//! Every error names the path it concerns and keeps the OS error's kind, so a caller
//! can still match `NotFound` and a user reads which file failed.

use rustix::io::ReadWriteFlags;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::os::with_context;

const JOBS: &str = "jobs";
const EVENTS: &str = "events";
const OUTPUT: &str = "output.log";
const META: &str = "meta.json";
const META_TMP: &str = "meta.json.tmp";

/// The longest job id accepted; the core's are 22 characters.
pub const MAX_ID_LEN: usize = 64;

/// An opened, writable archive directory.
#[derive(Debug)]
pub struct ArchiveDir {
    root: PathBuf,
    jobs: PathBuf,
    fsync: bool,
}

impl ArchiveDir {
    /// Opens the archive at `root`, creating it and its `jobs/` folder if needed, and
    /// proves it is writable by creating, syncing and removing a probe file, so a
    /// read-only or unusable data dir is reported at start rather than at the first job.
    ///
    /// # Errors
    ///
    /// The OS error, with the path that could not be created or written.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<ArchiveDir> {
        let root = root.into();
        let jobs = root.join(JOBS);
        fs::create_dir_all(&jobs).map_err(|e| path_err(e, "cannot create data dir", &jobs))?;
        let probe = jobs.join(format!(".probe-{}", std::process::id()));
        let written = File::create(&probe)
            .and_then(|mut f| f.write_all(b"spout").and_then(|()| f.sync_all()));
        // Remove the probe whatever happened; a failed write may still have created it.
        let removed = fs::remove_file(&probe);
        let not_writable = |e| {
            let what = format!(
                "data dir {} is not writable (probe {})",
                root.display(),
                probe.display()
            );
            with_context(e, &what)
        };
        written.map_err(not_writable)?;
        removed.map_err(not_writable)?;
        Ok(ArchiveDir {
            root,
            jobs,
            fsync: true,
        })
    }

    /// Whether writes are flushed to stable storage (`fsync`, the default) or left
    /// to the kernel's write-back (config `fsync: false`). Either way every write
    /// is in the kernel before it returns, so it survives a crash of the server;
    /// only a flushed one survives a power loss or a kernel crash.
    #[must_use]
    pub fn with_fsync(mut self, fsync: bool) -> ArchiveDir {
        self.fsync = fsync;
        self
    }

    /// The data dir this archive lives in.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder and empty files of a new job and (with fsync) makes them
    /// durable.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an id that is not 1–64 of `[A-Za-z0-9_-]`; `AlreadyExists`
    /// if the job exists; otherwise the OS error with the path.
    pub fn create_job(&self, id: &str) -> io::Result<JobFiles> {
        let dir = self.job_dir(id)?;
        fs::create_dir(&dir).map_err(|e| path_err(e, "cannot create job dir", &dir))?;
        let files = JobFiles::open_in(dir, true, self.fsync)?;
        if self.fsync {
            // The new names must survive a power loss as well as the bytes later
            // synced into them.
            sync_dir(&files.dir)?;
            sync_dir(&self.jobs)?;
        }
        Ok(files)
    }

    /// Opens an existing job's files to append more (after a restart, to end a job
    /// that was running). Call [`ArchiveDir::truncate_events`] first if its tail was
    /// damaged: [`JobFiles::events_len`] is read here, once.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; `NotFound` if the job or one of its files is
    /// missing; otherwise the OS error with the path.
    pub fn open_job(&self, id: &str) -> io::Result<JobFiles> {
        JobFiles::open_in(self.job_dir(id)?, false, self.fsync)
    }

    /// The ids of the jobs present, in no particular order. Entries that are not
    /// folders with a valid id (temporary files, strays) are skipped.
    ///
    /// # Errors
    ///
    /// The OS error of reading the `jobs/` folder, with its path.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let err = |e| path_err(e, "cannot list jobs in", &self.jobs);
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.jobs).map_err(err)? {
            let entry = entry.map_err(err)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if valid_id(&name) && entry.file_type().map_err(err)?.is_dir() {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// The job's metadata document, as last written by [`JobFiles::write_meta`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; `NotFound` if none was written; otherwise the OS
    /// error with the path.
    pub fn read_meta(&self, id: &str) -> io::Result<Vec<u8>> {
        let path = self.job_dir(id)?.join(META);
        fs::read(&path).map_err(|e| path_err(e, "cannot read", &path))
    }

    /// The whole event file (for a scan at start-up).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; otherwise the OS error with the path.
    pub fn read_events(&self, id: &str) -> io::Result<Vec<u8>> {
        let path = self.job_dir(id)?.join(EVENTS);
        fs::read(&path).map_err(|e| path_err(e, "cannot read", &path))
    }

    /// Opens the event file for positional reads (a subscriber resuming from disk).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; otherwise the OS error with the path.
    pub fn open_events(&self, id: &str) -> io::Result<EventsReader> {
        let path = self.job_dir(id)?.join(EVENTS);
        let file = File::open(&path).map_err(|e| path_err(e, "cannot open", &path))?;
        Ok(EventsReader { file, path })
    }

    /// Opens the raw output for reading from the start (`GET /jobs/{id}/log`).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; otherwise the OS error with the path.
    pub fn open_output(&self, id: &str) -> io::Result<File> {
        let path = self.job_dir(id)?.join(OUTPUT);
        File::open(&path).map_err(|e| path_err(e, "cannot open", &path))
    }

    /// Cuts the event file to its first `len` bytes (the valid prefix a scan found)
    /// and syncs it, so a torn record from a crash is never read again.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id or a `len` beyond the file's end (that would add
    /// zeros, not cut); otherwise the OS error with the path.
    pub fn truncate_events(&self, id: &str, len: u64) -> io::Result<()> {
        let path = self.job_dir(id)?.join(EVENTS);
        let err = |e| path_err(e, "cannot truncate", &path);
        let file = OpenOptions::new().write(true).open(&path).map_err(err)?;
        let current = file.metadata().map_err(err)?.len();
        if len > current {
            return Err(path_err(
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("length {len} is beyond the end ({current} bytes)"),
                ),
                "cannot truncate",
                &path,
            ));
        }
        file.set_len(len).map_err(err)?;
        file.sync_all().map_err(err)
    }

    /// Removes a job's folder and everything in it (retention). A job that is
    /// already gone is not an error.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad id; otherwise the OS error with the path.
    pub fn remove_job(&self, id: &str) -> io::Result<()> {
        let dir = self.job_dir(id)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(path_err(e, "cannot remove", &dir))
            }
            _ => Ok(()),
        }
    }

    fn job_dir(&self, id: &str) -> io::Result<PathBuf> {
        if valid_id(id) {
            Ok(self.jobs.join(id))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid job id {id:?}"),
            ))
        }
    }
}

/// Whether `id` can name a job folder: 1 to [`MAX_ID_LEN`] characters of
/// `[A-Za-z0-9_-]`, so it can never be `.`, `..`, contain a `/` or a NUL, or escape
/// the `jobs/` folder.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One job's files, open for appending. Owned by the job's single writer.
#[derive(Debug)]
pub struct JobFiles {
    dir: PathBuf,
    events: File,
    output: File,
    events_len: u64,
    fsync: bool,
}

impl JobFiles {
    fn open_in(dir: PathBuf, create: bool, fsync: bool) -> io::Result<JobFiles> {
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .append(true)
                .create_new(create)
                .open(&path)
                .map_err(|e| path_err(e, "cannot open", &path))
        };
        let events = open(EVENTS)?;
        let output = open(OUTPUT)?;
        let events_len = events
            .metadata()
            .map_err(|e| path_err(e, "cannot stat", &dir.join(EVENTS)))?
            .len();
        Ok(JobFiles {
            dir,
            events,
            output,
            events_len,
            fsync,
        })
    }

    /// The job's folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends framed records to the event file (not yet synced: see
    /// [`JobFiles::sync`]). A failed append is cut back off, best effort, so the file
    /// stays a whole number of records.
    ///
    /// # Errors
    ///
    /// The OS error with the path (a full disk is `StorageFull`/`Other` per platform).
    pub fn append_events(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.events.write_all(bytes) {
            // If this fails too, the next start-up scan finds and cuts the torn tail.
            let _ = self.events.set_len(self.events_len);
            return Err(path_err(e, "cannot append to", &self.dir.join(EVENTS)));
        }
        self.events_len += bytes.len() as u64;
        Ok(())
    }

    /// Appends raw process output to `output.log`.
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn append_output(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.output
            .write_all(bytes)
            .map_err(|e| path_err(e, "cannot append to", &self.dir.join(OUTPUT)))
    }

    /// Replaces `meta.json` atomically: a reader (or a crash) sees the old document
    /// or the new one, never a mix. Written to a temporary file, renamed over the
    /// old one. With fsync, the temporary file is synced before the rename (else a
    /// power loss could leave the new name on empty contents) and the folder after
    /// it, so the rename itself is durable when this returns.
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn write_meta(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(META_TMP);
        let meta = self.dir.join(META);
        let mut file = File::create(&tmp).map_err(|e| path_err(e, "cannot create", &tmp))?;
        file.write_all(bytes)
            .and_then(|()| if self.fsync { file.sync_all() } else { Ok(()) })
            .map_err(|e| path_err(e, "cannot write", &tmp))?;
        fs::rename(&tmp, &meta).map_err(|e| path_err(e, "cannot replace", &meta))?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (`fdatasync` of both files); does
    /// nothing with fsync off, since appends are in the kernel already and survive a
    /// crash of the server.
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.fsync {
            return Ok(());
        }
        self.events
            .sync_data()
            .map_err(|e| path_err(e, "cannot sync", &self.dir.join(EVENTS)))?;
        self.output
            .sync_data()
            .map_err(|e| path_err(e, "cannot sync", &self.dir.join(OUTPUT)))
    }

    /// Bytes in the event file: where the next record will start.
    #[must_use]
    pub fn events_len(&self) -> u64 {
        self.events_len
    }
}

/// An event file opened for positional reads; many readers may share one, and
/// reads never move a file cursor, so they can run while the writer appends.
#[derive(Debug)]
pub struct EventsReader {
    file: File,
    path: PathBuf,
}

impl EventsReader {
    /// Reads up to `max` bytes starting at `offset`; fewer only at the end of the
    /// file (an empty result means `offset` is at or past the end).
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let filled = self.read_into(offset, max, &mut buf)?;
        buf.truncate(filled);
        Ok(buf)
    }

    /// Like [`EventsReader::read_at`], into `buf`, which a stream keeps from read to
    /// read (it grows to `max` and is not zeroed again): returns how many bytes of
    /// `buf` were read. A fresh zeroed buffer per read cost a quarter of fan-out's
    /// CPU in page faults.
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn read_into(&self, offset: u64, max: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < max {
            buf.resize(max, 0);
        }
        let mut filled = 0;
        while filled < max {
            match self
                .file
                .read_at(&mut buf[filled..max], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(path_err(e, "cannot read", &self.path)),
            }
        }
        Ok(filled)
    }

    /// Like [`EventsReader::read_into`], but only from the page cache: all `max`
    /// bytes at `offset` if the kernel holds every one of them already
    /// (`preadv2` with `RWF_NOWAIT`), so that an async runtime can read on its
    /// executor without ever waiting for a disk (and without a hand-off to a
    /// blocking pool and back for every read of a lagging stream). `None` when
    /// any of it would come from the disk, the read comes short (the end of the
    /// file), or the kernel or file system cannot tell: then read with
    /// [`EventsReader::read_into`] off the executor.
    pub fn read_cached(&self, offset: u64, max: usize, buf: &mut Vec<u8>) -> Option<usize> {
        if buf.len() < max {
            buf.resize(max, 0);
        }
        let mut slices = [io::IoSliceMut::new(&mut buf[..max])];
        match rustix::io::preadv2(&self.file, &mut slices, offset, ReadWriteFlags::NOWAIT) {
            Ok(n) if n == max && max > 0 => Some(n),
            _ => None,
        }
    }

    /// The file's current length.
    ///
    /// # Errors
    ///
    /// The OS error with the path.
    pub fn file_len(&self) -> io::Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| path_err(e, "cannot stat", &self.path))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| path_err(e, "cannot sync dir", dir))
}

fn path_err(e: io::Error, what: &str, path: &Path) -> io::Error {
    with_context(e, &format!("{what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "spout-archive-test-{}-{n}-{name}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const ID: &str = "AbCdEfGhIjKlMnOpQr_-09";

    #[test]
    fn open_creates_the_layout() {
        let tmp = TempDir::new("layout");
        let archive = ArchiveDir::open(tmp.0.join("nested/data")).unwrap();
        assert!(archive.root().join("jobs").is_dir());
        assert_eq!(archive.list().unwrap(), Vec::<String>::new());
        // The probe file is gone.
        assert_eq!(
            fs::read_dir(archive.root().join("jobs")).unwrap().count(),
            0
        );
    }

    #[test]
    fn events_output_and_meta_round_trip() {
        let tmp = TempDir::new("round-trip");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        let mut job = archive.create_job(ID).unwrap();
        job.append_events(b"record one;").unwrap();
        job.append_events(b"record two;").unwrap();
        job.append_output(b"raw \xff bytes\n").unwrap();
        job.write_meta(br#"{"state":"running"}"#).unwrap();
        job.sync().unwrap();
        assert_eq!(job.events_len(), 22);

        assert_eq!(archive.list().unwrap(), vec![ID.to_owned()]);
        assert_eq!(archive.read_events(ID).unwrap(), b"record one;record two;");
        assert_eq!(archive.read_meta(ID).unwrap(), br#"{"state":"running"}"#);
        let mut log = Vec::new();
        archive
            .open_output(ID)
            .unwrap()
            .read_to_end(&mut log)
            .unwrap();
        assert_eq!(log, b"raw \xff bytes\n");

        let reader = archive.open_events(ID).unwrap();
        assert_eq!(reader.file_len().unwrap(), 22);
        assert_eq!(reader.read_at(7, 4).unwrap(), b"one;");
        assert_eq!(reader.read_at(18, 100).unwrap(), b"two;");
        assert_eq!(reader.read_at(22, 100).unwrap(), b"");
        assert_eq!(reader.read_at(500, 100).unwrap(), b"");
        // The reader sees appends made after it was opened.
        job.append_events(b"three;").unwrap();
        assert_eq!(reader.read_at(22, 100).unwrap(), b"three;");

        // From the page cache: the whole range or nothing, never a short read
        // (a file system that cannot tell gives nothing, and the caller reads
        // with read_into).
        let mut buf = Vec::new();
        if let Some(n) = reader.read_cached(7, 4, &mut buf) {
            assert_eq!(&buf[..n], b"one;");
        }
        assert_eq!(reader.read_cached(22, 100, &mut buf), None);
        assert_eq!(reader.read_cached(500, 100, &mut buf), None);
        assert_eq!(reader.read_cached(0, 0, &mut buf), None);
    }

    #[test]
    fn without_fsync_the_files_read_back_the_same() {
        // What fsync adds (surviving a power loss) cannot be seen from a test; what
        // it must not change can: the same bytes under the same names.
        let tmp = TempDir::new("no-fsync");
        let archive = ArchiveDir::open(&tmp.0).unwrap().with_fsync(false);
        let mut job = archive.create_job(ID).unwrap();
        job.write_meta(b"first").unwrap();
        job.append_events(b"record;").unwrap();
        job.sync().unwrap();
        job.write_meta(b"second").unwrap();
        assert_eq!(archive.read_meta(ID).unwrap(), b"second");
        assert_eq!(archive.read_events(ID).unwrap(), b"record;");
        let reopened = archive.open_job(ID).unwrap();
        assert_eq!(reopened.events_len(), 7);
        assert!(!reopened.dir().join(META_TMP).exists());
    }

    #[test]
    fn meta_replacement_leaves_no_temp_file_and_is_whole() {
        let tmp = TempDir::new("meta");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        let job = archive.create_job(ID).unwrap();
        assert_eq!(
            archive.read_meta(ID).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        job.write_meta(b"a much longer first document").unwrap();
        job.write_meta(b"short").unwrap();
        assert_eq!(archive.read_meta(ID).unwrap(), b"short");
        let mut names: Vec<String> = fs::read_dir(job.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["events", "meta.json", "output.log"]);
    }

    #[test]
    fn truncate_cuts_a_damaged_tail_and_reopen_appends_after_it() {
        let tmp = TempDir::new("truncate");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        let mut job = archive.create_job(ID).unwrap();
        job.append_events(b"good;torn-rec").unwrap();
        drop(job);

        archive.truncate_events(ID, 5).unwrap();
        assert_eq!(archive.read_events(ID).unwrap(), b"good;");
        let err = archive.truncate_events(ID, 6).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let mut job = archive.open_job(ID).unwrap();
        assert_eq!(job.events_len(), 5);
        job.append_events(b"exit;").unwrap();
        assert_eq!(archive.read_events(ID).unwrap(), b"good;exit;");
    }

    #[test]
    fn create_twice_and_open_missing_fail() {
        let tmp = TempDir::new("twice");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        archive.create_job(ID).unwrap();
        let err = archive.create_job(ID).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(ID), "{err}");
        let err = archive.open_job("missing").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn bad_ids_never_reach_the_file_system() {
        let tmp = TempDir::new("ids");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        let long = "a".repeat(MAX_ID_LEN + 1);
        for id in [
            "", ".", "..", "../x", "a/b", "a\0b", "é", "a.b", " a", &long,
        ] {
            let err = archive.create_job(id).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{id:?}");
            assert_eq!(
                archive.read_events(id).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(
                archive.remove_job(id).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        assert!(valid_id(&"a".repeat(MAX_ID_LEN)));
    }

    #[test]
    fn list_skips_strays_and_remove_is_idempotent() {
        let tmp = TempDir::new("list");
        let archive = ArchiveDir::open(&tmp.0).unwrap();
        archive.create_job("one").unwrap();
        archive.create_job("two").unwrap();
        fs::write(tmp.0.join("jobs/file-not-dir"), b"x").unwrap();
        fs::create_dir(tmp.0.join("jobs/bad.name")).unwrap();
        let mut ids = archive.list().unwrap();
        ids.sort();
        assert_eq!(ids, ["one", "two"]);

        archive.remove_job("one").unwrap();
        archive.remove_job("one").unwrap();
        assert_eq!(archive.list().unwrap(), ["two"]);
    }

    #[test]
    fn unwritable_data_dir_is_reported_with_its_path() {
        let tmp = TempDir::new("readonly");
        // A regular file where the data dir should be: fails for root too.
        fs::create_dir_all(&tmp.0).unwrap();
        let blocker = tmp.0.join("data");
        fs::write(&blocker, b"not a dir").unwrap();
        let err = ArchiveDir::open(&blocker).unwrap_err();
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn read_only_data_dir_is_reported_with_its_path() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().is_root() {
            // Root ignores permission bits, so a read-only dir is writable for it.
            eprintln!("skipped: running as root");
            return;
        }
        let tmp = TempDir::new("readonly-perm");
        let data = tmp.0.join("data");
        fs::create_dir_all(data.join("jobs")).unwrap();
        fs::set_permissions(data.join("jobs"), fs::Permissions::from_mode(0o555)).unwrap();
        let err = ArchiveDir::open(&data).unwrap_err();
        fs::set_permissions(data.join("jobs"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("not writable"), "{err}");
        assert!(err.to_string().contains(&*data.to_string_lossy()), "{err}");
    }
}
