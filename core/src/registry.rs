//! The server's state and its answers: every job, the limits, the metrics, and the
//! decision for each HTTP request. Both runtimes keep one `Registry` behind one lock
//! and call [`Registry::handle`] for every request; they never decide a status or a
//! header themselves.
//!
//! Each job lives in a [`JobCell`] of the runtime's choosing (a `Mutex` there; the
//! core holds no lock), shared through an `Arc`: a job's driver and its streams get
//! the handle once ([`Registry::cell`]) and then touch only that job, so output
//! flowing through one job never waits for the registry or for another job.
//!
//! Lock order: the registry, then a job; never the reverse. The registry's methods
//! enter job cells while the runtime holds the registry; a runtime that holds a job's
//! cell calls no registry method until it has let the job go.
//!
//! Rules:
//! 1. A request is routed, checked against CORS and tokens, then answered. Errors
//!    are JSON with the right status ([`ApiError`]).
//! 2. `POST /jobs` creates a `Starting` job and returns [`Reply::Spawn`]: the runtime
//!    spawns the process and reports back to the job. At most `max_running_jobs`
//!    jobs run at once (`429` + `Retry-After` past it).
//! 3. `GET /jobs/{id}/events` opens a [`Subscriber`] ([`Reply::Stream`]); at most
//!    `max_subscribers` at once (`503` + `Retry-After`). The runtime calls
//!    [`Registry::unsubscribe`] when the stream ends, however it ends.
//! 4. Finished jobs are kept up to `max_retained_jobs` and `retention_s`; older ones
//!    are dropped and named by [`Registry::poll_expired`] so the runtime deletes
//!    their files.
//! 5. Every change to the set of jobs is recorded in the [`Feed`]: a job created,
//!    dropped by retention, or (when the runtime reports it with
//!    [`Registry::handle_job_changed`]) in a new state. `GET /jobs` with
//!    `Accept: text/event-stream` ([`http::wants_event_stream`]) streams it
//!    ([`Reply::JobList`], counted against `max_subscribers`); the runtime drives
//!    it with [`Registry::poll_list`], wakes it when [`Registry::list_version`] moves,
//!    and calls [`Registry::unsubscribe_list`] when it ends.

use crate::assembler::AssemblerConfig;
use crate::config::{CommandSpec, Config};
use crate::event::EndReason;
use crate::feed::{ChangeKind, Feed, ListSubscriber};
use crate::gzip::{self, BodyEncoder};
use crate::http::{self, ApiError, ContentCoding, Request, Response, ResponseHead, Route};
use crate::id::JobId;
use crate::job::{Job, JobSettings, ALL_STATES};
use crate::link::{self, LinkError, LinkKey};
use crate::log::Persistence;
use crate::subscriber::{Next, Refusal, StreamSettings, SubscribeParams, Subscriber};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The built-in viewer page, embedded in both binaries.
pub const VIEWER_HTML: &str = include_str!("viewer.html");

/// Seconds a client is told to wait when a limit is reached.
const RETRY_AFTER_S: u32 = 5;

/// What the runtime supplies with each request: the clock and randomness.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// Monotonic now.
    pub now: Instant,
    /// Wall-clock now.
    pub wall: SystemTime,
    /// 16 bytes of OS randomness (a new job's id, a stream's jitter).
    pub random: [u8; 16],
}

/// What the runtime must run for a new job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnPlan {
    /// The full argv (template plus allowed user args). Never run through a shell.
    pub argv: Vec<String>,
    /// The working directory, if the command sets one.
    pub cwd: Option<String>,
    /// The command's own environment (with `TERM` on a pseudo-terminal, see
    /// [`CommandSpec::job_env`](crate::config::CommandSpec::job_env)); the runtime
    /// starts from an empty one and adds only `PATH` besides these.
    pub env: BTreeMap<String, String>,
    /// Run on a pseudo-terminal of this size (stdout and stderr are then the one
    /// terminal, read as `stdout`); `None`: on pipes.
    pub pty: Option<crate::config::PtySize>,
}

/// The answer to one request.
#[must_use]
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A complete response.
    Full(Response),
    /// A job was created: write `response`, spawn `plan`, report to job `job`.
    Spawn {
        /// `201` with `Location` and the status document.
        response: Response,
        /// The new job.
        job: JobId,
        /// What to run.
        plan: SpawnPlan,
    },
    /// An event stream: write `head`, then drive `subscriber` on job `job`.
    Stream {
        /// The `200` SSE head.
        head: ResponseHead,
        /// The job watched.
        job: JobId,
        /// The cursor.
        subscriber: Subscriber,
    },
    /// The raw output log of an archived job: write `head`, then the bytes of its
    /// `output.log` (chunked) up to [`raw_log_len`]; with `follow`, keep going until
    /// the job is complete ([`raw_log_next`]).
    RawLog {
        /// The `200` chunked text head.
        head: ResponseHead,
        /// The job.
        job: JobId,
        /// `?follow=1`.
        follow: bool,
        /// Encodes the bytes read in the negotiated coding: every piece read goes
        /// through [`BodyEncoder::encode`], and [`BodyEncoder::finish`] ends the body.
        body: BodyEncoder,
    },
    /// The live job list: write `head`, then drive `subscriber` with
    /// [`Registry::poll_list`] until the client goes away.
    JobList {
        /// The `200` SSE head.
        head: ResponseHead,
        /// The cursor into the feed.
        subscriber: ListSubscriber,
    },
    /// A job was asked to stop: write `response`, then wake the job's driver so it
    /// drains the job's actions (the SIGTERM).
    Stopping {
        /// `202` with the status document.
        response: Response,
        /// The job.
        job: JobId,
    },
}

impl Reply {
    /// The status the reply answers with (for the request log).
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Reply::Full(r)
            | Reply::Spawn { response: r, .. }
            | Reply::Stopping { response: r, .. } => r.head.status,
            Reply::Stream { head, .. }
            | Reply::RawLog { head, .. }
            | Reply::JobList { head, .. } => head.status,
        }
    }
}

/// How long a `/log?follow=1` response of a quiet job waits (for [`LogNext::Wait`])
/// before it looks again: at its client, where a runtime cannot wait on the job
/// and the socket at once (spout-blocking), so a client that left a quiet follow
/// is let go within this time. Any output, or the job's end, wakes it sooner.
pub const FOLLOW_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// What a raw-log response does next ([`raw_log_next`]).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogNext {
    /// Send the log's bytes up to this offset.
    Read {
        /// End offset (exclusive).
        upto: u64,
    },
    /// Wait for the job to write more (at most [`FOLLOW_CHECK`]).
    Wait,
    /// End the response.
    End,
}

/// The answer to `POST /jobs/{id}/links`.
#[derive(Serialize)]
struct LinkDoc {
    /// The signature, for `?sig=` on the job's status, events and log.
    sig: String,
    /// The viewer's page for the job, with the signature (relative: the server
    /// cannot know the origin its users reach it by, behind a proxy).
    url: String,
    /// When the link stops working (RFC 3339, UTC).
    expires_at: String,
}

/// Whole seconds since the Unix epoch (0 before it).
fn unix_s(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Events written to subscribers.
    pub events_sent: u64,
    /// Bytes written to subscribers (SSE bytes, before chunk framing).
    pub bytes_sent: u64,
    /// Streams that ended because the client went away or a write failed.
    pub drops: u64,
    /// Requests answered.
    pub requests: u64,
    /// Jobs started since the server started.
    pub jobs_started: u64,
}

/// Where the registry keeps one job: a cell the runtime provides, entered for the
/// length of one core call. A runtime puts the job behind its own lock (and may keep
/// a notifier beside it); [`RefCell`] serves single-threaded tests and simulators.
///
/// Entering a cell must not enter the registry (see the lock order in the module
/// docs), and `f` never re-enters the same cell.
pub trait JobCell {
    /// A cell holding `job`.
    fn new(job: Job) -> Self;

    /// Runs `f` on the job, exclusively.
    fn with<R>(&self, f: impl FnOnce(&mut Job) -> R) -> R;
}

impl JobCell for RefCell<Job> {
    fn new(job: Job) -> Self {
        RefCell::new(job)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Job) -> R) -> R {
        // invariant: the registry enters a cell only for one core call, never nested.
        f(&mut self.borrow_mut())
    }
}

/// What streams wrote, counted without the registry: every stream adds to these
/// per write, and `/metrics` reads them. Shared by `Arc` ([`Registry::sent`]).
#[derive(Debug, Default)]
pub struct SentCounters {
    events: AtomicU64,
    bytes: AtomicU64,
}

impl SentCounters {
    /// Counts `events` events and `bytes` bytes written to a subscriber.
    pub fn add(&self, events: u64, bytes: u64) {
        if events > 0 {
            self.events.fetch_add(events, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Events and bytes counted so far.
    #[must_use]
    pub fn get(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The server's state. See the module docs for its rules and lock order.
///
/// `C` is where each job is kept ([`JobCell`]); the default suits tests.
#[derive(Debug)]
pub struct Registry<C: JobCell = RefCell<Job>> {
    config: Config,
    auth: http::Auth,
    cors: http::Cors,
    stream: StreamSettings,
    jobs: HashMap<JobId, Arc<C>>,
    /// Creation order, oldest first.
    order: Vec<JobId>,
    watchers: HashMap<JobId, usize>,
    subscribers: usize,
    /// Counters kept under the registry (`events_sent`/`bytes_sent` unused: those
    /// are in `sent`).
    metrics: Metrics,
    sent: Arc<SentCounters>,
    expired: Vec<JobId>,
    link_key: Option<LinkKey>,
    /// The job list's change log.
    feed: Feed,
    /// The last change recorded per job, so a state is reported once.
    reported: HashMap<JobId, ChangeKind>,
    /// The server is shutting down: list streams end once they are caught up.
    closing: bool,
    /// Cluster mode: why Redis is unreachable, while it is (`/healthz` and
    /// `POST /jobs` answer `503`).
    redis_down: Option<String>,
    /// Cluster mode: the other servers' jobs from the index, as last read
    /// ([`Registry::handle_remote_index`]), merged into `GET /jobs`.
    remote_index: Vec<crate::job::Status>,
}

/// Why a registry could not be built from a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

impl<C: JobCell> Registry<C> {
    /// A registry serving `config` (already validated).
    ///
    /// # Errors
    /// [`SetupError`] when tokens or CORS origins are unusable.
    pub fn new(config: Config) -> Result<Registry<C>, SetupError> {
        let tokens: Vec<(String, http::Grant)> = config
            .tokens
            .iter()
            .map(|t| {
                let grant = http::Grant {
                    start: t.allows(crate::config::Scope::Start),
                    watch: t.allows(crate::config::Scope::Watch),
                    share: t.allows(crate::config::Scope::Share),
                };
                (t.token.clone(), grant)
            })
            .collect();
        let auth = http::Auth::new(&tokens).map_err(|e| SetupError(format!("tokens: {e}")))?;
        let cors = http::Cors::new(config.cors.allow_origins.clone())
            .map_err(|e| SetupError(format!("cors: {e}")))?;
        let link_key = match &config.link_key {
            Some(k) => {
                Some(LinkKey::new(k.as_bytes()).map_err(|e| SetupError(format!("link_key: {e}")))?)
            }
            None => None,
        };
        let stream = StreamSettings {
            retry_ms: config.sse.retry_ms,
            heartbeat: config.sse.heartbeat(),
            heartbeat_event: config.sse.heartbeat_event,
        };
        Ok(Registry {
            config,
            auth,
            cors,
            stream,
            jobs: HashMap::new(),
            order: Vec::new(),
            watchers: HashMap::new(),
            subscribers: 0,
            metrics: Metrics::default(),
            sent: Arc::new(SentCounters::default()),
            expired: Vec::new(),
            link_key,
            feed: Feed::new(),
            reported: HashMap::new(),
            closing: false,
            redis_down: None,
            remote_index: Vec::new(),
        })
    }

    /// Sets the key that signs share links when the config names none (the
    /// runtime's key file, or a per-process key in memory mode). A key from the
    /// config's `link_key` is kept: the cluster's shared key wins.
    pub fn set_link_key(&mut self, key: LinkKey) {
        self.link_key.get_or_insert(key);
    }

    // ---- getters ----

    /// The config served.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A job's cell by id: a driver or a stream takes it once and then enters only
    /// that job, without the registry.
    #[must_use]
    pub fn cell(&self, id: JobId) -> Option<Arc<C>> {
        self.jobs.get(&id).cloned()
    }

    /// Runs `f` on job `id` (entering its cell), if the registry holds it.
    pub fn with_job<R>(&self, id: JobId, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.jobs.get(&id).map(|cell| cell.with(f))
    }

    /// Every job id, oldest first.
    #[must_use]
    pub fn job_ids(&self) -> &[JobId] {
        &self.order
    }

    /// Open event streams.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.subscribers
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let (events_sent, bytes_sent) = self.sent.get();
        Metrics {
            events_sent,
            bytes_sent,
            ..self.metrics
        }
    }

    /// The counters streams add to as they write, without the registry.
    #[must_use]
    pub fn sent(&self) -> Arc<SentCounters> {
        self.sent.clone()
    }

    /// The settings a job of `command` runs with.
    #[must_use]
    pub fn job_settings(&self, command: Option<&CommandSpec>) -> JobSettings {
        let base = JobSettings {
            assembler: AssemblerConfig {
                partial_line_delay: self.config.sse.partial_line_delay(),
                max_event_bytes: self.config.sse.max_event_bytes,
            },
            persistence: if self.config.memory {
                Persistence::Memory
            } else {
                Persistence::Archive
            },
            window_bytes: self.config.limits.memory_window_bytes,
            ..JobSettings::default()
        };
        match command {
            Some(c) => JobSettings {
                timeout: c.timeout(),
                max_output_bytes: c.max_output_bytes,
                stop_when_unwatched: c.stop_when_unwatched(),
                stop_grace: c.stop_grace(),
                ..base
            },
            None => base,
        }
    }

    /// Jobs not yet over.
    #[must_use]
    pub fn running_jobs(&self) -> usize {
        self.running()
    }

    fn running(&self) -> usize {
        self.jobs
            .values()
            .filter(|c| c.with(|j| !j.state().is_final() && !j.is_remote()))
            .count()
    }

    /// The job a request names that this registry does not hold, if any: in
    /// cluster mode the runtime looks it up in Redis ([`Registry::insert_remote`])
    /// before it calls [`Registry::handle`].
    #[must_use]
    pub fn unknown_job(&self, route: Route) -> Option<JobId> {
        match route {
            Route::JobStatus(id)
            | Route::JobEvents(id)
            | Route::JobLog(id)
            | Route::StopJob(id)
            | Route::CreateLink(id) => (!self.jobs.contains_key(&id)).then_some(id),
            _ => None,
        }
    }

    /// Whether job `id` is one another server owns ([`Job::remote`]).
    #[must_use]
    pub fn is_remote(&self, id: JobId) -> bool {
        self.with_job(id, |j| j.is_remote()).unwrap_or(false)
    }

    /// Cluster mode: whether Redis is reachable (`None`) or why not. While it is
    /// not, `/healthz` answers `503` with the reason and `POST /jobs` answers
    /// `503` with `Retry-After`.
    pub fn handle_redis_state(&mut self, down: Option<String>) {
        self.redis_down = down;
    }

    /// Cluster mode: the jobs of the shared index (`spout:jobs`) as just read,
    /// newest first; `GET /jobs` lists those this registry does not hold after
    /// its own.
    ///
    /// A job of the index this registry does not hold also enters the job list's
    /// change log when it first appears (`created`, then `running` or `exited`)
    /// and when it ends, so `GET /jobs` event streams see other servers' jobs.
    pub fn handle_remote_index(&mut self, statuses: Vec<crate::job::Status>) {
        for status in &statuses {
            let Some(id) = JobId::parse(&status.id) else {
                continue;
            };
            if self.jobs.contains_key(&id) {
                continue;
            }
            let kind = if status.exit.is_some() {
                ChangeKind::Exited
            } else {
                ChangeKind::Running
            };
            let seen = self.reported.get(&id).copied();
            if seen == Some(kind) || seen == Some(ChangeKind::Exited) {
                continue;
            }
            if seen.is_none() {
                self.feed
                    .record(ChangeKind::Created, id.to_string(), Some(status.clone()));
            }
            self.reported.insert(id, kind);
            self.feed.record(kind, id.to_string(), Some(status.clone()));
        }
        self.remote_index = statuses;
    }

    /// Adds a job another server owns, found in Redis ([`Job::remote`]).
    pub fn insert_remote(&mut self, job: Job, inputs: Inputs) {
        if self.jobs.contains_key(&job.id()) {
            return;
        }
        // Already announced from the index: the job list saw it created.
        let announce = !self.reported.contains_key(&job.id());
        self.insert_announced(job, inputs, announce);
    }

    // ---- requests ----

    /// Runs every check on a request head before its body is read (framing,
    /// target, route, CORS, token): either answer at once, or read the body the
    /// [`http::Admitted`] describes and call [`Registry::handle`].
    ///
    /// `minor_version` is the `x` of the request's `HTTP/1.x`: an HTTP/1.1
    /// request must carry `Host` (RFC 9112 §3.2), or it is `400`.
    pub fn admit(&mut self, req: &Request<'_>, minor_version: u8) -> http::Admission {
        let host = if minor_version >= 1 && req.header("host").is_none() {
            Err(ApiError::BadRequest(
                "an HTTP/1.1 request needs a Host field".into(),
            ))
        } else {
            self.check_host(req)
        };
        let admission = match host {
            Ok(()) => http::admit(req, &self.auth, &self.cors, http::MAX_BODY),
            Err(e) => http::Admission::Respond(e.response().with_header("Connection", "close")),
        };
        if matches!(admission, http::Admission::Respond(_)) {
            self.metrics.requests += 1;
        }
        admission
    }

    /// DNS-rebinding defence: a server on a loopback address without tokens answers
    /// only requests addressed to a loopback name (`localhost`, `127.x.y.z`,
    /// `[::1]`). Otherwise a page on any site whose DNS name was rebound to
    /// 127.0.0.1 would be "same origin" with us and could start jobs. With tokens,
    /// or a non-loopback listen address (the operator chose to serve other names),
    /// the token check guards instead.
    fn check_host(&self, req: &Request<'_>) -> Result<(), ApiError> {
        if self.auth.is_enabled() || !self.config.listen.ip().is_loopback() {
            return Ok(());
        }
        let Some(host) = req.header("host") else {
            return Ok(());
        };
        let host = std::str::from_utf8(host).unwrap_or("");
        if is_loopback_host(host) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this server answers only to loopback host names, not {host:?}; configure tokens to serve other names"
        )))
    }

    /// Answers an admitted request whose body (if any) has been read.
    pub fn handle(
        &mut self,
        req: &Request<'_>,
        admitted: http::Admitted,
        body: &[u8],
        inputs: Inputs,
    ) -> Reply {
        self.metrics.requests += 1;
        self.feed.seed(inputs.random);
        let mut cors = admitted.cors_headers.clone();
        if matches!(admitted.route, Route::JobEvents(_) | Route::JobLog(_)) {
            // Every answer on a negotiated route depends on `Accept-Encoding`, the
            // refusals (204, 4xx) too: a cache must not hand one client's answer
            // to another that asked differently. (Streams add it with their coding.)
            cors.push(("Vary", "Accept-Encoding".into()));
        }
        match self.decide(req, &admitted, body, inputs) {
            Ok(mut reply) => {
                let head = match &mut reply {
                    Reply::Full(r)
                    | Reply::Spawn { response: r, .. }
                    | Reply::Stopping { response: r, .. } => &mut r.head,
                    Reply::Stream { head, .. }
                    | Reply::RawLog { head, .. }
                    | Reply::JobList { head, .. } => head,
                };
                let has_vary = head.get("vary").is_some();
                head.headers.extend(
                    cors.into_iter()
                        .filter(|(n, _)| !(has_vary && *n == "Vary")),
                );
                reply
            }
            Err(e) => Reply::Full(e.response().with_headers(cors)),
        }
    }

    fn decide(
        &mut self,
        req: &Request<'_>,
        admitted: &http::Admitted,
        body: &[u8],
        inputs: Inputs,
    ) -> Result<Reply, ApiError> {
        let query = &admitted.query;
        if let Some(sig) = &admitted.link {
            self.check_link(admitted.route, sig, inputs.wall)?;
        }
        match admitted.route {
            Route::Index => Ok(Reply::Full(Response::html(VIEWER_HTML))),
            Route::Healthz => Ok(Reply::Full(match &self.redis_down {
                None => Response::text(200, "text/plain; charset=utf-8", "ok\n"),
                Some(reason) => Response::text(
                    503,
                    "text/plain; charset=utf-8",
                    format!("redis unreachable: {reason}\n"),
                )
                .with_header("Retry-After", RETRY_AFTER_S.to_string()),
            })),
            Route::Metrics => Ok(Reply::Full(Response::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics_text(),
            ))),
            Route::Commands => Ok(Reply::Full(Response::json(200, &self.commands_json()))),
            Route::ListJobs if http::wants_event_stream(req) => {
                self.check_subscribers()?;
                let heartbeat_event = heartbeat_param(query)?;
                let mut head = http::sse_head();
                head.push("Vary", "Accept".into());
                if admitted.head_only {
                    return Ok(Reply::Full(head_only(head)));
                }
                let subscriber = ListSubscriber::open(
                    &self.feed,
                    http::last_event_id(req, query),
                    &self.stream,
                    heartbeat_event,
                    jitter(inputs.random),
                    inputs.now,
                );
                self.subscribers += 1;
                Ok(Reply::JobList { head, subscriber })
            }
            Route::ListJobs => Ok(Reply::Full(
                Response::json(200, &self.list()).with_header("Vary", "Accept"),
            )),
            Route::CreateJob => self.create_job(req, body, inputs),
            Route::JobStatus(id) => Ok(Reply::Full(Response::json(
                200,
                &self.get(id)?.with(|j| j.status()),
            ))),
            Route::StopJob(id) => self.get(id)?.with(|job| {
                if job.state().is_final() {
                    return Err(ApiError::Conflict(format!(
                        "job {id} has already ended ({})",
                        job.state().as_str()
                    )));
                }
                job.handle_stop(EndReason::Stopped, inputs.now);
                Ok(Reply::Stopping {
                    response: Response::json(202, &job.status()),
                    job: id,
                })
            }),
            Route::JobEvents(id) => {
                let cell = self.get(id)?;
                self.check_subscribers()?;
                let params = SubscribeParams {
                    last_event_id: http::last_event_id(req, query),
                    tail: query.get("tail"),
                    heartbeat_event: heartbeat_param(query)?,
                };
                let jitter = jitter(inputs.random);
                let watchers = self.watchers.get(&id).copied().unwrap_or(0) + 1;
                let head_only_request = admitted.head_only;
                let stream = &self.stream;
                // One visit to the job: open the cursor and, for a real stream,
                // count the new watcher before anything else can see the job.
                let coding = http::negotiate(req);
                let mut sse_head = http::sse_head();
                coding.apply(&mut sse_head);
                let opened = cell.with(|job| {
                    let opened = Subscriber::open(job.log(), &params, stream, jitter, inputs.now);
                    if opened.is_ok() && !head_only_request {
                        job.handle_watchers(watchers, inputs.now);
                        if coding == ContentCoding::Gzip {
                            job.enable_gzip();
                        }
                    }
                    opened
                });
                match opened {
                    // HEAD gets the answer GET would, with no stream and no subscriber.
                    Ok(_) if head_only_request => Ok(Reply::Full(head_only(sse_head))),
                    Ok(mut subscriber) => {
                        self.subscribers += 1;
                        self.watchers.insert(id, watchers);
                        subscriber.use_coding(coding);
                        Ok(Reply::Stream {
                            head: sse_head,
                            job: id,
                            subscriber,
                        })
                    }
                    Err(Refusal::NoContent) => Ok(Reply::Full(Response::no_content())),
                    Err(Refusal::BadRequest(m)) => Err(ApiError::BadRequest(m)),
                }
            }
            Route::JobLog(id) => {
                let cell = self.get(id)?;
                let follow = query.flag("follow")?;
                // No raw bytes here (another server's job, or `--memory`): the text
                // of the events, through a text subscriber, which follows to the
                // `exit` when asked.
                let persistence = cell.with(|job| job.log().persistence());
                if persistence == Persistence::Stream
                    || (persistence == Persistence::Memory && follow)
                {
                    return self.text_log(id, &cell, follow, req, admitted.head_only, inputs);
                }
                let (archived, memory_text) = cell.with(|job| {
                    if job.log().persistence() == Persistence::Archive {
                        (true, String::new())
                    } else {
                        (false, memory_log_text(job))
                    }
                });
                let coding = http::negotiate(req);
                if archived {
                    let mut head = http::chunked_text_head();
                    coding.apply(&mut head);
                    if admitted.head_only {
                        return Ok(Reply::Full(head_only(head)));
                    }
                    return Ok(Reply::RawLog {
                        head,
                        job: id,
                        follow,
                        body: BodyEncoder::new(coding),
                    });
                }
                // Memory mode keeps no raw bytes: the text of the events still held.
                // (`Vary` is added by `handle`, for every answer on this route.)
                Ok(Reply::Full(match coding {
                    ContentCoding::Gzip => {
                        let body = gzip::compress_all(memory_text.as_bytes());
                        Response::text(200, "text/plain; charset=utf-8", body)
                            .with_header("Content-Encoding", "gzip")
                    }
                    ContentCoding::Identity => {
                        Response::text(200, "text/plain; charset=utf-8", memory_text)
                    }
                }))
            }
            Route::CreateLink(id) => self.create_link(id, req, body, inputs.wall),
            Route::Preflight => Ok(Reply::Full(Response::no_content())),
        }
    }

    /// A share link's signature, presented instead of a token on `route`: valid for
    /// that job and not expired, or 403 saying why.
    fn check_link(&self, route: Route, sig: &str, wall: SystemTime) -> Result<(), ApiError> {
        let (Route::JobStatus(id) | Route::JobEvents(id) | Route::JobLog(id)) = route else {
            // invariant: `http::admit` offers a link only on these routes.
            return Err(ApiError::Internal);
        };
        let key = self.link_key.as_ref().ok_or_else(|| {
            ApiError::Forbidden("this server has no link key: share links are off".into())
        })?;
        link::verify(key, id, sig, unix_s(wall))
            .map(|_| ())
            .map_err(|e| {
                ApiError::Forbidden(match e {
                    LinkError::Expired => "the share link has expired: ask for a new one".into(),
                    other => format!("{other}: check that the link was copied whole"),
                })
            })
    }

    /// `POST /jobs/{id}/links`: a signed, expiring, read-only link to one job.
    fn create_link(
        &self,
        id: JobId,
        req: &Request<'_>,
        body: &[u8],
        wall: SystemTime,
    ) -> Result<Reply, ApiError> {
        self.get(id)?;
        let request = http::parse_link_request(req, body)?;
        let max = self.config.limits.max_link_s;
        if !(1..=max).contains(&request.expires_in_s) {
            return Err(ApiError::BadRequest(format!(
                "expires_in_s must be from 1 to {max} (limits.max_link_s), not {}",
                request.expires_in_s
            )));
        }
        let key = self
            .link_key
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable {
                message: "this server has no link key yet".into(),
                retry_after: RETRY_AFTER_S,
            })?;
        let expires = unix_s(wall).saturating_add(request.expires_in_s);
        let sig = link::sign(key, id, expires);
        let doc = LinkDoc {
            url: format!("/?sig={sig}#/jobs/{id}"),
            expires_at: crate::event::rfc3339(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(expires),
            ),
            sig,
        };
        Ok(Reply::Full(Response::json(201, &doc)))
    }

    /// `503` when the server already has its maximum of streams (job and list).
    fn check_subscribers(&self) -> Result<(), ApiError> {
        if self.subscribers >= self.config.limits.max_subscribers {
            return Err(ApiError::Unavailable {
                message: format!(
                    "the server has its maximum of {} subscribers",
                    self.subscribers
                ),
                retry_after: RETRY_AFTER_S,
            });
        }
        Ok(())
    }

    /// Every job's status, newest first (`GET /jobs`, and a list stream's snapshot).
    fn list(&self) -> Vec<crate::job::Status> {
        let mut list: Vec<crate::job::Status> = self
            .order
            .iter()
            .rev()
            .filter_map(|id| self.jobs.get(id).map(|c| c.with(|j| j.status())))
            .collect();
        if !self.remote_index.is_empty() {
            let held: std::collections::HashSet<&str> =
                list.iter().map(|s| s.id.as_str()).collect();
            let others: Vec<crate::job::Status> = self
                .remote_index
                .iter()
                .filter(|s| !held.contains(s.id.as_str()))
                .cloned()
                .collect();
            list.extend(others);
            // Newest first across servers (a stable sort keeps ties in order).
            list.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
        }
        list
    }

    // ---- the live job list ----

    /// A number that moves whenever list streams have something new to do (a change
    /// recorded, or the server shutting down): a runtime compares it before and
    /// after a registry call to know whether to wake them.
    #[must_use]
    pub fn list_version(&self) -> u64 {
        self.feed.last_seq() + u64::from(self.closing)
    }

    /// The job list's change log (for tests and diagnostics).
    #[must_use]
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The runtime saw job `id` change (its driver drained the job's actions):
    /// records a `running`, `stopping` or `exited` change if the job's state
    /// reports one not recorded yet. Calling it when nothing changed is harmless.
    pub fn handle_job_changed(&mut self, id: JobId) {
        let Some(cell) = self.jobs.get(&id) else {
            return;
        };
        let (kind, status) = cell.with(|job| (ChangeKind::for_state(job.state()), job.status()));
        let Some(kind) = kind else {
            return;
        };
        if self.reported.get(&id) == Some(&kind) {
            return;
        }
        self.reported.insert(id, kind);
        self.feed.record(kind, id.to_string(), Some(status));
    }

    /// Writes what list stream `sub` sends next into `buf` (see
    /// [`ListSubscriber::poll_transmit`]). Once the server shuts down, a stream
    /// that has sent every change ends ([`Next::End`]); its client reconnects to
    /// the next server, which answers with a snapshot.
    pub fn poll_list(&self, sub: &mut ListSubscriber, now: Instant, buf: &mut Vec<u8>) -> Next {
        let next = sub.poll_transmit(&self.feed, || self.list(), now, buf);
        if self.closing && matches!(next, Next::Wait(_)) {
            return Next::End;
        }
        next
    }

    /// A list stream ended (client gone, write failed, or shutdown).
    pub fn unsubscribe_list(&mut self, dropped: bool) {
        self.subscribers = self.subscribers.saturating_sub(1);
        if dropped {
            self.metrics.drops += 1;
        }
    }

    /// `/jobs/{id}/log` where no raw bytes are kept: another server's job (they
    /// stay on its owner; the text comes from memory and from its stream in
    /// Redis), or a followed `--memory` job (the text still in the window). A text
    /// subscriber (rule 8 of [`crate::subscriber`]) streams the text of the output
    /// events up to the event last now, or with `follow` to the `exit`. It counts
    /// as a subscriber, like an event stream.
    fn text_log(
        &mut self,
        id: JobId,
        cell: &Arc<C>,
        follow: bool,
        req: &Request<'_>,
        head_request: bool,
        inputs: Inputs,
    ) -> Result<Reply, ApiError> {
        let coding = http::negotiate(req);
        let mut head = http::chunked_text_head();
        coding.apply(&mut head);
        if head_request {
            return Ok(Reply::Full(head_only(head)));
        }
        self.check_subscribers()?;
        let watchers = self.watchers.get(&id).copied().unwrap_or(0) + 1;
        let stream = &self.stream;
        let mut subscriber = cell.with(|job| {
            job.handle_watchers(watchers, inputs.now);
            Subscriber::output_text(job.log(), follow, stream, inputs.now)
        });
        subscriber.use_coding(coding);
        self.subscribers += 1;
        self.watchers.insert(id, watchers);
        Ok(Reply::Stream {
            head,
            job: id,
            subscriber,
        })
    }

    fn get(&self, id: JobId) -> Result<Arc<C>, ApiError> {
        self.cell(id).ok_or_else(|| match &self.redis_down {
            // Cluster mode: another server may own it, and Redis cannot say.
            Some(reason) => ApiError::Unavailable {
                message: format!(
                    "job {id} is not on this server and redis is unreachable ({reason}): retry later"
                ),
                retry_after: RETRY_AFTER_S,
            },
            None => no_such_job(),
        })
    }

    fn create_job(
        &mut self,
        req: &Request<'_>,
        body: &[u8],
        inputs: Inputs,
    ) -> Result<Reply, ApiError> {
        let request = http::parse_job_request(req, body)?;
        let command = self.config.commands.get(&request.command).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown command {:?}; GET /commands lists them",
                request.command
            ))
        })?;
        let argv = command
            .build_argv(&request.args)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if let Some(reason) = &self.redis_down {
            // The job's lease and record must be in Redis before its 201.
            return Err(ApiError::Unavailable {
                message: format!("redis is unreachable ({reason}): retry later"),
                retry_after: RETRY_AFTER_S,
            });
        }
        let running = self.running();
        if running >= self.config.limits.max_running_jobs {
            return Err(ApiError::TooManyRequests {
                message: format!("{running} jobs are running, the most this server allows"),
                retry_after: RETRY_AFTER_S,
            });
        }
        let id = JobId::from_random(inputs.random);
        if self.jobs.contains_key(&id) {
            return Err(ApiError::Internal);
        }
        let plan = SpawnPlan {
            argv: argv.clone(),
            cwd: command.cwd.clone(),
            env: command.job_env(),
            pty: command.pty,
        };
        let settings = self.job_settings(Some(command));
        let job = Job::new(id, request.command.clone(), argv, settings, inputs.wall);
        let response =
            Response::json(201, &job.status()).with_header("Location", format!("/jobs/{id}"));
        self.insert(job, inputs);
        self.metrics.jobs_started += 1;
        Ok(Reply::Spawn {
            response,
            job: id,
            plan,
        })
    }

    // ---- runtime reports ----

    /// Adds a job rebuilt from the archive at start-up.
    pub fn insert_restored(&mut self, job: Job, inputs: Inputs) {
        self.feed.seed(inputs.random);
        self.insert(job, inputs);
        // Keep creation order whatever order the directory listed them in.
        let jobs = &self.jobs;
        self.order
            .sort_by_cached_key(|id| jobs.get(id).map_or(0, |c| c.with(|j| j.created_ms())));
    }

    fn insert(&mut self, job: Job, inputs: Inputs) {
        self.insert_announced(job, inputs, true);
    }

    /// Adds a job; `announce` records its `created` in the job list's change log.
    fn insert_announced(&mut self, job: Job, inputs: Inputs, announce: bool) {
        let id = job.id();
        let status = job.status();
        let kind = ChangeKind::for_state(job.state()).unwrap_or(ChangeKind::Created);
        self.jobs.insert(id, Arc::new(C::new(job)));
        self.order.push(id);
        if announce {
            self.reported.insert(id, kind);
            self.feed
                .record(ChangeKind::Created, id.to_string(), Some(status));
        }
        // Otherwise the index reported it already, maybe further on (`exited`)
        // than this job fed from Redis is yet: what the list heard stands.
        self.prune(inputs.wall);
    }

    /// A stream on job `id` ended (end of log, client gone, or error).
    pub fn unsubscribe(&mut self, id: JobId, dropped: bool, now: Instant) {
        self.subscribers = self.subscribers.saturating_sub(1);
        if dropped {
            self.metrics.drops += 1;
        }
        if let Some(n) = self.watchers.get_mut(&id) {
            *n = n.saturating_sub(1);
            let n = *n;
            if n == 0 {
                self.watchers.remove(&id);
            }
            self.with_job(id, |job| job.handle_watchers(n, now));
        }
    }

    /// A job finished (its driver saw [`crate::job::Action::Finished`]): apply retention.
    pub fn job_finished(&mut self, wall: SystemTime) {
        self.prune(wall);
    }

    /// Server shutdown: every running job is asked to stop
    /// (`reason: "server_shutdown"`). Returns the ids whose drivers must be woken.
    pub fn shutdown(&mut self, now: Instant) -> Vec<JobId> {
        self.closing = true;
        let mut woken = Vec::new();
        for (id, cell) in &self.jobs {
            let stopped = cell.with(|job| {
                // Another server's job goes on without us.
                let running = !job.state().is_final() && !job.is_remote();
                if running {
                    job.handle_stop(EndReason::ServerShutdown, now);
                }
                running
            });
            if stopped {
                woken.push(*id);
            }
        }
        woken
    }

    /// A job dropped by retention, whose files the runtime deletes.
    pub fn poll_expired(&mut self) -> Option<JobId> {
        self.expired.pop()
    }

    fn prune(&mut self, wall: SystemTime) {
        let limits = &self.config.limits;
        let now_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let max_age_ms = limits.retention_s.saturating_mul(1000);
        let mut excess = self.order.len().saturating_sub(limits.max_retained_jobs);
        let before = self.expired.len();
        let jobs = &mut self.jobs;
        let expired = &mut self.expired;
        self.order.retain(|id| {
            let Some(cell) = jobs.get(id) else {
                return false;
            };
            let (is_final, created_ms) =
                cell.with(|job| (job.state().is_final(), job.created_ms()));
            if !is_final || self.watchers.contains_key(id) {
                return true;
            }
            let old = now_ms.saturating_sub(created_ms) > max_age_ms;
            if old || excess > 0 {
                excess = excess.saturating_sub(1);
                jobs.remove(id);
                expired.push(*id);
                return false;
            }
            true
        });
        for id in &self.expired[before..] {
            self.reported.remove(id);
            self.feed.record(ChangeKind::Removed, id.to_string(), None);
        }
    }

    fn commands_json(&self) -> Vec<CommandInfo<'_>> {
        self.config
            .commands
            .iter()
            .map(|(name, c)| CommandInfo {
                name,
                description: &c.description,
                accepts_args: c.accepts_args(),
                args: c.args.as_ref().map(|a| ArgsInfo {
                    max: a.max,
                    max_len: a.max_len,
                    allow: a.allow.as_deref(),
                }),
            })
            .collect()
    }

    fn metrics_text(&self) -> String {
        let mut by_state: BTreeMap<&str, u64> =
            ALL_STATES.iter().map(|s| (s.as_str(), 0)).collect();
        for cell in self.jobs.values() {
            *by_state
                .entry(cell.with(|job| job.state().as_str()))
                .or_default() += 1;
        }
        let m = &self.metrics();
        let mut out = String::new();
        out.push_str(
            "# HELP spout_jobs Jobs held by the server, by state.\n# TYPE spout_jobs gauge\n",
        );
        for (state, n) in by_state {
            let _ = writeln!(out, "spout_jobs{{state=\"{state}\"}} {n}");
        }
        for (name, kind, help, value) in [
            (
                "spout_subscribers",
                "gauge",
                "Open event streams.",
                self.subscribers as u64,
            ),
            (
                "spout_jobs_started_total",
                "counter",
                "Jobs started.",
                m.jobs_started,
            ),
            (
                "spout_events_sent_total",
                "counter",
                "Events written to subscribers.",
                m.events_sent,
            ),
            (
                "spout_bytes_sent_total",
                "counter",
                "Event-stream bytes written to subscribers.",
                m.bytes_sent,
            ),
            (
                "spout_subscriber_drops_total",
                "counter",
                "Streams cut because the client went away.",
                m.drops,
            ),
            (
                "spout_requests_total",
                "counter",
                "HTTP requests answered.",
                m.requests,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// Bytes of a job's raw output log (both streams, as taken), and whether the job is
/// complete (no more will come).
#[must_use]
pub fn raw_log_len(job: &Job) -> (u64, bool) {
    let (o, e) = job.log().byte_counts();
    (o + e, job.log().is_complete())
}

/// What a raw-log response at byte `offset` does next; `limit` is the log's length
/// when a non-follow request came (it ends there), `None` with `?follow=1` (it ends
/// when the job is complete and every byte is sent). A job that is gone (`None`)
/// ends it.
pub fn raw_log_next(job: Option<&Job>, offset: u64, limit: Option<u64>) -> LogNext {
    let Some((len, complete)) = job.map(raw_log_len) else {
        return LogNext::End;
    };
    let upto = limit.map_or(len, |l| l.min(len));
    if offset < upto {
        LogNext::Read { upto }
    } else if limit.is_some() || complete {
        LogNext::End
    } else {
        LogNext::Wait
    }
}

/// Whether a `Host` value names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<core::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `?heartbeat=` of a stream: `event`, `comment`, or absent (the default).
fn heartbeat_param(query: &http::Query) -> Result<Option<bool>, ApiError> {
    match query.get("heartbeat") {
        None => Ok(None),
        Some("event") => Ok(Some(true)),
        Some("comment") => Ok(Some(false)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "heartbeat must be \"event\" or \"comment\", not {other:?}"
        ))),
    }
}

/// A stream's jitter from the request's randomness.
fn jitter(random: [u8; 16]) -> u32 {
    u32::from_le_bytes([random[0], random[1], random[2], random[3]])
}

/// The answer to a HEAD request for a streamed resource: the stream's head, no body.
fn head_only(head: ResponseHead) -> Response {
    Response {
        head,
        body: Vec::new(),
    }
}

fn no_such_job() -> ApiError {
    ApiError::NotFound("no such job".into())
}

#[derive(Serialize)]
struct CommandInfo<'a> {
    name: &'a str,
    description: &'a str,
    accepts_args: bool,
    args: Option<ArgsInfo<'a>>,
}

#[derive(Serialize)]
struct ArgsInfo<'a> {
    max: usize,
    max_len: usize,
    allow: Option<&'a [String]>,
}

/// The text of the output events still in a memory-only job's window.
fn memory_log_text(job: &Job) -> String {
    let log = job.log();
    let mut text = String::new();
    let mut decoder = crate::sse::Decoder::new();
    for id in log.window_first()..=log.last_visible() {
        if let Some(wire) = log.get(id) {
            decoder.feed(wire);
        }
    }
    while let Some(item) = decoder.poll() {
        if let crate::sse::Item::Event(e) = item {
            if e.event_type == "stdout" || e.event_type == "stderr" {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) {
                    text.push_str(v["text"].as_str().unwrap_or(""));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "app.localhost:80",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.3.4.5:1",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8080",
            "localhost.evil.com",
            "10.0.0.1:8080",
            "[::2]:80",
            "",
            "127.0.0.1.nip.io:80",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn rebinding_is_refused_without_tokens_on_loopback() {
        let config = crate::config::parse(r#"{"commands": {"b": {"argv": ["true"]}}}"#).unwrap();
        let mut reg: Registry = Registry::new(config).unwrap();
        let evil: &[(&str, &[u8])] = &[("Host", b"evil.example:8080")];
        let req = Request {
            method: "GET",
            target: "/commands",
            headers: evil,
        };
        match reg.admit(&req, 1) {
            http::Admission::Respond(r) => assert_eq!(r.head.status, 403),
            other => panic!("{other:?}"),
        }
        let good: &[(&str, &[u8])] = &[("Host", b"127.0.0.1:8080")];
        let req = Request {
            method: "GET",
            target: "/commands",
            headers: good,
        };
        assert!(matches!(reg.admit(&req, 1), http::Admission::Handle(_)));
        // HTTP/1.1 needs a Host; HTTP/1.0 may go without.
        let req = Request {
            method: "GET",
            target: "/commands",
            headers: &[],
        };
        match reg.admit(&req, 1) {
            http::Admission::Respond(r) => assert_eq!(r.head.status, 400),
            other => panic!("{other:?}"),
        }
        assert!(matches!(reg.admit(&req, 0), http::Admission::Handle(_)));
    }

    fn ask(reg: &mut Registry, method: &str, target: &str, body: &[u8]) -> Reply {
        let inputs = Inputs {
            now: crate::fuzzing::t0(),
            wall: crate::fuzzing::wall0(),
            random: [3; 16],
        };
        crate::fuzzing::ask(reg, method, target, body, inputs)
    }

    #[test]
    fn redis_down_is_503_on_healthz_and_post_jobs() {
        let config = crate::config::parse(r#"{"commands": {"b": {"argv": ["true"]}}}"#).unwrap();
        let mut reg: Registry = Registry::new(config).unwrap();
        reg.handle_redis_state(Some("connection refused".into()));
        let Reply::Full(r) = ask(&mut reg, "GET", "/healthz", b"") else {
            panic!()
        };
        assert_eq!(r.head.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("connection refused"));
        let Reply::Full(r) = ask(&mut reg, "POST", "/jobs", br#"{"command":"b"}"#) else {
            panic!()
        };
        assert_eq!(r.head.status, 503);
        assert_eq!(r.head.get("retry-after"), Some("5"));
        // A job it does not hold may be another server's: Redis cannot say.
        let other = JobId::from_random([6; 16]);
        assert_eq!(
            ask(&mut reg, "GET", &format!("/jobs/{other}"), b"").status(),
            503
        );
        reg.handle_redis_state(None);
        assert_eq!(
            ask(&mut reg, "GET", &format!("/jobs/{other}"), b"").status(),
            404
        );
        assert_eq!(ask(&mut reg, "GET", "/healthz", b"").status(), 200);
        assert_eq!(
            ask(&mut reg, "POST", "/jobs", br#"{"command":"b"}"#).status(),
            201
        );
    }

    #[test]
    fn remote_jobs_are_listed_found_and_not_stopped_at_shutdown() {
        let config = crate::config::parse(r#"{"commands": {"b": {"argv": ["true"]}}}"#).unwrap();
        let mut reg: Registry = Registry::new(config).unwrap();
        let other = JobId::from_random([5; 16]);
        let record = crate::cluster::JobRecord {
            owner: "x".into(),
            command: "b".into(),
            started_at_ms: u64::MAX / 2,
            start: String::new(),
            last_id: 3,
            stdout_bytes: 0,
            stderr_bytes: 0,
        };
        reg.handle_remote_index(vec![crate::cluster::remote_status(other, &record, None)]);
        let Reply::Full(r) = ask(&mut reg, "GET", "/jobs", b"") else {
            panic!()
        };
        let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(list[0]["id"], other.to_string());
        // The job list's change log has it once, and again when it ends.
        let version = reg.list_version();
        reg.handle_remote_index(vec![crate::cluster::remote_status(other, &record, None)]);
        assert_eq!(reg.list_version(), version, "nothing new");
        let exit = match crate::cluster::end_lost_job(None, &record, u64::MAX / 2 + 5) {
            crate::cluster::EndAttempt::Append(e) => e,
            crate::cluster::EndAttempt::Done => panic!(),
        };
        reg.handle_remote_index(vec![crate::cluster::remote_status(
            other,
            &record,
            Some(&exit),
        )]);
        assert!(reg.list_version() > version, "its end is a change");
        let route = Route::JobStatus(other);
        assert_eq!(reg.unknown_job(route), Some(other));
        let inputs = Inputs {
            now: crate::fuzzing::t0(),
            wall: crate::fuzzing::wall0(),
            random: [4; 16],
        };
        let version = reg.list_version();
        reg.insert_remote(crate::cluster::remote_job(other, &record, 1024), inputs);
        assert_eq!(
            reg.list_version(),
            version,
            "following a job the list already has is no change"
        );
        assert_eq!(reg.unknown_job(route), None);
        assert!(reg.is_remote(other));
        assert_eq!(reg.running_jobs(), 0, "another server's job is not ours");
        assert_eq!(
            ask(&mut reg, "GET", &format!("/jobs/{other}"), b"").status(),
            200
        );
        assert!(reg.shutdown(inputs.now).is_empty());
    }
}
