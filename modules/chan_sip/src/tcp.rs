//! SIP over TCP (`tcpenable=yes`) and over TLS (`tlsenable=yes`): the listeners on
//! `tcpbindaddr` and `tlsbindaddr` and the connections, each a small task on the monitor's
//! runtime that cuts its byte stream into messages ([`StreamDecoder`], by Content-Length) and
//! writes what the monitor gives it. A TLS connection is a TCP connection whose task first
//! does the TLS handshake (`crate::tls` holds the rustls configurations) and then runs the
//! same loop over the TLS stream: everything below holds for both.
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
//!   once). Connections we open are never unauthenticated. A TLS handshake counts as part of
//!   that time: one not done by `tcpauthtimeout` closes the connection.
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

use starling_core::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use starling_core::tokio::net::{TcpListener, TcpStream};
use starling_core::tokio::sync::{mpsc, oneshot};
use starling_core::{tokio, tracing};
use starling_sip::message::{ParseErrorKind, StreamDecoder, StreamItem, PONG};
use starling_sip::transaction::Transport;
use starling_sip::SipMessage;

use crate::tls::{TlsContext, TlsSlot};

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
    /// A message read from `remote` (over `transport`: TCP or TLS).
    Message { remote: SocketAddr, transport: Transport, message: Box<SipMessage> },
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
    /// TCP or TLS.
    transport: Transport,
    queue: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes in `queue` not yet taken by the connection's task.
    queued: Arc<AtomicUsize>,
    /// A connection made to us that has not authenticated yet: sending tells its task so.
    unauthenticated: Option<oneshot::Sender<()>>,
}

/// One open connection as `sip show tcp` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionRow {
    pub remote: SocketAddr,
    pub transport: Transport,
    /// Made to us (`Server`) rather than by us (`Client`).
    pub inbound: bool,
}

/// The connections open now, for `sip show tcp` (written by the monitor's [`Tcp`], read by the CLI).
pub type ConnectionTable = Arc<std::sync::Mutex<Vec<ConnectionRow>>>;

/// The connection-oriented side of the monitor: SIP over TCP and over TLS.
pub struct Tcp {
    /// `tcpenable=yes`'s listener.
    listener: Option<TcpListener>,
    /// `tlsenable=yes`'s listener and what TLS is made with (both ways; `sip reload` replaces it).
    tls: Option<(TcpListener, TlsSlot)>,
    connections: HashMap<SocketAddr, Connection>,
    table: ConnectionTable,
    /// The host names addresses were looked up for: what a TLS server there must be.
    names: crate::resolve::ServerNames,
    events: mpsc::Sender<TcpEvent>,
    next_id: u64,
    /// How many of `connections` are unauthenticated.
    unauthenticated: usize,
    /// New connections are being refused (logged once, when it starts).
    refusing: bool,
}

impl Tcp {
    /// Listens for TCP on `tcp` and for TLS on `tls` (with its context), either or both (at
    /// load: a failure is the module's resource error). Events arrive on the receiver returned
    /// beside it.
    pub fn bind(
        tcp: Option<SocketAddr>,
        tls: Option<(SocketAddr, TlsSlot)>,
    ) -> std::io::Result<(Tcp, mpsc::Receiver<TcpEvent>)> {
        let listen = |address: SocketAddr| -> std::io::Result<TcpListener> {
            let socket = std::net::TcpListener::bind(address)?;
            socket.set_nonblocking(true)?;
            TcpListener::from_std(socket)
        };
        let listener = tcp.map(listen).transpose()?;
        let tls = match tls {
            Some((address, context)) => Some((listen(address)?, context)),
            None => None,
        };
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let tcp = Tcp {
            listener,
            tls,
            connections: HashMap::new(),
            table: ConnectionTable::default(),
            names: Default::default(),
            events,
            next_id: 0,
            unauthenticated: 0,
            refusing: false,
        };
        Ok((tcp, receiver))
    }

    /// Where TCP listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref()?.local_addr().ok()
    }

    /// Where TLS listens.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref()?.0.local_addr().ok()
    }

    /// Where the names of the servers we open TLS connections to come from (the resolver's):
    /// a server at an address looked up as `name` must have `name` in its certificate, one
    /// at an address written as such that address.
    pub fn set_server_names(&mut self, names: crate::resolve::ServerNames) {
        self.names = names;
    }

    /// The table `sip show tcp` reads.
    pub fn table(&self) -> ConnectionTable {
        self.table.clone()
    }

    /// Whether `transport` is served (TCP: `tcpenable=yes`; TLS: `tlsenable=yes`).
    pub fn enabled(&self, transport: Transport) -> bool {
        match transport {
            Transport::Tcp => self.listener.is_some(),
            Transport::Tls => self.tls.is_some(),
            Transport::Udp => false,
        }
    }

    /// The next connection made to us, where it comes from (an IPv4-mapped address as IPv4,
    /// as the UDP side sees it) and on which listener (TCP or TLS).
    pub async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr, Transport)> {
        async fn on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
            match listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        }
        let (accepted, transport) = tokio::select! {
            a = on(self.listener.as_ref()) => (a, Transport::Tcp),
            a = on(self.tls.as_ref().map(|(l, _)| l)) => (a, Transport::Tls),
        };
        let (stream, remote) = accepted?;
        Ok((stream, crate::canonical(remote), transport))
    }

    /// Runs a connection someone made to us on `transport`'s listener, unless `limits` or
    /// [`MAX_CONNECTIONS`] say to close it at once (dropping the stream closes it).
    pub fn accepted(&mut self, stream: TcpStream, remote: SocketAddr, transport: Transport, limits: Limits) {
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
        self.spawn(
            remote,
            transport,
            None,
            Some((authenticated, unauthenticated, deadline)),
            async move { Some(stream) },
        );
    }

    /// The transport of the connection with `remote` (open or being opened), if there is one.
    pub fn connected(&self, remote: SocketAddr) -> Option<Transport> {
        self.connections.get(&remote).map(|c| c.transport)
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

    /// Sends `data` to `remote` over its connection, opening one over `transport` when there
    /// is none (a connection there is used whatever its transport: the phone that registered
    /// over TLS is called over its connection). A connection with [`WRITE_QUEUE_BYTES`] already
    /// waiting is closed instead (its peer does not read), and the next send opens a new one.
    pub fn send(&mut self, remote: SocketAddr, transport: Transport, data: Vec<u8>) {
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
        if !self.enabled(transport) {
            tracing::warn!("SIP {} to {remote} not sent: {transport:?} is not enabled", transport.via_name());
            return;
        }
        self.connect(remote, transport, data);
    }

    fn connect(&mut self, remote: SocketAddr, transport: Transport, first: Vec<u8>) {
        self.spawn(remote, transport, Some(first), None, async move {
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
        transport: Transport,
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
        let inbound = unauthenticated.is_some();
        if inbound {
            self.unauthenticated += 1;
        }
        self.connections.insert(remote, Connection { id, transport, queue, queued: queued.clone(), unauthenticated });
        // In place: a table rebuilt at each connection churns the monitor's heap (RSS grows).
        self.table.lock().unwrap_or_else(|p| p.into_inner()).push(ConnectionRow { remote, transport, inbound });
        let events = self.events.clone();
        let tls = match transport {
            Transport::Tls => self.tls.as_ref().map(|(_, slot)| slot.read().unwrap_or_else(|p| p.into_inner()).clone()),
            _ => None,
        };
        let server_name = self
            .names
            .name_of(remote)
            .and_then(|name| rustls::pki_types::ServerName::try_from(name).ok())
            .unwrap_or_else(|| TlsContext::server_name(remote));
        tokio::spawn(async move {
            if let Some(stream) = stream.await {
                let _ = stream.set_nodelay(true);
                let outgoing = Outgoing { queue: outgoing, queued };
                match tls {
                    None => run(stream, remote, Transport::Tcp, outgoing, auth, &events).await,
                    Some(context) => {
                        // A connection made to us has `tcpauthtimeout` for its handshake too.
                        let deadline = auth.as_ref().map(|(_, deadline)| *deadline);
                        if let Some(stream) = handshake(&context, stream, remote, server_name, deadline).await {
                            run(stream, remote, Transport::Tls, outgoing, auth, &events).await;
                        }
                    }
                }
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
            self.table.lock().unwrap_or_else(|p| p.into_inner()).retain(|row| row.remote != remote);
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

/// The TLS handshake on a connection: as the server for one made to us (`deadline` set: by
/// then, `tcpauthtimeout`), as the client for one we opened (verifying the server as
/// `tlsdontverifyserver` says, as `name`). `None`, said in the log, when it fails.
async fn handshake(
    context: &TlsContext,
    stream: TcpStream,
    remote: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    deadline: Option<tokio::time::Instant>,
) -> Option<tokio_rustls::TlsStream<TcpStream>> {
    let shaken = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, context.acceptor.accept(stream)).await {
            Ok(shaken) => shaken.map(tokio_rustls::TlsStream::from),
            Err(_) => {
                tracing::info!("SIP TLS connection from {remote}: no handshake in time (tcpauthtimeout): closed");
                return None;
            }
        },
        None => match tokio::time::timeout(CONNECT_TIMEOUT, context.connector.connect(name, stream)).await {
            Ok(shaken) => shaken.map(tokio_rustls::TlsStream::from),
            Err(_) => {
                tracing::warn!("SIP TLS connection to {remote} failed: no handshake in {CONNECT_TIMEOUT:?}");
                return None;
            }
        },
    };
    match shaken {
        Ok(stream) => {
            tracing::debug!("SIP TLS connection with {remote}: handshake done");
            Some(stream)
        }
        Err(e) => {
            let direction = if deadline.is_some() { "from" } else { "to" };
            tracing::warn!("SIP TLS handshake {direction} {remote} failed: {e}");
            None
        }
    }
}

/// Writes `data`, within [`WRITE_TIMEOUT`] (and flushes it: TLS holds what it has encrypted
/// until then); false (said in the log) when the connection is to be closed.
async fn write(writer: &mut (impl AsyncWrite + Unpin), remote: SocketAddr, data: &[u8]) -> bool {
    let written = async {
        writer.write_all(data).await?;
        writer.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, written).await {
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
    stream: impl AsyncRead + AsyncWrite + Send + Unpin,
    remote: SocketAddr,
    transport: Transport,
    mut outgoing: Outgoing,
    auth: Option<(oneshot::Receiver<()>, tokio::time::Instant)>,
    events: &mpsc::Sender<TcpEvent>,
) {
    let name = transport.via_name();
    let (mut reader, mut writer) = tokio::io::split(stream);
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
                tracing::debug!("SIP {name} connection with {remote} not authenticated in time (tcpauthtimeout): closed");
                return;
            }
            read = tokio::time::timeout(IDLE, reader.read(&mut buffer)) => {
                let len = match read {
                    Ok(Ok(0)) => return,
                    Ok(Ok(len)) => len,
                    Ok(Err(e)) => {
                        tracing::debug!("SIP {name} connection with {remote}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("SIP {name} connection with {remote} idle for {IDLE:?}: closed");
                        return;
                    }
                };
                decoder.push(&buffer[..len]);
                while let Some(item) = decoder.next_item() {
                    match item {
                        Ok(StreamItem::Message(message)) => {
                            let event = TcpEvent::Message { remote, transport, message: Box::new(message) };
                            if events.send(event).await.is_err() {
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
                                        "Rejecting {name} packet from '{remote}' because way too large: {error}; closing the connection"
                                    )
                                }
                                _ => tracing::warn!(
                                    "Bad SIP message from {remote} ({name}): {error}; closing the connection"
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
            let (mut tcp, mut events) = Tcp::bind(Some("127.0.0.1:0".parse().unwrap()), None).unwrap();
            let mut peer = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
            let (stream, remote, transport) = tcp.accept().await.unwrap();
            tcp.accepted(stream, remote, transport, Limits { authtimeout: Duration::from_secs(600), authlimit: 10 });
            tcp.authenticated(remote);
            let mut sent = 0usize;
            while tcp.connected(remote).is_some() && sent < 256 << 20 {
                tcp.send(remote, Transport::Tcp, vec![b'x'; 16_384]);
                sent += 16_384;
                // Let the connection's task take what it can.
                tokio::task::yield_now().await;
            }
            assert!(tcp.connected(remote).is_none(), "still queueing after {sent} bytes");
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
            let (mut tcp, mut events) = Tcp::bind(Some("127.0.0.1:0".parse().unwrap()), None).unwrap();
            let accept = async |tcp: &mut Tcp| {
                let peer = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
                let (stream, remote, transport) = tcp.accept().await.unwrap();
                tcp.accepted(stream, remote, transport, limits);
                (peer, remote)
            };
            let (_a, a) = accept(&mut tcp).await;
            let (b_peer, b) = accept(&mut tcp).await;
            let (_c, c) = accept(&mut tcp).await;
            assert!(tcp.connected(a).is_some() && tcp.connected(b).is_some(), "within the limit");
            assert!(tcp.connected(c).is_none(), "past the limit: closed at once");
            tcp.authenticated(a);
            let (_d, d) = accept(&mut tcp).await;
            assert!(tcp.connected(d).is_some(), "an authenticated connection no longer counts");
            drop(b_peer);
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
            let Ok(Some(TcpEvent::Closed { remote, id })) = event else { panic!("{event:?}") };
            assert_eq!(remote, b);
            tcp.closed(remote, id);
            let (_e, e) = accept(&mut tcp).await;
            assert!(tcp.connected(e).is_some(), "one that ended no longer counts");
            let (_f, f) = accept(&mut tcp).await;
            assert!(tcp.connected(f).is_none(), "at the limit again");
        });
    }
}
