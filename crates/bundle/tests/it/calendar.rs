//! The XNYS calendar against published session counts, early closes and special closures.

use bundle::calendar::{is_early_close, is_session, minutes_in_session, sessions_between};
use chrono::{Datelike, NaiveDate};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn sessions_in_year(y: i32) -> usize {
    sessions_between(NaiveDate::from_ymd_opt(y, 1, 1).unwrap(), NaiveDate::from_ymd_opt(y, 12, 31).unwrap()).len()
}

#[test]
fn session_counts_2020_to_2024() {
    assert_eq!(sessions_between(d("2020-01-02"), d("2024-12-31")).len(), 1258);
    let per_year: Vec<usize> = (2020..=2024).map(sessions_in_year).collect();
    assert_eq!(per_year, [253, 252, 251, 250, 252]);
}

#[test]
fn session_counts_of_other_years() {
    // NYSE trading days per year, as published (the special closures make 2001, 2012, 2018
    // and 2025 short).
    let expected = [
        (2000, 252),
        (2001, 248),
        (2002, 252),
        (2003, 252),
        (2004, 252),
        (2005, 252),
        (2006, 251),
        (2007, 251),
        (2008, 253),
        (2009, 252),
        (2010, 252),
        (2011, 252),
        (2012, 250),
        (2013, 252),
        (2014, 252),
        (2015, 252),
        (2016, 252),
        (2017, 251),
        (2018, 251),
        (2019, 252),
        (2025, 250),
    ];
    for (y, n) in expected {
        assert_eq!(sessions_in_year(y), n, "sessions in {y}");
    }
}

#[test]
fn early_closes_2020_to_2024_are_exactly_the_published_ones() {
    let early: Vec<String> = sessions_between(d("2020-01-02"), d("2024-12-31"))
        .into_iter()
        .filter(|s| is_early_close(*s))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        early,
        [
            "2020-11-27",
            "2020-12-24",
            "2021-11-26",
            "2022-11-25",
            "2023-07-03",
            "2023-11-24",
            "2024-07-03",
            "2024-11-29",
            "2024-12-24"
        ]
    );
    assert_eq!(minutes_in_session(d("2024-12-24")), 210);
    assert_eq!(minutes_in_session(d("2024-12-23")), 390);
}

#[test]
fn early_closes_of_other_years() {
    // Friday 5 July after Independence Day was an early close before 2013; Wednesday 3 July
    // became one in 2013.
    for (date, early) in [
        ("2002-07-05", true),
        ("2013-07-03", true),
        ("2019-07-03", true),
        ("2008-07-03", true),
        ("2012-07-03", true),
        ("2007-07-03", true),
        ("2001-12-24", true),
        ("2018-07-05", false),
        ("2023-12-22", false),
    ] {
        assert_eq!(is_early_close(d(date)), early, "{date}");
    }
}

#[test]
fn holidays_and_special_closures() {
    let closed = [
        "2001-09-11",
        "2001-09-12",
        "2001-09-13",
        "2001-09-14",
        "2004-06-11",
        "2007-01-02",
        "2012-10-29",
        "2012-10-30",
        "2018-12-05",
        "2025-01-09",
        "2022-06-20", // Juneteenth observed on Monday
        "2021-12-24", // Christmas observed on Friday
        "2021-07-05", // Independence Day observed on Monday
        "2024-03-29", // Good Friday
        "2020-01-20", // Martin Luther King Jr. Day
        "2023-01-02", // New Year's Day observed on Monday
    ];
    for s in closed {
        assert!(!is_session(d(s)), "{s} must be closed");
    }
    let open = [
        "2001-09-17", // reopened after 9/11
        "2021-12-31", // New Year's Day 2022 was a Saturday: not made up
        "2021-06-18", // Juneteenth was not an NYSE holiday before 2022
        "2012-10-31",
        "2024-12-31",
    ];
    for s in open {
        assert!(is_session(d(s)), "{s} must be a session");
    }
}

#[test]
fn outside_supported_range_is_never_a_session() {
    assert!(!is_session(d("1999-12-31")));
    assert!(!is_session(d("2031-01-02")));
    assert!(is_session(d("2030-12-31")));
    assert_eq!(d("2030-12-31").weekday(), chrono::Weekday::Tue);
}
