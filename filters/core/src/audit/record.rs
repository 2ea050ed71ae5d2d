//! The v1 audit record types: exactly the JSON shape of DESIGN.md "The audit record".
//!
//! Every member is always written (`null` where it does not apply), so the shape never depends on
//! the data. `chain-start` records carry `null` actor / action / resource / source / outcome.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The record format version a filter writes, `v`: 2, sealed in one pass (`Sealing::V2`). The
/// collector and `audit verify` accept 1 as well ([`is_filter_version`]).
pub const RECORD_VERSION: u32 = 2;

/// `v` of the collector's own `integrity` records (their shape has not changed).
pub const INTEGRITY_VERSION: u32 = 1;

/// Whether `v` is a record version a filter writes or wrote: 1 (two-pass sealing) or 2.
pub fn is_filter_version(v: u32) -> bool {
    v == 1 || v == RECORD_VERSION
}

/// `kind`: what the record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// One request on a PHI route (allowed or denied) or one denial anywhere.
    Access,
    /// The first record (seq 0) of a filter VM's chain.
    ChainStart,
    /// A finding of the collector's own (bad MAC, gap, ...); never sent by a filter.
    Integrity,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Access => "access",
            RecordKind::ChainStart => "chain-start",
            RecordKind::Integrity => "integrity",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        match s {
            "access" => Some(RecordKind::Access),
            "chain-start" => Some(RecordKind::ChainStart),
            "integrity" => Some(RecordKind::Integrity),
            _ => None,
        }
    }
}

/// A record a filter sends: `access` or `chain-start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    pub v: u32,
    pub kind: RecordKind,
    /// RFC 3339 UTC with milliseconds (`crate::calendar::rfc3339_millis`).
    pub time: String,
    pub request_id: Option<String>,
    pub actor: Option<Actor>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub inference: Option<Inference>,
    /// Set on records from an outbound (egress) listener: where the request was going.
    pub egress: Option<Egress>,
    pub source: Option<Source>,
    pub emergency: Option<Emergency>,
    pub outcome: Option<Outcome>,
    pub chain: ChainInfo,
    /// The fields whose client-controlled value was cut to its cap (`crate::audit::limits`),
    /// e.g. `["source.userAgent"]`: the value stored is a prefix. Absent (not null) when nothing
    /// was cut, so records without it are byte for byte what they were before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Vec<String>>,
}

impl AuditRecord {
    /// An unsealed `access` record at `unix_millis` with every section empty; fill in what the
    /// request gave, then `ChainWriter::seal` it.
    pub fn access(unix_millis: i64, request_id: Option<String>) -> AuditRecord {
        AuditRecord {
            v: RECORD_VERSION,
            kind: RecordKind::Access,
            time: crate::calendar::rfc3339_millis(unix_millis),
            request_id,
            actor: Some(Actor::default()),
            action: None,
            resource: Some(Resource::default()),
            inference: None,
            egress: None,
            source: Some(Source::default()),
            emergency: None,
            outcome: None,
            chain: ChainInfo::default(),
            truncated: None,
        }
    }

    /// The patient id, if any (blind-indexed by the collector).
    pub fn patient(&self) -> Option<&str> {
        self.resource.as_ref()?.patient.as_deref()
    }

    /// The verified subject, if any.
    pub fn subject(&self) -> Option<&str> {
        self.actor.as_ref()?.subject.as_deref()
    }

    /// The inference model, if any.
    pub fn model(&self) -> Option<&str> {
        self.inference.as_ref()?.model.as_deref()
    }

    /// The inference model version, if any.
    pub fn model_version(&self) -> Option<&str> {
        self.inference.as_ref()?.version.as_deref()
    }

    /// Whether the request used break-glass emergency access.
    pub fn is_emergency(&self) -> bool {
        self.emergency.is_some()
    }
}

/// `actor`: who. Every field is null where no token was verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    pub subject: Option<String>,
    pub roles: Option<Vec<String>>,
    pub session: Option<String>,
    pub amr: Option<Vec<String>>,
    /// The peer's SPIFFE id, when the connection presented one.
    pub peer: Option<String>,
}

/// `action`: what was attempted, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    pub method: String,
    pub path: String,
    /// The policy route's name; null on an unmatched route.
    pub route: Option<String>,
    pub operation: Operation,
}

/// `action.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Write,
    Delete,
    Export,
    Inference,
}

/// `resource`: whose data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource {
    pub patient: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
}

/// `inference`: which model answered, and what it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inference {
    pub model: Option<String>,
    pub version: Option<String>,
    /// Lowercase hex SHA-256 of the response body the caller received (64 characters): the
    /// output, provable later without the trail holding it. Absent (not null) when no body
    /// went through to its end (none, an empty one, a denial, a client that left first), so
    /// records without it are byte for byte what they were before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
    /// The `keyid` of the response signature the mesh sent with that body (the route signs);
    /// absent when the filter that recorded it did not sign it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_signature_key_id: Option<String>,
}

/// `egress`: the external host an outbound request went to, and the Business Associate
/// Agreement that covers it (null when the host is not a listed vendor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// The host, lower-cased, without port; null when the request named none.
    pub host: Option<String>,
    pub baa_id: Option<String>,
}

/// `source`: where from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The client address without a port.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `TLSv1.2` / `TLSv1.3`, null for plaintext.
    pub tls: Option<String>,
}

/// `emergency`: break-glass, with its reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Emergency {
    pub reason: String,
}

/// `outcome.decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// `outcome`: what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    pub decision: Decision,
    /// The status sent; 0 when the client left first.
    pub status: u16,
    /// The denial reason, null when allowed.
    pub reason: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// `chain`: this record's place in its VM's chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainInfo {
    pub id: String,
    pub seq: u64,
    pub prev: String,
    pub key_id: String,
    pub mac: String,
}

/// A finding the collector stores as a `kind: "integrity"` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The record's MAC does not verify: stored here, never as a clean record.
    BadMac,
    /// The record names a MAC key id the collector does not hold.
    UnknownKey,
    /// The record is not a valid filter record (shape, version or kind).
    Malformed,
    /// Records between the chain's last stored seq and this one are missing.
    Gap,
    /// `chain.prev` does not match the hash of the previous stored record.
    PrevMismatch,
    /// A different record with an already stored (chain id, seq).
    SeqConflict,
    /// A record older than the chain's newest stored one arrived late (fills part of a gap).
    Late,
    /// A `chain-start` record anywhere but seq 0, or seq 0 that is not `chain-start`.
    ChainStartMisplaced,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::BadMac => "bad-mac",
            FindingKind::UnknownKey => "unknown-key",
            FindingKind::Malformed => "malformed",
            FindingKind::Gap => "gap",
            FindingKind::PrevMismatch => "prev-mismatch",
            FindingKind::SeqConflict => "seq-conflict",
            FindingKind::Late => "late",
            FindingKind::ChainStartMisplaced => "chain-start-misplaced",
        }
    }
}

/// `kind: "integrity"`: the collector's own record of something wrong with what it received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrityRecord {
    pub v: u32,
    pub kind: RecordKind,
    /// When the collector detected it.
    pub time: String,
    /// The offending record's request id, when it had one.
    pub request_id: Option<String>,
    pub integrity: IntegrityFinding,
}

/// `integrity`: what was found, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrityFinding {
    pub finding: FindingKind,
    pub chain_id: Option<String>,
    pub seq: Option<u64>,
    /// Plain words, no PHI: e.g. "seq 7..=9 missing".
    pub detail: String,
    /// The offending record exactly as received, when it was not stored as a clean record
    /// (bad MAC, unknown key, malformed, seq conflict); null when the record itself was stored.
    pub record: Option<Value>,
}

impl IntegrityRecord {
    pub fn new(unix_millis: i64, request_id: Option<String>, integrity: IntegrityFinding) -> Self {
        IntegrityRecord {
            v: INTEGRITY_VERSION,
            kind: RecordKind::Integrity,
            time: crate::calendar::rfc3339_millis(unix_millis),
            request_id,
            integrity,
        }
    }
}
