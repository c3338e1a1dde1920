//! Jobs on a pseudo-terminal (`"pty": true` commands): opening the terminal pair,
//! starting the job's process as the leader of a new session whose controlling
//! terminal is the pair's slave side, and the hidden helper mode (`spout pty-exec`)
//! that does the part std's `Command` cannot do without `unsafe`.
//!
//! The start, step by step (docs/runtime.md, "PTY mode", says why):
//!
//! 1. [`open`] makes the pair (`posix_openpt`, `grantpt`, `unlockpt`, `ptsname`),
//!    sets its window size (`TIOCSWINSZ`) and puts its input side in the mode where
//!    every read gives end of file (non-canonical, `VMIN` = `VTIME` = 0).
//! 2. [`spawn`] starts *this same binary* (`/proc/self/exe`) as `pty-exec ARGV…` with
//!    the job's environment and `cwd`, stdin and stdout on the slave, stderr on a
//!    report socket.
//! 3. The helper ([`exec`]) keeps a close-on-exec copy of the report socket, puts
//!    the slave on stderr too, calls `setsid` (a new session and process group whose
//!    id is its pid) and `TIOCSCTTY` on stdin, then `exec`s the job's argv.
//! 4. The server reads the report to its end: nothing means the `exec` succeeded
//!    (the close-on-exec copy closed); anything else is why the job did not start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Winsize};
use spout_core::config::PtySize;

use crate::os::{job_environment, with_context};

/// The hidden subcommand of both binaries that runs [`exec`].
pub const HELPER_COMMAND: &str = "pty-exec";

/// The helper's exit code when it could not become the job's program (a shell's
/// "cannot execute").
const HELPER_FAILED: u8 = 127;

/// The most of a helper's failure report that is read.
const REPORT_BYTES: u64 = 4096;

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    /// The server's side: what the job writes to its terminal is read here.
    pub master: File,
    /// The job's side: its stdin, stdout, stderr and controlling terminal.
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal pair of `size`, its input in the mode where a read
/// gives end of file at once (nothing is ever typed into it).
///
/// Both ends are close-on-exec and opened with `O_NOCTTY`, so the server never
/// gets a controlling terminal from them.
///
/// # Errors
///
/// The OS error of the step that failed (no free pseudo-terminal, `/dev/pts` not
/// mounted, …), saying which.
pub fn open(size: PtySize) -> io::Result<Pty> {
    let step = |what: &'static str| move |e: rustix::io::Errno| with_context(e.into(), what);
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).map_err(step("cannot open a pseudo-terminal"))?;
    rustix::pty::grantpt(&master).map_err(step("grantpt"))?;
    rustix::pty::unlockpt(&master).map_err(step("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(step("ptsname"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| with_context(e.into(), &format!("cannot open {name:?}")))?;
    termios::tcsetwinsize(
        &slave,
        Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(step("cannot set the terminal's size"))?;
    // stdin "stays closed": no line is ever typed, and in canonical mode a read
    // would wait for one forever. Non-canonical with VMIN = VTIME = 0 makes every
    // read return 0 (end of file) at once. Output settings (OPOST, ONLCR) stay the
    // usual ones: `\n` goes out as `\r\n`, as on any terminal.
    let mut mode = termios::tcgetattr(&slave).map_err(step("tcgetattr"))?;
    mode.local_modes.remove(LocalModes::ICANON);
    mode.special_codes[SpecialCodeIndex::VMIN] = 0;
    mode.special_codes[SpecialCodeIndex::VTIME] = 0;
    termios::tcsetattr(&slave, OptionalActions::Now, &mode).map_err(step("tcsetattr"))?;
    Ok(Pty {
        master: File::from(master),
        slave,
    })
}

/// The helper's stdio, for the runtime to set on whichever `Command` it spawns
/// (async-process forgets the stdio of a converted std `Command`).
#[derive(Debug)]
pub struct JobStdio {
    /// The terminal.
    pub stdin: Stdio,
    /// The terminal.
    pub stdout: Stdio,
    /// The report socket, until the helper puts the terminal there.
    pub stderr: Stdio,
}

/// A job's process started on a pseudo-terminal by [`spawn`].
#[derive(Debug)]
pub struct Started<C> {
    /// The process: the helper, which became the job's program when `exec` is
    /// `Ok`. Its pid is the job's process group (and session) id.
    pub child: C,
    /// The terminal's master side, to read the job's output from; or why the
    /// job's program did not start (then `child` has exited or is about to: reap
    /// it).
    pub exec: io::Result<File>,
}

/// Starts `argv` on a new pseudo-terminal of `size`, by the rules of
/// [`os::job_command`](crate::os::job_command) except the stdio (the terminal) and
/// the process group (the job leads its own session, hence its own group, whose id
/// is its pid).
///
/// `start` spawns the helper from the `Command` and [`JobStdio`] it is given and
/// must drop both before it returns (taking them by value and returning only the
/// child does that): until the server's copies of the report socket are closed,
/// reading the report would never end.
///
/// Blocks until the job's program was executed or failed to be (the helper's
/// start-up: milliseconds); run it where blocking is allowed.
///
/// # Errors
///
/// `InvalidInput` for an empty `argv`; the OS error of opening the terminal or
/// the report socket; what `start` returned. A program that cannot be executed
/// (not found, not executable) is reported in [`Started::exec`].
pub fn spawn<C>(
    argv: &[String],
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
    size: PtySize,
    start: impl FnOnce(Command, JobStdio) -> io::Result<C>,
) -> io::Result<Started<C>> {
    let Some(program) = argv.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a job needs a program to run (argv is empty)",
        ));
    };
    let pty = open(size)?;
    // A socket pair rather than a pipe: std makes it close-on-exec atomically on
    // Rust 1.82 (`io::pipe` is newer), so no other job inherits its write end.
    let (mut report, report_tx) = UnixStream::pair()?;
    let mut cmd = job_environment(Command::new(helper_program()?), cwd, env);
    cmd.arg(HELPER_COMMAND).args(argv);
    let stdio = JobStdio {
        stdin: Stdio::from(pty.slave.try_clone()?),
        stdout: Stdio::from(pty.slave),
        stderr: Stdio::from(OwnedFd::from(report_tx)),
    };
    let child = start(cmd, stdio)?;
    let exec = read_report(&mut report, program).map(|()| pty.master);
    Ok(Started { child, exec })
}

/// This binary, for the helper: `/proc/self/exe` on Linux, which names the running
/// executable even when its file was replaced or removed since the server started
/// (an upgrade in place); elsewhere the path it was started from.
fn helper_program() -> io::Result<PathBuf> {
    let proc_self = Path::new("/proc/self/exe");
    if cfg!(any(target_os = "linux", target_os = "android")) && proc_self.exists() {
        return Ok(proc_self.to_path_buf());
    }
    std::env::current_exe().map_err(|e| with_context(e, "cannot find the spout executable"))
}

/// Reads the helper's report to its end: empty when the job's program runs.
fn read_report(report: impl Read, program: &str) -> io::Result<()> {
    let mut text = Vec::new();
    report.take(REPORT_BYTES).read_to_end(&mut text)?;
    if text.is_empty() {
        return Ok(());
    }
    Err(parse_report(&String::from_utf8_lossy(&text), program))
}

/// A report is `E<errno> <message>` from the helper's failed step, or anything
/// else the helper printed (a panic, a usage error): the error is that.
fn parse_report(text: &str, program: &str) -> io::Error {
    let coded = text
        .strip_prefix('E')
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(errno, message)| Some((errno.parse::<i32>().ok()?, message)));
    let (kind, message) = match coded {
        Some((errno, message)) => (io::Error::from_raw_os_error(errno).kind(), message),
        None => (io::ErrorKind::Other, text),
    };
    io::Error::new(
        kind,
        format!("cannot start {program:?}: {}", message.trim_end()),
    )
}

/// The helper mode (`spout pty-exec ARGV…`, `spout-blocking pty-exec ARGV…`): makes
/// this process the leader of a new session with its stdin (the terminal) as the
/// controlling terminal, puts the terminal on stderr, and becomes `argv`. Returns
/// only when that failed, after writing why to the report (its original stderr).
#[must_use]
pub fn exec(argv: &[String]) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("spout {HELPER_COMMAND}: the server starts this with a job's argv");
        return ExitCode::from(2);
    };
    // A close-on-exec copy of the report: a successful exec closes it (the server
    // reads the end: started), a failure is written to it.
    let report = match rustix::io::fcntl_dupfd_cloexec(io::stderr(), 3) {
        Ok(fd) => File::from(fd),
        Err(e) => {
            eprintln!("spout {HELPER_COMMAND}: cannot keep the report: {e}");
            return ExitCode::from(HELPER_FAILED);
        }
    };
    let (what, e) = become_job(program, args);
    let mut report = &report;
    let message = match what {
        "" => e.to_string(),
        what => format!("{what}: {e}"),
    };
    let _ = match e.raw_os_error() {
        Some(errno) => write!(report, "E{errno} {message}"),
        None => write!(report, "{message}"),
    };
    ExitCode::from(HELPER_FAILED)
}

/// Session, controlling terminal, stderr, exec: returns only when a step failed,
/// with what it was doing (empty for the `exec` itself) and the OS error.
fn become_job(program: &str, args: &[String]) -> (&'static str, io::Error) {
    if let Err(e) = rustix::process::setsid() {
        return ("setsid", e.into());
    }
    if let Err(e) = rustix::process::ioctl_tiocsctty(io::stdin().as_fd()) {
        return ("cannot make the terminal the controlling one", e.into());
    }
    if let Err(e) = rustix::stdio::dup2_stderr(io::stdin().as_fd()) {
        return ("cannot put the terminal on stderr", e.into());
    }
    ("", Command::new(program).args(args).exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(cols: u16, rows: u16) -> PtySize {
        PtySize { cols, rows }
    }

    #[test]
    fn open_sets_the_size_and_a_reading_end_that_gives_eof() {
        let pty = open(size(120, 40)).unwrap();
        let winsize = termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((winsize.ws_col, winsize.ws_row), (120, 40));
        assert!(termios::isatty(&pty.slave));
        // Nothing typed: a read on the job's side ends at once with 0 bytes.
        let mut slave = File::from(pty.slave);
        let mut buf = [0u8; 16];
        assert_eq!(slave.read(&mut buf).unwrap(), 0);
        assert_eq!(
            slave.read(&mut buf).unwrap(),
            0,
            "and again: not a one-off ^D"
        );
    }

    #[test]
    fn output_keeps_its_bytes_and_newline_becomes_crlf() {
        let pty = open(size(80, 24)).unwrap();
        let mut master = pty.master;
        let mut slave = File::from(pty.slave);
        slave.write_all(b"\x1b[31mred\x1b[0m\rbar\n").unwrap();
        drop(slave);
        let mut out = Vec::new();
        // With every slave closed, Linux answers EIO where a pipe gives EOF.
        let mut buf = [0u8; 256];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(out, b"\x1b[31mred\x1b[0m\rbar\r\n");
    }

    #[test]
    fn reports_become_errors_with_their_kind() {
        let e = parse_report("E2 No such file or directory (os error 2)", "nope");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "cannot start \"nope\": No such file or directory (os error 2)"
        );
        let e = parse_report("E13 Permission denied (os error 13)\n", "x");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = parse_report("thread 'main' panicked", "x");
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert!(e.to_string().ends_with("panicked"), "{e}");
        assert!(read_report(&b""[..], "x").is_ok());
    }

    #[test]
    fn an_empty_argv_is_refused_before_anything_starts() {
        let e = spawn(&[], None, &BTreeMap::new(), size(80, 24), |_, _| {
            panic!("nothing may be started")
        })
        .map(|_: Started<()>| ())
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_helper_without_argv_is_a_usage_error() {
        assert_eq!(exec(&[]), ExitCode::from(2));
    }
}
