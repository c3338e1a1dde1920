//! The servers under test: each spout runtime (any binary that speaks spout's CLI and
//! HTTP API), the Express tutorial server, and nginx + nchan with a relay. Starting,
//! starting a job, the stream's path, the server's CPU and memory from `/proc`, and
//! stopping everything on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client;

/// Which server, and how to start it.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A spout runtime binary (`spout`, `spout-blocking`, …).
    Spout(PathBuf),
    /// `node bench/peers/express/server.js`.
    Express(PathBuf),
    /// nginx with the nchan module, and `bench/peers/nchan/relay.js` per job.
    Nchan(PathBuf),
}

/// A target as named on the command line.
#[derive(Clone, Debug)]
pub struct Target {
    /// The name in the report.
    pub name: String,
    /// How to run it.
    pub kind: Kind,
    /// Environment variables for the server (e.g. `SMOL_THREADS=1`).
    pub env: Vec<(String, String)>,
}

impl Target {
    /// Whether this is a spout runtime (it supports every scenario).
    #[must_use]
    pub fn is_spout(&self) -> bool {
        matches!(self.kind, Kind::Spout(_))
    }
}

/// Settings a scenario asks of the server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Seconds between heartbeats.
    pub heartbeat_s: u64,
    /// spout only: the Redis URL of cluster mode (`--redis`), none for a lone server.
    pub redis: Option<String>,
}

/// A running server; dropping it stops it.
pub struct Server {
    /// The target it runs.
    pub target: Target,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    gen: PathBuf,
    /// nginx: the master's pid file.
    nginx_pid: Option<PathBuf>,
}

/// A started job.
pub struct Job {
    /// The SSE stream's path.
    pub path: String,
    /// The job's id (the nchan channel for nchan).
    pub id: String,
    relay: Option<Child>,
}

impl Server {
    /// Starts `target` with a fresh working directory under `dir`.
    ///
    /// # Errors
    /// When the server does not start or does not say where it listens.
    pub fn start(target: &Target, dir: &Path, gen: &Path, s: &Settings) -> Result<Server, String> {
        let dir = dir.join(&target.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (mut child, nginx_pid, addr) = match &target.kind {
            Kind::Spout(bin) => {
                let config = serde_json::json!({
                    "commands": {"gen": {
                        "description": "bench generator",
                        "argv": [gen],
                        "args": {"max": 8, "max_len": 256, "allow_options": true},
                        "max_output_bytes": 8u64 << 30,
                        "timeout_s": 3600
                    }},
                    "limits": {"max_subscribers": 20000, "max_running_jobs": 16},
                    "sse": {"heartbeat_s": s.heartbeat_s}
                });
                let cfg = dir.join("spout.json");
                std::fs::write(&cfg, config.to_string()).map_err(|e| e.to_string())?;
                let mut cmd = Command::new(bin);
                cmd.envs(target.env.iter().map(|(k, v)| (k, v)))
                    .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                    .arg(&cfg)
                    .arg("--data-dir")
                    .arg(dir.join("data"));
                if let Some(url) = &s.redis {
                    cmd.arg("--redis").arg(url);
                }
                let mut child = cmd
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("{}: {e}", bin.display()))?;
                let addr = listening(&mut child)?;
                (child, None, addr)
            }
            Kind::Express(script) => {
                let mut child = Command::new("node")
                    .arg(script)
                    .env("GEN_BIN", gen)
                    .env("PORT", "0")
                    .env("HEARTBEAT_MS", (s.heartbeat_s * 1000).to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("node: {e}"))?;
                let addr = listening(&mut child)?;
                (child, None, addr)
            }
            Kind::Nchan(peer_dir) => {
                let port = free_port()?;
                let template = std::fs::read_to_string(peer_dir.join("nginx.conf"))
                    .map_err(|e| format!("nginx.conf: {e}"))?;
                let conf = template
                    .replace("@PREFIX@", &dir.display().to_string())
                    .replace("@PORT@", &port.to_string())
                    .replace("@PING_S@", &s.heartbeat_s.to_string());
                let conf_path = dir.join("nginx.conf");
                std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
                std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
                let child = Command::new("nginx")
                    .arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&conf_path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("nginx: {e}"))?;
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                wait_listening(addr)?;
                (child, Some(dir.join("nginx.pid")), addr)
            }
        };
        // Keep draining the server's stderr so it never blocks on a full pipe.
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut BufReader::new(err), &mut std::io::sink());
            });
        }
        Ok(Server {
            target: target.clone(),
            addr,
            child,
            dir,
            gen: gen.to_owned(),
            nginx_pid,
        })
    }

    /// Starts the generator with `args` as a job.
    ///
    /// # Errors
    /// When the server refuses the job.
    pub fn start_job(&self, args: &[String]) -> Result<Job, String> {
        match &self.target.kind {
            Kind::Spout(_) | Kind::Express(_) => {
                let body = serde_json::json!({"command": "gen", "args": args}).to_string();
                let (status, resp) = client::post_json(self.addr, "/jobs", &body)?;
                if status != 201 {
                    return Err(format!("POST /jobs: {status} {resp}"));
                }
                let v: serde_json::Value =
                    serde_json::from_str(&resp).map_err(|e| e.to_string())?;
                let id = v["id"]
                    .as_str()
                    .ok_or("no id in the job status")?
                    .to_owned();
                Ok(Job {
                    path: format!("/jobs/{id}/events"),
                    id,
                    relay: None,
                })
            }
            Kind::Nchan(peer_dir) => {
                let id = format!("j{}", client::now_ns());
                // Its own process group, so stopping the job stops the generator too.
                let relay = Command::new("node")
                    .process_group(0)
                    .arg(peer_dir.join("relay.js"))
                    .arg(format!("http://{}/pub/{id}", self.addr))
                    .arg(&self.gen)
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("relay: {e}"))?;
                Ok(Job {
                    path: format!("/sub/{id}"),
                    id,
                    relay: Some(relay),
                })
            }
        }
    }

    /// Waits until the job's process has ended (so its log is complete).
    ///
    /// # Errors
    /// When it does not end within `limit`.
    pub fn wait_finished(&self, job: &mut Job, limit: Duration) -> Result<(), String> {
        if job.relay.is_some() {
            let _ = self.relay_cpu_s(job);
            return Ok(());
        }
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let path = format!("/jobs/{}", job.id);
            if let Ok((200, body)) = client::get(self.addr, &path) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if v["exit"].is_object() || v["state"] == "exited" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the job did not finish".into())
    }

    /// The job's `last_event_id`, from its status (spout only).
    ///
    /// # Errors
    /// When the status cannot be read or has no `last_event_id`.
    pub fn last_event_id(&self, job: &Job) -> Result<u64, String> {
        let (_, status) = client::get(self.addr, &format!("/jobs/{}", job.id))?;
        let v: serde_json::Value = serde_json::from_str(&status).map_err(|e| e.to_string())?;
        v["last_event_id"]
            .as_u64()
            .ok_or_else(|| "no last_event_id in the status".to_owned())
    }

    /// For nchan: waits for the job's relay and returns the CPU seconds it reported;
    /// 0 for servers that run the process themselves.
    #[must_use]
    pub fn relay_cpu_s(&self, job: &mut Job) -> f64 {
        let Some(mut relay) = job.relay.take() else {
            return 0.0;
        };
        let mut out = String::new();
        if let Some(mut o) = relay.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let _ = relay.wait();
        out.lines()
            .find_map(|l| l.strip_prefix("cpu_s ").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// For nchan: whether the job's relay has exited (for example because nchan
    /// refused a publish); always false for servers that run the process themselves.
    pub fn relay_gone(&self, job: &mut Job) -> bool {
        job.relay
            .as_mut()
            .is_some_and(|r| matches!(r.try_wait(), Ok(Some(_))))
    }

    /// Every process of the server (nginx: master and workers).
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        let Some(pidfile) = &self.nginx_pid else {
            return vec![self.child.id()];
        };
        let master: u32 = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(self.child.id());
        let mut pids = vec![master];
        pids.extend(children_of(master));
        pids
    }

    /// The server's CPU seconds (user + system) so far.
    #[must_use]
    pub fn cpu_s(&self) -> f64 {
        self.pids().iter().map(|&p| cpu_s(p)).sum()
    }

    /// A `VmRSS`/`VmHWM`-style field of `/proc/PID/status`, summed over the server's
    /// processes, in bytes.
    #[must_use]
    pub fn mem(&self, field: &str) -> u64 {
        self.pids()
            .iter()
            .map(|&p| status_kb(p, field) * 1024)
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: nginx and spout stop their children and clean up on it.
        for p in self.pids().iter().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(p.to_string())
                .status();
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(mut r) = self.relay.take() {
            let group = format!("-{}", r.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

/// Reads `listening on http://ADDR` from the server's stderr.
fn listening(child: &mut Child) -> Result<SocketAddr, String> {
    let err = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(err);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the server exited before listening".into());
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest
                .trim()
                .trim_end_matches('/')
                .parse()
                .map_err(|e| format!("{rest}: {e}"))?;
            // Hand the rest of stderr back to be drained.
            child.stderr = None;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut lines, &mut std::io::sink());
            });
            return Ok(addr);
        }
    }
}

fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr}"))
}

/// A port the kernel just gave out and took back (nginx needs a number up front).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(parent))
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// utime + stime of one process, in seconds.
#[must_use]
pub fn cpu_s(pid: u32) -> f64 {
    let Some(f) = stat_fields(pid) else {
        return 0.0;
    };
    // utime and stime are fields 14 and 15 (indexes 11 and 12 here), in clock ticks.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / clk_tck()
}

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}
