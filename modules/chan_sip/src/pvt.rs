//! One call, inbound or outbound: Asterisk's `sip_pvt`. It runs on its own task and owns the driver end of
//! the call's `core::Channel`, the dialog and the RTP session. It never touches the SIP socket:
//! the monitor owns the transaction layer, so the pvt sends it [`ToMonitor`] messages and the
//! monitor forwards the dialog's requests as [`ToPvt`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::channel::{ChannelDriver, DriverCommand};
use starling_core::frame::{CallerId, Cause, Control, Frame};
use starling_core::tokio::io::unix::AsyncFd;
use starling_core::tokio::io::Interest;
use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use starling_core::tokio::time::{sleep_until, Instant as TokioInstant};
use starling_core::{tokio, tracing};
use starling_media::sdp::{Codec, LocalMedia, Negotiated};
use starling_media::session::{RtpSession, SessionEvent};
use starling_relay::{PublishedMedia, RelayHandle, RelayTo, RelayedLeg};
use starling_sip::dialog::Dialog;
use starling_sip::digest::{Challenge, Credentials};
use starling_sip::message::{Response, SipMessage};
use starling_sip::transaction::{via_for, Transport, TxId};
use starling_sip::uri::Uri;
use starling_sip::{HeaderName, MessageHeaders, Method, Request};

use crate::call::causes::{hangup_cause_to_sip, sip_to_hangup_cause};
use crate::call::media::CallMedia;
use crate::call::messages::{ToMonitor, ToPvt};
use crate::call::show::DialogTable;
use crate::config::{DirectMedia, DtmfMode};
use crate::shared::{CallKey, Shared};

/// The other call of direct media: where our far end is to send, and how to tell that call
/// when ours moves.
pub struct DirectTo {
    pub media: Arc<Mutex<MediaInfo>>,
    pub to_pvt: UnboundedSender<ToPvt>,
}

impl std::fmt::Debug for DirectTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectTo").finish_non_exhaustive()
    }
}

/// A channel that leaves direct media is re-INVITEd back to us after this, unless it hangs up
/// first — as when Dial ends the call: the far end is spared a re-INVITE just before the BYE.
const REDIRECT_BACK_GRACE: Duration = Duration::from_millis(100);

/// What a call publishes of its media for a native bridge to decide and to send to.
#[derive(Clone, Debug, Default)]
pub struct MediaInfo {
    /// The far end's RTP address (learnt from SDP, or from its packets with comedia).
    pub remote: Option<SocketAddr>,
    /// The codec sent and received, with its payload type on this leg.
    pub codec: Option<Codec>,
    /// telephone-event on this leg (its payload type, clock rate), if negotiated.
    pub telephone_event: Option<Codec>,
    pub dtmfmode: DtmfMode,
    /// The peer's `directmedia`.
    pub directmedia: DirectMedia,
    /// The peer's `nat` has comedia: its far end is taken to be behind NAT.
    pub comedia: bool,
    /// Set when a native bridge starts: the stream this call was sending (SSRC, next sequence
    /// number, next timestamp), which the packets relayed to it must continue.
    pub continue_from: Option<(u32, u16, u32)>,
    /// The other call of a native bridge has begun relaying into this one's far end: frames
    /// that still arrive here (sent before it switched) are late, and are dropped.
    pub relayed_into: bool,
}

/// What the relay threads read and write of a call's [`MediaInfo`] (starling-relay).
impl PublishedMedia for MediaInfo {
    fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    fn set_remote(&mut self, remote: Option<SocketAddr>) {
        self.remote = remote;
    }

    /// The stream published (`continue_from`) is taken, and frames still arriving from before
    /// the switch are dropped from now on (`relayed_into`).
    fn begin_relaying_into(&mut self) -> Option<(u32, u16, u32)> {
        let stream = self.continue_from.take()?;
        self.relayed_into = true;
        Some(stream)
    }
}

/// The call's handle on its channel (`Channel::tech_pvt`): how the `SIP` technology reaches
/// it to bridge it natively.
pub struct PvtHandle {
    pub to_pvt: UnboundedSender<ToPvt>,
    pub rtp: Arc<std::net::UdpSocket>,
    pub media: Arc<Mutex<MediaInfo>>,
    /// Set by a direct media bridge from its start (before the pvt hears of it) to its end:
    /// voice written to the channel meanwhile is not sent.
    pub direct: Arc<std::sync::atomic::AtomicBool>,
}

/// The RTP format name a negotiated codec carries in frames.
pub fn format_name(codec: &str) -> &'static str {
    match codec.to_ascii_uppercase().as_str() {
        "PCMU" => "ulaw",
        "PCMA" => "alaw",
        "OPUS" => "opus",
        _ => "unknown",
    }
}

/// Which side started the call.
pub enum Direction {
    /// They called: `invite_tx` is their INVITE's transaction, which our responses answer.
    Inbound { invite_tx: TxId },
    /// We call (Dial): what our INVITE is made of.
    Outbound(Box<Outbound>),
}

/// An outbound call's INVITE: where it goes and who it says is calling.
pub struct Outbound {
    /// The Request-URI (and To).
    pub uri: Uri,
    /// `fromuser`: the user of our From, instead of the caller's number.
    pub from_user: Option<String>,
    /// `fromdomain`: the host of our From, instead of our address.
    pub from_domain: Option<String>,
    /// `sendrpid`: present the caller in a Remote-Party-ID or P-Asserted-Identity header too.
    pub sendrpid: crate::rpid::SendRpid,
    /// `trust_id_outbound`: what that header tells of a restricted caller.
    pub trust_id_outbound: crate::rpid::TrustIdOutbound,
    /// The peer's `defaultuser`/`secret` (or `md5secret`), to answer its challenges.
    pub credentials: Option<Credentials>,
    /// Challenges answered so far (a second one in a row means the credentials are wrong).
    pub auth_tries: u32,
    /// The peer's `reregister_on`: failures of our INVITE that re-register its account.
    pub reregister_on: Vec<u16>,
    /// Who is calling (set when the owner calls).
    pub caller: CallerId,
}

/// Everything a call is made of (see [`Pvt::new`]).
pub struct PvtParts {
    pub key: CallKey,
    pub peer: String,
    pub direction: Direction,
    /// Inbound: their INVITE. Outbound: a placeholder until ours is built at `Call`.
    pub invite: Request,
    pub dialog: Dialog,
    /// Where requests and retransmitted responses go (the INVITE's source: NAT-safe; or the
    /// peer's address).
    pub remote: SocketAddr,
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    /// What the call's signalling runs over (our Contacts say `transport=tcp`/`tls`; the
    /// monitor picks the connection).
    pub transport: Transport,
    pub useragent: String,
    pub dtmfmode: DtmfMode,
    pub directmedia: DirectMedia,
    /// The peer's `nat` has comedia.
    pub comedia: bool,
    pub shared: Arc<Shared>,
    pub driver: ChannelDriver,
    /// Nonblocking; the pvt reads it through tokio, or the relay thread while natively bridged.
    pub rtp: std::net::UdpSocket,
    /// RTCP's socket, on the RTP port + 1 (with rtcp-mux, RTCP uses the RTP socket).
    pub rtcp: UdpSocket,
    pub session: RtpSession,
    pub media: LocalMedia,
    /// Inbound: what the offer and our codecs agreed. Outbound: `None` until the answer.
    pub negotiated: Option<Negotiated>,
}

/// One call: Asterisk's `sip_pvt`.
pub struct Pvt {
    key: CallKey,
    peer: String,
    direction: Direction,
    invite: Request,
    dialog: Dialog,
    remote: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    useragent: String,
    dtmfmode: DtmfMode,
    shared: Arc<Shared>,
    from_monitor: UnboundedReceiver<ToPvt>,
    driver: ChannelDriver,
    rtp: Arc<std::net::UdpSocket>,
    /// `rtp` registered with tokio, while this task reads it (not while relayed).
    rtp_in: Option<AsyncFd<RtpFd>>,
    rtcp: UdpSocket,
    /// The RTP session (shared with the relay thread while relayed), key presses and voice.
    call_media: CallMedia,
    media: LocalMedia,
    negotiated: Option<Negotiated>,
    /// The far end put the call on hold (its last offer was sendonly or inactive).
    held: bool,
    /// What a native bridge sees of this call.
    published: Arc<Mutex<MediaInfo>>,
    /// A native bridge in progress: our far end's packets go straight to the other call.
    relay: Option<Box<RelayTo>>,
    /// The relay handed over to the relay thread (with our socket): dropping it takes them back.
    relayed: Option<RelayHandle>,
    /// Direct media in progress: our far end is told to send to the other call's.
    direct: Option<Box<DirectTo>>,
    /// [`PvtHandle::direct`].
    direct_bridged: Arc<std::sync::atomic::AtomicBool>,
    directmedia: DirectMedia,
}

/// The body of the INFO that sends a key (`dtmfmode=info`), as chan_sip's add_digit for
/// `application/dtmf-relay`: the key itself as the Signal (`*` and `#` too), and the 250 ms
/// Asterisk gives a key press whose length it does not know.
fn info_body(digit: char) -> String {
    format!("Signal={digit}\r\nDuration=250\r\n")
}

/// The key in an INFO: `application/dtmf-relay` (`Signal=5`, `Duration=160`) or
/// `application/dtmf` (just the key), as chan_sip reads them. Signal 10 is `*`, 11 `#`.
fn info_digit(request: &Request) -> Option<(char, u32)> {
    let content_type = request.headers.get(&HeaderName::ContentType)?.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let (signal, duration) = if content_type.starts_with("application/dtmf-relay") {
        let field = |name: &str| {
            body.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        (field("signal")?, field("duration").and_then(|d| d.parse().ok()).unwrap_or(100))
    } else if content_type.starts_with("application/dtmf") {
        (body.trim().to_owned(), 100)
    } else {
        return None;
    };
    let digit = match signal.as_str() {
        "10" => '*',
        "11" => '#',
        s if s.len() == 1 => s.chars().next()?.to_ascii_uppercase(),
        _ => return None,
    };
    "0123456789*#ABCD".contains(digit).then_some((digit, duration))
}

/// What a REFER asks.
#[derive(Debug, PartialEq, Eq)]
enum ReferTarget {
    /// A blind transfer to this extension (the user of `Refer-To`).
    Blind(String),
    /// An attended transfer: `Refer-To: <sip:x@pbx?Replaces=call-id%3Bto-tag%3D..%3Bfrom-tag%3D..>`
    /// names another dialog of the transferer (RFC 3891).
    Replaces { call_id: String, to_tag: String, from_tag: String },
}

fn refer_target(request: &Request) -> Option<ReferTarget> {
    let refer_to = starling_sip::NameAddr::parse(request.headers.get(&HeaderName::ReferTo)?).ok()?;
    let replaces = refer_to.uri.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("replaces"));
    if let Some((_, value)) = replaces {
        let (call_id, to_tag, from_tag) = parse_replaces(&starling_sip::uri::unescape(value))?;
        return Some(ReferTarget::Replaces { call_id, to_tag, from_tag });
    }
    refer_to.uri.user_unescaped().map(|u| u.into_owned()).filter(|u| !u.is_empty()).map(ReferTarget::Blind)
}

/// A Replaces value (the header, or Refer-To's unescaped): `call-id;to-tag=x;from-tag=y`.
pub(crate) fn parse_replaces(value: &str) -> Option<(String, String, String)> {
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to_tag, mut from_tag) = (None, None);
    for part in parts {
        match part.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim().to_owned()),
            Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => from_tag = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    Some((call_id, to_tag?, from_tag?)).filter(|r| !r.0.is_empty())
}

/// The channel of the dialog a Replaces names, if it is one of ours: same Call-ID, and the
/// tags ours and theirs (either way round; an outbound call's tag of theirs is not kept).
pub(crate) fn replaced_channel(table: &DialogTable, call_id: &str, to_tag: &str, from_tag: &str) -> Option<String> {
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let d = &table.get(call_id)?.detail;
    let theirs = |tag: &str| d.their_tag.is_empty() || d.their_tag == tag;
    let matches = (d.our_tag == to_tag && theirs(from_tag)) || (d.our_tag == from_tag && theirs(to_tag));
    matches.then(|| d.channel.clone())
}

/// Our RTP socket as tokio sees it (only while this task reads it).
struct RtpFd(Arc<std::net::UdpSocket>);

impl std::os::fd::AsRawFd for RtpFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

fn rtp_reader(rtp: &Arc<std::net::UdpSocket>) -> Option<AsyncFd<RtpFd>> {
    // SAFETY: the Arc inside keeps the socket (and so its fd) open for the AsyncFd's life.
    unsafe { AsyncFd::register_with_interest(RtpFd(rtp.clone()), Interest::READABLE) }
        .map_err(|e| tracing::warn!("cannot watch an RTP socket: {e}"))
        .ok()
}

/// The next datagram on our RTP socket while this task reads it; never, while relayed.
async fn recv_rtp(rtp_in: &Option<AsyncFd<RtpFd>>, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    let Some(fd) = rtp_in else { return std::future::pending().await };
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(result) = guard.try_io(|fd| fd.get_ref().0.recv_from(buffer)) {
            return result;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outbound, before the owner calls.
    Idle,
    /// Inbound: their INVITE awaits our answer. Outbound: ours awaits theirs.
    Early,
    /// Outbound: we sent CANCEL and wait for the INVITE's final response (a 2xx that crossed
    /// the CANCEL is acknowledged and ended with BYE).
    Cancelling,
    /// 200 sent (inbound: retransmitted, T1 doubling to T2, until the ACK or 64·T1) or
    /// received (outbound: ACK sent).
    Answered { acked: bool },
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// What the run loop does after a step.
enum Next {
    Go,
    /// The call is over.
    End,
}

/// Tells the monitor a call is gone when its task ends, however it ends.
struct GoneOnDrop {
    to_monitor: UnboundedSender<ToMonitor>,
    key: CallKey,
    peer: String,
}

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        let _ = self.to_monitor.send(ToMonitor::Gone { key: self.key.clone(), peer: self.peer.clone() });
    }
}

impl Pvt {
    /// A call and the handle its channel keeps (`Channel::tech_pvt`).
    pub fn new(parts: PvtParts) -> (Pvt, Arc<PvtHandle>) {
        let (to_pvt, from_monitor) = starling_core::tokio::sync::mpsc::unbounded_channel();
        let rtp = Arc::new(parts.rtp);
        let published = Arc::new(Mutex::new(MediaInfo {
            dtmfmode: parts.dtmfmode,
            directmedia: parts.directmedia,
            comedia: parts.comedia,
            ..Default::default()
        }));
        let direct = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = Arc::new(PvtHandle { to_pvt, rtp: rtp.clone(), media: published.clone(), direct: direct.clone() });
        // sip.conf's jitter buffer (jbenable): none, and no tick, without it.
        let jitter = crate::call::jitter::JitterPlayout::new(&parts.shared.conf().general.jb, &parts.key.call_id);
        let pvt = Pvt {
            key: parts.key,
            peer: parts.peer,
            direction: parts.direction,
            invite: parts.invite,
            dialog: parts.dialog,
            remote: parts.remote,
            local: parts.local,
            transport: parts.transport,
            useragent: parts.useragent,
            dtmfmode: parts.dtmfmode,
            shared: parts.shared,
            from_monitor,
            driver: parts.driver,
            rtp,
            rtp_in: None,
            rtcp: parts.rtcp,
            call_media: CallMedia::new(
                Arc::new(Mutex::new(parts.session)),
                parts.dtmfmode,
                parts.negotiated.as_ref(),
                jitter,
                std::time::Instant::now(),
            ),
            media: parts.media,
            negotiated: parts.negotiated,
            held: false,
            published,
            relay: None,
            relayed: None,
            direct: None,
            direct_bridged: direct,
            directmedia: parts.directmedia,
        };
        pvt.publish();
        (pvt, handle)
    }

    /// Tells a native bridge where our far end is and what it speaks.
    fn publish(&self) {
        let mut info = self.published.lock().unwrap_or_else(|p| p.into_inner());
        info.remote = self.session().remote();
        info.codec = self.negotiated.as_ref().map(|n| n.codec.clone());
        info.telephone_event = self.negotiated.as_ref().and_then(|n| n.telephone_event.clone());
    }

    /// Where requests inside the dialog go. A caller that reached us directly is answered and
    /// asked at the address its INVITE came from (NAT-safe, as chan_sip with nat=force_rport);
    /// one that came through a proxy (more than one Via) at its route set, else its Contact —
    /// a proxy that did not Record-Route does not expect to see the BYE.
    fn dialog_target(&self) -> SocketAddr {
        if let Direction::Inbound { .. } = self.direction {
            let proxied = self.invite.headers.get_all(&HeaderName::Via).flat_map(|v| v.split(',')).count() > 1;
            let uri = self
                .dialog
                .route_set
                .first()
                .and_then(|r| starling_sip::NameAddr::parse(r).ok())
                .map(|n| n.uri)
                .or_else(|| proxied.then(|| self.dialog.remote_target.clone()));
            if let Some(uri) = uri {
                // RFC 3263 for a name: SRV first when no port is given (srvlookup).
                let tcp = uri.transport().as_deref() == Some("tcp");
                if let Some(target) = self.shared.resolve_first(&uri.host.to_string(), uri.port, tcp) {
                    return target;
                }
            }
        }
        self.remote
    }

    /// The RTP figures `sip show channelstats` shows (about once a second: every 50 packets).
    /// While relayed, they go where the relay publishes its own: the latest figures show.
    fn publish_stats(&self) {
        let stats = self.session().stats();
        match &self.relayed {
            Some(relayed) => relayed.stats().set(stats),
            None => crate::call::show::publish_stats(&self.shared.table, &self.key.call_id, stats),
        }
    }

    fn session(&self) -> std::sync::MutexGuard<'_, RtpSession> {
        self.call_media.session()
    }

    /// In a native bridge (relaying ourselves, or the relay thread for us).
    fn natively_bridged(&self) -> bool {
        self.relay.is_some() || self.relayed.is_some()
    }

    /// The relay has begun: from now on the relay thread reads our socket and relays.
    fn hand_off_relay(&mut self) {
        let Some(to) = self.relay.take() else { return };
        self.rtp_in = None;
        let relayed = self.shared.relay.add(RelayedLeg {
            socket: self.rtp.clone(),
            session: self.call_media.shared_session().clone(),
            published: self.published.clone(),
            to,
        });
        crate::call::show::show_relayed_stats(&self.shared.table, &self.key.call_id, relayed.stats());
        self.relayed = Some(relayed);
    }

    /// The native bridge ended (or changes): we read our socket again.
    fn take_back_relay(&mut self) {
        if self.relayed.take().is_some() {
            self.rtp_in = rtp_reader(&self.rtp);
        }
    }

    /// Tells the call relaying to us which stream its packets continue (ours so far).
    fn publish_stream(&self) {
        let stream = {
            let session = self.session();
            (session.ssrc(), session.next_sequence(), session.next_timestamp())
        };
        self.published.lock().unwrap_or_else(|p| p.into_inner()).continue_from = Some(stream);
    }

    fn response(&self, status: u16) -> Response {
        self.response_to(&self.invite, status)
    }

    /// A response to a request of this dialog (their INVITE, a re-INVITE, a BYE).
    fn response_to(&self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        if response.to().is_some_and(|t| t.tag().is_none()) {
            response.set_to_tag(&self.key.local_tag);
        }
        response.headers.push(HeaderName::Server, self.useragent.clone());
        if (101..300).contains(&status) {
            let user = self.invite.uri.user.as_deref().unwrap_or("s");
            response.headers.push(HeaderName::Contact, self.contact(user));
        }
        response
    }

    fn with_sdp(&self, mut response: Response) -> Response {
        if let Some(negotiated) = &self.negotiated {
            response.headers.push(HeaderName::ContentType, "application/sdp");
            response.body = self.offered_media().answer(negotiated).into_bytes();
        }
        response
    }

    /// Our media as we describe it to the far end: our own address; or, in direct media, the
    /// other call's far end, with the codec and telephone-event payload types it receives.
    fn offered_media(&self) -> LocalMedia {
        let mut media = self.media.clone();
        if let Some(direct) = &self.direct {
            let other = direct.media.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(remote), Some(codec)) = (other.remote, other.codec.clone()) {
                media.address = remote.ip();
                media.port = remote.port();
                media.codecs = vec![codec];
                media.telephone_event = other.telephone_event.clone();
            }
        }
        media
    }

    /// A re-INVITE: a new offer (another address, hold, a codec change among ours) is answered
    /// 200 with our answer; one without SDP (a refresh, or a delayed offer) gets our current
    /// session again. The 200 for a codec we cannot take is 488; an out-of-order CSeq 500.
    /// A change of hold is passed to the channel as Hold/Unhold.
    async fn reinvite(&mut self, request: &Request) -> Result<Response, u16> {
        if let Err(e) = self.dialog.handle_request(request) {
            tracing::info!("re-INVITE on {} refused: {e}", self.key.call_id);
            return Err(500);
        }
        if !request.body.is_empty() {
            let offer = std::str::from_utf8(&request.body)
                .ok()
                .and_then(|text| starling_media::sdp::RemoteMedia::parse(text).ok())
                .ok_or(488u16)?;
            let negotiated = starling_media::sdp::negotiate(&offer, &self.media.codecs, true).map_err(|_| 488u16)?;
            let hold = offer.is_hold();
            if hold != self.held {
                tracing::info!("{} {} the call", self.peer, if hold { "put on hold" } else { "took back" });
                let control = if hold { Control::Hold } else { Control::Unhold };
                let _ = self.driver.frames.send(Frame::Control(control)).await;
            }
            self.held = hold;
            self.session().set_on_hold(hold);
            if let Some(row) = self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&self.key.call_id) {
                row.hold = hold;
            }
            if negotiated.remote.port() != 0 && !negotiated.remote.ip().is_unspecified() {
                self.session().set_remote_media(&negotiated);
            }
            let moved = self
                .negotiated
                .as_ref()
                .is_none_or(|n| n.remote != negotiated.remote || !n.codec.same_as(&negotiated.codec));
            self.negotiated = Some(negotiated);
            self.publish();
            if let Some(direct) = self.direct.as_ref().filter(|_| moved) {
                // The other far end sends to ours directly: it must hear where ours went.
                let _ = direct.to_pvt.send(ToPvt::DirectRefresh);
            }
        }
        self.media.session_version += 1;
        let ok = self.response_to(request, 200);
        Ok(self.with_sdp(ok))
    }

    fn send(&self, message: ToMonitor) {
        let _ = self.shared.to_monitor.send(message);
    }

    /// Answers their INVITE (inbound calls only).
    fn respond(&self, status: u16) {
        if let Direction::Inbound { invite_tx } = self.direction {
            let response = self.response(status);
            self.send(ToMonitor::Respond { tx: invite_tx, response });
        }
    }

    fn respond_with(&self, response: Response) {
        if let Direction::Inbound { invite_tx } = self.direction {
            self.send(ToMonitor::Respond { tx: invite_tx, response });
        }
    }

    /// Our Contact as `user` (with `transport=tcp` on a call over TCP, `tls` over TLS).
    fn contact(&self, user: &str) -> String {
        let transport = self.transport.uri_param().map(|t| format!(";transport={t}")).unwrap_or_default();
        format!("<sip:{user}@{}{transport}>", self.local)
    }

    fn new_via(&self) -> starling_sip::Via {
        let branch = crate::ids::branch();
        via_for(Transport::Udp, starling_sip::uri::Host::from_ip(self.local.ip()), self.local.port(), &branch)
    }

    /// A request inside the dialog (BYE, INFO), sent to the far end.
    fn request_in_dialog(&mut self, method: Method, body: Option<(&str, String)>) {
        let via = self.new_via();
        let mut request = self.dialog.request(method, &via);
        request.headers.push(HeaderName::UserAgent, self.useragent.clone());
        if let Some((content_type, body)) = body {
            request.headers.push(HeaderName::ContentType, content_type);
            request.body = body.into_bytes();
        }
        self.send(ToMonitor::Request { request, remote: self.dialog_target() });
    }

    /// How direct media's offers go: UPDATE with `directmedia=update`, else re-INVITE.
    fn direct_offer_method(&self) -> Method {
        if self.directmedia.update {
            Method::Update
        } else {
            Method::Invite
        }
    }

    /// A new offer in the dialog (a re-INVITE, or an UPDATE): our media as it is now — held
    /// or not, ours or direct ([`Pvt::offered_media`]). Returns its CSeq.
    fn send_offer(&mut self, method: Method) -> u32 {
        self.media.session_version += 1;
        // The offer keeps the codec in use first, so the far end need not change it.
        if let Some(codec) = self.negotiated.as_ref().map(|n| n.codec.clone()) {
            if let Some(i) = self.media.codecs.iter().position(|c| c.same_as(&codec)) {
                let current = self.media.codecs.remove(i);
                self.media.codecs.insert(0, current);
            }
        }
        let via = self.new_via();
        let mut reinvite = self.dialog.request(method, &via);
        let user = self.dialog.local.uri.user.clone().unwrap_or_else(|| "s".to_owned());
        reinvite.headers.push(HeaderName::Contact, self.contact(&user));
        reinvite.headers.push(HeaderName::UserAgent, self.useragent.clone());
        reinvite.headers.push(HeaderName::ContentType, "application/sdp");
        reinvite.body = self.offered_media().offer().into_bytes();
        let seq = self.dialog.local_seq;
        self.send(ToMonitor::Request { request: reinvite, remote: self.dialog_target() });
        seq
    }

    /// The NOTIFY that ends a REFER's implicit subscription with `sipfrag`.
    fn notify_refer(&mut self, sipfrag: &str) {
        let via = self.new_via();
        let mut notify = self.dialog.request(Method::Notify, &via);
        notify.headers.push(HeaderName::Event, "refer");
        notify.headers.push(HeaderName::SubscriptionState, "terminated;reason=noresource");
        notify.headers.push(HeaderName::UserAgent, self.useragent.clone());
        notify.headers.push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        notify.body = format!("{sipfrag}\r\n").into_bytes();
        self.send(ToMonitor::Request { request: notify, remote: self.dialog_target() });
    }

    fn bye(&mut self) {
        self.request_in_dialog(Method::Bye, None);
    }

    /// Builds and sends our INVITE (outbound), with `authorization` answering a challenge.
    fn send_invite(&mut self, authorization: Option<(HeaderName, String)>) {
        let Direction::Outbound(out) = &self.direction else { return };
        let presenting = crate::rpid::Presenting {
            from_user: out.from_user.as_deref(),
            from_domain: out.from_domain.as_deref(),
            sendrpid: out.sendrpid,
            trust_id_outbound: out.trust_id_outbound,
        };
        let crate::rpid::Identity { from: identity, user, headers } =
            crate::rpid::identity(&out.caller, presenting, &self.local.ip().to_string());
        let seq = self.dialog.local_seq.max(101) + 1;
        self.dialog.local_seq = seq;
        let mut invite = Request::new(Method::Invite, out.uri.clone());
        invite.headers.push(HeaderName::Via, self.new_via().to_string());
        invite.headers.push(HeaderName::MaxForwards, "70");
        invite.headers.push(HeaderName::From, format!("{identity};tag={}", self.key.local_tag));
        invite.headers.push(HeaderName::To, format!("<{}>", out.uri));
        invite.headers.push(HeaderName::Contact, self.contact(&user));
        invite.headers.push(HeaderName::CallId, self.key.call_id.clone());
        invite.headers.push(HeaderName::CSeq, format!("{seq} INVITE"));
        invite.headers.push(HeaderName::UserAgent, self.useragent.clone());
        for (header, value) in headers {
            invite.headers.push(header, value);
        }
        if let Some((header, value)) = authorization {
            invite.headers.push(header, value);
        }
        invite.headers.push(HeaderName::Allow, crate::monitor::ALLOWED_METHODS);
        invite.headers.push(HeaderName::Supported, crate::monitor::SUPPORTED);
        invite.headers.push(HeaderName::ContentType, "application/sdp");
        invite.body = self.media.offer().into_bytes();
        self.dialog.local = starling_sip::NameAddr::parse(&format!("{identity};tag={}", self.key.local_tag))
            .unwrap_or_else(|_| self.dialog.local.clone());
        self.invite = invite.clone();
        self.send(ToMonitor::Request { request: invite, remote: self.remote });
    }

    /// Takes the SDP of a response to our INVITE (the answer, or early media in a 18x).
    fn take_answer(&mut self, response: &Response) {
        if response.body.is_empty() {
            return;
        }
        let answer = std::str::from_utf8(&response.body).ok().map(starling_media::sdp::RemoteMedia::parse);
        match answer {
            Some(Ok(answer)) => match starling_media::sdp::negotiate(&answer, &self.media.codecs, false) {
                Ok(negotiated) => {
                    if negotiated.remote.port() != 0 && !negotiated.remote.ip().is_unspecified() {
                        self.session().set_remote_media(&negotiated);
                    }
                    if let Some(row) =
                        self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&self.key.call_id)
                    {
                        row.format = format_name(&negotiated.codec.name).to_owned();
                    }
                    self.negotiated = Some(negotiated);
                }
                Err(e) => tracing::warn!("{}: the answer has no codec we offered: {e}", self.key.call_id),
            },
            _ => tracing::warn!("{}: unreadable SDP in the {}", self.key.call_id, response.status),
        }
    }

    /// The ACK for a 2xx to our re-INVITE with CSeq `seq` (the monitor ACKs the 2xx to the
    /// dialog's first INVITE itself, at once).
    fn ack(&mut self, seq: u32) {
        let via = self.new_via();
        let ack = self.dialog.ack(seq, &via);
        self.send(ToMonitor::Stateless { message: SipMessage::Request(ack), remote: self.dialog_target() });
    }

    /// A response to our INVITE (outbound calls).
    async fn invite_response(&mut self, state: &mut State, response: &Response) -> Next {
        let status = response.status;
        match (*state, status) {
            (State::Early, 101..=199) => {
                if let Some(dialog) = Dialog::uac(&self.invite, response) {
                    if self.dialog.id.remote_tag.is_empty() {
                        self.dialog = dialog;
                    }
                }
                self.take_answer(response);
                let control = if status == 180 || status == 181 { Control::Ringing } else { Control::Progress };
                let _ = self.driver.frames.send(Frame::Control(control)).await;
                if status == 180 && !response.body.is_empty() {
                    let _ = self.driver.frames.send(Frame::Control(Control::Progress)).await;
                }
            }
            (State::Early | State::Cancelling, 200..=299) => {
                let Some(dialog) = Dialog::uac(&self.invite, response) else {
                    tracing::warn!("{}: a 2xx without To tag or Contact", self.key.call_id);
                    return Next::Go;
                };
                self.dialog = dialog;
                if *state == State::Cancelling {
                    // The answer crossed our CANCEL: end the call we no longer want.
                    self.bye();
                    return Next::End;
                }
                self.take_answer(response);
                *state = State::Answered { acked: true };
                self.publish();
                if let Some(row) =
                    self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&self.key.call_id)
                {
                    row.last_message = "Rx: INVITE".into();
                }
                let _ = self.driver.frames.send(Frame::Control(Control::Answer)).await;
            }
            // A retransmitted 2xx is re-ACKed by the monitor. Another fork that answered too
            // (RFC 3261 §13.2.2.4), ACKed there as well, is ended here.
            (State::Answered { .. }, 200..=299)
                if Dialog::id_of_response(response).is_some_and(|id| id != self.dialog.id) =>
            {
                if let Some(mut other) = Dialog::uac(&self.invite, response) {
                    let bye = other.request(Method::Bye, &self.new_via());
                    self.send(ToMonitor::Request { request: bye, remote: self.remote });
                }
            }
            (State::Early, 401 | 407) => {
                let (challenge_header, answer_header) = if status == 401 {
                    (HeaderName::WwwAuthenticate, HeaderName::Authorization)
                } else {
                    (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization)
                };
                let challenge = response.headers.get(&challenge_header).and_then(Challenge::parse);
                let cnonce = crate::ids::cnonce();
                let answer = match (&mut self.direction, challenge) {
                    (Direction::Outbound(out), Some(challenge)) if out.auth_tries == 0 || challenge.stale => {
                        out.auth_tries += 1;
                        let uri = out.uri.to_string();
                        out.credentials.as_ref().and_then(|c| c.answer(&challenge, "INVITE", &uri, &cnonce, 1))
                    }
                    _ => None,
                };
                match answer {
                    Some(answer) => self.send_invite(Some((answer_header, answer))),
                    None => {
                        tracing::info!(
                            "{}: {status} from '{}' and no (more) credentials to answer it",
                            self.key.call_id,
                            self.peer
                        );
                        return self.refused(status).await;
                    }
                }
            }
            (State::Early, 300..) => return self.refused(status).await,
            (State::Cancelling, 300..) => return Next::End,
            _ => {}
        }
        Next::Go
    }

    /// Our INVITE was refused: tell the channel why (Busy/Congestion, then the hangup cause).
    async fn refused(&mut self, status: u16) -> Next {
        self.reregister_if(status);
        let cause = sip_to_hangup_cause(status);
        tracing::info!("Call to '{}' refused: {status} ({})", self.peer, cause.name());
        let control = match cause {
            Cause::USER_BUSY => Some(Control::Busy),
            Cause::CONGESTION | Cause::SWITCH_CONGESTION => Some(Control::Congestion),
            _ => None,
        };
        if let Some(control) = control {
            let _ = self.driver.frames.send(Frame::Control(control)).await;
        }
        let _ = self.driver.frames.send(Frame::Hangup(cause)).await;
        Next::End
    }

    /// `reregister_on`: a trunk refusing our INVITE this way may have lost our registration.
    fn reregister_if(&self, status: u16) {
        if let Direction::Outbound(out) = &self.direction {
            if out.reregister_on.contains(&status) {
                self.send(ToMonitor::Reregister { peer: self.peer.clone(), status });
            }
        }
    }

    /// Runs the call until either side hangs up.
    ///
    /// However it ends — a panic in the loop included — the monitor hears `Gone` (it frees the
    /// call-limit slot and the `sip show channels` row; a drop guard, so that no unwind path
    /// skips it), and the RTP ports and the relay leg go with the pvt. After a panic the far
    /// end is told as the state wants (see [`Pvt::end_after_panic`]).
    pub async fn run(mut self) {
        let _gone =
            GoneOnDrop { to_monitor: self.shared.to_monitor.clone(), key: self.key.clone(), peer: self.peer.clone() };
        let mut state = match self.direction {
            Direction::Inbound { .. } => State::Early,
            Direction::Outbound(_) => State::Idle,
        };
        // A root span per call, entered only while the call's task runs (Instrument): an
        // entered guard held across awaits would make every later call its child, and closing
        // a chain of thousands of spans overflows the stack.
        let span = tracing::info_span!(parent: None, "call", call_id = %self.key.call_id, peer = %self.peer);
        let ran =
            tracing::Instrument::instrument(starling_core::panic::catch_future(self.run_call(&mut state)), span).await;
        if let Err(report) = ran {
            self.end_after_panic(state, &report);
        }
        self.flush_rtp().await;
    }

    /// The call's loop panicked in `state`: one ERROR line names the channel, the far end gets
    /// what a hangup with `FAILURE` gives it in that state — 500 Server Internal Error to an
    /// unanswered caller, CANCEL for our INVITE still ringing, BYE once answered (at once:
    /// nothing waits for an ACK any more) — and the channel hears the hangup.
    fn end_after_panic(&mut self, state: State, report: &starling_core::panic::PanicReport) {
        let channel = self
            .shared
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.key.call_id)
            .map(|row| row.detail.channel.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("SIP/{}", self.peer));
        let told = match (state, &self.direction) {
            (State::Early, Direction::Inbound { .. }) => {
                self.respond(hangup_cause_to_sip(Cause::FAILURE));
                "500"
            }
            (State::Early, Direction::Outbound(_)) => {
                let cancel = starling_sip::transaction::cancel_for(&self.invite);
                self.send(ToMonitor::Request { request: cancel, remote: self.remote });
                "CANCEL"
            }
            (State::Answered { .. }, _) => {
                self.bye();
                "BYE"
            }
            (State::Idle | State::Cancelling, _) => "nothing",
        };
        tracing::error!(
            "{channel} (SIP call {}) panicked: {report}; ending the call ({told} to the far end)",
            self.key.call_id
        );
        self.take_back_relay();
        let _ = self.driver.frames.try_send(Frame::Hangup(Cause::FAILURE));
    }

    /// The call's loop; `state` is kept where [`Pvt::run`] can read it if this panics.
    async fn run_call(&mut self, state: &mut State) {
        let mut retransmit: Option<(TokioInstant, Duration, Response)> = None;
        let give_up_2xx = 64 * T1;
        let mut answered_at = TokioInstant::now();
        // Outbound, after CANCEL: how long we wait for the INVITE's final response.
        let mut cancel_deadline: Option<TokioInstant> = None;
        let mut buffer = vec![0u8; 2048];
        let mut rtcp_buffer = [0u8; 1500];
        let mut frames = Vec::new();
        let mut last_remote = self.session().remote();
        self.rtp_in = rtp_reader(&self.rtp);
        let mut rtp_received = 0u64;
        // The channel hung up before the ACK of our 200: the BYE waits for it.
        let mut pending_bye = false;
        // Our offer (a re-INVITE or UPDATE: hold, direct media) awaiting its final response: its
        // CSeq and method.
        let mut reinvite_seq: Option<(u32, Method)> = None;
        // Our next offer and when it may leave; it waits for the one before to be answered, and
        // says what the media is when it leaves (so offers asked for meanwhile are one).
        let mut offer_due: Option<(TokioInstant, Method)> = None;
        // One timer for the call's life, moved only when the next deadline changes: a new
        // timer per wake-up (50 RTP packets a second) costs more than the packet itself.
        let far = TokioInstant::now() + Duration::from_secs(86_400 * 365);
        let timer = sleep_until(far);
        tokio::pin!(timer);
        let mut armed = far;
        'call: loop {
            let deadline = [
                self.call_media.poll_timeout().map(TokioInstant::from_std),
                retransmit.as_ref().map(|r| r.0),
                cancel_deadline,
                offer_due
                    .as_ref()
                    .filter(|_| reinvite_seq.is_none() && *state == (State::Answered { acked: true }))
                    .map(|o| o.0),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
            if deadline != armed {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
            tokio::select! {
                command = self.driver.commands.recv(), if !pending_bye => match command {
                    Some(DriverCommand::Call(caller)) => {
                        if *state == State::Idle {
                            if let Direction::Outbound(out) = &mut self.direction {
                                out.caller = caller;
                            }
                            self.send_invite(None);
                            *state = State::Early;
                        }
                    }
                    Some(DriverCommand::Answer) => {
                        if *state == State::Early && matches!(self.direction, Direction::Inbound { .. }) {
                            let ok = self.with_sdp(self.response(200));
                            self.respond_with(ok.clone());
                            *state = State::Answered { acked: false };
                            self.publish();
                            answered_at = TokioInstant::now();
                            retransmit = Some((answered_at + T1, T1, ok));
                        }
                    }
                    // The party we are bridged to holds (passthrough): a re-INVITE offering
                    // `sendonly` puts our far end on hold, `sendrecv` takes it back.
                    Some(DriverCommand::Indicate(control @ (Control::Hold | Control::Unhold))) => {
                        use starling_media::sdp::Direction as Dir;
                        if matches!(*state, State::Answered { .. }) {
                            self.media.direction = if control == Control::Hold { Dir::SendOnly } else { Dir::SendRecv };
                            offer_due = Some((TokioInstant::now(), Method::Invite));
                        }
                    }
                    Some(DriverCommand::Indicate(control)) => {
                        if *state == State::Early {
                            match control {
                                Control::Ringing => self.respond(180),
                                Control::Progress => {
                                    let progress = self.with_sdp(self.response(183));
                                    self.respond_with(progress);
                                }
                                // As chan_sip's sip_indicate: 486/503 is the INVITE's final
                                // answer (its transaction takes the ACK), the caller is gone and
                                // the channel is soft-hung-up, so Busy()/Congestion() end.
                                Control::Busy | Control::Congestion
                                    if matches!(self.direction, Direction::Inbound { .. }) =>
                                {
                                    let (status, cause) = match control {
                                        Control::Busy => (486, Cause::USER_BUSY),
                                        _ => (503, Cause::CONGESTION),
                                    };
                                    self.respond(status);
                                    let _ = self.driver.frames.send(Frame::Hangup(cause)).await;
                                    break;
                                }
                                _ => {}
                            }
                        }
                    }
                    // In direct media the far end hears the other far end itself: what the
                    // bridge still passes on (sent to us before that one moved) would be a
                    // second stream, and one a jitter buffer may take for late.
                    Some(DriverCommand::Write(Frame::Voice { .. }))
                        if self.direct_bridged.load(std::sync::atomic::Ordering::Relaxed) => {}
                    Some(DriverCommand::Write(Frame::Voice { format: f, samples, data })) => {
                        // Nothing goes to a party that put us on hold (we answered recvonly/inactive).
                        let relayed_into =
                            self.natively_bridged() && self.published.lock().unwrap_or_else(|p| p.into_inner()).relayed_into;
                        if !self.call_media.sending_digit() && !self.held && !relayed_into {
                            self.call_media.send_voice(f, samples, data);
                            if self.natively_bridged() {
                                // A native bridge is starting: until the other call relays, its
                                // media still comes as frames. The relayed packets will continue
                                // our stream from where these left it.
                                self.publish_stream();
                            }
                        }
                    }
                    Some(DriverCommand::SendDigit(digit)) => {
                        if self.dtmfmode != DtmfMode::Info {
                            self.call_media.send_digit(TokioInstant::now().into_std(), digit, &self.key.call_id);
                        } else if matches!(*state, State::Answered { .. }) {
                            self.request_in_dialog(Method::Info, Some(("application/dtmf-relay", info_body(digit))));
                        }
                    }
                    Some(DriverCommand::Write(_)) => {}
                    Some(DriverCommand::Bridged(peer)) => self.call_media.set_bridged(peer),
                    // A hangup, or the channel gone without a word: end the call all the same.
                    Some(DriverCommand::Hangup(_)) | None => {
                        let cause = match command {
                            Some(DriverCommand::Hangup(cause)) => cause,
                            _ => Cause::NORMAL_CLEARING,
                        };
                        match (*state, &self.direction) {
                            (State::Early, Direction::Inbound { .. }) => self.respond(hangup_cause_to_sip(cause)),
                            (State::Early, Direction::Outbound(_)) => {
                                let cancel = starling_sip::transaction::cancel_for(&self.invite);
                                self.send(ToMonitor::Request { request: cancel, remote: self.remote });
                                *state = State::Cancelling;
                                cancel_deadline = Some(TokioInstant::now() + 64 * T1);
                                continue;
                            }
                            // RFC 3261 §15: no BYE before the ACK of our 2xx (it could overtake
                            // the 2xx through a proxy): it leaves when the ACK comes, or when we
                            // give up waiting for one.
                            (State::Answered { acked: false }, Direction::Inbound { .. }) => {
                                pending_bye = true;
                                continue;
                            }
                            (State::Answered { .. }, _) => self.bye(),
                            (State::Idle | State::Cancelling, _) => {}
                        }
                        break;
                    }
                },
                message = self.from_monitor.recv() => match message {
                    Some(ToPvt::Ack) => {
                        if let State::Answered { .. } = *state {
                            *state = State::Answered { acked: true };
                            retransmit = None;
                            if pending_bye {
                                self.bye();
                                break;
                            }
                        }
                    }
                    Some(ToPvt::Bye { tx, request }) => {
                        let ok = self.response_to(&request, 200);
                        self.send(ToMonitor::Respond { tx, response: ok });
                        let _ = self.driver.frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await;
                        break;
                    }
                    Some(ToPvt::Reinvite { tx, request }) => {
                        match self.reinvite(&request).await {
                            Ok(ok) => {
                                self.call_media.set_format(self.negotiated.as_ref());
                                self.send(ToMonitor::Respond { tx, response: ok.clone() });
                                *state = State::Answered { acked: false };
                                answered_at = TokioInstant::now();
                                retransmit = Some((answered_at + T1, T1, ok));
                            }
                            Err(status) => {
                                let refusal = self.response_to(&request, status);
                                self.send(ToMonitor::Respond { tx, response: refusal });
                            }
                        }
                    }
                    Some(ToPvt::Update { tx, request }) => {
                        // As a re-INVITE's offer, answered in the 200 (no ACK follows); without
                        // an offer only the dialog's CSeq is checked.
                        let response = if request.body.is_empty() {
                            match self.dialog.handle_request(&request) {
                                Ok(_) => self.response_to(&request, 200),
                                Err(_) => self.response_to(&request, 500),
                            }
                        } else {
                            match self.reinvite(&request).await {
                                Ok(ok) => {
                                    self.call_media.set_format(self.negotiated.as_ref());
                                    ok
                                }
                                Err(status) => self.response_to(&request, status),
                            }
                        };
                        self.send(ToMonitor::Respond { tx, response });
                    }
                    Some(ToPvt::Info { tx, request }) => {
                        let digit = info_digit(&request);
                        let ok = self.response_to(&request, 200);
                        self.send(ToMonitor::Respond { tx, response: ok });
                        if let Some((digit, duration_ms)) = digit {
                            tracing::debug!("DTMF '{digit}' received by INFO on {}", self.key.call_id);
                            let _ = self.driver.frames.send(Frame::DtmfBegin(digit)).await;
                            let _ = self.driver.frames.send(Frame::DtmfEnd { digit, duration_ms }).await;
                        }
                    }
                    Some(ToPvt::Refer { tx, request }) => {
                        let answered = matches!(*state, State::Answered { .. });
                        let frame = match refer_target(&request) {
                            Some(ReferTarget::Blind(exten)) => {
                                tracing::info!("{} transfers its party to '{exten}'", self.peer);
                                Ok(Frame::Transfer(exten))
                            }
                            Some(ReferTarget::Replaces { call_id, to_tag, from_tag }) => {
                                match replaced_channel(&self.shared.table, &call_id, &to_tag, &from_tag) {
                                    Some(channel) if call_id != self.key.call_id => {
                                        tracing::info!("{} transfers its party to the party of {channel}", self.peer);
                                        Ok(Frame::AttendedTransfer(channel))
                                    }
                                    // As chan_sip: no such dialog is a 603.
                                    _ => {
                                        tracing::info!("{}: REFER replaces an unknown call '{call_id}'", self.key.call_id);
                                        Err(603)
                                    }
                                }
                            }
                            None => Err(400),
                        };
                        match (answered, frame) {
                            (true, Ok(frame)) => {
                                let accepted = self.response_to(&request, 202);
                                self.send(ToMonitor::Respond { tx, response: accepted });
                                let _ = self.driver.frames.send(frame).await;
                                // RFC 3515: the outcome as a sipfrag; handing the party over is
                                // the success (the bridge then ends this call with BYE).
                                self.notify_refer("SIP/2.0 200 OK");
                            }
                            (answered, refused) => {
                                let status = if answered { refused.err().unwrap_or(400) } else { 603 };
                                let refusal = self.response_to(&request, status);
                                self.send(ToMonitor::Respond { tx, response: refusal });
                            }
                        }
                    }
                    Some(ToPvt::Cancelled) => {
                        if *state == State::Early {
                            self.respond(487);
                            let _ = self.driver.frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await;
                            break;
                        }
                    }
                    Some(ToPvt::Response(response)) => {
                        let cseq = response.cseq();
                        let is_invite = cseq.as_ref().is_some_and(|c| c.method == Method::Invite);
                        if reinvite_seq.is_some() && cseq.as_ref().map(|c| (c.seq, c.method.clone())) == reinvite_seq {
                            // The answer to our offer (hold, unhold, direct media).
                            if response.status >= 200 {
                                reinvite_seq = None;
                            }
                            if response.status == 491 {
                                // Glare (RFC 3261 §14.1): offer again after 2.1–4 s.
                                let wait = Duration::from_millis(2100 + self.shared.random() % 1900);
                                offer_due = Some((TokioInstant::now() + wait, cseq.as_ref().map_or(Method::Invite, |c| c.method.clone())));
                            } else if response.status >= 300 {
                                tracing::warn!("{}: our offer was refused with {}", self.key.call_id, response.status);
                            }
                            if (200..300).contains(&response.status) {
                                if is_invite {
                                    self.ack(cseq.map_or(0, |c| c.seq));
                                }
                                self.take_answer(&response);
                                self.call_media.set_format(self.negotiated.as_ref());
                                self.publish();
                            }
                        } else if is_invite && matches!(self.direction, Direction::Outbound(_)) {
                            let before = *state;
                            if let Next::End = self.invite_response(state, &response).await {
                                break;
                            }
                            if before != *state || response.status < 200 {
                                self.call_media.set_format(self.negotiated.as_ref());
                            }
                        }
                    }
                    Some(ToPvt::Timeout) => {
                        if *state == State::Early && matches!(self.direction, Direction::Outbound(_)) {
                            // Nothing at all came back in 64·T1: Asterisk's auto-congestion.
                            tracing::info!("No answer at all from '{}' to our INVITE: congestion", self.peer);
                            // As a 408 would be.
                            self.reregister_if(408);
                            let _ = self.driver.frames.send(Frame::Control(Control::Congestion)).await;
                            let _ = self.driver.frames.send(Frame::Hangup(Cause::CONGESTION)).await;
                            break;
                        }
                    }
                    Some(ToPvt::Direct(direct)) => {
                        let now = TokioInstant::now();
                        let method = self.direct_offer_method();
                        match direct {
                            Some(direct) => {
                                tracing::debug!("{}: directing the media to the other call's far end", self.key.call_id);
                                self.direct = Some(direct);
                                self.session().set_media_elsewhere(now.into_std(), true);
                                offer_due = Some((now, method));
                            }
                            None => {
                                if self.direct.take().is_some() {
                                    self.session().set_media_elsewhere(now.into_std(), false);
                                    offer_due = Some((now + REDIRECT_BACK_GRACE, method));
                                }
                            }
                        }
                    }
                    Some(ToPvt::DirectRefresh) => {
                        if self.direct.is_some() {
                            offer_due = Some((TokioInstant::now(), self.direct_offer_method()));
                        }
                    }
                    Some(ToPvt::Relay(relay)) => {
                        self.take_back_relay();
                        if relay.is_some() {
                            self.publish_stream();
                        } else {
                            self.published.lock().unwrap_or_else(|p| p.into_inner()).relayed_into = false;
                        }
                        self.relay = relay;
                        self.call_media.drop_digit();
                    }
                    None => break,
                },
                received = self.rtcp.recv_from(&mut rtcp_buffer) => {
                    if let Ok((len, _)) = received {
                        let now = tokio::time::Instant::now().into_std();
                        let handled = self.session().handle_rtcp(now, &rtcp_buffer[..len]);
                        match handled {
                            // What the far end says it lost shows in `sip show channelstats`.
                            Ok(()) => self.publish_stats(),
                            Err(e) => tracing::debug!("{}: RTCP: {e}", self.key.call_id),
                        }
                    }
                }
                received = recv_rtp(&self.rtp_in, &mut buffer) => {
                    if let Ok((len, from)) = received {
                        let now = tokio::time::Instant::now().into_std();
                        let handled = self.session().handle_rtp(now, from, &buffer[..len]);
                        if let Err(starling_media::session::ReceiveError::Stray(source)) = handled {
                            tracing::debug!(
                                "{}: RTP from {source}, dropping due to strict RTP protection",
                                self.key.call_id
                            );
                            // Counted in `sip show channelstats` at once (a lock and a copy:
                            // less than the packet cost to receive).
                            self.publish_stats();
                        }
                        let mut hand_off = false;
                        if let Ok(packet) = handled {
                            // Native bridge: once the other call has said which stream to continue,
                            // packets are rewritten in place and sent on from its socket, never
                            // decoded. Until then they go the frames' way, as before the bridge.
                            if let Some(relay) = self.relay.as_mut().and_then(|relay| relay.begins().then_some(relay)) {
                                relay.forward(&mut buffer[..len]);
                                // From the next packet on, the relay thread reads our socket.
                                hand_off = true;
                            } else {
                                let native = self.natively_bridged();
                                self.call_media.decode(now, &packet, &buffer[..len], native, &mut frames);
                                self.deliver(&mut frames).await;
                            }
                        }
                        rtp_received += 1;
                        if rtp_received.is_multiple_of(50) {
                            self.publish_stats();
                        }
                        if hand_off {
                            self.hand_off_relay();
                        }
                        if self.session().remote() != last_remote {
                            // Comedia learnt (or re-learnt) where the far end really is.
                            last_remote = self.session().remote();
                            self.publish();
                        }
                    }
                },
                _ = &mut timer => {
                    armed = far;
                    timer.as_mut().reset(far);
                    let now = TokioInstant::now();
                    if cancel_deadline.is_some_and(|at| now >= at) {
                        break;
                    }
                    if let Some((at, method)) = offer_due.clone() {
                        // RFC 3261 §14.1: not while an INVITE transaction is in progress (our 200 unacknowledged).
                        if now >= at && reinvite_seq.is_none() && *state == (State::Answered { acked: true }) {
                            offer_due = None;
                            reinvite_seq = Some((self.send_offer(method.clone()), method));
                        }
                    }
                    if let Some((at, interval, ok)) = retransmit.take() {
                        if now >= at {
                            if now - answered_at >= give_up_2xx {
                                // No ACK for the 200 (RFC 3261 §13.3.1.4): end the call.
                                tracing::warn!("no ACK for the 200 OK on {}, hanging up", self.key.call_id);
                                self.bye();
                                let _ = self.driver.frames.send(Frame::Hangup(Cause::NO_USER_RESPONSE)).await;
                                break;
                            }
                            self.send(ToMonitor::Stateless { message: SipMessage::Response(ok.clone()), remote: self.remote });
                            let next = (interval * 2).min(T2);
                            retransmit = Some((now + next, next, ok));
                        } else {
                            retransmit = Some((at, interval, ok));
                        }
                    }
                    self.call_media.handle_timeout(now.into_std(), self.natively_bridged(), &mut frames);
                    self.deliver(&mut frames).await;
                }
            }
            self.flush_rtp().await;
            loop {
                let Some(event) = self.session().poll_event() else { break };
                if event == SessionEvent::Timeout && matches!(*state, State::Answered { .. }) {
                    // chan_sip's check_rtp_timeout: its NOTICE, and cause 44 ("as used by Cisco
                    // for RTP timeouts").
                    let silent = self.session().silent_for(TokioInstant::now().into_std()).as_secs();
                    let (channel, uniqueid) = self
                        .shared
                        .table
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&self.key.call_id)
                        .map(|row| (row.detail.channel.clone(), row.detail.uniqueid.clone()))
                        .unwrap_or_default();
                    tracing::info!(target: "chan_sip.c", "Disconnecting call '{channel}' for lack of RTP activity in {silent} seconds");
                    self.shared.core.events().publish(
                        starling_core::events::Event::new("SessionTimeout", "call")
                            .with("Source", "RTPTimeout")
                            .with("Channel", channel)
                            .with("Uniqueid", uniqueid),
                    );
                    self.bye();
                    let _ = self.driver.frames.send(Frame::Hangup(Cause::REQUESTED_CHAN_UNAVAIL)).await;
                    break 'call;
                }
            }
        }
    }

    /// Sends what the RTP session has queued: RTP from the RTP socket, RTCP from RTCP's
    /// (unless muxed onto the RTP port).
    /// Hands frames to the channel: voice is dropped rather than queued when the dialplan
    /// lags; key presses never are.
    async fn deliver(&mut self, frames: &mut Vec<Frame>) {
        for frame in frames.drain(..) {
            match frame {
                Frame::Voice { .. } => {
                    let _ = self.driver.frames.try_send(frame);
                }
                frame => {
                    let _ = self.driver.frames.send(frame).await;
                }
            }
        }
    }

    async fn flush_rtp(&mut self) {
        loop {
            let (transmit, remote) = {
                let mut session = self.session();
                let Some(transmit) = session.poll_transmit() else { break };
                (transmit, session.remote())
            };
            if transmit.rtcp && Some(transmit.remote) != remote {
                let _ = self.rtcp.send_to(&transmit.data, transmit.remote).await;
            } else {
                // Nonblocking: a full socket buffer drops the packet, as the wire would.
                let _ = self.rtp.send_to(&transmit.data, transmit.remote);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKi\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: i@x\r\nCSeq: 3 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match starling_sip::message::parse(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn refer(refer_to: &str) -> Request {
        let text = format!(
            "REFER sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKr\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: r@x\r\nCSeq: 3 REFER\r\nRefer-To: {refer_to}\r\nContent-Length: 0\r\n\r\n"
        );
        match starling_sip::message::parse(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn refer_targets_blind_and_attended() {
        assert_eq!(refer_target(&refer("<sip:600@pbx>")), Some(ReferTarget::Blind("600".into())));
        assert_eq!(
            refer_target(&refer("<sip:200@pbx?Replaces=abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34>")),
            Some(ReferTarget::Replaces { call_id: "abc@host".into(), to_tag: "12".into(), from_tag: "34".into() })
        );
        assert_eq!(refer_target(&refer("<sip:200@pbx?Replaces=abc%3Bto-tag%3D12>")), None, "no from-tag");
        assert_eq!(refer_target(&refer("<sip:pbx>")), None);
    }

    #[test]
    fn keys_in_info_bodies() {
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")), Some(('5', 160)));
        for digit in "0123456789*#ABCD".chars() {
            assert_eq!(info_digit(&info("application/dtmf-relay", &info_body(digit))), Some((digit, 250)), "{digit}");
        }
        assert_eq!(info_body('#'), "Signal=#\r\nDuration=250\r\n");
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal= 11\r\n")), Some(('#', 100)));
        assert_eq!(info_digit(&info("application/dtmf", "*")), Some(('*', 100)));
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal=Z\r\n")), None);
        assert_eq!(info_digit(&info("text/plain", "5")), None);
    }

    /// The call task's guard tells the monitor the call is gone (its call-limit slot and row
    /// are freed) also when the task panics where no boundary catches it; and FAILURE, the
    /// cause a contained panic hangs up with, is a 500 to an unanswered caller.
    #[test]
    fn a_call_task_that_panics_still_says_gone() {
        let runtime = starling_core::tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (to_monitor, mut from_calls) = starling_core::tokio::sync::mpsc::unbounded_channel();
        let key = CallKey { call_id: "a@b".into(), local_tag: "t".into() };
        let guard = GoneOnDrop { to_monitor, key: key.clone(), peer: "alice".into() };
        let ended = runtime.block_on(async move {
            starling_core::tokio::spawn(async move {
                let _gone = guard;
                starling_core::tokio::task::yield_now().await;
                panic!("in the call task");
            })
            .await
        });
        assert!(ended.unwrap_err().is_panic());
        match from_calls.try_recv() {
            Ok(ToMonitor::Gone { key: gone, peer }) => assert_eq!((gone, peer.as_str()), (key, "alice")),
            _ => panic!("no Gone"),
        }
    }
}
