//! Opening hours: which days and which minutes of the day browsing is
//! allowed, in a fixed UTC offset. Pure arithmetic on Unix seconds (no
//! calendar crate): 1970-01-01 was a Thursday.

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ALL_DAYS: u8 = 0b111_1111;

/// Compiled `[hours]`: a window [from, to) on the listed days. When `to <
/// from` the window crosses midnight and belongs to the day it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hours {
    /// Bit i set = day i allowed, Monday = 0.
    days: u8,
    /// Minutes after local midnight; `from == 0 && to == 1440` is all day.
    from: u16,
    to: u16,
    offset_minutes: i32,
    /// `mon-fri 08:00-18:00 +01:00`, used in denials and the summary.
    label: String,
}

/// Local day and time at a moment, for "it is sat 10:15 there now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub weekday: u8,
    pub minute: u16,
}

impl LocalTime {
    pub(crate) fn at(now_unix: i64, offset_minutes: i32) -> LocalTime {
        let local = now_unix.saturating_add(i64::from(offset_minutes) * 60);
        let day = local.div_euclid(86_400);
        // rem_euclid keeps these in 0..7 and 0..1440, so the casts cannot truncate.
        let weekday = (day + 3).rem_euclid(7) as u8;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        LocalTime { weekday, minute }
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = DAY_NAMES[usize::from(self.weekday % 7)];
        write!(f, "{name} {}", fmt_hhmm(self.minute))
    }
}

impl Hours {
    /// Build from already-parsed parts (see the `parse_*` functions).
    pub(crate) fn new(days: u8, days_text: &str, window: Option<(u16, u16)>, offset: i32) -> Hours {
        let (from, to) = window.unwrap_or((0, 1440));
        let label = format!(
            "{} {}-{} {}",
            days_text,
            fmt_hhmm(from),
            fmt_hhmm(to),
            fmt_offset(offset)
        );
        Hours {
            days,
            from,
            to,
            offset_minutes: offset,
            label,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn day_on(&self, weekday: u8) -> bool {
        self.days & (1 << (weekday % 7)) != 0
    }

    /// `Ok` inside the window, otherwise the local time that was outside it.
    pub(crate) fn check(&self, now_unix: i64) -> Result<(), LocalTime> {
        let t = LocalTime::at(now_unix, self.offset_minutes);
        let inside = if self.from < self.to {
            self.day_on(t.weekday) && self.from <= t.minute && t.minute < self.to
        } else {
            // Crosses midnight: the evening part counts for today, the early
            // morning part for the day before (when the window started).
            (t.minute >= self.from && self.day_on(t.weekday))
                || (t.minute < self.to && self.day_on((t.weekday + 6) % 7))
        };
        if inside {
            Ok(())
        } else {
            Err(t)
        }
    }
}

pub(crate) fn fmt_hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

pub(crate) fn fmt_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

fn day_index(name: &str) -> Option<u8> {
    let lower = name.trim().to_ascii_lowercase();
    // Index < 7, so the cast cannot truncate.
    DAY_NAMES.iter().position(|d| *d == lower).map(|i| i as u8)
}

/// `"mon-fri"`, `"mon,wed,fri"`, `"fri-mon"` (wraps), `"mon-fri,sun"`,
/// `"daily"` / `"all"` → bit set of days. Returns the normalised text too.
pub(crate) fn parse_days(s: &str) -> Result<(u8, String), String> {
    let expected = "expected day names mon, tue, wed, thu, fri, sat, sun as a range \
                    (\"mon-fri\"), a list (\"mon,wed,fri\"), both (\"mon-fri,sun\"), or \"daily\"";
    let text = s.trim().to_ascii_lowercase();
    if text == "daily" || text == "all" {
        return Ok((ALL_DAYS, text));
    }
    let mut days = 0u8;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("{s:?} has an empty entry; {expected}"));
        }
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let unknown = |d: &str| format!("{s:?}: unknown day {:?}; {expected}", d.trim());
        let a = day_index(a).ok_or_else(|| unknown(a))?;
        let b = day_index(b).ok_or_else(|| unknown(b))?;
        let mut d = a;
        loop {
            days |= 1 << d;
            if d == b {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    let normal: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    Ok((days, normal))
}

/// `"HH:MM"` (exactly two digits each) → minutes after midnight.
pub(crate) fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time; expected HH:MM between 00:00 and 23:59");
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(bad());
    }
    let digit = |i: usize| u16::from(b[i] - b'0');
    let (h, m) = (digit(0) * 10 + digit(1), digit(3) * 10 + digit(4));
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `"+01:00"`, `"-05:30"` → signed minutes east of UTC, within -12:00..=+14:00.
pub(crate) fn parse_offset(s: &str) -> Result<i32, String> {
    let bad = || {
        format!(
            "{s:?} is not a UTC offset; expected +HH:MM or -HH:MM between -12:00 and +14:00, \
             as in \"+01:00\""
        )
    };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    // Same shape as a time of day, but hours are limited differently below.
    let b = rest.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(bad());
    }
    let digit = |i: usize| i32::from(b[i] - b'0');
    let (h, m) = (digit(0) * 10 + digit(1), digit(3) * 10 + digit(4));
    let minutes = sign * (h * 60 + m);
    if m > 59 || !(-12 * 60..=14 * 60).contains(&minutes) {
        return Err(bad());
    }
    Ok(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 00:00 UTC, a Monday.
    const MON: i64 = 1_704_067_200;

    fn at(day: i64, h: i64, m: i64) -> i64 {
        MON + day * 86_400 + h * 3600 + m * 60
    }

    fn hours(days: &str, window: Option<(&str, &str)>, offset: &str) -> Hours {
        let (d, text) = parse_days(days).unwrap();
        let w = window.map(|(a, b)| (parse_hhmm(a).unwrap(), parse_hhmm(b).unwrap()));
        Hours::new(d, &text, w, parse_offset(offset).unwrap())
    }

    #[test]
    fn weekday_arithmetic() {
        assert_eq!(LocalTime::at(0, 0).weekday, 3, "1970-01-01 was a Thursday");
        assert_eq!(
            LocalTime::at(MON, 0),
            LocalTime {
                weekday: 0,
                minute: 0
            }
        );
        assert_eq!(
            LocalTime::at(MON - 60, 0),
            LocalTime {
                weekday: 6,
                minute: 1439
            }
        );
        assert_eq!(
            LocalTime::at(-86_400, 0).weekday,
            2,
            "1969-12-31 was a Wednesday"
        );
        assert_eq!(LocalTime::at(at(4, 10, 15), 0).to_string(), "fri 10:15");
        // Extremes do not overflow.
        LocalTime::at(i64::MAX, 14 * 60);
        LocalTime::at(i64::MIN, -12 * 60);
    }

    #[test]
    fn days() {
        assert_eq!(parse_days("mon-fri").unwrap().0, 0b001_1111);
        assert_eq!(parse_days("sat-sun").unwrap().0, 0b110_0000);
        assert_eq!(parse_days("mon,wed,fri").unwrap().0, 0b001_0101);
        assert_eq!(parse_days("mon-fri,sun").unwrap().0, 0b101_1111);
        assert_eq!(parse_days("fri-mon").unwrap().0, 0b111_0001);
        assert_eq!(parse_days("daily").unwrap().0, ALL_DAYS);
        assert_eq!(parse_days("ALL").unwrap().0, ALL_DAYS);
        assert_eq!(
            parse_days(" Mon - Fri ").unwrap(),
            (0b001_1111, "mon-fri".into())
        );
        assert_eq!(parse_days("wed").unwrap().0, 0b000_0100);
        for bad in [
            "",
            "mon-fry",
            "monday",
            "mon,,fri",
            "mon-",
            "-fri",
            "mon-tue-wed",
            "7",
        ] {
            assert!(parse_days(bad).is_err(), "{bad:?}");
        }
        assert!(parse_days("mon-fry")
            .unwrap_err()
            .contains("unknown day \"fry\""));
    }

    #[test]
    fn times_and_offsets() {
        assert_eq!(parse_hhmm("00:00"), Ok(0));
        assert_eq!(parse_hhmm("23:59"), Ok(1439));
        assert_eq!(parse_hhmm("08:30"), Ok(510));
        for bad in [
            "24:00", "25:00", "8:0", "8:00", "08:60", "0800", "08:00:00", " 08:00", "+1:00",
        ] {
            assert!(parse_hhmm(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_offset("+00:00"), Ok(0));
        assert_eq!(parse_offset("+01:00"), Ok(60));
        assert_eq!(parse_offset("-05:30"), Ok(-330));
        assert_eq!(parse_offset("+14:00"), Ok(840));
        assert_eq!(parse_offset("-12:00"), Ok(-720));
        for bad in [
            "+25:00", "+14:01", "-12:30", "01:00", "+1:00", "+01:60", "Z", "", "+01:00x",
        ] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
        assert_eq!(fmt_offset(-330), "-05:30");
        assert_eq!(fmt_offset(60), "+01:00");
    }

    #[test]
    fn office_hours() {
        let h = hours("mon-fri", Some(("08:00", "18:00")), "+00:00");
        assert_eq!(h.label(), "mon-fri 08:00-18:00 +00:00");
        assert!(h.check(at(0, 8, 0)).is_ok(), "from is inclusive");
        assert!(h.check(at(0, 17, 59)).is_ok());
        assert!(h.check(at(0, 18, 0)).is_err(), "to is exclusive");
        assert!(h.check(at(0, 7, 59)).is_err());
        assert!(h.check(at(4, 12, 0)).is_ok(), "friday");
        assert_eq!(
            h.check(at(5, 12, 0)),
            Err(LocalTime {
                weekday: 5,
                minute: 720
            })
        );
    }

    #[test]
    fn across_midnight() {
        // Night shift mon-fri 22:00-06:00: the morning part belongs to the day before.
        let h = hours("mon-fri", Some(("22:00", "06:00")), "+00:00");
        assert!(h.check(at(0, 23, 0)).is_ok(), "monday 23:00");
        assert!(
            h.check(at(1, 5, 0)).is_ok(),
            "tuesday 05:00, started monday"
        );
        assert!(h.check(at(1, 12, 0)).is_err(), "tuesday noon");
        assert!(
            h.check(at(0, 5, 0)).is_err(),
            "monday 05:00 started on sunday"
        );
        assert!(
            h.check(at(5, 5, 0)).is_ok(),
            "saturday 05:00 started friday"
        );
        assert!(h.check(at(5, 23, 0)).is_err(), "saturday 23:00");
        assert!(h.check(at(1, 6, 0)).is_err(), "to is exclusive");
        assert!(h.check(at(1, 22, 0)).is_ok(), "from is inclusive");
    }

    #[test]
    fn offsets_shift_the_day() {
        let h = hours("mon-fri", Some(("08:00", "18:00")), "+01:00");
        // 07:30 UTC Monday is 08:30 in +01:00.
        assert!(h.check(at(0, 7, 30)).is_ok());
        assert!(h.check(at(0, 17, 30)).is_err(), "18:30 local");
        // Friday 23:30 UTC is Saturday 00:30 in +01:00: outside mon-fri all day.
        let all_day = hours("mon-fri", None, "+01:00");
        assert!(all_day.check(at(4, 22, 30)).is_ok());
        assert!(all_day.check(at(4, 23, 30)).is_err());
        // -05:30: Tuesday 03:00 UTC is Monday 21:30 local.
        let h = hours("mon", Some(("20:00", "23:00")), "-05:30");
        assert!(h.check(at(1, 3, 0)).is_ok());
        assert!(h.check(at(0, 21, 30)).is_err(), "monday 16:00 local");
        assert_eq!(
            h.check(at(1, 5, 0)),
            Err(LocalTime {
                weekday: 0,
                minute: 23 * 60 + 30
            })
        );
    }

    #[test]
    fn wrap_around_days() {
        let h = hours("fri-mon", None, "+00:00");
        for (day, ok) in [
            (0, true),
            (1, false),
            (2, false),
            (3, false),
            (4, true),
            (5, true),
            (6, true),
        ] {
            assert_eq!(h.check(at(day, 12, 0)).is_ok(), ok, "day {day}");
        }
    }
}
