//! SDES (RFC 4568): the `a=crypto` attribute that carries an SRTP master key in SDP, read and
//! written. [`crate::sdp`] keeps the lines of an offer or answer; chan_sip picks one
//! ([`choose`]) and keys [`crate::srtp::Srtp`] with it.
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [<session-params>]
//! ```
//!
//! Only one key per line is read (several `inline:` key-params are for MKI-switched keys,
//! which nothing here uses); session parameters (`KDR=`, `UNENCRYPTED_SRTP`...) are kept as
//! text so that a line with them can be refused, as chan_sip refuses them ("Unsupported crypto
//! parameters").

use std::fmt;

use crate::srtp::{MasterKey, Suite};

/// One `a=crypto` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    /// Which line of the offer an answer accepts (1 to 999999999).
    pub tag: u32,
    pub key: MasterKey,
    /// The key's lifetime in packets (`|2^31` or `|1048576`), if given.
    pub lifetime: Option<u64>,
    /// The MKI's value and its length in bytes on the wire (`|1:4`), if given.
    pub mki: Option<(u64, u8)>,
    /// Whatever follows the key-params, unread.
    pub session_params: Option<String>,
}

/// Why an `a=crypto` value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("a=crypto: bad tag '{0}'")]
    Tag(String),
    #[error("a=crypto: suite '{0}' is not supported")]
    Suite(String),
    #[error("a=crypto: key-params '{0}' are not inline:key||salt")]
    KeyParams(String),
    #[error("a=crypto: {0}")]
    Key(#[from] crate::srtp::SrtpError),
    #[error("a=crypto: bad lifetime '{0}'")]
    Lifetime(String),
    #[error("a=crypto: bad MKI '{0}'")]
    Mki(String),
}

impl Crypto {
    /// A line of ours: `tag`, `key`, no lifetime, no MKI.
    pub fn new(tag: u32, key: MasterKey) -> Crypto {
        Crypto { tag, key, lifetime: None, mki: None, session_params: None }
    }

    /// Reads an attribute's value (what follows `a=crypto:`).
    pub fn parse(value: &str) -> Result<Crypto, CryptoError> {
        let mut fields = value.trim().splitn(4, [' ', '\t']).filter(|f| !f.is_empty());
        let tag_text = fields.next().unwrap_or_default();
        let tag = tag_text
            .parse::<u32>()
            .ok()
            .filter(|t| tag_text.len() <= 9 && tag_text.bytes().all(|b| b.is_ascii_digit()) && *t <= 999_999_999)
            .ok_or_else(|| CryptoError::Tag(tag_text.to_owned()))?;
        let suite_text = fields.next().unwrap_or_default();
        let suite = Suite::from_name(suite_text).ok_or_else(|| CryptoError::Suite(suite_text.to_owned()))?;
        let key_params = fields.next().unwrap_or_default();
        let session_params = fields.next().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        // The first key-param only (see the module's header).
        let first = key_params.split(';').next().unwrap_or_default();
        let inline = first
            .get(..7)
            .filter(|m| m.eq_ignore_ascii_case("inline:"))
            .map(|_| &first[7..])
            .ok_or_else(|| CryptoError::KeyParams(key_params.to_owned()))?;
        let mut parts = inline.split('|');
        let key = MasterKey::from_base64(suite, parts.next().unwrap_or_default())?;
        let (mut lifetime, mut mki) = (None, None);
        for part in parts {
            if part.contains(':') {
                if mki.is_some() {
                    return Err(CryptoError::Mki(part.to_owned()));
                }
                mki = Some(parse_mki(part)?);
            } else {
                if lifetime.is_some() || mki.is_some() {
                    return Err(CryptoError::Lifetime(part.to_owned()));
                }
                lifetime = Some(parse_lifetime(part)?);
            }
        }
        Ok(Crypto { tag, key, lifetime, mki, session_params })
    }

    /// Whether we can key SRTP with this line: no MKI (our packets carry none) and no session
    /// parameters.
    pub fn usable(&self) -> bool {
        self.mki.is_none() && self.session_params.is_none()
    }
}

fn parse_lifetime(text: &str) -> Result<u64, CryptoError> {
    let bad = || CryptoError::Lifetime(text.to_owned());
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match text.strip_prefix("2^") {
        Some(exp) if digits(exp) => match exp.parse::<u32>() {
            Ok(e) if e <= 63 => Ok(1u64 << e),
            _ => Err(bad()),
        },
        None if digits(text) => text.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn parse_mki(text: &str) -> Result<(u64, u8), CryptoError> {
    let bad = || CryptoError::Mki(text.to_owned());
    let (value, length) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(value) || !digits(length) {
        return Err(bad());
    }
    let length: u8 = length.parse().map_err(|_| bad())?;
    if !(1..=128).contains(&length) {
        return Err(bad());
    }
    Ok((value.parse().map_err(|_| bad())?, length))
}

/// The attribute's value, as it follows `a=crypto:`.
impl fmt::Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} inline:{}", self.tag, self.key.suite, self.key.to_base64())?;
        if let Some(lifetime) = self.lifetime {
            if lifetime.is_power_of_two() {
                write!(f, "|2^{}", lifetime.trailing_zeros())?;
            } else {
                write!(f, "|{lifetime}")?;
            }
        }
        if let Some((value, length)) = self.mki {
            write!(f, "|{value}:{length}")?;
        }
        if let Some(params) = &self.session_params {
            write!(f, " {params}")?;
        }
        Ok(())
    }
}

/// The line of an offer we take: the first (in the offerer's order of preference) whose suite
/// we have and that we can key ([`Crypto::usable`]).
pub fn choose(offered: &[Crypto]) -> Option<&Crypto> {
    offered.iter().find(|c| c.usable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RFC4568: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";

    /// RFC 4568 §4's example, then what Asterisk and baresip send (no lifetime, padded base64).
    #[test]
    fn reads_and_writes_rfc_4568_lines() {
        let c = Crypto::parse(RFC4568).unwrap();
        assert_eq!(
            (c.tag, c.key.suite, c.lifetime, c.mki),
            (1, Suite::AesCm128HmacSha1_80, Some(1 << 20), Some((1, 4)))
        );
        assert_eq!(c.to_string(), RFC4568);
        assert!(!c.usable(), "an MKI we cannot send");
        let line = "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";
        let c = Crypto::parse(line).unwrap();
        assert_eq!((c.tag, c.key.suite, c.lifetime, c.mki), (2, Suite::AesCm128HmacSha1_32, None, None));
        assert!(c.usable());
        assert_eq!(Crypto::parse(&c.to_string()).unwrap(), c);
        let gcm = Crypto::new(7, MasterKey::generate(Suite::AeadAes256Gcm, |b| b.fill(0x42)));
        assert_eq!(Crypto::parse(&gcm.to_string()).unwrap(), gcm);
        let with_params = Crypto::parse(&format!("{line} KDR=1 UNENCRYPTED_SRTCP")).unwrap();
        assert_eq!(with_params.session_params.as_deref(), Some("KDR=1 UNENCRYPTED_SRTCP"));
        assert!(!with_params.usable());
        assert_eq!(
            Crypto::parse("3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1048575")
                .unwrap()
                .lifetime,
            Some(1_048_575)
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        for (line, want) in [
            (String::new(), "tag"),
            (format!("x AES_CM_128_HMAC_SHA1_80 {key}"), "tag"),
            (format!("-1 AES_CM_128_HMAC_SHA1_80 {key}"), "tag"),
            (format!("1000000000 AES_CM_128_HMAC_SHA1_80 {key}"), "tag"),
            (format!("1 F8_128_HMAC_SHA1_80 {key}"), "suite"),
            ("1 AES_CM_128_HMAC_SHA1_80".to_owned(), "key-params"),
            ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x".to_owned(), "key-params"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:short".to_owned(), "key"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!".to_owned(), "base64"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^99"), "lifetime"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|x"), "lifetime"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:0"), "MKI"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2:4"), "MKI"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2^20"), "lifetime"),
            (format!("1 AEAD_AES_128_GCM {key}"), "key"),
        ] {
            let err = Crypto::parse(&line).expect_err(&line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn the_first_usable_line_is_chosen() {
        let lines: Vec<Crypto> = [
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
            "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
            "3 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        ]
        .iter()
        .map(|l| Crypto::parse(l).unwrap())
        .collect();
        assert_eq!(choose(&lines).map(|c| c.tag), Some(2));
        assert_eq!(choose(&lines[..1]), None);
    }

    proptest! {
        /// Any text: a line or an error, never a panic; a line read writes back to itself.
        #[test]
        fn any_text_parses_or_fails(text in "[0-9A-Za-z_ :|^;+/=\\t-]{0,120}") {
            if let Ok(c) = Crypto::parse(&text) {
                prop_assert_eq!(Crypto::parse(&c.to_string()).unwrap(), c);
            }
        }

        /// Lines made of the right pieces in any order and number.
        #[test]
        fn shuffled_pieces_parse_or_fail(pieces in proptest::collection::vec(proptest::sample::select(vec![
            "1", " ", "AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", "inline:", "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "|", "2^", "31", ":", "4", ";", "=", "KDR=1",
        ]), 0..20)) {
            let _ = Crypto::parse(&pieces.concat());
        }
    }
}
