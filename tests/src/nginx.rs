//! nginx in front of a server: the shipped `deploy/nginx.conf`, with only its listen
//! addresses, upstream and certificate paths changed, run as a child process with its
//! own prefix, pid file, logs and temp paths, and stopped by PID when dropped.

use crate::server::signal;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary of Debian's `nginx-light` (and every other nginx package).
pub const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx may take to listen, and to stop after SIGTERM.
const BOUND: Duration = Duration::from_secs(20);

/// The strings of `deploy/nginx.conf` the test replaces, each with how often it must
/// occur: a changed file fails loudly instead of being tested half.
const UPSTREAM: (&str, usize) = ("server 127.0.0.1:8080;", 1);
const LISTEN_HTTP: (&str, usize) = ("listen 80;", 1);
const LISTEN_HTTPS: (&str, usize) = ("listen 443 ssl http2;", 1);
const CERT: (&str, usize) = ("/etc/ssl/certs/spout.example.org.pem", 1);
const KEY: (&str, usize) = ("/etc/ssl/private/spout.example.org.key", 1);

/// Checks that the external programs a case needs are installed.
///
/// Returns `true` when they all are. Otherwise, in CI (`CI` set) it panics with a
/// message saying what is missing and how to install it; elsewhere it prints that
/// message as `SKIP:` and returns `false`, and the case returns early.
///
/// # Panics
/// In CI, when a program is missing.
pub fn require(programs: &[(&str, &str)]) -> bool {
    let missing: Vec<String> = programs
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|(program, package)| format!("{program} (Debian package `{package}`)"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "this test needs {}: `apt-get install {}` (.ci/run installs them)",
        missing.join(", "),
        programs
            .iter()
            .map(|(_, package)| *package)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIP: {msg}");
    false
}

/// Whether `program` (a path, or a name looked up in `PATH`) is an existing file.
fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A running nginx with `deploy/nginx.conf` in front of one upstream.
///
/// Everything lives in a temp dir (`-p` prefix): the wrapping main config, the
/// rendered site config, a self-signed certificate for `127.0.0.1` made with the
/// `openssl` command, the pid file, `error.log`, `access.log` (one line per request:
/// `$connection $server_protocol $status "$request"`) and the temp paths. It runs with
/// `daemon off` in a session of its own; `Drop` sends SIGTERM to its PID, waits, then
/// SIGKILLs whatever of its process group is left and removes the dir.
pub struct Nginx {
    dir: PathBuf,
    child: Option<Child>,
    http: SocketAddr,
    https: SocketAddr,
}

impl Nginx {
    /// Starts nginx with the shipped config proxying to `upstream`, on two free
    /// loopback ports (HTTP/1.1 and TLS + HTTP/2).
    ///
    /// # Panics
    /// When the config cannot be rendered, the certificate cannot be made, or nginx does
    /// not listen within 20 s; the message holds nginx's error log.
    pub fn start(upstream: SocketAddr) -> Nginx {
        // A port picked by binding port 0 may be taken again before nginx binds it;
        // then nginx exits with "Address already in use" and the next pair is tried.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = crate::server::fresh_temp_dir("nginx");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            let (http, https) = (free_port(), free_port());
            let mut nginx = Nginx {
                dir: dir.clone(),
                child: None,
                http,
                https,
            };
            make_certificate(&cert, &key);
            let site = render_site(upstream, http, https, &cert, &key);
            write(&dir.join("spout.conf"), &site);
            write(&dir.join("nginx.conf"), &main_config(&dir));
            nginx.child = Some(spawn(&dir));
            if nginx.wait_listening() {
                return nginx;
            }
            last_log = nginx.error_log();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start; its error log:\n{last_log}");
    }

    /// The HTTP/1.1 server's address (`listen 80` in the shipped file).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The TLS + HTTP/2 server's address (`listen 443 ssl http2` in the shipped file).
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The temp dir (prefix) nginx runs in; a case may keep files of its own there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The access log so far, one request a line: `$connection $server_protocol $status
    /// "$request"`. nginx writes a line when a request ends.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Waits until both ports accept connections; `false` when nginx exited or the
    /// bound passed.
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("invariant: set until stop");
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let up = |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
            if up(self.http) && up(self.https) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM (nginx's fast shutdown) to the master's PID, a bounded wait, then
    /// SIGKILL to every process left in its process group.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        signal("TERM", &[pid]);
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master is the leader of its own group (setsid); workers stay in it.
        signal("KILL", &crate::procfs::group_members(pid));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error log ---\n{}--- nginx access log ---\n{}",
                self.error_log(),
                self.access_log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `deploy/nginx.conf` with the listen addresses, the upstream and the certificate
/// paths replaced, and nothing else.
///
/// # Panics
/// When the shipped file cannot be read or one of the replaced strings does not occur
/// exactly as often as expected.
pub fn render_site(
    upstream: SocketAddr,
    http: SocketAddr,
    https: SocketAddr,
    cert: &Path,
    key: &Path,
) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.conf");
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let replacements = [
        (UPSTREAM, format!("server {upstream};")),
        (LISTEN_HTTP, format!("listen {http};")),
        (LISTEN_HTTPS, format!("listen {https} ssl http2;")),
        (CERT, cert.display().to_string()),
        (KEY, key.display().to_string()),
    ];
    for ((from, count), to) in replacements {
        let found = text.matches(from).count();
        assert_eq!(
            found,
            count,
            "{} holds `{from}` {found} times, the test expects {count}: update tests/src/nginx.rs with it",
            path.display()
        );
        text = text.replace(from, &to);
    }
    text
}

/// The main config around the site file: what `/etc/nginx/nginx.conf` is on a server,
/// with every path under `dir` and an access log that names each connection.
///
/// It compresses text, event streams included, as many main configs do: nginx's gzip
/// holds output until its buffer fills unless the response is unbuffered, so a client
/// that sends `Accept-Encoding: gzip` sees events live only because spout's
/// `X-Accel-Buffering: no` reaches nginx. (nginx's proxy buffering alone does not hold
/// small writes back: it passes on what it has read.)
fn main_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20   log_format spout_test '$connection $server_protocol $status \"$request\"';\n\
         \x20   access_log {d}/access.log spout_test;\n\
         \x20   gzip on;\n\
         \x20   gzip_types text/plain text/event-stream;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/spout.conf;\n\
         }}\n"
    )
}

/// Starts nginx on the config in `dir`, in a session of its own.
fn spawn(dir: &Path) -> Child {
    let setsid = ["/usr/bin/setsid", "/bin/setsid"]
        .iter()
        .find(|p| Path::new(p).is_file());
    let mut command = match setsid {
        Some(setsid) => {
            let mut command = Command::new(setsid);
            command.arg(NGINX);
            command
        }
        None => Command::new(NGINX),
    };
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {NGINX}: {e}"))
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, valid for two days.
fn make_certificate(cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl could not make a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port that was free a moment ago.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("binding a loopback port: {e}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
