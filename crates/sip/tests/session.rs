//! The call (`InviteSession`) on a fake clock: a UAC session and a UAS session joined by a
//! wire that can lose or hold any message, every timer driven by jumping the clock to the next
//! deadline. Every message crosses the wire as bytes and is parsed again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use starling_sip::digest::Credentials;
use starling_sip::session::{
    EndReason, Event, InviteSession, ReferTarget, Refresher, Rel100, SessionConfig, SessionTimer, SessionTimerMode,
    State, Transmit,
};
use starling_sip::{parse, CSeq, HeaderName, MessageHeaders, Method, Request, Response, SipMessage, Uri, Via};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Uac,
    Uas,
}

/// A message on the wire: who sent it, and what.
#[derive(Clone, Debug)]
struct Wire {
    from: Side,
    message: SipMessage,
}

impl Wire {
    /// `INVITE`, `ACK`, `200 INVITE`, `180 INVITE`, `PRACK`, `200 PRACK` ...
    fn describe(&self) -> String {
        match &self.message {
            SipMessage::Request(r) => r.method.to_string(),
            SipMessage::Response(r) => format!("{} {}", r.status, r.cseq().map_or(Method::Invite, |c| c.method)),
        }
    }
}

type Filter = Box<dyn FnMut(&Wire) -> bool>;

struct Pair {
    start: Instant,
    now: Instant,
    uac: InviteSession,
    uas: Option<InviteSession>,
    uas_config: SessionConfig,
    uac_events: Vec<Event>,
    uas_events: Vec<Event>,
    in_flight: VecDeque<Wire>,
    /// Everything sent, with the time (seconds since the start) and a description.
    log: Vec<(f64, Side, String)>,
    /// The same messages, whole.
    messages: Vec<(Side, SipMessage)>,
    /// Messages for which this returns true are lost.
    lose: Option<Filter>,
}

const SDP_OFFER: &[u8] =
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\n";
const SDP_ANSWER: &[u8] =
    b"v=0\r\no=- 2 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";

fn uac_config() -> SessionConfig {
    SessionConfig {
        via: Via::parse("SIP/2.0/UDP 127.0.0.1:5061;rport").unwrap(),
        contact: "<sip:alice@127.0.0.1:5061>".into(),
        user_agent: "uac".into(),
        seed: 7,
        ..SessionConfig::default()
    }
}

fn uas_config() -> SessionConfig {
    SessionConfig {
        via: Via::parse("SIP/2.0/UDP 127.0.0.1:5060;rport").unwrap(),
        contact: "<sip:600@127.0.0.1:5060>".into(),
        user_agent: "uas".into(),
        seed: 11,
        ..SessionConfig::default()
    }
}

fn invite() -> Request {
    let mut r = Request::new(Method::Invite, Uri::parse("sip:600@127.0.0.1:5060").unwrap());
    r.headers.push(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKinv1;rport");
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::From, "<sip:alice@127.0.0.1>;tag=uactag");
    r.headers.push(HeaderName::To, "<sip:600@127.0.0.1>");
    r.headers.push(HeaderName::CallId, "call-1@127.0.0.1");
    r.headers.push(HeaderName::CSeq, "102 INVITE");
    r.headers.push(HeaderName::Contact, "<sip:alice@127.0.0.1:5061>");
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = SDP_OFFER.to_vec();
    r
}

fn to_wire(from: Side, transmit: Transmit) -> Wire {
    let message = match transmit {
        Transmit::Request { request, .. } | Transmit::Ack { request, .. } => SipMessage::Request(request),
        Transmit::Response { response, .. } => SipMessage::Response(response),
    };
    // Through bytes and back: what goes out must parse.
    let message = parse(&message.to_bytes()).expect("the session's message parses");
    Wire { from, message }
}

impl Pair {
    fn new(uac: SessionConfig, uas: SessionConfig) -> Pair {
        Pair::with_invite(uac, uas, invite())
    }

    fn with_invite(uac_config: SessionConfig, uas_config: SessionConfig, invite: Request) -> Pair {
        let now = Instant::now();
        let mut pair = Pair {
            start: now,
            now,
            uac: InviteSession::uac(now, uac_config, invite),
            uas: None,
            uas_config,
            uac_events: Vec::new(),
            uas_events: Vec::new(),
            in_flight: VecDeque::new(),
            log: Vec::new(),
            messages: Vec::new(),
            lose: None,
        };
        pair.deliver();
        pair
    }

    fn uas(&mut self) -> &mut InviteSession {
        self.uas.as_mut().expect("the INVITE reached the UAS")
    }

    fn secs(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    /// Moves what both sessions have to send onto the wire, and their events into the lists.
    fn collect(&mut self) {
        let t = self.secs();
        while let Some(transmit) = self.uac.poll_transmit() {
            let wire = to_wire(Side::Uac, transmit);
            self.log.push((t, Side::Uac, wire.describe()));
            self.messages.push((Side::Uac, wire.message.clone()));
            self.in_flight.push_back(wire);
        }
        self.uac_events.extend(std::iter::from_fn(|| self.uac.poll_event()));
        if let Some(uas) = self.uas.as_mut() {
            while let Some(transmit) = uas.poll_transmit() {
                let wire = to_wire(Side::Uas, transmit);
                self.log.push((t, Side::Uas, wire.describe()));
                self.messages.push((Side::Uas, wire.message.clone()));
                self.in_flight.push_back(wire);
            }
            self.uas_events.extend(std::iter::from_fn(|| uas.poll_event()));
        }
    }

    /// Delivers everything in flight (and what it causes) until the wire is quiet.
    fn deliver(&mut self) {
        self.collect();
        while let Some(wire) = self.in_flight.pop_front() {
            if self.lose.as_mut().is_some_and(|lose| lose(&wire)) {
                continue;
            }
            self.receive(wire);
            self.collect();
        }
    }

    /// What was sent but not delivered: taken off the wire (held), for a test to deliver later.
    fn hold(&mut self) -> Vec<Wire> {
        self.collect();
        self.in_flight.drain(..).collect()
    }

    fn receive(&mut self, wire: Wire) {
        let now = self.now;
        match (wire.from, wire.message) {
            (Side::Uac, SipMessage::Request(request)) => {
                let initial = request.method == Method::Invite && request.to().is_some_and(|t| t.tag().is_none());
                if initial {
                    self.uas = Some(InviteSession::uas(now, self.uas_config.clone(), request, "uastag"));
                } else if let Some(uas) = self.uas.as_mut() {
                    uas.handle_request(now, request);
                }
            }
            (Side::Uac, SipMessage::Response(response)) => {
                if let Some(uas) = self.uas.as_mut() {
                    uas.handle_response(now, response);
                }
            }
            (Side::Uas, SipMessage::Request(request)) => self.uac.handle_request(now, request),
            (Side::Uas, SipMessage::Response(response)) => self.uac.handle_response(now, response),
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        [self.uac.poll_timeout(), self.uas.as_ref().and_then(|s| s.poll_timeout())].into_iter().flatten().min()
    }

    /// Jumps to the next deadline of either side and runs it. False when there is none.
    fn step(&mut self) -> bool {
        let Some(at) = self.next_timeout() else { return false };
        assert!(at >= self.now, "a deadline in the past");
        self.now = at;
        self.uac.handle_timeout(at);
        if let Some(uas) = self.uas.as_mut() {
            uas.handle_timeout(at);
        }
        self.deliver();
        true
    }

    /// Runs the timers until `secs` after the start.
    fn run_until(&mut self, secs: f64) {
        let end = self.start + Duration::from_secs_f64(secs);
        while self.next_timeout().is_some_and(|at| at <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Does `command` on the UAC at the current time, then delivers.
    fn uac_does(&mut self, command: impl FnOnce(&mut InviteSession, Instant)) {
        let now = self.now;
        command(&mut self.uac, now);
        self.deliver();
    }

    fn uas_does(&mut self, command: impl FnOnce(&mut InviteSession, Instant)) {
        let now = self.now;
        command(self.uas(), now);
        self.deliver();
    }

    /// The last message `side` sent described as `what`.
    fn last(&self, side: Side, what: &str) -> SipMessage {
        let found = self
            .messages
            .iter()
            .rev()
            .find(|(s, m)| *s == side && Wire { from: *s, message: m.clone() }.describe() == what);
        found.expect(what).1.clone()
    }

    /// The messages sent by `side` described as `what`, with their times.
    fn sent(&self, side: Side, what: &str) -> Vec<f64> {
        self.log.iter().filter(|(_, s, d)| *s == side && d == what).map(|(t, _, _)| *t).collect()
    }

    fn count(&self, side: Side, what: &str) -> usize {
        self.sent(side, what).len()
    }

    fn ended(events: &[Event]) -> Option<EndReason> {
        events.iter().find_map(|e| match e {
            Event::Terminated { reason } => Some(reason.clone()),
            _ => None,
        })
    }

    /// Answers: ring, then 200 with the answer; the ACK follows.
    fn answered() -> Pair {
        Pair::answered_with(uac_config(), uas_config())
    }

    fn answered_with(uac: SessionConfig, uas: SessionConfig) -> Pair {
        let mut pair = Pair::new(uac, uas);
        pair.uas_does(|s, now| s.ring(now));
        pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
        assert_eq!(pair.uac.state(), State::Confirmed);
        assert_eq!(pair.uas().state(), State::Confirmed);
        pair
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_call_rings_is_answered_and_ends_with_bye() {
    let mut pair = Pair::new(uac_config(), uas_config());
    assert_eq!(pair.uac.state(), State::Calling);
    assert_eq!(pair.uas().state(), State::Proceeding);
    let supported = pair.uas().invite().headers.get(&HeaderName::Supported).unwrap().to_owned();
    assert_eq!(supported, "replaces, 100rel, timer");
    pair.uas_does(|s, now| s.ring(now));
    assert_eq!(pair.uac.state(), State::Proceeding);
    assert_eq!(pair.uac_events, [Event::Ringing]);
    assert!(pair.uac.dialog().is_some(), "the 180's tag makes an early dialog");
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.uac_events[1], Event::Answered { sdp: SDP_ANSWER.to_vec() });
    assert_eq!(pair.uas_events, [Event::Confirmed { sdp: Vec::new() }]);
    assert_eq!(pair.count(Side::Uac, "ACK"), 1);
    assert_eq!(pair.uas().poll_timeout(), None, "the ACK stopped the 2xx's timers");
    // The ACK goes to the answer's Contact, with the INVITE's CSeq number.
    pair.uac_does(|s, now| s.hangup(now));
    assert_eq!(pair.count(Side::Uac, "BYE"), 1);
    assert_eq!(pair.count(Side::Uas, "200 BYE"), 1);
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Local));
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Bye));
    assert_eq!(pair.uac.state(), State::Terminated);
    assert_eq!(pair.uas().state(), State::Terminated);
    // A request after the end finds no dialog.
    let log = pair.log.len();
    pair.uac_does(|s, now| s.info(now, "text/plain", b"x".to_vec()));
    assert_eq!(pair.log.len(), log, "nothing is sent once terminated");
}

#[test]
fn requests_in_the_dialog_carry_rising_cseqs_and_the_uas_bye_works_too() {
    let mut pair = Pair::answered();
    pair.uac_does(|s, now| s.info(now, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n".to_vec()));
    pair.uac_does(|s, now| s.info(now, "application/dtmf", b"#".to_vec()));
    pair.uac_does(|s, now| s.info(now, "application/x-other", b"hello".to_vec()));
    assert_eq!(
        pair.uas_events[1..],
        [
            Event::Dtmf { digit: '5', duration_ms: 160 },
            Event::Dtmf { digit: '#', duration_ms: 100 },
            Event::Info { content_type: "application/x-other".into(), body: b"hello".to_vec() },
        ]
    );
    assert_eq!(pair.count(Side::Uas, "200 INFO"), 3);
    assert_eq!(pair.uac.dialog().unwrap().local_seq, 105);
    pair.uas_does(|s, now| s.hangup(now));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Bye));
    assert_eq!(pair.count(Side::Uac, "200 BYE"), 1);
}

#[test]
fn the_2xx_is_retransmitted_t1_doubling_to_t2_then_bye_at_64_t1_without_ack() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "ACK"));
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.uas().state(), State::Accepted);
    pair.run_until(40.0);
    let sent = pair.sent(Side::Uas, "200 INVITE");
    let expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5];
    assert_eq!(sent.len(), expected.len(), "{sent:?}");
    assert!(sent.iter().zip(expected).all(|(a, b)| close(*a, b)), "{sent:?}");
    assert_eq!(pair.sent(Side::Uas, "BYE"), [32.0]);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::NoAck));
    // Each retransmitted 2xx was ACKed again by the UAC (all lost).
    assert_eq!(pair.count(Side::Uac, "ACK"), expected.len());
}

#[test]
fn a_lost_ack_is_sent_again_for_the_retransmitted_2xx() {
    let mut pair = Pair::new(uac_config(), uas_config());
    let mut lost = 0;
    pair.lose = Some(Box::new(move |w: &Wire| {
        let lose = w.describe() == "ACK" && lost == 0;
        lost += usize::from(lose);
        lose
    }));
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.uas().state(), State::Accepted);
    pair.step();
    assert!(close(pair.secs(), 0.5));
    assert_eq!(pair.uas().state(), State::Confirmed);
    assert_eq!(pair.count(Side::Uac, "ACK"), 2);
    assert_eq!(pair.uac_events.iter().filter(|e| matches!(e, Event::Answered { .. })).count(), 1);
    assert_eq!(pair.uas().poll_timeout(), None);
}

#[test]
fn a_hangup_before_the_ack_waits_for_it() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "200 INVITE"));
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    pair.uas_does(|s, now| s.hangup(now));
    assert!(pair.uas().bye_pending());
    assert_eq!(pair.count(Side::Uas, "BYE"), 0, "no BYE before the ACK (RFC 3261 §15)");
    pair.lose = None;
    pair.step(); // the 2xx again at T1, answered, ACKed: then the BYE
    assert_eq!(pair.sent(Side::Uas, "BYE"), [0.5]);
    let ack_at = pair.sent(Side::Uac, "ACK");
    assert_eq!(ack_at, [0.5]);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Local));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Bye));
}

#[test]
fn a_hangup_before_an_ack_that_never_comes_sends_bye_at_64_t1() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "ACK"));
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    pair.uas_does(|s, now| s.hangup(now));
    pair.run_until(60.0);
    assert_eq!(pair.sent(Side::Uas, "BYE"), [32.0]);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::NoAck));
}

#[test]
fn cancel_before_the_answer_gets_487() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.uas_does(|s, now| s.ring(now));
    pair.uac_does(|s, now| s.hangup(now));
    assert_eq!(pair.count(Side::Uac, "CANCEL"), 1);
    // (The UAS's Endpoint answers the CANCEL 200 itself.)
    assert_eq!(pair.count(Side::Uas, "487 INVITE"), 1);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Cancelled));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Local));
    assert_eq!(pair.uac.poll_timeout(), None);
}

#[test]
fn a_cancel_without_final_response_gives_up_after_64_t1() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.uas_does(|s, now| s.ring(now));
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "CANCEL"));
    pair.uac_does(|s, now| s.hangup(now));
    assert_eq!(pair.uac.state(), State::Cancelling);
    pair.uas_does(|s, now| s.ring(now));
    assert_eq!(pair.uac_events, [Event::Ringing], "provisionals while cancelling go unreported");
    pair.run_until(31.9);
    assert_eq!(pair.uac.state(), State::Cancelling);
    pair.run_until(32.0);
    assert_eq!(pair.uac.state(), State::Terminated);
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Local));
}

#[test]
fn a_200_crossing_the_cancel_is_acked_then_ended_with_bye() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.uas_does(|s, now| s.ring(now));
    let now = pair.now;
    pair.uas().answer(now, SDP_ANSWER.to_vec());
    let ok = pair.hold(); // the 200 is on its way
    pair.uac_does(|s, now| s.hangup(now));
    let cancel = pair.hold();
    for wire in ok.into_iter().chain(cancel) {
        pair.in_flight.push_back(wire);
    }
    pair.deliver();
    let order: Vec<String> = pair.log.iter().skip(2).map(|(_, s, d)| format!("{s:?} {d}")).collect();
    assert_eq!(order, ["Uas 200 INVITE", "Uac CANCEL", "Uac ACK", "Uac BYE", "Uas 200 BYE"]);
    assert_eq!(pair.uas_events[0], Event::Confirmed { sdp: Vec::new() }, "the CANCEL after the 2xx changed nothing");
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Bye));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Local));
    assert!(!pair.uac_events.iter().any(|e| matches!(e, Event::Answered { .. })));
    // The 2xx again (its ACK lost, say): ACKed again, no second BYE.
    let mut ok = Response::to_request(pair.uac.invite(), 200);
    ok.set_to_tag("uastag");
    ok.headers.push(HeaderName::Contact, "<sip:600@127.0.0.1:5060>");
    pair.uac_does(|s, now| s.handle_response(now, ok));
    assert_eq!(pair.count(Side::Uac, "ACK"), 2);
    assert_eq!(pair.count(Side::Uac, "BYE"), 1);
}

#[test]
fn a_uas_hangup_before_the_answer_declines_and_reject_uses_its_status() {
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.uas_does(|s, now| s.hangup(now));
    assert_eq!(pair.count(Side::Uas, "603 INVITE"), 1);
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Refused { status: 603 }));
    let mut pair = Pair::new(uac_config(), uas_config());
    pair.uas_does(|s, now| s.reject(now, 486));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Refused { status: 486 }));
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Local));
}

#[test]
fn an_invite_timeout_ends_the_uac() {
    let mut pair = Pair::new(uac_config(), uas_config());
    let cseq = pair.uac.invite().cseq().unwrap();
    pair.uac_does(|s, now| s.handle_transaction_timeout(now, &cseq));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Timeout));
}

#[test]
fn re_invite_offer_is_answered_and_its_2xx_retransmitted_until_the_ack() {
    let mut pair = Pair::answered();
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "ACK"));
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"hold".to_vec()));
    assert_eq!(pair.uas_events[1], Event::Offer { method: Method::Invite, sdp: b"hold".to_vec() });
    pair.uas_does(|s, now| s.accept_offer(now, b"held".to_vec()));
    assert_eq!(pair.uac_events[2], Event::OfferAnswered { sdp: b"held".to_vec() });
    pair.step();
    assert_eq!(pair.sent(Side::Uas, "200 INVITE").last(), Some(&0.5), "re-sent until the ACK");
    pair.lose = None;
    pair.step();
    assert_eq!(pair.uas().poll_timeout(), None, "the ACK came");
    assert_eq!(pair.count(Side::Uac, "ACK"), 4, "the INVITE's, the re-INVITE's, one per retransmitted 2xx");
    assert_eq!(pair.uas().state(), State::Confirmed);
    // An offer by UPDATE gets its answer in the 200, with no ACK.
    pair.uas_does(|s, now| s.offer(now, Method::Update, b"unhold".to_vec()));
    assert_eq!(pair.uac_events.last(), Some(&Event::Offer { method: Method::Update, sdp: b"unhold".to_vec() }));
    pair.uac_does(|s, now| s.accept_offer(now, b"unheld".to_vec()));
    assert_eq!(pair.uas_events.last(), Some(&Event::OfferAnswered { sdp: b"unheld".to_vec() }));
    assert_eq!(pair.count(Side::Uas, "ACK"), 0);
}

#[test]
fn offers_asked_for_while_one_is_in_flight_leave_as_one_after_it() {
    let mut pair = Pair::answered();
    let now = pair.now;
    pair.uac.offer(now, Method::Invite, b"one".to_vec());
    let first = pair.hold();
    pair.uac.offer(now, Method::Invite, b"two".to_vec());
    pair.uac.offer(now, Method::Invite, b"three".to_vec());
    assert!(pair.hold().is_empty(), "nothing leaves while an offer is in flight");
    pair.in_flight.extend(first);
    pair.deliver();
    pair.uas_does(|s, now| s.accept_offer(now, b"a1".to_vec()));
    pair.uas_does(|s, now| s.accept_offer(now, b"a3".to_vec()));
    let offers: Vec<_> = pair
        .uas_events
        .iter()
        .filter_map(|e| match e {
            Event::Offer { sdp, .. } => Some(String::from_utf8_lossy(sdp).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(offers, ["one", "three"]);
}

#[test]
fn glare_gets_491_and_each_side_retries_after_its_own_wait() {
    let mut pair = Pair::answered();
    let now = pair.now;
    pair.uac.offer(now, Method::Invite, b"uac".to_vec());
    pair.uas().offer(now, Method::Invite, b"uas".to_vec());
    pair.deliver();
    assert_eq!(pair.count(Side::Uac, "491 INVITE"), 1);
    assert_eq!(pair.count(Side::Uas, "491 INVITE"), 1);
    assert_eq!(pair.uac.state(), State::Confirmed);
    // Both retry: the UAS (not the Call-ID's owner) within 0–2 s, the UAC within 2.1–4 s.
    let mut answered = 0;
    while answered < 2 && pair.step() {
        let now = pair.now;
        for side in [Side::Uac, Side::Uas] {
            let session = if side == Side::Uac { &mut pair.uac } else { pair.uas.as_mut().unwrap() };
            let events = if side == Side::Uac { &pair.uac_events } else { &pair.uas_events };
            if matches!(events.last(), Some(Event::Offer { .. })) {
                session.accept_offer(now, b"ok".to_vec());
                answered += 1;
            }
        }
        pair.deliver();
    }
    let uas_retry = pair.sent(Side::Uas, "INVITE");
    let uac_retry = pair.sent(Side::Uac, "INVITE");
    assert_eq!(uas_retry.len(), 2);
    assert_eq!(uac_retry.len(), 3, "the first INVITE, the glare, the retry");
    assert!((0.0..2.0).contains(&uas_retry[1]), "{uas_retry:?}");
    assert!((2.1..4.0).contains(&uac_retry[2]), "{uac_retry:?}");
    assert!(pair.uac_events.contains(&Event::OfferAnswered { sdp: b"ok".to_vec() }));
    assert!(pair.uas_events.contains(&Event::OfferAnswered { sdp: b"ok".to_vec() }));
}

#[test]
fn a_refused_re_invite_keeps_the_call_and_408_481_end_it() {
    let mut pair = Pair::answered();
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"x".to_vec()));
    pair.uas_does(|s, now| s.reject_offer(now, 488));
    assert_eq!(pair.uac_events.last(), Some(&Event::OfferRejected { status: 488 }));
    assert_eq!(pair.uac.state(), State::Confirmed);
    // The call goes on: the next offer leaves and is answered.
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"y".to_vec()));
    pair.uas_does(|s, now| s.accept_offer(now, b"z".to_vec()));
    assert_eq!(pair.uac_events.last(), Some(&Event::OfferAnswered { sdp: b"z".to_vec() }));

    // 481: the dialog is gone at the far end; no BYE.
    let mut pair = Pair::answered();
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"x".to_vec()));
    let seq = pair.uac.dialog().unwrap().local_seq;
    let mut gone = Response::new(481, "Call/Transaction Does Not Exist");
    gone.headers.push(HeaderName::CSeq, format!("{seq} INVITE"));
    pair.uac_does(|s, now| s.handle_response(now, gone));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::DialogGone { status: 481 }));
    assert_eq!(pair.count(Side::Uac, "BYE"), 0);

    // A timeout (Timer B): as 408, BYE and the end.
    let mut pair = Pair::answered();
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "INVITE"));
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"x".to_vec()));
    let seq = pair.uac.dialog().unwrap().local_seq;
    pair.uac_does(|s, now| s.handle_transaction_timeout(now, &CSeq { seq, method: Method::Invite }));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::DialogGone { status: 408 }));
    assert_eq!(pair.count(Side::Uac, "BYE"), 1);
}

#[test]
fn a_re_invite_before_the_ack_or_during_an_offer_gets_500_with_retry_after() {
    let mut pair = Pair::answered();
    pair.uac_does(|s, now| s.offer(now, Method::Invite, b"x".to_vec()));
    // The UAS has the offer and has not answered: a second one is refused.
    let mut second = Request::new(Method::Invite, Uri::parse("sip:600@127.0.0.1:5060").unwrap());
    let uas_invite = pair.uas().invite().clone();
    for name in [HeaderName::Via, HeaderName::From, HeaderName::CallId, HeaderName::Contact] {
        second.headers.push(name.clone(), uas_invite.headers.get(&name).unwrap());
    }
    second.headers.push(HeaderName::To, "<sip:600@127.0.0.1>;tag=uastag");
    second.headers.push(HeaderName::CSeq, "200 INVITE");
    second.body = b"y".to_vec();
    pair.in_flight.push_back(Wire { from: Side::Uac, message: SipMessage::Request(second) });
    pair.deliver();
    assert_eq!(pair.count(Side::Uas, "500 INVITE"), 1);
    assert_eq!(pair.uas().state(), State::Confirmed);
}

#[test]
fn refer_is_parsed_and_answered() {
    let mut pair = Pair::answered();
    let refer = |pair: &mut Pair, refer_to: &str, seq: u32| {
        let mut refer = Request::new(Method::Refer, Uri::parse("sip:600@127.0.0.1:5060").unwrap());
        let invite = pair.uas().invite().clone();
        for name in [HeaderName::Via, HeaderName::From, HeaderName::CallId] {
            refer.headers.push(name.clone(), invite.headers.get(&name).unwrap());
        }
        refer.headers.push(HeaderName::To, "<sip:600@127.0.0.1>;tag=uastag");
        refer.headers.push(HeaderName::CSeq, format!("{seq} REFER"));
        refer.headers.push(HeaderName::ReferTo, refer_to);
        pair.in_flight.push_back(Wire { from: Side::Uac, message: SipMessage::Request(refer) });
        pair.deliver();
    };
    refer(&mut pair, "<sip:700@127.0.0.1>", 300);
    assert_eq!(pair.uas_events.last(), Some(&Event::Refer { target: ReferTarget::Blind("700".into()) }));
    pair.uas_does(|s, now| s.accept_refer(now));
    pair.uas_does(|s, now| s.notify_refer(now, "SIP/2.0 200 OK"));
    assert_eq!(pair.count(Side::Uas, "202 REFER"), 1);
    assert_eq!(pair.count(Side::Uas, "NOTIFY"), 1);
    assert_eq!(pair.count(Side::Uac, "200 NOTIFY"), 1);
    refer(&mut pair, "<sip:x@127.0.0.1?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 301);
    assert_eq!(
        pair.uas_events.last(),
        Some(&Event::Refer {
            target: ReferTarget::Replaces { call_id: "abc".into(), to_tag: "1".into(), from_tag: "2".into() }
        })
    );
    pair.uas_does(|s, now| s.reject_refer(now, 603));
    assert_eq!(pair.count(Side::Uas, "603 REFER"), 1);
    refer(&mut pair, "<sip:127.0.0.1>", 302);
    assert_eq!(pair.count(Side::Uas, "400 REFER"), 1);
    // An old CSeq is a 500 (RFC 3261 §12.2.2).
    refer(&mut pair, "<sip:700@127.0.0.1>", 10);
    assert_eq!(pair.count(Side::Uas, "500 REFER"), 1);
}

#[test]
fn a_refer_before_the_answer_is_declined() {
    let mut pair = Pair::new(uac_config(), uas_config());
    let mut refer = Request::new(Method::Refer, Uri::parse("sip:600@127.0.0.1:5060").unwrap());
    let invite = pair.uas().invite().clone();
    for name in [HeaderName::Via, HeaderName::From, HeaderName::CallId] {
        refer.headers.push(name.clone(), invite.headers.get(&name).unwrap());
    }
    refer.headers.push(HeaderName::To, "<sip:600@127.0.0.1>;tag=uastag");
    refer.headers.push(HeaderName::CSeq, "103 REFER");
    refer.headers.push(HeaderName::ReferTo, "<sip:700@127.0.0.1>");
    let now = pair.now;
    pair.uas().handle_request(now, refer);
    pair.deliver();
    assert_eq!(pair.count(Side::Uas, "603 REFER"), 1);
}

#[test]
fn a_second_fork_that_answers_is_acked_and_ended() {
    let mut pair = Pair::answered();
    let mut other = Response::to_request(pair.uac.invite(), 200);
    other.set_to_tag("fork2");
    other.headers.push(HeaderName::Contact, "<sip:600@127.0.0.9:5060>");
    let before = pair.log.len();
    pair.uac_does(|s, now| s.handle_response(now, other));
    let sent: Vec<String> = pair.log[before..].iter().map(|(_, s, d)| format!("{s:?} {d}")).collect();
    // (The UAS here is the first fork: it knows no such dialog.)
    assert_eq!(sent, ["Uac ACK", "Uac BYE", "Uas 481 BYE"]);
    assert_eq!(pair.uac.state(), State::Confirmed, "the first answer's call goes on");
    assert_eq!(pair.uac.dialog().unwrap().id.remote_tag, "uastag");
}

#[test]
fn the_invite_is_authenticated_once_and_a_second_challenge_refuses() {
    let config = SessionConfig {
        credentials: Some(Credentials { username: "alice".into(), password: Some("secret".into()), ha1: None }),
        ..uac_config()
    };
    let now = Instant::now();
    let mut uac = InviteSession::uac(now, config, invite());
    let Some(Transmit::Request { request: first, .. }) = uac.poll_transmit() else { panic!() };
    let challenge = |request: &Request, stale: bool| {
        let mut r = Response::to_request(request, 407);
        r.set_to_tag("t407");
        let stale = if stale { ", stale=true" } else { "" };
        r.headers.push(HeaderName::ProxyAuthenticate, format!("Digest realm=\"asterisk\", nonce=\"n1\"{stale}"));
        r
    };
    uac.handle_response(now, challenge(&first, false));
    let Some(Transmit::Request { request: second, .. }) = uac.poll_transmit() else { panic!() };
    assert_eq!(second.cseq().unwrap().seq, 103);
    assert!(second.headers.get(&HeaderName::ProxyAuthorization).unwrap().contains("username=\"alice\""));
    assert_ne!(second.top_via().unwrap().branch(), first.top_via().unwrap().branch());
    assert_eq!(uac.invite().cseq().unwrap().seq, 103);
    // Stale: answered again.
    uac.handle_response(now, challenge(&second, true));
    let Some(Transmit::Request { request: third, .. }) = uac.poll_transmit() else { panic!() };
    assert_eq!(third.cseq().unwrap().seq, 104);
    // Not stale again: refused.
    uac.handle_response(now, challenge(&third, false));
    assert!(uac.poll_transmit().is_none());
    assert_eq!(uac.poll_event(), Some(Event::Terminated { reason: EndReason::Refused { status: 407 } }));
}

// ---- RFC 4028 session timers -----------------------------------------------------------

fn originate(expires: u32, refresher: Refresher) -> SessionConfig {
    SessionConfig { session_timers: SessionTimerMode::Originate, session_expires: expires, refresher, ..uac_config() }
}

#[test]
fn session_timer_headers_on_the_invite_and_the_2xx() {
    let pair = Pair::answered_with(originate(1800, Refresher::Uas), uas_config());
    let mut pair = pair;
    let invite = pair.uas().invite().clone();
    assert_eq!(invite.headers.get(&HeaderName::SessionExpires), Some("1800;refresher=uas"));
    assert_eq!(invite.headers.get(&HeaderName::MinSe), Some("90"));
    assert_eq!(pair.uas().session_timer(), Some(SessionTimer { interval: 1800, we_refresh: true }));
    assert_eq!(pair.uac.session_timer(), Some(SessionTimer { interval: 1800, we_refresh: false }));
    // Refuse: no timer offered, none run.
    let refuse = SessionConfig { session_timers: SessionTimerMode::Refuse, ..uas_config() };
    let mut pair = Pair::answered_with(uac_config(), refuse);
    assert_eq!(pair.uas().session_timer(), None);
    assert_eq!(pair.uac.session_timer(), None);
}

#[test]
fn the_refresher_refreshes_at_half_the_interval_by_update_and_the_other_side_resets() {
    let mut pair = Pair::answered_with(originate(1800, Refresher::Uas), uas_config());
    pair.run_until(3000.0);
    // The UAC allows UPDATE (its Allow): refreshes by UPDATE every 900 s, answered 200.
    let updates = pair.sent(Side::Uas, "UPDATE");
    assert_eq!(updates, [900.0, 1800.0, 2700.0]);
    assert_eq!(pair.count(Side::Uac, "200 UPDATE"), 3);
    assert_eq!(pair.uac.state(), State::Confirmed, "refreshed in time, no expiry");
    assert!(pair.uac_events.iter().all(|e| !matches!(e, Event::Offer { .. })), "an UPDATE without SDP is no offer");
}

#[test]
fn without_refreshes_the_other_side_sends_bye_at_expiry() {
    // SIPp's `Session-Expires: 90;refresher=uas` that stops refreshing, as the test.
    let mut pair =
        Pair::answered_with(originate(90, Refresher::Uas), SessionConfig { session_expires: 90, ..uas_config() });
    pair.lose = Some(Box::new(|w: &Wire| w.from == Side::Uas && w.describe() == "UPDATE"));
    pair.run_until(200.0);
    // interval − min(32, interval/3) = 90 − 30 = 60 s.
    assert_eq!(pair.sent(Side::Uac, "BYE"), [60.0]);
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::SessionExpired));
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Bye));
    // At 1800 s the margin is 32 s.
    let mut pair = Pair::answered_with(originate(1800, Refresher::Uas), uas_config());
    pair.lose = Some(Box::new(|w: &Wire| w.from == Side::Uas && w.describe() == "UPDATE"));
    pair.run_until(4000.0);
    assert_eq!(pair.sent(Side::Uac, "BYE"), [1768.0]);
}

#[test]
fn the_uac_refreshes_by_re_invite_when_the_far_end_does_not_allow_update() {
    let uas = SessionConfig { allow: "INVITE, ACK, CANCEL, BYE".into(), ..uas_config() };
    let mut pair = Pair::answered_with(originate(120, Refresher::Uac), uas);
    assert_eq!(pair.uac.session_timer(), Some(SessionTimer { interval: 120, we_refresh: true }));
    pair.run_until(60.0);
    assert_eq!(pair.sent(Side::Uac, "INVITE"), [0.0, 60.0]);
    // The refresh re-INVITE offers the session again; the UAS answers it.
    assert_eq!(pair.uas_events.last(), Some(&Event::Offer { method: Method::Invite, sdp: SDP_OFFER.to_vec() }));
    pair.uas_does(|s, now| s.accept_offer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.count(Side::Uac, "ACK"), 2);
    assert!(!pair.uac_events.iter().any(|e| matches!(e, Event::OfferAnswered { .. })), "a refresh is no offer of ours");
    pair.run_until(119.0);
    assert_eq!(pair.uac.state(), State::Confirmed);
    assert_eq!(pair.uas().state(), State::Confirmed);
}

#[test]
fn a_refresh_answered_481_ends_the_call() {
    let uas = SessionConfig { allow: "INVITE, ACK, CANCEL, BYE".into(), ..uas_config() };
    let mut pair = Pair::answered_with(originate(120, Refresher::Uac), uas);
    pair.run_until(60.0);
    pair.uas_does(|s, now| s.reject_offer(now, 481));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::DialogGone { status: 481 }));
}

#[test]
fn an_interval_under_min_se_gets_422_and_the_uac_retries_with_its_min_se() {
    let uac = SessionConfig { min_se: 30, ..originate(60, Refresher::Uac) };
    let mut pair = Pair::new(uac, uas_config());
    assert_eq!(pair.count(Side::Uas, "422 INVITE"), 1);
    let invites = pair.log.iter().filter(|(_, s, d)| *s == Side::Uac && d == "INVITE").count();
    assert_eq!(invites, 2);
    let retry = pair.uas().invite().clone();
    assert_eq!(retry.headers.get(&HeaderName::SessionExpires), Some("90;refresher=uac"));
    assert_eq!(retry.headers.get(&HeaderName::MinSe), Some("90"));
    assert_eq!(retry.cseq().unwrap().seq, 103);
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.uac.session_timer(), Some(SessionTimer { interval: 90, we_refresh: true }));
    assert!(!pair.uac_events.iter().any(|e| matches!(e, Event::Terminated { .. })));
}

#[test]
fn the_uas_in_originate_mode_runs_timers_for_a_caller_that_did_not_ask() {
    let uas = SessionConfig { session_timers: SessionTimerMode::Originate, ..uas_config() };
    let refuse = SessionConfig { session_timers: SessionTimerMode::Refuse, ..uac_config() };
    let mut pair = Pair::answered_with(refuse, uas);
    // The caller does not support `timer`: the UAS refreshes.
    assert_eq!(pair.uas().session_timer(), Some(SessionTimer { interval: 1800, we_refresh: true }));
}

// ---- RFC 3262 100rel / PRACK -----------------------------------------------------------

fn preferred() -> SessionConfig {
    SessionConfig { rel100: Rel100::Preferred, ..uas_config() }
}

#[test]
fn reliable_provisionals_are_pracked_and_early_media_taken() {
    let mut pair = Pair::new(uac_config(), preferred());
    assert!(pair.uas().reliable_provisionals());
    pair.uas_does(|s, now| s.progress(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.count(Side::Uac, "PRACK"), 1);
    assert_eq!(pair.count(Side::Uas, "200 PRACK"), 1);
    assert_eq!(pair.uac_events, [Event::Progress, Event::EarlyMedia { sdp: SDP_ANSWER.to_vec() }]);
    assert_eq!(pair.uas().poll_timeout(), None, "PRACKed: no retransmission left");
    pair.uas_does(|s, now| s.ring(now));
    assert_eq!(pair.count(Side::Uac, "PRACK"), 2);
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    assert_eq!(pair.uac.state(), State::Confirmed);
    // The BYE's CSeq is above the PRACKs'.
    pair.uac_does(|s, now| s.hangup(now));
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Bye));
}

#[test]
fn without_require_or_preference_provisionals_are_unreliable() {
    let mut pair = Pair::new(uac_config(), uas_config());
    assert!(!pair.uas().reliable_provisionals());
    pair.uas_does(|s, now| s.ring(now));
    assert_eq!(pair.count(Side::Uac, "PRACK"), 0);
    // Required by the caller: reliable.
    let mut required = invite();
    required.headers.push(HeaderName::Require, "100rel");
    let mut pair = Pair::with_invite(uac_config(), uas_config(), required.clone());
    assert!(pair.uas().reliable_provisionals());
    // Required but not supported: 420.
    let off = SessionConfig { rel100: Rel100::Off, ..uas_config() };
    let mut pair = Pair::with_invite(uac_config(), off, required);
    assert_eq!(pair.count(Side::Uas, "420 INVITE"), 1);
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Refused { status: 420 }));
    assert_eq!(pair.uas().state(), State::Terminated);
}

#[test]
fn a_reliable_provisional_is_retransmitted_until_the_prack() {
    let mut pair = Pair::new(uac_config(), preferred());
    let mut lost = 0;
    pair.lose = Some(Box::new(move |w: &Wire| {
        let lose = w.describe() == "180 INVITE" && lost < 2;
        lost += usize::from(lose);
        lose
    }));
    pair.uas_does(|s, now| s.ring(now));
    pair.run_until(10.0);
    // 180 at 0, 0.5 (both lost), 1.5: PRACKed. (A lost PRACK is its own transaction's to
    // retransmit, in the Endpoint: a 180 seen again is not PRACKed again, RFC 3262 §4.)
    assert_eq!(pair.sent(Side::Uas, "180 INVITE"), [0.0, 0.5, 1.5]);
    assert_eq!(pair.count(Side::Uas, "200 PRACK"), 1);
    assert_eq!(pair.uac_events, [Event::Ringing], "a retransmitted reliable 18x is not processed again");
}

#[test]
fn retransmitted_reliable_provisionals_are_not_pracked_again() {
    let mut pair = Pair::new(uac_config(), preferred());
    let now = pair.now;
    pair.uas().ring(now);
    let held = pair.hold();
    // The 180 arrives twice.
    pair.in_flight.extend(held.iter().cloned());
    pair.in_flight.extend(held);
    pair.deliver();
    assert_eq!(pair.count(Side::Uac, "PRACK"), 1);
    assert_eq!(pair.uac_events, [Event::Ringing]);
}

#[test]
fn no_prack_in_64_t1_refuses_the_invite_with_500() {
    let mut pair = Pair::new(uac_config(), preferred());
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "PRACK"));
    pair.uas_does(|s, now| s.ring(now));
    pair.run_until(60.0);
    assert_eq!(pair.sent(Side::Uas, "180 INVITE"), [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(pair.sent(Side::Uas, "500 INVITE"), [32.0]);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::NoPrack));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Refused { status: 500 }));
}

#[test]
fn one_unacknowledged_reliable_provisional_at_a_time() {
    let mut pair = Pair::new(uac_config(), preferred());
    let now = pair.now;
    pair.uas().ring(now);
    pair.uas().progress(now, SDP_ANSWER.to_vec());
    let held = pair.hold();
    assert_eq!(held.len(), 1, "the 183 waits for the 180's PRACK");
    pair.in_flight.extend(held);
    pair.deliver();
    let order: Vec<String> = pair.log.iter().skip(1).map(|(_, s, d)| format!("{s:?} {d}")).collect();
    assert_eq!(order, ["Uas 180 INVITE", "Uac PRACK", "Uas 200 PRACK", "Uas 183 INVITE", "Uac PRACK", "Uas 200 PRACK"]);
    let rseqs: Vec<u32> =
        pair.uac_events.iter().filter(|e| matches!(e, Event::Ringing | Event::Progress)).map(|_| 0).collect();
    assert_eq!(rseqs.len(), 2);
}

#[test]
fn a_prack_for_an_unknown_rseq_gets_481() {
    let mut pair = Pair::new(uac_config(), preferred());
    pair.uas_does(|s, now| s.ring(now));
    let invite = pair.uas().invite().clone();
    let mut prack = Request::new(Method::Prack, Uri::parse("sip:600@127.0.0.1:5060").unwrap());
    for name in [HeaderName::Via, HeaderName::From, HeaderName::CallId] {
        prack.headers.push(name.clone(), invite.headers.get(&name).unwrap());
    }
    prack.headers.push(HeaderName::To, "<sip:600@127.0.0.1>;tag=uastag");
    prack.headers.push(HeaderName::CSeq, "150 PRACK");
    prack.headers.push(HeaderName::RAck, "1 102 INVITE");
    let now = pair.now;
    pair.uas().handle_request(now, prack);
    pair.deliver();
    assert_eq!(pair.count(Side::Uas, "481 PRACK"), 1);
}

#[test]
fn the_session_runs_the_same_with_the_same_seed() {
    let run = || {
        let mut pair = Pair::answered();
        pair.uac_does(|s, now| s.hangup(now));
        pair.log.iter().map(|(_, _, d)| d.clone()).collect::<Vec<_>>().join(",")
            + &pair.uac.dialog().map(|d| d.local_seq.to_string()).unwrap_or_default()
    };
    assert_eq!(run(), run());
}

#[test]
fn without_its_own_2xx_retransmission_the_session_still_gives_up_at_64_t1() {
    let uas = SessionConfig { retransmit_2xx: false, ..uas_config() };
    let mut pair = Pair::new(uac_config(), uas);
    pair.lose = Some(Box::new(|w: &Wire| w.describe() == "ACK"));
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    pair.run_until(60.0);
    assert_eq!(pair.sent(Side::Uas, "200 INVITE"), [0.0]);
    assert_eq!(pair.sent(Side::Uas, "BYE"), [32.0]);
}

#[test]
fn a_cancel_before_any_provisional_still_leaves_at_once() {
    // As chan_sip: the CANCEL does not wait for a provisional response.
    let mut pair = Pair::new(uac_config(), uas_config());
    assert_eq!(pair.uac.state(), State::Calling);
    pair.uac_does(|s, now| s.hangup(now));
    assert_eq!(pair.sent(Side::Uac, "CANCEL"), [0.0]);
    assert_eq!(Pair::ended(&pair.uas_events), Some(EndReason::Cancelled));
    assert_eq!(Pair::ended(&pair.uac_events), Some(EndReason::Local));
}

#[test]
fn the_driver_finds_each_response_s_server_transaction_in_the_endpoint() {
    use starling_sip::transaction::{Config, Endpoint, Event as TxEvent, Transport};
    let now = Instant::now();
    let mut endpoint = Endpoint::new(Config::default());
    let bytes = to_wire(Side::Uac, Transmit::Request { request: invite(), target: Uri::parse("sip:x").unwrap() })
        .message
        .to_bytes();
    endpoint.handle(now, "127.0.0.1:5061".parse().unwrap(), Transport::Udp, &bytes);
    let Some(TxEvent::Request { tx, request, .. }) = std::iter::from_fn(|| endpoint.poll_event()).next() else {
        panic!("the INVITE goes up")
    };
    let mut uas = InviteSession::uas(now, uas_config(), request, "uastag");
    uas.ring(now);
    uas.answer(now, SDP_ANSWER.to_vec());
    let mut found = Vec::new();
    while let Some(Transmit::Response { response, retransmission }) = uas.poll_transmit() {
        assert!(!retransmission);
        found.push(endpoint.match_server_response(&response));
    }
    assert_eq!(found, [Some(tx), Some(tx)]);
}

#[test]
fn the_headers_of_timers_and_100rel_on_the_wire() {
    let uas = SessionConfig { rel100: Rel100::Preferred, ..uas_config() };
    let mut pair = Pair::new(originate(1800, Refresher::Uas), uas);
    let get = |m: &SipMessage, name: HeaderName| m.headers().get(&name).map(str::to_owned);
    let invite = pair.last(Side::Uac, "INVITE");
    assert_eq!(get(&invite, HeaderName::Supported).as_deref(), Some("replaces, 100rel, timer"));
    assert_eq!(get(&invite, HeaderName::SessionExpires).as_deref(), Some("1800;refresher=uas"));
    assert_eq!(get(&invite, HeaderName::UserAgent).as_deref(), Some("uac"));
    assert!(get(&invite, HeaderName::Allow).unwrap().contains("UPDATE"));
    pair.uas_does(|s, now| s.ring(now));
    let ringing = pair.last(Side::Uas, "180 INVITE");
    assert_eq!(get(&ringing, HeaderName::Require).as_deref(), Some("100rel"));
    let rseq = get(&ringing, HeaderName::RSeq).unwrap();
    let prack = pair.last(Side::Uac, "PRACK");
    assert_eq!(get(&prack, HeaderName::RAck), Some(format!("{rseq} 102 INVITE")));
    assert_eq!(get(&prack, HeaderName::To), get(&ringing, HeaderName::To), "in the early dialog");
    pair.uas_does(|s, now| s.answer(now, SDP_ANSWER.to_vec()));
    let ok = pair.last(Side::Uas, "200 INVITE");
    assert_eq!(get(&ok, HeaderName::SessionExpires).as_deref(), Some("1800;refresher=uas"));
    assert_eq!(get(&ok, HeaderName::Require).as_deref(), Some("timer"));
    assert_eq!(get(&ok, HeaderName::Contact).as_deref(), Some("<sip:600@127.0.0.1:5060>"));
    assert_eq!(get(&ok, HeaderName::Server).as_deref(), Some("uas"));
    assert_eq!(get(&ok, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    let ack = pair.last(Side::Uac, "ACK");
    let SipMessage::Request(ack) = ack else { panic!() };
    assert_eq!(ack.uri.to_string(), "sip:600@127.0.0.1:5060", "to the answer's Contact");
    assert_eq!(ack.cseq().unwrap().seq, 102);
    // The refresh at 900 s.
    pair.run_until(900.0);
    let update = pair.last(Side::Uas, "UPDATE");
    assert_eq!(get(&update, HeaderName::SessionExpires).as_deref(), Some("1800;refresher=uac"));
    assert_eq!(get(&update, HeaderName::MinSe).as_deref(), Some("90"));
    let ok = pair.last(Side::Uac, "200 UPDATE");
    assert_eq!(get(&ok, HeaderName::SessionExpires).as_deref(), Some("1800;refresher=uac"));
    // 422 names our Min-SE.
    let short = SessionConfig { min_se: 30, ..originate(60, Refresher::Uac) };
    let pair = Pair::new(short, uas_config());
    let too_brief = pair.last(Side::Uas, "422 INVITE");
    assert_eq!(get(&too_brief, HeaderName::MinSe).as_deref(), Some("90"));
}
