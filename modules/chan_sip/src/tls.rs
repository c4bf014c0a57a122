//! SIP over TLS (`tlsenable=yes`): sip.conf's `tls*` keys of `[general]` and the rustls
//! configurations they make are starling-tls's (as chan_sip's are Asterisk's tcptls.c's,
//! shared with the manager); what is SIP's own is the port. The connections themselves are
//! `tcp`'s, with TLS on the stream: see `crate::tcp`. `sip reload` makes the configurations
//! again from the files (a renewed certificate): the connections made after it use them.

pub use starling_tls::{TlsConf, TlsContext};

/// The port SIP over TLS listens on and is sent to by default (RFC 3261 §19.1.2).
pub const STANDARD_TLS_PORT: u16 = 5061;

/// The TLS configurations in use: read by the monitor for each new connection, replaced by
/// `sip reload`.
pub type TlsSlot = std::sync::Arc<std::sync::RwLock<std::sync::Arc<TlsContext>>>;
