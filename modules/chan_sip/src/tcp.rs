//! SIP over TCP (`tcpenable=yes`): the listener on `tcpbindaddr` and the connections, each a
//! small task on the monitor's runtime that cuts its byte stream into messages
//! ([`StreamDecoder`], by Content-Length) and writes what the monitor gives it.
//!
//! Connections are known by the remote address (as chan_sip's tcptls sessions are): a request
//! or response for an address with a connection goes over it, whoever opened it; a request to
//! a peer with `transport=tcp` (or a `tcp://` registration) without one opens it, and what is
//! sent meanwhile waits in the connection's queue. A connection that cannot be opened, or that
//! fails, is forgotten: its transactions time out as over UDP. A connection on which nothing
//! arrives for [`IDLE`] is closed. A stream that stops making sense (a message that cannot be
//! framed, or one over [`MAX_STREAM_MESSAGE`](starling_sip::message::MAX_STREAM_MESSAGE)) gets its 400 when one can be formed and is
//! closed, with one log line.
//!
//! What a stranger can make grow is bounded, as chan_sip bounds it where it does:
//! - A connection made to us is *unauthenticated* until the monitor says a request on it was
//!   (`tcpauthtimeout`/`tcpauthlimit`, with chan_sip's meaning: a REGISTER answered 200, an
//!   INVITE past its authentication, a request inside a call). One still unauthenticated
//!   `tcpauthtimeout` after it was accepted is closed; while `tcpauthlimit` of them are open, a
//!   new connection is closed as soon as it is accepted (chan_sip's tcptls helper thread ends at
//!   once). Connections we open are never unauthenticated.
//! - At most [`MAX_CONNECTIONS`] connections at once, either way.
//! - A message is at most [`MAX_STREAM_MESSAGE`](starling_sip::message::MAX_STREAM_MESSAGE) bytes: the decoder refuses a longer one as soon
//!   as its head says so, before reading its body.
//! - What waits to be written is at most [`WRITE_QUEUE_BYTES`], and one write may take at most
//!   [`WRITE_TIMEOUT`]: a peer that does not read is closed rather than queued for.
//! - What connections read waits for the monitor in a bounded queue: a connection whose
//!   messages the monitor has not taken yet stops reading (TCP's own flow control).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starling_core::tokio::io::{AsyncReadExt, AsyncWriteExt};
use starling_core::tokio::net::tcp::OwnedWriteHalf;
use starling_core::tokio::net::{TcpListener, TcpStream};
use starling_core::tokio::sync::{mpsc, oneshot};
use starling_core::{tokio, tracing};
use starling_sip::message::{ParseErrorKind, StreamDecoder, StreamItem, PONG};
use starling_sip::SipMessage;

/// A connection with nothing read for this long is closed.
pub const IDLE: Duration = Duration::from_secs(600);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write may wait for the peer to read before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many bytes may wait to be written on one connection before it is closed.
pub const WRITE_QUEUE_BYTES: usize = 256 * 1024;
/// How many connections, made to us or by us, may be open at once.
pub const MAX_CONNECTIONS: usize = 8192;
/// How many messages read from all connections may wait for the monitor.
const EVENT_QUEUE: usize = 1024;

/// What the connections tell the monitor.
#[derive(Debug)]
pub enum TcpEvent {
    /// A message read from `remote`.
    Message { remote: SocketAddr, message: Box<SipMessage> },
    /// The connection to `remote` is gone (closed by either side, idle, failed, never opened).
    Closed { remote: SocketAddr, id: u64 },
}

/// `sip.conf` `[general]`'s limits on connections made to us, read at each accept (a reload
/// applies to the connections accepted after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `tcpauthtimeout`.
    pub authtimeout: Duration,
    /// `tcpauthlimit`.
    pub authlimit: usize,
}

/// The writing side of one connection.
struct Connection {
    /// Identifies this connection among those that had the same remote address.
    id: u64,
    queue: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes in `queue` not yet taken by the connection's task.
    queued: Arc<AtomicUsize>,
    /// A connection made to us that has not authenticated yet: sending tells its task so.
    unauthenticated: Option<oneshot::Sender<()>>,
}

/// The TCP side of the monitor.
pub struct Tcp {
    listener: TcpListener,
    connections: HashMap<SocketAddr, Connection>,
    events: mpsc::Sender<TcpEvent>,
    next_id: u64,
    /// How many of `connections` are unauthenticated.
    unauthenticated: usize,
    /// New connections are being refused (logged once, when it starts).
    refusing: bool,
}

impl Tcp {
    /// Listens on `address` (at load: a failure is the module's resource error). Events arrive
    /// on the receiver returned beside it.
    pub fn bind(address: SocketAddr) -> std::io::Result<(Tcp, mpsc::Receiver<TcpEvent>)> {
        let socket = std::net::TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket)?;
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let tcp =
            Tcp { listener, connections: HashMap::new(), events, next_id: 0, unauthenticated: 0, refusing: false };
        Ok((tcp, receiver))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The next connection made to us.
    /// The next connection, and where it comes from (an IPv4-mapped address as IPv4, as the
    /// UDP side sees it).
    pub async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, remote) = self.listener.accept().await?;
        Ok((stream, crate::canonical(remote)))
    }

    /// Runs a connection someone made to us, unless `limits` or [`MAX_CONNECTIONS`] say to
    /// close it at once (dropping the stream closes it).
    pub fn accepted(&mut self, stream: TcpStream, remote: SocketAddr, limits: Limits) {
        let refusal = if self.unauthenticated >= limits.authlimit {
            Some(format!("{} unauthenticated connections (tcpauthlimit)", self.unauthenticated))
        } else if self.connections.len() >= MAX_CONNECTIONS {
            Some(format!("{MAX_CONNECTIONS} connections"))
        } else {
            None
        };
        if let Some(reason) = refusal {
            if !self.refusing {
                self.refusing = true;
                tracing::info!("SIP TCP: {reason} open: closing new connections until fewer are");
            }
            tracing::debug!("SIP TCP connection from {remote} closed at once: {reason} open");
            return;
        }
        self.refusing = false;
        let (authenticated, unauthenticated) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + limits.authtimeout;
        self.spawn(remote, None, Some((authenticated, unauthenticated, deadline)), async move { Some(stream) });
    }

    /// Whether a connection to `remote` is open (or being opened).
    pub fn is_connected(&self, remote: SocketAddr) -> bool {
        self.connections.contains_key(&remote)
    }

    /// A request from `remote` was authenticated (chan_sip's `req->authenticated`): its
    /// connection, if it was made to us, is no longer subject to `tcpauthtimeout` and no longer
    /// counts towards `tcpauthlimit`. Does nothing for an address without a connection.
    pub fn authenticated(&mut self, remote: SocketAddr) {
        if let Some(signal) = self.connections.get_mut(&remote).and_then(|c| c.unauthenticated.take()) {
            let _ = signal.send(());
            self.unauthenticated -= 1;
        }
    }

    /// Sends `data` to `remote` over its connection, opening one when there is none. A
    /// connection with [`WRITE_QUEUE_BYTES`] already waiting is closed instead (its peer does not
    /// read), and the next send opens a new one.
    pub fn send(&mut self, remote: SocketAddr, data: Vec<u8>) {
        let data = match self.connections.get(&remote) {
            Some(connection) => {
                let waiting = connection.queued.load(Ordering::Relaxed);
                if waiting + data.len() > WRITE_QUEUE_BYTES {
                    tracing::info!(
                        "SIP TCP connection with {remote} does not read ({waiting} bytes waiting): closing it"
                    );
                    self.forget(remote);
                    return;
                }
                connection.queued.fetch_add(data.len(), Ordering::Relaxed);
                let len = data.len();
                match connection.queue.send(data) {
                    Ok(()) => return,
                    // Its task has ended (its Closed event is on its way): open a new one.
                    Err(mpsc::error::SendError(data)) => {
                        connection.queued.fetch_sub(len, Ordering::Relaxed);
                        data
                    }
                }
            }
            None => data,
        };
        if self.connections.len() >= MAX_CONNECTIONS {
            tracing::warn!("SIP TCP connection to {remote} not opened: {MAX_CONNECTIONS} connections open");
            return;
        }
        self.connect(remote, data);
    }

    fn connect(&mut self, remote: SocketAddr, first: Vec<u8>) {
        self.spawn(remote, Some(first), None, async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::warn!("SIP TCP connection to {remote} failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!("SIP TCP connection to {remote} failed: no answer in {CONNECT_TIMEOUT:?}");
                    None
                }
            }
        });
    }

    /// Registers a connection with `remote` (what is sent meanwhile waits, `first` at its head)
    /// and runs it once `stream` gives its socket; says Closed when it ends or never opens.
    /// `auth` is set for a connection made to us: the signal that it authenticated, and by when
    /// it must.
    fn spawn(
        &mut self,
        remote: SocketAddr,
        first: Option<Vec<u8>>,
        auth: Option<(oneshot::Sender<()>, oneshot::Receiver<()>, tokio::time::Instant)>,
        stream: impl std::future::Future<Output = Option<TcpStream>> + Send + 'static,
    ) {
        let (queue, outgoing) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        if let Some(data) = first {
            queued.fetch_add(data.len(), Ordering::Relaxed);
            let _ = queue.send(data);
        }
        self.next_id += 1;
        let id = self.next_id;
        let (unauthenticated, auth) = match auth {
            Some((signal, wait, deadline)) => (Some(signal), Some((wait, deadline))),
            None => (None, None),
        };
        // A connection replaced under the same address (its task runs on until it ends).
        self.forget(remote);
        if unauthenticated.is_some() {
            self.unauthenticated += 1;
        }
        self.connections.insert(remote, Connection { id, queue, queued: queued.clone(), unauthenticated });
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Some(stream) = stream.await {
                run(stream, remote, Outgoing { queue: outgoing, queued }, auth, &events).await;
            }
            let _ = events.send(TcpEvent::Closed { remote, id }).await;
        });
    }

    /// Stops sending to `remote`'s connection: its queue closes, so its task ends once it has
    /// written what waits (or failed to).
    fn forget(&mut self, remote: SocketAddr) {
        if let Some(connection) = self.connections.remove(&remote) {
            if connection.unauthenticated.is_some() {
                self.unauthenticated -= 1;
            }
        }
    }

    /// A connection's task ended: forget it (unless a newer one to the same address took its
    /// place meanwhile).
    pub fn closed(&mut self, remote: SocketAddr, id: u64) {
        if self.connections.get(&remote).is_some_and(|c| c.id == id) {
            self.forget(remote);
        }
    }
}

/// What the monitor queued for one connection, and how many bytes of it wait.
struct Outgoing {
    queue: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Outgoing {
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let data = self.queue.recv().await?;
        self.queued.fetch_sub(data.len(), Ordering::Relaxed);
        Some(data)
    }
}

/// Writes `data`, within [`WRITE_TIMEOUT`]; false (said in the log) when the connection is to
/// be closed.
async fn write(writer: &mut OwnedWriteHalf, remote: SocketAddr, data: &[u8]) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(data)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!("SIP TCP send to {remote}: {e}");
            false
        }
        Err(_) => {
            tracing::info!("SIP TCP connection with {remote} took nothing written for {WRITE_TIMEOUT:?}: closing it");
            false
        }
    }
}

/// Resolves when the monitor signals (or drops) `signal`; never without one.
async fn signalled(signal: &mut Option<oneshot::Receiver<()>>) {
    match signal {
        Some(signal) => {
            let _ = signal.await;
        }
        None => std::future::pending().await,
    }
}

/// One connection: reads, frames and reports messages; writes what is queued; answers
/// keepalive pings (RFC 5626's CRLFCRLF) with a pong. `auth`: for a connection made to us,
/// the signal that it authenticated and the moment it is closed if it has not.
async fn run(
    stream: TcpStream,
    remote: SocketAddr,
    mut outgoing: Outgoing,
    auth: Option<(oneshot::Receiver<()>, tokio::time::Instant)>,
    events: &mpsc::Sender<TcpEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut decoder = StreamDecoder::new();
    let mut buffer = vec![0u8; 16_384];
    let (mut authenticated, deadline) = match auth {
        Some((signal, deadline)) => (Some(signal), deadline),
        None => (None, tokio::time::Instant::now()),
    };
    loop {
        let waiting_for_auth = authenticated.is_some();
        tokio::select! {
            // Either way (authenticated, or the monitor forgot the connection) no deadline now.
            () = signalled(&mut authenticated) => authenticated = None,
            _ = tokio::time::sleep_until(deadline), if waiting_for_auth => {
                tracing::debug!("SIP TCP connection with {remote} not authenticated in time (tcpauthtimeout): closed");
                return;
            }
            read = tokio::time::timeout(IDLE, reader.read(&mut buffer)) => {
                let len = match read {
                    Ok(Ok(0)) => return,
                    Ok(Ok(len)) => len,
                    Ok(Err(e)) => {
                        tracing::debug!("SIP TCP connection with {remote}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("SIP TCP connection with {remote} idle for {IDLE:?}: closed");
                        return;
                    }
                };
                decoder.push(&buffer[..len]);
                while let Some(item) = decoder.next_item() {
                    match item {
                        Ok(StreamItem::Message(message)) => {
                            if events.send(TcpEvent::Message { remote, message: Box::new(message) }).await.is_err() {
                                return;
                            }
                        }
                        Ok(StreamItem::Ping) => {
                            if !write(&mut writer, remote, PONG).await {
                                return;
                            }
                        }
                        Ok(StreamItem::Pong) => {}
                        Err(error) => {
                            match error.kind {
                                // chan_sip: "Rejecting TCP/TLS packet from '%s' because way too large".
                                ParseErrorKind::TooLarge { .. } | ParseErrorKind::ContentLengthTooLarge { .. } => {
                                    tracing::info!(
                                        "Rejecting TCP packet from '{remote}' because way too large: {error}; closing the connection"
                                    )
                                }
                                _ => tracing::warn!(
                                    "Bad SIP message from {remote} (TCP): {error}; closing the connection"
                                ),
                            }
                            if let Some(response) = error.bad_request() {
                                let _ = write(&mut writer, remote, &response.to_bytes()).await;
                            }
                            return;
                        }
                    }
                }
            }
            data = outgoing.recv() => match data {
                Some(data) => {
                    if !write(&mut writer, remote, &data).await {
                        return;
                    }
                }
                // The monitor is gone (unload), or forgot this connection.
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A peer that takes nothing written, over real sockets: once [`WRITE_QUEUE_BYTES`] wait, the
    /// connection is forgotten (so the queue stops growing), and its task closes it within
    /// [`WRITE_TIMEOUT`] of its last write.
    #[test]
    fn a_peer_that_does_not_read_is_closed() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (mut tcp, mut events) = Tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut peer = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
            let (stream, remote) = tcp.accept().await.unwrap();
            tcp.accepted(stream, remote, Limits { authtimeout: Duration::from_secs(600), authlimit: 10 });
            tcp.authenticated(remote);
            let mut sent = 0usize;
            while tcp.is_connected(remote) && sent < 256 << 20 {
                tcp.send(remote, vec![b'x'; 16_384]);
                sent += 16_384;
                // Let the connection's task take what it can.
                tokio::task::yield_now().await;
            }
            assert!(!tcp.is_connected(remote), "still queueing after {sent} bytes");
            let closed = tokio::time::timeout(2 * WRITE_TIMEOUT, async {
                while let Some(event) = events.recv().await {
                    if let TcpEvent::Closed { remote: r, .. } = event {
                        return r == remote;
                    }
                }
                false
            })
            .await;
            assert_eq!(closed, Ok(true), "the connection's task did not end");
            // The peer reads what the kernel holds, then the end.
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buffer = vec![0u8; 1 << 16];
            let ended = loop {
                match peer.read(&mut buffer) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) => break !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                }
            };
            assert!(ended, "the peer's connection was not closed");
        });
    }

    /// Past `tcpauthlimit` unauthenticated connections a new one is closed at once; an
    /// authenticated one no longer counts, and neither does one that ended.
    #[test]
    fn tcpauthlimit_counts_unauthenticated_connections() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let limits = Limits { authtimeout: Duration::from_secs(600), authlimit: 2 };
            let (mut tcp, mut events) = Tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let accept = async |tcp: &mut Tcp| {
                let peer = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
                let (stream, remote) = tcp.accept().await.unwrap();
                tcp.accepted(stream, remote, limits);
                (peer, remote)
            };
            let (_a, a) = accept(&mut tcp).await;
            let (b_peer, b) = accept(&mut tcp).await;
            let (_c, c) = accept(&mut tcp).await;
            assert!(tcp.is_connected(a) && tcp.is_connected(b), "within the limit");
            assert!(!tcp.is_connected(c), "past the limit: closed at once");
            tcp.authenticated(a);
            let (_d, d) = accept(&mut tcp).await;
            assert!(tcp.is_connected(d), "an authenticated connection no longer counts");
            drop(b_peer);
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
            let Ok(Some(TcpEvent::Closed { remote, id })) = event else { panic!("{event:?}") };
            assert_eq!(remote, b);
            tcp.closed(remote, id);
            let (_e, e) = accept(&mut tcp).await;
            assert!(tcp.is_connected(e), "one that ended no longer counts");
            let (_f, f) = accept(&mut tcp).await;
            assert!(!tcp.is_connected(f), "at the limit again");
        });
    }
}
