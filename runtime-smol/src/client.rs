//! The terminal client: `spout tail URL` follows a job's event stream and
//! `spout run SERVER COMMAND [ARGS…]` starts a job and follows it (docs/client.md).
//!
//! Blocking std sockets, one thread: the client follows one stream at a time, so
//! it has no use for an executor. The stream is read with the core's response
//! decoder chained into its SSE [`Decoder`] (the WHATWG rules a browser applies);
//! like a browser's `EventSource`, the client reconnects after the server's `retry` delay with
//! `Last-Event-ID`, so a dropped connection loses and repeats nothing. Unlike a
//! browser, it backs off (exponentially, jittered, capped) while the server is down,
//! gives up after a while, and treats 45 s without a byte (three missed heartbeats)
//! as a dead connection.
//!
//! Plain `http://` only: no TLS.

mod http;
mod output;

use http::{Base, Failure, JobUrl, Progress, Request, Response};
use output::{code, notice, Printer};
use serde_json::Value;
use spout_core::sse::{Decoder, Item};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reconnection delay until the server's `retry:` says otherwise.
const INITIAL_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts while the server is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the server may stay unreachable or unavailable before the client gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// No byte for this long means a dead connection: the server sends a heartbeat
/// every 15 s of silence by default, so this is three missed heartbeats.
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// How many output events `tail` shows from before it attached (as `tail -f`).
const TAIL_EVENTS: u32 = 10;
/// Longest SSE line kept (an event is at most 16 KiB of text, which JSON escaping
/// can grow a few times); bounds memory against a broken server.
const MAX_LINE: usize = 1 << 20;

/// `spout tail URL`: follows the job at `url` to its end.
pub fn tail(
    url: &str,
    token: Option<String>,
    from_start: bool,
    last_event_id: Option<u64>,
    json: bool,
) -> ExitCode {
    let job = match JobUrl::parse(url) {
        Ok(job) => job,
        Err(why) => return fail(code::USAGE, &why),
    };
    let position = match (from_start, last_event_id) {
        (true, _) => Position::FromStart,
        (false, Some(n)) => Position::After(n.to_string()),
        (false, None) => Position::Tail,
    };
    match Client::new(token, json, false) {
        Ok(mut client) => ExitCode::from(client.follow(&job, position)),
        Err(status) => ExitCode::from(status),
    }
}

/// `spout run SERVER COMMAND [ARGS…]`: starts the job, prints its URL on stderr,
/// then follows it from its first event.
pub fn run(
    server: &str,
    command: &str,
    args: &[String],
    token: Option<String>,
    kill_on_interrupt: bool,
    json: bool,
) -> ExitCode {
    let base = match Base::parse(server) {
        Ok(base) => base,
        Err(why) => return fail(code::USAGE, &why),
    };
    let mut client = match Client::new(token, json, kill_on_interrupt) {
        Ok(client) => client,
        Err(status) => return ExitCode::from(status),
    };
    let job = match client.start(&base, command, args) {
        Ok(job) => job,
        Err(status) => return ExitCode::from(status),
    };
    let hint = if kill_on_interrupt {
        "Ctrl-C stops it"
    } else {
        "Ctrl-C detaches, the job goes on"
    };
    if notice(&format!("job {} ({hint})", job.url())).is_err() {
        return ExitCode::from(code::OUTPUT);
    }
    ExitCode::from(client.follow(&job, Position::FromStart))
}

fn fail(status: u8, message: &str) -> ExitCode {
    let _ = notice(message);
    ExitCode::from(status)
}

/// Where the next request starts the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Position {
    /// The last [`TAIL_EVENTS`] output events (`?tail=N`).
    Tail,
    /// The first event.
    FromStart,
    /// After this event id (`Last-Event-ID`).
    After(String),
}

/// How one event stream ended.
enum StreamEnd {
    /// The job's `exit` event came: the exit code.
    Exit(u8),
    /// The connection ended or died without `exit`; `progress` when at least one
    /// event came through it.
    Dropped { progress: bool, why: Option<String> },
}

/// A finished exchange that tells the caller to stop with this exit code.
type Stop = u8;

struct Client {
    /// `Bearer <token>`, when a token was given.
    authorization: Option<String>,
    printer: Printer,
    kill_on_interrupt: bool,
    /// SIGINTs received (the handler thread counts them).
    interrupts: Arc<AtomicUsize>,
    /// SIGINTs already acted on.
    handled: usize,
    /// The job was asked to stop (DELETE) after an interrupt.
    stopping: bool,
    /// Where a resume starts; also what the detach hint prints.
    position: Position,
    rng: u64,
}

impl Client {
    fn new(token: Option<String>, json: bool, kill_on_interrupt: bool) -> Result<Client, Stop> {
        let token = token.or_else(|| std::env::var("SPOUT_TOKEN").ok().filter(|t| !t.is_empty()));
        if let Some(t) = &token {
            // It goes into a header line: no byte may end or bend that line.
            if t.bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
            {
                let _ = notice(
                    "the token has spaces or control characters; check --token / SPOUT_TOKEN",
                );
                return Err(code::USAGE);
            }
        }
        let seed = spout_sys::os::try_random_bytes().unwrap_or([7; 16]);
        let mut rng = [0u8; 8];
        rng.copy_from_slice(&seed[..8]);
        Ok(Client {
            authorization: token.map(|t| format!("Bearer {t}")),
            printer: Printer::new(json),
            kill_on_interrupt,
            interrupts: interrupt_counter(),
            handled: 0,
            stopping: false,
            position: Position::FromStart,
            rng: u64::from_le_bytes(rng) | 1,
        })
    }

    /// `POST /jobs`; the job's URL. A server that cannot be reached is not retried:
    /// a job that starts minutes after the user gave up waiting would surprise more.
    fn start(&mut self, base: &Base, command: &str, args: &[String]) -> Result<JobUrl, Stop> {
        let body = serde_json::json!({ "command": command, "args": args }).to_string();
        let target = format!("{}/jobs", base.prefix);
        let mut fields = Vec::new();
        if let Some(auth) = &self.authorization {
            fields.push(("Authorization", auth.as_str()));
        }
        let req = Request {
            method: "POST",
            target: &target,
            fields: &fields,
            json_body: Some(&body),
        };
        let mut response = match http::send(base, &req, &|| false) {
            Ok(response) => response,
            Err(failure) => {
                let _ = notice(&format!(
                    "cannot start a job at {}: {failure}",
                    base.url("")
                ));
                return Err(code::UNAVAILABLE);
            }
        };
        if response.status != 201 {
            return Err(refusal(
                &mut response,
                &format!("POST {}", base.url("/jobs")),
                true,
            ));
        }
        let location = response.header("location").unwrap_or_default().to_owned();
        let id = location.rsplit('/').next().unwrap_or_default();
        match JobUrl::parse(&base.url(&format!("/jobs/{id}"))) {
            Ok(job) if location.contains("/jobs/") => Ok(job),
            _ => {
                let _ = notice(&format!(
                    "the server answered 201 without a job Location ({location:?}); is it a spout server?"
                ));
                Err(code::PROTOCOL)
            }
        }
    }

    /// Follows `job`'s stream from `position` to its end; the exit code.
    fn follow(&mut self, job: &JobUrl, position: Position) -> u8 {
        self.position = position;
        let mut retry = INITIAL_RETRY;
        // Consecutive attempts that brought no event, and since when.
        let mut failures: u32 = 0;
        let mut failing_since: Option<Instant> = None;
        loop {
            if let Some(status) = self.check_interrupt(job) {
                return status;
            }
            let why = match self.connect(job) {
                Ok(mut response) => match response.status {
                    200 if is_event_stream(&response) => {
                        match self.stream(job, response, &mut retry) {
                            Ok(StreamEnd::Exit(status)) => return status,
                            Ok(StreamEnd::Dropped {
                                progress: true,
                                why,
                            }) => {
                                failures = 0;
                                failing_since = None;
                                if let Some(why) = why {
                                    let _ = notice(&format!("{why}; reconnecting"));
                                }
                                if let Some(status) = self.sleep(job, retry) {
                                    return status;
                                }
                                continue;
                            }
                            Ok(StreamEnd::Dropped {
                                progress: false,
                                why,
                            }) => why.unwrap_or_else(|| "the stream ended with no event".into()),
                            Err(status) => return status,
                        }
                    }
                    204 => return self.final_status(job),
                    429 | 502 | 503 | 504 => {
                        let wait = retry_after(&response);
                        let why = format!("the server is busy ({})", response.status);
                        failing_since.get_or_insert_with(Instant::now);
                        if let Some(status) = self.give_up_if_long(failing_since, &why) {
                            return status;
                        }
                        let wait =
                            wait.unwrap_or_else(|| backoff(retry, failures + 1, &mut self.rng));
                        let _ = notice(&format!("{why}; retrying in {:.1} s", wait.as_secs_f64()));
                        failures += 1;
                        if let Some(status) = self.sleep(job, wait) {
                            return status;
                        }
                        continue;
                    }
                    _ => return refusal(&mut response, &format!("GET {}", job.url()), false),
                },
                Err(Failure::Stopped) => continue,
                Err(failure @ Failure::Resolve(_)) => {
                    let _ = notice(&format!("{}: {failure}", job.url()));
                    return code::UNAVAILABLE;
                }
                Err(failure) => failure.to_string(),
            };
            failures += 1;
            failing_since.get_or_insert_with(Instant::now);
            if let Some(status) = self.give_up_if_long(failing_since, &why) {
                return status;
            }
            let wait = backoff(retry, failures, &mut self.rng);
            let _ = notice(&format!(
                "{why} ({}); retrying in {:.1} s",
                job.base.url(""),
                wait.as_secs_f64()
            ));
            if let Some(status) = self.sleep(job, wait) {
                return status;
            }
        }
    }

    fn give_up_if_long(&self, since: Option<Instant>, why: &str) -> Option<Stop> {
        let since = since?;
        (since.elapsed() >= GIVE_UP_AFTER).then(|| {
            let _ = notice(&format!(
                "giving up: {why}, for {} s",
                since.elapsed().as_secs()
            ));
            code::UNAVAILABLE
        })
    }

    /// Opens the event stream at the current position.
    fn connect(&mut self, job: &JobUrl) -> Result<Response, Failure> {
        let mut target = job.path("/events");
        // gzip: build logs shrink 5-10x; the core decodes it as it streams.
        let mut fields: Vec<(&str, &str)> =
            vec![("Accept", "text/event-stream"), ("Accept-Encoding", "gzip")];
        match &self.position {
            Position::Tail => {
                target.push_str(&format!("?tail={TAIL_EVENTS}"));
                self.printer.expect_tail_skip();
            }
            Position::FromStart => {}
            Position::After(id) => fields.push(("Last-Event-ID", id)),
        }
        if let Some(auth) = &self.authorization {
            fields.push(("Authorization", auth));
        }
        let req = Request {
            method: "GET",
            target: &target,
            fields: &fields,
            json_body: None,
        };
        let (interrupts, handled) = (Arc::clone(&self.interrupts), self.handled);
        http::send(&job.base, &req, &|| {
            interrupts.load(Ordering::SeqCst) > handled
        })
    }

    /// Reads one event stream, showing events, until it ends.
    fn stream(
        &mut self,
        job: &JobUrl,
        response: Response,
        retry: &mut Duration,
    ) -> Result<StreamEnd, Stop> {
        let mut events = response.into_events(Decoder::with_max_line(MAX_LINE));
        let mut progress = false;
        let mut last_byte = Instant::now();
        loop {
            if let Some(status) = self.check_interrupt(job) {
                return Err(status);
            }
            // Show everything that has arrived, then read more.
            loop {
                match events.poll_item() {
                    Ok(Some(Item::Retry(ms))) => *retry = Duration::from_millis(ms),
                    Ok(Some(Item::Event(event))) => {
                        progress = true;
                        if !events.last_event_id().is_empty() {
                            self.position = Position::After(events.last_event_id().to_owned());
                        }
                        match self.printer.show(&event) {
                            Ok(Some(status)) => return Ok(StreamEnd::Exit(status)),
                            Ok(None) => {}
                            Err(_) => return Err(code::OUTPUT),
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(why) => {
                        return Ok(StreamEnd::Dropped {
                            progress,
                            why: (!progress).then_some(why),
                        })
                    }
                }
            }
            if events.is_complete() {
                return Ok(StreamEnd::Dropped {
                    progress,
                    why: None,
                });
            }
            match events.read() {
                Ok(Progress::Data | Progress::End) => last_byte = Instant::now(),
                Ok(Progress::Idle) if last_byte.elapsed() >= DEAD_AFTER => {
                    let why = format!("no data from the server for {} s", DEAD_AFTER.as_secs());
                    return Ok(StreamEnd::Dropped {
                        progress,
                        why: Some(why),
                    });
                }
                Ok(Progress::Idle) => {}
                Err(why) => {
                    return Ok(StreamEnd::Dropped {
                        progress,
                        why: (!progress).then_some(why),
                    })
                }
            }
        }
    }

    /// After a `204` (the position is the job's last event): the exit code from
    /// the job's status.
    fn final_status(&mut self, job: &JobUrl) -> u8 {
        let target = job.path("");
        let mut fields = Vec::new();
        if let Some(auth) = &self.authorization {
            fields.push(("Authorization", auth.as_str()));
        }
        let req = Request {
            method: "GET",
            target: &target,
            fields: &fields,
            json_body: None,
        };
        let status = http::send(&job.base, &req, &|| false)
            .map_err(|f| f.to_string())
            .and_then(|mut r| match r.status {
                200 => r.read_to_end(),
                other => Err(format!("GET {} answered {other}", job.url())),
            })
            .and_then(|body| serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()));
        match status {
            Ok(status) => {
                let failed = status.get("state").and_then(Value::as_str) == Some("failed");
                output::exit_code(status.get("exit").unwrap_or(&Value::Null), failed)
            }
            Err(why) => {
                let _ = notice(&format!(
                    "the job has ended, but its exit status is unknown: {why}"
                ));
                code::NO_STATUS
            }
        }
    }

    /// Acts on a new Ctrl-C: detach (`Some(exit code)`), or with
    /// `--kill-on-interrupt`, ask the server to stop the job and keep following (a
    /// second Ctrl-C detaches).
    fn check_interrupt(&mut self, job: &JobUrl) -> Option<Stop> {
        let seen = self.interrupts.load(Ordering::SeqCst);
        if seen <= self.handled {
            return None;
        }
        self.handled = seen;
        if self.kill_on_interrupt && !self.stopping {
            self.stopping = true;
            self.stop_job(job);
            return None;
        }
        let resume = match &self.position {
            Position::After(id) => format!("--last-event-id {id}"),
            Position::FromStart | Position::Tail => "--from-start".to_owned(),
        };
        let _ = notice(&format!(
            "detached; the job goes on. Re-attach with: spout tail {} {resume}",
            job.url()
        ));
        Some(code::DETACHED)
    }

    /// `DELETE /jobs/ID`, reporting the outcome on stderr.
    fn stop_job(&mut self, job: &JobUrl) {
        let target = job.path("");
        let mut fields = Vec::new();
        if let Some(auth) = &self.authorization {
            fields.push(("Authorization", auth.as_str()));
        }
        let req = Request {
            method: "DELETE",
            target: &target,
            fields: &fields,
            json_body: None,
        };
        let message = match http::send(&job.base, &req, &|| false) {
            Ok(r) if r.status == 202 => {
                "stopping the job; following it to its end (Ctrl-C again to detach)".to_owned()
            }
            Ok(mut r) => {
                let message = error_message(&mut r);
                format!("could not stop the job: {} {message}", r.status)
            }
            Err(failure) => format!("could not stop the job: {failure}"),
        };
        let _ = notice(&message);
    }

    /// Waits `wait`, acting on interrupts meanwhile.
    fn sleep(&mut self, job: &JobUrl, wait: Duration) -> Option<Stop> {
        let until = Instant::now() + wait;
        loop {
            if let Some(status) = self.check_interrupt(job) {
                return Some(status);
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            std::thread::sleep((until - now).min(http::TICK));
        }
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"))
}

/// A 4xx (or unexpected) answer: its message on stderr, the exit code for it.
fn refusal(response: &mut Response, what: &str, starting: bool) -> Stop {
    let status = response.status;
    let message = error_message(response);
    let (code, advice) = match status {
        200 => (
            code::PROTOCOL,
            "the answer is not an event stream; is this a spout server?",
        ),
        400 => (code::REFUSED, ""),
        401 | 403 => (
            code::NO_PERMISSION,
            "pass a token with --token or SPOUT_TOKEN",
        ),
        404 if starting => (code::PROTOCOL, "no /jobs there; is this a spout server?"),
        404 => (
            code::NO_SUCH_JOB,
            "check the job URL (GET /jobs lists them)",
        ),
        429 | 503 if starting => (code::BUSY, "nothing was started; try again later"),
        _ => (code::PROTOCOL, ""),
    };
    let mut line = format!("{what}: {status} {message}");
    if !advice.is_empty() {
        line.push_str("; ");
        line.push_str(advice);
    }
    let _ = notice(line.trim_end());
    code
}

/// The `error` of a JSON error body, or a short excerpt of the body.
fn error_message(response: &mut Response) -> String {
    let body = response.read_to_end().unwrap_or_default();
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_owned),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

/// `Retry-After` in seconds, capped like the backoff.
fn retry_after(response: &Response) -> Option<Duration> {
    let secs: u64 = response.header("retry-after")?.parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_BACKOFF))
}

/// The wait before attempt number `failures + 1` after `failures` consecutive
/// failures: `retry · 2^(failures-1)`, capped at [`MAX_BACKOFF`], then a random
/// point in its upper half ("equal jitter"), so clients that lost the same server
/// do not come back in step.
fn backoff(retry: Duration, failures: u32, rng: &mut u64) -> Duration {
    let exp = retry.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let capped = exp.min(MAX_BACKOFF);
    // xorshift64: plenty for spreading reconnects.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let fraction = (*rng >> 11) as f64 / (1u64 << 53) as f64;
    capped.mul_f64(0.5 + fraction / 2.0)
}

/// Counts SIGINTs from now on. The handler is installed here, on the calling
/// thread, before anything is sent (so an early Ctrl-C is never the default
/// kill); a small thread waits on it with `async-signal`, which this binary already
/// uses for the server's shutdown, and the main loop reads the count between reads
/// (at most [`http::TICK`] apart). If the handler cannot be installed, Ctrl-C keeps
/// its default meaning (the client dies; the job goes on, as with a detach).
fn interrupt_counter() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    if let Ok(mut signals) = async_signal::Signals::new([async_signal::Signal::Int]) {
        let count = Arc::clone(&count);
        std::thread::spawn(move || {
            smol::block_on(async {
                use futures_lite::StreamExt;
                while signals.next().await.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        });
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_caps() {
        let mut rng = 0x1234_5678_9abc_def1;
        let retry = Duration::from_secs(1);
        for failures in 1..40 {
            let full = retry
                .saturating_mul(1 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            let got = backoff(retry, failures, &mut rng);
            assert!(
                got >= full / 2 && got <= full,
                "{failures}: {got:?} vs {full:?}"
            );
        }
        let a = backoff(retry, 3, &mut rng);
        let b = backoff(retry, 3, &mut rng);
        assert_ne!(a, b, "jitter varies");
    }
}
