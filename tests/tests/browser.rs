//! The built-in viewer page in a real headless browser: runs
//! `tests/browser/viewer.test.mjs` (playwright-core driving Debian's Chromium)
//! against both binaries, so `cargo test --workspace` covers the page too.
//!
//! It needs `/usr/bin/chromium` and `node`/`npm` (`.ci/run` installs them). It never
//! passes without running: a missing program fails it with the command that
//! installs it. The npm package (`playwright-core`, pinned by package-lock.json) is
//! installed here with `npm ci` when it is missing.

use spout_tests::{binary_path, Runtime};
use std::path::Path;
use std::process::Command;

const INSTALL: &str =
    "install them with `apt-get install chromium nodejs npm` (or run `bash .ci/run`, which does)";

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn viewer_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser_dir = root.join("tests/browser");
    let missing: Vec<&str> = [
        (!Path::new("/usr/bin/chromium").exists()).then_some("/usr/bin/chromium"),
        (!runs("node")).then_some("node"),
        (!runs("npm")).then_some("npm"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        missing.is_empty(),
        "the viewer's browser test needs {}: {INSTALL}",
        missing.join(", ")
    );
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser_dir)
            .status()
            .expect("npm runs");
        assert!(
            status.success(),
            "`npm ci` in tests/browser failed: the test needs the playwright-core package"
        );
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
