//! Ingest: check each record's MAC and its chain, dedup, encrypt, append to the ledger — all in
//! one transaction that commits before the batch is acknowledged.
//!
//! Per record, in order:
//! 1. Already stored (same canonical bytes, or an integrity row standing in for them): a retried
//!    duplicate; acknowledged, not stored again.
//! 2. Not a valid (v1 or v2) `access` / `chain-start` record: stored as an integrity record
//!    (`malformed`) holding the record's hash, length and a bounded excerpt
//!    ([`crate::bounded_copy`]), never the record whole.
//! 3. MAC fails, or names an unknown key: stored as an integrity record (`bad-mac` /
//!    `unknown-key`) holding the same bounded copy; never as a clean record, and the chain does
//!    not advance.
//! 4. A different record already holds this (chain id, seq): integrity record `seq-conflict`.
//! 5. Otherwise the record is stored, and any continuity finding against the chain's newest stored
//!    record (`gap`, `prev-mismatch`, `chain-start-misplaced`; `late` for a seq older than the
//!    newest, filling an earlier gap) is stored beside it as an integrity record.
//!
//! Chain state is the newest clean row of each chain id in the database itself, so a restarted
//! collector, or another collector on the same PostgreSQL database, continues where it left off.
//!
//! The work is split in two so that a batch costs a handful of statements, not several per
//! record:
//! * [`prepare`] does everything that needs no database, once per record: the canonical bytes
//!   (hashed for dedup and stored as the plaintext), the typed view, the MAC check, the blind
//!   indexes. It can run outside the ledger lock (the server runs it in the HTTP worker).
//! * [`ingest_prepared`] then, inside one ledger transaction, reads in bulk what the decisions
//!   need (which source hashes are stored, each chain's newest clean row, which of the batch's
//!   (chain id, seq) at or below it are taken), decides every record in order against that view
//!   plus what the transaction itself has appended so far — exactly what the per-record lookups
//!   answered before — and inserts the rows with one bulk insert. Several batches may share one
//!   transaction (one commit, one fsync); each gets its own summary.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hipaa_core::audit::{
    authenticate, is_filter_version, parse_rfc3339_millis, AuditRecord, ChainFinding, ChainLink,
    ChainVerifier, FindingKind, IntegrityFinding, IntegrityRecord, MacCheck, MacKeyRing,
    RecordKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::canonical;
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
    let prepared = prepare(collector, batch.to_vec());
    let mut summaries = ingest_prepared(store, collector, vec![prepared])?;
    Ok(summaries.pop().unwrap_or_default())
}

/// One batch, checked record by record without the database (see [`prepare`]).
#[derive(Debug)]
pub struct PreparedBatch {
    records: Vec<Prepared>,
    /// The sessions of the batch's authentic allowed accesses, each once with its newest time
    /// (`crate::sessions`): recorded after the batch commits.
    sessions: Vec<(String, i64)>,
}

impl PreparedBatch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// (session key, last activity ms) of the batch, sorted by key, each key once.
    pub fn session_activity(&self) -> &[(String, i64)] {
        &self.sessions
    }

    /// Records that cannot be trusted (malformed, bad MAC, unknown key): what a sender's
    /// garbage budget is charged ([`crate::ingest_limit`]).
    pub fn untrusted(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| !matches!(r.check, Check::Authentic(_)))
            .count() as u64
    }
}

/// One received record and everything about it that does not depend on what is stored.
#[derive(Debug)]
struct Prepared {
    /// The record as received (kept inside integrity records that stand in for it).
    raw: Value,
    /// Hex SHA-256 of the canonical bytes: the dedup key, and the next record's `prev`.
    source: String,
    /// The canonical bytes: what a clean row stores (encrypted).
    canonical: Vec<u8>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    Malformed,
    UnknownKey(String),
    BadMac,
    /// A valid filter record (v1 or v2) whose MAC verifies.
    Authentic(Box<Authentic>),
}

#[derive(Debug)]
struct Authentic {
    record: AuditRecord,
    time_ms: i64,
    seq: i64,
    index: [Option<String>; 4],
}

/// Checks each record of a batch as far as it can be checked without the database: canonical
/// form and its hash, the typed view, the MAC, the blind indexes.
pub fn prepare(collector: &Collector, batch: Vec<Value>) -> PreparedBatch {
    // Records of one batch are alike: size each buffer by the one before.
    let mut size_hint = 1024;
    let records: Vec<Prepared> = batch
        .into_iter()
        .map(|raw| {
            let p = prepare_one(collector, raw, size_hint);
            size_hint = p.canonical.len() + 64;
            p
        })
        .collect();
    let now = (collector.clock)();
    let sessions = crate::sessions::merge_activity(authentic(&records).filter_map(|a| {
        crate::sessions::activity_of(&collector.encryption, &a.record, a.time_ms, now)
    }));
    PreparedBatch { records, sessions }
}

fn prepare_one(collector: &Collector, raw: Value, size_hint: usize) -> Prepared {
    let canonical = canonical(&raw, size_hint);
    // The row's source hash: for an authentic record its chain link (v2: its MAC, a value only
    // the key holder makes; v1: the whole record's hash), else the whole record's hash, from the
    // bytes already made. Never the digest v2's MAC covers: that is the hash of the record
    // without its MAC, a copy anyone could post first to take the real record's dedup key.
    let whole = || hex::encode(Sha256::digest(&canonical));
    let (check, source) = match typed(&raw) {
        None => (Check::Malformed, whole()),
        Some((record, time_ms, seq)) => match authenticate(&collector.mac_keys, &raw) {
            Ok(link) => (
                Check::Authentic(Box::new(Authentic {
                    index: blind_indexes(&collector.encryption, &record),
                    record,
                    time_ms,
                    seq,
                })),
                match link {
                    ChainLink::WholeRecord => whole(),
                    ChainLink::Mac(mac) => mac,
                },
            ),
            Err(MacCheck::UnknownKey(id)) => (Check::UnknownKey(id), whole()),
            Err(_) => (Check::BadMac, whole()),
        },
    };
    Prepared {
        raw,
        source,
        canonical,
        check,
    }
}

/// Stores prepared batches durably in one transaction (one commit for all of them) and returns
/// one summary per batch, in order. On Err nothing of any of them is stored (prepare them again
/// to retry).
pub fn ingest_prepared(
    store: &mut dyn Store,
    collector: &Collector,
    batches: Vec<PreparedBatch>,
) -> Result<Vec<IngestSummary>, StoreError> {
    let mut summaries = Vec::with_capacity(batches.len());
    // Consumed by the transaction: each record's buffer becomes its ciphertext in place.
    let mut batches = Some(batches);
    store.write(&mut |tx| {
        let batches = batches
            .take()
            .ok_or_else(|| StoreError::db("ingest", "transaction body run twice"))?;
        summaries.clear();
        let now = (collector.clock)();
        let mut ledger = Appender {
            head: tx.head()?.unwrap_or((0, GENESIS_PREV.to_string())),
            now,
            enc: &collector.encryption,
            rows: Vec::new(),
        };
        let mut view = TxView::default();
        // One row per session for the whole transaction, written with its rows.
        let activity = crate::sessions::merge_activity(
            batches.iter().flat_map(|b| b.sessions.iter().cloned()),
        );
        for batch in batches {
            view.load(tx, &batch.records)?;
            let mut summary = IngestSummary::default();
            for p in batch.records {
                decide(&mut view, &mut ledger, p, &mut summary)?;
            }
            summaries.push(summary);
        }
        tx.insert_rows(&ledger.rows)?;
        tx.record_session_activity(&activity)
    })?;
    Ok(summaries)
}

/// What the decisions of one transaction need to know about the stored rows: the database's
/// answers (read in bulk) merged with the rows this transaction has appended so far.
#[derive(Default)]
struct TxView {
    /// Source hashes known to be stored (in the database, or appended here).
    sources: HashSet<String>,
    chains: HashMap<String, ChainView>,
}

#[derive(Default)]
struct ChainView {
    /// (seq, source hash) of the newest clean row.
    last: Option<(i64, String)>,
    /// Seqs known to hold a clean row. Only seqs at or below `last` as loaded can be taken in
    /// the database, so only those are looked up; seqs appended here are added.
    taken: HashSet<i64>,
}

impl TxView {
    /// Reads, in bulk, what deciding `records` needs and this view does not hold yet.
    fn load(&mut self, tx: &mut dyn LedgerTx, records: &[Prepared]) -> Result<(), StoreError> {
        let mut wanted: Vec<&str> = records
            .iter()
            .map(|p| p.source.as_str())
            .filter(|s| !self.sources.contains(*s))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty() {
            self.sources.extend(tx.existing_sources(&wanted)?);
        }
        let mut ids: Vec<&str> = authentic(records)
            .map(|a| a.record.chain.id.as_str())
            .filter(|id| !self.chains.contains_key(*id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty() {
            let mut heads: HashMap<String, (i64, String)> = tx
                .chain_heads(&ids)?
                .into_iter()
                .map(|(id, seq, hash)| (id, (seq, hash)))
                .collect();
            for id in ids {
                let last = heads.remove(id);
                self.chains.insert(
                    id.to_string(),
                    ChainView {
                        last,
                        taken: HashSet::new(),
                    },
                );
            }
        }
        // Seqs at or below a chain's newest row may be taken by an earlier row (a late record,
        // a conflicting writer): look those up. Seqs above it cannot be in the database.
        let mut at_or_below: Vec<(&str, i64)> = authentic(records)
            .filter(|a| {
                let id = a.record.chain.id.as_str();
                self.chains.get(id).is_some_and(|c| {
                    c.last.as_ref().is_some_and(|(last, _)| a.seq <= *last)
                        && !c.taken.contains(&a.seq)
                })
            })
            .map(|a| (a.record.chain.id.as_str(), a.seq))
            .collect();
        at_or_below.sort_unstable();
        at_or_below.dedup();
        if !at_or_below.is_empty() {
            for (id, seq) in tx.existing_chain_seqs(&at_or_below)? {
                if let Some(c) = self.chains.get_mut(&id) {
                    c.taken.insert(seq);
                }
            }
        }
        Ok(())
    }
}

fn authentic(records: &[Prepared]) -> impl Iterator<Item = &Authentic> {
    records.iter().filter_map(|p| match &p.check {
        Check::Authentic(a) => Some(a.as_ref()),
        _ => None,
    })
}

struct Appender<'a> {
    head: (i64, String),
    now: i64,
    enc: &'a EncryptionKey,
    /// The rows appended, in ledger order, inserted together before the commit.
    rows: Vec<StoredRow>,
}

/// The columns of one row besides the ledger fields.
struct RowData {
    kind: &'static str,
    time_ms: Option<i64>,
    emergency: bool,
    chain: Option<(String, i64)>,
    source_hash: Option<String>,
    index: [Option<String>; 4],
}

impl Appender<'_> {
    fn append(&mut self, data: RowData, plaintext: Vec<u8>) -> Result<(), StoreError> {
        let ledger_seq = self.head.0 + 1;
        let (nonce, ciphertext) = self
            .enc
            .encrypt_owned(ledger_seq, plaintext)
            .map_err(|e| StoreError::db("encrypt", e))?;
        let [bi_patient, bi_subject, bi_model, bi_version] = data.index;
        let (chain_id, chain_seq) = match data.chain {
            Some((id, seq)) => (Some(id), Some(seq)),
            None => (None, None),
        };
        let mut row = StoredRow {
            ledger_seq,
            ledger_prev: std::mem::take(&mut self.head.1),
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
        self.head = (ledger_seq, row.ledger_hash.clone());
        self.rows.push(row);
        Ok(())
    }

    fn integrity(
        &mut self,
        request_id: Option<String>,
        finding: IntegrityFinding,
        source_hash: Option<String>,
    ) -> Result<(), StoreError> {
        let record = IntegrityRecord::new(self.now, request_id, finding);
        let value =
            serde_json::to_value(&record).map_err(|e| StoreError::db("integrity record", e))?;
        self.append(
            RowData {
                kind: RecordKind::Integrity.as_str(),
                time_ms: Some(self.now),
                emergency: false,
                chain: None,
                source_hash,
                index: [None, None, None, None],
            },
            canonical(&value, 512),
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

/// A typed, checked view of a record: None when it is not a valid record a filter may send
/// (v1 or v2).
pub(crate) fn typed(raw: &Value) -> Option<(AuditRecord, i64, i64)> {
    let record = AuditRecord::deserialize(raw).ok()?;
    if !is_filter_version(record.v) || record.kind == RecordKind::Integrity {
        return None;
    }
    let time_ms = parse_rfc3339_millis(&record.time)?;
    let seq = i64::try_from(record.chain.seq).ok()?;
    Some((record, time_ms, seq))
}

fn chain_hint(raw: &Value) -> (Option<String>, Option<u64>, Option<String>) {
    let chain = raw.get("chain");
    (
        crate::bounded_copy::hint(chain.and_then(|c| c.get("id")).and_then(Value::as_str)),
        chain.and_then(|c| c.get("seq")).and_then(Value::as_u64),
        crate::bounded_copy::hint(raw.get("requestId").and_then(Value::as_str)),
    )
}

/// Decides one record against `view` and appends what it stores (see the module docs).
fn decide(
    view: &mut TxView,
    ledger: &mut Appender<'_>,
    p: Prepared,
    summary: &mut IngestSummary,
) -> Result<(), StoreError> {
    if view.sources.contains(&p.source) {
        summary.duplicates += 1;
        return Ok(());
    }
    // An untrusted record is kept as its hash, length and a bounded excerpt (bounded_copy).
    // A seq conflict is authentic (its MAC verified): kept whole, as evidence of two records
    // for one position.
    let flag_untrusted = |ledger: &mut Appender<'_>, finding: FindingKind, detail: String| {
        let (hint_chain, hint_seq, hint_request) = chain_hint(&p.raw);
        let record = if finding == FindingKind::SeqConflict {
            p.raw.clone()
        } else {
            crate::bounded_copy::bounded_copy(&p.canonical, &p.source)
        };
        let f = IntegrityFinding {
            finding,
            chain_id: hint_chain,
            seq: hint_seq,
            detail,
            record: Some(record),
        };
        ledger.integrity(hint_request, f, Some(p.source.clone()))
    };
    let a = match p.check {
        Check::Malformed => {
            flag_untrusted(
                ledger,
                FindingKind::Malformed,
                "not a valid v1 or v2 access or chain-start record".into(),
            )?;
            view.sources.insert(p.source.clone());
            summary.flagged += 1;
            return Ok(());
        }
        Check::UnknownKey(id) => {
            flag_untrusted(
                ledger,
                FindingKind::UnknownKey,
                format!("MAC key id {id:?} is not configured"),
            )?;
            view.sources.insert(p.source.clone());
            summary.flagged += 1;
            return Ok(());
        }
        Check::BadMac => {
            flag_untrusted(
                ledger,
                FindingKind::BadMac,
                "MAC does not verify: modified in transit or forged".into(),
            )?;
            view.sources.insert(p.source.clone());
            summary.flagged += 1;
            return Ok(());
        }
        Check::Authentic(a) => *a,
    };
    let record = &a.record;
    let seq = a.seq;
    let chain_id = &record.chain.id;
    let chain = view
        .chains
        .get_mut(chain_id)
        .ok_or_else(|| StoreError::db("chain state", "chain not loaded"))?;
    if chain.taken.contains(&seq) {
        flag_untrusted(
            ledger,
            FindingKind::SeqConflict,
            format!("a different record with seq {seq} of this chain is already stored"),
        )?;
        view.sources.insert(p.source.clone());
        summary.flagged += 1;
        return Ok(());
    }
    let is_start = record.kind == RecordKind::ChainStart;
    let findings: Vec<(FindingKind, String)> = match &chain.last {
        Some((last, _)) if seq < *last => vec![(
            FindingKind::Late,
            format!("seq {seq} arrived after seq {last} (fills part of an earlier gap)"),
        )],
        // The MAC has been verified (prepare), so only continuity is left to check.
        Some((last, last_hash)) => {
            let next = u64::try_from(*last).unwrap_or(0).saturating_add(1);
            ChainVerifier::resume(chain_id.clone(), next, last_hash.clone())
                .feed_verified(record.chain.seq, &record.chain.prev, &p.source, is_start)
                .into_iter()
                .map(|f| (f.kind(), f.to_string()))
                .collect()
        }
        None => ChainVerifier::new(chain_id.clone())
            .feed_verified(record.chain.seq, &record.chain.prev, &p.source, is_start)
            .into_iter()
            .map(|f: ChainFinding| (f.kind(), f.to_string()))
            .collect(),
    };
    if chain.last.as_ref().is_none_or(|(last, _)| seq > *last) {
        chain.last = Some((seq, p.source.clone()));
    }
    chain.taken.insert(seq);
    view.sources.insert(p.source.clone());
    ledger.append(
        RowData {
            kind: record.kind.as_str(),
            time_ms: Some(a.time_ms),
            emergency: record.is_emergency(),
            chain: Some((chain_id.clone(), seq)),
            source_hash: Some(p.source),
            index: a.index,
        },
        p.canonical,
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
        ledger.integrity(record.request_id.clone(), f, None)?;
        summary.flagged += 1;
    }
    Ok(())
}
