//! Calendar dates as days since 1970-01-01, and the period texts of DESIGN.md "Settled interfaces".

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year, month and day of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in a month.
pub fn month_days(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD` (a real calendar date, years 1000–9999).
pub fn parse_date(s: &str) -> Option<i32> {
    let (y, rest) = s.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (digits(y)?, digits(m)?, digits(d)?);
    if y < 1000 || !(1..=12).contains(&m) || d == 0 || d > month_days(i64::from(y), m) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(y), m, d)).ok()
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The year of a day number.
pub fn year_of(days: i32) -> i64 {
    civil_from_days(i64::from(days)).0
}

/// What kind of period a period text names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodKind {
    /// "2025"
    Year,
    /// "2025-Q3"
    Quarter,
    /// "2025-07"
    Month,
}

impl PeriodKind {
    /// "year", "quarter" or "month".
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Year => "year",
            PeriodKind::Quarter => "quarter",
            PeriodKind::Month => "month",
        }
    }
}

/// A period text's kind and reference date (its last day): "2025" → 2025-12-31,
/// "2025-Q3" → 2025-09-30, "2025-07" → 2025-07-31. Any other form is `None`.
pub fn parse_period(s: &str) -> Option<(PeriodKind, i32)> {
    let (y, rest) = match s.split_once('-') {
        Some((y, r)) => (y, Some(r)),
        None => (s, None),
    };
    if y.len() != 4 {
        return None;
    }
    let year = i64::from(digits(y)?);
    if year < 1000 {
        return None;
    }
    let (kind, month) = match rest {
        None => (PeriodKind::Year, 12),
        Some(r) => match r.strip_prefix('Q') {
            Some(q) if q.len() == 1 => match digits(q)? {
                q @ 1..=4 => (PeriodKind::Quarter, q * 3),
                _ => return None,
            },
            Some(_) => return None,
            None if r.len() == 2 => match digits(r)? {
                m @ 1..=12 => (PeriodKind::Month, m),
                _ => return None,
            },
            None => return None,
        },
    };
    let last = days_from_civil(year, month, month_days(year, month));
    Some((kind, i32::try_from(last).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_reject_impossible_days() {
        for s in ["1970-01-01", "2024-02-29", "2025-12-31", "2000-03-01"] {
            let d = parse_date(s).expect("valid");
            assert_eq!(format_date(d), s);
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        for s in ["2025-02-29", "2025-13-01", "31/12/2025", "2025-1-01", "2025-00-10", ""] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }

    #[test]
    fn periods_map_to_their_last_day() {
        let f = |s| parse_period(s).map(|(k, d)| (k, format_date(d)));
        assert_eq!(f("2025"), Some((PeriodKind::Year, "2025-12-31".into())));
        assert_eq!(f("2025-Q3"), Some((PeriodKind::Quarter, "2025-09-30".into())));
        assert_eq!(f("2025-Q1"), Some((PeriodKind::Quarter, "2025-03-31".into())));
        assert_eq!(f("2024-02"), Some((PeriodKind::Month, "2024-02-29".into())));
        for bad in ["2025-Q5", "2025-13", "25", "2025-Q", "2025-7", "year"] {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
    }
}
