//! Breach-notification deadlines from the discovery date (45 CFR 164.404, 164.406, 164.408),
//! counted in calendar days on UTC dates. Pure: the same inputs give the same answer.
//!
//! * individuals (164.404(b)): without unreasonable delay and no later than 60 calendar days
//!   after discovery;
//! * the Secretary (164.408): 500 or more individuals, no later than 60 days after discovery
//!   (contemporaneously with the individual notices); fewer, within 60 days after the end of
//!   the calendar year of discovery (the annual log: 1 March, or 29 February in a leap year);
//! * prominent media (164.406): when more than 500 residents of one State or jurisdiction are
//!   affected, no later than 60 days after discovery. The audit records do not carry residence,
//!   so this follows the operator's affected-by-state counts; without them and with more than
//!   500 affected, the answer is `unknown`.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use std::collections::BTreeMap;

use hipaa_core::calendar::Date;
use serde::Serialize;

/// Calendar days from discovery to every deadline.
pub const NOTICE_DAYS: i64 = 60;
/// HHS's immediate notice threshold (164.408(b): "500 or more").
pub const HHS_THRESHOLD: u64 = 500;
/// The media threshold (164.406: "more than 500 residents of a State or jurisdiction").
pub const MEDIA_THRESHOLD: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    Required,
    NotRequired,
    /// Cannot be decided from what is recorded (media without state counts).
    Unknown,
}

/// One notice: whether it is due, by when, how many days are left, when it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deadline {
    pub requirement: Requirement,
    /// `YYYY-MM-DD`, the last day (inclusive) the notice is on time.
    pub due: Option<String>,
    /// Days from `today` to `due` (negative: overdue by that many).
    pub days_left: Option<i64>,
    pub sent: Option<String>,
    /// Sent on or before `due`.
    pub on_time: Option<bool>,
    /// The rule that applied, in words.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deadlines {
    pub discovered: String,
    pub individuals_affected: u64,
    pub individuals: Deadline,
    pub hhs: Deadline,
    pub media: Deadline,
}

/// `d` plus `n` calendar days.
pub fn add_days(d: Date, n: i64) -> Date {
    Date::from_unix(d.unix_start() + n * 86_400)
}

/// Calendar days from `a` to `b`.
pub fn days_between(a: Date, b: Date) -> i64 {
    (b.unix_start() - a.unix_start()).div_euclid(86_400)
}

fn deadline(
    requirement: Requirement,
    due: Option<Date>,
    sent: Option<Date>,
    today: Date,
    rule: String,
) -> Deadline {
    Deadline {
        requirement,
        due: due.map(|d| d.to_string()),
        days_left: due.map(|d| days_between(today, d)),
        sent: sent.map(|d| d.to_string()),
        on_time: match (due, sent) {
            (Some(due), Some(sent)) => Some(sent <= due),
            _ => None,
        },
        rule,
    }
}

/// The dates the notices were sent (any may be absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub individuals: Option<Date>,
    pub hhs: Option<Date>,
    pub media: Option<Date>,
}

/// Every deadline for a breach discovered on `discovered` affecting `affected` individuals,
/// `states` of them by residence as the operator recorded it, seen on `today`.
pub fn deadlines(
    discovered: Date,
    affected: u64,
    states: &BTreeMap<String, u64>,
    sent: Sent,
    today: Date,
) -> Deadlines {
    let sixty = add_days(discovered, NOTICE_DAYS);
    let individuals = deadline(
        Requirement::Required,
        Some(sixty),
        sent.individuals,
        today,
        "164.404(b): without unreasonable delay and no later than 60 calendar days after \
         discovery"
            .into(),
    );
    let hhs = if affected >= HHS_THRESHOLD {
        deadline(
            Requirement::Required,
            Some(sixty),
            sent.hhs,
            today,
            format!(
                "164.408(b): {affected} individuals (500 or more): contemporaneously with the \
                 individual notices, no later than 60 days after discovery"
            ),
        )
    } else {
        let year_end = Date {
            year: discovered.year,
            month: 12,
            day: 31,
        };
        deadline(
            Requirement::Required,
            Some(add_days(year_end, NOTICE_DAYS)),
            sent.hhs,
            today,
            format!(
                "164.408(c): {affected} individuals (fewer than 500): the annual log, within 60 \
                 days after the end of {}",
                discovered.year
            ),
        )
    };
    let over: Vec<String> = states
        .iter()
        .filter(|(_, n)| **n > MEDIA_THRESHOLD)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let media = if !over.is_empty() {
        deadline(
            Requirement::Required,
            Some(sixty),
            sent.media,
            today,
            format!(
                "164.406: more than 500 residents of a State or jurisdiction ({}): prominent \
                 media outlets no later than 60 days after discovery",
                over.join(", ")
            ),
        )
    } else if !states.is_empty() || affected <= MEDIA_THRESHOLD {
        deadline(
            Requirement::NotRequired,
            None,
            sent.media,
            today,
            "164.406: no State or jurisdiction has more than 500 affected residents".into(),
        )
    } else {
        deadline(
            Requirement::Unknown,
            Some(sixty),
            sent.media,
            today,
            format!(
                "164.406: {affected} individuals affected but the audit records do not carry \
                 residence: record the affected-by-state counts (assessment or close) to decide; \
                 if more than 500 reside in one State the media notice is due with the others"
            ),
        )
    };
    Deadlines {
        discovered: discovered.to_string(),
        individuals_affected: affected,
        individuals,
        hhs,
        media,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    fn none() -> BTreeMap<String, u64> {
        BTreeMap::new()
    }

    fn states(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    // Hand-computed: 2026-01-15 + 60 days: January has 16 days left (to 31st), February 28
    // (2026 is not a leap year) = 44, so 16 more into March: 2026-03-16.
    #[test]
    fn sixty_days_in_a_common_year() {
        let x = deadlines(
            d("2026-01-15"),
            3,
            &none(),
            Sent::default(),
            d("2026-01-15"),
        );
        assert_eq!(x.individuals.due.as_deref(), Some("2026-03-16"));
        assert_eq!(x.individuals.days_left, Some(60));
        assert_eq!(x.individuals.requirement, Requirement::Required);
    }

    // 2024 is a leap year: 16 (rest of January) + 29 (February) = 45, 15 more: 2024-03-15.
    #[test]
    fn sixty_days_across_a_leap_february() {
        let x = deadlines(
            d("2024-01-15"),
            3,
            &none(),
            Sent::default(),
            d("2024-02-01"),
        );
        assert_eq!(x.individuals.due.as_deref(), Some("2024-03-15"));
        assert_eq!(x.individuals.days_left, Some(43));
    }

    // Fewer than 500: 60 days after 31 December of the discovery year. 2026-12-31 + 60:
    // January 31 days, then 29 into February would be 2027-02-29 which does not exist: 2027 is
    // common, so 31 + 28 = 59 is 28 February and the 60th day is 2027-03-01. From a leap year's
    // point of view: 2023-12-31 + 60 = 31 + 29 = 2024-02-29.
    #[test]
    fn annual_log_after_year_end_common_and_leap() {
        let x = deadlines(
            d("2026-06-01"),
            499,
            &none(),
            Sent::default(),
            d("2026-06-01"),
        );
        assert_eq!(x.hhs.due.as_deref(), Some("2027-03-01"));
        assert!(x.hhs.rule.contains("164.408(c)"));
        let x = deadlines(
            d("2023-03-10"),
            12,
            &none(),
            Sent::default(),
            d("2023-03-10"),
        );
        assert_eq!(x.hhs.due.as_deref(), Some("2024-02-29"));
    }

    // Discovered on 31 December: individuals by 2027-03-01 (same as the annual log: both are
    // 60 days after the same day); discovered on 1 January the log waits almost two years'
    // worth of days less: 2027-01-01 -> individuals 2027-03-02, HHS log 2028-02-29 (leap).
    #[test]
    fn year_end_discovery() {
        let x = deadlines(
            d("2026-12-31"),
            10,
            &none(),
            Sent::default(),
            d("2026-12-31"),
        );
        assert_eq!(x.individuals.due.as_deref(), Some("2027-03-01"));
        assert_eq!(x.hhs.due.as_deref(), Some("2027-03-01"));
        let x = deadlines(
            d("2027-01-01"),
            10,
            &none(),
            Sent::default(),
            d("2027-01-01"),
        );
        assert_eq!(x.individuals.due.as_deref(), Some("2027-03-02"));
        assert_eq!(x.hhs.due.as_deref(), Some("2028-02-29"));
        assert_eq!(x.hhs.days_left, Some(424));
    }

    // Exactly 500 is "500 or more" for HHS (immediate) but not "more than 500" for the media.
    #[test]
    fn exactly_500_and_501() {
        let x = deadlines(
            d("2026-03-01"),
            500,
            &none(),
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.hhs.due.as_deref(), Some("2026-04-30"));
        assert!(x.hhs.rule.contains("164.408(b)"));
        assert_eq!(x.media.requirement, Requirement::NotRequired);
        let x = deadlines(
            d("2026-03-01"),
            499,
            &none(),
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.hhs.due.as_deref(), Some("2027-03-01"));
        // 501 without residence: cannot be decided.
        let x = deadlines(
            d("2026-03-01"),
            501,
            &none(),
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.media.requirement, Requirement::Unknown);
        assert!(x.media.rule.contains("residence"));
        // 501 across two states, none above 500: not required.
        let split = states(&[("CA", 300), ("NV", 201)]);
        let x = deadlines(
            d("2026-03-01"),
            501,
            &split,
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.media.requirement, Requirement::NotRequired);
        // 500 in one state: not more than 500; 501: required, named.
        let x = deadlines(
            d("2026-03-01"),
            600,
            &states(&[("CA", 500)]),
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.media.requirement, Requirement::NotRequired);
        let x = deadlines(
            d("2026-03-01"),
            600,
            &states(&[("CA", 501)]),
            Sent::default(),
            d("2026-03-01"),
        );
        assert_eq!(x.media.requirement, Requirement::Required);
        assert_eq!(x.media.due.as_deref(), Some("2026-04-30"));
        assert!(x.media.rule.contains("CA 501"));
    }

    #[test]
    fn sent_dates_are_judged_and_overdue_is_negative() {
        let sent = Sent {
            individuals: Some(d("2026-03-16")),
            hhs: Some(d("2026-03-17")),
            media: None,
        };
        let x = deadlines(d("2026-01-15"), 700, &none(), sent, d("2026-03-20"));
        assert_eq!(x.individuals.on_time, Some(true));
        assert_eq!(x.hhs.on_time, Some(false));
        assert_eq!(x.individuals.days_left, Some(-4));
        assert_eq!(x.media.on_time, None);
    }
}
