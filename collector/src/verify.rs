//! `audit verify`: recompute everything from the stored rows and the public keys only.
//!
//! * every row: its ledger hash over its columns, its link to the row before, its ciphertext
//!   (AES-GCM tag, bound to its ledger position), its columns against its decrypted record
//!   (kind, time, emergency, chain id/seq, source hash, blind indexes) and, for filter records,
//!   the record MAC;
//! * every chain, in seq order: gaps, prev links, chain-start placement — findings the collector
//!   already flagged at ingest are notes, anything else happened after storage;
//! * every checkpoint: its Ed25519 signature, and that the row it counts still carries the head
//!   hash it signed (a truncated tail is caught here);
//! * every purge: signed with the checkpoint key, bound to the signed checkpoint whose head it
//!   removed through, and older than 6 years by verify's own clock (never the mark's columns
//!   alone);
//! * the append-only triggers: present, enabled and as the schema defines them.

use std::collections::{BTreeMap, HashMap, HashSet};

use ed25519_dalek::VerifyingKey;
use hipaa_core::audit::{
    authenticate, chain_link, record_hash, ChainFinding, ChainVerifier, FindingKind,
    IntegrityRecord, MacKeyRing,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::check_signature;
use crate::ingest::{blind_indexes, typed};
use crate::keys::EncryptionKey;
use crate::ledger::{row_hash, GENESIS_PREV};
use crate::purge::{check_signature as check_purge_signature, six_years_before};
use crate::store::{RowFilter, Store, StoreError, StoredRow};

/// What kind of damage a finding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// A stored row's content no longer matches what was stored.
    Modified,
    /// Rows are missing from the middle of the ledger or a chain.
    Deleted,
    /// Rows are stored at other positions than they were written to.
    Reordered,
    /// The newest rows are gone (caught by a signed checkpoint).
    Truncated,
    /// A checkpoint's signature does not verify.
    Checkpoint,
    /// A purge not proven to remove only records older than 6 years.
    Purge,
    /// An append-only trigger (or its function) is missing, disabled or altered.
    Schema,
}

/// One finding, naming the record (ledger position, chain id and seq, request id) where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub problem: Problem,
    pub ledger_seq: Option<i64>,
    pub chain_id: Option<String>,
    pub seq: Option<u64>,
    pub request_id: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let problem = serde_json::to_value(self.problem)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{problem:>10}")?;
        if let Some(l) = self.ledger_seq {
            write!(f, " ledger #{l}")?;
        }
        if let Some(c) = &self.chain_id {
            write!(f, " chain {c}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq {s}")?;
        }
        if let Some(r) = &self.request_id {
            write!(f, " request {r}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The result of a verification (`GET /v1/verify` answers it as JSON; the CLI reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// No finding: nothing was modified, deleted, reordered or truncated since it was stored.
    pub intact: bool,
    pub rows: u64,
    pub chains: u64,
    pub checkpoints: u64,
    /// The fingerprints of the checkpoint public keys this verify trusted (see
    /// [`crate::keys::public_key_fingerprint`]): compare them with the copy kept apart.
    pub checkpoint_keys: Vec<String>,
    pub findings: Vec<Finding>,
    /// Integrity records the collector stored at ingest (bad MACs, gaps, ... on the way in).
    pub ingest_flags: Vec<String>,
    /// Facts worth knowing that are not damage (e.g. rows newer than the last checkpoint).
    pub notes: Vec<String>,
}

/// What verify needs: the MAC keys, the at-rest key, the checkpoint public keys.
pub struct VerifyKeys<'a> {
    pub mac_keys: &'a MacKeyRing,
    pub encryption: &'a EncryptionKey,
    pub checkpoint_keys: &'a [VerifyingKey],
}

/// What the chain check needs of a record whose MAC verified (small: verify keeps one per row).
struct ChainEntry {
    seq: u64,
    ledger_seq: i64,
    request_id: Option<String>,
    prev: String,
    hash: String,
    is_start: bool,
}

/// One row's ledger link, kept for every row (no record contents).
struct Link {
    ledger_seq: i64,
    prev: String,
    hash: String,
}

const PAGE: i64 = 2_000;

/// How far a purge mark's date may run ahead of verify's clock (clocks of two machines).
pub const PURGE_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// Verifies the whole database. `now_ms` is verify's own clock (the system clock; a fixed time
/// only in tests): the 6-year rule of every purge is judged with it.
pub fn verify(
    store: &mut dyn Store,
    keys: &VerifyKeys<'_>,
    now_ms: i64,
) -> Result<VerifyReport, StoreError> {
    verify_paged(store, keys, now_ms, PAGE)
}

/// [`verify`], reading `page` rows at a time.
pub(crate) fn verify_paged(
    store: &mut dyn Store,
    keys: &VerifyKeys<'_>,
    now_ms: i64,
    page_size: i64,
) -> Result<VerifyReport, StoreError> {
    // Judged first (before anything else touches the database), reported last.
    let schema_findings: Vec<Finding> = store
        .append_only_problems()?
        .into_iter()
        .map(|detail| Finding {
            problem: Problem::Schema,
            ledger_seq: None,
            chain_id: None,
            seq: None,
            request_id: None,
            detail: format!(
                "{detail}: the database no longer refuses changes; compare the rows with a \
                 backup and the logged checkpoints"
            ),
        })
        .collect();
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut ingest_flags = Vec::new();

    // Checkpoints and purges first: rows stored while verify runs are then simply newer than
    // every checkpoint read, never mistaken for a truncation.
    let purges = store.purges()?;
    let checkpoints = store.checkpoints()?;
    let purged = purges.iter().max_by_key(|p| p.through_seq);

    // Pass 1: every row's ledger link, in ledger order (contents are read page by page in pass 2).
    let mut links: Vec<Link> = Vec::new();
    loop {
        let page = store.rows(&RowFilter {
            after: links.last().map(|l| l.ledger_seq).unwrap_or(0),
            limit: page_size,
            ..RowFilter::default()
        })?;
        if page.is_empty() {
            break;
        }
        links.extend(page.into_iter().map(|r| Link {
            ledger_seq: r.ledger_seq,
            prev: r.ledger_prev,
            hash: r.ledger_hash,
        }));
    }
    let max_seq = links.last().map(|l| l.ledger_seq).unwrap_or(0);

    let mut chains: BTreeMap<String, Vec<ChainEntry>> = BTreeMap::new();
    let mut flagged: HashSet<(String, u64, String)> = HashSet::new();

    // Where was each row written? Follow the ledger links from the start (genesis, or the
    // newest purge mark): the n-th row reached was written at position start + n. A row not
    // reached (a link broken by a deletion or a modification) is taken to be where it is.
    let start_seq = purged.map(|p| p.through_seq + 1).unwrap_or(1);
    let start_prev = purged
        .map(|p| p.through_hash.clone())
        .unwrap_or_else(|| GENESIS_PREV.to_string());
    let mut written_at: HashMap<i64, i64> = HashMap::new();
    {
        let by_prev: HashMap<&str, usize> = links
            .iter()
            .enumerate()
            .map(|(i, l)| (l.prev.as_str(), i))
            .collect();
        let (mut pos, mut prev) = (start_seq, start_prev.as_str());
        while let Some(&i) = by_prev.get(prev) {
            let link = &links[i];
            if written_at.contains_key(&link.ledger_seq) {
                break;
            }
            written_at.insert(link.ledger_seq, pos);
            pos += 1;
            prev = link.hash.as_str();
        }
    }
    let mut unreadable: HashSet<(String, u64)> = HashSet::new();

    let mut expected_seq = start_seq;
    let mut expected_prev = start_prev.clone();
    // Pass 2: each row's contents, page by page, up to the last row pass 1 saw.
    let mut after = 0;
    loop {
        let page = store.rows(&RowFilter {
            after,
            limit: page_size,
            ..RowFilter::default()
        })?;
        let page: Vec<StoredRow> = page
            .into_iter()
            .filter(|r| r.ledger_seq <= max_seq)
            .collect();
        let Some(last) = page.last() else { break };
        after = last.ledger_seq;
        for row in &page {
            let mut finding = |problem: Problem, detail: String| Finding {
                problem,
                ledger_seq: Some(row.ledger_seq),
                chain_id: row.chain_id.clone(),
                seq: row.chain_seq.and_then(|s| u64::try_from(s).ok()),
                request_id: None,
                detail,
            };
            let mut row_findings = Vec::new();
            if row.ledger_seq > expected_seq {
                let last = row.ledger_seq - 1;
                let what = if last > expected_seq {
                    format!("ledger rows #{expected_seq}..=#{last} are missing (deleted)")
                } else {
                    format!("ledger row #{expected_seq} is missing (deleted)")
                };
                let mut f = finding(Problem::Deleted, what);
                f.ledger_seq = Some(expected_seq);
                f.chain_id = None;
                f.seq = None;
                row_findings.push(f);
            }
            let written_at = match written_at.get(&row.ledger_seq).copied() {
                Some(w) if w != row.ledger_seq => {
                    row_findings.push(finding(
                        Problem::Reordered,
                        format!("row stored at #{} was written as #{w}", row.ledger_seq),
                    ));
                    w
                }
                Some(w) => w,
                None => {
                    if row.ledger_prev != expected_prev && row.ledger_seq == expected_seq {
                        row_findings.push(finding(
                            Problem::Modified,
                            format!(
                            "does not link to row #{} (a row before it was replaced or modified)",
                            row.ledger_seq - 1
                        ),
                        ));
                    }
                    row.ledger_seq
                }
            };
            let as_written = StoredRow {
                ledger_seq: written_at,
                ..row.clone()
            };
            if row_hash(&as_written) != row.ledger_hash {
                row_findings.push(finding(
                    Problem::Modified,
                    "columns changed since stored (ledger hash mismatch)".into(),
                ));
            }
            let mut request_id = None;
            match keys
                .encryption
                .decrypt(written_at, &row.nonce, &row.ciphertext)
                .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            {
                None => {
                    if let (Some(c), Some(q)) = (&row.chain_id, row.chain_seq) {
                        unreadable.insert((c.clone(), u64::try_from(q).unwrap_or(0)));
                    }
                    row_findings.push(finding(
                        Problem::Modified,
                        "ciphertext fails authentication (modified, or swapped with another row)"
                            .into(),
                    ))
                }
                Some(value) => {
                    request_id = value
                        .get("requestId")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    check_record(
                        row,
                        &value,
                        keys,
                        &mut row_findings,
                        &mut chains,
                        &mut flagged,
                        &mut ingest_flags,
                        &mut unreadable,
                        &mut finding,
                    );
                }
            }
            for mut f in row_findings {
                if f.request_id.is_none() && f.ledger_seq == Some(row.ledger_seq) {
                    f.request_id.clone_from(&request_id);
                }
                findings.push(f);
            }
            expected_seq = row.ledger_seq + 1;
            expected_prev.clone_from(&row.ledger_hash);
        }
    }

    // Chains, in seq order.
    for (chain_id, entries) in &mut chains {
        entries.sort_by_key(|e| e.seq);
        let mut v = ChainVerifier::new(chain_id.clone());
        let mut first = true;
        for e in entries.iter() {
            for f in v.feed_verified(e.seq, &e.prev, &e.hash, e.is_start) {
                let (kind, seq) = match &f {
                    // Seqs whose rows exist but cannot be read are reported per row above.
                    ChainFinding::Gap { expected, got }
                        if (*expected..*got)
                            .all(|s| unreadable.contains(&(chain_id.clone(), s))) =>
                    {
                        continue
                    }
                    ChainFinding::Gap { got, .. } => ("gap", *got),
                    ChainFinding::PrevMismatch { seq } => ("prev-mismatch", *seq),
                    ChainFinding::ChainStartMisplaced { seq } => ("chain-start-misplaced", *seq),
                    // Bad MACs are reported per row above.
                    _ => continue,
                };
                if flagged.contains(&(chain_id.clone(), seq, kind.to_string())) {
                    continue;
                }
                if first && purged.is_some() && kind != "prev-mismatch" {
                    notes.push(format!(
                        "chain {chain_id} begins at seq {} (its start was purged)",
                        e.seq
                    ));
                    continue;
                }
                let problem = if kind == "gap" {
                    Problem::Deleted
                } else {
                    Problem::Modified
                };
                findings.push(match f {
                    // Name the missing record itself: its chain and seq.
                    ChainFinding::Gap { expected, .. } => Finding {
                        problem,
                        ledger_seq: None,
                        chain_id: Some(chain_id.clone()),
                        seq: Some(expected),
                        request_id: None,
                        detail: format!(
                            "{f} before seq {} (ledger #{}); not flagged at ingest, so deleted \
                             after storage",
                            e.seq, e.ledger_seq
                        ),
                    },
                    _ => Finding {
                        problem,
                        ledger_seq: Some(e.ledger_seq),
                        chain_id: Some(chain_id.clone()),
                        seq: Some(e.seq),
                        request_id: e.request_id.clone(),
                        detail: format!("{f}; not flagged at ingest, so changed after storage"),
                    },
                });
            }
            first = false;
        }
    }

    // Checkpoints.
    let purged_through = purged.map(|p| p.through_seq).unwrap_or(0);
    let mut valid_checkpoints = Vec::new();
    let mut truncated_to: Option<(i64, i64)> = None;
    for cp in &checkpoints {
        if let Err(why) = check_signature(cp, keys.checkpoint_keys) {
            findings.push(Finding {
                problem: Problem::Checkpoint,
                ledger_seq: None,
                chain_id: None,
                seq: None,
                request_id: None,
                detail: format!("checkpoint {} (count {}): {why}", cp.id, cp.ledger_count),
            });
            continue;
        }
        valid_checkpoints.push(cp);
        if cp.ledger_count <= purged_through || cp.ledger_count == 0 {
            continue;
        }
        if cp.ledger_count > max_seq {
            if truncated_to.is_none_or(|(count, _)| cp.ledger_count > count) {
                truncated_to = Some((cp.ledger_count, cp.id));
            }
            continue;
        }
        match links
            .binary_search_by_key(&cp.ledger_count, |l| l.ledger_seq)
            .ok()
            .map(|i| &links[i])
        {
            // A missing row inside the ledger is reported as deleted above.
            None => {}
            Some(r) if r.hash != cp.head_hash => findings.push(Finding {
                problem: Problem::Modified,
                ledger_seq: Some(r.ledger_seq),
                chain_id: None,
                seq: None,
                request_id: None,
                detail: format!(
                    "is not the row checkpoint {} signed as ledger head (replaced or rewritten)",
                    cp.id
                ),
            }),
            Some(_) => {}
        }
    }
    if let Some((count, id)) = truncated_to {
        let first = max_seq + 1;
        findings.push(Finding {
            problem: Problem::Truncated,
            ledger_seq: Some(first),
            chain_id: None,
            seq: None,
            request_id: None,
            detail: if count > first {
                format!("ledger ends at #{max_seq} but signed checkpoint {id} covers #{count}: rows #{first}..=#{count} were deleted")
            } else {
                format!("ledger ends at #{max_seq} but signed checkpoint {id} covers #{count}: row #{count} was deleted")
            },
        });
    }
    let covered = valid_checkpoints
        .iter()
        .map(|c| c.ledger_count)
        .max()
        .unwrap_or(0);
    if max_seq > covered {
        notes.push(format!(
            "{} newest row(s) (#{}..=#{max_seq}) are not yet covered by a signed checkpoint: a \
             deleted tail among them would show only at the next checkpoint",
            max_seq - covered,
            covered + 1
        ));
    }

    // Purges: judged by their signature, the signed checkpoint they name and verify's clock;
    // a mark's own columns prove nothing (anyone with SQL access can write them).
    for p in &purges {
        let mut why: Vec<String> = Vec::new();
        if let Err(e) = check_purge_signature(p, keys.checkpoint_keys) {
            why.push(e);
        }
        if p.created_ms > now_ms.saturating_add(PURGE_CLOCK_SKEW_MS) {
            why.push("it is dated after this verify's clock".into());
        }
        if p.before_ms > six_years_before(p.created_ms.min(now_ms)) {
            why.push("its cut-off is less than 6 years before it was made".into());
        }
        match valid_checkpoints
            .iter()
            .find(|c| c.ledger_count == p.through_seq && c.head_hash == p.through_hash)
        {
            None => why.push(format!(
                "no signed checkpoint has row #{} with this hash as its head",
                p.through_seq
            )),
            Some(c) if c.created_ms >= p.before_ms => why.push(format!(
                "its checkpoint {} was signed after the cut-off, so the rows are not proven older",
                c.id
            )),
            Some(_) => {}
        }
        if why.is_empty() {
            notes.push(format!(
                "retention purge {} removed rows #1..=#{} (older than 6 years)",
                p.id, p.through_seq
            ));
        } else {
            findings.push(Finding {
                problem: Problem::Purge,
                ledger_seq: Some(p.through_seq),
                chain_id: None,
                seq: None,
                request_id: None,
                detail: format!(
                    "purge {} removed rows through #{} without proof they were older than 6 \
                     years: {}",
                    p.id,
                    p.through_seq,
                    why.join("; ")
                ),
            });
        }
    }

    findings.extend(schema_findings);
    Ok(VerifyReport {
        intact: findings.is_empty(),
        rows: links.len() as u64,
        chains: chains.len() as u64,
        checkpoints: checkpoints.len() as u64,
        checkpoint_keys: keys
            .checkpoint_keys
            .iter()
            .map(crate::keys::public_key_fingerprint)
            .collect(),
        findings,
        ingest_flags,
        notes,
    })
}

#[allow(clippy::too_many_arguments)]
fn check_record(
    row: &StoredRow,
    value: &Value,
    keys: &VerifyKeys<'_>,
    out: &mut Vec<Finding>,
    chains: &mut BTreeMap<String, Vec<ChainEntry>>,
    flagged: &mut HashSet<(String, u64, String)>,
    ingest_flags: &mut Vec<String>,
    unreadable: &mut HashSet<(String, u64)>,
    finding: &mut dyn FnMut(Problem, String) -> Finding,
) {
    let mismatch = |what: &str| format!("{what} column does not match the stored record");
    if row.kind == "integrity" {
        match serde_json::from_value::<IntegrityRecord>(value.clone()) {
            Ok(rec) => {
                let i = &rec.integrity;
                if let (Some(c), Some(s)) = (&i.chain_id, i.seq) {
                    flagged.insert((c.clone(), s, i.finding.as_str().to_string()));
                }
                ingest_flags.push(format!(
                    "ledger #{}: {} chain {} seq {}: {}",
                    row.ledger_seq,
                    i.finding.as_str(),
                    i.chain_id.as_deref().unwrap_or("-"),
                    i.seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    i.detail
                ));
                let source_ok = match (&row.source_hash, &i.record) {
                    // A bounded copy names the refused record's hash; older rows hold it whole.
                    (Some(h), Some(orig)) => match crate::bounded_copy::hash_of(orig) {
                        Some(named) => h == named,
                        // Kept whole: a seq conflict (authentic) under its chain link (v2:
                        // its MAC); older rows of refused records under the whole hash.
                        None if i.finding == FindingKind::SeqConflict => *h == chain_link(orig),
                        None => *h == record_hash(orig),
                    },
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                if !source_ok {
                    out.push(finding(Problem::Modified, mismatch("source_hash")));
                }
            }
            Err(_) => out.push(finding(
                Problem::Modified,
                "integrity record does not parse".into(),
            )),
        }
        if row.chain_id.is_some() || row.chain_seq.is_some() || row.emergency {
            out.push(finding(Problem::Modified, mismatch("chain or emergency")));
        }
        return;
    }
    if row.kind == crate::alerts::ledger::ALERT_KIND
        || row.kind == crate::alerts::ledger::STATUS_KIND
    {
        for what in crate::alerts::ledger::check(row, value, keys.encryption) {
            out.push(finding(Problem::Modified, mismatch(what)));
        }
        return;
    }
    if row.kind == crate::trail_access::KIND {
        for what in crate::trail_access::check(row, value, keys.encryption) {
            out.push(finding(Problem::Modified, mismatch(what)));
        }
        return;
    }
    if row.kind == crate::revocation_record::KIND {
        for what in crate::revocation_record::check(row, value, keys.encryption) {
            out.push(finding(Problem::Modified, mismatch(what)));
        }
        return;
    }
    if row.kind == crate::incidents::KIND {
        for what in crate::incidents::ledger::check(row, value) {
            out.push(finding(Problem::Modified, mismatch(what)));
        }
        return;
    }
    let Some((record, time_ms, seq)) = typed(value) else {
        out.push(finding(
            Problem::Modified,
            "stored record is not a valid v1 or v2 record".into(),
        ));
        return;
    };
    // One pass: the MAC and, when it verifies, the chain link (the clean row's source hash).
    let link = authenticate(keys.mac_keys, value)
        .ok()
        .map(|link| link.into_hex(value));
    if link.is_none() {
        out.push(finding(
            Problem::Modified,
            "record MAC does not verify".into(),
        ));
    }
    let checks = [
        ("kind", row.kind == record.kind.as_str()),
        ("time", row.time_ms == Some(time_ms)),
        ("emergency", row.emergency == record.is_emergency()),
        (
            "chain",
            row.chain_id.as_deref() == Some(record.chain.id.as_str()) && row.chain_seq == Some(seq),
        ),
        (
            "source_hash",
            match &link {
                Some(link) => row.source_hash.as_ref() == Some(link),
                None => row.source_hash.as_deref() == Some(chain_link(value).as_str()),
            },
        ),
        (
            "blind index",
            [
                &row.bi_patient,
                &row.bi_subject,
                &row.bi_model,
                &row.bi_version,
            ]
            .into_iter()
            .cloned()
            .eq(blind_indexes(keys.encryption, &record)),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            out.push(finding(Problem::Modified, mismatch(what)));
        }
    }
    let Some(link) = link else {
        // Reported above; its chain position is not reported again as missing.
        unreadable.insert((record.chain.id.clone(), record.chain.seq));
        return;
    };
    chains
        .entry(record.chain.id.clone())
        .or_default()
        .push(ChainEntry {
            seq: record.chain.seq,
            ledger_seq: row.ledger_seq,
            request_id: record.request_id.clone(),
            prev: record.chain.prev.clone(),
            hash: link,
            is_start: record.kind == hipaa_core::audit::RecordKind::ChainStart,
        });
}
