//! Named time intervals (`time_intervals:` / `mute_time_intervals:`) used
//! by routes to mute notifications (maintenance windows) or to send only
//! during working hours, with Alertmanager's semantics: within one interval
//! every given field must match (an absent field matches anything); a set
//! matches when any of its intervals does. Ranges are inclusive except
//! `times`, whose end is exclusive; negative days of month count back from
//! the month's end. `location` is an IANA zone read from the system's
//! zoneinfo files (`UTC` and `Local` are built in).

use std::path::Path;

use chrono::{DateTime, Datelike, FixedOffset, Offset, Timelike, Utc};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// A named list of intervals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalSet {
    pub name: Spanned<String>,
    #[serde(default)]
    pub time_intervals: Vec<TimeInterval>,
}

impl TimeIntervalSet {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.time_intervals.iter().any(|i| i.contains(t))
    }
}

/// One interval: all present fields must match.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    #[serde(default)]
    pub times: Vec<TimeRange>,
    #[serde(default)]
    pub weekdays: Vec<WeekdayRange>,
    #[serde(default)]
    pub days_of_month: Vec<DayOfMonthRange>,
    #[serde(default)]
    pub months: Vec<MonthRange>,
    #[serde(default)]
    pub years: Vec<YearRange>,
    pub location: Option<Location>,
}

impl TimeInterval {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = match &self.location {
            Some(l) => l.convert(t),
            None => t.fixed_offset(),
        };
        if !self.times.is_empty() {
            let minute = local.hour() * 60 + local.minute();
            if !self
                .times
                .iter()
                .any(|r| minute >= r.start && minute < r.end)
            {
                return false;
            }
        }
        if !self.weekdays.is_empty() {
            // Sunday is 0, as in Go's time.Weekday.
            let wd = local.weekday().num_days_from_sunday();
            if !self.weekdays.iter().any(|r| wd >= r.0 && wd <= r.1) {
                return false;
            }
        }
        if !self.days_of_month.is_empty() {
            let dim = days_in_month(local.year(), local.month()) as i32;
            let day = local.day() as i32;
            let hit = self.days_of_month.iter().any(|r| {
                let fix = |d: i32| if d < 0 { dim + d + 1 } else { d };
                let (s, e) = (fix(r.0).max(1), fix(r.1).min(dim));
                day >= s && day <= e
            });
            if !hit {
                return false;
            }
        }
        if !self.months.is_empty() {
            let m = local.month();
            if !self.months.iter().any(|r| m >= r.0 && m <= r.1) {
                return false;
            }
        }
        if !self.years.is_empty() {
            let y = local.year();
            if !self.years.iter().any(|r| y >= r.0 && y <= r.1) {
                return false;
            }
        }
        true
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        chrono::NaiveDate::from_ymd_opt(ny, nm, 1),
        chrono::NaiveDate::from_ymd_opt(year, month, 1),
    ) {
        (Some(a), Some(b)) => (a - b).num_days() as u32,
        _ => 31,
    }
}

/// `start_time`/`end_time` as minutes of the day; end is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u32,
    pub end: u32,
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            start_time: String,
            end_time: String,
        }
        let r = Raw::deserialize(d)?;
        let start = parse_clock(&r.start_time).map_err(serde::de::Error::custom)?;
        let end = parse_clock(&r.end_time).map_err(serde::de::Error::custom)?;
        if start >= end {
            return Err(serde::de::Error::custom(
                "start time cannot be equal or greater than end time",
            ));
        }
        Ok(Self { start, end })
    }
}

fn parse_clock(s: &str) -> Result<u32, String> {
    let bad = || format!("couldn't parse timestamp {s:?}, invalid format");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("timestamp {s:?} out of range"));
    }
    Ok(h * 60 + m)
}

/// Splits `a:b` (or a single `a`) into a pair, parsing each side.
fn parse_range<T: Copy>(
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    // Negative day numbers contain '-', never ':', so split on ':' only.
    match s.split_once(':') {
        Some((a, b)) => Ok((parse(a.trim())?, parse(b.trim())?)),
        None => {
            let v = parse(s.trim())?;
            Ok((v, v))
        }
    }
}

/// Inclusive weekday range, Sunday = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekdayRange(pub u32, pub u32);

impl<'de> Deserialize<'de> for WeekdayRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (a, b) = parse_range(&s, |w| {
            let days = [
                "sunday",
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
            ];
            days.iter()
                .position(|d| d.eq_ignore_ascii_case(w))
                .map(|p| p as u32)
                .ok_or_else(|| format!("{w:?} is not a valid weekday"))
        })
        .map_err(serde::de::Error::custom)?;
        if a > b {
            return Err(serde::de::Error::custom(
                "start day cannot be before end day",
            ));
        }
        Ok(Self(a, b))
    }
}

/// Inclusive day-of-month range; negative values count from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayOfMonthRange(pub i32, pub i32);

impl<'de> Deserialize<'de> for DayOfMonthRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (a, b) = parse_range(&s, |v| {
            let n: i32 = v
                .parse()
                .map_err(|_| format!("{v:?} is not a valid day of month"))?;
            if n == 0 || !(-31..=31).contains(&n) {
                return Err(format!("{n} is not a valid day of month: out of range"));
            }
            Ok(n)
        })
        .map_err(serde::de::Error::custom)?;
        if (a > 0) == (b > 0) && a > b {
            return Err(serde::de::Error::custom(
                "end day must be greater than start day",
            ));
        }
        if a < 0 && b > 0 {
            return Err(serde::de::Error::custom(
                "end day must be negative when start day is negative",
            ));
        }
        Ok(Self(a, b))
    }
}

/// Inclusive month range, January = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange(pub u32, pub u32);

impl<'de> Deserialize<'de> for MonthRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (a, b) = parse_range(&s, |m| {
            const NAMES: [&str; 12] = [
                "january",
                "february",
                "march",
                "april",
                "may",
                "june",
                "july",
                "august",
                "september",
                "october",
                "november",
                "december",
            ];
            if let Some(p) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(m)) {
                return Ok(p as u32 + 1);
            }
            match m.parse::<u32>() {
                Ok(n) if (1..=12).contains(&n) => Ok(n),
                _ => Err(format!("{m:?} is not a valid month")),
            }
        })
        .map_err(serde::de::Error::custom)?;
        if a > b {
            return Err(serde::de::Error::custom(
                "end month must be after start month",
            ));
        }
        Ok(Self(a, b))
    }
}

/// Inclusive year range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YearRange(pub i32, pub i32);

impl<'de> Deserialize<'de> for YearRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (a, b) = parse_range(&s, |y| {
            y.parse::<i32>()
                .map_err(|_| format!("{y:?} is not a valid year"))
        })
        .map_err(serde::de::Error::custom)?;
        if a > b {
            return Err(serde::de::Error::custom(
                "end year must be after start year",
            ));
        }
        Ok(Self(a, b))
    }
}

/// A time zone: UTC, the machine's local zone, or a TZif zone.
#[derive(Debug, Clone)]
pub enum Location {
    Utc,
    Local,
    Zone(Box<Zone>),
}

impl Location {
    fn convert(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        match self {
            Location::Utc => t.fixed_offset(),
            Location::Local => t.with_timezone(&chrono::Local).fixed_offset(),
            Location::Zone(z) => {
                let off = FixedOffset::east_opt(z.offset_at(t.timestamp())).unwrap_or(Utc.fix());
                t.with_timezone(&off)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "" | "UTC" => Ok(Location::Utc),
            "Local" => Ok(Location::Local),
            name => Zone::load(name)
                .map(|z| Location::Zone(Box::new(z)))
                .map_err(|e| serde::de::Error::custom(format!("unknown time zone {name:?}: {e}"))),
        }
    }
}

/// Transitions of a TZif zone (RFC 8536), 64-bit section.
#[derive(Debug, Clone)]
pub struct Zone {
    transitions: Vec<i64>,
    /// UTC offset in seconds that applies from each transition on.
    offsets: Vec<i32>,
    /// Offset before the first transition.
    initial: i32,
}

impl Zone {
    fn load(name: &str) -> Result<Self, String> {
        if name.contains("..") || name.starts_with('/') {
            return Err("invalid zone name".into());
        }
        let dir = std::env::var("ZONEINFO").unwrap_or_else(|_| "/usr/share/zoneinfo".into());
        let data = std::fs::read(Path::new(&dir).join(name)).map_err(|e| e.to_string())?;
        Self::parse(&data)
    }

    fn parse(data: &[u8]) -> Result<Self, String> {
        let bad = || "malformed TZif data".to_string();
        let header = |at: usize| -> Result<[usize; 6], String> {
            if data.get(at..at + 4) != Some(b"TZif") {
                return Err(bad());
            }
            let mut c = [0usize; 6];
            for (i, slot) in c.iter_mut().enumerate() {
                let o = at + 20 + i * 4;
                let b = data.get(o..o + 4).ok_or_else(bad)?;
                *slot = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            }
            Ok(c)
        };
        // counts: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        let c1 = header(0)?;
        let version = *data.get(4).ok_or_else(bad)?;
        let (at, tsize, c) = if version >= b'2' {
            let v1len = c1[3] * 4 + c1[3] + c1[4] * 6 + c1[5] + c1[2] * 8 + c1[1] + c1[0];
            let at = 44 + v1len;
            (at + 44, 8, header(at)?)
        } else {
            (44, 4, c1)
        };
        let (timecnt, typecnt) = (c[3], c[4]);
        let mut p = at;
        let mut transitions = Vec::with_capacity(timecnt);
        for _ in 0..timecnt {
            let b = data.get(p..p + tsize).ok_or_else(bad)?;
            transitions.push(if tsize == 8 {
                i64::from_be_bytes(b.try_into().map_err(|_| bad())?)
            } else {
                i64::from(i32::from_be_bytes(b.try_into().map_err(|_| bad())?))
            });
            p += tsize;
        }
        let idx: Vec<usize> = data
            .get(p..p + timecnt)
            .ok_or_else(bad)?
            .iter()
            .map(|b| *b as usize)
            .collect();
        p += timecnt;
        let mut types = Vec::with_capacity(typecnt);
        for _ in 0..typecnt {
            let b = data.get(p..p + 6).ok_or_else(bad)?;
            types.push((i32::from_be_bytes([b[0], b[1], b[2], b[3]]), b[4] != 0));
            p += 6;
        }
        if types.is_empty() {
            return Err(bad());
        }
        let offsets = idx
            .iter()
            .map(|i| types.get(*i).map(|t| t.0).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        let initial = types.iter().find(|t| !t.1).unwrap_or(&types[0]).0;
        Ok(Self {
            transitions,
            offsets,
            initial,
        })
    }

    fn offset_at(&self, ts: i64) -> i32 {
        match self.transitions.partition_point(|t| *t <= ts) {
            0 => self.initial,
            n => self.offsets[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid test timestamp")
            .with_timezone(&Utc)
    }

    fn interval(yaml: &str) -> TimeInterval {
        serde_saphyr::from_str(yaml).expect("valid interval")
    }

    #[test]
    fn business_hours() {
        let i = interval(
            "times:\n  - start_time: '09:00'\n    end_time: '17:00'\nweekdays: ['monday:friday']\n",
        );
        assert!(i.contains(at("2024-03-04T09:00:00Z"))); // Monday
        assert!(!i.contains(at("2024-03-04T17:00:00Z"))); // end exclusive
        assert!(!i.contains(at("2024-03-03T10:00:00Z"))); // Sunday
    }

    #[test]
    fn negative_days_and_months_and_years() {
        let i = interval("days_of_month: ['-1']\nmonths: ['february']\nyears: ['2024:2025']\n");
        assert!(i.contains(at("2024-02-29T12:00:00Z")));
        assert!(!i.contains(at("2024-02-28T12:00:00Z")));
        assert!(!i.contains(at("2023-02-28T12:00:00Z")));
        let j = interval("days_of_month: ['1:5']\nmonths: ['1:3']\n");
        assert!(j.contains(at("2024-03-05T00:00:00Z")));
        assert!(!j.contains(at("2024-04-05T00:00:00Z")));
    }

    #[test]
    fn rejects_bad_fields() {
        for bad in [
            "times:\n  - start_time: '10:00'\n    end_time: '09:00'\n",
            "weekdays: ['funday']\n",
            "days_of_month: ['0']\n",
            "months: ['13']\n",
            "times:\n  - start_time: '25:00'\n    end_time: '26:00'\n",
        ] {
            assert!(
                serde_saphyr::from_str::<TimeInterval>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn zone_location_shifts_the_clock() {
        // tests/run.sh installs tzdata; without it this would prove nothing.
        assert!(
            Path::new("/usr/share/zoneinfo/Europe/Berlin").exists(),
            "/usr/share/zoneinfo/Europe/Berlin is missing: apt-get install tzdata (tests/run.sh does)"
        );
        let i = interval(
            "times:\n  - start_time: '09:00'\n    end_time: '10:00'\nlocation: Europe/Berlin\n",
        );
        // 08:30 UTC in winter is 09:30 in Berlin, in summer 10:30.
        assert!(i.contains(at("2024-01-10T08:30:00Z")));
        assert!(!i.contains(at("2024-07-10T08:30:00Z")));
        assert!(i.contains(at("2024-07-10T07:30:00Z")));
    }
}
