//! What VoiceMailMain says about a message before playing it (Asterisk's
//! `play_message_datetime`, `play_message_callerid`, `play_message_duration`): the date in the
//! mailbox's `[zonemessages]` format (else Asterisk's `'vm-received' q 'digits/at' IMp`),
//! said as Asterisk's English `ast_say_date_with_format`, and who called.

use std::path::Path;

use starling_core::chrono::{DateTime, Datelike, Local, TimeZone, Timelike, Utc};
use starling_core::tracing;

use crate::media;

/// Asterisk's default envelope format (English).
pub const DEFAULT_FORMAT: &str = "'vm-received' q 'digits/at' IMp";

/// `digits/h-N`: Asterisk's English `ast_say_enumeration` (first, second... thirty-first).
fn enumeration(n: u32) -> Vec<String> {
    match n {
        0 => vec!["digits/h-0".into()],
        1..=20 => vec![format!("digits/h-{n}")],
        _ if n.is_multiple_of(10) && n < 100 => vec![format!("digits/h-{n}")],
        21..=99 => vec![format!("digits/{}", n / 10 * 10), format!("digits/h-{}", n % 10)],
        _ => media::number_files(n),
    }
}

/// The files that say `time` in `format` (Asterisk's `ast_say_date_with_format_en`), `now`
/// deciding `Q`/`q` (today, yesterday, a weekday...). Unknown letters are skipped.
pub fn say_date<Tz: TimeZone>(format: &str, time: &DateTime<Tz>, now: &DateTime<Tz>) -> Vec<String> {
    let mut files = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let mut name = String::new();
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    name.push(q);
                }
                if !name.is_empty() {
                    files.push(name);
                }
            }
            'A' | 'a' => files.push(format!("digits/day-{}", time.weekday().num_days_from_sunday())),
            'B' | 'b' | 'h' => files.push(format!("digits/mon-{}", time.month0())),
            'm' => files.extend(enumeration(time.month())),
            'd' | 'e' => files.extend(enumeration(time.day())),
            'Y' => files.extend(media::number_files(time.year().max(0) as u32)),
            'I' | 'l' => {
                let hour = match time.hour() {
                    0 => 12,
                    h if h > 12 => h - 12,
                    h => h,
                };
                files.push(format!("digits/{hour}"));
            }
            'H' | 'k' => {
                let hour = time.hour();
                if (c == 'H' && hour < 10) || (c == 'k' && hour == 0) {
                    files.push("digits/oh".into());
                }
                if hour != 0 {
                    let mut rest = hour;
                    if hour > 20 {
                        files.push("digits/20".into());
                        rest -= 20;
                    }
                    files.push(format!("digits/{rest}"));
                }
            }
            'M' | 'N' => match time.minute() {
                0 => files.push(if c == 'M' { "digits/oclock" } else { "digits/hundred" }.into()),
                m if m < 10 => {
                    files.push("digits/oh".into());
                    files.push(format!("digits/{m}"));
                }
                m => files.extend(media::number_files(m)),
            },
            'P' | 'p' => files.push(if time.hour() > 11 { "digits/p-m" } else { "digits/a-m" }.into()),
            'R' => files.extend(say_date("HM", time, now)),
            'Q' | 'q' => {
                let days = (now.date_naive() - time.date_naive()).num_days();
                match days {
                    ..=0 => {
                        if c == 'Q' {
                            files.push("digits/today".into());
                        }
                    }
                    1 => files.push("digits/yesterday".into()),
                    2..=6 => files.extend(say_date("A", time, now)),
                    7..=30 => files.extend(say_date("ABd", time, now)),
                    31..=182 => files.extend(say_date("Bd", time, now)),
                    _ => files.extend(say_date("BdY", time, now)),
                }
            }
            ' ' | '\t' => {}
            other => tracing::debug!("envelope format: '{other}' is not said"),
        }
    }
    files
}

/// The offset from UTC (seconds) at `time` of a compiled time zone file's data (TZif, RFC
/// 8536: its version 1 part, whose transitions Debian's tzdata carries up to 2037; after the
/// last one its type stays). `None` for data that is not TZif or is cut short.
pub fn tzif_offset(data: &[u8], time: i64) -> Option<i32> {
    if data.get(..4)? != b"TZif" {
        return None;
    }
    let count = |i: usize| -> Option<usize> {
        let b = data.get(20 + 4 * i..24 + 4 * i)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (timecnt, typecnt) = (count(3)?, count(4)?);
    if typecnt == 0 {
        return None;
    }
    let times = 44usize;
    let indices = times.checked_add(timecnt.checked_mul(4)?)?;
    let infos = indices.checked_add(timecnt)?;
    let info = |t: usize| -> Option<i32> {
        let b = data.get(infos + 6 * t..infos + 6 * t + 4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut kind = 0usize;
    for i in 0..timecnt {
        let b = data.get(times + 4 * i..times + 4 * i + 4)?;
        if i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])) > time {
            break;
        }
        kind = usize::from(*data.get(indices + i)?);
    }
    if kind >= typecnt {
        return None;
    }
    info(kind)
}

/// The offset of the named zone (`America/Chicago`, from `/usr/share/zoneinfo`) at `time`.
fn zone_offset(timezone: &str, time: i64) -> Option<starling_core::chrono::FixedOffset> {
    let name = timezone.trim();
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    let data = std::fs::read(Path::new("/usr/share/zoneinfo").join(name)).ok()?;
    starling_core::chrono::FixedOffset::east_opt(tzif_offset(&data, time)?)
}

/// The envelope's date files for a message left at `origtime` (seconds since 1970): in the
/// mailbox's `[zonemessages]` zone (its format, and its time zone when the system knows it),
/// else Asterisk's default format in the server's local time.
pub fn datetime_files(zones: &[(String, String)], zone: &str, origtime: i64) -> Vec<String> {
    let found = zones.iter().find(|(name, _)| !zone.is_empty() && name.eq_ignore_ascii_case(zone));
    let (timezone, format) = match found {
        Some((_, value)) => value.split_once('|').unwrap_or(("", value.as_str())),
        None => ("", DEFAULT_FORMAT),
    };
    let now = Utc::now();
    if let (Some(then), Some(today)) = (zone_offset(timezone, origtime), zone_offset(timezone, now.timestamp())) {
        if let Some(time) = then.timestamp_opt(origtime, 0).single() {
            return say_date(format, &time, &now.with_timezone(&today));
        }
    }
    let Some(time) = Local.timestamp_opt(origtime, 0).single() else { return Vec::new() };
    say_date(format, &time, &Local::now())
}

/// `(name, number)` of a `"Name" <number>` caller ID (Asterisk's `ast_callerid_parse`): a
/// bare phone number is a number, anything else a name.
pub fn parse_callerid(cid: &str) -> (String, String) {
    let cid = cid.trim();
    if let (Some(open), Some(close)) = (cid.find('<'), cid.rfind('>')) {
        if open < close {
            let name = cid[..open].trim().trim_matches('"').trim().to_owned();
            return (name, cid[open + 1..close].trim().to_owned());
        }
    }
    if !cid.is_empty() && cid.chars().all(|c| c.is_ascii_digit() || "*#+-() ".contains(c)) {
        return (String::new(), cid.chars().filter(|c| !" -()".contains(*c)).collect());
    }
    (cid.trim_matches('"').to_owned(), String::new())
}

/// Who left the message (Asterisk's `play_message_callerid`): from an extension of an
/// internal context (`cidinternalcontexts`) its recorded name (`greet`) or `vm-from-extension`
/// and the digits, else `vm-from-phonenumber` and the digits, `vm-unknown-caller` without a
/// number.
pub fn callerid_files(
    cid: &str,
    context: &str,
    internal: &[String],
    greet_of: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let (_, number) = parse_callerid(cid);
    if number.is_empty() || number == "Unknown" {
        return vec!["vm-unknown-caller".into()];
    }
    if internal.iter().any(|c| c == context) {
        if let Some(greet) = greet_of(&number) {
            return vec!["vm-from".into(), greet];
        }
        let mut files = vec!["vm-from-extension".to_owned()];
        files.extend(media::digit_files(&number));
        return files;
    }
    let mut files = vec!["vm-from-phonenumber".to_owned()];
    files.extend(media::digit_files(&number));
    files
}

/// `vm-duration N vm-minutes` for a message of at least `min_minutes` minutes.
pub fn duration_files(seconds: u32, min_minutes: u32) -> Vec<String> {
    let minutes = seconds / 60;
    if minutes < min_minutes.max(1) {
        return Vec::new();
    }
    let mut files = vec!["vm-duration".to_owned()];
    files.extend(media::number_files(minutes));
    files.push("vm-minutes".into());
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::chrono::Utc;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn the_default_format_says_today_and_the_time() {
        let now = at(2026, 12, 7, 18, 0);
        assert_eq!(
            say_date(DEFAULT_FORMAT, &at(2026, 12, 7, 16, 5), &now),
            ["vm-received", "digits/at", "digits/4", "digits/oh", "digits/5", "digits/p-m"]
        );
        assert_eq!(
            say_date(DEFAULT_FORMAT, &at(2026, 12, 6, 0, 30), &now),
            ["vm-received", "digits/yesterday", "digits/at", "digits/12", "digits/30", "digits/a-m"]
        );
        // Three days ago: the weekday (Friday, day-5).
        assert_eq!(say_date("q", &at(2026, 12, 4, 9, 0), &now), ["digits/day-5"]);
        assert_eq!(
            say_date("Q", &at(2025, 1, 21, 9, 0), &now),
            ["digits/mon-0", "digits/20", "digits/h-1", "digits/2", "digits/thousand", "digits/20", "digits/5"]
        );
        assert_eq!(say_date("Q", &at(2026, 12, 7, 9, 0), &now), ["digits/today"]);
        assert_eq!(say_date("HM", &at(2026, 12, 7, 21, 0), &now), ["digits/20", "digits/1", "digits/oclock"]);
        assert_eq!(say_date("'unclosed", &now, &now), ["unclosed"]);
        assert_eq!(say_date("zZ%", &now, &now), Vec::<String>::new());
    }

    #[test]
    fn zone_files_give_the_offset_of_the_day() {
        let chicago = std::fs::read("/usr/share/zoneinfo/America/Chicago").expect("tzdata");
        let winter = at(2026, 12, 7, 12, 0).timestamp();
        let summer = at(2026, 7, 1, 12, 0).timestamp();
        assert_eq!(tzif_offset(&chicago, winter), Some(-6 * 3600));
        assert_eq!(tzif_offset(&chicago, summer), Some(-5 * 3600));
        assert_eq!(zone_offset("America/Chicago", summer).unwrap().local_minus_utc(), -5 * 3600);
        assert!(zone_offset("../etc/passwd", 0).is_none());
        assert!(zone_offset("Nowhere/Town", 0).is_none());
        // Cut short or not TZif at all: no offset, no panic.
        for len in 0..chicago.len().min(2000) {
            let _ = tzif_offset(&chicago[..len], winter);
        }
        assert_eq!(tzif_offset(b"TZif2\0\0\0", 0), None);
        assert_eq!(tzif_offset(b"not a zone file at all, not even close to one.....", 0), None);
        // A zone's format and time zone: 16:05 UTC is 10:05 in Chicago in December.
        let zones = [("central".to_owned(), "America/Chicago|'vm-received' IMp".to_owned())];
        let files = datetime_files(&zones, "central", at(2026, 12, 7, 16, 5).timestamp());
        assert_eq!(files, ["vm-received", "digits/10", "digits/oh", "digits/5", "digits/a-m"]);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_after_the_magic_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300), t in proptest::num::i64::ANY) {
            let mut data = b"TZif".to_vec();
            data.extend(body);
            let _ = tzif_offset(&data, t);
        }
    }

    #[test]
    fn caller_ids_are_said_as_asterisk_says_them() {
        assert_eq!(parse_callerid("\"Alice\" <1001>"), ("Alice".into(), "1001".into()));
        assert_eq!(parse_callerid("555-1234"), ("".into(), "5551234".into()));
        assert_eq!(parse_callerid("alice"), ("alice".into(), "".into()));
        let none = |_: &str| None;
        assert_eq!(callerid_files("Unknown", "default", &[], none), ["vm-unknown-caller"]);
        assert_eq!(callerid_files("<12>", "default", &[], none), ["vm-from-phonenumber", "digits/1", "digits/2"]);
        let internal = ["default".to_owned()];
        assert_eq!(callerid_files("<12>", "default", &internal, none), ["vm-from-extension", "digits/1", "digits/2"]);
        assert_eq!(
            callerid_files("<12>", "default", &internal, |n: &str| Some(format!("/g/{n}"))),
            ["vm-from", "/g/12"]
        );
        assert_eq!(duration_files(59, 1), Vec::<String>::new());
        assert_eq!(duration_files(150, 2), ["vm-duration", "digits/2", "vm-minutes"]);
    }
}
