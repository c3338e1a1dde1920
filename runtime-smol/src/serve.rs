//! `spout serve`: start-up (config, archive, restore), the accept loop, one task
//! per connection moving requests to the core and its answers back, and a clean
//! shutdown on SIGINT/SIGTERM.

use crate::http::Conn;
use crate::{clock, job, stream};
use anyhow::Context as _;
use futures_lite::{future, StreamExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use spout_core::cli::ServeOptions;
use spout_core::http::{self, Admission, ConnLimits, Event, Route, ServerConn, StreamFraming};
use spout_core::registry::{Inputs, Reply};
use spout_sys::cluster::Cluster;
use spout_sys::driver::{log, Shared};
use spout_sys::startup::{self, Started};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Runs the server until SIGINT/SIGTERM. Exit code 0 after a clean shutdown, 2 for
/// a config that is refused, 1 for other start-up failures.
pub fn run(options: &ServeOptions) -> ExitCode {
    startup::run(
        options,
        || (clock::now(), clock::wall(), clock::job_id_bytes()),
        serve,
    )
}

/// The answer inputs the core needs from the world.
fn inputs() -> Inputs {
    Inputs {
        now: clock::now(),
        wall: clock::wall(),
        random: clock::job_id_bytes(),
    }
}

/// Sets how many threads smol's global executor (every connection's and job's
/// task) runs on: as many as the machine has cores, unless `SMOL_THREADS` says
/// otherwise. smol reads the variable once, when its first task is spawned, and
/// starts one thread without it. Called before any task exists.
fn use_every_core() {
    if std::env::var_os("SMOL_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        std::env::set_var("SMOL_THREADS", n.to_string());
    }
}

fn serve(started: Started) -> anyhow::Result<()> {
    let Started {
        shared,
        listen,
        summary,
    } = started;
    use_every_core();
    // The cluster's threads are plain threads with redis-rs's blocking client, as
    // in spout-blocking (docs/cluster.md); a job's driver here wakes on the job's
    // own notifier, so a stop request needs no other wake-up.
    let cluster = Cluster::start(&shared, Box::new(|_| {}))?;
    smol::block_on(async {
        let listener = TcpListener::try_from(startup::bind(listen)?)
            .context("cannot set up the listening socket")?;
        let addr = listener.local_addr()?;
        log(&format!("listening on http://{addr}"));
        log(&summary);
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
                .context("cannot handle SIGTERM/SIGINT")?;
        loop {
            let accept = async { Some(listener.accept().await) };
            let signal = async {
                signals.next().await;
                None
            };
            match future::or(accept, signal).await {
                Some(Ok((stream, _))) => {
                    // Nagle off: every write is a whole piece, and with it on a write
                    // behind an unacknowledged small segment waited for the client's
                    // delayed ACK (40 ms); see `no_delay` in spout-blocking's serve.rs.
                    if let Err(e) = stream.set_nodelay(true) {
                        log(&format!("cannot set TCP_NODELAY on a connection: {e}"));
                    }
                    smol::spawn(connection(shared.clone(), cluster.clone(), stream)).detach();
                }
                Some(Err(e)) => {
                    // Out of descriptors (EMFILE) and the like: wait instead of
                    // spinning; service resumes when descriptors come back.
                    log(&format!("accept failed: {e}"));
                    Timer::after(Duration::from_millis(100)).await;
                }
                None => break,
            }
        }
        drop(listener);
        shutdown(&shared, cluster.as_ref()).await;
        anyhow::Ok(())
    })
}

/// Stops every running job (SIGTERM to its group, SIGKILL after the grace), waits
/// for their `exit` to be archived, and gives open streams a moment to send it.
async fn shutdown(shared: &Shared, cluster: Option<&Arc<Cluster>>) {
    let woken = shared.lock().shutdown(clock::now());
    log(&format!(
        "shutting down: stopping {} running jobs",
        woken.len()
    ));
    for id in &woken {
        shared.notify(*id);
    }
    let bound = clock::now() + Duration::from_secs(60);
    while shared.lock().running_jobs() > 0 && clock::now() < bound {
        Timer::after(Duration::from_millis(20)).await;
    }
    if let Some(cluster) = cluster {
        // The jobs' exits into Redis, so other servers see how they ended.
        let cluster = cluster.clone();
        smol::unblock(move || cluster.finish_pushes(Duration::from_secs(5))).await;
    }
    let deadline = clock::now() + Duration::from_secs(2);
    while shared.lock().subscribers() > 0 && clock::now() < deadline {
        Timer::after(Duration::from_millis(20)).await;
    }
    log("stopped");
}

/// One connection: requests in, the core's answers out, until either side closes
/// or a long response (an event stream, a raw log) takes the connection over.
///
/// The long response is served once the request loop's state (its HTTP state,
/// heads, buffers) is gone: the task of an idle subscriber holds only what its
/// stream needs (~1 KB less per subscriber).
async fn connection(shared: Arc<Shared>, cluster: Option<Arc<Cluster>>, stream: TcpStream) {
    let Some((reply, version)) = requests(&shared, cluster.as_ref(), &stream).await else {
        return;
    };
    let framing = StreamFraming::for_version(version);
    match reply {
        Reply::Stream {
            head,
            job,
            subscriber,
        } => {
            stream::events(
                &shared,
                cluster.as_ref(),
                &stream,
                head,
                framing,
                job,
                subscriber,
            )
            .await;
        }
        Reply::JobList { head, subscriber } => {
            stream::job_list(&shared, &stream, head, framing, subscriber).await;
        }
        Reply::RawLog {
            head,
            job,
            follow,
            body,
        } => stream::raw_log(&shared, &stream, head, framing, job, follow, body).await,
        _ => {}
    }
}

/// The request loop of [`connection`]: the core's [`ServerConn`] reads the
/// requests; this loop asks the registry and passes its answers back. Returns a
/// long response for [`connection`] to serve (with the request's HTTP minor
/// version), or `None` when the connection is over.
async fn requests(
    shared: &Arc<Shared>,
    cluster: Option<&Arc<Cluster>>,
    stream: &TcpStream,
) -> Option<(Reply, u8)> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut conn = Conn::new(stream.clone());
    let limits = ConnLimits::new(&shared.lock().config().limits);
    let mut http_conn = ServerConn::new(limits, clock::now());
    // The admitted request whose body is being read.
    let mut pending = None;
    while let Some(event) = conn.next(&mut http_conn).await {
        let (head, admitted, body) = match event {
            Event::Head(head) => {
                let fields = head.fields();
                let req = head.request(&fields);
                let admission = shared.lock().admit(&req, head.version);
                match admission {
                    Admission::Respond(response) => {
                        // Answered without reading any body (the core closes the
                        // connection where the body's framing is then lost).
                        log(&http::request_log_line(
                            &peer,
                            &head.method,
                            &head.target,
                            response.head.status,
                        ));
                        http_conn.handle_response(&response, clock::now());
                    }
                    Admission::Handle(a) => {
                        http_conn.handle_admitted(a.framing, a.expect_continue, clock::now());
                        pending = Some((head, a));
                    }
                }
                continue;
            }
            Event::Failed { error, status } => {
                log(&format!("{peer} bad request: {error} -> {status}"));
                continue;
            }
            Event::Body(body) => match pending.take() {
                Some((head, a)) => (head, a, body),
                None => return None,
            },
        };
        if let Some(cluster) = cluster {
            // Another server's job, or the list of every server's: from Redis, on
            // the blocking pool.
            let unknown = shared.lock().unknown_job(admitted.route);
            let list = matches!(admitted.route, Route::ListJobs);
            if unknown.is_some() || list {
                let cluster = cluster.clone();
                smol::unblock(move || {
                    if let Some(id) = unknown {
                        let _ = cluster.follow(id);
                    }
                    if list {
                        cluster.refresh_index();
                    }
                })
                .await;
            }
        }
        let fields = head.fields();
        let req = head.request(&fields);
        let version = head.version;
        let reply = shared.lock().handle(&req, admitted, &body, inputs());
        let status = reply.status();
        log(&http::request_log_line(
            &peer,
            &head.method,
            &head.target,
            status,
        ));
        let response = match reply {
            Reply::Full(r) => r,
            Reply::Spawn {
                response,
                job,
                plan,
            } => {
                if let Some(cluster) = cluster {
                    // Lease, record and index before the 201.
                    let cluster = Arc::clone(cluster);
                    smol::unblock(move || cluster.own(job)).await;
                }
                // The job's record is written before its 201 leaves.
                job::start(shared.clone(), job, plan).await;
                response
            }
            Reply::Stopping { response, job } => {
                let remote = shared.lock().is_remote(job);
                match cluster {
                    Some(cluster) if remote => {
                        let cluster = cluster.clone();
                        let _ = smol::unblock(move || cluster.forward_stop(job)).await;
                    }
                    _ => shared.notify(job),
                }
                response
            }
            long @ (Reply::Stream { .. } | Reply::JobList { .. } | Reply::RawLog { .. }) => {
                return Some((long, version));
            }
            _ => return None,
        };
        http_conn.handle_response(&response, clock::now());
    }
    None
}
