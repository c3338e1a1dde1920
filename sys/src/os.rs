//! Small Unix helpers both runtimes need: building a job's `Command` (own process
//! group, cleared environment, stdin from `/dev/null`), signalling a whole process
//! group, identifying a group in `/proc` and ending one a crashed server left
//! behind, splitting an exit status, OS randomness and the open-files limit.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use rustix::process::{Pid, Resource, Rlimit};
use spout_core::job::ProcessGroup;

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
    if pgid == own_group()? {
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
    let mut cmd = job_environment(Command::new(program), cwd, env);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok(cmd)
}

/// Gives `cmd` a job's environment (cleared, then `PATH`, then `env`) and its
/// working directory: what every job's process gets, on pipes or on a terminal.
pub(crate) fn job_environment(
    mut cmd: Command,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Command {
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    cmd.env_clear().env("PATH", path).envs(env);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd
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

/// The fields of `/proc/PID/stat` that identify a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), …
    state: u8,
    /// Field 5: the process group.
    pgrp: u32,
    /// Field 6: the session.
    session: u32,
    /// Field 22: the start time in clock ticks after boot.
    start_ticks: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: *field(3)?.as_bytes().first()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// The server's own process group, read from `/proc/self/stat`. Not `getpgrp(2)`:
/// where the group's leader lives outside our PID namespace (a container started
/// by a CI runner, for one) the kernel reports 0, which `rustix` cannot hold in a
/// `Pid` (a debug assertion; a zero `NonZero` in release).
fn own_group() -> io::Result<u32> {
    Ok(read_stat(std::process::id())?.pgrp)
}

fn read_stat(pid: u32) -> io::Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| with_context(e, &path))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format {text:?}"),
        )
    })
}

/// The id of the current boot (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> io::Result<String> {
    let path = "/proc/sys/kernel/random/boot_id";
    let text = std::fs::read_to_string(path).map_err(|e| with_context(e, path))?;
    Ok(text.trim().to_owned())
}

/// The OS identity of the process group that `pid` leads, read from `/proc` (a job's
/// child leads its own group: see [`job_command`]). Call it right after the spawn,
/// before the child can be reaped, so the pid is surely still the child's.
///
/// # Errors
///
/// The OS error of reading `/proc` (not Linux, `/proc` not mounted, the process
/// already reaped), with the path.
pub fn process_group(pid: u32) -> io::Result<ProcessGroup> {
    let stat = read_stat(pid)?;
    Ok(ProcessGroup {
        pgid: pid,
        start_ticks: stat.start_ticks,
        session: stat.session,
        boot_id: boot_id()?,
    })
}

/// What [`end_orphaned_group`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Orphan {
    /// The group was still the recorded one: `SIGKILL` was sent to it. `leader`
    /// says whether its leader was still there, `members` how many live processes
    /// were in it.
    Killed {
        /// The group's leader (the job's child) was among them.
        leader: bool,
        /// Live (not zombie) processes in the group before the signal.
        members: usize,
    },
    /// No live process is in the group any more: nothing to do.
    Gone,
    /// Processes hold the group's number but are not provably ours: left alone.
    /// The text says why.
    NotOurs(String),
}

/// Ends the process group a crashed server left running, if the OS still knows it
/// as the group `recorded` describes; never signals a group that merely reuses the
/// number.
///
/// Why the checks are enough (Linux, and POSIX's rule that a process group's id is
/// not reused as a pid while the group has members):
///
/// - Another boot (`boot_id` differs): nothing of the group can be left. Nothing is
///   signalled.
/// - The leader's pid is alive: it is our leader exactly when its start time (field
///   22 of `/proc/PID/stat`, ticks after boot) is the recorded one; then the number
///   is still held by our leader, so no other group can have it and the group is
///   killed. Another start time means the pid was reused: left alone.
/// - The leader is gone (it exited, was reaped by init) but processes remain in the
///   group: grandchildren the job forked, which a crash of the server leaves to
///   run. The number was not reused while they lived, but it could have been if
///   the whole group died and a new process took the number and made its own group
///   before leaving members in it. Such a later group's members are, all of them,
///   in the session of the process that made it, whereas ours are in the session
///   the leader was started in (the server's, recorded) and started no earlier
///   than it. The group is killed only when every live member passes both checks.
///   What remains possible: the number wraps around between the crash and the
///   restart and a new process *in the old server's session* makes a group with
///   it. docs/runtime.md ("Known limit") says so.
///
/// Between the check and the `kill` a few microseconds pass; the group's number
/// cannot be handed out again that fast unless every pid in `pid_max` is used in
/// that time.
///
/// # Errors
///
/// The OS error of reading `/proc` (the check could not be made, so nothing was
/// signalled) or of the signal.
pub fn end_orphaned_group(recorded: &ProcessGroup) -> io::Result<Orphan> {
    if boot_id()? != recorded.boot_id {
        return Ok(Orphan::NotOurs(
            "it was started before the last reboot".into(),
        ));
    }
    let pgid = recorded.pgid;
    let leader = match read_stat(pgid) {
        Ok(stat) if stat.start_ticks != recorded.start_ticks => {
            return Ok(Orphan::NotOurs(format!(
                "pid {pgid} is another process now (started at tick {}, the job's at {})",
                stat.start_ticks, recorded.start_ticks
            )));
        }
        Ok(stat) => stat.state != b'Z',
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let members = group_members(pgid)?;
    if !leader {
        if members.is_empty() {
            return Ok(Orphan::Gone);
        }
        if let Some((pid, _)) = members.iter().find(|(_, stat)| {
            stat.session != recorded.session || stat.start_ticks < recorded.start_ticks
        }) {
            return Ok(Orphan::NotOurs(format!(
                "its leader is gone and member {pid} is not the job's (another session, or older)"
            )));
        }
    }
    signal_group(pgid, Signal::Kill)?;
    Ok(Orphan::Killed {
        leader,
        members: members.len(),
    })
}

/// The live (not zombie) processes whose group is `pgid`, with their stat.
fn group_members(pgid: u32) -> io::Result<Vec<(u32, Stat)>> {
    let entries = std::fs::read_dir("/proc").map_err(|e| with_context(e, "/proc"))?;
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may exit while the list is read: skip it.
        if let Ok(stat) = read_stat(pid) {
            if stat.pgrp == pgid && stat.state != b'Z' {
                members.push((pid, stat));
            }
        }
    }
    Ok(members)
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
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (a) b (c) S 1 4242 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 2000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                pgrp: 4242,
                session: 77,
                start_ticks: 987_654
            })
        );
        assert_eq!(parse_stat("4242 (a) S 1 2"), None, "too short");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    /// Spawns `script` as a job would be, in its own group.
    fn spawn_group(script: &str) -> std::process::Child {
        let mut cmd = job_command(&strings(&["sh", "-c", script]), None, &BTreeMap::new()).unwrap();
        cmd.stderr(Stdio::null());
        cmd.spawn().unwrap()
    }

    fn read_line(child: &mut std::process::Child) -> String {
        let mut line = String::new();
        let stdout = child.stdout.as_mut().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        line
    }

    #[test]
    fn a_recorded_group_with_its_leader_is_killed() {
        let mut child = spawn_group("exec sleep 30");
        let group = process_group(child.id()).unwrap();
        assert_eq!(group.pgid, child.id());
        // Our session, from /proc like the group's (getsid(2) says 0 when the
        // session's leader is outside our PID namespace, as under some CI runners).
        assert_eq!(
            group.session,
            read_stat(std::process::id()).unwrap().session
        );
        let outcome = end_orphaned_group(&group).unwrap();
        assert_eq!(
            outcome,
            Orphan::Killed {
                leader: true,
                members: 1
            }
        );
        let (_, signal) = wait_status_parts(child.wait().unwrap());
        assert_eq!(signal, Some(9));
        // Reaped now: nothing left to do.
        assert_eq!(end_orphaned_group(&group).unwrap(), Orphan::Gone);
    }

    #[test]
    fn a_reused_pid_or_another_boot_is_never_signalled() {
        let mut child = spawn_group("exec sleep 30");
        let group = process_group(child.id()).unwrap();
        let reused = ProcessGroup {
            start_ticks: group.start_ticks - 1,
            ..group.clone()
        };
        assert!(matches!(
            end_orphaned_group(&reused).unwrap(),
            Orphan::NotOurs(_)
        ));
        let rebooted = ProcessGroup {
            boot_id: "another-boot".into(),
            ..group.clone()
        };
        assert!(matches!(
            end_orphaned_group(&rebooted).unwrap(),
            Orphan::NotOurs(_)
        ));
        assert!(pid_alive(child.id()), "left alone");
        signal_group(child.id(), Signal::Kill).unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn grandchildren_of_a_gone_leader_are_killed_only_when_they_are_the_jobs() {
        // The leader exits at once; its grandchild lives on in the group.
        let mut child = spawn_group("sleep 30 & echo $!");
        let group = process_group(child.id()).unwrap();
        let grandchild: u32 = read_line(&mut child).trim().parse().unwrap();
        child.wait().unwrap();
        assert!(pid_alive(grandchild));
        // From another session (not the job's): left alone.
        let elsewhere = ProcessGroup {
            session: group.session + 1,
            ..group.clone()
        };
        assert!(matches!(
            end_orphaned_group(&elsewhere).unwrap(),
            Orphan::NotOurs(_)
        ));
        assert!(pid_alive(grandchild));
        // Started after the members: they cannot be its.
        let later = ProcessGroup {
            start_ticks: u64::MAX,
            ..group.clone()
        };
        assert!(matches!(
            end_orphaned_group(&later).unwrap(),
            Orphan::NotOurs(_)
        ));
        assert_eq!(
            end_orphaned_group(&group).unwrap(),
            Orphan::Killed {
                leader: false,
                members: 1
            }
        );
        assert!(wait_gone(grandchild), "grandchild {grandchild} survived");
    }

    #[test]
    fn signal_group_refuses_dangerous_groups() {
        let own = own_group().unwrap();
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
