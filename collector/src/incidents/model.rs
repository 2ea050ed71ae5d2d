//! The incident events as stored (the `incident` member of a ledger record) and the checks every
//! operator input passes before it becomes one: bounded texts, known ratings and outcomes, real
//! dates, state codes. Nothing here touches the store.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use std::collections::BTreeMap;

use hipaa_core::calendar::Date;
use serde::{Deserialize, Serialize};

/// The most bytes of a summary, a note, a reason or one assessment text (refused beyond, never cut).
pub const MAX_TEXT_BYTES: usize = 8192;
/// The most request ids one incident links by hand (an alert names at most 100).
pub const MAX_LINKED_RECORDS: usize = 1000;
/// The most state entries an assessment or close may carry (50 states, DC and territories).
pub const MAX_STATES: usize = 64;
/// The most bytes of a subject, a request id or an alert id.
pub const MAX_NAME_BYTES: usize = 256;

/// A low/medium/high rating of one risk factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Low,
    Medium,
    High,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Low => "low",
            Rating::Medium => "medium",
            Rating::High => "high",
        }
    }
}

/// One factor of the 45 CFR 164.402(2) risk assessment: what was found, and how it weighs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub text: String,
    pub rating: Rating,
}

/// The four-factor risk assessment, and the HHS breach-portal fields the operator knows by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assessment {
    /// (i) the nature and extent of the PHI involved (identifiers, likelihood of re-identification).
    pub nature: Factor,
    /// (ii) the unauthorized person who used the PHI or to whom it was disclosed.
    pub person: Factor,
    /// (iii) whether the PHI was actually acquired or viewed.
    pub acquired: Factor,
    /// (iv) the extent to which the risk to the PHI has been mitigated.
    pub mitigation: Factor,
    /// HHS portal "type of breach" (e.g. Unauthorized Access/Disclosure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_type: Option<String>,
    /// HHS portal "location of breached information" (e.g. Electronic Medical Record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// HHS portal "safeguards in place prior to the breach".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safeguards: Option<String>,
    /// HHS portal "actions taken in response".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<String>,
    /// Affected individuals by State or jurisdiction of residence (the audit records do not
    /// carry residence: the operator records it), for the media rule of 164.406.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub states: BTreeMap<String, u64>,
}

/// The breach determination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Breach,
    NotBreach,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Breach => "breach",
            Outcome::NotBreach => "not-breach",
        }
    }
}

/// The dates notices were sent (`YYYY-MM-DD`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notified {
    #[serde(default)]
    pub individuals: Option<String>,
    #[serde(default)]
    pub hhs: Option<String>,
    #[serde(default)]
    pub media: Option<String>,
}

/// What an incident is linked to: request ids, and/or a subject over a time range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    #[serde(default)]
    pub records: Vec<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// Every access record by `subject` with `from <= time < to` (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub subject: String,
    pub from: String,
    pub to: String,
}

/// The individuals the linked audit records name, found when the incident was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    /// Distinct patients (exact).
    pub count: u64,
    /// The patients (PHI: encrypted at rest, shown only to the credentialed reader), sorted,
    /// at most [`super::ledger::MAX_PATIENTS_LISTED`].
    pub patients: Vec<String>,
    #[serde(default)]
    pub patients_truncated: bool,
    /// Access records found for the links.
    pub records: u64,
    /// Linked request ids with no access record in the trail.
    #[serde(default)]
    pub missing_records: Vec<String>,
    /// Earliest and latest access among them (RFC 3339): the breach's start and end.
    pub first_access: Option<String>,
    pub last_access: Option<String>,
}

/// One incident event as stored: `{"id","event","by","issuer", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub by: String,
    pub issuer: String,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum EventBody {
    #[serde(rename_all = "camelCase")]
    Opened {
        summary: String,
        /// When the breach was discovered (RFC 3339); deadlines count from its UTC date.
        discovered_at: String,
        alert: Option<String>,
        links: Links,
        affected: Affected,
    },
    Note {
        text: String,
    },
    Assessment {
        assessment: Assessment,
    },
    #[serde(rename_all = "camelCase")]
    Closed {
        outcome: Outcome,
        reason: String,
        #[serde(default)]
        notified: Notified,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        states: BTreeMap<String, u64>,
    },
}

impl EventBody {
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Opened { .. } => "opened",
            EventBody::Note { .. } => "note",
            EventBody::Assessment { .. } => "assessment",
            EventBody::Closed { .. } => "closed",
        }
    }
}

/// `INC-YYYYMMDD-` and 8 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 21
        && id.starts_with("INC-")
        && b.get(12) == Some(&b'-')
        && b.get(4..12)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && b.get(13..)
            .is_some_and(|h| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

/// A new incident id for the day of `now_ms` with `random` as its tail.
pub fn new_id(now_ms: i64, random: u32) -> String {
    let d = Date::from_unix(now_ms.div_euclid(1000));
    format!("INC-{:04}{:02}{:02}-{random:08x}", d.year, d.month, d.day)
}

/// A required text: not blank, at most [`MAX_TEXT_BYTES`].
pub fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > MAX_TEXT_BYTES {
        return Err(format!("{what} is longer than {MAX_TEXT_BYTES} bytes"));
    }
    Ok(())
}

fn check_optional_text(what: &str, s: &Option<String>) -> Result<(), String> {
    s.as_deref().map_or(Ok(()), |s| check_text(what, s))
}

/// A name-like value (request id, subject, alert id): not empty, bounded, no control characters.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_NAME_BYTES || s.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be 1..={MAX_NAME_BYTES} bytes without control characters"
        ));
    }
    Ok(())
}

/// A `YYYY-MM-DD` date.
pub fn check_date(what: &str, s: &str) -> Result<Date, String> {
    Date::parse(s).ok_or_else(|| format!("{what} must be a date YYYY-MM-DD, not {s:?}"))
}

/// State or jurisdiction codes (two capital letters) with counts.
pub fn check_states(states: &BTreeMap<String, u64>) -> Result<(), String> {
    if states.len() > MAX_STATES {
        return Err(format!("at most {MAX_STATES} states"));
    }
    for (code, n) in states {
        let b = code.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(format!(
                "state {code:?} must be a two-letter code (CA, NY, DC, PR)"
            ));
        }
        if *n > 1_000_000_000 {
            return Err(format!("state {code}: count too large"));
        }
    }
    Ok(())
}

impl Assessment {
    pub fn check(&self) -> Result<(), String> {
        for (what, f) in [
            ("nature", &self.nature),
            ("person", &self.person),
            ("acquired", &self.acquired),
            ("mitigation", &self.mitigation),
        ] {
            check_text(what, &f.text)?;
        }
        check_optional_text("breachType", &self.breach_type)?;
        check_optional_text("location", &self.location)?;
        check_optional_text("safeguards", &self.safeguards)?;
        check_optional_text("actions", &self.actions)?;
        check_states(&self.states)
    }

    /// The overall probability that the PHI has been compromised: the highest rating of the
    /// first three factors, lowered one step when mitigation is rated high (the PHI was
    /// retrieved or destroyed) — a summary for the reader, never the determination itself.
    pub fn overall(&self) -> Rating {
        let worst = [self.nature.rating, self.person.rating, self.acquired.rating]
            .into_iter()
            .max()
            .unwrap_or(Rating::High);
        match (worst, self.mitigation.rating) {
            (Rating::High, Rating::High) => Rating::Medium,
            (Rating::Medium, Rating::High) => Rating::Low,
            (w, _) => w,
        }
    }
}

impl Notified {
    pub fn check(&self) -> Result<(), String> {
        for (what, d) in [
            ("notified.individuals", &self.individuals),
            ("notified.hhs", &self.hhs),
            ("notified.media", &self.media),
        ] {
            if let Some(d) = d {
                check_date(what, d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_checked() {
        let id = new_id(1_795_451_828_123, 0x1a2b_3c4d);
        assert_eq!(id, "INC-20261123-1a2b3c4d");
        assert!(valid_id(&id));
        for bad in [
            "",
            "INC-2026112-1a2b3c4d",
            "INC-20261123-1A2B3C4D",
            "INC-20261123_1a2b3c4d",
            "INC-20261123-1a2b3c4d0",
            "inc-20261123-1a2b3c4d",
            "INC-2026112é-1a2b3c4",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn events_round_trip_in_the_contract_form() {
        let v = json!({"id": "INC-20261123-1a2b3c4d", "event": "note", "by": "jane",
            "issuer": "https://idp", "text": "called the clerk"});
        let e: Event = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(e.body.name(), "note");
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
        let closed = json!({"id": "INC-20261123-1a2b3c4d", "event": "closed", "by": "jane",
            "issuer": "i", "outcome": "not-breach", "reason": "r",
            "notified": {"individuals": null, "hhs": null, "media": null}});
        let e: Event = serde_json::from_value(closed.clone()).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap(), closed);
    }

    #[test]
    fn inputs_are_bounded_and_typed() {
        assert!(check_text("note", " ").is_err());
        assert!(check_text("note", &"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
        assert!(check_text("note", &"x".repeat(MAX_TEXT_BYTES)).is_ok());
        assert!(check_name("record", "req\n1").is_err());
        assert!(check_date("d", "2027-02-29").is_err());
        let mut states = BTreeMap::new();
        states.insert("ca".to_string(), 3);
        assert!(check_states(&states).is_err());
        let bad: Result<Factor, _> =
            serde_json::from_value(json!({"text": "t", "rating": "severe"}));
        assert!(bad.is_err());
    }

    #[test]
    fn overall_rating_is_the_worst_factor_softened_by_mitigation() {
        let f = |r| Factor {
            text: "t".into(),
            rating: r,
        };
        let mut a = Assessment {
            nature: f(Rating::Medium),
            person: f(Rating::Low),
            acquired: f(Rating::High),
            mitigation: f(Rating::Low),
            breach_type: None,
            location: None,
            safeguards: None,
            actions: None,
            states: BTreeMap::new(),
        };
        assert_eq!(a.overall(), Rating::High);
        a.mitigation = f(Rating::High);
        assert_eq!(a.overall(), Rating::Medium);
        a.acquired = f(Rating::Low);
        assert_eq!(a.overall(), Rating::Low);
    }
}
