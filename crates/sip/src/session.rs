//! The call: one INVITE dialog usage (RFC 3261 §13–15) as a state machine without I/O, for
//! either role, sitting on top of the transaction layer ([`crate::transaction::Endpoint`]).
//!
//! The [`Endpoint`](crate::transaction::Endpoint) matches messages to transactions and
//! retransmits requests and non-2xx finals; an [`InviteSession`] does what RFC 3261 gives the
//! UA core and the dialog: the 2xx retransmitted until its ACK, the ACK of a 2xx, the BYE that
//! waits for the ACK, CANCEL and its deadline, in-dialog requests with their CSeq, the route
//! set and remote target ([`Dialog`]), re-INVITE/UPDATE offers with glare, INFO and REFER, and
//! two extensions: RFC 4028 session timers and RFC 3262 reliable provisionals (100rel/PRACK).
//!
//! # States ([`State`])
//!
//! ```text
//!  UAC: Calling ──1xx──▶ Proceeding ──2xx (ACK sent)──▶ Confirmed ──BYE──▶ Terminated
//!          │                 │  hangup: CANCEL
//!          │                 ▼
//!          └──hangup──▶ Cancelling ──final / 64·T1──▶ Terminated   (a 2xx crossing it: ACK, BYE)
//!  UAS: Proceeding ──answer (2xx)──▶ Accepted ──ACK──▶ Confirmed ──BYE──▶ Terminated
//!          └── reject / CANCEL (487) / no PRACK (500) ──▶ Terminated
//! ```
//!
//! A hangup in `Accepted` (or while a re-INVITE's 2xx awaits its ACK) sends nothing yet: the
//! BYE leaves when the ACK comes, or after 64·T1 without one (RFC 3261 §15).
//!
//! # Timers ([`Timer`])
//!
//! - `Retransmit2xx`: our 2xx to an INVITE (first or re-INVITE), re-sent at T1, 2·T1, … capped at
//!   T2 until the ACK; `NoAck`: 64·T1 after the 2xx, BYE and [`EndReason::NoAck`].
//! - `Retransmit1xx`: a reliable provisional (RFC 3262), re-sent at T1 doubling until its PRACK;
//!   `NoPrack`: 64·T1 without one, the INVITE is refused 500 ([`EndReason::NoPrack`]).
//! - `Cancel`: 64·T1 after our CANCEL with no final response to the INVITE: the call is over.
//! - `Offer`: when the queued offer may leave (at once, or after a 491: 2.1–4 s for the owner
//!   of the Call-ID, 0–2 s for the other side, RFC 3261 §14.1).
//! - `Refresh` (we are the refresher, RFC 4028): a re-INVITE or UPDATE at half the interval.
//!   `Expire` (the far end refreshes): BYE at interval − min(32 s, interval/3) without a
//!   refresh ([`EndReason::SessionExpired`]).
//!
//! # What the driver does with each output
//!
//! After every input (`handle_*`) and command, drain [`InviteSession::poll_transmit`] and
//! [`InviteSession::poll_event`], then arm one timer at [`InviteSession::poll_timeout`] that calls
//! [`InviteSession::handle_timeout`].
//!
//! - [`Transmit::Request`]: a new client transaction (`Endpoint::send_request`), to the address
//!   `target` resolves to (the driver may use the dialog's learnt address instead, for NAT).
//!   Report its end without a final response with [`InviteSession::handle_transaction_timeout`].
//! - [`Transmit::Response`]: the answer to the request with the response's CSeq: with
//!   `retransmission: false` on its server transaction (`Endpoint::send_response`), with
//!   `retransmission: true` outside any (`Endpoint::send_stateless`, to where the request came
//!   from).
//! - [`Transmit::Ack`]: the ACK of a 2xx, outside any transaction (`Endpoint::send_stateless`).
//! - [`Event`]s are for the channel: ringing, early media, the answer, offers to answer
//!   ([`InviteSession::accept_offer`]/[`InviteSession::reject_offer`]), REFERs to accept or
//!   refuse, key presses, and one [`Event::Terminated`] at the end, after which the session
//!   takes no more input and can be dropped once `poll_transmit` is drained.
//!
//! Inputs: every request of the dialog the Endpoint reports (`Event::Request`, the ACK of a 2xx
//! `Event::Ack`, the CANCEL of `Event::Cancelled`, which the Endpoint has answered 200), and
//! every response to a request this session sent (a retransmitted 2xx too: it is ACKed again).
//!
//! # The run loop
//!
//! A UAS ringing and answering; the UAC's messages are written out by hand here:
//!
//! ```
//! use std::time::Instant;
//! use starling_sip::session::{Event, InviteSession, SessionConfig, State, Transmit};
//! use starling_sip::{parse, SipMessage};
//!
//! let request = |text: &str| match parse(text.replace('\n', "\r\n").as_bytes()) {
//!     Ok(SipMessage::Request(r)) => r,
//!     _ => unreachable!(),
//! };
//! let invite = request("INVITE sip:600@192.0.2.1 SIP/2.0
//! Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa1
//! From: <sip:alice@192.0.2.1>;tag=f1
//! To: <sip:600@192.0.2.1>
//! Call-ID: c1
//! CSeq: 1 INVITE
//! Contact: <sip:alice@192.0.2.7:5062>
//!
//! ");
//! let mut now = Instant::now();
//! let mut call = InviteSession::uas(now, SessionConfig::default(), invite, "as5e3b");
//! call.ring(now);
//! call.answer(now, b"v=0\r\n".to_vec());
//! let mut sent = Vec::new();
//! // The driver's loop: drain, then sleep until poll_timeout and run handle_timeout.
//! for _ in 0..2 {
//!     while let Some(transmit) = call.poll_transmit() {
//!         if let Transmit::Response { response, retransmission } = transmit {
//!             sent.push((response.status, retransmission));
//!         }
//!     }
//!     while let Some(event) = call.poll_event() {
//!         println!("{event:?}");
//!     }
//!     if let Some(at) = call.poll_timeout() {
//!         now = at;
//!         call.handle_timeout(now);
//!     }
//! }
//! assert_eq!(sent, [(180, false), (200, false), (200, true)], "the 2xx again at T1");
//! call.handle_request(now, request("ACK sip:600@192.0.2.1:5060 SIP/2.0
//! Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa2
//! From: <sip:alice@192.0.2.1>;tag=f1
//! To: <sip:600@192.0.2.1>;tag=as5e3b
//! Call-ID: c1
//! CSeq: 1 ACK
//!
//! "));
//! assert_eq!(call.state(), State::Confirmed);
//! assert_eq!(call.poll_event(), Some(Event::Confirmed { sdp: Vec::new() }));
//! assert_eq!(call.poll_timeout(), None);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::dialog::{Dialog, DialogError, DialogState};
use crate::digest::{Challenge, Credentials};
use crate::header::HeaderName;
use crate::message::{MessageHeaders, Request, Response};
use crate::transaction::{cancel_for, Endpoint};
use crate::typed::{CSeq, Method, NameAddr, Via};
use crate::uri::Uri;

/// `session-timers` (chan_sip's `st_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SessionTimerMode {
    /// Request and run session timers on every call.
    Originate,
    /// Run them when the far end asks (chan_sip's default).
    #[default]
    Accept,
    /// Never: `timer` is not in Supported, and a request that requires it gets 420.
    Refuse,
}

/// Who refreshes the session (`session-refresher`; RFC 4028's `refresher` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Refresher {
    Uac,
    #[default]
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// Reliable provisional responses (RFC 3262).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rel100 {
    /// Not supported: no `100rel` in Supported; an INVITE requiring it gets 420.
    Off,
    /// Supported: our 18x are reliable when the INVITE requires it; reliable 18x we receive
    /// are PRACKed.
    #[default]
    Supported,
    /// Our 18x are reliable whenever the INVITE supports it.
    Preferred,
}

/// What a session needs from sip.conf and the socket; filled by the driver.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub t1: Duration,
    pub t2: Duration,
    /// The top Via of our requests (transport and sent-by); each request gets a new branch.
    pub via: Via,
    /// Our Contact header value (`<sip:600@192.0.2.1:5060>`).
    pub contact: String,
    /// `useragent`: User-Agent of our requests and Server of our responses (none if empty).
    pub user_agent: String,
    /// The Allow header of our INVITE and 2xx.
    pub allow: String,
    /// The option tags we support besides `100rel` and `timer`, which the session adds as
    /// configured (`replaces`).
    pub supported: String,
    pub session_timers: SessionTimerMode,
    /// `session-expires`, seconds.
    pub session_expires: u32,
    /// `session-minse`, seconds.
    pub min_se: u32,
    /// `session-refresher`.
    pub refresher: Refresher,
    pub rel100: Rel100,
    /// Refresh the session with UPDATE when the far end allows it (else re-INVITE).
    pub refresh_with_update: bool,
    /// Retransmit our 2xx to an INVITE until the ACK (RFC 3261 §13.3.1.4). Turn it off when
    /// the transaction layer already does (the [`Endpoint`]'s Accepted state, Timer G, for a
    /// 2xx sent with `send_response`): the session then only gives up after 64·T1.
    pub retransmit_2xx: bool,
    /// To answer a 401/407 to our INVITE (once, or again when the nonce was stale).
    pub credentials: Option<Credentials>,
    /// Seeds the branches, cnonces, RSeq and glare waits, so a test runs the same every time.
    pub seed: u64,
    /// Where those come from instead, when set: a generator nobody outside can predict (a
    /// seeded xorshift is fine for tests, not for branches and cnonces on the wire).
    pub entropy: Option<fn() -> u64>,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            via: Via::parse("SIP/2.0/UDP 127.0.0.1:5060;rport").expect("a valid Via"),
            contact: "<sip:s@127.0.0.1:5060>".into(),
            user_agent: String::new(),
            allow: "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE, UPDATE, PRACK"
                .into(),
            supported: "replaces".into(),
            session_timers: SessionTimerMode::default(),
            session_expires: 1800,
            min_se: 90,
            refresher: Refresher::default(),
            rel100: Rel100::default(),
            refresh_with_update: true,
            retransmit_2xx: true,
            credentials: None,
            seed: 1,
            entropy: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// Where the INVITE dialog usage is; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// UAC: our INVITE is out, no provisional response yet.
    Calling,
    /// UAC: a provisional came; UAS: their INVITE awaits our final response.
    Proceeding,
    /// UAC: we sent CANCEL and wait for the INVITE's final response.
    Cancelling,
    /// UAS: our 2xx awaits its ACK (RFC 6026's word).
    Accepted,
    /// The call is up.
    Confirmed,
    /// Over; [`Event::Terminated`] has been given.
    Terminated,
}

/// The session's timers; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Retransmit2xx,
    NoAck,
    Retransmit1xx,
    NoPrack,
    Cancel,
    Offer,
    Refresh,
    Expire,
}

const TIMERS: [Timer; 8] = [
    Timer::Retransmit2xx,
    Timer::NoAck,
    Timer::Retransmit1xx,
    Timer::NoPrack,
    Timer::Cancel,
    Timer::Offer,
    Timer::Refresh,
    Timer::Expire,
];

#[derive(Clone, Copy, Debug, Default)]
struct TimerTable([Option<Instant>; 8]);

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }
    fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }
    fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

/// What goes on the wire; see the module docs for what the driver does with each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A request that starts a client transaction, to be sent towards `target` (the first
    /// Route's URI, else the Request-URI).
    Request { request: Request, target: Uri },
    /// A response to the request of the dialog with the same CSeq.
    Response { response: Response, retransmission: bool },
    /// The ACK of a 2xx: no transaction.
    Ack { request: Request, target: Uri },
}

/// What a REFER asks (RFC 3515, RFC 3891).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferTarget {
    /// A blind transfer to this extension (the user of `Refer-To`).
    Blind(String),
    /// An attended transfer: `Refer-To: <sip:x@pbx?Replaces=call-id%3Bto-tag%3D..%3Bfrom-tag%3D..>`
    /// names another dialog of the transferer.
    Replaces { call_id: String, to_tag: String, from_tag: String },
}

/// Why the call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The far end sent BYE.
    Bye,
    /// Ended by a command: hangup, reject, or our CANCEL done.
    Local,
    /// UAC: our INVITE was refused with this final status.
    Refused { status: u16 },
    /// UAS: the caller cancelled (487 sent).
    Cancelled,
    /// UAC: our INVITE got no final response (Timer B).
    Timeout,
    /// UAS: our 2xx got no ACK in 64·T1 (BYE sent).
    NoAck,
    /// UAS: our reliable provisional got no PRACK in 64·T1 (500 sent).
    NoPrack,
    /// RFC 4028: no refresh came in time (BYE sent).
    SessionExpired,
    /// An in-dialog request (an offer, a refresh) got 408 or 481: the dialog is gone
    /// (RFC 5057; BYE sent after a 408).
    DialogGone { status: u16 },
}

/// What the channel learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// UAC: 180 or 181.
    Ringing,
    /// UAC: another 18x (183 Session Progress, 182 Queued).
    Progress,
    /// UAC: an SDP in a provisional response (after its Ringing/Progress).
    EarlyMedia { sdp: Vec<u8> },
    /// UAC: the 2xx to our INVITE, with its SDP (the answer; ACK already sent).
    Answered { sdp: Vec<u8> },
    /// UAS: the ACK of our 2xx to the INVITE came (with an SDP if it carries the answer).
    Confirmed { sdp: Vec<u8> },
    /// The far end offers (a re-INVITE or an UPDATE with SDP), or asks for our offer (a
    /// re-INVITE without SDP: `sdp` is empty). Answer with [`InviteSession::accept_offer`] or
    /// [`InviteSession::reject_offer`].
    Offer { method: Method, sdp: Vec<u8> },
    /// Our offer ([`InviteSession::offer`]) was answered.
    OfferAnswered { sdp: Vec<u8> },
    /// Our offer was refused (other than with 491, which is retried, or 408/481, which end
    /// the call): the session goes on as before it.
    OfferRejected { status: u16 },
    /// A key pressed, sent by INFO (`application/dtmf-relay` or `application/dtmf`); answered 200.
    Dtmf { digit: char, duration_ms: u32 },
    /// Another INFO; answered 200.
    Info { content_type: String, body: Vec<u8> },
    /// A REFER on an answered call. Answer it with [`InviteSession::accept_refer`] or
    /// [`InviteSession::reject_refer`].
    Refer { target: ReferTarget },
    /// The call is over (the last event).
    Terminated { reason: EndReason },
}

/// RFC 4028 state once negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// The session interval, seconds.
    pub interval: u32,
    /// Whether we refresh (else the far end does and we watch for expiry).
    pub we_refresh: bool,
}

/// An offer waiting to leave.
#[derive(Clone, Debug)]
struct Queued {
    method: Method,
    /// Empty for a refresh by UPDATE.
    sdp: Vec<u8>,
    /// A session refresh (no event comes of its answer).
    refresh: bool,
}

/// Our re-INVITE or UPDATE awaiting its final response.
#[derive(Clone, Debug)]
struct Outgoing {
    seq: u32,
    offer: Queued,
}

/// Our 2xx to an INVITE awaiting its ACK.
#[derive(Clone, Debug)]
struct Unacked {
    seq: u32,
    response: Response,
    interval: Duration,
}

/// Our reliable provisional awaiting its PRACK.
#[derive(Clone, Debug)]
struct Unpracked {
    rseq: u32,
    response: Response,
    interval: Duration,
}

/// One INVITE dialog usage; see the module docs.
#[derive(Debug)]
pub struct InviteSession {
    config: SessionConfig,
    role: Role,
    state: State,
    /// The INVITE that made the dialog (ours as UAC, as last sent; theirs as UAS).
    invite: Request,
    /// Our tag (UAS: in To of our responses).
    local_tag: String,
    dialog: Option<Dialog>,
    timers: TimerTable,
    rng: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// UAC: the ACK of the 2xx, re-sent for each retransmitted 2xx.
    ack: Option<Request>,
    /// The ACK of the 2xx to our last re-INVITE, and its CSeq number.
    reinvite_ack: Option<(u32, Request)>,
    /// UAC: challenges answered.
    auth_tries: u32,
    /// UAC: 422s answered.
    retried_422: bool,
    /// UAC: the last RSeq PRACKed (of the early dialog).
    prack_rseq: Option<u32>,
    /// UAS: our 18x are reliable.
    reliable: bool,
    /// UAS: the last RSeq used, and the reliable 18x waiting for the one before to be PRACKed.
    rseq: u32,
    unpracked: Option<Unpracked>,
    queued_1xx: VecDeque<Response>,
    /// RSeqs PRACKed so far (their PRACK retransmitted on a new transaction still gets 200).
    pracked_rseq: Option<u32>,
    unacked: Option<Unacked>,
    bye_pending: bool,
    /// Our next offer; it leaves at the `Offer` timer once nothing is in flight.
    queued: Option<Queued>,
    /// Not before then (after a 491); the `Offer` timer is armed only while this is ahead, so
    /// a queued offer that waits for a transaction to end never makes a deadline in the past.
    offer_at: Option<Instant>,
    outgoing: Option<Outgoing>,
    /// Their re-INVITE/UPDATE awaiting our answer.
    incoming_offer: Option<Request>,
    refer: Option<Request>,
    /// The last SDP we sent (a refresh by re-INVITE offers it again).
    local_sdp: Vec<u8>,
    session_timer: Option<SessionTimer>,
    /// The far end lists `timer` in Supported.
    peer_timer: bool,
    /// The far end allows UPDATE.
    peer_update: bool,
}

impl InviteSession {
    /// A UAC session sending `invite` (Request-URI, From with tag, To, Call-ID, CSeq, Contact,
    /// the SDP offer; a top Via is added if missing). The session adds Supported, Allow,
    /// User-Agent and the session timer headers as configured, and queues the INVITE.
    pub fn uac(now: Instant, config: SessionConfig, mut invite: Request) -> InviteSession {
        let local_tag = invite.from().and_then(|f| f.tag().map(str::to_owned)).unwrap_or_default();
        let mut session = InviteSession::new(
            config,
            Role::Uac,
            State::Calling,
            Request::new(Method::Invite, invite.uri.clone()),
            local_tag,
        );
        session.local_sdp = invite.body.clone();
        let headers = &mut invite.headers;
        headers.set(HeaderName::Supported, session.supported());
        if headers.get(&HeaderName::Allow).is_none() {
            headers.push(HeaderName::Allow, session.config.allow.clone());
        }
        if headers.get(&HeaderName::UserAgent).is_none() && !session.config.user_agent.is_empty() {
            headers.push(HeaderName::UserAgent, session.config.user_agent.clone());
        }
        if session.config.session_timers == SessionTimerMode::Originate {
            let (expires, min_se) = (session.config.session_expires.max(session.config.min_se), session.config.min_se);
            headers
                .set(HeaderName::SessionExpires, format!("{expires};refresher={}", session.config.refresher.as_str()));
            headers.set(HeaderName::MinSe, min_se.to_string());
        }
        if headers.get(&HeaderName::Via).is_none() {
            let via = session.new_via();
            headers.push_front(HeaderName::Via, via.to_string());
        }
        session.send_invite(now, invite);
        session
    }

    /// A UAS session for their `invite`, our responses carrying `local_tag`. An INVITE the
    /// session cannot take (no Contact or From tag: 400; an interval under our Min-SE: 422;
    /// 100rel or timer required and not supported: 420) is answered at once and the session
    /// ends ([`Event::Terminated`] with [`EndReason::Local`]).
    pub fn uas(now: Instant, config: SessionConfig, invite: Request, local_tag: &str) -> InviteSession {
        let mut s = InviteSession::new(config, Role::Uas, State::Proceeding, invite, local_tag.to_owned());
        s.peer_timer = has_option(&s.invite, &HeaderName::Supported, "timer");
        s.peer_update = allows(&s.invite, "UPDATE");
        let requires = |tag| has_option(&s.invite, &HeaderName::Require, tag);
        let mut unsupported = Vec::new();
        if requires("100rel") && s.config.rel100 == Rel100::Off {
            unsupported.push("100rel");
        }
        if requires("timer") && s.config.session_timers == SessionTimerMode::Refuse {
            unsupported.push("timer");
        }
        if !unsupported.is_empty() {
            let mut response = s.response_to(&s.invite, 420);
            response.headers.push(HeaderName::Unsupported, unsupported.join(", "));
            s.refuse_invite(response, EndReason::Local);
            return s;
        }
        s.dialog = Dialog::uas(&s.invite, local_tag, false);
        if s.dialog.is_none() {
            let response = s.response_to(&s.invite, 400);
            s.refuse_invite(response, EndReason::Local);
            return s;
        }
        s.reliable = match s.config.rel100 {
            Rel100::Off => false,
            Rel100::Supported => requires("100rel"),
            Rel100::Preferred => requires("100rel") || has_option(&s.invite, &HeaderName::Supported, "100rel"),
        };
        s.rseq = (s.random() % 0x7fff_ffff) as u32;
        match s.timer_for_request(&s.invite.clone(), None) {
            Ok(timer) => s.session_timer = timer,
            Err(response) => s.refuse_invite(response, EndReason::Local),
        }
        let _ = now;
        s
    }

    fn new(config: SessionConfig, role: Role, state: State, invite: Request, local_tag: String) -> InviteSession {
        let rng = config.seed.max(1);
        InviteSession {
            config,
            role,
            state,
            invite,
            local_tag,
            dialog: None,
            timers: TimerTable::default(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ack: None,
            reinvite_ack: None,
            auth_tries: 0,
            retried_422: false,
            prack_rseq: None,
            reliable: false,
            rseq: 0,
            unpracked: None,
            queued_1xx: VecDeque::new(),
            pracked_rseq: None,
            unacked: None,
            bye_pending: false,
            queued: None,
            offer_at: None,
            outgoing: None,
            incoming_offer: None,
            refer: None,
            local_sdp: Vec::new(),
            session_timer: None,
            peer_timer: false,
            peer_update: false,
        }
    }

    // ---- getters -------------------------------------------------------------------------

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The dialog, once there is one (UAS: from the start; UAC: from the first 1xx with a tag).
    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    /// Our tag (From of our requests as UAC, To of our responses as UAS): with the Call-ID,
    /// the key the driver finds the call by.
    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.invite.call_id().unwrap_or("")
    }

    /// The INVITE that made the call (UAC: as last sent, with its credentials).
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// The negotiated session timer, if one runs.
    pub fn session_timer(&self) -> Option<SessionTimer> {
        self.session_timer
    }

    /// UAS: whether our provisional responses are sent reliably.
    pub fn reliable_provisionals(&self) -> bool {
        self.reliable
    }

    /// Whether the BYE waits for the ACK of our 2xx.
    pub fn bye_pending(&self) -> bool {
        self.bye_pending
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next message to send. Call until `None` after every input and command.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. Call until `None` after every input and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`InviteSession::handle_timeout`] must be called next. The value may change after
    /// any input or command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Runs every timer due at `now`. An early or extra call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            if self.state == State::Terminated {
                return;
            }
            if self.timers.get(timer).is_some_and(|at| at <= now) {
                self.timers.stop(timer);
                self.fire(now, timer);
            }
        }
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Retransmit2xx => {
                let t2 = self.config.t2;
                if let Some(unacked) = self.unacked.as_mut() {
                    let response = unacked.response.clone();
                    unacked.interval = (unacked.interval * 2).min(t2);
                    self.timers.set(Timer::Retransmit2xx, now + unacked.interval);
                    self.transmits.push_back(Transmit::Response { response, retransmission: true });
                }
            }
            Timer::NoAck => {
                // RFC 3261 §13.3.1.4: no ACK for the 2xx: end the call.
                self.unacked = None;
                self.send_bye(now);
                self.terminate(EndReason::NoAck);
            }
            Timer::Retransmit1xx => {
                if let Some(unpracked) = self.unpracked.as_mut() {
                    let response = unpracked.response.clone();
                    unpracked.interval *= 2;
                    self.timers.set(Timer::Retransmit1xx, now + unpracked.interval);
                    self.transmits.push_back(Transmit::Response { response, retransmission: true });
                }
            }
            Timer::NoPrack => {
                // RFC 3262 §3: a reliable provisional never PRACKed fails the INVITE with a 5xx.
                if self.state == State::Proceeding && self.role == Role::Uas {
                    let response = self.response_to(&self.invite, 500);
                    self.transmits.push_back(Transmit::Response { response, retransmission: false });
                    self.terminate(EndReason::NoPrack);
                }
            }
            Timer::Cancel => self.terminate(EndReason::Local),
            Timer::Offer => self.send_queued_offer(now),
            Timer::Refresh => {
                if self.queued.is_none() {
                    let method = if self.config.refresh_with_update && self.peer_update {
                        Method::Update
                    } else {
                        Method::Invite
                    };
                    let sdp = if method == Method::Invite { self.local_sdp.clone() } else { Vec::new() };
                    self.queued = Some(Queued { method, sdp, refresh: true });
                }
                self.send_queued_offer(now);
            }
            Timer::Expire => {
                self.send_bye(now);
                self.terminate(EndReason::SessionExpired);
            }
        }
    }

    /// A request of this dialog from the far end (see the module docs for which).
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        if self.state == State::Terminated {
            // A BYE crossing ours, a request after the end: the dialog is gone. (ACK has no
            // response; CANCEL has had its 200 from the Endpoint.)
            if !matches!(request.method, Method::Ack | Method::Cancel) {
                let status = if request.method == Method::Bye { 200 } else { 481 };
                self.respond(&request, status);
            }
            return;
        }
        match request.method {
            Method::Ack => self.handle_request_ack(now, &request),
            Method::Cancel => self.handle_request_cancel(),
            Method::Invite if request.to().is_some_and(|t| t.tag().is_none()) => {} // a retransmission
            _ => {
                if let Err(error) =
                    self.dialog.as_mut().map_or(Err(DialogError::WrongDialog), |d| d.handle_request(&request))
                {
                    let status = match error {
                        DialogError::OldCSeq { .. } => 500,
                        DialogError::WrongDialog => 481,
                        _ => 400,
                    };
                    return self.respond(&request, status);
                }
                match request.method {
                    Method::Bye => self.handle_request_bye(&request),
                    Method::Invite | Method::Update => self.handle_request_offer(now, request),
                    Method::Prack => self.handle_request_prack(now, &request),
                    Method::Info => self.handle_request_info(&request),
                    Method::Refer => self.handle_request_refer(request),
                    Method::Notify | Method::Options => self.respond(&request, 200),
                    _ => {
                        let mut response = self.response_to(&request, 501);
                        response.headers.push(HeaderName::Allow, self.config.allow.clone());
                        self.transmits.push_back(Transmit::Response { response, retransmission: false });
                    }
                }
            }
        }
    }

    fn handle_request_ack(&mut self, now: Instant, ack: &Request) {
        let Some(unacked) = &self.unacked else { return };
        if ack.cseq().is_none_or(|c| c.seq != unacked.seq) {
            return;
        }
        self.unacked = None;
        self.timers.stop(Timer::Retransmit2xx);
        self.timers.stop(Timer::NoAck);
        if self.state == State::Accepted {
            self.state = State::Confirmed;
            self.events.push_back(Event::Confirmed { sdp: ack.body.clone() });
        }
        if self.bye_pending {
            self.send_bye(now);
            return self.terminate(EndReason::Local);
        }
        self.send_queued_offer(now);
    }

    fn handle_request_cancel(&mut self) {
        if self.role == Role::Uas && self.state == State::Proceeding {
            let response = self.response_to(&self.invite, 487);
            self.transmits.push_back(Transmit::Response { response, retransmission: false });
            self.terminate(EndReason::Cancelled);
        }
    }

    fn handle_request_bye(&mut self, bye: &Request) {
        self.respond(bye, 200);
        if self.role == Role::Uas && self.state == State::Proceeding {
            let response = self.response_to(&self.invite, 487);
            self.transmits.push_back(Transmit::Response { response, retransmission: false });
        }
        self.terminate(EndReason::Bye);
    }

    /// A re-INVITE or UPDATE: glare and pending-transaction checks (RFC 3261 §14.2, RFC 3311
    /// §5.2), the session timer, then the offer goes up.
    fn handle_request_offer(&mut self, now: Instant, request: Request) {
        let is_invite = request.method == Method::Invite;
        let established = self.state == State::Confirmed;
        if is_invite && !established {
            return self.respond_retry_after(&request, 500);
        }
        let offering = is_invite || !request.body.is_empty();
        if offering && self.outgoing.as_ref().is_some_and(|o| !o.offer.refresh || o.offer.method == Method::Invite) {
            // Glare: both sides offered at once.
            return self.respond(&request, 491);
        }
        if offering && (self.incoming_offer.is_some() || self.unacked.is_some()) {
            return self.respond_retry_after(&request, 500);
        }
        let timer = match self.timer_for_request(&request, self.session_timer) {
            Ok(timer) => timer,
            Err(response) => {
                self.transmits.push_back(Transmit::Response { response, retransmission: false });
                return;
            }
        };
        self.session_timer = timer;
        self.peer_timer = has_option(&request, &HeaderName::Supported, "timer");
        if !offering {
            // An UPDATE without SDP: a refresh of the session or the target.
            let mut response = self.response_to(&request, 200);
            self.add_session_expires(&mut response);
            self.transmits.push_back(Transmit::Response { response, retransmission: false });
            self.start_session_timer(now);
            return;
        }
        self.events.push_back(Event::Offer { method: request.method.clone(), sdp: request.body.clone() });
        self.incoming_offer = Some(request);
    }

    fn handle_request_prack(&mut self, now: Instant, prack: &Request) {
        let rack = prack.headers.get(&HeaderName::RAck).and_then(parse_rack);
        let invite_seq = self.invite.cseq().map(|c| c.seq);
        let Some((rseq, seq, method)) = rack else { return self.respond(prack, 481) };
        if Some(seq) != invite_seq || method != Method::Invite {
            return self.respond(prack, 481);
        }
        if self.unpracked.as_ref().is_some_and(|u| u.rseq == rseq) {
            self.unpracked = None;
            self.pracked_rseq = Some(rseq);
            self.timers.stop(Timer::Retransmit1xx);
            self.timers.stop(Timer::NoPrack);
            self.respond(prack, 200);
            if let Some(next) = self.queued_1xx.pop_front() {
                self.send_reliable(now, next);
            }
        } else if self.pracked_rseq.is_some_and(|r| r == rseq) {
            self.respond(prack, 200);
        } else {
            self.respond(prack, 481);
        }
    }

    fn handle_request_info(&mut self, info: &Request) {
        self.respond(info, 200);
        let event = match info_digit(info) {
            Some((digit, duration_ms)) => Event::Dtmf { digit, duration_ms },
            None => Event::Info {
                content_type: info.headers.get(&HeaderName::ContentType).unwrap_or("").to_owned(),
                body: info.body.clone(),
            },
        };
        self.events.push_back(event);
    }

    fn handle_request_refer(&mut self, refer: Request) {
        if self.state != State::Confirmed || self.refer.is_some() {
            // As chan_sip: a transfer of a call not answered is declined.
            return self.respond(&refer, 603);
        }
        match refer_target(&refer) {
            Some(target) => {
                self.events.push_back(Event::Refer { target });
                self.refer = Some(refer);
            }
            None => self.respond(&refer, 400),
        }
    }

    /// A response to a request this session sent (a retransmitted 2xx too).
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let Some(cseq) = response.cseq() else { return };
        let invite_seq = self.invite.cseq().map(|c| c.seq);
        if cseq.method == Method::Invite && Some(cseq.seq) == invite_seq && self.role == Role::Uac {
            return self.handle_response_invite(now, response);
        }
        if self.state == State::Terminated {
            return;
        }
        if let Some((seq, ack)) = self.reinvite_ack.as_ref().filter(|_| (200..300).contains(&response.status)) {
            if cseq.method == Method::Invite && cseq.seq == *seq {
                // Our re-INVITE's 2xx again: its ACK was lost.
                let ack = ack.clone();
                self.transmits.push_back(Transmit::Ack { target: target_of(&ack), request: ack });
                return;
            }
        }
        if self.outgoing.as_ref().is_some_and(|o| o.seq == cseq.seq && o.offer.method == cseq.method) {
            self.handle_response_offer(now, response, cseq);
        }
    }

    /// The response to our INVITE.
    fn handle_response_invite(&mut self, now: Instant, response: Response) {
        let status = response.status;
        match (self.state, status) {
            (_, 100) => {}
            (State::Calling | State::Proceeding | State::Cancelling, 101..=199) => {
                self.take_dialog_early(&response);
                if self.state == State::Calling {
                    self.state = State::Proceeding;
                }
                if is_reliable(&response) && !self.prack(now, &response) {
                    return; // a retransmission, or out of order: not processed (RFC 3262 §4)
                }
                if self.state == State::Cancelling {
                    return;
                }
                self.events.push_back(if matches!(status, 180 | 181) { Event::Ringing } else { Event::Progress });
                if !response.body.is_empty() {
                    self.events.push_back(Event::EarlyMedia { sdp: response.body.clone() });
                }
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                let Some(mut dialog) = Dialog::uac(&self.invite, &response) else { return };
                if let Some(early) = self.dialog.as_ref().filter(|d| d.id == dialog.id) {
                    dialog.local_seq = dialog.local_seq.max(early.local_seq);
                }
                self.peer_update = allows(&response, "UPDATE");
                self.peer_timer = has_option(&response, &HeaderName::Supported, "timer")
                    || has_option(&response, &HeaderName::Require, "timer");
                self.dialog = Some(dialog);
                self.send_ack(&response);
                self.state = State::Confirmed;
                self.take_session_timer_from_2xx(&response);
                self.start_session_timer(now);
                self.events.push_back(Event::Answered { sdp: response.body.clone() });
                self.send_queued_offer(now);
            }
            (State::Cancelling, 200..=299) => {
                // The answer crossed our CANCEL: ACK it and end the call we no longer want.
                if let Some(dialog) = Dialog::uac(&self.invite, &response) {
                    self.dialog = Some(dialog);
                    self.send_ack(&response);
                    self.send_bye(now);
                }
                self.terminate(EndReason::Local);
            }
            (State::Confirmed | State::Terminated, 200..=299) => {
                let same = Dialog::id_of_response(&response)
                    .is_some_and(|id| self.dialog.as_ref().is_some_and(|d| d.id == id));
                match (&self.ack, same) {
                    (Some(ack), true) => {
                        let target = target_of(ack);
                        self.transmits.push_back(Transmit::Ack { request: ack.clone(), target });
                    }
                    _ => {
                        // Another fork answered too (RFC 3261 §13.2.2.4): ACK it and end it.
                        if let Some(mut other) = Dialog::uac(&self.invite, &response) {
                            let seq = other.local_seq;
                            let ack = other.ack(seq, &self.new_via());
                            self.transmits.push_back(Transmit::Ack { target: target_of(&ack), request: ack });
                            let bye = other.request(Method::Bye, &self.new_via());
                            self.send_request(bye);
                        }
                    }
                }
            }
            (State::Calling | State::Proceeding, 401 | 407) => {
                let answered = self.answer_challenge(now, &response);
                if !answered {
                    self.terminate(EndReason::Refused { status });
                }
            }
            (State::Calling | State::Proceeding, 422) if !self.retried_422 => {
                // RFC 4028 §7.4: again, with an interval at least the 422's Min-SE.
                self.retried_422 = true;
                let min_se = response.headers.get(&HeaderName::MinSe).and_then(parse_delta).unwrap_or(0);
                let min_se = min_se.max(self.config.min_se);
                let expires = self.config.session_expires.max(min_se);
                let mut invite = self.next_invite();
                invite
                    .headers
                    .set(HeaderName::SessionExpires, format!("{expires};refresher={}", self.config.refresher.as_str()));
                invite.headers.set(HeaderName::MinSe, min_se.to_string());
                self.dialog = None;
                self.prack_rseq = None;
                self.state = State::Calling;
                self.send_invite(now, invite);
            }
            (State::Calling | State::Proceeding, 300..) => self.terminate(EndReason::Refused { status }),
            (State::Cancelling, 300..) => self.terminate(EndReason::Local),
            _ => {}
        }
    }

    /// The final response to our re-INVITE or UPDATE.
    fn handle_response_offer(&mut self, now: Instant, response: Response, cseq: CSeq) {
        let status = response.status;
        if status < 200 {
            return;
        }
        let Some(outgoing) = self.outgoing.take() else { return };
        match status {
            200..=299 => {
                if let Some(dialog) = self.dialog.as_mut() {
                    let _ = dialog.handle_response(&response);
                }
                if cseq.method == Method::Invite {
                    self.send_ack(&response);
                }
                if self.session_timer.is_some() {
                    self.take_session_timer_from_2xx(&response);
                    self.start_session_timer(now);
                }
                if !outgoing.offer.refresh {
                    self.events.push_back(Event::OfferAnswered { sdp: response.body.clone() });
                }
            }
            491 => {
                // Glare (RFC 3261 §14.1): the owner of the Call-ID waits 2.1–4 s, the other 0–2 s.
                let ms = if self.role == Role::Uac { 2100 + self.random() % 1900 } else { self.random() % 2000 };
                if self.queued.is_none() {
                    self.queued = Some(outgoing.offer);
                }
                self.offer_at = Some(now + Duration::from_millis(ms));
                self.timers.set(Timer::Offer, now + Duration::from_millis(ms));
                return;
            }
            408 | 481 => {
                if status == 408 {
                    self.send_bye(now);
                }
                return self.terminate(EndReason::DialogGone { status });
            }
            _ => {
                if !outgoing.offer.refresh {
                    self.events.push_back(Event::OfferRejected { status });
                }
            }
        }
        self.send_queued_offer(now);
    }

    /// A request this session sent ended without a final response (Timer B or F), or could not
    /// be sent: handled as a 408 from the far end.
    pub fn handle_transaction_timeout(&mut self, now: Instant, cseq: &CSeq) {
        let invite_seq = self.invite.cseq().map(|c| c.seq);
        if self.role == Role::Uac && cseq.method == Method::Invite && Some(cseq.seq) == invite_seq {
            match self.state {
                State::Calling | State::Proceeding => self.terminate(EndReason::Timeout),
                State::Cancelling => self.terminate(EndReason::Local),
                _ => {}
            }
            return;
        }
        if self.outgoing.as_ref().is_some_and(|o| o.seq == cseq.seq) {
            let mut timeout = Response::new(408, "Request Timeout");
            timeout.headers.push(HeaderName::CSeq, cseq.to_string());
            self.handle_response_offer(now, timeout, cseq.clone());
        }
    }

    // ---- commands ------------------------------------------------------------------------

    /// UAS: `180 Ringing` (reliable when the INVITE asked for it).
    pub fn ring(&mut self, now: Instant) {
        self.provisional(now, 180, Vec::new());
    }

    /// UAS: `183 Session Progress`, with our SDP for early media if `sdp` is not empty.
    pub fn progress(&mut self, now: Instant, sdp: Vec<u8>) {
        self.provisional(now, 183, sdp);
    }

    fn provisional(&mut self, now: Instant, status: u16, sdp: Vec<u8>) {
        if self.role != Role::Uas || self.state != State::Proceeding {
            return;
        }
        let mut response = self.response_to(&self.invite, status);
        self.with_body(&mut response, sdp);
        if !self.reliable {
            return self.transmits.push_back(Transmit::Response { response, retransmission: false });
        }
        // One unacknowledged reliable provisional at a time (RFC 3262 §3).
        if self.unpracked.is_some() {
            self.queued_1xx.push_back(response);
        } else {
            self.send_reliable(now, response);
        }
    }

    fn send_reliable(&mut self, now: Instant, mut response: Response) {
        self.rseq = self.rseq.wrapping_add(1).max(1);
        response.headers.push(HeaderName::Require, "100rel");
        response.headers.push(HeaderName::RSeq, self.rseq.to_string());
        self.unpracked = Some(Unpracked { rseq: self.rseq, response: response.clone(), interval: self.config.t1 });
        self.timers.set(Timer::Retransmit1xx, now + self.config.t1);
        self.timers.set(Timer::NoPrack, now + 64 * self.config.t1);
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
    }

    /// UAS: answers the INVITE 200 with our `sdp`; the 2xx is retransmitted until the ACK.
    pub fn answer(&mut self, now: Instant, sdp: Vec<u8>) {
        if self.role != Role::Uas || self.state != State::Proceeding {
            return;
        }
        self.unpracked = None;
        self.queued_1xx.clear();
        self.timers.stop(Timer::Retransmit1xx);
        self.timers.stop(Timer::NoPrack);
        let mut ok = self.response_to(&self.invite, 200);
        ok.headers.push(HeaderName::Allow, self.config.allow.clone());
        ok.headers.push(HeaderName::Supported, self.supported());
        self.add_session_expires(&mut ok);
        self.with_body(&mut ok, sdp);
        if let Some(dialog) = self.dialog.as_mut() {
            dialog.state = DialogState::Confirmed;
        }
        self.state = State::Accepted;
        let seq = self.invite.cseq().map_or(0, |c| c.seq);
        self.send_2xx(now, seq, ok);
        self.start_session_timer(now);
    }

    /// UAS: refuses the INVITE with `status` (300–699).
    pub fn reject(&mut self, _now: Instant, status: u16) {
        if self.role != Role::Uas || self.state != State::Proceeding || !(300..700).contains(&status) {
            return;
        }
        let response = self.response_to(&self.invite, status);
        self.refuse_invite(response, EndReason::Local);
    }

    /// Ends the call as the state wants: UAC before the answer, CANCEL (the call ends at the
    /// INVITE's final response, or 64·T1 later); UAS before the answer, `603 Decline` (use
    /// [`InviteSession::reject`] for another status); after the answer, BYE — once the ACK of
    /// our 2xx has come.
    pub fn hangup(&mut self, now: Instant) {
        match (self.role, self.state) {
            (Role::Uac, State::Calling | State::Proceeding) => {
                let cancel = cancel_for(&self.invite);
                let target = target_of(&cancel);
                self.transmits.push_back(Transmit::Request { request: cancel, target });
                self.state = State::Cancelling;
                self.timers.set(Timer::Cancel, now + 64 * self.config.t1);
            }
            (Role::Uas, State::Proceeding) => self.reject(now, 603),
            (_, State::Accepted) => self.bye_pending = true,
            (_, State::Confirmed) if self.unacked.is_some() => self.bye_pending = true,
            (_, State::Confirmed) => {
                self.send_bye(now);
                self.terminate(EndReason::Local);
            }
            _ => {}
        }
    }

    /// Offers `sdp` to the far end by re-INVITE (`Method::Invite`) or UPDATE: now if nothing
    /// is in flight, else once the offer before is answered (a newer offer replaces one still
    /// queued). The answer comes as [`Event::OfferAnswered`] or [`Event::OfferRejected`].
    pub fn offer(&mut self, now: Instant, method: Method, sdp: Vec<u8>) {
        if !matches!(self.state, State::Confirmed | State::Accepted) {
            return;
        }
        self.queued = Some(Queued { method, sdp, refresh: false });
        self.send_queued_offer(now);
    }

    /// Answers the far end's offer ([`Event::Offer`]) with our `sdp`: a 2xx (retransmitted
    /// until the ACK for a re-INVITE).
    pub fn accept_offer(&mut self, now: Instant, sdp: Vec<u8>) {
        let Some(request) = self.incoming_offer.take() else { return };
        let mut ok = self.response_to(&request, 200);
        self.add_session_expires(&mut ok);
        self.with_body(&mut ok, sdp);
        if request.method == Method::Invite {
            let seq = request.cseq().map_or(0, |c| c.seq);
            self.send_2xx(now, seq, ok);
        } else {
            self.transmits.push_back(Transmit::Response { response: ok, retransmission: false });
        }
        self.start_session_timer(now);
    }

    /// Refuses the far end's offer (`488 Not Acceptable Here`, usually); the call goes on.
    pub fn reject_offer(&mut self, now: Instant, status: u16) {
        let Some(request) = self.incoming_offer.take() else { return };
        self.respond(&request, status);
        self.send_queued_offer(now);
    }

    /// Sends an INFO with `body` (e.g. [`dtmf_info_body`] as `application/dtmf-relay`).
    pub fn info(&mut self, _now: Instant, content_type: &str, body: Vec<u8>) {
        if self.state != State::Confirmed {
            return;
        }
        let Some(mut info) = self.in_dialog_request(Method::Info) else { return };
        info.headers.push(HeaderName::ContentType, content_type);
        info.body = body;
        self.send_request(info);
    }

    /// Accepts the REFER of [`Event::Refer`] (`202 Accepted`); tell its outcome with
    /// [`InviteSession::notify_refer`].
    pub fn accept_refer(&mut self, _now: Instant) {
        if let Some(refer) = self.refer.take() {
            self.respond(&refer, 202);
        }
    }

    /// Refuses the REFER of [`Event::Refer`] (603 for a call it cannot name, say).
    pub fn reject_refer(&mut self, _now: Instant, status: u16) {
        if let Some(refer) = self.refer.take() {
            self.respond(&refer, status);
        }
    }

    /// The NOTIFY that ends a REFER's implicit subscription with `sipfrag` (`SIP/2.0 200 OK`).
    pub fn notify_refer(&mut self, _now: Instant, sipfrag: &str) {
        if self.state != State::Confirmed {
            return;
        }
        let Some(mut notify) = self.in_dialog_request(Method::Notify) else { return };
        notify.headers.push(HeaderName::Event, "refer");
        notify.headers.push(HeaderName::SubscriptionState, "terminated;reason=noresource");
        notify.headers.push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        notify.body = format!("{sipfrag}\r\n").into_bytes();
        self.send_request(notify);
    }

    // ---- helpers -------------------------------------------------------------------------

    fn random(&mut self) -> u64 {
        if let Some(entropy) = self.config.entropy {
            return entropy();
        }
        // xorshift64*: enough for branches and waits; seeded for repeatable tests.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn new_via(&mut self) -> Via {
        let mut via = self.config.via.clone();
        let branch = Endpoint::new_branch(&format!("{:016x}{:016x}", self.random(), self.random()));
        via.set_param("branch", Some(branch));
        via
    }

    fn supported(&self) -> String {
        let mut tags: Vec<&str> = self.config.supported.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if self.config.rel100 != Rel100::Off {
            tags.push("100rel");
        }
        if self.config.session_timers != SessionTimerMode::Refuse {
            tags.push("timer");
        }
        tags.join(", ")
    }

    fn terminate(&mut self, reason: EndReason) {
        if self.state == State::Terminated {
            return;
        }
        self.state = State::Terminated;
        self.timers = TimerTable::default();
        self.unacked = None;
        self.unpracked = None;
        self.events.push_back(Event::Terminated { reason });
    }

    fn refuse_invite(&mut self, response: Response, reason: EndReason) {
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
        self.terminate(reason);
    }

    /// A response to a request of the dialog: our tag, Server, and Contact on 1xx/2xx.
    fn response_to(&self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        response.set_to_tag(&self.local_tag);
        if !self.config.user_agent.is_empty() {
            response.headers.push(HeaderName::Server, self.config.user_agent.clone());
        }
        if (101..300).contains(&status) && matches!(request.method, Method::Invite | Method::Update) {
            response.headers.push(HeaderName::Contact, self.config.contact.clone());
        }
        response
    }

    fn respond(&mut self, request: &Request, status: u16) {
        let response = self.response_to(request, status);
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
    }

    /// RFC 3261 §14.2: a 500 with a Retry-After of 0–10 s.
    fn respond_retry_after(&mut self, request: &Request, status: u16) {
        let mut response = self.response_to(request, status);
        response.headers.push(HeaderName::RetryAfter, (self.random() % 11).to_string());
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
    }

    fn with_body(&mut self, message: &mut Response, sdp: Vec<u8>) {
        if !sdp.is_empty() {
            message.headers.push(HeaderName::ContentType, "application/sdp");
            self.local_sdp = sdp.clone();
            message.body = sdp;
        }
    }

    fn send_2xx(&mut self, now: Instant, seq: u32, response: Response) {
        let t1 = self.config.t1;
        self.unacked = Some(Unacked { seq, response: response.clone(), interval: t1 });
        if self.config.retransmit_2xx {
            self.timers.set(Timer::Retransmit2xx, now + t1);
        }
        self.timers.set(Timer::NoAck, now + 64 * t1);
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
    }

    fn send_request(&mut self, request: Request) {
        let target = target_of(&request);
        self.transmits.push_back(Transmit::Request { request, target });
    }

    /// A request in the dialog with the next CSeq, User-Agent, and our Contact for target
    /// refreshers.
    fn in_dialog_request(&mut self, method: Method) -> Option<Request> {
        let via = self.new_via();
        let dialog = self.dialog.as_mut()?;
        let mut request = dialog.request(method.clone(), &via);
        if matches!(method, Method::Invite | Method::Update) {
            request.headers.push(HeaderName::Contact, self.config.contact.clone());
        }
        if !self.config.user_agent.is_empty() {
            request.headers.push(HeaderName::UserAgent, self.config.user_agent.clone());
        }
        Some(request)
    }

    fn send_bye(&mut self, _now: Instant) {
        if let Some(bye) = self.in_dialog_request(Method::Bye) {
            self.send_request(bye);
        }
    }

    fn send_ack(&mut self, response: &Response) {
        let via = self.new_via();
        let Some(dialog) = self.dialog.as_ref() else { return };
        let seq = response.cseq().map_or(dialog.local_seq, |c| c.seq);
        let ack = dialog.ack(seq, &via);
        if seq == self.invite.cseq().map_or(0, |c| c.seq) {
            self.ack = Some(ack.clone());
        } else {
            self.reinvite_ack = Some((seq, ack.clone()));
        }
        self.transmits.push_back(Transmit::Ack { target: target_of(&ack), request: ack });
    }

    fn send_invite(&mut self, _now: Instant, invite: Request) {
        self.invite = invite.clone();
        self.send_request(invite);
    }

    /// Our INVITE again with the next CSeq and a new branch (after a 401/407 or 422).
    fn next_invite(&mut self) -> Request {
        let mut invite = self.invite.clone();
        let seq = invite.cseq().map_or(1, |c| c.seq + 1);
        invite.headers.set(HeaderName::CSeq, CSeq { seq, method: Method::Invite }.to_string());
        let via = self.new_via();
        invite.headers.set(HeaderName::Via, via.to_string());
        invite
    }

    /// Answers a 401/407 to our INVITE: once, or again when the nonce was stale (as chan_sip).
    fn answer_challenge(&mut self, now: Instant, response: &Response) -> bool {
        let (challenge_header, answer_header) = if response.status == 401 {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        } else {
            (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization)
        };
        let Some(challenge) = response.headers.get(&challenge_header).and_then(Challenge::parse) else {
            return false;
        };
        if self.auth_tries > 0 && !challenge.stale {
            return false;
        }
        let cnonce = format!("{:08x}", self.random() as u32);
        let uri = self.invite.uri.to_string();
        let Some(answer) =
            self.config.credentials.as_ref().and_then(|c| c.answer(&challenge, "INVITE", &uri, &cnonce, 1))
        else {
            return false;
        };
        self.auth_tries += 1;
        let mut invite = self.next_invite();
        invite.headers.set(answer_header, answer);
        self.dialog = None;
        self.prack_rseq = None;
        self.state = State::Calling;
        self.send_invite(now, invite);
        true
    }

    /// UAC: the early dialog of a provisional with a To tag (the first fork's).
    fn take_dialog_early(&mut self, response: &Response) {
        if self.dialog.is_none() {
            self.dialog = Dialog::uac(&self.invite, response);
        } else if let Some(dialog) = self.dialog.as_mut() {
            if Dialog::id_of_response(response).is_some_and(|id| id == dialog.id) {
                let _ = dialog.handle_response(response);
            }
        }
    }

    /// UAC: PRACKs a reliable provisional if it is the next one (RFC 3262 §4). Whether to
    /// process it.
    fn prack(&mut self, _now: Instant, response: &Response) -> bool {
        let Some(rseq) = response.headers.get(&HeaderName::RSeq).and_then(|v| v.trim().parse::<u32>().ok()) else {
            return true;
        };
        let same_dialog =
            Dialog::id_of_response(response).is_some_and(|id| self.dialog.as_ref().is_some_and(|d| d.id == id));
        if same_dialog {
            if self.prack_rseq.is_some_and(|last| rseq != last.wrapping_add(1)) {
                return false;
            }
            self.prack_rseq = Some(rseq);
        }
        let via = self.new_via();
        let mut fork;
        let dialog = if same_dialog {
            self.dialog.as_mut()
        } else {
            fork = Dialog::uac(&self.invite, response);
            fork.as_mut()
        };
        let Some(dialog) = dialog else { return false };
        let mut prack = dialog.request(Method::Prack, &via);
        let cseq = response.cseq().map_or(0, |c| c.seq);
        prack.headers.push(HeaderName::RAck, format!("{rseq} {cseq} INVITE"));
        self.send_request(prack);
        true
    }

    /// Sends the queued offer if its time has come and nothing is in flight (RFC 3261 §14.1:
    /// not while an INVITE transaction of either side is in progress).
    fn send_queued_offer(&mut self, now: Instant) {
        if self.state != State::Confirmed
            || self.outgoing.is_some()
            || self.unacked.is_some()
            || self.incoming_offer.is_some()
            || self.queued.is_none()
            || self.offer_at.is_some_and(|at| at > now)
        {
            return;
        }
        self.offer_at = None;
        self.timers.stop(Timer::Offer);
        let Some(queued) = self.queued.take() else { return };
        let Some(mut request) = self.in_dialog_request(queued.method.clone()) else { return };
        if self.session_timer.is_some() || queued.refresh {
            if let Some(timer) = self.session_timer {
                // The refresher is named from this request's point of view (we are its UAC).
                let refresher = if timer.we_refresh { "uac" } else { "uas" };
                request.headers.push(HeaderName::SessionExpires, format!("{};refresher={refresher}", timer.interval));
                request.headers.push(HeaderName::MinSe, self.config.min_se.to_string());
            }
            request.headers.push(HeaderName::Supported, self.supported());
        }
        if !queued.sdp.is_empty() {
            request.headers.push(HeaderName::ContentType, "application/sdp");
            request.body = queued.sdp.clone();
            self.local_sdp = queued.sdp.clone();
        }
        let seq = request.cseq().map_or(0, |c| c.seq);
        self.outgoing = Some(Outgoing { seq, offer: queued });
        self.send_request(request);
    }

    /// RFC 4028 §9 for a request from the far end (their INVITE, or a refresh): the timer that
    /// runs after it, or the 422 (or 420) that refuses it.
    fn timer_for_request(
        &self,
        request: &Request,
        current: Option<SessionTimer>,
    ) -> Result<Option<SessionTimer>, Response> {
        let mode = self.config.session_timers;
        if mode == SessionTimerMode::Refuse {
            return Ok(None);
        }
        let asked = request.headers.get(&HeaderName::SessionExpires).and_then(parse_session_expires);
        let supports = has_option(request, &HeaderName::Supported, "timer");
        let (interval, refresher) = match (asked, current) {
            (Some((interval, refresher)), _) => (interval, refresher),
            (None, Some(current)) => return Ok(Some(current)),
            (None, None) if mode == SessionTimerMode::Originate => (self.config.session_expires, None),
            (None, None) => return Ok(None),
        };
        if asked.is_some() && interval < self.config.min_se {
            let mut response = self.response_to(request, 422);
            response.headers.push(HeaderName::MinSe, self.config.min_se.to_string());
            return Err(response);
        }
        let interval =
            if asked.is_some() { interval.min(self.config.session_expires.max(self.config.min_se)) } else { interval };
        // `refresher=uac` names the sender of this request, the far end.
        let refresher = match refresher {
            Some(r) => r,
            None if !supports => Refresher::Uas,
            None => {
                current.map_or(self.config.refresher, |c| if c.we_refresh { Refresher::Uas } else { Refresher::Uac })
            }
        };
        Ok(Some(SessionTimer { interval, we_refresh: refresher == Refresher::Uas }))
    }

    /// Adds Session-Expires (and Require: timer when the far end supports it) to our 2xx.
    fn add_session_expires(&self, response: &mut Response) {
        if let Some(timer) = self.session_timer {
            let refresher = if timer.we_refresh { "uas" } else { "uac" };
            response.headers.push(HeaderName::SessionExpires, format!("{};refresher={refresher}", timer.interval));
            if self.peer_timer {
                response.headers.push(HeaderName::Require, "timer");
            }
        }
    }

    /// RFC 4028 §7.2 for the 2xx to our INVITE or refresh.
    fn take_session_timer_from_2xx(&mut self, response: &Response) {
        if self.config.session_timers == SessionTimerMode::Refuse {
            return;
        }
        match response.headers.get(&HeaderName::SessionExpires).and_then(parse_session_expires) {
            Some((interval, refresher)) => {
                // `refresher=uac` names us, the sender of the request.
                let we_refresh = refresher.is_none_or(|r| r == Refresher::Uac);
                self.session_timer = Some(SessionTimer { interval, we_refresh });
            }
            None if self.config.session_timers == SessionTimerMode::Originate && self.session_timer.is_none() => {
                // The far end does not do session timers: we refresh ourselves (§7.2).
                let interval = self
                    .invite
                    .headers
                    .get(&HeaderName::SessionExpires)
                    .and_then(parse_session_expires)
                    .map_or(self.config.session_expires, |(i, _)| i);
                self.session_timer = Some(SessionTimer { interval, we_refresh: true });
            }
            None => {}
        }
    }

    /// (Re)starts the session timer after a refresh: half the interval to our refresh, or
    /// interval − min(32 s, interval/3) to the BYE when the far end refreshes (RFC 4028 §10).
    fn start_session_timer(&mut self, now: Instant) {
        let Some(timer) = self.session_timer else { return };
        let interval = Duration::from_secs(timer.interval.into());
        if timer.we_refresh {
            self.timers.stop(Timer::Expire);
            self.timers.set(Timer::Refresh, now + interval / 2);
        } else {
            self.timers.stop(Timer::Refresh);
            let margin = Duration::from_secs(32).min(interval / 3);
            self.timers.set(Timer::Expire, now + interval - margin);
        }
    }
}

/// Where a request goes: its first Route's URI (loose routing), else its Request-URI.
fn target_of(request: &Request) -> Uri {
    request
        .headers
        .get(&HeaderName::Route)
        .and_then(|r| NameAddr::parse(r).ok())
        .map_or_else(|| request.uri.clone(), |r| r.uri)
}

/// Whether the option-tag list header `name` (Supported, Require) has `tag`.
pub fn has_option(message: &impl MessageHeaders, name: &HeaderName, tag: &str) -> bool {
    message.headers().get_all(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(tag))
}

fn allows(message: &impl MessageHeaders, method: &str) -> bool {
    has_option(message, &HeaderName::Allow, method)
}

fn is_reliable(response: &Response) -> bool {
    has_option(response, &HeaderName::Require, "100rel") && response.headers.get(&HeaderName::RSeq).is_some()
}

fn parse_delta(value: &str) -> Option<u32> {
    value.split(';').next()?.trim().parse().ok()
}

/// `Session-Expires: 1800;refresher=uas` → (1800, Some(Uas)).
pub fn parse_session_expires(value: &str) -> Option<(u32, Option<Refresher>)> {
    let interval = parse_delta(value)?;
    let refresher = value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match v.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    Some((interval, refresher))
}

/// `RAck: 776656 1 INVITE` → (RSeq, CSeq number, method).
pub fn parse_rack(value: &str) -> Option<(u32, u32, Method)> {
    let mut parts = value.split_ascii_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let method = Method::parse(parts.next()?)?;
    Some((rseq, seq, method))
}

/// The body of the INFO that sends a key (`dtmfmode=info`), as chan_sip's add_digit for
/// `application/dtmf-relay`: the key itself as the Signal, and the 250 ms Asterisk gives a key
/// press whose length it does not know.
pub fn dtmf_info_body(digit: char) -> Vec<u8> {
    format!("Signal={digit}\r\nDuration=250\r\n").into_bytes()
}

/// The key in an INFO: `application/dtmf-relay` (`Signal=5`, `Duration=160`) or
/// `application/dtmf` (just the key), as chan_sip reads them. Signal 10 is `*`, 11 `#`.
pub fn info_digit(request: &Request) -> Option<(char, u32)> {
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

/// What a REFER asks: its Refer-To's user (blind), or the dialog its `Replaces` names.
pub fn refer_target(request: &Request) -> Option<ReferTarget> {
    let refer_to = NameAddr::parse(request.headers.get(&HeaderName::ReferTo)?).ok()?;
    let replaces = refer_to.uri.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("replaces"));
    if let Some((_, value)) = replaces {
        let (call_id, to_tag, from_tag) = parse_replaces(&crate::uri::unescape(value))?;
        return Some(ReferTarget::Replaces { call_id, to_tag, from_tag });
    }
    refer_to.uri.user_unescaped().map(|u| u.into_owned()).filter(|u| !u.is_empty()).map(ReferTarget::Blind)
}

/// A Replaces value (the header, or Refer-To's unescaped): `call-id;to-tag=x;from-tag=y`.
pub fn parse_replaces(value: &str) -> Option<(String, String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        assert_eq!(parse_session_expires("1800;refresher=uas"), Some((1800, Some(Refresher::Uas))));
        assert_eq!(parse_session_expires(" 90 ; Refresher = UAC"), Some((90, Some(Refresher::Uac))));
        assert_eq!(parse_session_expires("90"), Some((90, None)));
        assert_eq!(parse_session_expires("x;refresher=uac"), None);
        assert_eq!(parse_rack("776656 1 INVITE"), Some((776656, 1, Method::Invite)));
        assert_eq!(parse_rack("1 INVITE"), None);
        assert_eq!(parse_replaces("abc@h;to-tag=1;from-tag=2"), Some(("abc@h".into(), "1".into(), "2".into())));
        assert_eq!(parse_replaces("abc;to-tag=1"), None);
        assert_eq!(parse_replaces(";to-tag=1;from-tag=2"), None);
        assert_eq!(dtmf_info_body('#'), b"Signal=#\r\nDuration=250\r\n");
    }
}
