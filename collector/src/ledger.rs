//! The collector's own ledger: a hash chain over every stored row, in storage order.
//!
//! `ledger_hash = hex SHA-256("hipaa-mesh ledger v1\n" || ledger_prev || "\n" || row JSON)` where
//! row JSON is the compact JSON array `[ledger_seq, stored_at_ms, kind, time_ms, emergency,
//! chain_id, chain_seq, source_hash, bi_patient, bi_subject, bi_model, bi_version, hex(nonce),
//! hex(ciphertext)]`: every column is covered, so changing, moving, deleting or inserting any row
//! breaks the links after it, and the signed checkpoints pin the head.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::keys::hex;
use crate::store::StoredRow;

pub use hipaa_core::audit::GENESIS_PREV;

/// The ledger hash `row` should carry, given its `ledger_prev`.
pub fn row_hash(row: &StoredRow) -> String {
    let body = json!([
        row.ledger_seq,
        row.stored_at_ms,
        row.kind,
        row.time_ms,
        row.emergency,
        row.chain_id,
        row.chain_seq,
        row.source_hash,
        row.bi_patient,
        row.bi_subject,
        row.bi_model,
        row.bi_version,
        hex(&row.nonce),
        hex(&row.ciphertext),
    ]);
    let mut h = Sha256::new();
    h.update(b"hipaa-mesh ledger v1\n");
    h.update(row.ledger_prev.as_bytes());
    h.update(b"\n");
    h.update(body.to_string().as_bytes());
    hex(&h.finalize())
}
