//! Digest authentication (RFC 2617, RFC 8760's MD5), both sides.
//!
//! **Server** ([`DigestServer`]): [`DigestServer::challenge`] makes the `WWW-Authenticate` /
//! `Proxy-Authenticate` value; [`DigestServer::verify`] checks an `Authorization` /
//! `Proxy-Authorization` value against a password or a pre-hashed HA1 (`md5secret`). Nonces
//! carry their own time and a keyed hash, so any nonce this server made can be checked without
//! remembering it; an expired one is answered with `stale=true` (the client retries without
//! asking its user). With `qop=auth`, each nonce's `nc` must grow, and a nonce answered
//! without `qop` is good for one request (used ones are remembered until they expire), so a
//! captured `Authorization` cannot be replayed; its `uri` must name the Request-URI (RFC 2617
//! §3.2.2.5, compared as RFC 3261 §19.1.4 compares URIs), so it cannot be replayed to another
//! number either. The work done is the same for a known and an unknown
//! user (the caller verifies unknown users against a bogus secret), so neither the answer nor
//! its timing reveals which names exist.
//!
//! **Client** ([`Challenge::parse`], [`Credentials::answer`]): answers a challenge with
//! `cnonce` and `nc` when the server offers `qop=auth`.
//!
//! Time and randomness come from the caller (`now`, the server key, the client `cnonce`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::typed::quoted_end;

/// `md5(data)` as 32 lowercase hex digits.
pub fn md5_hex(data: &[u8]) -> String {
    let digest = md5::compute(data);
    let mut out = String::with_capacity(32);
    for b in digest.0 {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// HA1 = MD5(username:realm:password): what `md5secret` holds.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The response digest, with or without `qop=auth`.
fn response_digest(ha1: &str, nonce: &str, qop: Option<(&str, &str)>, method: &str, uri: &str) -> String {
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    match qop {
        Some((nc, cnonce)) => md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()),
        None => md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Parses `Digest a="b", c=d` into the scheme's parameters (names lowercased, values unquoted).
fn parse_params(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.trim_start();
    let (scheme, mut rest) = rest.split_at(rest.find(char::is_whitespace)?);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if rest.is_empty() {
            return Some(params);
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || name.contains([' ', ',', '"']) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let value = if rest.starts_with('"') {
            let end = quoted_end(rest)?;
            let v = crate::typed::unquote(&rest[..end]);
            rest = &rest[end..];
            v
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let v = rest[..end].trim().to_owned();
            rest = &rest[end..];
            v
        };
        params.insert(name, value);
    }
}

/// Why a request's credentials were not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no Digest credentials")]
    Malformed,
    #[error("credentials for realm '{0}'")]
    WrongRealm(String),
    #[error("the nonce was not made here")]
    UnknownNonce,
    /// The credentials were right but the nonce is old: challenge again with `stale=true`.
    #[error("the nonce has expired")]
    Stale,
    /// A right answer, but with a nonce already used up (an `nc` that did not grow, or a
    /// second request on a nonce answered without `qop`): challenge again with `stale=true`.
    #[error("the nonce count did not increase, or a nonce without qop was used again (a replay)")]
    Replay,
    /// The credentials' `uri` is not the Request-URI: answer 400.
    #[error("the digest uri '{0}' is not the Request-URI")]
    UriMismatch(String),
    #[error("unsupported algorithm or qop")]
    Unsupported,
    #[error("wrong password")]
    Mismatch,
}

/// The parts of an `Authorization` value a caller needs before verifying (whose secret to use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
    pub opaque: Option<String>,
}

impl Authorization {
    pub fn parse(value: &str) -> Result<Authorization, AuthError> {
        let mut p = parse_params(value).ok_or(AuthError::Malformed)?;
        let mut take = |k: &str| p.remove(k);
        Ok(Authorization {
            username: take("username").ok_or(AuthError::Malformed)?,
            realm: take("realm").ok_or(AuthError::Malformed)?,
            nonce: take("nonce").ok_or(AuthError::Malformed)?,
            uri: take("uri").ok_or(AuthError::Malformed)?,
            response: take("response").ok_or(AuthError::Malformed)?,
            qop: take("qop"),
            nc: take("nc"),
            cnonce: take("cnonce"),
            algorithm: take("algorithm"),
            opaque: take("opaque"),
        })
    }
}

/// The secret to check against: a password, or HA1 as `md5secret` stores it.
#[derive(Clone, Debug)]
pub enum Secret<'a> {
    Password(&'a str),
    Ha1(&'a str),
}

/// The server side; one per realm or per process.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    key: [u8; 16],
    epoch: Instant,
    lifetime: Duration,
    /// Highest `nc` seen per live nonce (qop=auth), for replay protection; `u32::MAX` for a
    /// nonce used without qop (good for one request only).
    counts: HashMap<String, (u32, Instant)>,
    /// When `counts` was last rid of lapsed nonces (at most once a second, not per request).
    pruned: Instant,
    /// Makes every nonce unique, even several in one millisecond: each client counts `nc`
    /// from 1 on its own nonce, and a shared one would look like a replay.
    serial: std::sync::atomic::AtomicU64,
}

impl DigestServer {
    /// `key` must be random and secret (it authenticates nonces); `epoch` is any instant
    /// before the first call; a nonce is good for `lifetime`, then answered `stale=true`.
    pub fn new(realm: impl Into<String>, key: [u8; 16], epoch: Instant, lifetime: Duration) -> DigestServer {
        DigestServer {
            realm: realm.into(),
            key,
            epoch,
            lifetime,
            counts: HashMap::new(),
            pruned: epoch,
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn sign(&self, stamp: &str) -> String {
        let mut data = Vec::with_capacity(48);
        data.extend_from_slice(&self.key);
        data.extend_from_slice(stamp.as_bytes());
        data.extend_from_slice(self.realm.as_bytes());
        md5_hex(&data)
    }

    /// A fresh nonce, unique to this challenge: its time (ms since the epoch) and a serial
    /// number, in hex, then a keyed hash of both.
    pub fn nonce(&self, now: Instant) -> String {
        let millis = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let serial = self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = format!("{millis:x}.{serial:x}");
        let signature = self.sign(&stamp);
        format!("{stamp}{signature}")
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) value.
    pub fn challenge(&self, now: Instant, stale: bool) -> String {
        format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{}",
            self.realm,
            self.nonce(now),
            if stale { ", stale=true" } else { "" }
        )
    }

    /// When a nonce was made, if this server made it.
    fn nonce_time(&self, nonce: &str) -> Option<Instant> {
        if nonce.len() <= 32 || !nonce.is_ascii() {
            return None;
        }
        let (stamp, signature) = nonce.split_at(nonce.len() - 32);
        let millis = u64::from_str_radix(stamp.split_once('.')?.0, 16).ok()?;
        constant_time_eq(self.sign(stamp).as_bytes(), signature.as_bytes())
            .then(|| self.epoch + Duration::from_millis(millis))
    }

    /// How long a nonce is good for.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Checks credentials for `method` on `request_uri` against `secret`. On `Err(Stale)` or
    /// `Err(Replay)` challenge again with `stale=true`; on `Err(UriMismatch)` answer 400; on
    /// any other error, challenge again (or answer 403).
    pub fn verify(
        &mut self,
        auth: &Authorization,
        method: &str,
        request_uri: &str,
        secret: Secret<'_>,
        now: Instant,
    ) -> Result<(), AuthError> {
        if now.saturating_duration_since(self.pruned) >= Duration::from_secs(1) {
            self.counts.retain(|_, (_, made)| now.saturating_duration_since(*made) <= self.lifetime);
            self.pruned = now;
        }
        if auth.realm != self.realm {
            return Err(AuthError::WrongRealm(auth.realm.clone()));
        }
        if !same_uri(&auth.uri, request_uri) {
            return Err(AuthError::UriMismatch(auth.uri.clone()));
        }
        if auth.algorithm.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
            return Err(AuthError::Unsupported);
        }
        let qop = match (auth.qop.as_deref(), &auth.nc, &auth.cnonce) {
            (None, _, _) => None,
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                let count = u32::from_str_radix(nc, 16).map_err(|_| AuthError::Malformed)?;
                Some((nc.as_str(), cnonce.as_str(), count))
            }
            _ => return Err(AuthError::Unsupported),
        };
        let ha1 = match secret {
            Secret::Password(p) => ha1(&auth.username, &self.realm, p),
            Secret::Ha1(h) => h.to_ascii_lowercase(),
        };
        let expected = response_digest(&ha1, &auth.nonce, qop.map(|(nc, c, _)| (nc, c)), method, &auth.uri);
        let made = self.nonce_time(&auth.nonce);
        let matches = constant_time_eq(expected.as_bytes(), auth.response.to_ascii_lowercase().as_bytes());
        let Some(made) = made else { return Err(AuthError::UnknownNonce) };
        if !matches {
            return Err(AuthError::Mismatch);
        }
        if now.saturating_duration_since(made) > self.lifetime {
            return Err(AuthError::Stale);
        }
        // Without qop the nonce is used up at once (u32::MAX: no count can follow it).
        let count = qop.map_or(u32::MAX, |(_, _, count)| count);
        let last = self.counts.entry(auth.nonce.clone()).or_insert((0, made));
        if last.0 == u32::MAX || count <= last.0 {
            return Err(AuthError::Replay);
        }
        last.0 = count;
        Ok(())
    }
}

/// Whether the credentials' `uri` names the Request-URI: the same text, or the same SIP URI
/// by RFC 3261 §19.1.4 (escapes, host case, parameter order).
fn same_uri(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri == request_uri
        || matches!(
            (crate::uri::Uri::parse(digest_uri), crate::uri::Uri::parse(request_uri)),
            (Ok(a), Ok(b)) if a.equivalent(&b)
        )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A challenge received in a 401/407.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Option<String>,
    /// The qop values offered (`auth`, `auth-int`).
    pub qop: Vec<String>,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> Option<Challenge> {
        let mut p = parse_params(value)?;
        Some(Challenge {
            realm: p.remove("realm")?,
            nonce: p.remove("nonce")?,
            opaque: p.remove("opaque"),
            algorithm: p.remove("algorithm"),
            qop: p
                .remove("qop")
                .map(|q| q.split(',').map(|s| s.trim().to_ascii_lowercase()).collect())
                .unwrap_or_default(),
            stale: p.remove("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// What a client authenticates with.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    /// A password, or HA1 (`md5secret`).
    pub password: Option<String>,
    pub ha1: Option<String>,
}

impl Credentials {
    /// The `Authorization` value answering `challenge` for `method` on `uri`. `cnonce` is the
    /// caller's random string, `nc` the count of requests made with this nonce (from 1).
    /// `None` for an algorithm other than MD5 or a qop other than auth.
    pub fn answer(&self, challenge: &Challenge, method: &str, uri: &str, cnonce: &str, nc: u32) -> Option<String> {
        if challenge.algorithm.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
            return None;
        }
        let ha1 = match (&self.ha1, &self.password) {
            (Some(h), _) => h.to_ascii_lowercase(),
            (None, Some(p)) => ha1(&self.username, &challenge.realm, p),
            (None, None) => ha1(&self.username, &challenge.realm, ""),
        };
        let use_qop = challenge.qop.iter().any(|q| q == "auth");
        if !challenge.qop.is_empty() && !use_qop {
            return None;
        }
        let nc = format!("{nc:08x}");
        let response = response_digest(&ha1, &challenge.nonce, use_qop.then_some((nc.as_str(), cnonce)), method, uri);
        let mut value = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5",
            self.username, challenge.realm, challenge.nonce
        );
        if use_qop {
            let _ = write!(value, ", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
        }
        if let Some(opaque) = &challenge.opaque {
            let _ = write!(value, ", opaque=\"{opaque}\"");
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> (DigestServer, Instant) {
        let epoch = Instant::now();
        (DigestServer::new("asterisk", [7; 16], epoch, Duration::from_secs(30)), epoch)
    }

    fn alice() -> Credentials {
        Credentials { username: "alice".into(), password: Some("secret".into()), ha1: None }
    }

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5, with qop=auth.
        let ha1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = response_digest(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn a_client_answers_and_the_server_accepts_once() {
        let (mut server, epoch) = server();
        let now = epoch + Duration::from_secs(1);
        let challenge = Challenge::parse(&server.challenge(now, false)).unwrap();
        assert_eq!(challenge.qop, ["auth"]);
        let value = alice().answer(&challenge, "REGISTER", "sip:asterisk", "c0ffee", 1).unwrap();
        let auth = Authorization::parse(&value).unwrap();
        assert_eq!(auth.username, "alice");
        assert_eq!(server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now), Ok(()));
        assert_eq!(
            server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now),
            Err(AuthError::Replay)
        );
        let next = Authorization::parse(&alice().answer(&challenge, "REGISTER", "sip:asterisk", "c0ffee", 2).unwrap())
            .unwrap();
        assert_eq!(server.verify(&next, "REGISTER", &next.uri, Secret::Password("secret"), now), Ok(()));
    }

    /// Two challenges in the same millisecond get two nonces: each client counts nc from 1
    /// on its own, and both are let in (a shared nonce made the second a "replay").
    #[test]
    fn challenges_in_one_millisecond_have_their_own_nonces() {
        let (mut server, epoch) = server();
        let now = epoch + Duration::from_millis(1500);
        let first = Challenge::parse(&server.challenge(now, false)).unwrap();
        let second = Challenge::parse(&server.challenge(now, false)).unwrap();
        assert_ne!(first.nonce, second.nonce);
        for challenge in [&first, &second] {
            let auth =
                Authorization::parse(&alice().answer(challenge, "REGISTER", "sip:pbx", "c", 1).unwrap()).unwrap();
            assert_eq!(server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now), Ok(()));
        }
        let tampered = Challenge { nonce: first.nonce.replacen('.', ".1", 1), ..first.clone() };
        let auth = Authorization::parse(&alice().answer(&tampered, "REGISTER", "sip:pbx", "c", 1).unwrap()).unwrap();
        assert_eq!(
            server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now),
            Err(AuthError::UnknownNonce)
        );
    }

    #[test]
    fn md5secret_wrong_passwords_stale_and_foreign_nonces() {
        let (mut server, epoch) = server();
        let now = epoch + Duration::from_secs(1);
        let challenge = Challenge::parse(&server.challenge(now, false)).unwrap();
        let by_ha1 =
            Credentials { username: "alice".into(), password: None, ha1: Some(ha1("alice", "asterisk", "secret")) };
        let auth = Authorization::parse(&by_ha1.answer(&challenge, "INVITE", "sip:100@pbx", "x", 1).unwrap()).unwrap();
        assert_eq!(
            server.verify(&auth, "INVITE", &auth.uri, Secret::Ha1(&ha1("alice", "asterisk", "secret")), now),
            Ok(())
        );
        let auth = Authorization::parse(&alice().answer(&challenge, "INVITE", "sip:100@pbx", "x", 2).unwrap()).unwrap();
        assert_eq!(server.verify(&auth, "INVITE", &auth.uri, Secret::Password("wrong"), now), Err(AuthError::Mismatch));
        assert_eq!(
            server.verify(&auth, "BYE", &auth.uri, Secret::Password("secret"), now),
            Err(AuthError::Mismatch),
            "method is signed"
        );
        let later = now + Duration::from_secs(31);
        let auth = Authorization::parse(&alice().answer(&challenge, "INVITE", "sip:100@pbx", "x", 3).unwrap()).unwrap();
        assert_eq!(server.verify(&auth, "INVITE", &auth.uri, Secret::Password("secret"), later), Err(AuthError::Stale));
        assert!(server.challenge(later, true).ends_with(", stale=true"));
        let forged = Challenge { nonce: "1234".repeat(10), ..challenge.clone() };
        let auth = Authorization::parse(&alice().answer(&forged, "INVITE", "sip:100@pbx", "x", 1).unwrap()).unwrap();
        assert_eq!(
            server.verify(&auth, "INVITE", &auth.uri, Secret::Password("secret"), now),
            Err(AuthError::UnknownNonce)
        );
    }

    #[test]
    fn without_qop_and_with_auth_int_offered() {
        let (mut server, epoch) = server();
        let now = epoch + Duration::from_secs(2);
        let mut challenge = Challenge::parse(&server.challenge(now, false)).unwrap();
        challenge.qop.clear();
        let value = alice().answer(&challenge, "REGISTER", "sip:pbx", "c", 1).unwrap();
        assert!(!value.contains("qop"));
        let auth = Authorization::parse(&value).unwrap();
        assert_eq!(server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now), Ok(()));
        // Without qop a nonce is good for one request: the same answer again is a replay...
        assert_eq!(
            server.verify(&auth, "REGISTER", &auth.uri, Secret::Password("secret"), now),
            Err(AuthError::Replay)
        );
        // ...and so is that nonce answered with qop afterwards.
        let mut with_qop = challenge.clone();
        with_qop.qop = vec!["auth".into()];
        let again = Authorization::parse(&alice().answer(&with_qop, "REGISTER", "sip:pbx", "c", 9).unwrap()).unwrap();
        assert_eq!(
            server.verify(&again, "REGISTER", "sip:pbx", Secret::Password("secret"), now),
            Err(AuthError::Replay)
        );
        // A used nonce is forgotten once it has expired (it is stale by then anyway).
        let later = now + Duration::from_secs(32);
        let _ = server.verify(&again, "REGISTER", "sip:pbx", Secret::Password("secret"), later);
        assert!(server.counts.is_empty(), "{:?}", server.counts);
        let offered = Challenge::parse("Digest realm=\"x\", nonce=\"n\", qop=\"auth,auth-int\", opaque=\"o\"").unwrap();
        assert_eq!(offered.qop, ["auth", "auth-int"]);
        let value = alice().answer(&offered, "INVITE", "sip:a@b", "c", 1).unwrap();
        assert!(value.contains("qop=auth, nc=00000001, cnonce=\"c\"") && value.ends_with("opaque=\"o\""), "{value}");
        let only_int = Challenge::parse("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert_eq!(alice().answer(&only_int, "INVITE", "sip:a@b", "c", 1), None);
    }

    /// Credentials made for one Request-URI do not open another (RFC 2617 §3.2.2.5: 400):
    /// INVITE credentials captured for 100 replayed to 200. The same URI written otherwise
    /// (host case, escapes, parameter order) is the same URI (RFC 3261 §19.1.4).
    #[test]
    fn the_digest_uri_must_name_the_request_uri() {
        let (mut server, epoch) = server();
        let now = epoch + Duration::from_secs(1);
        let challenge = Challenge::parse(&server.challenge(now, false)).unwrap();
        let answer =
            |nc, uri| Authorization::parse(&alice().answer(&challenge, "INVITE", uri, "x", nc).unwrap()).unwrap();
        let for_100 = answer(1, "sip:100@pbx.example;user=phone;transport=udp");
        assert_eq!(
            server.verify(&for_100, "INVITE", "sip:200@pbx.example", Secret::Password("secret"), now),
            Err(AuthError::UriMismatch("sip:100@pbx.example;user=phone;transport=udp".into()))
        );
        assert_eq!(
            server.verify(
                &for_100,
                "INVITE",
                "sip:%31%30%30@PBX.example;transport=UDP;user=phone",
                Secret::Password("secret"),
                now
            ),
            Ok(())
        );
        let not_a_uri = answer(2, "*");
        assert!(matches!(
            server.verify(&not_a_uri, "INVITE", "sip:100@pbx.example", Secret::Password("secret"), now),
            Err(AuthError::UriMismatch(_))
        ));
    }

    /// The lifetime is the server's (sip.conf `noncelifetime`): with a fake clock, a right
    /// answer is accepted just before it and answered `Stale` just after, for any method.
    #[test]
    fn nonces_go_stale_after_the_configured_lifetime() {
        let epoch = Instant::now();
        let mut server = DigestServer::new("asterisk", [1; 16], epoch, Duration::from_secs(5));
        for (i, method) in ["REGISTER", "INVITE"].into_iter().enumerate() {
            let made = epoch + Duration::from_secs(10 * i as u64);
            let challenge = Challenge::parse(&server.challenge(made, false)).unwrap();
            let answer = |nc| {
                Authorization::parse(&alice().answer(&challenge, method, "sip:100@pbx", "x", nc).unwrap()).unwrap()
            };
            let (first, second) = (answer(1), answer(2));
            let within = made + Duration::from_millis(4_999);
            assert_eq!(server.verify(&first, method, "sip:100@pbx", Secret::Password("secret"), within), Ok(()));
            let after = made + Duration::from_millis(5_001);
            assert_eq!(
                server.verify(&second, method, "sip:100@pbx", Secret::Password("secret"), after),
                Err(AuthError::Stale),
                "{method}"
            );
            // A wrong password stays wrong, stale or not: stale=true is only for right answers.
            assert_eq!(
                server.verify(&second, method, "sip:100@pbx", Secret::Password("nope"), after),
                Err(AuthError::Mismatch)
            );
        }
    }

    #[test]
    fn malformed_credentials() {
        assert_eq!(Authorization::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), Err(AuthError::Malformed));
        assert_eq!(Authorization::parse("Digest username=\"a"), Err(AuthError::Malformed));
        assert_eq!(Authorization::parse("Digest username=\"a\""), Err(AuthError::Malformed));
        assert!(Challenge::parse("Digest nonce=\"n\"").is_none());
    }
}
