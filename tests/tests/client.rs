//! The terminal client (`spout run`, `spout tail`) as a user runs it: the real
//! `spout` binary as a subprocess, against a real server of each runtime (the
//! client is the same binary; the server behind it changes). What is checked is
//! what a user gets: the exact bytes on stdout and stderr, and the exit code.

use spout_tests::{
    binary_path, both_runtimes, start_job, wait_for_state, CutProxy, Runtime, Server,
};
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bound on any one client run: the slowest case (server down at first) needs a
/// few seconds.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Commands for the cases. `retry_ms` is small so reconnects do not slow the cases.
const CONFIG: &str = r#"{
  "commands": {
    "exit3": {"argv": ["sh", "-c", "echo out; exit 3"]},
    "term": {"argv": ["sh", "-c", "echo before; kill -TERM $$"]},
    "lines": {"argv": ["sh", "-c", "i=1; while [ $i -le 200 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done"]},
    "slow": {"argv": ["sh", "-c", "i=1; while [ $i -le 30 ]; do echo \"n $i\"; i=$((i+1)); sleep 0.1; done"]},
    "hello": {"argv": ["sh", "-c", "echo hello; echo bye >&2"]}
  },
  "sse": {"retry_ms": 50}
}"#;

/// A running client process; its output is drained by threads into buffers.
struct ClientProc {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    drains: Vec<JoinHandle<()>>,
}

/// What a finished client left.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientProc {
    fn spawn(args: &[&str]) -> ClientProc {
        let mut child = Command::new(binary_path(Runtime::Smol))
            .args(args)
            .env_remove("SPOUT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the spout client");
        let (out, err) = (Arc::default(), Arc::default());
        let mut drains = Vec::new();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        drains.push(drain(stdout, Arc::clone(&out)));
        drains.push(drain(stderr, Arc::clone(&err)));
        ClientProc {
            child,
            out,
            err,
            drains,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&lock(&self.out)).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.err)).into_owned()
    }

    /// Polls until `pred(stdout, stderr)` holds.
    fn wait_until(&self, what: &str, pred: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if pred(&self.stdout(), &self.stderr()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "client never showed {what}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the client to exit (killing it after [`CLIENT_TIMEOUT`]).
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "client did not exit within {CLIENT_TIMEOUT:?}\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
        Finished {
            status,
            stdout: lock(&self.out).clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            lock(&into).extend_from_slice(&buf[..n]);
        }
    })
}

/// Runs the client to its end.
fn client(args: &[&str]) -> Finished {
    ClientProc::spawn(args).finish()
}

/// The stderr line `spout: job URL (…)` of `run`: the job URL.
fn job_url_from(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("spout: job http://"))
        .unwrap_or_else(|| panic!("no job URL line in {stderr:?}"));
    line["spout: job ".len()..]
        .split(' ')
        .next()
        .expect("a URL")
        .to_owned()
}

both_runtimes!(
    fn exact_bytes_of_stdout_and_stderr(rt: Runtime) {
        // A CR progress bar, a UTF-8 character split across two writes (with a
        // pause longer than the partial-line delay, so it spans two events), stderr.
        let script =
            r#"printf 'a\rb\n'; echo err >&2; printf 'caf\303'; sleep 0.3; printf '\251\n'"#;
        let server = Server::start(rt, &["--memory", "--", "sh", "-c", script]);
        let run = client(&["run", &server.url(""), "default"]);
        assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
        assert_eq!(run.stdout, "a\rb\ncafé\n".as_bytes());
        let url = job_url_from(&run.stderr);
        assert_eq!(
            run.stderr,
            format!("spout: job {url} (Ctrl-C detaches, the job goes on)\nerr\n")
        );
        assert!(url.starts_with(&server.url("/jobs/")), "{url}");

        // tail of the finished job, from the start: the same bytes, nothing else.
        let tail = client(&["tail", &url, "--from-start"]);
        assert_eq!(tail.code(), Some(0), "stderr: {}", tail.stderr);
        assert_eq!(tail.stdout, "a\rb\ncafé\n".as_bytes());
        assert_eq!(tail.stderr, "err\n");
    }

    fn exit_code_and_signal_become_the_clients(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let exit3 = client(&["run", &server.url(""), "exit3"]);
        assert_eq!(exit3.code(), Some(3), "stderr: {}", exit3.stderr);
        assert_eq!(exit3.stdout_text(), "out\n");

        let term = client(&["run", &server.url(""), "term"]);
        assert_eq!(term.code(), Some(128 + 15), "stderr: {}", term.stderr);
        assert_eq!(term.stdout_text(), "before\n");
        assert!(
            term.stderr
                .ends_with("spout: the job was killed by SIGTERM\n"),
            "{}",
            term.stderr
        );
    }

    fn json_lines_for_scripts(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let run = client(&["run", &server.url(""), "exit3", "--json"]);
        assert_eq!(run.code(), Some(3), "stderr: {}", run.stderr);
        let lines: Vec<serde_json::Value> = run
            .stdout_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["start", "stdout", "exit"], "{lines:?}");
        assert_eq!(lines[0]["id"], 1);
        assert_eq!(lines[1]["data"]["text"], "out\n");
        assert_eq!(lines[2]["data"]["code"], 3);
    }

    fn every_line_exactly_once_across_cuts(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let (id, _) = start_job(server.addr(), "lines", &[]);
        // Each connection gets 1500 bytes from the server, then is cut: mid-event,
        // mid-chunk, a dozen times over the job.
        let proxy = CutProxy::cut_after(server.addr(), 1500);
        let url = format!("http://{}/jobs/{id}", proxy.addr());
        let tail = client(&["tail", &url, "--from-start"]);
        assert_eq!(tail.code(), Some(0), "stderr: {}", tail.stderr);
        let want: String = (1..=200).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail.stdout_text(), want);
        assert!(
            proxy.accepted() >= 3,
            "only {} connections: the cut never happened",
            proxy.accepted()
        );
    }

    fn server_down_at_first_then_up(rt: Runtime) {
        // A port that was free a moment ago; the server will be started on it.
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("address").port()
        };
        let listen = format!("127.0.0.1:{port}");
        // Later flags win, so this overrides the harness's --listen 127.0.0.1:0.
        let mut server = Server::start_with_config(rt, CONFIG, &["--listen", &listen]);
        assert_eq!(server.addr().port(), port);
        let (id, _) = start_job(server.addr(), "hello", &[]);
        wait_for_state(
            server.addr(),
            &id,
            |s| s["state"] != "running" && s["state"] != "starting",
            Duration::from_secs(10),
        );
        server.kill9();

        let url = format!("http://{listen}/jobs/{id}");
        let tail = ClientProc::spawn(&["tail", &url, "--from-start"]);
        tail.wait_until("a retry notice", |_, err| err.contains("retrying in"));
        // Same args, same data dir: the archived job is back, on the same port.
        server.restart();
        let tail = tail.finish();
        assert_eq!(tail.code(), Some(0), "stderr: {}", tail.stderr);
        assert_eq!(tail.stdout_text(), "hello\n");
        assert!(tail.stderr.ends_with("bye\n"), "{}", tail.stderr);
        assert!(
            tail.stderr.contains("Connection refused"),
            "{}",
            tail.stderr
        );
    }

    fn interrupt_detaches_and_tail_resumes(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let run = ClientProc::spawn(&["run", &server.url(""), "slow"]);
        run.wait_until("the third line", |out, _| out.contains("n 3\n"));
        run.signal("INT");
        let run = run.finish();
        assert_eq!(run.code(), Some(130), "stderr: {}", run.stderr);
        let url = job_url_from(&run.stderr);
        let hint = format!("Re-attach with: spout tail {url} --last-event-id ");
        let at = run
            .stderr
            .find(&hint)
            .unwrap_or_else(|| panic!("no re-attach hint in {:?}", run.stderr));
        let id = run.stderr[at + hint.len()..].trim_end();
        assert!(id.parse::<u64>().is_ok(), "{id:?}");

        // The job went on; tail from the hint continues exactly where run stopped.
        let tail = client(&["tail", &url, "--last-event-id", id]);
        assert_eq!(tail.code(), Some(0), "stderr: {}", tail.stderr);
        let want: String = (1..=30).map(|i| format!("n {i}\n")).collect();
        assert_eq!(run.stdout_text() + &tail.stdout_text(), want);
        assert!(run.stdout_text().len() < want.len(), "run saw it all");
    }

    fn kill_on_interrupt_stops_the_job(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let run = ClientProc::spawn(&["run", &server.url(""), "slow", "--kill-on-interrupt"]);
        run.wait_until("the second line", |out, _| out.contains("n 2\n"));
        run.signal("INT");
        let run = run.finish();
        assert!(
            run.stderr.contains("spout: stopping the job"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("spout: the server ended the job: stopped"),
            "{}",
            run.stderr
        );
        assert_eq!(run.code(), Some(128 + 15), "stderr: {}", run.stderr);
        assert!(
            !run.stdout_text().contains("n 30\n"),
            "the job ran to its end"
        );
    }

    fn no_such_job_has_its_own_exit_code(rt: Runtime) {
        let server = Server::start_with_config(rt, CONFIG, &["--memory"]);
        let url = server.url("/jobs/AAAAAAAAAAAAAAAAAAAAAA");
        let tail = client(&["tail", &url]);
        assert_eq!(tail.code(), Some(66), "stderr: {}", tail.stderr);
        assert!(tail.stderr.contains("404 no such job"), "{}", tail.stderr);
        let run = client(&["run", &server.url(""), "nope"]);
        assert_eq!(run.code(), Some(65), "stderr: {}", run.stderr);
        assert!(run.stderr.contains("unknown command"), "{}", run.stderr);
    }
);

#[test]
fn unreachable_server_and_bad_urls() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        probe.local_addr().expect("address").port()
    };
    let run = client(&["run", &format!("http://127.0.0.1:{port}"), "build"]);
    assert_eq!(run.code(), Some(69), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("cannot start a job"), "{}", run.stderr);

    let tls = client(&["tail", "https://127.0.0.1:1/jobs/x"]);
    assert_eq!(tls.code(), Some(64));
    assert!(tls.stderr.contains("http:// only"), "{}", tls.stderr);

    let not_a_job = client(&["tail", "http://127.0.0.1:1/metrics"]);
    assert_eq!(not_a_job.code(), Some(64));
    assert!(
        not_a_job.stderr.contains("not a job URL"),
        "{}",
        not_a_job.stderr
    );
}
