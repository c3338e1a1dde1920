//! The job API as cases use it: start a job, wait for its status to match.

use crate::client::{get, post_json, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `POST /jobs {"command": command, "args": args}` (no `args` key when `args` is
/// empty), expecting `201` with `Location: /jobs/{id}`; returns the id and the status
/// JSON.
///
/// # Panics
/// On any other answer, or when the body's `id` (if present) disagrees with `Location`.
pub fn start_job(addr: SocketAddr, command: &str, args: &[&str]) -> (String, Value) {
    let body = if args.is_empty() {
        json!({ "command": command })
    } else {
        json!({ "command": command, "args": args })
    };
    let response = post_json(addr, "/jobs", &body);
    assert_eq!(
        response.status,
        201,
        "POST /jobs {command} {args:?}: {}",
        describe(&response)
    );
    let location = response.header("location").unwrap_or_else(|| {
        panic!(
            "POST /jobs answered 201 without Location: {}",
            describe(&response)
        )
    });
    let id = location
        .strip_prefix("/jobs/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .unwrap_or_else(|| panic!("Location {location:?} is not /jobs/{{id}}"))
        .to_string();
    let status = response.json();
    if let Some(body_id) = status.get("id") {
        assert_eq!(body_id, &Value::from(id.as_str()), "status id vs Location");
    }
    (id, status)
}

/// Polls `GET /jobs/{id}` until `pred` holds for the status JSON, and returns it.
///
/// # Panics
/// When `pred` does not hold within `timeout`, or the status cannot be read; the
/// message shows the last status.
pub fn wait_for_state(
    addr: SocketAddr,
    id: &str,
    pred: impl Fn(&Value) -> bool,
    timeout: Duration,
) -> Value {
    let deadline = Instant::now() + timeout;
    let path = format!("/jobs/{id}");
    loop {
        let response = get(addr, &path);
        assert_eq!(response.status, 200, "GET {path}: {}", describe(&response));
        let status = response.json();
        if pred(&status) {
            return status;
        }
        if Instant::now() >= deadline {
            panic!("job {id} did not reach the awaited state within {timeout:?}; last status: {status:#}");
        }
        // Integration tests may poll: the servers' own timing is what is under test.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn describe(response: &Response) -> String {
    format!(
        "{} {:?} {}",
        response.status,
        response.headers,
        response.text()
    )
}
