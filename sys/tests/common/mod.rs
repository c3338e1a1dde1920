//! The redis-server harness of the sys integration tests: one per test, on a unix
//! socket in a temporary directory, stopped by its PID when dropped. In CI (`CI`
//! set) a missing redis-server fails the test; elsewhere it is skipped with a SKIP
//! line.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spout_core::cluster::RedisUrl;
use spout_sys::redis_store::RedisStore;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A redis-server on a unix socket; killed by its PID when dropped.
pub struct Redis {
    child: Child,
    /// Its `redis+unix://` URL.
    pub url: RedisUrl,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a redis-server, or `None` (with a SKIP line) where it is not installed
/// outside CI.
pub fn redis() -> Option<Redis> {
    if !Path::new(REDIS_SERVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{REDIS_SERVER} is missing; install it: apt-get install -y redis-server"
        );
        eprintln!("SKIP: {REDIS_SERVER} is not installed (apt-get install -y redis-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("redis.sock");
    let child = Command::new(REDIS_SERVER)
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let url = RedisUrl::parse(&format!("redis+unix://{}", socket.display())).expect("url");
    let redis = Redis {
        child,
        url,
        _dir: dir,
    };
    // Wait for the socket (polling, not an assertion of speed).
    let deadline = Instant::now() + Duration::from_secs(10);
    while RedisStore::connect(&redis.url, Duration::from_secs(1)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(redis)
}
