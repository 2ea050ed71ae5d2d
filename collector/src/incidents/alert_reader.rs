//! Reads one alert from the ledger, through the row format of the alerts contract
//! (`notes/alerts-contract.md`, DESIGN.md): rows of kind `alert`, decrypted, matched on
//! `alert.id`. Private to incidents until the detect module's own reader replaces it.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use serde_json::Value;

use super::ledger::{scan, ReadError};
use crate::keys::EncryptionKey;
use crate::store::{RowFilter, Store};

pub const ALERT_KIND: &str = "alert";

/// What an incident takes from an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertLink {
    pub id: String,
    pub kind: String,
    pub subject: Option<String>,
    /// Request ids (at most 100).
    pub records: Vec<String>,
    pub records_truncated: bool,
    /// `window.from`, `window.to` in Unix ms.
    pub window: Option<(i64, i64)>,
}

/// The alert with this id, None when no alert row carries it.
pub fn find_alert(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    id: &str,
) -> Result<Option<AlertLink>, ReadError> {
    let mut found = None;
    let filter = RowFilter {
        kind: Some(ALERT_KIND.into()),
        ..RowFilter::default()
    };
    scan(store, enc, filter, &mut |_, value| {
        let Some(alert) = value.get("alert") else {
            return Ok(true);
        };
        if alert.get("id").and_then(Value::as_str) != Some(id) {
            return Ok(true);
        }
        let time = |k: &str| {
            alert
                .pointer(&format!("/window/{k}"))
                .and_then(Value::as_str)
                .and_then(hipaa_core::audit::parse_rfc3339_millis)
        };
        found = Some(AlertLink {
            id: id.to_string(),
            kind: alert
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subject: alert
                .get("subject")
                .and_then(Value::as_str)
                .map(str::to_string),
            records: alert
                .get("records")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .take(super::model::MAX_LINKED_RECORDS)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            records_truncated: alert
                .get("recordsTruncated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            window: time("from").zip(time("to")),
        });
        Ok(false)
    })?;
    Ok(found)
}
