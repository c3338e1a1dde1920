//! HTTP/1.1 connection I/O: the bytes between a socket and the core's sans-IO
//! [`ServerConn`]. Reads wait until the connection's deadline, bytes and the clock go
//! in, and what the connection yields is written out. Every decision (heads, limits,
//! keep-alive, deadlines, error answers) is the core's.

use std::io;
use std::time::Instant;

use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::Timer;
use spout_core::http::{Event, ServerConn};

use crate::clock;

/// How much one read asks the socket for.
const READ_CHUNK: usize = 8 * 1024;

/// One connection's socket.
pub struct Conn<S> {
    stream: S,
}

/// What one read brought.
enum Input {
    Bytes(usize),
    Eof,
    Deadline,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a connected stream (in the server, a `smol::net::TcpStream`).
    pub fn new(stream: S) -> Self {
        Conn { stream }
    }

    /// Writes what `http` yields and feeds it what the socket reads, until it has an
    /// [`Event`] for the caller; `None` once the connection is over (closed by the
    /// core, by the peer, or by a socket error).
    pub async fn next(&mut self, http: &mut ServerConn) -> Option<Event> {
        // Allocated per call rather than held in the task: an idle stream keeps
        // no read buffer.
        let mut chunk = Vec::new();
        loop {
            // 1. Write what the connection yields (`100 Continue`, answers).
            while let Some(bytes) = http.poll_transmit() {
                self.write_all(&bytes).await.ok()?;
            }
            // 2. An event for the caller.
            if let Some(event) = http.poll_event() {
                return Some(event);
            }
            // 3. Read until the connection's deadline.
            let deadline = http.poll_timeout()?;
            chunk.resize(READ_CHUNK, 0);
            match self.read(&mut chunk, deadline).await.ok()? {
                Input::Bytes(n) => http.handle_read(&chunk[..n], clock::now()),
                Input::Eof => http.handle_eof(clock::now()),
                Input::Deadline => http.handle_timeout(clock::now()),
            }
        }
    }

    /// Writes all of `bytes` and flushes them.
    ///
    /// # Errors
    ///
    /// The socket's error, e.g. when the peer has gone.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// One read, raced against `deadline`.
    async fn read(&mut self, chunk: &mut [u8], deadline: Instant) -> io::Result<Input> {
        let read = async {
            Ok(match self.stream.read(chunk).await? {
                0 => Input::Eof,
                n => Input::Bytes(n),
            })
        };
        let expire = async {
            Timer::at(deadline).await;
            Ok(Input::Deadline)
        };
        future::or(read, expire).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::net::{TcpListener, TcpStream};
    use spout_core::http::{BodyFraming, ConnLimits, ReadError, Response};
    use std::time::Duration;

    const GET: &[u8] = b"GET /jobs?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";

    async fn loopback() -> (TcpStream, Conn<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = future::zip(TcpStream::connect(addr), listener.accept()).await;
        (client.unwrap(), Conn::new(accepted.unwrap().0))
    }

    #[test]
    fn loopback_request_response_and_close() {
        smol::block_on(async {
            let (mut client, mut conn) = loopback().await;
            let mut http = ServerConn::new(ConnLimits::default(), clock::now());
            // Split in two writes: the core reassembles the head.
            client.write_all(&GET[..10]).await.unwrap();
            client.flush().await.unwrap();
            Timer::after(Duration::from_millis(5)).await;
            client.write_all(&GET[10..]).await.unwrap();
            let Some(Event::Head(head)) = conn.next(&mut http).await else {
                panic!("no head");
            };
            assert_eq!(head.target, "/jobs?x=1");
            http.handle_admitted(BodyFraming::None, false, clock::now());
            assert_eq!(conn.next(&mut http).await, Some(Event::Body(Vec::new())));
            http.handle_response(&Response::no_content(), clock::now());
            drop(client.shutdown(std::net::Shutdown::Write));
            // The answer is written, then the peer's close ends the connection.
            assert_eq!(conn.next(&mut http).await, None);
            drop(conn);
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert!(answer.starts_with(b"HTTP/1.1 204 No Content\r\n"));
        });
    }

    #[test]
    fn loopback_slowloris_is_cut_at_the_head_deadline() {
        smol::block_on(async {
            let (mut client, mut conn) = loopback().await;
            client.set_nodelay(true).unwrap();
            let limits = ConnLimits {
                head_timeout: Duration::from_millis(200),
                ..ConnLimits::default()
            };
            let mut http = ServerConn::new(limits, clock::now());
            // Each byte comes well within the deadline; the head as a whole never does.
            let trickle = async {
                for &b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle().take(200) {
                    if client.write_all(&[b]).await.is_err() {
                        break;
                    }
                    Timer::after(Duration::from_millis(20)).await;
                }
                None
            };
            let got = future::or(conn.next(&mut http), trickle).await;
            assert!(
                matches!(
                    got,
                    Some(Event::Failed {
                        error: ReadError::Timeout,
                        status: 408
                    })
                ),
                "{got:?}"
            );
        });
    }
}
