//! Small Unix helpers both runtimes need: building a job's `Command` (own process
//! group, cleared environment, stdin from `/dev/null`), signalling a whole process
//! group, splitting an exit status, OS randomness and the open-files limit.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use rustix::process::{Pid, Resource, Rlimit};

/// The `PATH` a job gets when the server itself has none: the usual system
/// directories, and nothing writable by ordinary users.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A signal the runtime may send to a job's process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGTERM`: ask the job to stop.
    Term,
    /// `SIGKILL`: end it now (after the grace period).
    Kill,
}

impl Signal {
    fn to_rustix(self) -> rustix::process::Signal {
        match self {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        }
    }
}

/// Sends `signal` to every process in the process group `pgid` (`kill(-pgid, sig)`).
///
/// A job's child is started as the leader of its own group (see [`job_command`]), so
/// its pid is the group id, and grandchildren it forked are reached too.
/// A group that no longer exists (`ESRCH`) counts as success: the job is already gone.
///
/// Once the child has been reaped and `ESRCH` seen, stop signalling that number: the
/// kernel may hand it to an unrelated process group later.
///
/// # Errors
///
/// `InvalidInput` for a `pgid` of 0 or 1, above `i32::MAX`, or equal to the server's
/// own group (each of which would signal far more than one job); otherwise the OS
/// error (e.g. `EPERM` when the group belongs to another user).
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|&raw| raw > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| invalid(format!("refusing to signal process group {pgid}")))?;
    if pid == rustix::process::getpgrp() {
        return Err(invalid(format!(
            "refusing to signal process group {pgid}: it is the server's own"
        )));
    }
    match rustix::process::kill_process_group(pid, signal.to_rustix()) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(with_context(
            io::Error::from(e),
            &format!("cannot signal process group {pgid}"),
        )),
    }
}

/// Builds the `Command` for one job, by the process rules of spout:
///
/// - `argv[0]` is the program (looked up in the job's `PATH`), the rest its arguments;
///   never a shell.
/// - It starts as the leader of a new process group, so [`signal_group`] with its pid
///   reaches every process it forks.
/// - The environment is cleared, then `PATH` (the server's, or [`DEFAULT_PATH`]), then
///   `env` (so a command that declares its own `PATH` wins).
/// - stdin is `/dev/null`; stdout and stderr are pipes.
/// - `cwd`, where given, is its working directory.
///
/// # Errors
///
/// `InvalidInput` for an empty `argv`. Errors from the program itself (not found, not
/// executable, bad `cwd`) come from `spawn`.
pub fn job_command(
    argv: &[String],
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> io::Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| invalid("a job needs a program to run (argv is empty)".to_owned()))?;
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    Ok(cmd)
}

/// Splits an exit status into `(code, signal)`: exactly one is `Some` for a process
/// that ended (a code for `exit`, a signal number for death by signal).
#[must_use]
pub fn wait_status_parts(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

/// 16 bytes of OS randomness (for job ids: 128 bits, where the spec asks ≥ 96).
///
/// # Errors
///
/// The OS error when neither `getrandom(2)` nor `/dev/urandom` gives bytes.
pub fn try_random_bytes() -> io::Result<[u8; 16]> {
    let mut buf = [0u8; 16];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if fill_getrandom(&mut buf).is_ok() {
        return Ok(buf);
    }
    // Older kernels or seccomp filters may refuse getrandom(2); the device is the
    // same pool.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| with_context(e, "cannot read OS randomness from /dev/urandom"))?;
    Ok(buf)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn fill_getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// 16 bytes of OS randomness; see [`try_random_bytes`].
///
/// # Panics
///
/// When the OS gives no randomness at all. Ids must be unguessable, and a server with
/// no randomness has no safe way to go on; call [`try_random_bytes`] once at start
/// to report that case cleanly instead.
#[must_use]
pub fn random_bytes() -> [u8; 16] {
    match try_random_bytes() {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    }
}

/// Raises the soft limit on open files to the hard limit (a server holding many
/// SSE connections runs out of the usual 1024 fds first). Best effort: a caller may
/// log the error and go on.
///
/// Returns the soft limit in force afterwards (`u64::MAX` for unlimited).
///
/// # Errors
///
/// The OS error of `setrlimit`.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return Ok(u64::MAX);
    };
    // An unlimited hard limit is not a number setrlimit accepts for NOFILE on every
    // kernel (macOS caps it at OPEN_MAX); leave the soft limit alone then.
    let Some(maximum) = limit.maximum else {
        return Ok(current);
    };
    if maximum <= current {
        return Ok(current);
    }
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        },
    )
    .map_err(|e| with_context(e.into(), "cannot raise the open-files limit"))?;
    Ok(maximum)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Keeps the error's kind (callers match on `NotFound` and the like) and puts what
/// was being done in front of the OS message.
pub(crate) fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pid_alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; treat it as gone: it runs no code.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn wait_gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !pid_alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn job_command_clears_env_and_sets_path_and_cwd() {
        let mut env = BTreeMap::new();
        env.insert("SPOUT_TEST".to_owned(), "yes".to_owned());
        let mut cmd = job_command(&strings(&["env"]), None, &env).unwrap();
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort_unstable();
        assert_eq!(names, ["PATH", "SPOUT_TEST"], "{text}");
        assert!(text.contains("SPOUT_TEST=yes\n"));

        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let mut cmd = job_command(&strings(&["pwd"]), Some(&tmp), &env).unwrap();
        let out = cmd.output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            tmp.to_str().unwrap()
        );
    }

    #[test]
    fn job_command_env_path_wins_over_server_path() {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), "/nowhere".to_owned());
        let mut cmd = job_command(&strings(&["/usr/bin/env"]), None, &env).unwrap();
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "PATH=/nowhere\n");
    }

    #[test]
    fn job_stdin_is_dev_null_even_when_the_server_has_another() {
        // The runner's own stdin may be /dev/null already, which would hide an
        // inherited one: run the probe in a copy of this binary with a pipe as stdin.
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "os::tests::stdin_probe", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .stdin(Stdio::piped())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("server stdin: pipe:"), "{text}");
        assert!(text.contains("job stdin: /dev/null\n"), "{text}");
    }

    #[test]
    #[ignore = "run by job_stdin_is_dev_null_even_when_the_server_has_another"]
    fn stdin_probe() {
        let server = std::fs::read_link("/proc/self/fd/0").unwrap();
        println!("server stdin: {}", server.display());
        let argv = strings(&["readlink", "/proc/self/fd/0"]);
        let out = job_command(&argv, None, &BTreeMap::new())
            .unwrap()
            .output()
            .unwrap();
        println!("job stdin: {}", String::from_utf8_lossy(&out.stdout));
    }

    #[test]
    fn job_command_refuses_empty_argv() {
        let err = job_command(&[], None, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn job_runs_in_its_own_group_and_the_group_signal_reaches_grandchildren() {
        let argv = strings(&["sh", "-c", "sleep 30 & echo $!; exec sleep 30"]);
        let mut cmd = job_command(&argv, None, &BTreeMap::new()).unwrap();
        cmd.stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let grandchild: u32 = line.trim().parse().unwrap();
        let pgid = rustix::process::getpgid(Pid::from_raw(grandchild as i32)).unwrap();
        assert_eq!(pgid.as_raw_pid() as u32, child.id());

        signal_group(child.id(), Signal::Term).unwrap();
        let (code, signal) = wait_status_parts(child.wait().unwrap());
        assert_eq!((code, signal), (None, Some(15)));
        assert!(wait_gone(grandchild), "grandchild {grandchild} survived");
        // The group is gone now: signalling it again is not an error.
        signal_group(child.id(), Signal::Kill).unwrap();
    }

    #[test]
    fn signal_group_refuses_dangerous_groups() {
        let own = rustix::process::getpgrp().as_raw_pid() as u32;
        for pgid in [0, 1, u32::MAX, own] {
            let err = signal_group(pgid, Signal::Term).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "pgid {pgid}");
        }
    }

    #[test]
    fn exit_code_is_split_from_signal() {
        let status = Command::new("sh").args(["-c", "exit 3"]).status().unwrap();
        assert_eq!(wait_status_parts(status), (Some(3), None));
    }

    #[test]
    fn random_bytes_differ() {
        let a = random_bytes();
        let b = random_bytes();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
    }

    #[test]
    fn nofile_limit_is_at_least_what_it_was() {
        let before = rustix::process::getrlimit(Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let after = raise_nofile_limit().unwrap();
        assert!(after >= before);
        let now = rustix::process::getrlimit(Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        assert_eq!(now, after);
    }
}
