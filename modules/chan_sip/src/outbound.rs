//! The `SIP` technology: outbound calls (Asterisk's `sip_request_call` → `sip_call`) and the
//! native RTP bridge between two SIP calls.
//!
//! `request` runs on the dialling channel's task: it finds the peer (`SIP/bob`, `SIP/bob/100`,
//! `SIP/100@bob`, or `SIP/user@host:port` when guests are allowed), refuses at once what cannot
//! be called (`CHANUNAVAIL`: an unknown peer, an unregistered dynamic one, an unresolvable host;
//! `BUSY`: its call-limit reached), binds the RTP port, makes the channel and its pvt, and tells
//! the monitor where the dialog's messages go. `Channel::call` then sends the INVITE.

use std::net::SocketAddr;
use std::sync::Arc;

use starling_core::channel::Channel;
use starling_core::devicestate::DeviceState;
use starling_core::frame::Cause;
use starling_core::tech::{NativeBridge, Requestor, Tech};
use starling_core::{tracing, Core};
use starling_media::relay::{RelayCrypto, RelayLeg};
use starling_media::sdp::Codec;
use starling_relay::RelayTo;
use starling_sip::dialog::{Dialog, DialogId, DialogState};
use starling_sip::digest::Credentials;
use starling_sip::transaction::Transport;
use starling_sip::uri::{Host, Uri};
use starling_sip::NameAddr;

use crate::call::driver::{Direction, Outbound};
use crate::call::media::format_name;
use crate::call::messages::{ToMonitor, ToPvt};
use crate::call::native::{DirectTo, MediaInfo, PvtHandle};
use crate::call::setup::{CallProfile, CallStart};
use crate::config::{Peer, PeerHost, PeerKind};
use crate::qualify::PeerStatus;
use crate::shared::{CallKey, Shared};

pub struct SipTech {
    pub shared: Arc<Shared>,
}

/// Where a dial string leads.
struct Target {
    /// The peer's name, or the host for a guest call.
    peer_name: String,
    peer: Option<std::sync::Arc<Peer>>,
    uri: Uri,
    remote: SocketAddr,
}

impl SipTech {
    /// Reads `bob`, `bob/100`, `100@bob`, `user@host[:port]`.
    fn target(&self, data: &str) -> Result<Target, Cause> {
        let conf = self.shared.conf();
        let (name, exten) = match data.split_once('/') {
            Some((peer, exten)) => (peer, Some(exten)),
            None => match data.rsplit_once('@') {
                Some((exten, peer)) => (peer, Some(exten)),
                None => (data, None),
            },
        };
        let exten = exten.filter(|e| !e.is_empty());
        let peer = conf.peer(name, |p| p.kind != PeerKind::User);
        let Some(peer) = peer else {
            // Not a peer: a host, if guests are allowed.
            let (host, port) = match name.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => (h, p.parse().ok()),
                _ => (name, None),
            };
            if !conf.general.allowguest || host.is_empty() {
                tracing::warn!(
                    "Unable to create channel of type 'SIP' (cause 3 - No route to destination): no peer '{name}'"
                );
                return Err(Cause::REQUESTED_CHAN_UNAVAIL);
            }
            // As chan_sip's create_addr: SRV first for a name without a port (srvlookup).
            let remote = self.shared.resolve_first(host, port, false).ok_or(Cause::REQUESTED_CHAN_UNAVAIL)?;
            let uri = Uri::sip(exten, Host::parse(host).map_err(|_| Cause::REQUESTED_CHAN_UNAVAIL)?, port);
            return Ok(Target { peer_name: host.to_owned(), peer: None, uri, remote });
        };
        let (uri, remote) = match &peer.host {
            PeerHost::Dynamic => {
                let bindings = self.shared.bindings.read().unwrap_or_else(|p| p.into_inner());
                let Some(binding) = bindings.get(&peer.name) else {
                    tracing::info!("Peer '{}' is not registered: cannot call it", peer.name);
                    return Err(Cause::SUBSCRIBER_ABSENT);
                };
                let mut uri = Uri::parse(&binding.contact).map_err(|_| Cause::REQUESTED_CHAN_UNAVAIL)?;
                if let Some(exten) = exten {
                    uri.user = Some(exten.to_owned());
                }
                (uri, binding.address)
            }
            PeerHost::Static(host) => {
                // A trunk we are registered to is called where the registration goes now
                // (registrar stickiness), not at whatever its name resolves to first.
                let Some(remote) = self.shared.peer_address(&conf, peer) else {
                    tracing::warn!("Cannot resolve host '{host}' of peer '{}'", peer.name);
                    return Err(Cause::REQUESTED_CHAN_UNAVAIL);
                };
                let user = exten.or(peer.defaultuser.as_deref());
                let host = Host::parse(host).unwrap_or_else(|_| Host::from_ip(remote.ip()));
                (Uri::sip(user, host, peer.port), remote)
            }
        };
        // `outboundproxy`: every request goes there, the Request-URI still names the peer.
        let remote = match &peer.outboundproxy {
            Some(proxy) => {
                let (host, port) = crate::config::split_proxy_port(proxy).unwrap_or_default();
                self.shared.resolve_first(&host, port, peer.transport == "tcp").ok_or_else(|| {
                    tracing::warn!("Cannot resolve outboundproxy '{proxy}' of peer '{}'", peer.name);
                    Cause::REQUESTED_CHAN_UNAVAIL
                })?
            }
            None => remote,
        };
        Ok(Target { peer_name: peer.name.clone(), peer: Some(peer.clone()), uri, remote })
    }
}

impl Tech for SipTech {
    fn name(&self) -> &'static str {
        "SIP"
    }
    fn description(&self) -> &'static str {
        "Session Initiation Protocol (SIP)"
    }
    /// As chan_sip's `AST_CHAN_TP_WANTSJITTER`: a SIP phone dejitters what it gets itself.
    fn wants_jitter(&self) -> bool {
        true
    }

    fn request(&self, core: &Arc<Core>, data: &str, requestor: &Requestor) -> Result<Channel, Cause> {
        let shared = &self.shared;
        if core.shutdown_pending().is_some() {
            return Err(Cause::REQUESTED_CHAN_UNAVAIL);
        }
        let target = self.target(data)?;
        let status = shared.peer_status.read().unwrap_or_else(|p| p.into_inner()).get(&target.peer_name).copied();
        if status == Some(crate::qualify::PeerStatus::Unreachable) {
            tracing::info!("Peer '{}' is UNREACHABLE: not calling it", target.peer_name);
            return Err(Cause::REQUESTED_CHAN_UNAVAIL);
        }
        let conf = shared.conf();
        let profile = CallProfile::resolve(&conf, target.peer.clone());
        if !shared.take_call_slot(&target.peer_name, profile.call_limit) {
            tracing::info!("Call-limit {} reached for '{}': busy", profile.call_limit.unwrap_or(0), target.peer_name);
            return Err(Cause::USER_BUSY);
        }
        let local_ip = shared.local_ip_towards(target.remote);
        let _runtime = core.runtime().enter();
        let Some((rtp, rtcp)) = shared.bind_rtp(local_ip) else {
            shared.release_call_slot(&target.peer_name);
            tracing::warn!("No RTP port free: cannot call '{}'", target.peer_name);
            return Err(Cause::CONGESTION);
        };
        // The peer's codecs in its order, the caller's format first when the peer takes it
        // (no translation then, and a native bridge can carry the call).
        let mut codecs = profile.codecs.clone();
        if let Some(i) = codecs.iter().position(|c| format_name(&c.name) == requestor.format) {
            let preferred = codecs.remove(i);
            codecs.insert(0, preferred);
        }
        let Some(first) = codecs.first().cloned() else {
            shared.release_call_slot(&target.peer_name);
            return Err(Cause::BEARERCAPABILITY_NOTAVAIL);
        };
        // `transport=tcp`/`tls`, a phone that registered a TCP or TLS contact, a `sips:` URI.
        let wanted = if target.uri.scheme == starling_sip::uri::Scheme::Sips {
            Some("tls".to_owned())
        } else {
            target.uri.transport().or_else(|| target.peer.as_ref().map(|p| p.transport.clone()))
        };
        let transport = match wanted.map(|t| t.to_ascii_lowercase()).as_deref() {
            Some("tls") if conf.general.tls.enabled() => Transport::Tls,
            Some("tcp") if conf.general.tcpenable => Transport::Tcp,
            _ => Transport::Udp,
        };
        // SRTP keys are only ever sent over TLS (call/sdes.rs): as chan_sip's "Encrypted
        // signaling is required", the call fails with BEARERCAPABILITY_NOTAVAIL.
        if profile.encryption && transport != Transport::Tls {
            tracing::warn!(
                "Not calling '{}': encryption=yes, and SRTP keys are only sent over TLS (the call would go over {})",
                target.peer_name,
                transport.via_name()
            );
            shared.release_call_slot(&target.peer_name);
            return Err(Cause::BEARERCAPABILITY_NOTAVAIL);
        }
        // What the peer is told (Via, Contact, From, SDP): externaddr outside localnet.
        let local = shared.advertised_over(local_ip, target.remote.ip(), transport);
        let (session, media) = shared.call_media(local.ip(), &rtp, codecs, first.clock_rate, &profile);

        let local_tag = shared.new_tag();
        let call_id = crate::ids::call_id(local_ip);
        let key = CallKey { call_id: call_id.as_str().into(), local_tag: local_tag.as_str().into() };
        let mut local_uri = NameAddr::new(Uri::sip(Some("starling"), Host::from_ip(local.ip()), None));
        local_uri.set_param("tag", Some(local_tag.clone()));
        let dialog = Dialog {
            id: DialogId { call_id: call_id.clone(), local_tag, remote_tag: String::new() },
            state: DialogState::Early,
            local: local_uri.to_string(),
            remote: NameAddr::new(target.uri.clone()).to_string(),
            local_seq: 101,
            remote_seq: None,
            remote_target: target.uri.clone(),
            route_set: Vec::new(),
            secure: false,
        };
        // The peer's own credentials, else those of its account (the `register => peer?...`
        // line naming it, or registering to its host), as AudioCodes' Accounts answer INVITEs.
        let credentials = target.peer.as_ref().and_then(|p| {
            if p.secret.is_some() || p.md5secret.is_some() {
                return Some(Credentials {
                    username: p.defaultuser.clone().unwrap_or_else(|| p.name.clone()),
                    password: p.secret.clone(),
                    ha1: p.md5secret.clone(),
                });
            }
            conf.account_of(p).and_then(|r| {
                Some(Credentials {
                    username: r.authuser.clone().unwrap_or_else(|| r.user.clone()),
                    password: Some(r.secret.clone()?),
                    ha1: None,
                })
            })
        });
        let outbound = Outbound {
            uri: target.uri.clone(),
            from_user: target.peer.as_ref().and_then(|p| p.fromuser.clone()),
            from_domain: target.peer.as_ref().and_then(|p| p.fromdomain.clone()),
            sendrpid: profile.sendrpid,
            trust_id_outbound: profile.trust_id_outbound,
            credentials,
            reregister_on: target.peer.as_ref().map(|p| p.reregister_on.clone()).unwrap_or_default(),
        };

        let (mut channel, driver) = Channel::new(core, "SIP", &target.peer_name, false);
        requestor.apply(&mut channel);
        channel.native_format = format_name(&first.name);
        channel.set_var("SIPCALLID", &call_id);
        profile.apply_to(&mut channel);
        // As chan_sip's sip_new: the channel is in its peer's context (where
        // `Pickup(exten@context)` finds it).
        channel.context.clone_from(&profile.context);
        let handle = CallStart {
            profile: &profile,
            key: key.clone(),
            peer_name: target.peer_name,
            direction: Direction::Outbound(Box::new(outbound)),
            user: target.uri.user.clone().unwrap_or_default(),
            format: format_name(&first.name),
            useragent: String::new(),
            dialog,
            remote: target.remote,
            local,
            transport,
            rtp,
            rtcp,
            session,
            media,
            negotiated: None,
            srtp: crate::call::sdes::CallSrtp::new(profile.encryption, transport == Transport::Tls),
        }
        .spawn(shared, &channel, driver);
        let _ = shared.to_monitor.send(ToMonitor::NewCall { key, to_pvt: handle.to_pvt.clone() });
        channel.tech_pvt = Some(handle);
        Ok(channel)
    }

    /// chan_sip's `sip_devicestate` for `peer` (or `user@peer`): `INVALID` for no such peer,
    /// `UNAVAILABLE` without an address (a dynamic peer not registered), then with a
    /// `call-limit`: `BUSY` at it, or from `busylevel` calls on, `INUSE` with a call; then
    /// `UNAVAILABLE` when qualify finds it LAGGED or UNREACHABLE; else `NOT_INUSE`. (chan_sip's
    /// ONHOLD, RINGING and RINGINUSE are not kept: a ringing or held call counts as any call.)
    fn devicestate(&self, data: &str) -> DeviceState {
        let name = data.rsplit_once('@').map_or(data, |(_, host)| host);
        let conf = self.shared.conf();
        let Some(peer) = conf.peer(name, |_| true) else { return DeviceState::Invalid };
        let registered = self.shared.bindings.read().unwrap_or_else(|p| p.into_inner()).contains_key(&peer.name);
        if peer.host == PeerHost::Dynamic && !registered {
            return DeviceState::Unavailable;
        }
        let in_use = self.shared.in_use(&peer.name);
        match (peer.call_limit.filter(|&l| l > 0), peer.busylevel.filter(|&b| b > 0)) {
            (Some(limit), _) if in_use >= limit => return DeviceState::Busy,
            (Some(_), Some(busy_level)) if in_use >= busy_level => return DeviceState::Busy,
            (Some(_), _) if in_use > 0 => return DeviceState::InUse,
            _ => {}
        }
        let status = self.shared.peer_status.read().unwrap_or_else(|p| p.into_inner()).get(&peer.name).copied();
        match status {
            Some(PeerStatus::Lagged { .. } | PeerStatus::Unreachable) if peer.qualify != crate::config::Qualify::No => {
                DeviceState::Unavailable
            }
            _ => DeviceState::NotInUse,
        }
    }

    /// chan_sip's `callcounter` (or a `call-limit`, which counts calls too): the peer's calls
    /// make its state.
    fn counts_calls(&self, data: &str) -> bool {
        let name = data.rsplit_once('@').map_or(data, |(_, host)| host);
        let conf = self.shared.conf();
        conf.peer(name, |_| true).is_none_or(|p| p.callcounter || p.call_limit.is_some_and(|l| l > 0))
    }

    /// chan_sip's `[general] notifyhold`.
    fn reports_hold(&self, _data: &str) -> bool {
        self.shared.conf().general.notifyhold
    }

    /// Carries the media of two answered SIP calls that send the same codec and carry DTMF the
    /// same way, without decoding it. With `directmedia` on both peers (and `may_redirect`: the
    /// bridge needs no key presses from the media), both far ends are re-INVITEd to send to each
    /// other, as Asterisk's remote RTP bridge; `nonat` refuses when the other peer has
    /// `nat=comedia`. Otherwise each pvt relays what its far end sends out of the other's
    /// socket, rewritten (payload types mapped, one continuous stream).
    fn native_bridge(&self, a: &Channel, b: &Channel, may_redirect: bool) -> Option<NativeBridge> {
        let handle = |c: &Channel| c.tech_pvt.clone()?.downcast::<PvtHandle>().ok();
        let (a, b) = (handle(a)?, handle(b)?);
        let info = |h: &PvtHandle| h.media.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (ia, ib): (MediaInfo, MediaInfo) = (info(&a), info(&b));
        // An SRTP leg is relayed by the relay thread with its call's own keys (opened as it
        // comes, sealed as it goes: SRTP to SRTP, or to and from plain RTP), never in the
        // kernel, and never by direct media (chan_sip's "Direct media not possible when using
        // SRTP"). One that must be SRTP and is not keyed yet takes the frames' way.
        if (ia.secure && ia.srtp.is_none()) || (ib.secure && ib.srtp.is_none()) {
            return None;
        }
        let (ca, cb) = (ia.codec.as_ref()?, ib.codec.as_ref()?);
        let event_pt = |i: &MediaInfo| i.telephone_event.as_ref().map(|c| c.payload_type);
        let compatible = ca.same_as(cb)
            && ia.dtmfmode == ib.dtmfmode
            && event_pt(&ia).is_some() == event_pt(&ib).is_some()
            && ia.remote.get().is_some()
            && ib.remote.get().is_some();
        if !compatible {
            return None;
        }
        let direct =
            |from: &MediaInfo, to: &MediaInfo| from.directmedia.enabled && !(from.directmedia.nonat && to.comedia);
        let plain = !ia.secure && !ib.secure;
        if may_redirect && plain && direct(&ia, &ib) && direct(&ib, &ia) {
            let to = |h: &PvtHandle| Box::new(DirectTo { media: h.media.clone(), to_pvt: h.to_pvt.clone() });
            for h in [&a, &b] {
                h.direct.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = a.to_pvt.send(ToPvt::Direct(Some(to(&b))));
            let _ = b.to_pvt.send(ToPvt::Direct(Some(to(&a))));
            return Some(Box::new(NativeRelay { pvts: [a, b], direct: true }));
        }
        let leg = |from: &MediaInfo, to: &MediaInfo, fc: &Codec, tc: &Codec| {
            let mut leg = RelayLeg::new();
            leg.map_payload_type(fc.payload_type, Some(tc.payload_type));
            if let (Some(f), Some(t)) = (event_pt(from), event_pt(to)) {
                leg.map_payload_type(f, Some(t));
            }
            leg
        };
        let crypto = |from: &MediaInfo, to: &MediaInfo| RelayCrypto { from: from.srtp.clone(), to: to.srtp.clone() };
        let to_b = RelayTo {
            rtp: b.rtp.clone(),
            media: b.media.clone(),
            leg: leg(&ia, &ib, ca, cb),
            crypto: crypto(&ia, &ib),
        };
        let to_a = RelayTo {
            rtp: a.rtp.clone(),
            media: a.media.clone(),
            leg: leg(&ib, &ia, cb, ca),
            crypto: crypto(&ib, &ia),
        };
        let _ = a.to_pvt.send(ToPvt::Relay(Some(Box::new(to_b))));
        let _ = b.to_pvt.send(ToPvt::Relay(Some(Box::new(to_a))));
        Some(Box::new(NativeRelay { pvts: [a, b], direct: false }))
    }
}

/// A native bridge in progress (relayed, or direct media); dropping it hands the media back to
/// the channels.
struct NativeRelay {
    pvts: [Arc<PvtHandle>; 2],
    direct: bool,
}

impl Drop for NativeRelay {
    fn drop(&mut self) {
        for pvt in &self.pvts {
            pvt.direct.store(false, std::sync::atomic::Ordering::Relaxed);
            let _ = pvt.to_pvt.send(if self.direct { ToPvt::Direct(None) } else { ToPvt::Relay(None) });
        }
    }
}
