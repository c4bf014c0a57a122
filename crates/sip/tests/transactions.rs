//! Transactions on a fake clock: two endpoints, a network that can lose any one message,
//! and every timer driven by jumping the clock to the next deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use starling_sip::transaction::{via_for, Config, Endpoint, Event, TerminationReason, Transmit, Transport, TxId};
use starling_sip::{HeaderName, Host, MessageHeaders, Method, Request, Response, SipMessage, Uri};

const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How the UAS's transaction user answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    RingThenOk,
    Busy,
    Never,
}

struct Net {
    now: Instant,
    start: Instant,
    uac: Endpoint,
    uas: Endpoint,
    transport: Transport,
    answer: Answer,
    /// Messages put on the wire so far; the one with this index is lost.
    sent: usize,
    lose: Option<usize>,
    wire: Vec<(SocketAddr, String)>,
    uac_events: Vec<Event>,
    uas_events: Vec<Event>,
}

fn first_line(data: &[u8]) -> String {
    String::from_utf8_lossy(data).lines().next().unwrap_or("").to_owned()
}

impl Net {
    fn new(answer: Answer, transport: Transport, lose: Option<usize>) -> Net {
        let now = Instant::now();
        let config = Config::default();
        Net {
            now,
            start: now,
            uac: Endpoint::new(config.clone()),
            uas: Endpoint::new(config),
            transport,
            answer,
            sent: 0,
            lose,
            wire: Vec::new(),
            uac_events: Vec::new(),
            uas_events: Vec::new(),
        }
    }

    fn request(&self, method: Method, branch: &str) -> Request {
        let mut r = Request::new(method.clone(), Uri::parse("sip:100@127.0.0.1:5060").unwrap());
        let via = via_for(self.transport, Host::V4("127.0.0.1".parse().unwrap()), 5061, &Endpoint::new_branch(branch));
        r.headers.push(HeaderName::Via, via.to_string());
        r.headers.push(HeaderName::MaxForwards, "70");
        r.headers.push(HeaderName::From, "<sip:alice@127.0.0.1>;tag=from1");
        r.headers.push(HeaderName::To, "<sip:100@127.0.0.1>");
        r.headers.push(HeaderName::CallId, format!("call-{branch}"));
        r.headers.push(HeaderName::CSeq, format!("1 {method}"));
        r
    }

    /// Moves every queued datagram, losing the chosen one. Returns whether anything moved.
    fn deliver(&mut self) -> bool {
        let mut moved = false;
        loop {
            self.run_transaction_users();
            let mut batch: Vec<(bool, Transmit)> = Vec::new();
            while let Some(t) = self.uac.poll_transmit() {
                batch.push((true, t));
            }
            while let Some(t) = self.uas.poll_transmit() {
                batch.push((false, t));
            }
            if batch.is_empty() {
                return moved;
            }
            moved = true;
            for (from_uac, t) in batch {
                let index = self.sent;
                self.sent += 1;
                self.wire.push((t.remote, first_line(&t.data)));
                if self.lose == Some(index) {
                    continue;
                }
                let (to, from) = if from_uac { (&mut self.uas, addr(UAC)) } else { (&mut self.uac, addr(UAS)) };
                to.handle(self.now, from, self.transport, &t.data);
            }
        }
    }

    /// The two transaction users: the UAS answers requests, the UAC ACKs 2xx.
    fn run_transaction_users(&mut self) {
        while let Some(event) = self.uas.poll_event() {
            if let Event::Request { tx, request, .. } = &event {
                self.answer_request(*tx, request);
            }
            self.uas_events.push(event);
        }
        while let Some(event) = self.uac.poll_event() {
            if let Event::Response { response, .. } = &event {
                if response.status >= 200 && response.status < 300 && response.cseq().unwrap().method == Method::Invite
                {
                    let ack = self.ack_for_2xx(response);
                    self.uac.send_stateless(addr(UAS), self.transport, &SipMessage::Request(ack));
                }
            }
            self.uac_events.push(event);
        }
    }

    fn answer_request(&mut self, tx: TxId, request: &Request) {
        let now = self.now;
        if request.method != Method::Invite {
            let mut ok = Response::to_request(request, 200);
            ok.set_to_tag("to1");
            self.uas.send_response(now, tx, ok);
            return;
        }
        match self.answer {
            Answer::RingThenOk => {
                let mut ringing = Response::to_request(request, 180);
                ringing.set_to_tag("to1");
                self.uas.send_response(now, tx, ringing);
                let mut ok = Response::to_request(request, 200);
                ok.set_to_tag("to1");
                self.uas.send_response(now, tx, ok);
            }
            Answer::Busy => {
                let mut busy = Response::to_request(request, 486);
                busy.set_to_tag("to1");
                self.uas.send_response(now, tx, busy);
            }
            Answer::Never => {}
        }
    }

    fn ack_for_2xx(&self, response: &Response) -> Request {
        let mut ack = self.request(Method::Ack, "ack2xx");
        ack.headers.set(HeaderName::To, response.headers.get(&HeaderName::To).unwrap());
        ack.headers.set(HeaderName::CallId, response.call_id().unwrap());
        ack.headers.set(HeaderName::CSeq, format!("{} ACK", response.cseq().unwrap().seq));
        ack
    }

    /// Runs until both endpoints are idle, jumping the clock from deadline to deadline.
    fn run(&mut self) {
        for _ in 0..10_000 {
            self.deliver();
            let next = [self.uac.poll_timeout(), self.uas.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next else { return };
            self.now = self.now.max(next);
            self.uac.handle_timeout(self.now);
            self.uas.handle_timeout(self.now);
        }
        panic!("the exchange did not settle");
    }

    fn finals_at_uac(&self) -> Vec<u16> {
        self.uac_events
            .iter()
            .filter_map(|e| match e {
                Event::Response { response, .. } if response.status >= 200 => Some(response.status),
                _ => None,
            })
            .collect()
    }

    fn terminations(events: &[Event]) -> Vec<TerminationReason> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Terminated { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn requests_at_uas(&self) -> usize {
        self.uas_events.iter().filter(|e| matches!(e, Event::Request { .. })).count()
    }
}

fn invite_exchange(answer: Answer, transport: Transport, lose: Option<usize>) -> Net {
    let mut net = Net::new(answer, transport, lose);
    let invite = net.request(Method::Invite, "inv1");
    let now = net.now;
    net.uac.send_request(now, invite, addr(UAS), transport);
    net.run();
    net
}

#[test]
fn invite_answered_200_without_loss() {
    let net = invite_exchange(Answer::RingThenOk, Transport::Udp, None);
    let lines: Vec<&str> = net.wire.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "INVITE sip:100@127.0.0.1:5060 SIP/2.0",
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK",
            "ACK sip:100@127.0.0.1:5060 SIP/2.0"
        ]
    );
    assert_eq!(net.finals_at_uac(), [200]);
    assert_eq!(net.requests_at_uas(), 1);
    assert!(net.uas_events.iter().any(|e| matches!(e, Event::Ack { tx: Some(_), .. })));
    assert_eq!(Net::terminations(&net.uas_events), [TerminationReason::Completed]);
    assert_eq!(Net::terminations(&net.uac_events), [TerminationReason::Completed], "Timer M");
    assert!(net.uac.is_empty() && net.uas.is_empty());
    assert_eq!(net.now - net.start, Duration::from_secs(32), "Timer M = 64*T1 after the 2xx");
}

/// Every single message of the exchange lost in turn: retransmissions recover each time.
#[test]
fn invite_200_survives_the_loss_of_any_one_message() {
    let messages = invite_exchange(Answer::RingThenOk, Transport::Udp, None).wire.len();
    for lost in 0..messages {
        let net = invite_exchange(Answer::RingThenOk, Transport::Udp, Some(lost));
        let what = &net.wire[lost].1;
        assert_eq!(net.requests_at_uas(), 1, "lost #{lost} ({what}): the INVITE reached the UAS once");
        assert!(net.finals_at_uac().contains(&200), "lost #{lost} ({what}): the UAC got its 200");
        assert!(
            net.uas_events.iter().any(|e| matches!(e, Event::Ack { .. })),
            "lost #{lost} ({what}): the ACK arrived"
        );
        assert!(!Net::terminations(&net.uas_events).contains(&TerminationReason::NoAck), "lost #{lost} ({what})");
        assert!(!Net::terminations(&net.uac_events).contains(&TerminationReason::Timeout), "lost #{lost} ({what})");
        assert!(net.uac.is_empty() && net.uas.is_empty(), "lost #{lost}: everything ended");
    }
}

#[test]
fn invite_486_is_acked_by_the_transaction_and_survives_any_loss() {
    let clean = invite_exchange(Answer::Busy, Transport::Udp, None);
    let lines: Vec<&str> = clean.wire.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "INVITE sip:100@127.0.0.1:5060 SIP/2.0",
            "SIP/2.0 100 Trying",
            "SIP/2.0 486 Busy Here",
            "ACK sip:100@127.0.0.1:5060 SIP/2.0"
        ]
    );
    assert_eq!(clean.finals_at_uac(), [486]);
    assert!(!clean.uas_events.iter().any(|e| matches!(e, Event::Ack { .. })), "a non-2xx ACK stays in the transaction");
    for lost in 0..clean.wire.len() {
        let net = invite_exchange(Answer::Busy, Transport::Udp, Some(lost));
        assert_eq!(net.finals_at_uac(), [486], "lost #{lost}: exactly one final reaches the UAC");
        assert_eq!(net.requests_at_uas(), 1, "lost #{lost}");
        assert!(
            !Net::terminations(&net.uas_events).contains(&TerminationReason::NoAck),
            "lost #{lost}: the ACK got through"
        );
        assert!(net.uac.is_empty() && net.uas.is_empty());
    }
}

#[test]
fn timer_a_doubles_and_timer_b_times_out() {
    let net = invite_exchange(Answer::Never, Transport::Udp, Some(0));
    // Nothing answers after the first INVITE is lost... but the retransmission arrives and the
    // UAS says 100 Trying, which stops Timer A. Then nothing: B does not apply once Proceeding.
    assert!(net.wire.iter().filter(|(_, l)| l.starts_with("INVITE")).count() == 2);

    // A UAS that never answers at all: A at 0.5, 1, 2, 4, 8, 16 s, then B at 32 s.
    let mut net = Net::new(Answer::Never, Transport::Udp, None);
    net.lose = Some(usize::MAX);
    let invite = net.request(Method::Invite, "lost");
    let start = net.now;
    let tx = net.uac.send_request(start, invite, addr("127.0.0.1:9"), Transport::Udp);
    let mut sends = vec![];
    while let Some(t) = net.uac.poll_transmit() {
        sends.push((net.now - start, first_line(&t.data)));
    }
    while let Some(next) = net.uac.poll_timeout() {
        net.now = next;
        net.uac.handle_timeout(next);
        while let Some(t) = net.uac.poll_transmit() {
            sends.push((net.now - start, first_line(&t.data)));
        }
    }
    let times: Vec<u64> = sends.iter().map(|(d, _)| d.as_millis() as u64).collect();
    assert_eq!(times, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(net.now - start, Duration::from_secs(32));
    assert_eq!(net.uac.poll_event(), Some(Event::Terminated { tx, reason: TerminationReason::Timeout }));
}

fn options_exchange(transport: Transport, lose: Option<usize>) -> Net {
    let mut net = Net::new(Answer::RingThenOk, transport, lose);
    let options = net.request(Method::Options, "opt1");
    let now = net.now;
    net.uac.send_request(now, options, addr(UAS), transport);
    net.run();
    net
}

#[test]
fn non_invite_survives_the_loss_of_any_one_message_and_times_out_with_timer_f() {
    let clean = options_exchange(Transport::Udp, None);
    assert_eq!(clean.wire.len(), 2);
    assert_eq!(clean.finals_at_uac(), [200]);
    for lost in 0..2 {
        let net = options_exchange(Transport::Udp, Some(lost));
        assert_eq!(net.finals_at_uac(), [200], "lost #{lost}");
        assert_eq!(net.requests_at_uas(), 1, "lost #{lost}: the retransmission was absorbed");
        assert!(net.uac.is_empty() && net.uas.is_empty());
    }
    // E: 0.5, 1, 2, 4, 4, 4... until F at 32 s.
    let mut net = Net::new(Answer::Never, Transport::Udp, None);
    let options = net.request(Method::Options, "nobody");
    let start = net.now;
    let tx = net.uac.send_request(start, options, addr("127.0.0.1:9"), Transport::Udp);
    let mut times = vec![];
    loop {
        while net.uac.poll_transmit().is_some() {
            times.push((net.now - start).as_millis() as u64);
        }
        let Some(next) = net.uac.poll_timeout() else { break };
        net.now = next;
        net.uac.handle_timeout(next);
    }
    assert_eq!(times, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    assert_eq!(net.uac.poll_event(), Some(Event::Terminated { tx, reason: TerminationReason::Timeout }));
}

#[test]
fn over_tcp_nothing_is_retransmitted_and_wait_timers_are_zero() {
    let net = invite_exchange(Answer::Busy, Transport::Tcp, None);
    assert_eq!(net.wire.len(), 4);
    assert_eq!(net.now, net.start, "Timers D and I are zero on a reliable transport");
    let net = options_exchange(Transport::Tcp, None);
    assert_eq!(net.now, net.start, "Timers J and K are zero on a reliable transport");
}

/// TLS is as reliable as TCP: nothing is retransmitted, and the top Via says `SIP/2.0/TLS`.
#[test]
fn over_tls_nothing_is_retransmitted_and_the_via_says_tls() {
    let net = invite_exchange(Answer::Busy, Transport::Tls, None);
    assert_eq!(net.wire.len(), 4);
    assert_eq!(net.now, net.start, "Timers D and I are zero on a reliable transport");
    let net = options_exchange(Transport::Tls, None);
    assert_eq!(net.now, net.start, "Timers J and K are zero on a reliable transport");
    let mut uac = Endpoint::new(Config::default());
    let request = net.request(Method::Options, "tls");
    uac.send_request(net.now, request, addr(UAS), Transport::Tls);
    let sent = String::from_utf8(uac.poll_transmit().unwrap().data).unwrap();
    assert!(sent.contains("\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtls;rport\r\n"), "{sent}");
    assert_eq!(Transport::from_name("tls"), Some(Transport::Tls));
    assert_eq!(Transport::from_name("SCTP"), None);
    assert_eq!(Transport::Tls.uri_param(), Some("tls"));
}

/// The top Via names the transport the request goes over (RFC 3261 §18.1.1), whatever its
/// maker wrote; the branch and the rest of the Via stay.
#[test]
fn the_top_via_names_the_transport_used() {
    let net = Net::new(Answer::Never, Transport::Udp, None);
    let mut request = net.request(Method::Options, "stamp");
    request.headers.push(HeaderName::Via, "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower");
    let mut uac = Endpoint::new(Config::default());
    uac.send_request(net.now, request, addr(UAS), Transport::Tcp);
    let sent = String::from_utf8(uac.poll_transmit().unwrap().data).unwrap();
    let vias: Vec<&str> = sent.lines().filter(|l| l.starts_with("Via: ")).collect();
    assert_eq!(
        vias,
        [
            "Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bKstamp;rport",
            "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower"
        ],
        "{sent}"
    );
}

#[test]
fn cancel_is_answered_and_reported() {
    let mut net = Net::new(Answer::Never, Transport::Udp, None);
    let invite = net.request(Method::Invite, "tocancel");
    let now = net.now;
    net.uac.send_request(now, invite.clone(), addr(UAS), Transport::Udp);
    net.deliver();
    let cancel = starling_sip::transaction::cancel_for(&invite);
    net.uac.send_request(now, cancel, addr(UAS), Transport::Udp);
    net.deliver();
    let invite_tx = net.uas_events.iter().find_map(|e| match e {
        Event::Request { tx, .. } => Some(*tx),
        _ => None,
    });
    assert!(net.uas_events.iter().any(|e| matches!(e, Event::Cancelled { tx, .. } if Some(*tx) == invite_tx)));
    assert!(net.wire.iter().any(|(_, l)| l == "SIP/2.0 200 OK"), "{:?}", net.wire);
    // The UAS answers the INVITE 487; the UAC's transaction ACKs it.
    let request = net.uas_events.iter().find_map(|e| match e {
        Event::Request { request, .. } => Some(request.clone()),
        _ => None,
    });
    let mut terminated = Response::to_request(&request.unwrap(), 487);
    terminated.set_to_tag("to1");
    net.uas.send_response(now, invite_tx.unwrap(), terminated);
    net.run();
    assert!(net.finals_at_uac().contains(&487));
    assert!(net.wire.iter().any(|(_, l)| l.starts_with("ACK")));
    // A CANCEL that matches nothing gets 481.
    let mut net = Net::new(Answer::Never, Transport::Udp, None);
    let stray = starling_sip::transaction::cancel_for(&net.request(Method::Invite, "nothing"));
    let now = net.now;
    net.uac.send_request(now, stray, addr(UAS), Transport::Udp);
    net.deliver();
    assert!(net.wire.iter().any(|(_, l)| l == "SIP/2.0 481 Call/Transaction Does Not Exist"));
}

#[test]
fn a_2xx_never_acked_ends_with_no_ack_after_timer_l() {
    // Every ACK the UAC sends is lost.
    let net = {
        let mut n = Net::new(Answer::RingThenOk, Transport::Udp, None);
        let invite = n.request(Method::Invite, "noack");
        let now = n.now;
        n.uac.send_request(now, invite, addr(UAS), Transport::Udp);
        // Lose every message after the 200 that the UAC sends (its ACKs).
        for _ in 0..200 {
            let mut moved = false;
            while let Some(t) = n.uac.poll_transmit() {
                moved = true;
                n.wire.push((t.remote, first_line(&t.data)));
                if !t.data.starts_with(b"ACK") {
                    n.uas.handle(n.now, addr(UAC), Transport::Udp, &t.data);
                }
            }
            while let Some(t) = n.uas.poll_transmit() {
                moved = true;
                n.wire.push((t.remote, first_line(&t.data)));
                n.uac.handle(n.now, addr(UAS), Transport::Udp, &t.data);
            }
            n.run_transaction_users();
            if !moved {
                let Some(next) = [n.uac.poll_timeout(), n.uas.poll_timeout()].into_iter().flatten().min() else {
                    break;
                };
                n.now = next;
                n.uac.handle_timeout(next);
                n.uas.handle_timeout(next);
            }
        }
        n
    };
    assert!(Net::terminations(&net.uas_events).contains(&TerminationReason::NoAck));
    let oks = net.wire.iter().filter(|(_, l)| l == "SIP/2.0 200 OK").count();
    assert!(oks >= 7, "the 2xx is retransmitted until Timer L ({oks})");
}

#[test]
fn received_and_rport_are_added_to_the_top_via() {
    let mut uas = Endpoint::new(Config::default());
    let net = Net::new(Answer::Never, Transport::Udp, None);
    let mut options = net.request(Method::Options, "nat");
    options.headers.set(HeaderName::Via, "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport");
    uas.handle(net.now, addr("192.0.2.7:40123"), Transport::Udp, &options.to_bytes());
    let Some(Event::Request { request, .. }) = uas.poll_event() else { panic!() };
    let via = request.top_via().unwrap();
    assert_eq!(via.received(), Some("192.0.2.7"));
    assert_eq!(via.rport(), Some(Some(40123)));
}

#[test]
fn a_malformed_request_gets_a_400_and_an_event() {
    let mut uas = Endpoint::new(Config::default());
    let bad = b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: lots\r\n\r\n";
    uas.handle(Instant::now(), addr(UAC), Transport::Udp, bad);
    let sent = uas.poll_transmit().unwrap();
    assert_eq!(first_line(&sent.data), "SIP/2.0 400 Bad Request - bad Max-Forwards");
    assert!(matches!(uas.poll_event(), Some(Event::Malformed { .. })));
}

/// RFC 2543 peers send branches without the magic cookie: matching falls back to
/// Request-URI, From tag, Call-ID, CSeq and top Via (RFC 3261 §17.2.3).
#[test]
fn rfc_2543_requests_match_by_the_fallback_key() {
    let mut uas = Endpoint::new(Config::default());
    let net = Net::new(Answer::Never, Transport::Udp, None);
    let mut invite = net.request(Method::Invite, "x");
    invite.headers.set(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5061;branch=old-style-1");
    let bytes = invite.to_bytes();
    uas.handle(net.now, addr(UAC), Transport::Udp, &bytes);
    uas.handle(net.now, addr(UAC), Transport::Udp, &bytes);
    let requests = std::iter::from_fn(|| uas.poll_event()).filter(|e| matches!(e, Event::Request { .. })).count();
    assert_eq!(requests, 1, "the retransmission was absorbed");
    let trying =
        std::iter::from_fn(|| uas.poll_transmit()).filter(|t| first_line(&t.data) == "SIP/2.0 100 Trying").count();
    assert_eq!(trying, 2, "and answered with the last response");
    // Same with whitespace inside the sent-by (the slow path).
    let mut options = net.request(Method::Options, "y");
    options.headers.set(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1 : 5061;branch=z9hG4bKspaced");
    let bytes = options.to_bytes();
    uas.handle(net.now, addr(UAC), Transport::Udp, &bytes);
    uas.handle(net.now, addr(UAC), Transport::Udp, &bytes);
    assert_eq!(std::iter::from_fn(|| uas.poll_event()).filter(|e| matches!(e, Event::Request { .. })).count(), 1);
}

/// A request to the UAS with its own branch and Call-ID, as a stranger's flood sends them.
fn stranger_request(method: Method, n: u32) -> Vec<u8> {
    format!(
        "{method} sip:100@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-flood-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=f{n}\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: flood-{n}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn drain(endpoint: &mut Endpoint) -> (Vec<String>, Vec<Event>) {
    let mut sent = Vec::new();
    while let Some(t) = endpoint.poll_transmit() {
        sent.push(String::from_utf8_lossy(&t.data).into_owned());
    }
    let mut events = Vec::new();
    while let Some(e) = endpoint.poll_event() {
        events.push(e);
    }
    (sent, events)
}

#[test]
fn past_the_server_transaction_cap_requests_go_up_as_overloaded_and_are_refused_statelessly() {
    let now = Instant::now();
    let config = Config { max_server_transactions: 2, ..Config::default() };
    let mut uas = Endpoint::new(config);
    for n in 0..2 {
        uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Invite, n));
    }
    let (sent, events) = drain(&mut uas);
    assert_eq!(sent.iter().filter(|s| s.starts_with("SIP/2.0 100")).count(), 2, "{sent:?}");
    let invites: Vec<(TxId, Request)> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Request { tx, request, .. } => Some((tx, request)),
            _ => None,
        })
        .collect();
    assert_eq!(invites.len(), 2);
    assert_eq!(uas.server_transactions(), 2);

    // The third makes no transaction: it goes up, and is refused with 503 and Retry-After.
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Invite, 2));
    let (sent, events) = drain(&mut uas);
    assert!(sent.is_empty(), "no 100 Trying past the cap: {sent:?}");
    let Some(Event::Overloaded { request, remote, transport }) = events.into_iter().next() else {
        panic!("expected Overloaded")
    };
    assert_eq!(uas.server_transactions(), 2);
    uas.refuse(request, remote, transport);
    let (sent, events) = drain(&mut uas);
    assert!(events.is_empty());
    assert_eq!(sent.len(), 1);
    let Ok(SipMessage::Response(refusal)) = starling_sip::message::parse(sent[0].as_bytes()) else {
        panic!("{sent:?}")
    };
    assert_eq!(refusal.status, 503);
    assert_eq!(refusal.headers.get(&HeaderName::RetryAfter), Some("5"));
    assert!(refusal.to().unwrap().tag().is_some(), "a final response carries a To tag");
    assert_eq!(uas.take_refused(), 1);
    assert_eq!(uas.take_refused(), 0, "the count restarts");

    // A request the transaction user vouches for is taken past the cap, up to twice the cap.
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Register, 3));
    let Some(Event::Overloaded { request, remote, transport }) = drain(&mut uas).1.into_iter().next() else {
        panic!("expected Overloaded")
    };
    uas.accept(now, request, remote, transport);
    let (_, events) = drain(&mut uas);
    let [Event::Request { tx, .. }] = events.as_slice() else { panic!("{events:?}") };
    let registered = *tx;
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Register, 4));
    let Some(Event::Overloaded { request, remote, transport }) = drain(&mut uas).1.into_iter().next() else {
        panic!("expected Overloaded")
    };
    uas.accept(now, request, remote, transport);
    drain(&mut uas);
    assert_eq!(uas.server_transactions(), 4);
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Register, 5));
    let Some(Event::Overloaded { request, remote, transport }) = drain(&mut uas).1.into_iter().next() else {
        panic!("expected Overloaded")
    };
    uas.accept(now, request, remote, transport);
    let (sent, _) = drain(&mut uas);
    assert!(sent[0].starts_with("SIP/2.0 503"), "at twice the cap even a vouched-for request is refused: {sent:?}");
    assert_eq!(uas.server_transactions(), 4);

    // A retransmission of a request with a transaction is still answered by it.
    let Ok(SipMessage::Request(register)) = starling_sip::message::parse(&stranger_request(Method::Register, 3)) else {
        panic!("a REGISTER")
    };
    let mut ok = Response::to_request(&register, 200);
    ok.set_to_tag("t");
    uas.send_response(now, registered, ok);
    drain(&mut uas);
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Register, 3));
    let (sent, events) = drain(&mut uas);
    assert!(sent[0].starts_with("SIP/2.0 200"), "{sent:?}");
    assert!(events.is_empty());

    // A CANCEL that cancels nothing gets its 481 without a transaction; ACKs still go up.
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Cancel, 9));
    let (sent, _) = drain(&mut uas);
    assert!(sent[0].starts_with("SIP/2.0 481"), "{sent:?}");
    assert_eq!(uas.server_transactions(), 4);
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Ack, 9));
    assert!(matches!(drain(&mut uas).1.as_slice(), [Event::Ack { .. }]));

    // A CANCEL for an INVITE in progress is served past the cap.
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Cancel, 0));
    let (sent, events) = drain(&mut uas);
    assert!(sent[0].starts_with("SIP/2.0 200"), "{sent:?}");
    assert!(matches!(events.as_slice(), [Event::Cancelled { .. }]), "{events:?}");

    // As transactions end, new requests make transactions again.
    for (tx, invite) in &invites {
        let mut busy = Response::to_request(invite, 486);
        busy.set_to_tag("t");
        uas.send_response(now, *tx, busy);
    }
    uas.handle_timeout(now + Duration::from_secs(60));
    drain(&mut uas);
    assert_eq!(uas.server_transactions(), 1, "only the REGISTER nobody answered is left");
    uas.handle(now, addr(UAC), Transport::Udp, &stranger_request(Method::Invite, 10));
    assert!(drain(&mut uas).1.iter().any(|e| matches!(e, Event::Request { .. })));
}
