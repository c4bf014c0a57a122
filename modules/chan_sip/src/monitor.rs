//! The monitor task: reads the SIP socket, hands every datagram to the transaction layer
//! (`starling_sip::transaction::Endpoint`), sends what it says to send, runs its timers, and
//! dispatches the requests it reports to the `handle_request_*` functions. It never waits on
//! a call's work: calls will run on their own tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::watch;
use starling_core::tokio::time::{sleep_until, Instant as TokioInstant};
use starling_core::{tokio, tracing, Core};
use starling_sip::message::Response;
use starling_sip::transaction::{Endpoint, Event, Transport, TxId};
use starling_sip::{HeaderName, MessageHeaders, Method, Request};

use crate::config::{PeerHost, PeerKind, SipConf};
use crate::registrar::{Bindings, Registrar};

/// The methods chan_sip answers (the `Allow:` header).
pub const ALLOWED_METHODS: &str = "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE";
/// The extensions chan_sip supports (the `Supported:` header).
pub const SUPPORTED: &str = "replaces, timer";

pub struct Monitor {
    pub core: Arc<Core>,
    pub conf: Arc<SipConf>,
    pub socket: Arc<UdpSocket>,
    pub endpoint: Endpoint,
    registrar: Registrar,
    /// Tags for the To headers of our responses.
    tags: u64,
}

/// 16 unpredictable-enough bytes for the digest nonce key (the clock, the pid, an address).
fn nonce_key(seed: u64) -> [u8; 16] {
    let hex = starling_sip::digest::md5_hex(format!("{seed}:{}:{:p}", std::process::id(), &seed).as_bytes());
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    key
}

impl Monitor {
    pub fn new(core: Arc<Core>, conf: Arc<SipConf>, socket: Arc<UdpSocket>, bindings: Bindings) -> Monitor {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let registrar = Registrar::new(&conf.general.realm, nonce_key(seed), bindings, core.db());
        Monitor { core, conf, socket, endpoint: Endpoint::new(Default::default()), registrar, tags: seed }
    }

    fn new_tag(&mut self) -> String {
        self.tags = self.tags.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        format!("as{:08x}", (self.tags >> 32) as u32)
    }

    /// A response to `request` with our To tag and `Server:`.
    fn response(&mut self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        let tag = self.new_tag();
        response.set_to_tag(&tag);
        response.headers.push(HeaderName::Server, self.conf.general.useragent.clone());
        response
    }

    /// Runs until `stop` says so.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; 65_536];
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = self.endpoint.poll_timeout().map(TokioInstant::from_std);
            let sleep = async {
                match deadline {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => {
                        let now = tokio::time::Instant::now().into_std();
                        self.endpoint.handle(now, from, Transport::Udp, &buffer[..len]);
                    }
                    Err(e) => {
                        tracing::warn!("SIP socket: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = housekeeping.tick() => {
                    self.registrar.expire();
                }
                _ = sleep => {
                    // Read the clock rather than trust the timer (tokio's budget may delay it).
                    self.endpoint.handle_timeout(tokio::time::Instant::now().into_std());
                }
            }
            self.drive().await;
        }
    }

    /// Sends what the endpoint queued and handles its events, until both are drained.
    async fn drive(&mut self) {
        loop {
            let mut idle = true;
            while let Some(transmit) = self.endpoint.poll_transmit() {
                idle = false;
                if let Err(e) = self.socket.send_to(&transmit.data, transmit.remote).await {
                    tracing::warn!("SIP send to {}: {e}", transmit.remote);
                }
            }
            while let Some(event) = self.endpoint.poll_event() {
                idle = false;
                self.handle_event(event);
            }
            if idle {
                return;
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Request { tx, request, remote, .. } => self.handle_request(tx, request, remote),
            Event::Malformed { remote, error } => {
                tracing::info!("Bad SIP message from {remote}: {error}");
            }
            _ => {}
        }
    }

    fn handle_request(&mut self, tx: TxId, request: Request, remote: SocketAddr) {
        let now = tokio::time::Instant::now().into_std();
        match request.method {
            Method::Options => self.handle_request_options(tx, &request),
            Method::Register => self.handle_request_register(tx, &request, remote),
            Method::Bye => {
                let response = self.response(&request, 481);
                self.endpoint.send_response(now, tx, response);
            }
            _ => {
                tracing::debug!("{} from {remote}: not implemented yet", request.method);
                let mut response = self.response(&request, 501);
                response.headers.push(HeaderName::Allow, ALLOWED_METHODS);
                self.endpoint.send_response(now, tx, response);
            }
        }
    }

    /// REGISTER: see the registrar's docs for the answers.
    fn handle_request_register(&mut self, tx: TxId, request: &Request, remote: SocketAddr) {
        let now = tokio::time::Instant::now().into_std();
        let name = request.to().and_then(|t| t.uri.user_unescaped().map(|u| u.into_owned())).unwrap_or_default();
        let conf = self.conf.clone();
        let response = match self.registrar.authenticate(&conf, request, &name, now) {
            Ok(()) => {
                let dynamic = conf
                    .peers
                    .iter()
                    .any(|p| p.name == name && p.kind != PeerKind::User && p.host == PeerHost::Dynamic);
                if dynamic {
                    let ok = self.response(request, 200);
                    self.registrar.register(&conf, request, &name, remote, ok)
                } else {
                    // Known and authenticated, but not a peer that registers (host= is static).
                    self.response(request, 403)
                }
            }
            Err((401, stale)) => {
                let mut challenge = self.response(request, 401);
                challenge.headers.push(HeaderName::WwwAuthenticate, self.registrar.challenge(now, stale));
                challenge
            }
            Err((status, _)) => {
                if status == 403 {
                    tracing::info!(
                        "Registration from '{}' failed for '{remote}' - Wrong password",
                        request.headers.get(&HeaderName::From).unwrap_or("")
                    );
                }
                self.response(request, status)
            }
        };
        self.endpoint.send_response(now, tx, response);
    }

    /// OPTIONS, in or out of a dialog: 200 with what we allow, accept and support — unless
    /// the node is draining (`core stop gracefully`), which answers 503 so a dispatcher in
    /// front stops sending calls here.
    fn handle_request_options(&mut self, tx: TxId, request: &Request) {
        let now = tokio::time::Instant::now().into_std();
        let draining = self.core.shutdown_pending().is_some();
        let mut response = self.response(request, if draining { 503 } else { 200 });
        response.headers.push(HeaderName::Allow, ALLOWED_METHODS);
        response.headers.push(HeaderName::Supported, SUPPORTED);
        response.headers.push(HeaderName::Accept, "application/sdp");
        self.endpoint.send_response(now, tx, response);
    }
}
