//! How the server ends jobs: `DELETE` kills the whole process tree (a grandchild
//! too), a timeout, an output limit, and stopping a job nobody watches; each ends
//! with the right `reason` on its `exit` event.

mod common;

use common::*;
use serde_json::{json, Value};
use spout_tests::{both_runtimes, delete, start_job, wait_for_state, Runtime, Server};

/// Starts `command` on `server` and, without watching it, waits for its status to show
/// an exit; then reads the whole stream.
fn unwatched_to_end(server: &Server, command: &str) -> (Value, Vec<spout_tests::Dispatched>) {
    let (id, _) = start_job(server.addr(), command, &[]);
    let status = wait_for_state(server.addr(), &id, |s| s["exit"].is_object(), 10 * SECOND);
    let events = whole_stream(server.addr(), &id);
    assert_whole(&events);
    (status, events)
}

both_runtimes!(
    fn delete_kills_the_process_tree(rt: Runtime) {
        let server = Server::start_with_config(
            rt,
            &config(json!({ "tree": sh("sleep 300 & echo $!; wait") })),
            &[],
        );
        let (id, _) = start_job(server.addr(), "tree", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let start = events.next_event(STREAM_BOUND).expect("start event");
        assert_eq!(start.event_type, "start");
        let child: u32 = data(&start)["pid"].as_u64().expect("a pid") as u32;
        let output = events
            .next_event(STREAM_BOUND)
            .expect("the grandchild's pid");
        assert_eq!(output.event_type, "stdout", "{output:?}");
        let grandchild: u32 = data(&output)["text"]
            .as_str()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{output:?}: {e}"));
        assert!(
            !is_gone(child) && !is_gone(grandchild),
            "both run before DELETE"
        );

        let response = delete(server.addr(), &format!("/jobs/{id}"));
        assert_eq!(response.status, 202, "{}", response.text());
        let rest = events.collect_to_end(STREAM_BOUND);
        assert!(events.finished(), "{:?}", events.dropped());
        let exit = exit_data(&rest);
        assert_eq!(exit["reason"], "stopped", "{exit}");
        assert!(
            wait_gone(child, 10 * SECOND),
            "child {child} outlived DELETE"
        );
        assert!(
            wait_gone(grandchild, 10 * SECOND),
            "grandchild {grandchild} outlived DELETE"
        );
        let status = get_status(&server, &id);
        assert_eq!(status["state"], "stopped", "{status:#}");
    }

    fn timeout_stops_the_job(rt: Runtime) {
        let cfg = json!({ "slow": { "argv": ["sleep", "30"], "timeout_s": 1 } });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (status, events) = unwatched_to_end(&server, "slow");
        let exit = exit_data(&events);
        assert_eq!(exit["reason"], "timeout", "{exit}");
        assert_eq!(exit["signal"], "SIGTERM", "{exit}");
        assert_eq!(status["state"], "timed_out", "{status:#}");
    }

    fn output_limit_stops_the_job(rt: Runtime) {
        let cfg = json!({ "chatty": { "argv": ["yes"], "max_output_bytes": 1000 } });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (status, events) = unwatched_to_end(&server, "chatty");
        let exit = exit_data(&events);
        assert_eq!(exit["reason"], "output_limit", "{exit}");
        let bytes = exit["stdout_bytes"].as_u64().unwrap();
        assert!(bytes <= 1000, "{exit}");
        let text = text_of(&events, "stdout");
        assert_eq!(text.len() as u64, bytes, "the text is the counted bytes");
        assert!(text.bytes().all(|b| b == b'y' || b == b'\n'));
        assert_eq!(status["state"], "output_limit", "{status:#}");
    }

    fn unwatched_job_is_stopped(rt: Runtime) {
        let cfg = json!({ "lonely": { "argv": ["sleep", "30"], "stop_when_unwatched_s": 1 } });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (status, events) = unwatched_to_end(&server, "lonely");
        let exit = exit_data(&events);
        assert_eq!(exit["reason"], "unwatched", "{exit}");
        assert_eq!(status["state"], "unwatched", "{status:#}");
    }
);

fn get_status(server: &Server, id: &str) -> Value {
    let response = spout_tests::get(server.addr(), &format!("/jobs/{id}"));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}
