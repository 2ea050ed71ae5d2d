//! Records the collector writes itself, into the same ledger as the filters' records: who read
//! the trail (`trail-access`), and what examining it found and decided (alerts, their status,
//! incidents, session revocations). Each is canonical JSON, encrypted like every row, hashed
//! into the ledger, covered by the next signed checkpoint and by `audit verify`.
//!
//! A record may carry a dedupe key: stored in the row's `source_hash` column (unique), so the
//! same fact raised twice (a restart, two collectors on one PostgreSQL) is stored once. The key
//! is domain-separated from the filters' record hashes by its `own:` prefix.

use serde_json::Value;

use crate::keys::EncryptionKey;
use crate::ledger::{row_hash, GENESIS_PREV};
use crate::store::{Store, StoreError, StoredRow};

/// The prefix of every dedupe key (a filter record's source hash is bare hex).
pub const DEDUPE_PREFIX: &str = "own:";

/// One record for the ledger, with the blind indexes its kind is queried by.
#[derive(Debug, Clone)]
pub struct OwnRecord<'a> {
    pub kind: &'static str,
    pub record: &'a Value,
    pub time_ms: i64,
    pub bi_subject: Option<String>,
    pub bi_patient: Option<String>,
    /// Stored as `own:<key>` in `source_hash`: the record is written once per key.
    pub dedupe_key: Option<String>,
}

/// What [`append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this ledger position.
    Stored(i64),
    /// A record with the same dedupe key is already in the ledger; nothing written.
    AlreadyStored,
}

/// The `source_hash` column value for a dedupe key.
pub fn dedupe_column(key: &str) -> String {
    format!("{DEDUPE_PREFIX}{key}")
}

/// Appends one record (one transaction under the ledger lock; with a dedupe key, checked in
/// the same transaction, so concurrent collectors store it once).
pub fn append(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    own: &OwnRecord<'_>,
    now_ms: i64,
) -> Result<Appended, StoreError> {
    let plaintext = serde_json::to_vec(own.record).map_err(|e| StoreError::db(own.kind, e))?;
    let source_hash = own.dedupe_key.as_deref().map(dedupe_column);
    let mut outcome = Appended::AlreadyStored;
    store.write(&mut |tx| {
        if let Some(key) = &source_hash {
            if !tx.existing_sources(&[key.as_str()])?.is_empty() {
                outcome = Appended::AlreadyStored;
                return Ok(());
            }
        }
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
            kind: own.kind.to_string(),
            time_ms: Some(own.time_ms),
            emergency: false,
            chain_id: None,
            chain_seq: None,
            source_hash: source_hash.clone(),
            bi_patient: own.bi_patient.clone(),
            bi_subject: own.bi_subject.clone(),
            bi_model: None,
            bi_version: None,
            nonce,
            ciphertext,
        };
        row.ledger_hash = row_hash(&row);
        tx.insert_rows(std::slice::from_ref(&row))?;
        outcome = Appended::Stored(ledger_seq);
        Ok(())
    })?;
    Ok(outcome)
}

/// The columns a stored own record must carry, given its decrypted record: what `audit verify`
/// compares (the checks each kind adds are its own).
pub fn column_problems(
    row: &StoredRow,
    value: &Value,
    expected: &OwnRecord<'_>,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if value.get("kind").and_then(Value::as_str) != Some(expected.kind) || row.kind != expected.kind
    {
        out.push("kind");
    }
    if row.time_ms != Some(expected.time_ms)
        || value.get("timeMs").and_then(Value::as_i64) != row.time_ms
    {
        out.push("time");
    }
    if row.emergency || row.chain_id.is_some() || row.chain_seq.is_some() {
        out.push("chain or emergency");
    }
    if row.source_hash != expected.dedupe_key.as_deref().map(dedupe_column) {
        out.push("dedupe key");
    }
    if row.bi_patient != expected.bi_patient
        || row.bi_subject != expected.bi_subject
        || row.bi_model.is_some()
        || row.bi_version.is_some()
    {
        out.push("blind index");
    }
    out
}
