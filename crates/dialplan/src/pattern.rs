//! Extension patterns and their order, exactly as Asterisk's pbx.c has them.
//!
//! An extension is exact (`100`, `s`, `h`) or a pattern (`_NXXNXXXXXX`): `X` any digit, `Z`
//! 1–9, `N` 2–9, `[15-7]` a set, `.` one or more of anything, `!` zero or more (and "do not
//! wait for more digits"). Dashes and spaces are ignored (`555-1212` is `5551212`).
//!
//! Three questions are asked of a pattern and the digits dialled so far ([`Mode`]):
//! - `Match`: do the digits match it completely?
//! - `CanMatch`: could they, with more digits (or now)?
//! - `MatchMore`: could more digits still match (so WaitExten/overlap dialling should wait)?
//!
//! [`ext_cmp`] sorts a context as Asterisk (11 and later) does: exact extensions first (in
//! string order), then patterns position by position, the position that allows fewer characters
//! first, then `.`, then `!`, then the end of the pattern (so `_X.` sorts before `_X`, and `_1!`
//! before `_1`). `dialplan show` lists in this order and the first match in it wins.

use std::cmp::Ordering;

/// What to ask; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Match,
    CanMatch,
    MatchMore,
}

/// Characters ignored in extensions and patterns.
fn ignored(c: u8) -> bool {
    c == b'-' || c == b' '
}

/// Whether `data` matches `extension` in `mode` (Asterisk's `ast_extension_match` family).
/// For `MatchMore`, a pattern that reaches `!` says no: `!` means "match now, do not wait"
/// (and a search asking MatchMore stops there, see [`early_match`]).
pub fn matches(extension: &str, data: &str, mode: Mode) -> bool {
    // pbx.c: "if this test is left out, then _x. will not match _x." — a pattern given as the
    // data matches the same pattern (`dialplan show _X.@ctx`).
    if mode == Mode::Match && data.starts_with('_') && extension.starts_with('_') && ext_cmp(extension, data).is_eq() {
        return true;
    }
    match match_core(extension.as_bytes(), data.as_bytes(), mode) {
        0 => false,
        2 => mode != Mode::MatchMore,
        _ => true,
    }
}

/// Whether `extension` matches `data` early through `!`: a MatchMore search that meets such an
/// extension ends with "no more digits needed" (pbx.c's `match == 2 && action == E_MATCHMORE`).
pub fn early_match(extension: &str, data: &str) -> bool {
    match_core(extension.as_bytes(), data.as_bytes(), Mode::MatchMore) == 2
}

/// 0: no; 1: yes; 2: yes, early (`!`: do not wait for more).
fn match_core(extension: &[u8], data: &[u8], mode: Mode) -> u8 {
    let Some(pattern) = extension.strip_prefix(b"_") else {
        return exact(extension, data, mode);
    };
    let (mut p, mut d) = (0usize, 0usize);
    loop {
        // Dashes are eye candy in the data as in the pattern (pbx.c skips both).
        while d < data.len() && data[d] == b'-' {
            d += 1;
        }
        if !(d < data.len() && p < pattern.len() && pattern[p] != b'/') {
            break;
        }
        let c = data[d];
        match pattern[p].to_ascii_uppercase() {
            b'[' => {
                let Some(end) = pattern[p..].iter().position(|b| *b == b']').map(|e| p + e) else {
                    return 0; // an unterminated set matches nothing
                };
                if end == p + 1 {
                    p = end + 1;
                    continue; // an empty set is ignored
                }
                if !in_set(&pattern[p + 1..end], c) {
                    return 0;
                }
                p = end;
            }
            b'N' if !(b'2'..=b'9').contains(&c) => return 0,
            b'X' if !c.is_ascii_digit() => return 0,
            b'Z' if !(b'1'..=b'9').contains(&c) => return 0,
            b'N' | b'X' | b'Z' => {}
            b'.' => return 1,
            b'!' => return 2,
            b' ' | b'-' => {
                p += 1;
                continue; // ignored in patterns: do not consume data
            }
            _ if pattern[p] != c => return 0,
            _ => {}
        }
        d += 1;
        p += 1;
    }
    if d < data.len() {
        return 0; // data longer than the pattern
    }
    // The data ran out: what is left of the pattern decides.
    while p < pattern.len() && ignored(pattern[p]) {
        p += 1;
    }
    match pattern.get(p) {
        None | Some(b'/') => u8::from(mode != Mode::MatchMore),
        Some(b'!') => 2,
        Some(_) => u8::from(mode != Mode::Match),
    }
}

fn in_set(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// An exact extension: equal (ignoring `-` and spaces), or a prefix for CanMatch/MatchMore.
fn exact(extension: &[u8], data: &[u8], mode: Mode) -> u8 {
    let ext: Vec<u8> = extension.iter().copied().filter(|c| !ignored(*c)).take_while(|c| *c != b'/').collect();
    let data: Vec<u8> = data.iter().copied().filter(|c| !ignored(*c)).collect();
    if ext.len() < data.len() {
        return 0;
    }
    match mode {
        Mode::Match => u8::from(ext == data),
        _ if !ext.starts_with(&data) => 0,
        Mode::MatchMore => u8::from(ext.len() > data.len()),
        Mode::CanMatch => 1,
    }
}

/// The weight of the end of a pattern: after every position, `!` included (Asterisk 11's
/// `ext_cmp_pattern_pos`, "0x30000 NUL (end of string)").
const END: u32 = 0x30000;

/// The weight of one pattern position and the set of characters it allows (pbx.c's
/// `ext_cmp_pattern_pos`): fewer characters weigh less and sort first.
fn pattern_pos(pattern: &[u8], at: &mut usize, set: &mut [u8; 32]) -> u32 {
    loop {
        let Some(&raw) = pattern.get(*at) else { return END };
        *at += 1;
        let c = raw.to_ascii_uppercase();
        let mut mark = |from: u8, to: u8| {
            for ch in from..=to {
                set[usize::from(ch / 8)] |= 1 << (7 - ch % 8);
            }
        };
        return match c {
            b'N' => {
                mark(b'2', b'9');
                0x0800 | u32::from(b'2')
            }
            b'X' => {
                mark(b'0', b'9');
                0x0A00 | u32::from(b'0')
            }
            b'Z' => {
                mark(b'1', b'9');
                0x0900 | u32::from(b'1')
            }
            b'.' => {
                *set = [0xff; 32];
                0x18000
            }
            b'!' => {
                *set = [0xff; 32];
                0x28000
            }
            b'[' => {
                let Some(end) = pattern[*at..].iter().position(|b| *b == b']').map(|e| *at + e) else {
                    *at = pattern.len();
                    return 0x40000; // a broken set sorts after everything, as in pbx.c
                };
                let body = &pattern[*at..end];
                *at = (end + 1).min(pattern.len());
                let mut i = 0;
                while i < body.len() {
                    if i + 2 < body.len() && body[i + 1] == b'-' {
                        mark(body[i].min(body[i + 2]), body[i].max(body[i + 2]));
                        i += 3;
                    } else {
                        mark(body[i], body[i]);
                        i += 1;
                    }
                }
                let count: u32 = set.iter().map(|b| b.count_ones()).sum();
                let min = (0..=255u8).find(|ch| set[usize::from(ch / 8)] & (1 << (7 - ch % 8)) != 0).unwrap_or(0);
                if count == 0 {
                    continue; // an empty set is ignored
                }
                (count << 8) | u32::from(min)
            }
            b'-' | b' ' => continue,
            _ => {
                mark(raw, raw);
                0x0100 | u32::from(raw)
            }
        };
    }
}

/// Asterisk's `ext_cmp`: the order of extensions in a context.
pub fn ext_cmp(left: &str, right: &str) -> Ordering {
    match (left.strip_prefix('_'), right.strip_prefix('_')) {
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => {
            let strip = |s: &str| s.bytes().filter(|c| !ignored(*c)).collect::<Vec<u8>>();
            strip(left).cmp(&strip(right))
        }
        (Some(l), Some(r)) => {
            let (l, r) = (l.as_bytes(), r.as_bytes());
            let (mut li, mut ri) = (0, 0);
            loop {
                let (mut lset, mut rset) = ([0u8; 32], [0u8; 32]);
                let lp = pattern_pos(l, &mut li, &mut lset);
                let rp = pattern_pos(r, &mut ri, &mut rset);
                // Equal weights but different sets: the set comparison is reversed, as in pbx.c.
                let order = lp.cmp(&rp).then_with(|| rset.cmp(&lset));
                if order != Ordering::Equal || lp == END {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mode::*;

    #[test]
    fn pattern_characters() {
        assert!(matches("_NXXNXXXXXX", "2125551212", Match));
        assert!(!matches("_NXXNXXXXXX", "1125551212", Match));
        assert!(matches("_1NXXNXXXXXX", "12125551212", Match));
        assert!(matches("_Z", "5", Match) && !matches("_Z", "0", Match));
        assert!(matches("_x", "7", Match), "letters are case-insensitive");
        assert!(matches("_[1-35]XX", "599", Match));
        assert!(!matches("_[1-35]XX", "499", Match));
        assert!(matches("_555-1212", "5551212", Match), "dashes ignored in patterns");
        assert!(matches("555-1212", "5551212", Match), "and in exact extensions");
        assert!(matches("_9.", "91", Match) && !matches("_9.", "9", Match), ". is one or more");
        assert!(matches("_9!", "9", Match) && matches("_9!", "9123", Match), "! is zero or more");
        assert!(matches("_[abc]X", "b1", Match));
        assert!(!matches("_[12", "1", Match), "an unterminated set matches nothing");
    }

    #[test]
    fn can_match_and_match_more_for_overlap_dialling() {
        assert!(matches("_NXXX", "23", CanMatch));
        assert!(matches("_NXXX", "23", MatchMore));
        assert!(!matches("_NXXX", "23", Match));
        assert!(matches("_NXXX", "2345", CanMatch));
        assert!(!matches("_NXXX", "2345", MatchMore), "complete: no more digits needed");
        assert!(matches("_9.", "9", MatchMore), ". still wants a digit");
        assert!(matches("_9.", "912", MatchMore), "and always could take more");
        assert!(!matches("_9!", "9", MatchMore), "! says: do not wait");
        assert!(early_match("_9!", "9") && early_match("_9!", "91") && !early_match("_9.", "91"));
        assert!(matches("100", "1", CanMatch) && matches("100", "1", MatchMore));
        assert!(!matches("100", "100", MatchMore));
        assert!(!matches("100", "1000", CanMatch));
        assert!(matches("s", "s", Match));
    }

    /// The order Asterisk's `dialplan show` prints (checked against pbx.c's ext_cmp rules).
    #[test]
    fn sort_order_as_asterisk() {
        let mut exts = vec![
            "_X.",
            "_1NXXNXXXXXX",
            "_NXXXXXX",
            "_9!",
            "s",
            "_[2-3]XX",
            "100",
            "_2XX",
            "_ZXX",
            "_NXX",
            "_XXX",
            "_X",
            "1000",
            "_.",
            "_1XXX",
        ];
        exts.sort_by(|a, b| ext_cmp(a, b));
        assert_eq!(
            exts,
            // Exact first; then by the first position's weight (a literal 0x1xx < a two-char set
            // 0x2xx < N 0x8xx < Z 0x9xx < X 0xAxx < . 0x18000 < ! 0x28000), the next position
            // breaking ties, and a pattern that ends (0x30000) after one that goes on — as
            // Asterisk 11+ lists them (`_NXXXXXX` before `_NXX`, `_X.` before `_X`).
            [
                "100",
                "1000",
                "s",
                "_1NXXNXXXXXX",
                "_1XXX",
                "_2XX",
                "_9!",
                "_[2-3]XX",
                "_NXXXXXX",
                "_NXX",
                "_ZXX",
                "_XXX",
                "_X.",
                "_X",
                "_."
            ]
        );
    }

    #[test]
    fn equal_weights_break_ties_on_the_set() {
        // [13] and [24] both allow two characters; the one with the lower first char sorts first.
        assert_eq!(ext_cmp("_[13]", "_[24]"), Ordering::Less);
        assert_eq!(ext_cmp("_[24]", "_[13]"), Ordering::Greater);
        assert_eq!(ext_cmp("_X", "_X"), Ordering::Equal);
        assert_eq!(ext_cmp("_X", "_X-"), Ordering::Equal, "dashes do not count");
        assert_eq!(ext_cmp("_1!", "_1"), Ordering::Less, "! before the end: 1 matches _1! first");
        assert_eq!(ext_cmp("_X.", "_X!"), Ordering::Less);
        assert_eq!(ext_cmp("_[]X", "_X"), Ordering::Equal, "an empty set is ignored");
        assert_eq!(ext_cmp("_[12", "_X."), Ordering::Greater, "a broken set sorts last");
    }

    #[test]
    fn a_pattern_matches_itself() {
        assert!(matches("_X.", "_X.", Match) && matches("_NXX", "_nxx", Match));
        assert!(!matches("_NXX", "_XXX", Match) && !matches("_NXX", "_NXX", MatchMore));
    }

    #[test]
    fn dashes_in_the_data_and_empty_sets_are_ignored() {
        assert!(matches("_NXX", "2-12", Match));
        assert!(matches("_[]1X", "15", Match));
        assert!(matches("555-1212", "555-12-12", Match));
    }
}
