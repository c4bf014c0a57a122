//! SRTP and SRTCP (RFC 3711) for one leg, keyed by SDES (RFC 4568): the packets of a call that
//! has `encryption=yes` are protected here just before they leave and unprotected just after
//! they arrive. Sans-IO like the rest of this crate: packets in, packets out; the master keys
//! come from the caller (chan_sip draws them from its `ThreadRng`), so nothing here reads the
//! OS's randomness or a clock.
//!
//! Each direction has its own master key, as SDES has it: we protect what we send with the key
//! we put in our SDP ([`Srtp::new`]'s `local`) and unprotect what we receive with the key the
//! far end put in its own (`remote`).
//!
//! Suites: `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32` (RFC 4568 §6.2), and
//! `AEAD_AES_128_GCM` / `AEAD_AES_256_GCM` (RFC 7714 §14.2). Received SRTP and SRTCP go through
//! a replay window of [`REPLAY_WINDOW`] packets per SSRC (RFC 3711 §3.3.2).
//!
//! # Why webrtc-rs's `rtc-srtp`
//!
//! The two candidates were libsrtp2 (the reference implementation, which Asterisk's res_srtp
//! links; Debian ships 2.5) through a binding, and a maintained pure-Rust crate. We took
//! `rtc-srtp` (webrtc-rs's sans-IO stack, released every few months):
//!
//! - it is sans-IO, like this crate: a context is handed bytes and returns bytes, with no
//!   tokio (webrtc-rs's older `webrtc-srtp` brings its own tokio, which would break the one
//!   runtime the core shares with the modules) and no threads;
//! - its primitives are ring's (AES-NI and SHA-1 in assembly, constant-time tags), the same
//!   ring chan_sip's rustls already links for SIP over TLS: one crypto library in the process;
//! - no `unsafe` and no C struct layout of ours: the Rust bindings to libsrtp2 on crates.io
//!   (`srtp2-sys` 3.0, `srtp` 0.7) are unmaintained since 2021 and generate their layout with a
//!   bindgen four years old; writing our own would put `srtp_policy_t`'s layout in our hands;
//! - it has every suite SDES needs, GCM included, SRTCP, and replay detection, and it is fast
//!   enough: `benches/media.rs` measures protect and unprotect of a 160-byte payload
//!   (benches/RESULTS.md; the budget is 2 µs).
//!
//! It is held to libsrtp2's own reference packets (libsrtp's `test/srtp_driver.c`,
//! `srtp_validate` and `srtp_validate_gcm`) in the tests below, so the two agree on the wire.

use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

/// Packets per SSRC that the replay window remembers (libsrtp2's default).
pub const REPLAY_WINDOW: usize = 128;

/// An SDES crypto-suite (the second field of `a=crypto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    /// Every suite, in the order we offer them (Asterisk's: the 80-bit tag first).
    pub const ALL: [Suite; 4] =
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm, Suite::AeadAes256Gcm];

    /// The suite's name in SDP.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The suite SDP names so (case-sensitive, as RFC 4568's grammar is), if we have it.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Suite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }

    /// The master key's length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            Suite::AeadAes256Gcm => 32,
        }
    }

    /// The master salt's length in bytes (112 bits for AES-CM, 96 for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 14,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 12,
        }
    }

    /// What protecting adds to an RTP packet: the authentication tag.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One direction's master key and salt (`inline:` of `a=crypto`: key || salt).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub suite: Suite,
    key_salt: Vec<u8>,
}

impl fmt::Debug for MasterKey {
    // Never the key itself: a key in a log line is a key given away.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A key from its bytes (key then salt).
    pub fn new(suite: Suite, key_salt: &[u8]) -> Result<MasterKey, SrtpError> {
        let want = suite.key_len() + suite.salt_len();
        if key_salt.len() != want {
            return Err(SrtpError::KeyLength { suite, want, got: key_salt.len() });
        }
        Ok(MasterKey { suite, key_salt: key_salt.to_vec() })
    }

    /// A fresh key: `fill` puts random bytes (from a cryptographic generator) in the buffer.
    pub fn generate(suite: Suite, fill: impl FnOnce(&mut [u8])) -> MasterKey {
        let mut key_salt = vec![0u8; suite.key_len() + suite.salt_len()];
        fill(&mut key_salt);
        MasterKey { suite, key_salt }
    }

    /// A key from `inline:`'s base64 (RFC 4568 §6.1: padded or not).
    pub fn from_base64(suite: Suite, text: &str) -> Result<MasterKey, SrtpError> {
        let text = text.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(text).map_err(|_| SrtpError::Base64)?;
        MasterKey::new(suite, &bytes)
    }

    /// The key and salt as `inline:` writes them (padded base64, as Asterisk and baresip send).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.key_salt)
    }

    pub fn key(&self) -> &[u8] {
        &self.key_salt[..self.suite.key_len()]
    }

    pub fn salt(&self) -> &[u8] {
        &self.key_salt[self.suite.key_len()..]
    }
}

/// What went wrong protecting or unprotecting a packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    #[error("{suite} needs a {want}-byte key and salt, not {got}")]
    KeyLength { suite: Suite, want: usize, got: usize },
    #[error("the key is not base64")]
    Base64,
    #[error("the two directions use different suites ({0} and {1})")]
    MixedSuites(Suite, Suite),
    #[error("cannot set up SRTP: {0}")]
    Setup(String),
    /// Too short, not RTP or RTCP, a bad tag, a replay: dropped.
    #[error("cannot unprotect: {0}")]
    Unprotect(String),
    #[error("cannot protect: {0}")]
    Protect(String),
}

/// Whether a packet on a muxed port is RTCP (RFC 5761 §4: payload types 64–95 with the marker
/// bit are RTCP's 192–223).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// One leg's SRTP: the context that protects what we send and the one that unprotects what we
/// receive (see the module's header).
pub struct Srtp {
    suite: Suite,
    tx: Context,
    rx: Context,
    local: MasterKey,
    remote: MasterKey,
    /// Packets that could not be unprotected (not authentic, a replay, not SRTP): dropped.
    failures: u64,
}

/// A leg's [`Srtp`] as its call and the native relay share it: one context each way for the
/// leg's life, whoever protects or unprotects, so that the rollover counter, the SRTCP index
/// and the replay window go on unbroken when the relay takes the leg's packets over and when it
/// gives them back, and a re-key (a re-INVITE) reaches both at once.
pub type SharedSrtp = Arc<Mutex<Srtp>>;

impl fmt::Debug for Srtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srtp").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl Srtp {
    /// SRTP for a leg whose SDP exchange agreed on `local` (our key, which protects what we
    /// send) and `remote` (theirs, which unprotects what we receive), of one suite.
    pub fn new(local: &MasterKey, remote: &MasterKey) -> Result<Srtp, SrtpError> {
        if local.suite != remote.suite {
            return Err(SrtpError::MixedSuites(local.suite, remote.suite));
        }
        Ok(Srtp {
            suite: local.suite,
            tx: context(local, false)?,
            rx: context(remote, true)?,
            local: local.clone(),
            remote: remote.clone(),
            failures: 0,
        })
    }

    /// This SRTP, to share with the native relay ([`SharedSrtp`]).
    pub fn into_shared(self) -> SharedSrtp {
        Arc::new(Mutex::new(self))
    }

    /// How many received packets could not be unprotected (and were dropped).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// A new SDP exchange (a re-INVITE) agreed on `local` and `remote`: each direction whose
    /// key changed starts afresh; one whose key is the same keeps its state (its rollover
    /// counter: a long call past 65,536 packets must not start again at 0, or the far end
    /// could no longer decrypt it).
    pub fn rekey(&mut self, local: &MasterKey, remote: &MasterKey) -> Result<(), SrtpError> {
        if local.suite != remote.suite {
            return Err(SrtpError::MixedSuites(local.suite, remote.suite));
        }
        if *local != self.local {
            self.tx = context(local, false)?;
            self.local = local.clone();
        }
        if *remote != self.remote {
            self.rx = context(remote, true)?;
            self.remote = remote.clone();
        }
        self.suite = local.suite;
        Ok(())
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Protects an RTP packet about to be sent (its payload encrypted, the tag appended).
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let protected = self.encrypt(packet)?;
        packet.clear();
        packet.extend_from_slice(&protected);
        Ok(())
    }

    /// rtc-srtp's `encrypt_rtp`, on a header that fits the packet. The library encrypts from
    /// the header's size *as it would write it again* (its extensions re-encoded), which a
    /// crafted packet can make longer than the packet: it then panics slicing (found by the
    /// `rtp` fuzz target). A far end's plain RTP relayed to an SRTP leg is such a packet.
    fn encrypt(&mut self, plain: &[u8]) -> Result<impl std::ops::Deref<Target = [u8]>, SrtpError> {
        use rtc_shared::marshal::{MarshalSize, Unmarshal};
        let header =
            rtc_rtp::header::Header::unmarshal(&mut &plain[..]).map_err(|e| SrtpError::Protect(e.to_string()))?;
        if header.marshal_size() > plain.len() {
            return Err(SrtpError::Protect(format!("a header of {} bytes in {}", header.marshal_size(), plain.len())));
        }
        self.tx.encrypt_rtp_with_header(plain, &header).map_err(|e| SrtpError::Protect(e.to_string()))
    }

    /// Protects an RTCP compound packet about to be sent (SRTCP: encrypted, E flag and index,
    /// tag).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let protected = self.tx.encrypt_rtcp(packet).map_err(|e| SrtpError::Protect(e.to_string()))?;
        packet.clear();
        packet.extend_from_slice(&protected);
        Ok(())
    }

    /// Protects the RTP packet in `buffer[..len]` where it lies: its protected length, or an
    /// error when it cannot be protected or `buffer` has no room for the tag (the relay's way:
    /// its buffers are the ones the packets came in).
    pub fn protect_rtp_in_place(&mut self, buffer: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let plain = buffer.get(..len).ok_or_else(|| SrtpError::Protect("shorter than said".into()))?;
        let protected = self.encrypt(plain)?;
        let room = buffer.len();
        let out = buffer
            .get_mut(..protected.len())
            .ok_or_else(|| SrtpError::Protect(format!("{} bytes protected, room for {room}", protected.len())))?;
        out.copy_from_slice(&protected);
        Ok(protected.len())
    }

    /// Protects what goes out of an RTP socket: RTCP (muxed) or RTP, told apart by
    /// [`is_rtcp`].
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if is_rtcp(packet) {
            self.protect_rtcp(packet)
        } else {
            self.protect_rtp(packet)
        }
    }

    /// Unprotects a received SRTP packet in place: the plain RTP packet is written over the
    /// start of `packet`, and its length returned. A packet that fails authentication, is a
    /// replay, or is not SRTP at all is an error (and is to be dropped).
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if packet.len() < 12 + self.suite.rtp_overhead() || packet[0] >> 6 != 2 {
            return self.counted(Err(SrtpError::Unprotect("not an SRTP packet".into())));
        }
        let plain = self.rx.decrypt_rtp(packet).map_err(|e| SrtpError::Unprotect(e.to_string()));
        let plain = self.counted(plain)?;
        Ok(copy_back(packet, &plain))
    }

    /// Counts a failure to unprotect.
    fn counted<T>(&mut self, result: Result<T, SrtpError>) -> Result<T, SrtpError> {
        if result.is_err() {
            self.failures += 1;
        }
        result
    }

    /// Unprotects a received SRTCP packet in place (as [`Srtp::unprotect_rtp`]).
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        // Header, sender SSRC, the E flag and index, and at least a 4-byte tag.
        if packet.len() < 8 + 4 + 4 || packet[0] >> 6 != 2 {
            return self.counted(Err(SrtpError::Unprotect("not an SRTCP packet".into())));
        }
        let plain = self.rx.decrypt_rtcp(packet).map_err(|e| SrtpError::Unprotect(e.to_string()));
        let plain = self.counted(plain)?;
        Ok(copy_back(packet, &plain))
    }

    /// Unprotects what came in on an RTP socket: SRTCP (muxed) or SRTP, told apart by
    /// [`is_rtcp`].
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if is_rtcp(packet) {
            self.unprotect_rtcp(packet)
        } else {
            self.unprotect_rtp(packet)
        }
    }
}

/// One direction's context; `replay`: with a replay window (what we receive).
fn context(key: &MasterKey, replay: bool) -> Result<Context, SrtpError> {
    let provider = rtc_crypto::default_provider().map_err(|e| SrtpError::Setup(e.to_string()))?;
    let (rtp, rtcp) = if replay {
        (Some(srtp_replay_protection(REPLAY_WINDOW)), Some(srtcp_replay_protection(REPLAY_WINDOW)))
    } else {
        (None, None)
    };
    Context::new(key.key(), key.salt(), key.suite.profile(), rtp, rtcp, provider.crypto())
        .map_err(|e| SrtpError::Setup(e.to_string()))
}

/// The plain packet over the start of the buffer it came in (never longer: SRTP only adds).
fn copy_back(packet: &mut [u8], plain: &[u8]) -> usize {
    let len = plain.len().min(packet.len());
    packet[..len].copy_from_slice(&plain[..len]);
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// libsrtp's `test_key` (its first 30 bytes: the default policy's key and salt).
    fn libsrtp_key() -> MasterKey {
        MasterKey::new(
            Suite::AesCm128HmacSha1_80,
            &hex("e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6"),
        )
        .unwrap()
    }

    const RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
    const RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";

    /// libsrtp2's `srtp_validate`: AES_CM_128_HMAC_SHA1_80, SSRC 0xcafebabe, sequence 0x1234.
    #[test]
    fn libsrtp_reference_packets_aes_cm_128_hmac_sha1_80() {
        let key = libsrtp_key();
        let mut tx = Srtp::new(&key, &key).unwrap();
        let mut packet = hex(RTP_PLAIN);
        tx.protect_rtp(&mut packet).unwrap();
        assert_eq!(packet, hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb"));
        let mut rtcp = hex(RTCP_PLAIN);
        tx.protect_rtcp(&mut rtcp).unwrap();
        assert_eq!(rtcp, hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798"));
        let mut rx = Srtp::new(&key, &key).unwrap();
        let len = rx.unprotect_rtp(&mut packet).unwrap();
        assert_eq!(packet[..len], hex(RTP_PLAIN)[..]);
        let len = rx.unprotect_rtcp(&mut rtcp).unwrap();
        assert_eq!(rtcp[..len], hex(RTCP_PLAIN)[..]);
    }

    /// libsrtp2's `srtp_validate_gcm`: AEAD_AES_128_GCM with a 16-byte tag.
    #[test]
    fn libsrtp_reference_packets_aead_aes_128_gcm() {
        let key =
            MasterKey::new(Suite::AeadAes128Gcm, &hex("000102030405060708090a0b0c0d0e0f a0a1a2a3a4a5a6a7a8a9aaab"))
                .unwrap();
        let mut tx = Srtp::new(&key, &key).unwrap();
        let mut packet = hex(RTP_PLAIN);
        tx.protect_rtp(&mut packet).unwrap();
        assert_eq!(
            packet,
            hex("800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e d2976826f796b201df3131a127e8a392")
        );
        let mut rtcp = hex(RTCP_PLAIN);
        tx.protect_rtcp(&mut rtcp).unwrap();
        assert_eq!(
            rtcp,
            hex("81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025 c52c6fbea2b3b446ea31123ba88ce61e 80000001")
        );
        let mut rx = Srtp::new(&key, &key).unwrap();
        let len = rx.unprotect_rtp(&mut packet).unwrap();
        assert_eq!(packet[..len], hex(RTP_PLAIN)[..]);
        let len = rx.unprotect(&mut rtcp).unwrap();
        assert_eq!(rtcp[..len], hex(RTCP_PLAIN)[..]);
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(suite: Suite) -> (Srtp, Srtp) {
        let a = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8));
        let b = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = 0x80 ^ i as u8));
        (Srtp::new(&a, &b).unwrap(), Srtp::new(&b, &a).unwrap())
    }

    /// Every suite: what one side protects the other unprotects (each with its own key), the
    /// payload is not sent in clear, and the tag is the suite's length.
    #[test]
    fn every_suite_round_trips_between_two_legs() {
        for suite in Suite::ALL {
            let (mut alice, mut bob) = pair(suite);
            for seq in [65533u16, 65534, 65535, 0, 1, 2] {
                let plain = rtp(seq, &[0x55; 160]);
                let mut packet = plain.clone();
                alice.protect_rtp(&mut packet).unwrap();
                assert_eq!(packet.len(), plain.len() + suite.rtp_overhead(), "{suite}");
                assert_ne!(packet[12..172], plain[12..], "{suite}: the payload is encrypted");
                let len = bob.unprotect(&mut packet).unwrap();
                assert_eq!(packet[..len], plain[..], "{suite} seq {seq}");
            }
            let mut rtcp = hex(RTCP_PLAIN);
            bob.protect(&mut rtcp).unwrap();
            let len = alice.unprotect(&mut rtcp).unwrap();
            assert_eq!(rtcp[..len], hex(RTCP_PLAIN)[..], "{suite}");
        }
    }

    /// A flipped bit anywhere (header, payload, tag), the wrong key, or the same packet twice:
    /// an error, never a packet.
    #[test]
    fn a_header_longer_once_rewritten_than_its_packet_is_refused_not_a_panic() {
        // Found by the `rtp` fuzz target: P and X set, 14 CSRCs and an extension whose
        // re-encoded size runs past the packet's 210 bytes (rtc-srtp sliced past the end).
        let hex = "beefcafeabcd00000020e5233456780001000281ca00030000000001ab737421726c696e67000000000000241380c800\
                   06deadbeefe9a0b0c6d0e0f000000015000000001000000a00000400001000000a000004001001345678272727272727\
                   2727272727272727272727272727272727e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4\
                   e4e4e4272727272727272727272727272727272727272727272727272727270001007979797936e00e05384e06f6ffff\
                   10018065cb2d330000000e45454545454540";
        let packet: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        assert_eq!(packet.len(), 210);
        let (mut a, _) = pair(Suite::AesCm128HmacSha1_32);
        assert!(a.protect_rtp(&mut packet.clone()).is_err());
        let mut buffer = packet.clone();
        buffer.resize(2048, 0);
        assert!(a.protect_rtp_in_place(&mut buffer, packet.len()).is_err());
    }

    #[test]
    fn tampered_replayed_or_wrongly_keyed_packets_are_refused() {
        for suite in Suite::ALL {
            let (mut alice, mut bob) = pair(suite);
            let mut packet = rtp(7, &[1; 160]);
            alice.protect_rtp(&mut packet).unwrap();
            for at in [3, 12, 100, packet.len() - 1] {
                let mut bad = packet.clone();
                bad[at] ^= 0x01;
                assert!(bob.unprotect_rtp(&mut bad).is_err(), "{suite}: bit flipped at {at}");
            }
            let mut good = packet.clone();
            assert!(bob.unprotect_rtp(&mut good).is_ok());
            let mut again = packet.clone();
            assert!(
                matches!(bob.unprotect_rtp(&mut again), Err(SrtpError::Unprotect(_))),
                "{suite}: a replay is refused"
            );
            // Our own key does not open what we sent (each direction has its own).
            let mut own = rtp(8, &[1; 160]);
            alice.protect_rtp(&mut own).unwrap();
            assert!(alice.unprotect_rtp(&mut own).is_err());
            let mut rtcp = hex(RTCP_PLAIN);
            alice.protect_rtcp(&mut rtcp).unwrap();
            let last = rtcp.len() - 1;
            rtcp[last] ^= 0x80;
            assert!(bob.unprotect_rtcp(&mut rtcp).is_err(), "{suite}: SRTCP tag");
            assert_eq!(bob.failures(), 6, "{suite}: four flipped bits, a replay, an SRTCP tag: counted");
        }
    }

    /// Re-keying (a re-INVITE): the far end's new key opens its packets from then on; our
    /// key unchanged keeps our stream's state, so packets past a sequence wrap still open.
    #[test]
    fn rekeying_replaces_only_the_direction_whose_key_changed() {
        let suite = Suite::AesCm128HmacSha1_80;
        let ours = MasterKey::generate(suite, |b| b.fill(1));
        let theirs = MasterKey::generate(suite, |b| b.fill(2));
        let (mut us, mut them) = (Srtp::new(&ours, &theirs).unwrap(), Srtp::new(&theirs, &ours).unwrap());
        for seq in (65530..=65535).chain(0..5) {
            let mut p = rtp(seq, &[1; 20]);
            us.protect_rtp(&mut p).unwrap();
            them.unprotect_rtp(&mut p).unwrap();
        }
        let new_theirs = MasterKey::generate(suite, |b| b.fill(3));
        us.rekey(&ours, &new_theirs).unwrap();
        them.rekey(&new_theirs, &ours).unwrap();
        let mut p = rtp(5, &[1; 20]);
        us.protect_rtp(&mut p).unwrap();
        them.unprotect_rtp(&mut p).expect("our stream continues past the wrap (rollover counter kept)");
        let mut back = rtp(1, &[2; 20]);
        them.protect_rtp(&mut back).unwrap();
        us.unprotect_rtp(&mut back).expect("their new key");
        let mut old = rtp(2, &[2; 20]);
        Srtp::new(&theirs, &ours).unwrap().protect_rtp(&mut old).unwrap();
        assert!(us.unprotect_rtp(&mut old).is_err(), "their old key no longer opens anything");
    }

    /// An old packet inside the window is still taken (reordering); one far behind it is not.
    #[test]
    fn the_replay_window_takes_late_packets_inside_it() {
        let (mut alice, mut bob) = pair(Suite::AesCm128HmacSha1_32);
        let mut sent: Vec<Vec<u8>> = (1..=300u16)
            .map(|s| {
                let mut p = rtp(s, &[9; 20]);
                alice.protect_rtp(&mut p).unwrap();
                p
            })
            .collect();
        let late = sent.remove(250);
        let too_late = sent.remove(10);
        for mut p in sent {
            bob.unprotect_rtp(&mut p).unwrap();
        }
        assert!(bob.unprotect_rtp(&mut late.clone()).is_ok(), "51 behind: inside the window");
        assert!(bob.unprotect_rtp(&mut too_late.clone()).is_err(), "289 behind: outside it");
    }

    #[test]
    fn keys_are_checked_and_read_from_base64() {
        let key = libsrtp_key();
        let text = key.to_base64();
        assert_eq!(text, "4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm");
        assert_eq!(MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &text).unwrap(), key);
        assert_eq!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, "4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm==").unwrap(),
            key,
            "padding is optional"
        );
        assert!(matches!(
            MasterKey::from_base64(Suite::AeadAes256Gcm, &text),
            Err(SrtpError::KeyLength { want: 44, got: 30, .. })
        ));
        assert_eq!(MasterKey::from_base64(Suite::AesCm128HmacSha1_80, "not base64!"), Err(SrtpError::Base64));
        let other = MasterKey::generate(Suite::AesCm128HmacSha1_32, |b| b.fill(1));
        assert!(matches!(Srtp::new(&key, &other), Err(SrtpError::MixedSuites(..))));
        assert!(!format!("{key:?}").contains("4fl6"), "Debug never shows the key");
        for suite in Suite::ALL {
            assert_eq!(Suite::from_name(suite.name()), Some(suite));
        }
        assert_eq!(Suite::from_name("F8_128_HMAC_SHA1_80"), None);
    }

    proptest! {
        /// Any bytes at all, as SRTP or SRTCP, in any suite: an error or a packet, never a panic.
        #[test]
        fn malformed_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), suite in 0usize..4) {
            let (mut alice, mut bob) = pair(Suite::ALL[suite]);
            let mut a = bytes.clone();
            let _ = bob.unprotect(&mut a);
            let mut b = bytes.clone();
            let _ = bob.unprotect_rtp(&mut b);
            let mut c = bytes.clone();
            let _ = bob.unprotect_rtcp(&mut c);
            let mut d = bytes.clone();
            let _ = alice.protect(&mut d);
            let mut e = bytes;
            let _ = alice.protect_rtcp(&mut e);
        }

        /// A real packet with random bytes after its header is still refused or opened whole.
        #[test]
        fn truncated_protected_packets_are_refused(cut in 0usize..182) {
            let (mut alice, mut bob) = pair(Suite::AesCm128HmacSha1_80);
            let mut packet = rtp(5, &[3; 160]);
            alice.protect_rtp(&mut packet).unwrap();
            packet.truncate(cut);
            prop_assert!(bob.unprotect_rtp(&mut packet).is_err());
        }
    }
}
