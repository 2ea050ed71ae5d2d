//! The transport stage and its single-filter root `hipaa-transport` (in `hipaa_mesh.wasm`):
//! transmission security and integrity (45 CFR 164.312(e)(1), (c)(1),
//! and the mTLS half of (d)): refuses plaintext, weak TLS, missing client certificates and
//! unlisted SPIFFE peers inbound; refuses egress to hosts without a current BAA outbound; signs
//! response bodies and verifies request body signatures on the routes that ask for it.
//!
//! A thin shell: it reads Envoy's connection attributes and the request line, asks
//! `hipaa_core::transport::decide` and `hipaa_core::integrity`, and applies the answer.
//! No policy decision is made here, and nothing here may panic (a panic kills the worker's VM).

mod host;
pub mod http;
pub mod root;
