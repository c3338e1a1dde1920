//! Job lifecycle scenarios: stop, grace and SIGKILL, timeout, output limit,
//! stop-when-unwatched, grandchildren holding pipes, spawn failure, restore.

use spout_core::event::Stream;
use spout_core::fuzzing::{ms, Sim};
use spout_core::job::{Job, JobSettings, Signal, State};
use spout_core::sse::{Decoder, Item};
use spout_core::subscriber::SubscribeParams;
use spout_core::JobId;
use std::time::Duration;

#[allow(clippy::disallowed_methods)] // the one clock read: the simulation's t0
fn t0() -> std::time::Instant {
    std::time::Instant::now()
}

/// The dispatched events of a complete transcript, as (type, data) pairs.
fn events(s: &Sim) -> Vec<(String, serde_json::Value)> {
    let mut sub = s.subscribe(SubscribeParams::default()).unwrap();
    let (wire, _) = s.read(&mut sub);
    let mut d = Decoder::new();
    d.feed(wire.as_bytes());
    std::iter::from_fn(|| d.poll())
        .filter_map(|i| match i {
            Item::Event(e) => Some((e.event_type, serde_json::from_str(&e.data).unwrap())),
            _ => None,
        })
        .collect()
}

fn exit_data(s: &Sim) -> serde_json::Value {
    let evs = events(s);
    let (t, d) = evs.last().unwrap().clone();
    assert_eq!(t, "exit");
    d
}

#[test]
fn stop_sends_term_then_kill_after_grace() {
    let mut s = Sim::new(
        JobSettings {
            stop_grace: Duration::from_secs(5),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.job
        .handle_stop(spout_core::event::EndReason::Stopped, s.now);
    s.drive();
    assert_eq!(s.job.state(), State::Stopping);
    assert_eq!(s.signals, vec![Signal::Term]);
    s.advance(ms(4999));
    assert_eq!(s.signals, vec![Signal::Term]);
    s.advance(ms(1));
    assert_eq!(s.signals, vec![Signal::Term, Signal::Kill]);
    s.exit(None, Some(9));
    assert_eq!(s.job.state(), State::Stopped);
    let d = exit_data(&s);
    assert_eq!(d["signal"], "SIGKILL");
    assert_eq!(d["reason"], "stopped");
    assert!(s.finished && s.stopped_reading);
}

#[test]
fn process_that_obeys_term_gets_no_kill() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    s.job
        .handle_stop(spout_core::event::EndReason::Stopped, s.now);
    s.drive();
    s.advance(ms(100));
    s.exit(None, Some(15));
    s.advance(Duration::from_secs(10));
    assert_eq!(s.signals, vec![Signal::Term]);
    assert_eq!(exit_data(&s)["signal"], "SIGTERM");
}

#[test]
fn timeout_stops_the_job() {
    let mut s = Sim::new(
        JobSettings {
            timeout: Some(Duration::from_secs(3)),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.advance(Duration::from_secs(3));
    assert_eq!(s.signals, vec![Signal::Term]);
    s.exit(None, Some(15));
    assert_eq!(s.job.state(), State::TimedOut);
    assert_eq!(exit_data(&s)["reason"], "timeout");
}

#[test]
fn output_limit_cuts_mid_character_and_stops() {
    let mut s = Sim::new(
        JobSettings {
            max_output_bytes: Some(10),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    // "12345678é" is 10 bytes; "日" would be bytes 11..13: cut in the middle.
    let taken = s
        .job
        .handle_output(Stream::Stdout, "12345678é日本".as_bytes(), s.now);
    s.drive();
    assert_eq!(taken, 10);
    assert_eq!(s.job.handle_output(Stream::Stdout, b"more", s.now), 0);
    assert_eq!(s.signals, vec![Signal::Term]);
    s.exit(None, Some(15));
    let evs = events(&s);
    let text: String = evs
        .iter()
        .filter(|(t, _)| t == "stdout")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "12345678é");
    let d = exit_data(&s);
    assert_eq!(d["reason"], "output_limit");
    assert_eq!(d["stdout_bytes"], 10);
    assert_eq!(s.job.state(), State::OutputLimit);
}

#[test]
fn unwatched_job_is_stopped_and_watchers_reset_the_clock() {
    let mut s = Sim::new(
        JobSettings {
            stop_when_unwatched: Some(Duration::from_secs(10)),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.advance(Duration::from_secs(8));
    s.job.handle_watchers(1, s.now);
    s.advance(Duration::from_secs(30));
    assert!(s.signals.is_empty(), "watched job must run on");
    s.job.handle_watchers(0, s.now);
    s.advance(Duration::from_secs(9));
    assert!(s.signals.is_empty());
    s.advance(Duration::from_secs(1));
    assert_eq!(s.signals, vec![Signal::Term]);
    s.exit(None, Some(15));
    assert_eq!(exit_data(&s)["reason"], "unwatched");
}

#[test]
fn exit_comes_from_status_even_if_a_grandchild_holds_the_pipes() {
    let mut s = Sim::new(
        JobSettings {
            drain: ms(200),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.out(Stream::Stdout, b"partial");
    exit_ok(&mut s);
    assert!(!s.finished, "waits for the pipes a little");
    s.advance(ms(200));
    assert!(s.finished);
    assert_eq!(
        s.signals,
        vec![Signal::Kill],
        "the group is killed so no grandchild outlives the job"
    );
    let evs = events(&s);
    assert_eq!(evs[1].1["text"], "partial");
    assert_eq!(exit_data(&s)["code"], 0);
    assert_eq!(s.job.state(), State::Exited);
}

#[test]
fn spawn_failure_gives_start_error_exit() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.job
        .handle_spawn_failed("no such file or directory", s.now, s.wall());
    s.drive();
    let evs = events(&s);
    let kinds: Vec<&str> = evs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["start", "error", "exit"]);
    assert!(evs[0].1["pid"].is_null());
    assert_eq!(evs[1].1["message"], "no such file or directory");
    assert_eq!(s.job.state(), State::Failed);
    assert!(s.finished);
}

#[test]
fn stop_before_spawn_terminates_at_spawn() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.job
        .handle_stop(spout_core::event::EndReason::Stopped, s.now);
    s.spawn();
    assert_eq!(s.signals, vec![Signal::Term]);
}

#[test]
fn deadlines_always_move_forward() {
    let mut s = Sim::new(
        JobSettings {
            timeout: Some(Duration::from_secs(1)),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.out(Stream::Stdout, b"no newline");
    for _ in 0..100 {
        let Some(t) = s.job.poll_timeout() else { break };
        s.now = s.now.max(t);
        s.job.handle_timeout(s.now);
        s.drive();
        if let Some(t2) = s.job.poll_timeout() {
            assert!(t2 > s.now, "deadline {t2:?} not after now {:?}", s.now);
        }
    }
}

#[test]
fn restore_after_crash_adds_server_restart_exit() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    s.out(Stream::Stdout, b"one\ntwo\n");
    let meta = s.job.meta_json();
    let archive = s.archive.clone();
    let scan = spout_core::archive::scan(&archive, spout_core::EventId::FIRST);
    assert!(scan.damage.is_none());
    let id = JobId::from_random(*b"spout-sim-job-id");
    let later = s.now + Duration::from_secs(60);
    let mut job = Job::restore(
        id,
        &meta,
        scan.records,
        JobSettings::default(),
        later,
        spout_core::fuzzing::wall0() + Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(job.state(), State::Lost);
    let mut persisted = archive.clone();
    while let Some(a) = job.poll_action() {
        if let spout_core::job::Action::Persist { records, upto } = a {
            persisted.extend_from_slice(&records);
            job.handle_persisted(upto, later);
        }
    }
    let scan = spout_core::archive::scan(&persisted, spout_core::EventId::FIRST);
    assert_eq!(scan.records.len(), 3);
    let mut d = Decoder::new();
    d.feed(scan.records[2].wire);
    let Some(Item::Event(e)) = d.poll() else {
        panic!("exit event")
    };
    assert_eq!(e.event_type, "exit");
    let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v["reason"], "server_restart");
    assert_eq!(v["duration_ms"], 60_000);
    assert_eq!(e.last_event_id, "3");
}

#[test]
fn restore_of_finished_job_keeps_its_state() {
    let mut s = Sim::new(
        JobSettings {
            timeout: Some(Duration::from_secs(1)),
            ..JobSettings::default()
        },
        t0(),
    );
    s.spawn();
    s.advance(Duration::from_secs(1));
    s.exit(None, Some(15));
    let scan = spout_core::archive::scan(&s.archive, spout_core::EventId::FIRST);
    let id = JobId::from_random(*b"spout-sim-job-id");
    let mut job = Job::restore(
        id,
        &s.job.meta_json(),
        scan.records,
        JobSettings::default(),
        s.now,
        s.wall(),
    )
    .unwrap();
    assert_eq!(job.state(), State::TimedOut);
    assert_eq!(job.poll_action(), None, "nothing to persist");
    assert!(job.log().is_complete());
}

#[test]
fn archive_failure_stops_the_job_and_keeps_events_visible() {
    let mut s = Sim::new(JobSettings::default(), t0());
    s.spawn();
    // The runtime fails to write the next records (disk full).
    let _ = s.job.handle_output(Stream::Stdout, b"one\n", s.now);
    let mut failed = false;
    while let Some(a) = s.job.poll_action() {
        match a {
            spout_core::job::Action::Persist { .. } if !failed => {
                failed = true;
                s.job.handle_archive_failed(s.now);
            }
            spout_core::job::Action::Signal(sig) => s.signals.push(sig),
            _ => {}
        }
    }
    assert!(failed);
    assert_eq!(s.job.state(), State::Stopping);
    assert_eq!(s.signals, vec![Signal::Term]);
    // Later output and the exit are visible at once (memory only now).
    s.out(Stream::Stdout, b"two\n");
    s.exit(None, Some(15));
    assert_eq!(s.job.state(), State::ArchiveError);
    let evs = events(&s);
    let texts: Vec<&str> = evs
        .iter()
        .filter(|(t, _)| t == "stdout")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one\n", "two\n"]);
    assert_eq!(exit_data(&s)["reason"], "archive_error");
    assert_eq!(
        s.meta_saves, 3,
        "metadata is still saved at creation, at start and at the end"
    );
}

/// A spawned job with a 1 s drain (quiet period) capped at 10 s.
fn draining_sim() -> Sim {
    let settings = JobSettings {
        drain: ms(1000),
        drain_max: ms(10_000),
        ..JobSettings::default()
    };
    let mut s = Sim::new(settings, t0());
    s.spawn();
    s
}

/// The child exits with code 0 (its pipes still open), and the job acts on it.
fn exit_ok(s: &mut Sim) {
    s.job.handle_exit(
        spout_core::event::ExitStatus {
            code: Some(0),
            signal: None,
        },
        s.now,
    );
    s.drive();
}

#[test]
fn output_still_flowing_after_exit_is_read_to_the_end() {
    // A starved reader: the child has exited, and the pipe's tail arrives in pieces
    // further apart than a fixed drain would wait, but closer than the quiet period.
    let mut s = draining_sim();
    exit_ok(&mut s);
    for i in 0..9 {
        s.advance(ms(900));
        s.out(Stream::Stdout, format!("late {i}\n").as_bytes());
        assert!(!s.finished, "still flowing at piece {i}");
    }
    s.advance(ms(1000));
    assert!(s.finished, "a quiet second ends the drain");
    let text: String = events(&s)
        .iter()
        .filter(|(t, _)| t == "stdout")
        .map(|(_, d)| d["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text.lines().count(), 9, "every piece was taken: {text}");
}

#[test]
fn a_grandchild_writing_forever_after_exit_is_cut_at_the_cap() {
    let mut s = draining_sim();
    exit_ok(&mut s);
    for i in 0..40 {
        s.advance(ms(500));
        if s.finished {
            assert!(i >= 19, "ended before the cap, at piece {i}");
            break;
        }
        s.out(Stream::Stdout, b"more\n");
    }
    assert!(s.finished, "ended at the cap");
    assert_eq!(s.signals, vec![Signal::Kill], "and its group is killed");
}

#[test]
fn a_late_step_after_exit_takes_the_pipes_tail_before_the_drain_ends() {
    // A starved runtime: the child exited with bytes still in its stdout pipe, and
    // the runtime's next step comes after the quiet period and takes stderr's end
    // first. It calls `handle_timeout` after every input, so the drain's deadline is
    // due in that very step: the end of file must count as pipe input, or the job
    // ends before the runtime has looked at stdout, and the tail is lost.
    let mut s = draining_sim();
    s.out(Stream::Stdout, b"head\n");
    exit_ok(&mut s);
    s.now += ms(1500);
    s.job.handle_eof(Stream::Stderr, s.now);
    s.job.handle_timeout(s.now);
    s.drive();
    assert!(!s.finished, "ended with stdout unread");
    // The next step: stdout's tail, then its end.
    s.out(Stream::Stdout, b"tail\n");
    s.job.handle_timeout(s.now);
    s.drive();
    assert!(!s.finished);
    s.job.handle_eof(Stream::Stdout, s.now);
    s.drive();
    assert!(s.finished);
    assert!(s.signals.is_empty(), "both pipes ended: no group to kill");
    let exit = exit_data(&s);
    assert_eq!(exit["stdout_bytes"], 10, "{exit}");
    assert_eq!(exit["code"], 0);
    assert_eq!(s.job.state(), State::Exited);
}
