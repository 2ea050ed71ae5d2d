//! The alert: what a detector found, naming the records behind it (DESIGN.md, "Alerts").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most request ids an alert names; `recordsTruncated` says when there were more.
pub const MAX_ALERT_RECORDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    FailedAuthBurst,
    PatientVolume,
    BreakGlass,
    SensitiveRecord,
    AfterHours,
    Exfiltration,
    Integrity,
}

impl AlertKind {
    pub const ALL: [AlertKind; 7] = [
        AlertKind::FailedAuthBurst,
        AlertKind::PatientVolume,
        AlertKind::BreakGlass,
        AlertKind::SensitiveRecord,
        AlertKind::AfterHours,
        AlertKind::Exfiltration,
        AlertKind::Integrity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::FailedAuthBurst => "failed_auth_burst",
            AlertKind::PatientVolume => "patient_volume",
            AlertKind::BreakGlass => "break_glass",
            AlertKind::SensitiveRecord => "sensitive_record",
            AlertKind::AfterHours => "after_hours",
            AlertKind::Exfiltration => "exfiltration",
            AlertKind::Integrity => "integrity",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Acknowledged,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "acknowledged" => Some(Status::Acknowledged),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }
}

/// `window`: the time span the alert counts over (RFC 3339 UTC with milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from: String,
    pub to: String,
}

/// One alert, as stored (status `open`) and as served (status from its latest status row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub subject: Option<String>,
    pub patient: Option<String>,
    pub source_ip: Option<String>,
    pub window: Window,
    pub count: u64,
    pub threshold: u64,
    /// Request ids of the records behind the alert, at most [`MAX_ALERT_RECORDS`].
    pub records: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub records_truncated: bool,
    /// Plain words, no PHI: what was seen (e.g. "12 authentication denials in 5 min").
    pub summary: String,
    pub status: Status,
    pub created_at: String,
}

/// The deterministic alert id: the first 32 hex characters of SHA-256(`kind \n key \n from`),
/// where `key` names what the alert is about (a subject, a source, a request) and `from` is
/// the window start (RFC 3339). A restart, or a second collector, raising the same alert
/// computes the same id.
pub fn alert_id(kind: AlertKind, key: &str, window_from: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update(b"\n");
    h.update(key.as_bytes());
    h.update(b"\n");
    h.update(window_from.as_bytes());
    let full = hex::encode(h.finalize());
    full.get(..32).unwrap_or(&full).to_string()
}

/// Whether `s` has the shape of an alert id (32 lowercase hex characters).
pub fn is_alert_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
