//! Retention: the only delete path. Removes the oldest rows, and only those a signed checkpoint
//! proves were stored before a cutoff at least 6 years ago; the database's trigger checks the age
//! of every row again. The purge mark is signed with the checkpoint key and names the checkpoint
//! it relies on (its count and head), so `audit verify` can tell it from one written by SQL.

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use hipaa_core::calendar::Date;

use crate::keys::{public_key_id, CheckpointSigner, EncryptionKey};
use crate::store::{PurgeMark, RowFilter, Store, StoreError};

/// The signed bytes of a purge mark: what it removed (rows through `through_seq`, whose
/// head was `through_hash`, i.e. the checkpoint it relies on), the cut-off and when.
pub fn message(mark: &PurgeMark) -> Vec<u8> {
    format!(
        "hipaa-mesh purge v1\ncreated={}\nbefore={}\nthrough={}\nhead={}\n",
        mark.created_ms, mark.before_ms, mark.through_seq, mark.through_hash
    )
    .into_bytes()
}

/// Whether `mark` carries a valid signature by one of `keys`. Err names the problem.
pub fn check_signature(mark: &PurgeMark, keys: &[VerifyingKey]) -> Result<(), String> {
    if mark.signature.is_empty() {
        return Err("the mark is unsigned (not written by `audit purge`)".into());
    }
    let Some(key) = keys.iter().find(|k| public_key_id(k) == mark.key_id) else {
        return Err(format!(
            "signed by key {} which is not among the checkpoint public keys given",
            mark.key_id
        ));
    };
    let sig = hex::decode(&mark.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| "signature is not a hex Ed25519 signature".to_string())?;
    key.verify_strict(&message(mark), &sig)
        .map_err(|_| "signature does not verify (mark modified or forged)".to_string())
}

/// The same instant 6 calendar years earlier (29 February becomes 28 February).
pub fn six_years_before(unix_ms: i64) -> i64 {
    let secs = unix_ms.div_euclid(1000);
    let date = Date::from_unix(secs);
    let year = date.year - crate::store::RETENTION_YEARS;
    let day = if date.month == 2 && date.day == 29 {
        28
    } else {
        date.day
    };
    let earlier = Date {
        year,
        month: date.month,
        day,
    };
    let tod_ms = unix_ms - date.unix_start() * 1000;
    earlier.unix_start() * 1000 + tod_ms
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("refusing to purge records newer than 6 years: --before must be on or before {limit}")]
    TooRecent { limit: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub deleted: u64,
    /// Rows through this ledger position are gone (0: nothing purged).
    pub through_seq: i64,
}

/// Deletes the ledger prefix stored before `before_ms`, as far as signed checkpoints prove it,
/// and records a mark signed by `signer` (the checkpoint key). Refuses a `before_ms` less than
/// 6 years before `now_ms`. Stops before the first row of an incident still open or whose last
/// event is younger than the cut-off (read with `enc`): an incident goes whole, 6 years after
/// its last event, never early.
pub fn purge(
    store: &mut dyn Store,
    signer: &CheckpointSigner,
    enc: &EncryptionKey,
    before_ms: i64,
    now_ms: i64,
) -> Result<PurgeOutcome, PurgeError> {
    let limit = six_years_before(now_ms);
    if before_ms > limit {
        return Err(PurgeError::TooRecent {
            limit: hipaa_core::calendar::rfc3339_millis(limit),
        });
    }
    let already = store
        .purges()?
        .iter()
        .map(|p| p.through_seq)
        .max()
        .unwrap_or(0);
    let keep_from = crate::incidents::ledger::retention_floor(store, enc, before_ms)
        .map_err(|e| match e {
            crate::incidents::ledger::ReadError::Store(e) => PurgeError::Store(e),
            other => PurgeError::Store(StoreError::db("purge", other)),
        })?
        .unwrap_or(i64::MAX);
    let through = store
        .checkpoints()?
        .iter()
        .filter(|c| c.created_ms < before_ms && c.ledger_count < keep_from)
        .map(|c| c.ledger_count)
        .max()
        .unwrap_or(0);
    if through <= already {
        return Ok(PurgeOutcome {
            deleted: 0,
            through_seq: already,
        });
    }
    let row = store.rows(&RowFilter {
        after: through - 1,
        limit: 1,
        ..RowFilter::default()
    })?;
    let Some(last) = row.into_iter().next().filter(|r| r.ledger_seq == through) else {
        return Err(PurgeError::Store(StoreError::db(
            "purge",
            format!("ledger row #{through} is missing: run audit verify first"),
        )));
    };
    let mut mark = PurgeMark {
        id: 0,
        created_ms: now_ms,
        before_ms,
        through_seq: through,
        through_hash: last.ledger_hash,
        key_id: signer.key_id(),
        signature: String::new(),
    };
    mark.signature = hex::encode(signer.key.sign(&message(&mark)).to_bytes());
    let deleted = store.purge_through(&mark)?;
    Ok(PurgeOutcome {
        deleted,
        through_seq: through,
    })
}
