//! What the monitor task and the `SIP` technology (outbound calls, made on the dialling
//! channel's task) share: the configuration in force, the registrations, the call-limit
//! counters, the RTP port range and the way to the monitor. Each piece has its own small lock,
//! never held across an await.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::mpsc::UnboundedSender;
use starling_core::Core;
use starling_media::sdp::{Codec, LocalMedia};
use starling_media::session::{RtpSession, SessionConfig};
use starling_sip::transaction::Transport;
use std::time::{Duration, Instant, SystemTime};

use crate::call::messages::ToMonitor;
use crate::call::show::DialogTable;
use crate::config::SipConf;
use crate::registrar::Bindings;

/// How the monitor finds a call: Call-ID and our tag (To in requests to us, From in responses).
/// The remote tag is the dialog's to check (it is not known when an outbound call starts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    /// Shared texts: a key is cloned into several tables (a subscription's sits in the
    /// monitor's map, the CLI's rows and its hint watch), and a clone should not copy them.
    pub call_id: Arc<str>,
    pub local_tag: Arc<str>,
}

pub struct Shared {
    pub core: Arc<Core>,
    /// The configuration in force (`sip reload` swaps it).
    pub conf: Arc<RwLock<Arc<SipConf>>>,
    pub bindings: Bindings,
    /// Calls in progress per peer, for `call-limit`.
    call_counts: Mutex<HashMap<String, u32>>,
    next_rtp_port: Mutex<u16>,
    pub to_monitor: UnboundedSender<ToMonitor>,
    pub table: DialogTable,
    /// The SIP socket's port (Via, Contact).
    pub sip_port: u16,
    /// The SIP over TLS listener's port (0: `tlsenable=no`), set once it listens: what Via and
    /// Contact say over TLS.
    pub tls_port: std::sync::atomic::AtomicU16,
    /// What qualify knows of each qualified peer (the monitor writes, the CLI and Dial read).
    pub peer_status: RwLock<HashMap<String, crate::qualify::PeerStatus>>,
    /// `sip show registry`'s rows (the monitor writes).
    pub registry: RwLock<Vec<RegistryRow>>,
    /// `sip show subscriptions`'s rows (the monitor writes).
    pub subscriptions: RwLock<HashMap<CallKey, Arc<crate::subscriptions::Row>>>,
    /// The counts last sent to each peer in an MWI NOTIFY (`sip show peer`'s `LastMsgsSent`).
    pub mwi_sent: RwLock<HashMap<String, (u32, u32)>>,
    /// Our address towards each remote address we have sent to (when bound to every address).
    routes: Mutex<HashMap<IpAddr, IpAddr>>,
    /// DNS (SRV, A/AAAA) for hosts named in sip.conf and dial strings.
    pub resolver: crate::resolve::Resolver,
    /// The RTP relay threads of natively bridged calls.
    pub relay: Arc<starling_relay::Relay>,
}

/// One `register =>` line as `sip show registry` shows it.
#[derive(Clone, Debug)]
pub struct RegistryRow {
    pub host: String,
    pub username: String,
    pub refresh: u32,
    pub state: &'static str,
    pub reg_time: Option<std::time::SystemTime>,
    pub detail: RegistryDetail,
    /// The `register =>` line itself (to find a peer's account).
    pub line: crate::config::Registration,
}

/// What `sip show registry detail` adds for a line.
#[derive(Clone, Debug)]
pub struct RegistryDetail {
    pub transport: String,
    /// The address the REGISTERs went to (the proxy's when there is one).
    pub registrar: Option<std::net::SocketAddr>,
    pub proxy: Option<String>,
    /// The address of record (To).
    pub aor: String,
    /// The third-party registrant (From), when not the AOR.
    pub registrant: Option<String>,
    /// The Contact we registered.
    pub binding: Option<String>,
    /// When the next REGISTER is due (refresh or retry).
    pub next: Option<std::time::SystemTime>,
    pub local: Option<std::net::SocketAddr>,
    pub call_id: String,
    pub cseq: u32,
    /// The line's `peer?` (its context and credentials).
    pub peer: Option<String>,
}

impl Shared {
    pub fn new(
        core: Arc<Core>,
        conf: Arc<RwLock<Arc<SipConf>>>,
        bindings: Bindings,
        to_monitor: UnboundedSender<ToMonitor>,
        table: DialogTable,
        sip_port: u16,
        relay: Arc<starling_relay::Relay>,
    ) -> Shared {
        let ipv6 = conf.read().unwrap_or_else(|p| p.into_inner()).general.bindaddr.is_ipv6();
        let resolver = crate::resolve::Resolver::new(&core.settings().nameservers, ipv6, core.runtime());
        Shared {
            core,
            conf,
            bindings,
            call_counts: Mutex::default(),
            // Where in the range the first call starts: anywhere (round-robin from there).
            next_rtp_port: Mutex::new(crate::ids::random() as u16),
            to_monitor,
            table,
            sip_port,
            tls_port: Default::default(),
            peer_status: RwLock::default(),
            mwi_sent: RwLock::default(),
            registry: RwLock::default(),
            subscriptions: RwLock::default(),
            routes: Mutex::default(),
            resolver,
            relay,
        }
    }

    /// Registrar stickiness for calls: where the registered account `line` sends its
    /// REGISTERs now (not through a proxy), if it is registered.
    pub fn registered_address(&self, line: &crate::config::Registration) -> Option<SocketAddr> {
        let rows = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let row =
            rows.iter().find(|row| row.line == *line && row.state == "Registered" && row.detail.proxy.is_none())?;
        row.detail.registrar
    }

    /// Registrar stickiness for a peer: the trunk of a registered `register =>` line (its
    /// account, registering to the peer's host and port) is called and poked where that line's
    /// REGISTERs go now, not at whatever its name resolves to first.
    pub fn sticky_address(&self, conf: &SipConf, peer: &crate::config::Peer) -> Option<SocketAddr> {
        let crate::config::PeerHost::Static(host) = &peer.host else { return None };
        let port = peer.port.unwrap_or(5060);
        let account = conf.account_of(peer).filter(|a| a.host == *host && a.port.unwrap_or(5060) == port)?;
        self.registered_address(account)
    }

    /// Where a peer with a static host is: [`Shared::sticky_address`], else the first address its
    /// host resolves to (SRV first when `srvlookup` and no port). Waits for the DNS: for a
    /// call's task or the CLI, never the monitor.
    pub fn peer_address(&self, conf: &SipConf, peer: &crate::config::Peer) -> Option<SocketAddr> {
        let crate::config::PeerHost::Static(host) = &peer.host else { return None };
        self.sticky_address(conf, peer).or_else(|| self.resolve_first(host, peer.port, peer.transport == "tcp"))
    }

    /// The first address of `host` (with the port given, if any; SRV first when `srvlookup`
    /// and no port). Waits for the DNS: for a call's task or the CLI, never the monitor.
    pub fn resolve_first(&self, host: &str, port: Option<u16>, tcp: bool) -> Option<SocketAddr> {
        let query = crate::resolve::Query::for_host(host, port, tcp, self.conf().general.srvlookup);
        self.resolver.lookup_blocking(query, self.random()).first().copied()
    }

    /// The configuration in force.
    pub fn conf(&self) -> Arc<SipConf> {
        self.conf.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Our address towards `remote`: `bindaddr`, or when bound to every address the one the
    /// kernel would send from (asked once per remote address, then remembered).
    pub fn local_ip_towards(&self, remote: SocketAddr) -> IpAddr {
        let bindaddr = self.conf().general.bindaddr;
        if !bindaddr.is_unspecified() {
            return bindaddr;
        }
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        *routes.entry(remote.ip()).or_insert_with(|| route_source(remote))
    }

    /// Our SIP address as `remote` must see it in Via, Contact and SDP: `externaddr` (its port,
    /// else ours) for a remote outside `localnet`, else `local_ip` and our SIP port.
    pub fn advertised(&self, local_ip: IpAddr, remote: IpAddr) -> SocketAddr {
        match self.conf().general.remapped_for(remote) {
            Some((ip, port)) => SocketAddr::new(ip, port.unwrap_or(self.sip_port)),
            None => SocketAddr::new(local_ip, self.sip_port),
        }
    }

    /// [`Shared::advertised`] for what goes over `transport`: over TLS, our TLS port.
    pub fn advertised_over(&self, local_ip: IpAddr, remote: IpAddr, transport: Transport) -> SocketAddr {
        let mut told = self.advertised(local_ip, remote);
        let tls_port = self.tls_port.load(std::sync::atomic::Ordering::Relaxed);
        if transport == Transport::Tls && tls_port != 0 {
            told.set_port(tls_port);
        }
        told
    }

    /// A fresh random number ([`crate::ids::random`]).
    pub fn random(&self) -> u64 {
        crate::ids::random()
    }

    /// A tag for our From/To headers ([`crate::ids::tag`]).
    pub fn new_tag(&self) -> String {
        crate::ids::tag()
    }

    /// Takes a call-limit slot of `peer` unless `limit` are in use.
    pub fn take_call_slot(&self, peer: &str, limit: Option<u32>) -> bool {
        let mut counts = self.call_counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(peer.to_owned()).or_insert(0);
        if limit.is_some_and(|limit| *count >= limit) {
            return false;
        }
        *count += 1;
        drop(counts);
        // With a call-limit the count makes SIP/peer BUSY or INUSE (sip_devicestate).
        self.core.devstate_changed(&format!("SIP/{peer}"));
        true
    }

    /// The calls to and from `peer` in progress (chan_sip's `inuse`).
    pub fn in_use(&self, peer: &str) -> u32 {
        self.call_counts.lock().unwrap_or_else(|p| p.into_inner()).get(peer).copied().unwrap_or(0)
    }

    pub fn release_call_slot(&self, peer: &str) {
        let mut counts = self.call_counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(peer);
            }
        }
        drop(counts);
        self.core.devstate_changed(&format!("SIP/{peer}"));
    }

    /// A call's RTP session and our side of its SDP, on `rtp`, offering `codecs` in order; its
    /// RTP timeouts are `peer`'s (a guest's: `[general]`'s).
    pub fn call_media(
        &self,
        ip: IpAddr,
        rtp: &std::net::UdpSocket,
        codecs: Vec<Codec>,
        clock_rate: u32,
        profile: &crate::call::setup::CallProfile,
    ) -> (RtpSession, LocalMedia) {
        let conf = self.conf();
        let config = SessionConfig {
            clock_rate,
            comedia: profile.comedia,
            strict: conf.rtp.strict,
            probation: conf.rtp.probation,
            timeout: profile.rtptimeout.map(seconds),
            hold_timeout: profile.rtpholdtimeout.map(seconds),
            ..Default::default()
        };
        let session = RtpSession::new(config, Instant::now(), SystemTime::now(), self.random());
        let media = LocalMedia {
            address: ip,
            port: rtp.local_addr().map_or(0, |a| a.port()),
            codecs,
            telephone_event: Some(Codec::telephone_event()),
            ptime: 20,
            direction: starling_media::sdp::Direction::SendRecv,
            session_id: self.random() >> 16,
            session_version: 1,
            username: "Starling".into(),
            crypto: Vec::new(),
        };
        (session, media)
    }

    /// Binds an even RTP port of rtp.conf's range and the odd one above it for RTCP, on `ip`
    /// (or every address when `bindaddr` is), round-robin so that a port just freed is the last
    /// to be taken again. A pair of which either port is taken is passed over.
    /// RTP's socket stays a (nonblocking) std one: the pvt's task or the relay thread reads it.
    pub fn bind_rtp(&self, ip: IpAddr) -> Option<(std::net::UdpSocket, UdpSocket)> {
        let conf = self.conf();
        let bind_ip = if conf.general.bindaddr.is_unspecified() { conf.general.bindaddr } else { ip };
        let first = conf.rtp.start + (conf.rtp.start & 1);
        let pairs = conf.rtp.end.saturating_sub(first).div_ceil(2);
        for _ in 0..pairs {
            let port = {
                let mut next = self.next_rtp_port.lock().unwrap_or_else(|p| p.into_inner());
                // Back into the range (the first call, or a range changed by `sip reload`).
                if *next < first || *next >= conf.rtp.end || *next & 1 == 1 {
                    *next = first + 2 * (*next % pairs.max(1));
                }
                let port = *next;
                *next = if u32::from(port) + 3 > u32::from(conf.rtp.end) { first } else { port + 2 };
                port
            };
            let bind = |port: u16| {
                let socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, port)).ok()?;
                if !conf.rtp.checksums {
                    no_udp_checksums(&socket);
                }
                socket.set_nonblocking(true).ok()?;
                Some(socket)
            };
            if let Some(rtp) = bind(port) {
                if let Some(rtcp) = bind(port + 1).and_then(|s| UdpSocket::from_std(s).ok()) {
                    return Some((rtp, rtcp));
                }
            }
        }
        None
    }
}

/// `rtpchecksums=no`: the socket sends without UDP checksums (Linux's `SO_NO_CHECK`, as
/// res_rtp_asterisk sets it); where that cannot be set, checksums stay, with a debug line.
fn no_udp_checksums(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        starling_core::tracing::debug!("rtpchecksums=no: SO_NO_CHECK: {}", std::io::Error::last_os_error());
    }
}

/// Our address towards `remote` (the one the kernel would send from).
fn route_source(remote: SocketAddr) -> IpAddr {
    let any: SocketAddr = if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap_or(remote);
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(remote).and_then(|()| s.local_addr()))
        .map_or(remote.ip(), |a| a.ip())
}

/// A sip.conf count of seconds.
fn seconds(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
