//! The live job list, `GET /jobs` with `Accept: text/event-stream`, on both
//! runtimes: a `snapshot` first, a `job` event when a job is created, runs and
//! exits, resume with `Last-Event-ID`, a snapshot for an id it cannot resume from,
//! and the `watch` scope (`Authorization` or `?token=`).

mod common;

use common::*;
use serde_json::{json, Value};
use spout_tests::{
    both_runtimes, get, request, start_job, Dispatched, EventStream, Runtime, Server,
};

const WATCH: &str = "watch-token-0123456789abcdef";
const START: &str = "start-token-0123456789abcdef";

fn data(e: &Dispatched) -> Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {:?}", e.data))
}

/// The next event of `list` (heartbeats are comments and never show up).
fn next(list: &mut EventStream) -> Dispatched {
    list.next_event(STREAM_BOUND)
        .unwrap_or_else(|| panic!("no list event within {STREAM_BOUND:?}: {}", list.raw_text()))
}

/// Reads `job` events until one says `change` for job `id`; returns it.
fn until_change(list: &mut EventStream, id: &str, change: &str) -> Dispatched {
    loop {
        let e = next(list);
        assert_eq!(e.event_type, "job", "{e:?}");
        let d = data(&e);
        if d["id"] == id && d["change"] == change {
            return e;
        }
    }
}

both_runtimes!(
    fn snapshot_first_then_a_job_event_per_change(rt: Runtime) {
        let cfg = config(json!({ "quick": sh("echo hi; exit 3"), "wait": sh("sleep 0.5") }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let (old, _) = start_job(server.addr(), "quick", &[]);
        wait_state(&server, &old);

        let mut list = stream(server.addr(), "/jobs", &[]);
        assert_eq!(list.header("content-type"), Some("text/event-stream"));
        assert_eq!(list.header("vary"), Some("Accept"));
        assert!(list.raw_text().is_empty() || list.raw_text().starts_with("retry:"));
        let snap = next(&mut list);
        assert_eq!(snap.event_type, "snapshot");
        let d = data(&snap);
        assert_eq!(d["reason"], "start");
        // The same documents as GET /jobs (JSON), newest first.
        assert_eq!(d["jobs"], get(server.addr(), "/jobs").json());
        assert_eq!(d["jobs"][0]["id"], old.as_str());

        let (id, _) = start_job(server.addr(), "wait", &[]);
        let created = until_change(&mut list, &id, "created");
        assert_eq!(data(&created)["job"]["command"], "wait");
        let running = until_change(&mut list, &id, "running");
        assert_eq!(data(&running)["job"]["state"], "running");
        let exited = until_change(&mut list, &id, "exited");
        let job = &data(&exited)["job"];
        assert_eq!(job["state"], "exited", "{job}");
        assert_eq!(job["exit"]["code"], 0, "{job}");
        assert!(!created.last_event_id.is_empty());
        assert_ne!(created.last_event_id, exited.last_event_id);
    }

    fn resume_with_last_event_id_and_a_stale_id_gets_a_snapshot(rt: Runtime) {
        let cfg = config(json!({ "quick": sh("exit 5") }));
        let server = Server::start_with_config(rt, &cfg, &[]);
        let mut list = stream(server.addr(), "/jobs", &[]);
        let snap = next(&mut list);
        assert_eq!(snap.event_type, "snapshot");
        let (id, _) = start_job(server.addr(), "quick", &[]);
        let created = until_change(&mut list, &id, "created");
        let exited = until_change(&mut list, &id, "exited");
        assert_eq!(data(&exited)["job"]["exit"]["code"], 5);
        list.close();

        // Resume after `created`: exactly the changes after it, no snapshot.
        let mut again = stream(
            server.addr(),
            "/jobs",
            &[("Last-Event-ID", &created.last_event_id)],
        );
        let mut changes = Vec::new();
        loop {
            let e = next(&mut again);
            assert_eq!(e.event_type, "job", "{e:?}");
            let d = data(&e);
            changes.push(d["change"].as_str().unwrap_or("").to_string());
            if e.last_event_id == exited.last_event_id {
                break;
            }
        }
        assert_eq!(changes, ["running", "exited"]);
        again.close();

        // Also as the query parameter (EventSource cannot send the header itself).
        let q = format!("/jobs?lastEventId={}", exited.last_event_id);
        let mut caught_up = stream(server.addr(), &q, &[]);
        assert!(
            caught_up.next_event(SECOND / 2).is_none(),
            "nothing new yet"
        );
        caught_up.close();

        // An id from another run (or made up): a snapshot, said in-band.
        for stale in ["00000000-1", "7", "garbage"] {
            let mut s = stream(server.addr(), "/jobs", &[("Last-Event-ID", stale)]);
            let e = next(&mut s);
            assert_eq!(e.event_type, "snapshot", "{stale}");
            let d = data(&e);
            assert_eq!(d["reason"], "unknown", "{stale}");
            assert_eq!(d["jobs"][0]["id"], id.as_str());
            s.close();
        }
    }

    fn json_without_the_accept_value_and_head_has_only_the_head(rt: Runtime) {
        let server = Server::start_with_config(rt, &config(json!({ "q": sh("true") })), &[]);
        let plain = get(server.addr(), "/jobs");
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-type"), Some("application/json"));
        assert_eq!(plain.json(), json!([]));
        let wild = request(server.addr(), "GET", "/jobs", &[("Accept", "*/*")], b"");
        assert_eq!(wild.header("content-type"), Some("application/json"));
        let low = request(
            server.addr(),
            "GET",
            "/jobs",
            &[("Accept", "text/event-stream;q=0.1, application/json")],
            b"",
        );
        assert_eq!(low.header("content-type"), Some("application/json"));
        let head = request(
            server.addr(),
            "HEAD",
            "/jobs",
            &[("Accept", "text/event-stream")],
            b"",
        );
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert!(head.body.is_empty());
    }

    fn the_list_needs_the_watch_scope_and_takes_token_in_the_query(rt: Runtime) {
        let cfg = json!({
            "commands": { "q": sh("true") },
            "tokens": [
                { "token": WATCH, "scopes": ["watch"] },
                { "token": START, "scopes": ["start"] }
            ]
        });
        let server = Server::start_with_config(rt, &cfg.to_string(), &[]);
        let sse = ("Accept", "text/event-stream");
        let status = |path: &str, headers: &[(&str, &str)]| {
            request(server.addr(), "GET", path, headers, b"").status
        };
        assert_eq!(status("/jobs", &[sse]), 401);
        assert_eq!(status("/jobs?token=wrong-token-0123456789", &[sse]), 401);
        assert_eq!(status(&format!("/jobs?token={START}"), &[sse]), 403);
        let start = format!("Bearer {START}");
        assert_eq!(status("/jobs", &[sse, ("Authorization", &start)]), 403);

        let watch = format!("Bearer {WATCH}");
        let mut by_header = stream(server.addr(), "/jobs", &[("Authorization", &watch)]);
        assert_eq!(next(&mut by_header).event_type, "snapshot");
        by_header.close();
        let mut by_query = stream(server.addr(), &format!("/jobs?token={WATCH}"), &[]);
        assert_eq!(next(&mut by_query).event_type, "snapshot");
        by_query.close();
    }
);

/// Waits until job `id` has ended.
fn wait_state(server: &Server, id: &str) {
    spout_tests::wait_for_state(server.addr(), id, |s| s["exit"].is_object(), STREAM_BOUND);
}
