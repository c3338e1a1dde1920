//! HTTP/1.1 connection I/O on a blocking `std::net::TcpStream`: the bytes between the
//! socket and the core's sans-IO [`ServerConn`], writes within the write timeout, and
//! a look for a departed client. The blocking twin of `runtime-smol/src/http.rs`.
//!
//! It decides nothing: heads, limits, keep-alive, deadlines and error answers are the
//! core's. Before each read the socket's `SO_RCVTIMEO` is set to what is left until
//! the connection's deadline, so a client trickling a byte a second is cut at the
//! deadline, not kept alive by each byte.

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use spout_core::http::{self as core_http, Event, ServerConn};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::clock;

/// How much one read asks the socket for. On the heap, for the length of one
/// [`Conn::next`]: a stack buffer's pages would stay resident in the thread's stack
/// for the whole life of the connection (8 KiB of every idle subscriber).
const READ_CHUNK: usize = 8 * 1024;

/// One connection's socket.
pub struct Conn {
    stream: TcpStream,
}

/// What one read brought.
enum Input {
    Bytes(usize),
    Eof,
    Deadline,
}

impl Conn {
    /// Wraps an accepted socket (blocking mode) and gives its writes the core's
    /// [`core_http::WRITE_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// The socket's error when the timeout cannot be set.
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_write_timeout(Some(core_http::WRITE_TIMEOUT))?;
        Ok(Conn { stream })
    }

    /// Writes what `http` yields and feeds it what the socket reads, until it has an
    /// [`Event`] for the caller; `None` once the connection is over (closed by the
    /// core, by the peer, or by a socket error).
    pub fn next(&mut self, http: &mut ServerConn) -> Option<Event> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            // 1. Write what the connection yields (`100 Continue`, answers).
            while let Some(bytes) = http.poll_transmit() {
                self.write_all(&bytes).ok()?;
            }
            // 2. An event for the caller.
            if let Some(event) = http.poll_event() {
                return Some(event);
            }
            // 3. Read until the connection's deadline.
            let deadline = http.poll_timeout()?;
            match self.read(&mut chunk, deadline).ok()? {
                Input::Bytes(n) => http.handle_read(&chunk[..n], clock::now()),
                Input::Eof => http.handle_eof(clock::now()),
                Input::Deadline => http.handle_timeout(clock::now()),
            }
        }
    }

    /// Writes all of `bytes`. The whole write must finish within
    /// [`core_http::WRITE_TIMEOUT`], so a client that stops reading is dropped
    /// rather than holding its thread forever.
    ///
    /// # Errors
    ///
    /// The socket's error, e.g. when the peer has gone or the time ran out.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        // The socket's send timeout is WRITE_TIMEOUT (set in `new`): a write the
        // kernel takes whole in one call (every write, while the client reads)
        // costs one system call. Only a partial write switches to a deadline for
        // the rest, then puts the timeout back.
        let mut written = write_some(&self.stream, bytes)?;
        if written == bytes.len() {
            return Ok(());
        }
        let deadline = Instant::now() + core_http::WRITE_TIMEOUT;
        let result = loop {
            if written == bytes.len() {
                break Ok(());
            }
            let left = match remaining(deadline) {
                Some(left) => left,
                None => break Err(io::ErrorKind::TimedOut.into()),
            };
            if let Err(e) = self.stream.set_write_timeout(Some(left)) {
                break Err(e);
            }
            match write_some(&self.stream, &bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if is_timeout(&e) => {}
                Err(e) => break Err(e),
            }
        };
        self.stream
            .set_write_timeout(Some(core_http::WRITE_TIMEOUT))?;
        result
    }

    /// Writes what the socket takes of `bytes` at once, without waiting (the idle
    /// thread's writes, which must never block on one slow client): how many
    /// bytes it took, 0 if its buffer is full.
    ///
    /// # Errors
    ///
    /// The socket's error, e.g. when the peer has gone.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::net::send(
                &self.stream,
                bytes,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the client has closed its side (or reset the connection), without
    /// waiting. Bytes it sent meanwhile are read and dropped: during a stream
    /// nothing a client sends is a request. Used between a stream's waits, where
    /// no read is pending (a thread cannot wait on the job and the socket at once).
    pub fn peer_gone(&mut self) -> bool {
        let mut scratch = [0u8; 512];
        // A bound, so that a client sending without pause cannot keep us here.
        for _ in 0..64 {
            match rustix::net::recv(&self.stream, &mut scratch[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => return true,
                Ok(_) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return false,
                Err(_) => return true,
            }
        }
        false
    }

    /// One read, ending at `deadline` at the latest.
    fn read(&mut self, chunk: &mut [u8], deadline: Instant) -> io::Result<Input> {
        loop {
            // What is left of the deadline, not a fresh timeout per read.
            let Some(left) = remaining(deadline) else {
                return Ok(Input::Deadline);
            };
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(chunk) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => return Ok(Input::Bytes(n)),
                // Timed out (or woken early): the loop looks at the deadline again.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Time left until `deadline`; `None` once it has passed (a zero timeout would
/// mean "no timeout" to the socket).
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// How a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`) shows up in std.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One `write`, retried on `EINTR`; an error for a socket that takes nothing.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(bytes) {
            Ok(0) if !bytes.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spout_core::http::{BodyFraming, ConnLimits, ReadError, Response};
    use std::net::TcpListener;

    /// A connected pair over loopback: the client side, and the server's `Conn`.
    fn pair() -> (TcpStream, Conn) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nodelay(true).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (client, Conn::new(accepted).unwrap())
    }

    #[test]
    fn loopback_request_continue_body_and_answer() {
        let (mut client, mut conn) = pair();
        let mut http = ServerConn::new(ConnLimits::default(), clock::now());
        client
            .write_all(b"POST /jobs HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .unwrap();
        let Some(Event::Head(head)) = conn.next(&mut http) else {
            panic!("no head");
        };
        assert_eq!(head.method, "POST");
        http.handle_admitted(BodyFraming::Length(2), true, clock::now());
        let writer = std::thread::spawn(move || {
            let mut got = [0; 25];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
            client.write_all(b"{}").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).unwrap();
            answer
        });
        assert_eq!(conn.next(&mut http), Some(Event::Body(b"{}".to_vec())));
        http.handle_response(&Response::no_content(), clock::now());
        // The answer is written, then the peer's close ends the connection.
        assert_eq!(conn.next(&mut http), None);
        drop(conn);
        assert!(writer
            .join()
            .unwrap()
            .starts_with(b"HTTP/1.1 204 No Content\r\n"));
    }

    #[test]
    fn a_trickled_head_is_cut_at_the_deadline_not_reset_by_each_byte() {
        let (mut client, mut conn) = pair();
        let limits = ConnLimits {
            head_timeout: Duration::from_millis(200),
            ..ConnLimits::default()
        };
        let mut http = ServerConn::new(limits, clock::now());
        // A byte every 20 ms for 30 s, then a close. A deadline reset by each byte
        // would end quietly when the trickle stops; only a deadline over the whole
        // head ends it in a 408.
        let trickle = std::thread::spawn(move || {
            for &b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle().take(1500) {
                if client.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert_eq!(
            conn.next(&mut http),
            Some(Event::Failed {
                error: ReadError::Timeout,
                status: 408
            })
        );
        drop(conn);
        trickle.join().unwrap();
    }

    #[test]
    fn writes_and_peer_gone() {
        let (mut client, mut c) = pair();
        c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        let want = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut got = vec![0; want.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        // Bytes sent during a stream are dropped; only the close counts.
        client.write_all(b"ignored").unwrap();
        assert!(!c.peer_gone());
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.peer_gone() {
            assert!(Instant::now() < deadline, "the close was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
