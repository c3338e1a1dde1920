//! A server stopped (SIGKILL mid-job, or SIGTERM) and started again on the same data
//! dir: the job's log reads back whole with the same ids. After a crash it ends
//! with an `exit` of `reason: "server_restart"` (state `lost`); after a clean
//! shutdown, with the `server_shutdown` exit archived before the server left.

mod common;

use common::*;
use serde_json::json;
use spout_tests::{both_runtimes, get, start_job, Runtime, Server};

both_runtimes!(
    fn crash_mid_job_then_restart_reads_back_whole(rt: Runtime) {
        let script = "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done";
        let mut server =
            Server::start_with_config(rt, &config(json!({ "ticker": sh(script) })), &[]);
        let (id, _) = start_job(server.addr(), "ticker", &[]);
        let mut live = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let mut before = Vec::new();
        while before.len() < 4 {
            let event = live
                .next_event(STREAM_BOUND)
                .unwrap_or_else(|| panic!("stream stalled: {before:#?}"));
            before.push(event);
        }
        // The crash: no shutdown, no final event written.
        server.kill9();
        live.close();
        server.restart();

        let events = whole_stream(server.addr(), &id);
        assert_whole(&events);
        assert_eq!(
            &events[..before.len()],
            &before[..],
            "what was seen reads back the same"
        );
        let exit = exit_data(&events);
        assert_eq!(exit["reason"], "server_restart", "{exit}");
        let text = text_of(&events, "stdout");
        let lines: Vec<&str> = text.lines().collect();
        let expected: Vec<String> = (1..=lines.len()).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected, "no line lost or doubled");
        assert!(text.ends_with('\n'), "{text:?}");

        let response = get(server.addr(), &format!("/jobs/{id}"));
        assert_eq!(response.status, 200, "{}", response.text());
        let status = response.json();
        assert_eq!(status["state"], "lost", "{status:#}");
        let listed = get(server.addr(), "/jobs").json();
        assert_eq!(listed[0]["id"], json!(id), "{listed:#}");
    }
);

both_runtimes!(
    fn sigterm_stops_jobs_ends_streams_and_restarts_clean(rt: Runtime) {
        let script = "echo started; sleep 300";
        let mut server = Server::start_with_config(rt, &config(json!({ "long": sh(script) })), &[]);
        let (id, _) = start_job(server.addr(), "long", &[]);
        let mut live = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        // Wait until the job runs and has written, so the shutdown stops a live job.
        loop {
            let event = live
                .next_event(STREAM_BOUND)
                .expect("the job's first events");
            if event.event_type == "stdout" {
                break;
            }
        }
        let status = server.terminate();
        assert!(
            status.success(),
            "a clean shutdown exits 0: {status:?}\n{}",
            server.stderr_text()
        );
        // The open stream got the exit and its end.
        let rest = live.collect_to_end(STREAM_BOUND);
        let exit = exit_data(&rest);
        assert_eq!(exit["reason"], "server_shutdown", "{exit}");
        assert_eq!(exit["signal"], "SIGTERM", "{exit}");
        // The exit was archived: after a restart the job reads back whole and is
        // not "lost".
        server.restart();
        let events = whole_stream(server.addr(), &id);
        assert_whole(&events);
        assert_eq!(exit_data(&events)["reason"], "server_shutdown");
        let job = get(server.addr(), &format!("/jobs/{id}")).json();
        assert_eq!(job["state"], "shutdown", "{job:#}");
    }
);
