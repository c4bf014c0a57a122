//! Any bytes as one UDP datagram, to the parser and to a transaction endpoint.
//!
//! Must hold: nothing panics; a message that parses writes back to bytes that parse to the same
//! message (Content-Length aside, which is rewritten from the body) and write back the same
//! again; its Via/From/To/Contact/CSeq values that parse write back to values that parse the
//! same; a faulty request's 400 parses (From/To/Call-ID/CSeq are copied as they came, so they
//! may be the fault); whatever the endpoint sends back, answering it as chan_sip does, parses.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use starling_sip::transaction::{Config, Endpoint, Event, Transport};
use starling_sip::{
    parse, parse_datagram, CSeq, Datagram, HeaderName, NameAddr, ParseErrorKind, Response, SipMessage, Via,
};

fuzz_target!(|data: &[u8]| {
    match parse_datagram(data) {
        Ok(Datagram::Message(message)) => round_trip(&message),
        Ok(Datagram::KeepAlive) => {}
        Err(e) => {
            if let Some(response) = e.bad_request() {
                if let Err(again) = parse(&response.to_bytes()) {
                    assert!(
                        matches!(again.kind, ParseErrorKind::BadHeader("CSeq" | "From" | "To" | "Call-ID", _)),
                        "the answer to {e:?} does not parse: {again:?}"
                    );
                }
            }
        }
    }
    endpoint(data);
});

/// Without its Content-Length headers (writing replaces them with the body's length).
fn without_length(message: &SipMessage) -> SipMessage {
    let mut m = message.clone();
    match &mut m {
        SipMessage::Request(r) => r.headers.remove(&HeaderName::ContentLength),
        SipMessage::Response(r) => r.headers.remove(&HeaderName::ContentLength),
    }
    m
}

fn round_trip(message: &SipMessage) {
    let bytes = message.to_bytes();
    let again =
        parse(&bytes).unwrap_or_else(|e| panic!("{message:?} writes back as {bytes:?}, which does not parse: {e}"));
    assert_eq!(without_length(&again), without_length(message), "written as {:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(again.to_bytes(), bytes);
    for header in message.headers().iter() {
        let value = header.value.as_str();
        match header.name {
            HeaderName::Via => {
                if let Ok(via) = Via::parse(value) {
                    assert_eq!(Via::parse(&via.to_string()).as_ref(), Ok(&via), "Via {value:?} written as {via}");
                }
            }
            HeaderName::From | HeaderName::To | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
                if let Ok(addr) = NameAddr::parse(value) {
                    assert_eq!(NameAddr::parse(&addr.to_string()).as_ref(), Ok(&addr), "{value:?} written as {addr}");
                }
            }
            HeaderName::CSeq => {
                if let Ok(cseq) = CSeq::parse(value) {
                    assert_eq!(CSeq::parse(&cseq.to_string()).as_ref(), Ok(&cseq), "CSeq {value:?} written as {cseq}");
                }
            }
            _ => {}
        }
    }
}

/// The datagram to an endpoint that answers every request 200 (with a To tag), then its timers
/// to the end: every datagram it sends must parse.
fn endpoint(data: &[u8]) {
    let now = Instant::now();
    let remote = "192.0.2.7:5062".parse().unwrap();
    let mut endpoint = Endpoint::new(Config::default());
    endpoint.handle(now, remote, Transport::Udp, data);
    let mut clock = now;
    for _ in 0..64 {
        while let Some(event) = endpoint.poll_event() {
            if let Event::Request { tx, request, .. } = event {
                let mut ok = Response::to_request(&request, 200);
                ok.set_to_tag("as5e3b1c2d");
                endpoint.send_response(clock, tx, ok);
            }
        }
        while let Some(transmit) = endpoint.poll_transmit() {
            if let Err(e) = parse(&transmit.data) {
                // The 400 for a faulty request copies its From/To/Call-ID/CSeq as they came.
                assert!(
                    matches!(e.kind, ParseErrorKind::BadHeader("CSeq" | "From" | "To" | "Call-ID", _)),
                    "sent {:?}, which does not parse: {e:?}",
                    String::from_utf8_lossy(&transmit.data)
                );
            }
        }
        match endpoint.poll_timeout() {
            Some(deadline) => {
                clock = deadline.max(clock + Duration::from_millis(1));
                endpoint.handle_timeout(clock);
            }
            None => break,
        }
    }
}
