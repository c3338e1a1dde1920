//! The events of a job's log (`start`, `stdout`, `stderr`, `error`, `exit`, `gap`,
//! and the optional id-less `heartbeat`), their JSON data, and their wire bytes.
//!
//! Each event is encoded once, when it is appended to the log, into its final SSE
//! bytes; subscribers only copy those bytes.

use crate::id::EventId;
use crate::sse::{self, EventType};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which output stream of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The SSE event type for this stream's text.
    #[must_use]
    pub fn event_name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How a process ended, as the OS reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExitStatus {
    /// The exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
}

/// Why the server ended a job (absent when the process ended by itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The command's `timeout_s` passed.
    Timeout,
    /// Someone sent `DELETE /jobs/{id}`.
    Stopped,
    /// The command wrote more than its `max_output_bytes`.
    OutputLimit,
    /// Nobody watched the job for `stop_when_unwatched_s`.
    Unwatched,
    /// The server was shut down while the job ran.
    ServerShutdown,
    /// The server died while the job ran; found on restart.
    ServerRestart,
    /// The archive could not be written (disk full, read-only, I/O error).
    ArchiveError,
    /// Its owner stopped renewing its lease in Redis (killed, or cut off), and
    /// another server of the cluster ended it (docs/cluster.md).
    ServerLost,
}

impl EndReason {
    /// The wire name (`"timeout"`, `"stopped"`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Stopped => "stopped",
            EndReason::OutputLimit => "output_limit",
            EndReason::Unwatched => "unwatched",
            EndReason::ServerShutdown => "server_shutdown",
            EndReason::ServerRestart => "server_restart",
            EndReason::ArchiveError => "archive_error",
            EndReason::ServerLost => "server_lost",
        }
    }

    /// The reason named by its wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<EndReason> {
        [
            EndReason::Timeout,
            EndReason::Stopped,
            EndReason::OutputLimit,
            EndReason::Unwatched,
            EndReason::ServerShutdown,
            EndReason::ServerRestart,
            EndReason::ArchiveError,
            EndReason::ServerLost,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

impl Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Linux signal names by number (1–31); what `exit.signal` reports.
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of a signal number (`15` → `"SIGTERM"`; real-time and unknown
/// signals → `"SIG<n>"`).
#[must_use]
pub fn signal_name(signal: i32) -> String {
    usize::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| SIGNALS.get(i))
        .map_or_else(|| format!("SIG{signal}"), |s| (*s).to_string())
}

/// The number of a signal name (`"SIGTERM"` → 15), the inverse of [`signal_name`].
#[must_use]
pub fn signal_number(name: &str) -> Option<i32> {
    if let Some(i) = SIGNALS.iter().position(|s| *s == name) {
        return i32::try_from(i + 1).ok();
    }
    name.strip_prefix("SIG")?.parse().ok().filter(|n| *n > 0)
}

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds
/// (`2026-11-22T10:00:00.000Z`); times before 1970 are written as the epoch.
#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for the whole u64 range we
    // can meet here.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The data of a `start` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartData<'a> {
    /// The command's name in the config.
    pub command: &'a str,
    /// The argv that was run.
    pub argv: &'a [String],
    /// The process id, or null when it could not be started.
    pub pid: Option<u32>,
    /// When it started (RFC 3339).
    pub started_at: &'a str,
}

/// The data of an `exit` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitData {
    /// The exit code, or null.
    pub code: Option<i32>,
    /// The signal's name (`"SIGTERM"`), or null.
    pub signal: Option<String>,
    /// From start to exit.
    pub duration_ms: u64,
    /// Bytes of stdout taken from the process (see `docs/protocol.md`).
    pub stdout_bytes: u64,
    /// Bytes of stderr taken from the process.
    pub stderr_bytes: u64,
    /// Why the server ended the job, where it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

/// The data of a `heartbeat` event (sent without an id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeartbeatData {
    /// The job's last event id so far.
    pub last_id: u64,
    /// Bytes of stdout taken so far.
    pub stdout_bytes: u64,
    /// Bytes of stderr taken so far.
    pub stderr_bytes: u64,
}

/// Event type names, validated at compile time.
pub mod types {
    use super::EventType;
    /// `start`
    pub const START: EventType<'static> = EventType::from_static("start");
    /// `error`
    pub const ERROR: EventType<'static> = EventType::from_static("error");
    /// `exit`
    pub const EXIT: EventType<'static> = EventType::from_static("exit");
    /// `gap`
    pub const GAP: EventType<'static> = EventType::from_static("gap");
    /// `heartbeat`
    pub const HEARTBEAT: EventType<'static> = EventType::from_static("heartbeat");
}

fn encode_serialized(
    id: Option<EventId>,
    event: EventType<'_>,
    data: &impl Serialize,
    buf: &mut Vec<u8>,
) {
    // invariant: these data types are plain structs of strings and numbers, which
    // serde_json always serializes.
    let json = serde_json::to_string(data).expect("event data serializes");
    sse::encode_json_event(id, event, &json, buf);
}

/// Writes a `start` event.
pub fn encode_start(id: EventId, data: &StartData<'_>, buf: &mut Vec<u8>) {
    encode_serialized(Some(id), types::START, data, buf);
}

/// Writes an `error` event (`{"message": …}`).
pub fn encode_error(id: EventId, message: &str, buf: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        message: &'a str,
    }
    encode_serialized(Some(id), types::ERROR, &ErrorData { message }, buf);
}

/// Writes an `exit` event.
pub fn encode_exit(id: EventId, data: &ExitData, buf: &mut Vec<u8>) {
    encode_serialized(Some(id), types::EXIT, data, buf);
}

/// Writes a `gap` event naming the lost ids `from..=to`; it carries `id: to` so a
/// client resumes after it.
pub fn encode_gap(from: EventId, to: EventId, buf: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct GapData {
        from: u64,
        to: u64,
    }
    encode_serialized(
        Some(to),
        types::GAP,
        &GapData {
            from: from.get(),
            to: to.get(),
        },
        buf,
    );
}

/// Writes a `heartbeat` event, without an id so resume is unaffected.
pub fn encode_heartbeat(data: &HeartbeatData, buf: &mut Vec<u8>) {
    encode_serialized(None, types::HEARTBEAT, data, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_795_341_600, 123)), "2026-11-22T10:00:00.123Z");
        assert_eq!(rfc3339(at(4_102_444_799, 999)), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn signal_names_round_trip() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "SIG40");
        assert_eq!(signal_name(-3), "SIG-3");
        for n in 1..=64 {
            assert_eq!(signal_number(&signal_name(n)), Some(n));
        }
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("SIG0"), None);
    }

    #[test]
    fn end_reasons_round_trip() {
        for name in [
            "timeout",
            "stopped",
            "output_limit",
            "unwatched",
            "server_shutdown",
            "server_restart",
        ] {
            assert_eq!(
                EndReason::from_name(name).map(EndReason::as_str),
                Some(name)
            );
        }
    }
}
