//! One inbound call: Asterisk's `sip_pvt`. It runs on its own task and owns the driver end of
//! the call's `core::Channel`, the dialog and the RTP session. It never touches the SIP socket:
//! the monitor owns the transaction layer, so the pvt sends it [`ToMonitor`] messages and the
//! monitor forwards the dialog's requests as [`ToPvt`].

use std::net::SocketAddr;
use std::time::Duration;

use starling_core::channel::{ChannelDriver, DriverCommand};
use starling_core::frame::{Cause, Control, Frame};
use starling_core::tokio::net::UdpSocket;
use starling_core::tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use starling_core::tokio::time::{sleep_until, Instant as TokioInstant};
use starling_core::{tokio, tracing};
use starling_media::dtmf::{DtmfEvent, EventSender};
use starling_media::sdp::{LocalMedia, Negotiated};
use starling_media::session::{RtpSession, SessionEvent};
use starling_sip::dialog::{Dialog, DialogId};
use starling_sip::message::{Response, SipMessage};
use starling_sip::transaction::{via_for, Endpoint, Transport, TxId};
use starling_sip::{HeaderName, Method, Request};

/// A call as `sip show channels` lists it.
#[derive(Clone, Debug)]
pub struct DialogRow {
    pub address: std::net::IpAddr,
    /// The caller's user (From), or "(None)".
    pub user: String,
    pub format: String,
    pub hold: bool,
    /// "Rx: INVITE", "Rx: ACK", "Tx: BYE"...
    pub last_message: String,
    /// The peer's name, or "<guest>".
    pub peer: String,
}

/// Every call, by Call-ID, in order.
pub type DialogTable = std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<String, DialogRow>>>;

/// Notes the last message of a call in the table.
pub fn note_message(table: &DialogTable, call_id: &str, message: &str) {
    if let Some(row) = table.write().unwrap_or_else(|p| p.into_inner()).get_mut(call_id) {
        row.last_message = message.to_owned();
    }
}

/// `sip show channels`, in chan_sip's columns.
pub fn show_channels(table: &DialogTable) -> String {
    use std::fmt::Write;
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let row = |out: &mut String, cols: [&str; 7]| {
        let _ = writeln!(
            out,
            "{:<15.15}  {:<15.15}  {:<15.15}  {:<15.15}  {:<7.7}  {:<15.15} {:<10.10}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
        );
    };
    row(&mut out, ["Peer", "User/ANR", "Call ID", "Format", "Hold", "Last Message", "Peer"]);
    for (call_id, d) in table.iter() {
        let format = format!("({})", d.format);
        let address = d.address.to_string();
        let hold = if d.hold { "Yes" } else { "No" };
        row(&mut out, [&address, &d.user, call_id, &format, hold, &d.last_message, &d.peer]);
    }
    let n = table.len();
    let _ = writeln!(out, "{n} active SIP channel{}", if n == 1 { "" } else { "s" });
    out
}

/// What a call asks of the monitor (which owns the transaction layer and the socket).
#[derive(Debug)]
pub enum ToMonitor {
    /// Answer the INVITE (or another server transaction) with `response`.
    Respond { tx: TxId, response: Response },
    /// Start a client transaction (a BYE) to `remote`.
    Request { request: Request, remote: SocketAddr },
    /// Send outside any transaction (a retransmitted 2xx).
    Stateless { message: SipMessage, remote: SocketAddr },
    /// The call is over: forget its dialog, release its call-limit slot.
    Gone { id: DialogId, peer: String },
}

/// What the monitor hands a call: the requests of its dialog.
#[derive(Debug)]
pub enum ToPvt {
    Ack,
    Bye {
        tx: TxId,
        request: Box<Request>,
    },
    Cancelled,
    /// An INFO inside the dialog (a key press as `application/dtmf-relay`, or anything else).
    Info {
        tx: TxId,
        request: Box<Request>,
    },
    /// An INVITE inside the dialog: a new offer (hold, another address) or a session refresh.
    Reinvite {
        tx: TxId,
        request: Box<Request>,
    },
}

/// Asterisk's `hangup_cause2sip`: the final response for a call refused with `cause`.
pub fn hangup_cause_to_sip(cause: Cause) -> u16 {
    match cause.0 {
        1 | 3 => 404,
        17 => 486,
        18 => 408,
        19 => 480,
        21 => 403,
        22 => 410,
        27 => 502,
        28 => 484,
        34 | 41 | 42 | 44 => 503,
        38 => 500,
        58 | 88 => 488,
        127 => 500,
        _ => 603,
    }
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

/// Everything a call needs, made by the monitor when it accepts an INVITE.
pub struct Pvt {
    pub id: DialogId,
    pub peer: String,
    pub invite: Request,
    pub invite_tx: TxId,
    pub dialog: Dialog,
    /// Where requests and retransmitted responses go (the INVITE's source: NAT-safe).
    pub remote: SocketAddr,
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    pub useragent: String,
    pub to_monitor: UnboundedSender<ToMonitor>,
    pub from_monitor: UnboundedReceiver<ToPvt>,
    pub driver: ChannelDriver,
    pub rtp: UdpSocket,
    pub session: RtpSession,
    pub media: LocalMedia,
    pub negotiated: Negotiated,
    /// Where `sip show channels` reads this call (the Hold column).
    pub table: DialogTable,
    /// The far end put the call on hold (its last offer was sendonly or inactive).
    pub held: bool,
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

/// A key press going out as RFC 4733 packets.
struct DigitOut {
    sender: EventSender,
    /// The RTP timestamp every packet of the press carries (when it began).
    start: u32,
    next: TokioInstant,
    pt: u8,
    duration: u32,
}

impl DigitOut {
    /// Sends the next packet; false once the press is fully sent.
    fn send_next(&mut self, session: &mut RtpSession) -> bool {
        match self.sender.next_packet() {
            Some((payload, marker)) => {
                session.send_event(self.pt, marker, self.start, &payload);
                self.next += Duration::from_millis(20);
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Early,
    /// 200 sent; retransmitted (T1 doubling to T2) until the ACK or 64·T1.
    Answered {
        acked: bool,
    },
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

impl Pvt {
    fn response(&self, status: u16) -> Response {
        self.response_to(&self.invite, status)
    }

    /// A response to a request of this dialog (the INVITE, or a re-INVITE).
    fn response_to(&self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        response.set_to_tag(&self.id.local_tag);
        response.headers.push(HeaderName::Server, self.useragent.clone());
        if (101..300).contains(&status) {
            let user = self.invite.uri.user.as_deref().unwrap_or("s");
            response.headers.push(HeaderName::Contact, format!("<sip:{user}@{}>", self.local));
        }
        response
    }

    fn with_sdp(&self, mut response: Response) -> Response {
        response.headers.push(HeaderName::ContentType, "application/sdp");
        response.body = self.media.answer(&self.negotiated).into_bytes();
        response
    }

    /// The negotiated codec's frame format, payload type, samples per ms, and the
    /// telephone-event payload type.
    fn codec_params(&self) -> (&'static str, u8, u32, Option<u8>) {
        let codec = &self.negotiated.codec;
        let events = self.negotiated.telephone_event.as_ref().map(|c| c.payload_type);
        (format_name(&codec.name), codec.payload_type, codec.clock_rate / 1000, events)
    }

    /// A re-INVITE: a new offer (another address, hold, a codec change among ours) is answered
    /// 200 with our answer; one without SDP (a refresh, or a delayed offer) gets our current
    /// session again. The 200 for a codec we cannot take is 488; an out-of-order CSeq 500.
    fn reinvite(&mut self, request: &Request) -> Result<Response, u16> {
        if let Err(e) = self.dialog.handle_request(request) {
            tracing::info!("re-INVITE on {} refused: {e}", self.id.call_id);
            return Err(500);
        }
        if !request.body.is_empty() {
            let offer = std::str::from_utf8(&request.body)
                .ok()
                .and_then(|text| starling_media::sdp::RemoteMedia::parse(text).ok())
                .ok_or(488u16)?;
            let negotiated = starling_media::sdp::negotiate(&offer, &self.media.codecs, true).map_err(|_| 488u16)?;
            let hold = offer.is_hold();
            self.held = hold;
            if hold {
                tracing::info!("{} put the call on hold", self.peer);
            }
            if let Some(row) = self.table.write().unwrap_or_else(|p| p.into_inner()).get_mut(&self.id.call_id) {
                row.hold = hold;
            }
            if negotiated.remote.port() != 0 && !negotiated.remote.ip().is_unspecified() {
                self.session.set_remote(negotiated.remote, offer.rtcp_mux);
            }
            self.negotiated = negotiated;
        }
        self.media.session_version += 1;
        let ok = self.response_to(request, 200);
        Ok(self.with_sdp(ok))
    }

    fn send(&self, message: ToMonitor) {
        let _ = self.to_monitor.send(message);
    }

    fn respond(&self, status: u16) {
        let response = self.response(status);
        self.send(ToMonitor::Respond { tx: self.invite_tx, response });
    }

    fn bye(&mut self) {
        let branch = Endpoint::new_branch(&format!("{:08x}", self.session.ssrc() ^ self.dialog.local_seq));
        let via =
            via_for(Transport::Udp, starling_sip::uri::Host::from_ip(self.local.ip()), self.local.port(), &branch);
        let mut request = self.dialog.request(Method::Bye, &via);
        request.headers.push(HeaderName::UserAgent, self.useragent.clone());
        self.send(ToMonitor::Request { request, remote: self.remote });
    }

    /// Runs the call until either side hangs up.
    pub async fn run(self) {
        // A root span per call, entered only while the call's task runs (Instrument): an
        // entered guard held across awaits would make every later call its child, and closing
        // a chain of thousands of spans overflows the stack.
        let span = tracing::info_span!(parent: None, "call", call_id = %self.id.call_id, peer = %self.peer);
        tracing::Instrument::instrument(self.run_call(), span).await
    }

    async fn run_call(mut self) {
        let mut state = State::Early;
        let mut retransmit: Option<(TokioInstant, Duration, Response)> = None;
        // An RFC 4733 key press being sent: one packet every 20 ms; voice waits meanwhile.
        let mut dtmf_out: Option<DigitOut> = None;
        let give_up_2xx = 64 * T1;
        let mut answered_at = TokioInstant::now();
        let mut buffer = vec![0u8; 2048];
        let (mut format, mut payload_type, mut samples_per_ms, mut event_type) = self.codec_params();
        let mut dtmf = starling_media::dtmf::EventReceiver::default();
        let mut dtmf_events = Vec::new();
        'call: loop {
            let rtp_deadline = self.session.poll_timeout().map(TokioInstant::from_std);
            let deadline = [rtp_deadline, retransmit.as_ref().map(|r| r.0), dtmf_out.as_ref().map(|d| d.next)]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.driver.commands.recv() => match command {
                    Some(DriverCommand::Answer) => {
                        if state == State::Early {
                            let ok = self.with_sdp(self.response(200));
                            self.send(ToMonitor::Respond { tx: self.invite_tx, response: ok.clone() });
                            state = State::Answered { acked: false };
                            answered_at = TokioInstant::now();
                            retransmit = Some((answered_at + T1, T1, ok));
                        }
                    }
                    Some(DriverCommand::Indicate(control)) => {
                        if state == State::Early {
                            match control {
                                Control::Ringing => self.respond(180),
                                Control::Progress => {
                                    let progress = self.with_sdp(self.response(183));
                                    self.send(ToMonitor::Respond { tx: self.invite_tx, response: progress });
                                }
                                Control::Busy => self.respond(486),
                                Control::Congestion => self.respond(503),
                                _ => {}
                            }
                        }
                    }
                    Some(DriverCommand::Write(Frame::Voice { format: f, samples, data })) if f == format => {
                        // Nothing goes to a party that put us on hold (we answered recvonly/inactive).
                        if dtmf_out.is_none() && !self.held {
                            self.session.send(payload_type, false, samples, &data);
                        }
                    }
                    Some(DriverCommand::SendDigit(digit)) => {
                        // 100 ms presses in 20 ms packets, in the RTP clock's units.
                        let packet = 20 * samples_per_ms;
                        match (event_type, EventSender::new(digit, 5 * packet, packet)) {
                            (Some(pt), Some(sender)) if dtmf_out.is_none() => {
                                let mut out = DigitOut { sender, start: self.session.next_timestamp(), next: TokioInstant::now(), pt, duration: 5 * packet };
                                out.send_next(&mut self.session);
                                dtmf_out = Some(out);
                            }
                            _ => tracing::debug!("DTMF '{digit}' not sent on {}: no telephone-event, or one already going", self.id.call_id),
                        }
                    }
                    Some(DriverCommand::Write(_)) => {}
                    // A hangup, or the channel gone without a word: end the call all the same.
                    Some(DriverCommand::Hangup(_)) | None => {
                        let cause = match command {
                            Some(DriverCommand::Hangup(cause)) => cause,
                            _ => Cause::NORMAL_CLEARING,
                        };
                        match state {
                            State::Early => self.respond(hangup_cause_to_sip(cause)),
                            State::Answered { .. } => self.bye(),
                        }
                        break;
                    }
                },
                message = self.from_monitor.recv() => match message {
                    Some(ToPvt::Ack) => {
                        if let State::Answered { .. } = state {
                            state = State::Answered { acked: true };
                            retransmit = None;
                        }
                    }
                    Some(ToPvt::Bye { tx, request }) => {
                        let mut ok = Response::to_request(&request, 200);
                        ok.headers.push(HeaderName::Server, self.useragent.clone());
                        self.send(ToMonitor::Respond { tx, response: ok });
                        let _ = self.driver.frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await;
                        break;
                    }
                    Some(ToPvt::Reinvite { tx, request }) => {
                        match self.reinvite(&request) {
                            Ok(ok) => {
                                (format, payload_type, samples_per_ms, event_type) = self.codec_params();
                                self.send(ToMonitor::Respond { tx, response: ok.clone() });
                                state = State::Answered { acked: false };
                                answered_at = TokioInstant::now();
                                retransmit = Some((answered_at + T1, T1, ok));
                            }
                            Err(status) => {
                                let refusal = self.response_to(&request, status);
                                self.send(ToMonitor::Respond { tx, response: refusal });
                            }
                        }
                    }
                    Some(ToPvt::Info { tx, request }) => {
                        let digit = info_digit(&request);
                        let ok = self.response_to(&request, 200);
                        self.send(ToMonitor::Respond { tx, response: ok });
                        if let Some((digit, duration_ms)) = digit {
                            tracing::debug!("DTMF '{digit}' received by INFO on {}", self.id.call_id);
                            let _ = self.driver.frames.send(Frame::DtmfBegin(digit)).await;
                            let _ = self.driver.frames.send(Frame::DtmfEnd { digit, duration_ms }).await;
                        }
                    }
                    Some(ToPvt::Cancelled) => {
                        if state == State::Early {
                            self.respond(487);
                            let _ = self.driver.frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await;
                            break;
                        }
                    }
                    None => break,
                },
                received = self.rtp.recv_from(&mut buffer) => {
                    if let Ok((len, from)) = received {
                        let now = tokio::time::Instant::now().into_std();
                        if let Ok(packet) = self.session.handle_rtp(now, from, &buffer[..len]) {
                            if Some(packet.payload_type) == event_type {
                                dtmf.handle(packet.timestamp, &buffer[packet.payload.0..packet.payload.1], &mut dtmf_events);
                                for event in dtmf_events.drain(..) {
                                    let frame = match event {
                                        DtmfEvent::Begin(digit) => Frame::DtmfBegin(digit),
                                        DtmfEvent::End { digit, duration } => {
                                            tracing::debug!("DTMF '{digit}' received on {}", self.id.call_id);
                                            Frame::DtmfEnd { digit, duration_ms: duration / samples_per_ms.max(1) }
                                        }
                                    };
                                    // Key presses are never dropped (unlike voice).
                                    let _ = self.driver.frames.send(frame).await;
                                }
                            } else if packet.payload_type == payload_type {
                                let data = buffer[packet.payload.0..packet.payload.1].to_vec();
                                let samples = match format {
                                    "ulaw" | "alaw" => data.len() as u32,
                                    _ => 20 * samples_per_ms,
                                };
                                // Media is dropped rather than queued when the dialplan lags.
                                let _ = self.driver.frames.try_send(Frame::Voice { format, samples, data });
                            }
                        }
                    }
                },
                _ = sleep => {
                    let now = TokioInstant::now();
                    if let Some((at, interval, ok)) = retransmit.take() {
                        if now >= at {
                            if now - answered_at >= give_up_2xx {
                                // No ACK for the 200 (RFC 3261 §13.3.1.4): end the call.
                                tracing::warn!("no ACK for the 200 OK on {}, hanging up", self.id.call_id);
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
                    if let Some(out) = dtmf_out.as_mut() {
                        if now >= out.next && !out.send_next(&mut self.session) {
                            self.session.skip(out.duration);
                            dtmf_out = None;
                        }
                    }
                    self.session.handle_timeout(now.into_std());
                }
            }
            self.flush_rtp().await;
            while let Some(event) = self.session.poll_event() {
                if event == SessionEvent::Timeout {
                    tracing::info!("no RTP for rtptimeout on {}, hanging up", self.id.call_id);
                    self.bye();
                    let _ = self.driver.frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await;
                    break 'call;
                }
            }
        }
        self.flush_rtp().await;
        self.send(ToMonitor::Gone { id: self.id.clone(), peer: self.peer.clone() });
    }

    async fn flush_rtp(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            let _ = self.rtp.send_to(&transmit.data, transmit.remote).await;
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

    #[test]
    fn keys_in_info_bodies() {
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")), Some(('5', 160)));
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal= 11\r\n")), Some(('#', 100)));
        assert_eq!(info_digit(&info("application/dtmf", "*")), Some(('*', 100)));
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal=Z\r\n")), None);
        assert_eq!(info_digit(&info("text/plain", "5")), None);
    }

    #[test]
    fn hangup_causes_map_to_asterisks_responses() {
        assert_eq!(hangup_cause_to_sip(Cause::USER_BUSY), 486);
        assert_eq!(hangup_cause_to_sip(Cause::UNALLOCATED), 404);
        assert_eq!(hangup_cause_to_sip(Cause::CONGESTION), 503);
        assert_eq!(hangup_cause_to_sip(Cause::NORMAL_CLEARING), 603);
    }
}
