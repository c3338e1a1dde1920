//! The Redis side of a spout cluster (docs/cluster.md): one blocking connection
//! (redis-rs, no async runtime) and the operations `spout_core::cluster`'s model
//! needs, each one round trip (the scripts are sent with plain `EVAL`: they are
//! small, and redis-rs's `script` feature would add a SHA-1 crate for `EVALSHA`). Nothing here decides: which ids to push, when a lease
//! is lost, what a gap is, whether two command tables match is the core's business;
//! this file only carries the commands out and turns replies into core types.
//!
//! Unlike the rest of this crate, these calls block on a socket: the blocking
//! runtime calls them from its threads, the smol runtime from a thread of its own
//! (`smol::unblock`), one reader per job per server (plan in docs/cluster.md).

use std::fmt;
use std::time::Duration;

use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{Commands, Connection, RedisError};
use spout_core::cluster::{
    self, CommandTable, EntryError, JobKeys, JobRecord, LeaseSeen, RecordError, RedisUrl,
    RenewOutcome, ServerId, StoredTable, StreamEntry, TableCheck, TableMismatch, COMMANDS_KEY,
    JOBS_KEY, TABLE_DIGEST_FIELD, TABLE_JSON_FIELD,
};
use spout_core::{Cursor, EventId, JobId};

/// What went wrong talking to Redis.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis could not be reached, or the connection broke or timed out: retry later.
    Unreachable(RedisError),
    /// Redis answered with an error (a bug, or a key of the wrong type).
    Redis(RedisError),
    /// Redis holds a stream entry spout did not write.
    Entry(EntryError),
    /// Redis holds a job record spout cannot read.
    Record(RecordError),
    /// This server's commands differ from the cluster's: do not start.
    Mismatch(TableMismatch),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unreachable(e) => write!(f, "redis is unreachable: {e}"),
            StoreError::Redis(e) => write!(f, "redis refused a command: {e}"),
            StoreError::Entry(e) => write!(f, "redis holds a foreign stream entry: {e}"),
            StoreError::Record(e) => write!(f, "redis holds a foreign job record: {e}"),
            StoreError::Mismatch(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> StoreError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            StoreError::Unreachable(e)
        } else {
            StoreError::Redis(e)
        }
    }
}

/// The outcome of an append with explicit ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Appended {
    /// Every entry was added.
    All,
    /// The first id was not greater than the stream's last: nothing was added
    /// (another writer holds that id).
    IdTaken,
}

/// Appends entries with their explicit ids, all or nothing, in one round trip: the
/// first `XADD` decides (Redis refuses an id not greater than the last); the script
/// runs atomically, so nobody interleaves, and the rest follow on. Optionally trims
/// (`MINID ~`, whole macro nodes: cheap, keeps at least the floor) and records the
/// last id in the job record.
const APPEND: &str = r"
local first = redis.pcall('XADD', KEYS[1], ARGV[3], 't', ARGV[4], 'd', ARGV[5])
if type(first) == 'table' and first.err then return -1 end
for i = 6, #ARGV, 3 do
  redis.call('XADD', KEYS[1], ARGV[i], 't', ARGV[i + 1], 'd', ARGV[i + 2])
end
if ARGV[1] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'last_id', ARGV[2]) end
return 1
";

/// Renews a lease that is ours, takes it again if it expired, refuses if another
/// server holds it: 1 renewed, 0 held by another.
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Publishes a command table if none is there, both fields at once.
const PUBLISH: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
end
return 1
";

/// One blocking connection to the cluster's Redis.
pub struct RedisStore {
    con: Connection,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Connects to `url`; every later command gives up after `timeout` (a blocking
    /// read waits its own time plus this).
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] when Redis does not answer.
    pub fn connect(url: &RedisUrl, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url.to_string())?;
        let con = client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(RedisStore { con, timeout })
    }

    /// Checks this server's command table against the cluster's, publishing it
    /// when it is the first (the core's [`CommandTable::check`] decides).
    ///
    /// # Errors
    /// [`StoreError::Mismatch`] naming the difference; Redis errors.
    pub fn check_commands(&mut self, table: &CommandTable) -> Result<(), StoreError> {
        for _ in 0..2 {
            let (digest, json): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(COMMANDS_KEY)
                .arg(TABLE_DIGEST_FIELD)
                .arg(TABLE_JSON_FIELD)
                .query(&mut self.con)?;
            let stored = match (&digest, &json) {
                (Some(digest), Some(json)) => Some(StoredTable { digest, json }),
                _ => None,
            };
            match table.check(stored).map_err(StoreError::Mismatch)? {
                TableCheck::Same => return Ok(()),
                _ => {
                    // Both fields at once, only if absent; then read again, since
                    // another server may have published first.
                    redis::cmd("EVAL")
                        .arg(PUBLISH)
                        .arg(1)
                        .arg(COMMANDS_KEY)
                        .arg(TABLE_DIGEST_FIELD)
                        .arg(table.digest())
                        .arg(TABLE_JSON_FIELD)
                        .arg(table.json())
                        .query::<i64>(&mut self.con)?;
                }
            }
        }
        // Published and still not the same: only a concurrent odd writer does that.
        let again: Option<String> = self.con.hget(COMMANDS_KEY, TABLE_DIGEST_FIELD)?;
        Err(StoreError::Mismatch(TableMismatch {
            ours: table.digest().to_owned(),
            theirs: again.unwrap_or_default(),
            differences: vec!["the table in Redis changed while this server checked it".into()],
        }))
    }

    /// Appends `entries` (ids increasing by one) to the job's stream, all or
    /// nothing, in one round trip; trims below `trim_floor` and records the last id.
    ///
    /// # Errors
    /// Redis errors; an id conflict is `Ok(Appended::IdTaken)`, not an error.
    pub fn append(
        &mut self,
        keys: &JobKeys,
        entries: &[StreamEntry],
        trim_floor: Option<EventId>,
    ) -> Result<Appended, StoreError> {
        let Some(last) = entries.last() else {
            return Ok(Appended::All);
        };
        let mut script = redis::cmd("EVAL");
        script
            .arg(APPEND)
            .arg(2)
            .arg(&keys.events)
            .arg(&keys.record)
            .arg(trim_floor.map(cluster::stream_id).unwrap_or_default())
            .arg(last.id.get());
        for entry in entries {
            script
                .arg(cluster::stream_id(entry.id))
                .arg(&entry.kind)
                .arg(&entry.data);
        }
        let outcome: i64 = script.query(&mut self.con)?;
        Ok(if outcome == 1 {
            Appended::All
        } else {
            Appended::IdTaken
        })
    }

    /// Up to `count` entries after `after`, oldest first (`XRANGE (0-N + COUNT`).
    ///
    /// # Errors
    /// Redis errors; a foreign entry.
    pub fn read_after(
        &mut self,
        keys: &JobKeys,
        after: Cursor,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let start = format!("({}", cluster::after_id(after));
        let reply: StreamRangeReply = self.con.xrange_count(&keys.events, start, "+", count)?;
        reply.ids.iter().map(entry).collect()
    }

    /// Like [`RedisStore::read_after`], but waits up to `block` for the first entry
    /// (`XREAD BLOCK`); empty when none came.
    ///
    /// # Errors
    /// Redis errors; a foreign entry.
    pub fn read_blocking(
        &mut self,
        keys: &JobKeys,
        after: Cursor,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        self.con.set_read_timeout(Some(block + self.timeout))?;
        let options = StreamReadOptions::default()
            .count(count)
            .block(usize::try_from(millis(block)).unwrap_or(usize::MAX));
        let reply: Result<StreamReadReply, _> =
            self.con
                .xread_options(&[&keys.events], &[cluster::after_id(after)], &options);
        self.con.set_read_timeout(Some(self.timeout))?;
        let reply = reply?;
        reply
            .keys
            .iter()
            .flat_map(|k| k.ids.iter())
            .map(entry)
            .collect()
    }

    /// The stream's last entry (`XREVRANGE + - COUNT 1`); `None` when it is empty or
    /// gone.
    ///
    /// # Errors
    /// Redis errors; a foreign entry.
    pub fn last_entry(&mut self, keys: &JobKeys) -> Result<Option<StreamEntry>, StoreError> {
        let reply: StreamRangeReply = self.con.xrevrange_count(&keys.events, "+", "-", 1)?;
        reply.ids.first().map(entry).transpose()
    }

    /// Trims the stream below `floor` exactly (`XTRIM MINID =`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn trim(&mut self, keys: &JobKeys, floor: EventId) -> Result<(), StoreError> {
        redis::cmd("XTRIM")
            .arg(&keys.events)
            .arg("MINID")
            .arg("=")
            .arg(cluster::stream_id(floor))
            .query::<i64>(&mut self.con)?;
        Ok(())
    }

    /// Writes the job record and adds the job to the index, scored by its start
    /// time, in one round trip.
    ///
    /// # Errors
    /// Redis errors.
    pub fn put_record(
        &mut self,
        job: &JobId,
        keys: &JobKeys,
        record: &JobRecord,
    ) -> Result<(), StoreError> {
        redis::pipe()
            .hset_multiple(&keys.record, &record.fields())
            .ignore()
            .zadd(JOBS_KEY, job.to_string(), record.started_at_ms)
            .ignore()
            .query::<()>(&mut self.con)?;
        Ok(())
    }

    /// The job record, `None` when there is none.
    ///
    /// # Errors
    /// Redis errors; a record spout cannot read.
    pub fn get_record(&mut self, keys: &JobKeys) -> Result<Option<JobRecord>, StoreError> {
        let fields: Vec<(String, String)> = self.con.hgetall(&keys.record)?;
        if fields.is_empty() {
            return Ok(None);
        }
        JobRecord::from_fields(&fields)
            .map(Some)
            .map_err(StoreError::Record)
    }

    /// Takes the lease if nobody holds it (`SET NX PX`); false when another does.
    ///
    /// # Errors
    /// Redis errors.
    pub fn acquire_lease(
        &mut self,
        keys: &JobKeys,
        server: &ServerId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&keys.lease)
            .arg(server.as_str())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query(&mut self.con)?;
        Ok(set.is_some())
    }

    /// Renews the lease if it is ours or gone; never fails: a broken connection is
    /// [`RenewOutcome::Unreachable`], which the core's lease handles.
    pub fn renew_lease(
        &mut self,
        keys: &JobKeys,
        server: &ServerId,
        ttl: Duration,
    ) -> RenewOutcome {
        let result: Result<i64, _> = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(&keys.lease)
            .arg(server.as_str())
            .arg(millis(ttl))
            .query(&mut self.con);
        match result {
            Ok(1) => RenewOutcome::Renewed,
            Ok(_) => RenewOutcome::HeldByOther,
            Err(_) => RenewOutcome::Unreachable,
        }
    }

    /// Whether the lease key exists.
    ///
    /// # Errors
    /// Redis errors.
    pub fn check_lease(&mut self, keys: &JobKeys) -> Result<LeaseSeen, StoreError> {
        let exists: bool = self.con.exists(&keys.lease)?;
        Ok(if exists {
            LeaseSeen::Held
        } else {
            LeaseSeen::Absent
        })
    }
}

impl RedisStore {
    /// A finished job's keys (stream, record, lease) expire after `retention`, in
    /// one round trip.
    ///
    /// # Errors
    /// Redis errors.
    pub fn expire_job(&mut self, keys: &JobKeys, retention: Duration) -> Result<(), StoreError> {
        let ms = millis(retention);
        redis::pipe()
            .pexpire(&keys.events, i64::try_from(ms).unwrap_or(i64::MAX))
            .ignore()
            .pexpire(&keys.record, i64::try_from(ms).unwrap_or(i64::MAX))
            .ignore()
            .query::<()>(&mut self.con)?;
        Ok(())
    }

    /// One round trip that proves the connection works (`PING`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn ping(&mut self) -> Result<(), StoreError> {
        redis::cmd("PING").query::<String>(&mut self.con)?;
        Ok(())
    }

    /// Asks server `owner` to stop job `job`: one entry on the owner's control
    /// stream ([`cluster::ctl_key`]), capped at about [`cluster::CTL_MAX_LEN`].
    ///
    /// # Errors
    /// Redis errors.
    pub fn send_stop(&mut self, owner: &str, job: &JobId) -> Result<(), StoreError> {
        redis::cmd("XADD")
            .arg(cluster::ctl_key(owner))
            .arg("MAXLEN")
            .arg("~")
            .arg(cluster::CTL_MAX_LEN)
            .arg("*")
            .arg(cluster::CTL_STOP_FIELD)
            .arg(job.to_string())
            .query::<String>(&mut self.con)?;
        Ok(())
    }

    /// Stop requests on `server`'s control stream after entry `after`, waiting up
    /// to `block` for the first: `(entry id, job)` pairs; entries that name no job
    /// are skipped (their ids still move the cursor).
    ///
    /// # Errors
    /// Redis errors.
    pub fn read_ctl(
        &mut self,
        server: &ServerId,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, Option<JobId>)>, StoreError> {
        self.con.set_read_timeout(Some(block + self.timeout))?;
        let options = StreamReadOptions::default()
            .count(64)
            .block(usize::try_from(millis(block)).unwrap_or(usize::MAX));
        let reply: Result<StreamReadReply, _> =
            self.con
                .xread_options(&[cluster::ctl_key(server.as_str())], &[after], &options);
        self.con.set_read_timeout(Some(self.timeout))?;
        Ok(reply?
            .keys
            .iter()
            .flat_map(|k| k.ids.iter())
            .map(|e| {
                let job = e
                    .map
                    .get(cluster::CTL_STOP_FIELD)
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                    .and_then(|text| JobId::parse(&text));
                (e.id.clone(), job)
            })
            .collect())
    }

    /// The newest `limit` jobs of the index with their records and their streams'
    /// last entries, in one pipelined round trip after the index read; jobs whose
    /// record is gone (expired with retention) are left out and dropped from the
    /// index.
    ///
    /// # Errors
    /// Redis errors; a record or entry spout cannot read.
    pub fn list_jobs(
        &mut self,
        limit: usize,
    ) -> Result<Vec<(JobId, JobRecord, Option<StreamEntry>)>, StoreError> {
        let stop = isize::try_from(limit.max(1)).unwrap_or(isize::MAX) - 1;
        let ids: Vec<String> = self.con.zrevrange(JOBS_KEY, 0, stop)?;
        let ids: Vec<JobId> = ids.iter().filter_map(|t| JobId::parse(t)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            let keys = JobKeys::new(id);
            pipe.hgetall(&keys.record);
            pipe.cmd("XREVRANGE")
                .arg(&keys.events)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let replies: Vec<redis::Value> = pipe.query(&mut self.con)?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, pair) in ids.into_iter().zip(replies.chunks(2)) {
            let [record, last] = pair else { continue };
            let fields: Vec<(String, String)> = redis::from_redis_value(record)?;
            if fields.is_empty() {
                // Expired with retention ([`RedisStore::expire_job`]).
                gone.push(id.to_string());
                continue;
            }
            let record = JobRecord::from_fields(&fields).map_err(StoreError::Record)?;
            let last: StreamRangeReply = redis::from_redis_value(last)?;
            let last = last.ids.first().map(entry).transpose()?;
            out.push((id, record, last));
        }
        if !gone.is_empty() {
            self.con.zrem::<_, _, i64>(JOBS_KEY, gone)?;
        }
        Ok(out)
    }
}

fn entry(id: &StreamId) -> Result<StreamEntry, StoreError> {
    let fields: Vec<(String, Vec<u8>)> = id
        .map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<Vec<u8>>(v)
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect();
    StreamEntry::from_redis(&id.id, &fields).map_err(StoreError::Entry)
}
