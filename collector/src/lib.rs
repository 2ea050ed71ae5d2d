//! hipaa-collector: receives the audit filters' records, checks their MAC and chain, stores them
//! encrypted (AES-256-GCM) and append-only in a signed ledger (SQLite or PostgreSQL), answers
//! review queries and verifies the whole trail. Serves 45 CFR 164.312(b) audit controls,
//! (a)(2)(iv) encryption at rest and (c)(1) integrity.

pub mod alerts;
pub mod bounded_copy;
mod canonical;
pub mod checkpoint;
pub mod incidents;
pub mod ingest;
pub mod ingest_limit;
pub mod keys;
pub mod ledger;
pub mod ocsf;
pub mod own_records;
pub mod purge;
pub mod query;
pub mod read_auth;
pub mod revocation_record;
pub mod server;
pub mod sessions;
pub mod store;
pub mod trail_access;
pub mod verify;

pub use ingest::{ingest, system_clock, Clock, Collector, IngestSummary};
pub use keys::{CheckpointSigner, EncryptionKey};
pub use query::{query, Query};
pub use server::{start, RunningServer, ServerConfig};
pub use store::{open_store, Store};
pub use verify::{verify, VerifyKeys, VerifyReport};

#[cfg(test)]
mod tests;
