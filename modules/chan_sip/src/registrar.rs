//! The registrar: REGISTER from `host=dynamic` peers, with digest authentication, bindings kept
//! in the astdb (family `SIP/Registry`) so they survive a restart, even `kill -9`.
//!
//! Answers, as chan_sip's: no credentials → 401 with a challenge; a right answer → 200 with the
//! binding; a wrong password → 403; credentials whose `uri` is not the Request-URI → 400; a
//! right answer on an expired nonce, or a second request on a nonce answered without `qop` →
//! 401 with `stale=true`; an unknown name → the very same 401/403 as a known one when
//! `alwaysauthreject=yes` (the default), and the same work (digest against a bogus secret), so
//! neither answers nor timing tell which names exist; an expiry below `minexpiry` → 423 with
//! `Min-Expires`; above `maxexpiry` → cut to it; `Expires: 0` or `Contact: *` → unregistered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use starling_core::db::Storage;
use starling_core::tracing;
use starling_sip::digest::{AuthError, Authorization, DigestServer, Secret};
use starling_sip::message::Response;
use starling_sip::{HeaderName, NameAddr, Request};

use crate::config::{PeerHost, SipConf};

/// Where a dynamic peer is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Where its REGISTER came from (what we send to: NAT-safe).
    pub address: SocketAddr,
    pub contact: String,
    pub useragent: String,
    /// Seconds since the epoch when the binding lapses.
    pub expires: u64,
}

/// The bindings, shared with the CLI.
pub type Bindings = Arc<RwLock<HashMap<String, Binding>>>;

const FAMILY: &str = "SIP/Registry";

fn epoch_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Binding {
    fn to_db(&self) -> String {
        format!("{}|{}|{}|{}", self.address, self.expires, self.useragent.replace('|', " "), self.contact)
    }
    fn from_db(value: &str) -> Option<Binding> {
        let mut parts = value.splitn(4, '|');
        Some(Binding {
            address: parts.next()?.parse().ok()?,
            expires: parts.next()?.parse().ok()?,
            useragent: parts.next()?.to_owned(),
            contact: parts.next()?.to_owned(),
        })
    }
    /// Seconds left.
    pub fn remaining(&self) -> u64 {
        self.expires.saturating_sub(epoch_now())
    }
}

/// Reads the bindings of the configured dynamic peers back from the astdb, dropping lapsed ones.
pub fn restore(db: &dyn Storage, conf: &SipConf) -> HashMap<String, Binding> {
    let now = epoch_now();
    let mut bindings = HashMap::new();
    for peer in conf.peers.iter().filter(|p| p.host == PeerHost::Dynamic) {
        match db.get(FAMILY, &peer.name) {
            Ok(Some(value)) => match Binding::from_db(&value) {
                Some(b) if b.expires > now => {
                    bindings.insert(peer.name.clone(), b);
                }
                _ => {
                    let _ = db.del(FAMILY, &peer.name);
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("SIP registry: {e}"),
        }
    }
    bindings
}

/// A peer's binding came (a new or moved contact) or went (unregistered by the phone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingChange {
    Registered(SocketAddr),
    Unregistered,
}

/// Why a request's credentials were not accepted, and so what to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401 with a new challenge (`stale=true` for a right answer on an expired or used-up nonce).
    Challenge { stale: bool },
    /// 400: the credentials' `uri` is not the Request-URI (a replay to another number).
    UriMismatch { uri: String, request_uri: String },
    /// 403, with the nonce and response that failed (for the security event).
    Forbidden { failure: Failure, username: String, nonce: String, response: String },
}

/// What a 403 was for (chan_sip's reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// "Wrong password".
    WrongPassword,
    /// "No matching peer found" (alwaysauthreject: answered as a wrong password).
    UnknownName,
    /// "Username/auth name mismatch".
    UsernameMismatch,
}

impl Failure {
    /// chan_sip's words for it in "Registration from '...' failed for '...' - <reason>".
    pub fn reason(self) -> &'static str {
        match self {
            Failure::WrongPassword => "Wrong password",
            Failure::UnknownName => "No matching peer found",
            Failure::UsernameMismatch => "Username/auth name mismatch",
        }
    }
}

pub struct Registrar {
    digest: DigestServer,
    bindings: Bindings,
    db: Arc<dyn Storage>,
}

impl Registrar {
    /// `lifetime`: how long a nonce is good for (sip.conf `noncelifetime`).
    pub fn new(realm: &str, key: [u8; 16], lifetime: Duration, bindings: Bindings, db: Arc<dyn Storage>) -> Registrar {
        Registrar { digest: DigestServer::new(realm, key, Instant::now(), lifetime), bindings, db }
    }

    /// The current bindings (read-locked).
    pub fn bindings(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Binding>> {
        self.bindings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The `WWW-Authenticate` value for a new challenge.
    pub fn challenge(&self, now: Instant, stale: bool) -> String {
        self.digest.challenge(now, stale)
    }

    /// Checks a request's credentials for `name`: `Ok(true)` when a password was checked,
    /// `Ok(false)` for a peer without a secret; or why not, which says what to answer.
    pub fn authenticate(
        &mut self,
        peer: Option<&crate::config::Peer>,
        request: &Request,
        name: &str,
        now: Instant,
    ) -> Result<bool, Denied> {
        // An unknown name is checked against a secret nobody has: the same work, the same answer.
        let secret = match peer {
            Some(p) => match (&p.md5secret, &p.secret) {
                (Some(ha1), _) => Secret::Ha1(ha1),
                (None, Some(s)) => Secret::Password(s),
                // No secret configured: no challenge at all (Asterisk's check_auth).
                (None, None) => return Ok(false),
            },
            None => Secret::Password("\u{0}starling-no-such-user\u{0}"),
        };
        let challenge = Denied::Challenge { stale: false };
        let Some(value) = request.headers.get(&HeaderName::Authorization) else { return Err(challenge) };
        let Ok(auth) = Authorization::parse(value) else { return Err(challenge) };
        let forbidden = |failure| Denied::Forbidden {
            failure,
            username: auth.username.clone(),
            nonce: auth.nonce.clone(),
            response: auth.response.clone(),
        };
        if auth.username != name {
            return Err(forbidden(Failure::UsernameMismatch));
        }
        let request_uri = request.uri.to_string();
        match self.digest.verify(&auth, request.method.as_str(), &request_uri, secret, now) {
            Ok(()) if peer.is_some() => Ok(true),
            Ok(()) => Err(forbidden(Failure::UnknownName)),
            // A used-up nonce with a right answer: as chan_sip's "Correct auth, but based on
            // stale nonce", a new challenge with stale=true.
            Err(AuthError::Stale | AuthError::Replay) => Err(Denied::Challenge { stale: true }),
            Err(AuthError::UriMismatch(uri)) => Err(Denied::UriMismatch { uri, request_uri }),
            Err(AuthError::UnknownNonce | AuthError::WrongRealm(_) | AuthError::Malformed) => Err(challenge),
            Err(_) if peer.is_none() => Err(forbidden(Failure::UnknownName)),
            Err(_) => Err(forbidden(Failure::WrongPassword)),
        }
    }

    /// Handles an authenticated REGISTER for `name` from `source`: the answer, and whether the
    /// peer's binding came or went (for the manager's PeerStatus).
    pub fn register(
        &mut self,
        conf: &SipConf,
        request: &Request,
        name: &str,
        source: SocketAddr,
        mut response: Response,
    ) -> (Response, Option<BindingChange>) {
        let g = &conf.general;
        let contacts: Vec<&str> = request.headers.get_all(&HeaderName::Contact).collect();
        let header_expires = request.headers.get(&HeaderName::Expires).and_then(|e| e.trim().parse::<u64>().ok());
        let wildcard = contacts.iter().any(|c| c.trim() == "*");
        let first = contacts.iter().find(|c| c.trim() != "*").and_then(|c| NameAddr::parse(c).ok());
        let expires = first
            .as_ref()
            .and_then(|c| c.param("expires").and_then(|p| p.value.as_deref()).and_then(|v| v.parse::<u64>().ok()))
            .or(header_expires)
            .unwrap_or(u64::from(g.defaultexpiry));
        if contacts.is_empty() {
            // A query: answer with the current binding.
            if let Some(b) = self.bindings.read().unwrap_or_else(|p| p.into_inner()).get(name) {
                response.headers.push(HeaderName::Contact, format!("<{}>;expires={}", b.contact, b.remaining()));
            }
            return (response, None);
        }
        if wildcard || expires == 0 {
            let removed = self.bindings.write().unwrap_or_else(|p| p.into_inner()).remove(name);
            let _ = self.db.del(FAMILY, name);
            tracing::info!("Unregistered SIP '{name}'");
            return (response, removed.map(|_| BindingChange::Unregistered));
        }
        if expires < u64::from(g.minexpiry) {
            let mut too_brief = Response::new(423, "Interval Too Brief");
            too_brief.headers = response.headers.clone();
            too_brief.headers.push(HeaderName::MinExpires, g.minexpiry.to_string());
            return (too_brief, None);
        }
        let expires = expires.min(u64::from(g.maxexpiry));
        let Some(contact) = first else { return (Response::new(400, "Bad Request - no Contact"), None) };
        let binding = Binding {
            address: source,
            contact: contact.uri.to_string(),
            useragent: request.headers.get(&HeaderName::UserAgent).unwrap_or("").to_owned(),
            expires: epoch_now() + expires,
        };
        let fresh = self.bindings.read().unwrap_or_else(|p| p.into_inner()).get(name).map(|b| b.contact.clone())
            != Some(binding.contact.clone());
        if let Err(e) = self.db.put(FAMILY, name, &binding.to_db()) {
            tracing::warn!("SIP registry: {e}");
        }
        if fresh {
            starling_core::verbose!(3, "Registered SIP '{name}' at {}", binding.address);
        }
        response.headers.push(HeaderName::Contact, format!("<{}>;expires={expires}", binding.contact));
        response.headers.push(HeaderName::Expires, expires.to_string());
        let change = fresh.then_some(BindingChange::Registered(binding.address));
        self.bindings.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), binding);
        (response, change)
    }

    /// Drops bindings that lapsed; returns their names.
    pub fn expire(&mut self) -> Vec<String> {
        let now = epoch_now();
        let mut gone = Vec::new();
        self.bindings.write().unwrap_or_else(|p| p.into_inner()).retain(|name, b| {
            let keep = b.expires > now;
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        for name in &gone {
            let _ = self.db.del(FAMILY, name);
            tracing::info!("Registration for '{name}' timed out");
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_sip::digest::{Challenge, Credentials};

    fn invite(exten: &str, authorization: Option<&str>) -> Request {
        let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let text = format!(
            "INVITE sip:{exten}@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:alice@pbx>;tag=1\r\n\
             To: <sip:{exten}@pbx>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        match starling_sip::message::parse(text.as_bytes()).unwrap() {
            starling_sip::message::SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    /// What each failure is answered with: no credentials → a challenge; a digest uri that
    /// is not the Request-URI → 400 (for a known name and an unknown one alike); a wrong
    /// password, an unknown name → 403 with the reason logged; a qop-less nonce used twice →
    /// a challenge with stale=true.
    #[test]
    fn what_each_refusal_is_answered_with() {
        let conf = SipConf::parse(
            &starling_core::config::Config::parse_str("sip.conf", "[alice]\ntype=friend\nhost=dynamic\nsecret=pw\n")
                .unwrap(),
        )
        .unwrap();
        let alice = conf.peer("alice", |_| true).unwrap().clone();
        let db: Arc<dyn Storage> = Arc::new(starling_core::db::SqliteStorage::in_memory());
        let mut registrar =
            Registrar::new("asterisk", [3; 16], Duration::from_secs(30), Arc::new(RwLock::new(HashMap::new())), db);
        let now = Instant::now();
        assert_eq!(
            registrar.authenticate(Some(&alice), &invite("100", None), "alice", now),
            Err(Denied::Challenge { stale: false })
        );
        let mut challenge = Challenge::parse(&registrar.challenge(now, false)).unwrap();
        let answer = |password: &str, challenge: &Challenge, nc| {
            let c = Credentials { username: "alice".into(), password: Some(password.into()), ha1: None };
            c.answer(challenge, "INVITE", "sip:100@pbx", "cn", nc).unwrap()
        };
        let for_100 = answer("pw", &challenge, 1);
        let replay = registrar.authenticate(Some(&alice), &invite("200", Some(&for_100)), "alice", now);
        assert_eq!(replay, Err(Denied::UriMismatch { uri: "sip:100@pbx".into(), request_uri: "sip:200@pbx".into() }));
        let unknown = registrar.authenticate(None, &invite("200", Some(&for_100)), "alice", now);
        assert!(matches!(unknown, Err(Denied::UriMismatch { .. })), "{unknown:?}");
        assert_eq!(registrar.authenticate(Some(&alice), &invite("100", Some(&for_100)), "alice", now), Ok(true));
        let wrong =
            registrar.authenticate(Some(&alice), &invite("100", Some(&answer("nope", &challenge, 2))), "alice", now);
        assert!(matches!(wrong, Err(Denied::Forbidden { failure: Failure::WrongPassword, .. })), "{wrong:?}");
        let unknown = registrar.authenticate(None, &invite("100", Some(&answer("pw", &challenge, 3))), "alice", now);
        assert!(matches!(unknown, Err(Denied::Forbidden { failure: Failure::UnknownName, .. })), "{unknown:?}");
        challenge = Challenge::parse(&registrar.challenge(now, false)).unwrap();
        challenge.qop.clear();
        let once = answer("pw", &challenge, 1);
        assert_eq!(registrar.authenticate(Some(&alice), &invite("100", Some(&once)), "alice", now), Ok(true));
        assert_eq!(
            registrar.authenticate(Some(&alice), &invite("100", Some(&once)), "alice", now),
            Err(Denied::Challenge { stale: true })
        );
        assert_eq!(Failure::UnknownName.reason(), "No matching peer found");
    }

    #[test]
    fn bindings_round_trip_through_the_database_format() {
        let b = Binding {
            address: "192.0.2.7:5062".parse().unwrap(),
            contact: "sip:alice-0x1@192.0.2.7:5062;transport=udp".into(),
            useragent: "baresip v1.0|x".into(),
            expires: 1_700_000_000,
        };
        let back = Binding::from_db(&b.to_db()).unwrap();
        assert_eq!(back.contact, b.contact);
        assert_eq!(back.useragent, "baresip v1.0 x");
        assert_eq!((back.address, back.expires), (b.address, b.expires));
        assert!(Binding::from_db("garbage").is_none());
    }
}
