//! Reading records back: blind-index lookups, time range, emergency and kind filters, decrypted
//! only for the rows that match.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use serde_json::Value;

use crate::keys::EncryptionKey;
use crate::store::{RowFilter, Store, StoreError};

/// The largest page.
pub const MAX_LIMIT: i64 = 10_000;

/// A review query. Values are matched exactly (through their blind indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub patient: Option<String>,
    pub subject: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    /// Inclusive lower bound on the record's `time` (Unix ms).
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on the record's `time` (Unix ms).
    pub to_ms: Option<i64>,
    /// Some(true): break-glass records only.
    pub emergency: Option<bool>,
    /// None: every kind. Default `access`.
    pub kind: Option<String>,
    /// Cursor: only records stored after this ledger position.
    pub after: i64,
    pub limit: i64,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            patient: None,
            subject: None,
            model: None,
            version: None,
            from_ms: None,
            to_ms: None,
            emergency: None,
            kind: Some("access".into()),
            after: 0,
            limit: MAX_LIMIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "stored record at ledger position {0} fails authentication: run `hipaa-mesh audit verify`"
    )]
    Tampered(i64),
}

/// One page: the records (decrypted JSON, in ingest order) and the cursor of the last one.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<Value>,
    pub last_ledger_seq: Option<i64>,
}

/// `kind` as a reviewer may give it: access, chain-start, integrity, or all.
pub fn parse_kind(s: &str) -> Result<Option<String>, String> {
    match s {
        "all" | "any" => Ok(None),
        "access" | "chain-start" | "integrity" | "trail-access" | "alert" | "alert-status"
        | "incident" | "session-revocation" => Ok(Some(s.to_string())),
        other => Err(format!(
            "kind {other:?} is not one of access, chain-start, integrity, trail-access, alert, \
             alert-status, incident, session-revocation, all"
        )),
    }
}

/// Parses a timestamp bound: `YYYY-MM-DD` or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    hipaa_core::audit::parse_rfc3339_millis(s).ok_or_else(|| {
        format!("{s:?} is not a date (YYYY-MM-DD) or RFC 3339 time (2026-11-23T16:37:08Z)")
    })
}

/// Runs `q`.
pub fn query(store: &mut dyn Store, enc: &EncryptionKey, q: &Query) -> Result<Page, QueryError> {
    let filter = RowFilter {
        bi_patient: q.patient.as_deref().map(|v| enc.blind_index("patient", v)),
        bi_subject: q.subject.as_deref().map(|v| enc.blind_index("subject", v)),
        bi_model: q.model.as_deref().map(|v| enc.blind_index("model", v)),
        bi_version: q.version.as_deref().map(|v| enc.blind_index("version", v)),
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        emergency: q.emergency,
        kind: q.kind.clone(),
        after: q.after,
        limit: q.limit.clamp(1, MAX_LIMIT),
    };
    let rows = store.rows(&filter)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let plain = enc
            .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
            .ok_or(QueryError::Tampered(row.ledger_seq))?;
        let value: Value =
            serde_json::from_slice(&plain).map_err(|_| QueryError::Tampered(row.ledger_seq))?;
        records.push(value);
    }
    Ok(Page {
        records,
        last_ledger_seq: rows.last().map(|r| r.ledger_seq),
    })
}

/// Parses the query string of `GET /v1/records`.
pub fn parse_query_string(qs: &str) -> Result<Query, String> {
    let mut q = Query::default();
    for pair in qs.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        match k.as_str() {
            "patient" => q.patient = Some(v),
            "subject" => q.subject = Some(v),
            "model" => q.model = Some(v),
            "version" => q.version = Some(v),
            "from" => q.from_ms = Some(parse_time(&v)?),
            "to" => q.to_ms = Some(parse_time(&v)?),
            "emergency" => {
                q.emergency = match v.as_str() {
                    "" | "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    other => return Err(format!("emergency={other:?}: use true or false")),
                }
            }
            "kind" => q.kind = parse_kind(&v)?,
            "limit" => {
                q.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit must be 1..={MAX_LIMIT}"))?
            }
            "after" => {
                q.after = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| "after must be a non-negative integer cursor".to_string())?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (patient, subject, model, version, from, to, \
                     emergency, kind, limit, after)"
                ))
            }
        }
    }
    Ok(q)
}

/// Form decoding of one query-string key or value: `+` is a space, `%XX` a byte (a `%` without
/// two hex digits is refused), and the result must be UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = hipaa_core::percent::decode(&s.replace('+', " "))
        .ok_or_else(|| "bad percent-encoding in the query string".to_string())?;
    String::from_utf8(bytes).map_err(|_| "query string is not UTF-8".to_string())
}
