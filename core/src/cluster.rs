//! Scale-out on Redis Streams (docs/cluster.md): the data model of a cluster of
//! spout servers sharing one Redis, and every decision a server makes about it, with
//! no I/O and no clock reads (time is an argument, like everywhere in this crate).
//!
//! `spout-sys`'s `redis_store` carries these decisions out against a real Redis; the
//! runtimes will drive both (the plan is in docs/cluster.md). What lives here:
//!
//! - [`RedisUrl`]: the `redis` setting, parsed and validated.
//! - [`JobKeys`], [`JOBS_KEY`], [`COMMANDS_KEY`]: the key of every piece of state.
//! - [`stream_id`], [`parse_stream_id`], [`StreamEntry`]: event id N is the stream
//!   id `0-N`. Redis refuses an explicit `XADD` id that is not greater than the
//!   stream's last, so a second writer of the same event id fails: no event can be
//!   appended twice, and two servers racing to append the same id get one winner.
//! - [`CommandTable`]: the canonical JSON of the declared commands, its digest, and
//!   the message that names how two servers' tables differ.
//! - [`OwnerLease`] and [`judge_lease`]: the owner's lease and another server's
//!   verdict on it; [`end_lost_job`] appends the final `exit` of a lost job.
//! - [`Pusher`] and [`backfill`]: which events the owner still has to push after a
//!   Redis outage; [`trim_floor`] and [`read_gap`]: the per-job stream cap.
//! - [`JobRecord`]: the job record hash.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::CommandSpec;
use crate::id::{Cursor, EventId, JobId};

// ---- the `redis` setting ----

/// The default port of `redis://HOST` without `:PORT`.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// The highest database number accepted in `redis://HOST:PORT/DB`.
pub const MAX_REDIS_DB: u32 = 65_535;

/// Where the cluster's Redis is: the `redis` config field and `--redis`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisUrl {
    /// `redis://HOST[:PORT][/DB]`.
    Tcp {
        /// A host name, an IPv4 address, or a bracketed IPv6 address (`[::1]`).
        host: String,
        /// The port (default 6379).
        port: u16,
        /// The database number (default 0).
        db: u32,
    },
    /// `redis+unix:///PATH`: a unix socket.
    Unix {
        /// The socket's absolute path.
        path: String,
    },
}

/// Why a `redis` URL was refused (lowercase, says what to write instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrlError(pub String);

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedisUrlError {}

impl RedisUrl {
    /// Parses `redis://HOST[:PORT][/DB]` or `redis+unix:///PATH`.
    ///
    /// Deliberately narrow: no user or password (not supported yet), no query, no
    /// percent-escapes, so the text means one thing to us and to the client library.
    ///
    /// # Errors
    /// A [`RedisUrlError`] naming what is wrong and the accepted forms.
    ///
    /// # Examples
    /// ```
    /// use spout_core::cluster::RedisUrl;
    /// let url = RedisUrl::parse("redis://10.0.0.5:6380/2").unwrap();
    /// assert_eq!(url.to_string(), "redis://10.0.0.5:6380/2");
    /// assert!(RedisUrl::parse("http://10.0.0.5").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<RedisUrl, RedisUrlError> {
        const FORMS: &str = "write redis://HOST:PORT[/DB] or redis+unix:///PATH";
        let err = |what: String| Err(RedisUrlError(format!("{what}; {FORMS}")));
        if let Some(path) = text.strip_prefix("redis+unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return err(format!(
                    "{text:?} needs an absolute socket path after redis+unix://"
                ));
            }
            let bad = |c: char| c.is_control() || c.is_whitespace() || "?#%".contains(c);
            if path.chars().any(bad) {
                return err(format!(
                    "the socket path {path:?} has a character that needs escaping (space, control, ?, #, %)"
                ));
            }
            return Ok(RedisUrl::Unix {
                path: path.to_owned(),
            });
        }
        let Some(rest) = text.strip_prefix("redis://") else {
            return err(format!("{text:?} is not a Redis URL"));
        };
        if rest.contains('@') {
            return err(format!(
                "{text:?} carries a user or password, which is not supported yet; protect Redis by \
                 network (a unix socket or a private address)"
            ));
        }
        let (authority, db) = match rest.split_once('/') {
            Some((a, d)) => (a, Some(d)),
            None => (rest, None),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some(end) = v6.find(']') else {
                return err(format!("{text:?} has an unclosed [ in its host"));
            };
            let inner = &v6[..end];
            let ok = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
            if inner.is_empty() || !inner.chars().all(ok) {
                return err(format!("{text:?} has a bad IPv6 address"));
            }
            let after = &v6[end + 1..];
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return err(format!("{text:?} has text after its host")),
                },
            };
            (&authority[..end + 2], port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || (!host.starts_with('[') && !host.chars().all(host_ok)) {
            return err(format!("{text:?} needs a host name or address"));
        }
        let port = match port {
            None => DEFAULT_REDIS_PORT,
            Some(p) => match digits(p)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
            {
                Some(n) => n,
                None => return err(format!("the port {p:?} must be 1..=65535")),
            },
        };
        let db = match db {
            None => 0,
            Some(d) => match digits(d).and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n <= MAX_REDIS_DB => n,
                _ => {
                    return err(format!(
                        "the database {d:?} must be a number 0..={MAX_REDIS_DB}"
                    ))
                }
            },
        };
        Ok(RedisUrl::Tcp {
            host: host.to_owned(),
            port,
            db,
        })
    }
}

/// Decimal digits only (no sign, at most 10 of them).
fn digits(text: &str) -> Option<u64> {
    let ok = !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit());
    text.parse().ok().filter(|_| ok)
}

impl fmt::Display for RedisUrl {
    /// The URL in the form the client library reads (the canonical form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisUrl::Tcp { host, port, db } => write!(f, "redis://{host}:{port}/{db}"),
            RedisUrl::Unix { path } => write!(f, "redis+unix://{path}"),
        }
    }
}

// ---- keys ----

/// The prefix of every key spout writes, so a shared Redis stays tidy.
pub const KEY_PREFIX: &str = "spout:";
/// The job index: a sorted set, member the job id, score its start time in Unix
/// milliseconds (`GET /jobs` reads it newest first; retention trims it by score).
pub const JOBS_KEY: &str = "spout:jobs";
/// The command table: a hash with [`TABLE_DIGEST_FIELD`] and [`TABLE_JSON_FIELD`],
/// written once (`HSETNX`) by the first server and checked by every later one.
pub const COMMANDS_KEY: &str = "spout:commands";
/// The digest field of [`COMMANDS_KEY`].
pub const TABLE_DIGEST_FIELD: &str = "digest";
/// The canonical JSON field of [`COMMANDS_KEY`].
pub const TABLE_JSON_FIELD: &str = "table";

/// The keys of one job. The job id sits in a `{hash tag}`, so all three land in
/// one slot of a Redis Cluster and can be used in one script or transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobKeys {
    /// The event stream: entry `0-N` is event N.
    pub events: String,
    /// The job record, a hash (see [`JobRecord`]).
    pub record: String,
    /// The owner's lease: a string holding the owner's [`ServerId`], with a TTL.
    pub lease: String,
}

impl JobKeys {
    /// The keys of `job`.
    #[must_use]
    pub fn new(job: &JobId) -> JobKeys {
        JobKeys {
            events: format!("{KEY_PREFIX}{{{job}}}:events"),
            record: format!("{KEY_PREFIX}{{{job}}}:job"),
            lease: format!("{KEY_PREFIX}{{{job}}}:lease"),
        }
    }
}

/// The control stream of server `server` (its [`ServerId`] text): other servers
/// append stop requests for its jobs there (`DELETE` on a non-owner), and one
/// reader per server acts on them.
#[must_use]
pub fn ctl_key(server: &str) -> String {
    format!("{KEY_PREFIX}server:{server}:ctl")
}

/// The field of a control entry that names the job to stop.
pub const CTL_STOP_FIELD: &str = "stop";
/// About how many entries a control stream keeps (`XADD MAXLEN ~`).
pub const CTL_MAX_LEN: u64 = 1000;

// ---- stream ids and entries ----

/// The stream id of event `id`: `0-N`. The millisecond part is always 0, so
/// ordering, `XRANGE` bounds and "greater than the last" are the event ids'.
#[must_use]
pub fn stream_id(id: EventId) -> String {
    format!("0-{}", id.get())
}

/// The stream id to read *after* `cursor` with `XREAD` (which is exclusive), or
/// the exclusive `XRANGE` start without its `(`: `0-N`; `0-0` for "from the start".
#[must_use]
pub fn after_id(cursor: Cursor) -> String {
    format!("0-{}", cursor.0)
}

/// A stream id that is not one spout writes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamIdError {
    /// Not of the form `0-N` with N a decimal number.
    Foreign(String),
    /// `0-0`, which names no event.
    Zero,
}

impl fmt::Display for StreamIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamIdError::Foreign(id) => write!(f, "stream id {id:?} is not of the form 0-N"),
            StreamIdError::Zero => f.write_str("stream id 0-0 names no event"),
        }
    }
}

impl std::error::Error for StreamIdError {}

/// The event id of stream id `0-N`.
///
/// # Errors
/// [`StreamIdError`] for any other id (one spout did not write) and for `0-0`.
pub fn parse_stream_id(text: &str) -> Result<EventId, StreamIdError> {
    let n = text
        .strip_prefix("0-")
        .and_then(|n| (n.len() <= 20 && !n.starts_with('+')).then_some(n))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| StreamIdError::Foreign(text.to_owned()))?;
    EventId::new(n).ok_or(StreamIdError::Zero)
}

/// The field of a stream entry that holds the event type (`stdout`, `exit`, …).
pub const FIELD_TYPE: &str = "t";
/// The field of a stream entry that holds the event's data, its JSON text.
pub const FIELD_DATA: &str = "d";
/// The event type of the final event.
pub const EXIT: &str = "exit";
/// The `reason` of the `exit` another server appends for a job whose owner died
/// ([`EndReason::ServerLost`](crate::event::EndReason::ServerLost)).
pub const SERVER_LOST: &str = "server_lost";

/// One event as it is stored in a job's stream: short field names keep Redis memory
/// per event small; the data is the event's JSON, encoded to SSE once per server
/// when it enters that server's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The event id (the stream id `0-N`).
    pub id: EventId,
    /// The event type (`start`, `stdout`, `stderr`, `error`, `exit`).
    pub kind: String,
    /// The event's data, JSON text.
    pub data: String,
}

/// A stream entry that spout cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// Its id is not `0-N`.
    Id(StreamIdError),
    /// A field is missing.
    Missing(&'static str),
    /// A field is not UTF-8.
    NotUtf8(&'static str),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Id(e) => e.fmt(f),
            EntryError::Missing(field) => write!(f, "stream entry has no {field:?} field"),
            EntryError::NotUtf8(field) => write!(f, "stream entry field {field:?} is not UTF-8"),
        }
    }
}

impl std::error::Error for EntryError {}

impl StreamEntry {
    /// The entry's fields in `XADD` order.
    #[must_use]
    pub fn fields(&self) -> [(&'static str, &str); 2] {
        [(FIELD_TYPE, &self.kind), (FIELD_DATA, &self.data)]
    }

    /// An entry from what Redis returned: its id and its field/value pairs.
    ///
    /// # Errors
    /// [`EntryError`] for a foreign id or a missing or non-UTF-8 field.
    pub fn from_redis(id: &str, fields: &[(String, Vec<u8>)]) -> Result<StreamEntry, EntryError> {
        let id = parse_stream_id(id).map_err(EntryError::Id)?;
        let get = |name: &'static str| -> Result<String, EntryError> {
            let (_, value) = fields
                .iter()
                .find(|(k, _)| k == name)
                .ok_or(EntryError::Missing(name))?;
            String::from_utf8(value.clone()).map_err(|_| EntryError::NotUtf8(name))
        };
        Ok(StreamEntry {
            id,
            kind: get(FIELD_TYPE)?,
            data: get(FIELD_DATA)?,
        })
    }

    /// Whether this is the job's final event.
    #[must_use]
    pub fn is_final(&self) -> bool {
        self.kind == EXIT
    }
}

/// The stream entry of event `id` from its wire bytes in a log (the owner pushes
/// what its log holds); `None` for bytes that hold no event.
#[must_use]
pub fn entry_from_wire(id: EventId, wire: &[u8]) -> Option<StreamEntry> {
    let mut decoder = crate::sse::Decoder::new();
    decoder.feed(wire);
    std::iter::from_fn(|| decoder.poll()).find_map(|item| match item {
        crate::sse::Item::Event(e) => Some(StreamEntry {
            id,
            kind: e.event_type,
            data: e.data,
        }),
        _ => None,
    })
}

/// The wire bytes of a stream entry, as the owner's log holds them: `id: N`, the
/// event type, the data. A type Redis holds that SSE cannot carry is left out (the
/// client sees a `message`); data with line breaks is split into `data:` lines.
pub fn encode_entry(entry: &StreamEntry, buf: &mut Vec<u8>) {
    let id = entry.id.get().to_string();
    let id = crate::sse::IdValue::new(&id).ok();
    let event = crate::sse::EventType::new(&entry.kind).ok();
    crate::sse::encode_event(id, event, &entry.data, buf);
}

// ---- the command table ----

/// The version of the canonical table's shape; part of what is hashed, so servers
/// of versions that write a different shape are told so rather than "differs".
pub const TABLE_FORMAT: u64 = 1;

/// The declared commands in canonical JSON, and its SHA-256 digest.
///
/// Canonical: object keys sorted, no whitespace, every field of every command
/// written (absent ones as `null`), so two equal tables give the same bytes on
/// every server and every version of serde_json.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTable {
    json: String,
    digest: String,
}

/// The stored table a server found in Redis (the fields of [`COMMANDS_KEY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredTable<'a> {
    /// The stored digest.
    pub digest: &'a str,
    /// The stored canonical JSON.
    pub json: &'a str,
}

/// What a server does after comparing its table with Redis's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableCheck {
    /// No table in Redis yet: publish ours (with `HSETNX`, then check again, since
    /// another server may have published first).
    Publish,
    /// The same commands: start.
    Same,
}

/// The tables differ: the server refuses to start. `Display` names the difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMismatch {
    /// Our digest.
    pub ours: String,
    /// The digest in Redis.
    pub theirs: String,
    /// Each difference, in prose (`command "build": argv is … here but … in Redis`).
    pub differences: Vec<String>,
}

/// The most differences a [`TableMismatch`] message lists.
const MAX_LISTED: usize = 5;

impl fmt::Display for TableMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |d: &str| d.chars().take(12).collect::<String>();
        write!(
            f,
            "the declared commands differ from those of the servers already sharing this Redis \
             (digest {} here, {} in Redis): ",
            short(&self.ours),
            short(&self.theirs)
        )?;
        for (i, d) in self.differences.iter().take(MAX_LISTED).enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{d}")?;
        }
        if self.differences.len() > MAX_LISTED {
            write!(f, "; and {} more", self.differences.len() - MAX_LISTED)?;
        }
        f.write_str(
            "; declare the same commands on every server (or, to change them, stop every server \
             and delete the key spout:commands)",
        )
    }
}

impl std::error::Error for TableMismatch {}

impl CommandTable {
    /// The table of `commands`.
    #[must_use]
    pub fn new(commands: &BTreeMap<String, CommandSpec>) -> CommandTable {
        let table: serde_json::Map<String, Value> = commands
            .iter()
            .map(|(name, spec)| (name.clone(), canonical_command(spec)))
            .collect();
        let json = sorted(&json!({"format": TABLE_FORMAT, "commands": table})).to_string();
        let digest = hex(&Sha256::digest(json.as_bytes()));
        CommandTable { json, digest }
    }

    /// The canonical JSON (what [`TABLE_JSON_FIELD`] stores).
    #[must_use]
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The SHA-256 of [`CommandTable::json`], lowercase hex.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Compares this server's table with the one in Redis, if any.
    ///
    /// # Errors
    /// A [`TableMismatch`] naming every difference when the digests differ.
    pub fn check(&self, stored: Option<StoredTable<'_>>) -> Result<TableCheck, TableMismatch> {
        let Some(stored) = stored else {
            return Ok(TableCheck::Publish);
        };
        if stored.digest == self.digest {
            return Ok(TableCheck::Same);
        }
        Err(TableMismatch {
            ours: self.digest.clone(),
            theirs: stored.digest.to_owned(),
            differences: differences(&self.json, stored.json),
        })
    }
}

/// One command as a JSON object, every field present.
fn canonical_command(spec: &CommandSpec) -> Value {
    json!({
        "argv": spec.argv,
        "args": spec.args.as_ref().map(|a| json!({
            "allow": a.allow, "allow_options": a.allow_options, "max": a.max, "max_len": a.max_len,
        })),
        "cwd": spec.cwd,
        "description": spec.description,
        "env": spec.env,
        "max_output_bytes": spec.max_output_bytes,
        "pty": spec.pty.map(|p| json!({"cols": p.cols, "rows": p.rows})),
        "stop_grace_s": spec.stop_grace_s,
        "stop_when_unwatched_s": spec.stop_when_unwatched_s,
        "timeout_s": spec.timeout_s,
    })
}

/// The value with every object's keys in sorted order, whatever `serde_json`'s map
/// type is (a dependency enabling `preserve_order` must not change the digest).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let keys: BTreeMap<&String, &Value> = map.iter().collect();
            Value::Object(
                keys.into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each difference between our canonical table and the stored one, in prose.
fn differences(ours: &str, theirs: &str) -> Vec<String> {
    let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
    let (Some(ours), Some(theirs)) = (parse(ours), parse(theirs)) else {
        return vec!["the table in Redis is not readable JSON".to_owned()];
    };
    if ours.get("format") != theirs.get("format") {
        return vec![format!(
            "the table in Redis has format {}, this server writes format {TABLE_FORMAT} (a different spout version)",
            theirs.get("format").unwrap_or(&Value::Null)
        )];
    }
    let empty = serde_json::Map::new();
    let commands = |v: &Value| v.get("commands").and_then(Value::as_object).cloned();
    let ours = commands(&ours).unwrap_or_else(|| empty.clone());
    let theirs = commands(&theirs).unwrap_or(empty);
    let names: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        match (ours.get(name), theirs.get(name)) {
            (Some(_), None) => out.push(format!(
                "command {name:?} is declared here but not in Redis"
            )),
            (None, Some(_)) => out.push(format!(
                "command {name:?} is declared in Redis but not here"
            )),
            (Some(a), Some(b)) if a != b => {
                let fields: BTreeSet<&String> = a
                    .as_object()
                    .into_iter()
                    .chain(b.as_object())
                    .flat_map(serde_json::Map::keys)
                    .collect();
                for field in fields {
                    let (x, y) = (a.get(field), b.get(field));
                    if x != y {
                        let show =
                            |v: Option<&Value>| v.map_or("absent".to_owned(), Value::to_string);
                        out.push(format!(
                            "command {name:?}: {field} is {} here but {} in Redis",
                            show(x),
                            show(y)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push("the stored digest does not match the stored table".to_owned());
    }
    out
}

// ---- the lease ----

/// The lease's default time to live: an owner that stops renewing is declared lost
/// this long after its last renewal (plus the grace of [`judge_lease`]).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// How soon an owner retries a renewal that could not reach Redis, at most.
pub const RENEW_RETRY: Duration = Duration::from_secs(1);

/// One server's identity in the cluster: the value of the leases it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerId(String);

impl ServerId {
    /// A server id from 12 random bytes (the runtime reads them from the OS at start).
    #[must_use]
    pub fn from_random(bytes: [u8; 12]) -> ServerId {
        ServerId(hex(&bytes))
    }

    /// The id's text: 24 lowercase hex digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The renewal interval of a lease of `ttl`: a third of it, so two renewals can fail
/// before the lease expires.
#[must_use]
pub fn renew_interval(ttl: Duration) -> Duration {
    ttl / 3
}

/// What a renewal found (the renewal is one script: "if the lease is mine or gone,
/// set it to me with the TTL").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewOutcome {
    /// The lease is ours again for a TTL.
    Renewed,
    /// Another server holds the lease: the job was taken over.
    HeldByOther,
    /// Redis could not be reached (or did not answer in time).
    Unreachable,
}

/// The owner's side of a job's lease.
///
/// | state  | input                       | next   | effect                        |
/// | ------ | --------------------------- | ------ | ----------------------------- |
/// | Held   | `poll_renew` at `next`      | Held   | the driver sends a renewal    |
/// | Held   | `Renewed` (sent at `t`)     | Held   | `next = t + ttl/3`            |
/// | Held   | `Unreachable` at `t`        | Unsure | `next = t + min(ttl/3, 1 s)`  |
/// | Unsure | `Renewed`                   | Held   | as above                      |
/// | Unsure | `Unreachable`               | Unsure | retry again                   |
/// | any    | `HeldByOther`               | Lost   | no more renewals              |
///
/// Lost is final: another server ended the job (see [`end_lost_job`]); the owner
/// stops the process and keeps its own archive (docs/cluster.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerLease {
    ttl: Duration,
    next: Instant,
    in_flight: bool,
    state: LeaseState,
}

/// Where an [`OwnerLease`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// Renewed within the TTL.
    Held,
    /// The last renewal could not reach Redis, since this instant.
    Unsure {
        /// When the first failed renewal was sent.
        since: Instant,
    },
    /// Another server holds it.
    Lost,
}

impl OwnerLease {
    /// A lease acquired (`SET NX PX`) by a request sent at `now`.
    #[must_use]
    pub fn new(ttl: Duration, now: Instant) -> OwnerLease {
        OwnerLease {
            ttl,
            next: now + renew_interval(ttl),
            in_flight: false,
            state: LeaseState::Held,
        }
    }

    /// Where the lease stands.
    #[must_use]
    pub fn state(&self) -> LeaseState {
        self.state
    }

    /// When to call [`OwnerLease::poll_renew`] next; `None` while a renewal is in
    /// flight or once the lease is lost.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.in_flight && self.state != LeaseState::Lost).then_some(self.next)
    }

    /// Whether to send a renewal now; true marks it in flight until
    /// [`OwnerLease::handle_renew`].
    #[must_use]
    pub fn poll_renew(&mut self, now: Instant) -> bool {
        let due = self.poll_timeout().is_some_and(|at| now >= at);
        self.in_flight |= due;
        due
    }

    /// The result of the renewal sent at `sent_at`.
    pub fn handle_renew(&mut self, outcome: RenewOutcome, sent_at: Instant) {
        self.in_flight = false;
        match (outcome, self.state) {
            (_, LeaseState::Lost) | (RenewOutcome::HeldByOther, _) => self.state = LeaseState::Lost,
            (RenewOutcome::Renewed, _) => {
                self.state = LeaseState::Held;
                // From when it was sent: Redis set the TTL no earlier than that.
                self.next = sent_at + renew_interval(self.ttl);
            }
            (RenewOutcome::Unreachable, state) => {
                if let LeaseState::Held = state {
                    self.state = LeaseState::Unsure { since: sent_at };
                }
                self.next = sent_at + renew_interval(self.ttl).min(RENEW_RETRY);
            }
        }
    }
}

/// What another server saw of a job's lease key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseSeen {
    /// The key exists (some server renews it).
    Held,
    /// The key is gone: expired, or lost with a Redis restart.
    Absent,
}

/// A server's verdict on another server's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Judgement {
    /// The job's stream already ends with `exit`: nothing to do.
    Ended,
    /// Its owner holds the lease: look again after [`renew_interval`].
    Alive,
    /// The lease is gone, but this server has been connected to Redis for less
    /// than a TTL: the owner may have been cut off too and not had its chance to
    /// renew. Look again at `until`.
    Grace {
        /// When the grace ends.
        until: Instant,
    },
    /// The owner is lost: append the final exit ([`end_lost_job`]).
    Lost,
}

/// The verdict on a running job of another server, from what this server saw in
/// Redis at `now`, having been connected to it since `connected_since`.
///
/// The grace rule is what keeps a Redis outage from ending live jobs: when Redis
/// comes back, leases may have expired during the outage; every owner renews within
/// `ttl/3` of reconnecting, and no server judges before it has been connected for a
/// whole `ttl`.
#[must_use]
pub fn judge_lease(
    seen: LeaseSeen,
    stream_ended: bool,
    connected_since: Instant,
    now: Instant,
    ttl: Duration,
) -> Judgement {
    let grace_end = connected_since + ttl;
    match (stream_ended, seen) {
        (true, _) => Judgement::Ended,
        (false, LeaseSeen::Held) => Judgement::Alive,
        (false, LeaseSeen::Absent) if now < grace_end => Judgement::Grace { until: grace_end },
        (false, LeaseSeen::Absent) => Judgement::Lost,
    }
}

#[derive(Serialize)]
struct LostExitData {
    code: Option<i32>,
    signal: Option<String>,
    duration_ms: u64,
    stdout_bytes: u64,
    stderr_bytes: u64,
    reason: &'static str,
}

/// What to do to end a lost job, given its stream's last entry (`None`: empty).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndAttempt {
    /// `XADD` this entry at its explicit id. If Redis refuses the id (another
    /// server appended first), read the last entry again and ask again.
    Append(StreamEntry),
    /// The stream already ends with `exit`: another server won, or the owner ended it.
    Done,
}

/// The final `exit` of a job whose owner is lost: `code` and `signal` null,
/// `reason` [`SERVER_LOST`], at the id after the stream's last entry. Two servers
/// racing both try `XADD 0-(last+1)`; Redis takes only the first, and the second,
/// reading again, finds the `exit` and is [`EndAttempt::Done`]: one end.
///
/// `now_ms` and the record's `started_at_ms` are Unix milliseconds; the byte
/// counts are the record's, as the owner last wrote them.
#[must_use]
pub fn end_lost_job(last: Option<&StreamEntry>, record: &JobRecord, now_ms: u64) -> EndAttempt {
    if last.is_some_and(StreamEntry::is_final) {
        return EndAttempt::Done;
    }
    let id = last.map_or(EventId::FIRST, |e| e.id.next());
    let data = LostExitData {
        code: None,
        signal: None,
        duration_ms: now_ms.saturating_sub(record.started_at_ms),
        stdout_bytes: record.stdout_bytes,
        stderr_bytes: record.stderr_bytes,
        reason: SERVER_LOST,
    };
    EndAttempt::Append(StreamEntry {
        id,
        kind: EXIT.to_owned(),
        // invariant: a struct of numbers and a static string always serializes.
        data: serde_json::to_string(&data).expect("plain data serializes"),
    })
}

// ---- the owner's pushes and backfill ----

/// The most events one pipelined append carries (one round trip).
pub const MAX_BATCH_EVENTS: u64 = 256;
/// The per-job stream cap when the config sets none.
pub const DEFAULT_STREAM_MAX_EVENTS: u64 = 100_000;

/// What the owner does after reconnecting to Redis, from the stream's last entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backfill {
    /// Push events `from..=` the local last (from the archive), in batches. `from`
    /// may be past Redis's last + 1 where the cap leaves older events out of Redis;
    /// readers see a `gap` there ([`read_gap`]).
    Push {
        /// The first id to push.
        from: EventId,
    },
    /// Redis has everything already.
    UpToDate,
    /// Another server ended the job while this one was cut off (its `exit` sits at
    /// `at`, or Redis holds ids this owner never wrote): stop pushing; stop the
    /// process; the local archive keeps what Redis lacks.
    Superseded {
        /// The id Redis holds that is not ours.
        at: EventId,
    },
}

/// Which events the owner still has to push, after a Redis outage or at any time:
///
/// - `tail`: Redis's last entry of the job's stream (`None`: empty or gone, as after
///   a Redis restart without persistence), as `(id, is_final)`;
/// - `local_last`: the owner's last event id; `local_final`: the id of the owner's
///   own `exit`, if it has one;
/// - `cap`: the per-job stream cap: never push more than the last `cap` events.
///
/// Only the owner writes anything but a `server_lost` exit, so an id in Redis above
/// ours, or a final event at an id where we have none, is someone else's.
#[must_use]
pub fn backfill(
    tail: Option<(EventId, bool)>,
    local_last: Cursor,
    local_final: Option<EventId>,
    cap: u64,
) -> Backfill {
    if let Some((at, is_final)) = tail {
        if at.get() > local_last.0 || (is_final && local_final != Some(at)) {
            return Backfill::Superseded { at };
        }
    }
    let after_redis = tail.map_or(1, |(at, _)| at.get() + 1);
    let cap_floor = local_last.0.saturating_sub(cap.max(1)) + 1;
    let from = after_redis.max(cap_floor);
    match EventId::new(from) {
        Some(from) if from.get() <= local_last.0 => Backfill::Push { from },
        _ => Backfill::UpToDate,
    }
}

/// The owner's pushing state for one job: how far Redis is known to have it.
///
/// The driver loop: after each append to the local log (archived first, as ever),
/// `poll_batch`; push that range in one pipeline; then `handle_pushed`, or
/// `handle_unreachable` (keep running, push later) or `handle_conflict` (Redis
/// refused an id: another server ended the job). On reconnection, read the
/// stream's last entry and call `handle_reconnected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pusher {
    pushed: Cursor,
    state: PushState,
}

/// Where a [`Pusher`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushState {
    /// Pushing as events come.
    Live,
    /// Redis is unreachable; events wait in the archive.
    Offline,
    /// Another server ended the job; nothing more is pushed.
    Superseded,
}

impl Default for Pusher {
    fn default() -> Pusher {
        Pusher::new()
    }
}

impl Pusher {
    /// A job with nothing pushed yet.
    #[must_use]
    pub fn new() -> Pusher {
        Pusher {
            pushed: Cursor(0),
            state: PushState::Live,
        }
    }

    /// The last id Redis is known to hold.
    #[must_use]
    pub fn pushed(&self) -> Cursor {
        self.pushed
    }

    /// Where the pusher stands.
    #[must_use]
    pub fn state(&self) -> PushState {
        self.state
    }

    /// The next range to push, at most [`MAX_BATCH_EVENTS`], when live and behind.
    #[must_use]
    pub fn poll_batch(&self, local_last: Cursor) -> Option<(EventId, EventId)> {
        if self.state != PushState::Live || local_last <= self.pushed {
            return None;
        }
        let from = EventId::new(self.pushed.0 + 1)?;
        let to = EventId::new(local_last.0.min(self.pushed.0 + MAX_BATCH_EVENTS))?;
        Some((from, to))
    }

    /// Redis accepted the batch up to `to`.
    pub fn handle_pushed(&mut self, to: EventId) {
        self.pushed = self.pushed.max(Cursor(to.get()));
    }

    /// Redis could not be reached; the batch may or may not have landed.
    pub fn handle_unreachable(&mut self) {
        if self.state == PushState::Live {
            self.state = PushState::Offline;
        }
    }

    /// Redis refused an id of ours as not greater than its last: superseded.
    pub fn handle_conflict(&mut self) {
        self.state = PushState::Superseded;
    }

    /// Redis is back; `tail` is the stream's last entry as `(id, is_final)`.
    /// Returns the [`backfill`] decision and applies it.
    pub fn handle_reconnected(
        &mut self,
        tail: Option<(EventId, bool)>,
        local_last: Cursor,
        local_final: Option<EventId>,
        cap: u64,
    ) -> Backfill {
        if self.state == PushState::Superseded {
            return Backfill::UpToDate;
        }
        let decision = backfill(tail, local_last, local_final, cap);
        match decision {
            Backfill::Superseded { .. } => self.state = PushState::Superseded,
            Backfill::Push { from } => {
                self.state = PushState::Live;
                self.pushed = Cursor(from.get() - 1);
            }
            Backfill::UpToDate => {
                self.state = PushState::Live;
                self.pushed = local_last;
            }
        }
        decision
    }
}

// ---- the stream cap ----

/// The oldest id a stream capped at `cap` events keeps once `last` is appended
/// (`XADD … MINID = 0-M` or `XTRIM MINID`), or `None` when nothing is trimmed yet.
/// Ids are dense, so `MINID` keeps exactly the last `cap` events.
#[must_use]
pub fn trim_floor(last: EventId, cap: u64) -> Option<EventId> {
    let cap = cap.max(1);
    (last.get() > cap)
        .then(|| EventId::new(last.get() - cap + 1))
        .flatten()
}

/// The `gap` a reader must send when it asked for events after `after` and the
/// first entry Redis returned is `first`: `(from, to)`, the ids trimmed away (the
/// owner's archive still has them), or `None` when `first` follows on.
#[must_use]
pub fn read_gap(after: Cursor, first: EventId) -> Option<(EventId, EventId)> {
    let want = after.0.checked_add(1)?;
    if first.get() <= want {
        return None;
    }
    Some((EventId::new(want)?, EventId::new(first.get() - 1)?))
}

/// The job index's score cutoff for retention: members scored (started) before it,
/// in Unix milliseconds, are dropped with `ZREMRANGEBYSCORE -inf (cutoff`.
#[must_use]
pub fn index_cutoff_ms(now_ms: u64, retention: Duration) -> u64 {
    now_ms.saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX))
}

// ---- the job record ----

/// A job's record hash: what `GET /jobs` and `GET /jobs/{id}` need without reading
/// the stream, and what a server ending a lost job needs for its `exit`. The owner
/// writes it at creation and updates `last_id` and the byte counts in the same
/// pipeline as each batch of events. The `start` event's data is kept here too, so
/// `?tail=N` can send `start` first after the cap trimmed it from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// The owner's [`ServerId`].
    pub owner: String,
    /// The command's name.
    pub command: String,
    /// When the job started, Unix milliseconds (also its score in [`JOBS_KEY`]).
    pub started_at_ms: u64,
    /// The `start` event's data (JSON).
    pub start: String,
    /// The last event id pushed.
    pub last_id: u64,
    /// Raw stdout bytes so far.
    pub stdout_bytes: u64,
    /// Raw stderr bytes so far.
    pub stderr_bytes: u64,
}

/// A record hash that spout cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// A field is missing.
    Missing(&'static str),
    /// A numeric field does not hold a number.
    NotANumber(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Missing(field) => write!(f, "job record has no {field:?} field"),
            RecordError::NotANumber(field) => {
                write!(f, "job record field {field:?} is not a number")
            }
        }
    }
}

impl std::error::Error for RecordError {}

impl JobRecord {
    /// The hash's field/value pairs (`HSET key f1 v1 f2 v2 …`).
    #[must_use]
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("owner", self.owner.clone()),
            ("command", self.command.clone()),
            ("started_at_ms", self.started_at_ms.to_string()),
            ("start", self.start.clone()),
            ("last_id", self.last_id.to_string()),
            ("stdout_bytes", self.stdout_bytes.to_string()),
            ("stderr_bytes", self.stderr_bytes.to_string()),
        ]
    }

    /// The record from `HGETALL`'s pairs; unknown fields are ignored (a newer
    /// version may add some).
    ///
    /// # Errors
    /// [`RecordError`] for a missing field or a number that is not one.
    pub fn from_fields(fields: &[(String, String)]) -> Result<JobRecord, RecordError> {
        let text = |name: &'static str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(RecordError::Missing(name))
        };
        let number = |name: &'static str| {
            text(name)?
                .parse::<u64>()
                .map_err(|_| RecordError::NotANumber(name))
        };
        Ok(JobRecord {
            owner: text("owner")?,
            command: text("command")?,
            started_at_ms: number("started_at_ms")?,
            start: text("start")?,
            last_id: number("last_id")?,
            stdout_bytes: number("stdout_bytes")?,
            stderr_bytes: number("stderr_bytes")?,
        })
    }
}

// ---- remote jobs ----

/// The registry job for another server's job, from its record: a
/// [`Job::remote`](crate::job::Job::remote) with the record's `start` event
/// already in its log (so `?tail=N` and the status have it even when the stream's
/// cap trimmed it). Its reader then feeds the stream's entries from the start.
#[must_use]
pub fn remote_job(job: JobId, record: &JobRecord, window_bytes: usize) -> crate::job::Job {
    let mut remote = crate::job::Job::remote(
        job,
        record.command.clone(),
        record.started_at_ms,
        window_bytes,
    );
    if !record.start.is_empty() {
        remote.handle_remote_entry(&StreamEntry {
            id: EventId::FIRST,
            kind: "start".to_owned(),
            data: record.start.clone(),
        });
    }
    remote
}

/// The status document of another server's job for `GET /jobs`, from its record
/// and its stream's last entry (which ends it when it is the `exit`).
#[must_use]
pub fn remote_status(
    job: JobId,
    record: &JobRecord,
    last: Option<&StreamEntry>,
) -> crate::job::Status {
    let mut remote = remote_job(job, record, 0);
    if let Some(last) = last.filter(|e| e.is_final()) {
        remote.handle_remote_entry(last);
    }
    let mut status = remote.status();
    status.last_event_id = status
        .last_event_id
        .max(record.last_id)
        .max(last.map_or(0, |e| e.id.get()));
    if status.exit.is_none() {
        status.stdout_bytes = record.stdout_bytes;
        status.stderr_bytes = record.stderr_bytes;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArgsRule, PtySize};
    use crate::fuzzing::{ms, t0};

    fn id(n: u64) -> EventId {
        EventId::new(n).unwrap()
    }

    #[test]
    fn redis_urls() {
        let tcp = |host: &str, port, db| {
            Ok(RedisUrl::Tcp {
                host: host.into(),
                port,
                db,
            })
        };
        let cases: Vec<(&str, Result<RedisUrl, &str>)> = vec![
            ("redis://127.0.0.1:6379", tcp("127.0.0.1", 6379, 0)),
            (
                "redis://redis.internal:6380/3",
                tcp("redis.internal", 6380, 3),
            ),
            ("redis://cache", tcp("cache", 6379, 0)),
            ("redis://[::1]:7000/1", tcp("[::1]", 7000, 1)),
            ("redis://[::1]", tcp("[::1]", 6379, 0)),
            (
                "redis+unix:///run/redis/redis.sock",
                Ok(RedisUrl::Unix {
                    path: "/run/redis/redis.sock".into(),
                }),
            ),
            ("redis+unix://run/redis.sock", Err("absolute socket path")),
            ("redis+unix:///", Err("absolute socket path")),
            ("redis+unix:///a b", Err("needs escaping")),
            ("redis+unix:///a?db=1", Err("needs escaping")),
            ("http://cache:6379", Err("is not a Redis URL")),
            ("rediss://cache:6379", Err("is not a Redis URL")),
            ("redis://:secret@cache:6379", Err("not supported yet")),
            ("redis://", Err("needs a host")),
            ("redis://:6379", Err("needs a host")),
            ("redis://ca_che:1", Err("needs a host")),
            ("redis://cache:0", Err("1..=65535")),
            ("redis://cache:65536", Err("1..=65535")),
            ("redis://cache:+1", Err("1..=65535")),
            ("redis://cache:1/", Err("the database \"\"")),
            ("redis://cache:1/x", Err("the database \"x\"")),
            ("redis://cache:1/65536", Err("0..=65535")),
            ("redis://cache:1/2/3", Err("the database \"2/3\"")),
            ("redis://[::1", Err("unclosed")),
            ("redis://[]:1", Err("bad IPv6")),
            ("redis://[::1]x", Err("text after")),
        ];
        for (text, want) in cases {
            match (RedisUrl::parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(e), Err(fragment)) => {
                    assert!(e.0.contains(fragment), "{text}: {e}");
                    assert!(
                        e.0.ends_with("write redis://HOST:PORT[/DB] or redis+unix:///PATH"),
                        "{e}"
                    );
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        // The canonical form parses back to itself.
        for text in [
            "redis://cache",
            "redis://[::1]:7/2",
            "redis+unix:///tmp/r.sock",
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(RedisUrl::parse(&url.to_string()), Ok(url.clone()), "{text}");
        }
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let job = JobId::from_random([7; 16]);
        let keys = JobKeys::new(&job);
        assert_eq!(keys.events, format!("spout:{{{job}}}:events"));
        assert_eq!(keys.record, format!("spout:{{{job}}}:job"));
        assert_eq!(keys.lease, format!("spout:{{{job}}}:lease"));
        for key in [
            &keys.events,
            &keys.record,
            &keys.lease,
            &JOBS_KEY.to_owned(),
        ] {
            assert!(key.starts_with(KEY_PREFIX));
        }
        assert_ne!(JobKeys::new(&JobId::from_random([8; 16])), keys);
    }

    #[test]
    fn stream_ids() {
        assert_eq!(stream_id(id(1)), "0-1");
        assert_eq!(stream_id(id(u64::MAX)), format!("0-{}", u64::MAX));
        assert_eq!(after_id(Cursor(0)), "0-0");
        assert_eq!(after_id(Cursor(41)), "0-41");
        for n in [1, 2, 41, u64::MAX] {
            assert_eq!(parse_stream_id(&stream_id(id(n))), Ok(id(n)));
        }
        assert_eq!(parse_stream_id("0-0"), Err(StreamIdError::Zero));
        for foreign in [
            "1-1",
            "1700000000000-0",
            "0-",
            "0-x",
            "0-+1",
            "0--1",
            "",
            "5",
            "0-18446744073709551616",
        ] {
            assert_eq!(
                parse_stream_id(foreign),
                Err(StreamIdError::Foreign(foreign.into())),
                "{foreign}"
            );
        }
    }

    #[test]
    fn entries_round_trip_and_refuse_foreign_ones() {
        let entry = StreamEntry {
            id: id(3),
            kind: "stdout".into(),
            data: r#"{"text":"hi\n"}"#.into(),
        };
        let pairs: Vec<(String, Vec<u8>)> = entry
            .fields()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(StreamEntry::from_redis("0-3", &pairs), Ok(entry.clone()));
        assert!(!entry.is_final());
        assert_eq!(
            StreamEntry::from_redis("9-3", &pairs),
            Err(EntryError::Id(StreamIdError::Foreign("9-3".into())))
        );
        assert_eq!(
            StreamEntry::from_redis("0-3", &pairs[..1]),
            Err(EntryError::Missing("d"))
        );
        let bad = vec![
            ("t".to_owned(), vec![0xff]),
            ("d".to_owned(), b"{}".to_vec()),
        ];
        assert_eq!(
            StreamEntry::from_redis("0-3", &bad),
            Err(EntryError::NotUtf8("t"))
        );
    }

    fn table(specs: &[CommandSpec]) -> CommandTable {
        CommandTable::new(&specs.iter().map(|s| (s.name.clone(), s.clone())).collect())
    }

    fn spec(name: &str, argv: &[&str]) -> CommandSpec {
        CommandSpec::new(name, argv.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn command_digest_is_stable_and_canonical() {
        let build = spec("build", &["make", "-C", "/srv"]);
        let t = table(&[build.clone(), spec("test", &["make", "test"])]);
        // Pinned: a change to the canonical form is a protocol change between
        // servers; bump TABLE_FORMAT when you make one.
        assert_eq!(
            t.json(),
            r#"{"commands":{"build":{"args":null,"argv":["make","-C","/srv"],"cwd":null,"description":"","env":{},"max_output_bytes":null,"pty":null,"stop_grace_s":5,"stop_when_unwatched_s":null,"timeout_s":null},"test":{"args":null,"argv":["make","test"],"cwd":null,"description":"","env":{},"max_output_bytes":null,"pty":null,"stop_grace_s":5,"stop_when_unwatched_s":null,"timeout_s":null}},"format":1}"#
        );
        assert_eq!(t.digest(), hex(&Sha256::digest(t.json().as_bytes())));
        assert_eq!(t.digest().len(), 64);
        assert_eq!(table(&[spec("test", &["make", "test"]), build]), t);
        // Every field counts.
        let mut changed: Vec<CommandSpec> = Vec::new();
        let base = spec("build", &["make"]);
        let mut s = base.clone();
        s.description = "x".into();
        changed.push(s);
        let mut s = base.clone();
        s.args = Some(ArgsRule {
            max: 1,
            max_len: 8,
            allow: None,
            allow_options: false,
        });
        changed.push(s);
        let mut s = base.clone();
        s.cwd = Some("/".into());
        changed.push(s);
        let mut s = base.clone();
        s.env.insert("A".into(), "1".into());
        changed.push(s);
        let mut s = base.clone();
        s.timeout_s = Some(1);
        changed.push(s);
        let mut s = base.clone();
        s.max_output_bytes = Some(1);
        changed.push(s);
        let mut s = base.clone();
        s.stop_when_unwatched_s = Some(1);
        changed.push(s);
        let mut s = base.clone();
        s.stop_grace_s = 0;
        changed.push(s);
        let mut s = base.clone();
        s.pty = Some(PtySize { cols: 80, rows: 24 });
        changed.push(s);
        let digests: BTreeSet<String> = changed
            .iter()
            .chain([&base])
            .map(|s| table(std::slice::from_ref(s)).digest().to_owned())
            .collect();
        assert_eq!(digests.len(), changed.len() + 1);
    }

    #[test]
    fn command_check_names_the_difference() {
        let ours = table(&[spec("build", &["make"]), spec("lint", &["clippy"])]);
        let theirs = table(&[spec("build", &["make", "-j2"]), spec("deploy", &["ship"])]);
        fn stored(t: &CommandTable) -> StoredTable<'_> {
            StoredTable {
                digest: t.digest(),
                json: t.json(),
            }
        }
        assert_eq!(ours.check(None), Ok(TableCheck::Publish));
        assert_eq!(ours.check(Some(stored(&ours))), Ok(TableCheck::Same));
        let err = ours.check(Some(stored(&theirs))).unwrap_err();
        assert_eq!(
            err.differences,
            [
                r#"command "build": argv is ["make"] here but ["make","-j2"] in Redis"#,
                r#"command "deploy" is declared in Redis but not here"#,
                r#"command "lint" is declared here but not in Redis"#,
            ]
        );
        let text = err.to_string();
        assert!(text.starts_with(&format!("the declared commands differ from those of the servers already sharing this Redis (digest {} here, {} in Redis): command \"build\"", &ours.digest()[..12], &theirs.digest()[..12])), "{text}");
        assert!(text.contains("delete the key spout:commands"), "{text}");
        // Unreadable, other-format and inconsistent stored tables are named too.
        let odd = |json: &str| {
            ours.check(Some(StoredTable { digest: "x", json }))
                .unwrap_err()
                .differences
        };
        assert_eq!(odd("{"), ["the table in Redis is not readable JSON"]);
        assert!(odd(r#"{"format":2,"commands":{}}"#)[0].contains("has format 2"));
        assert_eq!(
            odd(ours.json()),
            ["the stored digest does not match the stored table"]
        );
        // Long lists are cut.
        let many: Vec<CommandSpec> = (0..8).map(|i| spec(&format!("c{i}"), &["x"])).collect();
        let err = table(&[]).check(Some(stored(&table(&many)))).unwrap_err();
        assert!(err.to_string().contains("; and 3 more;"), "{err}");
    }

    #[test]
    fn owner_lease_transitions() {
        let t0 = t0();
        let ttl = Duration::from_secs(9);
        let mut lease = OwnerLease::new(ttl, t0);
        assert_eq!(lease.state(), LeaseState::Held);
        assert_eq!(lease.poll_timeout(), Some(t0 + ms(3000)));
        assert!(!lease.poll_renew(t0 + ms(2999)));
        assert!(lease.poll_renew(t0 + ms(3000)));
        // In flight: no second renewal, no timeout to spin on.
        assert_eq!(lease.poll_timeout(), None);
        assert!(!lease.poll_renew(t0 + ms(4000)));
        lease.handle_renew(RenewOutcome::Renewed, t0 + ms(3000));
        assert_eq!(lease.poll_timeout(), Some(t0 + ms(6000)));
        // Redis unreachable: unsure since the send, retried within a second.
        assert!(lease.poll_renew(t0 + ms(6000)));
        lease.handle_renew(RenewOutcome::Unreachable, t0 + ms(6000));
        assert_eq!(
            lease.state(),
            LeaseState::Unsure {
                since: t0 + ms(6000)
            }
        );
        assert_eq!(lease.poll_timeout(), Some(t0 + ms(7000)));
        assert!(lease.poll_renew(t0 + ms(7000)));
        lease.handle_renew(RenewOutcome::Unreachable, t0 + ms(7000));
        assert_eq!(
            lease.state(),
            LeaseState::Unsure {
                since: t0 + ms(6000)
            },
            "since stays the first failure"
        );
        assert!(lease.poll_renew(t0 + ms(8000)));
        lease.handle_renew(RenewOutcome::Renewed, t0 + ms(8000));
        assert_eq!(lease.state(), LeaseState::Held);
        assert_eq!(lease.poll_timeout(), Some(t0 + ms(11000)));
        // Taken over: final.
        assert!(lease.poll_renew(t0 + ms(11000)));
        lease.handle_renew(RenewOutcome::HeldByOther, t0 + ms(11000));
        assert_eq!(lease.state(), LeaseState::Lost);
        assert_eq!(lease.poll_timeout(), None);
        assert!(!lease.poll_renew(t0 + ms(60_000)));
        lease.handle_renew(RenewOutcome::Renewed, t0 + ms(60_000));
        assert_eq!(lease.state(), LeaseState::Lost);
        // A short TTL retries at a third of it, not after a whole second.
        let mut short = OwnerLease::new(ms(600), t0);
        assert!(short.poll_renew(t0 + ms(200)));
        short.handle_renew(RenewOutcome::Unreachable, t0 + ms(200));
        assert_eq!(short.poll_timeout(), Some(t0 + ms(400)));
    }

    #[test]
    fn judge_lease_table() {
        let t0 = t0();
        let ttl = Duration::from_secs(10);
        // (seen, stream ended, connected since, now, verdict)
        let cases = [
            (LeaseSeen::Held, true, t0, t0 + ms(60_000), Judgement::Ended),
            (
                LeaseSeen::Absent,
                true,
                t0,
                t0 + ms(60_000),
                Judgement::Ended,
            ),
            (
                LeaseSeen::Held,
                false,
                t0,
                t0 + ms(60_000),
                Judgement::Alive,
            ),
            (LeaseSeen::Held, false, t0, t0, Judgement::Alive),
            (
                LeaseSeen::Absent,
                false,
                t0,
                t0 + ms(9_999),
                Judgement::Grace {
                    until: t0 + ms(10_000),
                },
            ),
            (
                LeaseSeen::Absent,
                false,
                t0,
                t0 + ms(10_000),
                Judgement::Lost,
            ),
            (
                LeaseSeen::Absent,
                false,
                t0 + ms(50_000),
                t0 + ms(55_000),
                Judgement::Grace {
                    until: t0 + ms(60_000),
                },
            ),
            (
                LeaseSeen::Absent,
                false,
                t0 + ms(50_000),
                t0 + ms(61_000),
                Judgement::Lost,
            ),
        ];
        for (seen, ended, since, now, want) in cases {
            assert_eq!(
                judge_lease(seen, ended, since, now, ttl),
                want,
                "{seen:?} ended={ended}"
            );
        }
    }

    fn record() -> JobRecord {
        JobRecord {
            owner: ServerId::from_random([1; 12]).as_str().to_owned(),
            command: "build".into(),
            started_at_ms: 1_000,
            start: r#"{"command":"build"}"#.into(),
            last_id: 4,
            stdout_bytes: 10,
            stderr_bytes: 2,
        }
    }

    #[test]
    fn lost_job_gets_one_exit_after_the_last() {
        let out = StreamEntry {
            id: id(4),
            kind: "stdout".into(),
            data: "{}".into(),
        };
        let EndAttempt::Append(exit) = end_lost_job(Some(&out), &record(), 6_500) else {
            panic!()
        };
        assert_eq!(exit.id, id(5));
        assert!(exit.is_final());
        assert_eq!(
            exit.data,
            r#"{"code":null,"signal":null,"duration_ms":5500,"stdout_bytes":10,"stderr_bytes":2,"reason":"server_lost"}"#
        );
        assert_eq!(
            end_lost_job(Some(&exit), &record(), 7_000),
            EndAttempt::Done
        );
        let EndAttempt::Append(first) = end_lost_job(None, &record(), 0) else {
            panic!()
        };
        assert_eq!(
            (first.id, first.data.contains(r#""duration_ms":0"#)),
            (id(1), true)
        );
    }

    #[test]
    fn backfill_table() {
        let push = |n| Backfill::Push { from: id(n) };
        let cap = 100;
        // (Redis's tail, local last, local exit id, decision)
        let cases = [
            (None, 0, None, Backfill::UpToDate),
            (None, 5, None, push(1)),
            (Some((id(3), false)), 5, None, push(4)),
            (Some((id(5), false)), 5, None, Backfill::UpToDate),
            (Some((id(5), true)), 5, Some(id(5)), Backfill::UpToDate),
            // Redis restarted from an older snapshot: push again what it lost.
            (Some((id(2), false)), 5, Some(id(5)), push(3)),
            // Someone else's exit, or ids we never wrote.
            (
                Some((id(4), true)),
                5,
                None,
                Backfill::Superseded { at: id(4) },
            ),
            (
                Some((id(4), true)),
                5,
                Some(id(5)),
                Backfill::Superseded { at: id(4) },
            ),
            (
                Some((id(6), false)),
                5,
                None,
                Backfill::Superseded { at: id(6) },
            ),
            (
                Some((id(6), true)),
                5,
                None,
                Backfill::Superseded { at: id(6) },
            ),
            // The cap: never more than the last 100 (Redis lost everything, or lags far).
            (None, 1_000, None, push(901)),
            (Some((id(10), false)), 1_000, None, push(901)),
            (Some((id(950), false)), 1_000, None, push(951)),
            (None, 100, None, push(1)),
            (None, 101, None, push(2)),
        ];
        for (tail, last, exit, want) in cases {
            assert_eq!(
                backfill(tail, Cursor(last), exit, cap),
                want,
                "{tail:?} {last} {exit:?}"
            );
        }
        assert_eq!(
            backfill(None, Cursor(3), None, 0),
            push(3),
            "a cap of 0 acts as 1"
        );
    }

    #[test]
    fn pusher_batches_goes_offline_and_backfills() {
        let mut p = Pusher::new();
        assert_eq!(p.poll_batch(Cursor(0)), None);
        assert_eq!(p.poll_batch(Cursor(3)), Some((id(1), id(3))));
        p.handle_pushed(id(3));
        assert_eq!(p.poll_batch(Cursor(3)), None);
        assert_eq!(
            p.poll_batch(Cursor(1_000)),
            Some((id(4), id(3 + MAX_BATCH_EVENTS)))
        );
        p.handle_unreachable();
        assert_eq!(p.state(), PushState::Offline);
        assert_eq!(
            p.poll_batch(Cursor(1_000)),
            None,
            "offline: events wait in the archive"
        );
        // The batch in flight did land before the connection dropped.
        assert_eq!(
            p.handle_reconnected(Some((id(10), false)), Cursor(20), None, 1_000),
            Backfill::Push { from: id(11) }
        );
        assert_eq!((p.state(), p.pushed()), (PushState::Live, Cursor(10)));
        assert_eq!(p.poll_batch(Cursor(20)), Some((id(11), id(20))));
        p.handle_pushed(id(20));
        p.handle_unreachable();
        assert_eq!(
            p.handle_reconnected(Some((id(20), false)), Cursor(20), None, 1_000),
            Backfill::UpToDate
        );
        assert_eq!(p.poll_batch(Cursor(21)), Some((id(21), id(21))));
        p.handle_conflict();
        assert_eq!(p.state(), PushState::Superseded);
        assert_eq!(p.poll_batch(Cursor(22)), None);
        assert_eq!(
            p.handle_reconnected(None, Cursor(22), None, 1_000),
            Backfill::UpToDate
        );
        assert_eq!(p.state(), PushState::Superseded);
        let mut q = Pusher::new();
        q.handle_unreachable();
        assert_eq!(
            q.handle_reconnected(Some((id(3), true)), Cursor(5), None, 9),
            Backfill::Superseded { at: id(3) }
        );
        assert_eq!(q.state(), PushState::Superseded);
    }

    #[test]
    fn trim_and_gap() {
        let cases = [
            (1, 3, None),
            (3, 3, None),
            (4, 3, Some(2)),
            (1_000, 100, Some(901)),
            (5, 1, Some(5)),
            (5, 0, Some(5)),
        ];
        for (last, cap, floor) in cases {
            assert_eq!(trim_floor(id(last), cap), floor.map(id), "{last} {cap}");
        }
        let gaps = [
            (0, 1, None),
            (0, 5, Some((1, 4))),
            (3, 4, None),
            (3, 3, None),
            (3, 9, Some((4, 8))),
            (u64::MAX, 5, None),
        ];
        for (after, first, gap) in gaps {
            assert_eq!(
                read_gap(Cursor(after), id(first)),
                gap.map(|(a, b)| (id(a), id(b))),
                "{after} {first}"
            );
        }
        assert_eq!(index_cutoff_ms(10_000, Duration::from_secs(3)), 7_000);
        assert_eq!(index_cutoff_ms(1_000, Duration::from_secs(3)), 0);
    }

    #[test]
    fn record_round_trip() {
        let r = record();
        let pairs: Vec<(String, String)> = r
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(JobRecord::from_fields(&pairs), Ok(r));
        let mut extra = pairs.clone();
        extra.push(("future".into(), "x".into()));
        assert!(JobRecord::from_fields(&extra).is_ok());
        assert_eq!(
            JobRecord::from_fields(&pairs[1..]),
            Err(RecordError::Missing("owner"))
        );
        let mut bad = pairs;
        bad[2].1 = "soon".into();
        assert_eq!(
            JobRecord::from_fields(&bad),
            Err(RecordError::NotANumber("started_at_ms"))
        );
        assert_eq!(ServerId::from_random([0xab; 12]).as_str(), "ab".repeat(12));
    }

    // ---- the race property: any interleaving yields ids 1..n exactly once ----

    /// Redis's rule for `XADD` with an explicit id, and nothing else.
    #[derive(Clone, Default)]
    struct FakeStream(Vec<StreamEntry>);

    impl FakeStream {
        fn xadd(&mut self, entry: StreamEntry) -> Result<(), ()> {
            if self.0.last().is_some_and(|last| entry.id <= last.id) {
                return Err(());
            }
            self.0.push(entry);
            Ok(())
        }
    }

    /// One server's attempts, one Redis command per step.
    #[derive(Clone)]
    enum Actor {
        /// The owner pushing its events 1..=n (the last an exit) through a Pusher.
        Owner { pusher: Pusher, n: u64 },
        /// A server that judged the job lost: read the tail, then append.
        Ender {
            tail: Option<Option<StreamEntry>>,
            done: bool,
        },
    }

    impl Actor {
        fn done(&self) -> bool {
            match self {
                Actor::Owner { pusher, n } => {
                    pusher.state() == PushState::Superseded || pusher.pushed() == Cursor(*n)
                }
                Actor::Ender { done, .. } => *done,
            }
        }

        fn step(&mut self, stream: &mut FakeStream) {
            match self {
                Actor::Owner { pusher, n } => {
                    // One event per step, so every interleaving point is explored.
                    let Some((from, _)) = pusher.poll_batch(Cursor(*n)) else {
                        return;
                    };
                    let kind = if from.get() == *n { EXIT } else { "stdout" };
                    let entry = StreamEntry {
                        id: from,
                        kind: kind.into(),
                        data: "{}".into(),
                    };
                    match stream.xadd(entry) {
                        Ok(()) => pusher.handle_pushed(from),
                        Err(()) => pusher.handle_conflict(),
                    }
                }
                Actor::Ender { tail, done } => match tail.take() {
                    None => *tail = Some(stream.0.last().cloned()),
                    Some(last) => match end_lost_job(last.as_ref(), &record(), 0) {
                        EndAttempt::Done => *done = true,
                        EndAttempt::Append(entry) => {
                            // Refused: read again next step.
                            *done = stream.xadd(entry).is_ok();
                        }
                    },
                },
            }
        }
    }

    fn check_stream(stream: &FakeStream, schedule: &[usize]) {
        let ids: Vec<u64> = stream.0.iter().map(|e| e.id.get()).collect();
        let want: Vec<u64> = (1..=ids.len() as u64).collect();
        assert_eq!(
            ids, want,
            "ids not 1..n exactly once, schedule {schedule:?}"
        );
        let finals: Vec<u64> = stream
            .0
            .iter()
            .filter(|e| e.is_final())
            .map(|e| e.id.get())
            .collect();
        assert_eq!(
            finals,
            [ids.len() as u64],
            "not exactly one exit, last; schedule {schedule:?}"
        );
    }

    /// Every interleaving of the actors' steps (depth-first), checked at the end.
    fn explore(
        stream: FakeStream,
        actors: Vec<Actor>,
        schedule: &mut Vec<usize>,
        count: &mut usize,
    ) {
        if actors.iter().all(Actor::done) {
            check_stream(&stream, schedule);
            *count += 1;
            return;
        }
        for i in 0..actors.len() {
            if actors[i].done() {
                continue;
            }
            let (mut s, mut a) = (stream.clone(), actors.clone());
            a[i].step(&mut s);
            schedule.push(i);
            explore(s, a, schedule, count);
            schedule.pop();
        }
    }

    fn ender() -> Actor {
        Actor::Ender {
            tail: None,
            done: false,
        }
    }

    fn prefilled(n: u64) -> FakeStream {
        let mut s = FakeStream::default();
        for i in 1..=n {
            s.xadd(StreamEntry {
                id: id(i),
                kind: "stdout".into(),
                data: "{}".into(),
            })
            .unwrap();
        }
        s
    }

    #[test]
    fn any_interleaving_yields_each_id_once_and_one_end() {
        // Two servers racing to end a lost job, after 0..3 events of its dead owner.
        for pre in 0..4 {
            let mut count = 0;
            explore(
                prefilled(pre),
                vec![ender(), ender()],
                &mut Vec::new(),
                &mut count,
            );
            assert!(count >= 6, "{count}");
        }
        // A live owner wrongly judged lost (cut off from its peers), racing one or
        // two enders: the owner's events and one exit, never one id twice.
        for n in 1..6 {
            let mut count = 0;
            let owner = || Actor::Owner {
                pusher: Pusher::new(),
                n,
            };
            explore(
                FakeStream::default(),
                vec![owner(), ender()],
                &mut Vec::new(),
                &mut count,
            );
            if n < 4 {
                explore(
                    prefilled(0),
                    vec![owner(), ender(), ender()],
                    &mut Vec::new(),
                    &mut count,
                );
            }
            assert!(count > n as usize, "{count}");
        }
    }

    #[test]
    fn random_long_interleavings_keep_the_property() {
        // A small xorshift: deterministic, no dependency.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let n = 1 + next() % 200;
            let mut stream = prefilled(0);
            let mut actors = [
                Actor::Owner {
                    pusher: Pusher::new(),
                    n,
                },
                ender(),
                ender(),
            ];
            // The enders join at a random moment, as a lease check would.
            let join = next() % (n + 1);
            let mut schedule = Vec::new();
            while !actors.iter().all(Actor::done) {
                let live: Vec<usize> = (0..actors.len())
                    .filter(|&i| !actors[i].done() && (i == 0 || stream.0.len() as u64 >= join))
                    .collect();
                let live = if live.is_empty() {
                    (1..actors.len()).filter(|&i| !actors[i].done()).collect()
                } else {
                    live
                };
                let pick = live[(next() % live.len() as u64) as usize];
                schedule.push(pick);
                actors[pick].step(&mut stream);
            }
            check_stream(&stream, &[round]);
        }
    }

    // ---- wire bytes and remote jobs ----

    fn wires() -> Vec<Vec<u8>> {
        use crate::event::{self, ExitData, StartData};
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let argv = vec!["make".to_owned(), "-j2".to_owned()];
        event::encode_start(
            id(1),
            &StartData {
                command: "build",
                argv: &argv,
                pid: Some(42),
                started_at: "2026-12-05T00:00:00.000Z",
            },
            &mut buf,
        );
        out.push(std::mem::take(&mut buf));
        crate::sse::encode_output_event(
            id(2),
            crate::event::Stream::Stdout,
            "line \"one\"\r\n\u{1b}[0m é",
            &mut buf,
        );
        out.push(std::mem::take(&mut buf));
        event::encode_exit(
            id(3),
            &ExitData {
                code: Some(0),
                signal: None,
                duration_ms: 12,
                stdout_bytes: 19,
                stderr_bytes: 0,
                reason: None,
            },
            &mut buf,
        );
        out.push(buf);
        out
    }

    #[test]
    fn entries_carry_the_owners_wire_bytes_unchanged() {
        for (n, wire) in wires().iter().enumerate() {
            let entry = entry_from_wire(id(n as u64 + 1), wire).unwrap();
            let mut again = Vec::new();
            encode_entry(&entry, &mut again);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(wire)
            );
        }
        assert!(entry_from_wire(id(1), b": comment only\n\n").is_none());
    }

    #[test]
    fn foreign_entries_still_frame_correctly() {
        let entry = StreamEntry {
            id: id(9),
            kind: "bad\ntype".to_owned(),
            data: "a\nb".to_owned(),
        };
        let mut wire = Vec::new();
        encode_entry(&entry, &mut wire);
        assert_eq!(wire, b"id: 9\ndata: a\ndata: b\n\n");
    }

    fn remote_record() -> JobRecord {
        JobRecord {
            owner: "a".repeat(24),
            command: "build".into(),
            started_at_ms: 1_000,
            start: String::new(),
            last_id: 0,
            stdout_bytes: 5,
            stderr_bytes: 0,
        }
    }

    #[test]
    fn a_remote_job_serves_the_owners_ids_and_ends_with_its_exit() {
        let job = JobId::from_random([7; 16]);
        let mut remote = remote_job(job, &remote_record(), 1 << 20);
        assert!(remote.is_remote());
        let entries: Vec<StreamEntry> = wires()
            .iter()
            .enumerate()
            .map(|(n, w)| entry_from_wire(id(n as u64 + 1), w).unwrap())
            .collect();
        for e in &entries {
            remote.handle_remote_entry(e);
            remote.handle_remote_entry(e); // read twice: ignored
        }
        let wires = wires();
        for (n, wire) in wires.iter().enumerate() {
            assert_eq!(remote.log().get(n as u64 + 1), Some(&wire[..]));
        }
        assert_eq!(remote.log().last_visible(), 3);
        assert!(remote.log().is_complete());
        let status = remote.status();
        assert_eq!(status.state, "exited");
        assert_eq!(status.pid, Some(42));
        assert_eq!(status.argv, ["make", "-j2"]);
        assert_eq!(status.stdout_bytes, 19);
        // A stop request on a remote job is its owner's business.
        remote.handle_stop(crate::event::EndReason::Stopped, t0());
        let actions: Vec<_> = std::iter::from_fn(|| remote.poll_action()).collect();
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, crate::job::Action::Signal(_))),
            "{actions:?}"
        );
    }

    #[test]
    fn a_trimmed_remote_stream_becomes_a_gap_and_server_lost_ends_it() {
        let job = JobId::from_random([8; 16]);
        let mut rec = remote_record();
        rec.start = r#"{"command":"build","argv":["x"],"pid":7,"started_at":"t"}"#.into();
        let mut remote = remote_job(job, &rec, 1 << 20);
        assert_eq!(remote.log().last_visible(), 1);
        // Entries 2..=9 were trimmed: the reader's first entry is 10.
        remote.handle_remote_entry(&StreamEntry {
            id: id(10),
            kind: "stdout".into(),
            data: r#"{"text":"late"}"#.into(),
        });
        assert_eq!(remote.log().window_first(), 10);
        assert!(remote.log().get(1).is_some(), "start stays pinned");
        let params = crate::subscriber::SubscribeParams {
            last_event_id: None,
            tail: None,
            heartbeat_event: None,
        };
        let settings = crate::subscriber::StreamSettings {
            retry_ms: 1000,
            heartbeat: Duration::from_secs(15),
            heartbeat_event: false,
        };
        let mut sub =
            crate::subscriber::Subscriber::open(remote.log(), &params, &settings, 0, t0()).unwrap();
        let lost = match end_lost_job(
            Some(&StreamEntry {
                id: id(10),
                kind: "stdout".into(),
                data: "{}".into(),
            }),
            &rec,
            4_000,
        ) {
            EndAttempt::Append(e) => e,
            EndAttempt::Done => panic!("not ended yet"),
        };
        remote.handle_remote_entry(&lost);
        assert_eq!(remote.status().state, "lost");
        assert_eq!(
            remote.status().exit.unwrap().reason.as_deref(),
            Some(SERVER_LOST)
        );
        // What the trimmed stream in Redis holds now: 10 and the lost job's exit.
        let stream = [
            StreamEntry {
                id: id(10),
                kind: "stdout".into(),
                data: r#"{"text":"late"}"#.into(),
            },
            lost.clone(),
        ];
        let mut out = Vec::new();
        let mut n = 0;
        loop {
            match sub.poll_transmit(remote.log(), t0(), &mut out) {
                crate::subscriber::Next::End => break,
                crate::subscriber::Next::ReadStream { after, count } => {
                    let got: Vec<StreamEntry> = stream
                        .iter()
                        .filter(|e| e.id.get() > after.0)
                        .take(count)
                        .cloned()
                        .collect();
                    sub.handle_stream(remote.log(), after, Some(&got), t0(), &mut out);
                }
                _ => {}
            }
            n += 1;
            assert!(n < 10);
        }
        let text = String::from_utf8_lossy(&out);
        let gap = text.find("event: gap").expect(&text);
        assert!(text[gap..].contains(r#""from":2,"to":9"#), "{text}");
        assert!(text.find("id: 10").unwrap() > gap, "{text}");
        assert!(text.contains("server_lost"), "{text}");
    }

    #[test]
    fn server_lost_is_an_end_reason() {
        use crate::event::EndReason;
        assert_eq!(EndReason::ServerLost.as_str(), SERVER_LOST);
        assert_eq!(
            EndReason::from_name(SERVER_LOST),
            Some(EndReason::ServerLost)
        );
    }

    #[test]
    fn the_index_lists_running_and_ended_jobs() {
        let job = JobId::from_random([9; 16]);
        let mut rec = remote_record();
        rec.last_id = 4;
        let running = remote_status(job, &rec, None);
        assert_eq!(running.state, "running");
        assert_eq!(running.last_event_id, 4);
        assert_eq!(running.stdout_bytes, 5);
        let exit = match end_lost_job(None, &rec, 3_000) {
            EndAttempt::Append(e) => e,
            EndAttempt::Done => panic!(),
        };
        let ended = remote_status(job, &rec, Some(&exit));
        assert_eq!(ended.state, "lost");
        assert_eq!(ended.exit.unwrap().duration_ms, 2_000);
    }
}
