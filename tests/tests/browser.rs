//! The built-in viewer page in a real headless browser: runs
//! `tests/browser/viewer.test.mjs` (playwright-core driving Debian's Chromium)
//! against both binaries, so `cargo test --workspace` covers the page too.
//!
//! It needs `/usr/bin/chromium`, `node`, and `npm ci` in `tests/browser`; `.ci/run`
//! installs them. Elsewhere the test skips with a message saying so — but never in
//! CI (`CI` set), where a missing browser is a failure.

use spout_tests::{binary_path, Runtime};
use std::path::Path;
use std::process::Command;

#[test]
fn viewer_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let missing: Vec<&str> = [
        (!Path::new("/usr/bin/chromium").exists()).then_some("/usr/bin/chromium"),
        Command::new("node")
            .arg("--version")
            .output()
            .is_err()
            .then_some("node"),
        (!root
            .join("tests/browser/node_modules/playwright-core")
            .exists())
        .then_some("`npm ci` in tests/browser"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        let msg = format!(
            "viewer browser test needs {} (.ci/run installs them)",
            missing.join(", ")
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIP: {msg}");
        return;
    }
    let status = Command::new("node")
        .arg("tests/browser/viewer.test.mjs")
        .current_dir(&root)
        .env("SPOUT_BIN", binary_path(Runtime::Smol))
        .env("SPOUT_BLOCKING_BIN", binary_path(Runtime::Blocking))
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the viewer's browser checks failed (see the lines above)"
    );
}
