//! A job's lifecycle: one execution of a command, from spawn to its final `exit`
//! event — its states, the deadlines they imply, and the actions it asks of a
//! runtime (signal the process group, persist records, stop reading).
//!
//! | state             | input                                  | next        | what happens |
//! |-------------------|----------------------------------------|-------------|--------------|
//! | `Starting`        | `handle_spawned`                       | `Running`   | `start` event; timeout and unwatched deadlines armed |
//! | `Starting`        | `handle_spawn_failed`                  | `Failed`    | `start` (pid null), `error`, `exit` |
//! | `Starting`        | `handle_stop`                          | `Starting`  | reason kept; SIGTERM as soon as it is spawned |
//! | `Running`         | `handle_stop`, timeout, output limit, unwatched | `Stopping` | SIGTERM to the group; SIGKILL deadline (grace) |
//! | `Stopping`        | grace deadline                         | `Stopping`  | SIGKILL to the group |
//! | `Running`/`Stopping` | `handle_exit`                       | (draining)  | pipes are read while output flows; 1 s with no pipe input (or 10 s in all) ends the drain |
//! | draining          | both EOF, or drain deadline            | final state | pending text flushed, `exit` event, stop reading (and SIGKILL to the group if a grandchild still holds a pipe) |
//!
//! The final state is `Exited` when the process ended by itself, otherwise the
//! state named by the reason the server ended it. After a restart, a job that was
//! running is `Lost` (`reason: "server_restart"`).
//!
//! The `exit` event comes from the child's status, never from pipe EOF: a grandchild
//! that inherited the pipes can keep them open long after the child is gone.
//!
//! The drain's rule for runtimes: "quiet" is measured in pipe inputs the runtime
//! hands over (`handle_output`, `handle_eof`), so a runtime hands a due deadline to
//! [`Job::handle_timeout`] only when it has just found nothing to read in the pipes,
//! or right after the input it took in that step. A child that has exited has
//! written everything into its pipes; read that way, all of it is in the log before
//! the `exit` event, however late a starved runtime gets to look.

use crate::assembler::{Assembler, AssemblerConfig};
use crate::event::{self, EndReason, ExitData, ExitStatus, StartData, Stream};
use crate::id::{EventId, JobId};
use crate::log::{Kind, Log, Persistence};
use crate::sse;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The state of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Created; the process is being spawned.
    Starting,
    /// The process runs.
    Running,
    /// The server asked the process group to stop and waits for it.
    Stopping,
    /// The process ended by itself.
    Exited,
    /// The process could not be started.
    Failed,
    /// Stopped by `DELETE`.
    Stopped,
    /// Stopped at its timeout.
    TimedOut,
    /// Stopped for writing more than its output limit.
    OutputLimit,
    /// Stopped because nobody watched it.
    Unwatched,
    /// Stopped by a server shutdown.
    Shutdown,
    /// It was running when the server died.
    Lost,
    /// Stopped because its archive could not be written.
    ArchiveError,
}

impl State {
    /// The state's wire name (`"running"`, `"timed_out"`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Failed => "failed",
            State::Stopped => "stopped",
            State::TimedOut => "timed_out",
            State::OutputLimit => "output_limit",
            State::Unwatched => "unwatched",
            State::Shutdown => "shutdown",
            State::Lost => "lost",
            State::ArchiveError => "archive_error",
        }
    }

    /// Whether the job is over (its `exit` event exists).
    #[must_use]
    pub fn is_final(self) -> bool {
        !matches!(self, State::Starting | State::Running | State::Stopping)
    }

    fn from_name(name: &str) -> Option<State> {
        ALL_STATES.into_iter().find(|s| s.as_str() == name)
    }

    fn for_reason(reason: Option<EndReason>) -> State {
        match reason {
            None => State::Exited,
            Some(EndReason::Timeout) => State::TimedOut,
            Some(EndReason::Stopped) => State::Stopped,
            Some(EndReason::OutputLimit) => State::OutputLimit,
            Some(EndReason::Unwatched) => State::Unwatched,
            Some(EndReason::ServerShutdown) => State::Shutdown,
            Some(EndReason::ServerRestart | EndReason::ServerLost) => State::Lost,
            Some(EndReason::ArchiveError) => State::ArchiveError,
        }
    }
}

/// Every state, for parsing and metrics.
pub const ALL_STATES: [State; 12] = [
    State::Starting,
    State::Running,
    State::Stopping,
    State::Exited,
    State::Failed,
    State::Stopped,
    State::TimedOut,
    State::OutputLimit,
    State::Unwatched,
    State::Shutdown,
    State::Lost,
    State::ArchiveError,
];

/// A signal the runtime sends to the job's whole process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

/// What a job asks of its runtime. Drain with [`Job::poll_action`] after every
/// `handle_*` call, in order.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send a signal to the job's process group.
    Signal(Signal),
    /// Stop reading the process's pipes and drop them.
    StopReading,
    /// Append these framed records to the job's archive file, then call
    /// [`Job::handle_persisted`] with `upto`.
    Persist {
        /// Framed records ([`crate::archive`]).
        records: Vec<u8>,
        /// The id of the last record in `records`.
        upto: EventId,
    },
    /// Write [`Job::meta_json`] as the job's metadata file (atomically).
    SaveMeta,
    /// Flush the job's archive files to stable storage.
    Sync,
    /// The job is over and everything about it is saved.
    Finished,
}

/// The per-job rules, from the command's config and the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSettings {
    /// Stop the job after this long.
    pub timeout: Option<Duration>,
    /// Stop the job once it has written more than this many bytes (both streams).
    pub max_output_bytes: Option<u64>,
    /// Stop the job when nobody has watched it for this long.
    pub stop_when_unwatched: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// After the child exits, how long its pipes may stay quiet (no output and no
    /// end of file handed over) before the job ends without their EOF (a grandchild
    /// that inherited them may hold them open forever). Output that keeps flowing is
    /// read, up to [`JobSettings::drain_max`].
    pub drain: Duration,
    /// After the child exits, the most time its pipes are read for.
    pub drain_max: Duration,
    /// How output becomes events.
    pub assembler: AssemblerConfig,
    /// Archive or memory only.
    pub persistence: Persistence,
    /// The memory window of the log, in bytes.
    pub window_bytes: usize,
    /// How often the archive is synced while the job runs.
    pub sync_interval: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            timeout: None,
            max_output_bytes: None,
            stop_when_unwatched: None,
            stop_grace: Duration::from_secs(5),
            drain: Duration::from_secs(1),
            drain_max: Duration::from_secs(10),
            assembler: AssemblerConfig::default(),
            persistence: Persistence::Archive,
            window_bytes: 1 << 20,
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// The `exit` part of a job's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitSummary {
    /// The exit code, or null.
    pub code: Option<i32>,
    /// The signal name, or null.
    pub signal: Option<String>,
    /// Why the server ended the job, if it did.
    pub reason: Option<String>,
    /// From start to exit.
    pub duration_ms: u64,
}

/// A job's status document: `GET /jobs/{id}`, and the archive's `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The job id.
    pub id: String,
    /// The command's name.
    pub command: String,
    /// The argv run.
    pub argv: Vec<String>,
    /// The state's name.
    pub state: String,
    /// The process id, once spawned.
    pub pid: Option<u32>,
    /// When the job was created (RFC 3339).
    pub created_at: String,
    /// When the process started.
    pub started_at: Option<String>,
    /// When the job ended.
    pub ended_at: Option<String>,
    /// How it ended.
    pub exit: Option<ExitSummary>,
    /// The last event id subscribers can see.
    pub last_event_id: u64,
    /// Raw stdout bytes taken.
    pub stdout_bytes: u64,
    /// Raw stderr bytes taken.
    pub stderr_bytes: u64,
    /// Wall-clock milliseconds since the epoch, for restore arithmetic.
    pub created_ms: u64,
    /// Start time in milliseconds since the epoch.
    pub started_ms: Option<u64>,
}

/// What identifies a job's process group on the OS beyond its number, recorded in
/// the job's metadata so that after a crash the next server can end the group it
/// left behind without ever signalling a later, unrelated group that reuses the
/// number. The runtime reads it (on Linux from `/proc/PID/stat`) right after the
/// spawn and reports it with [`Job::handle_process_group`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessGroup {
    /// The group id: the leader's pid (the job's child leads its own group).
    pub pgid: u32,
    /// The leader's start time in clock ticks after boot (field 22 of
    /// `/proc/PID/stat`): a reused pid has a later one.
    pub start_ticks: u64,
    /// The session the leader was started in (the server's).
    pub session: u32,
    /// The boot the start time counts from (`/proc/sys/kernel/random/boot_id`):
    /// after a reboot nothing of the group can be left.
    pub boot_id: String,
}

/// The metadata file as written: the status document and, once spawned, the
/// process group. Kept out of [`Status`] so `GET /jobs/{id}` does not show it.
#[derive(Serialize)]
struct MetaOut<'a> {
    #[serde(flatten)]
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_group: Option<&'a ProcessGroup>,
}

/// The process group part of a metadata file, read on its own: a record without
/// one (written before the spawn, or by an older server) or with a damaged one
/// still restores.
#[derive(Deserialize)]
struct MetaGroup {
    #[serde(default)]
    process_group: Option<ProcessGroup>,
}

/// Why an archived job could not be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The metadata file is not a status document.
    BadMeta(String),
    /// The metadata names another job.
    WrongId,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::BadMeta(e) => write!(f, "unreadable job metadata: {e}"),
            RestoreError::WrongId => f.write_str("job metadata names another job"),
        }
    }
}

impl std::error::Error for RestoreError {}

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms_to_rfc3339(ms: u64) -> String {
    event::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// One execution of a command. See the module docs for its states.
#[derive(Debug)]
pub struct Job {
    id: JobId,
    command: String,
    argv: Vec<String>,
    settings: JobSettings,
    state: State,
    log: Log,
    stdout: Assembler,
    stderr: Assembler,
    pid: Option<u32>,
    group: Option<ProcessGroup>,
    /// Restored as `Lost`: its recorded group may have outlived the server.
    orphaned: bool,
    created_ms: u64,
    started_ms: Option<u64>,
    started: Option<Instant>,
    exit: Option<ExitSummary>,
    exit_status: Option<ExitStatus>,
    stop_reason: Option<EndReason>,
    timeout_at: Option<Instant>,
    kill_at: Option<Instant>,
    unwatched_at: Option<Instant>,
    drain_at: Option<Instant>,
    drain_cap: Option<Instant>,
    sync_at: Option<Instant>,
    eof: [bool; 2],
    taken: u64,
    watchers: usize,
    actions: VecDeque<Action>,
    finish_queued: bool,
    /// Another server of the cluster owns it: its log is fed from Redis
    /// ([`Job::handle_remote_entry`]), it has no process here.
    remote: bool,
}

impl Job {
    /// A new job about to be spawned (`Starting`). An archived job asks first for
    /// its record ([`Action::SaveMeta`]): the runtime writes it before it answers
    /// `201`, so whatever the server acknowledges, a restart finds.
    #[must_use]
    pub fn new(
        id: JobId,
        command: String,
        argv: Vec<String>,
        settings: JobSettings,
        wall: SystemTime,
    ) -> Job {
        Job {
            id,
            command,
            argv,
            settings,
            state: State::Starting,
            log: Log::new(settings.persistence, settings.window_bytes),
            stdout: Assembler::new(settings.assembler),
            stderr: Assembler::new(settings.assembler),
            pid: None,
            group: None,
            orphaned: false,
            created_ms: wall_ms(wall),
            started_ms: None,
            started: None,
            exit: None,
            exit_status: None,
            stop_reason: None,
            timeout_at: None,
            kill_at: None,
            unwatched_at: None,
            drain_at: None,
            drain_cap: None,
            sync_at: None,
            eof: [false; 2],
            taken: 0,
            watchers: 0,
            actions: if settings.persistence == Persistence::Archive {
                VecDeque::from([Action::SaveMeta])
            } else {
                VecDeque::new()
            },
            finish_queued: false,
            remote: false,
        }
    }

    /// A job another server of the cluster owns (docs/cluster.md), known here from
    /// its record in Redis: `Running` until its `exit` entry arrives, memory-only,
    /// no process and no deadlines. Its log is fed by [`Job::handle_remote_entry`]
    /// with the owner's ids, so every server serves the same ids.
    #[must_use]
    pub fn remote(id: JobId, command: String, started_ms: u64, window_bytes: usize) -> Job {
        let settings = JobSettings {
            persistence: Persistence::Stream,
            window_bytes,
            ..JobSettings::default()
        };
        let mut job = Job::new(id, command, Vec::new(), settings, UNIX_EPOCH);
        job.created_ms = started_ms;
        job.started_ms = Some(started_ms);
        job.state = State::Running;
        job.eof = [true; 2];
        job.remote = true;
        job
    }

    /// Whether another server owns the job ([`Job::remote`]).
    #[must_use]
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// An entry of a remote job's stream, read from Redis: appended at its own id.
    /// An id already held is ignored (a reader that read twice); an id past the next
    /// one leaves the ids between out of the window, so subscribers get a `gap`
    /// (the stream was trimmed by its cap). The `start` entry gives the argv and
    /// pid; the `exit` entry ends the job in the state its reason names.
    pub fn handle_remote_entry(&mut self, entry: &crate::cluster::StreamEntry) {
        if !self.remote || self.state.is_final() || entry.id < self.log.next_id() {
            return;
        }
        let kind = match entry.kind.as_str() {
            "stdout" | "stderr" => {
                let text = serde_json::from_str::<RemoteText>(&entry.data)
                    .map_or(0, |t| t.text.len() as u64);
                let stream = if entry.kind == "stdout" {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                self.log.count_bytes(stream, text);
                Kind::Output
            }
            "exit" => Kind::Exit,
            "start" => {
                if let Ok(start) = serde_json::from_str::<RemoteStart>(&entry.data) {
                    self.argv = start.argv;
                    self.pid = start.pid;
                }
                Kind::Other
            }
            _ => Kind::Other,
        };
        self.log.append_at(entry.id, kind, |_, buf| {
            crate::cluster::encode_entry(entry, buf);
        });
        if kind == Kind::Exit {
            let exit: Option<RemoteExit> = serde_json::from_str(&entry.data).ok();
            let exit = exit.unwrap_or_default();
            let (so, se) = self.log.byte_counts();
            self.log
                .count_bytes(Stream::Stdout, exit.stdout_bytes.saturating_sub(so));
            self.log
                .count_bytes(Stream::Stderr, exit.stderr_bytes.saturating_sub(se));
            self.state = State::for_reason(exit.reason.as_deref().and_then(EndReason::from_name));
            self.exit = Some(ExitSummary {
                code: exit.code,
                signal: exit.signal,
                reason: exit.reason,
                duration_ms: exit.duration_ms,
            });
        }
    }

    // ---- getters ----

    /// The job's id.
    #[must_use]
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The command's name.
    #[must_use]
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The argv to run.
    #[must_use]
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The process id, once spawned.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The process group recorded for the job, if any (see [`ProcessGroup`]).
    #[must_use]
    pub fn process_group(&self) -> Option<&ProcessGroup> {
        self.group.as_ref()
    }

    /// The process group a restored job may have left running: `Some` only for a
    /// job that was running when the earlier server died (restored as `Lost`) and
    /// whose group was recorded. The runtime kills it, but only after checking
    /// the OS still knows it as the same group (its leader's start time, its
    /// session): a pid number is reused once its group is gone.
    #[must_use]
    pub fn orphaned_group(&self) -> Option<&ProcessGroup> {
        self.group.as_ref().filter(|_| self.orphaned)
    }

    /// The event log, for subscribers.
    #[must_use]
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A gzip subscriber arrived: the log compresses new events once for all of
    /// them ([`Log::enable_gzip`]).
    pub fn enable_gzip(&mut self) {
        self.log.enable_gzip();
    }

    /// The creation time in milliseconds since the epoch.
    #[must_use]
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// The status document (`GET /jobs/{id}`).
    #[must_use]
    pub fn status(&self) -> Status {
        let (stdout_bytes, stderr_bytes) = self.log.byte_counts();
        let ended_ms = match (&self.exit, self.started_ms) {
            (Some(e), Some(s)) => Some(s + e.duration_ms),
            (Some(_), None) => Some(self.created_ms),
            _ => None,
        };
        Status {
            id: self.id.to_string(),
            command: self.command.clone(),
            argv: self.argv.clone(),
            state: self.state.as_str().to_string(),
            pid: self.pid,
            created_at: ms_to_rfc3339(self.created_ms),
            started_at: self.started_ms.map(ms_to_rfc3339),
            ended_at: ended_ms.map(ms_to_rfc3339),
            exit: self.exit.clone(),
            last_event_id: self.log.last_visible(),
            stdout_bytes,
            stderr_bytes,
            created_ms: self.created_ms,
            started_ms: self.started_ms,
        }
    }

    /// The metadata file's bytes: the status document as JSON, plus the job's
    /// `process_group` once recorded.
    #[must_use]
    pub fn meta_json(&self) -> Vec<u8> {
        let meta = MetaOut {
            status: self.status(),
            process_group: self.group.as_ref(),
        };
        // invariant: Status and ProcessGroup are strings, numbers and options, which
        // always serialize.
        serde_json::to_vec_pretty(&meta).expect("status serializes")
    }

    // ---- inputs ----

    /// The process was spawned with `pid` at `now` (`wall` is the same instant on
    /// the wall clock).
    pub fn handle_spawned(&mut self, pid: u32, now: Instant, wall: SystemTime) {
        if self.state != State::Starting {
            return;
        }
        self.pid = Some(pid);
        self.started = Some(now);
        self.started_ms = Some(wall_ms(wall));
        self.state = State::Running;
        self.append_start(Some(pid), wall);
        self.timeout_at = self.settings.timeout.map(|t| now + t);
        self.arm_unwatched(now);
        if self.log.persistence() == Persistence::Archive {
            self.actions.push_back(Action::SaveMeta);
        }
        if let Some(reason) = self.stop_reason.take() {
            self.handle_stop(reason, now);
        }
    }

    /// The OS identity of the job's process group (read by the runtime right after
    /// the spawn). Report it before [`Job::handle_spawned`], so the record saved
    /// then holds it; reported later, it asks for the record to be saved again.
    pub fn handle_process_group(&mut self, group: ProcessGroup) {
        if self.state.is_final() {
            return;
        }
        self.group = Some(group);
        if self.state != State::Starting && self.log.persistence() == Persistence::Archive {
            self.actions.push_back(Action::SaveMeta);
        }
    }

    /// The process could not be started: `start` (pid null), `error`, `exit`.
    pub fn handle_spawn_failed(&mut self, message: &str, now: Instant, wall: SystemTime) {
        if self.state != State::Starting {
            return;
        }
        self.started = Some(now);
        self.started_ms = Some(wall_ms(wall));
        self.append_start(None, wall);
        self.log
            .append(Kind::Other, |id, buf| event::encode_error(id, message, buf));
        self.stop_reason = None;
        self.eof = [true; 2];
        self.finish(State::Failed, ExitStatus::default(), now);
    }

    /// The process wrote `bytes` on `stream`. Returns how many bytes were taken:
    /// fewer than given once the output limit is reached (the rest is dropped, and
    /// the job is stopped with `reason: "output_limit"`).
    pub fn handle_output(&mut self, stream: Stream, bytes: &[u8], now: Instant) -> usize {
        if self.state.is_final() || self.eof[idx(stream)] {
            return 0;
        }
        let take = match self.settings.max_output_bytes {
            Some(max) => usize::try_from(max.saturating_sub(self.taken))
                .unwrap_or(usize::MAX)
                .min(bytes.len()),
            None => bytes.len(),
        };
        self.taken += take as u64;
        self.log.count_bytes(stream, take as u64);
        self.pipe_input(now);
        self.assembler(stream).handle_bytes(&bytes[..take], now);
        self.drain_text(stream, now);
        if take < bytes.len() {
            self.handle_stop(EndReason::OutputLimit, now);
        }
        take
    }

    /// `stream` reached end of file.
    pub fn handle_eof(&mut self, stream: Stream, now: Instant) {
        if self.eof[idx(stream)] || self.state.is_final() {
            return;
        }
        self.eof[idx(stream)] = true;
        self.pipe_input(now);
        self.assembler(stream).handle_eof();
        self.drain_text(stream, now);
        self.maybe_finish(now);
    }

    /// The child process ended with `status` (from `wait`, not from pipe EOF).
    pub fn handle_exit(&mut self, status: ExitStatus, now: Instant) {
        if self.exit_status.is_some() || self.state.is_final() {
            return;
        }
        self.exit_status = Some(status);
        self.kill_at = None;
        self.drain_cap = Some(now + self.settings.drain_max);
        self.drain_at = Some((now + self.settings.drain).min(now + self.settings.drain_max));
        self.maybe_finish(now);
    }

    /// Ask the job to stop for `reason` (`DELETE`, shutdown, or a limit): SIGTERM
    /// to the group now, SIGKILL after the grace.
    pub fn handle_stop(&mut self, reason: EndReason, now: Instant) {
        if self.remote {
            // Its owner stops it (the runtime forwards the request there).
            return;
        }
        match self.state {
            State::Starting => self.stop_reason = Some(reason),
            State::Running => {
                self.state = State::Stopping;
                self.stop_reason = Some(reason);
                if self.exit_status.is_none() {
                    self.actions.push_back(Action::Signal(Signal::Term));
                    self.kill_at = Some(now + self.settings.stop_grace);
                }
                self.timeout_at = None;
                self.unwatched_at = None;
            }
            _ => {}
        }
    }

    /// How many subscribers watch the job now (for `stop_when_unwatched_s`).
    pub fn handle_watchers(&mut self, count: usize, now: Instant) {
        let was = self.watchers;
        self.watchers = count;
        if count > 0 {
            self.unwatched_at = None;
        } else if was > 0 || self.unwatched_at.is_none() {
            self.arm_unwatched(now);
        }
    }

    /// The runtime wrote the archive records up to `upto`: they become visible.
    pub fn handle_persisted(&mut self, upto: EventId, now: Instant) {
        self.log.handle_persisted(upto);
        if self.sync_at.is_none() && !self.state.is_final() {
            self.sync_at = Some(now + self.settings.sync_interval);
        }
    }

    /// The runtime could not write the archive (`Persist` failed): the job is
    /// stopped with `reason: "archive_error"`, and its log keeps going in memory
    /// only, so nothing is dropped silently (see [`Log::handle_archive_failed`]).
    pub fn handle_archive_failed(&mut self, now: Instant) {
        if self.log.persistence() != Persistence::Archive {
            return;
        }
        self.log.handle_archive_failed();
        self.handle_stop(EndReason::ArchiveError, now);
    }

    /// Time passed: fire every deadline at or before `now`.
    ///
    /// The drain's end among them: call this at a due deadline only after finding
    /// nothing to read in the pipes, or right after handing the pipe input taken in
    /// the same step (see the module docs).
    pub fn handle_timeout(&mut self, now: Instant) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.drain_text(stream, now);
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.timeout_at = None;
            self.handle_stop(EndReason::Timeout, now);
        }
        if self.unwatched_at.is_some_and(|t| now >= t) {
            self.unwatched_at = None;
            if self.watchers == 0 {
                self.handle_stop(EndReason::Unwatched, now);
            }
        }
        if self.kill_at.is_some_and(|t| now >= t) {
            self.kill_at = None;
            self.actions.push_back(Action::Signal(Signal::Kill));
        }
        if self.sync_at.is_some_and(|t| now >= t) {
            self.sync_at = None;
            self.actions.push_back(Action::Sync);
        }
        if self.drain_at.is_some_and(|t| now >= t) {
            self.drain_at = None;
            self.eof = [true; 2];
            // A grandchild still holds a pipe: the group must not outlive the job.
            self.actions.push_back(Action::Signal(Signal::Kill));
            for stream in [Stream::Stdout, Stream::Stderr] {
                self.assembler(stream).handle_eof();
                self.drain_text(stream, now);
            }
            self.maybe_finish(now);
        }
    }

    // ---- outputs ----

    /// The next thing the runtime must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if let Some((records, upto)) = self.log.poll_persist() {
            return Some(Action::Persist { records, upto });
        }
        if self.state.is_final() && !self.finish_queued {
            self.finish_queued = true;
            // The metadata is saved even after an archive failure: it is small, and
            // may still fit where the events did not.
            if self.settings.persistence == Persistence::Archive {
                self.actions.extend([Action::SaveMeta, Action::Sync]);
            }
            self.actions.push_back(Action::Finished);
            return self.actions.pop_front();
        }
        None
    }

    /// The earliest deadline, if any: call [`Job::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.stdout.poll_timeout(),
            self.stderr.poll_timeout(),
            self.timeout_at,
            self.kill_at,
            self.unwatched_at,
            self.drain_at,
            self.sync_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- restore ----

    /// Rebuilds a job from its archive after a restart: `meta` is its metadata
    /// file, `records` its archive records (already checked by
    /// [`crate::archive::scan`]). A job whose log has no `exit` was running when the
    /// server died: it gets one with `reason: "server_restart"`, to be persisted
    /// (drain [`Job::poll_action`]).
    ///
    /// # Errors
    /// [`RestoreError`] when the metadata is unreadable or names another job.
    pub fn restore<'a>(
        id: JobId,
        meta: &[u8],
        records: impl IntoIterator<Item = crate::archive::Record<'a>>,
        settings: JobSettings,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Job, RestoreError> {
        let status: Status =
            serde_json::from_slice(meta).map_err(|e| RestoreError::BadMeta(e.to_string()))?;
        if status.id != id.to_string() {
            return Err(RestoreError::WrongId);
        }
        let mut settings = settings;
        settings.persistence = Persistence::Archive;
        let mut job = Job::new(
            id,
            status.command.clone(),
            status.argv.clone(),
            settings,
            wall,
        );
        // The record is already saved: nothing of `Job::new`'s queue applies.
        job.actions.clear();
        job.created_ms = status.created_ms;
        job.started_ms = status.started_ms;
        job.pid = status.pid;
        job.group = serde_json::from_slice::<MetaGroup>(meta)
            .ok()
            .and_then(|m| m.process_group);
        let mut counts = (0u64, 0u64);
        let mut exit: Option<ExitSummary> = None;
        let log = Log::restore(
            settings.window_bytes,
            records.into_iter().map(|r| {
                let kind = wire_kind(r.wire);
                match kind {
                    WireKind::Stdout(n) => counts.0 += n,
                    WireKind::Stderr(n) => counts.1 += n,
                    WireKind::Exit => exit = exit_summary(r.wire),
                    WireKind::Other => {}
                }
                (r, kind.log_kind())
            }),
        );
        job.log = log;
        // Raw counts are in the metadata when it was saved at the end; otherwise the
        // text lengths are the best record left (equal unless bytes were invalid UTF-8).
        let (so, se) = if status.stdout_bytes + status.stderr_bytes > 0 {
            (status.stdout_bytes, status.stderr_bytes)
        } else {
            counts
        };
        job.log.count_bytes(Stream::Stdout, so);
        job.log.count_bytes(Stream::Stderr, se);
        job.eof = [true; 2];
        job.finish_queued = true;
        if let Some(summary) = exit {
            job.state = State::from_name(&status.state)
                .filter(|s| s.is_final())
                .unwrap_or_else(|| {
                    State::for_reason(summary.reason.as_deref().and_then(EndReason::from_name))
                });
            job.exit = Some(summary);
            return Ok(job);
        }
        // It was running when the server died.
        job.finish_queued = false;
        job.orphaned = true;
        if job.log.last_visible() == 0 {
            job.append_start(
                job.pid,
                UNIX_EPOCH + Duration::from_millis(job.started_ms.unwrap_or(job.created_ms)),
            );
        }
        let started_ms = job.started_ms.unwrap_or(job.created_ms);
        job.stop_reason = Some(EndReason::ServerRestart);
        let duration = Duration::from_millis(wall_ms(wall).saturating_sub(started_ms));
        job.started = now.checked_sub(duration).or(Some(now));
        job.finish(State::Lost, ExitStatus::default(), now);
        Ok(job)
    }

    // ---- internals ----

    fn assembler(&mut self, stream: Stream) -> &mut Assembler {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn append_start(&mut self, pid: Option<u32>, wall: SystemTime) {
        let started_at = event::rfc3339(wall);
        let data = StartData {
            command: &self.command,
            argv: &self.argv,
            pid,
            started_at: &started_at,
        };
        self.log
            .append(Kind::Other, |id, buf| event::encode_start(id, &data, buf));
    }

    fn arm_unwatched(&mut self, now: Instant) {
        if self.state == State::Running {
            self.unwatched_at = self.settings.stop_when_unwatched.map(|d| now + d);
        }
    }

    fn drain_text(&mut self, stream: Stream, now: Instant) {
        while let Some(text) = self.assembler(stream).poll_text(now) {
            self.log.append(Kind::Output, |id, buf| {
                sse::encode_output_event(id, stream, &text, buf)
            });
        }
    }

    /// The runtime handed pipe input (output, or one pipe's end) at `now`: while
    /// draining after the exit, the pipes are not quiet, so the drain goes on, within
    /// its cap. An end of file counts too: a runtime that took one pipe's end in a
    /// late step has not looked at the other pipe yet, and the exited child's last
    /// bytes may be waiting there.
    fn pipe_input(&mut self, now: Instant) {
        if let (Some(_), Some(cap)) = (self.drain_at, self.drain_cap) {
            self.drain_at = Some((now + self.settings.drain).min(cap));
        }
    }

    fn maybe_finish(&mut self, now: Instant) {
        if let (Some(status), [true, true]) = (self.exit_status, self.eof) {
            let state = State::for_reason(self.stop_reason);
            self.finish(state, status, now);
        }
    }

    fn finish(&mut self, state: State, status: ExitStatus, now: Instant) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.assembler(stream).handle_eof();
            self.drain_text(stream, now);
        }
        let duration_ms = self.started.map_or(0, |s| {
            u64::try_from(now.saturating_duration_since(s).as_millis()).unwrap_or(u64::MAX)
        });
        let (stdout_bytes, stderr_bytes) = self.log.byte_counts();
        let data = ExitData {
            code: status.code,
            signal: status.signal.map(event::signal_name),
            duration_ms,
            stdout_bytes,
            stderr_bytes,
            reason: self.stop_reason,
        };
        self.log
            .append(Kind::Exit, |id, buf| event::encode_exit(id, &data, buf));
        self.exit = Some(ExitSummary {
            code: data.code,
            signal: data.signal.clone(),
            reason: data.reason.map(|r| r.as_str().to_string()),
            duration_ms,
        });
        self.state = state;
        self.actions.push_back(Action::StopReading);
        self.timeout_at = None;
        self.kill_at = None;
        self.unwatched_at = None;
        self.drain_at = None;
        self.drain_cap = None;
        self.sync_at = None;
    }
}

fn idx(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// What an archived event is, read from its wire bytes.
enum WireKind {
    Stdout(u64),
    Stderr(u64),
    Exit,
    Other,
}

impl WireKind {
    fn log_kind(&self) -> Kind {
        match self {
            WireKind::Stdout(_) | WireKind::Stderr(_) => Kind::Output,
            WireKind::Exit => Kind::Exit,
            WireKind::Other => Kind::Other,
        }
    }
}

fn decode_one(wire: &[u8]) -> Option<sse::Dispatched> {
    let mut d = sse::Decoder::new();
    d.feed(wire);
    std::iter::from_fn(|| d.poll()).find_map(|item| match item {
        sse::Item::Event(e) => Some(e),
        _ => None,
    })
}

fn wire_kind(wire: &[u8]) -> WireKind {
    let Some(ev) = decode_one(wire) else {
        return WireKind::Other;
    };
    let text_len = || {
        serde_json::from_str::<serde_json::Value>(&ev.data)
            .ok()
            .and_then(|v| {
                v.get("text")
                    .and_then(|t| t.as_str())
                    .map(|t| t.len() as u64)
            })
            .unwrap_or(0)
    };
    match ev.event_type.as_str() {
        "stdout" => WireKind::Stdout(text_len()),
        "stderr" => WireKind::Stderr(text_len()),
        "exit" => WireKind::Exit,
        _ => WireKind::Other,
    }
}

/// The part of a remote `stdout`/`stderr` entry's data a job counts.
#[derive(Deserialize)]
struct RemoteText {
    text: String,
}

/// The part of a remote `start` entry's data a job keeps.
#[derive(Deserialize)]
struct RemoteStart {
    #[serde(default)]
    argv: Vec<String>,
    pid: Option<u32>,
}

/// A remote `exit` entry's data.
#[derive(Deserialize, Default)]
struct RemoteExit {
    code: Option<i32>,
    signal: Option<String>,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    stdout_bytes: u64,
    #[serde(default)]
    stderr_bytes: u64,
    reason: Option<String>,
}

fn exit_summary(wire: &[u8]) -> Option<ExitSummary> {
    #[derive(Deserialize)]
    struct Exit {
        code: Option<i32>,
        signal: Option<String>,
        duration_ms: u64,
        reason: Option<String>,
    }
    let ev = decode_one(wire)?;
    let e: Exit = serde_json::from_str(&ev.data).ok()?;
    Some(ExitSummary {
        code: e.code,
        signal: e.signal,
        reason: e.reason,
        duration_ms: e.duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{ms, t0, wall0, Sim};

    fn group() -> ProcessGroup {
        ProcessGroup {
            pgid: 4242,
            start_ticks: 987_654,
            session: 77,
            boot_id: "8d1c5a2e-0000-4000-8000-000000000001".to_owned(),
        }
    }

    fn meta_value(job: &Job) -> serde_json::Value {
        serde_json::from_slice(&job.meta_json()).unwrap()
    }

    fn restore(meta: &[u8], archive: &[u8], now: Instant) -> Job {
        let scan = crate::archive::scan(archive, EventId::FIRST);
        let id = JobId::from_random(*b"spout-sim-job-id");
        Job::restore(id, meta, scan.records, JobSettings::default(), now, wall0()).unwrap()
    }

    #[test]
    fn a_new_archived_job_asks_for_its_record_first() {
        let id = JobId::from_random([7; 16]);
        let mut job = Job::new(
            id,
            "c".into(),
            vec!["c".into()],
            JobSettings::default(),
            wall0(),
        );
        assert_eq!(job.poll_action(), Some(Action::SaveMeta));
        assert_eq!(job.poll_action(), None);
        assert_eq!(meta_value(&job)["state"], "starting");

        let memory = JobSettings {
            persistence: Persistence::Memory,
            ..JobSettings::default()
        };
        let mut job = Job::new(id, "c".into(), vec!["c".into()], memory, wall0());
        assert_eq!(job.poll_action(), None, "a memory job has no record");
    }

    #[test]
    fn the_process_group_is_in_the_record_not_in_the_status() {
        let mut s = Sim::new(JobSettings::default(), t0());
        s.drive();
        let saves = s.meta_saves;
        s.job.handle_process_group(group());
        s.drive();
        assert_eq!(
            s.meta_saves, saves,
            "reported before the spawn: saved with it"
        );
        s.spawn();
        assert_eq!(s.meta_saves, saves + 1);
        let meta = meta_value(&s.job);
        assert_eq!(meta["process_group"]["pgid"], 4242);
        assert_eq!(meta["process_group"]["start_ticks"], 987_654);
        assert_eq!(meta["process_group"]["session"], 77);
        let status = serde_json::to_value(s.job.status()).unwrap();
        assert!(status.get("process_group").is_none(), "{status}");

        // Reported after the spawn, it is saved again.
        let mut late = Sim::new(JobSettings::default(), t0());
        late.spawn();
        let saves = late.meta_saves;
        late.job.handle_process_group(group());
        late.drive();
        assert_eq!(late.meta_saves, saves + 1);
    }

    #[test]
    fn a_job_running_at_the_crash_names_its_group_to_kill() {
        let mut s = Sim::new(JobSettings::default(), t0());
        s.job.handle_process_group(group());
        s.spawn();
        s.out(Stream::Stdout, b"one\n");
        let job = restore(&s.job.meta_json(), &s.archive, s.now + ms(100));
        assert_eq!(job.state(), State::Lost);
        assert_eq!(job.orphaned_group(), Some(&group()));
        // Its new record keeps the group, and a second restore finds it final.
        let mut job = job;
        let mut archive = s.archive.clone();
        while let Some(a) = job.poll_action() {
            if let Action::Persist { records, upto } = a {
                archive.extend_from_slice(&records);
                job.handle_persisted(upto, s.now);
            }
        }
        let again = restore(&job.meta_json(), &archive, s.now + ms(200));
        assert_eq!(again.state(), State::Lost);
        assert_eq!(again.process_group(), Some(&group()));
        assert_eq!(again.orphaned_group(), None, "a final job left nothing");
    }

    #[test]
    fn a_finished_job_names_no_group_to_kill() {
        let mut s = Sim::new(JobSettings::default(), t0());
        s.job.handle_process_group(group());
        s.spawn();
        s.exit(Some(0), None);
        let job = restore(&s.job.meta_json(), &s.archive, s.now);
        assert_eq!(job.state(), State::Exited);
        assert_eq!(job.orphaned_group(), None);
    }

    #[test]
    fn a_record_from_before_the_spawn_restores_as_lost() {
        // The crash came after the 201 and before the spawn: a record in state
        // `starting`, no events, no group.
        let s = Sim::new(JobSettings::default(), t0());
        let mut job = restore(&s.job.meta_json(), &[], s.now + ms(5));
        assert_eq!(job.state(), State::Lost);
        assert_eq!(job.orphaned_group(), None);
        let mut persisted = Vec::new();
        while let Some(a) = job.poll_action() {
            if let Action::Persist { records, upto } = a {
                persisted.extend_from_slice(&records);
                job.handle_persisted(upto, s.now);
            }
        }
        let scan = crate::archive::scan(&persisted, EventId::FIRST);
        assert_eq!(scan.records.len(), 2, "start and exit");
        assert!(job.log().is_complete());
    }

    #[test]
    fn a_damaged_or_missing_group_does_not_stop_a_restore() {
        let mut s = Sim::new(JobSettings::default(), t0());
        s.spawn();
        let mut meta = meta_value(&s.job);
        for bad in [
            serde_json::json!({"pgid": "x"}),
            serde_json::json!(null),
            serde_json::json!(42),
        ] {
            meta["process_group"] = bad;
            let bytes = serde_json::to_vec(&meta).unwrap();
            let job = restore(&bytes, &s.archive, s.now);
            assert_eq!(job.state(), State::Lost);
            assert_eq!(job.orphaned_group(), None);
        }
    }
}
