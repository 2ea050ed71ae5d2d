//! Ending access now (164.308(a)(3)(ii)(C) termination procedures): `POST /v1/sessions/revoke`
//! (`hipaa-mesh session revoke`). Each revocation is first appended to the ledger as its own
//! record (kind `session-revocation`: encrypted, hashed, checkpointed, checked by `audit
//! verify`), then put in force in the operational table the filters pull from
//! (`GET /v1/revocations`, [`crate::sessions`]).
//!
//! The record (canonical JSON, then encrypted like every row):
//! `{"v":1,"kind":"session-revocation","time":RFC3339,"timeMs":N,"sessionRevocation":{
//! "target":"subject"|"session","value":..,"issuer":..|null,"reason":..|null,
//! "expiresAtMs":N,"by":{"subject":..,"issuer":..}}}`; its `bi_subject` column is the revoked
//! user's blind index for a subject revocation (so `GET /v1/records?kind=session-revocation&
//! subject=NAME` lists NAME's), none for a session revocation.

use hipaa_core::authn::authority::wire::{
    RevocationTarget, MAX_FIELD_BYTES, MAX_REVOCATIONS, MAX_REVOCATION_TTL_SECONDS,
};
use hipaa_core::authn::authority::Revocation;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::keys::EncryptionKey;
use crate::own_records::{self, Appended, OwnRecord};
use crate::read_auth::Reader;
use crate::store::{Store, StoreError, StoredRow};

pub const KIND: &str = "session-revocation";
/// The largest `POST /v1/sessions/revoke` body.
pub const MAX_REVOKE_BODY: usize = 4096;
/// The most of a reason kept (bytes, whole characters).
pub const MAX_REASON_BYTES: usize = 512;
/// The shortest lifetime a revocation may be given.
pub const MIN_TTL_SECONDS: u64 = 60;

/// `POST /v1/sessions/revoke` body: exactly one of `subject` and `session`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Default: the collector's `revocation_ttl_seconds` (longest token lifetime + skew).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// Why a revocation was not made: each maps to a status and a fixed body.
#[derive(Debug)]
pub enum RevokeError {
    /// 400, with what is wrong (never echoes a value).
    Bad(&'static str),
    /// 409: [`MAX_REVOCATIONS`] are in force already.
    TooMany,
    /// 503.
    Store(StoreError),
}

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD_BYTES && !s.chars().any(char::is_control)
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Parses and checks a body into the revocation to make at `now_ms` and its reason.
pub fn parse(
    body: &[u8],
    now_ms: i64,
    default_ttl_seconds: u64,
) -> Result<(Revocation, Option<String>), RevokeError> {
    if body.len() > MAX_REVOKE_BODY {
        return Err(RevokeError::Bad("body too large"));
    }
    let r: RevokeRequest = serde_json::from_slice(body).map_err(|_| {
        RevokeError::Bad("expected {subject|session, issuer?, reason?, ttlSeconds?}")
    })?;
    let (target, value) = match (r.subject, r.session) {
        (Some(s), None) => (RevocationTarget::Subject, s),
        (None, Some(s)) => (RevocationTarget::Session, s),
        _ => return Err(RevokeError::Bad("give exactly one of subject and session")),
    };
    if !field_ok(&value) || r.issuer.as_deref().is_some_and(|i| !field_ok(i)) {
        return Err(RevokeError::Bad(
            "subject, session and issuer must be 1-256 bytes without control characters",
        ));
    }
    let ttl = r.ttl_seconds.unwrap_or(default_ttl_seconds);
    if !(MIN_TTL_SECONDS..=MAX_REVOCATION_TTL_SECONDS).contains(&ttl) {
        return Err(RevokeError::Bad("ttlSeconds must be between 60 and 604800"));
    }
    let reason = r
        .reason
        .map(|s| bounded(s.trim(), MAX_REASON_BYTES).to_string())
        .filter(|s| !s.is_empty());
    let ttl_ms = i64::try_from(ttl * 1000).unwrap_or(i64::MAX);
    Ok((
        Revocation {
            target,
            value,
            issuer: r.issuer,
            revoked_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        },
        reason,
    ))
}

/// The ledger record of one revocation.
pub fn record(r: &Revocation, reason: Option<&str>, by: &Reader) -> Value {
    json!({
        "v": 1,
        "kind": KIND,
        "time": hipaa_core::calendar::rfc3339_millis(r.revoked_at_ms),
        "timeMs": r.revoked_at_ms,
        "sessionRevocation": {
            "target": r.target.as_str(),
            "value": r.value,
            "issuer": r.issuer,
            "reason": reason,
            "expiresAtMs": r.expires_at_ms,
            "by": {"subject": bounded(&by.subject, 256), "issuer": bounded(&by.issuer, 256)},
        }
    })
}

/// The ledger form of a revocation record.
fn own<'a>(enc: &EncryptionKey, record: &'a Value) -> OwnRecord<'a> {
    let revoked_subject = (record
        .pointer("/sessionRevocation/target")
        .and_then(Value::as_str)
        == Some("subject"))
    .then(|| {
        record
            .pointer("/sessionRevocation/value")
            .and_then(Value::as_str)
    })
    .flatten();
    OwnRecord {
        kind: KIND,
        record,
        time_ms: record
            .get("timeMs")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        bi_subject: revoked_subject.map(|s| enc.blind_index("subject", s)),
        bi_patient: None,
        dedupe_key: None,
    }
}

/// Makes a revocation: refuses beyond [`MAX_REVOCATIONS`] in force, appends its record to the
/// ledger, then puts it in force. If the second step fails the ledger says it was asked for and
/// the caller gets 503 (retrying makes a second record and puts it in force).
pub fn revoke(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    revocation: &Revocation,
    reason: Option<&str>,
    by: &Reader,
) -> Result<i64, RevokeError> {
    let in_force = store
        .revocations(revocation.revoked_at_ms)
        .map_err(RevokeError::Store)?
        .len();
    if in_force >= MAX_REVOCATIONS {
        return Err(RevokeError::TooMany);
    }
    let value = record(revocation, reason, by);
    let seq = match own_records::append(store, enc, &own(enc, &value), revocation.revoked_at_ms)
        .map_err(RevokeError::Store)?
    {
        Appended::Stored(seq) => seq,
        Appended::AlreadyStored => {
            return Err(RevokeError::Store(StoreError::db(
                "revoke",
                "unexpected dedupe",
            )))
        }
    };
    store
        .insert_revocation(&crate::sessions::revocation_row(seq, revocation))
        .map_err(RevokeError::Store)?;
    Ok(seq)
}

/// What `audit verify` checks of a stored revocation row against its decrypted record.
pub fn check(row: &StoredRow, value: &Value, enc: &EncryptionKey) -> Vec<&'static str> {
    let mut out = own_records::column_problems(row, value, &own(enc, value));
    let target_ok = matches!(
        value
            .pointer("/sessionRevocation/target")
            .and_then(Value::as_str),
        Some("subject" | "session")
    );
    let value_ok = value
        .pointer("/sessionRevocation/value")
        .and_then(Value::as_str)
        .is_some();
    let shape_ok = target_ok && value_ok;
    if !shape_ok && !out.contains(&"kind") {
        out.push("kind");
    }
    out
}
