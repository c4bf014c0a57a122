//! chan_sip's manager actions (Asterisk's `SIPpeers`, `SIPshowpeer`, `SIPshowregistry`,
//! `SIPqualifypeer`), registered with the core for res_manager to answer.

use std::sync::Arc;

use starling_core::manager::{list, ManagerAction, Message, Reply};

use crate::config::{PeerHost, PeerKind, Qualify};
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
    let callerid =
        peer.callerid.as_ref().map_or_else(|| "\"\" <>".to_owned(), |c| format!("\"{}\" <{}>", c.name, c.number));
    vec![Message::success()
        .with("Channeltype", "SIP")
        .with("ObjectName", &peer.name)
        .with("ChanObjectType", "peer")
        .with("SecretExist", y_n(peer.secret.is_some()))
        .with("MD5SecretExist", y_n(peer.md5secret.is_some()))
        .with("Context", &peer.context)
        .with("Language", &peer.language)
        .with("Accountcode", &peer.accountcode)
        .with("VoiceMailbox", peer.mailbox.join(","))
        .with("Call-limit", peer.call_limit.unwrap_or(0).to_string())
        .with("Busy-level", peer.busylevel.unwrap_or(0).to_string())
        .with("Dynamic", y_n(peer.host == PeerHost::Dynamic))
        .with("Callerid", callerid)
        .with("SIP-Forcerport", y_n(peer.nat.force_rport))
        .with("SIP-Comedia", y_n(peer.nat.comedia))
        .with("ACL", y_n(!peer.acl.is_empty()))
        .with("SIP-DirectMedia", y_n(peer.directmedia.enabled))
        .with("SIP-DTMFmode", peer.dtmfmode.as_str())
        .with("Address-IP", ip)
        .with("Address-Port", port.to_string())
        .with("Default-Username", peer.defaultuser.clone().unwrap_or_default())
        .with("Codecs", format!("({})", peer.codecs.join("|")))
        .with("Status", peer_status(peer, &statuses).text())
        .with("SIP-Useragent", binding.as_ref().map(|b| b.useragent.clone()).unwrap_or_default())
        .with("Reg-Contact", binding.as_ref().map(|b| b.contact.clone()).unwrap_or_default())
        .with(
            "QualifyFreq",
            match peer.qualify {
                Qualify::No => "0 ms".to_owned(),
                Qualify::Ms(_) => format!("{} ms", u64::from(peer.qualifyfreq) * 1000),
            },
        )
        .with("Description", &peer.description)]
}

fn sip_show_registry(shared: &Shared) -> Reply {
    let rows = shared.registry.read().unwrap_or_else(|p| p.into_inner()).clone();
    let items = rows
        .iter()
        .map(|row| {
            let (host, port) = row.host.rsplit_once(':').unwrap_or((&row.host, "5060"));
            let epoch =
                row.reg_time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
            Message::event("RegistryEntry")
                .with("Host", host)
                .with("Port", port)
                .with("Username", &row.username)
                .with("Domain", host)
                .with("DomainPort", port)
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
                    Ok(()) => vec![Message::success().with("Message", "SIP peer found - will qualify")],
                    Err(_) => vec![Message::error("Peer not found")],
                }
            }),
        },
    ]
}
