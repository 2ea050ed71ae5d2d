//! Incidents in the ledger: each event one own record of kind `incident` (append-only, encrypted,
//! hashed, signed by the next checkpoint, checked by `audit verify`), read back and grouped by
//! incident; the individuals an incident affects, from the access records it links; the
//! retention floor the purge must respect.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{json, Value};

use super::model::{Affected, Event, Links};
use crate::keys::EncryptionKey;
use crate::own_records::{self, Appended, OwnRecord};
use crate::store::{RowFilter, Store, StoreError, StoredRow};

pub const KIND: &str = "incident";
/// The patients an incident lists (the count stays exact beyond).
pub const MAX_PATIENTS_LISTED: usize = 10_000;
/// The most access records one incident's links may reach (a scope broader is refused).
pub const MAX_LINKED_ACCESS_ROWS: u64 = 1_000_000;
/// Rows read per page.
const PAGE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "stored record at ledger position {0} fails authentication: run `hipaa-mesh audit verify`"
    )]
    Tampered(i64),
    #[error("the links reach more than {MAX_LINKED_ACCESS_ROWS} access records: narrow the scope")]
    TooBroad,
}

/// The ledger record of one event at `now_ms`.
pub fn record(event: &Event, now_ms: i64) -> Value {
    json!({
        "v": 1,
        "kind": KIND,
        "time": hipaa_core::calendar::rfc3339_millis(now_ms),
        "timeMs": now_ms,
        "incident": event,
    })
}

/// The dedupe key of an incident's opening (its id is stored once).
pub fn open_key(id: &str) -> String {
    format!("incident-open:{id}")
}

fn own(record: &Value) -> OwnRecord<'_> {
    let opened = record.pointer("/incident/event").and_then(Value::as_str) == Some("opened");
    OwnRecord {
        kind: KIND,
        record,
        time_ms: record
            .get("timeMs")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        bi_subject: None,
        bi_patient: None,
        dedupe_key: opened
            .then(|| record.pointer("/incident/id").and_then(Value::as_str))
            .flatten()
            .map(open_key),
    }
}

/// Appends one event (an `opened` event whose id is already taken is not stored:
/// [`Appended::AlreadyStored`]).
pub fn append(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    event: &Event,
    now_ms: i64,
) -> Result<Appended, StoreError> {
    let record = record(event, now_ms);
    own_records::append(store, enc, &own(&record), now_ms)
}

/// What `audit verify` checks of a stored incident row against its decrypted record: the
/// columns, and that the record is an incident event of a well-formed id.
pub fn check(row: &StoredRow, value: &Value) -> Vec<&'static str> {
    let mut out = own_records::column_problems(row, value, &own(value));
    let parsed = value
        .get("incident")
        .and_then(|e| serde_json::from_value::<Event>(e.clone()).ok());
    if !parsed.is_some_and(|e| super::model::valid_id(&e.id)) {
        out.push("incident event");
    }
    out
}

/// Reads every row `filter` selects (paged), decrypted, into `f`; `f` returns false to stop.
pub(crate) fn scan(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    mut filter: RowFilter,
    f: &mut dyn FnMut(&StoredRow, Value) -> Result<bool, ReadError>,
) -> Result<(), ReadError> {
    filter.limit = PAGE;
    loop {
        let rows = store.rows(&filter)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        filter.after = last.ledger_seq;
        for row in &rows {
            let plain = enc
                .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
                .ok_or(ReadError::Tampered(row.ledger_seq))?;
            let value: Value =
                serde_json::from_slice(&plain).map_err(|_| ReadError::Tampered(row.ledger_seq))?;
            if !f(row, value)? {
                return Ok(());
            }
        }
        if rows.len() < PAGE as usize {
            return Ok(());
        }
    }
}

/// Every incident's events (time in Unix ms, the event), in ledger order; only `id`'s when given.
pub fn events(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    id: Option<&str>,
) -> Result<BTreeMap<String, Vec<(i64, Event)>>, ReadError> {
    let mut out: BTreeMap<String, Vec<(i64, Event)>> = BTreeMap::new();
    let filter = RowFilter {
        kind: Some(KIND.into()),
        ..RowFilter::default()
    };
    scan(store, enc, filter, &mut |row, value| {
        let event = value
            .get("incident")
            .cloned()
            .and_then(|e| serde_json::from_value::<Event>(e).ok())
            .ok_or(ReadError::Tampered(row.ledger_seq))?;
        if id.is_none_or(|id| id == event.id) {
            let time = value
                .get("timeMs")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            out.entry(event.id.clone()).or_default().push((time, event));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// A patient attributed in an access record that disclosed something: allowed, and answered
/// below 400. Refused or failed requests are counted but name nobody affected.
fn disclosed(record: &Value) -> bool {
    record.pointer("/outcome/decision").and_then(Value::as_str) == Some("allow")
        && record
            .pointer("/outcome/status")
            .and_then(Value::as_u64)
            .is_some_and(|s| s < 400)
}

/// The individuals the links name: every access record whose request id is linked (searched in
/// `within` when given: an alert's window) and every access record of the scope's subject in
/// its range. `scope_range` is the scope's (from, to) in Unix ms.
pub fn affected(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    links: &Links,
    within: Option<(i64, i64)>,
    scope_range: Option<(i64, i64)>,
) -> Result<Affected, ReadError> {
    let mut patients: BTreeSet<String> = BTreeSet::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut records = 0u64;
    let mut times: Option<(i64, i64)> = None;
    let mut reached = 0u64;
    let mut take = |row: &StoredRow, value: &Value, patients: &mut BTreeSet<String>| {
        records += 1;
        if let Some(t) = row.time_ms {
            times = Some(times.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        }
        if disclosed(value) {
            if let Some(p) = value.pointer("/resource/patient").and_then(Value::as_str) {
                patients.insert(p.to_string());
            }
        }
    };
    let wanted: HashSet<&str> = links.records.iter().map(String::as_str).collect();
    if !wanted.is_empty() {
        let filter = RowFilter {
            kind: Some("access".into()),
            from_ms: within.map(|w| w.0),
            to_ms: within.map(|w| w.1),
            ..RowFilter::default()
        };
        scan(store, enc, filter, &mut |row, value| {
            reached += 1;
            if reached > MAX_LINKED_ACCESS_ROWS {
                return Err(ReadError::TooBroad);
            }
            let id = value.get("requestId").and_then(Value::as_str);
            if let Some(id) = id.filter(|id| wanted.contains(id)) {
                if seen_ids.insert(id.to_string()) {
                    take(row, &value, &mut patients);
                }
            }
            Ok(seen_ids.len() < wanted.len())
        })?;
    }
    if let (Some(scope), Some((from, to))) = (&links.scope, scope_range) {
        let filter = RowFilter {
            kind: Some("access".into()),
            bi_subject: Some(enc.blind_index("subject", &scope.subject)),
            from_ms: Some(from),
            to_ms: Some(to),
            ..RowFilter::default()
        };
        reached = 0;
        scan(store, enc, filter, &mut |row, value| {
            reached += 1;
            if reached > MAX_LINKED_ACCESS_ROWS {
                return Err(ReadError::TooBroad);
            }
            let id = value.get("requestId").and_then(Value::as_str);
            // A record linked by id as well is counted once.
            if id.is_none_or(|id| !seen_ids.contains(id)) {
                take(row, &value, &mut patients);
            }
            Ok(true)
        })?;
    }
    let count = patients.len() as u64;
    let patients_truncated = patients.len() > MAX_PATIENTS_LISTED;
    Ok(Affected {
        count,
        patients: patients.into_iter().take(MAX_PATIENTS_LISTED).collect(),
        patients_truncated,
        records,
        missing_records: links
            .records
            .iter()
            .filter(|r| !seen_ids.contains(r.as_str()))
            .cloned()
            .collect(),
        first_access: times.map(|t| hipaa_core::calendar::rfc3339_millis(t.0)),
        last_access: times.map(|t| hipaa_core::calendar::rfc3339_millis(t.1)),
    })
}

/// The first ledger position a purge stored before `before_ms` must keep: the first row of any
/// incident still open, or whose latest event was stored at or after `before_ms` (an incident's
/// documentation is kept 6 years from its last event, 164.316(b)(2), and goes whole or not at
/// all). None: no incident holds the purge back.
pub fn retention_floor(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    before_ms: i64,
) -> Result<Option<i64>, ReadError> {
    // Per incident: first ledger position, latest stored time, closed.
    let mut seen: BTreeMap<String, (i64, i64, bool)> = BTreeMap::new();
    let filter = RowFilter {
        kind: Some(KIND.into()),
        ..RowFilter::default()
    };
    scan(store, enc, filter, &mut |row, value| {
        let id = value
            .pointer("/incident/id")
            .and_then(Value::as_str)
            .ok_or(ReadError::Tampered(row.ledger_seq))?
            .to_string();
        let closed = value.pointer("/incident/event").and_then(Value::as_str) == Some("closed");
        let e = seen
            .entry(id)
            .or_insert((row.ledger_seq, row.stored_at_ms, false));
        e.1 = e.1.max(row.stored_at_ms);
        e.2 |= closed;
        Ok(true)
    })?;
    Ok(seen
        .values()
        .filter(|(_, last, closed)| !closed || *last >= before_ms)
        .map(|(first, _, _)| *first)
        .min())
}
