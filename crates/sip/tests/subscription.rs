//! The notifier state machine (RFC 6665) on a fake clock: the initial SUBSCRIBE, refresh,
//! expiry, unsubscribe, state changes, NOTIFY CSeqs and dialog-info versions, one NOTIFY in
//! flight at a time; and the bodies (RFC 4235 dialog-info, PIDF, XPIDF) parsed by a real XML
//! parser (roxmltree) and checked against the schema's structure.

use std::time::{Duration, Instant};

use starling_sip::session::Transmit;
use starling_sip::subscription::{
    dialog_info_xml, extension_state as ext, negotiate, pidf_xml, xpidf_xml, BodyFormat, BodyNames, Event,
    EventPackage, NotifyState, RemoteIdentity, State, Subscription, SubscriptionConfig, TerminateReason,
};
use starling_sip::{parse, MessageHeaders, Method, Request, Response, SipMessage};

fn subscribe(event: &str, accept: Option<&str>, expires: Option<&str>, cseq: u32, to_tag: Option<&str>) -> Request {
    let mut text = format!(
        "SUBSCRIBE sip:1001@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKs{cseq}\r\n\
         From: <sip:1002@192.0.2.1>;tag=w1\r\nTo: <sip:1001@192.0.2.1>{}\r\nCall-ID: sub1\r\nCSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <sip:1002@192.0.2.7:5062>\r\nEvent: {event}\r\nMax-Forwards: 70\r\n",
        to_tag.map(|t| format!(";tag={t}")).unwrap_or_default()
    );
    if let Some(accept) = accept {
        text.push_str(&format!("Accept: {accept}\r\n"));
    }
    if let Some(expires) = expires {
        text.push_str(&format!("Expires: {expires}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => unreachable!("a request"),
    }
}

/// Everything the subscription sends now: (responses, NOTIFYs), each parsed back from its bytes.
fn drain(s: &mut Subscription) -> (Vec<Response>, Vec<Request>) {
    let (mut responses, mut notifies) = (Vec::new(), Vec::new());
    while let Some(t) = s.poll_transmit() {
        match t {
            Transmit::Response { response, .. } => match parse(&response.to_bytes()).unwrap() {
                SipMessage::Response(r) => responses.push(r),
                SipMessage::Request(_) => unreachable!(),
            },
            Transmit::Request { request, target } => {
                assert_eq!(target.to_string(), "sip:1002@192.0.2.7:5062", "to the subscriber's Contact");
                match parse(&request.to_bytes()).unwrap() {
                    SipMessage::Request(r) => notifies.push(r),
                    SipMessage::Response(_) => unreachable!(),
                }
            }
            Transmit::Ack { .. } => panic!("no ACK in a subscription"),
        }
    }
    (responses, notifies)
}

fn events(s: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn header<'a>(m: &'a impl MessageHeaders, name: &str) -> &'a str {
    m.headers().iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name)).map_or("", |h| h.value.as_str())
}

fn ok_to(notify: &Request) -> Response {
    Response::to_request(notify, 200)
}

fn body(notify: &Request) -> String {
    String::from_utf8(notify.body.clone()).unwrap()
}

/// The dialog-info's `<state>` (and its version), checked against RFC 4235's structure.
fn dialog_state(xml: &str) -> (u32, String) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let ns = "urn:ietf:params:xml:ns:dialog-info";
    let root = doc.root_element();
    assert_eq!((root.tag_name().namespace(), root.tag_name().name()), (Some(ns), "dialog-info"));
    let version: u32 = root.attribute("version").expect("version (required)").parse().unwrap();
    assert!(matches!(root.attribute("state"), Some("full" | "partial")), "state (required)");
    assert!(root.attribute("entity").is_some_and(|e| e.starts_with("sip:")), "entity (required)");
    let dialogs: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(dialogs.len(), 1);
    let dialog = dialogs[0];
    assert_eq!(dialog.tag_name().name(), "dialog");
    assert!(dialog.attribute("id").is_some(), "dialog id (required)");
    if let Some(direction) = dialog.attribute("direction") {
        assert!(matches!(direction, "initiator" | "recipient"));
    }
    let states: Vec<_> = dialog.children().filter(|n| n.has_tag_name((ns, "state"))).collect();
    assert_eq!(states.len(), 1, "one <state>: {xml}");
    let state = states[0].text().unwrap_or("").to_owned();
    assert!(["trying", "proceeding", "early", "confirmed", "terminated"].contains(&state.as_str()), "{state}");
    for party in dialog.children().filter(|n| n.is_element() && n.tag_name().name() != "state") {
        assert!(matches!(party.tag_name().name(), "local" | "remote"), "{xml}");
        for item in party.children().filter(|n| n.is_element()) {
            assert!(matches!(item.tag_name().name(), "identity" | "target"), "{xml}");
            if item.tag_name().name() == "target" {
                assert!(item.attribute("uri").is_some());
            }
        }
    }
    (version, state)
}

fn start(now: Instant, state: i32) -> Subscription {
    let request = subscribe("dialog", Some("application/dialog-info+xml"), Some("600"), 1, None);
    Subscription::uas(now, SubscriptionConfig::default(), request, "n1", "1001", NotifyState::new(state))
}

/// The initial SUBSCRIBE: 200 with Expires and Contact, then a NOTIFY (CSeq 1, active;expires,
/// Event, the dialog-info with version 0, full, terminated for idle).
#[test]
fn initial_subscribe_gets_200_and_a_full_notify() {
    let now = Instant::now();
    let mut s = start(now, ext::NOT_INUSE);
    let (responses, notifies) = drain(&mut s);
    assert_eq!(responses.len(), 1);
    let ok = &responses[0];
    assert_eq!(ok.status, 200);
    assert_eq!(header(ok, "Expires"), "600");
    assert_eq!(ok.to().unwrap().tag(), Some("n1"));
    assert!(header(ok, "Contact").contains("sip:"));
    assert_eq!(notifies.len(), 1);
    let notify = &notifies[0];
    assert_eq!(notify.method, Method::Notify);
    assert_eq!(notify.cseq().unwrap().seq, 1);
    assert_eq!(header(notify, "Event"), "dialog");
    assert_eq!(header(notify, "Subscription-State"), "active;expires=600");
    assert_eq!(header(notify, "Content-Type"), "application/dialog-info+xml");
    assert_eq!(notify.from().unwrap().tag(), Some("n1"));
    assert_eq!(notify.to().unwrap().tag(), Some("w1"));
    assert_eq!(dialog_state(&body(notify)), (0, "terminated".to_owned()));
    assert_eq!(events(&mut s), [Event::Accepted { expires: 600 }]);
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(600)));
}

/// Changes go out one NOTIFY at a time, each with the next CSeq and version: idle → ringing
/// (early, with the caller) → in use (confirmed) → idle; a change while one is in flight waits
/// and only the latest goes; the same state twice sends nothing.
#[test]
fn state_changes_notify_in_order_one_at_a_time() {
    let now = Instant::now();
    let mut s = start(now, ext::NOT_INUSE);
    let (_, first) = drain(&mut s);
    let t = now + Duration::from_secs(5);
    let caller = RemoteIdentity { uri: "sip:5551234@192.0.2.1".into(), display: "Alice & Co".into() };
    s.notify(t, NotifyState { state: ext::RINGING, remote: Some(caller) });
    assert!(drain(&mut s).1.is_empty(), "the first NOTIFY is not answered yet");
    s.handle_response(t, ok_to(&first[0]));
    let (_, ringing) = drain(&mut s);
    assert_eq!(ringing.len(), 1);
    assert_eq!(ringing[0].cseq().unwrap().seq, 2);
    assert_eq!(header(&ringing[0], "Subscription-State"), "active;expires=595");
    let xml = body(&ringing[0]);
    assert_eq!(dialog_state(&xml), (1, "early".to_owned()));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let identity = doc.descendants().find(|n| n.has_tag_name("identity")).unwrap();
    assert_eq!((identity.attribute("display"), identity.text()), (Some("Alice & Co"), Some("sip:5551234@192.0.2.1")));
    assert!(xml.contains("direction=\"recipient\"") && xml.contains("call-id=\"pickup-sub1\""), "{xml}");

    s.notify(t, NotifyState::new(ext::INUSE));
    s.notify(t, NotifyState::new(ext::NOT_INUSE));
    s.notify(t, NotifyState::new(ext::INUSE));
    assert!(drain(&mut s).1.is_empty());
    s.handle_response(t, ok_to(&ringing[0]));
    let (_, inuse) = drain(&mut s);
    assert_eq!(inuse.len(), 1, "only the latest state");
    assert_eq!(inuse[0].cseq().unwrap().seq, 3);
    assert_eq!(dialog_state(&body(&inuse[0])), (2, "confirmed".to_owned()));
    s.handle_response(t, ok_to(&inuse[0]));
    s.notify(t, NotifyState::new(ext::INUSE));
    assert!(drain(&mut s).1.is_empty(), "no change, no NOTIFY");
    s.notify(t, NotifyState::new(ext::NOT_INUSE));
    let (_, idle) = drain(&mut s);
    assert_eq!(dialog_state(&body(&idle[0])), (3, "terminated".to_owned()));
    assert_eq!(idle[0].cseq().unwrap().seq, 4);
    assert!(events(&mut s).iter().all(|e| matches!(e, Event::Accepted { .. })));
}

/// A refresh in the dialog moves the expiry and NOTIFYs the state; the old expiry then does
/// nothing. Without a refresh, the expiry sends `terminated;reason=timeout` and ends it.
#[test]
fn refresh_moves_the_expiry_and_expiry_ends_with_timeout() {
    let now = Instant::now();
    let mut s = start(now, ext::INUSE);
    let (_, first) = drain(&mut s);
    s.handle_response(now, ok_to(&first[0]));
    let t = now + Duration::from_secs(500);
    s.handle_request(t, subscribe("dialog", None, Some("600"), 2, Some("n1")));
    let (responses, notifies) = drain(&mut s);
    assert_eq!((responses[0].status, header(&responses[0], "Expires")), (200, "600"));
    assert_eq!(header(&notifies[0], "Subscription-State"), "active;expires=600");
    assert_eq!(events(&mut s), [Event::Accepted { expires: 600 }, Event::Refreshed { expires: 600 }]);
    s.handle_response(t, ok_to(&notifies[0]));
    s.handle_timeout(now + Duration::from_secs(600));
    assert!(drain(&mut s).1.is_empty(), "the old expiry is gone");
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(600)));
    let end = t + Duration::from_secs(600);
    s.handle_timeout(end);
    let (_, last) = drain(&mut s);
    assert_eq!(header(&last[0], "Subscription-State"), "terminated;reason=timeout");
    assert_eq!(last[0].cseq().unwrap().seq, 3);
    dialog_state(&body(&last[0]));
    s.notify(end, NotifyState::new(ext::NOT_INUSE));
    assert!(drain(&mut s).1.is_empty(), "nothing after the end");
    s.handle_response(end, ok_to(&last[0]));
    assert_eq!(events(&mut s), [Event::Terminated { reason: TerminateReason::Timeout }]);
    assert_eq!(s.state(), State::Terminated);
    assert_eq!(s.poll_timeout(), None);
    // A refresh after the end: 481.
    s.handle_request(end, subscribe("dialog", None, Some("600"), 3, Some("n1")));
    assert_eq!(drain(&mut s).0[0].status, 481);
}

/// `Expires: 0` in the dialog: 200, then the last NOTIFY (terminated), then the end; an
/// initial SUBSCRIBE with `Expires: 0` (a fetch) gets the same.
#[test]
fn unsubscribe_terminates() {
    let now = Instant::now();
    let mut s = start(now, ext::NOT_INUSE);
    let (_, first) = drain(&mut s);
    s.handle_response(now, ok_to(&first[0]));
    s.handle_request(now, subscribe("dialog", None, Some("0"), 2, Some("n1")));
    let (responses, notifies) = drain(&mut s);
    assert_eq!((responses[0].status, header(&responses[0], "Expires")), (200, "0"));
    assert_eq!(header(&notifies[0], "Subscription-State"), "terminated;reason=timeout");
    s.handle_response(now, ok_to(&notifies[0]));
    assert_eq!(events(&mut s).last(), Some(&Event::Terminated { reason: TerminateReason::Unsubscribed }));

    let request = subscribe("presence", None, Some("0"), 1, None);
    let mut fetch = Subscription::uas(now, SubscriptionConfig::default(), request, "n2", "1001", NotifyState::new(0));
    let (responses, notifies) = drain(&mut fetch);
    assert_eq!(responses[0].status, 200);
    assert_eq!(header(&notifies[0], "Subscription-State"), "terminated;reason=timeout");
    assert_eq!(header(&notifies[0], "Event"), "presence");
}

/// Refusals: an unknown event package 489 (with Allow-Events), an interval under minexpiry 423
/// (with Min-Expires), a bad Expires 400; a long interval is lowered to maxexpiry.
#[test]
fn refusals_and_bounds() {
    let now = Instant::now();
    let cfg = SubscriptionConfig::default;
    let refused = |request: Request| {
        let mut s = Subscription::uas(now, cfg(), request, "n", "1001", NotifyState::new(0));
        let (responses, notifies) = drain(&mut s);
        assert!(notifies.is_empty());
        assert_eq!(s.state(), State::Terminated);
        responses.into_iter().next().unwrap()
    };
    let r = refused(subscribe("conference", None, None, 1, None));
    assert_eq!((r.status, header(&r, "Allow-Events")), (489, "dialog, presence, message-summary"));
    let r = refused(subscribe("dialog", Some("application/pidf+xml"), None, 1, None));
    assert_eq!(r.status, 489);
    let r = refused(subscribe("dialog", None, Some("10"), 1, None));
    assert_eq!((r.status, header(&r, "Min-Expires")), (423, "60"));
    let r = refused(subscribe("dialog", None, Some("soon"), 1, None));
    assert_eq!(r.status, 400);
    let r = refused(subscribe("dialog", None, Some("99999999999999999999999"), 1, None));
    assert_eq!(r.status, 400);
    let mut long =
        Subscription::uas(now, cfg(), subscribe("dialog", None, Some("86400"), 1, None), "n", "1", NotifyState::new(0));
    assert_eq!(header(&drain(&mut long).0[0], "Expires"), "3600");
    let mut default =
        Subscription::uas(now, cfg(), subscribe("dialog", None, None, 1, None), "n", "1", NotifyState::new(0));
    assert_eq!(header(&drain(&mut default).0[0], "Expires"), "120");
}

/// A NOTIFY answered 481 (or timed out) ends the subscription without another NOTIFY; our
/// terminate() (the hint removed) says `noresource`; a request that is not SUBSCRIBE gets 405.
#[test]
fn notify_errors_and_our_own_end() {
    let now = Instant::now();
    let mut s = start(now, 0);
    let (_, first) = drain(&mut s);
    let mut gone = Response::to_request(&first[0], 481);
    gone.set_to_tag("w1");
    s.handle_response(now, gone);
    assert!(drain(&mut s).1.is_empty());
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Terminated { reason: TerminateReason::NotifyFailed { status: 481 } })
    );

    let mut s = start(now, 0);
    let (_, first) = drain(&mut s);
    s.handle_transaction_timeout(now, first[0].cseq().unwrap().seq);
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Terminated { reason: TerminateReason::NotifyFailed { status: 408 } })
    );

    let mut s = start(now, 0);
    let (_, first) = drain(&mut s);
    s.handle_response(now, ok_to(&first[0]));
    let mut options = subscribe("dialog", None, None, 2, Some("n1"));
    options.method = Method::Options;
    s.handle_request(now, options);
    assert_eq!(drain(&mut s).0[0].status, 405);
    s.terminate(now, TerminateReason::NoResource);
    let (_, last) = drain(&mut s);
    assert_eq!(header(&last[0], "Subscription-State"), "terminated;reason=noresource");
    s.handle_response(now, ok_to(&last[0]));
    assert_eq!(events(&mut s).last(), Some(&Event::Terminated { reason: TerminateReason::NoResource }));
}

fn names() -> BodyNames {
    BodyNames {
        entity: "sip:1001@192.0.2.1".into(),
        watcher: "sip:1002@192.0.2.1".into(),
        exten: "1001".into(),
        call_id: "c<1>".into(),
    }
}

/// Every state in every body is well-formed XML with the words chan_sip uses.
#[test]
fn bodies_are_well_formed_with_chan_sips_words() {
    let states = [0, 1, 2, 4, 8, 9, 16, 17, -1, -2];
    for state in states {
        let n = NotifyState { state, remote: None };
        let (_, dialog) = dialog_state(&dialog_info_xml(&names(), 7, &n, true));
        let expected = match state {
            8 | 9 => "early",
            1 | 2 | 16 | 17 => "confirmed",
            _ => "terminated",
        };
        assert_eq!(dialog, expected, "state {state}");
        let pidf = pidf_xml(&names(), &n);
        let doc = roxmltree::Document::parse(&pidf).unwrap_or_else(|e| panic!("{e}\n{pidf}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some("urn:ietf:params:xml:ns:pidf"));
        assert_eq!(root.attribute("entity"), Some("sip:1002@192.0.2.1"));
        let tuple = root.children().find(|c| c.has_tag_name(("urn:ietf:params:xml:ns:pidf", "tuple"))).unwrap();
        assert_eq!(tuple.attribute("id"), Some("1001"));
        let basic = tuple.descendants().find(|c| c.has_tag_name("basic")).unwrap().text().unwrap();
        let note = root.children().find(|c| c.has_tag_name("note")).unwrap().text().unwrap();
        let activity = doc
            .descendants()
            .find(|c| {
                c.tag_name().namespace() == Some("urn:ietf:params:xml:ns:pidf:rpid:rpid-person")
                    && c.tag_name().name() != "activities"
            })
            .map(|c| c.tag_name().name());
        let (want_basic, want_note, want_activity) = match state {
            -2..=0 => ("open", "Ready", None),
            1 => ("open", "On the phone", Some("busy")),
            2 => ("open", "On the phone", Some("busy")),
            4 => ("closed", "Unavailable", Some("away")),
            8 | 9 => ("open", "Ringing", Some("busy")),
            _ => ("open", "On hold", Some("busy")),
        };
        assert_eq!((basic, note, activity), (want_basic, want_note, want_activity), "state {state}");
        let rfc4480 = doc
            .descendants()
            .find(|c| {
                c.tag_name().namespace() == Some("urn:ietf:params:xml:ns:pidf:rpid")
                    && c.tag_name().name() != "activities"
            })
            .map(|c| c.tag_name().name());
        let want_rfc4480 = want_activity.map(|a| if a == "busy" { "on-the-phone" } else { a });
        assert_eq!(rfc4480, want_rfc4480, "state {state}: {pidf}");
        let xpidf = xpidf_xml(&names(), &n);
        // The DOCTYPE is chan_sip's; roxmltree reads it without fetching the DTD.
        let doc = roxmltree::Document::parse_with_options(
            &xpidf,
            roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() },
        )
        .unwrap_or_else(|e| panic!("{e}\n{xpidf}"));
        let status = doc.descendants().find(|c| c.has_tag_name("status")).unwrap().attribute("status").unwrap();
        let want = match state {
            -2..=0 => "open",
            1 | 8 | 9 => "inuse",
            _ => "closed",
        };
        assert_eq!(status, want, "state {state}");
    }
    // Hold marks the local target not rendering; names are escaped.
    let held = dialog_info_xml(&names(), 0, &NotifyState::new(16), true);
    assert!(held.contains("<param pname=\"+sip.rendering\" pvalue=\"no\"/>"), "{held}");
    let ringing = dialog_info_xml(&names(), 0, &NotifyState::new(8), true);
    assert!(ringing.contains("call-id=\"pickup-c&lt;1&gt;\""), "{ringing}");
    // Without notifyringing a ringing dialog carries no identities; ringing while in use is confirmed.
    let plain = dialog_info_xml(&names(), 0, &NotifyState::new(8), false);
    assert!(!plain.contains("<remote>") && plain.contains("<state>early</state>"), "{plain}");
    let busy_ringing = dialog_info_xml(&names(), 0, &NotifyState::new(9), false);
    assert!(busy_ringing.contains("<state>confirmed</state>"), "{busy_ringing}");
}

/// Event and Accept pick the package and the body as chan_sip does.
#[test]
fn negotiation_follows_event_and_accept() {
    let pick = |event: &str, accept: Option<&str>| negotiate(&subscribe(event, accept, None, 1, None));
    assert_eq!(pick("dialog", None), Ok((EventPackage::Dialog, BodyFormat::DialogInfo)));
    assert_eq!(pick("presence", None), Ok((EventPackage::Presence, BodyFormat::Pidf)));
    assert_eq!(pick("presence", Some("application/xpidf+xml")), Ok((EventPackage::Presence, BodyFormat::Xpidf)));
    assert_eq!(
        pick("presence", Some("application/xpidf+xml, application/pidf+xml")),
        Ok((EventPackage::Presence, BodyFormat::Pidf))
    );
    assert_eq!(pick("Dialog;id=1", Some("application/dialog-info+xml")).map(|p| p.0), Ok(EventPackage::Dialog));
    assert_eq!(pick("presence", Some("text/plain")), Err(489));
    assert_eq!(pick("", None), Err(489));
}

/// Malformed subscriptions never panic: odd Expires, odd events, odd names in bodies.
#[test]
fn malformed_input_never_panics() {
    let now = Instant::now();
    for expires in ["", "-1", "1e3", "4294967296", " 60 ", "\u{661}"] {
        let mut s = Subscription::uas(
            now,
            SubscriptionConfig::default(),
            subscribe("dialog", None, Some(expires), 1, None),
            "n",
            "1001",
            NotifyState::new(0),
        );
        let _ = drain(&mut s);
    }
    let weird =
        BodyNames { entity: "\"><x>".into(), watcher: "&&".into(), exten: "\u{0}<".into(), call_id: "]]>".into() };
    for state in [0, 8, 16, 4, i32::MIN, i32::MAX] {
        let n = NotifyState { state, remote: Some(RemoteIdentity { uri: "<".into(), display: "\u{1}'\"".into() }) };
        roxmltree::Document::parse(&dialog_info_xml(&weird, u32::MAX, &n, true)).unwrap();
        roxmltree::Document::parse(&pidf_xml(&weird, &n)).unwrap();
    }
}

/// RFC 3842 (issue 26): `Event: message-summary` is accepted with its body; new counts NOTIFY
/// (one in flight at a time), the same counts again do nothing.
#[test]
fn message_summary_tells_the_counts() {
    use starling_sip::subscription::MessageSummary;
    let now = Instant::now();
    let request = subscribe("message-summary", Some("application/simple-message-summary"), Some("600"), 1, None);
    assert_eq!(negotiate(&request), Ok((EventPackage::MessageSummary, BodyFormat::MessageSummary)));
    let account = "sip:asterisk@192.0.2.1".to_owned();
    let summary = MessageSummary { new: 0, old: 2, account: account.clone() };
    let mut s = Subscription::uas_with_summary(
        now,
        SubscriptionConfig::default(),
        request,
        "n1",
        "1001",
        NotifyState::new(0),
        summary.clone(),
    );
    let (responses, first) = drain(&mut s);
    assert_eq!(responses[0].status, 200);
    assert_eq!(header(&first[0], "Event"), "message-summary");
    assert_eq!(header(&first[0], "Content-Type"), "application/simple-message-summary");
    assert_eq!(
        body(&first[0]),
        "Messages-Waiting: no\r\nMessage-Account: sip:asterisk@192.0.2.1\r\nVoice-Message: 0/2 (0/0)\r\n"
    );
    s.notify_summary(now, summary);
    s.handle_response(now, ok_to(&first[0]));
    assert!(drain(&mut s).1.is_empty(), "the same counts: no NOTIFY");
    s.notify_summary(now, MessageSummary { new: 1, old: 2, account });
    let (_, second) = drain(&mut s);
    assert_eq!(second[0].cseq().unwrap().seq, 2);
    assert!(body(&second[0]).starts_with("Messages-Waiting: yes\r\n"), "{}", body(&second[0]));
    assert_eq!(s.summary().new, 1);
    let wrong = subscribe("message-summary", Some("application/pidf+xml"), None, 1, None);
    assert_eq!(negotiate(&wrong), Err(489));
}
