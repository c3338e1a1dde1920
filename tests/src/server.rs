//! One server process for one case: its temp dir (data dir and config), its output
//! drained into buffers that a failing case prints, and its stop, crash and restart.

use crate::bin::{binary_path, Runtime};
use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Server::terminate`] waits after SIGTERM before it calls it a hang.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(15);
/// What the server prints on stderr once it accepts connections.
const LISTENING: &str = "listening on http://";

/// A running server binary on a loopback port, with its own temp dir.
///
/// The command line is `<binary> serve --listen 127.0.0.1:0 --data-dir <tmp>/data
/// [--config <tmp>/spout.json] <extra args>`. stdout and stderr are drained by threads
/// into buffers (so the server never blocks on a full pipe); [`Server::stderr_text`]
/// reads them, and a case that panics prints them when the `Server` drops.
///
/// The binary runs in a session of its own (through `setsid`, when it is installed),
/// so that `Drop` can also kill job processes a [`Server::kill9`] left behind: jobs get
/// their own process groups but stay in the server's session. `Drop` kills and reaps
/// the server, kills those leftovers and removes the temp dir.
pub struct Server {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    output: Arc<Output>,
    /// Every server pid so far: each is a session id whose processes `Drop` kills.
    sessions: Vec<u32>,
}

/// The server's output, shared with the drain threads.
#[derive(Default)]
struct Output {
    bufs: Mutex<Bufs>,
    grew: Condvar,
}

#[derive(Default)]
struct Bufs {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, Bufs> {
        self.bufs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Server {
    /// Starts `runtime`'s binary with `extra_args` appended (e.g. `["--memory"]`, or
    /// `["--", "sh", "-c", "echo hi"]` for an ad-hoc command; `--` and what follows
    /// must come last).
    ///
    /// # Panics
    /// When the binary cannot be built or started, or prints no listening line within
    /// 20 s; the message holds its stderr.
    pub fn start(runtime: Runtime, extra_args: &[&str]) -> Server {
        Server::launch(runtime.to_string(), &binary_path(runtime), None, extra_args)
    }

    /// Starts `runtime`'s binary with `config_json` written to `<tmp>/spout.json` and
    /// passed as `--config`.
    ///
    /// # Panics
    /// As [`Server::start`].
    pub fn start_with_config(runtime: Runtime, config_json: &str, extra_args: &[&str]) -> Server {
        Server::launch(
            runtime.to_string(),
            &binary_path(runtime),
            Some(config_json),
            extra_args,
        )
    }

    /// Starts any program with the server's command line: for the harness's own
    /// tests, and for trying a binary that is not in the target dir.
    ///
    /// # Panics
    /// As [`Server::start`].
    pub fn start_program(program: &Path, config_json: Option<&str>, extra_args: &[&str]) -> Server {
        Server::launch(
            program.display().to_string(),
            program,
            config_json,
            extra_args,
        )
    }

    fn launch(label: String, program: &Path, config: Option<&str>, extra: &[&str]) -> Server {
        let dir = fresh_temp_dir("test");
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.join("data").into_os_string(),
        ];
        if let Some(json) = config {
            let path = dir.join("spout.json");
            if let Err(e) = std::fs::write(&path, json) {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("writing {}: {e}", path.display());
            }
            args.push("--config".into());
            args.push(path.into_os_string());
        }
        args.extend(extra.iter().map(OsString::from));
        let mut server = Server {
            label,
            program: program.to_path_buf(),
            args,
            dir,
            child: None,
            // Replaced by the listening line before anyone can read it.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output: Arc::new(Output::default()),
            sessions: Vec::new(),
        };
        server.spawn();
        server
    }

    /// Starts the process and waits for its listening line.
    fn spawn(&mut self) {
        let mut command = match setsid() {
            Some(setsid) => {
                let mut command = Command::new(setsid);
                command.arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        command
            .args(&self.args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("starting {} {:?}: {e}", self.program.display(), self.args),
        };
        self.sessions.push(child.id());
        let from = {
            let mut bufs = self.output.lock();
            if !bufs.stderr.is_empty() {
                bufs.stderr
                    .extend_from_slice(b"---- harness: server restarted ----\n");
            }
            bufs.stderr.len()
        };
        // invariant: both were set to `Stdio::piped()` above.
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        drain(Arc::clone(&self.output), Pipe::Out(stdout));
        drain(Arc::clone(&self.output), Pipe::Err(stderr));
        self.child = Some(child);
        self.addr = self.wait_for_listening(from);
    }

    fn wait_for_listening(&mut self, from: usize) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut bufs = self.output.lock();
        loop {
            if let Some(addr) = listening_addr(&bufs.stderr[from..]) {
                return addr;
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            let now = Instant::now();
            if exited.is_some() || now >= deadline {
                drop(bufs);
                // Give the drain threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                let why = match exited {
                    Some(status) => format!("exited ({status}) before listening"),
                    None => format!("printed no {LISTENING:?} line within {START_TIMEOUT:?}"),
                };
                panic!("{} {}\n{}", self.label, why, self.output_text());
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            bufs = self
                .output
                .grew
                .wait_timeout(bufs, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The address from the latest listening line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The server process id (of the latest start).
    ///
    /// # Panics
    /// When the server has been stopped ([`Server::kill9`], [`Server::terminate`]).
    pub fn pid(&self) -> u32 {
        match &self.child {
            Some(child) => child.id(),
            None => panic!("{} is not running", self.label),
        }
    }

    /// The temp dir of this server: `data/` (the data dir) and `spout.json` live here;
    /// a case may put its own files (scripts) in it too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `--data-dir` the server was given.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Everything the server wrote to stderr so far (across restarts), lossy UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().stderr).into_owned()
    }

    /// Everything the server wrote to stdout so far, lossy UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().stdout).into_owned()
    }

    /// Waits until the server's stderr contains `needle`.
    ///
    /// # Panics
    /// When it does not within `timeout`; the message holds the stderr.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut bufs = self.output.lock();
        loop {
            if String::from_utf8_lossy(&bufs.stderr).contains(needle) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(bufs);
                panic!(
                    "{} stderr did not contain {needle:?} within {timeout:?}\n{}",
                    self.label,
                    self.output_text()
                );
            }
            bufs = self
                .output
                .grew
                .wait_timeout(bufs, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. Job processes
    /// it started keep running until this `Server` drops.
    ///
    /// # Panics
    /// When the server is not running.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("kill9: {} is not running", self.label);
        };
        // `Child::kill` is SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits for the server to exit.
    ///
    /// # Panics
    /// When the server is not running, or has not exited 15 s after SIGTERM (it is
    /// then killed); the message holds its stderr.
    pub fn terminate(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("terminate: {} is not running", self.label);
        };
        signal("TERM", &[child.id()]);
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM\n{}",
                        self.label,
                        self.output_text()
                    );
                }
            }
        }
    }

    /// Starts the server again with the same arguments and data dir; it gets a new
    /// port ([`Server::addr`] changes). A server still running is first stopped with
    /// [`Server::terminate`]; call [`Server::kill9`] first to restart after a crash.
    ///
    /// # Panics
    /// As [`Server::start`] and [`Server::terminate`].
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.spawn();
    }

    /// Both buffers, labelled, for failure messages.
    fn output_text(&self) -> String {
        let bufs = self.output.lock();
        format!(
            "---- {} stderr ----\n{}---- {} stdout ----\n{}---- end ----",
            self.label,
            String::from_utf8_lossy(&bufs.stderr),
            self.label,
            String::from_utf8_lossy(&bufs.stdout)
        )
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("program", &self.label)
            .field("addr", &self.addr)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_sessions(&self.sessions);
        if std::thread::panicking() {
            eprintln!("{}", self.output_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds `listening on http://ADDR` on a complete line.
fn listening_addr(stderr: &[u8]) -> Option<SocketAddr> {
    let text = String::from_utf8_lossy(stderr);
    let start = text.find(LISTENING)? + LISTENING.len();
    let rest = &text[start..];
    let line_end = rest.find('\n')?;
    let addr = rest[..line_end]
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()?;
    let addr: SocketAddr = addr.parse().ok()?;
    assert!(
        addr.ip().is_loopback(),
        "server listens on {addr}, not on loopback"
    );
    Some(addr)
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

/// Copies one pipe into the shared buffers until EOF, waking waiters on each read.
/// A [`Server`] never joins the thread: a job that inherited the pipe by mistake
/// could hold it open past the server, and a test must not hang on that. Only
/// [`run_to_exit`], whose process starts no jobs, joins it.
fn drain(output: Arc<Output>, mut pipe: Pipe) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            let read = match &mut pipe {
                Pipe::Out(p) => p.read(&mut chunk),
                Pipe::Err(p) => p.read(&mut chunk),
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut bufs = output.lock();
            match pipe {
                Pipe::Out(_) => bufs.stdout.extend_from_slice(&chunk[..n]),
                Pipe::Err(_) => bufs.stderr.extend_from_slice(&chunk[..n]),
            }
            drop(bufs);
            output.grew.notify_all();
        }
    })
}

/// What a server binary did when it was run to its end by [`run_to_exit`].
#[derive(Debug)]
pub struct Exited {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout, lossy UTF-8.
    pub stdout: String,
    /// Everything it wrote to stderr, lossy UTF-8.
    pub stderr: String,
}

/// Runs `runtime`'s binary with exactly `args` (no `serve`, `--listen` or
/// `--data-dir` added) in a temp dir of its own as working dir, and waits for it to
/// exit: for command lines the server must refuse at start.
///
/// # Panics
/// When the binary cannot be started, or has not exited within `timeout` (it is then
/// killed, and the message holds its output: a server that should have refused to
/// start may be listening).
pub fn run_to_exit(runtime: Runtime, args: &[&str], timeout: Duration) -> Exited {
    let program = binary_path(runtime);
    let dir = fresh_temp_dir("test");
    let output = Arc::new(Output::default());
    let mut child = match Command::new(&program)
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("starting {} {args:?}: {e}", program.display());
        }
    };
    // invariant: both were set to `Stdio::piped()` above.
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let drains = [
        drain(Arc::clone(&output), Pipe::Out(stdout)),
        drain(Arc::clone(&output), Pipe::Err(stderr)),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break None,
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the process is gone (it starts no jobs before refusing),
    // so the drains end; joining them makes the last words part of the answer.
    for handle in drains {
        let _ = handle.join();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bufs = output.lock();
    let exited = Exited {
        status: status.unwrap_or_else(|| ExitStatus::from_raw(9)),
        stdout: String::from_utf8_lossy(&bufs.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&bufs.stderr).into_owned(),
    };
    drop(bufs);
    assert!(
        status.is_some(),
        "{runtime} {args:?} did not exit within {timeout:?}\n---- stderr ----\n{}\n---- stdout ----\n{}",
        exited.stderr,
        exited.stdout
    );
    exited
}

/// A new empty dir under the system temp dir, named `spout-{prefix}-…`, unique
/// across processes and tests (mode from the umask: readable by other users, such
/// as nginx's workers).
pub(crate) fn fresh_temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "spout-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    // `create_dir`, not `create_dir_all`: an existing dir would be shared state.
    if let Err(e) = std::fs::create_dir(&dir) {
        panic!("creating {}: {e}", dir.display());
    }
    dir
}

/// The `setsid` program, if installed.
fn setsid() -> Option<&'static Path> {
    ["/usr/bin/setsid", "/bin/setsid"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
}

/// Sends `SIG<name>` to `pids` with kill(1): the harness has no libc binding.
pub(crate) fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// SIGKILLs every process whose session id is one of `sessions`.
fn kill_sessions(sessions: &[u32]) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    let pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| session_of(pid).is_some_and(|sid| sessions.contains(&sid)))
        .collect();
    signal("KILL", &pids);
}

/// The session id of `pid`, from `/proc/<pid>/stat`.
pub(crate) fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after the
    // last `)` are: state, ppid, pgrp, session.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_needs_a_whole_line() {
        assert_eq!(
            listening_addr(b"spout: listening on http://127.0.0.1:4"),
            None
        );
        assert_eq!(
            listening_addr(b"boot\nspout: listening on http://127.0.0.1:4321/ (smol)\n"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(
            listening_addr(b"listening on http://[::1]:80\n"),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn session_of_self_is_readable() {
        assert!(session_of(std::process::id()).is_some());
    }
}
