//! The live job list: a bounded log of changes to the set of jobs (created, a new
//! state, removed by retention) and the cursor of one `GET /jobs` event stream
//! into it ([`ListSubscriber`]).
//!
//! Rules:
//! 1. The registry records a [`Change`] whenever a job is created, changes state
//!    (`running`, `stopping`, `exited` for every final state) or is dropped by
//!    retention. Each change gets the next sequence number; the last
//!    [`FEED_LEN`] are kept in memory, nothing is archived.
//! 2. A change's SSE id is `<epoch>-<seq>`: `epoch` is 8 hex digits drawn from the
//!    server's randomness once per run, so an id from before a restart is never
//!    mistaken for one of this run.
//! 3. A stream first writes `retry:` (with the same ±20 % jitter as job streams),
//!    then either a `snapshot` (the whole list, newest first, the same documents as
//!    `GET /jobs`) or, when `Last-Event-ID` names a change this run still holds,
//!    exactly the changes after it. A `snapshot` always replaces the client's list;
//!    its `reason` says why one came: `start` (no id), `unknown` (an id this run
//!    never gave: another run, malformed, or from the future), `expired` (older
//!    than the changes held, or the stream fell that far behind).
//! 4. Each change is a `job` event whose data says which change it is:
//!    `{"change":"created"|"running"|"stopping"|"exited","id":…,"job":{status}}` or
//!    `{"change":"removed","id":…}`.
//! 5. Heartbeats as on job streams: after `heartbeat` of silence a `:` comment, or
//!    an id-less `heartbeat` event (`{"last_id":"<epoch>-<seq>"}`). A list stream
//!    never ends by itself.

use crate::job::{State, Status};
use crate::sse::{self, EventType, IdValue};
use crate::subscriber::{jittered_retry, Next, StreamSettings};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many changes the feed keeps for resuming streams. Each is one job's status
/// document (a few hundred bytes), so the log costs at most a few hundred KiB.
pub const FEED_LEN: usize = 1024;

const SNAPSHOT: EventType<'static> = EventType::from_static("snapshot");
const JOB: EventType<'static> = EventType::from_static("job");
const HEARTBEAT: EventType<'static> = EventType::from_static("heartbeat");

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A new job (also a job restored from the archive at start-up).
    Created,
    /// The process runs.
    Running,
    /// The server asked the process to stop.
    Stopping,
    /// The job is over (any final state: its `exit` says how).
    Exited,
    /// Retention dropped the job.
    Removed,
}

impl ChangeKind {
    /// The wire name (`"created"`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Running => "running",
            ChangeKind::Stopping => "stopping",
            ChangeKind::Exited => "exited",
            ChangeKind::Removed => "removed",
        }
    }

    /// The change a job in `state` reports (`None` while it is still starting:
    /// its `created` said so).
    #[must_use]
    pub fn for_state(state: State) -> Option<ChangeKind> {
        match state {
            State::Starting => None,
            State::Running => Some(ChangeKind::Running),
            State::Stopping => Some(ChangeKind::Stopping),
            _ => Some(ChangeKind::Exited),
        }
    }
}

/// One recorded change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number (from 1).
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The job's id.
    pub id: String,
    /// The job's status document after the change (`None` for `removed`).
    pub job: Option<Status>,
}

#[derive(Serialize)]
struct ChangeData<'a> {
    change: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a Status>,
}

#[derive(Serialize)]
struct SnapshotData<'a> {
    reason: &'static str,
    jobs: &'a [Status],
}

/// Why a stream gets a `snapshot` rather than the changes after its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotReason {
    /// No `Last-Event-ID`: a new stream.
    Start,
    /// An id this run never gave (another run, malformed, or beyond the last).
    Unknown,
    /// The changes after the id are no longer held.
    Expired,
}

impl SnapshotReason {
    /// The wire name, the snapshot's `reason`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotReason::Start => "start",
            SnapshotReason::Unknown => "unknown",
            SnapshotReason::Expired => "expired",
        }
    }
}

/// Where a stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Send the changes from this sequence number on.
    From(u64),
    /// Send a snapshot first.
    Snapshot(SnapshotReason),
}

/// The bounded change log. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct Feed {
    epoch: Option<u32>,
    /// The last [`FEED_LEN`] changes, oldest first.
    changes: VecDeque<Change>,
    /// The last sequence number given (0: none yet).
    last: u64,
    cap: usize,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    /// An empty feed keeping [`FEED_LEN`] changes.
    #[must_use]
    pub fn new() -> Feed {
        Feed::with_capacity(FEED_LEN)
    }

    /// An empty feed keeping `cap` changes (at least one).
    #[must_use]
    pub fn with_capacity(cap: usize) -> Feed {
        Feed {
            epoch: None,
            changes: VecDeque::new(),
            last: 0,
            cap: cap.max(1),
        }
    }

    // ---- getters ----

    /// The last sequence number given (0 before the first change).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The oldest sequence number still held (`last_seq() + 1` when none is).
    #[must_use]
    pub fn first_held(&self) -> u64 {
        self.changes.front().map_or(self.last + 1, |c| c.seq)
    }

    /// The change `seq`, if still held.
    #[must_use]
    pub fn get(&self, seq: u64) -> Option<&Change> {
        let first = self.changes.front()?.seq;
        let at = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.changes.get(at)
    }

    /// The SSE id of sequence number `seq` in this run.
    #[must_use]
    pub fn id_text(&self, seq: u64) -> String {
        format!("{:08x}-{seq}", self.epoch.unwrap_or(0))
    }

    /// Where a stream with `last_event_id` starts (rule 3).
    #[must_use]
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let Some(text) = last_event_id else {
            return Resume::Snapshot(SnapshotReason::Start);
        };
        let Some(seq) = self.parse_id(text) else {
            return Resume::Snapshot(SnapshotReason::Unknown);
        };
        if seq > self.last {
            return Resume::Snapshot(SnapshotReason::Unknown);
        }
        if seq + 1 < self.first_held() {
            return Resume::Snapshot(SnapshotReason::Expired);
        }
        Resume::From(seq + 1)
    }

    /// The sequence number in `text` if it is an id of this run.
    fn parse_id(&self, text: &str) -> Option<u64> {
        let (epoch, seq) = text.split_once('-')?;
        let ok = |s: &str, hex: bool| {
            !s.is_empty()
                && s.len() <= 20
                && s.bytes().all(|b| {
                    if hex {
                        b.is_ascii_hexdigit()
                    } else {
                        b.is_ascii_digit()
                    }
                })
        };
        if !ok(epoch, true) || !ok(seq, false) || epoch.len() != 8 {
            return None;
        }
        if u32::from_str_radix(epoch, 16).ok()? != self.epoch.unwrap_or(0) {
            return None;
        }
        seq.parse().ok()
    }

    // ---- mutators ----

    /// Draws this run's epoch from `random`, once: later calls, and calls after the
    /// first change, change nothing.
    pub fn seed(&mut self, random: [u8; 16]) {
        if self.epoch.is_none() && self.last == 0 {
            self.epoch = Some(u32::from_le_bytes([
                random[4], random[5], random[6], random[7],
            ]));
        }
    }

    /// Records a change and returns its sequence number.
    pub fn record(&mut self, kind: ChangeKind, id: String, job: Option<Status>) -> u64 {
        if self.epoch.is_none() {
            self.epoch = Some(0);
        }
        self.last += 1;
        if self.changes.len() >= self.cap {
            self.changes.pop_front();
        }
        self.changes.push_back(Change {
            seq: self.last,
            kind,
            id,
            job,
        });
        self.last
    }

    // ---- encoding ----

    fn encode_change(&self, change: &Change, buf: &mut Vec<u8>) {
        let data = ChangeData {
            change: change.kind.as_str(),
            id: &change.id,
            job: change.job.as_ref(),
        };
        // invariant: a struct of strings, numbers and options always serializes.
        let json = serde_json::to_string(&data).expect("change data serializes");
        self.encode_with_id(change.seq, JOB, &json, buf);
    }

    fn encode_with_id(&self, seq: u64, event: EventType<'_>, json: &str, buf: &mut Vec<u8>) {
        let id = self.id_text(seq);
        // invariant: hex digits, a dash and decimal digits are a valid id.
        let id = IdValue::new(&id).expect("feed ids have no CR, LF or NUL");
        sse::encode_event(Some(id), Some(event), json, buf);
    }
}

/// One `GET /jobs` event stream's cursor into the [`Feed`]. See the module docs.
#[derive(Clone, Debug)]
pub struct ListSubscriber {
    /// The next sequence number to send.
    next: u64,
    snapshot: Option<SnapshotReason>,
    preamble: Option<u64>,
    last_write: Instant,
    heartbeat: Duration,
    heartbeat_event: bool,
    sent: u64,
}

impl ListSubscriber {
    /// A new stream on `feed` resuming after `last_event_id` (header or query), with
    /// `jitter` (runtime randomness) for its `retry:`. Never refused: an id it cannot
    /// resume from gets a snapshot.
    #[must_use]
    pub fn open(
        feed: &Feed,
        last_event_id: Option<&str>,
        settings: &StreamSettings,
        heartbeat_event: Option<bool>,
        jitter: u32,
        now: Instant,
    ) -> ListSubscriber {
        let (next, snapshot) = match feed.resume(last_event_id) {
            Resume::From(seq) => (seq, None),
            Resume::Snapshot(reason) => (feed.last_seq() + 1, Some(reason)),
        };
        ListSubscriber {
            next,
            snapshot,
            preamble: Some(jittered_retry(settings.retry_ms, jitter)),
            last_write: now,
            heartbeat: settings.heartbeat,
            heartbeat_event: heartbeat_event.unwrap_or(settings.heartbeat_event),
            sent: 0,
        }
    }

    /// Events written so far (heartbeats not counted).
    #[must_use]
    pub fn events_sent(&self) -> u64 {
        self.sent
    }

    /// Appends what to send next to `buf` and says what to do: [`Next::Wrote`] (write,
    /// then poll again) or [`Next::Wait`] (until the feed changes or the heartbeat is
    /// due). `jobs` gives the list for a snapshot, newest first; it is called only
    /// when one is due.
    pub fn poll_transmit(
        &mut self,
        feed: &Feed,
        jobs: impl FnOnce() -> Vec<Status>,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Next {
        let start_len = buf.len();
        if let Some(ms) = self.preamble.take() {
            sse::encode_retry(ms, buf);
        }
        if self.snapshot.is_none() && self.next < feed.first_held() {
            // Fell behind further than the feed keeps: start over.
            self.snapshot = Some(SnapshotReason::Expired);
        }
        if let Some(reason) = self.snapshot.take() {
            let list = jobs();
            let data = SnapshotData {
                reason: reason.as_str(),
                jobs: &list,
            };
            // invariant: status documents always serialize.
            let json = serde_json::to_string(&data).expect("snapshot serializes");
            feed.encode_with_id(feed.last_seq(), SNAPSHOT, &json, buf);
            self.next = feed.last_seq() + 1;
            self.sent += 1;
        } else {
            while self.next <= feed.last_seq()
                && buf.len() - start_len < crate::subscriber::TRANSMIT_BUDGET
            {
                match feed.get(self.next) {
                    Some(change) => feed.encode_change(change, buf),
                    None => break,
                }
                self.next += 1;
                self.sent += 1;
            }
        }
        if buf.len() > start_len {
            self.last_write = now;
            return Next::Wrote;
        }
        let due = self.last_write + self.heartbeat;
        if now >= due {
            if self.heartbeat_event {
                let json = format!(
                    "{{\"last_id\":\"{}\"}}",
                    feed.id_text(self.next.saturating_sub(1))
                );
                sse::encode_json_event(None, HEARTBEAT, &json, buf);
            } else {
                sse::encode_comment("", buf);
            }
            self.last_write = now;
            return Next::Wrote;
        }
        Next::Wait(Some(due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_another_run_or_malformed_are_unknown() {
        let mut feed = Feed::new();
        feed.seed([0, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        feed.record(ChangeKind::Created, "a".into(), None);
        assert_eq!(feed.id_text(1), "01efcdab-1");
        assert_eq!(feed.resume(Some("01efcdab-1")), Resume::From(2));
        assert_eq!(feed.resume(Some("01efcdab-0")), Resume::From(1));
        for bad in [
            "01efcdab-2",
            "01efcdac-1",
            "1efcdab-1",
            "01efcdab-",
            "01efcdab-+1",
            "7",
            "",
            "01efcdab-99999999999999999999999",
        ] {
            assert_eq!(
                feed.resume(Some(bad)),
                Resume::Snapshot(SnapshotReason::Unknown),
                "{bad}"
            );
        }
        assert_eq!(feed.resume(None), Resume::Snapshot(SnapshotReason::Start));
    }

    #[test]
    fn old_ids_expire() {
        let mut feed = Feed::with_capacity(2);
        for _ in 0..5 {
            feed.record(ChangeKind::Created, "a".into(), None);
        }
        assert_eq!(feed.first_held(), 4);
        assert_eq!(feed.resume(Some("00000000-3")), Resume::From(4));
        assert_eq!(
            feed.resume(Some("00000000-2")),
            Resume::Snapshot(SnapshotReason::Expired)
        );
        assert_eq!(feed.resume(Some("00000000-5")), Resume::From(6));
    }

    #[test]
    fn the_epoch_is_drawn_once() {
        let mut feed = Feed::new();
        feed.seed([1; 16]);
        let id = feed.id_text(1);
        feed.seed([2; 16]);
        assert_eq!(feed.id_text(1), id);
    }
}
