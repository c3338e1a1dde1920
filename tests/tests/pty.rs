//! `"pty": true` commands: the job runs on a pseudo-terminal of the configured size,
//! its output (stderr included) comes as `stdout` events byte for byte, stdin gives
//! end of file, and DELETE, timeouts and the output limit end it and its whole
//! process group as they do a job on pipes.

mod common;

use common::*;
use serde_json::{json, Value};
use spout_tests::{both_runtimes, delete, start_job, wait_for_state, Runtime, Server};

/// A `sh -c script` command on a terminal, with `extra` fields.
fn on_pty(script: &str, extra: Value) -> Value {
    let mut command = json!({ "argv": ["sh", "-c", script], "pty": true });
    if let (Some(command), Some(extra)) = (command.as_object_mut(), extra.as_object()) {
        command.extend(extra.clone());
    }
    command
}

/// Fields 5 and 6 of `/proc/PID/stat`: the process group and the session.
fn group_and_session(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

both_runtimes!(
    fn a_pty_job_sees_a_terminal_and_its_bytes_arrive_as_written(rt: Runtime) {
        let script = "test -t 0 && test -t 1 && test -t 2 && echo tty; stty size; \
                      printf '\\033[31mred\\033[0m\\r\\n'; printf 'a\\rb\\033[K\\n'; \
                      echo err >&2; echo \"TERM=$TERM\"";
        let cfg = json!({
            "term": on_pty(script, json!({})),
            "small": on_pty("stty size", json!({ "pty_size": { "cols": 80, "rows": 24 } })),
        });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (_, events) = run_job(server.addr(), "term");
        assert_whole(&events);
        // The terminal turns every `\n` into `\r\n` (ONLCR), a printed `\r\n` too.
        assert_eq!(
            text_of(&events, "stdout"),
            "tty\r\n40 120\r\n\x1b[31mred\x1b[0m\r\r\na\rb\x1b[K\r\nerr\r\nTERM=xterm-256color\r\n"
        );
        assert!(
            !types(&events).contains(&"stderr"),
            "stderr is the same terminal: {events:?}"
        );
        let exit = exit_data(&events);
        assert_eq!(exit["code"], 0, "{exit}");
        assert_eq!(exit["stderr_bytes"], 0, "{exit}");

        let (_, events) = run_job(server.addr(), "small");
        assert_eq!(text_of(&events, "stdout"), "24 80\r\n");
    }

    fn stdin_gives_end_of_file_every_time(rt: Runtime) {
        // Without end of file, `cat` would wait for input until the stream's bound.
        let script = "cat; cat; read line || echo eof; echo done";
        let cfg = json!({ "reader": on_pty(script, json!({ "timeout_s": 60 })) });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (_, events) = run_job(server.addr(), "reader");
        assert_eq!(text_of(&events, "stdout"), "eof\r\ndone\r\n");
        let exit = exit_data(&events);
        assert_eq!(exit["code"], 0, "{exit}");
        assert_eq!(exit["reason"], Value::Null, "{exit}");
    }

    fn delete_stops_a_pty_job_and_its_whole_group(rt: Runtime) {
        let cfg = json!({ "tree": on_pty("sleep 300 & echo $!; wait", json!({})) });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (id, _) = start_job(server.addr(), "tree", &[]);
        let mut events = stream(server.addr(), &format!("/jobs/{id}/events"), &[]);
        let start = events.next_event(STREAM_BOUND).expect("start event");
        assert_eq!(start.event_type, "start");
        let child = data(&start)["pid"].as_u64().expect("a pid") as u32;
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
        // The job leads its own session, so its own process group: the one
        // DELETE signals.
        assert_eq!(group_and_session(child), (child, child));
        assert_eq!(group_and_session(grandchild), (child, child));

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
    }

    fn timeout_and_output_limit_stop_pty_jobs(rt: Runtime) {
        let cfg = json!({
            "slow": { "argv": ["sleep", "30"], "pty": true, "timeout_s": 1 },
            "chatty": { "argv": ["yes"], "pty": true, "max_output_bytes": 1000 },
        });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        for (command, reason) in [("slow", "timeout"), ("chatty", "output_limit")] {
            let (id, _) = start_job(server.addr(), command, &[]);
            wait_for_state(server.addr(), &id, |s| s["exit"].is_object(), 10 * SECOND);
            let events = whole_stream(server.addr(), &id);
            let exit = exit_data(&events);
            assert_eq!(exit["reason"], reason, "{command}: {exit}");
            let bytes = exit["stdout_bytes"].as_u64().unwrap();
            assert!(bytes <= 1000, "{exit}");
            assert_eq!(text_of(&events, "stdout").len() as u64, bytes);
        }
    }

    fn a_missing_program_on_a_pty_fails_to_start(rt: Runtime) {
        let cfg = json!({ "nope": { "argv": ["/no/such/program"], "pty": true } });
        let server = Server::start_with_config(rt, &config(cfg), &[]);
        let (id, events) = run_job(server.addr(), "nope");
        // As on pipes: the helper's failed exec is a start error, not an exit 127.
        assert_eq!(types(&events), ["start", "error", "exit"], "{events:?}");
        let message = data(&events[1])["message"].to_string();
        assert!(
            message.contains("/no/such/program") && message.contains("No such file"),
            "{message}"
        );
        let status = wait_for_state(server.addr(), &id, |s| s["state"] == "failed", 10 * SECOND);
        assert_eq!(status["pid"], Value::Null, "{status:#}");
    }
);
