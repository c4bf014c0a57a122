//! Both SIP roles of a B2BUA call through Starling, without I/O: datagrams and the time come
//! in ([`Engine::handle`], [`Engine::handle_timeout`], [`Engine::start_call`]); datagrams to
//! send and media commands go out ([`Engine::out`]), and [`Engine::poll_timeout`] says when to
//! call again.
//!
//! - **A (uac)**: call `k` is an INVITE to `sip:<service>@<target>` from `sip:<k>@<us>` (so
//!   Starling's INVITE to B carries `k` as the caller's number, which ties the two legs), with
//!   a PCMU offer. 1xx are ignored (they stop Timer A); a 200 is ACKed to its Contact, and
//!   ACKed again when it comes again; ≥ 300 is ACKed with the INVITE's Via and fails the call
//!   with its status. INVITE (Timer A, 500 ms doubling, 32 s) and BYE (Timer E, 500 ms doubling
//!   up to 4 s, 32 s) are retransmitted until answered. BYE goes `hold` after the ACK.
//! - **B (uas)**: answers each INVITE (100, then 200 with our SDP and a To tag, `answer_delay`
//!   after it), resends its last response to a retransmitted INVITE and the 200 on Timer G until
//!   the ACK, answers a re-INVITE with the same SDP, BYE with 200, CANCEL with 200 and (before
//!   the 200) 487.
//! - **Media**: both streams of a call run from ACK + 200 ms to BYE − 300 ms (the ACK and BYE
//!   of the A leg). A B leg that cannot be tied to an A call (the caller's number is not one
//!   of ours) sends from its ACK + 200 ms until its BYE.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use starling_sip::{parse_datagram, Datagram, HeaderName, MessageHeaders, Method, Request, Response, SipMessage};

use starling_media::sdes::Crypto;
use starling_media::srtp::MasterKey;

use crate::media::Command;
use crate::sdp;

/// The salts of our SRTP keys on each side ([`sdp::our_key`]).
const A_SALT: u64 = 0xA;
const B_SALT: u64 = 0xB;

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// 64 × T1: Timers B, F, H.
pub const GIVE_UP: Duration = Duration::from_secs(32);
/// Media starts this long after the A leg's ACK...
pub const MEDIA_AFTER_ACK: Duration = Duration::from_millis(200);
/// ... and stops this long before its BYE.
pub const MEDIA_BEFORE_BYE: Duration = Duration::from_millis(300);
/// An unbounded stream (a B leg not tied to an A call) stops at its BYE, or after this.
const FOREVER: Duration = Duration::from_secs(86_400);

/// Which of our two SIP sockets (and media sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    A,
    B,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub service: String,
    /// Starling's SIP address.
    pub target: SocketAddrV4,
    /// Our uac SIP socket.
    pub uac: SocketAddrV4,
    /// Our uas SIP socket.
    pub uas: SocketAddrV4,
    /// Our media sockets.
    pub a_media: SocketAddrV4,
    pub b_media: SocketAddrV4,
    /// SIP over TLS (our Vias say `TLS`, our Contacts `;transport=tls`; the connections are
    /// the caller's business).
    pub tls: bool,
    /// SDES-SRTP on both legs (`RTP/SAVP`, AES_CM_128_HMAC_SHA1_80): needs `tls`.
    pub srtp: bool,
    /// From the A leg's ACK to its BYE.
    pub hold: Duration,
    pub trying: bool,
    pub answer_delay: Duration,
    /// Makes Call-IDs and tags unique to this run.
    pub run: String,
}

/// Something to do.
#[derive(Debug)]
pub enum Out {
    Sip { leg: Leg, to: SocketAddr, data: Vec<u8> },
    Media { leg: Leg, command: Command },
}

/// The run's counts.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub started: u64,
    pub ok: u64,
    pub failed: u64,
    pub fail_reasons: BTreeMap<String, u64>,
    /// A calls started and not over.
    pub in_progress: u32,
    /// A calls answered and not over.
    pub up: u32,
    pub peak: u32,
    /// B legs Starling placed, and those not over yet.
    pub b_legs: u64,
    pub b_open: u32,
    /// B legs whose caller number was not one of our calls.
    pub unlinked: u64,
    /// Requests and responses we sent again (Timers A, E, G) and answers to retransmissions.
    pub retrans: u64,
    /// Datagrams that did not parse, or that belonged to no call of ours.
    pub stray: u64,
    /// B legs whose 200 was never ACKed.
    pub no_ack: u64,
    /// B legs refused (488) for want of an audio address in the INVITE.
    pub b_refused: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Timer A / B of call k's INVITE.
    Invite(u32),
    /// Hang call k up.
    Hangup(u32),
    /// Timer E / F of call k's BYE.
    Bye(u32),
    /// Answer B leg b.
    Answer(u32),
    /// Timer G / H of B leg b's 200.
    Ok(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UacState {
    Calling,
    Proceeding,
    Confirmed,
    Terminating,
    Done,
}

struct UacCall {
    state: UacState,
    invite: Vec<u8>,
    invite_at: Instant,
    rto: Duration,
    /// The ACK for the final response (2xx or not), sent again when it comes again.
    ack: Option<(SocketAddr, Vec<u8>)>,
    /// Where in-dialog requests go, and their Request-URI and To.
    dialog: Option<(SocketAddr, String, String)>,
    bye: Vec<u8>,
    bye_at: Instant,
    /// Media window (after the ACK).
    window: Option<(Instant, Instant)>,
    /// Starling's audio address for this leg.
    media: Option<SocketAddrV4>,
    /// The B leg tied to this call.
    b_leg: Option<u32>,
    acked_at: Option<Instant>,
    /// Why the call fails even if it ends well (a 200 without audio).
    fault: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UasState {
    Trying,
    Answered,
    Confirmed,
    Cancelled,
    Ended,
}

struct UasCall {
    index: u32,
    link: Option<u32>,
    invite: Request,
    cseq: u32,
    tag: String,
    src: SocketAddr,
    state: UasState,
    /// Our last response to the INVITE.
    last: Vec<u8>,
    answered_at: Instant,
    rto: Duration,
    media: Option<SocketAddrV4>,
    /// The last re-INVITE's CSeq and our answer, for its retransmissions.
    reinvite: Option<(u32, Vec<u8>)>,
    /// With SRTP: the offer's line we take (its tag, Starling's key).
    crypto: Option<Crypto>,
}

pub struct Engine {
    cfg: Config,
    uac: Vec<UacCall>,
    uas: Vec<UasCall>,
    uas_by_call_id: HashMap<String, u32>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// B legs not tied to an A call get indices from here up.
    unlinked_base: u32,
    pub counts: Counts,
    pub out: Vec<Out>,
}

impl Engine {
    /// `max_calls` bounds the A indices (B legs not tied to one get indices above it).
    pub fn new(cfg: Config, max_calls: u64) -> Engine {
        Engine {
            cfg,
            uac: Vec::new(),
            uas: Vec::new(),
            uas_by_call_id: HashMap::new(),
            timers: BinaryHeap::new(),
            unlinked_base: max_calls.min(u64::from(u32::MAX / 2)) as u32,
            counts: Counts::default(),
            out: Vec::new(),
        }
    }

    /// The next deadline. May change after any input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    fn send(&mut self, leg: Leg, to: SocketAddr, data: Vec<u8>) {
        self.out.push(Out::Sip { leg, to, data });
    }

    fn media(&mut self, leg: Leg, command: Command) {
        self.out.push(Out::Media { leg, command });
    }

    fn call_id(&self, k: u32) -> String {
        format!("{k}-{}@callgen", self.cfg.run)
    }

    fn index_of_call_id(&self, call_id: &str) -> Option<u32> {
        let (k, rest) = call_id.split_once('-')?;
        let k: u32 = k.parse().ok()?;
        (rest.strip_suffix("@callgen")? == self.cfg.run && (k as usize) < self.uac.len()).then_some(k)
    }

    fn local_tag(&self, k: u32) -> String {
        format!("a{k}{}", self.cfg.run)
    }

    fn our_from(&self, k: u32) -> String {
        format!("<sip:{k}@{}>;tag={}", self.cfg.uac.ip(), self.local_tag(k))
    }

    fn transport(&self) -> &'static str {
        if self.cfg.tls {
            "TLS"
        } else {
            "UDP"
        }
    }

    fn contact_params(&self) -> &'static str {
        if self.cfg.tls {
            ";transport=tls"
        } else {
            ""
        }
    }

    /// Our key and theirs for a stream whose far end's SDP is `body` (and whose key of ours
    /// is `ours`): `Ok(None)` without SRTP; `Err` when SRTP is wanted and the SDP has no line
    /// we take.
    fn keys(&self, ours: MasterKey, body: &[u8]) -> Result<Option<Box<(MasterKey, MasterKey)>>, ()> {
        if !self.cfg.srtp {
            return Ok(None);
        }
        let theirs = sdp::their_crypto(body).ok_or(())?;
        Ok(Some(Box::new((ours, theirs.key))))
    }

    fn branch(&self, k: u32, what: char) -> String {
        format!("z9hG4bK{}{what}{k}", self.cfg.run)
    }

    /// Starts A call number `k` (the next index: calls are started in order).
    pub fn start_call(&mut self, now: Instant) {
        let k = self.uac.len() as u32;
        let cfg = &self.cfg;
        let ours = cfg.srtp.then(|| Crypto::new(1, sdp::our_key(k, A_SALT)));
        let body = sdp::pcmu_with(*cfg.a_media.ip(), cfg.a_media.port(), u64::from(k), ours.as_ref());
        let invite = format!(
            "INVITE sip:{svc}@{target} SIP/2.0\r\nVia: SIP/2.0/{transport} {uac};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{svc}@{target}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:callgen@{uac}{params}>\r\nUser-Agent: starling-callgen\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            svc = cfg.service,
            target = cfg.target,
            uac = cfg.uac,
            transport = self.transport(),
            params = self.contact_params(),
            branch = self.branch(k, 'i'),
            from = self.our_from(k),
            call_id = self.call_id(k),
            len = body.len(),
        )
        .into_bytes();
        self.uac.push(UacCall {
            state: UacState::Calling,
            invite: invite.clone(),
            invite_at: now,
            rto: T1,
            ack: None,
            dialog: None,
            bye: Vec::new(),
            bye_at: now,
            window: None,
            media: None,
            b_leg: None,
            acked_at: None,
            fault: None,
        });
        self.counts.started += 1;
        self.counts.in_progress += 1;
        self.send(Leg::A, self.cfg.target.into(), invite);
        self.arm(now + T1, Timer::Invite(k));
    }

    /// Ends A call `k`: `Err(reason)` fails it.
    fn finish(&mut self, now: Instant, k: u32, result: Result<(), String>) {
        let call = &mut self.uac[k as usize];
        if call.state == UacState::Done {
            return;
        }
        if matches!(call.state, UacState::Confirmed | UacState::Terminating) {
            self.counts.up -= 1;
        }
        call.state = UacState::Done;
        let b_leg = call.b_leg;
        let result = match (result, call.fault.take()) {
            (Ok(()), Some(fault)) => Err(fault),
            (result, _) => result,
        };
        self.counts.in_progress -= 1;
        match result {
            Ok(()) => self.counts.ok += 1,
            Err(reason) => {
                self.counts.failed += 1;
                *self.counts.fail_reasons.entry(reason).or_default() += 1;
            }
        }
        self.media(Leg::A, Command::Stop { index: k, at: now });
        if let Some(b) = b_leg {
            let index = self.uas[b as usize].index;
            self.media(Leg::B, Command::Stop { index, at: now });
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.timer(now, timer);
        }
    }

    fn timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Invite(k) => {
                let call = &mut self.uac[k as usize];
                if !matches!(call.state, UacState::Calling | UacState::Proceeding) {
                    return;
                }
                let deadline = call.invite_at + GIVE_UP;
                if now >= deadline {
                    self.finish(now, k, Err("timeout".into()));
                } else if call.state == UacState::Calling {
                    call.rto *= 2;
                    let next = (now + call.rto).min(deadline);
                    let data = call.invite.clone();
                    self.counts.retrans += 1;
                    self.send(Leg::A, self.cfg.target.into(), data);
                    self.arm(next, Timer::Invite(k));
                } else {
                    self.arm(deadline, Timer::Invite(k));
                }
            }
            Timer::Hangup(k) => {
                let call = &mut self.uac[k as usize];
                if call.state != UacState::Confirmed {
                    return;
                }
                let Some((dest, uri, to)) = call.dialog.clone() else { return };
                let bye = self.in_dialog(k, "BYE", 2, &uri, &to);
                let call = &mut self.uac[k as usize];
                call.state = UacState::Terminating;
                call.bye = bye.clone();
                call.bye_at = now;
                call.rto = T1;
                self.send(Leg::A, dest, bye);
                self.arm(now + T1, Timer::Bye(k));
            }
            Timer::Bye(k) => {
                let call = &mut self.uac[k as usize];
                if call.state != UacState::Terminating {
                    return;
                }
                if now >= call.bye_at + GIVE_UP {
                    self.finish(now, k, Err("bye_timeout".into()));
                    return;
                }
                call.rto = (call.rto * 2).min(T2);
                let next = (now + call.rto).min(call.bye_at + GIVE_UP);
                let data = call.bye.clone();
                let dest = call.dialog.as_ref().map(|d| d.0).unwrap_or(self.cfg.target.into());
                self.counts.retrans += 1;
                self.send(Leg::A, dest, data);
                self.arm(next, Timer::Bye(k));
            }
            Timer::Answer(b) => {
                if self.uas[b as usize].state == UasState::Trying {
                    self.answer(now, b);
                }
            }
            Timer::Ok(b) => {
                let leg = &mut self.uas[b as usize];
                if leg.state != UasState::Answered {
                    return;
                }
                if now >= leg.answered_at + GIVE_UP {
                    leg.state = UasState::Ended;
                    self.counts.no_ack += 1;
                    self.counts.b_open -= 1;
                    return;
                }
                leg.rto = (leg.rto * 2).min(T2);
                let next = now + leg.rto;
                let (src, data) = (leg.src, leg.last.clone());
                self.counts.retrans += 1;
                self.send(Leg::B, src, data);
                self.arm(next, Timer::Ok(b));
            }
        }
    }

    /// One datagram from `src` on `leg`'s SIP socket.
    pub fn handle(&mut self, now: Instant, leg: Leg, src: SocketAddr, data: &[u8]) {
        let message = match parse_datagram(data) {
            Ok(Datagram::Message(m)) => m,
            Ok(Datagram::KeepAlive) => return,
            Err(e) => {
                self.counts.stray += 1;
                if let Some(response) = e.bad_request() {
                    self.send(leg, src, response.to_bytes());
                }
                return;
            }
        };
        match (leg, message) {
            (Leg::A, SipMessage::Response(r)) => self.uac_response(now, r),
            (Leg::A, SipMessage::Request(r)) => self.uac_request(now, src, r),
            (Leg::B, SipMessage::Request(r)) => self.uas_request(now, src, r),
            (Leg::B, SipMessage::Response(_)) => self.counts.stray += 1, // we send no requests on B
        }
    }

    fn uac_response(&mut self, now: Instant, r: Response) {
        let Some(k) = r.call_id().and_then(|c| self.index_of_call_id(c)) else {
            self.counts.stray += 1;
            return;
        };
        let Some(cseq) = r.cseq() else { return };
        let state = self.uac[k as usize].state;
        match cseq.method {
            Method::Invite if r.status < 200 && state == UacState::Calling => {
                self.uac[k as usize].state = UacState::Proceeding;
            }
            Method::Invite if r.status < 200 => {}
            Method::Invite => {
                if !matches!(state, UacState::Calling | UacState::Proceeding) {
                    // The final response again: our ACK was lost, or it crossed it.
                    match self.uac[k as usize].ack.clone() {
                        Some((dest, ack)) => {
                            self.counts.retrans += 1;
                            self.send(Leg::A, dest, ack);
                        }
                        None if r.status < 300 => self.late_answer(k, &r),
                        None => {}
                    }
                    return;
                }
                if r.status < 300 {
                    self.answered(now, k, &r);
                } else {
                    self.refused(now, k, &r);
                }
            }
            Method::Bye if state == UacState::Terminating && r.status >= 200 => {
                let result = if r.status < 300 { Ok(()) } else { Err(format!("bye_{}", r.status)) };
                self.finish(now, k, result);
            }
            _ => {}
        }
    }

    /// The ACK of a 2xx (and the dialog's target): to the 200's Contact.
    fn ack_2xx(&self, k: u32, r: &Response) -> (SocketAddr, String, String, Vec<u8>) {
        let to = r.headers.get(&HeaderName::To).unwrap_or_default().to_owned();
        let contact = r.contacts().into_iter().next();
        let uri = contact.as_ref().map(|c| c.uri.to_string()).unwrap_or_else(|| format!("sip:{}", self.cfg.target));
        let dest = contact
            .and_then(|c| c.uri.host.ip().map(|ip| SocketAddr::new(ip, c.uri.port.unwrap_or(5060))))
            .unwrap_or(self.cfg.target.into());
        let ack = self.in_dialog(k, "ACK", 1, &uri, &to);
        (dest, uri, to, ack)
    }

    /// A request of ours inside call `k`'s dialog (ACK of a 2xx, BYE), without a body.
    fn in_dialog(&self, k: u32, method: &str, cseq: u32, uri: &str, to: &str) -> Vec<u8> {
        // A branch of its own per method: the ACK of a 2xx and the BYE are new transactions.
        let branch = self.branch(k, if method == "ACK" { 'k' } else { 'b' });
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {uac};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             User-Agent: starling-callgen\r\nContent-Length: 0\r\n\r\n",
            uac = self.cfg.uac,
            transport = self.transport(),
            from = self.our_from(k),
            call_id = self.call_id(k),
        )
        .into_bytes()
    }

    fn answered(&mut self, now: Instant, k: u32, r: &Response) {
        let (dest, uri, to, ack) = self.ack_2xx(k, r);
        self.send(Leg::A, dest, ack.clone());
        let media = sdp::audio_addr(&r.body);
        let keys = self.keys(sdp::our_key(k, A_SALT), &r.body);
        let hold = self.cfg.hold;
        let call = &mut self.uac[k as usize];
        call.ack = Some((dest, ack));
        call.dialog = Some((dest, uri, to));
        call.state = UacState::Confirmed;
        call.acked_at = Some(now);
        call.media = media;
        let window = (now + MEDIA_AFTER_ACK, (now + hold).checked_sub(MEDIA_BEFORE_BYE).unwrap_or(now));
        call.window = Some(window);
        let b_leg = call.b_leg;
        self.counts.up += 1;
        self.counts.peak = self.counts.peak.max(self.counts.up);
        self.arm(now + hold, Timer::Hangup(k));
        match (media, keys) {
            (Some(dest), Ok(keys)) => {
                self.media(Leg::A, Command::Start { index: k, dest, start: window.0, stop: window.1, keys })
            }
            (Some(_), Err(())) => {
                self.uac[k as usize].fault = Some("no_crypto_in_200".into());
                self.timer(now, Timer::Hangup(k));
            }
            // No audio to send to: hang up at once, and count the call as failed.
            (None, _) => {
                self.uac[k as usize].fault = Some("no_audio_in_200".into());
                self.timer(now, Timer::Hangup(k));
            }
        }
        if let Some(b) = b_leg {
            self.start_b_media(b, window);
        }
    }

    fn start_b_media(&mut self, b: u32, (start, stop): (Instant, Instant)) {
        let leg = &self.uas[b as usize];
        if let (Some(dest), true) = (leg.media, matches!(leg.state, UasState::Answered | UasState::Confirmed)) {
            let index = leg.index;
            let keys = self.uas_keys(b);
            self.media(Leg::B, Command::Start { index, dest, start, stop, keys });
        }
    }

    /// A 200 after we gave the call up: ACK it and hang up at once, without waiting for answers.
    fn late_answer(&mut self, k: u32, r: &Response) {
        let (dest, uri, to, ack) = self.ack_2xx(k, r);
        self.send(Leg::A, dest, ack.clone());
        self.uac[k as usize].ack = Some((dest, ack));
        let bye = self.in_dialog(k, "BYE", 2, &uri, &to);
        self.send(Leg::A, dest, bye);
    }

    fn refused(&mut self, now: Instant, k: u32, r: &Response) {
        // RFC 3261 §17.1.1.3: the INVITE's Request-URI and Via, the response's To.
        let to = r.headers.get(&HeaderName::To).unwrap_or_default();
        let ack = format!(
            "ACK sip:{svc}@{target} SIP/2.0\r\nVia: SIP/2.0/{transport} {uac};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            svc = self.cfg.service,
            target = self.cfg.target,
            uac = self.cfg.uac,
            transport = self.transport(),
            branch = self.branch(k, 'i'),
            from = self.our_from(k),
            call_id = self.call_id(k),
        )
        .into_bytes();
        let dest: SocketAddr = self.cfg.target.into();
        self.send(Leg::A, dest, ack.clone());
        self.uac[k as usize].ack = Some((dest, ack));
        self.finish(now, k, Err(r.status.to_string()));
    }

    /// A request from Starling to our uac.
    fn uac_request(&mut self, now: Instant, src: SocketAddr, req: Request) {
        let k = req.call_id().and_then(|c| self.index_of_call_id(c));
        match (&req.method, k) {
            (Method::Ack, _) => {}
            (Method::Bye, Some(k)) => {
                self.send(Leg::A, src, Response::to_request(&req, 200).to_bytes());
                let (state, acked_at) = (self.uac[k as usize].state, self.uac[k as usize].acked_at);
                match state {
                    UacState::Confirmed => {
                        let held = acked_at.is_some_and(|t| now >= t + self.cfg.hold);
                        let result = if held { Ok(()) } else { Err("bye_from_starling".into()) };
                        self.finish(now, k, result);
                    }
                    // Our BYE and Starling's crossed: the call was held its time.
                    UacState::Terminating => self.finish(now, k, Ok(())),
                    UacState::Calling | UacState::Proceeding => self.finish(now, k, Err("bye_before_200".into())),
                    UacState::Done => {}
                }
            }
            (Method::Invite, Some(k)) => {
                // A re-INVITE: the same SDP; follow Starling if its address moved.
                let cfg = &self.cfg;
                let mut ok = Response::to_request(&req, 200);
                ok.headers.push(HeaderName::Contact, format!("<sip:callgen@{}{}>", cfg.uac, self.contact_params()));
                ok.headers.push(HeaderName::ContentType, "application/sdp");
                let ours = sdp::their_crypto(&req.body)
                    .filter(|_| cfg.srtp)
                    .map(|theirs| Crypto::new(theirs.tag, sdp::our_key(k, A_SALT)));
                ok.body =
                    sdp::pcmu_with(*cfg.a_media.ip(), cfg.a_media.port(), u64::from(k), ours.as_ref()).into_bytes();
                self.send(Leg::A, src, ok.to_bytes());
                if let Some(dest) = sdp::audio_addr(&req.body) {
                    let call = &mut self.uac[k as usize];
                    if call.media != Some(dest) {
                        call.media = Some(dest);
                        self.media(Leg::A, Command::Retarget { index: k, dest });
                    }
                }
            }
            (Method::Bye | Method::Cancel | Method::Invite, None) => {
                self.counts.stray += 1;
                self.send(Leg::A, src, Response::to_request(&req, 481).to_bytes());
            }
            (Method::Cancel, Some(_)) => self.send(Leg::A, src, Response::to_request(&req, 481).to_bytes()),
            _ => self.send(Leg::A, src, Response::to_request(&req, 200).to_bytes()),
        }
    }

    fn uas_answer_sdp(&self, b: u32) -> Vec<u8> {
        let leg = &self.uas[b as usize];
        let ours = leg.crypto.as_ref().map(|theirs| Crypto::new(theirs.tag, sdp::our_key(leg.index, B_SALT)));
        sdp::pcmu_with(*self.cfg.b_media.ip(), self.cfg.b_media.port(), u64::from(b), ours.as_ref()).into_bytes()
    }

    /// B leg `b`'s keys (ours, Starling's offer's), with SRTP.
    fn uas_keys(&self, b: u32) -> Option<Box<(MasterKey, MasterKey)>> {
        let leg = &self.uas[b as usize];
        leg.crypto.as_ref().map(|theirs| Box::new((sdp::our_key(leg.index, B_SALT), theirs.key.clone())))
    }

    fn uas_ok(&self, b: u32, req: &Request) -> Vec<u8> {
        let leg = &self.uas[b as usize];
        let mut ok = Response::to_request(req, 200);
        ok.set_to_tag(&leg.tag);
        ok.headers.push(HeaderName::Contact, format!("<sip:uas@{}{}>", self.cfg.uas, self.contact_params()));
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = self.uas_answer_sdp(b);
        ok.to_bytes()
    }

    fn answer(&mut self, now: Instant, b: u32) {
        let data = self.uas_ok(b, &self.uas[b as usize].invite);
        let leg = &mut self.uas[b as usize];
        leg.last = data.clone();
        leg.state = UasState::Answered;
        leg.answered_at = now;
        leg.rto = T1;
        let src = leg.src;
        self.send(Leg::B, src, data);
        self.arm(now + T1, Timer::Ok(b));
    }

    /// A request from Starling to our uas.
    fn uas_request(&mut self, now: Instant, src: SocketAddr, req: Request) {
        let Some(call_id) = req.call_id().map(str::to_owned) else { return };
        let Some(cseq) = req.cseq() else { return };
        let Some(&b) = self.uas_by_call_id.get(&call_id) else {
            match req.method {
                Method::Invite if req.to().is_some_and(|t| t.tag().is_none()) => self.new_b_leg(now, src, call_id, req),
                Method::Ack => {}
                Method::Bye | Method::Cancel | Method::Invite => {
                    self.counts.stray += 1;
                    self.send(Leg::B, src, Response::to_request(&req, 481).to_bytes());
                }
                _ => self.send(Leg::B, src, Response::to_request(&req, 200).to_bytes()),
            }
            return;
        };
        let state = self.uas[b as usize].state;
        match req.method {
            Method::Invite if cseq.seq == self.uas[b as usize].cseq => {
                // The INVITE again: our last answer again.
                let data = self.uas[b as usize].last.clone();
                self.counts.retrans += 1;
                self.send(Leg::B, src, data);
            }
            Method::Invite => {
                let again = self.uas[b as usize].reinvite.as_ref().filter(|(seq, _)| *seq == cseq.seq);
                if let Some((_, data)) = again.cloned() {
                    self.counts.retrans += 1;
                    self.send(Leg::B, src, data);
                    return;
                }
                let data = self.uas_ok(b, &req);
                self.uas[b as usize].reinvite = Some((cseq.seq, data.clone()));
                self.send(Leg::B, src, data);
                if let Some(dest) = sdp::audio_addr(&req.body) {
                    let leg = &mut self.uas[b as usize];
                    if leg.media != Some(dest) {
                        leg.media = Some(dest);
                        let index = leg.index;
                        self.media(Leg::B, Command::Retarget { index, dest });
                    }
                }
            }
            Method::Ack => {
                if state == UasState::Answered && cseq.seq == self.uas[b as usize].cseq {
                    let leg = &mut self.uas[b as usize];
                    leg.state = UasState::Confirmed;
                    if leg.link.is_none() {
                        if let Some(dest) = leg.media {
                            let index = leg.index;
                            let start = now + MEDIA_AFTER_ACK;
                            let keys = self.uas_keys(b);
                            self.media(Leg::B, Command::Start { index, dest, start, stop: now + FOREVER, keys });
                        }
                    }
                }
            }
            Method::Bye => {
                let mut ok = Response::to_request(&req, 200);
                ok.set_to_tag(&self.uas[b as usize].tag);
                self.send(Leg::B, src, ok.to_bytes());
                if state != UasState::Ended && state != UasState::Cancelled {
                    let leg = &mut self.uas[b as usize];
                    leg.state = UasState::Ended;
                    let index = leg.index;
                    self.counts.b_open -= 1;
                    self.media(Leg::B, Command::Stop { index, at: now });
                }
            }
            Method::Cancel => {
                self.send(Leg::B, src, Response::to_request(&req, 200).to_bytes());
                if state == UasState::Trying {
                    let leg = &mut self.uas[b as usize];
                    let mut terminated = Response::to_request(&leg.invite, 487);
                    terminated.set_to_tag(&leg.tag);
                    leg.last = terminated.to_bytes();
                    leg.state = UasState::Cancelled;
                    let data = leg.last.clone();
                    self.counts.b_open -= 1;
                    self.send(Leg::B, src, data);
                }
            }
            _ => self.send(Leg::B, src, Response::to_request(&req, 200).to_bytes()),
        }
    }

    fn new_b_leg(&mut self, now: Instant, src: SocketAddr, call_id: String, req: Request) {
        let b = self.uas.len() as u32;
        // The caller's number is our call index: tie this leg to that call (once).
        let link = req
            .from()
            .and_then(|f| f.uri.user.as_deref().and_then(|u| u.parse::<u32>().ok()))
            .filter(|&k| (k as usize) < self.uac.len() && self.uac[k as usize].b_leg.is_none());
        let index = match link {
            Some(k) => k,
            None => {
                self.counts.unlinked += 1;
                self.unlinked_base + self.counts.unlinked as u32
            }
        };
        let crypto = if self.cfg.srtp { sdp::their_crypto(&req.body) } else { None };
        // Without the line SRTP needs, the offer is refused as one without audio is.
        let media = sdp::audio_addr(&req.body).filter(|_| !self.cfg.srtp || crypto.is_some());
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        self.uas.push(UasCall {
            index,
            link,
            invite: req,
            cseq,
            tag: format!("b{b}{}", self.cfg.run),
            src,
            state: UasState::Trying,
            last: Vec::new(),
            answered_at: now,
            rto: T1,
            media,
            reinvite: None,
            crypto,
        });
        self.uas_by_call_id.insert(call_id, b);
        self.counts.b_legs += 1;
        if media.is_none() {
            let leg = &mut self.uas[b as usize];
            let mut refused = Response::to_request(&leg.invite, 488);
            refused.set_to_tag(&leg.tag);
            leg.last = refused.to_bytes();
            leg.state = UasState::Cancelled;
            self.counts.b_refused += 1;
            let data = leg.last.clone();
            self.send(Leg::B, src, data);
            return;
        }
        self.counts.b_open += 1;
        if let Some(k) = link {
            self.uac[k as usize].b_leg = Some(b);
        }
        if self.cfg.trying {
            let leg = &mut self.uas[b as usize];
            let trying = Response::to_request(&leg.invite, 100).to_bytes();
            leg.last = trying.clone();
            self.send(Leg::B, src, trying);
        }
        if self.cfg.answer_delay.is_zero() {
            self.answer(now, b);
        } else {
            self.arm(now + self.cfg.answer_delay, Timer::Answer(b));
        }
        // The A leg was answered first (not what Dial does, but then its window is known).
        if let Some(window) = link.and_then(|k| self.uac[k as usize].window) {
            self.start_b_media(b, window);
        }
    }
}

/// Our address as the far end sees it on 127.0.0.1, for an unspecified bind.
pub fn visible(addr: SocketAddrV4) -> SocketAddrV4 {
    if addr.ip().is_unspecified() {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port())
    } else {
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let a = |p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p);
        Engine::new(
            Config {
                service: "1000".into(),
                target: a(5060),
                uac: a(41000),
                uas: a(41010),
                a_media: a(41002),
                b_media: a(41012),
                hold: Duration::from_secs(5),
                trying: true,
                answer_delay: Duration::ZERO,
                run: "r1".into(),
                tls: false,
                srtp: false,
            },
            100,
        )
    }

    fn sent(e: &mut Engine) -> Vec<(Leg, String)> {
        e.out
            .drain(..)
            .filter_map(|o| match o {
                Out::Sip { leg, data, .. } => Some((leg, String::from_utf8(data).unwrap())),
                Out::Media { .. } => None,
            })
            .collect()
    }

    fn starts(e: &Engine) -> Vec<(Leg, u32, SocketAddrV4)> {
        e.out
            .iter()
            .filter_map(|o| match o {
                Out::Media { leg, command: Command::Start { index, dest, .. } } => Some((*leg, *index, *dest)),
                _ => None,
            })
            .collect()
    }

    const STARLING_SDP: &str =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\n";

    /// A whole call: A's INVITE, Starling's INVITE to B (caller number 0), B's 200, A's 200,
    /// then the media of both legs, the BYE after the hold, and its 200.
    #[test]
    fn one_call_through() {
        let t0 = Instant::now();
        let mut e = engine();
        e.start_call(t0);
        let out = sent(&mut e);
        assert_eq!(out.len(), 1);
        assert!(out[0].1.starts_with("INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"));
        assert!(out[0].1.contains("From: <sip:0@127.0.0.1>;tag=a0r1\r\n"));
        assert!(out[0].1.contains("m=audio 41002 RTP/AVP 0\r\n"));

        let starling: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let b_invite = format!(
            "INVITE sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs1\r\n\
             From: \"0\" <sip:0@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>\r\nCall-ID: s-1\r\n\
             CSeq: 102 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
            STARLING_SDP.len() + 1,
            STARLING_SDP.replace("10000", "10002") + "\n"
        );
        e.handle(t0, Leg::B, starling, b_invite.as_bytes());
        let out = sent(&mut e);
        assert_eq!(out.iter().map(|(_, m)| &m[..14]).collect::<Vec<_>>(), ["SIP/2.0 100 Tr", "SIP/2.0 200 OK"]);
        assert!(out[1].1.contains("m=audio 41012 RTP/AVP 0\r\n"));
        assert!(out[1].1.contains(";tag=b0r1"));
        // A retransmitted INVITE gets the 200 again.
        e.handle(t0, Leg::B, starling, b_invite.as_bytes());
        assert!(sent(&mut e)[0].1.starts_with("SIP/2.0 200 OK"));
        let b_ack = "ACK sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs2\r\n\
             From: <sip:0@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>;tag=b0r1\r\nCall-ID: s-1\r\n\
             CSeq: 102 ACK\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0, Leg::B, starling, b_ack.as_bytes());
        assert!(e.out.is_empty(), "a tied B leg waits for the A leg's ACK");

        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:41000;branch=z9hG4bKr1i0;rport=41000\r\n\
             From: <sip:0@127.0.0.1>;tag=a0r1\r\nTo: <sip:1000@127.0.0.1:5060>;tag=st\r\nCall-ID: 0-r1@callgen\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:1000@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{STARLING_SDP}",
            STARLING_SDP.len()
        );
        e.handle(t0, Leg::A, starling, ok.as_bytes());
        let media = starts(&e);
        assert_eq!(
            media,
            [(Leg::A, 0, "127.0.0.1:10000".parse().unwrap()), (Leg::B, 0, "127.0.0.1:10002".parse().unwrap())]
        );
        let out = sent(&mut e);
        assert_eq!(out.len(), 1);
        assert!(out[0].1.starts_with("ACK sip:1000@127.0.0.1:5070 SIP/2.0\r\n"));
        assert!(out[0].1.contains("To: <sip:1000@127.0.0.1:5060>;tag=st\r\n"));
        assert_eq!((e.counts.up, e.counts.peak), (1, 1));
        // The 200 again: the ACK again.
        e.handle(t0, Leg::A, starling, ok.as_bytes());
        assert!(sent(&mut e)[0].1.starts_with("ACK "));

        // The BYE goes after the hold, to the Contact; its 200 ends the call.
        e.handle_timeout(t0 + Duration::from_millis(4999));
        assert!(sent(&mut e).is_empty());
        e.handle_timeout(t0 + Duration::from_secs(5));
        let out = sent(&mut e);
        assert!(out[0].1.starts_with("BYE sip:1000@127.0.0.1:5070 SIP/2.0\r\n"));
        let bye_ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:41000;branch=z9hG4bKr1b0\r\n\
             From: <sip:0@127.0.0.1>;tag=a0r1\r\nTo: <sip:1000@127.0.0.1:5060>;tag=st\r\nCall-ID: 0-r1@callgen\r\n\
             CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0 + Duration::from_secs(5), Leg::A, starling, bye_ok.as_bytes());
        assert_eq!((e.counts.ok, e.counts.failed, e.counts.in_progress, e.counts.up), (1, 0, 0, 0));
    }

    #[test]
    fn invite_retransmits_then_times_out() {
        let t0 = Instant::now();
        let mut e = engine();
        e.start_call(t0);
        sent(&mut e);
        let mut at = Vec::new();
        let mut t = t0;
        while e.counts.failed == 0 {
            t = e.poll_timeout().unwrap();
            e.handle_timeout(t);
            if !sent(&mut e).is_empty() {
                at.push((t - t0).as_millis());
            }
        }
        assert_eq!(at, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(t - t0, GIVE_UP);
        assert_eq!(e.counts.fail_reasons.get("timeout"), Some(&1));
    }

    #[test]
    fn refusal_is_acked_with_the_invite_branch_and_counted() {
        let t0 = Instant::now();
        let mut e = engine();
        e.start_call(t0);
        sent(&mut e);
        let busy = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:41000;branch=z9hG4bKr1i0\r\n\
             From: <sip:0@127.0.0.1>;tag=a0r1\r\nTo: <sip:1000@127.0.0.1:5060>;tag=x\r\nCall-ID: 0-r1@callgen\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0, Leg::A, "127.0.0.1:5060".parse().unwrap(), busy.as_bytes());
        let out = sent(&mut e);
        assert!(out[0].1.starts_with("ACK sip:1000@127.0.0.1:5060 SIP/2.0\r\n"));
        assert!(out[0].1.contains("branch=z9hG4bKr1i0;"));
        assert!(out[0].1.contains(";tag=x\r\n"));
        assert_eq!(e.counts.fail_reasons.get("486"), Some(&1));
        assert_eq!(e.counts.in_progress, 0);
    }

    fn b_invite(call_id: &str, from_user: &str, cseq: u32, to_tag: &str) -> String {
        format!(
            "INVITE sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
             From: <sip:{from_user}@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>{to_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{STARLING_SDP}",
            STARLING_SDP.len()
        )
    }

    #[test]
    fn srtp_over_tls_offers_answers_and_keys_both_streams() {
        let t0 = Instant::now();
        let mut e = engine();
        (e.cfg.tls, e.cfg.srtp) = (true, true);
        e.start_call(t0);
        let invite = sent(&mut e).remove(0).1;
        assert!(invite.contains("Via: SIP/2.0/TLS 127.0.0.1:41000;") && invite.contains(";transport=tls>"), "{invite}");
        assert!(invite.contains("RTP/SAVP 0") && invite.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        // Starling calls our uas offering every suite; the answer takes the _80 line's tag.
        let starling_key = sdp::our_key(1, 99);
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 12000 RTP/SAVP 0\r\n\
             a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw=\r\na=crypto:2 {}\r\n",
            &Crypto::new(2, starling_key.clone()).to_string()[2..]
        );
        let b = format!(
            "INVITE sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKs1\r\n\
             From: <sip:0@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        );
        let starling: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        e.handle(t0, Leg::B, starling, b.as_bytes());
        let ok = sent(&mut e).into_iter().map(|(_, m)| m).find(|m| m.starts_with("SIP/2.0 200")).unwrap();
        let answer = sdp::their_crypto(&ok.as_bytes()[ok.find("v=0").unwrap()..]).expect("our crypto line");
        assert_eq!((answer.tag, &answer.key), (2, &sdp::our_key(0, B_SALT)), "{ok}");
        // Starling's 200 to our INVITE, with its key for the A leg: both streams start keyed.
        let a_body = sdp::pcmu_with(Ipv4Addr::LOCALHOST, 13000, 1, Some(&Crypto::new(1, starling_key.clone())));
        let ok_a = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:41000;branch=z9hG4bKr1i0\r\nFrom: <sip:0@127.0.0.1>;tag=ar1\r\n\
             To: <sip:1000@127.0.0.1:5060>;tag=x\r\nCall-ID: 0-r1@callgen\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:1000@127.0.0.1:5061;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{a_body}",
            a_body.len()
        );
        e.handle(t0, Leg::A, starling, ok_a.as_bytes());
        let keyed: Vec<(Leg, MasterKey, MasterKey)> = e
            .out
            .iter()
            .filter_map(|o| match o {
                Out::Media { leg, command: Command::Start { keys: Some(keys), .. } } => {
                    Some((*leg, keys.0.clone(), keys.1.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            keyed,
            vec![
                (Leg::A, sdp::our_key(0, A_SALT), starling_key.clone()),
                (Leg::B, sdp::our_key(0, B_SALT), starling_key)
            ]
        );
    }

    #[test]
    fn uas_cancel_before_the_answer_gets_487() {
        let t0 = Instant::now();
        let mut e = engine();
        e.cfg.answer_delay = Duration::from_millis(100);
        let starling: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        e.handle(t0, Leg::B, starling, b_invite("c1", "alice", 102, "").as_bytes());
        assert_eq!(e.counts.unlinked, 1, "alice is not one of our calls");
        assert!(sent(&mut e)[0].1.starts_with("SIP/2.0 100 Trying"));
        let cancel =
            "CANCEL sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKc1102\r\n\
             From: <sip:alice@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>\r\nCall-ID: c1\r\n\
             CSeq: 102 CANCEL\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0, Leg::B, starling, cancel.as_bytes());
        let out = sent(&mut e);
        assert!(out[0].1.starts_with("SIP/2.0 200 OK") && out[0].1.contains("CSeq: 102 CANCEL"));
        assert!(out[1].1.starts_with("SIP/2.0 487 ") && out[1].1.contains("CSeq: 102 INVITE"));
        e.handle_timeout(t0 + Duration::from_millis(200));
        assert!(sent(&mut e).is_empty(), "no 200 after the 487");
        assert_eq!(e.counts.b_open, 0);
    }

    #[test]
    fn uas_reinvite_and_timer_g() {
        let t0 = Instant::now();
        let mut e = engine();
        let starling: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        e.handle(t0, Leg::B, starling, b_invite("c2", "bob", 102, "").as_bytes());
        sent(&mut e);
        // No ACK: the 200 again at 500 ms, 1.5 s.
        e.handle_timeout(t0 + Duration::from_millis(500));
        assert!(sent(&mut e)[0].1.starts_with("SIP/2.0 200 OK"));
        e.handle_timeout(t0 + Duration::from_millis(1499));
        assert!(sent(&mut e).is_empty());
        e.handle_timeout(t0 + Duration::from_millis(1500));
        assert!(sent(&mut e)[0].1.starts_with("SIP/2.0 200 OK"));
        let ack = "ACK sip:uas@127.0.0.1:41010 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:bob@127.0.0.1>;tag=s1\r\nTo: <sip:uas@127.0.0.1:41010>;tag=b0r1\r\nCall-ID: c2\r\n\
             CSeq: 102 ACK\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0 + Duration::from_secs(2), Leg::B, starling, ack.as_bytes());
        // Not tied to a call of ours: its media starts from its own ACK.
        assert_eq!(starts(&e), [(Leg::B, 101, "127.0.0.1:10000".parse().unwrap())]);
        sent(&mut e);
        e.handle_timeout(t0 + Duration::from_secs(10));
        assert!(sent(&mut e).is_empty(), "Timer G stops at the ACK");
        // A re-INVITE moving the media: 200 with the same SDP, and the stream follows.
        let moved = b_invite("c2", "bob", 103, ";tag=b0r1").replace("10000", "10008");
        e.handle(t0 + Duration::from_secs(3), Leg::B, starling, moved.as_bytes());
        assert!(e.out.iter().any(|o| matches!(o, Out::Media { command: Command::Retarget { index: 101, .. }, .. })));
        let out = sent(&mut e);
        assert!(out[0].1.starts_with("SIP/2.0 200 OK") && out[0].1.contains("m=audio 41012 RTP/AVP 0"));
    }

    #[test]
    fn bye_from_starling_before_the_hold_fails_the_call() {
        let t0 = Instant::now();
        let mut e = engine();
        e.start_call(t0);
        let starling: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:41000;branch=z9hG4bKr1i0\r\n\
             From: <sip:0@127.0.0.1>;tag=a0r1\r\nTo: <sip:1000@127.0.0.1:5060>;tag=st\r\nCall-ID: 0-r1@callgen\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:1000@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{STARLING_SDP}",
            STARLING_SDP.len()
        );
        e.handle(t0, Leg::A, starling, ok.as_bytes());
        sent(&mut e);
        let bye = "BYE sip:callgen@127.0.0.1:41000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsb\r\n\
             From: <sip:1000@127.0.0.1:5060>;tag=st\r\nTo: <sip:0@127.0.0.1>;tag=a0r1\r\nCall-ID: 0-r1@callgen\r\n\
             CSeq: 102 BYE\r\nContent-Length: 0\r\n\r\n";
        e.handle(t0 + Duration::from_secs(1), Leg::A, starling, bye.as_bytes());
        let out = sent(&mut e);
        assert!(out[0].1.starts_with("SIP/2.0 200 OK") && out[0].1.contains("CSeq: 102 BYE"));
        assert_eq!(e.counts.fail_reasons.get("bye_from_starling"), Some(&1));
        e.handle_timeout(t0 + Duration::from_secs(6));
        assert!(sent(&mut e).is_empty(), "no BYE of ours after Starling's");
    }
}
