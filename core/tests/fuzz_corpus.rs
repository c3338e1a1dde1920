//! Replays every committed fuzz corpus input through its invariant check on the
//! stable toolchain, so `cargo test` catches a regression without nightly.

use std::path::Path;

#[allow(clippy::disallowed_methods)] // a test reads the committed corpus files
fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
            assert!(
                result.is_ok(),
                "fuzz input {} fails its check",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n > 0, "corpus {target} is empty");
}

#[test]
fn sse_decode() {
    replay("sse_decode", spout_core::sse::fuzz_decode);
}

#[test]
fn sse_roundtrip() {
    replay("sse_roundtrip", spout_core::sse::fuzz_roundtrip);
}

#[test]
fn json_escape() {
    replay("json_escape", spout_core::json::fuzz_json_escape);
}

#[test]
#[allow(clippy::disallowed_methods)] // any instant will do as simulated time zero
fn assembler() {
    replay("assembler", |d| {
        spout_core::assembler::fuzz_assembler(d, std::time::Instant::now())
    });
}

#[test]
fn archive_scan() {
    replay("archive_scan", spout_core::archive::fuzz_archive_scan);
}

#[test]
fn config() {
    replay("config", spout_core::config::fuzz_config);
}

#[test]
fn http_request() {
    replay("http_request", spout_core::http::fuzz_request);
}

#[test]
#[allow(clippy::disallowed_methods)] // any instant will do as simulated time zero
fn log_ops() {
    replay("log_ops", |d| {
        spout_core::fuzzing::fuzz_log_ops(d, std::time::Instant::now())
    });
}

#[test]
#[allow(clippy::disallowed_methods)] // any instant will do as simulated time zero
fn http_conn() {
    replay("http_conn", |d| {
        spout_core::http::fuzz_conn(d, std::time::Instant::now())
    });
}
