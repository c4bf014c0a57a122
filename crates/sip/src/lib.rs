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

pub mod dialog;
pub mod digest;
pub mod header;
pub mod message;
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
