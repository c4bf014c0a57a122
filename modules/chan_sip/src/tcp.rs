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
//! framed) gets its 400 when one can be formed and is closed, with one log line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use starling_core::tokio::io::{AsyncReadExt, AsyncWriteExt};
use starling_core::tokio::net::{TcpListener, TcpStream};
use starling_core::tokio::sync::mpsc;
use starling_core::{tokio, tracing};
use starling_sip::message::{StreamDecoder, StreamItem, PONG};
use starling_sip::SipMessage;

/// A connection with nothing read for this long is closed.
pub const IDLE: Duration = Duration::from_secs(600);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connections tell the monitor.
#[derive(Debug)]
pub enum TcpEvent {
    /// A message read from `remote`.
    Message { remote: SocketAddr, message: Box<SipMessage> },
    /// The connection to `remote` is gone (closed by either side, idle, failed, never opened).
    Closed { remote: SocketAddr, id: u64 },
}

/// The writing side of one connection.
struct Connection {
    /// Identifies this connection among those that had the same remote address.
    id: u64,
    queue: mpsc::UnboundedSender<Vec<u8>>,
}

/// The TCP side of the monitor.
pub struct Tcp {
    listener: TcpListener,
    connections: HashMap<SocketAddr, Connection>,
    events: mpsc::UnboundedSender<TcpEvent>,
    next_id: u64,
}

impl Tcp {
    /// Listens on `address` (at load: a failure is the module's resource error). Events arrive
    /// on the receiver returned beside it.
    pub fn bind(address: SocketAddr) -> std::io::Result<(Tcp, mpsc::UnboundedReceiver<TcpEvent>)> {
        let socket = std::net::TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket)?;
        let (events, receiver) = mpsc::unbounded_channel();
        Ok((Tcp { listener, connections: HashMap::new(), events, next_id: 0 }, receiver))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The next connection made to us.
    pub async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        self.listener.accept().await
    }

    /// Runs a connection someone made to us.
    pub fn accepted(&mut self, stream: TcpStream, remote: SocketAddr) {
        self.spawn(remote, None, async move { Some(stream) });
    }

    /// Whether a connection to `remote` is open (or being opened).
    pub fn is_connected(&self, remote: SocketAddr) -> bool {
        self.connections.contains_key(&remote)
    }

    /// Sends `data` to `remote` over its connection, opening one when there is none.
    pub fn send(&mut self, remote: SocketAddr, data: Vec<u8>) {
        let data = match self.connections.get(&remote) {
            Some(connection) => match connection.queue.send(data) {
                Ok(()) => return,
                // Its task has ended (its Closed event is on its way): open a new one.
                Err(mpsc::error::SendError(data)) => data,
            },
            None => data,
        };
        self.connect(remote, data);
    }

    fn connect(&mut self, remote: SocketAddr, first: Vec<u8>) {
        self.spawn(remote, Some(first), async move {
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
    fn spawn(
        &mut self,
        remote: SocketAddr,
        first: Option<Vec<u8>>,
        stream: impl std::future::Future<Output = Option<TcpStream>> + Send + 'static,
    ) {
        let (queue, outgoing) = mpsc::unbounded_channel();
        if let Some(data) = first {
            let _ = queue.send(data);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.connections.insert(remote, Connection { id, queue });
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Some(stream) = stream.await {
                run(stream, remote, outgoing, &events).await;
            }
            let _ = events.send(TcpEvent::Closed { remote, id });
        });
    }

    /// A connection's task ended: forget it (unless a newer one to the same address took its
    /// place meanwhile).
    pub fn closed(&mut self, remote: SocketAddr, id: u64) {
        if self.connections.get(&remote).is_some_and(|c| c.id == id) {
            self.connections.remove(&remote);
        }
    }
}

/// One connection: reads, frames and reports messages; writes what is queued; answers
/// keepalive pings (RFC 5626's CRLFCRLF) with a pong.
async fn run(
    stream: TcpStream,
    remote: SocketAddr,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    events: &mpsc::UnboundedSender<TcpEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut decoder = StreamDecoder::new();
    let mut buffer = vec![0u8; 16_384];
    loop {
        tokio::select! {
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
                            if events.send(TcpEvent::Message { remote, message: Box::new(message) }).is_err() {
                                return;
                            }
                        }
                        Ok(StreamItem::Ping) => {
                            if writer.write_all(PONG).await.is_err() {
                                return;
                            }
                        }
                        Ok(StreamItem::Pong) => {}
                        Err(error) => {
                            tracing::warn!("Bad SIP message from {remote} (TCP): {error}; closing the connection");
                            if let Some(response) = error.bad_request() {
                                let _ = writer.write_all(&response.to_bytes()).await;
                            }
                            return;
                        }
                    }
                }
            }
            data = outgoing.recv() => match data {
                Some(data) => {
                    if let Err(e) = writer.write_all(&data).await {
                        tracing::warn!("SIP TCP send to {remote}: {e}");
                        return;
                    }
                }
                // The monitor is gone (unload).
                None => return,
            },
        }
    }
}
