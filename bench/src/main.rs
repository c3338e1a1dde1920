//! `bench`: runs the benchmark scenarios of `docs/benchmarks.md` against every target
//! named on the command line and writes the results as Markdown tables, each with the
//! ratio of every spout runtime to the best peer.
//!
//! Run it through `bench/run.sh` (it builds, installs the peers and raises limits).
//! Directly: `bench [--quick] [--only fanout,latency,idle,resume,bounded,micro,cluster]
//! --gen PATH --tmp DIR --out FILE --target NAME=spout:BIN --target NAME=express:SCRIPT
//! --target NAME=nchan:DIR [--client one-thread|threads|both] [--rounds N]`. A second
//! spout runtime is one more `--target`; `NAME=spout:BIN,KEY=VAL` runs it with an
//! environment variable set (e.g. `SMOL_THREADS=1`). Fan-out and latency run once per
//! client mode; fan-out (both clients) and latency (one-thread client) run `--rounds`
//! times per target, targets in turn (3, or 1 with `--quick`), and report medians.
//! The cluster scenario (`cluster.rs`, needs `redis-server`) writes its tables to
//! `OUT.cluster`.

mod client;
mod cluster;
mod micro;
mod target;
mod wire;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::Watch;
use target::{Kind, Server, Settings, Target};

/// Sizes of one run: the full suite, or `--quick`.
struct Sizes {
    fanout_lines: u64,
    subscribers: usize,
    rate: u64,
    rate_secs: u64,
    idle: usize,
    idle_window_s: u64,
    /// The window of the idle run at the default 15 s heartbeat (`None`: not run).
    idle_default_window_s: Option<u64>,
    resume_events: u64,
    reconnects: usize,
    bounded_bytes: u64,
    micro_mb: usize,
    /// Runs per target of fan-out (both clients) and of latency (one-thread client).
    rounds: usize,
}

const FULL: Sizes = Sizes {
    fanout_lines: 100_000,
    subscribers: 100,
    rate: 1000,
    rate_secs: 10,
    idle: 10_000,
    idle_window_s: 10,
    idle_default_window_s: Some(60),
    resume_events: 1_000_000,
    reconnects: 100,
    bounded_bytes: 2_000_000_000,
    micro_mb: 64,
    rounds: 3,
};

const QUICK: Sizes = Sizes {
    fanout_lines: 20_000,
    subscribers: 100,
    rate: 1000,
    rate_secs: 3,
    idle: 1000,
    idle_window_s: 3,
    idle_default_window_s: None,
    resume_events: 100_000,
    reconnects: 100,
    bounded_bytes: 200_000_000,
    micro_mb: 16,
    rounds: 1,
};

/// A peer whose memory passes this in the bounded-memory scenario is stopped: the
/// point is made, and the machine is shared.
const RSS_ABORT: u64 = 1 << 30;

/// How the load client reads its subscribers' streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One OS thread, non-blocking sockets, `poll(2)`, default socket buffers, 64 KiB
    /// reads, every event parsed: a slow reader, so the server's backpressure and
    /// partial-write path is what is measured (the client).
    OneThread,
    /// One blocking thread per subscriber, 256 KiB reads: a fast reader.
    Threads,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::OneThread => "one-thread client",
            Mode::Threads => "thread-per-subscriber client",
        }
    }
}

struct Ctx {
    sizes: &'static Sizes,
    /// Runs per target of fan-out and of latency with the one-thread client.
    rounds: usize,
    modes: Vec<Mode>,
    gen: PathBuf,
    tmp: PathBuf,
    targets: Vec<Target>,
}

/// One row of a table: the target, whether it is a spout runtime, its cells (`None`:
/// not supported, see notes), and its value of each of the table's key figures
/// (`None`: not compared, e.g. its checks failed).
type Row = (String, bool, Vec<Option<String>>, Vec<Option<f64>>);

/// A scenario: runs against every target and returns its table.
type Scenario = fn(&Ctx) -> Vec<Table>;

/// A results table: each key figure drives one ratio column.
struct Table {
    title: String,
    headers: Vec<&'static str>,
    /// The key figures: a name, and whether higher is better.
    keys: Vec<(&'static str, bool)>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: &str, headers: Vec<&'static str>, key: &'static str, higher: bool) -> Table {
        Table {
            title: title.to_owned(),
            headers,
            keys: vec![(key, higher)],
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// One more key figure, with its own ratio column after the first's.
    fn and_key(mut self, key: &'static str, higher: bool) -> Table {
        self.keys.push((key, higher));
        self
    }

    fn markdown(&self) -> String {
        let mut s = format!(
            "### {}

| target | ",
            self.title
        );
        for h in &self.headers {
            let _ = write!(s, "{h} | ");
        }
        for (key, _) in &self.keys {
            let _ = write!(s, "{key}: spout vs best peer (>1 = spout better) | ");
        }
        s.pop();
        s.push('\n');
        s.push_str("| --- |");
        for _ in 0..self.headers.len() + self.keys.len() {
            s.push_str(" ---: |");
        }
        s.push('\n');
        let best: Vec<Option<f64>> = (self.keys.iter().enumerate())
            .map(|(k, &(_, higher))| {
                self.rows
                    .iter()
                    .filter(|r| !r.1)
                    .filter_map(|r| r.3.get(k).copied().flatten())
                    .reduce(|a, b| if higher { a.max(b) } else { a.min(b) })
            })
            .collect();
        for (name, is_spout, cells, keys) in &self.rows {
            let _ = write!(s, "| {name} | ");
            for c in cells {
                let _ = write!(s, "{} | ", c.as_deref().unwrap_or("n/a"));
            }
            for (k, &(_, higher)) in self.keys.iter().enumerate() {
                let ratio = match (is_spout, keys.get(k).copied().flatten(), best[k]) {
                    (true, Some(v), Some(b)) if b > 0.0 && v > 0.0 => {
                        // Always "how many times better" (>1 = spout wins), so the
                        // column reads the same way for throughput and for cost.
                        let r = if higher { v / b } else { b / v };
                        format!("{r:.2}×")
                    }
                    _ => "–".to_owned(),
                };
                let _ = write!(s, "{ratio} | ");
            }
            s.pop();
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "\n{n}");
        }
        s.push('\n');
        s
    }
}

/// A figure over several runs: the median, then the range when there was more than
/// one run, e.g. `0.355 (0.316–0.375)`.
fn spread(values: &[f64], decimals: usize) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match (median(&v), v.first(), v.last()) {
        (Some(m), Some(lo), Some(hi)) if v.len() > 1 => {
            format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
        }
        (Some(m), _, _) => format!("{m:.decimals$}"),
        _ => "–".to_owned(),
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn main() {
    let mut quick = false;
    let mut modes = vec![Mode::OneThread, Mode::Threads];
    let mut only: Option<Vec<String>> = None;
    let mut rounds = None;
    let mut targets = Vec::new();
    let (mut gen, mut tmp, mut out) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(val().split(',').map(str::to_owned).collect()),
            "--rounds" => {
                rounds = Some(
                    val()
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .unwrap_or_else(|| die("--rounds takes a count above 0")),
                );
            }
            "--gen" => gen = Some(PathBuf::from(val())),
            "--tmp" => tmp = Some(PathBuf::from(val())),
            "--out" => out = Some(PathBuf::from(val())),
            "--target" => targets.push(parse_target(&val())),
            "--client" => {
                modes = match val().as_str() {
                    "one-thread" => vec![Mode::OneThread],
                    "threads" => vec![Mode::Threads],
                    "both" => vec![Mode::OneThread, Mode::Threads],
                    m => die(&format!("--client one-thread|threads|both, not {m}")),
                }
            }
            _ => die(&format!("unknown argument {a}")),
        }
    }
    let sizes = if quick { &QUICK } else { &FULL };
    let ctx = Ctx {
        sizes,
        rounds: rounds.unwrap_or(sizes.rounds),
        modes,
        gen: gen.unwrap_or_else(|| die("--gen is required")),
        tmp: tmp.unwrap_or_else(|| std::env::temp_dir().join("spout-bench")),
        targets,
    };
    let wanted = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let mut report = String::new();
    let scenarios: [(&str, Scenario); 6] = [
        ("fanout", fanout),
        ("latency", latency),
        ("idle", |c| vec![idle(c)]),
        ("resume", |c| vec![resume(c)]),
        ("bounded", |c| vec![bounded(c)]),
        ("micro", |c| vec![micro_table(c)]),
    ];
    for (name, run) in scenarios {
        if wanted(name) {
            eprintln!("== {name}");
            for t in run(&ctx) {
                let md = t.markdown();
                eprintln!("{md}");
                report.push_str(&md);
            }
        }
    }
    // The cluster tables go to a section of their own (`OUT.cluster`), so a run of
    // `--only cluster` leaves the other results in place.
    let cluster_report = if wanted("cluster") {
        eprintln!("== cluster");
        let md = cluster::run(&ctx);
        eprintln!("{md}");
        md
    } else {
        String::new()
    };
    match out {
        Some(path) => {
            std::fs::write(&path, report).unwrap_or_else(|e| die(&e.to_string()));
            if !cluster_report.is_empty() {
                let mut p = path.into_os_string();
                p.push(".cluster");
                std::fs::write(&p, cluster_report).unwrap_or_else(|e| die(&e.to_string()));
            }
        }
        None => print!("{report}{cluster_report}"),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn parse_target(spec: &str) -> Target {
    let (name, rest) = spec
        .split_once('=')
        .unwrap_or_else(|| die("--target NAME=KIND:PATH"));
    let (kind, path) = rest
        .split_once(':')
        .unwrap_or_else(|| die("--target NAME=KIND:PATH"));
    // `PATH,KEY=VAL,…`: environment variables for the server.
    let mut parts = path.split(',');
    let path = PathBuf::from(parts.next().unwrap_or_default());
    let env = parts
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| die("--target NAME=KIND:PATH,KEY=VAL"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let kind = match kind {
        "spout" => Kind::Spout(path),
        "express" => Kind::Express(path),
        "nchan" => Kind::Nchan(path),
        _ => die(&format!("unknown target kind {kind}")),
    };
    Target {
        name: name.to_owned(),
        kind,
        env,
    }
}

fn start(ctx: &Ctx, t: &Target, heartbeat_s: u64) -> Result<Server, String> {
    Server::start(
        t,
        &ctx.tmp,
        &ctx.gen,
        &Settings {
            heartbeat_s,
            redis: None,
        },
    )
}

fn go_file(ctx: &Ctx, name: &str) -> PathBuf {
    let p = ctx.tmp.join(format!("go-{name}-{}", client::now_ns()));
    let _ = std::fs::remove_file(&p);
    p
}

/// What `subscribers` concurrent checked streams measured, from the "go" signal on.
struct Run {
    wall: Duration,
    cpu_s: f64,
    /// The load client's own CPU seconds over the same time (all its threads).
    client_cpu_s: f64,
    seen: Vec<client::Seen>,
    errors: Vec<String>,
}

/// Starts a job that waits for a go file, connects `n` subscribers, waits until all
/// have their response head, then lets the job write and measures until all end.
fn run_fanout(
    ctx: &Ctx,
    server: &Server,
    args: &[&str],
    n: usize,
    w: &Watch,
    mode: Mode,
) -> Result<Run, String> {
    let go = go_file(ctx, &server.target.name);
    let mut job_args = vec!["--go".to_owned(), go.display().to_string()];
    job_args.extend(args.iter().map(|s| (*s).to_owned()));
    let mut job = server.start_job(&job_args)?;
    let connected = Arc::new(AtomicUsize::new(0));
    let w = Watch {
        path: job.path.clone(),
        connected: Some(connected.clone()),
        ..w.clone()
    };
    let handles = spawn_readers(server.addr, &w, n, mode);
    let until = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::SeqCst) < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu0 = server.cpu_s();
    let client0 = target::cpu_s(std::process::id());
    let t0 = Instant::now();
    std::fs::write(&go, b"").map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    join_readers(handles, "", &mut seen, &mut errors);
    let wall = t0.elapsed();
    let client_cpu_s = target::cpu_s(std::process::id()) - client0;
    let cpu_s = server.cpu_s() - cpu0 + server.relay_cpu_s(&mut job);
    Ok(Run {
        wall,
        cpu_s,
        client_cpu_s,
        seen,
        errors,
    })
}

/// A load-client thread: what each of its subscribers saw.
type Readers = std::thread::JoinHandle<Vec<Result<client::Seen, String>>>;

/// Starts `n` subscribers on `addr`: a thread each, or one thread for all of them.
fn spawn_readers(addr: std::net::SocketAddr, w: &Watch, n: usize, mode: Mode) -> Vec<Readers> {
    match mode {
        Mode::Threads => (0..n)
            .map(|_| {
                let w = w.clone();
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || vec![client::watch(addr, &w)])
                    .expect("spawn a subscriber thread")
            })
            .collect(),
        Mode::OneThread => {
            let w = w.clone();
            vec![std::thread::spawn(move || client::watch_all(addr, &w, n))]
        }
    }
}

/// Waits for `handles`: what every subscriber saw into `seen`, failures (after
/// `prefix`) into `errors`.
fn join_readers(
    handles: Vec<Readers>,
    prefix: &str,
    seen: &mut Vec<client::Seen>,
    errors: &mut Vec<String>,
) {
    for h in handles {
        match h.join() {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(s) => seen.push(s),
                        Err(e) => errors.push(format!("{prefix}{e}")),
                    }
                }
            }
            Err(_) => errors.push(format!("{prefix}subscriber thread panicked")),
        }
    }
}

fn consecutive(t: &Target) -> bool {
    !matches!(t.kind, Kind::Nchan(_))
}

fn errors_cell(errors: &[String]) -> String {
    if errors.is_empty() {
        "all".to_owned()
    } else {
        eprintln!("   errors: {:?}", &errors[..errors.len().min(3)]);
        format!("{} failed: {}", errors.len(), errors[0].replace('|', "/"))
    }
}

/// Runs `once` `rounds` times for every target, the targets in turn within each
/// round (round-robin), so that whatever else loads the machine meanwhile falls on
/// all of them alike. Returns each target's runs, in target order.
fn in_rounds<T>(
    ctx: &Ctx,
    rounds: usize,
    mut once: impl FnMut(&Target) -> Result<T, String>,
) -> Vec<Vec<Result<T, String>>> {
    let mut runs: Vec<Vec<Result<T, String>>> = ctx.targets.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (target, runs) in ctx.targets.iter().zip(&mut runs) {
            eprintln!("-- {} (run {round} of {rounds})", target.name);
            let r = once(target);
            if let Err(e) = &r {
                eprintln!("   {}: {e}", target.name);
            }
            runs.push(r);
        }
    }
    runs
}

/// The "complete, in order" cell of a target's runs (each `Ok` with the failures its
/// checks found): `all` when every run passed, else the first failure, and how many
/// runs failed when there were several.
fn runs_cell<T>(runs: &[Result<T, String>], errors: impl Fn(&T) -> &[String]) -> String {
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| match r {
            Ok(run) if errors(run).is_empty() => None,
            Ok(run) => Some(errors_cell(errors(run))),
            Err(e) => Some(format!("failed: {}", e.replace('|', "/"))),
        })
        .collect();
    match (failures.first(), runs.len()) {
        (None, _) => "all".to_owned(),
        (Some(f), 1) => f.clone(),
        (Some(f), n) => format!("{} of {n} runs: {f}", failures.len()),
    }
}

/// The row of a target none of whose runs gave figures: `cell` says why.
fn no_run(target: &Target, cells: usize, cell: String) -> Row {
    let mut v = vec![None; cells];
    v[cells - 1] = Some(cell);
    (target.name.clone(), target.is_spout(), v, vec![])
}

// ----- 1. fan-out -----

fn fanout(ctx: &Ctx) -> Vec<Table> {
    ctx.modes.iter().map(|&m| fanout_with(ctx, m)).collect()
}

/// What one fan-out run measured.
struct FanoutRun {
    lines_s: f64,
    events_s: f64,
    mb_s: f64,
    cpu_s: f64,
    per_gb: f64,
    client_pct: f64,
    errors: Vec<String>,
}

fn fanout_once(ctx: &Ctx, target: &Target, mode: Mode) -> Result<FanoutRun, String> {
    let s = ctx.sizes;
    let server = start(ctx, target, 15)?;
    let n = s.fanout_lines.to_string();
    let w = Watch {
        first_seq: Some(1),
        expect_lines: Some(s.fanout_lines),
        consecutive_ids: consecutive(target),
        ..Watch::default()
    };
    let r = run_fanout(ctx, &server, &["lines", &n], s.subscribers, &w, mode)?;
    let events: u64 = r.seen.iter().map(|x| x.events).sum();
    let lines: u64 = r.seen.iter().map(|x| x.lines).sum();
    let bytes: u64 = r.seen.iter().map(|x| x.bytes).sum();
    let secs = r.wall.as_secs_f64();
    Ok(FanoutRun {
        lines_s: lines as f64 / secs,
        events_s: events as f64 / secs,
        mb_s: bytes as f64 / secs / 1e6,
        cpu_s: r.cpu_s,
        per_gb: r.cpu_s / (bytes as f64 / 1e9),
        client_pct: r.client_cpu_s / secs * 100.0,
        errors: r.errors,
    })
}

fn fanout_with(ctx: &Ctx, mode: Mode) -> Table {
    let s = ctx.sizes;
    let mut t = Table::new(
        &format!(
            "1. Fan-out: {} lines of 100 B to {} subscribers, {}, {}",
            s.fanout_lines,
            s.subscribers,
            mode.label(),
            runs_label(ctx.rounds)
        ),
        vec![
            "M lines/s delivered",
            "events/s delivered",
            "MB/s delivered",
            "server CPU s",
            "CPU s per GB",
            "client CPU % of wall",
            "complete, in order",
        ],
        "CPU s per GB",
        false,
    )
    .and_key("lines/s", true);
    let runs = in_rounds(ctx, ctx.rounds, |target| fanout_once(ctx, target, mode));
    for (target, runs) in ctx.targets.iter().zip(runs) {
        let good: Vec<&FanoutRun> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        if good.is_empty() {
            t.rows
                .push(no_run(target, 7, runs_cell(&runs, |r| &r.errors)));
            continue;
        }
        let of = |f: fn(&FanoutRun) -> f64| good.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let mid = |f: fn(&FanoutRun) -> f64, d: usize| median(&of(f)).map(|v| format!("{v:.d$}"));
        let complete = runs_cell(&runs, |r| &r.errors);
        let clean = complete == "all";
        t.rows.push((
            target.name.clone(),
            target.is_spout(),
            vec![
                Some(spread(&of(|r| r.lines_s / 1e6), 2)),
                mid(|r| r.events_s, 0),
                mid(|r| r.mb_s, 0),
                mid(|r| r.cpu_s, 2),
                Some(spread(&of(|r| r.per_gb), 3)),
                Some(spread(&of(|r| r.client_pct), 0)),
                Some(complete),
            ],
            vec![
                median(&of(|r| r.per_gb)).filter(|_| clean),
                median(&of(|r| r.lines_s)).filter(|_| clean),
            ],
        ));
    }
    t.notes.push(format!(
        "{} MB are the SSE wire bytes the clients received (10^6 B). The SPEC's floor is \
         ~0.19 CPU-s per GB and the target within 1.6× of it (≤ 0.30). Client CPU is the \
         bench process's utime + stime over the same wall time: with the one-thread client, \
         near 100 % means the client, not the server, set the pace.",
        runs_note(ctx.rounds)
    ));
    t
}

/// "N runs per target" for a table's title.
fn runs_label(rounds: usize) -> String {
    match rounds {
        1 => "1 run".to_owned(),
        n => format!("median of {n} runs per target"),
    }
}

/// How a table's figures over several runs read, for its notes.
fn runs_note(rounds: usize) -> String {
    match rounds {
        1 => String::new(),
        n => format!(
            "Each target ran {n} times, the targets in turn (round-robin), so that other \
             load on the machine falls on all alike; a cell is the median of the runs, \
             with their range (min–max) where shown; the ratio columns compare medians."
        ),
    }
}

fn failed(target: &Target, cells: usize, e: &str) -> Row {
    eprintln!("   {}: {e}", target.name);
    let mut v = vec![None; cells];
    v[cells - 1] = Some(format!("failed: {}", e.replace('|', "/")));
    (target.name.clone(), target.is_spout(), v, vec![])
}

// ----- 2. latency -----

fn latency(ctx: &Ctx) -> Vec<Table> {
    ctx.modes.iter().map(|&m| latency_with(ctx, m)).collect()
}

/// What one latency run measured, in ms (`None`: no sample).
struct LatencyRun {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    cpu_s: f64,
    errors: Vec<String>,
}

fn latency_once(ctx: &Ctx, target: &Target, mode: Mode) -> Result<LatencyRun, String> {
    let s = ctx.sizes;
    let server = start(ctx, target, 15)?;
    let w = Watch {
        first_seq: Some(1),
        expect_lines: Some(s.rate * s.rate_secs),
        consecutive_ids: consecutive(target),
        latency: true,
        ..Watch::default()
    };
    let (rate, secs) = (s.rate.to_string(), s.rate_secs.to_string());
    let r = run_fanout(
        ctx,
        &server,
        &["rate", &rate, &secs],
        s.subscribers,
        &w,
        mode,
    )?;
    let mut all: Vec<u64> = r
        .seen
        .iter()
        .flat_map(|x| x.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|&ns| ns as f64 / 1e6)
    };
    Ok(LatencyRun {
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().map(|&ns| ns as f64 / 1e6),
        cpu_s: r.cpu_s,
        errors: r.errors,
    })
}

fn latency_with(ctx: &Ctx, mode: Mode) -> Table {
    let s = ctx.sizes;
    // Repeated with the one-thread client only: the thread-per-subscriber client's
    // tail is mostly its own 100 threads' scheduling (see the notes).
    let rounds = if mode == Mode::OneThread {
        ctx.rounds
    } else {
        1
    };
    let mut t = Table::new(
        &format!(
            "2. Latency: {} lines/s for {} s to {} subscribers, write → parsed, {}, {}",
            s.rate,
            s.rate_secs,
            s.subscribers,
            mode.label(),
            runs_label(rounds)
        ),
        vec![
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU s",
            "complete, in order",
        ],
        "p99 ms",
        false,
    );
    let runs = in_rounds(ctx, rounds, |target| latency_once(ctx, target, mode));
    for (target, runs) in ctx.targets.iter().zip(runs) {
        let good: Vec<&LatencyRun> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        if good.is_empty() {
            t.rows
                .push(no_run(target, 5, runs_cell(&runs, |r| &r.errors)));
            continue;
        }
        let of = |f: fn(&LatencyRun) -> Option<f64>| {
            good.iter().filter_map(|r| f(r)).collect::<Vec<f64>>()
        };
        let complete = runs_cell(&runs, |r| &r.errors);
        let clean = complete == "all";
        let p99 = of(|r| r.p99);
        t.rows.push((
            target.name.clone(),
            target.is_spout(),
            vec![
                median(&of(|r| r.p50)).map(|v| format!("{v:.2}")),
                (!p99.is_empty()).then(|| spread(&p99, 2)),
                of(|r| r.max)
                    .into_iter()
                    .reduce(f64::max)
                    .map(|v| format!("{v:.2}")),
                median(&of(|r| Some(r.cpu_s))).map(|v| format!("{v:.2}")),
                Some(complete),
            ],
            vec![median(&p99).filter(|_| clean)],
        ));
    }
    t.notes.push(
        format!(
            "Each line carries the wall-clock nanoseconds of its write(2) by the generator; a \
         sample is taken when the client has parsed the event that holds it. Lines end \
         with a newline, so spout sends each at once (the partial-line delay never applies). \
         {}",
            match rounds {
                1 => String::new(),
                n => format!(
                    "Each target ran {n} times, round-robin: p50 and server CPU are medians of \
                 the runs, p99 the median with the range (min–max), max the highest of all \
                 runs; the ratio compares median p99s."
                ),
            }
        )
        .trim_end()
        .to_owned(),
    );
    t
}

// ----- 3. idle connections -----

/// What one idle run measured.
struct Idle {
    /// RSS growth per subscriber, bytes.
    per_conn: f64,
    rss_total: u64,
    cpu_pct: f64,
    /// SSE blocks (heartbeats) each subscriber received in the window, on average.
    beats: f64,
    connected: usize,
    error: Option<String>,
}

/// `n` subscribers on a quiet job of a server with this heartbeat: RSS once they are
/// connected, then the server's CPU over `window_s` seconds, and how many heartbeats
/// reached the subscribers in that window.
fn idle_run(ctx: &Ctx, target: &Target, heartbeat_s: u64, window_s: u64) -> Result<Idle, String> {
    let n = ctx.sizes.idle;
    let server = start(ctx, target, heartbeat_s)?;
    let job = server.start_job(&["quiet".into(), (window_s + 300).to_string()])?;
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = server.mem("VmRSS");
    let mut conns = Vec::with_capacity(n);
    let mut error = None;
    for _ in 0..n {
        match client::open_idle(server.addr, &job.path) {
            Ok(c) => conns.push(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    // Let the accept backlog and the first heartbeats settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = server.mem("VmRSS");
    // What the kernel holds for the subscribers now is from before the window.
    for c in &mut conns {
        client::drain_blocks(c);
    }
    let cpu0 = server.cpu_s();
    std::thread::sleep(Duration::from_secs(window_s));
    let cpu = (server.cpu_s() - cpu0) / window_s as f64 * 100.0;
    let blocks: u64 = conns.iter_mut().map(client::drain_blocks).sum();
    let connected = conns.len();
    drop(conns);
    Ok(Idle {
        per_conn: rss1.saturating_sub(rss0) as f64 / connected.max(1) as f64,
        rss_total: rss1,
        cpu_pct: cpu,
        beats: blocks as f64 / connected.max(1) as f64,
        connected,
        error,
    })
}

fn idle(ctx: &Ctx) -> Table {
    let s = ctx.sizes;
    let default_cols = match s.idle_default_window_s {
        Some(w) => format!("heartbeat 15 s (default), {w} s window"),
        None => "heartbeat 15 s (default): not run with --quick".to_owned(),
    };
    let mut t = Table::new(
        &format!(
            "3. Idle: {} subscribers on a quiet job; heartbeat 1 s, {} s window; {default_cols}",
            s.idle, s.idle_window_s
        ),
        vec![
            "RSS per connection (bytes)",
            "RSS total MiB",
            "CPU % while idle, 1 s heartbeat",
            "heartbeats per subscriber, 1 s",
            "CPU % while idle, 15 s heartbeat",
            "heartbeats per subscriber, 15 s",
            "connected",
        ],
        "RSS per connection (bytes)",
        false,
    );
    for target in &ctx.targets {
        eprintln!("-- {}", target.name);
        let row = (|| -> Result<Row, String> {
            let fast = idle_run(ctx, target, 1, s.idle_window_s)?;
            let default = s
                .idle_default_window_s
                .map(|w| idle_run(ctx, target, 15, w))
                .transpose()?;
            let connected = |r: &Idle| match &r.error {
                None => format!("{}", r.connected),
                Some(e) => format!("{} ({})", r.connected, e.replace('|', "/")),
            };
            let mut conn_cell = connected(&fast);
            if let Some(d) = default.as_ref().filter(|d| d.error.is_some()) {
                conn_cell.push_str(&format!("; 15 s: {}", connected(d)));
            }
            Ok((
                target.name.clone(),
                target.is_spout(),
                vec![
                    Some(format!("{:.0}", fast.per_conn)),
                    Some(format!("{:.1}", fast.rss_total as f64 / 1048576.0)),
                    Some(format!("{:.1}", fast.cpu_pct)),
                    Some(format!("{:.1}", fast.beats)),
                    default.as_ref().map(|d| format!("{:.2}", d.cpu_pct)),
                    default.as_ref().map(|d| format!("{:.1}", d.beats)),
                    Some(conn_cell),
                ],
                vec![Some(fast.per_conn)],
            ))
        })();
        t.rows.push(row.unwrap_or_else(|e| failed(target, 7, &e)));
    }
    t.notes.push(format!(
        "RSS per connection is (RSS with all connected − RSS before) / N, from the 1 s run, \
         user-space memory only (socket buffers are kernel memory). Each target runs \
         twice: with the heartbeat lowered to 1 s (`sse.heartbeat_s: 1`; the Express \
         server's interval and nchan's `nchan_eventsource_ping` alike), the cost of N \
         heartbeats a second, and at the default 15 s over a {}-second window, the \
         issue's target (< 1 % of a core). CPU % is the server's utime + stime over the \
         window (100 % = one core). The client never reads after the head (the kernel \
         buffers the heartbeats) except to count them: every subscriber's socket is \
         drained just before the window and read again at its end; \"heartbeats per \
         subscriber\" counts the SSE blocks (blank lines) received in between (the job is \
         quiet, so they are heartbeats).",
        s.idle_default_window_s.unwrap_or(60)
    ));
    t
}

// ----- 4. resume -----

fn resume(ctx: &Ctx) -> Table {
    let s = ctx.sizes;
    let mut t = Table::new(
        &format!(
            "4. Resume: finished job of {} one-line writes, {} reconnects at random ids",
            s.resume_events, s.reconnects
        ),
        vec![
            "events in log",
            "TTFB p50 ms",
            "TTFB p99 ms",
            "first event p50 ms",
            "first event p99 ms",
            "read-to-end MB/s",
            "read-to-end events/s",
            "complete, in order",
        ],
        "first event p99 ms",
        false,
    );
    for target in &ctx.targets {
        eprintln!("-- {}", target.name);
        if matches!(target.kind, Kind::Nchan(_)) {
            t.rows
                .push((target.name.clone(), false, vec![None; 8], vec![]));
            continue;
        }
        let row = (|| -> Result<Row, String> {
            let server = start(ctx, target, 15)?;
            let n = s.resume_events.to_string();
            let mut job = server.start_job(&["events".into(), n])?;
            server.wait_finished(&mut job, Duration::from_secs(300))?;
            let last = server.last_event_id(&job)?;
            // Output events are ids 2 ..= last-1; resume after any of 1 ..= last-2 so a
            // stream has output to send first.
            let mut rng = 0x9E37_79B9_7F4A_7C15u64;
            let mut ttfb = Vec::new();
            let mut first = Vec::new();
            let mut errors = Vec::new();
            for _ in 0..s.reconnects {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let after = 1 + rng % (last - 2).max(1);
                let w = Watch {
                    path: job.path.clone(),
                    last_event_id: Some(after.to_string()),
                    first_only: true,
                    ..Watch::default()
                };
                match client::watch(server.addr, &w) {
                    Ok(seen) => {
                        ttfb.extend(seen.ttfb);
                        first.extend(seen.first_event);
                    }
                    Err(e) => errors.push(e),
                }
            }
            ttfb.sort_unstable();
            first.sort_unstable();
            let ms = |v: &[Duration], p: f64| {
                v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                    .map(|d| d.as_secs_f64() * 1e3)
            };
            let cell = |v: &[Duration], p: f64| ms(v, p).map(|x| format!("{x:.2}"));
            let t0 = Instant::now();
            let full = client::watch(
                server.addr,
                &Watch {
                    path: job.path.clone(),
                    first_seq: Some(1),
                    expect_lines: Some(s.resume_events),
                    consecutive_ids: true,
                    ..Watch::default()
                },
            );
            let secs = t0.elapsed().as_secs_f64();
            let (mb, evs) = match &full {
                Ok(seen) => (
                    Some(format!("{:.0}", seen.bytes as f64 / secs / 1e6)),
                    Some(format!("{:.0}", seen.events as f64 / secs)),
                ),
                Err(e) => {
                    errors.push(format!("read to end: {e}"));
                    (None, None)
                }
            };
            let p99 = ms(&first, 0.99);
            Ok((
                target.name.clone(),
                target.is_spout(),
                vec![
                    Some(last.to_string()),
                    cell(&ttfb, 0.5),
                    cell(&ttfb, 0.99),
                    cell(&first, 0.5),
                    cell(&first, 0.99),
                    mb,
                    evs,
                    Some(errors_cell(&errors)),
                ],
                vec![p99.filter(|_| errors.is_empty())],
            ))
        })();
        t.rows.push(row.unwrap_or_else(|e| failed(target, 8, &e)));
    }
    t.notes.push(
        "The generator makes one write(2) per 100-byte line, but a server reads whatever \
         the pipe holds, so several lines can share an event: \"events in log\" is the \
         count each server actually made (it includes `start` and `exit`). Both times run \
         from the moment the request is written (after the TCP connect): TTFB to the \
         first byte of the response read, first event to the first output event parsed \
         (not the `retry` line or `start`). Reconnects are sequential. nchan: n/a, its message ids are `time:tag` pairs of its own, so a \
         `Last-Event-ID` of the process's event number cannot be expressed, and its \
         buffer holds a bounded number of messages, not a whole job."
            .into(),
    );
    t
}

// ----- 5. bounded memory -----

fn bounded(ctx: &Ctx) -> Table {
    let s = ctx.sizes;
    let mut t = Table::new(
        &format!(
            "5. Bounded memory: {:.1} GB of output, one fast and one slow subscriber",
            s.bounded_bytes as f64 / 1e9
        ),
        vec![
            "peak RSS MiB (VmHWM)",
            "fast subscriber MB/s",
            "slow subscriber read MB",
            "server CPU s",
            "fast complete, in order",
        ],
        "peak RSS MiB (VmHWM)",
        false,
    );
    for target in &ctx.targets {
        eprintln!("-- {}", target.name);
        let row = (|| -> Result<Row, String> {
            let server = start(ctx, target, 15)?;
            let go = go_file(ctx, &target.name);
            let bytes = s.bounded_bytes.to_string();
            let mut job = server.start_job(&[
                "--go".into(),
                go.display().to_string(),
                "bytes".into(),
                bytes,
            ])?;
            let lines = s.bounded_bytes.div_ceil(100);
            let connected = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let fast_w = Watch {
                path: job.path.clone(),
                first_seq: Some(1),
                expect_lines: Some(lines),
                consecutive_ids: consecutive(target),
                connected: Some(connected.clone()),
                stop: Some(stop.clone()),
                ..Watch::default()
            };
            let slow_w = Watch {
                read_pause: Some(Duration::from_millis(50)),
                ..fast_w.clone()
            };
            let addr = server.addr;
            let fast_stop = Arc::new(AtomicBool::new(false));
            let fast_w = Watch {
                stop: Some(fast_stop.clone()),
                ..fast_w
            };
            let fast = std::thread::spawn(move || client::watch(addr, &fast_w));
            let slow = std::thread::spawn(move || client::watch(addr, &slow_w));
            while connected.load(Ordering::SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let cpu0 = server.cpu_s();
            let t0 = Instant::now();
            std::fs::write(&go, b"").map_err(|e| e.to_string())?;
            let mut peak = 0;
            let mut aborted = false;
            let mut gone_at: Option<Instant> = None;
            while !fast.is_finished() {
                // A relay that gave up (nchan refused a publish) never sends `exit`:
                // give the subscriber a few seconds to drain, then stop it.
                if gone_at.is_none() && server.relay_gone(&mut job) {
                    gone_at = Some(Instant::now());
                }
                if gone_at.is_some_and(|g| g.elapsed() > Duration::from_secs(5)) {
                    fast_stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
                let hwm = server.mem("VmHWM").max(server.mem("VmRSS"));
                peak = peak.max(hwm);
                if hwm > RSS_ABORT {
                    aborted = true;
                    fast_stop.store(true, Ordering::SeqCst);
                }
            }
            let wall = t0.elapsed().as_secs_f64();
            peak = peak.max(server.mem("VmHWM"));
            stop.store(true, Ordering::SeqCst);
            let fast = fast.join().map_err(|_| "fast subscriber panicked")?;
            let slow = slow.join().map_err(|_| "slow subscriber panicked")?;
            let cpu = server.cpu_s() - cpu0 + server.relay_cpu_s(&mut job);
            let peak_mib = peak as f64 / 1048576.0;
            let (fast_cell, ok) = match (&fast, aborted) {
                (_, true) => (
                    format!("stopped at {:.0} MiB RSS", RSS_ABORT as f64 / 1048576.0),
                    false,
                ),
                (Ok(f), false) if f.lines == lines => ("all".to_owned(), true),
                (Ok(f), false) => (format!("incomplete: {} of {lines} lines", f.lines), false),
                (Err(e), false) => (format!("failed: {}", e.replace('|', "/")), false),
            };
            Ok((
                target.name.clone(),
                target.is_spout(),
                vec![
                    Some(format!("{peak_mib:.1}{}", if aborted { "+" } else { "" })),
                    fast.as_ref()
                        .ok()
                        .map(|f| format!("{:.0}", f.bytes as f64 / wall / 1e6)),
                    slow.as_ref()
                        .ok()
                        .map(|f| format!("{:.1}", f.bytes as f64 / 1e6)),
                    Some(format!("{cpu:.2}")),
                    Some(fast_cell),
                ],
                vec![ok.then_some(peak_mib)],
            ))
        })();
        t.rows.push(row.unwrap_or_else(|e| failed(target, 5, &e)));
    }
    t.notes.push(format!(
        "Target for spout: peak RSS under 64 MiB, whatever the output size. The slow \
         subscriber sleeps 50 ms after every read (≤ 256 KiB); it is stopped when the fast \
         one has the whole log. For nginx the figure is the sum over master and workers \
         (nchan's shared memory counts once per process that touched it). A peer whose \
         RSS passes {} MiB is stopped there (\"+\").",
        RSS_ABORT >> 20
    ));
    t
}

// ----- 6. micro -----

fn micro_table(ctx: &Ctx) -> Table {
    let mut t = Table::new(
        &format!(
            "6. Core throughput on one core ({} MB of 100-byte lines)",
            ctx.sizes.micro_mb
        ),
        vec!["MB/s of input", "share of memcpy"],
        "MB/s",
        true,
    );
    let rates = micro::run(ctx.sizes.micro_mb);
    let ceiling = rates.first().map_or(1.0, |r| r.mb_s);
    for r in &rates {
        t.rows.push((
            r.name.to_owned(),
            false,
            vec![
                Some(format!("{:.0}", r.mb_s)),
                Some(format!("{:.0} %", r.mb_s / ceiling * 100.0)),
            ],
            vec![],
        ));
    }
    t.notes.push(
        "Best of 5 rounds. `encode_output_event` gets texts of whole lines up to the 16 KiB \
         event cap and writes the full wire bytes (id, event, JSON-escaped data); the \
         assembler takes 64 KiB reads and yields event texts. No peer column: these are \
         spout's own loops."
            .into(),
    );
    t
}
