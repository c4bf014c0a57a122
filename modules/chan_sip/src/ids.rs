//! The identifiers chan_sip sends: Call-IDs, tags, branches, cnonces, the digest nonce key,
//! RTP starting points. All come from rand's `ThreadRng` (ChaCha12, seeded and reseeded from
//! the operating system's `getrandom`), never from the clock or the pid, and those that name a
//! dialog or a transaction carry at least 96 random bits: one seen on the wire tells nothing
//! of another, so nobody outside a call can forge a BYE, re-INVITE or REFER into it.

use starling_sip::transaction::Endpoint;

/// A random number (SRV weights, retry jitter, RTP sequence and timestamp starting points).
pub fn random() -> u64 {
    rand::random()
}

/// 128 random bits as 32 lowercase hex digits.
fn unique() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A Call-ID for a dialog we start: 128 random bits `@` our host.
pub fn call_id(host: impl std::fmt::Display) -> String {
    format!("{}@{host}", unique())
}

/// A tag for our From/To: `as` (as chan_sip's) and 96 random bits.
pub fn tag() -> String {
    format!("as{:024x}", rand::random::<u128>() >> 32)
}

/// A Via branch: the RFC 3261 magic cookie and 128 random bits.
pub fn branch() -> String {
    Endpoint::new_branch(&unique())
}

/// A client nonce for digest answers with `qop=auth`: 64 random bits.
pub fn cnonce() -> String {
    format!("{:016x}", random())
}

/// A key of 16 random bytes (the digest nonce key).
pub fn key() -> [u8; 16] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ten_thousand_of_each_and_no_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            for id in [call_id("h"), tag(), branch(), cnonce()] {
                assert!(seen.insert(id.clone()), "{id} repeated");
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    #[test]
    fn dialog_and_transaction_ids_carry_at_least_96_bits() {
        let hex_digits = |s: &str| s.chars().filter(char::is_ascii_hexdigit).count();
        let call_id = call_id("h");
        assert_eq!(hex_digits(call_id.split('@').next().unwrap()), 32);
        let tag = tag();
        assert!(tag.starts_with("as") && tag.len() == 26, "{tag}");
        let branch = branch();
        assert!(branch.starts_with("z9hG4bK") && branch.len() == 7 + 32, "{branch}");
        // Every bit varies: over 64 draws, no bit position of the 96/128 stays the same.
        let draws: Vec<u128> = (0..64).map(|_| u128::from_str_radix(&super::tag()[2..], 16).unwrap()).collect();
        let all_ones = draws.iter().fold(0u128, |a, d| a | d);
        let all_zeros = draws.iter().fold(u128::MAX >> 32, |a, d| a & d);
        assert_eq!((all_ones, all_zeros), (u128::MAX >> 32, 0), "a tag bit never changed");
    }
}
