//! Time conditions of `include => ctx,9:00-17:00,mon-fri,*,*` and GotoIfTime: times, weekdays,
//! days of the month, months (Asterisk's `ast_build_timing`). `*` is any; ranges may wrap
//! (`fri-mon`, `22:00-06:00`); `&` joins several (`mon&wed`).

/// A moment in local time, as the PBX passes it in (the clock is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOfDay {
    /// 0 = Sunday .. 6 = Saturday.
    pub weekday: u8,
    /// 1..=31.
    pub mday: u8,
    /// 1..=12.
    pub month: u8,
    pub hour: u8,
    pub minute: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Minutes of the day allowed (0..1440).
    minutes: Vec<(u16, u16)>,
    weekdays: u8,
    mdays: u32,
    months: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad time condition '{0}': {1}")]
pub struct TimingError(pub String, pub &'static str);

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// Sets bits `from..=to` of a mask of `size` positions, wrapping when `to < from`.
fn span(from: u32, to: u32, size: u32) -> u32 {
    let mut mask = 0;
    let mut i = from;
    loop {
        mask |= 1 << i;
        if i == to {
            return mask;
        }
        i = (i + 1) % size;
    }
}

fn parse_list(
    spec: &str,
    size: u32,
    parse_one: impl Fn(&str) -> Option<u32>,
    what: &'static str,
) -> Result<u32, TimingError> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "*" {
        return Ok(span(0, size - 1, size));
    }
    let mut mask = 0;
    for part in spec.split('&') {
        let bad = || TimingError(spec.to_owned(), what);
        mask |= match part.split_once('-') {
            Some((a, b)) => span(parse_one(a.trim()).ok_or_else(bad)?, parse_one(b.trim()).ok_or_else(bad)?, size),
            None => 1 << parse_one(part.trim()).ok_or_else(bad)?,
        };
    }
    Ok(mask)
}

fn minute_of_day(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Timing {
    /// Parses `times,weekdays,mdays,months` (`|` also separates, as old configs write it).
    pub fn parse(spec: &str) -> Result<Timing, TimingError> {
        let parts: Vec<&str> = spec.split([',', '|']).collect();
        let field = |i: usize| parts.get(i).copied().unwrap_or("*");
        // Asterisk's fifth field names a time zone; this build has no zone database, so it
        // says so rather than read the times in the wrong zone.
        if let Some(zone) = parts.get(4).map(|z| z.trim()).filter(|z| !z.is_empty()) {
            return Err(TimingError(zone.to_owned(), "time zones are not supported (times are local)"));
        }
        if parts.len() > 5 {
            return Err(TimingError(spec.to_owned(), "expected times,weekdays,mdays,months[,timezone]"));
        }
        let times = field(0).trim();
        let mut minutes = Vec::new();
        if times.is_empty() || times == "*" {
            minutes.push((0, 1439));
        } else {
            for range in times.split('&') {
                // A lone HH:MM is that one minute (get_timerange).
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let bad = || TimingError(times.to_owned(), "expected HH:MM-HH:MM");
                let (a, b) = (minute_of_day(a).ok_or_else(bad)?, minute_of_day(b).ok_or_else(bad)?);
                // Both ends are included, as pbx.c's get_timerange "does the last one" too.
                minutes.push((a, b));
            }
        }
        let day = |s: &str| DAYS.iter().position(|d| s.eq_ignore_ascii_case(d)).map(|d| d as u32);
        let month = |s: &str| MONTHS.iter().position(|m| s.eq_ignore_ascii_case(m)).map(|m| m as u32);
        let mday = |s: &str| s.parse::<u32>().ok().filter(|d| (1..=31).contains(d)).map(|d| d - 1);
        Ok(Timing {
            minutes,
            weekdays: parse_list(field(1), 7, day, "expected days like mon-fri")? as u8,
            mdays: parse_list(field(2), 31, mday, "expected days of the month like 1-15")?,
            months: parse_list(field(3), 12, month, "expected months like jan-mar")? as u16,
        })
    }

    pub fn matches(&self, t: &TimeOfDay) -> bool {
        let minute = u16::from(t.hour) * 60 + u16::from(t.minute);
        let in_time =
            self.minutes
                .iter()
                .any(|(a, b)| if a <= b { (a..=b).contains(&&minute) } else { minute >= *a || minute <= *b });
        in_time
            && self.weekdays & (1 << t.weekday.min(6)) != 0
            && self.mdays & (1 << (t.mday.clamp(1, 31) - 1)) != 0
            && self.months & (1 << (t.month.clamp(1, 12) - 1)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, mday: u8, month: u8, hour: u8, minute: u8) -> TimeOfDay {
        TimeOfDay { weekday, mday, month, hour, minute }
    }

    #[test]
    fn office_hours() {
        let t = Timing::parse("9:00-17:00,mon-fri,*,*").unwrap();
        assert!(t.matches(&at(1, 10, 3, 9, 0)));
        assert!(t.matches(&at(5, 10, 3, 17, 0)), "the end minute is included, as in Asterisk");
        assert!(!t.matches(&at(5, 10, 3, 17, 1)));
        assert!(!t.matches(&at(6, 10, 3, 12, 0)), "Saturday");
        assert!(!t.matches(&at(0, 10, 3, 12, 0)), "Sunday");
    }

    #[test]
    fn wrapping_ranges_and_lists() {
        let night = Timing::parse("22:00-06:00|*|*|*").unwrap();
        assert!(night.matches(&at(2, 1, 1, 23, 30)) && night.matches(&at(2, 1, 1, 5, 0)));
        assert!(!night.matches(&at(2, 1, 1, 12, 0)));
        let weekend = Timing::parse("*,fri-mon,*,*").unwrap();
        assert!(
            weekend.matches(&at(0, 1, 1, 0, 0))
                && weekend.matches(&at(5, 1, 1, 0, 0))
                && !weekend.matches(&at(3, 1, 1, 0, 0))
        );
        let christmas = Timing::parse("*,*,24-26,dec").unwrap();
        assert!(christmas.matches(&at(4, 25, 12, 10, 0)) && !christmas.matches(&at(4, 25, 11, 10, 0)));
        let some = Timing::parse("*,mon&wed,*,*").unwrap();
        assert!(some.matches(&at(3, 1, 1, 0, 0)) && !some.matches(&at(2, 1, 1, 0, 0)));
        assert!(Timing::parse("25:00-26:00,*,*,*").is_err());
        let minute = Timing::parse("12:30,*,*,*").unwrap();
        assert!(
            minute.matches(&at(2, 1, 1, 12, 30)) && !minute.matches(&at(2, 1, 1, 12, 31)),
            "a lone time is one minute"
        );
        assert!(Timing::parse("*,someday,*,*").is_err());
        assert!(Timing::parse("*,*,0,*").is_err());
        assert!(Timing::parse("9:00-17:00,mon-fri,*,*,").is_ok(), "an empty time zone is the local one");
        let zone = Timing::parse("9:00-17:00,mon-fri,*,*,Europe/London").unwrap_err();
        assert!(zone.to_string().contains("time zones are not supported"), "{zone}");
    }
}
