//! What an incident takes from an alert, read through the detect module's reader
//! (`crate::alerts::ledger::get`: the alert row, decrypted, with its current status).
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use super::ledger::ReadError;
use crate::keys::EncryptionKey;
use crate::store::Store;

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

/// The alert with this id, None when no alert row carries it (the detect module's reader).
pub fn find_alert(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    id: &str,
) -> Result<Option<AlertLink>, ReadError> {
    let alert = crate::alerts::ledger::get(store, enc, id).map_err(|e| match e {
        crate::alerts::ledger::ReadError::Store(e) => ReadError::Store(e),
        crate::alerts::ledger::ReadError::Tampered(l) => ReadError::Tampered(l),
    })?;
    Ok(alert.map(|a| {
        let time = |t: &str| hipaa_core::audit::parse_rfc3339_millis(t);
        AlertLink {
            window: time(&a.window.from).zip(time(&a.window.to)),
            id: a.id,
            kind: a.kind.as_str().to_string(),
            subject: a.subject,
            records: a
                .records
                .into_iter()
                .take(super::model::MAX_LINKED_RECORDS)
                .collect(),
            records_truncated: a.records_truncated,
        }
    }))
}
