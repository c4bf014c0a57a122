//! Any text as `Authorization` and `WWW-Authenticate` values, and a digest exchange between
//! Starling's server and client with names and passwords from the input.
//!
//! The input's lines: an Authorization value, a WWW-Authenticate value, then a realm, a user
//! name, a password, a method and a URI (the Request-URI the answers are checked against).
//!
//! Must hold: nothing panics; credentials nobody computed are never accepted; a challenge our
//! client can answer yields an Authorization that parses back to what it was given; our own
//! challenge, answered by our client, verifies once and is then a replay.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use starling_sip::digest::{AuthError, Authorization, Challenge, Credentials, DigestServer, Secret};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or("");
    let (authorization, challenge) = (next(), next());
    let (realm, username, password, method, uri) = (next(), next(), next(), next(), next());

    let epoch = Instant::now();
    let mut server = DigestServer::new(realm, [7; 16], epoch, Duration::from_secs(30));
    if let Ok(auth) = Authorization::parse(authorization) {
        for secret in [Secret::Password(password), Secret::Ha1(password)] {
            let verdict = server.verify(&auth, method, &auth.uri, secret, epoch + Duration::from_secs(1));
            assert!(verdict.is_err(), "forged credentials accepted: {authorization:?}");
        }
    }
    let client = Credentials { username: username.to_owned(), password: Some(password.to_owned()), ha1: None };
    // Our client writes values between quotes as they are (as Asterisk's build_reply_digest does):
    // only values without a quote or backslash come back the same.
    let plain = |s: &str| !s.contains(['"', '\\']);
    if let Some(challenge) = Challenge::parse(challenge) {
        if let Some(answer) = client.answer(&challenge, method, uri, "0a4f113b", 1) {
            if [&challenge.realm, &challenge.nonce, username, uri].iter().all(|s| plain(s))
                && challenge.opaque.as_deref().is_none_or(plain)
            {
                let auth = Authorization::parse(&answer).unwrap_or_else(|e| panic!("{answer:?} does not parse: {e}"));
                assert_eq!((auth.username.as_str(), auth.uri.as_str()), (username, uri));
                assert_eq!((auth.realm, auth.nonce), (challenge.realm.clone(), challenge.nonce.clone()));
            }
        }
    }
    if [realm, username, uri].iter().all(|s| plain(s)) {
        let now = epoch + Duration::from_millis(1500);
        let ours = server.challenge(now, false);
        let parsed = Challenge::parse(&ours).unwrap_or_else(|| panic!("our challenge {ours:?} does not parse"));
        let answer = client.answer(&parsed, method, uri, "0a4f113b", 1).expect("our own challenge is answered");
        let auth = Authorization::parse(&answer).unwrap_or_else(|e| panic!("{answer:?} does not parse: {e}"));
        assert_eq!(server.verify(&auth, method, uri, Secret::Password(password), now), Ok(()), "{answer:?}");
        assert_eq!(server.verify(&auth, method, uri, Secret::Password(password), now), Err(AuthError::Replay));
    }
});
