//! What VoiceMailMain says about a message before playing it (Asterisk's
//! `play_message_datetime`, `play_message_callerid`, `play_message_duration`): the date in the
//! mailbox's `[zonemessages]` format (else Asterisk's `'vm-received' q 'digits/at' IMp`),
//! said as Asterisk's English `ast_say_date_with_format`, and who called.

use starling_core::chrono::{DateTime, Datelike, Local, TimeZone, Timelike};
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

/// The envelope's date files for a message left at `origtime` (seconds since 1970), in the
/// mailbox's zone format when it has one.
pub fn datetime_files(zones: &[(String, String)], zone: &str, origtime: i64) -> Vec<String> {
    let format = zones
        .iter()
        .find(|(name, _)| !zone.is_empty() && name.eq_ignore_ascii_case(zone))
        .map(|(_, value)| value.split_once('|').map_or(value.as_str(), |(_, format)| format))
        .unwrap_or(DEFAULT_FORMAT);
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
