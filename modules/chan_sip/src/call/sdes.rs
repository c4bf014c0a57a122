//! A call's SDES-SRTP (RFC 4568): which `a=crypto` lines our offers and answers carry, what
//! theirs must carry, and the [`Srtp`] that protects and unprotects the call's packets once a
//! line is agreed. It reads no socket: the call's task asks it for SDP lines and hands it
//! packets, as chan_sip's `sip_srtp` is used by `process_sdp` and `add_sdp`.
//!
//! The rules, chan_sip's (`process_sdp`, `process_crypto`) unless said:
//!
//! - `encryption=yes` offers `RTP/SAVP` with one line per suite we have, and refuses (488) a
//!   plain offer: "Matched device setup to use SRTP, but request was not!".
//! - An `RTP/SAVP` offer is answered with our own key for the first line we can use, whatever
//!   `encryption` says; one with no such line is refused: "Can't provide secure audio requested
//!   in SDP offer".
//! - An answer to our SRTP offer without a line we offered ends the call: "Failed to receive
//!   SDP offer/answer with required SRTP crypto attributes for audio"; crypto in an answer to a
//!   plain offer is ignored: "Ignoring unexpected crypto attribute in SDP answer".
//! - Starling's own rule (as PJSIP's, not chan_sip's): a key is only ever written into SDP that
//!   goes over TLS. An SDES offer over UDP or TCP, or a call to an `encryption=yes` peer over
//!   them, is refused with a WARNING that says so.
//! - Re-keying: each new offer/answer may bring the far end's new key; our key stays for the
//!   dialog, and a direction whose key is unchanged keeps its SRTP state ([`Srtp::rekey`]).

use starling_media::sdes::{self, Crypto};
use starling_media::sdp::RemoteMedia;
use starling_media::srtp::{MasterKey, SharedSrtp, Srtp, SrtpError, Suite};

/// Why an SDP exchange cannot go on with the SRTP it asks for: the WARNING line to log (the
/// offer is answered 488; an answer ends the call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// A call's SDES state (see the module's header).
#[derive(Debug, Default)]
pub struct CallSrtp {
    /// The peer's (or `[general]`'s) `encryption`.
    pub encryption: bool,
    /// The call's signalling runs over TLS: keys may be written.
    pub tls: bool,
    /// Our master keys, one per suite, made when first needed and kept for the dialog.
    ours: Vec<MasterKey>,
    /// The lines of our last offer (an answer's tag must name one of them).
    offered: Vec<Crypto>,
    /// The agreed suite's keys: ours, theirs.
    agreed: Option<(MasterKey, MasterKey)>,
    /// Shared with the native relay while it relays the call (a re-key reaches it too).
    srtp: Option<SharedSrtp>,
}

fn lock(srtp: &SharedSrtp) -> std::sync::MutexGuard<'_, Srtp> {
    srtp.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallSrtp {
    pub fn new(encryption: bool, tls: bool) -> CallSrtp {
        CallSrtp { encryption, tls, ..CallSrtp::default() }
    }

    /// The suite agreed, once SRTP is on.
    pub fn suite(&self) -> Option<Suite> {
        self.srtp.as_ref().map(|srtp| lock(srtp).suite())
    }

    /// The call's SRTP once keyed, for a native relay to open and seal the call's packets
    /// with: the same contexts, so the streams stay continuous (see [`SharedSrtp`]).
    pub fn shared(&self) -> Option<SharedSrtp> {
        self.srtp.clone()
    }

    /// SRTP is required (`encryption=yes`) or agreed: a packet that cannot be unprotected is
    /// dropped, never taken as plain RTP.
    pub fn secure(&self) -> bool {
        self.encryption || self.srtp.is_some()
    }

    fn key(&mut self, suite: Suite) -> MasterKey {
        if let Some(key) = self.ours.iter().find(|k| k.suite == suite) {
            return key.clone();
        }
        // ThreadRng: ChaCha12 seeded and reseeded from getrandom (see ids.rs).
        let key = MasterKey::generate(suite, |bytes| rand::fill(bytes));
        self.ours.push(key.clone());
        key
    }

    /// The `a=crypto` lines of our next offer: none for a plain call; every suite we have (the
    /// 80-bit tag first) for an `encryption=yes` call; the suite agreed once there is one.
    pub fn offer(&mut self) -> Result<Vec<Crypto>, Refusal> {
        let suites: Vec<Suite> = match &self.agreed {
            Some((ours, _)) => vec![ours.suite],
            None if self.encryption => Suite::ALL.to_vec(),
            None => Vec::new(),
        };
        if !suites.is_empty() && !self.tls {
            return Err(Refusal(
                "Not sending SRTP keys (a=crypto) in clear: encryption=yes needs transport=tls".to_owned(),
            ));
        }
        self.offered = suites.into_iter().zip(1..).map(|(suite, tag)| Crypto::new(tag, self.key(suite))).collect();
        Ok(self.offered.clone())
    }

    /// The far end's offer: the one `a=crypto` line of our answer (none for plain RTP), SRTP
    /// keyed with it; or why the offer is refused (488).
    pub fn answer(&mut self, offer: &RemoteMedia) -> Result<Vec<Crypto>, Refusal> {
        if !offer.secure {
            if self.encryption {
                return Err(Refusal("Matched device setup to use SRTP, but request was not!".to_owned()));
            }
            if self.srtp.is_some() {
                return Err(Refusal(
                    "Failed to receive SDP offer/answer with required SRTP crypto attributes for audio".to_owned(),
                ));
            }
            return Ok(Vec::new());
        }
        let Some(theirs) = sdes::choose(&offer.crypto) else {
            return Err(Refusal(if offer.crypto.is_empty() {
                "Rejecting secure audio stream without encryption details".to_owned()
            } else {
                "Can't provide secure audio requested in SDP offer".to_owned()
            }));
        };
        if !self.tls {
            return Err(Refusal(
                "Not answering an SRTP offer (a=crypto) received over an unencrypted transport: \
                 keys are only sent over TLS"
                    .to_owned(),
            ));
        }
        let (tag, remote) = (theirs.tag, theirs.key.clone());
        let ours = self.key(remote.suite);
        self.agree(ours.clone(), remote)?;
        Ok(vec![Crypto::new(tag, ours)])
    }

    /// The far end's answer to our offer: SRTP keyed with the line it took, or why the call
    /// cannot go on.
    pub fn take_answer(&mut self, answer: &RemoteMedia) -> Result<(), Refusal> {
        if self.offered.is_empty() {
            if !answer.crypto.is_empty() {
                starling_core::tracing::warn!("Ignoring unexpected crypto attribute in SDP answer");
            }
            return Ok(());
        }
        let taken = answer
            .crypto
            .iter()
            .find(|c| c.usable() && self.offered.iter().any(|ours| ours.tag == c.tag && ours.key.suite == c.key.suite));
        match taken {
            Some(theirs) if answer.secure => {
                let ours = self.key(theirs.key.suite);
                self.agree(ours, theirs.key.clone())
            }
            _ => Err(Refusal(
                "Failed to receive SDP offer/answer with required SRTP crypto attributes for audio".to_owned(),
            )),
        }
    }

    fn agree(&mut self, ours: MasterKey, theirs: MasterKey) -> Result<(), Refusal> {
        let keyed = match self.srtp.as_ref() {
            Some(srtp) => lock(srtp).rekey(&ours, &theirs),
            None => Srtp::new(&ours, &theirs).map(|s| self.srtp = Some(s.into_shared())),
        };
        keyed.map_err(|e: SrtpError| Refusal(format!("Cannot set up SRTP: {e}")))?;
        self.agreed = Some((ours, theirs));
        Ok(())
    }

    /// A packet about to leave (RTP, or RTCP when `rtcp`): protected if SRTP is on. `false`:
    /// it must not be sent (SRTP required and not keyed yet, or it cannot be protected).
    pub fn protect(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> bool {
        match self.srtp.as_ref() {
            Some(srtp) => {
                let mut srtp = lock(srtp);
                let done = if rtcp { srtp.protect_rtcp(packet) } else { srtp.protect(packet) };
                done.is_ok()
            }
            None => !self.encryption,
        }
    }

    /// A packet that came in (on the RTP socket, or RTCP's when `rtcp`): its plain length, or
    /// `None` when it is to be dropped (not authentic, a replay, or SRTP required and not
    /// keyed yet).
    pub fn unprotect(&mut self, packet: &mut [u8], rtcp: bool) -> Option<usize> {
        match self.srtp.as_ref() {
            Some(srtp) => {
                let mut srtp = lock(srtp);
                if rtcp { srtp.unprotect_rtcp(packet) } else { srtp.unprotect(packet) }.ok()
            }
            None if self.encryption => None,
            None => Some(packet.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(profile: &str, crypto: &[Crypto]) -> RemoteMedia {
        let mut text = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 {profile} 0\r\n"
        );
        for c in crypto {
            text.push_str(&format!("a=crypto:{c}\r\n"));
        }
        RemoteMedia::parse(&text).unwrap()
    }

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 9];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    /// Our offer to an encryption=yes peer over TLS, its answer taking the 32-bit line: the
    /// two ends then open each other's packets.
    #[test]
    fn an_offer_and_its_answer_key_both_ends() {
        let mut us = CallSrtp::new(true, true);
        let lines = us.offer().unwrap();
        assert_eq!(lines.iter().map(|c| c.key.suite).collect::<Vec<_>>(), Suite::ALL);
        let mut them = CallSrtp::new(false, true);
        let answer = them.answer(&sdp("RTP/SAVP", &lines[1..])).unwrap();
        assert_eq!((answer[0].tag, answer[0].key.suite), (2, Suite::AesCm128HmacSha1_32));
        us.take_answer(&sdp("RTP/SAVP", &answer)).unwrap();
        assert_eq!(us.suite(), Some(Suite::AesCm128HmacSha1_32));
        let mut p = packet(1);
        assert!(us.protect(&mut p, false));
        assert_ne!(p[12..172], packet(1)[12..]);
        let len = them.unprotect(&mut p, false).unwrap();
        assert_eq!(p[..len], packet(1)[..]);
        // Our next offer (a re-INVITE) keeps the suite agreed and our key.
        let again = us.offer().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].key, lines[1].key);
    }

    #[test]
    fn refusals_follow_chan_sip() {
        let key = Crypto::new(1, MasterKey::generate(Suite::AesCm128HmacSha1_80, |b| b.fill(3)));
        // A plain offer to encryption=yes.
        let err = CallSrtp::new(true, true).answer(&sdp("RTP/AVP", &[])).unwrap_err();
        assert!(err.0.contains("Matched device setup to use SRTP"), "{err:?}");
        // RTP/SAVP without crypto, or with none we can use.
        assert!(CallSrtp::new(false, true).answer(&sdp("RTP/SAVP", &[])).unwrap_err().0.contains("without encryption"));
        let mki = Crypto { mki: Some((1, 4)), ..key.clone() };
        assert!(CallSrtp::new(false, true).answer(&sdp("RTP/SAVP", &[mki])).unwrap_err().0.contains("Can't provide"));
        // Keys over UDP/TCP: neither answered nor offered.
        assert!(CallSrtp::new(true, false)
            .answer(&sdp("RTP/SAVP", std::slice::from_ref(&key)))
            .unwrap_err()
            .0
            .contains("TLS"));
        assert!(CallSrtp::new(false, false).answer(&sdp("RTP/SAVP", std::slice::from_ref(&key))).is_err());
        assert!(CallSrtp::new(true, false).offer().unwrap_err().0.contains("transport=tls"));
        // encryption=no, plain: plain.
        let mut plain = CallSrtp::new(false, false);
        assert_eq!(plain.offer().unwrap(), vec![]);
        assert_eq!(plain.answer(&sdp("RTP/AVP", &[])).unwrap(), vec![]);
        let mut p = packet(1);
        assert!(plain.protect(&mut p, false));
        assert_eq!(plain.unprotect(&mut p, false), Some(172));
        // A plain answer to our SRTP offer.
        let mut us = CallSrtp::new(true, true);
        us.offer().unwrap();
        assert!(us.take_answer(&sdp("RTP/AVP", &[])).unwrap_err().0.contains("required SRTP crypto"));
        // SRTP required, not keyed yet: nothing goes out, nothing is taken in.
        assert!(!us.protect(&mut packet(1), false));
        assert_eq!(us.unprotect(&mut packet(1), false), None);
        // An SRTP call re-INVITEd without crypto.
        let mut them = CallSrtp::new(false, true);
        them.answer(&sdp("RTP/SAVP", &[key])).unwrap();
        assert!(them.answer(&sdp("RTP/AVP", &[])).unwrap_err().0.contains("required SRTP crypto"));
    }

    /// A re-INVITE with a new key of theirs: their packets open with it, ours keep our key.
    #[test]
    fn a_reinvite_rekeys_their_direction() {
        let mut us = CallSrtp::new(false, true);
        let first = Crypto::new(1, MasterKey::generate(Suite::AesCm128HmacSha1_80, |b| b.fill(3)));
        let answer = us.answer(&sdp("RTP/SAVP", &[first])).unwrap();
        let second = Crypto::new(5, MasterKey::generate(Suite::AesCm128HmacSha1_80, |b| b.fill(4)));
        let again = us.answer(&sdp("RTP/SAVP", std::slice::from_ref(&second))).unwrap();
        assert_eq!((again[0].tag, &again[0].key), (5, &answer[0].key), "their tag, our same key");
        let mut far = Srtp::new(&second.key, &answer[0].key).unwrap();
        let mut p = packet(9);
        far.protect_rtp(&mut p).unwrap();
        assert_eq!(us.unprotect(&mut p, false), Some(172));
    }
}
