//! Crash safety at any instant: a job the server acknowledged (`201`) is found after
//! a SIGKILL of the server at any moment after that answer, and no process of a job
//! outlives the server that ran it by more than its restart.
//!
//! - 40 rounds of `POST /jobs`, SIGKILL 0–5 ms after the `201`, restart: every
//!   acknowledged job is there, whole, ended.
//! - A quiet job (`sleep`) and a job whose leader exited while a grandchild lives
//!   on in its group: both alive after the kill -9, both gone one second after the
//!   restart, each job ended with `server_restart`.
//! - A job folder without a record (a crash before any `201`) is removed with one
//!   log line.
//!
//! Sizes: `SPOUT_ACK_ROUNDS` rounds (default 40).

mod common;

use common::*;
use serde_json::json;
use spout_tests::procfs::group_members;
use spout_tests::{both_runtimes, get, start_job, wait_for_state, Runtime, Server};
use std::time::{Duration, Instant};

both_runtimes!(
    fn acknowledged_jobs_survive_a_kill9_right_after_the_201(rt: Runtime) {
        let rounds = std::env::var("SPOUT_ACK_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40u64);
        let cfg = config(json!({ "quick": sh("echo hi") }));
        let mut server = Server::start_with_config(rt, &cfg, &[]);
        let mut rng = 0xac4_5eed_u64;
        let mut acknowledged = Vec::new();
        for round in 0..rounds {
            let (id, _) = start_job(server.addr(), "quick", &[]);
            rng = splitmix(rng);
            let after = Duration::from_micros(rng % 5001);
            std::thread::sleep(after);
            server.kill9();
            server.restart();
            let response = get(server.addr(), &format!("/jobs/{id}"));
            assert_eq!(
                response.status,
                200,
                "round {round}: job {id} was acknowledged, the server killed {after:?} later, \
                 and the restart does not know it: {}\n{}",
                response.text(),
                server.stderr_text()
            );
            let status = response.json();
            assert!(status["exit"].is_object(), "round {round}: {status:#}");
            acknowledged.push(id);
        }
        // Every job of every round is still there, its stream whole.
        for id in &acknowledged {
            let events = whole_stream(server.addr(), id);
            assert_whole(&events);
        }
        // And no folder was left without its record.
        for entry in std::fs::read_dir(server.data_dir().join("jobs")).unwrap() {
            let dir = entry.unwrap().path();
            assert!(
                dir.join("meta.json").is_file(),
                "{} has no record",
                dir.display()
            );
        }
        assert!(!server.stderr_text().contains("panicked"));
    }

    fn no_job_process_outlives_a_kill9_and_restart(rt: Runtime) {
        let cfg = config(json!({
            "quiet": { "argv": ["sleep", "600"] },
            // The leader exits at once; its grandchild stays in the group, ignores
            // SIGPIPE and keeps writing, so the server keeps reading it (the drain
            // after the exit) until the crash.
            "orphaning": sh("trap '' PIPE; (while :; do echo tick; sleep 0.1; done) & echo $!"),
        }));
        let mut server = Server::start_with_config(rt, &cfg, &[]);
        let (quiet, _) = start_job(server.addr(), "quiet", &[]);
        let status = wait_for_state(
            server.addr(),
            &quiet,
            |s| s["state"] == "running",
            10 * SECOND,
        );
        let quiet_pgid = status["pid"].as_u64().expect("a running job's pid") as u32;

        let (orphaning, _) = start_job(server.addr(), "orphaning", &[]);
        let mut live = stream(server.addr(), &format!("/jobs/{orphaning}/events"), &[]);
        let mut ticks = 0;
        while ticks < 3 {
            let event = live.next_event(STREAM_BOUND).expect("the job's events");
            if event.event_type == "stdout" && data(&event)["text"] == "tick\n" {
                ticks += 1;
            }
        }
        let status = get(server.addr(), &format!("/jobs/{orphaning}")).json();
        let orphan_pgid = status["pid"].as_u64().expect("the job's pid") as u32;
        let members = group_members(orphan_pgid);
        assert!(
            !members.contains(&orphan_pgid) && !members.is_empty(),
            "the leader {orphan_pgid} has exited, its grandchildren run: {members:?}"
        );

        server.kill9();
        live.close();
        // Without the server nothing ends them: the case would pass for nothing if
        // they died with it.
        for pgid in [quiet_pgid, orphan_pgid] {
            assert!(
                !group_members(pgid).is_empty(),
                "group {pgid} died with the server"
            );
        }
        server.restart();
        let restarted = Instant::now();
        for pgid in [quiet_pgid, orphan_pgid] {
            while !group_members(pgid).is_empty() && restarted.elapsed() < SECOND {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                group_members(pgid),
                Vec::<u32>::new(),
                "group {pgid} still runs one second after the restart\n{}",
                server.stderr_text()
            );
        }
        let stderr = server.stderr_text();
        for (id, pgid) in [(&quiet, quiet_pgid), (&orphaning, orphan_pgid)] {
            assert!(
                stderr.lines().any(|l| l.contains(id.as_str())
                    && l.contains(&format!("killed its process group {pgid}"))),
                "no line says group {pgid} of job {id} was killed:\n{stderr}"
            );
            let events = whole_stream(server.addr(), id);
            assert_whole(&events);
            assert_eq!(exit_data(&events)["reason"], "server_restart");
        }
    }

    fn a_job_dir_without_a_record_is_removed_with_one_line(rt: Runtime) {
        let cfg = config(json!({ "quick": sh("echo hi") }));
        let mut server = Server::start_with_config(rt, &cfg, &[]);
        let (kept, _) = start_job(server.addr(), "quick", &[]);
        let (bare, _) = start_job(server.addr(), "quick", &[]);
        wait_for_state(server.addr(), &bare, |s| s["exit"].is_object(), 10 * SECOND);
        wait_for_state(server.addr(), &kept, |s| s["exit"].is_object(), 10 * SECOND);
        server.terminate();
        // What a crash between creating the folder and writing its record leaves.
        let dir = server.data_dir().join("jobs").join(&bare);
        std::fs::remove_file(dir.join("meta.json")).unwrap();
        server.restart();
        assert!(!dir.exists(), "{} is still there", dir.display());
        let stderr = server.stderr_text();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(bare.as_str()))
            .collect();
        let after_restart: Vec<&&str> = lines.iter().filter(|l| l.contains("no record")).collect();
        assert_eq!(
            after_restart.len(),
            1,
            "one line names the removal: {stderr}"
        );
        assert_eq!(get(server.addr(), &format!("/jobs/{bare}")).status, 404);
        assert_eq!(get(server.addr(), &format!("/jobs/{kept}")).status, 200);
    }
);

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
