//! The session authority (issue #16): one idle clock for every replica of the mesh, and the
//! revocation list. Operational state in two small mutable tables beside the ledger (not part
//! of it): `session_activity` (session key -> last activity) and `session_revocations` (the
//! revocations in force; each is also a `session-revocation` record in the ledger,
//! [`crate::revocation_record`]).
//!
//! **How sessions are keyed.** An access record carries `actor.subject` and `actor.session` but
//! not the token's issuer, so the authority keys a session by (subject, session id): the blind
//! index `session` of `len(subject) ":" subject session` under the collector's blind-index key.
//! No identifier is stored in clear, and every collector sharing the database (and the
//! encryption key) derives the same key. Two issuers' sessions collide only if they share both
//! the subject and the session id; they would then share one idle clock. Revocations do carry
//! the issuer (optional) and are matched on it.
//!
//! **Where activity comes from.** Every MAC-verified `access` record with outcome `allow`, a
//! subject and a session (denied requests are not activity: a token refused as idle must not
//! revive its session), at the record's own time clamped to the collector's clock plus
//! [`MAX_CLOCK_SKEW_MS`]; and every check the authority answers `active`. Ingest merges what one
//! transaction stores to one row per session (its newest time) and upserts them in that same
//! transaction (one statement on PostgreSQL, `GREATEST`, so concurrent collectors agree; no
//! extra commit or fsync): activity is known as soon as the records that show it are stored.
//!
//! **Bounds.** Rows whose last activity is older than the retention (default 24 h + 5 min:
//! set it to at least the longest `absoluteTimeoutSeconds` plus skew) are deleted every minute,
//! and expired revocations with them: any session that old is past its absolute timeout, which
//! authn checks first. At most [`MAX_REVOCATIONS`] revocations are in force.

use hipaa_core::audit::{AuditRecord, Decision, MacKeyRing, RecordKind};
use hipaa_core::authn::authority::wire::{
    CheckRequest, RevocationList, RevocationTarget, MAX_CLOCK_SKEW_MS, MAX_REVOCATIONS,
};
use hipaa_core::authn::authority::{authority_decide, CheckAnswer, Revocation};

use crate::keys::EncryptionKey;
use crate::store::{RevocationRow, Store, StoreError};

/// Where the session authority's MAC key comes from (one key per purpose: not the audit key).
pub const ENV_SESSION_KEY: &str = "HIPAA_SESSION_AUTHORITY_KEY";
/// Activity older than this is forgotten unless configured otherwise (24 h + 5 min).
pub const DEFAULT_RETENTION_SECONDS: u64 = 86_400 + 300;
/// A revocation stays in force this long unless the request or the configuration says
/// otherwise: the default `maxTokenLifetimeSeconds` (3600) plus the largest clock skew (300).
pub const DEFAULT_REVOCATION_TTL_SECONDS: u64 = 3600 + 300;

/// The session authority's settings (`ServerConfig::sessions`).
#[derive(Debug, Clone)]
pub struct SessionAuthority {
    /// Checks calls and seals answers (`HIPAA_SESSION_AUTHORITY_KEY`).
    pub keys: MacKeyRing,
    pub retention_seconds: u64,
    /// Default lifetime of a revocation: the longest token lifetime of the mesh plus skew.
    pub revocation_ttl_seconds: u64,
}

impl SessionAuthority {
    pub fn new(keys: MacKeyRing) -> SessionAuthority {
        SessionAuthority {
            keys,
            retention_seconds: DEFAULT_RETENTION_SECONDS,
            revocation_ttl_seconds: DEFAULT_REVOCATION_TTL_SECONDS,
        }
    }

    /// From `HIPAA_SESSION_AUTHORITY_KEY` (None when unset: the endpoints answer 503).
    pub fn from_env() -> Result<Option<SessionAuthority>, String> {
        match std::env::var(ENV_SESSION_KEY) {
            Ok(v) if !v.trim().is_empty() => MacKeyRing::parse(&v)
                .map(|k| Some(SessionAuthority::new(k)))
                .map_err(|e| key_error(&e)),
            _ => Ok(None),
        }
    }
}

/// The key error in the session key's own words (the ring's messages name the audit key).
fn key_error(e: &hipaa_core::audit::KeyError) -> String {
    use hipaa_core::audit::KeyError as K;
    let what = match e {
        K::Missing => "is empty".to_string(),
        K::NotHex => "is not HEX or KEYID:HEX".to_string(),
        K::TooShort { bytes } => format!("is {bytes} bytes; at least 32 are required"),
        K::BadKeyId => "has an invalid key id (1-64 of A-Z a-z 0-9 . _ -)".to_string(),
        K::DuplicateKeyId(id) => format!("gives key id {id:?} twice"),
    };
    format!("{ENV_SESSION_KEY} {what}")
}

/// The authority's key for a session (see the module docs).
pub fn session_key(enc: &EncryptionKey, subject: &str, session: &str) -> String {
    enc.blind_index("session", &format!("{}:{subject}{session}", subject.len()))
}

/// The (session key, time) one authentic record contributes, if it is an allowed access with a
/// subject and a session.
pub fn activity_of(
    enc: &EncryptionKey,
    record: &AuditRecord,
    time_ms: i64,
    now_ms: i64,
) -> Option<(String, i64)> {
    if record.kind != RecordKind::Access {
        return None;
    }
    if record.outcome.as_ref()?.decision != Decision::Allow {
        return None;
    }
    let actor = record.actor.as_ref()?;
    let subject = actor.subject.as_deref().filter(|s| !s.is_empty())?;
    let session = actor.session.as_deref().filter(|s| !s.is_empty())?;
    let time = time_ms.min(now_ms.saturating_add(MAX_CLOCK_SKEW_MS));
    Some((session_key(enc, subject, session), time))
}

/// Sorted by key, each key once with its newest time (one upsert per session, and concurrent
/// collectors lock rows in the same order).
pub fn merge_activity(items: impl IntoIterator<Item = (String, i64)>) -> Vec<(String, i64)> {
    let mut map = std::collections::BTreeMap::<String, i64>::new();
    for (k, t) in items {
        let e = map.entry(k).or_insert(t);
        *e = (*e).max(t);
    }
    map.into_iter().collect()
}

/// Why a check was not answered.
#[derive(Debug)]
pub enum CheckError {
    /// The caller's clock is more than [`MAX_CLOCK_SKEW_MS`] from ours (or a replayed call).
    Stale,
    Store(StoreError),
}

/// Answers one check at `now_ms` and records the sighting when the session is active.
pub fn check(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    req: &CheckRequest,
    now_ms: i64,
) -> Result<CheckAnswer, CheckError> {
    if now_ms.saturating_sub(req.now_ms).abs() > MAX_CLOCK_SKEW_MS {
        return Err(CheckError::Stale);
    }
    let revoked = store
        .is_revoked(&req.issuer, &req.subject, &req.session, now_ms)
        .map_err(CheckError::Store)?;
    let key = session_key(enc, &req.subject, &req.session);
    let stored = store.session_activity(&key).map_err(CheckError::Store)?;
    let (answer, record) = authority_decide(req, stored, revoked, now_ms);
    if let Some(ms) = record {
        store
            .record_session_activity(&[(key, ms)])
            .map_err(CheckError::Store)?;
    }
    Ok(answer)
}

/// The revocations in force as the filters receive them, and the body's entity tag.
pub fn revocation_list(
    store: &mut dyn Store,
    now_ms: i64,
) -> Result<(Vec<u8>, String), StoreError> {
    let revocations = store
        .revocations(now_ms)?
        .into_iter()
        .filter_map(|r| {
            Some(Revocation {
                target: match r.target.as_str() {
                    "subject" => RevocationTarget::Subject,
                    "session" => RevocationTarget::Session,
                    _ => return None,
                },
                value: r.value,
                issuer: r.issuer,
                revoked_at_ms: r.revoked_at_ms,
                expires_at_ms: r.expires_at_ms,
            })
        })
        .take(MAX_REVOCATIONS)
        .collect();
    let body = RevocationList { revocations }.encode();
    let etag = RevocationList::etag(&body);
    Ok((body, etag))
}

/// Forgets activity older than the retention and revocations expired at `now_ms`.
pub fn prune(
    store: &mut dyn Store,
    authority: &SessionAuthority,
    now_ms: i64,
) -> Result<(u64, u64), StoreError> {
    let keep_ms =
        i64::try_from(authority.retention_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let sessions = store.prune_sessions(now_ms.saturating_sub(keep_ms))?;
    let revocations = store.prune_revocations(now_ms)?;
    Ok((sessions, revocations))
}

/// The row a revocation is kept in while in force.
pub fn revocation_row(ledger_seq: i64, r: &Revocation) -> RevocationRow {
    RevocationRow {
        ledger_seq,
        target: r.target.as_str().to_string(),
        value: r.value.clone(),
        issuer: r.issuer.clone(),
        revoked_at_ms: r.revoked_at_ms,
        expires_at_ms: r.expires_at_ms,
    }
}
