//! The authn stage and its single-filter root `hipaa-authn` (loaded from `hipaa_mesh.wasm`):
//! verifies the access token and enforces unique user identification, MFA, session timeouts,
//! break-the-glass and per-route roles (45 CFR 164.312(a), (d)).
//! A thin shell: it gathers facts from Envoy, asks `hipaa_core::authn::decide`, and applies
//! the verdict. No policy decision is made here.

pub mod authority;
mod host;
pub mod http;
mod jwks;
pub mod root;
pub mod stage;
