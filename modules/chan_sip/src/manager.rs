//! chan_sip's manager actions (Asterisk's `SIPpeers`, `SIPshowpeer`, `SIPshowregistry`,
//! `SIPqualifypeer`), registered with the core for res_manager to answer.

use std::sync::Arc;

use starling_core::manager::{list, ManagerAction, Message, Reply};

use crate::config::{PeerHost, PeerKind};
use crate::{peer_status, qualify_now, registrar, shared::Shared};

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn sip_peers(shared: &Shared, bindings: &registrar::Bindings) -> Reply {
    let conf = shared.conf();
    let statuses = shared.peer_status.read().unwrap_or_else(|p| p.into_inner()).clone();
    let bindings = bindings.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut peers: Vec<_> = conf.peers.iter().filter(|p| p.kind != PeerKind::User).collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    let items = peers
        .into_iter()
        .map(|peer| {
            let (ip, port) = match (&peer.host, bindings.get(&peer.name)) {
                (PeerHost::Dynamic, Some(b)) => (b.address.ip().to_string(), b.address.port()),
                (PeerHost::Dynamic, None) => ("-none-".to_owned(), 0),
                (PeerHost::Static(h), _) => (h.clone(), peer.port.unwrap_or(5060)),
            };
            Message::event("PeerEntry")
                .with("Channeltype", "SIP")
                .with("ObjectName", &peer.name)
                .with("ChanObjectType", "peer")
                .with("IPaddress", ip)
                .with("IPport", port.to_string())
                .with("Dynamic", yes_no(peer.host == PeerHost::Dynamic))
                .with("AutoForcerport", "no")
                .with("Forcerport", yes_no(peer.nat.force_rport))
                .with("AutoComedia", "no")
                .with("Comedia", yes_no(peer.nat.comedia))
                .with("VideoSupport", "no")
                .with("TextSupport", "no")
                .with("ACL", yes_no(!peer.acl.is_empty()))
                .with("Status", peer_status(peer, &statuses).text())
                .with("RealtimeDevice", "no")
                .with("Description", &peer.description)
                .with("Accountcode", &peer.accountcode)
        })
        .collect();
    list("Peer status list will follow", items, "PeerlistComplete")
}

/// `SIPshowpeer`: chan_sip's manager listing (`_sip_show_peer` with `type == 1`), every header
/// in its order. What Starling does not have shows chan_sip's default for a peer that does not
/// set it (`ToneZone: <Not set>`, `MaxCallBR: 384 kbps`, `SIP-Sess-Timers: Accept`...).
fn sip_show_peer(shared: &Shared, bindings: &registrar::Bindings, m: &Message) -> Reply {
    let Some(name) = m.value("Peer") else { return vec![Message::error("Peer: <name> missing.")] };
    let conf = shared.conf();
    let Some(peer) = conf.peer(name, |_| true) else { return vec![Message::error(&format!("Peer {name} not found."))] };
    let binding = bindings.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
    let statuses = shared.peer_status.read().unwrap_or_else(|p| p.into_inner()).clone();
    let y_n = |b: bool| if b { "Y" } else { "N" };
    let (ip, port) = match (&peer.host, &binding) {
        (_, Some(b)) => (b.address.ip().to_string(), b.address.port()),
        (PeerHost::Dynamic, None) => ("(null)".to_owned(), 0),
        (PeerHost::Static(h), None) => (h.clone(), peer.port.unwrap_or(5060)),
    };
    // ast_callerid_merge: "name" <number>, or the one there is, or nothing.
    let callerid = match peer.callerid.as_ref().map(|c| (c.name.as_str(), c.number.as_str())) {
        Some((name, number)) if !name.is_empty() && !number.is_empty() => format!("\"{name}\" <{number}>"),
        Some((name, "")) => name.to_owned(),
        Some(("", number)) => number.to_owned(),
        _ => String::new(),
    };
    // ast_sched_when of the registration's expiry: -1 when none is scheduled.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let reg_expire = binding.as_ref().map_or(-1, |b| b.expires.saturating_sub(now) as i64);
    let insecure = match (peer.insecure.port, peer.insecure.invite) {
        (false, false) => "no",
        (true, false) => "port",
        (false, true) => "invite",
        (true, true) => "port,invite",
    };
    let mut reply = Message::success()
        .with("Channeltype", "SIP")
        .with("ObjectName", &peer.name)
        .with("ChanObjectType", "peer")
        .with("SecretExist", y_n(peer.secret.is_some()))
        .with("RemoteSecretExist", "N")
        .with("MD5SecretExist", y_n(peer.md5secret.is_some()))
        .with("Context", &peer.context)
        .with("Language", &peer.language)
        .with("ToneZone", "<Not set>");
    if !peer.accountcode.is_empty() {
        reply = reply.with("Accountcode", &peer.accountcode);
    }
    reply = reply.with("AMAflags", "Unknown").with("CID-CallingPres", peer.callingpres.describe());
    if let Some(fromuser) = &peer.fromuser {
        reply = reply.with("SIP-FromUser", fromuser);
    }
    if let Some(fromdomain) = &peer.fromdomain {
        let (domain, port) = fromdomain.rsplit_once(':').unwrap_or((fromdomain, "5060"));
        reply = reply.with("SIP-FromDomain", domain).with("Sip-FromDomain-Port", port);
    }
    reply = reply
        .with("Callgroup", starling_core::pickup::print_group(peer.groups.callgroup))
        .with("Pickupgroup", starling_core::pickup::print_group(peer.groups.pickupgroup))
        .with("Named Callgroup", starling_core::pickup::print_named_groups(&peer.groups.named_callgroups))
        .with("Named Pickupgroup", starling_core::pickup::print_named_groups(&peer.groups.named_pickupgroups))
        .with("MOHSuggest", "")
        .with("VoiceMailbox", peer.mailbox.join(","))
        .with("TransferMode", "open")
        .with("LastMsgsSent", "0")
        .with("Maxforwards", "70")
        .with("Call-limit", peer.call_limit.unwrap_or(0).to_string())
        .with("Busy-level", peer.busylevel.unwrap_or(0).to_string())
        .with("MaxCallBR", "384 kbps")
        .with("Dynamic", y_n(peer.host == PeerHost::Dynamic))
        .with("Callerid", callerid)
        .with("RegExpire", format!("{reg_expire} seconds"))
        .with("SIP-AuthInsecure", insecure)
        .with("SIP-Forcerport", y_n(peer.nat.force_rport))
        .with("SIP-Comedia", y_n(peer.nat.comedia))
        .with("ACL", y_n(!peer.acl.is_empty()))
        .with("SIP-CanReinvite", y_n(peer.directmedia.enabled))
        .with("SIP-DirectMedia", y_n(peer.directmedia.enabled))
        .with("SIP-PromiscRedir", "N")
        .with("SIP-UserPhone", "N")
        .with("SIP-VideoSupport", "N")
        .with("SIP-TextSupport", "N")
        .with("SIP-T.38Support", "N")
        .with("SIP-T.38EC", "Unknown")
        .with("SIP-T.38MaxDtgrm", u32::MAX.to_string())
        .with("SIP-Sess-Timers", peer.session_timers.mode_name())
        .with("SIP-Sess-Refresh", peer.session_timers.refresher.as_str())
        .with("SIP-Sess-Expires", peer.session_timers.expires.to_string())
        .with("SIP-Sess-Min", peer.session_timers.min_se.to_string())
        .with("SIP-RTP-Engine", "asterisk")
        .with("SIP-Encryption", y_n(peer.encryption))
        .with("SIP-RTCP-Mux", "N")
        .with("SIP-DTMFmode", peer.dtmfmode.as_str())
        .with("ToHost", "")
        .with("Address-IP", ip)
        .with("Address-Port", port.to_string())
        .with("Default-addr-IP", "(null)")
        .with("Default-addr-port", "0")
        .with("Default-Username", peer.defaultuser.clone().unwrap_or_default())
        .with("Codecs", format!("({})", peer.codecs.join("|")))
        .with("Status", peer_status(peer, &statuses).text())
        .with("SIP-Useragent", binding.as_ref().map(|b| b.useragent.clone()).unwrap_or_default())
        .with("Reg-Contact", binding.as_ref().map(|b| b.contact.clone()).unwrap_or_default())
        // chan_sip keeps qualifyfreq (60 s by default) whether or not the peer is qualified.
        .with("QualifyFreq", format!("{} ms", u64::from(peer.qualifyfreq) * 1000))
        .with("Parkinglot", "");
    for (name, value) in &peer.setvar {
        reply = reply.with("ChanVariable", format!("{name}={value}"));
    }
    vec![reply.with("SIP-Use-Reason-Header", "N").with("Description", &peer.description)]
}

fn sip_show_registry(shared: &Shared) -> Reply {
    let rows = shared.registry.read().unwrap_or_else(|p| p.into_inner()).clone();
    let items = rows
        .iter()
        .map(|row| {
            let (host, port) = row.host.rsplit_once(':').unwrap_or((&row.host, "5060"));
            // The line's `user@domain` (else the host), as chan_sip's regdomain.
            let (domain, domain_port) = match &row.line.domain {
                Some(domain) => domain.rsplit_once(':').unwrap_or((domain, "5060")),
                None => (host, "5060"),
            };
            let epoch =
                row.reg_time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
            Message::event("RegistryEntry")
                .with("Host", host)
                .with("Port", port)
                .with("Username", &row.username)
                .with("Domain", domain)
                .with("DomainPort", domain_port)
                .with("Refresh", row.refresh.to_string())
                .with("State", row.state)
                .with("RegistrationTime", epoch.to_string())
        })
        .collect();
    list("Registrations will follow", items, "RegistrationsComplete")
}

/// The four actions, over chan_sip's state.
pub fn actions(shared: &Arc<Shared>, bindings: &registrar::Bindings) -> Vec<ManagerAction> {
    let (peers, peer, registry, qualify) = (shared.clone(), shared.clone(), shared.clone(), shared.clone());
    let (peers_b, peer_b) = (bindings.clone(), bindings.clone());
    vec![
        ManagerAction {
            name: "SIPpeers",
            synopsis: "List SIP peers (text format).",
            privilege: "system,reporting",
            handler: Arc::new(move |_| sip_peers(&peers, &peers_b)),
        },
        ManagerAction {
            name: "SIPshowpeer",
            synopsis: "show SIP peer (text format).",
            privilege: "system,reporting",
            handler: Arc::new(move |m| sip_show_peer(&peer, &peer_b, m)),
        },
        ManagerAction {
            name: "SIPshowregistry",
            synopsis: "Show SIP registrations (text format).",
            privilege: "system,reporting",
            handler: Arc::new(move |_| sip_show_registry(&registry)),
        },
        ManagerAction {
            name: "SIPqualifypeer",
            synopsis: "Qualify SIP peers.",
            privilege: "system,reporting",
            handler: Arc::new(move |m| {
                let Some(name) = m.value("Peer") else { return vec![Message::error("Peer: <name> missing.")] };
                match qualify_now(&qualify, name) {
                    Ok(()) => {
                        // As chan_sip's publish_qualify_peer_done: once the OPTIONS is sent.
                        let mut done =
                            starling_core::events::Event::new("SIPQualifyPeerDone", "call").with("Peer", name);
                        if let Some(id) = m.get("ActionID") {
                            done = done.with("ActionID", id);
                        }
                        qualify.core.events().publish(done);
                        vec![Message::success().with("Message", "SIP peer found - will qualify")]
                    }
                    Err(_) => vec![Message::error("Peer not found")],
                }
            }),
        },
    ]
}
