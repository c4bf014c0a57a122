//! One call's task, inbound or outbound: Asterisk's `sip_pvt`. It owns the driver end of the
//! call's `core::Channel`, the dialog's [`InviteSession`] and the RTP session, and is a thin
//! loop over four inputs — the channel's commands, what the monitor routes to the call (its
//! dialog's requests, the responses to its own), the RTP/RTCP sockets, and one timer — each
//! handed to the sans-IO state it is for. What the signalling does with them is in
//! `signalling.rs`; the RTP, key presses and voice in `media.rs` ([`CallMedia`]).
//!
//! It never touches the SIP socket: the monitor owns the transaction layer; the session's
//! output goes there as [`ToMonitor`] messages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use starling_core::channel::ChannelDriver;
use starling_core::frame::{Cause, Frame};
use starling_core::tokio::io::unix::AsyncFd;
use starling_core::tokio::io::Interest;
use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use starling_core::tokio::time::{sleep_until, Instant as TokioInstant};
use starling_core::{tokio, tracing};
use starling_media::sdp::{LocalMedia, Negotiated};
use starling_media::session::{RtpSession, SessionEvent};
use starling_relay::{RelayHandle, RelayTo, RelayedLeg};
use starling_sip::digest::Credentials;
use starling_sip::session::InviteSession;
use starling_sip::transaction::{Transport, TxId};
use starling_sip::uri::Uri;
use starling_sip::{Method, Request};

use crate::call::media::CallMedia;
use crate::call::messages::{ToMonitor, ToPvt};
use crate::call::native::{DirectTo, MediaInfo, PvtHandle};
use crate::call::sdes::CallSrtp;
use crate::config::{DirectMedia, DtmfMode, SessionTimers};
use crate::shared::{CallKey, Shared};

/// Which side started the call.
pub enum Direction {
    /// They called: their INVITE, and its transaction, which our responses answer.
    Inbound { invite: Box<Request>, tx: TxId },
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
    /// The peer's `reregister_on`: failures of our INVITE that re-register its account.
    pub reregister_on: Vec<u16>,
}

/// Everything a call is made of (see [`Pvt::new`]).
pub struct PvtParts {
    pub key: CallKey,
    pub peer: String,
    pub direction: Direction,
    /// Where requests and responses go (the INVITE's source: NAT-safe; or the peer's address).
    pub remote: SocketAddr,
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    /// What the call's signalling runs over (our Via and Contacts say so: `transport=tcp`/`tls`;
    /// the monitor picks the connection).
    pub transport: Transport,
    pub useragent: String,
    pub dtmfmode: DtmfMode,
    pub directmedia: DirectMedia,
    /// The peer's `nat` has comedia.
    pub comedia: bool,
    /// `session-timers`, `session-expires`, `session-minse`, `session-refresher`.
    pub session_timers: SessionTimers,
    pub shared: Arc<Shared>,
    pub driver: ChannelDriver,
    /// Nonblocking; the call reads it through tokio, or the relay thread while natively bridged.
    pub rtp: std::net::UdpSocket,
    /// RTCP's socket, on the RTP port + 1 (with rtcp-mux, RTCP uses the RTP socket).
    pub rtcp: UdpSocket,
    pub session: RtpSession,
    pub media: LocalMedia,
    /// Inbound: what the offer and our codecs agreed. Outbound: `None` until the answer.
    pub negotiated: Option<Negotiated>,
    /// SDES-SRTP: inbound, keyed already by the offer if it had crypto.
    pub srtp: CallSrtp,
}

/// One call: Asterisk's `sip_pvt`.
pub struct Pvt {
    pub(super) key: CallKey,
    pub(super) peer: String,
    pub(super) direction: Direction,
    pub(super) remote: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) transport: Transport,
    pub(super) useragent: String,
    pub(super) dtmfmode: DtmfMode,
    pub(super) directmedia: DirectMedia,
    pub(super) session_timers: SessionTimers,
    pub(super) shared: Arc<Shared>,
    from_monitor: UnboundedReceiver<ToPvt>,
    pub(super) driver: ChannelDriver,
    /// The channel has hung up, or has been told the call is over: it is not read or told
    /// anything more while the session ends (a CANCEL answered, a BYE waiting for the ACK).
    pub(super) hung_up: bool,
    /// The channel hung up with `ANSWERED_ELSEWHERE` (another callee answered, or a pickup):
    /// our CANCEL says so (chan_sip's `answered_elsewhere`).
    pub(super) answered_elsewhere: bool,
    /// The server transactions of the requests the session has yet to answer finally.
    pub(super) server_txs: Vec<(u32, Method, TxId)>,
    /// The INVITE came through a proxy (more than one Via): see `dialog_target`.
    pub(super) proxied: bool,
    rtp: Arc<std::net::UdpSocket>,
    /// `rtp` registered with tokio, while this task reads it (not while relayed).
    rtp_in: Option<AsyncFd<RtpFd>>,
    rtcp: UdpSocket,
    /// The RTP session (shared with the relay thread while relayed), key presses and voice.
    pub(super) call_media: CallMedia,
    pub(super) media: LocalMedia,
    pub(super) negotiated: Option<Negotiated>,
    /// SDES-SRTP: our crypto lines' keys and the packets' protection (call/sdes.rs).
    pub(super) srtp: CallSrtp,
    /// The far end put the call on hold (its last offer was sendonly or inactive).
    pub(super) held: bool,
    /// The last provisional was a 180: an SDP in it is early media, and Progress too.
    pub(super) ringing: bool,
    /// What a native bridge sees of this call.
    pub(super) published: Arc<Mutex<MediaInfo>>,
    /// A native bridge in progress: our far end's packets go straight to the other call.
    pub(super) relay: Option<Box<RelayTo>>,
    /// The relay handed over to the relay thread (with our socket): dropping it takes them back.
    relayed: Option<RelayHandle>,
    /// Direct media in progress: our far end is told to send to the other call's.
    pub(super) direct: Option<Box<DirectTo>>,
    /// Direct media ended: our far end is offered our own media again at this time.
    pub(super) redirect_back: Option<Instant>,
    /// An offer was asked for before the call was answered: it leaves once it is.
    pub(super) offer_wanted: bool,
    /// [`PvtHandle::direct`].
    pub(super) direct_bridged: Arc<AtomicBool>,
}

/// The largest RTP packet read: the rest of the 2 kB buffer is room for what SRTP adds.
const RECEIVE: usize = 2048 - 64;

/// The call's clock: tokio's, so that a test on paused time runs the call on it.
pub(super) fn now() -> Instant {
    TokioInstant::now().into_std()
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
        let (to_pvt, from_monitor) = tokio::sync::mpsc::unbounded_channel();
        let rtp = Arc::new(parts.rtp);
        let published = Arc::new(Mutex::new(MediaInfo {
            dtmfmode: parts.dtmfmode,
            directmedia: parts.directmedia,
            comedia: parts.comedia,
            ..Default::default()
        }));
        let direct = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(PvtHandle { to_pvt, rtp: rtp.clone(), media: published.clone(), direct: direct.clone() });
        // sip.conf's jitter buffer (jbenable): none, and no tick, without it.
        let jitter = crate::call::jitter::JitterPlayout::new(&parts.shared.conf().general.jb, &parts.key.call_id);
        let session = Arc::new(Mutex::new(parts.session));
        let call_media = CallMedia::new(session, parts.dtmfmode, parts.negotiated.as_ref(), jitter, now());
        let proxied = match &parts.direction {
            Direction::Inbound { invite, .. } => {
                invite.headers.get_all(&starling_sip::HeaderName::Via).flat_map(|v| v.split(',')).count() > 1
            }
            Direction::Outbound(_) => false,
        };
        let pvt = Pvt {
            key: parts.key,
            peer: parts.peer,
            direction: parts.direction,
            remote: parts.remote,
            local: parts.local,
            transport: parts.transport,
            useragent: parts.useragent,
            dtmfmode: parts.dtmfmode,
            directmedia: parts.directmedia,
            session_timers: parts.session_timers,
            shared: parts.shared,
            from_monitor,
            driver: parts.driver,
            hung_up: false,
            answered_elsewhere: false,
            server_txs: Vec::new(),
            proxied,
            rtp,
            rtp_in: None,
            rtcp: parts.rtcp,
            call_media,
            media: parts.media,
            negotiated: parts.negotiated,
            srtp: parts.srtp,
            held: false,
            ringing: false,
            published,
            relay: None,
            relayed: None,
            direct: None,
            redirect_back: None,
            offer_wanted: false,
            direct_bridged: direct,
        };
        pvt.publish();
        pvt.publish_srtp();
        (pvt, handle)
    }

    /// Runs the call until it is over.
    ///
    /// However it ends — a panic in the loop included — the monitor hears `Gone` (it frees the
    /// call-limit slot and the `sip show channels` row; a drop guard, so that no unwind path
    /// skips it), and the RTP ports and the relay leg go with the call. After a panic the far
    /// end is told as the session's state wants (see [`Pvt::end_after_panic`]).
    pub async fn run(mut self) {
        let _gone =
            GoneOnDrop { to_monitor: self.shared.to_monitor.clone(), key: self.key.clone(), peer: self.peer.clone() };
        // A root span per call, entered only while the call's task runs (Instrument): an
        // entered guard held across awaits would make every later call its child, and closing
        // a chain of thousands of spans overflows the stack.
        let span = tracing::info_span!(parent: None, "call", call_id = %self.key.call_id, peer = %self.peer);
        let Some(mut call) = tracing::Instrument::instrument(self.start(), span.clone()).await else { return };
        let ran =
            tracing::Instrument::instrument(starling_core::panic::catch_future(self.run_call(&mut call)), span).await;
        if let Err(report) = ran {
            self.end_after_panic(&mut call, &report);
        }
        self.flush_rtp().await;
    }

    /// The call's loop: until the session ends, or the RTP times out.
    async fn run_call(&mut self, call: &mut InviteSession) {
        let mut buffer = vec![0u8; 2048];
        let mut rtcp_buffer = [0u8; 1500];
        let mut frames = Vec::new();
        let mut last_remote = self.session().remote();
        self.rtp_in = rtp_reader(&self.rtp);
        let mut rtp_received = 0u64;
        // One timer for the call's life, moved only when the next deadline changes: a new
        // timer per wake-up (50 RTP packets a second) costs more than the packet itself.
        let far = TokioInstant::now() + std::time::Duration::from_secs(86_400 * 365);
        let timer = sleep_until(far);
        tokio::pin!(timer);
        let mut armed = far;
        let mut ended = self.drain(call).await;
        while !ended {
            let deadline = [call.poll_timeout(), self.call_media.poll_timeout(), self.redirect_back]
                .into_iter()
                .flatten()
                .min()
                .map_or(far, TokioInstant::from_std);
            if deadline != armed {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
            tokio::select! {
                command = self.driver.commands.recv(), if !self.hung_up => self.on_command(call, command).await,
                message = self.from_monitor.recv() => match message {
                    Some(message) => self.on_message(call, message),
                    None => break,
                },
                received = self.rtcp.recv_from(&mut rtcp_buffer) => {
                    let received = received.ok().and_then(|(len, _)| self.srtp.unprotect(&mut rtcp_buffer[..len], true));
                    if let Some(len) = received {
                        let handled = self.session().handle_rtcp(now(), &rtcp_buffer[..len]);
                        match handled {
                            // What the far end says it lost shows in `sip show channelstats`.
                            Ok(()) => self.publish_stats(),
                            Err(e) => tracing::debug!("{}: RTCP: {e}", self.key.call_id),
                        }
                    }
                }
                // (Room after the largest packet read for the tag SRTP adds when it is relayed.)
                received = recv_rtp(&self.rtp_in, &mut buffer[..RECEIVE]) => {
                    // SRTP: unprotected in place; one that is not authentic (or a replay, or
                    // before the keys are agreed) is dropped here, as a stray packet would be.
                    let received = received.ok().and_then(|(len, from)| {
                        self.srtp.unprotect(&mut buffer[..len], false).map(|len| (len, from))
                    });
                    if let Some((len, from)) = received {
                        let now = now();
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
                                relay.forward(&mut buffer, len);
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
                    let now = now();
                    call.handle_timeout(now);
                    if self.redirect_back.is_some_and(|at| at <= now) {
                        self.redirect_back = None;
                        self.offer(call, now);
                    }
                    self.call_media.handle_timeout(now, self.natively_bridged(), &mut frames);
                    self.deliver(&mut frames).await;
                }
            }
            self.flush_rtp().await;
            if self.rtp_timed_out() {
                self.rtp_timeout(call).await;
            }
            let answered = matches!(
                call.state(),
                starling_sip::session::State::Accepted | starling_sip::session::State::Confirmed
            );
            if self.offer_wanted && answered {
                self.offer(call, now());
            }
            ended = self.drain(call).await;
        }
    }

    /// The call's loop panicked: one ERROR line names the channel, the far end gets what a
    /// hangup with `FAILURE` gives it in the session's state — 500 to an unanswered caller,
    /// CANCEL for our INVITE still ringing, BYE once answered (at once: nothing waits for an
    /// ACK any more) — and the channel hears the hangup.
    fn end_after_panic(&mut self, call: &mut InviteSession, report: &starling_core::panic::PanicReport) {
        use starling_sip::session::{Role, State};
        let channel = self
            .shared
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&*self.key.call_id)
            .map(|row| row.detail.channel.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("SIP/{}", self.peer));
        let now = now();
        let told = match (call.role(), call.state()) {
            (Role::Uas, State::Proceeding) => {
                call.reject(now, crate::call::causes::hangup_cause_to_sip(Cause::FAILURE));
                "500"
            }
            (Role::Uac, State::Calling | State::Proceeding) => {
                call.hangup(now);
                "CANCEL"
            }
            (_, State::Accepted | State::Confirmed) => {
                call.hangup(now);
                if call.bye_pending() {
                    call.handle_timeout(now + std::time::Duration::from_secs(3600));
                }
                "BYE"
            }
            _ => "nothing",
        };
        self.send_queued(call);
        tracing::error!(
            "{channel} (SIP call {}) panicked: {report}; ending the call ({told} to the far end)",
            self.key.call_id
        );
        self.take_back_relay();
        let _ = self.driver.frames.try_send(Frame::Hangup(Cause::FAILURE));
    }

    /// Whether the RTP session says the far end went silent for too long (its only event).
    fn rtp_timed_out(&self) -> bool {
        let mut session = self.session();
        let mut timed_out = false;
        while let Some(event) = session.poll_event() {
            timed_out |= event == SessionEvent::Timeout;
        }
        timed_out
    }

    /// Tells a native bridge where our far end is and what it speaks.
    pub(super) fn publish(&self) {
        let mut info = self.published.lock().unwrap_or_else(|p| p.into_inner());
        info.remote.set(self.session().remote());
        info.codec = self.negotiated.as_ref().map(|n| n.codec.clone());
        info.telephone_event = self.negotiated.as_ref().and_then(|n| n.telephone_event.clone());
        info.secure = self.srtp.secure();
        let srtp = self.srtp.shared();
        if info.srtp.is_none() && srtp.is_some() && (self.natively_bridged() || info.relayed_into) {
            // The relay took the call's keys (none) when the bridge began; a re-key of SRTP
            // already on reaches it, SRTP first agreed now does not.
            tracing::warn!(
                "{}: SRTP agreed during a native bridge: the relay keeps this call's RTP in clear until it is bridged again",
                self.key.call_id
            );
        }
        info.srtp = srtp;
    }

    /// `sip show channel`'s Media and Crypto suite lines.
    pub(super) fn publish_srtp(&self) {
        let suite = self.srtp.suite().map(starling_media::srtp::Suite::name);
        if let Some(row) = self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&*self.key.call_id) {
            row.srtp = suite;
            row.srtp_state = self.srtp.shared();
        }
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

    pub(super) fn session(&self) -> std::sync::MutexGuard<'_, RtpSession> {
        self.call_media.session()
    }

    /// In a native bridge (relaying ourselves, or the relay thread for us).
    pub(super) fn natively_bridged(&self) -> bool {
        self.relay.is_some() || self.relayed.is_some()
    }

    /// In direct media, from the bridge's start (before this task hears of it).
    pub(super) fn direct_bridged(&self) -> bool {
        self.direct_bridged.load(Ordering::Relaxed)
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
        self.note_relayed(true);
    }

    /// The native bridge ended (or changes): we read our socket again.
    pub(super) fn take_back_relay(&mut self) {
        if self.relayed.take().is_some() {
            self.rtp_in = rtp_reader(&self.rtp);
            self.note_relayed(false);
        }
    }

    /// `sip show channel`'s Native relay line.
    fn note_relayed(&self, relayed: bool) {
        if let Some(row) = self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&*self.key.call_id) {
            row.native_relay = relayed;
        }
    }

    /// The other call's relay has stopped sending to our far end (the bridge ended or
    /// changes): our own packets go on from where its last left our stream. With SRTP this is
    /// what keeps our far end opening them: sequence numbers it has had already would be
    /// replays to it.
    pub(super) fn continue_after_relay(&self) {
        let until = self.published.lock().unwrap_or_else(|p| p.into_inner()).relayed_until.take();
        if let Some((seq, ts)) = until {
            self.session().continue_from(seq, ts);
        }
    }

    /// Tells the call relaying to us which stream its packets continue (ours so far).
    pub(super) fn publish_stream(&self) {
        let stream = {
            let session = self.session();
            (session.ssrc(), session.next_sequence(), session.next_timestamp())
        };
        self.published.lock().unwrap_or_else(|p| p.into_inner()).continue_from = Some(stream);
    }

    /// Hands frames to the channel: voice is dropped rather than queued when the dialplan
    /// lags; key presses never are.
    pub(super) async fn deliver(&mut self, frames: &mut Vec<Frame>) {
        for frame in frames.drain(..) {
            if self.hung_up {
                continue;
            }
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

    /// Sends what the RTP session has queued: RTP from the RTP socket, RTCP from RTCP's
    /// (unless muxed onto the RTP port).
    async fn flush_rtp(&mut self) {
        loop {
            let (mut transmit, remote) = {
                let mut session = self.session();
                let Some(transmit) = session.poll_transmit() else { break };
                (transmit, session.remote())
            };
            // SRTP: protected, or not sent at all (required and not keyed yet).
            if !self.srtp.protect(&mut transmit.data, transmit.rtcp) {
                continue;
            }
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
    use starling_sip::message::SipMessage;
    use starling_sip::transaction::{Config, Endpoint, Event, Transport};
    use starling_sip::{MessageHeaders, Response};
    use std::time::Duration;

    /// A call's task on tokio's paused clock, with a real transaction layer in front of it:
    /// their INVITE, our 200 on the channel's Answer, and no ACK ever — 64·T1 (32 s) later
    /// the call ends (BYE, and NO_USER_RESPONSE to the channel), at once in real time.
    #[test]
    fn an_answer_never_acknowledged_ends_the_call_after_64_t1_on_paused_time() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let core = starling_core::Core::for_tests();
            let text = "[general]\nbindaddr=127.0.0.1\ndisallow=all\nallow=ulaw\n";
            let conf =
                crate::config::SipConf::parse(&starling_core::config::Config::parse_str("sip.conf", text).unwrap())
                    .unwrap();
            let (to_monitor, mut from_call) = tokio::sync::mpsc::unbounded_channel();
            let relay = Arc::new(starling_relay::Relay::start_with(starling_relay::Backend::Epoll, 1, None).unwrap());
            let shared = Arc::new(Shared::new(
                core.clone(),
                Arc::new(std::sync::RwLock::new(Arc::new(conf))),
                crate::registrar::Bindings::default(),
                to_monitor,
                crate::call::show::DialogTable::default(),
                5060,
                relay,
            ));
            let sdp =
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
            let invite = format!(
                "INVITE sip:600@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKp1\r\n\
                 From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:600@127.0.0.1>\r\nCall-ID: paused@x\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:a@127.0.0.1:5062>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            let mut endpoint = Endpoint::new(Config::default());
            let remote: SocketAddr = "127.0.0.1:5062".parse().unwrap();
            endpoint.handle(now(), remote, Transport::Udp, invite.as_bytes());
            let Some(Event::Request { tx, request, .. }) = endpoint.poll_event() else { panic!("the INVITE") };

            let profile = crate::call::setup::CallProfile::resolve(&shared.conf(), None);
            let ip = "127.0.0.1".parse().unwrap();
            let (rtp, rtcp) = shared.bind_rtp(ip).expect("RTP ports");
            let (session, media) = shared.call_media(ip, &rtp, profile.codecs.clone(), 8000, &profile);
            let offer = starling_media::sdp::RemoteMedia::parse(sdp).unwrap();
            let negotiated = starling_media::sdp::negotiate(&offer, &profile.codecs, true).unwrap();
            let (mut channel, driver) = starling_core::channel::Channel::new(&core, "SIP", "a", true);
            let (pvt, _handle) = Pvt::new(PvtParts {
                key: CallKey { call_id: "paused@x".into(), local_tag: "as1".into() },
                peer: "a".into(),
                direction: Direction::Inbound { invite: Box::new(request), tx },
                remote,
                local: "127.0.0.1:5060".parse().unwrap(),
                transport: starling_sip::transaction::Transport::Udp,
                useragent: "Starling".into(),
                dtmfmode: profile.dtmfmode,
                directmedia: profile.directmedia,
                comedia: false,
                session_timers: profile.session_timers,
                shared: shared.clone(),
                driver,
                rtp,
                rtcp,
                session,
                media,
                negotiated: Some(negotiated),
                srtp: CallSrtp::default(),
            });
            let call = tokio::spawn(pvt.run());
            let started = TokioInstant::now();
            channel.answer();
            let ok = loop {
                match from_call.recv().await {
                    Some(ToMonitor::Respond { response, .. }) if response.status == 200 => break response,
                    Some(_) => {}
                    None => panic!("no 200"),
                }
            };
            assert_eq!(ok.to().and_then(|t| t.tag().map(str::to_owned)).as_deref(), Some("as1"));
            // No ACK: the next thing the call sends is its BYE, 64·T1 after the 200.
            let bye = loop {
                match from_call.recv().await {
                    Some(ToMonitor::Request { request, .. }) => break request,
                    Some(ToMonitor::Stateless {
                        message: SipMessage::Response(Response { status: 200, .. }), ..
                    }) => {}
                    other => panic!("a BYE, not {other:?}"),
                }
            };
            assert_eq!(bye.method, Method::Bye);
            assert_eq!(bye.uri.to_string(), "sip:a@127.0.0.1:5062");
            let waited = TokioInstant::now() - started;
            assert!((Duration::from_secs(32)..Duration::from_secs(33)).contains(&waited), "{waited:?}");
            assert_eq!(channel.read().await, None, "the channel is hung up");
            assert_eq!(channel.hangup_cause(), Some(Cause::NO_USER_RESPONSE));
            call.await.unwrap();
            assert!(matches!(from_call.recv().await, Some(ToMonitor::Gone { .. })));
        });
    }

    /// The call task's guard tells the monitor the call is gone (its call-limit slot and row
    /// are freed) also when the task panics where no boundary catches it; and FAILURE, the
    /// cause a contained panic hangs up with, is a 500 to an unanswered caller.
    #[test]
    fn a_call_task_that_panics_still_says_gone() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (to_monitor, mut from_calls) = tokio::sync::mpsc::unbounded_channel();
        let key = CallKey { call_id: "a@b".into(), local_tag: "t".into() };
        let guard = GoneOnDrop { to_monitor, key: key.clone(), peer: "alice".into() };
        let ended = runtime.block_on(async move {
            tokio::spawn(async move {
                let _gone = guard;
                tokio::task::yield_now().await;
                panic!("in the call task");
            })
            .await
        });
        assert!(ended.unwrap_err().is_panic());
        match from_calls.try_recv() {
            Ok(ToMonitor::Gone { key: gone, peer }) => assert_eq!((gone, peer.as_str()), (key, "alice")),
            _ => panic!("no Gone"),
        }
        assert_eq!(crate::call::causes::hangup_cause_to_sip(Cause::FAILURE), 500);
    }
}
