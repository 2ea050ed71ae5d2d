//! The audit record (v2; v1 still verified), its canonical form, the per-VM hash chain and the record MAC
//! (45 CFR 164.312(b) audit controls, (c)(1) integrity).
//!
//! Shared by the audit filter (which builds and seals records), the collector (which checks them on
//! ingest) and `hipaa-mesh audit verify` (which recomputes everything). Pure Rust: no clock, no
//! randomness, no host calls; callers pass time in as Unix milliseconds and chain ids in as strings.
//!
//! # Canonical form
//!
//! The canonical bytes of a record are its JSON value serialized with
//! * object keys sorted by their UTF-8 bytes, at every depth;
//! * no whitespace at all (`{"a":1,"b":[true,null]}`);
//! * strings and numbers written exactly as `serde_json` writes them (shortest escapes,
//!   integers in decimal);
//! * for the MAC only, the `chain.mac` member removed (every other member, `chain.keyId` included,
//!   is covered).
//!
//! The canonical form is computed from the JSON value (what is sent and stored), not from a Rust
//! struct, so a member the struct would not know about is still covered by the MAC and the hash.
//!
//! # Chain
//!
//! Each filter VM keeps one chain: a random `chain.id`, `chain.seq` starting at 0 with a
//! `chain-start` record and increasing by exactly one, `chain.keyId` = the id of the MAC key, and,
//! by the record's `v` ([`Sealing`]):
//! * **v2** (what filters write): `digest` = SHA-256 of the canonical bytes without `chain.mac`;
//!   `chain.mac` = lowercase hex HMAC-SHA256 of the 32 digest bytes; the next record's
//!   `chain.prev` = this record's `chain.mac`. One pass of SHA-256 over the record.
//! * **v1** (older filters; still verified): `chain.mac` = HMAC-SHA256 of the canonical bytes
//!   without `chain.mac`; the next record's `chain.prev` = SHA-256 of the canonical bytes
//!   *including* `chain.mac`.
//!
//! `chain.prev` of seq 0 is [`GENESIS_PREV`] (64 zeros). A v2 link is a keyed function of the
//! whole record: changing anything changes the digest, so the MAC, so the link.

pub mod buffer;
pub mod build;
mod canonical;
mod chain;
pub mod delivery;
mod key;
pub mod limits;
mod record;
pub mod response;
mod time;

pub use canonical::{canonical_bytes, mac_input, record_hash, write_canonical};
pub use chain::{
    authenticate, chain_link, compute_mac, reseal_v1, verify_mac, ChainFinding, ChainLink,
    ChainVerifier, ChainWriter, MacCheck, Sealing, GENESIS_PREV,
};
pub use key::{KeyError, MacKey, MacKeyRing, MIN_KEY_BYTES};
pub use record::{
    is_filter_version, Action, Actor, AuditRecord, ChainInfo, Decision, Emergency, FindingKind,
    Inference, IntegrityFinding, IntegrityRecord, Operation, Outcome, RecordKind, Resource, Source,
    INTEGRITY_VERSION, RECORD_VERSION,
};
pub use time::parse_rfc3339_millis;

/// Errors building or sealing a record.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit record cannot be serialized: {0}")]
    Serialize(String),
    #[error("audit record is not a JSON object with a chain object")]
    NotARecord,
    #[error("only access records are sealed with seal(); got {0}")]
    WrongKind(&'static str),
}

#[cfg(test)]
mod tests;
