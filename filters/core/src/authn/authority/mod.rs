//! The mesh-wide session authority (issue #16): one idle clock for every replica of a workload,
//! and the list of revoked sessions and users. The collector cluster is the authority (it
//! already receives every allowed PHI access with its session); authn asks it only when its own
//! view cannot decide, and pulls the revocation list on a timer.
//!
//! * [`wire`]: the bytes of `POST /v1/sessions/check` and `GET /v1/revocations` and their MACs
//!   (`HIPAA_SESSION_AUTHORITY_KEY`, a key of its own), parsed without panics and within fixed
//!   sizes.
//! * [`decision`]: when authn must ask, what it does with each answer (or with none, per
//!   `identity.session.authority.onUnavailable`), and the authority's own decision (the
//!   collector runs the same function).
//! * [`revocations`]: the revocation set a worker VM holds, bounded and expiring.
//! * [`ended`]: sessions the authority has ended, remembered so a replayed idle token costs no
//!   further call.
//!
//! DESIGN.md, "sessions across replicas", is the contract the shell follows.

pub mod decision;
pub mod ended;
pub mod pending;
pub mod revocations;
pub mod wire;

pub use decision::{
    authority_decide, combine, must_consult, AuthorityDecision, Combined, LocalView, Outcome, Reply,
};
pub use ended::EndedSessions;
pub use pending::{call_status, secs_to_ms, SessionCheck};
pub use revocations::{PullAnswer, PullResult, RevocationSet};
pub use wire::{
    CheckAnswer, CheckRequest, Purpose, Revocation, RevocationList, RevocationTarget, WireError,
};

#[cfg(test)]
mod tests;
