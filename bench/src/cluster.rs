//! Scenario 7, cluster (issue 14): what sharing a job through Redis Streams costs.
//!
//! For each spout runtime binary, on a fresh `redis-server` on a unix socket:
//! - fan-out: one job started on server A, 100 subscribers on A and 100 on B (which
//!   follows the job from Redis), against one server alone with 200 subscribers:
//!   lines/s, and CPU seconds per delivered GB of each server and of redis-server;
//! - latency: the same layout at a fixed line rate, the generator's timestamps giving
//!   p50/p99 on the owner and on the other server (the difference is the Redis hop);
//! - memory: Redis `used_memory` before and after a finished job of known events.
//!
//! Every subscriber is the thread-per-subscriber client (a fast reader, so the servers
//! and Redis are what is measured), every event parsed and checked. The tables are
//! Markdown of their own (no peer to compare with); `bench/run.sh` writes them into
//! their own marked section of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, Seen, Watch};
use crate::target::{self, Kind, Server, Settings, Target};
use crate::{join_readers, spawn_readers, Ctx, Mode};

/// The redis-server binary (Debian package `redis-server`).
const REDIS_SERVER: &str = "redis-server";

/// Runs the cluster scenario for every spout runtime binary and returns its tables.
pub fn run(ctx: &Ctx) -> String {
    // One row per binary: a variant of the same binary (an environment, such as
    // `SMOL_THREADS=1`) is not a runtime of its own here.
    let mut runtimes: Vec<&Target> = Vec::new();
    for t in &ctx.targets {
        if let Kind::Spout(bin) = &t.kind {
            if !runtimes
                .iter()
                .any(|r| matches!(&r.kind, Kind::Spout(b) if b == bin))
            {
                runtimes.push(t);
            }
        }
    }
    let mut out = String::new();
    out.push_str(&fanout(ctx, &runtimes));
    out.push_str(&latency(ctx, &runtimes));
    out.push_str(&memory(ctx, &runtimes));
    out
}

// ----- redis-server -----

/// A redis-server on a unix socket in a directory of its own; dropping it kills it.
struct Redis {
    socket: PathBuf,
    child: Child,
}

impl Redis {
    fn start(tmp: &Path) -> Result<Redis, String> {
        let dir = tmp.join(format!("redis-{}", client::now_ns()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("redis.sock");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            // For bench/run.sh's exit trap, should the bench itself be killed.
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{REDIS_SERVER}: {e}"))?;
        let mut redis = Redis { socket, child };
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if matches!(redis.command(&["PING"]), Ok(Reply::Text(p)) if p == "PONG") {
                return Ok(redis);
            }
            if let Ok(Some(st)) = redis.child.try_wait() {
                return Err(format!("redis-server exited: {st}"));
            }
            if Instant::now() > until {
                return Err("redis-server does not answer PING".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn cpu_s(&self) -> f64 {
        target::cpu_s(self.child.id())
    }

    /// One command over a fresh connection (RESP2).
    fn command(&self, args: &[&str]) -> Result<Reply, String> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            let _ = write!(req, "${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        read_reply(&mut BufReader::new(s))
    }

    fn text(&self, args: &[&str]) -> Result<String, String> {
        match self.command(args)? {
            Reply::Text(t) => Ok(t),
            Reply::Nil => Ok(String::new()),
            r => Err(format!("{args:?}: unexpected {r:?}")),
        }
    }

    /// `used_memory` of `INFO memory`, in bytes.
    fn used_memory(&self) -> Result<u64, String> {
        let info = self.text(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
            .ok_or_else(|| "no used_memory in INFO memory".into())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGTERM, so it removes its pid file and socket; SIGKILL if it lingers. Then
        // the directory goes, so no stale pid file is left for run.sh's trap.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A RESP2 reply; simple strings, bulk strings and integers all come as text (the
/// scenario needs no array's elements: they are read and dropped).
#[derive(Debug)]
enum Reply {
    Text(String),
    Nil,
    Array,
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply")?;
    let num = || rest.parse::<i64>().map_err(|e| format!("{line:?}: {e}"));
    match kind {
        "+" | ":" => Ok(Reply::Text(rest.to_owned())),
        "-" => Err(format!("redis: {rest}")),
        "$" => {
            let Ok(n) = usize::try_from(num()?) else {
                return Ok(Reply::Nil);
            };
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(n);
            Ok(Reply::Text(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let n = num()?;
            for _ in 0..n.max(0) {
                read_reply(r)?;
            }
            Ok(Reply::Array)
        }
        _ => Err(format!("not RESP: {line:?}")),
    }
}

// ----- one measured job -----

/// What one job with subscribers spread over one or two servers measured.
struct Measured {
    wall_s: f64,
    /// Per server (the owner first): CPU seconds from "go" to the last `exit`, and
    /// what its subscribers saw.
    servers: Vec<(f64, Vec<Seen>)>,
    /// redis-server's CPU seconds over the same span, when there is one.
    redis_cpu_s: Option<f64>,
    /// What Redis served over the same span, when there is one.
    redis_use: Option<RedisUse>,
    errors: Vec<String>,
}

/// Redis's own account of the servers' use of it: whether there is one reader per
/// job and server (not one per subscriber), and whether appends are batched.
struct RedisUse {
    /// `connected_clients` once every subscriber is connected.
    clients: u64,
    /// Calls of `EVAL`/`EVALSHA` (the owner's appends).
    appends: u64,
    /// Calls of `XREAD`/`XRANGE` (the followers' reads).
    reads: u64,
}

impl Redis {
    /// `FIELD:VALUE` of an `INFO` section, as a number (the first number of it).
    fn info_number(&self, section: &str, field: &str) -> Result<u64, String> {
        let info = self.text(&["INFO", section])?;
        info.lines()
            .find_map(|l| {
                let v = l.strip_prefix(field)?.strip_prefix(':')?;
                let v = v.strip_prefix("calls=").unwrap_or(v);
                v.split([',', '\r']).next()?.trim().parse().ok()
            })
            .map_or(Ok(0), Ok)
    }

    fn calls(&self, commands: &[&str]) -> Result<u64, String> {
        commands.iter().try_fold(0, |sum, c| {
            Ok(sum + self.info_number("commandstats", &format!("cmdstat_{c}"))?)
        })
    }
}

/// Starts `servers` servers of `target` (two share a fresh Redis), a job of `args` on
/// the first that waits for a go file, `total` subscribers split evenly over the
/// servers, then lets the job write and measures until every stream has ended.
fn measure(
    ctx: &Ctx,
    target: &Target,
    servers: usize,
    total: usize,
    args: &[String],
    w: &Watch,
    mode: Mode,
) -> Result<Measured, String> {
    // Declared first, dropped last: the servers stop while Redis still answers.
    let redis = if servers > 1 {
        Some(Redis::start(&ctx.tmp)?)
    } else {
        None
    };
    let settings = Settings {
        heartbeat_s: 15,
        redis: redis.as_ref().map(Redis::url),
    };
    let mut started = Vec::new();
    for name in ["A", "B", "C", "D"].iter().take(servers) {
        let t = Target {
            name: format!("{}-{name}", target.name),
            ..target.clone()
        };
        started.push(Server::start(&t, &ctx.tmp, &ctx.gen, &settings)?);
    }
    let go = crate::go_file(ctx, &target.name);
    let mut job_args = vec!["--go".to_owned(), go.display().to_string()];
    job_args.extend(args.iter().cloned());
    let job = started[0].start_job(&job_args)?;
    let connected = Arc::new(AtomicUsize::new(0));
    let w = Watch {
        path: job.path.clone(),
        connected: Some(connected.clone()),
        ..w.clone()
    };
    let per = total / servers;
    let handles: Vec<_> = started
        .iter()
        .map(|s| spawn_readers(s.addr, &w, per, mode))
        .collect();
    let until = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::SeqCst) < per * servers && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu0: Vec<f64> = started.iter().map(Server::cpu_s).collect();
    let clients = match &redis {
        Some(r) => {
            r.command(&["CONFIG", "RESETSTAT"])?;
            Some(r.info_number("clients", "connected_clients")?)
        }
        None => None,
    };
    let redis0 = redis.as_ref().map(Redis::cpu_s);
    let t0 = Instant::now();
    std::fs::write(&go, b"").map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    let mut seen: Vec<Vec<Seen>> = Vec::new();
    for (group, name) in handles.into_iter().zip(["A", "B", "C", "D"]) {
        let mut v = Vec::new();
        join_readers(group, &format!("on {name}: "), &mut v, &mut errors);
        seen.push(v);
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = started
        .iter()
        .zip(&cpu0)
        .map(|(s, c0)| s.cpu_s() - c0)
        .collect();
    let redis_cpu_s = redis.as_ref().zip(redis0).map(|(r, c0)| r.cpu_s() - c0);
    let redis_use = match (&redis, clients) {
        (Some(r), Some(clients)) => Some(RedisUse {
            clients,
            appends: r.calls(&["eval", "evalsha"])?,
            reads: r.calls(&["xread", "xrange"])?,
        }),
        _ => None,
    };
    Ok(Measured {
        wall_s,
        servers: cpu.into_iter().zip(seen).collect(),
        redis_cpu_s,
        redis_use,
        errors,
    })
}

fn errors_cell(errors: &[String]) -> String {
    crate::errors_cell(errors)
}

/// A Markdown table (no ratio column: every row is spout).
fn table(title: &str, headers: &[&str], rows: &[Vec<String>], note: &str) -> String {
    let mut s = format!("### {title}\n\n|");
    for h in headers {
        let _ = write!(s, " {h} |");
    }
    s.push_str("\n| --- |");
    for _ in 1..headers.len() {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for r in rows {
        s.push('|');
        for c in r {
            let _ = write!(s, " {} |", c.replace('|', "/"));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n{note}\n");
    s
}

fn failed_row(label: String, cells: usize, e: &str) -> Vec<String> {
    eprintln!("   {label}: {e}");
    let mut r = vec![label];
    r.extend((2..cells).map(|_| "n/a".to_owned()));
    r.push(format!("failed: {e}"));
    r
}

// ----- 7a. fan-out through Redis -----

fn fanout(ctx: &Ctx, runtimes: &[&Target]) -> String {
    let s = ctx.sizes;
    let total = 2 * s.subscribers;
    let headers = [
        "runtime, layout",
        "lines/s delivered",
        "MB/s delivered",
        "owner CPU s per GB",
        "other server CPU s per GB",
        "redis-server CPU s per GB",
        "all processes CPU s per GB",
        "Redis clients; appends (events each); reads",
        "complete, in order",
    ];
    let mut rows = Vec::new();
    for target in runtimes {
        for servers in [1, 2] {
            let label = if servers == 1 {
                format!("{}, 1 server × {total}", target.name)
            } else {
                format!("{}, 2 servers × {} via Redis", target.name, total / 2)
            };
            eprintln!("-- {label}");
            let w = Watch {
                first_seq: Some(1),
                expect_lines: Some(s.fanout_lines),
                consecutive_ids: true,
                ..Watch::default()
            };
            let args = ["lines".to_owned(), s.fanout_lines.to_string()];
            let row = measure(ctx, target, servers, total, &args, &w, Mode::Threads).map(|m| {
                let gb = |seen: &[Seen]| seen.iter().map(|x| x.bytes).sum::<u64>() as f64 / 1e9;
                let all_gb: f64 = m.servers.iter().map(|(_, v)| gb(v)).sum();
                let lines: u64 = m.servers.iter().flat_map(|(_, v)| v).map(|x| x.lines).sum();
                let per_gb = |cpu: f64, gb: f64| format!("{:.3}", cpu / gb);
                let server_cell = |k: usize| {
                    m.servers
                        .get(k)
                        .map_or("–".to_owned(), |(cpu, v)| per_gb(*cpu, gb(v)))
                };
                let all_cpu: f64 =
                    m.servers.iter().map(|(c, _)| c).sum::<f64>() + m.redis_cpu_s.unwrap_or(0.0);
                vec![
                    label.clone(),
                    format!("{:.0}", lines as f64 / m.wall_s),
                    format!("{:.0}", all_gb * 1e3 / m.wall_s),
                    server_cell(0),
                    server_cell(1),
                    m.redis_cpu_s.map_or("–".to_owned(), |c| per_gb(c, all_gb)),
                    per_gb(all_cpu, all_gb),
                    m.redis_use.as_ref().map_or("–".to_owned(), |u| {
                        let events = m
                            .servers
                            .iter()
                            .flat_map(|(_, v)| v)
                            .map(|x| x.events)
                            .max()
                            .unwrap_or(0);
                        format!(
                            "{}; {} ({:.0}); {}",
                            u.clients,
                            u.appends,
                            events as f64 / u.appends.max(1) as f64,
                            u.reads
                        )
                    }),
                    errors_cell(&m.errors),
                ]
            });
            rows.push(row.unwrap_or_else(|e| failed_row(label, headers.len(), &e)));
        }
    }
    table(
        &format!(
            "7a. Cluster fan-out: {} lines of 100 B to {total} subscribers, one server vs two through Redis",
            s.fanout_lines
        ),
        &headers,
        &rows,
        "The job runs on the owner (A); with two servers, 100 subscribers are on A and 100 \
         on B, which follows the job from Redis (one reader per job, `XREAD BLOCK`). A \
         server's CPU s per GB is its CPU over the GB its own subscribers received; \
         redis-server's and \"all processes\" are over the GB all subscribers received \
         (the generator's CPU is not counted). Redis column: `connected_clients` once every \
         subscriber is connected (the bench's own `INFO` connection included; each \
         server's: one reader per followed job, not one per subscriber, plus its pusher, \
         watch and control connections), \
         then `INFO commandstats` over the job: `EVAL` calls (the owner's batched \
         appends) with the output events each carried, and `XREAD`/`XRANGE` calls (the \
         other server's reads). Thread-per-subscriber client, every event \
         parsed and checked (ids consecutive, every line once, in order).",
    )
}

// ----- 7b. latency added by the Redis hop -----

fn latency(ctx: &Ctx, runtimes: &[&Target]) -> String {
    let s = ctx.sizes;
    let total = 2 * s.subscribers;
    let headers = [
        "runtime, client, subscribers on",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p50 added ms",
        "p99 added ms",
        "complete, in order",
    ];
    let mut rows = Vec::new();
    for (target, mode) in runtimes
        .iter()
        .flat_map(|t| ctx.modes.iter().map(move |m| (t, *m)))
    {
        eprintln!("-- {}, latency, {}", target.name, mode.label());
        let w = Watch {
            first_seq: Some(1),
            expect_lines: Some(s.rate * s.rate_secs),
            consecutive_ids: true,
            latency: true,
            ..Watch::default()
        };
        let args = [
            "rate".to_owned(),
            s.rate.to_string(),
            s.rate_secs.to_string(),
        ];
        match measure(ctx, target, 2, total, &args, &w, mode) {
            Ok(m) => {
                let pcts: Vec<[f64; 3]> = m
                    .servers
                    .iter()
                    .map(|(_, v)| {
                        let mut all: Vec<u64> =
                            v.iter().flat_map(|x| x.latencies.iter().copied()).collect();
                        all.sort_unstable();
                        let pct = |p: f64| {
                            all.get(
                                ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)),
                            )
                            .map_or(f64::NAN, |&ns| ns as f64 / 1e6)
                        };
                        [pct(0.5), pct(0.99), pct(1.0)]
                    })
                    .collect();
                let errors = errors_cell(&m.errors);
                for (k, p) in pcts.iter().enumerate() {
                    let (who, added) = if k == 0 {
                        ("the owner (A)", ["–".to_owned(), "–".to_owned()])
                    } else {
                        (
                            "the other server (B)",
                            [
                                format!("{:.2}", p[0] - pcts[0][0]),
                                format!("{:.2}", p[1] - pcts[0][1]),
                            ],
                        )
                    };
                    let [a50, a99] = added;
                    rows.push(vec![
                        format!("{}, {}, {who}", target.name, mode.label()),
                        format!("{:.2}", p[0]),
                        format!("{:.2}", p[1]),
                        format!("{:.2}", p[2]),
                        a50,
                        a99,
                        errors.clone(),
                    ]);
                }
            }
            Err(e) => rows.push(failed_row(target.name.clone(), headers.len(), &e)),
        }
    }
    table(
        &format!(
            "7b. Cluster latency: {} lines/s for {} s, {} subscribers on the owner and {} on the other server, write → parsed",
            s.rate, s.rate_secs, s.subscribers, s.subscribers
        ),
        &headers,
        &rows,
        "Each line carries the wall-clock nanoseconds of its write(2) by the generator; a \
         sample is taken when the client has parsed the event that holds it. \"Added\" is \
         the other server's figure minus the owner's in the same run: the cost of the \
         Redis hop (the owner's pusher `EVAL`, then the other server's `XREAD`). Issue \
         14's target: p99 added ≤ 2 ms. Each row names its client: the one-thread \
         client (one thread per server reads all of that server's subscribers, \
         `poll(2)`) or one thread per subscriber (200 threads on this 2-core machine: \
         their scheduling is most of the tail).",
    )
}

// ----- 7c. Redis memory per stored event -----

fn memory(ctx: &Ctx, runtimes: &[&Target]) -> String {
    let n = (ctx.sizes.resume_events / 20).max(1000);
    const RATE: u64 = 5000;
    let secs = (n / RATE).max(1);
    let jobs = [
        (
            format!("{} lines, {RATE}/s: about one line per event", RATE * secs),
            RATE * secs,
            vec!["rate".to_owned(), RATE.to_string(), secs.to_string()],
        ),
        (
            format!("{n} lines at full speed: events up to 16 KiB"),
            n,
            vec!["lines".to_owned(), n.to_string()],
        ),
    ];
    let headers = [
        "runtime",
        "job",
        "events in the stream",
        "lines per event",
        "used_memory growth MB",
        "bytes per event",
        "bytes per 100-B line",
        "stream's MEMORY USAGE per event",
    ];
    let mut rows = Vec::new();
    for target in runtimes {
        for (label, lines, args) in &jobs {
            eprintln!("-- {}, redis memory, {label}", target.name);
            let row = memory_of(ctx, target, args).map(|(events, grew, stream)| {
                vec![
                    target.name.clone(),
                    label.clone(),
                    events.to_string(),
                    format!(
                        "{:.2}",
                        *lines as f64 / events.saturating_sub(2).max(1) as f64
                    ),
                    format!("{:.2}", grew as f64 / 1e6),
                    format!("{:.0}", grew as f64 / events.max(1) as f64),
                    format!("{:.0}", grew as f64 / (*lines).max(1) as f64),
                    format!("{:.0}", stream as f64 / events.max(1) as f64),
                ]
            });
            rows.push(row.unwrap_or_else(|e| {
                failed_row(format!("{}, {label}", target.name), headers.len(), &e)
            }));
        }
    }
    table(
        "7c. Redis memory per stored event",
        &headers,
        &rows,
        "`INFO memory` `used_memory` of a fresh redis-server with one spout server on it, \
         before the job and after its `exit` is in the stream (the record's `last_id` \
         equals the job's last event id, and `XLEN` equals it too: nothing lost, nothing \
         twice), divided by the stream's length (`start`, the output events, `exit`) and by \
         the lines written; the last column is the stream key alone (`MEMORY USAGE KEY \
         SAMPLES 0`). The server reads what the pipe holds, so an event carries as \
         many lines as were written since its last read (column 4): the first job paces \
         its writes, the second writes 64 KiB blocks. The growth also holds what \
         does not grow with the job (the job's record, lease and index entry, the append \
         script, client buffers: a few hundred KB here), so the last column is the \
         figure per event. `redis_max_events` \
         (100000) is above both jobs' sizes, so nothing is trimmed.",
    )
}

/// Runs one job of `args` on a server of `target` with a fresh Redis; returns (events
/// in the stream, `used_memory` growth, the stream key's `MEMORY USAGE`), in bytes.
fn memory_of(ctx: &Ctx, target: &Target, args: &[String]) -> Result<(u64, u64, u64), String> {
    let redis = Redis::start(&ctx.tmp)?;
    let settings = Settings {
        heartbeat_s: 15,
        redis: Some(redis.url()),
    };
    let t = Target {
        name: format!("{}-mem", target.name),
        ..(*target).clone()
    };
    let server = Server::start(&t, &ctx.tmp, &ctx.gen, &settings)?;
    std::thread::sleep(Duration::from_millis(300));
    let before = redis.used_memory()?;
    let mut job = server.start_job(args)?;
    server.wait_finished(&mut job, Duration::from_secs(300))?;
    let last = server.last_event_id(&job)?;
    let record = format!("spout:{{{}}}:job", job.id);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let pushed = redis.text(&["HGET", &record, "last_id"])?;
        if pushed.parse::<u64>().ok() == Some(last) {
            break;
        }
        if Instant::now() > until {
            return Err(format!(
                "redis holds up to event {pushed:?}, the job's last is {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = redis.used_memory()?;
    let stream = format!("spout:{{{}}}:events", job.id);
    let number = |args: &[&str]| -> Result<u64, String> {
        let t = redis.text(args)?;
        t.parse().map_err(|e| format!("{args:?}: {t:?}: {e}"))
    };
    let events = number(&["XLEN", &stream])?;
    // SAMPLES 0: every entry counted, not an estimate from a few.
    let usage = number(&["MEMORY", "USAGE", &stream, "SAMPLES", "0"])?;
    if events != last {
        return Err(format!("the stream holds {events} events of {last}"));
    }
    Ok((events, after.saturating_sub(before), usage))
}
