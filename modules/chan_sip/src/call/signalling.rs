//! The call's signalling: the channel's commands turned into [`InviteSession`] commands, the
//! monitor's messages into its inputs, its output sent through the monitor, and its events
//! told to the channel — all as chan_sip does for a `sip_pvt`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use starling_core::channel::DriverCommand;
use starling_core::frame::{CallerId, Cause, Control, Frame};
use starling_core::tracing;
use starling_media::sdp::LocalMedia;
use starling_sip::message::SipMessage;
use starling_sip::session::{EndReason, Event, InviteSession, ReferTarget, Rel100, SessionConfig, State, Transmit};
use starling_sip::transaction::via_for;
use starling_sip::{HeaderName, MessageHeaders, Method, Request};

use super::driver::{now, Direction, Pvt};
use crate::call::causes::{hangup_cause_to_sip, sip_to_hangup_cause};
use crate::call::messages::{ToMonitor, ToPvt};
use crate::call::sdes::Refusal;
use crate::config::DtmfMode;

/// A channel that leaves direct media is re-INVITEd back to us after this, unless it hangs up
/// first — as when Dial ends the call: the far end is spared a re-INVITE just before the BYE.
const REDIRECT_BACK_GRACE: Duration = Duration::from_millis(100);

/// The CSeq of our first INVITE, as chan_sip's (`p->ocseq` starts at 101 and is incremented).
const FIRST_INVITE_SEQ: u32 = 102;

impl Pvt {
    /// What the session is told of us: our Via and Contact (as `user`), sip.conf's timers.
    fn session_config(&self, user: &str) -> SessionConfig {
        let transport = self.transport;
        let host = starling_sip::uri::Host::from_ip(self.local.ip());
        let st = &self.session_timers;
        let credentials = match &self.direction {
            Direction::Outbound(out) => out.credentials.clone(),
            Direction::Inbound { .. } => None,
        };
        SessionConfig {
            via: via_for(transport, host, self.local.port(), ""),
            contact: self.contact(user),
            user_agent: self.useragent.clone(),
            allow: crate::monitor::ALLOWED_METHODS.to_owned(),
            supported: "replaces".to_owned(),
            session_timers: st.mode,
            session_expires: st.expires,
            min_se: st.min_se,
            refresher: st.refresher,
            rel100: Rel100::Supported,
            refresh_with_update: true,
            // The transaction layer retransmits our 2xx until the ACK (RFC 6026's Accepted).
            retransmit_2xx: false,
            credentials,
            entropy: Some(crate::ids::random),
            ..SessionConfig::default()
        }
    }

    /// The session, once the call starts: at once for their INVITE; for ours when the channel
    /// calls (`None`: it hung up first).
    pub(super) async fn start(&mut self) -> Option<InviteSession> {
        let now = now();
        match &self.direction {
            Direction::Inbound { invite, tx } => {
                let user = invite.uri.user.clone().unwrap_or_else(|| "s".to_owned());
                let config = self.session_config(&user);
                let seq = invite.cseq().map_or(0, |c| c.seq);
                self.server_txs.push((seq, Method::Invite, *tx));
                Some(InviteSession::uas(now, config, (**invite).clone(), &self.key.local_tag))
            }
            Direction::Outbound(_) => loop {
                match self.driver.commands.recv().await {
                    Some(DriverCommand::Call(caller)) => break Some(self.call(now, caller)),
                    Some(DriverCommand::Hangup(_)) | None => return None,
                    Some(_) => {}
                }
            },
        }
    }

    /// Our INVITE, presenting `caller` as the peer's `sendrpid`, `fromuser`, `fromdomain` say.
    fn call(&mut self, now: Instant, caller: CallerId) -> InviteSession {
        let Direction::Outbound(out) = &self.direction else { unreachable!("an outbound call") };
        let presenting = crate::rpid::Presenting {
            from_user: out.from_user.as_deref(),
            from_domain: out.from_domain.as_deref(),
            sendrpid: out.sendrpid,
            trust_id_outbound: out.trust_id_outbound,
        };
        let crate::rpid::Identity { from: identity, user, headers } =
            crate::rpid::identity(&caller, presenting, &self.local.ip().to_string());
        let mut invite = Request::new(Method::Invite, out.uri.clone());
        invite.headers.push(HeaderName::MaxForwards, "70");
        invite.headers.push(HeaderName::From, format!("{identity};tag={}", self.key.local_tag));
        invite.headers.push(HeaderName::To, format!("<{}>", out.uri));
        invite.headers.push(HeaderName::Contact, self.contact(&user));
        invite.headers.push(HeaderName::CallId, self.key.call_id.to_string());
        invite.headers.push(HeaderName::CSeq, format!("{FIRST_INVITE_SEQ} INVITE"));
        for (header, value) in headers {
            invite.headers.push(header, value);
        }
        invite.headers.push(HeaderName::ContentType, "application/sdp");
        // outbound.rs refuses an encryption=yes call over UDP/TCP before it gets here.
        match self.srtp.offer() {
            Ok(lines) => self.media.crypto = lines,
            Err(Refusal(why)) => {
                // Never a key in clear.
                tracing::warn!("{}: {why}", self.key.call_id);
                self.media.crypto.clear();
            }
        }
        invite.body = self.media.offer().into_bytes();
        let config = self.session_config(&user);
        InviteSession::uac(now, config, invite)
    }

    /// A command of the channel.
    pub(super) async fn on_command(&mut self, call: &mut InviteSession, command: Option<DriverCommand>) {
        let now = now();
        match command {
            Some(DriverCommand::Call(_)) => {}
            Some(DriverCommand::Answer) => {
                call.answer(now, self.answer_sdp());
                self.publish();
            }
            // The party we are bridged to holds (passthrough): a re-INVITE offering
            // `sendonly` puts our far end on hold, `sendrecv` takes it back.
            Some(DriverCommand::Indicate(control @ (Control::Hold | Control::Unhold))) => {
                use starling_media::sdp::Direction as Dir;
                if matches!(call.state(), State::Accepted | State::Confirmed) {
                    self.media.direction = if control == Control::Hold { Dir::SendOnly } else { Dir::SendRecv };
                    self.offer(call, now);
                }
            }
            Some(DriverCommand::Indicate(Control::Ringing)) => call.ring(now),
            Some(DriverCommand::Indicate(Control::Progress)) => call.progress(now, self.answer_sdp()),
            // As chan_sip's sip_indicate: 486/503 is the INVITE's final answer (its
            // transaction takes the ACK), the caller is gone and the channel is
            // soft-hung-up, so Busy()/Congestion() end.
            Some(DriverCommand::Indicate(control @ (Control::Busy | Control::Congestion)))
                if matches!(self.direction, Direction::Inbound { .. }) && call.state() == State::Proceeding =>
            {
                let (status, cause) =
                    if control == Control::Busy { (486, Cause::USER_BUSY) } else { (503, Cause::CONGESTION) };
                call.reject(now, status);
                let _ = self.driver.frames.send(Frame::Hangup(cause)).await;
                self.hung_up = true;
            }
            Some(DriverCommand::Indicate(_)) => {}
            // In direct media the far end hears the other far end itself: what the bridge
            // still passes on (sent to us before that one moved) would be a second stream,
            // and one a jitter buffer may take for late.
            Some(DriverCommand::Write(Frame::Voice { .. })) if self.direct_bridged() => {}
            Some(DriverCommand::Write(Frame::Voice { format, samples, data })) => {
                // Nothing goes to a party that put us on hold (we answered recvonly/inactive).
                let relayed_into =
                    self.natively_bridged() && self.published.lock().unwrap_or_else(|p| p.into_inner()).relayed_into;
                if !self.call_media.sending_digit() && !self.held && !relayed_into {
                    self.call_media.send_voice(format, samples, data);
                    if self.natively_bridged() {
                        // A native bridge is starting: until the other call relays, its media
                        // still comes as frames. The relayed packets will continue our stream
                        // from where these left it.
                        self.publish_stream();
                    }
                }
            }
            Some(DriverCommand::Write(_)) => {}
            Some(DriverCommand::SendDigit(digit)) => {
                if self.dtmfmode != DtmfMode::Info {
                    self.call_media.send_digit(now, digit, &self.key.call_id);
                } else {
                    call.info(now, "application/dtmf-relay", starling_sip::session::dtmf_info_body(digit));
                }
            }
            Some(DriverCommand::Bridged(peer)) => self.call_media.set_bridged(peer),
            // A hangup, or the channel gone without a word: end the call all the same. The
            // session ends it as its state wants (CANCEL, a final response, BYE — once the
            // ACK of our 2xx has come).
            Some(DriverCommand::Hangup(_)) | None => {
                let cause = match command {
                    Some(DriverCommand::Hangup(cause)) => cause,
                    _ => Cause::NORMAL_CLEARING,
                };
                self.hung_up = true;
                self.answered_elsewhere = cause == Cause::ANSWERED_ELSEWHERE;
                if matches!(self.direction, Direction::Inbound { .. }) && call.state() == State::Proceeding {
                    call.reject(now, hangup_cause_to_sip(cause));
                }
                // Anything else (or a cause with no final status): as the session's state wants.
                call.hangup(now);
            }
        }
    }

    /// What the monitor routes to the call.
    pub(super) fn on_message(&mut self, call: &mut InviteSession, message: ToPvt) {
        let now = now();
        match message {
            ToPvt::Request { tx, request } => {
                if let (Some(tx), Some(cseq)) = (tx, request.cseq()) {
                    self.server_txs.push((cseq.seq, cseq.method, tx));
                }
                call.handle_request(now, *request);
            }
            ToPvt::Response(response) => call.handle_response(now, *response),
            ToPvt::Timeout(cseq) => call.handle_transaction_timeout(now, &cseq),
            ToPvt::Direct(direct) => match direct {
                Some(direct) => {
                    tracing::debug!("{}: directing the media to the other call's far end", self.key.call_id);
                    self.direct = Some(direct);
                    self.redirect_back = None;
                    self.session().set_media_elsewhere(now, true);
                    self.offer(call, now);
                }
                None => {
                    if self.direct.take().is_some() {
                        self.session().set_media_elsewhere(now, false);
                        self.redirect_back = Some(now + REDIRECT_BACK_GRACE);
                    }
                }
            },
            ToPvt::DirectRefresh => {
                if self.direct.is_some() {
                    self.offer(call, now);
                }
            }
            ToPvt::Relay(relay) => {
                self.take_back_relay();
                self.continue_after_relay();
                if relay.is_some() {
                    self.publish_stream();
                } else {
                    self.published.lock().unwrap_or_else(|p| p.into_inner()).relayed_into = false;
                }
                self.relay = relay;
                self.call_media.drop_digit();
            }
        }
    }

    /// Sends what the session queued and tells the channel what it learnt. Whether the call
    /// is over.
    pub(super) async fn drain(&mut self, call: &mut InviteSession) -> bool {
        loop {
            self.send_queued(call);
            let Some(event) = call.poll_event() else { return false };
            if self.on_event(call, event).await {
                self.send_queued(call);
                return true;
            }
        }
    }

    /// Sends the session's messages through the monitor: requests to the dialog's target,
    /// responses on the transaction of their request.
    pub(super) fn send_queued(&mut self, call: &mut InviteSession) {
        while let Some(transmit) = call.poll_transmit() {
            let message = match transmit {
                Transmit::Request { mut request, .. } => {
                    // As chan_sip: a phone that rang while another answered (or picked the call
                    // up) is told so, and does not list a missed call.
                    if request.method == Method::Cancel && self.answered_elsewhere {
                        request.headers.push(
                            starling_sip::HeaderName::parse("Reason"),
                            "SIP;cause=200;text=\"Call completed elsewhere\"",
                        );
                    }
                    let remote = match request.method {
                        // Our INVITE and its CANCEL go where the call was placed.
                        Method::Invite | Method::Cancel if call.dialog().is_none() => self.remote,
                        _ => self.dialog_target(call),
                    };
                    ToMonitor::Request { request, remote }
                }
                Transmit::Response { response, retransmission: false } => {
                    let Some(cseq) = response.cseq() else { continue };
                    let Some(i) = self.server_txs.iter().position(|(s, m, _)| *s == cseq.seq && *m == cseq.method)
                    else {
                        continue;
                    };
                    let tx = self.server_txs[i].2;
                    if response.status >= 200 {
                        self.server_txs.swap_remove(i);
                    }
                    ToMonitor::Respond { tx, response }
                }
                Transmit::Response { response, retransmission: true } => {
                    ToMonitor::Stateless { message: SipMessage::Response(response), remote: self.remote }
                }
                Transmit::Ack { request, .. } => {
                    ToMonitor::Stateless { message: SipMessage::Request(request), remote: self.dialog_target(call) }
                }
            };
            let _ = self.shared.to_monitor.send(message);
        }
    }

    /// One event of the session. Whether the call is over.
    async fn on_event(&mut self, call: &mut InviteSession, event: Event) -> bool {
        let now = now();
        let control = |control| Frame::Control(control);
        let frames: Vec<Frame> = match event {
            Event::Ringing => {
                self.ringing = true;
                vec![control(Control::Ringing)]
            }
            Event::Progress => {
                self.ringing = false;
                vec![control(Control::Progress)]
            }
            Event::EarlyMedia { sdp } => {
                // Early media we cannot decrypt is not heard; the final answer decides.
                let _ = self.take_answer(&sdp);
                self.call_media.set_format(self.negotiated.as_ref());
                // A 180 with SDP is early media too (the 183's Progress is sent already).
                if std::mem::take(&mut self.ringing) {
                    vec![control(Control::Progress)]
                } else {
                    vec![]
                }
            }
            Event::Answered { sdp } => {
                if !self.take_answer(&sdp) {
                    // As chan_sip for a 200 whose SDP it cannot take: ACK, then BYE, and
                    // BEARERCAPABILITY_NOTAVAIL for the channel.
                    call.hangup(now);
                    if !self.hung_up {
                        let _ = self.driver.frames.send(Frame::Hangup(Cause::BEARERCAPABILITY_NOTAVAIL)).await;
                        self.hung_up = true;
                    }
                    return false;
                }
                self.call_media.set_format(self.negotiated.as_ref());
                self.publish();
                if let Some(dialog) = call.dialog() {
                    let mut table = self.shared.table.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(row) = table.get_mut(&*self.key.call_id) {
                        row.detail.their_tag = dialog.id.remote_tag.clone();
                    }
                }
                vec![control(Control::Answer)]
            }
            Event::Confirmed { .. } => vec![],
            Event::Offer { method: _, sdp } => {
                self.take_offer(call, now, &sdp).await;
                vec![]
            }
            Event::OfferAnswered { sdp } => {
                // A re-INVITE's answer we cannot take: the call goes on as it was (chan_sip:
                // "For re-invites, we try to recover").
                let _ = self.take_answer(&sdp);
                self.call_media.set_format(self.negotiated.as_ref());
                self.publish();
                vec![]
            }
            Event::OfferRejected { status } => {
                tracing::warn!("{}: our offer was refused with {status}", self.key.call_id);
                vec![]
            }
            Event::Dtmf { digit, duration_ms } => {
                tracing::debug!("DTMF '{digit}' received by INFO on {}", self.key.call_id);
                vec![Frame::DtmfBegin(digit), Frame::DtmfEnd { digit, duration_ms }]
            }
            Event::Info { content_type, .. } => {
                tracing::debug!("{}: INFO with {content_type} taken", self.key.call_id);
                vec![]
            }
            Event::Refer { target } => self.refer(call, now, target).into_iter().collect(),
            Event::Terminated { reason } => {
                self.terminated(reason).await;
                return true;
            }
        };
        if !self.hung_up {
            for frame in frames {
                let _ = self.driver.frames.send(frame).await;
            }
        }
        false
    }

    /// A REFER on the answered call (RFC 3515): a blind transfer of our party, or an attended
    /// one to the party of another of our calls (Replaces). The frame for the bridge, if taken.
    fn refer(&mut self, call: &mut InviteSession, now: Instant, target: ReferTarget) -> Option<Frame> {
        let frame = match target {
            ReferTarget::Blind(exten) => {
                tracing::info!("{} transfers its party to '{exten}'", self.peer);
                Frame::Transfer(exten)
            }
            ReferTarget::Replaces { call_id, to_tag, from_tag } => {
                match crate::call::show::replaced_channel(&self.shared.table, &call_id, &to_tag, &from_tag) {
                    Some(channel) if *call_id != *self.key.call_id => {
                        tracing::info!("{} transfers its party to the party of {channel}", self.peer);
                        Frame::AttendedTransfer(channel)
                    }
                    // As chan_sip: no such dialog is a 603.
                    _ => {
                        tracing::info!("{}: REFER replaces an unknown call '{call_id}'", self.key.call_id);
                        call.reject_refer(now, 603);
                        return None;
                    }
                }
            }
        };
        call.accept_refer(now);
        // RFC 3515: the outcome as a sipfrag; handing the party over is the success (the
        // bridge then ends this call with BYE).
        call.notify_refer(now, "SIP/2.0 200 OK");
        Some(frame)
    }

    /// The session is over: the channel hears why (unless it hung up itself).
    async fn terminated(&mut self, reason: EndReason) {
        let frames = match reason {
            EndReason::Local => vec![],
            EndReason::Bye | EndReason::Cancelled => vec![Frame::Hangup(Cause::NORMAL_CLEARING)],
            EndReason::Refused { status } => {
                self.reregister_if(status);
                let cause = sip_to_hangup_cause(status);
                tracing::info!("Call to '{}' refused: {status} ({})", self.peer, cause.name());
                let control = match cause {
                    Cause::USER_BUSY => vec![Frame::Control(Control::Busy)],
                    Cause::CONGESTION | Cause::SWITCH_CONGESTION => vec![Frame::Control(Control::Congestion)],
                    _ => vec![],
                };
                control.into_iter().chain([Frame::Hangup(cause)]).collect()
            }
            EndReason::Timeout => {
                // Nothing at all came back in 64·T1: Asterisk's auto-congestion (as a 408 would be).
                tracing::info!("No answer at all from '{}' to our INVITE: congestion", self.peer);
                self.reregister_if(408);
                vec![Frame::Control(Control::Congestion), Frame::Hangup(Cause::CONGESTION)]
            }
            EndReason::NoAck => {
                tracing::warn!("no ACK for the 200 OK on {}, hanging up", self.key.call_id);
                vec![Frame::Hangup(Cause::NO_USER_RESPONSE)]
            }
            EndReason::NoPrack => {
                tracing::warn!("no PRACK for our reliable provisional on {}, hanging up", self.key.call_id);
                vec![Frame::Hangup(Cause::FAILURE)]
            }
            EndReason::SessionExpired => {
                tracing::warn!("Session timer expired on {}: no refresh came, hanging up", self.key.call_id);
                vec![Frame::Hangup(Cause::NORMAL_CLEARING)]
            }
            EndReason::DialogGone { status } => vec![Frame::Hangup(sip_to_hangup_cause(status))],
        };
        if !self.hung_up {
            for frame in frames {
                let _ = self.driver.frames.send(frame).await;
            }
            self.hung_up = true;
        }
    }

    /// `reregister_on`: a trunk refusing our INVITE this way may have lost our registration.
    fn reregister_if(&self, status: u16) {
        if let Direction::Outbound(out) = &self.direction {
            if out.reregister_on.contains(&status) {
                let _ = self.shared.to_monitor.send(ToMonitor::Reregister { peer: self.peer.clone(), status });
            }
        }
    }

    /// The far end's offer (a re-INVITE or UPDATE): another address, hold, a codec change
    /// among ours, answered with ours; none (a refresh, or a delayed offer) gets our current
    /// session again; a codec we cannot take is 488. A change of hold is passed to the
    /// channel as Hold/Unhold.
    async fn take_offer(&mut self, call: &mut InviteSession, now: Instant, sdp: &[u8]) {
        if !sdp.is_empty() {
            let offer =
                std::str::from_utf8(sdp).ok().and_then(|text| starling_media::sdp::RemoteMedia::parse(text).ok());
            let negotiated =
                offer.as_ref().and_then(|offer| starling_media::sdp::negotiate(offer, &self.media.codecs, true).ok());
            let (Some(offer), Some(negotiated)) = (offer, negotiated) else {
                return call.reject_offer(now, 488);
            };
            match self.srtp.answer(&offer) {
                Ok(lines) => self.media.crypto = lines,
                Err(Refusal(why)) => {
                    tracing::warn!("{}: {why}", self.key.call_id);
                    return call.reject_offer(now, 488);
                }
            }
            self.publish_srtp();
            let hold = offer.is_hold();
            if hold != self.held {
                tracing::info!("{} {} the call", self.peer, if hold { "put on hold" } else { "took back" });
                let control = if hold { Control::Hold } else { Control::Unhold };
                if !self.hung_up {
                    let _ = self.driver.frames.send(Frame::Control(control)).await;
                }
            }
            self.held = hold;
            self.session().set_on_hold(hold);
            if let Some(row) = self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&*self.key.call_id)
            {
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
            self.call_media.set_format(self.negotiated.as_ref());
            if let Some(direct) = self.direct.as_ref().filter(|_| moved) {
                // The other far end sends to ours directly: it must hear where ours went.
                let _ = direct.to_pvt.send(ToPvt::DirectRefresh);
            }
        }
        self.media.session_version += 1;
        call.accept_offer(now, self.answer_sdp());
    }

    /// Takes the SDP of the far end's answer (to our INVITE, early or final, or to our offer).
    /// `false`: its SRTP is not what our offer required (logged as chan_sip's WARNING).
    fn take_answer(&mut self, sdp: &[u8]) -> bool {
        if sdp.is_empty() {
            return true;
        }
        let answer = std::str::from_utf8(sdp).ok().map(starling_media::sdp::RemoteMedia::parse);
        if let Some(Ok(answer)) = &answer {
            match self.srtp.take_answer(answer) {
                Ok(()) => {
                    // Our next offers carry the line agreed only (the suite and key in use).
                    self.media.crypto.retain(|c| Some(c.key.suite) == self.srtp.suite());
                    self.publish_srtp();
                }
                Err(Refusal(why)) => {
                    tracing::warn!("{}: {why}", self.key.call_id);
                    return false;
                }
            }
        }
        match answer {
            Some(Ok(answer)) => match starling_media::sdp::negotiate(&answer, &self.media.codecs, false) {
                Ok(negotiated) => {
                    if negotiated.remote.port() != 0 && !negotiated.remote.ip().is_unspecified() {
                        self.session().set_remote_media(&negotiated);
                    }
                    if let Some(row) =
                        self.shared.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&*self.key.call_id)
                    {
                        row.format = crate::call::media::format_name(&negotiated.codec.name).to_owned();
                    }
                    self.negotiated = Some(negotiated);
                }
                Err(e) => tracing::warn!("{}: the answer has no codec we offered: {e}", self.key.call_id),
            },
            _ => tracing::warn!("{}: unreadable SDP in the answer", self.key.call_id),
        }
        true
    }

    /// Our answer to the far end's offer as agreed (empty before there is one).
    fn answer_sdp(&self) -> Vec<u8> {
        match &self.negotiated {
            Some(negotiated) => self.offered_media().answer(negotiated).into_bytes(),
            None => Vec::new(),
        }
    }

    /// A new offer in the dialog (a re-INVITE, or an UPDATE with `directmedia=update`): our
    /// media as it is now — held or not, ours or direct ([`Pvt::offered_media`]). The session
    /// sends it once the offer before is answered.
    pub(super) fn offer(&mut self, call: &mut InviteSession, now: Instant) {
        if !matches!(call.state(), State::Accepted | State::Confirmed) {
            // A bridge can start before the channel's Answer reached the session (they come
            // by two queues): the offer leaves once the call is answered.
            self.offer_wanted = true;
            return;
        }
        self.offer_wanted = false;
        self.media.session_version += 1;
        // The offer keeps the codec in use first, so the far end need not change it.
        if let Some(codec) = self.negotiated.as_ref().map(|n| n.codec.clone()) {
            if let Some(i) = self.media.codecs.iter().position(|c| c.same_as(&codec)) {
                let current = self.media.codecs.remove(i);
                self.media.codecs.insert(0, current);
            }
        }
        match self.srtp.offer() {
            Ok(lines) => self.media.crypto = lines,
            Err(Refusal(why)) => {
                // Never a key in clear.
                tracing::warn!("{}: {why}", self.key.call_id);
                self.media.crypto.clear();
            }
        }
        let method = if self.directmedia.update { Method::Update } else { Method::Invite };
        call.offer(now, method, self.offered_media().offer().into_bytes());
    }

    /// Our media as we describe it to the far end: our own address; or, in direct media, the
    /// other call's far end, with the codec and telephone-event payload types it receives.
    fn offered_media(&self) -> LocalMedia {
        let mut media = self.media.clone();
        if let Some(direct) = &self.direct {
            let other = direct.media.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(remote), Some(codec)) = (other.remote.get(), other.codec.clone()) {
                media.address = remote.ip();
                media.port = remote.port();
                media.codecs = vec![codec];
                media.telephone_event = other.telephone_event.clone();
            }
        }
        media
    }

    /// chan_sip's check_rtp_timeout: the far end sent no RTP for `rtptimeout` seconds (or
    /// `rtpholdtimeout` on hold) of an answered call: its NOTICE, a BYE, and cause 44 ("as
    /// used by Cisco for RTP timeouts").
    pub(super) async fn rtp_timeout(&mut self, call: &mut InviteSession) {
        if !matches!(call.state(), State::Accepted | State::Confirmed) {
            return;
        }
        let silent = self.session().silent_for(now()).as_secs();
        let (channel, uniqueid) = self
            .shared
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&*self.key.call_id)
            .map(|row| (row.detail.channel.clone(), row.detail.uniqueid.clone()))
            .unwrap_or_default();
        tracing::info!(target: "chan_sip.c", "Disconnecting call '{channel}' for lack of RTP activity in {silent} seconds");
        self.shared.core.events().publish(
            starling_core::events::Event::new("SessionTimeout", "call")
                .with("Source", "RTPTimeout")
                .with("Channel", channel)
                .with("Uniqueid", uniqueid),
        );
        call.hangup(now());
        if !self.hung_up {
            let _ = self.driver.frames.send(Frame::Hangup(Cause::REQUESTED_CHAN_UNAVAIL)).await;
            self.hung_up = true;
        }
    }

    /// Where requests inside the dialog go. A caller that reached us directly is answered and
    /// asked at the address its INVITE came from (NAT-safe, as chan_sip with nat=force_rport);
    /// one that came through a proxy (more than one Via) at its route set, else its Contact —
    /// a proxy that did not Record-Route does not expect to see the BYE.
    fn dialog_target(&self, call: &InviteSession) -> SocketAddr {
        let Some(dialog) = call.dialog().filter(|_| matches!(self.direction, Direction::Inbound { .. })) else {
            return self.remote;
        };
        let uri = dialog
            .route_set
            .first()
            .and_then(|r| starling_sip::NameAddr::parse(r).ok())
            .map(|n| n.uri)
            .or_else(|| self.proxied.then(|| dialog.remote_target.clone()));
        if let Some(uri) = uri {
            // RFC 3263 for a name: SRV first when no port is given (srvlookup).
            let tcp = uri.transport().as_deref() == Some("tcp");
            if let Some(target) = self.shared.resolve_first(&uri.host.to_string(), uri.port, tcp) {
                return target;
            }
        }
        self.remote
    }

    /// Our Contact as `user` (with `transport=tcp` on a call over TCP, `tls` over TLS).
    pub(super) fn contact(&self, user: &str) -> String {
        let transport = self.transport.uri_param().map(|t| format!(";transport={t}")).unwrap_or_default();
        format!("<sip:{user}@{}{transport}>", self.local)
    }
}
