//! The alert webhook: one JSON POST per stored alert (the alert, status `open`), in ledger
//! order, signed `x-hipaa-signature: sha256=<hex HMAC-SHA256(secret, body)>` with the webhook's
//! own secret (no other key), retried with exponential backoff (1 s doubling to 5 min) until
//! the receiver answers 2xx.
//!
//! The delivery cursor (the ledger position of the last acknowledged alert) is the
//! `collector_state` row `webhook`, advanced only after a 2xx: a restarted collector resumes
//! with the first alert not acknowledged. Delivery is at least once: a collector that stops
//! between the 2xx and the cursor write, or two collectors on one database, may send an alert
//! twice; receivers deduplicate on `x-hipaa-alert-id` (the alert's deterministic id).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ledger::ALERT_KIND;
use crate::keys::EncryptionKey;
use crate::store::{RowFilter, Store, StoreError};

/// The `collector_state` name of the delivery cursor.
pub const CURSOR: &str = "webhook";
pub const SIGNATURE_HEADER: &str = "x-hipaa-signature";
pub const ALERT_ID_HEADER: &str = "x-hipaa-alert-id";
/// The first retry delay, doubled per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where alerts go and the key that signs them.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// `secret` of at least 16 bytes (the file's contents, trailing newline removed).
    pub fn new(url: &str, secret: &[u8]) -> Result<Webhook, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("--alert-webhook must be an http:// or https:// URL".into());
        }
        let secret = secret.strip_suffix(b"\n").unwrap_or(secret);
        let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
        if secret.len() < 16 {
            return Err("the alert webhook secret must be at least 16 bytes".into());
        }
        Ok(Webhook {
            url: url.to_string(),
            secret: secret.to_vec(),
        })
    }

    /// `sha256=<hex>` of `body`.
    pub fn signature(&self, body: &[u8]) -> String {
        // HMAC takes a key of any length: this never fails.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// One POST; Ok when the receiver answered 2xx.
fn post(agent: &ureq::Agent, hook: &Webhook, id: &str, body: &[u8]) -> Result<(), String> {
    let answer = agent
        .post(&hook.url)
        .set("content-type", "application/json")
        .set(SIGNATURE_HEADER, &hook.signature(body))
        .set(ALERT_ID_HEADER, id)
        .send_bytes(body);
    match answer {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("status {code}")),
        Err(ureq::Error::Transport(t)) => Err(t.kind().to_string()),
    }
}

/// Delivers alerts after the cursor until one fails: how many were acknowledged, and the
/// failure (then the caller waits its backoff and calls again).
pub fn deliver_pending(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    hook: &Webhook,
    agent: &ureq::Agent,
) -> Result<usize, DeliveryError> {
    let cursor = store.state(CURSOR)?.unwrap_or(0);
    let rows = store.rows(&RowFilter {
        kind: Some(ALERT_KIND.into()),
        after: cursor,
        limit: 100,
        ..RowFilter::default()
    })?;
    let mut sent = 0;
    for row in rows {
        let body = enc
            .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .and_then(|v| v.get("alert").cloned());
        let Some(alert) = body else {
            // Tampered: `audit verify` reports it; it cannot be sent, so it is passed over.
            eprintln!(
                "hipaa-collector: webhook: ledger #{} does not decrypt; skipped (run audit verify)",
                row.ledger_seq
            );
            store.advance_state(CURSOR, row.ledger_seq)?;
            continue;
        };
        let id = alert
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let bytes = serde_json::to_vec(&alert).map_err(|e| DeliveryError::Send(e.to_string()))?;
        post(agent, hook, &id, &bytes).map_err(DeliveryError::Send)?;
        store.advance_state(CURSOR, row.ledger_seq)?;
        sent += 1;
    }
    Ok(sent)
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("webhook delivery failed: {0}")]
    Send(String),
}

/// The agent the delivery loop uses.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(TIMEOUT).build()
}

/// The next delay after a failure.
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}
