//! The HTTP API: everything that decides what a request means and what the answer is,
//! so that both runtimes send byte-identical answers. A runtime moves bytes between
//! its socket and a [`ServerConn`] (the sans-IO connection: heads, bodies, limits,
//! keep-alive, deadlines), hands each head to the registry's admission, and writes
//! what the connection yields.
//!
//! A runtime's request loop (the details are in [`ServerConn`]'s module docs):
//! 1. Feed bytes and the clock to the [`ServerConn`] until it gives an [`Event`]. A
//!    head that does not come in time or breaks a limit is answered by the connection
//!    itself ([`ReadFailure::response`]), or the connection just closes if not one
//!    byte came.
//! 2. On [`Event::Head`], call [`admit`] (through the registry). [`Admission::Respond`]:
//!    pass the answer to [`ServerConn::handle_response`], which closes if
//!    [`Response::closes_connection`]. [`Admission::Handle`]: pass its framing to
//!    [`ServerConn::handle_admitted`] (it writes [`CONTINUE`] when asked and reads the
//!    body within [`BODY_TIMEOUT`], de-chunked by [`ChunkedDecoder`]).
//! 3. On [`Event::Body`], act on the route; answer with [`Response`] constructors or an
//!    [`ApiError`], adding `cors_headers`; streams start with [`sse_head`] /
//!    [`chunked_text_head`] and frame their body with [`encode_chunk`] and
//!    [`LAST_CHUNK`].
//!
//! Decisions written down:
//! - `HEAD` is accepted wherever `GET` is and answered with exactly the `GET` answer's
//!   head; the runtime writes no body and opens no stream.
//! - No `Date` header: it adds nothing a client of this API needs and keeps output
//!   deterministic (RFC 9110 §6.6.1 lets a server without a reliable clock omit it).
//! - Paths are never percent-decoded (ids are URL-safe base64), so a `%` in a path is
//!   400, as are `.`/`..` segments, backslashes and control bytes.
//! - Query strings are decoded strictly: `+` is a space, `%XX` a byte, a malformed
//!   escape or non-UTF-8 result is 400 (a silently altered token or id helps no one).

mod auth;
mod body;
mod conn;
mod cors;
mod encoding;
mod error;
mod response;

pub use auth::{required_scope, Auth, Grant, Scope, TokenError};
pub use body::{
    body_framing, expects_continue, parse_job_request, parse_link_request, BodyFraming,
    ChunkedDecoder, JobRequest, LinkRequest,
};
pub use conn::{fuzz_conn, ConnLimits, Event, Head, ReadError, ServerConn};
pub use cors::{BadOrigin, Cors, ALLOW_HEADERS, PREFLIGHT_MAX_AGE};
pub use encoding::{negotiate, ContentCoding};
pub use error::ApiError;
pub use response::{
    chunked_text_head, encode_chunk, reason_phrase, sse_head, Response, ResponseHead, CONTINUE,
    LAST_CHUNK, VIEWER_CSP,
};

use crate::id::JobId;
use std::fmt;
use std::time::Duration;

/// Largest request body (`POST /jobs`), in bytes. A job request is a command name and
/// a few arguments; 64 KiB is generous and bounds what one request can make us hold.
pub const MAX_BODY: usize = 64 * 1024;

/// Largest request head (request line and all fields), in bytes; beyond it, 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header fields in one request; beyond it, 431.
pub const MAX_HEADERS: usize = 64;

/// Time for a whole request head to arrive, counted from its first byte (empty lines
/// before the request line included). Bounds slow-loris connections.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Time for a whole request body to arrive once its head has been read (64 KiB in
/// 10 s is 6.4 KB/s, slower than any real client).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an open connection may wait for the first byte of its next request
/// before the server closes it (keep-alive). A new connection's first byte has its
/// own, shorter deadline: `limits.first_byte_timeout_s` in the config.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a single write to a client may take before the client is dropped: a
/// stream whose reader stopped reading is ended rather than held forever (it costs
/// no memory meanwhile, only its socket).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed request head, borrowed from the runtime's buffer.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method, case-sensitive (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request target as sent (`/jobs/abc?follow=1`).
    pub target: &'a str,
    /// Header fields in order; names as sent, values as raw bytes.
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl fmt::Debug for Request<'_> {
    // Tokens travel in `Authorization` and `?token=`; neither may reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target.split_once('?') {
            Some((path, q)) if q.split('&').any(|p| p.starts_with("token=")) => {
                format!("{path}?<redacted>")
            }
            _ => self.target.to_string(),
        };
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if n.eq_ignore_ascii_case("authorization") {
                    "<redacted>".to_string()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (*n, v)
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &target)
            .field("headers", &headers)
            .finish()
    }
}

impl<'a> Request<'a> {
    /// The first value of the field `name` (case-insensitive); `None` if absent.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_all(name).next()
    }

    /// Every value of the field `name` (case-insensitive), in order.
    pub fn headers_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Whether this is a `HEAD` request (answer without a body).
    #[must_use]
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Splits an origin-form target into path and query (without the `?`).
///
/// # Errors
/// [`ApiError::BadRequest`] for anything but `/path[?query]`: absolute-form, `*`,
/// empty, a fragment, control or non-ASCII bytes, and in the path `%`, `\`, and `.` or
/// `..` segments.
pub fn split_target(target: &str) -> Result<(&str, &str), ApiError> {
    if !target.starts_with('/') {
        return Err(bad("request target must be a path starting with `/`"));
    }
    if target
        .bytes()
        .any(|b| !(0x21..0x7F).contains(&b) || b == b'#')
    {
        return Err(bad(
            "request target has a space, control, non-ASCII or `#` character: percent-encode it",
        ));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path.bytes().any(|b| b == b'%' || b == b'\\') {
        return Err(bad(
            "path must not contain `%` or `\\`: use the path as the API gives it",
        ));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad("path must not contain `.` or `..` segments"));
    }
    Ok((path, query))
}

/// A decoded query string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Query {
    // `token` is a secret; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.pairs {
            m.entry(k, if k == "token" { &"<redacted>" } else { v });
        }
        m.finish()
    }
}

fn percent_decode(text: &str) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |b: Option<u8>| b.and_then(|b| char::from(b).to_digit(16));
                match (hex(bytes.next()), hex(bytes.next())) {
                    // invariant: two hex digits make at most 0xFF.
                    (Some(h), Some(l)) => u8::try_from(h * 16 + l).unwrap_or(0),
                    _ => return Err(bad("query has a malformed %-escape: write `%` as %25")),
                }
            }
            b => b,
        });
    }
    String::from_utf8(out).map_err(|_| bad("query is not UTF-8 once decoded"))
}

impl Query {
    /// Decodes `a=1&b=x+y&c` (`c` has the empty value).
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a malformed `%` escape or a result that is not UTF-8.
    pub fn parse(query: &str) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((percent_decode(k)?, percent_decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// The first value of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter such as `follow`: absent or `0`/`false` is false; `1`,
    /// `true` or the bare name (`?follow`) is true.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for any other value.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("0" | "false") => Ok(false),
            Some("" | "1" | "true") => Ok(true),
            Some(_) => Err(bad(format!("query parameter `{name}` must be 1 or 0"))),
        }
    }
}

/// What a request asks for. Deliberately not `#[non_exhaustive]`: a new route must be
/// a compile error in every runtime's `match` until it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the viewer page.
    Index,
    /// `GET /commands`.
    Commands,
    /// `POST /jobs`.
    CreateJob,
    /// `GET /jobs`.
    ListJobs,
    /// `GET /jobs/{id}`.
    JobStatus(JobId),
    /// `GET /jobs/{id}/events`: the SSE stream.
    JobEvents(JobId),
    /// `GET /jobs/{id}/log`: raw output.
    JobLog(JobId),
    /// `DELETE /jobs/{id}`.
    StopJob(JobId),
    /// `POST /jobs/{id}/links`: a share link to one job.
    CreateLink(JobId),
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// `OPTIONS` on any routable path: answered by [`Cors::preflight`].
    Preflight,
}

const READ: &[&str] = &["GET", "HEAD", "OPTIONS"];
const JOBS: &[&str] = &["GET", "HEAD", "POST", "OPTIONS"];
const JOB: &[&str] = &["GET", "HEAD", "DELETE", "OPTIONS"];
const LINKS: &[&str] = &["POST", "OPTIONS"];

#[derive(Clone, Copy)]
enum Resource {
    Index,
    Commands,
    Jobs,
    Job(JobId),
    Events(JobId),
    Log(JobId),
    Links(JobId),
    Healthz,
    Metrics,
}

fn resource(path: &str) -> Result<Resource, ApiError> {
    Ok(match path {
        "/" => Resource::Index,
        "/commands" => Resource::Commands,
        "/jobs" => Resource::Jobs,
        "/healthz" => Resource::Healthz,
        "/metrics" => Resource::Metrics,
        _ => {
            let no_path = || {
                ApiError::NotFound("no such path: the API is /, /commands, /jobs, /jobs/{id}, /jobs/{id}/events, /jobs/{id}/log, /jobs/{id}/links, /healthz, /metrics".into())
            };
            let rest = path.strip_prefix("/jobs/").ok_or_else(no_path)?;
            let (id, tail) = rest
                .split_once('/')
                .map_or((rest, None), |(id, t)| (id, Some(t)));
            if !matches!(tail, None | Some("events" | "log" | "links")) {
                return Err(no_path());
            }
            let id = JobId::parse(id).ok_or_else(|| {
                ApiError::NotFound("no such job: check the job id in the URL".into())
            })?;
            match tail {
                None => Resource::Job(id),
                Some("events") => Resource::Events(id),
                Some("links") => Resource::Links(id),
                _ => Resource::Log(id),
            }
        }
    })
}

/// The methods `path` supports (for `Allow` and preflights).
///
/// # Errors
/// [`ApiError::NotFound`] for a path that names nothing.
pub fn allowed_methods(path: &str) -> Result<&'static [&'static str], ApiError> {
    Ok(match resource(path)? {
        Resource::Jobs => JOBS,
        Resource::Job(_) => JOB,
        Resource::Links(_) => LINKS,
        _ => READ,
    })
}

/// Maps a method and path (from [`split_target`]) to a [`Route`].
///
/// # Errors
/// [`ApiError::NotFound`] (404) for an unknown path or a malformed job id,
/// [`ApiError::MethodNotAllowed`] (405, with `Allow`) for a known path and wrong
/// method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let res = resource(path)?;
    let get = matches!(method, "GET" | "HEAD");
    Ok(match (res, method) {
        (_, "OPTIONS") => Route::Preflight,
        (Resource::Index, _) if get => Route::Index,
        (Resource::Commands, _) if get => Route::Commands,
        (Resource::Jobs, "POST") => Route::CreateJob,
        (Resource::Jobs, _) if get => Route::ListJobs,
        (Resource::Job(id), "DELETE") => Route::StopJob(id),
        (Resource::Job(id), _) if get => Route::JobStatus(id),
        (Resource::Events(id), _) if get => Route::JobEvents(id),
        (Resource::Log(id), _) if get => Route::JobLog(id),
        (Resource::Links(id), "POST") => Route::CreateLink(id),
        (Resource::Healthz, _) if get => Route::Healthz,
        (Resource::Metrics, _) if get => Route::Metrics,
        _ => return Err(ApiError::MethodNotAllowed(allowed_methods(path)?)),
    })
}

/// Where a client resumes from: the `Last-Event-ID` header, else the `last_event_id`
/// query parameter, else `lastEventId`. An empty value counts as absent (no id yet).
///
/// A header value that is not UTF-8 gives `Some("\u{FFFD}")`, which
/// [`crate::id::Cursor::parse`] refuses, so the client gets the same 400 as for any
/// malformed id.
#[must_use]
pub fn last_event_id<'a>(req: &'a Request<'_>, query: &'a Query) -> Option<&'a str> {
    if let Some(v) = req.header("last-event-id").filter(|v| !v.is_empty()) {
        return Some(std::str::from_utf8(v).unwrap_or("\u{FFFD}"));
    }
    ["last_event_id", "lastEventId"]
        .into_iter()
        .find_map(|name| query.get(name).filter(|v| !v.is_empty()))
}

/// Whether `GET /jobs` should answer with the live list (an event stream) rather
/// than JSON: the `Accept` fields (all of them, comma-separated media ranges with
/// optional `q=` weights, RFC 9110 §12.5.1) name `text/event-stream` itself with a
/// weight above 0 and at least the weight `application/json` gets (from its own
/// range, `application/*` or `*/*`, the most specific one that matches). Wildcards
/// alone never choose the stream, so `Accept: */*` and no `Accept` keep JSON; a
/// malformed weight counts as 0 for its range.
#[must_use]
pub fn wants_event_stream(req: &Request<'_>) -> bool {
    // (specificity, q) of the best-matching range for each type; specificity
    // 3 = exact, 2 = `type/*`, 1 = `*/*`.
    let mut sse: Option<(u8, u16)> = None;
    let mut json: Option<(u8, u16)> = None;
    for value in req.headers_all("accept") {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1000u16;
            for param in parts {
                let (name, v) = param.split_once('=').unwrap_or((param, ""));
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_qvalue(v.trim()).unwrap_or(0);
                }
            }
            let take = |slot: &mut Option<(u8, u16)>, specificity: u8| {
                if slot.is_none_or(|(s, _)| specificity > s) {
                    *slot = Some((specificity, q));
                }
            };
            match media.as_str() {
                "text/event-stream" => take(&mut sse, 3),
                "application/json" => take(&mut json, 3),
                "application/*" => take(&mut json, 2),
                "*/*" => take(&mut json, 1),
                _ => {}
            }
        }
    }
    match sse {
        Some((_, q)) if q > 0 => q >= json.map_or(0, |(_, q)| q),
        _ => false,
    }
}

/// A `qvalue` (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// A request that passed every check in [`admit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// What it asks for (never [`Route::Preflight`]).
    pub route: Route,
    /// Its decoded query.
    pub query: Query,
    /// How its body is delimited (only `POST` has one).
    pub framing: BodyFraming,
    /// Write [`CONTINUE`] before reading the body.
    pub expect_continue: bool,
    /// Answer with the head only (a `HEAD` request).
    pub head_only: bool,
    /// Add these to the answer ([`Cors::cors_headers`]).
    pub cors_headers: Vec<(&'static str, String)>,
    /// A share link's signature that stands in for the token: the registry checks
    /// it against the job (it holds the key and the time) before answering.
    pub link: Option<String>,
}

/// The `sig` a request presents instead of a token, if it may: only on one job's
/// status, events and log, and only without a token (header or `?token=`).
fn link_sig(route: Route, req: &Request<'_>, query: &Query) -> Option<String> {
    let opens = matches!(
        route,
        Route::JobStatus(_) | Route::JobEvents(_) | Route::JobLog(_)
    );
    let token = req.header("authorization").is_some() || query.get("token").is_some();
    query
        .get("sig")
        .filter(|_| opens && !token)
        .map(str::to_owned)
}

/// What to do with a request head.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Handle the route.
    Handle(Admitted),
    /// Write this answer without reading a body (an error or a preflight); close the
    /// connection afterwards if [`Response::closes_connection`].
    Respond(Response),
}

/// Runs every check on a request head, in this order: body framing (so the runtime
/// always knows where the next request starts), target, a duplicated `Host`, query,
/// route, preflight, `Expect`, `Origin` for state changes, token. Any refusal carries
/// the CORS headers (so a permitted page can read the error) and, when the request has
/// a body that will not be read, `Connection: close`.
pub fn admit(req: &Request<'_>, auth: &Auth, cors: &Cors, max_body: usize) -> Admission {
    let framing = match body_framing(req, max_body) {
        Ok(f) => f,
        Err(e) => return Admission::Respond(e.response().with_headers(cors.cors_headers(req))),
    };
    let respond = |r: Response| {
        let r = r.with_headers(cors.cors_headers(req));
        Admission::Respond(if framing != BodyFraming::None && !r.closes_connection() {
            r.with_header("Connection", "close")
        } else {
            r
        })
    };
    let checked = (|| {
        let (path, query) = split_target(req.target)?;
        if req.headers_all("host").nth(1).is_some() {
            return Err(bad("more than one Host field: send one"));
        }
        let query = Query::parse(query)?;
        let route = route(req.method, path)?;
        if route == Route::Preflight {
            return Ok(Err(cors.preflight(req, allowed_methods(path)?)));
        }
        let expect_continue = expects_continue(req)? && framing != BodyFraming::None;
        cors.check_origin(req)?;
        let link = link_sig(route, req, &query);
        if let (Some(scope), None) = (required_scope(route), &link) {
            auth.authorize(req, &query, scope)?;
        }
        Ok(Ok(Admitted {
            route,
            query,
            framing,
            expect_continue,
            head_only: req.is_head(),
            cors_headers: cors.cors_headers(req),
            link,
        }))
    })();
    match checked {
        Ok(Ok(admitted)) => Admission::Handle(admitted),
        // Preflight answers already carry their own CORS headers.
        Ok(Err(preflight)) => Admission::Respond(if framing != BodyFraming::None {
            preflight.with_header("Connection", "close")
        } else {
            preflight
        }),
        Err(e) => respond(e.response()),
    }
}

impl Response {
    /// Whether the runtime must close the connection after writing this answer.
    #[must_use]
    pub fn closes_connection(&self) -> bool {
        self.head
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v == "close")
    }
}

/// Fuzzing entry: reads `METHOD TARGET\nName: value\n…\n\nbody` from `data`, runs every
/// function of this module on it and asserts the invariants: no panic, errors are
/// 4xx/5xx with a JSON `{"error": string}` body, and encoded heads have no CR or LF
/// inside a line.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let Some(Ok(first)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let headers: Vec<(&str, &[u8])> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&l[..colon]).ok()?;
            Some((name, body::trim_ows(&l[colon + 1..])))
        })
        .take(MAX_HEADERS)
        .collect();
    let req = Request {
        method,
        target,
        headers: &headers,
    };
    // invariant: the token and origin are valid constants.
    let watch = Grant {
        watch: true,
        ..Grant::default()
    };
    let auth = Auth::new(&[("fuzz-token".into(), watch)]).expect("valid token");
    let cors = Cors::new(vec!["https://ops.example.com".into()]).expect("valid origin");

    let check_error = |e: &ApiError| {
        assert!((400..600).contains(&e.status()), "{e:?}");
        check_response(&e.response(), true);
    };
    let query = match split_target(target).and_then(|(path, q)| {
        if let Err(e) = route(method, path) {
            check_error(&e);
        }
        Query::parse(q)
    }) {
        Ok(q) => q,
        Err(e) => {
            check_error(&e);
            Query::default()
        }
    };
    for r in [
        body_framing(&req, MAX_BODY).map(|_| ()),
        expects_continue(&req).map(|_| ()),
        auth.authorize(&req, &query, Scope::Watch),
        auth.authorize(&req, &query, Scope::Start),
        cors.check_origin(&req),
        parse_job_request(&req, body).map(|_| ()),
        query.flag("follow").map(|_| ()),
    ] {
        if let Err(e) = r {
            check_error(&e);
        }
    }
    let mut decoder = ChunkedDecoder::new(MAX_BODY);
    let mut out = Vec::new();
    match decoder.decode(body, &mut out) {
        Ok(used) => assert!(used <= body.len() && out.len() <= used),
        Err(e) => check_error(&e),
    }
    let _ = last_event_id(&req, &query);
    check_response(&cors.preflight(&req, JOBS), false);
    for (name, value) in cors.cors_headers(&req) {
        check_response(&Response::no_content().with_header(name, value), false);
    }
    match admit(&req, &auth, &cors, MAX_BODY) {
        Admission::Respond(r) => check_response(&r, r.head.status >= 400),
        Admission::Handle(a) => assert_ne!(a.route, Route::Preflight),
    }
}

fn check_response(r: &Response, is_error: bool) {
    let mut buf = Vec::new();
    r.head.encode(&mut buf);
    // invariant: a head ends with exactly one blank line and every line ends in CRLF.
    let text = std::str::from_utf8(&buf).expect("heads are UTF-8");
    let head = text
        .strip_suffix("\r\n\r\n")
        .expect("head ends with a blank line");
    for line in head.split("\r\n") {
        assert!(
            !line.is_empty() && !line.contains(['\r', '\n', '\0']),
            "bad head line {line:?}"
        );
    }
    if is_error {
        assert!((400..600).contains(&r.head.status));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("error body is JSON");
        assert!(v["error"].is_string(), "{v}");
    }
}

#[cfg(test)]
mod tests;

/// Whether the connection stays open after answering `req`: HTTP/1.1 unless the
/// client sent `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
/// `minor_version` is the `x` of `HTTP/1.x`.
#[must_use]
pub fn keep_alive(req: &Request<'_>, minor_version: u8) -> bool {
    let has = |token: &str| {
        req.headers_all("connection").any(|v| {
            v.split(|b| *b == b',')
                .any(|t| body::trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if minor_version == 0 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// Why a runtime's HTTP reader could not read a request; [`ReadFailure::response`]
/// is the answer (always closing the connection), or `None` for failures that get
/// no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFailure {
    /// The client closed mid-request, or never started one: close quietly.
    Gone,
    /// The head or body did not arrive in time (slow or stalled client).
    Timeout,
    /// The head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// The head is not HTTP/1.x; the text says what the parser refused.
    Malformed(&'static str),
    /// The body is larger than [`MAX_BODY`].
    BodyTooLarge,
    /// The chunked body's framing is invalid.
    BadChunk,
}

impl ReadFailure {
    /// The answer to write before closing, if any.
    #[must_use]
    pub fn response(self) -> Option<Response> {
        let e = match self {
            ReadFailure::Gone => return None,
            ReadFailure::Timeout => ApiError::RequestTimeout,
            ReadFailure::HeadTooLarge => ApiError::HeadTooLarge,
            ReadFailure::Malformed(why) => {
                ApiError::BadFraming(format!("malformed request: {why}"))
            }
            ReadFailure::BodyTooLarge => ApiError::BodyTooLarge(MAX_BODY),
            ReadFailure::BadChunk => ApiError::BadFraming("invalid chunked body framing".into()),
        };
        let r = e.response();
        Some(if r.closes_connection() {
            r
        } else {
            r.with_header("Connection", "close")
        })
    }
}

/// Room for a chunk-size line: 8 hex digits (pieces under 4 GiB) and CRLF.
pub(crate) const CHUNK_HEAD_ROOM: usize = 10;

/// How a streamed body (an event stream, a followed log) is delimited on the wire:
/// chunked for HTTP/1.1, close-delimited for HTTP/1.0 clients (which cannot read
/// chunked bodies). A runtime writes every piece of the body through
/// [`StreamFraming::frame`] and ends with [`StreamFraming::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFraming {
    /// `Transfer-Encoding: chunked`; the connection may be reused afterwards.
    Chunked,
    /// No framing: the body ends when the server closes the connection.
    CloseDelimited,
}

impl StreamFraming {
    /// The framing for a client speaking `HTTP/1.<minor_version>`.
    #[must_use]
    pub fn for_version(minor_version: u8) -> StreamFraming {
        if minor_version == 0 {
            StreamFraming::CloseDelimited
        } else {
            StreamFraming::Chunked
        }
    }

    /// Makes a streaming head (from [`sse_head`] or [`chunked_text_head`]) say this
    /// framing.
    pub fn adapt(self, head: &mut ResponseHead) {
        if self == StreamFraming::CloseDelimited {
            head.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("transfer-encoding"));
            head.push("Connection", "close".into());
        }
    }

    /// Starts one piece of body in `buf` (cleared). For chunked framing it reserves
    /// room for the chunk-size line, so the bytes a subscriber then appends need no
    /// second copy: [`StreamFraming::finish`] writes the line in place.
    pub fn begin(self, buf: &mut Vec<u8>) {
        buf.clear();
        if self == StreamFraming::Chunked {
            buf.resize(CHUNK_HEAD_ROOM, 0);
        }
    }

    /// Whether nothing was appended since [`StreamFraming::begin`].
    #[must_use]
    pub fn is_empty(self, buf: &[u8]) -> bool {
        buf.len() == self.room()
    }

    /// Frames what was appended since [`StreamFraming::begin`] and returns the bytes
    /// to write (empty when nothing was appended: an empty chunk would end the body).
    pub fn finish(self, buf: &mut Vec<u8>) -> &[u8] {
        let room = self.room();
        let len = buf.len().saturating_sub(room);
        if len == 0 {
            return &[];
        }
        if self == StreamFraming::CloseDelimited {
            return &buf[..];
        }
        let mut head = [0u8; CHUNK_HEAD_ROOM];
        let at = self.head(len, &mut head);
        buf[at..room].copy_from_slice(&head[at..]);
        buf.extend_from_slice(self.tail());
        &buf[at..]
    }

    /// Writes the line that starts a piece of `len` body bytes at the end of
    /// `head` and returns where it starts (`head.len()`: nothing, when the body is
    /// not chunked). The piece then ends with [`StreamFraming::tail`]. For a piece
    /// sent from several buffers ([`crate::frames::Frames`]).
    pub(crate) fn head(self, len: usize, head: &mut [u8; CHUNK_HEAD_ROOM]) -> usize {
        if self == StreamFraming::CloseDelimited {
            return CHUNK_HEAD_ROOM;
        }
        let mut at = CHUNK_HEAD_ROOM - 2;
        head[at..].copy_from_slice(b"\r\n");
        let mut n = len;
        loop {
            at -= 1;
            head[at] = b"0123456789abcdef"[n & 0xF];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        at
    }

    /// The bytes that end a piece of body started by [`StreamFraming::head`].
    pub(crate) fn tail(self) -> &'static [u8] {
        match self {
            StreamFraming::Chunked => b"\r\n",
            StreamFraming::CloseDelimited => b"",
        }
    }

    fn room(self) -> usize {
        match self {
            StreamFraming::Chunked => CHUNK_HEAD_ROOM,
            StreamFraming::CloseDelimited => 0,
        }
    }

    /// Appends `data` to `buf`, framed.
    pub fn frame(self, data: &[u8], buf: &mut Vec<u8>) {
        match self {
            StreamFraming::Chunked => encode_chunk(data, buf),
            StreamFraming::CloseDelimited => buf.extend_from_slice(data),
        }
    }

    /// The bytes that end the body (then close, for [`StreamFraming::CloseDelimited`]).
    #[must_use]
    pub fn end(self) -> &'static [u8] {
        match self {
            StreamFraming::Chunked => LAST_CHUNK,
            StreamFraming::CloseDelimited => b"",
        }
    }
}

/// The part of a request target fit for a log line: the path, without the query,
/// which may carry a `?token=` or a share link's `?sig=`.
#[must_use]
pub fn path_for_log(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// The server log's line for one answered request: `peer METHOD /path -> status`,
/// the query left out ([`path_for_log`]). Both runtimes log every answer with it.
#[must_use]
pub fn request_log_line(peer: &str, method: &str, target: &str, status: u16) -> String {
    format!("{peer} {method} {} -> {status}", path_for_log(target))
}

#[cfg(test)]
mod framing_tests {
    use super::*;

    #[test]
    fn request_log_lines_never_show_the_query() {
        assert_eq!(
            request_log_line(
                "127.0.0.1:5",
                "GET",
                "/jobs/x/events?token=secret&sig=1.a",
                200
            ),
            "127.0.0.1:5 GET /jobs/x/events -> 200"
        );
        assert_eq!(
            request_log_line("p", "POST", "/jobs", 201),
            "p POST /jobs -> 201"
        );
    }

    #[test]
    fn http10_streams_are_close_delimited() {
        let f = StreamFraming::for_version(0);
        let mut head = sse_head();
        f.adapt(&mut head);
        let mut wire = Vec::new();
        head.encode(&mut wire);
        let text = String::from_utf8(wire).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("transfer-encoding"),
            "{text}"
        );
        assert!(text.contains("Connection: close\r\n"), "{text}");
        let mut body = Vec::new();
        f.frame(b"data: x\n\n", &mut body);
        assert_eq!(body, b"data: x\n\n");
        assert_eq!(f.end(), b"");
    }

    #[test]
    fn begin_finish_frames_in_place_like_encode_chunk() {
        for framing in [StreamFraming::Chunked, StreamFraming::CloseDelimited] {
            for len in [0usize, 1, 15, 16, 255, 4096, 65_536, 100_000] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let mut buf = Vec::new();
                framing.begin(&mut buf);
                assert!(framing.is_empty(&buf));
                buf.extend_from_slice(&data);
                let mut want = Vec::new();
                framing.frame(&data, &mut want);
                assert_eq!(framing.finish(&mut buf), &want[..], "{framing:?} {len}");
            }
        }
    }

    #[test]
    fn http11_streams_are_chunked() {
        let f = StreamFraming::for_version(1);
        let mut head = sse_head();
        f.adapt(&mut head);
        assert_eq!(head.get("transfer-encoding"), Some("chunked"));
        let mut body = Vec::new();
        f.frame(b"abc", &mut body);
        assert_eq!(body, b"3\r\nabc\r\n");
        assert_eq!(f.end(), LAST_CHUNK);
    }
}
