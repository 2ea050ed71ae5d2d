//! The audit stage and its single-filter root `hipaa-audit` (in `hipaa_mesh.wasm`): records every PHI access and every denied request, sealed into a per-VM
//! hash chain with an HMAC, and delivers the records to the collector without losing any
//! (45 CFR 164.312(b) audit controls). First in the filter chain, so it sees every outcome.
//! A thin shell: what is recorded, the record, the buffer and the delivery are decided in
//! `hipaa_core::audit`; see `root` for the queue / chain / delivery design.

mod host;
pub mod http;
pub mod root;
