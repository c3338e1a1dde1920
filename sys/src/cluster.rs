//! The cluster driver (feature `redis`, docs/cluster.md): the threads that carry
//! out `spout_core::cluster`'s decisions against Redis for one server, shared by
//! both runtimes (the smol runtime runs them as plain threads too: redis-rs's
//! blocking client on a thread per job keeps one code path; it has not been
//! measured against redis-rs's async client, see docs/cluster.md).
//!
//! Per server:
//! - one *watch* thread: checks Redis every second (reporting up/down to the
//!   registry: `/healthz` and `POST /jobs` answer `503` while it is down), checks
//!   the command table once connected, and every `ttl/3` reads the job index (for
//!   the job list and its event streams) and judges the leases of the other
//!   servers' running jobs, ending lost ones with `server_lost`;
//! - one *control* reader: stop requests other servers sent for this server's jobs;
//! - per owned job, one *pusher*: an internal follower of the job's log that pushes
//!   each new range of events in one round trip, renews the lease, and backfills
//!   after an outage (same ids, nothing twice);
//! - per followed remote job, one *reader* (never one per subscriber): `XREAD
//!   BLOCK` into the job's log in the registry, which wakes its subscribers exactly
//!   like a local append.
//!
//! Request-path calls (a lookup of an unknown job, the index for `GET /jobs`, a
//! stop forwarded to the owner, a subscriber's read of history that left this
//! server's window) share one connection behind a lock and block: the
//! blocking runtime calls them on its connection threads, the smol runtime on its
//! blocking pool.
//!
//! Nothing here decides: ids, gaps, leases, verdicts and backfill are the core's.

use crate::driver::{log, Shared};
use crate::os;
use crate::redis_store::{Appended, RedisStore, StoreError};
use anyhow::anyhow;
use event_listener::Listener as _;
use spout_core::cluster::{
    self, Backfill, CommandTable, EndAttempt, JobKeys, Judgement, LeaseState, OwnerLease,
    PushState, Pusher, RedisUrl, ServerId, StreamEntry,
};
use spout_core::config::Config;
use spout_core::event::EndReason;
use spout_core::job::State;
use spout_core::registry::Inputs;
use spout_core::{Cursor, EventId, JobId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one Redis command may take before the connection counts as broken.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the watch thread looks at Redis, and how soon broken connections
/// are tried again.
const TICK: Duration = Duration::from_secs(1);
/// How long a reader's `XREAD BLOCK` waits before it looks at its job again.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one read takes.
const READ_COUNT: usize = 512;
/// The most archive bytes one push reads (events that left the memory window).
const ARCHIVE_READ: usize = 1 << 20;
/// Stack of the cluster's threads: a few locals; buffers live on the heap.
const STACK_BYTES: usize = 256 * 1024;

/// Wakes a local job's driver after its stop was requested (the blocking
/// runtime's job thread waits on a channel, not on the job's notifier).
pub type WakeDriver = Box<dyn Fn(JobId) + Send + Sync>;

/// One server's membership in a cluster. See the module docs.
pub struct Cluster {
    url: RedisUrl,
    server: ServerId,
    ttl: Duration,
    cap: u64,
    window_bytes: usize,
    list_limit: usize,
    table: CommandTable,
    shared: Arc<Shared>,
    wake: WakeDriver,
    /// The request path's connection.
    requests: Mutex<Option<RedisStore>>,
    /// Remote jobs this server follows (one reader each), by id: their owner.
    followed: Mutex<HashMap<JobId, String>>,
    /// Pushers still running (owned jobs whose `exit` is not in Redis yet).
    pushers: AtomicUsize,
    /// Every thread ends at its next look ([`Cluster::stop`]).
    stopping: AtomicBool,
    /// How long finished jobs stay in Redis (`limits.retention_s`).
    retention: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url.to_string())
            .field("server", &self.server)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new()
        .name(name.into())
        .stack_size(STACK_BYTES)
        .spawn(f)
    {
        log(&format!("cannot start thread {name}: {e}"));
    }
}

fn inputs() -> Inputs {
    Inputs {
        now: Instant::now(),
        wall: SystemTime::now(),
        random: os::random_bytes(),
    }
}

impl Cluster {
    /// Joins the cluster `config.redis` names (`None` without one): checks the
    /// command table when Redis answers, or says in one log line that it does not
    /// and keeps trying; then starts the watch and control threads.
    ///
    /// # Errors
    /// This server's commands differ from the cluster's (the message names the
    /// differences), or Redis refuses a command.
    pub fn start(shared: &Arc<Shared>, wake: WakeDriver) -> anyhow::Result<Option<Arc<Cluster>>> {
        let (url, ttl, cap, window_bytes, list_limit, table, retention) = {
            let registry = shared.lock();
            let config: &Config = registry.config();
            let Some(url) = config.redis.clone() else {
                return Ok(None);
            };
            (
                url,
                Duration::from_millis(config.redis_lease_ttl_ms),
                config.redis_max_events,
                config.limits.memory_window_bytes,
                config.limits.max_retained_jobs,
                CommandTable::new(&config.commands),
                Duration::from_secs(config.limits.retention_s),
            )
        };
        let random = os::random_bytes();
        let mut id = [0u8; 12];
        id.copy_from_slice(&random[..12]);
        let cluster = Arc::new(Cluster {
            url,
            server: ServerId::from_random(id),
            ttl,
            cap,
            window_bytes,
            list_limit,
            table,
            shared: shared.clone(),
            wake,
            requests: Mutex::new(None),
            followed: Mutex::new(HashMap::new()),
            pushers: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            retention,
        });
        let mut first = match RedisStore::connect(&cluster.url, COMMAND_TIMEOUT) {
            Ok(mut store) => {
                store.check_commands(&cluster.table).map_err(|e| match e {
                    StoreError::Mismatch(m) => anyhow!("{m}"),
                    other => anyhow!("redis at {}: {other}", cluster.url),
                })?;
                log(&format!(
                    "cluster: redis at {}, server id {}, lease ttl {} ms",
                    cluster.url,
                    cluster.server.as_str(),
                    cluster.ttl.as_millis()
                ));
                Some(store)
            }
            Err(e) => {
                log(&format!(
                    "cluster: redis at {} is unreachable ({e}); serving local jobs only, \
                     POST /jobs answers 503, retrying every second",
                    cluster.url
                ));
                shared.lock().handle_redis_state(Some(reason(&e)));
                None
            }
        };
        let checked = first.is_some();
        if let Some(store) = first.as_mut() {
            cluster.push_restored(store);
        }
        let watch = cluster.clone();
        spawn("spout-cluster-watch", move || watch.watch(first, checked));
        let ctl = cluster.clone();
        spawn("spout-cluster-ctl", move || ctl.control());
        Ok(Some(cluster))
    }

    /// This server's id in the cluster (the value of its leases).
    #[must_use]
    pub fn server_id(&self) -> &ServerId {
        &self.server
    }

    /// At shutdown, once every local job has ended: waits up to `bound` for the
    /// pushers to put the jobs' last events (their `exit`) in Redis, so other
    /// servers see how they ended rather than a lost owner.
    pub fn finish_pushes(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.pushers.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends every thread of this cluster member at its next look (within about a
    /// second): pushers stop pushing, readers stop reading, leases lapse.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// After a restart on the same data dir: jobs this server ran before it
    /// stopped, restored as `lost` (`server_restart`), whose streams in Redis have
    /// no end yet get their archived tail and that `exit` pushed (a backfill, so
    /// nothing twice), and other servers see the same end. One whose stream
    /// another server has ended already is left as it is.
    fn push_restored(self: &Arc<Cluster>, store: &mut RedisStore) {
        let lost: Vec<JobId> = {
            let registry = self.shared.lock();
            registry
                .job_ids()
                .iter()
                .copied()
                .filter(|id| {
                    registry
                        .with_job(*id, |j| j.state() == State::Lost && !j.is_remote())
                        .unwrap_or(false)
                })
                .collect()
        };
        for id in lost {
            let keys = JobKeys::new(&id);
            let Ok(Some(mut record)) = store.get_record(&keys) else {
                continue; // not a cluster job, or expired
            };
            if let Ok(Some(last)) = store.last_entry(&keys) {
                if last.is_final() {
                    continue;
                }
            }
            log(&format!(
                "job {id}: pushing its end (server_restart) to redis"
            ));
            record.owner = self.server.as_str().to_owned();
            let mut pusher = Pusher::new();
            pusher.handle_unreachable();
            let cluster = self.clone();
            self.pushers.fetch_add(1, Ordering::AcqRel);
            spawn("spout-cluster-push", move || {
                cluster
                    .clone()
                    .push_from(id, &mut record, Instant::now(), pusher);
                cluster.pushers.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    // ---- the request path ----

    fn with_requests<R>(
        &self,
        f: impl FnOnce(&mut RedisStore) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = lock(&self.requests);
        if guard.is_none() {
            *guard = Some(RedisStore::connect(&self.url, COMMAND_TIMEOUT)?);
        }
        // invariant: set just above when it was empty.
        let store = guard.as_mut().expect("connected");
        let result = f(store);
        if matches!(result, Err(StoreError::Unreachable(_))) {
            *guard = None;
        }
        result
    }

    /// A new local job (before its `201`): takes its lease, writes its record and
    /// adds it to the index, then starts its pusher. If Redis fails here the job
    /// still runs: the pusher takes the lease and backfills once Redis answers.
    pub fn own(self: &Arc<Cluster>, id: JobId) {
        let Some((command, created_ms)) = self
            .shared
            .lock()
            .with_job(id, |j| (j.command().to_owned(), j.created_ms()))
        else {
            return;
        };
        let keys = JobKeys::new(&id);
        let record = cluster::JobRecord {
            owner: self.server.as_str().to_owned(),
            command,
            started_at_ms: created_ms,
            start: String::new(),
            last_id: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
        };
        let sent = Instant::now();
        let taken = self.with_requests(|store| {
            let taken = store.acquire_lease(&keys, &self.server, self.ttl)?;
            store.put_record(&id, &keys, &record)?;
            Ok(taken)
        });
        match taken {
            Ok(true) => {}
            Ok(false) => log(&format!("job {id}: its lease is held by another server")),
            Err(e) => log(&format!(
                "job {id}: not yet in redis ({e}); pushed on return"
            )),
        }
        let cluster = self.clone();
        self.pushers.fetch_add(1, Ordering::AcqRel);
        spawn("spout-cluster-push", move || {
            cluster.clone().push(id, record, sent);
            cluster.pushers.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Makes job `id` known here if Redis has it (a request named a job this
    /// server does not hold): adds it to the registry as a remote job, reads its
    /// stream so far, and starts its one reader unless it has ended. Returns
    /// whether the registry now holds it.
    pub fn follow(self: &Arc<Cluster>, id: JobId) -> bool {
        if self.shared.slot(id).is_some() {
            return true;
        }
        let keys = JobKeys::new(&id);
        let record = match self.with_requests(|store| store.get_record(&keys)) {
            Ok(Some(record)) => record,
            Ok(None) => return false,
            Err(e) => {
                log(&format!("job {id}: cannot look it up in redis: {e}"));
                return false;
            }
        };
        let mut followed = lock(&self.followed);
        if self.shared.slot(id).is_some() {
            return true;
        }
        let job = cluster::remote_job(id, &record, self.window_bytes);
        self.shared.lock().insert_remote(job, inputs());
        let Some(slot) = self.shared.slot(id) else {
            return false;
        };
        // What the stream holds so far, before the request is answered: a resume
        // past the end gets its 204 at once, a status its state.
        let mut cursor = Cursor(slot.lock().log().last_visible());
        let mut ended = false;
        for _ in 0..64 {
            let read = self.with_requests(|store| store.read_after(&keys, cursor, READ_COUNT));
            let Ok(entries) = read else { break };
            ended = feed(&slot, &entries, &mut cursor);
            if ended || entries.len() < READ_COUNT {
                break;
            }
        }
        if !ended {
            followed.insert(id, record.owner.clone());
            let cluster = self.clone();
            spawn("spout-cluster-read", move || cluster.read(id, cursor));
        }
        true
    }

    /// Up to `count` entries of job `id`'s stream after `after` (`XRANGE`), for a
    /// subscriber whose next events left this server's memory window
    /// (`Next::ReadStream`); `None` when Redis cannot answer (the core retries).
    pub fn read_range(&self, id: JobId, after: Cursor, count: usize) -> Option<Vec<StreamEntry>> {
        let keys = JobKeys::new(&id);
        match self.with_requests(|store| store.read_after(&keys, after, count)) {
            Ok(entries) => Some(entries),
            Err(e) => {
                log(&format!("job {id}: reading its stream's history: {e}"));
                None
            }
        }
    }

    /// `DELETE` of a job another server owns: asks its owner (through the owner's
    /// control stream) to stop it. Returns whether the request reached Redis.
    pub fn forward_stop(&self, id: JobId) -> bool {
        let owner = lock(&self.followed).get(&id).cloned();
        let keys = JobKeys::new(&id);
        let sent = self.with_requests(|store| {
            let owner = match owner {
                Some(o) => o,
                None => match store.get_record(&keys)? {
                    Some(r) => r.owner,
                    None => return Ok(false),
                },
            };
            store.send_stop(&owner, &id)?;
            Ok(true)
        });
        match sent {
            Ok(sent) => sent,
            Err(e) => {
                log(&format!(
                    "job {id}: cannot forward the stop to its owner: {e}"
                ));
                false
            }
        }
    }

    /// Reads the index for `GET /jobs` and hands the other servers' jobs to the
    /// registry (a failure leaves the last listing).
    pub fn refresh_index(&self) {
        match self.with_requests(|store| store.list_jobs(self.list_limit)) {
            Ok(jobs) => {
                let statuses = jobs
                    .iter()
                    .map(|(id, record, last)| cluster::remote_status(*id, record, last.as_ref()))
                    .collect();
                self.shared.lock().handle_remote_index(statuses);
            }
            Err(e) => log(&format!("cannot read the job index from redis: {e}")),
        }
    }

    // ---- threads ----

    /// A reader thread's connection, made again when it has none; `None` (after
    /// waiting one tick) while Redis cannot be reached.
    fn connection<'a>(&self, store: &'a mut Option<RedisStore>) -> Option<&'a mut RedisStore> {
        if store.is_none() {
            match RedisStore::connect(&self.url, COMMAND_TIMEOUT) {
                Ok(s) => *store = Some(s),
                Err(_) => {
                    thread::sleep(TICK);
                    return None;
                }
            }
        }
        store.as_mut()
    }

    /// The watch thread: Redis up/down, the command check, lost owners.
    fn watch(self: Arc<Cluster>, mut store: Option<RedisStore>, mut checked: bool) {
        let mut connected_since = store.as_ref().map(|_| Instant::now());
        let mut down_logged = store.is_none();
        let mut next_scan = Instant::now() + cluster::renew_interval(self.ttl);
        let mut rechecked = checked;
        let tick = TICK.min(cluster::renew_interval(self.ttl));
        let mut last_ok: Option<Instant> = None;
        while !self.stopping() {
            thread::sleep(tick);
            if store.is_none() {
                match RedisStore::connect(&self.url, COMMAND_TIMEOUT) {
                    Ok(s) => {
                        store = Some(s);
                        rechecked = false;
                    }
                    Err(e) => {
                        self.report_down(&e, &mut down_logged);
                        connected_since = None;
                        continue;
                    }
                }
            }
            // invariant: connected just above when it was not.
            let s = store.as_mut().expect("connected");
            if !rechecked {
                // On every (re)connection: a Redis restarted empty has lost the
                // table, and the first server back publishes its own.
                match s.check_commands(&self.table) {
                    Ok(()) => {
                        checked = true;
                        rechecked = true;
                    }
                    Err(StoreError::Mismatch(m)) if !checked => {
                        // Started with Redis down; now the cluster says no. No
                        // job of ours can exist yet (`POST /jobs` answers 503 until
                        // this first check passes), so exiting loses nothing.
                        log(&format!("{m}"));
                        log("stopping: this server cannot join the cluster");
                        std::process::exit(2);
                    }
                    Err(StoreError::Mismatch(m)) => {
                        // Already serving: keep serving, but say so loudly.
                        log(&format!("cluster: after a redis restart, {m}"));
                        rechecked = true;
                    }
                    Err(e) => {
                        self.report_down(&e, &mut down_logged);
                        store = None;
                        continue;
                    }
                }
            }
            if let Err(e) = s.ping() {
                self.report_down(&e, &mut down_logged);
                store = None;
                connected_since = None;
                continue;
            }
            let now = Instant::now();
            // A Redis that stalled (stopped, swapping) without breaking the
            // connection counts as a reconnection: owners renew only once it
            // answers again, so their leases get a whole TTL before any judgement.
            if last_ok.is_some_and(|t| now.duration_since(t) > 2 * tick) {
                connected_since = Some(now);
            }
            last_ok = Some(now);
            let since = *connected_since.get_or_insert(now);
            if down_logged {
                down_logged = false;
                log(&format!("cluster: redis at {} answers again", self.url));
                self.shared.lock().handle_redis_state(None);
            }
            if now >= next_scan {
                next_scan = now + cluster::renew_interval(self.ttl);
                if let Err(e) = self.scan(s, since) {
                    self.report_down(&e, &mut down_logged);
                    store = None;
                    connected_since = None;
                }
            }
        }
    }

    fn report_down(&self, e: &StoreError, logged: &mut bool) {
        self.shared.lock().handle_redis_state(Some(reason(e)));
        if !*logged {
            *logged = true;
            log(&format!(
                "cluster: redis at {} is unreachable ({e}); retrying every second",
                self.url
            ));
        }
    }

    /// Judges the lease of every running job of the index that another server
    /// owns; ends the lost ones.
    fn scan(&self, store: &mut RedisStore, connected_since: Instant) -> Result<(), StoreError> {
        let jobs = store.list_jobs(self.list_limit)?;
        // The job list (and its event streams) see the other servers' jobs.
        let statuses = jobs
            .iter()
            .map(|(id, record, last)| cluster::remote_status(*id, record, last.as_ref()))
            .collect();
        self.shared.lock().handle_remote_index(statuses);
        for (id, record, last) in jobs {
            if record.owner == self.server.as_str() || last.as_ref().is_some_and(|e| e.is_final()) {
                continue;
            }
            let keys = JobKeys::new(&id);
            let seen = store.check_lease(&keys)?;
            let verdict =
                cluster::judge_lease(seen, false, connected_since, Instant::now(), self.ttl);
            if verdict == Judgement::Lost {
                self.end_lost(store, id, &keys, &record, last)?;
            }
        }
        Ok(())
    }

    /// Appends `server_lost` to a job whose owner is gone; a race with another
    /// server ends with one `exit` (the loser reads it and is done).
    fn end_lost(
        &self,
        store: &mut RedisStore,
        id: JobId,
        keys: &JobKeys,
        record: &cluster::JobRecord,
        mut last: Option<StreamEntry>,
    ) -> Result<(), StoreError> {
        for _ in 0..8 {
            match cluster::end_lost_job(last.as_ref(), record, unix_ms(SystemTime::now())) {
                EndAttempt::Done => return Ok(()),
                EndAttempt::Append(exit) => {
                    let at = exit.id;
                    match store.append(keys, &[exit], None)? {
                        Appended::All => {
                            let _ = store.expire_job(keys, self.retention);
                            log(&format!(
                                "job {id}: its owner {} is lost; ended it (server_lost, event {})",
                                record.owner,
                                at.get()
                            ));
                            return Ok(());
                        }
                        Appended::IdTaken => last = store.last_entry(keys)?,
                    }
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// The control reader: stop requests for this server's jobs.
    fn control(self: Arc<Cluster>) {
        let mut store: Option<RedisStore> = None;
        // The stream is this process's own (server ids are random per start): read
        // it from its beginning, so no request sent before this thread ran is lost.
        let mut after: Option<String> = None;
        while !self.stopping() {
            let Some(s) = self.connection(&mut store) else {
                continue;
            };
            let from = after.clone().unwrap_or_else(|| "0-0".to_owned());
            match s.read_ctl(&self.server, &from, READ_BLOCK) {
                Ok(requests) => {
                    for (entry, job) in requests {
                        after = Some(entry);
                        if let Some(id) = job {
                            self.stop_local(id);
                        }
                    }
                }
                Err(_) => {
                    store = None;
                    thread::sleep(TICK);
                }
            }
        }
    }

    fn stop_local(&self, id: JobId) {
        let now = Instant::now();
        let stopped = self.shared.lock().with_job(id, |job| {
            let running = !job.state().is_final() && !job.is_remote();
            if running {
                job.handle_stop(EndReason::Stopped, now);
            }
            running
        });
        if stopped == Some(true) {
            log(&format!("job {id}: stop requested by another server"));
            self.shared.notify(id);
            (self.wake)(id);
        }
    }

    /// A remote job's one reader: the stream into the job's log until its `exit`.
    fn read(self: Arc<Cluster>, id: JobId, mut cursor: Cursor) {
        let keys = JobKeys::new(&id);
        let mut store: Option<RedisStore> = None;
        while !self.stopping() {
            let Some(slot) = self.shared.slot(id) else {
                break; // dropped by retention
            };
            let Some(s) = self.connection(&mut store) else {
                continue;
            };
            match s.read_blocking(&keys, cursor, READ_COUNT, READ_BLOCK) {
                Ok(entries) => {
                    if feed(&slot, &entries, &mut cursor) {
                        break;
                    }
                }
                Err(e) => {
                    if !matches!(e, StoreError::Unreachable(_)) {
                        log(&format!("job {id}: reading its stream: {e}"));
                    }
                    store = None;
                    thread::sleep(TICK);
                }
            }
        }
        lock(&self.followed).remove(&id);
        // The job list shows its end.
        self.shared.lock().handle_job_changed(id);
    }

    /// An owned job's pusher: its log into its stream, its lease renewed, until
    /// its `exit` is in Redis (or another server ended it).
    fn push(self: Arc<Cluster>, id: JobId, mut record: cluster::JobRecord, leased_at: Instant) {
        self.push_from(id, &mut record, leased_at, Pusher::new());
    }

    /// The pusher's loop, from `pusher`'s state (an `Offline` one backfills first).
    fn push_from(
        self: Arc<Cluster>,
        id: JobId,
        record: &mut cluster::JobRecord,
        leased_at: Instant,
        mut pusher: Pusher,
    ) {
        let keys = JobKeys::new(&id);
        let Some(slot) = self.shared.slot(id) else {
            return;
        };
        let mut store: Option<RedisStore> = None;
        let mut retry_at = Instant::now();
        let mut lease = OwnerLease::new(self.ttl, leased_at);
        let mut record_dirty = false;
        while !self.stopping() {
            let listener = slot.listen_first();
            let now = Instant::now();
            let (last, exit_id, counts) = {
                let job = slot.lock();
                let log = job.log();
                (log.last_visible(), log.exit_id(), log.byte_counts())
            };
            if store.is_none() && now >= retry_at {
                match RedisStore::connect(&self.url, COMMAND_TIMEOUT) {
                    Ok(mut s) => {
                        if pusher.state() == PushState::Offline {
                            match s.last_entry(&keys) {
                                Ok(tail) => {
                                    let tail = tail.map(|e| (e.id, e.is_final()));
                                    let local_final = exit_id.and_then(EventId::new);
                                    let decision = pusher.handle_reconnected(
                                        tail,
                                        Cursor(last),
                                        local_final,
                                        self.cap,
                                    );
                                    if let Backfill::Push { from } = decision {
                                        log(&format!(
                                            "job {id}: redis is back; pushing from event {}",
                                            from.get()
                                        ));
                                    }
                                    store = Some(s);
                                    record_dirty = true;
                                }
                                Err(_) => retry_at = now + TICK,
                            }
                        } else {
                            store = Some(s);
                        }
                    }
                    Err(_) => retry_at = now + TICK,
                }
            }
            // Push what the log holds beyond what Redis has, a batch at a time.
            while let (Some(s), Some((from, to))) =
                (store.as_mut(), pusher.poll_batch(Cursor(last)))
            {
                let entries = entries(&self.shared, &slot, id, from, to);
                let Some(upto) = entries.last().map(|e| e.id) else {
                    if self.shared.archive.is_none() {
                        // `--memory`: gone from the window, kept nowhere; readers
                        // get a gap there.
                        pusher.handle_pushed(to);
                        continue;
                    }
                    // Archived but not readable now: try again, never skip.
                    log(&format!(
                        "job {id}: event {} is neither in memory nor readable in the archive yet; retrying",
                        from.get()
                    ));
                    retry_at = now + TICK;
                    break;
                };
                let floor = cluster::trim_floor(upto, self.cap);
                match s.append(&keys, &entries, floor) {
                    Ok(Appended::All) => {
                        if entries[0].id == EventId::FIRST {
                            record.start = entries[0].data.clone();
                            record_dirty = true;
                        }
                        pusher.handle_pushed(upto);
                    }
                    Ok(Appended::IdTaken) => pusher.handle_conflict(),
                    Err(e) => {
                        if !matches!(e, StoreError::Unreachable(_)) {
                            log(&format!("job {id}: push failed: {e}"));
                        }
                        pusher.handle_unreachable();
                        store = None;
                        retry_at = now + TICK;
                    }
                }
            }
            if lease.poll_renew(now) {
                let outcome = match store.as_mut() {
                    Some(s) => s.renew_lease(&keys, &self.server, self.ttl),
                    None => cluster::RenewOutcome::Unreachable,
                };
                lease.handle_renew(outcome, now);
                record_dirty = true;
            }
            if record_dirty && pusher.state() == PushState::Live {
                if let Some(s) = store.as_mut() {
                    record.last_id = pusher.pushed().0;
                    (record.stdout_bytes, record.stderr_bytes) = counts;
                    match s.put_record(&id, &keys, record) {
                        Ok(()) => record_dirty = false,
                        Err(_) => {
                            pusher.handle_unreachable();
                            store = None;
                            retry_at = now + TICK;
                        }
                    }
                }
            }
            if pusher.state() == PushState::Superseded || lease.state() == LeaseState::Lost {
                log(&format!(
                    "job {id}: another server ended it while redis was out of reach; stopping it"
                ));
                slot.lock().handle_stop(EndReason::ServerLost, now);
                slot.notify();
                (self.wake)(id);
                return;
            }
            if exit_id.is_some_and(|x| pusher.pushed().0 >= x) && !record_dirty {
                // Everything is in Redis; the lease may lapse. The job stays
                // replayable from any server for the retention time.
                if let Some(s) = store.as_mut() {
                    let _ = s.expire_job(&keys, self.retention);
                }
                return;
            }
            let mut deadline = lease.poll_timeout();
            if store.is_none() {
                deadline = Some(deadline.map_or(retry_at, |d| d.min(retry_at)));
            }
            match deadline {
                Some(t) => {
                    let _ = listener.wait_deadline(t);
                }
                None => listener.wait(),
            }
        }
    }
}

/// Why Redis is out of reach, for `/healthz` (which says "redis unreachable").
fn reason(e: &StoreError) -> String {
    match e {
        StoreError::Unreachable(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Feeds entries read from a remote job's stream into its log and wakes its
/// subscribers; returns whether the `exit` came.
fn feed(slot: &crate::driver::JobSlot, entries: &[StreamEntry], cursor: &mut Cursor) -> bool {
    if entries.is_empty() {
        return false;
    }
    let mut ended = false;
    {
        let mut job = slot.lock();
        for entry in entries {
            job.handle_remote_entry(entry);
            *cursor = Cursor(entry.id.get());
            ended |= entry.is_final();
        }
    }
    slot.notify();
    ended
}

/// The entries of events `from..`, at most up to `to`, always starting at `from`
/// and without holes (a push must never leave an id out): from the log's memory
/// window, or, for events that left it (a slow push, a long Redis outage), from
/// the job's archive file (at most a MiB of it per batch). Empty when `from` is in
/// neither.
fn entries(
    shared: &Shared,
    slot: &crate::driver::JobSlot,
    id: JobId,
    from: EventId,
    to: EventId,
) -> Vec<StreamEntry> {
    let position = {
        let job = slot.lock();
        let log = job.log();
        if from.get() >= log.window_first() {
            None
        } else {
            log.archive_position(from.get())
        }
    };
    if let (Some((offset, first)), Some(archive)) = (position, &shared.archive) {
        // The file is read without the job's lock.
        let bytes = archive
            .open_events(&id.to_string())
            .and_then(|reader| reader.read_at(offset, ARCHIVE_READ));
        if let Ok(bytes) = bytes {
            let found = contiguous(
                from,
                spout_core::archive::scan(&bytes, first)
                    .records
                    .iter()
                    .filter(|r| r.id >= from && r.id <= to)
                    .map(|r| cluster::entry_from_wire(r.id, r.wire)),
            );
            if !found.is_empty() {
                return found;
            }
        }
    }
    let job = slot.lock();
    let log = job.log();
    contiguous(
        from,
        (from.get()..=to.get()).map(|n| {
            let id = EventId::new(n)?;
            cluster::entry_from_wire(id, log.get(n)?)
        }),
    )
}

/// The leading run of `found` that starts at `from` and goes up by one: what may
/// be pushed without leaving an id out.
fn contiguous(from: EventId, found: impl Iterator<Item = Option<StreamEntry>>) -> Vec<StreamEntry> {
    let mut run = Vec::new();
    let mut next = from.get();
    for entry in found {
        match entry {
            Some(e) if e.id.get() == next => {
                next += 1;
                run.push(e);
            }
            _ => break,
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Option<StreamEntry> {
        Some(StreamEntry {
            id: EventId::new(n)?,
            kind: "stdout".into(),
            data: format!(r#"{{"text":"{n}\n"}}"#),
        })
    }

    fn ids(run: &[StreamEntry]) -> Vec<u64> {
        run.iter().map(|e| e.id.get()).collect()
    }

    #[test]
    fn a_push_never_leaves_an_id_out() {
        let from = EventId::new(5).unwrap();
        let whole = contiguous(from, (5..=8).map(entry));
        assert_eq!(ids(&whole), [5, 6, 7, 8]);
        // The memory window starts later (5 and 6 left it): nothing, not 7..=8.
        assert!(contiguous(from, [None, None, entry(7), entry(8)].into_iter()).is_empty());
        // A hole in the middle: only what comes before it.
        let cut = contiguous(from, [entry(5), None, entry(7)].into_iter());
        assert_eq!(ids(&cut), [5]);
        // Records that do not start at `from` (a read that did not reach it).
        assert!(contiguous(from, [entry(6), entry(7)].into_iter()).is_empty());
    }
}
