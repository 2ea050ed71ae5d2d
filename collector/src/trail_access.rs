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
use crate::ledger::{row_hash, GENESIS_PREV};
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

/// Appends the record of one read to the ledger (one transaction under the ledger lock).
pub fn append(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    record: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    let plaintext = serde_json::to_vec(record).map_err(|e| StoreError::db("trail access", e))?;
    let bi_subject = subject_index(enc, record);
    store.write(&mut |tx| {
        let (count, head) = tx.head()?.unwrap_or((0, GENESIS_PREV.to_string()));
        let ledger_seq = count + 1;
        let (nonce, ciphertext) = enc
            .encrypt(ledger_seq, &plaintext)
            .map_err(|e| StoreError::db("encrypt", e))?;
        let mut row = StoredRow {
            ledger_seq,
            ledger_prev: head,
            ledger_hash: String::new(),
            stored_at_ms: now_ms,
            kind: KIND.to_string(),
            time_ms: Some(now_ms),
            emergency: false,
            chain_id: None,
            chain_seq: None,
            source_hash: None,
            bi_patient: None,
            bi_subject: bi_subject.clone(),
            bi_model: None,
            bi_version: None,
            nonce,
            ciphertext,
        };
        row.ledger_hash = row_hash(&row);
        tx.insert_rows(std::slice::from_ref(&row))
    })
}

/// What `audit verify` checks of a stored trail-access row against its decrypted record:
/// the problems found (empty when it matches).
pub fn check(row: &StoredRow, value: &Value, enc: &EncryptionKey) -> Vec<&'static str> {
    let mut out = Vec::new();
    if value.get("kind").and_then(Value::as_str) != Some(KIND)
        || value.pointer("/trailAccess/subject").is_none()
    {
        out.push("kind");
    }
    if row.time_ms.is_none() || value.get("timeMs").and_then(Value::as_i64) != row.time_ms {
        out.push("time");
    }
    if row.emergency || row.chain_id.is_some() || row.chain_seq.is_some() {
        out.push("chain or emergency");
    }
    if row.source_hash.is_some()
        || row.bi_patient.is_some()
        || row.bi_model.is_some()
        || row.bi_version.is_some()
        || row.bi_subject != subject_index(enc, value)
    {
        out.push("blind index");
    }
    out
}
