//! Security events, as Asterisk's `security_events.c` makes them and `res_security_log.c`
//! writes them: one line at the SECURITY level (logger.conf `security` in a channel's levels)
//!
//! ```text
//! [2026-12-07 03:23:17] SECURITY[1234] res_security_log.c: SecurityEvent="InvalidPassword",EventTV="2026-12-07T03:23:17.123+0000",Severity="Error",Service="SIP",EventVersion="2",AccountID="1001",SessionID="0x5f2c9a0e1b7d",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/127.0.0.2/5062",Challenge="...",ReceivedChallenge="...",ReceivedHash="..."
//! ```
//!
//! and a manager event of class `security` named after the type (`Event: InvalidPassword`),
//! with the same fields as headers (Asterisk's `security_event_to_ami_blob`).
//! The fields come in Asterisk's order: the required ones, then the optional ones. Values the
//! peer sent (an account name, a nonce, a hash) have control characters escaped by the
//! logger and `"` written `%22`, so no value can close its quotes and add a field (a forged
//! `RemoteAddress` that fail2ban would read).

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::events::{Event, Events};

/// Which event (Asterisk's names and versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityEventType {
    FailedAcl,
    InvalidAccountId,
    ChallengeResponseFailed,
    InvalidPassword,
    SuccessfulAuth,
    ChallengeSent,
}

impl SecurityEventType {
    pub fn name(self) -> &'static str {
        match self {
            SecurityEventType::FailedAcl => "FailedACL",
            SecurityEventType::InvalidAccountId => "InvalidAccountID",
            SecurityEventType::ChallengeResponseFailed => "ChallengeResponseFailed",
            SecurityEventType::InvalidPassword => "InvalidPassword",
            SecurityEventType::SuccessfulAuth => "SuccessfulAuth",
            SecurityEventType::ChallengeSent => "ChallengeSent",
        }
    }

    /// `EventVersion` (include/asterisk/security_events_defs.h).
    fn version(self) -> u32 {
        match self {
            SecurityEventType::InvalidPassword => 2,
            _ => 1,
        }
    }

    /// `Severity`: successes and challenges are informational, the rest errors.
    fn severity(self) -> &'static str {
        match self {
            SecurityEventType::SuccessfulAuth | SecurityEventType::ChallengeSent => "Informational",
            _ => "Error",
        }
    }
}

/// One security event. `fields` are the event's own, in Asterisk's order (`Challenge`,
/// `ReceivedChallenge`, `ReceivedHash` for InvalidPassword; `UsingPassword` for
/// SuccessfulAuth; `ACLName` for FailedACL; `Challenge`, `Response`, `ExpectedResponse` for
/// ChallengeResponseFailed; `Challenge` for ChallengeSent).
#[derive(Clone, Debug)]
pub struct SecurityEvent {
    pub kind: SecurityEventType,
    /// `SIP`, `AMI`.
    pub service: &'static str,
    pub account_id: String,
    pub session_id: String,
    /// `UDP`, `TCP`, `TLS`.
    pub transport: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub fields: Vec<(&'static str, String)>,
}

/// `IPV4/UDP/127.0.0.1/5060`, as Asterisk's security events write an address.
pub fn address(transport: &str, address: SocketAddr) -> String {
    let family = if address.is_ipv4() { "IPV4" } else { "IPV6" };
    format!("{family}/{transport}/{}/{}", address.ip(), address.port())
}

/// A value as a field holds it: no `"` (written `%22`) and no control character (the logger
/// escapes those; here they are escaped too, for the manager event).
fn clean(value: &str) -> String {
    crate::logger::escape_controls(value).replace('"', "%22")
}

impl SecurityEvent {
    /// The fields, in order, with their values cleaned; `SecurityEvent` first.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let tv = crate::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        let mut all = vec![
            ("SecurityEvent", self.kind.name().to_owned()),
            ("EventTV", tv),
            ("Severity", self.kind.severity().to_owned()),
            ("Service", self.service.to_owned()),
            ("EventVersion", self.kind.version().to_string()),
            ("AccountID", clean(&self.account_id)),
            ("SessionID", clean(&self.session_id)),
            ("LocalAddress", address(self.transport, self.local)),
            ("RemoteAddress", address(self.transport, self.remote)),
        ];
        all.extend(self.fields.iter().map(|(k, v)| (*k, clean(v))));
        all
    }

    /// The line `res_security_log.c` writes: `SecurityEvent="...",EventTV="...",...`.
    pub fn to_line(fields: &[(&'static str, String)]) -> String {
        let mut line = String::with_capacity(256);
        for (i, (key, value)) in fields.iter().enumerate() {
            let _ = write!(line, "{}{key}=\"{value}\"", if i == 0 { "" } else { "," });
        }
        line
    }
}

/// Whether a security event would reach anyone (a log destination with the `security` level,
/// or a manager session): reporters on hot paths (every INVITE) check this first.
pub fn wanted(events: &Events) -> bool {
    crate::logger::security_wanted() || events.has_listeners()
}

/// Reports an event: the SECURITY log line, and the manager event named after its type.
pub fn report(events: &Events, event: &SecurityEvent) {
    if !wanted(events) {
        return;
    }
    let fields = event.to_fields();
    if crate::logger::security_wanted() {
        crate::tracing::info!(target: "res_security_log.c", security = true, "{}", SecurityEvent::to_line(&fields));
    }
    if events.has_listeners() {
        // The manager event is named after the type (`Event: InvalidPassword`, class
        // `security`), as security_event_to_ami_blob makes it; its headers are the fields.
        let mut ami = Event::new(event.kind.name(), "security");
        for (key, value) in fields.iter().skip(1) {
            ami = ami.with(key, value.clone());
        }
        events.publish(ami);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_asterisks_fields_in_order_and_no_forged_field() {
        let event = SecurityEvent {
            kind: SecurityEventType::InvalidPassword,
            service: "SIP",
            account_id: "1001\",RemoteAddress=\"IPV4/UDP/10.9.9.9/5060".into(),
            session_id: "0x1".into(),
            transport: "UDP",
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "[::1]:5062".parse().unwrap(),
            fields: vec![
                ("Challenge", "n1".into()),
                ("ReceivedChallenge", "n\n2".into()),
                ("ReceivedHash", "h".into()),
            ],
        };
        let line = SecurityEvent::to_line(&event.to_fields());
        assert!(line.starts_with("SecurityEvent=\"InvalidPassword\",EventTV=\"20"), "{line}");
        let tail = line.split_once("+0000\",").unwrap().1;
        assert_eq!(
            tail,
            "Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"1001%22,RemoteAddress=%22IPV4/UDP/10.9.9.9/5060\",\
             SessionID=\"0x1\",LocalAddress=\"IPV4/UDP/127.0.0.1/5060\",RemoteAddress=\"IPV6/UDP/::1/5062\",\
             Challenge=\"n1\",ReceivedChallenge=\"n\\n2\",ReceivedHash=\"h\""
        );
    }
}
