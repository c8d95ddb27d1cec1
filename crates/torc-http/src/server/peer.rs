//! Noticing that a long poll's caller went away. actix-web keeps serving a request whose client
//! closed its connection until the handler writes its answer, so a parked claim would still take
//! jobs for a runner that is gone (they would come back only when its lease lapsed). Each
//! connection keeps a duplicate of its socket ([`Peer`], set up in `on_connect`); a long poll
//! races its answer against [`Peer::closed`], which wakes when the socket becomes readable and
//! finds the end of the stream (or an error) when it peeks. The engine's call is then dropped
//! with its reply, and the writer drops the parked claim without handing it anything.

use std::any::Any;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A connection's socket, duplicated so that it can be watched beside the server's own use.
#[derive(Debug, Clone)]
pub struct Peer(Arc<OwnedFd>);

/// The `on_connect` callback: keeps a duplicate of a plain TCP connection's socket.
pub fn on_connect(conn: &dyn Any, ext: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        match tcp.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                ext.insert(Peer(Arc::new(fd)));
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch a connection for its close"),
        }
    }
}

struct Watched(OwnedFd);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// What a peek at the socket found.
enum Peeked {
    /// The peer closed its side, or the connection failed.
    Gone,
    /// Nothing to read now, or bytes of a next request: the peer is there.
    There,
}

fn peek(fd: RawFd) -> Peeked {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller; one byte is peeked into a local
    // buffer of one byte, without blocking and without consuming it.
    let n = unsafe {
        libc::recv(
            fd,
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Gone,
        n if n > 0 => Peeked::There,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peeked::There,
            _ => Peeked::Gone,
        },
    }
}

impl Peer {
    /// Resolves once the peer has closed the connection; never while it is open (nor when
    /// the socket cannot be watched).
    pub fn closed(&self) -> impl Future<Output = ()> + 'static {
        let fd = self.0.try_clone();
        async move {
            let watched = fd.ok().and_then(|fd| {
                // SAFETY: `Watched` owns the descriptor, so it stays open and names the same
                // socket for as long as the `AsyncFd` lives.
                unsafe { AsyncFd::register_with_interest(Watched(fd), Interest::READABLE) }.ok()
            });
            let Some(watched) = watched else {
                return std::future::pending().await;
            };
            loop {
                let Ok(mut ready) = watched.readable().await else {
                    return std::future::pending().await;
                };
                match peek(watched.get_ref().as_raw_fd()) {
                    Peeked::Gone => return,
                    // Readable with bytes in it (a pipelined request) or spuriously: wait for
                    // the next change.
                    Peeked::There => ready.clear_ready(),
                }
            }
        }
    }
}

/// Runs `answer` unless the peer goes away first (then `None`, and `answer` is dropped).
pub async fn unless_gone<T>(peer: Option<&Peer>, answer: impl Future<Output = T>) -> Option<T> {
    let Some(peer) = peer else {
        return Some(answer.await);
    };
    tokio::select! {
        value = answer => Some(value),
        () = peer.closed() => None,
    }
}
