//! Crashes and disks: SIGKILL of the server at seeded random points while jobs run
//! and clients follow (after each restart, everything any client saw is in the
//! archive, ids never repeat, a resumed client sees each id once); a truncated or
//! garbled archive tail is cut with a warning and the job still reads back; a data
//! dir that cannot be created, or that fills up, is reported clearly.
//!
//! Sizes: `SPOUT_KILLS` kills (default 20, each in the first 300 ms of output, beside
//! a CPU-bound process so the server is preempted at awkward moments; the soak runs
//! 50, each in the first second).

mod common;

use common::*;
use serde_json::json;
use spout_tests::procfs::group_members;
use spout_tests::{both_runtimes, get, run_to_exit, start_job, Dispatched, Runtime, Server};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ticker_config() -> String {
    config(json!({
        "ticker": sh("i=0; while :; do i=$((i+1)); echo line $i; sleep 0.02; done"),
        // Bursts of 600 lines as fast as the shell writes them, 10 ms apart: tight
        // writes to tear records, at a volume that keeps 20 rounds (each restart
        // reads every earlier round's archive back) well under a minute.
        "burst": sh("i=0; while :; do i=$((i+1)); printf 'burst %s\\n' $i $i $i; \
                     [ $((i % 200)) = 0 ] && sleep 0.01; done")
    }))
}

both_runtimes!(
    fn kill9_at_random_points_on_a_busy_machine_loses_nothing_seen(rt: Runtime) {
        let kills = std::env::var("SPOUT_KILLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let _busy = CpuHog::start();
        kill_loop(rt, kills, 300);
    }

    #[ignore = "full-size soak (50 kills): tests/soak/run.sh"]
    fn soak_kill9_50_times(rt: Runtime) {
        kill_loop(rt, 50, 1000);
    }

    fn damaged_archive_tails_are_cut_with_a_warning(rt: Runtime) {
        let cfg = config(json!({ "count": sh("for i in $(seq 1 30); do echo line $i; done") }));
        let mut server = Server::start_with_config(rt, &cfg, &[]);
        let (truncated, _) = start_job(server.addr(), "count", &[]);
        let (garbled, _) = start_job(server.addr(), "count", &[]);
        let originals: Vec<Vec<Dispatched>> = [&truncated, &garbled]
            .iter()
            .map(|id| whole_stream(server.addr(), id))
            .collect();
        server.terminate();
        let events_file = |id: &str| server.data_dir().join("jobs").join(id).join("events");
        let file = events_file(&truncated);
        let len = std::fs::metadata(&file).expect("events file").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(len - 7))
            .expect("truncating");
        let file = events_file(&garbled);
        let mut bytes = std::fs::read(&file).expect("events file");
        let n = bytes.len();
        for b in &mut bytes[n - 40..n - 20] {
            *b ^= 0x5a;
        }
        std::fs::write(&file, &bytes).expect("garbling");

        server.restart();
        server.wait_for_stderr("cutting the damaged tail", 10 * SECOND);
        let stderr = server.stderr_text();
        for id in [&truncated, &garbled] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(id.as_str()) && l.contains("cutting the damaged tail")),
                "no warning names job {id}:\n{stderr}"
            );
        }
        for (id, original) in [&truncated, &garbled].iter().zip(&originals) {
            let events = whole_stream(server.addr(), id);
            assert_whole(&events);
            let kept = &events[..events.len() - 1];
            assert!(!kept.is_empty() && kept.len() < original.len());
            assert_eq!(
                kept,
                &original[..kept.len()],
                "what is kept reads back the same"
            );
            let exit = exit_data(&events);
            assert_eq!(exit["reason"], "server_restart", "{exit}");
        }
        assert_eq!(get(server.addr(), "/healthz").status, 200);
    }

    fn a_data_dir_that_cannot_be_created_is_refused_clearly(rt: Runtime) {
        let dir = scratch_dir();
        let file = dir.join("a-file");
        std::fs::write(&file, b"not a dir").unwrap();
        let data_dir = file.join("data");
        let data_dir = data_dir.to_str().unwrap();
        let exited = run_to_exit(
            rt,
            &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            20 * SECOND,
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!exited.status.success(), "{exited:?}");
        assert!(
            !exited.stderr.contains("listening on"),
            "{:?}",
            exited.stderr
        );
        assert!(
            exited.stderr.contains(data_dir) || exited.stderr.contains("a-file"),
            "the refusal names the path: {:?}",
            exited.stderr
        );
        assert!(!exited.stderr.contains("panicked"), "{:?}", exited.stderr);
    }

    fn a_full_data_dir_ends_the_job_with_a_reason(rt: Runtime) {
        let Some(mount) = TinyTmpfs::mount("1m") else {
            eprintln!("skipped: cannot mount a tmpfs here (needs root); see docs/reliability.md");
            return;
        };
        let data_dir = mount.path.join("data");
        let cfg = config(json!({
            "big": sh("yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 4000000"),
            "small": sh("echo small")
        }));
        let server =
            Server::start_with_config(rt, &cfg, &["--data-dir", data_dir.to_str().unwrap()]);
        let (id, _) = start_job(server.addr(), "big", &[]);
        let status =
            spout_tests::wait_for_state(server.addr(), &id, |s| s["exit"].is_object(), 30 * SECOND);
        let exit = &status["exit"];
        eprintln!("figures: full disk: status {status:#}");
        // The server lives on and says what happened.
        assert_eq!(get(server.addr(), "/healthz").status, 200);
        // The log line is written before the job ends, but the harness copies the
        // server's stderr on its own thread: wait for it rather than race it.
        server.wait_for_stderr("os error 28", 10 * SECOND);
        let stderr = server.stderr_text();
        assert!(
            stderr.to_lowercase().contains("no space")
                || stderr.contains("ENOSPC")
                || stderr.contains("os error 28"),
            "the full disk is reported on stderr:\n{stderr}"
        );
        // Nothing silently dropped: what a client reads is all the job wrote, or
        // a gap says what is missing.
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let got = events.collect_to_end(STREAM_BOUND);
        let text = text_of(&got, "stdout").len() as u64;
        let counted = status["stdout_bytes"].as_u64().expect("stdout_bytes");
        let has_gap = got.iter().any(|e| e.event_type == "gap");
        eprintln!("figures: full disk: {counted} bytes counted, {text} delivered, {} events, gap: {has_gap}", got.len());
        assert!(
            text == counted || has_gap,
            "{counted} bytes counted, {text} delivered, no gap: silent loss"
        );
        // The job ends with a reason, not as if it had finished normally.
        assert!(
            exit["reason"].is_string(),
            "a job whose archive filled up ends with a reason: {status:#}"
        );
        drop(events);
        drop(server);
        drop(mount);
    }
);

/// The kill loop: each round starts two jobs followed by two clients each, kills
/// the server at a seeded random moment in the first `window_ms` of output,
/// restarts it, and checks every client's events against the archive; then
/// resumes each client from its last id, and checks no process of the round's
/// jobs is left one second after the restart.
fn kill_loop(rt: Runtime, kills: u64, window_ms: u64) {
    let mut server = Server::start_with_config(rt, &ticker_config(), &[]);
    let mut rng = 0x0dd_5eed_u64;
    let mut all_jobs = Vec::new();
    for round in 0..kills {
        let ids: Vec<String> = ["ticker", "burst"]
            .iter()
            .map(|c| start_job(server.addr(), c, &[]).0)
            .collect();
        let seen: Vec<Arc<Mutex<Vec<Dispatched>>>> = (0..4).map(|_| Arc::default()).collect();
        let followers: Vec<_> = seen
            .iter()
            .enumerate()
            .map(|(i, seen)| {
                let mut events =
                    stream(server.addr(), &format!("/jobs/{}/events", ids[i / 2]), &[]);
                let seen = Arc::clone(seen);
                std::thread::spawn(move || {
                    // Until the crash cuts the stream.
                    while let Some(e) = events.next_event(STREAM_BOUND) {
                        seen.lock().unwrap().push(e);
                    }
                })
            })
            .collect();
        rng = splitmix(rng);
        // The random point: somewhere in the first `window_ms` of output.
        std::thread::sleep(Duration::from_millis(20 + rng % window_ms));
        // The jobs' groups, for the check that none outlives the restart (a job
        // may not have been spawned yet: no pid then, and nothing to outlive).
        let pgids: Vec<u32> = ids
            .iter()
            .filter_map(|id| get(server.addr(), &format!("/jobs/{id}")).json()["pid"].as_u64())
            .map(|pid| pid as u32)
            .collect();
        server.kill9();
        for f in followers {
            f.join().expect("follower");
        }
        server.restart();
        let restarted = Instant::now();
        for pgid in pgids {
            while !group_members(pgid).is_empty() && restarted.elapsed() < SECOND {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                group_members(pgid),
                Vec::<u32>::new(),
                "round {round}: group {pgid} still runs one second after the restart"
            );
        }
        for (i, seen) in seen.iter().enumerate() {
            let id = &ids[i / 2];
            let seen = seen.lock().unwrap();
            let whole = whole_stream(server.addr(), id);
            assert_whole(&whole);
            assert_eq!(
                exit_data(&whole)["reason"],
                "server_restart",
                "round {round}"
            );
            assert!(
                seen.len() < whole.len(),
                "round {round}: a client saw {} events, the archive has {}",
                seen.len(),
                whole.len()
            );
            assert_eq!(
                &seen[..],
                &whole[..seen.len()],
                "round {round}, job {id}: every event a client saw is in the archive, the same"
            );
            // Resume from the last id seen: the rest, each id once.
            let mut resumed = match seen.last() {
                Some(last) => stream(
                    server.addr(),
                    &format!("/jobs/{id}/events"),
                    &[("Last-Event-ID", &last.last_event_id)],
                ),
                None => stream(server.addr(), &format!("/jobs/{id}/events"), &[]),
            };
            let rest = resumed.collect_to_end(STREAM_BOUND);
            let mut joined: Vec<Dispatched> = seen.clone();
            joined.extend(rest);
            assert_eq!(
                joined, whole,
                "round {round}, job {id}: seen + resumed = the log"
            );
        }
        all_jobs.extend(ids);
        eprintln!("figures: kill {round}: jobs read back whole after the crash");
    }
    // Earlier rounds' jobs survive later crashes unchanged, ids unique across all.
    for id in &all_jobs {
        assert_whole(&whole_stream(server.addr(), id));
    }
    assert!(!server.stderr_text().contains("panicked"));
}

/// A CPU-bound process (a shell spinning in a loop) for as long as it is held:
/// the server and its jobs then share the CPU with it. Killed and reaped on drop.
struct CpuHog(std::process::Child);

impl CpuHog {
    fn start() -> CpuHog {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting a CPU-bound sh");
        CpuHog(child)
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("spout-harden-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).expect("scratch dir");
    dir
}

/// A tmpfs of a given size, unmounted and removed on drop.
struct TinyTmpfs {
    path: PathBuf,
}

impl TinyTmpfs {
    /// `None` when mounting is not allowed (not root, no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<TinyTmpfs> {
        let path = scratch_dir();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(TinyTmpfs { path })
        } else {
            let _ = std::fs::remove_dir(&path);
            None
        }
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(Path::new(&self.path));
    }
}
