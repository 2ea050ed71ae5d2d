//! Alerts in the ledger: kind `alert` (the alert as raised, status `open`, written once per id
//! through its dedupe key `alert:<id>`) and kind `alert-status` (an operator's acknowledgement
//! or closing, with a note). An alert's status is its latest status row. Both are own records
//! (`crate::own_records`): encrypted, hashed into the ledger, covered by `audit verify`.

use serde_json::{json, Value};

use super::model::{is_alert_id, Alert, AlertKind, Status};
use crate::keys::EncryptionKey;
use crate::own_records::{self, Appended, OwnRecord};
use crate::read_auth::Reader;
use crate::store::{RowFilter, Store, StoreError, StoredRow};

pub const ALERT_KIND: &str = "alert";
pub const STATUS_KIND: &str = "alert-status";
/// The most of a status note kept.
pub const MAX_NOTE_BYTES: usize = 1024;
const PAGE: i64 = 5000;

/// The ledger record of a raised alert.
pub fn alert_record(alert: &Alert, now_ms: i64) -> Value {
    let mut alert = alert.clone();
    alert.status = Status::Open;
    json!({
        "v": 1,
        "kind": ALERT_KIND,
        "time": hipaa_core::calendar::rfc3339_millis(now_ms),
        "timeMs": now_ms,
        "alert": alert,
    })
}

fn alert_own<'a>(enc: &EncryptionKey, record: &'a Value) -> OwnRecord<'a> {
    let field = |name: &str| {
        record
            .pointer(&format!("/alert/{name}"))
            .and_then(Value::as_str)
    };
    OwnRecord {
        kind: ALERT_KIND,
        record,
        time_ms: record
            .get("timeMs")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        bi_subject: field("subject").map(|s| enc.blind_index("subject", s)),
        bi_patient: field("patient").map(|p| enc.blind_index("patient", p)),
        dedupe_key: field("id").map(|id| format!("alert:{id}")),
    }
}

/// Stores a raised alert once (a second raise of the same id, by a restart or another
/// collector, stores nothing): true when this call stored it.
pub fn append_alert(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    alert: &Alert,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let record = alert_record(alert, now_ms);
    let appended = own_records::append(store, enc, &alert_own(enc, &record), now_ms)?;
    Ok(matches!(appended, Appended::Stored(_)))
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The ledger record of an operator's status change.
pub fn status_record(id: &str, status: Status, reader: &Reader, note: &str, now_ms: i64) -> Value {
    json!({
        "v": 1,
        "kind": STATUS_KIND,
        "time": hipaa_core::calendar::rfc3339_millis(now_ms),
        "timeMs": now_ms,
        "alertStatus": {
            "alert": id,
            "status": status.as_str(),
            "by": bounded(&reader.subject, 256),
            "issuer": bounded(&reader.issuer, 256),
            "note": bounded(note, MAX_NOTE_BYTES),
        }
    })
}

fn status_own(record: &Value) -> OwnRecord<'_> {
    OwnRecord {
        kind: STATUS_KIND,
        record,
        time_ms: record
            .get("timeMs")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        bi_subject: None,
        bi_patient: None,
        dedupe_key: None,
    }
}

pub fn append_status(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    record: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    own_records::append(store, enc, &status_own(record), now_ms).map(|_| ())
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub kind: Option<AlertKind>,
    pub subject: Option<String>,
    pub patient: Option<String>,
    pub status: Option<Status>,
    /// Inclusive / exclusive bounds on when the alert was raised (Unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "stored record at ledger position {0} fails authentication: run `hipaa-mesh audit verify`"
    )]
    Tampered(i64),
}

fn decrypt(enc: &EncryptionKey, row: &StoredRow) -> Result<Value, ReadError> {
    let plain = enc
        .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
        .ok_or(ReadError::Tampered(row.ledger_seq))?;
    serde_json::from_slice(&plain).map_err(|_| ReadError::Tampered(row.ledger_seq))
}

/// Every row of `filter` (paged through).
fn all_rows(store: &mut dyn Store, mut filter: RowFilter) -> Result<Vec<StoredRow>, StoreError> {
    let mut out = Vec::new();
    filter.limit = PAGE;
    loop {
        let page = store.rows(&filter)?;
        let Some(last) = page.last().map(|r| r.ledger_seq) else {
            break;
        };
        let full = page.len() as i64 >= PAGE;
        out.extend(page);
        if !full {
            break;
        }
        filter.after = last;
    }
    Ok(out)
}

/// The alerts matching `f`, oldest first, each with its current status (its latest status row).
pub fn list(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    f: &AlertFilter,
) -> Result<Vec<Alert>, ReadError> {
    let rows = all_rows(
        store,
        RowFilter {
            kind: Some(ALERT_KIND.into()),
            bi_subject: f.subject.as_deref().map(|s| enc.blind_index("subject", s)),
            bi_patient: f.patient.as_deref().map(|p| enc.blind_index("patient", p)),
            from_ms: f.from_ms,
            to_ms: f.to_ms,
            ..RowFilter::default()
        },
    )?;
    let mut alerts = Vec::new();
    for row in &rows {
        let value = decrypt(enc, row)?;
        let alert: Alert = value
            .get("alert")
            .cloned()
            .and_then(|a| serde_json::from_value(a).ok())
            .ok_or(ReadError::Tampered(row.ledger_seq))?;
        if f.kind.is_some_and(|k| k != alert.kind)
            || f.id.as_ref().is_some_and(|id| *id != alert.id)
        {
            continue;
        }
        alerts.push(alert);
    }
    if alerts.is_empty() {
        return Ok(alerts);
    }
    let statuses = all_rows(
        store,
        RowFilter {
            kind: Some(STATUS_KIND.into()),
            ..RowFilter::default()
        },
    )?;
    let mut latest = std::collections::HashMap::new();
    for row in &statuses {
        let value = decrypt(enc, row)?;
        let (Some(id), Some(status)) = (
            value.pointer("/alertStatus/alert").and_then(Value::as_str),
            value
                .pointer("/alertStatus/status")
                .and_then(Value::as_str)
                .and_then(Status::parse),
        ) else {
            return Err(ReadError::Tampered(row.ledger_seq));
        };
        latest.insert(id.to_string(), status);
    }
    for a in &mut alerts {
        if let Some(s) = latest.get(&a.id) {
            a.status = *s;
        }
    }
    alerts.retain(|a| f.status.is_none_or(|s| s == a.status));
    Ok(alerts)
}

/// One alert by id, with its current status.
pub fn get(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    id: &str,
) -> Result<Option<Alert>, ReadError> {
    if !is_alert_id(id) {
        return Ok(None);
    }
    let f = AlertFilter {
        id: Some(id.to_string()),
        ..AlertFilter::default()
    };
    Ok(list(store, enc, &f)?.pop())
}

/// What `audit verify` checks of a stored `alert` / `alert-status` row against its record.
pub fn check(row: &StoredRow, value: &Value, enc: &EncryptionKey) -> Vec<&'static str> {
    if row.kind == ALERT_KIND {
        let mut out = own_records::column_problems(row, value, &alert_own(enc, value));
        let parsed = value
            .get("alert")
            .cloned()
            .and_then(|a| serde_json::from_value::<Alert>(a).ok());
        match parsed {
            Some(a) if a.status == Status::Open && is_alert_id(&a.id) => {}
            _ if !out.contains(&"kind") => out.push("kind"),
            _ => {}
        }
        out
    } else {
        let mut out = own_records::column_problems(row, value, &status_own(value));
        let ok = value
            .pointer("/alertStatus/alert")
            .and_then(Value::as_str)
            .is_some_and(is_alert_id)
            && value
                .pointer("/alertStatus/status")
                .and_then(Value::as_str)
                .and_then(Status::parse)
                .is_some_and(|s| s != Status::Open);
        if !ok && !out.contains(&"kind") {
            out.push("kind");
        }
        out
    }
}
