//! A real `redis-server` (Debian package `redis-server`) for the cluster cases: started
//! per case on a unix socket in a fresh temp dir (`--port 0 --unixsocket PATH --save ""
//! --appendonly no`), stopped, paused (SIGSTOP) and resumed (SIGCONT) by its PID, and
//! restarted on the same socket; [`Redis::server`] starts a spout server of either
//! runtime on it (`--redis URL`). Assertions about what the servers stored talk RESP
//! over a plain `UnixStream` ([`Redis::command`]): the harness has no Redis client of
//! its own to hide the servers' bugs behind.

use crate::bin::Runtime;
use crate::client::{try_request, Response};
use crate::server::{fresh_temp_dir, signal, Server};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The redis-server binary of Debian's `redis-server` package.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long redis-server may take to answer `PING` after it was started, and how long
/// a server may take to report itself healthy on it.
const START_BOUND: Duration = Duration::from_secs(20);

/// How long one RESP command may take by default.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that redis-server is installed: `true` when it is. Otherwise, in CI (`CI`
/// set) it panics saying how to install it; elsewhere it prints `SKIP:` and returns
/// `false`, and the case returns early (see [`crate::nginx::require`]).
///
/// # Panics
/// In CI, when redis-server is missing.
pub fn require_redis() -> bool {
    crate::nginx::require(&[(REDIS_SERVER, "redis-server")])
}

/// A running redis-server on a unix socket in a temp dir of its own.
///
/// Nothing is persisted (`--save ""`, `--appendonly no`): a [`Redis::restart`] comes
/// back empty, as a Redis without persistence does after a crash. Its log goes to
/// `redis.log` in the dir and is printed when a case panics. `Drop` kills it by its
/// PID (SIGKILL works on a paused process too), reaps it and removes the dir.
pub struct Redis {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts a redis-server, or returns `None` (after [`require_redis`] printed why)
    /// when it is not installed outside CI.
    ///
    /// # Panics
    /// In CI when redis-server is missing; when it does not answer `PING` within 20 s
    /// (the message holds its log).
    pub fn start() -> Option<Redis> {
        if !require_redis() {
            return None;
        }
        let dir = fresh_temp_dir("redis");
        let socket = dir.join("redis.sock");
        let mut redis = Redis {
            dir,
            socket,
            child: None,
        };
        // sun_path holds 108 bytes with its NUL: a long TMPDIR would make redis-server
        // fail with a message less clear than this one.
        assert!(
            redis.socket.as_os_str().len() < 100,
            "the socket path {} is too long for a unix socket; set TMPDIR shorter",
            redis.socket.display()
        );
        redis.spawn();
        Some(redis)
    }

    /// Starts the process on the socket and waits until it answers `PING`.
    fn spawn(&mut self) {
        let log = match File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
        {
            Ok(file) => file,
            Err(e) => panic!("opening {}: {e}", self.dir.join("redis.log").display()),
        };
        let log_err = match log.try_clone() {
            Ok(file) => file,
            Err(e) => panic!("cloning the redis log handle: {e}"),
        };
        let child = Command::new(REDIS_SERVER)
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args(["--unixsocketperm", "700"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("starting {REDIS_SERVER}: {e}"),
        }
        let deadline = Instant::now() + START_BOUND;
        loop {
            if let Ok(Reply::Simple(pong)) = self.command_with_timeout(&["PING"], COMMAND_TIMEOUT) {
                if pong == "PONG" {
                    return;
                }
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "redis-server on {} did not answer PING ({}):\n{}",
                    self.socket.display(),
                    exited.map_or("no answer within 20 s".to_string(), |s| format!(
                        "exited: {s}"
                    )),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The URL servers are given: `redis+unix://` and the socket's absolute path
    /// (so three slashes: `redis+unix:///tmp/…/redis.sock`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The unix socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir (socket, log); a case may keep files of its own here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// redis-server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// The process id of the running redis-server.
    ///
    /// # Panics
    /// When it has been stopped.
    pub fn pid(&self) -> u32 {
        match &self.child {
            Some(child) => child.id(),
            None => panic!("redis-server on {} is not running", self.socket.display()),
        }
    }

    /// Whether a redis-server process is running (or paused) on the socket.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills redis-server by its PID (SIGKILL: everything it held is gone, as in a
    /// crash) and reaps it. The socket file may stay; [`Redis::restart`] binds it
    /// again.
    ///
    /// # Panics
    /// When it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!(
                "stop: redis-server on {} is not running",
                self.socket.display()
            );
        };
        // `Child::kill` is SIGKILL to this child's PID only.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes redis-server with SIGSTOP: connections stay open and nothing answers,
    /// as a Redis stuck in a long fork or a network partition looks to clients.
    pub fn pause(&self) {
        signal("STOP", &[self.pid()]);
    }

    /// Lets a paused redis-server run again (SIGCONT).
    pub fn resume(&self) {
        signal("CONT", &[self.pid()]);
    }

    /// Stops redis-server (if running) and starts a new, empty one on the same socket,
    /// waiting until it answers `PING`. [`Redis::url`] does not change.
    ///
    /// # Panics
    /// As [`Redis::start`].
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Sends one command (each argument a bulk string) on a new connection and reads
    /// its reply, within 10 s.
    ///
    /// # Errors
    /// Connection, timeout and protocol errors; a Redis error reply is
    /// `Ok(Reply::Error(..))`.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        self.command_with_timeout(args, COMMAND_TIMEOUT)
    }

    /// [`Redis::command`] with its own read and write timeout.
    ///
    /// # Errors
    /// As [`Redis::command`].
    pub fn command_with_timeout(&self, args: &[&str], timeout: Duration) -> io::Result<Reply> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        (&stream).write_all(&encode(args))?;
        read_reply(&mut BufReader::new(&stream))
    }

    /// [`Redis::command`] expecting an integer reply (`EXISTS`, `XLEN`, `ZCARD`, …).
    ///
    /// # Panics
    /// On any error or another kind of reply.
    pub fn int(&self, args: &[&str]) -> i64 {
        match self.command(args) {
            Ok(Reply::Int(n)) => n,
            other => panic!("redis {args:?}: expected an integer, got {other:?}"),
        }
    }

    /// Starts a spout server of `runtime` on this Redis: `config_json` as its config
    /// file, `--redis` [`Redis::url`] and `extra_args` on the command line; then waits
    /// until its `/healthz` answers `200` (connected to Redis).
    ///
    /// # Panics
    /// As [`Server::start_with_config`]; when `/healthz` is not `200` within 20 s.
    pub fn server(&self, runtime: Runtime, config_json: &str, extra_args: &[&str]) -> Server {
        let url = self.url();
        let mut args = vec!["--redis", url.as_str()];
        args.extend_from_slice(extra_args);
        let server = Server::start_with_config(runtime, config_json, &args);
        wait_for_health(&server, 200, START_BOUND);
        server
    }
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("socket", &self.socket)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- redis-server log ({}) ----\n{}---- end ----",
                self.socket.display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `GET /healthz` on `server` until it answers `status`, and returns that
/// answer.
///
/// # Panics
/// When it does not within `bound`; the message shows the last answer.
pub fn wait_for_health(server: &Server, status: u16, bound: Duration) -> Response {
    let deadline = Instant::now() + bound;
    loop {
        let last = try_request(server.addr(), "GET", "/healthz", &[], b"");
        if let Ok(response) = &last {
            if response.status == status {
                return response.clone();
            }
        }
        if Instant::now() >= deadline {
            let last = match last {
                Ok(r) => format!("{} {}", r.status, r.text()),
                Err(e) => e.to_string(),
            };
            panic!("{server:?}: /healthz did not answer {status} within {bound:?}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Adds (or replaces) top-level fields of a config file: `config_with(base, &json!({
/// "redis_max_events": 50 }))`.
///
/// # Panics
/// When `base` is not a JSON object or `fields` is not an object.
pub fn config_with(base: &str, fields: &serde_json::Value) -> String {
    let mut config: serde_json::Value = match serde_json::from_str(base) {
        Ok(value) => value,
        Err(e) => panic!("config is not JSON ({e}): {base}"),
    };
    let (Some(config_map), Some(fields)) = (config.as_object_mut(), fields.as_object()) else {
        panic!("config_with needs two JSON objects: {base} / {fields}");
    };
    for (name, value) in fields {
        config_map.insert(name.clone(), value.clone());
    }
    config.to_string()
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-message`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n` bytes, or `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The items of an array reply (empty for a nil array).
    ///
    /// # Panics
    /// When it is not an array.
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(items) => items.as_deref().unwrap_or_default(),
            other => panic!("expected a RESP array, got {other:?}"),
        }
    }

    /// A bulk or simple string as text (lossy); `None` for nil.
    ///
    /// # Panics
    /// On any other reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(bytes) => bytes
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            Reply::Simple(text) => Some(text.clone()),
            other => panic!("expected a RESP string, got {other:?}"),
        }
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one RESP2 reply.
fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(bad(format!(
            "RESP line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    };
    let (kind, rest) = body
        .split_first()
        .ok_or_else(|| bad("empty RESP line".into()))?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    let number = || -> io::Result<i64> {
        rest.parse()
            .map_err(|_| bad(format!("bad RESP length {rest:?}")))
    };
    match kind {
        b'+' => Ok(Reply::Simple(rest)),
        b'-' => Ok(Reply::Error(rest)),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            if !bytes.ends_with(b"\r\n") {
                return Err(bad("bulk string without CRLF".into()));
            }
            bytes.truncate(len);
            Ok(Reply::Bulk(Some(bytes)))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(bad(format!("unknown RESP type byte {:?}", *other as char))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["XLEN", "spout:{a}:events"]),
            b"*2\r\n$4\r\nXLEN\r\n$16\r\nspout:{a}:events\r\n"
        );
    }

    #[test]
    fn replies_parse() {
        let parse = |bytes: &[u8]| read_reply(&mut &bytes[..]).unwrap();
        assert_eq!(parse(b"+PONG\r\n"), Reply::Simple("PONG".into()));
        assert_eq!(parse(b"-ERR no\r\n"), Reply::Error("ERR no".into()));
        assert_eq!(parse(b":42\r\n"), Reply::Int(42));
        assert_eq!(parse(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(parse(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n"),
            Reply::Bulk(Some(b"a\r\nbc".to_vec()))
        );
        assert_eq!(
            parse(b"*2\r\n*2\r\n$3\r\n0-1\r\n*0\r\n:7\r\n"),
            Reply::Array(Some(vec![
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"0-1".to_vec())),
                    Reply::Array(Some(vec![]))
                ])),
                Reply::Int(7)
            ]))
        );
        assert!(read_reply(&mut &b"+PONG\n"[..]).is_err());
        assert!(read_reply(&mut &b"$3\r\nab"[..]).is_err());
        assert!(read_reply(&mut &b"?x\r\n"[..]).is_err());
    }

    #[test]
    fn config_fields_are_added_or_replaced() {
        let merged = config_with(
            r#"{"commands": {}, "fsync": true}"#,
            &serde_json::json!({ "fsync": false, "redis_max_events": 5 }),
        );
        let value: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "commands": {}, "fsync": false, "redis_max_events": 5 })
        );
    }
}
