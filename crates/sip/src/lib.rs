//! SIP without I/O: the protocol chan_sip stands on (steps 2 and 3 of ARCHITECTURE.md's call
//! flow), as quinn-proto is QUIC without sockets.
//!
//! This crate reads and writes bytes and is handed the current time; it never opens a socket,
//! spawns a task, sleeps or reads the clock. What is here:
//!
//! - [`message`]: parsing (UDP datagrams, TCP streams with CRLF keepalives) and building of
//!   requests and responses, normalised on the way in (compact names, folded lines,
//!   comma-joined Vias/Contacts/Routes split); a malformed request yields a [`ParseError`]
//!   that can build its own `400 Bad Request`.
//! - [`uri`]: `sip:`, `sips:`, `tel:` and opaque URIs, IPv6 hosts, RFC 3261 §19.1.4 comparison.
//! - [`typed`]: Via, name-addr (From/To/Contact/Route), CSeq, methods.
//! - [`transaction`]: the transaction layer of one socket ([`transaction::Endpoint`]): RFC 3261
//!   §17 client and server transactions with every timer, RFC 6026's Accepted state.
//! - [`dialog`]: dialogs (RFC 3261 §12): tags, CSeq rules, route sets, in-dialog requests.
//! - [`session`]: the call ([`session::InviteSession`]): one INVITE dialog usage for either role
//!   on top of the transaction layer, with session timers (RFC 4028) and 100rel (RFC 3262).
//! - [`subscription`]: the notifier of one subscription (RFC 6665; [`subscription::Subscription`]):
//!   SUBSCRIBE, refresh, expiry, NOTIFY with chan_sip's dialog-info, PIDF and XPIDF bodies.
//! - [`digest`]: digest authentication, server (nonces, stale, replay) and client.
//!
//! Why not rsip: rsip 0.4 drops compact header names, comma-joined Vias, folded lines, IPv6
//! hosts and `tel:` URIs, so a normalising layer in front of it would have to tokenise every
//! header line itself, which is most of a parser. Measured on the same 982-byte INVITE
//! (`benches/sip_parse.rs`): rsip 438,000/s leaving values untyped and unchecked; this parser
//! 411,000/s while normalising and checking Via, From, To, Call-ID, CSeq, Max-Forwards,
//! Contact and Route, which is what lets a message that parses be routed without more errors.
//!
//! Nothing here panics on input: every path from bytes returns a `Result`.
//!
//! # The run loop
//!
//! After every input (`handle`, `handle_timeout`, `send_*`), drain `poll_transmit` (send each
//! datagram) and `poll_event` (act on each), then arm one timer for `poll_timeout`. A UAS
//! answering an INVITE, and a UAC whose REGISTER is challenged and answered (the registrar
//! here is a second endpoint with a [`digest::DigestServer`]):
//!
//! ```
//! use std::time::{Duration, Instant};
//! use starling_sip::digest::{Authorization, Challenge, Credentials, DigestServer, Secret};
//! use starling_sip::transaction::{via_for, Config, Endpoint, Event, Transport};
//! use starling_sip::{HeaderName, Host, MessageHeaders, Method, Request, Response, Uri};
//!
//! let now = Instant::now();
//! let phone = "192.0.2.7:5062".parse().unwrap();
//! let pbx = "192.0.2.1:5060".parse().unwrap();
//!
//! // A UAS answering an INVITE: the endpoint sends 100 Trying itself; we answer 200.
//! let mut uas = Endpoint::new(Config::default());
//! let invite = "INVITE sip:600@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa1;rport\r\n\
//!     From: <sip:alice@192.0.2.1>;tag=f1\r\nTo: <sip:600@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
//!     Contact: <sip:alice@192.0.2.7:5062>\r\nContent-Length: 0\r\n\r\n";
//! uas.handle(now, phone, Transport::Udp, invite.as_bytes());
//! while let Some(event) = uas.poll_event() {
//!     if let Event::Request { tx, request, .. } = event {
//!         let mut ok = Response::to_request(&request, 200);
//!         ok.set_to_tag("as5e3b1c2d");
//!         ok.headers.push(HeaderName::Contact, "<sip:600@192.0.2.1:5060>");
//!         uas.send_response(now, tx, ok);
//!     }
//! }
//! let sent: Vec<String> = std::iter::from_fn(|| uas.poll_transmit())
//!     .map(|t| String::from_utf8_lossy(&t.data).lines().next().unwrap().to_owned())
//!     .collect();
//! assert_eq!(sent, ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
//! assert!(uas.poll_timeout().is_some(), "the 200 is retransmitted until the ACK comes");
//!
//! // A UAC sending REGISTER and answering the 401.
//! let mut uac = Endpoint::new(Config::default());
//! let mut registrar = Endpoint::new(Config::default());
//! let mut digest = DigestServer::new("asterisk", [42; 16], now, Duration::from_secs(30));
//! let register = |seq: u32, branch: &str| {
//!     let mut r = Request::new(Method::Register, Uri::parse("sip:192.0.2.1").unwrap());
//!     let via = via_for(Transport::Udp, Host::V4([192, 0, 2, 7].into()), 5062, &Endpoint::new_branch(branch));
//!     r.headers.push(HeaderName::Via, via.to_string());
//!     r.headers.push(HeaderName::From, "<sip:alice@192.0.2.1>;tag=r1");
//!     r.headers.push(HeaderName::To, "<sip:alice@192.0.2.1>");
//!     r.headers.push(HeaderName::CallId, "reg1");
//!     r.headers.push(HeaderName::CSeq, format!("{seq} REGISTER"));
//!     r.headers.push(HeaderName::Contact, "<sip:alice@192.0.2.7:5062>");
//!     r
//! };
//! uac.send_request(now, register(1, "r1"), pbx, Transport::Udp);
//! let mut answered = None;
//! for _ in 0..4 {
//!     while let Some(t) = uac.poll_transmit() {
//!         registrar.handle(now, phone, Transport::Udp, &t.data);
//!     }
//!     while let Some(event) = registrar.poll_event() {
//!         let Event::Request { tx, request, .. } = event else { continue };
//!         let credentials = request.headers.get(&HeaderName::Authorization).and_then(|a| Authorization::parse(a).ok());
//!         let ok = credentials.is_some_and(|c| digest.verify(&c, "REGISTER", &request.uri.to_string(), Secret::Password("secret"), now).is_ok());
//!         let mut response = Response::to_request(&request, if ok { 200 } else { 401 });
//!         if !ok {
//!             response.headers.push(HeaderName::WwwAuthenticate, digest.challenge(now, false));
//!         }
//!         registrar.send_response(now, tx, response);
//!     }
//!     while let Some(t) = registrar.poll_transmit() {
//!         uac.handle(now, pbx, Transport::Udp, &t.data);
//!     }
//!     while let Some(event) = uac.poll_event() {
//!         let Event::Response { response, .. } = event else { continue };
//!         if response.status == 401 {
//!             let challenge = Challenge::parse(response.headers.get(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
//!             let alice = Credentials { username: "alice".into(), password: Some("secret".into()), ha1: None };
//!             let mut again = register(2, "r2");
//!             let value = alice.answer(&challenge, "REGISTER", "sip:192.0.2.1", "0a4f113b", 1).unwrap();
//!             again.headers.push(HeaderName::Authorization, value);
//!             uac.send_request(now, again, pbx, Transport::Udp);
//!         } else {
//!             answered = Some(response.status);
//!         }
//!     }
//! }
//! assert_eq!(answered, Some(200));
//! ```

pub mod dialog;
pub mod digest;
pub mod header;
pub mod message;
pub mod session;
pub mod subscription;
pub mod transaction;
pub mod typed;
pub mod uri;

pub use header::{Header, HeaderName, Headers};
pub use message::{
    parse, parse_datagram, reason_phrase, Datagram, MessageHeaders, ParseError, ParseErrorKind, Request, Response,
    SipMessage, StreamDecoder, StreamItem,
};
pub use typed::{CSeq, Method, NameAddr, Via};
pub use uri::{Host, Param, Scheme, Uri};
