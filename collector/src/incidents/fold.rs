//! One incident as its events make it: pure, in ledger order. The first event opens it; a note
//! adds to the history; the latest assessment is the current one; a close sets the outcome
//! (a later close amends it: notices sent after the determination). Nothing is ever removed.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use std::collections::BTreeMap;

use hipaa_core::calendar::Date;
use serde::Serialize;
use serde_json::Value;

use super::deadlines::{deadlines, Deadlines, Sent};
use super::model::{Affected, Assessment, Event, EventBody, Links, Notified, Outcome, Rating};

/// An incident's current state and its whole history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: String,
    /// `open`, `assessed` or `closed`.
    pub status: &'static str,
    pub summary: String,
    pub discovered_at: String,
    pub opened_at: String,
    pub opened_by: String,
    pub alert: Option<String>,
    pub links: Links,
    pub affected: Affected,
    pub assessment: Option<Assessment>,
    /// The overall rating of the current assessment (see [`Assessment::overall`]).
    pub risk: Option<Rating>,
    pub outcome: Option<Closure>,
    /// Affected residents by State: the close's counts, else the assessment's.
    pub states: BTreeMap<String, u64>,
    /// Deadlines as if a breach (the presumption of 164.402(2) until the assessment shows a low
    /// probability of compromise); `applies` says whether they bind.
    pub deadlines: Deadlines,
    /// `presumed` (open), `breach` or `not-applicable` (closed as not a breach).
    pub deadlines_apply: &'static str,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Closure {
    pub outcome: Outcome,
    pub reason: String,
    pub notified: Notified,
    pub at: String,
    pub by: String,
}

/// One event, when and by whom (the stored event itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: String,
    pub time_ms: i64,
    #[serde(flatten)]
    pub event: Value,
}

/// Why events do not make an incident.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("no events")]
    Empty,
    #[error("the first event of {0} is not `opened`")]
    NotOpenedFirst(String),
    #[error("{0} is opened twice")]
    OpenedTwice(String),
    #[error("an event of {0} is folded into {1}")]
    OtherIncident(String, String),
}

fn date_of(rfc3339: &str) -> Option<Date> {
    hipaa_core::audit::parse_rfc3339_millis(rfc3339).map(|ms| Date::from_unix(ms.div_euclid(1000)))
}

/// Folds `events` (time in Unix ms, the event) in ledger order, seen on `today`.
pub fn fold(events: &[(i64, Event)], today: Date) -> Result<Incident, FoldError> {
    let ((first_ms, first), rest) = events.split_first().ok_or(FoldError::Empty)?;
    let EventBody::Opened {
        summary,
        discovered_at,
        alert,
        links,
        affected,
    } = &first.body
    else {
        return Err(FoldError::NotOpenedFirst(first.id.clone()));
    };
    let entry = |ms: i64, e: &Event| HistoryEntry {
        time: hipaa_core::calendar::rfc3339_millis(ms),
        time_ms: ms,
        event: serde_json::to_value(e).unwrap_or(Value::Null),
    };
    let mut history = vec![entry(*first_ms, first)];
    let mut assessment: Option<Assessment> = None;
    let mut outcome: Option<Closure> = None;
    let mut close_states: BTreeMap<String, u64> = BTreeMap::new();
    for (ms, e) in rest {
        if e.id != first.id {
            return Err(FoldError::OtherIncident(e.id.clone(), first.id.clone()));
        }
        match &e.body {
            EventBody::Opened { .. } => return Err(FoldError::OpenedTwice(e.id.clone())),
            EventBody::Note { .. } => {}
            EventBody::Assessment { assessment: a } => assessment = Some(a.clone()),
            EventBody::Closed {
                outcome: o,
                reason,
                notified,
                states,
            } => {
                outcome = Some(Closure {
                    outcome: *o,
                    reason: reason.clone(),
                    notified: notified.clone(),
                    at: hipaa_core::calendar::rfc3339_millis(*ms),
                    by: e.by.clone(),
                });
                if !states.is_empty() {
                    close_states = states.clone();
                }
            }
        }
        history.push(entry(*ms, e));
    }
    let states = if close_states.is_empty() {
        assessment
            .as_ref()
            .map(|a| a.states.clone())
            .unwrap_or_default()
    } else {
        close_states
    };
    let discovered = date_of(discovered_at).unwrap_or_else(|| Date::from_unix(first_ms / 1000));
    let notified = outcome
        .as_ref()
        .map(|c| c.notified.clone())
        .unwrap_or_default();
    let sent = Sent {
        individuals: notified.individuals.as_deref().and_then(Date::parse),
        hhs: notified.hhs.as_deref().and_then(Date::parse),
        media: notified.media.as_deref().and_then(Date::parse),
    };
    let status = match (&outcome, &assessment) {
        (Some(_), _) => "closed",
        (None, Some(_)) => "assessed",
        (None, None) => "open",
    };
    let deadlines_apply = match outcome.as_ref().map(|c| c.outcome) {
        None => "presumed",
        Some(Outcome::Breach) => "breach",
        Some(Outcome::NotBreach) => "not-applicable",
    };
    Ok(Incident {
        id: first.id.clone(),
        status,
        summary: summary.clone(),
        discovered_at: discovered_at.clone(),
        opened_at: hipaa_core::calendar::rfc3339_millis(*first_ms),
        opened_by: first.by.clone(),
        alert: alert.clone(),
        links: links.clone(),
        affected: affected.clone(),
        risk: assessment.as_ref().map(Assessment::overall),
        assessment,
        outcome,
        deadlines: deadlines(discovered, affected.count, &states, sent, today),
        deadlines_apply,
        states,
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::model::Factor;

    const ID: &str = "INC-20261123-00000001";

    fn ev(body: EventBody) -> Event {
        Event {
            id: ID.into(),
            by: "officer-jane".into(),
            issuer: "https://idp".into(),
            body,
        }
    }

    fn opened(count: u64) -> EventBody {
        EventBody::Opened {
            summary: "clerk read many charts".into(),
            discovered_at: "2026-11-23T16:37:08.123Z".into(),
            alert: Some("abc".into()),
            links: Links::default(),
            affected: Affected {
                count,
                ..Affected::default()
            },
        }
    }

    fn assessment(states: &[(&str, u64)]) -> Assessment {
        let f = |r| Factor {
            text: "t".into(),
            rating: r,
        };
        Assessment {
            nature: f(Rating::High),
            person: f(Rating::Medium),
            acquired: f(Rating::High),
            mitigation: f(Rating::Low),
            breach_type: Some("Unauthorized Access/Disclosure".into()),
            location: None,
            safeguards: None,
            actions: None,
            states: states.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        }
    }

    fn today() -> Date {
        Date::parse("2026-11-30").unwrap()
    }

    #[test]
    fn open_note_assess_close() {
        let t = 1_795_451_828_123;
        let mut events = vec![(t, ev(opened(3)))];
        let i = fold(&events, today()).unwrap();
        assert_eq!(i.status, "open");
        assert_eq!(i.deadlines_apply, "presumed");
        // 2026-11-23 + 60 = 7 (rest of Nov) + 31 (Dec) = 38, 22 more: 2027-01-22.
        assert_eq!(i.deadlines.individuals.due.as_deref(), Some("2027-01-22"));
        assert_eq!(i.deadlines.individuals.days_left, Some(53));
        assert_eq!(i.deadlines.hhs.due.as_deref(), Some("2027-03-01"));
        events.push((t + 1, ev(EventBody::Note { text: "n".into() })));
        events.push((
            t + 2,
            ev(EventBody::Assessment {
                assessment: assessment(&[("CA", 2)]),
            }),
        ));
        let i = fold(&events, today()).unwrap();
        assert_eq!(i.status, "assessed");
        assert_eq!(i.risk, Some(Rating::High));
        assert_eq!(i.states.get("CA"), Some(&2));
        events.push((
            t + 3,
            ev(EventBody::Closed {
                outcome: Outcome::Breach,
                reason: "viewed".into(),
                notified: Notified {
                    individuals: Some("2026-12-01".into()),
                    hhs: None,
                    media: None,
                },
                states: BTreeMap::new(),
            }),
        ));
        let i = fold(&events, today()).unwrap();
        assert_eq!(i.status, "closed");
        assert_eq!(i.deadlines_apply, "breach");
        assert_eq!(i.deadlines.individuals.on_time, Some(true));
        assert_eq!(i.history.len(), 4);
        assert_eq!(i.history[1].event["event"], "note");
        assert_eq!(i.history[3].time_ms, t + 3);
        assert_eq!(i.outcome.as_ref().unwrap().by, "officer-jane");
        // The assessment's states stay when the close has none.
        assert_eq!(i.states.get("CA"), Some(&2));
    }

    #[test]
    fn a_later_close_amends_and_states_from_close_win() {
        let t = 1_795_451_828_123;
        let close = |o, states: &[(&str, u64)]| EventBody::Closed {
            outcome: o,
            reason: "r".into(),
            notified: Notified::default(),
            states: states.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        };
        let events = vec![
            (t, ev(opened(900))),
            (
                t + 1,
                ev(EventBody::Assessment {
                    assessment: assessment(&[("CA", 100)]),
                }),
            ),
            (t + 2, ev(close(Outcome::NotBreach, &[]))),
            (
                t + 3,
                ev(close(Outcome::Breach, &[("CA", 800), ("NV", 100)])),
            ),
        ];
        let i = fold(&events, today()).unwrap();
        assert_eq!(i.outcome.as_ref().unwrap().outcome, Outcome::Breach);
        assert_eq!(i.states.get("CA"), Some(&800));
        assert_eq!(
            i.deadlines.media.requirement,
            crate::incidents::deadlines::Requirement::Required
        );
        let i = fold(&events[..3], today()).unwrap();
        assert_eq!(i.deadlines_apply, "not-applicable");
    }

    #[test]
    fn malformed_histories_are_refused() {
        let t = 1;
        assert_eq!(fold(&[], today()), Err(FoldError::Empty));
        let note = ev(EventBody::Note { text: "n".into() });
        assert!(matches!(
            fold(&[(t, note.clone())], today()),
            Err(FoldError::NotOpenedFirst(_))
        ));
        assert!(matches!(
            fold(&[(t, ev(opened(1))), (t, ev(opened(1)))], today()),
            Err(FoldError::OpenedTwice(_))
        ));
        let mut other = note;
        other.id = "INC-20261123-00000002".into();
        assert!(matches!(
            fold(&[(t, ev(opened(1))), (t, other)], today()),
            Err(FoldError::OtherIncident(..))
        ));
    }
}
