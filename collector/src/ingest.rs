//! Ingest: check each record's MAC and its chain, dedup, encrypt, append to the ledger — all in
//! one transaction that commits before the batch is acknowledged.
//!
//! Per record, in order:
//! 1. Already stored (same canonical bytes, or an integrity row standing in for them): a retried
//!    duplicate; acknowledged, not stored again.
//! 2. Not a valid v1 `access` / `chain-start` record: stored as an integrity record
//!    (`malformed`) holding the record as received.
//! 3. MAC fails, or names an unknown key: stored as an integrity record (`bad-mac` /
//!    `unknown-key`) holding the record as received; never as a clean record, and the chain does
//!    not advance.
//! 4. A different record already holds this (chain id, seq): integrity record `seq-conflict`.
//! 5. Otherwise the record is stored, and any continuity finding against the chain's newest stored
//!    record (`gap`, `prev-mismatch`, `chain-start-misplaced`; `late` for a seq older than the
//!    newest, filling an earlier gap) is stored beside it as an integrity record.
//!
//! Chain state is the newest clean row of each chain id in the database itself, so a restarted
//! collector, or another collector on the same PostgreSQL database, continues where it left off.

use std::sync::Arc;

use hipaa_core::audit::{
    canonical_bytes, parse_rfc3339_millis, record_hash, verify_mac, AuditRecord, ChainFinding,
    ChainVerifier, FindingKind, IntegrityFinding, IntegrityRecord, MacCheck, MacKeyRing,
    RecordKind, RECORD_VERSION,
};
use serde::Serialize;
use serde_json::Value;

use crate::keys::EncryptionKey;
use crate::ledger::{row_hash, GENESIS_PREV};
use crate::store::{LedgerTx, Store, StoreError, StoredRow};

/// Unix milliseconds now. Injected so tests can store records "years ago".
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// What ingest and query need: the MAC keys, the at-rest key, a clock.
#[derive(Clone)]
pub struct Collector {
    pub mac_keys: MacKeyRing,
    pub encryption: EncryptionKey,
    pub clock: Clock,
}

/// The answer to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// Records stored as clean records.
    pub accepted: u64,
    /// Records already stored (retries), acknowledged without storing again.
    pub duplicates: u64,
    /// Integrity records stored (bad MAC, gap, malformed, ...).
    pub flagged: u64,
}

/// Stores one batch durably. On Err nothing of the batch is stored.
pub fn ingest(
    store: &mut dyn Store,
    collector: &Collector,
    batch: &[Value],
) -> Result<IngestSummary, StoreError> {
    let mut summary = IngestSummary::default();
    store.write(&mut |tx| {
        summary = IngestSummary::default();
        let now = (collector.clock)();
        let mut ledger = Appender {
            head: tx.head()?.unwrap_or((0, GENESIS_PREV.to_string())),
            now,
            enc: &collector.encryption,
        };
        for raw in batch {
            ingest_one(tx, &mut ledger, &collector.mac_keys, raw, &mut summary)?;
        }
        Ok(())
    })?;
    Ok(summary)
}

struct Appender<'a> {
    head: (i64, String),
    now: i64,
    enc: &'a EncryptionKey,
}

/// The columns of one row besides the ledger fields.
struct RowData {
    kind: &'static str,
    time_ms: Option<i64>,
    emergency: bool,
    chain: Option<(String, i64)>,
    source_hash: Option<String>,
    index: [Option<String>; 4],
    plaintext: Vec<u8>,
}

impl Appender<'_> {
    fn append(&mut self, tx: &mut dyn LedgerTx, data: RowData) -> Result<(), StoreError> {
        let ledger_seq = self.head.0 + 1;
        let (nonce, ciphertext) = self
            .enc
            .encrypt(ledger_seq, &data.plaintext)
            .map_err(|e| StoreError::db("encrypt", e))?;
        let [bi_patient, bi_subject, bi_model, bi_version] = data.index;
        let (chain_id, chain_seq) = match data.chain {
            Some((id, seq)) => (Some(id), Some(seq)),
            None => (None, None),
        };
        let mut row = StoredRow {
            ledger_seq,
            ledger_prev: self.head.1.clone(),
            ledger_hash: String::new(),
            stored_at_ms: self.now,
            kind: data.kind.to_string(),
            time_ms: data.time_ms,
            emergency: data.emergency,
            chain_id,
            chain_seq,
            source_hash: data.source_hash,
            bi_patient,
            bi_subject,
            bi_model,
            bi_version,
            nonce,
            ciphertext,
        };
        row.ledger_hash = row_hash(&row);
        tx.insert_row(&row)?;
        self.head = (ledger_seq, row.ledger_hash);
        Ok(())
    }

    fn integrity(
        &mut self,
        tx: &mut dyn LedgerTx,
        request_id: Option<String>,
        finding: IntegrityFinding,
        source_hash: Option<String>,
    ) -> Result<(), StoreError> {
        let record = IntegrityRecord::new(self.now, request_id, finding);
        let value =
            serde_json::to_value(&record).map_err(|e| StoreError::db("integrity record", e))?;
        self.append(
            tx,
            RowData {
                kind: RecordKind::Integrity.as_str(),
                time_ms: Some(self.now),
                emergency: false,
                chain: None,
                source_hash,
                index: [None, None, None, None],
                plaintext: canonical_bytes(&value),
            },
        )
    }
}

/// The blind indexes of a clean record: patient, subject, model, version.
pub fn blind_indexes(enc: &EncryptionKey, r: &AuditRecord) -> [Option<String>; 4] {
    [
        r.patient().map(|v| enc.blind_index("patient", v)),
        r.subject().map(|v| enc.blind_index("subject", v)),
        r.model().map(|v| enc.blind_index("model", v)),
        r.model_version().map(|v| enc.blind_index("version", v)),
    ]
}

/// A typed, checked view of a record: None when it is not a valid v1 record a filter may send.
pub(crate) fn typed(raw: &Value) -> Option<(AuditRecord, i64, i64)> {
    let record: AuditRecord = serde_json::from_value(raw.clone()).ok()?;
    if record.v != RECORD_VERSION || record.kind == RecordKind::Integrity {
        return None;
    }
    let time_ms = parse_rfc3339_millis(&record.time)?;
    let seq = i64::try_from(record.chain.seq).ok()?;
    Some((record, time_ms, seq))
}

fn chain_hint(raw: &Value) -> (Option<String>, Option<u64>, Option<String>) {
    let chain = raw.get("chain");
    (
        chain
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        chain.and_then(|c| c.get("seq")).and_then(Value::as_u64),
        raw.get("requestId")
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

fn ingest_one(
    tx: &mut dyn LedgerTx,
    ledger: &mut Appender<'_>,
    ring: &MacKeyRing,
    raw: &Value,
    summary: &mut IngestSummary,
) -> Result<(), StoreError> {
    let source = record_hash(raw);
    if tx.source_exists(&source)? {
        summary.duplicates += 1;
        return Ok(());
    }
    let (hint_chain, hint_seq, hint_request) = chain_hint(raw);
    let flag_whole = |finding: FindingKind, detail: String| IntegrityFinding {
        finding,
        chain_id: hint_chain.clone(),
        seq: hint_seq,
        detail,
        record: Some(raw.clone()),
    };
    let Some((record, time_ms, seq)) = typed(raw) else {
        let f = flag_whole(
            FindingKind::Malformed,
            "not a valid v1 access or chain-start record".into(),
        );
        ledger.integrity(tx, hint_request, f, Some(source))?;
        summary.flagged += 1;
        return Ok(());
    };
    match verify_mac(ring, raw) {
        MacCheck::Valid => {}
        MacCheck::UnknownKey(id) => {
            let f = flag_whole(
                FindingKind::UnknownKey,
                format!("MAC key id {id:?} is not configured"),
            );
            ledger.integrity(tx, hint_request, f, Some(source))?;
            summary.flagged += 1;
            return Ok(());
        }
        MacCheck::BadMac | MacCheck::NoChain => {
            let f = flag_whole(
                FindingKind::BadMac,
                "MAC does not verify: modified in transit or forged".into(),
            );
            ledger.integrity(tx, hint_request, f, Some(source))?;
            summary.flagged += 1;
            return Ok(());
        }
    }
    let chain_id = record.chain.id.clone();
    if tx.chain_row(&chain_id, seq)?.is_some() {
        let f = flag_whole(
            FindingKind::SeqConflict,
            format!("a different record with seq {seq} of this chain is already stored"),
        );
        ledger.integrity(tx, hint_request, f, Some(source))?;
        summary.flagged += 1;
        return Ok(());
    }
    let findings: Vec<(FindingKind, String)> = match tx.chain_last(&chain_id)? {
        Some((last, _)) if seq < last => vec![(
            FindingKind::Late,
            format!("seq {seq} arrived after seq {last} (fills part of an earlier gap)"),
        )],
        Some((last, last_hash)) => {
            let next = u64::try_from(last).unwrap_or(0).saturating_add(1);
            ChainVerifier::resume(chain_id.clone(), next, last_hash)
                .feed(ring, raw)
                .into_iter()
                .map(|f| (f.kind(), f.to_string()))
                .collect()
        }
        None => ChainVerifier::new(chain_id.clone())
            .feed(ring, raw)
            .into_iter()
            .map(|f: ChainFinding| (f.kind(), f.to_string()))
            .collect(),
    };
    ledger.append(
        tx,
        RowData {
            kind: record.kind.as_str(),
            time_ms: Some(time_ms),
            emergency: record.is_emergency(),
            chain: Some((chain_id.clone(), seq)),
            source_hash: Some(source),
            index: blind_indexes(ledger.enc, &record),
            plaintext: canonical_bytes(raw),
        },
    )?;
    summary.accepted += 1;
    for (finding, detail) in findings {
        let f = IntegrityFinding {
            finding,
            chain_id: Some(chain_id.clone()),
            seq: Some(record.chain.seq),
            detail,
            record: None,
        };
        ledger.integrity(tx, record.request_id.clone(), f, None)?;
        summary.flagged += 1;
    }
    Ok(())
}
