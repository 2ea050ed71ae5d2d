//! Signed checkpoints: Ed25519 over the ledger's count and head hash, so a truncated tail (which
//! a hash chain alone cannot show) is caught by `audit verify`.

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use crate::keys::{public_key_id, CheckpointSigner};
use crate::ledger::GENESIS_PREV;
use crate::store::{Checkpoint, Store, StoreError};

/// The signed bytes.
pub fn message(created_ms: i64, ledger_count: i64, head_hash: &str) -> Vec<u8> {
    format!(
        "hipaa-mesh checkpoint v1\ncount={ledger_count}\nhead={head_hash}\ncreated={created_ms}\n"
    )
    .into_bytes()
}

/// Signs the current head (under the ledger lock) and stores the checkpoint. Returns it.
pub fn sign_checkpoint(
    store: &mut dyn Store,
    signer: &CheckpointSigner,
    now_ms: i64,
) -> Result<Checkpoint, StoreError> {
    sign_checkpoint_if_changed(store, signer, now_ms, None)?
        .ok_or_else(|| StoreError::db("checkpoint", "not written"))
}

/// Like [`sign_checkpoint`], but writes nothing (Ok(None)) when the head is still `unchanged`.
pub fn sign_checkpoint_if_changed(
    store: &mut dyn Store,
    signer: &CheckpointSigner,
    now_ms: i64,
    unchanged: Option<(i64, &str)>,
) -> Result<Option<Checkpoint>, StoreError> {
    let mut out = None;
    store.write(&mut |tx| {
        let (count, head) = tx.head()?.unwrap_or((0, GENESIS_PREV.to_string()));
        if unchanged == Some((count, head.as_str())) {
            return Ok(());
        }
        let sig = signer.key.sign(&message(now_ms, count, &head));
        let cp = Checkpoint {
            id: 0,
            created_ms: now_ms,
            ledger_count: count,
            head_hash: head,
            key_id: signer.key_id(),
            signature: hex::encode(sig.to_bytes()),
        };
        tx.insert_checkpoint(&cp)?;
        out = Some(cp);
        Ok(())
    })?;
    Ok(out)
}

/// Whether `cp` carries a valid signature by one of `keys`. Err names the problem.
pub fn check_signature(cp: &Checkpoint, keys: &[VerifyingKey]) -> Result<(), String> {
    let Some(key) = keys.iter().find(|k| public_key_id(k) == cp.key_id) else {
        return Err(format!(
            "signed by key {} which is not among the checkpoint public keys given",
            cp.key_id
        ));
    };
    let sig = hex::decode(&cp.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| "signature is not a hex Ed25519 signature".to_string())?;
    key.verify_strict(
        &message(cp.created_ms, cp.ledger_count, &cp.head_hash),
        &sig,
    )
    .map_err(|_| "signature does not verify (checkpoint modified or forged)".to_string())
}
