//! How a call is set up, inbound (monitor.rs, an INVITE) and outbound (outbound.rs, `Dial`):
//! what it takes from its peer, or from `[general]` for a guest or a peer-less target, resolved
//! once ([`CallProfile`]); and the one place both directions put a call in the CLI's table and
//! start its task ([`CallStart`]).

use std::net::SocketAddr;
use std::sync::Arc;

use starling_core::channel::{Channel, ChannelDriver};
use starling_core::frame::CallerId;
use starling_core::tokio;
use starling_media::sdp::{Codec, LocalMedia, Negotiated};
use starling_media::session::RtpSession;
use starling_sip::dialog::Dialog;
use starling_sip::transaction::Transport;
use starling_sip::Request;

use crate::call::driver::{Direction, Pvt, PvtParts};
use crate::call::media::format_name;
use crate::call::native::PvtHandle;
use crate::call::show::{ChannelDetail, DialogRow};
use crate::config::{DirectMedia, DtmfMode, Peer, SessionTimers, SipConf};
use crate::rpid::{SendRpid, TrustIdOutbound};
use crate::shared::{CallKey, Shared};

/// What a call takes from its peer, else from sip.conf's `[general]` (a guest's call, or a
/// `Dial(SIP/host/...)` that names no peer).
pub struct CallProfile {
    /// The peer, if the call has one.
    pub peer: Option<Arc<Peer>>,
    /// The inbound call's dialplan context.
    pub context: String,
    /// `allow`/`disallow`, in the peer's order: what we offer and accept.
    pub codecs: Vec<Codec>,
    /// `nat` has comedia: the far end's RTP address is learnt from its packets.
    pub comedia: bool,
    pub dtmfmode: DtmfMode,
    pub directmedia: DirectMedia,
    /// `trustrpid`: an inbound INVITE's asserted identity is the caller ID.
    pub trustrpid: bool,
    /// `encryption`: SDES-SRTP offered and required (call/sdes.rs).
    pub encryption: bool,
    /// `sendrpid`, `trust_id_outbound`: how our INVITEs present the caller.
    pub sendrpid: SendRpid,
    pub trust_id_outbound: TrustIdOutbound,
    /// `call-limit`.
    pub call_limit: Option<u32>,
    pub mohinterpret: Option<String>,
    /// `rtptimeout`/`rtpholdtimeout`, in seconds.
    pub rtptimeout: Option<u32>,
    pub rtpholdtimeout: Option<u32>,
    /// `session-timers` and its companions.
    pub session_timers: SessionTimers,
}

impl CallProfile {
    /// Resolves every per-call setting once, from `peer` or `[general]`.
    pub fn resolve(conf: &SipConf, peer: Option<Arc<Peer>>) -> CallProfile {
        let g = &conf.general;
        let p = peer.as_deref();
        CallProfile {
            context: p.map_or_else(|| g.context.clone(), |p| p.context.clone()),
            codecs: p.map_or(&g.codecs, |p| &p.codecs).iter().filter_map(|n| Codec::from_allow_name(n)).collect(),
            comedia: p.map_or(g.nat, |p| p.nat).comedia,
            dtmfmode: p.map_or(g.dtmfmode, |p| p.dtmfmode),
            directmedia: p.map_or(g.directmedia, |p| p.directmedia),
            trustrpid: p.map_or(g.trustrpid, |p| p.trustrpid),
            encryption: p.map_or(g.encryption, |p| p.encryption),
            sendrpid: p.map_or(g.sendrpid, |p| p.sendrpid),
            trust_id_outbound: p.map_or(g.trust_id_outbound, |p| p.trust_id_outbound),
            call_limit: p.and_then(|p| p.call_limit),
            mohinterpret: p.map_or_else(|| g.mohinterpret.clone(), |p| p.mohinterpret.clone()),
            rtptimeout: p.map_or(g.rtptimeout, |p| p.rtptimeout),
            rtpholdtimeout: p.map_or(g.rtpholdtimeout, |p| p.rtpholdtimeout),
            session_timers: p.map_or(g.session_timers, |p| p.session_timers),
            peer,
        }
    }

    /// The peer's name as `sip show channels` shows it.
    pub fn shown_peer(&self) -> String {
        self.peer.as_ref().map_or_else(|| "<guest>".to_owned(), |p| p.name.clone())
    }

    /// What the peer gives the call's channel, either direction: `language`, `accountcode`,
    /// `setvar` (chan_sip copies a peer's `setvar` to its calls both ways) and `mohinterpret`.
    pub fn apply_to(&self, channel: &mut Channel) {
        channel.mohinterpret = self.mohinterpret.clone();
        let Some(peer) = &self.peer else { return };
        // Each channel carries its peer's groups (chan_sip's sip_new), for call pickup.
        channel.set_groups(peer.groups.clone());
        if !peer.language.is_empty() {
            channel.language = peer.language.clone();
        }
        if !peer.accountcode.is_empty() {
            channel.accountcode = peer.accountcode.clone();
        }
        for (name, value) in &peer.setvar {
            channel.set_var(name, value);
        }
    }

    /// The caller ID of an inbound call (`from` carries the peer's `callingpres`): with
    /// `trustrpid` an asserted identity other than From's (and the peer's callingpres), with its
    /// presentation; else the peer's `callerid=`, else From, with the peer's callingpres
    /// (chan_sip's `check_peer_ok`).
    pub fn inbound_caller(&self, request: &Request, from: CallerId) -> CallerId {
        let asserted = self.trustrpid.then(|| crate::rpid::asserted_caller(request, &from)).flatten();
        match (asserted, self.peer.as_ref().and_then(|p| p.callerid.clone())) {
            (Some(asserted), _) => asserted,
            (None, Some(callerid)) => CallerId { presentation: from.presentation, ..callerid },
            (None, None) => from,
        }
    }
}

/// Everything that differs between an inbound and an outbound call when its task starts.
pub struct CallStart<'a> {
    pub profile: &'a CallProfile,
    pub key: CallKey,
    /// The name its call-limit slot is counted under (the peer's, or the caller's address).
    pub peer_name: String,
    pub direction: Direction,
    /// The dialog as it starts (our tag; theirs, inbound), for `sip show channels`.
    pub dialog: Dialog,
    pub remote: SocketAddr,
    /// Our SIP address, as told to the far end.
    pub local: SocketAddr,
    /// What the call's signalling goes over (our Contacts say `transport=tcp`/`tls`).
    pub transport: Transport,
    /// The user `sip show channels` shows.
    pub user: String,
    /// The codec the call starts with.
    pub format: &'static str,
    /// The far end's User-Agent (inbound), else empty.
    pub useragent: String,
    pub rtp: std::net::UdpSocket,
    pub rtcp: tokio::net::UdpSocket,
    pub session: RtpSession,
    pub media: LocalMedia,
    pub negotiated: Option<Negotiated>,
    /// SDES-SRTP (inbound: keyed by the offer already).
    pub srtp: crate::call::sdes::CallSrtp,
}

impl CallStart<'_> {
    /// Puts the call in `sip show channels` and spawns its task, which owns `driver` from now on.
    /// The caller hangs the returned handle on `channel` and routes the dialog to it.
    pub fn spawn(self, shared: &Arc<Shared>, channel: &Channel, driver: ChannelDriver) -> Arc<PvtHandle> {
        let outbound = matches!(self.direction, Direction::Outbound(_));
        let row = DialogRow {
            address: self.remote.ip(),
            user: if self.user.is_empty() { "(None)".to_owned() } else { self.user },
            format: self.format.to_owned(),
            hold: false,
            last_message: if outbound { "Tx: INVITE" } else { "Rx: INVITE" }.into(),
            peer: self.profile.shown_peer(),
            started: std::time::Instant::now(),
            stats: None,
            srtp: None,
            native_relay: false,
            srtp_state: None,
            relayed: None,
            detail: ChannelDetail {
                direction: if outbound { "Outgoing" } else { "Incoming" },
                channel: channel.name().to_owned(),
                uniqueid: channel.uniqueid().to_owned(),
                remote: self.remote,
                audio: SocketAddr::new(self.local.ip(), self.media.port),
                our_tag: self.dialog.id.local_tag.clone(),
                their_tag: self.dialog.id.remote_tag.clone(),
                useragent: self.useragent,
                uri: match &self.direction {
                    Direction::Inbound { invite, .. } => invite.uri.to_string(),
                    Direction::Outbound(out) => out.uri.to_string(),
                },
                codecs: self.media.codecs.iter().map(|c| format_name(&c.name).to_owned()).collect(),
                dtmfmode: self.profile.dtmfmode,
                transport: self.transport.via_name(),
            },
        };
        shared.table.write().unwrap_or_else(|p| p.into_inner()).insert(self.key.call_id.to_string(), row);
        let shared_config = shared.conf();
        let (pvt, handle) = Pvt::new(PvtParts {
            key: self.key,
            peer: self.peer_name,
            direction: self.direction,
            remote: self.remote,
            local: self.local,
            transport: self.transport,
            useragent: shared_config.general.useragent.clone(),
            dtmfmode: self.profile.dtmfmode,
            directmedia: self.profile.directmedia,
            comedia: self.profile.comedia,
            session_timers: self.profile.session_timers,
            shared: shared.clone(),
            driver,
            rtp: self.rtp,
            rtcp: self.rtcp,
            session: self.session,
            media: self.media,
            negotiated: self.negotiated,
            srtp: self.srtp,
        });
        tokio::spawn(pvt.run());
        handle
    }
}
