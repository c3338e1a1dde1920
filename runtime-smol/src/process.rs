//! Starting a job's process on async-process, by the rules in
//! `spout_sys::os::job_command` (own process group, cleared environment,
//! stdin from `/dev/null`) or on a pseudo-terminal (`spout_sys::pty::spawn`), and
//! handing its output and its exit status to the driver separately.
//!
//! Why separately: a grandchild that inherited the pipes keeps them open after the
//! child exits, so pipe EOF is not the end of the job. The job's `exit` comes from
//! [`Waiter::wait`]; the driver races it against reading the pipes.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::Stdio;

use async_process::Child;
use futures_lite::{AsyncRead, AsyncReadExt};
use smol::Async;
use spout_core::config::PtySize;
use spout_sys::os::{self, Signal};
use spout_sys::pty;

/// One of a job's outputs: a pipe, the terminal's master side, or nothing (the
/// stderr of a job on a terminal, which writes its stderr to the terminal).
pub type Output = Box<dyn AsyncRead + Send + Unpin>;

/// A job's running process: its pid (also its process group id), its two outputs,
/// and the handle that waits for its exit.
pub struct Spawned {
    /// The child's pid, which is also the id of the job's process group.
    #[cfg_attr(not(test), allow(dead_code))] // the server takes it from the Waiter
    pub pid: u32,
    /// The child's stdout (on a terminal: the terminal).
    pub stdout: Output,
    /// The child's stderr (on a terminal: empty).
    pub stderr: Output,
    waiter: Waiter,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Starts `argv` (never through a shell) in its own process group, with only `PATH`
/// and `env` in its environment, stdin from `/dev/null`, and stdout/stderr piped;
/// with `pty`, on a new pseudo-terminal of that size instead (see
/// `spout_sys::pty`), as the leader of its own session and process group.
///
/// With `pty` this blocks until the program was executed (the helper's start-up,
/// milliseconds): call it off the executor.
///
/// # Errors
///
/// `InvalidInput` for an empty `argv`; otherwise the OS error of starting it (no
/// such program, not executable, bad `cwd`), prefixed with the program's name.
pub fn spawn(
    argv: &[String],
    cwd: Option<&str>,
    env: &BTreeMap<String, String>,
    pty: Option<PtySize>,
) -> io::Result<Spawned> {
    let program = argv.first().map_or("", String::as_str);
    let started = |e: io::Error| io::Error::new(e.kind(), format!("cannot start {program:?}: {e}"));
    if let Some(size) = pty {
        let pty::Started { child, exec } =
            pty::spawn(argv, cwd.map(Path::new), env, size, |std_cmd, stdio| {
                // As below: the conversion forgets stdio, so it is set here.
                let mut cmd = async_process::Command::from(std_cmd);
                cmd.stdin(stdio.stdin)
                    .stdout(stdio.stdout)
                    .stderr(stdio.stderr);
                cmd.spawn()
            })
            .map_err(started)?;
        // A failed helper is reaped by async-process when `child` drops.
        let master = Async::new(exec?)?;
        let pid = child.id();
        return Ok(Spawned {
            pid,
            stdout: Box::new(master),
            stderr: Box::new(futures_lite::io::empty()),
            waiter: Waiter {
                pid,
                child,
                reaped: false,
            },
        });
    }
    let std_cmd = os::job_command(argv, cwd.map(Path::new), env)?;
    // async-process has no process-group option, so the std Command carries it; the
    // conversion forgets the std Command's stdio (it would inherit the server's), so
    // it is set again here.
    let mut cmd = async_process::Command::from(std_cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(started)?;
    let pid = child.id();
    // invariant: both were configured as piped just above, and are taken only here.
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok(Spawned {
        pid,
        stdout: Box::new(stdout),
        stderr: Box::new(stderr),
        waiter: Waiter {
            pid,
            child,
            reaped: false,
        },
    })
}

impl Spawned {
    /// Waits for the child (not its pipes) to exit: `(code, signal)`.
    ///
    /// # Errors
    ///
    /// The OS error of waiting.
    #[cfg_attr(not(test), allow(dead_code))] // the server splits with into_parts
    pub async fn wait(&mut self) -> io::Result<(Option<i32>, Option<i32>)> {
        self.waiter.wait().await
    }

    /// Splits the process into its pipes and its waiter, so that each can move to
    /// its own task.
    #[must_use]
    pub fn into_parts(self) -> (Output, Output, Waiter) {
        (self.stdout, self.stderr, self.waiter)
    }
}

/// Waits for a job's child to exit.
///
/// Dropping a `Waiter` before the child was reaped sends `SIGKILL` to the job's
/// whole process group: a job whose driver went away (a panic, a cancelled task)
/// must not leave processes behind. After [`Waiter::wait`] returned, dropping it
/// signals nothing; ending grandchildren that outlive the child is the driver's call,
/// through [`os::signal_group`].
#[derive(Debug)]
pub struct Waiter {
    pid: u32,
    child: Child,
    reaped: bool,
}

impl Waiter {
    /// The child's pid, which is also its process group id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it: `(code, signal)`, one of them
    /// `Some`. Cancel-safe: dropping the future before it completes loses nothing.
    ///
    /// # Errors
    ///
    /// The OS error of waiting.
    #[cfg_attr(not(test), allow(dead_code))] // the server splits with into_parts
    pub async fn wait(&mut self) -> io::Result<(Option<i32>, Option<i32>)> {
        let status = self.child.status().await?;
        self.reaped = true;
        Ok(os::wait_status_parts(status))
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // Reaping here would free the pid for reuse; only a child still running
        // (pid still ours) is safe to signal by number.
        if let Ok(None) = self.child.try_status() {
            let _ = os::signal_group(self.pid, Signal::Kill);
        }
    }
}

/// Reads whatever is available from `pipe` into `buf` (at least one byte, or 0 at
/// end of file), as one call the driver can race against the waiter and timers.
///
/// # Errors
///
/// The OS error of reading.
pub async fn read_some<R: AsyncRead + Unpin>(pipe: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match pipe.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn read_all<R: AsyncRead + Unpin>(mut pipe: R) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = read_some(&mut pipe, &mut buf).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Runs to the end; returns (stdout, stderr, code, signal).
    fn run(
        args: &[&str],
        cwd: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> (String, String, Option<i32>, Option<i32>) {
        smol::block_on(async {
            let (stdout, stderr, mut waiter) =
                spawn(&argv(args), cwd, env, None).unwrap().into_parts();
            // All three at once: a child that fills one pipe while the other is
            // unread would block forever.
            let out = smol::spawn(read_all(stdout));
            let err = smol::spawn(read_all(stderr));
            let (code, signal) = waiter.wait().await.unwrap();
            let out = String::from_utf8(out.await).unwrap();
            let err = String::from_utf8(err.await).unwrap();
            (out, err, code, signal)
        })
    }

    fn pid_alive(pid: u32) -> bool {
        // A zombie still has a /proc entry but runs no code: count it as gone.
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
    fn env_is_cleared_but_for_path_and_the_given_env() {
        let mut env = BTreeMap::new();
        env.insert("GREETING".to_owned(), "hi there".to_owned());
        let (out, _, code, _) = run(&["env"], None, &env);
        let mut names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort_unstable();
        assert_eq!(names, ["GREETING", "PATH"], "{out}");
        assert!(out.contains("GREETING=hi there\n"));
        assert_eq!(code, Some(0));
    }

    #[test]
    fn cwd_is_honoured() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let dir = dir.to_str().unwrap();
        let (out, _, _, _) = run(&["pwd"], Some(dir), &BTreeMap::new());
        assert_eq!(out.trim_end(), dir);
    }

    #[test]
    fn stdin_is_dev_null_even_when_the_server_has_another() {
        // The test runner's own stdin may already be /dev/null, which would hide an
        // inherited stdin; so run the probe in a copy of this test binary whose
        // stdin is a pipe.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "process::tests::stdin_probe", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .stdin(Stdio::piped())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("server stdin: pipe:"), "{text}");
        assert!(text.contains("job stdin: /dev/null\n"), "{text}");
    }

    #[test]
    #[ignore = "run by stdin_is_dev_null_even_when_the_server_has_another"]
    fn stdin_probe() {
        let server = std::fs::read_link("/proc/self/fd/0").unwrap();
        println!("server stdin: {}", server.display());
        let (out, _, code, _) = run(&["readlink", "/proc/self/fd/0"], None, &BTreeMap::new());
        assert_eq!(code, Some(0));
        println!("job stdin: {out}");
    }

    #[test]
    fn stdout_and_stderr_are_read_concurrently() {
        // 256 KiB on each, interleaved: more than a pipe buffer (64 KiB), so reading
        // one pipe to its end before the other would deadlock.
        let script = "i=0; while [ $i -lt 256 ]; do \
                      head -c 1024 /dev/zero | tr '\\0' o; \
                      head -c 1024 /dev/zero | tr '\\0' e >&2; \
                      i=$((i+1)); done";
        let (out, err, code, _) = run(&["sh", "-c", script], None, &BTreeMap::new());
        assert_eq!(code, Some(0));
        assert_eq!(out.len(), 256 * 1024);
        assert_eq!(err.len(), 256 * 1024);
        assert!(out.bytes().all(|b| b == b'o'));
        assert!(err.bytes().all(|b| b == b'e'));
    }

    #[test]
    fn death_by_signal_reports_the_signal() {
        let (_, _, code, signal) = run(&["sh", "-c", "kill -TERM $$"], None, &BTreeMap::new());
        assert_eq!((code, signal), (None, Some(15)));
    }

    #[test]
    fn exit_code_is_reported() {
        let (_, err, code, signal) = run(
            &["sh", "-c", "echo oops >&2; exit 7"],
            None,
            &BTreeMap::new(),
        );
        assert_eq!((code, signal), (Some(7), None));
        assert_eq!(err, "oops\n");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let err = spawn(&argv(&["/no/such/program"]), None, &BTreeMap::new(), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/no/such/program"), "{err}");
        let err = spawn(
            &argv(&["true"]),
            Some("/no/such/dir"),
            &BTreeMap::new(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = spawn(&[], None, &BTreeMap::new(), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Reads the grandchild's pid, which the script prints first.
    async fn first_line(stdout: &mut Output) -> u32 {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while read_some(stdout, &mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap().parse().unwrap()
    }

    #[test]
    fn the_group_signal_ends_child_and_grandchild() {
        smol::block_on(async {
            let script = "sleep 30 & echo $!; sleep 30";
            let mut job =
                spawn(&argv(&["sh", "-c", script]), None, &BTreeMap::new(), None).unwrap();
            let grandchild = first_line(&mut job.stdout).await;
            assert!(pid_alive(grandchild));
            os::signal_group(job.pid, Signal::Term).unwrap();
            assert_eq!(job.wait().await.unwrap(), (None, Some(15)));
            assert!(wait_gone(grandchild), "grandchild {grandchild} survived");
        });
    }

    #[test]
    fn exit_comes_from_the_child_while_a_grandchild_holds_the_pipe() {
        smol::block_on(async {
            // The child exits at once; its grandchild keeps stdout open for 30 s.
            let script = "sleep 30 & echo $!; exit 4";
            let (mut stdout, _stderr, mut waiter) =
                spawn(&argv(&["sh", "-c", script]), None, &BTreeMap::new(), None)
                    .unwrap()
                    .into_parts();
            let grandchild = first_line(&mut stdout).await;
            let pgid = waiter.pid();
            let started = Instant::now();
            assert_eq!(waiter.wait().await.unwrap(), (Some(4), None));
            assert!(started.elapsed() < Duration::from_secs(10));
            // The pipe is still open: a read does not see EOF until the group ends.
            let mut buf = [0u8; 16];
            let pending = futures_lite::future::or(
                async { Some(read_some(&mut stdout, &mut buf).await) },
                async {
                    smol::Timer::after(Duration::from_millis(100)).await;
                    None
                },
            )
            .await;
            assert!(pending.is_none(), "pipe closed early: {pending:?}");
            os::signal_group(pgid, Signal::Kill).unwrap();
            assert_eq!(read_some(&mut stdout, &mut buf).await.unwrap(), 0);
            assert!(wait_gone(grandchild));
        });
    }

    #[test]
    fn dropping_an_unreaped_waiter_kills_the_group() {
        smol::block_on(async {
            let script = "sleep 30 & echo $!; sleep 30";
            let mut job =
                spawn(&argv(&["sh", "-c", script]), None, &BTreeMap::new(), None).unwrap();
            let grandchild = first_line(&mut job.stdout).await;
            let child = job.pid;
            drop(job);
            assert!(wait_gone(child), "child {child} survived");
            assert!(wait_gone(grandchild), "grandchild {grandchild} survived");
        });
    }
}
