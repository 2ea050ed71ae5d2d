//! The collector's own ledger: a hash chain over every stored row, in storage order.
//!
//! `ledger_hash = hex SHA-256("hipaa-mesh ledger v1\n" || ledger_prev || "\n" || row JSON)` where
//! row JSON is the compact JSON array `[ledger_seq, stored_at_ms, kind, time_ms, emergency,
//! chain_id, chain_seq, source_hash, bi_patient, bi_subject, bi_model, bi_version, hex(nonce),
//! hex(ciphertext)]`: every column is covered, so changing, moving, deleting or inserting any row
//! breaks the links after it, and the signed checkpoints pin the head.

use sha2::{Digest, Sha256};

use crate::store::StoredRow;

pub use hipaa_core::audit::GENESIS_PREV;

/// Feeds what serde_json writes straight into the hash (no intermediate JSON value or string).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The ledger hash `row` should carry, given its `ledger_prev`.
pub fn row_hash(row: &StoredRow) -> String {
    let mut h = HashWriter(Sha256::new());
    h.0.update(b"hipaa-mesh ledger v1\n");
    h.0.update(row.ledger_prev.as_bytes());
    h.0.update(b"\n");
    // The compact JSON array, byte for byte what `json!([..]).to_string()` wrote before (the
    // test `row_hash_is_the_v1_json_form` holds it to that), streamed into the hash: each column
    // as serde_json writes it, the two hex columns straight from the bytes.
    h.0.update(b"[");
    let columns: [&dyn erased::Column; 12] = [
        &row.ledger_seq,
        &row.stored_at_ms,
        &row.kind,
        &row.time_ms,
        &row.emergency,
        &row.chain_id,
        &row.chain_seq,
        &row.source_hash,
        &row.bi_patient,
        &row.bi_subject,
        &row.bi_model,
        &row.bi_version,
    ];
    for column in columns {
        column.write_json(&mut h);
        h.0.update(b",");
    }
    hex_string(&mut h.0, &row.nonce);
    h.0.update(b",");
    hex_string(&mut h.0, &row.ciphertext);
    h.0.update(b"]");
    hex::encode(h.0.finalize())
}

/// `"<lowercase hex of bytes>"` into the hash, through a small stack buffer.
fn hex_string(h: &mut Sha256, bytes: &[u8]) {
    let mut buf = [0u8; 512];
    h.update(b"\"");
    for chunk in bytes.chunks(buf.len() / 2) {
        let digits = &mut buf[..2 * chunk.len()];
        // Cannot fail: `digits` is exactly twice the chunk's length.
        let _ = hex::encode_to_slice(chunk, digits);
        h.update(digits);
    }
    h.update(b"\"");
}

mod erased {
    /// A column serde_json can write (integers, booleans, strings, and their options).
    pub(super) trait Column {
        fn write_json(&self, h: &mut super::HashWriter);
    }

    use sha2::Digest;

    impl<T: serde::Serialize> Column for T {
        fn write_json(&self, h: &mut super::HashWriter) {
            // Writing into a hasher cannot fail, and these types always serialise.
            if serde_json::to_writer(&mut *h, self).is_err() {
                h.0.update(b"\0unserialisable");
            }
        }
    }
}
