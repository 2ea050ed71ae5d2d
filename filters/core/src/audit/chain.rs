//! Sealing records into a chain (the filter) and checking a chain (the collector, `audit verify`).

use hmac::Mac;
use serde_json::Value;

use super::canonical::{insert_mac, mac_input, record_hash, write_record_without_mac};
use super::key::{MacKey, MacKeyRing};
use super::record::{AuditRecord, ChainInfo, FindingKind, RecordKind, RECORD_VERSION};
use super::AuditError;
use sha2::{Digest, Sha256};

/// `chain.prev` of seq 0: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a record's MAC and chain link are computed, by its `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// `v: 1`: MAC = HMAC over the canonical bytes without `chain.mac`; link = SHA-256 of the
    /// canonical bytes with it. Two passes over the record; still accepted from older filters.
    V1,
    /// `v: 2`: digest = SHA-256 of the canonical bytes without `chain.mac`; MAC = HMAC over the
    /// 32 digest bytes; link = the MAC. One pass over the record.
    V2,
}

impl Sealing {
    /// The sealing of a record value, None for a version no filter writes.
    pub fn of(record: &Value) -> Option<Sealing> {
        match record.get("v").and_then(Value::as_u64) {
            Some(1) => Some(Sealing::V1),
            Some(2) => Some(Sealing::V2),
            _ => None,
        }
    }
}

/// What the next record's `chain.prev` must name for an authentic record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainLink {
    /// v1: the SHA-256 of the whole canonical record ([`record_hash`]); a caller that already
    /// has the canonical bytes hashes them itself.
    WholeRecord,
    /// v2: the record's own `chain.mac` (lowercase hex). Not the digest: the digest is the
    /// SHA-256 of bytes anyone can post (the record without its `mac`), so as a dedup key it
    /// could be taken by such a copy first; a MAC is a value only the key holder can make.
    Mac(String),
}

impl ChainLink {
    /// The link as lowercase hex.
    pub fn into_hex(self, record: &Value) -> String {
        match self {
            ChainLink::WholeRecord => record_hash(record),
            ChainLink::Mac(mac) => mac,
        }
    }
}

/// The chain link of a record as it claims it (see [`ChainLink`]; nothing is verified): v2 its
/// `chain.mac` ("" when it has none), else the whole record's hash.
pub fn chain_link(record: &Value) -> String {
    match Sealing::of(record) {
        Some(Sealing::V2) => record
            .pointer("/chain/mac")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => record_hash(record),
    }
}

/// Lowercase hex MAC of `record` under `key`, by its version ([`Sealing`]; an unknown version is
/// sealed as the current one).
pub fn compute_mac(key: &MacKey, record: &Value) -> String {
    let mut mac = key.hmac();
    match Sealing::of(record) {
        Some(Sealing::V1) => mac.update(&mac_input(record)),
        _ => mac.update(&Sha256::digest(mac_input(record))),
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The result of checking one record's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacCheck {
    Valid,
    /// The MAC does not verify (or is not 64 hex characters, or the record's `v` is no version a
    /// filter writes).
    BadMac,
    /// `chain.keyId` names no key in the ring.
    UnknownKey(String),
    /// No `chain` object with string `keyId` and `mac`.
    NoChain,
}

/// Checks `chain.mac` against the key named by `chain.keyId`, in constant time.
pub fn verify_mac(ring: &MacKeyRing, record: &Value) -> MacCheck {
    match authenticate(ring, record) {
        Ok(_) => MacCheck::Valid,
        Err(check) => check,
    }
}

/// [`verify_mac`], returning on success the record's chain link, from the same pass over the
/// record. Never `Err(MacCheck::Valid)`.
pub fn authenticate(ring: &MacKeyRing, record: &Value) -> Result<ChainLink, MacCheck> {
    let Some(chain) = record.get("chain").and_then(Value::as_object) else {
        return Err(MacCheck::NoChain);
    };
    let (Some(key_id), Some(mac_hex)) = (
        chain.get("keyId").and_then(Value::as_str),
        chain.get("mac").and_then(Value::as_str),
    ) else {
        return Err(MacCheck::NoChain);
    };
    let Some(key) = ring.get(key_id) else {
        return Err(MacCheck::UnknownKey(key_id.to_string()));
    };
    let Some(tag) = crate::hex32::decode_lower(mac_hex.as_bytes()) else {
        return Err(MacCheck::BadMac);
    };
    let Some(sealing) = Sealing::of(record) else {
        return Err(MacCheck::BadMac);
    };
    let mut mac = key.hmac();
    let input = mac_input(record);
    let link = match sealing {
        Sealing::V1 => {
            mac.update(&input);
            ChainLink::WholeRecord
        }
        Sealing::V2 => {
            mac.update(&Sha256::digest(&input));
            ChainLink::Mac(mac_hex.to_string())
        }
    };
    match mac.verify_slice(&tag) {
        Ok(()) => Ok(link),
        Err(_) => Err(MacCheck::BadMac),
    }
}

/// `records` (one chain, in seq order) sealed again as v1, the form older filters wrote: `v` 1,
/// each `prev` the whole previous record's hash, each MAC over the canonical bytes. For tests and
/// tools that check v1 trails are still verified.
pub fn reseal_v1(records: &[Value], key: &MacKey) -> Vec<Value> {
    let mut prev = GENESIS_PREV.to_string();
    records
        .iter()
        .map(|record| {
            let mut v = record.clone();
            let Some(object) = v.as_object_mut() else {
                return v;
            };
            object.insert("v".into(), Value::from(1));
            if let Some(chain) = object.get_mut("chain").and_then(Value::as_object_mut) {
                chain.insert("prev".into(), Value::from(prev.as_str()));
            }
            let mac = compute_mac(key, &v);
            if let Some(chain) = v.get_mut("chain").and_then(Value::as_object_mut) {
                chain.insert("mac".into(), Value::from(mac));
            }
            prev = record_hash(&v);
            v
        })
        .collect()
}

/// One filter VM's chain: seals each record with the next seq, the previous record's link and a MAC.
#[derive(Debug, Clone)]
pub struct ChainWriter {
    id: String,
    next_seq: u64,
    prev: String,
    key: MacKey,
}

impl ChainWriter {
    /// Begins a chain: returns the writer and its sealed `chain-start` record (seq 0), which must be
    /// sent first. `chain_id` should be unique per VM, e.g. [`ChainWriter::chain_id_from_random`]
    /// over 16 random bytes the host supplied.
    pub fn start(
        chain_id: impl Into<String>,
        key: MacKey,
        unix_millis: i64,
    ) -> Result<(ChainWriter, AuditRecord), AuditError> {
        let mut writer = ChainWriter {
            id: chain_id.into(),
            next_seq: 0,
            prev: GENESIS_PREV.to_string(),
            key,
        };
        let record = AuditRecord {
            v: RECORD_VERSION,
            kind: RecordKind::ChainStart,
            time: crate::calendar::rfc3339_millis(unix_millis),
            request_id: None,
            actor: None,
            action: None,
            resource: None,
            inference: None,
            egress: None,
            source: None,
            emergency: None,
            outcome: None,
            chain: ChainInfo::default(),
            truncated: None,
        };
        let sealed = writer.seal_any(record)?;
        Ok((writer, sealed))
    }

    /// Lowercase hex of the given random bytes: a chain id.
    pub fn chain_id_from_random(random: &[u8]) -> String {
        hex::encode(random)
    }

    /// Fills `record.chain` (id, seq, prev, keyId, mac) and advances the chain. Only `access`
    /// records are sealed here (`chain-start` comes from [`ChainWriter::start`]); on error the
    /// chain does not advance.
    pub fn seal(&mut self, record: AuditRecord) -> Result<AuditRecord, AuditError> {
        if record.kind != RecordKind::Access {
            return Err(AuditError::WrongKind(record.kind.as_str()));
        }
        self.seal_any(record)
    }

    /// [`ChainWriter::seal`], returning the sealed record's JSON bytes to send: its canonical
    /// form (keys sorted, no whitespace) including `chain.mac`.
    pub fn seal_to_json(&mut self, mut record: AuditRecord) -> Result<Vec<u8>, AuditError> {
        if record.kind != RecordKind::Access {
            return Err(AuditError::WrongKind(record.kind.as_str()));
        }
        Ok(self.seal_in_place(&mut record))
    }

    fn seal_any(&mut self, mut record: AuditRecord) -> Result<AuditRecord, AuditError> {
        self.seal_in_place(&mut record);
        Ok(record)
    }

    /// Fills `record.chain` and advances the chain; returns the canonical bytes with the MAC.
    /// Written from the typed record in one pass (see `write_record_without_mac`) and hashed in
    /// one pass ([`Sealing::V2`]): the MAC over the digest of the bytes without `chain.mac`,
    /// which is also the next record's `prev` — the same MAC and link `compute_mac` /
    /// `chain_link` give for the record's JSON value.
    fn seal_in_place(&mut self, record: &mut AuditRecord) -> Vec<u8> {
        record.v = RECORD_VERSION;
        record.chain = ChainInfo {
            id: self.id.clone(),
            seq: self.next_seq,
            prev: std::mem::take(&mut self.prev),
            key_id: self.key.id().to_string(),
            mac: String::new(),
        };
        let mut bytes = Vec::with_capacity(1024);
        let mac_at = write_record_without_mac(record, &mut bytes);
        let digest = Sha256::digest(&bytes);
        let mut mac = self.key.hmac();
        mac.update(&digest);
        let mac_hex = hex::encode(mac.finalize().into_bytes());
        insert_mac(&mut bytes, mac_at, &mac_hex);
        self.prev.clone_from(&mac_hex);
        record.chain.mac = mac_hex;
        self.next_seq = self.next_seq.saturating_add(1);
        bytes
    }

    pub fn chain_id(&self) -> &str {
        &self.id
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn prev(&self) -> &str {
        &self.prev
    }
}

/// What is wrong with one record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFinding {
    /// Not a record with a complete `chain` object (id, seq, prev, keyId, mac).
    Malformed { detail: String },
    /// The record belongs to another chain.
    WrongChain { seq: u64, chain_id: String },
    /// `chain.keyId` names no known key.
    UnknownKey { seq: u64, key_id: String },
    /// The MAC does not verify: the record was modified or forged.
    BadMac { seq: u64 },
    /// Seqs `expected..got` (exclusive) are missing.
    Gap { expected: u64, got: u64 },
    /// `chain.prev` is not the hash of the record before it.
    PrevMismatch { seq: u64 },
    /// A seq at or below one already seen.
    Duplicate { seq: u64 },
    /// `chain-start` anywhere but seq 0, or seq 0 that is not `chain-start`.
    ChainStartMisplaced { seq: u64 },
}

impl ChainFinding {
    /// The integrity-record kind the collector stores for this finding.
    pub fn kind(&self) -> FindingKind {
        match self {
            ChainFinding::Malformed { .. } | ChainFinding::WrongChain { .. } => {
                FindingKind::Malformed
            }
            ChainFinding::UnknownKey { .. } => FindingKind::UnknownKey,
            ChainFinding::BadMac { .. } => FindingKind::BadMac,
            ChainFinding::Gap { .. } => FindingKind::Gap,
            ChainFinding::PrevMismatch { .. } => FindingKind::PrevMismatch,
            ChainFinding::Duplicate { .. } => FindingKind::SeqConflict,
            ChainFinding::ChainStartMisplaced { .. } => FindingKind::ChainStartMisplaced,
        }
    }

    /// Whether the record itself is authentic (its MAC verified) despite the finding, so it may
    /// be kept as a record with the finding beside it.
    pub fn record_is_authentic(&self) -> bool {
        matches!(
            self,
            ChainFinding::Gap { .. }
                | ChainFinding::PrevMismatch { .. }
                | ChainFinding::ChainStartMisplaced { .. }
                | ChainFinding::Duplicate { .. }
        )
    }
}

impl std::fmt::Display for ChainFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainFinding::Malformed { detail } => write!(f, "malformed record: {detail}"),
            ChainFinding::WrongChain { seq, chain_id } => {
                write!(f, "seq {seq} belongs to chain {chain_id}")
            }
            ChainFinding::UnknownKey { seq, key_id } => {
                write!(f, "seq {seq}: unknown MAC key id {key_id:?}")
            }
            ChainFinding::BadMac { seq } => write!(f, "seq {seq}: MAC does not verify (modified)"),
            ChainFinding::Gap { expected, got } => match got.checked_sub(1) {
                Some(last) if last > *expected => {
                    write!(f, "seq {expected}..={last} missing (deleted or never delivered)")
                }
                _ => write!(f, "seq {expected} missing (deleted or never delivered)"),
            },
            ChainFinding::PrevMismatch { seq } => write!(
                f,
                "seq {seq}: prev is not the hash of the record before it (modified, replaced or reordered)"
            ),
            ChainFinding::Duplicate { seq } => write!(f, "seq {seq}: duplicate or out of order"),
            ChainFinding::ChainStartMisplaced { seq } => {
                write!(f, "seq {seq}: chain-start misplaced")
            }
        }
    }
}

/// Checks the records of one chain, fed in seq order.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    chain_id: String,
    next_seq: u64,
    prev: String,
}

impl ChainVerifier {
    /// A verifier expecting the chain's seq 0 (`chain-start`) first.
    pub fn new(chain_id: impl Into<String>) -> ChainVerifier {
        ChainVerifier {
            chain_id: chain_id.into(),
            next_seq: 0,
            prev: GENESIS_PREV.to_string(),
        }
    }

    /// A verifier continuing after a record already checked: `next_seq` = its seq + 1, `prev` = its
    /// [`chain_link`]. The collector resumes from the state it persisted.
    pub fn resume(chain_id: impl Into<String>, next_seq: u64, prev: impl Into<String>) -> Self {
        ChainVerifier {
            chain_id: chain_id.into(),
            next_seq,
            prev: prev.into(),
        }
    }

    /// Checks the next record. An authentic record (MAC verified) advances the chain even with a
    /// gap or prev finding, so one missing record is reported once, not for every record after it;
    /// a record that fails its MAC, or a duplicate, does not advance it.
    pub fn feed(&mut self, ring: &MacKeyRing, record: &Value) -> Vec<ChainFinding> {
        let chain = match chain_fields(record) {
            Ok(c) => c,
            Err(detail) => return vec![ChainFinding::Malformed { detail }],
        };
        if chain.id != self.chain_id {
            return vec![ChainFinding::WrongChain {
                seq: chain.seq,
                chain_id: chain.id.to_string(),
            }];
        }
        let link = match authenticate(ring, record) {
            Ok(link) => link.into_hex(record),
            Err(MacCheck::UnknownKey(key_id)) => {
                return vec![ChainFinding::UnknownKey {
                    seq: chain.seq,
                    key_id,
                }]
            }
            Err(_) => return vec![ChainFinding::BadMac { seq: chain.seq }],
        };
        let is_start = record.get("kind").and_then(Value::as_str) == Some("chain-start");
        self.feed_verified(chain.seq, chain.prev, &link, is_start)
    }

    /// The continuity part of [`ChainVerifier::feed`], for a record whose MAC the caller has
    /// already verified: its `seq`, `prev`, [`chain_link`] and whether it is `chain-start`.
    pub fn feed_verified(
        &mut self,
        seq: u64,
        prev: &str,
        hash: &str,
        is_start: bool,
    ) -> Vec<ChainFinding> {
        if seq < self.next_seq {
            return vec![ChainFinding::Duplicate { seq }];
        }
        let mut findings = Vec::new();
        if is_start != (seq == 0) {
            findings.push(ChainFinding::ChainStartMisplaced { seq });
        }
        if seq > self.next_seq {
            findings.push(ChainFinding::Gap {
                expected: self.next_seq,
                got: seq,
            });
        } else if prev != self.prev {
            findings.push(ChainFinding::PrevMismatch { seq });
        }
        self.next_seq = seq.saturating_add(1);
        self.prev = hash.to_string();
        findings
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn prev(&self) -> &str {
        &self.prev
    }
}

/// The chain fields of a record value, borrowed.
pub(crate) struct ChainFields<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub prev: &'a str,
}

pub(crate) fn chain_fields(record: &Value) -> Result<ChainFields<'_>, String> {
    let chain = record
        .get("chain")
        .and_then(Value::as_object)
        .ok_or_else(|| "no chain object".to_string())?;
    let id = chain
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| "chain.id is not a string".to_string())?;
    let seq = chain
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| "chain.seq is not a non-negative integer".to_string())?;
    let prev = chain
        .get("prev")
        .and_then(Value::as_str)
        .ok_or_else(|| "chain.prev is not a string".to_string())?;
    for member in ["keyId", "mac"] {
        if chain.get(member).and_then(Value::as_str).is_none() {
            return Err(format!("chain.{member} is not a string"));
        }
    }
    Ok(ChainFields { id, seq, prev })
}
