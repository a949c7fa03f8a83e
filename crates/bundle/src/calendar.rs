//! The XNYS (New York Stock Exchange) trading calendar, computed from rules for 2000–2030.
//!
//! Holidays follow the exchange's published rules rather than a hard-coded list, so that every
//! year in the supported range is right, not just the years the synthetic bundles use:
//! New Year's Day (Sunday → Monday; a Saturday New Year is not made up on the Friday),
//! Martin Luther King Jr. Day, Washington's Birthday, Good Friday, Memorial Day, Juneteenth
//! (from 2022), Independence Day, Labor Day, Thanksgiving and Christmas (Saturday → Friday,
//! Sunday → Monday), plus the special closures of the period: 11–14 September 2001, the
//! national days of mourning for Presidents Reagan (2004-06-11), Ford (2007-01-02), G. H. W.
//! Bush (2018-12-05) and Carter (2025-01-09), and Hurricane Sandy (2012-10-29 and 30).
//!
//! Early closes (13:00) are the day after Thanksgiving, Christmas Eve on a Monday to Thursday,
//! and the day before Independence Day: 3 July on a Monday, Tuesday or Thursday (and on a
//! Wednesday from 2013), or 5 July on a Friday before 2013. This matches `exchange_calendars`.

use chrono::{Datelike, NaiveDate, Weekday};

/// First year the calendar rules are known to be right for.
pub const FIRST_YEAR: i32 = 2000;
/// Last year the calendar rules are known to be right for.
pub const LAST_YEAR: i32 = 2030;

/// Minutes from midnight (New York time) of the first minute bar's close: 09:31.
pub const FIRST_BAR_MINUTE: u32 = 9 * 60 + 31;
/// Minute bars in a full session (09:31 to 16:00).
pub const FULL_SESSION_MINUTES: u32 = 390;
/// Minute bars in an early-close session (09:31 to 13:00).
pub const EARLY_CLOSE_MINUTES: u32 = 210;

/// Whether `year` is inside the range this calendar is defined for.
pub fn supports(date: NaiveDate) -> bool {
    (FIRST_YEAR..=LAST_YEAR).contains(&date.year())
}

/// Whether the exchange holds a regular session on `date`.
///
/// Dates outside [`FIRST_YEAR`]..=[`LAST_YEAR`] are never sessions; callers that accept user
/// dates check [`supports`] first so that they can say why.
pub fn is_session(date: NaiveDate) -> bool {
    supports(date) && !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_holiday(date)
}

/// Whether the session on `date` closes early, at 13:00.
pub fn is_early_close(date: NaiveDate) -> bool {
    if !is_session(date) {
        return false;
    }
    let (y, m, d, wd) = (date.year(), date.month(), date.day(), date.weekday());
    let day_after_thanksgiving = nth_weekday(y, 11, Weekday::Thu, 4) + chrono::Days::new(1);
    if date == day_after_thanksgiving {
        return true;
    }
    if m == 12 && d == 24 && matches!(wd, Weekday::Mon | Weekday::Tue | Weekday::Wed | Weekday::Thu) {
        return true;
    }
    if m == 7 && d == 3 {
        return match wd {
            Weekday::Mon | Weekday::Tue | Weekday::Thu => true,
            Weekday::Wed => y >= 2013,
            _ => false,
        };
    }
    m == 7 && d == 5 && wd == Weekday::Fri && y < 2013
}

/// Number of minute bars in the session on `date`: 390, or 210 on an early close.
pub fn minutes_in_session(date: NaiveDate) -> u32 {
    if is_early_close(date) { EARLY_CLOSE_MINUTES } else { FULL_SESSION_MINUTES }
}

/// Every session from `start` to `end`, both inclusive.
pub fn sessions_between(start: NaiveDate, end: NaiveDate) -> Vec<NaiveDate> {
    start.iter_days().take_while(|d| *d <= end).filter(|d| is_session(*d)).collect()
}

fn is_holiday(date: NaiveDate) -> bool {
    let y = date.year();
    let ymd = |m, d| NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
    // Special closures first: they are not rules, they are history.
    const SPECIAL: &[(i32, u32, u32)] = &[
        (2001, 9, 11),
        (2001, 9, 12),
        (2001, 9, 13),
        (2001, 9, 14),
        (2004, 6, 11),
        (2007, 1, 2),
        (2012, 10, 29),
        (2012, 10, 30),
        (2018, 12, 5),
        (2025, 1, 9),
    ];
    if SPECIAL.iter().any(|&(sy, sm, sd)| sy == y && date.month() == sm && date.day() == sd) {
        return true;
    }
    // New Year's Day: Sunday moves to Monday; Saturday is not made up.
    let new_year = ymd(1, 1);
    let new_year_observed = match new_year.weekday() {
        Weekday::Sun => Some(ymd(1, 2)),
        Weekday::Sat => None,
        _ => Some(new_year),
    };
    let fixed = [
        new_year_observed,
        Some(nth_weekday(y, 1, Weekday::Mon, 3)), // Martin Luther King Jr. Day
        Some(nth_weekday(y, 2, Weekday::Mon, 3)), // Washington's Birthday
        Some(easter_sunday(y) - chrono::Days::new(2)), // Good Friday
        Some(last_weekday(y, 5, Weekday::Mon)),   // Memorial Day
        (y >= 2022).then(|| observed(ymd(6, 19))), // Juneteenth
        Some(observed(ymd(7, 4))),                // Independence Day
        Some(nth_weekday(y, 9, Weekday::Mon, 1)), // Labor Day
        Some(nth_weekday(y, 11, Weekday::Thu, 4)), // Thanksgiving
        Some(observed(ymd(12, 25))),              // Christmas
    ];
    fixed.contains(&Some(date))
}

/// Saturday holidays are observed on the Friday before, Sunday ones on the Monday after.
fn observed(date: NaiveDate) -> NaiveDate {
    match date.weekday() {
        Weekday::Sat => date - chrono::Days::new(1),
        Weekday::Sun => date + chrono::Days::new(1),
        _ => date,
    }
}

fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n).expect("nth weekday exists")
}

fn last_weekday(year: i32, month: u32, weekday: Weekday) -> NaiveDate {
    (1..=5)
        .rev()
        .find_map(|n| NaiveDate::from_weekday_of_month_opt(year, month, weekday, n))
        .expect("a month has at least four of each weekday")
}

/// Gregorian Easter Sunday (the anonymous "Meeus/Jones/Butcher" algorithm).
fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("easter is a valid date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn easter_known_years() {
        for (y, s) in [(2000, "2000-04-23"), (2019, "2019-04-21"), (2024, "2024-03-31"), (2030, "2030-04-21")] {
            assert_eq!(easter_sunday(y), d(s));
        }
    }

    #[test]
    fn observed_moves_weekend_holidays() {
        assert_eq!(observed(d("2021-12-25")), d("2021-12-24"));
        assert_eq!(observed(d("2022-06-19")), d("2022-06-20"));
        assert_eq!(observed(d("2023-07-04")), d("2023-07-04"));
    }
}
