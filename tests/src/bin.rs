//! Which server binary a case runs, where it lives, and building it on first use.
//!
//! `cargo test --workspace` does not build other packages' binaries for this crate
//! (`CARGO_BIN_EXE_*` only exists for a package's own binaries), so the first lookup in
//! a test process runs `$CARGO build -p spout -p spout-blocking` with the profile and
//! target directory of the running test executable. Cargo releases its build lock
//! before it runs test executables, so the nested build does not deadlock.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One of the two server implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// `spout`, the async server on smol (`runtime-smol/`).
    Smol,
    /// `spout-blocking`, the thread-per-connection server on std threads (`runtime-blocking/`).
    Blocking,
}

impl Runtime {
    /// Both runtimes, for loops.
    pub const ALL: [Runtime; 2] = [Runtime::Smol, Runtime::Blocking];

    /// The binary's file name (without an extension).
    pub fn binary_name(self) -> &'static str {
        match self {
            Runtime::Smol => "spout",
            Runtime::Blocking => "spout-blocking",
        }
    }

    /// The environment variable that overrides the binary's path.
    pub fn env_override(self) -> &'static str {
        match self {
            Runtime::Smol => "SPOUT_BIN",
            Runtime::Blocking => "SPOUT_BLOCKING_BIN",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

/// The path of `runtime`'s binary: `$SPOUT_BIN` / `$SPOUT_BLOCKING_BIN` when set,
/// else the binary in the test executable's own `target/<profile>/`, built there
/// (once per test process) if needed.
///
/// # Panics
/// When the build fails or the binary is not where the build put it; the message
/// holds cargo's output.
pub fn binary_path(runtime: Runtime) -> PathBuf {
    if let Some(path) = std::env::var_os(runtime.env_override()) {
        return PathBuf::from(path);
    }
    let layout = match layout() {
        Ok(layout) => layout,
        Err(why) => panic!("cannot locate {runtime}: {why}"),
    };
    if let Err(why) = build_once(layout) {
        panic!("cannot build the server binaries: {why}");
    }
    let path = layout.profile_dir.join(format!(
        "{}{}",
        runtime.binary_name(),
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        path.is_file(),
        "{} was built but is not at {}",
        runtime,
        path.display()
    );
    path
}

/// Where the running test executable was built, and how to build next to it.
#[derive(Debug)]
struct Layout {
    /// `target/[<triple>/]<profile>`.
    profile_dir: PathBuf,
    /// Arguments that make `cargo build` write into `profile_dir`.
    cargo_args: Vec<OsString>,
}

fn layout() -> Result<&'static Layout, String> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            layout_of(&exe)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Reads `target/[<triple>/]<profile>/deps/<test-exe>` back into cargo arguments.
fn layout_of(exe: &Path) -> Result<Layout, String> {
    let deps = exe.parent().ok_or("test executable has no parent dir")?;
    let profile_dir = match deps.file_name() {
        Some(name) if name == "deps" => deps.parent().ok_or("deps dir has no parent")?,
        // `cargo test` runs integration tests from `deps/`; anything else is a layout
        // we do not know how to rebuild into.
        _ => {
            return Err(format!(
                "{} is not in a cargo deps dir; set SPOUT_BIN and SPOUT_BLOCKING_BIN",
                exe.display()
            ))
        }
    };
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("profile dir name is not UTF-8")?;
    let above = profile_dir.parent().ok_or("profile dir has no parent")?;
    let mut cargo_args: Vec<OsString> = Vec::new();
    // Cargo writes `CACHEDIR.TAG` at the root of every target dir; when it is not
    // next to the profile dir, the profile dir sits under a `<triple>/` dir.
    let target_dir = if above.join("CACHEDIR.TAG").is_file() {
        above.to_path_buf()
    } else {
        let triple = above.file_name().ok_or("no target triple dir")?;
        cargo_args.push("--target".into());
        cargo_args.push(triple.to_os_string());
        above
            .parent()
            .ok_or("triple dir has no parent")?
            .to_path_buf()
    };
    cargo_args.push("--target-dir".into());
    cargo_args.push(target_dir.into_os_string());
    match profile {
        "debug" => {}
        "release" => cargo_args.push("--release".into()),
        custom => {
            cargo_args.push("--profile".into());
            cargo_args.push(custom.into());
        }
    }
    Ok(Layout {
        profile_dir: profile_dir.to_path_buf(),
        cargo_args,
    })
}

fn build_once(layout: &Layout) -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| build(layout)).clone()
}

fn build(layout: &Layout) -> Result<(), String> {
    // Cargo sets `CARGO` for the test process it runs; outside cargo (a test binary
    // started by hand) the one that compiled us is the next best guess.
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("Cargo.toml"))
        .ok_or("tests crate has no parent dir")?;
    let output = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "spout", "-p", "spout-blocking"])
        .args(&layout.cargo_args)
        .output()
        .map_err(|e| format!("running {}: {e}", Path::new(&cargo).display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build -p spout -p spout-blocking {:?}` failed ({}):\n{}",
            layout.cargo_args,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spout-tests-layout-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn release_profile_builds_with_release_flag() {
        let root = scratch("release");
        std::fs::create_dir_all(root.join("release/deps")).unwrap();
        std::fs::write(root.join("CACHEDIR.TAG"), "").unwrap();
        let layout = layout_of(&root.join("release/deps/case-0123")).unwrap();
        assert_eq!(layout.profile_dir, root.join("release"));
        let args: Vec<_> = layout
            .cargo_args
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(args, ["--target-dir", root.to_str().unwrap(), "--release"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn triple_dir_adds_target_flag() {
        let root = scratch("triple");
        std::fs::create_dir_all(root.join("x86_64-unknown-linux-musl/debug/deps")).unwrap();
        std::fs::write(root.join("CACHEDIR.TAG"), "").unwrap();
        let exe = root.join("x86_64-unknown-linux-musl/debug/deps/case-0123");
        let layout = layout_of(&exe).unwrap();
        let args: Vec<_> = layout
            .cargo_args
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--target",
                "x86_64-unknown-linux-musl",
                "--target-dir",
                root.to_str().unwrap()
            ]
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn exe_outside_deps_is_refused() {
        assert!(layout_of(Path::new("/usr/bin/spout-case")).is_err());
    }
}
