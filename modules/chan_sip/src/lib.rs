//! chan_sip: the SIP channel driver (ARCHITECTURE.md's call flow, steps 2 and 3), on top of
//! `starling-sip`'s transaction layer and `starling-media`.
//!
//! What it does: `load` reads sip.conf (every key of INTERFACE.md, templates, errors as
//! file:line), binds UDP (and TCP with `tcpenable`) at `bindaddr:bindport`, TLS with
//! `tlsenable` at `tlsbindaddr` (`tls.rs`: rustls; the connections are `tcp.rs`'s), (a port in use stops
//! start-up with exit 2) and starts the monitor task (`monitor.rs`), which reads the socket and
//! dispatches requests: calls in and out (`call/`: the call's task in `call/driver.rs`, which runs
//! the dialog's sans-IO `InviteSession` from `starling-sip` and the call's RTP; how a call is set
//! up, its messages, causes and CLI rendering; `outbound.rs`) with RTP relayed natively when
//! both legs agree (by the relay threads of `crates/relay`), the registrar (`registrar.rs`: REGISTER with digest, bindings in the
//! astdb), qualify (`qualify.rs`: OPTIONS pokes), outbound registrations (`registry.rs`:
//! `register =>` lines). The `sip ...` CLI commands and the manager actions (`manager.rs`) read
//! the shared state in `shared.rs`.

mod call;
mod config;
mod ids;
mod manager;
mod monitor;
mod mwi;
mod outbound;
mod qualify;
mod registrar;
mod registry;
mod resolve;
mod rpid;
mod shared;
mod subscriptions;
mod tcp;
mod tls;

use std::fmt::Write as _;
use std::sync::Arc;

use starling_core::cli::{CliCommand, CliRegistration, CliResult};
use starling_core::tokio::sync::watch;
use starling_core::{tokio, tracing, verbose, LoadError, Module, ModuleContext, ReloadError};

use config::{PeerHost, Qualify, SipConf};

/// A source address as chan_sip handles it: an IPv4-mapped IPv6 address (a socket bound to
/// `::` receiving over IPv4) is the IPv4 address it maps, as Asterisk's `ast_recvfrom` makes it,
/// so ACLs, static hosts, bindings and the CLI see `127.0.0.1`, not `::ffff:127.0.0.1`. (Linux
/// sends to an IPv4 address from a socket bound to `::`, so answers need no mapping back.)
pub(crate) fn canonical(address: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(address.ip().to_canonical(), address.port())
}

const CONFIG: &str = "sip.conf";

struct ChanSip {
    stop: watch::Sender<bool>,
    conf: Arc<std::sync::RwLock<Arc<SipConf>>>,
    _cli: CliRegistration,
    _tech: starling_core::apps::Registration<Arc<dyn starling_core::tech::Tech>>,
    _actions: starling_core::module::Registrations,
    /// Says when the monitor thread has finished (after unregistering).
    monitor_done: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    relay: Arc<starling_relay::Relay>,
    /// The TLS configurations the listener and the connections we open use (`tlsenable=yes`
    /// at load), made again by a reload.
    tls: Option<tls::TlsSlot>,
}

impl Module for ChanSip {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        // Re-read; keep the old configuration if the new one has any error.
        let conf = SipConf::load(ctx)?;
        let mut current = self.conf.write().unwrap_or_else(|p| p.into_inner());
        let (old, new) = (&current.general, &conf.general);
        if (old.bindaddr, old.bindport, &old.realm) != (new.bindaddr, new.bindport, &new.realm) {
            tracing::warn!(
                "{CONFIG}: bindaddr, bindport and realm changes take effect at restart (still {}:{}, realm '{}')",
                old.bindaddr,
                old.bindport,
                old.realm
            );
        }
        let (old_tls, new_tls) = (
            old.tls.address(old.bindaddr, tls::STANDARD_TLS_PORT),
            new.tls.address(new.bindaddr, tls::STANDARD_TLS_PORT),
        );
        if old_tls != new_tls {
            tracing::warn!("{CONFIG}: tlsenable and tlsbindaddr changes take effect when chan_sip is loaded again");
        }
        // The certificate files are read again (a renewed certificate): connections made after
        // this use them, those open keep theirs. The parse above has already checked them.
        if let (Some(slot), Some(_)) = (&self.tls, new_tls) {
            let context = tls::TlsContext::new(&new.tls).map_err(|e| ReloadError::Config(e.into()))?;
            *slot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(context);
            verbose!(2, "SIP TLS: certificates read again from {CONFIG}");
        }
        *current = Arc::new(conf);
        Ok(())
    }
    fn unload(self: Box<Self>) {
        let _ = self.stop.send(true);
        // The monitor unregisters the `register =>` lines on its way out: give it that moment
        // (bounded) before the process goes on to exit.
        let done = self.monitor_done.lock().unwrap_or_else(|p| p.into_inner());
        let _ = done.recv_timeout(std::time::Duration::from_secs(2));
        self.relay.stop();
    }
}

/// A peer's `Status`: `Unmonitored` without qualify, else what qualify last found.
fn peer_status(
    peer: &config::Peer,
    statuses: &std::collections::HashMap<String, qualify::PeerStatus>,
) -> qualify::PeerStatus {
    match peer.qualify {
        Qualify::No => qualify::PeerStatus::Unmonitored,
        Qualify::Ms(_) => statuses.get(&peer.name).copied().unwrap_or(qualify::PeerStatus::Unknown),
    }
}

fn show_peers(conf: &SipConf, bindings: &registrar::Bindings, state: &shared::Shared) -> String {
    let statuses = state.peer_status.read().unwrap_or_else(|p| p.into_inner()).clone();
    let bindings = bindings.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<25} {:<39} {:<3} {:<10} {:<10} {:<3} {:<8} {:<11} {:<32} ",
        "Name/username", "Host", "Dyn", "Forcerport", "Comedia", "ACL", "Port", "Status", "Description"
    );
    let (mut unmonitored_online, mut unmonitored_offline, mut monitored_online, mut monitored_offline) = (0, 0, 0, 0);
    // Peers only (type=user entries are not listed), sorted by name as chan_sip sorts them.
    let mut peers: Vec<&config::Peer> =
        conf.peers.iter().map(|p| &**p).filter(|p| p.kind != config::PeerKind::User).collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    for peer in peers {
        // Name/username: the username is `defaultuser`, or the one the peer registered with.
        let name = match (&peer.defaultuser, bindings.contains_key(&peer.name)) {
            (Some(user), _) => format!("{}/{user}", peer.name),
            (None, true) => format!("{}/{}", peer.name, peer.name),
            (None, false) => peer.name.clone(),
        };
        // A dynamic peer has no address until it registers (port 0); a static one has its host.
        let (host, dynamic, port) = match (&peer.host, bindings.get(&peer.name)) {
            (PeerHost::Dynamic, Some(b)) => (b.address.ip().to_string(), " D ", b.address.port()),
            (PeerHost::Dynamic, None) => ("(Unspecified)".to_owned(), " D ", 0),
            (PeerHost::Static(h), _) => (h.clone(), "   ", peer.port.unwrap_or(5060)),
        };
        let status = peer_status(peer, &statuses);
        // As chan_sip counts: an unmonitored peer is "online" when it has an address.
        match (status, port) {
            (qualify::PeerStatus::Unmonitored, 0) => unmonitored_offline += 1,
            (qualify::PeerStatus::Unmonitored, _) => unmonitored_online += 1,
            (s, _) if s.is_online() => monitored_online += 1,
            _ => monitored_offline += 1,
        }
        let status = status.text();
        let yes_no = |b: bool| if b { "Yes" } else { "No" };
        let _ = writeln!(
            out,
            "{:<25} {:<39} {:<3} {:<10} {:<10} {:<3} {:<8} {:<11} {:<32} ",
            name,
            host,
            dynamic,
            yes_no(peer.nat.force_rport),
            yes_no(peer.nat.comedia),
            if peer.acl.is_empty() { "   " } else { " A " },
            port,
            status,
            peer.description,
        );
    }
    let total = unmonitored_online + unmonitored_offline + monitored_online + monitored_offline;
    let _ = writeln!(
        out,
        "{total} sip peers [Monitored: {monitored_online} online, {monitored_offline} offline Unmonitored: {unmonitored_online} online, {unmonitored_offline} offline]"
    );
    out
}

/// `sip show users`: users and friends (the entries that can call in by name), chan_sip's columns.
fn show_users(conf: &SipConf) -> String {
    let mut out = String::new();
    let row = |out: &mut String, cols: [&str; 6]| {
        let _ = writeln!(
            out,
            "{:<25.25}  {:<15.15}  {:<15.15}  {:<15.15}  {:<5.5}{:<10.10}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
        );
    };
    row(&mut out, ["Username", "Secret", "Accountcode", "Def.Context", "ACL", "Forcerport"]);
    let mut users: Vec<&config::Peer> =
        conf.peers.iter().map(|p| &**p).filter(|p| p.kind != config::PeerKind::Peer).collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let yes_no = |b: bool| if b { "Yes" } else { "No" };
    for user in users {
        let secret = user.secret.as_deref().unwrap_or("");
        let acl = yes_no(!user.acl.is_empty());
        row(&mut out, [&user.name, secret, &user.accountcode, &user.context, acl, yes_no(user.nat.force_rport)]);
    }
    out
}

/// `sip show tcp`: chan_sip's table of TCP and TLS sessions (`Server` for one made to us,
/// `Client` for one we opened).
fn show_tcp(rows: &[tcp::ConnectionRow]) -> String {
    let mut out = format!("{:<47.47} {:>9.9} {:>6.6}\n", "Address", "Transport", "Type");
    for row in rows {
        let kind = if row.inbound { "Server" } else { "Client" };
        let _ = writeln!(out, "{:<47.47} {:>9.9} {:>6.6}", row.remote.to_string(), row.transport.via_name(), kind);
    }
    out
}

fn show_peer(conf: &SipConf, bindings: &registrar::Bindings, state: &shared::Shared, name: &str) -> Option<String> {
    let peer = conf.peer(name, |_| true)?;
    let binding = bindings.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
    let mut out = String::new();
    let address = match (&peer.host, &binding) {
        (_, Some(b)) => b.address.to_string(),
        (PeerHost::Dynamic, None) => "(null)".to_owned(),
        (PeerHost::Static(h), None) => format!("{h}:{}", peer.port.unwrap_or(5060)),
    };
    // `Mailbox`, `VM Extension` and `LastMsgsSent` (new/old of the last MWI NOTIFY) as chan_sip's.
    // `Busy level` only when set, as chan_sip's.
    let busy_level = peer.busylevel.filter(|&b| b > 0).map(|b| ("Busy level", b.to_string()));
    let lines: Vec<(&str, String)> = [
        ("Name", peer.name.clone()),
        ("Secret", if peer.secret.is_some() || peer.md5secret.is_some() { "<Set>".into() } else { "<Not set>".into() }),
        ("Context", peer.context.clone()),
        ("Language", peer.language.clone()),
        ("Accountcode", peer.accountcode.clone()),
        ("Callerid", peer.callerid.as_ref().map(|c| c.to_string()).unwrap_or_default()),
        // chan_sip's group lines (ast_print_group: `1, 3, 4, 5`).
        ("Callgroup", starling_core::pickup::print_group(peer.groups.callgroup)),
        ("Pickupgroup", starling_core::pickup::print_group(peer.groups.pickupgroup)),
        ("Named Callgr", starling_core::pickup::print_named_groups(&peer.groups.named_callgroups)),
        ("Nam. Pickupgr", starling_core::pickup::print_named_groups(&peer.groups.named_pickupgroups)),
        ("Mailbox", peer.mailbox.join(",")),
        ("VM Extension", peer.vmexten.clone().unwrap_or_else(|| mwi::DEFAULT_VMEXTEN.to_owned())),
        ("LastMsgsSent", {
            let sent = state.mwi_sent.read().unwrap_or_else(|p| p.into_inner()).get(&peer.name).copied();
            let (new, old) = sent.unwrap_or((0, 0));
            format!("{new}/{old}")
        }),
        ("Call limit", peer.call_limit.unwrap_or(0).to_string()),
    ]
    .into_iter()
    .chain(busy_level)
    .chain([
        ("Dynamic", if peer.host == PeerHost::Dynamic { "Yes".into() } else { "No".into() }),
        ("Addr->IP", address),
        ("Useragent", binding.as_ref().map(|b| b.useragent.clone()).unwrap_or_default()),
        ("Reg. Contact", binding.as_ref().map(|b| b.contact.clone()).unwrap_or_default()),
        // chan_sip's: the transport in use (the registered contact's, else the first listed),
        // and the first of `transport=`.
        ("Transport", {
            let registered = binding.as_ref().and_then(|b| starling_sip::uri::Uri::parse(&b.contact).ok()).map(|u| {
                if u.scheme == starling_sip::uri::Scheme::Sips {
                    "tls".to_owned()
                } else {
                    u.transport().unwrap_or_else(|| "udp".to_owned())
                }
            });
            registered.unwrap_or_else(|| peer.transport.clone()).to_ascii_uppercase()
        }),
        ("Prim.Transp.", peer.transport.to_ascii_uppercase()),
        ("Allowed.Trsp", peer.transport_list()),
        ("Codecs", format!("({})", peer.codecs.join("|"))),
        ("DTMFmode", peer.dtmfmode.as_str().to_owned()),
        ("Direct media", if peer.directmedia.enabled { "Yes".into() } else { "No".into() }),
        ("Trust RPID", if peer.trustrpid { "Yes".into() } else { "No".into() }),
        // chan_sip's line for SIP_PAGE2_USE_SRTP.
        ("Encryption", if peer.encryption { "Yes".into() } else { "No".into() }),
    ])
    .collect();
    let _ = writeln!(out, "\n");
    for (key, value) in lines {
        let _ = writeln!(out, "  {key:<13}: {value}");
    }
    let statuses = state.peer_status.read().unwrap_or_else(|p| p.into_inner());
    let status = peer_status(peer, &statuses).text();
    let _ = writeln!(out, "  {:<13}: {status}", "Status");
    Some(out)
}

/// `sip qualify peer`, the manager's SIPqualifypeer: pokes a qualified peer now.
fn qualify_now(state: &shared::Shared, name: &str) -> Result<(), String> {
    let conf = state.conf();
    match conf.peer(name, |p| p.kind != config::PeerKind::User) {
        // (qualify=no too: one OPTIONS, as chan_sip's forced poke.)
        Some(_) => {
            let _ = state.to_monitor.send(call::messages::ToMonitor::Qualify { peer: name.to_owned() });
            Ok(())
        }
        None => Err(format!("Peer '{name}' not found")),
    }
}

/// `sip show registry`, in chan_sip's columns (FORMAT2: `%-39.39s %-6.6s %-12.12s  %8.8s %-20.20s %-25.25s`).
fn show_registry(rows: &[shared::RegistryRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<39.39} {:<6.6} {:<12.12}  {:>8.8} {:<20.20} {:<25.25}",
        "Host", "dnsmgr", "Username", "Refresh", "State", "Reg.Time"
    );
    for row in rows {
        let reg_time = row
            .reg_time
            .map(|t| {
                starling_core::chrono::DateTime::<starling_core::chrono::Local>::from(t)
                    .format("%a, %d %b %Y %T")
                    .to_string()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<39.39} {:<6.6} {:<12.12}  {:>8} {:<20.20} {:<25.25}",
            row.host, "N", row.username, row.refresh, row.state, reg_time
        );
    }
    let _ = writeln!(out, "{} SIP registrations.", rows.len());
    out
}

/// `sip set debug ip`'s `addr[:port]` (a host name is resolved; without a port any port).
fn debug_address(text: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
    if let Ok(address) = text.parse::<std::net::SocketAddr>() {
        return Some((address.ip(), Some(address.port())));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port.parse().ok()?)),
        _ => (text, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host
        .parse()
        .ok()
        .or_else(|| std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).ok()?.next().map(|a| a.ip()))?;
    Some((ip, port))
}

/// Where `sip set debug peer` looks: where calls to the peer go (its static host, see
/// `Shared::peer_address`), or where it registered.
fn peer_address(shared: &shared::Shared, conf: &SipConf, name: &str) -> Option<std::net::SocketAddr> {
    let peer = conf.peer(name, |p| p.kind != config::PeerKind::User)?;
    match &peer.host {
        config::PeerHost::Static(_) => shared.peer_address(conf, peer),
        config::PeerHost::Dynamic => {
            shared.bindings.read().unwrap_or_else(|p| p.into_inner()).get(name).map(|b| b.address)
        }
    }
}

/// `sip show registry detail` (Starling's): one block per `register =>` line.
fn show_registry_detail(rows: &[shared::RegistryRow]) -> String {
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| {
            starling_core::chrono::DateTime::<starling_core::chrono::Local>::from(t)
                .format("%a, %d %b %Y %T")
                .to_string()
        })
        .unwrap_or_else(|| "(none)".to_owned())
    };
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "(none)".to_owned());
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let d = &row.detail;
        let registrant = match &d.registrant {
            Some(r) => format!("{r} (third party)"),
            None => format!("{} (the AOR)", d.aor),
        };
        let _ = writeln!(out, "Registration {}: {}@{}", i + 1, row.username, row.host);
        let _ = writeln!(out, "  State          : {}", row.state);
        let _ = writeln!(out, "  Registrar      : sip:{}", row.host);
        let _ = writeln!(out, "  Sent to        : {}", or_none(d.registrar.map(|a| format!("{} {a}", d.transport))));
        let _ = writeln!(out, "  Outbound proxy : {}", or_none(d.proxy.clone()));
        let _ = writeln!(out, "  AOR            : {}", d.aor);
        let _ = writeln!(out, "  Registrant     : {registrant}");
        let _ = writeln!(out, "  Binding        : {}", or_none(d.binding.clone()));
        let _ = writeln!(out, "  Expiry         : {} s", row.refresh);
        let _ = writeln!(out, "  Reg.Time       : {}", time(row.reg_time));
        let _ = writeln!(out, "  Next REGISTER  : {}", time(d.next));
        let _ = writeln!(out, "  Local socket   : {}", or_none(d.local.map(|a| format!("{} {a}", d.transport))));
        let _ = writeln!(out, "  Call-ID        : {}", d.call_id);
        let _ = writeln!(out, "  CSeq           : {}", d.cseq);
        let _ = writeln!(out, "  Peer           : {}", or_none(d.peer.clone()));
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{} SIP registrations.", rows.len());
    out
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    if !ctx.config_dir().join(CONFIG).exists() {
        return Err(LoadError::Decline(format!("no {CONFIG} in {}", ctx.config_dir().display())));
    }
    let conf = Arc::new(SipConf::load(ctx)?);
    let address = std::net::SocketAddr::new(conf.general.bindaddr, conf.general.bindport);
    let std_socket = std::net::UdpSocket::bind(address)
        .map_err(|e| LoadError::Resource(format!("cannot bind SIP UDP {address}: {e}")))?;
    std_socket.set_nonblocking(true).map_err(|e| LoadError::Resource(format!("SIP UDP {address}: {e}")))?;
    // The monitor has a thread of its own (as chan_sip's do_monitor): under heavy RTP load
    // the calls' tasks fill the shared runtime's queues, and signalling (an ACK for a 200)
    // must not wait behind them. Its socket and timers live on its own small runtime.
    let monitor_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Resource(format!("cannot start the SIP monitor: {e}")))?;
    let socket = {
        let _entered = monitor_runtime.enter();
        tokio::net::UdpSocket::from_std(std_socket)
            .map_err(|e| LoadError::Resource(format!("SIP UDP {address}: {e}")))?
    };
    verbose!(2, "SIP Listening on {address}");
    // TLS: the files were read when sip.conf was parsed (an error there is the config's, at
    // its line); they are read again here for the context the listener keeps.
    let tls = match conf.general.tls.address(conf.general.bindaddr, tls::STANDARD_TLS_PORT) {
        Some(address) => {
            let context = tls::TlsContext::new(&conf.general.tls).map_err(|e| LoadError::Config(e.into()))?;
            Some((address, Arc::new(std::sync::RwLock::new(Arc::new(context)))))
        }
        None => None,
    };
    let tls_address = tls.as_ref().map(|(a, _)| *a);
    let tls_slot = tls.as_ref().map(|(_, slot)| slot.clone());
    let mut tcp = match (conf.general.tcp_address(), tls) {
        (None, None) => None,
        (tcp_address, tls) => {
            let _entered = monitor_runtime.enter();
            let tcp = tcp::Tcp::bind(tcp_address, tls).map_err(|e| {
                let what = match (tcp_address, tls_address) {
                    (Some(t), Some(l)) => format!("TCP {t} or TLS {l}"),
                    (Some(t), None) => format!("TCP {t}"),
                    (None, l) => format!("TLS {}", l.map_or_else(String::new, |l| l.to_string())),
                };
                LoadError::Resource(format!("cannot bind SIP {what}: {e}"))
            })?;
            if let Some(address) = tcp.0.local_addr() {
                verbose!(2, "SIP Listening on TCP {address}");
            }
            if let Some(address) = tcp.0.tls_addr() {
                verbose!(2, "SIP Listening on TLS {address}");
            }
            Some(tcp)
        }
    };
    let (stop, stopped) = watch::channel(false);
    let bindings: registrar::Bindings = Arc::new(std::sync::RwLock::new(registrar::restore(&*ctx.core().db(), &conf)));
    let shared = Arc::new(std::sync::RwLock::new(conf.clone()));
    let table = call::show::DialogTable::default();
    let stats_table = table.clone();
    let channel_table = table.clone();
    let sip_port = socket.local_addr().map_or(conf.general.bindport, |a| a.port());
    let (to_monitor, from_calls) = tokio::sync::mpsc::unbounded_channel();
    let relay = Arc::new(
        starling_relay::Relay::start(starling_relay::Relay::threads_for_this_machine())
            .map_err(|e| LoadError::Resource(format!("cannot start the RTP relay threads: {e}")))?,
    );
    let state = Arc::new(shared::Shared::new(
        ctx.core().clone(),
        shared.clone(),
        bindings.clone(),
        to_monitor,
        table.clone(),
        sip_port,
        relay.clone(),
    ));
    if let Some((tcp, _)) = &tcp {
        if let Some(address) = tcp.tls_addr() {
            state.tls_port.store(address.port(), std::sync::atomic::Ordering::Relaxed);
        }
    }
    if let Some((tcp, _)) = tcp.as_mut() {
        tcp.set_server_names(state.resolver.names());
    }
    let connections = tcp.as_ref().map(|(tcp, _)| tcp.table()).unwrap_or_default();
    let monitor = monitor::Monitor::new(state.clone(), from_calls, Arc::new(socket), tcp);
    let debug = monitor.debug.clone();
    let (peers_state, peer_state, qualify_state, registry_state, debug_state) =
        (state.clone(), state.clone(), state.clone(), state.clone(), state.clone());
    let subscriptions_state = state.clone();
    let actions = ctx.register_manager_actions(manager::actions(&state, &bindings))?;
    let tech = ctx.register_tech(Arc::new(outbound::SipTech { shared: state }))?;

    let (done, monitor_done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sip-monitor".into())
        .spawn(move || {
            // Without the monitor no SIP is served: a panic in it ends the process (70).
            starling_core::panic::critical("The SIP monitor", move || monitor_runtime.block_on(monitor.run(stopped)));
            let _ = done.send(());
        })
        .map_err(|e| LoadError::Resource(format!("cannot start the SIP monitor thread: {e}")))?;
    let (peers_conf, peer_conf, settings_conf, users_conf, debug_conf) =
        (shared.clone(), shared.clone(), shared.clone(), shared.clone(), shared.clone());
    let (peers_bindings, peer_bindings) = (bindings.clone(), bindings);
    let current = |c: &Arc<std::sync::RwLock<Arc<SipConf>>>| c.read().unwrap_or_else(|p| p.into_inner()).clone();
    let cli = ctx.register_cli(vec![
        CliCommand::new("sip show peers", "List defined SIP peers", "Usage: sip show peers [like <pattern>]\n       Lists all known SIP peers.\n", move |call| {
            call.print(&show_peers(&current(&peers_conf), &peers_bindings, &peers_state));
            CliResult::Success
        }),
        CliCommand::new("sip show peer", "Show details on specific SIP peer", "Usage: sip show peer <name>\n       Shows all details on one SIP peer and the current status.\n", move |call| {
            let [name] = call.args() else { return CliResult::ShowUsage };
            let name = name.clone();
            match show_peer(&current(&peer_conf), &peer_bindings, &peer_state, &name) {
                Some(text) => {
                    call.print(&text);
                    CliResult::Success
                }
                None => {
                    let _ = writeln!(call, "Peer {name} not found.");
                    CliResult::Failure
                }
            }
        }),
        CliCommand::new("sip show channels", "List active SIP channels", "Usage: sip show channels\n       Lists all currently active SIP calls.\n", move |call| {
            call.print(&call::show::show_channels(&table));
            CliResult::Success
        }),
        CliCommand::new("sip show channel", "Show detailed SIP channel info", "Usage: sip show channel <call-id>\n       Provides detailed status on a given SIP dialog (identified by SIP call-id, or its start).\n", move |call| {
            let [prefix] = call.args() else { return CliResult::ShowUsage };
            call.print(&call::show::show_channel(&channel_table, prefix));
            CliResult::Success
        }),
        CliCommand::new("sip qualify peer", "Send an OPTIONS packet to a peer", "Usage: sip qualify peer <name>\n       Send a SIP OPTIONS request to a peer now (its qualify status follows).\n", move |call| {
            let [name] = call.args() else { return CliResult::ShowUsage };
            let name = name.clone();
            match qualify_now(&qualify_state, &name) {
                Ok(()) => CliResult::Success,
                Err(why) => {
                    let _ = writeln!(call, "{why}");
                    CliResult::Failure
                }
            }
        }),
        CliCommand::new("sip show registry", "List SIP registration status", "Usage: sip show registry [detail]\n       Lists all registration requests and status; with detail, every line's\n       registrar, proxy, AOR, registrant, binding, expiry and local socket.\n", move |call| {
            let rows = registry_state.registry.read().unwrap_or_else(|p| p.into_inner());
            match call.args() {
                [] => call.print(&show_registry(&rows)),
                [detail] if detail.eq_ignore_ascii_case("detail") => call.print(&show_registry_detail(&rows)),
                _ => return CliResult::ShowUsage,
            }
            CliResult::Success
        }),
        CliCommand::new("sip show subscriptions", "List active SIP subscriptions", "Usage: sip show subscriptions\n       Lists active SIP subscriptions.\n", move |call| {
            if !call.args().is_empty() {
                return CliResult::ShowUsage;
            }
            let mut rows: Vec<subscriptions::Row> = subscriptions_state
                .subscriptions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|row| (**row).clone())
                .collect();
            rows.sort_by(|a, b| a.call_id.cmp(&b.call_id));
            call.print(&subscriptions::show(&rows));
            CliResult::Success
        }),
        CliCommand::new("sip show channelstats", "List statistics for active SIP channels", "Usage: sip show channelstats\n       Lists all currently active SIP channel's RTCP statistics.\n       Natively bridged calls show the packets they relay.\n", move |call| {
            call.print(&call::show::show_channelstats(&stats_table));
            CliResult::Success
        }),
        CliCommand::new("sip show users", "List defined SIP users", "Usage: sip show users [like <pattern>]\n       Lists all known SIP users.\n", move |call| {
            call.print(&show_users(&current(&users_conf)));
            CliResult::Success
        }),
        CliCommand::new("sip set debug", "Enable/Disable SIP debugging", "Usage: sip set debug {on|off|ip addr[:port]|peer peername}\n       Shows every SIP message in and out on the console (or only those with an address,\n       or with a peer's address), or stops.\n", move |call| {
            let args: Vec<String> = call.args().to_vec();
            match args.as_slice() {
                [on] if on == "on" => {
                    debug.set(true, None);
                    let _ = writeln!(call, "SIP Debugging enabled");
                }
                [off] if off == "off" => {
                    debug.set(false, None);
                    let _ = writeln!(call, "SIP Debugging Disabled");
                }
                [ip, address] if ip == "ip" => {
                    let Some(only) = debug_address(address) else {
                        let _ = writeln!(call, "Unable to get IP address of host '{address}'");
                        return CliResult::Failure;
                    };
                    debug.set(true, Some(only));
                    let _ = writeln!(call, "SIP Debugging Enabled for IP: {address}");
                }
                [peer, name] if peer == "peer" => {
                    let conf = current(&debug_conf);
                    let Some(remote) = peer_address(&debug_state, &conf, name) else {
                        let _ = writeln!(call, "Unable to get IP address of peer '{name}'");
                        return CliResult::Failure;
                    };
                    debug.set(true, Some((remote.ip(), Some(remote.port()))));
                    let _ = writeln!(call, "SIP Debugging Enabled for IP: {remote}");
                }
                _ => return CliResult::ShowUsage,
            }
            CliResult::Success
        }),
        CliCommand::new("sip reload", "Reload SIP configuration", "Usage: sip reload\n       Reloads SIP configuration from sip.conf (calls in progress go on).\n", |call| {
            match call.core.loader().reload(call.core, "chan_sip") {
                Ok(()) => CliResult::Success,
                Err(e) => {
                    let _ = writeln!(call, "{e}");
                    CliResult::Failure
                }
            }
        }),
        CliCommand::new("sip show tcp", "List TCP Connections", "Usage: sip show tcp\n       Lists all active TCP/TLS sessions.\n", move |call| {
            if !call.args().is_empty() {
                return CliResult::ShowUsage;
            }
            let mut rows = connections.lock().unwrap_or_else(|p| p.into_inner()).clone();
            rows.sort_by_key(|r| r.remote);
            call.print(&show_tcp(&rows));
            CliResult::Success
        }),
        CliCommand::new("sip show settings", "Show SIP global settings", "Usage: sip show settings\n       Provides detailed list of the configuration of the SIP channel.\n", move |call| {
            let conf = current(&settings_conf);
            let g = &conf.general;
            let _ = writeln!(
                call,
                "\n\nGlobal Settings:\n----------------\n  UDP Bindaddress:        {}:{}\n  TCP SIP Bindaddress:    {}\n  TLS SIP Bindaddress:    {}\n  TCP auth timeout:       {} secs\n  TCP auth limit:         {}\n  Allow guest calls:      {}\n  Always auth rejects:    {}\n  Realm. auth:            {}\n  User Agent:             {}\n  Codecs:                 ({})\n  Context:                {}\n  Reg. min duration       {} secs\n  Reg. max duration:      {} secs\n  Reg. default duration:  {} secs",
                g.bindaddr,
                g.bindport,
                g.tcp_address().map_or_else(|| "Disabled".to_owned(), |a| a.to_string()),
                g.tls.address(g.bindaddr, tls::STANDARD_TLS_PORT).map_or_else(|| "Disabled".to_owned(), |a| a.to_string()),
                g.tcpauthtimeout,
                g.tcpauthlimit,
                if g.allowguest { "Yes" } else { "No" },
                if g.alwaysauthreject { "Yes" } else { "No" },
                g.realm,
                g.useragent,
                g.codecs.join("|"),
                g.context,
                g.minexpiry,
                g.maxexpiry,
                g.defaultexpiry,
            );
            // chan_sip's lines for the jitter buffer (global.jbconf).
            let yes_no = |b: bool| if b { "Yes" } else { "No" };
            let _ = writeln!(
                call,
                "  Jitterbuffer enabled:   {}\n  Jitterbuffer forced:    {}\n  Jitterbuffer max size:  {}\n  Jitterbuffer resync:    {}\n  Jitterbuffer impl:      {}\n  Jitterbuffer log:       {}\n",
                yes_no(g.jb.enabled),
                yes_no(g.jb.forced),
                g.jb.max_size,
                g.jb.resync_threshold,
                g.jb.implementation(),
                yes_no(g.jb.log),
            );
            CliResult::Success
        }),
    ])?;
    Ok(Box::new(ChanSip {
        stop,
        conf: shared,
        _cli: cli,
        _tech: tech,
        _actions: actions,
        monitor_done: std::sync::Mutex::new(monitor_done),
        relay,
        tls: tls_slot,
    }))
}

starling_core::module! {
    description: "Session Initiation Protocol (SIP)",
    support_level: Extended,
    load: load,
}
