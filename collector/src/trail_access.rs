//! Who looked at the trail: every authorised read (`GET /v1/records`, `GET /v1/verify`) is
//! appended to the same ledger as the records it read (kind `trail-access`, encrypted, hashed,
//! covered by the next signed checkpoint and by `audit verify`). A read whose record cannot be
//! stored is not answered.
//!
//! The record (canonical JSON, then encrypted like every row):
//! `{"v":1,"kind":"trail-access","time":RFC3339,"timeMs":N,"trailAccess":{"subject":..,
//! "issuer":..,"endpoint":"GET /v1/records","filter":"<query string, at most 1024 bytes>",
//! "rows":N}}`; its `bi_subject` column is the reader's blind index, so
//! `GET /v1/records?kind=trail-access&subject=NAME` lists what NAME read.

use serde_json::{json, Value};

use crate::keys::EncryptionKey;
use crate::own_records::{self, OwnRecord};
use crate::read_auth::Reader;
use crate::store::{Store, StoreError, StoredRow};

pub const KIND: &str = "trail-access";
/// The most of a query string a record keeps (it is bounded, like every record field).
pub const MAX_FILTER_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The record for one read.
pub fn record(reader: &Reader, endpoint: &str, filter: &str, rows: u64, now_ms: i64) -> Value {
    json!({
        "v": 1,
        "kind": KIND,
        "time": hipaa_core::calendar::rfc3339_millis(now_ms),
        "timeMs": now_ms,
        "trailAccess": {
            "subject": bounded(&reader.subject, 256),
            "issuer": bounded(&reader.issuer, 256),
            "endpoint": endpoint,
            "filter": bounded(filter, MAX_FILTER_BYTES),
            "rows": rows,
        }
    })
}

/// The reader's blind index (same field as an access record's subject).
pub fn subject_index(enc: &EncryptionKey, record: &Value) -> Option<String> {
    record
        .pointer("/trailAccess/subject")
        .and_then(Value::as_str)
        .map(|s| enc.blind_index("subject", s))
}

/// The ledger form of one read's record.
fn own<'a>(enc: &EncryptionKey, record: &'a Value) -> OwnRecord<'a> {
    OwnRecord {
        kind: KIND,
        record,
        time_ms: record
            .get("timeMs")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        bi_subject: subject_index(enc, record),
        bi_patient: None,
        dedupe_key: None,
    }
}

/// Appends the record of one read to the ledger (one transaction under the ledger lock).
pub fn append(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    record: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    own_records::append(store, enc, &own(enc, record), now_ms).map(|_| ())
}

/// What `audit verify` checks of a stored trail-access row against its decrypted record:
/// the problems found (empty when it matches).
pub fn check(row: &StoredRow, value: &Value, enc: &EncryptionKey) -> Vec<&'static str> {
    let mut out = own_records::column_problems(row, value, &own(enc, value));
    if value.pointer("/trailAccess/subject").is_none() && !out.contains(&"kind") {
        out.push("kind");
    }
    out
}
