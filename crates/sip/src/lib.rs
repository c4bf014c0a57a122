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
//!
//! Why not rsip: rsip 0.4 drops compact header names, comma-joined Vias, folded lines, IPv6
//! hosts and `tel:` URIs, so every message would need a normalising pass before it, and rsip
//! alone already parses below the 250,000 INVITEs/s this stack must reach; one hand-written
//! pass that normalises while it parses does both jobs (see `benches/sip_parse.rs`).
//!
//! Nothing here panics on input: every path from bytes returns a `Result`.

pub mod header;
pub mod message;
pub mod typed;
pub mod uri;

pub use header::{Header, HeaderName, Headers};
pub use message::{
    parse, parse_datagram, reason_phrase, Datagram, MessageHeaders, ParseError, ParseErrorKind, Request, Response,
    SipMessage, StreamDecoder, StreamItem,
};
pub use typed::{CSeq, Method, NameAddr, Via};
pub use uri::{Host, Param, Scheme, Uri};
