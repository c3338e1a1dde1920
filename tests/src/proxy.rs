//! A loopback TCP proxy that cuts connections, for resume tests: a client talks to
//! the proxy, the proxy forwards bytes both ways to the server, and the test drops
//! every connection when it wants to (or the proxy does so after N bytes).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// A forwarding proxy on `127.0.0.1:0` that can drop its connections.
///
/// Each accepted connection gets its own connection to the target and two forwarding
/// threads. [`CutProxy::cut_all`] shuts down both sockets of every open connection;
/// the client sees the connection close (FIN) and the server sees its peer go away.
/// [`CutProxy::cut_after`] forwards exactly N bytes from the server to the client on
/// each connection and then cuts it, so a cut lands at a chosen byte (mid-event,
/// mid-chunk). `Drop` cuts everything and joins every thread.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    stopping: AtomicBool,
    cut_after: Option<usize>,
    accepted: AtomicUsize,
    conns: Mutex<Vec<Conn>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

/// Both sockets of one proxied connection.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
}

impl Conn {
    fn of(client: &TcpStream, upstream: &TcpStream) -> io::Result<Conn> {
        Ok(Conn {
            client: client.try_clone()?,
            upstream: upstream.try_clone()?,
        })
    }

    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

impl CutProxy {
    /// A proxy to `target` that cuts only when told to.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub fn start(target: SocketAddr) -> CutProxy {
        CutProxy::spawn(target, None)
    }

    /// A proxy to `target` that cuts each connection after forwarding exactly `bytes`
    /// bytes from the target to the client.
    ///
    /// # Panics
    /// When it cannot bind a loopback port, or `bytes` is zero.
    pub fn cut_after(target: SocketAddr, bytes: usize) -> CutProxy {
        assert!(bytes > 0, "cut_after needs at least one byte");
        CutProxy::spawn(target, Some(bytes))
    }

    fn spawn(target: SocketAddr, cut_after: Option<usize>) -> CutProxy {
        assert!(
            target.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the proxy");
        // invariant: a bound listener has a local address.
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let shared = Arc::new(Shared {
            target,
            stopping: AtomicBool::new(false),
            cut_after,
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        CutProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection, both ways; later connections are forwarded as usual.
    pub fn cut_all(&self) {
        let conns = std::mem::take(&mut *lock(&self.shared.conns));
        for conn in &conns {
            conn.cut();
        }
    }
}

impl std::fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("cut_after", &self.shared.cut_after)
            .field("accepted", &self.accepted())
            .finish_non_exhaustive()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The acceptor blocks in accept(); one connection wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
        let pumps = std::mem::take(&mut *lock(&self.shared.pumps));
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A pump that panicked must not hide the test's own failure behind a poison error.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(upstream) = TcpStream::connect(shared.target) else {
            // The client sees the close, as it would with the server down.
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let clones = (|| -> io::Result<_> {
            Ok((
                Conn::of(&client, &upstream)?,
                Conn::of(&client, &upstream)?,
                Conn::of(&client, &upstream)?,
                upstream.try_clone()?,
                client.try_clone()?,
            ))
        })();
        // Each pump holds its own handles to cut both sockets when its direction ends,
        // so one side closing closes the other, as a real proxy would.
        let Ok((registered, down_cut, up_cut, down_from, down_to)) = clones else {
            continue;
        };
        lock(&shared.conns).push(registered);
        let cut_after = shared.cut_after;
        let down = std::thread::spawn(move || {
            pump(down_from, down_to, cut_after);
            down_cut.cut();
        });
        let up = std::thread::spawn(move || {
            pump(client, upstream, None);
            up_cut.cut();
        });
        let mut pumps = lock(&shared.pumps);
        pumps.retain(|p| !p.is_finished());
        pumps.push(down);
        pumps.push(up);
    }
}

/// Copies `from` to `to` until either side ends or `limit` bytes have gone through.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) {
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let want = match limit {
            Some(limit) if sent >= limit => return,
            Some(limit) => buf.len().min(limit - sent),
            None => buf.len(),
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n;
    }
}
