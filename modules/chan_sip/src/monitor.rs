//! The monitor task: reads the SIP socket, hands every datagram to the transaction layer
//! (`starling_sip::transaction::Endpoint`), sends what it says to send, runs its timers, and
//! dispatches the requests it reports to the `handle_request_*` functions. It never waits on
//! a call's work: calls will run on their own tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use starling_core::channel::ChannelState;
use starling_core::frame::Cause;
use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::watch;
use starling_core::tokio::time::{sleep_until, Instant as TokioInstant};
use starling_core::{tokio, tracing, Core};
use starling_sip::message::Response;
use starling_sip::transaction::{Endpoint, Event, Transport, TxId};
use starling_sip::{HeaderName, MessageHeaders, Method, Request};

use std::collections::HashMap;

use starling_core::tokio::sync::mpsc;
use starling_sip::dialog::Dialog;

use crate::call::driver::Direction;
use crate::call::messages::{ToMonitor, ToPvt};
use crate::call::setup::{CallProfile, CallStart};
use crate::call::show::note_message;
use crate::config::{Peer, PeerHost, PeerKind, Qualify, SipConf};
use crate::qualify::{PeerStatus, Qualifier};
use crate::registrar::{BindingChange, Denied, Failure, Registrar};
use crate::registry::{RegState, Registry};
use crate::resolve::{Lookup, Query};
use crate::shared::{CallKey, Shared};
use starling_core::events::Event as CoreEvent;
use starling_core::security::{SecurityEvent, SecurityEventType};

/// The methods chan_sip answers (the `Allow:` header).
/// Asterisk's list, and UPDATE (RFC 3311), which Starling takes inside a dialog.
pub const ALLOWED_METHODS: &str =
    "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE, UPDATE, PRACK";
/// The extensions chan_sip supports (the `Supported:` header): Replaces, and the two a call's
/// session keeps, RFC 4028 session timers and RFC 3262 reliable provisionals (a call whose
/// peer has `session-timers=refuse` answers an INVITE requiring `timer` 420 itself).
pub const SUPPORTED: &str = "replaces, timer, 100rel";

pub struct Monitor {
    pub core: Arc<Core>,
    /// The configuration in force (refreshed from `shared` on every wake, so `sip reload`
    /// applies to the next request).
    pub conf: Arc<SipConf>,
    /// `sip set debug on|ip|peer`: messages in and out go to the console.
    pub debug: Arc<SipDebug>,
    pub socket: Arc<UdpSocket>,
    pub endpoint: Endpoint,
    registrar: Registrar,
    shared: Arc<Shared>,
    /// The calls, by Call-ID and our tag.
    calls: HashMap<CallKey, mpsc::UnboundedSender<ToPvt>>,
    /// Whose each transaction in flight is (until it terminates): a call's, a poke's, a line's.
    owners: HashMap<TxId, Owner>,
    /// Peer poking.
    qualifier: Qualifier,
    /// `register =>` lines.
    registry: Registry,
    /// Each line's latest REGISTER transaction: a new one (a retry after `registertimeout`, to
    /// the next address) makes the old one's late answer, or its Timer F, no longer the line's.
    reg_tx_of_line: HashMap<usize, TxId>,
    /// Registrar addresses (and the extension registered there) to their line: an INVITE from
    /// one is that line's (see `find_caller`).
    registrar_ips: HashMap<std::net::IpAddr, usize>,
    registrar_extens: HashMap<(std::net::IpAddr, String), usize>,
    from_calls: mpsc::UnboundedReceiver<ToMonitor>,
    /// SIP over TCP (`tcpenable=yes`) and TLS (`tlsenable=yes`): the listeners and
    /// connections, and what they read.
    tcp: Option<crate::tcp::Tcp>,
    from_tcp: Option<mpsc::Receiver<crate::tcp::TcpEvent>>,
    /// The addresses of registered peers, when last gathered: past `maxservertransactions`
    /// their requests are still taken (gathered at most once a second, and only then).
    registered: (Option<std::time::Instant>, std::collections::HashSet<SocketAddr>),
    /// Lines about malformed messages: a flood of garbage does not become a flood of log.
    bad_messages: LogBudget,
    /// SUBSCRIBE/NOTIFY: the subscriptions to extension states, by dialog.
    subscriptions: crate::subscriptions::Subscriptions,
    /// The core's message waiting changes (a voicemail module's counts), for `mailbox=` peers.
    mwi: tokio::sync::broadcast::Receiver<starling_core::mwi::MwiState>,
}

/// At most [`LogBudget::LINES`] lines between two housekeeping ticks (a second); the rest are
/// counted and told in one line at the tick.
#[derive(Default)]
struct LogBudget {
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    const LINES: u32 = 20;

    /// Whether one more line may be written now (else it is counted).
    fn take(&mut self) -> bool {
        if self.logged < Self::LINES {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// A new window; what was suppressed in the last one.
    fn renew(&mut self) -> u64 {
        self.logged = 0;
        std::mem::take(&mut self.suppressed)
    }
}

/// `sip set debug`: off, on for every message, or only for one address (`ip X`, `peer X`).
/// The common case (off) costs one atomic load per message.
#[derive(Debug, Default)]
pub struct SipDebug {
    on: std::sync::atomic::AtomicBool,
    only: std::sync::RwLock<Option<(std::net::IpAddr, Option<u16>)>>,
}

impl SipDebug {
    /// Shows everything (`on`), messages with one address (its port, or any port), or nothing.
    pub fn set(&self, on: bool, only: Option<(std::net::IpAddr, Option<u16>)>) {
        *self.only.write().unwrap_or_else(|p| p.into_inner()) = only;
        self.on.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a message to or from `remote` is shown.
    pub fn shows(&self, remote: SocketAddr) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
            && self
                .only
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|(ip, port)| ip == remote.ip() && port.is_none_or(|p| p == remote.port()))
    }
}

impl Monitor {
    pub fn new(
        shared: Arc<Shared>,
        from_calls: mpsc::UnboundedReceiver<ToMonitor>,
        socket: Arc<UdpSocket>,
        tcp: Option<(crate::tcp::Tcp, mpsc::Receiver<crate::tcp::TcpEvent>)>,
    ) -> Monitor {
        let (tcp, from_tcp) = tcp.unzip();
        let conf = shared.conf();
        let core = shared.core.clone();
        let registrar = Registrar::new(
            &conf.general.realm,
            crate::ids::key(),
            Duration::from_secs(u64::from(conf.general.noncelifetime)),
            shared.bindings.clone(),
            core.db(),
        );
        let endpoint = Endpoint::new(starling_sip::transaction::Config {
            max_server_transactions: conf.general.maxservertransactions,
            ..Default::default()
        });
        let mwi = core.mwi().subscribe();
        Monitor {
            core,
            conf,
            debug: Default::default(),
            socket,
            endpoint,
            registrar,
            shared,
            calls: HashMap::new(),
            owners: HashMap::new(),
            qualifier: Qualifier::default(),
            registry: Registry::default(),
            reg_tx_of_line: HashMap::new(),
            registrar_ips: HashMap::new(),
            registrar_extens: HashMap::new(),
            from_calls,
            tcp,
            from_tcp,
            registered: Default::default(),
            bad_messages: LogBudget::default(),
            subscriptions: Default::default(),
            mwi,
        }
    }

    fn new_tag(&mut self) -> String {
        self.shared.new_tag()
    }

    /// A response to `request` with our To tag and `Server:`.
    fn response(&mut self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        let tag = self.new_tag();
        response.set_to_tag(&tag);
        response.headers.push(HeaderName::Server, self.conf.general.useragent.clone());
        response
    }

    /// A 401 with a fresh digest challenge (`stale=true` when the old nonce only expired).
    fn challenge(&mut self, request: &Request, now: std::time::Instant, stale: bool) -> Response {
        let mut challenge = self.response(request, 401);
        challenge.headers.push(HeaderName::WwwAuthenticate, self.registrar.challenge(now, stale));
        challenge
    }

    /// Runs until `stop` says so.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; 65_536];
        self.configure_qualify();
        self.configure_registry();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = [
                self.endpoint.poll_timeout(),
                self.qualifier.poll_timeout(),
                self.registry.poll_timeout(),
                self.subscriptions.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let deadline = deadline.map(TokioInstant::from_std);
            let sleep = async {
                match deadline {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let tcp = self.tcp.as_ref();
            let accept = async move {
                match tcp {
                    Some(tcp) => tcp.accept().await,
                    None => std::future::pending().await,
                }
            };
            let from_tcp = self.from_tcp.as_mut();
            let tcp_event = async move {
                match from_tcp {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => {
                    self.end_subscriptions();
                    self.drive().await;
                    self.unregister_all().await;
                    return;
                }
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => {
                        let from = crate::canonical(from);
                        if self.debug.shows(from) {
                            starling_core::verbose!(
                                0,
                                "\n<--- SIP read from UDP:{from} --->\n{}\n<------------->",
                                String::from_utf8_lossy(&buffer[..len]).trim_end()
                            );
                        }
                        let now = tokio::time::Instant::now().into_std();
                        self.endpoint.handle(now, from, Transport::Udp, &buffer[..len]);
                    }
                    Err(e) => {
                        tracing::warn!("SIP socket: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(message) = self.from_calls.recv() => self.handle_call_message(message),
                changed = self.mwi.recv() => match changed {
                    Ok(state) => self.mwi_changed(&state.mailbox),
                    // Fell behind: every peer with a mailbox is told its counts again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.mwi_changed(""),
                    // The core holds the sender for as long as it lives: not reached.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => self.mwi = self.core.mwi().subscribe(),
                },
                accepted = accept => match accepted {
                    Ok((stream, remote, transport)) => {
                        let g = &self.conf.general;
                        let limits = crate::tcp::Limits {
                            authtimeout: Duration::from_secs(g.tcpauthtimeout.into()),
                            authlimit: g.tcpauthlimit as usize,
                        };
                        if let Some(tcp) = self.tcp.as_mut() {
                            tcp.accepted(stream, remote, transport, limits);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("SIP TCP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(event) = tcp_event => self.handle_tcp_event(event),
                _ = housekeeping.tick() => {
                    self.subscriptions_due();
                    for name in self.registrar.expire() {
                        self.publish_peer_status(&name, "Unregistered", &[("Cause", "Expired".to_owned())]);
                    }
                    let unlogged = self.bad_messages.renew();
                    if unlogged > 0 {
                        tracing::info!("{unlogged} more bad SIP message(s) not logged (at most {} a second)", LogBudget::LINES);
                    }
                    let refused = self.endpoint.take_refused();
                    if refused > 0 {
                        tracing::info!(
                            "Refused {refused} request(s) with 503: {} server transactions in progress \
                             (maxservertransactions={})",
                            self.endpoint.server_transactions(),
                            self.conf.general.maxservertransactions
                        );
                    }
                }
                _ = sleep => {
                    // Read the clock rather than trust the timer (tokio's budget may delay it).
                    self.endpoint.handle_timeout(tokio::time::Instant::now().into_std());
                    self.subscriptions_due();
                }
            }
            let conf = self.shared.conf();
            if !Arc::ptr_eq(&conf, &self.conf) {
                self.endpoint.set_max_server_transactions(conf.general.maxservertransactions);
                self.conf = conf;
                self.configure_qualify();
                self.configure_registry();
                self.subscriptions_after_reload();
            }
            self.qualify_due();
            self.registry_due();
            self.drive().await;
        }
    }

    /// The `register =>` lines of the configuration in force, to the registry; removed lines
    /// that were registered are unregistered (Expires: 0).
    fn configure_registry(&mut self) {
        let now = std::time::Instant::now();
        let g = &self.conf.general;
        let (lines, expiry, timeout, attempts) =
            (self.conf.registrations.clone(), g.defaultexpiry, g.registertimeout, g.registerattempts);
        let removed = self.registry.configure(now, &lines, expiry, timeout, attempts);
        for line in &mut self.registry.lines {
            let peer = line.config.peer.as_deref().and_then(|name| self.conf.peer(name, |_| true));
            line.proxy = match peer {
                Some(peer) => peer.outboundproxy.clone(),
                None => self.conf.general.outboundproxy.clone(),
            };
            line.registrant = peer.and_then(|p| {
                let user = p.fromuser.as_deref().filter(|u| *u != line.config.user)?;
                let domain = p.fromdomain.as_deref().or(line.config.domain.as_deref()).unwrap_or(&line.config.host);
                Some(format!("sip:{user}@{domain}"))
            });
        }
        self.owners.retain(|_, owner| !matches!(owner, Owner::Register(_)));
        self.reg_tx_of_line.clear();
        self.registrar_ips.clear();
        self.registrar_extens.clear();
        for line in removed.into_iter().filter(|l| l.state == RegState::Registered) {
            let mut gone = Registry::default();
            gone.lines.push(line);
            gone.remove(0, now);
            let configured = configured(&gone.lines[0].config.transport);
            if let Some((request, remote)) = self.register_request(&mut gone, 0, None) {
                let transport = self.transport_to(remote, configured);
                self.endpoint.send_request(now, request, remote, transport);
            }
        }
        self.publish_registry();
    }

    /// The REGISTER for line `i` of `registry`, and where it goes.
    fn register_request(
        &self,
        registry: &mut Registry,
        i: usize,
        authorization: Option<(HeaderName, String)>,
    ) -> Option<(Request, SocketAddr)> {
        // Sticky: the address that answered last, until it fails (see `Line::registrar_address`).
        let remote = registry.lines.get(i)?.registrar_address()?;
        let local_ip = self.shared.local_ip_towards(remote);
        let transport = self.transport_to(remote, configured(&registry.lines.get(i)?.config.transport));
        let told = self.shared.advertised_over(local_ip, remote.ip(), transport);
        let branch = crate::ids::branch();
        let now = std::time::Instant::now();
        let request = registry.request(i, now, told, &branch, &self.conf.general.useragent, authorization);
        if let Some(line) = registry.lines.get_mut(i) {
            line.local = Some(SocketAddr::new(local_ip, told.port()));
        }
        Some((request, remote))
    }

    /// `reregister_on`: the account of `peer` registers again at once (the REGISTER goes
    /// when the registry is next asked what is due, right after this message).
    fn reregister(&mut self, peer: &str, status: u16) {
        let conf = self.conf.clone();
        let Some(account) =
            conf.peer(peer, |p| p.kind != crate::config::PeerKind::User).and_then(|p| conf.account_of(p))
        else {
            tracing::debug!("'{peer}' answered {status} to our INVITE, but has no register => line");
            return;
        };
        let now = std::time::Instant::now();
        if let Some(i) = self.registry.lines.iter().position(|line| line.config == *account) {
            if self.registry.reregister(i, now) {
                tracing::info!(
                    "'{peer}' answered {status} to our INVITE: registering {}@{} again",
                    account.user,
                    account.host
                );
            }
        }
    }

    /// Sends the REGISTERs that are due.
    fn registry_due(&mut self) {
        let now = std::time::Instant::now();
        // (It looked at every line at every wake: 7.5 % of Starling's CPU with 2,000 lines and
        // 2,000 qualified peers, issue 29.)
        let (due, timed_out) = self.registry.due_and_timed_out(now);
        // A REGISTER unanswered for registertimeout counts an attempt: chan_sip's
        // sip_reg_timeout publishes the line Unregistered (sent again) or Failed.
        for (i, state) in timed_out {
            self.registry_event(i, Some(state), None);
        }
        for i in due {
            self.send_register(i, None, now);
            self.publish_line(i);
        }
    }

    fn send_register(&mut self, i: usize, authorization: Option<(HeaderName, String)>, now: std::time::Instant) {
        if self.registry.lines.get(i).is_some_and(|l| l.registrar_address().is_none()) {
            // Resolved first, off the monitor: the REGISTER goes when the answer comes back.
            return self.resolve_registrar(i, now);
        }
        let mut registry = std::mem::take(&mut self.registry);
        let request = self.register_request(&mut registry, i, authorization);
        self.registry = registry;
        match request {
            Some((request, remote)) => {
                let mut wanted = Transport::Udp;
                if let Some(line) = self.registry.lines.get_mut(i) {
                    line.registrar = Some(remote);
                    wanted = configured(&line.config.transport);
                    self.registrar_ips.entry(remote.ip()).or_insert(i);
                    self.registrar_extens.entry((remote.ip(), line.config.extension.clone())).or_insert(i);
                }
                let transport = self.transport_to(remote, wanted);
                let tx = self.endpoint.send_request(now, request, remote, transport);
                self.owners.insert(tx, Owner::Register(i));
                if let Some(old) = self.reg_tx_of_line.insert(i, tx) {
                    self.owners.remove(&old);
                }
            }
            None => self.resolve_registrar(i, now),
        }
    }

    /// Looks up where line `i`'s REGISTERs go (its proxy when it has one; the Request-URI still
    /// names the registrar): SRV then A/AAAA, on the core's runtime. The answer comes back as
    /// `ToMonitor::Resolved`.
    fn resolve_registrar(&mut self, i: usize, now: std::time::Instant) {
        if !self.registry.start_resolving(i) {
            return;
        }
        let line = &self.registry.lines[i];
        let (host, port) = match line.proxy.as_deref().and_then(crate::config::split_proxy_port) {
            Some(proxy) => proxy,
            None => (line.config.host.clone(), line.config.port),
        };
        let tcp = line.config.transport != "udp";
        match Query::for_host(&host, port, tcp, self.conf.general.srvlookup) {
            // An address needs no DNS: sent at once.
            Query::Address(address) => {
                if self.registry.resolved(i, now, vec![address]) {
                    self.send_register(i, None, now);
                }
            }
            query => self.spawn_lookup(Lookup::Registrar { call_id: line.call_id().to_owned() }, query),
        }
    }

    /// Starts a DNS lookup on the core's runtime (never waited on here).
    fn spawn_lookup(&self, lookup: Lookup, query: Query) {
        let resolver = self.shared.resolver.clone();
        let to_monitor = self.shared.to_monitor.clone();
        let seed = self.shared.random();
        self.core.runtime().spawn(async move {
            let addresses = resolver.lookup(query, seed).await;
            let _ = to_monitor.send(ToMonitor::Resolved { lookup, addresses });
        });
    }

    /// A lookup started by [`Monitor::spawn_lookup`] is done.
    fn resolved(&mut self, lookup: Lookup, addresses: Vec<SocketAddr>) {
        let now = std::time::Instant::now();
        match lookup {
            Lookup::Registrar { call_id } => {
                // By Call-ID: a reload may have moved the line, or removed it.
                let Some(i) = self.registry.lines.iter().position(|l| l.call_id() == call_id) else { return };
                if self.registry.resolved(i, now, addresses) {
                    self.send_register(i, None, now);
                } else {
                    let line = &self.registry.lines[i].config;
                    tracing::warn!(
                        "Probably a DNS error for registration to {}@{}, trying REGISTER again (after {} seconds)",
                        line.user,
                        line.host,
                        self.conf.general.registertimeout.max(1)
                    );
                }
                self.publish_line(i);
            }
            Lookup::Poke { peer } => self.poke(&peer, addresses.first().copied(), now),
        }
    }

    /// A response to a REGISTER of line `i`.
    fn register_response(&mut self, i: usize, response: &Response) {
        let now = std::time::Instant::now();
        let before = self.registry.lines.get(i).map(|l| l.state);
        let cnonce = crate::ids::cnonce();
        if let Some(authorization) = self.registry.response(i, now, response, &cnonce) {
            self.send_register(i, Some(authorization), now);
        }
        if let Some(line) = self.registry.lines.get(i) {
            let host = crate::registry::host_column(&line.config);
            let who = format!("{}@{host}", line.config.user);
            match line.state {
                RegState::Registered if before != Some(RegState::Registered) => {
                    starling_core::verbose!(2, "Registered SIP '{}' at {host}", line.config.user);
                }
                RegState::Rejected => {
                    tracing::warn!("Registration for '{who}' rejected ({}): wrong credentials?", response.status)
                }
                RegState::NoAuthentication => tracing::warn!("Registration for '{who}': a challenge we cannot answer"),
                RegState::Failed => tracing::warn!("Registration for '{who}' failed: {}", response.status),
                _ => {}
            }
        }
        self.registry_event(i, before, Some(response.status));
        self.publish_line(i);
    }

    /// The manager's Registry event for line `i` after a response with `status` (`None`: no
    /// answer in time), with chan_sip's `regstate2str` texts as `handle_response_register` and
    /// `sip_reg_timeout` publish them: every 200 `Registered` (refreshes too), a final 401, 403
    /// or 407 `No Authentication`, 404, 400, 414, 479 and 493 `Rejected`, an unanswered
    /// REGISTER `Unregistered` (it is sent again) or `Failed` once `registerattempts` are spent.
    /// `Domain` is the line's host, as chan_sip's `hostname`.
    fn registry_event(&self, i: usize, before: Option<RegState>, status: Option<u16>) {
        let Some(line) = self.registry.lines.get(i) else { return };
        let text = match (line.state, status) {
            (RegState::RequestSent | RegState::AuthSent, _) => return,
            (RegState::Registered, Some(200..=299)) => "Registered",
            (RegState::Failed, _) => "Failed",
            (_, None) => "Unregistered",
            (_, Some(401 | 403 | 407)) => "No Authentication",
            (_, Some(400 | 404 | 414 | 479 | 493)) => "Rejected",
            (RegState::Unregistered, _) => "Unregistered",
            (state, _) if before == Some(state) => return,
            (RegState::Registered, _) => "Registered",
            (RegState::NoAuthentication, _) => "No Authentication",
            (RegState::Rejected, _) => "Rejected",
            (RegState::Timeout, _) => "Unregistered",
        };
        self.core.events().publish(
            CoreEvent::new("Registry", "system")
                .with("ChannelType", "SIP")
                .with("Username", line.config.user.clone())
                .with("Domain", line.config.host.clone())
                .with("Status", text),
        );
    }

    /// What `sip show registry` shows, every line (after a reload).
    fn publish_registry(&self) {
        let rows = self.registry.lines.iter().map(registry_row).collect();
        *self.shared.registry.write().unwrap_or_else(|p| p.into_inner()) = rows;
    }

    /// What `sip show registry` shows of line `i` (after a change to it alone).
    fn publish_line(&self, i: usize) {
        let Some(line) = self.registry.lines.get(i) else { return };
        if let Some(row) = self.shared.registry.write().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
            *row = registry_row(line);
        }
    }

    /// At unload and shutdown: `Expires: 0` for every registered line, sent once without waiting.
    async fn unregister_all(&mut self) {
        let now = std::time::Instant::now();
        let registered: Vec<usize> =
            (0..self.registry.lines.len()).filter(|&i| self.registry.lines[i].state == RegState::Registered).collect();
        for i in registered {
            self.registry.remove(i, now);
            let mut registry = std::mem::take(&mut self.registry);
            let request = self.register_request(&mut registry, i, None);
            self.registry = registry;
            if let Some((request, remote)) = request {
                let _ = self.socket.send_to(&request.to_bytes(), remote).await;
            }
        }
    }

    /// The qualified peers of the configuration in force, to the qualifier.
    fn configure_qualify(&mut self) {
        let peers: Vec<(String, u32, u32)> = self
            .conf
            .peers
            .iter()
            .filter(|p| p.kind != PeerKind::User)
            .filter_map(|p| match p.qualify {
                Qualify::Ms(ms) => Some((p.name.clone(), ms, p.qualifyfreq)),
                Qualify::No => None,
            })
            .collect();
        self.qualifier.configure(std::time::Instant::now(), &peers);
        let mut statuses = self.shared.peer_status.write().unwrap_or_else(|p| p.into_inner());
        statuses.clear();
        statuses.extend(self.qualifier.statuses().map(|(n, s)| (n.to_owned(), s)));
    }

    /// Pokes the peers that are due, and notes the ones that did not answer in time.
    fn qualify_due(&mut self) {
        let now = std::time::Instant::now();
        let mut poke = Vec::new();
        let changes = self.qualifier.due(now, &mut poke);
        for change in changes {
            self.owners.retain(|_, owner| !matches!(owner, Owner::Poke(peer) if *peer == change.peer));
            self.status_changed(change);
        }
        for name in poke {
            self.poke_peer(name, now);
        }
    }

    /// Pokes `name` where it is: its static host (looked up off the monitor when a name), the
    /// registered line's address, or its registration.
    fn poke_peer(&mut self, name: String, now: std::time::Instant) {
        let conf = self.conf.clone();
        let remote = match conf.peer(&name, |_| true) {
            Some(peer) => match &peer.host {
                // The trunk of a registered line where the line is; else a name is looked up
                // (off the monitor: the poke goes when the answer comes back).
                PeerHost::Static(host) => match self.shared.sticky_address(&conf, peer) {
                    Some(sticky) => Some(sticky),
                    None => {
                        let tcp = peer.transport != "udp";
                        match Query::for_host(host, peer.port, tcp, conf.general.srvlookup) {
                            Query::Address(address) => Some(address),
                            query => {
                                self.spawn_lookup(Lookup::Poke { peer: name }, query);
                                return;
                            }
                        }
                    }
                },
                PeerHost::Dynamic => self.registrar.bindings().get(&name).map(|b| b.address),
            },
            None => None,
        };
        self.poke(&name, remote, now);
    }

    /// Sends `peer` an OPTIONS at `remote`; with no address, tells the qualifier it could not.
    fn poke(&mut self, name: &str, remote: Option<SocketAddr>, now: std::time::Instant) {
        let Some(remote) = remote else {
            if let Some(change) = self.qualifier.sent(name, now, false) {
                self.status_changed(change);
            }
            return;
        };
        let options = self.options_request(name, remote);
        let wanted = self.conf.peer(name, |_| true).map_or(Transport::Udp, |p| configured(&p.transport));
        let transport = self.transport_to(remote, wanted);
        let tx = self.endpoint.send_request(now, options, remote, transport);
        self.owners.insert(tx, Owner::Poke(name.to_owned()));
        self.qualifier.sent(name, now, true);
    }

    /// An OPTIONS to poke `peer` at `remote`.
    fn options_request(&mut self, peer: &str, remote: SocketAddr) -> Request {
        let local_ip = if self.conf.general.bindaddr.is_unspecified() {
            self.shared.local_ip_towards(remote)
        } else {
            self.conf.general.bindaddr
        };
        let host = starling_sip::uri::Host::from_ip(remote.ip());
        let uri = starling_sip::uri::Uri::sip(Some(peer), host, Some(remote.port()));
        let mut request = Request::new(Method::Options, uri.clone());
        let branch = crate::ids::branch();
        let local = self.shared.advertised(local_ip, remote.ip());
        let via = starling_sip::transaction::via_for(
            Transport::Udp,
            starling_sip::uri::Host::from_ip(local.ip()),
            local.port(),
            &branch,
        );
        request.headers.push(HeaderName::Via, via.to_string());
        request.headers.push(HeaderName::MaxForwards, "70");
        request.headers.push(HeaderName::From, format!("<sip:starling@{local}>;tag={}", self.new_tag()));
        request.headers.push(HeaderName::To, format!("<{uri}>"));
        request.headers.push(HeaderName::Contact, format!("<sip:starling@{local}>"));
        request.headers.push(HeaderName::CallId, crate::ids::call_id(local.ip()));
        request.headers.push(HeaderName::CSeq, "102 OPTIONS");
        request.headers.push(HeaderName::UserAgent, self.conf.general.useragent.clone());
        request.headers.push(HeaderName::Accept, "application/sdp");
        request
    }

    /// A peer's status changed: chan_sip's log line, and the status the CLI and Dial read.
    fn status_changed(&mut self, change: crate::qualify::StatusChange) {
        match change.status {
            PeerStatus::Unreachable | PeerStatus::Lagged { .. } => tracing::warn!("{}", change.log),
            _ => tracing::info!("{}", change.log),
        }
        // The manager's PeerStatus event, with Asterisk's fields.
        let (status, time) = match change.status {
            PeerStatus::Reachable { ms } => ("Reachable", Some(ms)),
            PeerStatus::Lagged { ms } => ("Lagged", Some(ms)),
            PeerStatus::Unreachable => ("Unreachable", None),
            PeerStatus::Unknown | PeerStatus::Unmonitored => ("Unknown", None),
        };
        let time = time.map(|ms| ("Time", ms.to_string()));
        self.publish_peer_status(&change.peer, status, time.as_slice());
        self.shared.peer_status.write().unwrap_or_else(|p| p.into_inner()).insert(change.peer, change.status);
    }

    /// The manager's PeerStatus event (Asterisk's fields: ChannelType, Peer, PeerStatus, then
    /// `Address` for a registration, `Cause` for an expiry, `Time` for a qualify answer).
    fn publish_peer_status(&self, peer: &str, status: &str, extra: &[(&'static str, String)]) {
        let mut event = CoreEvent::new("PeerStatus", "system")
            .with("ChannelType", "SIP")
            .with("Peer", format!("SIP/{peer}"))
            .with("PeerStatus", status);
        for (name, value) in extra {
            event = event.with(name, value.clone());
        }
        self.core.events().publish(event);
        // Registered, expired, reachable or not: SIP/peer's device state may have changed
        // (Asterisk's ast_devstate_changed in register_peer_exten and sip_poke_peer).
        self.core.devstate_changed(&format!("SIP/{peer}"));
    }

    /// The OPTIONS transaction `tx` to a peer ended without a response.
    fn poke_failed(&mut self, peer: &str) {
        if let Some(change) = self.qualifier.failed(peer, std::time::Instant::now()) {
            self.status_changed(change);
        }
    }

    /// Sends what the endpoint queued and handles its events, until both are drained.
    async fn drive(&mut self) {
        loop {
            let mut idle = true;
            while let Some(transmit) = self.endpoint.poll_transmit() {
                idle = false;
                if self.debug.shows(transmit.remote) {
                    starling_core::verbose!(
                        0,
                        "\n<--- Transmitting to {} --->\n{}\n<------------>",
                        transmit.remote,
                        String::from_utf8_lossy(&transmit.data).trim_end()
                    );
                }
                match (transmit.transport, self.tcp.as_mut()) {
                    (Transport::Tcp | Transport::Tls, Some(tcp)) => {
                        tcp.send(transmit.remote, transmit.transport, transmit.data)
                    }
                    _ => {
                        if let Err(e) = self.socket.send_to(&transmit.data, transmit.remote).await {
                            tracing::warn!("SIP send to {}: {e}", transmit.remote);
                        }
                    }
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

    /// A message read from a TCP or TLS connection goes to the transaction layer as a
    /// datagram would; a closed connection is forgotten.
    fn handle_tcp_event(&mut self, event: crate::tcp::TcpEvent) {
        match event {
            crate::tcp::TcpEvent::Message { remote, transport, message } => {
                if self.debug.shows(remote) {
                    starling_core::verbose!(
                        0,
                        "\n<--- SIP read from {}:{remote} --->\n{}\n<------------->",
                        transport.via_name(),
                        String::from_utf8_lossy(&message.to_bytes()).trim_end()
                    );
                }
                let now = tokio::time::Instant::now().into_std();
                self.endpoint.handle_message(now, remote, transport, *message);
            }
            crate::tcp::TcpEvent::Closed { remote, id } => {
                if let Some(tcp) = self.tcp.as_mut() {
                    tcp.closed(remote, id);
                }
            }
        }
    }

    /// A request from `remote` was authenticated (chan_sip's `req->authenticated`): a TCP
    /// connection it came on is no longer held to `tcpauthtimeout`/`tcpauthlimit`.
    fn tcp_authenticated(&mut self, remote: SocketAddr) {
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.authenticated(remote);
        }
    }

    /// The transport towards `remote`: that of a connection already open with it (TCP or
    /// TLS), else the one the configuration asks for there (`transport=`, a `tcp://` or
    /// `tls://` line) when it is enabled; else UDP.
    fn transport_to(&self, remote: SocketAddr, wanted: Transport) -> Transport {
        match &self.tcp {
            Some(tcp) => match tcp.connected(remote) {
                Some(open) => open,
                None if tcp.enabled(wanted) => wanted,
                None => Transport::Udp,
            },
            None => Transport::Udp,
        }
    }

    /// The transport for what a call sends to `remote`: over an open connection, or the one a
    /// peer there says (`transport=tcp`, `transport=tls`).
    fn call_transport(&self, remote: SocketAddr) -> Transport {
        let wanted = self
            .conf
            .peers_at(remote.ip())
            .find(|p| p.transport != "udp" && p.port.unwrap_or(5060) == remote.port())
            .map_or(Transport::Udp, |p| configured(&p.transport));
        self.transport_to(remote, wanted)
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Request { tx, request, remote, .. } => self.handle_request(tx, request, remote),
            Event::Ack { request, .. } => {
                if let Some(call) = key_of_request(&request).and_then(|key| self.calls.get(&key)) {
                    note_message(&self.shared.table, request.call_id().unwrap_or(""), "Rx: ACK");
                    let _ = call.send(ToPvt::Request { tx: None, request: Box::new(request) });
                }
            }
            Event::Response { tx, response } => match self.owners.get_mut(&tx) {
                Some(Owner::Register(line)) => {
                    let line = *line;
                    if response.status >= 200 {
                        self.owners.remove(&tx);
                    }
                    self.register_response(line, &response);
                }
                Some(Owner::Poke(_)) => {
                    let Some(Owner::Poke(peer)) = self.owners.remove(&tx) else { return };
                    // Any response, even 404 or 501, says the peer is there.
                    if let Some(change) = self.qualifier.answered(&peer, std::time::Instant::now()) {
                        self.status_changed(change);
                    } else {
                        let status = self.qualifier.status(&peer);
                        if let Some(status) = status {
                            self.shared.peer_status.write().unwrap_or_else(|p| p.into_inner()).insert(peer, status);
                        }
                    }
                }
                Some(Owner::CallRequest(key, _)) => {
                    if let Some(call) = self.calls.get(key) {
                        if response.status >= 200 {
                            let method = response.cseq().map_or(String::new(), |c| c.method.as_str().to_owned());
                            note_message(
                                &self.shared.table,
                                response.call_id().unwrap_or(""),
                                &format!("Rx: {method}"),
                            );
                        }
                        let _ = call.send(ToPvt::Response(Box::new(response)));
                    }
                }
                Some(Owner::Notify(key, _)) => {
                    let key = key.clone();
                    if response.status >= 200 {
                        self.owners.remove(&tx);
                    }
                    let now = tokio::time::Instant::now().into_std();
                    if let Some(entry) = self.subscriptions.map.get_mut(&key) {
                        entry.sub.handle_response(now, response);
                        self.pump_subscription(&key);
                    }
                }
                Some(Owner::Mwi(peer)) => {
                    if response.status >= 200 {
                        if response.status >= 300 {
                            tracing::debug!("MWI NOTIFY to '{peer}' answered {}", response.status);
                        }
                        self.owners.remove(&tx);
                    }
                }
                Some(Owner::CallInvite(_)) | None => {}
            },
            Event::StrayResponse { response, .. } => {
                // A 2xx retransmitted after its transaction ended: the call re-sends its ACK.
                let key = response.call_id().zip(response.from().and_then(|f| f.tag().map(str::to_owned)));
                let key =
                    key.map(|(call_id, local_tag)| CallKey { call_id: call_id.into(), local_tag: local_tag.into() });
                if let Some(call) = key.and_then(|key| self.calls.get(&key)) {
                    let _ = call.send(ToPvt::Response(Box::new(response)));
                }
            }
            Event::Cancelled { tx, request } => {
                if let Some(Owner::CallInvite(key)) = self.owners.get(&tx) {
                    if let Some(call) = self.calls.get(key) {
                        let _ = call.send(ToPvt::Request { tx: None, request: Box::new(request) });
                    }
                }
            }
            Event::Terminated { tx, reason } => {
                use starling_sip::transaction::TerminationReason;
                let unanswered = matches!(reason, TerminationReason::Timeout | TerminationReason::TransportError);
                match self.owners.remove(&tx) {
                    Some(Owner::Poke(peer)) if unanswered => self.poke_failed(&peer),
                    Some(Owner::Register(line)) if unanswered => {
                        if let Some(l) = self.registry.lines.get(line) {
                            tracing::info!(
                                "Registration for '{}@{}' timed out, trying again",
                                l.config.user,
                                l.config.host
                            );
                        }
                        let before = self.registry.lines.get(line).map(|l| l.state);
                        self.registry.timeout(line, std::time::Instant::now());
                        self.registry_event(line, before, None);
                        self.publish_line(line);
                    }
                    Some(Owner::CallRequest(key, cseq)) if unanswered => {
                        if let Some(call) = self.calls.get(&key) {
                            let _ = call.send(ToPvt::Timeout(cseq));
                        }
                    }
                    Some(Owner::Notify(key, seq)) if unanswered => {
                        let now = tokio::time::Instant::now().into_std();
                        if let Some(entry) = self.subscriptions.map.get_mut(&key) {
                            entry.sub.handle_transaction_timeout(now, seq);
                            self.pump_subscription(&key);
                        }
                    }
                    _ => {}
                }
            }
            Event::Malformed { remote, error } => {
                if self.bad_messages.take() {
                    tracing::info!("Bad SIP message from {remote}: {error}");
                }
            }
            Event::Overloaded { request, remote, transport } => {
                let now = tokio::time::Instant::now().into_std();
                if self.vouched_for(&request, remote, now) {
                    self.endpoint.accept(now, request, remote, transport);
                } else {
                    self.endpoint.refuse(request, remote, transport);
                }
            }
        }
    }

    /// Whether a request that came past `maxservertransactions` is still taken: one in a call
    /// of ours, or from a peer we know (a static host, a registered address, a registrar we
    /// register with). Strangers are refused with 503 until transactions end.
    fn vouched_for(&mut self, request: &Request, remote: SocketAddr, now: std::time::Instant) -> bool {
        if key_of_request(request).is_some_and(|key| self.calls.contains_key(&key)) {
            return true;
        }
        if self.conf.peers_at(remote.ip()).next().is_some() || self.registrar_ips.contains_key(&remote.ip()) {
            return true;
        }
        let stale = self.registered.0.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if stale {
            let addresses = self.registrar.bindings().values().map(|b| b.address).collect();
            self.registered = (Some(now), addresses);
        }
        self.registered.1.contains(&remote)
    }

    fn handle_request(&mut self, tx: TxId, request: Request, remote: SocketAddr) {
        let now = tokio::time::Instant::now().into_std();
        // RFC 3261 §8.2.2.3: an extension we do not support that the request requires is a 420.
        let unsupported: Vec<&str> = request
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|option| !option.is_empty() && !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(option)))
            .collect();
        if !unsupported.is_empty() {
            let mut response = self.response(&request, 420);
            response.headers.push(HeaderName::Unsupported, unsupported.join(", "));
            return self.endpoint.send_response(now, tx, response);
        }
        // RFC 3261 §19.1.1: a Request-URI carries no headers (RFC 4475 §3.1.2.12, `escruri`):
        // 400, before any authentication.
        if !request.uri.headers.is_empty() {
            if self.bad_messages.take() {
                tracing::info!("Bad SIP message from {remote}: headers in the Request-URI");
            }
            let mut response = Response::to_request(&request, 400);
            response.reason = "Bad Request - headers in the Request-URI".into();
            let tag = self.new_tag();
            response.set_to_tag(&tag);
            return self.endpoint.send_response(now, tx, response);
        }
        match request.method {
            Method::Options => self.handle_request_options(tx, &request),
            Method::Register => self.handle_request_register(tx, &request, remote),
            Method::Invite if request.to().is_some_and(|t| t.tag().is_none()) => {
                self.handle_request_invite(tx, request, remote)
            }
            Method::Invite | Method::Bye | Method::Info | Method::Refer | Method::Update | Method::Prack => {
                // A request inside a call is authenticated, as chan_sip's `p->owner` makes it.
                let call = key_of_request(&request).and_then(|key| self.calls.get(&key)).cloned();
                match call {
                    Some(call) => {
                        self.tcp_authenticated(remote);
                        let call_id = request.call_id().unwrap_or("");
                        note_message(&self.shared.table, call_id, &format!("Rx: {}", request.method));
                        let _ = call.send(ToPvt::Request { tx: Some(tx), request: Box::new(request) });
                    }
                    None => {
                        let response = self.response(&request, 481);
                        self.endpoint.send_response(now, tx, response);
                    }
                }
            }
            Method::Message => {
                // As chan_sip: a MESSAGE inside a call is taken (202; there are no text frames
                // here, so its text is logged); outside one it is not allowed
                // (accept_outofcall_message=no).
                let in_call = key_of_request(&request).is_some_and(|key| self.calls.contains_key(&key));
                let status = if in_call {
                    tracing::info!(
                        "MESSAGE on {}: {}",
                        request.call_id().unwrap_or(""),
                        String::from_utf8_lossy(&request.body)
                    );
                    202
                } else {
                    405
                };
                let mut response = self.response(&request, status);
                if status == 405 {
                    response.headers.push(HeaderName::Allow, ALLOWED_METHODS);
                }
                self.endpoint.send_response(now, tx, response);
            }
            Method::Subscribe => self.handle_request_subscribe(tx, request, remote),
            Method::Publish | Method::Notify => {
                let response = self.event_response(&request);
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

    /// SUBSCRIBE (other than to `presence` and `dialog`, see `handle_request_subscribe`),
    /// PUBLISH and NOTIFY, as chan_sip answers them without mailboxes or an event state
    /// compositor: a subscription to a mailbox (`message-summary`) finds none (404); NOTIFYs of the keep-alive kinds
    /// phones send, and of a transfer's progress, are taken (200); any other event package is
    /// `489 Bad Event`.
    fn event_response(&mut self, request: &Request) -> Response {
        let event = request.headers.get(&HeaderName::Event).unwrap_or("");
        let package = event.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let status = match (&request.method, package.as_str()) {
            (Method::Subscribe, "message-summary") => 404,
            (Method::Notify, "keep-alive" | "check-sync" | "message-summary" | "refer") => 200,
            _ => 489,
        };
        let mut response = self.response(request, status);
        if status == 489 {
            response.headers.push(HeaderName::AllowEvents, "presence, dialog, message-summary, refer");
        }
        response
    }

    /// REGISTER: see the registrar's docs for the answers. Failures are logged as chan_sip
    /// logs them (`Registration from '<From>' failed for '<addr:port>' - <reason>`, NOTICE,
    /// what fail2ban's asterisk filter reads) and reported as security events.
    fn handle_request_register(&mut self, tx: TxId, request: &Request, remote: SocketAddr) {
        let now = tokio::time::Instant::now().into_std();
        let name = request.to().and_then(|t| t.uri.user_unescaped().map(|u| u.into_owned())).unwrap_or_default();
        let from = request.headers.get(&HeaderName::From).unwrap_or("").to_owned();
        let conf = self.conf.clone();
        let peer = conf.peer(&name, |p| p.kind != PeerKind::User);
        // A peer whose permit/deny refuses the source is answered as an unknown name is (no
        // hint that it exists), as Asterisk's AUTH_ACL_FAILED with alwaysauthreject.
        let acl_refused = peer.is_some_and(|p| !starling_core::acl::allows(&p.acl, remote.ip()));
        let peer = peer.filter(|_| !acl_refused);
        if acl_refused {
            tracing::info!(target: "chan_sip.c", "Registration from '{from}' failed for '{remote}' - Device does not match ACL");
            self.report(SecurityEventType::FailedAcl, request, remote, &name, vec![("ACLName", "peer_acl".into())]);
        }
        if peer.is_none() && !conf.general.alwaysauthreject {
            // chan_sip's register_verify with alwaysauthreject=no: an unknown name (and one its
            // ACL refuses) is told at once, without a challenge.
            if !acl_refused {
                tracing::info!(target: "chan_sip.c", "Registration from '{from}' failed for '{remote}' - No matching peer found");
                self.report(SecurityEventType::InvalidAccountId, request, remote, &name, Vec::new());
            }
            let response = self.not_found(request);
            return self.endpoint.send_response(now, tx, response);
        }
        let response = match self.registrar.authenticate(peer.map(|p| &**p), request, &name, now) {
            Ok(using_password) => {
                let dynamic = peer.is_some_and(|p| p.host == PeerHost::Dynamic);
                // chan_sip's check_request_transport: over a transport `transport=` does not
                // list, an authenticated REGISTER is refused (AUTH_BAD_TRANSPORT).
                let arrived = self.tcp.as_ref().and_then(|t| t.connected(remote)).unwrap_or(Transport::Udp);
                let arrived_name = arrived.via_name();
                let refused_transport = peer.filter(|p| !p.allows_transport(arrived_name));
                if let Some(p) = refused_transport {
                    tracing::error!(
                        target: "chan_sip.c",
                        "'{arrived_name}' is not a valid transport for '{name}'. we only use '{}'! ending call.",
                        p.transport_list()
                    );
                    tracing::info!(
                        target: "chan_sip.c",
                        "Registration from '{from}' failed for '{remote}' - Device not configured to use this transport type"
                    );
                    self.response(request, 403)
                } else if dynamic {
                    self.tcp_authenticated(remote);
                    self.report(
                        SecurityEventType::SuccessfulAuth,
                        request,
                        remote,
                        &name,
                        vec![("UsingPassword", u8::from(using_password).to_string())],
                    );
                    let ok = self.response(request, 200);
                    let (response, change) = self.registrar.register(&conf, request, &name, remote, ok);
                    let registered = match change {
                        Some(BindingChange::Registered(address)) => {
                            self.publish_peer_status(&name, "Registered", &[("Address", address.to_string())]);
                            true
                        }
                        Some(BindingChange::Unregistered) => {
                            self.publish_peer_status(&name, "Unregistered", &[]);
                            false
                        }
                        None => self.registrar.bindings().contains_key(&name),
                    };
                    if registered && response.status == 200 {
                        // chan_sip sends the counts after every registration (the 200 first).
                        self.endpoint.send_response(now, tx, response);
                        if !self.notify_mwi_subscriptions(&name, now) {
                            self.send_mwi(&name, now);
                        }
                        return;
                    }
                    response
                } else {
                    // Known and authenticated, but not a peer that registers (host= is static).
                    tracing::info!(
                        target: "chan_sip.c",
                        "Registration from '{from}' failed for '{remote}' - Peer is not supposed to register"
                    );
                    self.response(request, 403)
                }
            }
            Err(denied) => self.refuse_credentials(request, remote, &name, denied, !acl_refused, now),
        };
        self.endpoint.send_response(now, tx, response);
    }

    /// The answer to credentials the registrar did not accept, logged and reported: 401 with
    /// a new challenge, 400 for a digest `uri` that is not the Request-URI, or 403. `log`:
    /// whether a 403 is logged (not when the ACL refusal was already).
    fn refuse_credentials(
        &mut self,
        request: &Request,
        remote: SocketAddr,
        name: &str,
        denied: Denied,
        log: bool,
        now: std::time::Instant,
    ) -> Response {
        let from = request.headers.get(&HeaderName::From).unwrap_or("").to_owned();
        let register = request.method == Method::Register;
        match denied {
            Denied::Challenge { stale } => {
                let response = self.challenge(request, now, stale);
                let nonce = response
                    .headers
                    .get(&HeaderName::WwwAuthenticate)
                    .and_then(starling_sip::digest::Challenge::parse)
                    .map(|c| c.nonce)
                    .unwrap_or_default();
                self.report(SecurityEventType::ChallengeSent, request, remote, name, vec![("Challenge", nonce)]);
                response
            }
            Denied::UriMismatch { uri, request_uri } => {
                tracing::info!(
                    target: "chan_sip.c",
                    "Digest uri '{uri}' from '{from}' ({remote}) does not match the Request-URI '{request_uri}': 400"
                );
                self.report(
                    SecurityEventType::ChallengeResponseFailed,
                    request,
                    remote,
                    name,
                    vec![("Challenge", String::new()), ("Response", uri), ("ExpectedResponse", request_uri)],
                );
                let mut response = self.response(request, 400);
                response.reason = "Bad Request".into();
                response
            }
            Denied::Forbidden { failure, username, nonce, response } => {
                if log {
                    if register {
                        tracing::info!(
                            target: "chan_sip.c",
                            "Registration from '{from}' failed for '{remote}' - {}",
                            failure.reason()
                        );
                    } else {
                        tracing::info!(target: "chan_sip.c", "Failed to authenticate device {from}");
                    }
                    let account = if username.is_empty() { name.to_owned() } else { username };
                    match failure {
                        Failure::WrongPassword => self.report(
                            SecurityEventType::InvalidPassword,
                            request,
                            remote,
                            &account,
                            vec![
                                ("Challenge", nonce.clone()),
                                ("ReceivedChallenge", nonce),
                                ("ReceivedHash", response),
                            ],
                        ),
                        Failure::UnknownName | Failure::UsernameMismatch => {
                            self.report(SecurityEventType::InvalidAccountId, request, remote, &account, Vec::new())
                        }
                    }
                }
                if register && failure == Failure::UsernameMismatch && !self.conf.general.alwaysauthreject {
                    // chan_sip's AUTH_USERNAME_MISMATCH without alwaysauthreject: "404 Not found".
                    return self.not_found(request);
                }
                self.response(request, 403)
            }
        }
    }

    /// chan_sip's `404 Not found` to a REGISTER for a name it will not take.
    fn not_found(&mut self, request: &Request) -> Response {
        let mut response = self.response(request, 404);
        response.reason = "Not found".into();
        response
    }

    /// Reports a security event about `request` from `remote` (Service `SIP`).
    fn report(
        &self,
        kind: SecurityEventType,
        request: &Request,
        remote: SocketAddr,
        account: &str,
        fields: Vec<(&'static str, String)>,
    ) {
        if !starling_core::security::wanted(self.core.events()) {
            return;
        }
        let transport = match request
            .headers
            .get(&HeaderName::Via)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("TCP") => "TCP",
            Some("TLS") => "TLS",
            _ => "UDP",
        };
        let session = starling_sip::digest::md5_hex(request.call_id().unwrap_or("").as_bytes());
        let event = SecurityEvent {
            kind,
            service: "SIP",
            account_id: account.to_owned(),
            session_id: format!("0x{}", &session[..12]),
            transport,
            local: SocketAddr::new(self.local_ip(request), self.conf.general.bindport),
            remote,
            fields,
        };
        starling_core::security::report(self.core.events(), &event);
    }

    /// Answers an INVITE as for a name that does not exist: a challenge (the registrar's fake
    /// one, with the same work as a real check), then 403 to whatever answers it.
    /// With `alwaysauthreject=no` there is no pretending: 403 at once, as chan_sip's
    /// check_user_full (AUTH_SECRET_FAILED for an unknown caller without guests).
    fn answer_as_unknown(&mut self, tx: TxId, request: &Request, remote: SocketAddr, now: std::time::Instant) {
        let name = request.from().and_then(|f| f.uri.user_unescaped().map(|u| u.into_owned())).unwrap_or_default();
        if !self.conf.general.alwaysauthreject {
            let from = request.headers.get(&HeaderName::From).unwrap_or("").to_owned();
            tracing::info!(target: "chan_sip.c", "Failed to authenticate device {from}");
            self.report(SecurityEventType::InvalidAccountId, request, remote, &name, Vec::new());
            let response = self.response(request, 403);
            return self.endpoint.send_response(now, tx, response);
        }
        let response = match self.registrar.authenticate(None, request, &name, now) {
            Err(denied) => self.refuse_credentials(request, remote, &name, denied, true, now),
            Ok(_) => self.response(request, 403),
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

/// Calls: the INVITE that starts one, and what calls ask of the transaction layer.
impl Monitor {
    fn handle_call_message(&mut self, message: ToMonitor) {
        let now = tokio::time::Instant::now().into_std();
        match message {
            ToMonitor::Respond { tx, response } => self.endpoint.send_response(now, tx, response),
            ToMonitor::Qualify { peer } => {
                // A peer with qualify=no gets one OPTIONS all the same, as chan_sip's
                // sip_poke_peer(peer, force) (its answer changes no status).
                let now = std::time::Instant::now();
                if !self.qualifier.poke_now(&peer, now) {
                    self.poke_peer(peer, now);
                }
            }
            ToMonitor::Reregister { peer, status } => self.reregister(&peer, status),
            ToMonitor::Resolved { lookup, addresses } => self.resolved(lookup, addresses),
            ToMonitor::NewCall { key, to_pvt } => {
                self.calls.insert(key, to_pvt);
            }
            ToMonitor::Request { request, remote } => {
                note_message(&self.shared.table, request.call_id().unwrap_or(""), &format!("Tx: {}", request.method));
                let key =
                    request.call_id().map(str::to_owned).zip(request.from().and_then(|f| f.tag().map(str::to_owned)));
                let cseq = request.cseq();
                let transport = self.call_transport(remote);
                let tx = self.endpoint.send_request(now, request, remote, transport);
                if let (Some((call_id, local_tag)), Some(cseq)) = (key, cseq) {
                    self.owners.insert(
                        tx,
                        Owner::CallRequest(CallKey { call_id: call_id.into(), local_tag: local_tag.into() }, cseq),
                    );
                }
            }
            ToMonitor::Stateless { message, remote } => {
                let transport = self.call_transport(remote);
                self.endpoint.send_stateless(remote, transport, &message);
            }
            ToMonitor::ExtensionState { key, state } => self.extension_state_changed(&key, state),
            ToMonitor::Gone { key, peer } => {
                self.calls.remove(&key);
                self.shared.table.write().unwrap_or_else(|p| p.into_inner()).remove(&*key.call_id);
                // Its transactions stay in `owners` until they terminate (Timer B/F/H/J/K): what
                // they still bring finds no call. (Scanning the map here was O(transactions in
                // flight) at every hangup.)
                self.shared.release_call_slot(&peer);
            }
        }
    }

    /// Who is calling: a user or friend named in From, else a peer at the source address
    /// (a static host, or a dynamic peer's registration).
    fn find_caller(&self, request: &Request, remote: SocketAddr) -> Option<Arc<Peer>> {
        let from_user = request.from().and_then(|f| f.uri.user_unescaped().map(|u| u.into_owned()));
        if let Some(user) = from_user {
            if let Some(p) = self.conf.peer(&user, |p| p.kind != PeerKind::Peer) {
                return Some(p.clone());
            }
        }
        let bindings = self.registrar.bindings();
        self.conf
            .peers_at(remote.ip())
            .find(|p| p.kind != PeerKind::User && (p.insecure.port || p.port.unwrap_or(5060) == remote.port()))
            .or_else(|| {
                // A dynamic peer registered from there.
                let (name, _) = bindings.iter().find(|(_, b)| b.address == remote)?;
                self.conf.peer(name, |p| p.kind != PeerKind::User && p.host == PeerHost::Dynamic)
            })
            .or_else(|| {
                // A call from the registrar of a `register => peer?...` line is that peer's.
                let exten = request.uri.user_unescaped();
                let name = self.registration_from(remote, exten.as_deref())?.config.peer.as_ref()?;
                self.conf.peer(name, |p| p.kind != PeerKind::User)
            })
            .cloned()
    }

    /// The `register =>` line whose registrar `remote` is (by address: a trunk's calls come
    /// from its registrar's host, not always from its port).
    /// (The line whose extension the Request-URI names, when several register there.)
    fn registration_from(&self, remote: SocketAddr, exten: Option<&str>) -> Option<&crate::registry::Line> {
        let by_exten = exten.and_then(|e| self.registrar_extens.get(&(remote.ip(), e.to_owned())));
        by_exten.or_else(|| self.registrar_ips.get(&remote.ip())).and_then(|&i| self.registry.lines.get(i))
    }

    /// chan_sip's check_user_full for a request from `caller` (the peer found by From user, then
    /// source address; `None`: a guest). The peer's `permit`/`deny` first: a refusal is reported
    /// and answered `403`, or with `alwaysauthreject` as an unknown name is (nothing tells the
    /// caller the name exists, Asterisk's transmit_fake_auth_response). Then its digest, when
    /// `digest` and it has a secret: challenged, refused with the reason, or reported as a
    /// success. A guest is let in when `guest_ok`, else challenged like a known name and refused.
    /// False when the request has been answered; true when it goes on (a TCP or TLS connection
    /// then counts as authenticated).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        tx: TxId,
        request: &Request,
        remote: SocketAddr,
        caller: Option<&Peer>,
        digest: bool,
        guest_ok: bool,
        now: std::time::Instant,
    ) -> bool {
        if let Some(peer) = caller.filter(|p| !starling_core::acl::allows(&p.acl, remote.ip())) {
            let from = request.headers.get(&HeaderName::From).unwrap_or("");
            self.report(
                SecurityEventType::FailedAcl,
                request,
                remote,
                &peer.name,
                vec![("ACLName", "peer_acl".into())],
            );
            if self.conf.general.alwaysauthreject {
                tracing::info!(target: "chan_sip.c", "Sending fake auth rejection for device {from}");
                self.answer_as_unknown(tx, request, remote, now);
            } else {
                tracing::info!(target: "chan_sip.c", "Failed to authenticate device {from}");
                let response = self.response(request, 403);
                self.endpoint.send_response(now, tx, response);
            }
            return false;
        }
        match caller {
            Some(peer) if digest && (peer.secret.is_some() || peer.md5secret.is_some()) => {
                match self.registrar.authenticate(Some(peer), request, &peer.name, now) {
                    Ok(using_password) => self.report(
                        SecurityEventType::SuccessfulAuth,
                        request,
                        remote,
                        &peer.name,
                        vec![("UsingPassword", u8::from(using_password).to_string())],
                    ),
                    Err(denied) => {
                        let response = self.refuse_credentials(request, remote, &peer.name, denied, true, now);
                        self.endpoint.send_response(now, tx, response);
                        return false;
                    }
                }
            }
            Some(_) => {}
            None if guest_ok => {}
            None => {
                self.answer_as_unknown(tx, request, remote, now);
                return false;
            }
        }
        self.tcp_authenticated(remote);
        true
    }

    /// What a subscription from `remote` (over `transport`) to `user` (the extension watched,
    /// or the mailbox's `vmexten`) sends with: our Via and Contact as the subscriber reaches us,
    /// `[general]`'s expiry bounds; and our address as the subscriber sees it. The subscriptions
    /// to one extension through one of our addresses share it (until a reload).
    fn subscription_config(
        &mut self,
        request: &Request,
        remote: SocketAddr,
        transport: Transport,
        user: &str,
    ) -> (Arc<starling_sip::subscription::SubscriptionConfig>, SocketAddr) {
        let told = self.shared.advertised(self.local_ip(request), remote.ip());
        let key = (transport, told, user.to_owned());
        if let Some(config) = self.subscriptions.configs.get(&key) {
            return (config.clone(), told);
        }
        let via = starling_sip::transaction::via_without_branch(
            transport,
            starling_sip::uri::Host::from_ip(told.ip()),
            told.port(),
        );
        let g = &self.conf.general;
        let config = Arc::new(starling_sip::subscription::SubscriptionConfig {
            via,
            contact: format!(
                "<sip:{user}@{told}{}>",
                transport.uri_param().map(|t| format!(";transport={t}")).unwrap_or_default()
            ),
            user_agent: g.useragent.clone(),
            min_expiry: g.minexpiry,
            max_expiry: g.maxexpiry,
            // RFC 3856 and RFC 4235: a SUBSCRIBE without Expires asks for an hour.
            default_expiry: DEFAULT_SUBSCRIBE_EXPIRY.min(g.maxexpiry),
            notify_ringing: g.notifyringing,
            seed: self.shared.random(),
        });
        self.subscriptions.keep_config(key, config.clone());
        (config, told)
    }

    /// A new INVITE: identify and authenticate the caller, check call-limit, the extension and
    /// the codecs, then make the channel and hand it to the dialplan.
    ///
    /// An INVITE from a name we do not know (without guests), or from a known name its ACL
    /// refuses (with `alwaysauthreject`), gets what a known name with a wrong password gets:
    /// a challenge, then 403.
    fn handle_request_invite(&mut self, tx: TxId, request: Request, remote: SocketAddr) {
        // The call's RTP socket and tasks belong to the shared runtime, not the monitor's thread.
        let runtime = self.core.runtime();
        let _entered = runtime.enter();
        let now = tokio::time::Instant::now().into_std();
        let conf = self.conf.clone();
        let caller = self.find_caller(&request, remote);
        let refuse = |monitor: &mut Monitor, status: u16| {
            let response = monitor.response(&request, status);
            monitor.endpoint.send_response(now, tx, response);
        };
        // Guests, and calls from a registrar we are registered with (to the line's extension,
        // in `[general] context`): that is what the registration is for.
        let guest_ok = conf.general.allowguest
            || self.registration_from(remote, request.uri.user_unescaped().as_deref()).is_some();
        let digest = caller.as_ref().is_some_and(|p| !p.insecure.invite);
        if !self.admit(tx, &request, remote, caller.as_deref(), digest, guest_ok, now) {
            return;
        }
        let profile = CallProfile::resolve(&conf, caller.clone());
        let peer_name = caller.as_ref().map_or_else(|| remote.ip().to_string(), |p| p.name.clone());
        let context = profile.context.clone();
        let exten = request.uri.user_unescaped().map(|u| u.into_owned()).filter(|u| !u.is_empty());
        let exten = exten.unwrap_or_else(|| "s".to_owned());
        let from = request.from();
        let from_number = from.as_ref().and_then(|f| f.uri.user_unescaped().map(|u| u.into_owned()));
        // RFC 3891: an INVITE with Replaces takes the place of one of our calls (a transfer
        // completed by the phone), or picks up a ringing one (a BLF key): one of our dialogs
        // still early, or the `pickup-<Call-ID>` of a dialog subscription's NOTIFY (the call
        // ringing at the watched extension, as chan_sip). One naming no call of ours is 481.
        let replaces = match request.headers.get(&HeaderName::parse("Replaces")) {
            Some(value) => match self.replacing(value) {
                Some(replacing) => Some(replacing),
                None => {
                    tracing::info!(
                        target: "chan_sip.c",
                        "Supervised transfer attempted to replace non-existent call id ({value})!"
                    );
                    return refuse(self, 481);
                }
            },
            None => None,
        };
        // features.conf `pickupexten`: taken whether or not the dialplan has it (chan_sip's
        // get_destination), and picks up a call in the caller's pickup groups.
        let pickupexten = self.core.features().pickup().pickupexten;
        let group_pickup = replaces.is_none() && !pickupexten.is_empty() && exten == pickupexten;
        match self.core.extension_exists(&context, &exten, from_number.as_deref()) {
            _ if replaces.is_some() || group_pickup => {}
            starling_core::Extent::Exists => {}
            starling_core::Extent::Incomplete => return refuse(self, 484),
            starling_core::Extent::Missing => {
                // chan_sip's words, which fail2ban's asterisk filter reads.
                tracing::info!(
                    target: "chan_sip.c",
                    "Call from '{peer_name}' ({remote}) to extension '{exten}' rejected because extension not found in context '{context}'."
                );
                return refuse(self, 404);
            }
        }
        // The offer: a missing or unreadable SDP, or no codec in common, is 488.
        let offer = std::str::from_utf8(&request.body).ok().map(starling_media::sdp::RemoteMedia::parse);
        let (offer, negotiated) = match offer {
            Some(Ok(offer)) => {
                let negotiated = starling_media::sdp::negotiate(&offer, &profile.codecs, true);
                (offer, negotiated)
            }
            Some(Err(e)) => {
                tracing::info!("Call from '{peer_name}' refused with 488: {e}");
                return refuse(self, 488);
            }
            None => return refuse(self, 488),
        };
        let negotiated = match negotiated {
            Ok(n) => n,
            Err(e) => {
                tracing::info!("Call from '{peer_name}' refused with 488: {e}");
                return refuse(self, 488);
            }
        };
        // SDES-SRTP (call/sdes.rs): the offer's crypto answered with our key, over TLS only.
        let transport = self.tcp.as_ref().and_then(|t| t.connected(remote)).unwrap_or(Transport::Udp);
        let mut srtp = crate::call::sdes::CallSrtp::new(profile.encryption, transport == Transport::Tls);
        let crypto = match srtp.answer(&offer) {
            Ok(lines) => lines,
            Err(crate::call::sdes::Refusal(why)) => {
                tracing::warn!("Call from '{peer_name}' ({remote}) refused with 488: {why}");
                return refuse(self, 488);
            }
        };
        let local_ip = self.local_ip(&request);
        let (rtp, rtcp) = match self.shared.bind_rtp(local_ip) {
            Some(sockets) => sockets,
            None => {
                let rtp = &self.conf.rtp;
                tracing::warn!("No RTP port free in {}-{}: refusing the call with 503", rtp.start, rtp.end);
                return refuse(self, 503);
            }
        };
        if !self.shared.take_call_slot(&peer_name, profile.call_limit) {
            tracing::info!("Call-limit {} reached for '{peer_name}': 486", profile.call_limit.unwrap_or(0));
            return refuse(self, 486);
        }
        if self.core.shutdown_pending().is_some() {
            // As Asterisk while it shuts down: no new channel (`core stop gracefully`, SIGTERM),
            // so the INVITE is answered 503; calls up go on.
            tracing::info!("Unable to create/find SIP channel for this INVITE: Starling is shutting down");
            self.shared.release_call_slot(&peer_name);
            return refuse(self, 503);
        }
        let local_tag = self.new_tag();
        let Some(dialog) = Dialog::uas(&request, &local_tag, false) else {
            self.shared.release_call_slot(&peer_name);
            return refuse(self, 400);
        };
        let id = dialog.id.clone();
        let key = CallKey { call_id: id.call_id.as_str().into(), local_tag: id.local_tag.as_str().into() };

        let (mut channel, driver) = starling_core::channel::Channel::new(&self.core, "SIP", &peer_name, true);
        let maxcalls = self.core.settings().maxcalls as usize;
        // starling.conf `maxcalls`, as pbx.c's increase_call_count: the new channel is counted
        // already, so the limit is passed when there are more; chan_sip then answers 480.
        if maxcalls > 0 && self.core.channels().active_calls() > maxcalls {
            tracing::warn!("Maximum call limit of {maxcalls} calls exceeded by '{}'!", channel.name());
            self.shared.release_call_slot(&peer_name);
            drop((channel, driver));
            return refuse(self, 480);
        }
        channel.context = context;
        channel.exten = exten;
        channel.priority = 1;
        let from_caller = starling_core::frame::CallerId {
            name: from.as_ref().and_then(|f| f.display.clone()).unwrap_or_default(),
            number: from_number.unwrap_or_default(),
            presentation: caller.as_ref().map(|p| p.callingpres).unwrap_or_default(),
        };
        channel.caller = profile.inbound_caller(&request, from_caller);
        profile.apply_to(&mut channel);
        channel.set_var("SIPCALLID", &id.call_id);
        channel.native_format = crate::call::media::format_name(&negotiated.codec.name);
        channel.set_state(starling_core::channel::ChannelState::Ring);

        // What the caller is told (Contact, SDP): externaddr outside localnet.
        let told = self.shared.advertised_over(local_ip, remote.ip(), transport);
        let (mut session, mut media) =
            self.shared.call_media(told.ip(), &rtp, profile.codecs.clone(), negotiated.codec.clock_rate, &profile);
        media.crypto = crypto;
        session.set_remote_media(&negotiated);
        self.owners.insert(tx, Owner::CallInvite(key.clone()));
        let handle = CallStart {
            profile: &profile,
            key: key.clone(),
            peer_name,
            useragent: request.headers.get(&HeaderName::UserAgent).unwrap_or("").to_owned(),
            direction: Direction::Inbound { invite: Box::new(request), tx },
            user: channel.caller.number.clone(),
            format: crate::call::media::format_name(&negotiated.codec.name),
            dialog,
            remote,
            local: told,
            transport,
            rtp,
            rtcp,
            session,
            media,
            negotiated: Some(negotiated),
            srtp,
        }
        .spawn(&self.shared, &channel, driver);
        self.calls.insert(key, handle.to_pvt.clone());
        channel.tech_pvt = Some(handle);
        tracing::info!("Accepting call {} from {}", channel.name(), remote);
        match replaces {
            Some(Replacing::Call(replaced)) => {
                channel.announce();
                channel.answer();
                tokio::spawn(async move {
                    if let Err(mut channel) = starling_core::bridge::take_place(channel, &replaced).await {
                        tracing::warn!("{} cannot replace {replaced}: it is not in a bridge", channel.name());
                        channel.hangup(starling_core::frame::Cause::NORMAL_CLEARING);
                    }
                });
            }
            Some(Replacing::Ringing(target)) => {
                Self::pickup_task(channel, Cause::NORMAL_CLEARING, move |mut channel| async move {
                    let picked = starling_core::pickup::pickup_channel(&mut channel, &target).await;
                    if !picked {
                        tracing::info!("{} cannot pick up {target}: it no longer rings", channel.name());
                    }
                    (channel, picked)
                })
            }
            Some(Replacing::Exten { exten, context }) => {
                Self::pickup_task(channel, Cause::NORMAL_CLEARING, move |mut channel| async move {
                    tracing::info!(target: "chan_sip.c", "Trying to pick up {exten}@{context}");
                    let core = channel.core().clone();
                    let groups = channel.groups().clone();
                    let target = starling_core::pickup::Target::Exten { exten, context };
                    let picked = match starling_core::pickup::claim(&core, channel.name(), &groups, &target) {
                        Some(found) => starling_core::pickup::do_pickup(&mut channel, &found).await,
                        None => false,
                    };
                    (channel, picked)
                })
            }
            None if group_pickup => Self::pickup_task(channel, Cause::CALL_REJECTED, |mut channel| async move {
                let picked = starling_core::pickup::pickup_call(&mut channel).await;
                if !picked {
                    tracing::warn!("Nothing to pick up for {}", channel.name());
                }
                (channel, picked)
            }),
            None => self.core.start_pbx(channel),
        }
    }

    /// What a `Replaces` header names: `None` for no dialog of ours.
    fn replacing(&self, value: &str) -> Option<Replacing> {
        let (call_id, to_tag, from_tag) = starling_sip::session::parse_replaces(value)?;
        if let Some(subscription) = call_id.strip_prefix("pickup-") {
            // The dialog NOTIFY's call-id (the tags are not in it): the subscription's extension.
            let entry = self.subscriptions.map.iter().find(|(key, _)| *key.call_id == *subscription)?.1;
            return Some(Replacing::Exten { exten: entry.sub.exten().to_owned(), context: entry.context.clone() });
        }
        let channel = crate::call::show::replaced_channel(&self.shared.table, &call_id, &to_tag, &from_tag)?;
        let ringing = self.core.channels().find(&channel).is_some_and(|c| c.state != ChannelState::Up);
        Some(if ringing { Replacing::Ringing(channel) } else { Replacing::Call(channel) })
    }

    /// Runs a pickup for a new call (`pickupexten`, an INVITE with Replaces naming a ringing
    /// dialog) on a task of its own, as chan_sip's sip_pickup_thread: picked up, the channel
    /// went to the caller's Dial (a zombie is left); otherwise it is refused (`pickupexten`:
    /// cause 21, `403`, as chan_sip; a Replaces: `603 Declined`).
    fn pickup_task<F, Fut>(channel: starling_core::channel::Channel, failed: Cause, pickup: F)
    where
        F: FnOnce(starling_core::channel::Channel) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (starling_core::channel::Channel, bool)> + Send + 'static,
    {
        channel.mark_pbx();
        let mut channel = channel;
        channel.announce();
        tokio::spawn(async move {
            let (mut channel, picked) = pickup(channel).await;
            if !picked {
                channel.hangup(failed);
            }
        });
    }

    /// Our address as the caller sees it: `bindaddr`, or when bound to every address the
    /// Request-URI's host if it is an address, else the loopback. (What the caller is *told*
    /// may be `externaddr`: [`Shared::advertised`].)
    fn local_ip(&self, request: &Request) -> std::net::IpAddr {
        let bound = self.conf.general.bindaddr;
        if !bound.is_unspecified() {
            return bound;
        }
        request.uri.host.ip().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }
}

/// A `register =>` line as `sip show registry` shows it.
fn registry_row(line: &crate::registry::Line) -> crate::shared::RegistryRow {
    crate::shared::RegistryRow {
        line: line.config.clone(),
        host: crate::registry::host_column(&line.config),
        username: line.config.user.clone(),
        refresh: line.expiry,
        state: line.state.text(),
        reg_time: line.reg_time,
        detail: crate::shared::RegistryDetail {
            transport: line.config.transport.to_ascii_uppercase(),
            registrar: line.registrar,
            proxy: line.proxy.clone(),
            aor: line.aor(),
            registrant: line.registrant.clone(),
            binding: line.binding.clone(),
            next: line
                .next_attempt()
                .map(|at| std::time::SystemTime::now() + at.saturating_duration_since(std::time::Instant::now())),
            local: line.local,
            call_id: line.call_id().to_owned(),
            cseq: line.cseq(),
            peer: line.config.peer.clone(),
        },
    }
}

/// What an INVITE's `Replaces` names ([`Monitor::replacing`]).
enum Replacing {
    /// A call up: the new call takes its place in its bridge.
    Call(String),
    /// A ringing channel (a leg we ring, or a call to us not answered yet): picked up.
    Ringing(String),
    /// A dialog subscription's ringing extension (`pickup-<Call-ID>`): the call ringing there
    /// is picked up, as `Pickup(exten@context)`.
    Exten { exten: String, context: String },
}

/// Whose a transaction is: where what it brings (responses, CANCEL, its end) goes.
enum Owner {
    /// A call's INVITE, which we answer: a CANCEL of it reaches the call.
    CallInvite(CallKey),
    /// A request a call sent (with its CSeq): its responses, and its end without one (Timer
    /// B/F), go back to the call.
    CallRequest(CallKey, starling_sip::CSeq),
    /// An OPTIONS poking the peer of that name.
    Poke(String),
    /// A REGISTER of the `register =>` line of that index.
    Register(usize),
    /// A NOTIFY of the subscription of that dialog (with its CSeq number).
    Notify(CallKey, u32),
    /// An unsolicited message-summary NOTIFY to the peer of that name.
    Mwi(String),
}

/// The key of the call a request from the far end belongs to (our tag is in its To).
fn key_of_request(request: &Request) -> Option<CallKey> {
    Some(CallKey { call_id: request.call_id()?.into(), local_tag: request.to()?.tag()?.into() })
}

/// A configured transport (`transport=` of a peer, the `tls://` of a line) as sent with.
fn configured(transport: &str) -> Transport {
    Transport::from_name(transport).unwrap_or(Transport::Udp)
}

/// SUBSCRIBE/NOTIFY (issue 25): subscriptions to extension states, driven here as
/// `starling_sip::subscription`'s module docs say.
impl Monitor {
    /// A SUBSCRIBE. In a dialog: the subscription's (a refresh, or `Expires: 0`), else 481.
    /// Outside one, to `dialog` or `presence`: authenticated as an INVITE is (a peer with a
    /// secret is challenged, `insecure=invite` does not apply; guests with `allowguest`),
    /// refused `403 Forbidden (policy)` without `allowsubscribe`, 404 when the extension has
    /// no hint in the subscriber's `subscribecontext` (else its `context`); then the notifier
    /// answers (200 and the first NOTIFY, or 423/489) and the core's watch on the hint feeds it.
    /// Other event packages are answered as before (`event_response`).
    fn handle_request_subscribe(&mut self, tx: TxId, request: Request, remote: SocketAddr) {
        use starling_sip::subscription::Subscription;
        let now = tokio::time::Instant::now().into_std();
        if request.to().is_some_and(|t| t.tag().is_some()) {
            let key = key_of_request(&request);
            match key.as_ref().and_then(|key| self.subscriptions.map.get_mut(key)) {
                Some(entry) => {
                    entry.tx = Some(tx);
                    entry.sub.handle_request(now, request);
                    self.tcp_authenticated(remote);
                    if let Some(key) = key {
                        self.pump_subscription(&key);
                    }
                }
                None => {
                    let response = self.response(&request, 481);
                    self.endpoint.send_response(now, tx, response);
                }
            }
            return;
        }
        let event = request.headers.get(&HeaderName::Event).unwrap_or("");
        let package = event.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if package != "dialog" && package != "presence" && package != "message-summary" {
            let response = self.event_response(&request);
            return self.endpoint.send_response(now, tx, response);
        }
        let conf = self.conf.clone();
        let caller = self.find_caller(&request, remote);
        let refuse = |monitor: &mut Monitor, status: u16, reason: Option<&str>| {
            let mut response = monitor.response(&request, status);
            if let Some(reason) = reason {
                response.reason = reason.into();
            }
            monitor.endpoint.send_response(now, tx, response);
        };
        // `insecure=invite` does not spare a SUBSCRIBE (chan_sip's check_user_full for other methods).
        if !self.admit(tx, &request, remote, caller.as_deref(), true, conf.general.allowguest, now) {
            return;
        }
        let allowed = conf.general.allowsubscribe && caller.as_ref().is_none_or(|p| p.allowsubscribe);
        let from_user = request.from().and_then(|f| f.uri.user_unescaped().map(|u| u.into_owned())).unwrap_or_default();
        let user = caller.as_ref().map_or(from_user, |p| p.name.clone());
        if !allowed {
            tracing::info!("Subscription from '{user}' ({remote}) refused: allowsubscribe=no");
            return refuse(self, 403, Some("Forbidden (policy)"));
        }
        if package == "message-summary" {
            return self.subscribe_mwi(tx, request, remote, caller, user, now);
        }
        let context = match &caller {
            Some(peer) => peer.subscribecontext.clone().unwrap_or_else(|| peer.context.clone()),
            None => conf.general.subscribecontext.clone().unwrap_or_else(|| conf.general.context.clone()),
        };
        let exten = request.uri.user_unescaped().map(|u| u.into_owned()).unwrap_or_default();
        if exten.is_empty() || self.core.hints().hint(&context, &exten).is_none() {
            tracing::info!("Subscription from '{user}' ({remote}) for '{exten}@{context}': no hint there, 404");
            return refuse(self, 404, None);
        }
        if self.core.shutdown_pending().is_some() {
            return refuse(self, 503, None);
        }
        let transport = self.transport_to(remote, Transport::Udp);
        let (config, told) = self.subscription_config(&request, remote, transport, &exten);
        let local_tag = self.new_tag();
        let initial = self.core.extension_state(&context, &exten).0;
        let call_id = request.call_id().unwrap_or("").to_owned();
        let told_host = told.ip().to_string();
        let state = self.notify_state(&context, &exten, initial, &told_host);
        let sub = Subscription::uas(now, config, request, &local_tag, &exten, state);
        let key = CallKey { call_id: call_id.into(), local_tag: local_tag.into() };
        let row = crate::subscriptions::Row {
            address: remote.ip(),
            user: user.into(),
            call_id: key.call_id.clone(),
            extension: format!("{exten}@{context}").into(),
            last_state: initial,
            format: sub.format(),
            expiry: 0,
        }
        .into();
        let to_monitor = self.shared.to_monitor.clone();
        let watched = key.clone();
        let callback: starling_core::hints::ExtensionStateCallback =
            Arc::new(move |change: &starling_core::hints::ExtensionStateChange| {
                let _ = to_monitor.send(ToMonitor::ExtensionState { key: watched.clone(), state: change.state.0 });
            });
        let watch = if sub.state() == starling_sip::subscription::State::Active {
            self.core.extension_state_add(&context, &exten, callback)
        } else {
            None
        };
        let peer = caller.as_ref().map(|p| p.name.clone());
        let entry = crate::subscriptions::Entry {
            sub,
            watch,
            remote,
            transport,
            tx: Some(tx),
            context,
            host: told.ip(),
            peer,
            row,
        };
        self.subscriptions.map.insert(key.clone(), Box::new(entry));
        self.pump_subscription(&key);
    }

    /// Sends what the subscription of `key` queued (responses to its SUBSCRIBE's transaction,
    /// NOTIFYs as client transactions of the endpoint), takes its events (its end: the watch
    /// ended, the subscription forgotten) and publishes its row.
    fn pump_subscription(&mut self, key: &CallKey) {
        use starling_sip::session::Transmit;
        use starling_sip::subscription::Event as SubEvent;
        let now = tokio::time::Instant::now().into_std();
        self.subscriptions.touched();
        let Some(entry) = self.subscriptions.map.get_mut(key) else { return };
        while let Some(transmit) = entry.sub.poll_transmit() {
            match transmit {
                Transmit::Response { response, .. } => {
                    if let Some(tx) = entry.tx.take() {
                        self.endpoint.send_response(now, tx, response);
                    }
                }
                Transmit::Request { request, .. } => {
                    let seq = request.cseq().map_or(0, |c| c.seq);
                    let tx = self.endpoint.send_request(now, request, entry.remote, entry.transport);
                    self.owners.insert(tx, Owner::Notify(key.clone(), seq));
                }
                Transmit::Ack { .. } => {}
            }
        }
        let mut ended = false;
        while let Some(event) = entry.sub.poll_event() {
            match event {
                SubEvent::Accepted { expires } | SubEvent::Refreshed { expires } => {
                    if entry.row.expiry != expires {
                        Arc::make_mut(&mut entry.row).expiry = expires;
                    }
                }
                SubEvent::Terminated { reason } => {
                    tracing::debug!("Subscription {} to {} ended: {reason:?}", key.call_id, entry.row.extension);
                    ended = true;
                }
            }
        }
        let state = entry.sub.current().state;
        if entry.row.last_state != state {
            Arc::make_mut(&mut entry.row).last_state = state;
        }
        let mut rows = self.shared.subscriptions.write().unwrap_or_else(|p| p.into_inner());
        if ended {
            rows.remove(key);
            drop(rows);
            if let Some(entry) = self.subscriptions.map.remove(key) {
                if let Some(watch) = entry.watch {
                    self.core.extension_state_del(watch);
                }
            }
        } else if entry.row.expiry > 0 {
            match rows.get_mut(key) {
                Some(shown) => *shown = entry.row.clone(),
                None => drop(rows.insert(key.clone(), entry.row.clone())),
            }
        }
    }

    /// The hint a subscription watches changed (or went: -2).
    fn extension_state_changed(&mut self, key: &CallKey, state: i32) {
        use starling_sip::subscription::{extension_state, TerminateReason};
        let now = tokio::time::Instant::now().into_std();
        let Some(entry) = self.subscriptions.map.get(key) else { return };
        let told = if state == extension_state::REMOVED {
            None
        } else {
            Some(self.notify_state(&entry.context, entry.sub.exten(), state, &entry.host.to_string()))
        };
        let Some(entry) = self.subscriptions.map.get_mut(key) else { return };
        match told {
            None => entry.sub.terminate(now, TerminateReason::NoResource),
            Some(told) => entry.sub.notify(now, told),
        }
        self.pump_subscription(key);
    }

    /// After `sip reload`: the subscriptions of peers no longer configured end
    /// (`terminated;reason=deactivated`); the others go on.
    fn subscriptions_after_reload(&mut self) {
        use starling_sip::subscription::TerminateReason;
        self.subscriptions.configs.clear();
        let now = tokio::time::Instant::now().into_std();
        let conf = self.conf.clone();
        let gone: Vec<CallKey> = self
            .subscriptions
            .map
            .iter()
            .filter(|(_, e)| e.peer.as_deref().is_some_and(|name| conf.peer(name, |_| true).is_none()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(entry) = self.subscriptions.map.get_mut(&key) {
                tracing::info!("Peer '{}' removed: ending its subscription to {}", entry.row.user, entry.row.extension);
                entry.sub.terminate(now, TerminateReason::Deactivated);
            }
            self.pump_subscription(&key);
        }
    }

    /// What a NOTIFY tells of `exten@context` in `state`: with `notifycid`, a ringing
    /// extension names its caller, as chan_sip's `find_calling_channel` finds it — a channel in
    /// the dialplan at that extension (in that context, unless `ignore-context`); its caller
    /// ID as `sip:number@host` (our address as the subscriber sees it) and the name.
    fn notify_state(
        &self,
        context: &str,
        exten: &str,
        state: i32,
        host: &str,
    ) -> starling_sip::subscription::NotifyState {
        use crate::config::NotifyCid;
        use starling_sip::subscription::{extension_state, NotifyState, RemoteIdentity};
        let mut told = NotifyState::new(state);
        let notifycid = self.conf.general.notifycid;
        if notifycid == NotifyCid::No || state <= 0 || state & extension_state::RINGING == 0 {
            return told;
        }
        let caller = self.core.channels().list().into_iter().find(|c| {
            !c.location.is_empty()
                && c.exten.eq_ignore_ascii_case(exten)
                && (notifycid == NotifyCid::IgnoreContext || c.context.eq_ignore_ascii_case(context))
        });
        if let Some(caller) = caller {
            let number = &caller.caller.number;
            let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
            told.remote =
                Some(RemoteIdentity { uri: format!("sip:{number}@{host}"), display: caller.caller.name.clone() });
        }
        told
    }

    /// Runs the expiries that are due.
    fn subscriptions_due(&mut self) {
        let now = tokio::time::Instant::now().into_std();
        for key in self.subscriptions.due(now) {
            if let Some(entry) = self.subscriptions.map.get_mut(&key) {
                entry.sub.handle_timeout(now);
            }
            self.pump_subscription(&key);
        }
    }

    /// At shutdown and unload: every subscription ends (`terminated;reason=deactivated`, the
    /// NOTIFY sent without waiting for its answer) and the core's watches go (their callbacks
    /// are this module's code).
    fn end_subscriptions(&mut self) {
        use starling_sip::subscription::TerminateReason;
        let now = tokio::time::Instant::now().into_std();
        let keys: Vec<CallKey> = self.subscriptions.map.keys().cloned().collect();
        for key in &keys {
            if let Some(entry) = self.subscriptions.map.get_mut(key) {
                entry.sub.terminate(now, TerminateReason::Deactivated);
            }
            self.pump_subscription(key);
        }
        self.subscriptions.touched();
        for (_, entry) in self.subscriptions.map.drain() {
            if let Some(watch) = entry.watch {
                self.core.extension_state_del(watch);
            }
        }
        self.shared.subscriptions.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The expiry of a SUBSCRIBE without `Expires` (RFC 3856 §6.4, RFC 4235 §3.2), within
/// `maxexpiry`.
const DEFAULT_SUBSCRIBE_EXPIRY: u32 = 3600;

/// MWI (chan_sip's `mwi_event_cb` and `sip_send_mwi_to_peer`): unsolicited `message-summary`
/// NOTIFYs to peers with `mailbox=`, from the core's MWI state.
impl Monitor {
    /// The counts of `mailbox` changed (empty: of every mailbox, after falling behind): each
    /// peer that names it is told.
    fn mwi_changed(&mut self, mailbox: &str) {
        let now = tokio::time::Instant::now().into_std();
        let conf = self.conf.clone();
        let peers: Vec<String> = conf
            .peers
            .iter()
            .filter(|p| p.kind != PeerKind::User)
            .filter(|p| p.mailbox.iter().any(|m| mailbox.is_empty() || starling_core::mwi::mailbox_id(m) == mailbox))
            .map(|p| p.name.clone())
            .collect();
        for peer in peers {
            if !self.notify_mwi_subscriptions(&peer, now) {
                self.send_mwi(&peer, now);
            }
        }
    }

    /// The MWI subscriptions of `peer` are told its counts; whether it has any (then no
    /// unsolicited NOTIFY goes, as chan_sip's `mwipvt`).
    fn notify_mwi_subscriptions(&mut self, peer: &str, now: std::time::Instant) -> bool {
        use starling_sip::subscription::BodyFormat;
        let keys: Vec<CallKey> = self
            .subscriptions
            .map
            .iter()
            .filter(|(_, e)| e.row.format == BodyFormat::MessageSummary && e.peer.as_deref() == Some(peer))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return false;
        }
        let conf = self.conf.clone();
        let mailboxes = conf.peer(peer, |_| true).map(|p| p.mailbox.clone()).unwrap_or_default();
        let (new, old) = crate::mwi::peer_counts(&self.core, &mailboxes).unwrap_or((0, 0));
        for key in keys {
            if let Some(entry) = self.subscriptions.map.get_mut(&key) {
                let account = entry.sub.summary().account.clone();
                entry.sub.notify_summary(now, starling_sip::subscription::MessageSummary { new, old, account });
                self.pump_subscription(&key);
            }
        }
        self.shared.mwi_sent.write().unwrap_or_else(|p| p.into_inner()).insert(peer.to_owned(), (new, old));
        true
    }

    /// A SUBSCRIBE to `message-summary` (chan_sip's MWI_NOTIFICATION): only an authenticated
    /// peer with `mailbox=` (else `404 Not found (no mailbox)`, as chan_sip's); the subscription
    /// is told the counts of its mailboxes now and at every change.
    fn subscribe_mwi(
        &mut self,
        tx: TxId,
        request: Request,
        remote: SocketAddr,
        caller: Option<Arc<crate::config::Peer>>,
        user: String,
        now: std::time::Instant,
    ) {
        use starling_sip::subscription::{MessageSummary, NotifyState, Subscription};
        let Some(peer) = caller.filter(|p| !p.mailbox.is_empty()) else {
            tracing::info!("Subscription for message-summary from '{user}' ({remote}): no mailbox, 404");
            let mut response = self.response(&request, 404);
            response.reason = "Not found (no mailbox)".into();
            return self.endpoint.send_response(now, tx, response);
        };
        let vmexten = peer.vmexten.clone().unwrap_or_else(|| crate::mwi::DEFAULT_VMEXTEN.to_owned());
        let transport = self.transport_to(remote, Transport::Udp);
        let (config, told) = self.subscription_config(&request, remote, transport, &vmexten);
        let (new, old) = crate::mwi::peer_counts(&self.core, &peer.mailbox).unwrap_or((0, 0));
        let host = starling_sip::uri::Host::from_ip(told.ip());
        let summary = MessageSummary { new, old, account: format!("sip:{vmexten}@{host}") };
        let local_tag = self.new_tag();
        let call_id = request.call_id().unwrap_or("").to_owned();
        let mailboxes = peer.mailbox.join(",");
        let sub =
            Subscription::uas_with_summary(now, config, request, &local_tag, &vmexten, NotifyState::new(0), summary);
        let key = CallKey { call_id: call_id.into(), local_tag: local_tag.into() };
        let row = crate::subscriptions::Row {
            address: remote.ip(),
            user: user.into(),
            call_id: key.call_id.clone(),
            extension: mailboxes.into(),
            last_state: 0,
            format: sub.format(),
            expiry: 0,
        }
        .into();
        let entry = crate::subscriptions::Entry {
            sub,
            watch: None,
            remote,
            transport,
            tx: Some(tx),
            context: String::new(),
            host: told.ip(),
            peer: Some(peer.name.clone()),
            row,
        };
        self.shared.mwi_sent.write().unwrap_or_else(|p| p.into_inner()).insert(peer.name.clone(), (new, old));
        self.subscriptions.map.insert(key.clone(), Box::new(entry));
        self.pump_subscription(&key);
    }

    /// Sends `peer` a NOTIFY with the counts of its mailboxes, where it is (its registration,
    /// else its static host); nothing when it is nowhere or no voicemail knows its mailboxes.
    fn send_mwi(&mut self, name: &str, now: std::time::Instant) {
        let conf = self.conf.clone();
        let Some(peer) = conf.peer(name, |p| p.kind != PeerKind::User) else { return };
        if peer.mailbox.is_empty() || peer.subscribemwi {
            return;
        }
        let Some((new, old)) = crate::mwi::peer_counts(&self.core, &peer.mailbox) else { return };
        let binding = self.registrar.bindings().get(name).cloned();
        let (remote, contact) = match (&peer.host, binding) {
            (_, Some(b)) => (b.address, starling_sip::uri::Uri::parse(&b.contact).ok()),
            (PeerHost::Static(host), None) => {
                let address = self.shared.sticky_address(&conf, peer).or_else(|| {
                    host.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, peer.port.unwrap_or(5060)))
                });
                match address {
                    Some(address) => (address, None),
                    None => return,
                }
            }
            (PeerHost::Dynamic, None) => return,
        };
        let local_ip = if conf.general.bindaddr.is_unspecified() {
            self.shared.local_ip_towards(remote)
        } else {
            conf.general.bindaddr
        };
        let local = self.shared.advertised(local_ip, remote.ip());
        let uri = contact.unwrap_or_else(|| {
            starling_sip::uri::Uri::sip(Some(name), starling_sip::uri::Host::from_ip(remote.ip()), Some(remote.port()))
        });
        let to = starling_sip::uri::Uri::sip(Some(name), starling_sip::uri::Host::from_ip(remote.ip()), None);
        let mut request = Request::new(Method::Notify, uri);
        let via = starling_sip::transaction::via_for(
            Transport::Udp,
            starling_sip::uri::Host::from_ip(local.ip()),
            local.port(),
            &crate::ids::branch(),
        );
        let vmexten = peer.vmexten.as_deref().unwrap_or(crate::mwi::DEFAULT_VMEXTEN);
        let host = starling_sip::uri::Host::from_ip(local.ip());
        let body = crate::mwi::message_summary(new, old, &format!("sip:{vmexten}@{host}"));
        request.headers.push(HeaderName::Via, via.to_string());
        request.headers.push(HeaderName::MaxForwards, "70");
        request.headers.push(HeaderName::From, format!("\"Unknown\" <sip:{vmexten}@{local}>;tag={}", self.new_tag()));
        request.headers.push(HeaderName::To, format!("<{to}>"));
        request.headers.push(HeaderName::Contact, format!("<sip:{vmexten}@{local}>"));
        request.headers.push(HeaderName::CallId, crate::ids::call_id(local.ip()));
        request.headers.push(HeaderName::CSeq, "102 NOTIFY");
        request.headers.push(HeaderName::UserAgent, conf.general.useragent.clone());
        request.headers.push(HeaderName::Event, "message-summary");
        request.headers.push(HeaderName::ContentType, "application/simple-message-summary");
        request.body = body.into_bytes();
        tracing::debug!("MWI to '{name}' at {remote}: {new}/{old}");
        let transport = self.transport_to(remote, configured(&peer.transport));
        let tx = self.endpoint.send_request(now, request, remote, transport);
        self.owners.insert(tx, Owner::Mwi(name.to_owned()));
        *self.shared.mwi_sent.write().unwrap_or_else(|p| p.into_inner()).entry(name.to_owned()).or_default() =
            (new, old);
    }
}
